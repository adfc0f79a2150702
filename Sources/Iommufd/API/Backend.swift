import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

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
  /// Why this backend was chosen, for users and logs.
  public let reason: String

  /// Wraps `calls`, tracing to `logger`.
  public init(_ calls: any SystemCalls, logger: Logger = Logger(label: "iommufd"), reason: String = "chosen explicitly") {
    self.calls = calls
    self.logger = logger
    self.reason = reason
  }

  /// The Linux kernel.
  public static var kernel: Backend { Backend(KernelSystemCalls(), reason: "the kernel backend was chosen explicitly") }

  /// A simulated kernel (see ``SimulatedKernel``).
  public static func simulated(_ kernel: SimulatedKernel, logger: Logger = Logger(label: "iommufd")) -> Backend {
    Backend(kernel, logger: logger, reason: "the simulated kernel was chosen explicitly")
  }

  /// The kernel when this host has `/dev/iommu`, else a simulated kernel with `devices`;
  /// ``reason`` says which and why.
  public static func automatic(
    simulating devices: @autoclosure () -> [SimulatedPCIDevice], logger: Logger = Logger(label: "iommufd")
  ) -> Backend {
    if access("/dev/iommu", F_OK) == 0 {
      return Backend(KernelSystemCalls(), logger: logger, reason: "/dev/iommu exists: using the kernel")
    }
    return Backend(
      SimulatedKernel(devices: devices()), logger: logger,
      reason: "no /dev/iommu on this host (the kernel lacks CONFIG_IOMMUFD): using the simulated kernel")
  }

  /// The simulated kernel behind this backend, if it is one.
  public var simulator: SimulatedKernel? { calls as? SimulatedKernel }

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

  /// Issues `request` with an integer argument (the legacy VFIO requests that take one).
  @discardableResult
  func ioctl(
    _ fd: FileDescriptor, _ request: Int32, argumentValue: Int,
    _ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) -> Int32 {
    let result = Result { () throws(Errno) -> Int32 in try calls.ioctl(fd, UInt(request), UnsafeMutableRawPointer(bitPattern: argumentValue)) }
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
