import Iommufd
import CIommufd
import SystemPackage

/// Dirty tracking (semantics §5.13, §5.14, §7.2 DIRTY), as the kernel does it with the
/// mock IOMMU's dirty ops: per IO page, set by device DMA writes and by the self-test.
extension SimulatedKernel.State {
  /// A 1 MiB leaf that 6.12's mock walk stands in: where it stands, and where the walk of
  /// the leaf's area ends (the area's last address).
  struct LeafVisit {
    var leaf: UInt64
    var position: UInt64
    var areaLast: UInt64
  }

  // MARK: 5.13 SET_DIRTY_TRACKING

  func setDirtyTracking(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    let request = try command(ciommufd_iommu_hwpt_set_dirty_tracking.self, address, size)
    if request.flags & ~CIOMMUFD_HWPT_DIRTY_TRACKING_ENABLE != 0 { throw .notSupported }  // DSET-1
    guard let hwpt = context.pagingHWPT(request.hwpt_id) else { throw .noSuchFileOrDirectory }  // DSET-2
    guard hwpt.hasDirtyOps else { throw .notSupported }  // DSET-3
    let enable = request.flags & CIOMMUFD_HWPT_DIRTY_TRACKING_ENABLE != 0
    if enable { hwpt.dirtyBits.removeAll() }  // DSET-4: enabling starts from clean
    hwpt.dirtyEnabled = enable
    return 0
  }

  // MARK: 5.14 GET_DIRTY_BITMAP

  func getDirtyBitmap(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    let request = try command(ciommufd_iommu_hwpt_get_dirty_bitmap.self, address, size)
    if request.flags & ~CIOMMUFD_HWPT_GET_DIRTY_BITMAP_NO_CLEAR != 0 || request.__reserved != 0 { throw .notSupported }  // DGET-1
    guard let hwpt = context.pagingHWPT(request.hwpt_id), let ioas = context.ioas(hwpt.ioasID) else { throw .noSuchFileOrDirectory }
    // DGET-3, in the kernel's order (7.2 has no length-0 check: the last address overflows
    // unless the IOVA is 0).
    if request.length == 0 && !isLinux7_2 { throw .invalidArgument }
    let (last, overflow) = request.iova.addingReportingOverflow(request.length &- 1)
    if overflow { throw .overflow }
    let alignment = ioas.alignment(pageSize: pageSize)
    let end = request.iova &+ request.length
    if request.iova % alignment != 0 || end % alignment != 0 { throw .invalidArgument }
    if request.page_size == 0 { throw .invalidArgument }
    if request.iova & (request.page_size - 1) != 0 || end & (request.page_size - 1) != 0 { throw .invalidArgument }
    guard hwpt.hasDirtyOps else { throw .notSupported }  // DGET-4
    // 7.2 with IOVA 0 and length 0 (not verified on a kernel): taken as an empty harvest.
    if request.length == 0 { return 0 }
    // DGET-5: with tracking off 6.12's driver fails the walk (EINVAL, passed on since
    // 6.12.118: the walk's result was swallowed before); 7.2 swallows it, and its mock's
    // generic page table reads and clears the dirty bits whether tracking is on or not.
    if !hwpt.dirtyEnabled && !isLinux7_2 { throw .invalidArgument }
    guard hwpt.dirtyEnabled || (isLinux7_2 && hwpt.profile.driver == .mock) else { return 0 }
    // The walk covers the areas that run contiguously from iova and stops at the first gap;
    // 6.12 (since 6.12.118) then fails with EINVAL, after harvesting what it walked; 7.2
    // swallows it. Nothing past the gap is read or cleared.
    var walkedLast: UInt64? = nil
    var probe = request.iova
    while probe <= last, let area = ioas.areas.entry(containing: probe) {
      walkedLast = min(area.last, last)
      if area.last >= last { break }
      probe = area.last + 1
    }
    let reachedGap = walkedLast != last
    guard let walkedLast else {  // a gap at the base: nothing walked
      if !isLinux7_2 { throw .invalidArgument }
      return 0
    }
    let clear = request.flags & CIOMMUFD_HWPT_GET_DIRTY_BITMAP_NO_CLEAR == 0
    let ioPage = hwpt.profile.entrySize
    // 7.2's mock maps a CPU page whose IOVA and host address are both aligned to it as a
    // contiguous pair of entries: the pair is dirty if either entry is, and is reported by
    // its first entry only (record_dirty's length stops short of the run's last entry),
    // and not at all by a walk that starts at its second entry; reading clears both.
    let pairs = isLinux7_2 && hwpt.profile.driver == .mock
    var reportedPairs: Set<UInt64> = []
    let frames = PhysicalFrames()
    // A run the range starts or ends inside is dirty if any of its entries is, also one
    // outside the range: then it is reported (below, from its dirty pages in the range).
    if pairs && !hwpt.hugeLeaves {
      for address in [request.iova, walkedLast] {
        guard let area = ioas.areas.entry(containing: address), let run = mockRun(containing: address, in: area, ioas: ioas, frames: frames),
          run.size > ioPage
        else { continue }
        let runLast = run.start + run.size - 1
        if (run.start < request.iova || runLast > last) && hwpt.hasDirty(run.start, runLast) { hwpt.markDirty(run.start, runLast) }
      }
    }
    // A 1 MiB leaf is dirty as a whole: one dirty IO page in it dirties all of it, and a
    // harvest that clears clears all of it, also outside the range asked for.
    let leaves = hwpt.hugeLeaves && !ioas.disableLargePages ? hugeLeaves(ioas, request.iova, walkedLast) : []
    var dirtyLeaves: [UInt64] = []
    for leaf in leaves where hwpt.hasDirty(leaf, leaf + Self.hugeLeafSize - 1) {
      hwpt.markDirty(leaf, leaf + Self.hugeLeafSize - 1)
      dirtyLeaves.append(leaf)
    }
    // 6.12.118's iova_bitmap_set refuses a record that runs past the range asked for: it
    // sets none of its bits, and the call fails with EPROTO once the walk is done (unless
    // the walk failed itself). Where such a record starts, the walk of its area ends:
    // nothing from there to the end of the area (or of the range) is recorded.
    // 6.12's walk visits the leaves it stands in (those it steps over stay dirty): it
    // clears them, and refuses the record of a dirty one that runs past the range.
    let visits = isLinux7_2 ? [] : leafVisits(leaves, ioas, request.iova, last)
    let dirty = Set(dirtyLeaves)
    func isRefused(_ visit: LeafVisit) -> Bool { dirty.contains(visit.leaf) && last - visit.position < Self.hugeLeafSize - 1 }
    let refused = visits.filter(isRefused).map { (from: $0.position, through: min($0.areaLast, last)) }
    let cleared = isLinux7_2 ? dirtyLeaves : visits.map(\.leaf).filter(dirty.contains)
    defer { if clear { for leaf in cleared { hwpt.clearDirty(leaf, leaf + Self.hugeLeafSize - 1) } } }
    let hugeLeafStarts = Set(leaves)  // 1 MiB leaves are one entry each: all of it is reported
    // The kernel's iova_bitmap shifts by __ffs(page_size): a page size that is no power of
    // two is checked as given, but each bit covers its lowest set bit's worth of IOVA.
    let bitmapPage = UInt64(1) << UInt64(request.page_size.trailingZeroBitCount)
    let bitCount = request.length / bitmapPage + (request.length % bitmapPage == 0 ? 0 : 1)
    // The words to set, by index: as the kernel maps the user bitmap a chunk at a time,
    // nothing of the size the user asked for is allocated.
    // Dense words up to 8 MiB of bitmap, sparse ones beyond (a huge user length costs
    // nothing it does not use).
    let wordCount = bitCount / 64 + 1
    var dense = wordCount <= 1 << 20 ? [UInt64](repeating: 0, count: Int(wordCount)) : []
    var local: [UInt64: UInt64] = [:]
    let samePages = ioPage == bitmapPage
    // The bitmap's words as the kernel counts them; bits past them (7.2's records past the
    // range) are written on their own, a word at a time, where the memory allows.
    let rangeWords = (request.length - 1) / bitmapPage / 64 + 1
    var pastRange: [UInt64: UInt64] = [:]
    /// Sets bit `bit` (from the base): in the bitmap's words, dense or sparse, or past them.
    func setBit(_ bit: UInt64) {
      if bit / 64 >= rangeWords {
        pastRange[bit / 64, default: 0] |= 1 << (bit % 64)
      } else if dense.isEmpty {
        local[bit / 64, default: 0] |= 1 << (bit % 64)
      } else {
        dense[Int(bit / 64)] |= 1 << (bit % 64)
      }
    }
    // The last bit 7.2 sets for a record from bit `first` that runs past the range: it
    // pins the bitmap again from the record's word (iova_bitmap_advance_to) and sets bits
    // to the end of those pages (iova_bitmap_get: the words left, one more page when the
    // word does not start one, 512 pages at most; past a capped window, none).
    func pinnedLastBit(from first: UInt64) -> UInt64 {
      let index = first / 64
      guard index < rangeWords else { return bitCount - 1 }
      let address = request.data &+ index * 8
      let needed = ((rangeWords - index) * 8 + 4095) / 4096 + (address % 4096 == 0 ? 0 : 1)
      guard needed <= 512 else { return bitCount - 1 }
      return ((address & ~4095) &+ needed * 4096 &- request.data) * 8 - 1
    }
    // 7.2's record of `length` bytes from `from`: its iova_bitmap_set does not clip it to
    // the range, and sets the bits past the range's end as far as the pinned pages reach.
    func recordUnclipped(from: UInt64, length: UInt64) {
      let (end, overflow) = from.addingReportingOverflow(length - 1)
      var bit = (from - request.iova) / bitmapPage
      var lastBit = ((overflow ? .max : end) - request.iova) / bitmapPage
      if lastBit > bitCount - 1 { lastBit = max(bitCount - 1, min(lastBit, pinnedLastBit(from: bit))) }
      while bit <= lastBit {
        setBit(bit)
        bit += 1
      }
    }
    // The areas that run contiguously from iova; the walk stops at the first gap.
    var cursor = request.iova
    var walkIsOver = false
    // 6.12's mock walk from inside a leaf: it tests (and clears) the whole leaf and records
    // 1 MiB from where it stands, then steps 1 MiB, to the same offset in each following
    // leaf. Where that lands outside a leaf, it goes on 2 KiB at a time from there: the
    // stretch of that chunk before it is neither tested, cleared nor recorded.
    if !isLinux7_2, let firstArea = ioas.areas.entry(containing: request.iova) {
      let size = Self.hugeLeafSize
      let pieceLast = min(firstArea.last, last)
      var position: UInt64? = request.iova  // nil: the walk of the first area is over
      for visit in visits {
        guard visit.position == position, visit.position % size != 0 else { break }
        if isRefused(visit) {  // EPROTO: the walk of this area ends
          position = nil
          break
        }
        if dirty.contains(visit.leaf) {
          var bit = (visit.position - request.iova) / bitmapPage
          let lastBit = (visit.position + size - 1 - request.iova) / bitmapPage
          while bit <= lastBit {
            setBit(bit)
            bit += 1
          }
        }
        let (next, wrapped) = visit.position.addingReportingOverflow(size)
        position = wrapped || next > pieceLast ? nil : next
      }
      if let position {
        cursor = position
      } else if pieceLast == last || pieceLast == .max {
        walkIsOver = true  // nothing follows the first area
      } else {
        cursor = pieceLast + 1  // the next area, walked from its start
      }
    }
    while !walkIsOver, cursor <= walkedLast, let area = ioas.areas.entry(containing: cursor) {
      let stop = min(area.last, last)
      let firstPage = cursor / ioPage
      let lastPage = stop / ioPage
      if samePages && !pairs {
        // A bitmap bit per entry, and nothing else changes the dirty bits meanwhile: each
        // word's bits, shifted to where the base puts them, a chunk of words at a time.
        let base = request.iova / ioPage
        if dense.isEmpty {
          hwpt.dirtyBits.harvest(firstPage, through: lastPage, base: base, clear: clear) { local[UInt64($0), default: 0] |= $1 }
        } else {
          dense.withUnsafeMutableBufferPointer { bitmap in
            hwpt.dirtyBits.harvest(firstPage, through: lastPage, base: base, clear: clear) { bitmap[$0] |= $1 }
          }
        }
        if stop == last || area.last == .max { break }
        cursor = area.last + 1
        continue
      }
      var next = hwpt.dirtyBits.nextWord(from: firstPage / 64, through: lastPage / 64)
      while let index = next {
        next = index < lastPage / 64 ? hwpt.dirtyBits.nextWord(from: index + 1, through: lastPage / 64) : nil
        let word = hwpt.dirtyBits.word(index)
        var mask = UInt64.max
        if index == firstPage / 64 { mask &= UInt64.max << (firstPage % 64) }
        if index == lastPage / 64, lastPage % 64 != 63 { mask &= (1 << (lastPage % 64 + 1)) - 1 }
        var bits = word & mask
        if bits == 0 { continue }
        if clear { hwpt.dirtyBits.clear(bits, inWord: index) }
        while bits != 0 {
          let page = index * 64 + UInt64(bits.trailingZeroBitCount)
          bits &= bits - 1
          if pairs && !hwpt.hugeLeaves, let run = mockRun(containing: page * ioPage, in: area, ioas: ioas, frames: frames), run.size > ioPage {
            // A run of contiguous entries is dirty if any entry is; the walk reports it
            // from the entry it starts at to one entry short of the run's end (when the
            // run has more than one item), and reading clears all of it.
            if clear { hwpt.clearDirty(run.start, run.start + run.size - 1) }
            guard reportedPairs.insert(run.start).inserted else { continue }
            let items = run.size / run.item
            let firstItem = run.start >= request.iova ? 0 : (request.iova - run.start) / run.item
            let walkEnd = last >= run.start + run.size - 1 ? items : (last - run.start) / run.item + 1
            let endItem = items == 1 ? 1 : min(items - 1, walkEnd)
            guard endItem > firstItem else { continue }
            // The record is not clipped to the range: 7.2's iova_bitmap_set sets its bits
            // past the range's end, as far as the pages pinned for the bitmap reach.
            recordUnclipped(from: max(run.start + firstItem * run.item, request.iova), length: (endItem - firstItem) * run.item)
            continue
          }
          if pairs && hwpt.hugeLeaves, hugeLeafStarts.contains(page * ioPage & ~(Self.hugeLeafSize - 1)) {
            // 7.2's huge table: a 1 MiB page is one entry, recorded 1 MiB from where the
            // walk stands (its start, or the range's), as a run is.
            let leaf = page * ioPage & ~(Self.hugeLeafSize - 1)
            guard reportedPairs.insert(leaf).inserted else { continue }
            recordUnclipped(from: max(leaf, request.iova), length: Self.hugeLeafSize)
            continue
          }
          if pairs && hwpt.hugeLeaves {
            let pair = page * ioPage & ~(2 * ioPage - 1)
            let host = area.value.userVA &+ (pair &- area.start)
            if pair >= area.start, pair &+ (2 * ioPage - 1) <= area.last, host % (2 * ioPage) == 0,
              !hugeLeafStarts.contains(pair & ~(Self.hugeLeafSize - 1))
            {
              if clear { hwpt.clearDirty(pair, pair + 2 * ioPage - 1) }
              guard pair >= request.iova, reportedPairs.insert(pair).inserted else { continue }
              var bit = (pair - request.iova) / bitmapPage
              let lastBit = min((pair + ioPage - 1 - request.iova) / bitmapPage, bitCount - 1)
              while bit <= lastBit {
                setBit(bit)
                bit += 1
              }
              continue
            }
          }
          // DGET-6: every bitmap bit the dirty IO page overlaps, relative to the base.
          let first = max(page * ioPage, request.iova)
          var bit = (first - request.iova) / bitmapPage
          let lastBit = samePages ? bit : min((min(page * ioPage + ioPage - 1, last) - request.iova) / bitmapPage, bitCount - 1)
          while bit <= lastBit {
            setBit(bit)
            bit += 1
          }
        }
      }
      if stop == last || area.last == .max { break }
      cursor = area.last + 1
    }
    // What the call returns once the bits are written: 6.12's EINVAL for a walk that
    // stopped at a gap comes first, then its EPROTO for a record past the range.
    func outcome() throws(Errno) -> Int32 {
      if reachedGap && !isLinux7_2 { throw .invalidArgument }
      if !refused.isEmpty { throw .protocolError }
      return 0
    }
    // No bits from a refused record on: those from the first that starts at or after it (a
    // bit that begins before it also covers what earlier records may have set).
    for record in refused {
      let firstBit = (record.from - request.iova + bitmapPage - 1) / bitmapPage
      let lastBit = (record.through - request.iova) / bitmapPage
      if firstBit <= lastBit {
        if dense.isEmpty {
          for index in local.keys where index >= firstBit / 64 && index <= lastBit / 64 {
            local[index]! &= ~Self.bits(from: firstBit, through: lastBit, inWord: index)
          }
        } else {
          for index in firstBit / 64...lastBit / 64 { dense[Int(index)] &= ~Self.bits(from: firstBit, through: lastBit, inWord: index) }
        }
      }
    }
    // The words past the bitmap that 7.2 set bits in, each where it can be read and written.
    for (index, bits) in pastRange.sorted(by: { $0.key < $1.key }) {
      guard let address = try? UserMemory.offset(request.data, by: index * 8), let bytes = try? UserMemory.read(address, count: 8) else { continue }
      let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } | bits
      try? UserMemory.write(withUnsafeBytes(of: word) { Array($0) }, to: address)
    }
    // The kernel only sets bits; an unreadable or unwritable bitmap is swallowed in both
    // releases (iova_bitmap_advance_to returns without setting the bitmap's error): then
    // nothing is set.
    // Read, merge and write back a run of words at a time (a run spans at most 8192 words,
    // 64 KiB), so a dense bitmap costs a few copies, not two per word.
    if !dense.isEmpty {
      // Dense: chunks of 8192 words from the first to the last non-zero word, read into
      // one buffer, merged in place, then written back.
      guard let firstSet = dense.firstIndex(where: { $0 != 0 }), let lastSet = dense.lastIndex(where: { $0 != 0 }) else { return try outcome() }
      var merged = [UInt64](repeating: 0, count: lastSet - firstSet + 1)
      let readAll = merged.withUnsafeMutableBytes { words -> Bool in
        var chunk = 0
        while chunk < words.count {
          let end = min(chunk + 8192 * 8, words.count)
          guard let address = try? UserMemory.offset(request.data, by: UInt64(firstSet * 8 + chunk)),
            (try? UserMemory.read(address, into: UnsafeMutableRawBufferPointer(rebasing: words[chunk..<end]))) != nil
          else { return false }
          chunk = end
        }
        return true
      }
      guard readAll else { return try outcome() }
      for index in merged.indices { merged[index] |= dense[firstSet + index] }
      merged.withUnsafeBytes { words in
        var chunk = 0
        while chunk < words.count {
          let end = min(chunk + 8192 * 8, words.count)
          try? UserMemory.write(UnsafeRawBufferPointer(rebasing: words[chunk..<end]), to: request.data &+ UInt64(firstSet * 8 + chunk))
          chunk = end
        }
      }
      return try outcome()  // DGET-7: nothing written back
    }
    var runs: [(first: UInt64, words: [UInt64])] = []
    let indexes = local.keys.sorted()
    var position = 0
    while position < indexes.count {
      let first = indexes[position]
      var end = position
      while end + 1 < indexes.count && indexes[end + 1] - first < 8192 { end += 1 }
      let count = Int(indexes[end] - first + 1)
      guard let address = try? UserMemory.offset(request.data, by: first * 8),
        let bytes = try? UserMemory.read(address, count: count * 8)
      else { return try outcome() }
      var words = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
      for index in indexes[position...end] { words[Int(index - first)] |= local[index]! }
      runs.append((first, words))
      position = end + 1
    }
    for run in runs {
      let bytes = run.words.withUnsafeBytes { Array($0) }
      try? UserMemory.write(bytes, to: request.data &+ run.first * 8)
    }
    return try outcome()  // DGET-7: nothing written back
  }

  /// The run of contiguous entries 7.2's mock page table (not the huge one) holds `iova`
  /// in, as it was mapped: each physically contiguous stretch of an area's pages is mapped
  /// in one `iommu_map`, which splits it greedily into the largest power-of-two runs
  /// (2 KiB up to 64 GiB) that IOVA and physical address are both aligned to. A run's
  /// item is the largest table level (2 KiB, 1 MiB, 512 MiB) that fits in it. Frames come
  /// from /proc/self/pagemap; where they are hidden, a CPU page is a stretch of its own.
  /// With large pages off (IOMMU_OPTION_HUGE_PAGES 0) every CPU page is mapped alone.
  func mockRun(
    containing iova: UInt64, in area: AreaMap<SimulatedArea>.Entry, ioas: SimulatedIOAS,
    frames: PhysicalFrames
  ) -> (start: UInt64, size: UInt64, item: UInt64)? {
    guard let pages = pagesTable[area.value.pages], pages.dmabuf == nil else { return nil }
    let cpuPage = pageSize
    let entry: UInt64 = 2048
    func host(_ address: UInt64) -> UInt64 { area.value.userVA &+ (address &- area.start) }
    let firstHostPage = host(area.start) & ~(cpuPage - 1)
    let lastHostPage = host(area.last) & ~(cpuPage - 1)
    let hostPage = host(iova) & ~(cpuPage - 1)
    // The stretch [low, high] of host pages, physically contiguous, and the frame of low.
    var (low, high) = (hostPage, hostPage)
    var lowFrame: UInt64? = nil
    if !ioas.disableLargePages, cpuPage == UInt64(getpagesize()), let frame = frames[hostPage] {
      lowFrame = frame
      var steps = 0
      while low > firstHostPage, steps < 1 << 18, let previous = frames[low - cpuPage], previous == lowFrame! &- 1 {
        low -= cpuPage
        lowFrame = previous
        steps += 1
      }
      var highFrame = frame
      while high < lastHostPage, steps < 1 << 19, let next = frames[high + cpuPage], next == highFrame &+ 1 {
        high += cpuPage
        highFrame = next
        steps += 1
      }
    }
    // The stretch in IOVA, clipped to the area.
    let start = max(area.start, area.start &+ (low &- host(area.start)))
    let end = min(area.last, area.start &+ (high &+ cpuPage &- 1 &- host(area.start)))
    func physical(_ address: UInt64) -> UInt64 {
      guard let lowFrame else { return host(address) }
      return lowFrame &* cpuPage &+ (host(address) &- low)
    }
    var cursor = start
    while cursor <= end {
      let alignment = cursor | physical(cursor)
      var size = alignment == 0 ? UInt64(1) << 36 : min(UInt64(1) << 36, UInt64(1) << UInt64(alignment.trailingZeroBitCount))
      let remaining = end - cursor + 1
      while size > remaining { size >>= 1 }
      guard size >= entry else { return nil }
      if iova < cursor + size {
        let item: UInt64 = size >= 1 << 29 ? 1 << 29 : size >= 1 << 20 ? 1 << 20 : entry
        return (cursor, size, item)
      }
      cursor += size
    }
    return nil
  }

  /// `MOCK_HUGE_PAGE_SIZE`: 512 mock IO pages of 2 KiB.
  static var hugeLeafSize: UInt64 { 1 << 20 }

  /// The 1 MiB leaves a huge-capable mock domain maps within `[first, last]` of `ioas`: the
  /// aligned IOVA chunks inside one area whose memory is physically contiguous from a
  /// 1 MiB-aligned frame, as `iommu_map` picks its page sizes. Frames come from
  /// /proc/self/pagemap (they need CAP_SYS_ADMIN; without them no leaf is huge).
  func hugeLeaves(_ ioas: SimulatedIOAS, _ first: UInt64, _ last: UInt64) -> [UInt64] {
    let size = Self.hugeLeafSize
    var leaves: [UInt64] = []
    for area in ioas.areas.entries(intersecting: first & ~(size - 1), last) {
      let (rounded, overflow) = area.start.addingReportingOverflow(size - 1)
      if overflow { continue }
      var leaf = rounded & ~(size - 1)
      while leaf <= area.last, area.last - leaf >= size - 1, leaf <= last {
        let user = area.value.userVA &+ (leaf - area.start)
        if user % size == 0, UserMemory.isPhysicallyContiguous(user, length: size, pageSize: pageSize, frameAlignment: size) {
          leaves.append(leaf)
        }
        let (next, wrapped) = leaf.addingReportingOverflow(size)
        if wrapped { break }
        leaf = next
      }
    }
    return leaves
  }

  /// The mask of the bits `first...last` (bitmap bit numbers) that fall in word `index`.
  static func bits(from first: UInt64, through last: UInt64, inWord index: UInt64) -> UInt64 {
    let low = max(first, index * 64)
    let high = min(last, index * 64 + 63)
    guard low <= high else { return 0 }
    let count = high - low + 1
    return (count == 64 ? UInt64.max : (UInt64(1) << count) - 1) << (low - index * 64)
  }

  /// The 1 MiB leaves 6.12's mock walk of `first...last` visits, in order, each with where
  /// the walk stands when it reaches it and the last address of the leaf's area. The walk
  /// stands at a leaf's start, or, where it began inside a leaf, at the same offset into
  /// each leaf that follows that one in the same area without a gap (it steps a leaf at a
  /// time there); a leaf it would reach past `last` it does not visit: it neither tests,
  /// clears nor records it. `leaves` ascend.
  func leafVisits(_ leaves: [UInt64], _ ioas: SimulatedIOAS, _ first: UInt64, _ last: UInt64) -> [LeafVisit] {
    let size = Self.hugeLeafSize
    var visits: [LeafVisit] = []
    var offset: UInt64 = 0
    var previous: (leaf: UInt64, area: UInt64)? = nil
    for leaf in leaves where leaf &+ (size - 1) >= first {  // not those before the range
      let entry = ioas.areas.entry(containing: leaf)
      let area = entry?.start ?? leaf
      if previous == nil || previous!.leaf &+ size != leaf || previous!.area != area {
        offset = leaf < first ? first - leaf : 0  // reached a 2 KiB step at a time: at its start
      }
      previous = (leaf, area)
      let position = leaf &+ offset
      guard position <= last else { continue }  // the walk ends before it
      visits.append(LeafVisit(leaf: leaf, position: position, areaLast: entry?.last ?? last))
    }
    return visits
  }

  // MARK: 7.2 IOMMU_TEST_OP_DIRTY

  func testDirty(_ context: SimulatedContext, _ command: ciommufd_iommu_test_cmd) throws(Errno) -> UInt64 {
    let request = withUnsafeBytes(of: command.payload) { $0.loadUnaligned(as: ciommufd_iommu_test_dirty.self) }
    let pageSize = request.page_size
    if pageSize == 0 || request.length == 0 || request.iova % pageSize != 0 || request.length % pageSize != 0 || request.uptr == 0 {
      throw .invalidArgument
    }
    let count = request.length / pageSize
    if count > 16 * 1024 * 1024 * 8 { throw .overflow }
    guard let hwpt = context.pagingHWPT(command.id) else { throw .noSuchFileOrDirectory }
    guard hwpt.profile.driver == .mock, let ioas = context.ioas(hwpt.ioasID) else { throw .invalidArgument }  // not a mock domain
    guard hwpt.dirtyEnabled else { throw .invalidArgument }
    let bitmap = try UserMemory.read(request.uptr, count: Int((count + 7) / 8))
    var marked: UInt64 = 0
    for bit in 0..<count where bitmap[Int(bit / 8)] & (1 << (bit % 8)) != 0 {
      // As 6.12 does: the mock page numbered (iova + bit * page_size) / page_size. 7.2 marks
      // the entry holding the IOVA itself (the second of a contiguous pair too: reading
      // reports the pair by its first).
      // The kernel's unsigned long arithmetic wraps; so does this.
      let ioPageAddress: UInt64
      if isLinux7_2 {
        ioPageAddress = (request.iova &+ bit &* pageSize) & ~(hwpt.profile.entrySize - 1)
      } else {
        ioPageAddress = (request.iova &+ bit &* pageSize) / pageSize &* hwpt.profile.pageSize
      }
      // 6.12 counts the pages it found mapped; 7.2 counts every set bit (its set_dirty
      // ignores an IOVA with nothing mapped).
      if isLinux7_2 { marked += 1 }
      guard ioas.areas.entry(containing: ioPageAddress) != nil else { continue }
      hwpt.markDirty(ioPageAddress, ioPageAddress)
      if !isLinux7_2 { marked += 1 }
    }
    return marked
  }
}
