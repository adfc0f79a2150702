import CIommufd

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A legacy VFIO container (`/dev/vfio/vfio`) with a type1 IOMMU: the address space of the
/// groups set to it, on kernels without iommufd or VFIO cdevs.
///
/// Use: open it, set one or more ``VFIOGroup``s to it, ``setIOMMU(_:)``, then map and get
/// devices from the groups. Owns its descriptor; the groups set to it keep it alive.
/// Thread-safe.
public final class VFIOContainer: MappingTracking {
  /// The system-call seam the container uses.
  public let backend: Backend
  let descriptor: OwnedDescriptor
  let mappings = MappingRegistry()
  static var recorder: DMAMapping.Recorder { .container }

  /// The type1 IOMMU models.
  public enum IOMMUType: Int, Sendable {
    /// `VFIO_TYPE1_IOMMU`.
    case type1 = 1
    /// `VFIO_TYPE1v2_IOMMU`: no partial unmaps, reports unmapped bytes.
    case type1v2 = 3
  }

  /// Opens `path` (normally `/dev/vfio/vfio`) and checks the VFIO API version (0).
  public static func open(_ path: FilePath = "/dev/vfio/vfio", backend: Backend = .kernel) throws(IommufdError) -> VFIOContainer {
    let fd = try backend.open(path, flags: O_RDWR | O_CLOEXEC)
    let container = VFIOContainer(adopting: fd, backend: backend)
    let version = try container.descriptor.withDescriptor(.vfioAPIVersion) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_VFIO_GET_API_VERSION, .vfioAPIVersion, [])
    }
    guard version == CIOMMUFD_VFIO_API_VERSION else {
      throw IommufdError(.vfioAPIVersion, .notSupported, objects: [.path(path.string)], detail: "VFIO API version \(version), expected 0")
    }
    return container
  }

  /// Takes ownership of an open container descriptor.
  public init(adopting fd: FileDescriptor, backend: Backend = .kernel) {
    self.backend = backend
    self.descriptor = OwnedDescriptor(fd, backend: backend)
  }

  /// The descriptor.
  public var fileDescriptor: FileDescriptor { descriptor.fd }
  /// Whether ``close()`` was called.
  public var isClosed: Bool { descriptor.isClosed }
  /// Closes the container.
  public func close() throws(IommufdError) { try descriptor.close() }

  /// Whether the container supports `extension` (`VFIO_CHECK_EXTENSION`, e.g. an
  /// ``IOMMUType`` raw value).
  public func supports(extension value: Int) throws(IommufdError) -> Bool {
    try descriptor.withDescriptor(.vfioCheckExtension) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_VFIO_CHECK_EXTENSION, argumentValue: value, .vfioCheckExtension, [])
    } > 0
  }

  /// Selects the IOMMU model; needs at least one group set to the container.
  public func setIOMMU(_ type: IOMMUType = .type1v2) throws(IommufdError) {
    try descriptor.withDescriptor(.vfioSetIOMMU) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_VFIO_SET_IOMMU, argumentValue: type.rawValue, .vfioSetIOMMU, [])
    }
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

  /// Maps `length` bytes at `address` at a fixed IOVA (type1 has no automatic placement:
  /// ``IOVAPlacement/anywhere`` is refused with EINVAL).
  public func unsafeMap(
    address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement, access: DMAAccess = .readWrite
  ) throws(IommufdError) -> UInt64 {
    try mapReported(address: address, length: length, at: placement, access: access)
  }

  /// Maps without the gate or the report to ``mappings``: for a caller that holds the gate
  /// as a reader and reports the range itself.
  func mapUnrecorded(
    address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement, access: DMAAccess
  ) throws(IommufdError) -> UInt64 {
    guard case .fixed(let iova) = placement else {
      throw IommufdError(.containerMap, .invalidArgument, detail: "a type1 container maps at fixed IOVAs only")
    }
    try access.check(.containerMap, [])
    var request = ciommufd_vfio_iommu_type1_dma_map()
    request.argsz = UInt32(MemoryLayout<ciommufd_vfio_iommu_type1_dma_map>.size)
    request.flags = (access.contains(.readable) ? CIOMMUFD_VFIO_DMA_MAP_FLAG_READ : 0)
      | (access.contains(.writable) ? CIOMMUFD_VFIO_DMA_MAP_FLAG_WRITE : 0)
    request.vaddr = UInt64(UInt(bitPattern: address))
    request.iova = iova
    request.size = length
    try descriptor.withDescriptor(.containerMap) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_VFIO_IOMMU_MAP_DMA, &request, .containerMap, [])
    }
    return iova
  }

  /// Unmaps `length` bytes at `iova`; returns the bytes unmapped (type1v2 refuses partial
  /// unmaps of a mapping; an empty range unmaps 0 bytes).
  @discardableResult
  public func unmap(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64 {
    try mappings.changes.write { () throws(IommufdError) -> UInt64 in
      let unmapped = try unmap(iova: iova, length: length, flags: 0)
      if length > 0 { mappings.unmapped(IOVARange(start: iova, last: iova &+ (length &- 1))) }
      return unmapped
    }
  }

  /// Unmaps without reporting to ``mappings``.
  func unmapMapping(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64 {
    try unmap(iova: iova, length: length, flags: 0)
  }

  /// Unmaps everything (`VFIO_DMA_UNMAP_FLAG_ALL`); returns the bytes unmapped.
  @discardableResult
  public func unmapAll() throws(IommufdError) -> UInt64 {
    try mappings.changes.write { () throws(IommufdError) -> UInt64 in
      let unmapped = try unmap(iova: 0, length: 0, flags: CIOMMUFD_VFIO_DMA_UNMAP_FLAG_ALL)
      mappings.unmapped(IOVARange(start: 0, last: UInt64.max))
      return unmapped
    }
  }

  private func unmap(iova: UInt64, length: UInt64, flags: UInt32) throws(IommufdError) -> UInt64 {
    var request = ciommufd_vfio_iommu_type1_dma_unmap()
    request.argsz = UInt32(MemoryLayout<ciommufd_vfio_iommu_type1_dma_unmap>.size)
    request.flags = flags
    request.iova = iova
    request.size = length
    try descriptor.withDescriptor(.containerUnmap) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_VFIO_IOMMU_UNMAP_DMA, &request, .containerUnmap, [])
    }
    return request.size
  }

  /// The usable IOVA ranges and the smallest IO page (`VFIO_IOMMU_GET_INFO` with its
  /// IOVA-range capability).
  public func iovaRanges() throws(IommufdError) -> IOVARanges {
    let reply = try descriptor.queryWithCapabilities(
      CIOMMUFD_VFIO_IOMMU_GET_INFO, .containerInfo, [], baseSize: MemoryLayout<ciommufd_vfio_iommu_type1_info>.size) { _ in }
    let info = reply.withUnsafeBytes { $0.loadUnaligned(as: ciommufd_vfio_iommu_type1_info.self) }
    let chain = try VFIOCapabilityChain.parse(
      reply, firstOffset: info.flags & CIOMMUFD_VFIO_IOMMU_INFO_CAPS != 0 ? info.cap_offset : 0, operation: .containerInfo)
    var ranges: [IOVARange] = []
    for case .other(let id, _, let payload) in chain where id == UInt16(CIOMMUFD_VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) && payload.count >= 8 {
      let count = Int(payload.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
      for index in 0..<min(count, (payload.count - 8) / 16) {
        payload.withUnsafeBytes {
          ranges.append(IOVARange(
            start: $0.loadUnaligned(fromByteOffset: 8 + index * 16, as: UInt64.self),
            last: $0.loadUnaligned(fromByteOffset: 16 + index * 16, as: UInt64.self)))
        }
      }
    }
    let pageSizes = info.iova_pgsizes
    return IOVARanges(ranges: ranges, alignment: pageSizes == 0 ? 1 : pageSizes & (~pageSizes &+ 1))
  }
}

/// A legacy VFIO group (`/dev/vfio/N`): the unit of isolation whose devices are reached
/// through a ``VFIOContainer``. Owns its descriptor; keeps its container alive. Thread-safe.
public final class VFIOGroup: Sendable {
  /// The system-call seam the group uses.
  public let backend: Backend
  /// The group number.
  public let number: Int
  let descriptor: OwnedDescriptor
  private let container = Lock<VFIOContainer?>(nil)

  /// Opens group `number` under `deviceRoot` (`/dev/vfio/N`).
  public static func open(_ number: Int, deviceRoot: FilePath = "/dev", backend: Backend = .kernel) throws(IommufdError) -> VFIOGroup {
    let fd = try backend.open(deviceRoot.appending("vfio").appending("\(number)"), flags: O_RDWR | O_CLOEXEC)
    return VFIOGroup(adopting: fd, number: number, backend: backend)
  }

  /// Takes ownership of an open group descriptor.
  public init(adopting fd: FileDescriptor, number: Int, backend: Backend = .kernel) {
    self.backend = backend
    self.number = number
    self.descriptor = OwnedDescriptor(fd, backend: backend)
  }

  /// The descriptor.
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// Whether every device of the group is bound to a VFIO driver (or none), so the group
  /// can be used, and whether it is set to a container.
  public func status() throws(IommufdError) -> (viable: Bool, containerSet: Bool) {
    var request = ciommufd_vfio_group_status(argsz: UInt32(MemoryLayout<ciommufd_vfio_group_status>.size), flags: 0)
    try descriptor.withDescriptor(.groupStatus) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_VFIO_GROUP_GET_STATUS, &request, .groupStatus, [.init("group", "\(number)")])
    }
    return (request.flags & CIOMMUFD_VFIO_GROUP_FLAGS_VIABLE != 0, request.flags & CIOMMUFD_VFIO_GROUP_FLAGS_CONTAINER_SET != 0)
  }

  /// Sets the group to `container` (`VFIO_GROUP_SET_CONTAINER`). A closed container fails
  /// with `EBADF` before the kernel is asked (its number may name another file by now); it
  /// is held open for the length of the call.
  public func setContainer(_ container: VFIOContainer) throws(IommufdError) {
    try container.descriptor.withDescriptor(.groupSetContainer) { containerDescriptor throws(IommufdError) in
      var containerFD = containerDescriptor.rawValue
      try descriptor.withDescriptor(.groupSetContainer) { fd throws(IommufdError) in
        try backend.ioctl(fd, CIOMMUFD_VFIO_GROUP_SET_CONTAINER, &containerFD, .groupSetContainer, [.init("group", "\(number)")])
      }
    }
    self.container.withLock { $0 = container }
  }

  /// Opens the device `address` of the group (`VFIO_GROUP_GET_DEVICE_FD`). The device is
  /// ready for regions and IRQs at once: there is no bind or attach on this path.
  public func openDevice(_ address: PCIAddress) throws(IommufdError) -> VFIODevice {
    try openDevice(named: address.description)
  }

  /// Opens mediated device `id` of the group (`VFIO_GROUP_GET_DEVICE_FD` with its UUID).
  public func openDevice(_ id: MediatedDeviceID) throws(IommufdError) -> VFIODevice {
    try openDevice(named: id.description)
  }

  private func openDevice(named deviceName: String) throws(IommufdError) -> VFIODevice {
    var name = Array(deviceName.utf8CString)
    let fd = try descriptor.withDescriptor(.groupDevice) { fd throws(IommufdError) in
      try withScratchBuffer(count: name.count) { buffer throws(IommufdError) -> Int32 in
        name.withUnsafeMutableBytes { buffer.copyMemory(from: UnsafeRawBufferPointer($0)) }
        return try backend.ioctl(fd, CIOMMUFD_VFIO_GROUP_GET_DEVICE_FD, buffer: buffer, .groupDevice, [.init("group", "\(number)"), .init("device", deviceName)])
      }
    }
    return VFIODevice(adopting: FileDescriptor(rawValue: fd), path: nil, backend: backend)
  }

  /// Closes the group; the kernel takes it off its container.
  public func close() throws(IommufdError) { try descriptor.close() }
}
