import CIommufd
import Iommufd
import SystemPackage

/// `VFIO_DEVICE_FEATURE` on each side's device: the core's checks (argsz, unknown flags,
/// GET with SET), PROBE of every feature id, the migration features (the state machine's
/// arcs, the data descriptor a SET returns), DMA logging with ranges and reports, and
/// vfio-pci's low-power features.
extension CallMaker {
  /// With `pci` (the edu variant), no plain low-power entry: a real device in low power
  /// answers its BARs by its power state, which the simulator does not model.
  mutating func featureCall(pci: Bool) -> Call {
    let get: UInt32 = 0x1_0000, set: UInt32 = 0x2_0000, probe: UInt32 = 0x4_0000
    switch random.below(12) {
    case 0, 1:
      // PROBE of any id (13: past 7.2's last) with GET, SET, both or neither; now and then
      // an unknown flag bit or a short argsz.
      let id = UInt32(random.below(14))
      let ways = random.pick([UInt32(0), get, set, get | set])
      let flags = probe | ways | id | (random.chance(8) ? 1 << 19 : 0)
      let argsz = UInt32(random.chance(10) ? 4 : 8)
      var call = Call(name: "FEATURE probe id \(id) flags 0x\(String(flags, radix: 16)) argsz \(argsz)", request: 0x3B75, argument: le(argsz, flags))
      call.onDevice = true
      return call
    case 2:
      // MIGRATION, MIG_DATA_SIZE: GET with room for the answer, or too little, or SET.
      let id = UInt32(random.pick([1, 9]))
      let way = random.chance(85) ? get : random.pick([set, get | set])
      let payload = random.pick([8, 8, 4, 16])
      var call = Call(
        name: "FEATURE id \(id) flags 0x\(String(way | id, radix: 16)) payload \(payload)", request: 0x3B75,
        argument: le(UInt32(8 + payload), way | id) + [UInt8](repeating: 0, count: payload))
      call.onDevice = true
      return call
    case 3, 4, 5, 6:
      // MIG_DEVICE_STATE: GET, or SET to any state (8: past the last); its data descriptor
      // (or -1) comes back at 12: the number differs by nature, whether there is one does not.
      let state = UInt32(random.chance(90) ? random.below(8) : 8)
      let way = random.chance(25) ? get : set
      let payload = random.chance(95) ? 8 : 4
      var call = Call(
        name: "FEATURE MIG_DEVICE_STATE \(way == get ? "get" : "set \(state)") payload \(payload)", request: 0x3B75,
        argument: le(UInt32(8 + payload), way | 2) + (payload == 8 ? le(state, Int32(-1)) : le(state)),
        creates: way == set && payload == 8 ? .stream(at: 12) : .nothing, descriptorField: way == set && payload == 8 ? 12 : nil)
      if way == set && payload == 8 { call.maskedBits = [(12, 0xFF), (13, 0xFF), (14, 0xFF), (15, 0x7F)] }
      call.onDevice = true
      return call
    case 7, 8:
      // DMA_LOGGING_START: a page size (a power of two, 0, or not one), 0 to 3 ranges from
      // a few aligned and misaligned choices (overlaps, one that overflows), or 257.
      let pageSize = UInt64(random.pick([4096, 4096, 0x2000, 0x3000, 0, 1 << 21]))
      let count = random.chance(5) ? 257 : random.below(4)
      var list: [UInt8] = []
      var names: [String] = []
      for _ in 0..<min(count, 3) {
        let iova = random.pick([UInt64(0), 0x10_0000, 0x10_0000, 0x10_0800, 0x20_0000, 0xFFFF_FFFF_FFFF_F000])
        let length = UInt64(random.pick([0x1000, 0x1_0000, 0x800, 0, 0x2000]))
        list += le(iova, length)
        names.append("0x\(String(iova, radix: 16))+0x\(String(length, radix: 16))")
      }
      if count == 257 { list = (0..<257).flatMap { le(UInt64($0) << 12, UInt64(0x1000)) } }
      var call = Call(
        name: "FEATURE DMA_LOGGING_START page 0x\(String(pageSize, radix: 16)) ranges \(count == 257 ? "257" : names.joined(separator: ","))",
        request: 0x3B75, argument: le(UInt32(32), set | 6, pageSize, UInt32(count), UInt32(0), UInt64(0)),
        buffers: [(24, list.isEmpty ? [0] : list)])
      call.onDevice = true
      return call
    case 9:
      var call = Call(name: "FEATURE DMA_LOGGING_STOP", request: 0x3B75, argument: le(UInt32(8), set | 7))
      call.onDevice = true
      return call
    case 10:
      // DMA_LOGGING_REPORT into a bitmap: page sizes below 4096, no power of two, overflow.
      let pageSize = UInt64(random.pick([4096, 4096, 2048, 0x3000, 1 << 21]))
      let iova = random.pick([UInt64(0x10_0000), 0, 0xFFFF_FFFF_FFFF_F000])
      let length = UInt64(random.pick([0x1_0000, 0x2000, 0]))
      var call = Call(
        name: "FEATURE DMA_LOGGING_REPORT iova 0x\(String(iova, radix: 16)) length 0x\(String(length, radix: 16)) page 0x\(String(pageSize, radix: 16))",
        request: 0x3B75, argument: le(UInt32(40), get | 8, iova, length, pageSize, UInt64(0)),
        buffers: [(32, [UInt8](repeating: 0, count: 64))])
      call.onDevice = true
      return call
    default:
      // vfio-pci's low power: entry (not on a PCI device), entry with a wakeup descriptor
      // that is none (-1) or this side's iommufd (no eventfd: refused before it enters),
      // exit; and 7.2's precopy-info opt-in (12).
      let id = UInt32(random.pick(pci ? [4, 5, 5, 12, 0] : [3, 4, 5, 5, 12, 0]))
      var argument = le(UInt32(id == 4 ? 16 : 8), set | id)
      var iommufdAt: Int?
      if id == 4 {
        let choice = random.pick([-1, 1000])
        if choice == 1000 { iommufdAt = 8 }
        argument += le(Int32(-1), UInt32(0))
      }
      var call = Call(name: "FEATURE set id \(id)\(id == 4 ? iommufdAt == nil ? " wakeup -1" : " wakeup iommufd" : "")", request: 0x3B75, argument: argument)
      call.onDevice = true
      if let iommufdAt { call.iommufdField = iommufdAt }
      return call
    }
  }
}

extension CallMaker {
  /// An operation on a migration data stream the sequence opened: reads of a few bytes or
  /// all, writes of an mtty stream (its header right or wrong, its ports' FIFO indexes kept
  /// inside the FIFO: the kernel would index past it), the pre-copy query, a close.
  mutating func streamCall() -> Call {
    let slot = random.below(max(streamCount, 1))
    let operation: StreamOperation
    switch random.below(10) {
    case 0, 1, 2: operation = .read(random.pick([1, 8, 24, 25, 96, 200]))
    case 3, 4, 5:
      var header = le(UInt64(0x7E9D_0989_8C3E_2C4E), UInt32(1), UInt32(0), UInt32(random.pick([2, 2, 2, 1])), UInt32(0))
      if random.chance(15) { header[random.below(24)] ^= UInt8(1 + random.below(255)) }
      var port: [UInt8] = (0..<8).map { _ in UInt8(truncatingIfNeeded: random.next()) } + (0..<16).map { _ in UInt8(truncatingIfNeeded: random.next()) }
      let (head, tail) = (UInt8(random.below(16)), UInt8(random.below(16)))
      port += [head, tail, UInt8(random.below(17)), UInt8(random.below(2)), UInt8(random.below(2)), 0]
      port += le(UInt16(truncatingIfNeeded: random.next())) + [UInt8(truncatingIfNeeded: random.next()), UInt8(random.pick([1, 16])), UInt8(random.below(15)), 0]
      let stream = header + port + port
      let cut = random.pick([stream.count, stream.count, 24, 10, 40, 60, 97 <= stream.count ? 97 : stream.count])
      operation = .write(Array(stream.prefix(cut)) + (random.chance(5) ? [0] : []))
    case 6, 7: operation = .precopyInfo(UInt32(random.pick([24, 24, 16])))
    default: operation = .close
    }
    let name: String
    switch operation {
    case .read(let count): name = "stream #\(slot) read \(count)"
    case .write(let bytes): name = "stream #\(slot) write \(bytes.count) bytes \(hex(bytes.prefix(8)))"
    case .precopyInfo(let argsz): name = "stream #\(slot) PRECOPY_INFO argsz \(argsz)"
    case .close: name = "close stream #\(slot)"
    }
    var call = Call(name: name, request: 0, argument: nil)
    call.stream = (slot, operation)
    return call
  }
}

/// Runs a stream operation on `fd` (stream `slot` of the side, -1 if there is none).
func runStream(_ operation: StreamOperation, _ fd: FileDescriptor, calls: any SystemCalls, files: inout SideFiles, slot: Int) -> Outcome {
  var outcome = Outcome(errno: nil, result: 0, argument: [], buffers: [])
  do throws(Errno) {
    switch operation {
    case .read(let count):
      let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 8)
      defer { buffer.deallocate() }
      buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
      let read = try calls.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]))
      outcome.result = Int32(read)
      outcome.argument = Array(buffer[0..<max(0, min(read, count))])
    case .write(let bytes):
      let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
      defer { buffer.deallocate() }
      buffer.copyBytes(from: bytes)
      outcome.result = Int32(try calls.write(fd, from: UnsafeRawBufferPointer(rebasing: buffer[0..<bytes.count])))
    case .precopyInfo(let argsz):
      let info = le(argsz, UInt32(0x55), UInt64(0xAAAA), UInt64(0xBBBB))
      let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: info.count, alignment: 8)
      defer { buffer.deallocate() }
      buffer.copyBytes(from: info)
      outcome.result = try calls.ioctl(fd, 0x3B79, buffer.baseAddress)
      outcome.argument = Array(buffer)
    case .close:
      if slot < files.streams.count { files.streams[slot] = -1 }
      try calls.close(fd)
    }
  } catch {
    outcome.errno = error.rawValue
  }
  return outcome
}
