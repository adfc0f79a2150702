import CIommufd
import SystemPackage

/// One record read from a ``VirtualEventQueue``: a vIOMMU event, or the mark that the
/// queue overflowed and dropped events.
public enum VirtualEvent: Hashable, Sendable {
  /// An event with its sequence number (0 to `Int32.max`, then 0 again) and the type's
  /// data (for ARM SMMUv3, the 32-byte event record, little-endian).
  case event(sequence: UInt32, data: [UInt8])
  /// The queue was full and dropped events from `sequence` on; no data follows.
  case lostEvents(sequence: UInt32)

  /// The record's sequence number.
  public var sequence: UInt32 {
    switch self {
    case .event(let sequence, _), .lostEvents(let sequence): sequence
    }
  }
}

/// A virtual event queue (`IOMMU_VEVENTQ_ALLOC`, Linux 6.15): events of one type that a
/// ``VirtualIOMMU`` reports for its guest (such as SMMUv3 translation faults of a
/// ``VirtualDevice``), read from the queue's own descriptor.
///
/// Owns its descriptor and object id: release closes the descriptor, then destroys the id.
/// Keeps its vIOMMU alive. Thread-safe.
public final class VirtualEventQueue: Sendable, ObjectHandle {
  /// The vIOMMU whose events it receives.
  public let viommu: VirtualIOMMU
  /// The vEVENTQ's object id.
  public var id: ObjectID { object.id }
  /// The kind of events.
  public let kind: Kind
  /// The most events it holds before it drops new ones.
  public let depth: UInt32
  let descriptor: OwnedDescriptor
  let object: OwnedObject

  /// A vEVENTQ type (`enum iommu_veventq_type`) and the size of its event data.
  public struct Kind: RawRepresentable, Hashable, Sendable {
    /// The raw type.
    public var rawValue: UInt32
    /// Creates from the raw type.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// ARM SMMUv3 events (`IOMMU_VEVENTQ_TYPE_ARM_SMMUV3`): 32-byte event records.
    public static let armSMMUv3 = Kind(rawValue: CIOMMUFD_VEVENTQ_TYPE_ARM_SMMUV3)
    /// Tegra241 CMDQV error maps (`IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV`): 16 bytes.
    public static let tegra241CMDQV = Kind(rawValue: CIOMMUFD_VEVENTQ_TYPE_TEGRA241_CMDQV)
    /// The self-test mock IOMMU's events (`IOMMU_VEVENTQ_TYPE_SELFTEST`): a 4-byte virtual id.
    public static let selfTest = Kind(rawValue: CIOMMUFD_VEVENTQ_TYPE_SELFTEST)

    /// The bytes of data after each event header, where the type is known.
    public var dataSize: Int? {
      switch self {
      case .armSMMUv3: MemoryLayout<ciommufd_iommu_vevent_arm_smmuv3>.size
      case .tegra241CMDQV: 16
      case .selfTest: MemoryLayout<ciommufd_iommu_viommu_event_selftest>.size
      default: nil
      }
    }
  }

  /// Allocates a queue for `kind` events of `viommu` holding at most `depth` events. A
  /// vIOMMU has at most one queue per kind. A kernel before 6.15 answers ENOTTY, reported
  /// as unsupported.
  public init(on viommu: VirtualIOMMU, kind: Kind, depth: UInt32) throws(IommufdError) {
    viommu.iommufd.allocations.enterReading()
    defer { viommu.iommufd.allocations.leaveReading() }
    var request = ciommufd_iommu_veventq_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_veventq_alloc>.size)
    request.viommu_id = viommu.id.rawValue
    request.type = kind.rawValue
    request.veventq_depth = depth
    let iommufd = viommu.iommufd
    try iommufd.issueNewerRequest(
      CIOMMUFD_IOMMU_VEVENTQ_ALLOC, &request, .veventqAlloc, [.viommu(viommu.id), .init("type", "\(kind.rawValue)")],
      using: [viommu.object], since: "6.15")
    self.viommu = viommu
    self.kind = kind
    self.depth = depth
    self.descriptor = OwnedDescriptor(FileDescriptor(rawValue: Int32(bitPattern: request.out_veventq_fd)), backend: iommufd.backend)
    let id = ObjectID(request.out_veventq_id)
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "vEVENTQ", involved: .object(id))
  }

  /// The queue's descriptor (poll it for `POLLIN`).
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// The most bytes one ``read(maximumBytes:)`` asks for: 16 MiB.
  public static let maximumReadBytes = 16 << 20

  /// Reads the pending records that fit in `maximumBytes` (0 to ``maximumReadBytes``, else
  /// EINVAL), oldest first; an empty result means none is pending. Fails with EINVAL for
  /// a kind whose data size is unknown.
  public func read(maximumBytes: Int = 4096) throws(IommufdError) -> [VirtualEvent] {
    guard maximumBytes >= 0, maximumBytes <= Self.maximumReadBytes else {
      throw IommufdError(
        .veventRead, .invalidArgument, objects: [.object(id)],
        detail: "maximumBytes \(maximumBytes) is outside 0...\(Self.maximumReadBytes)")
    }
    guard let dataSize = kind.dataSize else {
      throw IommufdError(.veventRead, .invalidArgument, objects: [.object(id)], detail: "the data size of vEVENTQ type \(kind.rawValue) is not known")
    }
    let iommufd = viommu.iommufd
    return try withScratchBuffer(count: maximumBytes) { buffer throws(IommufdError) -> [VirtualEvent] in
      let count = try descriptor.withDescriptor(.veventRead) { fd throws(IommufdError) -> Int in
        do throws(Errno) {
          return try iommufd.backend.calls.read(fd, into: buffer)
        } catch {
          throw IommufdError(.veventRead, error, objects: [.fd(fd), .object(id)])
        }
      }
      return try Self.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<min(max(count, 0), buffer.count)]), dataSize: dataSize)
    }
  }

  /// The records in `bytes`: headers, each followed by `dataSize` bytes unless it is a
  /// lost-events mark.
  static func decode(_ bytes: UnsafeRawBufferPointer, dataSize: Int) throws(IommufdError) -> [VirtualEvent] {
    let headerSize = MemoryLayout<ciommufd_iommufd_vevent_header>.size
    var events: [VirtualEvent] = []
    var offset = 0
    while offset < bytes.count {
      guard bytes.count - offset >= headerSize else {
        throw IommufdError(.veventRead, .invalidArgument, objects: [], detail: "a vEVENTQ record header was cut short at byte \(offset)")
      }
      let flags = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
      let sequence = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
      offset += headerSize
      if flags & CIOMMUFD_VEVENTQ_FLAG_LOST_EVENTS != 0 {
        events.append(.lostEvents(sequence: sequence))
        continue
      }
      guard bytes.count - offset >= dataSize else {
        throw IommufdError(.veventRead, .invalidArgument, objects: [], detail: "vEVENT \(sequence) has \(bytes.count - offset) of \(dataSize) data bytes")
      }
      events.append(.event(sequence: sequence, data: Array(bytes[offset..<(offset + dataSize)])))
      offset += dataSize
    }
    return events
  }

  /// Closes the descriptor and destroys the queue. A second call fails with `ENOENT`, as
  /// it does for every object handle.
  public func destroy() throws(IommufdError) {
    try descriptor.close()
    try object.destroy()
  }

  deinit {
    try? descriptor.close()
    object.release()
  }
}

extension IOMMUSelfTest {
  /// The mock vIOMMU's invalidation entry type; each entry is `{u32 flags, u32 virtual id,
  /// u32 cache slot}` and flag bit 0 invalidates every slot of the device.
  public static let virtualInvalidationType = CIOMMUFD_VIOMMU_INVALIDATE_DATA_SELFTEST

  /// Checks that cache slot `slot` (0-3) of mock device `deviceID` holds `value`
  /// (`IOMMU_TEST_OP_DEV_CHECK_CACHE`; slots start at 0xbaddad, invalidation clears them);
  /// EINVAL otherwise.
  public func checkDeviceCache(device deviceID: ObjectID, slot: UInt32, value: UInt32) throws(IommufdError) {
    var command = Self.command(CIOMMUFD_TEST_OP_DEV_CHECK_CACHE, id: deviceID)
    withUnsafeMutableBytes(of: &command.payload) {
      $0.storeBytes(of: slot, as: UInt32.self)
      $0.storeBytes(of: value, toByteOffset: 4, as: UInt32.self)
    }
    try issue(&command, [.device(deviceID)])
  }

  /// Makes the mock device `deviceID` report an event to the self-test vEVENTQ of the
  /// vIOMMU whose nested HWPT it is attached to (`IOMMU_TEST_OP_TRIGGER_VEVENT`, a 6.15
  /// test kernel): the event's data is the device's virtual id (32 bits).
  public func triggerVirtualEvent(device deviceID: ObjectID) throws(IommufdError) {
    var command = Self.command(CIOMMUFD_TEST_OP_TRIGGER_VEVENT, id: ObjectID(0))
    withUnsafeMutableBytes(of: &command.payload) { $0.storeBytes(of: deviceID.rawValue, as: UInt32.self) }
    try issue(&command, [.device(deviceID)])
  }
}
