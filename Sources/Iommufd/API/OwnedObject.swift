import Synchronization

/// An iommufd object id destroyed exactly once: on ``destroy()``, or on ``release()`` from
/// the owning handle's `deinit` (a failure then is logged, never thrown). The handle calls
/// ``release()`` in its own `deinit`, so the object goes before the objects the handle keeps
/// alive (an HWPT before its IOAS). A destroy the kernel refuses (EBUSY) leaves the id
/// owned, so a later one, or the release, tries again. Thread-safe.
final class OwnedObject: Sendable {
  let iommufd: IOMMUFD
  let id: ObjectID
  /// What the object is, for messages: "IOAS", "HWPT", ...
  let kind: String
  /// How errors name the object.
  let involved: IommufdError.InvolvedObject
  /// What the kernel may remove the object with (its device, for a vDEVICE): a release
  /// that finds the id gone (ENOENT) is then expected, not a failure.
  let removedWith: String?
  private let destroyed = Mutex(false)

  init(iommufd: IOMMUFD, id: ObjectID, kind: String, involved: IommufdError.InvolvedObject, removedWith: String? = nil) {
    self.iommufd = iommufd
    self.id = id
    self.kind = kind
    self.involved = involved
    self.removedWith = removedWith
  }

  /// Destroys the object now; a second call fails with ENOENT, saying it was destroyed.
  func destroy() throws(IommufdError) {
    guard try destroyIfOwned() else {
      throw IommufdError(.destroy, .noSuchFileOrDirectory, objects: [involved], detail: "the \(kind) was already destroyed")
    }
  }

  /// Destroys the object unless that was done already; returns whether it did.
  @discardableResult
  func destroyIfOwned() throws(IommufdError) -> Bool {
    let already = destroyed.withLock { value -> Bool in
      defer { value = true }
      return value
    }
    if already { return false }
    do { try iommufd.destroy(id) } catch {
      destroyed.withLock { $0 = false }
      throw error
    }
    return true
  }

  /// Destroys the object unless that was done already, logging a failure.
  func release() {
    let already = destroyed.withLock { value -> Bool in
      defer { value = true }
      return value
    }
    if !already { iommufd.destroyLogging(id, kind: kind, removedWith: removedWith) }
  }
}
