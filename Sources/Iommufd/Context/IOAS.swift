import CIommufd
import SystemPackage

/// Something a VFIO device can attach to: an ``IOAS`` (the kernel then uses an automatic
/// HW page table) or an ``HWPageTable``.
public protocol AttachTarget: AnyObject, Sendable {
  /// The object id passed as `pt_id`.
  var id: ObjectID { get }
  /// The context the object lives in.
  var iommufd: IOMMUFD { get }
}

/// An I/O address space: the IOVA → user-memory mappings that devices attached to it see.
///
/// The handle owns its object id and destroys it exactly once, on ``destroy()`` or when the
/// last reference goes (a failure then is logged). Devices attached to it and HW page
/// tables built on it hold references, so it outlives them. Destroying it removes all of
/// its mappings. Thread-safe.
public final class IOAS: AttachTarget, MappingTracking, ObjectHandle {
  /// The context the IOAS lives in.
  public let iommufd: IOMMUFD
  /// The IOAS's object id.
  public var id: ObjectID { object.id }
  let object: OwnedObject
  let mappings = MappingRegistry()
  static var recorder: DMAMapping.Recorder { .ioas }

  /// The backend of the IOAS's context.
  public var backend: Backend { iommufd.backend }
  /// Whether the context's descriptor was closed.
  public var isClosed: Bool { iommufd.isClosed }

  init(iommufd: IOMMUFD, id: ObjectID) {
    self.iommufd = iommufd
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "IOAS", involved: .ioas(id))
  }

  deinit { object.release() }

  /// Destroys the IOAS now. Fails with `EBUSY` while an HW page table or device uses it.
  public func destroy() throws(IommufdError) { try object.destroy() }

  // MARK: Mapping

  /// Maps `length` bytes of this process's memory at `address` and returns the IOVA.
  ///
  /// The caller keeps that memory mapped until the range is unmapped: with an attached
  /// device the kernel pins it, otherwise it only records the address (lazy mapping).
  public func unsafeMap(
    address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement = .anywhere,
    access: DMAAccess = .readWrite
  ) throws(IommufdError) -> UInt64 {
    try mapReported(address: address, length: length, at: placement, access: access)
  }

  /// Maps `buffer` and returns a mapping that unmaps itself when released: what
  /// ``DMAAddressSpace/map(_:at:access:)`` does, without finding the space's type at run
  /// time.
  ///
  /// The mapping keeps `buffer` alive, so the device can never reach freed memory.
  public func map(
    _ buffer: DMABuffer, at placement: IOVAPlacement = .anywhere, access: DMAAccess = .readWrite
  ) throws(IommufdError) -> DMAMapping {
    try mapRecorded(buffer, UnsafeRawPointer(buffer.bytes.baseAddress!), UInt64(buffer.bytes.count), placement, access)
  }

  /// Maps without the gate or the report to ``mappings``: for a caller that holds the gate
  /// as a reader and reports the range itself.
  @inline(__always)
  func mapUnrecorded(
    address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement, access: DMAAccess
  ) throws(IommufdError) -> UInt64 {
    try access.check(.ioasMap, [.ioas(id)])
    var request = ciommufd_iommu_ioas_map()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_map>.size)
    placement.encode(access, flags: &request.flags, iova: &request.iova)
    request.ioas_id = id.rawValue
    request.user_va = UInt64(UInt(bitPattern: address))
    request.length = length
    try ioctl(CIOMMUFD_IOMMU_IOAS_MAP, &request, .ioasMap)
    return request.iova
  }

  /// Unmaps every mapping that lies wholly in `length` bytes at `iova`; returns the bytes
  /// unmapped. Fails with `ENOENT` if that would split a mapping or covers none.
  @discardableResult
  public func unmap(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64 {
    // A writer: a map that ran between this unmap's ioctl and its record would be
    // recorded as unmapped while the kernel has it.
    try mappings.changes.write { () throws(IommufdError) -> UInt64 in
      let unmapped = try unmapMapping(iova: iova, length: length)
      if length > 0 {
        let all = iova == 0 && length == UInt64.max
        mappings.unmapped(IOVARange(start: iova, last: all ? UInt64.max : iova &+ (length &- 1)))
      }
      return unmapped
    }
  }

  /// Unmaps without reporting to ``mappings``.
  @inline(__always)
  func unmapMapping(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64 {
    var request = ciommufd_iommu_ioas_unmap(
      size: UInt32(MemoryLayout<ciommufd_iommu_ioas_unmap>.size), ioas_id: id.rawValue, iova: iova, length: length)
    try ioctl(CIOMMUFD_IOMMU_IOAS_UNMAP, &request, .ioasUnmap)
    return request.length
  }

  /// Unmaps everything; returns the bytes unmapped (0 on an empty IOAS).
  @discardableResult
  public func unmapAll() throws(IommufdError) -> UInt64 {
    try unmap(iova: 0, length: UInt64.max)
  }

  /// Maps into this IOAS the pages that `source` maps at `sourceIOVA` (one or more adjacent
  /// mappings, covered without a gap), sharing their pins. Returns the destination IOVA.
  public func copy(
    from source: IOAS, sourceIOVA: UInt64, length: UInt64, to placement: IOVAPlacement = .anywhere,
    access: DMAAccess = .readWrite
  ) throws(IommufdError) -> UInt64 {
    try access.check(.ioasCopy, [.ioas(id)])
    var request = ciommufd_iommu_ioas_copy()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_copy>.size)
    placement.encode(access, flags: &request.flags, iova: &request.dst_iova)
    request.dst_ioas_id = id.rawValue
    request.src_ioas_id = source.id.rawValue
    request.length = length
    request.src_iova = sourceIOVA
    let sourceID = source.id
    try mappings.changes.read { () throws(IommufdError) in
      try iommufd.withDescriptor(.ioasCopy, using: object, source.object) { fd throws(IommufdError) in
        try iommufd.unretainedBackend.ioctl(
          fd, CIOMMUFD_IOMMU_IOAS_COPY, &request, .ioasCopy, [.ioas(id), .init("source", "\(sourceID)")])
      }
      mappings.mapped(IOVARange(start: request.dst_iova, last: request.dst_iova &+ (length &- 1)))
    }
    return request.dst_iova
  }

  // MARK: Ranges

  /// The IOVA ranges usable now and the required alignment (`IOMMU_IOAS_IOVA_RANGES`).
  ///
  /// Attached devices' reserved regions and their IOMMU's aperture are excluded.
  @inlinable
  public func iovaRanges() throws(IommufdError) -> IOVARanges {
    // IOMMUs report a few ranges: the kernel writes up to four straight into the value's
    // own storage (an IOVARange is laid out as the kernel's struct iommu_iova_range, start
    // then last: Swift lays a struct's stored properties out in declaration order, and a
    // test checks it), so nothing is copied or allocated. More are read on the slow path.
    // Inlined, so that the value is built where it is used.
    var ranges = IOVARanges.emptyInline
    let (count, alignment) = try withUnsafeMutableBytes(of: &ranges) { buffer throws(IommufdError) in
      try readIOVARanges(into: buffer.baseAddress.unsafelyUnwrapped, capacity: UInt32(IOVARanges.inlineCapacity))
    }
    guard count <= IOVARanges.inlineCapacity else { return try iovaRanges(capacity: UInt32(count)) }
    return IOVARanges(inline: ranges, count: count, alignment: alignment)
  }

  /// Has the kernel write up to `capacity` ranges at `buffer`; returns how many there are
  /// and the alignment. More than `capacity` when they did not fit: the kernel wrote the
  /// first `capacity` and failed with EMSGSIZE, which this does not throw.
  @usableFromInline
  func readIOVARanges(into buffer: UnsafeMutableRawPointer, capacity: UInt32) throws(IommufdError) -> (count: Int, alignment: UInt64) {
    var request = ciommufd_iommu_ioas_iova_ranges()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_iova_ranges>.size)
    request.ioas_id = id.rawValue
    request.num_iovas = capacity
    request.allowed_iovas = UInt64(UInt(bitPattern: buffer))
    do throws(IommufdError) {
      try ioctl(CIOMMUFD_IOMMU_IOAS_IOVA_RANGES, &request, .ioasIOVARanges)
    } catch where error.errno == .messageTooLong && request.num_iovas > capacity {
      // The kernel wrote the total back with EMSGSIZE.
    }
    return (Int(request.num_iovas), request.out_iova_alignment)
  }

  /// The ranges when there are more than fit in the value, read with room for `capacity`
  /// at first (the count the kernel reported).
  @usableFromInline @inline(never)
  func iovaRanges(capacity first: UInt32) throws(IommufdError) -> IOVARanges {
    var capacity = first
    for _ in 0..<4 {
      // The kernel's ranges are the holes between reserved regions: a few. A count no
      // kernel gives is refused rather than allocated.
      guard capacity <= Self.largestRangeCount else {
        throw IommufdError(
          .ioasIOVARanges, .messageTooLong, objects: [.ioas(id)],
          detail: "the kernel reported \(capacity) ranges, more than the \(Self.largestRangeCount) this call reads")
      }
      let entrySize = MemoryLayout<ciommufd_iommu_iova_range>.stride
      var request = ciommufd_iommu_ioas_iova_ranges()
      request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_iova_ranges>.size)
      request.ioas_id = id.rawValue
      request.num_iovas = capacity
      let ranges = try withScratchBuffer(count: Int(capacity) * entrySize) { buffer throws(IommufdError) -> IOVARanges? in
        request.allowed_iovas = UInt64(UInt(bitPattern: buffer.baseAddress))
        do throws(IommufdError) {
          try ioctl(CIOMMUFD_IOMMU_IOAS_IOVA_RANGES, &request, .ioasIOVARanges)
        } catch where error.errno == .messageTooLong && request.num_iovas > capacity {
          return nil  // more again
        }
        return IOVARanges(count: Int(min(request.num_iovas, capacity)), alignment: request.out_iova_alignment) { index in
          let entry = buffer.load(fromByteOffset: index * entrySize, as: ciommufd_iommu_iova_range.self)
          return IOVARange(start: entry.start, last: entry.last)
        }
      }
      if let ranges { return ranges }
      capacity = request.num_iovas
    }
    throw IommufdError(
      .ioasIOVARanges, .messageTooLong, objects: [.ioas(id)], detail: "the number of ranges kept growing while they were read")
  }

  /// The most ranges ``iovaRanges()`` reads (65,536).
  static var largestRangeCount: UInt32 { 1 << 16 }

  /// Restricts the IOVAs the kernel may choose for ``IOVAPlacement/anywhere`` to `ranges`
  /// (an empty list lifts the restriction). Fixed mappings are not restricted.
  public func allowIOVAs(_ ranges: [IOVARange]) throws(IommufdError) {
    let entrySize = MemoryLayout<ciommufd_iommu_iova_range>.stride
    var request = ciommufd_iommu_ioas_allow_iovas()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_allow_iovas>.size)
    request.ioas_id = id.rawValue
    guard let count = UInt32(exactly: ranges.count) else {
      throw IommufdError(.ioasAllowIOVAs, .invalidArgument, objects: [.ioas(id)], detail: "\(ranges.count) ranges are more than a u32 counts")
    }
    request.num_iovas = count
    try withScratchBuffer(count: ranges.count * entrySize) { buffer throws(IommufdError) in
      for (index, range) in ranges.enumerated() {
        buffer.storeBytes(
          of: ciommufd_iommu_iova_range(start: range.start, last: range.last), toByteOffset: index * entrySize,
          as: ciommufd_iommu_iova_range.self)
      }
      request.allowed_iovas = ranges.isEmpty ? 0 : UInt64(UInt(bitPattern: buffer.baseAddress))
      try ioctl(CIOMMUFD_IOMMU_IOAS_ALLOW_IOVAS, &request, .ioasAllowIOVAs)
    }
  }

  // MARK: Options

  /// Whether the IOAS may use huge IO pages (`IOMMU_OPTION_HUGE_PAGES`; on by default).
  public func hugePagesEnabled() throws(IommufdError) -> Bool {
    try object.use(.option) { () throws(IommufdError) -> Bool in
      try iommufd.option(CIOMMUFD_OPTION_HUGE_PAGES, op: CIOMMUFD_OPTION_OP_GET, object: id, value: 0) == 1
    }
  }

  /// Enables or disables huge IO pages. Disabling raises the alignment to the page size.
  public func setHugePages(enabled: Bool) throws(IommufdError) {
    try object.use(.option) { () throws(IommufdError) in
      _ = try iommufd.option(
        CIOMMUFD_OPTION_HUGE_PAGES, op: CIOMMUFD_OPTION_OP_SET, object: id, value: enabled ? 1 : 0)
    }
  }

  // MARK: Internal

  @inline(__always)
  private func ioctl<Argument>(
    _ request: Int32, _ argument: inout Argument, _ operation: IommufdError.Operation
  ) throws(IommufdError) {
    try iommufd.withDescriptor(operation, using: object) { fd throws(IommufdError) in
      try iommufd.unretainedBackend.ioctl(fd, request, &argument, operation, [.ioas(id)])
    }
  }
}

extension IOAS {
  /// Maps `length` bytes of the file `fd` from byte `offset` (`IOMMU_IOAS_MAP_FILE`, 6.13):
  /// guest RAM in a memfd, mapped without a user address. Returns the IOVA. The area holds
  /// the file: never map an iommufd descriptor (or one that holds a context), which Linux
  /// 7.2 accepts and then can never release (a reference cycle; Docs/Simulator.md). The
  /// context's own descriptor is refused with `EINVAL` before the kernel sees it.
  public func mapFile(
    _ fd: FileDescriptor, offset: UInt64, length: UInt64, at placement: IOVAPlacement = .anywhere,
    access: DMAAccess = .readWrite
  ) throws(IommufdError) -> UInt64 {
    try access.check(.ioasMapFile, [.ioas(id)])
    var request = ciommufd_iommu_ioas_map_file()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_map_file>.size)
    placement.encode(access, flags: &request.flags, iova: &request.iova)
    request.ioas_id = id.rawValue
    request.fd = fd.rawValue
    request.start = offset
    request.length = length
    try mappings.changes.read { () throws(IommufdError) in
      try iommufd.withDescriptor(.ioasMapFile, using: object) { contextFD throws(IommufdError) in
        // Compared while the context's descriptor is open: once it is closed, its number
        // may be any other file's.
        guard fd != contextFD else {
          throw IommufdError(
            .ioasMapFile, .invalidArgument, objects: [.ioas(id), .fd(fd)],
            detail: "fd \(fd.rawValue) is this iommufd context itself: the area would hold the context that holds the area, a reference cycle the kernel never releases (the context and its pinned pages would leak)")
        }
        do throws(IommufdError) {
          try iommufd.unretainedBackend.ioctl(contextFD, CIOMMUFD_IOMMU_IOAS_MAP_FILE, &request, .ioasMapFile, [.ioas(id)])
        } catch where error.errno == .inappropriateIOCTLForDevice {
          throw error.unsupported("IOMMU_IOAS_MAP_FILE is not supported by this kernel (it came in Linux 6.13)")
        }
      }
      mappings.mapped(IOVARange(start: request.iova, last: request.iova &+ (length &- 1)))
    }
    return request.iova
  }
}
