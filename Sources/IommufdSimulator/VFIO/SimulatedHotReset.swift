import Iommufd
import CIommufd
import SystemPackage

/// Resets of vfio-pci devices: `VFIO_DEVICE_RESET` (a function reset) and
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` / `VFIO_DEVICE_PCI_HOT_RESET` (a slot or bus reset
/// of every function behind a root port), with vfio-pci's checks in its order
/// (`drivers/vfio/pci/vfio_pci_core.c`).
extension SimulatedKernel.State {
  /// `VFIO_DEVICE_RESET`: EINVAL without a reset method (`reset_works`), else the reset.
  func functionReset(_ file: SimulatedDeviceFile) throws(Errno) -> Int32 {
    guard hasFunctionReset(file.number) else { throw .invalidArgument }  // DEV-5
    reset(device: file.number)
    return 0
  }

  /// Whether vfio-pci reports `VFIO_DEVICE_FLAGS_RESET` for device `number` (`reset_works`).
  func hasFunctionReset(_ number: Int) -> Bool {
    topology.resetWorks(of: number, device: devices[number])
  }

  /// What vfio-pci's open does (`vfio_pci_core_enable`, at bind): bus mastering off, memory
  /// decoding on (`pci_enable_device`), a function reset where one works, the header saved
  /// (the close puts it back), then INTx enabled (DisINTx cleared).
  func enable(device number: Int) {
    let device = devices[number]
    device.config[4] &= ~0x4
    if device.bars.contains(where: { $0 != nil }) { device.config[4] |= 0x2 }
    if hasFunctionReset(number) { reset(device: number) }
    openConfig[number] = Array(device.config[0..<64])
    device.config[5] &= ~0x04
  }

  /// What vfio-pci's close does (`vfio_pci_core_disable`): the device needs a reset; a
  /// function reset where one works (which meets the need); the header saved at open
  /// written back; bus mastering off; then, once no other device of its set is open and
  /// one of them needs a reset, a bus reset of the whole set behind a port
  /// (`vfio_pci_dev_set_try_reset`), which meets every need.
  func disable(device number: Int) {
    let device = devices[number]
    needsReset.insert(number)
    if hasFunctionReset(number) {
      reset(device: number)
      needsReset.remove(number)
    }
    if let saved = openConfig.removeValue(forKey: number) { device.config.replaceSubrange(0..<64, with: saved) }
    device.config[4] &= ~0x4
    if let scope = topology.resetScope(of: number), scope.allSatisfy({ $0 == number || boundFiles[$0] == nil }),
      scope.contains(where: needsReset.contains)
    {
      for member in scope { reset(device: member) }
      needsReset.subtract(scope)
    }
  }

  /// The context that owns device `number`'s IOMMU group through a bound device of it
  /// other than `number` (`iommu_device_claim_dma_owner`'s owner), if any.
  func groupOwner(of number: Int) -> SimulatedContext? {
    topology.members(ofGroup: topology.groups[number]).lazy.filter { $0 != number }.compactMap { self.boundFiles[$0]?.binding?.context }.first
  }

  /// One device's reset as the PCI core does it: config space saved, the device reset,
  /// the saved header (and MSI or MSI-X, where enabled) written back
  /// (`pci_dev_save_and_disable`, `pci_dev_restore`). What the model's own reset changed
  /// elsewhere stays; its INTx line is low afterwards.
  func reset(device number: Int) {
    let device = devices[number]
    let saved = device.config
    let msi = device.msiEnabled, msix = device.msixCapability.flatMap { device.msixEnabled ? $0 : nil }
    device.reset()
    var restored = device.config
    restored.replaceSubrange(0..<64, with: saved[0..<64])
    if msi { restored.replaceSubrange(0x40..<0x50, with: saved[0x40..<0x50]) }
    if let msix { restored.replaceSubrange(msix..<(msix + 12), with: saved[msix..<(msix + 12)]) }
    device.config = restored
    intxAsserted.remove(number)  // a reset device asserts nothing
    device.returnToRunning()  // a variant driver's reset_done: RUNNING, the data files disabled
  }

  /// VFIO_PCI_DEVID_NOT_OWNED.
  private static let notOwned = UInt32.max

  /// Device `member`'s id as `caller` sees it in the iommufd form (`vfio_iommufd_get_dev_id`):
  /// its object id when bound to the caller's context; OWNED (0) when not bound but in a
  /// group the caller's context owns; else NOT_OWNED.
  private func ownerID(of member: Int, for caller: SimulatedDeviceFile) -> UInt32 {
    guard let callerContext = caller.binding?.context else { return Self.notOwned }
    if let (context, objectID) = boundFiles[member]?.binding { return context === callerContext ? objectID : Self.notOwned }
    return groupOwner(of: member) === callerContext ? 0 : Self.notOwned
  }

  /// The 8-byte entry of device `member`: its owner id, segment, bus and devfn.
  private func dependentDevice(_ member: Int, ownerID: UInt32) -> [UInt8] {
    let address = topology.addresses[member]
    return UserMemory.encode(ownerID) + UserMemory.encode(UInt16(address.domain)) + [address.bus, address.device << 3 | address.function]
  }

  /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` on a cdev (`vfio_pci_ioctl_get_pci_hot_reset_info`):
  /// the 12-byte header (EFAULT, argsz below 12 EINVAL), ENODEV on the root bus, ENOSPC
  /// with the count needed (flags 0 then), else every function in the scope with the
  /// iommufd-form flags.
  func hotResetInfo(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    let header = try UserMemory.read(address, count: 12)
    let argsz = UserMemory.decode(UInt32.self, from: header)
    if argsz < 12 { throw .invalidArgument }
    guard let scope = topology.resetScope(of: file.number) else { throw .operationNotSupportedByDevice }
    if scope.count > Int((argsz - 12) / 8) {
      try UserMemory.write(UserMemory.encode(argsz) + UserMemory.encode(UInt32(0)) + UserMemory.encode(UInt32(scope.count)), to: address)
      throw .noSpace
    }
    let owners = scope.map { ownerID(of: $0, for: file) }
    let entries = zip(scope, owners).map { dependentDevice($0, ownerID: $1) }
    let allOwned = !owners.contains(Self.notOwned)
    let flags = CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID | (allOwned ? CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED : 0)
    try UserMemory.write(entries.flatMap { $0 }, to: try UserMemory.offset(address, by: 12))
    try UserMemory.write(UserMemory.encode(argsz) + UserMemory.encode(flags) + UserMemory.encode(UInt32(scope.count)), to: address)
    return 0
  }

  /// `VFIO_DEVICE_PCI_HOT_RESET` on a cdev (`vfio_pci_ioctl_pci_hot_reset`): the header
  /// (EFAULT; argsz below 12 or flags EINVAL), a group list EINVAL (a cdev uses the iommufd
  /// form), ENODEV on the root bus, EINVAL unless every function in the scope is bound to
  /// the caller's iommufd; then every function is reset.
  func hotReset(_ file: SimulatedDeviceFile, _ address: UInt64) throws(Errno) -> Int32 {
    let header = try UserMemory.read(address, count: 12)
    let argsz = UserMemory.decode(UInt32.self, from: header)
    let flags = UserMemory.decode(UInt32.self, from: header, offset: 4)
    let count = UserMemory.decode(UInt32.self, from: header, offset: 8)
    if argsz < 12 || flags != 0 { throw .invalidArgument }
    if count != 0 { throw .invalidArgument }  // `!!count == cdev_opened`
    guard let scope = topology.resetScope(of: file.number) else { throw .operationNotSupportedByDevice }
    let owned = scope.allSatisfy { ownerID(of: $0, for: file) != Self.notOwned }
    guard owned else { throw .invalidArgument }
    for member in scope { reset(device: member) }
    return 0
  }
}
