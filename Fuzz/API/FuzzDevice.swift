import Iommufd
import IommufdSimulator

/// A device model whose register writes become calls of the `SimulatedBus` API with the
/// written values, so the bus is fuzzed through the simulator like a real model would use
/// it: DMA at any IOVA and of any count, faults of any length, interrupts of any index.
///
/// BAR1 is mostly 16 KiB of memory, often with an MSI-X table. BAR0 (4 KiB): 0x00, 0x08 and 0x10 hold arguments a, b and c; writing an operation to
/// 0x18 runs it: 0 `dmaRead(iova: a, count: b)`, 1 `dmaWrite(iova: a, bytes:)` (b bytes,
/// at most 64 KiB), 2 `recordFault(iova: a, length: b, isWrite: c & 1, reason:)`,
/// 3 `raiseInterrupt(index: a, vector: b)`, 4: reads then answer with c & 0xFFFF bytes
/// whatever their size, 5 `lowerInterrupt()`, 6 `schedule(after: c ns)` of
/// `raiseInterrupt(index: a, vector: b)`. Reads return the arguments.
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
      case 5: bus.lowerInterrupt()
      case 6:
        let index = Int(truncatingIfNeeded: a)
        bus.schedule(after: .nanoseconds(Int64(bitPattern: c % 2_000_000))) { bus in bus.raiseInterrupt(index: index, vector: b) }
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
    let bars: [SimulatedPCIDevice.BAR?] = (0..<(hostile(20) ? rng.below(9) : 2)).map { index in
      if index == 0 && !hostile(20) { return SimulatedPCIDevice.BAR(size: 4096) }
      if index == 1 && !hostile(30) { return .memory(size: 0x4000) }  // mmap-able, and room for an MSI-X table
      if rng.chance(20) { return nil }
      let size: UInt64 = hostile(50) ? rng.element([0, 1, 3, .max, 1 << 63, 4095, UInt64(UInt32.max) &+ 1]) ?? 0 : 4096
      return rng.chance(30) ? .memory(size: size, mappable: rng.bool()) : SimulatedPCIDevice.BAR(size: size, mappable: rng.bool())
    }
    let msiCount = hostile(30) ? rng.hostileInt() : rng.element([0, 1, 2, 32]) ?? 1
    let msixValues =
      hostile(30)
      ? (rng.hostileInt(), rng.hostileInt(), rng.hostileU64(), rng.chance(50) ? rng.hostileInt() : nil, rng.chance(50) ? rng.hostileU64() : nil)
      : (rng.element([1, 8, 64]) ?? 8, 1, UInt64(rng.below(4)) * 0x100, nil, nil)
    let msix = rng.chance(50)
      ? SimulatedPCIDevice.MSIX(
        vectors: msixValues.0, tableBAR: msixValues.1, tableOffset: msixValues.2, pbaBAR: msixValues.3, pbaOffset: msixValues.4,
        dynamicAllocation: rng.bool())
      : nil
    let reset = rng.bool()
    let regions = (0..<rng.below(3)).map { _ in
      hostile(50) ? IOVARange(start: rng.hostileU64(), last: rng.hostileU64()) : IOVARange(start: 0xFEE0_0000, last: 0xFEEF_FFFF)
    }
    let pageRequests = rng.bool()
    let barsText = bars.map { $0.map { "0x\(hex($0.size))\($0.isMemory ? " memory" : "")\($0.mappable ? "" : " not mappable")" } ?? "nil" }
    let text = "vendor 0x\(hex(UInt64(vendor))) device 0x\(hex(UInt64(device))) class 0x\(hex(UInt64(classCode))) revision \(revision) "
      + "bars \(barsText) msi \(msiCount) msix \(msix.map { "\($0)" } ?? "none") reset \(reset) reserved \(regions) page requests \(pageRequests)"
    let make = {
      let made = FuzzDevice(
        vendorID: vendor, deviceID: device, classCode: classCode, revision: revision, bars: bars, msiCount: msiCount,
        msix: msix, supportsReset: reset, reservedRegions: regions)
      made.supportsPageRequests = pageRequests
      return made
    }
    return (make, text)
  }
}
