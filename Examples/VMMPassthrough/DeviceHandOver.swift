import Iommufd
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a management stack hands a VMM: an iommufd and a device cdev it opened itself
/// (QEMU's `iommufd=` object with `fd=`, and vfio-pci's `fd=`). The VMM borrows both: it
/// never closes them, and its own handles end without touching the kernel's state.
struct DeviceHandOver {
  /// The descriptor of `/dev/iommu`.
  let iommufd: FileDescriptor
  /// The descriptor of the device's cdev.
  let device: FileDescriptor
  /// The cdev the device was opened from.
  let path: FilePath

  /// Opens `/dev/iommu` and the cdev at `path` as the management stack would.
  static func open(_ path: FilePath, backend: Backend) throws -> DeviceHandOver {
    let iommufd = try backend.calls.open("/dev/iommu", flags: O_RDWR | O_CLOEXEC)
    do {
      let device = try backend.calls.open(path, flags: O_RDWR | O_CLOEXEC)
      return DeviceHandOver(iommufd: iommufd, device: device, path: path)
    } catch {
      try? backend.calls.close(iommufd)
      throw error
    }
  }

  /// The management stack closes what it opened (the device's descriptor already, when
  /// `deviceClosed`: a hot-unplugged device is closed at the unplug).
  func close(backend: Backend, deviceClosed: Bool = false) throws {
    if !deviceClosed { try backend.calls.close(device) }
    try backend.calls.close(iommufd)
  }
}
