/// A PCI function's configuration space, read and written through the device's VFIO config
/// region (vfio-pci virtualizes parts of it: the BARs, the MSI and MSI-X capabilities).
///
/// Every access is bounds-checked against the region; a capability list that points
/// outside the space or loops is an error (`EBADMSG`), never a read past it.
public struct PCIConfigSpace: Sendable {
  /// The device.
  public let device: VFIODevice
  /// The config region (`VFIO_PCI_CONFIG_REGION_INDEX`).
  public let region: VFIORegionInfo

  /// The config space of `device`, which must be bound.
  public init(_ device: VFIODevice) throws(IommufdError) {
    self.device = device
    self.region = try device.regionInfo(VFIOPCIRegion.config)
  }

  /// The size of the space: 256 bytes for conventional PCI, 4096 for PCI Express.
  public var size: UInt64 { region.size }

  /// Reads the little-endian integer at `offset`.
  public func read<T: FixedWidthInteger>(_ type: T.Type, at offset: UInt64) throws(IommufdError) -> T {
    try device.read(type, region: region, at: offset)
  }

  /// Writes the little-endian integer `value` at `offset`.
  public func write<T: FixedWidthInteger>(_ value: T, at offset: UInt64) throws(IommufdError) {
    try device.write(value, region: region, at: offset)
  }

  /// The vendor id (offset 0).
  public func vendorID() throws(IommufdError) -> UInt16 { try read(UInt16.self, at: 0) }

  /// The device id (offset 2).
  public func deviceID() throws(IommufdError) -> UInt16 { try read(UInt16.self, at: 2) }

  /// The class code: base class, subclass and programming interface (offsets 9–11).
  public func classCode() throws(IommufdError) -> UInt32 { try read(UInt32.self, at: 8) >> 8 }

  /// The command register (offset 4).
  public func command() throws(IommufdError) -> PCICommand {
    PCICommand(rawValue: try read(UInt16.self, at: 4))
  }

  /// Writes the command register.
  public func setCommand(_ command: PCICommand) throws(IommufdError) {
    try write(command.rawValue, at: 4)
  }

  /// The status register (offset 6).
  public func status() throws(IommufdError) -> PCIStatus {
    PCIStatus(rawValue: try read(UInt16.self, at: 6))
  }

  /// Reads the command register, changes it with `body` and writes it back; returns what
  /// was written.
  @discardableResult
  public func updateCommand(_ body: (inout PCICommand) -> Void) throws(IommufdError) -> PCICommand {
    var command = try command()
    body(&command)
    try setCommand(command)
    return command
  }

  /// The standard capability list, from the pointer at 0x34 (empty when status bit 4 says
  /// there is none).
  public func capabilities() throws(IommufdError) -> [PCICapability] {
    let bytes = try readAll(count: min(size, 256))
    guard bytes.count >= 64, load(UInt16.self, bytes, 6) & 0x10 != 0 else { return [] }
    var found: [PCICapability] = []
    var seen = Set<Int>()
    var offset = Int(bytes[0x34] & 0xfc)
    while offset != 0 {
      guard offset >= 0x40, offset + 2 <= bytes.count else {
        throw Self.malformed("capability pointer 0x\(String(offset, radix: 16)) lies outside 0x40..<0x\(String(bytes.count, radix: 16))")
      }
      guard seen.insert(offset).inserted else {
        throw Self.malformed("the capability list loops back to 0x\(String(offset, radix: 16))")
      }
      found.append(PCICapability(id: UInt16(bytes[offset]), offset: offset, isExtended: false))
      offset = Int(bytes[offset + 1] & 0xfc)
    }
    return found
  }

  /// The PCI Express extended capability list, from 0x100 (empty on a 256-byte space, or
  /// when 0x100 holds no capability).
  public func extendedCapabilities() throws(IommufdError) -> [PCICapability] {
    guard size >= 4096 else { return [] }
    let bytes = try readAll(count: 4096)
    var found: [PCICapability] = []
    var seen = Set<Int>()
    var offset = 0x100
    while offset != 0 {
      guard offset >= 0x100, offset + 4 <= bytes.count else {
        throw Self.malformed("extended capability pointer 0x\(String(offset, radix: 16)) lies outside 0x100..<0x1000")
      }
      let header = load(UInt32.self, bytes, offset)
      // An empty header at 0x100 (all zeros, or all ones from a device that is gone) ends it.
      if offset == 0x100 && (header == 0 || header == .max) { break }
      guard seen.insert(offset).inserted else {
        throw Self.malformed("the extended capability list loops back to 0x\(String(offset, radix: 16))")
      }
      found.append(PCICapability(id: UInt16(header & 0xffff), offset: offset, isExtended: true))
      offset = Int(header >> 20) & 0xffc
    }
    return found
  }

  /// The first capability with `id` in the standard list (or, for an extended id, the
  /// extended list); nil if there is none.
  public func capability(_ id: UInt16, extended: Bool = false) throws(IommufdError) -> PCICapability? {
    try (extended ? extendedCapabilities() : capabilities()).first { $0.id == id }
  }

  private func readAll(count: UInt64) throws(IommufdError) -> [UInt8] {
    try withScratchBuffer(count: Int(count)) { buffer throws(IommufdError) -> [UInt8] in
      let read = try device.read(region: region, at: 0, into: buffer)
      return Array(buffer.prefix(max(0, min(read, buffer.count))))
    }
  }

  private func load<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
    bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
  }

  private static func malformed(_ detail: String) -> IommufdError {
    IommufdError(.regionRead, .badMessage, objects: [.region(VFIOPCIRegion.config)], detail: "malformed config space: " + detail)
  }
}

/// The PCI command register.
public struct PCICommand: OptionSet, Hashable, Sendable {
  /// The raw register.
  public var rawValue: UInt16
  /// Creates from the raw register.
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// Responds to I/O space accesses.
  public static let ioSpace = PCICommand(rawValue: 1 << 0)
  /// Responds to memory space accesses (its memory BARs decode).
  public static let memorySpace = PCICommand(rawValue: 1 << 1)
  /// May master the bus: without it the device cannot DMA.
  public static let busMaster = PCICommand(rawValue: 1 << 2)
  /// Reports parity errors.
  public static let parityErrorResponse = PCICommand(rawValue: 1 << 6)
  /// Reports system errors (SERR#).
  public static let serr = PCICommand(rawValue: 1 << 8)
  /// INTx is disabled.
  public static let interruptDisable = PCICommand(rawValue: 1 << 10)
}

/// The PCI status register.
public struct PCIStatus: OptionSet, Hashable, Sendable {
  /// The raw register.
  public var rawValue: UInt16
  /// Creates from the raw register.
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// The function's INTx line is asserted (whether or not INTx is disabled or masked).
  public static let interrupt = PCIStatus(rawValue: 1 << 3)
  /// The function has a capability list (at the pointer at 0x34).
  public static let capabilityList = PCIStatus(rawValue: 1 << 4)
}

/// One entry of a capability list of a ``PCIConfigSpace``.
public struct PCICapability: Hashable, Sendable {
  /// The capability id (an extended one for ``isExtended``).
  public var id: UInt16
  /// Where it starts in config space.
  public var offset: Int
  /// Whether it is in the PCI Express extended list.
  public var isExtended: Bool

  /// Creates an entry.
  public init(id: UInt16, offset: Int, isExtended: Bool = false) {
    self.id = id
    self.offset = offset
    self.isExtended = isExtended
  }

  /// Power management.
  public static let powerManagement: UInt16 = 0x01
  /// MSI.
  public static let msi: UInt16 = 0x05
  /// Vendor-specific.
  public static let vendorSpecific: UInt16 = 0x09
  /// PCI Express.
  public static let pciExpress: UInt16 = 0x10
  /// MSI-X.
  public static let msix: UInt16 = 0x11
}
