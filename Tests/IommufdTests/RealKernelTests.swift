import Foundation
import Iommufd
import SystemPackage
import Testing

/// The kernel backend against a real `/dev/iommu`, and against a real VFIO device when one
/// is named in `IOMMUFD_TEST_DEVICE` (a PCI address such as `0000:00:03.0`). No device is
/// ever touched unless it is named. The lab runs these in a VM with an emulated VT-d and
/// QEMU's edu device; elsewhere they are skipped with the reason.
@Suite("real kernel")
struct RealKernelTests {
  static let hasIOMMUFD = FileManager.default.fileExists(atPath: "/dev/iommu")
  static let namedDevice: PCIAddress? = ProcessInfo.processInfo.environment["IOMMUFD_TEST_DEVICE"].flatMap(PCIAddress.init)

  @Test(
    "a fresh IOAS reports the whole space [0, U64_MAX] with alignment 1 (RANGES-2, RANGES-4)",
    .enabled(if: hasIOMMUFD, "no /dev/iommu on this host: the running kernel lacks CONFIG_IOMMUFD"))
  func freshIOAS() throws {
    let iommufd = try IOMMUFD.open()
    let ioas = try iommufd.allocateIOAS()
    #expect(try ioas.iovaRanges() == IOVARanges(ranges: [IOVARange(start: 0, last: .max)], alignment: 1))
    #expect(try ioas.hugePagesEnabled())
  }

  @Test(
    "map without a domain is lazy, anywhere starts at 0x1000, overlap is EEXIST, unmap returns the bytes (MAP-7, MAP-8, UNMAP-7)",
    .enabled(if: hasIOMMUFD, "no /dev/iommu on this host: the running kernel lacks CONFIG_IOMMUFD"))
  func mapUnmap() throws {
    let iommufd = try IOMMUFD.open()
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 0x1000)
    let mapping = try ioas.map(buffer)
    #expect(mapping.iova == 0x1000)  // first fit above the first page (IOAS-6)
    let error = try #require(throws: IommufdError.self) { _ = try ioas.map(buffer, at: .fixed(mapping.iova)) }
    #expect(error.errno == .fileExists)
    #expect(try ioas.unmap(iova: mapping.iova, length: 0x1000) == 0x1000)
    let again = try #require(throws: IommufdError.self) { try ioas.unmap(iova: mapping.iova, length: 0x1000) }
    #expect(again.errno == .noSuchFileOrDirectory)
    #expect(try ioas.unmapAll() == 0)
  }

  @Test(
    "destroying an IOAS twice through raw ids gives ENOENT the second time (DESTROY-1)",
    .enabled(if: hasIOMMUFD, "no /dev/iommu on this host: the running kernel lacks CONFIG_IOMMUFD"))
  func destroyTwice() throws {
    let iommufd = try IOMMUFD.open()
    let ioas = try iommufd.allocateIOAS()
    try ioas.destroy()
    let error = try #require(throws: IommufdError.self) { try iommufd.destroy(ioas.id) }
    #expect(error.errno == .noSuchFileOrDirectory)
    #expect(error.operation == .destroy)
  }

  @Test(
    "the named device binds, attaches, sees the IOVA ranges of its IOMMU, answers config reads and detaches",
    .enabled(if: hasIOMMUFD && namedDevice != nil, "set IOMMUFD_TEST_DEVICE to the PCI address of a device bound to vfio-pci"))
  func deviceLifecycle() throws {
    let address = Self.namedDevice!
    let entry = try VFIODiscovery().device(at: address)
    let iommufd = try IOMMUFD.open()
    let ioas = try iommufd.allocateIOAS()
    let device = try VFIODevice.open(pciAddress: address)
    let deviceID = try device.bind(to: iommufd)
    #expect(deviceID.rawValue > 0)
    let pageTable = try device.attach(to: ioas)
    #expect(pageTable != ioas.id && pageTable != deviceID)
    let ranges = try ioas.iovaRanges()
    #expect(!ranges.ranges.contains { $0.contains(0xFEE0_0000) }, "the x86 MSI window is reserved")
    let info = try device.info()
    #expect(info.flags.contains(.pci))
    let config = try device.regionInfo(VFIOPCIRegion.config)
    #expect(try device.read(UInt16.self, region: config, at: 0) == entry.vendorID)
    #expect(try device.read(UInt16.self, region: config, at: 2) == entry.deviceID)
    try device.detach()
    try device.detach()  // DET-3: detaching a detached device succeeds
    try device.close()
    try ioas.destroy()
  }
}
