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

  /// Runs `body` holding the lock.
  func run<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }
}
