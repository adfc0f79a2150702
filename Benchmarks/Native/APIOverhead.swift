import CIommufd
import Iommufd
import MallocInterposerSwift
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The API's own cost above the seam: each call made through the API and the same ioctl
// made on the seam directly, both on a `SystemCalls` that returns at once. Counted in
// heap allocations per call (malloc-interposer) and in instructions per call (callgrind,
// which counts repeatably on a busy machine).

/// System calls that succeed at once, writing back only the ids the API reads.
struct ReturningSystemCalls: SystemCalls {
  func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor { FileDescriptor(rawValue: 1000) }
  func close(_ fd: FileDescriptor) throws(Errno) {}
  func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
    switch Int32(truncatingIfNeeded: request) {
    case CIOMMUFD_IOMMU_IOAS_ALLOC: argument?.storeBytes(of: 1, toByteOffset: 8, as: UInt32.self)
    case CIOMMUFD_VFIO_DEVICE_BIND_IOMMUFD: argument?.storeBytes(of: 2, toByteOffset: 12, as: UInt32.self)
    default: break
    }
    return 0
  }
  /// One page for the fixture's `DMABuffer` (never unmapped).
  nonisolated(unsafe) static let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
  func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64) throws(Errno) -> UnsafeMutableRawPointer {
    guard length <= 4096, fd == nil else { throw .notSupported }
    return Self.page
  }
  func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno) {}
  func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64) throws(Errno) -> Int { 0 }
  func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64) throws(Errno) -> Int { buffer.count }
  func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int { 0 }
  func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int { buffer.count }
  func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor { FileDescriptor(rawValue: 1001) }
}

/// The handles and raw requests the measured loops use.
final class APIFixture: @unchecked Sendable {
  let calls: any SystemCalls = ReturningSystemCalls()
  let iommufd: IOMMUFD
  let ioas: IOAS
  let source: IOAS
  let device: VFIODevice
  let buffer: DMABuffer
  let address = UnsafeRawPointer(bitPattern: 0x7000_0000)!
  var fd: FileDescriptor { iommufd.fileDescriptor }
  var deviceFD: FileDescriptor { device.fileDescriptor }

  init() {
    do {
      let backend = Backend(calls)
      iommufd = try IOMMUFD.open(backend: backend)
      ioas = try iommufd.allocateIOAS()
      source = try iommufd.allocateIOAS()
      device = VFIODevice(adopting: FileDescriptor(rawValue: 1002), backend: backend)
      buffer = try DMABuffer(length: 4096, backend: backend)
      try device.bind(to: iommufd)
    } catch { abort("the API fixture", error) }
  }
}

let fixture = APIFixture()

/// One API call and the raw ioctl it makes, measured as loops of `count` calls.
struct MeasuredCall: Sendable {
  let name: String
  /// Ioctls per call.
  let ioctls: Int
  /// The measured loops.
  let api: @Sendable (Int) -> Void
  let seam: @Sendable (Int) -> Void
  /// The same loops outside the measured symbols, for warming up.
  let apiLoop: @Sendable (Int) -> Void
  let seamLoop: @Sendable (Int) -> Void
  /// Heap allocations the call's result needs (a returned handle or collection); any other
  /// allocation is the API's overhead.
  var resultAllocations = 0
}

// Each loop holds its handles (or, on the seam, the descriptor and ids) in locals taken
// before it starts, as a driver holds them, so neither side pays for reaching into the
// shared fixture on each call.
//
// Each measured loop is its own symbol, so that callgrind reports its inclusive cost by
// name; it calls a loop function that the warm-up calls directly, so one-time costs
// (metadata, lazily made caches) fall outside the measured symbol.

@inline(never) @_silgen_name("iommufd_bench_api_map_unmap")
func apiMapUnmap(_ count: Int) { apiMapUnmapLoop(count) }

@inline(never)
func apiMapUnmapLoop(_ count: Int) {
  let ioas = fixture.ioas, address = fixture.address
  do {
    for _ in 0..<count {
      let iova = try ioas.unsafeMap(address: address, length: 4096, at: .fixed(0x10_0000))
      try ioas.unmap(iova: iova, length: 4096)
    }
  } catch { abort("map+unmap", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_map_unmap")
func seamMapUnmap(_ count: Int) { seamMapUnmapLoop(count) }

@inline(never)
func seamMapUnmapLoop(_ count: Int) {
  let calls = fixture.calls, fd = fixture.fd, ioasID = fixture.ioas.id.rawValue, address = fixture.address
  do {
    for _ in 0..<count {
      var map = ciommufd_iommu_ioas_map()
      map.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_map>.size)
      map.flags = CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_READABLE | CIOMMUFD_IOAS_MAP_WRITEABLE
      map.ioas_id = ioasID
      map.user_va = UInt64(UInt(bitPattern: address))
      map.length = 4096
      map.iova = 0x10_0000
      _ = try calls.ioctl(fd, UInt(CIOMMUFD_IOMMU_IOAS_MAP), &map)
      var unmap = ciommufd_iommu_ioas_unmap(
        size: UInt32(MemoryLayout<ciommufd_iommu_ioas_unmap>.size), ioas_id: ioasID, iova: map.iova, length: 4096)
      _ = try calls.ioctl(fd, UInt(CIOMMUFD_IOMMU_IOAS_UNMAP), &unmap)
    }
  } catch { abort("seam map+unmap", error) }
}

@inline(never) @_silgen_name("iommufd_bench_api_DMAMapping_map_unmap")
func apiMapping(_ count: Int) { apiMappingLoop(count) }

/// The safe path, as the lab measures it: a `DMAMapping` of a `DMABuffer`, unmapped
/// and released.
@inline(never)
func apiMappingLoop(_ count: Int) {
  let ioas = fixture.ioas, buffer = fixture.buffer
  do {
    for _ in 0..<count {
      var mapping = try ioas.map(buffer, at: .fixed(0x10_0000))
      try mapping.unmap()
    }
  } catch { abort("mapping map+unmap", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_DMAMapping_map_unmap")
func seamMapping(_ count: Int) { seamMapUnmapLoop(count) }

@inline(never) @_silgen_name("iommufd_bench_api_DMAMapping_map_release")
func apiMappingRelease(_ count: Int) { apiMappingReleaseLoop(count) }

/// The same, with the mapping unmapped by its release (its deinit) at the end of its
/// scope, as most code will. The seam returns at once, so no unmap fails here unnoticed:
/// a failure could only come from the API's own checks, which the map makes first.
@inline(never)
func apiMappingReleaseLoop(_ count: Int) {
  let ioas = fixture.ioas, buffer = fixture.buffer
  do {
    for _ in 0..<count {
      let mapping = try ioas.map(buffer, at: .fixed(0x10_0000))
      _ = consume mapping
    }
  } catch { abort("mapping map+release", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_DMAMapping_map_release")
func seamMappingRelease(_ count: Int) {
  seamMapUnmapLoop(count)
  // Not the same code as seamMapping's: identical functions are merged into one symbol,
  // which callgrind then charges with both loops.
  sink &+= 1
}

@inline(never) @_silgen_name("iommufd_bench_api_copy")
func apiCopy(_ count: Int) { apiCopyLoop(count) }

@inline(never)
func apiCopyLoop(_ count: Int) {
  let ioas = fixture.ioas, source = fixture.source
  do {
    for _ in 0..<count {
      _ = try ioas.copy(from: source, sourceIOVA: 0x10_0000, length: 4096, to: .fixed(0x20_0000))
    }
  } catch { abort("copy", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_copy")
func seamCopy(_ count: Int) { seamCopyLoop(count) }

@inline(never)
func seamCopyLoop(_ count: Int) {
  let calls = fixture.calls, fd = fixture.fd, ioasID = fixture.ioas.id.rawValue, sourceID = fixture.source.id.rawValue
  do {
    for _ in 0..<count {
      var copy = ciommufd_iommu_ioas_copy()
      copy.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_copy>.size)
      copy.flags = CIOMMUFD_IOAS_MAP_FIXED_IOVA | CIOMMUFD_IOAS_MAP_READABLE | CIOMMUFD_IOAS_MAP_WRITEABLE
      copy.dst_ioas_id = ioasID
      copy.src_ioas_id = sourceID
      copy.length = 4096
      copy.src_iova = 0x10_0000
      copy.dst_iova = 0x20_0000
      _ = try calls.ioctl(fd, UInt(CIOMMUFD_IOMMU_IOAS_COPY), &copy)
    }
  } catch { abort("seam copy", error) }
}

@inline(never) @_silgen_name("iommufd_bench_api_option_get")
func apiOptionGet(_ count: Int) { apiOptionGetLoop(count) }

@inline(never)
func apiOptionGetLoop(_ count: Int) {
  let ioas = fixture.ioas
  do {
    for _ in 0..<count { sink &+= try ioas.hugePagesEnabled() ? 1 : 0 }
  } catch { abort("option get", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_option_get")
func seamOptionGet(_ count: Int) { seamOptionGetLoop(count) }

@inline(never)
func seamOptionGetLoop(_ count: Int) {
  let calls = fixture.calls, fd = fixture.fd, ioasID = fixture.ioas.id.rawValue
  do {
    for _ in 0..<count {
      var option = ciommufd_iommu_option()
      option.size = UInt32(MemoryLayout<ciommufd_iommu_option>.size)
      option.option_id = CIOMMUFD_OPTION_HUGE_PAGES
      option.op = UInt16(CIOMMUFD_OPTION_OP_GET)
      option.object_id = ioasID
      _ = try calls.ioctl(fd, UInt(CIOMMUFD_IOMMU_OPTION), &option)
      sink &+= option.val64
    }
  } catch { abort("seam option get", error) }
}

@inline(never) @_silgen_name("iommufd_bench_api_IOVA_ranges")
func apiIOVARanges(_ count: Int) { apiIOVARangesLoop(count) }

/// As the lab measures it: the ranges read, and their count used.
@inline(never)
func apiIOVARangesLoop(_ count: Int) {
  let ioas = fixture.ioas
  do {
    for _ in 0..<count { sink &+= UInt64(try ioas.iovaRanges().count) }
  } catch { abort("IOVA ranges", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_IOVA_ranges")
func seamIOVARanges(_ count: Int) { seamIOVARangesLoop(count) }

/// As the C floor does it: room for 4 ranges on the stack.
@inline(never)
func seamIOVARangesLoop(_ count: Int) {
  let calls = fixture.calls, fd = fixture.fd, ioasID = fixture.ioas.id.rawValue
  do {
    for _ in 0..<count {
      try withUnsafeTemporaryAllocation(of: ciommufd_iommu_iova_range.self, capacity: 4) { (ranges) throws(Errno) in
        var request = ciommufd_iommu_ioas_iova_ranges()
        request.size = UInt32(MemoryLayout<ciommufd_iommu_ioas_iova_ranges>.size)
        request.ioas_id = ioasID
        request.num_iovas = 4
        request.allowed_iovas = UInt64(UInt(bitPattern: ranges.baseAddress))
        _ = try calls.ioctl(fd, UInt(CIOMMUFD_IOMMU_IOAS_IOVA_RANGES), &request)
        sink &+= UInt64(request.num_iovas)
      }
    }
  } catch { abort("seam IOVA ranges", error) }
}

@inline(never) @_silgen_name("iommufd_bench_api_option_set")
func apiOptionSet(_ count: Int) { apiOptionSetLoop(count) }

@inline(never)
func apiOptionSetLoop(_ count: Int) {
  let ioas = fixture.ioas
  do {
    for _ in 0..<count { try ioas.setHugePages(enabled: true) }
  } catch { abort("option set", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_option_set")
func seamOptionSet(_ count: Int) { seamOptionSetLoop(count) }

@inline(never)
func seamOptionSetLoop(_ count: Int) {
  let calls = fixture.calls, fd = fixture.fd, ioasID = fixture.ioas.id.rawValue
  do {
    for _ in 0..<count {
      var option = ciommufd_iommu_option()
      option.size = UInt32(MemoryLayout<ciommufd_iommu_option>.size)
      option.option_id = CIOMMUFD_OPTION_HUGE_PAGES
      option.op = UInt16(CIOMMUFD_OPTION_OP_SET)
      option.object_id = ioasID
      option.val64 = 1
      _ = try calls.ioctl(fd, UInt(CIOMMUFD_IOMMU_OPTION), &option)
    }
  } catch { abort("seam option set", error) }
}

@inline(never) @_silgen_name("iommufd_bench_api_attach_detach")
func apiAttachDetach(_ count: Int) { apiAttachDetachLoop(count) }

@inline(never)
func apiAttachDetachLoop(_ count: Int) {
  let device = fixture.device, ioas = fixture.ioas
  do {
    for _ in 0..<count {
      try device.attach(to: ioas)
      try device.detach()
    }
  } catch { abort("attach+detach", error) }
}

@inline(never) @_silgen_name("iommufd_bench_seam_attach_detach")
func seamAttachDetach(_ count: Int) { seamAttachDetachLoop(count) }

@inline(never)
func seamAttachDetachLoop(_ count: Int) {
  let calls = fixture.calls, deviceFD = fixture.deviceFD, ioasID = fixture.ioas.id.rawValue
  do {
    for _ in 0..<count {
      var attach = ciommufd_vfio_device_attach_iommufd_pt()
      attach.argsz = UInt32(MemoryLayout<ciommufd_vfio_device_attach_iommufd_pt>.size)
      attach.pt_id = ioasID
      _ = try calls.ioctl(deviceFD, UInt(CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT), &attach)
      var detach = ciommufd_vfio_device_detach_iommufd_pt()
      detach.argsz = UInt32(MemoryLayout<ciommufd_vfio_device_detach_iommufd_pt>.size)
      _ = try calls.ioctl(deviceFD, UInt(CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT), &detach)
    }
  } catch { abort("seam attach+detach", error) }
}

let measuredCalls = [
  MeasuredCall(name: "map+unmap", ioctls: 2, api: apiMapUnmap, seam: seamMapUnmap, apiLoop: apiMapUnmapLoop, seamLoop: seamMapUnmapLoop),
  MeasuredCall(name: "DMAMapping map+unmap", ioctls: 2, api: apiMapping, seam: seamMapping, apiLoop: apiMappingLoop, seamLoop: seamMapUnmapLoop),
  MeasuredCall(
    name: "DMAMapping map+release", ioctls: 2, api: apiMappingRelease, seam: seamMappingRelease, apiLoop: apiMappingReleaseLoop,
    seamLoop: seamMapUnmapLoop),
  MeasuredCall(name: "copy", ioctls: 1, api: apiCopy, seam: seamCopy, apiLoop: apiCopyLoop, seamLoop: seamCopyLoop),
  MeasuredCall(name: "option get", ioctls: 1, api: apiOptionGet, seam: seamOptionGet, apiLoop: apiOptionGetLoop, seamLoop: seamOptionGetLoop),
  MeasuredCall(name: "IOVA ranges", ioctls: 1, api: apiIOVARanges, seam: seamIOVARanges, apiLoop: apiIOVARangesLoop, seamLoop: seamIOVARangesLoop),
  MeasuredCall(name: "option set", ioctls: 1, api: apiOptionSet, seam: seamOptionSet, apiLoop: apiOptionSetLoop, seamLoop: seamOptionSetLoop),
  MeasuredCall(name: "attach+detach", ioctls: 2, api: apiAttachDetach, seam: seamAttachDetach, apiLoop: apiAttachDetachLoop, seamLoop: seamAttachDetachLoop),
]

/// The loop `name` run `count` times, after one warm-up call: the entry point of the
/// callgrind child (`--run-loops COUNT`).
func runLoops(count: Int) {
  for call in measuredCalls {
    call.apiLoop(10)
    call.seamLoop(10)
    call.api(count)
    call.seam(count)
  }
}

/// Heap allocations per API call and per seam call, with malloc-interposer preloaded.
func mallocsPerCall() {
  MallocInterposerSwift.initialize()
  let count = 10_000
  func mallocs(_ body: (Int) -> Void) -> Double {
    body(10)  // warm-up: lazily made metadata and caches
    MallocInterposerSwift.reset()
    MallocInterposerSwift.hook()
    body(count)
    MallocInterposerSwift.unhook()
    return Double(MallocInterposerSwift.getStatistics().mallocCount) / Double(count)
  }
  for call in measuredCalls {
    let api = mallocs(call.api)
    let seam = mallocs(call.seam)
    let result = call.resultAllocations == 0 ? "" : " (\(call.resultAllocations) for the result it returns)"
    report(
      "API allocations, \(call.name)", "\(format(api)) mallocs per call through the API, \(format(seam)) on the seam",
      goal: "0 above the seam and the result\(result)", met: api <= seam + Double(call.resultAllocations))
  }
}

/// Instructions per call above the seam: runs this program under callgrind with
/// `--run-loops`, once, and reads each loop's inclusive count.
func instructionsPerCall(executable: String) {
  let count = 2000
  let output = "/tmp/iommufd-bench-callgrind.\(getpid())"
  defer { unlink(output) }
  let command = "env -u LD_PRELOAD valgrind --tool=callgrind --callgrind-out-file=\(output) '\(executable)' --run-loops \(count) >/dev/null 2>&1"
  guard system(command) == 0 else {
    print("iommufd-bench: callgrind failed (is valgrind installed?): \(command)")
    exit(1)
  }
  guard let pipe = popen("callgrind_annotate --inclusive=yes --threshold=100 '\(output)' 2>/dev/null", "r") else { abort("callgrind_annotate", Errno(rawValue: errno)) }
  var costs: [String: Double] = [:]
  var line = [CChar](repeating: 0, count: 4096)
  while fgets(&line, Int32(line.count), pipe) != nil {
    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let range = text.firstRange(of: "iommufd_bench_") else { continue }
    let name = text[range.lowerBound...].prefix { $0 != " " && $0 != "\n" && $0 != "'" && $0 != "[" }
    let digits = text.prefix { $0 == " " || $0 == "," || $0.isNumber }.filter(\.isNumber)
    guard let value = Double(String(digits)) else { continue }
    costs[String(name)] = max(costs[String(name)] ?? 0, value)
  }
  pclose(pipe)
  for call in measuredCalls {
    let key = String(call.name.map { $0 == "+" || $0 == " " ? "_" : $0 })
    guard let api = costs["iommufd_bench_api_\(key)"], let seam = costs["iommufd_bench_seam_\(key)"] else {
      print("iommufd-bench: callgrind reported no cost for \(call.name) (\(costs.keys.sorted()))")
      exit(1)
    }
    // Each measured loop ran once, `count` times, after its warm-up.
    let above = (api - seam) / Double(count) / Double(call.ioctls)
    report(
      "API instructions, \(call.name)",
      "\(format(api / Double(count) / Double(call.ioctls))) per ioctl through the API, \(format(seam / Double(count) / Double(call.ioctls))) on the seam, \(format(above)) above it",
      goal: "<= 150 above the seam", met: above <= 150)
  }
}
