/// The id of an object in an iommufd context: IOAS, HW page table, device, fault queue...
///
/// All object types share one id space per open `/dev/iommu`; 0 is never a valid id.
public struct ObjectID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  /// The kernel's 32-bit id.
  public var rawValue: UInt32

  /// Wraps a kernel id.
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// Wraps a kernel id.
  public init(_ rawValue: UInt32) { self.rawValue = rawValue }

  /// The id in decimal.
  public var description: String { "\(rawValue)" }
}
