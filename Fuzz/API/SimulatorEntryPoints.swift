import Iommufd
import IommufdSimulator
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The entry points of the simulated kernel (its own API and its `SystemCalls` seam), the
/// device model API, backends, the kernel seam (on `/dev/null` and the fuzzer's own memory
/// only), and releases.
func simulatorEntryPoints() -> [EntryPoint] {
  [
    EntryPoint("SimulatedKernel.Release.init(kernelVersion:)", weight: 2) { f in
      let text = f.versionText()
      f.call(text.debugDescription) {
        if let release = SimulatedKernel.Release(kernelVersion: text) { _ = (release.description, release < .linux7_2) }
      }
      return true
    },
    EntryPoint("SimulatedKernel.devicePath(_:)", weight: 1) { f in
      let index = f.rng.hostileInt()
      f.call("\(index)") { _ = SimulatedKernel.devicePath(index) }
      return true
    },
    EntryPoint("SimulatedKernel properties", weight: 2) { f in
      f.call("pinnedPages, chargedPages, openFileCount, dmaFaults, configuration") {
        _ = (f.kernel.pinnedPages, f.kernel.chargedPages, f.kernel.openFileCount, f.kernel.dmaFaults.count, f.kernel.configuration.release)
      }
      return true
    },
    EntryPoint("SimulatedKernel.deviceRead(device:iova:into:)", weight: 5) { f in
      let device = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(2)
      let iova = f.iova()
      let count = f.hostile(20) ? f.rng.below(8193) : 1 &+ f.rng.below(64)
      f.call("device \(device) iova 0x\(hex(iova)) count \(count)") {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { buffer.deallocate() }
        _ = f.kernel.deviceRead(device: device, iova: iova, into: buffer)
      }
      return true
    },
    EntryPoint("SimulatedKernel.deviceWrite(device:iova:from:)", weight: 5) { f in
      let device = f.hostile(25) ? f.rng.hostileInt() : f.rng.below(2)
      let iova = f.iova()
      let bytes = f.rng.bytes(f.hostile(20) ? f.rng.below(8193) : 1 &+ f.rng.below(64))
      f.call("device \(device) iova 0x\(hex(iova)) count \(bytes.count)") {
        _ = bytes.withUnsafeBytes { f.kernel.deviceWrite(device: device, iova: iova, from: $0) }
      }
      return true
    },
    EntryPoint("SimulatedKernel.hostAddress(iommufd:ioas:iova:)", weight: 2) { f in
      let fd = f.seamDescriptor()
      let ioas = f.objectID(context: nil)
      let iova = f.iova()
      f.call("fd \(fd.rawValue) ioas \(ioas) iova 0x\(hex(iova))") { _ = f.kernel.hostAddress(iommufd: fd, ioas: ioas, iova: iova) }
      return true
    },
    EntryPoint("SimulatedKernel.injectFailure(at:after:errno:)", weight: 2) { f in
      let point = f.rng.element([SimulatedKernel.FaultPoint.ioctl, .objectAllocation, .pinning]) ?? .ioctl
      let n = f.hostile(40) ? f.rng.hostileInt() : 1 &+ f.rng.below(3)
      let errno = Errno(rawValue: f.hostile(30) ? Int32(truncatingIfNeeded: f.rng.hostileInt()) : (f.rng.element([12, 22, 14, 16]) ?? 12))
      f.call("\(point) after \(n) errno \(errno.rawValue)") { f.kernel.injectFailure(at: point, after: n, errno: errno) }
      return true
    },
    EntryPoint("SimulatedKernel.nthFailure", weight: 2) { f in
      let n = f.hostile(40) ? f.rng.hostileInt() : f.rng.below(4)
      f.call("set \(n), read back") {
        f.kernel.nthFailure = n
        _ = f.kernel.nthFailure
      }
      return true
    },
    EntryPoint("SimulatedKernel.init(configuration:devices:) with a hostile configuration", weight: 2) { f in
      let configuration = f.hostileConfiguration()
      let memory = f.userMemory()
      let steps = "open, allocateIOAS, iovaRanges, unsafeMap(\(memory.text)), open vfio0, bind, attach, hardwareInfo, edu DMA, unmapAll"
      f.call("\(configuration.text); then \(steps)") {
        let kernel = SimulatedKernel(configuration: configuration.value, devices: [SimulatedEduDevice()])
        let backend = Backend.simulated(kernel)
        let context = try IOMMUFD.open(backend: backend)
        let ioas = try context.allocateIOAS()
        _ = try ioas.iovaRanges()
        let iova = try ioas.unsafeMap(address: memory.address, length: memory.length)
        let device = try VFIODevice.open(SimulatedKernel.devicePath(0), backend: backend)
        let id = try device.bind(to: context)
        try device.attach(to: ioas)
        _ = try context.hardwareInfo(device: id)
        _ = try HWPageTable(on: ioas, forDevice: id, flags: .dirtyTracking)
        let bar = try device.regionInfo(0)
        try device.write(UInt64(iova), region: bar, at: 0x80)
        try device.write(UInt64(0x40000), region: bar, at: 0x88)
        try device.write(UInt64(64), region: bar, at: 0x90)
        try device.write(UInt64(1), region: bar, at: 0x98)
        _ = try ioas.unmapAll()
      }
      return true
    },

    // MARK: Mediated devices

    EntryPoint("SimulatedMediatedParent and the mdev bus: create, open, bind, attach, regions, interrupts, remove", weight: 4) { f in
      let capacity = f.hostile(30) ? f.rng.hostileInt() : 1 &+ f.rng.below(4)
      let cost = f.hostile(30) ? f.rng.hostileInt() : 1 &+ f.rng.below(2)
      let ports = f.hostile(30) ? f.rng.hostileInt() : 1 &+ f.rng.below(2)
      let type = f.hostile(30) ? f.path("mtty-2") : f.rng.bool() ? "mtty-1" : "fuzz-x"
      let offset = f.hostile(40) ? Int64(bitPattern: f.rng.hostileU64()) : Int64(f.rng.below(8)) | Int64(f.rng.element([0, 1, 7, 8]) ?? 0) << 40
      let count = f.hostile(30) ? Int(f.rng.hostileU32() % 65536) : 1 &+ f.rng.below(8)
      let irq = (index: f.hostile(30) ? f.rng.hostileInt() : f.rng.below(3), action: f.rng.element([0x20, 0x8, 0x10, 0x28, 0]) ?? 0x20)
      f.call("capacity \(capacity) cost \(cost) ports \(ports) type \(type.debugDescription) offset 0x\(hex(UInt64(bitPattern: offset))) count \(count) irq \(irq)") {
        let own = SimulatedMediatedParent(
          name: "fuzz", types: [.init(suffix: "x", name: "Fuzz", cost: cost, makeDevice: { SimulatedMttyDevice(ports: ports) })], capacity: capacity)
        let backend = Backend.simulated(SimulatedKernel(devices: [SimulatedEduDevice()], mediatedParents: [.mtty(), own]))
        let discovery = VFIODiscovery(backend: backend)
        _ = try discovery.mediatedDeviceTypes()
        let entry = try discovery.createMediatedDevice(ofType: type)
        defer { try? discovery.removeMediatedDevice(entry.id) }
        let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
        defer { try? device.close() }
        let context = try IOMMUFD.open(backend: backend)
        _ = try device.bind(to: context)
        _ = try device.attach(to: try context.allocateIOAS())
        _ = try device.info()
        var buffer = [UInt8](repeating: 0, count: count)
        _ = try? buffer.withUnsafeMutableBytes { try backend.calls.pread(device.fileDescriptor, into: $0, offset: offset) }
        _ = try? buffer.withUnsafeBytes { try backend.calls.pwrite(device.fileDescriptor, from: $0, offset: offset) }
        try device.reset()
        try? device.perform(irq.action == 0x8 ? .mask : .unmask, interrupt: irq.index)
        try device.disableInterrupts(irq.index)
      }
      return true
    },
    EntryPoint("VFIODevice features, migration and DMA logging on an mtty, hostile", weight: 4) { f in
      let feature = VFIODeviceFeature(rawValue: f.hostile(40) ? f.rng.hostileU16() : UInt16(f.rng.below(13)))
      let count = f.hostile(30) ? f.rng.hostileInt() : f.rng.below(24)
      let states = (0..<3).map { _ in VFIOMigrationState(rawValue: UInt32(f.rng.below(8)))! }
      let chunk = f.hostile(30) ? f.rng.hostileInt() : 1 &+ f.rng.below(64)
      let pageSize = f.hostile(40) ? f.rng.hostileU64() : UInt64(4096) << UInt64(f.rng.below(3))
      let ranges = (0..<f.rng.below(4)).map { _ in
        let start = f.hostile(40) ? f.rng.hostileU64() : UInt64(f.rng.below(16)) << 12
        let last = f.hostile(40) ? f.rng.hostileU64() : start &+ (UInt64(1 &+ f.rng.below(4)) << 12) &- 1
        return IOVARange(start: start, last: last)
      }
      let report = (iova: f.hostile(40) ? f.rng.hostileU64() : 0, length: f.hostile(40) ? f.rng.hostileU64() : 0x10000)
      f.call("feature \(feature) count \(count) states \(states) chunk \(chunk) page 0x\(hex(pageSize)) ranges \(ranges) report \(report)") {
        let backend = Backend.simulated(SimulatedKernel(mediatedParents: [.mtty()]))
        let discovery = VFIODiscovery(backend: backend)
        let entry = try discovery.createMediatedDevice(ofType: f.rng.bool() ? "mtty-1" : "mtty-2")
        defer { try? discovery.removeMediatedDevice(entry.id) }
        let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
        defer { try? device.close() }
        _ = try device.bind(to: try IOMMUFD.open(backend: backend))
        _ = try? device.support(for: feature)
        _ = try? device.feature(feature, count: count)
        _ = try? device.setFeature(feature, data: [UInt8](repeating: 0xA5, count: max(0, min(count, 64))))
        var streams: [VFIOMigrationStream] = []
        for state in states {
          if let stream = try? device.setMigrationState(state) { streams.append(stream) }
          for stream in streams {
            _ = try? stream.read(maximumBytes: chunk)
            _ = try? stream.write([UInt8](repeating: 0x4E, count: max(0, min(chunk, 128))))
            _ = try? stream.precopyInfo()
          }
        }
        _ = try? device.migrationDataSize()
        _ = try? device.startDMALogging(ranges: ranges, pageSize: pageSize)
        _ = try? device.dmaLoggingReport(iova: report.iova, length: report.length, pageSize: pageSize)
        try device.stopDMALogging()
        for stream in streams { try stream.close() }
      }
      return true
    },
    EntryPoint("writeFile to the mdev bus's create and remove with hostile bytes", weight: 2) { f in
      let bytes = f.hostile(50) ? f.rng.bytes(f.rng.below(80)) : Array(MediatedDeviceID.random().description.utf8)
      let removal = f.hostile(50) ? f.rng.bytes(f.rng.below(24)) : Array("1".utf8)
      f.call("create \(bytes.count) bytes, remove \(hex(removal))", expecting: .errno) {
        let kernel = SimulatedKernel(mediatedParents: [.mtty()])
        try kernel.writeFile("/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create", bytes: bytes)
        for name in try kernel.directoryEntries("/sys/bus/mdev/devices") {
          try kernel.writeFile(FilePath("/sys/bus/mdev/devices/\(name)/remove"), bytes: removal)
        }
      }
      return true
    },
    EntryPoint("SimulatedMediatedDevice DMA with hostile arguments, bound or not", weight: 2) { f in
      let iova = f.hostile(50) ? f.rng.hostileU64() : 0x10_0000
      let count = f.hostile(50) ? f.rng.hostileCount() : 1 &+ f.rng.below(64)
      let length = f.hostile(50) ? f.rng.hostileU64() : 4096
      f.call("iova 0x\(hex(iova)) count \(count) length 0x\(hex(length))", expecting: .errno) {
        let model = SimulatedMttyDevice(ports: 1)
        _ = try? model.dmaRead(at: iova, count: count)
        let parent = SimulatedMediatedParent(name: "one", types: [.init(suffix: "a", name: "One", makeDevice: { model })], capacity: 1)
        let backend = Backend.simulated(SimulatedKernel(mediatedParents: [parent]))
        let entry = try VFIODiscovery(backend: backend).createMediatedDevice(ofType: "one-a")
        let device = try VFIODevice.open(mediatedDevice: entry.id, backend: backend)
        let context = try IOMMUFD.open(backend: backend)
        _ = try device.bind(to: context)
        let ioas = try context.allocateIOAS()
        _ = try device.attach(to: ioas)
        let memory = try DMABuffer(length: 8192, backend: backend)
        let mapping = try ioas.map(memory, at: .fixed(0x10_0000))
        _ = try? model.dmaRead(at: iova, count: count)
        try? model.dmaWrite([UInt8](repeating: 0x5A, count: max(0, min(count, 1 << 16))), at: iova)
        if let pin = try? model.pin(at: iova, length: length, writable: f.rng.bool()) { try model.unpin(pin) }
        try? model.unpin(UInt32(truncatingIfNeeded: length))
        _ = mapping
        try device.close()
      }
      return true
    },

    // MARK: The seam of the simulated kernel

    EntryPoint("SimulatedKernel.open(_:flags:)", weight: 3) { f in
      let path = f.path(f.rng.bool() ? "/dev/iommu" : SimulatedKernel.devicePath(f.rng.below(2)).string)
      let flags = f.hostile(30) ? Int32(truncatingIfNeeded: f.rng.hostileInt()) : O_RDWR | O_CLOEXEC
      f.call("path \(path.debugDescription) flags 0x\(hex(UInt64(UInt32(bitPattern: flags))))", expecting: .errno) {
        f.pool.rawFDs.append(try f.kernel.open(FilePath(path), flags: flags))
      }
      return true
    },
    EntryPoint("SimulatedKernel.close(_:)", weight: 2) { f in
      // Only descriptors the fuzzer owns, or numbers that can be nothing open.
      let fd = !f.pool.rawFDs.isEmpty && !f.hostile(30)
        ? f.pool.rawFDs.remove(at: f.rng.below(f.pool.rawFDs.count))
        : FileDescriptor(rawValue: f.rng.element([-1, Int32.max, Int32.min, 1 << 20]) ?? -1)
      f.call("fd \(fd.rawValue)", expecting: .errno) { try f.kernel.close(fd) }
      return true
    },
    EntryPoint("SimulatedKernel.ioctl(_:_:_:)", weight: 12) { f in
      let fd = f.seamDescriptor()
      let request = f.ioctlRequest()
      let (argument, text) = f.ioctlArgument()
      f.call("fd \(fd.rawValue) request 0x\(hex(UInt64(request))) argument \(text)", expecting: .errno) {
        _ = try f.kernel.ioctl(fd, request, argument)
      }
      return true
    },
    EntryPoint("SimulatedKernel.mmap(length:protection:flags:fd:offset:)", weight: 2) { f in
      let length = f.hostile(40) ? f.rng.hostileCount() : 4096 &* (1 &+ f.rng.below(4))
      let fd: FileDescriptor? = f.rng.chance(50) ? nil : f.seamDescriptor()
      let offset = Int64(truncatingIfNeeded: f.hostile(40) ? f.rng.hostileInt() : 0)
      let flags = (f.rng.bool() ? MAP_SHARED : MAP_PRIVATE) | (fd == nil ? MAP_ANONYMOUS : 0)
      f.call("length \(length) fd \(fd.map { "\($0.rawValue)" } ?? "nil") offset \(offset) flags 0x\(hex(UInt64(flags)))", expecting: .errno) {
        let address = try f.kernel.mmap(length: length, protection: PROT_READ | PROT_WRITE, flags: flags, fd: fd, offset: offset)
        try f.kernel.munmap(address, length: length)
      }
      return true
    },
    EntryPoint("SimulatedKernel.pread(_:into:offset:)", weight: 4) { f in
      let fd = f.seamDescriptor()
      let count = 1 &+ f.rng.below(f.hostile(20) ? 4096 : 8)
      let offset = Int64(truncatingIfNeeded: f.hostile(40) ? Int(truncatingIfNeeded: f.rng.hostileU64()) : f.rng.below(0x100))
      f.call("fd \(fd.rawValue) count \(count) offset 0x\(hex(UInt64(bitPattern: offset)))", expecting: .errno) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { buffer.deallocate() }
        _ = try f.kernel.pread(fd, into: buffer, offset: offset)
      }
      return true
    },
    EntryPoint("SimulatedKernel.pwrite(_:from:offset:)", weight: 4) { f in
      let fd = f.seamDescriptor()
      let bytes = f.rng.bytes(1 &+ f.rng.below(f.hostile(20) ? 4096 : 8))
      let offset = Int64(truncatingIfNeeded: f.hostile(40) ? Int(truncatingIfNeeded: f.rng.hostileU64()) : f.rng.below(0x100))
      let shown = "\(hex(Array(bytes.prefix(16)))) (\(bytes.count))"
      f.call("fd \(fd.rawValue) bytes \(shown) offset 0x\(hex(UInt64(bitPattern: offset)))", expecting: .errno) {
        _ = try bytes.withUnsafeBytes { try f.kernel.pwrite(fd, from: $0, offset: offset) }
      }
      return true
    },
    EntryPoint("SimulatedKernel.read(_:into:)", weight: 3) { f in
      let fd = f.seamDescriptor()
      let count = f.rng.below(f.hostile(30) ? 8192 : 128)
      f.call("fd \(fd.rawValue) count \(count)", expecting: .errno) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { buffer.deallocate() }
        _ = try f.kernel.read(fd, into: buffer)
      }
      return true
    },
    EntryPoint("SimulatedKernel.write(_:from:)", weight: 3) { f in
      let fd = f.seamDescriptor()
      let bytes = f.rng.bytes(f.rng.below(f.hostile(30) ? 512 : 17))
      f.call("fd \(fd.rawValue) bytes \(hex(Array(bytes.prefix(32)))) (\(bytes.count))", expecting: .errno) {
        _ = try bytes.withUnsafeBytes { try f.kernel.write(fd, from: $0) }
      }
      return true
    },
    EntryPoint("SimulatedKernel.eventfd(initialValue:flags:)", weight: 1) { f in
      let value = f.rng.hostileU32()
      let flags = f.hostile(30) ? Int32(truncatingIfNeeded: f.rng.hostileInt()) : O_CLOEXEC
      f.call("initial \(value) flags 0x\(hex(UInt64(UInt32(bitPattern: flags))))", expecting: .errno) {
        f.realFDs.append(try f.kernel.eventfd(initialValue: value, flags: flags))
      }
      return true
    },

    // MARK: Device models

    EntryPoint("SimulatedPCIDevice.writeConfig(offset:bytes:)", weight: 3) { f in
      guard let device = f.fuzzDevice else { return false }
      let offset = f.hostile(40) ? f.rng.hostileInt() : f.rng.below(256)
      let bytes = f.rng.bytes(f.rng.below(9))
      f.call("fuzz device offset \(offset) bytes \(hex(bytes))") { device.writeConfig(offset: offset, bytes: bytes) }
      return true
    },
    EntryPoint("SimulatedPCIDevice.reset()", weight: 1) { f in
      guard let device = f.fuzzDevice else { return false }
      f.call("fuzz device") { device.reset() }
      return true
    },
    EntryPoint("SimulatedPCIDevice properties", weight: 1) { f in
      guard let device = f.fuzzDevice else { return false }
      f.call("fuzz device busMasterEnabled, msiEnabled, bars, config") {
        _ = (device.busMasterEnabled, device.msiEnabled, device.bars.count, device.config.count, device.msiCount, device.reservedRegions)
      }
      return true
    },
    EntryPoint("SimulatedEduDevice.init(dmaDelay:) and buffer", weight: 1) { f in
      let delay: Duration? = f.rng.chance(30) ? nil : .init(secondsComponent: Int64(f.rng.hostileInt()), attosecondsComponent: Int64(f.rng.hostileInt()))
      f.call("delay \(delay.map { "\($0)" } ?? "none")") { _ = SimulatedEduDevice(dmaDelay: delay).buffer.count }
      return true
    },
    EntryPoint("SimulatedPCIDevice.MSIX.init(vectors:tableBAR:tableOffset:pbaBAR:pbaOffset:dynamicAllocation:)", weight: 1) { f in
      let (vectors, bar, offset) = (f.rng.hostileInt(), f.rng.hostileInt(), f.rng.hostileU64())
      let (pbaBAR, pbaOffset) = (f.rng.chance(50) ? f.rng.hostileInt() : nil, f.rng.chance(50) ? f.rng.hostileU64() : nil)
      f.call("vectors \(vectors) bar \(bar) offset 0x\(hex(offset)) pba \(pbaBAR.map(String.init) ?? "nil") 0x\(pbaOffset.map(hex) ?? "nil")") {
        _ = SimulatedPCIDevice.MSIX(vectors: vectors, tableBAR: bar, tableOffset: offset, pbaBAR: pbaBAR, pbaOffset: pbaOffset)
      }
      return true
    },
    EntryPoint("SimulatedPCIDevice.memory(ofBAR:) and msixEnabled", weight: 1) { f in
      guard let device = f.fuzzDevice else { return false }
      let bar = f.hostile(50) ? f.rng.hostileInt() : f.rng.below(6)
      f.call("fuzz device bar \(bar)") {
        if let memory = device.memory(ofBAR: bar), memory.count > 0 { memory[memory.count - 1] = 0x5A }
        _ = device.msixEnabled
      }
      return true
    },
    EntryPoint("SimulatedBus via the fuzz device's registers", weight: 8) { f in
      guard let device = f.pick(f.pool.devices.filter { $0.value.path == SimulatedKernel.devicePath(1) }) else { return false }
      let operation = UInt64(f.rng.below(7))
      let a = f.rng.chance(50) ? f.iova() : f.rng.hostileU64()
      let b = f.rng.chance(50) ? UInt64(f.rng.below(4097)) : UInt64(bitPattern: Int64(f.rng.hostileCount()))
      let c = f.rng.next()
      let names = [
        "dmaRead(iova:count:)", "dmaWrite(iova:bytes:)", "recordFault(iova:length:isWrite:reason:)", "raiseInterrupt(index:vector:)",
        "a reply of the wrong size", "lowerInterrupt()", "schedule(after:) of raiseInterrupt(index:vector:)",
      ]
      let name = names[Int(operation)]
      f.call("\(device.label) \(name) a 0x\(hex(a)) b 0x\(hex(b)) c 0x\(hex(c))") {
        let bar = try device.value.regionInfo(0)
        try device.value.write(a, region: bar, at: 0x00)
        try device.value.write(b, region: bar, at: 0x08)
        try device.value.write(c, region: bar, at: 0x10)
        try device.value.write(operation, region: bar, at: 0x18)
        _ = try device.value.read(UInt64.self, region: bar, at: 0x20)
      }
      return true
    },

    // MARK: Backends and the kernel seam

    EntryPoint("Backend.init(_:logger:reason:)", weight: 1) { f in
      f.call("over the sequence's kernel") {
        let backend = Backend(f.kernel, reason: "fuzz")
        f.pool.backends.append(Held(value: backend, label: f.pool.label("backend"), context: nil))
      }
      return true
    },
    EntryPoint("Backend.simulated(_:logger:) and simulator", weight: 1) { f in
      f.call("over the sequence's kernel") { _ = Backend.simulated(f.kernel).simulator?.openFileCount }
      return true
    },
    EntryPoint("Backend.automatic(simulating:logger:)", weight: 1) { f in
      f.call("simulating an edu device") {
        // On a host with /dev/iommu this is the kernel: only looked at, never used.
        let backend = Backend.automatic(simulating: [SimulatedEduDevice()])
        _ = (backend.reason, backend.simulator?.openFileCount)
      }
      return true
    },
    EntryPoint("KernelSystemCalls on /dev/null and the fuzzer's memory", weight: 3) { f in
      let operation = f.rng.below(7)
      let request = f.ioctlRequest()
      let (argument, text) = f.ioctlArgument()
      let offset = Int64(truncatingIfNeeded: f.rng.hostileInt())
      let length = f.rng.chance(50) ? f.rng.hostileCount() : 4096
      let names = ["open and close", "ioctl", "mmap and munmap", "pread", "pwrite", "read and write", "eventfd"]
      f.call("\(names[operation]) request 0x\(hex(UInt64(request))) argument \(text) offset \(offset) length \(length)", expecting: .errno) {
        let calls = KernelSystemCalls()
        let fd = try calls.open(FilePath(f.rng.chance(80) ? "/dev/null" : "/nonexistent/\(f.sequence)"), flags: O_RDWR | O_CLOEXEC)
        defer { try? calls.close(fd) }
        var byte: UInt8 = 0
        switch operation {
        case 1: _ = try calls.ioctl(fd, request, argument)
        case 2:
          let address = try calls.mmap(length: length, protection: PROT_READ, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: nil, offset: 0)
          try calls.munmap(address, length: length)
        case 3: _ = try withUnsafeMutableBytes(of: &byte) { try calls.pread(fd, into: $0, offset: offset) }
        case 4: _ = try withUnsafeBytes(of: byte) { try calls.pwrite(fd, from: $0, offset: offset) }
        case 5:
          _ = try withUnsafeMutableBytes(of: &byte) { try calls.read(fd, into: $0) }
          _ = try withUnsafeBytes(of: byte) { try calls.write(fd, from: $0) }
        case 6: try calls.close(try calls.eventfd(initialValue: UInt32(truncatingIfNeeded: offset), flags: O_CLOEXEC))
        default: break
        }
      }
      return true
    },
    EntryPoint("release of a handle (deinit)", weight: 6) { f in
      let kind = f.rng.below(Pool.kindCount)
      f.call("drops one of kind \(kind)") { f.pool.dropOne(kind: kind, &f.rng) }
      return true
    },
    // Made by every sequence's setup, with the machine's configuration: never chosen.
    EntryPoint(
      "SimulatedPCIDevice.init(vendorID:deviceID:classCode:revision:bars:msiCount:msix:supportsReset:reservedRegions:)", weight: 0
    ) { _ in false },
    EntryPoint("SimulatedRootPort.init(functions:isolatedFunctions:)", weight: 0) { _ in false },
    EntryPoint("SimulatedKernel.init(configuration:devices:rootPorts:)", weight: 0) { _ in false },
    EntryPoint("end of sequence: release of every handle", weight: 0) { _ in false },
  ]
}

extension Pool {
  /// Drops one handle of kind `kind` (as ``release(order:)`` numbers them).
  func dropOne(kind: Int, _ rng: inout SplitMix64) {
    /// Removes a random element of `items`.
    func drop<T>(_ items: inout [Held<T>]) {
      if !items.isEmpty { items.remove(at: rng.below(items.count)) }
    }
    switch kind {
    case 0: drop(&contexts)
    case 1: drop(&ioases)
    case 2: drop(&hwpts)
    case 3: drop(&nested)
    case 4: drop(&faultQueues)
    case 5: drop(&viommus)
    case 6: drop(&vdevices)
    case 7: drop(&veventqs)
    case 8: drop(&hwQueues)
    case 9: drop(&mocks)
    case 10: drop(&devices)
    case 11: drop(&buffers)
    case 12: drop(&mappings)
    case 13: drop(&eventFDs)
    case 14: drop(&containers)
    case 15: drop(&groups)
    case 16: drop(&sessions)
    case 17: drop(&edus)
    case 18: drop(&backends)
    case 19: drop(&regions)
    case 20: drop(&guestMemories)
    case 21: drop(&deviceIDs)
    case 22: drop(&accesses)
    default: drop(&pins)
    }
  }
}

extension Fuzzer {
  /// A descriptor for seam calls: one of the simulated files the sequence opened, or a
  /// number that can be nothing open (never a real descriptor of the process, which the
  /// seam would pass to the kernel).
  func seamDescriptor() -> FileDescriptor {
    var simulated: [Int32] = pool.rawFDs.map(\.rawValue)
    simulated += pool.contexts.map { $0.value.fileDescriptor.rawValue }
    simulated += pool.devices.map { $0.value.fileDescriptor.rawValue }
    simulated += pool.faultQueues.map { $0.value.fileDescriptor.rawValue }
    simulated += pool.veventqs.map { $0.value.fileDescriptor.rawValue }
    let open = simulated.filter { kernelOwns($0) }
    if !hostile(20), let chosen = rng.element(open) { return FileDescriptor(rawValue: chosen) }
    return FileDescriptor(rawValue: rng.element([-1, Int32.max, Int32.min, 1 << 20]) ?? -1)
  }

  /// Whether `fd` may be a simulated file: the simulator's descriptors are `/dev/null`
  /// placeholders, and one closed since may have been reused by a real file.
  func kernelOwns(_ fd: Int32) -> Bool { isDevNull(fd) }

  /// Whether `fd` is open on `/dev/null` (what the simulator's descriptors are).
  func isDevNull(_ fd: Int32) -> Bool {
    var status = stat()
    guard fstat(fd, &status) == 0 else { return false }
    var null = stat()
    guard stat("/dev/null", &null) == 0 else { return false }
    return status.st_rdev == null.st_rdev && (status.st_mode & S_IFMT) == S_IFCHR
  }

  /// An ioctl request: an iommufd or VFIO request number, or any number of their type
  /// (`;`): only those, because a request the simulator does not own reaches the kernel,
  /// on `/dev/null`, which answers ENOTTY to every request of that type.
  func ioctlRequest() -> UInt {
    if hostile(15) { return (UInt(truncatingIfNeeded: rng.next()) & ~0xFF00) | 0x3B00 }
    let numbers: [UInt] = Array(0x64...0x76) + Array(0x80...0x94) + [0xA0]
    return 0x3B00 | (rng.element(numbers) ?? 0x80)
  }

  /// An ioctl argument: nil, an address no page can be at, or the arena's argument area
  /// filled with sizes, flags, ids and pointers (into the arena, or nowhere).
  func ioctlArgument() -> (UnsafeMutableRawPointer?, String) {
    switch rng.below(10) {
    case 0: return (nil, "nil")
    case 1: return (UnsafeMutableRawPointer(bitPattern: 0x2000), "0x2000")
    case 2: return (UnsafeMutableRawPointer(bitPattern: UInt(1) << 63), "0x8000000000000000")
    default:
      let area = arena.argumentArea
      var words: [UInt64] = []
      for index in 0..<32 {
        let word: UInt64
        switch rng.below(6) {
        case 0: word = rng.hostileU64()
        case 1: word = arena.address(Arena.dmaSize &+ 1024 &+ rng.below(2048) &* 8)
        case 2: word = UInt64(rng.below(16))
        case 3: word = UInt64(rng.hostileU32()) | (UInt64(rng.hostileU32()) << 32)
        case 4: word = rng.element(pool.ids).map { UInt64($0.rawValue) | (UInt64(rng.below(8)) << 32) } ?? 0
        default: word = 0
        }
        words.append(word)
        area.storeBytes(of: word, toByteOffset: index &* 8, as: UInt64.self)
      }
      // The first word starts with the struct size: mostly plausible.
      let size = hostile(30) ? rng.hostileU32() : UInt32(rng.element([8, 12, 16, 24, 32, 40, 48, 56, 64, 72, 80, 96, 0, 4]) ?? 24)
      area.storeBytes(of: size, toByteOffset: 0, as: UInt32.self)
      words[0] = (words[0] & ~0xFFFF_FFFF) | UInt64(size)
      return (area, "arena args [\(words.map { hex($0) }.joined(separator: " "))]")
    }
  }

  /// A kernel version string for `SimulatedKernel.Release(kernelVersion:)`.
  func versionText() -> String {
    let pieces = [
      "6", "12", "7", "2", ".", "-", "+", "rc1", "9223372036854775807", "99999999999999999999", "\u{663}", "0", "deb13",
      "-9223372036854775808", " ", "\u{1F4A3}",
    ]
    let whole = [
      "6.12.117", "7.2.12+deb13-amd64", "6.12", "7.2", "", "9223372036854775807.1", "1.9223372036854775807", "92233720368547758.7",
    ]
    if rng.chance(30) { return rng.element(whole) ?? "" }
    var text = ""
    for _ in 0..<rng.below(8) { text += rng.element(pieces) ?? "" }
    return text
  }

  /// A simulator configuration with hostile values.
  func hostileConfiguration() -> (value: SimulatedKernel.Configuration, text: String) {
    var configuration = SimulatedKernel.Configuration()
    let sizes: [UInt64] = [4096, 0, 1, 3, 8192, 65536, 1 << 63, .max, 4095, 2 << 20]
    configuration.release = rng.bool() ? .linux6_12 : .linux7_2
    configuration.pageSize = rng.chance(50) ? 4096 : rng.element(sizes) ?? 4096
    configuration.hugePageSize = rng.chance(50) ? 2 << 20 : rng.element(sizes) ?? 0
    configuration.ioPageSize = rng.chance(50) ? 4096 : rng.element(sizes) ?? 0
    configuration.apertureLast = rng.chance(50) ? (1 << 39) - 1 : rng.hostileU64()
    configuration.memoryLockLimit = rng.chance(50) ? nil : rng.hostileU64()
    configuration.canLockMemory = rng.bool()
    configuration.canChangeAccounting = rng.bool()
    configuration.vtdFlags = rng.hostileU32()
    configuration.vtdCapability = rng.hostileU64()
    configuration.vtdExtendedCapability = rng.hostileU64()
    configuration.vtdDirtyTracking = rng.bool()
    configuration.selfTest = rng.chance(20)
    configuration.mockDevices = rng.chance(80)
    let memoryLock = configuration.memoryLockLimit.map { "0x" + hex($0) } ?? "nil"
    let text = "release \(configuration.release) page 0x\(hex(configuration.pageSize)) huge 0x\(hex(configuration.hugePageSize)) "
      + "io page 0x\(hex(configuration.ioPageSize)) aperture last 0x\(hex(configuration.apertureLast)) memlock \(memoryLock) "
      + "lock \(configuration.canLockMemory) accounting \(configuration.canChangeAccounting) "
      + "vtd 0x\(hex(UInt64(configuration.vtdFlags))) 0x\(hex(configuration.vtdCapability)) 0x\(hex(configuration.vtdExtendedCapability)) "
      + "dirty \(configuration.vtdDirtyTracking) self-test \(configuration.selfTest) mock devices \(configuration.mockDevices)"
    return (configuration, text)
  }
}
