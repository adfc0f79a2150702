import CIommufd
import Foundation
import Iommufd
import IommufdSimulator
import IommufdEdu
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
import Synchronization
#endif

/// Bad arguments to public calls and raw requests to the simulator: each is refused with a
/// typed error (or answered as the kernel answers), and none traps the process. Every row
/// trapped, or allocated what the caller asked for, before the library checked it.
@Suite("BadInput traps")
struct BadInputTrapTests {
  /// What a row expects.
  enum Expectation: Sendable {
    /// The library refuses the call: an ``IommufdError`` with this errno and a detail.
    case rejected(Errno)
    /// The (simulated) kernel answers this errno: an ``IommufdError`` or a seam ``Errno``.
    case answered(Errno)
    /// The call completes and the row's check returns true.
    case holds
  }

  /// One bad input: a name, what is expected, and the call (returning its check for `.holds`).
  struct Row: Sendable, CustomTestStringConvertible {
    let name: String
    let expected: Expectation
    let body: @Sendable () throws -> Bool

    init(_ name: String, _ expected: Expectation, _ body: @escaping @Sendable () throws -> Bool) {
      self.name = name
      self.expected = expected
      self.body = body
    }

    var testDescription: String { name }
  }

  @Test("a bad input is refused, never a trap", arguments: rows)
  func row(_ row: Row) {
    switch row.expected {
    case .rejected(let expected):
      do {
        _ = try row.body()
        Issue.record("\(row.name): no error")
      } catch let error as IommufdError {
        #expect(error.errno == expected, "\(error)")
        #expect(error.detail != nil, "\(error)")
      } catch {
        Issue.record("\(row.name): not an IommufdError: \(error)")
      }
    case .answered(let expected):
      #expect(errno { try row.body() } == expected, "\(row.name)")
    case .holds:
      do {
        #expect(try row.body(), "\(row.name)")
      } catch {
        Issue.record("\(row.name): \(error)")
      }
    }
  }

  static let rows: [Row] = regionRows + dirtyRows + bufferAndQueueRows + invalidationRows + eduRows + parsingRows + simulatorRows + sizeRows

  // MARK: Setups

  /// A simulated machine with an edu device (or `devices`), bound to an iommufd and
  /// attached to an IOAS.
  struct Machine {
    let kernel: SimulatedKernel
    let backend: Backend
    let iommufd: IOMMUFD
    let ioas: IOAS
    let device: VFIODevice
    let deviceID: ObjectID

    init(
      devices: [SimulatedPCIDevice] = [SimulatedEduDevice()], configure: (inout SimulatedKernel.Configuration) -> Void = { _ in }
    ) throws {
      var configuration = SimulatedKernel.Configuration()
      configure(&configuration)
      kernel = SimulatedKernel(configuration: configuration, devices: devices)
      backend = .simulated(kernel)
      iommufd = try IOMMUFD.open(backend: backend)
      ioas = try iommufd.allocateIOAS()
      device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
      deviceID = try device.bind(to: iommufd)
      try device.attach(to: ioas)
    }

    /// Issues a raw request on the iommufd; throws the errno the simulator answers.
    func raw(_ request: Int32, _ bytes: [UInt8]) throws {
      if let errno = rawIoctl(backend, iommufd.fileDescriptor, UInt(request), bytes).0 { throw errno }
    }
  }

  /// The edu driver on a machine with its device attached.
  static func edu() throws -> (Machine, EduDriver) {
    let machine = try Machine()
    return (machine, try EduDriver(device: machine.device))
  }

  /// The simulated 6.12 test kernel's nested setup (an IOAS, a mock device, a NEST_PARENT HWPT).
  static func nested() throws -> NestedConformance.Setup { try NestedConformance.Setup(Platform.mock[0]) }

  /// The simulated 7.2 test kernel's nested setup, for vIOMMUs.
  static func nested7_2() throws -> NestedConformance.Setup { try NestedConformance.Setup(Platform.mock7_2[0]) }

  // MARK: Regions

  static let mappableBAR = VFIORegionInfo(index: 0, flags: [.readable, .writable, .mappable], size: 1 << 20, offset: 0)

  static let regionRows: [Row] = [
    Row("map: offset UInt64.max + length 2 of the device's BAR0 overflows", .rejected(.overflow)) {
      let machine = try Machine()
      _ = try machine.device.map(region: machine.device.regionInfo(0), offset: .max, length: 2)
      return true
    },
    Row("map: offset UInt64.max + length 2 of a mappable region overflows", .rejected(.overflow)) {
      _ = try Machine().device.map(region: mappableBAR, offset: .max, length: 2)
      return true
    },
    Row("map: a region at descriptor offset 2^63 overflows loff_t", .rejected(.overflow)) {
      let region = VFIORegionInfo(index: 0, flags: [.readable, .mappable], size: 1 << 20, offset: 1 << 63)
      _ = try Machine().device.map(region: region, offset: 0, length: 4096)
      return true
    },
    Row("map: a sparse area whose end passes 2^64 is compared without overflow", .answered(.invalidArgument)) {
      let area = VFIOSparseMMapArea(offset: 0x1000, size: .max)
      let region = VFIORegionInfo(index: 0, flags: [.readable, .mappable], size: .max, offset: 0, capabilities: [.sparseMMap([area])])
      _ = try Machine().device.map(region: region, offset: 0x2000, length: 0x1000)
      return true
    },
    Row("read: a region at descriptor offset 2^63 is past loff_t", .rejected(.invalidArgument)) {
      let region = VFIORegionInfo(index: 0, flags: [.readable], size: 4096, offset: 1 << 63)
      _ = try Machine().device.read(UInt32.self, region: region, at: 0)
      return true
    },
    Row("write: a region at descriptor offset 2^64 - 2 runs past loff_t", .rejected(.invalidArgument)) {
      let region = VFIORegionInfo(index: 0, flags: [.writable], size: 4096, offset: .max - 1)
      try Machine().device.write(UInt32(1), region: region, at: 0)
      return true
    },
    Row("capability chain: next pointing into its own header is EBADMSG", .rejected(.badMessage)) {
      let bytes = le(UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt16(9), UInt16(1), UInt32(36), UInt64(0))
      _ = try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true)
      return true
    },
    Row("capability chain: next pointing backwards into a loop is EBADMSG", .rejected(.badMessage)) {
      let bytes = le(UInt64(0), UInt64(0), UInt16(9), UInt16(1), UInt32(32), UInt64(0), UInt16(9), UInt16(1), UInt32(16), UInt64(0))
      _ = try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true)
      return true
    },
  ]

  // MARK: Dirty tracking

  static let dirtyRows: [Row] = [
    Row("dirtyBitmap: length UInt64.max at page size 4096 is not page aligned (the kernel's EINVAL)", .rejected(.invalidArgument)) {
      let machine = try Machine()
      _ = try HWPageTable(on: machine.ioas, forDevice: machine.deviceID).dirtyBitmap(iova: 0, length: .max, pageSize: 4096)
      return true
    },
    Row("dirtyBitmap: a range past 2^64 is the kernel's EOVERFLOW", .rejected(.overflow)) {
      let machine = try Machine()
      _ = try HWPageTable(on: machine.ioas, forDevice: machine.deviceID).dirtyBitmap(iova: 1 << 63, length: 1 << 63 + 4096, pageSize: 1)
      return true
    },
    Row("dirtyBitmap: 2^50 pages of 1 byte (a 128 TiB bitmap) are ENOMEM before the kernel", .rejected(.noMemory)) {
      let machine = try Machine()
      _ = try HWPageTable(on: machine.ioas, forDevice: machine.deviceID).dirtyBitmap(iova: 0, length: 1 << 50, pageSize: 1)
      return true
    },
    Row("dirtyBitmap: page size 0 is EINVAL", .rejected(.invalidArgument)) {
      let machine = try Machine()
      _ = try HWPageTable(on: machine.ioas, forDevice: machine.deviceID).dirtyBitmap(iova: 0, length: 4096, pageSize: 0)
      return true
    },
    Row("DirtyBitmap built with page size 0: isDirty is false", .holds) {
      !DirtyBitmap(base: 0, pageSize: 0, pageCount: 4, words: [1]).isDirty(0)
    },
    Row("DirtyBitmap built with fewer words than pages: isDirty past them is false", .holds) {
      !DirtyBitmap(base: 0, pageSize: 4096, pageCount: 128, words: [0]).isDirty(100 * 4096)
    },
    Row("DirtyBitmap of 1-byte pages: isDirty at UInt64.max is false", .holds) {
      !DirtyBitmap(base: 0, pageSize: 1, pageCount: 4, words: [1]).isDirty(.max)
    },
    Row("DirtyBitmap at the top of the space: iteration stops before 2^64", .holds) {
      Array(DirtyBitmap(base: .max - 4095, pageSize: 4096, pageCount: 2, words: [0b11])) == [.max - 4095]
    },
    Row("raw GET_DIRTY_BITMAP of 2^62 one-byte pages allocates nothing of that size", .holds) {
      let machine = try Machine { $0.vtdDirtyTracking = true }
      let hwpt = try HWPageTable(on: machine.ioas, forDevice: machine.deviceID, flags: .dirtyTracking)
      try hwpt.setDirtyTracking(enabled: true)
      // A page at the base, so the walk starts (and sizes its bitmap) before it meets the gap
      // after it, where 6.12 (since 6.12.118) fails with EINVAL.
      let buffer = try DMABuffer(length: 4096, backend: machine.backend)
      var mapping = try machine.ioas.map(buffer, at: .fixed(0))
      defer { try? mapping.unmap() }
      var word: UInt64 = 0
      let errno = withUnsafeMutableBytes(of: &word) { bitmap in
        rawIoctl(
          machine.backend, machine.iommufd.fileDescriptor, UInt(CIOMMUFD_IOMMU_HWPT_GET_DIRTY_BITMAP),
          le(UInt32(48), hwpt.id.rawValue, UInt32(0), UInt32(0), UInt64(0), UInt64(1 << 62), UInt64(1),
             UInt64(UInt(bitPattern: bitmap.baseAddress)))).0
      }
      return errno == .invalidArgument && word == 0
    },
    Row("mock DIRTY at the top of the space wraps as the kernel's unsigned long does", .holds) {
      let setup = try nested()
      let hwpt = try HWPageTable(on: setup.ioas, forDevice: setup.mock.deviceID, flags: .dirtyTracking)
      try hwpt.setDirtyTracking(enabled: true)
      return try setup.iommufd.selfTest.markDirty(hwpt, iova: .max - 4095, length: 8192, pageSize: 4096, pages: [0b10]) == 0
    },
  ]

  // MARK: Buffers and queues

  static let bufferAndQueueRows: [Row] = [
    Row("DMABuffer(length: Int.max) cannot be rounded up: ENOMEM", .rejected(.noMemory)) {
      _ = try DMABuffer(length: .max, backend: .simulated(SimulatedKernel()))
      return true
    },
    Row("fault queue read(maximumFaults: -1) is EINVAL", .rejected(.invalidArgument)) {
      _ = try Machine().iommufd.allocateFaultQueue().read(maximumFaults: -1)
      return true
    },
    Row("fault queue read(maximumFaults: Int.max) is EINVAL", .rejected(.invalidArgument)) {
      _ = try Machine().iommufd.allocateFaultQueue().read(maximumFaults: .max)
      return true
    },
    Row("fault queue read above maximumReadFaults is EINVAL", .rejected(.invalidArgument)) {
      _ = try Machine().iommufd.allocateFaultQueue().read(maximumFaults: FaultQueue.maximumReadFaults + 1)
      return true
    },
    Row("vEVENTQ read(maximumBytes: Int.max) is EINVAL", .rejected(.invalidArgument)) {
      let queue = try VirtualEventQueue(on: nested7_2().viommu(), kind: .selfTest, depth: 4)
      _ = try queue.read(maximumBytes: .max)
      return true
    },
    Row("vEVENTQ read(maximumBytes: -1) is EINVAL", .rejected(.invalidArgument)) {
      let queue = try VirtualEventQueue(on: nested7_2().viommu(), kind: .selfTest, depth: 4)
      _ = try queue.read(maximumBytes: -1)
      return true
    },
    Row("HW queue ending at 2^64: the pinned range is computed without overflow", .answered(.noSuchFileOrDirectory)) {
      _ = try HardwareQueue(on: nested7_2().viommu(), kind: .selfTest, index: 0, guestAddress: .max - 4095, length: 4096)
      return true
    },
    Row("HW queue of 2^28 pages: ENOMEM as the kernel's page array allocation", .answered(.noMemory)) {
      _ = try HardwareQueue(on: nested7_2().viommu(), kind: .selfTest, index: 0, guestAddress: 0, length: 1 << 40)
      return true
    },
  ]

  // MARK: Invalidation

  static let invalidationRows: [Row] = [
    Row("nested invalidate(entryLength: -1) is EINVAL", .rejected(.invalidArgument)) {
      let setup = try nested()
      _ = try setup.nested().invalidate(dataType: IOMMUSelfTest.invalidationType, entryLength: -1, entries: [])
      return true
    },
    Row("nested invalidate(entryLength: 1 << 33) is EINVAL", .rejected(.invalidArgument)) {
      let setup = try nested()
      _ = try setup.nested().invalidate(dataType: IOMMUSelfTest.invalidationType, entryLength: 1 << 33, entries: [])
      return true
    },
    Row("vIOMMU invalidate(entryLength: -1) is EINVAL", .rejected(.invalidArgument)) {
      _ = try nested7_2().viommu().invalidate(dataType: IOMMUSelfTest.virtualInvalidationType, entryLength: -1, entries: [])
      return true
    },
    Row("vIOMMU invalidate(entryLength: 1 << 33) is EINVAL", .rejected(.invalidArgument)) {
      _ = try nested7_2().viommu().invalidate(dataType: IOMMUSelfTest.virtualInvalidationType, entryLength: 1 << 33, entries: [])
      return true
    },
  ]

  // MARK: The edu driver

  static let eduRows: [Row] = [
    Row("edu copyToDevice(bufferOffset: UInt64.max) is EINVAL", .rejected(.invalidArgument)) {
      try edu().1.copyToDevice(from: 0, count: 16, bufferOffset: .max)
      return true
    },
    Row("edu copyFromDevice(bufferOffset: UInt64.max) is EINVAL", .rejected(.invalidArgument)) {
      try edu().1.copyFromDevice(to: 0, count: 16, bufferOffset: .max)
      return true
    },
    Row("edu DMA past the buffer (200 bytes at 4000) is EINVAL before the device is programmed", .holds) {
      let (machine, driver) = try edu()
      let refused = (try? driver.copyFromDevice(to: 0, count: 200, bufferOffset: 4000)) == nil
      let programmedCount = try driver.device.read(UInt64.self, region: driver.registers, at: 0x90)
      return refused && machine.kernel.dmaFaults.isEmpty && programmedCount == 0
    },
    Row("edu DMA ending on the buffer's last byte (4095 bytes at 1) is EINVAL", .rejected(.invalidArgument)) {
      try edu().1.copyToDevice(from: 0, count: 4095, bufferOffset: 1)
      return true
    },
    Row("edu waitForDMA(attempts: -1) is EINVAL", .rejected(.invalidArgument)) {
      try edu().1.waitForDMA(attempts: -1)
      return true
    },
    Row("edu factorial(attempts: -1) is EINVAL", .rejected(.invalidArgument)) {
      _ = try edu().1.factorial(5, attempts: -1)
      return true
    },
    Row("simulated edu: a DMA count of UInt64.max is a recorded fault", .holds) {
      let (machine, driver) = try edu()
      try driver.write64(.max, 0x90)
      try driver.write64(1, 0x98)
      return machine.kernel.dmaFaults.last?.length == .max
    },
  ]

  // MARK: Parsing

  static let parsingRows: [Row] = [
    Row("PCIAddress(\"+000:00:03.0\") is nil", .holds) { PCIAddress("+000:00:03.0") == nil },
    Row("PCIAddress(\"0000:00:-0.0\") is nil", .holds) { PCIAddress("0000:00:-0.0") == nil },
    Row("PCIAddress(\"0000:+0:03.0\") is nil", .holds) { PCIAddress("0000:+0:03.0") == nil },
    Row("PCIAddress(\"-000:00:03.0\") is nil", .holds) { PCIAddress("-000:00:03.0") == nil },
    Row("PCIAddress(\"0000:00:03.-0\") is nil", .holds) { PCIAddress("0000:00:03.-0") == nil },
    Row("PCIAddress(\"0:0:3.0\") (not a sysfs form) is nil", .holds) { PCIAddress("0:0:3.0") == nil },
    Row("PCIAddress(\" 000:00:03.0\") is nil", .holds) { PCIAddress(" 000:00:03.0") == nil },
    Row("PCIAddress sysfs and short forms still parse", .holds) {
      PCIAddress("0000:00:1f.7") == PCIAddress(bus: 0, device: 0x1f, function: 7) && PCIAddress("3a:1f.7") != nil
        && PCIAddress("ffff:ff:1f.7")?.description == "ffff:ff:1f.7"
    },
    Row("discovery: signed sysfs numbers, group links and reserved ranges are not read", .holds) {
      let root = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-signs-\(UUID().uuidString)").path
      defer { try? FileManager.default.removeItem(atPath: root) }
      let fm = FileManager.default
      let real = "\(root)/devices/pci0000:00/0000:00:03.0"
      try fm.createDirectory(atPath: real, withIntermediateDirectories: true)
      try "0x+1234\n".write(toFile: "\(real)/vendor", atomically: true, encoding: .utf8)
      try "-11e8\n".write(toFile: "\(real)/device", atomically: true, encoding: .utf8)
      try "0x00ff00\n".write(toFile: "\(real)/class", atomically: true, encoding: .utf8)
      try fm.createDirectory(atPath: "\(root)/kernel/iommu_groups/+3/devices", withIntermediateDirectories: true)
      try fm.createSymbolicLink(atPath: "\(real)/iommu_group", withDestinationPath: "../../../kernel/iommu_groups/+3")
      try fm.createDirectory(atPath: "\(root)/kernel/iommu_groups/3/devices", withIntermediateDirectories: true)
      try "0x+000000000000000 0x0000000000ffffff direct\n0x00000000fee00000 0x00000000feefffff msi\n"
        .write(toFile: "\(root)/kernel/iommu_groups/3/reserved_regions", atomically: true, encoding: .utf8)
      try fm.createDirectory(atPath: "\(root)/bus/pci/devices", withIntermediateDirectories: true)
      for name in ["0000:00:03.0", "+000:00:03.0"] {
        try fm.createSymbolicLink(atPath: "\(root)/bus/pci/devices/\(name)", withDestinationPath: "../../../devices/pci0000:00/0000:00:03.0")
      }
      let discovery = VFIODiscovery(sysfsRoot: FilePath(root))
      let entry = try discovery.device(at: PCIAddress("0000:00:03.0")!)
      let regions = try discovery.group(3).reservedRegions
      let addresses = try discovery.devices().map(\.address)
      return entry.vendorID == nil && entry.deviceID == nil && entry.classCode == 0xff00 && entry.iommuGroup == nil
        && regions == [.init(range: IOVARange(start: 0xFEE0_0000, last: 0xFEEF_FFFF), type: "msi")]
        && addresses == [PCIAddress("0000:00:03.0")!]
    },
    Row("SimulatedKernel.Release of a major version whose release number overflows is nil", .holds) {
      SimulatedKernel.Release(kernelVersion: "99999999999999999.7") == nil
        && SimulatedKernel.Release(kernelVersion: "6.12.117") == .linux6_12
        && SimulatedKernel.Release(kernelVersion: "7.2.12+deb13-amd64") == .linux7_2
    },
    Row("simulator: /dev/vfio/devices/vfio+0 is no device (ENOENT)", .answered(.noSuchFileOrDirectory)) {
      _ = try VFIODevice.open("/dev/vfio/devices/vfio+0", backend: .simulated(SimulatedKernel(devices: [SimulatedEduDevice()])))
      return true
    },
  ]

  // MARK: The simulator

  /// A device model that answers every BAR read with 64 bytes and, on a BAR write, asks the
  /// bus for a DMA of a negative length.
  final class CarelessDevice: SimulatedPCIDevice, @unchecked Sendable {
    var negativeRead: [UInt8]? = [0]

    init(msiCount: Int = 1) {
      super.init(vendorID: 0x1234, deviceID: 0x0001, classCode: 0xff00, bars: [BAR(size: 4096)], msiCount: msiCount)
    }

    override func readBAR(_ bar: Int, offset: UInt64, count: Int, bus: SimulatedBus) -> [UInt8] {
      [UInt8](repeating: 0xAB, count: 64)
    }

    override func writeBAR(_ bar: Int, offset: UInt64, bytes: [UInt8], bus: SimulatedBus) {
      negativeRead = bus.dmaRead(iova: 0, count: -1)
    }
  }

  /// Sizes from the caller or from a kernel that no real one gives: refused or answered,
  /// never a deep recursion or a huge allocation.
  static let sizeRows: [Row] = [
    Row("setInterrupts with 5000 vectors of one eventfd (the edu has 1 MSI vector): EINVAL, no deep stack", .answered(.invalidArgument)) {
      let machine = try Machine()
      let eventFD = try EventFD(nonBlocking: true, backend: machine.backend)
      try machine.device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: Array(repeating: eventFD, count: 5000))
      return true
    },
    Row("setInterrupts with 20000 nil vectors: EINVAL, no deep stack", .answered(.invalidArgument)) {
      let machine = try Machine()
      try machine.device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: Array(repeating: nil, count: 20000))
      return true
    },
    Row("iovaRanges() when a backend reports UInt32.max ranges: refused, nothing allocated for them", .rejected(.messageTooLong)) {
      let calls = RecordingSystemCalls { request, argument throws(Errno) in
        if request == 0x3B81 { argument?.storeBytes(of: 1, toByteOffset: 8, as: UInt32.self) }
        if request == 0x3B84 {
          argument?.storeBytes(of: UInt32.max, toByteOffset: 8, as: UInt32.self)
          throw .messageTooLong
        }
        return 0
      }
      _ = try IOMMUFD.open(backend: Backend(calls)).allocateIOAS().iovaRanges()
      return true
    },
    Row("info() when a backend asks for an argsz of UInt32.max: refused, nothing allocated for it", .rejected(.invalidArgument)) {
      let calls = RecordingSystemCalls { request, argument throws(Errno) in
        if request == 0x3B6B { argument?.storeBytes(of: UInt32.max, toByteOffset: 0, as: UInt32.self) }
        return 0
      }
      _ = try VFIODevice(adopting: FileDescriptor(rawValue: 100), backend: Backend(calls)).info()
      return true
    },
  ]

  static let simulatorRows: [Row] = [
    Row("the simulated sysfs with hostile paths and sizes: every answer an errno or a value, never a trap", .holds) {
      let kernel = SimulatedKernel(devices: [SimulatedEduDevice()])
      let long = "/sys/" + String(repeating: "a/", count: 3000)
      let paths: [FilePath] = [
        "", "relative", "/", "/sys", "/sys/", FilePath(long), "/sys/bus/pci/devices/zzzz", "/sys/kernel/iommu_groups/-1",
        "/sys/kernel/iommu_groups/99999999999999999999", "/sys/kernel/iommu_groups/01", "/dev/vfio/devices/vfio-1",
        "/dev/vfio/devices/vfio99999999999999999999", "/dev/vfio/devices/vfio00", "/dev/iommu/x", "/sys/bus/pci/devices/0000:00:02.0/../../../..",
      ]
      for path in paths {
        _ = try? kernel.directoryEntries(path)
        for size in [Int.min, -1, 0, 1, .max] { _ = try? kernel.readFile(path, maximumBytes: size) }
        _ = try? kernel.readLink(path)
        for mode in [Int32.min, -1, 0, R_OK | W_OK, X_OK, .max] { _ = try? kernel.checkAccess(path, mode: mode) }
      }
      let discovery = VFIODiscovery(backend: .simulated(kernel))
      for group in [Int.min, -1, 1, .max] { #expect(throws: IommufdError.self) { try discovery.group(group) } }
      let addresses = [Int.min, -1, 0, 29, 30, 8190, .max].map(SimulatedKernel.pciAddress(ofDevice:))
      let type = try kernel.readFile("/sys/kernel/iommu_groups/0/type", maximumBytes: .max)
      return addresses[0] == addresses[2] && addresses[4].description == "0000:01:00.0" && type == Array("DMA\n".utf8)
    },
    Row("MSIX with hostile values is nil, never a trap", .holds) {
      let hostile: [(Int, Int, UInt64, Int?, UInt64?)] = [
        (0, 0, 0, nil, nil), (-1, 0, 0, nil, nil), (.max, 0, 0, nil, nil), (2049, 0, 0, nil, nil), (1, -1, 0, nil, nil),
        (1, 6, 0, nil, nil), (1, .min, 0, nil, nil), (1, 0, 4, nil, nil), (1, 0, .max, nil, nil), (1, 0, 0xFFFF_FFF8, nil, nil),
        (1, 0, 0, 7, nil), (1, 0, 0, nil, 3), (1, 0, 0, nil, .max), (2048, 0, UInt64.max - 7, nil, nil),
      ]
      return hostile.allSatisfy { SimulatedPCIDevice.MSIX(vectors: $0.0, tableBAR: $0.1, tableOffset: $0.2, pbaBAR: $0.3, pbaOffset: $0.4) == nil }
    },
    Row("an MSI-X table past its BAR, or in an absent BAR, leaves MSI-X out; memory(ofBAR:) of any index is nil or the BAR", .holds) {
      let misfits = [
        SimulatedPCIDevice(vendorID: 1, deviceID: 1, classCode: 0, bars: [.memory(size: 16)], msix: .init(vectors: 2, tableBAR: 0)),
        SimulatedPCIDevice(vendorID: 1, deviceID: 1, classCode: 0, bars: [.memory(size: 4096)], msix: .init(vectors: 1, tableBAR: 3)),
        SimulatedPCIDevice(vendorID: 1, deviceID: 1, classCode: 0, bars: [.memory(size: 64)], msix: .init(vectors: 1, tableBAR: 0, pbaOffset: 64)),
      ]
      let device = SimulatedPCIDevice(vendorID: 1, deviceID: 1, classCode: 0, bars: [.memory(size: 4096), .memory(size: .max), .memory(size: 0)])
      return misfits.allSatisfy { $0.msix == nil }
        && [Int.min, -1, 1, 2, 5, 6, .max].allSatisfy { device.memory(ofBAR: $0) == nil } && device.memory(ofBAR: 0)?.count == 4096
    },
    Row("a memory BAR too large to back (2^63 bytes) acts as a register BAR: not mmap-able, reads answer the model's zeros", .holds) {
      let kernel = SimulatedKernel(devices: [SimulatedPCIDevice(vendorID: 1, deviceID: 1, classCode: 0, bars: [.memory(size: 1 << 63)])])
      let iommufd = try IOMMUFD.open(backend: .simulated(kernel))
      let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: .simulated(kernel))
      try device.bind(to: iommufd)
      let bar = try device.regionInfo(0)
      let value = try device.read(UInt64.self, region: bar, at: 0x1000)
      return bar.flags == [.readable, .writable] && value == 0
    },
    Row("schedule(after:) with negative, zero and enormous delays runs or waits, never traps; dropped with the kernel", .holds) {
      final class Timers: SimulatedPCIDevice, @unchecked Sendable {
        let ran = Mutex(0)
        init() { super.init(vendorID: 1, deviceID: 1, classCode: 0, bars: [BAR(size: 4096)]) }
        override func writeBAR(_ bar: Int, offset: UInt64, bytes: [UInt8], bus: SimulatedBus) {
          for delay: Duration in [.seconds(-1), .zero, .nanoseconds(1), .seconds(Int64.max), .init(secondsComponent: .min, attosecondsComponent: -1)] {
            bus.schedule(after: delay) { [self] _ in ran.withLock { $0 += 1 } }
          }
        }
      }
      let model = Timers()
      do {
        let kernel = SimulatedKernel(devices: [model])
        let iommufd = try IOMMUFD.open(backend: .simulated(kernel))
        let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: .simulated(kernel))
        try device.bind(to: iommufd)
        try device.write(UInt32(1), region: try device.regionInfo(0), at: 0)
        for _ in 0..<200 where model.ran.withLock({ $0 }) < 4 { usleep(10_000) }
      }
      return model.ran.withLock { $0 } == 4  // the one at Int64.max seconds never runs
    },
    Row("edu with a negative DMA delay completes the DMA as soon as the thread runs", .holds) {
      let kernel = SimulatedKernel(devices: [SimulatedEduDevice(dmaDelay: .seconds(-5))])
      let iommufd = try IOMMUFD.open(backend: .simulated(kernel))
      let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: .simulated(kernel))
      try device.bind(to: iommufd)
      let edu = try EduDriver(device: device)
      try edu.write64(0x40000, 0x80)
      try edu.write64(0x40000, 0x88)
      try edu.write64(0, 0x90)
      try edu.write64(1 | 2, 0x98)
      try edu.waitForDMA()
      return true
    },
    Row("open /dev/vfio/devices/vfio00 (no such node: the kernel names it vfio0): ENOENT", .answered(.noSuchFileOrDirectory)) {
      _ = try VFIODevice.open("/dev/vfio/devices/vfio00", backend: .simulated(SimulatedKernel(devices: [SimulatedEduDevice()])))
      return true
    },
    Row("deviceRead(device: 99) is false and a recorded fault", .holds) {
      let kernel = SimulatedKernel(devices: [SimulatedEduDevice()])
      var byte: UInt8 = 0
      let read = withUnsafeMutableBytes(of: &byte) { kernel.deviceRead(device: 99, iova: 0, into: $0) }
      return !read && kernel.dmaFaults.last?.device == 99
    },
    Row("deviceWrite(device: -1) is false and a recorded fault", .holds) {
      let kernel = SimulatedKernel(devices: [SimulatedEduDevice()])
      let written = [UInt8](repeating: 1, count: 4).withUnsafeBytes { kernel.deviceWrite(device: -1, iova: 0, from: $0) }
      return !written && kernel.dmaFaults.last?.device == -1
    },
    Row("raw GET_HW_INFO with data_len 0xFFFFFFFF zeroes a page at a time (no 4 GiB buffer), EFAULT at the guard page", .answered(.badAddress)) {
      let machine = try Machine()
      var before = rusage()
      getrusage(RUSAGE_SELF.rawValue, &before)
      defer {
        var after = rusage()
        getrusage(RUSAGE_SELF.rawValue, &after)
        #expect(after.ru_maxrss - before.ru_maxrss < 1 << 20, "the peak resident size grew by \(after.ru_maxrss - before.ru_maxrss) KiB")
      }
      let page = Int(sysconf(Int32(_SC_PAGESIZE)))
      guard let memory = mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else {
        return false
      }
      defer { munmap(memory, 2 * page) }
      mprotect(memory + page, page, PROT_NONE)
      let data = UInt64(UInt(bitPattern: memory + page - 64))
      try machine.raw(
        CIOMMUFD_IOMMU_GET_HW_INFO,
        le(UInt32(40), UInt32(0), machine.deviceID.rawValue, UInt32.max, data, UInt32(0), UInt32(0), UInt64(0)))
      return true
    },
    Row("IOAS map of user memory ending 10 bytes below 2^64: its page count does not overflow", .holds) {
      // No device attached: the mapping is only recorded (nothing is pinned).
      let ioas = try IOMMUFD.open(backend: .simulated(SimulatedKernel())).allocateIOAS()
      return try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt.max - 8201)!, length: 8192) > 0
    },
    Row("a configuration with page size 0 gets the default page size", .holds) {
      var configuration = SimulatedKernel.Configuration()
      configuration.pageSize = 0
      configuration.hugePageSize = 3
      configuration.ioPageSize = 0
      let kernel = SimulatedKernel(configuration: configuration)
      let ioas = try IOMMUFD.open(backend: .simulated(kernel)).allocateIOAS()
      let buffer = try DMABuffer(length: 4096, backend: .simulated(kernel))
      _ = try ioas.map(buffer)
      return kernel.configuration.pageSize == 4096 && kernel.configuration.hugePageSize == 2 << 20 && kernel.configuration.ioPageSize == 4096
    },
    Row("a device's config space set short is padded to 256 bytes", .holds) {
      let device = SimulatedEduDevice()
      device.config = [1, 2]
      return !device.busMasterEnabled && !device.msiEnabled && device.config.count == 256
    },
    Row("writeConfig(offset: Int.max) writes nothing", .holds) {
      let device = SimulatedEduDevice()
      let before = device.config
      device.writeConfig(offset: .max, bytes: [1, 2, 3])
      return device.config == before
    },
    Row("a device made with msiCount -1 has no MSI vectors", .holds) {
      let machine = try Machine(devices: [CarelessDevice(msiCount: -1)])
      return try machine.device.irqInfo(VFIOPCIInterrupt.msi).count == 0
    },
    Row("a device model answering a BAR read with too many bytes is cut to the read", .holds) {
      let machine = try Machine(devices: [CarelessDevice()])
      return try machine.device.read(UInt32.self, region: machine.device.regionInfo(0), at: 0) == 0xABAB_ABAB
    },
    Row("a device model's DMA read of a negative length is nil and a recorded fault", .holds) {
      let device = CarelessDevice()
      let machine = try Machine(devices: [device])
      try machine.device.write(UInt32(1), region: machine.device.regionInfo(0), at: 0)
      return device.negativeRead == nil && machine.kernel.dmaFaults.last?.length == -1
    },
  ]
}
