import CIommufd
import Iommufd

/// The mdev variant's calls on each side's mediated device (an mtty instance): the cdev
/// requests every VFIO device takes (bind, attach, detach, device, region and IRQ info,
/// SET_IRQS without eventfds, reset), and reads and writes of its config space and of its
/// serial ports' registers, kept where mtty answers from its own state (it copies whatever
/// its memory holds past its buffers, and leaves the byte of an empty receive FIFO unset).
extension CallMaker {
  /// A call on the mediated device; with `bind`, mostly the bind.
  mutating func mediatedCall(bind: Bool) -> Call {
    // mtty answers interrupt requests only once GET_INFO was asked: ask it early, mostly.
    if !bind, !mediatedInfoAsked, random.chance(50) {
      mediatedInfoAsked = true
      return deviceCall(choice: 7)
    }
    let choice = bind && random.chance(70) ? 0 : random.below(32)
    switch choice {
    case 0...12:
      return deviceCall(choice: choice)
    case 13...16:
      // Config space below its 0xff bytes, in mtty's chunks of 4, 2 and 1.
      let count = random.pick([1, 2, 4, 4, 8])
      let offset = Int64(random.below(0xFF - count + 1))
      var call = Call(name: "pread config 0x\(String(offset, radix: 16)) count \(count)", request: 0, argument: nil)
      call.region = (7 << 40 | offset, count, nil)
      return call
    case 17, 18:
      // A register of the header, written in 4 bytes (mtty reads 4 bytes of any write to
      // the BARs), then read back: BAR sizing, the interrupt line, and ignored ones.
      let offset = Int64(random.pick([0x04, 0x10, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30, 0x3C, 0x40]))
      let value = random.chance(40) ? UInt32.max : UInt32(truncatingIfNeeded: random.next())
      var call = Call(name: "pwrite config 0x\(String(offset, radix: 16)) 0x\(String(value, radix: 16)), read back", request: 0, argument: nil)
      call.region = (7 << 40 | offset, 4, le(value))
      return call
    case 19...21:
      // One byte of a port's registers (mtty fills only the first byte of a read). The
      // receive buffer's byte is unset when the FIFO is empty: not compared (its effect,
      // the pop, shows in the line status read after it).
      let (index, offset) = (Int64(random.below(2)), Int64(random.below(8)))
      var call = Call(name: "pread BAR\(index) register \(offset)", request: 0, argument: nil)
      call.region = (index << 40 | offset, 1, nil)
      if offset == 0 { call.maskedBits = [(0, 0xFF)] }
      return call
    case 22...24:
      // A byte written to a port's register (transmit, interrupt enable, FIFO control, line
      // control with or without DLAB, modem control, scratch), then read back.
      let (index, offset) = (Int64(random.below(2)), Int64(random.pick([0, 0, 1, 2, 3, 3, 4, 5, 7])))
      let value = UInt8(truncatingIfNeeded: random.chance(30) ? random.pick([0x80, 0x03, 0x0F, 0x07, 0x01, 0x02, 0x08]) : Int(random.next() & 0xFF))
      var call = Call(name: "pwrite BAR\(index) register \(offset) 0x\(String(value, radix: 16)), read back", request: 0, argument: nil)
      call.region = (index << 40 | offset, 1, [value])
      if offset == 0 { call.maskedBits = [(0, 0xFF)] }
      return call
    case 26...29:
      return featureCall(pci: false)
    case 30, 31:
      return deviceCall(choice: choice - 8)  // hot reset info and hot reset: ENOTTY on an mdev
    default:
      // Regions mtty does not serve: the ROM, VGA and past the last (EFAULT).
      let index = Int64(random.pick([6, 8, 9, 40]))
      var call = Call(name: "pread region \(index) count 1", request: 0, argument: nil)
      call.region = (index << 40, 1, nil)
      return call
    }
  }
}
