import ArgumentParser
import Foundation
import Iommufd
import IommufdSimulator
import SystemPackage

/// `iommufd-tool`: what this host offers for iommufd and VFIO, and why not.
@main
struct Tool: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "iommufd-tool",
    abstract: "Inspect iommufd and VFIO on this host: devices, backends, IOVA ranges, IOMMU info; bind devices to vfio-pci.",
    discussion: """
      devices, probe, ranges and hw-info take --simulated to look at the simulated machine instead of this host. \
      bind and unbind only act on sysfs (the one --sysfs names, /sys by default) and have no --simulated. \
      Errors go to standard error, also with --json; the exit status is 0 on success, 1 when an operation \
      failed or was refused, 64 for a usage error.
      """,
    subcommands: [Devices.self, Probe.self, Ranges.self, HardwareInfo.self, Bind.self, Unbind.self])
}

/// `--json`, and printing a result either way.
struct OutputOptions: ParsableArguments {
  @Flag(help: "Print the result as JSON instead of text.")
  var json = false

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

/// `--sysfs`: the sysfs tree to read, and for bind and unbind to write.
struct SysfsOption: ParsableArguments {
  @Option(help: "Where sysfs is mounted (a copy or a generated tree for tests).")
  var sysfs = "/sys"

  func validate() throws {
    guard !sysfs.isEmpty else { throw ValidationError("--sysfs needs a directory") }
  }
}

/// What the inspecting subcommands look at: this host (its sysfs and device nodes) or the
/// simulated machine.
struct Common: ParsableArguments {
  @Flag(help: "Use the simulated kernel (one edu device at 0000:00:02.0) instead of this host.")
  var simulated = false

  @OptionGroup var sysfsOption: SysfsOption

  @Option(help: "Where device nodes live.")
  var dev = "/dev"

  var sysfs: String { sysfsOption.sysfs }
  var discovery: VFIODiscovery { VFIODiscovery(sysfsRoot: FilePath(sysfs), deviceRoot: FilePath(dev)) }

  static let simulatedAddress = PCIAddress(domain: 0, bus: 0, device: 2, function: 0)!

  /// Fails with a usage error for an address the simulated machine does not have, and
  /// for host options that a simulated machine would silently ignore.
  func validate(_ address: PCIAddress) throws {
    try validate()
    guard !simulated || address == Self.simulatedAddress else {
      throw ValidationError("the simulated machine has one device, \(Self.simulatedAddress)")
    }
  }

  /// Fails with a usage error for --sysfs or --dev with --simulated: they name a host's
  /// files, which the simulated machine does not read.
  func validate() throws {
    guard simulated else { return }
    if sysfs != "/sys" { throw ValidationError("--sysfs names a host's sysfs; the simulated machine has its own") }
    if dev != "/dev" { throw ValidationError("--dev names a host's device nodes; the simulated machine has its own") }
  }
}

/// Parses a PCI address argument, or fails with a usage error.
func pciAddress(_ text: String) throws -> PCIAddress {
  guard let address = PCIAddress(text) else {
    throw ValidationError("not a PCI address: \(text.debugDescription) (expected DDDD:BB:DD.F or BB:DD.F, hexadecimal)")
  }
  return address
}

/// A failure the tool itself reports: printed as `Error: <message>`, exit status 1.
struct ToolFailure: Error, CustomStringConvertible {
  /// What went wrong.
  var description: String
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
  @OptionGroup var output: OutputOptions
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
    try output.emit(reports) {
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
  @OptionGroup var output: OutputOptions
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
      if error.errno == .permissionDenied || error.errno == .notPermitted {
        report.iommufd += " (run as root or grant this user read-write access to \(FilePath(common.dev).appending("iommu")))"
      }
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
    try output.emit(report) {
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
func openSession(_ common: Common, _ address: PCIAddress, prefer: VFIOSession.RoutePreference?) throws -> VFIOSession {
  if common.simulated {
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
  @OptionGroup var output: OutputOptions
  @OptionGroup var common: Common
  @OptionGroup var route: RouteOption
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func validate() throws {
    if try route.preference() == .legacy && common.simulated {
      throw ValidationError("the simulated machine is reached through iommufd only: --route legacy needs a host")
    }
    try common.validate(address)
  }

  func run() throws {
    let ranges = try openSession(common, address, prefer: route.preference()).iovaRanges()
    struct Report: Encodable { var ranges: [[String]]; var alignment: String }
    try output.emit(Report(ranges: ranges.ranges.map { [hex($0.start), hex($0.last)] }, alignment: hex(ranges.alignment))) {
      ranges.ranges.map(\.description).joined(separator: "\n") + "\nalignment \(hex(ranges.alignment))"
    }
  }
}

struct HardwareInfo: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "hw-info", abstract: "The IOMMU behind a device (IOMMU_GET_HW_INFO; needs the iommufd route).")
  @OptionGroup var output: OutputOptions
  @OptionGroup var common: Common
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func validate() throws { try common.validate(address) }

  func run() throws {
    let session = try openSession(common, address, prefer: .iommufd)
    guard let iommufd = session.iommufd, let id = session.deviceID else {
      throw ToolFailure(description: "IOMMU_GET_HW_INFO needs iommufd; \(address) is reached through the legacy group")
    }
    let info = try iommufd.hardwareInfo(device: id)
    struct Report: Encodable { var type: String; var data: String; var capabilities: String; var maxPASIDLog2: Int; var vtdCap: String?; var vtdEcap: String? }
    let registers = info.vtdRegisters
    let report = Report(
      type: info.kind.description, data: info.data.map { String(format: "%02x", $0) }.joined(), capabilities: hex(info.capabilities.rawValue),
      maxPASIDLog2: Int(info.maxPASIDLog2), vtdCap: registers.map { hex($0.capability) }, vtdEcap: registers.map { hex($0.extendedCapability) })
    try output.emit(report) {
      var lines = ["type: \(report.type)", "capabilities: \(report.capabilities)", "max PASID log2: \(report.maxPASIDLog2)", "data: \(report.data)"]
      if let cap = report.vtdCap, let ecap = report.vtdEcap { lines.append("VT-d cap \(cap) ecap \(ecap)") }
      return lines.joined(separator: "\n")
    }
  }
}

/// What bind and unbind did: the device, its driver before and after.
struct BindingReport: Encodable {
  var address: String
  var previousDriver: String?
  var driver: String?
}

struct Bind: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Bind a device to vfio-pci (root); refuses while its IOMMU group has devices on host drivers.",
    discussion: "Acts on the sysfs --sysfs names; there is no --simulated. On failure driver_override is restored.")
  @OptionGroup var output: OutputOptions
  @OptionGroup var sysfs: SysfsOption
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func run() throws {
    let discovery = VFIODiscovery(sysfsRoot: FilePath(sysfs.sysfs))
    let previous = try PCIDriverBinding(discovery: discovery).bindToVFIO(address)
    try output.emit(BindingReport(address: address.description, previousDriver: previous, driver: "vfio-pci")) {
      "\(address): bound to vfio-pci (was \(previous ?? "unbound"))"
    }
  }
}

struct Unbind: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Take a device from vfio-pci and let its host driver probe it again (root); refuses unless it is on vfio-pci.",
    discussion: "Acts on the sysfs --sysfs names; there is no --simulated.")
  @OptionGroup var output: OutputOptions
  @OptionGroup var sysfs: SysfsOption
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func run() throws {
    let discovery = VFIODiscovery(sysfsRoot: FilePath(sysfs.sysfs))
    let driver = try discovery.device(at: address).driver
    guard driver == "vfio-pci" else {
      throw ToolFailure(description: "\(address) is bound to \(driver ?? "no driver"), not to vfio-pci: refusing to unbind it (nothing was changed)")
    }
    let now = try PCIDriverBinding(discovery: discovery).unbindFromVFIO(address)
    try output.emit(BindingReport(address: address.description, previousDriver: driver, driver: now)) {
      "\(address): unbound from vfio-pci (now \(now ?? "no driver"))"
    }
  }
}
