import ArgumentParser
import Iommufd
import IommufdSimulator
import SystemPackage

/// `iommufd-tool`: what this host offers for iommufd and VFIO, and why not.
@main
struct Tool: ParsableCommand {
  /// The version of the JSON output's schema, printed first in every `--json` result.
  static let schemaVersion = 1

  /// The exit status of `probe` when neither iommufd nor the legacy container is usable.
  static let nothingUsable: Int32 = 2

  static let configuration = CommandConfiguration(
    commandName: "iommufd-tool",
    abstract: "Inspect iommufd and VFIO on this host: devices, backends, IOVA ranges, IOMMU info; bind devices to vfio-pci.",
    discussion: """
      devices, show, probe, ranges, hw-info, mdev types and mdev list take --simulated to look at the simulated machine \
      instead of this host. \
      bind, unbind, mdev create and mdev remove only act on sysfs (the one --sysfs names, /sys by default) and have no \
      --simulated. \
      Errors go to standard error, also with --json. Exit status: 0 on success; 1 when an operation failed or was \
      refused; 2 from probe when neither iommufd nor the legacy container is usable; 64 for a usage error.
      """,
    subcommands: [Devices.self, Show.self, Probe.self, Ranges.self, HardwareInfo.self, Bind.self, Unbind.self, Mdev.self])

  /// The tool's one format for a hexadecimal value: `0x` and lowercase digits, no padding.
  static func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
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
  @Flag(help: "Use the simulated machine (one edu device at 0000:00:02.0, with its own sysfs) instead of this host.")
  var simulated = false

  @OptionGroup var sysfsOption: SysfsOption

  @Option(help: "Where device nodes live.")
  var dev = "/dev"

  var sysfs: String { sysfsOption.sysfs }
  /// The host's kernel, or the simulated machine.
  var backend: Backend { simulated ? Self.simulatedMachine : .kernel }
  /// Discovery over the backend's sysfs and device nodes.
  var discovery: VFIODiscovery { VFIODiscovery(sysfsRoot: FilePath(sysfs), deviceRoot: FilePath(dev), backend: backend) }
  /// The backend's files.
  var files: MachineFiles { MachineFiles(calls: backend.calls) }

  static let simulatedAddress = SimulatedKernel.pciAddress(ofDevice: 0)

  /// The simulated machine: one edu device, at ``simulatedAddress``, as `vfio0`, and the mtty
  /// parent (`mdev types`); one per run.
  static let simulatedMachine = Backend.simulated(SimulatedKernel(devices: [SimulatedEduDevice()], mediatedParents: [.mtty()]))

  /// Fails with a usage error for an address the simulated machine does not have, and
  /// for host options that a simulated machine would silently ignore.
  func validate(_ address: PCIAddress) throws {
    try validate()
    guard !simulated || (try? discovery.device(at: address)) != nil else {
      throw ValidationError("the simulated machine has no device at \(address); it has \(Self.simulatedAddress)")
    }
  }

  /// Fails with a usage error for --sysfs or --dev with --simulated: they name a host's
  /// files, which the simulated machine does not read.
  func validate() throws {
    guard simulated else { return }
    if sysfs != "/sys" { throw ValidationError("--sysfs names a host's sysfs; the simulated machine has its own") }
    if dev != "/dev" { throw ValidationError("--dev names a host's device nodes; the simulated machine has its own") }
  }

  /// Opens the device at `address` on the route the host offers (or the simulated machine).
  func openSession(_ address: PCIAddress, prefer: VFIOSession.RoutePreference?) throws -> VFIOSession {
    try reportingErrors {
      try VFIOSession.open(address, discovery: discovery, prefer: prefer, backend: backend)
    }
  }
}

/// The route name the tool prints for an access.
func routeName(_ access: VFIOAccess) -> String {
  switch access.route {
  case .cdev: "iommufd"
  case .group: "legacy"
  case .none: "none"
  }
}

/// `--route`: force iommufd or the legacy container.
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
