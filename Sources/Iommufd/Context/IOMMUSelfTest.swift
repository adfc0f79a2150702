import CIommufd

/// The iommufd self-test interface (`IOMMU_TEST_CMD`) of kernels built with
/// `CONFIG_IOMMUFD_TEST`: a mock IOMMU and mock devices, for exercising iommufd where no
/// real IOMMU can go. A production kernel answers ENOTTY; with a real IOMMU driver active
/// (such as VT-d) mock domains fail with EINVAL.
public struct IOMMUSelfTest: Sendable {
  /// The context the commands go to.
  public let iommufd: IOMMUFD

  /// The mock IOMMU's aperture: `[1 << 24, (1 << 31) - 1]`.
  public static let mockAperture = IOVARange(start: 1 << 24, last: (1 << 31) - 1)

  /// Mock device flags (`MOCK_FLAGS_DEVICE_*`).
  public struct DeviceFlags: OptionSet, Hashable, Sendable {
    /// The raw flags.
    public var rawValue: UInt32
    /// Creates from the raw flags.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The device cannot track dirty pages.
    public static let noDirtyTracking = DeviceFlags(rawValue: 1 << 0)
    /// The mock IOMMU uses huge IO pages for the device (6.12 test kernels; 7.2 has no such
    /// flag and answers EINVAL).
    public static let hugeIOVA = DeviceFlags(rawValue: 1 << 1)
    /// The device has 2^20 PASIDs (7.2 test kernels).
    public static let pasid = DeviceFlags(rawValue: 1 << 2)
  }

  /// Reserves `range` of `ioas` as the self-test owner (`IOMMU_TEST_OP_ADD_RESERVED`), until
  /// the IOAS is destroyed. An inverted range is EINVAL, and the whole 64-bit space (2^64
  /// bytes, more than a u64 length) EOVERFLOW, before the kernel is asked.
  public func addReserved(_ range: IOVARange, in ioas: IOAS) throws(IommufdError) {
    guard range.start <= range.last else {
      throw IommufdError(.testCommand, .invalidArgument, objects: [.ioas(ioas.id)], detail: "the range \(range) is inverted (start above last)")
    }
    let (length, overflow) = (range.last - range.start).addingReportingOverflow(1)
    guard !overflow else {
      throw IommufdError(.testCommand, .overflow, objects: [.ioas(ioas.id)], detail: "the range \(range) has 2^64 bytes, more than a u64 length")
    }
    var command = Self.command(CIOMMUFD_TEST_OP_ADD_RESERVED, id: ioas.id)
    withUnsafeMutableBytes(of: &command.payload) {
      $0.storeBytes(of: ciommufd_iommu_test_add_reserved(start: range.start, length: length), as: ciommufd_iommu_test_add_reserved.self)
    }
    try issue(&command, [.ioas(ioas.id)], using: [ioas.object])
  }

  /// The kernel's temporary memory limit until one is set: 65536 bytes.
  public static let defaultTemporaryMemoryLimit: UInt32 = 65536

  /// Sets the kernel-wide limit on the memory the kernel takes for one batch of pages when
  /// it pins and maps (`IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT`). It decides how many pages
  /// are pinned before a domain's driver first sees a map, so which error a refused map
  /// reports. It holds for every process until set again: set it back to
  /// ``defaultTemporaryMemoryLimit`` when done. Under 12 bytes (one batch entry) is EINVAL,
  /// before the kernel is asked.
  public func setTemporaryMemoryLimit(_ bytes: UInt32) throws(IommufdError) {
    guard bytes >= 12 else {
      throw IommufdError(.testCommand, .invalidArgument, detail: "a temporary memory limit of \(bytes) bytes is under one batch entry (12 bytes)")
    }
    var command = Self.command(CIOMMUFD_TEST_OP_SET_TEMP_MEMORY_LIMIT, id: ObjectID(0))
    withUnsafeMutableBytes(of: &command.payload) { $0.storeBytes(of: bytes, as: UInt32.self) }
    try issue(&command, [])
  }

  /// Creates a mock device bound to this context and attached to `target`
  /// (`IOMMU_TEST_OP_MOCK_DOMAIN`, or `..._FLAGS` with `flags`).
  public func attachMockDevice(to target: some AttachTarget, flags: DeviceFlags? = nil) throws(IommufdError) -> MockDevice {
    iommufd.allocations.enterReading()
    defer { iommufd.allocations.leaveReading() }
    try Self.checkContext(target, of: iommufd)
    var command = Self.command(flags == nil ? CIOMMUFD_TEST_OP_MOCK_DOMAIN : CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS, id: target.id)
    if let flags {
      withUnsafeMutableBytes(of: &command.payload) { $0.storeBytes(of: flags.rawValue, toByteOffset: 12, as: UInt32.self) }
    }
    try issue(&command, [.pageTable(target.id)], using: ownedObject(target).map { [$0] } ?? [])
    let reply = withUnsafeBytes(of: command.payload) { $0.load(as: ciommufd_iommu_test_mock_domain.self) }
    return MockDevice(
      iommufd: iommufd, id: ObjectID(reply.out_stdev_id), deviceID: ObjectID(reply.out_idev_id),
      pageTableID: ObjectID(reply.out_hwpt_id), target: target)
  }

  /// Refuses (EINVAL) an attach target of another context, also one no handle of this
  /// library owns: its id would name an object of this context.
  static func checkContext(_ target: some AttachTarget, of iommufd: IOMMUFD) throws(IommufdError) {
    guard target.iommufd === iommufd else {
      throw IommufdError(
        .testCommand, .invalidArgument, objects: [.pageTable(target.id)],
        detail: "the attach target \(target.id) belongs to another iommufd context")
    }
  }

  static func command(_ op: UInt32, id: ObjectID) -> ciommufd_iommu_test_cmd {
    var command = ciommufd_iommu_test_cmd()
    command.size = UInt32(MemoryLayout<ciommufd_iommu_test_cmd>.size)
    command.op = op
    command.id = id.rawValue
    return command
  }

  func issue(
    _ command: inout ciommufd_iommu_test_cmd, _ objects: [IommufdError.InvolvedObject], using owned: [OwnedObject] = []
  ) throws(IommufdError) {
    try iommufd.withDescriptor(.testCommand, using: owned) { fd throws(IommufdError) in
      try iommufd.backend.ioctl(fd, CIOMMUFD_IOMMU_TEST_CMD, &command, .testCommand, objects)
    }
  }
}

extension IOMMUFD {
  /// The self-test commands of this context (test kernels only).
  public var selfTest: IOMMUSelfTest { IOMMUSelfTest(iommufd: self) }
}

/// A mock device of the iommufd self-test: bound to a context and attached, like a VFIO
/// device. The handle owns its self-test object: ``destroy()`` or release detaches,
/// unbinds and deletes the device. It keeps its attach target alive. Thread-safe.
public final class MockDevice: Sendable, ObjectHandle {
  /// The context.
  public let iommufd: IOMMUFD
  /// The self-test object's id (destroying it removes the device).
  public var id: ObjectID { object.id }
  /// The device object's id, usable as `dev_id`.
  public let deviceID: ObjectID
  let object: OwnedObject
  private let state: Lock<(pageTable: ObjectID, target: (any AttachTarget)?)>

  init(iommufd: IOMMUFD, id: ObjectID, deviceID: ObjectID, pageTableID: ObjectID, target: any AttachTarget) {
    self.iommufd = iommufd
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "mock device", involved: .object(id))
    self.deviceID = deviceID
    self.state = Lock((pageTableID, target))
  }

  /// The HW page table the device is attached to.
  public var pageTableID: ObjectID { state.withLock { $0.pageTable } }

  /// Moves the device to `target` (`IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`); returns the HWPT id.
  @discardableResult
  public func replace(with target: some AttachTarget) throws(IommufdError) -> ObjectID {
    try IOMMUSelfTest.checkContext(target, of: iommufd)
    var command = IOMMUSelfTest.command(CIOMMUFD_TEST_OP_MOCK_DOMAIN_REPLACE, id: id)
    withUnsafeMutableBytes(of: &command.payload) { $0.storeBytes(of: target.id.rawValue, as: UInt32.self) }
    try iommufd.selfTest.issue(
      &command, [.object(id), .pageTable(target.id)], using: [object] + (ownedObject(target).map { [$0] } ?? []))
    let pageTable = ObjectID(withUnsafeBytes(of: command.payload) { $0.load(as: UInt32.self) })
    let previous = state.withLock { value -> (any AttachTarget)? in
      defer { value.pageTable = pageTable; value.target = target }
      return value.target
    }
    _ = previous
    return pageTable
  }

  deinit { object.release() }

  /// Detaches, unbinds and deletes the device now. A second call fails with `ENOENT`, as
  /// it does for every object handle.
  public func destroy() throws(IommufdError) { try object.destroy() }
}
