import ArgumentParser
import Iommufd
import IommufdSimulator
import SystemPackage

/// `probe`: what the host offers, each fact a boolean, and why not.
struct Probe: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Report what this host offers: iommufd and its features by probe, VFIO cdevs, the legacy container, and why not.",
    discussion: "Exits with status 2 when neither iommufd nor the legacy container is usable.")
  @OptionGroup var output: OutputOptions
  @OptionGroup var common: Common

  /// What opening one node found: usable, or the error and a hint.
  struct Finding {
    var usable = false
    var error: String?
    var hint: String?

    init() {}

    init(_ error: IommufdError) {
      let path = error.objects.first { $0.role == "path" }.map { " " + $0.value } ?? ""
      self.error = "\(error.operation.rawValue)\(path): \(error.errno)"
      hint = ToolFailure.hint(for: error)
    }

    var members: [(String, JSON)] {
      [("usable", .bool(usable)), ("error", .optional(error, JSON.string)), ("hint", .optional(hint, JSON.string))]
    }

    var text: String { usable ? "usable" : "not usable: \(error ?? "unknown")" + (hint.map { "\n  hint: \($0)" } ?? "") }
  }

  func run() throws {
    let backend = common.backend
    let iommuPath = FilePath(common.dev).appending("iommu")
    var iommufd = Finding()
    var ranges: [IOVARange]?
    var features: [(String, Bool)]?
    do throws(IommufdError) {
      let context = try IOMMUFD.open(iommuPath, backend: backend)
      iommufd.usable = true
      ranges = try context.allocateIOAS().iovaRanges().ranges
      var found: [(String, Bool)] = []
      for feature in IOMMUFeature.allCases { found.append((feature.description, try context.supports(feature))) }
      features = found
    } catch {
      iommufd = Finding(error)
    }

    var cdevs: [String] = []
    var legacy = Finding()
    var type1v2: Bool?
    var modules: [(String, Bool)]?
    let directory = FilePath(common.dev).appending("vfio/devices")
    cdevs = common.files.names(in: directory).map { directory.appending($0).string }
    do throws(IommufdError) {
      let container = try VFIOContainer.open(FilePath(common.dev).appending("vfio/vfio"), backend: backend)
      legacy.usable = true
      type1v2 = try container.supports(extension: 3)
    } catch {
      legacy = Finding(error)
    }
    modules = ["iommufd", "vfio", "vfio_iommu_type1", "vfio_pci"].map {
      ($0, common.files.exists(FilePath(common.sysfs).appending("module/\($0)")))
    }

    let usable = iommufd.usable || legacy.usable
    output.emit([
      ("usable", .bool(usable)),
      ("iommufd", .object(iommufd.members + [
        ("freshIOASRanges", .optional(ranges) { .array($0.map { .object([("start", .hex($0.start)), ("last", .hex($0.last))]) }) }),
        ("features", .optional(features) { .object($0.map { ($0.0, .bool($0.1)) }) }),
      ])),
      ("vfioCdevs", .array(cdevs.map(JSON.string))),
      ("legacyContainer", .object(legacy.members + [("type1v2", .optional(type1v2, JSON.bool))])),
      ("modules", .optional(modules) { .object($0.map { ($0.0, .bool($0.1)) }) }),
    ]) {
      var lines = ["iommufd: \(iommufd.text)"]
      if let ranges { lines.append("  a fresh IOAS: \(ranges.map(\.description).joined(separator: ", "))") }
      for (name, has) in features ?? [] { lines.append("  \(name): \(has ? "yes" : "no (ENOTTY)")") }
      lines.append("VFIO cdevs: \(cdevs.isEmpty ? "none" : cdevs.joined(separator: ", "))")
      lines.append("legacy container: \(legacy.text)" + (type1v2.map { $0 ? ", type1v2" : ", no type1v2" } ?? ""))
      if let modules {
        lines.append("modules: " + modules.map { "\($0.0) \($0.1 ? "loaded" : "absent")" }.joined(separator: ", "))
      }
      if !usable { lines.append("nothing usable: neither iommufd nor the legacy container") }
      return lines.joined(separator: "\n")
    }
    if !usable { throw ExitCode(Tool.nothingUsable) }
  }
}
