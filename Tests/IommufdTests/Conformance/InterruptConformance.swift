import CIommufd
import Foundation
import Iommufd
import IommufdEdu
import IommufdSimulator
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Interrupt delivery as a VMM uses it: INTx's level and its unmask eventfd on edu (the
/// real one in the lab, the model on the simulator), and MSI-X on a simulated device with
/// a table (the lab's devices have none).
@Suite("conformance: interrupts")
struct InterruptConformance {
  /// The count `event` (non-blocking) reaches within `milliseconds`, or nil if it stays 0.
  static func signal(_ event: EventFD, within milliseconds: Int32 = 2000) throws -> UInt64? {
    var entry = pollfd(fd: event.fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0)
    guard poll(&entry, 1, milliseconds) == 1 else { return nil }
    return try event.wait()
  }

  /// Whether `event`'s count goes back to 0 (someone else read it) within 2 s.
  static func drained(_ event: EventFD) -> Bool {
    for _ in 0..<200 {
      var entry = pollfd(fd: event.fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0)
      if poll(&entry, 1, 0) == 0 { return true }
      usleep(10_000)
    }
    return false
  }

  /// A bound edu whose interrupt status earlier tests left in the real device is cleared,
  /// and a non-blocking eventfd for its trigger.
  static func boundEdu(_ platform: Platform) throws -> (DeviceConformance.Setup, EduDriver, EventFD) {
    let setup = try DeviceConformance.Setup(platform)
    try setup.device.bind(to: setup.iommufd)
    let edu = try EduDriver(device: setup.device)
    try edu.acknowledgeInterrupt(UInt32.max)
    return (setup, edu, try EventFD(nonBlocking: true, backend: setup.backend))
  }

  @Test("DEV-4.5: INTx is level-triggered: edu's raise fires and masks; an unmask while the line is asserted fires again and stays masked; after the acknowledgement an unmask clears the mask, and the next raise fires", arguments: Platform.withDevice)
  func intxLevel(platform: Platform) throws {
    let (setup, edu, trigger) = try Self.boundEdu(platform)
    let device = setup.device
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    try edu.raiseInterrupt(1)
    #expect(try Self.signal(trigger) == 1)
    try edu.raiseInterrupt(2)  // masked: the line stays asserted, nothing more
    #expect(try Self.signal(trigger, within: 100) == nil)
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)
    #expect(try Self.signal(trigger) == 1)  // still asserted: fired again, still masked
    try edu.acknowledgeInterrupt(3)
    #expect(try edu.interruptStatus() == 0)
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)
    #expect(try Self.signal(trigger, within: 100) == nil)
    try edu.raiseInterrupt(4)
    #expect(try Self.signal(trigger) == 1)
    try edu.acknowledgeInterrupt(4)
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)
    try device.disableInterrupts(VFIOPCIInterrupt.intx)
  }

  @Test("DEV-4.6: the INTx unmask eventfd: each signal unmasks (firing again while the line is asserted); a second one EBUSY, -1 removes it; MASK with an eventfd ENOTTY; before INTx is enabled EINVAL; disabling INTx drops it", arguments: Platform.withDevice)
  func intxUnmaskEventFD(platform: Platform) throws {
    let (setup, edu, trigger) = try Self.boundEdu(platform)
    let device = setup.device
    let resample = try EventFD(nonBlocking: true, backend: setup.backend)
    let other = try EventFD(nonBlocking: true, backend: setup.backend)
    #expect(errno { try device.setUnmaskEventFD(resample) } == .invalidArgument)  // INTx not enabled
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    try device.setUnmaskEventFD(resample)
    #expect(errno { try device.setUnmaskEventFD(other) } == .resourceBusy)
    #expect(errno { try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [other], action: .mask) } == .inappropriateIOCTLForDevice)
    // A descriptor that is no eventfd, and one that is not open: EINVAL and EBADF first.
    #expect(errno { try device.setUnmaskEventFD(borrowing: setup.iommufd.fileDescriptor) } == .invalidArgument)
    #expect(errno { try device.setUnmaskEventFD(borrowing: FileDescriptor(rawValue: Int32.max - 1)) } == .badFileDescriptor)

    try edu.raiseInterrupt(1)
    #expect(try Self.signal(trigger) == 1)
    try resample.signal()  // the line is still asserted: fired again
    #expect(try Self.signal(trigger) == 1)
    try edu.acknowledgeInterrupt(1)
    try resample.signal()  // unmasked now
    #expect(try Self.signal(trigger, within: 200) == nil)
    // The kernel consumes the count as the write signals (its virqfd reads it at once).
    #expect(Self.drained(resample))
    try edu.raiseInterrupt(2)
    #expect(try Self.signal(trigger) == 1)
    try edu.acknowledgeInterrupt(2)
    try resample.signal()

    // The unmask happens within the write that signals: a mask right after it stays.
    try edu.raiseInterrupt(8)
    #expect(try Self.signal(trigger) == 1)
    try edu.acknowledgeInterrupt(8)
    try resample.signal()
    try device.perform(.mask, interrupt: VFIOPCIInterrupt.intx)
    try edu.raiseInterrupt(8)
    #expect(try Self.signal(trigger, within: 200) == nil)
    try edu.acknowledgeInterrupt(8)
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)

    try device.setUnmaskEventFD(nil)
    try device.setUnmaskEventFD(other)  // free again
    try device.disableInterrupts(VFIOPCIInterrupt.intx)
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    try device.setUnmaskEventFD(resample)  // the disable dropped `other`
    try device.disableInterrupts(VFIOPCIInterrupt.intx)
  }

  @Test("DEV-4.6: the unmask listener holds no reference to its eventfd: once the caller closes it, another can be set", arguments: Platform.withDevice)
  func intxUnmaskEventFDClosed(platform: Platform) throws {
    let setup = try DeviceConformance.Setup(platform)
    try setup.device.bind(to: setup.iommufd)
    let device = setup.device
    let trigger = try EventFD(nonBlocking: true, backend: setup.backend)
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    let first = eventfd(0, Int32(EFD_CLOEXEC))
    let second = eventfd(0, Int32(EFD_CLOEXEC))
    defer { close(second) }
    try device.setUnmaskEventFD(borrowing: FileDescriptor(rawValue: first))
    #expect(errno { try device.setUnmaskEventFD(borrowing: FileDescriptor(rawValue: second)) } == .resourceBusy)
    close(first)
    try device.setUnmaskEventFD(borrowing: FileDescriptor(rawValue: second))
    try device.disableInterrupts(VFIOPCIInterrupt.intx)
  }

  @Test("DEV-4.9: a device that turns on MSI lowers its INTx line: INTx enabled again after MSI fires nothing", arguments: Platform.withDevice)
  func msiLowersINTx(platform: Platform) throws {
    let (setup, edu, trigger) = try Self.boundEdu(platform)
    let device = setup.device
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    try edu.raiseInterrupt(1)
    #expect(try Self.signal(trigger) == 1)
    try device.disableInterrupts(VFIOPCIInterrupt.intx)
    try device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [trigger])
    try edu.acknowledgeInterrupt(1)  // with MSI on, edu leaves its line as it is
    try device.disableInterrupts(VFIOPCIInterrupt.msi)
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    #expect(try Self.signal(trigger, within: 200) == nil)
    try device.disableInterrupts(VFIOPCIInterrupt.intx)
  }

  @Test("DEV-4.10: the request (REQ) index: one eventfd, -1 clears it and below -1 is EINVAL; NONE fires it (EINVAL with none set) or with count 0 clears it; BOOL and EVENTFD need count 1", arguments: Platform.withDevice)
  func requestIndex(platform: Platform) throws {
    let setup = try DeviceConformance.Setup(platform)
    try setup.device.bind(to: setup.iommufd)
    let device = setup.device
    let request = VFIOPCIInterrupt.request
    func raw(_ flags: UInt32, count: UInt32, _ payload: [UInt8] = []) -> Errno? {
      rawIoctl(setup.backend, device.fileDescriptor, 0x3B6E, le(UInt32(20 + payload.count), flags, UInt32(request), UInt32(0), count) + payload).0
    }
    #expect(errno { try device.perform(.trigger, interrupt: request) } == .invalidArgument)
    #expect(raw(0x24, count: 1, le(Int32(-2))) == .invalidArgument)
    #expect(raw(0x22, count: 0) == .invalidArgument)  // BOOL with count 0
    #expect(raw(0x24, count: 0) == .invalidArgument)  // EVENTFD with count 0
    #expect(raw(0x21, count: 0) == .invalidArgument)  // NONE count 0 with none set
    let event = try EventFD(nonBlocking: true, backend: setup.backend)
    try device.setInterrupts(request, eventFDs: [event])
    try device.perform(.trigger, interrupt: request)
    #expect(try Self.signal(event) == 1)
    try device.perform(.trigger, interrupt: request, selecting: [true])
    #expect(try Self.signal(event) == 1)
    #expect(raw(0x21, count: 0) == nil)  // cleared
    #expect(errno { try device.perform(.trigger, interrupt: request) } == .invalidArgument)
    try device.setInterrupts(request, eventFDs: [event])
    try device.setInterrupts(request, eventFDs: [nil])  // -1 clears
    #expect(errno { try device.perform(.trigger, interrupt: request) } == .invalidArgument)
    try device.perform(.trigger, interrupt: request, selecting: [true])  // BOOL with none set: nothing, no error
  }

  @Test("DEV-4.3: no action bit, or two, is ENOTTY (no handler), after the data is read; an O_PATH descriptor is EBADF, as one not open", arguments: Platform.withDevice)
  func actionDispatch(platform: Platform) throws {
    let setup = try DeviceConformance.Setup(platform)
    try setup.device.bind(to: setup.iommufd)
    let device = setup.device
    func raw(_ flags: UInt32, index: UInt32, _ payload: [UInt8] = []) -> Errno? {
      rawIoctl(setup.backend, device.fileDescriptor, 0x3B6E, le(UInt32(20 + payload.count), flags, index, UInt32(0), UInt32(1)) + payload).0
    }
    #expect(raw(0x01, index: 0) == .inappropriateIOCTLForDevice)
    #expect(raw(0x01 | 0x08 | 0x10, index: 0) == .inappropriateIOCTLForDevice)
    #expect(raw(0x01 | 0x08 | 0x20, index: 1) == .inappropriateIOCTLForDevice)
    #expect(raw(0x04 | 0x20 | 0x10, index: 4, le(Int32(-1))) == .inappropriateIOCTLForDevice)
    let path = open("/", O_RDONLY | O_CLOEXEC | Int32(CIOMMUFD_O_PATH))
    defer { close(path) }
    #expect(raw(0x24, index: 1, le(path)) == .badFileDescriptor)
    #expect(raw(0x24, index: 4, le(path)) == .badFileDescriptor)
  }

  @Test("DEV-4.7: BOOL data: only the vectors marked true fire, mask or unmask; a false entry does nothing", arguments: Platform.withDevice)
  func boolData(platform: Platform) throws {
    let (setup, edu, trigger) = try Self.boundEdu(platform)
    let device = setup.device
    try device.setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [trigger])
    try device.perform(.trigger, interrupt: VFIOPCIInterrupt.intx, selecting: [false])
    #expect(try Self.signal(trigger, within: 100) == nil)
    try device.perform(.trigger, interrupt: VFIOPCIInterrupt.intx, selecting: [true])
    #expect(try Self.signal(trigger) == 1)
    try device.perform(.mask, interrupt: VFIOPCIInterrupt.intx, selecting: [true])
    try edu.raiseInterrupt(1)  // masked by the user: nothing
    #expect(try Self.signal(trigger, within: 100) == nil)
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx, selecting: [false])
    #expect(try Self.signal(trigger, within: 100) == nil)
    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx, selecting: [true])
    #expect(try Self.signal(trigger) == 1)  // the line was asserted all along
    try edu.acknowledgeInterrupt(1)
    #expect(errno { try device.perform(.trigger, interrupt: VFIOPCIInterrupt.intx, selecting: []) } == .invalidArgument)
    #expect(errno { try device.perform(.trigger, interrupt: VFIOPCIInterrupt.intx, selecting: [true, true]) } == .invalidArgument)
    try device.disableInterrupts(VFIOPCIInterrupt.intx)

    try device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [trigger])
    try device.perform(.trigger, interrupt: VFIOPCIInterrupt.msi, selecting: [true])
    #expect(try Self.signal(trigger) == 1)
    #expect(errno { try device.perform(.mask, interrupt: VFIOPCIInterrupt.msi, selecting: [true]) } == .inappropriateIOCTLForDevice)
    try device.disableInterrupts(VFIOPCIInterrupt.msi)
  }

  @Test("DEV-4.8: an MSI is a memory write: with bus mastering off edu's raise delivers nothing; with it on, every raise is a message, not only a change of level", arguments: Platform.withDevice)
  func msiEdges(platform: Platform) throws {
    let (setup, edu, trigger) = try Self.boundEdu(platform)
    try setup.device.setInterrupts(VFIOPCIInterrupt.msi, eventFDs: [trigger])
    _ = try PCIConfigSpace(setup.device).updateCommand { $0.remove(.busMaster) }
    try edu.raiseInterrupt(1)
    #expect(try Self.signal(trigger, within: 200) == nil)
    try edu.acknowledgeInterrupt(UInt32.max)
    try edu.enableBusMaster()
    try edu.raiseInterrupt(1)
    #expect(try Self.signal(trigger) == 1)
    try edu.raiseInterrupt(1)
    #expect(try Self.signal(trigger) == 1)
    try edu.acknowledgeInterrupt(UInt32.max)
    try setup.device.disableInterrupts(VFIOPCIInterrupt.msi)
  }
}
