import ArgumentParser
import Iommufd
import SystemPackage

/// What bind and unbind did: the device, its driver before and after.
func bindingReport(_ address: PCIAddress, previous: String?, now: String?) -> [(String, JSON)] {
  [("device", .string(address.description)), ("previousDriver", .optional(previous, JSON.string)), ("driver", .optional(now, JSON.string))]
}

/// `bind`: hand a device to vfio-pci.
struct Bind: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Bind a device to vfio-pci (root); refuses while its IOMMU group has devices on host drivers.",
    discussion: "Acts on the sysfs --sysfs names; there is no --simulated. On failure driver_override is restored.")
  @OptionGroup var output: OutputOptions
  @OptionGroup var sysfs: SysfsOption
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func run() throws {
    let discovery = VFIODiscovery(sysfsRoot: FilePath(sysfs.sysfs))
    let previous = try reportingErrors { try PCIDriverBinding(discovery: discovery).bindToVFIO(address) }
    output.emit(bindingReport(address, previous: previous, now: "vfio-pci")) {
      "\(address): bound to vfio-pci (was \(previous ?? "unbound"))"
    }
  }
}

/// `unbind`: take a device from vfio-pci.
struct Unbind: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Take a device from vfio-pci and let its host driver probe it again (root); refuses unless it is on vfio-pci.",
    discussion: "Acts on the sysfs --sysfs names; there is no --simulated.")
  @OptionGroup var output: OutputOptions
  @OptionGroup var sysfs: SysfsOption
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func run() throws {
    let discovery = VFIODiscovery(sysfsRoot: FilePath(sysfs.sysfs))
    let driver = try reportingErrors { try discovery.device(at: address).driver }
    guard driver == "vfio-pci" else {
      throw ToolFailure(description: "\(address) is bound to \(driver ?? "no driver"), not to vfio-pci: refusing to unbind it (nothing was changed)")
    }
    let now = try reportingErrors { try PCIDriverBinding(discovery: discovery).unbindFromVFIO(address) }
    output.emit(bindingReport(address, previous: driver, now: now)) {
      "\(address): unbound from vfio-pci (now \(now ?? "no driver"))"
    }
  }
}
