import Iommufd
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Conformance scenarios with the iommufd self-test's mock IOMMU (semantics §7), on a
/// simulated test kernel and on the lab's mock boot.
@Suite("conformance: self-test mock domain")
struct MockConformance {
  static let mockRange = IOVARange(start: 0x100_0000, last: 0x7FFF_FFFF)

  @Test("OBJ-2/7.2: a mock domain on IOAS 1 takes the self-test id 2, device 3 and automatic HWPT 4", arguments: Platform.mock)
  func ids(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    #expect([mock.id, mock.deviceID, mock.pageTableID].map(\.rawValue) == [2, 3, 4])
  }

  @Test("VFIO_CHECK_EXTENSION(DMA_CC_IOMMU) on the compat IOAS: 1 with no domain, 0 once a mock domain is there (the mock IOMMU cannot enforce cache coherency)", arguments: Platform.mock)
  func dmaCCIOMMUMock(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    try iommufd.setCompatibilityIOAS(ioas)
    let check = { () throws(Errno) -> Int32 in
      try iommufd.backend.calls.ioctl(iommufd.fileDescriptor, 0x3B65, UnsafeMutableRawPointer(bitPattern: 4))
    }
    #expect(try check() == 1)
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    #expect(try check() == 0)
    _ = mock
  }

  @Test("VFIO_IOMMU_MAP_DMA without READ or WRITE into a mock domain: 6.12's mock maps it, 7.2's refuses it (EINVAL), at the map and at a later domain attach", arguments: Platform.mock)
  func compatMapWithoutAccess(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 8192, backend: backend)
    let user = UInt64(UInt(bitPattern: buffer.bytes.baseAddress))
    let fd = iommufd.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B88, le(UInt32(12), ioas.id.rawValue, UInt16(1), UInt16(0))).0 == nil)  // VFIO_IOAS SET
    let refused: Errno? = platform.release == .linux7_2 ? .invalidArgument : nil
    // Mapped without a domain, then a domain comes.
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(0), user, UInt64(0x100_0000), UInt64(0x1000))).0 == nil)
    #expect(errno { try iommufd.selfTest.attachMockDevice(to: ioas) } == refused)
    #expect(rawIoctl(backend, fd, 0x3B72, le(UInt32(24), UInt32(2), UInt64(0), UInt64(0))).0 == nil)  // UNMAP_DMA all
    // Mapped into an IOAS with a domain.
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(0), user, UInt64(0x100_0000), UInt64(0x1000))).0 == refused)
    #expect(rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(1), user, UInt64(0x200_0000), UInt64(0x1000))).0 == nil)
    _ = mock
  }

  @Test("VFIO_IOMMU_MAP_DMA without READ or WRITE over a readable page and then a PROT_NONE one: EFAULT on both releases (the pin of the whole batch fails before 7.2's mock could refuse the permission); a PROT_NONE first page is EFAULT too", arguments: Platform.mock)
  func compatMapWithoutAccessOrder(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    defer { withExtendedLifetime(mock) {} }
    let fd = iommufd.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B88, le(UInt32(12), ioas.id.rawValue, UInt16(1), UInt16(0))).0 == nil)  // VFIO_IOAS SET
    guard let memory = mmap(nil, 0x3000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else {
      Issue.record("mmap failed")
      return
    }
    defer { munmap(memory, 0x3000) }
    memory.storeBytes(of: 1, as: UInt8.self)
    #expect(mprotect(memory + 0x1000, 0x1000, PROT_NONE) == 0)
    let user = UInt64(UInt(bitPattern: memory))
    let readableFirst = rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(0), user, UInt64(0x100_0000), UInt64(0x2000))).0
    #expect(readableFirst == .badAddress)
    let noneFirst = rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(0), user + 0x1000, UInt64(0x100_0000), UInt64(0x2000))).0
    #expect(noneFirst == .badAddress)
  }

  @Test("SET_TEMP_MEMORY_LIMIT sizes the kernel's page batches: 7.2's mock refuses a map with no permission at its first batch (EINVAL once the page after it is pinned, EFAULT where the pin stops first); 6.12's mock maps it and the pin's EFAULT comes out", arguments: Platform.mock)
  func noPermissionMapBatches(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let test = iommufd.selfTest
    // The limit is kernel-wide: set it back whatever happens.
    defer { try? test.setTemporaryMemoryLimit(IOMMUSelfTest.defaultTemporaryMemoryLimit) }
    #expect(errno { try test.setTemporaryMemoryLimit(11) } == .invalidArgument)
    let fd = iommufd.fileDescriptor
    let (pages, bad) = (8, 5)
    guard let memory = mmap(nil, pages * 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else {
      Issue.record("mmap failed")
      return
    }
    defer { munmap(memory, pages * 0x1000) }
    _ = madvise(memory, pages * 0x1000, 15)  // MADV_NOHUGEPAGE
    // Even pages first, then odd ones: page 1's frame is then not the one after page 0's,
    // whichever way the allocator hands out frames, and the first batch is page 0 alone.
    for page in Array(stride(from: 0, to: pages, by: 2)) + Array(stride(from: 1, to: pages, by: 2)) {
      (memory + page * 0x1000).storeBytes(of: UInt8(page + 1), as: UInt8.self)
    }
    #expect(mprotect(memory + bad * 0x1000, 0x1000, PROT_NONE) == 0)
    // The pages from page 0 in one physically contiguous run (1 where frames are hidden):
    // a batch entry of the kernel's.
    let run = physicallyContiguousPages(memory, count: bad)
    let user = UInt64(UInt(bitPattern: memory))
    func useForCompat(_ ioas: IOAS) -> Errno? { rawIoctl(backend, fd, 0x3B88, le(UInt32(12), ioas.id.rawValue, UInt16(1), UInt16(0))).0 }
    func mapDMA(from page: Int, at iova: UInt64) -> Errno? {
      rawIoctl(backend, fd, 0x3B71, le(UInt32(32), UInt32(0), user + UInt64(page) * 0x1000, iova, UInt64(pages - page) * 0x1000)).0
    }
    let refusedFirst: Errno = platform.release == .linux7_2 && run < bad ? .invalidArgument : .badAddress
    let ioas = try iommufd.allocateIOAS()
    let mock = try test.attachMockDevice(to: ioas)
    defer { withExtendedLifetime(mock) {} }
    #expect(useForCompat(ioas) == nil)
    // 65536 bytes hold all 8 pages in one batch: the pin reaches the PROT_NONE page first.
    #expect(mapDMA(from: 0, at: 0x100_0000) == .badAddress)
    try test.setTemporaryMemoryLimit(12)  // one run of pages per batch
    #expect(mapDMA(from: bad - 1, at: 0x100_0000) == .badAddress)  // the page after the batch cannot be pinned
    #expect(mapDMA(from: 0, at: 0x100_0000) == refusedFirst)
    try test.setTemporaryMemoryLimit(IOMMUSelfTest.defaultTemporaryMemoryLimit)
    #expect(mapDMA(from: 0, at: 0x100_0000) == .badAddress)
    // Attaching an IOAS's first domain pins and maps its areas the same way.
    let second = try iommufd.allocateIOAS()
    #expect(useForCompat(second) == nil)
    #expect(mapDMA(from: 0, at: 0x100_0000) == nil)  // no domain: nothing is pinned
    try test.setTemporaryMemoryLimit(12)
    #expect(errno { try test.attachMockDevice(to: second) } == refusedFirst)
  }

  @Test("VFIO_IOMMU_GET_INFO's page sizes follow the compat IOAS's domains: every size without one; 4 KiB for 6.12's mock, 4 KiB and MOCK_HUGE_PAGE_SIZE for its HUGE_IOVA mock; 4 KiB to 64 GiB for 7.2's", arguments: Platform.mock)
  func compatPageSizes(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let fd = iommufd.fileDescriptor
    func pageSizes() -> UInt64? {
      let (error, bytes) = rawIoctl(backend, fd, 0x3B70, le(UInt32(16), UInt32(0), UInt64(0)))  // VFIO_IOMMU_GET_INFO
      guard error == nil else { return nil }
      return bytes[8..<16].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    #expect(rawIoctl(backend, fd, 0x3B88, le(UInt32(12), ioas.id.rawValue, UInt16(1), UInt16(0))).0 == nil)  // VFIO_IOAS SET
    #expect(pageSizes() == ~UInt64(0xFFF))
    if platform.release == .linux7_2 {
      let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
      #expect(pageSizes() == (1 << 37) - 0x1000)
      _ = mock
    } else {
      let huge = try iommufd.selfTest.attachMockDevice(to: ioas, flags: .hugeIOVA)
      #expect(pageSizes() == 0x10_1000)
      try huge.destroy()
      #expect(pageSizes() == ~UInt64(0xFFF))
      // A HUGE_IOVA device shares the plain domain already there (ATT-2's reuse).
      let plain = try iommufd.selfTest.attachMockDevice(to: ioas)
      let second = try iommufd.selfTest.attachMockDevice(to: ioas, flags: .hugeIOVA)
      #expect(second.pageTableID == plain.pageTableID)
      #expect(pageSizes() == 0x1000)
    }
  }

  @Test("7.2's huge mock page table (HWPT_ALLOC on an IOAS with the mock's data, page table type 1) has 4 KiB and 1 MiB IO pages and the generic table's aperture, 0 to 2^38 - 1: an area below the mock aperture stays, the IOAS aligns to 4 KiB, MD_CHECK_MAP checks 4 KiB pages, compat page sizes are 4 KiB and 1 MiB, and a mock device attaches to it; type 0 keeps the mock aperture (EADDRINUSE), type 2 is EOPNOTSUPP; 6.12 takes no driver data on an IOAS (EOPNOTSUPP)", arguments: Platform.mock)
  func hugeMockPageTable(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let fd = iommufd.fileDescriptor
    let mock = try iommufd.selfTest.attachMockDevice(to: try iommufd.allocateIOAS())
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 4 * 4096, backend: backend)
    defer { withExtendedLifetime(buffer) {} }
    let base = UInt64(UInt(bitPattern: buffer.bytes.baseAddress))
    let scratch = base + 0x3000  // driver data and the IOVA_RANGES reply
    func u64(_ bytes: ArraySlice<UInt8>) -> UInt64 { bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    func allocate(type: UInt32) -> (Errno?, UInt32) {
      let data = le(UInt32(0xbadbeef), type)
      UnsafeMutableRawPointer(bitPattern: UInt(scratch))!.copyMemory(from: data, byteCount: data.count)
      let (error, reply) = rawIoctl(
        backend, fd, 0x3B89,
        le(UInt32(48), UInt32(0), mock.deviceID.rawValue, ioas.id.rawValue, UInt32(0), UInt32(0), UInt32(0xdead), UInt32(8), scratch, UInt32(0), UInt32(0)))
      return (error, UInt32(truncatingIfNeeded: u64(reply[16..<20])))
    }
    func map(_ iova: UInt64, user: UInt64) -> Errno? {
      rawIoctl(backend, fd, 0x3B85, le(UInt32(40), UInt32(7), ioas.id.rawValue, UInt32(0), user, UInt64(0x1000), iova)).0
    }
    #expect(map(0x1000, user: base) == nil)  // below the mock aperture
    guard platform.release == .linux7_2 else {
      #expect(allocate(type: 1).0 == .notSupported)
      return
    }
    #expect(allocate(type: 0).0 == .addressInUse)
    #expect(allocate(type: 2).0 == .notSupported)
    let (error, huge) = allocate(type: 1)
    #expect(error == nil)
    let (rangesError, reply) = rawIoctl(backend, fd, 0x3B84, le(UInt32(32), ioas.id.rawValue, UInt32(1), UInt32(0), scratch, UInt64(0)))
    #expect(rangesError == nil)
    #expect(u64(reply[24..<32]) == 0x1000)  // out_iova_alignment
    let range = UnsafeRawPointer(bitPattern: UInt(scratch))!.loadUnaligned(as: (UInt64, UInt64).self)
    #expect(range.0 == 0 && range.1 == (1 << 38) - 1)
    #expect(map(0x2_0800, user: base + 0x1000) == .invalidArgument)  // 2 KiB aligned only
    #expect(map(0x2_0000, user: base + 0x1000) == nil)
    func checkMap(_ iova: UInt64, length: UInt64, user: UInt64) -> Errno? {
      rawIoctl(backend, fd, 0x3BA0, le(UInt32(72), UInt32(3), huge, UInt32(0), iova, length, user) + [UInt8](repeating: 0, count: 32)).0
    }
    #expect(checkMap(0x2_0000, length: 0x1000, user: base + 0x1000) == nil)
    #expect(checkMap(0x1000, length: 0x800, user: base) == .invalidArgument)
    #expect(checkMap(0x1000, length: 0x1000, user: base + 0x2000) == .invalidArgument)  // another page
    #expect(rawIoctl(backend, fd, 0x3B88, le(UInt32(12), ioas.id.rawValue, UInt16(1), UInt16(0))).0 == nil)  // VFIO_IOAS SET
    let (infoError, info) = rawIoctl(backend, fd, 0x3B70, le(UInt32(16), UInt32(0), UInt64(0)))  // VFIO_IOMMU_GET_INFO
    #expect(infoError == nil)
    #expect(u64(info[8..<16]) == 0x10_1000)
    // A mock device attaches to it (MOCK_DOMAIN on the HWPT): the same driver's domain.
    let (attachError, attach) = rawIoctl(backend, fd, 0x3BA0, le(UInt32(72), UInt32(2), huge, UInt32(0)) + [UInt8](repeating: 0, count: 56))
    #expect(attachError == nil)
    #expect(UInt32(truncatingIfNeeded: u64(attach[20..<24])) == huge)  // out_hwpt_id
  }

  @Test("IOMMU_TEST_CMD in a read-only page: MOCK_DOMAIN fails with EFAULT and leaves no device, self-test object or HWPT (the IOAS destroys, its id is the lowest free again); SET_TEMP_MEMORY_LIMIT and MD_CHECK_REFS write nothing back and succeed", arguments: Platform.mock)
  func readOnlyTestCommand(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let fd = iommufd.fileDescriptor
    let testCommand: UInt = 0x3BA0
    func command(op: UInt32, id: UInt32, _ payload: [UInt8] = []) -> ReadOnlyRequest {
      ReadOnlyRequest(le(UInt32(72), op, id, UInt32(0)) + payload + [UInt8](repeating: 0, count: 56 - payload.count))
    }
    #expect(rawIoctl(backend, fd, 0x3B81, le(UInt32(12), UInt32(0), UInt32(0))).1 == le(UInt32(12), UInt32(0), UInt32(1)))  // IOAS 1
    #expect(command(op: 2, id: 1).issue(backend, fd, testCommand) == .badAddress)  // MOCK_DOMAIN
    #expect(rawIoctl(backend, fd, 0x3B80, le(UInt32(8), UInt32(1))).0 == nil)  // DESTROY 1: nothing holds it
    #expect(rawIoctl(backend, fd, 0x3B81, le(UInt32(12), UInt32(0), UInt32(0))).1 == le(UInt32(12), UInt32(0), UInt32(1)))
    #expect(command(op: 9, id: 0, le(UInt32(65536))).issue(backend, fd, testCommand) == nil)  // SET_TEMP_MEMORY_LIMIT
    let buffer = try DMABuffer(length: 4096, backend: backend)
    let user = UInt64(UInt(bitPattern: buffer.bytes.baseAddress))
    #expect(command(op: 4, id: 0, le(UInt64(4096), user, UInt32(0))).issue(backend, fd, testCommand) == nil)  // MD_CHECK_REFS, 0 refs
  }

  @Test("RANGES-2/4 with the mock: the aperture [0x1000000, 0x7fffffff] and alignment 2048", arguments: Platform.mock)
  func ranges(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    #expect(try ioas.iovaRanges() == IOVARanges(ranges: [Self.mockRange], alignment: 2048))
    try mock.destroy()
    #expect(try ioas.iovaRanges() == IOVARanges(ranges: [IOVARange(start: 0, last: .max)], alignment: 1))
  }

  @Test("MAP-6/7 with the mock: 2 KiB granularity, the first automatic IOVA is the aperture start, outside it EINVAL", arguments: Platform.mock)
  func maps(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    let buffer = try DMABuffer(length: 8192, backend: backend)
    let address = UnsafeRawPointer(buffer.bytes.baseAddress!)
    #expect(try ioas.unsafeMap(address: address, length: 0x1000) == 0x100_0000)
    #expect(try ioas.unsafeMap(address: address, length: 0x800, at: .fixed(0x200_0800)) == 0x200_0800)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x400) } == .invalidArgument)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x1000)) } == .invalidArgument)
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x8000_0000)) } == .invalidArgument)
    _ = mock
  }

  @Test("OBJ-7/DESTROY-3: mock devices on one IOAS share the automatic HWPT; the device id is EBUSY; destroying both frees the HWPT", arguments: Platform.mock)
  func sharedHWPT(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let first = try iommufd.selfTest.attachMockDevice(to: ioas)
    let second = try iommufd.selfTest.attachMockDevice(to: ioas)
    #expect([second.id, second.deviceID, second.pageTableID].map(\.rawValue) == [5, 6, 4])
    #expect(errno { try iommufd.destroy(first.deviceID) } == .resourceBusy)
    #expect(errno { try iommufd.destroy(ObjectID(4)) } == .resourceBusy)
    try first.destroy()
    #expect(errno { try iommufd.destroy(ObjectID(4)) } == .resourceBusy)
    try second.destroy()
    #expect(errno { try iommufd.destroy(ObjectID(4)) } == .noSuchFileOrDirectory)
    #expect(try iommufd.allocateIOAS().id == ObjectID(2))
  }

  @Test("ATT-3 via MOCK_DOMAIN_REPLACE: moving to another IOAS makes a new HWPT and frees the old", arguments: Platform.mock)
  func replace(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let first = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: first)
    let second = try iommufd.allocateIOAS()
    #expect(second.id == ObjectID(5))
    #expect(try mock.replace(with: second) == ObjectID(6))
    #expect(errno { try iommufd.destroy(ObjectID(4)) } == .noSuchFileOrDirectory)
    #expect(try mock.replace(with: second) == ObjectID(6))
    #expect(try first.iovaRanges().ranges == [IOVARange(start: 0, last: .max)])
  }

  @Test("7.2 ADD_RESERVED: length 0 EINVAL, overlap with a mapping or allowed range EADDRINUSE; reserved IOVAs leave the ranges and refuse fixed maps; six ranges are read whole", arguments: Platform.mock)
  func addReserved(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let test = iommufd.selfTest
    let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
    let fd = iommufd.fileDescriptor
    // length 0 through a raw command: IOVARange cannot express it.
    let zero = rawIoctl(iommufd.backend, fd, 0x3BA0, le(UInt32(72), UInt32(1), ioas.id.rawValue, UInt32(0), UInt64(0x1000), UInt64(0)) + [UInt8](repeating: 0, count: 40))
    #expect(zero.0 == .invalidArgument)
    _ = try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x10000))
    #expect(errno { try test.addReserved(IOVARange(start: 0xF000, length: 0x2000)!, in: ioas) } == .addressInUse)
    try ioas.allowIOVAs([IOVARange(start: 0x40_0000, last: 0x4F_FFFF)])
    #expect(errno { try test.addReserved(IOVARange(start: 0x48_0000, length: 0x1000)!, in: ioas) } == .addressInUse)
    try test.addReserved(IOVARange(start: 0x200_0000, last: 0x2FF_FFFF), in: ioas)
    #expect(try ioas.iovaRanges().ranges == [IOVARange(start: 0, last: 0x1FF_FFFF), IOVARange(start: 0x300_0000, last: .max)])
    #expect(errno { try ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(0x280_0000)) } == .invalidArgument)
    #expect(errno { try ioas.allowIOVAs([IOVARange(start: 0x2F0_0000, last: 0x30F_FFFF)]) } == .addressInUse)
    // Four more holes: six ranges, more than the value holds in place (the kernel answers
    // the first read, room for four, with EMSGSIZE and the count; the second reads them).
    for index in 0..<4 as Range<UInt64> {
      try test.addReserved(IOVARange(start: 0x400_0000 + index * 0x100_0000, length: 0x10_0000)!, in: ioas)
    }
    let expected =
      [IOVARange(start: 0, last: 0x1FF_FFFF), IOVARange(start: 0x300_0000, last: 0x3FF_FFFF)]
      + (0..<3).map { IOVARange(start: 0x410_0000 + $0 * 0x100_0000, last: 0x4FF_FFFF + $0 * 0x100_0000) }
      + [IOVARange(start: 0x710_0000, last: .max)]
    let ranges = try ioas.iovaRanges()
    #expect(ranges.ranges == expected)
    #expect(ranges.count == 6 && ranges.alignment == 1 && ranges[5] == IOVARange(start: 0x710_0000, last: .max))
  }

  @Test("7.2: an unknown op is EOPNOTSUPP; unknown mock device flags EINVAL; a mock domain on a missing id ENOENT", arguments: Platform.mock)
  func commandChecks(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let padding = [UInt8](repeating: 0, count: 56)
    #expect(rawIoctl(iommufd.backend, iommufd.fileDescriptor, 0x3BA0, le(UInt32(72), UInt32(99), ioas.id.rawValue, UInt32(0)) + padding).0 == .notSupported)
    // 7.2 knows flag 4 (PASID) and no longer 2 (HUGE_IOVA).
    #expect(errno { try iommufd.selfTest.attachMockDevice(to: ioas, flags: IOMMUSelfTest.DeviceFlags(rawValue: 8)) } == .invalidArgument)
    #expect(errno { try iommufd.selfTest.attachMockDevice(to: ioas, flags: IOMMUSelfTest.DeviceFlags(rawValue: 4)) } == (platform.release == .linux7_2 ? nil : .invalidArgument))
    #expect(rawIoctl(iommufd.backend, iommufd.fileDescriptor, 0x3BA0, le(UInt32(72), UInt32(2), UInt32(9), UInt32(0)) + padding).0 == .noSuchFileOrDirectory)
    #expect(rawIoctl(iommufd.backend, iommufd.fileDescriptor, 0x3BA0, le(UInt32(64), UInt32(2), ioas.id.rawValue, UInt32(0)) + padding.prefix(48)).0 == .invalidArgument)
  }
}

/// How many of the `count` pages at `memory` form one physically contiguous run from the
/// first (from /proc/self/pagemap; 1 where frame numbers are hidden).
func physicallyContiguousPages(_ memory: UnsafeMutableRawPointer, count: Int) -> Int {
  let frames = physicalFrames(memory, count: count)
  guard frames[0] != 0 else { return 1 }
  var run = 1
  while run < count && frames[run] == frames[0] + UInt64(run) { run += 1 }
  return run
}
