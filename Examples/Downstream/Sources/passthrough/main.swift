import DevicePassthrough
import Iommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// passthrough CDEV: hands the VFIO device at CDEV (/dev/vfio/devices/vfioN) a guest with
// two banks of RAM and prints what it is. The kernel backend only: this binary links no
// simulated kernel.
let arguments = CommandLine.arguments
guard arguments.count == 2 else {
  print("usage: passthrough /dev/vfio/devices/vfioN")
  exit(2)
}
do {
  let guest = try PassthroughDevice(
    cdev: FilePath(arguments[1]),
    banks: [.init(at: 0, length: 2 << 20), .init(at: 1 << 32, length: 2 << 20)])
  let identity = try guest.identity()
  print("\(arguments[1]): \(String(identity.vendor, radix: 16)):\(String(identity.device, radix: 16)), guest RAM mapped in IOAS \(guest.addressSpace.id)")
  try guest.unplug()
} catch {
  print("passthrough: \(error)")
  exit(1)
}
