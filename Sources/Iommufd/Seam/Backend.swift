import Logging
import SystemPackage

/// The system-call seam a handle uses, with a trace log of every call.
///
/// ``kernel`` makes real system calls. Any other ``SystemCalls`` value (a simulated kernel,
/// a recorder in a test) can be wrapped with ``init(_:logger:reason:)``; the API above it is the
/// same. Each call leaves one line at trace level on ``logger``: name, ids, result.
public struct Backend: Sendable {
  /// What a backend holds, in one object: a copy of the backend (each handle keeps one) is
  /// then one reference count, not one for each field. Its ``TypedStorage`` subclass makes
  /// ioctls on the concrete ``SystemCalls`` type, so the call path copies no existential.
  fileprivate class Storage: @unchecked Sendable {
    let calls: any SystemCalls
    let logger: Logger
    let reason: String
    let isTracing: Bool
    /// Whether `calls` is ``KernelSystemCalls``: its ioctl is then made in line, without
    /// the dynamic call through ``TypedStorage``.
    let isKernel: Bool

    init(calls: any SystemCalls, logger: Logger, reason: String) {
      self.calls = calls
      self.logger = logger
      self.reason = reason
      self.isTracing = logger.logLevel <= .trace
      self.isKernel = calls is KernelSystemCalls
    }

    func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
      try calls.ioctl(fd, request, argument)
    }
  }

  /// ``Storage`` for one concrete ``SystemCalls`` type (immutable, like its base).
  private final class TypedStorage<Calls: SystemCalls>: Storage, @unchecked Sendable {
    let typed: Calls

    init(typed: Calls, logger: Logger, reason: String) {
      self.typed = typed
      super.init(calls: typed, logger: logger, reason: reason)
    }

    override func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
      try typed.ioctl(fd, request, argument)
    }
  }

  private init(storage: Storage) { self.storage = storage }

  private static func makeStorage<Calls: SystemCalls>(_ calls: Calls, logger: Logger, reason: String) -> Storage {
    TypedStorage(typed: calls, logger: logger, reason: reason)
  }

  private let storage: Storage

  /// The system calls this backend makes.
  public var calls: any SystemCalls { storage.calls }
  /// Where each system call is traced (at `.trace`) and release failures are reported.
  /// Calls are traced if the logger's level was `.trace` when the backend was made.
  public var logger: Logger { storage.logger }
  /// Why this backend was chosen, for users and logs.
  public var reason: String { storage.reason }

  /// Wraps `calls`, tracing to `logger`.
  public init(_ calls: any SystemCalls, logger: Logger = Logger(label: "iommufd"), reason: String = "chosen explicitly") {
    storage = Self.makeStorage(calls, logger: logger, reason: reason)
  }

  /// The Linux kernel.
  public static var kernel: Backend { Backend(KernelSystemCalls(), reason: "the kernel backend was chosen explicitly") }

  // MARK: Traced calls used by the API

  func open(_ path: FilePath, flags: Int32, operation: IommufdError.Operation = .open)
    throws(IommufdError) -> FileDescriptor
  {
    do {
      let fd = try calls.open(path, flags: flags)
      trace("open \(path) -> fd \(fd.rawValue)")
      return fd
    } catch {
      trace("open \(path) -> \(error)")
      throw IommufdError(operation, error, objects: [.path(path.string)])
    }
  }

  func close(_ fd: FileDescriptor) throws(IommufdError) {
    do {
      try calls.close(fd)
      trace("close fd \(fd.rawValue) -> 0")
    } catch {
      trace("close fd \(fd.rawValue) -> \(error)")
      throw IommufdError(.close, error, objects: [.fd(fd)])
    }
  }

  /// Issues `request` with a pointer to `argument`, naming `operation` and `objects` in the
  /// trace line and in the error. `objects` is evaluated only for those: a call that
  /// succeeds with tracing off allocates nothing.
  @discardableResult @inline(__always)
  func ioctl<Argument>(
    _ fd: FileDescriptor, _ request: Int32, _ argument: inout Argument,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    // `self` is borrowed for the call, and keeps the storage alive.
    try unretained.ioctl(fd, request, &argument, operation, objects())
  }

  /// Issues `request` with a raw buffer as its argument (structs with trailing data).
  @discardableResult
  func ioctl(
    _ fd: FileDescriptor, _ request: Int32, buffer: UnsafeMutableRawBufferPointer,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    try ioctl(fd, request, pointer: buffer.baseAddress, operation, objects())
  }

  /// Issues `request` with an integer argument (the legacy VFIO requests that take one).
  @discardableResult
  func ioctl(
    _ fd: FileDescriptor, _ request: Int32, argumentValue: Int,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    try ioctl(fd, request, pointer: UnsafeMutableRawPointer(bitPattern: argumentValue), operation, objects())
  }

  /// Issues `request` with no argument.
  @discardableResult
  func ioctl(
    _ fd: FileDescriptor, _ request: Int32,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    try ioctl(fd, request, pointer: nil, operation, objects())
  }

  private func ioctl(
    _ fd: FileDescriptor, _ request: Int32, pointer: UnsafeMutableRawPointer?,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    try unretained.ioctl(fd, request, pointer: pointer, operation, objects())
  }

  /// Whether calls are traced: the logger logged at `.trace` when the backend was made.
  var isTracing: Bool { storage.isTracing }

  fileprivate func traceSuccess(
    _ fd: FileDescriptor, _ operation: IommufdError.Operation, _ objects: [IommufdError.InvolvedObject], _ value: Int32
  ) {
    trace("\(operation.rawValue) fd \(fd.rawValue) \(objects.map(\.description).joined(separator: " ")) -> \(value)")
  }

  /// Traces a failed call and returns its error.
  fileprivate func failed(
    _ fd: FileDescriptor, _ operation: IommufdError.Operation, _ objects: [IommufdError.InvolvedObject], _ errno: Errno
  ) -> IommufdError {
    trace("\(operation.rawValue) fd \(fd.rawValue) \(objects.map(\.description).joined(separator: " ")) -> \(errno)")
    return IommufdError(operation, errno, objects: [.fd(fd)] + objects)
  }

  /// The backend without a reference count, for a handle that also stores the backend
  /// (which keeps it alive as long as the handle lives): a call through it costs no
  /// retain and release of the storage, which a call through a stored ``Backend`` does
  /// (the optimizer cannot tell that the handle keeps it).
  var unretained: Unretained { Unretained(storage: .passUnretained(storage)) }

  /// See ``unretained``. Valid while a ``Backend`` holding the same storage lives.
  struct Unretained: @unchecked Sendable {
    fileprivate let storage: Unmanaged<Storage>

    /// ``Backend/ioctl(_:_:_:_:_:)``, for a handle that keeps the backend alive.
    @discardableResult @inline(__always)
    func ioctl<Argument>(
      _ fd: FileDescriptor, _ request: Int32, _ argument: inout Argument,
      _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
    ) throws(IommufdError) -> Int32 {
      try withUnsafeMutableBytes(of: &argument) { bytes throws(IommufdError) -> Int32 in
        try ioctl(fd, request, pointer: bytes.baseAddress, operation, objects())
      }
    }

    /// The ioctl with `pointer` as its argument: the storage's, without a reference
    /// count around the call; traced, and its failure made an ``IommufdError``.
    @inline(__always)
    func ioctl(
      _ fd: FileDescriptor, _ request: Int32, pointer: UnsafeMutableRawPointer?,
      _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
    ) throws(IommufdError) -> Int32 {
      var failure: Errno?
      let value = storage._withUnsafeGuaranteedRef { storage -> Int32 in
        do throws(Errno) {
          if storage.isKernel { return try KernelSystemCalls().ioctl(fd, UInt(request), pointer) }
          return try storage.ioctl(fd, UInt(request), pointer)
        } catch {
          failure = error
          return -1
        }
      }
      if let failure { throw failed(fd, operation, objects, failure) }
      if storage._withUnsafeGuaranteedRef(\.isTracing) { traceSuccess(fd, operation, objects, value) }
      return value
    }

    /// The failure path, out of line: the call path keeps a small frame.
    @inline(never)
    private func failed(
      _ fd: FileDescriptor, _ operation: IommufdError.Operation, _ objects: () -> [IommufdError.InvolvedObject],
      _ errno: Errno
    ) -> IommufdError {
      backend.failed(fd, operation, objects(), errno)
    }

    /// The trace of a success, out of line.
    @inline(never)
    private func traceSuccess(
      _ fd: FileDescriptor, _ operation: IommufdError.Operation, _ objects: () -> [IommufdError.InvolvedObject],
      _ value: Int32
    ) {
      backend.traceSuccess(fd, operation, objects(), value)
    }

    /// The backend, counted (for the error and trace paths).
    private var backend: Backend { Backend(storage: storage.takeUnretainedValue()) }
  }

  func trace(_ message: @autoclosure () -> String) {
    guard storage.isTracing else { return }
    storage.logger.trace("\(message())")
  }
}
