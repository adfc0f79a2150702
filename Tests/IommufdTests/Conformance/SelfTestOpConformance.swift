import CIommufd
import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Conformance of the self-test ops the kernel's own selftests lean on, and of the orders
/// in which the kernel checks their arguments, on the simulated test kernels and on the
/// lab's mock boots (semantics §7).
@Suite("conformance: self-test ops")
struct SelfTestOpConformance {
  /// Issues `IOMMU_TEST_CMD` `op` on object `id` with `payload` (from offset 16) as a C
  /// program would; returns the errno (nil on success) and the command afterwards.
  static func command(_ iommufd: IOMMUFD, _ op: UInt32, id: UInt32, _ payload: [UInt8] = []) -> (Errno?, [UInt8]) {
    var command = ciommufd_iommu_test_cmd()
    command.size = UInt32(MemoryLayout<ciommufd_iommu_test_cmd>.size)
    command.op = op
    command.id = id
    var bytes = withUnsafeBytes(of: command) { Array($0) }
    bytes.replaceSubrange(16..<(16 + payload.count), with: payload)
    return rawIoctl(iommufd.backend, iommufd.fileDescriptor, UInt(CIOMMUFD_IOMMU_TEST_CMD), bytes)
  }

  /// Anonymous memory with protection `protection`, unmapped when the test ends.
  final class Pages {
    let address: UnsafeMutableRawPointer
    let length: Int
    init(length: Int, protection: Int32) throws {
      let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
      guard let address, address != MAP_FAILED else { throw Errno(rawValue: Glibc.errno) }
      address.initializeMemory(as: UInt8.self, repeating: 0x5A, count: length)
      if protection != PROT_READ | PROT_WRITE { mprotect(address, length, protection) }
      self.address = address
      self.length = length
    }
    var value: UInt64 { UInt64(UInt(bitPattern: address)) }
    deinit { munmap(address, length) }
  }

  @Test("PIN: pinning honours protections: READABLE of a PROT_NONE page and WRITEABLE of a read-only page are EFAULT; READABLE of a read-only page pins", arguments: Platform.mock)
  func pinProtections(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    let none = try Pages(length: 4096, protection: PROT_NONE)
    let readOnly = try Pages(length: 4096, protection: PROT_READ)
    #expect(errno { try ioas.unsafeMap(address: none.address, length: 4096, access: .readable) } == .badAddress)
    #expect(errno { try ioas.unsafeMap(address: readOnly.address, length: 4096, access: .readWrite) } == .badAddress)
    let iova = try ioas.unsafeMap(address: readOnly.address, length: 4096, access: .readable)
    #expect(try ioas.unmap(iova: iova, length: 4096) == 4096)
    // The last page of the address space: its end wraps, and pin_user_pages says EOVERFLOW.
    #expect(errno { try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt(0xffff_ffff_ffff_f000))!, length: 0x800, access: .readable) } == .overflow)
    // Without a domain nothing is pinned, so nothing is checked until a domain comes.
    try mock.destroy()
    _ = try ioas.unsafeMap(address: readOnly.address, length: 4096, at: .fixed(0x100_0000), access: .readWrite)
    #expect(errno { try iommufd.selfTest.attachMockDevice(to: ioas) } == .badAddress)
  }

  @Test("MOCK_DOMAIN: the ids are taken before the target is looked up: on a fresh context id 1 is ENOENT, id 2 (the new device) EINVAL, id 3 ENOENT", arguments: Platform.mock)
  func mockDomainOrder(platform: Platform) throws {
    for (id, expected) in [(UInt32(1), Errno.noSuchFileOrDirectory), (2, .invalidArgument), (3, .noSuchFileOrDirectory)] {
      let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
      #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_MOCK_DOMAIN, id: id).0 == expected, "id \(id)")
      #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS, id: id).0 == expected, "id \(id), FLAGS")
      #expect(try iommufd.allocateIOAS().id == ObjectID(1))  // nothing was left behind
    }
  }

  @Test("ADD_RESERVED: length 0 is EINVAL and a wrapping range EOVERFLOW before the IOAS lookup (ENOENT)", arguments: Platform.mock)
  func addReservedOrder(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_ADD_RESERVED, id: 0, le(UInt64(0x1000), UInt64(0))).0 == .invalidArgument)
    #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_ADD_RESERVED, id: 0, le(UInt64.max, UInt64(2))).0 == .overflow)
    #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_ADD_RESERVED, id: 0, le(UInt64(0x1000), UInt64(0x1000))).0 == .noSuchFileOrDirectory)
  }

  @Test("SET_TEMP_MEMORY_LIMIT: below 12 bytes EINVAL, else 0", arguments: Platform.mock)
  func temporaryMemoryLimit(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_SET_TEMP_MEMORY_LIMIT, id: 0, le(UInt32(11))).0 == .invalidArgument)
    #expect(Self.command(iommufd, CIOMMUFD_TEST_OP_SET_TEMP_MEMORY_LIMIT, id: 0, le(UInt32(65536))).0 == nil)  // the default
  }

  @Test("MD_CHECK_MAP: the mock domain maps each IO page to the user page; another page, an unmapped IOVA or an unaligned range is EINVAL; an IOAS id ENOENT", arguments: Platform.mock)
  func checkMap(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    let buffer = try DMABuffer(length: 8192, backend: backend)
    let other = try DMABuffer(length: 8192, backend: backend)
    let mapping = try ioas.map(buffer, at: .fixed(0x100_0000))
    let hwpt = mock.pageTableID.rawValue
    let user = UInt64(UInt(bitPattern: buffer.bytes.baseAddress))
    let elsewhere = UInt64(UInt(bitPattern: other.bytes.baseAddress))
    let op = CIOMMUFD_TEST_OP_MD_CHECK_MAP
    #expect(Self.command(iommufd, op, id: hwpt, le(UInt64(0x100_0000), UInt64(8192), user)).0 == nil)
    #expect(Self.command(iommufd, op, id: hwpt, le(UInt64(0x100_0800), UInt64(2048), user + 2048)).0 == nil)
    #expect(Self.command(iommufd, op, id: hwpt, le(UInt64(0x100_0000), UInt64(4096), elsewhere)).0 == .invalidArgument)
    #expect(Self.command(iommufd, op, id: hwpt, le(UInt64(0x100_0000), UInt64(4096), user + 4096)).0 == .invalidArgument)
    #expect(Self.command(iommufd, op, id: hwpt, le(UInt64(0x200_0000), UInt64(4096), user)).0 == .invalidArgument)
    #expect(Self.command(iommufd, op, id: hwpt, le(UInt64(0x100_0100), UInt64(2048), user)).0 == .invalidArgument)
    #expect(Self.command(iommufd, op, id: ioas.id.rawValue, le(UInt64(0x100_0000), UInt64(4096), user)).0 == .noSuchFileOrDirectory)
    // The user page is fetched as get_user_pages_fast does: a page whose end wraps is EOVERFLOW.
    #expect(Self.command(iommufd, op, id: hwpt, le(UInt64(0x100_0000), UInt64(2048), UInt64(0xffff_ffff_ffff_f000))).0 == .overflow)
    _ = mapping
  }

  @Test("MD_CHECK_REFS: a page mapped in an IOAS with a domain is pinned once, twice when mapped twice, 0 after unmap; EIO for another count; EINVAL unaligned", arguments: Platform.mock)
  func checkRefs(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    let buffer = try DMABuffer(length: 8192, backend: backend)
    let user = UInt64(UInt(bitPattern: buffer.bytes.baseAddress))
    let op = CIOMMUFD_TEST_OP_MD_CHECK_REFS
    #expect(Self.command(iommufd, op, id: 0, le(UInt64(8192), user, UInt32(0))).0 == nil)
    var first: DMAMapping? = try ioas.map(buffer)
    #expect(Self.command(iommufd, op, id: 0, le(UInt64(8192), user, UInt32(1))).0 == nil)
    #expect(Self.command(iommufd, op, id: 0, le(UInt64(8192), user, UInt32(0))).0 == .ioError)
    var second = try ioas.map(buffer)
    #expect(Self.command(iommufd, op, id: 0, le(UInt64(8192), user, UInt32(2))).0 == nil)
    #expect(Self.command(iommufd, op, id: 0, le(UInt64(4096), user + 1, UInt32(2))).0 == .invalidArgument)
    #expect(Self.command(iommufd, op, id: 0, le(UInt64(100), user, UInt32(2))).0 == .invalidArgument)
    first = nil
    try second.unmap()
    #expect(Self.command(iommufd, op, id: 0, le(UInt64(8192), user, UInt32(0))).0 == nil)
    _ = (first?.iova, mock)
  }

  @Test("MAP_FILE holds the file it maps: a context whose descriptor another context's area maps stays alive after close, its pins too, until that area goes", arguments: Platform.mock7_2)
  func mapFileHoldsTheFile(platform: Platform) throws {
    let backend = platform.makeBackend()
    let holder = try IOMMUFD.open(backend: backend)
    let held = try IOMMUFD.open(backend: backend)
    let heldIOAS = try held.allocateIOAS()
    let mock = try held.selfTest.attachMockDevice(to: heldIOAS)
    let buffer = try DMABuffer(length: 8192, backend: backend)
    let user = UInt64(UInt(bitPattern: buffer.bytes.baseAddress))
    let op = CIOMMUFD_TEST_OP_MD_CHECK_REFS
    // The held context pins the buffer through its mock domain; the descriptor is given up
    // without unmapping, as a process that exits would.
    _ = try heldIOAS.unsafeMap(address: buffer.bytes.baseAddress!, length: 8192, at: .fixed(0x100_0000), access: .readWrite)
    let holderIOAS = try holder.allocateIOAS()
    let area = try holderIOAS.mapFile(held.fileDescriptor, offset: 0, length: 4096, at: .fixed(0x200_0000))
    #expect(Self.command(holder, op, id: 0, le(UInt64(8192), user, UInt32(1))).0 == nil)
    // Closing the held descriptor releases nothing: the area holds the file.
    try held.close()
    #expect(Self.command(holder, op, id: 0, le(UInt64(8192), user, UInt32(1))).0 == nil)
    // The area goes, and with it the last reference: the context, its domain and its pins.
    #expect(try holderIOAS.unmap(iova: area, length: 4096) == 4096)
    #expect(Self.command(holder, op, id: 0, le(UInt64(8192), user, UInt32(0))).0 == nil)
    _ = (mock, heldIOAS)
  }

  @Test("MD_CHECK_REFS checks nothing of a page that is part of a compound page: any count passes on a transparent huge page", arguments: Platform.mock)
  func checkRefsSkipsCompoundPages(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let region = try #require(HugePageRegion())
    defer { withExtendedLifetime(region) {} }
    let memory = region.memory
    // A transparent huge page: 512 physically contiguous frames from a 2 MiB-aligned one
    // (frames hidden, or no huge page given: nothing to check here).
    let frames = physicalFrames(memory, count: HugePageRegion.size / 0x1000)
    guard frames[0] != 0, frames[0] % 512 == 0, frames.enumerated().allSatisfy({ $0.element == frames[0] + UInt64($0.offset) }) else { return }
    let user = UInt64(UInt(bitPattern: memory))
    let op = CIOMMUFD_TEST_OP_MD_CHECK_REFS
    for refs in [UInt32(0), 1, 7] {
      #expect(Self.command(iommufd, op, id: 0, le(UInt64(0x8000), user + 0x10000, refs)).0 == nil)
    }
  }

  @Test("COPY on a test kernel: flag bit 16 (syzkaller mode) is dropped and the source IOVA read as {nth area, offset}; the reply carries both", arguments: Platform.mock)
  func copySyzkallerMode(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 8192, backend: backend)
    let mapping = try source.map(buffer, at: .fixed(0x100_0000))
    func copy(nth: UInt32, offset: UInt32, to iova: UInt64) -> (Errno?, ciommufd_iommu_ioas_copy) {
      var request = ciommufd_iommu_ioas_copy()
      request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_copy>.size)
      request.flags = CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_READABLE | CIOMMUFD_IOAS_MAP_WRITEABLE | (1 << 16)
      request.dst_ioas_id = destination.id.rawValue
      request.src_ioas_id = source.id.rawValue
      request.length = 0x1000
      request.dst_iova = iova
      request.src_iova = UInt64(offset) << 32 | UInt64(nth)
      let (error, bytes) = rawIoctl(backend, iommufd.fileDescriptor, UInt(CIOMMUFD_IOMMU_IOAS_COPY), withUnsafeBytes(of: request) { Array($0) })
      return (error, bytes.withUnsafeBytes { $0.loadUnaligned(as: ciommufd_iommu_ioas_copy.self) })
    }
    let (error, reply) = copy(nth: 0, offset: 0x1000, to: 0x400_0000)
    #expect(error == nil)
    #expect(reply.src_iova == 0x100_1000)
    #expect(reply.flags == CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_READABLE | CIOMMUFD_IOAS_MAP_WRITEABLE)
    #expect(try destination.unmap(iova: 0x400_0000, length: 0x1000) == 0x1000)
    #expect(copy(nth: 1, offset: 0, to: 0x500_0000).0 == .noSuchFileOrDirectory)  // no second area: IOVA 0
    _ = mapping
  }

  @Test("PIN: a COPY pins only the pages of the slice it copies: an in-bounds slice of an area whose tail cannot be pinned (PROT_NONE) copies into an IOAS with a domain; the whole area is EFAULT", arguments: Platform.mock)
  func copyPinsSlice(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: destination)
    let memory = try Pages(length: 3 * 4096, protection: PROT_READ | PROT_WRITE)
    // The tail cannot be pinned. Not a hole: another test's mmap, on another thread, could
    // take an unmapped page, and this region's release would then unmap it.
    #expect(mprotect(memory.address + 2 * 4096, 4096, PROT_NONE) == 0)
    _ = try source.unsafeMap(address: memory.address, length: 3 * 4096, at: .fixed(0x100_0000))  // no domain: lazy
    #expect(try destination.copy(from: source, sourceIOVA: 0x100_0000, length: 0x2000, to: .fixed(0x200_0000)) == 0x200_0000)
    #expect(errno { try destination.copy(from: source, sourceIOVA: 0x100_0000, length: 0x3000, to: .fixed(0x300_0000)) } == .badAddress)
    let refs = CIOMMUFD_TEST_OP_MD_CHECK_REFS
    #expect(Self.command(iommufd, refs, id: 0, le(UInt64(0x2000), memory.value, UInt32(1))).0 == nil)
    if let simulator = iommufd.backend.simulator { #expect(simulator.pinnedPages == 2) }
    #expect(try destination.unmapAll() == 0x2000)
    #expect(Self.command(iommufd, refs, id: 0, le(UInt64(0x2000), memory.value, UInt32(0))).0 == nil)
    _ = mock
  }

  @Test("PIN (7.2): a COPY of the part of a MAP_FILE area inside the file pins; the part past the end of the file is EINVAL", arguments: Platform.mock7_2)
  func copyPinsFileSlice(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: destination)
    let file = try NewerRequestConformance.memoryFile(size: 0x2000) { UInt8(truncatingIfNeeded: $0) }
    defer { try? file.close() }
    #expect(try source.mapFile(file, offset: 0, length: 0x3000, at: .fixed(0x100_0000)) == 0x100_0000)
    #expect(try destination.copy(from: source, sourceIOVA: 0x100_0000, length: 0x2000, to: .fixed(0x200_0000)) == 0x200_0000)
    #expect(errno { try destination.copy(from: source, sourceIOVA: 0x100_0000, length: 0x3000, to: .fixed(0x300_0000)) } == .invalidArgument)
    _ = mock
  }
}
