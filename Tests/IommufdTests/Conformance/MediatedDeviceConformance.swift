import Foundation
import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

/// Mediated devices (mdev) and the emulated VFIO device, on the lab's kernels with the mtty
/// sample (`samples/vfio-mdev/mtty.c`, built in) and on the simulator with its mtty model
/// (``SimulatedMediatedParent/mtty()``): discovery, create and remove, bind, attach to an
/// IOAS (its own id back) and never to an HW page table, config space and the serial port's
/// registers, interrupts, close while attached.
@Suite("conformance: mediated devices", .serialized)
struct MediatedDeviceConformance {
  /// The lab's kernels (both boots) have mtty; another host with /dev/iommu may not.
  static var inLab: Bool { ProcessInfo.processInfo.environment["IOMMUFD_LAB_MODE"] != nil }

  /// The kernel platform when it has the mtty parent.
  static let mttyKernel: Platform? = {
    guard let kernel = Platform.kernel, let types = try? VFIODiscovery().mediatedDeviceTypes() else { return nil }
    return types.contains(where: { $0.parent == "mtty" }) ? kernel : nil
  }()

  /// The simulator as 6.12 and 7.2 with an edu and the mtty parent, and the kernel when it
  /// has mtty (in the lab, with its simulated twin only).
  static let platforms: [Platform] = {
    func simulated(_ release: SimulatedKernel.Release) -> Platform {
      var configuration = SimulatedKernel.Configuration()
      configuration.release = release
      return Platform(
        name: release == .linux6_12 ? "simulated" : "simulated 7.2", isSimulated: true, release: release,
        makeBackend: { [configuration] in
          .simulated(SimulatedKernel(configuration: configuration, devices: [SimulatedEduDevice()], mediatedParents: [.mtty()]))
        },
        devicePath: SimulatedKernel.devicePath(0))
    }
    return Platform.twinned([simulated(.linux6_12), simulated(.linux7_2)] + (mttyKernel.map { [$0] } ?? []))
  }()

  @Test("the lab's kernels have the mtty parent (CONFIG_SAMPLE_VFIO_MDEV_MTTY)")
  func labKernelHasMtty() throws {
    guard Self.inLab else { return }
    #expect(Self.mttyKernel != nil, "types: \((try? VFIODiscovery().mediatedDeviceTypes()) ?? [])")
  }

  /// An mtty instance of `type`, removed (after `body` closed what it opened) at the end.
  static func withMtty<T>(
    _ discovery: VFIODiscovery, type: String = "mtty-2", _ body: (MediatedDeviceEntry) throws -> T
  ) throws -> T {
    let entry = try discovery.createMediatedDevice(ofType: type)
    defer {
      do { try discovery.removeMediatedDevice(entry.id) } catch { Issue.record("removing \(entry.id): \(error)") }
    }
    return try body(entry)
  }

  @Test("the simulator has no mdev bus: no types, no devices, a create is ENOENT saying no parent is registered")
  func simulatorHasNoMediatedDevices() throws {
    let discovery = VFIODiscovery(backend: .simulated(SimulatedKernel(devices: [SimulatedEduDevice()])))
    #expect(try discovery.mediatedDeviceTypes() == [])
    #expect(try discovery.mediatedDevices() == [])
    let error = try #require(throws: IommufdError.self) { try discovery.createMediatedDevice(ofType: "mtty-2") }
    #expect(error.errno == .noSuchFileOrDirectory)
    #expect(error.detail?.contains("no mdev parent is registered") == true)
    let missing = try #require(MediatedDeviceID("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"))
    #expect(errno { try discovery.mediatedDevice(missing) } == .noSuchFileOrDirectory)
    #expect(errno { try discovery.removeMediatedDevice(missing) } == .noSuchFileOrDirectory)
  }

  @Test("mtty's types: mtty-1 'Single port serial' and mtty-2 'Dual port serial', vfio-pci, one pool of 24 ports; a create takes its ports and shows the device (type, parent, driver, its own IOMMU group, a cdev); the same name again is EEXIST; a remove gives the ports back", arguments: platforms)
  func createAndRemove(platform: Platform) throws {
    let discovery = VFIODiscovery(backend: platform.makeBackend())
    func available() throws -> [String: Int] {
      Dictionary(uniqueKeysWithValues: try discovery.mediatedDeviceTypes().filter { $0.parent == "mtty" }.map { ($0.id, $0.availableInstances ?? -1) })
    }
    let types = try discovery.mediatedDeviceTypes().filter { $0.parent == "mtty" }
    #expect(types.map(\.id) == ["mtty-1", "mtty-2"])
    #expect(types.map(\.name) == ["Single port serial", "Dual port serial"])
    #expect(types.allSatisfy { $0.deviceAPI == "vfio-pci" && $0.description == nil })
    let before = try available()
    #expect(before["mtty-2"] == (before["mtty-1"] ?? 0) / 2)
    let id = MediatedDeviceID.random()
    let entry = try discovery.createMediatedDevice(ofType: "mtty-2", id: id)
    #expect(entry.id == id && entry.type == "mtty-2" && entry.parent == "mtty" && entry.driver == "mtty")
    #expect(entry.iommuGroup != nil)
    #expect(entry.cdevPath.map { $0.string.hasPrefix("/dev/vfio/devices/vfio") } == true)
    #expect(try discovery.mediatedDevices().contains(entry))
    #expect(try available() == ["mtty-1": before["mtty-1"]! - 2, "mtty-2": before["mtty-2"]! - 1])
    let again = try #require(throws: IommufdError.self) { try discovery.createMediatedDevice(ofType: "mtty-1", id: id) }
    #expect(again.errno == .fileExists && again.detail?.contains("exists already") == true)
    #expect(errno { try discovery.createMediatedDevice(ofType: "mtty-3") } == .noSuchFileOrDirectory)
    try discovery.removeMediatedDevice(id)
    #expect(try available() == before)
    #expect(errno { try discovery.mediatedDevice(id) } == .noSuchFileOrDirectory)
    #expect(errno { try discovery.removeMediatedDevice(id) } == .noSuchFileOrDirectory)
  }

  @Test("no ports left: ENOSPC, explained; the ports come back with the removes", arguments: platforms)
  func noInstancesLeft(platform: Platform) throws {
    let discovery = VFIODiscovery(backend: platform.makeBackend())
    let left = try #require(try discovery.mediatedDeviceTypes().first { $0.id == "mtty-1" }?.availableInstances)
    var made: [MediatedDeviceID] = []
    defer { for id in made { try? discovery.removeMediatedDevice(id) } }
    for _ in 0..<left { made.append(try discovery.createMediatedDevice(ofType: "mtty-1").id) }
    let error = try #require(throws: IommufdError.self) { try discovery.createMediatedDevice(ofType: "mtty-1") }
    #expect(error.errno == .noSpace && error.detail?.contains("no instance of mtty-1 is left") == true)
  }

  @Test("the emulated device: bind gives an access's id; attach to an IOAS answers the IOAS's own id and holds it (EBUSY), again is a no-op; an HW page table is ENOENT, explained; no hardware info; DESTROY of its id EBUSY; detach twice; close while attached frees the IOAS", arguments: platforms)
  func bindAndAttach(platform: Platform) throws {
    let backend = platform.makeBackend()
    let discovery = VFIODiscovery(backend: backend)
    try Self.withMtty(discovery) { entry in
      let iommufd = try IOMMUFD.open(backend: backend)
      let ioas = try iommufd.allocateIOAS()
      let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
      #expect(device.path == entry.cdevPath)
      let deviceID = try device.bind(to: iommufd)
      #expect(try device.attach(to: ioas) == ioas.id)
      #expect(try device.attach(to: ioas) == ioas.id)
      #expect(errno { try ioas.destroy() } == .resourceBusy)
      #expect(errno { try iommufd.destroy(deviceID) } == .resourceBusy)
      #expect(errno { try iommufd.hardwareInfo(device: deviceID) } == .noSuchFileOrDirectory)
      // An HW page table needs a physical device: the lab's edu in the VT-d boot.
      if let edu = platform.devicePath {
        let physical = try VFIODevice.open(edu, backend: backend)
        let eduID = try physical.bind(to: iommufd)
        let hwpt = try HWPageTable(on: ioas, forDevice: eduID)
        let error = try #require(throws: IommufdError.self) { try device.attach(to: hwpt) }
        #expect(error.errno == .noSuchFileOrDirectory && error.detail?.contains("emulated") == true)
        try physical.close()
      }
      // A remove while this process holds the device open would wait forever: refused.
      let busy = try #require(throws: IommufdError.self) { try discovery.removeMediatedDevice(entry.id) }
      #expect(busy.errno == .resourceBusy && busy.detail?.contains("holds") == true)
      let other = try iommufd.allocateIOAS()
      #expect(try device.attach(to: other) == other.id)  // replace
      try ioas.destroy()
      try device.detach()
      try device.detach()
      try other.destroy()
      let third = try iommufd.allocateIOAS()
      _ = try device.attach(to: third)
      try device.close()
      try third.destroy()
    }
  }

  @Test("access(for:) finds the cdev route; VFIOSession opens the mdev on it (bound, attached to a fresh IOAS) and, on the kernel, asked to, on the legacy route through its own group and a type1v2 container (the simulator has no legacy nodes)", arguments: platforms)
  func sessions(platform: Platform) throws {
    let backend = platform.makeBackend()
    let discovery = VFIODiscovery(backend: backend)
    try Self.withMtty(discovery) { entry in
      let access = discovery.access(for: entry.id)
      #expect(access.route == .cdev(try #require(entry.cdevPath)), "\(access)")
      let session = try VFIOSession.open(mediatedDevice: entry.id, backend: backend)
      #expect(session.deviceID != nil && session.iommufd != nil && session.space is IOAS)
      #expect(try session.device.read(UInt32.self, region: try session.device.regionInfo(7), at: 0) == 0x3253_4348)
      try session.device.close()
      guard !platform.isSimulated else { return }
      let legacy = try VFIOSession.open(mediatedDevice: entry.id, prefer: .legacy)
      #expect(legacy.group?.number == entry.iommuGroup && legacy.space is VFIOContainer)
      #expect(try legacy.device.read(UInt32.self, region: try legacy.device.regionInfo(7), at: 0) == 0x3253_4348)
      try legacy.device.close()
      try legacy.group?.close()
    }
  }

  @Test("mtty's VFIO device: PCI, 9 regions, 5 interrupts; BAR0 and BAR1 8 bytes, config 0xff, read-write, none mappable; absent BARs and bytes past the config are refused before the kernel sees them; config holds 4348:3253, class 0x070002, BAR sizing reads 0xfffffff9", arguments: platforms)
  func deviceAndRegions(platform: Platform) throws {
    let backend = platform.makeBackend()
    try Self.withMtty(VFIODiscovery(backend: backend)) { entry in
      let iommufd = try IOMMUFD.open(backend: backend)
      let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
      _ = try device.bind(to: iommufd)
      let info = try device.info()
      #expect(info.flags.rawValue == 0x2)
      #expect(info.regionCount == 9)
      #expect(info.irqCount == 5)
      let bar0 = try device.regionInfo(0)
      let bar1 = try device.regionInfo(1)
      let config = try device.regionInfo(7)
      let sizes: [UInt64] = [bar0.size, bar1.size, config.size]
      #expect(sizes == [8, 8, 0xFF])
      for region in [bar0, bar1, config] {
        #expect(region.flags.rawValue == 0x3)
        #expect(region.offset == UInt64(region.index) << 40)
      }
      #expect(try device.regionInfo(2).size == 0)
      // mtty checks no bounds: the library must (a read there would reach kernel memory).
      #expect(errno { try device.read(UInt8.self, region: try device.regionInfo(2), at: 0) } == .invalidArgument)
      #expect(errno { try device.read(UInt8.self, region: config, at: 0xFF) } == .invalidArgument)
      #expect(errno { try device.read(UInt8.self, region: bar0, at: 8) } == .invalidArgument)
      #expect(try device.read(UInt32.self, region: config, at: 0) == 0x3253_4348)
      #expect(try device.read(UInt32.self, region: config, at: 8) == 0x0700_0210)
      #expect(try device.read(UInt32.self, region: config, at: 0x2C) == 0x3253_4348)
      try device.write(UInt32(0xFFFF_FFFF), region: config, at: 0x10)
      #expect(try device.read(UInt32.self, region: config, at: 0x10) == 0xFFFF_FFF9)
      try device.write(UInt32(0xC000), region: config, at: 0x10)
      #expect(try device.read(UInt32.self, region: config, at: 0x10) == 0xC001)
      // No MMAP flag: the library refuses the map itself (the kernel has no mmap for mtty).
      #expect(errno { try device.map(region: bar0) } == .invalidArgument)
      // (mtty fills only the first byte of a BAR read: the serial registers are read one byte at a time.)
      try device.close()
    }
  }

  @Test("the serial port: scratch and line control read back; a byte written to THR loops back (LSR data ready, then read from RBR, then empty 0x60); MSR 0xb3", arguments: platforms)
  func serialPort(platform: Platform) throws {
    let backend = platform.makeBackend()
    try Self.withMtty(VFIODiscovery(backend: backend)) { entry in
      let iommufd = try IOMMUFD.open(backend: backend)
      let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
      _ = try device.bind(to: iommufd)
      for index in 0..<2 {
        let bar = try device.regionInfo(index)
        try device.write(UInt8(0x5A), region: bar, at: 7)
        #expect(try device.read(UInt8.self, region: bar, at: 7) == 0x5A)
        try device.write(UInt8(0x03), region: bar, at: 3)
        #expect(try device.read(UInt8.self, region: bar, at: 3) == 0x03)
        #expect(try device.read(UInt8.self, region: bar, at: 5) == 0x60)
        for byte: UInt8 in [0x41, 0x42] { try device.write(byte, region: bar, at: 0) }
        #expect(try device.read(UInt8.self, region: bar, at: 5) & 0x01 == 0x01)
        #expect(try device.read(UInt8.self, region: bar, at: 0) == 0x41)
        #expect(try device.read(UInt8.self, region: bar, at: 0) == 0x42)
        #expect(try device.read(UInt8.self, region: bar, at: 5) == 0x60)
        #expect(try device.read(UInt8.self, region: bar, at: 6) == 0xB3)
      }
      try device.close()
    }
  }

  @Test("interrupts: INTx count 1 flags 0x7, MSI count 1 flags 0x9, MSI-X EINVAL; INTx on an eventfd fires when IER asks for THR-empty with the FIFO empty, and is masked until unmasked; MSI fires on each", arguments: platforms)
  func interrupts(platform: Platform) throws {
    let backend = platform.makeBackend()
    try Self.withMtty(VFIODiscovery(backend: backend), type: "mtty-1") { entry in
      let iommufd = try IOMMUFD.open(backend: backend)
      let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
      _ = try device.bind(to: iommufd)
      _ = try device.info()  // mtty answers interrupt requests only after GET_INFO
      let intx = try device.irqInfo(0)
      let msi = try device.irqInfo(1)
      let counts = [intx.count, msi.count]
      let flags: [UInt32] = [intx.flags.rawValue, msi.flags.rawValue]
      #expect(counts == [1, 1])
      #expect(flags == [0x7, 0x9])
      #expect(errno { try device.irqInfo(2) } == .invalidArgument)
      let bar = try device.regionInfo(0)
      let event = try EventFD(nonBlocking: true, backend: backend)
      try device.setInterrupts(0, eventFDs: [event])
      try device.write(UInt8(0x02), region: bar, at: 1)  // IER: THR empty
      #expect(try event.wait() == 1)
      try device.write(UInt8(0x02), region: bar, at: 1)  // masked: nothing
      #expect(try event.wait() == 0)
      try device.perform(.unmask, interrupt: 0)
      try device.write(UInt8(0x02), region: bar, at: 1)
      #expect(try event.wait() == 1)
      try device.disableInterrupts(0)
      try device.setInterrupts(1, eventFDs: [event])
      try device.write(UInt8(0x02), region: bar, at: 1)
      try device.write(UInt8(0x02), region: bar, at: 1)
      #expect(try event.wait() == 2)
      try device.close()
    }
  }
}
