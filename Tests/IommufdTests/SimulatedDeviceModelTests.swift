import Iommufd
import IommufdEdu
import IommufdSimulator
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What a device model can have on the simulator beyond edu: an MSI-X table, memory BARs
/// that can be mmapped, and work that completes after the access that started it. (The
/// lab's devices have no MSI-X table, so these run on the simulator only; the vfio-pci
/// rules they follow are those of `vfio_pci_intrs.c` and `vfio_pci_rdwr.c`.)
@Suite("simulated device models")
struct SimulatedDeviceModelTests {
  /// BAR0 registers (a write of n to 0 raises MSI-X vector n), BAR1 16 KiB of memory with
  /// the MSI-X table at 0 and the PBA at 0x800; 8 vectors.
  final class MSIXDevice: SimulatedPCIDevice, @unchecked Sendable {
    init(dynamic: Bool = true) {
      super.init(
        vendorID: 0x1af4, deviceID: 0x1041, classCode: 0x020000, bars: [BAR(size: 0x1000), .memory(size: 0x4000)],
        msiCount: 1, msix: MSIX(vectors: 8, tableBAR: 1, tableOffset: 0, pbaOffset: 0x800, dynamicAllocation: dynamic))
    }

    override func writeBAR(_ bar: Int, offset: UInt64, bytes: [UInt8], bus: SimulatedBus) {
      if bar == 0 && offset == 0 { bus.raiseInterrupt(index: VFIOPCIInterrupt.msix, vector: Int(bytes[0])) }
    }
  }

  struct Setup {
    let model: SimulatedPCIDevice
    let kernel: SimulatedKernel
    let backend: Backend
    let iommufd: IOMMUFD
    let device: VFIODevice

    init(_ model: SimulatedPCIDevice) throws {
      self.model = model
      kernel = SimulatedKernel(devices: [model])
      backend = .simulated(kernel)
      iommufd = try IOMMUFD.open(backend: backend)
      device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
      try device.bind(to: iommufd)
    }

    func raise(_ vector: UInt32) throws {
      try device.write(vector, region: try device.regionInfo(0), at: 0)
    }
  }

  @Test("MSI-X: the capability follows MSI's and names the table and PBA; IRQ info counts 8 vectors, without NORESIZE where vectors can be added")
  func msixDiscovery() throws {
    let setup = try Setup(MSIXDevice())
    let config = try PCIConfigSpace(setup.device)
    #expect(try config.capabilities() == [PCICapability(id: PCICapability.msi, offset: 0x40), PCICapability(id: PCICapability.msix, offset: 0x50)])
    #expect(try config.read(UInt16.self, at: 0x52) == 7)  // table size - 1, disabled
    #expect(try config.read(UInt32.self, at: 0x54) == 0x0000_0001)  // table at 0 in BAR1
    #expect(try config.read(UInt32.self, at: 0x58) == 0x0000_0801)  // PBA at 0x800 in BAR1
    #expect(try setup.device.irqInfo(VFIOPCIInterrupt.msix) == VFIOIRQInfo(index: 2, flags: [.eventFD], count: 8))
    let fixed = try Setup(MSIXDevice(dynamic: false))
    #expect(try fixed.device.irqInfo(VFIOPCIInterrupt.msix) == VFIOIRQInfo(index: 2, flags: [.eventFD, .noResize], count: 8))
    // A table that does not fit its BAR leaves MSI-X out.
    let misfit = SimulatedPCIDevice(
      vendorID: 1, deviceID: 1, classCode: 0, bars: [SimulatedPCIDevice.BAR(size: 0x100)], msix: .init(vectors: 32, tableBAR: 0))
    #expect(misfit.msix == nil)
    #expect(SimulatedPCIDevice.MSIX(vectors: 0, tableBAR: 0) == nil)
    #expect(SimulatedPCIDevice.MSIX(vectors: 2049, tableBAR: 0) == nil)
    #expect(SimulatedPCIDevice.MSIX(vectors: 1, tableBAR: 6) == nil)
    #expect(SimulatedPCIDevice.MSIX(vectors: 1, tableBAR: 0, tableOffset: 4) == nil)
  }

  @Test("MSI-X per vector: enable a subset, deliver, change one vector, add one past the enabled ones, clear one, fire from software with BOOL data, disable")
  func msixVectors() throws {
    let setup = try Setup(MSIXDevice())
    let events = try (0..<4).map { _ in try EventFD(nonBlocking: true, backend: setup.backend) }
    try setup.device.setInterrupts(VFIOPCIInterrupt.msix, eventFDs: [events[0], events[1]])
    #expect(setup.model.msixEnabled)
    _ = try PCIConfigSpace(setup.device).updateCommand { $0.insert(.busMaster) }
    try setup.raise(1)
    #expect(try InterruptConformance.signal(events[1]) == 1)
    try setup.device.setInterrupts(VFIOPCIInterrupt.msix, start: 1, eventFDs: [events[2]])
    try setup.raise(1)
    #expect(try InterruptConformance.signal(events[2]) == 1)
    #expect(try InterruptConformance.signal(events[1], within: 0) == nil)
    try setup.device.setInterrupts(VFIOPCIInterrupt.msix, start: 5, eventFDs: [events[3]])  // dynamic allocation
    try setup.raise(5)
    #expect(try InterruptConformance.signal(events[3]) == 1)
    try setup.device.setInterrupts(VFIOPCIInterrupt.msix, start: 0, eventFDs: [nil])
    try setup.raise(0)
    #expect(try InterruptConformance.signal(events[0], within: 0) == nil)
    try setup.device.perform(.trigger, interrupt: VFIOPCIInterrupt.msix, start: 0, selecting: [true, true, false])
    #expect(try InterruptConformance.signal(events[2]) == 1)
    #expect(try InterruptConformance.signal(events[0], within: 0) == nil)
    #expect(errno { try setup.device.setInterrupts(VFIOPCIInterrupt.msix, start: 8, eventFDs: [events[0]]) } == .invalidArgument)
    #expect(errno { try setup.device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [events[0]]) } == .invalidArgument)
    #expect(errno { try setup.device.perform(.mask, interrupt: VFIOPCIInterrupt.msix) } == .inappropriateIOCTLForDevice)
    try setup.device.disableInterrupts(VFIOPCIInterrupt.msix)
    #expect(!setup.model.msixEnabled)
    try setup.raise(5)
    #expect(try InterruptConformance.signal(events[3], within: 0) == nil)
  }

  @Test("MSI-X errors: a vector past the enabled ones without dynamic allocation is EINVAL and clears the block's vectors; a bad descriptor in a first call leaves MSI-X disabled")
  func msixErrors() throws {
    let setup = try Setup(MSIXDevice(dynamic: false))
    _ = try PCIConfigSpace(setup.device).updateCommand { $0.insert(.busMaster) }
    let events = try (0..<3).map { _ in try EventFD(nonBlocking: true, backend: setup.backend) }
    #expect(errno { try setup.device.setInterrupts(VFIOPCIInterrupt.msix, borrowing: [events[0].fileDescriptor, setup.iommufd.fileDescriptor]) } == .invalidArgument)
    #expect(!setup.model.msixEnabled)
    try setup.device.setInterrupts(VFIOPCIInterrupt.msix, eventFDs: [events[0], events[1]])
    // Vector 1 is replaced, vector 2 cannot be allocated: both end up with no eventfd.
    #expect(errno { try setup.device.setInterrupts(VFIOPCIInterrupt.msix, start: 1, eventFDs: [events[2], events[2]]) } == .invalidArgument)
    try setup.raise(1)
    #expect(try InterruptConformance.signal(events[1], within: 0) == nil)
    #expect(try InterruptConformance.signal(events[2], within: 0) == nil)
    try setup.raise(0)
    #expect(try InterruptConformance.signal(events[0]) == 1)
    #expect(setup.model.msixEnabled)
  }

  @Test("A memory BAR: region info says mmap-able with the MSI-X mappable capability; the table reads as ones and drops writes; mmaps and region accesses share the memory; register BARs stay unmappable")
  func memoryBAR() throws {
    let setup = try Setup(MSIXDevice())
    let bar = try setup.device.regionInfo(1)
    #expect(bar.flags == [.readable, .writable, .mappable, .capabilities])
    #expect(bar.capabilities == [.msixMappable])
    #expect(try setup.device.regionInfo(0).flags == [.readable, .writable])
    #expect(try setup.device.read(UInt64.self, region: bar, at: 0) == .max)
    try setup.device.write(UInt64(0x1234), region: bar, at: 8)
    #expect(try setup.device.read(UInt64.self, region: bar, at: 8) == .max)
    #expect(try setup.device.read(UInt64.self, region: bar, at: 0x800) == 0)  // the PBA
    // An access across the table's end: ones for the table's part, memory after it.
    try setup.device.write(UInt32(0xA5A5_A5A5), region: bar, at: 0x80)
    #expect(try setup.device.read(UInt64.self, region: bar, at: 0x7C) == 0xA5A5_A5A5_FFFF_FFFF)

    try setup.device.write(UInt32(0xCAFE_F00D), region: bar, at: 0x1000)
    let mapped = try setup.device.map(region: bar, offset: 0x1000, length: 0x1000)
    #expect(try mapped.load32(at: 0) == 0xCAFE_F00D)
    try mapped.store32(0x0BAD_BEEF, at: 4)
    #expect(try setup.device.read(UInt32.self, region: bar, at: 0x1004) == 0x0BAD_BEEF)
    #expect(setup.model.memory(ofBAR: 1)?.load(fromByteOffset: 0x1004, as: UInt32.self) == 0x0BAD_BEEF)
    let whole = try setup.device.map(region: bar)
    #expect(try whole.load32(at: 0x1004) == 0x0BAD_BEEF)
    try mapped.unmap()
    try whole.unmap()

    #expect(errno { try setup.device.map(region: try setup.device.regionInfo(0)) } == .invalidArgument)
    // Through the seam: a private mapping, a range past the BAR, a register BAR: EINVAL.
    let fd = setup.device.fileDescriptor
    for (length, flags, offset) in [(4096, MAP_PRIVATE, Int64(1) << 40), (0x5000, MAP_SHARED, Int64(1) << 40), (4096, MAP_SHARED, Int64(0))] {
      #expect(throws: Errno.invalidArgument) {
        try setup.kernel.mmap(length: length, protection: PROT_READ, flags: flags, fd: fd, offset: offset)
      }
    }
  }

  @Test("BAR sizing of a device with a 64-bit prefetchable BAR, a 32-bit one, and a 64-bit flag on BAR 5 (no room: 32-bit)")
  func barSizing() throws {
    var wide = SimulatedPCIDevice.BAR.memory(size: 1 << 33)
    wide.is64Bit = true
    wide.isPrefetchable = true
    var last = SimulatedPCIDevice.BAR(size: 0x100)
    last.is64Bit = true
    let model = SimulatedPCIDevice(vendorID: 1, deviceID: 2, classCode: 0, bars: [wide, nil, SimulatedPCIDevice.BAR(size: 0x4000), nil, nil, last])
    let setup = try Setup(model)
    let config = try PCIConfigSpace(setup.device)
    // Firmware's layout: 64-bit BARs from 256 GiB, 32-bit ones from 2 GiB.
    #expect(try config.bars() == [
      PCIBAR(index: 0, kind: .memory64, isPrefetchable: true, address: 0x40_0000_0000, size: 1 << 33),
      PCIBAR(index: 2, kind: .memory32, isPrefetchable: false, address: 0x8000_0000, size: 0x4000),
      PCIBAR(index: 5, kind: .memory32, isPrefetchable: false, address: 0x8000_4000, size: 0x100),
    ])
    #expect(try config.bar(1) == nil)  // the upper half of BAR0
    let resource = String(decoding: try setup.kernel.readFile("/sys/bus/pci/devices/0000:00:02.0/resource", maximumBytes: 4096), as: UTF8.self)
    #expect(resource.split(separator: "\n").first == "0x0000004000000000 0x00000041ffffffff 0x000000000014220c")
    try config.write(UInt32(0xFFFF_FFFF), at: 0x10)
    try config.write(UInt32(0x0000_0123), at: 0x14)
    #expect(try config.read(UInt32.self, at: 0x10) == 0x0000_000C)  // 8 GiB: no low address bits
    #expect(try config.read(UInt32.self, at: 0x14) == 0x0000_0122)  // the upper half masked to 8 GiB
  }

  @Test("A BAR mapping holds the device file: closed while mapped, the device stays bound and attached (its IOAS busy) until the munmap")
  func mappingHoldsDevice() throws {
    let setup = try Setup(MSIXDevice())
    let ioas = try setup.iommufd.allocateIOAS()
    try setup.device.attach(to: ioas)
    let mapped = try setup.device.map(region: try setup.device.regionInfo(1), offset: 0x1000, length: 0x2000)
    try setup.device.close()
    #expect(errno { try setup.iommufd.destroy(ioas.id) } == .resourceBusy)
    // Unmapping half keeps the file held by the other half.
    try setup.kernel.munmap(mapped.unsafeHostAddress, length: 0x1000)
    // A placeholder in the hole at once, so that the unmap of the whole range below unmaps
    // it and not a page another test's mmap, on another thread, took there meanwhile (only
    // the moment between these two calls is left; MAP_FIXED_NOREPLACE replaces nothing).
    _ = mmap(mapped.unsafeHostAddress, 0x1000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
    #expect(errno { try setup.iommufd.destroy(ioas.id) } == .resourceBusy)
    try mapped.unmap()  // the whole range again: the second half lets go
    try setup.iommufd.destroy(ioas.id)
  }

  @Test("Delayed completion: edu made with a DMA delay shows the DMA running after the command, completes it on the simulator's thread, and raises its interrupt then")
  func delayedDMA() throws {
    let kernel = SimulatedKernel(devices: [SimulatedEduDevice(dmaDelay: .milliseconds(50))])
    let backend = Backend.simulated(kernel)
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    try device.attach(to: ioas)
    let buffer = try DMABuffer(length: 4096, backend: backend)
    for index in 0..<4096 { buffer.bytes[index] = UInt8(truncatingIfNeeded: index) }
    let mapping = try ioas.map(buffer, at: .fixed(0x10_0000), access: [.readable, .writable])
    let edu = try EduDriver(device: device)
    try edu.enableBusMaster()
    let event = try EventFD(nonBlocking: true, backend: backend)
    try device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [event])
    try edu.write64(0x10_0000, 0x80)
    try edu.write64(0x40000, 0x88)
    try edu.write64(64, 0x90)
    try edu.write64(1 | 4, 0x98)
    #expect(try edu.read32(0x98) & 1 == 1)  // running
    #expect(try InterruptConformance.signal(event, within: 0) == nil)
    try edu.waitForDMA()
    #expect(try InterruptConformance.signal(event) == 1)
    #expect(try edu.interruptStatus() == EduDriver.dmaInterrupt)
    try edu.copyFromDevice(to: 0x10_0800, count: 64)
    #expect(Array(buffer.bytes[0x800..<0x840]) == Array(buffer.bytes[0..<64]))
    _ = mapping
  }
}

/// The simulated machine's sysfs beyond edu: several devices, their resources, links and
/// nodes, and what is not there.
@Suite("simulated sysfs")
struct SimulatedSysfsTests {
  @Test("two devices at 0000:00:02.0 and 0000:00:03.0, each in its own group, with resources laid out by BAR; the nodes exist, the legacy ones do not")
  func machine() throws {
    let kernel = SimulatedKernel(devices: [SimulatedEduDevice(), SimulatedDeviceModelTests.MSIXDevice()])
    let backend = Backend.simulated(kernel)
    let discovery = VFIODiscovery(backend: backend)
    let entries = try discovery.devices()
    #expect(entries.map(\.address.description) == ["0000:00:02.0", "0000:00:03.0"])
    #expect(entries.map(\.iommuGroup) == [0, 1])
    #expect(entries.map(\.cdevPath) == [SimulatedKernel.devicePath(0), SimulatedKernel.devicePath(1)])
    #expect(entries[1].classCode == 0x020000)
    let resource = String(decoding: try kernel.readFile("/sys/bus/pci/devices/0000:00:03.0/resource", maximumBytes: 4096), as: UTF8.self)
    let lines = resource.split(separator: "\n")
    #expect(lines.count == 13)
    #expect(lines[0] == "0x0000000090000000 0x0000000090000fff 0x0000000000040200")
    #expect(lines[1] == "0x0000000090004000 0x0000000090007fff 0x0000000000040200")
    #expect(try kernel.readLink("/sys/bus/pci/devices/0000:00:03.0/driver").hasSuffix("/vfio-pci"))
    #expect(try kernel.readFile("/sys/bus/pci/devices/0000:00:02.0/config", maximumBytes: 2) == [0x34, 0x12])
    try kernel.checkAccess("/dev/iommu", mode: R_OK | W_OK)
    try kernel.checkAccess("/sys/module/vfio_pci", mode: F_OK)
    #expect(throws: Errno.noSuchFileOrDirectory) { try kernel.checkAccess("/dev/vfio/0", mode: F_OK) }
    #expect(throws: Errno.noSuchFileOrDirectory) { try kernel.checkAccess("/dev/vfio/devices/vfio2", mode: F_OK) }
    #expect(throws: Errno.notDirectory) { try kernel.directoryEntries("/sys/bus/pci/devices/0000:00:02.0/vendor") }
    #expect(throws: Errno.isDirectory) { try kernel.readFile("/sys/bus/pci/devices", maximumBytes: 10) }
    #expect(throws: Errno.invalidArgument) { try kernel.readLink("/sys/bus/pci/devices/0000:00:02.0/vendor") }
    #expect(try kernel.directoryEntries("/sys/bus/pci/../pci/./devices") == ["0000:00:02.0", "0000:00:03.0"])
    // Host paths stay the host's.
    #expect(try kernel.directoryEntries("/proc/self/fd").isEmpty == false)
    // What discovery read, recorded.
    let transcript = TranscriptSystemCalls(kernel)
    _ = try VFIODiscovery(backend: Backend(transcript)).device(at: entries[0].address)
    #expect(transcript.entries.contains { $0.call == .readFile(path: "/sys/bus/pci/devices/0000:00:02.0/vendor") })
  }
}
