import Iommufd

import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A pure-Swift model of the iommufd and VFIO device cdevs of Linux 6.12 (or, configured
/// so, 7.2) behind the `SystemCalls` seam: the whole API runs on it unchanged and gets the
/// kernel's results and errnos for the same sequence of calls.
///
/// It decodes the real ioctl numbers and C structs the way the kernel does (struct size
/// rules, unknown flags, reserved fields, object ids and their types), keeps the kernel's
/// object, mapping and pinning state, and hosts ``SimulatedPCIDevice`` models that DMA
/// through the IOAS they are attached to. The rules it follows, and where it deliberately
/// differs, are listed in `Docs/Simulator.md`.
///
/// Descriptors it hands out are real descriptors of `/dev/null` reserved for the simulated
/// files, so their numbers never clash with the process's own; eventfds and anonymous memory
/// are real. Thread-safe: every call runs under one lock, so each ioctl is atomic.
public final class SimulatedKernel: SystemCalls, @unchecked Sendable {
  /// A kernel release whose uAPI the simulator answers with.
  public enum Release: Int, Comparable, Sendable, CustomStringConvertible {
    /// Linux 6.12: the requests that came later answer ENOTTY (or EINVAL for new flags).
    case linux6_12 = 612
    /// Linux 7.2: also `IOMMU_IOAS_MAP_FILE`, `IOMMU_IOAS_CHANGE_PROCESS`, vIOMMU, vDEVICE,
    /// vEVENTQ and PASID attach on device cdevs.
    case linux7_2 = 702

    /// Orders releases by age.
    public static func < (lhs: Release, rhs: Release) -> Bool { lhs.rawValue < rhs.rawValue }

    /// "6.12" or "7.2".
    public var description: String { "\(rawValue / 100).\(rawValue % 100)" }

    /// The release of a `uname -r` string ("6.12.117", "7.2.12+deb13-amd64"), if modelled.
    public init?(kernelVersion: String) {
      let parts = kernelVersion.split(whereSeparator: { !$0.isASCII || !$0.isNumber }).prefix(2).map { Int($0) }
      guard parts.count == 2, let major = parts[0], let minor = parts[1], major < 1000, minor < 100,
        let release = Release(rawValue: major * 100 + minor)
      else { return nil }
      self = release
    }
  }

  /// Platform parameters of the simulated machine.
  public struct Configuration: Sendable {
    /// The kernel release the simulator models.
    public var release: Release = .linux6_12
    /// `PAGE_SIZE`. Page sizes are powers of two: a kernel made with another value (0
    /// included) uses the default instead.
    public var pageSize: UInt64 = 4096
    /// `HPAGE_SIZE` (caps automatic IOVA alignment); a power of two.
    public var hugePageSize: UInt64 = 2 << 20
    /// The smallest IO page of the simulated IOMMU (4096 on VT-d); a power of two.
    public var ioPageSize: UInt64 = 4096
    /// The last IOVA the simulated IOMMU translates (VT-d with 39-bit addresses).
    public var apertureLast: UInt64 = (1 << 39) - 1
    /// `RLIMIT_MEMLOCK` in bytes for pinned pages; `nil` for no limit.
    public var memoryLockLimit: UInt64?
    /// `CAP_IPC_LOCK`: pinned pages are not charged against the limit.
    public var canLockMemory: Bool
    /// `CAP_SYS_RESOURCE`: may change the RLIMIT accounting mode.
    public var canChangeAccounting: Bool
    /// What VT-d reports in `IOMMU_GET_HW_INFO` (`struct iommu_hw_info_vtd`): QEMU 7.2's
    /// `intel-iommu` as the lab's 6.12 kernel reads it.
    public var vtdFlags: UInt32 = 1
    /// The VT-d capability register.
    public var vtdCapability: UInt64 = 0x00D2_008C_2226_0286
    /// The VT-d extended capability register.
    public var vtdExtendedCapability: UInt64 = 0x00F0_0F4A
    /// The simulated VT-d can track dirty pages (as second-stage dirty tracking on recent
    /// hardware can; QEMU's emulation cannot, hence off by default): GET_HW_INFO reports
    /// the capability and HWPT_ALLOC accepts DIRTY_TRACKING.
    public var vtdDirtyTracking = false
    /// `CONFIG_IOMMUFD_TEST`: `IOMMU_TEST_CMD` and its mock IOMMU are available (the
    /// simulated VFIO devices stay behind the simulated VT-d).
    public var selfTest = false
    /// With ``selfTest``: the mock IOMMU can make mock devices (`IOMMU_TEST_OP_MOCK_DOMAIN`):
    /// always on 7.2, and on 6.12 while no real IOMMU driver is active (the lab's mock boot,
    /// where vfio-pci cannot bind a device). Off, MOCK_DOMAIN is EINVAL and the other
    /// self-test ops work: 6.12 with VT-d active (the lab's 6.12 VT-d boot).
    public var mockDevices = true

    /// The defaults of the lab's machine: x86-64, VT-d, and the process's own limits and
    /// privileges (root has CAP_IPC_LOCK and CAP_SYS_RESOURCE).
    public init() {
      var limit = rlimit()
      getrlimit(__rlimit_resource_t(8), &limit)  // RLIMIT_MEMLOCK
      memoryLockLimit = limit.rlim_cur == rlim_t.max ? nil : UInt64(limit.rlim_cur)
      canLockMemory = geteuid() == 0
      canChangeAccounting = geteuid() == 0
    }

    /// The configuration with each page size that is not a power of two (the page size at
    /// least 2, for the mock IOMMU's half pages) replaced by its default.
    var normalized: Configuration {
      var result = self
      if pageSize < 2 || pageSize.nonzeroBitCount != 1 { result.pageSize = 4096 }
      if hugePageSize.nonzeroBitCount != 1 { result.hugePageSize = 2 << 20 }
      if ioPageSize.nonzeroBitCount != 1 { result.ioPageSize = 4096 }
      return result
    }
  }

  /// Where the simulator can be made to fail, for error-path tests (after the kernel's
  /// fail-nth selftest).
  public enum FaultPoint: Sendable, Hashable {
    /// Any ioctl: it fails before doing anything.
    case ioctl
    /// The allocation of a new object id (IOAS, HWPT, device).
    case objectAllocation
    /// Pinning the pages of a mapping.
    case pinning
  }

  /// Guards ``state``: every call runs holding it.
  let lock = KernelLock()
  let state: State
  /// The configuration the simulator was made with.
  public let configuration: Configuration

  /// Creates a simulated machine with `devices` on its root bus, which appear as
  /// `/dev/vfio/devices/vfio0`, `vfio1`, ... in order, the functions behind `rootPorts`
  /// (``SimulatedRootPort``: what a hot reset reaches) as the cdevs after them, and the mdev parents
  /// `mediatedParents` (such as ``SimulatedMediatedParent/mtty()``), whose mediated devices
  /// take the cdev numbers after them as they are created.
  /// Page sizes of `configuration` that are not powers of two are replaced by the defaults
  /// (see ``configuration``).
  public init(
    configuration: Configuration = Configuration(), devices: [SimulatedPCIDevice] = [], rootPorts: [SimulatedRootPort] = [],
    mediatedParents: [SimulatedMediatedParent] = []
  ) {
    let configuration = configuration.normalized
    self.configuration = configuration
    self.state = State(configuration: configuration, devices: devices, rootPorts: rootPorts, mediatedParents: mediatedParents, lock: lock)
  }

  deinit {
    state.worker.shutDown()  // device work still scheduled is dropped with the kernel
  }

  /// The cdev path of device number `index`.
  public static func devicePath(_ index: Int) -> FilePath { FilePath("/dev/vfio/devices/vfio\(index)") }

  /// Pages pinned for DMA right now (shared pages counted once).
  public var pinnedPages: UInt64 { locked { $0.pinnedPages } }

  /// The copies between user memory and simulated kernels (each a `process_vm_readv` or
  /// `process_vm_writev`, as the kernel's `copy_from_user` or `copy_to_user`) made in this
  /// process so far, by every simulated kernel: the main cost of a simulated ioctl.
  public static var userMemoryCopies: Int { copyCount.load(ordering: .relaxed) }

  /// Pinned pages charged against `RLIMIT_MEMLOCK` right now.
  public var chargedPages: UInt64 { locked { $0.chargedPages } }

  /// Descriptors of simulated files (iommufd contexts and device cdevs) open right now.
  public var openFileCount: Int { locked { $0.files.count } }

  /// Device DMA refused by the simulated IOMMU, oldest first.
  public var dmaFaults: [SimulatedDMAFault] { locked { $0.dmaFaults } }

  /// Lets device `device` (its cdev number) read `buffer.count` bytes at `iova` through the
  /// IOMMU, as the device's own DMA would. Returns false, and records a DMA fault, where the
  /// device may not read (no such device, not attached, bus mastering off, not mapped
  /// readable).
  public func deviceRead(device: Int, iova: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
    locked { $0.dma(number: device, iova: iova, buffer: buffer, isWrite: false) }
  }

  /// Lets device `device` write `buffer` at `iova` through the IOMMU; false, and a recorded
  /// fault, where it may not (no such device, ...; nothing is written then).
  public func deviceWrite(device: Int, iova: UInt64, from buffer: UnsafeRawBufferPointer) -> Bool {
    locked { $0.dma(number: device, iova: iova, buffer: UnsafeMutableRawBufferPointer(mutating: buffer), isWrite: true) }
  }

  /// The user address that `iova` of IOAS `ioas` in the iommufd context open as `iommufd`
  /// translates to, or `nil` where nothing is mapped.
  public func hostAddress(iommufd: FileDescriptor, ioas: ObjectID, iova: UInt64) -> UInt64? {
    locked { state -> UInt64? in
      guard case .iommufd(let context)? = state.files[iommufd.rawValue], let space = context.ioas(ioas.rawValue) else { return nil }
      return state.hostAddress(space, iova)
    }
  }

  /// Linux's `/proc/self/task/TID/fail-nth` for the simulated kernel: set to N > 0, the
  /// N-th fault point from now fails with ENOMEM (an open of `/dev/iommu`, every ioctl on
  /// a simulated file, every object id taken, every pinning); 0 disables it. Reads back 0
  /// once the failure happened, else how many points are left. One count for the whole
  /// simulated kernel, where Linux keeps one per thread.
  public var nthFailure: Int {
    get { locked { $0.failNth } }
    set { locked { $0.failNth = max(0, newValue) } }
  }

  /// Makes the `n`-th event of `point` from now (1, or less: the next one) fail with `errno`.
  public func injectFailure(at point: FaultPoint, after n: Int, errno: Errno) {
    locked { $0.pendingFailures[point] = (max(n, 1), errno) }  // 1 or less: the next one
  }

  /// Runs `body` under the lock, after the work of eventfds signalled since the last call
  /// (the kernel does it inside the signalling `write(2)`; see ``SimulatedWorker``).
  func locked<R>(_ body: (State) throws(Errno) -> R) throws(Errno) -> R {
    try lock.run { () throws(Errno) -> R in
      state.worker.drain(state)
      return try body(state)
    }
  }

  func locked<R>(_ body: (State) -> R) -> R {
    lock.run {
      state.worker.drain(state)
      return body(state)
    }
  }

  // MARK: SystemCalls

  /// Opens `/dev/iommu` (a new context) or a simulated device cdev, by any spelling of the
  /// path; other paths fail with the errno of the kernel's walk to them, or ENOENT.
  public func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor {
    guard path.string.utf8.count < 4096 else { throw .fileNameTooLong }  // getname: PATH_MAX
    // The machine's nodes by any spelling of their path ("/dev/./iommu"), as the kernel's walk.
    let node = try machineComponents(path)
    let isIommufd = node == ["dev", "iommu"]
    let deviceIndex = node.flatMap { $0.count == 4 && $0[..<3] == ["dev", "vfio", "devices"] ? Self.deviceIndex(FilePath("/dev/vfio/devices/\($0[3])")) : nil }
    // Another path: the errno of the walk (ENOTDIR, ENAMETOOLONG), EISDIR for a directory
    // opened for writing, else ENOENT (the simulator opens no other file).
    var refusal = Errno.noSuchFileOrDirectory
    if let node, !isIommufd, deviceIndex == nil {
      do {
        if case .directory = try machineNode(node), flags & O_ACCMODE != O_RDONLY { refusal = .isDirectory }
      } catch {
        refusal = error
      }
    }
    return try locked { state throws(Errno) in
      let file: State.File
      if isIommufd {
        try state.failNthPoint()  // iommufd_fops_open allocates its context
        file = .iommufd(SimulatedContext())
      } else if let index = deviceIndex, index < state.devices.count {
        file = .device(SimulatedDeviceFile(device: state.devices[index], number: index))
      } else if let index = deviceIndex, let instance = state.mediated.instance(vfioIndex: index) {
        instance.openFiles += 1
        file = .mediated(SimulatedMediatedFile(instance: instance))
      } else {
        throw refusal
      }
      let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
      state.files[fd] = file
      return FileDescriptor(rawValue: fd)
    }
  }

  /// Closes a simulated file with the kernel's release semantics; other descriptors for real.
  public func close(_ fd: FileDescriptor) throws(Errno) {
    let simulated: Bool = locked { state in
      guard let file = state.files.removeValue(forKey: fd.rawValue) else { return false }
      // An area of IOAS_MAP_FILE holds the file: released with the area, not now.
      if state.fileHolds[file.identity] != nil {
        state.closedWhileHeld[file.identity] = file
      } else {
        state.release(file)
      }
      return true
    }
    if simulated {
      _ = Glibc.close(fd.rawValue)
    } else {
      try KernelSystemCalls().close(fd)
    }
  }

  /// Runs an iommufd or VFIO device request on a simulated file; other descriptors go to the kernel.
  public func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
    let handled: Int32? = try locked { state throws(Errno) -> Int32? in
      guard let file = state.files[fd.rawValue] else { return nil }
      try state.fail(.ioctl)
      let address = UInt64(UInt(bitPattern: argument))
      switch file {
      case .iommufd(let context): return try state.iommufdIoctl(context, request, address)
      case .device(let device): return try state.deviceIoctl(device, request, address)
      case .mediated(let file): return try state.mediatedIoctl(file, request, address)
      case .migration(let file): return try state.migrationIoctl(file, request, address)
      case .fault, .veventq, .access, .dmabuf: throw .inappropriateIOCTLForDevice
      }
    }
    if let handled { return handled }
    return try KernelSystemCalls().ioctl(fd, request, argument)
  }

  /// Whether `fd` is one of the simulator's files (rather than a real descriptor).
  public func isSimulated(_ fd: FileDescriptor) -> Bool {
    locked { $0.files[fd.rawValue] != nil }
  }

  /// Anonymous memory and other descriptors for real. Of an iommufd descriptor, the region a
  /// vIOMMU handed out (7.2 model); device cdevs cannot be mapped (EINVAL); fault queues,
  /// vEVENTQs and accesses have no mmap (ENODEV).
  public func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    if let fd {
      let mapped: UnsafeMutableRawPointer? = try locked { state throws(Errno) -> UnsafeMutableRawPointer? in
        switch state.files[fd.rawValue] {
        case nil: return nil
        case .iommufd(let context)?:
          return try state.mmapRegion(context, length: length, protection: protection, flags: flags, offset: offset)
        case .device(let file)?:
          return try state.mmapRegion(file, length: length, protection: protection, flags: flags, offset: offset)
        case .dmabuf?, .mediated?:
          throw .invalidArgument  // the self-test's dma-buf exporter has no mmap, nor has an mdev driver here
        case .fault?, .veventq?, .access?, .migration?:
          throw .operationNotSupportedByDevice
        }
      }
      if let mapped { return mapped }
    }
    return try KernelSystemCalls().mmap(length: length, protection: protection, flags: flags, fd: fd, offset: offset)
  }

  /// `munmap(2)`; a vIOMMU region mapped through the simulator no longer holds its vIOMMU,
  /// nor a BAR mapping its device file.
  public func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) {
    try KernelSystemCalls().munmap(address, length: length)
    locked { state in
      state.munmapped(address)
      state.unmappedBARs(UInt(bitPattern: address), length: length)
    }
  }

  /// Reads a region of a bound simulated device; other descriptors for real.
  public func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int {
    let result: [UInt8]? = try locked { state throws(Errno) -> [UInt8]? in
      guard let file = state.files[fd.rawValue] else { return nil }
      if case .veventq = file { throw .illegalSeek }  // not seekable
      if case .migration = file { throw offset < 0 ? .invalidArgument : .illegalSeek }  // a stream
      if case .mediated(let mediated) = file { return try state.mediatedRead(mediated, offset: offset, count: buffer.count) }
      guard case .device(let device) = file else { throw .invalidArgument }
      return try state.regionRead(device, offset: UInt64(bitPattern: offset), count: buffer.count)
    }
    guard let result else { return try KernelSystemCalls().pread(fd, into: buffer, offset: offset) }
    buffer.copyBytes(from: result)
    return result.count
  }

  /// Writes a region of a bound simulated device (registers may start DMA); other descriptors for real.
  public func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int {
    let bytes = Array(buffer)
    let result: Int? = try locked { state throws(Errno) -> Int? in
      guard let file = state.files[fd.rawValue] else { return nil }
      if case .veventq = file { throw .illegalSeek }  // not seekable
      if case .migration = file { throw offset < 0 ? .invalidArgument : .illegalSeek }  // a stream
      if case .mediated(let mediated) = file { return try state.mediatedWrite(mediated, offset: offset, bytes: bytes) }
      guard case .device(let device) = file else { throw .invalidArgument }
      return try state.regionWrite(device, offset: UInt64(bitPattern: offset), bytes: bytes)
    }
    guard let result else { return try KernelSystemCalls().pwrite(fd, from: buffer, offset: offset) }
    return result
  }

  /// Reads fault groups from a simulated fault queue or events from a simulated vEVENTQ;
  /// EINVAL on other simulated files; other descriptors for real.
  public func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
    let result: [UInt8]? = try locked { state throws(Errno) -> [UInt8]? in
      guard let file = state.files[fd.rawValue] else { return nil }
      if case .veventq(_, let queue) = file { return try state.readVEvents(queue, count: buffer.count) }
      if case .migration(let stream) = file { return try state.readMigration(stream, count: buffer.count) }
      guard case .fault(_, let queue) = file else { throw .invalidArgument }
      return try state.readFaults(queue, count: buffer.count)
    }
    guard let result else { return try KernelSystemCalls().read(fd, into: buffer) }
    buffer.copyBytes(from: result)
    return result.count
  }

  /// Writes page responses to a simulated fault queue; EINVAL on other simulated files
  /// (a vEVENTQ cannot be written); other descriptors for real.
  public func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
    let bytes = Array(buffer)
    let result: Int? = try locked { state throws(Errno) -> Int? in
      guard let file = state.files[fd.rawValue] else { return nil }
      if case .migration(let stream) = file { return try state.writeMigration(stream, bytes) }
      guard case .fault(_, let queue) = file else { throw .invalidArgument }
      return try state.writeResponses(queue, bytes)
    }
    guard let result else {
      let written = try KernelSystemCalls().write(fd, from: buffer)
      locked { _ in }  // an eventfd the simulated kernel listens on acts before write returns
      return written
    }
    return result
  }

  /// A real eventfd: the simulated devices signal it as the kernel would.
  public func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor {
    try KernelSystemCalls().eventfd(initialValue: initialValue, flags: flags)
  }

  static func deviceIndex(_ path: FilePath) -> Int? {
    let text = path.string
    let prefix = "/dev/vfio/devices/vfio"
    let digits = text.dropFirst(prefix.count)
    // The kernel names them vfio0, vfio1, ...: no leading zero ("vfio00" is no node).
    guard text.hasPrefix(prefix), !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
      let index = Int(digits), digits == "0" || !digits.hasPrefix("0")
    else { return nil }
    return index
  }
}
