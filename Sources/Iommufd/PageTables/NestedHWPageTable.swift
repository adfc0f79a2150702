import CIommufd

/// A nested (stage-1) HW page table on a ``HWPageTable`` allocated with
/// ``HWPageTable/Flags/nestParent`` (`IOMMU_HWPT_ALLOC` with driver data): the guest's page
/// table, translated through the parent's IOAS. Keeps its parent alive (the parent cannot
/// be destroyed while it exists); destroyed once, on ``destroy()`` or release. Thread-safe.
public final class NestedHWPageTable: AttachTarget, ObjectHandle {
  /// The context.
  public let iommufd: IOMMUFD
  /// The HWPT's object id.
  public var id: ObjectID { object.id }
  /// The stage-2 parent.
  public let parent: HWPageTable
  /// The vIOMMU it was allocated on, if it was (kept alive with it).
  public let viommu: VirtualIOMMU?
  /// The fault queue its I/O page faults go to, if any.
  public let faultQueue: FaultQueue?
  let object: OwnedObject

  /// Allocates a nested HWPT for the IOMMU of `deviceID`, with driver data `data` of
  /// `dataType` (`IOMMU_HWPT_DATA_*`; e.g. `struct iommu_hwpt_vtd_s1`); its I/O page
  /// faults go to `faultQueue` when one is given.
  public convenience init(
    parent: HWPageTable, forDevice deviceID: ObjectID, dataType: UInt32, data: [UInt8], faultQueue: FaultQueue? = nil
  ) throws(IommufdError) {
    try self.init(on: parent.object, parent: parent, viommu: nil, deviceID, dataType, data, faultQueue)
  }

  /// Allocates a nested HWPT on virtual IOMMU `viommu` (Linux 6.13), translated through
  /// the vIOMMU's parent; otherwise as ``init(parent:forDevice:dataType:data:faultQueue:)``.
  public convenience init(
    on viommu: VirtualIOMMU, forDevice deviceID: ObjectID, dataType: UInt32, data: [UInt8], faultQueue: FaultQueue? = nil
  ) throws(IommufdError) {
    try self.init(on: viommu.object, parent: viommu.parent, viommu: viommu, deviceID, dataType, data, faultQueue)
  }

  private init(
    on targetObject: OwnedObject, parent: HWPageTable, viommu: VirtualIOMMU?, _ deviceID: ObjectID, _ dataType: UInt32, _ data: [UInt8],
    _ faultQueue: FaultQueue?
  ) throws(IommufdError) {
    parent.iommufd.allocations.enterReading()
    defer { parent.iommufd.allocations.leaveReading() }
    var request = ciommufd_iommu_hwpt_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_hwpt_alloc>.size)
    if let faultQueue {
      request.flags = CIOMMUFD_HWPT_FAULT_ID_VALID
      request.fault_id = faultQueue.id.rawValue
    }
    let target = targetObject.id
    request.dev_id = deviceID.rawValue
    request.pt_id = target.rawValue
    request.data_type = dataType
    guard let dataLength = UInt32(exactly: data.count) else {
      throw IommufdError(.hwptAlloc, .invalidArgument, objects: [.device(deviceID), .pageTable(target)], detail: "\(data.count) bytes of data are more than a u32 counts")
    }
    request.data_len = dataLength
    let iommufd = parent.iommufd
    try withScratchBuffer(count: data.count) { buffer throws(IommufdError) in
      buffer.copyBytes(from: data)
      request.data_uptr = data.isEmpty ? 0 : UInt64(UInt(bitPattern: buffer.baseAddress))
      try iommufd.withDescriptor(.hwptAlloc, using: [targetObject] + (faultQueue.map { [$0.object] } ?? [])) { fd throws(IommufdError) in
        try iommufd.backend.ioctl(fd, CIOMMUFD_IOMMU_HWPT_ALLOC, &request, .hwptAlloc, [.device(deviceID), .pageTable(target)])
      }
    }
    self.iommufd = iommufd
    self.parent = parent
    self.viommu = viommu
    self.faultQueue = faultQueue
    let id = ObjectID(request.out_hwpt_id)
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "nested HWPT", involved: .hwpt(id))
  }

  /// Invalidates cached translations (`IOMMU_HWPT_INVALIDATE`): `entries` holds
  /// `entries.count / entryLength` driver entries of `dataType` (`entryLength` 0 to
  /// `UInt32.max`, else EINVAL). Returns how many were processed; on failure the error
  /// names that count as `processed`.
  @discardableResult
  public func invalidate(dataType: UInt32, entryLength: Int, entries: [UInt8]) throws(IommufdError) -> Int {
    try iommufd.invalidate(object, involved: .hwpt(id), dataType: dataType, entryLength: entryLength, entries: entries)
  }

  deinit { object.release() }

  /// Destroys the HWPT now. Fails with `EBUSY` while a device is attached to it.
  public func destroy() throws(IommufdError) { try object.destroy() }
}

extension IOMMUFD {
  /// `IOMMU_HWPT_INVALIDATE` on `target` (a nested HWPT or a vIOMMU): `entries` holds whole
  /// entries of `entryLength` bytes; returns how many were processed.
  func invalidate(
    _ targetObject: OwnedObject, involved: IommufdError.InvolvedObject, dataType: UInt32, entryLength: Int, entries: [UInt8]
  ) throws(IommufdError) -> Int {
    guard let rawLength = UInt32(exactly: entryLength) else {
      throw IommufdError(.invalidate, .invalidArgument, objects: [involved], detail: "entryLength \(entryLength) is outside 0...\(UInt32.max)")
    }
    guard entryLength > 0 || entries.isEmpty, entries.count % max(entryLength, 1) == 0 else {
      throw IommufdError(.invalidate, .invalidArgument, objects: [involved], detail: "entries must be whole entries of \(entryLength) bytes")
    }
    let count = entryLength == 0 ? 0 : entries.count / entryLength
    guard let entryCount = UInt32(exactly: count) else {
      throw IommufdError(.invalidate, .invalidArgument, objects: [involved], detail: "\(count) entries are more than a u32 counts")
    }
    var request = ciommufd_iommu_hwpt_invalidate()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_hwpt_invalidate>.size)
    request.hwpt_id = targetObject.id.rawValue
    request.data_type = dataType
    request.entry_len = rawLength
    request.entry_num = entryCount
    do {
      try withScratchBuffer(count: entries.count) { buffer throws(IommufdError) in
        buffer.copyBytes(from: entries)
        request.data_uptr = entries.isEmpty ? 0 : UInt64(UInt(bitPattern: buffer.baseAddress))
        try withDescriptor(.invalidate, using: [targetObject]) { fd throws(IommufdError) in
          try backend.ioctl(fd, CIOMMUFD_IOMMU_HWPT_INVALIDATE, &request, .invalidate, [involved])
        }
      }
    } catch {
      var failed = error
      failed.objects.append(.init("processed", "\(request.entry_num)"))
      throw failed
    }
    return Int(request.entry_num)
  }
}

extension IOMMUSelfTest {
  /// The mock nested HWPT's data type (`IOMMU_HWPT_DATA_SELFTEST`), with 4 bytes of data:
  /// the value of its four virtual IOTLB slots.
  public static let nestedDataType = CIOMMUFD_HWPT_DATA_SELFTEST
  /// The mock's invalidation entry type; each entry is `{u32 flags, u32 iotlb_id}` and flag
  /// bit 0 invalidates every slot.
  public static let invalidationType = CIOMMUFD_HWPT_INVALIDATE_DATA_SELFTEST

  /// Checks that IOTLB slot `slot` of the mock nested `hwpt` holds `value`
  /// (`IOMMU_TEST_OP_MD_CHECK_IOTLB`); EINVAL when it does not.
  public func checkIOTLB(_ hwpt: NestedHWPageTable, slot: UInt32, value: UInt32) throws(IommufdError) {
    var command = Self.command(CIOMMUFD_TEST_OP_MD_CHECK_IOTLB, id: hwpt.id)
    withUnsafeMutableBytes(of: &command.payload) {
      $0.storeBytes(of: slot, as: UInt32.self)
      $0.storeBytes(of: value, toByteOffset: 4, as: UInt32.self)
    }
    try issue(&command, [.hwpt(hwpt.id)], using: [hwpt.object])
  }
}
