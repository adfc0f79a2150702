import Foundation
import Iommufd
import IommufdEdu
import IommufdSimulator
import SystemPackage
import Testing

/// Discovery through the backend's sysfs: the host's on the kernel (the lab's edu), the
/// simulated machine's on the simulator, with the same expectations.
@Suite("conformance: discovery")
struct DiscoveryConformance {
  /// edu's address: the lab's (IOMMUFD_TEST_DEVICE), and the simulated machine's vfio0.
  static func eduAddress(_ platform: Platform) throws -> PCIAddress {
    if platform.isSimulated { return SimulatedKernel.pciAddress(ofDevice: 0) }
    return try #require(PCIAddress(ProcessInfo.processInfo.environment["IOMMUFD_TEST_DEVICE"] ?? ""))
  }

  @Test("edu in sysfs: 1234:11e8 class 0x00ff00 bound to vfio-pci, alone in its IOMMU group, whose reserved regions hold the MSI window; its cdev is the one the platform opens; an address with no device is ENOENT", arguments: Platform.withDevice)
  func eduInSysfs(platform: Platform) throws {
    let backend = platform.makeBackend()
    let discovery = VFIODiscovery(backend: backend)
    let address = try Self.eduAddress(platform)
    let entry = try discovery.device(at: address)
    #expect(entry.vendorID == 0x1234 && entry.deviceID == 0x11e8)
    #expect(entry.classCode == 0x00ff00)
    #expect(entry.driver == "vfio-pci")
    #expect(entry.cdevPath == platform.devicePath)
    #expect(try discovery.devices().contains(entry))
    let group = try discovery.group(try #require(entry.iommuGroup))
    #expect(group.devices == [address])
    #expect(group.reservedRegions.contains { $0.range == IOVARange(start: 0xFEE0_0000, last: 0xFEEF_FFFF) && $0.type == "msi" })
    #expect(try discovery.cdevPath(for: address) == platform.devicePath)
    guard case .cdev(let cdev) = discovery.access(for: address).route else {
      Issue.record("no cdev route: \(discovery.access(for: address).reasons)")
      return
    }
    #expect(cdev == platform.devicePath)
    let absent = PCIAddress(domain: 0, bus: 0x7f, device: 31, function: 7)!
    #expect(errno { try discovery.device(at: absent) } == .noSuchFileOrDirectory)
  }

  @Test("VFIOSession.open and VFIODevice.open(pciAddress:) by edu's address: bound, attached to a fresh IOAS, edu answers", arguments: Platform.withDevice)
  func openByAddress(platform: Platform) throws {
    let backend = platform.makeBackend()
    let address = try Self.eduAddress(platform)
    let session = try VFIOSession.open(address, backend: backend)
    #expect(session.deviceID != nil)
    let edu = try EduDriver(device: session.device)
    #expect(try edu.livenessCheck(0x0F0F_0000) == 0xF0F0_FFFF)
    try session.device.close()
    let device = try VFIODevice.open(pciAddress: address, backend: backend)
    #expect(device.path == platform.devicePath)
  }
}
