import Iommufd
import SystemPackage
import Testing

/// Decoding VFIO capability chains from synthetic replies, including malformed ones.
@Suite("capability chains")
struct CapabilityChainTests {
  static func reply(_ size: Int, _ writes: [(Int, UInt64, Int)]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: size)
    for (offset, value, width) in writes {
      for index in 0..<width { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }
    return bytes
  }

  @Test("offset 0 means no chain")
  func empty() throws {
    #expect(try VFIOCapabilityChain.parse(Self.reply(32, []), firstOffset: 0, operation: .deviceGetRegionInfo, isRegion: true) == [])
  }

  @Test("an unknown capability keeps its id, version and payload up to the next one")
  func unknown() throws {
    let bytes = Self.reply(48, [(32, 9, 2), (34, 3, 2), (36, 0, 4), (40, 0xAABB, 2)])
    let chain = try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true)
    #expect(chain == [.other(id: 9, version: 3, payload: [0xBB, 0xAA, 0, 0, 0, 0, 0, 0])])
  }

  @Test("MSI-X mappable (id 3) is decoded, in a region chain only")
  func msixMappable() throws {
    let bytes = Self.reply(56, [(32, 3, 2), (34, 1, 2), (36, 40, 4), (40, 9, 2), (42, 1, 2), (44, 0, 4)])
    #expect(try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true) == [
      .msixMappable, .other(id: 9, version: 1, payload: Array(repeating: 0, count: 8)),
    ])
    #expect(try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetInfo) == [
      .other(id: 3, version: 1, payload: []), .other(id: 9, version: 1, payload: Array(repeating: 0, count: 8)),
    ])
  }

  @Test("device-info capabilities are not decoded as region ones")
  func deviceChain() throws {
    let bytes = Self.reply(40, [(24, 1, 2), (26, 1, 2), (28, 0, 4), (32, 7, 4)])
    let chain = try VFIOCapabilityChain.parse(bytes, firstOffset: 24, operation: .deviceGetInfo)
    #expect(chain == [.other(id: 1, version: 1, payload: [7, 0, 0, 0, 0, 0, 0, 0])])
  }

  @Test("a chain that loops is an EBADMSG error naming the offset")
  func loop() {
    let bytes = Self.reply(64, [(32, 9, 2), (36, 48, 4), (48, 9, 2), (52, 32, 4)])
    #expect(throws: IommufdError(.deviceGetRegionInfo, .badMessage, detail: "malformed capability chain: capability chain loops back to offset 32")) {
      try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true)
    }
  }

  @Test("a next offset past the reply is an error, never a read past it")
  func outOfBounds() {
    let bytes = Self.reply(40, [(32, 9, 2), (36, 400, 4)])
    #expect(throws: IommufdError(.deviceGetRegionInfo, .badMessage, detail: "malformed capability chain: capability at offset 400 lies outside the 40-byte reply")) {
      try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true)
    }
  }

  @Test("a sparse-mmap capability claiming more areas than it holds is an error")
  func truncatedSparse() {
    let bytes = Self.reply(56, [(32, 1, 2), (36, 0, 4), (40, 3, 4)])
    #expect(throws: IommufdError(.deviceGetRegionInfo, .badMessage, detail: "malformed capability chain: sparse mmap capability claims 3 areas in 16 bytes")) {
      try VFIOCapabilityChain.parse(bytes, firstOffset: 32, operation: .deviceGetRegionInfo, isRegion: true)
    }
  }
}
