import Iommufd
import SystemPackage

/// The sysfs and `/dev` of the simulated machine, as discovery reads them: each device at
/// its PCI address, bound to vfio-pci, alone in its IOMMU group, with its `vfio-dev` node;
/// the group's reserved regions; the modules that are loaded. Built on demand from the
/// devices, so it always says what the machine is.
enum SimulatedSysfs {
  /// A node of the tree.
  enum Node {
    case directory([String])
    case file([UInt8])
    case link(String)
    /// An attribute that can only be written (mode 0200: an mdev type's `create`, an mdev's
    /// `remove`); kernfs refuses to open it for reading (EACCES).
    case writeOnly
  }

  /// The node at `path` (an absolute path under `/sys`, or `/dev/iommu` and `/dev/vfio`),
  /// nil where there is none.
  static func node(
    _ path: [String], devices: [SimulatedPCIDevice], topology: SimulatedTopology, enumerated: [[UInt8]], mediated: SimulatedMediatedBus
  ) -> Node? {
    let addresses = topology.addresses
    func device(_ text: String) -> Int? { addresses.firstIndex { $0.description == text } }
    let hasMediated = !mediated.isEmpty
    switch path {
    case ["dev", "iommu"]: return .file([])
    case ["dev", "vfio"]: return .directory(["devices"])
    case ["dev", "vfio", "devices"]:
      return .directory((Array(devices.indices) + mediated.instances.map(\.vfioIndex).sorted()).map { "vfio\($0)" })
    case let parts where parts.count == 4 && parts[0] == "dev" && parts[1] == "vfio" && parts[2] == "devices":
      return SimulatedKernel.deviceIndex(FilePath("/dev/vfio/devices/" + parts[3])).flatMap {
        $0 < devices.count || mediated.instance(vfioIndex: $0) != nil ? .file([]) : nil
      }
    case ["sys"]: return .directory(["bus"] + (hasMediated ? ["class"] : []) + ["kernel", "module"])
    case ["sys", "bus"]: return .directory(["pci"] + (hasMediated ? ["mdev"] : []))
    case let parts where hasMediated && parts.count >= 3 && parts[0] == "sys" && parts[1] == "bus" && parts[2] == "mdev":
      return mediated.busNode(Array(parts.dropFirst(3)))
    case ["sys", "class"] where hasMediated: return .directory(["mdev_bus"])
    case let parts where hasMediated && parts.count >= 3 && parts[0] == "sys" && parts[1] == "class" && parts[2] == "mdev_bus":
      return mediated.classNode(Array(parts.dropFirst(3)))
    case ["sys", "bus", "pci"]: return .directory(["devices", "drivers"])
    case ["sys", "bus", "pci", "devices"]: return .directory(addresses.map(\.description))
    case ["sys", "bus", "pci", "drivers"]: return .directory(["vfio-pci"])
    case ["sys", "bus", "pci", "drivers", "vfio-pci"]: return .directory(addresses.map(\.description))
    case ["sys", "kernel"]: return .directory(["iommu_groups"])
    case ["sys", "kernel", "iommu_groups"]:
      return .directory((Array(Set(topology.groups)).sorted() + mediated.instances.map(\.group).sorted()).map { "\($0)" })
    case ["sys", "module"]: return .directory(["iommufd", "vfio", "vfio_pci"])
    case let parts where parts.count == 3 && parts[0] == "sys" && parts[1] == "module" && ["iommufd", "vfio", "vfio_pci"].contains(parts[2]):
      return .directory([])
    case let parts where parts.count >= 5 && parts[0] == "sys" && parts[1] == "bus" && parts[2] == "pci" && parts[3] == "drivers":
      guard parts[4] == "vfio-pci", parts.count == 6, let number = device(parts[5]) else { return nil }
      return .link("../../../../devices/pci0000:00/\(addresses[number])")
    case let parts where parts.count >= 5 && parts[0] == "sys" && parts[1] == "bus" && parts[2] == "pci" && parts[3] == "devices":
      guard let number = device(parts[4]) else { return nil }
      return deviceNode(
        Array(parts.dropFirst(5)), number: number, device: devices[number], identity: enumerated[number],
        group: topology.groups[number], resetMethods: topology.resetMethods(of: number, device: devices[number]))
    case let parts where parts.count >= 4 && parts[0] == "sys" && parts[1] == "kernel" && parts[2] == "iommu_groups":
      guard parts[3] == String(Int(parts[3]) ?? -1), let number = Int(parts[3]) else { return nil }
      if let instance = mediated.instance(group: number) { return mediated.groupNode(instance, Array(parts.dropFirst(4))) }
      let members = topology.members(ofGroup: number)
      guard let first = members.first else { return nil }
      return groupNode(Array(parts.dropFirst(4)), addresses: members.map { addresses[$0] }, device: devices[first])
    default: return nil
    }
  }

  /// A device's directory; `identity` is its config space as enumerated (the kernel prints
  /// the ids it read then, whatever the device says since).
  /// `reset_method` is there only when the device has a method (the kernel hides it otherwise).
  private static func deviceNode(
    _ rest: [String], number: Int, device: SimulatedPCIDevice, identity config: [UInt8], group: Int, resetMethods: [String]
  ) -> Node? {
    func hex(_ value: UInt64, digits: Int) -> Node {
      let text = String(value, radix: 16)
      return .file(Array(("0x" + String(repeating: "0", count: max(0, digits - text.count)) + text + "\n").utf8))
    }
    func word(_ offset: Int) -> UInt64 { UInt64(config[offset]) | UInt64(config[offset + 1]) << 8 }
    switch rest {
    case []:
      return .directory([
        "vendor", "device", "class", "revision", "subsystem_vendor", "subsystem_device", "config", "resource", "driver",
        "iommu_group", "vfio-dev",
      ] + (resetMethods.isEmpty ? [] : ["reset_method"]))
    case ["reset_method"] where !resetMethods.isEmpty: return .file(Array((resetMethods.joined(separator: " ") + "\n").utf8))
    case ["vendor"]: return hex(word(0), digits: 4)
    case ["device"]: return hex(word(2), digits: 4)
    case ["class"]: return hex(UInt64(config[9]) | UInt64(config[10]) << 8 | UInt64(config[11]) << 16, digits: 6)
    case ["revision"]: return hex(UInt64(config[8]), digits: 2)
    case ["subsystem_vendor"]: return hex(word(0x2C), digits: 4)
    case ["subsystem_device"]: return hex(word(0x2E), digits: 4)
    case ["config"]: return .file(device.config)
    case ["resource"]: return .file(Array(resourceText(number: number, device: device).utf8))
    case ["driver"]: return .link("../../../bus/pci/drivers/vfio-pci")
    case ["iommu_group"]: return .link("../../../kernel/iommu_groups/\(group)")
    case ["vfio-dev"]: return .directory(["vfio\(number)"])
    case ["vfio-dev", "vfio\(number)"]: return .directory(["dev"])
    case ["vfio-dev", "vfio\(number)", "dev"]: return .file(Array("511:\(number)\n".utf8))
    default: return nil
    }
  }

  /// A group's directory: its devices (`addresses`), and the reserved regions of `device`,
  /// its first (the functions of a group share a platform).
  private static func groupNode(_ rest: [String], addresses: [PCIAddress], device: SimulatedPCIDevice) -> Node? {
    switch rest {
    case []: return .directory(["devices", "reserved_regions", "type"])
    case ["devices"]: return .directory(addresses.map(\.description))
    case let parts where parts.count == 2 && parts[0] == "devices":
      guard let address = addresses.first(where: { $0.description == parts[1] }) else { return nil }
      return .link("../../../../devices/pci0000:00/\(address)")
    case ["type"]: return .file(Array("DMA\n".utf8))
    case ["reserved_regions"]:
      let lines = device.reservedRegions.map { region in
        "0x" + padded(region.start) + " 0x" + padded(region.last) + " msi\n"
      }
      return .file(Array(lines.joined().utf8))
    default: return nil
    }
  }

  /// `resource`: start, end and flags of the 6 BARs, the ROM and the 6 SR-IOV BARs, as the
  /// kernel prints them, from the machine's BAR layout.
  private static func resourceText(number: Int, device: SimulatedPCIDevice) -> String {
    let layout = SimulatedBARLayout(device: device, number: number)
    return (0..<13).map { index in
      guard index < 6, let start = layout.starts[index], let bar = device.bars[index] else {
        return "0x" + padded(0) + " 0x" + padded(0) + " 0x" + padded(0) + "\n"
      }
      return "0x" + padded(start) + " 0x" + padded(start + bar.size - 1) + " 0x" + padded(layout.resourceFlags(index)) + "\n"
    }.joined()
  }

  private static func padded(_ value: UInt64) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: max(0, 16 - text.count)) + text
  }
}
