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
  /// the one `preference` forces. The choice and its reasons are logged at debug level.
  /// `discovery` reads `backend`'s machine by default; one given must read the same machine
  /// (its `backend` the same), or the device found is not the one opened.
  ///
  /// Errors keep the kernel's errno; their detail says when it means the device is in use
  /// by another process (`EBUSY`, or `EINVAL` from a second bind) or that this process may
  /// not open a node (`EACCES`, `EPERM`), and what to do about it.
  public static func open(
    _ address: PCIAddress, discovery: VFIODiscovery? = nil, prefer preference: RoutePreference? = nil,
    backend: Backend = .kernel
  ) throws(IommufdError) -> VFIOSession {
    let discovery = discovery ?? VFIODiscovery(backend: backend)
    var access = discovery.access(for: address)
    let entry = try? discovery.device(at: address)
    let name = "device \(address)"
    if let preference, let group = entry?.iommuGroup {
      switch preference {
      case .iommufd:
        if case .group = access.route {
          if let denied = permissionError(address, access, entry, discovery) { throw denied }
          throw IommufdError(.discovery, .operationNotSupportedByDevice, objects: [.init("device", address.description)],
            detail: "the iommufd route was asked for, but: " + access.reasons.joined(separator: "; "))
        }
      case .legacy:
        access.route = .group(discovery.deviceRoot.appending("vfio/\(group)"), number: group)
        access.reasons.append("the legacy route was asked for")
      }
    }
    backend.logger.debug("\(access)")
    switch access.route {
    case .cdev(let path):
      return try openCdev(path, access: access, iommufdPath: discovery.deviceRoot.appending("iommu"), backend: backend)
    case .group(let node, let number):
      return try openLegacy(group: number, node: node, access: access, discovery: discovery, backend: backend, name: name) {
        (group) throws(IommufdError) in try group.openDevice(address)
      }
    case .none:
      if let denied = permissionError(address, access, entry, discovery) { throw denied }
      throw IommufdError(.discovery, .operationNotSupportedByDevice, objects: [.init("device", address.description)],
        detail: "no route: " + access.reasons.joined(separator: "; "))
    }
  }

  /// Opens mediated device `id` (an emulated VFIO device): the cdev route when usable, else
  /// the legacy route through the group VFIO made for it, or the one `preference` forces.
  /// Errors are explained as for ``open(_:discovery:prefer:backend:)``.
  public static func open(
    mediatedDevice id: MediatedDeviceID, discovery: VFIODiscovery? = nil, prefer preference: RoutePreference? = nil,
    backend: Backend = .kernel
  ) throws(IommufdError) -> VFIOSession {
    let discovery = discovery ?? VFIODiscovery(backend: backend)
    var access = discovery.access(for: id)
    let group = (try? discovery.mediatedDevice(id))?.iommuGroup
    if preference == .legacy, let group {
      access.route = .group(discovery.deviceRoot.appending("vfio/\(group)"), number: group)
      access.reasons.append("the legacy route was asked for")
    } else if preference == .iommufd, case .group = access.route {
      if let denied = permissionError(.mediated(id), access) { throw denied }
      throw IommufdError(.discovery, .operationNotSupportedByDevice, objects: [.init("mdev", id.description)],
        detail: "the iommufd route was asked for, but: " + access.reasons.joined(separator: "; "))
    }
    backend.logger.debug("\(access)")
    switch access.route {
    case .cdev(let path):
      return try openCdev(path, access: access, iommufdPath: discovery.deviceRoot.appending("iommu"), backend: backend)
    case .group(let node, let number):
      return try openLegacy(group: number, node: node, access: access, discovery: discovery, backend: backend, name: "mdev \(id)") {
        (group) throws(IommufdError) in try group.openDevice(id)
      }
    case .none:
      if let denied = permissionError(.mediated(id), access) { throw denied }
      throw IommufdError(.discovery, .operationNotSupportedByDevice, objects: [.init("mdev", id.description)],
        detail: "no route: " + access.reasons.joined(separator: "; "))
    }
  }

  /// The legacy route: group `number` (its node `node`) set to a new type1v2 container, and
  /// the device `openDevice` opens from it; errors explained for `name`.
  private static func openLegacy(
    group number: Int, node: FilePath, access: VFIOAccess, discovery: VFIODiscovery, backend: Backend, name: String,
    openDevice: (VFIOGroup) throws(IommufdError) -> VFIODevice
  ) throws(IommufdError) -> VFIOSession {
    let container = discovery.deviceRoot.appending("vfio/vfio")
    do throws(IommufdError) {
      let opened = try VFIOContainer.open(container, backend: backend)
      let group = try VFIOGroup.open(number, deviceRoot: discovery.deviceRoot, backend: backend)
      try group.setContainer(opened)
      try opened.setIOMMU(.type1v2)
      let device = try openDevice(group)
      return VFIOSession(device: device, space: opened, access: access, iommufd: nil, deviceID: nil, group: group)
    } catch {
      throw explained(error, name, nodes: [container, node])
    }
  }

  /// `EACCES`, naming the nodes, when discovery found nodes this process may not open.
  private static func permissionError(_ device: VFIODeviceName, _ access: VFIOAccess) -> IommufdError? {
    guard !access.permissionDenied.isEmpty else { return nil }
    let denied = access.permissionDenied.map(\.string).joined(separator: ", ")
    return IommufdError(.open, .permissionDenied, objects: access.permissionDenied.map { .path($0.string) },
      detail: "\(device): no read-write permission on \(denied) (EACCES): run as root or grant this user read-write access to them")
  }

  /// Opens the device cdev at `path` on the iommufd route: binds it to a new iommufd
  /// context (`iommufdPath`) and attaches it to a fresh IOAS.
  ///
  /// Errors are explained as for ``open(_:discovery:prefer:backend:)``.
  public static func openCdev(
    _ path: FilePath, access: VFIOAccess? = nil, iommufdPath: FilePath = IOMMUFD.defaultPath, backend: Backend = .kernel
  ) throws(IommufdError) -> VFIOSession {
    do throws(IommufdError) {
      let iommufd = try IOMMUFD.open(iommufdPath, backend: backend)
      let ioas = try iommufd.allocateIOAS()
      let device = try VFIODevice.open(path, backend: backend)
      let deviceID = try device.bind(to: iommufd)
      try device.attach(to: ioas)
      return VFIOSession(device: device, space: ioas, access: access, iommufd: iommufd, deviceID: deviceID, group: nil)
    } catch {
      throw explained(error, access.map { "device \($0.device)" } ?? "device \(path)", nodes: [iommufdPath, path])
    }
  }

  /// `error` with a detail saying what its errno means here, when the library has none yet:
  /// the device in use by another process, or no permission on one of `nodes`.
  static func explained(_ error: IommufdError, _ name: String, nodes: [FilePath]) -> IommufdError {
    guard error.detail == nil else { return error }
    var result = error
    let grant = "run as root or grant this user read-write access to " + nodes.map(\.string).joined(separator: " and ")
    switch (error.operation, error.errno) {
    case (.open, .resourceBusy), (.deviceBind, .resourceBusy):
      // Opening a group node another process holds, or binding a device whose group it holds.
      result.detail = "\(name) is in use (EBUSY): another process, e.g. a VM, has it open"
    case (.deviceBind, .invalidArgument):
      // The request is well formed and the descriptor fresh: the kernel refuses a device
      // already bound through another cdev descriptor (vfio_df_open) with EINVAL.
      result.detail = "\(name) is in use (EINVAL: it is already bound through another descriptor): another process, e.g. a VM, has it open"
    case (.open, .permissionDenied):
      result.detail = "no permission to open \(error.objects.first?.value ?? "it") (EACCES): \(grant)"
    case (.open, .notPermitted):
      result.detail = "not permitted to open \(error.objects.first?.value ?? "it") (EPERM): \(grant)"
    default:
      break
    }
    return result
  }

  /// `EACCES` when discovery found a node this process may not open; nil otherwise.
  private static func permissionError(
    _ address: PCIAddress, _ access: VFIOAccess, _ entry: PCIDeviceEntry?, _ discovery: VFIODiscovery
  ) -> IommufdError? {
    guard !access.permissionDenied.isEmpty else { return nil }
    let nodes: [FilePath]
    if let cdev = entry?.cdevPath {
      nodes = [discovery.deviceRoot.appending("iommu"), cdev]
    } else if let group = entry?.iommuGroup {
      nodes = [discovery.deviceRoot.appending("vfio/vfio"), discovery.deviceRoot.appending("vfio/\(group)")]
    } else {
      nodes = access.permissionDenied
    }
    let denied = access.permissionDenied.map(\.string).joined(separator: ", ")
    return IommufdError(.open, .permissionDenied, objects: access.permissionDenied.map { .path($0.string) },
      detail: "\(address): no read-write permission on \(denied) (EACCES): run as root or grant this user read-write access to "
        + nodes.map(\.string).joined(separator: " and "))
  }

  /// The IOVA ranges the device can use.
  public func iovaRanges() throws(IommufdError) -> IOVARanges { try space.iovaRanges() }
}
