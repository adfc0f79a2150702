import Dispatch
import Foundation
import Iommufd
import IommufdSimulator
import Synchronization
import SystemPackage
import Testing

/// Shared handles used from many threads at once: maps, unmaps, attaches, destroys and
/// closes race on one context. The assertions check that every call ends in a defined
/// answer; `Scripts/test.sh` also runs this suite under ThreadSanitizer, which must find
/// no race in the library or the simulated kernel.
@Suite("stress")
struct StressTests {
  @Test("map, unmap, attach, detach, destroy and close race on shared handles: every call ends in success or a typed error")
  func sharedHandles() throws {
    let backend = Backend.simulated(SimulatedKernel(devices: [SimulatedEduDevice()]))
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    try device.bind(to: iommufd)
    let spaces = try (0..<3).map { _ in try iommufd.allocateIOAS() }
    let buffer = try DMABuffer(length: 8192, backend: backend)
    let unexpected = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: 6) { thread in
      for round in 0..<150 {
        let ioas = spaces[(thread + round) % spaces.count]
        do {
          switch (thread + round) % 6 {
          case 0:
            var mapping = try ioas.map(buffer)
            if round % 2 == 0 { try mapping.unmap() }
          case 1: try device.attach(to: ioas)
          case 2: try device.detach()
          case 3: _ = try ioas.iovaRanges()
          case 4: _ = try ioas.unmapAll()
          default:
            let fresh = try iommufd.allocateIOAS()
            _ = try fresh.map(buffer, at: .fixed(0x40_0000))
            try fresh.destroy()
          }
        } catch let error as IommufdError {
          // Races may legitimately answer these; anything else is a bug.
          let allowed: Set<Errno> = [.resourceBusy, .noSuchFileOrDirectory, .fileExists]
          if !allowed.contains(error.errno) {
            unexpected.add(1, ordering: .relaxed)
            Issue.record("unexpected: \(error)")
          }
        } catch {
          Issue.record("not an IommufdError: \(error)")
        }
      }
    }
    #expect(unexpected.load(ordering: .relaxed) == 0)
    try device.close()
    try iommufd.close()
  }

  @Test("a self-test access shared by threads: replaces between two IOASes, pins, unpins, reads, unmaps and releases race; every call answers, and at the end the handle holds the IOAS the kernel holds (the other can be destroyed)")
  func sharedAccess() throws {
    var configuration = SimulatedKernel.Configuration()
    configuration.selfTest = true
    let backend = Backend.simulated(SimulatedKernel(configuration: configuration))
    let iommufd = try IOMMUFD.open(backend: backend)
    let spaces = try (0..<2).map { _ in try iommufd.allocateIOAS() }
    let buffer = try DMABuffer(length: 4 * 4096, backend: backend)
    for ioas in spaces { _ = try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 4 * 4096, at: .fixed(0x100_0000)) }
    let access = try iommufd.selfTest.createAccess(to: spaces[0], pinsPages: true)
    let unexpected = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: 6) { thread in
      var held: [SelfTestAccess.PinnedPages] = []
      for round in 0..<150 {
        do {
          switch (thread + round) % 5 {
          case 0: try access.replace(with: spaces[(thread + round / 5) % 2])
          case 1: held.append(try access.pin(iova: 0x100_0000 + UInt64(round % 4) * 4096, length: 4096, writable: round % 2 == 0))
          case 2: if let pinned = held.popLast() { try pinned.unpin() }
          case 3:
            var bytes = [UInt8](repeating: 0, count: 64)
            try bytes.withUnsafeMutableBytes { try access.read(from: 0x100_0000 + UInt64(round % 60) * 64, into: $0, slowPath: round % 2 == 0) }
          default:
            if round % 25 == 4 {
              // An unmap forces the unpin of what is pinned there; the map comes back.
              let ioas = spaces[thread % 2]
              _ = try ioas.unmap(iova: 0x100_3000, length: 4096)
              _ = try ioas.unsafeMap(address: buffer.bytes.baseAddress! + 0x3000, length: 4096, at: .fixed(0x100_3000))
            }
            held.removeAll()  // releases unpin, or find the pages unpinned already
          }
        } catch let error as IommufdError {
          // An unmap or replace that unpinned first (ENOENT), or a range another thread unmapped for a moment.
          let allowed: Set<Errno> = [.noSuchFileOrDirectory, .fileExists]
          if !allowed.contains(error.errno) {
            unexpected.add(1, ordering: .relaxed)
            Issue.record("unexpected: \(error)")
          }
        } catch {
          Issue.record("not an IommufdError: \(error)")
        }
      }
    }
    #expect(unexpected.load(ordering: .relaxed) == 0)
    let held = access.ioas
    let other = try #require(spaces.first { $0 !== held })
    try other.destroy()
    #expect(errno { try held.destroy() } == .resourceBusy)
    try access.close()
    try held.destroy()
  }

  @Test("interrupts race the simulated kernel's thread: edu raises and acknowledges INTx, its DMA completes on a timer, the unmask eventfd is written from outside the simulator and the listener replaced, while the kernel is dropped at the end: every call answers")
  func interruptsAndDeviceWork() throws {
    let backend = Backend.simulated(SimulatedKernel(devices: [SimulatedEduDevice(dmaDelay: .microseconds(200))]))
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    try device.attach(to: ioas)
    let buffer = try DMABuffer(length: 4096, backend: backend)
    let mapping = try ioas.map(buffer, at: .fixed(0x10_0000), access: [.readable, .writable])
    let trigger = try EventFD(nonBlocking: true, backend: backend)
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    let resample = try EventFD(nonBlocking: true, backend: backend)
    try device.setUnmaskEventFD(resample)
    let region = try device.regionInfo(0)
    let unexpected = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: 4) { thread in
      for round in 0..<200 {
        do {
          switch thread {
          case 0:
            try device.write(UInt32(1), region: region, at: 0x60)  // raise
            try device.write(UInt32(1), region: region, at: 0x64)  // acknowledge
          case 1:
            var one: UInt64 = 1  // a writer outside the simulator, as KVM would be
            _ = withUnsafeBytes(of: &one) { write(resample.fileDescriptor.rawValue, $0.baseAddress, 8) }
            _ = try? trigger.wait()
          case 2:
            try device.write(UInt64(0x10_0000), region: region, at: 0x80)
            try device.write(UInt64(0x40000), region: region, at: 0x88)
            try device.write(UInt64(64), region: region, at: 0x90)
            try device.write(UInt64(1), region: region, at: 0x98)
            _ = try device.read(UInt32.self, region: region, at: 0x98)
          default:
            if round % 50 == 0 {
              try device.setUnmaskEventFD(nil)
              try device.setUnmaskEventFD(resample)
            } else {
              try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)
            }
          }
        } catch {
          unexpected.add(1, ordering: .relaxed)
        }
      }
    }
    #expect(unexpected.load(ordering: .relaxed) == 0)
    _ = mapping
  }

  @Test("copies within one IOAS and between two, while destroys of both are refused (EBUSY): every call returns, none waits forever")
  func copiesDuringRefusedDestroys() throws {
    let backend = Backend.simulated(SimulatedKernel(devices: [SimulatedEduDevice()]))
    let iommufd = try IOMMUFD.open(backend: backend)
    let first = try iommufd.allocateIOAS()
    let second = try iommufd.allocateIOAS()
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    let deviceID = try device.bind(to: iommufd)
    try device.attach(to: first)
    let table = try HWPageTable(on: second, forDevice: deviceID)  // holds the second IOAS
    let buffer = try DMABuffer(length: 4096, backend: backend)
    let firstMapping = try first.map(buffer, at: .fixed(0x10_0000))
    let secondMapping = try second.map(buffer, at: .fixed(0x10_0000))
    let group = DispatchGroup()
    let unexpected = Atomic<Int>(0)
    let copiers = Atomic<Int>(4)
    for thread in 0..<6 {
      DispatchQueue.global().async(group: group) {
        defer { if thread < 4 { copiers.subtract(1, ordering: .relaxed) } }
        var round = 0
        // The copiers make 30000 copies each; the destroyers try until they are done.
        while thread < 4 ? round < 30000 : copiers.load(ordering: .relaxed) > 0 {
          round += 1
          do {
            switch thread {
            case 0, 1:  // within one IOAS: the same object used twice by one call
              let space = thread == 0 ? first : second
              let iova = try space.copy(from: space, sourceIOVA: 0x10_0000, length: 4096)
              try space.unmap(iova: iova, length: 4096)
            case 2, 3:  // between the two, both ways
              let (to, from) = thread == 2 ? (first, second) : (second, first)
              let iova = try to.copy(from: from, sourceIOVA: 0x10_0000, length: 4096)
              try to.unmap(iova: iova, length: 4096)
            default:
              try (thread == 4 ? first : second).destroy()
              unexpected.add(1, ordering: .relaxed)  // both are held: a destroy must be refused
            }
          } catch let error as IommufdError where error.errno == .resourceBusy {
          } catch {
            unexpected.add(1, ordering: .relaxed)
          }
        }
      }
    }
    #expect(group.wait(timeout: .now() + 300) == .success, "a call waited forever")
    #expect(unexpected.load(ordering: .relaxed) == 0)
    _ = (table, firstMapping.iova, secondMapping.iova)
  }

  @Test("a descriptor closed while other threads call through it: calls before the close succeed, calls after fail with EBADF")
  func closeUnderCalls() throws {
    for _ in 0..<20 {
      let backend = Backend.simulated(SimulatedKernel())
      let iommufd = try IOMMUFD.open(backend: backend)
      let ioas = try iommufd.allocateIOAS()
      let bad = Atomic<Int>(0)
      DispatchQueue.concurrentPerform(iterations: 4) { thread in
        if thread == 0 {
          try? iommufd.close()
          return
        }
        for _ in 0..<50 {
          do throws(IommufdError) { _ = try ioas.iovaRanges() } catch where error.errno == .badFileDescriptor {} catch {
            bad.add(1, ordering: .relaxed)
          }
        }
      }
      #expect(bad.load(ordering: .relaxed) == 0)
    }
  }

  /// The negative control of the ThreadSanitizer run: a plain unsynchronised counter
  /// shared by two threads. It runs only when `IOMMUFD_TSAN_NEGATIVE_CONTROL=1`, where
  /// `Scripts/test.sh` expects ThreadSanitizer to report it; a TSan run that stays quiet
  /// here could not see races at all.
  ///
  /// The two threads meet on a relaxed atomic before they write, so both are alive at
  /// once and nothing orders their writes: a relaxed atomic gives ThreadSanitizer no
  /// happens-before edge. Without the meeting, a loaded machine could run the first thread
  /// to its end before the second starts, and the runtime's own locks around thread start
  /// and exit would then order the two (a CI run saw no report that way).
  @Test(
    "negative control: a planted data race (run only under IOMMUFD_TSAN_NEGATIVE_CONTROL=1, where TSan must flag it)",
    .enabled(if: ProcessInfo.processInfo.environment["IOMMUFD_TSAN_NEGATIVE_CONTROL"] == "1"))
  func plantedRace() {
    final class Counter: @unchecked Sendable {
      var value = 0
      let arrived = Atomic<Int>(0)
    }
    let counter = Counter()
    let group = DispatchGroup()
    for _ in 0..<2 {
      group.enter()
      Thread.detachNewThread {
        counter.arrived.add(1, ordering: .relaxed)
        while counter.arrived.load(ordering: .relaxed) < 2 {}
        for _ in 0..<100_000 { counter.value += 1 }
        group.leave()
      }
    }
    group.wait()
    #expect(counter.value > 0)
  }
}
