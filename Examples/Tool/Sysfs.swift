import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The few host files the tool reads itself, with plain system calls.
enum HostFiles {
  /// The bytes of the file at `path` (at most `limit`), or nil when it cannot be read.
  static func bytes(_ path: FilePath, limit: Int = 1 << 16) -> [UInt8]? {
    guard let fd = try? FileDescriptor.open(path, .readOnly, options: .closeOnExec) else { return nil }
    defer { try? fd.close() }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while result.count < limit {
      guard let count = try? chunk.withUnsafeMutableBytes({ try fd.read(into: $0) }) else { return nil }
      if count == 0 { break }
      result += chunk[0..<min(count, limit - result.count)]
    }
    return result
  }

  /// The file's text without its trailing newline, or nil.
  static func text(_ path: FilePath) -> String? {
    bytes(path).map { String(decoding: $0, as: UTF8.self) }.map { $0.hasSuffix("\n") ? String($0.dropLast()) : $0 }
  }

  /// Whether something exists at `path`.
  static func exists(_ path: FilePath) -> Bool { access(path.string, F_OK) == 0 }

  /// The names in directory `path`, sorted; empty when it cannot be read.
  static func names(in path: FilePath) -> [String] {
    guard let directory = opendir(path.string) else { return [] }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
  }
}
