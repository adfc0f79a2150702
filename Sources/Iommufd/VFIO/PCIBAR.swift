/// A base address register of a PCI function, as config space describes it: what it
/// decodes, where, and how much.
public struct PCIBAR: Hashable, Sendable {
  /// What the BAR decodes.
  public enum Kind: Hashable, Sendable {
    /// I/O space.
    case io
    /// Memory below 4 GiB (one register).
    case memory32
    /// Memory anywhere (two registers: this one and the next).
    case memory64
  }

  /// The BAR number, 0–5 (a 64-bit BAR also takes the next register).
  public var index: Int
  /// What it decodes.
  public var kind: Kind
  /// Whether the memory is prefetchable.
  public var isPrefetchable: Bool
  /// The address in the register: under vfio-pci, the one the host's firmware assigned
  /// until the user writes the register (vfio-pci keeps the register to itself, so a write
  /// changes only what is read back, masked to the size), and what the user wrote after.
  public var address: UInt64
  /// The size in bytes: a power of two.
  public var size: UInt64

  /// Creates the value.
  public init(index: Int, kind: Kind, isPrefetchable: Bool, address: UInt64, size: UInt64) {
    self.index = index
    self.kind = kind
    self.isPrefetchable = isPrefetchable
    self.address = address
    self.size = size
  }
}

extension PCIConfigSpace {
  /// Sizes BAR `index` as firmware does: writes all ones to its register(s), reads back
  /// the mask the function answers with, and restores the register(s), also when a step
  /// fails. `nil` for a BAR the function does not implement (the register reads back 0) and
  /// for the register that holds the upper half of a 64-bit BAR. vfio-pci virtualizes the
  /// BAR registers, so this never moves the device. An index outside 0–5 is EINVAL; a
  /// 64-bit BAR in register 5 (no register for its upper half) is EBADMSG.
  public func bar(_ index: Int) throws(IommufdError) -> PCIBAR? {
    guard (0..<6).contains(index) else {
      throw IommufdError(.regionRead, .invalidArgument, objects: [.region(VFIOPCIRegion.config)], detail: "BAR index \(index) is not 0–5")
    }
    // Register `index` is an upper half if the BARs before it, walked from 0, end there.
    var register = 0
    while register < index {
      let value = try read(UInt32.self, at: UInt64(0x10 + 4 * register))
      register += value & 0x1 == 0 && value & 0x6 == 0x4 ? 2 : 1
    }
    guard register == index else { return nil }
    let offset = UInt64(0x10 + 4 * index)
    let original = try read(UInt32.self, at: offset)
    let isIO = original & 0x1 != 0
    let is64Bit = !isIO && original & 0x6 == 0x4
    if is64Bit && index == 5 {
      throw IommufdError(.regionRead, .badMessage, objects: [.region(VFIOPCIRegion.config)], detail: "BAR 5 says 64-bit, with no register after it")
    }
    let originalHigh = is64Bit ? try read(UInt32.self, at: offset + 4) : 0
    let answer: UInt32
    let answerHigh: UInt32
    do throws(IommufdError) {
      try write(UInt32.max, at: offset)
      if is64Bit { try write(UInt32.max, at: offset + 4) }
      answer = try read(UInt32.self, at: offset)
      answerHigh = is64Bit ? try read(UInt32.self, at: offset + 4) : 0
    } catch {
      try? write(original, at: offset)
      if is64Bit { try? write(originalHigh, at: offset + 4) }
      throw error
    }
    try write(original, at: offset)
    if is64Bit { try write(originalHigh, at: offset + 4) }
    let flagBits: UInt64 = isIO ? 0x3 : 0xF
    let low = UInt64(answer) & ~flagBits
    guard low != 0 || (is64Bit && answerHigh != 0) else { return nil }  // nothing decodes: no BAR
    let mask = is64Bit ? UInt64(answerHigh) << 32 | low : low
    // The lowest bit set in the mask is the size; I/O BARs decode at most 16 bits.
    let size = UInt64(1) << UInt64(mask.trailingZeroBitCount)
    let address = (UInt64(originalHigh) << 32 | UInt64(original)) & ~flagBits
    return PCIBAR(
      index: index, kind: isIO ? .io : (is64Bit ? .memory64 : .memory32), isPrefetchable: !isIO && original & 0x8 != 0,
      address: address, size: size)
  }

  /// Every BAR the function implements, sized (``bar(_:)``), in register order; the
  /// register after a 64-bit BAR is its upper half, not a BAR.
  public func bars() throws(IommufdError) -> [PCIBAR] {
    var result: [PCIBAR] = []
    var index = 0
    while index < 6 {
      let bar = try self.bar(index)
      if let bar { result.append(bar) }
      index += bar?.kind == .memory64 ? 2 : 1
    }
    return result
  }
}
