import Iommufd
import Synchronization
import SystemPackage
import Testing

/// Each handle releases its descriptor or object id exactly once, and errors name the
/// operation, the errno and the ids.
@Suite("ownership and errors")
struct OwnershipTests {
  static func allocatingIOAS(id: UInt32 = 9, failing: [UInt: Errno] = [:]) -> RecordingSystemCalls {
    RecordingSystemCalls { request, argument throws(Errno) in
      if let errno = failing[request] { throw errno }
      if request == 0x3B81 { store(id, argument, 8) }
      return 0
    }
  }

  @Test("an IOAS released without destroy() is destroyed once, then the iommufd is closed once")
  func releaseOrder() throws {
    let calls = Self.allocatingIOAS()
    do {
      let iommufd = try IOMMUFD.open(backend: Backend(calls))
      _ = try iommufd.allocateIOAS()
    }
    let names = calls.calls.map { $0.name == "ioctl" ? "ioctl \(String($0.request, radix: 16))" : $0.name }
    #expect(names == ["open /dev/iommu", "ioctl 3b81", "ioctl 3b80", "close"])
    #expect(field(calls.ioctls[1].bytes, 4, as: UInt32.self) == 9)
  }

  @Test("destroy() then release issues one IOMMU_DESTROY; a second destroy() is refused with ENOENT")
  func destroyOnce() throws {
    let calls = Self.allocatingIOAS()
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    var ioas: IOAS? = try iommufd.allocateIOAS()
    try ioas!.destroy()
    #expect(throws: IommufdError(.destroy, .noSuchFileOrDirectory, objects: [.ioas(ObjectID(9))], detail: "the IOAS 9 was already destroyed")) {
      try ioas!.destroy()
    }
    ioas = nil
    #expect(calls.ioctls.filter { $0.request == 0x3B80 }.count == 1)
  }

  @Test("a destroy the kernel refuses with EBUSY is thrown with the ids, and retried on release")
  func destroyBusy() throws {
    let busy = Mutex(true)
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(2), argument, 8) }
      if request == 0x3B80, busy.withLock({ $0 }) { throw .resourceBusy }
      return 0
    }
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    var ioas: IOAS? = try iommufd.allocateIOAS()
    let error = try #require(throws: IommufdError.self) { try ioas!.destroy() }
    #expect(error.operation == .destroy)
    #expect(error.errno == .resourceBusy)
    #expect(error.objects == [.fd(iommufd.fileDescriptor), .object(ObjectID(2))])
    #expect(error.description == "IOMMU_DESTROY [fd=\(iommufd.fileDescriptor.rawValue), id=2] failed: \(Errno.resourceBusy) (errno 16)")
    busy.withLock { $0 = false }
    ioas = nil
    #expect(calls.ioctls.filter { $0.request == 0x3B80 }.count == 2)
  }

  @Test("a kernel error on map carries IOMMU_IOAS_MAP, the errno and the IOAS id")
  func mapError() throws {
    let calls = Self.allocatingIOAS(id: 4, failing: [0x3B85: .fileExists])
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    let ioas = try iommufd.allocateIOAS()
    #expect(throws: IommufdError(.ioasMap, .fileExists, objects: [.fd(iommufd.fileDescriptor), .ioas(ObjectID(4))])) {
      try ioas.unsafeMap(address: UnsafeRawPointer(bitPattern: 0x1000)!, length: 0x1000, at: .fixed(0))
    }
  }

  @Test("close() closes once; later calls fail with EBADF without reaching the kernel")
  func closeOnce() throws {
    let calls = Self.allocatingIOAS()
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    try iommufd.close()
    try iommufd.close()
    let error = try #require(throws: IommufdError.self) { try iommufd.allocateIOAS() }
    #expect(error.errno == .badFileDescriptor)
    #expect(error.operation == .ioasAlloc)
    #expect(calls.calls.filter { $0.name == "close" }.count == 1)
    #expect(calls.ioctls.isEmpty)
  }

  @Test("an IOAS outliving an explicitly closed iommufd does not destroy through a stale fd")
  func staleDescriptor() throws {
    let calls = Self.allocatingIOAS()
    let iommufd = try IOMMUFD.open(backend: Backend(calls))
    var ioas: IOAS? = try iommufd.allocateIOAS()
    try iommufd.close()
    ioas = nil
    #expect(ioas == nil)
    #expect(calls.ioctls.map(\.request) == [0x3B81])
  }

  @Test("adopting a descriptor takes ownership: it is closed when the handle goes")
  func adopt() throws {
    let calls = RecordingSystemCalls()
    do { _ = IOMMUFD(adopting: FileDescriptor(rawValue: 42), backend: Backend(calls)) }
    #expect(calls.calls == [.init(name: "close", fd: 42)])
  }

  @Test("a mapping of a DMA buffer unmaps its exact range once when released")
  func mappingRelease() throws {
    let calls = RecordingSystemCalls { request, argument throws(Errno) in
      if request == 0x3B81 { store(UInt32(1), argument, 8) }
      if request == 0x3B85 { store(UInt64(0x20_0000), argument, 32) }
      return 0
    }
    let backend = Backend(calls)
    let ioas = try IOMMUFD.open(backend: backend).allocateIOAS()
    var mapping: DMAMapping? = try ioas.map(DMABuffer(length: 5000, backend: backend))
    #expect(mapping?.length == 8192)
    #expect(mapping?.range == IOVARange(start: 0x20_0000, last: 0x20_1fff))
    mapping = nil
    let unmap = try #require(calls.ioctls.last)
    #expect(unmap.request == 0x3B86)
    #expect(field(unmap.bytes, 8, as: UInt64.self) == 0x20_0000)
    #expect(field(unmap.bytes, 16, as: UInt64.self) == 8192)
    #expect(calls.calls.filter { $0.name == "munmap" }.count == 1)
  }

  @Test("a zero-length DMA buffer is rejected with EINVAL and says why")
  func emptyBuffer() {
    #expect(throws: IommufdError(.memoryMap, .invalidArgument, detail: "a DMA buffer needs a length above 0")) {
      try DMABuffer(length: 0)
    }
  }
}
