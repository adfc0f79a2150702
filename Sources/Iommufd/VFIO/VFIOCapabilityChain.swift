/// One entry of a VFIO capability chain (device info, region info).
public enum VFIOCapability: Hashable, Sendable {
  /// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`: only these parts of the region may be mmapped.
  case sparseMMap([VFIOSparseMMapArea])
  /// `VFIO_REGION_INFO_CAP_TYPE`: a device-specific region's type and subtype.
  case regionType(type: UInt32, subtype: UInt32)
  /// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`: the MSI-X table in this BAR may be mmapped with
  /// the rest of it (vfio-pci still handles its vectors through `VFIO_DEVICE_SET_IRQS`).
  case msixMappable
  /// Any other capability: its id, version and bytes after the 8-byte header.
  case other(id: UInt16, version: UInt16, payload: [UInt8])
}

/// A part of a region that may be mmapped, relative to the region's start.
public struct VFIOSparseMMapArea: Hashable, Sendable {
  /// The offset within the region.
  public var offset: UInt64
  /// The size in bytes.
  public var size: UInt64

  /// Creates an area.
  public init(offset: UInt64, size: UInt64) {
    self.offset = offset
    self.size = size
  }
}

/// Decodes a VFIO capability chain from an info reply.
///
/// Each capability starts with `{u16 id, u16 version, u32 next}`; `next` is the offset of
/// the following one from the start of the reply, 0 at the end. Malformed chains (an
/// offset outside the reply, a loop, a `next` inside the capability's own header, a
/// truncated capability) are reported as errors, never read past.
public enum VFIOCapabilityChain {
  /// Capability ids, which mean different things in device and region chains; this type
  /// decodes the region ones.
  static let sparseMMapID: UInt16 = 1
  static let regionTypeID: UInt16 = 2
  static let msixMappableID: UInt16 = 3

  /// Decodes the chain in `reply` that starts at `firstOffset` (0: no chain).
  public static func parse(
    _ reply: [UInt8], firstOffset: UInt32, operation: IommufdError.Operation, isRegion: Bool = false
  ) throws(IommufdError) -> [VFIOCapability] {
    var capabilities: [VFIOCapability] = []
    var offset = Int(firstOffset)
    var visited = Set<Int>()
    while offset != 0 {
      guard offset % 4 == 0, offset >= 8, offset + 8 <= reply.count else {
        throw malformed(operation, "capability at offset \(offset) lies outside the \(reply.count)-byte reply")
      }
      guard visited.insert(offset).inserted else {
        throw malformed(operation, "capability chain loops back to offset \(offset)")
      }
      let id = load(UInt16.self, reply, offset)
      let version = load(UInt16.self, reply, offset + 2)
      let next = Int(load(UInt32.self, reply, offset + 4))
      guard next == 0 || next <= offset || next >= offset + 8 else {
        throw malformed(operation, "capability at offset \(offset) points into its own header (next \(next))")
      }
      let end = next > offset ? min(next, reply.count) : reply.count
      let payload = Array(reply[(offset + 8)..<end])
      capabilities.append(try decode(id: id, version: version, payload: payload, isRegion: isRegion, operation))
      offset = next
    }
    return capabilities
  }

  private static func decode(
    id: UInt16, version: UInt16, payload: [UInt8], isRegion: Bool, _ operation: IommufdError.Operation
  ) throws(IommufdError) -> VFIOCapability {
    guard isRegion else { return .other(id: id, version: version, payload: payload) }
    switch id {
    case sparseMMapID:
      guard payload.count >= 8 else { throw malformed(operation, "sparse mmap capability is truncated") }
      let count = Int(load(UInt32.self, payload, 0))
      guard count <= (payload.count - 8) / 16 else {
        throw malformed(operation, "sparse mmap capability claims \(count) areas in \(payload.count) bytes")
      }
      let areas = (0..<count).map { index in
        VFIOSparseMMapArea(
          offset: load(UInt64.self, payload, 8 + index * 16), size: load(UInt64.self, payload, 16 + index * 16))
      }
      return .sparseMMap(areas)
    case regionTypeID:
      guard payload.count >= 8 else { throw malformed(operation, "region type capability is truncated") }
      return .regionType(type: load(UInt32.self, payload, 0), subtype: load(UInt32.self, payload, 4))
    case msixMappableID:
      return .msixMappable  // a bare header
    default:
      return .other(id: id, version: version, payload: payload)
    }
  }

  private static func load<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
    bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
  }

  private static func malformed(_ operation: IommufdError.Operation, _ detail: String) -> IommufdError {
    IommufdError(operation, .badMessage, detail: "malformed capability chain: " + detail)
  }
}
