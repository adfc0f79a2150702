import SystemPackage

/// An iommufd object id that its handle destroys exactly once, and that no call reaches
/// after that.
///
/// Each call that names the id runs inside ``use(_:_:)``, holding a read lock; ``destroy()``
/// and ``release()`` hold the write lock. So a call never runs while the id is destroyed
/// under it, and once it is destroyed every call fails with `ENOENT` ("the IOAS 2 was
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
  private let lock = ReadWriteLock()
  /// Read under the read lock, written under the write lock.
  private var destroyed = false

  init(iommufd: IOMMUFD, id: ObjectID, kind: String, involved: IommufdError.InvolvedObject, removedWith: String? = nil) {
    self.iommufd = iommufd
    self.id = id
    self.kind = kind
    self.involved = involved
    self.removedWith = removedWith
    iommufd.register(self)
  }

  /// Whether the object was destroyed through its handle (or through its context by id).
  var isDestroyed: Bool { lock.withReadLock { destroyed } }

  /// Runs `body` while the object is known to exist; fails with `ENOENT` without running
  /// it once the object was destroyed.
  func use<R>(_ operation: IommufdError.Operation, _ body: () throws(IommufdError) -> R) throws(IommufdError) -> R {
    try lock.withReadLock { () throws(IommufdError) -> R in
      guard !destroyed else {
        throw IommufdError(
          operation, .noSuchFileOrDirectory, objects: [involved], detail: "the \(kind) \(id) was destroyed")
      }
      return try body()
    }
  }

  /// Destroys the object now; a second call fails with `ENOENT`, saying it was destroyed.
  func destroy() throws(IommufdError) {
    try lock.withWriteLock { () throws(IommufdError) in
      guard !destroyed else {
        throw IommufdError(
          .destroy, .noSuchFileOrDirectory, objects: [involved], detail: "the \(kind) \(id) was already destroyed")
      }
      try iommufd.destroyUnowned(id)
      destroyed = true
    }
    iommufd.unregister(self)
  }

  /// Destroys the object unless that was done already, logging a failure.
  func release() {
    let wasOwned = lock.withWriteLock { () -> Bool in
      if destroyed { return false }
      destroyed = true
      return true
    }
    guard wasOwned else { return }
    iommufd.destroyLogging(id, kind: kind, removedWith: removedWith)
    iommufd.unregister(self)
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

  /// ``withDescriptor(_:using:_:)`` for one object, without an array on the call path.
  @discardableResult
  func withDescriptor<R>(
    _ operation: IommufdError.Operation, using object: OwnedObject,
    _ body: (FileDescriptor) throws(IommufdError) -> R
  ) throws(IommufdError) -> R {
    try checkContext(of: object, operation)
    return try object.use(operation) { () throws(IommufdError) -> R in try withDescriptor(operation, body) }
  }

  /// EINVAL for an object of another context.
  private func checkContext(of object: OwnedObject, _ operation: IommufdError.Operation) throws(IommufdError) {
    guard object.iommufd !== self else { return }
    throw IommufdError(
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
  (target as? any ObjectHandle)?.object
}
