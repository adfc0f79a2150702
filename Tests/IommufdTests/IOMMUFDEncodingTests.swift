import CIommufd
import Iommufd
import Synchronization
import SystemPackage
import Testing

/// What the API encodes for each iommufd request and how it decodes the replies, checked
/// byte by byte through a recording seam (the kernel itself is exercised in the lab).
@Suite("iommufd request encoding")
struct IOMMUFDEncodingTests {
  @Test("IOAS_ALLOC sends size 12 and flags 0, and the id comes from out_ioas_id")
  func ioasAlloc() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(7), argument, 8) }
      return 0
    }
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    let ioas = try iommufd.allocateIOAS()
    #expect(ioas.id == ObjectID(7))
    let alloc = try #require(calls.ioctls.first)
    #expect(alloc.request == 0x3B81)
    #expect(alloc.bytes == [12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
  }

  @Test("IOAS_MAP with a fixed IOVA sends flags FIXED|WRITEABLE|READABLE and every field")
  func mapFixed() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(1), argument, 8) }
      return 0
    }
    let ioas = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS()
    let address = UnsafeRawPointer(bitPattern: 0x7f00_0000_1000)!
    let iova = try ioas.unsafeMap(address: address, length: 0x2000, at: .fixed(0x10_0000), access: .readWrite)
    #expect(iova == 0x10_0000)
    let map = try #require(calls.ioctls.last)
    #expect(map.request == 0x3B85)
    #expect(field(map.bytes, 0, as: UInt32.self) == 40)
    #expect(field(map.bytes, 4, as: UInt32.self) == 0x7)
    #expect(field(map.bytes, 8, as: UInt32.self) == 1)
    #expect(field(map.bytes, 12, as: UInt32.self) == 0)
    #expect(field(map.bytes, 16, as: UInt64.self) == 0x7f00_0000_1000)
    #expect(field(map.bytes, 24, as: UInt64.self) == 0x2000)
    #expect(field(map.bytes, 32, as: UInt64.self) == 0x10_0000)
  }

  @Test("IOAS_MAP anywhere sends no FIXED flag and returns the IOVA the kernel wrote back")
  func mapAnywhere() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(1), argument, 8) }
      if request == 0x3B85 { store(UInt64(0x1000), argument, 32) }
      return 0
    }
    let ioas = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS()
    let iova = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x5000)!, length: 0x1000, access: .readable)
    #expect(iova == 0x1000)
    #expect(field(calls.ioctls.last!.bytes, 4, as: UInt32.self) == CIOMMUFD_IOAS_MAP_READABLE)
  }

  @Test("unmapAll sends iova 0 and length U64_MAX and returns the bytes the kernel reports")
  func unmapAll() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(3), argument, 8) }
      if request == 0x3B86 { store(UInt64(0x3000), argument, 16) }
      return 0
    }
    let ioas = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS()
    #expect(try ioas.unmapAll() == 0x3000)
    let unmap = calls.ioctls.last!
    #expect(unmap.request == 0x3B86)
    #expect(field(unmap.bytes, 0, as: UInt32.self) == 24)
    #expect(field(unmap.bytes, 4, as: UInt32.self) == 3)
    #expect(field(unmap.bytes, 8, as: UInt64.self) == 0)
    #expect(field(unmap.bytes, 16, as: UInt64.self) == UInt64.max)
  }

  @Test("IOAS_COPY names both IOAS ids, the source IOVA and the fixed destination")
  func copy() throws {
    let next = Mutex<UInt32>(0)
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(next.withLock { $0 += 1; return $0 }, argument, 8) }
      return 0
    }
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    let iova = try destination.copy(from: source, sourceIOVA: 0x4000, length: 0x1000, to: .fixed(0x8000), access: .readable)
    #expect(iova == 0x8000)
    let copy = calls.ioctls.last!
    #expect(copy.request == 0x3B83)
    #expect(field(copy.bytes, 4, as: UInt32.self) == CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_READABLE)
    #expect(field(copy.bytes, 8, as: UInt32.self) == 2)
    #expect(field(copy.bytes, 12, as: UInt32.self) == 1)
    #expect(field(copy.bytes, 16, as: UInt64.self) == 0x1000)
    #expect(field(copy.bytes, 24, as: UInt64.self) == 0x8000)
    #expect(field(copy.bytes, 32, as: UInt64.self) == 0x4000)
  }

  @Test("IOVA_RANGES retries with the total the kernel wrote back alongside EMSGSIZE")
  func iovaRangesGrows() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(1), argument, 8) }
      guard request == 0x3B84 else { return 0 }
      let capacity: UInt32 = load(argument, 8)
      let total: UInt32 = 6
      store(total, argument, 8)
      store(UInt64(4096), argument, 24)
      let entries = UnsafeMutableRawPointer(bitPattern: UInt(load(argument, 16, as: UInt64.self)))!
      for index in 0..<Int(min(capacity, total)) {
        entries.storeBytes(of: UInt64(index * 0x10000), toByteOffset: index * 16, as: UInt64.self)
        entries.storeBytes(of: UInt64(index * 0x10000 + 0xfff), toByteOffset: index * 16 + 8, as: UInt64.self)
      }
      if capacity < total { throw .messageTooLong }
      return 0
    }
    let ioas = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS()
    let ranges = try ioas.iovaRanges()
    #expect(ranges.alignment == 4096)
    #expect(ranges.ranges.count == 6)
    #expect(ranges.ranges[5] == IOVARange(start: 0x50000, last: 0x50fff))
    let queries = calls.ioctls.filter { $0.request == 0x3B84 }
    #expect(queries.map { field($0.bytes, 8, as: UInt32.self) } == [4, 6])
  }

  @Test("IOVARange is laid out as struct iommu_iova_range (start, then last), and four of them in place as the kernel's array of four: iovaRanges() has the kernel write into the value")
  func iovaRangeLayout() {
    #expect(MemoryLayout<IOVARange>.size == MemoryLayout<ciommufd_iommu_iova_range>.size)
    #expect(MemoryLayout<IOVARange>.stride == MemoryLayout<ciommufd_iommu_iova_range>.stride)
    #expect(MemoryLayout<IOVARange>.offset(of: \.start) == MemoryLayout<ciommufd_iommu_iova_range>.offset(of: \.start))
    #expect(MemoryLayout<IOVARange>.offset(of: \.last) == MemoryLayout<ciommufd_iommu_iova_range>.offset(of: \.last))
    #expect(MemoryLayout<InlineArray<4, IOVARange>>.size == 4 * MemoryLayout<ciommufd_iommu_iova_range>.stride)
  }

  @Test(
    "IOVA_RANGES: 0 to 4 ranges in one call and held in the value, more on the slow path, the same collection either way",
    arguments: 0...6)
  func iovaRangesInlineAndSpilled(total: Int) throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(1), argument, 8) }
      guard request == 0x3B84 else { return 0 }
      let capacity: UInt32 = load(argument, 8)
      store(UInt32(total), argument, 8)
      store(UInt64(0x1000), argument, 24)
      let entries = UnsafeMutableRawPointer(bitPattern: UInt(load(argument, 16, as: UInt64.self)))!
      for index in 0..<min(Int(capacity), total) {
        entries.storeBytes(of: UInt64(index * 0x10000), toByteOffset: index * 16, as: UInt64.self)
        entries.storeBytes(of: UInt64(index * 0x10000 + 0xfff), toByteOffset: index * 16 + 8, as: UInt64.self)
      }
      if capacity < total { throw .messageTooLong }
      return 0
    }
    let ioas = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS()
    let ranges = try ioas.iovaRanges()
    let expected: [IOVARange] = (0..<total).map { (index: Int) -> IOVARange in
      let start = UInt64(index) * 0x10000
      return IOVARange(start: start, last: start + 0xfff)
    }
    #expect(ranges.count == total)
    #expect(Array(ranges) == expected)
    #expect(ranges.ranges == expected)
    #expect(ranges == IOVARanges(ranges: expected, alignment: 0x1000))
    #expect(ranges != IOVARanges(ranges: expected, alignment: 0x2000))
    #expect(ranges != IOVARanges(ranges: expected + [IOVARange(start: 0x100_0000, last: 0x100_0fff)], alignment: 0x1000))
    #expect(Set([ranges, IOVARanges(ranges: expected, alignment: 0x1000)]).count == 1)
    var changed = ranges
    changed.ranges = Array(expected.reversed()) + [IOVARange(start: 0x100_0000, last: 0x100_0fff)]
    #expect(changed.count == total + 1 && changed.last == IOVARange(start: 0x100_0000, last: 0x100_0fff))
    #expect(ranges.count == total, "a copy changed, not the original")
    let queries = calls.ioctls.filter { $0.request == 0x3B84 }
    let capacities: [UInt32] = total <= 4 ? [4] : [4, UInt32(total)]
    #expect(queries.map { field($0.bytes, 8, as: UInt32.self) } == capacities)
  }

  @Test("ALLOW_IOVAS passes the ranges as start/last pairs, and an empty list as a null pointer")
  func allowIOVAs() throws {
    let seen = Mutex<[[UInt64]]>([])
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(1), argument, 8) }
      if request == 0x3B82 {
        let count = Int(load(argument, 8, as: UInt32.self))
        let pointer = load(argument, 16, as: UInt64.self)
        var values: [UInt64] = [pointer == 0 ? 0 : 1]
        if let entries = UnsafeMutableRawPointer(bitPattern: UInt(pointer)) {
          for index in 0..<(count * 2) { values.append(entries.load(fromByteOffset: index * 8, as: UInt64.self)) }
        }
        seen.withLock { $0.append(values) }
      }
      return 0
    }
    let ioas = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS()
    try ioas.allowIOVAs([IOVARange(start: 0x1000, last: 0x1fff), IOVARange(start: 0x10000, length: 0x10000)!])
    try ioas.allowIOVAs([])
    #expect(seen.withLock { $0 } == [[1, 0x1000, 0x1fff, 0x10000, 0x1ffff], [0]])
  }

  @Test("IOMMU_OPTION encodes option, op and object id; the value comes back in val64")
  func options() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(5), argument, 8) }
      if request == 0x3B87, load(argument, 8, as: UInt16.self) == 1 { store(UInt64(1), argument, 16) }
      return 0
    }
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    let ioas = try iommufd.allocateIOAS()
    #expect(try ioas.hugePagesEnabled() == true)
    try ioas.setHugePages(enabled: false)
    #expect(try iommufd.memoryLimitAccounting() == .perProcess)
    try iommufd.setMemoryLimitAccounting(.perUser)
    let options = calls.ioctls.filter { $0.request == 0x3B87 }.map {
      [UInt64(field($0.bytes, 4, as: UInt32.self)), UInt64(field($0.bytes, 8, as: UInt16.self)),
       UInt64(field($0.bytes, 12, as: UInt32.self)), field($0.bytes, 16, as: UInt64.self)]
    }
    // [option_id, op, object_id, val64]
    #expect(options == [[1, 1, 5, 0], [1, 0, 5, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
  }

  @Test("VFIO_IOAS GET maps ENODEV to no compat IOAS; SET and CLEAR send the op")
  func compatibilityIOAS() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(4), argument, 8) }
      if request == 0x3B88, load(argument, 8, as: UInt16.self) == 0 { throw .operationNotSupportedByDevice }
      return 0
    }
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    #expect(try iommufd.compatibilityIOASID() == nil)
    let ioas = try iommufd.allocateIOAS()
    try iommufd.setCompatibilityIOAS(ioas)
    try iommufd.setCompatibilityIOAS(nil)
    let ops = calls.ioctls.filter { $0.request == 0x3B88 }.map { [field($0.bytes, 4, as: UInt32.self), UInt32(field($0.bytes, 8, as: UInt16.self))] }
    #expect(ops == [[0, 0], [4, 1], [0, 2]])
  }

  @Test("HWPT_ALLOC sends dev_id, pt_id and flags with the full 48-byte size")
  func hwptAlloc() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(2), argument, 8) }
      if request == 0x3B89 { store(UInt32(3), argument, 16) }
      return 0
    }
    let ioas = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS()
    let hwpt = try HWPageTable(on: ioas, forDevice: ObjectID(1), flags: .nestParent)
    #expect(hwpt.id == ObjectID(3))
    let alloc = calls.ioctls.last!
    #expect(alloc.request == 0x3B89)
    #expect(field(alloc.bytes, 0, as: UInt32.self) == 48)
    #expect(field(alloc.bytes, 4, as: UInt32.self) == 1)
    #expect(field(alloc.bytes, 8, as: UInt32.self) == 1)
    #expect(field(alloc.bytes, 12, as: UInt32.self) == 2)
  }
}

