import Iommufd

/// A parent of mediated devices on the simulated machine (a driver that called
/// `mdev_register_parent`): its types, under `/sys/class/mdev_bus/<name>`, and the pool of
/// resources their instances share.
///
/// Writing a UUID to a type's `create` makes an instance (a ``SimulatedMediatedDevice``
/// from the type's factory) with its own VFIO cdev and IOMMU group; writing `1` to the
/// instance's `remove` removes it.
public final class SimulatedMediatedParent: @unchecked Sendable {
  /// One type of mediated device the parent offers (`mdev_supported_types/<name>-<suffix>`).
  public struct DeviceType: Sendable {
    /// The type's suffix (`sysfs_name`): the directory is the parent's name, `-`, and this.
    public var suffix: String
    /// Its `name` attribute (`pretty_name`).
    public var name: String
    /// Its `description` attribute, if the driver has one.
    public var description: String?
    /// Its `device_api` attribute (`vfio-pci` for a PCI device).
    public var deviceAPI: String
    /// How much of the parent's pool an instance takes.
    public var cost: Int
    /// Makes the model of a new instance.
    public var makeDevice: @Sendable () -> SimulatedMediatedDevice

    /// Creates a type.
    public init(
      suffix: String, name: String, description: String? = nil, deviceAPI: String = "vfio-pci", cost: Int = 1,
      makeDevice: @escaping @Sendable () -> SimulatedMediatedDevice
    ) {
      self.suffix = suffix
      self.name = name
      self.description = description
      self.deviceAPI = deviceAPI
      self.cost = max(1, cost)
      self.makeDevice = makeDevice
    }
  }

  /// The parent device's name (`/sys/devices/virtual/<name>/<name>`), also the driver's and
  /// the class's name.
  public let name: String
  /// Its types, in the order sysfs lists them.
  public let types: [DeviceType]
  /// The size of the pool the instances share: a type's `available_instances` is what is
  /// left divided by its cost.
  public let capacity: Int

  /// Creates a parent.
  public init(name: String, types: [DeviceType], capacity: Int) {
    self.name = name
    self.types = types
    self.capacity = max(0, capacity)
  }

  /// The directory name of `type`: `<parent>-<suffix>` (`dev_driver_string` of the parent,
  /// which for mtty is its class's name, and the type's `sysfs_name`).
  func directoryName(_ type: DeviceType) -> String { "\(name)-\(type.suffix)" }

  /// The kernel's mtty sample (`samples/vfio-mdev/mtty.c`): types `mtty-1` ("Single port
  /// serial") and `mtty-2` ("Dual port serial") sharing 24 ports, each instance a PCI
  /// device with one or two 16550 UARTs (``SimulatedMttyDevice``).
  public static func mtty() -> SimulatedMediatedParent {
    SimulatedMediatedParent(
      name: "mtty",
      types: [
        DeviceType(suffix: "1", name: "Single port serial", cost: 1, makeDevice: { SimulatedMttyDevice(ports: 1) }),
        DeviceType(suffix: "2", name: "Dual port serial", cost: 2, makeDevice: { SimulatedMttyDevice(ports: 2) }),
      ],
      capacity: 24)
  }
}
