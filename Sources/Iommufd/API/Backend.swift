import Logging
import SystemPackage

/// The system-call seam a handle uses, with a trace log of every call.
///
/// ``kernel`` makes real system calls. Any other ``SystemCalls`` value (a simulated kernel,
/// a recorder in a test) can be wrapped with ``init(_:logger:)``; the API above it is the
/// same. Each call leaves one line at trace level on ``logger``: name, ids, result.
public struct Backend: Sendable {
  /// The system calls this backend makes.
  public let calls: any SystemCalls
  /// Where each system call is traced (at `.trace`) and release failures are reported.
  public let logger: Logger

  /// Wraps `calls`, tracing to `logger`.
  public init(_ calls: any SystemCalls, logger: Logger = Logger(label: "iommufd")) {
    self.calls = calls
    self.logger = logger
  }

  /// The Linux kernel.
  public static var kernel: Backend { Backend(KernelSystemCalls()) }

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
  /// trace line and in the error.
  @discardableResult
  func ioctl<Argument>(
    _ fd: FileDescriptor, _ request: Int32, _ argument: inout Argument,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    let result: Result<Int32, Errno> = withUnsafeMutableBytes(of: &argument) { bytes in
      Result { () throws(Errno) -> Int32 in try calls.ioctl(fd, UInt(request), bytes.baseAddress) }
    }
    return try finish(fd, operation, objects(), result)
  }

  /// Issues `request` with a raw buffer as its argument (structs with trailing data).
  @discardableResult
  func ioctl(
    _ fd: FileDescriptor, _ request: Int32, buffer: UnsafeMutableRawBufferPointer,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    let result = Result { () throws(Errno) -> Int32 in try calls.ioctl(fd, UInt(request), buffer.baseAddress) }
    return try finish(fd, operation, objects(), result)
  }

  /// Issues `request` with no argument.
  @discardableResult
  func ioctl(
    _ fd: FileDescriptor, _ request: Int32,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    let result = Result { () throws(Errno) -> Int32 in try calls.ioctl(fd, UInt(request), nil) }
    return try finish(fd, operation, objects(), result)
  }

  private func finish(
    _ fd: FileDescriptor, _ operation: IommufdError.Operation,
    _ objects: [IommufdError.InvolvedObject], _ result: Result<Int32, Errno>
  ) throws(IommufdError) -> Int32 {
    let names = objects.map(\.description).joined(separator: " ")
    switch result {
    case .success(let value):
      trace("\(operation.rawValue) fd \(fd.rawValue) \(names) -> \(value)")
      return value
    case .failure(let errno):
      trace("\(operation.rawValue) fd \(fd.rawValue) \(names) -> \(errno)")
      throw IommufdError(operation, errno, objects: [.fd(fd)] + objects)
    }
  }

  func trace(_ message: @autoclosure () -> String) {
    logger.trace("\(message())")
  }
}
