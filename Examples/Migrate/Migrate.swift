import ArgumentParser
import Iommufd
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Live migration of a device's state between two sessions, as a VMM's migration loop does
/// it: the kernel's mtty sample (two serial ports) as the device, a source that runs with
/// serial state in its UARTs, a pre-copy while it runs, the stop-and-copy, and a destination
/// that resumes and runs with the same state. Prints each step and the bytes moved.
///
/// On the kernel it needs root and the mtty sample (the lab's kernels build it in); without
/// `/dev/iommu` (or with `--simulated`) the simulator's mtty model does the same.
@main
struct Migrate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "migrate",
    abstract: "Move an mtty mediated device's state into another, through migration v2, and report the bytes moved.")

  @Flag(help: "Use the simulated machine even when /dev/iommu exists.")
  var simulated = false

  func run() throws {
    let onKernel = !simulated && access("/dev/iommu", F_OK) == 0
    let backend: Backend = onKernel ? .kernel : .simulated(SimulatedKernel(mediatedParents: [.mtty()]))
    print("backend: \(onKernel ? "kernel (/dev/iommu exists)" : "simulated machine with the mtty parent")")
    let discovery = VFIODiscovery(backend: backend)
    let source = try discovery.createMediatedDevice(ofType: "mtty-2")
    let target = try discovery.createMediatedDevice(ofType: "mtty-2")
    defer {
      for id in [source.id, target.id] { try? discovery.removeMediatedDevice(id) }
    }
    var passed = true
    do {
      let moved = try migrate(source.id, into: target.id, backend: backend, passed: &passed)
      print("migrate: \(moved) bytes moved, \(passed ? "all passed" : "FAILED")")
    }
    if !passed { throw ExitCode.failure }
  }

  /// Puts serial state into `sourceID`, migrates it into `targetID`, checks it there;
  /// returns the bytes of state moved.
  func migrate(_ sourceID: MediatedDeviceID, into targetID: MediatedDeviceID, backend: Backend, passed: inout Bool) throws -> Int {
    func check(_ what: String, _ holds: Bool) {
      print("\(holds ? "ok" : "FAILED"): \(what)")
      passed = passed && holds
    }
    // Each side is its own session: an iommufd, the device bound and attached to an IOAS.
    let source = try VFIOSession.open(mediatedDevice: sourceID, backend: backend).device
    let target = try VFIOSession.open(mediatedDevice: targetID, backend: backend).device
    defer {
      try? source.close()
      try? target.close()
    }
    print("source \(sourceID): migration \(try source.migrationFlags()), state \(try source.migrationState()), \(try source.migrationDataSize()) bytes to save")

    // Serial state: a scratch value, 8 data bits, bytes queued in each port's FIFO.
    for (index, text) in ["hi", "there"].enumerated() {
      let bar = try source.regionInfo(index)
      try source.write(UInt8(0xA0 + index), region: bar, at: 7)
      try source.write(UInt8(0x03), region: bar, at: 3)
      for byte in text.utf8 { try source.write(byte, region: bar, at: 0) }
    }

    // Pre-copy while the device runs, then stop-and-copy on the same stream.
    guard let stream = try source.setMigrationState(.preCopy) else { throw ValidationError("no pre-copy stream") }
    let info = try stream.precopyInfo()
    var state = try stream.readAll()
    print("PRE_COPY: \(state.count) bytes (initial \(info.initialBytes), dirty \(info.dirtyBytes))")
    let more = try source.setMigrationState(.stopCopy)
    let rest = try (more ?? stream).readAll()
    state += rest
    print("STOP_COPY: \(rest.count) bytes more on \(more == nil ? "the same stream" : "a new stream"), \(state.count) in all")
    try source.setMigrationState(.stop)
    try stream.close()

    // The destination: RUNNING → RESUMING (through RUNNING_P2P and STOP), the state in, RUNNING.
    guard let resume = try target.setMigrationState(.resuming) else { throw ValidationError("no resuming stream") }
    try resume.writeAll(state)
    try target.setMigrationState(.running)
    try resume.close()
    print("RESUMING: \(state.count) bytes written; now \(try target.migrationState())")

    for (index, text) in ["hi", "there"].enumerated() {
      let bar = try target.regionInfo(index)
      check("port \(index): scratch register 0x\(String(0xA0 + index, radix: 16))", try target.read(UInt8.self, region: bar, at: 7) == UInt8(0xA0 + index))
      check("port \(index): line control 0x03", try target.read(UInt8.self, region: bar, at: 3) == 0x03)
      let received = try text.utf8.map { _ in try target.read(UInt8.self, region: bar, at: 0) }
      check("port \(index): the queued bytes \(text.debugDescription) arrive", received == Array(text.utf8))
    }
    return state.count
  }
}
