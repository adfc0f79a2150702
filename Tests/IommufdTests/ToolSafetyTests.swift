import CIommufd
import Foundation
import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

/// A generated sysfs tree (and device-node directory) in a temporary directory, with the
/// files binding writes, and a snapshot of everything in it.
struct FakeSysfs {
  let root: String
  var dev: String { root + "/dev" }

  /// An empty tree with `bus/pci/drivers_probe`.
  init() throws {
    root = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-tool-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: root + "/bus/pci/devices", withIntermediateDirectories: true)
    try "".write(toFile: root + "/bus/pci/drivers_probe", atomically: false, encoding: .utf8)
  }

  /// Adds a device alone in IOMMU group `group`, on `driver` (with its `unbind` file),
  /// with `driver_override` holding `override` (nil: no such file).
  func device(_ bdf: String, driver: String?, group: Int?, cdev: String? = nil, override: String? = "(null)\n") throws {
    let fm = FileManager.default
    let real = "\(root)/devices/pci0000:00/\(bdf)"
    try fm.createDirectory(atPath: real, withIntermediateDirectories: true)
    try "0x1af4\n".write(toFile: real + "/vendor", atomically: true, encoding: .utf8)
    if let override { try override.write(toFile: real + "/driver_override", atomically: false, encoding: .utf8) }
    if let driver {
      try fm.createDirectory(atPath: "\(root)/bus/pci/drivers/\(driver)", withIntermediateDirectories: true)
      if !fm.fileExists(atPath: "\(root)/bus/pci/drivers/\(driver)/unbind") {
        try "".write(toFile: "\(root)/bus/pci/drivers/\(driver)/unbind", atomically: false, encoding: .utf8)
      }
      try fm.createSymbolicLink(atPath: real + "/driver", withDestinationPath: "../../../bus/pci/drivers/\(driver)")
    }
    if let group {
      try fm.createDirectory(atPath: "\(root)/kernel/iommu_groups/\(group)/devices", withIntermediateDirectories: true)
      try fm.createSymbolicLink(atPath: real + "/iommu_group", withDestinationPath: "../../../kernel/iommu_groups/\(group)")
      try fm.createSymbolicLink(
        atPath: "\(root)/kernel/iommu_groups/\(group)/devices/\(bdf)", withDestinationPath: "../../../../devices/pci0000:00/\(bdf)")
    }
    if let cdev { try fm.createDirectory(atPath: "\(real)/vfio-dev/\(cdev)", withIntermediateDirectories: true) }
    try fm.createSymbolicLink(atPath: "\(root)/bus/pci/devices/\(bdf)", withDestinationPath: "../../../devices/pci0000:00/\(bdf)")
  }

  /// Creates empty files standing for device nodes under `dev`.
  func nodes(_ paths: [String]) throws {
    for path in paths {
      let full = dev + "/" + path
      try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
      _ = FileManager.default.createFile(atPath: full, contents: nil)
    }
  }

  /// Every file's contents, link's target and directory, by path under the root.
  func snapshot() throws -> [String: String] {
    var result: [String: String] = [:]
    let fm = FileManager.default
    for path in fm.subpaths(atPath: root) ?? [] {
      let full = root + "/" + path
      if let target = try? fm.destinationOfSymbolicLink(atPath: full) {
        result[path] = "-> " + target
      } else if let text = try? String(contentsOfFile: full, encoding: .utf8) {
        result[path] = text
      } else {
        result[path] = "(directory)"
      }
    }
    return result
  }

  func text(_ path: String) throws -> String { try String(contentsOfFile: root + "/" + path, encoding: .utf8) }

  func remove() { try? FileManager.default.removeItem(atPath: root) }
}

/// The tool's result: exit status (nil if it died of a signal), standard output and error.
struct ToolRun {
  var status: Int32?
  var output: String
  var error: String
}

/// Runs the built `iommufd-tool` (next to the test bundle, or `$IOMMUFD_TOOL`).
/// The built `iommufd-tool`: next to the test bundle, or `$IOMMUFD_TOOL`.
func toolPath() throws -> String {
  let bin = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent()
  let path = ProcessInfo.processInfo.environment["IOMMUFD_TOOL"] ?? bin.appendingPathComponent("iommufd-tool").path
  try #require(FileManager.default.isExecutableFile(atPath: path), "no iommufd-tool at \(path): build it with `swift build --build-tests`")
  return path
}

/// Runs the tool (or `executable`, given the tool's path among `arguments`).
func runTool(_ arguments: [String], executable: String? = nil) throws -> ToolRun {
  let path = try executable ?? toolPath()
  let process = Process()
  process.executableURL = URL(fileURLWithPath: path)
  process.arguments = arguments
  let output = Pipe(), error = Pipe()
  process.standardOutput = output
  process.standardError = error
  process.standardInput = FileHandle.nullDevice
  try process.run()
  let out = output.fileHandleForReading.readDataToEndOfFile()
  let err = error.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return ToolRun(
    status: process.terminationReason == .exit ? process.terminationStatus : nil,
    output: String(decoding: out, as: UTF8.self), error: String(decoding: err, as: UTF8.self))
}

/// `iommufd-tool` and the binding helpers cannot harm the host: unbind only takes devices
/// from vfio-pci, a failed bind restores `driver_override`, bind and unbind have no
/// `--simulated`, errors name a device in use or a missing permission, and no argument traps.
@Suite("tool safety")
struct ToolSafetyTests {
  /// 04.0 on virtio-pci, 03.0 on vfio-pci with a cdev, 06.0 on e1000e, 07.0 on vfio-pci
  /// without a cdev, 08.0 on no driver; each alone in its group.
  static func makeTree() throws -> FakeSysfs {
    let tree = try FakeSysfs()
    try tree.device("0000:00:04.0", driver: "virtio-pci", group: 4)
    try tree.device("0000:00:03.0", driver: "vfio-pci", group: 3, cdev: "vfio0", override: "vfio-pci\n")
    try tree.device("0000:00:06.0", driver: "e1000e", group: 6)
    try tree.device("0000:00:07.0", driver: "vfio-pci", group: 7)
    try tree.device("0000:00:08.0", driver: nil, group: 8)
    return tree
  }

  // MARK: the library

  @Test("unbindFromVFIO refuses a device on a host driver or none with EINVAL naming it, and writes nothing")
  func unbindRefuses() throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    let before = try tree.snapshot()
    let binding = PCIDriverBinding(discovery: VFIODiscovery(sysfsRoot: FilePath(tree.root)))
    let virtio = try #require(throws: IommufdError.self) { try binding.unbindFromVFIO(PCIAddress("00:04.0")!) }
    #expect(virtio.operation == .driverBinding)
    #expect(virtio.errno == .invalidArgument)
    #expect(virtio.detail == "0000:00:04.0: bound to virtio-pci, not to vfio-pci: refusing to unbind it")
    let none = try #require(throws: IommufdError.self) { try binding.unbindFromVFIO(PCIAddress("00:08.0")!) }
    #expect(none.detail == "0000:00:08.0: bound to no driver, not to vfio-pci: refusing to unbind it")
    #expect(try tree.snapshot() == before)
  }

  @Test("a bind that fails after writing driver_override restores it, whichever step failed")
  func bindRollsBack() throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    let binding = PCIDriverBinding(discovery: VFIODiscovery(sysfsRoot: FilePath(tree.root)))
    let override = "devices/pci0000:00/0000:00:06.0/driver_override"
    // The tree does not react to drivers_probe: the device stays on e1000e.
    let unreactive = try #require(throws: IommufdError.self) { try binding.bindToVFIO(PCIAddress("00:06.0")!) }
    #expect(unreactive.detail == "0000:00:06.0: still bound to e1000e after drivers_probe: is the vfio-pci module loaded?; driver_override restored to (null)")
    #expect(try tree.text(override) == "\n")
    #expect(try tree.text("bus/pci/drivers/e1000e/unbind") == "0000:00:06.0")
    #expect(try tree.text("bus/pci/drivers_probe") == "0000:00:06.0")

    // The driver's unbind file cannot be opened: a previous override comes back as it was.
    try "pci-stub\n".write(toFile: tree.root + "/" + override, atomically: false, encoding: .utf8)
    try "".write(toFile: tree.root + "/bus/pci/drivers_probe", atomically: false, encoding: .utf8)
    try FileManager.default.removeItem(atPath: tree.root + "/bus/pci/drivers/e1000e/unbind")
    let noUnbind = try #require(throws: IommufdError.self) { try binding.bindToVFIO(PCIAddress("00:06.0")!) }
    #expect(noUnbind.errno == .noSuchFileOrDirectory)
    #expect(noUnbind.detail == "cannot write \"0000:00:06.0\" for 0000:00:06.0; driver_override restored to pci-stub")
    #expect(try tree.text(override) == "pci-stub")
    #expect(try tree.text("bus/pci/drivers_probe") == "")

    // No driver_override to read: nothing is written at all.
    try FileManager.default.removeItem(atPath: tree.root + "/" + override)
    let before = try tree.snapshot()
    let unreadable = try #require(throws: IommufdError.self) { try binding.bindToVFIO(PCIAddress("00:06.0")!) }
    #expect(unreadable.errno == .noSuchFileOrDirectory)
    #expect(unreadable.detail == "cannot read the driver_override of 0000:00:06.0: nothing was changed")
    #expect(try tree.snapshot() == before)
  }

  @Test("an unbind that fails after clearing driver_override restores it")
  func unbindRollsBack() throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    let binding = PCIDriverBinding(discovery: VFIODiscovery(sysfsRoot: FilePath(tree.root)))
    // The tree does not react to unbind: the device stays on vfio-pci, which unbind reports.
    let unreactive = try #require(throws: IommufdError.self) { try binding.unbindFromVFIO(PCIAddress("00:03.0")!) }
    #expect(unreactive.errno == .resourceBusy)
    #expect(unreactive.detail
      == "0000:00:03.0: still bound to vfio-pci after unbind and drivers_probe: does vfio-pci claim it by id (ids=, new_id)?; driver_override restored to vfio-pci")
    #expect(try tree.text("devices/pci0000:00/0000:00:03.0/driver_override") == "vfio-pci")
  }

  @Test("opening a device in use says so: EBUSY from a group or bind, EINVAL from a second bind; the errno is kept")
  func inUse() throws {
    // A VM holding the legacy group: the kernel answers the bind with EBUSY.
    let busyBind = RecordingSystemCalls { request, _ throws(Errno) in
      if request == UInt(CIOMMUFD_VFIO_DEVICE_BIND_IOMMUFD) { throw .resourceBusy }
      return 0
    }
    let bind = try #require(throws: IommufdError.self) {
      try VFIOSession.openCdev("/dev/vfio/devices/vfio0", backend: Backend(busyBind))
    }
    #expect(bind.operation == .deviceBind)
    #expect(bind.errno == .resourceBusy)
    #expect(bind.detail == "device /dev/vfio/devices/vfio0 is in use (EBUSY): another process, e.g. a VM, has it open")

    // A VM bound through the cdev: a second bind is EINVAL (the simulator as the kernel, BIND-7).
    let kernel = SimulatedKernel(devices: [SimulatedEduDevice()])
    let first = try VFIOSession.openCdev(SimulatedKernel.devicePath(0), backend: .simulated(kernel))
    let second = try #require(throws: IommufdError.self) {
      try VFIOSession.openCdev(SimulatedKernel.devicePath(0), backend: .simulated(kernel))
    }
    #expect(second.errno == .invalidArgument)
    #expect(second.detail
      == "device \(SimulatedKernel.devicePath(0)) is in use (EINVAL: it is already bound through another descriptor): another process, e.g. a VM, has it open")
    _ = first

    // The legacy route: the group node another process holds opens with EBUSY.
    let tree = try Self.makeTree()
    defer { tree.remove() }
    try tree.nodes(["vfio/vfio", "vfio/7"])
    let discovery = VFIODiscovery(sysfsRoot: FilePath(tree.root), deviceRoot: FilePath(tree.dev))
    let busyGroup = RecordingSystemCalls(openFailures: [tree.dev + "/vfio/7": .resourceBusy])
    let group = try #require(throws: IommufdError.self) {
      try VFIOSession.open(PCIAddress("00:07.0")!, discovery: discovery, backend: Backend(busyGroup))
    }
    #expect(group.operation == .open)
    #expect(group.errno == .resourceBusy)
    #expect(group.detail == "device 0000:00:07.0 is in use (EBUSY): another process, e.g. a VM, has it open")
  }

  @Test("no permission to open a node is EACCES (or EPERM) with a hint; a real ENODEV stays ENODEV")
  func permissions() throws {
    let denied = RecordingSystemCalls(openFailures: ["/dev/iommu": .permissionDenied])
    let iommu = try #require(throws: IommufdError.self) {
      try VFIOSession.openCdev("/dev/vfio/devices/vfio0", backend: Backend(denied))
    }
    #expect(iommu.errno == .permissionDenied)
    #expect(iommu.detail
      == "no permission to open /dev/iommu (EACCES): run as root or grant this user read-write access to /dev/iommu and /dev/vfio/devices/vfio0")
    let notPermitted = RecordingSystemCalls(openFailures: ["/dev/vfio/devices/vfio0": .notPermitted])
    let cdev = try #require(throws: IommufdError.self) {
      try VFIOSession.openCdev("/dev/vfio/devices/vfio0", backend: Backend(notPermitted))
    }
    #expect(cdev.errno == .notPermitted)
    #expect(cdev.detail
      == "not permitted to open /dev/vfio/devices/vfio0 (EPERM): run as root or grant this user read-write access to /dev/iommu and /dev/vfio/devices/vfio0")
    let gone = RecordingSystemCalls(openFailures: ["/dev/vfio/devices/vfio0": .operationNotSupportedByDevice])
    let unregistered = try #require(throws: IommufdError.self) {
      try VFIOSession.openCdev("/dev/vfio/devices/vfio0", backend: Backend(gone))
    }
    #expect(unregistered.errno == .operationNotSupportedByDevice)
    #expect(unregistered.detail == nil)
  }

  /// Root may open any node, so as root (CI) the check runs the built tool as `nobody`
  /// through `setpriv`; otherwise the library is called directly.
  @Test("a node discovery may not open read-write makes open() fail with EACCES, not ENODEV")
  func permissionFromDiscovery() throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    try tree.nodes(["iommu", "vfio/devices/vfio0"])
    chmod(tree.dev + "/vfio/devices/vfio0", 0)
    let hint = "0000:00:03.0: no read-write permission on \(tree.dev)/vfio/devices/vfio0 (EACCES): "
      + "run as root or grant this user read-write access to \(tree.dev)/iommu and \(tree.dev)/vfio/devices/vfio0"
    if geteuid() == 0 {
      chmod(tree.root, 0o755)
      chmod(tree.dev, 0o755)
      chmod(tree.dev + "/iommu", 0o666)  // only the cdev is out of reach
      let tool = try toolPath()
      let run = try runTool(
        ["--reuid=65534", "--regid=65534", "--clear-groups", tool, "ranges", "--sysfs", tree.root, "--dev", tree.dev, "0000:00:03.0"],
        executable: "/usr/bin/setpriv")
      #expect(run.status == 1)
      #expect(run.error.contains(hint))
      return
    }
    let discovery = VFIODiscovery(sysfsRoot: FilePath(tree.root), deviceRoot: FilePath(tree.dev))
    let error = try #require(throws: IommufdError.self) {
      try VFIOSession.open(PCIAddress("00:03.0")!, discovery: discovery, backend: Backend(RecordingSystemCalls()))
    }
    #expect(error.errno == .permissionDenied)
    #expect(error.detail == hint)
  }

  // MARK: the tool

  @Test("iommufd-tool unbind refuses a device on virtio-pci, naming the driver, exit 1, with or without --json; the tree is untouched")
  func toolUnbindRefuses() throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    let before = try tree.snapshot()
    for extra in [[], ["--json"]] {
      let run = try runTool(["unbind"] + extra + ["--sysfs", tree.root, "0000:00:04.0"])
      #expect(run.status == 1)
      #expect(run.output == "")
      #expect(run.error == "Error: 0000:00:04.0 is bound to virtio-pci, not to vfio-pci: refusing to unbind it (nothing was changed)\n")
    }
    #expect(try tree.snapshot() == before)
  }

  @Test("bind and unbind have no --simulated: a usage error (exit 64) before anything is touched")
  func toolNoSimulatedBinding() throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    let before = try tree.snapshot()
    for command in ["bind", "unbind"] {
      for address in ["0000:00:03.0", "0000:00:06.0"] {
        let run = try runTool([command, "--simulated", "--sysfs", tree.root, address])
        #expect(run.status == 64)
        #expect(run.output == "")
        #expect(run.error.hasPrefix("Error: Unknown option '--simulated'\nUsage: iommufd-tool \(command) [--json] [--sysfs <sysfs>] <address>\n"))
      }
    }
    #expect(try tree.snapshot() == before)
  }

  @Test("bind --json prints the result as JSON; a failed bind through the tool restores driver_override")
  func toolBind() throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    let bound = try runTool(["bind", "--json", "--sysfs", tree.root, "0000:00:03.0"])
    #expect(bound.status == 0)
    #expect(bound.output == "{\n  \"schemaVersion\": 1,\n  \"device\": \"0000:00:03.0\",\n  \"previousDriver\": \"vfio-pci\",\n  \"driver\": \"vfio-pci\"\n}\n")
    let failed = try runTool(["bind", "--sysfs", tree.root, "0000:00:06.0"])
    #expect(failed.status == 1)
    #expect(failed.error == "Error: 0000:00:06.0: still bound to e1000e after drivers_probe: is the vfio-pci module loaded?; "
      + "driver_override restored to (null) (driver binding: \(Errno.operationNotSupportedByDevice))\n")
    #expect(try tree.text("devices/pci0000:00/0000:00:06.0/driver_override") == "\n")
  }

  /// Arguments that must end in an error message and an exit status, never a trap.
  static let badArguments: [([String], Int32)] = [
    (["unbind", ""], 64), (["unbind", "zz"], 64), (["bind", "0000:00:20.0"], 64), (["bind", "0000:00:03.8"], 64),
    (["bind", "../../../../etc/passwd"], 64), (["unbind", "0000:00:03.0/../../.."], 64), (["ranges", "-1:0:0.0"], 64),
    (["hw-info", String(repeating: "f", count: 10_000)], 64), (["ranges", "--route", "bogus", "0000:00:03.0"], 64),
    (["ranges", "--simulated", "0000:00:03.0"], 64), (["hw-info", "--simulated", "1:2:3.4.5"], 64), (["bind"], 64),
    (["devices", "--sysfs", ""], 64), (["unbind", "--sysfs", "", "00:03.0"], 64),
    (["unbind", "0000:00:09.0"], 1), (["bind", "ffff:ff:1f.7"], 1), (["ranges", "0000:00:04.0"], 1), (["hw-info", "0000:00:06.0"], 1),
    (["show", "zz"], 64), (["show", "--simulated", "0000:00:03.0"], 64), (["show"], 64), (["show", "0000:00:09.0"], 1),
  ]

  @Test("no argument traps: bad addresses, routes and roots are usage errors (64), missing devices errors (1)", arguments: badArguments)
  func toolArguments(_ arguments: [String], _ status: Int32) throws {
    let tree = try Self.makeTree()
    defer { tree.remove() }
    let before = try tree.snapshot()
    // Every run gets the generated tree and node directory, so none reads or writes the host's.
    var rooted = arguments
    if !arguments.contains("--sysfs") {
      let dev: [String] = ["ranges", "hw-info", "show"].contains(arguments[0]) ? ["--dev", tree.dev] : []
      rooted = [arguments[0], "--sysfs", tree.root] + dev + Array(arguments.dropFirst())
    }
    let run = try runTool(rooted)
    #expect(run.status == status, "\(rooted): \(run.error)")
    // The problem is stated once, with no log line before it.
    #expect(run.error.hasPrefix("Error: ") && run.error.components(separatedBy: "Error: ").count == 2, "\(rooted): \(run.error)")
    #expect(try tree.snapshot() == before)
  }

  @Test("--simulated with a host option it would ignore (--route legacy, --dev, --sysfs) is a usage error, not a silent answer")
  func simulatedWithHostOptions() throws {
    let cases: [([String], String)] = [
      (["ranges", "--simulated", "--route", "legacy", "0000:00:02.0"], "iommufd only"),
      (["ranges", "--simulated", "--dev", "/nonexistent", "0000:00:02.0"], "--dev"),
      (["devices", "--simulated", "--sysfs", "/nonexistent"], "--sysfs"),
    ]
    for (arguments, message) in cases {
      let run = try runTool(arguments)
      #expect(run.status == 64, "\(arguments): \(run.error)")
      #expect(run.error.contains(message), "\(arguments): \(run.error)")
    }
    #expect(try runTool(["ranges", "--simulated", "--route", "iommufd", "0000:00:02.0"]).status == 0)
  }

  @Test("an unknown subcommand is a usage error")
  func toolUnknownCommand() throws {
    let run = try runTool(["frobnicate"])
    #expect(run.status == 64)
    #expect(run.error.hasPrefix("Error: Unexpected argument 'frobnicate'"))
  }
}
