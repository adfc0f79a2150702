import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Page-aligned anonymous memory for DMA, owned by the handle and unmapped on release.
///
/// Mappings made with ``IOAS/map(_:at:access:)`` keep the buffer alive. The contents are
/// plain memory shared with the device: synchronize access to them yourself.
public final class DMABuffer: @unchecked Sendable {
  /// The memory. Valid while the buffer lives.
  public let bytes: UnsafeMutableRawBufferPointer
  private let backend: Backend

  /// Allocates `length` bytes (rounded up to the page size), zero-filled.
  public init(length: Int, backend: Backend = .kernel) throws(IommufdError) {
    guard length > 0 else {
      throw IommufdError(.memoryMap, .invalidArgument, detail: "a DMA buffer needs a length above 0")
    }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let rounded = (length + page - 1) / page * page
    do throws(Errno) {
      let address = try backend.calls.mmap(
        length: rounded, protection: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: nil, offset: 0)
      backend.trace("mmap anonymous \(rounded) -> \(address)")
      self.bytes = UnsafeMutableRawBufferPointer(start: address, count: rounded)
    } catch {
      throw IommufdError(.memoryMap, error, detail: "anonymous memory of \(rounded) bytes")
    }
    self.backend = backend
  }

  deinit {
    do { try backend.calls.munmap(bytes.baseAddress!, length: bytes.count) } catch {
      backend.logger.error("munmap of a DMA buffer failed: \(error)")
    }
  }
}

/// A mapping of a ``DMABuffer`` into an ``IOAS``; unmapped on ``unmap()`` or release.
///
/// Keeps the IOAS and the buffer alive. If the range was already unmapped through the IOAS
/// (``IOAS/unmapAll()``), releasing the mapping does nothing.
public final class IOASMapping: Sendable {
  /// The address space.
  public let ioas: IOAS
  /// The memory behind the mapping.
  public let buffer: DMABuffer
  /// Where the device sees the buffer.
  public let iova: UInt64
  /// The mapped length in bytes.
  public let length: UInt64
  /// What the device may do through it.
  public let access: DMAAccess
  private let unmapped = Mutex(false)

  init(ioas: IOAS, buffer: DMABuffer, iova: UInt64, length: UInt64, access: DMAAccess) {
    self.ioas = ioas
    self.buffer = buffer
    self.iova = iova
    self.length = length
    self.access = access
  }

  /// The IOVA range of the mapping.
  public var range: IOVARange { IOVARange(start: iova, length: length) }

  /// Unmaps now. A second call does nothing.
  public func unmap() throws(IommufdError) {
    let already = unmapped.withLock { value -> Bool in
      defer { value = true }
      return value
    }
    if already { return }
    try ioas.unmap(iova: iova, length: length)
  }

  deinit {
    guard !unmapped.withLock({ $0 }), !ioas.iommufd.isClosed else { return }
    do { try ioas.unmap(iova: iova, length: length) } catch where error.errno == .noSuchFileOrDirectory {
      ioas.iommufd.backend.trace("mapping at 0x\(String(iova, radix: 16)) was already unmapped")
    } catch {
      ioas.iommufd.backend.logger.error("releasing mapping at 0x\(String(iova, radix: 16)) failed: \(error)")
    }
  }
}
