import CIommufd
import Iommufd
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// A simulated device's DMA against memcpy, the dirty-bitmap harvest against a bare scan of
// a bit array, and a MappedRegion load against a bare volatile load.

/// A simulated edu, bound and attached to an IOAS, with bus mastering on.
struct SimulatedMachine {
  let simulator: SimulatedKernel
  let backend: Backend
  let iommufd: IOMMUFD
  let ioas: IOAS
  let device: VFIODevice
  let deviceID: ObjectID

  init(dirtyTracking: Bool = false) throws {
    var configuration = SimulatedKernel.Configuration()
    configuration.vtdDirtyTracking = dirtyTracking
    simulator = SimulatedKernel(configuration: configuration, devices: [SimulatedEduDevice()])
    backend = Backend.simulated(simulator)
    iommufd = try IOMMUFD.open(backend: backend)
    ioas = try iommufd.allocateIOAS()
    device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    deviceID = try device.bind(to: iommufd)
  }

  func enableBusMastering() throws {
    try device.write(UInt16(0x0006), region: try device.regionInfo(VFIOPCIRegion.config), at: 4)
  }
}

/// 4 KiB device reads through the simulated IOMMU against memcpy of the same pages.
func deviceDMA() {
  do {
    let machine = try SimulatedMachine()
    try machine.device.attach(to: machine.ioas)
    try machine.enableBusMastering()
    let memory = try DMABuffer(length: 1 << 20, backend: machine.backend)
    let mapping = try machine.ioas.map(memory, at: .fixed(0x100_0000))
    let local = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
    defer { local.deallocate() }
    var random = SystemRandomNumberGenerator()
    let pages = (0..<100_000).map { _ in UInt64.random(in: 0..<256, using: &random) * 4096 }
    var failed = 0
    let base = mapping.iova
    let dma = measure(operations: pages.count) {
      for page in pages where !machine.simulator.deviceRead(device: 0, iova: base + page, into: local) { failed += 1 }
    }
    guard failed == 0 else { abort("\(failed) simulated DMA reads", Errno.badAddress) }
    let copy = measure(operations: pages.count) {
      for page in pages { local.baseAddress!.copyMemory(from: memory.bytes.baseAddress! + Int(page), byteCount: 4096) }
    }
    sink &+= UInt64(local[0])
    let ratio = copy.minimum / dma.minimum
    report(
      "4 KiB DMA", "simulator \(format(4096 / dma.minimum)) bytes/ns (median \(format(4096 / dma.median))), memcpy \(format(4096 / copy.minimum)) bytes/ns: \(format(ratio))x of memcpy's bandwidth",
      goal: ">= 0.5x", met: ratio >= 0.5)
  } catch { abort("the DMA benchmark", error) }
}

/// The dirty bitmap of 1 GiB at 4 KiB with about 10% of the pages written by the device,
/// against a scan of a plain bit array of the same pages.
func dirtyHarvest() {
  do {
    let machine = try SimulatedMachine(dirtyTracking: true)
    let hwpt = try HWPageTable(on: machine.ioas, forDevice: machine.deviceID, flags: .dirtyTracking)
    try machine.device.attach(to: hwpt)
    try machine.enableBusMastering()
    let gigabyte = 1 << 30
    let memory = try DMABuffer(length: gigabyte, backend: machine.backend)
    let mapping = try machine.ioas.map(memory, at: .fixed(0x1_0000_0000))
    try hwpt.setDirtyTracking(enabled: true)
    let pages = gigabyte / 4096
    var plainBits = [UInt64](repeating: 0, count: pages / 64)
    let byte: [UInt8] = [1]
    var random = SystemRandomNumberGenerator()
    for _ in 0..<(pages / 10) {
      let page = Int.random(in: 0..<pages, using: &random)
      plainBits[page / 64] |= 1 << UInt64(page % 64)
      let written = byte.withUnsafeBytes { machine.simulator.deviceWrite(device: 0, iova: mapping.iova + UInt64(page * 4096), from: $0) }
      guard written else { abort("a simulated DMA write", Errno.badAddress) }
    }
    let expected = plainBits.reduce(0) { $0 + $1.nonzeroBitCount }
    var harvested = 0
    let simulated = try measure(operations: 1) {
      let bitmap = try hwpt.dirtyBitmap(iova: mapping.iova, length: UInt64(gigabyte), pageSize: 4096, clear: false)
      harvested = 0
      for iova in bitmap { harvested += 1; sink &+= iova }
    }
    guard harvested == expected else { abort("the harvest (\(harvested) of \(expected) dirty pages)", Errno.ioError) }
    let plain = measure(operations: 1) {
      var found = 0
      for (index, word) in plainBits.enumerated() {
        var bits = word
        while bits != 0 {
          sink &+= mapping.iova + UInt64((index * 64 + bits.trailingZeroBitCount) * 4096)
          bits &= bits - 1
          found += 1
        }
      }
      sink &+= UInt64(found)
    }
    let ratio = simulated.minimum / plain.minimum
    report(
      "dirty harvest of 1 GiB at 4 KiB (\(expected) dirty pages)",
      "simulator \(format(simulated.minimum / 1000)) us (median \(format(simulated.median / 1000))), bit-array scan \(format(plain.minimum / 1000)) us: \(format(ratio))x",
      goal: "<= 4x", met: ratio <= 4)
    _ = mapping
  } catch { abort("the dirty-harvest benchmark", error) }
}

/// System calls whose `mmap` of a device gives anonymous memory: a BAR to load from.
struct AnonymousBARCalls: SystemCalls {
  func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor { throw .noSuchFileOrDirectory }
  func close(_ fd: FileDescriptor) throws(Errno) {}
  func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 { throw .inappropriateIOCTLForDevice }
  func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    guard let address = Glibc.mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), address != MAP_FAILED
    else { throw Errno(rawValue: Glibc.errno) }
    return address
  }
  func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) {
    guard Glibc.munmap(address, length) == 0 else { throw Errno(rawValue: Glibc.errno) }
  }
  func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int { throw .badFileDescriptor }
  func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int { throw .badFileDescriptor }
  func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int { throw .badFileDescriptor }
  func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int { throw .badFileDescriptor }
  func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor { throw .notSupported }
}

/// A MappedRegion load (bounds check and the read lock that excludes unmap) against a bare
/// volatile load.
func mmioLoads() {
  do {
    let device = VFIODevice(adopting: FileDescriptor(rawValue: -1), backend: Backend(AnonymousBARCalls()))
    let region = try device.map(region: VFIORegionInfo(index: 0, flags: [.readable, .writable, .mappable], size: 4096, offset: 0))
    let bare = UnsafeMutableRawPointer(mutating: Glibc.mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!)
    defer { Glibc.munmap(bare, 4096) }
    let loads = 10_000_000
    let locked = try measure(operations: loads) {
      for index in 0..<loads { sink &+= UInt64(try region.load32(at: (index & 0x3ff) * 4)) }
    }
    let plain = measure(operations: loads) {
      for index in 0..<loads { sink &+= UInt64(ciommufd_mmio_read32(bare + (index & 0x3ff) * 4)) }
    }
    // No goal: the floor is a load from cached memory; a real device's register read
    // takes about a microsecond, next to which the guard's two atomic operations vanish.
    note(
      "MMIO load32",
      "MappedRegion \(format(locked.minimum)) ns (median \(format(locked.median))): bounds check and the unmap guard's two atomic operations; bare volatile load of cached memory \(format(plain.minimum)) ns")
    try region.unmap()
  } catch { abort("the MMIO benchmark", error) }
}
