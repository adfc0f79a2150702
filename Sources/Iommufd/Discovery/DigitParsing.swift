extension FixedWidthInteger {
  /// Parses `text` made only of digits of `radix` (no sign, no spaces, no prefix, not
  /// empty), as sysfs and device paths print numbers; `nil` otherwise or when the value
  /// does not fit. `Self(_:radix:)` alone would also take a leading `+` or `-`.
  init?<Text: StringProtocol>(digitsOnly text: Text, radix: Int = 10) {
    guard !text.isEmpty, text.utf8.allSatisfy({ Self.isDigit($0, radix: radix) }), let value = Self(text, radix: radix) else { return nil }
    self = value
  }

  private static func isDigit(_ byte: UInt8, radix: Int) -> Bool {
    let value: Int
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "z"): value = Int(byte - UInt8(ascii: "a")) + 10
    case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = Int(byte - UInt8(ascii: "A")) + 10
    default: return false
    }
    return value < radix
  }
}
