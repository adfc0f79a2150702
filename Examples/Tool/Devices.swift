import ArgumentParser
import Iommufd
import IommufdSimulator
import SystemPackage

/// `devices`: one line (or object) per PCI device, then per mediated device.
struct Devices: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List PCI devices, then mediated devices, with IOMMU group, driver, VFIO node and the usable route.")
  @OptionGroup var output: OutputOptions
  @OptionGroup var common: Common

  struct Row {
    var address: String
    var vendorID: UInt16?
    var deviceID: UInt16?
    var classCode: UInt32?
    var driver: String?
    var iommuGroup: Int?
    var cdev: String?
    var route: String
    var reasons: [String]

    var json: JSON {
      .object([
        ("address", .string(address)), ("vendorID", .optional(vendorID, JSON.hex)), ("deviceID", .optional(deviceID, JSON.hex)),
        ("classCode", .optional(classCode, JSON.hex)), ("driver", .optional(driver, JSON.string)),
        ("iommuGroup", .optional(iommuGroup, JSON.number)), ("cdev", .optional(cdev, JSON.string)), ("route", .string(route)),
        ("reasons", .array(reasons.map(JSON.string))),
      ])
    }
  }

  func run() throws {
    var rows: [Row] = []
    for entry in try reportingErrors({ try common.discovery.devices() }) {
      let access = common.discovery.access(for: entry.address)
      rows.append(Row(
        address: entry.address.description, vendorID: entry.vendorID, deviceID: entry.deviceID, classCode: entry.classCode,
        driver: entry.driver, iommuGroup: entry.iommuGroup, cdev: entry.cdevPath?.string, route: routeName(access),
        reasons: access.reasons))
    }
    let discovery = common.discovery
    let mediated = try reportingErrors { try discovery.mediatedDevices() }
    let accesses = mediated.map { discovery.access(for: $0.id) }
    output.emit([
      ("devices", .array(rows.map(\.json))), ("mediatedDevices", .array(zip(mediated, accesses).map { Mdev.report($0, $1) })),
    ]) {
      (rows.map { row in
        let ids = "\(row.vendorID.map { hex4($0) } ?? "????"):\(row.deviceID.map { hex4($0) } ?? "????")"
        let group = row.iommuGroup.map { "group \($0)" } ?? "no group"
        return "\(row.address) [\(ids)] \(row.driver ?? "no driver"), \(group), route: \(row.route)\n    "
          + row.reasons.joined(separator: "; ")
      } + zip(mediated, accesses).map { "mdev " + Mdev.line($0, $1) }).joined(separator: "\n")
    }
  }
}

/// Four hex digits, as lspci prints vendor and device ids (text output only).
func hex4(_ value: UInt16) -> String {
  let digits = String(value, radix: 16)
  return String(repeating: "0", count: 4 - digits.count) + digits
}
