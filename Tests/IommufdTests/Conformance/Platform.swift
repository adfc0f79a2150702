import Foundation
import Iommufd
import IommufdSimulator
import SystemPackage

/// A backend the conformance suite runs on: the simulated kernel always; the real kernel
/// when `/dev/iommu` exists, with device scenarios only on the device named in
/// `IOMMUFD_TEST_DEVICE`, and only if it is an edu device bound to vfio-pci (the lab's).
struct Platform: CustomTestStringConvertible, Sendable {
  let name: String
  let isSimulated: Bool
  /// The kernel release it answers as (for the real kernel, `uname -r`; nil if unmodelled).
  let release: SimulatedKernel.Release?
  let makeBackend: @Sendable () -> Backend
  /// The edu device's cdev, if this platform has one to test with.
  let devicePath: FilePath?

  var testDescription: String { name }

  static let simulated = Platform(
    name: "simulated", isSimulated: true, release: .linux6_12,
    makeBackend: { .simulated(SimulatedKernel(devices: [SimulatedEduDevice()])) },
    devicePath: SimulatedKernel.devicePath(0))

  static let kernel: Platform? = {
    guard FileManager.default.fileExists(atPath: "/dev/iommu") else { return nil }
    let named = ProcessInfo.processInfo.environment["IOMMUFD_TEST_DEVICE"].flatMap(PCIAddress.init)
    // The device scenarios expect QEMU's edu; another named device is left to RealKernelTests.
    let entry = named.flatMap { try? VFIODiscovery().device(at: $0) }
    let path = entry?.vendorID == 0x1234 && entry?.deviceID == 0x11e8 ? entry?.cdevPath : nil
    var system = utsname()
    uname(&system)
    let version = withUnsafeBytes(of: system.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    return Platform(
      name: "kernel", isSimulated: false, release: SimulatedKernel.Release(kernelVersion: version), makeBackend: { .kernel },
      devicePath: path)
  }()

  /// The simulator configured as Linux 7.2, with an edu device.
  static let simulated7_2: Platform = {
    var configuration = SimulatedKernel.Configuration()
    configuration.release = .linux7_2
    return Platform(
      name: "simulated 7.2", isSimulated: true, release: .linux7_2,
      makeBackend: { [configuration] in .simulated(SimulatedKernel(configuration: configuration, devices: [SimulatedEduDevice()])) },
      devicePath: SimulatedKernel.devicePath(0))
  }()

  /// Every platform: the simulator as 6.12 and as 7.2, and the kernel when there is one
  /// (in the lab, only the kernel's simulated twin comes with it: see ``twinned(_:)``).
  static let all: [Platform] = twinned(everyPlatform)

  /// The simulator as 6.12 and as 7.2, and the kernel when there is one: the lists below
  /// filter this before the lab's cut, so none loses its simulated cases to it.
  private static let everyPlatform: [Platform] = [simulated, simulated7_2] + (kernel.map { [$0] } ?? [])

  /// `platforms` as the lab runs them: where the list has the kernel and the kernel's release
  /// is modelled, only the simulator answering as that release stays beside it. The
  /// scenarios run on both backends in the same boot and must agree there; the simulator as
  /// the other release answers in the host's unit tests (and in the other kernel's boots),
  /// where it costs a fraction of what it costs under TCG. A list without the kernel is
  /// left as it is, so no test loses all its cases.
  static func twinned(_ platforms: [Platform]) -> [Platform] {
    guard ProcessInfo.processInfo.environment["IOMMUFD_LAB_MODE"] != nil,
      let release = platforms.first(where: { !$0.isSimulated })?.release
    else { return platforms }
    return platforms.filter { !$0.isSimulated || $0.release == release }
  }

  /// The platforms that answer as Linux 6.12: the default simulator, and the kernel when it is 6.12.
  static let linux6_12: [Platform] = twinned(everyPlatform.filter { $0.release == .linux6_12 })

  /// The platforms that answer as Linux 7.2: the simulator configured so, and the kernel
  /// when it is 7.2 (the lab's `--kernel 7.2` boots).
  static let linux7_2: [Platform] = twinned(everyPlatform.filter { $0.release == .linux7_2 })

  /// Platforms with the iommufd self-test's mock IOMMU: a simulated test kernel always; the
  /// real kernel in the lab's mock boot (`IOMMUFD_LAB_MODE=mock`: CONFIG_IOMMUFD_TEST, no
  /// real IOMMU driver).
  static let mock: [Platform] = twinned(everyMock)

  /// The simulated test kernels as 6.12 and 7.2, and the lab's mock boot's kernel.
  private static let everyMock: [Platform] = {
    var testKernel = SimulatedKernel.Configuration()
    testKernel.selfTest = true
    let configuration = testKernel
    let simulated = Platform(
      name: "simulated test kernel", isSimulated: true, release: .linux6_12,
      makeBackend: { .simulated(SimulatedKernel(configuration: configuration)) }, devicePath: nil)
    var newer = configuration
    newer.release = .linux7_2
    let simulated7_2 = Platform(
      name: "simulated 7.2 test kernel", isSimulated: true, release: .linux7_2,
      makeBackend: { [newer] in .simulated(SimulatedKernel(configuration: newer)) }, devicePath: nil)
    return [simulated, simulated7_2] + (mockKernel.map { [$0] } ?? [])
  }()

  /// The real kernel in the lab's mock boot (`IOMMUFD_LAB_MODE=mock`: CONFIG_IOMMUFD_TEST,
  /// no real IOMMU driver).
  static let mockKernel: Platform? = ProcessInfo.processInfo.environment["IOMMUFD_LAB_MODE"] == "mock" ? kernel : nil

  /// Mock platforms answering as 7.2: a simulated 7.2 test kernel, and the lab's 7.2 mock boot.
  static let mock7_2: [Platform] = twinned(everyMock.filter { $0.release == .linux7_2 })
  /// The platforms with an edu device to test with.
  static let withDevice: [Platform] = twinned(everyPlatform.filter { $0.devicePath != nil })
  /// Those answering as 6.12.
  static let withDevice6_12: [Platform] = twinned(everyPlatform.filter { $0.devicePath != nil && $0.release == .linux6_12 })
  /// Those answering as 7.2.
  static let withDevice7_2: [Platform] = twinned(everyPlatform.filter { $0.devicePath != nil && $0.release == .linux7_2 })
  /// Mock platforms answering as 6.12.
  static let mock6_12: [Platform] = twinned(everyMock.filter { $0.release == .linux6_12 })
}

import Testing

/// The errno a call failed with, or `nil` if it succeeded: an ``IommufdError``'s, or a
/// seam call's ``Errno``.
func errno<T>(_ body: () throws -> T) -> Errno? {
  do {
    _ = try body()
    return nil
  } catch let error as IommufdError {
    return error.errno
  } catch let error as Errno {
    return error
  } catch {
    Issue.record("not an IommufdError or Errno: \(error)")
    return nil
  }
}

/// Issues a raw ioctl with `bytes` as the argument through the platform's seam, as a C
/// program would; returns the errno (nil on success) and the argument afterwards.
func rawIoctl(_ backend: Backend, _ fd: FileDescriptor, _ request: UInt, _ bytes: [UInt8]) -> (Errno?, [UInt8]) {
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
  defer { buffer.deallocate() }
  buffer.copyBytes(from: bytes)
  do {
    _ = try backend.calls.ioctl(fd, request, bytes.isEmpty ? nil : buffer.baseAddress)
    return (nil, Array(buffer.prefix(bytes.count)))
  } catch {
    return (error, Array(buffer.prefix(bytes.count)))
  }
}

/// Little-endian bytes of a sequence of fields.
func le(_ fields: any FixedWidthInteger...) -> [UInt8] {
  var bytes: [UInt8] = []
  for field in fields {
    let size = field.bitWidth / 8
    let value = UInt64(truncatingIfNeeded: field)
    for index in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))) }
  }
  return bytes
}

/// An address no page of this process can be mapped at: below `mmap_min_addr` (64 KiB),
/// even while other tests map and unmap memory, for EFAULT scenarios.
func unmappedAddress() -> UInt64 { 0x2000 }

#if canImport(Glibc)
import Glibc
#endif
