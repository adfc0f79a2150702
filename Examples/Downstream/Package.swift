// swift-tools-version:6.1
// A package that uses swift-iommufd as a downstream project would: its device path links
// only `Iommufd`, and only its tests link `IommufdSimulator`. The test command builds it,
// runs its tests and checks its executable with ldd and nm (no Foundation, no simulator).
import PackageDescription

let package = Package(
  name: "iommufd-downstream",
  dependencies: [
    .package(name: "swift-iommufd", path: "../.."),
    // `UniqueArray` holds the noncopyable `DMAMapping`s of the banks.
    .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
  ],
  targets: [
    // A VMM's device path: guest RAM banks mapped at their guest-physical addresses.
    .target(
      name: "DevicePassthrough",
      dependencies: [
        .product(name: "Iommufd", package: "swift-iommufd"),
        .product(name: "BasicContainers", package: "swift-collections"),
      ]
    ),
    // The production binary: the kernel backend only.
    .executableTarget(name: "passthrough", dependencies: ["DevicePassthrough"]),
    // Its tests, on the simulated kernel.
    .testTarget(
      name: "DevicePassthroughTests",
      dependencies: ["DevicePassthrough", .product(name: "IommufdSimulator", package: "swift-iommufd")]
    ),
  ]
)
