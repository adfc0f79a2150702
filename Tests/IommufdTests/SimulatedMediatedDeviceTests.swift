import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A user's own emulated device on the simulator (``SimulatedMediatedDevice``): its DMA goes
/// through the access its bind made, by IOVA, and it hears of unmaps of what it pinned.
@Suite("simulated emulated devices")
struct SimulatedMediatedDeviceTests {
  /// A software-isolated device with one 16-byte register region: the IOVA at 0, a command
  /// at 8 (1 reverses the 8 bytes at the IOVA into the 8 after them; 2 pins the page at
  /// the IOVA; 3 unpins it), and at 12 the errno the last command ended with (0 for none).
  final class ReversingDevice: SimulatedMediatedDevice, @unchecked Sendable {
    var iova: UInt64 = 0
    var status: Int32 = 0
    var pins: [UInt32] = []
    var unmaps: [(UInt64, UInt64)] = []
    var closes = 0

    override func info() throws(Errno) -> Info { Info(flags: 0x2, regions: 1, interrupts: 0) }

    override func region(_ index: UInt32) throws(Errno) -> Region {
      guard index == 0 else { throw .invalidArgument }
      return Region(flags: 0x3, size: 16, offset: 0)
    }

    override func read(at offset: UInt64, count: Int) throws(Errno) -> [UInt8] {
      guard offset == 12, count == 4 else { throw .invalidArgument }
      return withUnsafeBytes(of: status.littleEndian, Array.init)
    }

    override func write(_ bytes: [UInt8], at offset: UInt64) throws(Errno) -> Int {
      func value() -> UInt64 { bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
      switch (offset, bytes.count) {
      case (0, 8): iova = value()
      case (8, 4):
        status = 0
        do throws(Errno) {
          switch value() {
          case 1: try dmaWrite(try dmaRead(at: iova, count: 8).reversed(), at: iova + 8)
          case 2: pins.append(try pin(at: iova, length: 4096, writable: true))
          case 3: try unpin(pins.removeLast())
          default: throw .invalidArgument
          }
        } catch {
          status = error.rawValue
        }
      default: throw .invalidArgument
      }
      return bytes.count
    }

    override func didUnmap(iova: UInt64, length: UInt64) { unmaps.append((iova, length)) }
    override func didClose() { closes += 1 }
  }

  /// The README's example device: a write of an IOVA copies the 4 bytes there to the 4 after.
  final class Doorbell: SimulatedMediatedDevice, @unchecked Sendable {
    override func info() throws(Errno) -> Info { Info(flags: 0x2, regions: 1, interrupts: 0) }
    override func region(_ index: UInt32) throws(Errno) -> Region {
      guard index == 0 else { throw .invalidArgument }
      return Region(flags: 0x3, size: 8, offset: 0)
    }
    override func write(_ bytes: [UInt8], at offset: UInt64) throws(Errno) -> Int {
      let iova = bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
      try dmaWrite(try dmaRead(at: iova, count: 4), at: iova + 4)  // ENOENT unless mapped
      return bytes.count
    }
  }

  @Test("the README's example: a doorbell write makes the device copy through the access; unmapped, the write is ENOENT")
  func readmeExample() throws {
    let parent = SimulatedMediatedParent(
      name: "doorbell", types: [.init(suffix: "a", name: "Doorbell", makeDevice: { Doorbell() })], capacity: 4)
    let backend = Backend.simulated(SimulatedKernel(mediatedParents: [parent]))
    let id = try VFIODiscovery(backend: backend).createMediatedDevice(ofType: "doorbell-a").id
    let device = try VFIODevice.open(mediatedDevice: id, backend: backend)
    let iommufd = try IOMMUFD.open(backend: backend)
    _ = try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    _ = try device.attach(to: ioas)
    let region = try device.regionInfo(0)
    #expect(errno { try device.write(UInt64(0x10_0000), region: region, at: 0) } == .noSuchFileOrDirectory)
    let buffer = try DMABuffer(length: 4096, backend: backend)
    for index in 0..<4 { buffer.bytes[index] = UInt8(0xA0 + index) }
    let mapping = try ioas.map(buffer, at: .fixed(0x10_0000))
    try device.write(UInt64(0x10_0000), region: region, at: 0)
    #expect(Array(buffer.bytes[4..<8]) == [0xA0, 0xA1, 0xA2, 0xA3])
    _ = mapping
  }

  /// A machine with one parent offering the reversing device, an instance of it, and its
  /// cdev open and bound.
  func machine() throws -> (Backend, ReversingDevice, VFIODevice, IOMMUFD) {
    let made = Mutex<ReversingDevice?>(nil)
    let parent = SimulatedMediatedParent(
      name: "reverser",
      types: [.init(suffix: "a", name: "Reverser", makeDevice: { let device = ReversingDevice(); made.withLock { $0 = device }; return device })],
      capacity: 1)
    let backend = Backend.simulated(SimulatedKernel(mediatedParents: [parent]))
    let discovery = VFIODiscovery(backend: backend)
    let entry = try discovery.createMediatedDevice(ofType: "reverser-a")
    let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
    let iommufd = try IOMMUFD.open(backend: backend)
    _ = try device.bind(to: iommufd)
    return (backend, try #require(made.withLock { $0 }), device, iommufd)
  }

  func command(_ device: VFIODevice, _ value: UInt32, iova: UInt64) throws -> Errno? {
    let region = try device.regionInfo(0)
    try device.write(iova, region: region, at: 0)
    try device.write(value, region: region, at: 8)
    let status = try device.read(Int32.self, region: region, at: 12)
    return status == 0 ? nil : Errno(rawValue: status)
  }

  @Test("the device's DMA reads and writes the IOAS by IOVA: ENOENT before attach and outside mappings, EPERM into a read-only mapping")
  func dmaThroughTheAccess() throws {
    let (backend, _, device, iommufd) = try machine()
    #expect(try command(device, 1, iova: 0x10_0000) == .noSuchFileOrDirectory)  // not attached
    let ioas = try iommufd.allocateIOAS()
    #expect(try device.attach(to: ioas) == ioas.id)
    let buffer = try DMABuffer(length: 4096, backend: backend)
    for index in 0..<8 { buffer.bytes[index] = UInt8(index + 1) }
    let mapping = try ioas.map(buffer, at: .fixed(0x10_0000))
    #expect(try command(device, 1, iova: 0x10_0000) == nil)
    #expect(Array(buffer.bytes[8..<16]) == [8, 7, 6, 5, 4, 3, 2, 1])
    #expect(try command(device, 1, iova: 0x20_0000) == .noSuchFileOrDirectory)
    let readOnly = try DMABuffer(length: 4096, backend: backend)
    let second = try ioas.map(readOnly, at: .fixed(0x30_0000), access: .readable)
    #expect(try command(device, 1, iova: 0x30_0000) == .notPermitted)
    _ = (mapping.iova, second.iova)
  }

  @Test("DMA with bad arguments: a negative or zero count EINVAL, past the end of the IOVA space EOVERFLOW, a zero-length pin EINVAL, an unknown pin ENOENT; an unbound device ENOENT")
  func dmaBadArguments() throws {
    let unbound = ReversingDevice()
    #expect(throws: Errno.noSuchFileOrDirectory) { try unbound.dmaRead(at: 0, count: 1) }
    #expect(throws: Errno.noSuchFileOrDirectory) { try unbound.dmaWrite([1], at: 0) }
    #expect(throws: Errno.noSuchFileOrDirectory) { try unbound.pin(at: 0, length: 4096, writable: false) }
    #expect(throws: Errno.noSuchFileOrDirectory) { try unbound.unpin(0) }
    #expect(!unbound.isAttached)
    let (backend, model, device, iommufd) = try machine()
    let ioas = try iommufd.allocateIOAS()
    _ = try device.attach(to: ioas)
    #expect(model.isAttached)
    let buffer = try DMABuffer(length: 4096, backend: backend)
    let mapping = try ioas.map(buffer, at: .fixed(0x10_0000))
    #expect(throws: Errno.invalidArgument) { try model.dmaRead(at: 0x10_0000, count: -1) }
    #expect(throws: Errno.invalidArgument) { try model.dmaRead(at: 0x10_0000, count: 0) }
    #expect(throws: Errno.invalidArgument) { try model.dmaWrite([], at: 0x10_0000) }
    #expect(throws: Errno.overflow) { try model.dmaRead(at: .max, count: 2) }
    #expect(throws: Errno.invalidArgument) { try model.pin(at: 0x10_0000, length: 0, writable: false) }
    #expect(throws: Errno.overflow) { try model.pin(at: .max, length: 4096, writable: false) }
    #expect(throws: Errno.noSuchFileOrDirectory) { try model.unpin(7) }
    #expect(try model.dmaRead(at: 0x10_0FFF, count: 1) == [0])
    _ = mapping
  }

  @Test("a pin holds the page until unpinned; an unmap of a pinned page tells the device (didUnmap) and drops the pin; a replace tells it everything went; a close calls didClose and frees the IOAS")
  func pinsAndUnmaps() throws {
    let (backend, model, device, iommufd) = try machine()
    let ioas = try iommufd.allocateIOAS()
    _ = try device.attach(to: ioas)
    let buffer = try DMABuffer(length: 8192, backend: backend)
    var mapping: DMAMapping? = try ioas.map(buffer, at: .fixed(0x10_0000))
    #expect(try command(device, 2, iova: 0x10_0000) == nil)
    #expect(try command(device, 2, iova: 0x10_0800) == .invalidArgument)  // not page-aligned
    #expect(model.unmaps.isEmpty)
    try mapping?.unmap()
    mapping = nil
    #expect(model.unmaps.count == 1 && model.unmaps.first?.0 == 0x10_0000 && model.unmaps.first?.1 == 8192)
    #expect(try command(device, 3, iova: 0) == .noSuchFileOrDirectory)  // the unmap took the pin
    let other = try iommufd.allocateIOAS()
    _ = try device.attach(to: other)
    #expect(model.unmaps.last.map { $0.0 == 0 && $0.1 == .max } == true)
    #expect(errno { try other.destroy() } == .resourceBusy)
    try device.close()
    #expect(model.closes == 1)
    try other.destroy()
    try ioas.destroy()
  }
}

import Synchronization
