/// Non-overlapping inclusive intervals keyed by their start, kept sorted in chunks so that
/// insert, remove and lookup cost about the same with a thousand or a million entries.
struct AreaMap<Value> {
  struct Entry {
    var start: UInt64
    var last: UInt64
    var value: Value
  }

  private static var chunkCapacity: Int { 256 }
  private var chunks: [[Entry]] = []
  private var firstStarts: [UInt64] = []
  private(set) var count = 0

  var isEmpty: Bool { count == 0 }

  /// The index of the chunk that would hold `key`: the last chunk whose first start ≤ key.
  private func chunkIndex(for key: UInt64) -> Int {
    var low = 0
    var high = firstStarts.count
    while low < high {
      let mid = (low + high) / 2
      if firstStarts[mid] <= key { low = mid + 1 } else { high = mid }
    }
    return max(0, low - 1)
  }

  /// The position of the last entry with start ≤ key in `chunk`, or -1.
  private static func lastAtOrBefore(_ key: UInt64, in chunk: [Entry]) -> Int {
    var low = 0
    var high = chunk.count
    while low < high {
      let mid = (low + high) / 2
      if chunk[mid].start <= key { low = mid + 1 } else { high = mid }
    }
    return low - 1
  }

  /// The entry containing `address`, if any.
  func entry(containing address: UInt64) -> Entry? {
    guard !chunks.isEmpty else { return nil }
    let c = chunkIndex(for: address)
    let i = Self.lastAtOrBefore(address, in: chunks[c])
    guard i >= 0 else { return nil }
    let entry = chunks[c][i]
    return entry.last >= address ? entry : nil
  }

  /// Whether any entry intersects `start...last`.
  func intersects(_ start: UInt64, _ last: UInt64) -> Bool {
    guard !chunks.isEmpty else { return false }
    let c = chunkIndex(for: last)
    let i = Self.lastAtOrBefore(last, in: chunks[c])
    if i >= 0 { return chunks[c][i].last >= start }
    // Every entry of chunk c starts after `last`; so does every later one.
    if c > 0, let previous = chunks[c - 1].last { return previous.last >= start }
    return false
  }

  /// The entries intersecting `start...last`, in ascending order.
  func entries(intersecting start: UInt64, _ last: UInt64) -> [Entry] {
    var result: [Entry] = []
    guard !chunks.isEmpty else { return result }
    var c = chunkIndex(for: start)
    var i = max(0, Self.lastAtOrBefore(start, in: chunks[c]))
    while c < chunks.count {
      let chunk = chunks[c]
      while i < chunk.count {
        let entry = chunk[i]
        if entry.start > last { return result }
        if entry.last >= start { result.append(entry) }
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
    var i = Self.lastAtOrBefore(address, in: chunks[c])
    if i >= 0 && chunks[c][i].start == address { return chunks[c][i] }
    i += 1
    while c < chunks.count {
      if i < chunks[c].count { return chunks[c][i] }
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
      chunks = [[entry]]
      firstStarts = [start]
      return
    }
    let c = chunkIndex(for: start)
    let i = Self.lastAtOrBefore(start, in: chunks[c]) + 1
    chunks[c].insert(entry, at: i)
    firstStarts[c] = chunks[c][0].start
    if chunks[c].count > 2 * Self.chunkCapacity {
      let tail = Array(chunks[c][Self.chunkCapacity...])
      chunks[c].removeSubrange(Self.chunkCapacity...)
      chunks.insert(tail, at: c + 1)
      firstStarts.insert(tail[0].start, at: c + 1)
    }
  }

  /// Removes the entry that starts at `start`; returns it.
  @discardableResult
  mutating func remove(start: UInt64) -> Entry? {
    guard !chunks.isEmpty else { return nil }
    let c = chunkIndex(for: start)
    let i = Self.lastAtOrBefore(start, in: chunks[c])
    guard i >= 0, chunks[c][i].start == start else { return nil }
    let entry = chunks[c].remove(at: i)
    count -= 1
    if chunks[c].isEmpty {
      chunks.remove(at: c)
      firstStarts.remove(at: c)
    } else {
      firstStarts[c] = chunks[c][0].start
    }
    return entry
  }

  /// Replaces the value of the entry that starts at `start`.
  mutating func update(start: UInt64, _ body: (inout Value) -> Void) {
    guard !chunks.isEmpty else { return }
    let c = chunkIndex(for: start)
    let i = Self.lastAtOrBefore(start, in: chunks[c])
    guard i >= 0, chunks[c][i].start == start else { return }
    body(&chunks[c][i].value)
  }

  /// Every entry in ascending order.
  var all: [Entry] { chunks.flatMap { $0 } }

  mutating func removeAll() {
    chunks = []
    firstStarts = []
    count = 0
  }
}
