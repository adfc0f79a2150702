import Iommufd
import SystemPackage

/// The entry points of virtual IOMMUs and what hangs off them: vDEVICEs, vEVENTQs, HW
/// queues, and the self-test commands for them.
func virtualEntryPoints() -> [EntryPoint] {
  [
    EntryPoint("VirtualIOMMU.init(kind:device:parent:data:)", weight: 12) { f in
      guard let parent = f.pick(f.pool.hwpts) else { return false }
      let device = f.deviceID(context: parent.context)
      var kind = VirtualIOMMU.Kind.selfTest
      let others: [VirtualIOMMU.Kind] = [.armSMMUv3, .tegra241CMDQV, VirtualIOMMU.Kind(rawValue: 0), VirtualIOMMU.Kind(rawValue: f.rng.hostileU32())]
      if f.hostile(25) { kind = f.rng.element(others) ?? kind }
      var data: [UInt8] = []
      if f.rng.chance(40) { data = f.rng.bytes(4) + [0, 0, 0, 0] + [UInt8](repeating: 0, count: 16) }
      if f.hostile(25) { data = f.rng.bytes(f.rng.below(65)) }
      f.call("kind \(kind) device \(device) parent \(parent.label) data \(hex(data))") {
        let viommu = try VirtualIOMMU(kind: kind, device: device, parent: parent.value, data: data)
        f.saw(viommu.id)
        _ = (viommu.driverData, viommu.kind.description, viommu.parent.id)
        f.pool.viommus.append(Held(value: viommu, label: f.pool.label("viommu"), context: parent.context))
      }
      return true
    },
    EntryPoint("VirtualIOMMU.invalidate(dataType:entryLength:entries:)", weight: 6) { f in
      guard let viommu = f.pick(f.pool.viommus) else { return false }
      let (dataType, entryLength, entries) = f.invalidation(type: IOMMUSelfTest.virtualInvalidationType, entryLength: 12)
      f.call("\(viommu.label) type 0x\(hex(UInt64(dataType))) entry length \(entryLength) entries \(hex(entries))") {
        _ = try viommu.value.invalidate(dataType: dataType, entryLength: entryLength, entries: entries)
      }
      return true
    },
    EntryPoint("VirtualIOMMU.destroy()", weight: 3) { f in
      guard let viommu = f.pick(f.pool.viommus) else { return false }
      f.call(viommu.label) { try viommu.value.destroy() }
      return true
    },
    EntryPoint("VirtualDevice.init(on:device:virtualID:)", weight: 10) { f in
      guard let viommu = f.pick(f.pool.viommus) else { return false }
      let device = f.deviceID(context: viommu.context)
      let virtualID = f.hostile(30) ? f.rng.hostileU64() : UInt64(1 &+ f.rng.below(255))
      f.call("on \(viommu.label) device \(device) virtual id 0x\(hex(virtualID))") {
        let vdevice = try VirtualDevice(on: viommu.value, device: device, virtualID: virtualID)
        f.saw(vdevice.id)
        _ = (vdevice.deviceID, vdevice.virtualID, vdevice.viommu.id)
        f.pool.vdevices.append(Held(value: vdevice, label: f.pool.label("vdev"), context: viommu.context))
      }
      return true
    },
    EntryPoint("VirtualDevice.destroy()", weight: 3) { f in
      guard let vdevice = f.pick(f.pool.vdevices) else { return false }
      f.call(vdevice.label) { try vdevice.value.destroy() }
      return true
    },
    EntryPoint("VirtualEventQueue.init(on:kind:depth:)", weight: 10) { f in
      guard let viommu = f.pick(f.pool.viommus) else { return false }
      var kind = VirtualEventQueue.Kind.selfTest
      if f.hostile(25) { kind = f.rng.element([.armSMMUv3, .tegra241CMDQV, VirtualEventQueue.Kind(rawValue: f.rng.hostileU32())]) ?? kind }
      let depth = f.hostile(30) ? f.rng.hostileU32() : UInt32(1 &+ f.rng.below(16))
      f.call("on \(viommu.label) kind \(kind.rawValue) depth \(depth)") {
        let queue = try VirtualEventQueue(on: viommu.value, kind: kind, depth: depth)
        f.saw(queue.id)
        _ = (queue.fileDescriptor, queue.depth, queue.kind.dataSize, queue.viommu.id)
        f.pool.veventqs.append(Held(value: queue, label: f.pool.label("veventq"), context: viommu.context))
      }
      return true
    },
    EntryPoint("VirtualEventQueue.read(maximumBytes:)", weight: 6) { f in
      guard let queue = f.pick(f.pool.veventqs) else { return false }
      let maximum = f.hostile(35) ? f.rng.hostileCount() : f.rng.element([4096, 8, 12, 16, 1, 0]) ?? 4096
      f.call("\(queue.label) maximum \(maximum)") {
        for event in try queue.value.read(maximumBytes: maximum) { _ = event.sequence }
      }
      return true
    },
    EntryPoint("VirtualEventQueue.destroy()", weight: 3) { f in
      guard let queue = f.pick(f.pool.veventqs) else { return false }
      f.call(queue.label) { try queue.value.destroy() }
      return true
    },
    EntryPoint("HardwareQueue.init(on:kind:index:guestAddress:length:)", weight: 10) { f in
      guard let viommu = f.pick(f.pool.viommus) else { return false }
      let kind = f.hostile(20) ? HardwareQueue.Kind(rawValue: f.rng.hostileU32()) : f.hostile(10) ? .tegra241CMDQV : .selfTest
      let index = f.hostile(30) ? f.rng.hostileU32() : UInt32(f.sensibleOnly ? 0 : f.rng.below(3))
      // One page is always physically contiguous; longer queues rarely are.
      var (address, length) = f.range()
      if f.sensibleOnly || f.rng.chance(50) { length = SplitMix64.page }
      f.call("on \(viommu.label) kind 0x\(hex(UInt64(kind.rawValue))) index \(index) guest address 0x\(hex(address)) len 0x\(hex(length))") {
        let queue = try HardwareQueue(on: viommu.value, kind: kind, index: index, guestAddress: address, length: length)
        f.saw(queue.id)
        _ = (queue.index, queue.guestAddress, queue.length, queue.kind, queue.viommu.id)
        f.pool.hwQueues.append(Held(value: queue, label: f.pool.label("hwq"), context: viommu.context))
      }
      return true
    },
    EntryPoint("HardwareQueue.destroy()", weight: 3) { f in
      guard let queue = f.pick(f.pool.hwQueues) else { return false }
      f.call(queue.label) { try queue.value.destroy() }
      return true
    },
    EntryPoint("IOMMUSelfTest.checkDeviceCache(device:slot:value:)", weight: 4) { f in
      guard let context = f.context() else { return false }
      let device = f.deviceID(context: context.context)
      let slot = f.hostile(30) ? f.rng.hostileU32() : UInt32(f.rng.below(4))
      let value = f.rng.chance(50) ? 0xBADDAD : f.rng.hostileU32()
      f.call("\(context.label) device \(device) slot \(slot) value 0x\(hex(UInt64(value)))") {
        try context.value.selfTest.checkDeviceCache(device: device, slot: slot, value: value)
      }
      return true
    },
    EntryPoint("IOMMUSelfTest.triggerVirtualEvent(device:)", weight: 5) { f in
      guard let context = f.context() else { return false }
      let device = f.deviceID(context: context.context)
      f.call("\(context.label) device \(device)") { try context.value.selfTest.triggerVirtualEvent(device: device) }
      return true
    },
  ]
}
