import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An eventfd: the kernel signals a device interrupt by adding to its counter.
///
/// Owns the descriptor and closes it once, unless it was borrowed. A device keeps the
/// eventfds assigned to its IRQs alive while they are assigned. Thread-safe.
public final class EventFD: Sendable {
  let descriptor: OwnedDescriptor
  /// The system-call seam the eventfd was made with.
  public var backend: Backend { descriptor.backend }

  /// Creates an eventfd with counter 0; `nonBlocking` makes ``wait()`` return 0 instead of
  /// blocking when nothing was signalled.
  public init(nonBlocking: Bool = false, backend: Backend = .kernel) throws(IommufdError) {
    do throws(Errno) {
      let fd = try backend.calls.eventfd(initialValue: 0, flags: Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0))
      backend.trace("eventfd -> fd \(fd.rawValue)")
      descriptor = OwnedDescriptor(fd, backend: backend)
    } catch {
      throw IommufdError(.eventfd, error)
    }
  }

  /// Uses an eventfd that the caller keeps owning (a VMM's irqfd, registered with KVM):
  /// the handle never closes it. ``close()`` and the release end the handle's use of it;
  /// the caller keeps `fd` open while the handle, or a device it is assigned to, uses it.
  public init(borrowing fd: FileDescriptor, backend: Backend = .kernel) {
    descriptor = OwnedDescriptor(fd, backend: backend, borrowed: true)
  }

  /// Whether the handle closes its descriptor (false when it was made with
  /// ``init(borrowing:backend:)``).
  public var closesDescriptor: Bool { descriptor.closesDescriptor }

  /// The descriptor.
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// Reads and resets the counter: the number of signals since the last read. Blocks
  /// until one arrives, unless the eventfd is non-blocking (then 0 when none is pending).
  public func wait() throws(IommufdError) -> UInt64 {
    try descriptor.withDescriptor(.eventRead) { fd throws(IommufdError) in
      var value: UInt64 = 0
      do throws(Errno) {
        _ = try withUnsafeMutableBytes(of: &value) { bytes throws(Errno) in try backend.calls.read(fd, into: bytes) }
      } catch .wouldBlock {
        return 0
      } catch {
        throw IommufdError(.eventRead, error, objects: [.fd(fd)])
      }
      return value
    }
  }

  /// Adds `count` to the counter, as the kernel does when the interrupt fires.
  public func signal(_ count: UInt64 = 1) throws(IommufdError) {
    try descriptor.withDescriptor(.eventWrite) { fd throws(IommufdError) in
      var value = count
      do throws(Errno) {
        _ = try withUnsafeBytes(of: &value) { bytes throws(Errno) in try backend.calls.write(fd, from: bytes) }
      } catch {
        throw IommufdError(.eventWrite, error, objects: [.fd(fd)])
      }
    }
  }

  /// Closes the eventfd now.
  public func close() throws(IommufdError) { try descriptor.close() }
}
