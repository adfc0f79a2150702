import CIommufd

/// What `IOMMU_GET_HW_INFO` reports about the IOMMU behind a bound device.
public struct IOMMUHardwareInfo: Hashable, Sendable {
  /// `IOMMU_HW_INFO_TYPE_*`.
  public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The raw type.
    public var rawValue: UInt32
    /// Creates from the raw type.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The driver reports nothing.
    public static let none = Kind(rawValue: 0)
    /// Intel VT-d: the data is `struct iommu_hw_info_vtd`.
    public static let intelVTd = Kind(rawValue: 1)
    /// ARM SMMUv3 (6.14+).
    public static let armSMMUv3 = Kind(rawValue: 2)
    /// NVIDIA Tegra241 CMDQV, an extension of SMMUv3 (requested with ``IOMMUFD/hardwareInfo(device:kind:)``).
    public static let tegra241CMDQV = Kind(rawValue: 3)
    /// AMD IOMMU: the data is `struct iommu_hw_info_amd`.
    public static let amd = Kind(rawValue: 4)
    /// The iommufd self-test's mock IOMMU.
    public static let selfTest = Kind(rawValue: 0xFEED_BEEF)
    /// A name for the type.
    public var description: String {
      switch self {
      case .none: "none"
      case .intelVTd: "Intel VT-d"
      case .armSMMUv3: "ARM SMMUv3"
      case .tegra241CMDQV: "Tegra241 CMDQV"
      case .amd: "AMD IOMMU"
      case .selfTest: "iommufd self-test"
      default: "type \(rawValue)"
      }
    }
  }

  /// `IOMMU_HW_CAP_*`.
  public struct Capabilities: OptionSet, Hashable, Sendable {
    /// The raw bits.
    public var rawValue: UInt64
    /// Creates from the raw bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// HW page tables can track dirty pages.
    public static let dirtyTracking = Capabilities(rawValue: 1 << 0)
    /// PCI PASID execute permission.
    public static let pasidExecute = Capabilities(rawValue: 1 << 1)
    /// PCI PASID privileged mode.
    public static let pasidPrivileged = Capabilities(rawValue: 1 << 2)
    /// The device cannot use PCI ATS (`IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED`; 7.2 reports it, 6.12 does not).
    public static let atsNotSupported = Capabilities(rawValue: 1 << 3)
  }

  /// The IOMMU type.
  public var kind: Kind
  /// The driver's data, as the kernel gave it.
  public var data: [UInt8]
  /// The capabilities.
  public var capabilities: Capabilities
  /// log2 of the PASID count; 0 when the device has no PASID.
  public var maxPASIDLog2: UInt8

  /// VT-d's capability and extended capability registers, when ``kind`` is VT-d.
  public var vtdRegisters: (capability: UInt64, extendedCapability: UInt64)? {
    guard kind == .intelVTd, data.count >= 24 else { return nil }
    return data.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 8, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
  }

  /// ARM SMMUv3's ID registers (`struct iommu_hw_info_arm_smmuv3`: flags, reserved,
  /// `IDR0`–`IDR5`, `IIDR`, `AIDR`), when ``kind`` is SMMUv3.
  public var smmuV3Registers: (idr: [UInt32], iidr: UInt32, aidr: UInt32)? {
    guard kind == .armSMMUv3, data.count >= 40 else { return nil }
    return data.withUnsafeBytes { bytes in
      ((0..<6).map { bytes.loadUnaligned(fromByteOffset: 8 + $0 * 4, as: UInt32.self) },
       bytes.loadUnaligned(fromByteOffset: 32, as: UInt32.self), bytes.loadUnaligned(fromByteOffset: 36, as: UInt32.self))
    }
  }

  /// AMD's extended feature registers (`struct iommu_hw_info_amd`: EFR, EFR2), when
  /// ``kind`` is AMD.
  public var amdRegisters: (extendedFeatures: UInt64, extendedFeatures2: UInt64)? {
    guard kind == .amd, data.count >= 16 else { return nil }
    return data.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
  }
  /// Tegra241 CMDQV's parameters (`struct iommu_hw_info_tegra241_cmdqv`), when ``kind`` is
  /// Tegra241 CMDQV: the version, and log2 of the VCMDQ and SID-replacement counts.
  public var tegra241Parameters: (version: UInt8, log2VCMDQs: UInt8, log2VSIDs: UInt8)? {
    guard kind == .tegra241CMDQV, data.count >= 8 else { return nil }
    return (data[4], data[5], data[6])
  }
  /// Creates the value.
  public init(kind: Kind, data: [UInt8], capabilities: Capabilities, maxPASIDLog2: UInt8) {
    self.kind = kind
    self.data = data
    self.capabilities = capabilities
    self.maxPASIDLog2 = maxPASIDLog2
  }
}

extension IOMMUFD {
  /// The IOMMU behind the bound device `deviceID` (`IOMMU_GET_HW_INFO`); with `kind`, the
  /// data of that type (`IOMMU_HW_INFO_FLAG_INPUT_TYPE`, after 6.12: an IOMMU that has
  /// several, such as SMMUv3 with Tegra241 CMDQV; EOPNOTSUPP for a type it does not have,
  /// and on 6.12).
  public func hardwareInfo(device deviceID: ObjectID, kind: IOMMUHardwareInfo.Kind? = nil) throws(IommufdError) -> IOMMUHardwareInfo {
    let capacity = 256
    return try withScratchBuffer(count: capacity) { data throws(IommufdError) -> IOMMUHardwareInfo in
      var request = ciommufd_iommu_hw_info()
      request.size = UInt32(MemoryLayout<ciommufd_iommu_hw_info>.size)
      request.dev_id = deviceID.rawValue
      if let kind {
        request.flags = 1  // IOMMU_HW_INFO_FLAG_INPUT_TYPE
        request.out_data_type = kind.rawValue
      }
      request.data_len = UInt32(capacity)
      request.data_uptr = UInt64(UInt(bitPattern: data.baseAddress))
      try withDescriptor(.getHWInfo) { fd throws(IommufdError) in
        try backend.ioctl(fd, CIOMMUFD_IOMMU_GET_HW_INFO, &request, .getHWInfo, [.device(deviceID)])
      }
      return IOMMUHardwareInfo(
        kind: .init(rawValue: request.out_data_type), data: Array(data.prefix(min(Int(request.data_len), capacity))),
        capabilities: .init(rawValue: request.out_capabilities), maxPASIDLog2: request.out_max_pasid_log2)
    }
  }
}
