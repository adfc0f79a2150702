import SystemPackage

/// The one error type of the library: which operation failed, the errno, and the kernel
/// objects involved.
///
/// Errors the kernel reports carry its errno unchanged. Bad input the library can reject
/// before calling the kernel carries `EINVAL` (or the errno the kernel would use) and a
/// ``detail`` that says what was wrong.
public struct IommufdError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The operation that failed.
  public var operation: Operation
  /// The errno reported by the kernel, or chosen by the library for rejected input.
  public var errno: Errno
  /// The kernel objects and descriptors involved, in the order the operation names them.
  public var objects: [InvolvedObject]
  /// What was wrong, when the library rejected the call itself; otherwise `nil`.
  public var detail: String?

  /// Creates an error.
  public init(_ operation: Operation, _ errno: Errno, objects: [InvolvedObject] = [], detail: String? = nil) {
    self.operation = operation
    self.errno = errno
    self.objects = objects
    self.detail = detail
  }

  /// A one-line description: operation, objects, errno and detail.
  public var description: String {
    var text = "\(operation.rawValue)"
    if !objects.isEmpty { text += " [" + objects.map(\.description).joined(separator: ", ") + "]" }
    text += " failed: \(errno) (errno \(errno.rawValue))"
    if let detail { text += ": \(detail)" }
    return text
  }
}

extension IommufdError {
  /// A kernel object id or a descriptor that took part in a failed operation.
  public struct InvolvedObject: Sendable, Equatable, CustomStringConvertible {
    /// What the value names: `"ioas"`, `"hwpt"`, `"device"`, `"pt"`, `"fd"`, `"path"`, ...
    public var role: String
    /// The id, descriptor number, index or path.
    public var value: String

    /// Creates an entry.
    public init(_ role: String, _ value: String) {
      self.role = role
      self.value = value
    }

    /// `role=value`.
    public var description: String { "\(role)=\(value)" }

    /// An IOAS object id.
    public static func ioas(_ id: ObjectID) -> Self { .init("ioas", "\(id.rawValue)") }
    /// An HW page table object id.
    public static func hwpt(_ id: ObjectID) -> Self { .init("hwpt", "\(id.rawValue)") }
    /// A device object id (from bind).
    public static func device(_ id: ObjectID) -> Self { .init("device", "\(id.rawValue)") }
    /// A page-table id of any kind (IOAS or HWPT), as passed to attach.
    public static func pageTable(_ id: ObjectID) -> Self { .init("pt", "\(id.rawValue)") }
    /// Any object id.
    public static func object(_ id: ObjectID) -> Self { .init("id", "\(id.rawValue)") }
    /// A file descriptor.
    public static func fd(_ fd: FileDescriptor) -> Self { .init("fd", "\(fd.rawValue)") }
    /// A path.
    public static func path(_ path: String) -> Self { .init("path", path) }
    /// A VFIO region index.
    public static func region(_ index: Int) -> Self { .init("region", "\(index)") }
    /// A VFIO IRQ index.
    public static func irq(_ index: Int) -> Self { .init("irq", "\(index)") }
    /// A virtual IOMMU id.
    public static func viommu(_ id: ObjectID) -> Self { .init("viommu", "\(id.rawValue)") }
  }

  /// The operations the library performs, named after the kernel request where there is one.
  public enum Operation: String, Sendable, Equatable, CaseIterable {
    /// Open.
    case open = "open"
    /// Close.
    case close = "close"
    /// The `IOMMU_DESTROY` request.
    case destroy = "IOMMU_DESTROY"
    /// The `IOMMU_IOAS_ALLOC` request.
    case ioasAlloc = "IOMMU_IOAS_ALLOC"
    /// The `IOMMU_IOAS_ALLOW_IOVAS` request.
    case ioasAllowIOVAs = "IOMMU_IOAS_ALLOW_IOVAS"
    /// The `IOMMU_IOAS_COPY` request.
    case ioasCopy = "IOMMU_IOAS_COPY"
    /// The `IOMMU_IOAS_IOVA_RANGES` request.
    case ioasIOVARanges = "IOMMU_IOAS_IOVA_RANGES"
    /// The `IOMMU_IOAS_MAP` request.
    case ioasMap = "IOMMU_IOAS_MAP"
    /// The `IOMMU_IOAS_UNMAP` request.
    case ioasUnmap = "IOMMU_IOAS_UNMAP"
    /// The `IOMMU_OPTION` request.
    case option = "IOMMU_OPTION"
    /// The `IOMMU_VFIO_IOAS` request.
    case vfioIOAS = "IOMMU_VFIO_IOAS"
    /// The `IOMMU_HWPT_ALLOC` request.
    case hwptAlloc = "IOMMU_HWPT_ALLOC"
    /// The `IOMMU_GET_HW_INFO` request.
    case getHWInfo = "IOMMU_GET_HW_INFO"
    /// The `IOMMU_HWPT_SET_DIRTY_TRACKING` request.
    case setDirtyTracking = "IOMMU_HWPT_SET_DIRTY_TRACKING"
    /// The `IOMMU_HWPT_GET_DIRTY_BITMAP` request.
    case getDirtyBitmap = "IOMMU_HWPT_GET_DIRTY_BITMAP"
    /// The `IOMMU_HWPT_INVALIDATE` request.
    case invalidate = "IOMMU_HWPT_INVALIDATE"
    /// The `IOMMU_FAULT_QUEUE_ALLOC` request.
    case faultQueueAlloc = "IOMMU_FAULT_QUEUE_ALLOC"
    /// Reading faults from a fault queue.
    case faultRead = "fault read"
    /// Writing a page response to a fault queue.
    case faultRespond = "fault response"
    /// The `IOMMU_IOAS_MAP_FILE` request.
    case ioasMapFile = "IOMMU_IOAS_MAP_FILE"
    /// The `IOMMU_IOAS_CHANGE_PROCESS` request.
    case changeProcess = "IOMMU_IOAS_CHANGE_PROCESS"
    /// The `IOMMU_VIOMMU_ALLOC` request.
    case viommuAlloc = "IOMMU_VIOMMU_ALLOC"
    /// The `IOMMU_VDEVICE_ALLOC` request.
    case vdeviceAlloc = "IOMMU_VDEVICE_ALLOC"
    /// The `IOMMU_HW_QUEUE_ALLOC` request.
    case hwQueueAlloc = "IOMMU_HW_QUEUE_ALLOC"
    /// The `IOMMU_VEVENTQ_ALLOC` request.
    case veventqAlloc = "IOMMU_VEVENTQ_ALLOC"
    /// Reading virtual events from a vEVENTQ descriptor.
    case veventRead = "vEVENTQ read"
    /// The `IOMMU_TEST_CMD` request.
    case testCommand = "IOMMU_TEST_CMD"
    /// The `VFIO_DEVICE_BIND_IOMMUFD` request.
    case deviceBind = "VFIO_DEVICE_BIND_IOMMUFD"
    /// The `VFIO_DEVICE_ATTACH_IOMMUFD_PT` request.
    case deviceAttach = "VFIO_DEVICE_ATTACH_IOMMUFD_PT"
    /// The `VFIO_DEVICE_DETACH_IOMMUFD_PT` request.
    case deviceDetach = "VFIO_DEVICE_DETACH_IOMMUFD_PT"
    /// The `VFIO_DEVICE_GET_INFO` request.
    case deviceGetInfo = "VFIO_DEVICE_GET_INFO"
    /// The `VFIO_DEVICE_GET_REGION_INFO` request.
    case deviceGetRegionInfo = "VFIO_DEVICE_GET_REGION_INFO"
    /// The `VFIO_DEVICE_GET_IRQ_INFO` request.
    case deviceGetIRQInfo = "VFIO_DEVICE_GET_IRQ_INFO"
    /// The `VFIO_DEVICE_SET_IRQS` request.
    case deviceSetIRQs = "VFIO_DEVICE_SET_IRQS"
    /// The `VFIO_DEVICE_RESET` request.
    case deviceReset = "VFIO_DEVICE_RESET"
    /// The `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` request.
    case hotResetInfo = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"
    /// The `VFIO_DEVICE_PCI_HOT_RESET` request.
    case hotReset = "VFIO_DEVICE_PCI_HOT_RESET"
    /// The `VFIO_DEVICE_FEATURE` request.
    case deviceFeature = "VFIO_DEVICE_FEATURE"
    /// Reading or writing a migration data stream (`read(2)`, `write(2)`).
    case migrationData = "migration data"
    /// The `VFIO_MIG_GET_PRECOPY_INFO` request.
    case precopyInfo = "VFIO_MIG_GET_PRECOPY_INFO"
    /// The `VFIO_GET_API_VERSION` request.
    case vfioAPIVersion = "VFIO_GET_API_VERSION"
    /// The `VFIO_CHECK_EXTENSION` request.
    case vfioCheckExtension = "VFIO_CHECK_EXTENSION"
    /// The `VFIO_SET_IOMMU` request.
    case vfioSetIOMMU = "VFIO_SET_IOMMU"
    /// The `VFIO_GROUP_GET_STATUS` request.
    case groupStatus = "VFIO_GROUP_GET_STATUS"
    /// The `VFIO_GROUP_SET_CONTAINER` request.
    case groupSetContainer = "VFIO_GROUP_SET_CONTAINER"
    /// The `VFIO_GROUP_GET_DEVICE_FD` request.
    case groupDevice = "VFIO_GROUP_GET_DEVICE_FD"
    /// The `VFIO_IOMMU_GET_INFO` request.
    case containerInfo = "VFIO_IOMMU_GET_INFO"
    /// The `VFIO_IOMMU_MAP_DMA` request.
    case containerMap = "VFIO_IOMMU_MAP_DMA"
    /// The `VFIO_IOMMU_UNMAP_DMA` request.
    case containerUnmap = "VFIO_IOMMU_UNMAP_DMA"
    /// Probing whether the kernel has a request.
    case probe = "probe"
    /// Binding a device to a driver through sysfs.
    case driverBinding = "driver binding"
    /// Region read.
    case regionRead = "region read"
    /// Region write.
    case regionWrite = "region write"
    /// Region mmap.
    case regionMap = "region mmap"
    /// Mmap.
    case memoryMap = "mmap"
    /// `memfd_create(2)`.
    case memoryFile = "memfd_create"
    /// `ftruncate(2)`.
    case truncate = "ftruncate"
    /// Munmap.
    case memoryUnmap = "munmap"
    /// Eventfd.
    case eventfd = "eventfd"
    /// Eventfd read.
    case eventRead = "eventfd read"
    /// Eventfd write.
    case eventWrite = "eventfd write"
    /// Sysfs discovery.
    case discovery = "sysfs discovery"
    /// Creating a mediated device (an mdev type's `create`).
    case mediatedDeviceCreate = "mdev create"
    /// Removing a mediated device (its `remove`).
    case mediatedDeviceRemove = "mdev remove"
  }
}

extension IommufdError {
  /// The same error, saying what the kernel lacks.
  func unsupported(_ detail: String) -> IommufdError {
    var error = self
    error.detail = detail
    return error
  }
}
