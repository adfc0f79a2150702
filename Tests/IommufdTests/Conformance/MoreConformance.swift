import Iommufd
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A page holding a request struct, made read-only after it is filled: the kernel can read
/// the request but its write-back faults (for the EFAULT-after-side-effect rules).
final class ReadOnlyRequest {
  let page: UnsafeMutableRawPointer

  init(_ bytes: [UInt8]) {
    page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
    page.copyMemory(from: bytes, byteCount: bytes.count)
    mprotect(page, 4096, PROT_READ)
  }

  deinit { munmap(page, 4096) }

  func issue(_ backend: Backend, _ fd: FileDescriptor, _ request: UInt) -> Errno? {
    do {
      _ = try backend.calls.ioctl(fd, request, page)
      return nil
    } catch {
      return error
    }
  }
}

/// More iommufd rules, one scenario each, on every platform.
@Suite("conformance: iommufd, continued")
struct MoreIOMMUConformance {
  @Test("IOAS_ALLOC-3: a faulting write-back leaves no IOAS: the id is free again", arguments: Platform.all)
  func allocWriteBack(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let request = ReadOnlyRequest(le(UInt32(12), UInt32(0), UInt32(0)))
    #expect(request.issue(backend, iommufd.fileDescriptor, 0x3B81) == .badAddress)
    #expect(try iommufd.allocateIOAS().id == ObjectID(1))
  }

  @Test("MAP-15/UNMAP-8: a faulting write-back keeps the side effect: the map stays, the unmap happened", arguments: Platform.all)
  func mapWriteBack(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let map = ReadOnlyRequest(le(UInt32(40), UInt32(0x7), ioas.id.rawValue, UInt32(0), UInt64(0x7000_0000), UInt64(0x1000), UInt64(0x4000)))
    #expect(map.issue(backend, iommufd.fileDescriptor, 0x3B85) == .badAddress)
    let unmap = ReadOnlyRequest(le(UInt32(24), ioas.id.rawValue, UInt64(0x4000), UInt64(0x1000)))
    #expect(unmap.issue(backend, iommufd.fileDescriptor, 0x3B86) == .badAddress)
    #expect(errno { try ioas.unmap(iova: 0x4000, length: 0x1000) } == .noSuchFileOrDirectory)
  }

  @Test("COPY-10: a faulting write-back keeps the copy", arguments: Platform.all)
  func copyWriteBack(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    _ = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0000)!, length: 0x1000, at: .fixed(0x1000))
    let copy = ReadOnlyRequest(le(UInt32(40), UInt32(0x7), ioas.id.rawValue, ioas.id.rawValue, UInt64(0x1000), UInt64(0x9000), UInt64(0x1000)))
    #expect(copy.issue(backend, iommufd.fileDescriptor, 0x3B83) == .badAddress)
    #expect(try ioas.unmap(iova: 0x9000, length: 0x1000) == 0x1000)
  }

  @Test("RANGES-3/6: a larger array gets the entries and the total; a bad array pointer with room for entries is EFAULT", arguments: Platform.all)
  func rangesArray(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let entries = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    defer { entries.deallocate() }
    entries.initializeMemory(as: UInt8.self, repeating: 0xAA)
    let pointer = UInt64(UInt(bitPattern: entries.baseAddress))
    let (error, reply) = rawIoctl(backend, iommufd.fileDescriptor, 0x3B84, le(UInt32(32), ioas.id.rawValue, UInt32(4), UInt32(0), pointer, UInt64(0)))
    #expect(error == nil)
    #expect(reply == le(UInt32(32), ioas.id.rawValue, UInt32(1), UInt32(0), pointer, UInt64(1)))
    #expect(Array(entries.prefix(16)) == le(UInt64(0), UInt64.max))
    #expect(entries[16] == 0xAA)
    let bad = unmappedAddress()
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B84, le(UInt32(32), ioas.id.rawValue, UInt32(4), UInt32(0), bad, UInt64(0))).0 == .badAddress)
  }

  @Test("ALLOW-1/5/6: reserved EOPNOTSUPP, unknown IOAS ENOENT; mappings outside a new list survive; num_iovas is not written", arguments: Platform.all)
  func allowMore(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let fd = iommufd.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B82, le(UInt32(24), ioas.id.rawValue, UInt32(0), UInt32(1), UInt64(0))).0 == .notSupported)
    #expect(rawIoctl(backend, fd, 0x3B82, le(UInt32(24), UInt32(9), UInt32(0), UInt32(0), UInt64(0))).0 == .noSuchFileOrDirectory)
    _ = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0000)!, length: 0x1000, at: .fixed(0x1000))
    try ioas.allowIOVAs([IOVARange(start: 0x10_0000, last: 0x1F_FFFF)])
    #expect(try ioas.unmap(iova: 0x1000, length: 0x1000) == 0x1000)
  }

  @Test("MAP-9: with huge pages off, a user address not page-aligned is EINVAL", arguments: Platform.all)
  func map9(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    try ioas.setHugePages(enabled: false)
    #expect(errno { try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0800)!, length: 0x1000) } == .invalidArgument)
    #expect(try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_1000)!, length: 0x1000) == 0x1000)
  }

  @Test("MAP-12: adjacent mappings are never merged: one unmap may remove both, but half of one is ENOENT", arguments: Platform.all)
  func map12(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
    _ = try ioas.unsafeMap(address: address, length: 0x2000, at: .fixed(0x10000))
    _ = try ioas.unsafeMap(address: address + 0x2000, length: 0x2000, at: .fixed(0x12000))
    #expect(errno { try ioas.unmap(iova: 0x11000, length: 0x2000) } == .noSuchFileOrDirectory)
    #expect(try ioas.unmap(iova: 0x10000, length: 0x4000) == 0x4000)
  }

  @Test("COPY-1..4/6/7: flag, overflow, permission and source checks come before the destination; automatic placement", arguments: Platform.all)
  func copyChecks(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    _ = try source.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0000)!, length: 0x2000, at: .fixed(0x4000))
    let fd = iommufd.fileDescriptor
    func copy(_ flags: UInt32, _ dst: UInt32, _ src: UInt32, _ length: UInt64, _ dstIOVA: UInt64, _ srcIOVA: UInt64) -> Errno? {
      rawIoctl(backend, fd, 0x3B83, le(UInt32(40), flags, dst, src, length, dstIOVA, srcIOVA)).0
    }
    let s = source.id.rawValue
    let d = destination.id.rawValue
    #expect(copy(0x8 | 0x4, d, s, 0x1000, 0, 0x4000) == .notSupported)
    #expect(copy(0x4, d, s, 0x1000, .max, 0x4000) == .overflow)
    #expect(copy(0x0, d, s, 0x1000, 0, 0x4000) == .invalidArgument)
    #expect(copy(0x4, d, 99, 0x1000, 0, 0x4000) == .noSuchFileOrDirectory)
    #expect(copy(0x4, 99, s, 0x1000, 0, 0x9000) == .noSuchFileOrDirectory)
    #expect(copy(0x4, 99, s, 0x1000, 0, 0x4000) == .noSuchFileOrDirectory)
    #expect(try destination.copy(from: source, sourceIOVA: 0x4000, length: 0x2000, access: .readable) == 0x2000)
  }

  @Test("OPT-1/5, VIOAS-1/5: reserved fields EOPNOTSUPP; an unknown VFIO_IOAS op EOPNOTSUPP; OPTION writes back only val64", arguments: Platform.all)
  func optionFields(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let fd = iommufd.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B87, le(UInt32(24), UInt32(1), UInt16(1), UInt16(1), ioas.id.rawValue, UInt64(0))).0 == .notSupported)
    let (error, reply) = rawIoctl(backend, fd, 0x3B87, le(UInt32(24), UInt32(1), UInt16(1), UInt16(0), ioas.id.rawValue, UInt64(77)))
    #expect(error == nil)
    #expect(reply == le(UInt32(24), UInt32(1), UInt16(1), UInt16(0), ioas.id.rawValue, UInt64(1)))
    #expect(rawIoctl(backend, fd, 0x3B88, le(UInt32(12), ioas.id.rawValue, UInt16(1), UInt16(1))).0 == .notSupported)
    #expect(rawIoctl(backend, fd, 0x3B88, le(UInt32(12), ioas.id.rawValue, UInt16(3), UInt16(0))).0 == .notSupported)
    #expect(rawIoctl(backend, fd, 0x3B88, le(UInt32(12), UInt32(9), UInt16(1), UInt16(0))).0 == .noSuchFileOrDirectory)
  }

  @Test("HWPT-1/2/3: reserved EOPNOTSUPP and data type/length mismatch EINVAL come before the device lookup (ENOENT)", arguments: Platform.all)
  func hwptChecks(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let fd = iommufd.fileDescriptor
    let id = ioas.id.rawValue
    func alloc(_ reserved: UInt32, _ type: UInt32, _ length: UInt32) -> Errno? {
      rawIoctl(backend, fd, 0x3B89, le(UInt32(48), UInt32(0), UInt32(9), id, UInt32(0), reserved, type, length, UInt64(0), UInt32(0), UInt32(0))).0
    }
    #expect(alloc(1, 0, 0) == .notSupported)
    #expect(alloc(0, 0, 4) == .invalidArgument)
    #expect(alloc(0, 1, 0) == .invalidArgument)
    #expect(alloc(0, 0, 0) == .noSuchFileOrDirectory)
    #expect(rawIoctl(backend, fd, 0x3B89, le(UInt32(20), UInt32(0), UInt32(9), id, UInt32(0))).0 == .invalidArgument)
  }
}

/// More VFIO device rules, one scenario each.
@Suite("conformance: VFIO device, continued")
struct MoreDeviceConformance {
  @Test("BIND-1/CDEV-4: a NULL argument is EFAULT; a longer argsz with a non-zero tail is accepted (6.12)", arguments: Platform.withDevice)
  func bindArgument(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    #expect(rawIoctl(backend, device.fileDescriptor, 0x3B76, []).0 == .badAddress)
    let (error, reply) = rawIoctl(backend, device.fileDescriptor, 0x3B76, le(UInt32(24), UInt32(0), iommufd.fileDescriptor.rawValue, UInt32(0), UInt64(0xFFFF)))
    #expect(error == nil)
    #expect(reply == le(UInt32(24), UInt32(0), iommufd.fileDescriptor.rawValue, UInt32(1), UInt64(0xFFFF)))
  }

  @Test("BIND-9: a faulting out_devid write undoes the bind; ATT-7: a faulting pt_id write leaves the device detached", arguments: Platform.withDevice)
  func writeBacks(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    let bind = ReadOnlyRequest(le(UInt32(16), UInt32(0), iommufd.fileDescriptor.rawValue, UInt32(0)))
    #expect(bind.issue(backend, device.fileDescriptor, 0x3B76) == .badAddress)
    #expect(try device.bind(to: iommufd) == ObjectID(1))
    let ioas = try iommufd.allocateIOAS()
    let attach = ReadOnlyRequest(le(UInt32(12), UInt32(0), ioas.id.rawValue))
    #expect(attach.issue(backend, device.fileDescriptor, 0x3B77) == .badAddress)
    #expect(errno { try iommufd.destroy(ObjectID(3)) } == .noSuchFileOrDirectory)
    #expect(try ioas.iovaRanges().ranges == [IOVARange(start: 0, last: .max)])
    #expect(try device.attach(to: ioas) == ObjectID(3))
  }

  @Test("DET-1/4, ATT-1: bad flags or argsz are EINVAL; after a detach the next attach is a fresh one", arguments: Platform.withDevice)
  func detachChecks(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    let fd = device.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B78, le(UInt32(8), UInt32(1))).0 == .invalidArgument)
    #expect(rawIoctl(backend, fd, 0x3B78, le(UInt32(4), UInt32(0))).0 == .invalidArgument)
    #expect(rawIoctl(backend, fd, 0x3B77, le(UInt32(8), UInt32(0), ioas.id.rawValue)).0 == .invalidArgument)
    #expect(try device.attach(to: ioas) == ObjectID(3))
    try device.detach()
    #expect(try device.attach(to: ioas) == ObjectID(3))
  }

  @Test("CLOSE-2/CDEV-1: closing an unbound descriptor changes nothing; the device can be opened and bound again", arguments: Platform.withDevice)
  func close2(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let unbound = try VFIODevice.open(platform.devicePath!, backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    try device.bind(to: iommufd)
    try unbound.close()
    #expect(try device.info().regionCount == 9)
    try device.close()
    let again = try VFIODevice.open(platform.devicePath!, backend: backend)
    #expect(try again.bind(to: iommufd) == ObjectID(1))
  }
}

/// GET_HW_INFO and the feature probe.
@Suite("conformance: hardware info and features")
struct HardwareInfoConformance {
  @Test("INFO-1/2/3/4: flags EOPNOTSUPP, unknown device ENOENT; VT-d reports type 1 with 24 bytes, no dirty tracking, no PASID; a larger buffer is zeroed past the data", arguments: Platform.withDevice)
  func vtd(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    let id = try device.bind(to: iommufd)
    let info = try iommufd.hardwareInfo(device: id)
    #expect(info.kind == .intelVTd)
    #expect(info.data.count == 24)
    let newer = platform.release == .linux7_2  // 7.2 reports ATS_NOT_SUPPORTED and takes flag 1 (INPUT_TYPE)
    #expect(info.capabilities == (newer ? .atsNotSupported : []))
    #expect(info.maxPASIDLog2 == 0)
    #expect(info.vtdRegisters?.capability == 0x00D2_008C_2226_0286)
    let fd = iommufd.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B8A, le(UInt32(40), UInt32(1), id.rawValue, UInt32(0), UInt64(0), UInt32(0), UInt32(0), UInt64(0))).0 == (newer ? nil : .notSupported))
    #expect(rawIoctl(backend, fd, 0x3B8A, le(UInt32(40), UInt32(2), id.rawValue, UInt32(0), UInt64(0), UInt32(0), UInt32(0), UInt64(0))).0 == .notSupported)
    #expect(rawIoctl(backend, fd, 0x3B8A, le(UInt32(40), UInt32(0), UInt32(77), UInt32(0), UInt64(0), UInt32(0), UInt32(0), UInt64(0))).0 == .noSuchFileOrDirectory)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32, alignment: 8)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0xAA)
    let pointer = UInt64(UInt(bitPattern: buffer.baseAddress))
    let (error, reply) = rawIoctl(backend, fd, 0x3B8A, le(UInt32(32), UInt32(0), id.rawValue, UInt32(32), pointer, UInt32(0x5555), UInt32(0)))
    #expect(error == nil)
    #expect(reply == le(UInt32(32), UInt32(0), id.rawValue, UInt32(24), pointer, UInt32(1), UInt32(0)))  // INFO-5: no capabilities word
    #expect(Array(buffer.prefix(24)) == info.data)
    #expect(buffer.suffix(8).allSatisfy { $0 == 0 })
  }

  @Test("INFO with the mock: the self-test type 0xfeedbeef, 8 bytes with 0xdeadbeef, dirty tracking unless NO_DIRTY", arguments: Platform.mock)
  func mock(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    let info = try iommufd.hardwareInfo(device: mock.deviceID)
    let ats: IOMMUHardwareInfo.Capabilities = platform.release == .linux7_2 ? .atsNotSupported : []
    #expect(info == IOMMUHardwareInfo(kind: .selfTest, data: le(UInt32(0), UInt32(0xDEAD_BEEF)), capabilities: ats.union(.dirtyTracking), maxPASIDLog2: 0))
    let plain = try iommufd.selfTest.attachMockDevice(to: ioas, flags: .noDirtyTracking)
    #expect(try iommufd.hardwareInfo(device: plain.deviceID).capabilities == ats)
  }
}
