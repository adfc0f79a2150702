import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A dma-buf of the 7.2 self-test's exporter (`IOMMU_TEST_OP_DMABUF_GET`): zeroed memory of
/// whole pages that `IOMMU_IOAS_MAP_FILE` maps by physical address, without pinning or
/// accounting, and that `IOMMU_TEST_OP_DMABUF_REVOKE` can take away and give back.
final class SimulatedDMABuf {
  /// The memory: a memfd the simulator maps, so simulated devices reach it.
  let memory: Int32
  let length: UInt64
  let mapping: UnsafeMutableRawPointer
  /// Revoked: mapping it is ENODEV, and the domains lost what they mapped of it.
  var revoked = false

  init?(length: UInt64) {
    let memory = ciommufd_memfd_create("iommufd-simulator-dmabuf", 1)  // MFD_CLOEXEC
    guard memory >= 0 else { return nil }
    guard ftruncate(memory, off_t(length)) == 0,
      let mapping = mmap(nil, Int(length), PROT_READ | PROT_WRITE, MAP_SHARED, memory, 0), mapping != MAP_FAILED
    else {
      close(memory)
      return nil
    }
    self.memory = memory
    self.length = length
    self.mapping = mapping
  }

  deinit {
    munmap(mapping, Int(length))
    close(memory)
  }
}

extension SimulatedKernel.State {
  /// `IOMMU_TEST_OP_DMABUF_GET`: a dma-buf of `length` bytes rounded up to pages (0 or more
  /// than 512 pages: EINVAL); returns its new descriptor, which is the ioctl's result.
  func dmabufGet(length: UInt32) throws(Errno) -> Int32 {
    let (rounded, overflow) = UInt64(length).addingReportingOverflow(pageSize - 1)
    let size = overflow ? 0 : rounded & ~(pageSize - 1)
    if size == 0 || size > pageSize * 512 { throw .invalidArgument }
    guard let buffer = SimulatedDMABuf(length: size) else { throw .noMemory }
    let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    files[fd] = .dmabuf(buffer)
    return fd
  }

  /// `IOMMU_TEST_OP_DMABUF_REVOKE`: revokes (or restores) the dma-buf whose descriptor is
  /// `fd`: EBADF if none is open there, EINVAL if it is no dma-buf.
  func dmabufRevoke(fd: Int32, revoked: Bool) throws(Errno) {
    guard let file = files[fd] else {
      if fcntl(fd, F_GETFD) == -1 { throw .badFileDescriptor }
      throw .invalidArgument  // a real descriptor, but no dma-buf
    }
    guard case .dmabuf(let buffer) = file else { throw .invalidArgument }
    buffer.revoked = revoked
  }
}
