import Iommufd
import CIommufd
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The simulated kernel's copy_from_user/copy_to_user: reads and writes this process's
/// memory at a user-supplied address, turning a bad address into EFAULT instead of a crash.
enum UserMemory {
  /// This process's id, which process_vm_readv and process_vm_writev name. Cached, since
  /// getpid(2) is a system call of its own; a child made by fork(2) clears the cache in an
  /// atfork handler, so it never copies from its parent.
  static var processID: Int {
    let cached = cachedProcessID.load(ordering: .relaxed)
    if cached != 0 { return Int(cached) }
    _ = forkHook
    let pid = getpid()
    cachedProcessID.store(pid, ordering: .relaxed)
    return Int(pid)
  }

  /// `address + offset` of a user pointer; EFAULT where it wraps, as `copy_from_user`
  /// refuses such a range.
  static func offset(_ address: UInt64, by offset: UInt64) throws(Errno) -> UInt64 {
    let (result, overflow) = address.addingReportingOverflow(offset)
    if overflow { throw .badAddress }
    return result
  }

  static func read(_ address: UInt64, count: Int) throws(Errno) -> [UInt8] {
    if count == 0 { return [] }
    var bytes = [UInt8](repeating: 0, count: count)
    var failure: Errno?
    bytes.withUnsafeMutableBytes { buffer in
      do throws(Errno) { try read(address, into: buffer) } catch { failure = error }
    }
    if let failure { throw failure }
    return bytes
  }

  /// Fills `buffer` with the bytes at `address`, in one copy.
  static func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
    if buffer.isEmpty { return }
    guard address != 0 else { throw .badAddress }
    copyCount.add(1, ordering: .relaxed)
    let copied = ciommufd_copy_from_process(processID, buffer.baseAddress, address, buffer.count)
    if copied < 0 && Glibc.errno == ENOSYS {
      // A kernel without CONFIG_CROSS_MEMORY_ATTACH: copy directly (a bad address crashes).
      buffer.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(address)), count: buffer.count))
      return
    }
    guard copied == buffer.count else { throw .badAddress }
  }

  /// As many of the `count` bytes at `address` as are readable, from the first on, in one
  /// copy (it stops at the first unreadable page); `nil` where cross-memory copies are
  /// unavailable. Used to read an ioctl's argument ahead: the bytes a later exact read
  /// would return, without reaching past what is readable.
  static func readAvailable(_ address: UInt64, count: Int) -> [UInt8]? {
    guard address != 0, count > 0 else { return [] }
    let available = min(UInt64(count), UInt64.max - address + 1)
    var bytes = [UInt8](repeating: 0, count: Int(available))
    copyCount.add(1, ordering: .relaxed)
    let copied = bytes.withUnsafeMutableBytes { ciommufd_copy_from_process(processID, $0.baseAddress, address, $0.count) }
    if copied < 0 && Glibc.errno == ENOSYS { return nil }
    bytes.removeLast(bytes.count - max(copied, 0))
    return bytes
  }

  /// check_zeroed_user: whether the `count` bytes at `address` are all zero, read a page at
  /// a time (so a huge user-given count costs no huge allocation); EFAULT where unreadable
  /// before a non-zero byte is found.
  static func isZero(_ address: UInt64, count: UInt64) throws(Errno) -> Bool {
    var offset: UInt64 = 0
    while offset < count {
      let (start, overflow) = address.addingReportingOverflow(offset)
      if overflow { throw .badAddress }
      let chunk = Int(min(4096 - start % 4096, count - offset))
      if try read(start, count: chunk).contains(where: { $0 != 0 }) { return false }
      offset += UInt64(chunk)
    }
    return true
  }

  /// Runs `body` with a lookup of the physical frame of the page at an address, from
  /// /proc/self/pagemap: `nil` where a page is not present or frame numbers are hidden
  /// (without CAP_SYS_ADMIN).
  static func withPhysicalFrames<R>(_ body: ((UInt64) -> UInt64?) throws(Errno) -> R) throws(Errno) -> R {
    let frames = PhysicalFrames()
    return try body { frames[$0] }
  }

  /// Whether the pages of `[address, address + length)` are present and physically
  /// contiguous, the first frame's address a multiple of `frameAlignment` (one read of
  /// /proc/self/pagemap; false where frame numbers are hidden).
  static func isPhysicallyContiguous(_ address: UInt64, length: UInt64, pageSize: UInt64, frameAlignment: UInt64) -> Bool {
    let count = Int(length / pageSize)
    guard count > 0, count <= 1 << 16 else { return false }
    let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var entries = [UInt64](repeating: 0, count: count)
    let bytes = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(address / pageSize) * 8) }
    guard bytes == count * 8 else { return false }
    let frames = entries.map { $0 & (1 << 63) != 0 ? $0 & ((1 << 55) - 1) : 0 }
    guard let first = frames.first, first != 0, (first &* pageSize) % frameAlignment == 0 else { return false }
    return frames.enumerated().allSatisfy { $0.element == first &+ UInt64($0.offset) }
  }

  static func write(_ bytes: [UInt8], to address: UInt64) throws(Errno) {
    var failure: Errno?
    bytes.withUnsafeBytes { buffer in
      do throws(Errno) { try write(buffer, to: address) } catch { failure = error }
    }
    if let failure { throw failure }
  }

  /// Writes `buffer` at `address`, in one copy.
  static func write(_ buffer: UnsafeRawBufferPointer, to address: UInt64) throws(Errno) {
    if buffer.isEmpty { return }
    guard address != 0 else { throw .badAddress }
    copyCount.add(1, ordering: .relaxed)
    let copied = ciommufd_copy_to_process(processID, address, buffer.baseAddress, buffer.count)
    if copied < 0 && Glibc.errno == ENOSYS {
      UnsafeMutableRawPointer(bitPattern: UInt(address))!.copyMemory(from: buffer.baseAddress!, byteCount: buffer.count)
      return
    }
    guard copied == buffer.count else { throw .badAddress }
  }

  /// Reads a `T` (a C struct) from `bytes` at `offset`, zero-extended when short.
  static func decode<T>(_ type: T.Type, from bytes: [UInt8], offset: Int = 0) -> T {
    var padded = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
    let available = max(0, min(MemoryLayout<T>.size, bytes.count - offset))
    if available > 0 { padded.replaceSubrange(0..<available, with: bytes[offset..<(offset + available)]) }
    return padded.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
  }

  /// The bytes of a `T`.
  static func encode<T>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
  }

  /// Whether the pages of `[address, address + length)` can be pinned as the kernel pins
  /// them (`pin_user_pages` with `FOLL_WRITE` when `writable`): every page mapped, readable,
  /// and writable if asked. `MADV_POPULATE_READ`/`_WRITE` fault the pages in through the
  /// same checks of the mapping's protection (PROT_NONE, or a read-only mapping for a
  /// write, fail), as pinning would, and without touching their contents.
  static func canPin(_ address: UInt64, length: UInt64, pageSize: UInt64, writable: Bool) -> Bool {
    guard isMapped(address, length: length, pageSize: pageSize) else { return false }
    let start = address & ~(pageSize - 1)
    guard let pointer = UnsafeMutableRawPointer(bitPattern: UInt(start)),
      let span = Int(exactly: ((address &+ length &+ pageSize &- 1) & ~(pageSize - 1)) &- start)
    else { return false }
    return madvise(pointer, span, writable ? 23 : 22) == 0  // MADV_POPULATE_WRITE : MADV_POPULATE_READ
  }

  /// Whether every page of `[address, address + length)` is mapped in this process
  /// (`msync` reports ENOMEM for an unmapped page).
  static func isMapped(_ address: UInt64, length: UInt64, pageSize: UInt64) -> Bool {
    let start = address & ~(pageSize - 1)
    let (last, lastOverflow) = address.addingReportingOverflow(length)
    let (end, overflow) = last.addingReportingOverflow(pageSize - 1)
    guard !lastOverflow, !overflow, let pointer = UnsafeMutableRawPointer(bitPattern: UInt(start)),
      let span = Int(exactly: (end & ~(pageSize - 1)) - start)
    else { return false }
    return msync(pointer, span, MS_ASYNC) == 0
  }
}

private let cachedProcessID = Atomic<Int32>(0)
/// Copies made by ``UserMemory/read(_:count:)`` and ``UserMemory/write(_:to:)``.
let copyCount = Atomic<Int>(0)
private let forkHook: Void = { _ = pthread_atfork(nil, nil, { cachedProcessID.store(0, ordering: .relaxed) }) }()

/// Lookups of physical frames in /proc/self/pagemap through one descriptor: `nil` where a
/// page is not present or frame numbers are hidden (without CAP_SYS_ADMIN).
final class PhysicalFrames {
  private let fd: Int32
  private let pageSize = UInt64(getpagesize())

  /// /proc/kpageflags, opened at the first ``isCompound(_:)`` (-2 until then).
  private var flagsFD: Int32 = -2

  init() { fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) }
  deinit {
    if fd >= 0 { close(fd) }
    if flagsFD >= 0 { close(flagsFD) }
  }

  /// Whether the page at `address` is part of a compound page (a transparent huge page or
  /// another large folio), from /proc/kpageflags (KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL);
  /// false where that cannot be read.
  func isCompound(_ address: UInt64) -> Bool {
    if flagsFD == -2 { flagsFD = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC) }
    guard let frame = self[address], flagsFD >= 0 else { return false }
    var flags: UInt64 = 0
    guard pread(flagsFD, &flags, 8, off_t(frame) * 8) == 8 else { return false }
    return flags & (1 << 15 | 1 << 16) != 0
  }

  /// The frame of the page at `address`.
  subscript(address: UInt64) -> UInt64? {
    var entry: UInt64 = 0
    guard fd >= 0, pread(fd, &entry, 8, off_t(address / pageSize) * 8) == 8, entry & (1 << 63) != 0 else { return nil }
    let frame = entry & ((1 << 55) - 1)
    return frame == 0 ? nil : frame
  }
}
