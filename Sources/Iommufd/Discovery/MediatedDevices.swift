import SystemPackage

/// A type of mediated device a parent device offers (`mdev_supported_types/<id>`), such as
/// the mtty sample's `mtty-2`.
public struct MediatedDeviceType: Hashable, Sendable {
  /// The type's directory name, `<driver>-<name>` (`mtty-2`): what ``VFIODiscovery/createMediatedDevice(ofType:parent:id:)`` takes.
  public var id: String
  /// The parent device's name (`/sys/class/mdev_bus/<parent>`).
  public var parent: String
  /// The human-readable name (`name`), if the driver gives one.
  public var name: String?
  /// The description (`description`), if the driver gives one.
  public var description: String?
  /// How many more devices of this type can be made (`available_instances`).
  public var availableInstances: Int?
  /// The VFIO device API the devices offer (`device_api`, such as `vfio-pci`).
  public var deviceAPI: String?

  /// Creates the value.
  public init(id: String, parent: String, name: String?, description: String?, availableInstances: Int?, deviceAPI: String?) {
    self.id = id
    self.parent = parent
    self.name = name
    self.description = description
    self.availableInstances = availableInstances
    self.deviceAPI = deviceAPI
  }
}

/// A mediated device as sysfs describes it (`/sys/bus/mdev/devices/<uuid>`).
public struct MediatedDeviceEntry: Hashable, Sendable {
  /// Its name.
  public var id: MediatedDeviceID
  /// Its type (`mdev_type` link), such as `mtty-2`.
  public var type: String?
  /// Its parent device's name.
  public var parent: String?
  /// The bound driver's name (`driver` link).
  public var driver: String?
  /// The IOMMU group VFIO made for it (`iommu_group` link): an emulated device's own group,
  /// which no IOMMU translates for.
  public var iommuGroup: Int?
  /// Its VFIO device cdev (`vfio-dev/vfioN`).
  public var cdevPath: FilePath?

  /// Creates the value.
  public init(id: MediatedDeviceID, type: String?, parent: String?, driver: String?, iommuGroup: Int?, cdevPath: FilePath?) {
    self.id = id
    self.type = type
    self.parent = parent
    self.driver = driver
    self.iommuGroup = iommuGroup
    self.cdevPath = cdevPath
  }
}

extension VFIODiscovery {
  /// Every type of mediated device the parents offer (`/sys/class/mdev_bus/*/mdev_supported_types`),
  /// by parent and type; none when no mdev parent is registered.
  public func mediatedDeviceTypes() throws(IommufdError) -> [MediatedDeviceType] {
    let bus = sysfsRoot.appending("class/mdev_bus")
    guard let parents = files.entries(of: bus) else { return [] }
    return parents.sorted().flatMap { parent -> [MediatedDeviceType] in
      let types = bus.appending(parent).appending("mdev_supported_types")
      return (files.entries(of: types) ?? []).sorted().map { id in
        let directory = types.appending(id)
        func text(_ name: String) -> String? { files.text(of: directory.appending(name)).map { String($0.trimmingWhitespace) } }
        return MediatedDeviceType(
          id: id, parent: parent, name: text("name"), description: text("description"),
          availableInstances: text("available_instances").flatMap { Int(digitsOnly: $0) }, deviceAPI: text("device_api"))
      }
    }
  }

  /// Every mediated device, by name; none when there is no mdev bus.
  public func mediatedDevices() throws(IommufdError) -> [MediatedDeviceEntry] {
    guard let names = files.entries(of: sysfsRoot.appending("bus/mdev/devices")) else { return [] }
    return names.compactMap(MediatedDeviceID.init).sorted().map(entry(for:))
  }

  /// The sysfs description of mediated device `id`.
  public func mediatedDevice(_ id: MediatedDeviceID) throws(IommufdError) -> MediatedDeviceEntry {
    let directory = mediatedDirectory(id)
    guard files.exists(directory) else {
      throw IommufdError(.discovery, .noSuchFileOrDirectory, objects: [.path(directory.string)], detail: "no mediated device \(id)")
    }
    return entry(for: id)
  }

  /// The cdev node of mediated device `id`.
  public func cdevPath(for id: MediatedDeviceID) throws(IommufdError) -> FilePath {
    let entry = try mediatedDevice(id)
    if let path = entry.cdevPath { return path }
    let reason = entry.driver == nil ? "it is bound to no driver" : "the kernel lacks CONFIG_VFIO_DEVICE_CDEV or CONFIG_IOMMUFD"
    throw IommufdError(
      .discovery, .operationNotSupportedByDevice, objects: [.path(mediatedDirectory(id).string)],
      detail: "mediated device \(id) has no VFIO cdev: \(reason)")
  }

  /// Creates a mediated device of type `type` named `id` by writing `id` to the type's
  /// `create` (root only), and returns it. With several parents offering the type, name
  /// one as `parent`.
  ///
  /// Refused before the kernel is asked: an unknown type (`ENOENT`), a type several
  /// parents offer with no `parent` named (`EINVAL`). The kernel's answers, explained:
  /// `EEXIST` when a mediated device of that name exists, `ENOSPC` (or `EUSERS`) when no
  /// instance is left, `EACCES` without permission to write the attribute.
  @discardableResult
  public func createMediatedDevice(ofType type: String, parent: String? = nil, id: MediatedDeviceID = .random()) throws(IommufdError) -> MediatedDeviceEntry {
    let types = try mediatedDeviceTypes()
    let offered = types.filter { $0.id == type && (parent == nil || $0.parent == parent) }
    guard let chosen = offered.first else {
      let known = types.map { "\($0.parent)/\($0.id)" }
      throw IommufdError(
        .mediatedDeviceCreate, .noSuchFileOrDirectory, objects: [.init("type", type)],
        detail: "no mediated device type \(type.debugDescription)\(parent.map { " on parent \($0.debugDescription)" } ?? "")"
          + (known.isEmpty ? " (no mdev parent is registered)" : " (types: \(known.joined(separator: ", ")))"))
    }
    guard offered.count == 1 else {
      throw IommufdError(
        .mediatedDeviceCreate, .invalidArgument, objects: [.init("type", type)],
        detail: "type \(type.debugDescription) is offered by parents \(offered.map(\.parent).joined(separator: ", ")): name one")
    }
    let path = sysfsRoot.appending("class/mdev_bus").appending(chosen.parent).appending("mdev_supported_types").appending(type).appending("create")
    let objects: [IommufdError.InvolvedObject] = [.path(path.string), .init("mdev", id.description)]
    do throws(Errno) {
      try files.write(id.description, to: path)
    } catch {
      let detail: String?
      switch error {
      case .fileExists: detail = "a mediated device \(id) exists already"
      case .noSpace, .tooManyUsers: detail = "no instance of \(type) is left (available_instances 0)"
      case .permissionDenied, .notPermitted: detail = "cannot write \(path): creating a mediated device needs root"
      default: detail = nil
      }
      throw IommufdError(.mediatedDeviceCreate, error, objects: objects, detail: detail)
    }
    return try mediatedDevice(id)
  }

  /// Removes mediated device `id` by writing `1` to its `remove` (root only). The kernel
  /// waits, unkillably, until every descriptor of the device is closed, so a remove while
  /// this process holds the device's cdev or group node open would never return: that is
  /// refused with `EBUSY` (another process's descriptors are not seen: the remove then
  /// waits for them). `ENOENT` for no such device. Both before the kernel is asked.
  public func removeMediatedDevice(_ id: MediatedDeviceID) throws(IommufdError) {
    let directory = mediatedDirectory(id)
    guard files.exists(directory) else {
      throw IommufdError(.mediatedDeviceRemove, .noSuchFileOrDirectory, objects: [.path(directory.string)], detail: "no mediated device \(id)")
    }
    let entry = self.entry(for: id)
    let nodes = Set([entry.cdevPath, entry.iommuGroup.map { deviceRoot.appending("vfio/\($0)") }].compactMap { $0?.string })
    let descriptors = FilePath("/proc/self/fd")
    for name in files.entries(of: descriptors) ?? [] {
      guard let target = files.linkTarget(descriptors.appending(name)), nodes.contains(target) else { continue }
      throw IommufdError(
        .mediatedDeviceRemove, .resourceBusy, objects: [.init("mdev", id.description), .init("fd", name)],
        detail: "this process holds \(target) open (descriptor \(name)): the kernel would wait for it to close, forever; close the device first")
    }
    let path = directory.appending("remove")
    do throws(Errno) {
      try files.write("1", to: path)
    } catch {
      let detail = error == .permissionDenied || error == .notPermitted ? "cannot write \(path): removing a mediated device needs root" : nil
      throw IommufdError(.mediatedDeviceRemove, error, objects: [.path(path.string), .init("mdev", id.description)], detail: detail)
    }
  }

  /// How mediated device `id` can be reached, with every finding on the way: its VFIO cdev
  /// with iommufd, else the legacy group VFIO made for it with a container, else nothing,
  /// and why.
  public func access(for id: MediatedDeviceID) -> VFIOAccess {
    let entry: MediatedDeviceEntry
    do {
      entry = try mediatedDevice(id)
    } catch {
      return VFIOAccess(device: .mediated(id), route: .none, reasons: [error.detail ?? "\(error)"])
    }
    var reasons = [
      "a mediated device of type \(entry.type ?? "unknown") on parent \(entry.parent ?? "unknown")"
        + ": emulated, its driver reaches memory through an iommufd access or the container, not an IOMMU"
    ]
    var denied: [FilePath] = []
    func usable(_ path: FilePath) -> Bool { self.usable(path, &reasons, &denied) }
    guard let driver = entry.driver else {
      reasons.append("bound to no driver")
      return VFIOAccess(device: .mediated(id), route: .none, reasons: reasons)
    }
    reasons.append("bound to \(driver)")
    if let cdev = entry.cdevPath {
      if usable(deviceRoot.appending("iommu")) && usable(cdev) {
        reasons.append("iommufd and the VFIO cdev \(cdev) are usable")
        return VFIOAccess(device: .mediated(id), route: .cdev(cdev), reasons: reasons, permissionDenied: denied)
      }
    } else {
      reasons.append("no vfio-dev node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV or CONFIG_IOMMUFD")
    }
    if let group = entry.iommuGroup {
      let node = deviceRoot.appending("vfio/\(group)")
      if usable(node) && usable(deviceRoot.appending("vfio/vfio")) {
        reasons.append("the legacy group \(node) and container are usable")
        return VFIOAccess(device: .mediated(id), route: .group(node, number: group), reasons: reasons, permissionDenied: denied)
      }
    } else {
      reasons.append("in no IOMMU group: the kernel lacks CONFIG_VFIO_GROUP")
    }
    return VFIOAccess(device: .mediated(id), route: .none, reasons: reasons, permissionDenied: denied)
  }

  private func mediatedDirectory(_ id: MediatedDeviceID) -> FilePath {
    sysfsRoot.appending("bus/mdev/devices").appending(id.description)
  }

  private func entry(for id: MediatedDeviceID) -> MediatedDeviceEntry {
    let directory = mediatedDirectory(id)
    let cdev = files.entries(of: directory.appending("vfio-dev"))?.filter { $0.hasPrefix("vfio") }.sorted().first
    // The device's directory is its parent's child: .../<parent>/<uuid>.
    let parent = files.linkTarget(directory).flatMap { target -> String? in
      let components = FilePath(target).components.map(\.string)
      return components.count >= 2 ? components[components.count - 2] : nil
    }
    return MediatedDeviceEntry(
      id: id, type: linkName(directory.appending("mdev_type")), parent: parent, driver: linkName(directory.appending("driver")),
      iommuGroup: linkName(directory.appending("iommu_group")).flatMap { Int(digitsOnly: $0) },
      cdevPath: cdev.map { deviceRoot.appending("vfio/devices").appending($0) })
  }
}
