import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The API against C on the real kernel, in one boot (`--lab CDEV FLOOR`): FLOOR is
// Benchmarks/C's iommufd-floor, a shared library built against the kernel's own headers
// and loaded into this process. For each operation, one setup (an iommufd, an IOAS, the
// device bound and attached, a buffer) serves both sides, which then alternate, batch
// after batch, on the same objects: the same process, the same memory, the same moment.
// A round keeps each side's fastest batch (a batch that a host interrupt slowed down does
// not count); the table gives the minimum and median of the rounds and the API/C ratios.
//
// Two tables (Scripts/lab-guest.sh): `--lab` times the operations in the lab's ordinary
// boot, where the emulator's speed changes from moment to moment (the same binary's
// map-unmap-4k read 1.04x, 1.05x and 1.07x in three runs of one boot on 2026-12-03); it is
// printed for the record. `--lab-counted` runs in a boot with QEMU's instruction counting
// (`lab.sh run --count-instructions`), where the guest's clock counts the instructions the
// guest runs, the kernel's included: an exact and repeatable measure, as callgrind is
// natively. The goals are judged on that table.

/// One operation of the lab table.
struct LabOperation {
  let name: String
  /// Operations in a batch.
  let iterations: Int
  /// Batches of each side in a round; the fastest counts.
  var batches = 8
  /// The goal for API/C.
  let goal: Double
  /// The C floor's operation it is compared with.
  var floor: String? = nil
  var floorName: String { floor ?? name }
}

let labOperations = [
  LabOperation(name: "map-unmap-4k", iterations: 60, goal: 1.05),
  LabOperation(name: "unsafe-map-unmap-4k", iterations: 60, goal: 1.05, floor: "map-unmap-4k"),
  LabOperation(name: "map-unmap-64m", iterations: 1, batches: 3, goal: 1.02),
  LabOperation(name: "option-get", iterations: 400, goal: 1.10),
  LabOperation(name: "iova-ranges", iterations: 400, goal: 1.10),
  LabOperation(name: "attach-detach", iterations: 40, goal: 1.10),
]

/// The counted table's negative control: map-unmap-4k through the API with about 2,200
/// instructions of planted work per operation (some 15% of C's count). The table must see
/// it past the goal, or it could not see the API's own overhead either.
let plantedOperation = LabOperation(name: "planted-map-unmap-4k", iterations: 60, goal: 1.05, floor: "map-unmap-4k")

/// The planted work: `count` steps of a mix the optimiser cannot fold (an affine step alone
/// it combines across unrolled steps), five and a half instructions each (22 for 4 unrolled steps).
@inline(never)
func plantedWork(_ count: Int) {
  var value = sink
  for _ in 0..<count { value = (value &* 6364136223846793005 &+ 1442695040888963407) ^ (value >> 29) }
  sink = value
}

/// The C floor's batch: `iommufd_floor_batch` of Benchmarks/C/iommufd-floor.c.
typealias FloorBatch = @convention(c) (
  UnsafePointer<CChar>, Int, Int32, UInt32, Int32, UnsafeMutableRawPointer?, UInt64
) -> Double

/// Loads the floor library at `path`.
func loadFloor(_ path: String) -> FloorBatch {
  guard let library = dlopen(path, RTLD_NOW) else {
    print("iommufd-bench: cannot load the C floor \(path): \(String(cString: dlerror()))")
    exit(1)
  }
  guard let symbol = dlsym(library, "iommufd_floor_batch") else {
    print("iommufd-bench: \(path) has no iommufd_floor_batch")
    exit(1)
  }
  return unsafeBitCast(symbol, to: FloorBatch.self)
}

/// One round of `operation`: the fastest batch through the API and through C, in
/// nanoseconds per operation.
func labRound(_ operation: LabOperation, device path: String, floor: FloorBatch) throws(IommufdError) -> (api: Double, c: Double) {
  let iommufd = try IOMMUFD.open()
  let ioas = try iommufd.allocateIOAS()
  let device = try VFIODevice.open(FilePath(path))
  defer { try? device.close() }
  try device.bind(to: iommufd)
  try device.attach(to: ioas)
  let length = operation.name == "map-unmap-64m" ? 64 << 20 : 4096
  let buffer = try DMABuffer(length: length)
  buffer.bytes.initializeMemory(as: UInt8.self, repeating: 1)
  var warmUp = try ioas.map(buffer, at: .fixed(0x4000_0000))
  try warmUp.unmap()
  if operation.name == "attach-detach" { try device.detach() }
  var fastest = (api: Double.infinity, c: Double.infinity)
  for batch in 0..<operation.batches {
    // Each side goes first in every other pair of batches.
    if batch % 2 == 0 { fastest.api = min(fastest.api, try apiBatch(operation, ioas: ioas, device: device, buffer: buffer)) }
    let c = operation.floorName.withCString { name in
      floor(
        name, operation.iterations, iommufd.fileDescriptor.rawValue, ioas.id.rawValue, device.fileDescriptor.rawValue,
        buffer.bytes.baseAddress, UInt64(length))
    }
    guard c >= 0 else { abort("\(operation.floorName) through C", Errno(rawValue: Int32(-c))) }
    fastest.c = min(fastest.c, c)
    if batch % 2 == 1 { fastest.api = min(fastest.api, try apiBatch(operation, ioas: ioas, device: device, buffer: buffer)) }
  }
  return fastest
}

/// One batch of `operation` through the API, in nanoseconds per operation.
func apiBatch(_ operation: LabOperation, ioas: IOAS, device: VFIODevice, buffer: DMABuffer) throws(IommufdError) -> Double {
  let start = now()
  switch operation.name {
  case "map-unmap-4k", "map-unmap-64m", plantedOperation.name:
    let planted = operation.name == plantedOperation.name ? 400 : 0
    for _ in 0..<operation.iterations {
      var mapping = try ioas.map(buffer, at: .fixed(0x4000_0000))
      try mapping.unmap()
      if planted > 0 { plantedWork(planted) }
    }
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
    for _ in 0..<operation.iterations {
      try device.attach(to: ioas)
      try device.detach()
    }
  }
  return Double(now() - start) / Double(operation.iterations)
}

/// The API/C table: rounds of every operation, timed or (`counted`) in guest instructions.
///
/// Each line gives the minimum and median of the rounds on each side and two ratios: that
/// of the minima, and the median of the rounds' own ratios. A round's two figures come
/// from batches that alternated within milliseconds, so its ratio shares the moment's
/// speed of the emulated machine; the minima of the two sides may come from different
/// rounds, and under TCG the speed changes by up to 2x from one moment to another (medians
/// about twice the minima on 2026-12-03). Counted, both agree. The goals are those of the
/// counted table, judged on the median of the rounds' ratios; the timed one has none.
func labTable(device: String, floor path: String, counted: Bool) {
  // A counted table in a boot that does not count would judge times as instructions.
  if counted && getenv("IOMMUFD_LAB_COUNTED").map({ String(cString: $0) }) != "yes" {
    print("iommufd-bench: --lab-counted needs a boot with instruction counting (lab.sh run --count-instructions)")
    exit(1)
  }
  // Counted, the rounds agree to a few instructions: five show it.
  let rounds = counted ? 5 : 25
  let floor = loadFloor(path)
  var api: [String: [Double]] = [:]
  var c: [String: [Double]] = [:]
  var ratios: [String: [Double]] = [:]
  let operations = labOperations + (counted ? [plantedOperation] : [])
  for _ in 0..<rounds {
    for operation in operations {
      do {
        let round = try labRound(operation, device: device, floor: floor)
        api[operation.name, default: []].append(round.api)
        c[operation.name, default: []].append(round.c)
        ratios[operation.name, default: []].append(round.api / round.c)
      } catch {
        abort("\(operation.name) through the API", error)
      }
    }
  }
  let unit = counted ? "guest instructions (QEMU -icount: 1 ns each)" : "ns, timed under TCG"
  print("API against C on Linux \(host), in one process on the same objects: \(rounds) rounds, each the fastest of its alternating batches (\(unit) per operation: minimum / median of the rounds; API/C of the minima, and the median of the rounds' API/C with its quartiles)\(counted ? "; the goals are judged on the median" : "; for the record: the goals are judged on the counted table (--lab-counted)")")
  for operation in operations {
    let a = api[operation.name]!.sorted()
    let f = c[operation.name]!.sorted()
    let r = ratios[operation.name]!.sorted()
    let paired = r[r.count / 2]
    let figures =
      "API \(format(a[0])) / \(format(a[a.count / 2])), C \(format(f[0])) / \(format(f[f.count / 2])): minima \(format(a[0] / f[0]))x, rounds \(format(paired))x (quartiles \(format(r[r.count / 4]))x-\(format(r[r.count * 3 / 4]))x)"
    // Counted, the rounds agree (timed, their quartiles spread by several percent).
    if counted && r[r.count * 3 / 4] - r[r.count / 4] > 0.01 {
      print("iommufd-bench: the counted rounds of \(operation.name) disagree (\(figures)): are instructions counted?")
      exit(1)
    }
    if operation.name == plantedOperation.name {
      // Not a goal of the API: the check of the checker, which fails the run if it is blind.
      // It must read past the goal, and the planted work must count as what it is: 400
      // steps of 5.5 instructions (timed, it would read about twice that in ns).
      let planted = a[a.count / 2] - api["map-unmap-4k"]!.sorted()[rounds / 2]
      let seen = paired > operation.goal && (2_100...2_400).contains(planted)
      note(
        "lab counted negative control",
        "map-unmap-4k with 400 planted steps (2,200 instructions) per operation: \(figures), \(format(planted)) more than without; \(seen ? "past the goal and counted as planted, as it must be" : "NOT SEEN AS PLANTED: the counted table cannot be trusted")")
      if !seen { exit(1) }
    } else if counted {
      report("lab counted \(operation.name)", figures, goal: "<= \(format(operation.goal))x", met: paired <= operation.goal)
    } else {
      note("lab timed \(operation.name)", figures)
    }
  }
}
