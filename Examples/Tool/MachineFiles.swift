import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The files the tool reads itself (sysfs attributes, device-node directories), through the
/// backend's seam: the host's on the kernel, the simulated machine's with `--simulated`.
struct MachineFiles {
  let calls: any SystemCalls

  /// The bytes of the file at `path` (at most `limit`), or nil when it cannot be read.
  func bytes(_ path: FilePath, limit: Int = 1 << 16) -> [UInt8]? { try? calls.readFile(path, maximumBytes: limit) }

  /// The file's text without its trailing newline, or nil.
  func text(_ path: FilePath) -> String? {
    bytes(path).map { String(decoding: $0, as: UTF8.self) }.map { $0.hasSuffix("\n") ? String($0.dropLast()) : $0 }
  }

  /// Whether something exists at `path`.
  func exists(_ path: FilePath) -> Bool { (try? calls.checkAccess(path, mode: F_OK)) != nil }

  /// The names in directory `path`, sorted; empty when it cannot be read.
  func names(in path: FilePath) -> [String] { ((try? calls.directoryEntries(path)) ?? []).sorted() }
}
