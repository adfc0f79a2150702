import CIommufd
import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Benchmarks of the simulated kernel, each against a plain baseline measured in the same
// run, printed as figures and ratios. Run with `swift run -c release iommufd-bench`.

func now() -> UInt64 {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// The best of `rounds` timings of `body`, in nanoseconds per `operations`.
func measure(rounds: Int = 5, operations: Int, _ body: () -> Void) -> Double {
  var best = Double.infinity
  for _ in 0..<rounds {
    let start = now()
    body()
    best = min(best, Double(now() - start) / Double(operations))
  }
  return best
}

func format(_ value: Double) -> String {
  let scaled = (value * 100).rounded() / 100
  return "\(scaled)"
}

var generator = SystemRandomNumberGenerator()
var sink: UInt64 = 0

// MARK: 1. IOVA -> host translation against a binary search over a sorted array.

do {
  let areaCount = 100_000
  let simulator = SimulatedKernel()
  let backend = Backend.simulated(simulator)
  let iommufd = try IOMMUFD.open(backend: backend)
  let ioas = try iommufd.allocateIOAS()
  var sorted: [(start: UInt64, last: UInt64, host: UInt64)] = []
  sorted.reserveCapacity(areaCount)
  for index in 0..<areaCount {
    let iova = UInt64(index) * 0x2000 + 0x10_0000
    let host = 0x10_0000_0000 + UInt64(index) * 0x1000
    _ = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt(host))!, length: 0x1000, at: .fixed(iova))
    sorted.append((iova, iova + 0xfff, host))
  }
  let lookups = (0..<1_000_000).map { _ in UInt64(Int.random(in: 0..<areaCount, using: &generator)) * 0x2000 + 0x10_0000 + UInt64.random(in: 0..<0x1000, using: &generator) }
  let fd = iommufd.fileDescriptor
  let id = ioas.id
  let simulated = measure(operations: lookups.count) {
    for iova in lookups { sink &+= simulator.hostAddress(iommufd: fd, ioas: id, iova: iova) ?? 0 }
  }
  let plain = measure(operations: lookups.count) {
    for iova in lookups {
      var low = 0
      var high = sorted.count
      while low < high {
        let mid = (low + high) / 2
        if sorted[mid].start <= iova { low = mid + 1 } else { high = mid }
      }
      if low > 0, sorted[low - 1].last >= iova { sink &+= sorted[low - 1].host + (iova - sorted[low - 1].start) }
    }
  }
  print("translation, \(areaCount) areas: simulator \(format(simulated)) ns/lookup, binary search \(format(plain)) ns/lookup, ratio \(format(simulated / plain))x (goal <= 2x)")
}

// MARK: 2. Simulated 4 KiB device DMA against memcpy.

do {
  let simulator = SimulatedKernel(devices: [SimulatedEduDevice()])
  let backend = Backend.simulated(simulator)
  let iommufd = try IOMMUFD.open(backend: backend)
  let ioas = try iommufd.allocateIOAS()
  let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
  try device.bind(to: iommufd)
  try device.attach(to: ioas)
  let config = try device.regionInfo(VFIOPCIRegion.config)
  try device.write(UInt16(0x0006), region: config, at: 4)  // memory decoding and bus mastering
  let memory = try DMABuffer(length: 1 << 20, backend: backend)
  let mapping = try ioas.map(memory, at: .fixed(0x100_0000))
  let local = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
  let pages = (0..<100_000).map { _ in UInt64.random(in: 0..<256, using: &generator) * 4096 }
  let dma = measure(operations: pages.count) {
    for page in pages { _ = simulator.deviceRead(device: 0, iova: mapping.iova + page, into: local) }
  }
  let copy = measure(operations: pages.count) {
    for page in pages { local.baseAddress!.copyMemory(from: memory.bytes.baseAddress! + Int(page), byteCount: 4096) }
  }
  sink &+= UInt64(local[0])
  print("4 KiB DMA: simulator \(format(4096 / dma)) bytes/ns, memcpy \(format(4096 / copy)) bytes/ns, ratio \(format(copy / dma))x of memcpy bandwidth (goal >= 0.5x)")
  local.deallocate()
}

// MARK: 3. Map and unmap cost with 1k and 1M live mappings.

func mapUnmapCost(live: Int) throws -> Double {
  let backend = Backend.simulated(SimulatedKernel())
  let ioas = try IOMMUFD.open(backend: backend).allocateIOAS()
  let address = UnsafeRawPointer(bitPattern: 0x10_0000_0000)!
  for index in 0..<live {
    _ = try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(UInt64(index) * 0x2000 + 0x10_0000))
  }
  let operations = 20_000
  var random = SystemRandomNumberGenerator()
  let slots = (0..<operations).map { _ in UInt64(Int.random(in: 0..<live, using: &random)) * 0x2000 + 0x11_0000 }
  return measure(rounds: 3, operations: 2 * operations) {
    for iova in slots {
      _ = try? ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(iova))
      _ = try? ioas.unmap(iova: iova, length: 0x1000)
    }
  }
}

do {
  let small = try mapUnmapCost(live: 1_000)
  let large = try mapUnmapCost(live: 1_000_000)
  print("map+unmap: \(format(small)) ns/op with 1k live mappings, \(format(large)) ns/op with 1M, ratio \(format(large / small))x (goal <= 2x)")
}
// MARK: 4. Harvesting the dirty bitmap of 1 GiB against a plain scan of a bit array.

do {
  var configuration = SimulatedKernel.Configuration()
  configuration.vtdDirtyTracking = true
  let simulator = SimulatedKernel(configuration: configuration, devices: [SimulatedEduDevice()])
  let backend = Backend.simulated(simulator)
  let iommufd = try IOMMUFD.open(backend: backend)
  let ioas = try iommufd.allocateIOAS()
  let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
  let id = try device.bind(to: iommufd)
  let hwpt = try HWPageTable(on: ioas, forDevice: id, flags: .dirtyTracking)
  try device.attach(to: hwpt)
  try device.write(UInt16(0x0006), region: try device.regionInfo(VFIOPCIRegion.config), at: 4)
  let gigabyte = 1 << 30
  let memory = try DMABuffer(length: gigabyte, backend: backend)
  let mapping = try ioas.map(memory, at: .fixed(0x1_0000_0000))
  try hwpt.setDirtyTracking(enabled: true)
  let pages = gigabyte / 4096
  var plainBits = [UInt64](repeating: 0, count: pages / 64)
  let byte: [UInt8] = [1]
  for _ in 0..<(pages / 10) {  // about 10% of the pages written by the device
    let page = Int.random(in: 0..<pages, using: &generator)
    plainBits[page / 64] |= 1 << UInt64(page % 64)
    _ = byte.withUnsafeBytes { simulator.deviceWrite(device: 0, iova: mapping.iova + UInt64(page * 4096), from: $0) }
  }
  let expected = plainBits.reduce(0) { $0 + $1.nonzeroBitCount }
  var harvested = 0
  let simulated = measure(operations: 1) {
    let bitmap = try! hwpt.dirtyBitmap(iova: mapping.iova, length: UInt64(gigabyte), pageSize: 4096, clear: false)
    harvested = 0
    for iova in bitmap { harvested += 1; sink &+= iova }
  }
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
  print("dirty harvest of 1 GiB at 4 KiB (\(harvested) of \(expected) dirty pages found): simulator \(format(simulated / 1000)) us, plain bit-array scan \(format(plain / 1000)) us, ratio \(format(simulated / plain))x")
  _ = (device, mapping)
}
// MARK: 4. MMIO: a MappedRegion load (read-locked against unmap) against a bare volatile load.

/// System calls whose `mmap` of a device gives anonymous memory: a BAR to load from, here.
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

do {
  let device = VFIODevice(adopting: FileDescriptor(rawValue: -1), backend: Backend(AnonymousBARCalls()))
  let region = try device.map(region: VFIORegionInfo(index: 0, flags: [.readable, .writable, .mappable], size: 4096, offset: 0))
  let bare = UnsafeMutableRawPointer(mutating: Glibc.mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!)
  let loads = 10_000_000
  var failed = 0
  let locked = measure(operations: loads) {
    for index in 0..<loads {
      do { sink &+= UInt64(try region.load32(at: (index & 0x3ff) * 4)) } catch { failed += 1 }
    }
  }
  let plain = measure(operations: loads) {
    for index in 0..<loads { sink &+= UInt64(ciommufd_mmio_read32(bare + (index & 0x3ff) * 4)) }
  }
  guard failed == 0 else { fatalError("\(failed) MappedRegion loads failed") }
  print("MMIO load32: MappedRegion \(format(locked)) ns (bounds check and the read lock that excludes unmap), bare volatile load \(format(plain)) ns, ratio \(format(locked / plain))x")
  try region.unmap()
  Glibc.munmap(bare, 4096)
}
print("(checksum \(sink % 10))")
