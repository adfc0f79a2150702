import Synchronization

/// The live ``DMAMapping``s of an address space, sorted by IOVA, so that a mapping whose
/// range was unmapped through the space (or mapped anew) can no longer unmap what is there
/// now.
///
/// Each entry is a range and a token, the number the mapping was given when it was
/// recorded: a mapping owns its range while an entry with its range and token is here.
/// The space reports each successful map (``mapped(_:)``: mappings overlapping the new one
/// are gone) and unmap (``unmapped(_:)``: mappings inside the range are gone). Thread-safe.
final class MappingRegistry: Sendable {
  /// The space's own maps and copies are readers, each from its ioctl to its report here;
  /// its unmaps and a mapping's unmap or release (from its check that it still owns its
  /// range to its ioctl and the removal of its entry) are writers. So that check never
  /// sees a range the kernel already gave to someone else, and no map falls between an
  /// unmap's ioctl and its report.
  let changes = ReaderWriterGate()
  /// The entries: changed by readers of ``changes`` under the lock, or by its writer
  /// without it (no reader is in then); read by readers under the lock.
  private let state = Lock<State>(State())
  /// How many entries there are, stored with each change: a space whose mappings are all
  /// unsafe (nothing recorded) reports maps and unmaps without taking the lock.
  private let count = Atomic<Int>(0)

  private struct State {
    var entries = Entries()
    /// The token of the last mapping recorded (0: none; tokens start at 1).
    var lastToken: UInt64 = 0
  }

  private struct Entry {
    let range: IOVARange
    let token: UInt64
  }

  /// The entries, sorted by start, in a buffer of this registry's own (freed by its
  /// deinit): a change makes none of the uniqueness and capacity checks of an `Array`.
  /// The registry's searches give every index passed in: below ``count``, or at most
  /// ``count`` for an insert (checked in debug builds only).
  private struct Entries {
    private var base: UnsafeMutablePointer<Entry>
    private var capacity: Int
    private(set) var count = 0

    init() {
      capacity = 8
      base = .allocate(capacity: capacity)
    }

    subscript(index: Int) -> Entry {
      @inline(__always) get {
        assert(index >= 0 && index < count, "entry \(index) of \(count)")
        return base[index]
      }
    }

    /// The last entry's last address, if there is an entry.
    var lastEnd: UInt64? {
      @inline(__always) get { count == 0 ? nil : base[count - 1].range.last }
    }

    @inline(__always)
    mutating func append(_ entry: Entry) {
      if count == capacity { grow() }
      (base + count).initialize(to: entry)
      count &+= 1
    }

    mutating func insert(_ entry: Entry, at index: Int) {
      assert(index >= 0 && index <= count, "insert at \(index) of \(count)")
      if count == capacity { grow() }
      (base + index + 1).moveInitialize(from: base + index, count: count - index)
      (base + index).initialize(to: entry)
      count += 1
    }

    @inline(__always)
    mutating func remove(at index: Int) {
      assert(index >= 0 && index < count, "remove \(index) of \(count)")
      count &-= 1
      if index != count { (base + index).moveInitialize(from: base + (index &+ 1), count: count &- index) }
    }

    mutating func removeSubrange(_ range: Range<Int>) {
      assert(range.lowerBound >= 0 && range.upperBound <= count, "remove \(range) of \(count)")
      (base + range.lowerBound).moveInitialize(from: base + range.upperBound, count: count - range.upperBound)
      count -= range.count
    }

    @inline(never)
    private mutating func grow() {
      let larger = UnsafeMutablePointer<Entry>.allocate(capacity: capacity * 2)
      larger.moveInitialize(from: base, count: count)
      base.deallocate()
      base = larger
      capacity *= 2
    }

    /// Frees the buffer: the last use.
    func deallocate() { base.deallocate() }
  }

  deinit {
    state.withoutLocking { $0.entries.deallocate() }
  }

  /// Records a mapping of `range`, made just now; returns its token. Whatever was
  /// recorded over `range` is gone (as ``mapped(_:)`` reports).
  @inline(__always)
  func add(_ range: IOVARange) -> UInt64 {
    state.withLock { state in
      state.lastToken &+= 1
      let entry = Entry(range: range, token: state.lastToken)
      if state.entries.lastEnd.map({ $0 < range.start }) ?? true {
        state.entries.append(entry)  // the common case: mapped above the others
      } else {
        Self.removeOverlapping(range, from: &state.entries)
        state.entries.insert(entry, at: Self.firstIndex(in: state.entries, startingAbove: range.start))
      }
      count.store(state.entries.count, ordering: .releasing)
      return entry.token
    }
  }

  /// Whether the mapping of `range` with `token` still owns its range. A reader of
  /// ``changes`` (the writer changes the entries without the lock), holding the lock
  /// (other readers add entries under it).
  func contains(_ range: IOVARange, token: UInt64) -> Bool {
    changes.read {
      state.withLock { state in Self.index(of: range, token: token, in: state.entries) != nil }
    }
  }

  /// The index of the entry of the mapping of `range` with `token`, if it still owns its
  /// range. Called only by the writer of ``changes``: every other change of the entries is
  /// made by a reader or the writer, so none runs now, and the lock is not needed; the
  /// index stays valid until the writer changes the entries.
  @inline(__always)
  func indexAsWriter(_ range: IOVARange, token: UInt64) -> Int? {
    if count.load(ordering: .relaxed) == 0 { return nil }
    return state.withoutLocking { state in Self.index(of: range, token: token, in: state.entries) }
  }

  /// Forgets the entry at `index`, from ``indexAsWriter(_:token:)`` in the same span as
  /// the writer of ``changes``.
  @inline(__always)
  func removeAsWriter(at index: Int) {
    state.withoutLocking { state in
      state.entries.remove(at: index)
      count.store(state.entries.count, ordering: .releasing)
    }
  }

  /// The space mapped `range`: whatever was recorded there is gone.
  @inline(__always)
  func mapped(_ range: IOVARange) {
    if count.load(ordering: .acquiring) != 0 { recordMapped(range) }
  }

  @inline(never)
  private func recordMapped(_ range: IOVARange) {
    state.withLock { state in
      Self.removeOverlapping(range, from: &state.entries)
      count.store(state.entries.count, ordering: .releasing)
    }
  }

  /// Removes the entries that overlap `range`.
  private static func removeOverlapping(_ range: IOVARange, from entries: inout Entries) {
    let end = firstIndex(in: entries, startingAbove: range.last)
    var first = end
    while first > 0, entries[first - 1].range.last >= range.start { first -= 1 }
    if first < end { entries.removeSubrange(first..<end) }
  }

  /// The space unmapped every mapping inside `range`. The entries inside it are adjacent
  /// (sorted, not overlapping): found by binary search, not a scan.
  @inline(__always)
  func unmapped(_ range: IOVARange) {
    if count.load(ordering: .acquiring) != 0 { recordUnmapped(range) }
  }

  @inline(never)
  private func recordUnmapped(_ range: IOVARange) {
    state.withLock { state in
      let first = range.start == 0 ? 0 : Self.firstIndex(in: state.entries, startingAbove: range.start - 1)
      let end = Self.firstIndex(in: state.entries, startingAbove: range.last)
      var stop = first  // the ends ascend too: those inside the range come first
      while stop < end, state.entries[stop].range.last <= range.last { stop += 1 }
      if first == stop { return }
      state.entries.removeSubrange(first..<stop)
      count.store(state.entries.count, ordering: .releasing)
    }
  }

  /// The index of the entry of `range` with `token`, if there is one.
  @inline(__always)
  private static func index(of range: IOVARange, token: UInt64, in entries: Entries) -> Int? {
    // The last entry first: mappings mostly go in the order they came, or one at a time.
    let last = entries.count &- 1
    if last >= 0, entries[last].token == token, entries[last].range == range { return last }
    let index = firstIndex(in: entries, startingAbove: range.start) &- 1
    guard index >= 0, entries[index].range == range, entries[index].token == token else { return nil }
    return index
  }

  /// The index of the first entry that starts above `address`.
  @inline(__always)
  private static func firstIndex(in entries: Entries, startingAbove address: UInt64) -> Int {
    var low = 0
    var high = entries.count
    while low < high {
      let middle = (low &+ high) &>> 1  // both at most the count: no overflow
      if entries[middle].range.start <= address { low = middle &+ 1 } else { high = middle }
    }
    return low
  }
}

/// An address space of this library that records its ``DMAMapping``s.
protocol MappingTracking: DMAAddressSpace {
  /// Which space this is, for the mappings it records.
  static var recorder: DMAMapping.Recorder { get }
  /// The space's mappings.
  var mappings: MappingRegistry { get }
  /// Maps without taking ``mappings``' gate or reporting to it (the caller does both).
  func mapUnrecorded(address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement, access: DMAAccess)
    throws(IommufdError) -> UInt64
}

extension MappingTracking {
  /// A map by address (the space's `unsafeMap`): as a reader of the record's changes, with
  /// whatever the record had over the range forgotten.
  @inline(__always)
  func mapReported(
    address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement, access: DMAAccess
  ) throws(IommufdError) -> UInt64 {
    try mappings.changes.read { () throws(IommufdError) -> UInt64 in
      let iova = try mapUnrecorded(address: address, length: length, at: placement, access: access)
      mappings.mapped(IOVARange(start: iova, last: iova &+ (length &- 1)))
      return iova
    }
  }
}
