import ArgumentParser
import Iommufd
import IommufdEdu
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A VMM prototype's device path: guest RAM in banks, a device handed over by descriptor,
/// its config space, BARs and interrupts as KVM would get them, DMA into guest RAM, dirty
/// tracking for migration, reset, hot-unplug and hot-plug into the same IOAS, and teardown.
///
/// On the kernel it drives the first edu device bound to vfio-pci (the lab's); without
/// `/dev/iommu` (or with `--simulated`) a simulated machine with an edu and a network card
/// that has MSI-X and a memory BAR.
@main
struct VMMPassthrough: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "vmm-passthrough",
    abstract: "Give a guest a PCI device the way a VMM does, and report each step.")

  @Flag(help: "Use the simulated machine even when /dev/iommu exists.")
  var simulated = false

  @Option(help: "PCI address of the edu device (kernel backend); default: the first edu with a VFIO cdev.")
  var device: String?

  /// The guest-physical layout: 16 MiB of RAM at 0 and 16 MiB at 4 GiB.
  static let banks: [(guestAddress: UInt64, size: Int)] = [(0, 16 << 20), (1 << 32, 16 << 20)]

  func run() throws {
    var configuration = SimulatedKernel.Configuration()
    configuration.vtdDirtyTracking = true  // as recent VT-d hardware has it; QEMU's has not
    let machine = { SimulatedKernel(configuration: configuration, devices: [SimulatedEduDevice(), SimulatedNIC()]) }
    let onKernel = !simulated && access("/dev/iommu", F_OK) == 0
    let backend: Backend = onKernel ? .kernel : .simulated(machine())
    var report = Report()
    print("backend: \(onKernel ? "kernel (/dev/iommu exists)" : "simulated machine: edu as vfio0, a network card with MSI-X as vfio1")")
    let descriptorsBefore = Self.openDescriptors()

    // 1. The hand-over, then guest RAM: memory files in banks, mapped at their
    // guest-physical addresses into an IOAS of the handed-over iommufd.
    let eduPath = try eduPath(on: backend)
    let handOver = try DeviceHandOver.open(eduPath, backend: backend)
    let iommufd = IOMMUFD(borrowing: handOver.iommufd, backend: backend)
    let ioas = try iommufd.allocateIOAS()
    var banks: [RAMBank] = []
    for bank in Self.banks {
      let memory = try GuestMemory(size: bank.size, backend: backend)
      let mapping = try memory.map(into: ioas, at: bank.guestAddress)
      print("guest RAM: \(bank.size >> 20) MiB at GPA 0x\(hex(bank.guestAddress)), mapped \(mapping.source == .userAddress ? "by address" : "by file")")
      banks.append(RAMBank(memory: memory, mapping: mapping))
    }

    // 2. The device, handed over by descriptor and borrowed; bound and attached.
    let edu = VFIODevice(borrowing: handOver.device, path: handOver.path, backend: backend)
    let deviceID = try edu.bind(to: iommufd)
    let pageTable = try edu.attach(to: ioas)
    print("device \(handOver.path): borrowed fd \(handOver.device.rawValue), bound as \(deviceID), attached through HWPT \(pageTable)")

    // 3. Config space: ids, capabilities, BARs sized as the guest's firmware will.
    try describe(edu, &report)

    // 4. BARs for KVM: the host address of each mappable one.
    let mapped = try mapBARs(edu)

    // 5. Interrupts: MSI on eventfds (KVM irqfds), INTx with its resample eventfd.
    let driver = try EduDriver(device: edu)
    try driver.enableBusMaster()
    try driver.acknowledgeInterrupt(UInt32.max)
    let irqfd = try EventFD(nonBlocking: true, backend: backend)
    try edu.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [irqfd])
    try driver.raiseInterrupt(1)
    report.check("MSI delivered to its irqfd", try Self.wait(irqfd) == 1)
    try driver.acknowledgeInterrupt(1)
    try edu.disableInterrupts(VFIOPCIInterrupt.msi)
    let resample = try EventFD(nonBlocking: true, backend: backend)
    try edu.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [irqfd])
    try edu.setUnmaskEventFD(resample)
    try driver.raiseInterrupt(2)
    report.check("INTx delivered", try Self.wait(irqfd) == 1)
    try driver.acknowledgeInterrupt(2)
    try driver.raiseInterrupt(4)
    report.check("INTx masked by the kernel until the guest's end of interrupt", try Self.wait(irqfd, milliseconds: 200) == nil)
    try resample.signal()  // the guest's end of interrupt, as KVM's resampling irqfd writes it
    report.check("the resample eventfd unmasked INTx: the pending interrupt delivered", try Self.wait(irqfd) == 1)
    try driver.acknowledgeInterrupt(4)
    try resample.signal()
    try edu.disableInterrupts(VFIOPCIInterrupt.intx)
    try resample.close()
    try irqfd.close()

    // 6. DMA into guest RAM, and dirty tracking over it as live migration reads it.
    let ram = banks[0].memory.bytes
    for index in 0..<64 { ram[0x1000 + index] = UInt8(truncatingIfNeeded: index &* 3 &+ 1) }
    try driver.copyToDevice(from: 0x1000, count: 64)
    try driver.copyFromDevice(to: 0x3000, count: 64)
    report.check("edu copied guest RAM 0x1000 to 0x3000", (0..<64).allSatisfy { ram[0x3000 + $0] == ram[0x1000 + $0] })
    try trackDirtyPages(iommufd, ioas, edu, deviceID, driver, &report)

    // 7. Reset, as on a guest reboot.
    do {
      try edu.reset()
      print("reset: function reset done")
    } catch where error.errno == .invalidArgument {
      print("reset: the device has no function reset (\(error.errno)); a VMM resets its bus instead")
    } catch {
      // The catch-all keeps swiftc 6.3.1 from crashing on the guarded catch (ErrorsAndTracing.md).
      throw error
    }

    // 8. Hot-unplug: detach and close the device; the iommufd, IOAS and guest RAM stay.
    for region in mapped { try region.unmap() }
    try edu.detach()
    try edu.close()
    try backend.calls.close(handOver.device)
    print("hot-unplug: device detached and closed; IOAS \(ioas.id) keeps \(banks.count) banks")

    // 9. Hot-plug into the same IOAS: the network card on the simulated machine (MSI-X,
    // a memory BAR for KVM), the edu again on the kernel.
    let secondPath = backend.simulator == nil ? eduPath : SimulatedKernel.devicePath(1)
    let second = try VFIODevice.open(secondPath, backend: backend)
    let secondID = try second.bind(to: iommufd)
    try second.attach(to: ioas)
    print("hot-plug: \(secondPath) bound as \(secondID) into IOAS \(ioas.id)")
    let secondBARs = try mapBARs(second)
    try deliverMSIX(second, backend, &report)
    if backend.simulator == nil {  // the edu again: its DMA reaches the guest RAM still mapped
      let again = try EduDriver(device: second)
      try again.enableBusMaster()
      for index in 0..<64 { ram[0x6000 + index] = UInt8(truncatingIfNeeded: index &* 5 &+ 7) }
      try again.copyToDevice(from: 0x6000, count: 64)
      try again.copyFromDevice(to: 0x7000, count: 64)
      report.check("the hot-plugged device DMAs through the same guest RAM", (0..<64).allSatisfy { ram[0x7000 + $0] == ram[0x6000 + $0] })
    }
    for region in secondBARs { try region.unmap() }
    try second.close()

    // 10. Teardown: nothing pinned, no descriptor left.
    for bank in banks { try bank.mapping.unmap() }
    for bank in banks { try bank.memory.close() }
    try ioas.destroy()
    try iommufd.close()
    try handOver.close(backend: backend, deviceClosed: true)
    // (The simulated kernel's own thread closes its descriptors as it goes idle, a moment
    // after its last listener went.)
    var descriptorsAfter = Self.openDescriptors()
    for _ in 0..<100 where descriptorsAfter != descriptorsBefore {
      usleep(10_000)
      descriptorsAfter = Self.openDescriptors()
    }
    if let simulator = backend.simulator {
      report.check("teardown: 0 pages pinned, 0 simulated files open", simulator.pinnedPages == 0 && simulator.openFileCount == 0)
    }
    report.check(
      "teardown: \(descriptorsAfter) descriptors open, as before (\(descriptorsBefore))",
      descriptorsBefore >= 0 && descriptorsAfter == descriptorsBefore)
    print(report.summary)
    if !report.passed { throw ExitCode.failure }
  }

  /// The edu device's cdev: the simulated machine's vfio0, or discovered on the host.
  func eduPath(on backend: Backend) throws -> FilePath {
    if backend.simulator != nil { return SimulatedKernel.devicePath(0) }
    if let device {
      guard let address = PCIAddress(device) else { throw ValidationError("\(device) is no PCI address (DDDD:BB:DD.F)") }
      return try VFIODiscovery().cdevPath(for: address)
    }
    guard let edu = try VFIODiscovery().devices().first(where: { $0.vendorID == 0x1234 && $0.deviceID == 0x11e8 && $0.cdevPath != nil }) else {
      throw ValidationError("no edu device (1234:11e8) bound to vfio-pci with a cdev; bind one or pass --simulated")
    }
    print("device: edu at \(edu.address), found through sysfs")
    return edu.cdevPath!
  }

  /// Prints the ids, the capability list and the sized BARs.
  func describe(_ device: VFIODevice, _ report: inout Report) throws {
    let config = try PCIConfigSpace(device)
    let capabilities = try config.capabilities().map { "0x\(hex(UInt64($0.id)))@0x\(hex(UInt64($0.offset)))" }
    print("config: \(hex(UInt64(try config.vendorID()))):\(hex(UInt64(try config.deviceID()))) class 0x\(hex(UInt64(try config.classCode()))), capabilities \(capabilities)")
    for bar in try config.bars() {
      print("config: BAR\(bar.index) \(bar.kind) \(bar.isPrefetchable ? "prefetchable " : "")size 0x\(hex(bar.size))")
    }
    report.check("BAR0 sized through config space matches its region", try config.bar(0)?.size == device.regionInfo(0).size)
  }

  /// Maps every BAR the kernel lets the VMM map; prints the host address KVM would get.
  func mapBARs(_ device: VFIODevice) throws -> [MappedRegion] {
    var mapped: [MappedRegion] = []
    for index in 0..<6 {
      let region = try device.regionInfo(VFIOPCIRegion.bar(index))
      guard region.size > 0 else { continue }
      guard region.flags.contains(.mappable) else {
        print("BAR\(index): 0x\(hex(region.size)) bytes, not mappable here: the VMM traps its accesses (region read/write)")
        continue
      }
      let mapping = try device.map(region: region)
      let extra = region.capabilities.contains(.msixMappable) ? ", holds the MSI-X table (mappable)" : ""
      print("BAR\(index): 0x\(hex(region.size)) bytes at host address \(mapping.unsafeHostAddress) for KVM_SET_USER_MEMORY_REGION\(extra)")
      mapped.append(mapping)
    }
    return mapped
  }

  /// Dirty tracking over guest RAM: a HWPT that tracks, a DMA write, the pages harvested.
  func trackDirtyPages(
    _ iommufd: IOMMUFD, _ ioas: IOAS, _ device: VFIODevice, _ deviceID: ObjectID, _ driver: EduDriver, _ report: inout Report
  ) throws {
    guard try iommufd.hardwareInfo(device: deviceID).capabilities.contains(.dirtyTracking) else {
      print("dirty tracking: this IOMMU cannot track dirty pages (QEMU's VT-d cannot); migration would copy all of guest RAM")
      return
    }
    let tracking = try HWPageTable(on: ioas, forDevice: deviceID, flags: [.dirtyTracking])
    try device.attach(to: tracking)
    try tracking.setDirtyTracking(enabled: true)
    try driver.copyFromDevice(to: 0x5000, count: 64)
    try driver.copyFromDevice(to: 0x9000, count: 64)
    let first = try tracking.dirtyBitmap(iova: 0, length: UInt64(Self.banks[0].size), pageSize: 4096)
    let second = try tracking.dirtyBitmap(iova: 0, length: UInt64(Self.banks[0].size), pageSize: 4096)
    print("dirty tracking: pass 1 found \(first.dirtyCount) dirty pages \(first.map { "0x\(hex($0))" }), pass 2 found \(second.dirtyCount)")
    report.check("dirty tracking found the two pages the device wrote, then none", Array(first) == [0x5000, 0x9000] && second.dirtyCount == 0)
    try tracking.setDirtyTracking(enabled: false)
    try device.attach(to: ioas)
    try tracking.destroy()
  }

  /// MSI-X per vector where the device has a table: two vectors on irqfds, one raised by
  /// the device, one vector changed, then all disabled.
  func deliverMSIX(_ device: VFIODevice, _ backend: Backend, _ report: inout Report) throws {
    let info = try device.irqInfo(VFIOPCIInterrupt.msix)
    guard info.count > 0 else {
      print("MSI-X: the device has no table (edu has MSI only)")
      return
    }
    _ = try PCIConfigSpace(device).updateCommand { $0.insert([.busMaster, .memorySpace]) }
    let vectors = try (0..<3).map { _ in try EventFD(nonBlocking: true, backend: backend) }
    try device.setInterrupts(VFIOPCIInterrupt.msix, eventFDs: [vectors[0], vectors[1]])
    let registers = try device.regionInfo(0)
    try device.write(UInt32(1), region: registers, at: 0)  // the card raises vector 1
    report.check("MSI-X vector 1 delivered to its irqfd", try Self.wait(vectors[1]) == 1)
    try device.setInterrupts(VFIOPCIInterrupt.msix, start: 1, eventFDs: [vectors[2]])  // the guest moved vector 1
    try device.write(UInt32(1), region: registers, at: 0)
    report.check("MSI-X vector 1 moved to another irqfd", try Self.wait(vectors[2]) == 1)
    print("MSI-X: \(info.count) vectors\(info.flags.contains(.noResize) ? "" : ", more can be added while enabled")")
    try device.disableInterrupts(VFIOPCIInterrupt.msix)
    for vector in vectors { try vector.close() }
  }

  /// The count `event` reaches within `milliseconds`, or nil.
  static func wait(_ event: EventFD, milliseconds: Int32 = 2000) throws -> UInt64? {
    var entry = pollfd(fd: event.fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0)
    var ready = poll(&entry, 1, milliseconds)
    while ready < 0 && errno == EINTR { ready = poll(&entry, 1, milliseconds) }
    guard ready == 1 else { return nil }
    return try event.wait()
  }

  /// The number of descriptors the process has open.
  static func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count
  }
}

/// One bank of guest RAM: its memory and the mapping of it. A class, so that banks fit in
/// an array (a `DMAMapping` is noncopyable).
final class RAMBank {
  let memory: GuestMemory
  var mapping: DMAMapping

  init(memory: GuestMemory, mapping: consuming DMAMapping) {
    self.memory = memory
    self.mapping = mapping
  }
}
