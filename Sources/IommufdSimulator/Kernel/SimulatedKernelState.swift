import Iommufd
import CIommufd
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension SimulatedKernel {
  /// Everything the simulated kernel knows. Used only under the kernel's lock.
  final class State {
    enum File {
      case iommufd(SimulatedContext)
      case device(SimulatedDeviceFile)
      case fault(SimulatedContext, SimulatedFaultQueue)
      case veventq(SimulatedContext, SimulatedVEventQueue)
      /// A self-test access (`[iommufd_test_staccess]`).
      case access(SimulatedAccess)
      /// A dma-buf of the self-test's exporter (7.2 model).
      case dmabuf(SimulatedDMABuf)
      /// A mediated device's VFIO cdev.
      case mediated(SimulatedMediatedFile)
      /// A migration data stream of a device.
      case migration(SimulatedMigrationFile)

      /// The open file behind the descriptor, for the references areas hold to it.
      var identity: ObjectIdentifier {
        switch self {
        case .iommufd(let context): ObjectIdentifier(context)
        case .device(let file): ObjectIdentifier(file)
        case .fault(_, let queue): ObjectIdentifier(queue)
        case .veventq(_, let queue): ObjectIdentifier(queue)
        case .access(let access): ObjectIdentifier(access)
        case .dmabuf(let buffer): ObjectIdentifier(buffer)
        case .mediated(let file): ObjectIdentifier(file)
        case .migration(let file): ObjectIdentifier(file)
        }
      }
    }

    /// How many pages of `IOMMU_IOAS_MAP_FILE` hold each simulated file (`pages->file =
    /// get_file(file)` in pages.c), by the file's identity. A file whose descriptor is closed
    /// while held waits in ``closedWhileHeld`` and is released with the last such pages:
    /// never, for a context that maps its own descriptor, as on Linux 7.2.
    var fileHolds: [ObjectIdentifier: Int] = [:]
    /// Simulated files closed while pages held them, released when the pages go.
    var closedWhileHeld: [ObjectIdentifier: File] = [:]

    let configuration: Configuration
    let devices: [SimulatedPCIDevice]
    /// Where the devices sit: the root bus, or behind a root port.
    let topology: SimulatedTopology
    /// The mdev bus: parents, and the mediated devices made of their types.
    let mediated: SimulatedMediatedBus
    /// Guarded by the kernel's lock, like all of the state; unchecked: a translation reads it.
    @exclusivity(unchecked) var files = SimulatedTable<Int32, File>()
    /// The file each device is bound through (BIND-7: one at a time), by device number.
    /// Unchecked, as ``files``: every device DMA reads it.
    @exclusivity(unchecked) var boundFiles: [SimulatedDeviceFile?]
    /// The next page-request group index of each device, by device number.
    var nextPageRequestGroup: [Int: UInt32] = [:]
    /// The readable start of the iommufd ioctl argument being handled, read ahead in one
    /// copy: the size and the command struct come from it when they lie inside it.
    var argumentAhead: (address: UInt64, bytes: [UInt8])?
    /// The pages objects of all areas, by id.
    var pagesTable = SimulatedPagesTable()
    var irqs: [Int: SimulatedIRQState] = [:]
    var pinnedPages: UInt64 = 0
    var chargedPages: UInt64 = 0
    /// The self-test's `iommufd_test_memory_limit` (SET_TEMP_MEMORY_LIMIT): the most bytes
    /// the kernel takes for one batch of pages.
    var temporaryMemoryLimit: UInt64 = 65536
    var dmaFaults: [SimulatedDMAFault] = []
    var pendingFailures: [FaultPoint: (remaining: Int, errno: Errno)] = [:]
    /// Linux's fail-nth: the fault points left until one fails (0: none will).
    var failNth = 0

    /// The kernel's lock (the worker thread takes it).
    let lock: KernelLock
    /// The kernel's own thread, for work outside system calls.
    let worker: SimulatedWorker
    /// The devices whose INTx line is asserted, by device number.
    var intxAsserted: Set<Int> = []
    /// Mapped BARs: each piece of a mapping holds its device file (as a VMA holds its
    /// file), so the device is released only after the close and the last munmap.
    var barMappings: [(start: UInt, end: UInt, file: ObjectIdentifier)] = []
    /// Each device's config space as enumerated when the machine was made (what sysfs
    /// shows of its ids), by device number.
    var enumeratedConfig: [[UInt8]] = []
    /// vfio-pci's virtual BAR and ROM registers of each device (28 bytes: 0x10–0x27 and
    /// 0x30–0x33 of config space) as the user wrote them, by device number.
    var virtualBARs: [Int: [UInt8]] = [:]
    /// The device-request (REQ) eventfd of each device that has one, by device number.
    var requestEventFDs: [Int: Int32] = [:]
    /// vfio-pci's low-power state of each device in it (`pm_runtime_engaged`), with its
    /// wakeup eventfd if it has one, by device number.
    var lowPower: [Int: SimulatedEventFD?] = [:]
    /// The config space header each bound device had when vfio-pci opened it (its close
    /// writes it back), by device number.
    var openConfig: [Int: [UInt8]] = [:]
    /// vfio-pci's `needs_reset`: closed since the last reset that worked, by device number.
    var needsReset: Set<Int> = []

    init(
      configuration: Configuration, devices rootDevices: [SimulatedPCIDevice], rootPorts: [SimulatedRootPort],
      mediatedParents: [SimulatedMediatedParent], lock: KernelLock
    ) {
      self.lock = lock
      self.worker = SimulatedWorker(lock: lock)
      self.configuration = configuration
      let devices = rootDevices + rootPorts.flatMap(\.functions)
      self.devices = devices
      self.topology = SimulatedTopology(rootDevices: rootDevices.count, ports: rootPorts)
      // QEMU's multifunction=on: function 0 of a slot with more says so in its header type.
      for port in rootPorts where port.functions.count > 1 { port.functions[0].config[0x0E] |= 0x80 }
      self.mediated = SimulatedMediatedBus(parents: mediatedParents, firstNumber: devices.count)
      self.boundFiles = Array(repeating: nil, count: devices.count)
      // The firmware assigns the BARs; enumeration reads the ids.
      for (number, device) in devices.enumerated() { SimulatedBARLayout(device: device, number: number).program() }
      self.enumeratedConfig = devices.map(\.config)
      worker.attach(self)
    }

    /// Registers new pages; returns their id.
    func register(_ pages: SimulatedPages) -> UInt32 {
      pagesTable.add(pages)
    }

    /// Notes one more area using pages `id`.
    func areaAdded(_ id: UInt32) { pagesTable[id]!.areaUsers += 1 }

    /// Notes one area fewer using pages `id`; forgets the pages when none is left.
    func areaRemoved(_ id: UInt32) {
      let pages = pagesTable[id]!
      pages.areaUsers -= 1
      if pages.areaUsers == 0 {
        pagesTable[id] = nil
        if let held = pages.heldFile { dropHold(held) }
      }
    }

    /// A BAR of the device file `identity` was mapped at `address`.
    func mappedBAR(_ identity: ObjectIdentifier, at address: UInt, length: Int) {
      let (end, overflow) = address.addingReportingOverflow(UInt(length))
      barMappings.append((address, overflow ? .max : end, identity))
      fileHolds[identity, default: 0] += 1
    }

    /// `length` bytes at `address` were unmapped: the BAR mappings they cover let go of
    /// their file; a mapping cut in two holds it once per piece left.
    func unmappedBARs(_ address: UInt, length: Int) {
      guard !barMappings.isEmpty else { return }
      let (end, overflow) = address.addingReportingOverflow(UInt(max(0, length)))
      let last = overflow ? UInt.max : end
      var kept: [(start: UInt, end: UInt, file: ObjectIdentifier)] = []
      var dropped: [ObjectIdentifier] = []
      for mapping in barMappings {
        guard mapping.start < last, address < mapping.end else {
          kept.append(mapping)
          continue
        }
        if mapping.start < address { kept.append((mapping.start, address, mapping.file)); fileHolds[mapping.file, default: 0] += 1 }
        if last < mapping.end { kept.append((last, mapping.end, mapping.file)); fileHolds[mapping.file, default: 0] += 1 }
        dropped.append(mapping.file)
      }
      barMappings = kept
      for file in dropped { dropHold(file) }
    }

    /// Pages that held the simulated file `identity` went; a file closed meanwhile is
    /// released with its last hold.
    func dropHold(_ identity: ObjectIdentifier) {
      guard let count = fileHolds[identity] else { return }
      if count > 1 {
        fileHolds[identity] = count - 1
        return
      }
      fileHolds[identity] = nil
      if let file = closedWhileHeld.removeValue(forKey: identity) { release(file) }
    }

    /// The release of a simulated file whose last reference went: its descriptor was closed
    /// and no area holds it.
    func release(_ file: File) {
      switch file {
      case .iommufd(let context):
        context.userFileOpen = false
        releaseIfUnused(context)
      case .device(let file):
        closeDevice(file)
      case .fault(let context, let queue):
        queue.fileOpen = false
        context.openFaultFiles -= 1
        releaseIfUnused(context)
      case .veventq(let context, let queue):
        queue.fileOpen = false
        context.openFaultFiles -= 1
        releaseIfUnused(context)
      case .access(let access):
        closeAccess(access)
      case .dmabuf:
        break  // the areas that map it keep it
      case .mediated(let file):
        closeMediated(file)
      case .migration:
        break  // the driver keeps its own reference until it disables the file
      }
    }

    var pageSize: UInt64 { configuration.pageSize }

    /// One fault point for fail-nth: the one that brings the count to 0 fails with ENOMEM.
    func failNthPoint() throws(Errno) {
      guard failNth > 0 else { return }
      failNth -= 1
      if failNth == 0 { throw .noMemory }
    }

    /// Counts an event of `point`, failing it when an injected failure comes due.
    func fail(_ point: FaultPoint) throws(Errno) {
      try failNthPoint()
      guard var pending = pendingFailures[point] else { return }
      pending.remaining -= 1
      if pending.remaining <= 0 {
        pendingFailures[point] = nil
        throw pending.errno
      }
      pendingFailures[point] = pending
    }

    /// Reserves the lowest free id of `context` for a new object (OBJ-1, OBJ-2).
    func allocateID(_ context: SimulatedContext) throws(Errno) -> UInt32 {
      try fail(.objectAllocation)
      return context.lowestFreeID()
    }

    // MARK: Pinning (OBJ-9, OPT-6)

    /// Pins the pages of `spans` that are not pinned yet, all or nothing: EFAULT when the
    /// user memory cannot be pinned (unmapped, or a protection the pin does not pass),
    /// EINVAL for file pages past the end of their file, ENOMEM over the memlock limit.
    /// Only the pages an area uses are pinned, as the kernel pins by page index.
    func pin(_ spans: [PageSpan]) throws(Errno) {
      // The pages not pinned yet, counting each once even when spans overlap.
      var pending: [ObjectIdentifier: (pages: SimulatedPages, pins: PinCounts)] = [:]
      var gaps: [(pages: SimulatedPages, first: UInt64, last: UInt64)] = []
      for span in spans {
        var entry = pending[ObjectIdentifier(span.pages)] ?? (span.pages, span.pages.pins)
        for gap in entry.pins.unpinned(span.first, span.last) { gaps.append((span.pages, gap.first, gap.last)) }
        _ = entry.pins.add(1, span.first, span.last)
        pending[ObjectIdentifier(span.pages)] = entry
      }
      if gaps.isEmpty { return }
      try fail(.pinning)
      var total: UInt64 = 0
      for gap in gaps where gap.pages.dmabuf == nil {  // a dma-buf is mapped by address, not pinned
        let count = gap.last - gap.first + 1
        if let file = gap.pages.file {
          guard file.canPin(first: gap.first, last: gap.last, pageSize: pageSize) else { throw .invalidArgument }
        } else {
          // pin_user_pages_fast: EOVERFLOW where the range's end wraps past 2^64.
          let start = gap.pages.base &+ gap.first &* pageSize
          let (bytes, bytesOverflow) = count.multipliedReportingOverflow(by: pageSize)
          if bytesOverflow || start.addingReportingOverflow(bytes).overflow { throw .overflow }
          guard UserMemory.canPin(start, length: bytes, pageSize: pageSize, writable: gap.pages.writable)
          else { throw .badAddress }
        }
        total &+= count
      }
      if !configuration.canLockMemory, let limit = configuration.memoryLockLimit {
        let (pages, overflow) = chargedPages.addingReportingOverflow(total)
        let (bytes, bytesOverflow) = pages.multipliedReportingOverflow(by: pageSize)
        if overflow || bytesOverflow || bytes > limit { throw .noMemory }
      }
    }

    /// The part of `span` the kernel has pinned when a driver that refuses a map with
    /// neither READ nor WRITE first refuses it (pages.c): pages are pinned and mapped in
    /// batches of at most `temporaryMemoryLimit / 12` runs of physically contiguous pages
    /// (one page of entries where that allocation would exceed kmalloc's largest), and a
    /// full batch is mapped once the page after it is pinned. The part runs to that page,
    /// or to the first page that cannot be pinned before it. Runs are read from
    /// /proc/self/pagemap after the pages are faulted in; where frame numbers are hidden,
    /// every page is a run of its own.
    func firstBatch(of span: PageSpan) -> PageSpan {
      let count = span.last - span.first + 1
      let (bytes, overflow) = count.multipliedReportingOverflow(by: 12)  // an unsigned long and a u32 per run
      var size = overflow ? temporaryMemoryLimit : min(bytes, temporaryMemoryLimit)
      if size > 4 << 20 { size = 4096 }  // KMALLOC_MAX_SIZE
      let runs = size / 12
      guard runs < count, span.pages.file == nil, span.pages.dmabuf == nil, pageSize == UInt64(getpagesize()) else { return span }
      let writable = span.pages.writable
      func address(_ index: UInt64) -> UInt64 { span.pages.base &+ (span.first &+ index) &* pageSize }
      // The first runs + 1 pages are pinned before any map, whatever their frames.
      guard UserMemory.canPin(address(0), length: (runs + 1) * pageSize, pageSize: pageSize, writable: writable) else {
        return PageSpan(pages: span.pages, first: span.first, last: span.first + runs)
      }
      let end: UInt64? = try? UserMemory.withPhysicalFrames { (frame: (UInt64) -> UInt64?) throws(Errno) -> UInt64 in
        var used: UInt64 = 0
        var previous: UInt64?
        for index in 0..<count {
          if index > runs && !UserMemory.canPin(address(index), length: pageSize, pageSize: pageSize, writable: writable) { return index }
          let current = frame(address(index))
          if current == nil || previous == nil || current != previous! &+ 1 {
            if used == runs { return index }  // the batch is full and this page pinned: it is mapped
            used += 1
          }
          previous = current
        }
        return count - 1
      }
      return PageSpan(pages: span.pages, first: span.first, last: span.first + (end ?? runs))
    }

    /// Records one more domain user of each page of `spans` (after ``pin(_:)`` succeeded).
    func addDomainUsers(_ spans: [PageSpan]) {
      for span in spans {
        let pinned = span.pages.pins.add(1, span.first, span.last)
        if span.pages.dmabuf != nil { continue }  // no pinned-page accounting
        pinnedPages &+= pinned
        if !configuration.canLockMemory { chargedPages &+= pinned }
      }
    }

    /// Drops one domain user of each page of `spans`, unpinning pages left with none.
    func removeDomainUsers(_ spans: [PageSpan]) {
      for span in spans {
        let unpinned = span.pages.pins.add(-1, span.first, span.last)
        if span.pages.dmabuf != nil { continue }
        pinnedPages &-= unpinned
        if !configuration.canLockMemory { chargedPages &-= unpinned }
      }
    }

    /// The pages one area uses: from the page of its first byte to that of its last.
    func span(_ area: SimulatedArea, length: UInt64) -> PageSpan {
      let pages = pagesTable[area.pages]!
      let offset = area.userVA &- pages.base
      let last = min((offset &+ (length &- 1)) / pageSize, pages.pageCount &- 1)
      return PageSpan(pages: pages, first: min(offset / pageSize, last), last: last)
    }

    /// The page spans of every area of `ioas`.
    func spans(of ioas: SimulatedIOAS) -> [PageSpan] {
      ioas.areas.all.map { span($0.value, length: $0.last - $0.start + 1) }
    }

    // MARK: Domains (IOAS-2, OBJ-6)

    /// The domains of the simulated IOMMU (VT-d like).
    var iommuProfile: DomainProfile {
      DomainProfile(
        driver: .platform, pageSize: configuration.ioPageSize, apertureStart: 0, apertureLast: configuration.apertureLast,
        entrySize: configuration.ioPageSize)
    }

    /// What GET_HW_INFO says of the simulated VT-d.
    var vtdHardwareInfo: (type: UInt32, data: [UInt8], capabilities: UInt64) {
      let data = UserMemory.encode(configuration.vtdFlags) + UserMemory.encode(UInt32(0))
        + UserMemory.encode(configuration.vtdCapability) + UserMemory.encode(configuration.vtdExtendedCapability)
      return (CIOMMUFD_HW_INFO_TYPE_INTEL_VTD, data, configuration.vtdDirtyTracking ? 1 : 0)
    }

    /// The ranges a domain with `profile` reserves: everything outside its aperture.
    func apertureReservations(_ profile: DomainProfile) -> [(UInt64, UInt64)] {
      var ranges: [(UInt64, UInt64)] = []
      if profile.apertureStart != 0 { ranges.append((0, profile.apertureStart - 1)) }
      if profile.apertureLast != .max { ranges.append((profile.apertureLast + 1, .max)) }
      return ranges
    }

    /// IOAS-1 when the alignment of `ioas` would rise to `alignment`
    /// (`iopt_check_iova_alignment`): every area's IOVA, length and page offset must be
    /// aligned to it, or EADDRINUSE.
    func checkAlignmentRaise(_ ioas: SimulatedIOAS, to alignment: UInt64) throws(Errno) {
      guard alignment > ioas.alignment(pageSize: pageSize) else { return }
      for area in ioas.areas.all
      where area.start % alignment != 0 || (area.last &- area.start &+ 1) % alignment != 0
        || (area.value.userVA % pageSize) % alignment != 0
      {
        throw .addressInUse
      }
    }

    /// Checks that a new domain with `profile` can be added to `ioas` (IOAS-2), and pins its
    /// pages; throws the kernel's errno and changes nothing on failure.
    func checkDomainAdd(_ ioas: SimulatedIOAS, profile: DomainProfile) throws(Errno) {
      let new = max(ioas.alignment(pageSize: pageSize), profile.pageSize)
      if new > pageSize { throw .invalidArgument }
      try checkAlignmentRaise(ioas, to: new)
      for (start, last) in apertureReservations(profile)
      where ioas.areas.intersects(start, last) || ioas.overlapsAllowed(start, last) {
        throw .addressInUse
      }
      // Each area is pinned, then mapped, in IOVA order: an area with neither READ nor
      // WRITE (VFIO_IOMMU_MAP_DMA's) fails at its map where the driver refuses it.
      if !mapsWithoutAccess(profile) && ioas.areas.all.contains(where: { !$0.value.readable && !$0.value.writable }) {
        for area in ioas.areas.all {
          let refused = !area.value.readable && !area.value.writable
          let whole = span(area.value, length: area.last - area.start + 1)
          if ioas.domains.isEmpty { try pin([refused ? firstBatch(of: whole) : whole]) }
          if refused { throw .invalidArgument }
        }
      }
      if ioas.domains.isEmpty { try pin(spans(of: ioas)) }
    }

    /// Whether a domain with `profile` maps an IOVA with neither read nor write permission:
    /// only 6.12's mock IOMMU does; VT-d, and 7.2's mock (on the generic page table), say
    /// EINVAL.
    func mapsWithoutAccess(_ profile: DomainProfile) -> Bool {
      profile == .mock(pageSize: pageSize) && configuration.release < .linux7_2
    }

    /// Adds the domain `hwptID` to `ioas` after ``checkDomainAdd(_:profile:)``.
    func commitDomainAdd(_ ioas: SimulatedIOAS, hwptID: UInt32, _ hwpt: SimulatedHWPT) {
      let profile = hwpt.profile
      if ioas.domains.isEmpty { addDomainUsers(spans(of: ioas)) }
      ioas.domains.append((hwptID, hwpt))
      for (start, last) in apertureReservations(profile) { ioas.reserved.append((start, last, .aperture(hwptID))) }
    }

    /// Removes the domain `hwptID` from `ioas`: its aperture reservation goes, and the
    /// pages are unpinned if it was the last domain.
    func removeDomain(_ ioas: SimulatedIOAS, hwptID: UInt32) {
      ioas.domains.removeAll { $0.id == hwptID }
      ioas.reserved.removeAll { $0.owner == .aperture(hwptID) }
      if ioas.domains.isEmpty { removeDomainUsers(spans(of: ioas)) }
    }

    /// Removes every area of `ioas`, unpinning what only they held.
    func removeAllAreas(_ ioas: SimulatedIOAS) -> UInt64 {
      var bytes: UInt64 = 0
      let all = ioas.areas.all
      for area in all { bytes &+= area.last - area.start + 1 }
      if !all.isEmpty { notifyUnmap(ioas, 0, .max) }
      if !ioas.domains.isEmpty { removeDomainUsers(all.map { span($0.value, length: $0.last - $0.start + 1) }) }
      for domain in ioas.domains { domain.table.dirtyBits.removeAll() }  // the page tables' entries go, dirty bits with them
      for area in all { areaRemoved(area.value.pages) }
      ioas.areas.removeAll()
      return bytes
    }

    // MARK: Context teardown (OBJ-8)

    /// Destroys every object of `context` once nothing holds it any more.
    func releaseIfUnused(_ context: SimulatedContext) {
      guard !context.userFileOpen, context.boundDevices == 0, context.openFaultFiles == 0, context.accessFiles == 0 else { return }
      for (_, object) in context.objects {
        if case .ioas(let ioas) = object { _ = removeAllAreas(ioas) }
      }
      context.objects.removeAll()
    }

    // MARK: DMA and interrupts

    /// A device access through its IOMMU: reads `count` bytes (`write == nil`) or writes
    /// `write`; `nil` and a recorded fault when refused. A read allocates its bytes only
    /// once the whole access is allowed; a negative count is refused.
    func dma(device number: Int, iova: UInt64, count: Int, write: [UInt8]?) -> [UInt8]? {
      if var bytes = write {
        let done = bytes.withUnsafeMutableBytes { dma(number: number, iova: iova, buffer: $0, isWrite: true) }
        return done ? bytes : nil
      }
      guard count >= 0 else {
        recordFault(device: number, iova: iova, length: count, isWrite: false, reason: "a DMA of a negative length (\(count))")
        return nil
      }
      guard transfer(number: number, iova: iova, count: count, isWrite: false, into: nil) else { return nil }
      var bytes = [UInt8](repeating: 0, count: count)
      let done = bytes.withUnsafeMutableBytes { dma(number: number, iova: iova, buffer: $0, isWrite: false) }
      return done ? bytes : nil
    }

    /// A page request for `address` from device `number` (PCI PRI), queued to the fault
    /// queue of the HWPT it is attached to: one single-page group, with the permission the
    /// access needs and the device's next group index (9 bits). False where the device has
    /// no page requests or the HWPT no fault queue.
    func pageRequest(_ number: Int, _ address: UInt64, isWrite: Bool) -> Bool {
      guard devices[number].supportsPageRequests, let file = boundFiles[number], let (context, deviceID) = file.binding,
        let faultID = file.object?.attachedHWPTObject?.faultID, case .fault(let queue)? = context.objects[faultID]
      else { return false }
      let group = nextPageRequestGroup[number, default: 0]
      nextPageRequestGroup[number] = (group + 1) & 0x1FF
      queue.pending.append([
        SimulatedFaultQueue.Fault(
          flags: CIOMMUFD_PGFAULT_FLAGS_LAST_PAGE, deviceID: deviceID, pasid: 0, groupID: group,
          permissions: isWrite ? 2 : 1, address: address & ~(pageSize - 1))
      ])
      return true
    }

    /// The DMA engine: moves `buffer.count` bytes between `buffer` and the device's view of
    /// memory at `iova`, exactly where mapped with the right permission. Checks the whole
    /// access before moving a byte; a refused access records a fault and returns false.
    func dma(number: Int, iova: UInt64, buffer: UnsafeMutableRawBufferPointer, isWrite: Bool) -> Bool {
      transfer(number: number, iova: iova, count: buffer.count, isWrite: isWrite, into: buffer.baseAddress)
    }

    /// ``dma(number:iova:buffer:isWrite:)`` on `count` bytes at `local`; with `local` nil,
    /// only the checks (a refusal is recorded all the same).
    private func transfer(number: Int, iova: UInt64, count: Int, isWrite: Bool, into local: UnsafeMutableRawPointer?) -> Bool {
      guard devices.indices.contains(number) else {
        recordFault(device: number, iova: iova, length: count, isWrite: isWrite, reason: "there is no device \(number)")
        return false
      }
      /// Records a refused access; a translation failure at `address` of a device with page
      /// requests on a fault-capable HWPT also becomes a page request.
      func refuse(_ reason: String, at address: UInt64? = nil) -> Bool {
        var reason = reason
        if let address, pageRequest(number, address, isWrite: isWrite) { reason += "; page request queued" }
        dmaFaults.append(SimulatedDMAFault(device: number, iova: iova, length: count, isWrite: isWrite, reason: reason))
        return false
      }
      guard devices[number].busMasterEnabled else { return refuse("bus mastering is disabled") }
      guard let ioas = boundFiles[number]?.object?.attachedIOAS ?? groupAttachment(of: number)?.attachedIOAS else {
        return refuse("the device is not attached: DMA is blocked")
      }
      guard count > 0 else { return true }
      let (lastAddress, overflow) = iova.addingReportingOverflow(UInt64(count) - 1)
      guard !overflow else { return refuse("the access wraps around the address space") }
      // Fast path: one area covers the whole access.
      if let area = ioas.areas.entry(containing: iova), area.last >= lastAddress {
        if isWrite ? !area.value.writable : !area.value.readable {
          return refuse("IOVA 0x\(String(iova, radix: 16)) is not mapped \(isWrite ? "writable" : "readable")", at: iova)
        }
        guard let memory = UnsafeMutableRawPointer(bitPattern: UInt(area.value.userVA &+ (iova - area.start))) else {
          return refuse("IOVA 0x\(String(iova, radix: 16)) is backed by no memory")
        }
        guard let local else { return true }
        if isWrite { memory.copyMemory(from: local, byteCount: count) } else { local.copyMemory(from: memory, byteCount: count) }
        if isWrite { markDirtyAfterWrite(number, iova, lastAddress) }
        return true
      }
      // Across areas: the first pass checks, the second copies, so a refused access moves nothing.
      for pass in 0..<(local == nil ? 1 : 2) {
        var cursor = iova
        while true {
          guard let area = ioas.areas.entry(containing: cursor) else {
            return refuse("IOVA 0x\(String(cursor, radix: 16)) is not mapped", at: cursor)
          }
          if isWrite ? !area.value.writable : !area.value.readable {
            return refuse("IOVA 0x\(String(cursor, radix: 16)) is not mapped \(isWrite ? "writable" : "readable")", at: cursor)
          }
          let end = min(area.last, lastAddress)
          guard let memory = UnsafeMutableRawPointer(bitPattern: UInt(area.value.userVA &+ (cursor - area.start))) else {
            return refuse("IOVA 0x\(String(cursor, radix: 16)) is backed by no memory")
          }
          if pass == 1, let local {
            let at = local + Int(cursor - iova)
            let length = Int(end - cursor + 1)
            if isWrite { memory.copyMemory(from: at, byteCount: length) } else { at.copyMemory(from: memory, byteCount: length) }
          }
          if end == lastAddress { break }
          cursor = end + 1
        }
      }
      if isWrite, local != nil { markDirtyAfterWrite(number, iova, lastAddress) }
      return true
    }

    /// A device write through a dirty-tracking HWPT marks the IO pages it touched.
    func markDirtyAfterWrite(_ number: Int, _ first: UInt64, _ last: UInt64) {
      guard let hwpt = boundFiles[number]?.object?.attachedHWPTObject ?? groupAttachment(of: number)?.attachedHWPTObject, hwpt.dirtyEnabled
      else { return }
      hwpt.markDirty(first, last)
    }

    /// The host address the device sees at `iova` through `ioas`, if mapped.
    func hostAddress(_ ioas: SimulatedIOAS, _ iova: UInt64) -> UInt64? {
      guard let area = ioas.areas.entry(containing: iova) else { return nil }
      return area.value.userVA + (iova - area.start)
    }

    /// For a bound device that is not attached itself, the attached function of its IOMMU
    /// group, if any: the group's domain translates for every function of it (a sibling
    /// attached it, or kept it attached after this one detached).
    func groupAttachment(of number: Int) -> SimulatedDeviceObject? {
      guard boundFiles[number] != nil, topology.ports[number] != nil else { return nil }
      return topology.members(ofGroup: topology.groups[number]).lazy.compactMap { member in
        member == number ? nil : self.boundFiles[member]?.object.flatMap { $0.attachedIOAS == nil ? nil : $0 }
      }.first
    }

    func recordFault(device number: Int, iova: UInt64, length: Int, isWrite: Bool, reason: String) {
      dmaFaults.append(SimulatedDMAFault(device: number, iova: iova, length: length, isWrite: isWrite, reason: reason))
    }

    /// Signals the eventfd of `vector` of MSI or MSI-X if one is assigned and bus mastering
    /// is on (a message is a memory write by the device); for INTx
    /// (index 0), asserts the device's line (see ``setINTxLine(device:asserted:)``).
    func raiseInterrupt(device number: Int, index: Int, vector: Int) {
      guard index != Int(CIOMMUFD_VFIO_PCI_INTX_IRQ_INDEX) else {
        setINTxLine(device: number, asserted: true)
        return
      }
      // An MSI is a memory write by the device: without bus mastering it goes nowhere.
      guard let irq = irqs[number], devices[number].busMasterEnabled else { return }
      switch (irq.mode, index) {
      case (.msi, Int(CIOMMUFD_VFIO_PCI_MSI_IRQ_INDEX)), (.msix, Int(CIOMMUFD_VFIO_PCI_MSIX_IRQ_INDEX)):
        if let fd = irq.eventFDs[vector] { signal(fd) }
      default:
        return
      }
    }

    /// Sets the level of device `number`'s INTx line. INTx is level-triggered: while the
    /// line is asserted and INTx is enabled and unmasked, vfio-pci's handler masks it and
    /// signals the trigger eventfd; an unmask while the line is still asserted signals
    /// again and stays masked (`vfio_pci_intx_unmask_handler`).
    func setINTxLine(device number: Int, asserted: Bool) {
      if asserted {
        intxAsserted.insert(number)
        evaluateINTx(number)
      } else {
        intxAsserted.remove(number)
      }
    }

    /// Fires INTx if the line is asserted and INTx enabled and unmasked: masks, signals.
    func evaluateINTx(_ number: Int) {
      guard intxAsserted.contains(number), var irq = irqs[number], irq.mode == .intx, !irq.intxMasked else { return }
      irq.intxMasked = true
      irqs[number] = irq
      if let fd = irq.eventFDs[0] { signal(fd) }
    }

    /// Unmasks INTx (the unmask ioctl, or a signal on the unmask eventfd): with the line
    /// still asserted it signals the trigger again and stays masked.
    func unmaskINTx(_ number: Int) {
      guard var irq = irqs[number], irq.mode == .intx, irq.intxMasked else { return }
      if intxAsserted.contains(number) {
        if let fd = irq.eventFDs[0] { signal(fd) }
      } else {
        irq.intxMasked = false
        irqs[number] = irq
      }
    }

    func signal(_ fd: Int32) {
      var one: UInt64 = 1
      _ = withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
    }

    /// Drops every interrupt assignment of device `number`.
    func disableInterrupts(_ number: Int) {
      if let irq = irqs.removeValue(forKey: number) {
        for fd in irq.eventFDs.values { _ = Glibc.close(fd) }
      }
      worker.unwatch(.intxUnmask(device: number), in: self)
      let device = devices[number]
      if device.msiCount > 0 { device.config[0x42] &= ~0x1 }
      if let capability = device.msixCapability { device.config[capability + 3] &= ~0x80 }
    }
  }
}
