import CIommufd

/// An inclusive range of I/O virtual addresses, `start...last`.
///
/// Inclusive, as the kernel reports them: the full 64-bit space is `0...UInt64.max`,
/// which a length could not express.
public struct IOVARange: Hashable, Sendable, CustomStringConvertible {
  /// The first address.
  public var start: UInt64
  /// The last address (inclusive).
  public var last: UInt64

  /// Creates `start...last`.
  public init(start: UInt64, last: UInt64) {
    self.start = start
    self.last = last
  }

  /// Creates the range of `length` bytes at `start`; `nil` for a length of 0 (a range
  /// cannot be empty). A range running past 2^64 - 1 wraps, as the kernel's `last` would:
  /// requests check that themselves.
  public init?(start: UInt64, length: UInt64) {
    guard length > 0 else { return nil }
    self.init(start: start, last: start &+ (length - 1))
  }

  /// Whether `iova` lies in the range.
  public func contains(_ iova: UInt64) -> Bool { iova >= start && iova <= last }

  /// `0xstart-0xlast`.
  public var description: String {
    "0x" + String(start, radix: 16) + "-0x" + String(last, radix: 16)
  }
}

/// Where a mapping or copy goes in the IOAS.
public enum IOVAPlacement: Hashable, Sendable {
  /// The kernel chooses the IOVA (first fit within the allowed ranges).
  case anywhere
  /// Exactly at this IOVA (`IOMMU_IOAS_MAP_FIXED_IOVA`).
  case fixed(UInt64)
}

extension IOVAPlacement {
  /// Sets the map flags and IOVA of a MAP, COPY or MAP_FILE request for this placement and
  /// `access`.
  func encode(_ access: DMAAccess, flags: inout UInt32, iova: inout UInt64) {
    flags = access.rawValue
    if case .fixed(let fixed) = self {
      flags |= CIOMMUFD_IOAS_MAP_FIXED_IOVA
      iova = fixed
    }
  }
}

/// What a device may do through a mapping.
public struct DMAAccess: OptionSet, Hashable, Sendable {
  /// The raw map flags (`IOMMU_IOAS_MAP_READABLE`/`WRITEABLE`).
  public var rawValue: UInt32
  /// Creates from the raw map flags.
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// The device may read (DMA to the device).
  public static var readable: DMAAccess { DMAAccess(rawValue: 0x4) }
  /// The device may write (DMA from the device).
  public static var writable: DMAAccess { DMAAccess(rawValue: 0x2) }
  /// Both directions.
  public static var readWrite: DMAAccess { DMAAccess(rawValue: 0x6) }

  /// Refuses bits other than ``readable`` and ``writable`` (EOPNOTSUPP, as the kernel
  /// answers an unknown map flag): bit 0 would turn the request into a fixed-IOVA one.
  func check(_ operation: IommufdError.Operation, _ objects: @autoclosure () -> [IommufdError.InvolvedObject]) throws(IommufdError) {
    guard rawValue & ~0x6 == 0 else {
      throw IommufdError(
        operation, .notSupported, objects: objects(),
        detail: "access 0x\(String(rawValue, radix: 16)) has bits other than readable (0x4) and writable (0x2)")
    }
  }
}

/// The usable IOVA ranges of an IOAS and the alignment every mapping must respect: a
/// collection of the ranges in ascending order (the holes between reserved regions).
///
/// Up to four ranges (what IOMMUs report: the holes around the MSI window and a few
/// reserved regions) are stored in the value itself, so reading them allocates nothing,
/// and releasing such a value calls nothing.
public struct IOVARanges: RandomAccessCollection, Hashable, Sendable {
  /// Where the ranges are: an enum, so that a value holding its ranges in place is
  /// released by a check of its case, with no call to release a reference it lacks.
  @usableFromInline enum Storage: Sendable {
    /// At most ``inlineCapacity`` ranges: the first `count` of `ranges`.
    case inline(ranges: InlineArray<4, IOVARange>, count: Int)
    /// More.
    case spilled([IOVARange])
  }

  /// The ranges.
  @usableFromInline var storage: Storage
  /// The alignment of IOVAs, lengths and user addresses (1 on a fresh IOAS).
  public var alignment: UInt64

  /// How many ranges the value holds without a heap allocation.
  @inlinable static var inlineCapacity: Int { 4 }

  /// No range in place: the start of a value that the kernel's ranges are read into.
  @inlinable static var emptyInline: InlineArray<4, IOVARange> { InlineArray(repeating: IOVARange(start: 0, last: 0)) }

  /// Creates the value.
  public init(ranges: [IOVARange], alignment: UInt64) {
    self.init(count: ranges.count, alignment: alignment) { ranges[$0] }
  }

  /// Creates the value from `count` ranges, the one at each index given by `range`.
  @inline(__always)
  init(count: Int, alignment: UInt64, _ range: (Int) -> IOVARange) {
    self.alignment = alignment
    if count <= Self.inlineCapacity {
      var ranges = Self.emptyInline
      for index in 0..<count { ranges[index] = range(index) }
      storage = .inline(ranges: ranges, count: count)
    } else {
      storage = .spilled((0..<count).map(range))
    }
  }

  /// The first `count` (at most ``inlineCapacity``) of `ranges`.
  @inlinable @inline(__always)
  init(inline ranges: InlineArray<4, IOVARange>, count: Int, alignment: UInt64) {
    storage = .inline(ranges: ranges, count: count)
    self.alignment = alignment
  }

  /// The ranges as an array (a copy: it allocates).
  public var ranges: [IOVARange] {
    get { Array(self) }
    set { self = IOVARanges(ranges: newValue, alignment: alignment) }
  }

  /// The index of the first range: 0.
  @inlinable public var startIndex: Int { 0 }
  /// The number of ranges.
  @inlinable public var endIndex: Int {
    switch storage {
    case .inline(_, let count): count
    case .spilled(let ranges): ranges.count
    }
  }
  /// The number of ranges.
  @inlinable public var count: Int { endIndex }

  /// The range at `position`, which must be below ``endIndex``.
  @inlinable public subscript(position: Int) -> IOVARange {
    precondition(position >= 0 && position < endIndex, "IOVARanges index \(position) out of 0..<\(endIndex)")
    switch storage {
    case .inline(let ranges, _): return ranges[position]
    case .spilled(let ranges): return ranges[position]
    }
  }

  /// Equal ranges and alignment.
  public static func == (lhs: IOVARanges, rhs: IOVARanges) -> Bool {
    lhs.alignment == rhs.alignment && lhs.elementsEqual(rhs)
  }

  /// Hashes the ranges and the alignment.
  public func hash(into hasher: inout Hasher) {
    hasher.combine(alignment)
    hasher.combine(count)
    for range in self { hasher.combine(range) }
  }
}
