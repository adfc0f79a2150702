import Iommufd
import IommufdSimulator
import IommufdEdu
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The entry points of VFIO devices (cdev and legacy routes), their regions and IRQs, DMA
/// buffers and mappings, eventfds, and the edu driver.
func deviceEntryPoints() -> [EntryPoint] {
  [
    EntryPoint("VFIODevice.open(_:backend:)", weight: 8) { f in
      let path = f.path(SimulatedKernel.devicePath(f.sensibleOnly ? 0 : f.rng.below(4)).string)
      f.call("path \(path.debugDescription)") {
        let device = try VFIODevice.open(FilePath(path), backend: f.backend)
        f.pool.devices.append(Held(value: device, label: f.pool.label("dev"), context: nil))
      }
      return true
    },
    EntryPoint("VFIODevice.init(adopting:path:backend:)", weight: 3) { f in
      let fd = f.adoptableDescriptor()
      let path: FilePath? = f.rng.bool() ? nil : FilePath(f.path(SimulatedKernel.devicePath(0).string))
      f.call("fd \(fd.rawValue) path \(path?.string.debugDescription ?? "nil")") {
        let device = VFIODevice(adopting: fd, path: path, backend: f.backend)
        f.pool.devices.append(Held(value: device, label: f.pool.label("dev"), context: nil))
      }
      return true
    },
    EntryPoint("VFIODevice.init(borrowing:path:backend:)", weight: 2) { f in
      let fd = f.anyDescriptor()
      f.call("fd \(fd.rawValue)") {
        let device = VFIODevice(borrowing: fd, backend: f.backend)
        _ = device.closesDescriptor
        f.pool.devices.append(Held(value: device, label: f.pool.label("bdev"), context: nil))
      }
      return true
    },
    EntryPoint("VFIODevice.close()", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call(device.label) { try device.value.close() }
      return true
    },
    EntryPoint("VFIODevice properties", weight: 1) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call("\(device.label).deviceID, attachedPageTableID, fileDescriptor, path, backend") {
        _ = (device.value.deviceID, device.value.attachedPageTableID, device.value.fileDescriptor, device.value.path, device.value.backend.reason)
      }
      return true
    },
    EntryPoint("VFIODevice.bind(to:)", weight: 12) { f in
      guard let device = f.pick(f.pool.devices), let context = f.context() else { return false }
      f.call("\(device.label) to \(context.label)") {
        let id = try device.value.bind(to: context.value)
        f.saw(id)
        f.boundContexts[ObjectIdentifier(device.value)] = context.context
        f.pool.deviceIDs.append(Held(value: id, label: device.label, context: context.context))
      }
      return true
    },
    EntryPoint("VFIODevice.attach(to:)", weight: 12) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      guard let target = f.pick(f.pool.targets, context: f.boundContexts[ObjectIdentifier(device.value)] ?? 0) else { return false }
      f.call("\(device.label) to \(target.label)") { f.saw(try device.value.attach(to: target.value)) }
      return true
    },
    EntryPoint("VFIODevice.attach(to:pasid:)", weight: 5) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      guard let target = f.pick(f.pool.targets, context: f.boundContexts[ObjectIdentifier(device.value)] ?? 0) else { return false }
      let pasid = f.hostile(40) ? f.rng.hostileU32() : UInt32(1 &+ f.rng.below(16))
      f.call("\(device.label) to \(target.label) pasid \(pasid)") { f.saw(try device.value.attach(to: target.value, pasid: pasid)) }
      return true
    },
    EntryPoint("VFIODevice.detach()", weight: 4) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call(device.label) { try device.value.detach() }
      return true
    },
    EntryPoint("VFIODevice.detach(pasid:)", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let pasid = f.hostile(40) ? f.rng.hostileU32() : UInt32(1 &+ f.rng.below(16))
      f.call("\(device.label) pasid \(pasid)") { try device.value.detach(pasid: pasid) }
      return true
    },
    EntryPoint("VFIODevice.info()", weight: 4) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call(device.label) {
        let info = try device.value.info()
        _ = (info.flags, info.regionCount, info.irqCount, info.capabilities)
      }
      return true
    },
    EntryPoint("VFIODevice.reset()", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call(device.label) { try device.value.reset() }
      return true
    },
    EntryPoint("VFIODevice.hotResetInfo()", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call(device.label) {
        let info = try device.value.hotResetInfo()
        _ = (info.devices.map(\.description), info.usesDeviceIDs, info.allOwned)
      }
      return true
    },
    EntryPoint("VFIODevice.hotReset()", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call(device.label) { try device.value.hotReset() }
      return true
    },
    EntryPoint("VFIODevice.hotReset(groups:)", weight: 2) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let groups = (0..<f.rng.below(3)).compactMap { _ in f.pick(f.pool.groups) }
      f.call("\(device.label) groups \(groups.map(\.label))") { try device.value.hotReset(groups: groups.map(\.value)) }
      return true
    },
    EntryPoint("VFIODevice.enterLowPower(wakeup:) and exitLowPower()", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let wakeup = f.rng.bool() ? f.pick(f.pool.eventFDs) : nil
      let exit = f.rng.chance(60)
      f.call("\(device.label) wakeup \(wakeup?.label ?? "none") exit \(exit)") {
        if exit { try device.value.exitLowPower() } else { try device.value.enterLowPower(wakeup: wakeup?.value) }
      }
      return true
    },
    EntryPoint("VFIODevice migration on a PCI device (the port's migratable edus)", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let state = VFIOMigrationState(rawValue: UInt32(f.rng.below(9))) ?? .running
      let chunk = f.hostile(30) ? f.rng.hostileCount() : f.rng.below(5000)
      f.call("\(device.label) to \(state) chunk \(chunk)") {
        _ = try? device.value.migrationFlags()
        _ = try? device.value.migrationDataSize()
        if let stream = try device.value.setMigrationState(state) {
          _ = try? stream.precopyInfo()
          _ = try? stream.read(maximumBytes: chunk)
          _ = try? stream.write([UInt8](repeating: 0x45, count: max(0, min(chunk, 5000))))
          try stream.close()
        }
      }
      return true
    },
    EntryPoint("VFIODevice.irqInfo(_:)", weight: 4) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let index = f.hostile(35) ? f.rng.hostileInt() : f.rng.below(6)
      f.call("\(device.label) index \(index)") {
        let info = try device.value.irqInfo(index)
        _ = (info.index, info.flags, info.count)
      }
      return true
    },
    EntryPoint("VFIODevice.setInterrupts(_:start:eventFDs:)", weight: 8) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let index = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(3)
      let start = f.hostile(25) ? f.rng.hostileInt() : 0
      let eventFDs: [Held<EventFD>?] = (0..<(f.sensibleOnly ? 1 : f.rng.below(4))).map { _ in
        f.rng.chance(80) ? f.pick(f.pool.eventFDs) : nil
      }
      f.call("\(device.label) index \(index) start \(start) eventfds \(eventFDs.map { $0?.label ?? "nil" })") {
        try device.value.setInterrupts(index, start: start, eventFDs: eventFDs.map { $0?.value })
      }
      return true
    },
    EntryPoint("VFIODevice.setInterrupts(_:start:borrowing:)", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let index = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(3)
      let start = f.hostile(25) ? f.rng.hostileInt() : 0
      let fds: [FileDescriptor?] = (0..<f.rng.below(4)).map { _ in f.rng.chance(80) ? f.anyDescriptor() : nil }
      f.call("\(device.label) index \(index) start \(start) borrowing \(fds.map { $0.map { "\($0.rawValue)" } ?? "nil" })") {
        try device.value.setInterrupts(index, start: start, borrowing: fds)
      }
      return true
    },
    EntryPoint("VFIODevice.setInterrupts(_:start:eventFDs:action:) with MASK or UNMASK", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let index = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(3)
      let action: VFIOIRQAction = f.rng.bool() ? .unmask : .mask
      let eventFDs: [Held<EventFD>?] = (0..<(f.sensibleOnly ? 1 : f.rng.below(3))).map { _ in
        f.rng.chance(80) ? f.pick(f.pool.eventFDs) : nil
      }
      f.call("\(device.label) index \(index) \(action) eventfds \(eventFDs.map { $0?.label ?? "nil" })") {
        try device.value.setInterrupts(index, eventFDs: eventFDs.map { $0?.value }, action: action)
      }
      return true
    },
    EntryPoint("VFIODevice.setUnmaskEventFD(_:)", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let event = f.rng.chance(80) ? f.pick(f.pool.eventFDs) : nil
      f.call("\(device.label) \(event?.label ?? "nil")") { try device.value.setUnmaskEventFD(event?.value) }
      return true
    },
    EntryPoint("VFIODevice.setUnmaskEventFD(borrowing:)", weight: 2) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let fd = f.rng.chance(80) ? f.anyDescriptor() : nil
      f.call("\(device.label) borrowing \(fd.map { "\($0.rawValue)" } ?? "nil")") { try device.value.setUnmaskEventFD(borrowing: fd) }
      return true
    },
    EntryPoint("VFIODevice.perform(_:interrupt:start:selecting:)", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let action = f.rng.element([VFIOIRQAction.trigger, .mask, .unmask]) ?? .trigger
      let index = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(3)
      let start = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(2)
      let vectors = (0..<f.rng.below(4)).map { _ in f.rng.bool() }
      f.call("\(device.label) \(action) index \(index) start \(start) \(vectors)") {
        try device.value.perform(action, interrupt: index, start: start, selecting: vectors)
      }
      return true
    },
    EntryPoint("PCIConfigSpace: init, ids, command, capabilities", weight: 4) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let offset = f.hostile(30) ? f.rng.hostileU64() : UInt64(f.rng.below(260))
      let command = PCICommand(rawValue: UInt16(truncatingIfNeeded: f.rng.hostileU64()))
      f.call("\(device.label) offset 0x\(hex(offset)) command 0x\(String(command.rawValue, radix: 16))") {
        let config = try PCIConfigSpace(device.value)
        _ = (try config.vendorID(), try config.deviceID(), try config.classCode(), try config.status(), config.size)
        _ = try config.capabilities()
        _ = try config.extendedCapabilities()
        _ = try config.capability(PCICapability.msi)
        _ = try config.read(UInt32.self, at: offset)
        if f.rng.bool() { try config.write(UInt16(truncatingIfNeeded: offset), at: offset) }
        if f.rng.bool() { try config.setCommand(command) } else { try config.updateCommand { $0.formSymmetricDifference(.busMaster) } }
      }
      return true
    },
    EntryPoint("VFIODevice.disableInterrupts(_:)", weight: 3) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let index = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(3)
      f.call("\(device.label) index \(index)") { try device.value.disableInterrupts(index) }
      return true
    },
    EntryPoint("VFIODevice.perform(_:interrupt:start:count:)", weight: 5) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let action = f.rng.element([VFIOIRQAction.mask, .unmask, .trigger]) ?? .trigger
      let index = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(3)
      let start = f.hostile(25) ? f.rng.hostileInt() : 0
      let count = f.hostile(25) ? f.rng.hostileInt() : 1
      f.call("\(device.label) \(action) index \(index) start \(start) count \(count)") {
        try device.value.perform(action, interrupt: index, start: start, count: count)
      }
      return true
    },
    EntryPoint("VFIODevice.regionInfo(_:)", weight: 8) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      let index = f.hostile(30) ? f.rng.hostileInt() : f.rng.element([0, 0, 7, 1, 6, 8, 9]) ?? 0
      f.call("\(device.label) index \(index)") {
        let region = try device.value.regionInfo(index)
        _ = region.mappableAreas
        f.pool.regions.append(Held(value: region, label: "\(device.label).region\(index)", context: nil))
      }
      return true
    },
    EntryPoint("VFIORegionInfo.init(index:flags:size:offset:capabilities:)", weight: 3) { f in
      let region = f.handBuiltRegion()
      f.call("\(region)") {
        let made = VFIORegionInfo(
          index: region.index, flags: region.flags, size: region.size, offset: region.offset, capabilities: region.capabilities)
        f.pool.regions.append(Held(value: made, label: f.pool.label("region"), context: nil))
      }
      return true
    },
    EntryPoint("VFIORegionInfo.mappableAreas", weight: 3) { f in
      let region = f.rng.chance(50) ? f.pick(f.pool.regions)?.value ?? f.handBuiltRegion() : f.handBuiltRegion()
      f.call("\(region)") { _ = region.mappableAreas }
      return true
    },
    EntryPoint("VFIODevice.read(region:at:into:)", weight: 8) { f in
      guard let device = f.pick(f.pool.devices), let region = f.pick(f.pool.regions) else { return false }
      let offset = f.regionOffset(region.value)
      let count = f.hostile(20) ? f.rng.below(4097) : f.rng.element([4, 8, 1, 2, 3, 16]) ?? 4
      f.call("\(device.label) \(region.label) at 0x\(hex(offset)) count \(count)") {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { buffer.deallocate() }
        _ = try device.value.read(region: region.value, at: offset, into: buffer)
      }
      return true
    },
    EntryPoint("VFIODevice.write(region:at:from:)", weight: 8) { f in
      guard let device = f.pick(f.pool.devices), let region = f.pick(f.pool.regions) else { return false }
      let offset = f.regionOffset(region.value)
      let bytes = f.rng.bytes(f.hostile(20) ? f.rng.below(4097) : f.rng.element([4, 8, 1, 2, 3, 16]) ?? 4)
      let shown = hex(Array(bytes.prefix(64))) + (bytes.count > 64 ? "... (\(bytes.count))" : "")
      f.call("\(device.label) \(region.label) at 0x\(hex(offset)) bytes \(shown)") {
        _ = try bytes.withUnsafeBytes { buffer in try device.value.write(region: region.value, at: offset, from: buffer) }
      }
      return true
    },
    EntryPoint("VFIODevice.read(_:region:at:)", weight: 10) { f in
      guard let device = f.pick(f.pool.devices), let region = f.pick(f.pool.regions) else { return false }
      let offset = f.regionOffset(region.value)
      let width = f.rng.element([1, 2, 4, 8]) ?? 4
      f.call("\(device.label) UInt\(width * 8) \(region.label) at 0x\(hex(offset))") {
        switch width {
        case 1: _ = try device.value.read(UInt8.self, region: region.value, at: offset)
        case 2: _ = try device.value.read(UInt16.self, region: region.value, at: offset)
        case 4: _ = try device.value.read(UInt32.self, region: region.value, at: offset)
        default: _ = try device.value.read(UInt64.self, region: region.value, at: offset)
        }
      }
      return true
    },
    EntryPoint("VFIODevice.write(_:region:at:)", weight: 12) { f in
      guard let device = f.pick(f.pool.devices), let region = f.pick(f.pool.regions) else { return false }
      let offset = f.regionOffset(region.value)
      let width = f.rng.element([1, 2, 4, 8, 4, 8]) ?? 4
      let value = f.registerValue()
      f.call("\(device.label) UInt\(width * 8) 0x\(hex(value)) \(region.label) at 0x\(hex(offset))") {
        switch width {
        case 1: try device.value.write(UInt8(truncatingIfNeeded: value), region: region.value, at: offset)
        case 2: try device.value.write(UInt16(truncatingIfNeeded: value), region: region.value, at: offset)
        case 4: try device.value.write(UInt32(truncatingIfNeeded: value), region: region.value, at: offset)
        default: try device.value.write(value, region: region.value, at: offset)
        }
      }
      return true
    },
    EntryPoint("VFIODevice.map(region:offset:length:)", weight: 5) { f in
      // Mostly a mappable region with its own device (the fuzz device's memory BAR).
      let mappable = f.pool.regions.filter { $0.value.flags.contains(.mappable) }
      guard let region = f.rng.chance(70) && !mappable.isEmpty ? f.pick(mappable) : f.pick(f.pool.regions) else { return false }
      let owners = f.pool.devices.filter { region.label.hasPrefix($0.label + ".") }
      guard let device = f.rng.chance(80) && !owners.isEmpty ? f.pick(owners) : f.pick(f.pool.devices) else { return false }
      let offset = f.hostile(40) ? f.rng.hostileU64() : 0
      let length: UInt64? = f.rng.chance(50) ? nil : f.rng.length(hostile: 40)
      f.call("\(device.label) \(region.label) offset 0x\(hex(offset)) length \(length.map { "0x" + hex($0) } ?? "nil")") {
        let mapped = try device.value.map(region: region.value, offset: offset, length: length)
        // The simulator maps memory BARs (the fuzz device's): accesses of every width at
        // sensible and hostile offsets, then again after the unmap, must answer, never trap.
        f.access(mapped, hostilePercent: 40)
        try mapped.unmap()
        _ = try? mapped.load32(at: 0)
        try? mapped.unmap()
      }
      return true
    },

    EntryPoint("MappedRegion through the fuzz device's memory BAR (BAR1)", weight: 4) { f in
      guard let context = f.pick(f.pool.contexts) else { return false }
      let page = UInt64(4096)
      let offset = f.hostile(20) ? f.rng.hostileU64() : UInt64(f.rng.below(4)) * page
      let length: UInt64? = f.hostile(20) ? f.rng.hostileU64() : (f.rng.chance(30) ? nil : UInt64(1 + f.rng.below(4)) * page)
      let keep = f.rng.chance(30)
      f.call("\(context.label) offset 0x\(hex(offset)) length \(length.map { "0x" + hex($0) } ?? "nil")\(keep ? ", left mapped" : "")") {
        // The pool's vfio1 if bound, else a new one bound to the context.
        let bound = f.pool.devices.first { $0.value.path == SimulatedKernel.devicePath(1) && $0.value.deviceID != nil }
        let device: VFIODevice
        if let bound {
          device = bound.value
        } else {
          device = try VFIODevice.open(SimulatedKernel.devicePath(1), backend: f.backend)
          f.pool.devices.append(Held(value: device, label: f.pool.label("dev"), context: nil))
          try device.bind(to: context.value)
        }
        let mapped = try device.map(region: try device.regionInfo(1), offset: offset, length: length)
        f.access(mapped, hostilePercent: 30)
        if !keep {
          try mapped.unmap()
          _ = try? mapped.load32(at: 0)
        }
      }
      return true
    },

    // MARK: DMA buffers, mappings, eventfds

    EntryPoint("DMABuffer.init(length:backend:)", weight: 10) { f in
      var length = (1 &+ f.rng.below(8)) &* 4096 &- (f.rng.chance(20) ? 1 : 0)
      if f.hostile(30) { length = f.rng.bool() ? f.rng.hostileCount() : f.rng.hostileInt() }
      // Without the 1 GiB address-space limit (AddressSanitizer needs the space), a buffer
      // of gigabytes would be made and pinned for real, which only takes time: keep those
      // at 256 MiB there. Lengths no mmap can give still reach the library.
      if hasAddressSanitizer && length > 1 << 28 && length < 1 << 40 { length = 1 << 28 }
      let backend = f.rng.chance(20) ? Backend.kernel : f.backend
      f.call("length \(length) backend \(backend.simulator == nil ? "kernel" : "simulated")") {
        let buffer = try DMABuffer(length: length, backend: backend)
        f.pool.buffers.append(Held(value: buffer, label: f.pool.label("buf"), context: nil))
      }
      return true
    },
    EntryPoint("DMABuffer.init(unsafeBorrowing:backend:)", weight: 3) { f in
      // Borrowed memory the fuzzer keeps for the whole run: pages of the arena (the
      // contract is the caller's: other entry points write through the buffer), or none.
      let pages = Arena.dmaSize / 4096
      let first = f.rng.below(pages)
      let count = (1 &+ f.rng.below(min(16, pages &- first))) &* 4096
      let empty = f.hostile(20)
      let bytes = UnsafeMutableRawBufferPointer(start: empty ? nil : f.arena.base + first &* 4096, count: empty ? 0 : count)
      f.call(empty ? "empty" : "arena+0x\(hex(UInt64(first &* 4096))) len 0x\(hex(UInt64(count)))") {
        let buffer = try DMABuffer(unsafeBorrowing: bytes, backend: f.backend)
        f.pool.buffers.append(Held(value: buffer, label: f.pool.label("borrowed"), context: nil))
      }
      return true
    },
    EntryPoint("GuestMemory.init(size:pageSize:name:backend:)", weight: 6) { f in
      var size = (1 &+ f.rng.below(16)) &* 4096
      // Hostile sizes that fail before they are made (or at mmap): never gigabytes of real
      // shared memory for a device to pin.
      if f.hostile(30) { size = f.rng.element([0, -1, .min, .max, 4097, 4095, 1 << 62, 3 << 20]) ?? 0 }
      let pageSize = f.hostile(15) ? (f.rng.bool() ? GuestMemory.PageSize.huge2M : .huge1G) : .base
      let name = f.hostile(10) ? String(repeating: "n", count: 300) : "guest"
      let backend = f.rng.chance(20) ? Backend.kernel : f.backend
      f.call("size \(size) pages \(pageSize) name length \(name.count)") {
        let memory = try GuestMemory(size: size, pageSize: pageSize, name: name, backend: backend)
        f.pool.guestMemories.append(Held(value: memory, label: f.pool.label("ram"), context: nil))
      }
      return true
    },
    EntryPoint("GuestMemory.map(into:at:offset:length:access:)", weight: 14) { f in
      guard let memory = f.pick(f.pool.guestMemories), let ioas = f.pick(f.pool.ioases) else { return false }
      let size = memory.value.size
      var offset = f.rng.chance(70) ? 0 : f.rng.below(size / 4096 &+ 1) &* 4096
      var length: Int? = f.rng.chance(50) ? nil : (1 &+ f.rng.below(max(1, (size &- offset) / 4096))) &* 4096
      if f.hostile(25) { offset = f.rng.hostileInt() }
      if f.hostile(25) { length = f.rng.hostileInt() }
      let guestAddress = f.iova()
      let access = f.access()
      f.call("\(memory.label) into \(ioas.label) at 0x\(hex(guestAddress)) offset \(offset) length \(length.map(String.init) ?? "rest") access \(access.rawValue)") {
        let mapping = try memory.value.map(into: ioas.value, at: guestAddress, offset: offset, length: length, access: access)
        f.saw(iova: mapping.iova)
        f.pool.mappings.append(Held(value: MappingBox(mapping), label: f.pool.label("bank"), context: ioas.context))
      }
      return true
    },
    EntryPoint("GuestMemory.close()", weight: 1) { f in
      guard let memory = f.pick(f.pool.guestMemories) else { return false }
      f.call(memory.label) { try memory.value.close() }
      return true
    },
    EntryPoint("GuestMemory properties", weight: 1) { f in
      guard let memory = f.pick(f.pool.guestMemories) else { return false }
      f.call("\(memory.label).size, pageSize, bytes, fileDescriptor") {
        let value = memory.value
        _ = (value.size, value.pageSize.description, value.bytes.count, value.fileDescriptor.rawValue, value.backend.reason)
      }
      return true
    },
    EntryPoint("DMABuffer.bytes", weight: 2) { f in
      guard let buffer = f.pick(f.pool.buffers) else { return false }
      let byte = UInt8(truncatingIfNeeded: f.rng.next())
      f.call("\(buffer.label) fill 0x\(hex(UInt64(byte)))") {
        buffer.value.bytes.initializeMemory(as: UInt8.self, repeating: byte)
      }
      return true
    },
    EntryPoint("DMAMapping.unmap()", weight: 6) { f in
      guard let mapping = f.pick(f.pool.mappings) else { return false }
      f.call(mapping.label) { try mapping.value.mapping.unmap() }
      return true
    },
    EntryPoint("DMAMapping properties", weight: 3) { f in
      guard let mapping = f.pick(f.pool.mappings) else { return false }
      f.call("\(mapping.label).range, isMapped, iova, length, access, space, buffer") {
        let box = mapping.value
        _ = (box.mapping.range.description, box.mapping.isMapped, box.mapping.iova, box.mapping.length, box.mapping.access, box.mapping.space.isClosed, box.mapping.buffer.bytes.count)
      }
      return true
    },
    EntryPoint("EventFD.init(nonBlocking:backend:)", weight: 6) { f in
      let nonBlocking = f.rng.bool()
      let backend = f.rng.chance(20) ? Backend.kernel : f.backend
      f.call("nonBlocking \(nonBlocking)") {
        let eventFD = try EventFD(nonBlocking: nonBlocking, backend: backend)
        f.pool.eventFDs.append(Held(value: eventFD, label: f.pool.label(nonBlocking ? "nbefd" : "efd"), context: nil))
      }
      return true
    },
    EntryPoint("EventFD.init(borrowing:backend:)", weight: 2) { f in
      // Signalled and closed, never waited on: the descriptor may be a blocking eventfd.
      let fd = f.anyDescriptor()
      f.call("fd \(fd.rawValue)") {
        let eventFD = EventFD(borrowing: fd, backend: f.backend)
        _ = eventFD.closesDescriptor
        try eventFD.signal()
        try eventFD.close()
      }
      return true
    },
    EntryPoint("EventFD.wait()", weight: 4) { f in
      guard let eventFD = f.pick(f.pool.eventFDs) else { return false }
      // A blocking eventfd would block with nothing signalled: signal it first, and read it
      // only if the count is still there (an eventfd the kernel listens on, such as an INTx
      // unmask eventfd, has its count consumed by the kernel within the write, as on Linux).
      let blocking = !eventFD.label.hasPrefix("nb")
      f.call("\(eventFD.label)\(blocking ? " (signalled once first)" : "")") {
        if blocking {
          try eventFD.value.signal(1)
          var entry = pollfd(fd: eventFD.value.fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0)
          guard poll(&entry, 1, 0) == 1 else { return }
        }
        _ = try eventFD.value.wait()
      }
      return true
    },
    EntryPoint("EventFD.signal(_:)", weight: 4) { f in
      guard let eventFD = f.pick(f.pool.eventFDs) else { return false }
      // A blocking eventfd blocks when the counter would pass 2^64 - 2: hostile counts go to
      // non-blocking ones only (and UInt64.max, which is EINVAL).
      let blocking = !eventFD.label.hasPrefix("nb")
      let count = f.hostile(40) ? (blocking ? .max : f.rng.hostileU64()) : UInt64(1 &+ f.rng.below(4))
      f.call("\(eventFD.label) count 0x\(hex(count))") { try eventFD.value.signal(count) }
      return true
    },
    EntryPoint("EventFD.close()", weight: 3) { f in
      guard let eventFD = f.pick(f.pool.eventFDs) else { return false }
      f.call(eventFD.label) { try eventFD.value.close() }
      return true
    },
    EntryPoint("EventFD properties", weight: 1) { f in
      guard let eventFD = f.pick(f.pool.eventFDs) else { return false }
      f.call("\(eventFD.label).fileDescriptor, backend") { _ = (eventFD.value.fileDescriptor, eventFD.value.backend.reason) }
      return true
    },

    // MARK: edu

    EntryPoint("EduDriver.init(device:)", weight: 8) { f in
      guard let device = f.pick(f.pool.devices) else { return false }
      f.call(device.label) {
        let edu = try EduDriver(device: device.value)
        f.pool.regions.append(Held(value: edu.registers, label: "\(device.label).bar0", context: nil))
        f.pool.regions.append(Held(value: edu.config, label: "\(device.label).config", context: nil))
        f.pool.edus.append(Held(value: edu, label: f.pool.label("edu"), context: nil))
      }
      return true
    },
    EntryPoint("EduDriver properties", weight: 1) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      f.call("\(edu.label).device, registers, config") { _ = (edu.value.device, edu.value.registers.size, edu.value.config.size) }
      return true
    },
    EntryPoint("EduDriver.read32(_:)", weight: 4) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let offset = f.eduOffset()
      f.call("\(edu.label) 0x\(hex(offset))") { _ = try edu.value.read32(offset) }
      return true
    },
    EntryPoint("EduDriver.write32(_:_:)", weight: 4) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let offset = f.eduOffset()
      let value = UInt32(truncatingIfNeeded: f.registerValue())
      f.call("\(edu.label) 0x\(hex(UInt64(value))) at 0x\(hex(offset))") { try edu.value.write32(value, offset) }
      return true
    },
    EntryPoint("EduDriver.write64(_:_:)", weight: 4) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let offset = f.eduOffset()
      let value = f.registerValue()
      f.call("\(edu.label) 0x\(hex(value)) at 0x\(hex(offset))") { try edu.value.write64(value, offset) }
      return true
    },
    EntryPoint("EduDriver.livenessCheck(_:)", weight: 2) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let value = f.rng.hostileU32()
      f.call("\(edu.label) 0x\(hex(UInt64(value)))") { _ = try edu.value.livenessCheck(value) }
      return true
    },
    EntryPoint("EduDriver.enableBusMaster()", weight: 5) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      f.call(edu.label) { try edu.value.enableBusMaster() }
      return true
    },
    EntryPoint("EduDriver.copyToDevice(from:count:bufferOffset:interrupt:)", weight: 8) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let (iova, count, offset, interrupt) = f.eduTransfer()
      f.call("\(edu.label) from 0x\(hex(iova)) count \(count) buffer offset 0x\(hex(offset)) interrupt \(interrupt)") {
        try edu.value.copyToDevice(from: iova, count: count, bufferOffset: offset, interrupt: interrupt)
      }
      return true
    },
    EntryPoint("EduDriver.copyFromDevice(to:count:bufferOffset:interrupt:)", weight: 8) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let (iova, count, offset, interrupt) = f.eduTransfer()
      f.call("\(edu.label) to 0x\(hex(iova)) count \(count) buffer offset 0x\(hex(offset)) interrupt \(interrupt)") {
        try edu.value.copyFromDevice(to: iova, count: count, bufferOffset: offset, interrupt: interrupt)
      }
      return true
    },
    EntryPoint("EduDriver.waitForDMA(attempts:)", weight: 3) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let attempts = f.hostile(50) ? f.rng.hostileInt() : 1 &+ f.rng.below(3)
      f.call("\(edu.label) attempts \(attempts)") { try edu.value.waitForDMA(attempts: attempts) }
      return true
    },
    EntryPoint("EduDriver.factorial(_:attempts:)", weight: 3) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let n = f.hostile(40) ? f.rng.hostileU32() : UInt32(f.rng.below(13))
      let attempts = f.hostile(50) ? f.rng.hostileInt() : 1 &+ f.rng.below(3)
      f.call("\(edu.label) \(n) attempts \(attempts)") { _ = try edu.value.factorial(n, attempts: attempts) }
      return true
    },
    EntryPoint("EduDriver.interruptStatus()", weight: 2) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      f.call(edu.label) { _ = try edu.value.interruptStatus() }
      return true
    },
    EntryPoint("EduDriver.raiseInterrupt(_:)", weight: 3) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let value = f.rng.hostileU32()
      f.call("\(edu.label) 0x\(hex(UInt64(value)))") { try edu.value.raiseInterrupt(value) }
      return true
    },
    EntryPoint("EduDriver.acknowledgeInterrupt(_:)", weight: 2) { f in
      guard let edu = f.pick(f.pool.edus) else { return false }
      let value = f.rng.hostileU32()
      f.call("\(edu.label) 0x\(hex(UInt64(value)))") { try edu.value.acknowledgeInterrupt(value) }
      return true
    },
  ]
}

extension Fuzzer {
  /// An offset in `region`: an edu register or config-space offset, one inside the region,
  /// or hostile.
  func regionOffset(_ region: VFIORegionInfo) -> UInt64 {
    if hostile(25) { return rng.hostileU64() }
    if rng.chance(60) { return rng.element([0, 4, 8, 0x20, 0x24, 0x60, 0x64, 0x80, 0x88, 0x90, 0x98, 0x42, 0x3C, 0x18, 0x10]) ?? 0 }
    guard region.size > 0 else { return 0 }
    return (rng.next() % region.size) & ~3
  }

  /// A value to write to a register: mostly sensible for edu's DMA block, sometimes hostile.
  func registerValue() -> UInt64 {
    if hostile(40) { return rng.hostileU64() }
    switch rng.below(5) {
    case 0: return 0x40000 &+ UInt64(rng.below(4096))
    case 1: return UInt64(1 &+ rng.below(4096))
    case 2: return rng.element(pool.iovas) ?? 0x10_0000
    case 3: return UInt64(rng.element([1, 3, 5, 7]) ?? 1)
    default: return 0x4
    }
  }

  /// An edu register offset.
  func eduOffset() -> UInt64 {
    hostile(30) ? rng.hostileU64() : rng.element([0, 4, 8, 0x20, 0x24, 0x60, 0x64, 0x80, 0x88, 0x90, 0x98]) ?? 0
  }

  /// An edu DMA: IOVA, count, buffer offset and whether to interrupt.
  func eduTransfer() -> (UInt64, Int, UInt64, Bool) {
    let iova = self.iova()
    let count = hostile(30) ? rng.hostileInt() : 1 &+ rng.below(4095)
    let offset = hostile(30) ? rng.hostileU64() : UInt64(rng.below(4096))
    return (iova, count, offset, rng.bool())
  }

  /// A region description built by hand with hostile values.
  func handBuiltRegion() -> VFIORegionInfo {
    let areas = (0..<rng.below(3)).map { _ in VFIOSparseMMapArea(offset: rng.hostileU64(), size: rng.hostileU64()) }
    var capabilities: [VFIOCapability] = []
    if !areas.isEmpty || rng.chance(30) { capabilities.append(.sparseMMap(areas)) }
    if rng.chance(20) { capabilities.append(.regionType(type: rng.hostileU32(), subtype: rng.hostileU32())) }
    if rng.chance(20) { capabilities.append(.other(id: rng.hostileU16(), version: rng.hostileU16(), payload: rng.bytes(rng.below(16)))) }
    return VFIORegionInfo(
      index: hostile(50) ? rng.hostileInt() : rng.below(9), flags: VFIORegionInfo.Flags(rawValue: rng.hostileU32()),
      size: rng.hostileU64(), offset: rng.hostileU64(), capabilities: capabilities)
  }
}

extension Fuzzer {
  /// Four loads or stores of random widths at sensible or (`hostilePercent`) hostile
  /// offsets of `mapped`: each answers, never traps.
  func access(_ mapped: MappedRegion, hostilePercent: Int) {
    _ = mapped.unsafeHostAddress
    for _ in 0..<4 {
      let at = hostile(hostilePercent) ? rng.hostileInt() : rng.below(max(1, mapped.length))
      let value = rng.next()
      switch rng.below(8) {
      case 0: _ = try? mapped.load8(at: at)
      case 1: _ = try? mapped.load16(at: at)
      case 2: _ = try? mapped.load32(at: at)
      case 3: _ = try? mapped.load64(at: at)
      case 4: try? mapped.store8(UInt8(truncatingIfNeeded: value), at: at)
      case 5: try? mapped.store16(UInt16(truncatingIfNeeded: value), at: at)
      case 6: try? mapped.store32(UInt32(truncatingIfNeeded: value), at: at)
      default: try? mapped.store64(value, at: at)
      }
    }
  }
}
