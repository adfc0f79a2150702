/// SplitMix64: a small, fast generator whose whole state is one word, so that a sequence is
/// reproduced from its seed alone.
struct SplitMix64: RandomNumberGenerator {
  /// The state; advanced by the golden-ratio increment on each draw.
  var state: UInt64

  /// Seeds the generator.
  init(seed: UInt64) { state = seed }

  /// The generator of sequence `sequence` of a run seeded `seed`: independent of every other
  /// sequence, so one can be replayed alone.
  init(seed: UInt64, sequence: Int) {
    var mixer = SplitMix64(seed: seed ^ 0x5EED_F0CC_1A55_0000)
    _ = mixer.next()
    state = mixer.next() ^ (UInt64(truncatingIfNeeded: sequence) &* 0xD1B5_4A32_D192_ED03)
  }

  /// The next 64 random bits.
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A value in `0..<bound`; 0 when `bound` is not positive.
  mutating func below(_ bound: Int) -> Int {
    guard bound > 0 else { return 0 }
    return Int(truncatingIfNeeded: next() % UInt64(bound))
  }

  /// True with probability `percent` / 100.
  mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

  /// A random element of `items`, or `nil` when it is empty.
  mutating func element<T>(_ items: [T]) -> T? {
    items.isEmpty ? nil : items[below(items.count)]
  }

  /// A random Boolean.
  mutating func bool() -> Bool { next() & 1 == 1 }

  /// `count` random bytes.
  mutating func bytes(_ count: Int) -> [UInt8] {
    (0..<max(0, count)).map { _ in UInt8(truncatingIfNeeded: next()) }
  }
}

/// The argument classes the fuzzer draws from: edge values of each integer type, page-aligned
/// and misaligned addresses, pairs whose sums overflow, and counts far too large to allocate.
///
/// Counts and lengths that a library might allocate are never between 1 MiB and 2^40: what a
/// library wrongly allocates from them is either small or refused outright (and the child
/// runs under an address-space limit), so a fuzz run cannot exhaust the machine's memory.
extension SplitMix64 {
  /// The page size of the simulated machine.
  static let page: UInt64 = 4096

  /// A hostile 64-bit value.
  mutating func hostileU64() -> UInt64 {
    switch below(18) {
    case 0: return 0
    case 1: return 1
    case 2: return .max
    case 3: return .max &- UInt64(below(4097))
    case 4: return 1 << 63
    case 5: return UInt64(UInt32.max)
    case 6: return UInt64(Int.max)
    case 7: return UInt64(below(1024)) &* Self.page
    case 8: return UInt64(below(1024)) &* Self.page &+ UInt64(1 + below(4095))
    case 9: return next()
    case 10: return 1 << UInt64(below(64))
    case 11: return (1 << 39) &- Self.page &* UInt64(below(4))
    case 12: return (1 << 24) &+ UInt64(below(256)) &* Self.page
    case 13: return UInt64(UInt32.max) &+ 1
    case 14: return UInt64.max &- UInt64(below(16)) &* Self.page &+ 1
    case 15: return 0xFEE0_0000 &+ UInt64(below(256)) &* Self.page
    case 16: return UInt64(Int.max) &+ UInt64(below(3))
    default: return (1 << 31) &- UInt64(below(2)) &* Self.page
    }
  }

  /// A hostile `Int`.
  mutating func hostileInt() -> Int {
    switch below(14) {
    case 0: return 0
    case 1: return 1
    case 2: return -1
    case 3: return .max
    case 4: return .min
    case 5: return .max &- below(4097)
    case 6: return .min &+ below(4097)
    case 7: return below(16)
    case 8: return Int(UInt32.max)
    case 9: return Int(UInt32.max) &+ 1
    case 10: return below(64) &* 4096
    case 11: return -4096 &* (1 &+ below(4))
    case 12: return Int(truncatingIfNeeded: next())
    default: return Int(Int32.max) &+ below(2)
    }
  }

  /// A hostile 32-bit value.
  mutating func hostileU32() -> UInt32 {
    switch below(9) {
    case 0: return 0
    case 1: return 1
    case 2: return .max
    case 3: return .max &- UInt32(below(16))
    case 4: return 1 << 31
    case 5: return UInt32(below(16))
    case 6: return UInt32(truncatingIfNeeded: next())
    case 7: return 0xFEED_BEEF
    default: return 1 << UInt32(below(32))
    }
  }

  /// A hostile 16-bit value.
  mutating func hostileU16() -> UInt16 {
    switch below(5) {
    case 0: return 0
    case 1: return .max
    case 2: return 1
    case 3: return 1 << 15
    default: return UInt16(truncatingIfNeeded: next())
    }
  }

  /// A hostile 8-bit value.
  mutating func hostileU8() -> UInt8 {
    switch below(5) {
    case 0: return 0
    case 1: return .max
    case 2: return UInt8(below(8))
    case 3: return 0x80
    default: return UInt8(truncatingIfNeeded: next())
    }
  }

  /// A count the library might allocate: small, negative, or so large that no allocation of
  /// it can succeed.
  mutating func hostileCount() -> Int {
    switch below(12) {
    case 0: return 0
    case 1: return 1
    case 2: return -1
    case 3: return .max
    case 4: return .min
    case 5: return .max / 2 &+ below(3)
    case 6: return 1 << (46 &+ below(17))
    case 7: return below(64)
    case 8: return Int(UInt32.max) &* 4096
    case 9: return -4096
    case 10: return .max &- below(64)
    default: return 1 << 20
    }
  }

  /// A length in bytes: mostly sensible page multiples, sometimes hostile.
  mutating func length(hostile percent: Int) -> UInt64 {
    if chance(percent) { return hostileU64() }
    return UInt64(1 &+ below(16)) &* Self.page
  }

  /// An IOVA and a length whose sum overflows 64 bits (or ends exactly at the top).
  mutating func overflowingRange() -> (iova: UInt64, length: UInt64) {
    let iova = UInt64.max &- UInt64(below(4)) &* Self.page &- UInt64(below(2))
    let length = UInt64(1 &+ below(8)) &* Self.page &+ UInt64(below(2))
    return (iova, length)
  }
}
