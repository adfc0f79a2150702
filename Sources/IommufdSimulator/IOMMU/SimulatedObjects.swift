import Iommufd
#if canImport(Glibc)
import Glibc
#endif

/// One open `/dev/iommu` of the simulated kernel: its object table and options.
final class SimulatedContext {
  enum Object {
    case ioas(SimulatedIOAS)
    case hwpt(SimulatedHWPT)
    case device(SimulatedDeviceObject)
    /// A self-test object (`IOMMU_TEST_OP_MOCK_DOMAIN`): owns a mock device.
    case selfTest(deviceID: UInt32)
    /// A fault queue (`IOMMU_FAULT_QUEUE_ALLOC`).
    case fault(SimulatedFaultQueue)
    /// A virtual IOMMU (`IOMMU_VIOMMU_ALLOC`, 7.2 model).
    case viommu(SimulatedVIOMMU)
    /// A virtual device (`IOMMU_VDEVICE_ALLOC`, 7.2 model).
    case vdevice(SimulatedVDevice)
    /// A virtual event queue (`IOMMU_VEVENTQ_ALLOC`, 7.2 model).
    case veventq(SimulatedVEventQueue)
    /// The id of a vDEVICE removed with its device: taken, but no object (V-4).
    case tombstone
    /// A HW queue of a vIOMMU (`IOMMU_HW_QUEUE_ALLOC`, 7.2 model).
    case hwQueue(SimulatedHWQueue)
    /// An access object: the internal one a HW queue pins its memory through (7.2 model),
    /// or a self-test access (``SimulatedAccess``, reached through its descriptor).
    case access
  }

  /// Guarded by the kernel's lock; unchecked: a translation reads it.
  @exclusivity(unchecked) var objects = SimulatedTable<UInt32, Object>()
  /// The user's descriptor is still open.
  var userFileOpen = true
  /// Device descriptors bound to this context: each keeps it alive (OBJ-8).
  var boundDevices = 0
  /// Open fault-queue and vEVENTQ descriptors: each keeps it alive too (FAULT-4).
  var openFaultFiles = 0
  /// Open self-test access descriptors: each access holds its context too.
  var accessFiles = 0
  /// Offsets of the iommufd descriptor's mmap space handed to vIOMMUs, by vIOMMU id.
  var mmapRegions: [UInt32: UInt64] = [:]
  /// `IOMMU_OPTION_RLIMIT_MODE`: charged per process instead of per user.
  var accountPerProcess = false
  /// The IOAS of the VFIO compatibility interface.
  var compatIOAS: UInt32?

  /// OBJ-1: the lowest free id, from 1.
  func lowestFreeID() -> UInt32 {
    var id: UInt32 = 1
    while objects[id] != nil { id += 1 }
    return id
  }

  /// The object a lookup by `id` finds: none for a tombstone, whose id stays taken while
  /// lookups give ENOENT (`iommufd_object_tombstone_user`; xa_load of the zero entry).
  func object(_ id: UInt32) -> Object? {
    if case .tombstone? = objects[id] { return nil }
    return objects[id]
  }

  func ioas(_ id: UInt32) -> SimulatedIOAS? {
    if case .ioas(let ioas)? = objects[id] { return ioas }
    return nil
  }

  func hwpt(_ id: UInt32) -> SimulatedHWPT? {
    if case .hwpt(let hwpt)? = objects[id] { return hwpt }
    return nil
  }

  /// A paging HWPT (HWPT_PAGING), not a nested one.
  func pagingHWPT(_ id: UInt32) -> SimulatedHWPT? {
    guard let hwpt = hwpt(id), hwpt.parentID == nil else { return nil }
    return hwpt
  }

  /// A nested HWPT (HWPT_NESTED).
  func nestedHWPT(_ id: UInt32) -> SimulatedHWPT? {
    guard let hwpt = hwpt(id), hwpt.parentID != nil else { return nil }
    return hwpt
  }

  func device(_ id: UInt32) -> SimulatedDeviceObject? {
    if case .device(let device)? = objects[id] { return device }
    return nil
  }

  func viommu(_ id: UInt32) -> SimulatedVIOMMU? {
    if case .viommu(let viommu)? = objects[id] { return viommu }
    return nil
  }

  /// The vDEVICE of device `deviceID`, with its id (a device has at most one).
  func vdevice(ofDevice deviceID: UInt32) -> (id: UInt32, vdevice: SimulatedVDevice)? {
    for (id, object) in objects {
      if case .vdevice(let vdevice) = object, vdevice.deviceID == deviceID { return (id, vdevice) }
    }
    return nil
  }
}

/// What a domain is like: the IOMMU driver that made it (a driver refuses another's
/// domains), its smallest IO page and its aperture.
struct DomainProfile: Equatable {
  /// The IOMMU driver a domain belongs to.
  enum Driver: Equatable {
    /// The iommufd self-test's mock IOMMU.
    case mock
    /// The simulated platform IOMMU (VT-d like).
    case platform
  }

  var driver: Driver
  var pageSize: UInt64
  var apertureStart: UInt64
  var apertureLast: UInt64
  /// The size of one page-table entry, the unit of dirty bits: the mock's 2 KiB granule
  /// in both its tables (a CPU page is a contiguous pair of entries), else the IO page.
  var entrySize: UInt64

  /// The iommufd self-test's mock IOMMU (`selftest.c`): 2 KiB IO pages (half a CPU page)
  /// and the mock aperture, 16 MiB to 2 GiB.
  static func mock(pageSize: UInt64) -> DomainProfile {
    DomainProfile(driver: .mock, pageSize: pageSize / 2, apertureStart: 1 << 24, apertureLast: (1 << 31) - 1, entrySize: pageSize / 2)
  }

  /// 7.2's huge mock page table (`MOCK_IOMMUPT_HUGE`): IO pages of a CPU page and of
  /// 1 MiB, and the generic AMD v1 table's own aperture, which starts at 0 and, with no
  /// dynamic top and three levels of 2 KiB granules, ends at 2^38 - 1.
  static func mockHuge(pageSize: UInt64) -> DomainProfile {
    DomainProfile(driver: .mock, pageSize: pageSize, apertureStart: 0, apertureLast: (1 << 38) - 1, entrySize: pageSize / 2)
  }
}

/// A paging HW page table: a domain of one IOAS.
final class SimulatedHWPT {
  let ioasID: UInt32
  /// Made by the kernel for an attach to an IOAS (OBJ-7), not by `IOMMU_HWPT_ALLOC`.
  let isAutomatic: Bool
  let profile: DomainProfile
  /// `IOMMU_HWPT_ALLOC_*` flags it was allocated with.
  let flags: UInt32
  /// Device object ids attached to it, in attach order.
  var devices: [UInt32] = []
  /// The stage-2 parent, for a nested HWPT; `nil` for a paging one.
  var parentID: UInt32?
  /// The vIOMMU a nested HWPT was allocated on (7.2 model), which holds the parent.
  var viommuID: UInt32?
  /// The fault queue its I/O page faults go to (`IOMMU_HWPT_FAULT_ID_VALID`).
  var faultID: UInt32?
  /// A mock nested HWPT's four virtual IOTLB slots.
  var iotlb: [UInt32] = []
  /// Dirty tracking is on (`IOMMU_HWPT_SET_DIRTY_TRACKING`). Guarded by the kernel's lock;
  /// unchecked, as ``dirtyBits``: a device write reads them.
  @exclusivity(unchecked) var dirtyEnabled = false
  /// The domain maps 1 MiB leaves (`MOCK_HUGE_PAGE_SIZE`) where memory allows: 6.12's mock
  /// for a device with `MOCK_FLAGS_DEVICE_HUGE_IOVA`, 7.2's huge mock page table. Dirty bits
  /// are then kept per leaf.
  var hugeLeaves = false
  /// Dirty entries, by entry number (IOVA / entry size).
  @exclusivity(unchecked) var dirtyBits = SimulatedDirtyBits()

  init(ioasID: UInt32, isAutomatic: Bool, profile: DomainProfile, flags: UInt32 = 0) {
    self.ioasID = ioasID
    self.isAutomatic = isAutomatic
    self.profile = profile
    self.flags = flags
  }

  /// Allocated with dirty tracking: has the dirty ops.
  var hasDirtyOps: Bool { flags & 0x2 != 0 }

  /// Whether an IO page of `[first, last]` is dirty.
  func hasDirty(_ first: UInt64, _ last: UInt64) -> Bool {
    var page = first / profile.entrySize
    let end = last / profile.entrySize
    while page <= end {
      if dirtyBits.contains(page) { return true }
      page += 1
    }
    return false
  }

  /// Clears the IO pages of `[first, last]`.
  func clearDirty(_ first: UInt64, _ last: UInt64) {
    dirtyBits.removeRange(first / profile.entrySize, last / profile.entrySize)
  }

  /// Marks the IO pages covering `[first, last]` dirty.
  func markDirty(_ first: UInt64, _ last: UInt64) {
    var page = first / profile.entrySize
    let end = last / profile.entrySize
    while page <= end {
      dirtyBits.insert(page)
      page += 1
    }
  }


}

/// The DEVICE object a VFIO bind (or a self-test mock domain) creates.
final class SimulatedDeviceObject {
  /// The cdev descriptor it was bound through; `nil` for a mock device.
  weak var file: SimulatedDeviceFile?
  /// The domains the device's IOMMU makes.
  let profile: DomainProfile
  /// The reserved regions the device brings to an IOAS it attaches to.
  let reservedRegions: [IOVARange]
  /// What `IOMMU_GET_HW_INFO` reports for the device's IOMMU.
  let hardwareInfo: (type: UInt32, data: [UInt8], capabilities: UInt64)
  /// The `IOMMU_HWPT_ALLOC` flags the device's IOMMU driver accepts on an IOAS.
  var allowedHWPTFlags: UInt32 {
    let dirty: UInt32 = hardwareInfo.capabilities & 1 != 0 ? 0x2 : 0
    return profile.driver == .mock ? 0x1 | dirty : dirty  // the mock also offers NEST_PARENT
  }
  /// Whether the device's IOMMU can track dirty pages.
  var dirtyCapable: Bool { hardwareInfo.capabilities & 1 != 0 }
  var attachedHWPT: UInt32?
  /// log2 of the device's PASID count, 0 without PASIDs (`out_max_pasid_log2`).
  var maxPASIDLog2: UInt8 = 0
  /// 6.12's `MOCK_FLAGS_DEVICE_HUGE_IOVA`: its mock domains also map 1 MiB leaves.
  var hugeIOVA = false
  /// The mock's planted failure for PASID 1024: set by one attach there, it fails the next
  /// with ENOMEM (to test the core's rollback); a detach clears it.
  var pasid1024FakeError = false
  /// A mock device's four cache slots, which vIOMMU invalidations clear (7.2 model).
  var cache: [UInt32] = Array(repeating: 0xBAD_DAD, count: 4)
  /// PASIDs attached through the VFIO cdev, with their HWPT ids (7.2 model).
  var pasids: [UInt32: UInt32] = [:]
  /// The RID was attached through vfio's PASID path (PASID 0, 7.2 model), which vfio's own
  /// attach and detach of the RID do not see.
  var ridThroughPASIDPath = false
  /// The vIOMMU and virtual id recorded when a mock device attached to a nested HWPT of
  /// a vIOMMU (7.2 model), for TRIGGER_VEVENT.
  var virtualTarget: (viommuID: UInt32, virtualID: UInt64)?
  /// The attached HWPT, for the DMA path (dirty bits).
  @exclusivity(unchecked) var attachedHWPTObject: SimulatedHWPT?
  /// The IOAS of the attached HWPT, for the DMA path.
  @exclusivity(unchecked) var attachedIOAS: SimulatedIOAS?

  init(
    file: SimulatedDeviceFile?, profile: DomainProfile, reservedRegions: [IOVARange],
    hardwareInfo: (type: UInt32, data: [UInt8], capabilities: UInt64)
  ) {
    self.file = file
    self.profile = profile
    self.reservedRegions = reservedRegions
    self.hardwareInfo = hardwareInfo
  }
}

/// One open descriptor of a simulated device cdev.
final class SimulatedDeviceFile {
  let device: SimulatedPCIDevice
  let number: Int
  /// The context and device object id once bound.
  var binding: (context: SimulatedContext, deviceID: UInt32)?
  /// The device object once bound. Guarded by the kernel's lock; unchecked: every DMA
  /// reads it, as it reads the object's attachment.
  @exclusivity(unchecked) var object: SimulatedDeviceObject?

  init(device: SimulatedPCIDevice, number: Int) {
    self.device = device
    self.number = number
  }
}

/// Per-device interrupt state, as vfio-pci keeps it.
struct SimulatedIRQState {
  enum Mode { case none, intx, msi, msix }
  var mode: Mode = .none
  /// Assigned eventfds (duplicated, so the user may close theirs), by vector.
  var eventFDs: [Int: Int32] = [:]
  /// INTx is masked (by its own firing, or by the user).
  var intxMasked = false
  /// The MSI or MSI-X vectors allocated: `0..<start + count` of the SET_IRQS that enabled
  /// the index, and MSI-X vectors allocated one by one since.
  var allocatedVectors: Set<Int> = []
}

/// A fault queue: page-request groups waiting to be read, and groups read and waiting for
/// their response, by cookie.
final class SimulatedFaultQueue {
  struct Fault {
    var flags: UInt32
    var deviceID: UInt32
    var pasid: UInt32
    var groupID: UInt32
    var permissions: UInt32
    var address: UInt64
  }

  /// The descriptor is open.
  var fileOpen = true
  /// Groups not yet read (each one fault: the self-test reports single-page groups).
  var pending: [[Fault]] = []
  /// Groups read, by cookie, until answered.
  var awaiting: [UInt32: [Fault]] = [:]

  /// FAULT-6: the lowest free cookie from 1.
  func nextCookie() -> UInt32 {
    var cookie: UInt32 = 1
    while awaiting[cookie] != nil { cookie += 1 }
    return cookie
  }
}

/// A virtual IOMMU (7.2 model): a slice of the mock IOMMU on a NEST_PARENT HWPT.
final class SimulatedVIOMMU {
  let type: UInt32
  let parentID: UInt32
  /// The mock's two driver-data pages (a memfd), which the user maps through the iommufd's
  /// mmap space: `in_data` in the first word. `nil` without driver data.
  var pages: Int32?
  /// Addresses where the user has the pages mapped: each mapping holds the vIOMMU.
  var mappedAt: [UInt] = []
  init(type: UInt32, parentID: UInt32) {
    self.type = type
    self.parentID = parentID
  }
  deinit { if let pages { close(pages) } }
}

/// A virtual device (7.2 model): a device's id behind a vIOMMU.
final class SimulatedVDevice {
  let viommuID: UInt32
  let deviceID: UInt32
  let virtualID: UInt64
  init(viommuID: UInt32, deviceID: UInt32, virtualID: UInt64) {
    self.viommuID = viommuID
    self.deviceID = deviceID
    self.virtualID = virtualID
  }
}

/// A virtual event queue (7.2 model): records waiting to be read, FIFO.
final class SimulatedVEventQueue {
  struct Record {
    var lostEvents: Bool
    var sequence: UInt32
    var data: [UInt8]
  }

  let viommuID: UInt32
  let type: UInt32
  let depth: UInt32
  /// The descriptor is open.
  var fileOpen = true
  var records: [Record] = []
  /// Normal events queued (the lost-events mark does not count).
  var eventCount: UInt32 = 0
  var nextSequence: UInt32 = 0

  init(viommuID: UInt32, type: UInt32, depth: UInt32) {
    self.viommuID = viommuID
    self.type = type
    self.depth = depth
  }

  /// VEVQ-4: queues an event, or on overflow (re)queues the single lost-events mark at the
  /// tail; each takes the next sequence number. A new event drops a trailing mark.
  func report(_ data: [UInt8]) {
    let sequence = nextSequence
    nextSequence = (nextSequence + 1) & 0x7FFF_FFFF
    if eventCount == depth {
      records.removeAll { $0.lostEvents }
      records.append(Record(lostEvents: true, sequence: sequence, data: []))
      return
    }
    if records.last?.lostEvents == true { records.removeLast() }
    records.append(Record(lostEvents: false, sequence: sequence, data: data))
    eventCount += 1
  }
}

/// A HW queue (7.2 model): the mock vIOMMU's queue, its pinned range of the parent IOAS,
/// and the queue of the previous index it depends on.
final class SimulatedHWQueue {
  let viommuID: UInt32
  let index: UInt32
  let accessID: UInt32
  let ioasID: UInt32
  /// The page-aligned IOVA range pinned (locked against unmapping) for the queue.
  let locked: IOVARange
  let previousID: UInt32?

  init(viommuID: UInt32, index: UInt32, accessID: UInt32, ioasID: UInt32, locked: IOVARange, previousID: UInt32?) {
    self.viommuID = viommuID
    self.index = index
    self.accessID = accessID
    self.ioasID = ioasID
    self.locked = locked
    self.previousID = previousID
  }
}
