import Iommufd
import IommufdSimulator
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Descriptors a caller keeps owning (a VMM's hand-over of `/dev/iommu` and device fds, its
/// irqfds): the handles use them and never close them, on every platform.
@Suite("conformance: borrowed descriptors")
struct BorrowedDescriptorConformance {
  @Test("a borrowed iommufd: close ends the handle's use, the descriptor and the context's objects stay", arguments: Platform.all)
  func borrowedContext(platform: Platform) throws {
    let backend = platform.makeBackend()
    let fd = try backend.calls.open(IOMMUFD.defaultPath, flags: O_RDWR | O_CLOEXEC)
    let borrowed = IOMMUFD(borrowing: fd, backend: backend)
    #expect(!borrowed.closesDescriptor)
    let ioas = try borrowed.allocateIOAS()
    let id = ioas.id
    try borrowed.close()
    #expect(errno { try borrowed.allocateIOAS() } == .badFileDescriptor)
    #expect(errno { try ioas.iovaRanges() } == .badFileDescriptor)
    // The owner's descriptor still holds the context and the IOAS.
    let owner = IOMMUFD(adopting: fd, backend: backend)
    #expect(owner.closesDescriptor)
    try owner.destroy(id)
    #expect(errno { try owner.destroy(id) } == .noSuchFileOrDirectory)
    try owner.close()
    if let simulator = backend.simulator { #expect(simulator.openFileCount == 0) }
  }

  @Test("a borrowed iommufd released with its objects: they are destroyed, the descriptor stays open", arguments: Platform.all)
  func borrowedContextReleased(platform: Platform) throws {
    let backend = platform.makeBackend()
    let fd = try backend.calls.open(IOMMUFD.defaultPath, flags: O_RDWR | O_CLOEXEC)
    do {
      let borrowed = IOMMUFD(borrowing: fd, backend: backend)
      _ = try borrowed.allocateIOAS()  // released at once: destroyed through the descriptor
      let kept = try borrowed.allocateIOAS()
      #expect(kept.id == ObjectID(1), "the lowest free id again: the first IOAS was destroyed")
      _ = try borrowed.allocateIOAS()
    }  // the handles and the context handle released: both IOAS destroyed, fd left open
    let owner = IOMMUFD(adopting: fd, backend: backend)
    #expect(errno { try owner.destroy(ObjectID(1)) } == .noSuchFileOrDirectory)
    #expect(errno { try owner.destroy(ObjectID(2)) } == .noSuchFileOrDirectory)
    #expect(try owner.allocateIOAS().id == ObjectID(1))
    try owner.close()
    if let simulator = backend.simulator { #expect(simulator.openFileCount == 0) }
  }

  @Test("a borrowed device cdev: close leaves the device bound and attached (EBUSY on its IOAS) until the owner closes it", arguments: Platform.withDevice)
  func borrowedDevice(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let fd = try backend.calls.open(platform.devicePath!, flags: O_RDWR | O_CLOEXEC)
    let device = VFIODevice(borrowing: fd, backend: backend)
    #expect(!device.closesDescriptor)
    try device.bind(to: iommufd)
    let ioas = try iommufd.allocateIOAS()
    try device.attach(to: ioas)
    try device.close()
    #expect(errno { try device.info() } == .badFileDescriptor)
    #expect(device.attachedPageTableID == nil)
    #expect(errno { try ioas.destroy() } == .resourceBusy)
    // The descriptor is still the bound device: another handle adopting it sees that.
    let owner = VFIODevice(adopting: fd, backend: backend)
    #expect(try owner.info().regionCount == 9)
    try owner.close()  // the kernel detaches and unbinds
    try ioas.destroy()
    try iommufd.close()
    if let simulator = backend.simulator { #expect(simulator.openFileCount == 0) }
  }

  @Test("borrowed irqfds: the device signals them, and neither the device nor the handle closes them", arguments: Platform.withDevice)
  func borrowedInterrupts(platform: Platform) throws {
    let backend = platform.makeBackend()
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open(platform.devicePath!, backend: backend)
    try device.bind(to: iommufd)
    let irqfd = try backend.calls.eventfd(initialValue: 0, flags: O_CLOEXEC | O_NONBLOCK)  // EFD_CLOEXEC, EFD_NONBLOCK
    try device.setInterrupts(VFIOPCIInterrupt.msi, borrowing: [irqfd])
    try device.perform(.trigger, interrupt: VFIOPCIInterrupt.msi)
    let reader = EventFD(borrowing: irqfd, backend: backend)
    #expect(!reader.closesDescriptor)
    #expect(try reader.wait() == 1)
    try reader.close()
    try device.disableInterrupts(VFIOPCIInterrupt.msi)
    try device.close()
    try iommufd.close()
    // Still open: the owner reads it and closes it.
    let owner = EventFD(borrowing: irqfd, backend: backend)
    try owner.signal(2)
    #expect(try owner.wait() == 2)
    try backend.calls.close(irqfd)
    #expect(errno { try owner.signal() } == .badFileDescriptor)
    if let simulator = backend.simulator { #expect(simulator.openFileCount == 0) }
  }
}
