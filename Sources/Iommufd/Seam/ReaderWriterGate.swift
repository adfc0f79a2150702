import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Many readers or one writer, on one atomic word: a reader costs two atomic operations,
/// an add and a subtraction.
///
/// Readers come first, as with a default pthread rwlock: a reader may enter while a writer
/// waits (so a reader inside a reader never waits for a writer that waits for it), and the
/// writer starts only at an instant with no reader in, keeping new readers out until it is
/// done. Waiting yields the processor, then sleeps 100 µs at a time (a reader may be in a
/// long call). A writer must not enter as a reader. Stored in place in the object it
/// guards (it cannot be copied), so entering it costs no reference count.
struct ReaderWriterGate: ~Copyable, Sendable {
  /// Bit 0: a writer waits. Bit 1: a writer is in. The bits above: readers in, times 4.
  private let state = Atomic<Int>(0)
  private static var waitingBit: Int { 1 }
  private static var workingBit: Int { 2 }
  private static var reader: Int { 4 }

  /// Runs `body` as a reader.
  @inline(__always)
  func read<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    enterReading()
    defer { leaveReading() }
    return try body()
  }

  /// Enters as a reader (for a span that is no closure, such as an initializer); each
  /// call is paired with one ``leaveReading()``. One atomic add: a reader that finds the
  /// writer at work takes its count back and waits.
  @inline(__always)
  func enterReading() {
    let original = state.wrappingAdd(Self.reader, ordering: .acquiring).oldValue
    if original & Self.workingBit != 0 { enterReadingAfterWriter() }
  }

  /// The rest of ``enterReading()`` for a reader that found the writer at work.
  @inline(never)
  private func enterReadingAfterWriter() {
    var waited = 0
    repeat {
      state.wrappingSubtract(Self.reader, ordering: .relaxed)
      Self.pause(&waited)
    } while state.wrappingAdd(Self.reader, ordering: .acquiring).oldValue & Self.workingBit != 0
  }

  /// Leaves as a reader.
  @inline(__always)
  func leaveReading() {
    state.wrappingSubtract(Self.reader, ordering: .releasing)
  }

  /// Runs `body` as the one writer, with no reader in.
  @inline(__always)
  func write<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    enterWriting()
    defer { leaveWriting() }
    return try body()
  }

  /// Enters as the one writer, once no reader is in (for a span that is no closure); each
  /// call is paired with one ``leaveWriting()``.
  @inline(__always)
  func enterWriting() {
    // No reader and no writer: working at once, in one step.
    if state.compareExchange(expected: 0, desired: Self.workingBit, ordering: .acquiringAndReleasing).exchanged { return }
    enterWritingContended()
  }

  @inline(never)
  private func enterWritingContended() {
    var current = state.load(ordering: .relaxed)
    var waited = 0
    while true {
      if current & (Self.waitingBit | Self.workingBit) != 0 {
        Self.pause(&waited)
        current = state.load(ordering: .relaxed)
        continue
      }
      let (exchanged, original) = state.compareExchange(expected: current, desired: current | Self.waitingBit, ordering: .acquiringAndReleasing)
      if exchanged { break }
      current = original
    }
    waited = 0
    while !state.compareExchange(expected: Self.waitingBit, desired: Self.workingBit, ordering: .acquiringAndReleasing).exchanged {
      Self.pause(&waited)
    }
  }

  /// Leaves as the writer: a subtraction, not a store, which keeps the counts of readers
  /// passing by (each takes its count back).
  @inline(__always)
  func leaveWriting() {
    state.wrappingSubtract(Self.workingBit, ordering: .releasing)
  }

  private static func pause(_ waited: inout Int) {
    waited += 1
    if waited < 64 { sched_yield() } else { usleep(100) }
  }
}
