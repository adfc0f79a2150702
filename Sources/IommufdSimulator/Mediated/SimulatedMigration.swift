import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A migration data file of a simulated device (`anon_inode:[...]` in the kernel): a saving
/// stream, read-only, or a resuming one, write-only. A stream: `pread`/`pwrite` are ESPIPE.
final class SimulatedMigrationFile {
  /// Whether it is a saving stream (read) rather than a resuming one (write).
  let isSaving: Bool
  /// What was saved or written so far (`filled_size` is its count).
  var data: [UInt8]
  /// The read or write position (`f_pos`).
  var position = 0
  /// Disabled by the driver (a state change away from the saving or resuming state, a
  /// reset, the device's close): reads and writes are ENODEV.
  var disabled = false
  /// The device whose stream it is, for the pre-copy query.
  weak var device: (any SimulatedMigrationModel)?

  init(saving: Bool, data: [UInt8], device: any SimulatedMigrationModel) {
    self.isSaving = saving
    self.data = data
    self.device = device
  }
}

/// A device model with a migration driver (`mig_ops`): a mediated device's model, or a PCI
/// device's as a vfio-pci variant driver would migrate it. The hooks are the models' own
/// (``SimulatedMediatedDevice/migrationFlags``, ``SimulatedPCIDevice/migrationFlags``, ...);
/// the state machine and the data files are the simulator's.
protocol SimulatedMigrationModel: AnyObject {
  var migrationFlags: UInt64? { get }
  var migrationState: VFIOMigrationState { get set }
  var savingFile: SimulatedMigrationFile? { get set }
  var resumingFile: SimulatedMigrationFile? { get set }
  var precopyInfoV2: Bool { get set }
  var migrationDataSize: UInt64 { get }
  var resumeCapacity: Int { get }
  func preCopyData() -> [UInt8]
  func stopCopyData() -> [UInt8]
  func checkResumeWrite(_ data: [UInt8], previousCount: Int) -> Errno?
  func loadState(_ data: [UInt8]) throws(Errno)
}

extension SimulatedMediatedDevice: SimulatedMigrationModel {}
extension SimulatedPCIDevice: SimulatedMigrationModel {}

extension SimulatedMigrationModel {
  /// The driver's migration state machine (`migration_set_state`): the arcs from the
  /// current state to `target`, one at a time, as the kernel's table gives them; returns
  /// the data file the last arc opened. A failed arc leaves the device in the state it had
  /// reached. EINVAL where there is no path.
  func changeMigrationState(to target: VFIOMigrationState) throws(Errno) -> SimulatedMigrationFile? {
    guard let flags = migrationFlags.map({ VFIOMigrationFlags(rawValue: $0) }) else { throw .inappropriateIOCTLForDevice }
    guard let path = migrationState.path(to: target, flags: flags) else { throw .invalidArgument }
    var opened: SimulatedMigrationFile?
    for next in path {
      opened = try step(to: next)
      migrationState = next
      if opened != nil && next != target { throw .invalidArgument }
    }
    return opened
  }

  /// One arc (`mtty_step_state`): saving and resuming streams open, grow, load and close.
  private func step(to next: VFIOMigrationState) throws(Errno) -> SimulatedMigrationFile? {
    switch (migrationState, next) {
    case (.running, .preCopy), (.runningP2P, .preCopyP2P):
      if savingFile != nil { return nil }
      return openSaving(preCopyData())
    case (.stop, .stopCopy):
      return openSaving(preCopyData() + stopCopyData())
    case (.preCopyP2P, .stopCopy):
      // The pre-copy stream goes on; without one (the device was closed in pre-copy,
      // which disabled it) a new stream holds everything.
      guard let saving = savingFile else { return openSaving(preCopyData() + stopCopyData()) }
      saving.data += stopCopyData()
      return nil
    case (.stop, .resuming):
      let file = SimulatedMigrationFile(saving: false, data: [], device: self)
      resumingFile = file
      return file
    case (.resuming, .stop):
      try loadState(resumingFile?.data ?? [])
      disableMigrationFiles()
      return nil
    case (.preCopy, .running), (.preCopyP2P, .runningP2P), (.stopCopy, .stop):
      disableMigrationFiles()
      return nil
    default:
      return nil  // P2P arcs and the like: nothing to do
    }
  }

  /// What a reset or the last close does (mtty's `mtty_reset`, a variant driver's
  /// `reset_done`): back to RUNNING, the data files disabled.
  func returnToRunning() {
    guard migrationFlags != nil else { return }
    migrationState = .running
    disableMigrationFiles()
  }

  private func openSaving(_ data: [UInt8]) -> SimulatedMigrationFile {
    let file = SimulatedMigrationFile(saving: true, data: data, device: self)
    savingFile = file
    return file
  }

  /// Disables the device's open data files (their reads and writes are then ENODEV).
  func disableMigrationFiles() {
    for file in [savingFile, resumingFile] {
      file?.disabled = true
      file?.data = []
      file?.position = 0
    }
    savingFile = nil
    resumingFile = nil
  }
}

extension SimulatedKernel.State {
  /// `read(2)` of a migration file: EBADF on a resuming one, ENODEV once disabled; the bytes
  /// from the position, up to `count`, none at the end (mtty returns 0, not ENOMSG).
  func readMigration(_ file: SimulatedMigrationFile, count: Int) throws(Errno) -> [UInt8] {
    guard file.isSaving else { throw .badFileDescriptor }
    if file.disabled { throw .operationNotSupportedByDevice }
    if file.position > file.data.count { throw .invalidArgument }
    let taken = Array(file.data[file.position..<min(file.data.count, file.position + max(0, count))])
    file.position += taken.count
    return taken
  }

  /// `write(2)` of a resuming file: EBADF on a saving one; past the device's resume size
  /// ENOMEM (before anything else); ENODEV once disabled; the bytes are kept, and the
  /// model may answer with an errno for the write all the same (mtty's header check).
  func writeMigration(_ file: SimulatedMigrationFile, _ bytes: [UInt8]) throws(Errno) -> Int {
    guard !file.isSaving else { throw .badFileDescriptor }
    guard let device = file.device else { throw .operationNotSupportedByDevice }
    if file.position + bytes.count > device.resumeCapacity { throw .noMemory }
    if file.disabled { throw .operationNotSupportedByDevice }
    let previous = file.data.count
    if file.data.count < file.position + bytes.count { file.data += [UInt8](repeating: 0, count: file.position + bytes.count - file.data.count) }
    file.data.replaceSubrange(file.position..<(file.position + bytes.count), with: bytes)
    file.position += bytes.count
    if let refusal = device.checkResumeWrite(file.data, previousCount: previous) { throw refusal }
    return bytes.count
  }

  /// An ioctl on a migration file: `VFIO_MIG_GET_PRECOPY_INFO` on a saving one (24 bytes:
  /// EINVAL below, or outside PRE_COPY; ENODEV once disabled; the bytes left to read, no
  /// dirty bytes; the flags as given, or 0 on 7.2 after the opt-in); ENOTTY otherwise.
  func migrationIoctl(_ file: SimulatedMigrationFile, _ request: UInt, _ address: UInt64) throws(Errno) -> Int32 {
    let command = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: request))
    guard file.isSaving, command == CIOMMUFD_VFIO_MIG_GET_PRECOPY_INFO else { throw .inappropriateIOCTLForDevice }
    var bytes = try UserMemory.read(address, count: 24)
    if UserMemory.decode(UInt32.self, from: bytes) < 24 { throw .invalidArgument }
    guard let device = file.device else { throw .operationNotSupportedByDevice }
    if isLinux7_2 && device.precopyInfoV2 { bytes.replaceSubrange(4..<8, with: UserMemory.encode(UInt32(0))) }
    guard device.migrationState == .preCopy || device.migrationState == .preCopyP2P else { throw .invalidArgument }
    if file.disabled { throw .operationNotSupportedByDevice }
    if file.position > file.data.count { throw .invalidArgument }
    bytes.replaceSubrange(8..<24, with: UserMemory.encode(UInt64(file.data.count - file.position)) + UserMemory.encode(UInt64(0)))
    try UserMemory.write(bytes, to: address)
    return 0
  }
}
