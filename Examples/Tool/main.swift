import ArgumentParser
import Foundation
import Iommufd
import SystemPackage

/// `iommufd-tool`: what this host offers for iommufd and VFIO, and why not.
@main
struct Tool: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "iommufd-tool",
    abstract: "Inspect iommufd and VFIO on this host: devices, backends, IOVA ranges, IOMMU info; bind devices to vfio-pci.",
    subcommands: [Devices.self, Probe.self, Ranges.self, HardwareInfo.self, Bind.self, Unbind.self])
}

struct Common: ParsableArguments {
  @Flag(help: "Print JSON instead of text.")
  var json = false

  @Flag(help: "Use the simulated kernel (one edu device at 0000:00:02.0) instead of this host.")
  var simulated = false

  @Option(help: "Where sysfs is mounted.")
  var sysfs = "/sys"

  @Option(help: "Where device nodes live.")
  var dev = "/dev"

  var discovery: VFIODiscovery { VFIODiscovery(sysfsRoot: FilePath(sysfs), deviceRoot: FilePath(dev)) }

  static let simulatedAddress = PCIAddress("0000:00:02.0")!

  func emit<T: Encodable>(_ value: T, text: () -> String) throws {
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(value), as: UTF8.self))
    } else {
      print(text())
    }
  }
}

func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }

struct DeviceReport: Encodable {
  var address: String
  var vendor: String?
  var device: String?
  var classCode: String?
  var driver: String?
  var iommuGroup: Int?
  var cdev: String?
  var backend: String
  var reasons: [String]
}

func route(_ access: VFIOAccess) -> String {
  switch access.route {
  case .cdev: "iommufd"
  case .group: "legacy"
  case .none: "none"
  }
}

struct Devices: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "List PCI devices with IOMMU group, driver, VFIO node and the usable backend.")
  @OptionGroup var common: Common

  func run() throws {
    var reports: [DeviceReport] = []
    if common.simulated {
      reports = [DeviceReport(
        address: Common.simulatedAddress.description, vendor: "1234", device: "11e8", classCode: "00ff00", driver: "vfio-pci",
        iommuGroup: 0, cdev: SimulatedKernel.devicePath(0).string, backend: "iommufd", reasons: ["simulated edu device"])]
    } else {
      for entry in try common.discovery.devices() {
        let access = common.discovery.access(for: entry.address)
        reports.append(DeviceReport(
          address: entry.address.description, vendor: entry.vendorID.map { String($0, radix: 16) },
          device: entry.deviceID.map { String($0, radix: 16) }, classCode: entry.classCode.map { String($0, radix: 16) },
          driver: entry.driver, iommuGroup: entry.iommuGroup, cdev: entry.cdevPath?.string, backend: route(access),
          reasons: access.reasons))
      }
    }
    try common.emit(reports) {
      reports.map { report in
        let ids = "\(report.vendor ?? "????"):\(report.device ?? "????")"
        let group = report.iommuGroup.map { "group \($0)" } ?? "no group"
        return "\(report.address) [\(ids)] \(report.driver ?? "no driver"), \(group), backend: \(report.backend)\n    "
          + report.reasons.joined(separator: "; ")
      }.joined(separator: "\n")
    }
  }
}

struct ProbeReport: Encodable {
  var iommufd: String
  var freshIOASRanges: [String]?
  var features: [String: Bool]
  var vfioCdevs: [String]
  var legacyContainer: String
  var modules: [String: Bool]
}

struct Probe: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Report what this host offers: iommufd and its features by probe, VFIO cdevs, the legacy container, and why not.")
  @OptionGroup var common: Common

  func run() throws {
    let backend: Backend = common.simulated ? .simulated(SimulatedKernel(devices: [SimulatedEduDevice()])) : .kernel
    var report = ProbeReport(iommufd: "", freshIOASRanges: nil, features: [:], vfioCdevs: [], legacyContainer: "", modules: [:])
    do {
      let iommufd = try IOMMUFD.open(FilePath(common.dev).appending("iommu"), backend: backend)
      report.iommufd = "present"
      report.freshIOASRanges = try iommufd.allocateIOAS().iovaRanges().ranges.map(\.description)
      for feature in IOMMUFeature.allCases { report.features[feature.description] = try iommufd.supports(feature) }
    } catch {
      report.iommufd = "not usable: \(error)"
    }
    if common.simulated {
      report.vfioCdevs = [SimulatedKernel.devicePath(0).string]
      report.legacyContainer = "not simulated"
    } else {
      let cdevs = FilePath(common.dev).appending("vfio/devices")
      report.vfioCdevs = ((try? FileManager.default.contentsOfDirectory(atPath: cdevs.string)) ?? []).sorted().map { cdevs.appending($0).string }
      do {
        let container = try VFIOContainer.open(FilePath(common.dev).appending("vfio/vfio"))
        report.legacyContainer = "API version 0; type1v2 \(try container.supports(extension: 3) ? "supported" : "not supported")"
      } catch {
        report.legacyContainer = "not usable: \(error)"
      }
      for module in ["iommufd", "vfio", "vfio_pci", "vfio_iommu_type1"] {
        report.modules[module] = FileManager.default.fileExists(atPath: FilePath(common.sysfs).appending("module/\(module)").string)
      }
    }
    try common.emit(report) {
      var lines = ["iommufd: \(report.iommufd)"]
      if let ranges = report.freshIOASRanges { lines.append("  a fresh IOAS: \(ranges.joined(separator: ", "))") }
      for (name, has) in report.features.sorted(by: { $0.key < $1.key }) { lines.append("  \(name): \(has ? "yes" : "no (ENOTTY)")") }
      lines.append("VFIO cdevs: \(report.vfioCdevs.isEmpty ? "none" : report.vfioCdevs.joined(separator: ", "))")
      lines.append("legacy container: \(report.legacyContainer)")
      if !report.modules.isEmpty {
        lines.append("modules: " + report.modules.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value ? "loaded" : "absent")" }.joined(separator: ", "))
      }
      return lines.joined(separator: "\n")
    }
  }
}

/// Opens the device at `address` on the route the host offers (or the simulated machine).
func openSession(_ common: Common, _ address: String, prefer: VFIOSession.RoutePreference?) throws -> VFIOSession {
  guard let address = PCIAddress(address) else { throw ValidationError("not a PCI address: \(address)") }
  if common.simulated {
    guard address == Common.simulatedAddress else { throw ValidationError("the simulated machine has one device, \(Common.simulatedAddress)") }
    return try VFIOSession.openCdev(SimulatedKernel.devicePath(0), backend: .simulated(SimulatedKernel(devices: [SimulatedEduDevice()])))
  }
  return try VFIOSession.open(address, discovery: common.discovery, prefer: prefer)
}

struct RouteOption: ParsableArguments {
  @Option(help: "Force a route: iommufd or legacy (default: iommufd when usable).")
  var route: String?

  func preference() throws -> VFIOSession.RoutePreference? {
    switch route {
    case nil: return nil
    case "iommufd": return .iommufd
    case "legacy": return .legacy
    case let other?: throw ValidationError("unknown route \(other): use iommufd or legacy")
    }
  }
}

struct Ranges: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "The IOVA ranges a device can use once attached (its IOMMU's aperture minus reserved regions).")
  @OptionGroup var common: Common
  @OptionGroup var route: RouteOption
  @Argument(help: "PCI address, e.g. 0000:00:02.0") var address: String

  func run() throws {
    let ranges = try openSession(common, address, prefer: route.preference()).iovaRanges()
    struct Report: Encodable { var ranges: [[String]]; var alignment: String }
    try common.emit(Report(ranges: ranges.ranges.map { [hex($0.start), hex($0.last)] }, alignment: hex(ranges.alignment))) {
      ranges.ranges.map(\.description).joined(separator: "\n") + "\nalignment \(hex(ranges.alignment))"
    }
  }
}

struct HardwareInfo: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "hw-info", abstract: "The IOMMU behind a device (IOMMU_GET_HW_INFO; needs the iommufd route).")
  @OptionGroup var common: Common
  @Argument(help: "PCI address, e.g. 0000:00:02.0") var address: String

  func run() throws {
    let session = try openSession(common, address, prefer: .iommufd)
    guard let iommufd = session.iommufd, let id = session.deviceID else {
      throw ValidationError("IOMMU_GET_HW_INFO needs iommufd; this device is reached through the legacy group")
    }
    let info = try iommufd.hardwareInfo(device: id)
    struct Report: Encodable { var type: String; var data: String; var capabilities: String; var maxPASIDLog2: Int; var vtdCap: String?; var vtdEcap: String? }
    let registers = info.vtdRegisters
    let report = Report(
      type: info.kind.description, data: info.data.map { String(format: "%02x", $0) }.joined(), capabilities: hex(info.capabilities.rawValue),
      maxPASIDLog2: Int(info.maxPASIDLog2), vtdCap: registers.map { hex($0.capability) }, vtdEcap: registers.map { hex($0.extendedCapability) })
    try common.emit(report) {
      var lines = ["type: \(report.type)", "capabilities: \(report.capabilities)", "max PASID log2: \(report.maxPASIDLog2)", "data: \(report.data)"]
      if let cap = report.vtdCap, let ecap = report.vtdEcap { lines.append("VT-d cap \(cap) ecap \(ecap)") }
      return lines.joined(separator: "\n")
    }
  }
}

struct Bind: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Bind a device to vfio-pci (root); refuses while its IOMMU group has devices on host drivers.")
  @OptionGroup var common: Common
  @Argument(help: "PCI address, e.g. 0000:00:02.0") var address: String

  func run() throws {
    guard let address = PCIAddress(address) else { throw ValidationError("not a PCI address: \(address)") }
    let previous = try PCIDriverBinding(discovery: common.discovery).bindToVFIO(address)
    print("\(address): bound to vfio-pci (was \(previous ?? "unbound"))")
  }
}

struct Unbind: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Take a device from vfio-pci and let its host driver probe it again (root).")
  @OptionGroup var common: Common
  @Argument(help: "PCI address, e.g. 0000:00:02.0") var address: String

  func run() throws {
    guard let address = PCIAddress(address) else { throw ValidationError("not a PCI address: \(address)") }
    try PCIDriverBinding(discovery: common.discovery).unbindFromVFIO(address)
    let now = try common.discovery.device(at: address).driver
    print("\(address): unbound from vfio-pci (now \(now ?? "no driver"))")
  }
}
