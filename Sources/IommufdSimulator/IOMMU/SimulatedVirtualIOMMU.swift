import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// vIOMMU, vDEVICE, vEVENTQ and HW queues as Linux 7.2 has them (`drivers/iommu/iommufd/viommu.c`,
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
    var inData: UInt32?
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
      inData = data.in_data
    }
    request.out_viommu_id = id
    try respond(request, address, size)
    let viommu = SimulatedVIOMMU(type: request.type, parentID: request.hwpt_id)
    if let mmapOffset, let inData {
      context.mmapRegions[id] = mmapOffset
      let pages = ciommufd_memfd_create("iommufd-simulator-viommu", 1)  // MFD_CLOEXEC
      if pages >= 0 && ftruncate(pages, 8192) == 0 {
        var word = inData
        _ = pwrite(pages, &word, 4, 0)
        viommu.pages = pages
      } else if pages >= 0 {
        close(pages)
      }
    }
    context.objects[id] = .viommu(viommu)
    return 0
  }

  /// `mmap(2)` of an iommufd descriptor (`iommufd_fops_mmap`): shared and not executable
  /// (EINVAL, EPERM), exactly one region a vIOMMU handed out, at its offset and length
  /// (ENXIO otherwise). The mapping holds the vIOMMU until ``munmapped(_:)``.
  func mmapRegion(_ context: SimulatedContext, length: Int, protection: Int32, flags: Int32, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    if length <= 0 || offset < 0 || UInt64(offset) % pageSize != 0 { throw .invalidArgument }  // mmap(2) itself
    if flags & 0x1 == 0 { throw .invalidArgument }  // MAP_SHARED or MAP_SHARED_VALIDATE (both have bit 0)
    if protection & PROT_EXEC != 0 { throw .notPermitted }
    let (rounded, overflow) = UInt64(length).addingReportingOverflow(pageSize - 1)
    if overflow { throw .noMemory }
    let mapped = rounded & ~(pageSize - 1)
    let start = UInt64(offset)
    guard let (id, region) = context.mmapRegions.first(where: { $0.value <= start && start - $0.value < 8192 }),
      region == start, mapped == 8192, let viommu = context.viommu(id), let pages = viommu.pages
    else { throw .noSuchAddressOrDevice }
    let address = Glibc.mmap(nil, Int(mapped), protection, flags, pages, 0)
    guard let address, address != MAP_FAILED else { throw Errno(rawValue: Glibc.errno) }
    viommu.mappedAt.append(UInt(bitPattern: address))
    return address
  }

  /// Forgets a vIOMMU region mapped at `address`, if one is: it no longer holds its vIOMMU.
  func munmapped(_ address: UnsafeMutableRawPointer) {
    for case .iommufd(let context) in files.values {
      for case .viommu(let viommu) in context.objects.values {
        if let index = viommu.mappedAt.firstIndex(of: UInt(bitPattern: address)) {
          viommu.mappedAt.remove(at: index)
          return
        }
      }
    }
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
    let queue = SimulatedVEventQueue(viommuID: request.viommu_id, type: request.type, depth: request.veventq_depth)
    try openQueueDescriptor(context, .veventq(context, queue)) { fd throws(Errno) in
      request.out_veventq_id = id
      request.out_veventq_fd = UInt32(bitPattern: fd)
      try respond(request, address, size)
    }
    context.objects[id] = .veventq(queue)
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
    // The vIOMMU holds its parent, so the parent is there.
    guard let parent = context.pagingHWPT(viommu.parentID) else { throw .noSuchFileOrDirectory }
    return try allocateMockNested(context, &request, parentID: viommu.parentID, parent, viommuID: request.pt_id, address, size)
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
        guard let zero = try? UserMemory.isZero(UserMemory.offset(entryAddress, by: UInt64(entrySize)), count: UInt64(length - entrySize)) else {
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

  // MARK: IOMMU_HW_QUEUE_ALLOC

  /// `IOMMU_HW_QUEUE_ALLOC` on the mock vIOMMU (VT-d has no vIOMMU): the queue takes an id,
  /// then an internal access takes the next one and pins the queue's pages, which must be
  /// mapped and physically contiguous; then the mock's index rules. A failure frees both.
  func hardwareQueueAlloc(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_hw_queue_alloc.self, address, size)
    if request.flags != 0 || request.type == 0 { throw .notSupported }
    if request.length == 0 { throw .invalidArgument }
    if request.nesting_parent_iova.addingReportingOverflow(request.length - 1).overflow { throw .overflow }
    guard let viommu = context.viommu(request.viommu_id) else { throw .noSuchFileOrDirectory }
    if request.type != CIOMMUFD_HW_QUEUE_TYPE_SELFTEST { throw .notSupported }
    guard let parent = context.pagingHWPT(viommu.parentID), let ioas = context.ioas(parent.ioasID) else { throw .noSuchFileOrDirectory }
    let queueID = try allocateID(context)
    context.objects[queueID] = .access  // holds the id while the access takes the next one
    defer { if case .access? = context.objects[queueID] { context.objects[queueID] = nil } }
    // The pinned range: whole pages around [iova, iova + length).
    let first = request.nesting_parent_iova & ~(pageSize - 1)
    let (span, spanOverflow) = (request.nesting_parent_iova - first).addingReportingOverflow(request.length)
    let (rounded, roundOverflow) = span.addingReportingOverflow(pageSize - 1)
    if spanOverflow || roundOverflow { throw .outOfRange }
    // kvcalloc of a page pointer per page, which refuses more than INT_MAX bytes: ENOMEM.
    let pageCount = rounded / pageSize
    if pageCount > UInt64(Int32.max) / 8 { throw .noMemory }
    let pinned = IOVARange(start: first, last: first + (pageCount * pageSize - 1))
    let accessID = try allocateID(context)
    try checkQueueMemory(ioas, pinned)
    // The mock's queues: two per vIOMMU, in order, each after the previous index.
    if request.index >= 2 { throw .invalidArgument }
    let queues = context.objects.compactMap { id, object -> (UInt32, SimulatedHWQueue)? in
      if case .hwQueue(let queue) = object, queue.viommuID == request.viommu_id { return (id, queue) }
      return nil
    }
    if queues.contains(where: { $0.1.index == request.index }) { throw .fileExists }
    var previousID: UInt32?
    if request.index > 0 {
      guard let previous = queues.first(where: { $0.1.index == request.index - 1 }) else { throw .ioError }
      previousID = previous.0
    }
    request.out_hw_queue_id = queueID
    try respond(request, address, size)
    context.objects[queueID] = .hwQueue(
      SimulatedHWQueue(
        viommuID: request.viommu_id, index: request.index, accessID: accessID, ioasID: parent.ioasID, locked: pinned, previousID: previousID))
    context.objects[accessID] = .access
    ioas.locks.append(pinned)
    return 0
  }

  /// The access pin of a HW queue's pages: covered by areas without a gap (ENOENT) and
  /// readable (EPERM), then physically contiguous (EFAULT). Contiguity comes from
  /// /proc/self/pagemap, whose frame numbers need CAP_SYS_ADMIN; without them a queue of
  /// more than one page counts as not contiguous.
  func checkQueueMemory(_ ioas: SimulatedIOAS, _ range: IOVARange) throws(Errno) {
    var cursor = range.start
    var pieces: [(area: AreaMap<SimulatedArea>.Entry, first: UInt64, last: UInt64)] = []
    while true {
      guard let area = ioas.areas.entry(containing: cursor) else { throw .noSuchFileOrDirectory }
      if !area.value.readable { throw .notPermitted }
      let end = min(area.last, range.last)
      pieces.append((area, cursor, end))
      if end == range.last { break }
      cursor = end + 1
    }
    // Page by page, stopping at the first gap in the frames (no list of every page).
    try UserMemory.withPhysicalFrames { frameOf throws(Errno) in
      var previous: UInt64??
      for piece in pieces {
        var iova = piece.first
        while true {
          let frame = frameOf(piece.area.value.userVA &+ (iova - piece.area.start))
          if let previous {
            guard let frame, let previous, frame == previous &+ 1 else { throw .badAddress }
          }
          previous = frame
          let (next, overflow) = iova.addingReportingOverflow(pageSize)
          if overflow || next > piece.last { break }
          iova = next
        }
      }
    }
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
