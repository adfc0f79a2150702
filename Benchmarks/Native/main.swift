import MallocInterposerSwift
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// iommufd-bench: the API's cost above the seam (allocations and instructions per call),
// the simulated kernel at a thousand and a million live mappings, and simulated DMA, each
// line against a floor measured in the same run (the seam itself, a bare binary search,
// memcpy, a bare load), with its goal and whether it was met. Any failed operation ends
// the run with status 1; missed goals are reported, not failed.
//
//   swift run -c release iommufd-bench [--only api|simulator|device]
//   iommufd-bench --lab CDEV FLOOR.so  (in the lab's VT-d boot: the API against C, FLOOR.so
//                                       being Benchmarks/C/iommufd-floor.c built as a shared library)
//
// It counts allocations with malloc-interposer (it re-executes itself with the library
// preloaded) and instructions with valgrind's callgrind (`valgrind` must be installed).

/// This executable's path.
func executablePath() -> String {
  var buffer = [CChar](repeating: 0, count: 4096)
  let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
  guard count > 0 else { abort("readlink /proc/self/exe", Errno(rawValue: errno)) }
  return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Whether malloc-interposer sees this process's allocations (it must be preloaded).
func interposerActive() -> Bool {
  MallocInterposerSwift.initialize()
  MallocInterposerSwift.reset()
  MallocInterposerSwift.hook()
  let array = [UInt64](repeating: sink, count: 64 + Int(sink % 2))  // kept: the optimiser may drop a bare malloc
  MallocInterposerSwift.unhook()
  sink &+= array[Int(sink % 64)]
  return MallocInterposerSwift.getStatistics().mallocCount > 0
}

let arguments = CommandLine.arguments
if arguments.count == 3, arguments[1] == "--run-loops", let count = Int(arguments[2]) {
  runLoops(count: count)  // the callgrind child
  exit(0)
}
if arguments.count == 3, arguments[1] == "--profile-translation", let live = Int(arguments[2]) {
  profileTranslation(live: live)  // for callgrind: lookups only
  exit(0)
}
var only: String?
var lab: (device: String, floor: String, counted: Bool)?
if arguments.count == 3, arguments[1] == "--only" {
  only = arguments[2]
} else if arguments.count == 4, arguments[1] == "--lab" || arguments[1] == "--lab-counted" {
  lab = (arguments[2], arguments[3], arguments[1] == "--lab-counted")
} else if arguments.count != 1 {
  print("usage: iommufd-bench [--only api|simulator|device] | --lab CDEV FLOOR.so | --lab-counted CDEV FLOOR.so")
  exit(64)
}
let executable = executablePath()
if !interposerActive() {
  // Re-executed with the interposer preloaded (it sits next to this executable).
  let library = String(executable.prefix(through: executable.lastIndex(of: "/")!)) + "libMallocInterposerSwift.so"
  guard getenv("IOMMUFD_BENCH_PRELOADED") == nil, access(library, R_OK) == 0 else {
    print("iommufd-bench: malloc-interposer is not active and \(library) cannot be preloaded")
    exit(1)
  }
  setenv("LD_PRELOAD", library, 1)
  setenv("IOMMUFD_BENCH_PRELOADED", "1", 1)
  let argv = arguments.map { strdup($0) } + [nil]
  execv(executable, argv)
  abort("execv \(executable)", Errno(rawValue: errno))
}

var machine = utsname()
uname(&machine)
let host = withUnsafeBytes(of: machine.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
print("iommufd-bench on Linux \(host), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs; times are the minimum (and median) of the rounds")
if let lab {
  labTable(device: lab.device, floor: lab.floor, counted: lab.counted)
  only = "lab"  // nothing else: the native lines belong to the host
}
if only == nil || only == "api" {
  mallocsPerCall()
  instructionsPerCall(executable: executable)
}
if only == nil || only == "simulator" {
  simulatorScale()
  copiesPerIoctl()
}
if only == nil || only == "device" {
  deviceDMA()
  dirtyHarvest()
  mmioLoads()
}
let missed = goals.filter { !$0.met }
if !goals.isEmpty {  // the timed lab table has none
  print("goals: \(goals.count - missed.count) of \(goals.count) met\(missed.isEmpty ? "" : "; missed: " + missed.map(\.name).joined(separator: ", "))")
}
print("(checksum \(sink % 10))")
