import Iommufd
import CIommufd
import SystemPackage

/// The kernel's mtty sample (`samples/vfio-mdev/mtty.c`) as an instance shows it to user
/// space: a PCI device (4348:3253, class 0x070002) with one or two 16550 UARTs, each in an
/// 8-byte I/O BAR whose transmitter loops back into a 16-byte receive FIFO, an INTx line
/// and one MSI vector. Region reads and writes, config space and interrupts behave as the
/// sample does, quirks included (see `Docs/Simulator.md`); migration is not modelled.
public final class SimulatedMttyDevice: SimulatedMediatedDevice, @unchecked Sendable {
  /// One UART's registers and loopback FIFO (`struct serial_port`), with its padding, as
  /// a migration stream carries it (36 bytes).
  struct Port {
    var registers = [UInt8](repeating: 0, count: 8)
    var fifo = [UInt8](repeating: 0, count: 16)
    var head: UInt8 = 0
    var tail: UInt8 = 0
    var count: UInt8 = 0
    /// `bool dlab` and `bool overrun`, as bytes (a resumed stream may hold any value).
    var dlabByte: UInt8 = 0
    var overrunByte: UInt8 = 0
    var padding1: UInt8 = 0
    var divisor: UInt16 = 0
    var fcr: UInt8 = 0
    var maxFIFOSize: UInt8 = 16
    var triggerLevel: UInt8 = 0
    var padding2: UInt8 = 0

    var isEmpty: Bool { head == tail }
    var dlab: Bool {
      get { dlabByte != 0 }
      set { dlabByte = newValue ? 1 : 0 }
    }
    var overrun: Bool {
      get { overrunByte != 0 }
      set { overrunByte = newValue ? 1 : 0 }
    }

    /// The 36 bytes of `struct serial_port` on x86-64.
    var bytes: [UInt8] {
      registers + fifo + [head, tail, count, dlabByte, overrunByte, padding1] + UserMemory.encode(divisor)
        + [fcr, maxFIFOSize, triggerLevel, padding2]
    }

    init() {}

    init(_ raw: ArraySlice<UInt8>) {
      let bytes = Array(raw)
      registers = Array(bytes[0..<8])
      fifo = Array(bytes[8..<24])
      (head, tail, count, dlabByte, overrunByte, padding1) = (bytes[24], bytes[25], bytes[26], bytes[27], bytes[28], bytes[29])
      divisor = UInt16(bytes[30]) | UInt16(bytes[31]) << 8
      (fcr, maxFIFOSize, triggerLevel, padding2) = (bytes[32], bytes[33], bytes[34], bytes[35])
    }
  }

  /// The interrupt mode (`irq_index`): none, INTx or MSI.
  enum Mode { case none, intx, msi }

  /// The number of UARTs: 1 (`mtty-1`) or 2 (`mtty-2`).
  public let ports: Int
  private var port: [Port]
  private var config: [UInt8]
  /// Set by the first `VFIO_DEVICE_GET_INFO` and never cleared: before it, mtty answers
  /// every interrupt request EINVAL (it checks them against the info it cached).
  private var reportedInfo = false
  private var mode = Mode.none
  private var intxMasked = false
  private var intxEventFD: SimulatedEventFD?
  private var msiEventFD: SimulatedEventFD?

  private static let offsetShift: UInt64 = 40
  private static let configSize = 0xFF

  /// Creates an instance with `ports` UARTs (1 or 2).
  public init(ports: Int) {
    self.ports = ports == 1 ? 1 : 2
    self.port = [Port(), Port()]
    var config = [UInt8](repeating: 0, count: Self.configSize)
    func store32(_ offset: Int, _ value: UInt32) {
      for byte in 0..<4 { config[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte))) }
    }
    store32(0x00, 0x3253_4348)  // vendor 0x4348, device 0x3253
    config[0x04] = 0x01  // command: I/O
    config[0x07] = 0x02  // status
    config[0x08] = 0x10  // revision
    config[0x09] = 0x02  // 16550-compatible
    config[0x0B] = 0x07  // simple communication controller
    store32(0x10, 0x0000_0001)  // BAR0: I/O
    if self.ports == 2 { store32(0x14, 0x0000_0001) }  // BAR1: I/O
    store32(0x2C, 0x3253_4348)  // subsystem
    config[0x3D] = 0x01  // INTA#
    for offset in [0x40, 0x44, 0x48, 0x4C] { config[offset] = 0x23 }
    config[0x43] = 0x80
    for (index, byte) in "PCI Serial/UART".utf8.enumerated() { config[0x60 + index] = byte }
    self.config = config
    super.init()
  }

  // MARK: Info

  /// PCI, 9 regions, 5 interrupt indexes (and the info is remembered, see ``interruptLimit``).
  public override func info() throws(Errno) -> Info {
    reportedInfo = true
    return Info(flags: CIOMMUFD_VFIO_DEVICE_FLAGS_PCI, regions: 9, interrupts: 5)
  }

  /// Every index below 9 is readable and writable, at vfio-pci's offsets: BAR0 8 bytes,
  /// BAR1 8 bytes with two ports, config 0xff bytes, the rest empty; none mappable.
  public override func region(_ index: UInt32) throws(Errno) -> Region {
    guard index < 9 else { throw .invalidArgument }
    let size: UInt64 =
      switch index {
      case 0: 8
      case 1: ports == 2 ? 8 : 0
      case 7: UInt64(Self.configSize)
      default: 0
      }
    return Region(flags: 0x3, size: size, offset: UInt64(index) << Self.offsetShift)
  }

  /// INTx (count 1, eventfd, maskable, automasked) and MSI (count 1, eventfd, noresize);
  /// EINVAL for the rest, and for every index before the first `GET_INFO`.
  public override func interrupt(_ index: UInt32) throws(Errno) -> Interrupt {
    guard index < interruptLimit else { throw .invalidArgument }
    switch index {
    case 0: return Interrupt(flags: 0x7, count: 1)
    case 1: return Interrupt(flags: 0x9, count: 1)
    default: throw .invalidArgument
    }
  }

  /// 5 once `GET_INFO` was answered, 0 before.
  public override var interruptLimit: UInt32 { reportedInfo ? 5 : 0 }

  // MARK: Interrupts

  /// mtty's `SET_IRQS`: MSI-X, ERR and REQ are ENOTTY; on INTx and MSI a request with no
  /// action or several does nothing; a trigger takes one eventfd (any negative number just
  /// stops the current one, which any eventfd given first stops too, even a bad one), or
  /// fires by NONE or a true BOOL; INTx masks by NONE or BOOL (an eventfd is ENOTTY); MSI
  /// masks are ENOTTY.
  public override func setInterrupts(_ request: InterruptRequest) throws(Errno) {
    let action = request.flags & vfioIRQActions
    let dataType = request.flags & vfioIRQDataTypes
    guard request.index <= 1 else { throw .inappropriateIOCTLForDevice }
    let index: Mode = request.index == 0 ? .intx : .msi
    switch action {
    case CIOMMUFD_VFIO_IRQ_SET_ACTION_MASK, CIOMMUFD_VFIO_IRQ_SET_ACTION_UNMASK:
      guard index == .intx else { throw .inappropriateIOCTLForDevice }
      guard mode == .intx, request.start == 0, request.count == 1 else { throw .invalidArgument }
      let masks = action == CIOMMUFD_VFIO_IRQ_SET_ACTION_MASK
      switch dataType {
      case CIOMMUFD_VFIO_IRQ_SET_DATA_NONE: intxMasked = masks
      case CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL: if request.data.first ?? 0 != 0 { intxMasked = masks }
      default: throw .inappropriateIOCTLForDevice  // no mask eventfd
      }
    case CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER:
      try trigger(index, request, dataType)
    default:
      break
    }
  }

  private func trigger(_ index: Mode, _ request: InterruptRequest, _ dataType: UInt32) throws(Errno) {
    if mode == index, request.count == 0, dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_NONE {
      disable(index)
      return
    }
    guard mode == index || mode == .none, request.start == 0, request.count == 1 else { throw .invalidArgument }
    if dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD {
      disable(index)
      let fd = request.eventFDs.first ?? -1
      guard fd >= 0 else { return }
      let eventFD = try SimulatedEventFD(borrowing: fd)
      if index == .intx { intxEventFD = eventFD } else { msiEventFD = eventFD }
      mode = index
      return
    }
    guard mode == index else { throw .invalidArgument }
    if dataType == CIOMMUFD_VFIO_IRQ_SET_DATA_NONE || request.data.first ?? 0 != 0 { raiseInterrupt() }
  }

  /// `mtty_disable_intx` or `_msi`: where that index has an eventfd, it goes, with the mode
  /// (and INTx's mask).
  private func disable(_ index: Mode) {
    if index == .intx, intxEventFD != nil {
      intxEventFD = nil
      intxMasked = false
      mode = .none
    } else if index == .msi, msiEventFD != nil {
      msiEventFD = nil
      mode = .none
    }
  }

  /// `mtty_trigger_interrupt`: MSI signals every time; INTx signals unless masked and then
  /// masks itself; with no mode the event is lost.
  private func raiseInterrupt() {
    switch mode {
    case .msi: msiEventFD?.signal()
    case .intx:
      guard !intxMasked else { return }
      intxEventFD?.signal()
      intxMasked = true
    case .none: break
    }
  }

  // MARK: Regions

  /// A read, split as mtty splits it (4 bytes where aligned and left, else 2, else 1); a
  /// chunk outside config and BAR0–5 fails the whole read with EFAULT.
  public override func read(at offset: UInt64, count: Int) throws(Errno) -> [UInt8] {
    var result: [UInt8] = []
    try forEachChunk(offset, count) { position, width throws(Errno) in
      let (index, within) = (position >> Self.offsetShift, Int(clamping: position & ((1 << Self.offsetShift) - 1)))
      switch index {
      case 7:
        result += (0..<width).map { within + $0 < config.count ? config[within + $0] : 0 }
      case 0...5:
        // mtty fills only the first byte (the rest is whatever its stack held: 0 here).
        result += [readRegister(Int(index), within)] + [UInt8](repeating: 0, count: width - 1)
      default:
        throw .badAddress
      }
    }
    return result
  }

  /// A write, split as ``read(at:count:)`` splits it.
  public override func write(_ bytes: [UInt8], at offset: UInt64) throws(Errno) -> Int {
    var consumed = 0
    try forEachChunk(offset, bytes.count) { position, width throws(Errno) in
      let (index, within) = (position >> Self.offsetShift, Int(clamping: position & ((1 << Self.offsetShift) - 1)))
      let chunk = Array(bytes[consumed..<(consumed + width)])
      switch index {
      case 7: writeConfig(within, chunk)
      case 0...5: writeRegister(Int(index), within, chunk[0])
      default: throw .badAddress
      }
      consumed += width
    }
    return bytes.count
  }

  /// mtty's reset: back to RUNNING with its data files disabled; the UART, config space
  /// and interrupts stay as they are.
  public override func reset() throws(Errno) { resetMigration() }

  // MARK: Migration

  /// `STOP_COPY | P2P | PRE_COPY`.
  public override var migrationFlags: UInt64? { 0x7 }

  /// `struct mtty_data` up to the ports: 60 bytes with one port, 96 with two.
  public override var resumeCapacity: Int { 24 + 36 * ports }

  private static let magic: UInt64 = 0x7E9D_0989_8C3E_2C4E

  /// The 24-byte header: magic, version 1.0, the port count, flags 0.
  public override func preCopyData() -> [UInt8] {
    UserMemory.encode(Self.magic) + UserMemory.encode(UInt32(1)) + UserMemory.encode(UInt32(0))
      + UserMemory.encode(UInt32(ports)) + UserMemory.encode(UInt32(0))
  }

  /// Each port's `struct serial_port`.
  public override func stopCopyData() -> [UInt8] { (0..<ports).flatMap { port[$0].bytes } }

  /// The header is checked once a write completes it: another magic, flags, version or
  /// port count fails that write with EFAULT (its bytes are kept, and never checked again).
  public override func checkResumeWrite(_ data: [UInt8], previousCount: Int) -> Errno? {
    guard previousCount < 24, data.count >= 24 else { return nil }
    func u32(_ offset: Int) -> UInt32 { UserMemory.decode(UInt32.self, from: data, offset: offset) }
    let valid = UserMemory.decode(UInt64.self, from: data) == Self.magic && u32(20) == 0 && u32(8) == 1 && u32(12) == 0 && u32(16) == UInt32(ports)
    return valid ? nil : .badAddress
  }

  /// The ports' registers and FIFOs, byte for byte: EINVAL for a stream shorter than
  /// ``resumeCapacity``.
  public override func loadState(_ data: [UInt8]) throws(Errno) {
    guard data.count >= resumeCapacity else { throw .invalidArgument }
    for index in 0..<ports { port[index] = Port(data[(24 + 36 * index)..<(60 + 36 * index)]) }
  }

  /// mtty's logging callbacks do nothing and report nothing.
  public override var hasDMALogging: Bool { true }

  /// The close drops both eventfds and the mode, and unmasks INTx; the registers, config
  /// space, remembered info and migration state stay (the data files are disabled).
  public override func didClose() {
    intxEventFD = nil
    msiEventFD = nil
    mode = .none
    intxMasked = false
  }

  private func forEachChunk(_ offset: UInt64, _ count: Int, _ body: (UInt64, Int) throws(Errno) -> Void) throws(Errno) {
    var position = offset
    var left = count
    while left > 0 {
      let width = left >= 4 && position % 4 == 0 ? 4 : left >= 2 && position % 2 == 0 ? 2 : 1
      try body(position, width)
      position &+= UInt64(width)
      left -= width
    }
  }

  private func writeConfig(_ offset: Int, _ chunk: [UInt8]) {
    switch offset {
    case 0x3C: config[0x3C] = chunk[0]
    case 0x10, 0x14:
      var value: UInt32 = 0
      for (index, byte) in chunk.prefix(4).enumerated() { value |= UInt32(byte) << (8 * UInt32(index)) }
      if offset == 0x14 && ports == 1 {
        value = 0
      } else {
        if value == 0xFFFF_FFFF { value &= 0xFFFF_FFF8 }  // the BAR's size mask: 8 bytes
        value |= UInt32(config[offset]) & 0x3
      }
      for byte in 0..<4 { config[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte))) }
    case 0x18, 0x1C, 0x20:
      for byte in 0..<4 { config[offset + byte] = 0 }
    default:
      break  // command, status, the pin and the rest: ignored
    }
  }

  // MARK: The UART

  private func writeRegister(_ index: Int, _ offset: Int, _ data: UInt8) {
    guard index < 2 else { return }  // (mtty would write past its two ports: never done)
    switch offset {
    case 0:
      if port[index].dlab {
        port[index].divisor |= UInt16(data)
        return
      }
      if port[index].count < port[index].maxFIFOSize {
        port[index].fifo[Int(port[index].head & 15)] = data  // (a resumed index past the FIFO stays in it)
        port[index].count &+= 1
        port[index].head = (port[index].head &+ 1) & 15
        port[index].overrun = false
        if port[index].registers[1] & 0x01 != 0 && port[index].count == port[index].triggerLevel { raiseInterrupt() }
      } else {
        port[index].overrun = true
        if port[index].registers[1] & 0x04 != 0 { raiseInterrupt() }
      }
    case 1:
      if port[index].dlab {
        port[index].divisor |= UInt16(data) << 8
        return
      }
      port[index].registers[1] = data
      if data & 0x02 != 0 && port[index].isEmpty { raiseInterrupt() }
    case 2:
      port[index].fcr = data
      if data & 0x06 != 0 {
        port[index].head = 0
        port[index].tail = 0
        port[index].count = 0
      }
      port[index].triggerLevel = 1
      port[index].maxFIFOSize = data & 0x01 != 0 ? 16 : 1
    case 3:
      port[index].registers[3] = data
      port[index].dlab = data & 0x80 != 0
      if port[index].dlab { port[index].divisor = 0 }
    case 4:
      port[index].registers[4] = data
      let modemInterrupts = port[index].registers[1] & 0x08 != 0
      if modemInterrupts && data & 0x08 != 0 { raiseInterrupt() }
      if modemInterrupts && data & 0x03 != 0 { raiseInterrupt() }
    case 7:
      port[index].registers[7] = data
    default:
      break  // LSR and MSR are read-only; past the 8 registers nothing
    }
  }

  private func readRegister(_ index: Int, _ offset: Int) -> UInt8 {
    guard index < 2 else { return 0 }
    let ier = port[index].registers[1]
    switch offset {
    case 0:
      if port[index].dlab { return UInt8(truncatingIfNeeded: port[index].divisor) }
      var data: UInt8 = 0
      if !port[index].isEmpty {
        data = port[index].fifo[Int(port[index].tail & 15)]
        port[index].count &-= 1
        port[index].tail = (port[index].tail &+ 1) & 15
      }
      if port[index].isEmpty && ier & 0x02 != 0 { raiseInterrupt() }
      return data
    case 1:
      return port[index].dlab ? UInt8(truncatingIfNeeded: port[index].divisor >> 8) : ier & 0x0F
    case 2:
      var codes: UInt8 = 0
      var pending = false
      if ier & 0x04 != 0 && port[index].overrun { codes |= 0x06; pending = true }
      if ier & 0x01 != 0 && port[index].count >= port[index].triggerLevel { codes |= 0x04; pending = true }
      if ier & 0x02 != 0 && port[index].isEmpty { codes |= 0x02; pending = true }
      if ier & 0x08 != 0 && port[index].registers[4] & 0x03 != 0 { pending = true }
      return 0xC0 | (pending ? codes : 0x01)
    case 3, 4, 7:
      return port[index].registers[offset]
    case 5:
      var status: UInt8 = port[index].isEmpty ? 0x60 : 0x01
      if port[index].overrun { status |= 0x02 }
      return status
    case 6:
      let full = port[index].registers[4] & 0x20 != 0 && port[index].count >= port[index].maxFIFOSize
      return full ? 0xA2 : 0xB3
    default:
      return 0
    }
  }
}
