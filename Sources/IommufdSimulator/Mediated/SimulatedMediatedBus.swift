import Iommufd
import SystemPackage

/// One mediated device on the simulated machine: made by a write to its type's `create`,
/// with a VFIO cdev (`vfioN`) and an IOMMU group of its own (the kernel's emulated group,
/// named `vfio-noiommu`, with no default domain).
final class SimulatedMediatedInstance {
  /// The lowercase UUID (`%pUl`).
  let name: String
  let parent: SimulatedMediatedParent
  let type: SimulatedMediatedParent.DeviceType
  let device: SimulatedMediatedDevice
  /// `N` of `/dev/vfio/devices/vfioN`: the lowest number no other VFIO device has.
  let vfioIndex: Int
  /// Its IOMMU group's number: the lowest no other group has.
  let group: Int
  /// Descriptors of its cdev open right now (a remove waits for them in the kernel).
  var openFiles = 0
  /// The descriptor it is bound through (one at a time, as for any cdev).
  var boundFile: SimulatedMediatedFile?

  init(name: String, parent: SimulatedMediatedParent, type: SimulatedMediatedParent.DeviceType, vfioIndex: Int, group: Int) {
    self.name = name
    self.parent = parent
    self.type = type
    self.device = type.makeDevice()
    self.vfioIndex = vfioIndex
    self.group = group
  }
}

/// An open cdev of a mediated device; bound, it has an access in an iommufd context.
final class SimulatedMediatedFile {
  let instance: SimulatedMediatedInstance
  /// The access its bind made (`iommufd_access_create`), while bound.
  var access: SimulatedAccess?

  init(instance: SimulatedMediatedInstance) {
    self.instance = instance
  }
}

/// The mdev bus of the simulated machine: its parents, and the instances made of their
/// types. Used only under the kernel's lock.
final class SimulatedMediatedBus {
  let parents: [SimulatedMediatedParent]
  /// The PCI devices' count: their cdevs and groups take the numbers below it.
  let firstNumber: Int
  /// The instances, oldest first.
  private(set) var instances: [SimulatedMediatedInstance] = []

  init(parents: [SimulatedMediatedParent], firstNumber: Int) {
    // Two parents of one name would be one sysfs directory: the first one counts.
    var seen: Set<String> = []
    self.parents = parents.filter { seen.insert($0.name).inserted }
    self.firstNumber = firstNumber
  }

  var isEmpty: Bool { parents.isEmpty }

  func instance(named name: String) -> SimulatedMediatedInstance? { instances.first { $0.name == name } }

  func instance(vfioIndex: Int) -> SimulatedMediatedInstance? { instances.first { $0.vfioIndex == vfioIndex } }

  func instance(group: Int) -> SimulatedMediatedInstance? { instances.first { $0.group == group } }

  /// `available_instances` of `type`: what is left of its parent's pool, divided by its cost.
  func available(_ parent: SimulatedMediatedParent, _ type: SimulatedMediatedParent.DeviceType) -> Int {
    let used = instances.filter { $0.parent === parent }.reduce(0) { $0 + $1.type.cost }
    return max(0, parent.capacity - used) / type.cost
  }

  private func lowestFree(_ taken: Set<Int>) -> Int {
    var number = firstNumber
    while taken.contains(number) { number += 1 }
    return number
  }

  // MARK: create and remove

  /// A write of `bytes` to the `create` of `type` (`create_store`): 36 or 37 bytes holding a
  /// UUID (EINVAL otherwise), not the name of any mediated device (EEXIST), with enough of
  /// the pool left (ENOSPC, from the driver's probe).
  func create(_ parent: SimulatedMediatedParent, _ type: SimulatedMediatedParent.DeviceType, _ bytes: [UInt8]) throws(Errno) {
    guard bytes.count == 36 || bytes.count == 37, let name = Self.parseUUID(bytes.prefix(36)) else { throw .invalidArgument }
    if instance(named: name) != nil { throw .fileExists }
    if available(parent, type) == 0 { throw .noSpace }
    let instance = SimulatedMediatedInstance(
      name: name, parent: parent, type: type, vfioIndex: lowestFree(Set(instances.map(\.vfioIndex))),
      group: lowestFree(Set(instances.map(\.group))))
    instances.append(instance)
  }

  /// A write of `bytes` to the `remove` of `instance` (`remove_store`): a number as
  /// `kstrtoul` reads it (EINVAL otherwise); 0 does nothing. The kernel then waits, without
  /// end, for every descriptor of the device to close: the simulator cannot wait for a
  /// close on the same thread and refuses with EBUSY instead (Docs/Simulator.md).
  func remove(_ instance: SimulatedMediatedInstance, _ bytes: [UInt8]) throws(Errno) {
    guard let value = Self.parseUnsigned(bytes) else { throw .invalidArgument }
    if value == 0 { return }
    if instance.openFiles > 0 { throw .resourceBusy }
    instances.removeAll { $0 === instance }
  }

  /// The lowercase form of a UUID as `uuid_is_valid` accepts it: hex digits of either case
  /// with dashes at 8, 13, 18 and 23.
  static func parseUUID(_ bytes: ArraySlice<UInt8>) -> String? {
    var text = ""
    for (offset, byte) in bytes.enumerated() {
      if [8, 13, 18, 23].contains(offset) {
        guard byte == UInt8(ascii: "-") else { return nil }
        text.append("-")
        continue
      }
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): text.append(Character(UnicodeScalar(byte)))
      case UInt8(ascii: "A")...UInt8(ascii: "F"): text.append(Character(UnicodeScalar(byte + 0x20)))
      default: return nil
      }
    }
    return text
  }

  /// `kstrtoul(buf, 0)`: an optional `+`, then decimal, `0x` hex or `0` octal, with one
  /// optional trailing newline; nil for anything else, or a value past 64 bits.
  static func parseUnsigned(_ bytes: [UInt8]) -> UInt64? {
    var digits = bytes[...]
    if digits.last == UInt8(ascii: "\n") { digits = digits.dropLast() }
    if digits.first == UInt8(ascii: "+") { digits = digits.dropFirst() }
    var radix: UInt64 = 10
    if digits.count >= 2, digits.first == UInt8(ascii: "0"), digits.dropFirst().first.map({ $0 | 0x20 }) == UInt8(ascii: "x") {
      radix = 16
      digits = digits.dropFirst(2)
    } else if digits.count >= 2, digits.first == UInt8(ascii: "0") {
      radix = 8
      digits = digits.dropFirst()
    }
    guard !digits.isEmpty else { return nil }
    var value: UInt64 = 0
    for byte in digits {
      let digit: UInt64
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt64(byte - UInt8(ascii: "A") + 10)
      default: return nil
      }
      guard digit < radix else { return nil }
      let (product, overflow) = value.multipliedReportingOverflow(by: radix)
      let (sum, carry) = product.addingReportingOverflow(digit)
      if overflow || carry { return nil }
      value = sum
    }
    return value
  }

  // MARK: sysfs

  /// The nodes under `/sys/class/mdev_bus`: a link per parent, and the parent's directory
  /// through it.
  func classNode(_ rest: [String]) -> SimulatedSysfs.Node? {
    guard let first = rest.first else { return .directory(parents.map(\.name)) }
    guard let parent = parents.first(where: { $0.name == first }) else { return nil }
    if rest.count == 1 { return .link("../../devices/virtual/\(parent.name)/\(parent.name)") }
    return parentNode(parent, Array(rest.dropFirst()))
  }

  /// The parent's directory: its types and its instances.
  private func parentNode(_ parent: SimulatedMediatedParent, _ rest: [String]) -> SimulatedSysfs.Node? {
    let mine = instances.filter { $0.parent === parent }
    switch rest.first {
    case nil: return .directory(["mdev_supported_types"] + mine.map(\.name))
    case "mdev_supported_types":
      guard rest.count > 1 else { return .directory(parent.types.map(parent.directoryName)) }
      guard let type = parent.types.first(where: { parent.directoryName($0) == rest[1] }) else { return nil }
      return typeNode(parent, type, Array(rest.dropFirst(2)))
    case let name?:
      guard let instance = mine.first(where: { $0.name == name }) else { return nil }
      return instanceNode(instance, Array(rest.dropFirst()))
    }
  }

  private func typeNode(_ parent: SimulatedMediatedParent, _ type: SimulatedMediatedParent.DeviceType, _ rest: [String]) -> SimulatedSysfs.Node? {
    func text(_ value: String) -> SimulatedSysfs.Node { .file(Array((value + "\n").utf8)) }
    let devices = instances.filter { $0.parent === parent && $0.type.suffix == type.suffix }
    switch rest {
    case []:
      return .directory(["available_instances", "create", "device_api"] + (type.description == nil ? [] : ["description"]) + ["devices", "name"])
    case ["available_instances"]: return text(String(available(parent, type)))
    case ["create"]: return .writeOnly
    case ["device_api"]: return text(type.deviceAPI)
    case ["description"]: return type.description.map(text)
    case ["name"]: return text(type.name)
    case ["devices"]: return .directory(devices.map(\.name))
    case let parts where parts.count == 2 && parts[0] == "devices":
      return devices.contains { $0.name == parts[1] } ? .link("../../../\(parts[1])") : nil
    default: return nil
    }
  }

  /// An instance's directory.
  private func instanceNode(_ instance: SimulatedMediatedInstance, _ rest: [String]) -> SimulatedSysfs.Node? {
    let cdev = "vfio\(instance.vfioIndex)"
    switch rest {
    case []: return .directory(["driver", "iommu_group", "mdev_type", "remove", "vfio-dev"])
    case ["driver"]: return .link("../../../../bus/mdev/drivers/\(instance.parent.name)")
    case ["iommu_group"]: return .link("../../../../kernel/iommu_groups/\(instance.group)")
    case ["mdev_type"]: return .link("../mdev_supported_types/\(instance.parent.directoryName(instance.type))")
    case ["remove"]: return .writeOnly
    case ["vfio-dev"]: return .directory([cdev])
    case ["vfio-dev", cdev]: return .directory(["dev"])
    case ["vfio-dev", cdev, "dev"]: return .file(Array("511:\(instance.vfioIndex)\n".utf8))
    default: return nil
    }
  }

  /// The nodes under `/sys/bus/mdev`: the devices (links to their directories) and the
  /// parents' drivers.
  func busNode(_ rest: [String]) -> SimulatedSysfs.Node? {
    switch rest.first {
    case nil: return .directory(["devices", "drivers"])
    case "devices":
      guard rest.count > 1 else { return .directory(instances.map(\.name)) }
      guard let instance = instance(named: rest[1]) else { return nil }
      if rest.count == 2 { return .link("../../../devices/virtual/\(instance.parent.name)/\(instance.parent.name)/\(instance.name)") }
      return instanceNode(instance, Array(rest.dropFirst(2)))
    case "drivers":
      guard rest.count > 1 else { return .directory(parents.map(\.name)) }
      guard rest.count == 2, parents.contains(where: { $0.name == rest[1] }) else { return nil }
      return .directory(instances.filter { $0.parent.name == rest[1] }.map(\.name))
    default: return nil
    }
  }

  /// `/sys/kernel/iommu_groups/<group>` of an instance.
  func groupNode(_ instance: SimulatedMediatedInstance, _ rest: [String]) -> SimulatedSysfs.Node? {
    switch rest {
    case []: return .directory(["devices", "name", "reserved_regions", "type"])
    case ["devices"]: return .directory([instance.name])
    case ["devices", instance.name]: return .link("../../../../devices/virtual/\(instance.parent.name)/\(instance.parent.name)/\(instance.name)")
    case ["name"]: return .file(Array("vfio-noiommu\n".utf8))
    case ["reserved_regions"]: return .file([])
    case ["type"]: return .file(Array("unknown\n".utf8))
    default: return nil
    }
  }

  /// A write to a write-only attribute at `components` of `/sys`: `create` or `remove`.
  func write(_ components: [String], _ bytes: [UInt8]) throws(Errno) {
    // .../mdev_bus/<parent>/mdev_supported_types/<type>/create
    if components.count == 7, components[1] == "class", let parent = parents.first(where: { $0.name == components[3] }),
      let type = parent.types.first(where: { parent.directoryName($0) == components[5] })
    {
      return try create(parent, type, bytes)
    }
    // .../mdev/devices/<uuid>/remove, or .../mdev_bus/<parent>/<uuid>/remove
    if let name = components.dropLast().last, let instance = instance(named: name) { return try remove(instance, bytes) }
    throw .noSuchFileOrDirectory
  }
}
