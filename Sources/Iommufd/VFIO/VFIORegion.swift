import CIommufd
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What `VFIO_DEVICE_GET_REGION_INFO` reports for one region.
public struct VFIORegionInfo: Hashable, Sendable {
  /// `VFIO_REGION_INFO_FLAG_*`.
  public struct Flags: OptionSet, Hashable, Sendable {
    /// The raw flags.
    public var rawValue: UInt32
    /// Creates from the raw flags.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The region can be read.
    public static let readable = Flags(rawValue: 1 << 0)
    /// The region can be written.
    public static let writable = Flags(rawValue: 1 << 1)
    /// The region (or the areas of its sparse-mmap capability) can be mmapped.
    public static let mappable = Flags(rawValue: 1 << 2)
    /// The reply carries a capability chain.
    public static let capabilities = Flags(rawValue: 1 << 3)
  }

  /// The region index (on PCI: 0–5 BARs, 6 ROM, 7 config space, 8 VGA, 9+ device-specific).
  public var index: Int
  /// The region flags.
  public var flags: Flags
  /// The size in bytes (0 for an absent BAR).
  public var size: UInt64
  /// The region's offset in the device descriptor, for pread/pwrite/mmap.
  public var offset: UInt64
  /// The region capabilities, in chain order.
  public var capabilities: [VFIOCapability]

  /// Creates the value.
  public init(index: Int, flags: Flags, size: UInt64, offset: UInt64, capabilities: [VFIOCapability] = []) {
    self.index = index
    self.flags = flags
    self.size = size
    self.offset = offset
    self.capabilities = capabilities
  }

  /// The areas that may be mmapped: the sparse-mmap areas if the region has that
  /// capability, else the whole region if it is mappable, else none.
  public var mappableAreas: [VFIOSparseMMapArea] {
    for capability in capabilities {
      if case .sparseMMap(let areas) = capability { return areas }
    }
    return flags.contains(.mappable) && size > 0 ? [VFIOSparseMMapArea(offset: 0, size: size)] : []
  }
}

/// Well-known PCI region indexes.
public enum VFIOPCIRegion {
  /// BAR `n` (0–5).
  public static func bar(_ n: Int) -> Int { n }
  /// The expansion ROM.
  public static let rom = 6
  /// PCI configuration space.
  public static let config = 7
  /// Legacy VGA ranges.
  public static let vga = 8
}

extension VFIODevice {
  /// Describes region `index`, including its capability chain.
  public func regionInfo(_ index: Int) throws(IommufdError) -> VFIORegionInfo {
    guard index >= 0, index <= Int(UInt32.max) else {
      throw IommufdError(.deviceGetRegionInfo, .invalidArgument, objects: [.region(index)], detail: "region index must be 0 or more")
    }
    let bytes = try descriptor.queryWithCapabilities(
      CIOMMUFD_VFIO_DEVICE_GET_REGION_INFO, .deviceGetRegionInfo, [.region(index)],
      baseSize: MemoryLayout<ciommufd_vfio_region_info>.size
    ) { buffer in
      buffer.storeBytes(of: UInt32(index), toByteOffset: 8, as: UInt32.self)
    }
    let raw = bytes.withUnsafeBytes { $0.loadUnaligned(as: ciommufd_vfio_region_info.self) }
    let capabilities = try VFIOCapabilityChain.parse(
      bytes, firstOffset: raw.flags & CIOMMUFD_VFIO_REGION_INFO_FLAG_CAPS != 0 ? raw.cap_offset : 0,
      operation: .deviceGetRegionInfo, isRegion: true)
    return VFIORegionInfo(
      index: index, flags: .init(rawValue: raw.flags), size: raw.size, offset: raw.offset,
      capabilities: capabilities)
  }

  /// Reads `buffer.count` bytes at `offset` within `region`; returns the bytes read.
  @discardableResult
  public func read(
    region: VFIORegionInfo, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer
  ) throws(IommufdError) -> Int {
    let position = try checkAccess(region, offset, buffer.count, .regionRead)
    return try descriptor.withDescriptor(.regionRead) { fd throws(IommufdError) in
      do throws(Errno) {
        let count = try backend.calls.pread(fd, into: buffer, offset: position)
        backend.trace("pread fd \(fd.rawValue) region \(region.index)+0x\(String(offset, radix: 16)) -> \(count)")
        return count
      } catch {
        throw IommufdError(.regionRead, error, objects: [.fd(fd), .region(region.index)])
      }
    }
  }

  /// Writes `bytes` at `offset` within `region`; returns the bytes written.
  @discardableResult
  public func write(
    region: VFIORegionInfo, at offset: UInt64, from bytes: UnsafeRawBufferPointer
  ) throws(IommufdError) -> Int {
    let position = try checkAccess(region, offset, bytes.count, .regionWrite)
    return try descriptor.withDescriptor(.regionWrite) { fd throws(IommufdError) in
      do throws(Errno) {
        let count = try backend.calls.pwrite(fd, from: bytes, offset: position)
        backend.trace("pwrite fd \(fd.rawValue) region \(region.index)+0x\(String(offset, radix: 16)) -> \(count)")
        return count
      } catch {
        throw IommufdError(.regionWrite, error, objects: [.fd(fd), .region(region.index)])
      }
    }
  }

  /// Reads a little-endian integer at `offset` within `region`.
  public func read<T: FixedWidthInteger>(_ type: T.Type, region: VFIORegionInfo, at offset: UInt64) throws(IommufdError) -> T {
    var value = T.zero
    let count = try withUnsafeMutableBytes(of: &value) { bytes throws(IommufdError) in
      try read(region: region, at: offset, into: bytes)
    }
    guard count == MemoryLayout<T>.size else {
      throw IommufdError(.regionRead, .ioError, objects: [.region(region.index)], detail: "short read: \(count) of \(MemoryLayout<T>.size) bytes")
    }
    return T(littleEndian: value)
  }

  /// Writes a little-endian integer at `offset` within `region`.
  public func write<T: FixedWidthInteger>(_ value: T, region: VFIORegionInfo, at offset: UInt64) throws(IommufdError) {
    var littleEndian = value.littleEndian
    let count = try withUnsafeBytes(of: &littleEndian) { bytes throws(IommufdError) in
      try write(region: region, at: offset, from: bytes)
    }
    guard count == MemoryLayout<T>.size else {
      throw IommufdError(.regionWrite, .ioError, objects: [.region(region.index)], detail: "short write: \(count) of \(MemoryLayout<T>.size) bytes")
    }
  }

  /// Maps `length` bytes at `offset` within `region` into memory (`mmap` of the device fd).
  ///
  /// The range must lie in one of the region's ``VFIORegionInfo/mappableAreas`` (EINVAL);
  /// a range whose end, or whose offset in the descriptor, passes 2^63 is EOVERFLOW, as
  /// `mmap` answers.
  public func map(region: VFIORegionInfo, offset: UInt64 = 0, length: UInt64? = nil) throws(IommufdError) -> MappedRegion {
    let length = length ?? (region.size - min(offset, region.size))
    let (end, endOverflows) = offset.addingReportingOverflow(length)
    guard !endOverflows else {
      throw IommufdError(
        .regionMap, .overflow, objects: [.region(region.index)],
        detail: "offset 0x\(String(offset, radix: 16)) + length 0x\(String(length, radix: 16)) overflows")
    }
    let inside = region.mappableAreas.contains { area in
      let (areaEnd, areaOverflows) = area.offset.addingReportingOverflow(area.size)
      return offset >= area.offset && (areaOverflows || end <= areaEnd)
    }
    guard length > 0, inside else {
      throw IommufdError(
        .regionMap, .invalidArgument, objects: [.region(region.index)],
        detail: "0x\(String(offset, radix: 16))+0x\(String(length, radix: 16)) is not inside a mappable area of the region")
    }
    let position = try fileOffset(region, offset, length, .regionMap, .overflow)
    guard let byteCount = Int(exactly: length) else {
      throw IommufdError(
        .regionMap, .noMemory, objects: [.region(region.index)],
        detail: "length 0x\(String(length, radix: 16)) is larger than the address space")
    }
    var protection: Int32 = 0
    if region.flags.contains(.readable) { protection |= PROT_READ }
    if region.flags.contains(.writable) { protection |= PROT_WRITE }
    let address = try descriptor.withDescriptor(.regionMap) { fd throws(IommufdError) in
      do throws(Errno) {
        let address = try backend.calls.mmap(
          length: byteCount, protection: protection, flags: MAP_SHARED, fd: fd, offset: position)
        backend.trace("mmap fd \(fd.rawValue) region \(region.index)+0x\(String(offset, radix: 16)) len 0x\(String(length, radix: 16)) -> \(address)")
        return address
      } catch {
        throw IommufdError(.regionMap, error, objects: [.fd(fd), .region(region.index)])
      }
    }
    return MappedRegion(device: self, index: region.index, address: address, length: byteCount)
  }

  /// Checks that `count` bytes at `offset` lie in `region`; returns the descriptor offset
  /// for pread or pwrite (EINVAL past the region or past `Int64.max`, as `pread` answers).
  private func checkAccess(
    _ region: VFIORegionInfo, _ offset: UInt64, _ count: Int, _ operation: IommufdError.Operation
  ) throws(IommufdError) -> Int64 {
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= region.size else {
      throw IommufdError(
        operation, .invalidArgument, objects: [.region(region.index)],
        detail: "\(count) bytes at 0x\(String(offset, radix: 16)) run past the region's 0x\(String(region.size, radix: 16)) bytes")
    }
    return try fileOffset(region, offset, UInt64(count), operation, .invalidArgument)
  }

  /// The descriptor offset of `offset` within `region`, when it and the `length` bytes after
  /// it fit in a file offset (`loff_t`); else `errno`.
  private func fileOffset(
    _ region: VFIORegionInfo, _ offset: UInt64, _ length: UInt64, _ operation: IommufdError.Operation, _ errno: Errno
  ) throws(IommufdError) -> Int64 {
    let (position, overflow) = region.offset.addingReportingOverflow(offset)
    let (end, endOverflow) = position.addingReportingOverflow(length)
    guard !overflow, !endOverflow, end <= UInt64(Int64.max), let result = Int64(exactly: position) else {
      throw IommufdError(
        operation, errno, objects: [.region(region.index)],
        detail: "region offset 0x\(String(region.offset, radix: 16)) + offset 0x\(String(offset, radix: 16)) + length 0x\(String(length, radix: 16)) passes the largest file offset")
    }
    return result
  }
}

/// A device region mapped into memory; unmapped on ``unmap()`` or release.
///
/// Loads and stores are volatile and happen exactly once at their width, as MMIO needs;
/// an unaligned or out-of-range offset is an error, never an access. Accesses and
/// ``unmap()`` exclude each other (a read-write lock: accesses share it), so no access
/// lands in memory mapped at the same address after the unmap. Keeps the device open
/// while it lives.
public final class MappedRegion: @unchecked Sendable {
  /// The device the region belongs to.
  public let device: VFIODevice
  /// The region index.
  public let index: Int
  /// The mapped length in bytes.
  public let length: Int
  private let address: UnsafeMutableRawPointer
  /// Accesses are readers, the unmap the writer (one atomic word: an access costs two
  /// atomic operations and no lock).
  private let gate = ReaderWriterGate()
  /// Read by readers of the gate, written by its writer.
  @exclusivity(unchecked) private var unmapped = false

  init(device: VFIODevice, index: Int, address: UnsafeMutableRawPointer, length: Int) {
    self.device = device
    self.index = index
    self.address = address
    self.length = length
  }

  /// The host virtual address of the mapping, for what needs the raw memory: a VMM's
  /// `KVM_SET_USER_MEMORY_REGION`, so the guest reaches the BAR directly.
  ///
  /// Unsafe: accesses through it bypass the region's checks (width, bounds) and its
  /// exclusion with ``unmap()``; the address is valid only until the region is unmapped
  /// or released, and KVM must drop its memory slot before that.
  public var unsafeHostAddress: UnsafeMutableRawPointer { address }

  /// Reads the 8-bit register at `offset`.
  public func load8(at offset: Int) throws(IommufdError) -> UInt8 {
    try access(offset, 1) { ciommufd_mmio_read8($0) }
  }

  /// Writes the 8-bit register at `offset`.
  public func store8(_ value: UInt8, at offset: Int) throws(IommufdError) {
    try access(offset, 1) { ciommufd_mmio_write8($0, value) }
  }

  /// Reads the 16-bit register at `offset` (aligned to 2).
  public func load16(at offset: Int) throws(IommufdError) -> UInt16 {
    try access(offset, 2) { ciommufd_mmio_read16($0) }
  }

  /// Writes the 16-bit register at `offset` (aligned to 2).
  public func store16(_ value: UInt16, at offset: Int) throws(IommufdError) {
    try access(offset, 2) { ciommufd_mmio_write16($0, value) }
  }

  /// Reads the 32-bit register at `offset`.
  public func load32(at offset: Int) throws(IommufdError) -> UInt32 {
    try access(offset, 4) { ciommufd_mmio_read32($0) }
  }

  /// Writes the 32-bit register at `offset`.
  public func store32(_ value: UInt32, at offset: Int) throws(IommufdError) {
    try access(offset, 4) { ciommufd_mmio_write32($0, value) }
  }

  /// Reads the 64-bit register at `offset`.
  public func load64(at offset: Int) throws(IommufdError) -> UInt64 {
    try access(offset, 8) { ciommufd_mmio_read64($0) }
  }

  /// Writes the 64-bit register at `offset`.
  public func store64(_ value: UInt64, at offset: Int) throws(IommufdError) {
    try access(offset, 8) { ciommufd_mmio_write64($0, value) }
  }

  /// Unmaps now, once no access is in flight; later loads and stores fail with `EFAULT`.
  /// A second call does nothing. If the unmap fails, the region stays mapped and usable,
  /// a later call tries again, and the release does too.
  public func unmap() throws(IommufdError) {
    try gate.write { () throws(IommufdError) in
      if unmapped { return }
      do throws(Errno) { try device.backend.calls.munmap(address, length: length) } catch {
        throw IommufdError(.memoryUnmap, error, objects: [.region(index)])
      }
      unmapped = true
    }
  }

  private func access<R>(_ offset: Int, _ width: Int, _ body: (UnsafeMutableRawPointer) -> R) throws(IommufdError) -> R {
    guard offset >= 0, offset % width == 0, offset <= length - width else {
      throw IommufdError(
        .regionMap, .invalidArgument, objects: [.region(index)],
        detail: "\(width)-byte access at \(offset) is unaligned or outside the \(length)-byte mapping")
    }
    return try gate.read { () throws(IommufdError) -> R in
      guard !unmapped else {
        throw IommufdError(.regionMap, .badAddress, objects: [.region(index)], detail: "the region was unmapped")
      }
      return body(address + offset)
    }
  }

  deinit {
    if !unmapped {
      do { try device.backend.calls.munmap(address, length: length) } catch {
        device.backend.logger.error("munmap of region \(index) failed: \(error)")
      }
    }
  }
}
