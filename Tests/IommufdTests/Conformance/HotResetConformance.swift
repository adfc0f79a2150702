import Foundation
import Iommufd
import IommufdEdu
import IommufdSimulator
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A machine with an edu on the root bus and an edu of two functions behind a PCIe root
/// port: the lab's VT-d boots (`IOMMUFD_LAB_EDU`, `IOMMUFD_LAB_EDU_PAIR`) and the simulator
/// with the same topology.
struct HotResetMachine: CustomTestStringConvertible, Sendable {
  let name: String
  let isSimulated: Bool
  let makeBackend: @Sendable () -> Backend
  /// The edu on the root bus.
  let rootEdu: PCIAddress
  /// Functions 0 and 1 behind the root port (empty when the lab did not name them).
  let pair: [PCIAddress]

  var testDescription: String { name }

  /// The simulator as `release`, with the lab's topology; with `isolatedFunctions`, each
  /// function of the pair is its own IOMMU group (a device with ACS).
  static func simulated(_ release: SimulatedKernel.Release, isolatedFunctions: Bool = false) -> HotResetMachine {
    var configuration = SimulatedKernel.Configuration()
    configuration.release = release
    let backend: @Sendable () -> Backend = { [configuration] in
      .simulated(SimulatedKernel(
        configuration: configuration, devices: [SimulatedEduDevice()],
        rootPorts: [SimulatedRootPort(functions: [SimulatedEduDevice(), SimulatedEduDevice()], isolatedFunctions: isolatedFunctions)]))
    }
    return HotResetMachine(
      name: "simulated \(release)" + (isolatedFunctions ? " (isolated functions)" : ""), isSimulated: true, makeBackend: backend,
      rootEdu: SimulatedKernel.pciAddress(ofDevice: 0),
      pair: [PCIAddress(bus: 1, device: 0, function: 0)!, PCIAddress(bus: 1, device: 0, function: 1)!])
  }

  /// The kernel's twin simulators, and the kernel in a VT-d boot.
  static let all: [HotResetMachine] = Platform.withDevice.compactMap { platform in
    if platform.isSimulated { return platform.release.map { simulated($0) } }
    guard let root = ProcessInfo.processInfo.environment["IOMMUFD_TEST_DEVICE"].flatMap(PCIAddress.init) else { return nil }
    let pair = (ProcessInfo.processInfo.environment["IOMMUFD_LAB_EDU_PAIR"] ?? "").split(separator: " ").compactMap { PCIAddress(String($0)) }
    return HotResetMachine(name: "kernel", isSimulated: false, makeBackend: platform.makeBackend, rootEdu: root, pair: pair)
  }

  /// The pair's two functions, opened and bound to `iommufd` (closed by the caller, or on
  /// release when a step fails).
  func boundPair(_ backend: Backend, _ iommufd: IOMMUFD) throws -> (VFIODevice, VFIODevice) {
    let (function0, function1) = (try Self.open(pair[0], backend), try Self.open(pair[1], backend))
    _ = try function0.bind(to: iommufd)
    _ = try function1.bind(to: iommufd)
    return (function0, function1)
  }

  /// Opens the VFIO cdev of the device at `address`.
  static func open(_ address: PCIAddress, _ backend: Backend) throws -> VFIODevice {
    try VFIODevice.open(VFIODiscovery(backend: backend).cdevPath(for: address), backend: backend)
  }
}

/// PCI resets on vfio-pci devices (`VFIO_DEVICE_RESET`, `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`,
/// `VFIO_DEVICE_PCI_HOT_RESET` in the iommufd form) on both lab kernels and on the simulator:
/// the reset methods each edu has, the root bus's ENODEV, the pair's scope and ownership,
/// the check order, and a hot reset that lowers a pending INTx while edu's own registers
/// (which QEMU's edu never resets) keep their values; vfio-pci's low-power entry and exit.
@Suite("conformance: PCI resets and low power", .serialized)
struct HotResetConformance {
  static let machines = HotResetMachine.all

  @Test("the edu on the root bus: no reset method (reset_method absent, no RESET flag, reset EINVAL explained); hot reset info and hot reset ENODEV, after the argsz, flags and group-count checks; both EINVAL before bind", arguments: machines)
  func rootBus(machine: HotResetMachine) throws {
    let backend = machine.makeBackend()
    #expect(try VFIODiscovery(backend: backend).device(at: machine.rootEdu).resetMethods == [])
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try HotResetMachine.open(machine.rootEdu, backend)
    defer { try? device.close() }
    #expect(errno { try device.hotResetInfo() } == .invalidArgument)  // not bound yet
    #expect(errno { try device.hotReset() } == .invalidArgument)
    _ = try device.bind(to: iommufd)
    #expect(try !device.info().flags.contains(.reset))
    let reset = try #require(throws: IommufdError.self) { try device.reset() }
    #expect(reset.errno == .invalidArgument && reset.detail?.contains("hotReset()") == true)
    let info = try #require(throws: IommufdError.self) { try device.hotResetInfo() }
    #expect(info.errno == .operationNotSupportedByDevice && info.detail?.contains("root bus") == true)
    #expect(errno { try device.hotReset() } == .operationNotSupportedByDevice)
    let fd = device.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B70, le(UInt32(11), UInt32(0), UInt32(0))).0 == .invalidArgument)
    #expect(rawIoctl(backend, fd, 0x3B70, le(UInt32(12), UInt32(0), UInt32(0))).0 == .operationNotSupportedByDevice)
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(11), UInt32(0), UInt32(0))).0 == .invalidArgument)
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(12), UInt32(1), UInt32(0))).0 == .invalidArgument)
    // A cdev passes no groups: a count is EINVAL before the scope is looked at.
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(16), UInt32(0), UInt32(1), Int32(-1))).0 == .invalidArgument)
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(12), UInt32(0), UInt32(0))).0 == .operationNotSupportedByDevice)
  }

  @Test("the pair behind the root port: one IOMMU group; reset_method bus on function 0 (probed alone) and none on function 1, neither with a working function reset; the scope lists both functions, function 1 owned through the group; another iommufd's bind of function 1 EPERM; bound to the same, both ids; ENOSPC with the count for a short buffer", arguments: machines)
  func pairScope(machine: HotResetMachine) throws {
    try #require(machine.pair.count == 2, "the lab names the pair in IOMMUFD_LAB_EDU_PAIR")
    let backend = machine.makeBackend()
    let discovery = VFIODiscovery(backend: backend)
    let (first, second) = (try discovery.device(at: machine.pair[0]), try discovery.device(at: machine.pair[1]))
    #expect(first.resetMethods == ["bus"] && second.resetMethods == [])
    #expect(first.iommuGroup != nil && first.iommuGroup == second.iommuGroup)
    #expect(first.iommuGroup != (try discovery.device(at: machine.rootEdu).iommuGroup))
    let iommufd = try IOMMUFD.open(backend: backend)
    let function0 = try HotResetMachine.open(machine.pair[0], backend)
    defer { try? function0.close() }
    let id0 = try function0.bind(to: iommufd)
    #expect(try !function0.info().flags.contains(.reset))
    #expect(errno { try function0.reset() } == .invalidArgument)
    #expect(try function0.hotResetInfo() == VFIOHotResetInfo(
      devices: [.init(address: machine.pair[0], owner: .device(id0)), .init(address: machine.pair[1], owner: .ownedGroup)],
      usesDeviceIDs: true, allOwned: true))
    let function1 = try HotResetMachine.open(machine.pair[1], backend)
    defer { try? function1.close() }
    let other = try IOMMUFD.open(backend: backend)
    #expect(errno { try function1.bind(to: other) } == .notPermitted)  // the group is the first iommufd's
    let id1 = try function1.bind(to: iommufd)
    #expect(try !function1.info().flags.contains(.reset))
    #expect(try function1.hotResetInfo().devices.map(\.owner) == [.device(id0), .device(id1)])
    // Room for one entry: ENOSPC, and the header says 2 (flags 0).
    let (error, reply) = rawIoctl(backend, function0.fileDescriptor, 0x3B70, le(UInt32(20), UInt32(0), UInt32(0), UInt64(0)))
    #expect(error == .noSpace && Array(reply[0..<12]) == le(UInt32(20), UInt32(0), UInt32(2)))
  }

  @Test("the pair's shared IOMMU group attaches as one: with function 0 on an IOAS, function 1 goes to the same automatic HWPT and to another IOAS is EINVAL; function 0 replaced onto another IOAS takes function 1 along (its attach there changes nothing) and the old HWPT is freed (the next IOAS gets its id)", arguments: machines)
  func sharedGroupAttach(machine: HotResetMachine) throws {
    try #require(machine.pair.count == 2, "the lab names the pair in IOMMUFD_LAB_EDU_PAIR")
    let backend = machine.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let (function0, function1) = try machine.boundPair(backend, iommufd)
    defer { for device in [function1, function0] { try? device.close() } }
    let (first, second) = (try iommufd.allocateIOAS(), try iommufd.allocateIOAS())
    let hwpt = try function0.attach(to: first)
    #expect(errno { try function1.attach(to: second) } == .invalidArgument)
    #expect(try function1.attach(to: first) == hwpt)
    let moved = try function0.attach(to: second)
    #expect(moved != hwpt)
    #expect(try function1.attach(to: second) == moved)
    #expect(try iommufd.allocateIOAS().id == hwpt)
  }

  @Test("the shared group's domain translates for every function: function 1, bound but never attached, DMAs through the IOAS function 0 attached the group to", arguments: machines)
  func sharedGroupDMA(machine: HotResetMachine) throws {
    try #require(machine.pair.count == 2, "the lab names the pair in IOMMUFD_LAB_EDU_PAIR")
    let backend = machine.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let (function0, function1) = try machine.boundPair(backend, iommufd)
    defer { for device in [function1, function0] { try? device.close() } }
    let ioas = try iommufd.allocateIOAS()
    _ = try function0.attach(to: ioas)
    let memory = try DMABuffer(length: 8192, backend: backend)
    for index in 0..<64 { memory.bytes[index] = UInt8(truncatingIfNeeded: index &* 29 &+ 1) }
    _ = try ioas.unsafeMap(address: memory.bytes.baseAddress!, length: 8192, at: .fixed(0x10_0000), access: [.readable, .writable])
    try PCIConfigSpace(function1).updateCommand { $0.insert(.memorySpace) }
    let edu = try EduDriver(device: function1)
    try edu.enableBusMaster()
    try edu.copyToDevice(from: 0x10_0000, count: 64)
    try edu.copyFromDevice(to: 0x10_1000, count: 64)
    #expect(Array(memory.bytes[4096..<4160]) == Array(memory.bytes[0..<64]))
  }

  @Test("open and close as vfio-pci does them: the edu on the root bus gets back the cache line size and interrupt line it had at open, and keeps a pending INTx across close and bind (nothing resets it); the pair's last close resets the bus, so function 0's pending INTx is gone when it is bound again", arguments: machines)
  func openAndClose(machine: HotResetMachine) throws {
    try #require(machine.pair.count == 2, "the lab names the pair in IOMMUFD_LAB_EDU_PAIR")
    let backend = machine.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    func bound(_ address: PCIAddress) throws -> (VFIODevice, PCIConfigSpace, EduDriver) {
      let device = try HotResetMachine.open(address, backend)
      _ = try device.bind(to: iommufd)
      let config = try PCIConfigSpace(device)
      try config.updateCommand { $0.insert(.memorySpace) }
      return (device, config, try EduDriver(device: device))
    }
    var (device, config, edu) = try bound(machine.rootEdu)
    let (cacheLine, interruptLine) = (try config.read(UInt8.self, at: 0x0C), try config.read(UInt8.self, at: 0x3C))
    try config.write(cacheLine ^ 0x10, at: 0x0C)
    try config.write(interruptLine ^ 0x05, at: 0x3C)
    #expect(try config.read(UInt8.self, at: 0x0C) == cacheLine ^ 0x10)
    try edu.acknowledgeInterrupt(UInt32.max)
    try edu.raiseInterrupt(1)
    #expect(try config.status().contains(.interrupt))
    try device.close()
    (device, config, edu) = try bound(machine.rootEdu)
    #expect(try config.read(UInt8.self, at: 0x0C) == cacheLine)
    #expect(try config.read(UInt8.self, at: 0x3C) == interruptLine)
    #expect(try config.status().contains(.interrupt))  // no reset reaches it
    try edu.acknowledgeInterrupt(1)
    #expect(try !config.status().contains(.interrupt))
    try device.close()
    (device, config, edu) = try bound(machine.pair[0])
    try edu.acknowledgeInterrupt(UInt32.max)
    try edu.raiseInterrupt(1)
    #expect(try config.status().contains(.interrupt))
    try device.close()  // the last of its set: the bus resets
    (device, config, edu) = try bound(machine.pair[0])
    #expect(try !config.status().contains(.interrupt))
    #expect(try edu.interruptStatus() == 1)  // edu's own register survives
    try edu.acknowledgeInterrupt(1)
    try device.close()
  }

  @Test("a hot reset happens: edu raises INTx on function 0 (status bit 3 set, an unmask fires again); after the iommufd-form hot reset the line is low (bit 3 clear, an unmask fires nothing) while edu's interrupt status and liveness register keep their values", arguments: machines)
  func hotResetLowersINTx(machine: HotResetMachine) throws {
    try #require(machine.pair.count == 2, "the lab names the pair in IOMMUFD_LAB_EDU_PAIR")
    let backend = machine.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try HotResetMachine.open(machine.pair[0], backend)
    defer { try? device.close() }
    _ = try device.bind(to: iommufd)
    let config = try PCIConfigSpace(device)
    try config.updateCommand { $0.insert(.memorySpace) }
    let edu = try EduDriver(device: device)
    try edu.acknowledgeInterrupt(UInt32.max)
    try edu.write32(0x1234_5678, 0x04)
    let trigger = try EventFD(nonBlocking: true, backend: backend)
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    defer { try? device.disableInterrupts(VFIOPCIInterrupt.intx) }
    try edu.raiseInterrupt(1)
    #expect(try InterruptConformance.signal(trigger) == 1)
    #expect(try config.status().contains(.interrupt))
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)
    #expect(try InterruptConformance.signal(trigger) == 1)  // still asserted: fires again
    try device.hotReset()
    #expect(try !config.status().contains(.interrupt))
    #expect(try edu.interruptStatus() == 1)
    #expect(try edu.read32(0x04) == ~UInt32(0x1234_5678))
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)
    #expect(try InterruptConformance.signal(trigger, within: 100) == nil)
    try edu.acknowledgeInterrupt(1)
  }

  @Test("low power on the edu: vfio-pci offers entry, entry with a wakeup eventfd and exit (set only); a second entry is EINVAL, explained, with or without a wakeup; exit always succeeds, twice too; entry with a wakeup eventfd after exit", arguments: machines)
  func lowPower(machine: HotResetMachine) throws {
    let backend = machine.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try HotResetMachine.open(machine.rootEdu, backend)
    defer { try? device.close() }
    _ = try device.bind(to: iommufd)
    let supported = try device.supportedFeatures()
    #expect(supported == [.lowPowerEntry: .set, .lowPowerEntryWithWakeup: .set, .lowPowerExit: .set])
    let wakeup = try EventFD(nonBlocking: true, backend: backend)
    try device.enterLowPower()
    let again = try #require(throws: IommufdError.self) { try device.enterLowPower() }
    #expect(again.errno == .invalidArgument && again.detail?.contains("already in low-power") == true)
    #expect(errno { try device.enterLowPower(wakeup: wakeup) } == .invalidArgument)
    try device.exitLowPower()
    try device.exitLowPower()
    try device.enterLowPower(wakeup: wakeup)
    try device.exitLowPower()
  }

  @Test("the library's own checks: the iommufd form on an unbound device and the group form without groups are EINVAL with what was wrong, before the kernel is asked", arguments: [HotResetMachine.simulated(.linux6_12)])
  func libraryChecks(machine: HotResetMachine) throws {
    let backend = machine.makeBackend()
    let device = try HotResetMachine.open(machine.pair[0], backend)
    defer { try? device.close() }
    let unbound = try #require(throws: IommufdError.self) { try device.hotReset() }
    #expect(unbound.errno == .invalidArgument && unbound.detail?.contains("bound to an iommufd") == true)
    let noGroups = try #require(throws: IommufdError.self) { try device.hotReset(groups: []) }
    #expect(noGroups.errno == .invalidArgument && noGroups.detail?.contains("groups") == true)
  }

  @Test("functions in groups of their own (a device with ACS, on the simulator): function 1 bound to another iommufd is not owned, the scope says so, and the hot reset is EINVAL naming it in the way; once it is closed (unbound) it is still not owned; bound to the same iommufd the reset is done", arguments: [HotResetMachine.simulated(.linux6_12, isolatedFunctions: true), .simulated(.linux7_2, isolatedFunctions: true)])
  func functionInTheWay(machine: HotResetMachine) throws {
    let backend = machine.makeBackend()
    let discovery = VFIODiscovery(backend: backend)
    #expect(try discovery.device(at: machine.pair[0]).iommuGroup != discovery.device(at: machine.pair[1]).iommuGroup)
    let iommufd = try IOMMUFD.open(backend: backend), other = try IOMMUFD.open(backend: backend)
    let function0 = try HotResetMachine.open(machine.pair[0], backend)
    defer { try? function0.close() }
    let id0 = try function0.bind(to: iommufd)
    var function1 = try HotResetMachine.open(machine.pair[1], backend)
    _ = try function1.bind(to: other)
    let info = try function0.hotResetInfo()
    #expect(info.devices.map(\.owner) == [.device(id0), .notOwned] && !info.allOwned)
    let refused = try #require(throws: IommufdError.self) { try function0.hotReset() }
    #expect(refused.errno == .invalidArgument)
    #expect(refused.objects.contains(.init("in the way", machine.pair[1].description)))
    #expect(refused.detail?.contains(machine.pair[1].description) == true)
    try function1.close()
    #expect(try function0.hotResetInfo().devices.map(\.owner) == [.device(id0), .notOwned])
    #expect(errno { try function0.hotReset() } == .invalidArgument)
    function1 = try HotResetMachine.open(machine.pair[1], backend)
    defer { try? function1.close() }
    let id1 = try function1.bind(to: iommufd)
    #expect(try function0.hotResetInfo() == VFIOHotResetInfo(
      devices: [.init(address: machine.pair[0], owner: .device(id0)), .init(address: machine.pair[1], owner: .device(id1))],
      usesDeviceIDs: true, allOwned: true))
    try function0.hotReset()
  }
}
