import CIommufd
import SystemPackage

extension VFIODevice {
  /// The most ranges a DMA logging start takes (`LOG_MAX_RANGES`: a page of 16-byte ranges).
  public static let maximumDMALoggingRanges = 256

  /// Starts device-side DMA logging of `ranges` at `pageSize` granularity
  /// (`DMA_LOGGING_START`): the device records the pages it writes, for
  /// ``dmaLoggingReport(iova:length:pageSize:)``. Returns the page size the driver chose.
  ///
  /// Refused before the kernel is asked: no range or more than ``maximumDMALoggingRanges``
  /// (the kernel's `EINVAL` and `E2BIG`), a page size that is not a power of two (the
  /// kernel would only check alignment against it), a range not aligned to it, one that
  /// overflows, overlapping ranges. `ENOTTY`, explained, on a device without logging.
  @discardableResult
  public func startDMALogging(ranges: [IOVARange], pageSize: UInt64) throws(IommufdError) -> UInt64 {
    func refuse(_ errno: Errno, _ detail: String) -> IommufdError { Self.refusal(.dmaLoggingStart, errno, detail) }
    guard !ranges.isEmpty else { throw refuse(.invalidArgument, "no range to log") }
    guard ranges.count <= Self.maximumDMALoggingRanges else {
      throw refuse(.argListTooLong, "\(ranges.count) ranges, above the kernel's \(Self.maximumDMALoggingRanges)")
    }
    guard pageSize > 0, pageSize & (pageSize - 1) == 0 else {
      throw refuse(.invalidArgument, "page size 0x\(String(pageSize, radix: 16)) is not a power of two")
    }
    var encoded: [UInt8] = []
    for range in ranges {
      guard range.start <= range.last else { throw refuse(.invalidArgument, "the range \(range) starts after its last address") }
      guard range.start != 0 || range.last != .max else { throw refuse(.overflow, "the range \(range) is the whole IOVA space (2^64 bytes)") }
      let length = range.last - range.start &+ 1
      // The kernel's order: alignment, then iova + length, which overflows for a range
      // ending at 2^64 - 1.
      guard range.start & (pageSize - 1) == 0, length & (pageSize - 1) == 0 else {
        throw refuse(.invalidArgument, "the range \(range) is not aligned to the page size 0x\(String(pageSize, radix: 16))")
      }
      guard range.last != .max else { throw refuse(.overflow, "the range \(range) ends at the top of the IOVA space (iova + length overflows)") }
      encoded += range.start.littleEndianBytes + length.littleEndianBytes
    }
    let sorted = ranges.sorted { $0.start < $1.start }
    for (earlier, later) in zip(sorted, sorted.dropFirst()) where later.start <= earlier.last {
      throw refuse(.invalidArgument, "the ranges \(earlier) and \(later) overlap")
    }
    return try withScratchBuffer(count: encoded.count) { list throws(IommufdError) -> UInt64 in
      list.copyBytes(from: encoded)
      let pointer = UInt64(UInt(bitPattern: list.baseAddress))
      var control = pageSize.littleEndianBytes + UInt32(ranges.count).littleEndianBytes + UInt32(0).littleEndianBytes
      control += pointer.littleEndianBytes
      let answer = try setFeature(.dmaLoggingStart, data: control)
      return answer.loadLittleEndian(UInt64.self, at: 0)
    }
  }

  /// Stops device-side DMA logging (`DMA_LOGGING_STOP`).
  public func stopDMALogging() throws(IommufdError) {
    try setFeature(.dmaLoggingStop, data: [])
  }

  /// The pages the device wrote in `length` bytes at `iova` since the last report, at
  /// `pageSize` granularity (`DMA_LOGGING_REPORT`), cleared as they are reported. The page
  /// size must be a power of two of at least 4096 (EINVAL), the range must not overflow
  /// (EOVERFLOW); a bitmap above ``HWPageTable/maximumDirtyBitmapBytes`` is ENOMEM; all before
  /// the kernel is asked.
  public func dmaLoggingReport(iova: UInt64, length: UInt64, pageSize: UInt64) throws(IommufdError) -> DirtyBitmap {
    func refuse(_ errno: Errno, _ detail: String) -> IommufdError { Self.refusal(.dmaLoggingReport, errno, detail) }
    guard pageSize >= 4096, pageSize & (pageSize - 1) == 0 else {
      throw refuse(.invalidArgument, "page size 0x\(String(pageSize, radix: 16)) is not a power of two of at least 4096")
    }
    guard !iova.addingReportingOverflow(length).overflow else {
      throw refuse(.overflow, "iova 0x\(String(iova, radix: 16)) + length 0x\(String(length, radix: 16)) overflows")
    }
    let pageCount = length / pageSize + (length % pageSize == 0 ? 0 : 1)
    let wordCount = pageCount / 64 + (pageCount % 64 == 0 ? 0 : 1)
    guard wordCount <= UInt64(HWPageTable.maximumDirtyBitmapBytes / 8) else {
      throw refuse(.noMemory, "\(pageCount) pages need a bitmap above the \(HWPageTable.maximumDirtyBitmapBytes)-byte maximum")
    }
    var words = [UInt64](repeating: 0, count: max(1, Int(wordCount)))
    let count = words.count
    try withScratchBuffer(count: count * 8) { bitmap throws(IommufdError) in
      let pointer = UInt64(UInt(bitPattern: bitmap.baseAddress))
      _ = try featureRequest(
        .dmaLoggingReport, flags: CIOMMUFD_VFIO_DEVICE_FEATURE_GET,
        data: iova.littleEndianBytes + length.littleEndianBytes + pageSize.littleEndianBytes + pointer.littleEndianBytes)
      for index in 0..<count { words[index] = bitmap.load(fromByteOffset: index * 8, as: UInt64.self) }
    }
    return DirtyBitmap(base: iova, pageSize: pageSize, pageCount: Int(pageCount), words: words)
  }

  /// A request to `feature` refused before the kernel is asked.
  private static func refusal(_ feature: VFIODeviceFeature, _ errno: Errno, _ detail: String) -> IommufdError {
    IommufdError(.deviceFeature, errno, objects: [.init("feature", feature.description)], detail: detail)
  }
}
