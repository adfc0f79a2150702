import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The kernel backend: each requirement of ``SystemCalls`` is one Linux system call.
///
/// This is the only place in the library where system calls happen.
public struct KernelSystemCalls: SystemCalls {
  /// Creates the kernel backend.
  public init() {}

  /// `open(2)`.
  public func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor {
    let fd = path.withPlatformString { Glibc.open($0, flags) }
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    return FileDescriptor(rawValue: fd)
  }

  /// `close(2)`; Linux frees the descriptor even on error, so it is never retried.
  public func close(_ fd: FileDescriptor) throws(Errno) {
    // Linux releases the descriptor even when close reports an error: never retry.
    guard Glibc.close(fd.rawValue) == 0 else { throw Errno(rawValue: Glibc.errno) }
  }

  /// `ioctl(2)`, retried on EINTR.
  public func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?)
    throws(Errno) -> Int32
  {
    while true {
      let result = ciommufd_ioctl(fd.rawValue, request, argument)
      if result >= 0 { return result }
      let code = Glibc.errno
      if code != EINTR { throw Errno(rawValue: code) }
    }
  }

  /// `memfd_create(2)`.
  public func memfdCreate(name: String, flags: UInt32) throws(Errno) -> FileDescriptor {
    let fd = name.withCString { ciommufd_memfd_create($0, flags) }
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    return FileDescriptor(rawValue: fd)
  }

  /// `ftruncate(2)`, retried on EINTR.
  public func truncate(_ fd: FileDescriptor, length: Int64) throws(Errno) {
    while Glibc.ftruncate(fd.rawValue, off_t(length)) != 0 {
      let code = Glibc.errno
      if code != EINTR { throw Errno(rawValue: code) }
    }
  }

  /// `mmap(2)`; anonymous memory when `fd` is nil.
  public func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64)
    throws(Errno) -> UnsafeMutableRawPointer
  {
    let address = Glibc.mmap(nil, length, protection, flags, fd?.rawValue ?? -1, off_t(offset))
    guard let address, address != MAP_FAILED else { throw Errno(rawValue: Glibc.errno) }
    return address
  }

  /// `munmap(2)`.
  public func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) {
    guard Glibc.munmap(address, length) == 0 else { throw Errno(rawValue: Glibc.errno) }
  }

  /// `pread(2)`, retried on EINTR.
  public func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64)
    throws(Errno) -> Int
  {
    try retryingOnInterrupt { Glibc.pread(fd.rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
  }

  /// `pwrite(2)`, retried on EINTR.
  public func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64)
    throws(Errno) -> Int
  {
    try retryingOnInterrupt { Glibc.pwrite(fd.rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
  }

  /// `read(2)`, retried on EINTR.
  public func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
    try retryingOnInterrupt { Glibc.read(fd.rawValue, buffer.baseAddress, buffer.count) }
  }

  /// `write(2)`, retried on EINTR.
  public func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
    try retryingOnInterrupt { Glibc.write(fd.rawValue, buffer.baseAddress, buffer.count) }
  }

  /// `eventfd(2)`.
  public func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor {
    let fd = ciommufd_eventfd(initialValue, flags)
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    return FileDescriptor(rawValue: fd)
  }

  private func retryingOnInterrupt(_ call: () -> Int) throws(Errno) -> Int {
    while true {
      let result = call()
      if result >= 0 { return result }
      let code = Glibc.errno
      if code != EINTR { throw Errno(rawValue: code) }
    }
  }
  /// `opendir(3)` and `readdir(3)`: the names in the directory, without `.` and `..`.
  public func directoryEntries(_ path: FilePath) throws(Errno) -> [String] {
    guard let directory = path.withPlatformString({ opendir($0) }) else { throw Errno(rawValue: Glibc.errno) }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  /// The most ``readFile(_:maximumBytes:)`` reads, whatever it is asked: 64 MiB.
  public static let maximumFileRead = 64 << 20

  /// `open(2)` (non-blocking: a FIFO with no writer is EAGAIN, not a wait) and `read(2)`
  /// until the end or `maximumBytes` (negative: 0; at most ``maximumFileRead``, so an
  /// endless file such as `/dev/zero` ends), retried on EINTR.
  public func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8] {
    let fd = path.withPlatformString { Glibc.open($0, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    defer { Glibc.close(fd) }
    let limit = min(max(0, maximumBytes), Self.maximumFileRead)
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
      let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, min($0.count, limit - bytes.count)) }
      if count < 0 {
        if Glibc.errno == EINTR { continue }
        throw Errno(rawValue: Glibc.errno)
      }
      if count == 0 { break }
      bytes += chunk[..<count]
    }
    return bytes
  }

  /// `readlink(2)`.
  public func readLink(_ path: FilePath) throws(Errno) -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = path.withPlatformString { Glibc.readlink($0, &buffer, buffer.count - 1) }
    guard count >= 0 else { throw Errno(rawValue: Glibc.errno) }
    return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// `access(2)`.
  public func checkAccess(_ path: FilePath, mode: Int32) throws(Errno) {
    guard path.withPlatformString({ Glibc.access($0, mode) }) == 0 else { throw Errno(rawValue: Glibc.errno) }
  }

  /// `open(2)` for writing (truncating, non-blocking, not creating), as `echo text > path`
  /// opens, and one `write(2)`, retried on EINTR; a short write is EIO (a sysfs attribute
  /// takes its value in one write).
  public func writeFile(_ path: FilePath, bytes: [UInt8]) throws(Errno) {
    let fd = path.withPlatformString { Glibc.open($0, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NONBLOCK) }
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    defer { Glibc.close(fd) }
    while true {
      let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if Glibc.errno == EINTR { continue }
        throw Errno(rawValue: Glibc.errno)
      }
      guard count == bytes.count else { throw .ioError }
      return
    }
  }
}
