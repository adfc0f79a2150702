import ArgumentParser
import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `--json`, and printing a result either way.
struct OutputOptions: ParsableArguments {
  @Flag(help: "Print the result as JSON (schema version \(Tool.schemaVersion), see the README) instead of text.")
  var json = false

  /// Prints `members` as a JSON object after `schemaVersion`, or `text()`.
  func emit(_ members: [(String, JSON)], text: () -> String) {
    if json {
      print(JSON.object([("schemaVersion", .number(Tool.schemaVersion))] + members).rendered())
    } else {
      print(text())
    }
  }
}

/// A failure the tool reports: printed once as `Error: <message>`, exit status 1.
struct ToolFailure: Error, CustomStringConvertible {
  /// What went wrong, and what to do about it when the tool knows.
  var description: String

  init(description: String) { self.description = description }

  /// The library's error, said once: what failed and why, with a hint where the cause is
  /// a missing module or a missing permission.
  init(_ error: IommufdError) {
    var text: String
    if let detail = error.detail {
      text = "\(detail) (\(error.operation.rawValue): \(error.errno))"
    } else {
      let objects = error.objects.isEmpty ? "" : " " + error.objects.map(\.description).joined(separator: " ")
      text = "\(error.operation.rawValue)\(objects): \(error.errno)"
    }
    if let hint = Self.hint(for: error) { text += "\nhint: " + hint }
    description = text
  }

  /// What to do about `error`, when the cause is clear from it.
  static func hint(for error: IommufdError) -> String? {
    let path = error.objects.first { $0.role == "path" }?.value
    if error.operation == .open, error.errno == .noSuchFileOrDirectory, let path, path.hasSuffix("/iommu") {
      return "\(path) does not exist: load the iommufd module (modprobe iommufd), or use a kernel built with CONFIG_IOMMUFD"
    }
    if error.errno == .permissionDenied || error.errno == .notPermitted {
      let subject = path.map { "open \($0)" } ?? "do this"
      return getuid() == 0
        ? "root may not \(subject) either: check the node's mode and security policy"
        : "you are not root: run as root, or grant this user read-write access (to \(path ?? "the device nodes"))"
    }
    return nil
  }
}

/// Runs `body`, turning the library's error into the tool's one-line report.
func reportingErrors<R>(_ body: () throws -> R) throws -> R {
  do {
    return try body()
  } catch let error as IommufdError {
    throw ToolFailure(error)
  }
}

/// Parses a PCI address argument, or fails with a usage error.
func pciAddress(_ text: String) throws -> PCIAddress {
  guard let address = PCIAddress(text) else {
    throw ValidationError("not a PCI address: \(text.debugDescription) (expected DDDD:BB:DD.F or BB:DD.F, hexadecimal)")
  }
  return address
}
