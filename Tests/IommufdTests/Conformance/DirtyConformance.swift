import Iommufd
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Dirty tracking with the self-test's mock IOMMU (semantics §5.13, §5.14, §7.2), on a
/// simulated test kernel and in the lab's mock boot.
@Suite("conformance: dirty tracking")
struct DirtyConformance {
  /// An IOAS with a dirty-tracking HWPT, a mock device attached to it, and 64 KiB mapped at
  /// 0x1000000 (the mock aperture's start).
  struct Setup: ~Copyable {
    let iommufd: IOMMUFD
    let ioas: IOAS
    let hwpt: HWPageTable
    let mock: MockDevice
    let buffer: DMABuffer
    let mapping: DMAMapping

    init(_ platform: Platform) throws {
      let backend = platform.makeBackend()
      let iommufd = try IOMMUFD.open(backend: backend)
      let ioas = try iommufd.allocateIOAS()
      let probe = try iommufd.selfTest.attachMockDevice(to: ioas)
      let hwpt = try HWPageTable(on: ioas, forDevice: probe.deviceID, flags: [.dirtyTracking, .nestParent])
      try probe.destroy()
      let mock = try iommufd.selfTest.attachMockDevice(to: hwpt)
      // Without large pages, as the kernel's own dirty selftests map: otherwise 7.2's mock
      // page table maps runs of physically contiguous host pages as larger leaves and
      // reports dirty bits per leaf, which depends on where the buffer landed.
      try ioas.setHugePages(enabled: false)
      let buffer = try DMABuffer(length: 0x10000, backend: backend)
      mapping = try ioas.map(buffer, at: .fixed(0x100_0000))
      (self.iommufd, self.ioas, self.hwpt, self.mock, self.buffer) = (iommufd, ioas, hwpt, mock, buffer)
    }
  }

  @Test("HWPT-5: the mock takes NEST_PARENT and DIRTY_TRACKING; FAULT_ID_VALID, data, or DIRTY for a NO_DIRTY device are EOPNOTSUPP", arguments: Platform.mock)
  func allocFlags(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    let plain = try iommufd.selfTest.attachMockDevice(to: ioas, flags: .noDirtyTracking)
    #expect(try HWPageTable(on: ioas, forDevice: mock.deviceID, flags: [.nestParent, .dirtyTracking]).id.rawValue > 0)
    #expect(errno { try HWPageTable(on: ioas, forDevice: plain.deviceID, flags: .dirtyTracking) } == .notSupported)
    // 7.2 takes FAULT_ID_VALID on an IOAS (fault id 0: ENOENT) and reads driver data before refusing it.
    let newer = platform.release == .linux7_2
    #expect(errno { try HWPageTable(on: ioas, forDevice: mock.deviceID, flags: HWPageTable.Flags(rawValue: 4)) } == (newer ? .noSuchFileOrDirectory : .notSupported))
    let fd = iommufd.fileDescriptor
    #expect(rawIoctl(iommufd.backend, fd, 0x3B89, le(UInt32(48), UInt32(0), mock.deviceID.rawValue, ioas.id.rawValue, UInt32(0), UInt32(0), UInt32(0xDEAD), UInt32(4), UInt64(0x1000), UInt32(0), UInt32(0))).0 == (newer ? .badAddress : .notSupported))
  }

  @Test("attach: a NO_DIRTY mock device cannot attach to a dirty-tracking HWPT (EINVAL)", arguments: Platform.mock)
  func attachRefusal(platform: Platform) throws {
    let setup = try Setup(platform)
    #expect(errno { try setup.iommufd.selfTest.attachMockDevice(to: setup.hwpt, flags: .noDirtyTracking) } == .invalidArgument)
  }

  @Test("DSET-1/2/3/4: flags EOPNOTSUPP, unknown id ENOENT, an HWPT without DIRTY_TRACKING EOPNOTSUPP; enable and disable are idempotent", arguments: Platform.mock)
  func setTracking(platform: Platform) throws {
    let setup = try Setup(platform)
    let fd = setup.iommufd.fileDescriptor
    let backend = setup.iommufd.backend
    #expect(rawIoctl(backend, fd, 0x3B8B, le(UInt32(16), UInt32(2), setup.hwpt.id.rawValue, UInt32(0))).0 == .notSupported)
    #expect(rawIoctl(backend, fd, 0x3B8B, le(UInt32(16), UInt32(1), UInt32(99), UInt32(0))).0 == .noSuchFileOrDirectory)
    #expect(rawIoctl(backend, fd, 0x3B8B, le(UInt32(16), UInt32(1), setup.ioas.id.rawValue, UInt32(0))).0 == .noSuchFileOrDirectory)
    let plain = try HWPageTable(on: setup.ioas, forDevice: setup.mock.deviceID)
    #expect(errno { try plain.setDirtyTracking(enabled: true) } == .notSupported)
    try setup.hwpt.setDirtyTracking(enabled: true)
    try setup.hwpt.setDirtyTracking(enabled: true)
    try setup.hwpt.setDirtyTracking(enabled: false)
    try setup.hwpt.setDirtyTracking(enabled: false)
  }

  @Test("DGET-3/4: range checks in order (EINVAL, EOVERFLOW, alignment, page size) before EOPNOTSUPP for an HWPT without dirty ops", arguments: Platform.mock)
  func bitmapChecks(platform: Platform) throws {
    let setup = try Setup(platform)
    let hwpt = setup.hwpt
    // 7.2 has no length-0 check: the range's last address overflows.
    #expect(errno { try hwpt.dirtyBitmap(iova: 0x100_0000, length: 0, pageSize: 4096) } == (platform.release == .linux7_2 ? .overflow : .invalidArgument))
    #expect(errno { try hwpt.dirtyBitmap(iova: UInt64.max - 0xfff, length: 0x2000, pageSize: 4096) } == .overflow)
    #expect(errno { try hwpt.dirtyBitmap(iova: 0x100_0400, length: 0x800, pageSize: 0x400) } == .invalidArgument)
    let plain = try HWPageTable(on: setup.ioas, forDevice: setup.mock.deviceID)
    #expect(errno { try plain.dirtyBitmap(iova: 0x100_0000, length: 0x1000, pageSize: 0x1000) } == .notSupported)
    #expect(errno { try plain.dirtyBitmap(iova: 0x100_0800, length: 0x1000, pageSize: 0x1000) } == .invalidArgument)
    // Tracking is off: 6.12's driver fails the walk (passed on since 6.12.118), 7.2 reads.
    #expect(errno { try hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x1000, pageSize: 0x1000) } == (platform.release == .linux7_2 ? nil : .invalidArgument))
  }

  @Test("7.2 reads and clears dirty bits with tracking off (6.12 fails with EINVAL then, since 6.12.118); a CPU page mapped from an address off its alignment is two entries, each reported by itself; an aligned one is a pair, reported by its first entry also when its second was marked", arguments: Platform.mock)
  func entriesAndPairs(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let (hwpt, mock) = try dirtyTrackingMockDevice(on: ioas)
    defer { withExtendedLifetime(mock) {} }
    let test = iommufd.selfTest
    let is72 = platform.release == .linux7_2
    // One page at 0x1000000 (too small for any leaf above 4 KiB, wherever it landed), and
    // the buffer from 2 KiB into it at 0x2000000: each half of that 4 KiB is another page.
    let buffer = try DMABuffer(length: 0x2000, backend: backend)
    let base = UnsafeRawPointer(buffer.bytes.baseAddress!)
    let aligned = try ioas.unsafeMap(address: base, length: 0x1000, at: .fixed(0x100_0000))
    let straddling = try ioas.unsafeMap(address: base + 0x800, length: 0x1000, at: .fixed(0x200_0000))
    defer { withExtendedLifetime(buffer) {} }
    try hwpt.setDirtyTracking(enabled: true)
    // The second entry of each.
    #expect(try test.markDirty(hwpt, iova: aligned, length: 0x1000, pageSize: 2048, pages: [0b10]) == 1)
    #expect(try test.markDirty(hwpt, iova: straddling, length: 0x1000, pageSize: 2048, pages: [0b10]) == 1)
    try hwpt.setDirtyTracking(enabled: false)
    if is72 {
      #expect(Array(try hwpt.dirtyBitmap(iova: aligned, length: 0x1000, pageSize: 2048)) == [0x100_0000])
      #expect(Array(try hwpt.dirtyBitmap(iova: straddling, length: 0x1000, pageSize: 2048)) == [0x200_0800])
      #expect(try hwpt.dirtyBitmap(iova: aligned, length: 0x1000, pageSize: 2048).dirtyCount == 0)  // cleared
    } else {
      #expect(errno { try hwpt.dirtyBitmap(iova: aligned, length: 0x1000, pageSize: 2048) } == .invalidArgument)
      #expect(errno { try hwpt.dirtyBitmap(iova: straddling, length: 0x1000, pageSize: 2048) } == .invalidArgument)
    }
    try hwpt.setDirtyTracking(enabled: true)
    _ = try test.markDirty(hwpt, iova: aligned, length: 0x1000, pageSize: 2048, pages: [0b10])
    _ = try test.markDirty(hwpt, iova: straddling, length: 0x1000, pageSize: 2048, pages: [0b10])
    #expect(Array(try hwpt.dirtyBitmap(iova: straddling, length: 0x1000, pageSize: 2048)) == [0x200_0800])
    #expect(Array(try hwpt.dirtyBitmap(iova: aligned, length: 0x1000, pageSize: 2048)) == (is72 ? [0x100_0000] : [0x100_0800]))
  }

  @Test("7.2's mock maps physically contiguous memory as one run of entries: 16 KiB of a transparent huge page is a run of 8, dirty as a whole when one entry is, reported one entry short of its end from where the walk starts, cleared whole; 6.12's mock reports the one entry", arguments: Platform.mock)
  func contiguousRuns(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let (hwpt, mock) = try dirtyTrackingMockDevice(on: ioas)
    defer { withExtendedLifetime(mock) {} }
    // 16 KiB at the start of a 2 MiB-aligned stretch with transparent huge pages asked for.
    let region = try #require(HugePageRegion())
    defer { withExtendedLifetime(region) {} }
    let memory = region.memory
    let frames = physicalFrames(memory, count: 4)
    let run = frames.allSatisfy { $0 != 0 } && frames[0] % 4 == 0 && frames.enumerated().allSatisfy { $0.element == frames[0] + UInt64($0.offset) }
    let pairs = frames.allSatisfy { $0 != 0 } && zip(frames, frames.dropFirst()).allSatisfy { $1 != $0 + 1 }
    guard platform.release == .linux6_12 || run || pairs else { return }  // neither shape: nothing exact to expect
    let iova = try ioas.unsafeMap(address: UnsafeRawPointer(memory), length: 0x4000, at: .fixed(0x100_0000))
    try hwpt.setDirtyTracking(enabled: true)
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: iova, length: 0x4000, pageSize: 2048, pages: [1 << 5]) == 1)
    let whole = platform.release == .linux7_2 && run
    let all = Array(try hwpt.dirtyBitmap(iova: iova, length: 0x4000, pageSize: 4096, clear: false))
    #expect(all == (whole ? [iova, iova + 0x1000, iova + 0x2000, iova + 0x3000] : [iova + 0x2000]))
    // From the run's fifth entry: entries 4 to 6 (2 KiB each), then nothing is left.
    let tail = Array(try hwpt.dirtyBitmap(iova: iova + 0x2000, length: 0x2000, pageSize: 2048))
    #expect(tail == (whole ? [iova + 0x2000, iova + 0x2800, iova + 0x3000] : platform.release == .linux7_2 ? [iova + 0x2800] : [iova + 0x2800]))
    #expect(try hwpt.dirtyBitmap(iova: iova, length: 0x4000, pageSize: 2048).dirtyCount == 0)
  }

  @Test("7.2, simulator only: a harvest that starts in the second entry of a dirty pair (the last entry of its run) records nothing, where a 7.2.12 kernel never returns (Docs/Simulator.md); from the first entry the pair is dirty, recorded as its first entry", arguments: Platform.mock7_2.filter(\.isSimulated))
  func harvestFromRunsLastEntry(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let (hwpt, mock) = try dirtyTrackingMockDevice(on: ioas)
    defer { withExtendedLifetime(mock) {} }
    let buffer = try DMABuffer(length: 0x1000, backend: backend)
    defer { withExtendedLifetime(buffer) {} }
    let iova = try ioas.unsafeMap(address: UnsafeRawPointer(buffer.bytes.baseAddress!), length: 0x1000, at: .fixed(0x100_0000))
    try hwpt.setDirtyTracking(enabled: true)
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: iova, length: 0x1000, pageSize: 2048, pages: [0b10]) == 1)  // the second entry
    #expect(Array(try hwpt.dirtyBitmap(iova: iova + 0x800, length: 0x800, pageSize: 2048, clear: false)) == [])
    #expect(Array(try hwpt.dirtyBitmap(iova: iova, length: 0x1000, pageSize: 2048)) == [iova])
  }

  @Test("6.12.118: a dirty 1 MiB leaf of a HUGE_IOVA mock domain is recorded whole from where the walk stands; past the range asked for, the harvest fails with EPROTO, the record sets none of its bits and the leaf is cleared all the same", arguments: Platform.mock)
  func leafRecordedPastRange(platform: Platform) throws {
    // 7.2 swallows the walk's errors (and its mock has no HUGE_IOVA device flag).
    guard platform.release == .linux6_12 else { return }
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let probe = try iommufd.selfTest.attachMockDevice(to: ioas, flags: .hugeIOVA)
    let hwpt = try HWPageTable(on: ioas, forDevice: probe.deviceID, flags: [.dirtyTracking])
    try probe.destroy()
    let mock = try iommufd.selfTest.attachMockDevice(to: hwpt, flags: .hugeIOVA)
    defer { withExtendedLifetime(mock) {} }
    let region = try #require(HugePageRegion())
    defer { withExtendedLifetime(region) {} }
    // A leaf needs its 1 MiB physically contiguous from a 1 MiB-aligned frame (frames need
    // CAP_SYS_ADMIN, and the region a transparent huge page). Without one nothing here is
    // exact to expect: a skip, which CI and the lab do not allow.
    let frames = physicalFrames(region.memory, count: 512)
    func isLeaf(_ first: Int) -> Bool {
      frames[first] != 0 && frames[first] % 256 == 0 && (0..<256).allSatisfy { frames[first + $0] == frames[first] + UInt64($0) }
    }
    guard isLeaf(0) else {
      if getenv("CI").map({ String(cString: $0) }) == "true" || getenv("IOMMUFD_LAB_MODE") != nil {
        Issue.record("no physically contiguous 1 MiB leaf: the test checked nothing")
      }
      return
    }
    let iova = try ioas.unsafeMap(address: UnsafeRawPointer(region.memory), length: UInt64(HugePageRegion.size), at: .fixed(0x100_0000))
    try hwpt.setDirtyTracking(enabled: true)
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: iova, length: 0x8000, pageSize: 2048, pages: [1 << 3]) == 1)
    #expect(errno { try hwpt.dirtyBitmap(iova: iova, length: 0x8000, pageSize: 2048) } == .protocolError)
    #expect(try hwpt.dirtyBitmap(iova: iova, length: 0x10_0000, pageSize: 2048).dirtyCount == 0)
    // The whole leaf in range: reported whole.
    _ = try iommufd.selfTest.markDirty(hwpt, iova: iova, length: 0x8000, pageSize: 2048, pages: [1 << 3])
    #expect(try hwpt.dirtyBitmap(iova: iova, length: 0x10_0000, pageSize: 2048).dirtyCount == 512)
    // A walk that starts inside the leaf records 1 MiB from there: past a range that ends
    // with the leaf (a record from the leaf's start would have fit).
    _ = try iommufd.selfTest.markDirty(hwpt, iova: iova, length: 0x8000, pageSize: 2048, pages: [1 << 3])
    #expect(errno { try hwpt.dirtyBitmap(iova: iova + 0x8000, length: 0xF_8000, pageSize: 2048) } == .protocolError)
    // A refused record sets none of its bits; the records before it keep theirs. 8 KiB of
    // the region's second MiB at 0x3FF_E000, then its first MiB (a leaf) at 0x400_0000,
    // both dirty: the walk records the first area's dirty 2 KiB page (bit 0), then 1 MiB
    // from the leaf's start, past the end of the range asked for (bits 4 to 19).
    let small = try ioas.unsafeMap(address: UnsafeRawPointer(region.memory) + 0x10_0000, length: 0x2000, at: .fixed(0x3FF_E000))
    let leaf = try ioas.unsafeMap(address: UnsafeRawPointer(region.memory), length: 0x10_0000, at: .fixed(0x400_0000))
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: small, length: 0x2000, pageSize: 2048, pages: [1]) == 1)
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: leaf, length: 0x8000, pageSize: 2048, pages: [1 << 3]) == 1)
    let bitmap = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
    defer { bitmap.deallocate() }
    bitmap.storeBytes(of: 0, as: UInt64.self)
    let data = UInt64(UInt(bitPattern: bitmap.baseAddress))
    let request = le(UInt32(48), hwpt.id.rawValue, UInt32(0), UInt32(0), small, UInt64(0xA000), UInt64(2048), data)
    #expect(rawIoctl(iommufd.backend, iommufd.fileDescriptor, 0x3B8C, request).0 == .protocolError)
    #expect(bitmap.load(as: UInt64.self) == 1)
    #expect(try hwpt.dirtyBitmap(iova: small, length: 0x10_2000, pageSize: 2048).dirtyCount == 0)  // both cleared
    // A walk from inside a leaf records 1 MiB from where it stands, so past the leaf's end
    // (into the area after it); then it steps 1 MiB, and outside a leaf goes on from there:
    // the stretch before, a dirty page there included, is neither recorded nor cleared.
    // The first MiB of the region and 64 KiB of its second at 0x800_0000 (only the first
    // MiB is a leaf), the leaf and the page at 0x810_2000 dirty, the walk from 0x800_8000:
    // bits 0-511 from the leaf's record, nothing from the stretch 0x810_0000-0x810_7FFF.
    let longer = try ioas.unsafeMap(address: UnsafeRawPointer(region.memory), length: 0x11_0000, at: .fixed(0x800_0000))
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: longer, length: 0x8000, pageSize: 2048, pages: [1 << 3]) == 1)
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: longer + 0x10_0000, length: 0x8000, pageSize: 2048, pages: [1 << 4]) == 1)
    let fromInside = try hwpt.dirtyBitmap(iova: longer + 0x8000, length: 0x10_8000, pageSize: 2048)
    #expect(fromInside.dirtyCount == 512)
    #expect(fromInside.isDirty(longer + 0x10_7800) && !fromInside.isDirty(longer + 0x10_8000))
    #expect(try hwpt.dirtyBitmap(iova: longer + 0x10_0000, length: 0x10000, pageSize: 2048).dirtyCount == 1)  // still dirty
    #expect(try hwpt.dirtyBitmap(iova: longer, length: 0x11_0000, pageSize: 2048).dirtyCount == 0)
    // The second 1 MiB as a leaf too, the range past the mapping's end: the gap's EINVAL
    // comes before the EPROTO of the record past the range, and the leaf is cleared.
    guard isLeaf(256) else { return }
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: iova + 0x10_0000, length: 0x8000, pageSize: 2048, pages: [1 << 3]) == 1)
    #expect(errno { try hwpt.dirtyBitmap(iova: iova + 0x10_8000, length: 0xF_C000, pageSize: 2048) } == .invalidArgument)
    #expect(try hwpt.dirtyBitmap(iova: iova + 0x10_0000, length: 0x10_0000, pageSize: 2048).dirtyCount == 0)
    // A leaf the walk steps over is neither recorded nor cleared: from 0x6_9000 into the
    // first leaf, the walk's next step (0x16_9000) is past the range, which ends inside the
    // second leaf; that leaf stays dirty, and a walk from 0xB_0000 later stands in it at
    // 0x1B_0000 and records 1 MiB from there, past the range (EPROTO).
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: iova + 0x12_0000, length: 0x8000, pageSize: 2048, pages: [1]) == 1)
    #expect(try hwpt.dirtyBitmap(iova: iova + 0x6_9000, length: 0x9_F000, pageSize: 4096).dirtyCount == 0)
    #expect(errno { try hwpt.dirtyBitmap(iova: iova + 0xB_0000, length: 0x15_0000, pageSize: 4096) } == .protocolError)
    #expect(try hwpt.dirtyBitmap(iova: iova + 0x10_0000, length: 0x10_0000, pageSize: 2048).dirtyCount == 0)  // cleared
    // The same with the first leaf dirty too: its record from 0x6_9000 is refused, and the
    // second leaf, stepped over, is still dirty afterwards (512 bits from its start).
    _ = try iommufd.selfTest.markDirty(hwpt, iova: iova, length: 0x8000, pageSize: 2048, pages: [1])
    _ = try iommufd.selfTest.markDirty(hwpt, iova: iova + 0x12_0000, length: 0x8000, pageSize: 2048, pages: [1])
    #expect(errno { try hwpt.dirtyBitmap(iova: iova + 0x6_9000, length: 0x9_F000, pageSize: 4096) } == .protocolError)
    #expect(try hwpt.dirtyBitmap(iova: iova + 0x10_0000, length: 0x10_0000, pageSize: 2048).dirtyCount == 512)
    #expect(try hwpt.dirtyBitmap(iova: iova, length: 0x20_0000, pageSize: 2048).dirtyCount == 0)
  }

  @Test("7.2: a run of entries (1 MiB of physically contiguous memory, one item) is dirty when only its entries outside the range are, and is recorded from where the walk stands: its bits are set past the range's end, into the memory after the bitmap", arguments: Platform.mock)
  func runRecordedPastRange(platform: Platform) throws {
    guard platform.release == .linux7_2 else { return }  // 6.12 refuses such a record (EPROTO)
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let probe = try iommufd.selfTest.attachMockDevice(to: ioas)
    let hwpt = try HWPageTable(on: ioas, forDevice: probe.deviceID, flags: [.dirtyTracking])
    try probe.destroy()
    let mock = try iommufd.selfTest.attachMockDevice(to: hwpt)
    defer { withExtendedLifetime(mock) {} }
    let region = try #require(HugePageRegion())
    defer { withExtendedLifetime(region) {} }
    guard region.firstMebibyteIsContiguous() else { return }
    let iova = try ioas.unsafeMap(address: UnsafeRawPointer(region.memory), length: 0x10_0000, at: .fixed(0x1010_0000))
    try hwpt.setDirtyTracking(enabled: true)
    // A page before the range dirty: the walk from 0x1018_6000 to the end of the run
    // records 1 MiB from there, 512 bits of 2 KiB, where the range has 244.
    #expect(try iommufd.selfTest.markDirty(hwpt, iova: iova + 0x1000, length: 0x8000, pageSize: 2048, pages: [1]) == 1)
    let bitmap = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 8)
    defer { bitmap.deallocate() }
    bitmap.initializeMemory(as: UInt8.self, repeating: 0)
    let data = UInt64(UInt(bitPattern: bitmap.baseAddress))
    let request = le(UInt32(48), hwpt.id.rawValue, UInt32(0), UInt32(0), iova + 0x8_6000, UInt64(0x7_A000), UInt64(2048), data)
    #expect(rawIoctl(iommufd.backend, iommufd.fileDescriptor, 0x3B8C, request).0 == nil)
    let words = (0..<16).map { bitmap.load(fromByteOffset: $0 * 8, as: UInt64.self) }
    #expect(words == [UInt64](repeating: .max, count: 8) + [UInt64](repeating: 0, count: 8))
    #expect(try hwpt.dirtyBitmap(iova: iova, length: 0x10_0000, pageSize: 2048).dirtyCount == 0)  // cleared whole
  }

  @Test("7.2's huge mock page table (driver data, page table type 1): a dirty 1 MiB page is recorded 1 MiB from where the walk stands, from inside it or from its start, and its bits are set past the range's end", arguments: Platform.mock)
  func hugePageRecordedPastRange(platform: Platform) throws {
    guard platform.release == .linux7_2 else { return }  // 6.12 takes no driver data on an IOAS
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let fd = iommufd.fileDescriptor
    let mock = try iommufd.selfTest.attachMockDevice(to: try iommufd.allocateIOAS())
    let ioas = try iommufd.allocateIOAS()
    let region = try #require(HugePageRegion())
    defer { withExtendedLifetime(region) {} }
    guard region.firstMebibyteIsContiguous() else { return }
    // A page-aligned bitmap: the kernel pins all of its page, so bits past the range land.
    let bitmap = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
    defer { bitmap.deallocate() }
    let scratch = UInt64(UInt(bitPattern: bitmap.baseAddress))
    // HWPT_ALLOC with DIRTY_TRACKING and the mock's data (IOTLB value, page table type 1).
    bitmap.storeBytes(of: UInt32(0xbadbeef), as: UInt32.self)
    bitmap.storeBytes(of: UInt32(1), toByteOffset: 4, as: UInt32.self)
    let (allocError, reply) = rawIoctl(
      backend, fd, 0x3B89,
      le(UInt32(48), UInt32(2), mock.deviceID.rawValue, ioas.id.rawValue, UInt32(0), UInt32(0), UInt32(0xdead), UInt32(8), scratch, UInt32(0), UInt32(0)))
    try #require(allocError == nil)
    let huge = reply[16..<20].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    let iova = try ioas.unsafeMap(address: UnsafeRawPointer(region.memory), length: 0x10_0000, at: .fixed(0x1010_0000))
    #expect(rawIoctl(backend, fd, 0x3B8B, le(UInt32(16), UInt32(1), huge, UInt32(0))).0 == nil)  // tracking on
    func mark(_ address: UInt64) {
      bitmap.storeBytes(of: UInt64(1), as: UInt64.self)
      let command = le(UInt32(72), UInt32(13), huge, UInt32(0), UInt64(0), address, UInt64(0x1000), UInt64(0x1000), scratch, UInt64(0), UInt64(0))
      #expect(rawIoctl(backend, fd, 0x3BA0, command).0 == nil)
    }
    func harvest(_ first: UInt64, _ length: UInt64) -> [UInt64] {
      bitmap.initializeMemory(as: UInt8.self, repeating: 0)
      #expect(rawIoctl(backend, fd, 0x3B8C, le(UInt32(48), huge, UInt32(0), UInt32(0), first, length, UInt64(0x1000), scratch)).0 == nil)
      return (0..<8).map { bitmap.load(fromByteOffset: $0 * 8, as: UInt64.self) }
    }
    let ones = [UInt64](repeating: .max, count: 4)
    let zeros = [UInt64](repeating: 0, count: 4)
    // From inside the page: 0x8_5000 of range (133 bits), 256 bits set.
    mark(iova + 0x6_5000)
    #expect(harvest(iova + 0x6_2000, 0x8_5000) == ones + zeros)
    #expect(harvest(iova, 0x10_0000) == zeros + zeros)  // cleared whole
    // From its start, a range of 128 KiB (32 bits): 256 bits set.
    mark(iova + 0xF_F000)
    #expect(harvest(iova, 0x2_0000) == ones + zeros)
    #expect(harvest(iova, 0x10_0000) == zeros + zeros)
  }

  @Test("Unmapping drops the dirty bits of what it unmapped: a page marked dirty, unmapped and mapped again at the same IOVA is clean (the page table's entries went with the unmap)", arguments: Platform.mock)
  func unmapDropsDirtyBits(platform: Platform) throws {
    let setup = try Setup(platform)
    let base = UnsafeRawPointer(setup.buffer.bytes.baseAddress!)
    try setup.hwpt.setDirtyTracking(enabled: true)
    let iova = try setup.ioas.unsafeMap(address: base, length: 0x2000, at: .fixed(0x200_0000))
    #expect(try setup.iommufd.selfTest.markDirty(setup.hwpt, iova: iova, length: 0x2000, pageSize: 4096, pages: [0b11]) == 2)
    try setup.ioas.unmap(iova: iova, length: 0x2000)
    _ = try setup.ioas.unsafeMap(address: base, length: 0x2000, at: .fixed(0x200_0000))
    #expect(try setup.hwpt.dirtyBitmap(iova: iova, length: 0x2000, pageSize: 4096, clear: false).dirtyCount == 0)
    // The same with everything unmapped at once.
    _ = try setup.iommufd.selfTest.markDirty(setup.hwpt, iova: iova, length: 0x2000, pageSize: 4096, pages: [0b11])
    try setup.ioas.unmapAll()
    _ = try setup.ioas.unsafeMap(address: base, length: 0x2000, at: .fixed(0x200_0000))
    #expect(try setup.hwpt.dirtyBitmap(iova: iova, length: 0x2000, pageSize: 4096).dirtyCount == 0)
  }

  @Test("GET_DIRTY_BITMAP with a page size that is no power of two: the kernel checks the range against page_size - 1 but sets one bit per the page size's lowest set bit (0x3000: per 4 KiB, so page 3 of the range is bit 3, not bit 1); the API refuses such a page size (EINVAL) instead of passing a bitmap the kernel would write past", arguments: Platform.mock)
  func pageSizeNotPowerOfTwo(platform: Platform) throws {
    let setup = try Setup(platform)
    try setup.hwpt.setDirtyTracking(enabled: true)
    // The mock page of 2 KiB at IOVA 0x1003000: page 3 of the range at 4 KiB.
    #expect(try setup.iommufd.selfTest.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000, pageSize: 2048, pages: [1 << 6]) == 1)
    let bitmap = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    defer { bitmap.deallocate() }
    bitmap.initializeMemory(as: UInt8.self, repeating: 0)
    let fd = setup.iommufd.fileDescriptor
    let backend = setup.iommufd.backend
    let data = UInt64(UInt(bitPattern: bitmap.baseAddress))
    // 0x1000000 to 0x1008000: both ends clear of page_size - 1 = 0x2fff, as the kernel
    // checks; to 0x1006000 the end is not (EINVAL).
    #expect(rawIoctl(backend, fd, 0x3B8C, le(UInt32(48), setup.hwpt.id.rawValue, UInt32(0), UInt32(0), UInt64(0x100_0000), UInt64(0x6000), UInt64(0x3000), data)).0 == .invalidArgument)
    #expect(rawIoctl(backend, fd, 0x3B8C, le(UInt32(48), setup.hwpt.id.rawValue, UInt32(0), UInt32(0), UInt64(0x100_0000), UInt64(0x8000), UInt64(0x3000), data)).0 == nil)
    #expect(bitmap.load(as: UInt64.self) == 1 << 3)
    #expect(errno { try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x8000, pageSize: 0x3000) } == .invalidArgument)
  }

  @Test("DGET-5/6, 7.2 DIRTY: marked pages come back relative to the base, cleared unless NO_CLEAR; while tracking is off and at a gap 7.2 reports nothing, 6.12 (since 6.12.118) fails with EINVAL; what the walk reached before a gap is harvested", arguments: Platform.mock)
  func harvest(platform: Platform) throws {
    let setup = try Setup(platform)
    let test = setup.iommufd.selfTest
    // Tracking off: marking fails, a harvest reports nothing.
    #expect(errno { try test.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000, pageSize: 2048, pages: [1]) } == .invalidArgument)
    try setup.hwpt.setDirtyTracking(enabled: true)
    // Mock pages 0x2000 and 0x2003 of 2 KiB: IOVAs 0x1000000 and 0x1001800.
    #expect(try test.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000, pageSize: 2048, pages: [0b1001]) == 2)
    let kept = try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x10000, pageSize: 4096, clear: false)
    #expect(Array(kept) == [0x100_0000, 0x100_1000])
    #expect(kept.dirtyCount == 2)
    let taken = try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x10000, pageSize: 2048)
    // 7.2's mock page table maps 4 KiB of host memory as a contiguous pair of 2 KiB entries
    // and reports a dirty pair by its first entry.
    #expect(Array(taken) == (platform.release == .linux7_2 ? [0x100_0000, 0x100_1000] : [0x100_0000, 0x100_1800]))
    #expect(try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x10000, pageSize: 2048).dirtyCount == 0)
    // Relative to the requested base.
    _ = try test.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000, pageSize: 2048, pages: [1 << 8])
    #expect(Array(try setup.hwpt.dirtyBitmap(iova: 0x100_4000, length: 0x4000, pageSize: 2048)) == [0x100_4000])
    // A gap right at the base: nothing (7.2), or EINVAL (6.12).
    _ = try test.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000, pageSize: 2048, pages: [1])
    let newer = platform.release == .linux7_2
    if newer {
      #expect(try setup.hwpt.dirtyBitmap(iova: 0x200_0000, length: 0x1000, pageSize: 4096).dirtyCount == 0)
    } else {
      #expect(errno { try setup.hwpt.dirtyBitmap(iova: 0x200_0000, length: 0x1000, pageSize: 4096) } == .invalidArgument)
    }
    // A gap after the mapping: what lies before it is harvested (and cleared) all the same.
    let bitmap = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    defer { bitmap.deallocate() }
    bitmap.initializeMemory(as: UInt8.self, repeating: 0)
    let data = UInt64(UInt(bitPattern: bitmap.baseAddress))
    let request = le(UInt32(48), setup.hwpt.id.rawValue, UInt32(0), UInt32(0), UInt64(0x100_0000), UInt64(0x20000), UInt64(0x1000), data)
    #expect(rawIoctl(setup.iommufd.backend, setup.iommufd.fileDescriptor, 0x3B8C, request).0 == (newer ? nil : .invalidArgument))
    #expect(bitmap.load(as: UInt64.self) == 1)
    #expect(try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x10000, pageSize: 2048).dirtyCount == 0)
    // Bits for IOVAs with nothing mapped: 6.12 counts the pages it found mapped, 7.2 every set bit.
    #expect(try test.markDirty(setup.hwpt, iova: 0x300_0000, length: 0x1000, pageSize: 2048, pages: [0b11]) == (platform.release == .linux7_2 ? 2 : 0))
    // Enabling again starts from clean.
    try setup.hwpt.setDirtyTracking(enabled: true)
    #expect(try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x10000, pageSize: 2048).dirtyCount == 0)
    try setup.hwpt.setDirtyTracking(enabled: false)
    if newer {
      #expect(try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x10000, pageSize: 2048).dirtyCount == 0)
    } else {
      #expect(errno { try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x10000, pageSize: 2048) } == .invalidArgument)
    }
  }
}

/// The physical frames of the `count` pages at `memory` (from /proc/self/pagemap; 0 where a
/// page is not present or frame numbers are hidden).
func physicalFrames(_ memory: UnsafeMutableRawPointer, count: Int) -> [UInt64] {
  let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return [UInt64](repeating: 0, count: count) }
  defer { close(fd) }
  var entries = [UInt64](repeating: 0, count: count)
  let index = off_t(UInt(bitPattern: memory) / 0x1000)
  guard entries.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, index * 8) }) == count * 8 else { return [UInt64](repeating: 0, count: count) }
  return entries.map { $0 & (1 << 63) != 0 ? $0 & ((1 << 55) - 1) : 0 }
}

/// A mock device attached to a new dirty-tracking HWPT on `ioas` (allocated for a probe
/// device that is then destroyed).
func dirtyTrackingMockDevice(on ioas: IOAS) throws -> (HWPageTable, MockDevice) {
  let probe = try ioas.iommufd.selfTest.attachMockDevice(to: ioas)
  let hwpt = try HWPageTable(on: ioas, forDevice: probe.deviceID, flags: [.dirtyTracking])
  try probe.destroy()
  return (hwpt, try ioas.iommufd.selfTest.attachMockDevice(to: hwpt))
}

/// 2 MiB of private anonymous memory aligned to 2 MiB, transparent huge pages asked for and
/// every page written; unmapped on release.
final class HugePageRegion {
  static let size = 2 << 20
  /// The aligned start.
  let memory: UnsafeMutableRawPointer
  private let mapping: UnsafeMutableRawPointer

  init?() {
    guard let mapping = mmap(nil, 2 * Self.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), mapping != MAP_FAILED
    else { return nil }
    self.mapping = mapping
    memory = mapping + (Self.size - Int(UInt(bitPattern: mapping) % UInt(Self.size))) % Self.size
    _ = madvise(memory, Self.size, 14)  // MADV_HUGEPAGE
    for page in 0..<(Self.size / 0x1000) { (memory + page * 0x1000).storeBytes(of: UInt8(1), as: UInt8.self) }
  }

  /// Whether the first MiB is physically contiguous from a 1 MiB-aligned frame (frames
  /// need CAP_SYS_ADMIN, and the region a transparent huge page). Where it is not, a test
  /// that needs it checks nothing: an issue under CI and in the lab, which allow no skip.
  func firstMebibyteIsContiguous() -> Bool {
    let frames = physicalFrames(memory, count: 256)
    if frames[0] != 0, frames[0] % 256 == 0, (0..<256).allSatisfy({ frames[$0] == frames[0] + UInt64($0) }) { return true }
    if getenv("CI").map({ String(cString: $0) }) == "true" || getenv("IOMMUFD_LAB_MODE") != nil {
      Issue.record("no physically contiguous 1 MiB: the test checked nothing")
    }
    return false
  }

  deinit { munmap(mapping, 2 * Self.size) }
}
