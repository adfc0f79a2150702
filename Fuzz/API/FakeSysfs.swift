import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A sysfs and `/dev` tree in memory (`/dev/shm`, else `/tmp`), rebuilt with random, often hostile contents for each
/// discovery or driver-binding call, so those run on files the fuzzer owns (driver binding
/// writes `driver_override`, `unbind` and `drivers_probe`: never the real ones).
///
/// Every link points inside the tree.
final class FakeSysfs {
  /// The tree's directory.
  let root: String

  /// What a rebuilt tree holds, for the call's description and its arguments.
  struct Tree {
    /// The devices that parse as addresses.
    var addresses: [PCIAddress] = []
    /// The number of the first IOMMU group made (or 0).
    var group = 0
    /// The mediated devices whose names parse.
    var mediatedIDs: [MediatedDeviceID] = []
    /// The mdev type directories made.
    var mediatedTypes: [String] = []
    /// A summary of the tree's contents.
    var description = ""
  }

  /// A tree named after process `owner` in ``scratchDirectory``.
  init(owner: Int32) {
    root = scratchDirectory + "/iommufd-api-fuzz.\(owner)"
  }

  /// Removes the tree.
  func remove() { Self.removeTree(root) }

  /// Removes `path` and, for a directory, everything under it (links are not followed).
  static func removeTree(_ path: String) {
    var status = stat()
    guard lstat(path, &status) == 0 else { return }
    guard status.st_mode & S_IFMT == S_IFDIR else {
      _ = unlink(path)
      return
    }
    var names: [String] = []
    if let directory = opendir(path) {
      while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
      }
      _ = closedir(directory)
    }
    for name in names { removeTree(path + "/" + name) }
    _ = rmdir(path)
  }

  /// Rebuilds the tree from `rng`; returns a discovery over it (or, with `hostileRoots`,
  /// over odd roots: missing ones, `/proc/self`, the real `/sys` read-only) and what it holds.
  func rebuild(_ rng: inout SplitMix64, hostileRoots: Bool) -> (VFIODiscovery, Tree) {
    remove()
    let sys = root + "/sys"
    let dev = root + "/dev"
    var tree = Tree()
    var summary: [String] = []
    for directory in ["/bus/pci/devices", "/kernel/iommu_groups", "/bus/pci/drivers"] {
      makeDirectories(sys + directory)
    }
    makeDirectories(dev + "/vfio/devices")
    write("", to: sys + "/bus/pci/drivers_probe")
    if rng.bool() { makeDirectories(sys + "/module/vfio_pci") }
    if rng.bool() { write("", to: dev + "/iommu") }
    if rng.bool() { write("", to: dev + "/vfio/vfio") }
    let hexTexts = [
      "0x1234\n", "0x11e8\n", "0x00ff00\n", "", "0x", "-0x1\n", "+0x1\n", "0x99999999999999999999\n", "0x\u{663}\n", "1234",
      "0xffffffffffffffff\n", "0x10000\n", " 0x12 \n",
    ]
    let groupNames = ["5", "0", "-1", "+3", "99999999999999999999", "9223372036854775807", "abc", "\u{663}", "-9223372036854775808"]
    let driverNames = ["vfio-pci", "e1000e", "pcieport", "vfio-pci-core", "-", "x"]
    let cdevNames = ["vfio0", "vfio1", "vfio-1", "vfio99999999999999999999", "vfiox", "vfio"]
    let regionLines = [
      "0x00000000fee00000 0x00000000feefffff msi", "0x0 0xffffffffffffffff reserved", "0x10 0x5 direct", "0x 0x msi",
      "0xfffffffffffffffff 0x1 x", "garbage", "0x1000", "-0x1 +0x2 direct-relaxable", "0x\u{663} 0x1 msi", "",
    ]
    for _ in 0..<rng.below(4) {
      let name: String
      if rng.chance(80) {
        let domain = rng.chance(80) ? 0 : rng.hostileU16()
        let address = PCIAddress(domain: domain, bus: rng.hostileU8(), device: UInt8(rng.below(32)), function: UInt8(rng.below(8)))
        name = address?.description ?? "0000:00:03.0"
        if let address { tree.addresses.append(address) }
      } else {
        name = rng.element(["0000:00:03.0x", "zzzz", "+000:00:03.0", "ffff:ff:1f.7", "0000:00:03.0\u{301}", "00:03.0"]) ?? "zzzz"
      }
      let directory = sys + "/bus/pci/devices/" + name
      makeDirectories(directory)
      var parts = [name]
      for attribute in ["vendor", "device", "class"] where rng.chance(85) {
        let text = rng.element(hexTexts) ?? ""
        write(text, to: directory + "/" + attribute)
        parts.append("\(attribute)=\(text.debugDescription)")
      }
      write("", to: directory + "/driver_override")
      if rng.chance(60), let driver = rng.element(driverNames) {
        makeDirectories(sys + "/bus/pci/drivers/" + driver)
        write("", to: sys + "/bus/pci/drivers/" + driver + "/unbind")
        link(directory + "/driver", to: "../../../../bus/pci/drivers/" + driver)
        parts.append("driver=\(driver)")
      }
      if rng.chance(80), let group = rng.element(groupNames) {
        let groupDirectory = sys + "/kernel/iommu_groups/" + group
        makeDirectories(groupDirectory + "/devices/" + name)
        let lines = (0..<rng.below(4)).map { _ in rng.element(regionLines) ?? "" }
        write(lines.joined(separator: "\n"), to: groupDirectory + "/reserved_regions")
        link(directory + "/iommu_group", to: "../../../../kernel/iommu_groups/" + group)
        write("", to: dev + "/vfio/" + group)
        if tree.group == 0, let number = Int(group) { tree.group = number }
        parts.append("group=\(group) regions=\(lines)")
      }
      if rng.chance(60), let cdev = rng.element(cdevNames) {
        makeDirectories(directory + "/vfio-dev/" + cdev)
        parts.append("cdev=\(cdev)")
      }
      summary.append(parts.joined(separator: " "))
    }
    if rng.chance(60) { summary.append(addMediatedDevices(sys, &rng, &tree)) }
    var sysfsRoot = sys
    var deviceRoot = rng.chance(70) ? "/dev" : dev
    if hostileRoots {
      sysfsRoot = rng.element(["", "/nonexistent", "/proc/self", "/sys", sys + "/bus"]) ?? sys
      deviceRoot = rng.element(["", "/nonexistent", "/dev", dev]) ?? dev
    }
    tree.description = "sysfs \(sysfsRoot.debugDescription) dev \(deviceRoot.debugDescription) [\(summary.joined(separator: "; "))]"
    return (VFIODiscovery(sysfsRoot: FilePath(sysfsRoot), deviceRoot: FilePath(deviceRoot)), tree)
  }

  /// An mdev bus: one or two parents (often the same name twice through two links), types
  /// with hostile attributes, devices with hostile names and links; a summary.
  private func addMediatedDevices(_ sys: String, _ rng: inout SplitMix64, _ tree: inout Tree) -> String {
    var parts: [String] = []
    let typeNames = ["mtty-1", "mtty-2", "", "-", "x/y", "..", "\u{1F4A3}", String(repeating: "t", count: 300)]
    let counts = ["24\n", "0\n", "-1\n", "99999999999999999999\n", "", "x", "+3", " 7 ", "\u{663}"]
    let names = [
      "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001", "83B8F4F2-509F-382F-3C1E-E6BFE0FA1002", "not-a-uuid", "", "83b8f4f2509f382f3c1ee6bfe0fa1001",
      "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001x",
    ]
    makeDirectories(sys + "/class/mdev_bus")
    makeDirectories(sys + "/bus/mdev/devices")
    for parentIndex in 0..<(1 &+ rng.below(2)) {
      let parentDirectory = sys + "/devices/virtual/parent\(parentIndex)/parent\(parentIndex)"
      makeDirectories(parentDirectory + "/mdev_supported_types")
      let linkName = rng.chance(70) ? "parent\(parentIndex)" : rng.element(["mtty", "", "..", "a/b"]) ?? "mtty"
      link(sys + "/class/mdev_bus/" + linkName, to: "../../devices/virtual/parent\(parentIndex)/parent\(parentIndex)")
      for _ in 0..<rng.below(3) {
        let type = rng.element(typeNames) ?? "mtty-1"
        let directory = parentDirectory + "/mdev_supported_types/" + type
        makeDirectories(directory + "/devices")
        if rng.chance(80) { write(rng.element(counts) ?? "", to: directory + "/available_instances") }
        if rng.chance(80) { write(rng.element(["Dual port serial\n", "", "\u{0}\u{1}", "vfio-pci\n"]) ?? "", to: directory + "/name") }
        if rng.chance(50) { write("vfio-pci\n", to: directory + "/device_api") }
        write("", to: directory + "/create")
        tree.mediatedTypes.append(type)
        parts.append("type \(linkName)/\(type.prefix(20))")
      }
      for _ in 0..<rng.below(3) {
        let name = rng.element(names) ?? ""
        let device = parentDirectory + "/" + name
        makeDirectories(device + "/vfio-dev/" + (rng.element(["vfio3", "vfio", "vfiox"]) ?? "vfio3"))
        write("", to: device + "/remove")
        if rng.chance(70) { link(device + "/mdev_type", to: "../mdev_supported_types/" + (rng.element(typeNames) ?? "mtty-1")) }
        if rng.chance(70) { link(device + "/iommu_group", to: "../../../../kernel/iommu_groups/" + (rng.element(["5", "-1", "x"]) ?? "5")) }
        link(sys + "/bus/mdev/devices/" + name, to: "../../../devices/virtual/parent\(parentIndex)/parent\(parentIndex)/" + name)
        if let id = MediatedDeviceID(name) { tree.mediatedIDs.append(id) }
        parts.append("mdev \(name.prefix(40).debugDescription)")
      }
    }
    return parts.joined(separator: " ")
  }

  /// Writes `text` to the file `path`, replacing it.
  private func write(_ text: String, to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return }
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    _ = close(fd)
  }

  /// Makes directory `path` and the missing ones above it.
  private func makeDirectories(_ path: String) {
    var prefix = ""
    for component in path.split(separator: "/") {
      prefix += "/" + component
      _ = mkdir(prefix, 0o700)
    }
  }

  /// Makes `path` a symbolic link to `target`.
  private func link(_ path: String, to target: String) {
    _ = symlink(target, path)
  }
}

/// Where the fuzzer keeps its files: `/dev/shm` (memory: rebuilding trees there is cheap),
/// else `/tmp`.
let scratchDirectory = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
