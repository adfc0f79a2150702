import ArgumentParser
import Iommufd
import IommufdSimulator
import SystemPackage

/// `show`: one device as `lspci -vv -k` shows it, plus what a VFIO user needs to know.
struct Show: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "One device as lspci -vv -k shows it, for a VFIO user: ids, BARs, capabilities, reset methods, IOMMU group, driver and override, the route and its reasons.",
    discussion: """
      On a host, reads sysfs only (a non-root user sees the first 64 bytes of config space, so no capabilities). \
      --open also opens the device through VFIO for region flags, interrupt counts and the full config space; \
      vfio-pci resets a function it opens. The simulated device is always opened.
      """)
  @OptionGroup var output: OutputOptions
  @OptionGroup var common: Common
  @Flag(help: "Also open the device through VFIO (region flags, interrupt counts, full config space).")
  var open = false
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func validate() throws { try common.validate(address) }

  /// One BAR: from sysfs `resource` and, when opened, from VFIO's region info.
  struct BAR {
    var index: Int
    var size: UInt64
    var isIO: Bool?
    var is64Bit: Bool?
    var prefetchable: Bool?
    var region: VFIORegionInfo?

    var json: JSON {
      .object([
        ("index", .number(index)), ("size", .hex(size)),
        ("kind", .optional(isIO) { .string($0 ? "io" : "memory") }), ("is64Bit", .optional(is64Bit, JSON.bool)),
        ("prefetchable", .optional(prefetchable, JSON.bool)),
        ("readable", .optional(region) { .bool($0.flags.contains(.readable)) }),
        ("writable", .optional(region) { .bool($0.flags.contains(.writable)) }),
        ("mappable", .optional(region) { .bool($0.flags.contains(.mappable)) }),
      ])
    }

    var text: String {
      var facts = [isIO.map { $0 ? "I/O" : "memory" }, is64Bit.map { $0 ? "64-bit" : "32-bit" }, prefetchable.map { $0 ? "prefetchable" : "non-prefetchable" }]
        .compactMap { $0 }
      facts.append("size \(Tool.hex(size))")
      if let region { facts.append(region.flags.contains(.mappable) ? "mmap" : "no mmap") }
      return "BAR \(index): " + facts.joined(separator: ", ")
    }
  }

  /// What opening through VFIO found.
  struct Opened {
    var error: String?
    var resetSupported: Bool?
    var interrupts: [(String, Int)]?
  }

  func run() throws {
    var config: [UInt8]?
    var bars: [BAR] = []
    var driver: String?
    var override: String?
    var resetMethods: [String]?
    var group: (number: Int, members: [String])?
    var route: String
    var reasons: [String]
    var opened: Opened?

    let discovery = common.discovery
    let files = common.files
    let entry = try reportingErrors { try discovery.device(at: address) }
    let directory = FilePath(common.sysfs).appending("bus/pci/devices/\(address)")
    config = files.bytes(directory.appending("config"), limit: 4096)
    bars = Self.sysfsBARs(files.text(directory.appending("resource")))
    driver = entry.driver
    override = files.text(directory.appending("driver_override")).flatMap { $0 == "(null)" || $0.isEmpty ? nil : $0 }
    resetMethods = files.text(directory.appending("reset_method")).map { $0.split(separator: " ").map(String.init) }
    if let number = entry.iommuGroup, let info = try? discovery.group(number) {
      group = (number, info.devices.map(\.description))
    }
    let access = discovery.access(for: address)
    (route, reasons) = (routeName(access), access.reasons)

    if common.simulated || open {
      var found = Opened()
      do {
        let session = try common.openSession(address, prefer: nil)
        try reportingErrors {
          let device = session.device
          let info = try device.info()
          found.resetSupported = info.flags.contains(.reset)
          var counts: [(String, Int)] = []
          for (name, index) in [("intx", VFIOPCIInterrupt.intx), ("msi", VFIOPCIInterrupt.msi), ("msix", VFIOPCIInterrupt.msix)]
          where index < info.irqCount {
            counts.append((name, try device.irqInfo(index).count))
          }
          found.interrupts = counts
          let configRegion = try device.regionInfo(VFIOPCIRegion.config)
          var bytes = [UInt8](repeating: 0, count: Int(min(configRegion.size, 4096)))
          let count = try bytes.withUnsafeMutableBytes { (buffer) throws(IommufdError) -> Int in
            try device.read(region: configRegion, at: 0, into: buffer)
          }
          config = Array(bytes.prefix(count))
          let configSpace = ConfigSpace(bytes: config ?? [])
          for index in 0..<min(6, info.regionCount) {
            let region = try device.regionInfo(VFIOPCIRegion.bar(index))
            guard region.size > 0 else { continue }
            if let position = bars.firstIndex(where: { $0.index == index }) {
              bars[position].region = region
            } else {
              let low = configSpace.u32(0x10 + 4 * index)
              bars.append(BAR(
                index: index, size: region.size, isIO: low.map { $0 & 1 != 0 }, is64Bit: low.map { $0 & 1 == 0 && $0 & 6 == 4 },
                prefetchable: low.map { $0 & 1 == 0 && $0 & 8 != 0 }, region: region))
            }
          }
        }
      } catch let failure as ToolFailure {
        found.error = failure.description
      }
      opened = found
    }

    let space = config.map(ConfigSpace.init)
    let capabilities = space?.capabilities
    let extended = space?.extendedCapabilities
    output.emit([
      ("device", .string(address.description)),
      ("vendorID", .optional(space?.vendorID, JSON.hex)), ("deviceID", .optional(space?.deviceID, JSON.hex)),
      ("classCode", .optional(space?.classCode, JSON.hex)),
      ("driver", .optional(driver, JSON.string)), ("driverOverride", .optional(override, JSON.string)),
      ("iommuGroup", .optional(group) { .object([("number", .number($0.number)), ("members", .array($0.members.map(JSON.string)))]) }),
      ("route", .string(route)), ("reasons", .array(reasons.map(JSON.string))),
      ("resetMethods", .optional(resetMethods) { .array($0.map(JSON.string)) }),
      ("vfio", .optional(opened) { opened in
        .object([
          ("opened", .bool(opened.error == nil)), ("error", .optional(opened.error, JSON.string)),
          ("resetSupported", .optional(opened.resetSupported, JSON.bool)),
          ("interrupts", .optional(opened.interrupts) { .object($0.map { ($0.0, .number($0.1)) }) }),
        ])
      }),
      ("bars", .array(bars.map(\.json))),
      ("configSpaceBytes", .optional(config?.count, JSON.number)),
      ("capabilities", .optional(capabilities) { .array($0.map(\.json)) }),
      ("extendedCapabilities", .optional(extended) { .array($0.map(\.json)) }),
    ]) {
      var lines: [String] = []
      let ids = "\(space?.vendorID.map(hex4) ?? "????"):\(space?.deviceID.map(hex4) ?? "????")"
      lines.append("\(address) [\(ids)]" + (space?.classCode.map { " class \(Tool.hex($0))" } ?? ""))
      lines.append("  driver: \(driver ?? "none")" + (override.map { " (override \($0))" } ?? ""))
      lines.append("  IOMMU group: " + (group.map { "\($0.number): \($0.members.joined(separator: " "))" } ?? "none"))
      lines.append("  route: \(route): \(reasons.joined(separator: "; "))")
      lines.append("  reset methods: " + (resetMethods.map { $0.isEmpty ? "none" : $0.joined(separator: " ") } ?? "none listed (the kernel shows reset_method only for a function that has a reset method)"))
      if let opened {
        if let error = opened.error {
          lines.append("  VFIO: not opened: \(error)")
        } else {
          let interrupts = (opened.interrupts ?? []).map { "\($0.0) \($0.1)" }.joined(separator: ", ")
          lines.append("  VFIO: reset \(opened.resetSupported == true ? "supported" : "not supported"); interrupts: \(interrupts)")
        }
      }
      lines += bars.map { "  " + $0.text }
      if let capabilities {
        lines.append("  capabilities (\(config?.count ?? 0) bytes of config space read):")
        lines += capabilities.map { "    [\(Tool.hex($0.offset))] \($0.name)" + ($0.text.isEmpty ? "" : ": " + $0.text.joined(separator: ", ")) }
      } else {
        lines.append("  capabilities: not readable (\(config?.count ?? 0) bytes of config space; run as root or use --open)")
      }
      if let extended {
        lines.append("  extended capabilities:")
        lines += extended.map { "    [\(Tool.hex($0.offset))] \($0.name)" }
      }
      return lines.joined(separator: "\n")
    }
  }

  /// BARs 0-5 from sysfs `resource` ("start end flags" per line, hexadecimal).
  static func sysfsBARs(_ text: String?) -> [BAR] {
    guard let text else { return [] }
    var bars: [BAR] = []
    for (index, line) in text.split(separator: "\n").prefix(6).enumerated() {
      let fields = line.split(separator: " ").map { UInt64($0.hasPrefix("0x") ? $0.dropFirst(2) : $0, radix: 16) }
      guard fields.count >= 3, let start = fields[0], let end = fields[1], let flags = fields[2], end > start else { continue }
      bars.append(BAR(
        index: index, size: end - start + 1, isIO: flags & 0x100 != 0, is64Bit: flags & 0x10_0000 != 0,
        prefetchable: flags & 0x2000 != 0))
    }
    return bars
  }
}
