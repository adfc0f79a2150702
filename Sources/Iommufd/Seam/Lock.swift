import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by one atomic flag.
///
/// The library's own lock instead of `Synchronization.Mutex`: ThreadSanitizer on Linux
/// does not see `Mutex` (a futex it cannot intercept) and reports races under it, while it
/// understands atomic operations, so the stress tests can run under `-sanitize=thread`.
/// Taking and leaving a free lock costs two atomic operations and no call (a pthread
/// mutex cost about 55 instructions a round trip). A waiter yields the processor, then
/// sleeps 100 µs at a time, as the library's gates do: the locks are held for a few
/// instructions, except the one a device holds across an attach or an interrupt change.
final class Lock<State>: @unchecked Sendable {
  private let locked = Atomic<Bool>(false)
  @exclusivity(unchecked) private var state: State  // guarded by `locked`

  init(_ state: State) {
    self.state = state
  }

  /// Runs `body` with the state without taking the lock: only for a caller that keeps
  /// every other user of the state out by other means (each call site says how).
  @inline(__always)
  func withoutLocking<R>(_ body: (inout State) -> R) -> R {
    body(&state)
  }

  /// Runs `body` with the state, holding the lock.
  @inline(__always)
  func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
    if !locked.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged { waitForLock() }
    defer { locked.store(false, ordering: .releasing) }
    return try body(&state)
  }

  /// Takes the lock once its holder leaves it.
  @inline(never)
  private func waitForLock() {
    var waited = 0
    repeat {
      waited += 1
      if waited < 64 { sched_yield() } else { usleep(100) }
    } while locked.load(ordering: .relaxed)
      || !locked.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
  }
}
