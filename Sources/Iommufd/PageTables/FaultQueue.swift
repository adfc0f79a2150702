import CIommufd
import SystemPackage

/// One I/O page fault read from a ``FaultQueue`` (`struct iommu_hwpt_pgfault`).
public struct PageFault: Hashable, Sendable {
  /// `IOMMU_PGFAULT_FLAGS_*`: bit 0 PASID valid, bit 1 last page of the group.
  public var flags: UInt32
  /// The device object id that faulted.
  public var deviceID: ObjectID
  /// The PASID, when flags bit 0 is set.
  public var pasid: UInt32
  /// The page request group.
  public var groupID: UInt32
  /// `IOMMU_PGFAULT_PERM_*`: read 1, write 2, exec 4, privileged 8.
  public var permissions: UInt32
  /// The faulting address.
  public var address: UInt64
  /// The length (0 for page requests).
  public var length: UInt32
  /// The cookie to answer the group with.
  public var cookie: UInt32

  /// Creates the value.
  public init(flags: UInt32, deviceID: ObjectID, pasid: UInt32, groupID: UInt32, permissions: UInt32, address: UInt64, length: UInt32, cookie: UInt32) {
    self.flags = flags
    self.deviceID = deviceID
    self.pasid = pasid
    self.groupID = groupID
    self.permissions = permissions
    self.address = address
    self.length = length
    self.cookie = cookie
  }
}

/// A fault queue (`IOMMU_FAULT_QUEUE_ALLOC`): I/O page faults of devices attached to HWPTs
/// that name it arrive on its descriptor; user space answers each group by cookie.
///
/// Owns its descriptor and object id: release closes the descriptor, then destroys the id
/// (refused with EBUSY, and logged, while an HWPT still names it). Thread-safe.
public final class FaultQueue: Sendable, ObjectHandle {
  /// The context.
  public let iommufd: IOMMUFD
  /// The fault object's id, for `fault_id`.
  public var id: ObjectID { object.id }
  let descriptor: OwnedDescriptor
  let object: OwnedObject

  /// How a page request is answered.
  public enum Response: UInt32, Sendable {
    /// `IOMMUFD_PAGE_RESP_SUCCESS`: retry the access.
    case success = 0
    /// `IOMMUFD_PAGE_RESP_INVALID`: fail it.
    case invalid = 1
  }

  init(iommufd: IOMMUFD, id: ObjectID, fd: FileDescriptor) {
    self.iommufd = iommufd
    self.descriptor = OwnedDescriptor(fd, backend: iommufd.backend)
    self.object = OwnedObject(iommufd: iommufd, id: id, kind: "fault queue", involved: .object(id))
  }

  /// The fault descriptor (poll it for `POLLIN`).
  public var fileDescriptor: FileDescriptor { descriptor.fd }

  /// The most records one ``read(maximumFaults:)`` asks for (a buffer of 2.5 MiB).
  public static let maximumReadFaults = 1 << 16

  /// Reads the pending fault groups that fit in `maximumFaults` records (0 to
  /// ``maximumReadFaults``, else EINVAL); an empty result means none is pending.
  public func read(maximumFaults: Int = 64) throws(IommufdError) -> [PageFault] {
    guard maximumFaults >= 0, maximumFaults <= Self.maximumReadFaults else {
      throw IommufdError(
        .faultRead, .invalidArgument, objects: [.object(id)],
        detail: "maximumFaults \(maximumFaults) is outside 0...\(Self.maximumReadFaults)")
    }
    let size = MemoryLayout<ciommufd_iommu_hwpt_pgfault>.size
    return try withScratchBuffer(count: maximumFaults * size) { buffer throws(IommufdError) -> [PageFault] in
      let count = try descriptor.withDescriptor(.faultRead) { fd throws(IommufdError) -> Int in
        do throws(Errno) {
          return try iommufd.backend.calls.read(fd, into: buffer)
        } catch {
          throw IommufdError(.faultRead, error, objects: [.fd(fd), .object(id)])
        }
      }
      return (0..<(min(max(count, 0), buffer.count) / size)).map { index in
        let raw = buffer.load(fromByteOffset: index * size, as: ciommufd_iommu_hwpt_pgfault.self)
        return PageFault(
          flags: raw.flags, deviceID: ObjectID(raw.dev_id), pasid: raw.pasid, groupID: raw.grpid, permissions: raw.perm,
          address: raw.addr, length: raw.length, cookie: raw.cookie)
      }
    }
  }

  /// Answers the fault group `cookie`.
  public func respond(to cookie: UInt32, with response: Response) throws(IommufdError) {
    var message = ciommufd_iommu_hwpt_page_response(cookie: cookie, code: response.rawValue)
    try descriptor.withDescriptor(.faultRespond) { fd throws(IommufdError) in
      do throws(Errno) {
        _ = try withUnsafeBytes(of: &message) { bytes throws(Errno) in try iommufd.backend.calls.write(fd, from: bytes) }
      } catch {
        throw IommufdError(.faultRespond, error, objects: [.fd(fd), .object(id), .init("cookie", "\(cookie)")])
      }
    }
  }

  /// Closes the descriptor and destroys the fault object (EBUSY while an HWPT names it;
  /// then a later call tries the destroy again). Once destroyed, a second call fails with
  /// `ENOENT`, as it does for every other object handle.
  public func destroy() throws(IommufdError) {
    try descriptor.close()
    try object.destroy()
  }

  deinit {
    // The descriptor holds the object (FAULT-4): close it before the object goes.
    try? descriptor.close()
    object.release()
  }
}

extension IOMMUFD {
  /// Allocates a fault queue.
  public func allocateFaultQueue() throws(IommufdError) -> FaultQueue {
    self.allocations.enterReading()
    defer { self.allocations.leaveReading() }
    var request = ciommufd_iommu_fault_alloc()
    request.size = UInt32(MemoryLayout<ciommufd_iommu_fault_alloc>.size)
    try withDescriptor(.faultQueueAlloc) { fd throws(IommufdError) in
      try backend.ioctl(fd, CIOMMUFD_IOMMU_FAULT_QUEUE_ALLOC, &request, .faultQueueAlloc, [])
    }
    return FaultQueue(iommufd: self, id: ObjectID(request.out_fault_id), fd: FileDescriptor(rawValue: Int32(bitPattern: request.out_fault_fd)))
  }
}

extension IOMMUSelfTest {
  /// Makes the mock device `deviceID` report a page request (`IOMMU_TEST_OP_TRIGGER_IOPF`);
  /// it reaches the fault queue of the HWPT the device is attached to, if it has one.
  public func triggerPageFault(device deviceID: ObjectID, pasid: UInt32 = 0, group: UInt32, permissions: UInt32, address: UInt64) throws(IommufdError) {
    var command = Self.command(CIOMMUFD_TEST_OP_TRIGGER_IOPF, id: ObjectID(0))
    withUnsafeMutableBytes(of: &command.payload) {
      $0.storeBytes(of: deviceID.rawValue, as: UInt32.self)
      $0.storeBytes(of: pasid, toByteOffset: 4, as: UInt32.self)
      $0.storeBytes(of: group, toByteOffset: 8, as: UInt32.self)
      $0.storeBytes(of: permissions, toByteOffset: 12, as: UInt32.self)
      $0.storeBytes(of: address, toByteOffset: 16, as: UInt64.self)
    }
    try issue(&command, [.device(deviceID)])
  }
}
