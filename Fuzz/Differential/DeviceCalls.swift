import CIommufd
import Iommufd

#if canImport(Glibc)
import Glibc
#endif

/// The device variant's calls on each side's VFIO device (an edu): bind to the side's
/// iommufd, attach and detach, device, region and IRQ info, SET_IRQS without eventfds, reset,
/// hot reset info and hot reset, and reads and writes of config space and of BAR0's
/// registers that do not start work.
extension CallMaker {
  /// A device call; with `bind`, mostly the bind (nothing else works before it).
  mutating func deviceCall(bind: Bool = false, choice: Int? = nil) -> Call {
    switch choice ?? (bind && random.chance(70) ? 0 : random.below(24)) {
    case 0, 1, 2:
      // Mostly this side's iommufd; now and then a bad descriptor, or a flag.
      let bad = random.chance(10)
      let flags = UInt32(random.chance(95) ? 0 : random.pick([1, 2, 0x8000_0000]))
      let argsz = UInt32(random.pick([16, 16, 16, 12, 24]))
      var call = Call(
        name: "VFIO_DEVICE_BIND_IOMMUFD argsz \(argsz) flags 0x\(String(flags, radix: 16))\(bad ? " fd -1" : "")", request: 0x3B76,
        argument: le(argsz, flags, Int32(-1), UInt32(0)) + (argsz > 16 ? le(UInt64(0)) : []), ignored: [],
        creates: .device(at: 12))
      call.onDevice = true
      if !bad { call.iommufdField = 8 }
      return call
    case 3, 4, 5:
      let pt = random.chance(60) ? ioasID() : pageTableID()
      let argsz = UInt32(random.pick([12, 12, 12, 8, 16]))
      let flags = UInt32(random.chance(90) ? 0 : 1)
      // With the PASID flag, mostly PASID 0: the RID through vfio's PASID path.
      let pasid = flags == 1 ? random.pick([UInt32(0), 0, 1, 1 << 20]) : 0
      var call = Call(
        name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT argsz \(argsz) flags \(flags) pt \(pt) pasid \(pasid)", request: 0x3B77,
        argument: le(argsz, flags, pt) + (argsz > 12 ? le(pasid) : []))
      call.onDevice = true
      return call
    case 6:
      let argsz = UInt32(random.pick([8, 8, 4, 12]))
      let flags = UInt32(argsz == 12 && random.chance(60) ? 1 : 0)
      var call = Call(
        name: "VFIO_DEVICE_DETACH_IOMMUFD_PT argsz \(argsz) flags \(flags)", request: 0x3B78,
        argument: le(argsz, flags) + (argsz > 8 ? le(UInt32(0)) : []))
      call.onDevice = true
      return call
    case 7:
      let argsz = UInt32(random.pick([24, 24, 16, 12]))
      var call = Call(name: "VFIO_DEVICE_GET_INFO argsz \(argsz)", request: 0x3B6B, argument: le(argsz) + [UInt8](repeating: 0, count: Int(argsz) - 4))
      call.onDevice = true
      return call
    case 8, 9:
      let index = UInt32(random.below(10))
      let argsz = UInt32(random.pick([32, 32, 16, 64]))
      // cap_offset (at 12) comes back as given where no chain follows.
      let given = UInt32(random.chance(30) ? 0xAB : 0)
      var call = Call(
        name: "VFIO_DEVICE_GET_REGION_INFO index \(index) argsz \(argsz) cap_offset \(given)", request: 0x3B6C,
        argument: le(argsz, UInt32(0), index) + (argsz >= 16 ? le(given) + [UInt8](repeating: 0, count: Int(argsz) - 16) : []))
      call.onDevice = true
      // A deliberate difference (Docs/Simulator.md): the simulator cannot trap loads and
      // stores, so its BARs are not mmap-able (VFIO_REGION_INFO_FLAG_MMAP, bit 2).
      if index < 6 { call.maskedBits = [(4, 0x04)] }
      return call
    case 10:
      let index = UInt32(random.below(6))
      let argsz = UInt32(random.pick([16, 16, 12]))
      var call = Call(
        name: "VFIO_DEVICE_GET_IRQ_INFO index \(index) argsz \(argsz)", request: 0x3B6D,
        argument: le(argsz, UInt32(0), index) + [UInt8](repeating: 0, count: Int(argsz) - 12))
      call.onDevice = true
      return call
    case 11:
      // SET_IRQS with data that names no eventfd: NONE, BOOL, or EVENTFD with -1 (no
      // eventfd: enable INTx without one, clear a vector, remove the unmask listener), -2,
      // or this side's iommufd (no eventfd: EINVAL); mostly one action, sometimes none or
      // two (no handler: ENOTTY). A count of 0 with NONE|TRIGGER disables the index.
      let action = UInt32(random.pick([0x20, 0x20, 0x20, 0x8, 0x10, 0, 0x18, 0x28]))
      let dataType = UInt32(random.pick([1, 1, 2, 4, 4]))
      let (index, start, count) = (UInt32(random.below(5)), UInt32(random.chance(80) ? 0 : 1), UInt32(random.below(3)))
      var payload: [UInt8] = []
      var descriptors = "none"
      var iommufdAt: Int?
      if dataType == 2 {
        payload = (0..<count).map { _ in UInt8(random.pick([0, 1, 1, 2])) }
        descriptors = "bools \(payload)"
      } else if dataType == 4 {
        let choices = (0..<count).map { _ in random.pick([-1, -1, -2, 0x7fff_fffe, 1000]) }
        for (offset, choice) in choices.enumerated() {
          // 1000 stands for this side's iommufd, filled in per side.
          if choice == 1000 && iommufdAt == nil { iommufdAt = 20 + offset * 4 }
          payload += le(Int32(choice == 1000 ? -1 : choice))
        }
        descriptors = "fds \(choices.map { $0 == 1000 ? "iommufd" : "\($0)" })"
      }
      let flags = dataType | action
      var call = Call(
        name: "VFIO_DEVICE_SET_IRQS flags 0x\(String(flags, radix: 16)) index \(index) start \(start) count \(count) \(descriptors)",
        request: 0x3B6E, argument: le(UInt32(20 + payload.count), flags, index, start, count) + payload)
      call.onDevice = true
      if let iommufdAt { call.iommufdField = iommufdAt }
      return call
    case 12:
      var call = Call(name: "VFIO_DEVICE_RESET", request: 0x3B6F, argument: nil)
      call.onDevice = true
      return call
    case 13, 14, 15:
      if random.chance(25) {
        // A BAR or ROM register written, then read back: vfio-pci's virtual registers
        // answer the value masked to the BAR's size, with its flags (all ones sizes it).
        let offset = Int64(random.pick([0x10, 0x10, 0x14, 0x18, 0x24, 0x30]))
        let value = random.chance(50) ? UInt32.max : UInt32(truncatingIfNeeded: random.next())
        var call = Call(name: "pwrite config 0x\(String(offset, radix: 16)) 0x\(String(value, radix: 16)), read back", request: 0, argument: nil)
        call.region = (7 << 40 | offset, 4, le(value))
        return call
      }
      // Config space (region 7): the standard header and the capabilities after it.
      let offset = Int64(random.below(64)) * 4 + (random.chance(10) ? Int64(random.below(4)) : 0)
      let count = random.pick([1, 2, 4, 4, 8])
      var call = Call(name: "pread config 0x\(String(offset, radix: 16)) count \(count)", request: 0, argument: nil)
      call.region = (7 << 40 | offset, count, nil)
      // What the machine decides differs by nature: the BAR addresses (0x10-0x27) and the
      // interrupt line (0x3c) the firmware assigned.
      for index in 0..<count {
        let position = Int(offset) + index
        if (0x10..<0x28).contains(position) || position == 0x3C { call.maskedBits.append((index, 0xFF)) }
      }
      return call
    case 16, 17:
      // BAR0 where it is stateless: the identification register, unimplemented offsets,
      // the end of the BAR and past it. (The other registers keep what earlier sequences
      // left in the real device.)
      let offset = Int64(random.pick([0, 0, 0x100, 0x1000, (1 << 20) - 4, 1 << 20]))
      let count = offset == 0 ? random.pick([4, 4, 2, 1]) : random.pick([4, 8, 2])
      var call = Call(name: "pread BAR0 0x\(String(offset, radix: 16)) count \(count)", request: 0, argument: nil)
      call.region = (offset, count, nil)
      return call
    case 18:
      // The liveness register, written then read back (the device answers the complement),
      // or a write past the BAR.
      let value = UInt32(truncatingIfNeeded: random.next())
      let offset = Int64(random.chance(85) ? 4 : 1 << 20)
      var call = Call(name: "pwrite BAR0 0x\(String(offset, radix: 16)) 0x\(String(value, radix: 16)), read back", request: 0, argument: nil)
      call.region = (offset, 4, le(value))
      return call
    case 20, 21:
      return featureCall(pci: true)
    case 22:
      // GET_PCI_HOT_RESET_INFO: the header's checks, then (edu on the root bus) ENODEV; on
      // an mdev ENOTTY.
      let argsz = UInt32(random.pick([12, 12, 28, 11, 0]))
      let flags = UInt32(random.chance(80) ? 0 : 1)
      var call = Call(
        name: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO argsz \(argsz) flags \(flags)", request: 0x3B70,
        argument: le(argsz, flags, UInt32(0)) + [UInt8](repeating: 0, count: max(0, Int(argsz) - 12)))
      call.onDevice = true
      return call
    case 23:
      // PCI_HOT_RESET: argsz and flags, a group count (a cdev passes none), then ENODEV.
      let count = UInt32(random.pick([0, 0, 0, 1, 2]))
      let argsz = UInt32(random.pick([12, 12, 11])) + 4 * count
      let flags = UInt32(random.chance(85) ? 0 : random.pick([1, 0x8000_0000]))
      var call = Call(
        name: "VFIO_DEVICE_PCI_HOT_RESET argsz \(argsz) flags 0x\(String(flags, radix: 16)) count \(count)", request: 0x3B71,
        argument: le(argsz, flags, count) + [UInt8](repeating: 0xFF, count: 4 * Int(count)))
      call.onDevice = true
      return call
    default:
      let device = deviceID()
      let capacity = random.pick([0, 16, 64])
      return Call(
        name: "GET_HW_INFO dev \(device) data_len \(capacity)", request: 0x3B8A,
        argument: le(UInt32(40), UInt32(0), device, UInt32(capacity), UInt64(0), UInt32(0), UInt32(0), UInt64(0)),
        buffers: capacity == 0 ? [] : [(16, [UInt8](repeating: 0xEE, count: capacity))])
    }
  }
}
