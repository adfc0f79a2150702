import Iommufd
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension Fuzzer {
  /// Runs the sequence: the machine (device model, kernel, two contexts), a prologue of
  /// sensible calls that builds the objects deep calls need, random calls up to the call
  /// budget, then the release of everything in a random order.
  func run() {
    memoryFile = Self.makeMemoryFile()
    setUpMachine()
    runPrologue()
    var attempts = 0
    while callIndex < options.calls && attempts < 10_000 {
      attempts &+= 1
      guard let chosen = chooseEntry() else { break }
      entry = chosen
      _ = entryPoints[chosen].run(self)
    }
    tearDown()
  }

  /// The calls that make the machine: on edu machines the fuzz device model, then the
  /// kernel, then two iommufd contexts.
  func setUpMachine() {
    var devices: [SimulatedPCIDevice] = []
    var ports: [SimulatedRootPort] = []
    if !machine.isSelfTest {
      // Behind a root port, two migratable edu functions (sharing a group, or not): hot
      // resets, their scope and ownership, and PCI migration.
      let isolated = rng.bool()
      invoke("SimulatedRootPort.init(functions:isolatedFunctions:)", "two migratable edus, isolated \(isolated)") {
        ports = [SimulatedRootPort(functions: [SimulatedEduDevice(migratable: true), SimulatedEduDevice(migratable: true)], isolatedFunctions: isolated)]
      }
      let (make, text) = makeFuzzDevice()
      invoke("SimulatedPCIDevice.init(vendorID:deviceID:classCode:revision:bars:msiCount:msix:supportsReset:reservedRegions:)", text) {
        let device = make()
        self.fuzzDevice = device
        devices = [SimulatedEduDevice(), device]
      }
    }
    var configuration = SimulatedKernel.Configuration()
    configuration.release = machine.release
    configuration.selfTest = machine.isSelfTest
    let devicesText = devices.isEmpty ? "no devices" : "edu as vfio0, the fuzz device as vfio1, the port's edus as vfio2 and vfio3"
    invoke("SimulatedKernel.init(configuration:devices:rootPorts:)", "\(machine), \(devicesText)") {
      self.kernel = SimulatedKernel(configuration: configuration, devices: devices, rootPorts: ports)
      self.backend = .simulated(self.kernel)
    }
    for _ in 0..<2 {
      invoke("IOMMUFD.open(_:backend:)", "/dev/iommu") {
        let context = try IOMMUFD.open(backend: self.backend)
        self.pool.contexts.append(Held(value: context, label: self.pool.label("ctx"), context: self.pool.contexts.count))
      }
    }
  }

  /// The prologue of self-test machines.
  static let selfTestPrologue = [
    "IOMMUFD.allocateIOAS()", "IOMMUSelfTest.attachMockDevice(to:flags:)", "DMABuffer.init(length:backend:)",
    "DMAAddressSpace.map(_:at:access:) on IOAS", "IOMMUSelfTest.createAccess(to:pinsPages:)",
    "SelfTestAccess.pin(iova:length:writable:verifyingAgainst:)", "SelfTestAccess.read(from:into:slowPath:)",
    "HWPageTable.init(on:forDevice:flags:faultQueue:)",
    "IOMMUFD.allocateFaultQueue()", "NestedHWPageTable.init(parent:forDevice:dataType:data:faultQueue:)",
    "MockDevice.replace(with:)", "IOMMUSelfTest.triggerPageFault(device:pasid:group:permissions:address:)",
    "FaultQueue.read(maximumFaults:)", "FaultQueue.respond(to:with:)",
  ]

  /// What the prologue of 7.2 self-test machines adds.
  static let virtualPrologue = [
    "VirtualIOMMU.init(kind:device:parent:data:)", "VirtualDevice.init(on:device:virtualID:)",
    "VirtualEventQueue.init(on:kind:depth:)", "HardwareQueue.init(on:kind:index:guestAddress:length:)",
    "NestedHWPageTable.init(on:forDevice:dataType:data:faultQueue:)", "MockDevice.replace(with:)",
    "IOMMUSelfTest.triggerVirtualEvent(device:)", "VirtualEventQueue.read(maximumBytes:)",
  ]

  /// The prologue of edu machines.
  static let eduPrologue = [
    "VFIODevice.open(_:backend:)", "VFIODevice.bind(to:)", "IOMMUFD.allocateIOAS()", "VFIODevice.attach(to:)",
    "DMABuffer.init(length:backend:)", "DMAAddressSpace.map(_:at:access:) on IOAS",
    "GuestMemory.init(size:pageSize:name:backend:)", "GuestMemory.map(into:at:offset:length:access:)", "EduDriver.init(device:)",
    "EduDriver.enableBusMaster()", "EventFD.init(nonBlocking:backend:)", "VFIODevice.setInterrupts(_:start:eventFDs:)",
  ]

  /// Every entry point the setup, the prologues and the teardown call by name.
  static let namedEntryPoints = selfTestPrologue + virtualPrologue + eduPrologue + [
    "SimulatedPCIDevice.init(vendorID:deviceID:classCode:revision:bars:msiCount:msix:supportsReset:reservedRegions:)",
    "SimulatedRootPort.init(functions:isolatedFunctions:)", "SimulatedKernel.init(configuration:devices:rootPorts:)",
    "IOMMUFD.open(_:backend:)", "end of sequence: release of every handle",
  ]

  /// The prologue: some or all of a chain of sensible calls for the machine.
  func runPrologue() {
    var chain = machine.isSelfTest ? Self.selfTestPrologue : Self.eduPrologue
    if machine == .selfTest7_2 { chain += Self.virtualPrologue }
    let length = rng.chance(50) ? chain.count : rng.below(chain.count &+ 1)
    sensibleOnly = true
    defer { sensibleOnly = false }
    for name in chain.prefix(length) where callIndex < options.calls {
      guard let index = entryIndex(name) else { continue }
      entry = index
      _ = entryPoints[index].run(self)
    }
  }

  /// Releases every handle in a random order, then the kernel, in one recorded call.
  func tearDown() {
    var order = Array(0..<Pool.kindCount)
    for index in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(index, rng.below(index &+ 1)) }
    invoke("end of sequence: release of every handle", "kinds in the order \(order), then the kernel") {
      self.pool.release(order: order)
      self.fuzzDevice = nil
      self.kernel = SimulatedKernel()
      self.backend = .simulated(self.kernel)
    }
    for fd in pool.rawFDs + realFDs { _ = Glibc.close(fd.rawValue) }
    pool.rawFDs.removeAll()
    realFDs.removeAll()
    if let memoryFile { _ = Glibc.close(memoryFile.rawValue) }
    memoryFile = nil
  }

  /// Records and runs a call of the entry point `name` with a body of the caller's.
  func invoke(_ name: String, _ description: String, _ body: () throws -> Void) {
    guard let index = entryIndex(name) else { return }
    entry = index
    call(description, body)
  }

  /// The index of entry point `name`.
  func entryIndex(_ name: String) -> Int? { entryPoints.firstIndex { $0.name == name } }

  /// An entry point chosen by weight among those not excluded.
  func chooseEntry() -> Int? {
    guard let total = choices.last?.total, total > 0 else { return nil }
    let point = rng.below(total)
    var low = 0
    var high = choices.count &- 1
    while low < high {
      let middle = (low &+ high) / 2
      if choices[middle].total > point { high = middle } else { low = middle &+ 1 }
    }
    return choices[low].entry
  }

  /// A 64 KiB file for `mapFile`, unlinked at once (`nil` if none can be made).
  static func makeMemoryFile() -> FileDescriptor? {
    var template = Array((scratchDirectory + "/iommufd-api-fuzz-file.XXXXXX").utf8CString)
    let fd = mkstemp(&template)
    guard fd >= 0 else { return nil }
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    guard ftruncate(fd, 64 << 10) == 0 else {
      _ = Glibc.close(fd)
      return nil
    }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    return FileDescriptor(rawValue: fd)
  }
}
