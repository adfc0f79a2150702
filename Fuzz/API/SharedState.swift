#if canImport(Glibc)
import Glibc
#endif

/// The anonymous `MAP_SHARED` memory a fuzzing child writes and the parent reads: where the
/// child is (sequence, call and the call's description, written before each call, so they
/// survive a trap) and the outcome counters of every entry point.
///
/// Layout: a 64-byte header of 64-bit words, the description, then four words per entry
/// point (calls, successes, `IommufdError`s, other errors).
struct SharedState {
  /// The start of the mapping.
  let base: UnsafeMutableRawPointer
  /// The bytes of the description kept; longer ones are cut.
  static let descriptionCapacity = 16 * 1024
  /// The most entry points the counters have room for.
  static let maximumEntryPoints = 1024
  static let headerSize = 64
  static let countersOffset = headerSize + descriptionCapacity
  static let size = countersOffset + maximumEntryPoints * 32

  /// The header words.
  enum Word: Int {
    /// The sequence running.
    case sequence = 0
    /// The call of that sequence running.
    case call = 1
    /// The sequences the children finished (or lost to a trap).
    case sequencesDone = 2
    /// The description's length in bytes.
    case descriptionLength = 3
    /// The entry point of the call running.
    case entryPoint = 4
    /// Incremented once per call.
    case heartbeat = 5
  }

  /// Maps the shared memory; `nil` if mmap fails.
  static func create() -> SharedState? {
    let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
    guard let address, address != MAP_FAILED else { return nil }
    memset(address, 0, size)
    return SharedState(base: address)
  }

  /// Reads a header word.
  subscript(word: Word) -> Int {
    get { Int(truncatingIfNeeded: base.load(fromByteOffset: word.rawValue * 8, as: UInt64.self)) }
    nonmutating set { base.storeBytes(of: UInt64(truncatingIfNeeded: newValue), toByteOffset: word.rawValue * 8, as: UInt64.self) }
  }

  /// Records the call about to run: its place, entry point and description.
  func record(sequence: Int, call: Int, entryPoint: Int, description: String) {
    self[.sequence] = sequence
    self[.call] = call
    self[.entryPoint] = entryPoint
    self[.heartbeat] = self[.heartbeat] &+ 1
    // A character cut in half decodes as U+FFFD.
    let utf8 = Array(description.utf8.prefix(Self.descriptionCapacity))
    utf8.withUnsafeBytes { bytes in
      if let source = bytes.baseAddress { (base + Self.headerSize).copyMemory(from: source, byteCount: bytes.count) }
    }
    self[.descriptionLength] = utf8.count
  }

  /// The description of the last call recorded.
  var description: String {
    let count = min(max(0, self[.descriptionLength]), Self.descriptionCapacity)
    let bytes = UnsafeRawBufferPointer(start: base + Self.headerSize, count: count)
    return String(decoding: bytes, as: UTF8.self)
  }

  /// The outcome counters of an entry point.
  enum Counter: Int, CaseIterable {
    /// Calls made.
    case calls = 0
    /// Calls that returned.
    case succeeded = 1
    /// Calls that threw the library's error type.
    case expectedErrors = 2
    /// Calls that threw anything else: findings.
    case otherErrors = 3
  }

  /// Adds one to `counter` of entry point `entry`.
  func count(_ counter: Counter, entry: Int) {
    guard entry >= 0, entry < Self.maximumEntryPoints else { return }
    let offset = Self.countersOffset + entry * 32 + counter.rawValue * 8
    base.storeBytes(of: base.load(fromByteOffset: offset, as: UInt64.self) &+ 1, toByteOffset: offset, as: UInt64.self)
  }

  /// The value of `counter` of entry point `entry`.
  func value(_ counter: Counter, entry: Int) -> Int {
    guard entry >= 0, entry < Self.maximumEntryPoints else { return 0 }
    return Int(truncatingIfNeeded: base.load(fromByteOffset: Self.countersOffset + entry * 32 + counter.rawValue * 8, as: UInt64.self))
  }
}
