import CIommufd

/// A virtual IOMMU (`IOMMU_VIOMMU_ALLOC`, Linux 6.13): the slice of a physical IOMMU that
/// a VMM presents to one guest, on a `NEST_PARENT` page table. Guest-visible device
/// identities (``VirtualDevice``), event queues (``VirtualEventQueue``) and nested page
/// tables hang off it.
///
/// Owns its object id: destroyed on ``destroy()`` or when the last reference goes; keeps
/// its parent page table alive. The kernel refuses the destroy (EBUSY) while a virtual
/// device, event queue or nested page table uses it. Thread-safe.
public final class VirtualIOMMU: Sendable, ObjectHandle {
  /// The context.
  public let iommufd: IOMMUFD
  /// The vIOMMU's object id.
  public var id: ObjectID { object.id }
  /// The nesting parent page table it translates guest physical addresses with.
  public let parent: HWPageTable
  /// The kind of virtual IOMMU.
  public let kind: Kind
  /// The driver-specific data after allocation (the kernel may fill in output fields).
  public let driverData: [UInt8]
  let object: OwnedObject

  /// A vIOMMU type (`enum iommu_viommu_type`).
  public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The raw type.
    public var rawValue: UInt32
    /// Creates from the raw type.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// ARM SMMUv3 (`IOMMU_VIOMMU_TYPE_ARM_SMMUV3`).
    public static let armSMMUv3 = Kind(rawValue: CIOMMUFD_VIOMMU_TYPE_ARM_SMMUV3)
    /// ARM SMMUv3 with NVIDIA Tegra241 CMDQV (`IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV`).
    public static let tegra241CMDQV = Kind(rawValue: CIOMMUFD_VIOMMU_TYPE_TEGRA241_CMDQV)
    /// The self-test mock IOMMU's (`IOMMU_VIOMMU_TYPE_SELFTEST`, `CONFIG_IOMMUFD_TEST`).
    public static let selfTest = Kind(rawValue: CIOMMUFD_VIOMMU_TYPE_SELFTEST)
    /// The type's name.
    public var description: String {
      switch self {
      case .armSMMUv3: "ARM SMMUv3"
      case .tegra241CMDQV: "Tegra241 CMDQV"
      case .selfTest: "self-test"
      default: "type \(rawValue)"
      }
    }
  }

  /// Allocates a virtual IOMMU of `kind` for the physical IOMMU that serves `deviceID`,
  /// on the `NEST_PARENT` page table `parent`, with driver-specific `data` (empty for
  /// none). A kernel before 6.13 answers ENOTTY, reported as unsupported.
  public init(kind: Kind, device deviceID: ObjectID, parent: HWPageTable, data: [UInt8] = []) throws(IommufdError) {
    parent.iommufd.allocations.enterReading()
    defer { parent.iommufd.allocations.leaveReading() }
    var request = ciommufd_iommu_viommu_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_viommu_alloc>.size)
    request.type = kind.rawValue
    request.dev_id = deviceID.rawValue
    request.hwpt_id = parent.id.rawValue
    guard let dataLength = UInt32(exactly: data.count) else {
      throw IommufdError(.viommuAlloc, .invalidArgument, objects: [.device(deviceID), .hwpt(parent.id)], detail: "\(data.count) bytes of data are more than a u32 counts")
    }
    request.data_len = dataLength
    let iommufd = parent.iommufd
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: data)
    request.data_uptr = data.isEmpty ? 0 : UInt64(UInt(bitPattern: buffer.baseAddress))
    try iommufd.issueNewerRequest(CIOMMUFD_IOMMU_VIOMMU_ALLOC, &request, .viommuAlloc, [.device(deviceID), .hwpt(parent.id)],
      using: [parent.object], since: "6.13")
    self.iommufd = iommufd
    self.parent = parent
    self.kind = kind
    self.driverData = Array(buffer.prefix(data.count))
    let id = ObjectID(request.out_viommu_id)
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "vIOMMU", involved: .viommu(id))
  }

  /// Invalidates caches the vIOMMU's devices keep for the guest (`IOMMU_HWPT_INVALIDATE`
  /// on the vIOMMU, after 6.12; 7.2 has it): `entries` holds `entries.count / entryLength` driver
  /// entries of `dataType` (`entryLength` 0 to `UInt32.max`, else EINVAL), naming devices by
  /// their virtual ids. Returns how many were processed; on failure the error names that
  /// count as `processed`.
  @discardableResult
  public func invalidate(dataType: UInt32, entryLength: Int, entries: [UInt8]) throws(IommufdError) -> Int {
    try iommufd.invalidate(object, involved: .viommu(id), dataType: dataType, entryLength: entryLength, entries: entries)
  }

  deinit { object.release() }

  /// Destroys the vIOMMU now; EBUSY while something still uses it.
  public func destroy() throws(IommufdError) { try object.destroy() }
}

/// A device's guest-visible identity behind a ``VirtualIOMMU`` (`IOMMU_VDEVICE_ALLOC`,
/// Linux 6.13): the virtual stream id (ARM), device id (AMD) or requester id (VT-d) the
/// guest uses for it, so guest invalidations and events can be translated.
///
/// Owns its object id and keeps its vIOMMU alive. Destroy it before the device is closed:
/// the kernel otherwise removes it with the device, and its id stays taken until the
/// context closes (a later ``destroy()`` then fails with ENOENT; the release only logs
/// that at debug level). Thread-safe.
public final class VirtualDevice: Sendable, ObjectHandle {
  /// The vIOMMU it belongs to.
  public let viommu: VirtualIOMMU
  /// The vDEVICE's object id.
  public var id: ObjectID { object.id }
  /// The physical device's object id.
  public let deviceID: ObjectID
  /// The guest-visible id.
  public let virtualID: UInt64
  let object: OwnedObject

  /// Gives the bound device `deviceID` the guest-visible id `virtualID` behind `viommu`.
  public init(on viommu: VirtualIOMMU, device deviceID: ObjectID, virtualID: UInt64) throws(IommufdError) {
    viommu.iommufd.allocations.enterReading()
    defer { viommu.iommufd.allocations.leaveReading() }
    var request = ciommufd_iommu_vdevice_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_vdevice_alloc>.size)
    request.viommu_id = viommu.id.rawValue
    request.dev_id = deviceID.rawValue
    request.virt_id = virtualID
    let iommufd = viommu.iommufd
    try iommufd.issueNewerRequest(CIOMMUFD_IOMMU_VDEVICE_ALLOC, &request, .vdeviceAlloc, [.viommu(viommu.id), .device(deviceID)],
      using: [viommu.object], since: "6.13")
    self.viommu = viommu
    self.deviceID = deviceID
    self.virtualID = virtualID
    let id = ObjectID(request.out_vdevice_id)
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "vDEVICE", involved: .object(id), removedWith: "its device")
  }

  deinit { object.release() }

  /// Destroys the vDEVICE now.
  public func destroy() throws(IommufdError) { try object.destroy() }
}
