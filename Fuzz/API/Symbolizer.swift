import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Turns the raw frames of a child's Swift backtrace into source locations, in the parent.
///
/// The children's backtracer only unwinds (symbolicating there would cost a tenth of a
/// second per trap); the parent asks `llvm-symbolizer` about the frames in the fuzzer's own
/// image, with inlining (a runtime failure is an inlined frame), once per address, and names
/// functions with `swift-demangle`.
final class Symbolizer {
  /// What one address is: the first frame of its inline chain in the package's sources.
  struct Frame {
    /// `Sources/.../File.swift:line:column`, or `Fuzz/...` when none is in `Sources/`.
    var location: String
    /// The function at that location, demangled.
    var function: String
    /// The runtime failure inlined at the address (`Swift runtime failure: ...`), if any.
    var failure: String?
  }

  private var cache: [UInt64: Frame?] = [:]
  private let scratch: String

  /// A symbolizer writing its requests in `scratch` (a directory).
  init(scratch: String) {
    self.scratch = scratch
  }

  /// The first frame of `lines` (a backtrace made with `symbolicate=off` and
  /// `images=mentioned`) that lies in the package's `Sources/` (else in `Fuzz/`), and the
  /// runtime failure found on the way.
  func locate(_ lines: [String]) -> Frame? {
    guard let image = lines.lazy.compactMap(Self.image).first(where: { $0.path.hasSuffix("/iommufd-api-fuzz") }) else { return nil }
    var addresses: [UInt64] = []
    for line in lines {
      guard let (address, isReturn) = Self.frameAddress(line), address >= image.start, address < image.end else { continue }
      addresses.append((address &- image.start) &- (isReturn ? 1 : 0))
    }
    var failure: String?
    var fallback: Frame?
    for (index, address) in addresses.enumerated() {
      // Symbolize on demand, a few frames at a time: a repeated trap is found in the cache.
      if cache[address] == nil { resolve(Array(addresses[index...].filter { cache[$0] == nil }.prefix(8)), in: image.path) }
      guard let frame = cache[address] ?? nil else { continue }
      if failure == nil { failure = frame.failure }
      if frame.location.hasPrefix("Sources/") {
        var found = frame
        found.failure = failure
        return found
      }
      if fallback == nil { fallback = frame }
    }
    fallback?.failure = failure
    return fallback
  }

  /// Symbolizes `addresses` of the image at `path` into the cache.
  private func resolve(_ addresses: [UInt64], in path: String) {
    let request = addresses.map { "0x" + String($0, radix: 16) }.joined(separator: "\n") + "\n"
    guard let output = run(["llvm-symbolizer", "--obj=" + path, "--inlining", "--functions=linkage"], input: request) else {
      for address in addresses { cache[address] = .some(nil) }
      return
    }
    // One block per address: function and location lines, innermost inlined frame first.
    let blocks = output.components(separatedBy: "\n\n").map { $0.split(separator: "\n").map(String.init) }
    var mangled: [String] = []
    var results: [(UInt64, Frame?)] = []
    for (index, address) in addresses.enumerated() {
      let block = index < blocks.count ? blocks[index] : []
      var failure: String?
      var chosen: Frame?
      var fuzzer: Frame?
      var pair = 0
      while pair + 1 < block.count {
        let function = block[pair]
        let location = block[pair + 1]
        pair += 2
        if function.hasPrefix("Swift runtime failure") && failure == nil { failure = function }
        guard let root = location.range(of: "/Sources/") ?? location.range(of: "/Fuzz/") else { continue }
        let relative = String(location[location.index(after: root.lowerBound)...])
        guard let colon = relative.range(of: ".swift:"), relative[colon.upperBound...].first.map({ $0 != "0" }) == true else { continue }
        let frame = Frame(location: relative, function: function, failure: nil)
        if relative.hasPrefix("Sources/") {
          chosen = frame
          break
        }
        if fuzzer == nil { fuzzer = frame }
      }
      var frame = chosen ?? fuzzer
      frame?.failure = failure
      if let name = frame?.function { mangled.append(name) }
      results.append((address, frame))
    }
    let demangled = demangle(mangled)
    for (address, frame) in results {
      var named = frame
      if let name = frame?.function, let plain = demangled[name] { named?.function = plain }
      cache[address] = .some(named)
    }
  }

  /// Demangled names of `names` (unchanged where `swift-demangle` cannot help).
  func demangle(_ names: [String]) -> [String: String] {
    guard !names.isEmpty, let output = run(["swift-demangle", "--simplified", "--compact"], input: names.joined(separator: "\n") + "\n")
    else { return [:] }
    let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    var table: [String: String] = [:]
    for (index, name) in names.enumerated() where index < lines.count && !lines[index].isEmpty { table[name] = lines[index] }
    return table
  }

  /// Runs `arguments` (found on `PATH`, or in the Swift toolchain) with `input` as standard
  /// input; its standard output, or `nil` if it cannot be run or fails.
  private func run(_ arguments: [String], input: String) -> String? {
    let inputPath = scratch + "/symbolizer.in"
    let outputPath = scratch + "/symbolizer.out"
    guard writeFile(inputPath, input) else { return nil }
    defer {
      unlink(inputPath)
      unlink(outputPath)
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, inputPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let path = (getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin") + ":/opt/swift/usr/bin"
    let environment = ["PATH=" + path]
    var argv = arguments.map { strdup($0) } + [nil]
    var envp = environment.map { strdup($0) } + [nil]
    defer {
      for pointer in argv { free(pointer) }
      for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    var result: Int32 = ENOENT
    for directory in path.split(separator: ":") where result != 0 {
      result = posix_spawn(&pid, "\(directory)/\(arguments[0])", &actions, nil, &argv, &envp)
    }
    guard result == 0 else { return nil }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    guard status == 0 else { return nil }
    return readFile(outputPath)
  }

  /// The fuzzer's image in an `Images` line: `0xstart–0xend build-id name path`.
  static func image(_ line: String) -> (start: UInt64, end: UInt64, path: String)? {
    let fields = line.split(separator: " ", omittingEmptySubsequences: true)
    guard fields.count >= 4, fields[0].hasPrefix("0x"), let dash = fields[0].firstIndex(of: "–") else { return nil }
    guard let start = UInt64(fields[0][fields[0].index(fields[0].startIndex, offsetBy: 2)..<dash], radix: 16) else { return nil }
    let endText = fields[0][fields[0].index(after: dash)...].dropFirst(2)
    guard let end = UInt64(endText, radix: 16), let path = fields.last, path.hasPrefix("/") else { return nil }
    return (start, end, String(path))
  }

  /// The address of a raw frame line (`N [ra] 0x...`) and whether it is a return address.
  static func frameAddress(_ line: String) -> (UInt64, Bool)? {
    let fields = line.split(separator: " ", omittingEmptySubsequences: true)
    guard fields.count >= 2, Int(fields[0]) != nil, let field = fields.dropFirst().first(where: { $0.hasPrefix("0x") }) else { return nil }
    guard let address = UInt64(field.dropFirst(2), radix: 16) else { return nil }
    return (address, fields.contains("[ra]"))
  }
}

/// Writes `text` to the file `path`; false on failure.
func writeFile(_ path: String, _ text: String) -> Bool {
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
  guard fd >= 0 else { return false }
  defer { close(fd) }
  let bytes = Array(text.utf8)
  return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
}
