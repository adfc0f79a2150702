import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Reading sysfs and `/dev` through a backend's seam (the host's files on the kernel, the
/// simulated machine's on a simulated kernel): directory listings, existence, small text
/// attributes and link targets; `nil` (or `false`) where the seam says no.
struct SysfsFiles: Sendable {
  let backend: Backend

  /// Runs `body` on the seam, leaving a trace line with its outcome (like every call).
  private func traced<T>(_ what: String, _ path: FilePath, _ body: (any SystemCalls) throws(Errno) -> T) -> T? {
    do throws(Errno) {
      let value = try body(backend.calls)
      backend.trace("\(what) \(path) -> ok")
      return value
    } catch {
      backend.trace("\(what) \(path) -> \(error)")
      return nil
    }
  }

  /// The names in the directory at `path`, without `.` and `..`, in no particular order.
  func entries(of path: FilePath) -> [String]? { traced("readdir", path) { calls throws(Errno) in try calls.directoryEntries(path) } }

  /// Whether something exists at `path` (following links).
  func exists(_ path: FilePath) -> Bool { accessError(path, mode: F_OK) == nil }

  /// The errno of `access(2)` for `mode`, or nil when allowed.
  func accessError(_ path: FilePath, mode: Int32) -> Errno? {
    do throws(Errno) {
      try backend.calls.checkAccess(path, mode: mode)
      backend.trace("access \(path) -> ok")
      return nil
    } catch {
      backend.trace("access \(path) -> \(error)")
      return error
    }
  }

  /// The text of the file at `path` (at most 1 MiB: sysfs attributes are a page).
  func text(of path: FilePath) -> String? {
    traced("read", path) { calls throws(Errno) in try calls.readFile(path, maximumBytes: 1 << 20) }.map { String(decoding: $0, as: UTF8.self) }
  }

  /// Where the symbolic link at `path` points.
  func linkTarget(_ path: FilePath) -> String? { traced("readlink", path) { calls throws(Errno) in try calls.readLink(path) } }

  /// Writes `text` to the attribute at `path` in one write, leaving a trace line.
  func write(_ text: String, to path: FilePath) throws(Errno) {
    do throws(Errno) {
      try backend.calls.writeFile(path, bytes: Array(text.utf8))
      backend.trace("write \(path) \(text.debugDescription) -> ok")
    } catch {
      backend.trace("write \(path) \(text.debugDescription) -> \(error)")
      throw error
    }
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
