import Iommufd
import Synchronization
import SystemPackage

/// A seam that passes every call to another one and records it with its outcome: for
/// tests that check what a driver asked of the kernel, or that compare two backends call
/// by call.
///
/// ```swift
/// let calls = TranscriptSystemCalls(SimulatedKernel())
/// let iommufd = try IOMMUFD.open(backend: Backend(calls))
/// _ = try iommufd.allocateIOAS()
/// #expect(calls.entries.map(\.call) == [.open("/dev/iommu"), .ioctl(0x3B81)])
/// #expect(calls.transcript == ["open /dev/iommu -> 0", "ioctl 0x3b81 -> 0"])
/// ```
///
/// Descriptors and addresses are recorded where they are arguments but not as results
/// (they differ from run to run), so two backends that behave alike give equal
/// transcripts. Thread-safe: calls from several threads are recorded in the order they
/// return.
public final class TranscriptSystemCalls: SystemCalls {
  /// What was called.
  public enum Call: Hashable, Sendable, CustomStringConvertible {
    /// `open(2)` of the path.
    case open(FilePath)
    /// `close(2)`.
    case close
    /// `ioctl(2)` with the request number.
    case ioctl(UInt)
    /// `mmap(2)` of a length, of a descriptor or anonymous memory.
    case mmap(length: Int, file: Bool)
    /// `munmap(2)` of a length.
    case munmap(length: Int)
    /// `pread(2)` at an offset.
    case pread(offset: Int64)
    /// `pwrite(2)` at an offset.
    case pwrite(offset: Int64)
    /// `read(2)`.
    case read
    /// `write(2)`.
    case write
    /// `eventfd(2)`.
    case eventfd
    /// `memfd_create(2)` of a name.
    case memfdCreate(name: String)
    /// `ftruncate(2)` to a length.
    case truncate(length: Int64)
    /// A directory listing of a path.
    case directoryEntries(path: String)
    /// A file read of a path.
    case readFile(path: String)
    /// `readlink(2)` of a path.
    case readLink(path: String)
    /// `access(2)` of a path.
    case checkAccess(path: String)
    /// A file write to a path (its bytes recorded).
    case writeFile(path: String)

    /// The call as the transcript prints it, such as `ioctl 0x3b81`.
    public var description: String {
      switch self {
      case .open(let path): "open \(path)"
      case .close: "close"
      case .ioctl(let request): "ioctl 0x\(String(request, radix: 16))"
      case .mmap(let length, let file): "mmap \(length) \(file ? "file" : "anonymous")"
      case .munmap(let length): "munmap \(length)"
      case .pread(let offset): "pread 0x\(String(offset, radix: 16))"
      case .pwrite(let offset): "pwrite 0x\(String(offset, radix: 16))"
      case .read: "read"
      case .write: "write"
      case .eventfd: "eventfd"
      case .memfdCreate(let name): "memfd_create \(name)"
      case .truncate(let length): "ftruncate \(length)"
      case .directoryEntries(let path): "readdir \(path)"
      case .readFile(let path): "read file \(path)"
      case .readLink(let path): "readlink \(path)"
      case .checkAccess(let path): "access \(path)"
      case .writeFile(let path): "write file \(path)"
      }
    }
  }

  /// One recorded call and its outcome.
  public struct Entry: Hashable, Sendable, CustomStringConvertible {
    /// The call.
    public var call: Call
    /// The descriptor it was made on, if any.
    public var fd: FileDescriptor?
    /// The errno it failed with; nil when it succeeded.
    public var errno: Errno?
    /// The result, where it is a count or an ioctl's return value (0 for the others).
    public var result: Int
    /// The bytes a `pread`/`read` returned or a `pwrite`/`write` passed, a file read's or
    /// file write's bytes (empty for the others).
    public var bytes: [UInt8]

    /// Creates an entry.
    public init(call: Call, fd: FileDescriptor? = nil, errno: Errno? = nil, result: Int = 0, bytes: [UInt8] = []) {
      self.call = call
      self.fd = fd
      self.errno = errno
      self.result = result
      self.bytes = bytes
    }

    /// `call -> result` or `call -> errno N` (with the bytes of a read), without the
    /// descriptor.
    public var description: String {
      if let errno { return "\(call) -> errno \(errno.rawValue)" }
      switch call {
      case .pread, .read: return "\(call) -> \(result) bytes \(bytes)"
      default: return "\(call) -> \(result)"
      }
    }
  }

  /// The seam the calls go to.
  public let base: any SystemCalls
  private let recorded = Mutex<(entries: [Entry], notes: [String])>(([], []))

  /// Records the calls made on `base`.
  public init(_ base: any SystemCalls) { self.base = base }

  /// The calls so far, in the order they returned.
  public var entries: [Entry] { recorded.withLock { $0.entries } }

  /// The calls so far as lines (``Entry/description``), with the notes between them.
  public var transcript: [String] { recorded.withLock { $0.notes } }

  /// Adds a line of the caller's own to ``transcript`` (not to ``entries``).
  public func note(_ line: String) { recorded.withLock { $0.notes.append(line) } }

  /// Forgets what was recorded.
  public func reset() { recorded.withLock { $0 = ([], []) } }

  private func record<T>(
    _ call: Call, fd: FileDescriptor? = nil, _ body: () throws(Errno) -> T, result: (T) -> Int = { _ in 0 },
    bytes: (T) -> [UInt8] = { _ in [] }
  ) throws(Errno) -> T {
    let entry: Entry
    let value: T
    do {
      value = try body()
      entry = Entry(call: call, fd: fd, result: result(value), bytes: bytes(value))
    } catch {
      let failed = Entry(call: call, fd: fd, errno: error)
      recorded.withLock {
        $0.entries.append(failed)
        $0.notes.append(failed.description)
      }
      throw error
    }
    recorded.withLock {
      $0.entries.append(entry)
      $0.notes.append(entry.description)
    }
    return value
  }

  /// Records `open(2)`.
  public func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor {
    try record(.open(path)) { () throws(Errno) in try base.open(path, flags: flags) }
  }

  /// Records `close(2)`.
  public func close(_ fd: FileDescriptor) throws(Errno) {
    try record(.close, fd: fd) { () throws(Errno) in try base.close(fd) }
  }

  /// Records `ioctl(2)` and its return value.
  public func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
    try record(.ioctl(request), fd: fd, { () throws(Errno) in try base.ioctl(fd, request, argument) }, result: { Int($0) })
  }

  /// Records `mmap(2)` (not the address it returns).
  public func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    try record(.mmap(length: length, file: fd != nil), fd: fd) { () throws(Errno) in
      try base.mmap(length: length, protection: protection, flags: flags, fd: fd, offset: offset)
    }
  }

  /// Records `munmap(2)`.
  public func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) {
    try record(.munmap(length: length)) { () throws(Errno) in try base.munmap(address, length: length) }
  }

  /// Records `pread(2)` and the bytes read.
  public func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int {
    try record(
      .pread(offset: offset), fd: fd, { () throws(Errno) in try base.pread(fd, into: buffer, offset: offset) }, result: { $0 },
      bytes: { Array(buffer.prefix(max(0, min($0, buffer.count)))) })
  }

  /// Records `pwrite(2)` and the bytes written.
  public func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int {
    try record(
      .pwrite(offset: offset), fd: fd, { () throws(Errno) in try base.pwrite(fd, from: buffer, offset: offset) }, result: { $0 },
      bytes: { _ in Array(buffer) })
  }

  /// Records `read(2)` and the bytes read.
  public func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
    try record(
      .read, fd: fd, { () throws(Errno) in try base.read(fd, into: buffer) }, result: { $0 },
      bytes: { Array(buffer.prefix(max(0, min($0, buffer.count)))) })
  }

  /// Records `write(2)` and the bytes written.
  public func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
    try record(.write, fd: fd, { () throws(Errno) in try base.write(fd, from: buffer) }, result: { $0 }, bytes: { _ in Array(buffer) })
  }

  /// Records `eventfd(2)` (not the descriptor it returns).
  public func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor {
    try record(.eventfd) { () throws(Errno) in try base.eventfd(initialValue: initialValue, flags: flags) }
  }

  /// Records and forwards `memfd_create(2)`.
  public func memfdCreate(name: String, flags: UInt32) throws(Errno) -> FileDescriptor {
    try record(.memfdCreate(name: name)) { () throws(Errno) in try base.memfdCreate(name: name, flags: flags) }
  }

  /// Records and forwards `ftruncate(2)`.
  public func truncate(_ fd: FileDescriptor, length: Int64) throws(Errno) {
    try record(.truncate(length: length), fd: fd) { () throws(Errno) in try base.truncate(fd, length: length) }
  }

  /// Records and forwards a directory listing (the count of names as the result).
  public func directoryEntries(_ path: FilePath) throws(Errno) -> [String] {
    try record(.directoryEntries(path: path.string), { () throws(Errno) in try base.directoryEntries(path) }, result: { $0.count })
  }

  /// Records and forwards a file read (its bytes).
  public func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8] {
    try record(
      .readFile(path: path.string), { () throws(Errno) in try base.readFile(path, maximumBytes: maximumBytes) },
      result: { $0.count }, bytes: { $0 })
  }

  /// Records and forwards `readlink(2)` (the target's bytes).
  public func readLink(_ path: FilePath) throws(Errno) -> String {
    try record(.readLink(path: path.string), { () throws(Errno) in try base.readLink(path) }, bytes: { Array($0.utf8) })
  }

  /// Records and forwards `access(2)`.
  public func checkAccess(_ path: FilePath, mode: Int32) throws(Errno) {
    try record(.checkAccess(path: path.string)) { () throws(Errno) in try base.checkAccess(path, mode: mode) }
  }

  /// Records and forwards a file write (its bytes).
  public func writeFile(_ path: FilePath, bytes: [UInt8]) throws(Errno) {
    try record(.writeFile(path: path.string), { () throws(Errno) in try base.writeFile(path, bytes: bytes) }, bytes: { _ in bytes })
  }
}
