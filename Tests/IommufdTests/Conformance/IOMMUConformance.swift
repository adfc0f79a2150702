import Iommufd
import SystemPackage
import Testing

/// Conformance scenarios for `/dev/iommu` without a device, one rule each, run on every
/// platform with the same expectations (the kernel is the reference).
@Suite("conformance: iommufd")
struct IOMMUConformance {
  @Test("GEN-1: a number below the iommufd table goes to the VFIO compat handler: ENOTTY", arguments: Platform.all)
  func gen1(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B7F, le(UInt32(8), UInt32(0))).0 == .inappropriateIOCTLForDevice)
  }

  @Test("GEN-2: the size is read first, so DESTROY with a NULL argument is EFAULT", arguments: Platform.all)
  func gen2(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B80, []).0 == .badAddress)
  }

  @Test("GEN-3: size or direction bits in the number give ENOTTY", arguments: Platform.all)
  func gen3(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x4008_3B80, le(UInt32(8), UInt32(1))).0 == .inappropriateIOCTLForDevice)
  }

  @Test("GEN-4: a size below the minimum is EINVAL", arguments: Platform.all)
  func gen4(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B81, le(UInt32(8), UInt32(0), UInt32(0))).0 == .invalidArgument)
  }

  @Test("GEN-6/DESTROY-4: a non-zero tail is E2BIG before the id is looked up; a zero tail reaches ENOENT", arguments: Platform.all)
  func gen6(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B80, le(UInt32(16), UInt32(99), UInt32(0), UInt32(1))).0 == .argListTooLong)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B80, le(UInt32(16), UInt32(99), UInt32(0), UInt32(0))).0 == .noSuchFileOrDirectory)
  }

  @Test("GEN-6: a longer struct with a zero tail works, and bytes past the kernel's struct are not written (GEN-7)", arguments: Platform.all)
  func gen7(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let (error, reply) = rawIoctl(backend, iommufd.fileDescriptor, 0x3B81, le(UInt32(16), UInt32(0), UInt32(0), UInt32(0)))
    #expect(error == nil)
    #expect(reply == le(UInt32(16), UInt32(0), UInt32(1), UInt32(0)))
  }

  @Test("OBJ-1: ids start at 1, are shared by all objects, and the lowest free one is reused", arguments: Platform.all)
  func obj1(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let first = try iommufd.allocateIOAS()
    let second = try iommufd.allocateIOAS()
    let third = try iommufd.allocateIOAS()
    #expect([first.id, second.id, third.id].map(\.rawValue) == [1, 2, 3])
    try second.destroy()
    #expect(try iommufd.allocateIOAS().id.rawValue == 2)
  }

  @Test("DESTROY-1: an unknown id or 0 is ENOENT", arguments: Platform.all)
  func destroy1(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    #expect(errno { try iommufd.destroy(ObjectID(0)) } == .noSuchFileOrDirectory)
    #expect(errno { try iommufd.destroy(ObjectID(42)) } == .noSuchFileOrDirectory)
  }

  @Test("IOAS_ALLOC-1: flags are EOPNOTSUPP", arguments: Platform.all)
  func ioasAlloc1(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B81, le(UInt32(12), UInt32(1), UInt32(0))).0 == .notSupported)
  }

  @Test("RANGES-2/4: a fresh IOAS has one range [0, U64_MAX] and alignment 1", arguments: Platform.all)
  func ranges2(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    #expect(try ioas.iovaRanges() == IOVARanges(ranges: [IOVARange(start: 0, last: .max)], alignment: 1))
  }

  @Test("RANGES-1/5: reserved is EOPNOTSUPP; capacity 0 writes back the total with EMSGSIZE", arguments: Platform.all)
  func ranges5(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let fd = iommufd.fileDescriptor
    let id = ioas.id.rawValue
    #expect(rawIoctl(backend, fd, 0x3B84, le(UInt32(32), id, UInt32(0), UInt32(1), UInt64(0), UInt64(0))).0 == .notSupported)
    #expect(rawIoctl(backend, fd, 0x3B84, le(UInt32(32), UInt32(77), UInt32(0), UInt32(0), UInt64(0), UInt64(0))).0 == .noSuchFileOrDirectory)
    let (error, reply) = rawIoctl(backend, fd, 0x3B84, le(UInt32(32), id, UInt32(0), UInt32(0), UInt64(0), UInt64(0)))
    #expect(error == .messageTooLong)
    #expect(reply == le(UInt32(32), id, UInt32(1), UInt32(0), UInt64(0), UInt64(1)))
  }

  @Test("ALLOW-2/4: start >= last and overlapping entries are EINVAL; an empty list clears", arguments: Platform.all)
  func allow2(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    #expect(errno { try ioas.allowIOVAs([IOVARange(start: 0x2000, last: 0x2000)]) } == .invalidArgument)
    #expect(errno { try ioas.allowIOVAs([IOVARange(start: 0x1000, last: 0x4fff), IOVARange(start: 0x4000, last: 0x8fff)]) } == .invalidArgument)
    #expect(errno { try ioas.allowIOVAs([IOVARange(start: 0x1000, last: 0x3fff), IOVARange(start: 0x4000, last: 0x8fff)]) } == nil)
    #expect(errno { try ioas.allowIOVAs([]) } == nil)
  }

  @Test("ALLOW-7/IOAS-6: automatic IOVAs come from the allowed ranges only; fixed ones ignore them (IOAS-4)", arguments: Platform.all)
  func allow7(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    try ioas.allowIOVAs([IOVARange(start: 0x40_0000, last: 0x7f_ffff)])
    let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
    #expect(try ioas.unsafeMap(address: address, length: 0x1000) == 0x40_0000)
    #expect(try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x1000)) == 0x1000)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x80_0000) } == .noSpace)
  }

  @Test("MAP-1..5: flag, overflow, permission, IOAS and length checks in the kernel's order", arguments: Platform.all)
  func mapChecks(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let fd = iommufd.fileDescriptor
    let id = ioas.id.rawValue
    func map(_ flags: UInt32, _ ioasID: UInt32, _ userVA: UInt64, _ length: UInt64, _ iova: UInt64, reserved: UInt32 = 0) -> Errno? {
      rawIoctl(backend, fd, 0x3B85, le(UInt32(40), flags, ioasID, reserved, userVA, length, iova)).0
    }
    #expect(map(0x8 | 0x6, id, 0x1000, 0x1000, 0) == .notSupported)  // MAP-1
    #expect(map(0x6, id, 0x1000, 0x1000, 0, reserved: 1) == .notSupported)
    #expect(map(0x6, id, 0x1000, 0x1000, .max) == .overflow)  // MAP-2, even without FIXED
    #expect(map(0x6, id, 0x1000, .max, 0) == .overflow)
    #expect(map(0x1, id, 0x1000, 0x1000, 0) == .invalidArgument)  // MAP-3
    #expect(map(0x6, 99, 0x1000, 0x1000, 0) == .noSuchFileOrDirectory)  // MAP-4
    #expect(map(0x6, id, 0x1000, 0, 0) == .invalidArgument)  // MAP-5
    #expect(map(0x6, id, 0xFFFF_FFFF_FFFF_F000, 0x2000, 0) == .overflow)
    // 6.12 checks the length's limit before the address overflow; 7.2 the other way round.
    #expect(map(0x6, id, 0x1000, UInt64.max - 0x800, 0) == (platform.release == .linux7_2 ? .overflow : .invalidArgument))
  }

  @Test("MAP-7/IOAS-6: without a domain mapping is lazy; the first automatic IOVA is 0x1000 and keeps the page offset", arguments: Platform.all)
  func map7(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    // Fake, unmapped user addresses: nothing is touched without a domain (IOAS-5).
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x1_0000_0000)!, length: 0x1000) == 0x1000)
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x1_0000_4003)!, length: 1) == 0x2003)
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x100_0000_0000)!, length: 0x2000) == 0x4000)
  }

  @Test("MAP-7: the allowed span's start is aligned and given the page offset before the holes are scanned", arguments: Platform.all)
  func map7PageOffset(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x1_0000_0000)!, length: 0x80) == 0x1000)
    // Scanning from 0x1000 would find the hole at 0x1080 and give 0x1080 | 0xd5d = 0x1ddd.
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x1_0000_0d5d)!, length: 1) == 0x1d5d)
  }

  @Test("MAP at the top of the address spaces: a sub-page length at user address 2^64 - 4096 and a fixed IOVA whose last byte is 2^64 - 1 are accepted", arguments: Platform.all)
  func mapAtTheTop(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt(0xffff_ffff_ffff_f000))!, length: 0x800) == 0x1000)
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0000)!, length: 0x1000, at: .fixed(0xffff_ffff_ffff_f000)) == 0xffff_ffff_ffff_f000)
    #expect(try ioas.unmapAll() == 0x1800)
  }

  @Test("VFIO compatibility on /dev/iommu: API version 0, TYPE1/TYPE1v2/UNMAP_ALL, ENODEV without a compat IOAS; map, unmap (an empty range is 0 bytes), info sizing", arguments: Platform.all)
  func vfioCompatibility(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let fd = iommufd.fileDescriptor
    func call(_ request: UInt, _ value: Int) -> Result<Int32, Errno> {
      Result { () throws(Errno) -> Int32 in try backend.calls.ioctl(fd, request, UnsafeMutableRawPointer(bitPattern: value)) }
    }
    #expect(call(0x3B64, 0) == .success(0))
    #expect([1, 3, 9, 2, 5].map { call(0x3B65, $0) } == [.success(1), .success(1), .success(1), .success(0), .success(0)])
    #expect(call(0x3B66, 3) == .failure(.operationNotSupportedByDevice))
    #expect(call(0x3B66, 2) == .failure(.invalidArgument))
    let ioas = try iommufd.allocateIOAS()
    try iommufd.setCompatibilityIOAS(ioas)
    #expect(call(0x3B66, 3) == .success(0))
    let buffer = try DMABuffer(length: 0x2000, backend: backend)
    let user = UInt64(UInt(bitPattern: buffer.bytes.baseAddress))
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(3), user, UInt64(0x100_0000), UInt64(0x2000))).0 == nil)
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(8), user, UInt64(0x200_0000), UInt64(0x2000))).0 == .invalidArgument)
    let (unmapError, unmapped) = rawIoctl(backend, fd, 0x3B72, le(UInt32(24), UInt32(0), UInt64(0x100_0000), UInt64(0x2000)))
    #expect(unmapError == nil)
    #expect(Array(unmapped.suffix(8)) == le(UInt64(0x2000)))
    let (emptyError, empty) = rawIoctl(backend, fd, 0x3B72, le(UInt32(24), UInt32(0), UInt64(0x100_0000), UInt64(0x2000)))
    #expect(emptyError == nil)
    #expect(Array(empty.suffix(8)) == le(UInt64(0)))
    #expect(rawIoctl(backend, fd, 0x3B72, le(UInt32(24), UInt32(2), UInt64(0x100_0000), UInt64(0))).0 == .invalidArgument)
    // GET_INFO with room for the header only: PGSIZES|CAPS and the argsz of all capabilities
    // (24 bytes of info, DMA_AVAIL padded to 16, one IOVA range of 16 after its 16-byte header).
    let (infoError, info) = rawIoctl(backend, fd, 0x3B70, le(UInt32(16), UInt32(0), UInt64(0)))
    #expect(infoError == nil)
    #expect(Array(info.prefix(8)) == le(UInt32(72), UInt32(3)))
  }

  @Test("MAP-8: fixed overlaps are EEXIST (exact, subset, superset, straddling); IOVA 0 is allowed", arguments: Platform.all)
  func map8(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
    #expect(try ioas.unsafeMap(address: address, length: 0x4000, at: .fixed(0x10000)) == 0x10000)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x4000, at: .fixed(0x10000)) } == .fileExists)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x11000)) } == .fileExists)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x8000, at: .fixed(0xc000)) } == .fileExists)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x2000, at: .fixed(0x13000)) } == .fileExists)
    #expect(try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0)) == 0)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x2000, at: .fixed(UInt64.max - 0xfff)) } == .overflow)
  }

  @Test("UNMAP-1..5: IOAS first, unmap-all on empty is 0, overflow, zero length, ranges covering nothing", arguments: Platform.all)
  func unmapChecks(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    #expect(try ioas.unmapAll() == 0)
    #expect(errno { try ioas.unmap(iova: .max, length: 1) } == .overflow)
    #expect(errno { try ioas.unmap(iova: 0x1000, length: .max) } == .overflow)
    #expect(errno { try ioas.unmap(iova: 0x1000, length: 0) } == .invalidArgument)
    #expect(errno { try ioas.unmap(iova: UInt64.max - 0xfff, length: 0x2000) } == .overflow)
    #expect(errno { try ioas.unmap(iova: 0x1000, length: 0x1000) } == .noSuchFileOrDirectory)
    try ioas.destroy()
    #expect(errno { try ioas.unmapAll() } == .noSuchFileOrDirectory)
  }

  @Test("UNMAP-5/6/7: splitting is ENOENT, areas before the straddler stay removed, the result counts whole areas", arguments: Platform.all)
  func unmapAreas(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
    _ = try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x1000))
    _ = try ioas.unsafeMap(address: address, length: 0x2000, at: .fixed(0x3000))
    _ = try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x8000))
    #expect(errno { try ioas.unmap(iova: 0x3000, length: 0x1000) } == .noSuchFileOrDirectory)
    #expect(errno { try ioas.unmap(iova: 0x1000, length: 0x3000) } == .noSuchFileOrDirectory)
    #expect(errno { try ioas.unmap(iova: 0x1000, length: 0x1000) } == .noSuchFileOrDirectory)  // already gone
    #expect(try ioas.unmap(iova: 0, length: 0x10000) == 0x3000)
  }

  @Test("COPY-5/9: sub-ranges across adjacent areas copy at byte granularity; a gap is ENOENT", arguments: Platform.all)
  func copy(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
    _ = try source.unsafeMap(address: address, length: 0x1000, at: .fixed(0x1000))
    _ = try source.unsafeMap(address: address + 0x1000, length: 0x1000, at: .fixed(0x2000))
    _ = try source.unsafeMap(address: address, length: 0x1000, at: .fixed(0x4000))
    #expect(try destination.copy(from: source, sourceIOVA: 0x1800, length: 0x1000, to: .fixed(0x10800)) == 0x10800)
    // COPY-9: one destination area per source area touched.
    #expect(errno { try destination.unmap(iova: 0x10800, length: 0x800) } == nil)
    #expect(try destination.unmapAll() == 0x800)
    #expect(errno { try destination.copy(from: source, sourceIOVA: 0x2800, length: 0x2000) } == .noSuchFileOrDirectory)
    #expect(errno { try destination.copy(from: source, sourceIOVA: 0x1000, length: 0) } == .invalidArgument)
    #expect(errno { try destination.copy(from: source, sourceIOVA: 0x9000, length: 0x1000) } == .noSuchFileOrDirectory)
  }

  @Test("COPY-8: WRITEABLE from pages mapped read-only is EPERM", arguments: Platform.all)
  func copyPermission(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    _ = try source.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0000)!, length: 0x1000, at: .fixed(0x1000), access: .readable)
    #expect(errno { try destination.copy(from: source, sourceIOVA: 0x1000, length: 0x1000, access: .readWrite) } == .notPermitted)
    #expect(try destination.copy(from: source, sourceIOVA: 0x1000, length: 0x1000, access: .readable) == 0x1000)
  }

  @Test("OPT-3: RLIMIT mode is 0 by default, cannot change while objects exist (EBUSY), only 0 or 1", arguments: Platform.all)
  func opt3(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    #expect(try iommufd.memoryLimitAccounting() == .perUser)
    let backend = iommufd.backend
    // SET with val64 2.
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B87, le(UInt32(24), UInt32(0), UInt16(0), UInt16(0), UInt32(0), UInt64(2))).0 == .invalidArgument)
    try iommufd.setMemoryLimitAccounting(.perProcess)
    #expect(try iommufd.memoryLimitAccounting() == .perProcess)
    let ioas = try iommufd.allocateIOAS()
    #expect(errno { try iommufd.setMemoryLimitAccounting(.perUser) } == .resourceBusy)
    _ = ioas
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B87, le(UInt32(24), UInt32(0), UInt16(0), UInt16(0), UInt32(1), UInt64(0))).0 == .notSupported)
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B87, le(UInt32(24), UInt32(7), UInt16(1), UInt16(0), UInt32(0), UInt64(0))).0 == .notSupported)
  }

  @Test("OPT-4: huge pages on by default; disabling raises the alignment to PAGE_SIZE; 2 is EINVAL; unknown IOAS ENOENT", arguments: Platform.all)
  func opt4(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    #expect(try ioas.hugePagesEnabled())
    _ = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0000)!, length: 0x800, at: .fixed(0x1000))
    #expect(errno { try ioas.setHugePages(enabled: false) } == .addressInUse)
    try ioas.unmapAll()
    try ioas.setHugePages(enabled: false)
    #expect(try !ioas.hugePagesEnabled())
    #expect(try ioas.iovaRanges().alignment == 4096)
    #expect(rawIoctl(iommufd.backend, iommufd.fileDescriptor, 0x3B87, le(UInt32(24), UInt32(1), UInt16(0), UInt16(0), ioas.id.rawValue, UInt64(2))).0 == .invalidArgument)
    try ioas.setHugePages(enabled: true)
    #expect(try ioas.iovaRanges().alignment == 1)
    #expect(rawIoctl(iommufd.backend, iommufd.fileDescriptor, 0x3B87, le(UInt32(24), UInt32(1), UInt16(1), UInt16(0), UInt32(99), UInt64(0))).0 == .noSuchFileOrDirectory)
  }

  @Test("VIOAS-2/3/4, DESTROY-5: no compat IOAS is ENODEV; SET records it; destroying it clears it", arguments: Platform.all)
  func vioas(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    #expect(try iommufd.compatibilityIOASID() == nil)
    let ioas = try iommufd.allocateIOAS()
    try iommufd.setCompatibilityIOAS(ioas)
    #expect(try iommufd.compatibilityIOASID() == ioas.id)
    try ioas.destroy()
    #expect(try iommufd.compatibilityIOASID() == nil)
    try iommufd.setCompatibilityIOAS(nil)
  }
}
