import Iommufd
import Synchronization
import SystemPackage
import Testing

/// What the API encodes for each VFIO device request and how it decodes the replies.
@Suite("VFIO request encoding")
struct VFIOEncodingTests {
  /// Plays a bound edu-like device: dev_id 1, auto HWPT 3, BAR0 with a sparse mmap
  /// capability, config space, 5 IRQ indexes.
  static func device() -> RecordingSystemCalls {
    RecordingSystemCalls { request, argument throws(Errno) in
      switch request {
      case 0x3B81: store(UInt32(2), argument, 8)  // IOAS_ALLOC
      case 0x3B76: store(UInt32(1), argument, 12)  // BIND: out_devid
      case 0x3B77: if load(argument, 8, as: UInt32.self) == 2 { store(UInt32(3), argument, 8) }  // ATTACH to IOAS 2 -> HWPT 3
      case 0x3B6B:  // GET_INFO
        store(UInt32(0x2), argument, 4)
        store(UInt32(9), argument, 8)
        store(UInt32(5), argument, 12)
      case 0x3B6C:  // GET_REGION_INFO
        let index: UInt32 = load(argument, 8)
        let argsz: UInt32 = load(argument, 0)
        if index == 0 {
          let needed: UInt32 = 32 + 16 + 32 + 16
          store(UInt32(0xF), argument, 4)
          store(UInt64(0x10_0000), argument, 16)
          store(UInt64(0), argument, 24)
          guard argsz >= needed else {
            store(needed, argument, 0)
            return 0
          }
          store(UInt32(32), argument, 12)
          // sparse mmap at 32 -> next 80: two areas
          store(UInt16(1), argument, 32); store(UInt16(1), argument, 34); store(UInt32(80), argument, 36)
          store(UInt32(2), argument, 40)
          store(UInt64(0), argument, 48); store(UInt64(0x1000), argument, 56)
          store(UInt64(0x8000), argument, 64); store(UInt64(0x2000), argument, 72)
          // region type at 80, last
          store(UInt16(2), argument, 80); store(UInt16(1), argument, 82); store(UInt32(0), argument, 84)
          store(UInt32(0x8086_0000), argument, 88); store(UInt32(3), argument, 92)
        } else if index == 7 {
          store(UInt32(0x3), argument, 4)
          store(UInt64(256), argument, 16)
          store(UInt64(7) << 40, argument, 24)
        } else {
          throw .invalidArgument
        }
      case 0x3B6D:  // GET_IRQ_INFO
        let index: UInt32 = load(argument, 8)
        guard index < 5 else { throw .invalidArgument }
        store(index == 0 ? UInt32(0x7) : UInt32(0x9), argument, 4)
        store(UInt32(index == 2 ? 0 : 1), argument, 12)
      default: break
      }
      return 0
    }
  }

  @Test("BIND sends argsz 16, flags 0 and the iommufd number; the device id comes from out_devid")
  func bind() throws {
    let calls = Self.device()
    let backend = Backend(calls)
    let iommufd = try IOMMUFD.open(backend: backend)
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: backend)
    #expect(try device.bind(to: iommufd) == ObjectID(1))
    #expect(device.deviceID == ObjectID(1))
    let bind = calls.ioctls.last!
    #expect(bind.request == 0x3B76)
    #expect(bind.fd == device.fileDescriptor.rawValue)
    #expect(bind.bytes.count == 16)
    #expect(field(bind.bytes, 4, as: UInt32.self) == 0)
    #expect(field(bind.bytes, 8, as: Int32.self) == iommufd.fileDescriptor.rawValue)
  }

  @Test("ATTACH sends the IOAS id and returns the HWPT id written back; DETACH sends argsz 8")
  func attachDetach() throws {
    let calls = Self.device()
    let backend = Backend(calls)
    let iommufd = try IOMMUFD.open(backend: backend)
    let ioas = try iommufd.allocateIOAS()
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: backend)
    try device.bind(to: iommufd)
    #expect(try device.attach(to: ioas) == ObjectID(3))
    #expect(device.attachedPageTableID == ObjectID(3))
    let attach = calls.ioctls.last!
    #expect(attach.request == 0x3B77)
    #expect(attach.bytes.count == 12)
    try device.detach()
    #expect(device.attachedPageTableID == nil)
    let detach = calls.ioctls.last!
    #expect(detach.request == 0x3B78)
    #expect(detach.bytes == [8, 0, 0, 0, 0, 0, 0, 0])
  }

  @Test("an attached device keeps its IOAS alive: the IOAS is destroyed only after the device closes")
  func attachKeepsIOAS() throws {
    let calls = Self.device()
    let backend = Backend(calls)
    let iommufd = try IOMMUFD.open(backend: backend)
    var device: VFIODevice? = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: backend)
    do {
      let ioas = try iommufd.allocateIOAS()
      try device!.bind(to: iommufd)
      try device!.attach(to: ioas)
    }
    #expect(!calls.ioctls.contains { $0.request == 0x3B80 })
    let deviceFD = device!.fileDescriptor.rawValue
    device = nil
    let tail = calls.calls.suffix(2).map { $0.name == "ioctl" ? "destroy \(field($0.bytes, 4, as: UInt32.self))" : "\($0.name) \($0.fd)" }
    #expect(tail == ["close \(deviceFD)", "destroy 2"])
  }

  @Test("GET_INFO decodes flags, region and IRQ counts")
  func info() throws {
    let calls = Self.device()
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: Backend(calls))
    let info = try device.info()
    #expect(info == VFIODeviceInfo(flags: .pci, regionCount: 9, irqCount: 5, capabilities: []))
    #expect(field(calls.ioctls.last!.bytes, 0, as: UInt32.self) == 24)
  }

  @Test("GET_REGION_INFO asks again with the argsz the kernel wants and decodes the capability chain")
  func regionInfoWithCapabilities() throws {
    let calls = Self.device()
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: Backend(calls))
    let bar0 = try device.regionInfo(0)
    #expect(bar0.flags == [.readable, .writable, .mappable, .capabilities])
    #expect(bar0.size == 0x10_0000)
    #expect(bar0.capabilities == [
      .sparseMMap([VFIOSparseMMapArea(offset: 0, size: 0x1000), VFIOSparseMMapArea(offset: 0x8000, size: 0x2000)]),
      .regionType(type: 0x8086_0000, subtype: 3),
    ])
    #expect(bar0.mappableAreas.count == 2)
    let sizes = calls.ioctls.filter { $0.request == 0x3B6C }.map { field($0.bytes, 0, as: UInt32.self) }
    #expect(sizes == [32, 96])
  }

  @Test("region reads and writes go to region offset + offset; out-of-range access is refused")
  func regionAccess() throws {
    let calls = Self.device()
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: Backend(calls))
    let config = try device.regionInfo(VFIOPCIRegion.config)
    #expect(config.offset == 7 << 40)
    #expect(config.mappableAreas.isEmpty)
    try device.write(UInt16(0x0006), region: config, at: 4)
    #expect(calls.calls.last == .init(name: "pwrite \((7 << 40) + 4)", fd: device.fileDescriptor.rawValue, bytes: [6, 0]))
    // The recorder fills reads with the low byte of (offset + index).
    let value = try device.read(UInt32.self, region: config, at: 0)
    #expect(value == 0x0302_0100)
    let error = try #require(throws: IommufdError.self) { try device.read(UInt32.self, region: config, at: 254) }
    #expect(error.errno == .invalidArgument)
    #expect(error.detail == "4 bytes at 0xfe run past the region's 0x100 bytes")
    let mapError = try #require(throws: IommufdError.self) { try device.map(region: config) }
    #expect(mapError.operation == .regionMap)
    #expect(mapError.errno == .invalidArgument)
  }

  @Test("GET_IRQ_INFO decodes flags and count; an unknown index carries the kernel's EINVAL")
  func irqInfo() throws {
    let calls = Self.device()
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: Backend(calls))
    #expect(try device.irqInfo(VFIOPCIInterrupt.intx) == VFIOIRQInfo(index: 0, flags: [.eventFD, .maskable, .automasked], count: 1))
    #expect(try device.irqInfo(VFIOPCIInterrupt.msix) == VFIOIRQInfo(index: 2, flags: [.eventFD, .noResize], count: 0))
    let error = try #require(throws: IommufdError.self) { try device.irqInfo(7) }
    #expect(error.operation == .deviceGetIRQInfo)
    #expect(error.errno == .invalidArgument)
    #expect(error.objects.last == .irq(7))
  }

  @Test("SET_IRQS with eventfds sends DATA_EVENTFD|ACTION_TRIGGER, the range and each fd (-1 for none)")
  func setInterrupts() throws {
    let calls = Self.device()
    let backend = Backend(calls)
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: backend)
    let first = try EventFD(backend: backend)
    try device.setInterrupts(VFIOPCIInterrupt.msi, start: 0, eventFDs: [first, nil])
    let set = calls.ioctls.last!
    #expect(set.request == 0x3B6E)
    #expect(field(set.bytes, 0, as: UInt32.self) == 28)
    #expect(field(set.bytes, 4, as: UInt32.self) == (1 << 2) | (1 << 5))
    #expect(field(set.bytes, 8, as: UInt32.self) == 1)
    #expect(field(set.bytes, 12, as: UInt32.self) == 0)
    #expect(field(set.bytes, 16, as: UInt32.self) == 2)
    #expect(field(set.bytes, 20, as: Int32.self) == first.fileDescriptor.rawValue)
    #expect(field(set.bytes, 24, as: Int32.self) == -1)

    try device.perform(.unmask, interrupt: VFIOPCIInterrupt.intx)
    #expect(calls.ioctls.last!.bytes == [20, 0, 0, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    try device.disableInterrupts(VFIOPCIInterrupt.msi)
    #expect(calls.ioctls.last!.bytes == [20, 0, 0, 0, 0x21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
  }

  @Test("hardware info decodes VT-d, SMMUv3, AMD and Tegra241 CMDQV data")
  func hardwareInfoDecoding() {
    let vtd = IOMMUHardwareInfo(kind: .intelVTd, data: le(UInt32(1), UInt32(0), UInt64(0xAB), UInt64(0xCD)), capabilities: [], maxPASIDLog2: 0)
    #expect(vtd.vtdRegisters?.capability == 0xAB && vtd.vtdRegisters?.extendedCapability == 0xCD)
    #expect(vtd.smmuV3Registers == nil)
    let smmu = IOMMUHardwareInfo(
      kind: .armSMMUv3, data: le(UInt32(0), UInt32(0), UInt32(1), UInt32(2), UInt32(3), UInt32(4), UInt32(5), UInt32(6), UInt32(7), UInt32(8)),
      capabilities: .dirtyTracking, maxPASIDLog2: 20)
    #expect(smmu.smmuV3Registers?.idr == [1, 2, 3, 4, 5, 6])
    #expect(smmu.smmuV3Registers?.iidr == 7 && smmu.smmuV3Registers?.aidr == 8)
    #expect(smmu.vtdRegisters == nil)
    #expect(IOMMUHardwareInfo.Kind(rawValue: 9).description == "type 9")
    let amd = IOMMUHardwareInfo(kind: .amd, data: le(UInt64(0x1234_5678_9ABC), UInt64(0x42)), capabilities: [], maxPASIDLog2: 16)
    #expect(amd.amdRegisters?.extendedFeatures == 0x1234_5678_9ABC && amd.amdRegisters?.extendedFeatures2 == 0x42)
    #expect(amd.vtdRegisters == nil && vtd.amdRegisters == nil)
    let cmdqv = IOMMUHardwareInfo(kind: .tegra241CMDQV, data: le(UInt32(0), UInt8(1), UInt8(6), UInt8(4), UInt8(0)), capabilities: [], maxPASIDLog2: 0)
    #expect(cmdqv.tegra241Parameters?.version == 1 && cmdqv.tegra241Parameters?.log2VCMDQs == 6 && cmdqv.tegra241Parameters?.log2VSIDs == 4)
    #expect(smmu.tegra241Parameters == nil)
  }

  @Test("RESET is issued with no argument")
  func reset() throws {
    let calls = Self.device()
    let device = try VFIODevice.open("/dev/vfio/devices/vfio0", backend: Backend(calls))
    try device.reset()
    #expect(calls.ioctls.last == .init(name: "ioctl", fd: device.fileDescriptor.rawValue, request: 0x3B6F, bytes: []))
  }
}
