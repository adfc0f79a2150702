
import Synchronization
import SystemPackage

/// A file descriptor that is closed exactly once, never while a call on it is in flight.
///
/// `withDescriptor` refuses new calls once ``close()`` was asked for (EBADF) and the close
/// itself waits for the last call in flight, so the descriptor number can never be reused
/// under a running call. A borrowed descriptor goes through the same steps but is left
/// open: its owner closes it. Thread-safe.
final class OwnedDescriptor: Sendable {
  let fd: FileDescriptor
  let backend: Backend
  /// Whether the handle closes the descriptor (false: borrowed, its owner does).
  let closesDescriptor: Bool
  /// Bit 0: close was asked for. Bit 62 (``closedBit``): the descriptor was closed. The
  /// bits between: calls in flight, times 2, and calls that found the close asked for,
  /// which take their count back at once. The descriptor is closed by whoever takes the
  /// state from exactly 1 (closing, no call left) to closed: close() itself, or the last
  /// call to leave after it. One atomic word, so a call costs two atomic additions and no
  /// lock.
  private let state = Atomic<Int>(0)
  private static var closedBit: Int { 1 << 62 }
  /// What runs once the descriptor is really closed by ``close()`` or by the last call in
  /// flight after it (not at deinit): the owner's release of what the descriptor held.
  private let afterClose = Lock<(@Sendable () -> Void)?>(nil)

  init(_ fd: FileDescriptor, backend: Backend, borrowed: Bool = false) {
    self.fd = fd
    self.backend = backend
    self.closesDescriptor = !borrowed
  }

  /// Whether ``close()`` has been asked for.
  var isClosed: Bool { state.load(ordering: .acquiring) & 1 != 0 }

  /// Runs `body` with the descriptor, unless it has been closed.
  @discardableResult @inline(__always)
  func withDescriptor<R>(
    _ operation: IommufdError.Operation,
    _ body: (FileDescriptor) throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    try enter(operation)
    defer { leave() }
    return try body(fd)
  }

  /// Counts a call in flight, unless the descriptor has been closed (EBADF). Each
  /// successful `enter` is paired with one ``leave()``.
  @inline(__always)
  func enter(_ operation: IommufdError.Operation) throws(IommufdError) {
    if state.wrappingAdd(2, ordering: .acquiring).oldValue & 1 != 0 { throw closedError(operation) }
  }

  /// The EBADF of a call that found the close asked for, after it took its count back
  /// (closing the descriptor if it was the last call to leave).
  @inline(never)
  private func closedError(_ operation: IommufdError.Operation) -> IommufdError {
    leave()
    return IommufdError(operation, .badFileDescriptor, objects: [.fd(fd)], detail: "the handle was closed")
  }

  /// Ends a call counted by ``enter(_:)``; the last one after a close closes.
  @inline(__always)
  func leave() {
    if state.wrappingSubtract(2, ordering: .acquiringAndReleasing).newValue == 1 { closeAfterLastCall() }
  }

  /// Closes the descriptor for the last call to leave after a close, unless a call passing
  /// by counted itself meanwhile (then it is the last, and closes).
  @inline(never)
  private func closeAfterLastCall() {
    guard state.compareExchange(expected: 1, desired: 1 | Self.closedBit, ordering: .acquiringAndReleasing).exchanged else {
      return
    }
    releaseLogging()
    runAfterClose()
  }

  /// Sets what runs once the descriptor is really closed.
  func setAfterClose(_ body: @escaping @Sendable () -> Void) {
    afterClose.withLock { $0 = body }
  }

  private func runAfterClose() {
    let body = afterClose.withLock { body -> (@Sendable () -> Void)? in
      defer { body = nil }
      return body
    }
    body?()
  }

  /// Closes the descriptor now, or when the last call in flight returns. A second call
  /// does nothing.
  func close() throws(IommufdError) {
    var current = state.load(ordering: .relaxed)
    while true {
      if current & 1 != 0 { return }
      // No call in flight: closed now, by this call. Else the last call to leave closes.
      let desired = current == 0 ? 1 | Self.closedBit : current | 1
      let (exchanged, original) = state.compareExchange(expected: current, desired: desired, ordering: .acquiringAndReleasing)
      if exchanged { break }
      current = original
    }
    guard current == 0 else { return }  // the last call in flight closes
    defer { runAfterClose() }
    guard closesDescriptor else {
      backend.trace("fd \(fd.rawValue) released (borrowed: left open for its owner)")
      return
    }
    try backend.close(fd)
  }

  private func releaseLogging() {
    guard closesDescriptor else {
      backend.trace("fd \(fd.rawValue) released (borrowed: left open for its owner)")
      return
    }
    do { try backend.close(fd) } catch {
      backend.logger.error("deferred close failed: \(error)")
    }
  }

  deinit {
    // No call can be in flight (each holds a reference): unless close() was asked for
    // (and so done), close now.
    if state.load(ordering: .acquiring) & 1 == 0 { releaseLogging() }
  }
}

extension OwnedDescriptor {
  /// The largest argsz a VFIO query may ask for (1 MiB).
  static var largestReply: Int { 1 << 20 }

  /// Issues an `argsz` query whose reply may carry a capability chain: asks with the base
  /// size, and again with the size the kernel asks for. Returns the whole reply.
  func queryWithCapabilities(
    _ request: Int32, _ operation: IommufdError.Operation, _ objects: [IommufdError.InvolvedObject],
    baseSize: Int, prepare: (UnsafeMutableRawBufferPointer) -> Void
  ) throws(IommufdError) -> [UInt8] {
    var size = baseSize
    for _ in 0..<3 {
      let bytes = try withScratchBuffer(count: size) { buffer throws(IommufdError) -> [UInt8] in
        buffer.storeBytes(of: UInt32(size), toByteOffset: 0, as: UInt32.self)
        prepare(buffer)
        try withDescriptor(operation) { fd throws(IommufdError) in
          try backend.ioctl(fd, request, buffer: buffer, operation, objects)
        }
        return Array(buffer)
      }
      let wanted = Int(bytes.withUnsafeBytes { $0.load(as: UInt32.self) })
      if wanted <= size { return bytes }
      // VFIO's replies with their capability chains fit in a page or two: a larger argsz
      // is no kernel's answer, and is refused rather than allocated.
      guard wanted <= Self.largestReply else {
        throw IommufdError(
          operation, .invalidArgument, objects: objects,
          detail: "the reply asked for an argsz of \(wanted) bytes, more than the \(Self.largestReply) a VFIO reply takes")
      }
      size = wanted
    }
    throw IommufdError(operation, .invalidArgument, objects: objects, detail: "the kernel kept asking for a larger argsz")
  }
}
