import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An iommufd object id that its handle destroys exactly once, and that no call reaches
/// after that.
///
/// Each call that names the id runs inside ``use(_:_:)`` as a reader; ``destroy()`` and
/// ``release()`` are the writer, who waits until no reader is left and keeps new ones
/// waiting. So a call never runs while the id is destroyed under it, and once it is destroyed every call fails with `ENOENT` ("the IOAS 2 was
/// destroyed") without reaching the kernel, where the id may already name a new object.
/// A destroy the kernel refuses (EBUSY) leaves the id owned, so a later one, or the
/// release, tries again. The release (from the owning handle's `deinit`) logs a failure,
/// never throws. Thread-safe.
final class OwnedObject: @unchecked Sendable {
  let iommufd: IOMMUFD
  let id: ObjectID
  /// What the object is, for messages: "IOAS", "HWPT", ...
  let kind: String
  /// How errors name the object.
  let involved: IommufdError.InvolvedObject
  /// What the kernel may remove the object with (its device, for a vDEVICE): a release
  /// that finds the id gone (ENOENT) is then expected, not a failure.
  let removedWith: String?
  /// Bit 0: destroyed. Bit 1: a writer (destroy or release) waits for the readers to
  /// leave. Bit 2: the writer is at work (no reader may be in). The bits above: calls in
  /// ``use(_:_:)``, times 8. Readers come first, as with a default pthread rwlock: a reader
  /// may enter while a writer waits (so a call that uses the same object twice, such as a
  /// copy within one IOAS, never waits for a destroy that waits for it), and the writer
  /// starts only at an instant with no reader in. A call costs two atomic operations: an
  /// add as it enters and a subtraction as it leaves. The writer's own changes are
  /// additions too (a reader that finds it at work adds and takes back its count).
  private let state = Atomic<Int>(0)
  private static var destroyedBit: Int { 1 }
  private static var waitingBit: Int { 2 }
  private static var workingBit: Int { 4 }
  private static var reader: Int { 8 }

  init(iommufd: IOMMUFD, id: ObjectID, kind: String, involved: IommufdError.InvolvedObject, removedWith: String? = nil) {
    self.iommufd = iommufd
    self.id = id
    self.kind = kind
    self.involved = involved
    self.removedWith = removedWith
    iommufd.register(self)
  }

  /// Whether the object was destroyed through its handle (or through its context by id).
  var isDestroyed: Bool { state.load(ordering: .acquiring) & Self.destroyedBit != 0 }

  /// Runs `body` while the object is known to exist; fails with `ENOENT` without running
  /// it once the object was destroyed.
  @inline(__always)
  func use<R>(_ operation: IommufdError.Operation, _ body: () throws(IommufdError) -> R) throws(IommufdError) -> R {
    try enter(operation)
    defer { leave() }
    return try body()
  }

  /// Enters as a call on the object (for a call path that is no closure); each `enter`
  /// that returns is paired with one ``leave()``. Fails with `ENOENT` once the object was
  /// destroyed.
  ///
  /// One atomic add: a reader that finds the object destroyed, or a writer at work, takes
  /// its count back at once (so the writer's own changes of the state are additions that
  /// keep such passing counts, never stores).
  @inline(__always)
  func enter(_ operation: IommufdError.Operation) throws(IommufdError) {
    let original = state.wrappingAdd(Self.reader, ordering: .acquiring).oldValue
    if original & (Self.destroyedBit | Self.workingBit) != 0 { try enterAfterWriter(operation) }
  }

  /// The rest of ``enter(_:)`` for a reader that found the object destroyed or a writer at
  /// work: takes its count back, then fails (destroyed) or waits and tries again.
  @inline(never)
  private func enterAfterWriter(_ operation: IommufdError.Operation) throws(IommufdError) {
    var waited = 0
    while true {
      let current = state.wrappingSubtract(Self.reader, ordering: .relaxed).newValue
      if current & Self.destroyedBit != 0 { throw destroyedError(operation) }
      if current & Self.workingBit != 0 {
        Self.pause(&waited)
      }
      let original = state.wrappingAdd(Self.reader, ordering: .acquiring).oldValue
      if original & (Self.destroyedBit | Self.workingBit) == 0 { return }
    }
  }

  /// Leaves a call entered with ``enter(_:)``.
  @inline(__always)
  func leave() {
    state.wrappingSubtract(Self.reader, ordering: .releasing)
  }

  /// ENOENT for a call on the destroyed object (out of line: the call path stays small).
  @inline(never)
  private func destroyedError(_ operation: IommufdError.Operation) -> IommufdError {
    IommufdError(operation, .noSuchFileOrDirectory, objects: [involved], detail: "the \(kind) \(id) was destroyed")
  }

  /// Destroys the object now; a second call fails with `ENOENT`, saying it was destroyed.
  func destroy() throws(IommufdError) {
    guard enterAsWriter() else {
      throw IommufdError(
        .destroy, .noSuchFileOrDirectory, objects: [involved], detail: "the \(kind) \(id) was already destroyed")
    }
    do {
      try iommufd.destroyUnowned(id)
    } catch {
      state.wrappingSubtract(Self.workingBit, ordering: .releasing)  // refused: still owned, and readers may enter
      throw error
    }
    state.wrappingAdd(Self.destroyedBit &- Self.workingBit, ordering: .releasing)  // working becomes destroyed
    iommufd.unregister(self)
  }

  /// Destroys the object unless that was done already, logging a failure.
  func release() {
    guard enterAsWriter() else { return }
    state.wrappingAdd(Self.destroyedBit &- Self.workingBit, ordering: .releasing)  // working becomes destroyed
    iommufd.destroyLogging(id, kind: kind, removedWith: removedWith)
    iommufd.unregister(self)
  }

  /// Becomes the one writer and waits for an instant with no reader in, which it takes by
  /// setting the working bit; false if the object was destroyed already.
  private func enterAsWriter() -> Bool {
    var current = state.load(ordering: .relaxed)
    var waited = 0
    // One writer at a time: take the waiting bit.
    while true {
      if current & Self.destroyedBit != 0 { return false }
      if current & (Self.waitingBit | Self.workingBit) != 0 {
        Self.pause(&waited)
        current = state.load(ordering: .relaxed)
        continue
      }
      let (exchanged, original) = state.compareExchange(expected: current, desired: current | Self.waitingBit, ordering: .acquiringAndReleasing)
      if exchanged { break }
      current = original
    }
    // No reader in: waiting becomes working, in one step.
    waited = 0
    while !state.compareExchange(expected: Self.waitingBit, desired: Self.workingBit, ordering: .acquiringAndReleasing).exchanged {
      Self.pause(&waited)
    }
    return true
  }

  /// Waits a little: yields the processor at first, then sleeps 100 µs at a time (a
  /// reader may be in a long call, such as a map that pins a gigabyte).
  private static func pause(_ waited: inout Int) {
    waited += 1
    if waited < 64 { sched_yield() } else { usleep(100) }
  }
}

/// A handle that owns an iommufd object id.
protocol ObjectHandle: AnyObject, Sendable {
  /// The id and its destroy-once, no-use-after-destroy state.
  var object: OwnedObject { get }
}

extension IOMMUFD {
  /// Runs `body` with the descriptor, while each of `objects` is alive and belongs to this
  /// context: a destroyed one fails with `ENOENT`, one of another context with `EINVAL`,
  /// without reaching the kernel. Objects named by a call are read-locked for its length.
  @discardableResult
  func withDescriptor<R>(
    _ operation: IommufdError.Operation, using objects: [OwnedObject],
    _ body: (FileDescriptor) throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    for object in objects { try checkContext(of: object, operation) }
    return try using(objects[...], operation) { () throws(IommufdError) -> R in
      try withDescriptor(operation, body)
    }
  }

  /// ``withDescriptor(_:using:_:)`` for two objects, without an array on the call path.
  @discardableResult @inline(__always)
  func withDescriptor<R>(
    _ operation: IommufdError.Operation, using first: OwnedObject, _ second: OwnedObject,
    _ body: (FileDescriptor) throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    try checkContext(of: first, operation)
    try checkContext(of: second, operation)
    try first.enter(operation)
    defer { first.leave() }
    try second.enter(operation)
    defer { second.leave() }
    try descriptor.enter(operation)
    defer { descriptor.leave() }
    return try body(descriptor.fd)
  }

  /// ``withDescriptor(_:using:_:)`` for one object, without an array on the call path.
  @discardableResult @inline(__always)
  func withDescriptor<R>(
    _ operation: IommufdError.Operation, using object: OwnedObject,
    _ body: (FileDescriptor) throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    try checkContext(of: object, operation)
    return try object.use(operation) { () throws(IommufdError) -> R in try withDescriptor(operation, body) }
  }

  /// EINVAL for an object of another context.
  @inline(__always)
  private func checkContext(of object: OwnedObject, _ operation: IommufdError.Operation) throws(IommufdError) {
    guard object.iommufd !== self else { return }
    throw foreignObjectError(object, operation)
  }

  @inline(never)
  private func foreignObjectError(_ object: OwnedObject, _ operation: IommufdError.Operation) -> IommufdError {
    IommufdError(
      operation, .invalidArgument, objects: [object.involved],
      detail: "the \(object.kind) \(object.id) belongs to another iommufd context")
  }

  private func using<R>(
    _ objects: ArraySlice<OwnedObject>, _ operation: IommufdError.Operation,
    _ body: () throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    guard let first = objects.first else { return try body() }
    return try first.use(operation) { () throws(IommufdError) -> R in
      try using(objects.dropFirst(), operation, body)
    }
  }
}

/// The owned object behind `target`, if a handle of this library owns it.
func ownedObject(_ target: some AttachTarget) -> OwnedObject? {
  // The library's own targets by class first: a cast to a final class is a compare, a
  // cast to a protocol a search of the conformance tables.
  if let ioas = target as? IOAS { return ioas.object }
  if let hwpt = target as? HWPageTable { return hwpt.object }
  return (target as? any ObjectHandle)?.object
}
