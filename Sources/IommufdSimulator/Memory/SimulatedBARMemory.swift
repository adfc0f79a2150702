import CIommufd

#if canImport(Glibc)
import Glibc
#endif

/// The memory behind a simulated memory BAR: a memory file, mapped shared into the
/// process for the device model and the region reads and writes, and mapped again for each
/// `mmap` of the region, so every view shares the same pages.
final class SimulatedBARMemory: @unchecked Sendable {
  /// The memory file.
  let fd: Int32
  /// The simulator's own mapping of the whole BAR.
  let base: UnsafeMutableRawPointer
  /// The size in bytes.
  let size: Int

  /// The largest memory BAR the simulator backs.
  static let largest: UInt64 = 1 << 30

  /// Backs a BAR of `size` bytes; `nil` for 0 bytes, more than ``largest``, or when the
  /// memory file cannot be made.
  init?(size: UInt64) {
    guard size > 0, size <= Self.largest else { return nil }
    let fd = ciommufd_memfd_create("simulated-bar", CIOMMUFD_MFD_CLOEXEC)
    guard fd >= 0 else { return nil }
    guard ftruncate(fd, off_t(size)) == 0,
      let base = Glibc.mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED
    else {
      _ = Glibc.close(fd)
      return nil
    }
    self.fd = fd
    self.base = base
    self.size = Int(size)
  }

  deinit {
    _ = Glibc.munmap(base, size)
    _ = Glibc.close(fd)
  }

  /// `count` bytes at `offset` (inside the BAR).
  func read(_ offset: UInt64, _ count: Int) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: base + Int(offset), count: count))
  }

  /// Stores `bytes` at `offset` (inside the BAR).
  func write(_ offset: UInt64, _ bytes: [UInt8]) {
    guard !bytes.isEmpty else { return }
    bytes.withUnsafeBytes { (base + Int(offset)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
  }

  /// Maps `length` bytes from `offset` for the caller, sharing the BAR's pages.
  func map(length: Int, protection: Int32, offset: Int64) -> UnsafeMutableRawPointer? {
    let address = Glibc.mmap(nil, length, protection, MAP_SHARED, fd, off_t(offset))
    return address == MAP_FAILED ? nil : address
  }
}
