import Foundation
import Iommufd
import IommufdEdu
import SystemPackage
import Testing

/// The legacy VFIO path (container + group) and iommufd's VFIO compatibility container, on
/// the real kernel with the edu device named in `IOMMUFD_TEST_DEVICE`. Runs apart from the
/// cdev tests (the lab runs it on its own), as a group cannot be opened while its device is
/// bound through the cdev (BIND-4).
@Suite("legacy VFIO on the real kernel", .serialized)
struct LegacyTests {
  static let edu: (address: PCIAddress, group: Int)? = {
    guard FileManager.default.fileExists(atPath: "/dev/vfio/vfio"),
      let address = ProcessInfo.processInfo.environment["IOMMUFD_TEST_DEVICE"].flatMap(PCIAddress.init),
      let entry = try? VFIODiscovery().device(at: address), entry.vendorID == 0x1234, entry.deviceID == 0x11e8,
      let group = entry.iommuGroup
    else { return nil }
    return (address, group)
  }()

  /// DMA RAM → device → RAM through `space`, which maps 0x100000 (source) and 0x200000.
  static func roundTrip(_ device: VFIODevice, _ source: DMABuffer, _ target: DMABuffer) throws -> Bool {
    for index in 0..<4096 { source.bytes[index] = UInt8(truncatingIfNeeded: index * 13 + 5) }
    let edu = try EduDriver(device: device)
    try edu.enableBusMaster()
    try edu.copyToDevice(from: 0x10_0000, count: 2048)
    try edu.copyFromDevice(to: 0x20_0000, count: 2048)
    return Array(target.bytes.prefix(2048)) == Array(source.bytes.prefix(2048))
  }

  @Test(
    "container and group: API 0 and type1v2, a viable group, ranges without the MSI window, edu DMA through container mappings, unmap sizes",
    .enabled(if: edu != nil, "needs /dev/vfio/vfio and IOMMUFD_TEST_DEVICE naming an edu device (the lab)"))
  func containerAndGroup() throws {
    let (address, number) = Self.edu!
    let container = try VFIOContainer.open()
    #expect(try container.supports(extension: VFIOContainer.IOMMUType.type1v2.rawValue))
    let group = try VFIOGroup.open(number)
    #expect(try group.status() == (viable: true, containerSet: false))
    try group.setContainer(container)
    #expect(try group.status() == (viable: true, containerSet: true))
    try container.setIOMMU(.type1v2)
    let ranges = try container.iovaRanges()
    #expect(ranges.ranges == [IOVARange(start: 0, last: 0xFEDF_FFFF), IOVARange(start: 0xFEF0_0000, last: 0x7F_FFFF_FFFF)])
    #expect(ranges.alignment == 4096)
    let device = try group.openDevice(address)
    #expect(try device.info().regionCount == 9)
    let source = try DMABuffer(length: 4096)
    let target = try DMABuffer(length: 4096)
    var sourceMapping = try container.map(source, at: .fixed(0x10_0000), access: .readable)
    let targetMapping = try container.map(target, at: .fixed(0x20_0000), access: .writable)
    #expect(try Self.roundTrip(device, source, target))
    #expect(errno { _ = try container.map(source, at: .anywhere) } == .invalidArgument)
    #expect(try container.unmap(iova: 0x30_0000, length: 0x1000) == 0)
    try sourceMapping.unmap()
    #expect(try container.unmapAll() == 0x1000)
    _ = targetMapping
    try device.close()
  }

  @Test(
    "sessions: the detected route is the cdev; a forced legacy route opens the group with a type1v2 container",
    .enabled(if: edu != nil, "needs /dev/vfio/vfio and IOMMUFD_TEST_DEVICE naming an edu device (the lab)"))
  func sessions() throws {
    let (address, number) = Self.edu!
    do {
      let session = try VFIOSession.open(address)
      #expect(session.access?.route == .cdev("/dev/vfio/devices/vfio0"))
      #expect(session.deviceID != nil && session.group == nil)
      #expect(try session.iovaRanges().ranges.count == 2)
    }
    let legacy = try VFIOSession.open(address, prefer: .legacy)
    #expect(legacy.access?.route == .group(FilePath("/dev/vfio/\(number)"), number: number))
    #expect(legacy.access?.reasons.last == "the legacy route was asked for")
    #expect(legacy.group?.number == number && legacy.iommufd == nil)
    let source = try DMABuffer(length: 4096)
    let target = try DMABuffer(length: 4096)
    let sourceMapping = try legacy.space.map(source, at: .fixed(0x10_0000), access: .readable)
    let targetMapping = try legacy.space.map(target, at: .fixed(0x20_0000), access: .writable)
    #expect(try Self.roundTrip(legacy.device, source, target))
    _ = (sourceMapping.iova, targetMapping.iova)
  }

  @Test(
    "iommufd's VFIO compatibility: a group set to /dev/iommu maps through VFIO_IOMMU_MAP_DMA into the compat IOAS",
    .enabled(if: edu != nil, "needs /dev/vfio/vfio and IOMMUFD_TEST_DEVICE naming an edu device (the lab)"))
  func compatibility() throws {
    let (address, number) = Self.edu!
    let iommufd = try IOMMUFD.open()
    let ioas = try iommufd.allocateIOAS()
    let compat = VFIOContainer(adopting: FileDescriptor(rawValue: dup(iommufd.fileDescriptor.rawValue)))
    #expect(errno { try compat.setIOMMU(.type1v2) } == .operationNotSupportedByDevice)  // no compat IOAS yet
    try iommufd.setCompatibilityIOAS(ioas)
    let group = try VFIOGroup.open(number)
    try group.setContainer(compat)
    try compat.setIOMMU(.type1v2)
    let device = try group.openDevice(address)
    let source = try DMABuffer(length: 4096)
    let target = try DMABuffer(length: 4096)
    var sourceMapping = try compat.map(source, at: .fixed(0x10_0000), access: .readable)
    var targetMapping = try compat.map(target, at: .fixed(0x20_0000), access: .writable)
    #expect(try Self.roundTrip(device, source, target))
    // The compat mappings are areas of the IOAS.
    #expect(errno { try ioas.unsafeMap(address: UnsafeRawPointer(source.bytes.baseAddress!), length: 4096, at: .fixed(0x10_0000)) } == .fileExists)
    try device.close()
    try sourceMapping.unmap()
    try targetMapping.unmap()
  }

  /// The lab's edu pair behind a PCIe root port (`IOMMUFD_LAB_EDU_PAIR`), and their group.
  static let pair: (addresses: [PCIAddress], group: Int)? = {
    guard edu != nil else { return nil }
    let addresses = (ProcessInfo.processInfo.environment["IOMMUFD_LAB_EDU_PAIR"] ?? "").split(separator: " ").compactMap { PCIAddress(String($0)) }
    guard addresses.count == 2, let group = try? VFIODiscovery().device(at: addresses[0]).iommuGroup else { return nil }
    return (addresses, group)
  }()

  @Test(
    "hot reset, group form: the pair's one group lists both functions by group number; a group that is not theirs is EINVAL with both in the way; their group resets them: edu's pending INTx is gone from the status register, its interrupt status stays",
    .enabled(if: edu != nil, "needs /dev/vfio/vfio and IOMMUFD_TEST_DEVICE naming an edu device (the lab)"))
  func hotResetGroupForm() throws {
    let (pair, number) = try #require(Self.pair, "the lab names the pair in IOMMUFD_LAB_EDU_PAIR")
    let container = try VFIOContainer.open()
    let group = try VFIOGroup.open(number)
    defer { try? group.close() }
    try group.setContainer(container)
    try container.setIOMMU(.type1v2)
    let device = try group.openDevice(pair[0])
    defer { try? device.close() }
    #expect(try device.hotResetInfo() == VFIOHotResetInfo(
      devices: pair.map { .init(address: $0, owner: .group(number)) }, usesDeviceIDs: false, allOwned: false))
    let rootGroup = try VFIOGroup.open(try #require(Self.edu).group)
    defer { try? rootGroup.close() }
    let refused = try #require(throws: IommufdError.self) { try device.hotReset(groups: [rootGroup]) }
    #expect(refused.errno == .invalidArgument)
    #expect(refused.objects.filter { $0.role == "in the way" }.map(\.value) == pair.map(\.description))
    let config = try PCIConfigSpace(device)
    try config.updateCommand { $0.insert(.memorySpace) }
    let edu = try EduDriver(device: device)
    try edu.acknowledgeInterrupt(UInt32.max)
    try edu.raiseInterrupt(1)
    #expect(try config.status().contains(.interrupt))
    try device.hotReset(groups: [group])
    #expect(try !config.status().contains(.interrupt))
    #expect(try edu.interruptStatus() == 1)
    try edu.acknowledgeInterrupt(1)
  }
}
