import Iommufd
import SystemPackage
import Testing

/// The in-kernel access through ``SelfTestAccess`` (the path of an emulated or mediated
/// VFIO device's driver), on the simulated test kernels and, in the lab's mock boots, on
/// both kernels: the same calls, the same answers.
@Suite("self-test access")
struct SelfTestAccessConformance {
  /// EBADE: pinned pages that are not the ones behind the address given to check.
  static let invalidExchange = Errno(rawValue: 52)

  /// A context, an IOAS, and a 4-page buffer mapped read-write at 0x100_0000 and its first
  /// page again read-only at 0x200_0000.
  struct Mapped {
    let iommufd: IOMMUFD
    let ioas: IOAS
    let buffer: DMABuffer

    init(_ platform: Platform) throws {
      let backend = platform.makeBackend()
      iommufd = try IOMMUFD.open(backend: backend)
      ioas = try iommufd.allocateIOAS()
      buffer = try DMABuffer(length: 4 * 4096, backend: backend)
      for index in 0..<buffer.bytes.count { buffer.bytes[index] = UInt8(truncatingIfNeeded: index / 7) }
      // The buffer outlives the IOAS here, whose destruction unmaps both.
      _ = try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 4 * 4096, at: .fixed(0x100_0000))
      _ = try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 4096, at: .fixed(0x200_0000), access: .readable)
    }
  }

  @Test("read and write through an access, on both paths, reach the process's memory behind the IOVA", arguments: Platform.mock)
  func readWrite(platform: Platform) throws {
    let setup = try Mapped(platform)
    for pins in [false, true] {
      let access = try setup.iommufd.selfTest.createAccess(to: setup.ioas, pinsPages: pins)
      for slowPath in [false, true] {
        var bytes = [UInt8](repeating: 0, count: 100)
        try bytes.withUnsafeMutableBytes { try access.read(from: 0x100_0FF0, into: $0, slowPath: slowPath) }
        #expect(bytes == Array(setup.buffer.bytes[0xFF0..<0x1054]))
        let pattern = (0..<64).map { UInt8($0) ^ (slowPath ? 0xA5 : 0x5A) ^ (pins ? 1 : 0) }
        try pattern.withUnsafeBytes { try access.write($0, to: 0x100_2FE0, slowPath: slowPath) }
        #expect(Array(setup.buffer.bytes[0x2FE0..<0x3020]) == pattern)
      }
      try access.close()
    }
  }

  @Test("the kernel's answers to reads and writes: unmapped ENOENT, read-only EPERM on write, empty EINVAL, past the end EOVERFLOW, over 16 MiB ENOMEM", arguments: Platform.mock)
  func readWriteErrors(platform: Platform) throws {
    let setup = try Mapped(platform)
    let access = try setup.iommufd.selfTest.createAccess(to: setup.ioas)
    var byte: [UInt8] = [0]
    #expect(errno { try byte.withUnsafeMutableBytes { try access.read(from: 0x300_0000, into: $0) } } == .noSuchFileOrDirectory)
    #expect(errno { try byte.withUnsafeMutableBytes { try access.read(from: 0x100_4000, into: $0) } } == .noSuchFileOrDirectory)
    #expect(errno { try byte.withUnsafeBytes { try access.write($0, to: 0x200_0000) } } == .notPermitted)
    #expect(errno { try byte.withUnsafeMutableBytes { try access.read(from: 0x200_0000, into: $0) } } == nil)
    #expect(errno { try access.read(from: 0x100_0000, into: UnsafeMutableRawBufferPointer(start: nil, count: 0)) } == .invalidArgument)
    #expect(errno { try byte.withUnsafeMutableBytes { try access.read(from: .max, into: $0) } } == .noSuchFileOrDirectory)
    var two: [UInt8] = [0, 0]
    #expect(errno { try two.withUnsafeMutableBytes { try access.read(from: .max, into: $0) } } == .overflow)
    _ = two
    let big = try DMABuffer(length: Int(SelfTestAccess.maximumLength) + 4096, backend: setup.iommufd.backend)
    #expect(errno { try access.read(from: 0x100_0000, into: big.bytes) } == .noMemory)
    _ = byte
  }

  @Test("pins: only an access that pins pages may (EOPNOTSUPP); ids count from 0 per access; writable pins of read-only pages EPERM; a range not wholly mapped ENOENT; zero EINVAL; past the end EOVERFLOW; over 16 MiB ENOMEM; the wrong pages EBADE", arguments: Platform.mock)
  func pins(platform: Platform) throws {
    let setup = try Mapped(platform)
    let plain = try setup.iommufd.selfTest.createAccess(to: setup.ioas)
    #expect(errno { try plain.pin(iova: 0x100_0000, length: 4096) } == .notSupported)
    let access = try setup.iommufd.selfTest.createAccess(to: setup.ioas, pinsPages: true)
    let first = try access.pin(iova: 0x100_0000, length: 8192, writable: true, verifyingAgainst: setup.buffer.bytes.baseAddress)
    let second = try access.pin(iova: 0x200_0000, length: 4096, verifyingAgainst: setup.buffer.bytes.baseAddress)
    #expect((first.id, second.id) == (0, 1))
    #expect(errno { try access.pin(iova: 0x200_0000, length: 4096, writable: true) } == .notPermitted)
    #expect(errno { try access.pin(iova: 0x100_3000, length: 8192) } == .noSuchFileOrDirectory)
    #expect(errno { try access.pin(iova: 0x100_0000, length: 0) } == .invalidArgument)
    #expect(errno { try access.pin(iova: .max - 4095, length: 8192) } == .overflow)
    #expect(errno { try access.pin(iova: 0x100_0000, length: SelfTestAccess.maximumLength + 1) } == .noMemory)
    // The second page of the buffer is not the first page: EBADE.
    #expect(errno { try access.pin(iova: 0x100_1000, length: 4096, verifyingAgainst: setup.buffer.bytes.baseAddress) } == Self.invalidExchange)
    try second.unpin()
    let again = try #require(errno { try second.unpin() })
    #expect(again == .noSuchFileOrDirectory)
    // A refused pin takes no id: the next is 2.
    #expect(try access.pin(iova: 0x100_2000, length: 4096).id == 2)
    try first.unpin()
  }

  @Test("an unmap of pinned pages unpins them at once (the access's unmap callback); the handle's unpin is then ENOENT, explained", arguments: Platform.mock)
  func unmapForcesUnpin(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 4 * 4096, backend: backend)
    let iova = try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 4 * 4096, at: .fixed(0x100_0000))
    let access = try iommufd.selfTest.createAccess(to: ioas, pinsPages: true)
    let pinned = try access.pin(iova: iova + 4096, length: 4096)
    #expect(try ioas.unmap(iova: iova, length: 4 * 4096) == 4 * 4096)
    let error = try #require(throws: IommufdError.self) { try pinned.unpin() }
    #expect(error.errno == .noSuchFileOrDirectory)
    #expect(error.detail?.contains("unmap") == true)
    // The access still works on what is mapped again.
    _ = try ioas.unsafeMap(address: buffer.bytes.baseAddress!, length: 4096, at: .fixed(0x100_0000))
    #expect(try access.pin(iova: 0x100_0000, length: 4096).id == 1)
  }

  @Test("an access holds its IOAS: destroying it is EBUSY until the access closes; a second close does nothing and other calls on a closed access are EBADF", arguments: Platform.mock)
  func holdsIOAS(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let access = try iommufd.selfTest.createAccess(to: ioas, pinsPages: true)
    #expect(errno { try ioas.destroy() } == .resourceBusy)
    try access.close()
    #expect(errno { try access.close() } == nil)  // a second close does nothing
    #expect(errno { try access.pin(iova: 0, length: 4096) } == .badFileDescriptor)
    try ioas.destroy()
    #expect(errno { try iommufd.selfTest.createAccess(to: ioas) } == .noSuchFileOrDirectory)
  }

  @Test("a pinning access raises the IOVA alignment to the page size: EADDRINUSE over a sub-page mapping, while a plain access is made; and a sub-page map is EINVAL while it exists", arguments: Platform.mock)
  func alignment(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let buffer = try DMABuffer(length: 2 * 4096, backend: backend)
    let base = buffer.bytes.baseAddress!
    _ = try ioas.unsafeMap(address: base + 0x800, length: 4096, at: .fixed(0x100_0800))
    #expect(errno { try iommufd.selfTest.createAccess(to: ioas, pinsPages: true) } == .addressInUse)
    let plain = try iommufd.selfTest.createAccess(to: ioas)
    try ioas.unmap(iova: 0x100_0800, length: 4096)
    let pinning = try iommufd.selfTest.createAccess(to: ioas, pinsPages: true)
    #expect(errno { try ioas.unsafeMap(address: base + 0x800, length: 4096, at: .fixed(0x100_0800)) } == .invalidArgument)
    try pinning.close()
    #expect(try ioas.unsafeMap(address: base + 0x800, length: 4096, at: .fixed(0x100_0800)) == 0x100_0800)
    _ = plain
  }

  @Test("replace moves the access to another IOAS: its pins are unpinned, the old IOAS can go, the new one is held; another context's IOAS is EINVAL and a destroyed one ENOENT", arguments: Platform.mock)
  func replace(platform: Platform) throws {
    let setup = try Mapped(platform)
    let access = try setup.iommufd.selfTest.createAccess(to: setup.ioas, pinsPages: true)
    let pinned = try access.pin(iova: 0x100_0000, length: 4096)
    let other = try setup.iommufd.allocateIOAS()
    _ = try other.unsafeMap(address: setup.buffer.bytes.baseAddress! + 4096, length: 4096, at: .fixed(0x300_0000))
    try access.replace(with: other)
    #expect(access.ioas === other)
    #expect(errno { try pinned.unpin() } == .noSuchFileOrDirectory)
    #expect(errno { try other.destroy() } == .resourceBusy)
    var bytes = [UInt8](repeating: 0, count: 16)
    try bytes.withUnsafeMutableBytes { try access.read(from: 0x300_0000, into: $0) }
    #expect(bytes == Array(setup.buffer.bytes[4096..<4112]))
    #expect(errno { try bytes.withUnsafeMutableBytes { try access.read(from: 0x100_0000, into: $0) } } == .noSuchFileOrDirectory)
    // Replacing with the IOAS it is on already changes nothing.
    try access.replace(with: other)
    let foreign = try IOMMUFD.open(backend: setup.iommufd.backend).allocateIOAS()
    #expect(errno { try access.replace(with: foreign) } == .invalidArgument)
    let gone = try setup.iommufd.allocateIOAS()
    try gone.destroy()
    #expect(errno { try access.replace(with: gone) } == .noSuchFileOrDirectory)
    try access.replace(with: setup.ioas)
    try other.destroy()
  }

  @Test("pins under the smallest temporary memory limit (one batch entry per batch) reach the same pages", arguments: Platform.mock)
  func temporaryMemoryLimit(platform: Platform) throws {
    let setup = try Mapped(platform)
    try setup.iommufd.selfTest.setTemporaryMemoryLimit(12)
    defer { try? setup.iommufd.selfTest.setTemporaryMemoryLimit(IOMMUSelfTest.defaultTemporaryMemoryLimit) }
    #expect(errno { try setup.iommufd.selfTest.setTemporaryMemoryLimit(11) } == .invalidArgument)
    let access = try setup.iommufd.selfTest.createAccess(to: setup.ioas, pinsPages: true)
    let pinned = try access.pin(iova: 0x100_0000, length: 4 * 4096, writable: true, verifyingAgainst: setup.buffer.bytes.baseAddress)
    var bytes = [UInt8](repeating: 0, count: 4 * 4096)
    try bytes.withUnsafeMutableBytes { try access.read(from: 0x100_0000, into: $0, slowPath: true) }
    #expect(bytes == Array(setup.buffer.bytes))
    try pinned.unpin()
  }
}
