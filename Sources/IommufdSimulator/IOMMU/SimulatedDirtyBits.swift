import Iommufd
/// The dirty entries of a domain: one bit per page-table entry (IOVA / entry size), kept in
/// chunks of 64 words (4096 entries) by chunk number, so the IOVA space stays sparse while
/// a harvest looks up one chunk per 4096 entries and skips absent chunks whole.
struct SimulatedDirtyBits {
  private var chunks: [UInt64: [UInt64]] = [:]
  private static var wordsPerChunk: UInt64 { 64 }

  /// Whether no entry is dirty.
  var isEmpty: Bool { chunks.isEmpty }

  /// Word `index`: the bits of entries `index * 64 ..< index * 64 + 64`.
  func word(_ index: UInt64) -> UInt64 {
    chunks[index / Self.wordsPerChunk]?[Int(index % Self.wordsPerChunk)] ?? 0
  }

  /// Whether `entry` is dirty.
  func contains(_ entry: UInt64) -> Bool { word(entry / 64) & (1 << (entry % 64)) != 0 }

  /// Marks `entry` dirty.
  mutating func insert(_ entry: UInt64) {
    let index = entry / 64
    chunks[index / Self.wordsPerChunk, default: [UInt64](repeating: 0, count: Int(Self.wordsPerChunk))][Int(index % Self.wordsPerChunk)] |=
      1 << (entry % 64)
  }

  /// Clears `bits` of word `index` (a chunk left empty goes).
  mutating func clear(_ bits: UInt64, inWord index: UInt64) {
    guard let position = chunks.index(forKey: index / Self.wordsPerChunk) else { return }
    let offset = Int(index % Self.wordsPerChunk)
    chunks.values[position][offset] &= ~bits  // in place: no copy of the chunk
    if chunks.values[position][offset] == 0 && chunks.values[position].allSatisfy({ $0 == 0 }) { chunks.remove(at: position) }
  }

  /// Clears `entry`.
  mutating func remove(_ entry: UInt64) { clear(1 << (entry % 64), inWord: entry / 64) }

  /// Clears entries `first...last`, touching only the chunks that exist.
  mutating func removeRange(_ first: UInt64, _ last: UInt64) {
    guard !chunks.isEmpty, first <= last else { return }
    let entriesPerChunk = Self.wordsPerChunk * 64
    let (firstChunk, lastChunk) = (first / entriesPerChunk, last / entriesPerChunk)
    let touched = lastChunk - firstChunk >= UInt64(chunks.count)
      ? chunks.keys.filter { $0 >= firstChunk && $0 <= lastChunk }
      : (firstChunk...lastChunk).filter { chunks[$0] != nil }
    for chunk in touched {
      guard var words = chunks[chunk] else { continue }
      let base = chunk * entriesPerChunk
      for index in 0..<Int(Self.wordsPerChunk) {
        let wordFirst = base + UInt64(index) * 64
        let low = max(first, wordFirst), high = min(last, wordFirst + 63)
        guard low <= high else { continue }
        let width = high - low + 1
        let mask = (width == 64 ? UInt64.max : (UInt64(1) << width) - 1) << (low - wordFirst)
        words[index] &= ~mask
      }
      chunks[chunk] = words.allSatisfy { $0 == 0 } ? nil : words
    }
  }

  /// Clears every entry.
  mutating func removeAll() { chunks = [:] }

  /// Hands `merge` the dirty bits of entries `first...last` as bitmap words, where entry
  /// `base` is bit 0 (`first >= base`): `merge(slot, bits)` ORs `bits` into word `slot`
  /// (at most one word past bit `last - base`; never with 0). Clears them when `clear`: the
  /// harvest of a bitmap whose page is the entry size, a word at a time.
  @inline(__always)
  mutating func harvest(_ first: UInt64, through last: UInt64, base: UInt64, clear: Bool, merge: (_ slot: Int, _ bits: UInt64) -> Void) {
    harvestWords(from: first / 64, through: last / 64) { index, word in
      var mask = UInt64.max
      if index == first / 64 { mask &= UInt64.max << (first % 64) }
      if index == last / 64, last % 64 != 63 { mask &= (1 << (last % 64 + 1)) - 1 }
      let bits = word & mask
      guard bits != 0 else { return 0 }
      let position = Int64(bitPattern: index &* 64 &- base)
      if position < 0 {
        if bits >> UInt64(-position) != 0 { merge(0, bits >> UInt64(-position)) }
      } else {
        let (slot, shift) = (Int(position / 64), UInt64(position % 64))
        merge(slot, bits << shift)
        if shift != 0, bits >> (64 - shift) != 0 { merge(slot + 1, bits >> (64 - shift)) }
      }
      return clear ? bits : 0
    }
  }

  /// Calls `body` with each word of `first...last` (word indexes) that has a dirty entry, in
  /// order, and clears the bits `body` returns. One lookup per chunk of 64 words, and the
  /// words are changed in place: the harvest's hot path. `body` must not touch this value.
  @inline(__always)
  mutating func harvestWords(from first: UInt64, through last: UInt64, _ body: (_ index: UInt64, _ word: UInt64) -> UInt64) {
    guard first <= last, !chunks.isEmpty else { return }
    let (firstChunk, lastChunk) = (first / Self.wordsPerChunk, last / Self.wordsPerChunk)
    let present = lastChunk - firstChunk >= UInt64(chunks.count)
      ? chunks.keys.filter { $0 >= firstChunk && $0 <= lastChunk }.sorted()
      : (firstChunk...lastChunk).filter { chunks[$0] != nil }
    for chunk in present {
      guard let position = chunks.index(forKey: chunk) else { continue }
      let base = chunk * Self.wordsPerChunk
      let low = Int(max(first, base) - base), high = Int(min(last, base + Self.wordsPerChunk - 1) - base)
      let cleared = chunks.values[position].withUnsafeMutableBufferPointer { words -> Bool in
        var cleared = false
        for offset in low...high {
          let word = words[offset]
          guard word != 0 else { continue }
          let bits = body(base + UInt64(offset), word) & word
          if bits != 0 {
            words[offset] = word & ~bits
            cleared = true
          }
        }
        return cleared
      }
      if cleared && chunks.values[position].allSatisfy({ $0 == 0 }) { chunks.remove(at: position) }
    }
  }

  /// The first word at or after `index` and at or before `last` with a dirty entry.
  func nextWord(from index: UInt64, through last: UInt64) -> UInt64? {
    var index = index
    while index <= last {
      let chunk = index / Self.wordsPerChunk
      let chunkEnd = min(last, chunk * Self.wordsPerChunk + Self.wordsPerChunk - 1)
      if let words = chunks[chunk] {
        while index <= chunkEnd {
          if words[Int(index % Self.wordsPerChunk)] != 0 { return index }
          index += 1
        }
      } else if chunkEnd == .max {
        return nil
      } else {
        index = chunkEnd + 1
      }
      if index == 0 { return nil }  // wrapped past the last word
    }
    return nil
  }
}
