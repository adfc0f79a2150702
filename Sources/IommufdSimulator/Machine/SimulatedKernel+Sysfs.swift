import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension SimulatedSysfs.Node {
  /// Whether it is a file (an attribute, readable or not), which a path cannot go through.
  var isFile: Bool {
    switch self {
    case .file, .writeOnly: true
    case .directory, .link: false
    }
  }
}

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
    // A plain path (no empty, `.` or `..` component) is its own normal form: split it
    // directly, which costs far less than FilePath's normalization.
    let components: [String]
    if !text.contains("//"), !text.contains("/."), !text.hasSuffix("/") {
      components = text.split(separator: "/").map(String.init)
    } else {
      let normal = path.lexicallyNormalized()
      guard normal.isAbsolute else { return nil }
      components = normal.components.map(\.string)
    }
    guard let first = components.first else { return nil }
    if first == "sys" { return components }
    if first == "dev", components.count >= 2, components[1] == "iommu" || components[1] == "vfio" { return components }
    return nil
  }

  /// ``machinePath(_:)``, with the kernel's check on `.` and `..`: a component before one
  /// of them must be a directory (ENOTDIR through a file, as `/dev/iommu/.` is), which the
  /// lexical normalization alone would not see.
  func machineComponents(_ path: FilePath) throws(Errno) -> [String]? {
    guard let components = try Self.machinePath(path) else { return nil }
    guard path.string.contains("/.") else { return components }  // no `.` or `..` component
    let raw = path.components.map(\.string)
    guard raw.contains(where: { $0 == "." || $0 == ".." }) else { return components }
    try locked { state throws(Errno) in
      var prefix: [String] = []
      for component in raw {
        guard component == "." || component == ".." else {
          prefix.append(component)
          continue
        }
        if SimulatedSysfs.node(prefix, devices: state.devices, topology: state.topology, enumerated: state.enumeratedConfig, mediated: state.mediated)?.isFile == true {
          throw .notDirectory
        }
        if component == "..", !prefix.isEmpty { prefix.removeLast() }
      }
    }
    return components
  }

  /// The node at `components`, or the errno of the kernel's walk to it: ENOTDIR through a
  /// file, ENAMETOOLONG for a missing name over NAME_MAX in devtmpfs (`simple_lookup`;
  /// kernfs has no such check, so sysfs says ENOENT), else ENOENT.
  func machineNode(_ components: [String]) throws(Errno) -> SimulatedSysfs.Node {
    try locked { state throws(Errno) in
      func node(_ prefix: ArraySlice<String>) -> SimulatedSysfs.Node? {
        SimulatedSysfs.node(Array(prefix), devices: state.devices, topology: state.topology, enumerated: state.enumeratedConfig, mediated: state.mediated)
      }
      if let found = node(components[...]) { return found }
      // The walk starts at the machine's own nodes: /sys, or /dev/iommu and /dev/vfio.
      let first = components[0] == "dev" ? 2 : 1
      for count in first...components.count where node(components.prefix(count)) == nil {
        if count > 1, let parent = node(components.prefix(count - 1)), parent.isFile { throw .notDirectory }
        if components[0] == "dev", components[count - 1].utf8.count > 255 { throw .fileNameTooLong }
        throw .noSuchFileOrDirectory
      }
      throw .noSuchFileOrDirectory
    }
  }

  /// The simulated machine's sysfs and `/dev/vfio` (see ``pciAddress(ofDevice:)``); other
  /// paths the host's.
  public func directoryEntries(_ path: FilePath) throws(Errno) -> [String] {
    guard let components = try machineComponents(path) else { return try KernelSystemCalls().directoryEntries(path) }
    switch try machineNode(components) {
    case .directory(let names): return names
    case .file, .link, .writeOnly: throw .notDirectory
    }
  }

  /// An attribute of the simulated machine's sysfs; other paths the host's.
  public func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8] {
    guard let components = try machineComponents(path) else { return try KernelSystemCalls().readFile(path, maximumBytes: maximumBytes) }
    switch try machineNode(components) {
    case .file(let bytes): return Array(bytes.prefix(max(0, maximumBytes)))
    case .directory: throw .isDirectory
    case .link: throw .noSuchFileOrDirectory  // the simulated links point outside the tree
    case .writeOnly: throw .permissionDenied  // kernfs: no show, no read
    }
  }

  /// A link of the simulated machine's sysfs, and `/proc/self/fd/N` of a simulated
  /// iommufd or device cdev (the node it was opened by, as procfs shows a character
  /// device); other paths the host's.
  public func readLink(_ path: FilePath) throws(Errno) -> String {
    if let opened = openedNode(path) { return opened }
    guard let components = try machineComponents(path) else { return try KernelSystemCalls().readLink(path) }
    switch try machineNode(components) {
    case .link(let target): return target
    case .file, .directory, .writeOnly: throw .invalidArgument
    }
  }

  /// The node `/proc/self/fd/N` names when `N` is a simulated iommufd or device cdev.
  private func openedNode(_ path: FilePath) -> String? {
    let text = path.string
    let prefix = "/proc/self/fd/"
    guard text.hasPrefix(prefix), let number = Int32(text.dropFirst(prefix.count)) else { return nil }
    return locked { state -> String? in
      switch state.files[number] {
      case .iommufd?: "/dev/iommu"
      case .device(let file)?: Self.devicePath(file.number).string
      case .mediated(let file)?: Self.devicePath(file.instance.vfioIndex).string
      default: nil
      }
    }
  }

  /// Whether a node of the simulated machine exists (everything in it may be read and
  /// written, as by root); other paths the host's.
  public func checkAccess(_ path: FilePath, mode: Int32) throws(Errno) {
    guard let components = try machineComponents(path) else { return try KernelSystemCalls().checkAccess(path, mode: mode) }
    guard mode & ~(R_OK | W_OK | X_OK) == 0 else { throw .invalidArgument }
    let node = try machineNode(components)
    if node.isFile, mode & X_OK != 0 { throw .permissionDenied }
  }

  /// A write to the simulated machine's files: an mdev type's `create` and an mdev's
  /// `remove` act (see ``SimulatedMediatedParent``); its other sysfs attributes are
  /// read-only (kernfs refuses to open them for writing with EACCES, even for root),
  /// `/dev/iommu` and an unbound cdev take no write (EINVAL), a directory or a link to one
  /// is EISDIR; other paths the host's.
  public func writeFile(_ path: FilePath, bytes: [UInt8]) throws(Errno) {
    guard let components = try machineComponents(path) else { return try KernelSystemCalls().writeFile(path, bytes: bytes) }
    switch try machineNode(components) {
    case .directory, .link: throw .isDirectory  // (the machine's links all name directories)
    case .file: throw components[0] == "dev" ? .invalidArgument : .permissionDenied
    case .writeOnly: try locked { state throws(Errno) in try state.mediated.write(components, bytes) }
    }
  }
}
