import CIommufd
import Foundation
import Iommufd
import IommufdSimulator
import IommufdEdu
import Synchronization
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every public method and initializer crossed with the bad inputs that apply to it (zero,
/// negative, maximum, sums that overflow, misaligned, too large, destroyed, foreign, closed,
/// wrong object type), each run on every backend its row names: the simulator as 6.12 and
/// 7.2 always, and the kernel in the lab (`Platform.all` and the other lists include it
/// there). Each row asserts the exact answer: the errno, and who gave it: the library
/// (a detail, and no request reached the seam) or the kernel (no detail, and a request did).
@Suite("bad-input table", .serialized)
struct BadInputTableTests {
  // MARK: The table

  /// What a row expects of its bad call.
  enum Expectation: Sendable {
    /// The library refuses: an ``IommufdError`` with this errno and a detail (containing the
    /// text, if given), and no request reached the backend.
    case rejected(Errno, String? = nil)
    /// The kernel answers this errno: an ``IommufdError`` without detail, after a request.
    case kernel(Errno)
    /// The kernel answers this errno and the library explains it: a detail (containing the
    /// text, if given), after a request.
    case explained(Errno, String? = nil)
    /// The call completes (and, if it returns a Bool, returns true).
    case succeeds
    /// A seam call (the file reads discovery makes) throws this bare errno.
    case seam(Errno)
  }

  /// One bad input: the platforms it runs on, its expectation there, and its body, which
  /// sets up with `env` and makes the bad call through ``Env/bad(_:)``.
  struct Row: Sendable {
    let name: String
    let platforms: [Platform]
    let expected: @Sendable (Platform) -> Expectation
    let body: @Sendable (Env) throws -> Void

    init(_ name: String, _ platforms: [Platform], _ expected: Expectation, _ body: @escaping @Sendable (Env) throws -> Void) {
      self.name = name
      self.platforms = platforms
      self.expected = { _ in expected }
      self.body = body
    }

    init(
      _ name: String, _ platforms: [Platform], expect: @escaping @Sendable (Platform) -> Expectation,
      _ body: @escaping @Sendable (Env) throws -> Void
    ) {
      self.name = name
      self.platforms = platforms
      self.expected = expect
      self.body = body
    }
  }

  /// A (platform, row) pair: one test case.
  struct Case: Sendable, CustomTestStringConvertible {
    let platform: Platform
    let row: Row
    var testDescription: String { "\(platform.name): \(row.name)" }
  }

  /// The platform lists rows name.
  enum On {
    static let all = Platform.all
    static let withDevice = Platform.withDevice
    static let withDevice6_12 = Platform.withDevice6_12
    static let withDevice7_2 = Platform.withDevice7_2
    static let mock = Platform.mock
    static let mock6_12 = Platform.mock6_12
    static let mock7_2 = Platform.mock7_2
    static let linux6_12 = Platform.linux6_12
    static let linux7_2 = Platform.linux7_2
    /// Calls that never reach a backend (sysfs, values): once, on the default simulator.
    static let once = [Platform.simulated]
    /// Machines with the mtty parent: the simulator with its model, the lab's kernels.
    static let mtty = MediatedDeviceConformance.platforms
  }

  static let rows: [Row] =
    contextRows + ioasRows + mapRows + hwptRows + faultRows + eventRows + bufferRows + legacyRows + deviceRows + regionRows
    + interruptRows + eduRows + mockRows + nestedRows + dirtyRows + virtualRows + newerRows + valueRows + fileRows + accessRows
    + mediatedRows + featureRows + resetRows

  /// The cartesian product of rows and platforms, filtered by each row's platforms.
  static let cases: [Case] = rows.flatMap { row in row.platforms.map { Case(platform: $0, row: row) } }

  @Test("a bad input gets its exact answer", arguments: cases)
  func row(_ item: Case) {
    let env = Env(item.platform)
    do {
      try item.row.body(env)
    } catch {
      Issue.record("\(item.testDescription): the setup failed: \(error)")
      return
    }
    guard let outcome = env.outcome else {
      Issue.record("\(item.testDescription): the row made no bad call")
      return
    }
    let name = item.testDescription
    switch item.row.expected(item.platform) {
    case .rejected(let errno, let text):
      guard let error = outcome.error as? IommufdError else {
        Issue.record("\(name): expected the library's \(errno), got \(outcome.error.map { "\($0)" } ?? "success")")
        return
      }
      #expect(error.errno == errno, "\(name): \(error)")
      #expect(error.detail != nil, "\(name): a library refusal without a detail: \(error)")
      if let text { #expect(error.detail?.contains(text) == true, "\(name): \(error)") }
      #expect(outcome.requests == 0, "\(name): \(outcome.requests) requests reached the backend before the refusal: \(error)")
    case .kernel(let errno):
      guard let error = outcome.error as? IommufdError else {
        Issue.record("\(name): expected the kernel's \(errno), got \(outcome.error.map { "\($0)" } ?? "success")")
        return
      }
      #expect(error.errno == errno, "\(name): \(error)")
      #expect(error.detail == nil, "\(name): the kernel's answer should carry no detail: \(error)")
      #expect(outcome.requests > 0, "\(name): no request reached the backend: \(error)")
    case .explained(let errno, let text):
      guard let error = outcome.error as? IommufdError else {
        Issue.record("\(name): expected the kernel's \(errno), explained, got \(outcome.error.map { "\($0)" } ?? "success")")
        return
      }
      #expect(error.errno == errno, "\(name): \(error)")
      #expect(error.detail != nil, "\(name): no explanation: \(error)")
      if let text { #expect(error.detail?.contains(text) == true, "\(name): \(error)") }
      #expect(outcome.requests > 0, "\(name): no request reached the backend: \(error)")
    case .seam(let errno):
      #expect(outcome.error as? Errno == errno, "\(name): expected \(errno), got \(outcome.error.map { "\($0)" } ?? "success")")
    case .succeeds:
      if let error = outcome.error {
        Issue.record("\(name): expected success, got \(error)")
      } else {
        #expect(outcome.value != false, "\(name): the call's check is false")
      }
    }
  }

  @Test("rows per backend: every listed case runs")
  func rowsPerBackend() {
    var names: [String] = []
    var counts: [String: Int] = [:]
    for item in Self.cases {
      if counts[item.platform.name] == nil { names.append(item.platform.name) }
      counts[item.platform.name, default: 0] += 1
    }
    let parts = names.enumerated().map { index, name in index == 0 ? "\(counts[name]!) rows on \(name)" : "\(counts[name]!) on \(name)" }
    print("bad-input table: " + parts.joined(separator: ", ") + " (\(Self.cases.count) cases, \(Self.rows.count) rows)")
    #expect(Self.cases.count >= 250)
    // Every row runs somewhere.
    #expect(Self.rows.allSatisfy { !$0.platforms.isEmpty })
  }

  // MARK: The environment

  /// A backend's system calls, counted: a call the library refuses itself makes none.
  /// Optionally serves `mmap` of a descriptor with anonymous memory (the simulator offers
  /// no BAR mmap), for the ``MappedRegion`` rows.
  final class CountingCalls: SystemCalls {
    let inner: any SystemCalls
    /// Requests: opens, ioctls, reads, writes, maps, eventfds (not closes and unmaps, which
    /// a release makes).
    let requests = Atomic<Int>(0)
    let anonymousDeviceMaps = Atomic<Bool>(false)

    init(_ inner: any SystemCalls) { self.inner = inner }

    private func count() { requests.add(1, ordering: .relaxed) }

    func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor {
      count()
      return try inner.open(path, flags: flags)
    }

    func close(_ fd: FileDescriptor) throws(Errno) { try inner.close(fd) }

    func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
      count()
      return try inner.ioctl(fd, request, argument)
    }

    func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
      count()
      if fd != nil, anonymousDeviceMaps.load(ordering: .relaxed) {
        return try inner.mmap(length: length, protection: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: nil, offset: 0)
      }
      return try inner.mmap(length: length, protection: protection, flags: flags, fd: fd, offset: offset)
    }

    func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) { try inner.munmap(address, length: length) }

    func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int {
      count()
      return try inner.pread(fd, into: buffer, offset: offset)
    }

    func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int {
      count()
      return try inner.pwrite(fd, from: buffer, offset: offset)
    }

    func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
      count()
      return try inner.read(fd, into: buffer)
    }

    func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
      count()
      return try inner.write(fd, from: buffer)
    }

    func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor {
      count()
      return try inner.eventfd(initialValue: initialValue, flags: flags)
    }

    // Discovery's file reads go to the inner backend's machine (not counted as requests).
    func directoryEntries(_ path: FilePath) throws(Errno) -> [String] { try inner.directoryEntries(path) }
    func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8] { try inner.readFile(path, maximumBytes: maximumBytes) }
    func readLink(_ path: FilePath) throws(Errno) -> String { try inner.readLink(path) }
    func checkAccess(_ path: FilePath, mode: Int32) throws(Errno) { try inner.checkAccess(path, mode: mode) }
    func writeFile(_ path: FilePath, bytes: [UInt8]) throws(Errno) { try inner.writeFile(path, bytes: bytes) }
  }

  /// An attach target no handle owns: a raw id (of any type) in a context.
  final class RawTarget: AttachTarget {
    let id: ObjectID
    let iommufd: IOMMUFD

    init(_ id: ObjectID, _ iommufd: IOMMUFD) {
      self.id = id
      self.iommufd = iommufd
    }
  }

  /// The mock setup: an IOAS, a mock device on it and a NEST_PARENT HWPT for that device.
  struct Mock {
    let iommufd: IOMMUFD
    let ioas: IOAS
    let mock: MockDevice
    let parent: HWPageTable

    var test: IOMMUSelfTest { iommufd.selfTest }
    var deviceID: ObjectID { mock.deviceID }

    func nested(_ iotlb: UInt32 = 0xBADBEEF, faultQueue: FaultQueue? = nil) throws -> NestedHWPageTable {
      try NestedHWPageTable(parent: parent, forDevice: mock.deviceID, dataType: IOMMUSelfTest.nestedDataType, data: le(iotlb), faultQueue: faultQueue)
    }

    func viommu() throws -> VirtualIOMMU { try VirtualIOMMU(kind: .selfTest, device: mock.deviceID, parent: parent) }
  }

  /// One row's run on one platform: the counted backend, set-up helpers, and the bad call's
  /// outcome.
  final class Env {
    struct Outcome {
      var error: (any Error)?
      var requests: Int
      var value: Bool?
    }

    let platform: Platform
    let calls: CountingCalls
    let backend: Backend
    private(set) var outcome: Outcome?

    init(_ platform: Platform) {
      self.platform = platform
      let base = platform.makeBackend()
      calls = CountingCalls(base.calls)
      backend = Backend(calls, logger: base.logger, reason: base.reason)
    }

    /// Makes the row's bad call, counting the requests it makes.
    func bad<T>(_ body: () throws -> T) {
      if outcome != nil { Issue.record("a row makes one bad call") }
      let before = calls.requests.load(ordering: .relaxed)
      do {
        let value = try body()
        outcome = Outcome(error: nil, requests: calls.requests.load(ordering: .relaxed) - before, value: value as? Bool)
      } catch {
        outcome = Outcome(error: error, requests: calls.requests.load(ordering: .relaxed) - before, value: nil)
      }
    }

    func context() throws -> IOMMUFD { try IOMMUFD.open(backend: backend) }

    func ioas() throws -> (IOMMUFD, IOAS) {
      let iommufd = try context()
      return (iommufd, try iommufd.allocateIOAS())
    }

    /// An IOAS whose context is closed.
    func closedIOAS() throws -> IOAS {
      let (iommufd, ioas) = try ioas()
      try iommufd.close()
      return ioas
    }

    /// An IOAS that was destroyed.
    func destroyedIOAS() throws -> (IOMMUFD, IOAS) {
      let (iommufd, ioas) = try ioas()
      try ioas.destroy()
      return (iommufd, ioas)
    }

    func buffer(_ length: Int = 4096) throws -> DMABuffer { try DMABuffer(length: length, backend: backend) }

    /// The platform's device, opened (unbound).
    func device() throws -> VFIODevice { try VFIODevice.open(platform.devicePath!, backend: backend) }

    /// The device, opened and closed.
    func closedDevice() throws -> VFIODevice {
      let device = try device()
      try device.close()
      return device
    }

    func bound() throws -> (IOMMUFD, VFIODevice, ObjectID) {
      let iommufd = try context()
      let device = try device()
      return (iommufd, device, try device.bind(to: iommufd))
    }

    func attached() throws -> (IOMMUFD, VFIODevice, ObjectID, IOAS) {
      let (iommufd, device, id) = try bound()
      let ioas = try iommufd.allocateIOAS()
      try device.attach(to: ioas)
      return (iommufd, device, id, ioas)
    }

    /// BAR0 as the kernel reports it (mappable), or as a mappable region on the simulator.
    func bar0(_ device: VFIODevice) throws -> VFIORegionInfo {
      platform.isSimulated ? VFIORegionInfo(index: 0, flags: [.readable, .writable, .mappable], size: 1 << 20, offset: 0) : try device.regionInfo(0)
    }

    /// BAR0 mapped: edu's registers on the kernel, anonymous memory on the simulator.
    func mappedBAR0() throws -> MappedRegion {
      let (_, device, _) = try bound()
      if platform.isSimulated { calls.anonymousDeviceMaps.store(true, ordering: .relaxed) }
      return try device.map(region: try bar0(device))
    }

    /// An edu driver on a bound, attached device.
    func edu() throws -> EduDriver {
      let (_, device, _, _) = try attached()
      return try EduDriver(device: device)
    }

    func eventFD(nonBlocking: Bool = false) throws -> EventFD { try EventFD(nonBlocking: nonBlocking, backend: backend) }

    /// A descriptor of `/dev/iommu` owned by nobody yet, for the adopting initialisers.
    func rawDescriptor() throws -> FileDescriptor { try calls.open(IOMMUFD.defaultPath, flags: O_RDWR | O_CLOEXEC) }

    func mock() throws -> Mock {
      let iommufd = try context()
      let ioas = try iommufd.allocateIOAS()
      let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
      return Mock(iommufd: iommufd, ioas: ioas, mock: mock, parent: try HWPageTable(on: ioas, forDevice: mock.deviceID, flags: .nestParent))
    }
  }

  /// A sysfs tree in a temporary directory, removed by `body`'s end: empty, or with one
  /// PCI device 0000:00:03.0 that has no driver and no IOMMU group.
  static func withSysfs<R>(device: Bool, _ body: (VFIODiscovery) throws -> R) throws -> R {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-table-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    try FileManager.default.createDirectory(atPath: "\(root)/bus/pci/devices", withIntermediateDirectories: true)
    if device {
      try FileManager.default.createDirectory(atPath: "\(root)/bus/pci/devices/0000:00:03.0", withIntermediateDirectories: true)
    }
    return try body(VFIODiscovery(sysfsRoot: FilePath(root), deviceRoot: FilePath("\(root)/dev")))
  }

  static let address = PCIAddress("0000:00:03.0")!
  static let missing = VFIODiscovery(sysfsRoot: "/nonexistent-iommufd-table/sys", deviceRoot: "/nonexistent-iommufd-table/dev")
  /// A user address nothing checks without a domain (IOAS-5).
  static var fakeAddress: UnsafeRawPointer { UnsafeRawPointer(bitPattern: 0x7000_0000)! }
  static let closed = "the handle was closed"
  static let destroyed = "was destroyed"
  static let foreign = "another iommufd context"
}

// MARK: - The iommufd context

extension BadInputTableTests {
  static let contextRows: [Row] = [
    Row("IOMMUFD.open of a missing path: open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try IOMMUFD.open("/dev/iommu-missing-iommufd-table", backend: env.backend) }
    },
    Row("IOMMUFD.open of an empty path: open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try IOMMUFD.open("", backend: env.backend) }
    },
    Row("IOMMUFD(adopting: -1): the kernel's EBADF on the first request", On.all, .kernel(.badFileDescriptor)) { env in
      let iommufd = IOMMUFD(adopting: FileDescriptor(rawValue: -1), backend: env.backend)
      env.bad { try iommufd.allocateIOAS() }
      try? iommufd.close()
    },
    Row("IOMMUFD(borrowing: -1): the kernel's EBADF on the first request", On.all, .kernel(.badFileDescriptor)) { env in
      let iommufd = IOMMUFD(borrowing: FileDescriptor(rawValue: -1), backend: env.backend)
      env.bad { try iommufd.allocateIOAS() }
      try? iommufd.close()
    },
    Row("borrowed context after close: allocateIOAS is the handle's EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let fd = try env.rawDescriptor()
      defer { try? env.calls.close(fd) }
      let iommufd = IOMMUFD(borrowing: fd, backend: env.backend)
      try iommufd.close()
      env.bad { try iommufd.allocateIOAS() }
    },
    Row("close twice: the second does nothing", On.all, .succeeds) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.close() }
    },
    Row("closed context: allocateIOAS is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.allocateIOAS() }
    },
    Row("closed context: destroy(1) is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.destroy(ObjectID(1)) }
    },
    Row("closed context: memoryLimitAccounting is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.memoryLimitAccounting() }
    },
    Row("closed context: setMemoryLimitAccounting is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.setMemoryLimitAccounting(.perProcess) }
    },
    Row("closed context: compatibilityIOASID is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.compatibilityIOASID() }
    },
    Row("closed context: setCompatibilityIOAS(nil) is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.setCompatibilityIOAS(nil) }
    },
    Row("closed context: setCompatibilityIOAS(its IOAS) is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.iommufd.setCompatibilityIOAS(ioas) }
    },
    Row("closed context: supports(feature) is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.supports(.hwptAlloc) }
    },
    Row("closed context: hardwareInfo is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.hardwareInfo(device: ObjectID(1)) }
    },
    Row("closed context: allocateFaultQueue is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.allocateFaultQueue() }
    },
    Row("closed context: changeProcess is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.changeProcess() }
    },
    Row("closed context: selfTest.addReserved is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.iommufd.selfTest.addReserved(IOVARange(start: 0x1000, last: 0x1FFF), in: ioas) }
    },
    Row("selfTest.setTemporaryMemoryLimit(0) is EINVAL before the kernel", On.all, .rejected(.invalidArgument, "under one batch entry")) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.selfTest.setTemporaryMemoryLimit(0) }
    },
    Row("selfTest.setTemporaryMemoryLimit(11), one byte short of a batch entry, is EINVAL", On.all, .rejected(.invalidArgument, "12 bytes")) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.selfTest.setTemporaryMemoryLimit(11) }
    },
    Row("closed context: selfTest.setTemporaryMemoryLimit is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.selfTest.setTemporaryMemoryLimit(IOMMUSelfTest.defaultTemporaryMemoryLimit) }
    },
    Row("destroy(0): DESTROY-1 ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.destroy(ObjectID(0)) }
    },
    Row("destroy(UInt32.max): ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.destroy(ObjectID(UInt32.max)) }
    },
    Row("destroy of a destroyed handle's id (no handle owns it now): the kernel's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (iommufd, ioas) = try env.destroyedIOAS()
      env.bad { try iommufd.destroy(ioas.id) }
    },
    Row("destroy of an id only another context has: ENOENT here", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let mine = try env.context()
      let (_, theirs) = try env.ioas()
      env.bad { try mine.destroy(theirs.id) }
    },
    Row("setMemoryLimitAccounting with an object in the context: OPT-3 EBUSY", On.all, .kernel(.resourceBusy)) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.setMemoryLimitAccounting(.perProcess) }
      _ = ioas
    },
    Row("compatibilityIOASID with none set: nil (VIOAS-2's ENODEV)", On.all, .succeeds) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.compatibilityIOASID() == nil }
    },
    Row("compatibilityIOASID after its IOAS was destroyed: nil (DESTROY-5)", On.all, .succeeds) { env in
      let (iommufd, ioas) = try env.ioas()
      try iommufd.setCompatibilityIOAS(ioas)
      try ioas.destroy()
      env.bad { try iommufd.compatibilityIOASID() == nil }
    },
    Row("setCompatibilityIOAS(destroyed IOAS) is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, ioas) = try env.destroyedIOAS()
      env.bad { try iommufd.setCompatibilityIOAS(ioas) }
    },
    Row("setCompatibilityIOAS(IOAS of another context) is EINVAL", On.all, .rejected(.invalidArgument, foreign)) { env in
      let mine = try env.context()
      let (_, theirs) = try env.ioas()
      env.bad { try mine.setCompatibilityIOAS(theirs) }
    },
    Row("hardwareInfo(device: 0): INFO-2 ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.hardwareInfo(device: ObjectID(0)) }
    },
    Row("hardwareInfo(device: UInt32.max): ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.hardwareInfo(device: ObjectID(UInt32.max)) }
    },
    Row("hardwareInfo(device: an IOAS id), the wrong type: ENOENT (OBJ-3)", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.hardwareInfo(device: ioas.id) }
    },
    Row("hardwareInfo with kind on 6.12: INFO-1's EOPNOTSUPP for the flag, before the device lookup", On.linux6_12, .kernel(.notSupported)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.hardwareInfo(device: ObjectID(0), kind: .intelVTd) }
    },
  ]
}

// MARK: - IOAS handles: closed, destroyed, foreign

extension BadInputTableTests {
  static let ioasRows: [Row] = [
    Row("closed context: IOAS.unsafeMap is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 4096) }
    },
    Row("closed context: IOAS.unmap is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.unmap(iova: 0x1000, length: 0x1000) }
    },
    Row("closed context: IOAS.unmapAll is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.unmapAll() }
    },
    Row("closed context: IOAS.copy is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let (iommufd, ioas) = try env.ioas()
      let other = try iommufd.allocateIOAS()
      try iommufd.close()
      env.bad { try other.copy(from: ioas, sourceIOVA: 0x1000, length: 0x1000) }
    },
    Row("closed context: IOAS.iovaRanges is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.iovaRanges() }
    },
    Row("closed context: IOAS.allowIOVAs is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.allowIOVAs([]) }
    },
    Row("closed context: IOAS.hugePagesEnabled is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.hugePagesEnabled() }
    },
    Row("closed context: IOAS.setHugePages is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.setHugePages(enabled: false) }
    },
    Row("closed context: IOAS.mapFile is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.mapFile(FileDescriptor(rawValue: 0), offset: 0, length: 4096) }
    },
    Row("closed context: IOAS.destroy is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.destroy() }
    },
    Row("closed context: IOAS.map(buffer) is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      let buffer = try env.buffer()
      env.bad { _ = try ioas.map(buffer) }
    },
    Row("closed context: DMAMapping.unmap is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let (iommufd, ioas) = try env.ioas()
      var mapping = try ioas.map(try env.buffer())
      try iommufd.close()
      env.bad { try mapping.unmap() }
    },
    Row("destroyed IOAS: destroy again is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.destroy() }
    },
    Row("destroyed IOAS: unsafeMap is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 4096) }
    },
    Row("destroyed IOAS: unmap is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.unmap(iova: 0x1000, length: 0x1000) }
    },
    Row("destroyed IOAS: unmapAll is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.unmapAll() }
    },
    Row("destroyed IOAS: copy from it is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, ioas) = try env.destroyedIOAS()
      let live = try iommufd.allocateIOAS()
      env.bad { try live.copy(from: ioas, sourceIOVA: 0x1000, length: 0x1000) }
    },
    Row("destroyed IOAS: copy into it is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, ioas) = try env.destroyedIOAS()
      let live = try iommufd.allocateIOAS()
      env.bad { try ioas.copy(from: live, sourceIOVA: 0x1000, length: 0x1000) }
    },
    Row("destroyed IOAS: iovaRanges is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.iovaRanges() }
    },
    Row("destroyed IOAS: allowIOVAs is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.allowIOVAs([IOVARange(start: 0x1000, last: 0x1FFF)]) }
    },
    Row("destroyed IOAS: hugePagesEnabled is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.hugePagesEnabled() }
    },
    Row("destroyed IOAS: setHugePages is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.setHugePages(enabled: true) }
    },
    Row("destroyed IOAS: mapFile is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try ioas.mapFile(FileDescriptor(rawValue: 0), offset: 0, length: 4096) }
    },
    Row("destroyed IOAS: map(buffer) is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      let buffer = try env.buffer()
      env.bad { _ = try ioas.map(buffer) }
    },
    Row("destroyed IOAS: its mapping's unmap is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.ioas()
      var mapping = try ioas.map(try env.buffer())
      try ioas.destroy()
      env.bad { try mapping.unmap() }
    },
    Row("destroyed IOAS: HWPageTable on it is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (_, ioas) = try env.destroyedIOAS()
      env.bad { try HWPageTable(on: ioas, forDevice: ObjectID(1)) }
    },
    Row("destroyed IOAS: selfTest.addReserved in it is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, ioas) = try env.destroyedIOAS()
      env.bad { try iommufd.selfTest.addReserved(IOVARange(start: 0x1000, last: 0x1FFF), in: ioas) }
    },
    Row("foreign IOAS: copy from another context's IOAS is EINVAL", On.all, .rejected(.invalidArgument, foreign)) { env in
      let (_, mine) = try env.ioas()
      let (_, theirs) = try env.ioas()
      env.bad { try mine.copy(from: theirs, sourceIOVA: 0x1000, length: 0x1000) }
    },
    Row("foreign IOAS: selfTest.addReserved in another context's IOAS is EINVAL", On.all, .rejected(.invalidArgument, foreign)) { env in
      let mine = try env.context()
      let (_, theirs) = try env.ioas()
      env.bad { try mine.selfTest.addReserved(IOVARange(start: 0x1000, last: 0x1FFF), in: theirs) }
    },
    Row("foreign fault queue: HWPageTable naming another context's queue is EINVAL", On.all, .rejected(.invalidArgument, foreign)) { env in
      let (_, ioas) = try env.ioas()
      let theirs = try env.context().allocateFaultQueue()
      env.bad { try HWPageTable(on: ioas, forDevice: ObjectID(1), faultQueue: theirs) }
    },
    Row("destroyed fault queue: HWPageTable naming it is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, ioas) = try env.ioas()
      let queue = try iommufd.allocateFaultQueue()
      try queue.destroy()
      env.bad { try HWPageTable(on: ioas, forDevice: ObjectID(1), faultQueue: queue) }
    },
    Row("closed context: HWPageTable is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try HWPageTable(on: ioas, forDevice: ObjectID(1)) }
    },
    Row("HWPageTable for device 0: HWPT-3 ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try HWPageTable(on: ioas, forDevice: ObjectID(0)) }
    },
    Row("HWPageTable for device UInt32.max: ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try HWPageTable(on: ioas, forDevice: ObjectID(UInt32.max)) }
    },
    Row("HWPageTable for an IOAS id as the device (wrong type): ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try HWPageTable(on: ioas, forDevice: ioas.id) }
    },
  ]
}

// MARK: - IOAS: mapping, unmapping, copying, ranges, options

extension BadInputTableTests {
  static let mapRows: [Row] = [
    Row("unsafeMap length 0: MAP-5 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 0) }
    },
    Row("unsafeMap length UInt64.max: MAP-2 EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: .max) }
    },
    Row("unsafeMap at .fixed(UInt64.max): MAP-2 EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(.max)) }
    },
    Row("unsafeMap at 2^64 - 4 KiB of 8 KiB: the IOVA range overflows (MAP-8)", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 0x2000, at: .fixed(.max - 0xFFF)) }
    },
    Row("unsafeMap of 8 KiB at user address 2^64 - 4 KiB: the user range overflows (MAP-5)", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt(0xFFFF_FFFF_FFFF_F000))!, length: 0x2000) }
    },
    Row("unsafeMap length 2^64 - 2 KiB: 6.12 EINVAL for the limit, 7.2 EOVERFLOW for the address first", On.all,
      expect: { $0.release == .linux7_2 ? .kernel(.overflow) : .kernel(.invalidArgument) }) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: .max - 0x800) }
    },
    Row("unsafeMap of 2^63 bytes at an automatic IOVA: IOAS-6 EOVERFLOW", On.linux6_12, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 1 << 63) }
    },
    Row("unsafeMap with access []: MAP-3 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 0x1000, access: []) }
    },
    Row("unsafeMap with an unknown access bit (8): EOPNOTSUPP", On.all, .rejected(.notSupported, "access 0x8")) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 0x1000, access: DMAAccess(rawValue: 8)) }
    },
    Row("unsafeMap with access bit 0 (the FIXED flag) at .anywhere: EOPNOTSUPP, not a fixed map at 0", On.all, .rejected(.notSupported, "access 0x7")) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 0x1000, access: DMAAccess(rawValue: 7)) }
    },
    Row("unsafeMap over an existing mapping: MAP-8 EEXIST", On.all, .kernel(.fileExists)) { env in
      let (_, ioas) = try env.ioas()
      _ = try ioas.unsafeMap(address: fakeAddress, length: 0x4000, at: .fixed(0x10000))
      env.bad { try ioas.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x11000)) }
    },
    Row("map(buffer) at .fixed(UInt64.max): EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      let buffer = try env.buffer()
      env.bad { _ = try ioas.map(buffer, at: .fixed(.max)) }
    },
    Row("unmap length 0: UNMAP-4 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unmap(iova: 0x1000, length: 0) }
    },
    Row("unmap at UInt64.max: UNMAP-3 EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unmap(iova: .max, length: 1) }
    },
    Row("unmap length UInt64.max (not at 0): UNMAP-3 EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unmap(iova: 0x1000, length: .max) }
    },
    Row("unmap 8 KiB at 2^64 - 4 KiB: the range overflows (UNMAP-4)", On.all, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unmap(iova: .max - 0xFFF, length: 0x2000) }
    },
    Row("unmap of a range with no mapping: UNMAP-5 ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unmap(iova: 0x1000, length: 0x1000) }
    },
    Row("unmap of half a mapping: UNMAP-5 ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (_, ioas) = try env.ioas()
      _ = try ioas.unsafeMap(address: fakeAddress, length: 0x2000, at: .fixed(0x10000))
      env.bad { try ioas.unmap(iova: 0x10000, length: 0x1000) }
    },
    Row("unmapAll of an empty IOAS: 0 bytes (UNMAP-2)", On.all, .succeeds) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.unmapAll() == 0 }
    },
    Row("DMAMapping.unmap twice: the second does nothing", On.all, .succeeds) { env in
      let (_, ioas) = try env.ioas()
      var mapping = try ioas.map(try env.buffer())
      try mapping.unmap()
      env.bad { try mapping.unmap() }
    },
    Row("DMAMapping.unmap after unmapAll: owns nothing, does nothing", On.all, .succeeds) { env in
      let (_, ioas) = try env.ioas()
      var mapping = try ioas.map(try env.buffer())
      try ioas.unmapAll()
      env.bad { try mapping.unmap() }
    },
    Row("copy length 0: COPY-5 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (iommufd, source) = try env.ioas()
      _ = try source.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x1000))
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: 0x1000, length: 0) }
    },
    Row("copy of an unmapped source range: COPY-5 ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      let (iommufd, source) = try env.ioas()
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: 0x9000, length: 0x1000) }
    },
    Row("copy to .fixed(UInt64.max): COPY-2 EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (iommufd, source) = try env.ioas()
      _ = try source.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x1000))
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: 0x1000, length: 0x1000, to: .fixed(.max)) }
    },
    Row("copy from source IOVA UInt64.max: COPY-2 EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (iommufd, source) = try env.ioas()
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: .max, length: 0x1000) }
    },
    Row("copy length UInt64.max: COPY-2 EOVERFLOW", On.all, .kernel(.overflow)) { env in
      let (iommufd, source) = try env.ioas()
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: 0x1000, length: .max) }
    },
    Row("copy of 8 KiB at source 2^64 - 4 KiB: the source range overflows (COPY-5)", On.all, .kernel(.overflow)) { env in
      let (iommufd, source) = try env.ioas()
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: .max - 0xFFF, length: 0x2000) }
    },
    Row("copy with access []: COPY-3 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (iommufd, source) = try env.ioas()
      _ = try source.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x1000))
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: 0x1000, length: 0x1000, access: []) }
    },
    Row("copy with an unknown access bit (8): EOPNOTSUPP", On.all, .rejected(.notSupported, "access 0xe")) { env in
      let (iommufd, source) = try env.ioas()
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: 0x1000, length: 0x1000, access: DMAAccess(rawValue: 0xE)) }
    },
    Row("copy WRITEABLE from pages mapped read-only: COPY-8 EPERM", On.all, .kernel(.notPermitted)) { env in
      let (iommufd, source) = try env.ioas()
      _ = try source.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x1000), access: .readable)
      let destination = try iommufd.allocateIOAS()
      env.bad { try destination.copy(from: source, sourceIOVA: 0x1000, length: 0x1000, access: .readWrite) }
    },
    Row("allowIOVAs of a one-byte range (start == last): ALLOW-2 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.allowIOVAs([IOVARange(start: 0x2000, last: 0x2000)]) }
    },
    Row("allowIOVAs of an inverted range: ALLOW-2 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.allowIOVAs([IOVARange(start: 0x3000, last: 0x1000)]) }
    },
    Row("allowIOVAs of IOVARange(start: .max, length: 2), which wraps: ALLOW-2 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.allowIOVAs([IOVARange(start: .max, length: 2)!]) }
    },
    Row("allowIOVAs of overlapping ranges: ALLOW-2 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.allowIOVAs([IOVARange(start: 0x1000, last: 0x4FFF), IOVARange(start: 0x4000, last: 0x8FFF)]) }
    },
    Row("allowIOVAs([]) clears: ALLOW-4", On.all, .succeeds) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.allowIOVAs([]) }
    },
    Row("setHugePages(false) with an area not page-aligned: OPT-4 EADDRINUSE", On.all, .kernel(.addressInUse)) { env in
      let (_, ioas) = try env.ioas()
      _ = try ioas.unsafeMap(address: fakeAddress, length: 0x800, at: .fixed(0x1000))
      env.bad { try ioas.setHugePages(enabled: false) }
    },
  ]
}

// MARK: - Fault queues, eventfds, DMA buffers

extension BadInputTableTests {
  static let faultRows: [Row] = [
    Row("fault queue read(maximumFaults: -1) is EINVAL", On.all, .rejected(.invalidArgument, "maximumFaults -1")) { env in
      let queue = try env.context().allocateFaultQueue()
      env.bad { try queue.read(maximumFaults: -1) }
    },
    Row("fault queue read(maximumFaults: Int.max) is EINVAL", On.all, .rejected(.invalidArgument, "maximumFaults")) { env in
      let queue = try env.context().allocateFaultQueue()
      env.bad { try queue.read(maximumFaults: .max) }
    },
    Row("fault queue read above maximumReadFaults is EINVAL", On.all, .rejected(.invalidArgument, "maximumFaults")) { env in
      let queue = try env.context().allocateFaultQueue()
      env.bad { try queue.read(maximumFaults: FaultQueue.maximumReadFaults + 1) }
    },
    Row("fault queue read(maximumFaults: 0) with nothing pending: [] (FAULT-6)", On.all, .succeeds) { env in
      let queue = try env.context().allocateFaultQueue()
      env.bad { try queue.read(maximumFaults: 0) == [] }
    },
    Row("fault queue respond to cookie 1 with nothing pending: FAULT-7 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let queue = try env.context().allocateFaultQueue()
      env.bad { try queue.respond(to: 1, with: .success) }
    },
    Row("fault queue respond to cookie UInt32.max: FAULT-7 EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let queue = try env.context().allocateFaultQueue()
      env.bad { try queue.respond(to: .max, with: .invalid) }
    },
    Row("destroyed fault queue: destroy again is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let queue = try env.context().allocateFaultQueue()
      try queue.destroy()
      env.bad { try queue.destroy() }
    },
    Row("destroyed fault queue: read is EBADF (its descriptor is closed)", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let queue = try env.context().allocateFaultQueue()
      try queue.destroy()
      env.bad { try queue.read() }
    },
    Row("destroyed fault queue: respond is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let queue = try env.context().allocateFaultQueue()
      try queue.destroy()
      env.bad { try queue.respond(to: 1, with: .success) }
    },
    Row("closed context: fault queue destroy is EBADF (its own descriptor closes)", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      let queue = try iommufd.allocateFaultQueue()
      try iommufd.close()
      env.bad { try queue.destroy() }
    },
  ]

  static let eventRows: [Row] = [
    Row("closed eventfd: wait is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let event = try env.eventFD()
      try event.close()
      env.bad { try event.wait() }
    },
    Row("closed eventfd: signal is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let event = try env.eventFD()
      try event.close()
      env.bad { try event.signal() }
    },
    Row("eventfd signal(UInt64.max): eventfd's EINVAL", On.all, .kernel(.invalidArgument)) { env in
      let event = try env.eventFD()
      env.bad { try event.signal(.max) }
    },
    Row("non-blocking eventfd wait with nothing signalled: 0", On.all, .succeeds) { env in
      let event = try env.eventFD(nonBlocking: true)
      env.bad { try event.wait() == 0 }
    },
    Row("EventFD(borrowing: -1): wait is read's EBADF", On.all, .kernel(.badFileDescriptor)) { env in
      let event = EventFD(borrowing: FileDescriptor(rawValue: -1), backend: env.backend)
      env.bad { try event.wait() }
    },
    Row("borrowed eventfd after close: signal is the handle's EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let owner = try env.eventFD()
      let event = EventFD(borrowing: owner.fileDescriptor, backend: env.backend)
      try event.close()
      env.bad { try event.signal() }
    },
    Row("eventfd close twice: the second does nothing", On.all, .succeeds) { env in
      let event = try env.eventFD()
      try event.close()
      env.bad { try event.close() }
    },
  ]

  static let bufferRows: [Row] = [
    Row("DMABuffer(length: 0) is EINVAL", On.all, .rejected(.invalidArgument, "length above 0")) { env in
      env.bad { try DMABuffer(length: 0, backend: env.backend) }
    },
    Row("DMABuffer(length: -1) is EINVAL", On.all, .rejected(.invalidArgument, "length above 0")) { env in
      env.bad { try DMABuffer(length: -1, backend: env.backend) }
    },
    Row("DMABuffer(length: Int.min) is EINVAL", On.all, .rejected(.invalidArgument, "length above 0")) { env in
      env.bad { try DMABuffer(length: .min, backend: env.backend) }
    },
    Row("DMABuffer(length: Int.max) cannot be rounded up: ENOMEM", On.all, .rejected(.noMemory, "overflows")) { env in
      env.bad { try DMABuffer(length: .max, backend: env.backend) }
    },
    Row("DMABuffer(length: 2^62): mmap's ENOMEM, with the size", On.all, .explained(.noMemory, "anonymous memory")) { env in
      env.bad { try DMABuffer(length: 1 << 62, backend: env.backend) }
    },
    Row("DMABuffer(unsafeBorrowing:) of an empty buffer is EINVAL", On.all, .rejected(.invalidArgument, "length above 0")) { env in
      env.bad { try DMABuffer(unsafeBorrowing: UnsafeMutableRawBufferPointer(start: nil, count: 0), backend: env.backend) }
    },
    Row("DMABuffer(unsafeBorrowing:) of 0 bytes at an address is EINVAL", On.all, .rejected(.invalidArgument, "length above 0")) { env in
      let buffer = try env.buffer()
      env.bad { try DMABuffer(unsafeBorrowing: UnsafeMutableRawBufferPointer(start: buffer.bytes.baseAddress, count: 0), backend: env.backend) }
    },
    Row("GuestMemory(size: 0) is EINVAL", On.all, .rejected(.invalidArgument, "positive multiple")) { env in
      env.bad { try GuestMemory(size: 0, backend: env.backend) }
    },
    Row("GuestMemory(size: Int.min) is EINVAL", On.all, .rejected(.invalidArgument, "positive multiple")) { env in
      env.bad { try GuestMemory(size: .min, backend: env.backend) }
    },
    Row("GuestMemory(size: Int.max), not a multiple of the page: EINVAL", On.all, .rejected(.invalidArgument, "positive multiple")) { env in
      env.bad { try GuestMemory(size: .max, backend: env.backend) }
    },
    Row("GuestMemory(size: 4097), misaligned: EINVAL", On.all, .rejected(.invalidArgument, "positive multiple")) { env in
      env.bad { try GuestMemory(size: 4097, backend: env.backend) }
    },
    Row("GuestMemory(size: 1 MiB, pageSize: .huge2M), below one huge page: EINVAL", On.all, .rejected(.invalidArgument, "2 MiB pages")) { env in
      env.bad { try GuestMemory(size: 1 << 20, pageSize: .huge2M, backend: env.backend) }
    },
    Row("GuestMemory.map at a negative offset is EINVAL", On.all, .rejected(.invalidArgument, "within")) { env in
      let (_, ioas) = try env.ioas()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000, offset: -4096) }
    },
    Row("GuestMemory.map past the end (offset Int.max, length Int.max) is EINVAL", On.all, .rejected(.invalidArgument, "within")) { env in
      let (_, ioas) = try env.ioas()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000, offset: .max, length: .max) }
    },
    Row("GuestMemory.map of length 0 is EINVAL", On.all, .rejected(.invalidArgument, "within")) { env in
      let (_, ioas) = try env.ioas()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000, length: 0) }
    },
    Row("GuestMemory.map of a misaligned offset is EINVAL", On.all, .rejected(.invalidArgument, "multiples")) { env in
      let (_, ioas) = try env.ioas()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000, offset: 1, length: 4096) }
    },
    Row("GuestMemory.map after close is EBADF", On.all, .rejected(.badFileDescriptor, "closed")) { env in
      let (_, ioas) = try env.ioas()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      try memory.close()
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000) }
    },
    Row("GuestMemory.map into a closed IOAS is EBADF", On.all, .rejected(.badFileDescriptor)) { env in
      let ioas = try env.closedIOAS()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000) }
    },
    Row("GuestMemory.map into a destroyed IOAS is ENOENT", On.all, .rejected(.noSuchFileOrDirectory, "destroyed")) { env in
      let (_, ioas) = try env.destroyedIOAS()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000) }
    },
    Row("GuestMemory.map over a live bank is EEXIST", On.all, .kernel(.fileExists)) { env in
      let (_, ioas) = try env.ioas()
      let memory = try GuestMemory(size: 8192, backend: env.backend)
      let bank = try memory.map(into: ioas, at: 0x10_0000)
      env.bad { _ = try memory.map(into: ioas, at: 0x10_0000) }
      _ = bank
    },
  ]
}

// MARK: - Legacy container and group, sessions

extension BadInputTableTests {
  /// A container adopting a `/dev/iommu` descriptor (iommufd's compatibility container), closed.
  static func closedContainer(_ env: Env) throws -> VFIOContainer {
    let container = VFIOContainer(adopting: try env.rawDescriptor(), backend: env.backend)
    try container.close()
    return container
  }

  /// A group handle adopting a `/dev/iommu` descriptor (no group request is made), closed.
  static func closedGroup(_ env: Env) throws -> VFIOGroup {
    let group = VFIOGroup(adopting: try env.rawDescriptor(), number: 0, backend: env.backend)
    try group.close()
    return group
  }

  static let legacyRows: [Row] = [
    Row("VFIOContainer.open of a missing path: open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try VFIOContainer.open("/dev/vfio/missing-iommufd-table", backend: env.backend) }
    },
    Row("container unsafeMap at .anywhere: type1 maps at fixed IOVAs only (EINVAL)", On.all, .rejected(.invalidArgument, "fixed IOVAs only")) { env in
      let container = VFIOContainer(adopting: try env.rawDescriptor(), backend: env.backend)
      env.bad { try container.unsafeMap(address: fakeAddress, length: 0x1000, at: .anywhere) }
    },
    Row("container unsafeMap with an unknown access bit: EOPNOTSUPP", On.all, .rejected(.notSupported, "access 0x8")) { env in
      let container = VFIOContainer(adopting: try env.rawDescriptor(), backend: env.backend)
      env.bad { try container.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x1000), access: DMAAccess(rawValue: 8)) }
    },
    Row("closed container: supports(extension:) is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let container = try closedContainer(env)
      env.bad { try container.supports(extension: VFIOContainer.IOMMUType.type1v2.rawValue) }
    },
    Row("closed container: setIOMMU is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let container = try closedContainer(env)
      env.bad { try container.setIOMMU(.type1v2) }
    },
    Row("closed container: unsafeMap is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let container = try closedContainer(env)
      env.bad { try container.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x1000)) }
    },
    Row("closed container: map(buffer) is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let container = try closedContainer(env)
      let buffer = try env.buffer()
      env.bad { _ = try container.map(buffer, at: .fixed(0x1000)) }
    },
    Row("closed container: unmap is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let container = try closedContainer(env)
      env.bad { try container.unmap(iova: 0x1000, length: 0x1000) }
    },
    Row("closed container: unmapAll is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let container = try closedContainer(env)
      env.bad { try container.unmapAll() }
    },
    Row("closed container: iovaRanges is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let container = try closedContainer(env)
      env.bad { try container.iovaRanges() }
    },
    Row("container close twice: the second does nothing", On.all, .succeeds) { env in
      let container = try closedContainer(env)
      env.bad { try container.close() }
    },
    Row("VFIOGroup.open(-1) under a missing device root: open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try VFIOGroup.open(-1, deviceRoot: "/nonexistent-iommufd-table", backend: env.backend) }
    },
    Row("VFIOGroup.open(Int.max): open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try VFIOGroup.open(.max, backend: env.backend) }
    },
    Row("closed group: status is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let group = try closedGroup(env)
      env.bad { try group.status() }
    },
    Row("closed group: setContainer is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let group = try closedGroup(env)
      let container = VFIOContainer(adopting: try env.rawDescriptor(), backend: env.backend)
      env.bad { try group.setContainer(container) }
    },
    Row("closed group: openDevice is EBADF", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let group = try closedGroup(env)
      env.bad { try group.openDevice(address) }
    },
    Row("group setContainer(closed container): EBADF, its number is not passed on", On.all, .rejected(.badFileDescriptor, closed)) { env in
      let group = VFIOGroup(adopting: try env.rawDescriptor(), number: 0, backend: env.backend)
      let container = try closedContainer(env)
      env.bad { try group.setContainer(container) }
    },
    Row("VFIOSession.openCdev of a missing cdev: open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try VFIOSession.openCdev("/dev/vfio/devices/vfio-missing-iommufd-table", backend: env.backend) }
    },
    Row("VFIOSession.openCdev with a missing iommufd path: open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try VFIOSession.openCdev("/dev/vfio/devices/vfio0", iommufdPath: "/dev/iommu-missing-iommufd-table", backend: env.backend) }
    },
    Row("VFIOSession.open of a device sysfs does not have: ENODEV, no route", On.all, .rejected(.operationNotSupportedByDevice, "no route")) { env in
      env.bad { try VFIOSession.open(address, discovery: missing, backend: env.backend) }
    },
    Row("VFIOSession.open preferring iommufd, of a device sysfs does not have: ENODEV", On.all, .rejected(.operationNotSupportedByDevice, "no route")) { env in
      env.bad { try VFIOSession.open(address, discovery: missing, prefer: .iommufd, backend: env.backend) }
    },
    Row("VFIODevice.open(pciAddress:) of a device sysfs does not have: ENOENT", On.all, .rejected(.noSuchFileOrDirectory, "no PCI device")) { env in
      env.bad { try VFIODevice.open(pciAddress: address, discovery: missing, backend: env.backend) }
    },
    Row("VFIODevice.open of a missing cdev: open's ENOENT", On.all, .kernel(.noSuchFileOrDirectory)) { env in
      env.bad { try VFIODevice.open("/dev/vfio/devices/vfio-missing-iommufd-table", backend: env.backend) }
    },
    Row("VFIODevice(adopting: -1): the kernel's EBADF on the first request", On.all, .kernel(.badFileDescriptor)) { env in
      let device = VFIODevice(adopting: FileDescriptor(rawValue: -1), backend: env.backend)
      env.bad { try device.info() }
      try? device.close()
    },
    Row("VFIODevice(borrowing: -1): the kernel's EBADF on the first request", On.all, .kernel(.badFileDescriptor)) { env in
      let device = VFIODevice(borrowing: FileDescriptor(rawValue: -1), backend: env.backend)
      env.bad { try device.info() }
      try? device.close()
    },
  ]
}

// MARK: - VFIO device: lifecycle, binding, attaching

extension BadInputTableTests {
  static let deviceRows: [Row] = [
    Row("device close twice: the second does nothing", On.withDevice, .succeeds) { env in
      let device = try env.closedDevice()
      env.bad { try device.close() }
    },
    Row("closed device: bind is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      let device = try env.closedDevice()
      env.bad { try device.bind(to: iommufd) }
    },
    Row("bind to a closed context is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      let device = try env.device()
      env.bad { try device.bind(to: iommufd) }
    },
    Row("closed device: attach is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _, ioas) = try env.attached()
      try device.close()
      env.bad { try device.attach(to: ioas) }
    },
    Row("closed device: detach is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.detach() }
    },
    Row("closed device: info is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.info() }
    },
    Row("closed device: reset is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.reset() }
    },
    Row("closed device: attach(to:pasid:) is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _, ioas) = try env.attached()
      try device.close()
      env.bad { try device.attach(to: ioas, pasid: 1) }
    },
    Row("closed device: detach(pasid:) is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.detach(pasid: 1) }
    },
    Row("before bind: info is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.info() }
    },
    Row("before bind: attach is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      let device = try env.device()
      env.bad { try device.attach(to: ioas) }
    },
    Row("before bind: detach is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.detach() }
    },
    Row("before bind: regionInfo is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.regionInfo(0) }
    },
    Row("before bind: irqInfo is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.irqInfo(VFIOPCIInterrupt.intx) }
    },
    Row("before bind: reset is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.reset() }
    },
    Row("before bind: EduDriver (its regionInfo) is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try EduDriver(device: device) }
    },
    Row("bind twice on one descriptor: BIND-5 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (iommufd, device, _) = try env.bound()
      env.bad { try device.bind(to: iommufd) }
    },
    Row("bind a bound descriptor to a second context: BIND-5 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      let other = try env.context()
      env.bad { try device.bind(to: other) }
    },
    Row("bind a second descriptor of a bound device: BIND-7 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (iommufd, device, _) = try env.bound()
      let second = try env.device()
      env.bad { try second.bind(to: iommufd) }
      _ = device
    },
    Row("VFIOSession.openCdev of a device bound elsewhere: EINVAL, explained as in use", On.withDevice, .explained(.invalidArgument, "is in use")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try VFIOSession.openCdev(env.platform.devicePath!, backend: env.backend) }
      _ = device
    },
    Row("VFIOSession with its context closed: iovaRanges is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let session = try VFIOSession.openCdev(env.platform.devicePath!, backend: env.backend)
      try session.iommufd!.close()
      env.bad { try session.iovaRanges() }
    },
    Row("attach to a destroyed IOAS: ENOENT", On.withDevice, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, device, _) = try env.bound()
      let ioas = try iommufd.allocateIOAS()
      try ioas.destroy()
      env.bad { try device.attach(to: ioas) }
    },
    Row("attach to another context's IOAS: EINVAL", On.withDevice, .rejected(.invalidArgument, foreign)) { env in
      let (_, device, _) = try env.bound()
      let (_, theirs) = try env.ioas()
      env.bad { try device.attach(to: theirs) }
    },
    Row("attach to a raw id of another context: EINVAL", On.withDevice, .rejected(.invalidArgument, foreign)) { env in
      let (_, device, _) = try env.bound()
      let other = try env.context()
      env.bad { try device.attach(to: RawTarget(ObjectID(1), other)) }
    },
    Row("attach to a destroyed HWPT: ENOENT", On.withDevice, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, device, id) = try env.bound()
      let hwpt = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id)
      try hwpt.destroy()
      env.bad { try device.attach(to: hwpt) }
    },
    Row("attach to the device's own id (wrong type): ATT-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (iommufd, device, id) = try env.bound()
      env.bad { try device.attach(to: RawTarget(id, iommufd)) }
    },
    Row("attach to a fault queue's id (wrong type): ATT-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (iommufd, device, _) = try env.bound()
      let queue = try iommufd.allocateFaultQueue()
      env.bad { try device.attach(to: RawTarget(queue.id, iommufd)) }
    },
    Row("attach to id 0: ATT-2 ENOENT", On.withDevice, .kernel(.noSuchFileOrDirectory)) { env in
      let (iommufd, device, _) = try env.bound()
      env.bad { try device.attach(to: RawTarget(ObjectID(0), iommufd)) }
    },
    Row("attach to id UInt32.max: ATT-2 ENOENT", On.withDevice, .kernel(.noSuchFileOrDirectory)) { env in
      let (iommufd, device, _) = try env.bound()
      env.bad { try device.attach(to: RawTarget(ObjectID(UInt32.max), iommufd)) }
    },
    Row("attach to an IOAS mapped in the MSI window: IOAS-3 EADDRINUSE", On.withDevice, .kernel(.addressInUse)) { env in
      let (iommufd, device, _) = try env.bound()
      let ioas = try iommufd.allocateIOAS()
      _ = try ioas.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0xFEE0_0000))
      env.bad { try device.attach(to: ioas) }
    },
    Row("detach of a device not attached: DET-3 succeeds", On.withDevice, .succeeds) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.detach() }
    },
    Row("destroy(device id): DESTROY-3 EBUSY", On.withDevice, .kernel(.resourceBusy)) { env in
      let (iommufd, device, id) = try env.bound()
      env.bad { try iommufd.destroy(id) }
      _ = device
    },
    Row("destroy of an IOAS a device is attached to: OBJ-5 EBUSY", On.withDevice, .kernel(.resourceBusy)) { env in
      let (_, device, _, ioas) = try env.attached()
      env.bad { try ioas.destroy() }
      _ = device
    },
    Row("destroy(the automatic HWPT) while attached: OBJ-5 EBUSY", On.withDevice, .kernel(.resourceBusy)) { env in
      let (iommufd, device, _, _) = try env.attached()
      env.bad { try iommufd.destroy(device.attachedPageTableID!) }
    },
    Row("allowIOVAs covering the attached device's MSI window: ALLOW-3 EADDRINUSE", On.withDevice, .kernel(.addressInUse)) { env in
      let (_, device, _, ioas) = try env.attached()
      env.bad { try ioas.allowIOVAs([IOVARange(start: 0xFE00_0000, last: 0xFEFF_FFFF)]) }
      _ = device
    },
    Row("unsafeMap of 2 KiB with a VT-d domain: MAP-6 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _, ioas) = try env.attached()
      let buffer = try env.buffer()
      env.bad { try ioas.unsafeMap(address: UnsafeRawPointer(buffer.bytes.baseAddress!), length: 0x800) }
      _ = device
    },
    Row("unsafeMap at a misaligned fixed IOVA with a VT-d domain: MAP-8 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _, ioas) = try env.attached()
      let buffer = try env.buffer()
      env.bad { try ioas.unsafeMap(address: UnsafeRawPointer(buffer.bytes.baseAddress!), length: 0x1000, at: .fixed(0x1800)) }
      _ = device
    },
    Row("unsafeMap of unmapped memory with a domain: MAP-10 EFAULT", On.withDevice, .kernel(.badAddress)) { env in
      let (_, device, _, ioas) = try env.attached()
      env.bad { try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt(unmappedAddress()))!, length: 0x1000, at: .fixed(0x10_0000)) }
      _ = device
    },
    Row("HWPageTable for an unknown device id: HWPT-3 ENOENT", On.withDevice, .kernel(.noSuchFileOrDirectory)) { env in
      let (iommufd, device, id) = try env.bound()
      let ioas = try iommufd.allocateIOAS()
      env.bad { try HWPageTable(on: ioas, forDevice: ObjectID(id.rawValue + 100)) }
      _ = device
    },
    Row("HWPT destroy while the device is attached to it: EBUSY", On.withDevice, .kernel(.resourceBusy)) { env in
      let (iommufd, device, id) = try env.bound()
      let hwpt = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id)
      try device.attach(to: hwpt)
      env.bad { try hwpt.destroy() }
    },
    Row("destroyed HWPT: destroy again is ENOENT", On.withDevice, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let (iommufd, device, id) = try env.bound()
      let hwpt = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id)
      try hwpt.destroy()
      env.bad { try hwpt.destroy() }
      _ = device
    },
    Row("PASID attach to a destroyed IOAS: ENOENT", On.withDevice, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, device, _) = try env.bound()
      let ioas = try iommufd.allocateIOAS()
      try ioas.destroy()
      env.bad { try device.attach(to: ioas, pasid: 1) }
    },
    Row("PASID attach to another context's IOAS: EINVAL, not relabelled as the kernel's", On.withDevice, .rejected(.invalidArgument, foreign)) { env in
      let (_, device, _) = try env.bound()
      let (_, theirs) = try env.ioas()
      env.bad { try device.attach(to: theirs, pasid: 1) }
    },
  ]
}

// MARK: - VFIO device: regions and mapped regions

extension BadInputTableTests {
  /// PCI config space as vfio-pci reports it for edu (DEV-2).
  static let config = VFIORegionInfo(index: 7, flags: [.readable, .writable], size: 256, offset: 7 << 40)

  static let regionRows: [Row] = [
    Row("closed device: PCIConfigSpace is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try PCIConfigSpace(device) }
    },
    Row("before bind: PCIConfigSpace is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try PCIConfigSpace(device) }
    },
    Row("PCIConfigSpace read<UInt32> at 254 runs past the space: EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let config = try PCIConfigSpace(device)
      env.bad { try config.read(UInt32.self, at: 254) }
    },
    Row("PCIConfigSpace write<UInt64> at UInt64.max: the sum overflows, EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let config = try PCIConfigSpace(device)
      env.bad { try config.write(UInt64.max, at: .max) }
    },
    Row("PCIConfigSpace capabilities after the device closed: EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      let config = try PCIConfigSpace(device)
      try device.close()
      env.bad { try config.capabilities() }
    },
    Row("closed device: regionInfo is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.regionInfo(VFIOPCIRegion.config) }
    },
    Row("closed device: read<UInt32> is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.read(UInt32.self, region: config, at: 0) }
    },
    Row("closed device: write<UInt16> is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.write(UInt16(0), region: config, at: 4) }
    },
    Row("closed device: read(region:at:into:) is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      var bytes = [UInt8](repeating: 0, count: 16)
      env.bad { try bytes.withUnsafeMutableBytes { try device.read(region: config, at: 0, into: $0) } }
    },
    Row("closed device: write(region:at:from:) is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      let bytes = [UInt8](repeating: 0, count: 2)
      env.bad { try bytes.withUnsafeBytes { try device.write(region: config, at: 4, from: $0) } }
    },
    Row("closed device: map(region:) is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      let bar0 = VFIORegionInfo(index: 0, flags: [.readable, .writable, .mappable], size: 1 << 20, offset: 0)
      env.bad { try device.map(region: bar0) }
    },
    Row("regionInfo(VFIOPCIRegion.bar(-1)) is EINVAL", On.withDevice, .rejected(.invalidArgument, "region index")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.regionInfo(VFIOPCIRegion.bar(-1)) }
    },
    Row("regionInfo(Int.max) is EINVAL", On.withDevice, .rejected(.invalidArgument, "region index")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.regionInfo(.max) }
    },
    Row("regionInfo(UInt32.max): DEV-2 EINVAL past the regions", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.regionInfo(Int(UInt32.max)) }
    },
    Row("regionInfo(9): DEV-2 EINVAL (edu has 9 regions)", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.regionInfo(9) }
    },
    Row("regionInfo(VGA) of edu: DEV-2 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.regionInfo(VFIOPCIRegion.vga) }
    },
    Row("read<UInt32> at config byte 254 runs past the region: EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let config = try device.regionInfo(VFIOPCIRegion.config)
      env.bad { try device.read(UInt32.self, region: config, at: 254) }
    },
    Row("read<UInt64> at offset UInt64.max: the sum overflows, EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let config = try device.regionInfo(VFIOPCIRegion.config)
      env.bad { try device.read(UInt64.self, region: config, at: .max) }
    },
    Row("write<UInt32> at config byte 256: EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let config = try device.regionInfo(VFIOPCIRegion.config)
      env.bad { try device.write(UInt32(0), region: config, at: 256) }
    },
    Row("write<UInt16> at offset UInt64.max - 1: the sum overflows, EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let config = try device.regionInfo(VFIOPCIRegion.config)
      env.bad { try device.write(UInt16(0), region: config, at: .max - 1) }
    },
    Row("read of 512 bytes from the 256-byte config space: EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let config = try device.regionInfo(VFIOPCIRegion.config)
      var bytes = [UInt8](repeating: 0, count: 512)
      env.bad { try bytes.withUnsafeMutableBytes { try device.read(region: config, at: 0, into: $0) } }
    },
    Row("read<UInt32> of the absent BAR1 (size 0): EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let (_, device, _) = try env.bound()
      let bar1 = try device.regionInfo(1)
      env.bad { try device.read(UInt32.self, region: bar1, at: 0) }
    },
    Row("read<UInt32> of a region at descriptor offset 2^63: past loff_t, EINVAL", On.withDevice, .rejected(.invalidArgument, "largest file offset")) { env in
      let (_, device, _) = try env.bound()
      let region = VFIORegionInfo(index: 0, flags: [.readable], size: 4096, offset: 1 << 63)
      env.bad { try device.read(UInt32.self, region: region, at: 0) }
    },
    Row("map(region:) of config space, which is not mappable: EINVAL", On.withDevice, .rejected(.invalidArgument, "mappable area")) { env in
      let (_, device, _) = try env.bound()
      let config = try device.regionInfo(VFIOPCIRegion.config)
      env.bad { try device.map(region: config) }
    },
    Row("map(region:) at offset UInt64.max + length 2: EOVERFLOW", On.withDevice, .rejected(.overflow, "overflows")) { env in
      let (_, device, _) = try env.bound()
      let bar0 = try env.bar0(device)
      env.bad { try device.map(region: bar0, offset: .max, length: 2) }
    },
    Row("map(region:) of length 0: EINVAL", On.withDevice, .rejected(.invalidArgument, "mappable area")) { env in
      let (_, device, _) = try env.bound()
      let bar0 = try env.bar0(device)
      env.bad { try device.map(region: bar0, offset: 0, length: 0) }
    },
    Row("map(region:) past BAR0's end: EINVAL", On.withDevice, .rejected(.invalidArgument, "mappable area")) { env in
      let (_, device, _) = try env.bound()
      let bar0 = try env.bar0(device)
      env.bad { try device.map(region: bar0, offset: 0x10_0000 - 0x1000, length: 0x2000) }
    },
    Row("map(region:) of a region at descriptor offset 2^63: EOVERFLOW", On.withDevice, .rejected(.overflow, "largest file offset")) { env in
      let (_, device, _) = try env.bound()
      let region = VFIORegionInfo(index: 0, flags: [.readable, .mappable], size: 1 << 20, offset: 1 << 63)
      env.bad { try device.map(region: region, offset: 0, length: 4096) }
    },
    Row("map(region:) at an offset not page-aligned: mmap's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      let bar0 = try env.bar0(device)
      env.bad { try device.map(region: bar0, offset: 0x800, length: 0x1000) }
    },
    Row("MappedRegion load32 at -4: EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.load32(at: -4) }
    },
    Row("MappedRegion load32 at 2 (unaligned): EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.load32(at: 2) }
    },
    Row("MappedRegion load32 at its length: EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.load32(at: region.length) }
    },
    Row("MappedRegion load32 at Int.max: EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.load32(at: .max) }
    },
    Row("MappedRegion load64 at length - 4 (half outside): EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.load64(at: region.length - 4) }
    },
    Row("MappedRegion store32 at Int.min: EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.store32(0, at: .min) }
    },
    Row("MappedRegion store64 at 4 (unaligned): EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.store64(0, at: 4) }
    },
    Row("MappedRegion load32 after unmap: EFAULT", On.withDevice, .rejected(.badAddress, "was unmapped")) { env in
      let region = try env.mappedBAR0()
      try region.unmap()
      env.bad { try region.load32(at: 0) }
    },
    Row("MappedRegion store32 after unmap: EFAULT", On.withDevice, .rejected(.badAddress, "was unmapped")) { env in
      let region = try env.mappedBAR0()
      try region.unmap()
      env.bad { try region.store32(0, at: 4) }
    },
    Row("MappedRegion load64 after unmap: EFAULT", On.withDevice, .rejected(.badAddress, "was unmapped")) { env in
      let region = try env.mappedBAR0()
      try region.unmap()
      env.bad { try region.load64(at: 0) }
    },
    Row("MappedRegion store64 after unmap: EFAULT", On.withDevice, .rejected(.badAddress, "was unmapped")) { env in
      let region = try env.mappedBAR0()
      try region.unmap()
      env.bad { try region.store64(0, at: 0x80) }
    },
    Row("MappedRegion load8 at -1: EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.load8(at: -1) }
    },
    Row("MappedRegion store8 at its length: EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.store8(1, at: region.length) }
    },
    Row("MappedRegion load16 at 1 (unaligned): EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.load16(at: 1) }
    },
    Row("MappedRegion store16 at Int.max: EINVAL", On.withDevice, .rejected(.invalidArgument, "unaligned or outside")) { env in
      let region = try env.mappedBAR0()
      env.bad { try region.store16(1, at: Int.max) }
    },
    Row("MappedRegion load8 after unmap: EFAULT", On.withDevice, .rejected(.badAddress, "was unmapped")) { env in
      let region = try env.mappedBAR0()
      try region.unmap()
      env.bad { try region.load8(at: 0) }
    },
    Row("MappedRegion store16 after unmap: EFAULT", On.withDevice, .rejected(.badAddress, "was unmapped")) { env in
      let region = try env.mappedBAR0()
      try region.unmap()
      env.bad { try region.store16(0, at: 0) }
    },
    Row("MappedRegion unmap twice: the second does nothing", On.withDevice, .succeeds) { env in
      let region = try env.mappedBAR0()
      try region.unmap()
      env.bad { try region.unmap() }
    },
  ]
}

// MARK: - VFIO device: interrupts and reset

extension BadInputTableTests {
  static let msi = VFIOPCIInterrupt.msi

  static let interruptRows: [Row] = [
    Row("closed device: irqInfo is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.irqInfo(msi) }
    },
    Row("closed device: setInterrupts is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(msi, eventFDs: [event]) }
    },
    Row("setInterrupts(borrowing: [-1]): EBADF, not the kernel's de-assign of -1", On.withDevice, .rejected(.badFileDescriptor, "pass nil")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.setInterrupts(msi, borrowing: [FileDescriptor(rawValue: -1)]) }
    },
    Row("setInterrupts with a borrowing EventFD of -1: EBADF, not the kernel's de-assign", On.withDevice, .rejected(.badFileDescriptor, "pass nil")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.setInterrupts(msi, eventFDs: [EventFD(borrowing: FileDescriptor(rawValue: -1), backend: env.backend)]) }
    },
    Row("closed device: disableInterrupts is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.disableInterrupts(msi) }
    },
    Row("closed device: perform is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.perform(.trigger, interrupt: msi) }
    },
    Row("before bind: perform is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.perform(.trigger, interrupt: msi) }
    },
    Row("irqInfo(-1) is EINVAL", On.withDevice, .rejected(.invalidArgument, "IRQ index")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.irqInfo(-1) }
    },
    Row("irqInfo(Int.max) is EINVAL", On.withDevice, .rejected(.invalidArgument, "IRQ index")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.irqInfo(.max) }
    },
    Row("irqInfo(5): DEV-3 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.irqInfo(5) }
    },
    Row("irqInfo(UInt32.max): DEV-3 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.irqInfo(Int(UInt32.max)) }
    },
    Row("irqInfo(ERR) of edu (not PCIe): DEV-3 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.irqInfo(VFIOPCIInterrupt.error) }
    },
    Row("setInterrupts(-1) is EINVAL", On.withDevice, .rejected(.invalidArgument, "IRQ index")) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(-1, eventFDs: [event]) }
    },
    Row("setInterrupts start -1 is EINVAL", On.withDevice, .rejected(.invalidArgument, "0 or more")) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(msi, start: -1, eventFDs: [event]) }
    },
    Row("setInterrupts start Int.max is EINVAL", On.withDevice, .rejected(.invalidArgument, "0 or more")) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(msi, start: .max, eventFDs: [event]) }
    },
    Row("setInterrupts with a closed eventfd: EBADF, its number is not passed on", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      try event.close()
      env.bad { try device.setInterrupts(msi, eventFDs: [event]) }
    },
    Row("setInterrupts on MSI-X (edu has no vectors): DEV-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(VFIOPCIInterrupt.msix, eventFDs: [event]) }
    },
    Row("setInterrupts from vector 1 of edu's one MSI: DEV-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(msi, start: 1, eventFDs: [event]) }
    },
    Row("setInterrupts on index 5: DEV-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(5, eventFDs: [event]) }
    },
    Row("disableInterrupts(-1) is EINVAL", On.withDevice, .rejected(.invalidArgument, "IRQ index")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.disableInterrupts(-1) }
    },
    Row("disableInterrupts(MSI-X) with no vectors: DEV-4 EINVAL, even to disable", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.disableInterrupts(VFIOPCIInterrupt.msix) }
    },
    Row("perform count -1 is EINVAL", On.withDevice, .rejected(.invalidArgument, "0 or more")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, count: -1) }
    },
    Row("perform start -1 is EINVAL", On.withDevice, .rejected(.invalidArgument, "0 or more")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, start: -1) }
    },
    Row("perform count Int.max is EINVAL", On.withDevice, .rejected(.invalidArgument, "0 or more")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, count: .max) }
    },
    Row("perform on index Int.min is EINVAL", On.withDevice, .rejected(.invalidArgument, "IRQ index")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.unmask, interrupt: .min) }
    },
    Row("perform MASK on MSI: DEV-4 ENOTTY (INTx only)", On.withDevice, .kernel(.inappropriateIOCTLForDevice)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.mask, interrupt: msi) }
    },
    Row("perform from vector 1 of edu's one MSI: DEV-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, start: 1) }
    },
    Row("perform count UInt32.max: DEV-4 EINVAL (count >= U32_MAX - start)", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, count: Int(UInt32.max)) }
    },
    Row("perform start UInt32.max + count 1, a sum past u32: DEV-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, start: Int(UInt32.max), count: 1) }
    },
    Row("perform on index UInt32.max: DEV-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: Int(UInt32.max)) }
    },
    Row("closed device: setUnmaskEventFD is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      let event = try env.eventFD()
      env.bad { try device.setUnmaskEventFD(event) }
    },
    Row("before bind: setUnmaskEventFD is CDEV-2's EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      let event = try env.eventFD()
      env.bad { try device.setUnmaskEventFD(event) }
    },
    Row("setUnmaskEventFD before INTx is enabled: DEV-4.6 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setUnmaskEventFD(event) }
    },
    Row("setUnmaskEventFD(nil) before INTx is enabled: DEV-4.6 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.setUnmaskEventFD(nil) }
    },
    Row("setUnmaskEventFD with a closed eventfd: EBADF, its number is not passed on", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      let trigger = try env.eventFD()
      try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
      let event = try env.eventFD()
      try event.close()
      env.bad { try device.setUnmaskEventFD(event) }
    },
    Row("setUnmaskEventFD(borrowing: -1): EBADF, not the kernel's removal by -1", On.withDevice, .rejected(.badFileDescriptor, "pass nil")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.setUnmaskEventFD(borrowing: FileDescriptor(rawValue: -1)) }
    },
    Row("setUnmaskEventFD(borrowing:) of a descriptor that is no eventfd: DEV-4.6 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (iommufd, device, _) = try env.bound()
      let trigger = try env.eventFD()
      try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
      env.bad { try device.setUnmaskEventFD(borrowing: iommufd.fileDescriptor) }
    },
    Row("a second unmask eventfd: DEV-4.6 EBUSY", On.withDevice, .kernel(.resourceBusy)) { env in
      let (_, device, _) = try env.bound()
      let trigger = try env.eventFD()
      try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
      try device.setUnmaskEventFD(try env.eventFD())
      let second = try env.eventFD()
      env.bad { try device.setUnmaskEventFD(second) }
    },
    Row("setInterrupts(action: .mask) with an eventfd on INTx: DEV-4.6 ENOTTY", On.withDevice, .kernel(.inappropriateIOCTLForDevice)) { env in
      let (_, device, _) = try env.bound()
      let trigger = try env.eventFD()
      try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
      env.bad { try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger], action: .mask) }
    },
    Row("setInterrupts(action: .unmask) on MSI: DEV-4 ENOTTY", On.withDevice, .kernel(.inappropriateIOCTLForDevice)) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      env.bad { try device.setInterrupts(msi, eventFDs: [event], action: .unmask) }
    },
    Row("closed device: perform(selecting:) is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.perform(.trigger, interrupt: msi, selecting: [true]) }
    },
    Row("perform(selecting:) start -1 is EINVAL", On.withDevice, .rejected(.invalidArgument, "0 or more")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, start: -1, selecting: [true]) }
    },
    Row("perform(selecting:) start Int.max is EINVAL", On.withDevice, .rejected(.invalidArgument, "0 or more")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, start: .max, selecting: [true]) }
    },
    Row("perform(selecting:) on index -1 is EINVAL", On.withDevice, .rejected(.invalidArgument, "IRQ index")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: -1, selecting: [true]) }
    },
    Row("perform(selecting: []) on INTx, which takes exactly vector 0: DEV-4.4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      let trigger = try env.eventFD()
      try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
      env.bad { try device.perform(.trigger, interrupt: VFIOPCIInterrupt.intx, selecting: []) }
    },
    Row("perform(selecting:) of 2 vectors of edu's one MSI: DEV-4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, selecting: [true, false]) }
    },
    Row("perform(selecting:) on MSI not enabled: DEV-4.4 EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.perform(.trigger, interrupt: msi, selecting: [true]) }
    },
    Row("PCIConfigSpace.bar(-1) is EINVAL", On.withDevice, .rejected(.invalidArgument, "0–5")) { env in
      let (_, device, _) = try env.bound()
      let config = try PCIConfigSpace(device)
      env.bad { try config.bar(-1) }
    },
    Row("PCIConfigSpace.bar(Int.max) is EINVAL", On.withDevice, .rejected(.invalidArgument, "0–5")) { env in
      let (_, device, _) = try env.bound()
      let config = try PCIConfigSpace(device)
      env.bad { try config.bar(.max) }
    },
    Row("closed device: PCIConfigSpace.bars() is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      let config = try PCIConfigSpace(device)
      try device.close()
      env.bad { try config.bars() }
    },
    Row("reset of edu (no reset method): DEV-5 EINVAL, explained with hotReset()", On.withDevice, .explained(.invalidArgument, "hotReset()")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.reset() }
    },
  ]

  /// Hot reset and low power (the edu on the root bus, which no slot or bus reset reaches).
  static let resetRows: [Row] = [
    Row("hotResetInfo before bind: EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.hotResetInfo() }
    },
    Row("hotResetInfo on the root bus: ENODEV, explained", On.withDevice, .explained(.operationNotSupportedByDevice, "root bus")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.hotResetInfo() }
    },
    Row("hotResetInfo of a closed device: EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.hotResetInfo() }
    },
    Row("hotReset before bind: EINVAL, the iommufd form needs a bound device", On.withDevice, .rejected(.invalidArgument, "bound to an iommufd")) { env in
      let device = try env.device()
      env.bad { try device.hotReset() }
    },
    Row("hotReset on the root bus: ENODEV, explained", On.withDevice, .explained(.operationNotSupportedByDevice, "root bus")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.hotReset() }
    },
    Row("hotReset of a closed device: EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      try device.close()
      env.bad { try device.hotReset() }
    },
    Row("hotReset(groups: []): EINVAL, the group form needs groups", On.withDevice, .rejected(.invalidArgument, "groups")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.hotReset(groups: []) }
    },
    Row("hotReset(groups:) of a bound cdev: EINVAL, explained (a cdev uses the iommufd form)", On.withDevice, .explained(.invalidArgument, "without groups")) { env in
      let (_, device, _) = try env.bound()
      let group = VFIOGroup(adopting: try env.rawDescriptor(), number: 0, backend: env.backend)
      defer { try? group.close() }
      env.bad { try device.hotReset(groups: [group]) }
    },
    Row("hotReset(groups:) with a closed group: EBADF, its number is not passed on", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      let group = try closedGroup(env)
      env.bad { try device.hotReset(groups: [group]) }
    },
    Row("enterLowPower twice: EINVAL, explained", On.withDevice, .explained(.invalidArgument, "already in low-power")) { env in
      let (_, device, _) = try env.bound()
      try device.enterLowPower()
      defer { try? device.exitLowPower() }
      env.bad { try device.enterLowPower() }
    },
    Row("enterLowPower(wakeup:) with a closed eventfd: EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      let event = try env.eventFD()
      try event.close()
      env.bad { try device.enterLowPower(wakeup: event) }
    },
    Row("exitLowPower before bind: EINVAL", On.withDevice, .kernel(.invalidArgument)) { env in
      let device = try env.device()
      env.bad { try device.exitLowPower() }
    },
    Row("exitLowPower on mtty (no vfio-pci features): ENOTTY, explained", On.mtty, .explained(.inappropriateIOCTLForDevice, "LOW_POWER_EXIT")) { env in
      try withBoundMtty(env) { device in env.bad { try device.exitLowPower() } }
    },
    Row("hotResetInfo on mtty: ENOTTY, explained (not PCI)", On.mtty, .explained(.inappropriateIOCTLForDevice, "not a PCI device")) { env in
      try withBoundMtty(env) { device in env.bad { try device.hotResetInfo() } }
    },
    Row("hotReset on mtty: ENOTTY, explained (not PCI)", On.mtty, .explained(.inappropriateIOCTLForDevice, "not a PCI device")) { env in
      try withBoundMtty(env) { device in env.bad { try device.hotReset() } }
    },
    Row("status of a closed device's config space: EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let (_, device, _) = try env.bound()
      let config = try PCIConfigSpace(device)
      try device.close()
      env.bad { try config.status() }
    },
  ]
}

// MARK: - The edu driver

extension BadInputTableTests {
  /// An edu driver whose device was closed.
  static func closedEdu(_ env: Env) throws -> EduDriver {
    let driver = try env.edu()
    try driver.device.close()
    return driver
  }

  static let eduRows: [Row] = [
    Row("EduDriver on a closed device: EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try EduDriver(device: device) }
    },
    Row("edu read32 at UInt64.max: EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let driver = try env.edu()
      env.bad { try driver.read32(.max) }
    },
    Row("edu read32 at BAR0's end (1 MiB): EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let driver = try env.edu()
      env.bad { try driver.read32(0x10_0000) }
    },
    Row("edu write32 half past BAR0's end: EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let driver = try env.edu()
      env.bad { try driver.write32(1, 0xF_FFFE) }
    },
    Row("edu write64 half past BAR0's end: EINVAL", On.withDevice, .rejected(.invalidArgument, "run past")) { env in
      let driver = try env.edu()
      env.bad { try driver.write64(1, 0xF_FFFC) }
    },
    Row("edu copyToDevice count 0: EINVAL before the device is programmed", On.withDevice, .rejected(.invalidArgument, "1 to 4095 bytes")) { env in
      let driver = try env.edu()
      env.bad { try driver.copyToDevice(from: 0x10_0000, count: 0) }
    },
    Row("edu copyToDevice count -1: EINVAL", On.withDevice, .rejected(.invalidArgument, "1 to 4095 bytes")) { env in
      let driver = try env.edu()
      env.bad { try driver.copyToDevice(from: 0x10_0000, count: -1) }
    },
    Row("edu copyToDevice count Int.max: EINVAL", On.withDevice, .rejected(.invalidArgument, "1 to 4095 bytes")) { env in
      let driver = try env.edu()
      env.bad { try driver.copyToDevice(from: 0x10_0000, count: .max) }
    },
    Row("edu copyToDevice of 4096 bytes (past maximumTransfer): EINVAL", On.withDevice, .rejected(.invalidArgument, "1 to 4095 bytes")) { env in
      let driver = try env.edu()
      env.bad { try driver.copyToDevice(from: 0x10_0000, count: 4096) }
    },
    Row("edu copyToDevice at bufferOffset UInt64.max: EINVAL", On.withDevice, .rejected(.invalidArgument, "bufferOffset")) { env in
      let driver = try env.edu()
      env.bad { try driver.copyToDevice(from: 0x10_0000, count: 16, bufferOffset: .max) }
    },
    Row("edu copyFromDevice count 0: EINVAL", On.withDevice, .rejected(.invalidArgument, "1 to 4095 bytes")) { env in
      let driver = try env.edu()
      env.bad { try driver.copyFromDevice(to: 0x10_0000, count: 0) }
    },
    Row("edu copyFromDevice of 1 byte at offset 4095 (ends past maximumTransfer): EINVAL", On.withDevice, .rejected(.invalidArgument, "bufferOffset")) { env in
      let driver = try env.edu()
      env.bad { try driver.copyFromDevice(to: 0x10_0000, count: 1, bufferOffset: 4095) }
    },
    Row("edu waitForDMA(attempts: -1): EINVAL", On.withDevice, .rejected(.invalidArgument, "at least 1")) { env in
      let driver = try env.edu()
      env.bad { try driver.waitForDMA(attempts: -1) }
    },
    Row("edu waitForDMA(attempts: 0): EINVAL without a read", On.withDevice, .rejected(.invalidArgument, "at least 1")) { env in
      let driver = try env.edu()
      env.bad { try driver.waitForDMA(attempts: 0) }
    },
    Row("edu factorial(5, attempts: 0): EINVAL before the register is written", On.withDevice, .rejected(.invalidArgument, "at least 1")) { env in
      let driver = try env.edu()
      env.bad { try driver.factorial(5, attempts: 0) }
    },
    Row("edu factorial(attempts: Int.min): EINVAL", On.withDevice, .rejected(.invalidArgument, "at least 1")) { env in
      let driver = try env.edu()
      env.bad { try driver.factorial(5, attempts: .min) }
    },
    Row("closed device: edu read32 is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.read32(0) }
    },
    Row("closed device: edu livenessCheck is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.livenessCheck(0x1234) }
    },
    Row("closed device: edu enableBusMaster is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.enableBusMaster() }
    },
    Row("closed device: edu copyToDevice is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.copyToDevice(from: 0x10_0000, count: 16) }
    },
    Row("closed device: edu factorial is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.factorial(5) }
    },
    Row("closed device: edu interruptStatus is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.interruptStatus() }
    },
    Row("closed device: edu raiseInterrupt is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.raiseInterrupt(1) }
    },
    Row("closed device: edu acknowledgeInterrupt is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let driver = try closedEdu(env)
      env.bad { try driver.acknowledgeInterrupt(1) }
    },
  ]
}

// MARK: - Self-test mock devices and HWPTs on the mock

extension BadInputTableTests {
  static let mockRows: [Row] = [
    Row("addReserved of an inverted range: EINVAL", On.mock, .rejected(.invalidArgument, "inverted")) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.selfTest.addReserved(IOVARange(start: 0x3000, last: 0x1000), in: ioas) }
    },
    Row("addReserved of IOVARange(start: .max, length: 2), which wraps: EINVAL", On.mock, .rejected(.invalidArgument, "inverted")) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.selfTest.addReserved(IOVARange(start: .max, length: 2)!, in: ioas) }
    },
    Row("addReserved of the whole space (a 2^64-byte length): EOVERFLOW", On.mock, .rejected(.overflow, "2^64 bytes")) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.selfTest.addReserved(IOVARange(start: 0, last: .max), in: ioas) }
    },
    Row("addReserved over a mapping: EADDRINUSE", On.mock, .kernel(.addressInUse)) { env in
      let (iommufd, ioas) = try env.ioas()
      _ = try ioas.unsafeMap(address: fakeAddress, length: 0x1000, at: .fixed(0x10000))
      env.bad { try iommufd.selfTest.addReserved(IOVARange(start: 0xF000, last: 0x10FFF), in: ioas) }
    },
    Row("addReserved over an allowed range: EADDRINUSE", On.mock, .kernel(.addressInUse)) { env in
      let (iommufd, ioas) = try env.ioas()
      try ioas.allowIOVAs([IOVARange(start: 0x40_0000, last: 0x4F_FFFF)])
      env.bad { try iommufd.selfTest.addReserved(IOVARange(start: 0x48_0000, last: 0x48_0FFF), in: ioas) }
    },
    Row("attachMockDevice with unknown flags (8): EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.selfTest.attachMockDevice(to: ioas, flags: IOMMUSelfTest.DeviceFlags(rawValue: 8)) }
    },
    Row("attachMockDevice with HUGE_IOVA on 7.2 (gone): EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.selfTest.attachMockDevice(to: ioas, flags: .hugeIOVA) }
    },
    Row("attachMockDevice to a destroyed IOAS: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, ioas) = try env.destroyedIOAS()
      env.bad { try iommufd.selfTest.attachMockDevice(to: ioas) }
    },
    Row("attachMockDevice to another context's IOAS: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let mine = try env.context()
      let (_, theirs) = try env.ioas()
      env.bad { try mine.selfTest.attachMockDevice(to: theirs) }
    },
    Row("attachMockDevice to a raw id of another context: EINVAL, not this context's object of that id", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let (mine, ioas) = try env.ioas()
      let other = try env.context()
      env.bad { try mine.selfTest.attachMockDevice(to: RawTarget(ioas.id, other)) }
    },
    Row("attachMockDevice to unknown id 9: ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.selfTest.attachMockDevice(to: RawTarget(ObjectID(9), iommufd)) }
    },
    Row("attachMockDevice to a device id (wrong type): ATT-4 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      env.bad { try setup.test.attachMockDevice(to: RawTarget(setup.deviceID, setup.iommufd)) }
    },
    Row("attachMockDevice on a closed context: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.iommufd.selfTest.attachMockDevice(to: ioas) }
    },
    Row("replace with a destroyed IOAS: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let ioas = try setup.iommufd.allocateIOAS()
      try ioas.destroy()
      env.bad { try setup.mock.replace(with: ioas) }
    },
    Row("replace with another context's IOAS: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let setup = try env.mock()
      let (_, theirs) = try env.ioas()
      env.bad { try setup.mock.replace(with: theirs) }
    },
    Row("replace with a raw id of another context: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let setup = try env.mock()
      let other = try env.context()
      env.bad { try setup.mock.replace(with: RawTarget(setup.ioas.id, other)) }
    },
    Row("replace with unknown id 99: ATT-2 ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      env.bad { try setup.mock.replace(with: RawTarget(ObjectID(99), setup.iommufd)) }
    },
    Row("replace with the device's id (wrong type): ATT-4 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      env.bad { try setup.mock.replace(with: RawTarget(setup.deviceID, setup.iommufd)) }
    },
    Row("replace of a destroyed mock device: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let other = try setup.test.attachMockDevice(to: setup.ioas)
      try other.destroy()
      env.bad { try other.replace(with: setup.ioas) }
    },
    Row("mock device destroy twice: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let setup = try env.mock()
      let other = try setup.test.attachMockDevice(to: setup.ioas)
      try other.destroy()
      env.bad { try other.destroy() }
    },
    Row("destroy(mock device id): DESTROY-3 EBUSY", On.mock, .kernel(.resourceBusy)) { env in
      let setup = try env.mock()
      env.bad { try setup.iommufd.destroy(setup.deviceID) }
    },
    Row("hardwareInfo of the self-test object's id (wrong type): ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      env.bad { try setup.iommufd.hardwareInfo(device: setup.mock.id) }
    },
    Row("hardwareInfo of a nested HWPT's id (wrong type): ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try setup.iommufd.hardwareInfo(device: nested.id) }
    },
    Row("HWPageTable for a nested HWPT's id as the device (wrong type): ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try HWPageTable(on: setup.ioas, forDevice: nested.id) }
    },
    Row("triggerPageFault for unknown device 99: ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.selfTest.triggerPageFault(device: ObjectID(99), group: 1, permissions: 1, address: 0x1000) }
    },
    Row("triggerPageFault on a closed context: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let iommufd = try env.context()
      try iommufd.close()
      env.bad { try iommufd.selfTest.triggerPageFault(device: ObjectID(3), group: 1, permissions: 1, address: 0x1000) }
    },
    Row("setHugePages(false) with a domain and an area: OPT-4 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      var mapping = try setup.ioas.map(try env.buffer(), at: .fixed(0x100_0000))
      env.bad { try setup.ioas.setHugePages(enabled: false) }
      try mapping.unmap()
    },
    Row("unsafeMap of 1 KiB with the mock domain: MAP-6 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let buffer = try env.buffer()
      env.bad { try setup.ioas.unsafeMap(address: UnsafeRawPointer(buffer.bytes.baseAddress!), length: 0x400) }
    },
    Row("unsafeMap below the mock aperture: MAP-8 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let buffer = try env.buffer()
      env.bad { try setup.ioas.unsafeMap(address: UnsafeRawPointer(buffer.bytes.baseAddress!), length: 0x1000, at: .fixed(0x1000)) }
    },
  ]

  static let hwptRows: [Row] = [
    Row("HWPageTable with DIRTY_TRACKING for a NO_DIRTY device: EOPNOTSUPP", On.mock, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      let plain = try setup.test.attachMockDevice(to: setup.ioas, flags: .noDirtyTracking)
      env.bad { try HWPageTable(on: setup.ioas, forDevice: plain.deviceID, flags: .dirtyTracking) }
    },
    Row("HWPageTable with the PASID flag on 6.12 (unknown there): HWPT-5 EOPNOTSUPP", On.mock6_12, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      env.bad { try HWPageTable(on: setup.ioas, forDevice: setup.deviceID, flags: .pasid) }
    },
    Row("HWPageTable on an IOAS with a fault queue: 6.12 EOPNOTSUPP (HWPT-5), 7.2 takes it", On.mock,
      expect: { $0.release == .linux7_2 ? .succeeds : .kernel(.notSupported) }) { env in
      let setup = try env.mock()
      let queue = try setup.iommufd.allocateFaultQueue()
      env.bad { try HWPageTable(on: setup.ioas, forDevice: setup.deviceID, faultQueue: queue) }
    },
    Row("HWPT destroy with a mock device attached: EBUSY", On.mock, .kernel(.resourceBusy)) { env in
      let setup = try env.mock()
      let hwpt = try HWPageTable(on: setup.ioas, forDevice: setup.deviceID)
      let attached = try setup.test.attachMockDevice(to: hwpt)
      env.bad { try hwpt.destroy() }
      _ = attached
    },
    Row("IOAS destroy with an HWPT on it: OBJ-5 EBUSY", On.mock, .kernel(.resourceBusy)) { env in
      let setup = try env.mock()
      env.bad { try setup.ioas.destroy() }
    },
    Row("fault queue destroy while a nested HWPT names it: EBUSY (its descriptor is closed first)", On.mock, .kernel(.resourceBusy)) { env in
      let setup = try env.mock()
      let queue = try setup.iommufd.allocateFaultQueue()
      let nested = try setup.nested(faultQueue: queue)
      env.bad { try queue.destroy() }
      try nested.destroy()
      try queue.destroy()
    },
  ]
}

// MARK: - Nested HWPTs and invalidation

extension BadInputTableTests {
  static let nestedType = IOMMUSelfTest.nestedDataType
  static let invalidationType = IOMMUSelfTest.invalidationType

  static let nestedRows: [Row] = [
    Row("nested on a parent without NEST_PARENT: HWPT-6 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let plain = try HWPageTable(on: setup.ioas, forDevice: setup.deviceID)
      env.bad { try NestedHWPageTable(parent: plain, forDevice: setup.deviceID, dataType: nestedType, data: le(UInt32(1))) }
    },
    Row("nested with an unknown data type: HWPT-6 EOPNOTSUPP", On.mock, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      env.bad { try NestedHWPageTable(parent: setup.parent, forDevice: setup.deviceID, dataType: 0xBEEF, data: le(UInt32(1))) }
    },
    Row("nested with 3 bytes of data: HWPT-6 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      env.bad { try NestedHWPageTable(parent: setup.parent, forDevice: setup.deviceID, dataType: nestedType, data: [1, 2, 3]) }
    },
    Row("nested with 9 bytes of data: HWPT-6 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      env.bad { try NestedHWPageTable(parent: setup.parent, forDevice: setup.deviceID, dataType: nestedType, data: [UInt8](repeating: 0, count: 9)) }
    },
    Row("nested with 5 bytes of data: 6.12 EINVAL, 7.2 takes 4 to 8", On.mock,
      expect: { $0.release == .linux7_2 ? .succeeds : .kernel(.invalidArgument) }) { env in
      let setup = try env.mock()
      env.bad { try NestedHWPageTable(parent: setup.parent, forDevice: setup.deviceID, dataType: nestedType, data: [1, 2, 3, 4, 5]) }
    },
    Row("nested with no data for a data type: HWPT-2 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      env.bad { try NestedHWPageTable(parent: setup.parent, forDevice: setup.deviceID, dataType: nestedType, data: []) }
    },
    Row("nested for device 0: HWPT-3 ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      env.bad { try NestedHWPageTable(parent: setup.parent, forDevice: ObjectID(0), dataType: nestedType, data: le(UInt32(1))) }
    },
    Row("nested on a destroyed parent: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      try setup.parent.destroy()
      env.bad { try NestedHWPageTable(parent: setup.parent, forDevice: setup.deviceID, dataType: nestedType, data: le(UInt32(1))) }
    },
    Row("nested naming another context's fault queue: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let setup = try env.mock()
      let theirs = try env.context().allocateFaultQueue()
      env.bad { try setup.nested(faultQueue: theirs) }
    },
    Row("nested naming a destroyed fault queue: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let queue = try setup.iommufd.allocateFaultQueue()
      try queue.destroy()
      env.bad { try setup.nested(faultQueue: queue) }
    },
    Row("nested on a closed context: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try env.mock()
      try setup.iommufd.close()
      env.bad { try setup.nested() }
    },
    Row("invalidate entryLength -1: EINVAL", On.mock, .rejected(.invalidArgument, "entryLength -1")) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: -1, entries: []) }
      _ = setup
    },
    Row("invalidate entryLength 2^33: EINVAL", On.mock, .rejected(.invalidArgument, "entryLength")) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 1 << 33, entries: []) }
      _ = setup
    },
    Row("invalidate 12 bytes as 8-byte entries: EINVAL", On.mock, .rejected(.invalidArgument, "whole entries")) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 8, entries: [UInt8](repeating: 0, count: 12)) }
      _ = setup
    },
    Row("invalidate entryLength 0 with entries: EINVAL", On.mock, .rejected(.invalidArgument, "whole entries")) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 0, entries: le(UInt32(0), UInt32(0))) }
      _ = setup
    },
    Row("invalidate with the wrong data type and no entries: INV-6 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: 0x1234, entryLength: 8, entries: []) }
      _ = setup
    },
    Row("invalidate with 4-byte entries (the mock's are 8): INV-5 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 4, entries: le(UInt32(0))) }
      _ = setup
    },
    Row("invalidate IOTLB slot 4: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 8, entries: le(UInt32(0), UInt32(4))) }
      _ = setup
    },
    Row("invalidate with unknown entry flags: EOPNOTSUPP", On.mock, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 8, entries: le(UInt32(2), UInt32(0))) }
      _ = setup
    },
    Row("invalidate of a destroyed nested HWPT: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      try nested.destroy()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 8, entries: []) }
      _ = setup
    },
    Row("invalidate on a closed context: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      try setup.iommufd.close()
      env.bad { try nested.invalidate(dataType: invalidationType, entryLength: 8, entries: []) }
    },
    Row("nested destroy twice: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      try nested.destroy()
      env.bad { try nested.destroy() }
      _ = setup
    },
    Row("nested destroy with a mock device attached: EBUSY", On.mock, .kernel(.resourceBusy)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      try setup.mock.replace(with: nested)
      env.bad { try nested.destroy() }
      _ = setup
    },
    Row("parent destroy with a nested child: HWPT-10 EBUSY", On.mock, .kernel(.resourceBusy)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try setup.parent.destroy() }
      _ = nested
    },
    Row("checkIOTLB slot 4: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try setup.test.checkIOTLB(nested, slot: 4, value: 0xBADBEEF) }
    },
    Row("checkIOTLB slot UInt32.max: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      env.bad { try setup.test.checkIOTLB(nested, slot: .max, value: 0xBADBEEF) }
    },
    Row("checkIOTLB of a value the slot does not hold: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let nested = try setup.nested(7)
      env.bad { try setup.test.checkIOTLB(nested, slot: 0, value: 8) }
    },
    Row("checkIOTLB of a destroyed nested HWPT: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      try nested.destroy()
      env.bad { try setup.test.checkIOTLB(nested, slot: 0, value: 0xBADBEEF) }
    },
    Row("checkIOTLB of another context's nested HWPT: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let setup = try env.mock()
      let nested = try setup.nested()
      let other = try env.context()
      env.bad { try other.selfTest.checkIOTLB(nested, slot: 0, value: 0xBADBEEF) }
      _ = setup
    },
  ]
}

// MARK: - Dirty tracking on the mock

extension BadInputTableTests {
  /// A dirty-tracking HWPT with a mock device attached and 64 KiB mapped at 0x1000000, as
  /// ``DirtyConformance/Setup``, on the row's backend.
  struct Dirty: ~Copyable {
    let iommufd: IOMMUFD
    let ioas: IOAS
    let hwpt: HWPageTable
    let mock: MockDevice
    let mapping: DMAMapping

    init(_ env: Env) throws {
      let iommufd = try env.context()
      let ioas = try iommufd.allocateIOAS()
      let probe = try iommufd.selfTest.attachMockDevice(to: ioas)
      let hwpt = try HWPageTable(on: ioas, forDevice: probe.deviceID, flags: [.dirtyTracking, .nestParent])
      try probe.destroy()
      let mock = try iommufd.selfTest.attachMockDevice(to: hwpt)
      let buffer = try env.buffer(0x10000)
      mapping = try ioas.map(buffer, at: .fixed(0x100_0000))
      (self.iommufd, self.ioas, self.hwpt, self.mock) = (iommufd, ioas, hwpt, mock)
    }

    /// A paging HWPT without dirty tracking on the same IOAS.
    func plain() throws -> HWPageTable { try HWPageTable(on: ioas, forDevice: mock.deviceID) }
  }

  static let dirtyRows: [Row] = [
    Row("setDirtyTracking on an HWPT without DIRTY_TRACKING: DSET-3 EOPNOTSUPP", On.mock, .kernel(.notSupported)) { env in
      let setup = try Dirty(env)
      let plain = try setup.plain()
      env.bad { try plain.setDirtyTracking(enabled: true) }
    },
    Row("setDirtyTracking of a destroyed HWPT: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try Dirty(env)
      let plain = try setup.plain()
      try plain.destroy()
      env.bad { try plain.setDirtyTracking(enabled: true) }
    },
    Row("setDirtyTracking on a closed context: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try Dirty(env)
      try setup.iommufd.close()
      env.bad { try setup.hwpt.setDirtyTracking(enabled: true) }
    },
    Row("dirtyBitmap page size 0: EINVAL", On.mock, .rejected(.invalidArgument, "page size")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x1000, pageSize: 0) }
    },
    Row("dirtyBitmap page size 0x3000, no power of two: EINVAL (the kernel would set 3x the bits)", On.mock, .rejected(.invalidArgument, "power of two")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x6000, pageSize: 0x3000) }
    },
    Row("dirtyBitmap page size 0x1001: EINVAL", On.mock, .rejected(.invalidArgument, "power of two")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x2002, pageSize: 0x1001) }
    },
    Row("dirtyBitmap length 0: 6.12 DGET-3 EINVAL, 7.2 EOVERFLOW (no length check there)", On.mock,
      expect: { $0.release == .linux7_2 ? .kernel(.overflow) : .kernel(.invalidArgument) }) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0, pageSize: 4096) }
    },
    Row("dirtyBitmap of 8 KiB at 2^64 - 4 KiB: DGET-3 EOVERFLOW", On.mock, .kernel(.overflow)) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: .max - 0xFFF, length: 0x2000, pageSize: 4096) }
    },
    Row("dirtyBitmap misaligned to the IOAS alignment: DGET-3 EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0x100_0400, length: 0x800, pageSize: 0x400) }
    },
    Row("dirtyBitmap page size UInt64.max: EINVAL, no power of two", On.mock, .rejected(.invalidArgument, "power of two")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0x100_0000, length: 0x1000, pageSize: .max) }
    },
    Row("dirtyBitmap length UInt64.max at page size 4096: EINVAL, not aligned (no 2^52-bit bitmap)", On.mock, .rejected(.invalidArgument, "not aligned")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0, length: .max, pageSize: 4096) }
    },
    Row("dirtyBitmap of a range past 2^64: EOVERFLOW before allocating", On.mock, .rejected(.overflow, "overflows")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 1 << 63, length: 1 << 63 + 4096, pageSize: 1) }
    },
    Row("dirtyBitmap of 2^50 one-byte pages (a 128 TiB bitmap): ENOMEM", On.mock, .rejected(.noMemory, "maximum")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.hwpt.dirtyBitmap(iova: 0, length: 1 << 50, pageSize: 1) }
    },
    Row("dirtyBitmap of an HWPT without dirty ops: DGET-4 EOPNOTSUPP", On.mock, .kernel(.notSupported)) { env in
      let setup = try Dirty(env)
      let plain = try setup.plain()
      env.bad { try plain.dirtyBitmap(iova: 0x100_0000, length: 0x1000, pageSize: 0x1000) }
    },
    Row("dirtyBitmap of a destroyed HWPT: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try Dirty(env)
      let plain = try setup.plain()
      try plain.destroy()
      env.bad { try plain.dirtyBitmap(iova: 0x100_0000, length: 0x1000, pageSize: 0x1000) }
    },
    Row("markDirty page size 0: EINVAL", On.mock, .rejected(.invalidArgument, "page size")) { env in
      let setup = try Dirty(env)
      try setup.hwpt.setDirtyTracking(enabled: true)
      env.bad { try setup.iommufd.selfTest.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000, pageSize: 0, pages: [1]) }
    },
    Row("markDirty of 128 pages with one word of bits: EINVAL, the kernel would read past it", On.mock,
      .rejected(.invalidArgument, "bits of pages")) { env in
      let setup = try Dirty(env)
      try setup.hwpt.setDirtyTracking(enabled: true)
      env.bad { try setup.iommufd.selfTest.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000 * 4, pageSize: 2048, pages: [1]) }
    },
    Row("markDirty of length UInt64.max at 1-byte pages: EINVAL (2^64 bits)", On.mock, .rejected(.invalidArgument, "bits of pages")) { env in
      let setup = try Dirty(env)
      env.bad { try setup.iommufd.selfTest.markDirty(setup.hwpt, iova: 0, length: .max, pageSize: 1, pages: []) }
    },
    Row("markDirty while tracking is off: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try Dirty(env)
      env.bad { try setup.iommufd.selfTest.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x10000, pageSize: 2048, pages: [1]) }
    },
    Row("markDirty of a destroyed HWPT: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try Dirty(env)
      let plain = try setup.plain()
      try plain.destroy()
      env.bad { try setup.iommufd.selfTest.markDirty(plain, iova: 0x100_0000, length: 0x1000, pageSize: 2048, pages: [1]) }
    },
    Row("markDirty of another context's HWPT: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let setup = try Dirty(env)
      let other = try env.context()
      env.bad { try other.selfTest.markDirty(setup.hwpt, iova: 0x100_0000, length: 0x1000, pageSize: 2048, pages: [1]) }
    },
    Row("NO_DIRTY mock device onto a dirty-tracking HWPT: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try Dirty(env)
      env.bad { try setup.iommufd.selfTest.attachMockDevice(to: setup.hwpt, flags: .noDirtyTracking) }
    },
  ]
}

// MARK: - vIOMMU, vDEVICE, vEVENTQ, HW queues (7.2 test kernels)

extension BadInputTableTests {
  static let virtualInvalidation = IOMMUSelfTest.virtualInvalidationType

  static let virtualRows: [Row] = [
    Row("VirtualIOMMU on 6.12: ENOTTY, reported as after 6.12", On.mock6_12, .explained(.inappropriateIOCTLForDevice, "came in Linux 6.13")) { env in
      let setup = try env.mock()
      env.bad { try setup.viommu() }
    },
    Row("VirtualIOMMU kind 0: EOPNOTSUPP", On.mock7_2, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      env.bad { try VirtualIOMMU(kind: VirtualIOMMU.Kind(rawValue: 0), device: setup.deviceID, parent: setup.parent) }
    },
    Row("VirtualIOMMU kind UInt32.max: EOPNOTSUPP", On.mock7_2, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      env.bad { try VirtualIOMMU(kind: VirtualIOMMU.Kind(rawValue: .max), device: setup.deviceID, parent: setup.parent) }
    },
    Row("VirtualIOMMU of another driver's kind (SMMUv3) on the mock: EOPNOTSUPP", On.mock7_2, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      env.bad { try VirtualIOMMU(kind: .armSMMUv3, device: setup.deviceID, parent: setup.parent) }
    },
    Row("VirtualIOMMU for unknown device 99: ENOENT", On.mock7_2, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      env.bad { try VirtualIOMMU(kind: .selfTest, device: ObjectID(99), parent: setup.parent) }
    },
    Row("VirtualIOMMU on a parent without NEST_PARENT: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let plain = try HWPageTable(on: setup.ioas, forDevice: setup.deviceID)
      env.bad { try VirtualIOMMU(kind: .selfTest, device: setup.deviceID, parent: plain) }
    },
    Row("VirtualIOMMU with 4 bytes of driver data: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      env.bad { try VirtualIOMMU(kind: .selfTest, device: setup.deviceID, parent: setup.parent, data: le(UInt32(7))) }
    },
    Row("VirtualIOMMU on a destroyed parent: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      try setup.parent.destroy()
      env.bad { try setup.viommu() }
    },
    Row("VirtualIOMMU on a closed context: EBADF", On.mock7_2, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try env.mock()
      try setup.iommufd.close()
      env.bad { try setup.viommu() }
    },
    Row("vIOMMU invalidate entryLength -1: EINVAL", On.mock7_2, .rejected(.invalidArgument, "entryLength -1")) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try viommu.invalidate(dataType: virtualInvalidation, entryLength: -1, entries: []) }
      _ = setup
    },
    Row("vIOMMU invalidate 8 bytes as 12-byte entries: EINVAL", On.mock7_2, .rejected(.invalidArgument, "whole entries")) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try viommu.invalidate(dataType: virtualInvalidation, entryLength: 12, entries: le(UInt32(0), UInt32(0))) }
      _ = setup
    },
    Row("vIOMMU invalidate with the wrong data type: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try viommu.invalidate(dataType: 0xDADBEEF, entryLength: 12, entries: []) }
      _ = setup
    },
    Row("vIOMMU invalidate of an unknown virtual id: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let vdevice = try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 0x42)
      env.bad { try viommu.invalidate(dataType: virtualInvalidation, entryLength: 12, entries: le(UInt32(0), UInt32(0x43), UInt32(0))) }
      _ = vdevice
    },
    Row("vIOMMU invalidate of cache slot 4: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let vdevice = try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 0x42)
      env.bad { try viommu.invalidate(dataType: virtualInvalidation, entryLength: 12, entries: le(UInt32(0), UInt32(0x42), UInt32(4))) }
      _ = vdevice
    },
    Row("vIOMMU invalidate of a destroyed vIOMMU: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      try viommu.destroy()
      env.bad { try viommu.invalidate(dataType: virtualInvalidation, entryLength: 12, entries: []) }
      _ = setup
    },
    Row("vIOMMU destroy twice: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      try viommu.destroy()
      env.bad { try viommu.destroy() }
      _ = setup
    },
    Row("vIOMMU destroy with a vDEVICE on it: EBUSY", On.mock7_2, .kernel(.resourceBusy)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let vdevice = try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 0x99)
      env.bad { try viommu.destroy() }
      try vdevice.destroy()
    },
    Row("VirtualDevice for unknown device 99: ENOENT", On.mock7_2, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try VirtualDevice(on: viommu, device: ObjectID(99), virtualID: 1) }
      _ = setup
    },
    Row("VirtualDevice for the same device twice: EEXIST", On.mock7_2, .kernel(.fileExists)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let first = try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 0x99)
      env.bad { try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 0x98) }
      try first.destroy()
    },
    Row("VirtualDevice with a virtual id already taken: EEXIST", On.mock7_2, .kernel(.fileExists)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let other = try setup.test.attachMockDevice(to: setup.ioas)
      let first = try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 0x99)
      env.bad { try VirtualDevice(on: viommu, device: other.deviceID, virtualID: 0x99) }
      try first.destroy()
    },
    Row("VirtualDevice on a destroyed vIOMMU: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      try viommu.destroy()
      env.bad { try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 1) }
    },
    Row("vDEVICE destroy twice: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let setup = try env.mock()
      let vdevice = try VirtualDevice(on: try setup.viommu(), device: setup.deviceID, virtualID: 1)
      try vdevice.destroy()
      env.bad { try vdevice.destroy() }
    },
    Row("VirtualEventQueue kind 0: EOPNOTSUPP", On.mock7_2, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try VirtualEventQueue(on: viommu, kind: VirtualEventQueue.Kind(rawValue: 0), depth: 1) }
      _ = setup
    },
    Row("VirtualEventQueue depth 0: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 0) }
      _ = setup
    },
    Row("VirtualEventQueue depth 2^19 + 1: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: (1 << 19) + 1) }
      _ = setup
    },
    Row("VirtualEventQueue depth UInt32.max: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: .max) }
      _ = setup
    },
    Row("a second VirtualEventQueue of a kind: EEXIST", On.mock7_2, .kernel(.fileExists)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let first = try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 1)
      env.bad { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 1) }
      try first.destroy()
      _ = setup
    },
    Row("VirtualEventQueue on a destroyed vIOMMU: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      try viommu.destroy()
      env.bad { try VirtualEventQueue(on: viommu, kind: .selfTest, depth: 1) }
      _ = setup
    },
    Row("vEVENTQ read(maximumBytes: -1): EINVAL", On.mock7_2, .rejected(.invalidArgument, "maximumBytes -1")) { env in
      let setup = try env.mock()
      let queue = try VirtualEventQueue(on: try setup.viommu(), kind: .selfTest, depth: 4)
      env.bad { try queue.read(maximumBytes: -1) }
      _ = setup
    },
    Row("vEVENTQ read(maximumBytes: Int.max): EINVAL", On.mock7_2, .rejected(.invalidArgument, "maximumBytes")) { env in
      let setup = try env.mock()
      let queue = try VirtualEventQueue(on: try setup.viommu(), kind: .selfTest, depth: 4)
      env.bad { try queue.read(maximumBytes: .max) }
      _ = setup
    },
    Row("vEVENTQ read above maximumReadBytes: EINVAL", On.mock7_2, .rejected(.invalidArgument, "maximumBytes")) { env in
      let setup = try env.mock()
      let queue = try VirtualEventQueue(on: try setup.viommu(), kind: .selfTest, depth: 4)
      env.bad { try queue.read(maximumBytes: VirtualEventQueue.maximumReadBytes + 1) }
      _ = setup
    },
    Row("vEVENTQ read of 4 bytes (less than a header): EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let queue = try VirtualEventQueue(on: try setup.viommu(), kind: .selfTest, depth: 4)
      env.bad { try queue.read(maximumBytes: 4) }
      _ = setup
    },
    Row("destroyed vEVENTQ: read is EBADF", On.mock7_2, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try env.mock()
      let queue = try VirtualEventQueue(on: try setup.viommu(), kind: .selfTest, depth: 4)
      try queue.destroy()
      env.bad { try queue.read() }
      _ = setup
    },
    Row("vEVENTQ destroy twice: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let setup = try env.mock()
      let queue = try VirtualEventQueue(on: try setup.viommu(), kind: .selfTest, depth: 4)
      try queue.destroy()
      env.bad { try queue.destroy() }
      _ = setup
    },
    Row("HardwareQueue of guest memory not mapped: ENOENT", On.mock7_2, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try HardwareQueue(on: viommu, kind: .selfTest, index: 0, guestAddress: 0x200_0000, length: 64) }
      _ = setup
    },
    Row("HardwareQueue at guest address UInt64.max, length 2: EOVERFLOW", On.mock7_2, .kernel(.overflow)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      env.bad { try HardwareQueue(on: viommu, kind: .selfTest, index: 0, guestAddress: .max, length: 2) }
      _ = setup
    },
    Row("HardwareQueue of length 0: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let mapping = try setup.ioas.map(try env.buffer(), at: .fixed(0x100_0000), access: .readable)
      env.bad { try HardwareQueue(on: viommu, kind: .selfTest, index: 0, guestAddress: 0x100_0000, length: 0) }
      _ = mapping
    },
    Row("HardwareQueue kind 0: EOPNOTSUPP", On.mock7_2, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let mapping = try setup.ioas.map(try env.buffer(), at: .fixed(0x100_0000), access: .readable)
      env.bad { try HardwareQueue(on: viommu, kind: HardwareQueue.Kind(rawValue: 0), index: 0, guestAddress: 0x100_0000, length: 64) }
      _ = mapping
    },
    Row("HardwareQueue index 2 (the mock has two): EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let mapping = try setup.ioas.map(try env.buffer(), at: .fixed(0x100_0000), access: .readable)
      env.bad { try HardwareQueue(on: viommu, kind: .selfTest, index: 2, guestAddress: 0x100_0000, length: 64) }
      _ = mapping
    },
    Row("HardwareQueue index 1 before index 0: EIO", On.mock7_2, .kernel(.ioError)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let mapping = try setup.ioas.map(try env.buffer(), at: .fixed(0x100_0000), access: .readable)
      env.bad { try HardwareQueue(on: viommu, kind: .selfTest, index: 1, guestAddress: 0x100_0000, length: 64) }
      _ = mapping
    },
    Row("HardwareQueue on a destroyed vIOMMU: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      try viommu.destroy()
      env.bad { try HardwareQueue(on: viommu, kind: .selfTest, index: 0, guestAddress: 0x100_0000, length: 64) }
      _ = setup
    },
    Row("HW queue destroy twice: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, "already destroyed")) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      var mapping = try setup.ioas.map(try env.buffer(), at: .fixed(0x100_0000), access: .readable)
      let queue = try HardwareQueue(on: viommu, kind: .selfTest, index: 0, guestAddress: 0x100_0000, length: 64)
      try queue.destroy()
      env.bad { try queue.destroy() }
      try mapping.unmap()
    },
    Row("checkDeviceCache slot 4: EINVAL", On.mock7_2, .kernel(.invalidArgument)) { env in
      let setup = try env.mock()
      env.bad { try setup.test.checkDeviceCache(device: setup.deviceID, slot: 4, value: 0) }
    },
    Row("checkDeviceCache of unknown device 99: ENOENT", On.mock7_2, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.selfTest.checkDeviceCache(device: ObjectID(99), slot: 0, value: 0) }
    },
    Row("triggerVirtualEvent for unknown device 99: ENOENT", On.mock7_2, .kernel(.noSuchFileOrDirectory)) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.selfTest.triggerVirtualEvent(device: ObjectID(99)) }
    },
    Row("triggerVirtualEvent with no vEVENTQ: EOPNOTSUPP", On.mock7_2, .kernel(.notSupported)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let nested = try NestedHWPageTable(on: viommu, forDevice: setup.deviceID, dataType: nestedType, data: le(UInt32(0)))
      let vdevice = try VirtualDevice(on: viommu, device: setup.deviceID, virtualID: 0x42)
      try setup.mock.replace(with: nested)
      env.bad { try setup.test.triggerVirtualEvent(device: setup.deviceID) }
      try setup.mock.replace(with: setup.ioas)
      try vdevice.destroy()
    },
    Row("mock device onto a vIOMMU's nested HWPT without its vDEVICE: ENOENT", On.mock7_2, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      let nested = try NestedHWPageTable(on: viommu, forDevice: setup.deviceID, dataType: nestedType, data: le(UInt32(0)))
      env.bad { try setup.mock.replace(with: nested) }
    },
    Row("NestedHWPageTable on a destroyed vIOMMU: ENOENT", On.mock7_2, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try env.mock()
      let viommu = try setup.viommu()
      try viommu.destroy()
      env.bad { try NestedHWPageTable(on: viommu, forDevice: setup.deviceID, dataType: nestedType, data: le(UInt32(0))) }
    },
  ]
}

// MARK: - Requests after 6.12

extension BadInputTableTests {
  /// A 4 KiB memfd.
  static func memoryFile() throws -> FileDescriptor {
    let fd = ciommufd_memfd_create("iommufd-table", 1)  // MFD_CLOEXEC
    guard fd >= 0, ftruncate(fd, 4096) == 0 else { throw Errno(rawValue: Glibc.errno) }
    return FileDescriptor(rawValue: fd)
  }

  static let newerRows: [Row] = [
    Row("mapFile on 6.12: ENOTTY, reported as after 6.12", On.linux6_12, .explained(.inappropriateIOCTLForDevice, "came in Linux 6.13")) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.mapFile(FileDescriptor(rawValue: 0), offset: 0, length: 4096) }
    },
    Row("changeProcess on 6.12: ENOTTY, reported as after 6.12", On.linux6_12, .explained(.inappropriateIOCTLForDevice, "came in Linux 6.14")) { env in
      let iommufd = try env.context()
      env.bad { try iommufd.changeProcess() }
    },
    Row("mapFile with an unknown access bit: EOPNOTSUPP, on any release", On.all, .rejected(.notSupported, "access 0xa")) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.mapFile(FileDescriptor(rawValue: 0), offset: 0, length: 4096, access: DMAAccess(rawValue: 0xA)) }
    },
    Row("mapFile of the context's own descriptor: EINVAL before the kernel (a reference cycle it never releases)", On.all, .rejected(.invalidArgument, "a reference cycle")) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try ioas.mapFile(iommufd.fileDescriptor, offset: 0, length: 4096) }
    },
    Row("mapFile of a descriptor that is not open: EBADF", On.linux7_2, .kernel(.badFileDescriptor)) { env in
      let (_, ioas) = try env.ioas()
      env.bad { try ioas.mapFile(FileDescriptor(rawValue: Int32.max - 1), offset: 0, length: 4096) }
    },
    Row("mapFile length 0: EINVAL", On.linux7_2, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      let file = try memoryFile()
      defer { try? file.close() }
      env.bad { try ioas.mapFile(file, offset: 0, length: 0) }
    },
    Row("mapFile at file offset UInt64.max - 10: the range overflows, EOVERFLOW", On.linux7_2, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      let file = try memoryFile()
      defer { try? file.close() }
      env.bad { try ioas.mapFile(file, offset: .max - 10, length: 4096) }
    },
    Row("mapFile at .fixed(UInt64.max): EOVERFLOW", On.linux7_2, .kernel(.overflow)) { env in
      let (_, ioas) = try env.ioas()
      let file = try memoryFile()
      defer { try? file.close() }
      env.bad { try ioas.mapFile(file, offset: 0, length: 4096, at: .fixed(.max)) }
    },
    Row("mapFile with access []: EINVAL", On.linux7_2, .kernel(.invalidArgument)) { env in
      let (_, ioas) = try env.ioas()
      let file = try memoryFile()
      defer { try? file.close() }
      env.bad { try ioas.mapFile(file, offset: 0, length: 4096, access: []) }
    },
    Row("changeProcess with a mapping of user memory: EINVAL", On.linux7_2, .kernel(.invalidArgument)) { env in
      let (iommufd, ioas) = try env.ioas()
      var mapping = try ioas.map(try env.buffer())
      env.bad { try iommufd.changeProcess() }
      try mapping.unmap()
    },
    Row("PASID attach on 6.12: EINVAL, reported as needing 6.15", On.withDevice6_12, .explained(.invalidArgument, "PASID flag")) { env in
      let (iommufd, device, _) = try env.bound()
      let ioas = try iommufd.allocateIOAS()
      env.bad { try device.attach(to: ioas, pasid: 1) }
    },
    Row("PASID detach on 6.12: EINVAL, reported as needing 6.15", On.withDevice6_12, .explained(.invalidArgument, "PASID flag")) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.detach(pasid: 1) }
    },
    Row("PASID attach to an IOAS on 7.2 (not PASID-capable): EINVAL, explained", On.withDevice7_2, .explained(.invalidArgument, "PASID flag")) { env in
      let (iommufd, device, _) = try env.bound()
      let ioas = try iommufd.allocateIOAS()
      env.bad { try device.attach(to: ioas, pasid: 1) }
    },
    Row("PASID 2^31 on 7.2: ENOSPC", On.withDevice7_2, .kernel(.noSpace)) { env in
      let (iommufd, device, id) = try env.bound()
      let capable = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id, flags: .pasid)
      env.bad { try device.attach(to: capable, pasid: 1 << 31) }
    },
    Row("PASID detach of a PASID never attached on 7.2: succeeds", On.withDevice7_2, .succeeds) { env in
      let (_, device, _) = try env.bound()
      env.bad { try device.detach(pasid: 7) }
    },
    Row("VirtualIOMMU on 6.12 with VT-d: ENOTTY, reported as after 6.12", On.withDevice6_12, .explained(.inappropriateIOCTLForDevice, "came in Linux 6.13")) { env in
      let (iommufd, device, id) = try env.bound()
      let hwpt = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id)
      env.bad { try VirtualIOMMU(kind: .armSMMUv3, device: id, parent: hwpt) }
      _ = device
    },
    Row("VirtualIOMMU on 7.2's VT-d (none there): EOPNOTSUPP", On.withDevice7_2, .kernel(.notSupported)) { env in
      let (iommufd, device, id) = try env.bound()
      let hwpt = try HWPageTable(on: try iommufd.allocateIOAS(), forDevice: id)
      env.bad { try VirtualIOMMU(kind: .armSMMUv3, device: id, parent: hwpt) }
      _ = device
    },
  ]
}

// MARK: - Values and sysfs (no backend)

extension BadInputTableTests {
  static let valueRows: [Row] = [
    Row("VFIODiscovery.devices under a missing sysfs: ENOENT", On.once, .rejected(.noSuchFileOrDirectory, "cannot list")) { env in
      env.bad { try missing.devices() }
    },
    Row("VFIODiscovery.device(at:) of a missing device: ENOENT", On.once, .rejected(.noSuchFileOrDirectory, "no PCI device")) { env in
      env.bad { try missing.device(at: address) }
    },
    Row("VFIODiscovery.cdevPath of a missing device: ENOENT", On.once, .rejected(.noSuchFileOrDirectory, "no PCI device")) { env in
      env.bad { try missing.cdevPath(for: address) }
    },
    Row("VFIODiscovery.cdevPath of a device in no IOMMU group: ENODEV", On.once, .rejected(.operationNotSupportedByDevice, "no IOMMU group")) { env in
      try withSysfs(device: true) { discovery in env.bad { try discovery.cdevPath(for: address) } }
    },
    Row("VFIODiscovery.group(-1): ENOENT", On.once, .rejected(.noSuchFileOrDirectory, "no IOMMU group -1")) { env in
      try withSysfs(device: false) { discovery in env.bad { try discovery.group(-1) } }
    },
    Row("VFIODiscovery.group(Int.max): ENOENT", On.once, .rejected(.noSuchFileOrDirectory, "no IOMMU group")) { env in
      try withSysfs(device: false) { discovery in env.bad { try discovery.group(.max) } }
    },
    Row("VFIODiscovery.access(for:) of a missing device: no route, and why", On.once, .succeeds) { env in
      env.bad { missing.access(for: address).route == .none }
    },
    Row("PCIDriverBinding.bindToVFIO of a missing device: ENOENT, nothing written", On.once, .rejected(.noSuchFileOrDirectory, "no PCI device")) { env in
      env.bad { try PCIDriverBinding(discovery: missing).bindToVFIO(address) }
    },
    Row("PCIDriverBinding.unbindFromVFIO of a missing device: ENOENT", On.once, .rejected(.noSuchFileOrDirectory, "no PCI device")) { env in
      env.bad { try PCIDriverBinding(discovery: missing).unbindFromVFIO(address) }
    },
    Row("PCIDriverBinding.bindToVFIO of a device in no IOMMU group: ENODEV", On.once, .rejected(.operationNotSupportedByDevice, "no IOMMU group")) { env in
      try withSysfs(device: true) { discovery in env.bad { try PCIDriverBinding(discovery: discovery).bindToVFIO(address) } }
    },
    Row("PCIDriverBinding.unbindFromVFIO of a device on no driver: EINVAL, refusing", On.once, .rejected(.invalidArgument, "refusing to unbind")) { env in
      try withSysfs(device: true) { discovery in env.bad { try PCIDriverBinding(discovery: discovery).unbindFromVFIO(address) } }
    },
    Row("VFIOCapabilityChain.parse from offset UInt32.max: EBADMSG", On.once, .rejected(.badMessage, "outside")) { env in
      env.bad { try VFIOCapabilityChain.parse([UInt8](repeating: 0, count: 64), firstOffset: .max, operation: .deviceGetInfo) }
    },
    Row("VFIOCapabilityChain.parse from offset 4 (inside the header): EBADMSG", On.once, .rejected(.badMessage, "outside")) { env in
      env.bad { try VFIOCapabilityChain.parse([UInt8](repeating: 0, count: 64), firstOffset: 4, operation: .deviceGetInfo) }
    },
    Row("VFIOCapabilityChain.parse from an unaligned offset: EBADMSG", On.once, .rejected(.badMessage, "outside")) { env in
      env.bad { try VFIOCapabilityChain.parse([UInt8](repeating: 0, count: 64), firstOffset: 34, operation: .deviceGetInfo) }
    },
    Row("VFIOCapabilityChain.parse of a sparse mmap claiming UInt32.max areas: EBADMSG", On.once, .rejected(.badMessage, "claims")) { env in
      let reply = le(UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt16(1), UInt16(1), UInt32(0), UInt32.max, UInt32(0))
      env.bad { try VFIOCapabilityChain.parse(reply, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true) }
    },
    Row("VFIOCapabilityChain.parse of a truncated region type: EBADMSG", On.once, .rejected(.badMessage, "truncated")) { env in
      let reply = le(UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt16(2), UInt16(1), UInt32(0), UInt32(1))
      env.bad { try VFIOCapabilityChain.parse(reply, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true) }
    },
    Row("SimulatedKernel.nthFailure of a negative or huge count: 0 (off), or the count", On.once, .succeeds) { env in
      env.bad {
        let kernel = SimulatedKernel()
        kernel.nthFailure = -3
        let negative = kernel.nthFailure
        kernel.nthFailure = .max
        return negative == 0 && kernel.nthFailure == .max && (try? kernel.open("/dev/iommu", flags: O_RDWR)) != nil
      }
    },
    Row("PCIAddress with device 32: nil", On.once, .succeeds) { env in
      env.bad { PCIAddress(bus: 0, device: 32, function: 0) == nil && PCIAddress(bus: 0, device: .max, function: 0) == nil }
    },
    Row("PCIAddress with function 8: nil", On.once, .succeeds) { env in
      env.bad { PCIAddress(domain: .max, bus: .max, device: 0, function: 8) == nil }
    },
    Row("PCIAddress of \"\", \"::.\" and a 0x20 slot: nil", On.once, .succeeds) { env in
      env.bad { PCIAddress("") == nil && PCIAddress("::.") == nil && PCIAddress("0000:00:20.0") == nil }
    },
    Row("DirtyBitmap with a negative page count: isDirty is false", On.once, .succeeds) { env in
      env.bad { !DirtyBitmap(base: 0, pageSize: 4096, pageCount: -1, words: [1]).isDirty(0) }
    },
    Row("VFIODevice.open(pciAddress:) of a device without a VFIO cdev: ENODEV, and why", On.once, .rejected(.operationNotSupportedByDevice, "no VFIO cdev")) { env in
      try withSysfs(device: true) { discovery in env.bad { try VFIODevice.open(pciAddress: address, discovery: discovery, backend: env.backend) } }
    },
    Row("DirtyBitmap iteration at base and page size UInt64.max stops before 2^64", On.once, .succeeds) { env in
      env.bad { Array(DirtyBitmap(base: .max, pageSize: .max, pageCount: 2, words: [0b11])) == [.max] }
    },
    Row("DirtyBitmap with no words: no dirty page, none iterated", On.once, .succeeds) { env in
      let bitmap = DirtyBitmap(base: 0, pageSize: 4096, pageCount: .max, words: [])
      env.bad { !bitmap.isDirty(0) && Array(bitmap).isEmpty && bitmap.dirtyCount == 0 }
    },
    Row("IommufdError and its objects take any value: UInt32.max ids, negative indexes, empty paths", On.once, .succeeds) { env in
      let error = IommufdError(
        .open, .noMemory,
        objects: [.ioas(ObjectID(.max)), .hwpt(ObjectID(0)), .device(ObjectID(.max)), .pageTable(ObjectID(.max)), .object(ObjectID(rawValue: 0)),
          .fd(FileDescriptor(rawValue: -1)), .path(""), .region(.min), .irq(-1), .viommu(ObjectID(.max)), .init("", "")])
      env.bad { error.detail == nil && error.description.contains("irq=-1") && error.description.contains("region=\(Int.min)") }
    },
    Row("Backend.automatic with no devices to simulate: a backend that says why", On.once, .succeeds) { env in
      env.bad { !Backend.automatic(simulating: []).reason.isEmpty }
    },
    Row("an inverted IOVARange contains nothing", On.once, .succeeds) { env in
      env.bad { !IOVARange(start: .max, last: 0).contains(5) && !IOVARange(start: .max, last: 0).contains(.max) }
    },
  ]
}

// MARK: - The seam's file reads (discovery's view of sysfs and /dev)

extension BadInputTableTests {
  /// A sysfs attribute of the first PCI device the backend's machine lists.
  static func attribute(_ env: Env, _ name: String = "vendor") throws -> FilePath {
    let devices = try env.backend.calls.directoryEntries("/sys/bus/pci/devices").sorted()
    let first = try #require(devices.first, "the machine lists no PCI device")
    return FilePath("/sys/bus/pci/devices/\(first)/\(name)")
  }

  /// A FIFO in a fresh directory, removed after `body`.
  static func withFIFO<T>(_ body: (FilePath) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-fifo-\(UUID().uuidString)").path
    guard mkfifo(path, 0o600) == 0 else { throw Errno(rawValue: Glibc.errno) }
    defer { unlink(path) }
    return try body(FilePath(path))
  }

  static let longComponent = String(repeating: "n", count: 256)
  static let longPath = "/sys/" + String(repeating: "p/", count: 2100)

  static let fileRows: [Row] = [
    Row("readFile of /dev/zero with maximumBytes Int.max: stops at 64 MiB", On.all, .succeeds) { env in
      env.bad { try env.backend.calls.readFile("/dev/zero", maximumBytes: .max).count == KernelSystemCalls.maximumFileRead }
    },
    Row("readFile of /dev/zero with maximumBytes Int.min: nothing", On.all, .succeeds) { env in
      env.bad { try env.backend.calls.readFile("/dev/zero", maximumBytes: .min).isEmpty }
    },
    Row("readFile of a sysfs attribute with maximumBytes -1: nothing", On.all, .succeeds) { env in
      let path = try attribute(env)
      env.bad { try env.backend.calls.readFile(path, maximumBytes: -1).isEmpty }
    },
    Row("readFile of a sysfs attribute with maximumBytes 1: one byte", On.all, .succeeds) { env in
      let path = try attribute(env)
      env.bad { try env.backend.calls.readFile(path, maximumBytes: 1) == Array("0".utf8) }
    },
    Row("readFile of a sysfs directory: EISDIR", On.all, .seam(.isDirectory)) { env in
      env.bad { try env.backend.calls.readFile("/sys/bus/pci/devices", maximumBytes: 4096) }
    },
    Row("readFile through a sysfs attribute: ENOTDIR", On.all, .seam(.notDirectory)) { env in
      let path = try attribute(env)
      env.bad { try env.backend.calls.readFile(path.appending("x"), maximumBytes: 4096) }
    },
    Row("readFile of an empty path: ENOENT", On.all, .seam(.noSuchFileOrDirectory)) { env in
      env.bad { try env.backend.calls.readFile("", maximumBytes: 4096) }
    },
    Row("readFile of a path of PATH_MAX bytes or more: ENAMETOOLONG", On.all, .seam(.fileNameTooLong)) { env in
      env.bad { try env.backend.calls.readFile(FilePath(longPath), maximumBytes: 4096) }
    },
    Row("readFile of a 256-byte name in sysfs: ENOENT (kernfs has no NAME_MAX check)", On.all, .seam(.noSuchFileOrDirectory)) { env in
      env.bad { try env.backend.calls.readFile(FilePath("/sys/bus/pci/\(longComponent)"), maximumBytes: 4096) }
    },
    Row("readFile of a 256-byte name in /dev/vfio: ENAMETOOLONG", On.all, .seam(.fileNameTooLong)) { env in
      env.bad { try env.backend.calls.readFile(FilePath("/dev/vfio/\(longComponent)"), maximumBytes: 4096) }
    },
    Row("readFile of a FIFO with a writer and no data: EAGAIN, no wait", On.all, .seam(.resourceTemporarilyUnavailable)) { env in
      try withFIFO { path in
        let writer = Glibc.open(path.string, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard writer >= 0 else { throw Errno(rawValue: Glibc.errno) }
        defer { Glibc.close(writer) }
        env.bad { try env.backend.calls.readFile(path, maximumBytes: 4096) }
      }
    },
    Row("readFile of a FIFO with no writer: nothing, no wait", On.all, .succeeds) { env in
      try withFIFO { path in env.bad { try env.backend.calls.readFile(path, maximumBytes: 4096).isEmpty } }
    },
    Row("readLink of a sysfs directory: EINVAL", On.all, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.readLink("/sys/bus/pci/devices") }
    },
    Row("readLink of a missing sysfs path: ENOENT", On.all, .seam(.noSuchFileOrDirectory)) { env in
      env.bad { try env.backend.calls.readLink("/sys/bus/pci/no-such-link") }
    },
    Row("readLink through /dev/iommu: ENOTDIR", On.all, .seam(.notDirectory)) { env in
      env.bad { try env.backend.calls.readLink("/dev/iommu/x") }
    },
    Row("directoryEntries of a sysfs attribute: ENOTDIR", On.all, .seam(.notDirectory)) { env in
      let path = try attribute(env)
      env.bad { try env.backend.calls.directoryEntries(path) }
    },
    Row("directoryEntries of an empty path: ENOENT", On.all, .seam(.noSuchFileOrDirectory)) { env in
      env.bad { try env.backend.calls.directoryEntries("") }
    },
    Row("directoryEntries of a path of PATH_MAX bytes or more: ENAMETOOLONG", On.all, .seam(.fileNameTooLong)) { env in
      env.bad { try env.backend.calls.directoryEntries(FilePath(longPath)) }
    },
    Row("checkAccess of /dev/iommu with a mode beyond rwx: EINVAL", On.all, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.checkAccess("/dev/iommu", mode: 0x100) }
    },
    Row("checkAccess of /dev/iommu with mode -1: EINVAL", On.all, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.checkAccess("/dev/iommu", mode: -1) }
    },
    Row("checkAccess of /dev/./iommu: there", On.all, .succeeds) { env in
      env.bad { try env.backend.calls.checkAccess("/dev/./iommu", mode: R_OK | W_OK) }
    },
    Row("checkAccess of an empty path: ENOENT", On.all, .seam(.noSuchFileOrDirectory)) { env in
      env.bad { try env.backend.calls.checkAccess("", mode: F_OK) }
    },
    Row("writeFile to a sysfs attribute: EACCES, even for root", On.all, .seam(.permissionDenied)) { env in
      let path = try attribute(env)
      env.bad { try env.backend.calls.writeFile(path, bytes: Array("0x1234\n".utf8)) }
    },
    Row("writeFile to a sysfs directory: EISDIR", On.all, .seam(.isDirectory)) { env in
      env.bad { try env.backend.calls.writeFile("/sys/bus/pci/devices", bytes: [0x31]) }
    },
    Row("writeFile to /dev/iommu: EINVAL (no write)", On.all, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.writeFile("/dev/iommu", bytes: [0x31]) }
    },
    Row("writeFile to an empty path: ENOENT", On.all, .seam(.noSuchFileOrDirectory)) { env in
      env.bad { try env.backend.calls.writeFile("", bytes: [0x31]) }
    },
    Row("writeFile to a path of PATH_MAX bytes or more: ENAMETOOLONG", On.all, .seam(.fileNameTooLong)) { env in
      env.bad { try env.backend.calls.writeFile(FilePath(longPath), bytes: [0x31]) }
    },
    Row("writeFile to a FIFO with no reader: ENXIO, no wait", On.all, .seam(.noSuchAddressOrDevice)) { env in
      try withFIFO { path in env.bad { try env.backend.calls.writeFile(path, bytes: [0x31]) } }
    },
    Row("writeFile of nothing to /dev/null: done", On.all, .succeeds) { env in
      env.bad { try env.backend.calls.writeFile("/dev/null", bytes: []) }
    },
    Row("createMediatedDevice of an unknown type: ENOENT, nothing written", On.all, .rejected(.noSuchFileOrDirectory, "no mediated device type")) { env in
      env.bad { try VFIODiscovery(backend: env.backend).createMediatedDevice(ofType: "no-such-type-\u{1F4A3}") }
    },
    Row("createMediatedDevice of an empty type on an unknown parent: ENOENT", On.all, .rejected(.noSuchFileOrDirectory, "on parent")) { env in
      env.bad { try VFIODiscovery(backend: env.backend).createMediatedDevice(ofType: "", parent: "../../..") }
    },
    Row("removeMediatedDevice of a device that does not exist: ENOENT, nothing written", On.all, .rejected(.noSuchFileOrDirectory, "no mediated device")) { env in
      env.bad { try VFIODiscovery(backend: env.backend).removeMediatedDevice(MediatedDeviceID(high: 0, low: 0)) }
    },
    Row("mediatedDevice of a device that does not exist: ENOENT", On.all, .rejected(.noSuchFileOrDirectory, "no mediated device")) { env in
      env.bad { try VFIODiscovery(backend: env.backend).mediatedDevice(MediatedDeviceID(high: .max, low: .max)) }
    },
    Row("VFIODevice.open(mediatedDevice:) of a device that does not exist: ENOENT", On.all, .rejected(.noSuchFileOrDirectory, "no mediated device")) { env in
      env.bad { try VFIODevice.open(mediatedDevice: MediatedDeviceID(high: 1, low: 2), backend: env.backend) }
    },
    Row("mediatedDeviceTypes under a sysfs root that does not exist: none", On.all, .succeeds) { env in
      env.bad { try VFIODiscovery(sysfsRoot: "/nonexistent-iommufd-table", backend: env.backend).mediatedDeviceTypes().isEmpty }
    },
    Row("IOMMUFD.open of /dev/./iommu: the same node", On.all, .succeeds) { env in
      env.bad { try IOMMUFD.open("/dev/./iommu", backend: env.backend).close() }
    },
    Row("IOMMUFD.open of /dev/iommu/. (a file is no directory): open's ENOTDIR", On.all, .kernel(.notDirectory)) { env in
      env.bad { try IOMMUFD.open("/dev/iommu/.", backend: env.backend) }
    },
    Row("IOMMUFD.open of /dev/iommu/../iommu: open's ENOTDIR", On.all, .kernel(.notDirectory)) { env in
      env.bad { try IOMMUFD.open("/dev/iommu/../iommu", backend: env.backend) }
    },
    Row("readFile of a sysfs attribute followed by ..: ENOTDIR", On.all, .seam(.notDirectory)) { env in
      let path = try attribute(env)
      env.bad { try env.backend.calls.readFile(path.appending(".."), maximumBytes: 4096) }
    },
    Row("IOMMUFD.open through /dev/iommu: open's ENOTDIR", On.all, .kernel(.notDirectory)) { env in
      env.bad { try IOMMUFD.open("/dev/iommu/x", backend: env.backend) }
    },
    Row("IOMMUFD.open of /dev/vfio for writing: open's EISDIR", On.all, .kernel(.isDirectory)) { env in
      env.bad { try IOMMUFD.open("/dev/vfio", backend: env.backend) }
    },
    Row("IOMMUFD.open of a 256-byte name in /dev/vfio: open's ENAMETOOLONG", On.all, .kernel(.fileNameTooLong)) { env in
      env.bad { try IOMMUFD.open(FilePath("/dev/vfio/\(longComponent)"), backend: env.backend) }
    },
    Row("IOMMUFD.open of a path of PATH_MAX bytes or more: open's ENAMETOOLONG", On.all, .kernel(.fileNameTooLong)) { env in
      env.bad { try IOMMUFD.open(FilePath("/dev" + longPath.dropFirst(4)), backend: env.backend) }
    },
  ]
}

// MARK: - The self-test's in-kernel access

extension BadInputTableTests {
  /// A context, an IOAS with a 4-page buffer mapped at 0x100_0000 (read-only again at
  /// 0x200_0000), and an access to it.
  struct AccessSetup {
    let iommufd: IOMMUFD
    let ioas: IOAS
    let buffer: DMABuffer
    let access: SelfTestAccess

    init(_ env: Env, pins: Bool = true) throws {
      iommufd = try env.context()
      ioas = try iommufd.allocateIOAS()
      buffer = try DMABuffer(length: 4 * 4096, backend: env.backend)
      _ = try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 4 * 4096, at: .fixed(0x100_0000))
      _ = try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 4096, at: .fixed(0x200_0000), access: .readable)
      access = try iommufd.selfTest.createAccess(to: ioas, pinsPages: pins)
    }
  }

  /// mtty's type `mtty-1`'s `create`.
  static let mttyCreate = FilePath("/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/create")

  /// An mtty-1 instance for `body`, removed afterwards.
  static func withMtty<T>(_ env: Env, _ body: (MediatedDeviceID) throws -> T) throws -> T {
    try MediatedDeviceConformance.withMtty(VFIODiscovery(backend: env.backend), type: "mtty-1") { entry in try body(entry.id) }
  }

  /// Bad writes to an mdev type's `create` and to a device's `remove` (the kernel's own
  /// parsing, through the seam), and the simulator's eventfd reference.
  static let mediatedRows: [Row] = [
    Row("writeFile to mtty's create of 35 bytes: EINVAL", On.mtty, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.writeFile(mttyCreate, bytes: Array("83b8f4f2-509f-382f-3c1e-e6bfe0fa100".utf8)) }
    },
    Row("writeFile to mtty's create of 38 bytes: EINVAL", On.mtty, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.writeFile(mttyCreate, bytes: Array("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001\n\n".utf8)) }
    },
    Row("writeFile to mtty's create of a UUID with a letter past f: EINVAL", On.mtty, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.writeFile(mttyCreate, bytes: Array("83b8f4f2-509f-382f-3c1e-e6bfe0fa100g".utf8)) }
    },
    Row("writeFile to mtty's create of 36 bytes in braces: EINVAL", On.mtty, .seam(.invalidArgument)) { env in
      env.bad { try env.backend.calls.writeFile(mttyCreate, bytes: Array("{3b8f4f2-509f-382f-3c1e-e6bfe0fa100}".utf8)) }
    },
    Row("writeFile to mtty's create of an uppercase UUID and a 37th byte that is no newline: made, named in lowercase", On.mtty, .succeeds) { env in
      env.bad { () throws -> Bool in
        try env.backend.calls.writeFile(mttyCreate, bytes: Array("83B8F4F2-509F-382F-3C1E-E6BFE0FA10EEx".utf8))
        let id = MediatedDeviceID("83b8f4f2-509f-382f-3c1e-e6bfe0fa10ee")!
        let discovery = VFIODiscovery(backend: env.backend)
        let made = (try? discovery.mediatedDevice(id)) != nil
        try discovery.removeMediatedDevice(id)
        return made
      }
    },
    Row("readFile of mtty's create (write-only): EACCES", On.mtty, .seam(.permissionDenied)) { env in
      env.bad { try env.backend.calls.readFile(mttyCreate, maximumBytes: 64) }
    },
    Row("writeFile to an mdev's remove of text: EINVAL, the device stays", On.mtty, .seam(.invalidArgument)) { env in
      try withMtty(env) { id in
        env.bad { try env.backend.calls.writeFile(FilePath("/sys/bus/mdev/devices/\(id)/remove"), bytes: Array("yes".utf8)) }
      }
    },
    Row("writeFile to an mdev's remove of -1: EINVAL", On.mtty, .seam(.invalidArgument)) { env in
      try withMtty(env) { id in
        env.bad { try env.backend.calls.writeFile(FilePath("/sys/bus/mdev/devices/\(id)/remove"), bytes: Array("-1".utf8)) }
      }
    },
    Row("writeFile to an mdev's remove of 0x0: nothing happens, the device stays", On.mtty, .succeeds) { env in
      try withMtty(env) { id in
        env.bad { () throws -> Bool in
          try env.backend.calls.writeFile(FilePath("/sys/bus/mdev/devices/\(id)/remove"), bytes: Array("0x0\n".utf8))
          return (try? VFIODiscovery(backend: env.backend).mediatedDevice(id)) != nil
        }
      }
    },
    Row("SimulatedEventFD(borrowing: -1): EBADF", On.once, .seam(.badFileDescriptor)) { env in
      env.bad { try SimulatedEventFD(borrowing: -1) }
    },
    Row("SimulatedEventFD(borrowing:) of /dev/null (no eventfd): EINVAL", On.once, .seam(.invalidArgument)) { env in
      let null = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
      defer { Glibc.close(null) }
      env.bad { try SimulatedEventFD(borrowing: null) }
    },
  ]

  /// A bound mtty instance for `body`, closed and removed afterwards.
  static func withBoundMtty<T>(_ env: Env, _ body: (VFIODevice) throws -> T) throws -> T {
    try MigrationConformance.withBoundMtty(env.backend, VFIODiscovery(backend: env.backend), body)
  }

  /// A bound edu.
  static func boundEdu(_ env: Env) throws -> VFIODevice {
    let device = try env.device()
    _ = try device.bind(to: try env.context())
    return device
  }

  /// VFIO_DEVICE_FEATURE, migration and device-side DMA logging with bad arguments, on a
  /// device without them (edu), on mtty, and on closed handles.
  static let featureRows: [Row] = [
    Row("feature GET of a negative size: EINVAL", On.withDevice, .rejected(.invalidArgument, "data size")) { env in
      let device = try boundEdu(env)
      env.bad { try device.feature(.migration, count: -1) }
    },
    Row("feature GET of Int.max bytes: EINVAL", On.withDevice, .rejected(.invalidArgument, "data size")) { env in
      let device = try boundEdu(env)
      env.bad { try device.feature(.migration, count: .max) }
    },
    Row("migrationFlags of edu (no migration): ENOTTY, explained", On.withDevice, .explained(.inappropriateIOCTLForDevice, "does not offer MIGRATION")) { env in
      let device = try boundEdu(env)
      env.bad { try device.migrationFlags() }
    },
    Row("setMigrationState on edu: ENOTTY, explained", On.withDevice, .explained(.inappropriateIOCTLForDevice, "MIG_DEVICE_STATE")) { env in
      let device = try boundEdu(env)
      env.bad { try device.setMigrationState(.stop) }
    },
    Row("startDMALogging on edu (no logging): ENOTTY, explained", On.withDevice, .explained(.inappropriateIOCTLForDevice, "DMA_LOGGING_START")) { env in
      let device = try boundEdu(env)
      env.bad { try device.startDMALogging(ranges: [IOVARange(start: 0, last: 0xFFF)], pageSize: 4096) }
    },
    Row("support(for:) a feature id past the last: none", On.withDevice, .succeeds) { env in
      let device = try boundEdu(env)
      env.bad { try device.support(for: VFIODeviceFeature(rawValue: 0xFFFF)).isEmpty }
    },
    Row("setFeature with more than 1 MiB of data: EINVAL", On.withDevice, .rejected(.invalidArgument, "data size")) { env in
      let device = try boundEdu(env)
      env.bad { try device.setFeature(.lowPowerExit, data: [UInt8](repeating: 0, count: (1 << 20) + 1)) }
    },
    Row("migrationDataSize of edu (no migration): ENOTTY, explained", On.withDevice, .explained(.inappropriateIOCTLForDevice, "MIG_DATA_SIZE")) { env in
      let device = try boundEdu(env)
      env.bad { try device.migrationDataSize() }
    },
    Row("SimulatedMediatedParent with a negative capacity and cost offers no instance: create is ENOSPC", On.once, .succeeds) { env in
      let parent = SimulatedMediatedParent(
        name: "none", types: [.init(suffix: "a", name: "None", cost: -3, makeDevice: { SimulatedMttyDevice(ports: 9) })], capacity: -5)
      let discovery = VFIODiscovery(backend: .simulated(SimulatedKernel(mediatedParents: [parent])))
      env.bad { errno { try discovery.createMediatedDevice(ofType: "none-a") } == .noSpace }
    },
    Row("closed device: migrationState is EBADF", On.withDevice, .rejected(.badFileDescriptor, closed)) { env in
      let device = try env.closedDevice()
      env.bad { try device.migrationState() }
    },
    Row("startDMALogging of no range: EINVAL", On.mtty, .rejected(.invalidArgument, "no range")) { env in
      try withBoundMtty(env) { device in env.bad { try device.startDMALogging(ranges: [], pageSize: 4096) } }
    },
    Row("startDMALogging of 257 ranges: E2BIG", On.mtty, .rejected(.argListTooLong, "257 ranges")) { env in
      try withBoundMtty(env) { device in
        env.bad { try device.startDMALogging(ranges: (0..<257).map { IOVARange(start: UInt64($0) << 12, last: UInt64($0) << 12 | 0xFFF) }, pageSize: 4096) }
      }
    },
    Row("startDMALogging at page size 0: EINVAL", On.mtty, .rejected(.invalidArgument, "power of two")) { env in
      try withBoundMtty(env) { device in env.bad { try device.startDMALogging(ranges: [IOVARange(start: 0, last: 0xFFF)], pageSize: 0) } }
    },
    Row("startDMALogging of a range ending at 2^64 - 1: EOVERFLOW", On.mtty, .rejected(.overflow, "overflows")) { env in
      try withBoundMtty(env) { device in
        env.bad { try device.startDMALogging(ranges: [IOVARange(start: 0xFFFF_FFFF_FFFF_F000, last: .max)], pageSize: 4096) }
      }
    },
    Row("startDMALogging of a misaligned range: EINVAL", On.mtty, .rejected(.invalidArgument, "not aligned")) { env in
      try withBoundMtty(env) { device in env.bad { try device.startDMALogging(ranges: [IOVARange(start: 0x800, last: 0x17FF)], pageSize: 4096) } }
    },
    Row("startDMALogging of overlapping ranges: EINVAL", On.mtty, .rejected(.invalidArgument, "overlap")) { env in
      try withBoundMtty(env) { device in
        env.bad { try device.startDMALogging(ranges: [IOVARange(start: 0, last: 0x1FFF), IOVARange(start: 0x1000, last: 0x2FFF)], pageSize: 4096) }
      }
    },
    Row("dmaLoggingReport at page size 2048: EINVAL", On.mtty, .rejected(.invalidArgument, "at least 4096")) { env in
      try withBoundMtty(env) { device in env.bad { try device.dmaLoggingReport(iova: 0, length: 0x1000, pageSize: 2048) } }
    },
    Row("dmaLoggingReport overflowing: EOVERFLOW", On.mtty, .rejected(.overflow, "overflows")) { env in
      try withBoundMtty(env) { device in env.bad { try device.dmaLoggingReport(iova: .max, length: 0x1000, pageSize: 4096) } }
    },
    Row("dmaLoggingReport of 2^64 - 4096 bytes: ENOMEM before the kernel", On.mtty, .rejected(.noMemory, "maximum")) { env in
      try withBoundMtty(env) { device in env.bad { try device.dmaLoggingReport(iova: 0, length: 0xFFFF_FFFF_FFFF_F000, pageSize: 4096) } }
    },
    Row("setMigrationState STOP_COPY → PRE_COPY: EINVAL, explained", On.mtty, .explained(.invalidArgument, "no such path")) { env in
      try withBoundMtty(env) { device in
        let stream = try device.setMigrationState(.stopCopy)
        defer { try? stream?.close() }
        env.bad { try device.setMigrationState(.preCopy) }
      }
    },
    Row("migration stream read of -1 bytes: EINVAL", On.mtty, .rejected(.invalidArgument, "byte count")) { env in
      try withBoundMtty(env) { device in
        let stream = try #require(try device.setMigrationState(.stopCopy))
        env.bad { try stream.read(maximumBytes: -1) }
      }
    },
    Row("closed migration stream: read is EBADF", On.mtty, .rejected(.badFileDescriptor, closed)) { env in
      try withBoundMtty(env) { device in
        let stream = try #require(try device.setMigrationState(.stopCopy))
        try stream.close()
        env.bad { try stream.read() }
      }
    },
    Row("closed migration stream: writeAll is EBADF", On.mtty, .rejected(.badFileDescriptor, closed)) { env in
      try withBoundMtty(env) { device in
        let stream = try #require(try device.setMigrationState(.resuming))
        try stream.close()
        env.bad { try stream.writeAll([1, 2, 3]) }
      }
    },
    Row("write to a saving stream: EBADF", On.mtty, .kernel(.badFileDescriptor)) { env in
      try withBoundMtty(env) { device in
        let stream = try #require(try device.setMigrationState(.stopCopy))
        env.bad { try stream.write([1]) }
      }
    },
    Row("precopyInfo of a STOP_COPY stream: EINVAL", On.mtty, .kernel(.invalidArgument)) { env in
      try withBoundMtty(env) { device in
        let stream = try #require(try device.setMigrationState(.stopCopy))
        env.bad { try stream.precopyInfo() }
      }
    },
  ]

  static let accessRows: [Row] = [
    Row("createAccess to a destroyed IOAS: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let (iommufd, ioas) = try env.destroyedIOAS()
      env.bad { try iommufd.selfTest.createAccess(to: ioas) }
    },
    Row("createAccess to another context's IOAS: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let mine = try env.context()
      let (_, theirs) = try env.ioas()
      env.bad { try mine.selfTest.createAccess(to: theirs, pinsPages: true) }
    },
    Row("createAccess in a closed context: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let ioas = try env.closedIOAS()
      env.bad { try ioas.iommufd.selfTest.createAccess(to: ioas) }
    },
    Row("createAccess(pinsPages:) over a sub-page mapping: EADDRINUSE", On.mock, .kernel(.addressInUse)) { env in
      let (iommufd, ioas) = try env.ioas()
      _ = try ioas.unsafeMap(address: fakeAddress + 0x800, length: 0x1000, at: .fixed(0x10800))
      env.bad { try iommufd.selfTest.createAccess(to: ioas, pinsPages: true) }
    },
    Row("createAccess on a kernel without the self-test: ENOTTY", On.all.filter { $0.isSimulated }, .kernel(.inappropriateIOCTLForDevice)) { env in
      let (iommufd, ioas) = try env.ioas()
      env.bad { try iommufd.selfTest.createAccess(to: ioas) }
    },
    Row("pin with a zero length: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: 0x100_0000, length: 0) }
    },
    Row("pin of UInt64.max bytes: ENOMEM (the self-test's 16 MiB limit)", On.mock, .kernel(.noMemory)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: 0x100_0000, length: .max) }
    },
    Row("pin wrapping past the end of the address space: EOVERFLOW", On.mock, .kernel(.overflow)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: .max, length: 2) }
    },
    Row("pin at an IOVA off a page boundary: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: 0x100_0FFF, length: 2) }
    },
    Row("pin of a sub-page length at a page boundary: the page", On.mock, .succeeds) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: 0x100_1000, length: 1).id == 0 }
    },
    Row("pin of an unmapped range: ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: 0, length: 4096) }
    },
    Row("pin writable of a read-only mapping: EPERM", On.mock, .kernel(.notPermitted)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: 0x200_0000, length: 4096, writable: true) }
    },
    Row("pin verified against the wrong pages: EBADE", On.mock, .kernel(Errno(rawValue: 52))) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.pin(iova: 0x100_1000, length: 4096, verifyingAgainst: setup.buffer.bytes.baseAddress) }
    },
    Row("pin through an access that does not pin pages: EOPNOTSUPP", On.mock, .kernel(.notSupported)) { env in
      let setup = try AccessSetup(env, pins: false)
      env.bad { try setup.access.pin(iova: 0x100_0000, length: 4096) }
    },
    Row("pin through a closed access: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try AccessSetup(env)
      try setup.access.close()
      env.bad { try setup.access.pin(iova: 0x100_0000, length: 4096) }
    },
    Row("pin through an access whose context is closed: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try AccessSetup(env)
      try setup.iommufd.close()
      env.bad { try setup.access.pin(iova: 0x100_0000, length: 4096) }
    },
    Row("unpin twice: ENOENT, the second refused here", On.mock, .rejected(.noSuchFileOrDirectory, "unpinned already")) { env in
      let setup = try AccessSetup(env)
      let pinned = try setup.access.pin(iova: 0x100_0000, length: 4096)
      try pinned.unpin()
      env.bad { try pinned.unpin() }
    },
    Row("unpin after an unmap of the range: the kernel's ENOENT, explained", On.mock, .explained(.noSuchFileOrDirectory, "unmap")) { env in
      let setup = try AccessSetup(env)
      let pinned = try setup.access.pin(iova: 0x100_0000, length: 4096)
      try setup.ioas.unmap(iova: 0x100_0000, length: 4 * 4096)
      env.bad { try pinned.unpin() }
    },
    Row("unpin after the access closed: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try AccessSetup(env)
      let pinned = try setup.access.pin(iova: 0x100_0000, length: 4096)
      try setup.access.close()
      env.bad { try pinned.unpin() }
    },
    Row("read into an empty buffer: EINVAL", On.mock, .kernel(.invalidArgument)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.read(from: 0x100_0000, into: UnsafeMutableRawBufferPointer(start: nil, count: 0)) }
    },
    Row("read wrapping past the end of the address space: EOVERFLOW", On.mock, .kernel(.overflow)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.read(from: .max, into: UnsafeMutableRawBufferPointer(rebasing: setup.buffer.bytes[0..<2])) }
    },
    Row("read over 16 MiB: ENOMEM", On.mock, .kernel(.noMemory)) { env in
      let setup = try AccessSetup(env)
      let big = try DMABuffer(length: (16 << 20) + 4096, backend: env.backend)
      env.bad { try setup.access.read(from: 0x100_0000, into: big.bytes) }
    },
    Row("read past the mapping's end: ENOENT", On.mock, .kernel(.noSuchFileOrDirectory)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.read(from: 0x100_3FFF, into: UnsafeMutableRawBufferPointer(rebasing: setup.buffer.bytes[0..<2])) }
    },
    Row("read at a misaligned IOVA inside the mapping: the bytes there", On.mock, .succeeds) { env in
      let setup = try AccessSetup(env)
      setup.buffer.bytes[0x123] = 0xAB
      var byte: UInt8 = 0
      env.bad { try withUnsafeMutableBytes(of: &byte) { try setup.access.read(from: 0x100_0123, into: $0) }; return byte == 0xAB }
    },
    Row("read into a buffer this process cannot write: EFAULT", On.mock, .kernel(.badAddress)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.read(from: 0x100_0000, into: UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: 0x1000), count: 16)) }
    },
    Row("write to a read-only mapping: EPERM", On.mock, .kernel(.notPermitted)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.write(UnsafeRawBufferPointer(rebasing: setup.buffer.bytes[0..<8]), to: 0x200_0000) }
    },
    Row("write from a buffer this process cannot read: EFAULT", On.mock, .kernel(.badAddress)) { env in
      let setup = try AccessSetup(env)
      env.bad { try setup.access.write(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: 0x1000), count: 16), to: 0x100_0000) }
    },
    Row("write through a closed access: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try AccessSetup(env)
      try setup.access.close()
      env.bad { try setup.access.write(UnsafeRawBufferPointer(rebasing: setup.buffer.bytes[0..<8]), to: 0x100_0000) }
    },
    Row("replace with another context's IOAS: EINVAL", On.mock, .rejected(.invalidArgument, foreign)) { env in
      let setup = try AccessSetup(env)
      let (_, theirs) = try env.ioas()
      env.bad { try setup.access.replace(with: theirs) }
    },
    Row("replace with a destroyed IOAS: ENOENT", On.mock, .rejected(.noSuchFileOrDirectory, destroyed)) { env in
      let setup = try AccessSetup(env)
      let gone = try setup.iommufd.allocateIOAS()
      try gone.destroy()
      env.bad { try setup.access.replace(with: gone) }
    },
    Row("replace by a pinning access onto an IOAS with a sub-page mapping: EADDRINUSE", On.mock, .kernel(.addressInUse)) { env in
      let setup = try AccessSetup(env)
      let other = try setup.iommufd.allocateIOAS()
      _ = try other.unsafeMap(address: fakeAddress + 0x800, length: 0x1000, at: .fixed(0x10800))
      env.bad { try setup.access.replace(with: other) }
    },
    Row("replace through a closed access: EBADF", On.mock, .rejected(.badFileDescriptor, closed)) { env in
      let setup = try AccessSetup(env)
      let other = try setup.iommufd.allocateIOAS()
      try setup.access.close()
      env.bad { try setup.access.replace(with: other) }
    },
  ]
}
