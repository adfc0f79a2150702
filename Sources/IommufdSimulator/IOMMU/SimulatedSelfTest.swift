import Iommufd
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
      // The range is checked before the IOAS is looked up.
      let request = UserMemory.decode(ciommufd_iommu_test_add_reserved.self, from: payload)
      if request.length == 0 { throw .invalidArgument }
      let (last, overflow) = request.start.addingReportingOverflow(request.length - 1)
      if overflow { throw .overflow }
      guard let ioas = context.ioas(command.id) else { throw .noSuchFileOrDirectory }
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
      // OBJ-2: the self-test object, then the device, then (for an IOAS) the automatic HWPT.
      // The target is looked up only after both ids are taken: the self-test object, not
      // yet finalized, is not found (ENOENT); the new device is the wrong type (EINVAL).
      try fail(.objectAllocation)
      // With a real IOMMU driver active the mock device cannot join the mock IOMMU.
      if !configuration.mockDevices { throw .invalidArgument }
      let selfTestID = context.lowestFreeID()
      context.objects[selfTestID] = .selfTest(deviceID: 0)
      let deviceID = context.lowestFreeID()
      let noDirty = command.op == CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS && request.dev_flags & CIOMMUFD_MOCK_FLAGS_DEVICE_NO_DIRTY != 0
      let object = SimulatedDeviceObject(
        file: nil, profile: .mock(pageSize: pageSize), reservedRegions: [],
        hardwareInfo: (CIOMMUFD_HW_INFO_TYPE_SELFTEST, UserMemory.encode(UInt32(0)) + UserMemory.encode(UInt32(0xDEAD_BEEF)), noDirty ? 0 : 1))
      // 7.2's PASID flag: a device with 2^20 PASIDs.
      if command.op == CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS && request.dev_flags & CIOMMUFD_MOCK_FLAGS_DEVICE_PASID != 0 { object.maxPASIDLog2 = 20 }
      if command.op == CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS && !isLinux7_2 && request.dev_flags & CIOMMUFD_MOCK_FLAGS_DEVICE_HUGE_IOVA != 0 {
        object.hugeIOVA = true
      }
      context.objects[deviceID] = .device(object)
      do throws(Errno) {
        guard command.id != selfTestID, let target = context.object(command.id) else { throw .noSuchFileOrDirectory }
        let hwptID: UInt32
        switch target {
        case .ioas(let ioas): hwptID = try attachToIOAS(context, object, deviceID, ioasID: command.id, ioas)
        case .hwpt(let hwpt):
          guard hwpt.profile.driver == object.profile.driver else { throw .invalidArgument }
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
      guard let target = context.object(ptID) else { throw .noSuchFileOrDirectory }
      // With PASIDs attached, the RID may only move to a PASID-compatible HWPT.
      if !object.pasids.isEmpty, context.hwpt(ptID).map({ $0.flags & CIOMMUFD_HWPT_ALLOC_PASID == 0 }) ?? true {
        throw .invalidArgument
      }
      let result: UInt32
      switch target {
      case .ioas(let ioas):
        result = try attachToIOAS(context, object, deviceID, ioasID: ptID, ioas)
        object.virtualTarget = nil
      case .hwpt(let hwpt):
        guard hwpt.profile.driver == object.profile.driver else { throw .invalidArgument }
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
      // Delivered to the fault queue of the attached HWPT; without one the fault is
      // answered at once and nothing is queued. A PASID with no domain of its own goes to
      // the RID's domain if that is nested (the mock IOMMU keeps a user PASID table).
      var target: SimulatedHWPT?
      if pasid != 0, let own = object.pasids[pasid] {
        target = context.hwpt(own)  // the PASID's own domain (7.2 PASID attach)
      } else if let hwpt = object.attachedHWPTObject, pasid == 0 || hwpt.parentID != nil {
        target = hwpt
      }
      if let hwpt = target, let faultID = hwpt.faultID, case .fault(let queue)? = context.objects[faultID] {
        queue.pending.append([fault])
      }
    case CIOMMUFD_TEST_OP_DEV_CHECK_CACHE where isLinux7_2:
      guard let device = context.device(command.id) else { throw .noSuchFileOrDirectory }
      let slot = UserMemory.decode(UInt32.self, from: payload)
      let value = UserMemory.decode(UInt32.self, from: payload, offset: 4)
      if slot > 3 || device.cache[Int(slot)] != value { throw .invalidArgument }
    case CIOMMUFD_TEST_OP_TRIGGER_VEVENT where isLinux7_2:
      try triggerVEvent(context, deviceID: UInt32(UserMemory.decode(UInt32.self, from: payload)))
    case CIOMMUFD_TEST_OP_PASID_ATTACH where isLinux7_2, CIOMMUFD_TEST_OP_PASID_REPLACE where isLinux7_2:
      let pasid = UserMemory.decode(UInt32.self, from: payload)
      let ptID = UserMemory.decode(UInt32.self, from: payload, offset: 4)
      let hwptID = try attachMockPASID(context, stdevID: command.id, pasid: pasid, ptID: ptID, replace: command.op == CIOMMUFD_TEST_OP_PASID_REPLACE)
      payload.replaceSubrange(4..<8, with: UserMemory.encode(hwptID))
    case CIOMMUFD_TEST_OP_PASID_DETACH where isLinux7_2:
      guard case .selfTest(let deviceID)? = context.objects[command.id], let object = context.device(deviceID) else {
        throw .noSuchFileOrDirectory
      }
      let pasid = UserMemory.decode(UInt32.self, from: payload)
      if object.pasids.removeValue(forKey: pasid) != nil, pasid == 1024 { object.pasid1024FakeError = false }
    case CIOMMUFD_TEST_OP_PASID_CHECK_HWPT where isLinux7_2:
      guard case .selfTest(let deviceID)? = context.objects[command.id], let object = context.device(deviceID) else {
        throw .noSuchFileOrDirectory
      }
      // PASID 0 is IOMMU_NO_PASID: the RID's domain. Any object is looked up (ENOENT when
      // none) and compared by its domain: only the attached HWPT matches.
      let pasid = UserMemory.decode(UInt32.self, from: payload)
      let attached = pasid == 0 ? object.attachedHWPT : object.pasids[pasid]
      let hwptID = UserMemory.decode(UInt32.self, from: payload, offset: 4)
      if hwptID == 0 {
        if attached != nil { throw .invalidArgument }
      } else {
        guard context.object(hwptID) != nil else { throw .noSuchFileOrDirectory }
        if attached != hwptID { throw .invalidArgument }
      }
    case CIOMMUFD_TEST_OP_CREATE_ACCESS:
      _ = try createAccess(context, ioasID: command.id, flags: UserMemory.decode(UInt32.self, from: payload, offset: 4)) {
        fd throws(Errno) in
        payload.replaceSubrange(0..<4, with: UserMemory.encode(UInt32(bitPattern: fd)))
        payload.withUnsafeBytes { bytes in withUnsafeMutableBytes(of: &command.payload) { $0.copyMemory(from: bytes) } }
        try respond(command, address, size)
      }
      return 0
    case CIOMMUFD_TEST_OP_DESTROY_ACCESS_PAGES:
      try destroyAccessPages(try access(descriptor: command.id), id: UserMemory.decode(UInt32.self, from: payload))
      return 0
    case CIOMMUFD_TEST_OP_ACCESS_PAGES:
      // The size limit and the flags come before the descriptor.
      let flags = UserMemory.decode(UInt32.self, from: payload)
      let length = UserMemory.decode(UInt64.self, from: payload, offset: 16)
      if length > 16 << 20 { throw .noMemory }
      if flags & ~(CIOMMUFD_MOCK_FLAGS_ACCESS_WRITE | CIOMMUFD_MOCK_FLAGS_ACCESS_SYZ) != 0 { throw .notSupported }
      let access = try access(descriptor: command.id)
      let id = try accessPages(
        access, iova: UserMemory.decode(UInt64.self, from: payload, offset: 8), length: length,
        uptr: UserMemory.decode(UInt64.self, from: payload, offset: 24), flags: flags)
      payload.replaceSubrange(4..<8, with: UserMemory.encode(id))
      payload.withUnsafeBytes { bytes in withUnsafeMutableBytes(of: &command.payload) { $0.copyMemory(from: bytes) } }
      do {
        try respond(command, address, size)
      } catch {
        dropNewestItem(of: access)
        throw error
      }
      return 0
    case CIOMMUFD_TEST_OP_ACCESS_RW:
      let length = UserMemory.decode(UInt64.self, from: payload, offset: 8)
      let flags = UserMemory.decode(UInt32.self, from: payload, offset: 24)
      if length > 16 << 20 { throw .noMemory }
      let known = CIOMMUFD_MOCK_ACCESS_RW_WRITE | CIOMMUFD_MOCK_ACCESS_RW_SLOW_PATH | CIOMMUFD_MOCK_FLAGS_ACCESS_SYZ
      if flags & ~known != 0 { throw .notSupported }
      try accessReadWrite(
        try access(descriptor: command.id), iova: UserMemory.decode(UInt64.self, from: payload), length: length,
        uptr: UserMemory.decode(UInt64.self, from: payload, offset: 16), flags: flags)
      return 0
    case CIOMMUFD_TEST_OP_ACCESS_REPLACE_IOAS:
      try replaceAccessIOAS(try access(descriptor: command.id), ioasID: UserMemory.decode(UInt32.self, from: payload))
      return 0
    case CIOMMUFD_TEST_OP_DMABUF_GET where isLinux7_2:
      return try dmabufGet(length: UserMemory.decode(UInt32.self, from: payload))  // the descriptor is the result
    case CIOMMUFD_TEST_OP_DMABUF_REVOKE where isLinux7_2:
      try dmabufRevoke(fd: UserMemory.decode(Int32.self, from: payload), revoked: UserMemory.decode(UInt32.self, from: payload, offset: 4) != 0)
      return 0
    case CIOMMUFD_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      // Sizes the kernel's page batches (kernel-wide): what a driver that refuses a map
      // sees pinned first (``firstBatch(of:)``).
      let limit = UserMemory.decode(UInt32.self, from: payload)
      if limit < 12 { throw .invalidArgument }
      temporaryMemoryLimit = UInt64(limit)
    case CIOMMUFD_TEST_OP_MD_CHECK_MAP:
      try checkMap(
        context, hwptID: command.id, iova: UserMemory.decode(UInt64.self, from: payload),
        length: UserMemory.decode(UInt64.self, from: payload, offset: 8), user: UserMemory.decode(UInt64.self, from: payload, offset: 16))
    case CIOMMUFD_TEST_OP_MD_CHECK_REFS:
      try checkRefs(
        length: UserMemory.decode(UInt64.self, from: payload), user: UserMemory.decode(UInt64.self, from: payload, offset: 8),
        refs: UserMemory.decode(UInt32.self, from: payload, offset: 16))
    case CIOMMUFD_TEST_OP_DIRTY:
      let marked = try testDirty(context, command)
      payload.replaceSubrange(40..<48, with: UserMemory.encode(marked))
    default:
      throw .notSupported
    }
    // Only these ops write the struct back (iommufd_ucmd_respond); the others return 0
    // without touching it, so a struct the kernel cannot write does not fail them.
    let responding: Set<UInt32> = [
      CIOMMUFD_TEST_OP_MOCK_DOMAIN, CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS, CIOMMUFD_TEST_OP_MOCK_DOMAIN_REPLACE,
      CIOMMUFD_TEST_OP_PASID_ATTACH, CIOMMUFD_TEST_OP_PASID_REPLACE, CIOMMUFD_TEST_OP_DIRTY,
    ]
    guard responding.contains(command.op) else { return 0 }
    payload.withUnsafeBytes { bytes in withUnsafeMutableBytes(of: &command.payload) { $0.copyMemory(from: bytes) } }
    do {
      try respond(command, address, size)
    } catch {
      // A failed write-back undoes a new mock device (detached, unbound, its ids and an
      // automatic HWPT freed) and a new PASID attachment; a replace or a dirty read stays.
      switch command.op {
      case CIOMMUFD_TEST_OP_MOCK_DOMAIN, CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS:
        let request = UserMemory.decode(ciommufd_iommu_test_mock_domain.self, from: payload)
        if let object = context.device(request.out_idev_id) { detachDevice(context, object, request.out_idev_id) }
        context.objects[request.out_idev_id] = nil
        context.objects[request.out_stdev_id] = nil
      case CIOMMUFD_TEST_OP_PASID_ATTACH:
        if case .selfTest(let deviceID)? = context.objects[command.id], let object = context.device(deviceID) {
          let pasid = UserMemory.decode(UInt32.self, from: payload)
          if object.pasids.removeValue(forKey: pasid) != nil, pasid == 1024 { object.pasid1024FakeError = false }
        }
      default: break
      }
      throw error
    }
    return 0
  }
}

extension SimulatedKernel.State {
  /// `IOMMU_TEST_OP_MD_CHECK_MAP`: every IO page of `length` bytes at `iova` of the mock
  /// paging HWPT `hwptID` translates to the page under `user` (EINVAL where one does not;
  /// EFAULT where `user` cannot be read). 6.12 checks the alignment (to the mock's IO page)
  /// before the lookup, 7.2 after it (to the domain's smallest IO page).
  func checkMap(_ context: SimulatedContext, hwptID: UInt32, iova: UInt64, length: UInt64, user: UInt64) throws(Errno) {
    var ioPage = DomainProfile.mock(pageSize: pageSize).pageSize
    func checkAlignment() throws(Errno) {
      if iova % ioPage != 0 || length % ioPage != 0 || user % ioPage != 0 || user.addingReportingOverflow(length).overflow {
        throw .invalidArgument
      }
    }
    if !isLinux7_2 { try checkAlignment() }
    guard case .hwpt(let hwpt)? = context.objects[hwptID], hwpt.parentID == nil, hwpt.viommuID == nil else {
      throw .noSuchFileOrDirectory
    }
    guard hwpt.profile.driver == .mock, let ioas = context.ioas(hwpt.ioasID) else {
      throw .invalidArgument  // not a mock domain
    }
    if isLinux7_2 {
      ioPage = hwpt.profile.pageSize
      try checkAlignment()
    }
    var (address, left, current) = (iova, length, user)
    try UserMemory.withPhysicalFrames { frame throws(Errno) in
      while left > 0 {
        try getUserPage(current)
        guard let host = hostAddress(ioas, address) else { throw .invalidArgument }
        if host != current {
          // Another mapping of the same memory (a shared file, a copy) still matches: compare
          // the physical frames, with the simulator's own mapping faulted in first.
          _ = UserMemory.canPin(host & ~(pageSize - 1), length: pageSize, pageSize: pageSize, writable: false)
          guard host % pageSize == current % pageSize, let mine = frame(current), frame(host) == mine else { throw .invalidArgument }
        }
        address &+= ioPage
        current &+= ioPage
        left -= ioPage
      }
    }
  }

  /// `get_user_pages_fast` of the one page holding `address`: EOVERFLOW where the page's
  /// end wraps past 2^64, EFAULT where it cannot be read.
  func getUserPage(_ address: UInt64) throws(Errno) {
    let page = address & ~(pageSize - 1)
    if page.addingReportingOverflow(pageSize).overflow { throw .overflow }
    guard UserMemory.canPin(page, length: pageSize, pageSize: pageSize, writable: false) else { throw .badAddress }
  }

  /// `IOMMU_TEST_OP_MD_CHECK_REFS`: every page of `length` bytes at `user` is pinned by
  /// `refs` page sets (EIO otherwise; EINVAL for an unaligned or wrapping range, EFAULT for
  /// an unreadable page). The kernel counts pins in the page's reference count; here a
  /// pin is one pinned run of user pages (a MAP, shared by its COPYs) covering the page.
  func checkRefs(length: UInt64, user: UInt64, refs: UInt32) throws(Errno) {
    if length % pageSize != 0 || user % pageSize != 0 || user.addingReportingOverflow(length).overflow { throw .invalidArgument }
    var (current, left) = (user, length)
    let userPages = pagesTable.values.filter { $0.file == nil && $0.dmabuf == nil && !$0.pins.runs.isEmpty }
    let filePages = pagesTable.values.filter { $0.file != nil && !$0.pins.runs.isEmpty }
    try UserMemory.withPhysicalFrames { frame throws(Errno) in
      // Pinned file pages count where the user's page is the same physical page (found
      // through the simulator's own mapping of the file, faulted in first).
      var fileFrames: [UInt64: Int] = [:]
      for pages in filePages {
        for run in pages.pins.runs {
          var index = run.first
          while index <= run.last && index < pages.pageCount {
            let host = pages.base &+ index &* pageSize
            _ = UserMemory.canPin(host, length: pageSize, pageSize: pageSize, writable: false)
            if let physical = frame(host) { fileFrames[physical, default: 0] += 1 }
            if index == .max { break }
            index += 1
          }
        }
      }
      let compound = PhysicalFrames()
      while left > 0 {
        try getUserPage(current)
        // The kernel checks nothing of a page that is part of a compound page.
        if compound.isCompound(current) {
          current &+= pageSize
          left -= pageSize
          continue
        }
        var count = userPages.count { pages in
          current >= pages.base && (current - pages.base) / pageSize < pages.pageCount && pages.pins.count(at: (current - pages.base) / pageSize) > 0
        }
        if !fileFrames.isEmpty, let physical = frame(current) { count += fileFrames[physical] ?? 0 }
        if count != Int(refs) { throw .ioError }
        current &+= pageSize
        left -= pageSize
      }
    }
  }
}

extension SimulatedKernel.State {
  /// 7.2's self-test PASID_ATTACH and PASID_REPLACE: PASID `pasid` of the mock device of
  /// self-test object `stdevID` to HWPT `ptID`, with iommufd's checks for a PASID: a device
  /// with PASIDs (MOCK_FLAGS_DEVICE_PASID) and a PASID below its width, an HWPT allocated
  /// with ALLOC_PASID (an IOAS's automatic domain takes none), the device's IOMMU, dirty
  /// tracking only on a device that can do it; a replace needs an attached PASID. Returns
  /// the HWPT id, which the reply carries.
  func attachMockPASID(_ context: SimulatedContext, stdevID: UInt32, pasid: UInt32, ptID: UInt32, replace: Bool) throws(Errno) -> UInt32 {
    guard case .selfTest(let deviceID)? = context.objects[stdevID], let object = context.device(deviceID) else {
      throw .noSuchFileOrDirectory
    }
    // The target is looked up first.
    guard let target = context.object(ptID) else { throw .noSuchFileOrDirectory }
    // PASID 0 is the RID, which a mock device has attached from its creation: EBUSY, once
    // the target is known to be something a device attaches to.
    if pasid == 0 && !replace {
      switch target {
      case .ioas, .hwpt: if object.attachedHWPT != nil { throw .resourceBusy }
      default: throw .invalidArgument
      }
    }
    if object.maxPASIDLog2 == 0 || pasid == 0 || UInt64(pasid) >= 1 << UInt64(object.maxPASIDLog2) { throw .invalidArgument }
    guard case .hwpt(let hwpt) = target else { throw .invalidArgument }
    if hwpt.flags & CIOMMUFD_HWPT_ALLOC_PASID == 0 { throw .invalidArgument }
    if hwpt.profile.driver != object.profile.driver || (hwpt.hasDirtyOps && !object.dirtyCapable) { throw .invalidArgument }
    // The RID's domain must be PASID-compatible too.
    if let rid = object.attachedHWPT, let current = context.hwpt(rid), current.flags & CIOMMUFD_HWPT_ALLOC_PASID == 0 {
      throw .invalidArgument
    }
    if replace {
      guard object.pasids[pasid] != nil else { throw .invalidArgument }
    } else if object.pasids[pasid] != nil {
      throw .resourceBusy
    }
    if pasid == 1024 {  // the mock driver's designed failure
      if object.pasid1024FakeError {
        object.pasid1024FakeError = false
        throw .noMemory
      }
      object.pasid1024FakeError = true
    }
    object.pasids[pasid] = ptID
    return ptID
  }
}
