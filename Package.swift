// swift-tools-version:6.1
import PackageDescription

let package = Package(
  name: "swift-iommufd",
  products: [
    .library(name: "Iommufd", targets: ["Iommufd"]),
    .executable(name: "iommufd-probe", targets: ["iommufd-probe"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
  ],
  targets: [
    // The kernel uAPI as the package defines it, checked against the system headers.
    .systemLibrary(name: "CIommufd", path: "Sources/CIommufd"),
    // The Swift API, the system-call seam and its kernel backend.
    .target(
      name: "Iommufd",
      dependencies: [
        "CIommufd",
        .product(name: "SystemPackage", package: "swift-system"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Sources/Iommufd"
    ),
    // Reports what this host offers: iommufd, VFIO devices, and why not.
    .executableTarget(
      name: "iommufd-probe",
      dependencies: [
        "Iommufd",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Examples/Probe"
    ),
    .testTarget(
      name: "IommufdTests",
      dependencies: [
        "Iommufd", "CIommufd",
        .product(name: "SystemPackage", package: "swift-system"),
      ],
      path: "Tests/IommufdTests"
    ),
  ]
)
