import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension SimulatedKernel {
  /// The PCI address of device number `index` on the simulated machine: slot `index + 2` of
  /// bus 0 (as the lab's edu sits at 0000:00:02.0), continuing on the next bus after slot 31.
  public static func pciAddress(ofDevice index: Int) -> PCIAddress {
    let slot = UInt64(max(0, index)) + 2  // (a machine has far fewer than 8190 devices: the bus wraps past 255)
    return PCIAddress(domain: 0, bus: UInt8(truncatingIfNeeded: slot / 32), device: UInt8(slot % 32), function: 0)!
  }

  /// The path as the simulated machine's tree sees it: its components, if it is one of the
  /// machine's own (`/sys`, `/dev/iommu`, `/dev/vfio`), else nil (a host path).
  static func machinePath(_ path: FilePath) throws(Errno) -> [String]? {
    let text = path.string
    // Only paths under / can name the machine's files; longer than PATH_MAX the kernel
    // refuses before it looks (and normalizing one would take long).
    guard text.hasPrefix("/") else { return nil }
    guard text.utf8.count < 4096 else {
      if text.hasPrefix("/sys") || text.hasPrefix("/dev") { throw .fileNameTooLong }
      return nil
    }
    let normal = path.lexicallyNormalized()
    guard normal.isAbsolute else { return nil }
    let components = normal.components.map(\.string)
    guard let first = components.first else { return nil }
    if first == "sys" { return components }
    if first == "dev", components.count >= 2, components[1] == "iommu" || components[1] == "vfio" { return components }
    return nil
  }

  private func machineNode(_ components: [String]) -> SimulatedSysfs.Node? {
    locked { state in SimulatedSysfs.node(components, devices: state.devices, enumerated: state.enumeratedConfig) }
  }

  /// The simulated machine's sysfs and `/dev/vfio` (see ``pciAddress(ofDevice:)``); other
  /// paths the host's.
  public func directoryEntries(_ path: FilePath) throws(Errno) -> [String] {
    guard let components = try Self.machinePath(path) else { return try KernelSystemCalls().directoryEntries(path) }
    switch machineNode(components) {
    case .directory(let names)?: return names
    case .file?, .link?: throw .notDirectory
    case nil: throw .noSuchFileOrDirectory
    }
  }

  /// An attribute of the simulated machine's sysfs; other paths the host's.
  public func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8] {
    guard let components = try Self.machinePath(path) else { return try KernelSystemCalls().readFile(path, maximumBytes: maximumBytes) }
    switch machineNode(components) {
    case .file(let bytes)?: return Array(bytes.prefix(max(0, maximumBytes)))
    case .directory?: throw .isDirectory
    case .link?: throw .noSuchFileOrDirectory  // the simulated links point outside the tree
    case nil: throw .noSuchFileOrDirectory
    }
  }

  /// A link of the simulated machine's sysfs; other paths the host's.
  public func readLink(_ path: FilePath) throws(Errno) -> String {
    guard let components = try Self.machinePath(path) else { return try KernelSystemCalls().readLink(path) }
    switch machineNode(components) {
    case .link(let target)?: return target
    case .file?, .directory?: throw .invalidArgument
    case nil: throw .noSuchFileOrDirectory
    }
  }

  /// Whether a node of the simulated machine exists (everything in it may be read and
  /// written, as by root); other paths the host's.
  public func checkAccess(_ path: FilePath, mode: Int32) throws(Errno) {
    guard let components = try Self.machinePath(path) else { return try KernelSystemCalls().checkAccess(path, mode: mode) }
    guard mode & ~(R_OK | W_OK | X_OK) == 0 else { throw .invalidArgument }
    guard let node = machineNode(components) else { throw .noSuchFileOrDirectory }
    if case .file = node, mode & X_OK != 0 { throw .permissionDenied }
  }
}
