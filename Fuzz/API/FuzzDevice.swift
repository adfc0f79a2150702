import Iommufd
import IommufdSimulator

/// A device model whose register writes become calls of the `SimulatedBus` API with the
/// written values, so the bus is fuzzed through the simulator like a real model would use
/// it: DMA at any IOVA and of any count, faults of any length, interrupts of any index.
///
/// BAR0 (4 KiB): 0x00, 0x08 and 0x10 hold arguments a, b and c; writing an operation to
/// 0x18 runs it: 0 `dmaRead(iova: a, count: b)`, 1 `dmaWrite(iova: a, bytes:)` (b bytes,
/// at most 64 KiB), 2 `recordFault(iova: a, length: b, isWrite: c & 1, reason:)`,
/// 3 `raiseInterrupt(index: a, vector: b)`, 4: reads then answer with c & 0xFFFF bytes
/// whatever their size. Reads return the arguments.
///
/// Counts between 1 MiB and 2^40 are raised to 2^46: a simulator that allocated them would
/// then be refused, not exhaust the machine's memory.
final class FuzzDevice: SimulatedPCIDevice, @unchecked Sendable {
  private var arguments: [UInt64] = [0, 0, 0]
  private var wrongSizedReplies = false

  /// Reads the arguments (or answers with the wrong number of bytes, after operation 4).
  override func readBAR(_ bar: Int, offset: UInt64, count: Int, bus: SimulatedBus) -> [UInt8] {
    if wrongSizedReplies { return [UInt8](repeating: 0x5A, count: Int(arguments[2] & 0xFFFF)) }
    let value = offset < 0x18 ? arguments[Int(offset / 8)] : 0
    return (0..<max(0, min(count, 1 << 16))).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0 % 8))) }
  }

  /// Stores an argument, or runs an operation with them.
  override func writeBAR(_ bar: Int, offset: UInt64, bytes: [UInt8], bus: SimulatedBus) {
    var value: UInt64 = 0
    for (index, byte) in bytes.prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
    switch offset {
    case 0x00, 0x08, 0x10: arguments[Int(offset / 8)] = value
    case 0x18:
      let (a, b, c) = (arguments[0], Self.safe(Int(truncatingIfNeeded: arguments[1])), arguments[2])
      wrongSizedReplies = false
      switch value {
      case 0: _ = bus.dmaRead(iova: a, count: b)
      case 1: _ = bus.dmaWrite(iova: a, bytes: [UInt8](repeating: 0xA5, count: max(0, min(b, 1 << 16))))
      case 2: bus.recordFault(iova: a, length: b, isWrite: c & 1 != 0, reason: "fuzz")
      case 3: bus.raiseInterrupt(index: Int(truncatingIfNeeded: a), vector: b)
      case 4: wrongSizedReplies = true
      default: break
      }
    default: break
    }
  }

  /// `count`, or 2^46 in place of one the machine could actually allocate.
  static func safe(_ count: Int) -> Int {
    count > 1 << 20 && count < 1 << 40 ? 1 << 46 : count
  }
}

extension Fuzzer {
  /// The fuzz device, described with (sometimes hostile) values; the description for the
  /// call that makes it.
  func makeFuzzDevice() -> (() -> FuzzDevice, String) {
    let vendor = rng.hostileU16()
    let device = rng.hostileU16()
    let classCode = rng.hostileU32()
    let revision = rng.hostileU8()
    let bars: [SimulatedPCIDevice.BAR?] = (0..<(hostile(20) ? rng.below(9) : 1)).map { index in
      if index == 0 && !hostile(20) { return SimulatedPCIDevice.BAR(size: 4096) }
      if rng.chance(20) { return nil }
      let size: UInt64 = hostile(50) ? rng.element([0, 1, 3, .max, 1 << 63, 4095, UInt64(UInt32.max) &+ 1]) ?? 0 : 4096
      return SimulatedPCIDevice.BAR(size: size, mappable: rng.bool())
    }
    let msiCount = hostile(30) ? rng.hostileInt() : rng.element([0, 1, 2, 32]) ?? 1
    let reset = rng.bool()
    let regions = (0..<rng.below(3)).map { _ in
      hostile(50) ? IOVARange(start: rng.hostileU64(), last: rng.hostileU64()) : IOVARange(start: 0xFEE0_0000, last: 0xFEEF_FFFF)
    }
    let pageRequests = rng.bool()
    let barsText = bars.map { $0.map { "0x\(hex($0.size))\($0.mappable ? "" : " not mappable")" } ?? "nil" }
    let text = "vendor 0x\(hex(UInt64(vendor))) device 0x\(hex(UInt64(device))) class 0x\(hex(UInt64(classCode))) revision \(revision) "
      + "bars \(barsText) msi \(msiCount) reset \(reset) reserved \(regions) page requests \(pageRequests)"
    let make = {
      let made = FuzzDevice(
        vendorID: vendor, deviceID: device, classCode: classCode, revision: revision, bars: bars, msiCount: msiCount,
        supportsReset: reset, reservedRegions: regions)
      made.supportsPageRequests = pageRequests
      return made
    }
    return (make, text)
  }
}
