import CIommufd
import SystemPackage

/// Well-known PCI IRQ indexes.
public enum VFIOPCIInterrupt {
  /// Legacy INTx.
  public static let intx = 0
  /// MSI.
  public static let msi = 1
  /// MSI-X.
  public static let msix = 2
  /// PCIe AER error notification.
  public static let error = 3
  /// Device request (the host wants the device back).
  public static let request = 4
}

/// What `VFIO_DEVICE_GET_IRQ_INFO` reports for one IRQ index.
public struct VFIOIRQInfo: Hashable, Sendable {
  /// `VFIO_IRQ_INFO_*`.
  public struct Flags: OptionSet, Hashable, Sendable {
    /// The raw flags.
    public var rawValue: UInt32
    /// Creates from the raw flags.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Can signal an eventfd.
    public static let eventFD = Flags(rawValue: 1 << 0)
    /// Can be masked and unmasked.
    public static let maskable = Flags(rawValue: 1 << 1)
    /// Masked by the kernel when it fires (INTx); unmask after handling.
    public static let automasked = Flags(rawValue: 1 << 2)
    /// The vector count cannot change while enabled.
    public static let noResize = Flags(rawValue: 1 << 3)
  }

  /// The IRQ index.
  public var index: Int
  /// The flags.
  public var flags: Flags
  /// The number of vectors (0: the device has none of this kind).
  public var count: Int

  /// Creates the value.
  public init(index: Int, flags: Flags, count: Int) {
    self.index = index
    self.flags = flags
    self.count = count
  }
}

/// What `VFIO_DEVICE_SET_IRQS` does to the selected vectors.
public enum VFIOIRQAction: Sendable, Hashable {
  /// `VFIO_IRQ_SET_ACTION_MASK`.
  case mask
  /// `VFIO_IRQ_SET_ACTION_UNMASK`.
  case unmask
  /// `VFIO_IRQ_SET_ACTION_TRIGGER`.
  case trigger

  var flag: UInt32 {
    switch self {
    case .mask: CIOMMUFD_VFIO_IRQ_SET_ACTION_MASK
    case .unmask: CIOMMUFD_VFIO_IRQ_SET_ACTION_UNMASK
    case .trigger: CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER
    }
  }
}

extension VFIODevice {
  /// Describes IRQ index `index`.
  public func irqInfo(_ index: Int) throws(IommufdError) -> VFIOIRQInfo {
    var request = ciommufd_vfio_irq_info()
    request.argsz = UInt32(MemoryLayout<ciommufd_vfio_irq_info>.size)
    request.index = try irqIndex(index, .deviceGetIRQInfo)
    try ioctl(CIOMMUFD_VFIO_DEVICE_GET_IRQ_INFO, &request, .deviceGetIRQInfo, [.irq(index)])
    return VFIOIRQInfo(index: index, flags: .init(rawValue: request.flags), count: Int(request.count))
  }

  /// Routes vectors `start..<start + eventFDs.count` of IRQ `index` to `eventFDs`
  /// (`nil` de-assigns a vector). The device keeps the eventfds alive while assigned.
  ///
  /// The first call on MSI or MSI-X enables it with `start + eventFDs.count` vectors;
  /// later calls change a block of vectors (one vector: `start: n` and one eventfd). Where
  /// MSI-X's ``VFIOIRQInfo/Flags/noResize`` is clear, a vector past those enabled is added.
  /// ``disableInterrupts(_:)`` turns the index off.
  ///
  /// With `action` ``VFIOIRQAction/unmask`` (INTx only), the eventfd is watched instead:
  /// each signal on it unmasks INTx, the resampling irqfd of KVM (see
  /// ``setUnmaskEventFD(_:)``).
  ///
  /// A closed eventfd fails with `EBADF` before the kernel is asked: its number may name
  /// another file by now. Each eventfd is held open for the length of the call.
  public func setInterrupts(
    _ index: Int, start: Int = 0, eventFDs: [EventFD?], action: VFIOIRQAction = .trigger
  ) throws(IommufdError) {
    try changes.withLock { (count: inout Int) throws(IommufdError) in
      count &+= 1
      try setInterruptsRecording(index, start: start, eventFDs: eventFDs, action: action)
    }
  }

  /// Routes vectors `start..<start + eventFDs.count` of IRQ `index` to eventfds the
  /// caller owns (a VMM's irqfds; `nil` de-assigns a vector): each is used through a
  /// borrowing ``EventFD`` (``EventFD/init(borrowing:backend:)``), so the device never
  /// closes them. The caller keeps them open while they are assigned.
  public func setInterrupts(
    _ index: Int, start: Int = 0, borrowing eventFDs: [FileDescriptor?], action: VFIOIRQAction = .trigger
  ) throws(IommufdError) {
    try setInterrupts(
      index, start: start, eventFDs: eventFDs.map { $0.map { EventFD(borrowing: $0, backend: backend) } }, action: action)
  }

  /// Makes each signal on `eventFD` unmask INTx (`nil` stops watching): the resample
  /// eventfd a VMM hands to KVM's irqfd, so the guest's end of interrupt unmasks the
  /// device's line without a system call. If the line is still asserted then, vfio-pci
  /// signals the trigger again and INTx stays masked. INTx must be enabled (EINVAL); a
  /// second eventfd while one is set is EBUSY. Disabling INTx drops it.
  public func setUnmaskEventFD(_ eventFD: EventFD?) throws(IommufdError) {
    try setInterrupts(VFIOPCIInterrupt.intx, eventFDs: [eventFD], action: .unmask)
  }

  /// ``setUnmaskEventFD(_:)`` with an eventfd the caller owns and keeps open while set.
  public func setUnmaskEventFD(borrowing eventFD: FileDescriptor?) throws(IommufdError) {
    try setInterrupts(VFIOPCIInterrupt.intx, borrowing: [eventFD], action: .unmask)
  }

  private func setInterruptsRecording(
    _ index: Int, start: Int, eventFDs: [EventFD?], action: VFIOIRQAction
  ) throws(IommufdError) {
    try Self.holdingOpen(eventFDs[...]) { () throws(IommufdError) in
      let descriptors = eventFDs.map { $0?.fileDescriptor.rawValue ?? -1 }
      try setIRQs(
        index, start: start, count: eventFDs.count,
        flags: CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD | action.flag, payload: descriptors.count * 4
      ) { buffer in
        for (offset, fd) in descriptors.enumerated() {
          buffer.storeBytes(of: fd, toByteOffset: 20 + offset * 4, as: Int32.self)
        }
      }
    }
    keepEventFDs(eventFDs, slot: Self.eventFDSlot(index, action), start: start)
  }

  /// Where the device keeps the eventfds of `index` for `action`.
  static func eventFDSlot(_ index: Int, _ action: VFIOIRQAction) -> Int {
    switch action {
    case .trigger: index
    case .mask: -2 * index - 1
    case .unmask: -2 * index - 2
    }
  }

  /// Runs `body` with every eventfd of `eventFDs` held open; a closed one fails with `EBADF`.
  /// (A loop, not a recursion: a list of thousands of vectors needs no deep stack.)
  private static func holdingOpen(
    _ eventFDs: ArraySlice<EventFD?>, _ body: () throws(IommufdError) -> Void
  ) throws(IommufdError) {
    var held: [OwnedDescriptor] = []
    held.reserveCapacity(eventFDs.count)
    defer { for descriptor in held { descriptor.leave() } }
    for case let eventFD? in eventFDs {
      // -1 would de-assign the vector: a borrowed descriptor must name a file.
      guard eventFD.fileDescriptor.rawValue >= 0 else {
        throw IommufdError(
          .deviceSetIRQs, .badFileDescriptor, objects: [.fd(eventFD.fileDescriptor)],
          detail: "fd \(eventFD.fileDescriptor.rawValue) is no descriptor (the kernel would take it as a de-assign): pass nil to de-assign a vector")
      }
      try eventFD.descriptor.enter(.deviceSetIRQs)
      held.append(eventFD.descriptor)
    }
    try body()
  }

  /// Disables every vector of IRQ `index` and releases their eventfds.
  public func disableInterrupts(_ index: Int) throws(IommufdError) {
    try changes.withLock { (count: inout Int) throws(IommufdError) in
      count &+= 1
      try setIRQs(
        index, start: 0, count: 0, flags: CIOMMUFD_VFIO_IRQ_SET_DATA_NONE | CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER, payload: 0
      ) { _ in }
      dropEventFDs(slot: index)
      if index == VFIOPCIInterrupt.intx { dropEventFDs(slot: Self.eventFDSlot(index, .unmask)) }
    }
  }

  /// Applies `action` to vectors `start..<start + count` of IRQ `index` with no data:
  /// mask, unmask, or trigger them from software (a loopback test of the eventfd path).
  public func perform(_ action: VFIOIRQAction, interrupt index: Int, start: Int = 0, count: Int = 1) throws(IommufdError) {
    try setIRQs(index, start: start, count: count, flags: CIOMMUFD_VFIO_IRQ_SET_DATA_NONE | action.flag, payload: 0) { _ in }
  }

  /// Applies `action` to those of vectors `start..<start + vectors.count` of IRQ `index`
  /// whose entry is `true` (`VFIO_IRQ_SET_DATA_BOOL`): fire some vectors of a block from
  /// software, or mask or unmask INTx conditionally.
  public func perform(_ action: VFIOIRQAction, interrupt index: Int, start: Int = 0, selecting vectors: [Bool]) throws(IommufdError) {
    try setIRQs(
      index, start: start, count: vectors.count, flags: CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL | action.flag, payload: vectors.count
    ) { buffer in
      for (offset, selected) in vectors.enumerated() {
        buffer.storeBytes(of: selected ? 1 : 0, toByteOffset: 20 + offset, as: UInt8.self)
      }
    }
  }

  private func setIRQs(
    _ index: Int, start: Int, count: Int, flags: UInt32, payload: Int,
    fill: (UnsafeMutableRawBufferPointer) -> Void
  ) throws(IommufdError) {
    let rawIndex = try irqIndex(index, .deviceSetIRQs)
    guard start >= 0, count >= 0, start <= Int(UInt32.max), count <= Int(UInt32.max) else {
      throw IommufdError(.deviceSetIRQs, .invalidArgument, objects: [.irq(index)], detail: "start and count must be 0 or more")
    }
    let size = MemoryLayout<ciommufd_vfio_irq_set>.size + payload
    guard let argumentSize = UInt32(exactly: size) else {
      throw IommufdError(.deviceSetIRQs, .invalidArgument, objects: [.irq(index)], detail: "\(count) vectors need an argument of \(size) bytes, more than a u32 counts")
    }
    try withScratchBuffer(count: size) { buffer throws(IommufdError) in
      var header = ciommufd_vfio_irq_set()
      header.argsz = argumentSize
      header.flags = flags
      header.index = rawIndex
      header.start = UInt32(start)
      header.count = UInt32(count)
      buffer.storeBytes(of: header, as: ciommufd_vfio_irq_set.self)
      fill(buffer)
      try descriptor.withDescriptor(.deviceSetIRQs) { fd throws(IommufdError) in
        try backend.ioctl(fd, CIOMMUFD_VFIO_DEVICE_SET_IRQS, buffer: buffer, .deviceSetIRQs, [.irq(index)])
      }
    }
  }

  private func irqIndex(_ index: Int, _ operation: IommufdError.Operation) throws(IommufdError) -> UInt32 {
    guard index >= 0, index <= Int(UInt32.max) else {
      throw IommufdError(operation, .invalidArgument, objects: [.irq(index)], detail: "IRQ index must be 0 or more")
    }
    return UInt32(index)
  }
}
