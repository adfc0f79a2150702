import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

/// The configuration space helpers on edu (QEMU's, and the model), and on malformed
/// spaces a device model makes up.
@Suite("conformance: PCI config space")
struct ConfigSpaceConformance {
  @Test("edu's config space: ids, class, the MSI capability at 0x40 and nothing else, the command register round trip", arguments: Platform.withDevice)
  func eduConfigSpace(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    try device.bind(to: iommufd)
    let config = try PCIConfigSpace(device)
    #expect(config.size == 256)
    #expect(try config.vendorID() == 0x1234)
    #expect(try config.deviceID() == 0x11e8)
    #expect(try config.classCode() == 0x00ff00)
    #expect(try config.capabilities() == [PCICapability(id: PCICapability.msi, offset: 0x40)])
    #expect(try config.extendedCapabilities() == [])
    #expect(try config.capability(PCICapability.msi)?.offset == 0x40)
    #expect(try config.capability(PCICapability.msix) == nil)
    let before = try config.command()
    #expect(before.contains(.memorySpace))
    let enabled = try config.updateCommand { $0.insert(.busMaster) }
    #expect(enabled == before.union(.busMaster))
    #expect(try config.command() == enabled)
    try config.setCommand(before.subtracting(.busMaster))
    #expect(try config.command() == before.subtracting(.busMaster))
    #expect(errno { try config.read(UInt32.self, at: 254) } == .invalidArgument)
    #expect(errno { try config.write(UInt16(0), at: 256) } == .invalidArgument)
    try device.close()
    #expect(errno { try config.capabilities() } == .badFileDescriptor)
  }

  /// A device whose config space is what the test writes into it.
  final class MadeUpDevice: SimulatedPCIDevice, @unchecked Sendable {
    init(_ edit: (inout [UInt8]) -> Void) {
      super.init(vendorID: 0x1af4, deviceID: 0x1000, classCode: 0x020000, bars: [BAR(size: 0x1000)], msiCount: 0)
      edit(&config)
    }
  }

  static func capabilities(of device: MadeUpDevice) throws -> [PCICapability] {
    let backend = Backend.simulated(SimulatedKernel(devices: [device]))
    let iommufd = try IOMMUFD.open(backend: backend)
    let handle = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    try handle.bind(to: iommufd)
    return try PCIConfigSpace(handle).capabilities()
  }

  @Test("BAR sizing through config space: edu's BAR0 is 1 MiB of 32-bit memory, not prefetchable, and BARs 1–5 and the ROM are absent; the registers are vfio-pci's own (an address written reads back masked to the size) and are restored after sizing", arguments: Platform.withDevice)
  func barSizing(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    try device.bind(to: iommufd)
    let config = try PCIConfigSpace(device)
    let original = try config.read(UInt32.self, at: 0x10)
    let bars = try config.bars()
    #expect(bars.map(\.index) == [0])
    #expect(bars.first?.kind == .memory32)
    #expect(bars.first?.size == 1 << 20)
    #expect(bars.first?.isPrefetchable == false)
    #expect(bars.first?.address == UInt64(original & ~0xF))
    #expect(try config.read(UInt32.self, at: 0x10) == original)  // restored
    #expect(try config.bar(1) == nil)
    #expect(try config.read(UInt32.self, at: 0x30) == 0)  // no ROM
    try config.write(UInt32(0x1234_5678), at: 0x10)
    #expect(try config.read(UInt32.self, at: 0x10) == 0x1230_0000)
    try config.write(UInt32(0xFFFF_FFFF), at: 0x14)  // BAR1 is not implemented: stays 0
    #expect(try config.read(UInt32.self, at: 0x14) == 0)
    try config.write(original, at: 0x10)
    // The BAR registers never reach the device: edu still answers at BAR0.
    #expect(try device.read(UInt32.self, region: try device.regionInfo(0), at: 0) == 0x0100_00ed)
    #expect(errno { try config.bar(6) } == .invalidArgument)
    #expect(errno { try config.bar(-1) } == .invalidArgument)
  }

  @Test("a list that loops or points below 0x40 is EBADMSG; no status bit, no list; a chain of three is read in order")
  func malformedLists() throws {
    #expect(try Self.capabilities(of: MadeUpDevice { _ in }) == [])
    let three = MadeUpDevice { config in
      config[6] |= 0x10
      config[0x34] = 0x50
      config[0x50] = 0x01; config[0x51] = 0x60
      config[0x60] = 0x05; config[0x61] = 0x48
      config[0x48] = 0x09; config[0x49] = 0x00
    }
    #expect(try Self.capabilities(of: three) == [
      PCICapability(id: 0x01, offset: 0x50), PCICapability(id: 0x05, offset: 0x60), PCICapability(id: 0x09, offset: 0x48),
    ])
    let loop = MadeUpDevice { config in
      config[6] |= 0x10
      config[0x34] = 0x40
      config[0x40] = 0x05; config[0x41] = 0x50
      config[0x50] = 0x11; config[0x51] = 0x40
    }
    let loopError = try #require(throws: IommufdError.self) { try Self.capabilities(of: loop) }
    #expect(loopError.errno == .badMessage)
    #expect(loopError.detail?.contains("loops back to 0x40") == true)
    let low = MadeUpDevice { config in
      config[6] |= 0x10
      config[0x34] = 0x20
    }
    #expect(errno { try Self.capabilities(of: low) } == .badMessage)
  }
}
