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
