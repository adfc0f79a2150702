import Iommufd
import Synchronization
import SystemPackage

/// A test double for the seam: records every call with the bytes of its argument and lets
/// each test script the kernel's answer, so the tests can check what the API encodes and
/// how it decodes replies and errors. It is not a backend users run on.
final class RecordingSystemCalls: SystemCalls {
  struct Call: Equatable {
    var name: String
    var fd: Int32
    var request: UInt = 0
    var bytes: [UInt8] = []
  }

  typealias Responder = @Sendable (_ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32

  private let state = Mutex<(calls: [Call], nextFD: Int32)>(([], 100))
  private let responder: Responder
  private let openFailures: [String: Errno]

  /// `responder` plays the kernel: it may write the reply into the argument or throw.
  /// Opening a path of `openFailures` fails with its errno (and is recorded).
  init(openFailures: [String: Errno] = [:], responder: @escaping Responder = { _, _ in 0 }) {
    self.openFailures = openFailures
    self.responder = responder
  }

  /// How many bytes of an argument to record: the iommufd struct size, or a VFIO argsz.
  static func argumentSize(_ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int {
    let iommufdSizes: [UInt: Int] = [
      0x3B80: 8, 0x3B81: 12, 0x3B82: 24, 0x3B83: 40, 0x3B84: 32, 0x3B85: 40, 0x3B86: 24, 0x3B87: 24,
      0x3B88: 12, 0x3B89: 48, 0x3B8A: 40,
    ]
    if let size = iommufdSizes[request] { return size }
    if request == 0x3B6F { return 0 }  // VFIO_DEVICE_RESET has no argument
    return Int(argument.load(as: UInt32.self))  // VFIO: argsz
  }

  var calls: [Call] { state.withLock { $0.calls } }
  var ioctls: [Call] { calls.filter { $0.name == "ioctl" } }

  private func record(_ call: Call) { state.withLock { $0.calls.append(call) } }
  private func newFD() -> Int32 { state.withLock { $0.nextFD += 1; return $0.nextFD } }

  func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor {
    if let failure = openFailures[path.string] {
      record(Call(name: "open \(path)", fd: -1))
      throw failure
    }
    let fd = newFD()
    record(Call(name: "open \(path)", fd: fd))
    return FileDescriptor(rawValue: fd)
  }

  func close(_ fd: FileDescriptor) throws(Errno) { record(Call(name: "close", fd: fd.rawValue)) }

  func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
    let bytes = argument.map { Array(UnsafeRawBufferPointer(start: $0, count: Self.argumentSize(request, $0))) } ?? []
    record(Call(name: "ioctl", fd: fd.rawValue, request: request, bytes: bytes))
    return try responder(request, argument)
  }

  func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    record(Call(name: "mmap", fd: fd?.rawValue ?? -1))
    return try KernelSystemCalls().mmap(length: length, protection: protection, flags: flags, fd: nil, offset: 0)
  }

  func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) {
    record(Call(name: "munmap", fd: -1))
    try KernelSystemCalls().munmap(address, length: length)
  }

  func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int {
    record(Call(name: "pread \(offset)", fd: fd.rawValue))
    for index in buffer.indices { buffer[index] = UInt8(truncatingIfNeeded: Int(offset) + index) }
    return buffer.count
  }

  func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int {
    record(Call(name: "pwrite \(offset)", fd: fd.rawValue, bytes: Array(buffer)))
    return buffer.count
  }

  func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
    record(Call(name: "read", fd: fd.rawValue))
    return 0
  }

  func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
    record(Call(name: "write", fd: fd.rawValue, bytes: Array(buffer)))
    return buffer.count
  }

  func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor {
    let fd = newFD()
    record(Call(name: "eventfd", fd: fd))
    return FileDescriptor(rawValue: fd)
  }
}

/// Reads a little-endian integer at `offset` of recorded bytes.
func field<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type = T.self) -> T {
  bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
}

/// Writes a little-endian integer at `offset` of an ioctl argument.
func store<T: FixedWidthInteger>(_ value: T, _ argument: UnsafeMutableRawPointer?, _ offset: Int) {
  argument!.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
}

/// Reads a little-endian integer at `offset` of an ioctl argument.
func load<T: FixedWidthInteger>(_ argument: UnsafeMutableRawPointer?, _ offset: Int, as: T.Type = T.self) -> T {
  T(littleEndian: argument!.loadUnaligned(fromByteOffset: offset, as: T.self))
}
