import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Hands a PCI device to vfio-pci and back through sysfs (`driver_override`,
/// `drivers_probe`), as root does on a host. Never touches a device other than the one named.
public struct PCIDriverBinding: Sendable {
  /// Where sysfs is.
  public var discovery: VFIODiscovery

  /// Works on the sysfs of `discovery`.
  public init(discovery: VFIODiscovery = VFIODiscovery()) {
    self.discovery = discovery
  }

  /// Binds `address` to vfio-pci; returns the driver it had (nil: none). Refuses, saying
  /// which, when another device of its IOMMU group is bound to a host driver: the group
  /// could not be made viable.
  @discardableResult
  public func bindToVFIO(_ address: PCIAddress) throws(IommufdError) -> String? {
    let entry = try discovery.device(at: address)
    if entry.driver == "vfio-pci" { return "vfio-pci" }
    guard let group = entry.iommuGroup else {
      throw failure(address, .operationNotSupportedByDevice, "it is in no IOMMU group: no IOMMU translates for it")
    }
    let others = try discovery.group(group).devices.filter { $0 != address }
    var blocking: [String] = []
    for member in others {
      guard let driver = try discovery.device(at: member).driver, !driver.hasPrefix("vfio"), driver != "pcieport" else { continue }
      blocking.append("\(member) (\(driver))")
    }
    guard blocking.isEmpty else {
      throw failure(address, .resourceBusy, "IOMMU group \(group) also holds \(blocking.joined(separator: ", ")), bound to host drivers: unbind them first")
    }
    let directory = discovery.sysfsRoot.appending("bus/pci/devices/\(address)")
    try write("vfio-pci", to: directory.appending("driver_override"), address)
    if entry.driver != nil { try write(address.description, to: directory.appending("driver/unbind"), address) }
    try write(address.description, to: discovery.sysfsRoot.appending("bus/pci/drivers_probe"), address)
    let now = try discovery.device(at: address).driver
    guard now == "vfio-pci" else {
      throw failure(address, .operationNotSupportedByDevice,
        "still bound to \(now ?? "no driver") after drivers_probe: is the vfio-pci module loaded?")
    }
    return entry.driver
  }

  /// Takes `address` from vfio-pci and lets the kernel probe its host driver again.
  public func unbindFromVFIO(_ address: PCIAddress) throws(IommufdError) {
    let entry = try discovery.device(at: address)
    let directory = discovery.sysfsRoot.appending("bus/pci/devices/\(address)")
    try write("\n", to: directory.appending("driver_override"), address)
    if entry.driver != nil { try write(address.description, to: directory.appending("driver/unbind"), address) }
    try write(address.description, to: discovery.sysfsRoot.appending("bus/pci/drivers_probe"), address)
  }

  private func write(_ text: String, to path: FilePath, _ address: PCIAddress) throws(IommufdError) {
    let fd = Glibc.open(path.string, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw IommufdError(.driverBinding, Errno(rawValue: Glibc.errno), objects: [.path(path.string)], detail: "cannot open for \(address)") }
    defer { Glibc.close(fd) }
    let bytes = Array(text.utf8)
    guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
      throw IommufdError(.driverBinding, Errno(rawValue: Glibc.errno), objects: [.path(path.string)], detail: "cannot write \(text.debugDescription) for \(address)")
    }
  }

  private func failure(_ address: PCIAddress, _ errno: Errno, _ detail: String) -> IommufdError {
    IommufdError(.driverBinding, errno, objects: [.init("device", address.description)], detail: "\(address): \(detail)")
  }
}
