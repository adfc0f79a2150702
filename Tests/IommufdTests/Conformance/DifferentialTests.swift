import Foundation
import Iommufd
import IommufdSimulator
import IommufdEdu
import Synchronization
import SystemPackage
import Testing

/// A sequence of calls run on both backends; failures are part of the transcript, not the end.
struct DifferentialScenario: Sendable {
  let name: String
  let body: @Sendable (_ backend: Backend, _ device: FilePath, _ note: (String) -> Void) -> Void

  static func step<T>(_ note: (String) -> Void, _ label: String, _ body: () throws -> T) -> T? {
    do {
      let value = try body()
      note("\(label) = \(value)")
      return value
    } catch {
      note("\(label) failed: \((error as? IommufdError)?.errno.rawValue ?? -1)")
      return nil
    }
  }

  static let all: [DifferentialScenario] = [
    DifferentialScenario(name: "ids, maps and unmaps without a device") { backend, _, note in
      guard let iommufd = step(note, "open", { try IOMMUFD.open(backend: backend) }) else { return }
      let a = step(note, "ioas a", { try iommufd.allocateIOAS() })
      let b = step(note, "ioas b", { try iommufd.allocateIOAS() })
      let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
      for (length, placement) in [(UInt64(0x1000), IOVAPlacement.anywhere), (0x3000, .anywhere), (0x1000, .fixed(0x10000)), (0x2000, .fixed(0xF000)), (1, .anywhere), (0x20_0000, .anywhere)] {
        _ = step(note, "map \(length) \(placement)", { try b?.unsafeMap(address: address + Int(length % 7), length: length, at: placement) })
      }
      _ = step(note, "ranges", { try b?.iovaRanges() })
      _ = step(note, "unmap split", { try b?.unmap(iova: 0x10000, length: 0x800) })
      _ = step(note, "unmap all", { try b?.unmapAll() })
      _ = step(note, "destroy a", { try a?.destroy() })
      _ = step(note, "ioas c", { try iommufd.allocateIOAS().id })
    },
    DifferentialScenario(name: "attach, replace, detach, close with edu") { backend, path, note in
      guard let iommufd = step(note, "open", { try IOMMUFD.open(backend: backend) }),
        let device = step(note, "device", { try VFIODevice.open(path, backend: backend) })
      else { return }
      _ = step(note, "info before bind", { try device.info() })
      _ = step(note, "bind", { try device.bind(to: iommufd) })
      let first = step(note, "ioas", { try iommufd.allocateIOAS() })
      let second = step(note, "ioas", { try iommufd.allocateIOAS() })
      if let first, let second {
        _ = step(note, "attach first", { try device.attach(to: first) })
        _ = step(note, "ranges first", { try first.iovaRanges() })
        _ = step(note, "map MSI window", { try first.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x7000_0000)!, length: 0x1000, at: .fixed(0xFEE0_0000)) })
        _ = step(note, "attach second", { try device.attach(to: second) })
        _ = step(note, "destroy first", { try first.destroy() })
        _ = step(note, "detach", { try device.detach() })
        _ = step(note, "detach again", { try device.detach() })
      }
      _ = step(note, "irq info", { (0..<6).map { index in (try? device.irqInfo(index))?.count ?? -1 } })
      _ = step(note, "region sizes", { (0..<10).map { index in (try? device.regionInfo(index))?.size ?? 0xdead } })
      _ = step(note, "close", { try device.close() })
      _ = step(note, "ioas after close", { try iommufd.allocateIOAS().id })
    },
    DifferentialScenario(name: "edu DMA through the IOMMU") { backend, path, note in
      guard let iommufd = step(note, "open", { try IOMMUFD.open(backend: backend) }),
        let device = step(note, "device", { try VFIODevice.open(path, backend: backend) }),
        let ioas = step(note, "ioas", { try iommufd.allocateIOAS() }),
        step(note, "bind", { try device.bind(to: iommufd) }) != nil,
        step(note, "attach", { try device.attach(to: ioas) }) != nil,
        let buffer = step(note, "buffer", { try DMABuffer(length: 8192, backend: backend) }),
        let edu = step(note, "edu", { try EduDriver(device: device) })
      else { return }
      for index in 0..<4096 { buffer.bytes[index] = UInt8(truncatingIfNeeded: index) }
      _ = step(note, "map", { try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 8192, at: .fixed(0x10_0000)) })
      _ = step(note, "bus master", { try edu.enableBusMaster() })
      _ = step(note, "to device", { try edu.copyToDevice(from: 0x10_0000, count: 1000) })
      _ = step(note, "from device", { try edu.copyFromDevice(to: 0x10_1000, count: 1000) })
      note("copied back: \(Array(buffer.bytes[4096..<5096]) == Array(buffer.bytes[0..<1000]))")
      _ = step(note, "status", { try edu.read32(0x98) })
      _ = step(note, "factorial", { try edu.factorial(10) })
    },
  ]
}

@Suite("differential: simulator against the kernel")
struct DifferentialTests {
  @Test(
    "every scenario makes the same calls with the same results on both backends",
    .enabled(if: Platform.kernel?.devicePath != nil, "needs /dev/iommu and IOMMUFD_TEST_DEVICE (the lab)"))
  func compare() throws {
    let device = Platform.kernel!.devicePath!
    var calls = 0
    var divergences = 0
    for scenario in DifferentialScenario.all {
      let kernel = TranscriptSystemCalls(KernelSystemCalls())
      scenario.body(Backend(kernel), device) { kernel.note($0) }
      // The simulator answers as the release the kernel is.
      var configuration = SimulatedKernel.Configuration()
      configuration.release = Platform.kernel?.release ?? .linux6_12
      let simulated = TranscriptSystemCalls(SimulatedKernel(configuration: configuration, devices: [SimulatedEduDevice()]))
      scenario.body(Backend(simulated), SimulatedKernel.devicePath(0)) { simulated.note($0) }
      // Polls of edu's DMA command (0x98) and status (0x20) registers count time, which
      // differs by design (QEMU finishes a DMA on a 100 ms timer and a factorial in a
      // thread, the model at once): they are left out.
      func comparable(_ lines: [String], _ path: FilePath) -> [String] {
        lines.filter { !$0.hasPrefix("pread 0x98 ") && !$0.hasPrefix("pread 0x20 ") }.map { $0.replacingOccurrences(of: path.string, with: "DEVICE") }
      }
      let a = comparable(kernel.transcript, device)
      let b = comparable(simulated.transcript, SimulatedKernel.devicePath(0))
      calls += max(a.count, b.count)
      for index in 0..<max(a.count, b.count) {
        let left = index < a.count ? a[index] : "(nothing)"
        let right = index < b.count ? b[index] : "(nothing)"
        if left != right {
          divergences += 1
          Issue.record("\(scenario.name), call \(index): kernel \(left) | simulator \(right)")
        }
      }
    }
    print("differential: \(DifferentialScenario.all.count) scenarios, \(calls) calls compared, \(divergences) divergences")
    #expect(divergences == 0)
  }
}
