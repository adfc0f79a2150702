import Iommufd
import IommufdSimulator
import SystemPackage

/// The entry points of pure functions and value types, called with values built by hand.
func valueEntryPoints() -> [EntryPoint] {
  [
    EntryPoint("PCIAddress.init(_:)", weight: 6) { f in
      let text = f.addressText()
      f.call(text.debugDescription) {
        if let address = PCIAddress(text) { _ = address.description }
      }
      return true
    },
    EntryPoint("PCIAddress.init(domain:bus:device:function:)", weight: 2) { f in
      let (domain, bus, device, function) = (f.rng.hostileU16(), f.rng.hostileU8(), f.rng.hostileU8(), f.rng.hostileU8())
      f.call("\(domain) \(bus) \(device) \(function)") {
        _ = PCIAddress(domain: domain, bus: bus, device: device, function: function)?.description
      }
      return true
    },
    EntryPoint("PCIAddress.<", weight: 1) { f in
      let (a, b) = (f.pciAddress(), f.pciAddress())
      f.call("\(a) < \(b)") { _ = (a < b, [a, b].sorted()) }
      return true
    },
    EntryPoint("VFIOCapabilityChain.parse(_:firstOffset:operation:isRegion:)", weight: 8) { f in
      let (reply, first) = f.capabilityChain()
      let operation = f.rng.element(IommufdError.Operation.allCases) ?? .deviceGetInfo
      let isRegion = f.rng.chance(60)
      f.call("reply \(hex(reply)) first \(first) \(operation.rawValue) region \(isRegion)") {
        _ = try VFIOCapabilityChain.parse(reply, firstOffset: first, operation: operation, isRegion: isRegion)
      }
      return true
    },
    EntryPoint("DirtyBitmap.init(base:pageSize:pageCount:words:)", weight: 2) { f in
      let bitmap = f.dirtyBitmap()
      f.call("\(bitmap)") { _ = DirtyBitmap(base: bitmap.base, pageSize: bitmap.pageSize, pageCount: bitmap.pageCount, words: bitmap.words) }
      return true
    },
    EntryPoint("DirtyBitmap.dirtyCount", weight: 2) { f in
      let bitmap = f.dirtyBitmap()
      f.call("\(bitmap)") { _ = bitmap.dirtyCount }
      return true
    },
    EntryPoint("DirtyBitmap.isDirty(_:)", weight: 4) { f in
      let bitmap = f.dirtyBitmap()
      let iova = f.rng.chance(50) ? bitmap.base &+ UInt64(f.rng.below(256)) &* bitmap.pageSize : f.rng.hostileU64()
      f.call("\(bitmap) iova 0x\(hex(iova))") { _ = bitmap.isDirty(iova) }
      return true
    },
    EntryPoint("DirtyBitmap.makeIterator()", weight: 4) { f in
      let bitmap = f.dirtyBitmap()
      f.call("\(bitmap)") {
        var iterator = bitmap.makeIterator()
        var pages = 0
        while pages < 4096, iterator.next() != nil { pages &+= 1 }
      }
      return true
    },
    EntryPoint("IOVARange.init(start:last:)", weight: 1) { f in
      let (start, last) = (f.rng.hostileU64(), f.rng.hostileU64())
      f.call("0x\(hex(start)) 0x\(hex(last))") { _ = IOVARange(start: start, last: last).description }
      return true
    },
    EntryPoint("IOVARange.init(start:length:)", weight: 2) { f in
      let (start, length) = (f.rng.hostileU64(), f.rng.hostileU64())
      f.call("0x\(hex(start)) length 0x\(hex(length))") { _ = IOVARange(start: start, length: length)?.description }
      return true
    },
    EntryPoint("IOVARange.contains(_:)", weight: 1) { f in
      let range = f.iovaRange()
      let iova = f.rng.hostileU64()
      f.call("\(range) 0x\(hex(iova))") { _ = range.contains(iova) }
      return true
    },
    EntryPoint("IOVARanges.init(ranges:alignment:)", weight: 1) { f in
      let ranges = f.iovaRangeList()
      let alignment = f.rng.hostileU64()
      f.call("\(ranges) 0x\(hex(alignment))") { _ = IOVARanges(ranges: ranges, alignment: alignment) }
      return true
    },
    EntryPoint("ObjectID.init", weight: 1) { f in
      let raw = f.rng.hostileU32()
      f.call("\(raw)") { _ = (ObjectID(raw).description, ObjectID(rawValue: raw) == ObjectID(raw)) }
      return true
    },
    EntryPoint("IommufdError.init(_:_:objects:detail:)", weight: 1) { f in
      let operation = f.rng.element(IommufdError.Operation.allCases) ?? .open
      let errno = Errno(rawValue: Int32(truncatingIfNeeded: f.rng.hostileInt()))
      let id = ObjectID(f.rng.hostileU32())
      let index = f.rng.hostileInt()
      f.call("\(operation.rawValue) \(errno.rawValue) id \(id) index \(index)") {
        let objects: [IommufdError.InvolvedObject] = [
          .ioas(id), .hwpt(id), .device(id), .pageTable(id), .object(id), .fd(FileDescriptor(rawValue: errno.rawValue)),
          .path("\u{1F4A3}"), .region(index), .irq(index), .viommu(id), .init("", ""),
        ]
        _ = IommufdError(operation, errno, objects: objects, detail: f.rng.bool() ? nil : "detail").description
      }
      return true
    },
    EntryPoint("IOMMUHardwareInfo register views", weight: 4) { f in
      let kind = IOMMUHardwareInfo.Kind(rawValue: f.rng.chance(70) ? UInt32(f.rng.below(5)) : f.rng.hostileU32())
      let data = f.rng.bytes(f.rng.element([0, 7, 8, 15, 16, 23, 24, 39, 40, f.rng.below(64)]) ?? 0)
      let info = IOMMUHardwareInfo(kind: kind, data: data, capabilities: .init(rawValue: f.rng.hostileU64()), maxPASIDLog2: f.rng.hostileU8())
      f.call("kind \(kind.rawValue) data \(hex(data))") {
        _ = (info.vtdRegisters, info.smmuV3Registers, info.amdRegisters, info.tegra241Parameters, info.kind.description)
      }
      return true
    },
    EntryPoint("Kind and feature descriptions", weight: 1) { f in
      let raw = f.rng.hostileU32()
      f.call("\(raw)") {
        _ = IOMMUHardwareInfo.Kind(rawValue: raw).description
        _ = VirtualIOMMU.Kind(rawValue: raw).description
        _ = VirtualEventQueue.Kind(rawValue: raw).dataSize
        _ = HardwareQueue.Kind(rawValue: raw)
        _ = IOMMUFeature(rawValue: raw)?.description
        _ = IOMMUFeature.allCases.map(\.description)
        _ = SimulatedKernel.Release(rawValue: Int(raw))?.description
      }
      return true
    },
    EntryPoint("Option sets and plain values", weight: 1) { f in
      let (a, b, c) = (f.rng.hostileU32(), f.rng.hostileInt(), f.rng.hostileU64())
      f.call("0x\(hex(UInt64(a))) \(b) 0x\(hex(c))") {
        _ = (HWPageTable.Flags(rawValue: a), DMAAccess(rawValue: a), IOMMUSelfTest.DeviceFlags(rawValue: a))
        _ = (VFIODeviceInfo.Flags(rawValue: a), VFIOIRQInfo.Flags(rawValue: a), VFIORegionInfo.Flags(rawValue: a))
        _ = IOMMUHardwareInfo.Capabilities(rawValue: c)
        _ = VFIODeviceInfo(flags: .init(rawValue: a), regionCount: b, irqCount: b, capabilities: [.regionType(type: a, subtype: a)])
        _ = VFIOIRQInfo(index: b, flags: .init(rawValue: a), count: b)
        _ = PageFault(flags: a, deviceID: ObjectID(a), pasid: a, groupID: a, permissions: a, address: c, length: a, cookie: a)
        _ = VFIOSparseMMapArea(offset: c, size: c)
        _ = PCIDeviceEntry(address: PCIAddress(bus: 0, device: 0, function: 0)!, vendorID: UInt16(truncatingIfNeeded: a), iommuGroup: b)
        _ = IOMMUGroupInfo.ReservedRegion(range: IOVARange(start: c, last: c), type: "msi")
        _ = VFIOPCIRegion.bar(b)
        _ = (VirtualEvent.event(sequence: a, data: []).sequence, VirtualEvent.lostEvents(sequence: a).sequence)
        _ = (VFIOPCIInterrupt.intx, VFIOPCIInterrupt.request, IOMMUSelfTest.mockAperture.description)
      }
      return true
    },
  ]
}

extension Fuzzer {
  /// A string to parse as a PCI address: well-formed, nearly so, or hostile (signs, huge
  /// numbers, other scripts' digits, combining marks, whitespace, emoji).
  func addressText() -> String {
    if rng.chance(20) { return pciAddress().description }
    let pieces = [
      "0000", "00", "03", "0", ":", ".", "+", "-", "0x", "ffff", "1f", "7", "8", "20", "99999999999999999999", "\u{663}",
      "\u{FF10}", "\u{301}", " ", "\n", "\u{1F4A3}", "g", "00000", "-0", "+f", "\u{0}", "٠٠٠٠",
    ]
    var text = ""
    for _ in 0..<rng.below(12) { text += rng.element(pieces) ?? "" }
    let nearly = [
      "0000:00:03.0", "00:03.0", "ffff:ff:1f.7", "0000:00:20.0", "0000:00:1f.8", "+000:00:03.0", "0000:+0:03.0", "0000:00:+3.0",
      "0000:00:03.+", "0000:00:03.-0", "0000::03.0", ":00:03.0", "0000:00:.0",
    ]
    if rng.chance(30) { text = rng.element(nearly) ?? text }
    return text
  }

  /// A capability chain reply: structured (headers whose `next` offsets chain, loop or
  /// point out of range; sparse-mmap counts too large) or random bytes; and the first offset.
  func capabilityChain() -> ([UInt8], UInt32) {
    if rng.chance(20) { return (rng.bytes(rng.below(129)), hostile(50) ? rng.hostileU32() : UInt32(rng.below(64))) }
    var reply = [UInt8](repeating: 0, count: 8 &+ rng.below(16) &* 4)
    var offsets: [Int] = []
    for _ in 0..<(1 &+ rng.below(4)) {
      let offset = reply.count
      offsets.append(offset)
      let id = UInt16(rng.element([1, 2, 3, 4, 0xFFFF]) ?? 1)
      var capability = [UInt8](repeating: 0, count: 8)
      capability[0] = UInt8(truncatingIfNeeded: id)
      capability[1] = UInt8(truncatingIfNeeded: id >> 8)
      capability[2] = 1
      var payload = rng.bytes(rng.element([0, 4, 8, 16, 24, 40]) ?? 8)
      if payload.count >= 4 && rng.chance(60) {
        let count = rng.chance(50) ? UInt32(rng.below(3)) : rng.hostileU32()
        for index in 0..<4 { payload[index] = UInt8(truncatingIfNeeded: count >> (8 * UInt32(index))) }
      }
      reply += capability + payload
      while reply.count % 4 != 0 { reply.append(0) }
    }
    // Link the capabilities: to the next one, 0 at the end, sometimes anywhere.
    for (index, offset) in offsets.enumerated() {
      var next = index &+ 1 < offsets.count ? UInt32(offsets[index &+ 1]) : 0
      if hostile(20) { next = rng.chance(50) ? UInt32(rng.element(offsets) ?? 0) : rng.hostileU32() }
      for byte in 0..<4 { reply[offset &+ 4 &+ byte] = UInt8(truncatingIfNeeded: next >> (8 * UInt32(byte))) }
    }
    if hostile(20) { reply = Array(reply.prefix(rng.below(reply.count &+ 1))) }
    let first = hostile(20) ? rng.hostileU32() : UInt32(offsets.first ?? 0)
    return (reply, first)
  }

  /// A dirty bitmap built by hand: consistent, or with hostile page sizes, counts and words.
  func dirtyBitmap() -> DirtyBitmap {
    let words = (0..<rng.below(5)).map { _ in rng.chance(50) ? rng.next() : rng.hostileU64() }
    let pageCount = hostile(40) ? rng.hostileInt() : words.count &* 64
    let pageSize = hostile(40) ? rng.hostileU64() : SplitMix64.page
    let base = hostile(40) ? rng.hostileU64() : iova()
    return DirtyBitmap(base: base, pageSize: pageSize, pageCount: pageCount, words: words)
  }
}
