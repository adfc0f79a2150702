import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `IOMMU_IOAS_MAP_FILE` and `IOMMU_IOAS_CHANGE_PROCESS` as Linux 7.2 has them
/// (`drivers/iommu/iommufd/ioas.c`, `io_pagetable.c`, `pages.c`).
extension SimulatedKernel.State {
  /// Maps pages of a file. The file itself is checked only when its pages are pinned (now,
  /// if the IOAS has a domain; else at the first attach): a shmem or hugetlbfs file whose
  /// pages end within it, else EINVAL. A dma-buf of the self-test's exporter is checked at
  /// once.
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
    // A dma-buf: the range must end within it (EINVAL), and it must not be revoked
    // (ENODEV). Its pages are mapped by address: pin() neither pins nor charges them.
    var dmabuf: SimulatedDMABuf?
    if case .dmabuf(let buffer)? = files[request.fd] {
      if buffer.length <= request.start + (request.length - 1) { throw .invalidArgument }
      if buffer.revoked { throw .operationNotSupportedByDevice }  // ENODEV
      dmabuf = buffer
    } else if request.fd < 0 || fcntl(request.fd, F_GETFD) == -1 {
      throw .badFileDescriptor
    }
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
    let pages: SimulatedPages
    if let dmabuf {
      let base = UInt64(UInt(bitPattern: dmabuf.mapping)) + first
      pages = SimulatedPages(base: base, pageCount: pageCount, writable: writable, dmabuf: (dmabuf, first))
    } else {
      let duplicate = fcntl(request.fd, F_DUPFD_CLOEXEC, 0)
      guard duplicate >= 0 else { throw Errno(rawValue: Glibc.errno) }
      let file = SimulatedFileBacking(fd: duplicate, offset: first, pageCount: pageCount, pageSize: pageSize, writable: writable)
      pages = SimulatedPages(base: file.mapping.map { UInt64(UInt(bitPattern: $0)) } ?? 0, pageCount: pageCount, writable: writable, file: file)
    }
    if !ioas.domains.isEmpty {
      let whole = PageSpan(pages: pages, first: 0, last: pageCount - 1)
      try pin([whole])
      addDomainUsers([whole])
    }
    request.iova = iova
    if dmabuf == nil, let held = files[request.fd] {
      // The area holds the file it maps (pages.c: get_file): closing its descriptor then
      // releases nothing until the area goes.
      pages.heldFile = held.identity
      fileHolds[held.identity, default: 0] += 1
    }
    let pagesID = register(pages)
    areaAdded(pagesID)
    ioas.areas.insert(
      start: iova, last: iova + (request.length - 1),
      value: SimulatedArea(userVA: pages.base + request.start % pageSize, readable: readable, writable: writable, pages: pagesID))
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
}
