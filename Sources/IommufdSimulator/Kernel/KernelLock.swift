import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The simulated kernel's one lock: every system call runs holding it, as if the whole
/// kernel were a single critical section.
///
/// A `pthread_mutex_t`, not `Synchronization.Mutex`, because ThreadSanitizer on Linux sees
/// the pthread calls and not `Mutex`'s futex: tests that run the API on the simulator
/// under `-sanitize=thread` must see every call ordered by it.
final class KernelLock: @unchecked Sendable {
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>

  init() {
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }

  /// The thread holding the lock (`pthread_self`), or 0: atomic, as other threads read it
  /// to learn that they do not hold the lock.
  private let owner = Atomic<UInt>(0)

  /// Runs `body` holding the lock.
  func run<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    pthread_mutex_lock(mutex)
    owner.store(UInt(pthread_self()), ordering: .relaxed)
    defer {
      owner.store(0, ordering: .relaxed)
      pthread_mutex_unlock(mutex)
    }
    return try body()
  }

  /// Runs `body` holding the lock: taking it, unless this thread holds it already (a device
  /// model's handler, which runs inside a system call, reaching the kernel again).
  func runReentrant<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    if owner.load(ordering: .relaxed) == UInt(pthread_self()) { return try body() }
    return try run(body)
  }
}
