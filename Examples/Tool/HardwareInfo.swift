import ArgumentParser
import Iommufd

/// `hw-info`: IOMMU_GET_HW_INFO for a device.
struct HardwareInfo: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "hw-info", abstract: "The IOMMU behind a device (IOMMU_GET_HW_INFO; needs the iommufd route).")
  @OptionGroup var output: OutputOptions
  @OptionGroup var common: Common
  @Argument(help: "PCI address, e.g. 0000:00:02.0", transform: pciAddress) var address: PCIAddress

  func validate() throws { try common.validate(address) }

  func run() throws {
    let session = try common.openSession(address, prefer: .iommufd)
    guard let iommufd = session.iommufd, let id = session.deviceID else {
      throw ToolFailure(description: "IOMMU_GET_HW_INFO needs iommufd; \(address) is reached through the legacy group")
    }
    let info = try reportingErrors { try iommufd.hardwareInfo(device: id) }
    let registers = info.vtdRegisters
    output.emit([
      ("device", .string(address.description)),
      ("type", .string(info.kind.description)),
      ("capabilities", .hex(info.capabilities.rawValue)),
      ("maxPASIDLog2", .number(Int(info.maxPASIDLog2))),
      ("data", .array(info.data.map { .number(Int($0)) })),
      ("vtd", .optional(registers) { .object([("cap", .hex($0.capability)), ("ecap", .hex($0.extendedCapability))]) }),
    ]) {
      var lines = [
        "type: \(info.kind)", "capabilities: \(Tool.hex(info.capabilities.rawValue))", "max PASID log2: \(info.maxPASIDLog2)",
        "data: " + info.data.map { Tool.hex($0) }.joined(separator: " "),
      ]
      if let registers { lines.append("VT-d cap \(Tool.hex(registers.capability)) ecap \(Tool.hex(registers.extendedCapability))") }
      return lines.joined(separator: "\n")
    }
  }
}
