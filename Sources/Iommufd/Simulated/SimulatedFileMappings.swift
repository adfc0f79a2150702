import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `IOMMU_IOAS_MAP_FILE`, `IOMMU_IOAS_CHANGE_PROCESS` and `IOMMU_HW_QUEUE_ALLOC` as Linux
/// 7.2 has them (`drivers/iommu/iommufd/ioas.c`, `io_pagetable.c`, `pages.c`, `viommu.c`).
extension SimulatedKernel.State {
  /// Maps pages of a file. The file itself is checked only when its pages are pinned (now,
  /// if the IOAS has a domain; else at the first attach): a shmem or hugetlbfs file whose
  /// pages end within it, else EINVAL.
  func mapFile(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_ioas_map_file.self, address, size)
    let known = CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_WRITEABLE | CIOMMUFD_IOAS_MAP_READABLE
    if request.flags & ~known != 0 { throw .notSupported }
    if request.iova == .max || request.length == .max { throw .overflow }
    let readable = request.flags & CIOMMUFD_IOAS_MAP_READABLE != 0
    let writable = request.flags & CIOMMUFD_IOAS_MAP_WRITEABLE != 0
    if !readable && !writable { throw .invalidArgument }
    guard let ioas = context.ioas(request.ioas_id) else { throw .noSuchFileOrDirectory }
    if request.length == 0 { throw .invalidArgument }
    if request.start.addingReportingOverflow(request.length - 1).overflow { throw .overflow }
    if request.fd < 0 || fcntl(request.fd, F_GETFD) == -1 { throw .badFileDescriptor }
    if request.length > UInt64.max - pageSize { throw .invalidArgument }
    let alignment = ioas.alignment(pageSize: pageSize)
    if request.length % alignment != 0 { throw .invalidArgument }
    let iova: UInt64
    if request.flags & CIOMMUFD_IOAS_MAP_FIXED_IOVA != 0 {
      iova = request.iova
      try checkFixedIOVA(ioas, iova, request.length, alignment)
    } else {
      // The file offset stands in for the user address of IOAS_MAP.
      iova = try ioas.allocateIOVA(length: request.length, userAddress: request.start, pageSize: pageSize, hugePageSize: configuration.hugePageSize)
    }
    if (request.start % pageSize) % alignment != 0 { throw .invalidArgument }
    // The pages: DIV_ROUND_UP(length + start % PAGE_SIZE) from the page the file offset is
    // in (length is at most 2^64 - PAGE_SIZE here, so the sum cannot overflow).
    let first = request.start & ~(pageSize - 1)
    let bytes = request.length + request.start % pageSize
    let pageCount = bytes / pageSize + (bytes % pageSize == 0 ? 0 : 1)
    let duplicate = fcntl(request.fd, F_DUPFD_CLOEXEC, 0)
    guard duplicate >= 0 else { throw Errno(rawValue: Glibc.errno) }
    let file = SimulatedFileBacking(fd: duplicate, offset: first, pageCount: pageCount, pageSize: pageSize, writable: writable)
    let base = file.mapping.map { UInt64(UInt(bitPattern: $0)) } ?? 0
    let pages = SimulatedPages(base: base, pageCount: pageCount, writable: writable, file: file)
    if !ioas.domains.isEmpty {
      try pin([pages])
      addDomainUsers([pages])
    }
    request.iova = iova
    let pagesID = register(pages)
    areaAdded(pagesID)
    ioas.areas.insert(
      start: iova, last: iova + request.length - 1,
      value: SimulatedArea(userVA: base + request.start % pageSize, readable: readable, writable: writable, pages: pagesID))
    try respond(request, address, size)
    return 0
  }

  /// Moves the charge of pinned file pages to the caller: EINVAL if any IOAS maps user
  /// memory. The simulated kernel has one process, so nothing else changes.
  func changeProcess(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    let request = try command(ciommufd_iommu_ioas_change_process.self, address, size)
    if request.__reserved != 0 { throw .notSupported }
    for object in context.objects.values {
      guard case .ioas(let ioas) = object else { continue }
      for area in ioas.areas.all where pagesTable[area.value.pages]?.file == nil { throw .invalidArgument }
    }
    return 0
  }

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
    let pinned = IOVARange(start: first, last: first + (rounded / pageSize) * pageSize - 1)
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
    var frames: [UInt64] = []
    while true {
      guard let area = ioas.areas.entry(containing: cursor) else { throw .noSuchFileOrDirectory }
      if !area.value.readable { throw .notPermitted }
      let end = min(area.last, range.last)
      var page = cursor
      while page <= end {
        frames.append(UserMemory.physicalFrame(of: area.value.userVA + (page - area.start)) ?? 0)
        if page > end - pageSize { break }
        page += pageSize
      }
      if end == range.last { break }
      cursor = end + 1
    }
    if frames.count > 1 {
      for index in 1..<frames.count where frames[index] == 0 || frames[index] != frames[index - 1] + 1 { throw .badAddress }
    }
  }
}
