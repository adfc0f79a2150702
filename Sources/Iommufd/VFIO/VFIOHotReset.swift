import CIommufd
import SystemPackage

/// A PCI function a hot reset of a device would reset too, as
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` lists it.
public struct VFIOHotResetDevice: Hashable, Sendable, CustomStringConvertible {
  /// Who holds the function, in the form the kernel answered in.
  public enum Owner: Hashable, Sendable {
    /// The legacy (group) form: the function's IOMMU group number.
    case group(Int)
    /// The iommufd form: bound to the caller's iommufd, with this device id.
    case device(ObjectID)
    /// The iommufd form: not bound, but its IOMMU group is owned by the caller's iommufd
    /// through another device it has bound (`VFIO_PCI_DEVID_OWNED`).
    case ownedGroup
    /// The iommufd form: not bound to the caller's iommufd, or not a VFIO device at all
    /// (`VFIO_PCI_DEVID_NOT_OWNED`). A hot reset in the iommufd form cannot be done then.
    case notOwned
  }

  /// The function's address (segment, bus, devfn).
  public var address: PCIAddress
  /// Who holds it.
  public var owner: Owner

  /// Creates the value.
  public init(address: PCIAddress, owner: Owner) {
    self.address = address
    self.owner = owner
  }

  /// `0000:01:00.1 (device 3)`, `(group 7)`, `(group owned)` or `(not owned)`.
  public var description: String {
    switch owner {
    case .group(let number): "\(address) (group \(number))"
    case .device(let id): "\(address) (device \(id.rawValue))"
    case .ownedGroup: "\(address) (group owned)"
    case .notOwned: "\(address) (not owned)"
    }
  }
}

/// What `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` reports: every function a slot or bus reset of
/// the device reaches.
public struct VFIOHotResetInfo: Hashable, Sendable {
  /// The functions, in the kernel's order (the device itself among them).
  public var devices: [VFIOHotResetDevice]
  /// The iommufd form (`VFIO_PCI_HOT_RESET_FLAG_DEV_ID`): owners are device ids; else
  /// they are group numbers.
  public var usesDeviceIDs: Bool
  /// In the iommufd form, whether every function is bound to the caller's iommufd or in a
  /// group it owns (`VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED`): whether ``VFIODevice/hotReset()``
  /// can work. Always false in the group form.
  public var allOwned: Bool

  /// Creates the value.
  public init(devices: [VFIOHotResetDevice], usesDeviceIDs: Bool, allOwned: Bool) {
    self.devices = devices
    self.usesDeviceIDs = usesDeviceIDs
    self.allOwned = allOwned
  }
}

extension VFIODevice {
  /// The functions a hot reset of this device would reset (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`):
  /// those in its slot, or on its bus and the buses below it. A device no slot or bus
  /// reset reaches (one on a root bus) fails with `ENODEV`; a device that is not PCI with
  /// `ENOTTY`.
  public func hotResetInfo() throws(IommufdError) -> VFIOHotResetInfo {
    var capacity = 8
    // The kernel counts, then fills: the count can grow in between (EAGAIN), and a list
    // longer than the buffer answers ENOSPC with the count needed. Each retry is sized by
    // the kernel's count; a bus holds at most 256 × 8 functions below it per bus number.
    for _ in 0..<8 {
      let size = 12 + 8 * capacity
      var needed: Int?
      var answer: VFIOHotResetInfo?
      do throws(IommufdError) {
        try descriptor.withDescriptor(.hotResetInfo) { fd throws(IommufdError) in
          try withScratchBuffer(count: size) { buffer throws(IommufdError) in
            buffer.storeBytes(of: UInt32(size).littleEndian, toByteOffset: 0, as: UInt32.self)
            do throws(IommufdError) {
              try backend.ioctl(fd, CIOMMUFD_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, buffer: buffer, .hotResetInfo, [])
            } catch where error.errno == .noSpace {
              needed = Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
              return
            }
            answer = Self.decodeHotResetInfo(buffer)
          }
        }
      } catch where error.errno == .resourceTemporarilyUnavailable {
        capacity *= 2
        continue
      } catch where error.errno == .operationNotSupportedByDevice && error.detail == nil {
        throw error.unsupported(Self.noHotResetReason)
      } catch where error.errno == .inappropriateIOCTLForDevice && error.detail == nil {
        throw error.unsupported("the device is not a PCI device of vfio-pci (ENOTTY): it has no hot reset")
      } catch {
        throw error
      }
      if let answer { return answer }
      guard let needed, needed > capacity, needed <= 1 << 16 else { break }
      capacity = needed
    }
    throw IommufdError(
      .hotResetInfo, .resourceTemporarilyUnavailable, objects: [],
      detail: "the list of affected devices kept changing while it was read")
  }

  /// Resets this device's slot or bus, and every function on it, through the iommufd form
  /// of `VFIO_DEVICE_PCI_HOT_RESET` (no groups): every function
  /// ``hotResetInfo()`` lists must be bound to the same iommufd as this device (or sit in a
  /// group it owns), and must be a vfio-pci device.
  ///
  /// A failure says why: `ENODEV` when no slot or bus reset reaches the device (it sits on a
  /// root bus), `EINVAL` with the functions in the way (role `"in the way"` in
  /// ``IommufdError/objects``). `EAGAIN` (the bus is locked) and `EBUSY` (a function's
  /// memory is being mapped or accessed by another thread right now) are transient: try again.
  public func hotReset() throws(IommufdError) {
    guard deviceID != nil || descriptor.isClosed else {  // (a closed handle says so below)
      throw IommufdError(
        .hotReset, .invalidArgument,
        detail: "the iommufd form needs the device bound to an iommufd; a device opened through its group uses hotReset(groups:)")
    }
    try hotReset(groupDescriptors: [], groups: [])
  }

  /// Resets this device's slot or bus through the legacy group form of
  /// `VFIO_DEVICE_PCI_HOT_RESET`: `groups` must cover the IOMMU group of every function in
  /// the reset's scope, and hold no more groups than the scope has functions. For a device
  /// opened through its group (``VFIOGroup/openDevice(_:)-(PCIAddress)``); a device opened
  /// through its cdev uses ``hotReset()``. The groups are kept open for the length of the call.
  public func hotReset(groups: [VFIOGroup]) throws(IommufdError) {
    guard !groups.isEmpty else {
      throw IommufdError(
        .hotReset, .invalidArgument,
        detail: "the group form needs the groups of the functions it resets; a device bound to an iommufd uses hotReset()")
    }
    try Self.withGroupDescriptors(groups[...], []) { descriptors throws(IommufdError) in
      try hotReset(groupDescriptors: descriptors, groups: groups.map(\.number))
    }
  }

  private static func withGroupDescriptors(
    _ rest: ArraySlice<VFIOGroup>, _ collected: [Int32], _ body: ([Int32]) throws(IommufdError) -> Void
  ) throws(IommufdError) {
    guard let first = rest.first else { return try body(collected) }
    try first.descriptor.withDescriptor(.hotReset) { fd throws(IommufdError) in
      try withGroupDescriptors(rest.dropFirst(), collected + [fd.rawValue], body)
    }
  }

  private func hotReset(groupDescriptors: [Int32], groups: [Int]) throws(IommufdError) {
    let size = 12 + 4 * groupDescriptors.count
    do throws(IommufdError) {
      try descriptor.withDescriptor(.hotReset) { fd throws(IommufdError) in
        try withScratchBuffer(count: size) { buffer throws(IommufdError) in
          buffer.storeBytes(of: UInt32(size).littleEndian, toByteOffset: 0, as: UInt32.self)
          buffer.storeBytes(of: UInt32(groupDescriptors.count).littleEndian, toByteOffset: 8, as: UInt32.self)
          for (index, group) in groupDescriptors.enumerated() {
            buffer.storeBytes(of: group.littleEndian, toByteOffset: 12 + 4 * index, as: Int32.self)
          }
          try backend.ioctl(fd, CIOMMUFD_VFIO_DEVICE_PCI_HOT_RESET, buffer: buffer, .hotReset, groups.map { .init("group", "\($0)") })
        }
      }
    } catch where error.errno == .operationNotSupportedByDevice && error.detail == nil {
      throw error.unsupported(Self.noHotResetReason)
    } catch where error.errno == .invalidArgument && error.detail == nil {
      throw explainRefusedHotReset(error, groups: groups)
    } catch where error.errno == .inappropriateIOCTLForDevice && error.detail == nil {
      throw error.unsupported("the device is not a PCI device of vfio-pci (ENOTTY): it has no hot reset")
    } catch {
      throw error
    }
  }

  private static let noHotResetReason =
    "no slot or bus reset reaches the device (ENODEV): it sits on a root bus, or the bridge above it cannot reset its bus"

  /// An EINVAL from a hot reset, with the functions in the way as the kernel lists them.
  private func explainRefusedHotReset(_ error: IommufdError, groups: [Int]) -> IommufdError {
    var explained = error
    if !groups.isEmpty && deviceID != nil {
      explained.detail = "the device is bound to an iommufd (opened through its cdev): it resets with hotReset(), without groups"
      return explained
    }
    guard let info = try? hotResetInfo() else {
      explained.detail = "the kernel refused the hot reset (EINVAL), and the affected devices could not be listed"
      return explained
    }
    let inTheWay: [VFIOHotResetDevice]
    let why: String
    if info.usesDeviceIDs {
      inTheWay = info.devices.filter { $0.owner == .notOwned }
      why = "not bound to this device's iommufd (nor in a group it owns), or not a vfio-pci device"
    } else {
      inTheWay = info.devices.filter { if case .group(let number) = $0.owner { !groups.contains(number) } else { false } }
      why = "their groups were not passed"
    }
    explained.objects += inTheWay.map { .init("in the way", $0.address.description) }
    if !inTheWay.isEmpty {
      explained.detail = "functions in the reset's scope are in the way, \(why): " + inTheWay.map(\.description).joined(separator: ", ")
    } else if !info.usesDeviceIDs && groups.count > info.devices.count {
      explained.detail = "more groups (\(groups.count)) than functions in the reset's scope (\(info.devices.count))"
    } else {
      explained.detail = "the kernel refused the hot reset (EINVAL): a function in its scope is not a vfio-pci device, or a group passed is not a VFIO group"
    }
    return explained
  }

  /// The reply of GET_PCI_HOT_RESET_INFO in `buffer`.
  private static func decodeHotResetInfo(_ buffer: UnsafeMutableRawBufferPointer) -> VFIOHotResetInfo {
    let flags = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    let count = min(Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self))), (buffer.count - 12) / 8)
    let usesDeviceIDs = flags & CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID != 0
    let devices = (0..<count).compactMap { index -> VFIOHotResetDevice? in
      let base = 12 + 8 * index
      let id = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: base, as: UInt32.self))
      let segment = UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 4, as: UInt16.self))
      let bus = buffer[base + 6], devfn = buffer[base + 7]
      guard let address = PCIAddress(domain: segment, bus: bus, device: devfn >> 3, function: devfn & 7) else { return nil }
      let owner: VFIOHotResetDevice.Owner
      if !usesDeviceIDs {
        owner = .group(Int(id))
      } else {
        owner = id == 0 ? .ownedGroup : id == UInt32.max ? .notOwned : .device(ObjectID(rawValue: id))
      }
      return VFIOHotResetDevice(address: address, owner: owner)
    }
    return VFIOHotResetInfo(
      devices: devices, usesDeviceIDs: usesDeviceIDs,
      allOwned: usesDeviceIDs && flags & CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED != 0)
  }
}
