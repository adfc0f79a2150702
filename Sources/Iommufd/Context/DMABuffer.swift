import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Memory for DMA: page-aligned anonymous memory owned by the handle and unmapped on
/// release, or (``init(unsafeBorrowing:backend:)``) memory the caller owns.
///
/// Mappings made with ``IOAS/map(_:at:access:)`` keep the buffer alive. The contents are
/// plain memory shared with the device: synchronize access to them yourself.
public final class DMABuffer: @unchecked Sendable {
  /// The memory. Valid while the buffer lives.
  public let bytes: UnsafeMutableRawBufferPointer
  private let backend: Backend
  /// Whether the buffer unmaps its memory on release (false: borrowed, its owner does).
  public let ownsMemory: Bool

  /// Allocates `length` bytes (rounded up to the page size), zero-filled. A length that
  /// cannot be rounded up fails with ENOMEM, as `mmap` answers for one too large.
  public init(length: Int, backend: Backend = .kernel) throws(IommufdError) {
    guard length > 0 else {
      throw IommufdError(.memoryMap, .invalidArgument, detail: "a DMA buffer needs a length above 0")
    }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let (padded, overflow) = length.addingReportingOverflow(page - 1)
    guard !overflow else {
      throw IommufdError(.memoryMap, .noMemory, detail: "length \(length) rounded up to the \(page)-byte page overflows")
    }
    let rounded = padded / page * page
    do throws(Errno) {
      let address = try backend.calls.mmap(
        length: rounded, protection: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: nil, offset: 0)
      backend.trace("mmap anonymous \(rounded) -> \(address)")
      self.bytes = UnsafeMutableRawBufferPointer(start: address, count: rounded)
    } catch {
      throw IommufdError(.memoryMap, error, detail: "anonymous memory of \(rounded) bytes")
    }
    self.backend = backend
    self.ownsMemory = true
  }

  /// Uses memory the caller owns, such as a VMM's existing guest RAM, so that it can be
  /// mapped with an owned ``DMAMapping``. The caller keeps `bytes` mapped, readable and
  /// writable as the mappings' access asks, until the buffer and every mapping of it are
  /// released; the buffer never unmaps it. An empty buffer or one without an address is
  /// `EINVAL`.
  public init(unsafeBorrowing bytes: UnsafeMutableRawBufferPointer, backend: Backend = .kernel) throws(IommufdError) {
    guard bytes.baseAddress != nil, bytes.count > 0 else {
      throw IommufdError(.memoryMap, .invalidArgument, detail: "a borrowed DMA buffer needs an address and a length above 0")
    }
    self.bytes = bytes
    self.backend = backend
    self.ownsMemory = false
  }

  /// Takes ownership of `bytes`, a mapping made with `backend` (``GuestMemory``'s shared
  /// mapping of its memory file): unmapped on release.
  init(adopting bytes: UnsafeMutableRawBufferPointer, backend: Backend) {
    self.bytes = bytes
    self.backend = backend
    self.ownsMemory = true
  }

  deinit {
    guard ownsMemory else { return }
    do { try backend.calls.munmap(bytes.baseAddress!, length: bytes.count) } catch {
      backend.logger.error("munmap of a DMA buffer failed: \(error)")
    }
  }
}

/// An address space a device does DMA through: an ``IOAS``, or a legacy ``VFIOContainer``.
public protocol DMAAddressSpace: AnyObject, Sendable {
  /// Maps `length` bytes of this process's memory at `address`; returns the IOVA.
  func unsafeMap(address: UnsafeRawPointer, length: UInt64, at placement: IOVAPlacement, access: DMAAccess)
    throws(IommufdError) -> UInt64
  /// Unmaps `length` bytes at `iova`; returns the bytes unmapped.
  @discardableResult
  func unmap(iova: UInt64, length: UInt64) throws(IommufdError) -> UInt64
  /// The usable IOVA ranges and the alignment mappings must respect.
  func iovaRanges() throws(IommufdError) -> IOVARanges
  /// The backend the space's calls go through.
  var backend: Backend { get }
  /// Whether the descriptor the space lives in was closed (then nothing is left to unmap).
  var isClosed: Bool { get }
}

extension DMAAddressSpace {
  /// Maps `buffer` and returns a mapping that unmaps itself when released.
  ///
  /// The mapping keeps `buffer` alive, so the device can never reach freed memory.
  public func map(
    _ buffer: DMABuffer, at placement: IOVAPlacement = .anywhere, access: DMAAccess = .readWrite
  ) throws(IommufdError) -> DMAMapping {
    let address = UnsafeRawPointer(buffer.bytes.baseAddress!)
    let length = UInt64(buffer.bytes.count)
    let type = ObjectIdentifier(Swift.type(of: self))
    if type == ObjectIdentifier(IOAS.self) {
      return try unsafeDowncast(self, to: IOAS.self).mapRecorded(buffer, address, length, placement, access)
    }
    if type == ObjectIdentifier(VFIOContainer.self) {
      return try unsafeDowncast(self, to: VFIOContainer.self).mapRecorded(buffer, address, length, placement, access)
    }
    let iova = try unsafeMap(address: address, length: length, at: placement, access: access)
    return DMAMapping(space: self, buffer: buffer, iova: iova, length: length, access: access)
  }
}
