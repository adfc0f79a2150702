import CIommufd

/// Dirty pages reported by `IOMMU_HWPT_GET_DIRTY_BITMAP`: bit *i* is the page at
/// `base + i * pageSize`. Iterating yields the IOVAs of the dirty pages, skipping clean
/// words, so a migration loop over a large, mostly clean range stays cheap.
public struct DirtyBitmap: Sequence, Hashable, Sendable {
  /// The IOVA of bit 0.
  public var base: UInt64
  /// The bytes each bit stands for.
  public var pageSize: UInt64
  /// The number of pages covered.
  public var pageCount: Int
  /// The bits, little-endian 64-bit words, bit 0 of word 0 first.
  public var words: [UInt64]

  /// Creates a bitmap.
  public init(base: UInt64, pageSize: UInt64, pageCount: Int, words: [UInt64]) {
    self.base = base
    self.pageSize = pageSize
    self.pageCount = pageCount
    self.words = words
  }

  /// The number of dirty pages.
  public var dirtyCount: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

  /// Whether the page at `iova` is dirty.
  public func isDirty(_ iova: UInt64) -> Bool {
    guard iova >= base else { return false }
    let bit = Int((iova - base) / pageSize)
    return bit < pageCount && words[bit / 64] & (1 << UInt64(bit % 64)) != 0
  }

  /// Iterates the IOVAs of the dirty pages in ascending order.
  public struct Iterator: IteratorProtocol {
    let bitmap: DirtyBitmap
    var word = 0
    var bits: UInt64

    init(_ bitmap: DirtyBitmap) {
      self.bitmap = bitmap
      self.bits = bitmap.words.first ?? 0
    }

    /// The next dirty page's IOVA.
    public mutating func next() -> UInt64? {
      while bits == 0 {
        word += 1
        guard word < bitmap.words.count else { return nil }
        bits = bitmap.words[word]
      }
      let bit = bits.trailingZeroBitCount
      bits &= bits - 1
      return bitmap.base + UInt64(word * 64 + bit) * bitmap.pageSize
    }
  }

  /// An iterator over the dirty pages' IOVAs.
  public func makeIterator() -> Iterator { Iterator(self) }
}

extension HWPageTable {
  /// Turns dirty tracking on (clearing what was recorded) or off
  /// (`IOMMU_HWPT_SET_DIRTY_TRACKING`). Needs an HWPT allocated with ``Flags/dirtyTracking``.
  public func setDirtyTracking(enabled: Bool) throws(IommufdError) {
    var request = ciommufd_iommu_hwpt_set_dirty_tracking()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_hwpt_set_dirty_tracking>.size)
    request.flags = enabled ? CIOMMUFD_HWPT_DIRTY_TRACKING_ENABLE : 0
    request.hwpt_id = id.rawValue
    try iommufd.withDescriptor(.setDirtyTracking, using: [object]) { fd throws(IommufdError) in
      try iommufd.backend.ioctl(fd, CIOMMUFD_IOMMU_HWPT_SET_DIRTY_TRACKING, &request, .setDirtyTracking, [.hwpt(id)])
    }
  }

  /// The pages written since the last harvest in `length` bytes at `iova`, at `pageSize`
  /// granularity (`IOMMU_HWPT_GET_DIRTY_BITMAP`); clears what it reports unless `clear`
  /// is false.
  public func dirtyBitmap(iova: UInt64, length: UInt64, pageSize: UInt64, clear: Bool = true) throws(IommufdError) -> DirtyBitmap {
    guard pageSize > 0, length / pageSize < UInt64(Int.max / 2) else {
      throw IommufdError(.getDirtyBitmap, .invalidArgument, objects: [.hwpt(id)], detail: "page size must be above 0 and the bitmap representable")
    }
    let pages = Int((length + pageSize - 1) / pageSize)
    var words = [UInt64](repeating: 0, count: max(1, (pages + 63) / 64))
    var request = ciommufd_iommu_hwpt_get_dirty_bitmap()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_hwpt_get_dirty_bitmap>.size)
    request.hwpt_id = id.rawValue
    request.flags = clear ? 0 : CIOMMUFD_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
    request.iova = iova
    request.length = length
    request.page_size = pageSize
    let count = words.count
    try withScratchBuffer(count: count * 8) { buffer throws(IommufdError) in
      request.data = UInt64(UInt(bitPattern: buffer.baseAddress))
      try iommufd.withDescriptor(.getDirtyBitmap, using: [object]) { fd throws(IommufdError) in
        try iommufd.backend.ioctl(fd, CIOMMUFD_IOMMU_HWPT_GET_DIRTY_BITMAP, &request, .getDirtyBitmap, [.hwpt(id)])
      }
      for index in 0..<count { words[index] = buffer.load(fromByteOffset: index * 8, as: UInt64.self) }
    }
    return DirtyBitmap(base: iova, pageSize: pageSize, pageCount: pages, words: words)
  }
}

extension IOMMUSelfTest {
  /// Marks dirty the pages of `hwpt` whose bits are set in `pages` (`IOMMU_TEST_OP_DIRTY`,
  /// the mock IOMMU only); returns how many were mapped and marked.
  public func markDirty(_ hwpt: HWPageTable, iova: UInt64, length: UInt64, pageSize: UInt64, pages: [UInt64]) throws(IommufdError) -> Int {
    try withScratchBuffer(count: max(8, pages.count * 8)) { buffer throws(IommufdError) -> Int in
      for (index, word) in pages.enumerated() { buffer.storeBytes(of: word, toByteOffset: index * 8, as: UInt64.self) }
      var command = Self.command(CIOMMUFD_TEST_OP_DIRTY, id: hwpt.id)
      withUnsafeMutableBytes(of: &command.payload) { payload in
        payload.storeBytes(of: iova, toByteOffset: 8, as: UInt64.self)
        payload.storeBytes(of: length, toByteOffset: 16, as: UInt64.self)
        payload.storeBytes(of: pageSize, toByteOffset: 24, as: UInt64.self)
        payload.storeBytes(of: UInt64(UInt(bitPattern: buffer.baseAddress)), toByteOffset: 32, as: UInt64.self)
      }
      try issue(&command, [.hwpt(hwpt.id)], using: [hwpt.object])
      return Int(withUnsafeBytes(of: command.payload) { $0.load(fromByteOffset: 40, as: UInt64.self) })
    }
  }
}
