/// A mapping of a ``DMABuffer`` into a ``DMAAddressSpace``; unmapped on ``unmap()`` or
/// when it goes out of scope.
///
/// Noncopyable: exactly one value owns the range, so the compiler sees every release, and
/// making one allocates nothing. Keep several in an `Optional`, a noncopyable container
/// (such as `UniqueArray` of swift-collections' `BasicContainers`) or a class of your own.
///
/// Keeps the address space and the buffer alive. Once its range was unmapped through the
/// space (``IOAS/unmapAll()``, an unmap covering it, or a new mapping over it), it owns
/// nothing: ``unmap()`` and the release do nothing then, so they never remove another
/// mapping that took the same IOVAs. An unmap that fails keeps the mapping: a later
/// ``unmap()`` tries again, and so does the release.
public struct DMAMapping: ~Copyable, Sendable {
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
  /// The mapping's entry in its space's record (0: a space that keeps none).
  private let token: UInt64
  /// Which of the library's spaces recorded it, known at the map: the unmap and the
  /// release reach that space's record without finding the space's type at run time.
  private let recorder: Recorder
  /// Whether this value gave up its range: it unmapped it, or found it unmapped.
  private var released = false

  /// How the kernel was given a mapping's memory.
  public enum Source: Hashable, Sendable {
    /// By its address in this process (`IOMMU_IOAS_MAP`, `VFIO_IOMMU_MAP_DMA`).
    case userAddress
    /// By file and offset (`IOMMU_IOAS_MAP_FILE`, Linux 6.13 and later): the kernel holds
    /// the file, not this process's mapping of it.
    case file(offset: UInt64)
  }

  /// Which of the library's spaces, if any, recorded a mapping.
  enum Recorder {
    case none, ioas, container
  }

  init(
    space: any DMAAddressSpace, buffer: DMABuffer, iova: UInt64, length: UInt64, access: DMAAccess,
    source: Source = .userAddress, token: UInt64 = 0, recorder: Recorder = .none
  ) {
    self.space = space
    self.buffer = buffer
    self.iova = iova
    self.length = length
    self.access = access
    self.source = source
    self.token = token
    self.recorder = recorder
  }

  /// The IOVA range of the mapping.
  public var range: IOVARange { IOVARange(start: iova, last: iova &+ (length &- 1)) }

  /// Whether the mapping still owns its range (it was not unmapped, by itself or through
  /// its space).
  public var isMapped: Bool {
    if released { return false }
    switch recorder {
    case .ioas: return unsafeDowncast(space, to: IOAS.self).mappings.contains(range, token: token)
    case .container: return unsafeDowncast(space, to: VFIOContainer.self).mappings.contains(range, token: token)
    case .none: return true
    }
  }

  /// Unmaps now. A call on a mapping already unmapped does nothing; one that fails leaves
  /// the mapping in place, to be tried again.
  public mutating func unmap() throws(IommufdError) {
    if released { return }
    do throws(IommufdError) {
      try unmapRange()
    } catch where error.errno == .noSuchFileOrDirectory {
      released = true  // nothing was there: nothing is left to own
      throw error
    }
    released = true
  }

  /// The unmap of ``unmap()`` on the borrowed mapping, so the space and its record are
  /// used without a reference count. Returns once the mapping no longer owns its range;
  /// throws ENOENT if the kernel had nothing there (nor does the mapping now), any other
  /// error with the range still owned.
  @inline(__always)
  private func unmapRange() throws(IommufdError) {
    let recorded = try withRecord { record, _, unmap throws(IommufdError) in try unmapRange(recordedIn: record, unmap) }
    if !recorded { try space.unmap(iova: iova, length: length) }
  }

  /// Calls `body` with the record of the library's space that recorded this mapping, a
  /// test of whether that space is closed, and its unmap of the mapping's range; returns
  /// false, without calling it, for a space that records nothing. Each space is reached
  /// by its concrete type: through the protocol, the optimizer left a call by the witness
  /// table (about 25 instructions more).
  @inline(__always)
  private func withRecord(
    _ body: (MappingRegistry, _ isClosed: () -> Bool, _ unmap: () throws(IommufdError) -> Void) throws(IommufdError) -> Void
  ) throws(IommufdError) -> Bool {
    switch recorder {
    case .ioas:
      let ioas = unsafeDowncast(space, to: IOAS.self)
      try body(ioas.mappings, { ioas.isClosed }) { () throws(IommufdError) in _ = try ioas.unmapMapping(iova: iova, length: length) }
    case .container:
      let container = unsafeDowncast(space, to: VFIOContainer.self)
      try body(container.mappings, { container.isClosed }) { () throws(IommufdError) in
        _ = try container.unmapMapping(iova: iova, length: length)
      }
    case .none: return false
    }
    return true
  }

  /// The unmap in a space that records its mappings in `record`: as a writer of the
  /// space's changes, with no other unmap or map in flight, so whether the range is still
  /// this mapping's is then what the kernel has.
  @inline(__always)
  private func unmapRange(recordedIn record: MappingRegistry, _ unmap: () throws(IommufdError) -> Void) throws(IommufdError) {
    record.changes.enterWriting()
    defer { record.changes.leaveWriting() }
    guard let index = record.indexAsWriter(range, token: token) else { return }  // unmapped through the space
    do throws(IommufdError) {
      try unmap()
    } catch where error.errno == .noSuchFileOrDirectory {
      record.removeAsWriter(at: index)  // nothing was there: nothing is left to own
      throw error
    }
    record.removeAsWriter(at: index)
  }

  deinit {
    // Most mappings were unmapped before they go: that case is a test and the fields'
    // releases, with the release's work out of line.
    if !released { releaseRange() }
  }

  /// The release of a mapping that had not given up its range (its deinit): unmaps it,
  /// unless its space already did or is closed; a failure is logged.
  @inline(never)
  private func releaseRange() {
    do throws(IommufdError) {
      let recorded = try withRecord { record, isClosed, unmap throws(IommufdError) in
        try release(recordedIn: record, isClosed: isClosed(), unmap)
      }
      if !recorded && !space.isClosed { try space.unmap(iova: iova, length: length) }
    } catch where error.errno == .noSuchFileOrDirectory {
      space.backend.trace("mapping at 0x\(String(iova, radix: 16)) was already unmapped")
    } catch {
      space.backend.logger.error("releasing mapping at 0x\(String(iova, radix: 16)) failed: \(error)")
    }
  }

  /// The release of a mapping that had not given up its range, in a space that records
  /// its mappings in `record`.
  @inline(__always)
  private func release(
    recordedIn record: MappingRegistry, isClosed: @autoclosure () -> Bool, _ unmap: () throws(IommufdError) -> Void
  ) throws(IommufdError) {
    record.changes.enterWriting()
    defer { record.changes.leaveWriting() }
    // Unmapped through the space meanwhile? The space removed the entry.
    guard let index = record.indexAsWriter(range, token: token) else { return }
    record.removeAsWriter(at: index)
    if isClosed() { return }  // nothing left to unmap
    try unmap()
  }
}

extension MappingTracking {
  /// The map of a space that records its mappings (the library's own, which the mapping
  /// notes as its ``DMAMapping/Recorder``): the map and its record in one change of the
  /// space, so no unmap through the space falls between them.
  @inline(__always)
  func mapRecorded(
    _ buffer: DMABuffer, _ address: UnsafeRawPointer, _ length: UInt64, _ placement: IOVAPlacement, _ access: DMAAccess
  ) throws(IommufdError) -> DMAMapping {
    try mapRecorded(buffer, length: length, access: access, source: .userAddress) { () throws(IommufdError) -> UInt64 in
      try mapUnrecorded(address: address, length: length, at: placement, access: access)
    }
  }

  /// A mapping of (part of) `buffer` that `map` makes and returns the IOVA of, recorded
  /// in the same change of the space (the record forgets whatever overlapped it).
  @inline(__always)
  func mapRecorded(
    _ buffer: DMABuffer, length: UInt64, access: DMAAccess, source: DMAMapping.Source,
    _ map: () throws(IommufdError) -> UInt64
  ) throws(IommufdError) -> DMAMapping {
    let (iova, token) = try mappings.changes.read { () throws(IommufdError) -> (UInt64, UInt64) in
      let iova = try map()
      return (iova, mappings.add(IOVARange(start: iova, last: iova &+ (length &- 1))))
    }
    return DMAMapping(
      space: self, buffer: buffer, iova: iova, length: length, access: access, source: source, token: token,
      recorder: Self.recorder)
  }
}
