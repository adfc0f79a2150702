import Foundation
import Iommufd

#if canImport(Glibc)
import Glibc
#endif

/// The parent side of a run: forks a child per batch of sequences, reports each child that
/// dies (the call it was making, from shared memory; where it trapped, from its backtrace)
/// and goes on after the sequence that trapped; then prints the coverage and the verdict.
final class Campaign {
  let options: Options
  let entryPoints: [EntryPoint]
  let shared: SharedState
  let arena: Arena
  let sysfs = FakeSysfs(owner: getpid())
  /// Where each child's standard error goes, to read its crash report.
  let errorPath = scratchDirectory + "/iommufd-api-fuzz.\(getpid()).stderr"
  /// Source locations for the children's raw backtraces.
  let symbolizer = Symbolizer(scratch: scratchDirectory)

  /// A distinct trap: where and why, how often, and its first occurrence.
  struct Trap {
    var location: String
    var message: String
    var count: Int
    var first: String
  }

  /// The entry points not chosen.
  private let excluded: [String]
  private var traps: [String: Trap] = [:]
  private var trapOrder: [String] = []
  private var trapCount = 0
  private var sequencesRun = 0

  /// A run of `options` over `entryPoints`, with the shared memory and arena the children use.
  init(options: Options, entryPoints: [EntryPoint], shared: SharedState, arena: Arena) {
    self.options = options
    self.excluded = options.excluded
    self.entryPoints = entryPoints
    self.shared = shared
    self.arena = arena
  }

  /// The name of entry point `index`, if there is one.
  func entryName(_ index: Int) -> String? { index >= 0 && index < entryPoints.count ? entryPoints[index].name : nil }

  /// The exclusions in force, as `--exclude` takes them.
  var replayExclusion: String { "'" + excluded.joined(separator: ",") + "'" }

  /// Whether entry point `name` is excluded by `pattern` (a name, or a prefix ending in `*`).
  static func matches(_ name: String, _ pattern: String) -> Bool {
    pattern.hasSuffix("*") ? name.hasPrefix(pattern.dropLast()) : name == pattern
  }

  /// The cumulative weights of the entry points that may be chosen.
  var choices: [(total: Int, entry: Int)] {
    var total = 0
    var table: [(total: Int, entry: Int)] = []
    for (index, entry) in entryPoints.enumerated() where entry.weight > 0 {
      if excluded.contains(where: { Self.matches(entry.name, $0) }) { continue }
      total &+= entry.weight
      table.append((total, index))
    }
    return table
  }

  /// Runs every sequence; true when nothing trapped and every error was an `IommufdError`.
  func run() -> Bool {
    let start = monotonicSeconds()
    let range = "\(options.firstSequence)..<\(options.firstSequence + options.sequences)"
    let sanitizer = hasAddressSanitizer ? ", AddressSanitizer" : ""
    print("api-fuzz: seed \(options.seed), sequences \(range), \(options.calls) calls each, \(entryPoints.count) entry points\(sanitizer)")
    flushOutput()
    let table = choices
    var next = options.firstSequence
    let end = options.firstSequence + options.sequences
    while next < end {
      let batchEnd = next + min(options.batch, end - next)
      shared[.sequence] = next
      shared[.call] = -1
      shared[.entryPoint] = -1
      shared[.descriptionLength] = 0
      let errorFD = open(errorPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
      flushOutput()
      let child = fork()
      if child == 0 {
        if errorFD >= 0 { _ = dup2(errorFD, 2) }
        runChild(next..<batchEnd, table)
      }
      if errorFD >= 0 { _ = close(errorFD) }
      guard child > 0 else {
        print("api-fuzz: fork failed: \(String(cString: strerror(errno)))")
        return false
      }
      var status: Int32 = 0
      while waitpid(child, &status, 0) < 0 && errno == EINTR {}
      let signal = status & 0x7F
      let exitStatus = (status >> 8) & 0xFF
      if signal == 0 && exitStatus == 0 {
        sequencesRun &+= batchEnd - next
        next = batchEnd
        continue
      }
      let sequence = shared[.sequence]
      let trapped = sequence >= next && sequence < batchEnd ? sequence : next
      report(signal: signal, exitStatus: exitStatus, sequence: trapped)
      sequencesRun &+= trapped + 1 - next
      next = trapped + 1
    }
    unlink(errorPath)
    sysfs.remove()
    return summarize(seconds: monotonicSeconds() - start)
  }

  /// The child: runs the sequences of `range`, then exits without running the parent's
  /// exit handlers.
  func runChild(_ range: Range<Int>, _ table: [(total: Int, entry: Int)]) -> Never {
    var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
    setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
    if !hasAddressSanitizer {
      // What the library allocates from hostile sizes must fail, not take the machine's memory.
      var space = rlimit(rlim_cur: 1 << 30, rlim_max: 1 << 30)
      setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &space)
    }
    for sequence in range {
      arena.reset()
      let fuzzer = Fuzzer(
        options: options, sequence: sequence, shared: shared, arena: arena, entryPoints: entryPoints, choices: table,
        sysfs: sysfs)
      fuzzer.run()
    }
    flushOutput()
    _exit(0)
  }

  /// Reports a child that died during `sequence`: the call, and the crash report's message
  /// and first frame in the package's sources.
  func report(signal: Int32, exitStatus: Int32, sequence: Int) {
    trapCount &+= 1
    let call = shared[.call]
    let entry = shared[.entryPoint]
    let name = entryName(entry) ?? "setup"
    let description = shared.description
    let crash = crashReport()
    if let directory = options.crashReports, let text = readFile(errorPath) {
      let fd = open(directory + "/seed-\(options.seed)-sequence-\(sequence).txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
      if fd >= 0 {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        _ = close(fd)
      }
    }
    let how = signal == SIGALRM ? "hang (no return within \(options.watchdog) s)"
      : signal != 0 ? "signal \(signal)" : "exit status \(exitStatus)"
    print("trap: seed \(options.seed) sequence \(sequence) call \(call) \(name): \(description)")
    print("      \(how)\(crash.message.isEmpty ? "" : ": \(crash.message)") at \(crash.location)")
    flushOutput()
    // Without a frame (an abort in the runtime, such as a failed allocation, cannot be
    // unwound), the call's entry point and the message without its numbers tell traps apart.
    let key = signal == SIGALRM ? "hang \(name)"
      : crash.location == "unknown" ? "unknown \(name) " + String(crash.message.filter { !$0.isNumber })
      : crash.location + " " + crash.message
    if traps[key] == nil {
      trapOrder.append(key)
      let location = crash.location == "unknown" ? "unknown location (in \(name))" : crash.location
      let exclusions = excluded.isEmpty ? "" : " --exclude \(replayExclusion)"
      let replay = "--seed \(options.seed) --first-sequence \(sequence) --sequences 1 --calls \(options.calls)\(exclusions) --verbose"
      let first = "sequence \(sequence) call \(call) \(name) (replay: \(replay))"
      traps[key] = Trap(location: location, message: signal == SIGALRM ? how : crash.message, count: 0, first: first)
    }
    traps[key]?.count &+= 1
  }

  /// The message and location of the crash in the child's standard error: the first frame
  /// with a line number in `Sources/` (else in `Fuzz/`, the fuzzer's own) of the Swift
  /// backtrace or of an AddressSanitizer report. Neither names addresses, so that the same
  /// trap is described the same way in every run.
  func crashReport() -> (message: String, location: String) {
    guard let text = readFile(errorPath) else { return ("", "unknown") }
    let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    var message = Self.crashMessage(lines)
    if let frame = symbolizer.locate(lines) {
      let signalOnly = message.isEmpty || lines.contains { $0.contains("Program crashed: " + message) }
      if signalOnly, let failure = frame.failure { message = failure }
      return (message, frame.location + " in " + frame.function)
    }
    // An AddressSanitizer report names functions mangled.
    var location = Self.crashLocation(lines)
    if let start = location.range(of: " in $s") {
      let name = String(location[location.index(start.lowerBound, offsetBy: 4)...])
      if let plain = symbolizer.demangle([name])[name] { location = String(location[..<start.lowerBound]) + " in " + plain }
    }
    return (message, location)
  }

  /// Why the child crashed: the runtime's fatal error, the failed check of the first frame,
  /// AddressSanitizer's verdict, or the signal.
  static func crashMessage(_ lines: [String]) -> String {
    for marker in ["Fatal error", "Precondition failed", "Assertion failed"] {
      if let line = lines.first(where: { $0.contains(marker) }) { return line }
    }
    if let line = lines.first(where: { $0.contains("Swift runtime failure: ") }), let start = line.range(of: "Swift runtime failure: ") {
      var rest = line[start.lowerBound...]
      if let end = rest.range(of: " in ") ?? rest.range(of: " ***") ?? rest.range(of: " /") { rest = rest[..<end.lowerBound] }
      return String(rest)
    }
    if let line = lines.first(where: { $0.contains("ERROR: AddressSanitizer: ") }), let start = line.range(of: "AddressSanitizer: ") {
      let rest = line[start.lowerBound...]
      return String(rest.range(of: " on ").map { rest[..<$0.lowerBound] } ?? rest)
    }
    if let line = lines.first(where: { $0.contains("Program crashed: ") }), let start = line.range(of: "Program crashed: ") {
      let rest = line[start.upperBound...]
      return String(rest.range(of: " at ").map { rest[..<$0.lowerBound] } ?? rest)
    }
    return ""
  }

  /// Where the child crashed: `path:line:column in function`.
  static func crashLocation(_ lines: [String]) -> String {
    var fallback: String?
    for line in lines {
      guard let frame = sourceFrame(line) else { continue }
      if frame.hasPrefix("Sources/") { return frame }
      if fallback == nil { fallback = frame }
    }
    return fallback ?? "unknown"
  }

  /// `path:line:column in function` for a frame line naming a line of a file of this
  /// package: a Swift backtrace frame (`N [ra] 0x... function + offset in image at
  /// /path:line:column`) or an AddressSanitizer one (`#N 0x... in function /path:line:column`).
  static func sourceFrame(_ line: String) -> String? {
    guard let root = line.range(of: "/Sources/") ?? line.range(of: "/Fuzz/") else { return nil }
    var location = String(line[line.index(after: root.lowerBound)...])
    if let space = location.firstIndex(of: " ") { location = String(location[..<space]) }
    // Only frames with a line number: "File.swift:12:5".
    guard let swift = location.range(of: ".swift:"), location[swift.upperBound...].first?.isNumber == true else { return nil }
    let head = line[..<root.lowerBound]
    var function = ""
    if let at = head.range(of: " at ", options: .backwards) {
      // Swift: the words after the address, up to " + offset" or " in image".
      let words = head[..<at.lowerBound].split(separator: " ")
      if let address = words.firstIndex(where: { $0.hasPrefix("0x") }) {
        var name = words[(address + 1)...].joined(separator: " ")
        if let image = name.range(of: " in ", options: .backwards) { name = String(name[..<image.lowerBound]) }
        if let offset = name.range(of: " + ", options: .backwards) { name = String(name[..<offset.lowerBound]) }
        function = name
      }
    } else if let inRange = head.range(of: " in ") {
      // AddressSanitizer: the function, then the path's directories up to the package.
      var name = String(head[inRange.upperBound...]).trimmingCharacters(" ")
      if let space = name.lastIndex(of: " "), name[name.index(after: space)...].hasPrefix("/") { name = String(name[..<space]) }
      function = name
    }
    return location + (function.isEmpty ? "" : " in " + function)
  }

  /// Prints the coverage and the distinct traps; the last line is the verdict. True when
  /// nothing trapped and every error was an `IommufdError`.
  func summarize(seconds: Double) -> Bool {
    var calls = 0
    var others = 0
    var reached = 0
    print("entry point                                                                   calls      ok  IommufdError  other")
    for (index, entry) in entryPoints.enumerated() {
      let count = shared.value(.calls, entry: index)
      calls &+= count
      others &+= shared.value(.otherErrors, entry: index)
      if count > 0 { reached &+= 1 }
      let name = entry.name.count > 76 ? String(entry.name.prefix(73)) + "..." : entry.name
      print(name.padding(76) + pad(count, 7) + pad(shared.value(.succeeded, entry: index), 8)
        + pad(shared.value(.expectedErrors, entry: index), 14) + pad(shared.value(.otherErrors, entry: index), 7))
    }
    print("entry points reached: \(reached) of \(entryPoints.count)")
    let missed = entryPoints.enumerated().filter { shared.value(.calls, entry: $0.offset) == 0 }.map(\.element.name)
    if !missed.isEmpty && options.sequences >= 100 { print("not reached: \(missed.joined(separator: "; "))") }
    if !trapOrder.isEmpty {
      print("distinct traps: \(trapOrder.count)")
      for key in trapOrder {
        guard let trap = traps[key] else { continue }
        print("  \(trap.location): \(trap.message.isEmpty ? "(no message)" : trap.message) — \(trap.count)x, first \(trap.first)")
      }
    }
    print("time: \(Int(seconds * 10) / 10).\(Int(seconds * 10) % 10) s")
    print("api-fuzz: \(sequencesRun) sequences, \(calls) calls, \(trapCount) traps, \(others) non-IommufdError errors")
    flushOutput()
    return trapCount == 0 && others == 0
  }

  /// `value` right-aligned in `width` characters.
  private func pad(_ value: Int, _ width: Int) -> String {
    let text = "\(value)"
    return String(repeating: " ", count: max(0, width - text.count)) + text
  }
}

extension String {
  /// The string padded with spaces to `width` characters.
  func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) + " " }

  /// The string without `prefix`, if it starts with it.
  func trimmingPrefix(_ prefix: String) -> String { hasPrefix(prefix) ? String(dropFirst(prefix.count)) : self }

  /// The string without leading and trailing `character`s.
  func trimmingCharacters(_ character: Character) -> String {
    String(drop(while: { $0 == character }).reversed().drop(while: { $0 == character }).reversed())
  }
}

/// The contents of the file at `path`, decoded as UTF-8: its last MiB (a crash report comes
/// last, after whatever the child logged).
func readFile(_ path: String) -> String? {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  let limit = 1 << 20
  if lseek(fd, 0, SEEK_END) > off_t(limit) { _ = lseek(fd, -off_t(limit), SEEK_END) } else { _ = lseek(fd, 0, SEEK_SET) }
  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while bytes.count < limit {
    let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count > 0 else { break }
    bytes += chunk.prefix(count)
  }
  return String(decoding: bytes, as: UTF8.self)
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
  var now = timespec()
  clock_gettime(CLOCK_MONOTONIC, &now)
  return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Flushes standard output (and every other stdio stream), as before a fork or a trap.
func flushOutput() { fflush(nil) }

/// Writes `text` to standard error, unbuffered.
func writeError(_ text: String) {
  let bytes = Array(text.utf8)
  _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
