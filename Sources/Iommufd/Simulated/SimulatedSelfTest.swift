import CIommufd
import SystemPackage

/// `IOMMU_TEST_CMD` of a `CONFIG_IOMMUFD_TEST` kernel (semantics §7): the mock IOMMU and
/// mock devices, for the ops the package uses.
extension SimulatedKernel.State {
  func testCommand(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var command = try self.command(ciommufd_iommu_test_cmd.self, address, size, minimum: Int(CIOMMUFD_TEST_CMD_MIN_SIZE))
    var payload = withUnsafeBytes(of: command.payload) { Array($0) }
    switch command.op {
    case CIOMMUFD_TEST_OP_ADD_RESERVED:
      let request = UserMemory.decode(ciommufd_iommu_test_add_reserved.self, from: payload)
      guard let ioas = context.ioas(command.id) else { throw .noSuchFileOrDirectory }
      if request.length == 0 { throw .invalidArgument }
      let (last, overflow) = request.start.addingReportingOverflow(request.length - 1)
      if overflow { throw .overflow }
      if ioas.areas.intersects(request.start, last) || ioas.overlapsAllowed(request.start, last) { throw .addressInUse }
      ioas.reserved.append((request.start, last, .test))
      return 0
    case CIOMMUFD_TEST_OP_MOCK_DOMAIN, CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS:
      var request = UserMemory.decode(ciommufd_iommu_test_mock_domain.self, from: payload)
      if command.op == CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS,
        request.dev_flags & ~(CIOMMUFD_MOCK_FLAGS_DEVICE_NO_DIRTY | (isLinux7_2 ? CIOMMUFD_MOCK_FLAGS_DEVICE_PASID : CIOMMUFD_MOCK_FLAGS_DEVICE_HUGE_IOVA)) != 0
      {
        throw .invalidArgument
      }
      guard let target = context.objects[command.id] else { throw .noSuchFileOrDirectory }
      // OBJ-2: the self-test object, then the device, then (for an IOAS) the automatic HWPT.
      try fail(.objectAllocation)
      let selfTestID = context.lowestFreeID()
      context.objects[selfTestID] = .selfTest(deviceID: 0)
      let deviceID = context.lowestFreeID()
      let noDirty = command.op == CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS && request.dev_flags & CIOMMUFD_MOCK_FLAGS_DEVICE_NO_DIRTY != 0
      let object = SimulatedDeviceObject(
        file: nil, profile: .mock(pageSize: pageSize), reservedRegions: [],
        hardwareInfo: (CIOMMUFD_HW_INFO_TYPE_SELFTEST, UserMemory.encode(UInt32(0)) + UserMemory.encode(UInt32(0xDEAD_BEEF)), noDirty ? 0 : 1))
      // 7.2's PASID flag: a device with 2^20 PASIDs.
      if command.op == CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS && request.dev_flags & CIOMMUFD_MOCK_FLAGS_DEVICE_PASID != 0 { object.maxPASIDLog2 = 20 }
      context.objects[deviceID] = .device(object)
      do throws(Errno) {
        let hwptID: UInt32
        switch target {
        case .ioas(let ioas): hwptID = try attachToIOAS(context, object, deviceID, ioasID: command.id, ioas)
        case .hwpt(let hwpt):
          guard hwpt.profile == object.profile else { throw .invalidArgument }
          if hwpt.viommuID != nil { throw .noSuchFileOrDirectory }  // a new device has no vDEVICE there
          hwptID = try attachToHWPT(context, object, deviceID, hwptID: command.id, hwpt)
        case .device, .selfTest, .fault, .viommu, .vdevice, .veventq, .tombstone, .hwQueue, .access: throw .invalidArgument
        }
        request.out_stdev_id = selfTestID
        request.out_idev_id = deviceID
        request.out_hwpt_id = hwptID
      } catch {
        context.objects[deviceID] = nil
        context.objects[selfTestID] = nil
        throw error
      }
      context.objects[selfTestID] = .selfTest(deviceID: deviceID)
      payload.replaceSubrange(0..<16, with: UserMemory.encode(request))
    case CIOMMUFD_TEST_OP_MOCK_DOMAIN_REPLACE:
      guard case .selfTest(let deviceID)? = context.objects[command.id], let object = context.device(deviceID) else {
        throw .noSuchFileOrDirectory
      }
      let ptID = UserMemory.decode(UInt32.self, from: payload)
      guard let target = context.objects[ptID] else { throw .noSuchFileOrDirectory }
      let result: UInt32
      switch target {
      case .ioas(let ioas):
        result = try attachToIOAS(context, object, deviceID, ioasID: ptID, ioas)
        object.virtualTarget = nil
      case .hwpt(let hwpt):
        guard hwpt.profile == object.profile else { throw .invalidArgument }
        // 7.2: a nested HWPT of a vIOMMU takes a device with a vDEVICE there, and the mock
        // device remembers the vIOMMU and virtual id (for TRIGGER_VEVENT).
        var virtualTarget: (viommuID: UInt32, virtualID: UInt64)?
        if let viommuID = hwpt.viommuID {
          guard let (_, vdevice) = context.vdevice(ofDevice: deviceID), vdevice.viommuID == viommuID else {
            throw .noSuchFileOrDirectory
          }
          virtualTarget = (viommuID, vdevice.virtualID)
        }
        result = try attachToHWPT(context, object, deviceID, hwptID: ptID, hwpt)
        object.virtualTarget = virtualTarget
      case .device, .selfTest, .fault, .viommu, .vdevice, .veventq, .tombstone, .hwQueue, .access: throw .invalidArgument
      }
      payload.replaceSubrange(0..<4, with: UserMemory.encode(result))
    case CIOMMUFD_TEST_OP_MD_CHECK_IOTLB:
      guard let hwpt = context.nestedHWPT(command.id) else { throw .noSuchFileOrDirectory }
      let slot = UserMemory.decode(UInt32.self, from: payload)
      let value = UserMemory.decode(UInt32.self, from: payload, offset: 4)
      if slot > 3 || hwpt.iotlb.count != 4 || hwpt.iotlb[Int(slot)] != value { throw .invalidArgument }
    case CIOMMUFD_TEST_OP_TRIGGER_IOPF:
      let deviceID = UserMemory.decode(UInt32.self, from: payload)
      guard let object = context.device(deviceID) else { throw .noSuchFileOrDirectory }
      guard object.file == nil else { throw .invalidArgument }  // not a mock device
      let pasid = UserMemory.decode(UInt32.self, from: payload, offset: 4)
      let fault = SimulatedFaultQueue.Fault(
        flags: CIOMMUFD_PGFAULT_FLAGS_LAST_PAGE | (pasid != 0 ? CIOMMUFD_PGFAULT_FLAGS_PASID_VALID : 0), deviceID: deviceID,
        pasid: pasid, groupID: UserMemory.decode(UInt32.self, from: payload, offset: 8),
        permissions: UserMemory.decode(UInt32.self, from: payload, offset: 12), address: UserMemory.decode(UInt64.self, from: payload, offset: 16))
      // Delivered to the fault queue of the attached HWPT; without one (or for a PASID no
      // domain is attached to) the fault is answered at once and nothing is queued.
      if pasid == 0, let hwpt = object.attachedHWPTObject, let faultID = hwpt.faultID, case .fault(let queue)? = context.objects[faultID] {
        queue.pending.append([fault])
      }
    case CIOMMUFD_TEST_OP_DEV_CHECK_CACHE where isLinux7_2:
      guard let device = context.device(command.id) else { throw .noSuchFileOrDirectory }
      let slot = UserMemory.decode(UInt32.self, from: payload)
      let value = UserMemory.decode(UInt32.self, from: payload, offset: 4)
      if slot > 3 || device.cache[Int(slot)] != value { throw .invalidArgument }
    case CIOMMUFD_TEST_OP_TRIGGER_VEVENT where isLinux7_2:
      try triggerVEvent(context, deviceID: UInt32(UserMemory.decode(UInt32.self, from: payload)))
    case CIOMMUFD_TEST_OP_DIRTY:
      let marked = try testDirty(context, command)
      payload.replaceSubrange(40..<48, with: UserMemory.encode(marked))
    default:
      throw .notSupported
    }
    payload.withUnsafeBytes { bytes in withUnsafeMutableBytes(of: &command.payload) { $0.copyMemory(from: bytes) } }
    try respond(command, address, size)
    return 0
  }
}
