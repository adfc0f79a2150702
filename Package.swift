// swift-tools-version:6.1
import PackageDescription

let package = Package(
  name: "swift-iommufd",
  products: [
    .library(name: "Iommufd", targets: ["Iommufd"]),
    .library(name: "IommufdSimulator", targets: ["IommufdSimulator"]),
    .library(name: "IommufdEdu", targets: ["IommufdEdu"]),
    // The simulated kernel behind a C ABI, for C programs built with iommufd_simulator.h.
    .library(name: "IommufdSimulatorC", type: .dynamic, targets: ["IommufdSimulatorC"]),
    .executable(name: "edu-dma", targets: ["edu-dma"]),
    .executable(name: "iommufd-tool", targets: ["iommufd-tool"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // Only the benchmark uses it, to count heap allocations.
    .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
    // `swift package generate-documentation`: the DocC catalogs of Iommufd and IommufdSimulator.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
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
    // The simulated kernel behind the same seam, with device models that DMA: for tests.
    .target(
      name: "IommufdSimulator",
      dependencies: [
        "Iommufd", "CIommufd",
        .product(name: "SystemPackage", package: "swift-system"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Sources/IommufdSimulator"
    ),
    // The simulated kernel's system calls exported through a C ABI (with a forced-include header).
    .target(
      name: "IommufdSimulatorC",
      dependencies: ["Iommufd", "IommufdSimulator", .product(name: "SystemPackage", package: "swift-system")],
      path: "Sources/IommufdSimulatorC",
      exclude: ["iommufd_simulator.h"]
    ),
    // A driver for QEMU's edu device over the public API, for examples, tests and the lab.
    .target(name: "IommufdEdu", dependencies: ["Iommufd"], path: "Sources/IommufdEdu"),
    // The main job: a DMA round trip with edu, on the kernel or the simulated kernel.
    .executableTarget(
      name: "edu-dma",
      dependencies: [
        "Iommufd", "IommufdSimulator", "IommufdEdu",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Examples/EduDMA"
    ),
    // A VMM prototype's device path: guest RAM, hand-over, BARs, interrupts, dirty pages, hot-plug.
    .executableTarget(
      name: "vmm-passthrough",
      dependencies: [
        "Iommufd", "IommufdSimulator", "IommufdEdu",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Examples/VMMPassthrough"
    ),
    // Migration v2 between two mtty devices, on the kernel or the simulator.
    .executableTarget(
      name: "migrate",
      dependencies: [
        "Iommufd", "IommufdSimulator",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Examples/Migrate"
    ),
    // The command-line tool: devices, probe, ranges, hw-info, bind, unbind.
    .executableTarget(
      name: "iommufd-tool",
      dependencies: [
        "Iommufd", "IommufdSimulator",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Examples/Tool"
    ),
    // The differential fuzzer: raw ioctl sequences on the kernel and the simulated kernel, compared.
    .executableTarget(
      name: "iommufd-diff-fuzz",
      dependencies: ["Iommufd", "IommufdSimulator", "CIommufd", .product(name: "SystemPackage", package: "swift-system")],
      path: "Fuzz/Differential"
    ),
    // A seeded fuzzer of the public API: every call returns or throws IommufdError, none traps.
    .executableTarget(
      name: "iommufd-api-fuzz",
      dependencies: ["Iommufd", "IommufdSimulator", "IommufdEdu", .product(name: "SystemPackage", package: "swift-system")],
      path: "Fuzz/API"
    ),
    // Benchmarks of the simulated kernel against plain baselines, printed as ratios.
    .executableTarget(
      name: "iommufd-bench",
      dependencies: ["Iommufd", "IommufdSimulator", "CIommufd", .product(name: "MallocInterposerSwift", package: "malloc-interposer")],
      path: "Benchmarks/Native"
    ),
    .testTarget(
      name: "IommufdTests",
      dependencies: [
        "Iommufd", "IommufdSimulator", "CIommufd", "IommufdEdu",
        .product(name: "SystemPackage", package: "swift-system"),
      ],
      path: "Tests/IommufdTests"
    ),
  ]
)
