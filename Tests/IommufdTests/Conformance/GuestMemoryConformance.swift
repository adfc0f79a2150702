import Foundation
import Iommufd
import IommufdEdu
import IommufdSimulator
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Guest RAM in a memory file, mapped in banks at guest-physical addresses: by file where
/// the kernel has IOMMU_IOAS_MAP_FILE (7.2), by address before (6.12), with the same
/// result for a device's DMA.
@Suite("conformance: guest memory")
struct GuestMemoryConformance {
  /// How the platform's kernel takes guest memory.
  static func expectedSource(_ platform: Platform, offset: UInt64) -> DMAMapping.Source {
    platform.release == .linux7_2 ? .file(offset: offset) : .userAddress
  }

  @Test("two banks of one guest memory: the device reads one and writes the other through their guest-physical addresses; by file on 7.2, by address on 6.12", arguments: Platform.withDevice)
  func banks(platform: Platform) throws {
    let setup = try DeviceConformance.Setup(platform)
    let (backend, device, ioas) = (setup.backend, setup.device, try setup.attached())
    let memory = try GuestMemory(size: 128 << 10, name: "banks", backend: backend)
    #expect(memory.bytes.count == 128 << 10)
    #expect(memory.bytes.allSatisfy { $0 == 0 })
    // Bank 0: the first 64 KiB at 0x10_0000; bank 1: the rest at 0x80_0000 (edu's DMA
    // reaches 28 bits).
    var low = try memory.map(into: ioas, at: 0x10_0000, length: 64 << 10)
    let high = try memory.map(into: ioas, at: 0x80_0000, offset: 64 << 10)
    #expect(low.iova == 0x10_0000 && low.length == 64 << 10)
    #expect(high.iova == 0x80_0000 && high.length == 64 << 10)
    #expect(low.source == Self.expectedSource(platform, offset: 0))
    #expect(high.source == Self.expectedSource(platform, offset: 64 << 10))

    let pattern = (0..<4095).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
    for (index, byte) in pattern.enumerated() { memory.bytes[(64 << 10) + 0x1000 + index] = byte }
    let edu = try EduDriver(device: device)
    try edu.enableBusMaster()
    try edu.copyToDevice(from: 0x80_1000, count: pattern.count)
    try edu.copyFromDevice(to: 0x10_2000, count: pattern.count)
    #expect(Array(memory.bytes[0x2000..<(0x2000 + pattern.count)]) == pattern)

    // Released banks are unmapped: the range is free again.
    try low.unmap()
    #expect(low.isMapped == false)
    #expect(errno { try ioas.unmap(iova: 0x10_0000, length: 64 << 10) } == .noSuchFileOrDirectory)
    _ = consume low
    _ = consume high
    #expect(try ioas.unmapAll() == 0)
    if let simulator = backend.simulator { #expect(simulator.pinnedPages == 0) }
  }

  @Test("a bank keeps the memory: released guest memory stays mapped for the device until the bank goes", arguments: Platform.all)
  func bankKeepsMemory(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    var memory: GuestMemory? = try GuestMemory(size: 16 << 10, backend: backend)
    let bank = try memory!.map(into: ioas, at: 0x40_0000)
    #expect(bank.source == Self.expectedSource(platform, offset: 0))
    try memory!.close()  // the file's descriptor: the bank holds the memory, the kernel the file
    memory = nil
    #expect(bank.isMapped == true)
    #expect(try ioas.unmap(iova: 0x40_0000, length: 16 << 10) == 16 << 10)
    #expect(bank.isMapped == false)
  }

  @Test("a VMM's own memory, borrowed: an owned mapping unmaps on release, the memory stays the caller's", arguments: Platform.withDevice)
  func borrowedMemory(platform: Platform) throws {
    let setup = try DeviceConformance.Setup(platform)
    let (backend, device, ioas) = (setup.backend, setup.device, try setup.attached())
    let length = 16 << 10
    let memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
    #expect(memory != MAP_FAILED)
    defer { munmap(memory, length) }
    let bytes = UnsafeMutableRawBufferPointer(start: memory, count: length)
    do {
      let buffer = try DMABuffer(unsafeBorrowing: bytes, backend: backend)
      #expect(!buffer.ownsMemory)
      let mapping = try ioas.map(buffer, at: .fixed(0x10_0000))
      for index in 0..<256 { bytes[index] = UInt8(index) }
      let edu = try EduDriver(device: device)
      try edu.enableBusMaster()
      try edu.copyToDevice(from: 0x10_0000, count: 256)
      try edu.copyFromDevice(to: 0x10_2000, count: 256)
      #expect(Array(bytes[0x2000..<0x2100]) == (0..<256).map { UInt8($0) })
      #expect(mapping.isMapped == true)
    }  // the mapping and the buffer released: unmapped, the memory left alone
    #expect(errno { try ioas.unmap(iova: 0x10_0000, length: UInt64(length)) } == .noSuchFileOrDirectory)
    bytes[0] = 0x5A  // still mapped in this process
    #expect(bytes[0] == 0x5A)
    if let simulator = backend.simulator { #expect(simulator.pinnedPages == 0) }
  }

  @Test("bad sizes, ranges and alignment are EINVAL before any call; a closed memory maps nothing (EBADF)", arguments: Platform.all)
  func badInput(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    #expect(errno { try GuestMemory(size: 0, backend: backend) } == .invalidArgument)
    #expect(errno { try GuestMemory(size: -4096, backend: backend) } == .invalidArgument)
    #expect(errno { try GuestMemory(size: 4097, backend: backend) } == .invalidArgument)
    #expect(errno { try GuestMemory(size: 1 << 20, pageSize: .huge2M, backend: backend) } == .invalidArgument)
    #expect(errno { try GuestMemory(size: Int.max, backend: backend) } == .invalidArgument)
    let memory = try GuestMemory(size: 16 << 10, backend: backend)
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000, offset: -4096) } == .invalidArgument)
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000, offset: 20 << 10) } == .invalidArgument)
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000, offset: 8 << 10, length: 12 << 10) } == .invalidArgument)
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000, offset: Int.max, length: Int.max) } == .invalidArgument)
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000, length: 0) } == .invalidArgument)
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000, offset: 100) } == .invalidArgument)
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000, length: 5000) } == .invalidArgument)
    #expect(errno { _ = try memory.map(into: ioas, at: UInt64.max - 4095) } != nil)
    #expect(try ioas.unmapAll() == 0, "no failed map left anything behind")
    try memory.close()
    #expect(errno { _ = try memory.map(into: ioas, at: 0x10_0000) } == .badFileDescriptor)
  }

  @Test("huge pages: 2 MiB guest memory maps where huge pages are reserved, and is ENOMEM where they are not", arguments: Platform.all)
  func hugePages(platform: Platform) throws {
    let backend = platform.makeBackend()
    let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
    let free = meminfo.split(separator: "\n").first { $0.hasPrefix("HugePages_Free:") }
      .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    let size = meminfo.split(separator: "\n").first { $0.hasPrefix("Hugepagesize:") }
      .flatMap { Int($0.split(separator: " ").dropLast().last ?? "") } ?? 0
    if free >= 1 && size == 2048 {
      let memory = try GuestMemory(size: 2 << 20, pageSize: .huge2M, backend: backend)
      let iommufd = try IOMMUFD.open(backend: backend)
      let ioas = try iommufd.allocateIOAS()
      let bank = try memory.map(into: ioas, at: 0x20_0000)
      #expect(bank.length == 2 << 20)
    } else {
      let failure = #expect(throws: IommufdError.self) { try GuestMemory(size: 2 << 20, pageSize: .huge2M, backend: backend) }
      #expect(failure?.errno == .noMemory || failure?.errno == .invalidArgument)
      #expect(failure?.operation == .memoryMap || failure?.operation == .memoryFile || failure?.operation == .truncate)
    }
  }
}
