import ArgumentParser
import Iommufd
import SystemPackage

/// `mdev`: mediated devices (emulated VFIO devices such as the kernel's mtty sample).
struct Mdev: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mdev",
    abstract: "List, create and remove mediated devices (mdev): emulated VFIO devices such as the kernel's mtty sample.",
    subcommands: [Types.self, List.self, Create.self, Remove.self])

  /// One mediated device as the tool reports it.
  static func report(_ entry: MediatedDeviceEntry, _ access: VFIOAccess) -> JSON {
    .object([
      ("uuid", .string(entry.id.description)), ("type", .optional(entry.type, JSON.string)), ("parent", .optional(entry.parent, JSON.string)),
      ("driver", .optional(entry.driver, JSON.string)), ("iommuGroup", .optional(entry.iommuGroup, JSON.number)),
      ("cdev", .optional(entry.cdevPath?.string, JSON.string)), ("route", .string(routeName(access))),
      ("reasons", .array(access.reasons.map(JSON.string))),
    ])
  }

  /// The text line of one mediated device.
  static func line(_ entry: MediatedDeviceEntry, _ access: VFIOAccess) -> String {
    "\(entry.id) \(entry.parent ?? "?")/\(entry.type ?? "?") \(entry.driver ?? "no driver"), "
      + "\(entry.iommuGroup.map { "group \($0)" } ?? "no group"), route: \(routeName(access))\n    " + access.reasons.joined(separator: "; ")
  }

  /// `mdev types`: what each parent offers.
  struct Types: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the mediated device types each parent offers, with the instances left.")
    @OptionGroup var output: OutputOptions
    @OptionGroup var common: Common

    func run() throws {
      try common.validate()
      let types = try reportingErrors { try common.discovery.mediatedDeviceTypes() }
      output.emit([(
        "types",
        .array(types.map { type in
          .object([
            ("parent", .string(type.parent)), ("type", .string(type.id)), ("name", .optional(type.name, JSON.string)),
            ("description", .optional(type.description, JSON.string)),
            ("availableInstances", .optional(type.availableInstances, JSON.number)), ("deviceAPI", .optional(type.deviceAPI, JSON.string)),
          ])
        })
      )]) {
        types.isEmpty
          ? "no mediated device types (no mdev parent is registered)"
          : types.map { "\($0.parent)/\($0.id): \($0.name ?? "(no name)"), \($0.availableInstances.map { "\($0) left" } ?? "? left"), \($0.deviceAPI ?? "?")" }
            .joined(separator: "\n")
      }
    }
  }

  /// `mdev list`: the mediated devices that exist.
  struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the mediated devices with type, parent, IOMMU group, VFIO node and the usable route.")
    @OptionGroup var output: OutputOptions
    @OptionGroup var common: Common

    func run() throws {
      try common.validate()
      let discovery = common.discovery
      let entries = try reportingErrors { try discovery.mediatedDevices() }
      let accesses = entries.map { discovery.access(for: $0.id) }
      output.emit([("devices", .array(zip(entries, accesses).map { Mdev.report($0, $1) }))]) {
        entries.isEmpty ? "no mediated devices" : zip(entries, accesses).map { Mdev.line($0, $1) }.joined(separator: "\n")
      }
    }
  }

  /// `mdev create`: make one (root).
  struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create a mediated device of a type (root), named by a random UUID unless --uuid names it.",
      discussion: "Acts on the sysfs --sysfs names; there is no --simulated.")
    @OptionGroup var output: OutputOptions
    @OptionGroup var sysfs: SysfsOption
    @Argument(help: "The type, as `mdev types` lists it, e.g. mtty-2") var type: String
    @Option(help: "The parent offering the type, when several do.") var parent: String?
    @Option(help: "The new device's UUID.", transform: mediatedDeviceID) var uuid: MediatedDeviceID?

    func run() throws {
      let discovery = VFIODiscovery(sysfsRoot: FilePath(sysfs.sysfs))
      let entry = try reportingErrors { try discovery.createMediatedDevice(ofType: type, parent: parent, id: uuid ?? .random()) }
      let access = discovery.access(for: entry.id)
      output.emit([("device", Mdev.report(entry, access))]) { "created " + Mdev.line(entry, access) }
    }
  }

  /// `mdev remove`: remove one (root).
  struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Remove a mediated device (root); the kernel waits until no process has it open.",
      discussion: "Acts on the sysfs --sysfs names; there is no --simulated.")
    @OptionGroup var output: OutputOptions
    @OptionGroup var sysfs: SysfsOption
    @Argument(help: "The device's UUID.", transform: mediatedDeviceID) var uuid: MediatedDeviceID

    func run() throws {
      try reportingErrors { try VFIODiscovery(sysfsRoot: FilePath(sysfs.sysfs)).removeMediatedDevice(uuid) }
      output.emit([("uuid", .string(uuid.description)), ("removed", .bool(true))]) { "removed \(uuid)" }
    }
  }
}

/// Parses a UUID argument, or fails with a usage error.
func mediatedDeviceID(_ text: String) throws -> MediatedDeviceID {
  guard let id = MediatedDeviceID(text) else {
    throw ValidationError("not a UUID: \(text.debugDescription) (expected 8-4-4-4-12 hexadecimal digits)")
  }
  return id
}
