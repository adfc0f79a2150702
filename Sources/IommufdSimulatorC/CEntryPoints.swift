import Iommufd
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The simulated kernel's system calls through a C ABI, so that a C program written for
// /dev/iommu (the kernel's own selftests, a C or Rust user's tests) runs on the simulator
// unchanged: compile it with `-include iommufd_simulator.h` (in this folder) and link this
// library. Each process gets its own simulated kernel (a self-test kernel; Linux 6.12, or
// 7.2 with IOMMUFD_SIMULATOR_RELEASE=7.2), made at the first call. Descriptors the
// simulator did not make, and paths other than /dev/iommu and its device nodes, go to the
// real libc. A forked child has a copy of its parent's simulated kernel, where on Linux the
// two would share the kernel's objects: a documented limit (Docs/Simulator.md).

/// The process's simulated kernel.
nonisolated(unsafe) private var simulated: SimulatedKernel?

private func kernel() -> SimulatedKernel {
  if let simulated { return simulated }
  var configuration = SimulatedKernel.Configuration()
  configuration.selfTest = true
  if let release = getenv("IOMMUFD_SIMULATOR_RELEASE"), String(cString: release) == "7.2" { configuration.release = .linux7_2 }
  let made = SimulatedKernel(configuration: configuration)
  simulated = made
  return made
}

/// Runs `body`; a thrown errno is stored in `errno` and `failure` returned.
private func answer<R>(_ failure: R, _ body: () throws(Errno) -> R) -> R {
  do {
    return try body()
  } catch {
    Glibc.errno = error.rawValue
    return failure
  }
}

/// Descriptors opened on `/proc/self/task/TID/fail-nth`: the simulator's fail-nth.
nonisolated(unsafe) private var failNthFiles: Set<Int32> = []

/// Whether `name` is a thread's fail-nth file (`/proc/self/task/TID/fail-nth`, or
/// `/proc/self/fail-nth`).
private func isFailNth(_ name: String) -> Bool {
  let parts = name.split(separator: "/")
  return parts.last == "fail-nth" && parts.first == "proc" && (parts.count == 3 || (parts.count == 5 && parts[2] == "task"))
}

/// `open(2)`: /dev/iommu and the simulated device nodes open on the simulator, and so does
/// a fail-nth file (the simulator's own fault injection).
@_cdecl("iommufd_simulator_open")
public func simulatorOpen(_ path: UnsafePointer<CChar>, _ flags: Int32, _ mode: UInt32) -> Int32 {
  let name = String(cString: path)
  if isFailNth(name) {
    let fd = Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
    if fd >= 0 { failNthFiles.insert(fd) }
    return fd
  }
  guard name == "/dev/iommu" || name.hasPrefix("/dev/vfio/devices/") else { return Glibc.open(path, flags, mode) }
  return answer(-1) { () throws(Errno) in try kernel().open(FilePath(name), flags: flags).rawValue }
}

/// `close(2)`.
@_cdecl("iommufd_simulator_close")
public func simulatorClose(_ fd: Int32) -> Int32 {
  if failNthFiles.remove(fd) != nil { return Glibc.close(fd) }
  return answer(-1) { () throws(Errno) in
    try kernel().close(FileDescriptor(rawValue: fd))
    return 0
  }
}

/// `ioctl(2)` with a pointer (or integer) argument.
@_cdecl("iommufd_simulator_ioctl")
public func simulatorIoctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer?) -> Int32 {
  answer(-1) { () throws(Errno) in try kernel().ioctl(FileDescriptor(rawValue: fd), request, argument) }
}

/// `read(2)`.
@_cdecl("iommufd_simulator_read")
public func simulatorRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
  answer(-1) { () throws(Errno) in
    try kernel().read(FileDescriptor(rawValue: fd), into: UnsafeMutableRawBufferPointer(start: buffer, count: buffer == nil ? 0 : count))
  }
}

/// `write(2)`.
@_cdecl("iommufd_simulator_write")
public func simulatorWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
  answer(-1) { () throws(Errno) in
    try kernel().write(FileDescriptor(rawValue: fd), from: UnsafeRawBufferPointer(start: buffer, count: buffer == nil ? 0 : count))
  }
}

/// `mmap(2)`: of a simulated descriptor as the simulator answers; everything else for real.
@_cdecl("iommufd_simulator_mmap")
public func simulatorMmap(
  _ address: UnsafeMutableRawPointer?, _ length: Int, _ protection: Int32, _ flags: Int32, _ fd: Int32, _ offset: Int
) -> UnsafeMutableRawPointer? {
  guard fd >= 0, kernel().isSimulated(FileDescriptor(rawValue: fd)) else {
    return Glibc.mmap(address, length, protection, flags, fd, offset)
  }
  return answer(MAP_FAILED) { () throws(Errno) in
    try kernel().mmap(length: length, protection: protection, flags: flags, fd: FileDescriptor(rawValue: fd), offset: Int64(offset))
  }
}

/// `munmap(2)`: for real; a simulated region mapped through ``simulatorMmap(_:_:_:_:_:_:)`` is released.
@_cdecl("iommufd_simulator_munmap")
public func simulatorMunmap(_ address: UnsafeMutableRawPointer?, _ length: Int) -> Int32 {
  guard let address else { return Glibc.munmap(nil, length) }
  return answer(-1) { () throws(Errno) in
    try kernel().munmap(address, length: length)
    return 0
  }
}

/// `pread(2)`: of a fail-nth file, the count left ("0\n" once the failure happened); of a
/// simulated descriptor, as the simulator answers; everything else for real.
@_cdecl("iommufd_simulator_pread")
public func simulatorPread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int, _ offset: Int) -> Int {
  if failNthFiles.contains(fd) {
    let text = Array("\(kernel().nthFailure)\n".utf8)
    guard let buffer, count > 0 else { return 0 }
    let length = min(count, text.count)
    buffer.copyMemory(from: text, byteCount: length)
    return length
  }
  guard fd >= 0, kernel().isSimulated(FileDescriptor(rawValue: fd)) else { return Glibc.pread(fd, buffer, count, offset) }
  return answer(-1) { () throws(Errno) in
    try kernel().pread(FileDescriptor(rawValue: fd), into: UnsafeMutableRawBufferPointer(start: buffer, count: buffer == nil ? 0 : count), offset: Int64(offset))
  }
}

/// `pwrite(2)`: to a fail-nth file, a decimal count that sets the simulator's fail-nth
/// (EINVAL if it is no number); to a simulated descriptor, as the simulator answers;
/// everything else for real.
@_cdecl("iommufd_simulator_pwrite")
public func simulatorPwrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int, _ offset: Int) -> Int {
  if failNthFiles.contains(fd) {
    let text = buffer.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: count), as: UTF8.self) } ?? ""
    guard let value = Int(text.trimmingSuffix(while: { $0 == "\n" })), value >= 0 else {
      Glibc.errno = EINVAL
      return -1
    }
    kernel().nthFailure = value
    return count
  }
  guard fd >= 0, kernel().isSimulated(FileDescriptor(rawValue: fd)) else { return Glibc.pwrite(fd, buffer, count, offset) }
  return answer(-1) { () throws(Errno) in
    try kernel().pwrite(FileDescriptor(rawValue: fd), from: UnsafeRawBufferPointer(start: buffer, count: buffer == nil ? 0 : count), offset: Int64(offset))
  }
}

extension String {
  /// The string without the trailing characters that match `predicate`.
  fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
    var result = self
    while let last = result.last, predicate(last) { result.removeLast() }
    return result
  }
}
