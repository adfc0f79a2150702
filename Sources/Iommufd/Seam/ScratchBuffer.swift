/// Runs `body` with `count` zeroed, 8-byte aligned bytes that live only during the call:
/// the argument of an ioctl whose struct carries trailing data. Small buffers are on the
/// stack (`withUnsafeTemporaryAllocation`), so a call such as ``IOAS/iovaRanges()``
/// allocates nothing but its result.
@inline(__always)
func withScratchBuffer<R>(
  count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(IommufdError) -> R
) throws(IommufdError) -> R {
  try withUnsafeTemporaryAllocation(byteCount: max(count, 1), alignment: 8) { (buffer) throws(IommufdError) -> R in
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    return try body(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]))
  }
}
