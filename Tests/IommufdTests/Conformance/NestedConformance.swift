import Iommufd
import SystemPackage
import Testing

/// Nested HW page tables and invalidation with the self-test's mock IOMMU (HWPT-6..10,
/// INV-1..7), on a simulated test kernel and in the lab's mock boot.
@Suite("conformance: nested HWPTs and invalidation")
struct NestedConformance {
  struct Setup {
    let iommufd: IOMMUFD
    let ioas: IOAS
    let mock: MockDevice
    let parent: HWPageTable

    init(_ platform: Platform) throws {
      iommufd = try IOMMUFD.open(backend: platform.makeBackend())
      ioas = try iommufd.allocateIOAS()
      mock = try iommufd.selfTest.attachMockDevice(to: ioas)
      parent = try HWPageTable(on: ioas, forDevice: mock.deviceID, flags: .nestParent)
    }

    func nested(_ iotlb: UInt32 = 0xBADBEEF) throws(IommufdError) -> NestedHWPageTable {
      try NestedHWPageTable(parent: parent, forDevice: mock.deviceID, dataType: IOMMUSelfTest.nestedDataType, data: le(iotlb))
    }
  }

  @Test("HWPT-6/7: a parent without NEST_PARENT or automatic is EINVAL; wrong type EOPNOTSUPP; 3 or 5 bytes EINVAL; nesting on nested EINVAL", arguments: Platform.mock)
  func allocation(platform: Platform) throws {
    let setup = try Setup(platform)
    let plain = try HWPageTable(on: setup.ioas, forDevice: setup.mock.deviceID)
    let type = IOMMUSelfTest.nestedDataType
    #expect(errno { try NestedHWPageTable(parent: plain, forDevice: setup.mock.deviceID, dataType: type, data: le(UInt32(1))) } == .invalidArgument)
    #expect(errno { try NestedHWPageTable(parent: setup.parent, forDevice: setup.mock.deviceID, dataType: 0xBEEF, data: le(UInt32(1))) } == .notSupported)
    #expect(errno { try NestedHWPageTable(parent: setup.parent, forDevice: setup.mock.deviceID, dataType: type, data: [1, 2, 3]) } == .invalidArgument)
    // 7.2's mock data has a page-table type after the IOTLB value: 4 to 8 bytes.
    #expect(errno { try NestedHWPageTable(parent: setup.parent, forDevice: setup.mock.deviceID, dataType: type, data: [1, 2, 3, 4, 5]) } == (platform.release == .linux7_2 ? nil : .invalidArgument))
    #expect(errno { try NestedHWPageTable(parent: setup.parent, forDevice: setup.mock.deviceID, dataType: type, data: [UInt8](repeating: 0, count: 9)) } == .invalidArgument)
    let fd = setup.iommufd.fileDescriptor
    let backend = setup.iommufd.backend
    let auto = setup.mock.pageTableID.rawValue
    #expect(rawIoctl(backend, fd, 0x3B89, le(UInt32(48), UInt32(0), setup.mock.deviceID.rawValue, auto, UInt32(0), UInt32(0), type, UInt32(4), UInt64(0x1000), UInt32(0), UInt32(0))).0 == .invalidArgument)
    #expect(rawIoctl(backend, fd, 0x3B89, le(UInt32(48), UInt32(0), setup.mock.deviceID.rawValue, setup.parent.id.rawValue, UInt32(0), UInt32(0), type, UInt32(4), UInt64(0), UInt32(0), UInt32(0))).0 == .badAddress)
    #expect(rawIoctl(backend, fd, 0x3B89, le(UInt32(48), UInt32(2), setup.mock.deviceID.rawValue, setup.parent.id.rawValue, UInt32(0), UInt32(0), type, UInt32(4), UInt64(0), UInt32(0), UInt32(0))).0 == .notSupported)
    let nested = try setup.nested()
    #expect(errno { try setup.iommufd.selfTest.checkIOTLB(nested, slot: 3, value: 0xBADBEEF) } == nil)
    #expect(rawIoctl(backend, fd, 0x3B89, le(UInt32(48), UInt32(0), setup.mock.deviceID.rawValue, nested.id.rawValue, UInt32(0), UInt32(0), type, UInt32(4), UInt64(0x1000), UInt32(0), UInt32(0))).0 == .invalidArgument)
  }

  @Test("HWPT-10/OBJ-5: a parent with a nested child, and an attached nested HWPT, are EBUSY; a nested HWPT has no dirty ops (ENOENT as paging)", arguments: Platform.mock)
  func references(platform: Platform) throws {
    let setup = try Setup(platform)
    let nested = try setup.nested()
    #expect(errno { try setup.parent.destroy() } == .resourceBusy)
    #expect(try setup.mock.replace(with: nested) == nested.id)
    #expect(errno { try nested.destroy() } == .resourceBusy)
    let fd = setup.iommufd.fileDescriptor
    #expect(rawIoctl(setup.iommufd.backend, fd, 0x3B8B, le(UInt32(16), UInt32(1), nested.id.rawValue, UInt32(0))).0 == .noSuchFileOrDirectory)
    try setup.mock.replace(with: setup.ioas)
    try nested.destroy()
    try setup.parent.destroy()
  }

  @Test("INV-1..7: checks in order; entries processed until the first bad one, whose count is written back; ALL clears every slot", arguments: Platform.mock)
  func invalidation(platform: Platform) throws {
    let setup = try Setup(platform)
    let nested = try setup.nested(7)
    let type = IOMMUSelfTest.invalidationType
    let test = setup.iommufd.selfTest
    // INV-6: no entries still checks the type.
    #expect(try nested.invalidate(dataType: type, entryLength: 8, entries: []) == 0)
    #expect(errno { try nested.invalidate(dataType: 0x1234, entryLength: 8, entries: []) } == .invalidArgument)
    // Slot 1, then a bad slot (EINVAL after 1), then unknown flags (EOPNOTSUPP).
    let error = try #require(throws: IommufdError.self) {
      try nested.invalidate(dataType: type, entryLength: 8, entries: le(UInt32(0), UInt32(1), UInt32(0), UInt32(4)))
    }
    #expect(error.errno == .invalidArgument)
    #expect(error.objects.last == .init("processed", "1"))
    #expect(errno { try test.checkIOTLB(nested, slot: 1, value: 0) } == nil)
    #expect(errno { try test.checkIOTLB(nested, slot: 2, value: 7) } == nil)
    #expect(errno { try test.checkIOTLB(nested, slot: 4, value: 7) } == .invalidArgument)
    #expect(errno { try nested.invalidate(dataType: type, entryLength: 8, entries: le(UInt32(2), UInt32(0))) } == .notSupported)
    #expect(errno { try nested.invalidate(dataType: type, entryLength: 4, entries: le(UInt32(0))) } == .invalidArgument)
    #expect(errno { try nested.invalidate(dataType: type, entryLength: 8, entries: le(UInt32(1), UInt32(9))) } == .invalidArgument)  // the slot is checked even with ALL
    #expect(try nested.invalidate(dataType: type, entryLength: 8, entries: le(UInt32(1), UInt32(3))) == 1)
    #expect(errno { try test.checkIOTLB(nested, slot: 2, value: 0) } == nil)
    // INV-1..3 write back 0: reserved, NULL data with entries, a paging HWPT.
    let fd = setup.iommufd.fileDescriptor
    let backend = setup.iommufd.backend
    let reserved = rawIoctl(backend, fd, 0x3B8D, le(UInt32(32), nested.id.rawValue, UInt64(0), type, UInt32(8), UInt32(3), UInt32(1)))
    #expect(reserved.0 == .notSupported)
    #expect(reserved.1 == le(UInt32(32), nested.id.rawValue, UInt64(0), type, UInt32(8), UInt32(0), UInt32(1)))
    #expect(rawIoctl(backend, fd, 0x3B8D, le(UInt32(32), nested.id.rawValue, UInt64(0), type, UInt32(8), UInt32(1), UInt32(0))).0 == .invalidArgument)
    // A paging HWPT is no invalidation target: ENOENT on 6.12, EINVAL on 7.2.
    #expect(rawIoctl(backend, fd, 0x3B8D, le(UInt32(32), setup.parent.id.rawValue, UInt64(0), type, UInt32(8), UInt32(0), UInt32(0))).0 == (platform.release == .linux7_2 ? .invalidArgument : .noSuchFileOrDirectory))
  }
}
