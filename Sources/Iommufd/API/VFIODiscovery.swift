import Foundation
import SystemPackage

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

  /// Creates the value.
  public init(
    address: PCIAddress, vendorID: UInt16? = nil, deviceID: UInt16? = nil, classCode: UInt32? = nil,
    driver: String? = nil, iommuGroup: Int? = nil, cdevPath: FilePath? = nil
  ) {
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
/// The roots are parameters so the same code runs against a generated tree in tests.
public struct VFIODiscovery: Sendable {
  /// Where sysfs is mounted (normally `/sys`).
  public var sysfsRoot: FilePath
  /// Where device nodes live (normally `/dev`).
  public var deviceRoot: FilePath

  /// Creates a discovery over `sysfsRoot` and `deviceRoot`.
  public init(sysfsRoot: FilePath = "/sys", deviceRoot: FilePath = "/dev") {
    self.sysfsRoot = sysfsRoot
    self.deviceRoot = deviceRoot
  }

  /// Every PCI device, by address.
  public func devices() throws(IommufdError) -> [PCIDeviceEntry] {
    let directory = sysfsRoot.appending("bus/pci/devices")
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: directory.string)
    } catch {
      throw IommufdError(.discovery, .noSuchFileOrDirectory, objects: [.path(directory.string)], detail: "cannot list PCI devices")
    }
    return names.compactMap(PCIAddress.init).sorted().map(entry(for:))
  }

  /// The sysfs description of the device at `address`.
  public func device(at address: PCIAddress) throws(IommufdError) -> PCIDeviceEntry {
    let directory = deviceDirectory(address)
    guard FileManager.default.fileExists(atPath: directory.string) else {
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

  private func deviceDirectory(_ address: PCIAddress) -> FilePath {
    sysfsRoot.appending("bus/pci/devices").appending(address.description)
  }

  private func entry(for address: PCIAddress) -> PCIDeviceEntry {
    let directory = deviceDirectory(address)
    let cdev = (try? FileManager.default.contentsOfDirectory(atPath: directory.appending("vfio-dev").string))?
      .filter { $0.hasPrefix("vfio") }.sorted().first
    return PCIDeviceEntry(
      address: address,
      vendorID: hexAttribute(directory.appending("vendor")).flatMap { UInt16(exactly: $0) },
      deviceID: hexAttribute(directory.appending("device")).flatMap { UInt16(exactly: $0) },
      classCode: hexAttribute(directory.appending("class")).flatMap { UInt32(exactly: $0) },
      driver: linkName(directory.appending("driver")),
      iommuGroup: linkName(directory.appending("iommu_group")).flatMap { Int($0) },
      cdevPath: cdev.map { deviceRoot.appending("vfio/devices").appending($0) })
  }

  private func hexAttribute(_ path: FilePath) -> UInt64? {
    guard let text = try? String(contentsOfFile: path.string, encoding: .utf8) else { return nil }
    var value = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if value.hasPrefix("0x") { value.removeFirst(2) }
    return UInt64(value, radix: 16)
  }

  private func linkName(_ path: FilePath) -> String? {
    guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path.string) else { return nil }
    return FilePath(target).lastComponent?.string
  }
}
