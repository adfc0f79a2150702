/// The name of a mediated device (mdev): a UUID, as sysfs spells it (lowercase,
/// `8-4-4-4-12` hexadecimal digits).
public struct MediatedDeviceID: Hashable, Sendable, Comparable, LosslessStringConvertible {
  /// The 16 bytes, most significant first.
  public let high: UInt64
  /// The low 8 bytes.
  public let low: UInt64

  /// The UUID with these 16 bytes.
  public init(high: UInt64, low: UInt64) {
    self.high = high
    self.low = low
  }

  /// Parses a UUID as the kernel's `uuid_is_valid` accepts it: 36 characters, dashes at
  /// 8, 13, 18 and 23, hexadecimal digits of either case elsewhere; nil otherwise.
  public init?(_ text: String) {
    let bytes = Array(text.utf8)
    guard bytes.count == 36 else { return nil }
    var high: UInt64 = 0
    var low: UInt64 = 0
    var digits = 0
    for (index, byte) in bytes.enumerated() {
      if index == 8 || index == 13 || index == 18 || index == 23 {
        guard byte == UInt8(ascii: "-") else { return nil }
        continue
      }
      let value: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): value = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): value = byte - UInt8(ascii: "A") + 10
      default: return nil
      }
      if digits < 16 { high = high << 4 | UInt64(value) } else { low = low << 4 | UInt64(value) }
      digits += 1
    }
    self.init(high: high, low: low)
  }

  /// A random (version 4) UUID.
  public static func random() -> MediatedDeviceID {
    var generator = SystemRandomNumberGenerator()
    let first: UInt64 = generator.next()
    let second: UInt64 = generator.next()
    // Version 4 in the high half's bits 12...15, variant 10 in the low half's top bits.
    let high = first & ~UInt64(0xF000) | 0x4000
    let low = second & ~(UInt64(0xC000) << 48) | (UInt64(0x8000) << 48)
    return MediatedDeviceID(high: high, low: low)
  }

  /// The lowercase `8-4-4-4-12` form, as the device's sysfs directory is named.
  public var description: String {
    func hex(_ value: UInt64, _ digits: Int) -> String {
      let text = String(value, radix: 16)
      return String(repeating: "0", count: digits - text.count) + text
    }
    return "\(hex(high >> 32, 8))-\(hex(high >> 16 & 0xFFFF, 4))-\(hex(high & 0xFFFF, 4))-\(hex(low >> 48, 4))-\(hex(low & 0xFFFF_FFFF_FFFF, 12))"
  }

  /// Orders by the 16 bytes.
  public static func < (lhs: MediatedDeviceID, rhs: MediatedDeviceID) -> Bool {
    (lhs.high, lhs.low) < (rhs.high, rhs.low)
  }
}
