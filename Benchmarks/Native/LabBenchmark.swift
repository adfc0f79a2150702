import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The API against C on the real kernel, in one boot (`--lab CDEV FLOOR`): each round
// times every operation through the Swift API, then through FLOOR (Benchmarks/C's
// iommufd-floor, built against the kernel's own headers), on the same device; the table
// gives the minimum and median of the rounds and the API/C ratios.

/// One operation of the lab table.
struct LabOperation {
  let name: String
  let iterations: Int
  /// The goal for API/C.
  let goal: Double
  /// The C floor's operation it is compared with.
  var floor: String? = nil
  var floorName: String { floor ?? name }
}

let labOperations = [
  LabOperation(name: "map-unmap-4k", iterations: 300, goal: 1.05),
  LabOperation(name: "unsafe-map-unmap-4k", iterations: 300, goal: 1.05, floor: "map-unmap-4k"),
  LabOperation(name: "map-unmap-64m", iterations: 2, goal: 1.02),
  LabOperation(name: "option-get", iterations: 2000, goal: 1.10),
  LabOperation(name: "iova-ranges", iterations: 2000, goal: 1.10),
  LabOperation(name: "attach-detach", iterations: 200, goal: 1.10),
]

/// Nanoseconds per operation of `operation` through the API, with the C program's setup.
func apiTiming(_ operation: LabOperation, device path: String) throws(IommufdError) -> Double {
  let iommufd = try IOMMUFD.open()
  let ioas = try iommufd.allocateIOAS()
  let device = try VFIODevice.open(FilePath(path))
  defer { try? device.close() }
  try device.bind(to: iommufd)
  try device.attach(to: ioas)
  let buffer = try DMABuffer(length: operation.name == "map-unmap-64m" ? 64 << 20 : 4096)
  buffer.bytes.initializeMemory(as: UInt8.self, repeating: 1)
  try ioas.map(buffer, at: .fixed(0x4000_0000)).unmap()  // warm-up
  var start = now()
  switch operation.name {
  case "map-unmap-4k", "map-unmap-64m":
    for _ in 0..<operation.iterations { try ioas.map(buffer, at: .fixed(0x4000_0000)).unmap() }
  case "unsafe-map-unmap-4k":
    let address = UnsafeRawPointer(buffer.bytes.baseAddress!)
    for _ in 0..<operation.iterations {
      let iova = try ioas.unsafeMap(address: address, length: 4096, at: .fixed(0x4000_0000))
      try ioas.unmap(iova: iova, length: 4096)
    }
  case "option-get":
    for _ in 0..<operation.iterations { sink &+= try ioas.hugePagesEnabled() ? 1 : 0 }
  case "iova-ranges":
    for _ in 0..<operation.iterations { sink &+= UInt64(try ioas.iovaRanges().count) }
  default:
    try device.detach()
    start = now()
    for _ in 0..<operation.iterations {
      try device.attach(to: ioas)
      try device.detach()
    }
  }
  return Double(now() - start) / Double(operation.iterations)
}

/// Nanoseconds per operation of `operation` through the C floor program.
func floorTiming(_ operation: LabOperation, device: String, floor: String) -> Double {
  var pipe: [Int32] = [0, 0]
  guard Glibc.pipe(&pipe) == 0 else { abort("pipe", Errno(rawValue: errno)) }
  var actions = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&actions)
  posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
  posix_spawn_file_actions_addclose(&actions, pipe[0])
  let arguments = [floor, operation.floorName, "\(operation.iterations)", device]
  var argv = arguments.map { strdup($0) } + [nil]
  defer { for pointer in argv { free(pointer) } }
  var child: pid_t = 0
  let spawned = posix_spawn(&child, floor, &actions, nil, &argv, environ)
  posix_spawn_file_actions_destroy(&actions)
  close(pipe[1])
  guard spawned == 0 else { abort("spawning \(floor)", Errno(rawValue: spawned)) }
  var output: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 256)
  while true {
    let count = read(pipe[0], &chunk, chunk.count)
    if count <= 0 { break }
    output += chunk[..<count]
  }
  close(pipe[0])
  var status: Int32 = 0
  waitpid(child, &status, 0)
  let text = String(decoding: output, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
  guard status == 0, let value = Double(text) else {
    print("iommufd-bench: \(arguments.joined(separator: " ")) failed (status \(status)): \(text)")
    exit(1)
  }
  return value
}

/// The API/C table: `rounds` rounds, each timing every operation through the API and then
/// through C.
func labTable(device: String, floor: String, rounds: Int = 7) {
  var api: [String: [Double]] = [:]
  var c: [String: [Double]] = [:]
  for _ in 0..<rounds {
    for operation in labOperations {
      do { api[operation.name, default: []].append(try apiTiming(operation, device: device)) } catch {
        abort("\(operation.name) through the API", error)
      }
      c[operation.name, default: []].append(floorTiming(operation, device: device, floor: floor))
    }
  }
  print("API against C on Linux \(host), \(rounds) interleaved rounds (ns per operation: minimum / median)")
  for operation in labOperations {
    let a = api[operation.name]!.sorted()
    let f = c[operation.name]!.sorted()
    let ratio = a[0] / f[0]
    let medianRatio = a[a.count / 2] / f[f.count / 2]
    report(
      "lab \(operation.name)",
      "API \(format(a[0])) / \(format(a[a.count / 2])), C \(format(f[0])) / \(format(f[f.count / 2])): \(format(ratio))x (median \(format(medianRatio))x)",
      goal: "<= \(format(operation.goal))x", met: ratio <= operation.goal)
  }
}
