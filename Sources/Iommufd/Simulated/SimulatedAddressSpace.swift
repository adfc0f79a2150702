import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The user pages behind one `IOMMU_IOAS_MAP`, shared by the areas `IOMMU_IOAS_COPY` makes
/// from it. Pinned (and charged) while at least one area using it sits in an IOAS that has
/// a domain.
final class SimulatedPages {
  /// The page-aligned user address the pages start at.
  let base: UInt64
  /// The number of pages.
  let pageCount: UInt64
  /// Whether the mapping that created them asked for WRITEABLE.
  let writable: Bool
  /// Areas using the pages in an IOAS with at least one domain.
  var domainUsers = 0
  /// Areas using the pages at all; the pages are forgotten when it drops to 0.
  var areaUsers = 0
  /// The file behind pages of `IOMMU_IOAS_MAP_FILE` (7.2 model); `nil` for user memory.
  let file: SimulatedFileBacking?

  init(base: UInt64, pageCount: UInt64, writable: Bool, file: SimulatedFileBacking? = nil) {
    self.base = base
    self.pageCount = pageCount
    self.writable = writable
    self.file = file
  }
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

  /// What pinning checks (`memfd_pin_folios`): a shmem (memfd, tmpfs) or hugetlbfs file,
  /// and pages that end within the file.
  func canPin(pageCount: UInt64, pageSize: UInt64) -> Bool {
    guard mapping != nil else { return false }
    var status = stat()
    guard fstat(fd, &status) == 0 else { return false }
    let type = ciommufd_filesystem_type(fd)
    guard type == 0x0102_1994 || type == 0x9584_58F6 else { return false }  // TMPFS_MAGIC, HUGETLBFS_MAGIC
    return offset + UInt64(mappedLength) <= UInt64(status.st_size)
  }
}

/// One mapping in an IOAS: `[iova, last]` → user memory at `userVA`. Plain values only
/// (the pages by id), so looking areas up costs no reference counting.
struct SimulatedArea {
  var userVA: UInt64
  var readable: Bool
  var writable: Bool
  var pages: UInt64
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
  var areas = AreaMap<SimulatedArea>()
  var reserved: [(start: UInt64, last: UInt64, owner: ReservationOwner)] = []
  var allowed: [IOVARange] = []
  var disableLargePages = false
  /// Ranges pinned by HW queues' internal accesses (7.2 model): areas there cannot be unmapped.
  var locks: [IOVARange] = []

  /// Whether an area `[start, last]` holds pages a HW queue pinned.
  func isLocked(_ start: UInt64, _ last: UInt64) -> Bool {
    locks.contains { $0.start <= last && start <= $0.last }
  }
  /// Paging HWPTs on this IOAS (their ids and IO page sizes), in creation order.
  var domains: [(id: UInt32, pageSize: UInt64)] = []

  /// IOAS-1.
  func alignment(pageSize: UInt64) -> UInt64 {
    var alignment: UInt64 = 1
    if disableLargePages || !locks.isEmpty { alignment = max(alignment, pageSize) }  // an access aligns to PAGE_SIZE
    for domain in domains { alignment = max(alignment, domain.pageSize) }
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
