// iommufd-api-fuzz: a seeded fuzzer of the public API that proves no call traps the process.
//
// Each sequence runs a fresh simulated kernel (6.12 and 7.2, with an edu device or as a
// test kernel with the mock IOMMU, in turn) and makes random calls of every public entry
// point it can reach, with arguments from hostile classes and on live and dead handles.
// Every call must return or throw IommufdError (Errno on the SystemCalls seam). Sequences
// run in forked children, a batch each; before each call the child writes where it is to
// shared memory, so when it dies by a signal the parent reports the call, and the crash
// location from the child's backtrace, and goes on with the next sequence.
//
//   iommufd-api-fuzz [--seed S] [--sequences N] [--calls N] [--first-sequence N]
//                    [--batch N] [--exclude NAME,...] [--watchdog SECONDS] [--crash-reports DIR]
//                    [--verbose]

import Iommufd

#if canImport(Glibc)
import Glibc
#endif

/// Prints how to run the fuzzer and exits with status 2.
func usage(_ problem: String) -> Never {
  let text = """
    \(problem)
    usage: iommufd-api-fuzz [--seed S] [--sequences N] [--calls N] [--first-sequence N] [--batch N]
                            [--exclude NAME[,NAME...]] [--watchdog SECONDS] [--crash-reports DIR] [--verbose] [--plant-trap]
    Replay one sequence: --seed S --first-sequence N --sequences 1 --verbose
    An excluded name ending in * excludes every entry point it prefixes. --crash-reports keeps
    each trapping child's standard error (its backtrace) as DIR/seed-S-sequence-N.txt.

    """
  writeError(text)
  exit(2)
}

/// The options given on the command line.
func parseOptions(_ arguments: [String]) -> Options {
  var options = Options()
  var index = 1
  /// The value after option `name`.
  func value(_ name: String) -> String {
    index &+= 1
    guard index < arguments.count else { usage("\(name) needs a value") }
    return arguments[index]
  }
  /// The integer value after option `name`, at least `minimum`.
  func integer(_ name: String, minimum: Int) -> Int {
    let text = value(name)
    guard let number = Int(text), number >= minimum else { usage("\(name): not an integer of at least \(minimum): \(text)") }
    return number
  }
  while index < arguments.count {
    let argument = arguments[index]
    switch argument {
    case "--seed":
      let text = value(argument)
      let parsed = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
      guard let seed = parsed else { usage("--seed: not a 64-bit unsigned integer: \(text)") }
      options.seed = seed
    case "--sequences": options.sequences = integer(argument, minimum: 0)
    case "--calls": options.calls = integer(argument, minimum: 0)
    case "--first-sequence": options.firstSequence = integer(argument, minimum: 0)
    case "--batch": options.batch = integer(argument, minimum: 1)
    case "--watchdog": options.watchdog = UInt32(clamping: integer(argument, minimum: 1))
    case "--exclude": options.excluded += value(argument).split(separator: ",").map(String.init)
    case "--crash-reports": options.crashReports = value(argument)
    case "--verbose": options.verbose = true
    case "--plant-trap": options.plantTrap = true
    case "--help", "-h": usage("iommufd-api-fuzz: calls every public entry point with hostile arguments")
    default: usage("unknown argument \(argument)")
    }
    index &+= 1
  }
  guard options.firstSequence <= Int.max - options.sequences else { usage("--first-sequence + --sequences overflows") }
  return options
}

/// Whether AddressSanitizer is in the process.
let hasAddressSanitizer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil

// Restart once with the environment the runtime reads at startup: a Swift backtrace that
// is quick to make (raw frames: the parent finds their file and line). Under
// AddressSanitizer, ASan reports traps itself (the Swift backtracer, reading the crashed
// stack, would trip ASan), and allocations of hostile sizes fail (and trap, to be
// reported) instead of taking the machine's memory.
if getenv("IOMMUFD_API_FUZZ_RESTARTED") == nil {
  if getenv("SWIFT_BACKTRACE") == nil {
    let backtrace = hasAddressSanitizer ? "enable=no"
      : "enable=yes,symbolicate=off,limit=32,top=0,registers=none,images=mentioned,threads=crashed,interactive=no,color=no"
    setenv("SWIFT_BACKTRACE", backtrace, 1)
  }
  if hasAddressSanitizer {
    let existing = getenv("ASAN_OPTIONS").map { String(cString: $0) + ":" } ?? ""
    setenv("ASAN_OPTIONS", existing + "allocator_may_return_null=1:max_allocation_size_mb=2048:handle_sigill=1:handle_abort=1", 1)
  }
  setenv("IOMMUFD_API_FUZZ_RESTARTED", "1", 1)
  execv("/proc/self/exe", CommandLine.unsafeArgv)
  writeError("iommufd-api-fuzz: cannot restart (\(String(cString: strerror(errno)))): running with the environment as it is\n")
}

let options = parseOptions(CommandLine.arguments)
/// The negative control (`--plant-trap`): an entry point that overflows on purpose, which
/// the campaign must report as a trap, or it could not see traps at all.
let plantedTrap = EntryPoint("planted trap (negative control)", weight: 50) { fuzzer in
  fuzzer.call("Int.max + a value that is 1 at run time") {
    let one = Int(getpid() > 0 ? 1 : 0)
    _ = Int.max + one
  }
  return true
}
let entryPoints = iommufdEntryPoints() + virtualEntryPoints() + deviceEntryPoints() + legacyEntryPoints()
  + valueEntryPoints() + simulatorEntryPoints() + (options.plantTrap ? [plantedTrap] : [])
guard entryPoints.count <= SharedState.maximumEntryPoints else { usage("too many entry points: \(entryPoints.count)") }
let missing = Fuzzer.namedEntryPoints.filter { name in !entryPoints.contains { $0.name == name } }
guard missing.isEmpty else { usage("the setup names entry points that do not exist: \(missing)") }
let unknownExclusions = options.excluded.filter { name in !entryPoints.contains { Campaign.matches($0.name, name) } }
guard unknownExclusions.isEmpty else { usage("--exclude: no entry point named \(unknownExclusions)") }
guard let shared = SharedState.create() else { usage("cannot map shared memory") }
guard let arena = Arena.create() else { usage("cannot map the arena at 0x\(hex(UInt64(Arena.address)))") }

let campaign = Campaign(options: options, entryPoints: entryPoints, shared: shared, arena: arena)
exit(campaign.run() ? 0 : 1)
