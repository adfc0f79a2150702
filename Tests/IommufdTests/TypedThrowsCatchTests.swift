import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

/// The catch forms ErrorsAndTracing.md recommends, in a plain `throws` function and in one
/// with its own typed throws: swiftc 6.3.1 crashes on a guarded catch with no catch-all in the
/// first, and on `catch let e as IommufdError` in the second (swiftlang/swift#89431). This
/// file compiling is half the test; the other half is that each clause catches what it says.
@Suite("typed-throws catch forms")
struct TypedThrowsCatchTests {
  enum VMMError: Error, Equatable {
    case overlap
    case failed(Errno)
  }

  /// The documented example, unchanged but for the address.
  static func mapGuestRAM(_ memory: GuestMemory, into ioas: IOAS, at address: UInt64) throws(VMMError) -> DMAMapping {
    do {
      return try memory.map(into: ioas, at: address)
    } catch where error.errno == .fileExists {
      throw .overlap
    } catch {
      throw .failed(error.errno)
    }
  }

  /// The documented form in a plain `throws` function: the guarded catch, then a catch-all.
  static func resetOrReport(_ device: VFIODevice) throws -> String {
    do {
      try device.reset()
      return "reset"
    } catch where error.errno == .invalidArgument {
      return "no function reset: \(error.errno)"
    } catch {
      throw error
    }
  }

  @Test func guardedCatchThenCatchAllInAPlainThrowsFunction() throws {
    let backend = Backend.simulated(SimulatedKernel(devices: [SimulatedEduDevice()]))
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
    // Not bound yet: the kernel refuses the reset with EINVAL.
    #expect(try Self.resetOrReport(device) == "no function reset: \(Errno.invalidArgument)")
    try device.bind(to: iommufd)
    // Bound: edu has no function reset, still EINVAL, caught the same way.
    #expect(try Self.resetOrReport(device) == "no function reset: \(Errno.invalidArgument)")
    try device.close()
    // Closed: EBADF is not caught by the guarded clause and leaves through the catch-all.
    let error = try #require(throws: IommufdError.self) { _ = try Self.resetOrReport(device) }
    #expect(error.errno == .badFileDescriptor)
  }

  @Test func whereClauseAndPlainCatchInATypedThrowsFunction() throws {
    let backend = Backend.simulated(SimulatedKernel())
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let memory = try GuestMemory(size: 2 * 4096, backend: backend)
    let first = try Self.mapGuestRAM(memory, into: ioas, at: 0x10_0000)
    #expect(first.iova == 0x10_0000)
    #expect(throws: VMMError.overlap) { _ = try Self.mapGuestRAM(memory, into: ioas, at: 0x10_1000) }
    #expect(throws: VMMError.failed(.overflow)) { _ = try Self.mapGuestRAM(memory, into: ioas, at: 0xFFFF_FFFF_FFFF_F000) }
  }
}
