import Iommufd

/// A PCIe root port of the simulated machine with a hot-plug slot below it, holding the
/// functions of one device: how a VMM test gets devices that a hot reset can reach (a
/// device on the root bus has no slot or bus reset: `ENODEV`).
///
/// The port's secondary bus holds function 0, 1, ... of device 0 in the order given, at
/// most 8 (the rest are left out). With more than one, function 0's config space says the
/// device is multifunction (header type bit 7), as QEMU's `multifunction=on` makes it. A
/// lone function has a bus reset (`reset_method` is `bus`), so `VFIODevice.reset()` works
/// on it; functions that share the slot have none, and reset together through
/// `VFIODevice.hotReset()`.
///
/// IOMMU groups: the functions of a device without ACS (QEMU's edu, a conventional PCI
/// device) share one group, function 0's, as Linux groups them behind a port that has ACS;
/// binding one of them to an iommufd claims the group for that iommufd (another iommufd's
/// bind is `EPERM`), and a hot reset counts the others as owned. With `isolatedFunctions`
/// (a device with ACS) each function is its own group.
public struct SimulatedRootPort: Sendable {
  /// The functions in the slot, function 0 first.
  public let functions: [SimulatedPCIDevice]
  /// Whether each function is its own IOMMU group (the device has ACS).
  public let isolatedFunctions: Bool

  /// A root port whose slot holds `functions` (at most 8; the rest are left out), sharing
  /// one IOMMU group unless `isolatedFunctions`.
  public init(functions: [SimulatedPCIDevice], isolatedFunctions: Bool = false) {
    self.functions = Array(functions.prefix(8))
    self.isolatedFunctions = isolatedFunctions
  }
}

/// Where each device of the simulated machine sits: on the root bus (the plain devices),
/// or behind a root port.
struct SimulatedTopology {
  /// Each device's address, by device number.
  let addresses: [PCIAddress]
  /// Each device's root port (its index), or nil on the root bus, by device number.
  let ports: [Int?]
  /// Each device's IOMMU group number, by device number: its own number, or function 0's
  /// for the functions of a port that share a group.
  let groups: [Int]

  /// Root-bus devices first (see ``SimulatedKernel/pciAddress(ofDevice:)``), then each
  /// port's functions on its own bus, the buses numbered after the root bus's.
  init(rootDevices: Int, ports: [SimulatedRootPort]) {
    var addresses = (0..<rootDevices).map { SimulatedKernel.pciAddress(ofDevice: $0) }
    var owners: [Int?] = Array(repeating: nil, count: rootDevices)
    var groups = Array(0..<rootDevices)
    let firstBus = (rootDevices + 1) / 32 + 1
    for (index, port) in ports.enumerated() {
      let first = addresses.count
      for function in port.functions.indices {
        groups.append(port.isolatedFunctions ? addresses.count : first)
        addresses.append(PCIAddress(bus: UInt8(truncatingIfNeeded: firstBus + index), device: 0, function: UInt8(function))!)
        owners.append(index)
      }
    }
    self.addresses = addresses
    self.ports = owners
    self.groups = groups
  }

  /// The devices in IOMMU group `group`.
  func members(ofGroup group: Int) -> [Int] { groups.indices.filter { groups[$0] == group } }

  /// The devices a slot or bus reset of device `number` reaches, in the bus's order; nil
  /// for a device on the root bus, which none reaches.
  func resetScope(of number: Int) -> [Int]? {
    guard let port = ports[number] else { return nil }
    return ports.indices.filter { ports[$0] == port }
  }

  /// The kernel's function reset methods for device `number` (`reset_method`, from
  /// `pci_init_reset_methods`): `flr` for a model with its own reset; `bus` for function 0
  /// behind a port, which the kernel probes before its other functions are on the bus
  /// (they never get it).
  func resetMethods(of number: Int, device: SimulatedPCIDevice) -> [String] {
    let functionZero = ports[number] != nil && addresses[number].function == 0
    return (device.supportsReset ? ["flr"] : []) + (functionZero ? ["bus"] : [])
  }

  /// Whether a function reset of device `number` works (vfio-pci's `reset_works`): its
  /// own FLR, or a bus reset while it is alone on its bus (function 0's `bus` fails once
  /// other functions share the bus).
  func resetWorks(of number: Int, device: SimulatedPCIDevice) -> Bool {
    device.supportsReset || resetScope(of: number)?.count == 1
  }
}
