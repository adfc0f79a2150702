/// A PCI function address: `domain:bus:device.function`, as in `0000:00:03.0`.
public struct PCIAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
  /// The PCI domain (segment), 0–0xffff.
  public var domain: UInt16
  /// The bus, 0–0xff.
  public var bus: UInt8
  /// The device (slot), 0–0x1f.
  public var device: UInt8
  /// The function, 0–7.
  public var function: UInt8

  /// Creates an address; returns `nil` if `device` or `function` is out of range.
  public init?(domain: UInt16 = 0, bus: UInt8, device: UInt8, function: UInt8) {
    guard device < 32, function < 8 else { return nil }
    self.domain = domain
    self.bus = bus
    self.device = device
    self.function = function
  }

  /// Parses the sysfs form `DDDD:BB:dd.f` or lspci's short form `BB:dd.f` (domain 0):
  /// exactly 4 hexadecimal digits of domain, 2 of bus, 2 of device (at most 0x1f) and one
  /// function digit 0–7. Anything else (signs, missing or extra digits) is `nil`.
  public init?(_ text: String) {
    var parts = text.split(separator: ":", omittingEmptySubsequences: false)
    if parts.count == 2 { parts.insert("0000", at: 0) }
    guard parts.count == 3 else { return nil }
    let slot = parts[2].split(separator: ".", omittingEmptySubsequences: false)
    guard slot.count == 2, parts[0].utf8.count == 4, parts[1].utf8.count == 2, slot[0].utf8.count == 2, slot[1].utf8.count == 1,
      let domain = UInt16(digitsOnly: parts[0], radix: 16), let bus = UInt8(digitsOnly: parts[1], radix: 16),
      let device = UInt8(digitsOnly: slot[0], radix: 16), let function = UInt8(digitsOnly: slot[1], radix: 8)
    else { return nil }
    self.init(domain: domain, bus: bus, device: device, function: function)
  }

  /// The sysfs form, `0000:00:03.0`.
  public var description: String {
    hex(UInt64(domain), 4) + ":" + hex(UInt64(bus), 2) + ":" + hex(UInt64(device), 2) + "." + String(function)
  }

  /// Orders by domain, bus, device, function.
  public static func < (a: PCIAddress, b: PCIAddress) -> Bool {
    (a.domain, a.bus, a.device, a.function) < (b.domain, b.bus, b.device, b.function)
  }

  private func hex(_ value: UInt64, _ width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }
}
