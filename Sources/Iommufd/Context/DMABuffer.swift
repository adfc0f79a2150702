import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Memory for DMA: page-aligned anonymous memory owned by the handle and unmapped on
/// release, or (``init(unsafeBorrowing:backend:)``) memory the caller owns.
///
/// Mappings made with ``IOAS/map(_:at:access:)`` keep the buffer alive. The contents are
/// plain memory shared with the device: synchronize access to them yourself.
public final class DMABuffer: @unchecked Sendable {
  /// The memory. Valid while the buffer lives.
  public let bytes: UnsafeMutableRawBufferPointer
  private let backend: Backend
  /// Whether the buffer unmaps its memory on release (false: borrowed, its owner does).
  public let ownsMemory: Bool

  /// Allocates `length` bytes (rounded up to the page size), zero-filled. A length that
  /// cannot be rounded up fails with ENOMEM, as `mmap` answers for one too large.
  public init(length: Int, backend: Backend = .kernel) throws(IommufdError) {
    guard length > 0 else {
      throw IommufdError(.memoryMap, .invalidArgument, detail: "a DMA buffer needs a length above 0")
    }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let (padded, overflow) = length.addingReportingOverflow(page - 1)
    guard !overflow else {
      throw IommufdError(.memoryMap, .noMemory, detail: "length \(length) rounded up to the \(page)-byte page overflows")
    }
    let rounded = padded / page * page
    do throws(Errno) {
      let address = try backend.calls.mmap(
        length: rounded, protection: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: nil, offset: 0)
      backend.trace("mmap anonymous \(rounded) -> \(address)")
      self.bytes = UnsafeMutableRawBufferPointer(start: address, count: rounded)
    } catch {
      throw IommufdError(.memoryMap, error, detail: "anonymous memory of \(rounded) bytes")
    }
    self.backend = backend
    self.ownsMemory = true
  }

  /// Uses memory the caller owns, such as a VMM's existing guest RAM, so that it can be
  /// mapped with an owned ``DMAMapping``. The caller keeps `bytes` mapped, readable and
  /// writable as the mappings' access asks, until the buffer and every mapping of it are
  /// released; the buffer never unmaps it. An empty buffer or one without an address is
  /// `EINVAL`.
  public init(unsafeBorrowing bytes: UnsafeMutableRawBufferPointer, backend: Backend = .kernel) throws(IommufdError) {
    guard bytes.baseAddress != nil, bytes.count > 0 else {
      throw IommufdError(.memoryMap, .invalidArgument, detail: "a borrowed DMA buffer needs an address and a length above 0")
    }
    self.bytes = bytes
    self.backend = backend
    self.ownsMemory = false
  }

  /// Takes ownership of `bytes`, a mapping made with `backend` (``GuestMemory``'s shared
  /// mapping of its memory file): unmapped on release.
  init(adopting bytes: UnsafeMutableRawBufferPointer, backend: Backend) {
    self.bytes = bytes
    self.backend = backend
    self.ownsMemory = true
  }

  deinit {
    guard ownsMemory else { return }
    do { try backend.calls.munmap(bytes.baseAddress!, length: bytes.count) } catch {
      backend.logger.error("munmap of a DMA buffer failed: \(error)")
    }
  }
}

/// An address space a device does DMA through: an ``IOAS``, or a legacy ``VFIOContainer``.
public protocol DMAAddressSpace: AnyObject, Sendable {
  /// Maps `length` bytes of this process's memory at `address`; returns the IOVA.
  func unsafeMap(address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement, access: DMAAccess)
    throws(IommufdError) -> UInt64
  /// Unmaps `length` bytes at `iova`; returns the bytes unmapped.
  @discardableResult
  func unmap(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64
  /// The usable IOVA ranges and the alignment mappings must respect.
  func iovaRanges() throws(IommufdError) -> IOVARanges
  /// The backend the space's calls go through.
  var backend: Backend { get }
  /// Whether the descriptor the space lives in was closed (then nothing is left to unmap).
  var isClosed: Bool { get }
}

extension DMAAddressSpace {
  /// Maps `buffer` and returns a mapping that unmaps itself when released.
  ///
  /// The mapping keeps `buffer` alive, so the device can never reach freed memory.
  public func map(
    _ buffer: DMABuffer, at placement: IOVAPlacement = .anywhere, access: DMAAccess = .readWrite
  ) throws(IommufdError) -> DMAMapping {
    let address = UnsafeRawPointer(buffer.bytes.baseAddress!)
    let length = UInt64(buffer.bytes.count)
    let type = ObjectIdentifier(Swift.type(of: self))
    if type == ObjectIdentifier(IOAS.self) {
      return try unsafeDowncast(self, to: IOAS.self).mapRecorded(buffer, address, length, placement, access)
    }
    if type == ObjectIdentifier(VFIOContainer.self) {
      return try unsafeDowncast(self, to: VFIOContainer.self).mapRecorded(buffer, address, length, placement, access)
    }
    let iova = try unsafeMap(address: address, length: length, at: placement, access: access)
    return DMAMapping(space: self, buffer: buffer, iova: iova, length: length, access: access)
  }
}

extension MappingTracking {
  /// The map of a space that records its mappings (the library's own, found by their exact
  /// class: both are final, and a compare costs less than a cast): the map and its record
  /// in one change of the space, so no unmap through the space falls between them.
  @inline(__always)
  func mapRecorded(
    _ buffer: DMABuffer, _ address: UnsafeRawPointer, _ length: UInt64, _ placement: IOVAPlacement, _ access: DMAAccess
  ) throws(IommufdError) -> DMAMapping {
    try mapRecorded(buffer, length: length, access: access, source: .userAddress) { () throws(IommufdError) -> UInt64 in
      try unsafeMap(address: address, length: length, at: placement, access: access)
    }
  }

  /// A mapping of (part of) `buffer` that `map` makes and returns the IOVA of, recorded
  /// in the same change of the space.
  @inline(__always)
  func mapRecorded(
    _ buffer: DMABuffer, length: UInt64, access: DMAAccess, source: DMAMapping.Source,
    _ map: () throws(IommufdError) -> UInt64
  ) throws(IommufdError) -> DMAMapping {
    try mappings.changes.read { () throws(IommufdError) -> DMAMapping in
      let iova = try map()
      let mapping = DMAMapping(space: self, buffer: buffer, iova: iova, length: length, access: access, source: source)
      mappings.add(mapping.range, mapping)
      return mapping
    }
  }
}

/// A mapping of a ``DMABuffer`` into a ``DMAAddressSpace``; unmapped on ``unmap()`` or
/// release.
///
/// Keeps the address space and the buffer alive. Once its range was unmapped through the
/// space (``IOAS/unmapAll()``, an unmap covering it, or a new mapping over it), it owns
/// nothing: ``unmap()`` and the release do nothing then, so they never remove another
/// mapping that took the same IOVAs. An unmap that fails keeps the mapping: a later
/// ``unmap()`` tries again, and so does the release.
public final class DMAMapping: Sendable {
  /// The address space.
  public let space: any DMAAddressSpace
  /// The memory behind the mapping.
  public let buffer: DMABuffer
  /// Where the device sees the buffer.
  public let iova: UInt64
  /// The mapped length in bytes.
  public let length: UInt64
  /// What the device may do through it.
  public let access: DMAAccess
  /// How the kernel was given the memory.
  public let source: Source
  /// Whether the range is still this mapping's; the space's record clears it.
  let ownership = MappingOwnership()

  /// How the kernel was given a mapping's memory.
  public enum Source: Hashable, Sendable {
    /// By its address in this process (`IOMMU_IOAS_MAP`, `VFIO_IOMMU_MAP_DMA`).
    case userAddress
    /// By file and offset (`IOMMU_IOAS_MAP_FILE`, Linux 6.13 and later): the kernel holds
    /// the file, not this process's mapping of it.
    case file(offset: UInt64)
  }

  init(
    space: any DMAAddressSpace, buffer: DMABuffer, iova: UInt64, length: UInt64, access: DMAAccess,
    source: Source = .userAddress
  ) {
    self.space = space
    self.buffer = buffer
    self.iova = iova
    self.length = length
    self.access = access
    self.source = source
  }

  /// The IOVA range of the mapping.
  public var range: IOVARange { IOVARange(start: iova, last: iova &+ (length &- 1)) }

  /// Whether the mapping still owns its range (it was not unmapped, by itself or through
  /// its space).
  public var isMapped: Bool { ownership.isOwned }

  /// Unmaps now. A call on a mapping already unmapped does nothing; one that fails leaves
  /// the mapping in place, to be tried again.
  public func unmap() throws(IommufdError) {
    // The library's own spaces record their mappings: found by their exact class, as
    // the map found them.
    let type = ObjectIdentifier(Swift.type(of: space))
    if type == ObjectIdentifier(IOAS.self) { return try unmap(recordedIn: unsafeDowncast(space, to: IOAS.self)) }
    if type == ObjectIdentifier(VFIOContainer.self) {
      return try unmap(recordedIn: unsafeDowncast(space, to: VFIOContainer.self))
    }
    try ownership.serializingUnmaps { () throws(IommufdError) in
      guard isMapped else { return }
      try unmapOwnRange(nil) { () throws(IommufdError) in try space.unmap(iova: iova, length: length) }
    }
  }

  /// The unmap in a space that records its mappings: as a writer of the space's changes,
  /// with no other unmap or map in flight, so whether the range is still this mapping's
  /// is then what the kernel has.
  @inline(__always)
  private func unmap(recordedIn space: some MappingTracking) throws(IommufdError) {
    try space.mappings.changes.write { () throws(IommufdError) in
      guard isMapped else { return }
      try unmapOwnRange(space.mappings) { () throws(IommufdError) in _ = try space.unmapMapping(iova: iova, length: length) }
    }
  }

  /// Runs `unmap` and marks the range no longer this mapping's (also when the kernel says
  /// nothing was there: nothing is left to own). With a record, runs as the writer of the
  /// space's changes.
  @inline(__always)
  private func unmapOwnRange(_ registry: MappingRegistry?, _ unmap: () throws(IommufdError) -> Void) throws(IommufdError) {
    do throws(IommufdError) {
      try unmap()
    } catch where error.errno == .noSuchFileOrDirectory {
      if ownership.clear() { registry?.removeAsWriter(range, self) }
      throw error
    }
    if ownership.clear() { registry?.removeAsWriter(range, self) }
  }

  deinit {
    // A mapping that still owns its range has its entry in the record; one that does not
    // has none, or one that the space is removing under the record's lock, which no
    // longer touches this mapping once it cleared the flag. So the record never uses a
    // freed mapping.
    guard isMapped else { return }
    do throws(IommufdError) {
      let type = ObjectIdentifier(Swift.type(of: space))
      if type == ObjectIdentifier(IOAS.self) {
        try release(recordedIn: unsafeDowncast(space, to: IOAS.self))
      } else if type == ObjectIdentifier(VFIOContainer.self) {
        try release(recordedIn: unsafeDowncast(space, to: VFIOContainer.self))
      } else if !space.isClosed {
        try space.unmap(iova: iova, length: length)
      }
    } catch where error.errno == .noSuchFileOrDirectory {
      space.backend.trace("mapping at 0x\(String(iova, radix: 16)) was already unmapped")
    } catch {
      space.backend.logger.error("releasing mapping at 0x\(String(iova, radix: 16)) failed: \(error)")
    }
  }

  /// The release of a mapping that still owned its range when it was last checked, in a
  /// space that records its mappings.
  private func release(recordedIn space: some MappingTracking) throws(IommufdError) {
    try space.mappings.changes.write { () throws(IommufdError) in
      // Unmapped through the space meanwhile? The space cleared the flag and the entry.
      guard ownership.clear() else { return }
      space.mappings.removeAsWriter(range, self)
      if space.isClosed { return }  // nothing left to unmap
      _ = try space.unmapMapping(iova: iova, length: length)
    }
  }
}
