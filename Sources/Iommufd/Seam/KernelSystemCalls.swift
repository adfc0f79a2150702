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
}
