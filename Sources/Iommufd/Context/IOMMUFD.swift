import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An open `/dev/iommu`: one iommufd context with its own object id space.
///
/// The handle owns its descriptor and closes it exactly once: on ``close()`` or when the
/// last reference goes. Objects made from it (``IOAS``, ``HWPageTable``) and devices bound
/// to it keep it alive. Closing the descriptor makes the kernel destroy every object of the
/// context, except while a VFIO device is still bound to it.
///
/// Thread-safe: calls from several threads are passed to the kernel concurrently.
public final class IOMMUFD: Sendable {
  /// The system-call seam this context uses.
  public let backend: Backend
  /// ``backend`` without its reference count on the call path (``backend`` keeps it).
  let unretainedBackend: Backend.Unretained
  let descriptor: OwnedDescriptor
  /// The ids that handles own, so that ``destroy(_:)`` of such an id goes through its handle.
  /// Counted references: each handle removes its entry when it destroys or releases its
  /// object (a weak reference would give every object a side table, and each reference
  /// count on it would take the runtime's slow path).
  private let owned = Lock<[UInt32: OwnedObject]>([:])
  /// Allocations are readers, from their ioctl until their handle owns the new id; a
  /// destroy of an id no handle owns is the writer.
  let allocations = ReaderWriterGate()

  /// The default device node.
  public static let defaultPath: FilePath = "/dev/iommu"

  /// Opens `path` (normally `/dev/iommu`) read-write and close-on-exec.
  public static func open(_ path: FilePath = defaultPath, backend: Backend = .kernel) throws(IommufdError) -> IOMMUFD {
    let fd = try backend.open(path, flags: O_RDWR | O_CLOEXEC)
    return IOMMUFD(adopting: fd, backend: backend)
  }

  /// Takes ownership of an iommufd descriptor handed over by a management stack.
  ///
  /// The handle closes `fd` when it is released.
  public init(adopting fd: FileDescriptor, backend: Backend = .kernel) {
    self.backend = backend
    self.unretainedBackend = backend.unretained
    self.descriptor = OwnedDescriptor(fd, backend: backend)
  }

  /// Uses an iommufd descriptor that the caller keeps owning (QEMU's `iommufd,fd=`
  /// hand-over): the handle never closes it.
  ///
  /// ``close()`` and the release end the handle's use of `fd` (later calls through it fail
  /// with `EBADF`) and leave it open, so the kernel keeps the context and every object still
  /// in it: objects whose handles are released before that are destroyed as usual, the
  /// rest go when the owner closes `fd`. The caller keeps `fd` open while the handle uses it.
  public init(borrowing fd: FileDescriptor, backend: Backend = .kernel) {
    self.backend = backend
    self.unretainedBackend = backend.unretained
    self.descriptor = OwnedDescriptor(fd, backend: backend, borrowed: true)
  }

  /// Whether the handle closes its descriptor (false when it was made with
  /// ``init(borrowing:backend:)``).
  public var closesDescriptor: Bool { descriptor.closesDescriptor }

  /// The descriptor, for passing to another process or to `VFIO_DEVICE_BIND_IOMMUFD`.
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// Whether ``close()`` has been called.
  public var isClosed: Bool { descriptor.isClosed }

  /// Closes the descriptor. Later calls on this context fail with `EBADF`.
  public func close() throws(IommufdError) { try descriptor.close() }

  /// Allocates an empty I/O address space.
  public func allocateIOAS() throws(IommufdError) -> IOAS {
    allocations.enterReading()
    defer { allocations.leaveReading() }
    var request = ciommufd_iommu_ioas_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_alloc>.size)
    try withDescriptor(.ioasAlloc) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_IOMMU_IOAS_ALLOC, &request, .ioasAlloc, [])
    }
    return IOAS(iommufd: self, id: ObjectID(request.out_ioas_id))
  }

  /// Destroys the object `id` of this context (`IOMMU_DESTROY`).
  ///
  /// Handles destroy their own objects; this is for ids obtained elsewhere. An id that a
  /// live handle owns is destroyed through that handle, so the handle then knows it is gone.
  public func destroy(_ id: ObjectID) throws(IommufdError) {
    // An id no handle owns is destroyed with no allocation in flight: the kernel may have
    // just handed it to a handle that is about to be made.
    let object = try allocations.write { () throws(IommufdError) -> OwnedObject? in
      if let object = owned.withLock({ $0[id.rawValue] }) { return object }
      try destroyUnowned(id)
      return nil
    }
    try object?.destroy()
  }

  /// Issues `IOMMU_DESTROY` for `id`.
  func destroyUnowned(_ id: ObjectID) throws(IommufdError) {
    var request = ciommufd_iommu_destroy(size: UInt32(MemoryLayout<ciommufd_iommu_destroy>.size), id: id.rawValue)
    try withDescriptor(.destroy) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_IOMMU_DESTROY, &request, .destroy, [.object(id)])
    }
  }

  /// How pinned pages are charged against `RLIMIT_MEMLOCK` (`IOMMU_OPTION_RLIMIT_MODE`).
  public func memoryLimitAccounting() throws(IommufdError) -> MemoryLimitAccounting {
    let value = try option(CIOMMUFD_OPTION_RLIMIT_MODE, op: CIOMMUFD_OPTION_OP_GET, object: nil, value: 0)
    return value == 1 ? .perProcess : .perUser
  }

  /// Sets how pinned pages are charged. Needs `CAP_SYS_RESOURCE` and a context with no objects.
  public func setMemoryLimitAccounting(_ accounting: MemoryLimitAccounting) throws(IommufdError) {
    _ = try option(
      CIOMMUFD_OPTION_RLIMIT_MODE, op: CIOMMUFD_OPTION_OP_SET, object: nil,
      value: accounting == .perProcess ? 1 : 0)
  }

  /// The IOAS that the VFIO compatibility interface on this context uses, if one is set.
  public func compatibilityIOASID() throws(IommufdError) -> ObjectID? {
    var request = ciommufd_iommu_vfio_ioas()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_vfio_ioas>.size)
    request.op = UInt16(CIOMMUFD_VFIO_IOAS_GET)
    do throws(IommufdError) {
      try withDescriptor(.vfioIOAS) { fd throws(IommufdError) in
        try backend.ioctl(fd, CIOMMUFD_IOMMU_VFIO_IOAS, &request, .vfioIOAS, [])
      }
    } catch where error.errno == .operationNotSupportedByDevice {
      return nil
    }
    return ObjectID(request.ioas_id)
  }

  /// Sets (or with `nil` clears) the IOAS of the VFIO compatibility interface.
  public func setCompatibilityIOAS(_ ioas: IOAS?) throws(IommufdError) {
    var request = ciommufd_iommu_vfio_ioas()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_vfio_ioas>.size)
    request.op = UInt16(ioas == nil ? CIOMMUFD_VFIO_IOAS_CLEAR : CIOMMUFD_VFIO_IOAS_SET)
    request.ioas_id = ioas?.id.rawValue ?? 0
    let objects: [IommufdError.InvolvedObject] = ioas.map { [.ioas($0.id)] } ?? []
    try withDescriptor(.vfioIOAS, using: ioas.map { [$0.object] } ?? []) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_IOMMU_VFIO_IOAS, &request, .vfioIOAS, objects)
    }
  }

  // MARK: Internal

  @discardableResult @inline(__always)
  func withDescriptor<R>(
    _ operation: IommufdError.Operation, _ body: (FileDescriptor) throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    try descriptor.withDescriptor(operation, body)
  }

  func option(_ optionID: UInt32, op: UInt32, object: ObjectID?, value: UInt64) throws(IommufdError) -> UInt64 {
    var request = ciommufd_iommu_option()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_option>.size)
    request.option_id = optionID
    request.op = UInt16(op)
    request.object_id = object?.rawValue ?? 0
    request.val64 = value
    try withDescriptor(.option) { fd throws(IommufdError) in
      try unretainedBackend.ioctl(fd, CIOMMUFD_IOMMU_OPTION, &request, .option, object.map { [.object($0)] } ?? [])
    }
    return request.val64
  }

  /// Records that a handle owns `object`'s id.
  func register(_ object: OwnedObject) {
    owned.withLock { $0[object.id.rawValue] = object }
  }

  /// Forgets `object`'s id, unless a newer handle owns it by now.
  func unregister(_ object: OwnedObject) {
    owned.withLock { table in
      if table[object.id.rawValue] === object {
        table[object.id.rawValue] = nil
      }
    }
  }

  /// Destroys `id` from a handle's deinit: a failure is logged, never thrown.
  func destroyLogging(_ id: ObjectID, kind: String, removedWith owner: String? = nil) {
    guard !isClosed else { return }
    do { try destroyUnowned(id) } catch {
      if let owner, error.errno == .noSuchFileOrDirectory {
        backend.logger.debug("\(kind) \(id) was already removed with \(owner)")
      } else {
        backend.logger.error("releasing \(kind) \(id) failed: \(error)")
      }
    }
  }
}

/// How the pages an iommufd context pins are charged against `RLIMIT_MEMLOCK`.
public enum MemoryLimitAccounting: Sendable, Equatable {
  /// Charged to the user, shared by all processes of that uid (the `/dev/iommu` default).
  case perUser
  /// Charged to the process (`mm->locked_vm`), as legacy VFIO type1 does.
  case perProcess
}

extension IOMMUFD {
  /// Moves the pinned-page charge of every mapping to the calling process
  /// (`IOMMU_IOAS_CHANGE_PROCESS`, 6.14); every mapping must come from ``IOAS/mapFile(_:offset:length:at:access:)``.
  public func changeProcess() throws(IommufdError) {
    var request = ciommufd_iommu_ioas_change_process(size: UInt32(MemoryLayout<ciommufd_iommu_ioas_change_process>.size), __reserved: 0)
    try issueNewerRequest(CIOMMUFD_IOMMU_IOAS_CHANGE_PROCESS, &request, .changeProcess, [], since: "6.14")
  }

  /// Issues an iommufd request added after 6.12 on the context's descriptor. A kernel
  /// without it answers ENOTTY; the error then says which release brought the request
  /// (the PASID flag, which 6.12 treats as an unknown flag, is EINVAL instead: see
  /// ``VFIODevice/attach(to:pasid:)``).
  func issueNewerRequest<Argument>(
    _ request: Int32, _ argument: inout Argument, _ operation: IommufdError.Operation,
    _ objects: [IommufdError.InvolvedObject], using owned: [OwnedObject] = [], since release: String
  ) throws(IommufdError) {
    try withDescriptor(operation, using: owned) { fd throws(IommufdError) in
      do throws(IommufdError) {
        try backend.ioctl(fd, request, &argument, operation, objects)
      } catch where error.errno == .inappropriateIOCTLForDevice {
        throw error.unsupported("\(operation.rawValue) is not supported by this kernel (it came in Linux \(release))")
      }
    }
  }
}
