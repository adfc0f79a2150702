import ArgumentParser
import Iommufd

/// `ranges`: the IOVAs a device can use once attached.
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
    let session = try common.openSession(address, prefer: route.preference())
    let ranges = try reportingErrors { try session.iovaRanges() }
    output.emit([
      ("device", .string(address.description)),
      ("ranges", .array(ranges.ranges.map { .object([("start", .hex($0.start)), ("last", .hex($0.last))]) })),
      ("alignment", .hex(ranges.alignment)),
    ]) {
      ranges.ranges.map(\.description).joined(separator: "\n") + "\nalignment \(Tool.hex(ranges.alignment))"
    }
  }
}
