import Iommufd
import SystemPackage

/// A model of QEMU's `edu` teaching device (vendor 0x1234, device 0x11e8), as QEMU 7.2
/// implements it, so the same edu driver runs on the simulator and in the lab.
///
/// BAR0 (1 MiB MMIO): 0x00 identification 0x010000ed; 0x04 liveness (reads back the
/// inverse of what was written); 0x08 factorial; 0x20 status (bit 0 computing, bit 7 raise
/// an interrupt after a factorial); 0x24 interrupt status; 0x60 raise interrupt; 0x64
/// acknowledge interrupt; 0x80 DMA source; 0x88 DMA destination; 0x90 DMA count; 0x98 DMA
/// command (bit 0 start, bit 1 device→RAM, bit 2 interrupt 0x100 when done). The DMA
/// buffer is 4 KiB at device address 0x40000; DMA addresses are masked to 28 bits.
///
/// Its INTx line is level-triggered, as QEMU's: raised while the interrupt status is not
/// 0 (and MSI is off), lowered when an acknowledgement clears the status.
///
/// Differences from QEMU, by design: a factorial completes at once, and a DMA does too
/// unless the device is made with a `dmaDelay` (QEMU's edu runs it on a 100 ms timer; a
/// driver polling the command register sees the same end state either way); a DMA range
/// outside the buffer, which makes QEMU abort the VM, is refused and recorded as a DMA
/// fault.
public final class SimulatedEduDevice: SimulatedPCIDevice, @unchecked Sendable {
  /// The device buffer (4 KiB at device address 0x40000).
  public private(set) var buffer = [UInt8](repeating: 0, count: 4096)
  private var liveness: UInt32 = 0
  private var factorial: UInt32 = 0
  private var status: UInt32 = 0
  private var interruptStatus: UInt32 = 0
  private var dmaSource: UInt64 = 0
  private var dmaDestination: UInt64 = 0
  private var dmaCount: UInt64 = 0
  private var dmaCommand: UInt64 = 0
  private let dmaMask: UInt64 = (1 << 28) - 1

  static let bufferStart: UInt64 = 0x40000

  /// How long a DMA takes: `nil` for at once, within the write that starts it.
  public let dmaDelay: Duration?

  /// Whether the device migrates (see ``init(dmaDelay:migratable:)``).
  public let isMigratable: Bool

  /// Creates an edu device in its power-on state. With `dmaDelay`, a DMA completes that
  /// long after the write that starts it (QEMU's edu takes 100 ms), on the simulated
  /// kernel's thread: until then the command register reads with bit 0 set.
  ///
  /// With `migratable`, the device differs from QEMU's edu, which has no migration driver:
  /// it migrates as a vfio-pci variant driver would migrate it (STOP_COPY, P2P, PRE_COPY),
  /// so a VMM's migration loop can be tested on it. PRE_COPY saves an 8-byte header
  /// (`EDUSTATE`) and the 4 KiB buffer; STOP_COPY adds the registers (48 bytes): 4152 bytes
  /// in all, which a resuming device takes whole (a stream of another length, or another
  /// header, is `EINVAL` when it loads). A DMA still scheduled is not saved.
  public init(dmaDelay: Duration? = nil, migratable: Bool = false) {
    self.dmaDelay = dmaDelay
    self.isMigratable = migratable
    super.init(
      vendorID: 0x1234, deviceID: 0x11e8, classCode: 0x00ff00, revision: 0x10,
      bars: [BAR(size: 1 << 20)], msiCount: 1, supportsReset: false)
    // As QEMU's edu has them: the subsystem ids of every QEMU PCI device (1af4:1100), and
    // an MSI capability that takes 64-bit addresses.
    config.replaceSubrange(0x2C..<0x30, with: [0xF4, 0x1A, 0x00, 0x11])
    config[0x42] |= 0x80
  }

  /// Reads an edu register (4 bytes, or 8 from 0x80); other sizes and offsets read all ones.
  public override func readBAR(_ bar: Int, offset: UInt64, count: Int, bus: SimulatedBus) -> [UInt8] {
    let value: UInt64
    if bar == 0 && count < 4 {
      value = 0  // below the device's 4-byte minimum access: QEMU answers 0 (an invalid access)
    } else if bar != 0 || (offset < 0x80 && count != 4) || (offset >= 0x80 && count != 4 && count != 8) {
      value = .max
    } else {
      switch offset {
      case 0x00: value = 0x0100_00ed
      case 0x04: value = UInt64(liveness)
      case 0x08: value = UInt64(factorial)
      case 0x20: value = UInt64(status)
      case 0x24: value = UInt64(interruptStatus)
      case 0x80: value = dmaSource
      case 0x88: value = dmaDestination
      case 0x90: value = dmaCount
      case 0x98: value = dmaCommand
      default: value = .max
      }
    }
    return (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0 % 8))) }
  }

  /// Writes an edu register; a write of the DMA command with bit 0 runs the DMA at once.
  public override func writeBAR(_ bar: Int, offset: UInt64, bytes: [UInt8], bus: SimulatedBus) {
    guard bar == 0 else { return }
    let count = bytes.count
    if (offset < 0x80 && count != 4) || (offset >= 0x80 && count != 4 && count != 8) { return }
    var value: UInt64 = 0
    for (index, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
    switch offset {
    case 0x04: liveness = ~UInt32(truncatingIfNeeded: value)
    case 0x08:
      guard status & 0x1 == 0 else { return }
      var n = UInt32(truncatingIfNeeded: value)
      var result: UInt32 = 1
      while n > 1 && result != 0 {  // from 34! on the 32-bit product is 0: stop there
        result = result &* n
        n -= 1
      }
      factorial = result
      if status & 0x80 != 0 { raise(0x1, bus) }
    case 0x20:
      if value & 0x80 != 0 { status |= 0x80 } else { status &= ~0x80 }
    case 0x60: raise(UInt32(truncatingIfNeeded: value), bus)
    case 0x64:
      interruptStatus &= ~UInt32(truncatingIfNeeded: value)
      if interruptStatus == 0 && !msiEnabled { bus.lowerInterrupt() }
    case 0x80: if dmaCommand & 0x1 == 0 { dmaSource = value }
    case 0x88: if dmaCommand & 0x1 == 0 { dmaDestination = value }
    case 0x90: if dmaCommand & 0x1 == 0 { dmaCount = value }
    case 0x98:
      guard value & 0x1 != 0, dmaCommand & 0x1 == 0 else { return }
      dmaCommand = value
      if let dmaDelay {
        bus.schedule(after: dmaDelay) { [self] bus in runDMA(bus) }
      } else {
        runDMA(bus)
      }
    default: return
    }
  }

  private func raise(_ value: UInt32, _ bus: SimulatedBus) {
    interruptStatus |= value
    if interruptStatus != 0 { bus.raiseInterrupt(index: msiEnabled ? 1 : 0) }
  }

  private func within(_ address: UInt64, _ count: UInt64) -> Bool {
    let end = address &+ count
    let bufferEnd = Self.bufferStart + UInt64(buffer.count)
    return address >= Self.bufferStart && address < bufferEnd && end > address && end >= Self.bufferStart
      && end < bufferEnd
  }

  private func runDMA(_ bus: SimulatedBus) {
    defer { dmaCommand &= ~0x1 }
    let toRAM = dmaCommand & 0x2 != 0
    let local = toRAM ? dmaSource : dmaDestination
    guard within(local, dmaCount) else {
      bus.recordFault(iova: toRAM ? dmaDestination : dmaSource, length: Int(clamping: dmaCount), isWrite: toRAM,
        reason: "edu: DMA of \(dmaCount) bytes at device address 0x\(String(local, radix: 16)) leaves its buffer (QEMU 7.2 aborts the VM)")
      return
    }
    let start = Int(local - Self.bufferStart)
    let count = Int(dmaCount)
    if toRAM {
      bus.dmaWrite(iova: dmaDestination & dmaMask, bytes: Array(buffer[start..<(start + count)]))
    } else if let bytes = bus.dmaRead(iova: dmaSource & dmaMask, count: count) {
      buffer.replaceSubrange(start..<(start + count), with: bytes)
    }
    if dmaCommand & 0x4 != 0 { raise(0x100, bus) }
  }

  // MARK: Migration (only when made migratable: QEMU's edu has none)

  static let stateHeader = Array("EDUSTATE".utf8)
  /// The header, the buffer, and the registers: 4 × 4 bytes and 4 × 8.
  static let stateSize = 8 + 4096 + 48

  /// `STOP_COPY | P2P | PRE_COPY` when migratable, else nil (ENOTTY, as QEMU's edu).
  public override var migrationFlags: UInt64? { isMigratable ? 0x7 : nil }

  /// 4152 bytes.
  public override var resumeCapacity: Int { Self.stateSize }

  /// The header and the buffer.
  public override func preCopyData() -> [UInt8] { Self.stateHeader + buffer }

  /// The registers.
  public override func stopCopyData() -> [UInt8] {
    func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    return bytes(liveness) + bytes(factorial) + bytes(status) + bytes(interruptStatus)
      + bytes(dmaSource) + bytes(dmaDestination) + bytes(dmaCount) + bytes(dmaCommand & ~0x1)
  }

  /// A stream whose first 8 bytes are not the header is refused at the write (EINVAL).
  public override func checkResumeWrite(_ data: [UInt8], previousCount: Int) -> Errno? {
    let checked = min(data.count, 8)
    return Array(data.prefix(checked)) == Array(Self.stateHeader.prefix(checked)) ? nil : .invalidArgument
  }

  /// Loads the header, buffer and registers: EINVAL unless the stream is exactly that.
  public override func loadState(_ data: [UInt8]) throws(Errno) {
    guard data.count == Self.stateSize, Array(data.prefix(8)) == Self.stateHeader else { throw .invalidArgument }
    func load<T: FixedWidthInteger>(_ type: T.Type, _ offset: Int) -> T {
      var value = T.zero
      for index in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: data[offset + index]) << (8 * index) }
      return value
    }
    buffer = Array(data[8..<4104])
    liveness = load(UInt32.self, 4104)
    factorial = load(UInt32.self, 4108)
    status = load(UInt32.self, 4112)
    interruptStatus = load(UInt32.self, 4116)
    dmaSource = load(UInt64.self, 4120)
    dmaDestination = load(UInt64.self, 4128)
    dmaCount = load(UInt64.self, 4136)
    dmaCommand = load(UInt64.self, 4144)
  }
}
