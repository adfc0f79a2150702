import Iommufd
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The choices of backend that involve a simulated kernel. They live in this module, not
/// in `Iommufd`, so that a program linking only `Iommufd` cannot run on a simulated kernel
/// by accident.
extension Backend {
  /// A simulated kernel (see ``SimulatedKernel``).
  public static func simulated(_ kernel: SimulatedKernel, logger: Logger = Logger(label: "iommufd")) -> Backend {
    Backend(kernel, logger: logger, reason: "the simulated kernel was chosen explicitly")
  }

  /// The kernel when this host has `/dev/iommu`, else a simulated kernel with `devices`;
  /// `Backend.reason` says which and why.
  ///
  /// For examples and tests that should run anywhere. A production program uses
  /// `Backend.kernel` and reports a missing `/dev/iommu` as the error it is.
  public static func automatic(
    simulating devices: @autoclosure () -> [SimulatedPCIDevice], logger: Logger = Logger(label: "iommufd")
  ) -> Backend {
    if access("/dev/iommu", F_OK) == 0 {
      return Backend(KernelSystemCalls(), logger: logger, reason: "/dev/iommu exists: using the kernel")
    }
    return Backend(
      SimulatedKernel(devices: devices()), logger: logger,
      reason: "no /dev/iommu on this host (the kernel lacks CONFIG_IOMMUFD): using the simulated kernel")
  }

  /// The simulated kernel behind this backend, if it is one.
  public var simulator: SimulatedKernel? { calls as? SimulatedKernel }
}
