import CIommufd
import SystemPackage

/// An in-kernel access to an IOAS made by the iommufd self-test
/// (`IOMMU_TEST_OP_CREATE_ACCESS`): what the driver of an emulated or mediated VFIO device
/// holds instead of a page table. Through it the kernel pins pages of the IOAS, and reads
/// and writes them with the CPU, on the device's behalf.
///
/// The handle owns the access's descriptor: ``close()`` or release closes it, which unpins
/// what is still pinned and destroys the access. The kernel gives the access an object id
/// it tells nobody; while the access exists it holds its IOAS (destroying the IOAS is
/// `EBUSY`), and so does the handle. Test kernels only. Thread-safe.
public final class SelfTestAccess: Sendable {
  /// The context the access was made in.
  public let iommufd: IOMMUFD
  /// Whether the access pins pages (`MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES`): only such
  /// an access can ``pin(iova:length:writable:verifyingAgainst:)``, and while it exists the
  /// IOAS's IOVA alignment is at least the page size.
  public let pinsPages: Bool
  let descriptor: OwnedDescriptor
  private let attached: Lock<IOAS>

  init(iommufd: IOMMUFD, fd: FileDescriptor, ioas: IOAS, pinsPages: Bool) {
    self.iommufd = iommufd
    self.descriptor = OwnedDescriptor(fd, backend: iommufd.backend)
    self.attached = Lock(ioas)
    self.pinsPages = pinsPages
  }

  deinit { try? descriptor.close() }

  /// The access's descriptor, as the self-test names the access by it.
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// The IOAS the access is attached to.
  public var ioas: IOAS { attached.withLock { $0 } }

  /// The most one pin, read or write may cover: 16 MiB (more is `ENOMEM`, the self-test's
  /// own limit).
  public static let maximumLength: UInt64 = 16 << 20

  /// Pins the pages behind `length` bytes at `iova` (`IOMMU_TEST_OP_ACCESS_PAGES`) and
  /// returns them as a handle that unpins on release.
  ///
  /// `writable` pins for writing (`EPERM` on a read-only mapping). With `verifyingAgainst`,
  /// the kernel also checks that the pages are the ones behind that address of this
  /// process (`EBADE` otherwise). An unmap of the range unpins the pages at once (the
  /// access's unmap callback), as an emulated device's driver must let go. The kernel
  /// answers: `EOPNOTSUPP` for an access that does not pin pages, `ENOENT` for a range not
  /// wholly mapped, `EINVAL` for a zero length or an IOVA off a page boundary of the
  /// mapped memory, `EOVERFLOW` for a range past the end of the
  /// address space, `ENOMEM` over ``maximumLength``.
  public func pin(
    iova: UInt64, length: UInt64, writable: Bool = false, verifyingAgainst userAddress: UnsafeRawPointer? = nil
  ) throws(IommufdError) -> PinnedPages {
    let objects: [IommufdError.InvolvedObject] = [.fd(descriptor.fd), .init("iova", "0x\(String(iova, radix: 16))"), .init("length", "\(length)")]
    var command = IOMMUSelfTest.command(CIOMMUFD_TEST_OP_ACCESS_PAGES, id: ObjectID(UInt32(bitPattern: descriptor.fd.rawValue)))
    withUnsafeMutableBytes(of: &command.payload) {
      $0.storeBytes(of: writable ? CIOMMUFD_MOCK_FLAGS_ACCESS_WRITE : 0, as: UInt32.self)
      $0.storeBytes(of: iova, toByteOffset: 8, as: UInt64.self)
      $0.storeBytes(of: length, toByteOffset: 16, as: UInt64.self)
      $0.storeBytes(of: UInt64(UInt(bitPattern: userAddress)), toByteOffset: 24, as: UInt64.self)
    }
    try issue(&command, objects)
    let item = withUnsafeBytes(of: command.payload) { $0.load(fromByteOffset: 4, as: UInt32.self) }
    return PinnedPages(access: self, id: item, iova: iova, length: length)
  }

  /// Reads `buffer.count` bytes at `iova` of the IOAS into `buffer` with the CPU
  /// (`IOMMU_TEST_OP_ACCESS_RW`), as an emulated device's DMA from guest memory.
  ///
  /// `slowPath` (`MOCK_ACCESS_RW_SLOW_PATH`, the kernel's `__IOMMUFD_ACCESS_RW_SLOW_PATH`)
  /// takes the path of a caller outside this process's memory map: each page pinned and
  /// mapped by the kernel, not copied through the memory map. The kernel
  /// answers as for ``pin(iova:length:writable:verifyingAgainst:)``: `ENOENT` for a range
  /// not wholly mapped, `EINVAL` for an empty buffer, `ENOMEM` over ``maximumLength``.
  public func read(from iova: UInt64, into buffer: UnsafeMutableRawBufferPointer, slowPath: Bool = false) throws(IommufdError) {
    try transfer(iova: iova, address: buffer.baseAddress.map(UnsafeRawPointer.init), count: buffer.count, writing: false, slowPath)
  }

  /// Writes `bytes` at `iova` of the IOAS with the CPU (`IOMMU_TEST_OP_ACCESS_RW` with
  /// `MOCK_ACCESS_RW_WRITE`), as an emulated device's DMA into guest memory. `EPERM` for a
  /// mapping without write access; otherwise as ``read(from:into:slowPath:)``.
  public func write(_ bytes: UnsafeRawBufferPointer, to iova: UInt64, slowPath: Bool = false) throws(IommufdError) {
    try transfer(iova: iova, address: bytes.baseAddress, count: bytes.count, writing: true, slowPath)
  }

  private func transfer(iova: UInt64, address: UnsafeRawPointer?, count: Int, writing: Bool, _ slowPath: Bool) throws(IommufdError) {
    let objects: [IommufdError.InvolvedObject] = [.fd(descriptor.fd), .init("iova", "0x\(String(iova, radix: 16))"), .init("length", "\(count)")]
    var command = IOMMUSelfTest.command(CIOMMUFD_TEST_OP_ACCESS_RW, id: ObjectID(UInt32(bitPattern: descriptor.fd.rawValue)))
    let flags = (writing ? CIOMMUFD_MOCK_ACCESS_RW_WRITE : 0) | (slowPath ? CIOMMUFD_MOCK_ACCESS_RW_SLOW_PATH : 0)
    withUnsafeMutableBytes(of: &command.payload) {
      $0.storeBytes(of: iova, as: UInt64.self)
      $0.storeBytes(of: UInt64(count), toByteOffset: 8, as: UInt64.self)
      $0.storeBytes(of: UInt64(UInt(bitPattern: address)), toByteOffset: 16, as: UInt64.self)
      $0.storeBytes(of: flags, toByteOffset: 24, as: UInt32.self)
    }
    try issue(&command, objects)
  }

  /// Moves the access to `ioas` (`IOMMU_TEST_OP_ACCESS_REPLACE_IOAS`), as an emulated
  /// device's attach replaces its IOAS: the pages it has pinned are unpinned first (the
  /// IOAS it is on already changes nothing, and unpins nothing). An IOAS of another context
  /// is `EINVAL`, a destroyed one `ENOENT`, before the kernel is asked.
  public func replace(with ioas: IOAS) throws(IommufdError) {
    guard ioas.iommufd === iommufd else {
      throw IommufdError(
        .testCommand, .invalidArgument, objects: [.fd(descriptor.fd), .ioas(ioas.id)],
        detail: "the IOAS \(ioas.id) belongs to another iommufd context")
    }
    var command = IOMMUSelfTest.command(CIOMMUFD_TEST_OP_ACCESS_REPLACE_IOAS, id: ObjectID(UInt32(bitPattern: descriptor.fd.rawValue)))
    withUnsafeMutableBytes(of: &command.payload) { $0.storeBytes(of: ioas.id.rawValue, as: UInt32.self) }
    // The ioctl and the record under one lock: two replaces in flight end with the handle
    // holding the IOAS the kernel holds.
    let previous = try attached.withLock { (current: inout IOAS) throws(IommufdError) -> IOAS in
      try issue(&command, [.fd(descriptor.fd), .ioas(ioas.id)], using: [ioas.object])
      defer { current = ioas }
      return current
    }
    _ = previous  // released after the lock
  }

  /// Closes the access's descriptor now: the kernel unpins what is still pinned and
  /// destroys the access, which lets its IOAS go. A second call does nothing; any other
  /// call on a closed access is `EBADF`.
  public func close() throws(IommufdError) { try descriptor.close() }

  /// Issues `command` on the context while holding the access's descriptor open, so its
  /// number cannot name another file meanwhile.
  func issue(
    _ command: inout ciommufd_iommu_test_cmd, _ objects: [IommufdError.InvolvedObject], using owned: [OwnedObject] = []
  ) throws(IommufdError) {
    try descriptor.withDescriptor(.testCommand) { _ throws(IommufdError) in
      try iommufd.selfTest.issue(&command, objects, using: owned)
    }
  }

  /// Pages pinned through a ``SelfTestAccess``: released by ``unpin()`` or when the handle
  /// goes (`IOMMU_TEST_OP_DESTROY_ACCESS_PAGES`), unless an unmap of their range or the
  /// access's close unpinned them first. Thread-safe.
  public final class PinnedPages: Sendable {
    /// The access the pages are pinned through.
    public let access: SelfTestAccess
    /// The self-test's number for the pinned range (per access, from 0).
    public let id: UInt32
    /// The first IOVA pinned.
    public let iova: UInt64
    /// The bytes pinned.
    public let length: UInt64
    private let unpinned = Lock(false)

    init(access: SelfTestAccess, id: UInt32, iova: UInt64, length: UInt64) {
      self.access = access
      self.id = id
      self.iova = iova
      self.length = length
    }

    /// Unpins the pages now. `ENOENT` when the kernel no longer has them pinned (an unmap
    /// of their range, or a replace of the access's IOAS, unpinned them), and for a second
    /// call. `EBADF` once the access is closed (its close unpinned them) or its context's
    /// descriptor is (the pages stay pinned until the access closes or is released).
    public func unpin() throws(IommufdError) {
      let objects: [IommufdError.InvolvedObject] = [.fd(access.descriptor.fd), .init("pin", "\(id)")]
      // Under the lock: a second unpin waits for the first and then sees it done.
      try unpinned.withLock { (done: inout Bool) throws(IommufdError) in
        guard !done else {
          throw IommufdError(.testCommand, .noSuchFileOrDirectory, objects: objects, detail: "the pages were unpinned already")
        }
        var command = IOMMUSelfTest.command(CIOMMUFD_TEST_OP_DESTROY_ACCESS_PAGES, id: ObjectID(UInt32(bitPattern: access.descriptor.fd.rawValue)))
        withUnsafeMutableBytes(of: &command.payload) { $0.storeBytes(of: id, as: UInt32.self) }
        do throws(IommufdError) {
          try access.issue(&command, objects)
          done = true
        } catch where error.errno == .noSuchFileOrDirectory && error.detail == nil {
          done = true  // the kernel has none: nothing is left to unpin
          throw IommufdError(
            error.operation, error.errno, objects: objects,
            detail: "the kernel has no pages pinned as \(id) through this access: an unmap of their range, or a replace of the access's IOAS, unpins them")
        } catch {
          throw error
        }
      }
    }

    deinit {
      let done = unpinned.withLock { $0 }
      // A closed access: its close unpinned everything.
      guard !done, !access.descriptor.isClosed else { return }
      do {
        try unpin()
      } catch where error.errno == .noSuchFileOrDirectory {
        // An unmap of the range, or a replace, unpinned them first.
      } catch where error.errno == .badFileDescriptor {
        // The access closed meanwhile (which unpinned them), or its context did: then the
        // access, which this handle kept alive, unpins them when it is released.
      } catch {
        access.iommufd.backend.logger.warning("releasing pinned pages \(id) of a self-test access: \(error)")
      }
    }
  }
}

extension IOMMUSelfTest {
  /// Creates an in-kernel access to `ioas` (`IOMMU_TEST_OP_CREATE_ACCESS`), one that pins
  /// pages when `pinsPages` (`MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES`), which raises the
  /// IOAS's IOVA alignment to the page size (`EADDRINUSE` when a mapping is not aligned so).
  /// An IOAS of another context is `EINVAL`, a destroyed one `ENOENT`, before the kernel is
  /// asked.
  public func createAccess(to ioas: IOAS, pinsPages: Bool = false) throws(IommufdError) -> SelfTestAccess {
    guard ioas.iommufd === iommufd else {
      throw IommufdError(.testCommand, .invalidArgument, objects: [.ioas(ioas.id)], detail: "the IOAS \(ioas.id) belongs to another iommufd context")
    }
    iommufd.allocations.enterReading()
    defer { iommufd.allocations.leaveReading() }
    var command = Self.command(CIOMMUFD_TEST_OP_CREATE_ACCESS, id: ioas.id)
    withUnsafeMutableBytes(of: &command.payload) {
      $0.storeBytes(of: pinsPages ? CIOMMUFD_MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES : 0, toByteOffset: 4, as: UInt32.self)
    }
    try issue(&command, [.ioas(ioas.id)], using: [ioas.object])
    let fd = withUnsafeBytes(of: command.payload) { $0.load(as: Int32.self) }
    return SelfTestAccess(iommufd: iommufd, fd: FileDescriptor(rawValue: fd), ioas: ioas, pinsPages: pinsPages)
  }
}
