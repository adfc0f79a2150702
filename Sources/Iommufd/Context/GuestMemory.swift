import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Guest RAM for a virtual machine: a memory file (`memfd`) of a fixed size, shared-mapped
/// into this process, mapped into an ``IOAS`` at guest-physical addresses.
///
/// ``map(into:at:offset:length:access:)`` maps by file (`IOMMU_IOAS_MAP_FILE`) where the
/// kernel has it (Linux 6.13 and later), so the kernel holds the file itself; on an older
/// kernel it maps the same bytes by their address in this process, with the same result
/// for the device. The mapping's ``DMAMapping/source`` says which. Several banks are
/// several mappings, of one memory or of several. Each mapping keeps the memory mapped
/// until it is unmapped; the memory file's descriptor is closed on release. Thread-safe.
public final class GuestMemory: @unchecked Sendable {
  /// The size of the pages behind the memory.
  public enum PageSize: Hashable, Sendable, CustomStringConvertible {
    /// The system's base page (4 KiB on x86).
    case base
    /// 2 MiB huge pages (hugetlbfs: `vm.nr_hugepages` must have them reserved).
    case huge2M
    /// 1 GiB huge pages (reserved at boot).
    case huge1G

    /// The page size in bytes.
    public var bytes: Int {
      switch self {
      case .base: Int(sysconf(Int32(_SC_PAGESIZE)))
      case .huge2M: 2 << 20
      case .huge1G: 1 << 30
      }
    }

    /// "4 KiB", "2 MiB" or "1 GiB".
    public var description: String {
      switch self {
      case .base: "\(bytes >> 10) KiB"
      case .huge2M: "2 MiB"
      case .huge1G: "1 GiB"
      }
    }

    var memfdFlags: UInt32 {
      switch self {
      case .base: 0
      case .huge2M: CIOMMUFD_MFD_HUGETLB | CIOMMUFD_MFD_HUGE_2MB
      case .huge1G: CIOMMUFD_MFD_HUGETLB | CIOMMUFD_MFD_HUGE_1GB
      }
    }
  }

  /// The size in bytes.
  public let size: Int
  /// The pages behind it.
  public let pageSize: PageSize
  /// The backend its system calls go through.
  public let backend: Backend
  /// The shared mapping of the memory file in this process, alive while the memory or a
  /// mapping of it lives.
  let buffer: DMABuffer
  private let descriptor: OwnedDescriptor

  /// The memory, as this process sees it.
  public var bytes: UnsafeMutableRawBufferPointer { buffer.bytes }
  /// The memory file's descriptor (for a VMM's own use, such as vhost-user); closed on
  /// release.
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// Creates `size` bytes of zeroed memory backed by pages of `pageSize`; `size` must be a
  /// positive multiple of it. `name` shows in `/proc/PID/fd` as `/memfd:NAME`.
  public init(size: Int, pageSize: PageSize = .base, name: String = "guest-ram", backend: Backend = .kernel)
    throws(IommufdError)
  {
    let page = pageSize.bytes
    guard size > 0, size % page == 0 else {
      throw IommufdError(
        .memoryFile, .invalidArgument,
        detail: "guest memory of \(size) bytes: the size must be a positive multiple of its \(pageSize) pages")
    }
    let fd: FileDescriptor
    do throws(Errno) {
      // Not executable, sealed so (what vm.memfd_noexec=2 demands); a kernel before 6.3
      // does not know the flag (EINVAL) and is asked without it.
      let flags = CIOMMUFD_MFD_CLOEXEC | pageSize.memfdFlags
      do throws(Errno) {
        fd = try backend.calls.memfdCreate(name: name, flags: flags | CIOMMUFD_MFD_NOEXEC_SEAL)
      } catch .invalidArgument {
        fd = try backend.calls.memfdCreate(name: name, flags: flags)
      }
      backend.trace("memfd_create \(name) \(pageSize) -> fd \(fd.rawValue)")
    } catch {
      throw IommufdError(.memoryFile, error, detail: "memory file \"\(name)\" with \(pageSize) pages")
    }
    let descriptor = OwnedDescriptor(fd, backend: backend)  // closes fd if a step below fails
    do throws(Errno) {
      try backend.calls.truncate(fd, length: Int64(size))
    } catch {
      throw IommufdError(.truncate, error, objects: [.fd(fd)], detail: "sizing the memory file to \(size) bytes")
    }
    let address: UnsafeMutableRawPointer
    do throws(Errno) {
      address = try backend.calls.mmap(length: size, protection: PROT_READ | PROT_WRITE, flags: MAP_SHARED, fd: fd, offset: 0)
      backend.trace("mmap shared fd \(fd.rawValue) \(size) -> \(address)")
    } catch {
      let reserve = pageSize == .base ? "" : " (are enough \(pageSize) pages reserved? see /proc/meminfo HugePages_Free)"
      throw IommufdError(.memoryMap, error, objects: [.fd(fd)], detail: "mapping \(size) bytes of the memory file\(reserve)")
    }
    self.size = size
    self.pageSize = pageSize
    self.backend = backend
    self.descriptor = descriptor
    self.buffer = DMABuffer(adopting: UnsafeMutableRawBufferPointer(start: address, count: size), backend: backend)
  }

  /// Maps `length` bytes from `offset` of the memory (all of it from `offset` by default)
  /// into `ioas` at the guest-physical address `guestAddress`, and returns the mapping,
  /// which unmaps on release.
  ///
  /// By file where the kernel has `IOMMU_IOAS_MAP_FILE` (``DMAMapping/Source/file(offset:)``),
  /// else by address (``DMAMapping/Source/userAddress``). `offset` and `length` must be
  /// multiples of the base page size and lie within the memory (`EINVAL` otherwise).
  public func map(
    into ioas: IOAS, at guestAddress: UInt64, offset: Int = 0, length: Int? = nil, access: DMAAccess = .readWrite
  ) throws(IommufdError) -> DMAMapping {
    let page = PageSize.base.bytes
    guard offset >= 0, offset < size else {
      throw IommufdError(
        .ioasMap, .invalidArgument, objects: [.ioas(ioas.id)],
        detail: "offset \(offset) does not lie within the \(size) bytes of guest memory")
    }
    let length = length ?? (size - offset)
    guard length > 0, length <= size - offset else {
      throw IommufdError(
        .ioasMap, .invalidArgument, objects: [.ioas(ioas.id)],
        detail: "\(length) bytes at offset \(offset) do not lie within the \(size) bytes of guest memory")
    }
    guard offset % page == 0, length % page == 0 else {
      throw IommufdError(
        .ioasMap, .invalidArgument, objects: [.ioas(ioas.id)],
        detail: "offset \(offset) and length \(length) must be multiples of the \(page)-byte page")
    }
    let byteCount = UInt64(length)
    do throws(IommufdError) {
      return try ioas.mapRecorded(buffer, length: byteCount, access: access, source: .file(offset: UInt64(offset))) {
        () throws(IommufdError) -> UInt64 in
        try descriptor.withDescriptor(.ioasMapFile) { fd throws(IommufdError) -> UInt64 in
          try ioas.mapFile(fd, offset: UInt64(offset), length: byteCount, at: .fixed(guestAddress), access: access)
        }
      }
    } catch where error.errno == .inappropriateIOCTLForDevice {
      // A kernel without IOMMU_IOAS_MAP_FILE (before 6.13): the same bytes by address.
      backend.trace("IOMMU_IOAS_MAP_FILE not supported: mapping guest memory by address")
    }
    let address = UnsafeRawPointer(buffer.bytes.baseAddress! + offset)
    return try ioas.mapRecorded(buffer, address, byteCount, .fixed(guestAddress), access)
  }

  /// Closes the memory file's descriptor now (mappings of the memory stay valid: they hold
  /// the memory, and the kernel the file). Later maps fail with `EBADF`.
  public func close() throws(IommufdError) {
    try descriptor.close()
  }
}
