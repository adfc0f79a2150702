import Iommufd
import IommufdSimulator
import IommufdEdu
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The simulated machines the sequences cycle through.
enum Machine: Int, CaseIterable, CustomStringConvertible {
  /// Linux 6.12 with an edu device (and the fuzzer's own device model).
  case edu6_12
  /// Linux 7.2 with an edu device (and the fuzzer's own device model).
  case edu7_2
  /// A Linux 6.12 test kernel: the self-test's mock IOMMU, no PCI devices.
  case selfTest6_12
  /// A Linux 7.2 test kernel: the mock IOMMU with vIOMMU, vDEVICE, vEVENTQ and HW queues.
  case selfTest7_2

  /// The machine of sequence `sequence`.
  init(sequence: Int) { self = Machine.allCases[((sequence % 4) + 4) % 4] }

  /// The release the simulator answers as.
  var release: SimulatedKernel.Release { self == .edu7_2 || self == .selfTest7_2 ? .linux7_2 : .linux6_12 }

  /// Whether the simulator is a test kernel with the mock IOMMU.
  var isSelfTest: Bool { self == .selfTest6_12 || self == .selfTest7_2 }

  /// "6.12 edu", "7.2 self-test", ...
  var description: String { "\(release) \(isSelfTest ? "self-test" : "edu")" }
}

/// A handle the fuzzer holds, with the label call descriptions name it by and the iommufd
/// context (index into ``Pool/contexts``) it belongs to, if any.
struct Held<Value> {
  /// The handle or value.
  let value: Value
  /// `ioas3`, `dev0`, ...
  let label: String
  /// The context it was made in.
  let context: Int?
}

/// A mapping in the pool (a `DMAMapping` is noncopyable; the pool keeps it in a box).
final class MappingBox {
  var mapping: DMAMapping

  init(_ mapping: consuming DMAMapping) {
    self.mapping = mapping
  }
}

/// Everything one sequence made: live handles and dead ones (destroyed, closed, from the
/// other context), which stay so that later calls are made on them too.
final class Pool {
  var contexts: [Held<IOMMUFD>] = []
  var ioases: [Held<IOAS>] = []
  var hwpts: [Held<HWPageTable>] = []
  var nested: [Held<NestedHWPageTable>] = []
  var faultQueues: [Held<FaultQueue>] = []
  var viommus: [Held<VirtualIOMMU>] = []
  var vdevices: [Held<VirtualDevice>] = []
  var veventqs: [Held<VirtualEventQueue>] = []
  var hwQueues: [Held<HardwareQueue>] = []
  var mocks: [Held<MockDevice>] = []
  var devices: [Held<VFIODevice>] = []
  /// Device object ids from binds and mock devices.
  var deviceIDs: [Held<ObjectID>] = []
  var buffers: [Held<DMABuffer>] = []
  var guestMemories: [Held<GuestMemory>] = []
  var accesses: [Held<SelfTestAccess>] = []
  var pins: [Held<SelfTestAccess.PinnedPages>] = []
  var mappings: [Held<MappingBox>] = []
  var regions: [Held<VFIORegionInfo>] = []
  var eventFDs: [Held<EventFD>] = []
  var containers: [Held<VFIOContainer>] = []
  var groups: [Held<VFIOGroup>] = []
  var sessions: [Held<VFIOSession>] = []
  var edus: [Held<EduDriver>] = []
  var backends: [Held<Backend>] = []
  /// Descriptors the fuzzer opened through the seam and still owns (not yet adopted or
  /// closed); each is handed to at most one owner.
  var rawFDs: [FileDescriptor] = []
  /// IOVAs that calls returned, for calls that should hit something.
  var iovas: [UInt64] = []
  /// Every object id seen, of any kind.
  var ids: [ObjectID] = []
  /// The next number of each label prefix.
  var labelNumbers: [String: Int] = [:]

  /// A fresh label with `prefix`.
  func label(_ prefix: String) -> String {
    let number = labelNumbers[prefix, default: 0]
    labelNumbers[prefix] = number &+ 1
    return "\(prefix)\(number)"
  }

  /// All attach targets: IOASes, HWPTs and nested HWPTs.
  var targets: [Held<any AttachTarget>] {
    ioases.map { Held(value: $0.value, label: $0.label, context: $0.context) }
      + hwpts.map { Held(value: $0.value, label: $0.label, context: $0.context) }
      + nested.map { Held(value: $0.value, label: $0.label, context: $0.context) }
  }

  /// Drops every handle, kind by kind in the order `order` gives (a permutation of 0..<24),
  /// running their releases.
  func release(order: [Int]) {
    for kind in order {
      switch kind {
      case 0: contexts.removeAll()
      case 1: ioases.removeAll()
      case 2: hwpts.removeAll()
      case 3: nested.removeAll()
      case 4: faultQueues.removeAll()
      case 5: viommus.removeAll()
      case 6: vdevices.removeAll()
      case 7: veventqs.removeAll()
      case 8: hwQueues.removeAll()
      case 9: mocks.removeAll()
      case 10: devices.removeAll()
      case 11: buffers.removeAll()
      case 12: mappings.removeAll()
      case 13: eventFDs.removeAll()
      case 14: containers.removeAll()
      case 15: groups.removeAll()
      case 16: sessions.removeAll()
      case 17: edus.removeAll()
      case 18: backends.removeAll()
      case 19: regions.removeAll()
      case 20: guestMemories.removeAll()
      case 21: deviceIDs.removeAll()
      case 22: accesses.removeAll()
      default: pins.removeAll()
      }
    }
  }

  /// How many kinds ``release(order:)`` knows.
  static let kindCount = 24
}

/// User memory at a fixed address far from every other mapping of the process: what the
/// fuzzer lets the library map for DMA (with `unsafeMap`) and points raw ioctl arguments at.
///
/// Nothing is mapped for terabytes above it, so a range that starts in it and runs past its
/// end can never be pinned, and a simulated device can never write into the fuzzer's own
/// memory through a mapping of it.
struct Arena {
  /// The first byte.
  let base: UnsafeMutableRawPointer
  /// Its size.
  static let size = 4 << 20
  /// Where it is asked for: above AddressSanitizer's shadow, far below the heap and
  /// libraries.
  static let address = UInt(0x2000_0000_0000)
  /// The part for DMA targets; the rest is for raw ioctl arguments.
  static let dmaSize = 3 << 20

  /// Maps the arena; `nil` if that address cannot be had.
  static func create() -> Arena? {
    let wanted = UnsafeMutableRawPointer(bitPattern: address)
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
    guard let result = mmap(wanted, size, PROT_READ | PROT_WRITE, flags, -1, 0), result != MAP_FAILED, result == wanted
    else { return nil }
    return Arena(base: result)
  }

  /// Zeroes the arena (each sequence starts from the same memory).
  func reset() { memset(base, 0, Self.size) }

  /// The address of byte `offset`.
  func address(_ offset: Int) -> UInt64 { UInt64(UInt(bitPattern: base)) &+ UInt64(truncatingIfNeeded: offset) }

  /// The scratch area for raw ioctl arguments.
  var argumentArea: UnsafeMutableRawPointer { base + Self.dmaSize }
}

/// Options of a run.
struct Options {
  var seed: UInt64 = 1
  var sequences = 2000
  var calls = 40
  var firstSequence = 0
  var batch = 50
  var verbose = false
  /// Adds the planted trap of the negative control.
  var plantTrap = false
  /// Entry points (names, or prefixes ending in `*`) never chosen.
  var excluded: [String] = []
  /// Seconds a call may take before the child is stopped as hung (none takes a tenth of
  /// that unless something is wrong).
  var watchdog: UInt32 = 2
  /// Where to keep each trapping child's standard error (its crash report), if anywhere.
  var crashReports: String?
}

/// One sequence: a fresh simulated kernel, two iommufd contexts, the pool, and the random
/// generator every choice is made with.
final class Fuzzer {
  var rng: SplitMix64
  let options: Options
  let sequence: Int
  let machine: Machine
  let shared: SharedState
  let arena: Arena
  let entryPoints: [EntryPoint]
  let pool = Pool()
  /// The sequence's kernel; set by the first call.
  var kernel = SimulatedKernel()
  /// The backend over ``kernel``.
  var backend: Backend
  /// The fuzzer's own device model, on edu machines.
  var fuzzDevice: FuzzDevice?
  /// A file for `mapFile`, 64 KiB of bytes.
  var memoryFile: FileDescriptor?
  /// The call about to run, within the sequence.
  var callIndex = 0
  /// The entry point running.
  var entry = 0
  /// During the prologue: sensible arguments only.
  var sensibleOnly = false
  /// Fake sysfs trees made for discovery calls, removed at the end.
  let sysfs: FakeSysfs
  /// The cumulative weights of the entry points that may be chosen.
  let choices: [(total: Int, entry: Int)]
  /// Fault cookies read from fault queues.
  var cookies: [UInt32] = []
  /// The context each bound device is bound to.
  var boundContexts: [ObjectIdentifier: Int] = [:]
  /// Real descriptors (eventfds) the fuzzer made through the seam and still owns.
  var realFDs: [FileDescriptor] = []

  /// Sequence `sequence` of a run with `options`.
  init(
    options: Options, sequence: Int, shared: SharedState, arena: Arena, entryPoints: [EntryPoint],
    choices: [(total: Int, entry: Int)], sysfs: FakeSysfs
  ) {
    self.choices = choices
    self.options = options
    self.sequence = sequence
    self.machine = Machine(sequence: sequence)
    self.rng = SplitMix64(seed: options.seed, sequence: sequence)
    self.shared = shared
    self.arena = arena
    self.entryPoints = entryPoints
    self.sysfs = sysfs
    self.backend = .simulated(kernel)
  }

  // MARK: Calls

  /// Makes one call: records where it is and what it is in shared memory first (so a trap
  /// can be reported), then runs `body`, counting how it ended. `expected` is the error type
  /// the call may throw: `IommufdError` for the library, `Errno` for the system-call seam.
  func call(_ description: String, expecting expected: ExpectedError = .iommufd, _ body: () throws -> Void) {
    shared.record(sequence: sequence, call: callIndex, entryPoint: entry, description: description)
    shared.count(.calls, entry: entry)
    let name = entryPoints[entry].name
    if options.verbose {
      print("[\(sequence).\(callIndex)] \(name): \(description)")
      flushOutput()
    }
    alarm(options.watchdog)
    var outcome = "ok"
    do {
      try body()
      shared.count(.succeeded, entry: entry)
    } catch let error as IommufdError {
      shared.count(.expectedErrors, entry: entry)
      outcome = "\(error)"
    } catch let error as Errno where expected == .errno {
      shared.count(.expectedErrors, entry: entry)
      outcome = "\(error)"
    } catch {
      shared.count(.otherErrors, entry: entry)
      print("finding: seed \(options.seed) sequence \(sequence) call \(callIndex) \(name): \(description): threw \(type(of: error)): \(error)")
      flushOutput()
      outcome = "\(type(of: error)): \(error)"
    }
    alarm(0)
    if options.verbose {
      print("    -> \(outcome)")
      flushOutput()
    }
    callIndex &+= 1
  }

  /// The error type a call may throw.
  enum ExpectedError {
    /// `IommufdError` only: the library's API.
    case iommufd
    /// `Errno` too: the `SystemCalls` seam.
    case errno
  }

  // MARK: Argument choices

  /// Whether to use a hostile argument this time (`percent` of the time, never in the
  /// prologue).
  func hostile(_ percent: Int) -> Bool { !sensibleOnly && rng.chance(percent) }

  /// A handle of `items`: in the prologue the newest; otherwise mostly a recent one of
  /// `context` when given, sometimes any.
  func pick<T>(_ items: [Held<T>], context: Int? = nil) -> Held<T>? {
    guard !items.isEmpty else { return nil }
    if sensibleOnly {
      if let context, let same = items.last(where: { $0.context == context }) { return same }
      return items.last
    }
    var candidates = items
    if let context, !rng.chance(20) {
      let same = items.filter { $0.context == context }
      if !same.isEmpty { candidates = same }
    }
    if rng.chance(60) { return candidates[max(0, candidates.count - 1 - rng.below(2))] }
    return candidates[rng.below(candidates.count)]
  }

  /// A context: the first one mostly.
  func context() -> Held<IOMMUFD>? {
    guard !pool.contexts.isEmpty else { return nil }
    if sensibleOnly || rng.chance(70) { return pool.contexts[0] }
    return pool.contexts[rng.below(pool.contexts.count)]
  }

  /// An object id: one seen in this sequence (preferring `context`'s when given), or a
  /// hostile number.
  func objectID(from held: [Held<ObjectID>] = [], context: Int? = nil) -> ObjectID {
    if !hostile(20), let chosen = pick(held, context: context) { return chosen.value }
    if !hostile(30), let any = rng.element(pool.ids) { return any }
    switch rng.below(5) {
    case 0: return ObjectID(0)
    case 1: return ObjectID(UInt32.max)
    case 2: return ObjectID(UInt32(rng.below(32)))
    case 3: return ObjectID(1 << 31)
    default: return ObjectID(rng.hostileU32())
    }
  }

  /// A device object id (bound device or mock), preferring `context`'s.
  func deviceID(context: Int?) -> ObjectID { objectID(from: pool.deviceIDs, context: context) }

  /// Notes an id a call returned.
  func saw(_ id: ObjectID) {
    if !pool.ids.contains(id) { pool.ids.append(id) }
  }

  /// Notes an IOVA a call returned.
  func saw(iova: UInt64) {
    if pool.iovas.count < 64 { pool.iovas.append(iova) }
  }

  /// An IOVA: mostly one seen or a sensible one for the machine, sometimes hostile.
  func iova() -> UInt64 {
    if hostile(25) { return rng.hostileU64() }
    if let seen = rng.element(pool.iovas), sensibleOnly || rng.chance(60) {
      return seen &+ (rng.chance(30) ? UInt64(rng.below(4)) &* SplitMix64.page : 0)
    }
    if machine.isSelfTest { return (1 << 24) &+ UInt64(rng.below(4096)) &* SplitMix64.page }
    return UInt64(1 &+ rng.below(4096)) &* SplitMix64.page &* 16
  }

  /// An IOVA and a length: sensible, hostile, or a pair whose sum overflows.
  func range() -> (iova: UInt64, length: UInt64) {
    if hostile(15) { return rng.overflowingRange() }
    return (iova(), rng.length(hostile: sensibleOnly ? 0 : 20))
  }

  /// Where a mapping goes.
  func placement() -> IOVAPlacement {
    if sensibleOnly || rng.bool() { return .anywhere }
    return .fixed(iova())
  }

  /// What a device may do through a mapping.
  func access() -> DMAAccess {
    if hostile(10) { return DMAAccess(rawValue: rng.hostileU32()) }
    return rng.element([.readWrite, .readable, .writable, .readWrite]) ?? .readWrite
  }

  /// User memory to map and its length: in the arena (its length inside the arena, or
  /// hostile, which then runs into the unmapped space above it), or an address no page of
  /// the process can be at.
  func userMemory() -> (address: UnsafeRawPointer, length: UInt64, text: String) {
    if hostile(30) {
      let bits: UInt
      switch rng.below(5) {
      case 0: bits = 0x1000
      case 1: bits = 0x2000 &+ UInt(rng.below(4096))
      case 2: bits = 1 << 47
      case 3: bits = 1 << 63
      default: bits = UInt.max & ~0xFFF
      }
      let length = rng.hostileU64()
      return (UnsafeRawPointer(bitPattern: bits)!, length, "0x\(hex(UInt64(bits))) len 0x\(hex(length))")
    }
    let pages = Arena.dmaSize / 4096
    let first = rng.below(pages)
    var offset = first &* 4096
    if hostile(15) { offset &+= 1 &+ rng.below(4095) }
    let room = UInt64(Arena.dmaSize &- offset)
    var length = UInt64(1 &+ rng.below(min(16, max(1, pages &- first)))) &* SplitMix64.page
    if length > room { length = room & ~(SplitMix64.page &- 1) }
    if hostile(20) { length = rng.hostileU64() }
    return (UnsafeRawPointer(arena.base + offset), length, "arena+0x\(hex(UInt64(offset))) len 0x\(hex(length))")
  }

  /// A descriptor number for calls that use (never own) a descriptor: one of the
  /// sequence's, or numbers that can be nothing open.
  func anyDescriptor() -> FileDescriptor {
    var known: [Int32] = pool.rawFDs.map(\.rawValue)
    known += pool.contexts.map { $0.value.fileDescriptor.rawValue }
    known += pool.devices.map { $0.value.fileDescriptor.rawValue }
    known += pool.eventFDs.map { $0.value.fileDescriptor.rawValue }
    known += pool.faultQueues.map { $0.value.fileDescriptor.rawValue }
    if let memoryFile { known.append(memoryFile.rawValue) }
    if !hostile(30), let chosen = rng.element(known) { return FileDescriptor(rawValue: chosen) }
    return FileDescriptor(rawValue: rng.element([-1, Int32.max, Int32.min, 1 << 20, 0, 1, 2]) ?? -1)
  }

  /// A descriptor to hand to an adopting initializer: one the fuzzer owns (then no longer
  /// its), or a number that can be nothing open. Never a descriptor something else owns.
  func adoptableDescriptor() -> FileDescriptor {
    if !hostile(25), !pool.rawFDs.isEmpty || !realFDs.isEmpty {
      let index = rng.below(pool.rawFDs.count &+ realFDs.count)
      return index < pool.rawFDs.count ? pool.rawFDs.remove(at: index) : realFDs.remove(at: index &- pool.rawFDs.count)
    }
    return FileDescriptor(rawValue: rng.element([-1, Int32.max, Int32.min, 1 << 20, -4096]) ?? -1)
  }
}

/// `value` in hexadecimal.
func hex(_ value: UInt64) -> String { String(value, radix: 16) }

/// `bytes` in hexadecimal, for call descriptions.
func hex(_ bytes: [UInt8]) -> String {
  bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// A public entry point of the library and how to call it with fuzzed arguments.
struct EntryPoint {
  /// The API's name, as the coverage report prints it.
  let name: String
  /// How often it is chosen relative to the others.
  let weight: Int
  /// Draws arguments and makes the call through ``Fuzzer/call(_:expecting:_:)``; false
  /// (without a call) when what it needs does not exist.
  let run: (Fuzzer) -> Bool

  /// The entry point `name`, chosen with `weight`, called by `run`.
  init(_ name: String, weight: Int = 10, _ run: @escaping (Fuzzer) -> Bool) {
    self.name = name
    self.weight = weight
    self.run = run
  }
}
