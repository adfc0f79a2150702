import Foundation
import Iommufd
import SystemPackage
import Testing

/// PCI addresses and sysfs discovery against generated sysfs trees.
@Suite("discovery")
struct DiscoveryTests {
  @Test("PCI addresses parse in both sysfs and short form, and print in sysfs form")
  func parse() throws {
    #expect(PCIAddress("0000:00:03.0")?.description == "0000:00:03.0")
    #expect(PCIAddress("3a:1f.7") == PCIAddress(domain: 0, bus: 0x3a, device: 0x1f, function: 7))
    #expect(PCIAddress("10000:00:00.0") == nil)
    #expect(PCIAddress("0000:00:20.0") == nil)
    #expect(PCIAddress("0000:00:03.8") == nil)
    #expect(PCIAddress("0000:00:03") == nil)
    #expect(PCIAddress(":00:03.0") == nil)
    #expect(PCIAddress("") == nil)
  }

  /// A sysfs tree with: an edu device bound to vfio-pci with a cdev; a NIC bound to e1000e;
  /// a device bound to vfio-pci without a cdev; a device with no driver.
  static func makeTree() throws -> (root: String, cleanup: () -> Void) {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-sysfs-\(UUID().uuidString)").path
    let fm = FileManager.default
    func device(_ bdf: String, vendor: String, device: String, class code: String, driver: String?, group: Int?, cdev: String?) throws {
      let real = "\(root)/devices/pci0000:00/\(bdf)"
      try fm.createDirectory(atPath: real, withIntermediateDirectories: true)
      try "\(vendor)\n".write(toFile: "\(real)/vendor", atomically: true, encoding: .utf8)
      try "\(device)\n".write(toFile: "\(real)/device", atomically: true, encoding: .utf8)
      try "\(code)\n".write(toFile: "\(real)/class", atomically: true, encoding: .utf8)
      if let driver {
        try fm.createDirectory(atPath: "\(root)/bus/pci/drivers/\(driver)", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: "\(real)/driver", withDestinationPath: "../../../bus/pci/drivers/\(driver)")
      }
      if let group {
        try fm.createDirectory(atPath: "\(root)/kernel/iommu_groups/\(group)", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: "\(real)/iommu_group", withDestinationPath: "../../../kernel/iommu_groups/\(group)")
      }
      if let cdev { try fm.createDirectory(atPath: "\(real)/vfio-dev/\(cdev)", withIntermediateDirectories: true) }
      try fm.createDirectory(atPath: "\(root)/bus/pci/devices", withIntermediateDirectories: true)
      try fm.createSymbolicLink(atPath: "\(root)/bus/pci/devices/\(bdf)", withDestinationPath: "../../../devices/pci0000:00/\(bdf)")
    }
    try device("0000:00:03.0", vendor: "0x1234", device: "0x11e8", class: "0x00ff00", driver: "vfio-pci", group: 3, cdev: "vfio0")
    try device("0000:00:02.0", vendor: "0x8086", device: "0x10d3", class: "0x020000", driver: "e1000e", group: 2, cdev: nil)
    try device("0000:00:04.0", vendor: "0x1234", device: "0x11e8", class: "0x00ff00", driver: "vfio-pci", group: 4, cdev: nil)
    try device("0000:00:05.0", vendor: "0x1b36", device: "0x0001", class: "0x060000", driver: nil, group: nil, cdev: nil)
    try device("0000:00:06.0", vendor: "0x1b36", device: "0x0001", class: "0x060000", driver: nil, group: 6, cdev: nil)
    return (root, { try? fm.removeItem(atPath: root) })
  }

  @Test("devices() lists every PCI device in address order with ids, driver, group and cdev")
  func listDevices() throws {
    let tree = try Self.makeTree()
    defer { tree.cleanup() }
    let discovery = VFIODiscovery(sysfsRoot: FilePath(tree.root), deviceRoot: "/dev")
    let devices = try discovery.devices()
    #expect(devices.map(\.address.description) == ["0000:00:02.0", "0000:00:03.0", "0000:00:04.0", "0000:00:05.0", "0000:00:06.0"])
    #expect(devices[1] == PCIDeviceEntry(
      address: PCIAddress("0000:00:03.0")!, vendorID: 0x1234, deviceID: 0x11e8, classCode: 0x00ff00,
      driver: "vfio-pci", iommuGroup: 3, cdevPath: "/dev/vfio/devices/vfio0"))
    #expect(devices[0].driver == "e1000e")
    #expect(devices[3].driver == nil)
    #expect(devices[3].iommuGroup == nil)
  }

  @Test("cdevPath finds the vfio-dev node, or says why there is none")
  func cdevReasons() throws {
    let tree = try Self.makeTree()
    defer { tree.cleanup() }
    let discovery = VFIODiscovery(sysfsRoot: FilePath(tree.root), deviceRoot: "/devroot")
    #expect(try discovery.cdevPath(for: PCIAddress("00:03.0")!) == "/devroot/vfio/devices/vfio0")
    func reason(_ bdf: String) -> String? {
      do {
        _ = try discovery.cdevPath(for: PCIAddress(bdf)!)
        return nil
      } catch {
        return "\(error.errno.rawValue) \(error.detail ?? "")"
      }
    }
    #expect(reason("00:02.0") == "19 0000:00:02.0 has no VFIO cdev: it is bound to e1000e, not to a VFIO driver")
    #expect(reason("00:04.0") == "19 0000:00:04.0 has no VFIO cdev: it is bound to vfio-pci but has no vfio-dev node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV")
    #expect(reason("00:05.0") == "19 0000:00:05.0 has no VFIO cdev: it is in no IOMMU group: no IOMMU translates for it (enable VT-d/AMD-Vi, e.g. intel_iommu=on)")
    #expect(reason("00:06.0") == "19 0000:00:06.0 has no VFIO cdev: it is bound to no driver; bind it to vfio-pci")
    #expect(reason("00:09.0") == "2 no PCI device 0000:00:09.0")
  }

  @Test("VFIODevice.open(pciAddress:) opens the discovered cdev through the seam")
  func openByAddress() throws {
    let tree = try Self.makeTree()
    defer { tree.cleanup() }
    let calls = RecordingSystemCalls()
    let device = try VFIODevice.open(
      pciAddress: PCIAddress("0000:00:03.0")!, discovery: VFIODiscovery(sysfsRoot: FilePath(tree.root)), backend: Backend(calls))
    #expect(device.path == "/dev/vfio/devices/vfio0")
    #expect(calls.calls.first?.name == "open /dev/vfio/devices/vfio0")
  }
}
