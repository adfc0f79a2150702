import ArgumentParser
import Iommufd
import SystemPackage

/// Reports what this host offers for iommufd and VFIO, and why not.
@main
struct Probe: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "iommufd-probe",
    abstract: "Report what this host offers: /dev/iommu, VFIO devices and their cdevs, and why not.")

  @Option(help: "Where sysfs is mounted.")
  var sysfs: String = "/sys"

  @Option(help: "Where device nodes live.")
  var dev: String = "/dev"

  func run() throws {
    let iommuPath = FilePath(dev).appending("iommu")
    print("iommufd (\(iommuPath)):")
    do {
      let iommufd = try IOMMUFD.open(iommuPath)
      let ioas = try iommufd.allocateIOAS()
      let ranges = try ioas.iovaRanges()
      print("  present; a fresh IOAS (id \(ioas.id)) has ranges \(ranges.ranges) with alignment \(ranges.alignment)")
      try ioas.destroy()
      try iommufd.close()
    } catch {
      print("  not usable: \(error)")
      if error.errno == .noSuchFileOrDirectory {
        print("  (the running kernel has no CONFIG_IOMMUFD, or the iommufd module is not loaded)")
      }
    }

    let discovery = VFIODiscovery(sysfsRoot: FilePath(sysfs), deviceRoot: FilePath(dev))
    print("PCI devices (\(FilePath(sysfs).appending("bus/pci/devices"))):")
    let devices: [PCIDeviceEntry]
    do {
      devices = try discovery.devices()
    } catch {
      print("  none listed: \(error)")
      return
    }
    if devices.isEmpty { print("  none") }
    for device in devices {
      let ids = [device.vendorID, device.deviceID].map { $0.map { hex($0, 4) } ?? "????" }.joined(separator: ":")
      let group = device.iommuGroup.map { "group \($0)" } ?? "no IOMMU group"
      let driver = device.driver ?? "no driver"
      let vfio: String
      if let cdev = device.cdevPath {
        vfio = "cdev \(cdev)"
      } else {
        do {
          _ = try discovery.cdevPath(for: device.address)
          vfio = "cdev"
        } catch {
          vfio = error.detail ?? "\(error)"
        }
      }
      print("  \(device.address) [\(ids)] \(driver), \(group): \(vfio)")
    }
  }

  private func hex(_ value: UInt16, _ width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }
}
