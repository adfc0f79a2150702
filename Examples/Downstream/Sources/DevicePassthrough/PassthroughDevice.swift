import BasicContainers
import Iommufd
import SystemPackage

/// A device handed to a guest: bound to its own iommufd, attached to an IOAS, with each
/// bank of guest RAM mapped at its guest-physical address, so the device's DMA reaches
/// guest RAM and nothing else.
public final class PassthroughDevice {
  /// One bank of guest RAM.
  public struct Bank {
    /// Where the guest sees it.
    public var guestPhysicalAddress: UInt64
    /// Its size in bytes, a multiple of the page size.
    public var length: Int

    /// A bank of `length` bytes at `guestPhysicalAddress`.
    public init(at guestPhysicalAddress: UInt64, length: Int) {
      self.guestPhysicalAddress = guestPhysicalAddress
      self.length = length
    }
  }

  /// The device.
  public let device: VFIODevice
  /// The address space its DMA goes through.
  public let addressSpace: IOAS
  /// The guest RAM, one buffer per bank, in the order given.
  public let memory: [DMABuffer]
  /// The banks' mappings (noncopyable, so in a `UniqueArray`).
  private var mappings: UniqueArray<DMAMapping>

  /// Opens the VFIO cdev at `path`, binds it to a new iommufd context, attaches it and maps
  /// `banks` of fresh guest RAM.
  public init(cdev path: FilePath, banks: [Bank], backend: Backend = .kernel) throws(IommufdError) {
    let iommufd = try IOMMUFD.open(backend: backend)
    addressSpace = try iommufd.allocateIOAS()
    device = try VFIODevice.open(path, backend: backend)
    _ = try device.bind(to: iommufd)
    _ = try device.attach(to: addressSpace)
    var memory: [DMABuffer] = []
    var mappings = UniqueArray<DMAMapping>(minimumCapacity: banks.count)
    for bank in banks {
      let buffer = try DMABuffer(length: bank.length, backend: backend)
      mappings.append(try addressSpace.map(buffer, at: .fixed(bank.guestPhysicalAddress), access: .readWrite))
      memory.append(buffer)
    }
    self.memory = memory
    self.mappings = mappings
  }

  /// The vendor and device ids from the device's config space.
  public func identity() throws(IommufdError) -> (vendor: UInt16, device: UInt16) {
    let config = try device.regionInfo(VFIOPCIRegion.config)
    return (try device.read(UInt16.self, region: config, at: 0), try device.read(UInt16.self, region: config, at: 2))
  }

  /// Unmaps guest RAM and detaches the device (a hot-unplug).
  public func unplug() throws(IommufdError) {
    for index in mappings.indices { try mappings[index].unmap() }
    try device.detach()
  }
}
