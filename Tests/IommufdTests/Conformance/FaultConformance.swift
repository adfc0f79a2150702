import Iommufd
import SystemPackage
import Testing

/// Fault queues with the self-test's mock IOMMU (FAULT-1..7, HWPT-8), on a simulated test
/// kernel and in the lab's mock boot (its kernel has IOMMU_IOPF).
@Suite("conformance: fault queues")
struct FaultConformance {
  struct Setup {
    let iommufd: IOMMUFD
    let ioas: IOAS
    let mock: MockDevice
    let parent: HWPageTable
    let queue: FaultQueue
    let nested: NestedHWPageTable

    init(_ platform: Platform) throws {
      iommufd = try IOMMUFD.open(backend: platform.makeBackend())
      ioas = try iommufd.allocateIOAS()
      mock = try iommufd.selfTest.attachMockDevice(to: ioas)
      parent = try HWPageTable(on: ioas, forDevice: mock.deviceID, flags: .nestParent)
      queue = try iommufd.allocateFaultQueue()
      nested = try NestedHWPageTable(
        parent: parent, forDevice: mock.deviceID, dataType: IOMMUSelfTest.nestedDataType, data: le(UInt32(0)), faultQueue: queue)
    }
  }

  @Test("FAULT-1/4, HWPT-8: flags EOPNOTSUPP; an unknown fault id ENOENT; a queue with its descriptor open or named by an HWPT is EBUSY", arguments: Platform.mock)
  func objects(platform: Platform) throws {
    let setup = try Setup(platform)
    let fd = setup.iommufd.fileDescriptor
    let backend = setup.iommufd.backend
    #expect(rawIoctl(backend, fd, 0x3B8E, le(UInt32(16), UInt32(1), UInt32(0), UInt32(0))).0 == .notSupported)
    #expect(setup.queue.id == ObjectID(6))  // IOAS 1, mock 2-4, parent 5
    #expect(errno { try setup.iommufd.destroy(setup.queue.id) } == .resourceBusy)
    let data = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 4)
    defer { data.deallocate() }
    data.storeBytes(of: UInt32(0), as: UInt32.self)
    let pointer = UInt64(UInt(bitPattern: data.baseAddress))
    #expect(rawIoctl(backend, fd, 0x3B89, le(UInt32(48), UInt32(4), setup.mock.deviceID.rawValue, setup.parent.id.rawValue, UInt32(0), UInt32(0), IOMMUSelfTest.nestedDataType, UInt32(4), pointer, UInt32(99), UInt32(0))).0 == .noSuchFileOrDirectory)
    // 7.2 takes a fault queue on a paging HWPT of an IOAS.
    #expect(rawIoctl(backend, fd, 0x3B89, le(UInt32(48), UInt32(4), setup.mock.deviceID.rawValue, setup.ioas.id.rawValue, UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt64(0), setup.queue.id.rawValue, UInt32(0))).0 == (platform.release == .linux7_2 ? nil : .notSupported))
  }

  @Test("FAULT-5/6/7: a triggered page request is read with cookie 1 and the device id, answered once; reads and writes check their counts", arguments: Platform.mock)
  func roundTrip(platform: Platform) throws {
    let setup = try Setup(platform)
    #expect(try setup.queue.read() == [])
    try setup.mock.replace(with: setup.nested)
    try setup.iommufd.selfTest.triggerPageFault(device: setup.mock.deviceID, group: 0x2, permissions: 0x3, address: 0xDEAD_0000)
    let backend = setup.iommufd.backend
    let fd = setup.queue.fileDescriptor
    var tiny = [UInt8](repeating: 0, count: 39)
    #expect(errno { try tiny.withUnsafeMutableBytes { try backend.calls.read(fd, into: $0) } } == .illegalSeek)
    tiny = []
    #expect(errno { try tiny.withUnsafeMutableBytes { try backend.calls.read(fd, into: $0) } } == .invalidArgument)
    let faults = try setup.queue.read()
    #expect(faults == [PageFault(flags: 2, deviceID: setup.mock.deviceID, pasid: 0, groupID: 2, permissions: 3, address: 0xDEAD_0000, length: 0, cookie: 1)])
    #expect(try setup.queue.read() == [])
    #expect(errno { try setup.queue.respond(to: 2, with: .success) } == .invalidArgument)
    let odd = [UInt8](repeating: 0, count: 7)
    #expect(errno { try odd.withUnsafeBytes { try backend.calls.write(fd, from: $0) } } == .illegalSeek)
    let badCode = le(UInt32(1), UInt32(5))
    #expect(errno { try badCode.withUnsafeBytes { try backend.calls.write(fd, from: $0) } } == .invalidArgument)
    try setup.queue.respond(to: 1, with: .success)
    #expect(errno { try setup.queue.respond(to: 1, with: .success) } == .invalidArgument)
    // A new group takes the lowest free cookie again.
    try setup.iommufd.selfTest.triggerPageFault(device: setup.mock.deviceID, group: 7, permissions: 1, address: 0x1000)
    #expect(try setup.queue.read().map(\.cookie) == [1])
    try setup.mock.replace(with: setup.ioas)
  }

  @Test("FAULT-5: a page request for a PASID with no domain of its own goes to the RID's nested HWPT (the mock's user PASID table), with the PASID flag", arguments: Platform.mock)
  func pasidRouting(platform: Platform) throws {
    let setup = try Setup(platform)
    try setup.mock.replace(with: setup.nested)
    try setup.iommufd.selfTest.triggerPageFault(device: setup.mock.deviceID, pasid: 7, group: 3, permissions: 1, address: 0x4000)
    #expect(try setup.queue.read() == [PageFault(flags: 3, deviceID: setup.mock.deviceID, pasid: 7, groupID: 3, permissions: 1, address: 0x4000, length: 0, cookie: 1)])
    try setup.queue.respond(to: 1, with: .invalid)
    try setup.mock.replace(with: setup.ioas)
  }
}
