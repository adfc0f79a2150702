import CIommufd
import SystemPackage

/// Requests that came after Linux 6.12. On an older kernel they fail with a clear answer:
/// an ``IommufdError`` whose detail says the kernel lacks the request (ENOTTY for new
/// iommufd requests; EINVAL for the PASID flag, which 6.12 treats as an unknown flag).
extension IOAS {
  /// Maps `length` bytes of the file `fd` from byte `offset` (`IOMMU_IOAS_MAP_FILE`, 6.13):
  /// guest RAM in a memfd, mapped without a user address. Returns the IOVA.
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
      try iommufd.issueNewerRequest(CIOMMUFD_IOMMU_IOAS_MAP_FILE, &request, .ioasMapFile, [.ioas(id)], using: [object], since: "6.13")
      mappings.mapped(IOVARange(start: request.iova, last: request.iova &+ (length &- 1)))
    }
    return request.iova
  }
}

extension IOMMUFD {
  /// Moves the pinned-page charge of every mapping to the calling process
  /// (`IOMMU_IOAS_CHANGE_PROCESS`, 6.14); every mapping must come from ``IOAS/mapFile``.
  public func changeProcess() throws(IommufdError) {
    var request = ciommufd_iommu_ioas_change_process(size: UInt32(MemoryLayout<ciommufd_iommu_ioas_change_process>.size), __reserved: 0)
    try issueNewerRequest(CIOMMUFD_IOMMU_IOAS_CHANGE_PROCESS, &request, .changeProcess, [], since: "6.14")
  }
}

extension VFIODevice {
  /// Attaches PASID `pasid` of the device to `target` (6.15); returns the HWPT id used.
  public func attach(to target: some AttachTarget, pasid: UInt32) throws(IommufdError) -> ObjectID {
    var request = ciommufd_vfio_device_attach_iommufd_pt_pasid(
      argsz: UInt32(MemoryLayout<ciommufd_vfio_device_attach_iommufd_pt_pasid>.size), flags: CIOMMUFD_VFIO_DEVICE_ATTACH_PASID,
      pt_id: target.id.rawValue, pasid: pasid)
    do throws(IommufdError) {
      try withLive(target, .deviceAttach) { () throws(IommufdError) in
        try ioctl(CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &request, .deviceAttach, [.pageTable(target.id), .init("pasid", "\(pasid)")])
      }
    } catch where error.errno == .invalidArgument && error.detail == nil {
      // The kernel's answer; the library's own refusals (a target of another context) keep their detail.
      throw error.unsupported("the kernel refused the PASID flag: PASID attach needs Linux 6.15 or later (or the device has no PASID)")
    }
    return ObjectID(request.pt_id)
  }

  /// Detaches PASID `pasid` of the device (6.15).
  public func detach(pasid: UInt32) throws(IommufdError) {
    var request = ciommufd_vfio_device_detach_iommufd_pt_pasid(
      argsz: UInt32(MemoryLayout<ciommufd_vfio_device_detach_iommufd_pt_pasid>.size), flags: CIOMMUFD_VFIO_DEVICE_DETACH_PASID,
      pasid: pasid)
    do throws(IommufdError) {
      try ioctl(CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT, &request, .deviceDetach, [.init("pasid", "\(pasid)")])
    } catch where error.errno == .invalidArgument {
      throw error.unsupported("the kernel refused the PASID flag: PASID detach needs Linux 6.15 or later")
    }
  }
}

extension IOMMUFD {
  /// Issues an iommufd request added after 6.12 on the context's descriptor. A kernel
  /// without it answers ENOTTY; the error then says which release brought the request.
  func issueNewerRequest<Argument>(
    _ request: Int32, _ argument: inout Argument, _ operation: IommufdError.Operation,
    _ objects: [IommufdError.InvolvedObject], using owned: [OwnedObject] = [], since release: String
  ) throws(IommufdError) {
    try withDescriptor(operation, using: owned) { fd throws(IommufdError) in
      do throws(IommufdError) {
        try backend.ioctl(fd, request, &argument, operation, objects)
      } catch where error.errno == .inappropriateIOCTLForDevice {
        throw error.unsupported("\(operation.rawValue) is not supported by this kernel (it came in Linux \(release))")
      }
    }
  }
}

extension IommufdError {
  /// The same error, saying what the kernel lacks.
  func unsupported(_ detail: String) -> IommufdError {
    var error = self
    error.detail = detail
    return error
  }
}
