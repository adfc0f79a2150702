import Iommufd
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

/// `open(2)`: /dev/iommu and the simulated device nodes open on the simulator.
@_cdecl("iommufd_simulator_open")
public func simulatorOpen(_ path: UnsafePointer<CChar>, _ flags: Int32, _ mode: UInt32) -> Int32 {
  let name = String(cString: path)
  guard name == "/dev/iommu" || name.hasPrefix("/dev/vfio/devices/") else { return Glibc.open(path, flags, mode) }
  return answer(-1) { () throws(Errno) in try kernel().open(FilePath(name), flags: flags).rawValue }
}

/// `close(2)`.
@_cdecl("iommufd_simulator_close")
public func simulatorClose(_ fd: Int32) -> Int32 {
  answer(-1) { () throws(Errno) in
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

/// `munmap(2)`: for real; a simulated region mapped through ``simulatorMmap`` is released.
@_cdecl("iommufd_simulator_munmap")
public func simulatorMunmap(_ address: UnsafeMutableRawPointer?, _ length: Int) -> Int32 {
  guard let address else { return Glibc.munmap(nil, length) }
  return answer(-1) { () throws(Errno) in
    try kernel().munmap(address, length: length)
    return 0
  }
}
