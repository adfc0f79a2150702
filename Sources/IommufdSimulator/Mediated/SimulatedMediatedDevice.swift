import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A mediated (emulated) VFIO device model for the simulated kernel: what an mdev parent
/// driver, such as the kernel's mtty sample or a software-isolated GPU's (GVT-g), exposes
/// through its VFIO cdev.
///
/// Such a device has no IOMMU page table of its own. Binding its cdev to an iommufd makes an
/// in-kernel *access* (its id is the one bind returns); attaching it to an IOAS lets the
/// driver reach the IOAS's memory by IOVA: ``dmaRead(at:count:)`` and
/// ``dmaWrite(_:at:)`` copy through it, ``pin(at:length:writable:)`` pins pages, and
/// ``didUnmap(iova:length:)`` tells the driver when the user unmaps what it pinned.
///
/// Subclass it and override the VFIO requests the device answers. Every method runs under
/// the simulated kernel's lock, once per request; errors are the errnos the request fails
/// with. The defaults describe a PCI device with no regions and no interrupts.
open class SimulatedMediatedDevice: @unchecked Sendable {
  /// What `VFIO_DEVICE_GET_INFO` reports.
  public struct Info: Sendable, Hashable {
    /// `VFIO_DEVICE_FLAGS_*` (0x2 is `VFIO_DEVICE_FLAGS_PCI`).
    public var flags: UInt32
    /// The number of regions.
    public var regions: UInt32
    /// The number of interrupt indexes.
    public var interrupts: UInt32

    /// Creates a device description.
    public init(flags: UInt32, regions: UInt32, interrupts: UInt32) {
      self.flags = flags
      self.regions = regions
      self.interrupts = interrupts
    }
  }

  /// What `VFIO_DEVICE_GET_REGION_INFO` reports of one region.
  public struct Region: Sendable, Hashable {
    /// `VFIO_REGION_INFO_FLAG_*` (0x3 is read and write).
    public var flags: UInt32
    /// Its size in bytes.
    public var size: UInt64
    /// Where it starts in the device file (vfio-pci's encoding: the index shifted left by 40).
    public var offset: UInt64

    /// Creates a region description.
    public init(flags: UInt32, size: UInt64, offset: UInt64) {
      self.flags = flags
      self.size = size
      self.offset = offset
    }
  }

  /// What `VFIO_DEVICE_GET_IRQ_INFO` reports of one interrupt index.
  public struct Interrupt: Sendable, Hashable {
    /// `VFIO_IRQ_INFO_*` (eventfd, maskable, automasked, noresize).
    public var flags: UInt32
    /// The number of vectors.
    public var count: UInt32

    /// Creates an interrupt description.
    public init(flags: UInt32, count: UInt32) {
      self.flags = flags
      self.count = count
    }
  }

  /// One `VFIO_DEVICE_SET_IRQS`, after the checks the VFIO core makes for every driver
  /// (`vfio_set_irqs_validate_and_prepare` with ``interruptLimit``).
  public struct InterruptRequest: Sendable, Hashable {
    /// `VFIO_IRQ_SET_DATA_*` and `VFIO_IRQ_SET_ACTION_*` bits.
    public var flags: UInt32
    /// The interrupt index.
    public var index: UInt32
    /// The first vector.
    public var start: UInt32
    /// The number of vectors.
    public var count: UInt32
    /// The payload: `count` bytes of BOOL data, or `count` eventfd numbers (as the caller's
    /// process has them), or nothing.
    public var data: [UInt8]

    /// The payload's eventfd numbers (DATA_EVENTFD).
    public var eventFDs: [Int32] {
      stride(from: 0, to: data.count - data.count % 4, by: 4).map { offset -> Int32 in
        var value: UInt32 = 0
        for byte in 0..<4 { value |= UInt32(data[offset + byte]) << (8 * UInt32(byte)) }
        return Int32(bitPattern: value)
      }
    }
  }

  /// The kernel's side of the device while its cdev is bound: its access and the lock.
  var link: SimulatedMediatedLink?

  /// Creates the model.
  public init() {}

  /// `VFIO_DEVICE_GET_INFO`.
  open func info() throws(Errno) -> Info { Info(flags: CIOMMUFD_VFIO_DEVICE_FLAGS_PCI, regions: 0, interrupts: 0) }

  /// `VFIO_DEVICE_GET_REGION_INFO` of region `index`: EINVAL where there is none.
  open func region(_ index: UInt32) throws(Errno) -> Region { throw .invalidArgument }

  /// `VFIO_DEVICE_GET_IRQ_INFO` of interrupt index `index`: EINVAL where there is none.
  open func interrupt(_ index: UInt32) throws(Errno) -> Interrupt { throw .invalidArgument }

  /// How many interrupt indexes `VFIO_DEVICE_SET_IRQS` checks `start` and `count` against
  /// (the `num_irqs` a driver passes to the VFIO core's check).
  open var interruptLimit: UInt32 { (try? info().interrupts) ?? 0 }

  /// `VFIO_DEVICE_SET_IRQS`, checked by the VFIO core.
  open func setInterrupts(_ request: InterruptRequest) throws(Errno) { throw .inappropriateIOCTLForDevice }

  /// `read(2)` of `count` bytes at `offset` of the device file (a region's offset plus the
  /// position in it). Returns the bytes read.
  open func read(at offset: UInt64, count: Int) throws(Errno) -> [UInt8] { throw .invalidArgument }

  /// `write(2)` of `bytes` at `offset` of the device file; returns how many were written.
  open func write(_ bytes: [UInt8], at offset: UInt64) throws(Errno) -> Int { throw .invalidArgument }

  /// `VFIO_DEVICE_RESET`.
  open func reset() throws(Errno) { throw .inappropriateIOCTLForDevice }

  /// The last descriptor of the device's cdev was closed (the driver's `close_device`),
  /// before its access goes.
  open func didClose() {}

  /// The user unmapped `[iova, iova + length)` of the IOAS the device is attached to, where
  /// the device had pinned pages (the access's `unmap` callback). The pins in the range are
  /// dropped after this returns, whether the model released them or not.
  open func didUnmap(iova: UInt64, length: UInt64) {}

  // MARK: Migration (its driver's `mig_ops`) and DMA logging (`log_ops`)

  /// The migration flags (`VFIO_MIGRATION_*`), or nil for a device without migration, whose
  /// migration features are ENOTTY. A device with them starts RUNNING.
  open var migrationFlags: UInt64? { nil }

  /// The migration state (`migration_get_state`).
  public internal(set) var migrationState = VFIOMigrationState.running

  /// The open saving and resuming data files.
  var savingFile: SimulatedMigrationFile?
  var resumingFile: SimulatedMigrationFile?
  /// 7.2's `MIG_PRECOPY_INFOv2` opt-in, until the device's last close.
  var precopyInfoV2 = false

  /// `MIG_DATA_SIZE`: the bytes a STOP_COPY would save.
  open var migrationDataSize: UInt64 { UInt64(resumeCapacity) }

  /// The most bytes a resuming stream takes (ENOMEM past it).
  open var resumeCapacity: Int { 0 }

  /// What a saving stream holds on entering PRE_COPY (and what a STOP_COPY from STOP
  /// starts with).
  open func preCopyData() -> [UInt8] { [] }

  /// What a STOP_COPY adds: to what PRE_COPY saved, or after ``preCopyData()`` from STOP.
  open func stopCopyData() -> [UInt8] { [] }

  /// Looks at a resuming stream after a write (`data`, of which the first `previousCount`
  /// bytes were there before it): an errno for the write to fail with (the bytes stay
  /// written, as mtty keeps them), or nil.
  open func checkResumeWrite(_ data: [UInt8], previousCount: Int) -> Errno? { nil }

  /// Loads a resumed state, on leaving RESUMING for STOP: an errno keeps the device in
  /// RESUMING with its stream open.
  open func loadState(_ data: [UInt8]) throws(Errno) {}

  /// Whether the driver has DMA logging callbacks (else the logging features are ENOTTY).
  open var hasDMALogging: Bool { false }

  /// `log_start` over `ranges` (`(iova, length)`, checked by the VFIO core) at `pageSize`;
  /// returns the page size the driver chose.
  open func startDMALogging(ranges: [(iova: UInt64, length: UInt64)], pageSize: UInt64) throws(Errno) -> UInt64 { pageSize }

  /// `log_stop`.
  open func stopDMALogging() throws(Errno) {}

  /// `log_read_and_clear`: the IOVAs (page-aligned) of `length` bytes at `iova` the device
  /// wrote since the last report.
  open func reportDMALogging(iova: UInt64, length: UInt64, pageSize: UInt64) throws(Errno) -> [UInt64] { [] }

  /// What a reset does to migration (mtty's `mtty_reset`): back to RUNNING, the data files
  /// disabled.
  public func resetMigration() { returnToRunning() }

  // MARK: DMA through the access

  /// Whether the device's cdev is bound and attached to an IOAS: what DMA needs.
  public var isAttached: Bool { link?.withAccess { $0.ioasID != nil } ?? false }

  /// Reads `count` bytes at `iova` of the attached IOAS (`iommufd_access_rw`): ENOENT where
  /// the device is not attached or the range is not wholly mapped, EPERM where it is not
  /// readable, EINVAL for 0 bytes, EOVERFLOW past the end of the IOVA space.
  public func dmaRead(at iova: UInt64, count: Int) throws(Errno) -> [UInt8] {
    guard let link, count >= 0 else { throw count < 0 ? .invalidArgument : .noSuchFileOrDirectory }
    return try link.run { state, access throws(Errno) in try state.accessCopy(access, iova: iova, length: UInt64(count), write: nil) }
  }

  /// Writes `bytes` at `iova` of the attached IOAS (`iommufd_access_rw` with
  /// `IOMMUFD_ACCESS_RW_WRITE`): the errnos of ``dmaRead(at:count:)``, EPERM where the
  /// range is not writable.
  public func dmaWrite(_ bytes: [UInt8], at iova: UInt64) throws(Errno) {
    guard let link else { throw .noSuchFileOrDirectory }
    _ = try link.run { state, access throws(Errno) in try state.accessCopy(access, iova: iova, length: UInt64(bytes.count), write: bytes) }
  }

  /// Pins `length` bytes at `iova` of the attached IOAS (`iommufd_access_pin_pages`):
  /// page-aligned, wholly mapped (ENOENT), with the permission asked for (EPERM). Returns
  /// the pin's id for ``unpin(_:)``. An unmap of a pinned range calls
  /// ``didUnmap(iova:length:)`` and drops the pin.
  public func pin(at iova: UInt64, length: UInt64, writable: Bool) throws(Errno) -> UInt32 {
    guard let link else { throw .noSuchFileOrDirectory }
    return try link.run { state, access throws(Errno) in
      try state.accessPages(access, iova: iova, length: length, uptr: 0, flags: writable ? CIOMMUFD_MOCK_FLAGS_ACCESS_WRITE : 0)
    }
  }

  /// Releases pin `id` (ENOENT if there is none: never made, released, or dropped by an unmap).
  public func unpin(_ id: UInt32) throws(Errno) {
    guard let link else { throw .noSuchFileOrDirectory }
    try link.run { state, access throws(Errno) in try state.destroyAccessPages(access, id: id) }
  }
}

/// `VFIO_IRQ_SET_DATA_TYPE_MASK`: NONE, BOOL and EVENTFD.
let vfioIRQDataTypes = CIOMMUFD_VFIO_IRQ_SET_DATA_NONE | CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL | CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD
/// `VFIO_IRQ_SET_ACTION_TYPE_MASK`: MASK, UNMASK and TRIGGER.
let vfioIRQActions = CIOMMUFD_VFIO_IRQ_SET_ACTION_MASK | CIOMMUFD_VFIO_IRQ_SET_ACTION_UNMASK | CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER

/// The simulated kernel's side of a bound mediated device: its access, reached under the
/// kernel's lock (taken here unless this thread holds it already, as a device's handlers do).
final class SimulatedMediatedLink: @unchecked Sendable {
  unowned let state: SimulatedKernel.State
  let access: SimulatedAccess

  init(state: SimulatedKernel.State, access: SimulatedAccess) {
    self.state = state
    self.access = access
  }

  func run<R>(_ body: (SimulatedKernel.State, SimulatedAccess) throws(Errno) -> R) throws(Errno) -> R {
    try state.lock.runReentrant { () throws(Errno) -> R in try body(state, access) }
  }

  func withAccess<R>(_ body: (SimulatedAccess) -> R) -> R {
    state.lock.runReentrant { body(access) }
  }
}

/// An eventfd a device model signals: its own duplicate of the descriptor the user passed
/// (as `eventfd_ctx_fdget` takes a reference), closed when this goes.
public final class SimulatedEventFD: @unchecked Sendable {
  /// The duplicate's descriptor.
  public let descriptor: Int32

  /// Takes a reference to the user's eventfd `fd`: EBADF if it is not open, EINVAL if it
  /// is no eventfd.
  public init(borrowing fd: Int32) throws(Errno) {
    descriptor = try SimulatedKernel.State.duplicateEventFD(fd)
  }

  deinit { _ = Glibc.close(descriptor) }

  /// Adds 1 to the eventfd's counter (`eventfd_signal`).
  public func signal() {
    var one: UInt64 = 1
    _ = Glibc.write(descriptor, &one, 8)
  }
}
