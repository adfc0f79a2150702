import Iommufd

/// A driver for QEMU's `edu` PCI device over the public API: the same code runs on the
/// kernel backend (in the lab, through a real IOMMU) and on the simulated kernel.
///
/// Registers are reached with region reads and writes (pread/pwrite of the device fd),
/// which both backends support. The device must be bound and attached before use.
public final class EduDriver: Sendable {
  /// The device.
  public let device: VFIODevice
  /// BAR0, the register block.
  public let registers: VFIORegionInfo
  /// PCI configuration space.
  public let config: VFIORegionInfo
  /// PCI configuration space, with its command register and capability lists.
  public let configSpace: PCIConfigSpace

  /// The value register 0x00 holds on every edu device.
  public static let identification: UInt32 = 0x0100_00ed
  /// Device address of the 4 KiB DMA buffer.
  public static let bufferAddress: UInt64 = 0x40000
  /// The largest DMA QEMU 7.2's edu accepts (its bound check is off by one): a DMA must
  /// also end before the buffer's last byte, at `bufferOffset + count <= 4095`.
  public static let maximumTransfer = 4095
  /// The interrupt status bit a finished DMA raises.
  public static let dmaInterrupt: UInt32 = 0x100

  /// Wraps a bound, attached edu `device`; fails if it does not identify as edu.
  public init(device: VFIODevice) throws(IommufdError) {
    self.device = device
    self.registers = try device.regionInfo(VFIOPCIRegion.bar(0))
    self.configSpace = try PCIConfigSpace(device)
    self.config = configSpace.region
    let id = try device.read(UInt32.self, region: registers, at: 0)
    guard id == Self.identification else {
      throw IommufdError(.regionRead, .noSuchAddressOrDevice, objects: [.region(0)],
        detail: "register 0x00 reads 0x\(String(id, radix: 16)), not the edu identification 0x10000ed")
    }
  }

  /// Reads a 32-bit register.
  public func read32(_ offset: UInt64) throws(IommufdError) -> UInt32 {
    try device.read(UInt32.self, region: registers, at: offset)
  }

  /// Writes a 32-bit register.
  public func write32(_ value: UInt32, _ offset: UInt64) throws(IommufdError) {
    try device.write(value, region: registers, at: offset)
  }

  /// Writes a 64-bit register (the DMA block at 0x80–0x98).
  public func write64(_ value: UInt64, _ offset: UInt64) throws(IommufdError) {
    try device.write(value, region: registers, at: offset)
  }

  /// Writes `value` to the liveness register and returns what it reads back (its inverse).
  public func livenessCheck(_ value: UInt32) throws(IommufdError) -> UInt32 {
    try write32(value, 0x04)
    return try read32(0x04)
  }

  /// Turns on bus mastering (PCI command bit 2): without it the device cannot DMA.
  public func enableBusMaster() throws(IommufdError) {
    try configSpace.updateCommand { $0.insert(.busMaster) }
  }

  /// Copies `count` bytes from `iova` into the device buffer at `bufferOffset`; a range
  /// past ``maximumTransfer`` is EINVAL, refused before the device is programmed.
  public func copyToDevice(from iova: UInt64, count: Int, bufferOffset: UInt64 = 0, interrupt: Bool = false) throws(IommufdError) {
    let local = try bufferAddress(count: count, bufferOffset: bufferOffset)
    try runDMA(source: iova, destination: local, count: count, toRAM: false, interrupt: interrupt)
  }

  /// Copies `count` bytes of the device buffer at `bufferOffset` to `iova`; a range past
  /// ``maximumTransfer`` is EINVAL, refused before the device is programmed.
  public func copyFromDevice(to iova: UInt64, count: Int, bufferOffset: UInt64 = 0, interrupt: Bool = false) throws(IommufdError) {
    let local = try bufferAddress(count: count, bufferOffset: bufferOffset)
    try runDMA(source: local, destination: iova, count: count, toRAM: true, interrupt: interrupt)
  }

  /// Waits (polling the command register, at most `attempts` times 10 ms) for a DMA to end;
  /// `attempts` below 1 is EINVAL.
  public func waitForDMA(attempts: Int = 500) throws(IommufdError) {
    try check(attempts: attempts)
    for _ in 0..<attempts {
      if try read32(0x98) & 0x1 == 0 { return }
      sleepBriefly()
    }
    throw IommufdError(.regionRead, .timedOut, objects: [.region(0)], detail: "the edu DMA did not finish")
  }

  /// Computes `n`! on the device (register 0x08; status bit 0 is set while it computes,
  /// which may take a while on QEMU, so this polls for it at most `attempts` times;
  /// `attempts` below 1 is EINVAL, before the device is touched).
  public func factorial(_ n: UInt32, attempts: Int = 500) throws(IommufdError) -> UInt32 {
    try check(attempts: attempts)
    try write32(n, 0x08)
    for _ in 0..<attempts {
      if try read32(0x20) & 0x1 == 0 { return try read32(0x08) }
      sleepBriefly()
    }
    throw IommufdError(.regionRead, .timedOut, objects: [.region(0)], detail: "the edu factorial did not finish")
  }

  /// The interrupt status register.
  public func interruptStatus() throws(IommufdError) -> UInt32 { try read32(0x24) }

  /// Raises an interrupt with `value` in the status register (register 0x60).
  public func raiseInterrupt(_ value: UInt32) throws(IommufdError) { try write32(value, 0x60) }

  /// Clears `value` from the interrupt status (register 0x64).
  public func acknowledgeInterrupt(_ value: UInt32) throws(IommufdError) { try write32(value, 0x64) }

  /// The device address of `count` bytes at `bufferOffset` in the DMA buffer, after
  /// checking that QEMU 7.2's edu takes the range (it aborts the VM otherwise).
  private func bufferAddress(count: Int, bufferOffset: UInt64) throws(IommufdError) -> UInt64 {
    guard count > 0, count <= Self.maximumTransfer else {
      throw IommufdError(.regionWrite, .invalidArgument, objects: [.region(0)],
        detail: "an edu DMA moves 1 to \(Self.maximumTransfer) bytes, not \(count)")
    }
    guard bufferOffset <= UInt64(Self.maximumTransfer - count) else {
      throw IommufdError(.regionWrite, .invalidArgument, objects: [.region(0)],
        detail: "bufferOffset 0x\(String(bufferOffset, radix: 16)) + count \(count) ends past byte \(Self.maximumTransfer) of the 4 KiB DMA buffer")
    }
    return Self.bufferAddress + bufferOffset
  }

  private func check(attempts: Int) throws(IommufdError) {
    guard attempts >= 1 else {
      throw IommufdError(.regionRead, .invalidArgument, objects: [.region(0)], detail: "attempts must be at least 1, not \(attempts)")
    }
  }

  private func runDMA(source: UInt64, destination: UInt64, count: Int, toRAM: Bool, interrupt: Bool) throws(IommufdError) {
    try write64(source, 0x80)
    try write64(destination, 0x88)
    try write64(UInt64(count), 0x90)
    try write64(1 | (toRAM ? 2 : 0) | (interrupt ? 4 : 0), 0x98)
    try waitForDMA()
  }

  private func sleepBriefly() {
    var request = timespec(tv_sec: 0, tv_nsec: 10_000_000)
    nanosleep(&request, nil)
  }
}

#if canImport(Glibc)
import Glibc
#endif
