import Iommufd
/// Values by small non-negative integer keys (object ids, file descriptors), in an array
/// indexed by the key, as the kernel's xarray keeps iommufd objects: a lookup is an index,
/// not a hash, and iteration is in key order. Keys are what the simulator hands out (the
/// lowest free id, a descriptor number), so the array stays about as long as the number of
/// live entries; a lookup of any other key (a user's 0xffffffff) finds nothing.
struct SimulatedTable<Key: FixedWidthInteger, Value>: Sequence {
  private var slots: [Value?] = []
  /// The number of values.
  private(set) var count = 0

  var isEmpty: Bool { count == 0 }

  /// The value of `key`; setting `nil` removes it.
  subscript(key: Key) -> Value? {
    get {
      guard let index = Int(exactly: key), index >= 0, index < slots.count else { return nil }
      return slots[index]
    }
    set {
      guard let index = Int(exactly: key), index >= 0 else { return }
      if index >= slots.count {
        guard newValue != nil else { return }
        slots.append(contentsOf: repeatElement(nil, count: index - slots.count + 1))
      }
      if slots[index] == nil, newValue != nil { count += 1 }
      if slots[index] != nil, newValue == nil { count -= 1 }
      slots[index] = newValue
      while let last = slots.last, last == nil { slots.removeLast() }
    }
  }

  /// Removes the value of `key` and returns it.
  mutating func removeValue(forKey key: Key) -> Value? {
    let value = self[key]
    if value != nil { self[key] = nil }
    return value
  }

  mutating func removeAll() {
    slots = []
    count = 0
  }

  /// The values in key order.
  var values: [Value] { slots.compactMap { $0 } }

  /// `transform` of each key and value in key order, without its `nil` results.
  /// The keys and values in key order.
  func makeIterator() -> some IteratorProtocol<(key: Key, value: Value)> {
    slots.enumerated().lazy.compactMap { index, slot in slot.map { (key: Key(index), value: $0) } }.makeIterator()
  }
}
