import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An IOMMU group: the devices the IOMMU cannot tell apart, and the IOVA ranges it reserves.
public struct IOMMUGroupInfo: Hashable, Sendable {
  /// A reserved region (`/sys/kernel/iommu_groups/N/reserved_regions`).
  public struct ReservedRegion: Hashable, Sendable {
    /// The IOVAs.
    public var range: IOVARange
    /// `msi`, `direct`, `direct-relaxable`, `reserved`.
    public var type: String
    /// Creates the value.
    public init(range: IOVARange, type: String) {
      self.range = range
      self.type = type
    }
  }

  /// The group number.
  public var number: Int
  /// Its devices.
  public var devices: [PCIAddress]
  /// Its reserved regions.
  public var reservedRegions: [ReservedRegion]
  /// The legacy group node, `/dev/vfio/N`.
  public var node: FilePath
}

/// How a device can be reached, and what was found on the way.
public struct VFIOAccess: Hashable, Sendable, CustomStringConvertible {
  /// The way in.
  public enum Route: Hashable, Sendable {
    /// The device cdev with iommufd.
    case cdev(FilePath)
    /// The legacy group node (with `/dev/vfio/vfio`).
    case group(FilePath, number: Int)
    /// Neither: see the reasons.
    case none
  }

  /// The device.
  public var device: VFIODeviceName
  /// The device's PCI address, if it is a PCI function (not a mediated device).
  public var address: PCIAddress? {
    if case .pci(let address) = device { return address }
    return nil
  }
  /// The chosen route: the cdev when usable, else the legacy group.
  public var route: Route
  /// Every finding, in the order checked.
  public var reasons: [String]
  /// The nodes that exist but this process may not open read-write (`access(2)` said
  /// `EACCES` or `EPERM`), in the order checked.
  public var permissionDenied: [FilePath] = []

  /// `address: route (reasons)`.
  public var description: String {
    let name: String
    switch route {
    case .cdev(let path): name = "cdev \(path)"
    case .group(let path, _): name = "legacy group \(path)"
    case .none: name = "not usable"
    }
    return "\(device): \(name) (" + reasons.joined(separator: "; ") + ")"
  }

  /// The value for the PCI function at `address`.
  init(address: PCIAddress, route: Route, reasons: [String], permissionDenied: [FilePath] = []) {
    self.init(device: .pci(address), route: route, reasons: reasons, permissionDenied: permissionDenied)
  }

  /// Creates the value.
  public init(device: VFIODeviceName, route: Route, reasons: [String], permissionDenied: [FilePath] = []) {
    self.device = device
    self.route = route
    self.reasons = reasons
    self.permissionDenied = permissionDenied
  }
}

/// A VFIO device's name in sysfs: a PCI function's address, or a mediated device's UUID.
public enum VFIODeviceName: Hashable, Sendable, CustomStringConvertible {
  /// A PCI function.
  case pci(PCIAddress)
  /// A mediated device.
  case mediated(MediatedDeviceID)

  /// The address, or `mdev` and the UUID.
  public var description: String {
    switch self {
    case .pci(let address): address.description
    case .mediated(let id): "mdev \(id)"
    }
  }
}

/// A PCI device as sysfs describes it, with what VFIO needs to know.
public struct PCIDeviceEntry: Hashable, Sendable {
  /// The device's address.
  public var address: PCIAddress
  /// The vendor id (`vendor`).
  public var vendorID: UInt16?
  /// The device id (`device`).
  public var deviceID: UInt16?
  /// The 24-bit class code (`class`).
  public var classCode: UInt32?
  /// The bound driver's name, if any (`driver` link).
  public var driver: String?
  /// The IOMMU group number, if the device has one (`iommu_group` link).
  public var iommuGroup: Int?
  /// The VFIO device cdev, if the device is bound to a VFIO driver on a kernel with
  /// `CONFIG_VFIO_DEVICE_CDEV` (`vfio-dev/vfioN`).
  public var cdevPath: FilePath?
  /// The function reset methods the kernel has for the device, in the order it tries them
  /// (`reset_method`: `flr`, `af_flr`, `pm`, `bus`, `cxl_bus`, `device_specific`, `acpi`);
  /// empty when it has none (the attribute is hidden then), and ``VFIODevice/reset()``
  /// fails with `EINVAL`. The first that works is the one a reset uses.
  public var resetMethods: [String] = []

  /// Creates the value.
  public init(
    address: PCIAddress, vendorID: UInt16? = nil, deviceID: UInt16? = nil, classCode: UInt32? = nil,
    driver: String? = nil, iommuGroup: Int? = nil, cdevPath: FilePath? = nil, resetMethods: [String] = []
  ) {
    self.resetMethods = resetMethods
    self.address = address
    self.vendorID = vendorID
    self.deviceID = deviceID
    self.classCode = classCode
    self.driver = driver
    self.iommuGroup = iommuGroup
    self.cdevPath = cdevPath
  }
}

/// Finds PCI devices and their VFIO cdevs through sysfs.
///
/// It reads through the backend's seam: the host's sysfs on the kernel, the simulated
/// machine's on a simulated kernel (its devices at their PCI addresses, bound to vfio-pci,
/// each in its own IOMMU group). The roots are parameters so the same code also runs
/// against a generated tree.
public struct VFIODiscovery: Sendable {
  /// Where sysfs is mounted (normally `/sys`).
  public var sysfsRoot: FilePath
  /// Where device nodes live (normally `/dev`).
  public var deviceRoot: FilePath
  /// The backend whose files are read.
  public var backend: Backend

  var files: SysfsFiles { SysfsFiles(backend: backend) }

  /// Creates a discovery over `sysfsRoot` and `deviceRoot` of `backend`'s machine.
  public init(sysfsRoot: FilePath = "/sys", deviceRoot: FilePath = "/dev", backend: Backend = .kernel) {
    self.sysfsRoot = sysfsRoot
    self.deviceRoot = deviceRoot
    self.backend = backend
  }

  /// Every PCI device, by address.
  public func devices() throws(IommufdError) -> [PCIDeviceEntry] {
    let directory = sysfsRoot.appending("bus/pci/devices")
    guard let names = files.entries(of: directory) else {
      throw IommufdError(.discovery, .noSuchFileOrDirectory, objects: [.path(directory.string)], detail: "cannot list PCI devices")
    }
    return names.compactMap(PCIAddress.init).sorted().map(entry(for:))
  }

  /// The sysfs description of the device at `address`.
  public func device(at address: PCIAddress) throws(IommufdError) -> PCIDeviceEntry {
    let directory = deviceDirectory(address)
    guard files.exists(directory) else {
      throw IommufdError(.discovery, .noSuchFileOrDirectory, objects: [.path(directory.string)], detail: "no PCI device \(address)")
    }
    return entry(for: address)
  }

  /// The cdev node of the device at `address`, with the reason when there is none.
  public func cdevPath(for address: PCIAddress) throws(IommufdError) -> FilePath {
    let entry = try device(at: address)
    if let path = entry.cdevPath { return path }
    let reason: String
    switch entry.driver {
    case _ where entry.iommuGroup == nil && entry.driver != "vfio-pci":
      reason = "it is in no IOMMU group: no IOMMU translates for it (enable VT-d/AMD-Vi, e.g. intel_iommu=on)"
    case nil: reason = "it is bound to no driver; bind it to vfio-pci"
    case "vfio-pci"?: reason = "it is bound to vfio-pci but has no vfio-dev node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV"
    case let driver?: reason = "it is bound to \(driver), not to a VFIO driver"
    }
    throw IommufdError(.discovery, .operationNotSupportedByDevice, objects: [.path(deviceDirectory(address).string)], detail: "\(address) has no VFIO cdev: \(reason)")
  }

  /// IOMMU group `number`: its devices and reserved regions
  /// (`/sys/kernel/iommu_groups/N`).
  public func group(_ number: Int) throws(IommufdError) -> IOMMUGroupInfo {
    let directory = sysfsRoot.appending("kernel/iommu_groups/\(number)")
    guard let names = files.entries(of: directory.appending("devices")) else {
      throw IommufdError(.discovery, .noSuchFileOrDirectory, objects: [.path(directory.string)], detail: "no IOMMU group \(number)")
    }
    let text = files.text(of: directory.appending("reserved_regions")) ?? ""
    let regions = text.split(separator: "\n").compactMap { line -> IOMMUGroupInfo.ReservedRegion? in
      let fields = line.split(separator: " ")
      guard fields.count >= 3, let start = Self.hexNumber(fields[0]), let last = Self.hexNumber(fields[1]), start <= last
      else { return nil }
      return .init(range: IOVARange(start: start, last: last), type: String(fields[2]))
    }
    return IOMMUGroupInfo(
      number: number, devices: names.compactMap(PCIAddress.init).sorted(), reservedRegions: regions,
      node: deviceRoot.appending("vfio/\(number)"))
  }

  /// How the device at `address` can be reached, with every finding on the way: its VFIO
  /// cdev with iommufd, else its legacy group with a container, else nothing, and why.
  public func access(for address: PCIAddress) -> VFIOAccess {
    var reasons: [String] = []
    var denied: [FilePath] = []
    let entry: PCIDeviceEntry
    do {
      entry = try device(at: address)
    } catch {
      return VFIOAccess(address: address, route: .none, reasons: [error.detail ?? "\(error)"])
    }
    func usable(_ path: FilePath) -> Bool { self.usable(path, &reasons, &denied) }
    guard let group = entry.iommuGroup else {
      reasons.append("\(address) is in no IOMMU group: no IOMMU translates for it (enable VT-d/AMD-Vi, e.g. intel_iommu=on)")
      if files.exists(deviceRoot.appending("vfio/noiommu-0")) {
        reasons.append("VFIO runs in no-IOMMU mode: DMA is not isolated, and this library refuses it")
      }
      return VFIOAccess(address: address, route: .none, reasons: reasons)
    }
    reasons.append("IOMMU group \(group)")
    guard let driver = entry.driver, driver.hasPrefix("vfio") else {
      if !files.exists(sysfsRoot.appending("module/vfio_pci")) {
        reasons.append("the vfio_pci module is not loaded (modprobe vfio-pci)")
      }
      reasons.append(entry.driver.map { "bound to \($0), not to a VFIO driver: bind it with `iommufd-tool bind \(address)`" } ?? "bound to no driver: bind it with `iommufd-tool bind \(address)`")
      return VFIOAccess(address: address, route: .none, reasons: reasons)
    }
    reasons.append("bound to \(driver)")
    if let cdev = entry.cdevPath {
      if usable(deviceRoot.appending("iommu")) && usable(cdev) {
        reasons.append("iommufd and the VFIO cdev \(cdev) are usable")
        return VFIOAccess(address: address, route: .cdev(cdev), reasons: reasons, permissionDenied: denied)
      }
    } else {
      reasons.append("no vfio-dev node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV or CONFIG_IOMMUFD")
    }
    let node = deviceRoot.appending("vfio/\(group)")
    if usable(node) && usable(deviceRoot.appending("vfio/vfio")) {
      reasons.append("the legacy group \(node) and container are usable")
      return VFIOAccess(address: address, route: .group(node, number: group), reasons: reasons, permissionDenied: denied)
    }
    return VFIOAccess(address: address, route: .none, reasons: reasons, permissionDenied: denied)
  }

  /// Whether this process may open the node at `path` read-write; if not, why, in
  /// `reasons`, and the node in `denied` when permission is what is missing.
  func usable(_ path: FilePath, _ reasons: inout [String], _ denied: inout [FilePath]) -> Bool {
    if !files.exists(path) {
      reasons.append("\(path) does not exist")
      return false
    }
    if let error = files.accessError(path, mode: R_OK | W_OK) {
      reasons.append("no read-write permission on \(path)")
      if error == .permissionDenied || error == .notPermitted { denied.append(path) }
      return false
    }
    return true
  }

  private func deviceDirectory(_ address: PCIAddress) -> FilePath {
    sysfsRoot.appending("bus/pci/devices").appending(address.description)
  }

  private func entry(for address: PCIAddress) -> PCIDeviceEntry {
    let directory = deviceDirectory(address)
    let cdev = files.entries(of: directory.appending("vfio-dev"))?
      .filter { $0.hasPrefix("vfio") }.sorted().first
    return PCIDeviceEntry(
      address: address,
      vendorID: hexAttribute(directory.appending("vendor")).flatMap { UInt16(exactly: $0) },
      deviceID: hexAttribute(directory.appending("device")).flatMap { UInt16(exactly: $0) },
      classCode: hexAttribute(directory.appending("class")).flatMap { UInt32(exactly: $0) },
      driver: linkName(directory.appending("driver")),
      iommuGroup: linkName(directory.appending("iommu_group")).flatMap { Int(digitsOnly: $0) },
      cdevPath: cdev.map { deviceRoot.appending("vfio/devices").appending($0) },
      resetMethods: files.text(of: directory.appending("reset_method"))?.split(whereSeparator: \.isWhitespace).map(String.init) ?? [])
  }

  private func hexAttribute(_ path: FilePath) -> UInt64? {
    guard let text = files.text(of: path) else { return nil }
    let value = text.trimmingWhitespace
    return UInt64(digitsOnly: value.hasPrefix("0x") ? value.dropFirst(2) : value[...], radix: 16)
  }

  /// A hexadecimal number as `reserved_regions` prints it: `0x` and digits only (no sign).
  private static func hexNumber(_ text: Substring) -> UInt64? {
    guard text.hasPrefix("0x") else { return nil }
    return UInt64(digitsOnly: text.dropFirst(2), radix: 16)
  }

  func linkName(_ path: FilePath) -> String? {
    guard let target = files.linkTarget(path) else { return nil }
    return FilePath(target).lastComponent?.string
  }
}
