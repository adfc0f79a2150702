// iommufd-diff-fuzz: seeded random sequences of raw iommufd ioctls, each sent through the
// `SystemCalls` seam to two backends in the same process (the kernel and `SimulatedKernel`
// configured as the same release with the self-test on), compared call by call: result,
// errno, the argument struct written back and every output buffer. A divergent sequence is
// minimised to its shortest reproducer and printed as a list of calls. Sequences run in
// forked batches, so a trapping simulator is reported and the run goes on.
//
//   iommufd-diff-fuzz [--seed S] [--sequences N] [--calls N] [--first-sequence N]
//                     [--against-simulator] [--release 6.12|7.2] [--plant-divergence] [--verbose] [--stats]
//                     [--device CDEV] [--mdev TYPE] [--progress N]
//
// Without /dev/iommu (or with --against-simulator) both sides are simulators, which must
// agree; --plant-divergence perturbs one answer of the second side, the negative control
// that must be reported. --device adds a VFIO device: each sequence opens the kernel's cdev
// CDEV (an edu, as in the lab's VT-d boot: vfio0 on the root bus, vfio1 and vfio2 the two
// functions behind a root port) and the simulator's of the same number, and the calls bind,
// attach, query, reset and access it; the simulator is then a test kernel with VT-d active
// (no mock devices). --mdev TYPE adds a mediated device instead: each sequence creates an
// instance of TYPE (an mtty type, as the lab kernels have) on the kernel and on a simulator
// with the mtty parent, binds, attaches and queries its emulated cdev, reaches its config
// space and serial registers, and removes it at the end. --progress N prints a `progress:` line every N sequences (for long
// campaigns). The last line is `fuzz: N sequences, M calls, D divergent, T traps; huge arena: ...`.
// A batch that gives no answer for 120 s is reported as a `hang:` and ends the run (status 1).

import CIommufd
import Iommufd
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// MARK: Options

struct Options {
  var seed: UInt64 = 1
  var sequences = 300
  var calls = 30
  var firstSequence = 0
  var againstSimulator = false
  var plantDivergence = false
  var verbose = false
  var stats = false
  /// The release the simulators answer as when no kernel is compared.
  var release = "6.12"
  /// The kernel's cdev of an edu device, for the device variant.
  var device: String?
  /// An mdev type (`mtty-1`, `mtty-2`), for the mediated-device variant.
  var mdevType: String?
  /// Print a progress line every this many sequences (0: never).
  var progress = 0

  init(_ arguments: [String]) {
    var index = 1
    func value() -> String {
      index += 1
      guard index < arguments.count else { fail("\(arguments[index - 1]) needs a value") }
      return arguments[index]
    }
    while index < arguments.count {
      switch arguments[index] {
      case "--seed": seed = UInt64(value()) ?? { fail("--seed takes a number") }()
      case "--sequences": sequences = Int(value()).flatMap { $0 >= 0 ? $0 : nil } ?? { fail("--sequences takes a count") }()
      case "--calls": calls = Int(value()).flatMap { $0 > 0 && $0 <= 1000 ? $0 : nil } ?? { fail("--calls takes 1...1000") }()
      case "--first-sequence": firstSequence = Int(value()).flatMap { $0 >= 0 ? $0 : nil } ?? { fail("--first-sequence takes a number") }()
      case "--against-simulator": againstSimulator = true
      case "--plant-divergence": plantDivergence = true
      case "--verbose": verbose = true
      case "--stats": stats = true
      case "--release": release = value()
      case "--device": device = value()
      case "--mdev": mdevType = value()
      case "--progress": progress = Int(value()).flatMap { $0 >= 0 ? $0 : nil } ?? { fail("--progress takes a count") }()
      default: fail("unknown argument \(arguments[index])")
      }
      index += 1
    }
  }
}

/// Bytes as two lowercase hex digits each.
func hex(_ bytes: some Sequence<UInt8>) -> String {
  let digits = Array("0123456789abcdef".utf8)
  var text: [UInt8] = []
  for byte in bytes { text += [digits[Int(byte >> 4)], digits[Int(byte & 0xf)]] }
  return String(decoding: text, as: UTF8.self)
}

func fail(_ message: String) -> Never {
  let line = "iommufd-diff-fuzz: \(message)\n"
  _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
  exit(64)
}

// MARK: Randomness

/// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
struct Generator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
  mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
  mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }
}

// MARK: User memory

/// The memory both backends see: read-write pages, a read-only page, a PROT_NONE page and
/// an unmapped hole, at the same addresses for both. Never THP-backed (MD_CHECK_REFS
/// skips compound pages on the kernel).
struct Arena {
  static let pageSize = 4096
  static let pages = 32
  let base: UInt64
  /// Page indexes: 0..<24 read-write, 24 read-only, 25 PROT_NONE, 26 unmapped, 27..<32 read-write.
  static let readOnly = 24, none = 25, hole = 26

  init() {
    let length = Self.pages * Self.pageSize
    guard let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), address != MAP_FAILED
    else { fail("cannot map the arena") }
    _ = madvise(address, length, 15)  // MADV_NOHUGEPAGE
    for page in 0..<Self.pages { (address + page * Self.pageSize).storeBytes(of: UInt64(page) &* 0x0101_0101, as: UInt64.self) }
    mprotect(address + Self.readOnly * Self.pageSize, Self.pageSize, PROT_READ)
    mprotect(address + Self.none * Self.pageSize, Self.pageSize, PROT_NONE)
    munmap(address + Self.hole * Self.pageSize, Self.pageSize)
    base = UInt64(UInt(bitPattern: address))
  }

  func page(_ index: Int) -> UInt64 { base + UInt64(index * Self.pageSize) }
}

/// 4 MiB of read-write memory aligned to 2 MiB and advised as transparent huge pages, so
/// that, where the kernel backs it so, a mapping of it holds physically contiguous MiBs:
/// 6.12's HUGE_IOVA mock maps those as 1 MiB leaves, 7.2's mock as long runs. Only maps
/// and what works on mappings use it (MD_CHECK_REFS skips compound pages on the kernel).
struct HugeArena {
  static let size = 4 << 20
  let base: UInt64

  init() {
    let length = Self.size + (2 << 20)
    guard let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), address != MAP_FAILED
    else { fail("cannot map the huge arena") }
    let start = (UInt(bitPattern: address) + (2 << 20) - 1) & ~UInt((2 << 20) - 1)
    Self.populate(UnsafeMutableRawPointer(bitPattern: start)!)
    base = UInt64(start)
  }

  /// Replaces the arena's memory with new memory at the same address, written through.
  /// A forked batch calls it first: the memory it inherited is shared with the parent
  /// copy-on-write, so the kernel's first pin of each page would copy it to a 4 KiB page
  /// of its own, and whether a MiB was contiguous again would depend on the allocator and
  /// on khugepaged, not on the sequence.
  func renew() {
    guard let address = UnsafeMutableRawPointer(bitPattern: UInt(base)),
      mmap(address, Self.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == address
    else { fail("cannot map the huge arena again") }
    Self.populate(address)
  }

  /// Asks for transparent huge pages and writes every page.
  private static func populate(_ address: UnsafeMutableRawPointer) {
    _ = madvise(address, size, 14)  // MADV_HUGEPAGE
    for page in stride(from: 0, to: size, by: 4096) { (address + page).storeBytes(of: UInt64(page) | 1, as: UInt64.self) }
  }

  /// How many of the arena's MiBs are physically contiguous from a 1 MiB-aligned frame,
  /// as /proc/self/pagemap shows (0 where frame numbers are hidden: without CAP_SYS_ADMIN).
  func contiguousMebibytes() -> Int {
    let fd = open("/proc/self/pagemap", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var count = 0
    for mebibyte in 0..<(Self.size >> 20) {
      var entries = [UInt64](repeating: 0, count: 256)
      let offset = off_t((at(mebibytes: mebibyte) / 4096) * 8)
      guard entries.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, offset) }) == 256 * 8 else { continue }
      let frames = entries.map { $0 & (1 << 55 - 1) }
      if frames[0] != 0, frames[0] % 256 == 0, frames.indices.allSatisfy({ frames[$0] == frames[0] + UInt64($0) }) { count += 1 }
    }
    return count
  }

  /// The address `mebibytes` MiB into the arena.
  func at(mebibytes: Int) -> UInt64 { base + UInt64(mebibytes << 20) }
}

// MARK: Calls

/// One ioctl with its argument as bytes, and the buffers its argument points at.
struct Call {
  /// What the call is, for reports.
  var name: String
  var request: UInt
  /// The argument struct; `nil` passes a NULL argument, `.bad` an unmapped address.
  var argument: [UInt8]?
  var badArgument = false
  /// The argument sits in a read-only page: readable, but a write-back faults.
  var readOnlyArgument = false
  /// An integer passed as the argument instead of a pointer (VFIO_CHECK_EXTENSION, SET_IOMMU).
  var value: UInt?
  /// Buffers the argument points at: the byte offset of the pointer field, and the
  /// buffer's initial contents (compared afterwards on both sides).
  var buffers: [(field: Int, bytes: [UInt8])] = []
  /// Byte ranges of the written-back argument that differ by nature (descriptors).
  var ignored: [Range<Int>] = []
  /// What a success creates, for the generator's next choices.
  var creates: Creation = .nothing
  /// The offset of a descriptor the kernel returns (a fault queue's, a vEVENTQ's): it
  /// differs by nature, and each side's is closed when the sequence ends.
  var descriptorField: Int?
  /// A self-test access op: the command's `id` (offset 8) becomes each side's own
  /// descriptor of access number `accessSlot` (where there is one; else the id stays).
  var accessSlot: Int?
  /// Instead of an ioctl, `close(2)` of each side's descriptor of an access or a dma-buf
  /// (by its number among them).
  var closes: (kind: SideFiles.Kind, slot: Int)?
  /// A dma-buf's descriptor: the s32 at `field` becomes each side's own descriptor of
  /// dma-buf number `slot` (7.2's self-test exporter).
  var dmabufSlot: (slot: Int, field: Int)?
  /// The call returns a descriptor as its result (DMABUF_GET): not compared.
  var resultIsDescriptor = false
  /// Instead of an ioctl, an operation on each side's migration data stream number `slot`.
  var stream: (slot: Int, operation: StreamOperation)?
  /// The call goes to each side's device descriptor, not to its iommufd.
  var onDevice = false
  /// The s32 at this offset becomes each side's iommufd descriptor (VFIO_DEVICE_BIND_IOMMUFD).
  var iommufdField: Int?
  /// Instead of an ioctl, `pread(2)` (or `pwrite(2)` of `write`, then a `pread(2)` of
  /// `count` bytes back) on each side's device.
  var region: (offset: Int64, count: Int, write: [UInt8]?)?
  /// Bits of the result (the argument written back, or the bytes read) that differ by
  /// nature, by byte offset: cleared on both sides before comparing.
  var maskedBits: [(offset: Int, mask: UInt8)] = []
}

/// What a call does to a migration data stream.
enum StreamOperation {
  /// `read(2)` of up to this many bytes.
  case read(Int)
  /// `write(2)` of these bytes.
  case write([UInt8])
  /// `VFIO_MIG_GET_PRECOPY_INFO` with this argsz (and flags 0x55, to see them echoed).
  case precopyInfo(UInt32)
  /// `close(2)`.
  case close
}

/// What a successful call made, read from its written-back argument.
enum Creation {
  case nothing
  /// A migration data stream whose descriptor (its sign: the number is masked) is the s32
  /// at this offset.
  case stream(at: Int)
  /// An IOAS whose id is the u32 at this offset.
  case ioas(at: Int)
  /// A paging (or nested) HWPT whose id is the u32 at this offset.
  case hwpt(at: Int, nested: Bool)
  /// A mock device: self-test object, HWPT and device ids at 16, 20 and 24.
  case mockDevice
  /// A mapping of `length` bytes in IOAS `ioas` at the IOVA (u64) at this offset.
  case mapping(ioas: UInt32, length: UInt64, at: Int)
  /// A fault queue whose id is the u32 at this offset.
  case fault(at: Int)
  /// A vIOMMU whose id is the u32 at this offset.
  case viommu(at: Int)
  /// PASID `pasid` of self-test object `stdev` attached.
  case pasid(stdev: UInt32, pasid: UInt32)
  /// A self-test access (CREATE_ACCESS) on IOAS `ioas`, its descriptor at offset 16.
  case access(ioas: UInt32)
  /// A dma-buf (DMABUF_GET), its descriptor the result.
  case dmabuf
  /// A bound device whose id is the u32 at this offset.
  case device(at: Int)
}

/// What a call did on one backend.
struct Outcome: Equatable {
  var errno: Int32?
  var result: Int32
  var argument: [UInt8]
  var buffers: [[UInt8]]
  /// A descriptor the call returned (not compared: numbers differ by nature).
  var descriptor: Int32?

  static func == (a: Outcome, b: Outcome) -> Bool {
    a.errno == b.errno && a.result == b.result && a.argument == b.argument && a.buffers == b.buffers
  }

  var summary: String {
    let head = errno.map { "errno \($0)" } ?? "-> \(result)"
    let buffersText = buffers.isEmpty ? "" : " buffers " + buffers.map { hex($0.prefix(32)) }.joined(separator: "/")
    return head + " arg " + hex(argument) + buffersText
  }
}

func le(_ fields: any FixedWidthInteger...) -> [UInt8] {
  var bytes: [UInt8] = []
  for field in fields {
    let value = UInt64(truncatingIfNeeded: field)
    for index in 0..<(field.bitWidth / 8) { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))) }
  }
  return bytes
}

/// Makes the calls of one sequence. Values are drawn from classes that matter: small ids
/// (objects really exist there, as both sides number them alike), stale and zero ids, the
/// mock aperture, sub-page offsets, protections, lengths that overflow, unknown flags.
struct CallMaker {
  var random: Generator
  let arena: Arena
  let hugeArena: HugeArena
  /// Whether this sequence maps the huge arena first (and, on 6.12, makes its first mock
  /// device HUGE_IOVA), at IOVAs aligned to 1 MiB.
  var usesHugeArena = false
  let release: SimulatedKernel.Release
  /// Objects and mappings made so far (as the first side reported them).
  var spaces: [UInt32] = []
  var pageTables: [UInt32] = []
  var nestedTables: [UInt32] = []
  var devices: [UInt32] = []
  var selfTestObjects: [UInt32] = []
  var faults: [UInt32] = []
  var viommus: [UInt32] = []
  /// Paging HWPTs allocated as nesting parents (`NEST_PARENT`), with dirty tracking
  /// (`DIRTY_TRACKING`), and those whose tracking was turned on: the calls that need such
  /// a table pick one of these most of the time, so they get past their checks.
  var nestParents: [UInt32] = []
  var dirtyTables: [UInt32] = []
  var trackingTables: [UInt32] = []
  /// The IOAS of each paging HWPT allocated on one.
  var tableSpaces: [UInt32: UInt32] = [:]
  /// PASIDs attached through the self-test (for REPLACE).
  var attachedPASIDs: [(stdev: UInt32, pasid: UInt32)] = []
  /// A memfd of 64 KiB both sides map from (MAP_FILE), and one of 8 KiB (pages past its end).
  let files: [Int32]
  var mappings: [(ioas: UInt32, iova: UInt64, length: UInt64)] = []
  /// The user address of each mapping of user memory, by "ioas:iova".
  var mappingUsers: [String: UInt64] = [:]
  /// The IOAS of each self-test access made so far, by access number.
  var accessSpaces: [UInt32] = []
  var accessCount: Int { accessSpaces.count }
  /// Dma-bufs made so far.
  var dmabufCount = 0
  /// Each side has a VFIO device (the device variant).
  var deviceMode = false
  /// Each side has a mediated device (the mdev variant).
  var mediatedMode = false
  /// The migration data streams the sequence has opened.
  var streamCount = 0
  /// Whether the sequence asked the mediated device's GET_INFO (after which mtty answers
  /// interrupt requests) through ``mediatedCall(bind:)``'s early ask.
  var mediatedInfoAsked = false
  /// Whether the sequence has set its first IOAS as the compat IOAS (VFIO_IOAS SET) yet.
  var compatChosen = false
  /// Whether the sequence has set a small temporary memory limit yet.
  var limitChosen = false

  /// Records what `call` made, given its outcome on the first side.
  mutating func observe(_ call: Call, _ outcome: Outcome) {
    guard outcome.errno == nil else { return }
    func u32(_ offset: Int) -> UInt32? {
      guard offset + 4 <= outcome.argument.count else { return nil }
      return outcome.argument[offset..<(offset + 4)].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
    }
    func u64(_ offset: Int) -> UInt64? {
      guard let low = u32(offset), let high = u32(offset + 4) else { return nil }
      return UInt64(high) << 32 | UInt64(low)
    }
    switch call.creates {
    case .nothing: break
    case .ioas(let at): if let id = u32(at) { spaces.append(id) }
    case .hwpt(let at, let nested):
      guard let id = u32(at) else { break }
      if nested {
        nestedTables.append(id)
      } else {
        pageTables.append(id)
        let flags = field(call, 4), space = field(call, 12)
        if flags & 1 != 0 { nestParents.append(id) }
        if flags & 2 != 0 { dirtyTables.append(id) }
        if spaces.contains(space) { tableSpaces[id] = space }
      }
    case .mockDevice:
      if let stdev = u32(16), let hwpt = u32(20), let device = u32(24) {
        selfTestObjects.append(stdev)
        pageTables.append(hwpt)
        devices.append(device)
        let space = field(call, 8)
        if spaces.contains(space) { tableSpaces[hwpt] = space }
      }
    case .mapping(let ioas, let length, let at): if let iova = u64(at) { mappings.append((ioas, iova, length)) }
    case .fault(let at): if let id = u32(at) { faults.append(id) }
    case .viommu(let at): if let id = u32(at) { viommus.append(id) }
    case .pasid(let stdev, let pasid): attachedPASIDs.append((stdev, pasid))
    case .access(let ioas): accessSpaces.append(ioas)
    case .dmabuf: dmabufCount += 1
    case .stream(let at): if let fd = u32(at), fd & 0x8000_0000 == 0 { streamCount += 1 }
    case .device(let at): if let id = u32(at) { devices.append(id) }
    }
    if call.request == 0x3B8B && field(call, 4) & 1 != 0 { trackingTables.append(field(call, 8)) }  // SET_DIRTY_TRACKING on
    if case .mapping(let ioas, _, let at) = call.creates, call.request == 0x3B85, let iova = u64(at), let argument = call.argument,
      argument.count >= 24
    {
      mappingUsers["\(ioas):\(iova)"] = argument[16..<24].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
  }

  /// The u32 at `offset` of `call`'s argument (0 past its end).
  func field(_ call: Call, _ offset: Int) -> UInt32 {
    guard let argument = call.argument, offset + 4 <= argument.count else { return 0 }
    return argument[offset..<(offset + 4)].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
  }

  /// One of `preferred` most of the time when there are any, else ``id(_:)`` of `known`.
  mutating func id(preferring preferred: [UInt32], else known: [UInt32]) -> UInt32 {
    if !preferred.isEmpty && random.chance(70) { return random.pick(preferred) }
    return id(known)
  }

  /// Where a harvest (`GET_DIRTY_BITMAP`) may start. On 7.2 never in the last entry of a
  /// run of contiguous entries of the mock's page table: `record_dirty` then records 0
  /// bytes, and `iova_bitmap_set` of 0 bytes at the start of the bitmap it has mapped never
  /// returns (Docs/Simulator.md). Runs have a power-of-two count of entries, aligned, so
  /// their last entry has an odd index: with bit 11 (index among 2 KiB entries) and bit 20
  /// (among 1 MiB entries) clear, a start is never in one. Runs of 512 MiB entries would
  /// need a GiB of contiguous memory, which the fuzzer never maps.
  func harvestStart(_ iova: UInt64) -> UInt64 {
    release >= .linux7_2 ? iova & ~(1 << 11 | 1 << 20) : iova
  }

  /// A mapped range of the IOAS behind paging HWPT `hwpt` when there is one, else
  /// ``mappedRange()``.
  mutating func mappedRange(under hwpt: UInt32) -> (ioas: UInt32, iova: UInt64, length: UInt64)? {
    if let space = tableSpaces[hwpt], random.chance(80) {
      let candidates = mappings.filter { $0.ioas == space }
      if !candidates.isEmpty { return random.pick(candidates) }
    }
    return mappedRange()
  }

  /// An id: mostly one of `known` (objects that exist, or existed), else a hostile one.
  mutating func id(_ known: [UInt32]) -> UInt32 {
    if !known.isEmpty && random.chance(75) { return random.pick(known) }
    return random.chance(70) ? UInt32(1 + random.below(8)) : random.pick([0, 99, UInt32.max])
  }
  mutating func id() -> UInt32 { id(spaces + pageTables + devices) }
  mutating func ioasID() -> UInt32 { id(spaces) }
  mutating func pageTableID() -> UInt32 { id(random.chance(70) ? pageTables : spaces) }
  mutating func deviceID() -> UInt32 { id(devices) }
  /// A mapped IOVA range (or a piece of one), else a random one.
  mutating func mappedRange() -> (ioas: UInt32, iova: UInt64, length: UInt64)? {
    guard !mappings.isEmpty, random.chance(70) else { return nil }
    var mapping = random.pick(mappings)
    if random.chance(30) && mapping.length > 0x1000 {
      let pages = mapping.length / 0x1000
      let skip = UInt64(random.below(Int(min(pages, 16))))
      mapping.iova &+= skip * 0x1000
      mapping.length = max(0x1000, (pages - skip) * 0x1000 / UInt64(1 + random.below(2)))
    }
    return mapping
  }
  mutating func iova() -> UInt64 {
    switch random.below(10) {
    case 0: return 0
    case 1: return random.pick([UInt64.max, UInt64.max - 0xfff, 1 << 63])
    case 2: return 0x100_0000 + UInt64(random.below(64)) * 0x800
    default: return 0x100_0000 + UInt64(random.below(32)) * 0x1000
    }
  }
  mutating func length() -> UInt64 {
    switch random.below(10) {
    case 0: return 0
    case 1: return random.pick([UInt64.max, 1 << 63, 0x801, 1])
    case 2: return 0x800 * UInt64(1 + random.below(8))
    default: return 0x1000 * UInt64(1 + random.below(6))
    }
  }
  mutating func userAddress() -> UInt64 {
    switch random.below(12) {
    case 0: return arena.page(random.pick([Arena.readOnly, Arena.none, Arena.hole]))
    case 1: return random.pick([0, 0xffff_ffff_ffff_f000, 0x2000])
    case 2: return arena.page(random.below(20)) + UInt64(random.below(4096))
    case 3: return arena.page(random.below(20)) + 0x800
    default: return arena.page(random.below(20))
    }
  }
  mutating func mapFlags() -> UInt32 {
    var flags = UInt32(random.below(8)) & 0x7
    if random.chance(5) { flags |= 1 << UInt32(3 + random.below(20)) }
    return flags
  }
  /// The argument's size field: right, short, or long with a zero or non-zero tail.
  mutating func sized(_ bytes: [UInt8], minimum: Int) -> [UInt8] {
    var bytes = bytes
    switch random.below(40) {
    case 0: bytes.replaceSubrange(0..<4, with: le(UInt32(max(0, minimum - 4))))
    case 1:
      bytes.replaceSubrange(0..<4, with: le(UInt32(bytes.count + 8)))
      bytes += [UInt8](repeating: 0, count: 8)
    case 2:
      bytes.replaceSubrange(0..<4, with: le(UInt32(bytes.count + 8)))
      bytes += [0, 0, 0, 1, 0, 0, 0, 0]
    default: break
    }
    return bytes
  }

  mutating func make() -> Call {
    var call = makeCall()
    // Now and then the argument is read-only: what a call does before its write-back
    // faults, and whether it writes back at all, show.
    if call.argument != nil, !call.badArgument, call.value == nil, call.region == nil, call.closes == nil, random.chance(4) {
      call.readOnlyArgument = true
      call.name += " (argument read-only)"
    }
    return call
  }

  mutating func makeCall() -> Call {
    // Build some state first: an IOAS, a mock device on it, a mapping.
    if spaces.isEmpty && random.chance(70) {
      return Call(name: "IOAS_ALLOC", request: 0x3B81, argument: le(UInt32(12), UInt32(0), UInt32(0)), creates: .ioas(at: 8))
    }
    if let ioas = spaces.first, devices.isEmpty && random.chance(40) && !(deviceMode && release >= .linux7_2) {
      if usesHugeArena && release < .linux7_2 {  // MOCK_DOMAIN_FLAGS with MOCK_FLAGS_DEVICE_HUGE_IOVA
        return Call(
          name: "TEST MOCK_DOMAIN_FLAGS pt \(ioas) flags 2", request: 0x3BA0,
          argument: le(UInt32(72), UInt32(12), ioas, UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(2)) + [UInt8](repeating: 0, count: 40),
          creates: .mockDevice)
      }
      return Call(name: "TEST MOCK_DOMAIN pt \(ioas)", request: 0x3BA0, argument: le(UInt32(72), UInt32(2), ioas, UInt32(0)) + [UInt8](repeating: 0, count: 56), creates: .mockDevice)
    }
    if usesHugeArena, let ioas = spaces.last, mappings.count < 2 && random.chance(40) {
      // Whole MiBs of the huge arena at IOVAs aligned to 1 MiB (leaves where the memory is
      // contiguous), one MiB and 64 KiB (a leaf and small pages after it), or 32 KiB.
      let first = random.below(3)
      let length: UInt64 = random.pick([1 << 20, 2 << 20, (1 << 20) + 0x10000, 0x8000])
      let user = hugeArena.at(mebibytes: first) + (random.chance(10) ? 0x8000 : 0)
      let iova: UInt64 = 0x1000_0000 + UInt64(random.below(6)) << 20
      return Call(
        name: "MAP flags 7 ioas \(ioas) uva 0x\(String(user, radix: 16)) len 0x\(String(length, radix: 16)) iova 0x\(String(iova, radix: 16)) (huge arena)",
        request: 0x3B85, argument: le(UInt32(40), UInt32(7), ioas, UInt32(0), user, length, iova),
        creates: .mapping(ioas: ioas, length: length, at: 32))
    }
    if let ioas = spaces.last, mappings.count < 2 && random.chance(40) {
      let length = 0x1000 * UInt64(1 + random.below(4))
      let user = arena.page(random.below(20))
      let fixed = random.chance(50)
      let iova = 0x100_0000 + 0x10000 * UInt64(random.below(16))
      return Call(
        name: "MAP flags \(fixed ? 7 : 6) ioas \(ioas) uva 0x\(String(user, radix: 16)) len 0x\(String(length, radix: 16)) iova 0x\(String(fixed ? iova : 0, radix: 16))",
        request: 0x3B85, argument: le(UInt32(40), UInt32(fixed ? 7 : 6), ioas, UInt32(0), user, length, fixed ? iova : 0),
        creates: .mapping(ioas: ioas, length: length, at: 32))
    }
    // Deeper state now and then, so the calls that need it get past their checks: a
    // nesting parent and a dirty-tracking HWPT, tracking turned on, a nested HWPT and (7.2)
    // a vIOMMU.
    if let device = devices.first, let ioas = spaces.first, nestParents.isEmpty || dirtyTables.isEmpty, random.chance(30) {
      let flags = UInt32(random.pick([1, 2, 3]))
      return Call(
        name: "HWPT_ALLOC flags \(flags) dev \(device) pt \(ioas)", request: 0x3B89,
        argument: le(UInt32(48), flags, device, ioas, UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt64(0), UInt32(0), UInt32(0)),
        creates: .hwpt(at: 16, nested: false))
    }
    if let hwpt = dirtyTables.first, trackingTables.isEmpty, random.chance(30) {
      return Call(name: "SET_DIRTY_TRACKING hwpt \(hwpt) flags 1", request: 0x3B8B, argument: le(UInt32(16), UInt32(1), hwpt, UInt32(0)))
    }
    // With the huge arena mapped and tracking on: pages marked dirty somewhere in a
    // mapping, and harvests of stretches of it (from inside a leaf, ending inside one).
    if usesHugeArena, let hwpt = trackingTables.first, let mapped = mappedRange(under: hwpt), random.chance(35) {
      if random.chance(50) {
        let iova = mapped.iova + 0x8000 * UInt64(random.below(Int(max(1, mapped.length / 0x8000))))
        var command = le(UInt32(72), UInt32(13), hwpt, UInt32(0), UInt32(0), UInt32(0), iova, UInt64(0x8000), UInt64(0x800), UInt64(0), UInt64(0))
        command += [UInt8](repeating: 0, count: 72 - command.count)
        return Call(
          name: "TEST DIRTY hwpt \(hwpt) iova 0x\(String(iova, radix: 16)) len 0x8000", request: 0x3BA0, argument: command,
          buffers: [(48, le(random.next() & random.next()))])
      }
      let skip = 0x1000 * UInt64(random.below(Int(max(1, min(mapped.length / 0x1000, 300)))))
      let length = min(mapped.length - skip, 0x1000 * UInt64(1 + random.below(768)))
      let start = harvestStart(mapped.iova + skip)
      let pageSize = random.pick([UInt64(0x800), 0x1000, 0x10_0000])
      let words = (length + (2 << 20)) / pageSize / 64 + 1  // and the bits 7.2 sets past the end
      return Call(
        name: "GET_DIRTY_BITMAP hwpt \(hwpt) iova 0x\(String(start, radix: 16)) len 0x\(String(length, radix: 16)) page 0x\(String(pageSize, radix: 16))",
        request: 0x3B8C, argument: le(UInt32(48), hwpt, UInt32(random.chance(80) ? 0 : 1), UInt32(0), start, length, pageSize, UInt64(0)),
        buffers: [(40, [UInt8](repeating: 0, count: Int(words) * 8))])
    }
    if let parent = nestParents.first, let device = devices.first, nestedTables.isEmpty, random.chance(25) {
      let iotlb = UInt32(random.below(3))
      return Call(
        name: "HWPT_ALLOC flags 0 dev \(device) pt \(parent) nested", request: 0x3B89,
        argument: le(UInt32(48), UInt32(0), device, parent, UInt32(0), UInt32(0), UInt32(0xdead), UInt32(4), UInt64(0), UInt32(0), UInt32(0)),
        buffers: [(32, le(iotlb))], creates: .hwpt(at: 16, nested: true))
    }
    if release >= .linux7_2, let parent = nestParents.first, let device = devices.first, viommus.isEmpty, random.chance(25) {
      return Call(
        name: "VIOMMU_ALLOC type 0xdeadbeef dev \(device) hwpt \(parent)", request: 0x3B90,
        argument: le(UInt32(40), UInt32(0), UInt32(0xdead_beef), device, parent, UInt32(0), UInt32(0), UInt32(0), UInt64(0)),
        creates: .viommu(at: 20))
    }
    // The compat IOAS, once it has a domain: the type1 calls then reach its driver.
    if let ioas = spaces.first, !devices.isEmpty, !compatChosen, random.chance(15) {
      compatChosen = true
      return Call(name: "VFIO_IOAS ioas \(ioas) op 1", request: 0x3B88, argument: le(UInt32(12), ioas, UInt16(1), UInt16(0)))
    }
    // Small page batches, so that a driver's refusal can come before the pin's EFAULT.
    if compatChosen, !limitChosen, random.chance(15) {
      limitChosen = true
      let limit = UInt32(random.pick([12, 24, 36, 60]))
      var command = le(UInt32(72), UInt32(9), UInt32(0), UInt32(0), limit)
      command += [UInt8](repeating: 0, count: 72 - command.count)
      return Call(name: "TEST SET_TEMP_MEMORY_LIMIT \(limit)", request: 0x3BA0, argument: command)
    }
    if deviceMode && (random.chance(35) || (devices.isEmpty && random.chance(50))) { return deviceCall(bind: devices.isEmpty) }
    if mediatedMode && streamCount > 0 && random.chance(15) { return streamCall() }
    if mediatedMode && (random.chance(40) || (devices.isEmpty && random.chance(50))) { return mediatedCall(bind: devices.isEmpty) }
    if accessCount > 0 && random.chance(12) { return accessCall() }
    if dmabufCount > 0 && random.chance(8) { return dmabufCall() }
    switch random.below(100) {
    case 0..<8:
      return Call(name: "IOAS_ALLOC", request: 0x3B81, argument: sized(le(UInt32(12), random.chance(95) ? UInt32(0) : 1, UInt32(0)), minimum: 12), creates: .ioas(at: 8))
    case 8..<14:
      let target = id()
      return Call(name: "DESTROY \(target)", request: 0x3B80, argument: sized(le(UInt32(8), target), minimum: 8))
    case 14..<30:
      var (flags, ioas, user, length, iova) = (mapFlags(), ioasID(), userAddress(), length(), iova())
      if random.chance(60) { flags = (flags & 1) | 6 }  // mostly a readable and writable mapping
      if random.chance(50) && length > 0x4000 { length = 0x1000 * UInt64(1 + random.below(4)) }
      return Call(
        name: "MAP flags \(flags) ioas \(ioas) uva 0x\(String(user, radix: 16)) len 0x\(String(length, radix: 16)) iova 0x\(String(iova, radix: 16))",
        request: 0x3B85, argument: sized(le(UInt32(40), flags, ioas, UInt32(random.chance(97) ? 0 : 1), user, length, iova), minimum: 40),
        creates: .mapping(ioas: ioas, length: length, at: 32))
    case 30..<40:
      var (ioas, iova, length) = (ioasID(), iova(), length())
      if let mapped = mappedRange() { (ioas, iova, length) = mapped }
      let all = random.chance(15)
      return Call(
        name: "UNMAP ioas \(ioas) " + (all ? "all" : "iova 0x\(String(iova, radix: 16)) len 0x\(String(length, radix: 16))"),
        request: 0x3B86, argument: sized(le(UInt32(24), ioas, all ? UInt64(0) : iova, all ? UInt64.max : length), minimum: 24))
    case 40..<47:
      var (flags, destination, source, length, destinationIOVA, sourceIOVA) = (mapFlags(), ioasID(), ioasID(), length(), iova(), iova())
      if random.chance(60) { flags = (flags & 1) | 6 }
      if let mapped = mappedRange() { (source, sourceIOVA, length) = mapped }
      if random.chance(50) { flags |= random.chance(5) ? 1 << 16 : 0 }
      return Call(
        name: "COPY flags \(flags) dst \(destination) src \(source) len 0x\(String(length, radix: 16)) dst_iova 0x\(String(destinationIOVA, radix: 16)) src_iova 0x\(String(sourceIOVA, radix: 16))",
        request: 0x3B83, argument: sized(le(UInt32(40), flags, destination, source, length, destinationIOVA, sourceIOVA), minimum: 40),
        creates: .mapping(ioas: destination, length: length, at: 24))
    case 47..<52:
      let count = random.below(3)
      var ranges: [UInt8] = []
      for _ in 0..<count {
        let start = iova()
        ranges += le(start, random.chance(80) ? start &+ 0xfffff : start &- 1)
      }
      let ioas = ioasID()
      return Call(
        name: "ALLOW_IOVAS ioas \(ioas) \(count) ranges", request: 0x3B82,
        argument: sized(le(UInt32(24), ioas, UInt32(count), UInt32(0), UInt64(0)), minimum: 24), buffers: count == 0 ? [] : [(16, ranges)])
    case 52..<58:
      let ioas = ioasID()
      let capacity = random.below(4)
      return Call(
        name: "IOVA_RANGES ioas \(ioas) capacity \(capacity)", request: 0x3B84,
        argument: sized(le(UInt32(32), ioas, UInt32(capacity), UInt32(0), UInt64(0), UInt64(0)), minimum: 32),
        buffers: [(16, [UInt8](repeating: 0xEE, count: capacity * 16))])
    case 58..<62:
      let option = UInt32(random.below(3))
      let op = UInt16(random.below(3))
      let object = random.chance(50) ? UInt32(0) : ioasID()
      let value = UInt64(random.below(3))
      return Call(
        name: "OPTION \(option) op \(op) object \(object) value \(value)", request: 0x3B87,
        argument: sized(le(UInt32(24), option, op, UInt16(random.chance(95) ? 0 : 1), object, value), minimum: 24))
    case 62..<65:
      let ioas = ioasID()
      let op = UInt16(random.below(4))
      return Call(name: "VFIO_IOAS ioas \(ioas) op \(op)", request: 0x3B88, argument: sized(le(UInt32(12), ioas, op, UInt16(0)), minimum: 12))
    case 65..<71:
      let nested = random.chance(30)
      let flags = nested ? UInt32(random.chance(90) ? 0 : random.below(4)) : UInt32(random.below(4)) | (random.chance(5) ? 1 << 5 : 0)
      let device = deviceID()
      let pt = nested ? id(preferring: nestParents, else: pageTables) : ioasID()
      // On an IOAS, sometimes the mock's own driver data (7.2: the IOTLB value and a page
      // table type, 0 default, 1 huge, 2 unknown), in lengths around its 8 bytes.
      var data = nested ? le(UInt32(random.below(3))) : []
      if !nested && random.chance(30) {
        data = le(UInt32(0xbadbeef), UInt32(random.pick([0, 1, 1, 2])), UInt32(random.chance(80) ? 0 : 1))
        data = Array(data.prefix(random.pick([2, 4, 8, 8, 8, 12])))
      }
      let label = data.isEmpty || nested ? "" : " data \(data.count) type \(data.count >= 8 ? data[4] : 0)"
      return Call(
        name: "HWPT_ALLOC flags \(flags) dev \(device) pt \(pt)" + (nested ? " nested" : "") + label, request: 0x3B89,
        argument: sized(le(UInt32(48), flags, device, pt, UInt32(0), UInt32(0), data.isEmpty ? 0 : UInt32(0xdead), UInt32(data.count), UInt64(0), UInt32(0), UInt32(0)), minimum: 24),
        buffers: data.isEmpty ? [] : [(32, data)], creates: .hwpt(at: 16, nested: nested))
    case 71..<74:
      let device = deviceID()
      let capacity = random.pick([0, 4, 8, 64])
      return Call(
        name: "GET_HW_INFO dev \(device) data_len \(capacity)", request: 0x3B8A,
        argument: sized(le(UInt32(40), UInt32(0), device, UInt32(capacity), UInt64(0), UInt32(0), UInt32(0), UInt64(0)), minimum: 32),
        buffers: capacity == 0 ? [] : [(16, [UInt8](repeating: 0xEE, count: capacity))])
    case 74..<77:
      let hwpt = id(preferring: dirtyTables, else: pageTables)
      let flags = UInt32(random.chance(80) ? 1 : random.below(3))
      return Call(name: "SET_DIRTY_TRACKING hwpt \(hwpt) flags \(flags)", request: 0x3B8B, argument: sized(le(UInt32(16), flags, hwpt, UInt32(0)), minimum: 16))
    case 77..<80:
      var (hwpt, iova, length) = (id(preferring: trackingTables, else: pageTables), iova(), 0x1000 * UInt64(random.below(16)))
      if let mapped = mappedRange(under: hwpt) { (iova, length) = (mapped.iova, min(mapped.length, usesHugeArena ? 0x30_0000 : 0x10000)) }
      iova = harvestStart(iova)
      let pageSize = random.pick([UInt64(0x800), 0x1000, 0x1001, 0x3000, 0])
      // The kernel sets one bit per the page size's lowest set bit (0x1001: per byte): the
      // buffer holds every bit it may set, or the kernel writes past it.
      let granule = pageSize == 0 ? 1 : UInt64(1) << UInt64(pageSize.trailingZeroBitCount)
      // 7.2 sets the bits of a 1 MiB record that runs past the range's end too.
      let words = (length + (usesHugeArena ? 2 << 20 : 0)) / granule / 64 + 1
      return Call(
        name: "GET_DIRTY_BITMAP hwpt \(hwpt) iova 0x\(String(iova, radix: 16)) len 0x\(String(length, radix: 16)) page 0x\(String(pageSize, radix: 16))",
        request: 0x3B8C, argument: sized(le(UInt32(48), hwpt, UInt32(random.chance(80) ? 0 : 1), UInt32(0), iova, length, pageSize, UInt64(0)), minimum: 48),
        buffers: [(40, [UInt8](repeating: 0, count: Int(words) * 8))])
    case 80..<83:
      let hwpt = id(nestedTables)
      let count = random.below(3)
      let entryLength = random.pick([UInt32(8), 0, 4, 16])
      var entries: [UInt8] = []
      for _ in 0..<count { entries += le(UInt32(random.below(2)), UInt32(random.below(5))) + [UInt8](repeating: 0, count: max(0, Int(entryLength) - 8)) }
      return Call(
        name: "HWPT_INVALIDATE hwpt \(hwpt) type \(0xdeadbeef as UInt32) len \(entryLength) count \(count)", request: 0x3B8D,
        argument: sized(le(UInt32(32), hwpt, UInt64(0), UInt32(0xdead_beef), entryLength, UInt32(count), UInt32(0)), minimum: 32),
        buffers: entries.isEmpty ? [] : [(8, Array(entries.prefix(count * Int(entryLength))))])
    case 83..<94:
      return testCall()
    case 94..<96:
      return newerCall()
    case 96..<99:
      return compatCall()
    default:
      return random.chance(50) ? malformed() : faultQueue()
    }
  }

  /// The VFIO type1 container ioctls on `/dev/iommu` (on the IOAS set with VFIO_IOAS).
  mutating func compatCall() -> Call {
    switch random.below(6) {
    case 0: return Call(name: "VFIO_GET_API_VERSION", request: 0x3B64, argument: nil)
    case 1:
      let value = UInt(random.pick([1, 2, 3, 4, 5, 8, 9, 10]))
      return Call(name: "VFIO_CHECK_EXTENSION \(value)", request: 0x3B65, argument: [], value: value)
    case 2:
      let value = UInt(random.pick([1, 3, 0, 8]))
      return Call(name: "VFIO_SET_IOMMU \(value)", request: 0x3B66, argument: [], value: value)
    case 3:
      var (user, iova, length) = (userAddress(), iova(), length())
      if random.chance(50) { (user, length) = (arena.page(random.below(20)), 0x1000 * UInt64(1 + random.below(4))) }
      var flags = UInt32(random.chance(90) ? 3 : random.below(8))
      if random.chance(30) {
        // No permission, up to or past the page the pin cannot pass: a driver that refuses
        // such a map refuses it at its first batch, whose size SET_TEMP_MEMORY_LIMIT sets.
        let first = random.below(Arena.none + 1)
        (user, length, flags) = (arena.page(first), 0x1000 * UInt64(Arena.none + 1 - first + random.below(3)), 0)
      }
      return Call(
        name: "VFIO_IOMMU_MAP_DMA flags \(flags) vaddr 0x\(String(user, radix: 16)) iova 0x\(String(iova, radix: 16)) size 0x\(String(length, radix: 16))",
        request: 0x3B71, argument: le(UInt32(random.chance(95) ? 32 : 16), flags, user, iova, length))
    case 4:
      var (iova, length) = (iova(), length())
      if let mapped = mappedRange() { (iova, length) = (mapped.iova, mapped.length) }
      let all = random.chance(15)
      return Call(
        name: "VFIO_IOMMU_UNMAP_DMA " + (all ? "all" : "iova 0x\(String(iova, radix: 16)) size 0x\(String(length, radix: 16))"),
        request: 0x3B72, argument: le(UInt32(24), UInt32(all ? 2 : 0), all ? UInt64(0) : iova, all ? UInt64(0) : length))
    default:
      let argsz = UInt32(random.pick([8, 16, 24, 40, 72, 104, 200]))
      return Call(
        name: "VFIO_IOMMU_GET_INFO argsz \(argsz)", request: 0x3B70,
        argument: le(argsz, UInt32(0), UInt64(0)) + [UInt8](repeating: 0xEE, count: max(0, Int(argsz) - 16)))
    }
  }

  /// `IOMMU_FAULT_QUEUE_ALLOC`, or an HWPT naming a fault queue.
  mutating func faultQueue() -> Call {
    if !faults.isEmpty && random.chance(50) {
      let (device, pt, fault) = (deviceID(), id(random.chance(60) ? pageTables : spaces), id(faults))
      let nested = random.chance(60)
      let data = nested ? le(UInt32(0)) : []
      return Call(
        name: "HWPT_ALLOC flags 4 dev \(device) pt \(pt) fault \(fault)" + (nested ? " nested" : ""), request: 0x3B89,
        argument: le(UInt32(48), UInt32(4), device, pt, UInt32(0), UInt32(0), nested ? UInt32(0xdead) : 0, UInt32(data.count), UInt64(0), fault, UInt32(0)),
        buffers: data.isEmpty ? [] : [(32, data)], creates: .hwpt(at: 16, nested: nested))
    }
    return Call(
      name: "FAULT_QUEUE_ALLOC", request: 0x3B8E, argument: sized(le(UInt32(16), UInt32(random.chance(95) ? 0 : 1), UInt32(0), UInt32(0)), minimum: 16),
      ignored: [12..<16], creates: .fault(at: 8), descriptorField: 12)
  }

  /// 7.2's self-test dma-buf exporter: GET, REVOKE, MAP_FILE of a dma-buf, close.
  mutating func dmabufCall() -> Call {
    let slot = dmabufCount > 0 && random.chance(90) ? random.below(dmabufCount) : nil
    let name = slot.map { "dmabuf #\($0)" } ?? "fd 9999"
    let fd = slot == nil ? Int32(9999) : -1
    switch dmabufCount == 0 && random.chance(80) ? 0 : random.below(8) {
    case 0, 1:
      let length: UInt32 = random.pick([0, 4096, 4097, 16384, 0x8000, 4096 * 512 + 1])
      return Call(
        name: "TEST DMABUF_GET len 0x\(String(length, radix: 16))", request: 0x3BA0,
        argument: le(UInt32(72), UInt32(22), UInt32(0), UInt32(0), length, UInt32(O_CLOEXEC)) + [UInt8](repeating: 0, count: 48),
        creates: .dmabuf, resultIsDescriptor: true)
    case 2:
      let revoked = UInt32(random.below(2))
      return Call(
        name: "TEST DMABUF_REVOKE \(name) revoked \(revoked)", request: 0x3BA0,
        argument: le(UInt32(72), UInt32(23), UInt32(0), UInt32(0), fd, revoked) + [UInt8](repeating: 0, count: 48),
        dmabufSlot: slot.map { ($0, 16) })
    case 3, 4, 5, 6:
      let (flags, ioas) = (mapFlags() | (random.chance(70) ? 6 : 0), ioasID())
      let start = random.pick([UInt64(0), 0x1000, 0x2000, 0x800, 0x4000])
      let length = random.chance(10) ? length() : 0x1000 * UInt64(1 + random.below(4))
      let iova = random.chance(50) ? iova() : 0x100_0000 + 0x10000 * UInt64(random.below(16))
      return Call(
        name: "MAP_FILE flags \(flags) ioas \(ioas) \(name) start 0x\(String(start, radix: 16)) len 0x\(String(length, radix: 16)) iova 0x\(String(iova, radix: 16))",
        request: 0x3B8F, argument: sized(le(UInt32(40), flags, ioas, fd, start, length, iova), minimum: 40),
        creates: .mapping(ioas: ioas, length: length, at: 32), dmabufSlot: slot.map { ($0, 12) })
    default:
      guard let slot else { return Call(name: "TEST DMABUF_REVOKE fd 9999 revoked 1", request: 0x3BA0, argument: le(UInt32(72), UInt32(23), UInt32(0), UInt32(0), Int32(9999), UInt32(1)) + [UInt8](repeating: 0, count: 48)) }
      return Call(name: "close dmabuf #\(slot)", request: 0, argument: nil, closes: (.dmabuf, slot))
    }
  }

  /// Requests after 6.12 (7.2): MAP_FILE, vIOMMU, vDEVICE, vEVENTQ, the dma-buf exporter.
  mutating func newerCall() -> Call {
    if release == .linux7_2 && random.chance(30) { return dmabufCall() }
    switch random.below(4) {
    case 0:
      let (flags, ioas, length, iova) = (mapFlags() | (random.chance(60) ? 6 : 0), ioasID(), 0x1000 * UInt64(1 + random.below(4)), iova())
      let file = random.pick(files)
      let start = random.chance(80) ? 0x1000 * UInt64(random.below(16)) : UInt64(random.below(0x2000))
      return Call(
        name: "MAP_FILE flags \(flags) ioas \(ioas) file \(file == files[0] ? "64K" : "8K") start 0x\(String(start, radix: 16)) len 0x\(String(length, radix: 16)) iova 0x\(String(iova, radix: 16))",
        request: 0x3B8F, argument: sized(le(UInt32(40), flags, ioas, file, start, length, iova), minimum: 40),
        creates: .mapping(ioas: ioas, length: length, at: 32))
    case 1:
      let (device, hwpt) = (deviceID(), id(preferring: nestParents, else: pageTables))
      let type = random.chance(85) ? UInt32(0xdead_beef) : UInt32(random.below(3))
      return Call(
        name: "VIOMMU_ALLOC type 0x\(String(type, radix: 16)) dev \(device) hwpt \(hwpt)", request: 0x3B90,
        argument: sized(le(UInt32(40), UInt32(0), type, device, hwpt, UInt32(0), UInt32(0), UInt32(0), UInt64(0)), minimum: 24),
        creates: .viommu(at: 20))
    case 2:
      let (viommu, device) = (id(viommus), deviceID())
      let virtualID = UInt64(random.below(4))
      return Call(
        name: "VDEVICE_ALLOC viommu \(viommu) dev \(device) virt \(virtualID)", request: 0x3B91,
        argument: sized(le(UInt32(24), viommu, device, UInt32(0), virtualID), minimum: 24))
    default:
      let viommu = id(viommus)
      let type = random.chance(85) ? UInt32(0xbeef_beef) : UInt32(random.below(3))
      let depth = UInt32(random.pick([0, 1, 2, 64]))
      return Call(
        name: "VEVENTQ_ALLOC viommu \(viommu) type 0x\(String(type, radix: 16)) depth \(depth)", request: 0x3B93,
        argument: sized(le(UInt32(32), UInt32(0), viommu, type, depth, UInt32(0), UInt32(0), UInt32(0)), minimum: 32),
        ignored: [24..<28], descriptorField: 24)
    }
  }

  /// An `IOMMU_TEST_CMD`.
  mutating func testCall() -> Call {
    if random.chance(25) { return accessCall() }
    var op = random.below(11)
    // Linux 7.2 in the lab's VT-d boot hangs when a VT-d device attached to an IOAS that
    // also has a mock domain is attached there again (Docs/Simulator.md): no mock devices
    // next to the real one.
    if deviceMode && release >= .linux7_2 && (1...4).contains(op) { op = 0 }
    let target: UInt32
    switch op {
    case 0: target = ioasID()
    case 1, 2, 3: target = id(random.chance(60) ? spaces : pageTables + nestedTables)
    case 4: target = id(selfTestObjects)
    case 5: target = id(pageTables)
    case 7: target = id(preferring: trackingTables, else: pageTables)
    case 8: target = id(nestedTables)
    case 9: target = id(selfTestObjects)
    default: target = id()
    }
    func command(_ op: UInt32, _ payload: [UInt8]) -> [UInt8] {
      var bytes = le(UInt32(72), op, target, UInt32(0)) + payload
      bytes += [UInt8](repeating: 0, count: 72 - bytes.count)
      return bytes
    }
    switch op {
    case 0:
      let (start, length) = (iova(), length())
      return Call(name: "TEST ADD_RESERVED ioas \(target) 0x\(String(start, radix: 16))+0x\(String(length, radix: 16))", request: 0x3BA0, argument: command(1, le(start, length)))
    case 1, 2:
      return Call(name: "TEST MOCK_DOMAIN pt \(target)", request: 0x3BA0, argument: command(2, []), creates: .mockDevice)
    case 3:
      let flags = UInt32(random.below(8))
      return Call(name: "TEST MOCK_DOMAIN_FLAGS pt \(target) flags \(flags)", request: 0x3BA0, argument: command(12, le(UInt32(0), UInt32(0), UInt32(0), flags)), creates: .mockDevice)
    case 4:
      let pt = id(random.chance(50) ? spaces : pageTables + nestedTables)
      return Call(name: "TEST MOCK_DOMAIN_REPLACE stdev \(target) pt \(pt)", request: 0x3BA0, argument: command(10, le(pt)))
    case 5:
      var (iova, length, user) = (iova(), 0x800 * UInt64(random.below(6)), userAddress())
      if let mapped = mappedRange(), random.chance(50) { (iova, length) = (mapped.iova, min(mapped.length, 0x2000)) }
      return Call(
        name: "TEST MD_CHECK_MAP hwpt \(target) iova 0x\(String(iova, radix: 16)) len 0x\(String(length, radix: 16)) uva 0x\(String(user, radix: 16))",
        request: 0x3BA0, argument: command(3, le(iova, length, user)))
    case 6:
      let (length, user, refs) = (0x1000 * UInt64(random.below(4)), userAddress(), UInt32(random.below(3)))
      return Call(name: "TEST MD_CHECK_REFS uva 0x\(String(user, radix: 16)) len 0x\(String(length, radix: 16)) refs \(refs)", request: 0x3BA0, argument: command(4, le(length, user, refs)))
    case 7:
      var (iova, length) = (iova(), 0x1000 * UInt64(random.below(8)))
      if let mapped = mappedRange(under: target) { (iova, length) = (mapped.iova, min(mapped.length, 0x8000)) }
      let bits = le(random.next())
      return Call(
        name: "TEST DIRTY hwpt \(target) iova 0x\(String(iova, radix: 16)) len 0x\(String(length, radix: 16))", request: 0x3BA0,
        argument: command(13, le(UInt32(0), UInt32(0), iova, length, UInt64(0x800), UInt64(0), UInt64(0))), buffers: [(48, bits)])
    case 9:
      // 7.2's PASID ops: attach, replace, detach, check (18-21).
      // Known gaps of the simulator (Docs/Simulator.md), left out here: REPLACE and DETACH
      // of PASID 0 (the RID's path), and REPLACE of a PASID that has no domain.
      var op = UInt32(18 + random.below(4))
      var stdev = target
      var pasid = random.pick([UInt32(0), 1, 100, 1024, 1 << 20])
      if op == 19 {
        if let attached = attachedPASIDs.isEmpty ? nil : random.pick(attachedPASIDs) { (stdev, pasid) = attached } else { op = 18 }
      }
      if op == 20 && pasid == 0 { pasid = 100 }
      let pt = id(random.chance(20) ? spaces : pageTables + nestedTables)
      return Call(
        name: "TEST PASID op \(op) stdev \(stdev) pasid \(pasid) pt \(pt)", request: 0x3BA0,
        argument: le(UInt32(72), op, stdev, UInt32(0), pasid, pt) + [UInt8](repeating: 0, count: 48),
        creates: op == 18 && pasid != 0 ? .pasid(stdev: stdev, pasid: pasid) : .nothing)
    case 10:
      // Kernel-wide; every sequence starts from the default (openIOMMU(_:)).
      let limit = UInt32(random.pick([0, 11, 12, 23, 24, 36, 60, 120, 4096, 65536, 0x7fff_ffff]))
      return Call(name: "TEST SET_TEMP_MEMORY_LIMIT \(limit)", request: 0x3BA0, argument: command(9, le(limit)))
    default:
      let (slot, value) = (UInt32(random.below(5)), UInt32(random.below(3)))
      return Call(name: "TEST MD_CHECK_IOTLB hwpt \(target) slot \(slot) value \(value)", request: 0x3BA0, argument: command(14, le(slot, value)))
    }
  }

  /// The self-test's access ops: CREATE_ACCESS, ACCESS_PAGES, DESTROY_ACCESS_PAGES,
  /// ACCESS_RW, ACCESS_REPLACE_IOAS, and closing an access's descriptor.
  mutating func accessCall() -> Call {
    /// An access number, now and then one that does not exist (its id stays: 0 or 99).
    func slot() -> (Int?, UInt32) {
      if accessCount > 0 && random.chance(90) { return (random.below(accessCount), 0) }
      return (nil, random.pick([0, 99]))
    }
    func command(_ op: UInt32, _ id: UInt32, _ payload: [UInt8]) -> [UInt8] {
      var bytes = le(UInt32(72), op, id, UInt32(0)) + payload
      bytes += [UInt8](repeating: 0, count: 72 - bytes.count)
      return bytes
    }
    /// A range to reach: mostly (part of) a mapping, with its user address when known.
    func range(in ioas: UInt32?) -> (iova: UInt64, length: UInt64, user: UInt64?) {
      let candidates = mappings.filter { ioas == nil || $0.ioas == ioas || random.chance(10) }
      guard !candidates.isEmpty, random.chance(80) else { return (iova(), length(), nil) }
      let mapping = random.pick(candidates)
      var (iova, length) = (mapping.iova, mapping.length)
      let user = mappingUsers["\(mapping.ioas):\(mapping.iova)"]
      var skip: UInt64 = 0
      if random.chance(40) && length > 0x1000 {
        skip = UInt64(random.below(Int(min(length / 0x1000, 8)))) * 0x1000
        length = max(0x1000, (length - skip) / UInt64(1 + random.below(2)))
        iova &+= skip
      }
      if random.chance(10) { length &+= 0x1000 }  // past the end
      return (iova, length, user.map { $0 &+ skip })
    }
    let (access, id) = slot()
    let name = access.map { "access #\($0)" } ?? "fd \(id)"
    let ioas = access.map { accessSpaces[$0] }
    switch accessCount == 0 && random.chance(85) ? 0 : random.below(12) {
    case 0, 1:
      let ioas = ioasID()
      let flags = random.chance(90) ? (random.chance(75) ? 1 : 0) : UInt32(random.pick([2, 3]))
      return Call(
        name: "TEST CREATE_ACCESS ioas \(ioas) flags \(flags)", request: 0x3BA0, argument: command(5, ioas, le(UInt32(0), flags)),
        ignored: [16..<20], creates: .access(ioas: ioas), descriptorField: 16)
    case 2, 3, 4, 5:
      var (iova, length, user) = range(in: ioas)
      if random.chance(5) { length = random.pick([(16 << 20) + 1, 16 << 20]) }
      var flags = UInt32(random.below(2))
      if random.chance(5) { flags = random.pick([2, 1 << 16, 1 << 16 | 1]) }
      var uptr: UInt64 = 0
      switch random.below(10) {
      case 0..<4: uptr = 0
      case 4..<8: uptr = user ?? userAddress()
      default: uptr = userAddress()
      }
      if flags & (1 << 16) != 0 { iova = UInt64(random.below(3)) | UInt64(random.below(3) * 0x1000) << 32 }
      return Call(
        name: "TEST ACCESS_PAGES \(name) flags 0x\(String(flags, radix: 16)) iova 0x\(String(iova, radix: 16)) len 0x\(String(length, radix: 16)) uptr 0x\(String(uptr, radix: 16))",
        request: 0x3BA0, argument: command(7, id, le(flags, UInt32(0), iova, length, uptr)), accessSlot: access)
    case 6:
      let item = UInt32(random.below(4))
      return Call(
        name: "TEST DESTROY_ACCESS_PAGES \(name) item \(item)", request: 0x3BA0, argument: command(6, id, le(item)), accessSlot: access)
    case 7, 8, 9:
      var (iova, length, _) = range(in: ioas)
      if random.chance(30) { (iova, length) = (iova &+ UInt64(random.below(0x1000)), UInt64(1 + random.below(64))) }
      if random.chance(3) { length = (16 << 20) + 1 }
      var flags = UInt32(random.below(2)) | (random.chance(40) ? 4 : 0)
      if random.chance(5) { flags |= random.pick([2, 1 << 16]) }
      if flags & (1 << 16) != 0 { iova = UInt64(random.below(3)) | UInt64(random.below(0x2000)) << 32 }
      // The user's buffer: as long as the access (so a read lands in it), or a bad address.
      let bad = random.chance(10) || length > 1 << 20
      var call = Call(
        name: "TEST ACCESS_RW \(name) flags 0x\(String(flags, radix: 16)) iova 0x\(String(iova, radix: 16)) len 0x\(String(length, radix: 16))\(bad ? " uptr bad" : "")",
        request: 0x3BA0, argument: command(8, id, le(iova, length, bad ? UInt64(0x2000) : 0, flags)), accessSlot: access)
      if !bad { call.buffers = [(32, (0..<Int(max(length, 1))).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) })] }
      return call
    case 10:
      let ioas = ioasID()
      return Call(
        name: "TEST ACCESS_REPLACE_IOAS \(name) ioas \(ioas)", request: 0x3BA0, argument: command(11, id, le(ioas)), accessSlot: access)
    default:
      guard let access else { return Call(name: "TEST DESTROY_ACCESS_PAGES fd \(id) item 0", request: 0x3BA0, argument: command(6, id, le(UInt32(0)))) }
      return Call(name: "close access #\(access)", request: 0, argument: nil, closes: (.access, access))
    }
  }

  /// A call the kernel must refuse: an unknown number, a NULL or bad argument.
  mutating func malformed() -> Call {
    switch random.below(3) {
    case 0:
      let number = 0x3B00 + UInt(random.pick([0x7F, 0x90 + random.below(0x10), 0xA1, 0xFF]))
      return Call(name: "unknown 0x\(String(number, radix: 16))", request: number, argument: le(UInt32(8), UInt32(0)))
    case 1:
      let number = UInt(0x3B80 + random.below(14))
      return Call(name: "NULL argument 0x\(String(number, radix: 16))", request: number, argument: nil)
    default:
      let number = UInt(0x3B80 + random.below(14))
      return Call(name: "bad argument 0x\(String(number, radix: 16))", request: number, argument: [], badArgument: true)
    }
  }
}

// MARK: Running calls

/// Runs `call` on `calls` with iommufd descriptor `fd`.
func run(_ call: Call, on calls: any SystemCalls, fd: FileDescriptor, files: inout SideFiles) -> Outcome {
  if let (kind, slot) = call.closes {
    var outcome = Outcome(errno: nil, result: 0, argument: [], buffers: [])
    do {
      try calls.close(FileDescriptor(rawValue: files.take(kind, slot)))
    } catch {
      outcome.errno = error.rawValue
    }
    return outcome
  }
  if let (slot, operation) = call.stream {
    return runStream(operation, FileDescriptor(rawValue: slot < files.streams.count ? files.streams[slot] : -1), calls: calls, files: &files, slot: slot)
  }
  if let region = call.region {
    var outcome = Outcome(errno: nil, result: 0, argument: [], buffers: [])
    let device = FileDescriptor(rawValue: files.device ?? -1)
    do throws(Errno) {
      if let bytes = region.write {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        outcome.result = Int32(try calls.pwrite(device, from: UnsafeRawBufferPointer(buffer), offset: region.offset))
      }
      if region.count > 0 {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: region.count, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        outcome.result = Int32(try calls.pread(device, into: buffer, offset: region.offset))
        outcome.argument = Array(buffer)
      }
    } catch {
      outcome.errno = error.rawValue
    }
    for (offset, mask) in call.maskedBits where offset < outcome.argument.count { outcome.argument[offset] &= ~mask }
    return outcome
  }
  var buffers: [UnsafeMutableRawBufferPointer] = call.buffers.map { buffer in
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(buffer.bytes.count, 1), alignment: 8)
    memory.copyBytes(from: buffer.bytes)
    return memory
  }
  defer { for buffer in buffers { buffer.deallocate() } }
  var argument = call.argument ?? []
  if let slot = call.accessSlot, slot < files.accesses.count, argument.count >= 12 {
    argument.replaceSubrange(8..<12, with: le(UInt32(bitPattern: files.accesses[slot])))
  }
  if let (slot, field) = call.dmabufSlot, slot < files.dmabufs.count, argument.count >= field + 4 {
    argument.replaceSubrange(field..<(field + 4), with: le(files.dmabufs[slot]))
  }
  if let field = call.iommufdField, argument.count >= field + 4 {
    argument.replaceSubrange(field..<(field + 4), with: le(fd.rawValue))
  }
  let target = call.onDevice ? FileDescriptor(rawValue: files.device ?? -1) : fd
  for (index, buffer) in call.buffers.enumerated() where buffer.field + 8 <= argument.count {
    argument.replaceSubrange(buffer.field..<(buffer.field + 8), with: le(UInt64(UInt(bitPattern: buffers[index].baseAddress))))
  }
  // The argument on the heap, or, read-only, in pages of its own.
  let memory: UnsafeMutableRawBufferPointer
  if call.readOnlyArgument {
    guard let page = mmap(nil, max(argument.count, 8), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), page != MAP_FAILED else {
      fail("cannot map a page for an argument")
    }
    memory = UnsafeMutableRawBufferPointer(start: page, count: max(argument.count, 8))
  } else {
    memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(argument.count, 8), alignment: 8)
  }
  defer { if call.readOnlyArgument { munmap(memory.baseAddress, memory.count) } else { memory.deallocate() } }
  memory.copyBytes(from: argument)
  if call.readOnlyArgument { mprotect(memory.baseAddress, memory.count, PROT_READ) }
  let pointer: UnsafeMutableRawPointer? =
    call.value.map { UnsafeMutableRawPointer(bitPattern: $0) } ?? (call.argument == nil ? nil : call.badArgument ? UnsafeMutableRawPointer(bitPattern: 0x2000) : memory.baseAddress)
  var outcome = Outcome(errno: nil, result: 0, argument: [], buffers: [])
  do {
    outcome.result = try calls.ioctl(target, call.request, pointer)
  } catch {
    outcome.errno = error.rawValue
  }
  var after = Array(memory.prefix(argument.count))
  if let field = call.descriptorField, outcome.errno == nil, field + 4 <= after.count {
    outcome.descriptor = after[field..<(field + 4)].enumerated().reduce(Int32(0)) { $0 | Int32($1.element) << (8 * Int32($1.offset)) }
  }
  // Pointers to this side's buffers differ by nature; so do descriptors.
  for buffer in call.buffers where buffer.field + 8 <= after.count { after.replaceSubrange(buffer.field..<(buffer.field + 8), with: [UInt8](repeating: 0, count: 8)) }
  for range in call.ignored where range.upperBound <= after.count { after.replaceSubrange(range, with: [UInt8](repeating: 0, count: range.count)) }
  // So does an access's descriptor in the command's id.
  if call.accessSlot != nil, after.count >= 12 { after.replaceSubrange(8..<12, with: [0, 0, 0, 0]) }
  if let (_, field) = call.dmabufSlot, after.count >= field + 4 { after.replaceSubrange(field..<(field + 4), with: [0, 0, 0, 0]) }
  if let field = call.iommufdField, after.count >= field + 4 { after.replaceSubrange(field..<(field + 4), with: [0, 0, 0, 0]) }
  for (offset, mask) in call.maskedBits where offset < after.count { after[offset] &= ~mask }
  if call.resultIsDescriptor, outcome.errno == nil {
    files.dmabufs.append(outcome.result)
    outcome.result = 0
  }
  outcome.argument = after
  outcome.buffers = buffers.indices.map { Array(buffers[$0].prefix(call.buffers[$0].bytes.count)) }
  buffers = []
  if outcome.errno == nil, let descriptor = outcome.descriptor {
    switch call.creates {
    case .access: files.accesses.append(descriptor)
    case .stream: if descriptor >= 0 { files.streams.append(descriptor) }
    default: files.others.append(descriptor)
    }
  }
  return outcome
}

/// The descriptors one side's calls returned: each closed when the sequence ends, an
/// access's before (-1 once a call closed it).
struct SideFiles {
  var others: [Int32] = []
  var accesses: [Int32] = []
  var dmabufs: [Int32] = []
  /// Migration data streams, by number (-1 once a call closed one).
  var streams: [Int32] = []
  /// The side's VFIO device descriptor (the device variant).
  var device: Int32?

  /// Descriptors a call can close by number.
  enum Kind { case access, dmabuf }

  /// Descriptor number `slot` of `kind` (-1 if there is none), forgotten (-1) from now on.
  mutating func take(_ kind: Kind, _ slot: Int) -> Int32 {
    switch kind {
    case .access:
      guard slot < accesses.count else { return -1 }
      defer { accesses[slot] = -1 }
      return accesses[slot]
    case .dmabuf:
      guard slot < dmabufs.count else { return -1 }
      defer { dmabufs[slot] = -1 }
      return dmabufs[slot]
    }
  }

  /// The mediated device this side created (the mdev variant), removed by ``closeAll(_:)``.
  var mediated: String?

  /// Opens the side's device, if the run has one: the cdev at `path`, or an instance of mdev
  /// type `mdevType` made for the sequence.
  mutating func openDevice(_ calls: any SystemCalls, _ path: String?, mdevType: String? = options.mdevType) {
    var path = path
    if let mdevType {
      let (name, cdev) = createMediated(calls, type: mdevType)
      mediated = name
      path = cdev
    }
    guard let path else { return }
    guard let fd = try? calls.open(FilePath(path), flags: O_RDWR | O_CLOEXEC) else { fail("cannot open \(path)") }
    device = fd.rawValue
  }

  func closeAll(_ calls: any SystemCalls) {
    if let device { try? calls.close(FileDescriptor(rawValue: device)) }
    for fd in accesses where fd >= 0 { try? calls.close(FileDescriptor(rawValue: fd)) }
    for fd in dmabufs where fd >= 0 { try? calls.close(FileDescriptor(rawValue: fd)) }
    for fd in streams where fd >= 0 { try? calls.close(FileDescriptor(rawValue: fd)) }
    for fd in others { try? calls.close(FileDescriptor(rawValue: fd)) }
    if let mediated { try? calls.writeFile(FilePath("/sys/bus/mdev/devices/\(mediated)/remove"), bytes: Array("1".utf8)) }
  }
}

/// The UUID of the variant's mediated device (the same on both sides).
let mediatedName = "83b8f4f2-509f-382f-3c1e-e6bfe0fa10f2"

/// Creates mediated device ``mediatedName`` of `type` on `calls` (removing a leftover of an
/// earlier run first); returns its name and cdev path.
func createMediated(_ calls: any SystemCalls, type: String) -> (String, String) {
  let create = FilePath("/sys/class/mdev_bus/mtty/mdev_supported_types/\(type)/create")
  do throws(Errno) {
    try calls.writeFile(create, bytes: Array(mediatedName.utf8))
  } catch .fileExists {
    try? calls.writeFile(FilePath("/sys/bus/mdev/devices/\(mediatedName)/remove"), bytes: Array("1".utf8))
    do throws(Errno) { try calls.writeFile(create, bytes: Array(mediatedName.utf8)) } catch { fail("cannot create mdev \(type) again: \(error)") }
  } catch {
    fail("cannot create mdev \(type): \(error)")
  }
  guard let cdev = (try? calls.directoryEntries(FilePath("/sys/bus/mdev/devices/\(mediatedName)/vfio-dev")))?.first else {
    fail("mdev \(mediatedName) has no vfio-dev node")
  }
  return (mediatedName, "/dev/vfio/devices/\(cdev)")
}

/// The two sides of the comparison.
struct Sides {
  let first: any SystemCalls
  let second: any SystemCalls
  let names: (String, String)
  /// Each side's device cdev (the device variant), or nil.
  var devices: (String?, String?) = (nil, nil)
}

/// A `SystemCalls` that answers one request differently: the planted divergence.
struct Planted: SystemCalls {
  let base: any SystemCalls
  func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor { try base.open(path, flags: flags) }
  func close(_ fd: FileDescriptor) throws(Errno) { try base.close(fd) }
  func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
    let result = try base.ioctl(fd, request, argument)
    if request == 0x3B84, let argument { argument.storeBytes(of: argument.load(fromByteOffset: 24, as: UInt64.self) &+ 1, toByteOffset: 24, as: UInt64.self) }
    return result
  }
  func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    try base.mmap(length: length, protection: protection, flags: flags, fd: fd, offset: offset)
  }
  func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) { try base.munmap(address, length: length) }
  func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int { try base.pread(fd, into: buffer, offset: offset) }
  func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int { try base.pwrite(fd, from: buffer, offset: offset) }
  func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int { try base.read(fd, into: buffer) }
  func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int { try base.write(fd, from: buffer) }
  func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor { try base.eventfd(initialValue: initialValue, flags: flags) }
  func directoryEntries(_ path: FilePath) throws(Errno) -> [String] { try base.directoryEntries(path) }
  func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8] { try base.readFile(path, maximumBytes: maximumBytes) }
  func readLink(_ path: FilePath) throws(Errno) -> String { try base.readLink(path) }
  func checkAccess(_ path: FilePath, mode: Int32) throws(Errno) { try base.checkAccess(path, mode: mode) }
  func writeFile(_ path: FilePath, bytes: [UInt8]) throws(Errno) { try base.writeFile(path, bytes: bytes) }
}

/// Runs `calls` on a fresh context of each side; returns the index of the first call
/// whose outcomes differ and both outcomes, or nil when they agree throughout.
/// How often each kind of call (its name's first word, or TEST and its op) succeeded and
/// failed on the first side: the fuzzer's reach, printed with `--stats`.
nonisolated(unsafe) var reach: [String: (ok: Int, failed: Int)] = [:]

func kind(_ call: Call) -> String {
  let words = call.name.split(separator: " ")
  return words.first == "TEST" && words.count > 1 ? "TEST " + words[1] : String(words.first ?? "")
}

func compare(_ calls: [Call], _ makeSides: () -> Sides) -> (index: Int, first: Outcome, second: Outcome)? {
  let sides = makeSides()
  guard let firstFD = openIOMMU(sides.first), let secondFD = openIOMMU(sides.second)
  else { fail("cannot open /dev/iommu on both sides") }
  defer {
    resetTemporaryMemoryLimit(sides.first, firstFD)
    try? sides.first.close(firstFD)
    try? sides.second.close(secondFD)
  }
  var firstFiles = SideFiles()
  var secondFiles = SideFiles()
  firstFiles.openDevice(sides.first, sides.devices.0)
  secondFiles.openDevice(sides.second, sides.devices.1)
  defer {
    firstFiles.closeAll(sides.first)
    secondFiles.closeAll(sides.second)
  }
  for (index, call) in calls.enumerated() {
    let first = run(call, on: sides.first, fd: firstFD, files: &firstFiles)
    let second = run(call, on: sides.second, fd: secondFD, files: &secondFiles)
    if first != second { return (index, first, second) }
  }
  return nil
}

/// The shortest sub-list of `calls` (dropping calls one at a time) that still diverges.
func minimise(_ calls: [Call], _ makeSides: () -> Sides) -> [Call] {
  var current = calls
  if let found = compare(current, makeSides) { current = Array(current.prefix(found.index + 1)) }
  var index = current.count - 2
  while index >= 0 {
    var shorter = current
    shorter.remove(at: index)
    if let found = compare(shorter, makeSides) { current = Array(shorter.prefix(found.index + 1)) }
    index = min(index - 1, current.count - 2)
  }
  return current
}

// MARK: Main

let options = Options(CommandLine.arguments)
var system = utsname()
uname(&system)
let version = withUnsafeBytes(of: system.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
let useKernel = !options.againstSimulator && access("/dev/iommu", F_OK) == 0
let release: SimulatedKernel.Release =
  useKernel ? (SimulatedKernel.Release(kernelVersion: version) ?? .linux6_12) : (options.release == "7.2" ? .linux7_2 : .linux6_12)
var configuration = SimulatedKernel.Configuration()
configuration.selfTest = true
configuration.release = release
// The device variant compares the lab's VT-d boot: a test kernel whose devices sit behind
// VT-d, where 6.12's mock IOMMU makes no devices (7.2's does).
if options.device != nil { configuration.mockDevices = release >= .linux7_2 }
let simulatorConfiguration = configuration
// The lab's VT-d machine: an edu on the root bus (vfio0), and a two-function edu behind a
// PCIe root port (vfio1 and vfio2). The simulated side opens the cdev of the same number as
// the kernel's, so --device /dev/vfio/devices/vfio1 fuzzes function 0 of the pair (hot
// reset info and hot reset then reach their scope, ownership and the reset itself).
let simulatedDeviceIndex: Int = {
  guard let device = options.device, let name = device.split(separator: "/").last, name.hasPrefix("vfio"),
    let index = Int(name.dropFirst(4)), (0...2).contains(index)
  else { return 0 }
  return index
}()
let makeSides: () -> Sides = {
  func machine() -> SimulatedKernel {
    guard options.device != nil else {
      return SimulatedKernel(configuration: simulatorConfiguration, mediatedParents: options.mdevType == nil ? [] : [.mtty()])
    }
    return SimulatedKernel(
      configuration: simulatorConfiguration, devices: [SimulatedEduDevice()],
      rootPorts: [SimulatedRootPort(functions: [SimulatedEduDevice(), SimulatedEduDevice()])])
  }
  let second: any SystemCalls = machine()
  let first: any SystemCalls = useKernel ? KernelSystemCalls() : machine()
  let simulatedDevice = options.device == nil ? nil : SimulatedKernel.devicePath(simulatedDeviceIndex).string
  return Sides(
    first: first, second: options.plantDivergence ? Planted(base: second) : second,
    names: (useKernel ? "kernel \(version)" : "simulator", "simulator"),
    devices: (useKernel ? options.device : simulatedDevice, simulatedDevice))
}
let arena = Arena()
let hugeArena = HugeArena()
/// The memfds MAP_FILE maps from: 64 KiB, and 8 KiB (so a mapping can run past its end).
let files: [Int32] = [0x10000, 0x2000].map { size in
  let fd = ciommufd_memfd_create("iommufd-diff-fuzz", 1)
  guard fd >= 0, ftruncate(fd, off_t(size)) == 0 else { fail("cannot make a memfd") }
  return fd
}

/// Opens /dev/iommu on `calls` and sets the self-test's temporary memory limit, which is
/// kernel-wide, back to its default (65536), so that no sequence sees an earlier one's.
func openIOMMU(_ calls: any SystemCalls) -> FileDescriptor? {
  guard let fd = try? calls.open("/dev/iommu", flags: O_RDWR | O_CLOEXEC) else { return nil }
  resetTemporaryMemoryLimit(calls, fd)
  return fd
}

/// IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT 65536 (ENOTTY on a kernel without the self-test).
func resetTemporaryMemoryLimit(_ calls: any SystemCalls, _ fd: FileDescriptor) {
  var command = le(UInt32(72), UInt32(9), UInt32(0), UInt32(0), UInt32(65536))
  command += [UInt8](repeating: 0, count: 72 - command.count)
  _ = command.withUnsafeMutableBytes { try? calls.ioctl(fd, 0x3BA0, $0.baseAddress!) }
}

/// Runs sequence `number` on fresh contexts of both sides, making each call from what the
/// first side reported so far (the ids it returned, the IOVAs it chose); returns the calls
/// made and the first divergence, if any.
func explore(_ number: Int) -> (calls: [Call], divergence: (index: Int, first: Outcome, second: Outcome)?) {
  var maker = CallMaker(random: Generator(seed: options.seed &* 0x1_0000_0001 &+ UInt64(number)), arena: arena, hugeArena: hugeArena, release: release, files: files)
  maker.usesHugeArena = maker.random.chance(25)
  let sides = makeSides()
  var firstFiles = SideFiles()
  var secondFiles = SideFiles()
  guard let firstFD = openIOMMU(sides.first), let secondFD = openIOMMU(sides.second)
  else { fail("cannot open /dev/iommu on both sides") }
  defer {
    firstFiles.closeAll(sides.first)
    secondFiles.closeAll(sides.second)
    resetTemporaryMemoryLimit(sides.first, firstFD)
    try? sides.first.close(firstFD)
    try? sides.second.close(secondFD)
  }
  firstFiles.openDevice(sides.first, sides.devices.0)
  secondFiles.openDevice(sides.second, sides.devices.1)
  maker.deviceMode = options.device != nil
  maker.mediatedMode = options.mdevType != nil
  var calls: [Call] = []
  for index in 0..<options.calls {
    let call = maker.make()
    calls.append(call)
    if options.verbose {
      print("  \(index): \(call.name) ...")
      fflush(nil)
    }
    let first = run(call, on: sides.first, fd: firstFD, files: &firstFiles)
    let second = run(call, on: sides.second, fd: secondFD, files: &secondFiles)
    if options.verbose {
      print("  \(index): \(call.name): \(first.summary)")
      fflush(nil)  // so a run that hangs shows its last call
    }
    if options.stats {
      var entry = reach[kind(call)] ?? (0, 0)
      if first.errno == nil { entry.ok += 1 } else { entry.failed += 1 }
      reach[kind(call)] = entry
    }
    if first != second { return (calls, (index, first, second)) }
    maker.observe(call, first)
  }
  return (calls, nil)
}

// Progress shared with forked batches: the sequence being run.
let progress = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)!
let batchSize = 25
var divergent = 0
var traps = 0
/// The fewest MiBs of the huge arena physically contiguous in a batch's new arena.
var fewestContiguous = HugeArena.size >> 20
var totals: [String: (ok: Int, failed: Int)] = [:]
var callsRun = 0
let names = makeSides().names
let contiguousMebibytes = hugeArena.contiguousMebibytes()
print("fuzz: \(names.0) against \(names.1) (\(release == .linux7_2 ? "7.2" : "6.12") self-test), seed \(options.seed); huge arena: \(contiguousMebibytes) of 4 MiB physically contiguous")
// In the lab the sequences that map the huge arena must meet the kernel's large mappings.
if useKernel && contiguousMebibytes == 0 && getenv("IOMMUFD_LAB_MODE") != nil {
  print("fuzz: no MiB of the huge arena is physically contiguous (transparent huge pages off?): its sequences would test no large mapping")
  exit(1)
}
var start = options.firstSequence
let end = options.firstSequence + options.sequences
while start < end {
  let stop = min(start + batchSize, end)
  var pipeFDs: [Int32] = [0, 0]
  pipe(&pipeFDs)
  fflush(nil)
  let child = fork()
  if child == 0 {
    close(pipeFDs[0])
    hugeArena.renew()
    let contiguous = hugeArena.contiguousMebibytes()
    var found = 0
    for number in start..<stop {
      progress.storeBytes(of: Int64(number), as: Int64.self)
      if options.verbose { print("sequence \(number):") }
      let (calls, divergence) = explore(number)
      if let first = divergence {
        found += 1
        print("divergent at call \(first.index + 1) of sequence \(number): \(calls[first.index].name)\n  \(names.0): \(first.first.summary)\n  \(names.1): \(first.second.summary)")
        let reproducer = minimise(calls, makeSides)
        var report = "divergent: seed \(options.seed) sequence \(number), minimal reproducer of \(reproducer.count) calls:\n"
        let sides = makeSides()
        if let first = openIOMMU(sides.first), let second = openIOMMU(sides.second) {
          var (firstFiles, secondFiles) = (SideFiles(), SideFiles())
          firstFiles.openDevice(sides.first, sides.devices.0)
          secondFiles.openDevice(sides.second, sides.devices.1)
          for (index, call) in reproducer.enumerated() {
            let a = run(call, on: sides.first, fd: first, files: &firstFiles)
            let b = run(call, on: sides.second, fd: second, files: &secondFiles)
            report += "  \(index + 1). \(call.name)\n     \(names.0): \(a.summary)\n     \(names.1): \(b.summary)\n"
          }
          firstFiles.closeAll(sides.first)
          secondFiles.closeAll(sides.second)
          resetTemporaryMemoryLimit(sides.first, first)
          try? sides.first.close(first)
          try? sides.second.close(second)
        }
        print(report, terminator: "")
      }
    }
    fflush(nil)
    var summary = (Int64(found), Int64(contiguous))
    _ = write(pipeFDs[1], &summary, 16)
    if options.stats {
      let lines = reach.map { "\($0.key)\t\($0.value.ok)\t\($0.value.failed)\n" }.joined()
      _ = lines.withCString { write(pipeFDs[1], $0, strlen($0)) }
    }
    _exit(0)
  }
  close(pipeFDs[1])
  // A batch answers within seconds; one that gives no answer for 120 s is stuck (a kernel
  // that never returns from a call: the task cannot even be killed), and the run stops.
  var ready = pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)
  if poll(&ready, 1, 120_000) == 0 {
    let number = Int(progress.load(as: Int64.self))
    print("hang: seed \(options.seed) sequence \(number) gave no answer for 120 s (a call that never returns); rerun it with --first-sequence \(number) --sequences 1 --verbose")
    print("fuzz: \(number - options.firstSequence) sequences before the hang, \(divergent) divergent, \(traps) traps")
    fflush(nil)
    kill(child, SIGKILL)
    _exit(1)
  }
  var summary: (found: Int64, contiguous: Int64) = (0, 0)
  let got = read(pipeFDs[0], &summary, 16)
  if options.stats {
    var text: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
      let count = read(pipeFDs[0], &chunk, chunk.count)
      if count <= 0 { break }
      text += chunk.prefix(count)
    }
    for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
      let fields = line.split(separator: "\t")
      guard fields.count == 3, let ok = Int(fields[1]), let failed = Int(fields[2]) else { continue }
      let entry = totals[String(fields[0])] ?? (0, 0)
      totals[String(fields[0])] = (entry.ok + ok, entry.failed + failed)
    }
  }
  close(pipeFDs[0])
  var status: Int32 = 0
  waitpid(child, &status, 0)
  if got == 16 && status & 0x7f == 0 {
    divergent += Int(summary.found)
    fewestContiguous = min(fewestContiguous, Int(summary.contiguous))
    callsRun += (stop - start) * options.calls
    start = stop
  } else {
    let number = Int(progress.load(as: Int64.self))
    traps += 1
    print("trap: seed \(options.seed) sequence \(number) (signal \(status & 0x7f)); rerun it with --first-sequence \(number) --sequences 1 --verbose")
    callsRun += (number - start + 1) * options.calls
    start = number + 1
  }
  let done = start - options.firstSequence
  if options.progress > 0 && (done / options.progress) != ((done - batchSize) / options.progress) {
    print("progress: \(done) sequences, \(callsRun) calls, \(divergent) divergent, \(traps) traps")
    fflush(nil)
  }
}
if options.stats {
  for (name, entry) in totals.sorted(by: { $0.key < $1.key }) { print("reach: \(name): \(entry.ok) succeeded, \(entry.failed) failed") }
}
print("fuzz: \(options.sequences) sequences, \(callsRun) calls, \(divergent) divergent, \(traps) traps; huge arena: at least \(fewestContiguous) of 4 MiB physically contiguous in each batch")
// In the lab every batch's sequences must meet the kernel's large mappings, as the first's.
let arenaFailed = useKernel && fewestContiguous == 0 && getenv("IOMMUFD_LAB_MODE") != nil
if arenaFailed { print("fuzz: a batch's huge arena had no physically contiguous MiB: its sequences tested no large mapping") }
exit(divergent == 0 && traps == 0 && !arenaFailed ? 0 : 1)
