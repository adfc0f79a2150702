import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// vIOMMU, vDEVICE and vEVENTQ as Linux 7.2 has them (`drivers/iommu/iommufd/viommu.c`,
/// `eventq.c`, `selftest.c`). Only the mock IOMMU implements vIOMMUs; VT-d has no
/// vIOMMU support in 7.2, so its devices get EOPNOTSUPP.
extension SimulatedKernel.State {
  /// Whether `device` sits behind the self-test mock IOMMU.
  func isMock(_ device: SimulatedDeviceObject) -> Bool { device.hardwareInfo.type == CIOMMUFD_HW_INFO_TYPE_SELFTEST }

  // MARK: IOMMU_VIOMMU_ALLOC

  func viommuAlloc(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_viommu_alloc.self, address, size, minimum: 24)
    if request.flags != 0 || request.type == CIOMMUFD_VIOMMU_TYPE_DEFAULT { throw .notSupported }
    guard let device = context.device(request.dev_id) else { throw .noSuchFileOrDirectory }
    // The driver's vIOMMU support: none on VT-d; the mock's own type only.
    guard isMock(device), request.type == CIOMMUFD_VIOMMU_TYPE_SELFTEST else { throw .notSupported }
    guard let parent = context.pagingHWPT(request.hwpt_id) else { throw .noSuchFileOrDirectory }
    if parent.flags & CIOMMUFD_HWPT_ALLOC_NEST_PARENT == 0 { throw .invalidArgument }
    let id = try allocateID(context)
    // The mock's driver data: struct iommu_viommu_selftest, 8 to 24 bytes; out_data echoes
    // in_data and an 8 KiB region of the iommufd's mmap space is set aside.
    var mmapOffset: UInt64?
    if request.data_len != 0 {
      let length = Int(request.data_len)
      let full = MemoryLayout<ciommufd_iommu_viommu_selftest>.size
      if length < 8 || length > full { throw .invalidArgument }
      var bytes = try UserMemory.read(request.data_uptr, count: length)
      bytes += [UInt8](repeating: 0, count: full - length)
      var data = UserMemory.decode(ciommufd_iommu_viommu_selftest.self, from: bytes)
      let offset = lowestFreeMmapOffset(context)
      data.out_data = data.in_data
      data.out_mmap_offset = offset
      data.out_mmap_length = 8192
      try UserMemory.write(Array(UserMemory.encode(data).prefix(length)), to: request.data_uptr)
      mmapOffset = offset
    }
    request.out_viommu_id = id
    try respond(request, address, size)
    context.objects[id] = .viommu(SimulatedVIOMMU(type: request.type, parentID: request.hwpt_id))
    if let mmapOffset { context.mmapRegions[id] = mmapOffset }
    return 0
  }

  /// The lowest offset from 4096 where an 8 KiB region fits between those handed out.
  func lowestFreeMmapOffset(_ context: SimulatedContext) -> UInt64 {
    var offset: UInt64 = 4096
    for taken in context.mmapRegions.values.sorted() {
      if taken >= offset + 8192 { break }
      offset = max(offset, taken + 8192)
    }
    return offset
  }

  // MARK: IOMMU_VDEVICE_ALLOC

  func vdeviceAlloc(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_vdevice_alloc.self, address, size)
    guard let viommu = context.viommu(request.viommu_id) else { throw .noSuchFileOrDirectory }
    guard let device = context.device(request.dev_id) else { throw .noSuchFileOrDirectory }
    if !isMock(device) { throw .invalidArgument }  // behind another IOMMU than the vIOMMU's
    if context.vdevice(ofDevice: request.dev_id) != nil { throw .fileExists }  // one per device
    let id = try allocateID(context)
    let taken = context.objects.values.contains {
      if case .vdevice(let other) = $0 { return other.viommuID == request.viommu_id && other.virtualID == request.virt_id }
      return false
    }
    if taken { throw .fileExists }
    _ = viommu
    request.out_vdevice_id = id
    try respond(request, address, size)
    context.objects[id] = .vdevice(SimulatedVDevice(viommuID: request.viommu_id, deviceID: request.dev_id, virtualID: request.virt_id))
    return 0
  }

  /// A device going away takes its vDEVICE with it; the id stays taken (a tombstone) until
  /// the context is closed.
  func removeVDevice(_ context: SimulatedContext, ofDevice deviceID: UInt32) {
    if let (id, _) = context.vdevice(ofDevice: deviceID) { context.objects[id] = .tombstone }
  }

  // MARK: IOMMU_VEVENTQ_ALLOC and its descriptor

  func veventqAlloc(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_veventq_alloc.self, address, size, minimum: 28)
    if request.flags != 0 || request.__reserved != 0 || request.type == CIOMMUFD_VEVENTQ_TYPE_DEFAULT { throw .notSupported }
    if request.veventq_depth == 0 || request.veventq_depth > 1 << 19 { throw .invalidArgument }
    guard context.viommu(request.viommu_id) != nil else { throw .noSuchFileOrDirectory }
    let exists = context.objects.values.contains {
      if case .veventq(let queue) = $0 { return queue.viommuID == request.viommu_id && queue.type == request.type }
      return false
    }
    if exists { throw .fileExists }
    let id = try allocateID(context)
    let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    request.out_veventq_id = id
    request.out_veventq_fd = UInt32(bitPattern: fd)
    do {
      try respond(request, address, size)
    } catch {
      Glibc.close(fd)
      throw error
    }
    let queue = SimulatedVEventQueue(viommuID: request.viommu_id, type: request.type, depth: request.veventq_depth)
    context.objects[id] = .veventq(queue)
    context.openFaultFiles += 1
    files[fd] = .veventq(context, queue)
    return 0
  }

  /// read(2) of a vEVENTQ: EINVAL under 8 bytes; 0 when empty (never blocks); whole
  /// records while they fit, EINVAL if the first does not.
  func readVEvents(_ queue: SimulatedVEventQueue, count: Int) throws(Errno) -> [UInt8] {
    let headerSize = MemoryLayout<ciommufd_iommufd_vevent_header>.size
    if count < headerSize { throw .invalidArgument }
    var bytes: [UInt8] = []
    while let record = queue.records.first {
      let recordSize = headerSize + record.data.count
      if recordSize > count - bytes.count {
        if bytes.isEmpty { throw .invalidArgument }
        break
      }
      queue.records.removeFirst()
      if !record.lostEvents { queue.eventCount -= 1 }
      let header = ciommufd_iommufd_vevent_header(flags: record.lostEvents ? CIOMMUFD_VEVENTQ_FLAG_LOST_EVENTS : 0, sequence: record.sequence)
      bytes += UserMemory.encode(header) + record.data
    }
    return bytes
  }

  // MARK: Nested HWPTs on a vIOMMU

  /// `IOMMU_HWPT_ALLOC` with a vIOMMU as `pt_id` (after the checks common to every target).
  func nestedOnVIOMMU(
    _ context: SimulatedContext, _ request: inout ciommufd_iommu_hwpt_alloc, _ viommu: SimulatedVIOMMU,
    _ device: SimulatedDeviceObject, _ address: UInt64, _ size: Int
  ) throws(Errno) -> Int32 {
    if !isMock(device) { throw .invalidArgument }
    if request.flags & ~(CIOMMUFD_HWPT_FAULT_ID_VALID | CIOMMUFD_HWPT_ALLOC_PASID) != 0 || request.data_len == 0 { throw .notSupported }
    let id = try allocateID(context)
    if request.data_type != CIOMMUFD_HWPT_DATA_SELFTEST { throw .notSupported }
    if request.data_len < 4 || request.data_len > 8 { throw .invalidArgument }
    let iotlb = UserMemory.decode(UInt32.self, from: try UserMemory.read(request.data_uptr, count: 4))
    var faultID: UInt32?
    if request.flags & CIOMMUFD_HWPT_FAULT_ID_VALID != 0 {
      guard case .fault? = context.objects[request.fault_id] else { throw .noSuchFileOrDirectory }
      faultID = request.fault_id
    }
    guard let parent = context.pagingHWPT(viommu.parentID) else { throw .noSuchFileOrDirectory }
    request.out_hwpt_id = id
    try respond(request, address, size)
    let nested = SimulatedHWPT(ioasID: parent.ioasID, isAutomatic: false, profile: parent.profile, flags: request.flags)
    nested.parentID = viommu.parentID
    nested.viommuID = request.pt_id
    nested.faultID = faultID
    nested.iotlb = Array(repeating: iotlb, count: 4)
    context.objects[id] = .hwpt(nested)
    return 0
  }

  // MARK: IOMMU_HWPT_INVALIDATE on a vIOMMU

  /// The mock vIOMMU's cache invalidation: its type even with no entries; the array is read
  /// up front (12-byte entries; shorter ones zero-extended, longer ones need a zero tail);
  /// then entry by entry, stopping at the first bad one. Returns the entries processed.
  func invalidateVIOMMU(
    _ context: SimulatedContext, _ viommuID: UInt32, _ viommu: SimulatedVIOMMU, _ request: ciommufd_iommu_hwpt_invalidate,
    failure: inout Errno?
  ) throws(Errno) -> UInt32 {
    if request.data_type != CIOMMUFD_VIOMMU_INVALIDATE_DATA_SELFTEST {
      failure = .invalidArgument
      return 0
    }
    let entrySize = 12
    var entries: [[UInt8]] = []
    for index in 0..<Int(request.entry_num) {
      let length = Int(request.entry_len)
      let (entryAddress, overflow) = request.data_uptr.addingReportingOverflow(UInt64(index) * UInt64(length))
      guard !overflow, let bytes = try? UserMemory.read(entryAddress, count: min(length, entrySize)) else {
        failure = .badAddress
        return 0
      }
      if length > entrySize {
        guard let zero = try? UserMemory.isZero(entryAddress + UInt64(entrySize), count: UInt64(length - entrySize)) else {
          failure = .badAddress
          return 0
        }
        if !zero {
          failure = .argListTooLong
          return 0
        }
      }
      entries.append(bytes + [UInt8](repeating: 0, count: max(0, entrySize - length)))
    }
    var processed: UInt32 = 0
    for entry in entries {
      let flags = UserMemory.decode(UInt32.self, from: entry)
      let virtualID = UserMemory.decode(UInt32.self, from: entry, offset: 4)
      let slot = UserMemory.decode(UInt32.self, from: entry, offset: 8)
      if flags & ~CIOMMUFD_TEST_INVALIDATE_FLAG_ALL != 0 {
        failure = .notSupported
        break
      }
      if slot > 3 {
        failure = .invalidArgument
        break
      }
      let target = context.objects.values.lazy.compactMap { object -> SimulatedDeviceObject? in
        guard case .vdevice(let vdevice) = object, vdevice.viommuID == viommuID, vdevice.virtualID == UInt64(virtualID) else { return nil }
        return context.device(vdevice.deviceID)
      }.first
      guard let target else {
        failure = .invalidArgument
        break
      }
      if flags & CIOMMUFD_TEST_INVALIDATE_FLAG_ALL != 0 {
        target.cache = [0, 0, 0, 0]
      } else {
        target.cache[Int(slot)] = 0
      }
      processed += 1
    }
    _ = viommu
    return processed
  }

  // MARK: IOMMU_TEST_OP_TRIGGER_VEVENT

  /// The mock device `deviceID` reports an event with its virtual id to the self-test
  /// vEVENTQ of the vIOMMU whose nested HWPT it is attached to.
  func triggerVEvent(_ context: SimulatedContext, deviceID: UInt32) throws(Errno) {
    guard let device = context.device(deviceID) else { throw .noSuchFileOrDirectory }
    guard let target = device.virtualTarget, target.virtualID != 0 else { throw .noSuchFileOrDirectory }
    let queue = context.objects.values.lazy.compactMap { object -> SimulatedVEventQueue? in
      if case .veventq(let queue) = object, queue.viommuID == target.viommuID, queue.type == CIOMMUFD_VEVENTQ_TYPE_SELFTEST { return queue }
      return nil
    }.first
    guard let queue else { throw .notSupported }
    queue.report(UserMemory.encode(UInt32(truncatingIfNeeded: target.virtualID)))
  }
}
