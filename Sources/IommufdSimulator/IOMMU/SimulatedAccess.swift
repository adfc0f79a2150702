import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An in-kernel access to an IOAS (`struct iommufd_access`), as the self-test makes one
/// with `IOMMU_TEST_OP_CREATE_ACCESS`: what an emulated or mdev VFIO driver uses to pin
/// and to read or write an IOAS without a domain. It has a descriptor of its own, takes an
/// object id that nobody is told, holds its context and its IOAS, and keeps the ranges it
/// pinned as items, which an unmap of their IOVA takes away (the self-test's unmap
/// callback).
final class SimulatedAccess {
  /// One `IOMMU_TEST_OP_ACCESS_PAGES`: a pinned IOVA range and the pages it pins.
  struct Item {
    let id: UInt32
    let iova: UInt64
    let last: UInt64
    let spans: [PageSpan]
  }

  let context: SimulatedContext
  /// The object id the access took in its context.
  let objectID: UInt32
  /// `MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES`: it may pin, and aligns its IOAS to pages.
  let needsPinPages: Bool
  /// The IOAS it is attached to (a mediated device's access has none until attached).
  var ioasID: UInt32?
  /// The mediated device whose access it is (its bind made it), told of unmaps.
  var device: SimulatedMediatedDevice?
  var items: [Item] = []
  /// The next item id (per access, from 0).
  var nextItemID: UInt32 = 0

  init(context: SimulatedContext, objectID: UInt32, needsPinPages: Bool, ioasID: UInt32?) {
    self.context = context
    self.objectID = objectID
    self.needsPinPages = needsPinPages
    self.ioasID = ioasID
  }
}

extension SimulatedKernel.State {
  /// `EBADFD`: what the self-test answers for an access descriptor that is not one.
  static var badDescriptorState: Errno { Errno(rawValue: 77) }

  /// The access whose descriptor is `fd` (`iommufd_access_get`): EBADFD for anything else.
  func access(descriptor fd: UInt32) throws(Errno) -> SimulatedAccess {
    guard let number = Int32(exactly: fd), case .access(let access)? = files[number] else { throw Self.badDescriptorState }
    return access
  }

  // MARK: The self-test's access ops (semantics §7.2)

  /// `IOMMU_TEST_OP_CREATE_ACCESS` on IOAS `ioasID`: flags other than NEEDS_PIN_PAGES are
  /// EOPNOTSUPP; the access takes the lowest free id, then attaches (ENOENT for an unknown
  /// IOAS, EADDRINUSE where a pinning access would misalign its areas). Returns the new
  /// descriptor, which the reply carries; `commit` runs before anything is kept (its
  /// failure undoes all).
  func createAccess(
    _ context: SimulatedContext, ioasID: UInt32, flags: UInt32, commit: (Int32) throws(Errno) -> Void
  ) throws(Errno) -> Int32 {
    if flags & ~CIOMMUFD_MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES != 0 { throw .notSupported }
    let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .noMemory }  // get_unused_fd_flags fails as ENOMEM
    var kept = false
    defer { if !kept { _ = Glibc.close(fd) } }
    let objectID = try allocateID(context)
    guard let ioas = context.ioas(ioasID) else { throw .noSuchFileOrDirectory }
    let needsPinPages = flags & CIOMMUFD_MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES != 0
    if needsPinPages { try checkAlignmentRaise(ioas, to: pageSize) }
    try commit(fd)
    let access = SimulatedAccess(context: context, objectID: objectID, needsPinPages: needsPinPages, ioasID: ioasID)
    context.objects[objectID] = .access
    context.accessFiles += 1
    ioas.accesses.append(access)
    files[fd] = .access(access)
    kept = true
    return fd
  }

  /// `IOMMU_TEST_OP_ACCESS_REPLACE_IOAS`: moves the access to IOAS `ioasID` of its own
  /// context (ENOENT if unknown; the same IOAS does nothing), dropping all it pinned.
  func replaceAccessIOAS(_ access: SimulatedAccess, ioasID: UInt32) throws(Errno) {
    guard let target = access.context.ioas(ioasID) else { throw .noSuchFileOrDirectory }
    if ioasID == access.ioasID { return }
    if access.needsPinPages { try checkAlignmentRaise(target, to: pageSize) }
    target.accesses.append(access)
    detachAccess(access)
    access.ioasID = ioasID
  }

  /// The access leaves its IOAS, if it has one: its driver is told everything is unmapped
  /// (`ops->unmap(0, ULONG_MAX)`), and whatever it still pinned is dropped.
  func detachAccess(_ access: SimulatedAccess) {
    guard let current = access.ioasID else { return }
    access.device?.didUnmap(iova: 0, length: .max)
    dropItems(of: access, intersecting: 0, .max)
    access.context.ioas(current)?.accesses.removeAll { $0 === access }
    access.ioasID = nil
  }

  /// Closing the access's descriptor: everything it pinned is released, it leaves its
  /// IOAS, its id is freed, and its context may go.
  func closeAccess(_ access: SimulatedAccess) {
    detachAccess(access)
    access.context.objects[access.objectID] = nil
    access.context.accessFiles -= 1
    releaseIfUnused(access.context)
  }

  /// The self-test's unmap callback: drops (and unpins) every item of `access` that
  /// intersects `[first, last]`.
  func dropItems(of access: SimulatedAccess, intersecting first: UInt64, _ last: UInt64) {
    access.items.removeAll { item in
      guard item.iova <= last && first <= item.last else { return false }
      removeDomainUsers(item.spans)
      return true
    }
  }

  /// `iommufd_access_notify_unmap` for the area `[first, last]` of `ioas`, before it goes.
  func notifyUnmap(_ ioas: SimulatedIOAS, _ first: UInt64, _ last: UInt64) {
    for access in ioas.accesses where access.items.contains(where: { $0.iova <= last && first <= $0.last }) {
      access.device?.didUnmap(iova: first, length: last &- first &+ 1)
      dropItems(of: access, intersecting: first, last)
    }
  }

  /// Whether an access has pinned part of `[first, last]` of `ioas` (`num_accesses`).
  func hasAccessItems(_ ioas: SimulatedIOAS, _ first: UInt64, _ last: UInt64) -> Bool {
    ioas.accesses.contains { $0.items.contains { $0.iova <= last && first <= $0.last } }
  }

  /// The syzkaller form of an IOVA (`MOCK_FLAGS_ACCESS_SYZ`): `{u32 nth area, u32 offset}`
  /// of the access's IOAS, 0 where there is no such area.
  func syzkallerIOVA(_ access: SimulatedAccess, _ iova: UInt64) -> UInt64 {
    guard let ioas = access.ioasID.flatMap(access.context.ioas) else { return 0 }
    let nth = Int(UInt32(truncatingIfNeeded: iova))
    let areas = ioas.areas.all
    return nth < areas.count ? areas[nth].start &+ (iova >> 32) : 0
  }

  /// The areas covering `[iova, last]` of `ioas` without a gap, each with the part of it
  /// that lies in the range (`iopt_for_each_contig_area`): `body` sees them in order and
  /// may throw; a gap, after the pieces before it, is ENOENT.
  func forEachContiguousPiece(
    _ ioas: SimulatedIOAS, _ iova: UInt64, _ last: UInt64,
    _ body: (AreaMap<SimulatedArea>.Entry, UInt64, UInt64) throws(Errno) -> Void
  ) throws(Errno) {
    var cursor = iova
    while true {
      guard let area = ioas.areas.entry(containing: cursor) else { throw .noSuchFileOrDirectory }
      let end = min(area.last, last)
      try body(area, cursor, end)
      if end == last { return }
      cursor = end + 1
    }
  }

  /// `IOMMU_TEST_OP_ACCESS_PAGES`: pins `length` bytes at `iova` through a pinning access
  /// (`iommufd_access_pin_pages`), checks them against the user's pages at `uptr` (unless
  /// 0), and records an item; returns its id.
  func accessPages(_ access: SimulatedAccess, iova requested: UInt64, length: UInt64, uptr: UInt64, flags: UInt32) throws(Errno) -> UInt32 {
    if !access.needsPinPages { throw .notSupported }
    let iova = flags & CIOMMUFD_MOCK_FLAGS_ACCESS_SYZ != 0 ? syzkallerIOVA(access, requested) : requested
    let write = flags & CIOMMUFD_MOCK_FLAGS_ACCESS_WRITE != 0
    if length == 0 { throw .invalidArgument }
    let (last, overflow) = iova.addingReportingOverflow(length - 1)
    if overflow { throw .overflow }
    guard let ioas = access.ioasID.flatMap(access.context.ioas) else { throw .noSuchFileOrDirectory }
    var committed: [PageSpan] = []
    var hostPages: [UInt64] = []
    var kept = false
    defer { if !kept { removeDomainUsers(committed) } }
    try forEachContiguousPiece(ioas, iova, last) { area, first, end throws(Errno) in
      // The piece starts on a page, and ends on one unless it is the last.
      let startVA = area.value.userVA &+ (first - area.start)
      let endVA = area.value.userVA &+ (end - area.start)
      if startVA % pageSize != 0 || (end != last && endVA % pageSize != pageSize - 1) { throw .invalidArgument }
      if write ? !area.value.writable : !area.value.readable { throw .notPermitted }
      guard let pages = pagesTable[area.value.pages] else { throw .invalidArgument }
      if write && !pages.writable { throw .notPermitted }
      if pages.dmabuf != nil { throw .invalidArgument }  // no struct page behind a dma-buf
      let span = span(SimulatedArea(userVA: startVA, readable: true, writable: true, pages: area.value.pages), length: end - first + 1)
      try pin([span])
      addDomainUsers([span])
      committed.append(span)
      var page = startVA & ~(pageSize - 1)
      while page <= endVA {
        hostPages.append(page)
        let (next, wrapped) = page.addingReportingOverflow(pageSize)
        if wrapped { break }
        page = next
      }
    }
    if uptr != 0 {
      // get_user_pages_fast of each of the user's pages, compared with the pinned one.
      try UserMemory.withPhysicalFrames { frame throws(Errno) in
        var user = uptr &- iova % pageSize
        for host in hostPages {
          try getUserPage(user)
          if user & ~(pageSize - 1) != host {
            // Another mapping of the same page (a shared file) still matches: compare the
            // physical frames, with the simulator's own mapping faulted in first.
            _ = UserMemory.canPin(host, length: pageSize, pageSize: pageSize, writable: false)
            guard let mine = frame(user), frame(host) == mine else { throw Errno(rawValue: 52) }  // EBADE
          }
          user &+= pageSize
        }
      }
    }
    let id = access.nextItemID
    access.nextItemID &+= 1
    access.items.append(SimulatedAccess.Item(id: id, iova: iova, last: last, spans: committed))
    kept = true
    return id
  }

  /// Undoes the newest item of `access` (a failed reply).
  func dropNewestItem(of access: SimulatedAccess) {
    guard let item = access.items.popLast() else { return }
    removeDomainUsers(item.spans)  // its id stays used, as the kernel's next_id moves on
  }

  /// `IOMMU_TEST_OP_DESTROY_ACCESS_PAGES`: unpins item `id` (ENOENT if there is none).
  func destroyAccessPages(_ access: SimulatedAccess, id: UInt32) throws(Errno) {
    guard let index = access.items.firstIndex(where: { $0.id == id }) else { throw .noSuchFileOrDirectory }
    removeDomainUsers(access.items.remove(at: index).spans)
  }

  /// `IOMMU_TEST_OP_ACCESS_RW`: reads or writes `length` bytes at `iova` of the access's
  /// IOAS (`iommufd_access_rw`) to or from the user's buffer at `uptr`. The checks of each
  /// area come in order, so a gap (ENOENT) is found after the pieces before it were copied.
  func accessReadWrite(_ access: SimulatedAccess, iova requested: UInt64, length: UInt64, uptr: UInt64, flags: UInt32) throws(Errno) {
    let write = flags & CIOMMUFD_MOCK_ACCESS_RW_WRITE != 0
    var data: [UInt8] = []
    if write { data = try UserMemory.read(uptr, count: Int(length)) }
    let iova = flags & CIOMMUFD_MOCK_FLAGS_ACCESS_SYZ != 0 ? syzkallerIOVA(access, requested) : requested
    let read = try accessCopy(
      access, iova: iova, length: length, write: write ? data : nil, slowPath: flags & CIOMMUFD_MOCK_ACCESS_RW_SLOW_PATH != 0)
    if !write { try UserMemory.write(read, to: uptr) }
  }

  /// `iommufd_access_rw`: reads `length` bytes at `iova` of the access's IOAS (`write`
  /// nil), or writes `write` there; returns what was read.
  func accessCopy(_ access: SimulatedAccess, iova: UInt64, length: UInt64, write data: [UInt8]?, slowPath: Bool = false) throws(Errno) -> [UInt8] {
    let write = data != nil
    let data = data ?? []
    if length == 0 { throw .invalidArgument }
    let (last, overflow) = iova.addingReportingOverflow(length - 1)
    if overflow { throw .overflow }
    guard let ioas = access.ioasID.flatMap(access.context.ioas) else { throw .noSuchFileOrDirectory }
    var read: [UInt8] = []
    try forEachContiguousPiece(ioas, iova, last) { area, first, end throws(Errno) in
      if write ? !area.value.writable : !area.value.readable { throw .notPermitted }
      guard let pages = pagesTable[area.value.pages] else { throw .invalidArgument }
      if write && !pages.writable { throw .notPermitted }
      if pages.dmabuf != nil { throw .invalidArgument }
      let host = area.value.userVA &+ (first - area.start)
      let count = end - first + 1
      try checkAccessCopy(pages, host: host, count: count, write: write, slowPath: slowPath)
      let offset = Int(first - iova)
      if write {
        try UserMemory.write(Array(data[offset..<(offset + Int(count))]), to: host)
      } else {
        read += try UserMemory.read(host, count: Int(count))
      }
    }
    return read
  }

  /// What `iopt_pages_rw_access` checks beyond the copy itself: file pages, and user pages
  /// on the slow path, are read through a pin (of the one page with the access's own
  /// direction; of several, as the mapping pins them, unless pinned already).
  private func checkAccessCopy(_ pages: SimulatedPages, host: UInt64, count: UInt64, write: Bool, slowPath: Bool) throws(Errno) {
    let firstIndex = (host &- pages.base) / pageSize
    let lastIndex = (host &- pages.base &+ (count - 1)) / pageSize
    if let file = pages.file {
      for gap in pages.pins.unpinned(firstIndex, lastIndex) where !file.canPin(first: gap.first, last: gap.last, pageSize: pageSize) {
        throw .invalidArgument
      }
      return
    }
    guard slowPath else { return }
    if firstIndex == lastIndex {
      let page = host & ~(pageSize - 1)
      guard UserMemory.canPin(page, length: pageSize, pageSize: pageSize, writable: write) else { throw .badAddress }
      return
    }
    for gap in pages.pins.unpinned(firstIndex, lastIndex) {
      let start = pages.base &+ gap.first &* pageSize
      guard UserMemory.canPin(start, length: (gap.last - gap.first + 1) &* pageSize, pageSize: pageSize, writable: pages.writable)
      else { throw .badAddress }
    }
  }
}
