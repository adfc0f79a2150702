import Iommufd
import SystemPackage

/// The entry points of iommufd contexts, IOASes, HW page tables, fault queues, the self-test
/// commands and mock devices.
func iommufdEntryPoints() -> [EntryPoint] {
  [
    EntryPoint("IOMMUFD.open(_:backend:)", weight: 3) { f in
      let path = f.path(IOMMUFD.defaultPath.string)
      f.call("path \(path.debugDescription)") {
        let context = try IOMMUFD.open(FilePath(path), backend: f.backend)
        f.pool.contexts.append(Held(value: context, label: f.pool.label("ctx"), context: f.pool.contexts.count))
      }
      return true
    },
    EntryPoint("IOMMUFD.init(adopting:backend:)", weight: 3) { f in
      let fd = f.adoptableDescriptor()
      f.call("fd \(fd.rawValue)") {
        let context = IOMMUFD(adopting: fd, backend: f.backend)
        f.pool.contexts.append(Held(value: context, label: f.pool.label("ctx"), context: f.pool.contexts.count))
      }
      return true
    },
    EntryPoint("IOMMUFD.init(borrowing:backend:)", weight: 2) { f in
      let fd = f.anyDescriptor()
      f.call("fd \(fd.rawValue)") {
        let context = IOMMUFD(borrowing: fd, backend: f.backend)
        _ = context.closesDescriptor
        f.pool.contexts.append(Held(value: context, label: f.pool.label("bctx"), context: f.pool.contexts.count))
      }
      return true
    },
    EntryPoint("IOMMUFD.close()", weight: 2) { f in
      guard let context = f.pick(f.pool.contexts) else { return false }
      f.call(context.label) { try context.value.close() }
      return true
    },
    EntryPoint("IOMMUFD properties", weight: 2) { f in
      guard let context = f.pick(f.pool.contexts) else { return false }
      f.call("\(context.label).fileDescriptor, isClosed, backend, selfTest") {
        _ = (context.value.fileDescriptor, context.value.isClosed, context.value.backend.reason, context.value.selfTest.iommufd)
      }
      return true
    },
    EntryPoint("IOMMUFD.allocateIOAS()", weight: 20) { f in
      guard let context = f.context() else { return false }
      f.call(context.label) {
        let ioas = try context.value.allocateIOAS()
        f.saw(ioas.id)
        f.pool.ioases.append(Held(value: ioas, label: f.pool.label("ioas"), context: context.context))
      }
      return true
    },
    EntryPoint("IOMMUFD.destroy(_:)", weight: 8) { f in
      guard let context = f.context() else { return false }
      let id = f.objectID(context: context.context)
      f.call("\(context.label) id \(id)") { try context.value.destroy(id) }
      return true
    },
    EntryPoint("IOMMUFD.memoryLimitAccounting()", weight: 3) { f in
      guard let context = f.context() else { return false }
      f.call(context.label) { _ = try context.value.memoryLimitAccounting() }
      return true
    },
    EntryPoint("IOMMUFD.setMemoryLimitAccounting(_:)", weight: 3) { f in
      guard let context = f.context() else { return false }
      let accounting: MemoryLimitAccounting = f.rng.bool() ? .perUser : .perProcess
      f.call("\(context.label) \(accounting)") { try context.value.setMemoryLimitAccounting(accounting) }
      return true
    },
    EntryPoint("IOMMUFD.compatibilityIOASID()", weight: 3) { f in
      guard let context = f.context() else { return false }
      f.call(context.label) {
        if let id = try context.value.compatibilityIOASID() { f.saw(id) }
      }
      return true
    },
    EntryPoint("IOMMUFD.setCompatibilityIOAS(_:)", weight: 4) { f in
      guard let context = f.context() else { return false }
      let ioas = f.rng.chance(80) ? f.pick(f.pool.ioases, context: context.context) : nil
      f.call("\(context.label) \(ioas?.label ?? "nil")") { try context.value.setCompatibilityIOAS(ioas?.value) }
      return true
    },
    EntryPoint("IOMMUFD.allocateFaultQueue()", weight: 8) { f in
      guard let context = f.context() else { return false }
      f.call(context.label) {
        let queue = try context.value.allocateFaultQueue()
        f.saw(queue.id)
        f.pool.faultQueues.append(Held(value: queue, label: f.pool.label("fault"), context: context.context))
      }
      return true
    },
    EntryPoint("IOMMUFD.hardwareInfo(device:kind:)", weight: 6) { f in
      guard let context = f.context() else { return false }
      let device = f.deviceID(context: context.context)
      let kind: IOMMUHardwareInfo.Kind? = f.rng.chance(60) ? nil : IOMMUHardwareInfo.Kind(rawValue: f.rng.element([0, 1, 2, 3, 4, 0xFEED_BEEF]) ?? 0)
      let hostileKind = f.hostile(20) ? IOMMUHardwareInfo.Kind(rawValue: f.rng.hostileU32()) : kind
      f.call("\(context.label) device \(device) kind \(hostileKind.map { "\($0.rawValue)" } ?? "nil")") {
        let info = try context.value.hardwareInfo(device: device, kind: hostileKind)
        _ = (info.vtdRegisters, info.smmuV3Registers, info.amdRegisters, info.tegra241Parameters, info.kind.description)
      }
      return true
    },
    EntryPoint("IOMMUFD.supports(_:)", weight: 3) { f in
      guard let context = f.context(), let feature = f.rng.element(IOMMUFeature.allCases) else { return false }
      f.call("\(context.label) \(feature)") { _ = try context.value.supports(feature) }
      return true
    },
    EntryPoint("IOMMUFD.changeProcess()", weight: 3) { f in
      guard let context = f.context() else { return false }
      f.call(context.label) { try context.value.changeProcess() }
      return true
    },

    // MARK: IOAS

    EntryPoint("IOAS.destroy()", weight: 4) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      f.call(ioas.label) { try ioas.value.destroy() }
      return true
    },
    EntryPoint("IOAS properties", weight: 1) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      f.call("\(ioas.label).id, backend, isClosed, iommufd") {
        _ = (ioas.value.id, ioas.value.backend.reason, ioas.value.isClosed, ioas.value.iommufd)
      }
      return true
    },
    EntryPoint("IOAS.unsafeMap(address:length:at:access:)", weight: 15) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      let memory = f.userMemory()
      let placement = f.placement()
      let access = f.access()
      f.call("\(ioas.label) \(memory.text) at \(placement) access \(access.rawValue)") {
        f.saw(iova: try ioas.value.unsafeMap(address: memory.address, length: memory.length, at: placement, access: access))
      }
      return true
    },
    EntryPoint("DMAAddressSpace.map(_:at:access:) on IOAS", weight: 15) { f in
      guard let ioas = f.pick(f.pool.ioases), let buffer = f.pick(f.pool.buffers) else { return false }
      let placement = f.placement()
      let access = f.access()
      f.call("\(ioas.label) \(buffer.label) at \(placement) access \(access.rawValue)") {
        let mapping = try ioas.value.map(buffer.value, at: placement, access: access)
        f.saw(iova: mapping.iova)
        f.pool.mappings.append(Held(value: MappingBox(mapping), label: f.pool.label("map"), context: ioas.context))
      }
      return true
    },
    EntryPoint("IOAS.unmap(iova:length:)", weight: 8) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      let (iova, length) = f.range()
      f.call("\(ioas.label) iova 0x\(hex(iova)) len 0x\(hex(length))") { _ = try ioas.value.unmap(iova: iova, length: length) }
      return true
    },
    EntryPoint("IOAS.unmapAll()", weight: 4) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      f.call(ioas.label) { _ = try ioas.value.unmapAll() }
      return true
    },
    EntryPoint("IOAS.copy(from:sourceIOVA:length:to:access:)", weight: 8) { f in
      guard let ioas = f.pick(f.pool.ioases), let source = f.pick(f.pool.ioases, context: ioas.context) else { return false }
      let (iova, length) = f.range()
      let placement = f.placement()
      let access = f.access()
      f.call("\(ioas.label) from \(source.label) iova 0x\(hex(iova)) len 0x\(hex(length)) to \(placement) access \(access.rawValue)") {
        f.saw(iova: try ioas.value.copy(from: source.value, sourceIOVA: iova, length: length, to: placement, access: access))
      }
      return true
    },
    EntryPoint("IOAS.iovaRanges()", weight: 6) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      f.call(ioas.label) {
        let ranges = try ioas.value.iovaRanges()
        if let first = ranges.ranges.first { f.saw(iova: first.start) }
      }
      return true
    },
    EntryPoint("IOAS.allowIOVAs(_:)", weight: 5) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      let ranges = f.iovaRangeList()
      f.call("\(ioas.label) \(ranges)") { try ioas.value.allowIOVAs(ranges) }
      return true
    },
    EntryPoint("IOAS.hugePagesEnabled()", weight: 2) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      f.call(ioas.label) { _ = try ioas.value.hugePagesEnabled() }
      return true
    },
    EntryPoint("IOAS.setHugePages(enabled:)", weight: 3) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      let enabled = f.rng.bool()
      f.call("\(ioas.label) \(enabled)") { try ioas.value.setHugePages(enabled: enabled) }
      return true
    },
    EntryPoint("IOAS.mapFile(_:offset:length:at:access:)", weight: 8) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      // Now and then the context's own descriptor, which the library must refuse (a cycle).
      let fd = f.hostile(5) ? ioas.value.iommufd.fileDescriptor : f.memoryFile.flatMap { f.hostile(30) ? nil : $0 } ?? f.anyDescriptor()
      let offset = f.hostile(30) ? f.rng.hostileU64() : UInt64(f.rng.below(16)) &* SplitMix64.page
      let length = f.rng.length(hostile: f.sensibleOnly ? 0 : 25)
      let placement = f.placement()
      let access = f.access()
      f.call("\(ioas.label) fd \(fd.rawValue) offset 0x\(hex(offset)) len 0x\(hex(length)) at \(placement) access \(access.rawValue)") {
        f.saw(iova: try ioas.value.mapFile(fd, offset: offset, length: length, at: placement, access: access))
      }
      return true
    },

    // MARK: HW page tables

    EntryPoint("HWPageTable.init(on:forDevice:flags:faultQueue:)", weight: 15) { f in
      guard let ioas = f.pick(f.pool.ioases) else { return false }
      let device = f.deviceID(context: ioas.context)
      let sensible: [HWPageTable.Flags] = [[], .nestParent, .dirtyTracking, [.nestParent, .dirtyTracking], .pasid]
      var flags: HWPageTable.Flags = f.sensibleOnly ? [.nestParent, .dirtyTracking] : f.rng.element(sensible) ?? []
      if f.hostile(10) { flags = HWPageTable.Flags(rawValue: f.rng.hostileU32()) }
      let queue = !f.sensibleOnly && f.rng.chance(25) ? f.pick(f.pool.faultQueues, context: ioas.context) : nil
      f.call("on \(ioas.label) device \(device) flags 0x\(hex(UInt64(flags.rawValue))) fault queue \(queue?.label ?? "nil")") {
        let hwpt = try HWPageTable(on: ioas.value, forDevice: device, flags: flags, faultQueue: queue?.value)
        f.saw(hwpt.id)
        f.pool.hwpts.append(Held(value: hwpt, label: f.pool.label("hwpt"), context: ioas.context))
      }
      return true
    },
    EntryPoint("HWPageTable.destroy()", weight: 3) { f in
      guard let hwpt = f.pick(f.pool.hwpts) else { return false }
      f.call(hwpt.label) { try hwpt.value.destroy() }
      return true
    },
    EntryPoint("HWPageTable properties", weight: 1) { f in
      guard let hwpt = f.pick(f.pool.hwpts) else { return false }
      f.call("\(hwpt.label).id, ioas, iommufd, faultQueue") {
        _ = (hwpt.value.id, hwpt.value.ioas.id, hwpt.value.iommufd, hwpt.value.faultQueue?.id)
      }
      return true
    },
    EntryPoint("HWPageTable.setDirtyTracking(enabled:)", weight: 6) { f in
      guard let hwpt = f.pick(f.pool.hwpts) else { return false }
      let enabled = f.sensibleOnly || f.rng.chance(70)
      f.call("\(hwpt.label) \(enabled)") { try hwpt.value.setDirtyTracking(enabled: enabled) }
      return true
    },
    EntryPoint("HWPageTable.dirtyBitmap(iova:length:pageSize:clear:)", weight: 8) { f in
      guard let hwpt = f.pick(f.pool.hwpts) else { return false }
      let (iova, length) = f.range()
      let pageSize = f.pageSize()
      let clear = f.rng.bool()
      f.call("\(hwpt.label) iova 0x\(hex(iova)) len 0x\(hex(length)) page 0x\(hex(pageSize)) clear \(clear)") {
        let bitmap = try hwpt.value.dirtyBitmap(iova: iova, length: length, pageSize: pageSize, clear: clear)
        _ = bitmap.dirtyCount
        var pages = 0
        for _ in bitmap where pages < 4096 { pages &+= 1 }
      }
      return true
    },
    EntryPoint("IOMMUSelfTest.markDirty(_:iova:length:pageSize:pages:)", weight: 6) { f in
      guard let context = f.context(), let hwpt = f.pick(f.pool.hwpts, context: context.context) else { return false }
      let (iova, length) = f.range()
      let pageSize = f.pageSize()
      let pages = (0..<f.rng.below(9)).map { _ in f.rng.chance(50) ? f.rng.next() : f.rng.hostileU64() }
      f.call("\(context.label) \(hwpt.label) iova 0x\(hex(iova)) len 0x\(hex(length)) page 0x\(hex(pageSize)) pages \(pages.map { hex($0) })") {
        _ = try context.value.selfTest.markDirty(hwpt.value, iova: iova, length: length, pageSize: pageSize, pages: pages)
      }
      return true
    },

    // MARK: Nested HW page tables

    EntryPoint("NestedHWPageTable.init(parent:forDevice:dataType:data:faultQueue:)", weight: 12) { f in
      guard let parent = f.pick(f.pool.hwpts) else { return false }
      let device = f.deviceID(context: parent.context)
      let (dataType, data) = f.nestedData()
      let queue = f.sensibleOnly || f.rng.chance(30) ? f.pick(f.pool.faultQueues, context: parent.context) : nil
      f.call("parent \(parent.label) device \(device) type 0x\(hex(UInt64(dataType))) data \(hex(data)) fault queue \(queue?.label ?? "nil")") {
        let nested = try NestedHWPageTable(parent: parent.value, forDevice: device, dataType: dataType, data: data, faultQueue: queue?.value)
        f.saw(nested.id)
        f.pool.nested.append(Held(value: nested, label: f.pool.label("nested"), context: parent.context))
      }
      return true
    },
    EntryPoint("NestedHWPageTable.init(on:forDevice:dataType:data:faultQueue:)", weight: 10) { f in
      guard let viommu = f.pick(f.pool.viommus) else { return false }
      let device = f.deviceID(context: viommu.context)
      let (dataType, data) = f.nestedData()
      let queue = f.sensibleOnly || f.rng.chance(30) ? f.pick(f.pool.faultQueues, context: viommu.context) : nil
      f.call("on \(viommu.label) device \(device) type 0x\(hex(UInt64(dataType))) data \(hex(data)) fault queue \(queue?.label ?? "nil")") {
        let nested = try NestedHWPageTable(on: viommu.value, forDevice: device, dataType: dataType, data: data, faultQueue: queue?.value)
        f.saw(nested.id)
        f.pool.nested.append(Held(value: nested, label: f.pool.label("nested"), context: viommu.context))
      }
      return true
    },
    EntryPoint("NestedHWPageTable.invalidate(dataType:entryLength:entries:)", weight: 8) { f in
      guard let nested = f.pick(f.pool.nested) else { return false }
      let (dataType, entryLength, entries) = f.invalidation(type: IOMMUSelfTest.invalidationType, entryLength: 8)
      f.call("\(nested.label) type 0x\(hex(UInt64(dataType))) entry length \(entryLength) entries \(hex(entries))") {
        _ = try nested.value.invalidate(dataType: dataType, entryLength: entryLength, entries: entries)
      }
      return true
    },
    EntryPoint("NestedHWPageTable.destroy()", weight: 3) { f in
      guard let nested = f.pick(f.pool.nested) else { return false }
      f.call(nested.label) { try nested.value.destroy() }
      return true
    },
    EntryPoint("NestedHWPageTable properties", weight: 1) { f in
      guard let nested = f.pick(f.pool.nested) else { return false }
      f.call("\(nested.label).id, parent, viommu, faultQueue, iommufd") {
        _ = (nested.value.id, nested.value.parent.id, nested.value.viommu?.id, nested.value.faultQueue?.id, nested.value.iommufd)
      }
      return true
    },
    EntryPoint("IOMMUSelfTest.checkIOTLB(_:slot:value:)", weight: 4) { f in
      guard let context = f.context(), let nested = f.pick(f.pool.nested, context: context.context) else { return false }
      let slot = f.hostile(30) ? f.rng.hostileU32() : UInt32(f.rng.below(4))
      let value = f.rng.hostileU32()
      f.call("\(context.label) \(nested.label) slot \(slot) value 0x\(hex(UInt64(value)))") {
        try context.value.selfTest.checkIOTLB(nested.value, slot: slot, value: value)
      }
      return true
    },

    // MARK: Fault queues

    EntryPoint("FaultQueue.read(maximumFaults:)", weight: 6) { f in
      guard let queue = f.pick(f.pool.faultQueues) else { return false }
      let maximum = f.hostile(35) ? f.rng.hostileCount() : 1 &+ f.rng.below(64)
      f.call("\(queue.label) maximum \(maximum)") {
        for fault in try queue.value.read(maximumFaults: maximum) where f.cookies.count < 32 {
          f.cookies.append(fault.cookie)
        }
      }
      return true
    },
    EntryPoint("FaultQueue.respond(to:with:)", weight: 5) { f in
      guard let queue = f.pick(f.pool.faultQueues) else { return false }
      let cookie = f.rng.element(f.cookies).flatMap { f.hostile(30) ? nil : $0 } ?? f.rng.hostileU32()
      let response: FaultQueue.Response = f.rng.bool() ? .success : .invalid
      f.call("\(queue.label) cookie \(cookie) \(response)") { try queue.value.respond(to: cookie, with: response) }
      return true
    },
    EntryPoint("FaultQueue.destroy()", weight: 3) { f in
      guard let queue = f.pick(f.pool.faultQueues) else { return false }
      f.call(queue.label) { try queue.value.destroy() }
      return true
    },
    EntryPoint("FaultQueue properties", weight: 1) { f in
      guard let queue = f.pick(f.pool.faultQueues) else { return false }
      f.call("\(queue.label).id, fileDescriptor, iommufd") { _ = (queue.value.id, queue.value.fileDescriptor, queue.value.iommufd) }
      return true
    },
    EntryPoint("IOMMUSelfTest.triggerPageFault(device:pasid:group:permissions:address:)", weight: 6) { f in
      guard let context = f.context() else { return false }
      let device = f.deviceID(context: context.context)
      let pasid = f.hostile(30) ? f.rng.hostileU32() : 0
      let group = f.hostile(30) ? f.rng.hostileU32() : UInt32(f.rng.below(8))
      let permissions = f.hostile(30) ? f.rng.hostileU32() : UInt32(1 &+ f.rng.below(3))
      let address = f.iova()
      f.call("\(context.label) device \(device) pasid \(pasid) group \(group) permissions \(permissions) address 0x\(hex(address))") {
        try context.value.selfTest.triggerPageFault(device: device, pasid: pasid, group: group, permissions: permissions, address: address)
      }
      return true
    },

    // MARK: Self-test and mock devices

    EntryPoint("IOMMUSelfTest.attachMockDevice(to:flags:)", weight: 15) { f in
      guard let context = f.context(), let target = f.pick(f.pool.targets, context: context.context) else { return false }
      var flags: IOMMUSelfTest.DeviceFlags? = f.sensibleOnly || f.rng.chance(50) ? nil : f.rng.element([[], .noDirtyTracking, .hugeIOVA, .pasid])
      if f.hostile(10) { flags = IOMMUSelfTest.DeviceFlags(rawValue: f.rng.hostileU32()) }
      f.call("\(context.label) to \(target.label) flags \(flags.map { "0x\(hex(UInt64($0.rawValue)))" } ?? "nil")") {
        let mock = try context.value.selfTest.attachMockDevice(to: target.value, flags: flags)
        f.saw(mock.id)
        f.saw(mock.deviceID)
        f.saw(mock.pageTableID)
        let label = f.pool.label("mock")
        f.pool.mocks.append(Held(value: mock, label: label, context: context.context))
        f.pool.deviceIDs.append(Held(value: mock.deviceID, label: label, context: context.context))
      }
      return true
    },
    EntryPoint("MockDevice.replace(with:)", weight: 6) { f in
      guard let mock = f.pick(f.pool.mocks), let target = f.pick(f.pool.targets, context: mock.context) else { return false }
      f.call("\(mock.label) with \(target.label)") { f.saw(try mock.value.replace(with: target.value)) }
      return true
    },
    EntryPoint("MockDevice.destroy()", weight: 3) { f in
      guard let mock = f.pick(f.pool.mocks) else { return false }
      f.call(mock.label) { try mock.value.destroy() }
      return true
    },
    EntryPoint("MockDevice properties", weight: 1) { f in
      guard let mock = f.pick(f.pool.mocks) else { return false }
      f.call("\(mock.label).id, deviceID, pageTableID, iommufd") {
        _ = (mock.value.id, mock.value.deviceID, mock.value.pageTableID, mock.value.iommufd)
      }
      return true
    },
    EntryPoint("IOMMUSelfTest.addReserved(_:in:)", weight: 4) { f in
      guard let context = f.context(), let ioas = f.pick(f.pool.ioases, context: context.context) else { return false }
      let range = f.iovaRange()
      f.call("\(context.label) \(range) in \(ioas.label)") { try context.value.selfTest.addReserved(range, in: ioas.value) }
      return true
    },

    // MARK: The self-test's in-kernel access

    EntryPoint("IOMMUSelfTest.createAccess(to:pinsPages:)", weight: 8) { f in
      guard let context = f.context(), let ioas = f.pick(f.pool.ioases, context: context.context) else { return false }
      let pins = f.sensibleOnly || f.rng.bool()
      f.call("\(context.label) to \(ioas.label) pinsPages \(pins)") {
        let access = try context.value.selfTest.createAccess(to: ioas.value, pinsPages: pins)
        f.pool.accesses.append(Held(value: access, label: f.pool.label("access"), context: context.context))
      }
      return true
    },
    EntryPoint("SelfTestAccess.pin(iova:length:writable:verifyingAgainst:)", weight: 14) { f in
      guard let access = f.pick(f.pool.accesses) else { return false }
      let (iova, length) = f.hostile(20) ? f.range() : (f.iova(), UInt64(1 &+ f.rng.below(4)) &* SplitMix64.page)
      let writable = !f.sensibleOnly && f.rng.bool()
      let memory = !f.sensibleOnly && f.rng.chance(20) ? f.userMemory() : nil
      f.call("\(access.label) iova 0x\(hex(iova)) len 0x\(hex(length)) writable \(writable) verifying \(memory?.text ?? "nil")") {
        let pinned = try access.value.pin(iova: iova, length: length, writable: writable, verifyingAgainst: memory?.address)
        f.pool.pins.append(Held(value: pinned, label: f.pool.label("pin"), context: access.context))
      }
      return true
    },
    EntryPoint("SelfTestAccess.PinnedPages.unpin()", weight: 6) { f in
      guard let pinned = f.pick(f.pool.pins) else { return false }
      f.call(pinned.label) { try pinned.value.unpin() }
      return true
    },
    EntryPoint("SelfTestAccess.read(from:into:slowPath:)", weight: 10) { f in
      guard let access = f.pick(f.pool.accesses) else { return false }
      let iova = f.iova()
      let memory = f.userMemory()
      // The destination: user memory the kernel may write (the arena, or no page at all).
      let count = Int(min(memory.length, 1 << 40))
      let destination = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: memory.address), count: count)
      let slowPath = f.rng.bool()
      f.call("\(access.label) from 0x\(hex(iova)) into \(memory.text) slow path \(slowPath)") {
        try access.value.read(from: iova, into: destination, slowPath: slowPath)
      }
      return true
    },
    EntryPoint("SelfTestAccess.write(_:to:slowPath:)", weight: 10) { f in
      guard let access = f.pick(f.pool.accesses) else { return false }
      let iova = f.iova()
      let memory = f.userMemory()
      let source = UnsafeRawBufferPointer(start: memory.address, count: Int(min(memory.length, 1 << 40)))
      let slowPath = f.rng.bool()
      f.call("\(access.label) \(memory.text) to 0x\(hex(iova)) slow path \(slowPath)") {
        try access.value.write(source, to: iova, slowPath: slowPath)
      }
      return true
    },
    EntryPoint("SelfTestAccess.replace(with:)", weight: 4) { f in
      guard let access = f.pick(f.pool.accesses), let ioas = f.pick(f.pool.ioases, context: access.context) else { return false }
      f.call("\(access.label) with \(ioas.label)") { try access.value.replace(with: ioas.value) }
      return true
    },
    EntryPoint("SelfTestAccess.close()", weight: 3) { f in
      guard let access = f.pick(f.pool.accesses) else { return false }
      f.call(access.label) { try access.value.close() }
      return true
    },
    EntryPoint("SelfTestAccess properties", weight: 1) { f in
      guard let access = f.pick(f.pool.accesses) else { return false }
      f.call("\(access.label).ioas, fileDescriptor, pinsPages, iommufd") {
        _ = (access.value.ioas, access.value.fileDescriptor, access.value.pinsPages, access.value.iommufd)
      }
      if let pinned = f.pick(f.pool.pins) {
        f.call("\(pinned.label).id, iova, length, access") { _ = (pinned.value.id, pinned.value.iova, pinned.value.length, pinned.value.access) }
      }
      return true
    },
  ]
}

extension Fuzzer {
  /// A path: `sensible`, or a hostile one (empty, odd device numbers, signs, huge numbers,
  /// other scripts' digits, very long).
  func path(_ sensible: String) -> String {
    guard hostile(40) else { return sensible }
    let device = "/dev/vfio/devices/vfio"
    let choices = [
      "", "/", "/dev/iommu/", "/dev/iommu\u{301}", device, device + "-1", device + "+0", device + "00", device + "1",
      device + "99999999999999999999", device + "9223372036854775807", device + "-9223372036854775808", device + "\u{663}",
      device + "0x1", device + " 0", "/dev/vfio/vfio", "/dev/vfio/0", "relative/path", String(repeating: "a/", count: 3000),
      "/dev/\u{1F4A3}", "/dev/iommu" + String(repeating: "/", count: 100),
    ]
    return rng.element(choices) ?? sensible
  }

  /// A page size for dirty tracking: mostly 4096, sometimes hostile.
  func pageSize() -> UInt64 {
    guard hostile(35) else { return SplitMix64.page }
    return rng.element([0, 1, 3, 4095, 8192, 1 << 21, 1 << 63, .max, UInt64(UInt32.max) &+ 1]) ?? 0
  }

  /// An IOVA range: sensible, reversed, empty-looking or the whole space.
  func iovaRange() -> IOVARange {
    if hostile(40) { return IOVARange(start: rng.hostileU64(), last: rng.hostileU64()) }
    let start = iova()
    return IOVARange(start: start, last: start &+ rng.length(hostile: 0) &- 1)
  }

  /// A list of up to four IOVA ranges.
  func iovaRangeList() -> [IOVARange] {
    (0..<rng.below(5)).map { _ in iovaRange() }
  }

  /// A nested HWPT's data type and data: the mock's (4 bytes), or hostile.
  func nestedData() -> (UInt32, [UInt8]) {
    let type = hostile(20) ? rng.hostileU32() : IOMMUSelfTest.nestedDataType
    let data = hostile(30) ? rng.bytes(rng.below(17)) : rng.bytes(4)
    return (type, data)
  }

  /// An invalidation's data type, entry length and entries: whole sensible entries, or
  /// hostile lengths and counts.
  func invalidation(type: UInt32, entryLength: Int) -> (UInt32, Int, [UInt8]) {
    let dataType = hostile(20) ? rng.hostileU32() : type
    let length = hostile(30) ? rng.hostileInt() : entryLength
    let count = rng.below(5)
    let entries: [UInt8]
    if length > 0 && length <= 64 && !hostile(20) {
      entries = (0..<count).flatMap { _ in invalidationEntry(length) }
    } else {
      entries = rng.bytes(rng.below(33))
    }
    return (dataType, length, entries)
  }

  /// One invalidation entry of `length` bytes: flags (often 0 or 1) then slot numbers.
  func invalidationEntry(_ length: Int) -> [UInt8] {
    var bytes = rng.bytes(length)
    if length >= 4 && rng.chance(70) {
      let flags: UInt32 = rng.chance(50) ? 0 : 1
      for index in 0..<4 { bytes[index] = UInt8(truncatingIfNeeded: flags >> (8 * UInt32(index))) }
    }
    if length >= 8 && rng.chance(70) {
      let slot = UInt32(rng.below(4))
      for index in 0..<4 { bytes[4 &+ index] = UInt8(truncatingIfNeeded: slot >> (8 * UInt32(index))) }
    }
    return bytes
  }
}
