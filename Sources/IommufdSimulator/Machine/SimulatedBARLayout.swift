import Iommufd

/// Where the simulated machine's firmware put a device's BARs, in BAR order, each aligned to
/// its size: 32-bit BARs below 4 GiB from 0x80000000 + (N mod 8) × 256 MiB for device N,
/// 64-bit BARs from 256 GiB + N × 1 TiB. A BAR that is empty, not a power of two, over
/// 1 TiB, or 32-bit and not fitting below 4 GiB gets no address (the kernel leaves such a
/// BAR unassigned). The same layout fills the device's BAR registers, sysfs `resource`,
/// and vfio-pci's virtual BARs.
struct SimulatedBARLayout {
  /// The start address of each BAR, by index 0–5; nil for none.
  let starts: [UInt64?]
  private let device: SimulatedPCIDevice

  init(device: SimulatedPCIDevice, number: Int) {
    self.device = device
    var next32 = UInt64(0x8000_0000) + UInt64(max(0, number) % 8) * 0x1000_0000
    var next64 = UInt64(0x40_0000_0000) + UInt64(max(0, number) % 0x100_0000) * 0x100_0000_0000
    var starts: [UInt64?] = []
    for index in 0..<6 {
      guard let bar = device.bars[index], bar.size > 0, bar.size.nonzeroBitCount == 1, bar.size <= 1 << 40,
        !(index > 0 && device.is64Bit(bar: index - 1))
      else {
        starts.append(nil)
        continue
      }
      if device.is64Bit(bar: index) {
        let start = (next64 + bar.size - 1) & ~(bar.size - 1)
        next64 = start + bar.size
        starts.append(start)
      } else {
        let start = (next32 + bar.size - 1) & ~(bar.size - 1)
        guard start + bar.size <= 1 << 32 else {
          starts.append(nil)
          continue
        }
        next32 = start + bar.size
        starts.append(start)
      }
    }
    self.starts = starts
  }

  /// The register's low flag bits: bit 2 for a 64-bit BAR, bit 3 for prefetchable memory.
  func flagBits(_ index: Int) -> UInt32 {
    guard let bar = device.bars[index] else { return 0 }
    return (bar.isPrefetchable ? 0x8 : 0) | (device.is64Bit(bar: index) ? 0x4 : 0)
  }

  /// The resource flags sysfs prints: IORESOURCE_MEM and SIZEALIGN, PREFETCH, MEM_64, and
  /// the register's low bits (`decode_bar`).
  func resourceFlags(_ index: Int) -> UInt64 {
    guard let bar = device.bars[index] else { return 0 }
    var flags: UInt64 = 0x40200 | UInt64(flagBits(index))
    if bar.isPrefetchable { flags |= 0x2000 }
    if device.is64Bit(bar: index) { flags |= 0x100000 }
    return flags
  }

  /// Writes the BAR registers as firmware leaves them (address and flag bits) into the
  /// device's config space.
  func program() {
    for index in 0..<6 {
      guard let start = starts[index] else { continue }
      let low = UInt32(truncatingIfNeeded: start) & ~0xF | flagBits(index)
      put(low, at: 0x10 + 4 * index)
      if device.is64Bit(bar: index) { put(UInt32(truncatingIfNeeded: start >> 32), at: 0x14 + 4 * index) }
    }
  }

  private func put(_ value: UInt32, at offset: Int) {
    for byte in 0..<4 { device.config[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte))) }
  }
}
