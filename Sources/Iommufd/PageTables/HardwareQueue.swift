import CIommufd

/// A HW-accelerated queue of a ``VirtualIOMMU`` in guest memory (`IOMMU_HW_QUEUE_ALLOC`,
/// Linux 6.17), such as a Tegra241 CMDQV virtual command queue the guest drives directly.
/// The kernel pins the queue's memory (physically contiguous, mapped in the vIOMMU's
/// parent IOAS) for as long as the queue exists: unmapping it is EBUSY meanwhile.
///
/// Owns its object id (the kernel also takes one for an internal access object, released
/// with the queue) and keeps its vIOMMU alive. Thread-safe.
public final class HardwareQueue: Sendable, ObjectHandle {
  /// The vIOMMU it belongs to.
  public let viommu: VirtualIOMMU
  /// The queue's object id.
  public var id: ObjectID { object.id }
  /// The kind of queue.
  public let kind: Kind
  /// The queue's index among the vIOMMU's queues of its kind.
  public let index: UInt32
  /// Where the queue is in the guest's physical address space (an IOVA of the parent IOAS).
  public let guestAddress: UInt64
  /// The queue's length in bytes.
  public let length: UInt64
  let object: OwnedObject

  /// A HW queue type (`enum iommu_hw_queue_type`).
  public struct Kind: RawRepresentable, Hashable, Sendable {
    /// The raw type.
    public var rawValue: UInt32
    /// Creates from the raw type.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// A Tegra241 CMDQV virtual command queue (`IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV`).
    public static let tegra241CMDQV = Kind(rawValue: CIOMMUFD_HW_QUEUE_TYPE_TEGRA241_CMDQV)
    /// The self-test mock vIOMMU's queue (`IOMMU_HW_QUEUE_TYPE_SELFTEST`).
    public static let selfTest = Kind(rawValue: CIOMMUFD_HW_QUEUE_TYPE_SELFTEST)
  }

  /// Allocates queue `index` of `kind` on `viommu`, in the `length` bytes of guest memory at
  /// `guestAddress`. A kernel before 6.17 answers ENOTTY, reported as unsupported.
  public init(on viommu: VirtualIOMMU, kind: Kind, index: UInt32, guestAddress: UInt64, length: UInt64) throws(IommufdError) {
    viommu.iommufd.allocations.enterReading()
    defer { viommu.iommufd.allocations.leaveReading() }
    var request = ciommufd_iommu_hw_queue_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_hw_queue_alloc>.size)
    request.viommu_id = viommu.id.rawValue
    request.type = kind.rawValue
    request.index = index
    request.nesting_parent_iova = guestAddress
    request.length = length
    let iommufd = viommu.iommufd
    try iommufd.issueNewerRequest(
      CIOMMUFD_IOMMU_HW_QUEUE_ALLOC, &request, .hwQueueAlloc,
      [.viommu(viommu.id), .init("index", "\(index)"), .init("iova", "0x\(String(guestAddress, radix: 16))")],
      using: [viommu.object], since: "6.17")
    self.viommu = viommu
    self.kind = kind
    self.index = index
    self.guestAddress = guestAddress
    self.length = length
    let id = ObjectID(request.out_hw_queue_id)
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "HW queue", involved: .object(id))
  }

  deinit { object.release() }

  /// Destroys the queue now, unpinning its memory; EBUSY while a later queue depends on it.
  public func destroy() throws(IommufdError) { try object.destroy() }
}
