import Iommufd
import SystemPackage

/// A PCI device model for the simulated kernel: what vfio-pci would expose of it.
///
/// Subclass and override the register handlers. Handlers run under the simulated kernel's
/// lock and reach memory only through the ``SimulatedBus`` they are given, which
/// translates IOVAs through the IOAS the device is attached to, exactly where mapped with
/// the right permission; anything else is recorded as a DMA fault.
open class SimulatedPCIDevice: @unchecked Sendable {
  /// A BAR of the device.
  public struct BAR: Sendable {
    /// Size in bytes (a power of two).
    public var size: UInt64
    /// Whether vfio-pci would report it mmap-able. The simulator cannot trap loads and
    /// stores to mapped memory, so mmap of a simulated BAR is refused (EINVAL) either way.
    public var mappable: Bool
    /// Creates a BAR description.
    public init(size: UInt64, mappable: Bool = true) {
      self.size = size
      self.mappable = mappable
    }
  }

  /// PCI configuration space (256 bytes: conventional PCI); a shorter value set here is
  /// padded with zeros to 256 bytes.
  public var config: [UInt8] {
    didSet { if config.count < 256 { config += [UInt8](repeating: 0, count: 256 - config.count) } }
  }
  /// The BARs, by index 0–5; `nil` for an absent BAR.
  public let bars: [BAR?]
  /// The MSI vector count (0: no MSI capability; a negative count given is taken as 0).
  public let msiCount: Int
  /// Whether the device has a function reset vfio-pci can use.
  public let supportsReset: Bool
  /// The IOMMU reserved regions a device on this platform brings to an IOAS when it
  /// attaches (on x86 the MSI window 0xfee00000–0xfeefffff).
  public let reservedRegions: [IOVARange]

  /// Creates a device with `vendorID`/`deviceID`, class code and BARs.
  public init(
    vendorID: UInt16, deviceID: UInt16, classCode: UInt32, revision: UInt8 = 0, bars: [BAR?],
    msiCount: Int = 1, supportsReset: Bool = false,
    reservedRegions: [IOVARange] = [IOVARange(start: 0xFEE0_0000, last: 0xFEEF_FFFF)]
  ) {
    let msiCount = max(0, msiCount)
    var config = [UInt8](repeating: 0, count: 256)
    func put16(_ value: UInt16, _ offset: Int) {
      config[offset] = UInt8(value & 0xff)
      config[offset + 1] = UInt8(value >> 8)
    }
    put16(vendorID, 0)
    put16(deviceID, 2)
    config[8] = revision
    config[9] = UInt8(classCode & 0xff)
    config[10] = UInt8((classCode >> 8) & 0xff)
    config[11] = UInt8((classCode >> 16) & 0xff)
    config[4] = 0x03  // command: I/O and memory decoding on, as firmware and vfio-pci leave it
    config[5] = 0x01  // command: SERR# enable, as the lab's firmware leaves it
    config[0x3d] = 1  // interrupt pin INTA
    if msiCount > 0 {
      config[6] |= 0x10  // status: capability list
      config[0x34] = 0x40
      config[0x40] = 0x05  // MSI capability, last in the list
      config[0x42] = UInt8((msiCount.trailingZeroBitCount & 0x7) << 1)  // multiple message capable
    }
    self.config = config
    var padded = bars
    while padded.count < 6 { padded.append(nil) }
    self.bars = padded
    self.msiCount = msiCount
    self.supportsReset = supportsReset
    self.reservedRegions = reservedRegions
  }

  /// PCI page requests (PRI): the device may be attached to a fault-capable HWPT, and there
  /// a DMA to an address it cannot use becomes a page request in the HWPT's fault queue
  /// (the DMA itself fails; whoever drives the device repeats it once the request is
  /// answered). Off by default, as on edu. Set it before the device is handed to a
  /// ``SimulatedKernel``.
  public var supportsPageRequests = false

  /// Whether bus mastering (PCI command bit 2) is on: without it the device cannot DMA.
  public var busMasterEnabled: Bool { config[4] & 0x4 != 0 }

  /// Whether MSI is enabled in the MSI capability (message control bit 0).
  public var msiEnabled: Bool { msiCount > 0 && config[0x42] & 0x1 != 0 }

  /// Reads `count` bytes of BAR `bar` at `offset`. Default: zeros.
  open func readBAR(_ bar: Int, offset: UInt64, count: Int, bus: SimulatedBus) -> [UInt8] {
    [UInt8](repeating: 0, count: count)
  }

  /// Writes `bytes` to BAR `bar` at `offset`. Default: ignored.
  open func writeBAR(_ bar: Int, offset: UInt64, bytes: [UInt8], bus: SimulatedBus) {}

  /// Writes configuration space. Default: stores the bytes that fall in it, except the
  /// read-only ids (bytes 0–3).
  open func writeConfig(offset: Int, bytes: [UInt8]) {
    for (index, byte) in bytes.enumerated() {
      let (position, overflow) = offset.addingReportingOverflow(index)
      if overflow || position >= config.count { break }
      if position >= 4 { config[position] = byte }
    }
  }

  /// Resets the device to its power-on state. Default: clears the command register.
  open func reset() {
    config[4] = 0
    config[5] = 0
  }
}

/// What a device model reaches from its handlers: DMA through the IOMMU and interrupts.
public struct SimulatedBus {
  let kernel: SimulatedKernel.State
  /// The device's cdev number.
  let device: Int

  /// Reads `count` bytes the device fetches from `iova`; `nil` (and a recorded fault) when
  /// any byte is not mapped readable for the device, or `count` is negative.
  public func dmaRead(iova: UInt64, count: Int) -> [UInt8]? {
    kernel.dma(device: device, iova: iova, count: count, write: nil)
  }

  /// Writes `bytes` the device stores at `iova`; `false` (and a recorded fault) when any
  /// byte is not mapped writable for the device. Nothing is written then.
  @discardableResult
  public func dmaWrite(iova: UInt64, bytes: [UInt8]) -> Bool {
    kernel.dma(device: device, iova: iova, count: bytes.count, write: bytes) != nil
  }

  /// Records a DMA the device model itself refused (for example outside its own buffer).
  public func recordFault(iova: UInt64, length: Int, isWrite: Bool, reason: String) {
    kernel.recordFault(device: device, iova: iova, length: length, isWrite: isWrite, reason: reason)
  }

  /// Signals vector `vector` of IRQ index `index`, if an eventfd is assigned to it.
  public func raiseInterrupt(index: Int, vector: Int = 0) {
    kernel.raiseInterrupt(device: device, index: index, vector: vector)
  }
}

/// A device DMA the simulated IOMMU refused.
public struct SimulatedDMAFault: Hashable, Sendable {
  /// The device's cdev number (`vfioN`).
  public var device: Int
  /// The first IOVA of the access.
  public var iova: UInt64
  /// The length of the access.
  public var length: Int
  /// Whether the device was writing.
  public var isWrite: Bool
  /// Why: not attached, bus mastering off, not mapped, or mapped without the permission.
  public var reason: String
}
