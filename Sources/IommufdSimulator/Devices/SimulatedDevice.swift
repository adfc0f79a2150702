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
    /// stores to mapped memory, so a register BAR (``isMemory`` false) is not mmap-able in
    /// the simulator either way (its region info lacks `VFIO_REGION_INFO_FLAG_MMAP`).
    public var mappable: Bool
    /// Plain memory: reads return what was written and no access has a side effect (a
    /// frame buffer, a device's RAM window, a page holding an MSI-X table). The simulator
    /// backs it with shared memory: region reads and writes reach that memory (the device
    /// model's ``SimulatedPCIDevice/readBAR(_:offset:count:bus:)`` is not called), the
    /// model sees it through ``SimulatedPCIDevice/memory(ofBAR:)``, and with ``mappable`` it
    /// can be mmapped, the mapping sharing the same memory. At most 1 GiB; a larger or
    /// empty memory BAR gets no memory and acts as a register BAR.
    public var isMemory: Bool
    /// Decodes 64-bit addresses: the BAR register after it holds the upper half, so that
    /// index must have no BAR of its own (else, and in register 5, the BAR is 32-bit).
    public var is64Bit = false
    /// The memory is prefetchable (bit 3 of the register).
    public var isPrefetchable = false

    /// Creates a BAR description: registers handled by the device model.
    public init(size: UInt64, mappable: Bool = true) {
      self.size = size
      self.mappable = mappable
      self.isMemory = false
    }

    /// A BAR of plain memory (see ``isMemory``), mmap-able unless `mappable` is false.
    public static func memory(size: UInt64, mappable: Bool = true) -> BAR {
      var bar = BAR(size: size, mappable: mappable)
      bar.isMemory = true
      return bar
    }
  }

  /// Where a device's MSI-X table and pending-bit array (PBA) live.
  public struct MSIX: Sendable, Hashable {
    /// The table size: 1 to 2048 vectors.
    public private(set) var vectors: Int
    /// The BAR holding the table (BIR).
    public private(set) var tableBAR: Int
    /// The table's offset in its BAR (8-byte aligned); 16 bytes per vector.
    public private(set) var tableOffset: UInt64
    /// The BAR holding the PBA.
    public private(set) var pbaBAR: Int
    /// The PBA's offset in its BAR (8-byte aligned); one bit per vector.
    public private(set) var pbaOffset: UInt64
    /// Whether vectors can be added while MSI-X is enabled (`pci_msix_can_alloc_dyn`: the
    /// IRQ domain supports it, as x86's does): then `VFIO_IRQ_INFO_NORESIZE` is clear.
    public private(set) var dynamicAllocation: Bool

    /// Describes an MSI-X table of `vectors` entries at `tableOffset` in BAR `tableBAR`,
    /// with its PBA at `pbaOffset` in BAR `pbaBAR` (the table's by default; by default just
    /// after the table, 8-byte aligned). `nil` for a count outside 1...2048, a BAR outside
    /// 0...5, or an offset that is not 8-byte aligned or does not fit the 32-bit register.
    public init?(
      vectors: Int, tableBAR: Int, tableOffset: UInt64 = 0, pbaBAR: Int? = nil, pbaOffset: UInt64? = nil,
      dynamicAllocation: Bool = true
    ) {
      guard (1...2048).contains(vectors), tableOffset % 8 == 0, tableOffset <= 0xFFFF_FFF8 else { return nil }
      let pbaBAR = pbaBAR ?? tableBAR
      let pbaOffset = pbaOffset ?? (tableOffset + UInt64(vectors) * 16)  // 8-byte aligned already
      guard (0..<6).contains(tableBAR), (0..<6).contains(pbaBAR), pbaOffset % 8 == 0, pbaOffset <= 0xFFFF_FFF8
      else { return nil }
      self.vectors = vectors
      self.tableBAR = tableBAR
      self.tableOffset = tableOffset
      self.pbaBAR = pbaBAR
      self.pbaOffset = pbaOffset
      self.dynamicAllocation = dynamicAllocation
    }

    /// The table's bytes in its BAR.
    var tableRange: Range<UInt64> { tableOffset..<(tableOffset + UInt64(vectors) * 16) }
    /// The PBA's bytes in its BAR (whole 8-byte words).
    var pbaRange: Range<UInt64> { pbaOffset..<(pbaOffset + UInt64((vectors + 63) / 64) * 8) }
  }

  /// PCI configuration space (256 bytes: conventional PCI); a shorter value set here is
  /// padded with zeros to 256 bytes. Without run-time exclusivity checks: every DMA reads
  /// the command register, and the simulated kernel reads and writes it only under its lock.
  @exclusivity(unchecked) public var config: [UInt8] {
    didSet { if config.count < 256 { config += [UInt8](repeating: 0, count: 256 - config.count) } }
  }
  /// The BARs, by index 0–5; `nil` for an absent BAR.
  public let bars: [BAR?]
  /// The MSI vector count (0: no MSI capability; a negative count given is taken as 0).
  public let msiCount: Int
  /// The MSI-X table, if the device has one (its capability follows MSI's in config space).
  public let msix: MSIX?
  /// The shared memory behind each memory BAR, by index.
  let barMemory: [SimulatedBARMemory?]
  /// Whether the device has a function-level reset of its own (`flr` in `reset_method`),
  /// which `VFIODevice.reset()` uses. A lone function behind a ``SimulatedRootPort`` has a
  /// bus reset besides; a device with neither fails a reset with `EINVAL`.
  public let supportsReset: Bool
  /// The IOMMU reserved regions a device on this platform brings to an IOAS when it
  /// attaches (on x86 the MSI window 0xfee00000–0xfeefffff).
  public let reservedRegions: [IOVARange]

  /// Creates a device with `vendorID`/`deviceID`, class code and BARs; with `msix`, an
  /// MSI-X capability whose table and PBA lie in the BARs it names (an `msix` whose table or
  /// PBA does not fit in its BAR is left out: ``msix`` is `nil` then).
  public init(
    vendorID: UInt16, deviceID: UInt16, classCode: UInt32, revision: UInt8 = 0, bars: [BAR?],
    msiCount: Int = 1, msix: MSIX? = nil, supportsReset: Bool = false,
    reservedRegions: [IOVARange] = [IOVARange(start: 0xFEE0_0000, last: 0xFEEF_FFFF)]
  ) {
    var padded = Array(bars.prefix(6))
    while padded.count < 6 { padded.append(nil) }
    let msix = msix.flatMap { msix -> MSIX? in
      guard let table = padded[msix.tableBAR], let pba = padded[msix.pbaBAR],
        msix.tableRange.upperBound <= table.size, msix.pbaRange.upperBound <= pba.size
      else { return nil }
      return msix
    }
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
      config[0x40] = 0x05  // MSI capability
      config[0x42] = UInt8((msiCount.trailingZeroBitCount & 0x7) << 1)  // multiple message capable
    }
    if let msix {
      let position = msiCount > 0 ? 0x50 : 0x40
      config[6] |= 0x10
      if msiCount > 0 { config[0x41] = UInt8(position) } else { config[0x34] = UInt8(position) }
      config[position] = 0x11  // MSI-X capability, last in the list
      put16(UInt16(msix.vectors - 1), position + 2)  // table size - 1; enable and function mask clear
      let table = UInt32(msix.tableOffset) | UInt32(msix.tableBAR)
      let pba = UInt32(msix.pbaOffset) | UInt32(msix.pbaBAR)
      for byte in 0..<4 {
        config[position + 4 + byte] = UInt8(truncatingIfNeeded: table >> (8 * UInt32(byte)))
        config[position + 8 + byte] = UInt8(truncatingIfNeeded: pba >> (8 * UInt32(byte)))
      }
    }
    self.config = config
    self.bars = padded
    self.barMemory = padded.map { bar in bar.flatMap { $0.isMemory ? SimulatedBARMemory(size: $0.size) : nil } }
    self.msiCount = msiCount
    self.msix = msix
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

  /// The config-space offset of the MSI-X capability, if the device has one.
  var msixCapability: Int? { msix == nil ? nil : (msiCount > 0 ? 0x50 : 0x40) }

  /// Whether MSI-X is enabled (message control bit 15: vfio-pci enables it on the device
  /// when vectors are first set up through `VFIO_DEVICE_SET_IRQS`).
  public var msixEnabled: Bool { msixCapability.map { config[$0 + 3] & 0x80 != 0 } ?? false }

  /// Whether BAR `bar` decodes 64-bit addresses: it says so, and the next register is free.
  func is64Bit(bar: Int) -> Bool {
    guard (0..<5).contains(bar), let description = bars[bar], description.is64Bit else { return false }
    return bars[bar + 1] == nil
  }

  /// Whether BAR `bar` can be mmapped in the simulator: a mappable memory BAR with memory.
  func isMappable(bar: Int) -> Bool {
    guard (0..<6).contains(bar), let description = bars[bar] else { return false }
    return description.mappable && barMemory[bar] != nil
  }

  /// The MSI-X table's bytes if it lies in BAR `bar`.
  func msixTable(inBAR bar: Int) -> Range<UInt64>? {
    guard let msix, msix.tableBAR == bar else { return nil }
    return msix.tableRange
  }

  /// The shared memory behind memory BAR `bar` (see ``BAR/isMemory``), for the device
  /// model's own reads and writes; `nil` for a register BAR or an absent one. Valid while
  /// the device lives; access it from the model's handlers (under the simulated kernel's
  /// lock) or with the device otherwise idle.
  public func memory(ofBAR bar: Int) -> UnsafeMutableRawBufferPointer? {
    guard (0..<6).contains(bar), let memory = barMemory[bar] else { return nil }
    return UnsafeMutableRawBufferPointer(start: memory.base, count: memory.size)
  }

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

  // MARK: Migration (a vfio-pci variant driver's `mig_ops`)

  /// The migration flags (`VFIO_MIGRATION_*`), or nil (the default) for a device without
  /// migration, as plain vfio-pci has none: its migration features are ENOTTY. With flags,
  /// the device migrates as a vfio-pci variant driver would migrate it (mlx5-vfio-pci and
  /// the like): the simulator runs the kernel's state machine over the hooks below, starting
  /// in RUNNING, and a reset or the device's last close returns it to RUNNING.
  open var migrationFlags: UInt64? { nil }

  /// The migration state (`migration_get_state`).
  public internal(set) var migrationState = VFIOMigrationState.running

  /// The open saving and resuming data files.
  var savingFile: SimulatedMigrationFile?
  var resumingFile: SimulatedMigrationFile?
  /// 7.2's `MIG_PRECOPY_INFOv2` opt-in, until the device's last close.
  var precopyInfoV2 = false

  /// `MIG_DATA_SIZE`: the bytes a STOP_COPY would save. Default: ``resumeCapacity``.
  open var migrationDataSize: UInt64 { UInt64(resumeCapacity) }

  /// The most bytes a resuming stream takes (ENOMEM past it). Default: 0.
  open var resumeCapacity: Int { 0 }

  /// What a saving stream holds on entering PRE_COPY (and what a STOP_COPY from STOP
  /// starts with). Default: nothing.
  open func preCopyData() -> [UInt8] { [] }

  /// What a STOP_COPY adds: to what PRE_COPY saved, or after ``preCopyData()`` from STOP.
  /// Default: nothing.
  open func stopCopyData() -> [UInt8] { [] }

  /// Looks at a resuming stream after a write (`data`, of which the first `previousCount`
  /// bytes were there before it): an errno for the write to fail with, or nil (the default).
  open func checkResumeWrite(_ data: [UInt8], previousCount: Int) -> Errno? { nil }

  /// Loads a resumed state, on leaving RESUMING for STOP: an errno keeps the device in
  /// RESUMING with its stream open. Default: nothing to load.
  open func loadState(_ data: [UInt8]) throws(Errno) {}

  /// Resets the device to its power-on state: a function reset, or a slot or bus reset
  /// that reaches it. The simulated kernel then writes back the config space header (and
  /// MSI or MSI-X where enabled) it saved before, as the PCI core does; what else the model
  /// resets is its own. Default: clears the command register.
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

  /// Signals vector `vector` of MSI (index 1) or MSI-X (index 2), if an eventfd is
  /// assigned to it. For INTx (index 0) it asserts the device's interrupt line, which stays
  /// asserted until ``lowerInterrupt()``: INTx is level-triggered, so an unmask while the
  /// line is asserted signals again, as on real hardware.
  public func raiseInterrupt(index: Int, vector: Int = 0) {
    kernel.raiseInterrupt(device: device, index: index, vector: vector)
  }

  /// Deasserts the device's INTx line (the driver acknowledged the interrupt).
  public func lowerInterrupt() {
    kernel.setINTxLine(device: device, asserted: false)
  }

  /// Runs `work` once `delay` has passed, on the simulated kernel's own thread and under
  /// its lock, like a device's timer: how a model completes work after the access that
  /// started it (edu finishes a DMA 100 ms after its command). Nothing waits in the
  /// meantime, and the kernel's lock is free. A negative delay counts as 0.
  public func schedule(after delay: Duration, _ work: @escaping (SimulatedBus) -> Void) {
    let (seconds, attoseconds) = delay.components
    var nanoseconds: UInt64 = 0
    if seconds > 0 || (seconds == 0 && attoseconds > 0) {
      let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, carry) = whole.addingReportingOverflow(UInt64(max(0, attoseconds) / 1_000_000_000))
      nanoseconds = overflow || carry ? .max : sum
    }
    let number = device
    kernel.worker.schedule(after: nanoseconds, in: kernel) { state in
      work(SimulatedBus(kernel: state, device: number))
    }
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
