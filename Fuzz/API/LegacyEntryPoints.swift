import Iommufd
import IommufdSimulator
import SystemPackage

/// The entry points of the legacy VFIO route (containers and groups), sessions, sysfs
/// discovery and driver binding (against a fake sysfs tree only).
func legacyEntryPoints() -> [EntryPoint] {
  [
    EntryPoint("VFIOContainer.open(_:backend:)", weight: 4) { f in
      let path = f.path(f.rng.bool() ? "/dev/vfio/vfio" : "/dev/iommu")
      f.call("path \(path.debugDescription)") {
        let container = try VFIOContainer.open(FilePath(path), backend: f.backend)
        f.pool.containers.append(Held(value: container, label: f.pool.label("container"), context: nil))
      }
      return true
    },
    EntryPoint("VFIOContainer.init(adopting:backend:)", weight: 4) { f in
      let fd = f.adoptableDescriptor()
      f.call("fd \(fd.rawValue)") {
        let container = VFIOContainer(adopting: fd, backend: f.backend)
        f.pool.containers.append(Held(value: container, label: f.pool.label("container"), context: nil))
      }
      return true
    },
    EntryPoint("VFIOContainer.close()", weight: 2) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      f.call(container.label) { try container.value.close() }
      return true
    },
    EntryPoint("VFIOContainer properties", weight: 1) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      f.call("\(container.label).fileDescriptor, isClosed, backend") {
        _ = (container.value.fileDescriptor, container.value.isClosed, container.value.backend.reason)
      }
      return true
    },
    EntryPoint("VFIOContainer.supports(extension:)", weight: 3) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      let value = f.hostile(40) ? f.rng.hostileInt() : f.rng.element([1, 3, 0, 2]) ?? 3
      f.call("\(container.label) extension \(value)") { _ = try container.value.supports(extension: value) }
      return true
    },
    EntryPoint("VFIOContainer.setIOMMU(_:)", weight: 3) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      let type: VFIOContainer.IOMMUType = f.rng.bool() ? .type1v2 : .type1
      f.call("\(container.label) \(type)") { try container.value.setIOMMU(type) }
      return true
    },
    EntryPoint("VFIOContainer.unsafeMap(address:length:at:access:)", weight: 5) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      let memory = f.userMemory()
      let placement: IOVAPlacement = f.rng.chance(20) ? .anywhere : .fixed(f.iova())
      let access = f.access()
      f.call("\(container.label) \(memory.text) at \(placement) access \(access.rawValue)") {
        f.saw(iova: try container.value.unsafeMap(address: memory.address, length: memory.length, at: placement, access: access))
      }
      return true
    },
    EntryPoint("DMAAddressSpace.map(_:at:access:) on VFIOContainer", weight: 4) { f in
      guard let container = f.pick(f.pool.containers), let buffer = f.pick(f.pool.buffers) else { return false }
      let placement: IOVAPlacement = f.rng.chance(20) ? .anywhere : .fixed(f.iova())
      let access = f.access()
      f.call("\(container.label) \(buffer.label) at \(placement) access \(access.rawValue)") {
        let mapping = try container.value.map(buffer.value, at: placement, access: access)
        f.pool.mappings.append(Held(value: MappingBox(mapping), label: f.pool.label("map"), context: nil))
      }
      return true
    },
    EntryPoint("VFIOContainer.unmap(iova:length:)", weight: 3) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      let (iova, length) = f.range()
      f.call("\(container.label) iova 0x\(hex(iova)) len 0x\(hex(length))") { _ = try container.value.unmap(iova: iova, length: length) }
      return true
    },
    EntryPoint("VFIOContainer.unmapAll()", weight: 2) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      f.call(container.label) { _ = try container.value.unmapAll() }
      return true
    },
    EntryPoint("VFIOContainer.iovaRanges()", weight: 3) { f in
      guard let container = f.pick(f.pool.containers) else { return false }
      f.call(container.label) { _ = try container.value.iovaRanges() }
      return true
    },
    EntryPoint("VFIOGroup.open(_:deviceRoot:backend:)", weight: 3) { f in
      let number = f.hostile(50) ? f.rng.hostileInt() : f.rng.below(8)
      let root = f.path("/dev")
      f.call("number \(number) root \(root.debugDescription)") {
        let group = try VFIOGroup.open(number, deviceRoot: FilePath(root), backend: f.backend)
        f.pool.groups.append(Held(value: group, label: f.pool.label("group"), context: nil))
      }
      return true
    },
    EntryPoint("VFIOGroup.init(adopting:number:backend:)", weight: 3) { f in
      let fd = f.adoptableDescriptor()
      let number = f.rng.hostileInt()
      f.call("fd \(fd.rawValue) number \(number)") {
        let group = VFIOGroup(adopting: fd, number: number, backend: f.backend)
        _ = (group.number, group.fileDescriptor, group.backend.reason)
        f.pool.groups.append(Held(value: group, label: f.pool.label("group"), context: nil))
      }
      return true
    },
    EntryPoint("VFIOGroup.status()", weight: 3) { f in
      guard let group = f.pick(f.pool.groups) else { return false }
      f.call(group.label) { _ = try group.value.status() }
      return true
    },
    EntryPoint("VFIOGroup.setContainer(_:)", weight: 3) { f in
      guard let group = f.pick(f.pool.groups), let container = f.pick(f.pool.containers) else { return false }
      f.call("\(group.label) \(container.label)") { try group.value.setContainer(container.value) }
      return true
    },
    EntryPoint("VFIOGroup.openDevice(_:)", weight: 3) { f in
      guard let group = f.pick(f.pool.groups) else { return false }
      let address = f.pciAddress()
      f.call("\(group.label) \(address)") {
        let device = try group.value.openDevice(address)
        f.pool.devices.append(Held(value: device, label: f.pool.label("dev"), context: nil))
      }
      return true
    },
    EntryPoint("VFIOGroup.close()", weight: 2) { f in
      guard let group = f.pick(f.pool.groups) else { return false }
      f.call(group.label) { try group.value.close() }
      return true
    },
    EntryPoint("VFIOSession.openCdev(_:access:iommufdPath:backend:)", weight: 5) { f in
      let path = f.path(SimulatedKernel.devicePath(f.rng.below(2)).string)
      let iommufdPath = f.path(IOMMUFD.defaultPath.string)
      f.call("path \(path.debugDescription) iommufd \(iommufdPath.debugDescription)") {
        let session = try VFIOSession.openCdev(FilePath(path), iommufdPath: FilePath(iommufdPath), backend: f.backend)
        f.adopt(session)
      }
      return true
    },
    EntryPoint("VFIOSession.open(_:discovery:prefer:backend:)", weight: 4) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(20))
      let address = f.rng.chance(70) ? tree.addresses.first ?? f.pciAddress() : f.pciAddress()
      let preferences: [VFIOSession.RoutePreference?] = [nil, .iommufd, .legacy]
      let preference = f.rng.element(preferences) ?? nil
      f.call("\(address) \(tree.description) prefer \(preference.map { "\($0)" } ?? "nil")") {
        let session = try VFIOSession.open(address, discovery: discovery, prefer: preference, backend: f.backend)
        f.adopt(session)
      }
      return true
    },
    EntryPoint("VFIOSession.iovaRanges()", weight: 2) { f in
      guard let session = f.pick(f.pool.sessions) else { return false }
      f.call(session.label) { _ = try session.value.iovaRanges() }
      return true
    },
    EntryPoint("VFIODevice.open(pciAddress:discovery:backend:)", weight: 3) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(20))
      let address = f.rng.chance(70) ? tree.addresses.first ?? f.pciAddress() : f.pciAddress()
      f.call("\(address) \(tree.description)") {
        let device = try VFIODevice.open(pciAddress: address, discovery: discovery, backend: f.backend)
        f.pool.devices.append(Held(value: device, label: f.pool.label("dev"), context: nil))
      }
      return true
    },
    EntryPoint("VFIODiscovery of the simulated machine: devices, device(at:), group, access, cdevPath", weight: 3) { f in
      let discovery = VFIODiscovery(backend: f.backend)
      let address = f.rng.chance(70) ? SimulatedKernel.pciAddress(ofDevice: f.rng.below(3)) : f.pciAddress()
      let group = f.hostile(30) ? f.rng.hostileInt() : f.rng.below(3)
      f.call("\(address) group \(group)") {
        _ = try discovery.devices().map(\.cdevPath)
        _ = discovery.access(for: address).reasons
        _ = try? discovery.group(group)
        _ = try discovery.device(at: address)
        _ = try discovery.cdevPath(for: address)
      }
      return true
    },
    EntryPoint("VFIOSession.open(_:discovery:prefer:backend:) on the simulated machine", weight: 2) { f in
      let address = f.rng.chance(80) ? SimulatedKernel.pciAddress(ofDevice: f.rng.below(2)) : f.pciAddress()
      let preference: VFIOSession.RoutePreference? = f.rng.element([nil, .iommufd, .legacy]) ?? nil
      f.call("\(address) prefer \(preference.map { "\($0)" } ?? "nil")") {
        let session = try VFIOSession.open(address, prefer: preference, backend: f.backend)
        f.pool.devices.append(Held(value: session.device, label: f.pool.label("dev"), context: nil))
        f.pool.sessions.append(Held(value: session, label: f.pool.label("session"), context: nil))
      }
      return true
    },
    EntryPoint("SystemCalls files of the simulated machine: directoryEntries, readFile, readLink, checkAccess", weight: 2) { f in
      let known = [
        "/sys/bus/pci/devices", "/sys/bus/pci/devices/0000:00:02.0/vendor", "/sys/bus/pci/devices/0000:00:03.0/driver",
        "/sys/kernel/iommu_groups/1/reserved_regions", "/dev/vfio/devices", "/dev/iommu", "/sys/module/vfio_pci", "/dev/vfio/0",
      ]
      let path = f.hostile(40) ? f.path(known[f.rng.below(known.count)]) : known[f.rng.below(known.count)]
      let size = f.hostile(30) ? f.rng.hostileInt() : 4096
      let mode = f.hostile(30) ? Int32(truncatingIfNeeded: f.rng.hostileInt()) : 6
      f.call("\(path.debugDescription) size \(size) mode \(mode)") {
        let calls = f.backend.calls
        let filePath = FilePath(path)
        _ = try? calls.directoryEntries(filePath)
        _ = try? calls.readFile(filePath, maximumBytes: size)
        _ = try? calls.readLink(filePath)
        _ = try? calls.checkAccess(filePath, mode: mode)  // the seam answers with an Errno, by design
      }
      return true
    },
    EntryPoint("VFIODiscovery.devices()", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      f.call(tree.description) {
        for entry in try discovery.devices() { _ = (entry.address.description, entry.cdevPath, entry.driver) }
      }
      return true
    },
    EntryPoint("VFIODiscovery.device(at:)", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      let address = f.rng.chance(70) ? tree.addresses.first ?? f.pciAddress() : f.pciAddress()
      f.call("\(address) \(tree.description)") { _ = try discovery.device(at: address) }
      return true
    },
    EntryPoint("VFIODiscovery.cdevPath(for:)", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      let address = f.rng.chance(70) ? tree.addresses.first ?? f.pciAddress() : f.pciAddress()
      f.call("\(address) \(tree.description)") { _ = try discovery.cdevPath(for: address) }
      return true
    },
    EntryPoint("VFIODiscovery.group(_:)", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      let number = f.hostile(30) ? f.rng.hostileInt() : tree.group
      f.call("group \(number) \(tree.description)") {
        let group = try discovery.group(number)
        _ = (group.devices, group.reservedRegions.map { ($0.range.description, $0.type) }, group.node)
      }
      return true
    },
    EntryPoint("VFIODiscovery.access(for:)", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      let address = f.rng.chance(70) ? tree.addresses.first ?? f.pciAddress() : f.pciAddress()
      f.call("\(address) \(tree.description)") { _ = discovery.access(for: address).description }
      return true
    },
    EntryPoint("VFIODiscovery.mediatedDeviceTypes() and mediatedDevices()", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      f.call(tree.description) {
        for type in try discovery.mediatedDeviceTypes() { _ = (type.id, type.parent, type.name, type.availableInstances, type.deviceAPI) }
        for entry in try discovery.mediatedDevices() { _ = (entry.id.description, entry.type, entry.parent, entry.iommuGroup, entry.cdevPath) }
      }
      return true
    },
    EntryPoint("VFIODiscovery.mediatedDevice(_:) and cdevPath(for:) of a mediated device", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      let id = f.rng.chance(70) ? tree.mediatedIDs.first ?? .random() : MediatedDeviceID(high: f.rng.hostileU64(), low: f.rng.hostileU64())
      f.call("\(id) \(tree.description)") {
        _ = try discovery.mediatedDevice(id)
        _ = try discovery.cdevPath(for: id)
      }
      return true
    },
    EntryPoint("VFIODiscovery.createMediatedDevice(ofType:parent:id:) and removeMediatedDevice(_:)", weight: 2) { f in
      // Never the real sysfs: the tree is always the fuzzer's own.
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: false)
      let type = f.rng.chance(80) ? tree.mediatedTypes.first ?? "mtty-2" : f.path("mtty-2")
      let parent: String? = f.rng.chance(70) ? nil : f.rng.element(["parent0", "parent1", "", "..", "mtty"]) ?? nil
      let id = f.rng.chance(50) ? tree.mediatedIDs.first ?? .random() : .random()
      f.call("type \(type.prefix(40).debugDescription) parent \(parent.map { $0.debugDescription } ?? "nil") id \(id) \(tree.description)") {
        _ = try discovery.createMediatedDevice(ofType: type, parent: parent, id: id)
      }
      f.call("remove \(id) \(tree.description)") { try discovery.removeMediatedDevice(id) }
      return true
    },
    EntryPoint("VFIODevice.open(mediatedDevice:discovery:backend:)", weight: 1) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: f.hostile(30))
      let id = tree.mediatedIDs.first ?? .random()
      f.call("\(id) \(tree.description)") {
        let device = try VFIODevice.open(mediatedDevice: id, discovery: discovery, backend: f.backend)
        f.pool.devices.append(Held(value: device, label: f.pool.label("dev"), context: nil))
      }
      return true
    },
    EntryPoint("PCIDriverBinding.bindToVFIO(_:)", weight: 2) { f in
      // Never the real sysfs: the tree is always the fuzzer's own.
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: false)
      let address = f.rng.chance(80) ? tree.addresses.first ?? f.pciAddress() : f.pciAddress()
      f.call("\(address) \(tree.description)") { _ = try PCIDriverBinding(discovery: discovery).bindToVFIO(address) }
      return true
    },
    EntryPoint("PCIDriverBinding.unbindFromVFIO(_:)", weight: 2) { f in
      let (discovery, tree) = f.sysfs.rebuild(&f.rng, hostileRoots: false)
      let address = f.rng.chance(80) ? tree.addresses.first ?? f.pciAddress() : f.pciAddress()
      f.call("\(address) \(tree.description)") { try PCIDriverBinding(discovery: discovery).unbindFromVFIO(address) }
      return true
    },
  ]
}

extension Fuzzer {
  /// Keeps a session's handles in the pool.
  func adopt(_ session: VFIOSession) {
    let label = pool.label("session")
    pool.sessions.append(Held(value: session, label: label, context: nil))
    pool.devices.append(Held(value: session.device, label: "\(label).dev", context: nil))
    _ = (session.access?.description, session.group?.number, session.space.isClosed)
    if let iommufd = session.iommufd {
      let index = pool.contexts.count
      pool.contexts.append(Held(value: iommufd, label: "\(label).ctx", context: index))
      boundContexts[ObjectIdentifier(session.device)] = index
      if let id = session.deviceID {
        saw(id)
        pool.deviceIDs.append(Held(value: id, label: "\(label).dev", context: index))
      }
      if let ioas = session.space as? IOAS { pool.ioases.append(Held(value: ioas, label: "\(label).ioas", context: index)) }
    }
    if let container = session.space as? VFIOContainer { pool.containers.append(Held(value: container, label: "\(label).container", context: nil)) }
    if let group = session.group { pool.groups.append(Held(value: group, label: "\(label).group", context: nil)) }
  }

  /// A PCI address, mostly valid.
  func pciAddress() -> PCIAddress {
    let device = hostile(30) ? rng.hostileU8() : UInt8(rng.below(32))
    let function = hostile(30) ? rng.hostileU8() : UInt8(rng.below(8))
    return PCIAddress(domain: rng.chance(80) ? 0 : rng.hostileU16(), bus: rng.hostileU8(), device: device, function: function)
      ?? PCIAddress(bus: 0, device: 3, function: 0)!
  }
}
