import Iommufd
import CIommufd
import SystemPackage

/// The VFIO cdev of a mediated device: the core's bind, attach and detach for an emulated
/// device (`vfio_iommufd_emulated_*`: an access instead of an IOMMU domain), and the
/// driver's own requests, answered by its ``SimulatedMediatedDevice`` model.
extension SimulatedKernel.State {
  func mediatedIoctl(_ file: SimulatedMediatedFile, _ request: UInt, _ address: UInt64) throws(Errno) -> Int32 {
    let command = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: request))
    if command == CIOMMUFD_VFIO_DEVICE_BIND_IOMMUFD { return try bindMediated(file, address) }
    guard let access = file.access else { throw .invalidArgument }  // not bound: no access granted
    let device = file.instance.device
    switch command {
    case CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT: return try attachMediated(access, address)
    case CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT: return try detachMediated(access, address)
    case CIOMMUFD_VFIO_DEVICE_GET_INFO:
      // The driver copies the struct up to num_irqs in and out.
      var bytes = try vfioArgument(address, 16)
      if UserMemory.decode(UInt32.self, from: bytes) < 16 { throw .invalidArgument }
      let info = try device.info()
      bytes.replaceSubrange(4..<16, with: UserMemory.encode(info.flags) + UserMemory.encode(info.regions) + UserMemory.encode(info.interrupts))
      try UserMemory.write(bytes, to: address)
      return 0
    case CIOMMUFD_VFIO_DEVICE_GET_REGION_INFO:
      // Up to the offset (32 bytes); the index at 8; cap_offset is left as it was.
      var bytes = try vfioArgument(address, 32)
      if UserMemory.decode(UInt32.self, from: bytes) < 32 { throw .invalidArgument }
      let region = try device.region(UserMemory.decode(UInt32.self, from: bytes, offset: 8))
      bytes.replaceSubrange(4..<8, with: UserMemory.encode(region.flags))
      bytes.replaceSubrange(16..<32, with: UserMemory.encode(region.size) + UserMemory.encode(region.offset))
      try UserMemory.write(bytes, to: address)
      return 0
    case CIOMMUFD_VFIO_DEVICE_GET_IRQ_INFO:
      var bytes = try vfioArgument(address, 16)
      if UserMemory.decode(UInt32.self, from: bytes) < 16 { throw .invalidArgument }
      let interrupt = try device.interrupt(UserMemory.decode(UInt32.self, from: bytes, offset: 8))
      bytes.replaceSubrange(4..<8, with: UserMemory.encode(interrupt.flags))
      bytes.replaceSubrange(12..<16, with: UserMemory.encode(interrupt.count))
      try UserMemory.write(bytes, to: address)
      return 0
    case CIOMMUFD_VFIO_DEVICE_SET_IRQS:
      try device.setInterrupts(try mediatedInterruptRequest(address, limit: device.interruptLimit))
      return 0
    case CIOMMUFD_VFIO_DEVICE_RESET:
      try device.reset()
      return 0
    case CIOMMUFD_VFIO_DEVICE_FEATURE:
      return try featureIoctl(.mediated(file), address)
    default:
      throw .inappropriateIOCTLForDevice
    }
  }

  /// `vfio_set_irqs_validate_and_prepare` with `num_irqs` `limit`, then the payload's copy.
  func mediatedInterruptRequest(_ address: UInt64, limit: UInt32) throws(Errno) -> SimulatedMediatedDevice.InterruptRequest {
    let bytes = try vfioArgument(address, 20)
    let argsz = UserMemory.decode(UInt32.self, from: bytes)
    let flags = UserMemory.decode(UInt32.self, from: bytes, offset: 4)
    let index = UserMemory.decode(UInt32.self, from: bytes, offset: 8)
    let start = UserMemory.decode(UInt32.self, from: bytes, offset: 12)
    let count = UserMemory.decode(UInt32.self, from: bytes, offset: 16)
    let known = vfioIRQDataTypes | vfioIRQActions
    if argsz < 20 || index >= limit || count >= UInt32.max - start || flags & ~known != 0 { throw .invalidArgument }
    if start >= limit || start + count > limit { throw .invalidArgument }
    let size: UInt32
    switch flags & vfioIRQDataTypes {
    case CIOMMUFD_VFIO_IRQ_SET_DATA_NONE: size = 0
    case CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL: size = 1
    case CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD: size = 4
    default: throw .invalidArgument
    }
    var data: [UInt8] = []
    if size > 0 {
      if UInt64(argsz - 20) < UInt64(count) * UInt64(size) { throw .invalidArgument }
      data = try UserMemory.read(try UserMemory.offset(address, by: 20), count: Int(count * size))
    }
    return .init(flags: flags, index: index, start: start, count: count, data: data)
  }

  /// `VFIO_DEVICE_BIND_IOMMUFD` of an emulated device: the core's checks, one binding per
  /// device (EINVAL), then `iommufd_access_create`: an access with the next id, which the
  /// reply carries and which holds the context.
  func bindMediated(_ file: SimulatedMediatedFile, _ address: UInt64) throws(Errno) -> Int32 {
    let context = try bindTarget(address, alreadyBound: file.access != nil, matchesTokens: false)
    if file.instance.boundFile != nil { throw .invalidArgument }  // the device is open through another descriptor
    let id = try allocateID(context)
    context.objects[id] = .access
    let access = SimulatedAccess(context: context, objectID: id, needsPinPages: true, ioasID: nil)
    do {
      try UserMemory.write(UserMemory.encode(id), to: try UserMemory.offset(address, by: 12))
    } catch {
      context.objects[id] = nil  // the bind is undone: the access goes
      throw error
    }
    access.device = file.instance.device
    context.accessFiles += 1
    file.access = access
    file.instance.boundFile = file
    file.instance.device.link = SimulatedMediatedLink(state: self, access: access)
    return 0
  }

  /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` of an emulated device: an IOAS only (anything else,
  /// an HW page table included, is ENOENT); attached already, a replace (the same IOAS
  /// does nothing). The reply carries the id it was given: there is no page table.
  func attachMediated(_ access: SimulatedAccess, _ address: UInt64) throws(Errno) -> Int32 {
    let bytes = try vfioArgument(address, 12)
    let argsz = UserMemory.decode(UInt32.self, from: bytes)
    let flags = UserMemory.decode(UInt32.self, from: bytes, offset: 4)
    let ptID = UserMemory.decode(UInt32.self, from: bytes, offset: 8)
    try checkMediatedAttachFlags(argsz: argsz, flags: flags)
    try replaceAccessIOAS(access, ioasID: ptID)
    do {
      try UserMemory.write(UserMemory.encode(ptID), to: try UserMemory.offset(address, by: 8))
    } catch {
      detachAccess(access)  // a failed reply detaches, whatever was attached before (EFAULT)
      throw error
    }
    return 0
  }

  /// `VFIO_DEVICE_DETACH_IOMMUFD_PT` of an emulated device: always succeeds once the
  /// struct passes; detaching what is not attached does nothing.
  func detachMediated(_ access: SimulatedAccess, _ address: UInt64) throws(Errno) -> Int32 {
    let bytes = try vfioArgument(address, 8)
    try checkMediatedAttachFlags(argsz: UserMemory.decode(UInt32.self, from: bytes), flags: UserMemory.decode(UInt32.self, from: bytes, offset: 4), minimum: 8)
    detachAccess(access)
    return 0
  }

  /// The struct checks of attach and detach: too short or an unknown flag EINVAL; 7.2's
  /// PASID flag EOPNOTSUPP, as an emulated driver has no PASID attach.
  private func checkMediatedAttachFlags(argsz: UInt32, flags: UInt32, minimum: UInt32 = 12) throws(Errno) {
    let pasid: UInt32 = isLinux7_2 ? CIOMMUFD_VFIO_DEVICE_ATTACH_PASID : 0
    if argsz < minimum || flags & ~pasid != 0 { throw .invalidArgument }
    if flags & pasid != 0 { throw .notSupported }
  }

  /// A region read of a mediated device: EINVAL before bind; a negative offset EINVAL (the
  /// VFS's check); else the model's.
  func mediatedRead(_ file: SimulatedMediatedFile, offset: Int64, count: Int) throws(Errno) -> [UInt8] {
    guard file.access != nil, offset >= 0 else { throw .invalidArgument }
    if count == 0 { return [] }
    return try file.instance.device.read(at: UInt64(offset), count: count)
  }

  /// A region write of a mediated device, checked as ``mediatedRead(_:offset:count:)``.
  func mediatedWrite(_ file: SimulatedMediatedFile, offset: Int64, bytes: [UInt8]) throws(Errno) -> Int {
    guard file.access != nil, offset >= 0 else { throw .invalidArgument }
    if bytes.isEmpty { return 0 }
    return try file.instance.device.write(bytes, at: UInt64(offset))
  }

  /// The last close of a mediated device's descriptor: bound, the driver closes the device
  /// and the access goes (detached first, its id freed), letting its context go.
  func closeMediated(_ file: SimulatedMediatedFile) {
    file.instance.openFiles -= 1
    guard let access = file.access else { return }
    file.instance.device.didClose()
    file.instance.device.disableMigrationFiles()
    file.instance.device.precopyInfoV2 = false  // the core clears 7.2's opt-in on the last close
    closeAccess(access)
    access.device = nil
    file.access = nil
    file.instance.boundFile = nil
    file.instance.device.link = nil
  }
}
