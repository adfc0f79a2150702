import CIommufd
import SystemPackage

/// A device feature: what `VFIO_DEVICE_FEATURE` gets, sets or probes (the low 16 bits of
/// its flags).
public struct VFIODeviceFeature: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  /// The feature's number.
  public let rawValue: UInt16

  /// A feature by number.
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// `PCI_VF_TOKEN`: the SR-IOV VF token (set).
  public static var pciVFToken: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_PCI_VF_TOKEN)) }
  /// `MIGRATION`: the migration flags the device supports (get).
  public static var migration: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_MIGRATION)) }
  /// `MIG_DEVICE_STATE`: the migration state (get and set).
  public static var migrationDeviceState: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE)) }
  /// `LOW_POWER_ENTRY` (set).
  public static var lowPowerEntry: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY)) }
  /// `LOW_POWER_ENTRY_WITH_WAKEUP` (set).
  public static var lowPowerEntryWithWakeup: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP)) }
  /// `LOW_POWER_EXIT` (set).
  public static var lowPowerExit: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_EXIT)) }
  /// `DMA_LOGGING_START` (set).
  public static var dmaLoggingStart: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_START)) }
  /// `DMA_LOGGING_STOP` (set).
  public static var dmaLoggingStop: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP)) }
  /// `DMA_LOGGING_REPORT` (get).
  public static var dmaLoggingReport: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT)) }
  /// `MIG_DATA_SIZE`: the size of the state a STOP_COPY would save (get).
  public static var migrationDataSize: Self { Self(rawValue: UInt16(CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DATA_SIZE)) }

  /// The features of Linux 6.12's uAPI, in number order.
  public static let known: [VFIODeviceFeature] = (0...9).map { Self(rawValue: $0) }

  /// The uAPI name (`MIGRATION`), or the number for another.
  public var description: String {
    let names = [
      "PCI_VF_TOKEN", "MIGRATION", "MIG_DEVICE_STATE", "LOW_POWER_ENTRY", "LOW_POWER_ENTRY_WITH_WAKEUP", "LOW_POWER_EXIT",
      "DMA_LOGGING_START", "DMA_LOGGING_STOP", "DMA_LOGGING_REPORT", "MIG_DATA_SIZE",
    ]
    return Int(rawValue) < names.count ? names[Int(rawValue)] : "feature \(rawValue)"
  }
}

/// How a device supports a feature: what a `VFIO_DEVICE_FEATURE_PROBE` found.
public struct VFIOFeatureSupport: OptionSet, Hashable, Sendable, CustomStringConvertible {
  /// The bits: `VFIO_DEVICE_FEATURE_GET` and `_SET`.
  public let rawValue: UInt32
  /// Creates a value from its bits.
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  /// The feature can be read.
  public static var get: Self { Self(rawValue: CIOMMUFD_VFIO_DEVICE_FEATURE_GET) }
  /// The feature can be written.
  public static var set: Self { Self(rawValue: CIOMMUFD_VFIO_DEVICE_FEATURE_SET) }
  /// "get", "set", "get, set" or "none".
  public var description: String {
    let parts = (contains(.get) ? ["get"] : []) + (contains(.set) ? ["set"] : [])
    return parts.isEmpty ? "none" : parts.joined(separator: ", ")
  }
}

extension VFIODevice {
  /// How the device supports `feature` (`VFIO_DEVICE_FEATURE_PROBE`): empty when it does
  /// not know it (the kernel's `ENOTTY`).
  public func support(for feature: VFIODeviceFeature) throws(IommufdError) -> VFIOFeatureSupport {
    var found: VFIOFeatureSupport = []
    for way in [VFIOFeatureSupport.get, .set] {
      do {
        _ = try featureRequest(feature, flags: CIOMMUFD_VFIO_DEVICE_FEATURE_PROBE | way.rawValue, data: [])
        found.insert(way)
      } catch where error.errno == .inappropriateIOCTLForDevice {
        return []  // the device (or the kernel) does not know the feature
      } catch where error.errno == .invalidArgument {
        continue  // known, but not this way
      } catch {
        throw error
      }
    }
    return found
  }

  /// Every feature of ``VFIODeviceFeature/known`` the device supports, with how.
  public func supportedFeatures() throws(IommufdError) -> [VFIODeviceFeature: VFIOFeatureSupport] {
    var result: [VFIODeviceFeature: VFIOFeatureSupport] = [:]
    for feature in VFIODeviceFeature.known {
      let support = try support(for: feature)
      if !support.isEmpty { result[feature] = support }
    }
    return result
  }

  /// The most data a feature request carries (1 MiB; the uAPI's features take a few bytes).
  public static let maximumFeatureDataBytes = 1 << 20

  /// Reads `feature` (`VFIO_DEVICE_FEATURE_GET`) into `count` bytes of data, which it returns.
  public func feature(_ feature: VFIODeviceFeature, count: Int) throws(IommufdError) -> [UInt8] {
    guard count >= 0, count <= Self.maximumFeatureDataBytes else {
      throw IommufdError(
        .deviceFeature, .invalidArgument, objects: [.init("feature", feature.description)],
        detail: "a data size from 0 to \(Self.maximumFeatureDataBytes) bytes")
    }
    return try featureRequest(feature, flags: CIOMMUFD_VFIO_DEVICE_FEATURE_GET, data: [UInt8](repeating: 0, count: count))
  }

  /// Writes `feature` (`VFIO_DEVICE_FEATURE_SET`) with `data`; returns the data as the
  /// kernel left it (some features answer in it, as MIG_DEVICE_STATE's data descriptor).
  @discardableResult
  public func setFeature(_ feature: VFIODeviceFeature, data: [UInt8]) throws(IommufdError) -> [UInt8] {
    guard data.count <= Self.maximumFeatureDataBytes else {
      throw IommufdError(
        .deviceFeature, .invalidArgument, objects: [.init("feature", feature.description)],
        detail: "a data size from 0 to \(Self.maximumFeatureDataBytes) bytes")
    }
    return try featureRequest(feature, flags: CIOMMUFD_VFIO_DEVICE_FEATURE_SET, data: data)
  }

  /// One `VFIO_DEVICE_FEATURE` with `flags` (GET, SET, PROBE) and `data` after the header;
  /// returns the data afterwards. `ENOTTY` (the device does not know the feature) is
  /// explained.
  func featureRequest(_ feature: VFIODeviceFeature, flags: UInt32, data: [UInt8]) throws(IommufdError) -> [UInt8] {
    let size = 8 + data.count
    let header = UInt32(size).littleEndianBytes + (flags | UInt32(feature.rawValue)).littleEndianBytes
    let objects: [IommufdError.InvolvedObject] = [.init("feature", feature.description)]
    var answer: [UInt8] = []
    do {
      try descriptor.withDescriptor(.deviceFeature) { fd throws(IommufdError) in
        try withScratchBuffer(count: size) { buffer throws(IommufdError) in
          buffer.copyBytes(from: header + data)
          try backend.ioctl(fd, CIOMMUFD_VFIO_DEVICE_FEATURE, buffer: buffer, .deviceFeature, objects)
          answer = Array(buffer[8...])
        }
      }
    } catch where error.errno == .inappropriateIOCTLForDevice && error.detail == nil {
      throw error.unsupported("the device does not offer \(feature) (ENOTTY)")
    } catch {
      throw error
    }
    return answer
  }
}

extension FixedWidthInteger {
  /// The value's bytes, least significant first.
  var littleEndianBytes: [UInt8] { withUnsafeBytes(of: littleEndian, Array.init) }
}
