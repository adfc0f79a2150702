import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The user pages behind one `IOMMU_IOAS_MAP`, shared by the areas `IOMMU_IOAS_COPY` makes
/// from it. Pinned (and charged) while at least one area using it sits in an IOAS that has
/// a domain.
final class SimulatedPages {
  /// What is behind pages that are not plain user memory.
  enum Backing {
    /// The file of `IOMMU_IOAS_MAP_FILE` (7.2 model).
    case file(SimulatedFileBacking)
    /// A dma-buf mapped with `IOMMU_IOAS_MAP_FILE` (7.2 model): by address, never pinned
    /// or charged.
    case dmabuf(SimulatedDMABufSlice)
  }

  /// The page-aligned user address the pages start at.
  let base: UInt64
  /// The number of pages.
  let pageCount: UInt64
  /// How many areas in an IOAS with a domain use each page (by index): a page is pinned
  /// while its count is above 0. Runs of equal counts, so a huge lazy mapping costs nothing.
  var pins = PinCounts()
  /// The file or dma-buf behind the pages; `nil` for user memory.
  let backing: Backing?
  /// Areas using the pages at all; the pages are forgotten when it drops to 0.
  var areaUsers: Int32 = 0
  /// Whether the mapping that created them asked for WRITEABLE.
  let writable: Bool
  /// The simulated file (a context, device, queue or access) whose descriptor
  /// `IOMMU_IOAS_MAP_FILE` mapped: the pages hold it open until they go.
  var heldFile: ObjectIdentifier?

  /// The file behind pages of `IOMMU_IOAS_MAP_FILE`; `nil` for user memory or a dma-buf.
  var file: SimulatedFileBacking? {
    if case .file(let file)? = backing { return file }
    return nil
  }

  /// The dma-buf behind the pages and the offset of the first page in it.
  var dmabuf: (buffer: SimulatedDMABuf, offset: UInt64)? {
    if case .dmabuf(let slice)? = backing { return (slice.buffer, slice.offset) }
    return nil
  }

  init(
    base: UInt64, pageCount: UInt64, writable: Bool, file: SimulatedFileBacking? = nil,
    dmabuf: (buffer: SimulatedDMABuf, offset: UInt64)? = nil
  ) {
    self.base = base
    self.pageCount = pageCount
    self.writable = writable
    if let file {
      backing = .file(file)
    } else if let dmabuf {
      backing = .dmabuf(SimulatedDMABufSlice(buffer: dmabuf.buffer, offset: dmabuf.offset))
    } else {
      backing = nil
    }
  }
}

/// A dma-buf and the offset in it where mapped pages start.
final class SimulatedDMABufSlice {
  let buffer: SimulatedDMABuf
  let offset: UInt64

  init(buffer: SimulatedDMABuf, offset: UInt64) {
    self.buffer = buffer
    self.offset = offset
  }
}

/// The pages of every mapping by id: a slot per live id, ids of forgotten pages reused,
/// so the table costs a word per mapping.
struct SimulatedPagesTable {
  private var slots: [SimulatedPages?] = [nil]  // id 0 is never used
  private var free: [UInt32] = []

  /// Stores `pages` and returns their id.
  mutating func add(_ pages: SimulatedPages) -> UInt32 {
    if let id = free.popLast() {
      slots[Int(id)] = pages
      return id
    }
    slots.append(pages)
    return UInt32(slots.count - 1)
  }

  /// The pages of `id`; setting `nil` forgets them and frees the id.
  subscript(id: UInt32) -> SimulatedPages? {
    get { Int(id) < slots.count ? slots[Int(id)] : nil }
    set {
      guard Int(id) < slots.count, id != 0 else { return }
      if newValue == nil, slots[Int(id)] != nil { free.append(id) }
      slots[Int(id)] = newValue
    }
  }

  /// Every live pages object.
  var values: [SimulatedPages] { slots.compactMap { $0 } }
}

/// The file of an `IOMMU_IOAS_MAP_FILE` mapping: the simulator's own reference to it (as
/// the kernel keeps one) and its own shared mapping of the pages, through which simulated
/// devices reach them. Released with the pages.
final class SimulatedFileBacking {
  /// A duplicate of the user's descriptor.
  let fd: Int32
  /// The page-aligned file offset the pages start at.
  let offset: UInt64
  /// The simulator's shared mapping of the pages; `nil` where it cannot map them (a file
  /// that is no shmem or hugetlbfs file, a range beyond `off_t`, write-sealed or hugetlbfs
  /// memfds at 4 KiB granularity): then pinning fails with EINVAL (see Docs/Simulator.md).
  let mapping: UnsafeMutableRawPointer?
  let mappedLength: Int

  init(fd: Int32, offset: UInt64, pageCount: UInt64, pageSize: UInt64, writable: Bool) {
    self.fd = fd
    self.offset = offset
    let (length, overflow) = pageCount.multipliedReportingOverflow(by: pageSize)
    guard !overflow, length <= UInt64(Int.max), offset <= UInt64(Int64.max) - length else {
      mapping = nil
      mappedLength = 0
      return
    }
    mappedLength = Int(length)
    let protection = PROT_READ | (writable ? PROT_WRITE : 0)
    var address = mmap(nil, mappedLength, protection, MAP_SHARED, fd, off_t(offset))
    if address == MAP_FAILED && writable {
      // A read-only descriptor of a writable file (the kernel ignores the descriptor's
      // mode): map it through a read-write open of the same file.
      let reopened = open("/proc/self/fd/\(fd)", O_RDWR | O_CLOEXEC)
      if reopened >= 0 {
        address = mmap(nil, mappedLength, protection, MAP_SHARED, reopened, off_t(offset))
        close(reopened)
      }
    }
    mapping = address == MAP_FAILED ? nil : address
  }

  deinit {
    if let mapping { munmap(mapping, mappedLength) }
    close(fd)
  }

  /// What pinning pages `first...last` (indexes from ``offset``) checks
  /// (`memfd_pin_folios`): a shmem (memfd, tmpfs) or hugetlbfs file, and pages that end
  /// within the file.
  func canPin(first: UInt64, last: UInt64, pageSize: UInt64) -> Bool {
    guard mapping != nil else { return false }
    var status = stat()
    guard fstat(fd, &status) == 0 else { return false }
    let type = ciommufd_filesystem_type(fd)
    guard type == 0x0102_1994 || type == 0x9584_58F6 else { return false }  // TMPFS_MAGIC, HUGETLBFS_MAGIC
    let (end, overflow) = (last &+ 1).multipliedReportingOverflow(by: pageSize)
    return !overflow && offset.addingReportingOverflow(end).overflow == false && offset + end <= UInt64(status.st_size)
  }
}

/// One mapping in an IOAS: `[iova, last]` → user memory at `userVA`. Plain values only
/// (the pages by id), so looking areas up costs no reference counting.
struct SimulatedArea {
  var userVA: UInt64
  var pages: UInt32
  var readable: Bool
  var writable: Bool

  init(userVA: UInt64, readable: Bool, writable: Bool, pages: UInt32) {
    self.userVA = userVA
    self.pages = pages
    self.readable = readable
    self.writable = writable
  }
}

/// Who reserved a range of an IOAS.
enum ReservationOwner: Equatable {
  /// An HW page table's aperture (everything outside what its IOMMU can translate).
  case aperture(UInt32)
  /// A device's reserved regions (such as the x86 MSI window), while it is attached.
  case device(UInt32)
  /// `IOMMU_TEST_OP_ADD_RESERVED`, until the IOAS is destroyed.
  case test
}

/// One IOAS of the simulated kernel: areas, reservations, allowed ranges, domains.
/// Pure bookkeeping; the kernel object around it holds the lock.
final class SimulatedIOAS {
  /// Guarded by the kernel's lock; unchecked: a translation reads it.
  @exclusivity(unchecked) var areas = AreaMap<SimulatedArea>()
  var reserved: [(start: UInt64, last: UInt64, owner: ReservationOwner)] = []
  var allowed: [IOVARange] = []
  var disableLargePages = false
  /// Ranges pinned by HW queues' internal accesses (7.2 model): areas there cannot be unmapped.
  var locks: [IOVARange] = []
  /// Self-test accesses attached to this IOAS, in attach order.
  var accesses: [SimulatedAccess] = []

  /// Whether an area `[start, last]` holds pages a HW queue pinned.
  func isLocked(_ start: UInt64, _ last: UInt64) -> Bool {
    locks.contains { $0.start <= last && start <= $0.last }
  }
  /// Paging HWPTs on this IOAS (their ids and IO page sizes), in creation order.
  var domains: [(id: UInt32, table: SimulatedHWPT)] = []

  /// IOAS-1.
  func alignment(pageSize: UInt64) -> UInt64 {
    var alignment: UInt64 = 1
    // A pinning access (a HW queue's, or a self-test one) aligns to PAGE_SIZE.
    if disableLargePages || !locks.isEmpty || accesses.contains(where: \.needsPinPages) { alignment = max(alignment, pageSize) }
    for domain in domains { alignment = max(alignment, domain.table.profile.pageSize) }
    return alignment
  }

  func overlapsReserved(_ start: UInt64, _ last: UInt64) -> Bool {
    reserved.contains { $0.start <= last && start <= $0.last }
  }

  func overlapsAllowed(_ start: UInt64, _ last: UInt64) -> Bool {
    allowed.contains { $0.start <= last && start <= $0.last }
  }

  /// RANGES-2: the maximal holes in the union of reserved ranges over the 64-bit space.
  func usableRanges() -> [IOVARange] {
    let sorted = reserved.sorted { $0.start < $1.start }
    var result: [IOVARange] = []
    var cursor: UInt64 = 0
    var exhausted = false
    for range in sorted {
      if exhausted { break }
      if range.start > cursor { result.append(IOVARange(start: cursor, last: range.start - 1)) }
      if range.last == .max { exhausted = true } else { cursor = max(cursor, range.last + 1) }
    }
    if !exhausted { result.append(IOVARange(start: cursor, last: .max)) }
    return result
  }

  /// IOAS-6: the kernel's first-fit choice of an IOVA for `length` bytes of user memory at `u`.
  func allocateIOVA(length: UInt64, userAddress u: UInt64, pageSize: UInt64, hugePageSize: UInt64) throws(Errno) -> UInt64 {
    if length == 0 || length >= (1 << 63) - 1 { throw .overflow }
    var a = roundUpToPowerOfTwo(length)
    if u != 0 { a = min(a, UInt64(1) << UInt64(u.trailingZeroBitCount)) }
    if a >= hugePageSize { a = hugePageSize }
    if a < alignment(pageSize: pageSize) { throw .invalidArgument }
    let offset = u % pageSize
    let window = IOVARange(start: pageSize, last: UInt64.max - pageSize)
    var windows: [IOVARange] = []
    if allowed.isEmpty {
      windows = [window]
    } else {
      for range in allowed.sorted(by: { $0.start < $1.start }) {
        let start = max(range.start, window.start)
        let last = min(range.last, window.last)
        guard start <= last else { continue }
        if let previous = windows.last, previous.last != .max, previous.last + 1 >= start {
          windows[windows.count - 1].last = max(previous.last, last)
        } else {
          windows.append(IOVARange(start: start, last: last))
        }
      }
    }
    func fit(_ holeStart: UInt64, _ holeLast: UInt64) -> UInt64? {
      let (rounded, overflow) = holeStart.addingReportingOverflow(a - 1)
      if overflow { return nil }
      let s = (rounded & ~(a - 1)) | offset
      return s < holeLast && holeLast - s >= length - 1 ? s : nil
    }
    for window in windows {
      // As the kernel does, the window's start is aligned (and given the page offset)
      // first, and the holes are scanned from there.
      guard let start = fit(window.start, window.last) else { continue }
      if let iova = firstFit(in: IOVARange(start: start, last: window.last), fit) { return iova }
    }
    throw .noSpace
  }

  /// Walks the holes of reserved ∪ areas inside `window` in ascending order.
  private func firstFit(in window: IOVARange, _ fit: (UInt64, UInt64) -> UInt64?) -> UInt64? {
    let sortedReserved = reserved.sorted { $0.start < $1.start }
    var cursor = window.start
    while cursor <= window.last {
      // The used interval that covers cursor or comes next.
      var nextStart = UInt64.max
      var nextLast = UInt64.max
      var found = false
      for range in sortedReserved where range.last >= cursor {
        if range.start < nextStart || !found {
          nextStart = range.start
          nextLast = range.last
          found = true
        }
        break
      }
      if let area = areas.entry(containing: cursor) ?? areas.first(startingAtOrAfter: cursor) {
        if !found || area.start < nextStart || (area.start == nextStart && area.last > nextLast) {
          nextStart = area.start
          nextLast = area.last
          found = true
        }
      }
      if !found || nextStart > window.last {
        return fit(cursor, window.last)
      }
      if nextStart > cursor, let iova = fit(cursor, min(nextStart - 1, window.last)) {
        return iova
      }
      if nextLast >= window.last { return nil }
      cursor = max(cursor, nextLast + 1)
    }
    return nil
  }

  private func roundUpToPowerOfTwo(_ value: UInt64) -> UInt64 {
    if value <= 1 { return 1 }
    let bits = 64 - (value - 1).leadingZeroBitCount
    return bits >= 64 ? 1 << 63 : 1 << UInt64(bits)
  }
}

/// Pages `first...last` (indexes) of a pages object: what one area uses.
struct PageSpan {
  let pages: SimulatedPages
  let first: UInt64
  let last: UInt64
}

/// Pin counts of a run of pages, as sorted runs `[first, last]` of equal counts above 0.
struct PinCounts {
  private(set) var runs: [(first: UInt64, last: UInt64, count: Int)] = []

  /// The pages of `first...last` whose count is 0, as ranges.
  func unpinned(_ first: UInt64, _ last: UInt64) -> [(first: UInt64, last: UInt64)] {
    var gaps: [(first: UInt64, last: UInt64)] = []
    var cursor = first
    for run in runs where run.last >= first && run.first <= last {
      if run.first > cursor { gaps.append((cursor, run.first - 1)) }
      if run.last >= last { return gaps }
      cursor = run.last + 1
    }
    gaps.append((cursor, last))
    return gaps
  }

  /// The count of page `index`.
  func count(at index: UInt64) -> Int {
    runs.first { $0.first <= index && index <= $0.last }?.count ?? 0
  }

  /// Adds `delta` (+1 or -1) to every page of `first...last`; returns how many pages went
  /// from 0 to 1 (or from 1 to 0).
  mutating func add(_ delta: Int, _ first: UInt64, _ last: UInt64) -> UInt64 {
    var pieces: [(first: UInt64, last: UInt64, count: Int)] = []
    var changed: UInt64 = 0
    var index = 0
    while index < runs.count && runs[index].last < first {
      pieces.append(runs[index])
      index += 1
    }
    var cursor = first  // the next page of first...last not yet handled
    var done = false
    while index < runs.count && runs[index].first <= last {
      let run = runs[index]
      if run.first < first { pieces.append((run.first, first - 1, run.count)) }
      let start = max(run.first, first)
      if start > cursor && delta > 0 {
        pieces.append((cursor, start - 1, 1))
        changed &+= start - cursor
      }
      let end = min(run.last, last)
      if run.count + delta > 0 { pieces.append((start, end, run.count + delta)) } else { changed &+= end - start + 1 }
      if run.last > last { pieces.append((last + 1, run.last, run.count)) }
      if end == last { done = true } else { cursor = end + 1 }
      index += 1
    }
    if !done && delta > 0 {
      pieces.append((cursor, last, 1))
      changed &+= last - cursor + 1
    }
    pieces += runs[index...]
    var merged: [(first: UInt64, last: UInt64, count: Int)] = []
    for piece in pieces {
      if let previous = merged.last, previous.count == piece.count, previous.last &+ 1 == piece.first {
        merged[merged.count - 1].last = piece.last
      } else {
        merged.append(piece)
      }
    }
    runs = merged
    return changed
  }
}
