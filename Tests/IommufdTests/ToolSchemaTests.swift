import Foundation
import SystemPackage
import Testing

/// The shape a value of the tool's JSON output must have (schema version 1).
indirect enum Shape: Sendable {
  case string
  /// `0x` and lowercase hexadecimal digits: the tool's one hex format.
  case hex
  case int
  case bool
  case nullable(Shape)
  case array(Shape)
  /// Exactly these keys.
  case object([String: Shape])
  /// These keys, and others whose values are scalars (capability facts).
  case objectWithFacts([String: Shape])
  /// Any keys, each value of one shape.
  case map(Shape)
}

/// A parsed JSON value; booleans and numbers kept apart.
enum JSONValue: Decodable, Equatable, Sendable {
  case null, bool(Bool), int(Int), string(String), array([JSONValue]), object([String: JSONValue])

  init(from decoder: Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() { self = .null }
    else if let value = try? container.decode(Bool.self) { self = .bool(value) }
    else if let value = try? container.decode(Int.self) { self = .int(value) }
    else if let value = try? container.decode(String.self) { self = .string(value) }
    else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
    else { self = .object(try container.decode([String: JSONValue].self)) }
  }

  subscript(key: String) -> JSONValue? { if case .object(let members) = self { members[key] } else { nil } }
}

/// Where `text` breaks schema 1 with `shape` as its members: empty when it does not.
func schemaViolations(_ text: String, _ members: [String: Shape]) -> [String] {
  guard text.hasPrefix("{\n  \"schemaVersion\": 1,\n") else { return ["does not start with schemaVersion 1"] }
  if text.contains("\\/") { return ["escapes a slash"] }
  guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else { return ["not JSON"] }
  return violations(value, .object(members.merging(["schemaVersion": .int]) { $1 }), at: "$")
}

func violations(_ value: JSONValue, _ shape: Shape, at path: String) -> [String] {
  switch (shape, value) {
  case (.string, .string), (.int, .int), (.bool, .bool): return []
  case (.hex, .string(let text)):
    let digits = text.dropFirst(2)
    return text.hasPrefix("0x") && !digits.isEmpty && digits.allSatisfy({ "0123456789abcdef".contains($0) })
      && (digits == "0" || !digits.hasPrefix("0")) ? [] : ["\(path): \(text) is not 0x-hex"]
  case (.nullable, .null): return []
  case (.nullable(let inner), _): return violations(value, inner, at: path)
  case (.array(let element), .array(let values)):
    return values.enumerated().flatMap { violations($0.element, element, at: "\(path)[\($0.offset)]") }
  case (.object(let members), .object(let object)), (.objectWithFacts(let members), .object(let object)):
    var found = members.flatMap { key, shape in
      object[key].map { violations($0, shape, at: "\(path).\(key)") } ?? ["\(path).\(key) is missing"]
    }
    for (key, extra) in object where members[key] == nil {
      if case .objectWithFacts = shape {
        if case .array = extra { found.append("\(path).\(key) is not a scalar") }
        if case .object = extra { found.append("\(path).\(key) is not a scalar") }
      } else {
        found.append("\(path).\(key) is not in the schema")
      }
    }
    return found
  case (.map(let element), .object(let object)):
    return object.flatMap { violations($0.value, element, at: "\(path).\($0.key)") }
  default:
    return ["\(path): \(value) is not \(shape)"]
  }
}

/// Schema 1 of `iommufd-tool --json`, by subcommand (the README documents the same).
enum ToolSchema {
  static let range = Shape.object(["start": .hex, "last": .hex])
  static let capability = Shape.objectWithFacts(["id": .hex, "offset": .hex, "name": .string])

  static let devices: [String: Shape] = [
    "devices": .array(.object([
      "address": .string, "vendorID": .nullable(.hex), "deviceID": .nullable(.hex), "classCode": .nullable(.hex),
      "driver": .nullable(.string), "iommuGroup": .nullable(.int), "cdev": .nullable(.string), "route": .string,
      "reasons": .array(.string),
    ])),
    "mediatedDevices": .array(mediatedDevice),
  ]
  static let probe: [String: Shape] = [
    "usable": .bool,
    "iommufd": .object([
      "usable": .bool, "error": .nullable(.string), "hint": .nullable(.string), "freshIOASRanges": .nullable(.array(range)),
      "features": .nullable(.map(.bool)),
    ]),
    "vfioCdevs": .array(.string),
    "legacyContainer": .object(["usable": .bool, "error": .nullable(.string), "hint": .nullable(.string), "type1v2": .nullable(.bool)]),
    "modules": .nullable(.map(.bool)),
  ]
  static let ranges: [String: Shape] = ["device": .string, "ranges": .array(range), "alignment": .hex]
  static let hardwareInfo: [String: Shape] = [
    "device": .string, "type": .string, "capabilities": .hex, "maxPASIDLog2": .int, "data": .array(.int),
    "vtd": .nullable(.object(["cap": .hex, "ecap": .hex])),
  ]
  static let binding: [String: Shape] = ["device": .string, "previousDriver": .nullable(.string), "driver": .nullable(.string)]
  static let mediatedDevice = Shape.object([
    "uuid": .string, "type": .nullable(.string), "parent": .nullable(.string), "driver": .nullable(.string),
    "iommuGroup": .nullable(.int), "cdev": .nullable(.string), "route": .string, "reasons": .array(.string),
  ])
  static let mdevTypes: [String: Shape] = [
    "types": .array(.object([
      "parent": .string, "type": .string, "name": .nullable(.string), "description": .nullable(.string),
      "availableInstances": .nullable(.int), "deviceAPI": .nullable(.string),
    ])),
  ]
  static let mdevList: [String: Shape] = ["devices": .array(mediatedDevice)]
  static let mdevCreate: [String: Shape] = ["device": mediatedDevice]
  static let mdevRemove: [String: Shape] = ["uuid": .string, "removed": .bool]
  static let show: [String: Shape] = [
    "device": .string, "vendorID": .nullable(.hex), "deviceID": .nullable(.hex), "classCode": .nullable(.hex),
    "driver": .nullable(.string), "driverOverride": .nullable(.string),
    "iommuGroup": .nullable(.object(["number": .int, "members": .array(.string)])), "route": .string, "reasons": .array(.string),
    "resetMethods": .nullable(.array(.string)),
    "vfio": .nullable(.object([
      "opened": .bool, "error": .nullable(.string), "resetSupported": .nullable(.bool), "interrupts": .nullable(.map(.int)),
    ])),
    "bars": .array(.object([
      "index": .int, "size": .hex, "kind": .nullable(.string), "is64Bit": .nullable(.bool), "prefetchable": .nullable(.bool),
      "readable": .nullable(.bool), "writable": .nullable(.bool), "mappable": .nullable(.bool),
    ])),
    "configSpaceBytes": .nullable(.int), "capabilities": .nullable(.array(capability)),
    "extendedCapabilities": .nullable(.array(capability)),
  ]
}

/// `iommufd-tool --json` keeps schema 1, `probe` exits 2 when nothing is usable, errors give
/// hints, and `show` decodes capability lists without trapping on a corrupt one.
@Suite("tool JSON contract")
struct ToolSchemaTests {
  static let simulated: [([String], [String: Shape])] = [
    (["devices"], ToolSchema.devices), (["probe"], ToolSchema.probe), (["ranges", "0000:00:02.0"], ToolSchema.ranges),
    (["hw-info", "0000:00:02.0"], ToolSchema.hardwareInfo), (["show", "0000:00:02.0"], ToolSchema.show),
    (["mdev", "types"], ToolSchema.mdevTypes), (["mdev", "list"], ToolSchema.mdevList),
  ]

  @Test("mdev types, list, create and remove on a generated tree laid out as mtty's have schema 1, and create and remove write the kernel's attributes")
  func mediatedDeviceSchema() throws {
    try MediatedDeviceTests.withTree { _, root in
      let types = try runTool(["mdev", "types", "--json", "--sysfs", root])
      #expect(types.status == 0 && schemaViolations(types.output, ToolSchema.mdevTypes) == [], "\(types.error)")
      let value = try JSONDecoder().decode(JSONValue.self, from: Data(types.output.utf8))
      #expect(value["types"] == .array([
        .object(["parent": .string("mtty"), "type": .string("mtty-1"), "name": .string("Single port serial"), "description": .null,
          "availableInstances": .int(22), "deviceAPI": .string("vfio-pci")]),
        .object(["parent": .string("mtty"), "type": .string("mtty-2"), "name": .string("Dual port serial"), "description": .null,
          "availableInstances": .int(11), "deviceAPI": .string("vfio-pci")]),
      ]))
      let list = try runTool(["mdev", "list", "--json", "--sysfs", root])
      #expect(list.status == 0 && schemaViolations(list.output, ToolSchema.mdevList) == [], "\(list.error)")
      let uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
      let created = try runTool(["mdev", "create", "--json", "--sysfs", root, "mtty-2", "--uuid", uuid.uppercased()])
      #expect(created.status == 0 && schemaViolations(created.output, ToolSchema.mdevCreate) == [], "\(created.error)")
      #expect(try String(contentsOfFile: "\(root)/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/create", encoding: .utf8) == uuid)
      let removed = try runTool(["mdev", "remove", "--json", "--sysfs", root, uuid])
      #expect(removed.status == 0 && schemaViolations(removed.output, ToolSchema.mdevRemove) == [], "\(removed.error)")
      #expect(try String(contentsOfFile: "\(root)/devices/virtual/mtty/mtty/\(uuid)/remove", encoding: .utf8) == "1")
      let missing = try runTool(["mdev", "remove", "--sysfs", root, "00000000-0000-0000-0000-000000000000"])
      #expect(missing.status == 1 && missing.error.contains("no mediated device"))
      let bad = try runTool(["mdev", "create", "--sysfs", root, "mtty-2", "--uuid", "nope"])
      #expect(bad.status == 64)
    }
  }

  @Test("every subcommand's --json on the simulated machine has schema 1", arguments: simulated)
  func simulatedSchema(_ arguments: [String], _ schema: [String: Shape]) throws {
    let run = try runTool(arguments + ["--simulated", "--json"])
    #expect(run.status == 0, "\(arguments): \(run.error)")
    #expect(schemaViolations(run.output, schema) == [], "\(arguments)")
  }

  /// A device whose config space has every decoded capability, a loop in each list, and
  /// two BARs in sysfs `resource`.
  static func makeTree(config: [UInt8]?) throws -> FakeSysfs {
    let tree = try ToolSafetyTests.makeTree()
    let directory = tree.root + "/devices/pci0000:00/0000:00:03.0"
    if let config { try Data(config).write(to: URL(fileURLWithPath: directory + "/config")) }
    try ("0x00000000fe000000 0x00000000fe0fffff 0x0000000000040200\n" + "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      + "0x0000000800000000 0x0000000800003fff 0x000000000014220c\n").write(toFile: directory + "/resource", atomically: true, encoding: .utf8)
    try "flr bus\n".write(toFile: directory + "/reset_method", atomically: true, encoding: .utf8)
    return tree
  }

  static var fullConfig: [UInt8] {
    var config = [UInt8](repeating: 0, count: 4096)
    func put16(_ value: UInt16, _ offset: Int) { config[offset] = UInt8(value & 0xff); config[offset + 1] = UInt8(value >> 8) }
    func put32(_ value: UInt32, _ offset: Int) { put16(UInt16(value & 0xffff), offset); put16(UInt16(value >> 16), offset + 2) }
    put16(0x8086, 0); put16(0x10d3, 2); put32(0x0200_0000, 8); put16(0x0010, 6); config[0x34] = 0x40
    config[0x40] = 0x01; config[0x41] = 0x50; put16(0x0003, 0x42); put16(0x0003, 0x44)  // PM v3, D3hot
    config[0x50] = 0x05; config[0x51] = 0x70; put16(0x0087, 0x52)  // MSI: enabled, 8 vectors, 64-bit
    config[0x70] = 0x10; config[0x71] = 0x90; put16(0x0002, 0x72); put32(1 << 28, 0x74)  // PCIe v2 endpoint, FLR
    config[0x90] = 0x11; config[0x91] = 0x40; put16(0x8003, 0x92); put32(0x2002, 0x94); put32(0x3002, 0x98)  // MSI-X, loops to 0x40
    put32(0x1402_0001, 0x100)  // AER v2, next 0x140
    put32(0x1001_001b, 0x140)  // PASID v1, next 0x100: a loop
    return config
  }

  @Test("show decodes the standard and extended capability lists, stopping at a loop; BARs and reset methods from sysfs")
  func showDecodes() throws {
    let tree = try Self.makeTree(config: Self.fullConfig)
    defer { tree.remove() }
    let run = try runTool(["show", "--json", "--sysfs", tree.root, "0000:00:03.0"])
    #expect(run.status == 0, "\(run.error)")
    #expect(schemaViolations(run.output, ToolSchema.show) == [])
    let value = try JSONDecoder().decode(JSONValue.self, from: Data(run.output.utf8))
    #expect(value["vendorID"] == .string("0x8086") && value["classCode"] == .string("0x20000"))
    #expect(value["resetMethods"] == .array([.string("flr"), .string("bus")]))
    #expect(value["configSpaceBytes"] == .int(4096) && value["vfio"] == .null)
    guard case .array(let capabilities)? = value["capabilities"], case .array(let extended)? = value["extendedCapabilities"],
      case .array(let bars)? = value["bars"]
    else { Issue.record("no capability or BAR lists: \(run.output)"); return }
    #expect(capabilities.map { $0["name"] } == ["power management", "MSI", "PCI Express", "MSI-X"].map { .string($0) })
    #expect(capabilities[0]["powerState"] == .string("D3hot"))
    #expect(capabilities[1]["vectors"] == .int(8) && capabilities[1]["enabled"] == .bool(true) && capabilities[1]["is64Bit"] == .bool(true))
    #expect(capabilities[2]["portType"] == .string("endpoint") && capabilities[2]["functionLevelReset"] == .bool(true))
    #expect(capabilities[3]["tableSize"] == .int(4) && capabilities[3]["tableBAR"] == .int(2) && capabilities[3]["tableOffset"] == .string("0x2000"))
    #expect(extended.map { $0["name"] } == [.string("advanced error reporting"), .string("PASID")])
    #expect(extended.map { $0["version"] } == [.int(2), .int(1)])
    #expect(bars.map { $0["index"] } == [.int(0), .int(2)])
    #expect(bars.map { $0["size"] } == [.string("0x100000"), .string("0x4000")])
    #expect(bars[1]["is64Bit"] == .bool(true) && bars[1]["prefetchable"] == .bool(true) && bars[1]["mappable"] == .null)
  }

  @Test("show on a short, missing or random config space: fewer facts (null), never a trap", arguments: [0, 1, 10, 63, 64, 255, 300, 4095])
  func showShortConfig(_ length: Int) throws {
    var generator = SystemRandomNumberGenerator()
    for config in [Array(Self.fullConfig.prefix(length)), (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }] {
      let tree = try Self.makeTree(config: length == 0 ? nil : config)
      defer { tree.remove() }
      let run = try runTool(["show", "--json", "--sysfs", tree.root, "0000:00:03.0"])
      #expect(run.status == 0, "\(run.error)")
      #expect(schemaViolations(run.output, ToolSchema.show) == [])
      let value = try JSONDecoder().decode(JSONValue.self, from: Data(run.output.utf8))
      #expect((value["capabilities"] == .null) == (length < 64))
      #expect(value["extendedCapabilities"] == .null)
    }
  }

  @Test("on a host without /dev/iommu or /dev/vfio/vfio, probe says so with a hint and exits 2, also with --json")
  func probeNothingUsable() throws {
    let tree = try ToolSafetyTests.makeTree()
    defer { tree.remove() }
    let text = try runTool(["probe", "--sysfs", tree.root, "--dev", tree.dev])
    #expect(text.status == 2)
    #expect(text.output.contains("iommufd: not usable: open \(tree.dev)/iommu: \(Errno.noSuchFileOrDirectory)\n"))
    #expect(text.output.contains("hint: \(tree.dev)/iommu does not exist: load the iommufd module (modprobe iommufd), or use a kernel built with CONFIG_IOMMUFD"))
    #expect(text.output.hasSuffix("nothing usable: neither iommufd nor the legacy container\n"))
    let json = try runTool(["probe", "--json", "--sysfs", tree.root, "--dev", tree.dev])
    #expect(json.status == 2)
    #expect(schemaViolations(json.output, ToolSchema.probe) == [])
    let value = try JSONDecoder().decode(JSONValue.self, from: Data(json.output.utf8))
    #expect(value["usable"] == .bool(false) && value["iommufd"]?["usable"] == .bool(false))
    #expect(value["modules"] == .object(["iommufd": .bool(false), "vfio": .bool(false), "vfio_iommu_type1": .bool(false), "vfio_pci": .bool(false)]))
    #expect(try runTool(["probe", "--simulated"]).status == 0)
  }

  @Test("devices, show and bind on a generated host tree have schema 1")
  func hostSchema() throws {
    let tree = try ToolSafetyTests.makeTree()
    defer { tree.remove() }
    let devices = try runTool(["devices", "--json", "--sysfs", tree.root])
    #expect(devices.status == 0 && schemaViolations(devices.output, ToolSchema.devices) == [], "\(devices.error)")
    let show = try runTool(["show", "--json", "--sysfs", tree.root, "0000:00:03.0"])
    #expect(show.status == 0 && schemaViolations(show.output, ToolSchema.show) == [], "\(show.error)")
    let value = try JSONDecoder().decode(JSONValue.self, from: Data(show.output.utf8))
    #expect(value["driverOverride"] == .string("vfio-pci") && value["vendorID"] == .null && value["resetMethods"] == .null)
    let bound = try runTool(["bind", "--json", "--sysfs", tree.root, "0000:00:03.0"])
    #expect(bound.status == 0 && schemaViolations(bound.output, ToolSchema.binding) == [])
  }

  @Test("the schema check fails on a wrong document: bare hex, a padded hex, a missing or extra key, a string for a boolean, schemaVersion not first, an escaped slash")
  func schemaCheckCanFail() {
    let good = "{\n  \"schemaVersion\": 1,\n  \"device\": \"0000:00:03.0\",\n  \"previousDriver\": null,\n  \"driver\": \"vfio-pci\"\n}"
    #expect(schemaViolations(good, ToolSchema.binding) == [])
    let ranges = "{\n  \"schemaVersion\": 1,\n  \"device\": \"d\",\n  \"ranges\": [],\n  \"alignment\": \"%@\"\n}"
    for alignment in ["1000", "0x01000", "0X1000", "0x"] {
      #expect(schemaViolations(ranges.replacingOccurrences(of: "%@", with: alignment), ToolSchema.ranges) != [], "\(alignment)")
    }
    let wrong = [
      good.replacingOccurrences(of: "  \"previousDriver\": null,\n", with: ""),
      good.replacingOccurrences(of: "\"driver\": \"vfio-pci\"", with: "\"driver\": \"vfio-pci\",\n  \"extra\": 1"),
      good.replacingOccurrences(of: "\"previousDriver\": null", with: "\"previousDriver\": true"),
      "{\n  \"device\": \"0000:00:03.0\",\n  \"schemaVersion\": 1,\n  \"previousDriver\": null,\n  \"driver\": null\n}",
      good.replacingOccurrences(of: "vfio-pci", with: "vfio\\/pci"),
    ]
    for document in wrong { #expect(schemaViolations(document, ToolSchema.binding) != [], "\(document)") }
    let probe = "{\n  \"schemaVersion\": 1,\n  \"usable\": \"yes\"}"
    #expect(schemaViolations(probe, ["usable": .bool]) != [])
  }
}
