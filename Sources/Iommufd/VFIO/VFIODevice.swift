import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A VFIO device opened through its cdev (`/dev/vfio/devices/vfioN`).
///
/// Life cycle: open → ``bind(to:)`` an iommufd → ``attach(to:)-(AttachTarget)`` an IOAS or HW page table
/// → use regions and IRQs → ``detach()`` → ``close()``. Until bound, the kernel answers
/// every other request with `EINVAL`. Closing the descriptor (explicitly or on release)
/// detaches and unbinds the device; the handle keeps its iommufd, its attach target and its
/// IRQ eventfds alive until then. Thread-safe.
public final class VFIODevice: Sendable {
  /// The system-call seam the device uses.
  public let backend: Backend
  /// ``backend`` without its reference count on the call path (``backend`` keeps it).
  private let unretainedBackend: Backend.Unretained
  /// The cdev path it was opened from, if known.
  public let path: FilePath?
  let descriptor: OwnedDescriptor
  private let state = Lock(State())

  private struct State {
    var iommufd: IOMMUFD?
    var deviceID: ObjectID?
    var attached: (any AttachTarget)?
    var attachedPageTable: ObjectID?
    /// Eventfds the kernel holds, by slot (``VFIODevice/eventFDSlot(_:_:)``) and vector.
    var eventFDs: [Int: [Int: EventFD]] = [:]
  }

  /// Records what a call did, unless the device was closed meanwhile: ``close()`` asks for
  /// the close before it clears the state, so a call that returns after that keeps
  /// nothing (no attachment, no eventfds) on a closed device. Returns what `body` returns,
  /// or nil.
  /// Held by each call that changes what the device records (bind, attach, detach,
  /// interrupts) from its ioctl to its record, so the record follows the kernel's order.
  /// Its value counts those calls: a lock around a zero-size value would give
  /// ThreadSanitizer the address of the next object.
  let changes = Lock(0)

  private func record<R>(_ body: (inout State) -> R) -> R? {
    state.withLock { state -> R? in descriptor.isClosed ? nil : body(&state) }
  }

  /// Opens the device cdev at `path`.
  public static func open(_ path: FilePath, backend: Backend = .kernel) throws(IommufdError) -> VFIODevice {
    let fd = try backend.open(path, flags: O_RDWR | O_CLOEXEC)
    return VFIODevice(adopting: fd, path: path, backend: backend)
  }

  /// Opens the cdev of the PCI device at `address`, found through sysfs (`backend`'s:
  /// on a simulated kernel, its machine's).
  public static func open(
    pciAddress address: PCIAddress, discovery: VFIODiscovery? = nil, backend: Backend = .kernel
  ) throws(IommufdError) -> VFIODevice {
    try open((discovery ?? VFIODiscovery(backend: backend)).cdevPath(for: address), backend: backend)
  }

  /// Opens the cdev of mediated device `id` (an emulated VFIO device, such as an mtty
  /// instance), found through sysfs.
  public static func open(
    mediatedDevice id: MediatedDeviceID, discovery: VFIODiscovery? = nil, backend: Backend = .kernel
  ) throws(IommufdError) -> VFIODevice {
    try open((discovery ?? VFIODiscovery(backend: backend)).cdevPath(for: id), backend: backend)
  }

  /// Takes ownership of an open device cdev descriptor.
  public convenience init(adopting fd: FileDescriptor, path: FilePath? = nil, backend: Backend = .kernel) {
    self.init(fd, path: path, backend: backend, borrowed: false)
  }

  /// Uses an open device cdev descriptor that the caller keeps owning (QEMU's
  /// `vfio-pci,fd=` hand-over): the handle never closes it.
  ///
  /// ``close()`` and the release end the handle's use of `fd` (later calls through it fail
  /// with `EBADF`) and drop what the handle held (its context, attach target and
  /// eventfds), but the kernel detaches and unbinds the device only when the owner closes
  /// `fd`: until then it stays bound and attached as the handle left it, and an IOAS it is
  /// attached to cannot be destroyed (`EBUSY`). Detach first to leave nothing in use.
  public convenience init(borrowing fd: FileDescriptor, path: FilePath? = nil, backend: Backend = .kernel) {
    self.init(fd, path: path, backend: backend, borrowed: true)
  }

  /// Whether the handle closes its descriptor (false when it was made with
  /// ``init(borrowing:path:backend:)``).
  public var closesDescriptor: Bool { descriptor.closesDescriptor }

  private init(_ fd: FileDescriptor, path: FilePath?, backend: Backend, borrowed: Bool) {
    self.backend = backend
    self.unretainedBackend = backend.unretained
    self.path = path
    self.descriptor = OwnedDescriptor(fd, backend: backend, borrowed: borrowed)
    // What the device holds (its context, attach target, eventfds) goes when its
    // descriptor is really closed: after the last call in flight, not before. The hook
    // holds the state, not the device: a weak reference to the device would give it a
    // side table, and every reference count on it would take the slow path.
    descriptor.setAfterClose { [state] in Self.releaseState(state) }
  }

  /// The descriptor.
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// The device's object id in its iommufd, once bound.
  public var deviceID: ObjectID? { state.withLock { $0.deviceID } }

  /// The HW page table the device is attached to (the automatic one when attached to an
  /// IOAS); for an emulated (mdev) device, which has none, the IOAS's own id.
  public var attachedPageTableID: ObjectID? { state.withLock { $0.attachedPageTable } }

  /// Closes the device: the kernel detaches and unbinds it. Later calls fail with `EBADF`.
  public func close() throws(IommufdError) {
    try descriptor.close()
  }

  /// Drops the context, attach target and eventfds the device held, once its descriptor
  /// is closed.
  private static func releaseState(_ state: Lock<State>) {
    let released = state.withLock { state -> (IOMMUFD?, (any AttachTarget)?, [Int: [Int: EventFD]]) in
      defer {
        state.iommufd = nil
        state.attached = nil
        state.attachedPageTable = nil
        state.deviceID = nil
        state.eventFDs = [:]
      }
      return (state.iommufd, state.attached, state.eventFDs)
    }
    _ = released  // dropped here, after the descriptor
  }

  // MARK: iommufd binding

  /// Binds the device to `iommufd` (`VFIO_DEVICE_BIND_IOMMUFD`) and returns its device id.
  ///
  /// A device can be bound to one iommufd at a time; the binding lasts until close.
  @discardableResult
  public func bind(to iommufd: IOMMUFD) throws(IommufdError) -> ObjectID {
    var request = ciommufd_vfio_device_bind_iommufd()
    request.argsz = UInt32(MemoryLayout<ciommufd_vfio_device_bind_iommufd>.size)
    return try changes.withLock { (count: inout Int) throws(IommufdError) -> ObjectID in
      count &+= 1
      try iommufd.withDescriptor(.deviceBind) { iommuFD throws(IommufdError) in
        request.iommufd = iommuFD.rawValue
        try ioctl(CIOMMUFD_VFIO_DEVICE_BIND_IOMMUFD, &request, .deviceBind, [.init("iommufd", "\(iommuFD.rawValue)")])
      }
      let id = ObjectID(request.out_devid)
      record {
        $0.iommufd = iommufd
        $0.deviceID = id
      }
      return id
    }
  }

  /// Attaches the device to `target` and returns the id of the HW page table in use: an
  /// automatic one for an IOAS, `target`'s own id for an ``HWPageTable``.
  ///
  /// On an attached device this replaces the attachment atomically: on failure the old one
  /// stays.
  @discardableResult
  public func attach(to target: some AttachTarget) throws(IommufdError) -> ObjectID {
    if let ioas = target as? IOAS { return try attach(to: ioas) }
    if let pageTable = target as? HWPageTable { return try attach(to: pageTable) }
    return try attach(target, id: target.id, context: target.iommufd, object: (target as? any ObjectHandle)?.object)
  }

  /// Attaches the device to `ioas`, through an automatic HW page table; returns its id.
  /// An emulated (mdev) device has no page table: its driver reaches the IOAS through an
  /// in-kernel access, and the id returned is the IOAS's own.
  ///
  /// On an attached device this replaces the attachment atomically: on failure the old one
  /// stays.
  @discardableResult
  public func attach(to ioas: IOAS) throws(IommufdError) -> ObjectID {
    try attach(ioas, id: ioas.id, context: ioas.iommufd, object: ioas.object)
  }

  /// Attaches the device to `pageTable` and returns its id. An emulated (mdev) device
  /// attaches to an IOAS only: the kernel looks for an IOAS of that id and answers
  /// `ENOENT`, which the error explains.
  ///
  /// On an attached device this replaces the attachment atomically: on failure the old one
  /// stays.
  @discardableResult
  public func attach(to pageTable: HWPageTable) throws(IommufdError) -> ObjectID {
    do {
      return try attach(pageTable, id: pageTable.id, context: pageTable.iommufd, object: pageTable.object)
    } catch where error.errno == .noSuchFileOrDirectory && error.detail == nil {
      // The handle kept the HW page table alive through the call: the kernel looked for
      // another kind of object, which only an emulated device's attach does.
      throw error.unsupported(
        "no IOAS has id \(pageTable.id): an emulated (mdev) VFIO device has no page table of its own and attaches to an IOAS only")
    } catch {
      throw error
    }
  }

  /// The attach of `target` (object `id` of `context`, owned by `object` if a handle owns it).
  private func attach(
    _ target: any AttachTarget, id: ObjectID, context: IOMMUFD, object: OwnedObject?
  ) throws(IommufdError) -> ObjectID {
    var request = ciommufd_vfio_device_attach_iommufd_pt()
    request.argsz = UInt32(MemoryLayout<ciommufd_vfio_device_attach_iommufd_pt>.size)
    request.pt_id = id.rawValue
    let (pageTable, previous) = try changes.withLock { (count: inout Int) throws(IommufdError) -> (ObjectID, (any AttachTarget)?) in
      count &+= 1
      try withLive(context, object, id, .deviceAttach) { () throws(IommufdError) in
        try ioctl(CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &request, .deviceAttach, [.pageTable(id)])
      }
      let pageTable = ObjectID(request.pt_id)
      let previous = record { state -> (any AttachTarget)? in
        defer {
          state.attached = target
          state.attachedPageTable = pageTable
        }
        return state.attached
      }
      return (pageTable, previous ?? nil)
    }
    _ = previous  // released after the locks
    return pageTable
  }

  /// Detaches the device: its DMA is blocked until the next attach. Detaching a device that
  /// is not attached succeeds.
  public func detach() throws(IommufdError) {
    var request = ciommufd_vfio_device_detach_iommufd_pt()
    request.argsz = UInt32(MemoryLayout<ciommufd_vfio_device_detach_iommufd_pt>.size)
    let previous = try changes.withLock { (count: inout Int) throws(IommufdError) -> (any AttachTarget)? in
      count &+= 1
      try ioctl(CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT, &request, .deviceDetach, [])
      let previous = record { state -> (any AttachTarget)? in
        defer {
          state.attached = nil
          state.attachedPageTable = nil
        }
        return state.attached
      }
      return previous ?? nil
    }
    _ = previous
  }

  // MARK: Device

  /// The device's flags and its region and IRQ counts (`VFIO_DEVICE_GET_INFO`).
  public func info() throws(IommufdError) -> VFIODeviceInfo {
    let bytes = try descriptor.queryWithCapabilities(
      CIOMMUFD_VFIO_DEVICE_GET_INFO, .deviceGetInfo, [],
      baseSize: MemoryLayout<ciommufd_vfio_device_info>.size) { _ in }
    let raw = bytes.withUnsafeBytes { $0.loadUnaligned(as: ciommufd_vfio_device_info.self) }
    let capabilities = try VFIOCapabilityChain.parse(
      bytes, firstOffset: raw.flags & CIOMMUFD_VFIO_DEVICE_FLAGS_CAPS != 0 ? raw.cap_offset : 0,
      operation: .deviceGetInfo)
    return VFIODeviceInfo(
      flags: VFIODeviceInfo.Flags(rawValue: raw.flags), regionCount: Int(raw.num_regions),
      irqCount: Int(raw.num_irqs), capabilities: capabilities)
  }

  /// Resets the device function (`VFIO_DEVICE_RESET`), with the first method of the
  /// kernel's list for it that works: a PCI device's are in sysfs `reset_method`
  /// (``PCIDeviceEntry/resetMethods``: `flr`, `af_flr`, `pm`, `bus`, ...; the kernel tries
  /// them in that order). ``VFIODeviceInfo/Flags-swift.struct/reset`` says whether there is
  /// one. A device without any fails with `EINVAL`, explained: a device that shares its
  /// bus or slot (a multifunction device) or sits on a root bus often has none, and
  /// ``hotReset()`` resets its whole slot or bus instead.
  public func reset() throws(IommufdError) {
    do {
      try descriptor.withDescriptor(.deviceReset) { fd throws(IommufdError) in
        try backend.ioctl(fd, CIOMMUFD_VFIO_DEVICE_RESET, .deviceReset, [])
      }
    } catch where error.errno == .invalidArgument && error.detail == nil && deviceID != nil {
      throw error.unsupported(
        "the device has no function reset that works (no FLR or PM reset, and a bus reset only while it is alone on its bus: "
          + "its sysfs reset_method is absent, or only `bus`, which fails beside other functions): "
          + "hotReset() resets its slot or bus, with every function there")
    } catch {
      throw error
    }
  }

  // MARK: Internal

  /// Runs `body` while `target` is alive and in the context the device is bound to: a
  /// destroyed target fails with `ENOENT`, one of another context with `EINVAL`, without
  /// reaching the kernel (where its id may name another object).
  func withLive<R>(
    _ target: some AttachTarget, _ operation: IommufdError.Operation, _ body: () throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    // The library's own targets by class (a compare, and no reference count taken).
    if let ioas = target as? IOAS { return try withLive(ioas.iommufd, ioas.object, target.id, operation, body) }
    if let hwpt = target as? HWPageTable { return try withLive(hwpt.iommufd, hwpt.object, target.id, operation, body) }
    return try withLive(target.iommufd, (target as? any ObjectHandle)?.object, target.id, operation, body)
  }

  @inline(__always)
  private func withLive<R>(
    _ context: IOMMUFD, _ object: OwnedObject?, _ id: ObjectID, _ operation: IommufdError.Operation,
    _ body: () throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    if state.withLock({ $0.iommufd.map { $0 !== context } ?? false }) { throw foreignTargetError(id, operation) }
    // Not bound to a name: the copy would cost a reference count.
    guard object != nil else { return try body() }
    return try object.unsafelyUnwrapped.use(operation, body)
  }

  @inline(never)
  private func foreignTargetError(_ id: ObjectID, _ operation: IommufdError.Operation) -> IommufdError {
    IommufdError(
      operation, .invalidArgument, objects: [.pageTable(id)],
      detail: "the attach target \(id) belongs to another iommufd context than the one the device is bound to")
  }

  func ioctl<Argument>(
    _ request: Int32, _ argument: inout Argument, _ operation: IommufdError.Operation,
    _ objects: @autoclosure () -> [IommufdError.InvolvedObject]
  ) throws(IommufdError) {
    try descriptor.withDescriptor(operation) { fd throws(IommufdError) in
      try unretainedBackend.ioctl(fd, request, &argument, operation, objects())
    }
  }

  func keepEventFDs(_ eventFDs: [EventFD?], slot: Int, start: Int) {
    let dropped = record { state -> [EventFD] in
      var table = state.eventFDs[slot] ?? [:]
      var old: [EventFD] = []
      for (offset, eventFD) in eventFDs.enumerated() {
        if let previous = table[start + offset] { old.append(previous) }
        table[start + offset] = eventFD
      }
      state.eventFDs[slot] = table
      return old
    }
    _ = dropped
  }

  func dropEventFDs(slot: Int) {
    let dropped = record { $0.eventFDs.removeValue(forKey: slot) }
    _ = dropped
  }
}

/// What `VFIO_DEVICE_GET_INFO` reports.
public struct VFIODeviceInfo: Hashable, Sendable {
  /// `VFIO_DEVICE_FLAGS_*`.
  public struct Flags: OptionSet, Hashable, Sendable {
    /// The raw flags.
    public var rawValue: UInt32
    /// Creates from the raw flags.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The device supports `VFIO_DEVICE_RESET`.
    public static let reset = Flags(rawValue: 1 << 0)
    /// A PCI device (vfio-pci).
    public static let pci = Flags(rawValue: 1 << 1)
    /// A platform device.
    public static let platform = Flags(rawValue: 1 << 2)
    /// The reply carries a capability chain.
    public static let capabilities = Flags(rawValue: 1 << 7)
  }

  /// The device flags.
  public var flags: Flags
  /// The number of regions (9 fixed ones on PCI, plus device-specific ones).
  public var regionCount: Int
  /// The number of IRQ indexes (5 on PCI).
  public var irqCount: Int
  /// The device capabilities, in chain order.
  public var capabilities: [VFIOCapability]

  /// Creates the value.
  public init(flags: Flags, regionCount: Int, irqCount: Int, capabilities: [VFIOCapability] = []) {
    self.flags = flags
    self.regionCount = regionCount
    self.irqCount = irqCount
    self.capabilities = capabilities
  }
}

extension VFIODevice {
  /// Attaches PASID `pasid` of the device to `target` (6.15); returns the HWPT id used.
  public func attach(to target: some AttachTarget, pasid: UInt32) throws(IommufdError) -> ObjectID {
    var request = ciommufd_vfio_device_attach_iommufd_pt_pasid(
      argsz: UInt32(MemoryLayout<ciommufd_vfio_device_attach_iommufd_pt_pasid>.size), flags: CIOMMUFD_VFIO_DEVICE_ATTACH_PASID,
      pt_id: target.id.rawValue, pasid: pasid)
    do throws(IommufdError) {
      try withLive(target, .deviceAttach) { () throws(IommufdError) in
        try ioctl(CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &request, .deviceAttach, [.pageTable(target.id), .init("pasid", "\(pasid)")])
      }
    } catch where error.errno == .invalidArgument && error.detail == nil {
      // The kernel's answer; the library's own refusals (a target of another context) keep their detail.
      throw error.unsupported("the kernel refused the PASID flag: PASID attach needs Linux 6.15 or later (or the device has no PASID)")
    } catch where error.errno == .notSupported && error.detail == nil {
      throw error.unsupported("the device's driver has no PASID attach (an emulated (mdev) device has none)")
    } catch {
      throw error
    }
    return ObjectID(request.pt_id)
  }

  /// Detaches PASID `pasid` of the device (6.15).
  public func detach(pasid: UInt32) throws(IommufdError) {
    var request = ciommufd_vfio_device_detach_iommufd_pt_pasid(
      argsz: UInt32(MemoryLayout<ciommufd_vfio_device_detach_iommufd_pt_pasid>.size), flags: CIOMMUFD_VFIO_DEVICE_DETACH_PASID,
      pasid: pasid)
    do throws(IommufdError) {
      try ioctl(CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT, &request, .deviceDetach, [.init("pasid", "\(pasid)")])
    } catch where error.errno == .invalidArgument {
      throw error.unsupported("the kernel refused the PASID flag: PASID detach needs Linux 6.15 or later")
    }
  }
}
