import Iommufd
import IommufdSimulator

/// The second device of the simulated machine: a network card as a VMM sees one, with an
/// MSI-X table (8 vectors) and a 16 KiB memory BAR holding it (BAR1), and a register BAR
/// (BAR0) whose write of `n` to offset 0 raises MSI-X vector `n` (a packet arrived).
final class SimulatedNIC: SimulatedPCIDevice, @unchecked Sendable {
  init() {
    super.init(
      vendorID: 0x1af4, deviceID: 0x1041, classCode: 0x020000, revision: 1,
      bars: [BAR(size: 0x1000), .memory(size: 0x4000)], msiCount: 0,
      msix: MSIX(vectors: 8, tableBAR: 1, tableOffset: 0, pbaOffset: 0x800))
  }

  override func writeBAR(_ bar: Int, offset: UInt64, bytes: [UInt8], bus: SimulatedBus) {
    guard bar == 0, offset == 0, let vector = bytes.first else { return }
    bus.raiseInterrupt(index: VFIOPCIInterrupt.msix, vector: Int(vector))
  }
}
