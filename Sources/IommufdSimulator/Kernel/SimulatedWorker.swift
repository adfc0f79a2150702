import CIommufd

#if canImport(Glibc)
import Glibc
#endif

/// The simulated kernel's own thread: what the kernel does outside any system call.
///
/// It runs device work scheduled for later (a device model's timer, as edu completes a DMA
/// 100 ms after it starts) and watches eventfds the kernel listens on (the INTx unmask
/// eventfd of `VFIO_DEVICE_SET_IRQS`, which KVM's resampling irqfd writes). Its work runs
/// under the kernel's lock, like everything the kernel does; it sleeps in `poll(2)` without
/// the lock. The thread starts with the first piece of work and ends when none is left, so
/// an idle simulated kernel has no thread; it holds the kernel's state only while it runs
/// work, and ends when the kernel goes (its pending work dropped, see ``shutDown()``).
final class SimulatedWorker: @unchecked Sendable {
  /// The kernel's lock, which guards everything here.
  private let lock: KernelLock
  /// The state work runs on; nil once the kernel is gone.
  private weak var state: SimulatedKernel.State?
  private var stopped = false

  init(lock: KernelLock) {
    self.lock = lock
  }

  /// Attaches the state work runs on (once, as the state is made).
  func attach(_ state: SimulatedKernel.State) { self.state = state }

  /// Drops all work and ends the thread: the kernel is going away.
  func shutDown() {
    lock.run {
      stopped = true
      for watch in watches.values { _ = Glibc.close(watch.fd) }
      watches = [:]
      timers = []
      if running { signalWake() }
    }
  }

  /// A watched eventfd: its duplicate, and what to do each time it is signalled.
  struct Watch {
    var fd: Int32
    var handler: (SimulatedKernel.State) -> Void
  }

  /// What a watch is for: the unmask eventfd of device `device`.
  enum WatchKey: Hashable {
    case intxUnmask(device: Int)
  }

  private var watches: [WatchKey: Watch] = [:]
  /// Scheduled work, by deadline (`CLOCK_MONOTONIC` nanoseconds), in the order it was asked
  /// for within a deadline.
  private var timers: [(deadline: UInt64, sequence: UInt64, work: (SimulatedKernel.State) -> Void)] = []
  private var nextSequence: UInt64 = 0
  /// An eventfd that wakes the thread when the work changes; made with the thread.
  private var wakeFD: Int32 = -1
  private var running = false

  deinit {
    for watch in watches.values { _ = Glibc.close(watch.fd) }
    if wakeFD >= 0 { _ = Glibc.close(wakeFD) }
  }

  /// Whether `key` is watched.
  func isWatching(_ key: WatchKey) -> Bool { watches[key] != nil }

  /// Watches `fd` (a duplicate the worker now owns) for `key`. Under the kernel's lock.
  func watch(_ key: WatchKey, fd: Int32, in state: SimulatedKernel.State, handler: @escaping (SimulatedKernel.State) -> Void) {
    if let old = watches[key] { _ = Glibc.close(old.fd) }
    watches[key] = Watch(fd: fd, handler: handler)
    wake(state)
  }

  /// Stops watching for `key` and closes the duplicate. Under the kernel's lock.
  func unwatch(_ key: WatchKey, in state: SimulatedKernel.State) {
    guard let watch = watches.removeValue(forKey: key) else { return }
    _ = Glibc.close(watch.fd)
    wake(state)
  }

  /// Runs `work` under the kernel's lock once `nanoseconds` have passed. Under the lock.
  func schedule(after nanoseconds: UInt64, in state: SimulatedKernel.State, _ work: @escaping (SimulatedKernel.State) -> Void) {
    let (deadline, overflow) = Self.now().addingReportingOverflow(nanoseconds)
    timers.append((overflow ? .max : deadline, nextSequence, work))
    nextSequence &+= 1
    wake(state)
  }

  /// Work scheduled and not yet run.
  var scheduledCount: Int { timers.count }

  private static func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
  }

  private func signalWake() {
    var one: UInt64 = 1
    _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
  }

  /// Starts the thread if it is not running, else makes it look at the work again.
  private func wake(_ state: SimulatedKernel.State) {
    if running {
      signalWake()
      return
    }
    guard !stopped, !watches.isEmpty || !timers.isEmpty else { return }
    // EFD_CLOEXEC and EFD_NONBLOCK are O_CLOEXEC and O_NONBLOCK.
    if wakeFD < 0 { wakeFD = ciommufd_eventfd(0, Int32(O_CLOEXEC | O_NONBLOCK)) }
    guard wakeFD >= 0 else { return }
    running = true
    let context = Unmanaged.passRetained(self).toOpaque()
    var thread = pthread_t()
    let created = pthread_create(&thread, nil, { context in
      Unmanaged<SimulatedWorker>.fromOpaque(context!).takeRetainedValue().loop()
      return nil
    }, context)
    if created == 0 {
      pthread_detach(thread)
    } else {
      Unmanaged<SimulatedWorker>.fromOpaque(context).release()
      running = false
    }
  }

  /// The thread: run due work, then sleep until a watched eventfd is signalled, the next
  /// deadline passes, or the work changes. Ends when no work is left.
  private func loop() {
    while true {
      let plan: (fds: [pollfd], keys: [WatchKey?], timeout: Int32)? = lock.run {
        if let state, !stopped { runDueTimers(state) }
        guard !stopped, state != nil, !watches.isEmpty || !timers.isEmpty else {
          running = false
          return nil
        }
        var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        var keys: [WatchKey?] = [nil]
        for (key, watch) in watches {
          fds.append(pollfd(fd: watch.fd, events: Int16(POLLIN), revents: 0))
          keys.append(key)
        }
        var timeout: Int32 = -1
        if let next = timers.map(\.deadline).min() {
          let now = Self.now()
          timeout = next <= now ? 0 : Int32(clamping: (next - now + 999_999) / 1_000_000)
        }
        return (fds, keys, timeout)
      }
      guard var plan else { return }
      let ready = Glibc.poll(&plan.fds, nfds_t(plan.fds.count), plan.timeout)
      guard ready > 0 else { continue }
      lock.run {
        guard let state, !stopped else { return }
        var counter: UInt64 = 0
        if plan.fds[0].revents & Int16(POLLIN) != 0 {
          _ = withUnsafeMutableBytes(of: &counter) { Glibc.read(wakeFD, $0.baseAddress, 8) }
        }
        for (index, key) in plan.keys.enumerated() where index > 0 && plan.fds[index].revents & Int16(POLLIN) != 0 {
          // Still watched through the same duplicate, and still readable: consume the
          // count (as the kernel's virqfd does) and act once.
          guard let key, let watch = watches[key], watch.fd == plan.fds[index].fd else { continue }
          var check = pollfd(fd: watch.fd, events: Int16(POLLIN), revents: 0)
          guard Glibc.poll(&check, 1, 0) == 1, check.revents & Int16(POLLIN) != 0 else { continue }
          _ = withUnsafeMutableBytes(of: &counter) { Glibc.read(watch.fd, $0.baseAddress, 8) }
          watch.handler(state)
        }
      }
    }
  }

  /// Runs the work whose deadline has passed, earliest first. Under the lock.
  private func runDueTimers(_ state: SimulatedKernel.State) {
    while true {
      let now = Self.now()
      guard let index = timers.indices.filter({ timers[$0].deadline <= now })
        .min(by: { (timers[$0].deadline, timers[$0].sequence) < (timers[$1].deadline, timers[$1].sequence) })
      else { return }
      let work = timers.remove(at: index).work
      work(state)
    }
  }
}
