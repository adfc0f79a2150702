import Iommufd
import CIommufd
import SystemPackage

/// The VFIO type1 container ioctls on `/dev/iommu` (`drivers/iommu/iommufd/vfio_compat.c`):
/// what the kernel answers for the numbers outside the iommufd table, on the context's
/// compatibility IOAS (set with `IOMMU_VFIO_IOAS`; ENODEV without one).
extension SimulatedKernel.State {
  /// The request's answer, or nil when it is no VFIO compatibility request (ENOTTY).
  func vfioCompatIoctl(_ context: SimulatedContext, _ request: UInt, _ address: UInt64) throws(Errno) -> Int32? {
    switch Int32(truncatingIfNeeded: request) {
    case CIOMMUFD_VFIO_GET_API_VERSION: return 0  // VFIO_API_VERSION
    case CIOMMUFD_VFIO_CHECK_EXTENSION:
      switch address {
      case 1, 3, 9: return 1  // TYPE1, TYPE1v2, UNMAP_ALL
      case 4:
        // DMA_CC_IOMMU: 0 once a domain does not enforce cache coherency. A HWPT enforces
        // it when made for a device whose IOMMU can (IOMMU_CAP_ENFORCE_CACHE_COHERENCY):
        // VT-d with snoop control (ECAP bit 7, which QEMU's lacks); the mock never.
        let ioas = try compatIOAS(context)
        let snoopControl = configuration.vtdExtendedCapability & 0x80 != 0
        return ioas.domains.contains { $0.table.profile.driver == .mock || !snoopControl } ? 0 : 1
      default: return 0  // NOIOMMU (not configured), TYPE1_NESTING, UPDATE_VADDR, the rest
      }
    case CIOMMUFD_VFIO_SET_IOMMU:
      guard address == 1 || address == 3 else { throw .invalidArgument }
      let ioas = try compatIOAS(context)
      // TYPE1 may unmap inside mappings: the kernel turns large pages off for that.
      if address == 1 && !ioas.disableLargePages { try disableLargePages(ioas) }
      return 0
    case CIOMMUFD_VFIO_IOMMU_MAP_DMA: return try compatMap(context, address)
    case CIOMMUFD_VFIO_IOMMU_UNMAP_DMA: return try compatUnmap(context, address)
    case CIOMMUFD_VFIO_IOMMU_GET_INFO: return try compatInfo(context, address)
    default: return nil
    }
  }

  private func compatIOAS(_ context: SimulatedContext) throws(Errno) -> SimulatedIOAS {
    guard let id = context.compatIOAS, let ioas = context.ioas(id) else { throw .operationNotSupportedByDevice }
    return ioas
  }

  /// `IOMMU_OPTION_HUGE_PAGES` set to 0 (OPT-4's checks).
  func disableLargePages(_ ioas: SimulatedIOAS) throws(Errno) {
    if !ioas.domains.isEmpty && !ioas.areas.isEmpty { throw .invalidArgument }
    let newAlignment = max(ioas.alignment(pageSize: pageSize), pageSize)
    for area in ioas.areas.all
    where area.start % newAlignment != 0 || (area.last - area.start + 1) % newAlignment != 0 || (area.value.userVA % pageSize) % newAlignment != 0 {
      throw .addressInUse
    }
    ioas.disableLargePages = true
  }

  /// The IO page sizes of a domain: the mock's (one size on 6.12, and
  /// `MOCK_HUGE_PAGE_SIZE` too for a device with `MOCK_FLAGS_DEVICE_HUGE_IOVA`; 2 KiB to
  /// 64 GiB in 7.2's default generic page table, a CPU page and 1 MiB in its huge one) or
  /// VT-d's (4 KiB, 2 MiB, 1 GiB).
  private func pageSizeBitmap(_ hwpt: SimulatedHWPT) -> UInt64 {
    guard hwpt.profile.driver == .mock else { return 0x1000 | 0x20_0000 | 0x4000_0000 }
    let ioPage = hwpt.profile.pageSize
    if isLinux7_2 { return ioPage == pageSize ? ioPage | Self.hugeLeafSize : ((1 << 37) - 1) & ~(ioPage - 1) }
    return hwpt.hugeLeaves ? ioPage | Self.hugeLeafSize : ioPage
  }

  /// `VFIO_IOMMU_MAP_DMA`: `{argsz, flags, vaddr, iova, size}`, a fixed map into the compat IOAS.
  private func compatMap(_ context: SimulatedContext, _ address: UInt64) throws(Errno) -> Int32 {
    let bytes = try UserMemory.read(address, count: 32)
    let argsz = UserMemory.decode(UInt32.self, from: bytes)
    let flags = UserMemory.decode(UInt32.self, from: bytes, offset: 4)
    if argsz < 32 || flags & ~3 != 0 { throw .invalidArgument }
    _ = try compatIOAS(context)
    guard let ioasID = context.compatIOAS else { throw .operationNotSupportedByDevice }
    // As IOMMU_IOAS_MAP with FIXED_IOVA and the permissions asked for.
    var map = ciommufd_iommu_ioas_map()
    map.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_map>.size)
    map.flags = CIOMMUFD_IOAS_MAP_FIXED_IOVA | (flags & 1 != 0 ? CIOMMUFD_IOAS_MAP_READABLE : 0) | (flags & 2 != 0 ? CIOMMUFD_IOAS_MAP_WRITEABLE : 0)
    map.ioas_id = ioasID
    map.user_va = UserMemory.decode(UInt64.self, from: bytes, offset: 8)
    map.iova = UserMemory.decode(UInt64.self, from: bytes, offset: 16)
    map.length = UserMemory.decode(UInt64.self, from: bytes, offset: 24)
    return try withUnsafeMutableBytes(of: &map) { (buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int32 in
      try self.map(context, UInt64(UInt(bitPattern: buffer.baseAddress)), buffer.count, fromCompat: true)
    }
  }

  /// `VFIO_IOMMU_UNMAP_DMA`: `{argsz, flags, iova, size}`; the bytes unmapped written back
  /// to `size`, also when the unmap stopped at a mapping it would split (ENOENT). On a TYPE1
  /// IOAS the mappings are cut at the range's ends first, so it may unmap inside them.
  private func compatUnmap(_ context: SimulatedContext, _ address: UInt64) throws(Errno) -> Int32 {
    var bytes = try UserMemory.read(address, count: 24)
    let argsz = UserMemory.decode(UInt32.self, from: bytes)
    let flags = UserMemory.decode(UInt32.self, from: bytes, offset: 4)
    let iova = UserMemory.decode(UInt64.self, from: bytes, offset: 8)
    let size = UserMemory.decode(UInt64.self, from: bytes, offset: 16)
    if argsz < 24 || flags & ~2 != 0 { throw .invalidArgument }  // VFIO_DMA_UNMAP_FLAG_ALL
    let ioas = try compatIOAS(context)
    var unmapped: UInt64 = 0
    var failure: Errno?
    if flags & 2 != 0 {
      if iova != 0 || size != 0 { throw .invalidArgument }
      unmapped = removeAllAreas(ioas)
    } else {
      if ioas.disableLargePages {
        try cut(ioas, at: iova &+ size &- 1)
        if iova != 0 { try cut(ioas, at: iova - 1) }
      }
      if size == 0 {
        failure = .invalidArgument
      } else if iova.addingReportingOverflow(size - 1).overflow {
        failure = .overflow
      } else {
        // An empty range unmaps 0 bytes (IOMMU_IOAS_UNMAP makes that ENOENT; this does not).
        (unmapped, failure) = removeAreas(ioas, iova, iova + (size - 1))
      }
    }
    bytes.replaceSubrange(16..<24, with: UserMemory.encode(unmapped))
    try UserMemory.write(bytes, to: address)
    if let failure { throw failure }
    return 0
  }

  /// Splits the area holding `iova` so that one ends there (`iopt_cut_iova`): EINVAL where
  /// the next start would not be aligned.
  private func cut(_ ioas: SimulatedIOAS, at iova: UInt64) throws(Errno) {
    guard let area = ioas.areas.entry(containing: iova), area.last != iova else { return }
    let next = iova + 1
    if pagesTable[area.value.pages]?.dmabuf != nil { throw .notSupported }  // a dma-buf area is not split
    let alignment = ioas.alignment(pageSize: pageSize)
    let nextVA = area.value.userVA &+ (next - area.start)
    if next % alignment != 0 || (nextVA % pageSize) % alignment != 0 { throw .invalidArgument }
    if hasAccessItems(ioas, area.start, area.last) { throw .invalidArgument }  // an access pinned part of it
    var tail = area.value
    tail.userVA = nextVA
    ioas.areas.remove(start: area.start)
    ioas.areas.insert(start: area.start, last: iova, value: area.value)
    ioas.areas.insert(start: next, last: area.last, value: tail)
    areaAdded(area.value.pages)
    if !ioas.domains.isEmpty {
      addDomainUsers([span(area.value, length: iova - area.start + 1), span(tail, length: area.last - iova)])
      removeDomainUsers([span(area.value, length: area.last - area.start + 1)])
    }
  }

  /// `VFIO_IOMMU_GET_INFO`: the page sizes and the DMA_AVAIL and IOVA_RANGE capabilities
  /// (the holes between reserved ranges), as much as `argsz` has room for, and the argsz
  /// that fits them all.
  private func compatInfo(_ context: SimulatedContext, _ address: UInt64) throws(Errno) -> Int32 {
    let head = try UserMemory.read(address, count: 16)
    let argsz = UInt64(UserMemory.decode(UInt32.self, from: head))
    if argsz < 16 { throw .invalidArgument }
    let ioas = try compatIOAS(context)
    // The IO page sizes every domain has (vfio_update_pgsize_bitmap's rule after it).
    var sizes = UInt64.max
    for domain in ioas.domains { sizes &= pageSizeBitmap(domain.table) }
    if sizes & (pageSize - 1) != 0 { sizes = (sizes & ~(pageSize - 1)) | pageSize }
    sizes = max(sizes, ioas.alignment(pageSize: pageSize))
    // The holes of the reserved ranges over the whole space.
    var holes: [(UInt64, UInt64)] = []
    var cursor: UInt64 = 0
    var done = false
    for range in ioas.reserved.map({ ($0.start, $0.last) }).sorted(by: { $0.0 < $1.0 }) {
      if range.0 > cursor { holes.append((cursor, range.0 - 1)) }
      if range.1 == .max { done = true; break }
      cursor = max(cursor, range.1 + 1)
    }
    if !done { holes.append((cursor, .max)) }
    // Capabilities after the 24-byte info: DMA_AVAIL (12 bytes, 16 aligned), then IOVA_RANGE.
    let infoSize: UInt64 = 24
    let availSize: UInt64 = 16
    let rangesSize = 16 + 16 * UInt64(holes.count)
    let total = infoSize + availSize + rangesSize
    if argsz >= infoSize + 12 {
      try UserMemory.write(UserMemory.encode(UInt16(3)) + UserMemory.encode(UInt16(1)) + UserMemory.encode(UInt32(argsz >= infoSize + availSize ? infoSize + availSize : 0)) + UserMemory.encode(UInt32.max), to: address + infoSize)
    }
    let avail = argsz > infoSize + availSize ? argsz - infoSize - availSize : 0
    let rangesAt = address + infoSize + availSize
    for (index, hole) in holes.enumerated() where avail >= 16 + 16 * UInt64(index + 1) {
      try UserMemory.write(UserMemory.encode(hole.0) + UserMemory.encode(hole.1), to: rangesAt + 16 + 16 * UInt64(index))
    }
    if avail >= rangesSize {
      try UserMemory.write(UserMemory.encode(UInt16(1)) + UserMemory.encode(UInt16(1)) + UserMemory.encode(UInt32(0)) + UserMemory.encode(UInt32(holes.count)) + UserMemory.encode(UInt32(0)), to: rangesAt)
    }
    let info = UserMemory.encode(UInt32(total)) + UserMemory.encode(UInt32(3)) + UserMemory.encode(sizes)  // PGSIZES | CAPS
      + UserMemory.encode(UInt32(argsz >= total ? infoSize : 0)) + UserMemory.encode(UInt32(0))
    try UserMemory.write(Array(info.prefix(Int(min(argsz, infoSize)))), to: address)
    return 0
  }
}
