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

  /// Whether the page at `iova` is dirty; false outside the bitmap (and for a bitmap
  /// built with page size 0 or with fewer words than pages, past its words).
  public func isDirty(_ iova: UInt64) -> Bool {
    guard iova >= base, pageSize > 0, pageCount > 0 else { return false }
    let bit = (iova - base) / pageSize
    guard bit < UInt64(pageCount) else { return false }
    let word = Int(bit / 64)
    return word < words.count && words[word] & (1 << (bit % 64)) != 0
  }

  /// Iterates the IOVAs of the dirty pages in ascending order.
  /// Inlinable, so a loop over a harvest in another module costs what a loop over a bit
  /// array does.
  public struct Iterator: IteratorProtocol {
    @usableFromInline let bitmap: DirtyBitmap
    @usableFromInline var word = 0
    @usableFromInline var bits: UInt64

    @inlinable
    init(_ bitmap: DirtyBitmap) {
      self.bitmap = bitmap
      self.bits = bitmap.words.first ?? 0
    }

    /// The next dirty page's IOVA; `nil` at the end, or where an IOVA would pass 2^64 (a
    /// bitmap built by hand).
    @inlinable
    public mutating func next() -> UInt64? {
      while bits == 0 {
        word += 1
        guard word < bitmap.words.count else { return nil }
        bits = bitmap.words[word]
      }
      let bit = UInt64(word) &* 64 &+ UInt64(bits.trailingZeroBitCount)
      bits &= bits - 1
      let (offset, overflow) = bit.multipliedReportingOverflow(by: bitmap.pageSize)
      let (iova, passes) = bitmap.base.addingReportingOverflow(offset)
      guard !overflow, !passes else {
        word = bitmap.words.count
        bits = 0
        return nil
      }
      return iova
    }
  }

  /// An iterator over the dirty pages' IOVAs.
  @inlinable
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
    try iommufd.withDescriptor(.setDirtyTracking, using: object) { fd throws(IommufdError) in
      try iommufd.backend.ioctl(fd, CIOMMUFD_IOMMU_HWPT_SET_DIRTY_TRACKING, &request, .setDirtyTracking, [.hwpt(id)])
    }
  }

  /// The largest bitmap ``dirtyBitmap(iova:length:pageSize:clear:)`` allocates: 64 MiB,
  /// 2^29 pages (2 TiB of 4 KiB pages). Harvest a larger range in pieces.
  public static let maximumDirtyBitmapBytes = 64 << 20

  /// The pages written since the last harvest in `length` bytes at `iova`, at `pageSize`
  /// granularity (`IOMMU_HWPT_GET_DIRTY_BITMAP`); clears what it reports unless `clear`
  /// is false. `pageSize` must be a power of two (EINVAL otherwise). A bitmap larger than ``maximumDirtyBitmapBytes`` is refused before the
  /// kernel is asked: EOVERFLOW or EINVAL where the kernel would refuse the range, else
  /// ENOMEM.
  public func dirtyBitmap(iova: UInt64, length: UInt64, pageSize: UInt64, clear: Bool = true) throws(IommufdError) -> DirtyBitmap {
    guard pageSize > 0 else {
      throw IommufdError(.getDirtyBitmap, .invalidArgument, objects: [.hwpt(id)], detail: "page size must be above 0")
    }
    // The kernel takes any page size but sets one bit per its lowest set bit's worth of
    // IOVA (iova_bitmap's __ffs shift): for 0x3000 three times the bits asked for, written
    // past a bitmap sized by the page size. Only powers of two mean what they say.
    guard pageSize & (pageSize - 1) == 0 else {
      throw IommufdError(
        .getDirtyBitmap, .invalidArgument, objects: [.hwpt(id)],
        detail: "page size 0x\(String(pageSize, radix: 16)) is not a power of two (the kernel would report at 0x\(String(UInt64(1) << UInt64(pageSize.trailingZeroBitCount), radix: 16)) granularity)")
    }
    let pageCount = length / pageSize + (length % pageSize == 0 ? 0 : 1)
    let wordCount = pageCount / 64 + (pageCount % 64 == 0 ? 0 : 1)
    guard wordCount <= UInt64(Self.maximumDirtyBitmapBytes / 8) else {
      let range = "iova 0x\(String(iova, radix: 16)) + length 0x\(String(length, radix: 16))"
      if length > 0, iova.addingReportingOverflow(length - 1).overflow {
        throw IommufdError(.getDirtyBitmap, .overflow, objects: [.hwpt(id)], detail: "\(range) overflows")
      }
      if (iova | (iova &+ length)) & (pageSize &- 1) != 0 {
        throw IommufdError(
          .getDirtyBitmap, .invalidArgument, objects: [.hwpt(id)],
          detail: "\(range) is not aligned to the page size 0x\(String(pageSize, radix: 16))")
      }
      throw IommufdError(
        .getDirtyBitmap, .noMemory, objects: [.hwpt(id)],
        detail: "\(range) at page size 0x\(String(pageSize, radix: 16)) needs a bitmap of \(pageCount) pages, above the \(Self.maximumDirtyBitmapBytes)-byte maximum")
    }
    let pages = Int(pageCount)
    var words = [UInt64](repeating: 0, count: max(1, Int(wordCount)))
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
      try iommufd.withDescriptor(.getDirtyBitmap, using: object) { fd throws(IommufdError) in
        try iommufd.backend.ioctl(fd, CIOMMUFD_IOMMU_HWPT_GET_DIRTY_BITMAP, &request, .getDirtyBitmap, [.hwpt(id)])
      }
      for index in 0..<count { words[index] = buffer.load(fromByteOffset: index * 8, as: UInt64.self) }
    }
    return DirtyBitmap(base: iova, pageSize: pageSize, pageCount: pages, words: words)
  }
}

extension IOMMUSelfTest {
  /// Marks dirty the pages of `hwpt` whose bits are set in `pages` (`IOMMU_TEST_OP_DIRTY`,
  /// the mock IOMMU only); returns how many were mapped and marked. The kernel reads
  /// `length / pageSize` bits: page size 0, or `pages` with fewer bits (it would read past
  /// them), is EINVAL before the kernel is asked.
  public func markDirty(_ hwpt: HWPageTable, iova: UInt64, length: UInt64, pageSize: UInt64, pages: [UInt64]) throws(IommufdError) -> Int {
    guard pageSize > 0 else {
      throw IommufdError(.testCommand, .invalidArgument, objects: [.hwpt(hwpt.id)], detail: "page size must be above 0")
    }
    let bits = UInt64(max(pages.count, 1)) * 64
    guard length / pageSize <= bits else {
      throw IommufdError(
        .testCommand, .invalidArgument, objects: [.hwpt(hwpt.id)],
        detail: "length 0x\(String(length, radix: 16)) at page size 0x\(String(pageSize, radix: 16)) is \(length / pageSize) pages, more than the \(bits) bits of pages")
    }
    return try withScratchBuffer(count: max(8, pages.count * 8)) { buffer throws(IommufdError) -> Int in
      for (index, word) in pages.enumerated() { buffer.storeBytes(of: word, toByteOffset: index * 8, as: UInt64.self) }
      var command = Self.command(CIOMMUFD_TEST_OP_DIRTY, id: hwpt.id)
      withUnsafeMutableBytes(of: &command.payload) { payload in
        payload.storeBytes(of: iova, toByteOffset: 8, as: UInt64.self)
        payload.storeBytes(of: length, toByteOffset: 16, as: UInt64.self)
        payload.storeBytes(of: pageSize, toByteOffset: 24, as: UInt64.self)
        payload.storeBytes(of: UInt64(UInt(bitPattern: buffer.baseAddress)), toByteOffset: 32, as: UInt64.self)
      }
      try issue(&command, [.hwpt(hwpt.id)], using: [hwpt.object])
      return Int(clamping: withUnsafeBytes(of: command.payload) { $0.load(fromByteOffset: 40, as: UInt64.self) })
    }
  }
}
