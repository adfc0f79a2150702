import ArgumentParser
import Iommufd
import IommufdSimulator
import IommufdEdu
import SystemPackage

/// The main job: a DMA round trip through the IOMMU with QEMU's edu device, on the real
/// kernel when the host has `/dev/iommu` and an edu device bound to vfio-pci, otherwise on
/// the simulated kernel with a simulated edu device.
@main
struct EduDMA: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "edu-dma",
    abstract: "Map memory, attach an edu device, DMA through the IOMMU and back, and report.")

  @Flag(help: "Use the simulated kernel even when /dev/iommu exists.")
  var simulated = false

  @Option(help: "PCI address of the edu device (kernel backend); default: the first edu with a VFIO cdev.")
  var device: String?

  @Option(help: "Bytes per transfer (1-4095).")
  var count = 4095

  func run() throws {
    let backend: Backend = simulated ? .simulated(SimulatedKernel(devices: [SimulatedEduDevice()])) : .automatic(simulating: [SimulatedEduDevice()])
    print("backend: \(backend.simulator == nil ? "kernel" : "simulated") (\(backend.reason))")

    let path: FilePath
    if backend.simulator != nil {
      path = SimulatedKernel.devicePath(0)
    } else if let device, let address = PCIAddress(device) {
      path = try VFIODiscovery().cdevPath(for: address)
    } else {
      guard let edu = try VFIODiscovery().devices().first(where: { $0.vendorID == 0x1234 && $0.deviceID == 0x11e8 && $0.cdevPath != nil }) else {
        throw ValidationError("no edu device (1234:11e8) bound to vfio-pci with a cdev; bind one or pass --simulated")
      }
      path = edu.cdevPath!
    }

    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let device = try VFIODevice.open(path, backend: backend)
    let deviceID = try device.bind(to: iommufd)
    let pageTable = try device.attach(to: ioas)
    print("device \(path): bound as id \(deviceID), attached to IOAS \(ioas.id) through HWPT \(pageTable)")
    let ranges = try ioas.iovaRanges()
    print("IOVA ranges: \(ranges.ranges.map(\.description).joined(separator: ", ")), alignment 0x\(String(ranges.alignment, radix: 16))")

    let source = try DMABuffer(length: 4096, backend: backend)
    let destination = try DMABuffer(length: 4096, backend: backend)
    for index in 0..<count { source.bytes[index] = UInt8(truncatingIfNeeded: index &* 7 &+ 3) }
    var sourceMapping = try ioas.map(source, at: .fixed(0x10_0000), access: .readable)
    var destinationMapping = try ioas.map(destination, at: .fixed(0x20_0000), access: .writable)
    print("mapped source at IOVA 0x\(String(sourceMapping.iova, radix: 16)) (read-only), destination at 0x\(String(destinationMapping.iova, radix: 16)) (write-only)")

    let edu = try EduDriver(device: device)
    print("edu identification 0x\(String(try edu.read32(0), radix: 16)), liveness 0x12345678 -> 0x\(String(try edu.livenessCheck(0x1234_5678), radix: 16))")
    try edu.enableBusMaster()
    let interrupt = try EventFD(backend: backend)
    try device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [interrupt])

    try edu.copyToDevice(from: sourceMapping.iova, count: count, interrupt: true)
    let signals = try interrupt.wait()
    print("RAM -> device: \(count) bytes; MSI signalled \(signals) time(s); interrupt status 0x\(String(try edu.interruptStatus(), radix: 16))")
    try edu.acknowledgeInterrupt(EduDriver.dmaInterrupt)

    try edu.copyFromDevice(to: destinationMapping.iova, count: count)
    let same = (0..<count).allSatisfy { source.bytes[$0] == destination.bytes[$0] }
    print("device -> RAM: \(count) bytes; round trip \(same ? "matches" : "DIFFERS")")

    // A device write to an IOVA that is not mapped must not reach memory.
    try edu.copyFromDevice(to: 0x30_0000, count: 16)
    if let simulator = backend.simulator {
      for fault in simulator.dmaFaults { print("DMA fault: \(fault.isWrite ? "write" : "read") of \(fault.length) bytes at 0x\(String(fault.iova, radix: 16)): \(fault.reason)") }
    } else {
      print("DMA to unmapped IOVA 0x300000 issued: the IOMMU blocked it (faults are logged by the host kernel)")
    }

    try device.disableInterrupts(VFIOPCIInterrupt.msi)
    try sourceMapping.unmap()
    try destinationMapping.unmap()
    try device.detach()
    try device.close()
    try ioas.destroy()
    try iommufd.close()
    if let simulator = backend.simulator {
      print("after teardown: \(simulator.pinnedPages) pinned pages, \(simulator.openFileCount) simulated files open")
    }
    if !same { throw ExitCode.failure }
  }
}
