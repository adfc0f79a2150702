import CIommufd
import Foundation
import Iommufd
import IommufdSimulator
import IommufdEdu
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Requests after 6.12: a clear "not supported by this kernel" on 6.12; their semantics on
/// 7.2 (the simulator configured as 7.2, and the lab's `--kernel 7.2` boots).
@Suite("conformance: requests after 6.12")
struct NewerRequestConformance {
  static let withDevice6_12 = Platform.withDevice6_12
  static let withDevice7_2 = Platform.withDevice7_2

  // MARK: 6.12

  @Test("probe: a 6.12 kernel has the 6.6-6.11 requests and none of the later ones", arguments: Platform.linux6_12)
  func features6_12(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let present = try IOMMUFeature.allCases.filter { $0 != .selfTest }.filter { feature throws in try iommufd.supports(feature) }
    #expect(present == [.hwptAlloc, .hardwareInfo, .dirtyTracking, .invalidate, .faultQueue])
  }

  @Test("MAP_FILE and CHANGE_PROCESS are ENOTTY on 6.12 (GEN-1), reported as unsupported by this kernel", arguments: Platform.linux6_12)
  func newerIommufdRequests(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let mapFile = try #require(throws: IommufdError.self) { try ioas.mapFile(FileDescriptor(rawValue: 0), offset: 0, length: 4096) }
    #expect(mapFile.errno == .inappropriateIOCTLForDevice)
    #expect(mapFile.detail == "IOMMU_IOAS_MAP_FILE is not supported by this kernel (it came in Linux 6.13)")
    let change = try #require(throws: IommufdError.self) { try iommufd.changeProcess() }
    #expect(change.detail == "IOMMU_IOAS_CHANGE_PROCESS is not supported by this kernel (it came in Linux 6.14)")
  }

  @Test("vIOMMU allocation is ENOTTY on 6.12, reported as unsupported by this kernel", arguments: withDevice6_12)
  func virtualIOMMU6_12(platform: Platform) throws {
    let (_, iommufd, device, id) = try Self.boundDevice(platform)
    let hwpt = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id)
    let viommu = try #require(throws: IommufdError.self) { try VirtualIOMMU(kind: .armSMMUv3, device: id, parent: hwpt) }
    #expect(viommu.errno == .inappropriateIOCTLForDevice)
    #expect(viommu.detail == "IOMMU_VIOMMU_ALLOC is not supported by this kernel (it came in Linux 6.13)")
    withExtendedLifetime(device) {}  // bound until the end
  }

  @Test("PASID attach and detach: 6.12 refuses the flag with EINVAL (ATT-1, DET-1), reported as needing 6.15", arguments: withDevice6_12)
  func pasid6_12(platform: Platform) throws {
    let (_, iommufd, device, _) = try Self.boundDevice(platform)
    let ioas = try iommufd.allocateIOAS()
    let attach = try #require(throws: IommufdError.self) { try device.attach(to: ioas, pasid: 1) }
    #expect(attach.errno == .invalidArgument)
    #expect(attach.detail?.hasPrefix("the kernel refused the PASID flag") == true)
    #expect(errno { try device.detach(pasid: 1) } == .invalidArgument)
    #expect(try device.attach(to: ioas) == ObjectID(3))
  }

  // MARK: 7.2 with edu (VT-d)

  @Test("probe: a 7.2 kernel has every request up to IOMMU_HW_QUEUE_ALLOC", arguments: Platform.linux7_2)
  func features7_2(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let present = try IOMMUFeature.allCases.filter { $0 != .selfTest }.filter { feature throws in try iommufd.supports(feature) }
    #expect(present == IOMMUFeature.allCases.filter { $0 != .selfTest })
  }

  /// The platform's backend, an iommufd and its edu device, bound to it, with the device id.
  static func boundDevice(_ platform: Platform) throws -> (Backend, IOMMUFD, VFIODevice, ObjectID) {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    return (backend, iommufd, device, try device.bind(to: iommufd))
  }

  /// A memfd of `size` bytes filled with `pattern(index)`.
  static func memoryFile(size: Int, pattern: (Int) -> UInt8) throws -> FileDescriptor {
    let fd = ciommufd_memfd_create("iommufd-test", 1)  // MFD_CLOEXEC
    #expect(fd >= 0)
    #expect(ftruncate(fd, off_t(size)) == 0)
    let bytes = (0..<size).map(pattern)
    #expect(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, size, 0) } == size)
    return FileDescriptor(rawValue: fd)
  }

  @Test("MAP_FILE: a memfd mapped at a fixed and an automatic IOVA pins its pages and edu DMA reads and writes the file", arguments: withDevice7_2)
  func mapFileDMA(platform: Platform) throws {
    let (backend, iommufd, device, _) = try Self.boundDevice(platform)
    let ioas = try iommufd.allocateIOAS()
    try device.attach(to: ioas)
    let file = try Self.memoryFile(size: 4 * 4096) { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
    defer { try? file.close() }
    #expect(try ioas.mapFile(file, offset: 0, length: 8192, at: .fixed(0x10_0000), access: .readable) == 0x10_0000)
    let automatic = try ioas.mapFile(file, offset: 8192, length: 8192, access: .writable)
    #expect(automatic == 8192)  // the file offset is the alignment hint: the first 8 KiB-aligned hole
    let edu = try EduDriver(device: device)
    try edu.enableBusMaster()
    try edu.copyToDevice(from: 0x10_0000 + 100, count: 1000)
    try edu.waitForDMA()
    try edu.copyFromDevice(to: automatic, count: 1000)
    try edu.waitForDMA()
    var back = [UInt8](repeating: 0, count: 1000)
    #expect(back.withUnsafeMutableBytes { pread(file.rawValue, $0.baseAddress, 1000, 8192) } == 1000)
    #expect(back == (100..<1100).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) })
    if let simulator = backend.simulator { #expect(simulator.pinnedPages == 4) }
    #expect(try ioas.unmapAll() == 16384)
    if let simulator = backend.simulator { #expect(simulator.pinnedPages == 0) }
  }

  @Test("MAP_FILE at a fixed IOVA whose last byte is 2^64 - 1 is accepted", arguments: Platform.linux7_2)
  func mapFileAtTheTop(platform: Platform) throws {
    let ioas = try IOMMUFD.open(backend: platform.makeBackend()).allocateIOAS()
    let file = try Self.memoryFile(size: 0x3000) { _ in 0 }
    defer { try? file.close() }
    #expect(try ioas.mapFile(file, offset: 0, length: 0x3000, at: .fixed(0xffff_ffff_ffff_d000)) == 0xffff_ffff_ffff_d000)
    #expect(try ioas.unmapAll() == 0x3000)
  }

  @Test("COPY from a MAP_FILE area: the file offset, not a user address, is the alignment hint of an automatic IOVA", arguments: Platform.linux7_2)
  func copyFromFileArea(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let source = try iommufd.allocateIOAS()
    let destination = try iommufd.allocateIOAS()
    let file = try Self.memoryFile(size: 0x20000) { _ in 0 }
    defer { try? file.close() }
    #expect(try source.mapFile(file, offset: 0x10000, length: 0x10000, at: .fixed(0x10_0000)) == 0x10_0000)
    // min(roundup(0x10000), lowest bit of 0x10000) = 64 KiB: the first such hole after 4 KiB.
    #expect(try destination.copy(from: source, sourceIOVA: 0x10_0000, length: 0x10000) == 0x10000)
    #expect(try destination.copy(from: source, sourceIOVA: 0x10_4000, length: 0x4000) == 0x4000)
  }

  @Test("MAP_FILE: flags, permissions, ids, lengths and descriptors are checked in the kernel's order", arguments: Platform.linux7_2)
  func mapFileErrors(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let file = try Self.memoryFile(size: 4096) { _ in 0 }
    defer { try? file.close() }
    let fd = iommufd.fileDescriptor
    func raw(flags: UInt32, ioas id: UInt32, fd file: Int32, start: UInt64 = 0, length: UInt64, iova: UInt64 = 0) -> Errno? {
      rawIoctl(iommufd.backend, fd, 0x3B8F, le(UInt32(40), flags, id, file, start, length, iova)).0
    }
    #expect(raw(flags: 8 | 2, ioas: ioas.id.rawValue, fd: file.rawValue, length: 4096) == .notSupported)
    #expect(raw(flags: 2, ioas: ioas.id.rawValue, fd: file.rawValue, length: 4096, iova: .max) == .overflow)
    #expect(raw(flags: 0, ioas: ioas.id.rawValue, fd: file.rawValue, length: 4096) == .invalidArgument)
    #expect(raw(flags: 2, ioas: 99, fd: file.rawValue, length: 4096) == .noSuchFileOrDirectory)
    #expect(raw(flags: 2, ioas: ioas.id.rawValue, fd: file.rawValue, length: 0) == .invalidArgument)
    #expect(raw(flags: 2, ioas: ioas.id.rawValue, fd: file.rawValue, start: .max - 10, length: 4096) == .overflow)
    #expect(raw(flags: 2, ioas: ioas.id.rawValue, fd: 9999, length: 4096) == .badFileDescriptor)
    #expect(raw(flags: 3, ioas: ioas.id.rawValue, fd: file.rawValue, length: 4096, iova: 0x1000) == nil)
    #expect(raw(flags: 3, ioas: ioas.id.rawValue, fd: file.rawValue, length: 4096, iova: 0x1000) == .fileExists)
  }

  @Test("MAP_FILE: the file is checked when its pages are pinned: a pipe maps, then attach is EINVAL; pages past the end are EINVAL", arguments: withDevice7_2)
  func mapFileChecksAtPin(platform: Platform) throws {
    let (_, iommufd, device, _) = try Self.boundDevice(platform)
    var ends: [Int32] = [0, 0]
    #expect(pipe(&ends) == 0)
    defer { close(ends[0]); close(ends[1]) }
    let ioas = try iommufd.allocateIOAS()
    #expect(try ioas.mapFile(FileDescriptor(rawValue: ends[0]), offset: 0, length: 4096, at: .fixed(0x10_0000)) == 0x10_0000)
    #expect(errno { try device.attach(to: ioas) } == .invalidArgument)
    #expect(try ioas.unmapAll() == 4096)
    try device.attach(to: ioas)
    let file = try Self.memoryFile(size: 4096) { _ in 0 }
    defer { try? file.close() }
    #expect(errno { try ioas.mapFile(file, offset: 4096, length: 4096) } == .invalidArgument)
    #expect(errno { try ioas.mapFile(file, offset: 0, length: 8192) } == .invalidArgument)
    #expect(try ioas.mapFile(file, offset: 0, length: 4096, at: .fixed(0x20_0000)) == 0x20_0000)
  }

  @Test("MAP_FILE: the descriptor's mode does not matter (a read-only one maps WRITEABLE); a range ending at 2^64 maps without a domain and fails the pin at attach", arguments: withDevice7_2)
  func mapFileEdges(platform: Platform) throws {
    let (backend, iommufd, device, _) = try Self.boundDevice(platform)
    let file = try Self.memoryFile(size: 8192) { UInt8(truncatingIfNeeded: $0) }
    defer { try? file.close() }
    let readOnly = open("/proc/self/fd/\(file.rawValue)", O_RDONLY | O_CLOEXEC)
    #expect(readOnly >= 0)
    defer { close(readOnly) }
    let ioas = try iommufd.allocateIOAS()
    #expect(try ioas.mapFile(FileDescriptor(rawValue: readOnly), offset: 0, length: 8192, at: .fixed(0x10_0000), access: .readWrite) == 0x10_0000)
    try device.attach(to: ioas)
    if let simulator = backend.simulator { #expect(simulator.pinnedPages == 2) }
    try device.detach()
    #expect(try ioas.unmapAll() == 8192)
    #expect(try ioas.mapFile(file, offset: UInt64.max - 4095, length: 4096, at: .fixed(0x20_0000)) == 0x20_0000)
    #expect(errno { try device.attach(to: ioas) } == .invalidArgument)
  }

  @Test("CHANGE_PROCESS: 0 with no mappings or only file mappings; EINVAL with a user mapping; EOPNOTSUPP for a reserved field", arguments: Platform.linux7_2)
  func changeProcess(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    try iommufd.changeProcess()
    let ioas = try iommufd.allocateIOAS()
    let file = try Self.memoryFile(size: 4096) { _ in 0 }
    defer { try? file.close() }
    _ = try ioas.mapFile(file, offset: 0, length: 4096)
    try iommufd.changeProcess()
    #expect(rawIoctl(backend, iommufd.fileDescriptor, 0x3B92, le(UInt32(8), UInt32(1))).0 == .notSupported)
    let buffer = try DMABuffer(length: 4096, backend: backend)
    var mapping = try ioas.map(buffer)
    #expect(errno { try iommufd.changeProcess() } == .invalidArgument)
    try mapping.unmap()
    try iommufd.changeProcess()
  }

  @Test("vIOMMU on VT-d: 7.2's VT-d driver has none (EOPNOTSUPP), after the flags and type checks", arguments: withDevice7_2)
  func virtualIOMMUOnVTd(platform: Platform) throws {
    let (_, iommufd, device, id) = try Self.boundDevice(platform)
    let hwpt = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id)
    #expect(errno { try VirtualIOMMU(kind: .armSMMUv3, device: id, parent: hwpt) } == .notSupported)
    #expect(errno { try VirtualIOMMU(kind: VirtualIOMMU.Kind(rawValue: 0), device: id, parent: hwpt) } == .notSupported)
    #expect(errno { try VirtualIOMMU(kind: .armSMMUv3, device: ObjectID(99), parent: hwpt) } == .noSuchFileOrDirectory)
    withExtendedLifetime(device) {}  // bound until the end
  }

  @Test("GET_HW_INFO on 7.2: edu reports PCI_ATS_NOT_SUPPORTED; INPUT_TYPE asks for VT-d's type, another is EOPNOTSUPP", arguments: withDevice7_2)
  func hardwareInfo7_2(platform: Platform) throws {
    let (backend, iommufd, device, id) = try Self.boundDevice(platform)
    let info = try iommufd.hardwareInfo(device: id)
    #expect(info.kind == .intelVTd)
    #expect(info.capabilities == .atsNotSupported)
    #expect(try iommufd.hardwareInfo(device: id, kind: .intelVTd) == info)
    #expect(errno { try iommufd.hardwareInfo(device: id, kind: .amd) } == .notSupported)
    let fd = iommufd.fileDescriptor
    #expect(rawIoctl(backend, fd, 0x3B8A, le(UInt32(40), UInt32(1), id.rawValue, UInt32(0), UInt64(0), UInt32(1), UInt32(0), UInt64(0))).0 == nil)
    #expect(rawIoctl(backend, fd, 0x3B8A, le(UInt32(40), UInt32(1), id.rawValue, UInt32(0), UInt64(0), UInt32(2), UInt32(0), UInt64(0))).0 == .notSupported)
    #expect(rawIoctl(backend, fd, 0x3B8A, le(UInt32(40), UInt32(2), id.rawValue, UInt32(0), UInt64(0), UInt32(0), UInt32(0), UInt64(0))).0 == .notSupported)
    withExtendedLifetime(device) {}  // bound until the end
  }

  @Test("PASID attach on 7.2: an IOAS or a HWPT without ALLOC_PASID is EINVAL; edu (no PASID capability) attaches to a PASID HWPT while its RID is not on a non-PASID one; detach of any PASID is 0", arguments: withDevice7_2)
  func pasid7_2(platform: Platform) throws {
    let (_, iommufd, device, id) = try Self.boundDevice(platform)
    let ioas = try iommufd.allocateIOAS()
    let plain = try HWPageTable(on: ioas, forDevice: id)
    let capable = try HWPageTable(on: ioas, forDevice: id, flags: .pasid)
    #expect(errno { try device.attach(to: ioas, pasid: 1) } == .invalidArgument)
    #expect(errno { try device.attach(to: plain, pasid: 1) } == .invalidArgument)
    #expect(errno { try device.attach(to: capable, pasid: 1 << 31) } == .noSpace)
    #expect(try device.attach(to: capable, pasid: 1) == capable.id)
    #expect(errno { try capable.destroy() } == .resourceBusy)
    #expect(errno { try device.attach(to: ioas) } == .invalidArgument)  // the RID must stay PASID-capable
    #expect(try device.attach(to: capable) == capable.id)
    #expect(errno { try device.attach(to: capable, pasid: 0) } == .resourceBusy)  // PASID 0 is the RID's, attached
    try device.detach(pasid: 1)
    try device.detach(pasid: 7)
    try device.detach()
    try device.attach(to: plain)
    #expect(errno { try device.attach(to: capable, pasid: 2) } == .invalidArgument)  // RID on a non-PASID HWPT
    try device.detach()
    try capable.destroy()
  }

  @Test("ATT-7 on vfio's PASID path (7.2): a reply that cannot be written is EFAULT, and vfio's detach_ioas then detaches the RID it attached itself, not the PASID: PASID 0 (the RID through that path) stays attached (its IOAS busy); a PASID stays attached and a RID attached by vfio's own attach goes", arguments: withDevice7_2)
  func pasidWriteBackFault(platform: Platform) throws {
    let (backend, iommufd, device, id) = try Self.boundDevice(platform)
    let ioas = try iommufd.allocateIOAS()
    let readOnly = try SelfTestOpConformance.Pages(length: 4096, protection: PROT_READ | PROT_WRITE)
    func attachReadOnly(pasid: UInt32, to pt: ObjectID) -> Errno? {
      let bytes = le(UInt32(16), UInt32(1), pt.rawValue, pasid)
      readOnly.address.copyMemory(from: bytes, byteCount: bytes.count)
      mprotect(readOnly.address, 4096, PROT_READ)
      defer { mprotect(readOnly.address, 4096, PROT_READ | PROT_WRITE) }
      do {
        _ = try backend.calls.ioctl(device.fileDescriptor, UInt(CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT), readOnly.address)
        return nil
      } catch {
        return error
      }
    }
    #expect(attachReadOnly(pasid: 0, to: ioas.id) == .badAddress)
    #expect(errno { try ioas.destroy() } == .resourceBusy)  // the automatic HWPT of the RID holds it
    try device.detach(pasid: 0)
    let capable = try HWPageTable(on: ioas, forDevice: id, flags: .pasid)
    _ = try device.attach(to: capable)
    #expect(attachReadOnly(pasid: 5, to: capable.id) == .badAddress)
    // The RID went: PASID 0 through the PASID path is free (not EBUSY); PASID 5 stayed.
    #expect(errno { try device.attach(to: capable, pasid: 0) } == nil)
    #expect(errno { try capable.destroy() } == .resourceBusy)
    try device.detach(pasid: 0)
    #expect(errno { try capable.destroy() } == .resourceBusy)  // PASID 5 holds it
    try device.detach(pasid: 5)
    try capable.destroy()
  }

  @Test("PASID 0 through vfio's PASID path (7.2) is the RID: it attaches to an IOAS too and replies the HWPT; vfio's own attach then finds it busy and its own detach does nothing; a PASID detach of 0 detaches it", arguments: withDevice7_2)
  func pasidZero7_2(platform: Platform) throws {
    let (backend, iommufd, device, _) = try Self.boundDevice(platform)
    let ioas = try iommufd.allocateIOAS()
    let hwpt = try device.attach(to: ioas, pasid: 0)
    #expect(hwpt != ioas.id)
    #expect(errno { try device.attach(to: ioas) } == .resourceBusy)
    // A target iommufd cannot attach to (the device's own id) is EINVAL before that.
    let deviceID = UInt32(device.deviceID!.rawValue)
    #expect(rawIoctl(backend, device.fileDescriptor, 0x3B77, le(UInt32(12), UInt32(0), deviceID)).0 == .invalidArgument)
    try device.detach()  // vfio's own detach: nothing to do
    #expect(errno { try device.attach(to: ioas) } == .resourceBusy)
    #expect(try device.attach(to: ioas, pasid: 0) == hwpt)  // a replace, to the same
    try device.detach(pasid: 0)
    #expect(try device.attach(to: ioas) == hwpt)  // detached: vfio's own attach works again
    #expect(errno { try device.attach(to: ioas, pasid: 0) } == .resourceBusy)
    try device.detach()
  }

  @Test("fault-capable HWPT on an IOAS (7.2): allocated with a fault queue; edu has no page requests (PRI), so attaching it is ENODEV", arguments: withDevice7_2)
  func faultCapableHWPT(platform: Platform) throws {
    let (_, iommufd, device, id) = try Self.boundDevice(platform)
    let ioas = try iommufd.allocateIOAS()
    let queue = try iommufd.allocateFaultQueue()
    let hwpt = try HWPageTable(on: ioas, forDevice: id, faultQueue: queue)
    #expect(errno { try device.attach(to: hwpt) } == .operationNotSupportedByDevice)
    #expect(errno { try queue.destroy() } == .resourceBusy)
    try hwpt.destroy()
    try queue.destroy()
  }

  @Test("BIND on 7.2: the struct is 24 bytes, nonzero bytes past it are E2BIG, and a VF token on a device that is no VF is EINVAL", arguments: withDevice7_2)
  func bind7_2(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    let fd = device.fileDescriptor
    let descriptor = iommufd.fileDescriptor.rawValue
    #expect(rawIoctl(backend, fd, 0x3B76, le(UInt32(32), UInt32(0), descriptor, UInt32(0), UInt64(0), UInt64(1))).0 == .argListTooLong)
    #expect(rawIoctl(backend, fd, 0x3B76, le(UInt32(24), UInt32(2), descriptor, UInt32(0), UInt64(0))).0 == .invalidArgument)
    let token = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
    defer { token.deallocate() }
    token.initializeMemory(as: UInt8.self, repeating: 0xAB)
    let pointer = UInt64(UInt(bitPattern: token.baseAddress))
    #expect(rawIoctl(backend, fd, 0x3B76, le(UInt32(24), UInt32(1), descriptor, UInt32(0), pointer)).0 == .invalidArgument)
    let (status, bytes) = rawIoctl(backend, fd, 0x3B76, le(UInt32(32), UInt32(0), descriptor, UInt32(0), UInt64(0), UInt64(0)))
    #expect(status == nil)
    #expect(Array(bytes[12..<16]) == le(UInt32(1)))
  }
}
