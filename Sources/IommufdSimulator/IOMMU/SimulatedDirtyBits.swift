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
    let chunk = index / Self.wordsPerChunk
    guard var words = chunks[chunk] else { return }
    words[Int(index % Self.wordsPerChunk)] &= ~bits
    chunks[chunk] = words.allSatisfy { $0 == 0 } ? nil : words
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
