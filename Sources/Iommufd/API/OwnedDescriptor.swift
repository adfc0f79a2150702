
import SystemPackage

/// A file descriptor that is closed exactly once, never while a call on it is in flight.
///
/// `withDescriptor` refuses new calls once ``close()`` was asked for (EBADF) and the close
/// itself waits for the last call in flight, so the descriptor number can never be reused
/// under a running call. Thread-safe.
final class OwnedDescriptor: Sendable {
  let fd: FileDescriptor
  let backend: Backend
  private let state = Lock(State())

  private struct State {
    var closeRequested = false
    var inFlight = 0
    var released = false
  }

  init(_ fd: FileDescriptor, backend: Backend) {
    self.fd = fd
    self.backend = backend
  }

  /// Whether ``close()`` has been asked for.
  var isClosed: Bool { state.withLock { $0.closeRequested } }

  /// Runs `body` with the descriptor, unless it has been closed.
  @discardableResult
  func withDescriptor<R>(
    _ operation: IommufdError.Operation,
    _ body: (FileDescriptor) throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    let open = state.withLock { state -> Bool in
      if state.closeRequested { return false }
      state.inFlight += 1
      return true
    }
    guard open else {
      throw IommufdError(operation, .badFileDescriptor, objects: [.fd(fd)], detail: "the handle was closed")
    }
    defer {
      let releaseNow = state.withLock { state -> Bool in
        state.inFlight -= 1
        if state.closeRequested && state.inFlight == 0 && !state.released {
          state.released = true
          return true
        }
        return false
      }
      if releaseNow { releaseLogging() }
    }
    return try body(fd)
  }

  /// Closes the descriptor now, or when the last call in flight returns. A second call
  /// does nothing.
  func close() throws(IommufdError) {
    let releaseNow = state.withLock { state -> Bool in
      if state.closeRequested { return false }
      state.closeRequested = true
      if state.inFlight == 0 {
        state.released = true
        return true
      }
      return false
    }
    if releaseNow { try backend.close(fd) }
  }

  private func releaseLogging() {
    do { try backend.close(fd) } catch {
      backend.logger.error("deferred close failed: \(error)")
    }
  }

  deinit {
    let releaseNow = state.withLock { state -> Bool in
      if state.released { return false }
      state.released = true
      return true
    }
    if releaseNow { releaseLogging() }
  }
}

extension OwnedDescriptor {
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
      size = wanted
    }
    throw IommufdError(operation, .invalidArgument, objects: objects, detail: "the kernel kept asking for a larger argsz")
  }
}
