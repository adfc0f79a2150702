import Iommufd

/// vfio-pci's view of a device's configuration space over the device model's
/// (`vfio_pci_config.c`, `init_pci_cap_basic_perm`): in the standard header only the
/// command register, cache line size, latency timer and BIST reach the device; the BAR and
/// ROM registers are vfio-pci's own (virtual: written freely, read back masked to the BAR's
/// size with its flags, `vfio_bar_fixup`), and so is the interrupt line; every other byte of
/// the header (ids, class, revision, header type, subsystem ids, the capability pointer,
/// the interrupt pin) is read-only. Capabilities after the header go to the model.
extension SimulatedKernel.State {
  /// Where config-space byte `offset` lies in the virtual BAR registers (0x10–0x27 the
  /// BARs, 0x30–0x33 the ROM), if it does.
  static func virtualBARSlot(_ offset: Int) -> Int? {
    switch offset {
    case 0x10..<0x28: offset - 0x10
    case 0x30..<0x34: offset - 0x30 + 24
    default: nil
    }
  }

  /// Header bytes a write reaches the device at: command, cache line size, latency timer,
  /// BIST, and the interrupt line (virtual in the kernel; the model stores it alike).
  static func writableHeaderByte(_ offset: Int) -> Bool {
    [0x04, 0x05, 0x0C, 0x0D, 0x0F, 0x3C].contains(offset)
  }

  /// `count` bytes of config space at `offset` (inside it), as the user reads them.
  func readConfig(_ file: SimulatedDeviceFile, at offset: Int, count: Int) -> [UInt8] {
    var bytes = Array(file.device.config[offset..<(offset + count)])
    let registers = virtualBARRegisters(file)
    for index in bytes.indices {
      if let slot = Self.virtualBARSlot(offset + index) { bytes[index] = registers[slot] }
      // Status bit 3, the interrupt status: the device's INTx line, whatever masks it.
      if offset + index == 6 { bytes[index] = bytes[index] & ~0x08 | (intxAsserted.contains(file.number) ? 0x08 : 0) }
    }
    return bytes
  }

  /// Writes `bytes` at `offset` (inside config space) as vfio-pci does: BAR and ROM bytes to
  /// the virtual registers, writable header bytes and capabilities to the model in runs,
  /// the rest of the header dropped.
  func writeConfig(_ file: SimulatedDeviceFile, at offset: Int, bytes: [UInt8]) {
    var registers = storedBARRegisters(file)
    var run: (start: Int, bytes: [UInt8])?
    func flush() {
      if let pending = run { file.device.writeConfig(offset: pending.start, bytes: pending.bytes) }
      run = nil
    }
    for (index, byte) in bytes.enumerated() {
      let position = offset + index
      if let slot = Self.virtualBARSlot(position) {
        registers[slot] = byte
        flush()
      } else if position < 0x40 && !Self.writableHeaderByte(position) {
        flush()  // read-only to the user
      } else if run == nil {
        run = (position, [byte])
      } else {
        run!.bytes.append(byte)
      }
    }
    flush()
    virtualBARs[file.number] = registers
  }

  /// The BAR registers as the user last wrote them (from the device's config space when
  /// the device was opened: vfio-pci copies it into its virtual config).
  func storedBARRegisters(_ file: SimulatedDeviceFile) -> [UInt8] {
    virtualBARs[file.number] ?? Array(file.device.config[0x10..<0x28]) + Array(file.device.config[0x30..<0x34])
  }

  /// `vfio_bar_fixup`: the BAR registers as read, each masked to its BAR's size with its
  /// flags (memory, 64-bit, prefetchable); a BAR the machine gave no address 0 ("unmapped by
  /// host"), the upper half of a 64-bit BAR masked with the size's upper bits; the ROM 0
  /// (no simulated device has one). Writing all ones and reading back sizes a BAR.
  func virtualBARRegisters(_ file: SimulatedDeviceFile) -> [UInt8] {
    let stored = storedBARRegisters(file)
    let layout = SimulatedBARLayout(device: file.device, number: file.number)
    var result = [UInt8](repeating: 0, count: 28)
    func load(_ slot: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(stored[slot + $1]) << (8 * UInt32($1)) } }
    func store(_ value: UInt32, _ slot: Int) {
      for byte in 0..<4 { result[slot + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte))) }
    }
    var index = 0
    while index < 6 {
      defer { index += 1 }
      guard layout.starts[index] != nil, let bar = file.device.bars[index] else { continue }
      let mask = ~(bar.size &- 1)
      let is64Bit = file.device.is64Bit(bar: index)
      store(load(4 * index) & UInt32(truncatingIfNeeded: mask) | layout.flagBits(index), 4 * index)
      if is64Bit {
        store(load(4 * index + 4) & UInt32(truncatingIfNeeded: mask >> 32), 4 * index + 4)
        index += 1
      }
    }
    return result
  }
}
