import SystemPackage

/// A device opened on the route its host offers, with the address space it does DMA
/// through: VFIO cdev + iommufd (the device bound and attached to a fresh IOAS), or a legacy
/// group + container (type1v2). Keeps every handle of the route alive; thread-safe.
public final class VFIOSession: Sendable {
  /// The route to force instead of the detected one.
  public enum RoutePreference: Sendable {
    /// The VFIO cdev with iommufd.
    case iommufd
    /// The legacy group and container.
    case legacy
  }

  /// The device, ready for regions, IRQs and DMA.
  public let device: VFIODevice
  /// Where the device's DMA goes: an ``IOAS`` or a ``VFIOContainer``.
  public let space: any DMAAddressSpace
  /// What discovery found, and the route taken; `nil` when opened by cdev path.
  public let access: VFIOAccess?
  /// The iommufd context, on the iommufd route.
  public let iommufd: IOMMUFD?
  /// The device's object id in ``iommufd``, on the iommufd route.
  public let deviceID: ObjectID?
  /// The legacy group, on the legacy route.
  public let group: VFIOGroup?

  init(device: VFIODevice, space: any DMAAddressSpace, access: VFIOAccess?, iommufd: IOMMUFD?, deviceID: ObjectID?, group: VFIOGroup?) {
    self.device = device
    self.space = space
    self.access = access
    self.iommufd = iommufd
    self.deviceID = deviceID
    self.group = group
  }

  /// Opens the device at `address`: the cdev route when usable, else the legacy route, or
  /// the one `preference` forces. The choice and its reasons are logged at info level.
  public static func open(
    _ address: PCIAddress, discovery: VFIODiscovery = VFIODiscovery(), prefer preference: RoutePreference? = nil,
    backend: Backend = .kernel
  ) throws(IommufdError) -> VFIOSession {
    var access = discovery.access(for: address)
    if let preference, let group = try? discovery.device(at: address).iommuGroup {
      switch preference {
      case .iommufd:
        if case .group = access.route {
          throw IommufdError(.discovery, .operationNotSupportedByDevice, objects: [.init("device", address.description)],
            detail: "the iommufd route was asked for, but: " + access.reasons.joined(separator: "; "))
        }
      case .legacy:
        access.route = .group(discovery.deviceRoot.appending("vfio/\(group)"), number: group)
        access.reasons.append("the legacy route was asked for")
      }
    }
    backend.logger.info("\(access)")
    switch access.route {
    case .cdev(let path):
      return try openCdev(path, access: access, iommufdPath: discovery.deviceRoot.appending("iommu"), backend: backend)
    case .group(_, let number):
      let container = try VFIOContainer.open(discovery.deviceRoot.appending("vfio/vfio"), backend: backend)
      let group = try VFIOGroup.open(number, deviceRoot: discovery.deviceRoot, backend: backend)
      try group.setContainer(container)
      try container.setIOMMU(.type1v2)
      let device = try group.openDevice(address)
      return VFIOSession(device: device, space: container, access: access, iommufd: nil, deviceID: nil, group: group)
    case .none:
      throw IommufdError(.discovery, .operationNotSupportedByDevice, objects: [.init("device", address.description)],
        detail: "\(address) is not usable: " + access.reasons.joined(separator: "; "))
    }
  }

  /// Opens the device cdev at `path` on the iommufd route: binds it to a new iommufd
  /// context (`iommufdPath`) and attaches it to a fresh IOAS.
  public static func openCdev(
    _ path: FilePath, access: VFIOAccess? = nil, iommufdPath: FilePath = IOMMUFD.defaultPath, backend: Backend = .kernel
  ) throws(IommufdError) -> VFIOSession {
    let iommufd = try IOMMUFD.open(iommufdPath, backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let device = try VFIODevice.open(path, backend: backend)
    let deviceID = try device.bind(to: iommufd)
    try device.attach(to: ioas)
    return VFIOSession(device: device, space: ioas, access: access, iommufd: iommufd, deviceID: deviceID, group: nil)
  }

  /// The IOVA ranges the device can use.
  public func iovaRanges() throws(IommufdError) -> IOVARanges { try space.iovaRanges() }
}
