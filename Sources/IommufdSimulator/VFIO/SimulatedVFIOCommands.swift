import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The VFIO device cdev ioctls and region accesses of the simulated kernel (vfio-pci).
extension SimulatedKernel.State {
  func deviceIoctl(_ file: SimulatedDeviceFile, _ request: UInt, _ address: UInt64) throws(Errno) -> Int32 {
    let command = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: request))
    if command == CIOMMUFD_VFIO_DEVICE_BIND_IOMMUFD { return try bind(file, address) }
    guard file.binding != nil else { throw .invalidArgument }  // CDEV-2
    switch command {
    case CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT: return try attach(file, address)
    case CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT: return try detach(file, address)
    case CIOMMUFD_VFIO_DEVICE_GET_INFO: return try deviceInfo(file, address)
    case CIOMMUFD_VFIO_DEVICE_GET_REGION_INFO: return try regionInfo(file, address)
    case CIOMMUFD_VFIO_DEVICE_GET_IRQ_INFO: return try irqInfo(file, address)
    case CIOMMUFD_VFIO_DEVICE_SET_IRQS: return try setIRQs(file, address)
    case CIOMMUFD_VFIO_DEVICE_FEATURE: return try featureIoctl(.pci(file), address)
    case CIOMMUFD_VFIO_DEVICE_RESET: return try functionReset(file)
    case CIOMMUFD_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: return try hotResetInfo(file, address)
    case CIOMMUFD_VFIO_DEVICE_PCI_HOT_RESET: return try hotReset(file, address)
    default:
      throw .inappropriateIOCTLForDevice  // CDEV-3: vfio-pci does not know it
    }
  }

  /// Reads the first `minimum` bytes of a VFIO argument (its `argsz` comes first).
  func vfioArgument(_ address: UInt64, _ minimum: Int) throws(Errno) -> [UInt8] {
    try UserMemory.read(address, count: minimum)
  }

  // MARK: 6.2 BIND

  func bind(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    let context = try bindTarget(address, alreadyBound: file.binding != nil)
    if boundFiles[file.number] != nil { throw .invalidArgument }  // BIND-7
    // The group's DMA ownership: another iommufd that bound a device of it has it.
    if let owner = groupOwner(of: file.number), owner !== context { throw .notPermitted }
    let id = try allocateID(context)
    do throws(Errno) {
      try UserMemory.write(UserMemory.encode(id), to: try UserMemory.offset(address, by: 12))  // BIND-9
    } catch {
      // The device was opened before the id is copied out: the failure closes it again.
      enable(device: file.number)
      disable(device: file.number)
      throw error
    }
    context.objects[id] = .device(SimulatedDeviceObject(
      file: file, profile: iommuProfile, reservedRegions: file.device.reservedRegions, hardwareInfo: vtdHardwareInfo))
    context.boundDevices += 1
    file.binding = (context, id)
    file.object = context.device(id)
    boundFiles[file.number] = file
    enable(device: file.number)
    return 0
  }

  /// The checks of `VFIO_DEVICE_BIND_IOMMUFD` every cdev makes (`vfio_df_ioctl_bind_iommufd`)
  /// up to the iommufd context it names, which it returns: the struct (BIND-1/2, 7.2's
  /// token), a descriptor bound already (BIND-5), the descriptor named (BIND-6).
  /// `matchesTokens`: the driver checks SR-IOV VF tokens (vfio-pci's `match_token_uuid`),
  /// so 7.2's token is copied before it is refused; an emulated driver without the op
  /// refuses the flag before copying anything.
  func bindTarget(_ address: UInt64, alreadyBound: Bool, matchesTokens: Bool = true) throws(Errno) -> SimulatedContext {
    let request = UserMemory.decode(ciommufd_vfio_device_bind_iommufd.self, from: try vfioArgument(address, 16))  // BIND-1
    if isLinux7_2 {
      // 7.2: the struct is 24 bytes (a token pointer follows) and bytes past it must be
      // zero; flag bit 0 passes an SR-IOV VF token, which no simulated device (not SR-IOV) takes.
      if request.argsz < 16 { throw .invalidArgument }
      if request.argsz > 24, try !UserMemory.isZero(try UserMemory.offset(address, by: 24), count: UInt64(request.argsz) - 24) {
        throw .argListTooLong
      }
      if request.flags & ~1 != 0 || request.iommufd < 0 { throw .invalidArgument }
    } else if request.argsz < 16 || request.flags != 0 || request.iommufd < 0 {
      throw .invalidArgument  // BIND-2
    }
    if alreadyBound { throw .invalidArgument }  // BIND-5
    if request.flags & 1 != 0 && !matchesTokens { throw .invalidArgument }
    if request.flags & 1 != 0 {
      // 7.2's token, checked once the descriptor is known unbound: copied (EFAULT for a bad
      // pointer), then refused, as no simulated device is an SR-IOV PF or VF.
      let pointer = request.argsz >= 24 ? UserMemory.decode(UInt64.self, from: try UserMemory.read(try UserMemory.offset(address, by: 16), count: 8)) : 0
      _ = try UserMemory.read(pointer, count: 16)
      throw .invalidArgument
    }
    guard let target = files[request.iommufd] else {  // BIND-6
      throw fcntl(request.iommufd, F_GETFD) == -1 ? .badFileDescriptor : Errno(rawValue: 77)  // EBADFD
    }
    guard case .iommufd(let context) = target else { throw Errno(rawValue: 77) }
    return context
  }

  // MARK: 6.3 ATTACH

  func attach(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    let request = UserMemory.decode(ciommufd_vfio_device_attach_iommufd_pt.self, from: try vfioArgument(address, 12))
    // ATT-1 (7.2: flag bit 0 attaches a PASID).
    let pasidFlag: UInt32 = isLinux7_2 ? CIOMMUFD_VFIO_DEVICE_ATTACH_PASID : 0
    if request.argsz < 12 || request.flags & ~pasidFlag != 0 { throw .invalidArgument }
    if request.flags & pasidFlag != 0 { return try attachPASID(file, address, request) }
    let (context, deviceID) = file.binding!
    let object = context.device(deviceID)!
    guard let target = context.object(request.pt_id) else { throw .noSuchFileOrDirectory }  // ATT-2
    // The RID attached through vfio's PASID path (PASID 0): vfio's own attach does not
    // know it and asks iommufd for a new attach, which finds the RID busy, once the
    // target is one it can attach to (any other type is ATT-4's EINVAL first).
    if object.ridThroughPASIDPath {
      switch target {
      case .ioas, .hwpt: throw .resourceBusy
      default: throw .invalidArgument
      }
    }
    return try attachRID(context, object, deviceID, target, request.pt_id, address)
  }

  /// The RID's attach or replace to `target` (ATT-2..ATT-7), replying the HWPT id at
  /// `address + 8`; a failed reply leaves the device fully detached.
  func attachRID(
    _ context: SimulatedContext, _ object: SimulatedDeviceObject, _ deviceID: UInt32, _ target: SimulatedContext.Object,
    _ targetID: UInt32, _ address: UInt64, throughPASIDPath: Bool = false
  ) throws(Errno) -> Int32 {
    // 7.2: while PASIDs are attached, the RID only goes to a PASID-capable HWPT.
    if !object.pasids.isEmpty, context.hwpt(targetID).map({ $0.flags & CIOMMUFD_HWPT_ALLOC_PASID == 0 }) ?? true {
      throw .invalidArgument
    }
    let ptID: UInt32
    switch target {
    case .ioas(let ioas):
      ptID = try attachToIOAS(context, object, deviceID, ioasID: targetID, ioas)
    case .hwpt(let hwpt):
      ptID = try attachToHWPT(context, object, deviceID, hwptID: targetID, hwpt)
    case .device, .selfTest, .fault, .viommu, .vdevice, .veventq, .tombstone, .hwQueue, .access:
      throw .invalidArgument  // ATT-4
    }
    do {
      try UserMemory.write(UserMemory.encode(ptID), to: try UserMemory.offset(address, by: 8))  // ATT-6
    } catch {
      // ATT-7: vfio's detach_ioas undoes its own attach; one made through its PASID path
      // (7.2, PASID 0) it does not know, and that attach stays.
      if !throughPASIDPath {
        detachDevice(context, object, deviceID)
        object.ridThroughPASIDPath = false
      }
      throw error
    }
    return 0
  }

  /// ATT-2/ATT-3 with an IOAS: reuse the IOAS's first automatic HWPT, else make one.
  func attachToIOAS(
    _ context: SimulatedContext, _ object: SimulatedDeviceObject, _ deviceID: UInt32, ioasID: UInt32, _ ioas: SimulatedIOAS
  ) throws(Errno) -> UInt32 {
    // A function whose IOMMU group is attached already goes where the group is: the
    // group's automatic HWPT of this IOAS, else nowhere (each HWPT, and a new one, EINVAL).
    if object.attachedHWPT == nil, let groupHWPT = groupHWPT(context, object) {
      guard let hwpt = context.hwpt(groupHWPT), hwpt.isAutomatic, hwpt.ioasID == ioasID else { throw .invalidArgument }
      return try attachToHWPT(context, object, deviceID, hwptID: groupHWPT, hwpt)
    }
    let automatic = ioas.domains.map(\.id).first {
      guard let hwpt = context.hwpt($0) else { return false }
      return hwpt.isAutomatic && hwpt.profile == object.profile  // another driver's domain: EINVAL, try the next
    }
    if let automatic, let hwpt = context.hwpt(automatic) {
      if object.attachedHWPT == automatic { return automatic }  // ATT-3: no change
      return try attachToHWPT(context, object, deviceID, hwptID: automatic, hwpt)
    }
    // A new automatic HWPT: its id; the kernel attaches the device (adding its reserved
    // regions, IOAS-3) before it adds the domain to the IOAS (IOAS-2).
    let id = try allocateID(context)
    let regions = object.reservedRegions
    let movesIOAS = object.attachedHWPT.flatMap { context.hwpt($0)?.ioasID } != ioasID
    if movesIOAS {
      for region in regions where ioas.areas.intersects(region.start, region.last) || ioas.overlapsAllowed(region.start, region.last) {
        _ = region
        throw .addressInUse
      }
    }
    try checkDomainAdd(ioas, profile: object.profile)
    let hwpt = SimulatedHWPT(ioasID: ioasID, isAutomatic: true, profile: object.profile)
    commitDomainAdd(ioas, hwptID: id, hwpt)
    hwpt.hugeLeaves = object.hugeIOVA
    context.objects[id] = .hwpt(hwpt)
    move(context, object, deviceID, to: id, hwpt)
    return id
  }

  /// ATT-2/ATT-3 with an HWPT: attach or atomically replace.
  func attachToHWPT(
    _ context: SimulatedContext, _ object: SimulatedDeviceObject, _ deviceID: UInt32, hwptID: UInt32, _ hwpt: SimulatedHWPT
  ) throws(Errno) -> UInt32 {
    if object.attachedHWPT == hwptID { return hwptID }
    // The IOMMU group attaches as one (`iommufd_hw_pagetable_attach`): another HWPT than the
    // one its attached functions use is EINVAL, before anything else.
    if object.attachedHWPT == nil, let groupHWPT = groupHWPT(context, object), groupHWPT != hwptID { throw .invalidArgument }
    // The driver refuses another driver's domain, and a dirty-tracking domain for a device
    // that cannot track dirty pages.
    if hwpt.profile.driver != object.profile.driver || (hwpt.hasDirtyOps && !object.dirtyCapable) { throw .invalidArgument }
    // A fault-capable HWPT needs page requests from the device (VT-d: ENODEV without PRI).
    if hwpt.faultID != nil, let file = object.file, !file.device.supportsPageRequests { throw .operationNotSupportedByDevice }
    let currentIOAS = object.attachedHWPT.flatMap { context.hwpt($0)?.ioasID }
    if currentIOAS != hwpt.ioasID, let ioas = context.ioas(hwpt.ioasID) {
      for region in object.reservedRegions
      where ioas.areas.intersects(region.start, region.last) || ioas.overlapsAllowed(region.start, region.last) {
        _ = region
        throw .addressInUse  // IOAS-3
      }
    }
    let previous = object.attachedHWPT
    move(context, object, deviceID, to: hwptID, hwpt)
    // A replace moves the whole group (`iommufd_device_do_replace`): the functions that
    // were on the same HWPT follow.
    if let previous {
      for (sibling, siblingID) in groupSiblings(context, object) where sibling.attachedHWPT == previous {
        move(context, sibling, siblingID, to: hwptID, hwpt)
      }
    }
    return hwptID
  }

  /// The other functions of the device's IOMMU group bound to `context`, with their ids
  /// (a group's functions are all bound to one context: its owner).
  func groupSiblings(_ context: SimulatedContext, _ object: SimulatedDeviceObject) -> [(SimulatedDeviceObject, UInt32)] {
    guard let number = object.file?.number else { return [] }
    return topology.members(ofGroup: topology.groups[number]).compactMap { member -> (SimulatedDeviceObject, UInt32)? in
      guard member != number, let (owner, id) = boundFiles[member]?.binding, owner === context, let sibling = context.device(id) else { return nil }
      return (sibling, id)
    }
  }

  /// The HWPT the device's IOMMU group is attached to through its other functions, if any.
  func groupHWPT(_ context: SimulatedContext, _ object: SimulatedDeviceObject) -> UInt32? {
    groupSiblings(context, object).lazy.compactMap(\.0.attachedHWPT).first
  }

  /// Moves the device's attachment to `hwpt`, carrying its reserved regions to the new
  /// IOAS and freeing an automatic HWPT left unused.
  func move(_ context: SimulatedContext, _ object: SimulatedDeviceObject, _ deviceID: UInt32, to hwptID: UInt32, _ hwpt: SimulatedHWPT) {
    let previousIOAS = object.attachedHWPT.flatMap { context.hwpt($0)?.ioasID }
    if previousIOAS != hwpt.ioasID {
      if let previousIOAS, let old = context.ioas(previousIOAS) { old.reserved.removeAll { $0.owner == .device(deviceID) } }
      if let ioas = context.ioas(hwpt.ioasID) {
        for region in object.reservedRegions { ioas.reserved.append((region.start, region.last, .device(deviceID))) }
      }
    }
    leaveHWPT(context, object, deviceID)
    hwpt.devices.append(deviceID)
    object.attachedHWPT = hwptID
    object.attachedIOAS = context.ioas(hwpt.ioasID)
    object.attachedHWPTObject = hwpt
  }

  /// Takes the device off its HWPT; destroys an automatic HWPT left with no device (OBJ-7).
  /// Its faults still waiting in the HWPT's fault queue are answered INVALID (FAULT-5).
  func leaveHWPT(_ context: SimulatedContext, _ object: SimulatedDeviceObject, _ deviceID: UInt32) {
    guard let current = object.attachedHWPT, let hwpt = context.hwpt(current) else { return }
    if let faultID = hwpt.faultID, case .fault(let queue)? = context.objects[faultID] {
      queue.pending.removeAll { $0.first?.deviceID == deviceID }
      queue.awaiting = queue.awaiting.filter { $0.value.first?.deviceID != deviceID }
    }
    hwpt.devices.removeAll { $0 == deviceID }
    object.attachedHWPT = nil
    object.attachedIOAS = nil
    object.attachedHWPTObject = nil
    if hwpt.isAutomatic && hwpt.devices.isEmpty {
      if let ioas = context.ioas(hwpt.ioasID) { removeDomain(ioas, hwptID: current) }
      context.objects[current] = nil
    }
  }

  /// DET-2: detach, drop the device's reserved regions, free an unused automatic HWPT.
  func detachDevice(_ context: SimulatedContext, _ object: SimulatedDeviceObject, _ deviceID: UInt32) {
    guard let current = object.attachedHWPT, let hwpt = context.hwpt(current) else { return }
    context.ioas(hwpt.ioasID)?.reserved.removeAll { $0.owner == .device(deviceID) }
    leaveHWPT(context, object, deviceID)
  }

  /// 7.2: attaches (or replaces) PASID `pasid` of the device. The simulated devices have no
  /// PASID capability, so, as the kernel does for such a device, nothing reaches the IOMMU:
  /// the attach is only recorded, after iommufd's own checks.
  func attachPASID(_ file: SimulatedDeviceFile, _ address: UInt64, _ request: ciommufd_vfio_device_attach_iommufd_pt) throws(Errno) -> Int32 {
    if request.argsz < 16 { throw .invalidArgument }
    let pasid = UserMemory.decode(UInt32.self, from: try UserMemory.read(try UserMemory.offset(address, by: 12), count: 4))
    let (context, deviceID) = file.binding!
    let object = context.device(deviceID)!
    if object.pasids[pasid] == nil, pasid >= 1 << 31 { throw .noSpace }  // vfio's PASID IDA
    guard let target = context.object(request.pt_id) else { throw .noSuchFileOrDirectory }
    // PASID 0 is IOMMU_NO_PASID: vfio's PASID path attaches (or, once it holds PASID 0,
    // replaces) the RID, with the RID's rules: busy if the RID is attached otherwise.
    if pasid == 0 {
      if !object.ridThroughPASIDPath && object.attachedHWPT != nil { throw .resourceBusy }
      let replacing = object.ridThroughPASIDPath
      object.ridThroughPASIDPath = true
      do {
        return try attachRID(context, object, deviceID, target, request.pt_id, address, throughPASIDPath: true)
      } catch {
        if !replacing { object.ridThroughPASIDPath = object.attachedHWPT != nil }
        throw error
      }
    }
    guard case .hwpt(let hwpt) = target else { throw .invalidArgument }  // an IOAS's automatic domain never takes PASIDs
    if hwpt.flags & CIOMMUFD_HWPT_ALLOC_PASID == 0 { throw .invalidArgument }
    if let rid = object.attachedHWPT, let current = context.hwpt(rid), current.flags & CIOMMUFD_HWPT_ALLOC_PASID == 0 {
      throw .invalidArgument
    }
    if hwpt.profile.driver != object.profile.driver { throw .invalidArgument }
    object.pasids[pasid] = request.pt_id
    do {
      try UserMemory.write(UserMemory.encode(request.pt_id), to: try UserMemory.offset(address, by: 8))
    } catch {
      // A failed write-back calls vfio's detach_ioas, which detaches the RID (where vfio's
      // own attach attached it), not the PASID: the PASID stays attached.
      if !object.ridThroughPASIDPath { detachDevice(context, object, deviceID) }
      throw error
    }
    return 0
  }

  // MARK: 6.4 DETACH

  func detach(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    let request = UserMemory.decode(ciommufd_vfio_device_detach_iommufd_pt.self, from: try vfioArgument(address, 8))
    // DET-1 (7.2: flag bit 0 detaches a PASID; one never attached is no error).
    let pasidFlag: UInt32 = isLinux7_2 ? CIOMMUFD_VFIO_DEVICE_DETACH_PASID : 0
    if request.argsz < 8 || request.flags & ~pasidFlag != 0 { throw .invalidArgument }
    let (context, deviceID) = file.binding!
    if request.flags & pasidFlag != 0 {
      if request.argsz < 12 { throw .invalidArgument }
      let pasid = UserMemory.decode(UInt32.self, from: try UserMemory.read(try UserMemory.offset(address, by: 8), count: 4))
      let object = context.device(deviceID)!
      if pasid == 0 {
        // PASID 0 is the RID, if vfio's PASID path attached it.
        if object.ridThroughPASIDPath {
          detachDevice(context, object, deviceID)
          object.ridThroughPASIDPath = false
        }
        return 0
      }
      object.pasids[pasid] = nil
      return 0
    }
    let object = context.device(deviceID)!
    if object.ridThroughPASIDPath { return 0 }  // vfio's own detach does not know that attach
    detachDevice(context, object, deviceID)  // DET-2, DET-3
    return 0
  }

  // MARK: 6.5 close

  /// CLOSE-1: interrupts off, DMA stopped, detach, destroy the device object, drop the
  /// context reference.
  func closeDevice(_ file: SimulatedDeviceFile) {
    guard let (context, deviceID) = file.binding else { return }  // CLOSE-2
    disableInterrupts(file.number)
    if let fd = requestEventFDs.removeValue(forKey: file.number) { _ = Glibc.close(fd) }  // vfio_pci_core_disable
    file.device.config[4] &= ~0x4  // vfio-pci clears bus mastering
    virtualBARs[file.number] = nil  // the next open copies the device's registers again
    lowPower[file.number] = nil  // vfio_pci_core_disable leaves low power
    if let object = context.device(deviceID) { detachDevice(context, object, deviceID) }
    context.objects[deviceID] = nil
    removeVDevice(context, ofDevice: deviceID)
    context.boundDevices -= 1
    file.binding = nil
    file.object = nil
    boundFiles[file.number] = nil
    file.device.returnToRunning()  // a migration driver's close: RUNNING, its data files disabled
    file.device.precopyInfoV2 = false  // the core clears 7.2's opt-in on the last close
    disable(device: file.number)
    releaseIfUnused(context)
  }

  // MARK: 6.6 device ioctls

  func deviceInfo(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    var info = UserMemory.decode(ciommufd_vfio_device_info.self, from: try vfioArgument(address, 16))
    if info.argsz < 16 { throw .invalidArgument }  // DEV-1
    info.flags = CIOMMUFD_VFIO_DEVICE_FLAGS_PCI | (hasFunctionReset(file.number) ? CIOMMUFD_VFIO_DEVICE_FLAGS_RESET : 0)
    info.num_regions = UInt32(CIOMMUFD_VFIO_PCI_NUM_REGIONS)
    info.num_irqs = UInt32(CIOMMUFD_VFIO_PCI_NUM_IRQS)
    info.cap_offset = 0
    let bytes = UserMemory.encode(info)
    try UserMemory.write(Array(bytes.prefix(min(Int(info.argsz), bytes.count))), to: address)
    return 0
  }

  func regionInfo(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    var info = UserMemory.decode(ciommufd_vfio_region_info.self, from: try vfioArgument(address, 32))
    if info.argsz < 32 { throw .invalidArgument }  // DEV-2
    let index = Int(info.index)
    info.offset = UInt64(info.index) << 40  // cap_offset stays as given unless a chain follows
    var capabilities: [UInt8] = []
    switch index {
    case 0..<6:
      if let bar = file.device.bars[index] {
        info.size = bar.size
        info.flags = CIOMMUFD_VFIO_REGION_INFO_FLAG_READ | CIOMMUFD_VFIO_REGION_INFO_FLAG_WRITE
        if file.device.isMappable(bar: index) {
          info.flags |= CIOMMUFD_VFIO_REGION_INFO_FLAG_MMAP
          // msix_mmappable_cap: a bare header, id 3, version 1.
          if file.device.msix?.tableBAR == index { capabilities = [3, 0, 1, 0, 0, 0, 0, 0] }
        }
      } else {
        info.size = 0
        info.flags = 0
      }
    case Int(CIOMMUFD_VFIO_PCI_ROM_REGION_INDEX):
      info.size = 0
      info.flags = 0
    case Int(CIOMMUFD_VFIO_PCI_CONFIG_REGION_INDEX):
      info.size = UInt64(file.device.config.count)
      info.flags = CIOMMUFD_VFIO_REGION_INFO_FLAG_READ | CIOMMUFD_VFIO_REGION_INFO_FLAG_WRITE
    default:
      throw .invalidArgument  // VGA on a non-VGA device, and beyond the last region
    }
    if !capabilities.isEmpty {
      // The chain follows the struct when argsz has room for it; else argsz says how much.
      info.flags |= CIOMMUFD_VFIO_REGION_INFO_FLAG_CAPS
      if Int(info.argsz) < 32 + capabilities.count {
        info.argsz = UInt32(32 + capabilities.count)
      } else {
        try UserMemory.write(capabilities, to: try UserMemory.offset(address, by: 32))
        info.cap_offset = 32
      }
    }
    try UserMemory.write(UserMemory.encode(info), to: address)
    return 0
  }

  func irqCount(_ device: SimulatedPCIDevice, _ index: Int) -> Int {
    switch index {
    case Int(CIOMMUFD_VFIO_PCI_INTX_IRQ_INDEX): device.config[0x3d] != 0 ? 1 : 0
    case Int(CIOMMUFD_VFIO_PCI_MSI_IRQ_INDEX): device.msiCount
    case Int(CIOMMUFD_VFIO_PCI_MSIX_IRQ_INDEX): device.msix?.vectors ?? 0
    case Int(CIOMMUFD_VFIO_PCI_REQ_IRQ_INDEX): 1
    default: 0  // ERR needs PCIe
    }
  }

  func irqInfo(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    var info = UserMemory.decode(ciommufd_vfio_irq_info.self, from: try vfioArgument(address, 16))
    if info.argsz < 16 || info.index >= UInt32(CIOMMUFD_VFIO_PCI_NUM_IRQS) { throw .invalidArgument }  // DEV-3
    if info.index == UInt32(CIOMMUFD_VFIO_PCI_ERR_IRQ_INDEX) { throw .invalidArgument }  // not PCIe
    info.flags = CIOMMUFD_VFIO_IRQ_INFO_EVENTFD
    if info.index == UInt32(CIOMMUFD_VFIO_PCI_INTX_IRQ_INDEX) {
      info.flags |= CIOMMUFD_VFIO_IRQ_INFO_MASKABLE | CIOMMUFD_VFIO_IRQ_INFO_AUTOMASKED
    } else if info.index != UInt32(CIOMMUFD_VFIO_PCI_MSIX_IRQ_INDEX) || !(file.device.msix?.dynamicAllocation ?? false) {
      info.flags |= CIOMMUFD_VFIO_IRQ_INFO_NORESIZE
    }
    info.count = UInt32(clamping: irqCount(file.device, Int(info.index)))
    try UserMemory.write(UserMemory.encode(info), to: address)
    return 0
  }

  func setIRQs(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    let header = UserMemory.decode(ciommufd_vfio_irq_set.self, from: try vfioArgument(address, 20))
    let dataTypes = CIOMMUFD_VFIO_IRQ_SET_DATA_NONE | CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL | CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD
    let actions = CIOMMUFD_VFIO_IRQ_SET_ACTION_MASK | CIOMMUFD_VFIO_IRQ_SET_ACTION_UNMASK | CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER
    // DEV-4.1
    if header.argsz < 20 || header.index >= UInt32(CIOMMUFD_VFIO_PCI_NUM_IRQS) || header.count >= UInt32.max - header.start
      || header.flags & ~(dataTypes | actions) != 0
    {
      throw .invalidArgument
    }
    let index = Int(header.index)
    let maximum = irqCount(file.device, index)
    if Int(header.start) >= maximum || Int(header.start) + Int(header.count) > maximum { throw .invalidArgument }
    // DEV-4.2
    let dataType = header.flags & dataTypes
    guard dataType.nonzeroBitCount == 1 else { throw .invalidArgument }
    let payload = Int(header.argsz) - 20
    if dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL && payload < Int(header.count) { throw .invalidArgument }
    if dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD && payload < 4 * Int(header.count) { throw .invalidArgument }
    var data: [UInt8] = []  // memdup_user before the dispatch: EFAULT first
    if dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD {
      data = try UserMemory.read(try UserMemory.offset(address, by: 20), count: 4 * Int(header.count))
    } else if dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL {
      data = try UserMemory.read(try UserMemory.offset(address, by: 20), count: Int(header.count))
    }
    // DEV-4.3: vfio_pci_set_irqs_ioctl finds a handler by index and exactly one action;
    // none (no action, two actions, MASK or UNMASK but on INTx) is ENOTTY.
    let action = header.flags & actions
    let isTrigger = action == CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER
    guard action.nonzeroBitCount == 1, isTrigger || index == Int(CIOMMUFD_VFIO_PCI_INTX_IRQ_INDEX) else {
      throw .inappropriateIOCTLForDevice
    }
    try applyIRQs(file, index: index, start: Int(header.start), count: Int(header.count), dataType: dataType, action: action, data: data)
    return 0
  }

  /// DEV-4.4: the effect of a validated SET_IRQS, with vfio-pci's rules
  /// (`vfio_pci_set_intx_*`, `vfio_pci_set_msi_trigger`, `vfio_msi_set_block`): one kind
  /// of interrupt at a time; INTx takes exactly vector 0; triggering, masking or disabling
  /// a kind that is not enabled is EINVAL; enabling MSI or MSI-X with no vector is ERANGE;
  /// an eventfd must be one.
  func applyIRQs(
    _ file: SimulatedDeviceFile, index: Int, start: Int, count: Int, dataType: UInt32, action: UInt32, data: [UInt8]
  ) throws(Errno) {
    let eventFDs: [Int32] =
      dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD
      ? (0..<count).map { UserMemory.decode(Int32.self, from: data, offset: $0 * 4) } : []
    let fires = { (offset: Int) -> Bool in dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_NONE || data[offset] != 0 }
    switch index {
    case Int(CIOMMUFD_VFIO_PCI_INTX_IRQ_INDEX):
      if action == CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER {
        try triggerINTx(file.number, start: start, count: count, dataType: dataType, eventFDs: eventFDs, fires: fires)
      } else {
        try maskINTx(file.number, unmask: action == CIOMMUFD_VFIO_IRQ_SET_ACTION_UNMASK, start: start, count: count,
          dataType: dataType, eventFDs: eventFDs, fires: fires)
      }
    case Int(CIOMMUFD_VFIO_PCI_MSI_IRQ_INDEX), Int(CIOMMUFD_VFIO_PCI_MSIX_IRQ_INDEX):
      try triggerMSI(file, msix: index == Int(CIOMMUFD_VFIO_PCI_MSIX_IRQ_INDEX), start: start, count: count,
        dataType: dataType, eventFDs: eventFDs, fires: fires)
    case Int(CIOMMUFD_VFIO_PCI_REQ_IRQ_INDEX):
      try triggerRequest(file.number, start: start, count: count, dataType: dataType, eventFDs: eventFDs, fires: fires)
    default:
      return  // ERR: no vectors on a conventional PCI device, refused before
    }
  }

  /// `vfio_pci_set_req_trigger` (`vfio_pci_set_ctx_trigger_single`): one eventfd, set
  /// (-1 clears it; below -1 EINVAL), fired from software (NONE needs it set, EINVAL
  /// else; BOOL and EVENTFD need count 1), or cleared by NONE with count 0.
  private func triggerRequest(
    _ number: Int, start: Int, count: Int, dataType: UInt32, eventFDs: [Int32], fires: (Int) -> Bool
  ) throws(Errno) {
    guard start == 0, count <= 1 else { throw .invalidArgument }
    switch dataType {
    case CIOMMUFD_VFIO_IRQ_SET_DATA_NONE:
      guard let fd = requestEventFDs[number] else { throw .invalidArgument }
      if count == 1 {
        signal(fd)
      } else {
        _ = Glibc.close(fd)
        requestEventFDs[number] = nil
      }
    case CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL:
      guard count == 1 else { throw .invalidArgument }
      if fires(0), let fd = requestEventFDs[number] { signal(fd) }
    default:
      guard count == 1, eventFDs[0] >= -1 else { throw .invalidArgument }
      let copy: Int32? = eventFDs[0] >= 0 ? try Self.duplicateEventFD(eventFDs[0]) : nil
      if let old = requestEventFDs[number] { _ = Glibc.close(old) }
      requestEventFDs[number] = copy
    }
  }

  /// `vfio_pci_set_intx_mask` and `_unmask`: vector 0 of enabled INTx only; with an eventfd,
  /// UNMASK watches it (the resampling irqfd: each signal unmasks) and MASK is ENOTTY.
  private func maskINTx(
    _ number: Int, unmask: Bool, start: Int, count: Int, dataType: UInt32, eventFDs: [Int32], fires: (Int) -> Bool
  ) throws(Errno) {
    guard irqs[number]?.mode == .intx, start == 0, count == 1 else { throw .invalidArgument }
    guard dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD else {
      guard fires(0) else { return }
      if unmask {
        unmaskINTx(number)
      } else {
        irqs[number]?.intxMasked = true
      }
      return
    }
    guard unmask else { throw .inappropriateIOCTLForDevice }  // "XXX implement me"
    let key = SimulatedWorker.WatchKey.intxUnmask(device: number)
    guard eventFDs[0] >= 0 else {
      worker.unwatch(key, in: self)
      return
    }
    // vfio_virqfd_enable: EBADF, then EINVAL, then EBUSY. The listener holds no reference
    // to the eventfd: closing the caller's last descriptor drops it.
    let fd = eventFDs[0]
    try Self.checkEventFD(fd)
    guard !worker.isWatching(key) else { throw .resourceBusy }
    try worker.watch(key, fd: fd, in: self) { state in state.unmaskINTx(number) }
    // A signal already pending counts at once (EPOLLIN at registration); its count stays.
    var pending = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    if Glibc.poll(&pending, 1, 0) == 1 { unmaskINTx(number) }
  }

  /// `vfio_pci_set_intx_trigger`: enable (an eventfd, or -1 for none), change the eventfd,
  /// disable (count 0), or fire from software.
  private func triggerINTx(
    _ number: Int, start: Int, count: Int, dataType: UInt32, eventFDs: [Int32], fires: (Int) -> Bool
  ) throws(Errno) {
    var irq = irqs[number] ?? SimulatedIRQState()
    if irq.mode == .intx && count == 0 && dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_NONE {
      disableInterrupts(number)
      return
    }
    guard irq.mode == .intx || irq.mode == .none, start == 0, count == 1 else { throw .invalidArgument }
    if dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD {
      let copy: Int32? = eventFDs[0] >= 0 ? try Self.duplicateEventFD(eventFDs[0]) : nil
      if let old = irq.eventFDs.removeValue(forKey: 0) { _ = Glibc.close(old) }
      if let copy { irq.eventFDs[0] = copy }
      let enabling = irq.mode == .none
      if enabling {
        irq.mode = .intx
        irq.intxMasked = false
      }
      irqs[number] = irq
      if enabling { evaluateINTx(number) }  // a line already asserted fires at request_irq
      return
    }
    guard irq.mode == .intx else { throw .invalidArgument }
    if fires(0), let fd = irq.eventFDs[0] { signal(fd) }
  }

  /// `vfio_pci_set_msi_trigger` for MSI and MSI-X: enable with `start + count` vectors,
  /// set or clear a block of vectors (each vector's old eventfd released first; an MSI-X
  /// vector past those allocated is allocated where the device allows it, else EINVAL; on
  /// an error the block's vectors set so far are cleared, and an index enabled by this
  /// call disabled again), disable (count 0), or fire from software.
  private func triggerMSI(
    _ file: SimulatedDeviceFile, msix: Bool, start: Int, count: Int, dataType: UInt32, eventFDs: [Int32],
    fires: (Int) -> Bool
  ) throws(Errno) {
    let number = file.number
    let mode: SimulatedIRQState.Mode = msix ? .msix : .msi
    var irq = irqs[number] ?? SimulatedIRQState()
    if irq.mode == mode && count == 0 && dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_NONE {
      disableInterrupts(number)
      return
    }
    guard irq.mode == mode || irq.mode == .none else { throw .invalidArgument }  // one kind at a time
    guard dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD else {
      guard irq.mode == mode else { throw .invalidArgument }
      for vector in start..<(start + count) where fires(vector - start) {
        if let fd = irq.eventFDs[vector] { signal(fd) }
      }
      return
    }
    let enabling = irq.mode == .none
    if enabling {
      if start + count == 0 { throw .outOfRange }  // pci_alloc_irq_vectors(1, 0)
      irq.mode = mode
      irq.allocatedVectors = Set(0..<(start + count))
      setEnableBit(file, msix: msix, on: true)
    }
    let dynamic = msix && (file.device.msix?.dynamicAllocation ?? false)
    var failure: Errno?
    var vector = start
    while vector < start + count {
      if let old = irq.eventFDs.removeValue(forKey: vector) { _ = Glibc.close(old) }
      let fd = eventFDs[vector - start]
      if fd >= 0 {
        if !irq.allocatedVectors.contains(vector) {
          guard dynamic else {
            failure = .invalidArgument  // pci_irq_vector: not allocated
            break
          }
          irq.allocatedVectors.insert(vector)  // stays allocated until MSI-X is disabled
        }
        do throws(Errno) {
          irq.eventFDs[vector] = try Self.duplicateEventFD(fd)
        } catch {
          failure = error
          break
        }
      }
      vector += 1
    }
    if let failure {
      for done in start..<vector {
        if let fd = irq.eventFDs.removeValue(forKey: done) { _ = Glibc.close(fd) }
      }
      irqs[number] = irq
      if enabling { disableInterrupts(number) }
      throw failure
    }
    irqs[number] = irq
  }

  private func setEnableBit(_ file: SimulatedDeviceFile, msix: Bool, on: Bool) {
    let device = file.device
    // A device that turns on MSI or MSI-X deasserts INTx (QEMU's msi_write_config, and the
    // PCI rule that a function with messages enabled does not use INTx).
    if on { intxAsserted.remove(file.number) }
    if msix {
      guard let capability = device.msixCapability else { return }
      if on { device.config[capability + 3] |= 0x80 } else { device.config[capability + 3] &= ~0x80 }
    } else if device.msiCount > 0 {
      if on { device.config[0x42] |= 0x1 } else { device.config[0x42] &= ~0x1 }
    }
  }

  /// A duplicate of eventfd `fd` the kernel keeps (`eventfd_ctx_fdget`): EBADF for a
  /// descriptor that is not open, EINVAL for one that is not an eventfd.
  static func duplicateEventFD(_ fd: Int32) throws(Errno) -> Int32 {
    try Self.checkEventFD(fd)
    let copy = Glibc.fcntl(fd, F_DUPFD_CLOEXEC, 0)
    guard copy >= 0 else { throw .badFileDescriptor }
    return copy
  }

  /// EBADF unless `fd` is open (fdget sees no file behind an O_PATH descriptor either),
  /// EINVAL unless it is an eventfd, as `eventfd_ctx_fdget` answers.
  static func checkEventFD(_ fd: Int32) throws(Errno) {
    let status = Glibc.fcntl(fd, F_GETFL)
    guard status >= 0, status & CIOMMUFD_O_PATH == 0 else { throw .badFileDescriptor }
    guard Self.isEventFD(fd) else { throw .invalidArgument }
  }

  /// Whether `fd` is an eventfd (`eventfd_ctx_fdget` takes nothing else).
  static func isEventFD(_ fd: Int32) -> Bool {
    var target = [CChar](repeating: 0, count: 64)
    let count = Glibc.readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
    guard count > 0 else { return false }
    return String(decoding: target.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self) == "anon_inode:[eventfd]"
  }

  // MARK: Region access

  func regionRead(_ file: SimulatedDeviceFile, offset: UInt64, count: Int) throws(Errno) -> [UInt8] {
    guard file.binding != nil else { throw .invalidArgument }  // CDEV-2
    let (index, position, length) = try regionRange(file, offset, count)
    if index == Int(CIOMMUFD_VFIO_PCI_CONFIG_REGION_INDEX) {
      return readConfig(file, at: Int(position), count: length)
    }
    // Exactly `length` bytes, whatever the device model returned, in the accesses
    // vfio-pci makes; the MSI-X table reads as all ones (vfio_pci_bar_rw keeps it from the
    // user), and a memory BAR is read from its memory.
    var result: [UInt8] = []
    result.reserveCapacity(length)
    for (start, count, isTable) in Self.barSegments(position, length, excluding: file.device.msixTable(inBAR: index)) {
      if isTable {
        result += [UInt8](repeating: 0xFF, count: count)
      } else if let memory = file.device.barMemory[index] {
        result += memory.read(start, count)
      } else {
        for (start, width) in Self.barAccesses(start, count) {
          let bytes = file.device.readBAR(index, offset: start, count: width, bus: SimulatedBus(kernel: self, device: file.number))
          result += bytes.count == width ? bytes : Array(bytes.prefix(width)) + [UInt8](repeating: 0, count: max(0, width - bytes.count))
        }
      }
    }
    return result
  }

  /// The range `offset..<offset + count` cut where it enters and leaves `excluded` (the
  /// MSI-X table), each piece marked whether it lies in it.
  static func barSegments(_ offset: UInt64, _ count: Int, excluding excluded: Range<UInt64>?) -> [(UInt64, Int, Bool)] {
    let end = offset + UInt64(count)
    guard let excluded, excluded.lowerBound < end, excluded.upperBound > offset else { return [(offset, count, false)] }
    var segments: [(UInt64, Int, Bool)] = []
    if offset < excluded.lowerBound { segments.append((offset, Int(excluded.lowerBound - offset), false)) }
    let inside = max(offset, excluded.lowerBound)..<min(end, excluded.upperBound)
    segments.append((inside.lowerBound, Int(inside.upperBound - inside.lowerBound), true))
    if end > excluded.upperBound { segments.append((excluded.upperBound, Int(end - excluded.upperBound), false)) }
    return segments
  }

  /// The accesses `vfio_pci_core_do_io_rw` splits a BAR read or write of `count` bytes at
  /// `offset` into: the widest of 8, 4, 2 and 1 bytes that is aligned and fits, in order.
  static func barAccesses(_ offset: UInt64, _ count: Int) -> [(offset: UInt64, width: Int)] {
    var accesses: [(offset: UInt64, width: Int)] = []
    var (position, left) = (offset, count)
    while left > 0 {
      let width = [8, 4, 2, 1].first { $0 <= left && position % UInt64($0) == 0 }!
      accesses.append((position, width))
      position &+= UInt64(width)
      left -= width
    }
    return accesses
  }

  func regionWrite(_ file: SimulatedDeviceFile, offset: UInt64, bytes: [UInt8]) throws(Errno) -> Int {
    guard file.binding != nil else { throw .invalidArgument }
    let (index, position, length) = try regionRange(file, offset, bytes.count)
    let data = Array(bytes.prefix(length))
    if index == Int(CIOMMUFD_VFIO_PCI_CONFIG_REGION_INDEX) {
      writeConfig(file, at: Int(position), bytes: data)
    } else {
      var done = 0
      for (start, count, isTable) in Self.barSegments(position, data.count, excluding: file.device.msixTable(inBAR: index)) {
        defer { done += count }
        if isTable { continue }  // dropped, as vfio_pci_bar_rw drops writes to the MSI-X table
        if let memory = file.device.barMemory[index] {
          memory.write(start, Array(data[done..<(done + count)]))
          continue
        }
        var written = done
        for (start, width) in Self.barAccesses(start, count) {
          file.device.writeBAR(index, offset: start, bytes: Array(data[written..<(written + width)]), bus: SimulatedBus(kernel: self, device: file.number))
          written += width
        }
      }
    }
    return length
  }

  /// `vfio_pci_core_mmap` of a bound device: a shared mapping of a BAR the simulator can
  /// map (a memory BAR), within the BAR's page-rounded size; anything else EINVAL (the
  /// simulator cannot trap loads and stores, so register BARs are not mmap-able).
  func mmapRegion(
    _ file: SimulatedDeviceFile, length: Int, protection: Int32, flags: Int32, offset: Int64
  ) throws(Errno) -> UnsafeMutableRawPointer {
    guard file.binding != nil else { throw .invalidArgument }  // CDEV-2
    let page = UInt64(configuration.pageSize)
    guard length > 0, offset >= 0, UInt64(offset) % page == 0 else { throw .invalidArgument }  // mmap(2) itself
    guard UInt64(length) <= (1 << 47) - page else { throw .noMemory }  // larger than the address space (TASK_SIZE)
    guard flags & MAP_SHARED != 0 else { throw .invalidArgument }
    let index = Int(UInt64(offset) >> 40)
    let start = UInt64(offset) & ((1 << 40) - 1)
    guard index < 6, file.device.isMappable(bar: index), let memory = file.device.barMemory[index],
      let bar = file.device.bars[index]
    else { throw .invalidArgument }
    let (requested, overflow) = UInt64(length).addingReportingOverflow(page - 1)
    let physical = (bar.size + page - 1) & ~(page - 1)
    guard !overflow, start + (requested & ~(page - 1)) <= physical else { throw .invalidArgument }
    guard let address = memory.map(length: length, protection: protection, offset: Int64(start)) else { throw .noMemory }
    mappedBAR(ObjectIdentifier(file), at: UInt(bitPattern: address), length: length)
    return address
  }

  /// The region index, offset within it, and the count clipped to its end (EINVAL past it).
  func regionRange(_ file: SimulatedDeviceFile, _ offset: UInt64, _ count: Int) throws(Errno) -> (Int, UInt64, Int) {
    let index = Int(offset >> 40)
    let position = offset & ((1 << 40) - 1)
    let size: UInt64
    switch index {
    case 0..<6:
      guard let bar = file.device.bars[index] else { throw .invalidArgument }
      size = bar.size
    case Int(CIOMMUFD_VFIO_PCI_CONFIG_REGION_INDEX):
      // vfio_config_do_rw: an access that starts or ends past config space is EFAULT, whole.
      let size = UInt64(file.device.config.count)
      if position >= size || UInt64(count) > size - position { throw .badAddress }
      return (index, position, count)
    default:
      throw .invalidArgument
    }
    guard position < size else { throw .invalidArgument }
    return (index, position, Int(min(UInt64(count), size - position)))
  }
}
