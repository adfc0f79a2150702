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
  ///
  /// When a step fails after `driver_override` was written, it is restored to its previous
  /// value and a device left without a driver is probed again; the error's detail says how
  /// that went.
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
    try withOverride("vfio-pci", address, driver: entry.driver) { () throws(IommufdError) in
      try unbindAndProbe(address, driver: entry.driver)
      let now = try discovery.device(at: address).driver
      guard now == "vfio-pci" else {
        throw failure(address, .operationNotSupportedByDevice,
          "still bound to \(now ?? "no driver") after drivers_probe: is the vfio-pci module loaded?")
      }
    }
    return entry.driver
  }

  /// Takes `address` from vfio-pci and lets the kernel probe its host driver again; returns
  /// the driver it has then (nil: none).
  ///
  /// Refuses with `EINVAL`, naming the driver, unless the device is bound to vfio-pci: it
  /// never unbinds a host driver. When a step fails after `driver_override` was cleared, it
  /// is restored.
  @discardableResult
  public func unbindFromVFIO(_ address: PCIAddress) throws(IommufdError) -> String? {
    let entry = try discovery.device(at: address)
    guard entry.driver == "vfio-pci" else {
      throw failure(address, .invalidArgument, "bound to \(entry.driver ?? "no driver"), not to vfio-pci: refusing to unbind it")
    }
    return try withOverride("\n", address, driver: entry.driver) { () throws(IommufdError) in
      try unbindAndProbe(address, driver: entry.driver)
      let now = try discovery.device(at: address).driver
      guard now != "vfio-pci" else {
        throw failure(address, .resourceBusy, "still bound to vfio-pci after unbind and drivers_probe: does vfio-pci claim it by id (ids=, new_id)?")
      }
      return now
    }
  }

  private func directory(_ address: PCIAddress) -> FilePath {
    discovery.sysfsRoot.appending("bus/pci/devices").appending(address.description)
  }

  private func unbindAndProbe(_ address: PCIAddress, driver: String?) throws(IommufdError) {
    if driver != nil { try write(address.description, to: directory(address).appending("driver/unbind"), address) }
    try write(address.description, to: discovery.sysfsRoot.appending("bus/pci/drivers_probe"), address)
  }

  /// Writes `value` to the device's `driver_override` and runs `body`; if `body` fails,
  /// restores the previous override and, if the device was bound to `driver` and now has
  /// none, probes it again.
  private func withOverride<T>(
    _ value: String, _ address: PCIAddress, driver: String?, _ body: () throws(IommufdError) -> T
  ) throws(IommufdError) -> T {
    let path = directory(address).appending("driver_override")
    let previous = try readOverride(path, address)
    try write(value, to: path, address)
    do throws(IommufdError) {
      return try body()
    } catch {
      throw rolledBack(error, address, path, previous: previous, driver: driver)
    }
  }

  private func rolledBack(_ error: IommufdError, _ address: PCIAddress, _ path: FilePath, previous: String?, driver: String?) -> IommufdError {
    var notes: [String] = []
    let shown = previous ?? "(null)"
    do throws(IommufdError) {
      try write(previous ?? "\n", to: path, address)
      notes.append("driver_override restored to \(shown)")
      if let driver, (try? discovery.device(at: address))?.driver == nil {
        try write(address.description, to: discovery.sysfsRoot.appending("bus/pci/drivers_probe"), address)
        let now = (try? discovery.device(at: address))?.driver
        notes.append(now == driver ? "probed again: back on \(driver)" : "probed again for \(driver): now \(now.map { "on \($0)" } ?? "on no driver")")
      }
    } catch {
      notes.append("rolling back failed: \(error.errno) writing \(error.objects.first?.value ?? path.string)")
    }
    var result = error
    result.detail = (error.detail ?? "\(error.errno)") + "; " + notes.joined(separator: "; ")
    return result
  }

  /// The current override, nil when there is none (sysfs shows `(null)`).
  private func readOverride(_ path: FilePath, _ address: PCIAddress) throws(IommufdError) -> String? {
    let bytes: [UInt8]
    do throws(Errno) {
      bytes = try discovery.backend.calls.readFile(path, maximumBytes: 4096)
    } catch {
      throw IommufdError(.driverBinding, error, objects: [.path(path.string)],
        detail: "cannot read the driver_override of \(address): nothing was changed")
    }
    let text = String(String(decoding: bytes, as: UTF8.self).trimmingWhitespace)
    return text.isEmpty || text == "(null)" ? nil : text
  }

  /// Replaces the attribute at `path` with `text`, as `echo text > path` does, through the
  /// backend's seam (a simulated kernel refuses its machine's sysfs: nothing is written).
  private func write(_ text: String, to path: FilePath, _ address: PCIAddress) throws(IommufdError) {
    do throws(Errno) {
      try discovery.files.write(text, to: path)
    } catch {
      throw IommufdError(.driverBinding, error, objects: [.path(path.string)], detail: "cannot write \(text.debugDescription) for \(address)")
    }
  }

  private func failure(_ address: PCIAddress, _ errno: Errno, _ detail: String) -> IommufdError {
    IommufdError(.driverBinding, errno, objects: [.init("device", address.description)], detail: "\(address): \(detail)")
  }
}
