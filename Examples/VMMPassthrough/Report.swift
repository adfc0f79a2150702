/// The checks a run made, and whether all held.
struct Report {
  private(set) var lines: [String] = []
  private(set) var passed = true

  mutating func check(_ what: String, _ holds: Bool) {
    print("\(holds ? "ok" : "FAILED"): \(what)")
    lines.append(what)
    passed = passed && holds
  }

  var summary: String { "vmm-passthrough: \(lines.count) checks, \(passed ? "all passed" : "FAILED")" }
}

/// Lower-case hexadecimal digits of `value`.
func hex(_ value: UInt64) -> String { String(value, radix: 16) }
