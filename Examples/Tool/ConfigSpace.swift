/// A PCI function's configuration space as read (64, 256 or 4096 bytes), with its
/// capability lists decoded as `lspci -vv` decodes them. Every read is bounds-checked: a
/// short or corrupt space yields fewer facts, never a trap.
struct ConfigSpace {
  let bytes: [UInt8]

  func u8(_ offset: Int) -> UInt8? { offset >= 0 && offset < bytes.count ? bytes[offset] : nil }
  func u16(_ offset: Int) -> UInt16? {
    guard let low = u8(offset), let high = u8(offset + 1) else { return nil }
    return UInt16(low) | UInt16(high) << 8
  }
  func u32(_ offset: Int) -> UInt32? {
    guard let low = u16(offset), let high = u16(offset + 2) else { return nil }
    return UInt32(low) | UInt32(high) << 16
  }

  var vendorID: UInt16? { u16(0) }
  var deviceID: UInt16? { u16(2) }
  /// Class, subclass and programming interface.
  var classCode: UInt32? { u32(8).map { $0 >> 8 } }

  /// One entry of a capability list.
  struct Capability {
    var id: UInt16
    var offset: Int
    var name: String
    /// What the capability says, as JSON members and as text.
    var facts: [(String, JSON)] = []
    var text: [String] = []

    var json: JSON { .object([("id", .hex(id)), ("offset", .hex(offset)), ("name", .string(name))] + facts) }
  }

  /// The standard list (from 0x34), or nil when the space is too short to hold it.
  var capabilities: [Capability]? {
    guard bytes.count >= 64, let status = u16(6) else { return nil }
    guard status & 0x10 != 0, var offset = u8(0x34).map({ Int($0 & 0xfc) }) else { return [] }
    var found: [Capability] = []
    var seen: Set<Int> = []
    while offset >= 0x40, let id = u8(offset), seen.insert(offset).inserted, found.count < 48 {
      found.append(decode(UInt16(id), at: offset))
      offset = Int((u8(offset + 1) ?? 0) & 0xfc)
    }
    return found
  }

  /// The extended list (from 0x100), or nil when the space read is not the full 4 KiB.
  var extendedCapabilities: [Capability]? {
    guard bytes.count >= 4096 else { return nil }
    var found: [Capability] = []
    var offset = 0x100
    var seen: Set<Int> = []
    while offset >= 0x100, let header = u32(offset), header != 0, header != .max, seen.insert(offset).inserted, found.count < 512 {
      let id = UInt16(header & 0xffff)
      var capability = Capability(id: id, offset: offset, name: Self.extendedNames[id] ?? "extended capability \(Tool.hex(id))")
      capability.facts = [("version", .number(Int(header >> 16 & 0xf)))]
      found.append(capability)
      offset = Int(header >> 20 & 0xffc)
    }
    return found
  }

  private func decode(_ id: UInt16, at offset: Int) -> Capability {
    var capability = Capability(id: id, offset: offset, name: Self.names[id] ?? "capability \(Tool.hex(id))")
    guard let control = u16(offset + 2) else { return capability }
    switch id {
    case 0x01:  // power management
      let state = u16(offset + 4).map { Int($0 & 3) }
      capability.facts = [("version", .number(Int(control & 7))), ("powerState", .optional(state) { .string("D\($0 == 3 ? "3hot" : String($0))") })]
      capability.text = ["version \(control & 7)"] + (state.map { ["state D\($0 == 3 ? "3hot" : String($0))"] } ?? [])
    case 0x05:  // MSI
      let vectors = 1 << Int(control >> 1 & 7)
      capability.facts = [
        ("enabled", .bool(control & 1 != 0)), ("vectors", .number(vectors)), ("is64Bit", .bool(control & 0x80 != 0)),
        ("perVectorMasking", .bool(control & 0x100 != 0)),
      ]
      capability.text = ["\(control & 1 != 0 ? "enabled" : "disabled")", "\(vectors) vector(s)", control & 0x80 != 0 ? "64-bit" : "32-bit"]
    case 0x10:  // PCI Express
      let type = Int(control >> 4 & 0xf)
      let flr = u32(offset + 4).map { $0 & (1 << 28) != 0 }
      capability.facts = [
        ("version", .number(Int(control & 0xf))), ("portType", .string(Self.portTypes[type] ?? "type \(type)")),
        ("functionLevelReset", .optional(flr, JSON.bool)),
      ]
      capability.text = [Self.portTypes[type] ?? "type \(type)"] + (flr.map { [$0 ? "FLR" : "no FLR"] } ?? [])
    case 0x11:  // MSI-X
      let size = Int(control & 0x7ff) + 1
      let table = u32(offset + 4), pba = u32(offset + 8)
      capability.facts = [
        ("enabled", .bool(control & 0x8000 != 0)), ("functionMasked", .bool(control & 0x4000 != 0)), ("tableSize", .number(size)),
        ("tableBAR", .optional(table) { .number(Int($0 & 7)) }), ("tableOffset", .optional(table) { .hex($0 & ~7) }),
        ("pbaBAR", .optional(pba) { .number(Int($0 & 7)) }), ("pbaOffset", .optional(pba) { .hex($0 & ~7) }),
      ]
      capability.text = ["\(control & 0x8000 != 0 ? "enabled" : "disabled")", "table size \(size)"]
        + (table.map { ["table in BAR \($0 & 7) at \(Tool.hex($0 & ~7))"] } ?? [])
    default:
      break
    }
    return capability
  }

  static let names: [UInt16: String] = [
    0x01: "power management", 0x03: "VPD", 0x04: "slot identification", 0x05: "MSI", 0x07: "PCI-X", 0x08: "HyperTransport",
    0x09: "vendor specific", 0x0a: "debug port", 0x0c: "hot-plug", 0x0d: "bridge subsystem vendor", 0x10: "PCI Express",
    0x11: "MSI-X", 0x12: "SATA", 0x13: "advanced features",
  ]

  static let extendedNames: [UInt16: String] = [
    0x01: "advanced error reporting", 0x02: "virtual channel", 0x03: "device serial number", 0x04: "power budgeting",
    0x0b: "vendor specific", 0x0d: "access control services", 0x0e: "alternative routing-ID", 0x0f: "address translation services",
    0x10: "SR-IOV", 0x13: "page request", 0x15: "resizable BAR", 0x17: "TLP processing hints", 0x18: "latency tolerance reporting",
    0x19: "secondary PCI Express", 0x1b: "PASID", 0x1e: "L1 PM substates", 0x25: "data link feature", 0x26: "physical layer 16 GT/s",
  ]

  static let portTypes: [Int: String] = [
    0: "endpoint", 1: "legacy endpoint", 4: "root port", 5: "upstream port", 6: "downstream port", 7: "PCIe to PCI bridge",
    8: "PCI to PCIe bridge", 9: "root complex integrated endpoint", 10: "root complex event collector",
  ]
}
