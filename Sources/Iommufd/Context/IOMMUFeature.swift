/// iommufd requests that came with particular kernel versions, for probing what the running
/// kernel has.
public enum IOMMUFeature: UInt32, CaseIterable, Sendable, CustomStringConvertible {
  /// `IOMMU_HWPT_ALLOC` (6.6).
  case hwptAlloc = 0x89
  /// `IOMMU_GET_HW_INFO` (6.6).
  case hardwareInfo = 0x8A
  /// `IOMMU_HWPT_SET_DIRTY_TRACKING` (6.7).
  case dirtyTracking = 0x8B
  /// `IOMMU_HWPT_INVALIDATE` (6.8).
  case invalidate = 0x8D
  /// `IOMMU_FAULT_QUEUE_ALLOC` (6.11).
  case faultQueue = 0x8E
  /// `IOMMU_IOAS_MAP_FILE` (6.13).
  case mapFile = 0x8F
  /// `IOMMU_VIOMMU_ALLOC` (6.13).
  case viommu = 0x90
  /// `IOMMU_VDEVICE_ALLOC` (6.13).
  case vdevice = 0x91
  /// `IOMMU_IOAS_CHANGE_PROCESS` (6.14).
  case changeProcess = 0x92
  /// `IOMMU_VEVENTQ_ALLOC` (6.15).
  case veventq = 0x93
  /// `IOMMU_HW_QUEUE_ALLOC` (6.17).
  case hardwareQueue = 0x94
  /// `IOMMU_TEST_CMD` (kernels built with `CONFIG_IOMMUFD_TEST`).
  case selfTest = 0xA0

  /// The request's name.
  public var description: String {
    switch self {
    case .hwptAlloc: "IOMMU_HWPT_ALLOC"
    case .hardwareInfo: "IOMMU_GET_HW_INFO"
    case .dirtyTracking: "IOMMU_HWPT_SET_DIRTY_TRACKING"
    case .invalidate: "IOMMU_HWPT_INVALIDATE"
    case .faultQueue: "IOMMU_FAULT_QUEUE_ALLOC"
    case .mapFile: "IOMMU_IOAS_MAP_FILE"
    case .viommu: "IOMMU_VIOMMU_ALLOC"
    case .vdevice: "IOMMU_VDEVICE_ALLOC"
    case .changeProcess: "IOMMU_IOAS_CHANGE_PROCESS"
    case .veventq: "IOMMU_VEVENTQ_ALLOC"
    case .hardwareQueue: "IOMMU_HW_QUEUE_ALLOC"
    case .selfTest: "IOMMU_TEST_CMD"
    }
  }
}

extension IOMMUFD {
  /// Whether the running kernel implements `feature`: the request is issued with a size of
  /// 0, which a kernel that has it rejects as too short (EINVAL) and one that lacks it as
  /// unknown (ENOTTY). Nothing is created either way.
  public func supports(_ feature: IOMMUFeature) throws(IommufdError) -> Bool {
    var size: UInt32 = 0
    do {
      try withDescriptor(.probe) { fd throws(IommufdError) in
        try backend.ioctl(fd, Int32(0x3B00) | Int32(feature.rawValue), &size, .probe, [.init("feature", feature.description)])
      }
      return true
    } catch where error.errno == .inappropriateIOCTLForDevice {
      return false
    } catch where error.errno == .invalidArgument {
      return true
    }
  }
}
