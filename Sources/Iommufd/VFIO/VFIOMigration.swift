import CIommufd
import SystemPackage

/// What a device's migration driver supports (`VFIO_DEVICE_FEATURE_MIGRATION`).
public struct VFIOMigrationFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
  /// The bits, `VFIO_MIGRATION_*`.
  public let rawValue: UInt64
  /// Creates flags from their bits.
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  /// STOP, RUNNING, STOP_COPY and RESUMING: the states every migratable device has.
  public static var stopCopy: Self { Self(rawValue: UInt64(CIOMMUFD_VFIO_MIGRATION_STOP_COPY)) }
  /// RUNNING_P2P (and PRE_COPY_P2P with ``preCopy``): the device stops initiating DMA to
  /// other devices before it stops.
  public static var p2p: Self { Self(rawValue: UInt64(CIOMMUFD_VFIO_MIGRATION_P2P)) }
  /// PRE_COPY: state saved while the device runs.
  public static var preCopy: Self { Self(rawValue: UInt64(CIOMMUFD_VFIO_MIGRATION_PRE_COPY)) }
  /// "STOP_COPY | P2P | PRE_COPY", or "none".
  public var description: String {
    let names = [(Self.stopCopy, "STOP_COPY"), (.p2p, "P2P"), (.preCopy, "PRE_COPY")].filter { contains($0.0) }.map(\.1)
    let rest = rawValue & ~0x7
    let parts = names + (rest == 0 ? [] : ["0x\(String(rest, radix: 16))"])
    return parts.isEmpty ? "none" : parts.joined(separator: " | ")
  }
}

/// A device's migration state (`enum vfio_device_mig_state`).
public enum VFIOMigrationState: UInt32, Sendable, CaseIterable, CustomStringConvertible {
  /// The device failed a transition and must be reset.
  case error = 0
  /// Stopped: no DMA, no interrupts, its state frozen.
  case stop = 1
  /// Running normally.
  case running = 2
  /// Stopped, its state readable from the data stream.
  case stopCopy = 3
  /// Stopped, taking a state written to the data stream.
  case resuming = 4
  /// Running, but initiating no DMA to other devices.
  case runningP2P = 5
  /// Running, its state readable as it changes.
  case preCopy = 6
  /// PRE_COPY, initiating no DMA to other devices.
  case preCopyP2P = 7

  /// The uAPI name: `RUNNING`, `STOP_COPY`, ...
  public var description: String {
    ["ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"][Int(rawValue)]
  }

  /// The flags a device needs to have this state (`ERROR` is never asked for).
  var requiredFlags: VFIOMigrationFlags? {
    switch self {
    case .error: nil
    case .stop, .running, .stopCopy, .resuming: .stopCopy
    case .runningP2P: [.stopCopy, .p2p]
    case .preCopy: [.stopCopy, .preCopy]
    case .preCopyP2P: [.stopCopy, .p2p, .preCopy]
    }
  }

  /// The next state on the way from `self` to `target` (`vfio_from_fsm_table`), before
  /// states the device lacks are skipped.
  private func step(toward target: VFIOMigrationState) -> VFIOMigrationState {
    switch (self, target) {
    case (.error, _), (_, .error): return .error
    case _ where self == target: return self
    case (.stop, .running), (.stop, .preCopy), (.stop, .preCopyP2P), (.stop, .runningP2P): return .runningP2P
    case (.stop, .stopCopy): return .stopCopy
    case (.stop, .resuming): return .resuming
    case (.running, .preCopy): return .preCopy
    case (.running, _): return .runningP2P
    case (.preCopy, .preCopyP2P), (.preCopy, .stopCopy): return .preCopyP2P
    case (.preCopy, _): return .running
    case (.preCopyP2P, .preCopy): return .preCopy
    case (.preCopyP2P, .stopCopy): return .stopCopy
    case (.preCopyP2P, _): return .runningP2P
    case (.stopCopy, .preCopy), (.stopCopy, .preCopyP2P): return .error  // no way back to pre-copy
    case (.stopCopy, _), (.resuming, _): return .stop
    case (.runningP2P, .running), (.runningP2P, .preCopy): return .running
    case (.runningP2P, .preCopyP2P): return .preCopyP2P
    case (.runningP2P, _): return .stop
    default: return .error
    }
  }

  /// The states the kernel passes through from `self` to `target` on a device with `flags`
  /// (`vfio_mig_get_next_state`, applied until `target`), `target` last; nil where the
  /// kernel refuses (`EINVAL`): a state the device lacks, `ERROR`, or no arc (STOP_COPY or
  /// RESUMING to a PRE_COPY state).
  public func path(to target: VFIOMigrationState, flags: VFIOMigrationFlags) -> [VFIOMigrationState]? {
    func has(_ state: VFIOMigrationState) -> Bool { state.requiredFlags.map { flags.isSuperset(of: $0) } ?? false }
    guard has(self), has(target) else { return self == target && has(self) ? [] : nil }
    var path: [VFIOMigrationState] = []
    var current = self
    while current != target {
      var next = current.step(toward: target)
      while next != .error && !has(next) { next = next.step(toward: target) }
      if next == .error { return nil }
      path.append(next)
      current = next
    }
    return path
  }
}

extension VFIODevice {
  /// The migration flags the device supports (`VFIO_DEVICE_FEATURE_MIGRATION`); `ENOTTY`,
  /// explained, for a device without migration.
  public func migrationFlags() throws(IommufdError) -> VFIOMigrationFlags {
    let data = try feature(.migration, count: 8)
    return VFIOMigrationFlags(rawValue: data.loadLittleEndian(UInt64.self, at: 0))
  }

  /// The device's migration state (`MIG_DEVICE_STATE` get).
  public func migrationState() throws(IommufdError) -> VFIOMigrationState {
    let data = try feature(.migrationDeviceState, count: 8)
    let raw = data.loadLittleEndian(UInt32.self, at: 0)
    guard let state = VFIOMigrationState(rawValue: raw) else {
      throw IommufdError(.deviceFeature, .invalidArgument, objects: [.init("state", "\(raw)")], detail: "the kernel reported an unknown migration state \(raw)")
    }
    return state
  }

  /// Moves the device to `state` (`MIG_DEVICE_STATE` set): the kernel passes through the
  /// states of ``VFIOMigrationState/path(to:flags:)``. Returns the data stream the last
  /// step opened: for saving (to STOP_COPY from STOP, to PRE_COPY or PRE_COPY_P2P) or for
  /// resuming (to RESUMING); nil for the others (PRE_COPY_P2P to STOP_COPY goes on on the
  /// pre-copy stream). A state the device lacks or a target with no path (`EINVAL`) is
  /// explained with the path; a failed step leaves the device in a state on the path (mtty:
  /// the last one it reached) or in ``VFIOMigrationState/error``, as its driver decides.
  @discardableResult
  public func setMigrationState(_ state: VFIOMigrationState) throws(IommufdError) -> VFIOMigrationStream? {
    var data = [UInt8](repeating: 0, count: 8)
    data.replaceSubrange(0..<4, with: state.rawValue.littleEndianBytes)
    data.replaceSubrange(4..<8, with: Int32(-1).littleEndianBytes)
    do {
      data = try setFeature(.migrationDeviceState, data: data)
    } catch where error.errno == .invalidArgument && error.detail == nil {
      // Only now, on the error path: the flags and the state the device is in.
      let flags = try? migrationFlags()
      let current = try? migrationState()
      var detail = "the device cannot go to \(state)"
      if let flags, let current {
        if let path = current.path(to: state, flags: flags) {
          detail += " (from \(current): \(([current] + path).map(\.description).joined(separator: " → ")); its driver refused a step)"
        } else {
          detail += " from \(current) with migration flags \(flags): no such path"
        }
      }
      throw IommufdError(.deviceFeature, .invalidArgument, objects: [.init("state", state.description)], detail: detail)
    } catch {
      throw error
    }
    let fd = data.loadLittleEndian(Int32.self, at: 4)
    guard fd >= 0 else { return nil }
    return VFIOMigrationStream(adopting: FileDescriptor(rawValue: fd), backend: backend)
  }

  /// The size of the state a STOP_COPY would save now (`MIG_DATA_SIZE`), an estimate.
  public func migrationDataSize() throws(IommufdError) -> UInt64 {
    try feature(.migrationDataSize, count: 8).loadLittleEndian(UInt64.self, at: 0)
  }
}

/// A device's migration data stream, owned: read the saved state from it (STOP_COPY,
/// PRE_COPY), or write the state to restore into it (RESUMING). Closed exactly once, on
/// ``close()`` or on release. Thread-safe.
public final class VFIOMigrationStream: Sendable {
  /// The system-call seam.
  public let backend: Backend
  let descriptor: OwnedDescriptor

  /// Takes ownership of an open data descriptor.
  public init(adopting fd: FileDescriptor, backend: Backend = .kernel) {
    self.backend = backend
    self.descriptor = OwnedDescriptor(fd, backend: backend)
  }

  /// The descriptor.
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// The most one ``read(maximumBytes:)`` asks for (1 MiB): a larger request reads that much.
  public static let maximumReadBytes = 1 << 20

  /// Reads up to `maximumBytes` (at most ``maximumReadBytes``) of saved state (`read(2)`):
  /// fewer at the end of what is ready, none at its end.
  public func read(maximumBytes: Int = 65536) throws(IommufdError) -> [UInt8] {
    guard maximumBytes >= 0 else {
      throw IommufdError(.migrationData, .invalidArgument, objects: [.fd(descriptor.fd)], detail: "a byte count of 0 or more")
    }
    let maximumBytes = min(maximumBytes, Self.maximumReadBytes)
    return try descriptor.withDescriptor(.migrationData) { fd throws(IommufdError) in
      let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(maximumBytes, 1), alignment: 8)
      defer { buffer.deallocate() }
      let count: Int
      do throws(Errno) {
        count = try backend.calls.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<maximumBytes]))
      } catch {
        throw IommufdError(.migrationData, error, objects: [.fd(fd)])
      }
      return Array(buffer[0..<max(0, min(count, maximumBytes))])
    }
  }

  /// Reads until the end of what is ready now: the whole saved state of a STOP_COPY, what
  /// a PRE_COPY has so far (the end of which is a read of nothing, or `ENOMSG` from drivers
  /// that follow the uAPI's letter).
  public func readAll(chunk: Int = 65536) throws(IommufdError) -> [UInt8] {
    var all: [UInt8] = []
    while true {
      let part: [UInt8]
      do {
        part = try read(maximumBytes: max(1, chunk))
      } catch where error.errno == .noMessage {
        return all
      } catch {
        throw error
      }
      if part.isEmpty { return all }
      all += part
    }
  }

  /// Writes state to restore (`write(2)`, RESUMING); returns how many bytes were taken.
  @discardableResult
  public func write(_ bytes: [UInt8]) throws(IommufdError) -> Int {
    try descriptor.withDescriptor(.migrationData) { fd throws(IommufdError) in
      let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
      defer { buffer.deallocate() }
      buffer.copyBytes(from: bytes)
      do throws(Errno) {
        return try backend.calls.write(fd, from: UnsafeRawBufferPointer(rebasing: buffer[0..<bytes.count]))
      } catch {
        throw IommufdError(.migrationData, error, objects: [.fd(fd)])
      }
    }
  }

  /// Writes all of `bytes`, in as many writes as the stream takes.
  public func writeAll(_ bytes: [UInt8]) throws(IommufdError) {
    var offset = 0
    while offset < bytes.count {
      let taken = try write(Array(bytes[offset...]))
      guard taken > 0 else {
        throw IommufdError(.migrationData, .ioError, objects: [.fd(descriptor.fd)], detail: "the stream took no byte at offset \(offset)")
      }
      offset += taken
    }
  }

  /// How much a PRE_COPY stream holds (`VFIO_MIG_GET_PRECOPY_INFO`): the initial bytes not
  /// yet read, and the bytes that changed since. `EINVAL` outside PRE_COPY.
  public func precopyInfo() throws(IommufdError) -> (initialBytes: UInt64, dirtyBytes: UInt64) {
    var info = ciommufd_vfio_precopy_info()
    info.argsz = UInt32(MemoryLayout<ciommufd_vfio_precopy_info>.size)
    try descriptor.withDescriptor(.precopyInfo) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_VFIO_MIG_GET_PRECOPY_INFO, &info, .precopyInfo, [.fd(fd)])
    }
    return (info.initial_bytes, info.dirty_bytes)
  }

  /// Closes the stream now. For a saving stream this ends the save; for a resuming one,
  /// the next state change loads what was written.
  public func close() throws(IommufdError) { try descriptor.close() }
}

extension Array where Element == UInt8 {
  /// The little-endian integer at `offset` (0 past the end).
  func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
    var value: T = 0
    for index in 0..<MemoryLayout<T>.size where offset + index < count {
      value |= T(truncatingIfNeeded: self[offset + index]) << (8 * index)
    }
    return value
  }
}
