import CIommufd
import SystemPackage

extension VFIODevice {
  /// Lets the kernel put the device into a low-power state (D3) once it is idle
  /// (`VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY`, or `..._WITH_WAKEUP` with `wakeup`): its BARs
  /// are unmapped from user space meanwhile. On a kernel with runtime PM (`CONFIG_PM`),
  /// any runtime resume ends it: the device's own wakeup, and also this process's next
  /// access to the device (a request, a config-space or BAR access); with `wakeup`, the
  /// kernel signals that eventfd then. vfio-pci devices only (ENOTTY elsewhere,
  /// explained); `EINVAL` when the device is already in that state (explained).
  public func enterLowPower(wakeup: EventFD? = nil) throws(IommufdError) {
    do throws(IommufdError) {
      if let wakeup {
        try wakeup.descriptor.withDescriptor(.deviceFeature) { fd throws(IommufdError) in
          let payload = fd.rawValue.littleEndianBytes + UInt32(0).littleEndianBytes
          _ = try setFeature(.lowPowerEntryWithWakeup, data: payload)
        }
      } else {
        _ = try setFeature(.lowPowerEntry, data: [])
      }
    } catch where error.errno == .invalidArgument && error.detail == nil {
      throw error.unsupported(
        wakeup == nil
          ? "the device is already in low-power entry; exitLowPower() first (EINVAL)"
          : "the device is already in low-power entry (exitLowPower() first), or the wakeup descriptor is no eventfd (EINVAL)")
    } catch {
      throw error
    }
  }

  /// Takes the device out of low-power entry (`VFIO_DEVICE_FEATURE_LOW_POWER_EXIT`): it
  /// returns to D0 and its BARs can be mapped again. Succeeds when it was not in low power too.
  public func exitLowPower() throws(IommufdError) {
    _ = try setFeature(.lowPowerExit, data: [])
  }
}
