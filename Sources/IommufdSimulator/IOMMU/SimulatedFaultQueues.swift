import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Fault queues (semantics §5.16): the object, its descriptor's read and write.
extension SimulatedKernel.State {
  func faultQueueAlloc(_ context: SimulatedContext, _ address: UInt64, _ size: Int) throws(Errno) -> Int32 {
    var request = try command(ciommufd_iommu_fault_alloc.self, address, size)
    if request.flags != 0 { throw .notSupported }  // FAULT-1
    let id = try allocateID(context)
    let queue = SimulatedFaultQueue()
    try openQueueDescriptor(context, .fault(context, queue)) { fd throws(Errno) in  // FAULT-2
      request.out_fault_id = id
      request.out_fault_fd = UInt32(bitPattern: fd)
      try respond(request, address, size)
    }
    context.objects[id] = .fault(queue)
    return 0
  }

  /// The descriptor of a new queue object (a fault queue, a vEVENTQ): opened, handed to
  /// `reply`, and closed again if the reply fails (FAULT-3: nothing is left); once open it
  /// keeps the context alive (FAULT-4).
  func openQueueDescriptor(_ context: SimulatedContext, _ file: File, reply: (Int32) throws(Errno) -> Void) throws(Errno) {
    let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Errno(rawValue: Glibc.errno) }
    do throws(Errno) {
      try reply(fd)
    } catch {
      Glibc.close(fd)
      throw error
    }
    context.openFaultFiles += 1
    files[fd] = file
  }

  /// FAULT-6: whole groups, a cookie each; EINVAL if the first pending group does not fit.
  func readFaults(_ queue: SimulatedFaultQueue, count: Int) throws(Errno) -> [UInt8] {
    let size = MemoryLayout<ciommufd_iommu_hwpt_pgfault>.size
    if count % size != 0 { throw .illegalSeek }
    var bytes: [UInt8] = []
    while let group = queue.pending.first {
      if bytes.count >= count || group.count * size > count - bytes.count {
        if bytes.isEmpty { throw .invalidArgument }
        break
      }
      queue.pending.removeFirst()
      let cookie = queue.nextCookie()
      queue.awaiting[cookie] = group
      for fault in group {
        let record = ciommufd_iommu_hwpt_pgfault(
          flags: fault.flags, dev_id: fault.deviceID, pasid: fault.pasid, grpid: fault.groupID, perm: fault.permissions,
          __reserved: 0, addr: fault.address, length: 0, cookie: cookie)
        bytes += UserMemory.encode(record)
      }
    }
    return bytes
  }

  /// FAULT-7: responses of 8 bytes; a bad code or unknown cookie stops the write.
  func writeResponses(_ queue: SimulatedFaultQueue, _ bytes: [UInt8]) throws(Errno) -> Int {
    let size = MemoryLayout<ciommufd_iommu_hwpt_page_response>.size
    if bytes.count % size != 0 { throw .illegalSeek }
    var done = 0
    var failure: Errno?
    while done < bytes.count {
      let response = UserMemory.decode(ciommufd_iommu_hwpt_page_response.self, from: bytes, offset: done)
      if response.code != CIOMMUFD_PAGE_RESP_SUCCESS && response.code != CIOMMUFD_PAGE_RESP_INVALID {
        failure = .invalidArgument
        break
      }
      guard queue.awaiting.removeValue(forKey: response.cookie) != nil else {
        failure = .invalidArgument
        break
      }
      done += size
    }
    if done == 0, let failure { throw failure }
    return done
  }
}
