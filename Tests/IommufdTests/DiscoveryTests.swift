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
    try fm.createDirectory(atPath: "\(root)/kernel/iommu_groups/3/devices", withIntermediateDirectories: true)
    try fm.createSymbolicLink(atPath: "\(root)/kernel/iommu_groups/3/devices/0000:00:03.0", withDestinationPath: "../../../../devices/pci0000:00/0000:00:03.0")
    try "0x00000000fee00000 0x00000000feefffff msi\n".write(toFile: "\(root)/kernel/iommu_groups/3/reserved_regions", atomically: true, encoding: .utf8)
    for (group, members) in [(2, ["0000:00:02.0", "0000:00:07.0"]), (6, ["0000:00:06.0"]), (4, ["0000:00:04.0"])] {
      try fm.createDirectory(atPath: "\(root)/kernel/iommu_groups/\(group)/devices", withIntermediateDirectories: true)
      for member in members {
        try? fm.createSymbolicLink(atPath: "\(root)/kernel/iommu_groups/\(group)/devices/\(member)", withDestinationPath: "../../../../devices/pci0000:00/\(member)")
      }
      try "0x0000000000000000 0x0000000000ffffff direct-relaxable\n0x00000000fee00000 0x00000000feefffff msi\n"
        .write(toFile: "\(root)/kernel/iommu_groups/\(group)/reserved_regions", atomically: true, encoding: .utf8)
    }
    try device("0000:00:07.0", vendor: "0x8086", device: "0x10d3", class: "0x020000", driver: "e1000e", group: 2, cdev: nil)
    for bdf in ["0000:00:02.0", "0000:00:06.0"] {
      try "".write(toFile: "\(root)/devices/pci0000:00/\(bdf)/driver_override", atomically: false, encoding: .utf8)
    }
    try "".write(toFile: "\(root)/bus/pci/drivers_probe", atomically: false, encoding: .utf8)
    try "".write(toFile: "\(root)/bus/pci/drivers/e1000e/unbind", atomically: false, encoding: .utf8)
    return (root, { try? fm.removeItem(atPath: root) })
  }

  @Test("group() lists an IOMMU group's devices and reserved regions with their types")
  func group() throws {
    let tree = try Self.makeTree()
    defer { tree.cleanup() }
    let group = try VFIODiscovery(sysfsRoot: FilePath(tree.root), deviceRoot: "/devroot").group(2)
    #expect(group.devices.map(\.description) == ["0000:00:02.0", "0000:00:07.0"])
    #expect(group.reservedRegions == [
      .init(range: IOVARange(start: 0, last: 0xFF_FFFF), type: "direct-relaxable"),
      .init(range: IOVARange(start: 0xFEE0_0000, last: 0xFEEF_FFFF), type: "msi"),
    ])
    #expect(group.node == "/devroot/vfio/2")
    #expect(errno { try VFIODiscovery(sysfsRoot: FilePath(tree.root)).group(9) } == .noSuchFileOrDirectory)
  }

  @Test("access() picks the cdev, else the legacy group, else nothing, and gives every reason")
  func access() throws {
    let tree = try Self.makeTree()
    defer { tree.cleanup() }
    let fm = FileManager.default
    let dev = tree.root + "/dev"
    try fm.createDirectory(atPath: dev + "/vfio/devices", withIntermediateDirectories: true)
    for node in ["/iommu", "/vfio/devices/vfio0", "/vfio/vfio", "/vfio/4"] { _ = fm.createFile(atPath: dev + node, contents: nil) }
    let discovery = VFIODiscovery(sysfsRoot: FilePath(tree.root), deviceRoot: FilePath(dev))
    let cdev = discovery.access(for: PCIAddress("00:03.0")!)
    #expect(cdev.route == .cdev(FilePath(dev + "/vfio/devices/vfio0")))
    #expect(cdev.reasons == ["IOMMU group 3", "bound to vfio-pci", "iommufd and the VFIO cdev \(dev)/vfio/devices/vfio0 are usable"])
    let legacy = discovery.access(for: PCIAddress("00:04.0")!)
    #expect(legacy.route == .group(FilePath(dev + "/vfio/4"), number: 4))
    #expect(legacy.reasons.contains("no vfio-dev node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV or CONFIG_IOMMUFD"))
    let host = discovery.access(for: PCIAddress("00:02.0")!)
    #expect(host.route == .none)
    #expect(host.reasons.last == "bound to e1000e, not to a VFIO driver: bind it with `iommufd-tool bind 0000:00:02.0`")
    #expect(discovery.access(for: PCIAddress("00:05.0")!).reasons.last?.hasPrefix("0000:00:05.0 is in no IOMMU group") == true)
    try fm.removeItem(atPath: dev + "/iommu")
    let noIOMMUFD = discovery.access(for: PCIAddress("00:03.0")!)
    #expect(noIOMMUFD.route == .none)
    #expect(noIOMMUFD.reasons.suffix(2) == ["\(dev)/iommu does not exist", "\(dev)/vfio/3 does not exist"])
  }

  @Test("binding refuses while another device of the group is on a host driver, naming it; otherwise writes the sysfs files in order")
  func binding() throws {
    let tree = try Self.makeTree()
    defer { tree.cleanup() }
    let binding = PCIDriverBinding(discovery: VFIODiscovery(sysfsRoot: FilePath(tree.root)))
    let refused = try #require(throws: IommufdError.self) { try binding.bindToVFIO(PCIAddress("00:02.0")!) }
    #expect(refused.errno == .resourceBusy)
    #expect(refused.detail == "0000:00:02.0: IOMMU group 2 also holds 0000:00:07.0 (e1000e), bound to host drivers: unbind them first")
    #expect(try binding.bindToVFIO(PCIAddress("00:03.0")!) == "vfio-pci")
    // A generated tree does not react like the kernel: the device stays unbound, which
    // binding reports after writing the override and probing, then clears the override.
    let unreactive = try #require(throws: IommufdError.self) { try binding.bindToVFIO(PCIAddress("00:06.0")!) }
    #expect(unreactive.detail
      == "0000:00:06.0: still bound to no driver after drivers_probe: is the vfio-pci module loaded?; driver_override restored to (null)")
    #expect(try String(contentsOfFile: tree.root + "/devices/pci0000:00/0000:00:06.0/driver_override", encoding: .utf8) == "\n")
    #expect(try String(contentsOfFile: tree.root + "/bus/pci/drivers_probe", encoding: .utf8) == "0000:00:06.0")
  }

  @Test("devices() lists every PCI device in address order with ids, driver, group and cdev")
  func listDevices() throws {
    let tree = try Self.makeTree()
    defer { tree.cleanup() }
    let discovery = VFIODiscovery(sysfsRoot: FilePath(tree.root), deviceRoot: "/dev")
    let devices = try discovery.devices()
    #expect(devices.map(\.address.description) == ["0000:00:02.0", "0000:00:03.0", "0000:00:04.0", "0000:00:05.0", "0000:00:06.0", "0000:00:07.0"])
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
