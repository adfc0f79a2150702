/// Runs `body` with `count` zeroed, 8-byte aligned bytes that live only during the call:
/// the argument of an ioctl whose struct carries trailing data.
func withScratchBuffer<R>(
  count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(IommufdError) -> R
) throws(IommufdError) -> R {
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 8)
  defer { buffer.deallocate() }
  buffer.initializeMemory(as: UInt8.self, repeating: 0)
  return try body(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]))
}
