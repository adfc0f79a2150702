import Iommufd
import CIommufd
import SystemPackage

/// The `/dev/iommu` ioctls of the simulated kernel, rule by rule (rule ids from the
/// semantics document).
extension SimulatedKernel.State {
  /// The end of the ioctl table (GEN-1): 0x80...0x8e on a production 6.12 kernel; up to
  /// IOMMU_TEST_CMD (0xa0) with CONFIG_IOMMUFD_TEST, the slots between empty.
  var iommufdTableEnd: Int { configuration.selfTest ? 0xA1 : configuration.release >= .linux7_2 ? 0x95 : 0x8F }

  /// Whether the simulated kernel has the requests of 7.2.
  var isLinux7_2: Bool { configuration.release >= .linux7_2 }

  func iommufdIoctl(_ context: SimulatedContext, _ request: UInt, _ address: UInt64) throws(Errno) -> Int32 {
    let command = UInt32(truncatingIfNeeded: request)
    let nr = Int(command & 0xff)
    // GEN-1: outside the table goes to the VFIO compatibility handler.
    if nr < 0x80 || nr >= iommufdTableEnd {
      if let answer = try vfioCompatIoctl(context, request, address) { return answer }
      throw .inappropriateIOCTLForDevice
    }
    // GEN-2: the size is read first. One copy reads ahead as much of the argument as is
    // readable (up to 256 bytes, more than any command struct): the size and the struct
    // come from it, the bytes exact reads would give.
    let ahead = UserMemory.readAvailable(address, count: 256)
    let size: Int
    if let ahead, ahead.count >= 4 {
      size = Int(UserMemory.decode(UInt32.self, from: ahead))
      argumentAhead = (address, ahead)
    } else {
      size = Int(UserMemory.decode(UInt32.self, from: try UserMemory.read(address, count: 4)))
    }
    defer { argumentAhead = nil }
    // GEN-3: the whole number must match.
    guard command == UInt32(0x3B00 | nr) else { throw .inappropriateIOCTLForDevice }
    switch Int32(command) {
    case CIOMMUFD_IOMMU_DESTROY: return try destroy(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_ALLOC: return try ioasAlloc(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_ALLOW_IOVAS: return try allowIOVAs(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_COPY: return try copy(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_IOVA_RANGES: return try iovaRanges(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_MAP: return try map(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_UNMAP: return try unmap(context, address, size)
    case CIOMMUFD_IOMMU_OPTION: return try option(context, address, size)
    case CIOMMUFD_IOMMU_VFIO_IOAS: return try vfioIOAS(context, address, size)
    case CIOMMUFD_IOMMU_HWPT_ALLOC: return try hwptAlloc(context, address, size)
    case CIOMMUFD_IOMMU_TEST_CMD: return try testCommand(context, address, size)
    case CIOMMUFD_IOMMU_GET_HW_INFO: return try hardwareInfo(context, address, size)
    case CIOMMUFD_IOMMU_HWPT_SET_DIRTY_TRACKING: return try setDirtyTracking(context, address, size)
    case CIOMMUFD_IOMMU_HWPT_GET_DIRTY_BITMAP: return try getDirtyBitmap(context, address, size)
    case CIOMMUFD_IOMMU_HWPT_INVALIDATE: return try invalidate(context, address, size)
    case CIOMMUFD_IOMMU_FAULT_QUEUE_ALLOC: return try faultQueueAlloc(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_MAP_FILE where isLinux7_2: return try mapFile(context, address, size)
    case CIOMMUFD_IOMMU_VIOMMU_ALLOC where isLinux7_2: return try viommuAlloc(context, address, size)
    case CIOMMUFD_IOMMU_VDEVICE_ALLOC where isLinux7_2: return try vdeviceAlloc(context, address, size)
    case CIOMMUFD_IOMMU_IOAS_CHANGE_PROCESS where isLinux7_2: return try changeProcess(context, address, size)
    case CIOMMUFD_IOMMU_VEVENTQ_ALLOC where isLinux7_2: return try veventqAlloc(context, address, size)
    case CIOMMUFD_IOMMU_HW_QUEUE_ALLOC where isLinux7_2: return try hardwareQueueAlloc(context, address, size)
    default:
      // Holes in the table (the test command's range on a test kernel of 6.12): ENOTTY.
      throw .inappropriateIOCTLForDevice
    }
  }

  /// GEN-4 and GEN-6: reads a command struct of `T` given the user's `size`.
  func command<T>(_ type: T.Type, _ address: UInt64, _ size: Int, minimum: Int? = nil) throws(Errno) -> T {
    let kernelSize = MemoryLayout<T>.size
    if size < (minimum ?? kernelSize) { throw .invalidArgument }
    // The bytes read ahead serve what lies inside them (once: later reads are exact).
    let ahead = argumentAhead?.address == address ? argumentAhead?.bytes ?? [] : []
    argumentAhead = nil
    if size > kernelSize {
      let zero: Bool
      if size <= ahead.count {
        zero = !ahead[kernelSize..<size].contains { $0 != 0 }
      } else {
        zero = try UserMemory.isZero(try UserMemory.offset(address, by: UInt64(kernelSize)), count: UInt64(size - kernelSize))
      }
      if !zero { throw .argListTooLong }
    }
    let count = min(size, kernelSize)
    if count <= ahead.count { return UserMemory.decode(T.self, from: Array(ahead[..<count])) }
    return UserMemory.decode(T.self, from: try UserMemory.read(address, count: count))
  }

  /// GEN-7: writes back `min(size, sizeof)` bytes of the struct.
  func respond<T>(_ value: T, _ address: UInt64, _ size: Int) throws(Errno) {
    let bytes = UserMemory.encode(value)
    try UserMemory.write(Array(bytes.prefix(min(size, bytes.count))), to: address)
  }

  // MARK: 5.1 DESTROY

  func destroy(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    let request = try command(ciommufd_iommu_destroy.self, address, size)
    guard let object = context.objects[request.id] else { throw .noSuchFileOrDirectory }  // DESTROY-1
    switch object {
    case .ioas(let ioas):
      // OBJ-5: any HWPT on the IOAS holds it.
      if context.objects.values.contains(where: { if case .hwpt(let h) = $0 { return h.ioasID == request.id } else { return false } }) {
        throw .resourceBusy
      }
      if !ioas.accesses.isEmpty { throw .resourceBusy }  // an attached access holds it
      _ = removeAllAreas(ioas)
      if context.compatIOAS == request.id { context.compatIOAS = nil }  // DESTROY-5
    case .hwpt(let hwpt):
      // OBJ-5: attached devices, or nested HWPTs on a parent, hold it.
      let children = context.objects.values.contains {
        switch $0 {
        case .hwpt(let h): h.parentID == request.id && h.viommuID == nil
        case .viommu(let v): v.parentID == request.id
        default: false
        }
      }
      let pasidUsers = context.objects.values.contains { if case .device(let d) = $0 { return d.pasids.values.contains(request.id) } else { return false } }
      if !hwpt.devices.isEmpty || children || pasidUsers { throw .resourceBusy }
      if hwpt.parentID == nil, let ioas = context.ioas(hwpt.ioasID) { removeDomain(ioas, hwptID: request.id) }
    case .device:
      throw .resourceBusy  // DESTROY-3: only closing the device fd removes it
    case .fault(let queue):
      // FAULT-4: its descriptor and every HWPT naming it hold it.
      let named = context.objects.values.contains { if case .hwpt(let h) = $0 { return h.faultID == request.id } else { return false } }
      if queue.fileOpen || named { throw .resourceBusy }
    case .selfTest(let deviceID):
      // 7.2 MOCK_DOMAIN: destroying the self-test object detaches, unbinds and deletes.
      if let object = context.device(deviceID) { detachDevice(context, object, deviceID) }
      context.objects[deviceID] = nil
      removeVDevice(context, ofDevice: deviceID)
    case .viommu(let viommu):
      // Its vDEVICEs, vEVENTQs, nested HWPTs and mappings of its region hold it.
      if !viommu.mappedAt.isEmpty { throw .resourceBusy }
      let users = context.objects.values.contains {
        switch $0 {
        case .vdevice(let v): v.viommuID == request.id
        case .veventq(let q): q.viommuID == request.id
        case .hwQueue(let q): q.viommuID == request.id
        case .hwpt(let h): h.viommuID == request.id
        default: false
        }
      }
      if users { throw .resourceBusy }
      context.mmapRegions[request.id] = nil
    case .vdevice:
      break
    case .veventq(let queue):
      if queue.fileOpen { throw .resourceBusy }  // its descriptor holds it
    case .tombstone:
      throw .noSuchFileOrDirectory
    case .access:
      throw .resourceBusy  // a HW queue's internal access goes with the queue
    case .hwQueue(let queue):
      // The queue of the next index depends on it.
      let dependent = context.objects.values.contains { if case .hwQueue(let other) = $0 { return other.previousID == request.id } else { return false } }
      if dependent { throw .resourceBusy }
      if let ioas = context.ioas(queue.ioasID), let index = ioas.locks.firstIndex(of: queue.locked) { ioas.locks.remove(at: index) }
      context.objects[queue.accessID] = nil
    }
    context.objects[request.id] = nil
    return 0
  }

  // MARK: 5.2 IOAS_ALLOC

  func ioasAlloc(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_ioas_alloc.self, address, size)
    if request.flags != 0 { throw .notSupported }
    let id = try allocateID(context)
    request.out_ioas_id = id
    try respond(request, address, size)  // IOAS_ALLOC-3: nothing was created yet
    context.objects[id] = .ioas(SimulatedIOAS())
    return 0
  }

  // MARK: 5.3 IOVA_RANGES

  func iovaRanges(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_ioas_iova_ranges.self, address, size)
    if request.__reserved != 0 { throw .notSupported }
    guard let ioas = context.ioas(request.ioas_id) else { throw .noSuchFileOrDirectory }
    let ranges = ioas.usableRanges()
    let capacity = Int(request.num_iovas)
    for (index, range) in ranges.prefix(capacity).enumerated() {
      let entry = ciommufd_iommu_iova_range(start: range.start, last: range.last)
      try UserMemory.write(UserMemory.encode(entry), to: try UserMemory.offset(request.allowed_iovas, by: UInt64(index) * 16))
    }
    request.num_iovas = UInt32(ranges.count)
    request.out_iova_alignment = ioas.alignment(pageSize: pageSize)
    try respond(request, address, size)
    if ranges.count > capacity { throw .messageTooLong }  // RANGES-5
    return 0
  }

  // MARK: 5.4 ALLOW_IOVAS

  func allowIOVAs(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    let request = try command(ciommufd_iommu_ioas_allow_iovas.self, address, size)
    if request.__reserved != 0 { throw .notSupported }
    guard let ioas = context.ioas(request.ioas_id) else { throw .noSuchFileOrDirectory }
    // Entry by entry, as the kernel reads and checks them (an error at one entry comes
    // before a fault at a later one), read 256 at a time and kept in a sorted map, so a
    // long list costs n log n, not n².
    var ranges: [IOVARange] = []
    var seen = AreaMap<Void>()
    var index = 0
    let count = Int(request.num_iovas)
    while index < count {
      let address = try UserMemory.offset(request.allowed_iovas, by: UInt64(index) * 16)
      var batch = UserMemory.readAvailable(address, count: min(count - index, 256) * 16) ?? []
      if batch.count < 16 { batch = try UserMemory.read(address, count: 16) }  // the exact read decides
      for offset in stride(from: 0, to: batch.count - 15, by: 16) {
        let entry = UserMemory.decode(ciommufd_iommu_iova_range.self, from: batch, offset: offset)
        if entry.start >= entry.last { throw .invalidArgument }  // ALLOW-2
        if seen.intersects(entry.start, entry.last) { throw .invalidArgument }
        seen.insert(start: entry.start, last: entry.last, value: ())
        ranges.append(IOVARange(start: entry.start, last: entry.last))
        index += 1
      }
    }
    if ranges.contains(where: { ioas.overlapsReserved($0.start, $0.last) }) { throw .addressInUse }  // ALLOW-3
    ioas.allowed = ranges
    return 0
  }

  // MARK: 5.5 MAP

  /// `fromCompat` is VFIO_IOMMU_MAP_DMA's way in, which skips the ioctl's own checks: it maps
  /// without READ or WRITE (MAP-3) and has no ULONG_MAX check (MAP-2).
  func map(_ context: SimulatedContext, _ address: UInt64, _ size: Int, fromCompat: Bool = false) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_ioas_map.self, address, size)
    let known = CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_WRITEABLE | CIOMMUFD_IOAS_MAP_READABLE
    if request.flags & ~known != 0 || request.__reserved != 0 { throw .notSupported }  // MAP-1
    if !fromCompat && (request.iova == .max || request.length == .max) { throw .overflow }  // MAP-2
    let readable = request.flags & CIOMMUFD_IOAS_MAP_READABLE != 0
    let writable = request.flags & CIOMMUFD_IOAS_MAP_WRITEABLE != 0
    if !readable && !writable && !fromCompat { throw .invalidArgument }  // MAP-3
    guard let ioas = context.ioas(request.ioas_id) else { throw .noSuchFileOrDirectory }  // MAP-4
    // MAP-5 (7.2 checks the address overflow before the length's limit).
    if request.length == 0 { throw .invalidArgument }
    let addressOverflows = request.user_va.addingReportingOverflow(request.length).overflow
    if isLinux7_2 && addressOverflows { throw .overflow }
    if request.length > UInt64.max - pageSize { throw .invalidArgument }
    if addressOverflows { throw .overflow }
    let alignment = ioas.alignment(pageSize: pageSize)
    if request.length % alignment != 0 { throw .invalidArgument }  // MAP-6
    let iova: UInt64
    if request.flags & CIOMMUFD_IOAS_MAP_FIXED_IOVA != 0 {
      iova = request.iova
      try checkFixedIOVA(ioas, iova, request.length, alignment)  // MAP-8
    } else {
      iova = try ioas.allocateIOVA(
        length: request.length, userAddress: request.user_va, pageSize: pageSize,
        hugePageSize: configuration.hugePageSize)  // MAP-7
    }
    if (request.user_va % pageSize) % alignment != 0 { throw .invalidArgument }  // MAP-9
    // DIV_ROUND_UP(length + user_va % PAGE_SIZE) pages from the page user_va is in (length
    // is at most 2^64 - PAGE_SIZE here, so the sum cannot overflow).
    let base = request.user_va & ~(pageSize - 1)
    let bytes = request.length + request.user_va % pageSize
    let pages = SimulatedPages(base: base, pageCount: bytes / pageSize + (bytes % pageSize == 0 ? 0 : 1), writable: writable)
    let whole = PageSpan(pages: pages, first: 0, last: pages.pageCount - 1)
    if !readable && !writable, ioas.domains.contains(where: { !mapsWithoutAccess($0.table.profile) }) {
      // A domain's driver refuses a map with no permission, at the first batch it is given.
      try pin([firstBatch(of: whole)])
      throw .invalidArgument
    }
    if !ioas.domains.isEmpty { try pin([whole]) }  // MAP-10
    request.iova = iova
    if !ioas.domains.isEmpty { addDomainUsers([whole]) }
    let pagesID = register(pages)
    areaAdded(pagesID)
    ioas.areas.insert(
      start: iova, last: iova + (request.length - 1),
      value: SimulatedArea(userVA: request.user_va, readable: readable, writable: writable, pages: pagesID))
    try respond(request, address, size)  // MAP-15: the mapping stays on EFAULT
    return 0
  }

  /// MAP-8: the checks on a fixed IOVA, in the kernel's order.
  func checkFixedIOVA(_ ioas: SimulatedIOAS, _ iova: UInt64, _ length: UInt64, _ alignment: UInt64) throws(Errno) {
    if iova % alignment != 0 { throw .invalidArgument }
    let (last, overflow) = iova.addingReportingOverflow(length - 1)
    if overflow { throw .overflow }
    if ioas.overlapsReserved(iova, last) { throw .invalidArgument }
    if ioas.areas.intersects(iova, last) { throw .fileExists }
  }

  // MARK: 5.7 COPY

  func copy(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_ioas_copy.self, address, size)
    // A test kernel's syzkaller mode (MOCK_FLAGS_ACCESS_SYZ, flag bit 16): the flag is
    // dropped and the source IOVA read as {u32 nth area, u32 offset} of the source IOAS
    // (0 when it has fewer areas), before any other check; the reply carries both.
    if configuration.selfTest, request.flags & (1 << 16) != 0 {
      request.flags &= ~(1 << 16)
      if let source = context.ioas(request.src_ioas_id) {
        let nth = Int(UInt32(truncatingIfNeeded: request.src_iova))
        let offset = request.src_iova >> 32
        let areas = source.areas.all
        request.src_iova = nth < areas.count ? areas[nth].start &+ offset : 0
      }
    }
    let known = CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_WRITEABLE | CIOMMUFD_IOAS_MAP_READABLE
    if request.flags & ~known != 0 { throw .notSupported }  // COPY-1
    if request.length == .max || request.src_iova == .max || request.dst_iova == .max { throw .overflow }  // COPY-2
    let readable = request.flags & CIOMMUFD_IOAS_MAP_READABLE != 0
    let writable = request.flags & CIOMMUFD_IOAS_MAP_WRITEABLE != 0
    if !readable && !writable { throw .invalidArgument }  // COPY-3
    guard let source = context.ioas(request.src_ioas_id) else { throw .noSuchFileOrDirectory }  // COPY-4
    if request.length == 0 { throw .invalidArgument }  // COPY-5
    let (sourceLast, overflow) = request.src_iova.addingReportingOverflow(request.length - 1)
    if overflow { throw .overflow }
    let pieces = source.areas.entries(intersecting: request.src_iova, sourceLast)
    guard let first = pieces.first, first.start <= request.src_iova else { throw .noSuchFileOrDirectory }
    var expected = request.src_iova
    for piece in pieces {
      if piece.start > expected { throw .noSuchFileOrDirectory }
      expected = piece.last == .max ? .max : piece.last + 1
    }
    if pieces.last!.last < sourceLast { throw .noSuchFileOrDirectory }
    guard let destination = context.ioas(request.dst_ioas_id) else { throw .noSuchFileOrDirectory }  // COPY-6
    let alignment = destination.alignment(pageSize: pageSize)
    if request.length % alignment != 0 { throw .invalidArgument }  // COPY-7 (MAP-6)
    let sourceVA = first.value.userVA + (request.src_iova - first.start)
    // The IOVA alignment hint: the user address, or for file pages the file offset (the
    // simulator's own mapping of a file says nothing about it).
    var hint = sourceVA
    if let sourcePages = pagesTable[first.value.pages], let file = sourcePages.file {
      hint = file.offset &+ (sourceVA &- sourcePages.base)
    } else if let sourcePages = pagesTable[first.value.pages], let dmabuf = sourcePages.dmabuf {
      hint = dmabuf.offset &+ (sourceVA &- sourcePages.base)
    }
    let iova: UInt64
    if request.flags & CIOMMUFD_IOAS_MAP_FIXED_IOVA != 0 {
      iova = request.dst_iova
      try checkFixedIOVA(destination, iova, request.length, alignment)
    } else {
      iova = try destination.allocateIOVA(
        length: request.length, userAddress: hint, pageSize: pageSize, hugePageSize: configuration.hugePageSize)
    }
    // COPY-8, COPY-9: one destination area per source area touched.
    var slices: [(start: UInt64, last: UInt64, area: SimulatedArea)] = []
    for piece in pieces {
      let start = max(piece.start, request.src_iova)
      let last = min(piece.last, sourceLast)
      if writable && !pagesTable[piece.value.pages]!.writable { throw .notPermitted }
      let userVA = piece.value.userVA + (start - piece.start)
      if (userVA % pageSize) % alignment != 0 { throw .invalidArgument }
      let destinationStart = iova + (start - request.src_iova)
      slices.append((destinationStart, destinationStart + (last - start),
        SimulatedArea(userVA: userVA, readable: readable, writable: writable, pages: piece.value.pages)))
    }
    // Only the pages the slices use are pinned (not the whole source mapping).
    let sliceSpans = slices.map { span($0.area, length: $0.last - $0.start + 1) }
    if !destination.domains.isEmpty { try pin(sliceSpans) }
    if !destination.domains.isEmpty { addDomainUsers(sliceSpans) }
    for slice in slices {
      areaAdded(slice.area.pages)
      destination.areas.insert(start: slice.start, last: slice.last, value: slice.area)
    }
    request.dst_iova = iova
    try respond(request, address, size)  // COPY-10
    return 0
  }

  // MARK: 5.8 UNMAP

  func unmap(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_ioas_unmap.self, address, size)
    guard let ioas = context.ioas(request.ioas_id) else { throw .noSuchFileOrDirectory }  // UNMAP-1
    if request.iova == 0 && request.length == .max {  // UNMAP-2
      if !ioas.locks.isEmpty {  // 7.2: areas before one a HW queue pinned go, then EBUSY
        for area in ioas.areas.all {
          if ioas.isLocked(area.start, area.last) { throw .resourceBusy }
          removeArea(ioas, area)
        }
      }
      request.length = removeAllAreas(ioas)
      try respond(request, address, size)
      return 0
    }
    if request.iova == .max || request.length == .max { throw .overflow }  // UNMAP-3
    if request.length == 0 { throw .invalidArgument }  // UNMAP-4
    let (last, overflow) = request.iova.addingReportingOverflow(request.length - 1)
    if overflow { throw .overflow }
    let (removed, failure) = removeAreas(ioas, request.iova, last)
    if let failure { throw failure }
    if removed == 0 { throw .noSuchFileOrDirectory }  // UNMAP-5
    request.length = removed  // UNMAP-7
    try respond(request, address, size)
    return 0
  }

  /// `iopt_unmap_iova_range`: removes the areas inside `[iova, last]` in order; returns the
  /// bytes removed and, where it stopped, why: ENOENT at an area it would split (UNMAP-6:
  /// the areas before it stay removed), EBUSY at one a HW queue pinned (7.2). An empty
  /// range removes 0 bytes without an error.
  func removeAreas(_ ioas: SimulatedIOAS, _ iova: UInt64, _ last: UInt64) -> (removed: UInt64, failure: Errno?) {
    var removed: UInt64 = 0
    for area in ioas.areas.entries(intersecting: iova, last) {
      if area.start < iova || area.last > last { return (removed, .noSuchFileOrDirectory) }
      if ioas.isLocked(area.start, area.last) { return (removed, .resourceBusy) }
      removeArea(ioas, area)
      removed += area.last - area.start + 1
    }
    return (removed, nil)
  }

  /// Removes one area, unpinning its pages where the IOAS has a domain; the accesses that
  /// pinned part of it are told first and let go.
  func removeArea(_ ioas: SimulatedIOAS, _ area: AreaMap<SimulatedArea>.Entry) {
    if hasAccessItems(ioas, area.start, area.last) { notifyUnmap(ioas, area.start, area.last) }
    ioas.areas.remove(start: area.start)
    if !ioas.domains.isEmpty { removeDomainUsers([span(area.value, length: area.last - area.start + 1)]) }
    // Its entries leave every page table, and their dirty bits with them.
    for domain in ioas.domains { domain.table.clearDirty(area.start, area.last) }
    areaRemoved(area.value.pages)
  }

  // MARK: 5.9 OPTION

  func option(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_option.self, address, size)
    if request.__reserved != 0 { throw .notSupported }  // OPT-1
    switch request.option_id {
    case CIOMMUFD_OPTION_RLIMIT_MODE:  // OPT-3
      if request.object_id != 0 { throw .notSupported }
      switch UInt32(request.op) {
      case CIOMMUFD_OPTION_OP_GET:
        request.val64 = context.accountPerProcess ? 1 : 0
      case CIOMMUFD_OPTION_OP_SET:
        if !configuration.canChangeAccounting { throw .notPermitted }
        if !context.objects.isEmpty { throw .resourceBusy }
        guard request.val64 <= 1 else { throw .invalidArgument }
        context.accountPerProcess = request.val64 == 1
      default:
        throw .notSupported
      }
    case CIOMMUFD_OPTION_HUGE_PAGES:  // OPT-4
      guard let ioas = context.ioas(request.object_id) else { throw .noSuchFileOrDirectory }
      switch UInt32(request.op) {
      case CIOMMUFD_OPTION_OP_GET:
        request.val64 = ioas.disableLargePages ? 0 : 1
      case CIOMMUFD_OPTION_OP_SET:
        if request.val64 == 0 {
          if !ioas.disableLargePages { try disableLargePages(ioas) }
        } else if request.val64 == 1 {
          ioas.disableLargePages = false
        } else {
          throw .invalidArgument
        }
      default:
        throw .notSupported
      }
    default:
      throw .notSupported  // OPT-2
    }
    // OPT-5: only val64 is written back.
    try UserMemory.write(UserMemory.encode(request.val64), to: try UserMemory.offset(address, by: 16))
    return 0
  }

  // MARK: 5.10 VFIO_IOAS

  func vfioIOAS(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_vfio_ioas.self, address, size)
    if request.__reserved != 0 { throw .notSupported }  // VIOAS-1
    switch UInt32(request.op) {
    case CIOMMUFD_VFIO_IOAS_GET:
      guard let id = context.compatIOAS else { throw .operationNotSupportedByDevice }  // ENODEV
      request.ioas_id = id
      try respond(request, address, size)
    case CIOMMUFD_VFIO_IOAS_SET:
      guard context.ioas(request.ioas_id) != nil else { throw .noSuchFileOrDirectory }
      context.compatIOAS = request.ioas_id
    case CIOMMUFD_VFIO_IOAS_CLEAR:
      context.compatIOAS = nil
    default:
      throw .notSupported
    }
    return 0
  }

  // MARK: 5.15 INVALIDATE

  func invalidate(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_hwpt_invalidate.self, address, size)
    var processed: UInt32 = 0
    var failure: Errno?
    validate: do {
      if request.__reserved != 0 { failure = .notSupported; break validate }  // INV-1
      if request.entry_num != 0
        && (request.data_uptr == 0 || request.entry_len == 0 || request.entry_len > UInt32(pageSize) || request.entry_num > 1 << 19)
      {
        failure = .invalidArgument  // INV-2
        break validate
      }
      if isLinux7_2, let viommu = context.viommu(request.hwpt_id) {
        processed = try invalidateVIOMMU(context, request.hwpt_id, viommu, request, failure: &failure)
        break validate
      }
      // INV-3 (7.2: an object of another type is EINVAL).
      guard let hwpt = context.nestedHWPT(request.hwpt_id) else {
        let exists: Bool
        switch context.objects[request.hwpt_id] {
        case nil, .tombstone?: exists = false
        default: exists = true
        }
        failure = isLinux7_2 && exists ? .invalidArgument : .noSuchFileOrDirectory
        break validate
      }
      // The mock driver (INV-4..6): its type even with no entries; entries of exactly 8 bytes.
      guard request.data_type == CIOMMUFD_HWPT_INVALIDATE_DATA_SELFTEST else { failure = .invalidArgument; break validate }
      for index in 0..<request.entry_num {
        if request.entry_len != 8 { failure = .invalidArgument; break }
        let (entryAddress, overflow) = request.data_uptr.addingReportingOverflow(UInt64(index) * UInt64(request.entry_len))
        guard !overflow, let entry = try? UserMemory.read(entryAddress, count: 8) else {
          failure = .badAddress
          break
        }
        let flags = UserMemory.decode(UInt32.self, from: entry)
        let slot = UserMemory.decode(UInt32.self, from: entry, offset: 4)
        if flags & ~CIOMMUFD_TEST_INVALIDATE_FLAG_ALL != 0 { failure = .notSupported; break }
        if slot > 3 { failure = .invalidArgument; break }
        if flags & CIOMMUFD_TEST_INVALIDATE_FLAG_ALL != 0 {
          hwpt.iotlb = [0, 0, 0, 0]
        } else {
          hwpt.iotlb[Int(slot)] = 0
        }
        processed += 1
      }
    }
    // INV-7: entry_num is written back whatever happened.
    request.entry_num = processed
    try respond(request, address, size)
    if let failure { throw failure }
    return 0
  }

  /// The mock driver's nested HWPT on `parent` (through vIOMMU `viommuID`, if given), after
  /// the checks particular to the target: its data type only, 4 bytes of data (7.2: 4 to 8,
  /// with a page-table type); HWPT-8: the fault queue is looked up after the driver made
  /// the domain; HWPT-9: nothing exists until the reply is written.
  func allocateMockNested(
    _ context: SimulatedContext, _ request: inout ciommufd_iommu_hwpt_alloc, parentID: UInt32, _ parent: SimulatedHWPT,
    viommuID: UInt32?, _ address: UInt64, _ size: Int
  ) throws(Errno) -> Int32 {
    let id = try allocateID(context)
    if request.data_type != CIOMMUFD_HWPT_DATA_SELFTEST { throw .notSupported }
    if isLinux7_2 ? request.data_len < 4 || request.data_len > 8 : request.data_len != 4 { throw .invalidArgument }
    let iotlb = UserMemory.decode(UInt32.self, from: try UserMemory.read(request.data_uptr, count: 4))
    var faultID: UInt32?
    if request.flags & CIOMMUFD_HWPT_FAULT_ID_VALID != 0 {
      guard case .fault? = context.objects[request.fault_id] else { throw .noSuchFileOrDirectory }
      faultID = request.fault_id
    }
    request.out_hwpt_id = id
    try respond(request, address, size)
    let nested = SimulatedHWPT(ioasID: parent.ioasID, isAutomatic: false, profile: parent.profile, flags: request.flags)
    nested.parentID = parentID
    nested.viommuID = viommuID
    nested.faultID = faultID
    nested.iotlb = Array(repeating: iotlb, count: 4)
    context.objects[id] = .hwpt(nested)
    return 0
  }

  // MARK: 5.12 GET_HW_INFO

  func hardwareInfo(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_hw_info.self, address, size, minimum: Int(CIOMMUFD_HW_INFO_MIN_SIZE))
    let reserved = request.__reserved
    // INFO-1 (7.2 also takes IOMMU_HW_INFO_FLAG_INPUT_TYPE: the type asked for, 0 or the driver's own).
    let knownFlags: UInt32 = isLinux7_2 ? 1 : 0
    if request.flags & ~knownFlags != 0 || reserved.0 != 0 || reserved.1 != 0 || reserved.2 != 0 { throw .notSupported }
    guard let device = context.device(request.dev_id) else { throw .noSuchFileOrDirectory }  // INFO-2
    if request.flags & 1 != 0, request.out_data_type != 0, request.out_data_type != device.hardwareInfo.type { throw .notSupported }
    let data = device.hardwareInfo.data
    let wanted = Int(request.data_len)
    if wanted > 0 {  // INFO-3: copy what fits, zero the rest of the user's buffer
      try UserMemory.write(Array(data.prefix(wanted)), to: request.data_uptr)
      if wanted > data.count {  // clear_user, a page at a time: nothing of the user's size is allocated
        var offset = data.count
        while offset < wanted {
          let chunk = min(wanted - offset, 4096)
          try UserMemory.write([UInt8](repeating: 0, count: chunk), to: try UserMemory.offset(request.data_uptr, by: UInt64(offset)))
          offset += chunk
        }
      }
    }
    request.data_len = UInt32(data.count)  // INFO-4
    request.out_data_type = device.hardwareInfo.type
    // 7.2 adds IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, which neither edu nor the mock device has.
    request.out_capabilities = device.hardwareInfo.capabilities | (isLinux7_2 ? 8 : 0)
    request.out_max_pasid_log2 = device.maxPASIDLog2
    try respond(request, address, size)  // INFO-5: truncated to size
    return 0
  }

  // MARK: 5.11 HWPT_ALLOC

  func hwptAlloc(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_hwpt_alloc.self, address, size, minimum: Int(CIOMMUFD_HWPT_ALLOC_MIN_SIZE))
    if request.__reserved != 0 { throw .notSupported }  // HWPT-1
    if (request.data_type == CIOMMUFD_HWPT_DATA_NONE) != (request.data_len == 0) { throw .invalidArgument }  // HWPT-2
    guard let device = context.device(request.dev_id) else { throw .noSuchFileOrDirectory }  // HWPT-3
    guard let target = context.object(request.pt_id) else { throw .invalidArgument }  // HWPT-4
    switch target {
    case .ioas(let ioas):  // HWPT-5
      // HWPT-5.2/5.3/5.4: flags the device's IOMMU driver does not offer (the emulated
      // VT-d offers none; the mock NEST_PARENT and, unless NO_DIRTY, DIRTY_TRACKING), and
      // driver data on an IOAS target.
      // 7.2 also takes ALLOC_PASID, and FAULT_ID_VALID without NEST_PARENT.
      var allowed = device.allowedHWPTFlags
      if isLinux7_2 {
        allowed |= CIOMMUFD_HWPT_ALLOC_PASID
        if request.flags & CIOMMUFD_HWPT_ALLOC_NEST_PARENT == 0 { allowed |= CIOMMUFD_HWPT_FAULT_ID_VALID }
      }
      if request.flags & ~allowed != 0 { throw .notSupported }
      var hugeLeaves = device.hugeIOVA
      var profile = device.profile
      if request.data_len != 0 {
        // 7.2 hands driver data to the driver: VT-d takes none; the mock takes its own type
        // (4 to 8 bytes: the IOTLB value and a page-table type, 0 or 1 for huge pages).
        guard isLinux7_2, isMock(device), request.data_type == CIOMMUFD_HWPT_DATA_SELFTEST else { throw .notSupported }
        if request.data_len < 4 || request.data_len > 8 { throw .invalidArgument }
        var data = try UserMemory.read(request.data_uptr, count: Int(request.data_len))
        data += [UInt8](repeating: 0, count: 8 - data.count)
        let pageTableType = UserMemory.decode(UInt32.self, from: data, offset: 4)
        if pageTableType > 1 { throw .notSupported }
        hugeLeaves = pageTableType == 1
        if pageTableType == 1 { profile = .mockHuge(pageSize: pageSize) }
      }
      let id = try allocateID(context)
      try checkDomainAdd(ioas, profile: profile)
      var faultID: UInt32?
      if request.flags & CIOMMUFD_HWPT_FAULT_ID_VALID != 0 {
        guard case .fault? = context.objects[request.fault_id] else { throw .noSuchFileOrDirectory }
        faultID = request.fault_id
      }
      request.out_hwpt_id = id
      try respond(request, address, size)  // HWPT-9: nothing was created yet
      let hwpt = SimulatedHWPT(ioasID: request.pt_id, isAutomatic: false, profile: profile, flags: request.flags)
      commitDomainAdd(ioas, hwptID: id, hwpt)
      hwpt.faultID = faultID
      hwpt.hugeLeaves = hugeLeaves
      context.objects[id] = .hwpt(hwpt)
      return 0
    case .hwpt(let parent) where parent.parentID == nil:  // HWPT-6
      let nestedFlags = CIOMMUFD_HWPT_FAULT_ID_VALID | (isLinux7_2 ? CIOMMUFD_HWPT_ALLOC_PASID : 0)
      if request.flags & ~nestedFlags != 0 || request.data_len == 0 { throw .notSupported }
      if parent.isAutomatic || parent.flags & CIOMMUFD_HWPT_ALLOC_NEST_PARENT == 0 || parent.profile.driver != device.profile.driver {
        throw .invalidArgument
      }
      return try allocateMockNested(context, &request, parentID: request.pt_id, parent, viommuID: nil, address, size)
    case .hwpt:
      throw .invalidArgument  // HWPT-7: nesting on a nested HWPT
    case .viommu(let viommu):
      return try nestedOnVIOMMU(context, &request, viommu, device, address, size)
    case .device, .selfTest, .fault, .vdevice, .veventq, .tombstone, .hwQueue, .access:
      throw .invalidArgument  // HWPT-7
    }
  }
}
