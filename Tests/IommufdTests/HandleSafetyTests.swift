import CIommufd
import Dispatch
import Foundation
import Iommufd
import IommufdSimulator
import Synchronization
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A handle never reaches another object: destroyed, closed and foreign handles fail with a
/// typed error before the kernel is asked, and a release that failed keeps ownership. Runs
/// on the simulator as 6.12 and 7.2 and, in the lab, on the kernel (where the kernel's id
/// reuse is what makes a stale id dangerous).
@Suite("handle safety")
struct HandleSafetyTests {
  /// The error a call threw, if it threw an ``IommufdError``.
  static func failure(_ body: () throws -> Void) -> IommufdError? {
    do {
      try body()
      return nil
    } catch let error as IommufdError {
      return error
    } catch {
      Issue.record("not an IommufdError: \(error)")
      return nil
    }
  }

  @Test("a destroyed IOAS fails with ENOENT, naming it, and the IOAS that reuses its id is untouched", arguments: Platform.all)
  func staleIOAS(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let stale = try iommufd.allocateIOAS()
    try stale.destroy()
    let fresh = try iommufd.allocateIOAS()
    #expect(fresh.id == stale.id)  // the kernel reuses the lowest free id
    let buffer = try DMABuffer(length: 4096, backend: iommufd.backend)
    let error = Self.failure { _ = try stale.map(buffer, at: .fixed(0x10_0000)) }
    #expect(error?.errno == .noSuchFileOrDirectory)
    #expect(error?.detail == "the IOAS \(stale.id) was destroyed")
    #expect(errno { try stale.unmapAll() } == .noSuchFileOrDirectory)
    #expect(errno { try stale.iovaRanges() } == .noSuchFileOrDirectory)
    #expect(errno { try stale.allowIOVAs([]) } == .noSuchFileOrDirectory)
    #expect(errno { try stale.hugePagesEnabled() } == .noSuchFileOrDirectory)
    #expect(errno { try stale.copy(from: fresh, sourceIOVA: 0, length: 4096) } == .noSuchFileOrDirectory)
    #expect(errno { try fresh.copy(from: stale, sourceIOVA: 0, length: 4096) } == .noSuchFileOrDirectory)
    #expect(errno { try iommufd.setCompatibilityIOAS(stale) } == .noSuchFileOrDirectory)
    #expect(errno { try stale.destroy() } == .noSuchFileOrDirectory)
    #expect(try fresh.unmapAll() == 0)  // nothing reached the new IOAS
  }

  @Test("IOMMUFD.destroy of a handle's id goes through the handle: the handle then fails with ENOENT", arguments: Platform.all)
  func destroyByID(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    try iommufd.destroy(ioas.id)
    let fresh = try iommufd.allocateIOAS()
    #expect(errno { try ioas.unmapAll() } == .noSuchFileOrDirectory)
    #expect(errno { try iommufd.destroy(ioas.id) } == nil)  // the new IOAS's handle destroys it
    #expect(errno { try fresh.unmapAll() } == .noSuchFileOrDirectory)
  }

  @Test("an IOAS of another context is refused with EINVAL before the kernel is asked", arguments: Platform.all)
  func foreignIOAS(platform: Platform) throws {
    let backend = platform.makeBackend()
    let first = try IOMMUFD.open(backend: backend)
    let second = try IOMMUFD.open(backend: backend)
    let mine = try first.allocateIOAS()
    let theirs = try second.allocateIOAS()
    let error = Self.failure { _ = try mine.copy(from: theirs, sourceIOVA: 0, length: 4096) }
    #expect(error?.errno == .invalidArgument)
    #expect(error?.detail == "the IOAS \(theirs.id) belongs to another iommufd context")
    #expect(errno { try first.setCompatibilityIOAS(theirs) } == .invalidArgument)
  }

  @Test("a device refuses a destroyed or foreign attach target, and a closed eventfd", arguments: Platform.withDevice)
  func deviceTargets(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let other = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    try device.bind(to: iommufd)
    let stale = try iommufd.allocateIOAS()
    try stale.destroy()
    let fresh = try iommufd.allocateIOAS()
    #expect(fresh.id == stale.id)
    #expect(errno { try device.attach(to: stale) } == .noSuchFileOrDirectory)
    #expect(device.attachedPageTableID == nil)
    let foreign = try other.allocateIOAS()
    let error = Self.failure { try device.attach(to: foreign) }
    #expect(error?.errno == .invalidArgument)
    #expect(error?.detail?.contains("another iommufd context") == true)
    #expect(device.attachedPageTableID == nil)
    try device.attach(to: fresh)
    let event = try EventFD(backend: backend)
    try event.close()
    let refused = Self.failure { try device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [event]) }
    #expect(refused?.errno == .badFileDescriptor)
    #expect(refused?.detail == "the handle was closed")
  }

  @Test("IOMMUFD.destroy of raw ids racing allocations never leaves a handle whose id is gone: each id a handle got is destroyed through that handle or stays alive")
  func rawDestroyRacingAllocation() throws {
    let backend = Backend.simulated(SimulatedKernel())
    let iommufd = try IOMMUFD.open(backend: backend)
    let made = Mutex<[IOAS]>([])
    let stop = Atomic<Bool>(false)
    DispatchQueue.concurrentPerform(iterations: 2) { thread in
      if thread == 0 {
        for _ in 0..<3000 {
          if let ioas = try? iommufd.allocateIOAS() { made.withLock { $0.append(ioas) } }
        }
        stop.store(true, ordering: .relaxed)
      } else {
        var id: UInt32 = 1
        while !stop.load(ordering: .relaxed) {
          _ = try? iommufd.destroy(ObjectID(id))
          id = id % 8 + 1
        }
      }
    }
    var orphans = 0
    for ioas in made.withLock({ $0 }) {
      // A handle's IOAS is either gone through the handle (ENOENT naming it destroyed, no
      // kernel call) or still there; never gone under a handle that thinks it lives.
      do { _ = try ioas.iovaRanges() } catch where error.errno == .noSuchFileOrDirectory && error.detail == nil { orphans += 1 } catch {}
    }
    #expect(orphans == 0, "\(orphans) handles outlived their ids")
  }

  @Test("a device closed while another thread attaches it or sets its interrupts keeps no attachment and no eventfd")
  func closeRacingAttach() throws {
    let backend = Backend.simulated(SimulatedKernel(devices: [SimulatedEduDevice()]))
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    var stale = 0
    for round in 0..<300 {
      let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
      try device.bind(to: iommufd)
      weak var weakEventFD: EventFD?
      do {
        let eventFD = try EventFD(nonBlocking: true, backend: backend)
        weakEventFD = eventFD
        DispatchQueue.concurrentPerform(iterations: 2) { thread in
          if thread == 0 {
            if round % 2 == 0 { _ = try? device.attach(to: ioas) } else { try? device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [eventFD]) }
          } else {
            try? device.close()
          }
        }
      }
      if device.attachedPageTableID != nil || weakEventFD != nil { stale += 1 }
    }
    #expect(stale == 0, "\(stale) of 300 closed devices kept an attachment or an eventfd")
  }

  @Test("mappings released while their IOAS unmaps everything and another thread maps and drops a mapping at one of their IOVAs: nothing is left mapped")
  func releaseDuringUnmapAll() throws {
    let simulator = SimulatedKernel()
    let backend = Backend.simulated(simulator)
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let buffers = try (0..<128).map { _ in try DMABuffer(length: 4096, backend: backend) }
    let other = try DMABuffer(length: 8192, backend: backend)
    var leftovers = 0
    for _ in 0..<60 {
      let done = Atomic<Bool>(false)
      DispatchQueue.concurrentPerform(iterations: 2) { thread in
        if thread == 0 {
          var maps: [MappingBox] = []
          for (offset, buffer) in buffers.enumerated() {
            if let mapping = try? ioas.map(buffer, at: .fixed(0x100_0000 + UInt64(offset) * 4096)) {
              maps.append(MappingBox(mapping))
            }
          }
          _ = try? ioas.unmapAll()
          maps = []
          _ = maps
          done.store(true, ordering: .releasing)
        } else {
          while !done.load(ordering: .acquiring) { _ = try? ioas.map(other, at: .fixed(0x100_0000 + 127 * 4096)) }
        }
      }
      // Every mapping handle is gone: nothing may be left mapped.
      if (try? ioas.unmapAll()) ?? 0 != 0 { leftovers += 1 }
    }
    #expect(leftovers == 0, "\(leftovers) of 60 rounds left a range mapped with no mapping to own it")
  }

  @Test("a device closed while one of its calls is in flight keeps its attach target until the call returns, so the target's release succeeds")
  func closeWithCallInFlight() throws {
    let calls = CountingCalls(SimulatedKernel(devices: [SimulatedEduDevice()]), delays: [UInt(CIOMMUFD_VFIO_DEVICE_GET_INFO): 50_000])
    let backend = Backend(calls)
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    try device.bind(to: iommufd)
    var id = ObjectID(0)
    do {
      let ioas = try iommufd.allocateIOAS()
      id = ioas.id
      try device.attach(to: ioas)
    }
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { _ = try? device.info() }
    usleep(5_000)  // the info call is in flight (it takes 50 ms)
    try device.close()
    group.wait()
    // The IOAS went with the device's close, destroyed through its handle: its id is gone.
    #expect(errno { try iommufd.destroy(id) } == .noSuchFileOrDirectory)
  }

  @Test("isMapped of a mapping that threads share (in a class) while other threads map, unmap and release mappings of the same IOAS: always true, and no data race (the ThreadSanitizer run)")
  func isMappedWhileTheRecordChanges() throws {
    let backend = Backend.simulated(SimulatedKernel())
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 4096, backend: backend)
    let shared = MappingBox(try ioas.map(buffer, at: .fixed(0x10_0000)))
    let wrong = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: 4) { thread in
      for round in 0..<2000 {
        if thread < 2 {
          if !shared.mapping.isMapped { wrong.add(1, ordering: .relaxed) }
        } else if var mapping = try? ioas.map(buffer, at: .fixed(0x100_0000 + UInt64(thread * 2000 + round) * 0x1000)) {
          if round % 2 == 0 { try? mapping.unmap() }  // else its release
        }
      }
    }
    #expect(wrong.load(ordering: .relaxed) == 0)
    #expect(shared.mapping.isMapped == true)
  }

  @Test("mappings, racing: an old mapping's unmap or release while another thread unmaps all and maps anew at the same IOVA never removes the new mapping")
  func staleMappingRace() throws {
    let simulator = SimulatedKernel()
    let backend = Backend.simulated(simulator)
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 4096, backend: backend)
    var lost = 0
    for round in 0..<20000 {
      let old = Mutex<DMAMapping?>(try ioas.map(buffer, at: .fixed(0x10_0000)))
      let renewed = Mutex<DMAMapping?>(nil)
      DispatchQueue.concurrentPerform(iterations: 2) { thread in
        if thread == 0 {
          // Unmap, or release, outside the lock.
          var mapping = old.withLock { $0.take() }
          if round % 2 == 0 { try? mapping?.unmap() }
          mapping = nil
        } else {
          _ = try? ioas.unmapAll()
          var fresh = try? ioas.map(buffer, at: .fixed(0x10_0000))
          renewed.withLock { $0 = fresh.take() }
        }
      }
      old.withLock { $0 = nil }
      if renewed.withLock({ $0?.isMapped ?? false }),
        simulator.hostAddress(iommufd: iommufd.fileDescriptor, ioas: ioas.id, iova: 0x10_0000) == nil
      {
        lost += 1
      }
      _ = try? ioas.unmapAll()
    }
    #expect(lost == 0, "the new mapping was removed by the old one \(lost) times in 20000")
  }

  @Test("mappings: after unmapAll and a new mapping at the same IOVA, the old mapping's unmap and release leave the new one alone", arguments: Platform.all)
  func remappedRange(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let first = try DMABuffer(length: 4096, backend: iommufd.backend)
    let second = try DMABuffer(length: 4096, backend: iommufd.backend)
    var old: DMAMapping? = try ioas.map(first, at: .fixed(0x10_0000))
    #expect(try ioas.unmapAll() == 4096)
    #expect(old?.isMapped == false)
    let new = try ioas.map(second, at: .fixed(0x10_0000))
    try old?.unmap()
    old = nil
    #expect(new.isMapped == true)
    #expect(try ioas.unmap(iova: 0x10_0000, length: 4096) == 4096)  // still there
    #expect(new.isMapped == false)
    // A mapping unmapped through a range that covers it is gone too.
    var third = try ioas.map(first, at: .fixed(0x20_0000))
    #expect(try ioas.unmap(iova: 0x20_0000, length: 0x10_0000) == 4096)
    #expect(third.isMapped == false)
    try third.unmap()
  }

  @Test("mappings whose range was unmapped behind the space's back (on the raw seam): an unmap is ENOENT and marks it unmapped; a new map over the range clears it, so neither its unmap nor its release removes the new mapping", arguments: Platform.all)
  func rangeLostBehindTheSpace(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 4096, backend: iommufd.backend)
    func rawUnmap(_ iova: UInt64) throws {
      var request = ciommufd_iommu_ioas_unmap(
        size: UInt32(MemoryLayout<ciommufd_iommu_ioas_unmap>.size), ioas_id: ioas.id.rawValue, iova: iova, length: 4096)
      _ = try iommufd.backend.calls.ioctl(iommufd.fileDescriptor, UInt(CIOMMUFD_IOMMU_IOAS_UNMAP), &request)
    }
    var lost = try ioas.map(buffer, at: .fixed(0x20_0000))
    try rawUnmap(0x20_0000)
    #expect(lost.isMapped == true)  // the space cannot know
    #expect(errno { try lost.unmap() } == .noSuchFileOrDirectory)
    #expect(lost.isMapped == false)
    try lost.unmap()  // owns nothing now: no call
    for release in [false, true] {
      var old = try ioas.map(buffer, at: .fixed(0x10_0000))
      try rawUnmap(0x10_0000)
      var new = try ioas.map(buffer, at: .fixed(0x10_0000))
      #expect(old.isMapped == false)
      #expect(new.isMapped == true)
      try new.unmap()
      #expect(old.isMapped == false)  // forgotten when the new one was recorded
      var third = try ioas.map(buffer, at: .fixed(0x10_0000))
      if release { _ = consume old } else { try old.unmap() }
      #expect(third.isMapped == true)
      #expect(try ioas.unmap(iova: 0x10_0000, length: 4096) == 4096)  // still there
      #expect(third.isMapped == false)
      try third.unmap()
    }
  }

  /// One `DMAMapping` of the ownership model below, in a class so an array can hold it.
  final class HeldMapping {
    var mapping: DMAMapping?
    let slot: Int
    let pages: Int
    /// Whether its space still records it (the model's answer to `isMapped`).
    var owns = true
    var isMapped: Bool? { mapping?.isMapped }
    init(_ mapping: consuming DMAMapping, slot: Int, pages: Int) {
      self.mapping = consume mapping
      self.slot = slot
      self.pages = pages
    }
  }

  @Test("mappings: ownership agrees with a model over 4,000 random maps, unmaps, releases, unmaps through the space and unmaps behind it, dozens live at once", arguments: Platform.all)
  func ownershipAgreesWithModel(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let ioas = try iommufd.allocateIOAS()
    let buffers = try (1...3).map { try DMABuffer(length: $0 * 4096, backend: iommufd.backend) }
    let base: UInt64 = 0x10_0000
    let slots = 256
    func iova(_ slot: Int) -> UInt64 { base + UInt64(slot) * 4096 }
    // The kernel's areas by first slot: their pages and the mapping that made them (nil:
    // an unsafe map).
    var areas: [Int: (pages: Int, owner: HeldMapping?)] = [:]
    var held: [HeldMapping] = []
    var random: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next(_ bound: Int) -> Int {
      random = random &* 6364136223846793005 &+ 1442695040888963407
      return Int((random >> 33) % UInt64(bound))
    }
    func isFree(_ slot: Int, _ pages: Int) -> Bool {
      slot + pages <= slots && areas.allSatisfy { $0.key + $0.value.pages <= slot || slot + pages <= $0.key }
    }
    /// A new map over `slot`: the records it overlaps are forgotten.
    func mapped(_ slot: Int, _ pages: Int) {
      for mapping in held where mapping.owns && mapping.slot < slot + pages && slot < mapping.slot + mapping.pages {
        mapping.owns = false
      }
    }
    /// An unmap through the space of `slots`: the records inside it are forgotten, whether
    /// or not the kernel still had their areas.
    func unmapped(_ slots: Range<Int>) {
      for mapping in held where slots.contains(mapping.slot) && mapping.slot + mapping.pages <= slots.upperBound {
        mapping.owns = false
      }
      for start in areas.keys where slots.contains(start) { areas[start] = nil }
    }
    var counts = [Int](repeating: 0, count: 8)
    var mostOwning = 0
    // How often the checks that need a lost record ran: an unmap expected to be ENOENT (the
    // range unmapped behind the space's back) and an isMapped expected to be false.
    var lostUnmaps = 0, forgottenChecks = 0
    for round in 0..<4000 {
      let operation = next(8)
      let slot = next(slots), pages = 1 + next(3)
      switch operation {
      case 0, 1:  // a DMAMapping
        if isFree(slot, pages) {
          let mapping = try ioas.map(buffers[pages - 1], at: .fixed(iova(slot)))
          mapped(slot, pages)
          let entry = HeldMapping(mapping, slot: slot, pages: pages)
          held.append(entry)
          mostOwning = max(mostOwning, held.count(where: \.owns))
          areas[slot] = (pages, entry)
          counts[operation] += 1
        } else if slot + pages <= slots {
          #expect(errno { _ = try ioas.map(buffers[pages - 1], at: .fixed(iova(slot))) } == .fileExists, "round \(round)")
        }
      case 2:  // an unsafe map
        if isFree(slot, pages) {
          let address = UnsafeRawPointer(buffers[pages - 1].bytes.baseAddress!)
          #expect(try ioas.unsafeMap(address: address, length: UInt64(pages) * 4096, at: .fixed(iova(slot))) == iova(slot))
          mapped(slot, pages)
          areas[slot] = (pages, nil)
          counts[operation] += 1
        }
      case 3, 4:  // a held mapping's unmap or release
        guard !held.isEmpty else { continue }
        let entry = held.remove(at: next(held.count))
        let inKernel = areas[entry.slot].map { $0.owner === entry } ?? false
        if operation == 3 {
          let expected: Errno? = entry.owns && !inKernel ? .noSuchFileOrDirectory : nil
          if expected != nil { lostUnmaps += 1 }
          #expect(errno { try entry.mapping!.unmap() } == expected, "round \(round)")
          #expect(entry.isMapped == false, "round \(round)")
        }
        entry.mapping = nil
        if entry.owns && inKernel { areas[entry.slot] = nil }
        counts[operation] += 1
      case 5:  // an unmap through the space of whole areas (or of none: ENOENT)
        let first = areas.keys.sorted().first { $0 >= slot }
        guard let first, next(8) != 0 else {
          #expect(errno { try ioas.unmap(iova: iova(slots), length: 4096) } == .noSuchFileOrDirectory)
          continue
        }
        let covered = areas.keys.sorted().filter { $0 >= first }.prefix(1 + next(4))
        let end = covered.map { $0 + areas[$0]!.pages }.max()!
        let bytes = covered.reduce(0) { $0 + areas[$1]!.pages } * 4096
        #expect(try ioas.unmap(iova: iova(first), length: iova(end) - iova(first)) == UInt64(bytes), "round \(round)")
        unmapped(first..<end)
        counts[operation] += 1
      case 6:  // an unmap behind the space's back, on the raw seam
        let starts = areas.keys.sorted()
        guard !starts.isEmpty else { continue }
        let first = starts[next(starts.count)], area = areas[first]!
        var request = ciommufd_iommu_ioas_unmap(
          size: UInt32(MemoryLayout<ciommufd_iommu_ioas_unmap>.size), ioas_id: ioas.id.rawValue, iova: iova(first),
          length: UInt64(area.pages) * 4096)
        _ = try iommufd.backend.calls.ioctl(iommufd.fileDescriptor, UInt(CIOMMUFD_IOMMU_IOAS_UNMAP), &request)
        areas[first] = nil  // the record still has it, if it was a DMAMapping's
        counts[operation] += 1
      default:  // now and then, everything
        if next(40) == 0 {
          #expect(try ioas.unmapAll() == UInt64(areas.values.reduce(0) { $0 + $1.pages }) * 4096)
          unmapped(0..<slots)
          counts[operation] += 1
        }
      }
      if round % 200 == 199 {
        for entry in held {
          #expect(entry.isMapped == entry.owns, "round \(round), slot \(entry.slot)")
          if !entry.owns { forgottenChecks += 1 }
        }
      }
    }
    for entry in held where entry.owns && areas[entry.slot]?.owner === entry { areas[entry.slot] = nil }
    held.removeAll()  // the releases
    #expect(counts.allSatisfy { $0 > 5 }, "each kind of step ran: \(counts)")
    #expect(mostOwning > 16, "the record grew twice past its first buffer of 8: \(mostOwning) recorded at most")
    #expect(lostUnmaps > 5 && forgottenChecks > 5, "\(lostUnmaps) unmaps of lost ranges, \(forgottenChecks) checks of forgotten mappings")
    // What is left in the kernel is what the model has: the unsafe maps and the lost records' areas.
    #expect(try ioas.unmapAll() == UInt64(areas.values.reduce(0) { $0 + $1.pages }) * 4096)
  }

  @Test("a failed unmap keeps the mapping and its pins; a retry really unmaps; a failed release is retried by deinit")
  func failedUnmapKeepsOwnership() throws {
    let kernel = SimulatedKernel(devices: [SimulatedEduDevice()])
    let backend = Backend.simulated(kernel)
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    try device.attach(to: ioas)
    let buffer = try DMABuffer(length: 8192, backend: backend)
    var mapping: DMAMapping? = try ioas.map(buffer)
    #expect(kernel.pinnedPages == 2)
    kernel.injectFailure(at: .ioctl, after: 0, errno: .interrupted)
    #expect(errno { try mapping?.unmap() } == .interrupted)
    #expect(mapping?.isMapped == true)
    #expect(kernel.pinnedPages == 2)
    try mapping?.unmap()
    #expect(mapping?.isMapped == false)
    #expect(kernel.pinnedPages == 0)
    // The release after a failed unmap still unmaps.
    mapping = try ioas.map(buffer)
    kernel.injectFailure(at: .ioctl, after: 0, errno: .interrupted)
    #expect(errno { try mapping?.unmap() } == .interrupted)
    mapping = nil
    #expect(kernel.pinnedPages == 0)
    #expect(try ioas.unmapAll() == 0)
  }

  @Test("double destroy answers ENOENT on every object handle, the fault queue included", arguments: Platform.mock)
  func doubleDestroy(platform: Platform) throws {
    let iommufd = try IOMMUFD.open(backend: platform.makeBackend())
    let queue = try iommufd.allocateFaultQueue()
    try queue.destroy()
    let error = Self.failure { try queue.destroy() }
    #expect(error?.errno == .noSuchFileOrDirectory)
    #expect(error?.detail == "the fault queue \(queue.id) was already destroyed")
    let ioas = try iommufd.allocateIOAS()
    let mock = try iommufd.selfTest.attachMockDevice(to: ioas)
    try mock.destroy()
    #expect(errno { try mock.destroy() } == .noSuchFileOrDirectory)
    #expect(errno { try mock.replace(with: ioas) } == .noSuchFileOrDirectory)
  }

  @Test("MMIO: no load lands in memory mapped at the region's address after unmap returns (100 racing rounds)")
  func mmioExcludesUnmap() throws {
    let calls = RemappingSystemCalls()
    let device = VFIODevice(adopting: FileDescriptor(rawValue: Int32.max - 2), backend: Backend(calls))
    let late = Atomic<Int>(0)
    for _ in 0..<100 {
      let region = try device.map(region: VFIORegionInfo(index: 0, flags: [.readable, .writable, .mappable], size: 4096, offset: 0))
      let done = Atomic<Bool>(false)
      let started = DispatchSemaphore(value: 0)
      let group = DispatchGroup()
      DispatchQueue.global().async(group: group) {
        started.signal()
        while !done.load(ordering: .acquiring) {
          if let value = try? region.load32(at: 0), value == RemappingSystemCalls.sentinel {
            late.add(1, ordering: .relaxed)
          }
        }
      }
      started.wait()
      try region.unmap()
      done.store(true, ordering: .releasing)
      group.wait()
      calls.releaseReplacement()
    }
    #expect(late.load(ordering: .relaxed) == 0)
  }

  @Test("a context closed while threads call it and its IOAS is closed exactly once, after the last call in flight; every call succeeds or fails with EBADF")
  func closeWhileCallsEnter() throws {
    for _ in 0..<20 {
      let calls = CountingCalls(SimulatedKernel())
      let backend = Backend(calls)
      let iommufd = try IOMMUFD.open(backend: backend)
      let ioas = try iommufd.allocateIOAS()
      let unexpected = Atomic<Int>(0)
      DispatchQueue.concurrentPerform(iterations: 4) { thread in
        for round in 0..<400 {
          if thread == 0 && round == 100 { try? iommufd.close() }
          do throws(IommufdError) {
            if round % 2 == 0 { _ = try ioas.hugePagesEnabled() } else { _ = try iommufd.memoryLimitAccounting() }
          } catch where error.errno == .badFileDescriptor {
          } catch {
            unexpected.add(1, ordering: .relaxed)
          }
        }
      }
      #expect(unexpected.load(ordering: .relaxed) == 0)
      #expect(calls.closes.load(ordering: .relaxed) == 1)
      #expect(calls.closesUnderCalls.load(ordering: .relaxed) == 0, "a close came while an ioctl was in flight")
      #expect(calls.base.openFileCount == 0)
    }
  }

  @Test("an IOAS whose destroy is refused (EBUSY) while threads call it stays usable, and is destroyed exactly once once it is free")
  func refusedDestroyWhileCallsEnter() throws {
    // Each destroy takes 10 µs or more: the calls of the other threads find it at work and take
    // their counts back, which the refused destroy must keep (a store would lose them,
    // and the next destroy would wait forever).
    let calls = CountingCalls(SimulatedKernel(devices: [SimulatedEduDevice()]), delays: [UInt(CIOMMUFD_IOMMU_DESTROY): 10])
    let backend = Backend(calls)
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    try device.attach(to: ioas)
    let unexpected = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    // Off this thread, with a time limit: a gate that lost a count would keep the next
    // destroy waiting forever. On threads of its own, not Dispatch's pool, which other
    // tests running in parallel can keep busy for longer than the limit.
    let raced = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
      DispatchQueue.concurrentPerform(iterations: 4) { thread in
        for _ in 0..<2000 {
          if thread == 0 {
            do throws(IommufdError) { try ioas.destroy() } catch where error.errno == .resourceBusy {
              refused.add(1, ordering: .relaxed)
            } catch { unexpected.add(1, ordering: .relaxed) }
          } else if (try? ioas.hugePagesEnabled()) == nil {
            unexpected.add(1, ordering: .relaxed)
          }
        }
      }
      raced.signal()
    }
    try #require(raced.wait(timeout: .now() + 120) == .success, "a destroy waited for readers that had left")
    #expect(unexpected.load(ordering: .relaxed) == 0)
    #expect(refused.load(ordering: .relaxed) == 2000)
    // Free now: the destroy must find no reader left behind by the racing calls.
    try device.detach()
    let done = DispatchSemaphore(value: 0)
    let started = Atomic<Bool>(false)
    let destroyed = Atomic<Bool>(false)
    Thread.detachNewThread {
      started.store(true, ordering: .relaxed)
      if (try? ioas.destroy()) != nil { destroyed.store(true, ordering: .relaxed) }
      done.signal()
    }
    #expect(
      done.wait(timeout: .now() + 120) == .success,
      "the destroy waited for readers that had left (its thread started: \(started.load(ordering: .relaxed)))")
    #expect(destroyed.load(ordering: .relaxed) == true)
    #expect(errno { try ioas.hugePagesEnabled() } == .noSuchFileOrDirectory)
    #expect(calls.destroys.load(ordering: .relaxed) == 2001)
  }
}

/// System calls whose `munmap` puts a page of ``sentinel`` words at the same address at
/// once, as another thread's `mmap` may: a load that reads the sentinel ran after the unmap.
final class RemappingSystemCalls: SystemCalls, @unchecked Sendable {
  static let sentinel: UInt32 = 0xABAB_ABAB
  private var replacement: (UnsafeMutableRawPointer, Int)?

  func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor { throw .noSuchFileOrDirectory }
  func close(_ fd: FileDescriptor) throws(Errno) {}
  func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 { 0 }

  func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    let address = Glibc.mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let address, address != MAP_FAILED else { throw Errno(rawValue: Glibc.errno) }
    address.initializeMemory(as: UInt8.self, repeating: 0x11, count: length)
    return address
  }

  func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) {
    let fresh = Glibc.mmap(address, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    guard let fresh, fresh != MAP_FAILED else { throw Errno(rawValue: Glibc.errno) }
    fresh.initializeMemory(as: UInt8.self, repeating: 0xAB, count: length)
    replacement = (fresh, length)
  }

  /// Unmaps the page that took the region's place.
  func releaseReplacement() {
    if let (address, length) = replacement { _ = Glibc.munmap(address, length) }
    replacement = nil
  }

  func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int { 0 }
  func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int { 0 }
  func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int { 0 }
  func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int { 0 }
  func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor { throw .noSuchFileOrDirectory }
}

/// A mapping kept in an array or read by several threads (a `DMAMapping` is noncopyable).
final class MappingBox: Sendable {
  let mapping: DMAMapping

  init(_ mapping: consuming DMAMapping) {
    self.mapping = mapping
  }
}

/// The simulated kernel, counting closes, ioctls in flight and `IOMMU_DESTROY` requests,
/// and making the requests of `delays` slower by their microseconds (so that other
/// threads' calls arrive while one is at work).
final class CountingCalls: SystemCalls, Sendable {
  let base: SimulatedKernel
  let closes = Atomic<Int>(0)
  /// Closes made while an ioctl was in flight (there is one descriptor to call on).
  let closesUnderCalls = Atomic<Int>(0)
  let ioctlsInFlight = Atomic<Int>(0)
  let destroys = Atomic<Int>(0)
  let delays: [UInt: UInt32]
  init(_ base: SimulatedKernel, delays: [UInt: UInt32] = [:]) {
    self.base = base
    self.delays = delays
  }
  func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor { try base.open(path, flags: flags) }
  func close(_ fd: FileDescriptor) throws(Errno) {
    closes.add(1, ordering: .relaxed)
    if ioctlsInFlight.load(ordering: .acquiring) != 0 { closesUnderCalls.add(1, ordering: .relaxed) }
    try base.close(fd)
  }
  func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
    ioctlsInFlight.add(1, ordering: .acquiringAndReleasing)
    defer { ioctlsInFlight.subtract(1, ordering: .acquiringAndReleasing) }
    if request == UInt(CIOMMUFD_IOMMU_DESTROY) { destroys.add(1, ordering: .relaxed) }
    if let delay = delays[request] { usleep(delay) }
    return try base.ioctl(fd, request, argument)
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
