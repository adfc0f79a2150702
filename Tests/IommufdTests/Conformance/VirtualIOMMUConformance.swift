import CIommufd
import Iommufd
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// vIOMMU, vDEVICE and vEVENTQ with the self-test's mock IOMMU of Linux 7.2, on a
/// simulated 7.2 test kernel and in the lab's 7.2 mock boot.
@Suite("conformance: vIOMMU, vDEVICE and vEVENTQ")
struct VirtualIOMMUConformance {
  /// An IOAS with a mock device and a NEST_PARENT HWPT, as for nested HWPTs.
  typealias Setup = NestedConformance.Setup

  @Test("VIOMMU_ALLOC: type 0 and other drivers' types EOPNOTSUPP, unknown device or parent ENOENT, a parent without NEST_PARENT EINVAL", arguments: Platform.mock7_2)
  func allocation(platform: Platform) throws {
    let setup = try Setup(platform)
    let device = setup.mock.deviceID
    #expect(errno { try VirtualIOMMU(kind: VirtualIOMMU.Kind(rawValue: 0), device: device, parent: setup.parent) } == .notSupported)
    #expect(errno { try VirtualIOMMU(kind: .armSMMUv3, device: device, parent: setup.parent) } == .notSupported)
    #expect(errno { try VirtualIOMMU(kind: .selfTest, device: ObjectID(99), parent: setup.parent) } == .noSuchFileOrDirectory)
    let plain = try HWPageTable(on: setup.ioas, forDevice: device)
    #expect(errno { try VirtualIOMMU(kind: .selfTest, device: device, parent: plain) } == .invalidArgument)
    let fd = setup.iommufd.fileDescriptor
    let viommuAlloc: (UInt32, UInt32) -> Errno? = { flags, hwpt in
      rawIoctl(setup.iommufd.backend, fd, 0x3B90, le(UInt32(40), flags, UInt32(0xDEAD_BEEF), device.rawValue, hwpt, UInt32(0), UInt32(0), UInt32(0), UInt64(0))).0
    }
    #expect(viommuAlloc(1, setup.parent.id.rawValue) == .notSupported)
    #expect(viommuAlloc(0, setup.ioas.id.rawValue) == .noSuchFileOrDirectory)
    let viommu = try setup.viommu()
    #expect(viommu.id == ObjectID(7))  // after IOAS 1, mock 2-4, parent 5, plain 6: failed attempts took none
    _ = plain
  }

  @Test("VIOMMU_ALLOC: the mock's data echoes in_data and sets aside an 8 KiB mmap region at 4096; 4 bytes are EINVAL", arguments: Platform.mock7_2)
  func driverData(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try VirtualIOMMU(kind: .selfTest, device: setup.mock.deviceID, parent: setup.parent, data: le(UInt32(0x1234), UInt32(0), UInt64(0), UInt64(0)))
    #expect(viommu.driverData == le(UInt32(0x1234), UInt32(0x1234), UInt64(4096), UInt64(8192)))
    let second = try VirtualIOMMU(kind: .selfTest, device: setup.mock.deviceID, parent: setup.parent, data: le(UInt32(7), UInt32(0)))
    #expect(second.driverData == le(UInt32(7), UInt32(7)))
    #expect(errno { try VirtualIOMMU(kind: .selfTest, device: setup.mock.deviceID, parent: setup.parent, data: le(UInt32(7))) } == .invalidArgument)
  }

  @Test("mmap of the vIOMMU's region through the iommufd: only its exact offset and length (ENXIO otherwise), shared (EINVAL), not executable (EPERM); the mapping shows in_data and holds the vIOMMU (EBUSY) until munmap", arguments: Platform.mock7_2)
  func regionMapping(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try VirtualIOMMU(kind: .selfTest, device: setup.mock.deviceID, parent: setup.parent, data: le(UInt32(0xBEEF), UInt32(0), UInt64(0), UInt64(0)))
    let calls = setup.iommufd.backend.calls
    let fd = setup.iommufd.fileDescriptor
    let shared = MAP_SHARED
    func map(_ length: Int, _ offset: Int64, _ protection: Int32, _ flags: Int32) -> Errno? {
      let address: UnsafeMutableRawPointer
      do {
        address = try calls.mmap(length: length, protection: protection, flags: flags, fd: fd, offset: offset)
      } catch {
        return error
      }
      _ = try? calls.munmap(address, length: length)
      return nil
    }
    let readWrite = PROT_READ | PROT_WRITE
    #expect(map(8192, 4096 + 4096, readWrite, shared) == .noSuchAddressOrDevice)
    #expect(map(8192, 4096 + 8192, readWrite, shared) == .noSuchAddressOrDevice)
    #expect(map(4096, 4096, readWrite, shared) == .noSuchAddressOrDevice)
    #expect(map(16384, 4096, readWrite, shared) == .noSuchAddressOrDevice)
    #expect(map(8192, 0, readWrite, shared) == .noSuchAddressOrDevice)
    #expect(map(8192, 4096, readWrite, MAP_PRIVATE) == .invalidArgument)
    #expect(map(8192, 4096, PROT_READ | PROT_EXEC, shared) == .notPermitted)
    let address = try calls.mmap(length: 8192, protection: readWrite, flags: shared, fd: fd, offset: 4096)
    #expect(address.load(as: UInt32.self) == 0xBEEF)
    #expect(errno { try viommu.destroy() } == .resourceBusy)
    try calls.munmap(address, length: 8192)
    #expect(errno { try viommu.destroy() } == nil)
  }

  @Test("references: a vIOMMU holds its parent, vDEVICEs and vEVENTQs hold the vIOMMU (EBUSY); destroyed in order they all go", arguments: Platform.mock7_2)
  func references(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()
    #expect(errno { try setup.parent.destroy() } == .resourceBusy)
    let vdevice = try VirtualDevice(on: viommu, device: setup.mock.deviceID, virtualID: 0x99)
    #expect(errno { try viommu.destroy() } == .resourceBusy)
    try vdevice.destroy()
    let queue = try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 4)
    #expect(errno { try viommu.destroy() } == .resourceBusy)
    try queue.destroy()
    try viommu.destroy()
    try setup.parent.destroy()
  }

  @Test("VDEVICE_ALLOC: one per device (EEXIST), one per virtual id (EEXIST), unknown ids ENOENT; a removed device leaves a tombstone id (ENOENT)", arguments: Platform.mock7_2)
  func virtualDevices(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()
    let other = try setup.iommufd.selfTest.attachMockDevice(to: setup.ioas)
    let first = try VirtualDevice(on: viommu, device: setup.mock.deviceID, virtualID: 0x99)
    #expect(errno { try VirtualDevice(on: viommu, device: setup.mock.deviceID, virtualID: 0x98) } == .fileExists)
    #expect(errno { try VirtualDevice(on: viommu, device: other.deviceID, virtualID: 0x99) } == .fileExists)
    #expect(errno { try VirtualDevice(on: viommu, device: ObjectID(99), virtualID: 1) } == .noSuchFileOrDirectory)
    let fd = setup.iommufd.fileDescriptor
    #expect(rawIoctl(setup.iommufd.backend, fd, 0x3B91, le(UInt32(24), UInt32(99), other.deviceID.rawValue, UInt32(0), UInt64(1))).0 == .noSuchFileOrDirectory)
    let second = try VirtualDevice(on: viommu, device: other.deviceID, virtualID: 0)
    let tombstone = second.id
    try other.destroy()
    #expect(errno { try setup.iommufd.destroy(tombstone) } == .noSuchFileOrDirectory)
    // Every lookup finds nothing there: a mock device attached to it is ENOENT (not the
    // EINVAL of an object that is no page table), HWPT_ALLOC's EINVAL stands for any miss.
    let mockDomain = SelfTestOpConformance.command(setup.iommufd, CIOMMUFD_TEST_OP_MOCK_DOMAIN, id: tombstone.rawValue)
    #expect(mockDomain.0 == .noSuchFileOrDirectory)
    let pasidFlags = le(UInt32(0), UInt32(0), UInt32(0), UInt32(CIOMMUFD_MOCK_FLAGS_DEVICE_PASID))
    #expect(SelfTestOpConformance.command(setup.iommufd, CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS, id: tombstone.rawValue, pasidFlags).0 == .noSuchFileOrDirectory)
    // Ids: IOAS 1, mock 2-4, parent 5, vIOMMU 6, other mock 7-8, vDEVICEs 9 and 10. The
    // other mock's ids come free; the tombstone 10 does not.
    #expect(tombstone == ObjectID(10))
    let queue = try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 1)
    #expect(queue.id == ObjectID(7))
    let smmu = try VirtualEventQueue(on: viommu, kind: .armSMMUv3, depth: 1)
    let cmdqv = try VirtualEventQueue(on: viommu, kind: .tegra241CMDQV, depth: 1)
    #expect([smmu.id, cmdqv.id] == [ObjectID(8), ObjectID(11)])
    try first.destroy()
    #expect(try VirtualDevice(on: viommu, device: setup.mock.deviceID, virtualID: 0x98).virtualID == 0x98)
  }

  @Test("VEVENTQ_ALLOC: type 0 EOPNOTSUPP, depth 0 or over 2^19 EINVAL, unknown vIOMMU ENOENT, a second of a type EEXIST; the open descriptor holds it", arguments: Platform.mock7_2)
  func eventQueueAllocation(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()
    #expect(errno { try VirtualEventQueue(on: viommu, kind: VirtualEventQueue.Kind(rawValue: 0), depth: 1) } == .notSupported)
    #expect(errno { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 0) } == .invalidArgument)
    #expect(errno { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: (1 << 19) + 1) } == .invalidArgument)
    let fd = setup.iommufd.fileDescriptor
    #expect(rawIoctl(setup.iommufd.backend, fd, 0x3B93, le(UInt32(32), UInt32(0), UInt32(99), UInt32(0xBEEF_BEEF), UInt32(1), UInt32(0), UInt32(0), UInt32(0))).0 == .noSuchFileOrDirectory)
    #expect(rawIoctl(setup.iommufd.backend, fd, 0x3B93, le(UInt32(32), UInt32(0), viommu.id.rawValue, UInt32(0xBEEF_BEEF), UInt32(1), UInt32(0), UInt32(0), UInt32(1))).0 == .notSupported)
    let queue = try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 1 << 19)
    #expect(errno { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 1) } == .fileExists)
    #expect(errno { try setup.iommufd.destroy(queue.id) } == .resourceBusy)
    let other = try VirtualEventQueue(on: viommu, kind: .armSMMUv3, depth: 1)  // the type is not checked against the driver
    #expect(try other.read() == [])
    try queue.destroy()
    try other.destroy()
  }

  @Test("vEVENTQ descriptor: empty reads return 0 at once, fewer than 8 bytes is EINVAL, a record that does not fit is EINVAL, write is EINVAL, pread ESPIPE", arguments: Platform.mock7_2)
  func eventQueueDescriptor(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()
    let queue = try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 2)
    let calls = setup.iommufd.backend.calls
    var bytes = [UInt8](repeating: 0, count: 16)
    #expect(try bytes.withUnsafeMutableBytes { try calls.read(queue.fileDescriptor, into: $0) } == 0)
    #expect(errno { try bytes.withUnsafeMutableBytes { try calls.read(queue.fileDescriptor, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<4])) } } == .invalidArgument)
    #expect(errno { try bytes.withUnsafeBytes { try calls.write(queue.fileDescriptor, from: $0) } } == .invalidArgument)
    #expect(errno { try bytes.withUnsafeMutableBytes { try calls.pread(queue.fileDescriptor, into: $0, offset: 0) } } == .illegalSeek)
    #expect(errno { try queue.read(maximumBytes: 4) } == .invalidArgument)
  }

  @Test("events: a mock device on a vIOMMU's nested HWPT (which needs its vDEVICE) reports its virtual id; overflow queues one lost-events mark with the next sequence", arguments: Platform.mock7_2)
  func events(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()
    let selfTest = setup.iommufd.selfTest
    let device = setup.mock.deviceID
    let nested = try NestedHWPageTable(on: viommu, forDevice: device, dataType: IOMMUSelfTest.nestedDataType, data: le(UInt32(0)))
    #expect(errno { try setup.mock.replace(with: nested) } == .noSuchFileOrDirectory)  // no vDEVICE yet
    let vdevice = try VirtualDevice(on: viommu, device: device, virtualID: 0x1_0000_0042)
    #expect(try setup.mock.replace(with: nested) == nested.id)
    #expect(errno { try selfTest.triggerVirtualEvent(device: device) } == .notSupported)  // no queue
    #expect(errno { try selfTest.triggerVirtualEvent(device: ObjectID(99)) } == .noSuchFileOrDirectory)
    let queue = try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 2)
    for _ in 0..<3 { try selfTest.triggerVirtualEvent(device: device) }
    #expect(errno { try queue.read(maximumBytes: 11) } == .invalidArgument)
    let id = le(UInt32(0x42))
    #expect(try queue.read(maximumBytes: 12) == [.event(sequence: 0, data: id)])
    #expect(try queue.read() == [.event(sequence: 1, data: id), .lostEvents(sequence: 2)])
    try selfTest.triggerVirtualEvent(device: device)
    try selfTest.triggerVirtualEvent(device: device)
    try selfTest.triggerVirtualEvent(device: device)
    try selfTest.triggerVirtualEvent(device: device)
    #expect(try queue.read() == [.event(sequence: 3, data: id), .event(sequence: 4, data: id), .lostEvents(sequence: 6)])
    try selfTest.triggerVirtualEvent(device: device)
    #expect(try queue.read() == [.event(sequence: 7, data: id)])
    #expect(errno { try viommu.destroy() } == .resourceBusy)
    try setup.mock.replace(with: setup.ioas)
    #expect(errno { try selfTest.triggerVirtualEvent(device: device) } == .noSuchFileOrDirectory)
    try queue.destroy()
    try nested.destroy()
    try vdevice.destroy()
    try viommu.destroy()
  }

  @Test("vIOMMU invalidation: entries name devices by virtual id; the count processed is written back; bad flags EOPNOTSUPP, a slot over 3 or an unknown virtual id EINVAL; ALL clears every slot", arguments: Platform.mock7_2)
  func invalidation(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()
    let device = setup.mock.deviceID
    let vdevice = try VirtualDevice(on: viommu, device: device, virtualID: 0x42)
    let selfTest = setup.iommufd.selfTest
    let type = IOMMUSelfTest.virtualInvalidationType
    func slots() -> [Bool] {
      (0..<4).map { slot in errno { try selfTest.checkDeviceCache(device: device, slot: UInt32(slot), value: 0xBAD_DAD) } == nil }
    }
    #expect(slots() == [true, true, true, true])
    #expect(try viommu.invalidate(dataType: type, entryLength: 12, entries: []) == 0)
    #expect(errno { try viommu.invalidate(dataType: 0xDADBEEF, entryLength: 12, entries: []) } == .invalidArgument)
    #expect(try viommu.invalidate(dataType: type, entryLength: 12, entries: le(UInt32(0), UInt32(0x42), UInt32(1))) == 1)
    #expect(slots() == [true, false, true, true])
    #expect(errno { try selfTest.checkDeviceCache(device: device, slot: 1, value: 0) } == nil)
    let entries = le(UInt32(0), UInt32(0x42), UInt32(2)) + le(UInt32(2), UInt32(0x42), UInt32(0))
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: entries.count, alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: entries)
    let pointer = UInt64(UInt(bitPattern: buffer.baseAddress))
    let fd = setup.iommufd.fileDescriptor
    let partial = rawIoctl(setup.iommufd.backend, fd, 0x3B8D, le(UInt32(32), viommu.id.rawValue, pointer, type, UInt32(12), UInt32(2), UInt32(0)))
    #expect(partial.0 == .notSupported)
    #expect(partial.1 == le(UInt32(32), viommu.id.rawValue, pointer, type, UInt32(12), UInt32(1), UInt32(0)))
    #expect(slots() == [true, false, false, true])
    #expect(errno { try viommu.invalidate(dataType: type, entryLength: 12, entries: le(UInt32(0), UInt32(0x43), UInt32(0))) } == .invalidArgument)
    #expect(errno { try viommu.invalidate(dataType: type, entryLength: 12, entries: le(UInt32(0), UInt32(0x42), UInt32(4))) } == .invalidArgument)
    #expect(try viommu.invalidate(dataType: type, entryLength: 12, entries: le(UInt32(1), UInt32(0x42), UInt32(0))) == 1)
    #expect(slots() == [false, false, false, false])
    #expect(errno { try selfTest.checkDeviceCache(device: device, slot: 4, value: 0) } == .invalidArgument)
    #expect(errno { try selfTest.checkDeviceCache(device: ObjectID(99), slot: 0, value: 0) } == .noSuchFileOrDirectory)
    _ = vdevice
  }

  @Test("7.2 test kernel: a mock domain cannot start on a vIOMMU's nested HWPT (ENOENT: no vDEVICE); HWPT_ALLOC on an IOAS takes the mock's 4 to 8 bytes of data; a PASID mock device has 2^20 PASIDs", arguments: Platform.mock7_2)
  func mockDetails(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()
    let nested = try NestedHWPageTable(on: viommu, forDevice: setup.mock.deviceID, dataType: IOMMUSelfTest.nestedDataType, data: le(UInt32(0)))
    #expect(errno { try setup.iommufd.selfTest.attachMockDevice(to: nested) } == .noSuchFileOrDirectory)
    let data = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
    defer { data.deallocate() }
    data.initializeMemory(as: UInt8.self, repeating: 0)
    let pointer = UInt64(UInt(bitPattern: data.baseAddress))
    let fd = setup.iommufd.fileDescriptor
    func alloc(_ type: UInt32, _ length: UInt32) -> Errno? {
      rawIoctl(setup.iommufd.backend, fd, 0x3B89, le(UInt32(48), UInt32(0), setup.mock.deviceID.rawValue, setup.ioas.id.rawValue, UInt32(0), UInt32(0), type, length, pointer, UInt32(0), UInt32(0))).0
    }
    #expect(alloc(0xDEAD, 8) == nil)
    #expect(alloc(0xDEAD, 4) == nil)
    #expect(alloc(0xDEAD, 9) == .invalidArgument)
    #expect(alloc(0xBEEF, 4) == .notSupported)
    let pasid = try setup.iommufd.selfTest.attachMockDevice(to: setup.ioas, flags: .pasid)
    #expect(try setup.iommufd.hardwareInfo(device: pasid.deviceID).maxPASIDLog2 == 20)
    #expect(try setup.iommufd.hardwareInfo(device: setup.mock.deviceID).maxPASIDLog2 == 0)
  }

  @Test("HW_QUEUE_ALLOC on the mock: checks in order; the queue and an internal access take two ids; two queues in index order (EINVAL, EEXIST, EIO); its pages are pinned against unmapping (EBUSY) until it goes", arguments: Platform.mock7_2)
  func hardwareQueues(platform: Platform) throws {
    let setup = try Setup(platform)
    let viommu = try setup.viommu()  // id 6
    let backend = setup.iommufd.backend
    let buffer = try DMABuffer(length: 4096, backend: backend)
    var mapping = try setup.ioas.map(buffer, at: .fixed(0x100_0000), access: .readable)
    let fd = setup.iommufd.fileDescriptor
    func raw(flags: UInt32 = 0, viommu id: UInt32, type: UInt32, index: UInt32 = 0, iova: UInt64, length: UInt64) -> Errno? {
      rawIoctl(backend, fd, 0x3B94, le(UInt32(40), flags, id, type, index, UInt32(0), iova, length)).0
    }
    let selfTest = HardwareQueue.Kind.selfTest.rawValue
    #expect(raw(flags: 1, viommu: viommu.id.rawValue, type: selfTest, iova: 0x100_0000, length: 64) == .notSupported)
    #expect(raw(viommu: viommu.id.rawValue, type: 0, iova: 0x100_0000, length: 64) == .notSupported)
    #expect(raw(viommu: viommu.id.rawValue, type: selfTest, iova: 0x100_0000, length: 0) == .invalidArgument)
    #expect(raw(viommu: viommu.id.rawValue, type: selfTest, iova: .max, length: 2) == .overflow)
    #expect(raw(viommu: 99, type: selfTest, iova: 0x100_0000, length: 64) == .noSuchFileOrDirectory)
    #expect(raw(viommu: viommu.id.rawValue, type: 1, iova: 0x100_0000, length: 64) == .notSupported)
    let queue = { (index: UInt32, iova: UInt64, length: UInt64) throws(IommufdError) -> HardwareQueue in
      try HardwareQueue(on: viommu, kind: .selfTest, index: index, guestAddress: iova, length: length)
    }
    #expect(errno { try queue(0, 0x200_0000, 64) } == .noSuchFileOrDirectory)  // not mapped
    #expect(errno { try queue(2, 0x100_0000, 64) } == .invalidArgument)
    #expect(errno { try queue(1, 0x100_0000, 64) } == .ioError)  // index 0 first
    #expect(try setup.ioas.iovaRanges().alignment == 2048)
    let first = try queue(0, 0x100_0040, 64)
    #expect(first.id == ObjectID(7))  // the internal access took 8
    #expect(try setup.ioas.iovaRanges().alignment == 4096)
    #expect(errno { try setup.iommufd.destroy(ObjectID(8)) } == .resourceBusy)
    #expect(errno { try queue(0, 0x100_0000, 64) } == .fileExists)
    let second = try queue(1, 0x100_0800, 0x800)
    #expect(second.id == ObjectID(9))
    #expect(errno { try first.destroy() } == .resourceBusy)  // the second depends on it
    #expect(errno { try viommu.destroy() } == .resourceBusy)
    #expect(errno { try mapping.unmap() } == .resourceBusy)
    #expect(errno { try setup.ioas.unmapAll() } == .resourceBusy)
    try second.destroy()
    try first.destroy()
    #expect(try setup.ioas.iovaRanges().alignment == 2048)
    #expect(errno { try setup.iommufd.destroy(ObjectID(8)) } == .noSuchFileOrDirectory)
    try mapping.unmap()
    try viommu.destroy()
  }

  @Test("GET_HW_INFO on a 7.2 test kernel: the mock reports dirty tracking and PCI_ATS_NOT_SUPPORTED; MOCK_DOMAIN_FLAGS has no HUGE_IOVA", arguments: Platform.mock7_2)
  func hardwareInfo(platform: Platform) throws {
    let setup = try Setup(platform)
    let info = try setup.iommufd.hardwareInfo(device: setup.mock.deviceID)
    #expect(info.capabilities == [.dirtyTracking, .atsNotSupported])
    #expect(errno { try setup.iommufd.selfTest.attachMockDevice(to: setup.ioas, flags: .hugeIOVA) } == .invalidArgument)
  }
}

extension NestedConformance.Setup {
  /// A self-test vIOMMU for the mock device on the NEST_PARENT HWPT.
  func viommu() throws(IommufdError) -> VirtualIOMMU {
    try VirtualIOMMU(kind: .selfTest, device: mock.deviceID, parent: parent)
  }
}
