import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The simulated kernel's own thread and its listeners: what the kernel does outside any
/// system call.
///
/// It runs device work scheduled for later (a device model's timer, as edu completes a DMA
/// 100 ms after it starts) and listens on eventfds (the INTx unmask eventfd of
/// `VFIO_DEVICE_SET_IRQS`, which KVM's resampling irqfd writes).
///
/// Listening is done as the kernel's virqfd does it, as closely as user space can: each
/// eventfd is registered edge-triggered in an epoll set, by its caller's descriptor and
/// without a reference to it, so closing the caller's last descriptor drops the listener
/// (as EPOLLHUP does in the kernel); each signal consumes the count as a kernel read does
/// and runs its handler once. The kernel runs that handler inside the `write(2)` that
/// signals; the simulator runs it at the next simulated system call or device access
/// (``drain(_:)``, so every call through the simulator sees it done, a write through the
/// seam included) or, for a writer outside the simulator, on this thread a moment later.
///
/// Work runs under the kernel's lock, like everything the kernel does; the thread sleeps in
/// `poll(2)` without it. It starts with the first piece of work and ends when none is left,
/// so an idle simulated kernel has no thread; it holds the kernel's state only while it
/// runs work, and ends when the kernel goes (its pending work dropped, see ``shutDown()``).
final class SimulatedWorker: @unchecked Sendable {
  /// What a listener is for: the unmask eventfd of device `device`.
  enum WatchKey: Hashable {
    case intxUnmask(device: Int)

    /// The key as epoll's user data.
    var tag: UInt64 {
      switch self {
      case .intxUnmask(let device): UInt64(UInt(bitPattern: device))
      }
    }
  }

  /// A listened eventfd: the caller's descriptor number, and what to do on each signal.
  struct Watch {
    var fd: Int32
    var handler: (SimulatedKernel.State) -> Void
  }

  /// The kernel's lock, which guards everything here.
  private let lock: KernelLock
  // The variables below are guarded by that lock, which every user holds: unchecked, so
  // that the look for signalled listeners before each simulated call costs no dynamic
  // exclusivity checks.
  /// The state work runs on; nil once the kernel is gone.
  private weak var state: SimulatedKernel.State?
  @exclusivity(unchecked) private var stopped = false
  @exclusivity(unchecked) private var watches: [WatchKey: Watch] = [:]
  /// Scheduled work, by deadline (`CLOCK_MONOTONIC` nanoseconds), in the order it was asked
  /// for within a deadline.
  @exclusivity(unchecked) private var timers: [(deadline: UInt64, sequence: UInt64, work: (SimulatedKernel.State) -> Void)] = []
  @exclusivity(unchecked) private var nextSequence: UInt64 = 0
  /// The epoll set of listened eventfds; made with the first.
  @exclusivity(unchecked) private var epollFD: Int32 = -1
  /// An eventfd that wakes the thread when the work changes.
  @exclusivity(unchecked) private var wakeFD: Int32 = -1
  @exclusivity(unchecked) private var running = false
  /// The thread while it runs (to recognise a call from its own work).
  @exclusivity(unchecked) private var thread: pthread_t?

  init(lock: KernelLock) {
    self.lock = lock
  }

  deinit {
    if epollFD >= 0 { _ = Glibc.close(epollFD) }
    if wakeFD >= 0 { _ = Glibc.close(wakeFD) }
  }

  /// Attaches the state work runs on (once, as the state is made).
  func attach(_ state: SimulatedKernel.State) { self.state = state }

  /// Drops all work and ends the thread: the kernel is going away. (From the thread's own
  /// work, which already holds the lock, as when that work held the kernel's last reference.)
  func shutDown() {
    if let thread, pthread_equal(thread, pthread_self()) != 0 {
      stopAll()
    } else {
      lock.run { stopAll() }
    }
  }

  private func stopAll() {
    stopped = true
    for watch in watches.values { unregister(watch.fd) }
    watches = [:]
    timers = []
    if running { signalWake() }
  }

  // MARK: Listeners (under the kernel's lock)

  /// Whether `key` has a listener whose eventfd is still open (a listener whose caller
  /// closed the eventfd is dropped, as the kernel drops its virqfd on EPOLLHUP).
  func isWatching(_ key: WatchKey) -> Bool {
    guard let watch = watches[key] else { return false }
    guard isRegistered(watch.fd, tag: key.tag) else {
      watches[key] = nil
      return false
    }
    return true
  }

  /// Listens on the caller's eventfd `fd` for `key`, running `handler` once per signal.
  /// Fails with the errno of `epoll_ctl` (for a descriptor that is not open, EBADF).
  func watch(
    _ key: WatchKey, fd: Int32, in state: SimulatedKernel.State, handler: @escaping (SimulatedKernel.State) -> Void
  ) throws(Errno) {
    try ensureDescriptors()
    if let old = watches.removeValue(forKey: key) { unregister(old.fd) }
    var event = epoll_event(events: EPOLLIN.rawValue | EPOLLET.rawValue, data: epoll_data_t(u64: key.tag))
    guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else { throw Errno(rawValue: Glibc.errno) }
    watches[key] = Watch(fd: fd, handler: handler)
    // The signal already pending when the listener comes is not one to act on here: the
    // caller handles it (vfio_virqfd_enable runs the handler, without reading the count).
    drain(state, discarding: key.tag)
    wake(state)
  }

  /// Stops listening for `key`.
  func unwatch(_ key: WatchKey, in state: SimulatedKernel.State) {
    guard let watch = watches.removeValue(forKey: key) else { return }
    unregister(watch.fd)
    wake(state)
  }

  /// Runs the handler of each listener signalled since the last look, once per signal
  /// seen, consuming the count as the kernel's read does. Cheap when nothing listens.
  @inline(__always)
  func drain(_ state: SimulatedKernel.State, discarding discarded: UInt64? = nil) {
    // Inlined up to here: every simulated call and translation looks, and mostly nothing
    // listens.
    if watches.isEmpty { return }
    drainSignalled(state, discarding: discarded)
  }

  private func drainSignalled(_ state: SimulatedKernel.State, discarding discarded: UInt64?) {
    guard epollFD >= 0, !stopped else { return }
    var events = [epoll_event](repeating: epoll_event(), count: 16)
    while true {
      let count = Int(epoll_wait(epollFD, &events, Int32(events.count), 0))
      guard count > 0 else { return }
      for event in events.prefix(count) where event.data.u64 != discarded {
        guard let (key, watch) = watches.first(where: { $0.key.tag == event.data.u64 }) else { continue }
        // The number may name another file by now: act only if it is still this one.
        guard isRegistered(watch.fd, tag: key.tag) else {
          watches[key] = nil
          continue
        }
        var counter: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &counter) { ciommufd_read_nowait(watch.fd, $0.baseAddress, 8) }
        watch.handler(state)
      }
      if count < events.count { return }
    }
  }

  /// Whether descriptor `fd` still names the file registered under `tag`: `EPOLL_CTL_MOD`
  /// finds the pair of file and number, else ENOENT (another file) or EBADF (closed).
  private func isRegistered(_ fd: Int32, tag: UInt64) -> Bool {
    var event = epoll_event(events: EPOLLIN.rawValue | EPOLLET.rawValue, data: epoll_data_t(u64: tag))
    return epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) == 0
  }

  private func unregister(_ fd: Int32) {
    var event = epoll_event()
    _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &event)  // gone already if the caller closed it
  }

  // MARK: Timers (under the kernel's lock)

  /// Runs `work` under the kernel's lock once `nanoseconds` have passed.
  func schedule(after nanoseconds: UInt64, in state: SimulatedKernel.State, _ work: @escaping (SimulatedKernel.State) -> Void) {
    guard !stopped else { return }
    let (deadline, overflow) = Self.now().addingReportingOverflow(nanoseconds)
    timers.append((overflow ? .max : deadline, nextSequence, work))
    nextSequence &+= 1
    wake(state)
  }

  private static func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
  }

  /// Runs the work that was due when the pass began, earliest first (work it schedules
  /// waits for the next pass, so work that reschedules itself cannot hold the lock).
  private func runDueTimers(_ state: SimulatedKernel.State) {
    let now = Self.now()
    var due = timers.filter { $0.deadline <= now }
    guard !due.isEmpty else { return }
    timers.removeAll { $0.deadline <= now }
    due.sort { ($0.deadline, $0.sequence) < ($1.deadline, $1.sequence) }
    for item in due where !stopped { item.work(state) }
  }

  // MARK: The thread

  private func ensureDescriptors() throws(Errno) {
    // EFD_CLOEXEC and EFD_NONBLOCK are O_CLOEXEC and O_NONBLOCK.
    if wakeFD < 0 { wakeFD = ciommufd_eventfd(0, Int32(O_CLOEXEC | O_NONBLOCK)) }
    if epollFD < 0 { epollFD = epoll_create1(Int32(EPOLL_CLOEXEC)) }
    guard wakeFD >= 0, epollFD >= 0 else { throw Errno(rawValue: Glibc.errno) }
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
    do throws(Errno) { try ensureDescriptors() } catch { return }
    running = true
    let context = Unmanaged.passRetained(self).toOpaque()
    var created = pthread_t()
    let result = pthread_create(&created, nil, { context in
      Unmanaged<SimulatedWorker>.fromOpaque(context!).takeRetainedValue().loop()
      return nil
    }, context)
    if result == 0 {
      thread = created
      pthread_detach(created)
    } else {
      Unmanaged<SimulatedWorker>.fromOpaque(context).release()
      running = false
    }
  }

  /// The thread: run due work and signalled listeners, then sleep until a listener is
  /// signalled, the next deadline passes, or the work changes. Ends when no work is left.
  private func loop() {
    while true {
      let plan: (timeout: Int32, wake: Int32, epoll: Int32)? = lock.run {
        if let state, !stopped {
          drain(state)
          runDueTimers(state)
        }
        guard !stopped, state != nil, !watches.isEmpty || !timers.isEmpty else {
          // Idle: the thread ends and its descriptors close (made again with new work).
          running = false
          thread = nil
          if watches.isEmpty {
            if epollFD >= 0 { _ = Glibc.close(epollFD) }
            epollFD = -1
          }
          if wakeFD >= 0 { _ = Glibc.close(wakeFD) }
          wakeFD = -1
          return nil
        }
        var timeout: Int32 = -1
        if let next = timers.map(\.deadline).min() {
          let now = Self.now()
          timeout = next <= now ? 0 : Int32(clamping: (next - now + 999_999) / 1_000_000)
        }
        return (timeout, wakeFD, epollFD)  // only this thread closes them, when it ends
      }
      guard let plan else { return }
      var fds = [pollfd(fd: plan.wake, events: Int16(POLLIN), revents: 0), pollfd(fd: plan.epoll, events: Int16(POLLIN), revents: 0)]
      _ = Glibc.poll(&fds, nfds_t(fds.count), plan.timeout)
      if fds[0].revents & Int16(POLLIN) != 0 {
        var counter: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &counter) { Glibc.read(plan.wake, $0.baseAddress, 8) }
      }
    }
  }
}
