import CIommufd
import Iommufd
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The self-test's access ops (an in-kernel access, as an emulated VFIO driver has one),
/// with the kernel's check orders (`selftest.c`, `device.c:iommufd_access_*`).
extension SelfTestOpConformance {
  /// EBADFD: the self-test's answer for a descriptor that is no access.
  static let badDescriptorState = Errno(rawValue: 77)
  /// EBADE: the pinned pages are not the user's.
  static let invalidExchange = Errno(rawValue: 52)

  /// CREATE_ACCESS on `ioas`; the access's descriptor.
  static func createAccess(_ iommufd: IOMMUFD, _ ioas: UInt32, pinning: Bool) throws -> Int32 {
    let (failure, reply) = command(iommufd, CIOMMUFD_TEST_OP_CREATE_ACCESS, id: ioas, le(UInt32(0), UInt32(pinning ? 1 : 0)))
    if let failure { throw failure }
    return Int32(bitPattern: UInt32(reply[16]) | UInt32(reply[17]) << 8 | UInt32(reply[18]) << 16 | UInt32(reply[19]) << 24)
  }

  /// ACCESS_PAGES: the errno and the item id.
  static func accessPages(_ iommufd: IOMMUFD, _ access: Int32, flags: UInt32 = 0, iova: UInt64, length: UInt64, uptr: UInt64 = 0) -> (Errno?, UInt32) {
    let (failure, reply) = command(
      iommufd, CIOMMUFD_TEST_OP_ACCESS_PAGES, id: UInt32(bitPattern: access), le(flags, UInt32(0), iova, length, uptr))
    return (failure, UInt32(reply[20]) | UInt32(reply[21]) << 8 | UInt32(reply[22]) << 16 | UInt32(reply[23]) << 24)
  }

  static func accessRW(_ iommufd: IOMMUFD, _ access: Int32, iova: UInt64, length: UInt64, uptr: UInt64, flags: UInt32) -> Errno? {
    command(iommufd, CIOMMUFD_TEST_OP_ACCESS_RW, id: UInt32(bitPattern: access), le(iova, length, uptr, flags)).0
  }

  static func destroyAccessPages(_ iommufd: IOMMUFD, _ access: Int32, _ item: UInt32) -> Errno? {
    command(iommufd, CIOMMUFD_TEST_OP_DESTROY_ACCESS_PAGES, id: UInt32(bitPattern: access), le(item)).0
  }

  static func refs(_ iommufd: IOMMUFD, _ user: UInt64, _ length: UInt64, _ refs: UInt32) -> Errno? {
    command(iommufd, CIOMMUFD_TEST_OP_MD_CHECK_REFS, id: 0, le(length, user, refs)).0
  }

  /// `IOMMU_DESTROY` of a raw id.
  static func destroy(_ iommufd: IOMMUFD, _ id: UInt32) -> Errno? {
    rawIoctl(iommufd.backend, iommufd.fileDescriptor, UInt(CIOMMUFD_IOMMU_DESTROY), le(UInt32(8), id)).0
  }

  @Test("CREATE_ACCESS: unknown flags EOPNOTSUPP, an unknown IOAS ENOENT; the access takes an id nobody is told, which DESTROY calls busy, and holds its IOAS until its descriptor closes", arguments: Platform.mock)
  func createAccess(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_CREATE_ACCESS, id: ioas.id.rawValue, le(UInt32(0), UInt32(2))).0 == .notSupported)
    #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_CREATE_ACCESS, id: 7, le(UInt32(0), UInt32(1))).0 == .noSuchFileOrDirectory)
    let access = try Self.createAccess(iommufd, ioas.id.rawValue, pinning: true)
    #expect(try iommufd.allocateIOAS().id == ObjectID(3))  // the access took 2
    #expect(Self.destroy(iommufd, 2) == .resourceBusy)
    #expect(errno { try ioas.destroy() } == .resourceBusy)
    // The descriptor is not an iommufd: its ioctls are ENOTTY.
    #expect(rawIoctl(backend, FileDescriptor(rawValue: access), UInt(CIOMMUFD_IOMMU_DESTROY), le(UInt32(8), UInt32(1))).0 == .inappropriateIOCTLForDevice)
    try backend.calls.close(FileDescriptor(rawValue: access))
    #expect(Self.destroy(iommufd, 2) == .noSuchFileOrDirectory)
    #expect(errno { try ioas.destroy() } == nil)
  }

  @Test("CREATE_ACCESS: a pinning access aligns its IOAS to pages: an area at a sub-page offset makes it EADDRINUSE; an access that does not pin attaches", arguments: Platform.mock)
  func createAccessAlignment(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let pages = try Pages(length: 8192, protection: PROT_READ | PROT_WRITE)
    _ = try ioas.unsafeMap(address: pages.address + 0x100, length: 0x800, at: .fixed(0x100_0100), access: .readWrite)
    #expect(errno { try Self.createAccess(iommufd, ioas.id.rawValue, pinning: true) } == .addressInUse)
    let plain = try Self.createAccess(iommufd, ioas.id.rawValue, pinning: false)
    try backend.calls.close(FileDescriptor(rawValue: plain))
  }

  @Test("ACCESS_PAGES: over 16 MiB ENOMEM, unknown flags EOPNOTSUPP, then EBADFD for no access, EOPNOTSUPP for one that does not pin, EINVAL, EOVERFLOW, ENOENT for a gap, EPERM, EBADE for other user pages; items count from 0 and an unmap takes them", arguments: Platform.mock)
  func accessPages(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let pages = try Pages(length: 16384, protection: PROT_READ | PROT_WRITE)
    let readOnly = try Pages(length: 4096, protection: PROT_READ)
    _ = try ioas.unsafeMap(address: pages.address, length: 16384, at: .fixed(0x100_0000), access: .readWrite)
    _ = try ioas.unsafeMap(address: readOnly.address, length: 4096, at: .fixed(0x200_0000), access: .readable)
    let access = try Self.createAccess(iommufd, ioas.id.rawValue, pinning: true)
    let plain = try Self.createAccess(iommufd, ioas.id.rawValue, pinning: false)
    #expect(Self.accessPages(iommufd, 0, iova: 0x100_0000, length: (16 << 20) + 1).0 == .noMemory)
    #expect(Self.accessPages(iommufd, 0, flags: 2, iova: 0x100_0000, length: 4096).0 == .notSupported)
    #expect(Self.accessPages(iommufd, 0, iova: 0x100_0000, length: 4096).0 == Self.badDescriptorState)
    #expect(Self.accessPages(iommufd, plain, iova: 0x100_0000, length: 4096).0 == .notSupported)
    #expect(Self.accessPages(iommufd, access, iova: 0x100_0000, length: 0).0 == .invalidArgument)
    #expect(Self.accessPages(iommufd, access, iova: UInt64.max - 0xfff, length: 0x2000).0 == .overflow)
    #expect(Self.accessPages(iommufd, access, iova: 0x300_0000, length: 4096).0 == .noSuchFileOrDirectory)
    #expect(Self.accessPages(iommufd, access, iova: 0x100_3000, length: 0x2000).0 == .noSuchFileOrDirectory)
    #expect(Self.accessPages(iommufd, access, flags: 1, iova: 0x200_0000, length: 4096).0 == .notPermitted)
    #expect(Self.accessPages(iommufd, access, iova: 0x100_0000, length: 4096, uptr: readOnly.value).0 == Self.invalidExchange)
    #expect(Self.refs(iommufd, pages.value, 4096, 0) == nil)  // the failures left nothing pinned
    let first = Self.accessPages(iommufd, access, iova: 0x100_0000, length: 8192, uptr: pages.value)
    #expect(first.0 == nil && first.1 == 0)
    let second = Self.accessPages(iommufd, access, iova: 0x100_0000, length: 8192)
    #expect(second.0 == nil && second.1 == 1)
    // Pinned once, however many items hold the pages, and without a domain.
    #expect(Self.refs(iommufd, pages.value, 8192, 1) == nil)
    #expect(Self.refs(iommufd, pages.value + 8192, 8192, 0) == nil)
    #expect(Self.destroyAccessPages(iommufd, access, 5) == .noSuchFileOrDirectory)
    #expect(Self.destroyAccessPages(iommufd, access, 1) == nil)
    #expect(Self.destroyAccessPages(iommufd, access, 0) == nil)
    let third = Self.accessPages(iommufd, access, iova: 0x100_2000, length: 4096)
    #expect(third.0 == nil && third.1 == 2)
    // The unmap asks the access to let go: the item is gone and the page unpinned.
    #expect(try ioas.unmap(iova: 0x100_0000, length: 16384) == 16384)
    #expect(Self.destroyAccessPages(iommufd, access, 2) == .noSuchFileOrDirectory)
    #expect(Self.refs(iommufd, pages.value + 0x2000, 4096, 0) == nil)
    try backend.calls.close(FileDescriptor(rawValue: plain))
    try backend.calls.close(FileDescriptor(rawValue: access))
  }

  @Test("ACCESS_RW: reads and writes across pages, on the fast and the slow path, through any iommufd; EPERM, ENOENT at a gap, EFAULT for the user's buffer, EINVAL for 0 bytes", arguments: Platform.mock)
  func accessReadWrite(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let other = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let pages = try Pages(length: 16384, protection: PROT_READ | PROT_WRITE)
    let readOnly = try Pages(length: 4096, protection: PROT_READ)
    let buffer = try Pages(length: 16384, protection: PROT_READ | PROT_WRITE)
    _ = try ioas.unsafeMap(address: pages.address, length: 16384, at: .fixed(0x100_0000), access: .readWrite)
    _ = try ioas.unsafeMap(address: readOnly.address, length: 4096, at: .fixed(0x200_0000), access: .readable)
    let access = try Self.createAccess(iommufd, ioas.id.rawValue, pinning: false)
    for index in 0..<16 { buffer.address.storeBytes(of: UInt8(index + 1), toByteOffset: index, as: UInt8.self) }
    #expect(Self.accessRW(iommufd, access, iova: 0x100_0ffa, length: 16, uptr: buffer.value, flags: 1) == nil)
    #expect((0..<16).allSatisfy { pages.address.load(fromByteOffset: 0xffa + $0, as: UInt8.self) == UInt8($0 + 1) })
    for flags: UInt32 in [0, 4] {
      memset(buffer.address, 0, 16384)
      #expect(Self.accessRW(other, access, iova: 0x100_0000, length: 16384, uptr: buffer.value, flags: flags) == nil)
      #expect(memcmp(buffer.address, pages.address, 16384) == 0, "flags \(flags)")
    }
    #expect(Self.accessRW(iommufd, access, iova: 0x200_0000, length: 16, uptr: buffer.value, flags: 1) == .notPermitted)
    #expect(Self.accessRW(iommufd, access, iova: 0x200_0000, length: 16, uptr: buffer.value, flags: 0) == nil)
    #expect(Self.accessRW(iommufd, access, iova: 0x100_3000, length: 0x2000, uptr: buffer.value, flags: 0) == .noSuchFileOrDirectory)
    #expect(Self.accessRW(iommufd, access, iova: 0x100_0000, length: 16, uptr: unmappedAddress(), flags: 0) == .badAddress)
    #expect(Self.accessRW(iommufd, access, iova: 0x100_0000, length: 16, uptr: unmappedAddress(), flags: 1) == .badAddress)
    #expect(Self.accessRW(iommufd, access, iova: 0x100_0000, length: 0, uptr: buffer.value, flags: 0) == .invalidArgument)
    #expect(Self.accessRW(iommufd, access, iova: 0x100_0000, length: 16, uptr: buffer.value, flags: 2) == .notSupported)
    #expect(Self.accessRW(iommufd, access, iova: 0x100_0000, length: (16 << 20) + 1, uptr: buffer.value, flags: 0) == .noMemory)
    #expect(Self.accessRW(iommufd, 0, iova: 0x100_0000, length: 16, uptr: buffer.value, flags: 0) == Self.badDescriptorState)
    try backend.calls.close(FileDescriptor(rawValue: access))
  }

  @Test("ACCESS_REPLACE_IOAS: EBADFD for no access, ENOENT for an unknown IOAS; a move drops what the access pinned and frees the old IOAS", arguments: Platform.mock)
  func replaceAccessIOAS(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let target = try iommufd.allocateIOAS()
    let pages = try Pages(length: 8192, protection: PROT_READ | PROT_WRITE)
    _ = try ioas.unsafeMap(address: pages.address, length: 8192, at: .fixed(0x100_0000), access: .readWrite)
    let access = try Self.createAccess(iommufd, ioas.id.rawValue, pinning: true)
    #expect(Self.accessPages(iommufd, access, iova: 0x100_0000, length: 8192).0 == nil)
    let op = CIOMMUFD_TEST_OP_ACCESS_REPLACE_IOAS
    #expect(Self.command(iommufd, op, id: 0, le(target.id.rawValue)).0 == Self.badDescriptorState)
    #expect(Self.command(iommufd, op, id: UInt32(bitPattern: access), le(UInt32(99))).0 == .noSuchFileOrDirectory)
    #expect(Self.command(iommufd, op, id: UInt32(bitPattern: access), le(ioas.id.rawValue)).0 == nil)  // the same: nothing changes
    #expect(Self.refs(iommufd, pages.value, 8192, 1) == nil)
    #expect(Self.command(iommufd, op, id: UInt32(bitPattern: access), le(target.id.rawValue)).0 == nil)
    #expect(Self.refs(iommufd, pages.value, 8192, 0) == nil)
    #expect(Self.destroyAccessPages(iommufd, access, 0) == .noSuchFileOrDirectory)
    #expect(errno { try ioas.destroy() } == nil)
    #expect(errno { try target.destroy() } == .resourceBusy)
    try backend.calls.close(FileDescriptor(rawValue: access))
  }
}

/// The 7.2 self-test's dma-buf exporter and `IOMMU_IOAS_MAP_FILE` of a dma-buf.
extension SelfTestOpConformance {
  @Test("DMABUF (7.2): GET rounds to pages (0 or over 512 pages EINVAL) and returns a descriptor; MAP_FILE must end inside it (EINVAL), not revoked (ENODEV); REVOKE of no descriptor EBADF, of another file EINVAL; an access cannot pin or copy it (EINVAL)", arguments: Platform.mock7_2)
  func dmabuf(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    func get(_ length: UInt32) -> (Errno?, Int32) {
      let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 72, alignment: 8)
      defer { buffer.deallocate() }
      buffer.copyBytes(from: le(UInt32(72), UInt32(22), UInt32(0), UInt32(0), length, UInt32(O_CLOEXEC)) + [UInt8](repeating: 0, count: 48))
      do throws(Errno) {
        return (nil, try backend.calls.ioctl(iommufd.fileDescriptor, UInt(CIOMMUFD_IOMMU_TEST_CMD), buffer.baseAddress))
      } catch {
        return (error, -1)
      }
    }
    #expect(get(0).0 == .invalidArgument)
    #expect(get(4096 * 512 + 1).0 == .invalidArgument)
    let (failure, dmabuf) = get(4096 * 3 + 1)  // 4 pages
    #expect(failure == nil && dmabuf >= 0)
    let revoke = { (fd: Int32, revoked: UInt32) -> Errno? in
      Self.command(iommufd, CIOMMUFD_TEST_OP_DMABUF_REVOKE, id: 0, le(fd, revoked)).0
    }
    #expect(revoke(9999, 1) == .badFileDescriptor)
    #expect(revoke(iommufd.fileDescriptor.rawValue, 1) == .invalidArgument)
    let file = FileDescriptor(rawValue: dmabuf)
    #expect(errno { try ioas.mapFile(file, offset: 0, length: 0) } == .invalidArgument)
    #expect(errno { try ioas.mapFile(file, offset: 4096, length: 16384) } == .invalidArgument)
    #expect(errno { try ioas.mapFile(file, offset: 0, length: 16385) } == .invalidArgument)
    #expect(revoke(dmabuf, 1) == nil)
    #expect(errno { try ioas.mapFile(file, offset: 0, length: 16384) } == .operationNotSupportedByDevice)
    #expect(revoke(dmabuf, 0) == nil)
    let iova = try ioas.mapFile(file, offset: 0, length: 16384, at: .fixed(0x100_0000))
    #expect(iova == 0x100_0000)
    let access = try Self.createAccess(iommufd, ioas.id.rawValue, pinning: true)
    #expect(Self.accessPages(iommufd, access, iova: iova, length: 4096).0 == .invalidArgument)
    let buffer = try Pages(length: 4096, protection: PROT_READ | PROT_WRITE)
    #expect(Self.accessRW(iommufd, access, iova: iova, length: 16, uptr: buffer.value, flags: 0) == .invalidArgument)
    try backend.calls.close(FileDescriptor(rawValue: access))
    // The mapping keeps the dma-buf after its descriptor is closed; a mock domain maps it.
    try backend.calls.close(file)
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    #expect(try ioas.unmap(iova: iova, length: 16384) == 16384)
    _ = mock
  }
}
