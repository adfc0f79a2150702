import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

@Suite("TranscriptSystemCalls: the public recording seam")
struct TranscriptTests {
  @Test("records each call with its descriptor and outcome, failures included, and the bytes of reads and writes")
  func recordsCallsAndOutcomes() throws {
    let calls = TranscriptSystemCalls(SimulatedKernel())
    let backend = Backend(calls)
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    #expect(throws: IommufdError.self) { try iommufd.destroy(ObjectID(9)) }
    let event = try EventFD(nonBlocking: true, backend: backend)
    try event.signal(3)
    #expect(try event.wait() == 3)
    try ioas.destroy()
    try event.close()
    try iommufd.close()
    let fd = iommufd.fileDescriptor
    #expect(calls.entries.map(\.call) == [
      .open("/dev/iommu"), .ioctl(0x3B81), .ioctl(0x3B80), .eventfd, .write, .read, .ioctl(0x3B80), .close, .close,
    ])
    #expect(calls.entries[1].fd == fd && calls.entries[2].fd == fd)
    #expect(calls.entries[2].errno == .noSuchFileOrDirectory)
    #expect(calls.entries[4].bytes == [3, 0, 0, 0, 0, 0, 0, 0] && calls.entries[4].result == 8)
    #expect(calls.transcript == [
      "open /dev/iommu -> 0", "ioctl 0x3b81 -> 0", "ioctl 0x3b80 -> errno 2", "eventfd -> 0", "write -> 8",
      "read -> 8 bytes [3, 0, 0, 0, 0, 0, 0, 0]", "ioctl 0x3b80 -> 0", "close -> 0", "close -> 0",
    ])
    calls.note("a note")
    #expect(calls.transcript.last == "a note")
    #expect(calls.entries.count == 9, "notes are not entries")
    calls.reset()
    #expect(calls.entries.isEmpty && calls.transcript.isEmpty)
  }

  @Test("two backends that behave alike give equal transcripts (descriptors and addresses are not results)")
  func equalTranscripts() throws {
    func run(_ kernel: SimulatedKernel) throws -> [String] {
      let calls = TranscriptSystemCalls(kernel)
      let iommufd = try IOMMUFD.open(backend: Backend(calls))
      let buffer = try DMABuffer(length: 4096, backend: Backend(calls))
      var mapping = try iommufd.allocateIOAS().map(buffer)
      try mapping.unmap()
      return calls.transcript
    }
    let first = SimulatedKernel()
    _ = try first.open(IOMMUFD.defaultPath, flags: 0)  // other descriptor numbers on this one
    #expect(try run(first) == run(SimulatedKernel()))
  }
}
