import Iommufd
/// Non-overlapping inclusive intervals keyed by their start, kept sorted in chunks so that
/// insert, remove and lookup cost about the same with a thousand or a million entries.
///
/// Each chunk keeps its starts, ends and values in separate arrays, so a lookup's binary
/// search reads only starts (eight to a cache line), and reads them through buffer
/// pointers, with no reference counting. A chunk holds at most `2 * chunkCapacity`
/// entries; a fuller one is split in two halves, each with only the room it uses.
struct AreaMap<Value> {
  struct Entry {
    var start: UInt64
    var last: UInt64
    var value: Value
  }

  private struct Chunk {
    // Starts and ends change only through the methods below, which keep ``count`` in step
    // (values change in place, one at a time, through ``AreaMap/update(start:_:)``).
    private(set) var starts: [UInt64]
    private(set) var lasts: [UInt64]
    var values: [Value]
    /// How many entries there are, kept here as well as in the arrays: a lookup reads it
    /// with the chunk (from the map's array of chunks, which stays in cache) and so goes
    /// straight to its first probe of `starts` (the array's own count is in its header,
    /// another cache line, one more miss before the search could start).
    private(set) var count: Int

    init(starts: [UInt64], lasts: [UInt64], values: [Value]) {
      self.starts = starts
      self.lasts = lasts
      self.values = values
      self.count = starts.count
    }

    /// The position of the last entry with start ≤ key, or -1: a binary search that
    /// branches (see ``lastPosition(atOrBefore:in:count:)`` for why).
    func lastAtOrBefore(_ key: UInt64) -> Int {
      let count = self.count
      return starts.withUnsafeBufferPointer { starts in
        // Only the base address is used: `count` is the chunk's own.
        let base = starts.baseAddress.unsafelyUnwrapped
        var low = 0
        var high = count
        while low < high {
          let middle = (low &+ high) &>> 1
          if base[middle] <= key { low = middle &+ 1 } else { high = middle }
        }
        return low &- 1
      }
    }

    /// The end of the entry at `index` (below ``count``).
    func last(_ index: Int) -> UInt64 {
      lasts.withUnsafeBufferPointer { $0.baseAddress.unsafelyUnwrapped[index] }
    }

    /// The entry at `index` (below ``count``).
    func entry(_ index: Int) -> Entry {
      let start = starts.withUnsafeBufferPointer { $0.baseAddress.unsafelyUnwrapped[index] }
      let value = values.withUnsafeBufferPointer { $0.baseAddress.unsafelyUnwrapped[index] }
      return Entry(start: start, last: last(index), value: value)
    }

    mutating func insert(_ entry: Entry, at index: Int) {
      starts.insert(entry.start, at: index)
      lasts.insert(entry.last, at: index)
      values.insert(entry.value, at: index)
      count = starts.count
    }

    mutating func remove(at index: Int) -> Entry {
      defer { count = starts.count }
      return Entry(start: starts.remove(at: index), last: lasts.remove(at: index), value: values.remove(at: index))
    }

    /// Moves the entries from `index` on into a new chunk; both keep only the room they use.
    mutating func split(at index: Int) -> Chunk {
      let tail = Chunk(starts: Array(starts[index...]), lasts: Array(lasts[index...]), values: Array(values[index...]))
      starts = Array(starts[..<index])
      lasts = Array(lasts[..<index])
      values = Array(values[..<index])
      count = starts.count
      return tail
    }
  }

  private static var chunkCapacity: Int { 256 }
  private var chunks: [Chunk] = []
  private var firstStarts: [UInt64] = []
  private(set) var count = 0

  var isEmpty: Bool { count == 0 }

  /// The index of the chunk that would hold `key`: the last chunk whose first start ≤ key.
  private func chunkIndex(for key: UInt64) -> Int {
    firstStarts.withUnsafeBufferPointer { starts in
      max(0, lastPosition(atOrBefore: key, in: starts.baseAddress.unsafelyUnwrapped, count: starts.count))
    }
  }

  /// The entry containing `address`, if any.
  func entry(containing address: UInt64) -> Entry? {
    guard !chunks.isEmpty else { return nil }
    let c = chunkIndex(for: address)
    return chunks.withUnsafeBufferPointer { chunks -> Entry? in
      let i = chunks[c].lastAtOrBefore(address)
      guard i >= 0, chunks[c].last(i) >= address else { return nil }
      return chunks[c].entry(i)
    }
  }

  /// Whether any entry intersects `start...last`.
  func intersects(_ start: UInt64, _ last: UInt64) -> Bool {
    guard !chunks.isEmpty else { return false }
    let c = chunkIndex(for: last)
    let i = chunks[c].lastAtOrBefore(last)
    if i >= 0 { return chunks[c].lasts[i] >= start }
    // Every entry of chunk c starts after `last`; so does every later one.
    if c > 0, let previous = chunks[c - 1].lasts.last { return previous >= start }
    return false
  }

  /// The entries intersecting `start...last`, in ascending order.
  func entries(intersecting start: UInt64, _ last: UInt64) -> [Entry] {
    var result: [Entry] = []
    guard !chunks.isEmpty else { return result }
    var c = chunkIndex(for: start)
    var i = max(0, chunks[c].lastAtOrBefore(start))
    while c < chunks.count {
      let chunk = chunks[c]
      while i < chunk.count {
        if chunk.starts[i] > last { return result }
        if chunk.lasts[i] >= start { result.append(chunk.entry(i)) }
        i += 1
      }
      c += 1
      i = 0
    }
    return result
  }

  /// The first entry starting at or after `address`.
  func first(startingAtOrAfter address: UInt64) -> Entry? {
    guard !chunks.isEmpty else { return nil }
    var c = chunkIndex(for: address)
    var i = chunks[c].lastAtOrBefore(address)
    if i >= 0 && chunks[c].starts[i] == address { return chunks[c].entry(i) }
    i += 1
    while c < chunks.count {
      if i < chunks[c].count { return chunks[c].entry(i) }
      c += 1
      i = 0
    }
    return nil
  }

  /// Inserts an entry; the caller has checked it overlaps nothing.
  mutating func insert(start: UInt64, last: UInt64, value: Value) {
    let entry = Entry(start: start, last: last, value: value)
    count += 1
    guard !chunks.isEmpty else {
      chunks = [Chunk(starts: [start], lasts: [last], values: [value])]
      firstStarts = [start]
      return
    }
    let c = chunkIndex(for: start)
    let i = chunks[c].lastAtOrBefore(start) + 1
    chunks[c].insert(entry, at: i)
    firstStarts[c] = chunks[c].starts[0]
    if chunks[c].count > 2 * Self.chunkCapacity {
      let tail = chunks[c].split(at: Self.chunkCapacity)
      chunks.insert(tail, at: c + 1)
      firstStarts.insert(tail.starts[0], at: c + 1)
    }
  }

  /// Removes the entry that starts at `start`; returns it.
  @discardableResult
  mutating func remove(start: UInt64) -> Entry? {
    guard !chunks.isEmpty else { return nil }
    let c = chunkIndex(for: start)
    let i = chunks[c].lastAtOrBefore(start)
    guard i >= 0, chunks[c].starts[i] == start else { return nil }
    let entry = chunks[c].remove(at: i)
    count -= 1
    if chunks[c].count == 0 {
      chunks.remove(at: c)
      firstStarts.remove(at: c)
    } else {
      firstStarts[c] = chunks[c].starts[0]
    }
    return entry
  }

  /// Replaces the value of the entry that starts at `start`.
  mutating func update(start: UInt64, _ body: (inout Value) -> Void) {
    guard !chunks.isEmpty else { return }
    let c = chunkIndex(for: start)
    let i = chunks[c].lastAtOrBefore(start)
    guard i >= 0, chunks[c].starts[i] == start else { return }
    body(&chunks[c].values[i])
  }

  /// Every entry in ascending order.
  var all: [Entry] {
    var result: [Entry] = []
    result.reserveCapacity(count)
    for chunk in chunks {
      for index in 0..<chunk.count { result.append(chunk.entry(index)) }
    }
    return result
  }

  mutating func removeAll() {
    chunks = []
    firstStarts = []
    count = 0
  }
}

/// The position of the last of `count` ascending keys at `keys` that is ≤ `key`, or -1.
///
/// Without a branch on the keys, so a search for random keys mispredicts none: each step
/// probes keys spread evenly over the range and moves on by a part for each probe ≤ key
/// (a sum of comparisons, which LLVM keeps as arithmetic, where it turns a select on one
/// comparison back into a branch). A step's probes are independent loads: fifteen of them
/// while the range is long, then three.
///
/// For keys in cache: the chunks' first starts. With a million live mappings a chunk's
/// starts are in no cache, and there a search that branches is faster (measured: 1.85x the
/// bare search against 2.44x), as the processor speculates past its branches and so
/// overlaps its misses, where this search waits for each step's loads.
@inline(__always)
private func lastPosition(atOrBefore key: UInt64, in keys: UnsafePointer<UInt64>, count: Int) -> Int {
  @inline(__always) func isAtOrBelow(_ index: Int) -> Int { keys[index] <= key ? 1 : 0 }
  guard count > 0 else { return -1 }
  // The answer, if not -1, is in base..<base+remaining, and keys[base] ≤ key once base > 0.
  // Each step keeps the length of its last part (the longest, by up to 15 or 3 keys)
  // whichever part it moves to: that stays in bounds and only adds keys above `key`.
  var base = 0
  var remaining = count
  while remaining > 63 {
    let part = remaining &>> 4
    // Written out: as a loop, LLVM branches on each comparison.
    let p = base &+ part
    let below =
      isAtOrBelow(p) &+ isAtOrBelow(p &+ part) &+ isAtOrBelow(p &+ 2 &* part) &+ isAtOrBelow(p &+ 3 &* part)
      &+ isAtOrBelow(p &+ 4 &* part) &+ isAtOrBelow(p &+ 5 &* part) &+ isAtOrBelow(p &+ 6 &* part)
      &+ isAtOrBelow(p &+ 7 &* part) &+ isAtOrBelow(p &+ 8 &* part) &+ isAtOrBelow(p &+ 9 &* part)
      &+ isAtOrBelow(p &+ 10 &* part) &+ isAtOrBelow(p &+ 11 &* part) &+ isAtOrBelow(p &+ 12 &* part)
      &+ isAtOrBelow(p &+ 13 &* part) &+ isAtOrBelow(p &+ 14 &* part)
    base &+= below &* part
    remaining &-= 15 &* part
  }
  while remaining > 3 {
    let part = remaining &>> 2
    base &+= (isAtOrBelow(base &+ part) &+ isAtOrBelow(base &+ 2 &* part) &+ isAtOrBelow(base &+ 3 &* part)) &* part
    remaining &-= 3 &* part
  }
  var last = base &- 1 &+ isAtOrBelow(base)
  if remaining > 1 { last &+= isAtOrBelow(base &+ 1) }
  if remaining > 2 { last &+= isAtOrBelow(base &+ 2) }
  return last
}
