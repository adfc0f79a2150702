import DevicePassthrough
import Iommufd
import IommufdSimulator
import Testing

@Suite("device passthrough on the simulated kernel")
struct PassthroughDeviceTests {
  @Test("guest RAM banks are where the device's DMA lands, and nowhere else")
  func dmaLandsInGuestRAM() throws {
    let kernel = SimulatedKernel(devices: [SimulatedEduDevice()])
    let guest = try PassthroughDevice(
      cdev: SimulatedKernel.devicePath(0),
      banks: [.init(at: 0, length: 2 << 20), .init(at: 1 << 32, length: 2 << 20)],
      backend: .simulated(kernel))
    #expect(try guest.identity() == (0x1234, 0x11e8))
    // The guest's driver turns on bus mastering (command register, bit 2).
    let config = try guest.device.regionInfo(VFIOPCIRegion.config)
    try guest.device.write(UInt16(1 << 2), region: config, at: 4)

    let bytes: [UInt8] = [1, 2, 3, 4]
    #expect(bytes.withUnsafeBytes { kernel.deviceWrite(device: 0, iova: (1 << 32) + 16, from: $0) })
    #expect(Array(guest.memory[1].bytes[16..<20]) == bytes)
    #expect(!bytes.withUnsafeBytes { kernel.deviceWrite(device: 0, iova: 2 << 20, from: $0) })
    #expect(kernel.dmaFaults.count == 1)

    try guest.unplug()
    #expect(!bytes.withUnsafeBytes { kernel.deviceWrite(device: 0, iova: 16, from: $0) })
  }

  @Test("a bank the IOAS cannot take fails with the kernel's errno")
  func overlappingBanks() {
    let kernel = SimulatedKernel(devices: [SimulatedEduDevice()])
    do {
      _ = try PassthroughDevice(
        cdev: SimulatedKernel.devicePath(0), banks: [.init(at: 0, length: 8192), .init(at: 4096, length: 8192)],
        backend: .simulated(kernel))
      Issue.record("overlapping banks were mapped")
    } catch {
      #expect(error.operation == .ioasMap && error.errno == .fileExists)
    }
    #expect(kernel.pinnedPages == 0 && kernel.openFileCount == 0)
  }
}
