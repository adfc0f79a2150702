import Foundation
import Iommufd
import SystemPackage
import Testing

/// Mediated-device names and discovery against a generated sysfs tree laid out as the
/// kernel lays out the mtty sample's (`mdev_sysfs.c`).
@Suite("mediated devices")
struct MediatedDeviceTests {
  @Test("UUIDs parse as uuid_is_valid accepts them (36 characters, dashes at 8, 13, 18, 23, hex of either case) and print lowercase")
  func parse() throws {
    let id = try #require(MediatedDeviceID("83B8F4F2-509F-382F-3C1E-E6BFE0FA1001"))
    #expect(id.description == "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001")
    #expect(id == MediatedDeviceID(high: 0x83b8_f4f2_509f_382f, low: 0x3c1e_e6bf_e0fa_1001))
    #expect(MediatedDeviceID(id.description) == id)
    for bad in [
      "", "83b8f4f2-509f-382f-3c1e-e6bfe0fa100", "83b8f4f2-509f-382f-3c1e-e6bfe0fa10011", "83b8f4f2x509f-382f-3c1e-e6bfe0fa1001",
      "83b8f4f2-509f-382f-3c1e-e6bfe0fa100g", "{3b8f4f2-509f-382f-3c1e-e6bfe0fa1001", "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001\n",
      "83b8f4f2509f382f3c1ee6bfe0fa1001", "８3b8f4f2-509f-382f-3c1e-e6bfe0fa100",
    ] {
      #expect(MediatedDeviceID(bad) == nil, "\(bad.debugDescription)")
    }
    #expect(MediatedDeviceID(high: 0, low: 1) < MediatedDeviceID(high: 1, low: 0))
    #expect(MediatedDeviceID(high: 0, low: 0).description == "00000000-0000-0000-0000-000000000000")
  }

  @Test("random names are version 4, variant 10, and differ")
  func random() {
    let ids = (0..<64).map { _ in MediatedDeviceID.random() }
    #expect(Set(ids).count == 64)
    for id in ids {
      #expect(id.high >> 12 & 0xF == 4)
      #expect(id.low >> 62 == 0b10)
      #expect(MediatedDeviceID(id.description) == id)
    }
  }

  /// mtty's parent with its two types (22 ports left: one mtty-2 exists) and that device.
  static func withTree<T>(_ body: (VFIODiscovery, String) throws -> T) throws -> T {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-mdev-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    let fm = FileManager.default
    let parent = "\(root)/devices/virtual/mtty/mtty"
    for (type, name, available) in [("mtty-1", "Single port serial", 22), ("mtty-2", "Dual port serial", 11)] {
      let directory = "\(parent)/mdev_supported_types/\(type)"
      try fm.createDirectory(atPath: "\(directory)/devices", withIntermediateDirectories: true)
      try "\(name)\n".write(toFile: "\(directory)/name", atomically: true, encoding: .utf8)
      try "\(available)\n".write(toFile: "\(directory)/available_instances", atomically: true, encoding: .utf8)
      try "vfio-pci\n".write(toFile: "\(directory)/device_api", atomically: true, encoding: .utf8)
      try "".write(toFile: "\(directory)/create", atomically: true, encoding: .utf8)
    }
    try fm.createDirectory(atPath: "\(root)/class/mdev_bus", withIntermediateDirectories: true)
    try fm.createSymbolicLink(atPath: "\(root)/class/mdev_bus/mtty", withDestinationPath: "../../devices/virtual/mtty/mtty")
    let uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
    let device = "\(parent)/\(uuid)"
    try fm.createDirectory(atPath: "\(device)/vfio-dev/vfio3", withIntermediateDirectories: true)
    try "".write(toFile: "\(device)/remove", atomically: true, encoding: .utf8)
    try fm.createSymbolicLink(atPath: "\(device)/mdev_type", withDestinationPath: "../mdev_supported_types/mtty-2")
    try fm.createDirectory(atPath: "\(root)/bus/mdev/drivers/mtty", withIntermediateDirectories: true)
    try fm.createSymbolicLink(atPath: "\(device)/driver", withDestinationPath: "../../../../../bus/mdev/drivers/mtty")
    try fm.createDirectory(atPath: "\(root)/kernel/iommu_groups/5", withIntermediateDirectories: true)
    try fm.createSymbolicLink(atPath: "\(device)/iommu_group", withDestinationPath: "../../../../../kernel/iommu_groups/5")
    try fm.createDirectory(atPath: "\(root)/bus/mdev/devices", withIntermediateDirectories: true)
    try fm.createSymbolicLink(atPath: "\(root)/bus/mdev/devices/\(uuid)", withDestinationPath: "../../../devices/virtual/mtty/mtty/\(uuid)")
    try "not a device".write(toFile: "\(root)/bus/mdev/devices/README", atomically: true, encoding: .utf8)
    return try body(VFIODiscovery(sysfsRoot: FilePath(root), deviceRoot: "/dev"), root)
  }

  @Test("types, devices and cdevs read from the tree; names that are no UUID are left out")
  func discover() throws {
    try Self.withTree { discovery, _ in
      let types = try discovery.mediatedDeviceTypes()
      #expect(types == [
        MediatedDeviceType(id: "mtty-1", parent: "mtty", name: "Single port serial", description: nil, availableInstances: 22, deviceAPI: "vfio-pci"),
        MediatedDeviceType(id: "mtty-2", parent: "mtty", name: "Dual port serial", description: nil, availableInstances: 11, deviceAPI: "vfio-pci"),
      ])
      let id = try #require(MediatedDeviceID("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"))
      let entry = MediatedDeviceEntry(id: id, type: "mtty-2", parent: "mtty", driver: "mtty", iommuGroup: 5, cdevPath: "/dev/vfio/devices/vfio3")
      #expect(try discovery.mediatedDevices() == [entry])
      #expect(try discovery.mediatedDevice(id) == entry)
      #expect(try discovery.cdevPath(for: id) == "/dev/vfio/devices/vfio3")
      let access = discovery.access(for: id)
      #expect(access.device == .mediated(id) && access.address == nil)
      #expect(access.reasons.first == "a mediated device of type mtty-2 on parent mtty: emulated, its driver reaches memory through an iommufd access or the container, not an IOMMU")
      #expect(access.reasons.contains("bound to mtty"))
      let missing = discovery.access(for: MediatedDeviceID(high: 1, low: 1))
      #expect(missing.route == .none && missing.reasons == ["no mediated device 00000000-0000-0001-0000-000000000001"])
      #expect(missing.description.hasPrefix("mdev 00000000-0000-0001-0000-000000000001: not usable"))
    }
  }

  @Test("remove refuses (EBUSY, nothing written) while this process holds the device's cdev open: the kernel would wait forever")
  func removeWhileOpen() throws {
    try Self.withTree { _, root in
      let discovery = VFIODiscovery(sysfsRoot: FilePath(root), deviceRoot: FilePath(root + "/dev"))
      try FileManager.default.createDirectory(atPath: root + "/dev/vfio/devices", withIntermediateDirectories: true)
      try "".write(toFile: root + "/dev/vfio/devices/vfio3", atomically: true, encoding: .utf8)
      let id = try #require(MediatedDeviceID("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"))
      let fd = open(root + "/dev/vfio/devices/vfio3", O_RDONLY | O_CLOEXEC)
      try #require(fd >= 0)
      let error = try #require(throws: IommufdError.self) { try discovery.removeMediatedDevice(id) }
      #expect(error.errno == .resourceBusy && error.detail?.contains("descriptor \(fd)") == true)
      #expect(try String(contentsOfFile: "\(root)/devices/virtual/mtty/mtty/\(id)/remove", encoding: .utf8) == "")
      close(fd)
      try discovery.removeMediatedDevice(id)
      #expect(try String(contentsOfFile: "\(root)/devices/virtual/mtty/mtty/\(id)/remove", encoding: .utf8) == "1")
    }
  }

  @Test("create writes the UUID (36 bytes, no newline) to the type's create; remove writes 1 to the device's remove; a type two parents offer needs the parent named (EINVAL)")
  func createAndRemove() throws {
    try Self.withTree { discovery, root in
      let id = try #require(MediatedDeviceID("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"))
      // The tree already has that device, so the create returns it after the write.
      #expect(try discovery.createMediatedDevice(ofType: "mtty-1", id: id).id == id)
      let written = try String(contentsOfFile: "\(root)/devices/virtual/mtty/mtty/mdev_supported_types/mtty-1/create", encoding: .utf8)
      #expect(written == id.description)
      try discovery.removeMediatedDevice(id)
      #expect(try String(contentsOfFile: "\(root)/devices/virtual/mtty/mtty/\(id)/remove", encoding: .utf8) == "1")
      try FileManager.default.createSymbolicLink(atPath: "\(root)/class/mdev_bus/mtty2", withDestinationPath: "../../devices/virtual/mtty/mtty")
      let error = try #require(throws: IommufdError.self) { try discovery.createMediatedDevice(ofType: "mtty-1") }
      #expect(error.errno == .invalidArgument && error.detail?.contains("name one") == true)
      #expect(try discovery.createMediatedDevice(ofType: "mtty-1", parent: "mtty2", id: id).id == id)
    }
  }
}
