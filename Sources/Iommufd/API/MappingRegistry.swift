import Synchronization

/// The live ``DMAMapping``s of an address space, sorted by IOVA, so that a mapping whose
/// range was unmapped through the space (or mapped anew) can no longer unmap what is there
/// now.
///
/// The space reports each successful map (``mapped(_:)``: mappings overlapping the new one
/// are gone) and unmap (``unmapped(_:)``: mappings inside the range are gone). Thread-safe.
final class MappingRegistry: Sendable {
  /// The space's own maps and copies are readers, each from its ioctl to its report here;
  /// its unmaps and a mapping's unmap (from its check that it still owns its range to its
  /// ioctl) are writers. So that check never sees a range the kernel already gave to
  /// someone else, and no map falls between an unmap's ioctl and its report.
  let changes = ReaderWriterGate()
  private let entries = Lock<[Entry]>([])
  /// How many entries there are, written under the lock: a space whose mappings are all
  /// unsafe (nothing recorded) reports maps and unmaps without taking the lock.
  private let count = Atomic<Int>(0)

  private struct Entry {
    let range: IOVARange
    /// The mapping, compared by identity without loading the weak reference: a load makes
    /// a strong reference, and if it were the last, the mapping's deinit would run under
    /// the lock. The mapping removes its entry before it is gone, so no other object can
    /// have this identity while the entry exists.
    let identity: ObjectIdentifier
    weak var mapping: DMAMapping?
  }

  /// Records `mapping`, made just now.
  func add(_ mapping: DMAMapping) {
    entries.withLock { entries in
      let index = Self.firstIndex(in: entries, startingAbove: mapping.range.start)
      entries.insert(Entry(range: mapping.range, identity: ObjectIdentifier(mapping), mapping: mapping), at: index)
      count.store(entries.count, ordering: .releasing)
    }
  }

  /// Forgets `mapping` (it unmapped itself, or is being released), if it is recorded.
  func remove(_ mapping: DMAMapping) {
    if count.load(ordering: .acquiring) == 0 { return }
    entries.withLock { entries in
      guard let index = Self.index(of: mapping, in: entries) else { return }
      entries.remove(at: index)
      count.store(entries.count, ordering: .releasing)
    }
  }

  /// Whether `mapping` is still recorded: a space's unmap removes the entries in its range
  /// even where it cannot mark a mapping that is being released as unmapped.
  func records(_ mapping: DMAMapping) -> Bool {
    entries.withLock { Self.index(of: mapping, in: $0) != nil }
  }

  /// The index of `mapping`'s entry, by its range and identity.
  private static func index(of mapping: DMAMapping, in entries: [Entry]) -> Int? {
    let index = firstIndex(in: entries, startingAbove: mapping.range.start) - 1
    guard index >= 0, entries[index].range == mapping.range, entries[index].identity == ObjectIdentifier(mapping) else { return nil }
    return index
  }

  /// The space mapped `range`: whatever was recorded there is gone.
  @inline(__always)
  func mapped(_ range: IOVARange) {
    if count.load(ordering: .acquiring) != 0 { recordMapped(range) }
  }

  @inline(never)
  private func recordMapped(_ range: IOVARange) {
    let gone = entries.withLock { entries -> [DMAMapping] in
      var end = Self.firstIndex(in: entries, startingAbove: range.last)
      var gone: [DMAMapping] = []
      while end > 0, entries[end - 1].range.last >= range.start {
        if let mapping = entries[end - 1].mapping { gone.append(mapping) }
        entries.remove(at: end - 1)
        end -= 1
      }
      count.store(entries.count, ordering: .releasing)
      return gone
    }
    for mapping in gone { mapping.markUnmapped() }
  }

  /// The space unmapped every mapping inside `range`. The entries inside it are adjacent
  /// (sorted, not overlapping): found by binary search, not a scan.
  @inline(__always)
  func unmapped(_ range: IOVARange) {
    if count.load(ordering: .acquiring) != 0 { recordUnmapped(range) }
  }

  @inline(never)
  private func recordUnmapped(_ range: IOVARange) {
    let gone = entries.withLock { entries -> [DMAMapping] in
      let first = range.start == 0 ? 0 : Self.firstIndex(in: entries, startingAbove: range.start - 1)
      let end = Self.firstIndex(in: entries, startingAbove: range.last)
      var stop = first  // the ends ascend too: those inside the range come first
      while stop < end, entries[stop].range.last <= range.last { stop += 1 }
      if first == stop { return [] }
      let gone = entries[first..<stop].compactMap(\.mapping)
      entries.removeSubrange(first..<stop)
      count.store(entries.count, ordering: .releasing)
      return gone
    }
    for mapping in gone { mapping.markUnmapped() }
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

/// An address space of this library that records its ``DMAMapping``s.
protocol MappingTracking: DMAAddressSpace {
  /// The space's mappings.
  var mappings: MappingRegistry { get }
  /// Unmaps exactly one mapping's range, without reporting it to ``mappings``.
  func unmapMapping(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64
}
