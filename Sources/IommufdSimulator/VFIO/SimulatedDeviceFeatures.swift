import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `VFIO_DEVICE_FEATURE` (`vfio_ioctl_device_feature` and the handlers it calls): the core's
/// checks, the migration and DMA logging features of a mediated device's model, vfio-pci's
/// low-power features.
extension SimulatedKernel.State {
  /// Who answers a feature beyond the core: vfio-pci for a PCI device, a mediated device's
  /// model (which has no `device_feature` op of its own).
  enum FeatureDriver {
    case pci(SimulatedDeviceFile)
    case mediated(SimulatedMediatedFile)

    var model: SimulatedMediatedDevice? {
      if case .mediated(let file) = self { return file.instance.device }
      return nil
    }

    /// The model whose migration driver answers: the mediated device's, or the PCI
    /// device's (a vfio-pci variant driver's, where the model has migration flags).
    var migration: (any SimulatedMigrationModel)? {
      switch self {
      case .pci(let file): file.device
      case .mediated(let file): file.instance.device
      }
    }
  }

  /// The result of `vfio_check_feature`: a probe that passed (0), or go on (the request).
  private enum FeatureCheck { case probed, proceed }

  /// `vfio_check_feature`: a direction the feature lacks EINVAL; a probe passes; neither GET
  /// nor SET EINVAL; a payload below `minimum` EINVAL.
  private func checkFeature(_ flags: UInt32, payload: UInt32, supported: UInt32, minimum: UInt32) throws(Errno) -> FeatureCheck {
    let get = CIOMMUFD_VFIO_DEVICE_FEATURE_GET, set = CIOMMUFD_VFIO_DEVICE_FEATURE_SET
    if flags & (get | set) & ~supported != 0 { throw .invalidArgument }
    if flags & CIOMMUFD_VFIO_DEVICE_FEATURE_PROBE != 0 { return .probed }
    if flags & (get | set) == 0 { throw .invalidArgument }
    if payload < minimum { throw .invalidArgument }
    return .proceed
  }

  func featureIoctl(_ driver: FeatureDriver, _ address: UInt64) throws(Errno) -> Int32 {
    let header = try UserMemory.read(address, count: 8)
    let argsz = UserMemory.decode(UInt32.self, from: header)
    let flags = UserMemory.decode(UInt32.self, from: header, offset: 4)
    let get = CIOMMUFD_VFIO_DEVICE_FEATURE_GET, set = CIOMMUFD_VFIO_DEVICE_FEATURE_SET
    let probe = CIOMMUFD_VFIO_DEVICE_FEATURE_PROBE
    if argsz < 8 { throw .invalidArgument }
    if flags & ~(CIOMMUFD_VFIO_DEVICE_FEATURE_MASK | get | set | probe) != 0 { throw .invalidArgument }
    if flags & probe == 0 && flags & get != 0 && flags & set != 0 { throw .invalidArgument }
    let payload = argsz - 8
    let data = try UserMemory.offset(address, by: 8)
    let model = driver.model
    switch Int32(flags & CIOMMUFD_VFIO_DEVICE_FEATURE_MASK) {
    case CIOMMUFD_VFIO_DEVICE_FEATURE_MIGRATION:
      guard let model = driver.migration, let migration = model.migrationFlags else { throw .inappropriateIOCTLForDevice }
      guard try checkFeature(flags, payload: payload, supported: get, minimum: 8) == .proceed else { return 0 }
      try UserMemory.write(UserMemory.encode(migration), to: data)
    case CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
      guard let model = driver.migration, model.migrationFlags != nil else { throw .inappropriateIOCTLForDevice }
      guard try checkFeature(flags, payload: payload, supported: get | set, minimum: 8) == .proceed else { return 0 }
      let request = try UserMemory.read(data, count: 8)
      if flags & get != 0 {
        try UserMemory.write(UserMemory.encode(model.migrationState.rawValue) + UserMemory.encode(Int32(-1)), to: data)
        return 0
      }
      let requested = UserMemory.decode(UInt32.self, from: request)
      let outcome: Result<SimulatedMigrationFile?, Errno>
      if let target = VFIOMigrationState(rawValue: requested) {
        do throws(Errno) { outcome = .success(try model.changeMigrationState(to: target)) } catch { outcome = .failure(error) }
      } else {
        outcome = .failure(.invalidArgument)
      }
      // The reply carries the state asked for and the new descriptor, or -1 (on failure too).
      guard case .success(let file?) = outcome else {
        try UserMemory.write(UserMemory.encode(requested) + UserMemory.encode(Int32(-1)), to: data)
        if case .failure(let error) = outcome { throw error }
        return 0
      }
      let fd = Glibc.open("/dev/null", (file.isSaving ? O_RDONLY : O_WRONLY) | O_CLOEXEC)  // as the stream's own mode
      guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
      do throws(Errno) {
        try UserMemory.write(UserMemory.encode(requested) + UserMemory.encode(fd), to: data)
      } catch {
        _ = Glibc.close(fd)
        throw error
      }
      files[fd] = .migration(file)
    case CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
      guard let model = driver.migration, model.migrationFlags != nil else { throw .inappropriateIOCTLForDevice }
      guard try checkFeature(flags, payload: payload, supported: get, minimum: 8) == .proceed else { return 0 }
      try UserMemory.write(UserMemory.encode(model.migrationDataSize), to: data)
    case CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
      guard let model, model.hasDMALogging else { throw .inappropriateIOCTLForDevice }
      guard try checkFeature(flags, payload: payload, supported: set, minimum: 24) == .proceed else { return 0 }
      var control = try UserMemory.read(data, count: 24)
      try startLogging(model, &control)
      do throws(Errno) {
        try UserMemory.write(control, to: data)
      } catch {
        try? model.stopDMALogging()  // the core stops what it started when the reply fails
        throw error
      }
    case CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
      guard let model, model.hasDMALogging else { throw .inappropriateIOCTLForDevice }
      guard try checkFeature(flags, payload: payload, supported: set, minimum: 0) == .proceed else { return 0 }
      try model.stopDMALogging()
    case CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
      guard let model, model.hasDMALogging else { throw .inappropriateIOCTLForDevice }
      guard try checkFeature(flags, payload: payload, supported: get, minimum: 32) == .proceed else { return 0 }
      try reportLogging(model, try UserMemory.read(data, count: 32))
    case 12 where isLinux7_2:
      // MIG_PRECOPY_INFOv2: a device without PRE_COPY (or without migration) is EINVAL.
      guard let model = driver.migration, let migration = model.migrationFlags, migration & UInt64(CIOMMUFD_VFIO_MIGRATION_PRE_COPY) != 0 else {
        throw .invalidArgument
      }
      guard try checkFeature(flags, payload: payload, supported: set, minimum: 0) == .proceed else { return 0 }
      model.precopyInfoV2 = true
    default:
      // The driver's own features: vfio-pci's; a mediated device's model has none.
      guard case .pci(let file) = driver else { throw .inappropriateIOCTLForDevice }
      return try pciFeature(file, flags, payload: payload, data: data)
    }
    return 0
  }

  /// `vfio_ioctl_device_feature_logging_start`'s checks (up to 256 ranges, aligned to the
  /// page size, not overflowing, not overlapping), then the model's `log_start`, whose page
  /// size is written back.
  private func startLogging(_ model: SimulatedMediatedDevice, _ control: inout [UInt8]) throws(Errno) {
    let pageSize = UserMemory.decode(UInt64.self, from: control)
    let count = UserMemory.decode(UInt32.self, from: control, offset: 8)
    let list = UserMemory.decode(UInt64.self, from: control, offset: 16)
    if count == 0 { throw .invalidArgument }
    if count > 256 { throw .argListTooLong }
    var ranges: [(iova: UInt64, length: UInt64)] = []
    var nodes: [(start: UInt64, last: UInt64)] = []
    for index in 0..<Int(count) {
      let range = try UserMemory.read(try UserMemory.offset(list, by: UInt64(index) * 16), count: 16)
      let iova = UserMemory.decode(UInt64.self, from: range)
      let length = UserMemory.decode(UInt64.self, from: range, offset: 8)
      let mask = pageSize &- 1
      if iova & mask != 0 || length & mask != 0 { throw .invalidArgument }
      if iova.addingReportingOverflow(length).overflow { throw .overflow }
      let node = (start: iova, last: iova &+ length &- 1)
      if nodes.contains(where: { $0.start <= node.last && $0.last >= node.start }) { throw .invalidArgument }
      nodes.append(node)
      ranges.append((iova, length))
    }
    let chosen = try model.startDMALogging(ranges: ranges, pageSize: pageSize)
    control.replaceSubrange(0..<8, with: UserMemory.encode(chosen))
  }

  /// `vfio_ioctl_device_feature_logging_report`: a page size of at least 4096 and a power of
  /// two, no overflow; the model's dirty pages become bits of the caller's bitmap (its pages
  /// are only touched for a bit set).
  private func reportLogging(_ model: SimulatedMediatedDevice, _ report: [UInt8]) throws(Errno) {
    let iova = UserMemory.decode(UInt64.self, from: report)
    let length = UserMemory.decode(UInt64.self, from: report, offset: 8)
    let pageSize = UserMemory.decode(UInt64.self, from: report, offset: 16)
    let bitmap = UserMemory.decode(UInt64.self, from: report, offset: 24)
    if pageSize < 4096 || pageSize & (pageSize - 1) != 0 { throw .invalidArgument }
    if iova.addingReportingOverflow(length).overflow { throw .overflow }
    for page in try model.reportDMALogging(iova: iova, length: length, pageSize: pageSize) where page >= iova && page - iova < length {
      let bit = (page - iova) / pageSize
      let byteAddress = try UserMemory.offset(bitmap, by: bit / 8)
      var byte = try UserMemory.read(byteAddress, count: 1)
      byte[0] |= UInt8(1) << UInt8(bit % 8)
      try UserMemory.write(byte, to: byteAddress)
    }
  }

  /// vfio-pci's features (`vfio_pci_core_ioctl_feature`): the low-power ones (entry EINVAL
  /// while entered; with a wakeup eventfd, which must be one; exit always), VF tokens (no
  /// simulated device is an SR-IOV PF: ENOTTY), the rest ENOTTY.
  private func pciFeature(_ file: SimulatedDeviceFile, _ flags: UInt32, payload: UInt32, data: UInt64) throws(Errno) -> Int32 {
    let set = CIOMMUFD_VFIO_DEVICE_FEATURE_SET
    switch Int32(flags & CIOMMUFD_VFIO_DEVICE_FEATURE_MASK) {
    case CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
      guard try checkFeature(flags, payload: payload, supported: set, minimum: 0) == .proceed else { return 0 }
      if lowPower[file.number] != nil { throw .invalidArgument }
      lowPower[file.number] = .some(nil)
    case CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP:
      guard try checkFeature(flags, payload: payload, supported: set, minimum: 8) == .proceed else { return 0 }
      let entry = try UserMemory.read(data, count: 8)
      let fd = UserMemory.decode(Int32.self, from: entry)
      if fd < 0 { throw .invalidArgument }
      let wakeup = try SimulatedEventFD(borrowing: fd)
      if lowPower[file.number] != nil { throw .invalidArgument }
      lowPower[file.number] = wakeup
    case CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
      guard try checkFeature(flags, payload: payload, supported: set, minimum: 0) == .proceed else { return 0 }
      lowPower[file.number] = nil
    default:
      throw .inappropriateIOCTLForDevice
    }
    return 0
  }
}
