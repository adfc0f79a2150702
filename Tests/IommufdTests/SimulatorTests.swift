import CIommufd
import Foundation
import Iommufd
import IommufdSimulator
import IommufdEdu
import Synchronization
import SystemPackage
import Testing

/// What only the simulated kernel can show: pin accounting, the memlock limit, fault
/// injection, concurrency and the DMA fault record.
@Suite("simulated kernel")
struct SimulatorTests {
  /// A simulated machine with an edu device, bound and attached, bus mastering on.
  struct Machine {
    let simulator: SimulatedKernel
    let backend: Backend
    let iommufd: IOMMUFD
    let ioas: IOAS
    let device: VFIODevice

    init(configuration: SimulatedKernel.Configuration = .init(), attach: Bool = true) throws {
      simulator = SimulatedKernel(configuration: configuration, devices: [SimulatedEduDevice()])
      backend = .simulated(simulator)
      iommufd = try IOMMUFD.open(backend: backend)
      ioas = try iommufd.allocateIOAS()
      device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
      try device.bind(to: iommufd)
      if attach { try device.attach(to: ioas) }
      try device.write(UInt16(0x0006), region: try device.regionInfo(VFIOPCIRegion.config), at: 4)
    }
  }

  static func limited(_ bytes: UInt64) -> SimulatedKernel.Configuration {
    var configuration = SimulatedKernel.Configuration()
    configuration.canLockMemory = false
    configuration.memoryLockLimit = bytes
    return configuration
  }

  @Test("page requests (7.2): a PRI-capable device's DMA to an unmapped or read-only IOVA on a fault-capable HWPT becomes a page request; answered and mapped, the retry succeeds")
  func pageRequests() throws {
    var configuration = SimulatedKernel.Configuration()
    configuration.release = .linux7_2
    let edu = SimulatedEduDevice()
    edu.supportsPageRequests = true
    let simulator = SimulatedKernel(configuration: configuration, devices: [edu])
    let backend = Backend.simulated(simulator)
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    let id = try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    let queue = try iommufd.allocateFaultQueue()
    let hwpt = try HWPageTable(on: ioas, forDevice: id, faultQueue: queue)
    try device.attach(to: hwpt)
    try device.write(UInt16(0x0006), region: try device.regionInfo(VFIOPCIRegion.config), at: 4)

    var bytes = [UInt8](repeating: 0, count: 16)
    #expect(!bytes.withUnsafeMutableBytes { simulator.deviceRead(device: 0, iova: 0x10_0040, into: $0) })
    let buffer = try DMABuffer(length: 4096, backend: backend)
    let mapping = try ioas.map(buffer, at: .fixed(0x20_0000), access: .readable)
    #expect(!bytes.withUnsafeBytes { simulator.deviceWrite(device: 0, iova: 0x20_0010, from: $0) })
    let faults = try queue.read()
    #expect(faults == [
      PageFault(flags: 2, deviceID: id, pasid: 0, groupID: 0, permissions: 1, address: 0x10_0000, length: 0, cookie: 1),
      PageFault(flags: 2, deviceID: id, pasid: 0, groupID: 1, permissions: 2, address: 0x20_0000, length: 0, cookie: 2),
    ])
    #expect(simulator.dmaFaults.map(\.reason) == [
      "IOVA 0x100040 is not mapped; page request queued", "IOVA 0x200010 is not mapped writable; page request queued",
    ])
    buffer.bytes[0x40] = 0x5A
    let page = try ioas.map(buffer, at: .fixed(0x10_0000), access: .readable)
    try queue.respond(to: 1, with: .success)
    #expect(bytes.withUnsafeMutableBytes { simulator.deviceRead(device: 0, iova: 0x10_0040, into: $0) })
    #expect(bytes[0] == 0x5A)
    try queue.respond(to: 2, with: .invalid)
    #expect(try queue.read() == [])
    _ = (mapping.iova, page.iova)
    try device.detach()
  }

  @Test("OBJ-9: pages are pinned only while the IOAS has a domain, shared by COPY, released by unmap and detach")
  func pinning() throws {
    let machine = try Machine(attach: false)
    let buffer = try DMABuffer(length: 4 * 4096, backend: machine.backend)
    var mapping = try machine.ioas.map(buffer, at: .fixed(0x10_0000))
    #expect(machine.simulator.pinnedPages == 0)
    try machine.device.attach(to: machine.ioas)
    #expect(machine.simulator.pinnedPages == 4)
    let other = try machine.iommufd.allocateIOAS()
    _ = try other.copy(from: machine.ioas, sourceIOVA: 0x10_0000, length: 4 * 4096)
    try machine.device.attach(to: other)
    #expect(machine.simulator.pinnedPages == 4)  // the same pages, through the copy
    try machine.device.detach()
    #expect(machine.simulator.pinnedPages == 0)
    try machine.device.attach(to: machine.ioas)
    try mapping.unmap()
    #expect(machine.simulator.pinnedPages == 0)
  }

  @Test("OPT-6/MAP-10: over RLIMIT_MEMLOCK a pin fails with ENOMEM and leaves no mapping; within it, pages are charged")
  func memlockLimit() throws {
    let machine = try Machine(configuration: Self.limited(2 * 4096))
    let buffer = try DMABuffer(length: 3 * 4096, backend: machine.backend)
    let address = UnsafeRawPointer(buffer.bytes.baseAddress!)
    #expect(errno { try machine.ioas.unsafeMap(address: address, length: 3 * 4096, at: .fixed(0x10_0000)) } == .noMemory)
    #expect(errno { try machine.ioas.unmap(iova: 0x10_0000, length: 3 * 4096) } == .noSuchFileOrDirectory)
    #expect(machine.simulator.chargedPages == 0)
    _ = try machine.ioas.unsafeMap(address: address, length: 2 * 4096, at: .fixed(0x10_0000))
    #expect(machine.simulator.chargedPages == 2)
    try machine.ioas.unmapAll()
    #expect(machine.simulator.chargedPages == 0)
  }

  @Test("IOAS-2: attaching an IOAS whose mappings exceed the limit fails with ENOMEM and consumes no id")
  func attachOverLimit() throws {
    let machine = try Machine(configuration: Self.limited(4096), attach: false)
    let buffer = try DMABuffer(length: 2 * 4096, backend: machine.backend)
    let mapping = try machine.ioas.map(buffer, at: .fixed(0x10_0000))
    #expect(errno { try machine.device.attach(to: machine.ioas) } == .noMemory)
    #expect(mapping.length == 2 * 4096)
    #expect(machine.device.attachedPageTableID == nil)
    #expect(try machine.iommufd.allocateIOAS().id == ObjectID(3))  // ids 1 and 2 are the IOAS and the device
  }

  @Test("translation with thousands of mappings, mapped and unmapped at random, agrees with a model at every edge")
  func translationAgreesWithModel() throws {
    let simulator = SimulatedKernel()
    let iommufd = try IOMMUFD.open(backend: .simulated(simulator))
    let ioas = try iommufd.allocateIOAS()
    // No device is attached: nothing is pinned, so the user addresses need no memory.
    var model: [UInt64: (last: UInt64, host: UInt64)] = [:]
    var random: UInt64 = 0x2545_F491_4F6C_DD1D
    func next(_ bound: UInt64) -> UInt64 {
      random = random &* 6364136223846793005 &+ 1442695040888963407
      return (random >> 33) % bound
    }
    let base: UInt64 = 0x100_0000
    let slots: UInt64 = 12_000  // pages, so that some thousands of mappings live at once
    func expected(_ iova: UInt64) -> UInt64? {
      // Mappings are at most 4 pages long: only the starts up to 3 pages below can hold it.
      for back in 0..<4 as Range<UInt64> where iova >= back * 0x1000 {
        let start = (iova & ~0xfff) - back * 0x1000
        if let area = model[start], area.last >= iova { return area.host + (iova - start) }
      }
      return nil
    }
    func check(_ iova: UInt64) {
      let found = simulator.hostAddress(iommufd: iommufd.fileDescriptor, ioas: ioas.id, iova: iova)
      #expect(found == expected(iova), "IOVA 0x\(String(iova, radix: 16)) with \(model.count) mappings")
    }
    for round in 0..<12_000 {
      let start = base + next(slots) * 0x1000
      let pages = 1 + next(4)
      let last = start + pages * 0x1000 - 1
      // An area that overlaps this one starts at most 3 pages below it.
      let overlaps = stride(from: start - 3 * 0x1000, through: last, by: 0x1000).contains { model[$0].map { $0.last >= start } ?? false }
      if let area = model[start], round % 3 == 0 {
        #expect(try ioas.unmap(iova: start, length: area.last - start + 1) == area.last - start + 1)
        model[start] = nil
      } else if !overlaps {
        let host = 0x40_0000_0000 + next(1 << 20) * 0x1000
        let mapped = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt(host))!, length: pages * 0x1000, at: .fixed(start))
        #expect(mapped == start)
        model[start] = (last, host)
      }
      if round % 1000 == 999 {
        // Every edge of every mapping, the page past it and a random IOVA per mapping.
        for (start, area) in model {
          for iova in [start, start + 0x7ff, area.last, area.last + 1, start - 1, base + next(slots * 0x1000)] { check(iova) }
        }
      }
    }
    #expect(model.count > 2_000)
    check(0)
    check(.max)
  }

  @Test("fault injection: the n-th ioctl, allocation or pin fails with the chosen errno and changes nothing (GEN-11)")
  func faultInjection() throws {
    let machine = try Machine()
    machine.simulator.injectFailure(at: .objectAllocation, after: 1, errno: .noMemory)
    let failed = try #require(throws: IommufdError.self) { try machine.iommufd.allocateIOAS() }
    #expect(failed.errno == .noMemory && failed.operation == .ioasAlloc)
    #expect(try machine.iommufd.allocateIOAS().id == ObjectID(4))  // 1 IOAS, 2 device, 3 HWPT

    machine.simulator.injectFailure(at: .ioctl, after: 2, errno: .interrupted)
    _ = try machine.ioas.iovaRanges()
    #expect(errno { try machine.ioas.iovaRanges() } == .interrupted)
    _ = try machine.ioas.iovaRanges()

    let buffer = try DMABuffer(length: 4096, backend: machine.backend)
    machine.simulator.injectFailure(at: .pinning, after: 1, errno: .badAddress)
    #expect(errno { _ = try machine.ioas.map(buffer, at: .fixed(0x10_0000)) } == .badAddress)
    #expect(machine.simulator.pinnedPages == 0)
    #expect(errno { try machine.ioas.unmap(iova: 0x10_0000, length: 4096) } == .noSuchFileOrDirectory)
    var mapping = try machine.ioas.map(buffer, at: .fixed(0x10_0000))
    #expect(machine.simulator.pinnedPages == 1)
    try mapping.unmap()
  }

  @Test("a child made by fork(2) reads its own memory: the simulated kernel reads an argument the child changed after the fork, not its parent's copy")
  func forkedChildReadsItsOwnMemory() throws {
    let kernel = SimulatedKernel()
    let fd = try kernel.open("/dev/iommu", flags: O_RDWR)
    var option = ciommufd_iommu_option()
    option.size = UInt32(MemoryLayout<ciommufd_iommu_option>.size)
    option.option_id = 0  // IOMMU_OPTION_RLIMIT_MODE
    option.op = 1  // IOMMU_OPTION_OP_GET
    _ = try withUnsafeMutableBytes(of: &option) { try kernel.ioctl(fd, UInt(CIOMMUFD_IOMMU_OPTION), $0.baseAddress) }
    let child = fork()
    if child == 0 {
      // The parent's copy still says GET, which succeeds; the child's says op 7: EOPNOTSUPP.
      option.op = 7
      let result = Result { () throws(Errno) in
        try withUnsafeMutableBytes(of: &option) { (bytes) throws(Errno) in try kernel.ioctl(fd, UInt(CIOMMUFD_IOMMU_OPTION), bytes.baseAddress) }
      }
      _exit(result == .failure(.notSupported) ? 0 : 1)
    }
    #expect(child > 0)
    var status: Int32 = 0
    for _ in 0..<1000 where waitpid(child, &status, WNOHANG) == 0 { usleep(10_000) }
    if kill(child, 0) == 0 { kill(child, SIGKILL); waitpid(child, &status, 0) }
    #expect(status == 0, "the child saw the wrong memory (status \(status))")
  }

  @Test("ALLOW_IOVAS with 100,000 ranges: all allowed, automatic IOVAs come from them; an overlap at the last entry is EINVAL and keeps the old list", .timeLimit(.minutes(1)))
  func manyAllowedRanges() throws {
    let machine = try Machine(attach: false)
    let ranges = (0..<100_000).map { IOVARange(start: UInt64($0) * 0x10_0000 + 0x1_0000_0000, last: UInt64($0) * 0x10_0000 + 0x1_0000_ffff) }
    try machine.ioas.allowIOVAs(ranges)
    let buffer = try DMABuffer(length: 4096, backend: machine.backend)
    let iova = try machine.ioas.map(buffer).iova
    #expect(ranges.contains { $0.start <= iova && iova <= $0.last })
    #expect(errno { try machine.ioas.allowIOVAs(ranges + [ranges[50_000]]) } == .invalidArgument)
  }

  @Test("fail-nth: the n-th fault point from now (open of /dev/iommu, ioctl, id, pin) fails with ENOMEM and reads back 0; unreached, what is left; 0 disables")
  func failNth() throws {
    let kernel = SimulatedKernel()
    kernel.nthFailure = 1
    #expect(throws: Errno.noMemory) { try kernel.open("/dev/iommu", flags: O_RDWR) }
    #expect(kernel.nthFailure == 0)
    let backend = Backend.simulated(kernel)
    let iommufd = try IOMMUFD.open(backend: backend)
    kernel.nthFailure = 2  // the ioctl, then the id: the id fails
    #expect(errno { try iommufd.allocateIOAS() } == .noMemory)
    #expect(kernel.nthFailure == 0)
    kernel.nthFailure = 10
    let ioas = try iommufd.allocateIOAS()  // two points
    #expect(kernel.nthFailure == 8)
    kernel.nthFailure = 0
    #expect(ioas.id == ObjectID(1))  // the failed allocation took nothing
  }

  @Test("concurrency: maps from many threads are atomic: each fixed IOVA is taken exactly once")
  func concurrentMaps() throws {
    let machine = try Machine()
    let buffer = try DMABuffer(length: 4096, backend: machine.backend)
    let address = UInt(bitPattern: buffer.bytes.baseAddress!)
    // Atomic counters, which ThreadSanitizer sees (it cannot see Synchronization.Mutex on
    // Linux, and would report the counts as races).
    let ok = Atomic<Int>(0)
    let exists = Atomic<Int>(0)
    let other = Atomic<Int>(0)
    let ioas = machine.ioas
    DispatchQueue.concurrentPerform(iterations: 8) { thread in
      for index in 0..<200 {
        // Every thread tries the same 200 IOVAs: one map wins each.
        let iova = 0x100_0000 + UInt64(index) * 0x1000
        do {
          _ = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: address)!, length: 4096, at: .fixed(iova))
          ok.wrappingAdd(1, ordering: .relaxed)
        } catch let error as IommufdError where error.errno == .fileExists {
          exists.wrappingAdd(1, ordering: .relaxed)
        } catch {
          other.wrappingAdd(1, ordering: .relaxed)
        }
        _ = thread
      }
    }
    let counts = (ok: ok.load(ordering: .relaxed), exists: exists.load(ordering: .relaxed), other: other.load(ordering: .relaxed))
    #expect(counts.ok == 200 && counts.exists == 1400 && counts.other == 0)
    #expect(machine.simulator.pinnedPages == 200)
    #expect(try ioas.unmapAll() == 200 * 4096)
    #expect(machine.simulator.pinnedPages == 0)
  }

  @Test("DMA faults say why: bus mastering off, not attached, unmapped, wrong permission; nothing moves")
  func dmaFaults() throws {
    let machine = try Machine()
    let buffer = try DMABuffer(length: 4096, backend: machine.backend)
    let mapping = try machine.ioas.map(buffer, at: .fixed(0x10_0000), access: .readable)
    #expect(mapping.access == .readable)
    var data: [UInt8] = [1, 2, 3, 4]
    let simulator = machine.simulator
    #expect(data.withUnsafeBytes { simulator.deviceWrite(device: 0, iova: 0x10_0000, from: $0) } == false)
    #expect(data.withUnsafeMutableBytes { simulator.deviceRead(device: 0, iova: 0x10_0000, into: $0) })
    #expect(data == [0, 0, 0, 0])
    #expect(data.withUnsafeMutableBytes { simulator.deviceRead(device: 0, iova: 0x10_0ffe, into: $0) } == false)
    try machine.device.write(UInt16(0x0002), region: try machine.device.regionInfo(VFIOPCIRegion.config), at: 4)
    #expect(data.withUnsafeMutableBytes { simulator.deviceRead(device: 0, iova: 0x10_0000, into: $0) } == false)
    try machine.device.write(UInt16(0x0006), region: try machine.device.regionInfo(VFIOPCIRegion.config), at: 4)
    try machine.device.detach()
    #expect(data.withUnsafeMutableBytes { simulator.deviceRead(device: 0, iova: 0x10_0000, into: $0) } == false)
    #expect(simulator.dmaFaults.map(\.reason) == [
      "IOVA 0x100000 is not mapped writable",
      "IOVA 0x101000 is not mapped",
      "bus mastering is disabled",
      "the device is not attached: DMA is blocked",
    ])
    #expect(buffer.bytes.prefix(4).allSatisfy { $0 == 0 })
  }

  @Test("teardown: closing everything leaves no simulated file open and no page pinned")
  func teardown() throws {
    let simulator: SimulatedKernel
    do {
      let machine = try Machine()
      simulator = machine.simulator
      let buffer = try DMABuffer(length: 8192, backend: machine.backend)
      let mapping = try machine.ioas.map(buffer)
      #expect(mapping.length == 8192)
      #expect(simulator.openFileCount == 2)
      #expect(simulator.pinnedPages == 2)
    }
    #expect(simulator.openFileCount == 0)
    #expect(simulator.pinnedPages == 0)
  }

  @Test("device DMA writes through a dirty-tracking HWPT set dirty bits per IO page, as the kernel's mock does")
  func dmaDirtyBits() throws {
    var configuration = SimulatedKernel.Configuration()
    configuration.vtdDirtyTracking = true
    let machine = try Machine(configuration: configuration, attach: false)
    let id = try #require(machine.device.deviceID)
    #expect(try machine.iommufd.hardwareInfo(device: id).capabilities == .dirtyTracking)
    let hwpt = try HWPageTable(on: machine.ioas, forDevice: id, flags: .dirtyTracking)
    try machine.device.attach(to: hwpt)
    let buffer = try DMABuffer(length: 8 * 4096, backend: machine.backend)
    let mapping = try machine.ioas.map(buffer, at: .fixed(0x10_0000))
    let data = [UInt8](repeating: 7, count: 10)
    #expect(data.withUnsafeBytes { machine.simulator.deviceWrite(device: 0, iova: 0x10_0ffc, from: $0) })  // before tracking
    try hwpt.setDirtyTracking(enabled: true)
    #expect(data.withUnsafeBytes { machine.simulator.deviceWrite(device: 0, iova: 0x10_2ffc, from: $0) })  // spans 2 pages
    var read = [UInt8](repeating: 0, count: 10)
    #expect(read.withUnsafeMutableBytes { machine.simulator.deviceRead(device: 0, iova: 0x10_5000, into: $0) })  // reads do not dirty
    let bitmap = try hwpt.dirtyBitmap(iova: 0x10_0000, length: 8 * 4096, pageSize: 4096)
    #expect(Array(bitmap) == [0x10_2000, 0x10_3000])
    #expect(try hwpt.dirtyBitmap(iova: 0x10_0000, length: 8 * 4096, pageSize: 4096).dirtyCount == 0)
    _ = mapping
  }

  @Test("a session opened by cdev path binds, attaches and does DMA through its address space")
  func session() throws {
    let simulator = SimulatedKernel(devices: [SimulatedEduDevice()])
    let session = try VFIOSession.openCdev(SimulatedKernel.devicePath(0), backend: .simulated(simulator))
    #expect(session.deviceID == ObjectID(2))
    #expect(session.access == nil)
    #expect(try session.iovaRanges().alignment == 4096)
    let buffer = try DMABuffer(length: 4096, backend: session.device.backend)
    let mapping = try session.space.map(buffer, at: .fixed(0x10_0000))
    try session.device.write(UInt16(0x0006), region: try session.device.regionInfo(VFIOPCIRegion.config), at: 4)
    var data: [UInt8] = [9, 8, 7]
    #expect(data.withUnsafeBytes { simulator.deviceWrite(device: 0, iova: mapping.iova + 5, from: $0) })
    #expect(Array(buffer.bytes[5..<8]) == [9, 8, 7])
    data = []
  }

  @Test("automatic selection: without /dev/iommu the simulated kernel is chosen and says why")
  func automatic() {
    let backend = Backend.automatic(simulating: [SimulatedEduDevice()])
    if FileManager.default.fileExists(atPath: "/dev/iommu") {
      #expect(backend.simulator == nil)
      #expect(backend.reason == "/dev/iommu exists: using the kernel")
    } else {
      #expect(backend.simulator != nil)
      #expect(backend.reason == "no /dev/iommu on this host (the kernel lacks CONFIG_IOMMUFD): using the simulated kernel")
    }
  }
}
