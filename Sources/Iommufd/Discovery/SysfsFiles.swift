import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Reading sysfs and `/dev` with plain system calls, without Foundation: directory
/// listings, existence, small text attributes and link targets.
enum SysfsFiles {
  /// The names in the directory at `path`, without `.` and `..`, in no particular order;
  /// `nil` where it cannot be listed.
  static func entries(of path: FilePath) -> [String]? {
    guard let directory = opendir(path.string) else { return nil }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
      let name = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
        tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) { String(cString: $0) }
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  /// Whether something exists at `path` (following links).
  static func exists(_ path: FilePath) -> Bool { access(path.string, F_OK) == 0 }

  /// The text of the file at `path` (at most 1 MiB: sysfs attributes are a page);
  /// `nil` where it cannot be read.
  static func text(of path: FilePath) -> String? {
    let fd = open(path.string, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 1 << 20 {
      let count = read(fd, &chunk, chunk.count)
      if count < 0 && errno == EINTR { continue }
      guard count >= 0 else { return nil }
      if count == 0 { break }
      bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// Where the symbolic link at `path` points; `nil` where it is no link.
  static func linkTarget(_ path: FilePath) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink(path.string, &buffer, buffer.count - 1)
    guard count >= 0 else { return nil }
    return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

extension StringProtocol {
  /// The text without leading and trailing ASCII white space and newlines.
  var trimmingWhitespace: SubSequence {
    func isSpace(_ character: Character) -> Bool { character == " " || character == "\t" || character == "\n" || character == "\r" }
    guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
    let last = lastIndex(where: { !isSpace($0) })!
    return self[first...last]
  }
}
