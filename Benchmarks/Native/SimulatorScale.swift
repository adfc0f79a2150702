import Iommufd
import IommufdSimulator
import MallocInterposerSwift
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The simulated kernel at scale: translation, memory and map+unmap with a thousand and a
// million live mappings, against a bare binary search over the sorted starts.

/// An IOAS of a simulated kernel holding `live` 4 KiB mappings at `slot(i)` (none pinned:
/// no device is attached, so the memory behind them is never touched).
struct LiveMappings {
  let simulator = SimulatedKernel()
  let iommufd: IOMMUFD
  let ioas: IOAS
  let live: Int
  /// The live heap bytes the mappings took (requested sizes, as malloc-interposer counts them).
  let heapBytes: Int

  static func slot(_ index: Int) -> UInt64 { UInt64(index) * 0x2000 + 0x10_0000 }
  static func host(_ index: Int) -> UInt64 { 0x10_0000_0000 + UInt64(index % 4096) * 0x1000 }

  init(live: Int) {
    self.live = live
    do {
      iommufd = try IOMMUFD.open(backend: .simulated(simulator))
      ioas = try iommufd.allocateIOAS()
      MallocInterposerSwift.reset()
      MallocInterposerSwift.hook()
      for index in 0..<live {
        _ = try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: UInt(Self.host(index)))!, length: 0x1000, at: .fixed(Self.slot(index)))
      }
      MallocInterposerSwift.unhook()
      let statistics = MallocInterposerSwift.getStatistics()
      heapBytes = statistics.mallocBytesCount - statistics.freeBytesCount
    } catch { abort("mapping \(live) areas", error) }
    verify()
  }

  /// Checks that every mapping is still there: a sample translates, and the IOAS holds
  /// exactly `live` pages (by unmapping and remapping them all would cost too much: the
  /// sample is 1000 random slots, and the count comes at the end from ``unmapAll()``).
  func verify() {
    var random = SystemRandomNumberGenerator()
    for _ in 0..<1000 {
      let index = Int.random(in: 0..<live, using: &random)
      guard simulator.hostAddress(iommufd: iommufd.fileDescriptor, ioas: ioas.id, iova: Self.slot(index) + 0x800) == Self.host(index) + 0x800 else {
        print("iommufd-bench: mapping \(index) of \(live) is missing")
        exit(1)
      }
    }
  }

  /// Unmaps everything and checks that exactly `live` mappings were there.
  func unmapAll() {
    do {
      let bytes = try ioas.unmapAll()
      guard bytes == UInt64(live) * 0x1000 else {
        print("iommufd-bench: \(bytes / 0x1000) pages were mapped at the end, not \(live)")
        exit(1)
      }
    } catch { abort("unmap all", error) }
  }
}

/// Translation of random IOVAs with `live` mappings, against a bare binary search over a
/// sorted `[UInt64]` of their starts; the memory per live mapping; a map+unmap pair into
/// the holes between them.
func scale(live: Int) -> (translation: Timing, floor: Timing, pair: Timing, bytesPerMapping: Double) {
  let space = LiveMappings(live: live)
  var random = SystemRandomNumberGenerator()
  let lookups = (0..<1_000_000).map { _ in
    LiveMappings.slot(Int.random(in: 0..<live, using: &random)) + UInt64.random(in: 0..<0x1000, using: &random)
  }
  let starts = (0..<live).map { LiveMappings.slot($0) }
  let fd = space.iommufd.fileDescriptor
  let id = space.ioas.id
  var missing = 0
  let translation = measure(operations: lookups.count) {
    for iova in lookups {
      if let host = space.simulator.hostAddress(iommufd: fd, ioas: id, iova: iova) { sink &+= host } else { missing += 1 }
    }
  }
  let floor = measure(operations: lookups.count) {
    for iova in lookups {
      var low = 0
      var high = starts.count
      while low < high {
        let middle = (low + high) / 2
        if starts[middle] <= iova { low = middle + 1 } else { high = middle }
      }
      sink &+= UInt64(low)
    }
  }
  guard missing == 0 else {
    print("iommufd-bench: \(missing) lookups of mapped IOVAs found nothing")
    exit(1)
  }
  // Map+unmap pairs into the holes (slot + 0x1000), each checked.
  let pairs = 20_000
  let holes = (0..<pairs).map { _ in LiveMappings.slot(Int.random(in: 0..<live, using: &random)) + 0x1000 }
  let address = UnsafeRawPointer(bitPattern: 0x20_0000_0000)!
  let pair = measure(rounds: 3, operations: pairs) {
    do {
      for iova in holes {
        _ = try space.ioas.unsafeMap(address: address, length: 0x1000, at: .fixed(iova))
        let unmapped = try space.ioas.unmap(iova: iova, length: 0x1000)
        guard unmapped == 0x1000 else { abort("unmap of a hole", Errno.ioError) }
      }
    } catch { abort("map+unmap with \(live) live mappings", error) }
  }
  space.verify()
  space.unmapAll()
  return (translation, floor, pair, Double(space.heapBytes) / Double(live))
}

func simulatorScale() {
  let small = scale(live: 1_000)
  let large = scale(live: 1_000_000)
  for (name, result) in [("1k", small), ("1M", large)] {
    let ratio = result.translation.minimum / result.floor.minimum
    report(
      "translation, \(name) live mappings",
      "simulator \(format(result.translation.minimum)) ns/lookup (median \(format(result.translation.median))), bare binary search \(format(result.floor.minimum)) ns (median \(format(result.floor.median))): \(format(ratio))x",
      goal: "<= 2x", met: ratio <= 2)
  }
  report(
    "memory, 1M live mappings", "\(format(large.bytesPerMapping)) heap bytes per mapping (\(format(small.bytesPerMapping)) at 1k)",
    goal: "<= 128", met: large.bytesPerMapping <= 128)
  let ratio = large.pair.minimum / small.pair.minimum
  report(
    "map+unmap pair",
    "\(format(small.pair.minimum)) ns with 1k live mappings (median \(format(small.pair.median))), \(format(large.pair.minimum)) ns with 1M (median \(format(large.pair.median))): \(format(ratio))x",
    goal: "1M <= 2x 1k", met: ratio <= 2)
}

/// User-memory copies per simulated ioctl (each a process_vm_readv or writev).
func copiesPerIoctl() {
  do {
    let backend = Backend.simulated(SimulatedKernel())
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 4096, backend: backend)
    let count = 1000
    var before = SimulatedKernel.userMemoryCopies
    for _ in 0..<count {
      var mapping = try ioas.map(buffer, at: .fixed(0x10_0000))
      try mapping.unmap()
    }
    let pair = Double(SimulatedKernel.userMemoryCopies - before) / Double(2 * count)
    before = SimulatedKernel.userMemoryCopies
    for _ in 0..<count { sink &+= try ioas.hugePagesEnabled() ? 1 : 0 }
    let option = Double(SimulatedKernel.userMemoryCopies - before) / Double(count)
    note("simulated ioctl copies", "\(format(pair)) user-memory copies per ioctl for map and unmap, \(format(option)) for an option get")
  } catch { abort("copies per ioctl", error) }
}

/// 100,000 translations with `live` mappings and nothing else timed, to run under a
/// profiler (`--profile-translation LIVE`): of slots in a fixed pseudo-random order, as
/// the benchmark's are random (in slot order each lookup would find the last one's cache
/// lines, which the benchmark's do not), the same from run to run so counts compare.
func profileTranslation(live: Int) {
  let space = LiveMappings(live: live)
  let fd = space.iommufd.fileDescriptor
  let id = space.ioas.id
  var state: UInt64 = 0x9E37_79B9_7F4A_7C15
  for _ in 0..<100_000 {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    sink &+= space.simulator.hostAddress(iommufd: fd, ioas: id, iova: LiveMappings.slot(Int((state >> 33) % UInt64(live))) + 0x10) ?? 0
  }
}
