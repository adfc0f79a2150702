import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The live ``DMAMapping``s of an address space, sorted by IOVA, so that a mapping whose
/// range was unmapped through the space (or mapped anew) can no longer unmap what is there
/// now.
///
/// The space reports each successful map (``mapped(_:)``: mappings overlapping the new one
/// are gone) and unmap (``unmapped(_:)``: mappings inside the range are gone). Thread-safe.
final class MappingRegistry: Sendable {
  /// The space's own maps and copies are readers, each from its ioctl to its report here;
  /// its unmaps and a mapping's unmap (from its check that it still owns its range to its
  /// ioctl, and the removal of its entry) are writers. So that check never sees a range the kernel already gave to
  /// someone else, and no map falls between an unmap's ioctl and its report.
  let changes = ReaderWriterGate()
  private let entries = Lock<[Entry]>([])
  /// How many entries there are, written under the lock: a space whose mappings are all
  /// unsafe (nothing recorded) reports maps and unmaps without taking the lock.
  private let count = Atomic<Int>(0)

  private struct Entry {
    let range: IOVARange
    /// The mapping, without a reference count: the record only clears its ownership flag
    /// (``clearOwnership()``), and a mapping removes its entry as the writer of
    /// ``changes`` before it is freed unless the flag was cleared, which removes the entry
    /// in the same span under the lock. The clear touches the mapping without retaining
    /// it: a mapping being released that sees its flag cleared is freed at once, and a
    /// retain taken on it then would outlive it.
    let mapping: Unmanaged<DMAMapping>

    init(range: IOVARange, mapping: DMAMapping) {
      self.range = range
      self.mapping = .passUnretained(mapping)
    }

    /// Clears the mapping's ownership flag (its last use of the mapping).
    func clearOwnership() {
      mapping._withUnsafeGuaranteedRef { _ = $0.ownership.clear() }
    }

    func names(_ other: DMAMapping) -> Bool { mapping.toOpaque() == Unmanaged.passUnretained(other).toOpaque() }
  }

  /// Records `mapping`, of `range`, made just now.
  func add(_ range: IOVARange, _ mapping: DMAMapping) {
    entries.withLock { entries in
      let entry = Entry(range: range, mapping: mapping)
      if entries.last.map({ $0.range.start < range.start }) ?? true {
        entries.append(entry)  // the common case: mapped above the others
      } else {
        entries.insert(entry, at: Self.firstIndex(in: entries, startingAbove: range.start))
      }
      count.store(entries.count, ordering: .releasing)
    }
  }

  /// Forgets `mapping`, of `range` (it unmapped itself, or is being released), if it is
  /// recorded. Called only by the writer of ``changes``: every other change of the entries
  /// is made by a reader or the writer, so none runs now, and the lock is not needed.
  func removeAsWriter(_ range: IOVARange, _ mapping: DMAMapping) {
    if count.load(ordering: .acquiring) == 0 { return }
    entries.withoutLocking { entries in
      let index = Self.firstIndex(in: entries, startingAbove: range.start) - 1
      guard index >= 0, entries[index].range == range, entries[index].names(mapping) else { return }
      if index == entries.count - 1 { entries.removeLast() } else { entries.remove(at: index) }
      count.store(entries.count, ordering: .releasing)
    }
  }

  /// The space mapped `range`: whatever was recorded there is gone.
  @inline(__always)
  func mapped(_ range: IOVARange) {
    if count.load(ordering: .acquiring) != 0 { recordMapped(range) }
  }

  @inline(never)
  private func recordMapped(_ range: IOVARange) {
    entries.withLock { entries in
      var end = Self.firstIndex(in: entries, startingAbove: range.last)
      while end > 0, entries[end - 1].range.last >= range.start {
        entries[end - 1].clearOwnership()
        entries.remove(at: end - 1)
        end -= 1
      }
      count.store(entries.count, ordering: .releasing)
    }
  }

  /// The space unmapped every mapping inside `range`. The entries inside it are adjacent
  /// (sorted, not overlapping): found by binary search, not a scan.
  @inline(__always)
  func unmapped(_ range: IOVARange) {
    if count.load(ordering: .acquiring) != 0 { recordUnmapped(range) }
  }

  @inline(never)
  private func recordUnmapped(_ range: IOVARange) {
    entries.withLock { entries in
      let first = range.start == 0 ? 0 : Self.firstIndex(in: entries, startingAbove: range.start - 1)
      let end = Self.firstIndex(in: entries, startingAbove: range.last)
      var stop = first  // the ends ascend too: those inside the range come first
      while stop < end, entries[stop].range.last <= range.last { stop += 1 }
      if first == stop { return }
      for entry in entries[first..<stop] { entry.clearOwnership() }
      entries.removeSubrange(first..<stop)
      count.store(entries.count, ordering: .releasing)
    }
  }

  /// The index of the first entry that starts above `address`.
  private static func firstIndex(in entries: [Entry], startingAbove address: UInt64) -> Int {
    var low = 0
    var high = entries.count
    while low < high {
      let middle = (low + high) / 2
      if entries[middle].range.start <= address { low = middle + 1 } else { high = middle }
    }
    return low
  }
}

/// Whether a ``DMAMapping`` still owns its range: one atomic word stored in the mapping,
/// which its space's record clears when the space takes the range back. Bit 1 serialises
/// unmaps through a space that keeps no records.
struct MappingOwnership: ~Copyable, Sendable {
  private let state = Atomic<Int>(1)
  private static var ownedBit: Int { 1 }
  private static var unmappingBit: Int { 2 }

  /// Whether the range is still the mapping's.
  var isOwned: Bool { state.load(ordering: .acquiring) & Self.ownedBit != 0 }

  /// The range is no longer the mapping's; returns whether it was.
  @discardableResult
  func clear() -> Bool {
    state.bitwiseAnd(~Self.ownedBit, ordering: .acquiringAndReleasing).oldValue & Self.ownedBit != 0
  }

  /// Runs `body` as the one unmap in progress (for spaces that keep no records, whose
  /// unmaps no gate of theirs serialises).
  func serializingUnmaps<R>(_ body: () throws(IommufdError) -> R) throws(IommufdError) -> R {
    var waited = 0
    while state.bitwiseOr(Self.unmappingBit, ordering: .acquiring).oldValue & Self.unmappingBit != 0 {
      waited += 1
      if waited < 64 { sched_yield() } else { usleep(100) }
    }
    defer { state.bitwiseAnd(~Self.unmappingBit, ordering: .releasing) }
    return try body()
  }
}

/// An address space of this library that records its ``DMAMapping``s.
protocol MappingTracking: DMAAddressSpace {
  /// The space's mappings.
  var mappings: MappingRegistry { get }
  /// Unmaps exactly one mapping's range, without reporting it to ``mappings``.
  func unmapMapping(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64
}
