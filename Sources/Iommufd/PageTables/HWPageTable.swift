import CIommufd

/// A hardware page table (HWPT) allocated explicitly on an IOAS (`IOMMU_HWPT_ALLOC`).
///
/// Unlike the automatic page table the kernel makes when a device attaches to an IOAS, this
/// one is never shared or freed automatically: the handle destroys it on ``destroy()`` or
/// when the last reference goes. It keeps its IOAS alive; devices attached to it keep it
/// alive. Thread-safe.
public final class HWPageTable: AttachTarget, ObjectHandle {
  /// The context the page table lives in.
  public let iommufd: IOMMUFD
  /// The HWPT's object id.
  public var id: ObjectID { object.id }
  /// The IOAS whose mappings the page table holds.
  public let ioas: IOAS
  let object: OwnedObject

  /// Allocation flags (`IOMMU_HWPT_ALLOC_*`).
  public struct Flags: OptionSet, Hashable, Sendable {
    /// The raw flags.
    public var rawValue: UInt32
    /// Creates from the raw flags.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// May be the parent of nested (stage-1) page tables.
    public static let nestParent = Flags(rawValue: 1 << 0)
    /// Tracks DMA writes in dirty bits.
    public static let dirtyTracking = Flags(rawValue: 1 << 1)
    /// May be attached to PASIDs of devices (`IOMMU_HWPT_ALLOC_PASID`, after 6.12).
    public static let pasid = Flags(rawValue: 1 << 3)
  }

  /// The fault queue its I/O page faults go to, if any.
  public let faultQueue: FaultQueue?

  /// Allocates a page table on `ioas` for the IOMMU that serves `deviceID` (a bound device);
  /// with `faultQueue`, devices' page requests go there (Linux 7.2; 6.12 takes fault queues
  /// on nested page tables only, EOPNOTSUPP here), and only devices that can issue page
  /// requests attach to it.
  public init(on ioas: IOAS, forDevice deviceID: ObjectID, flags: Flags = [], faultQueue: FaultQueue? = nil) throws(IommufdError) {
    ioas.iommufd.allocations.enterReading()
    defer { ioas.iommufd.allocations.leaveReading() }
    var request = ciommufd_iommu_hwpt_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_hwpt_alloc>.size)
    request.flags = flags.rawValue
    if let faultQueue {
      request.flags |= CIOMMUFD_HWPT_FAULT_ID_VALID
      request.fault_id = faultQueue.id.rawValue
    }
    request.dev_id = deviceID.rawValue
    request.pt_id = ioas.id.rawValue
    let iommufd = ioas.iommufd
    try iommufd.withDescriptor(.hwptAlloc, using: [ioas.object] + (faultQueue.map { [$0.object] } ?? [])) { fd throws(IommufdError) in
      try iommufd.backend.ioctl(fd, CIOMMUFD_IOMMU_HWPT_ALLOC, &request, .hwptAlloc, [.device(deviceID), .ioas(ioas.id)])
    }
    self.iommufd = iommufd
    self.ioas = ioas
    self.faultQueue = faultQueue
    let id = ObjectID(request.out_hwpt_id)
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "HWPT", involved: .hwpt(id))
  }

  deinit { object.release() }

  /// Destroys the page table now. Fails with `EBUSY` while a device is attached to it.
  public func destroy() throws(IommufdError) { try object.destroy() }
}
