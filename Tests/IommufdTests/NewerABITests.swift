import CIommufd
import Foundation
import Testing

/// The requests added after Linux 6.12, as Swift sees them, against the Linux 7.2 uAPI
/// headers (`make headers_install` of Debian's linux-source-7.2, `Lab/lab.sh headers --kernel 7.2`).
@Suite("ABI after 6.12")
struct NewerABITests {
  typealias Layout = ABITests.Layout

  static let layouts: [Layout] = [
    ABITests.layout("iommu_ioas_map_file", ciommufd_iommu_ioas_map_file.self, [
      ("size", \.size), ("flags", \.flags), ("ioas_id", \.ioas_id), ("fd", \.fd), ("start", \.start), ("length", \.length),
      ("iova", \.iova)]),
    ABITests.layout("iommu_viommu_alloc", ciommufd_iommu_viommu_alloc.self, [
      ("size", \.size), ("flags", \.flags), ("type", \.type), ("dev_id", \.dev_id), ("hwpt_id", \.hwpt_id),
      ("out_viommu_id", \.out_viommu_id), ("data_len", \.data_len), ("__reserved", \.__reserved), ("data_uptr", \.data_uptr)]),
    ABITests.layout("iommu_vdevice_alloc", ciommufd_iommu_vdevice_alloc.self, [
      ("size", \.size), ("viommu_id", \.viommu_id), ("dev_id", \.dev_id), ("out_vdevice_id", \.out_vdevice_id), ("virt_id", \.virt_id)]),
    ABITests.layout("iommu_ioas_change_process", ciommufd_iommu_ioas_change_process.self, [("size", \.size), ("__reserved", \.__reserved)]),
    ABITests.layout("iommu_veventq_alloc", ciommufd_iommu_veventq_alloc.self, [
      ("size", \.size), ("flags", \.flags), ("viommu_id", \.viommu_id), ("type", \.type), ("veventq_depth", \.veventq_depth),
      ("out_veventq_id", \.out_veventq_id), ("out_veventq_fd", \.out_veventq_fd), ("__reserved", \.__reserved)]),
    ABITests.layout("iommufd_vevent_header", ciommufd_iommufd_vevent_header.self, [("flags", \.flags), ("sequence", \.sequence)]),
    ABITests.layout("iommu_vevent_arm_smmuv3", ciommufd_iommu_vevent_arm_smmuv3.self, [("evt", \.evt)]),
    ABITests.layout("iommu_hw_queue_alloc", ciommufd_iommu_hw_queue_alloc.self, [
      ("size", \.size), ("flags", \.flags), ("viommu_id", \.viommu_id), ("type", \.type), ("index", \.index),
      ("out_hw_queue_id", \.out_hw_queue_id), ("nesting_parent_iova", \.nesting_parent_iova), ("length", \.length)]),
    ABITests.layout("vfio_device_attach_iommufd_pt", ciommufd_vfio_device_attach_iommufd_pt_pasid.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("pt_id", \.pt_id), ("pasid", \.pasid)]),
    ABITests.layout("vfio_device_detach_iommufd_pt", ciommufd_vfio_device_detach_iommufd_pt_pasid.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("pasid", \.pasid)]),
  ]

  static let ioctls: [(String, Int32)] = [
    ("IOMMU_IOAS_MAP_FILE", CIOMMUFD_IOMMU_IOAS_MAP_FILE), ("IOMMU_VIOMMU_ALLOC", CIOMMUFD_IOMMU_VIOMMU_ALLOC),
    ("IOMMU_VDEVICE_ALLOC", CIOMMUFD_IOMMU_VDEVICE_ALLOC), ("IOMMU_IOAS_CHANGE_PROCESS", CIOMMUFD_IOMMU_IOAS_CHANGE_PROCESS),
    ("IOMMU_VEVENTQ_ALLOC", CIOMMUFD_IOMMU_VEVENTQ_ALLOC), ("IOMMU_HW_QUEUE_ALLOC", CIOMMUFD_IOMMU_HW_QUEUE_ALLOC),
  ]

  /// The exported 7.2 uAPI headers: `IOMMUFD_UAPI_HEADERS_7_2`, else the lab's cache.
  static let headers: String? = {
    let candidates = [ProcessInfo.processInfo.environment["IOMMUFD_UAPI_HEADERS_7_2"], "/var/cache/swift-iommufd/uapi-7.2/include"]
    return candidates.compactMap { $0 }.first { FileManager.default.fileExists(atPath: $0 + "/linux/iommufd.h") }
  }()

  static let missing = "needs the Linux 7.2 uAPI headers (run `bash Scripts/test.sh`, or set IOMMUFD_UAPI_HEADERS_7_2) and a C compiler"

  @Test("struct sizes of the requests after 6.12 match the ABI facts of Linux 7.2")
  func sizesMatchFacts() {
    let expected: [String: Int] = [
      "iommu_ioas_map_file": 40, "iommu_viommu_alloc": 40, "iommu_vdevice_alloc": 24, "iommu_ioas_change_process": 8,
      "iommu_veventq_alloc": 32, "iommufd_vevent_header": 8, "iommu_vevent_arm_smmuv3": 32, "iommu_hw_queue_alloc": 40,
      "vfio_device_attach_iommufd_pt": 16, "vfio_device_detach_iommufd_pt": 12,
    ]
    #expect(Self.layouts.count == expected.count)
    for layout in Self.layouts {
      #expect(layout.size == expected[layout.name], "\(layout.name)")
    }
  }

  @Test(
    "every layout and ioctl number after 6.12 that Swift sees equals the 7.2 uAPI headers",
    .enabled(if: headers != nil && ABITests.compiler != nil, Comment(rawValue: missing)))
  func layoutsMatchKernelHeaders() throws {
    try ABITests.compare(Self.layouts, Self.ioctls, headers: Self.headers!)
  }

  @Test(
    "the module's compile-time checks pass in 7.2 strict mode against the 7.2 headers, and a wrong number fails them",
    .enabled(if: headers != nil && ABITests.compiler != nil, Comment(rawValue: missing)))
  func strictCheckAgainstKernelHeaders() throws {
    try ABITests.strictCheck(
      define: "CIOMMUFD_ABI_STRICT_7_2", headers: Self.headers!, breaking: "uint32_t veventq_depth;", as: "uint64_t veventq_depth;",
      failsWith: "iommu_veventq_alloc")
  }

}
