import CIommufd
import Foundation
import Testing

/// The package's uAPI definitions, as Swift sees them, against the ABI facts and against
/// the real Linux 6.12 uAPI headers (`make headers_install` of linux-source-6.12).
@Suite("ABI")
struct ABITests {
  struct Layout: CustomStringConvertible {
    var name: String
    var size: Int
    var offsets: [(String, Int)]
    var description: String { "\(name) \(size)" + offsets.map { " \($0.0)=\($0.1)" }.joined() }
  }

  static func layout<T>(_ name: String, _ type: T.Type, _ fields: [(String, PartialKeyPath<T>)]) -> Layout {
    Layout(name: name, size: MemoryLayout<T>.size, offsets: fields.map { ($0.0, MemoryLayout<T>.offset(of: $0.1)!) })
  }

  /// Every struct of the package's uAPI with every field Swift can see (flexible arrays are
  /// not imported), under the kernel's struct name.
  static let layouts: [Layout] = [
    layout("iommu_destroy", ciommufd_iommu_destroy.self, [("size", \.size), ("id", \.id)]),
    layout("iommu_ioas_alloc", ciommufd_iommu_ioas_alloc.self, [("size", \.size), ("flags", \.flags), ("out_ioas_id", \.out_ioas_id)]),
    layout("iommu_iova_range", ciommufd_iommu_iova_range.self, [("start", \.start), ("last", \.last)]),
    layout("iommu_ioas_iova_ranges", ciommufd_iommu_ioas_iova_ranges.self, [
      ("size", \.size), ("ioas_id", \.ioas_id), ("num_iovas", \.num_iovas), ("__reserved", \.__reserved),
      ("allowed_iovas", \.allowed_iovas), ("out_iova_alignment", \.out_iova_alignment)]),
    layout("iommu_ioas_allow_iovas", ciommufd_iommu_ioas_allow_iovas.self, [
      ("size", \.size), ("ioas_id", \.ioas_id), ("num_iovas", \.num_iovas), ("__reserved", \.__reserved),
      ("allowed_iovas", \.allowed_iovas)]),
    layout("iommu_ioas_map", ciommufd_iommu_ioas_map.self, [
      ("size", \.size), ("flags", \.flags), ("ioas_id", \.ioas_id), ("__reserved", \.__reserved),
      ("user_va", \.user_va), ("length", \.length), ("iova", \.iova)]),
    layout("iommu_ioas_copy", ciommufd_iommu_ioas_copy.self, [
      ("size", \.size), ("flags", \.flags), ("dst_ioas_id", \.dst_ioas_id), ("src_ioas_id", \.src_ioas_id),
      ("length", \.length), ("dst_iova", \.dst_iova), ("src_iova", \.src_iova)]),
    layout("iommu_ioas_unmap", ciommufd_iommu_ioas_unmap.self, [("size", \.size), ("ioas_id", \.ioas_id), ("iova", \.iova), ("length", \.length)]),
    layout("iommu_option", ciommufd_iommu_option.self, [
      ("size", \.size), ("option_id", \.option_id), ("op", \.op), ("__reserved", \.__reserved),
      ("object_id", \.object_id), ("val64", \.val64)]),
    layout("iommu_vfio_ioas", ciommufd_iommu_vfio_ioas.self, [("size", \.size), ("ioas_id", \.ioas_id), ("op", \.op), ("__reserved", \.__reserved)]),
    layout("iommu_hwpt_vtd_s1", ciommufd_iommu_hwpt_vtd_s1.self, [
      ("flags", \.flags), ("pgtbl_addr", \.pgtbl_addr), ("addr_width", \.addr_width), ("__reserved", \.__reserved)]),
    layout("iommu_hwpt_alloc", ciommufd_iommu_hwpt_alloc.self, [
      ("size", \.size), ("flags", \.flags), ("dev_id", \.dev_id), ("pt_id", \.pt_id), ("out_hwpt_id", \.out_hwpt_id),
      ("__reserved", \.__reserved), ("data_type", \.data_type), ("data_len", \.data_len), ("data_uptr", \.data_uptr),
      ("fault_id", \.fault_id), ("__reserved2", \.__reserved2)]),
    layout("iommu_hw_info_vtd", ciommufd_iommu_hw_info_vtd.self, [
      ("flags", \.flags), ("__reserved", \.__reserved), ("cap_reg", \.cap_reg), ("ecap_reg", \.ecap_reg)]),
    layout("iommu_hw_info", ciommufd_iommu_hw_info.self, [
      ("size", \.size), ("flags", \.flags), ("dev_id", \.dev_id), ("data_len", \.data_len), ("data_uptr", \.data_uptr),
      ("out_data_type", \.out_data_type), ("out_max_pasid_log2", \.out_max_pasid_log2), ("__reserved", \.__reserved),
      ("out_capabilities", \.out_capabilities)]),
    layout("iommu_hwpt_set_dirty_tracking", ciommufd_iommu_hwpt_set_dirty_tracking.self, [
      ("size", \.size), ("flags", \.flags), ("hwpt_id", \.hwpt_id), ("__reserved", \.__reserved)]),
    layout("iommu_hwpt_get_dirty_bitmap", ciommufd_iommu_hwpt_get_dirty_bitmap.self, [
      ("size", \.size), ("hwpt_id", \.hwpt_id), ("flags", \.flags), ("__reserved", \.__reserved), ("iova", \.iova),
      ("length", \.length), ("page_size", \.page_size), ("data", \.data)]),
    layout("iommu_hwpt_vtd_s1_invalidate", ciommufd_iommu_hwpt_vtd_s1_invalidate.self, [
      ("addr", \.addr), ("npages", \.npages), ("flags", \.flags), ("__reserved", \.__reserved)]),
    layout("iommu_hwpt_invalidate", ciommufd_iommu_hwpt_invalidate.self, [
      ("size", \.size), ("hwpt_id", \.hwpt_id), ("data_uptr", \.data_uptr), ("data_type", \.data_type),
      ("entry_len", \.entry_len), ("entry_num", \.entry_num), ("__reserved", \.__reserved)]),
    layout("iommu_hwpt_pgfault", ciommufd_iommu_hwpt_pgfault.self, [
      ("flags", \.flags), ("dev_id", \.dev_id), ("pasid", \.pasid), ("grpid", \.grpid), ("perm", \.perm),
      ("__reserved", \.__reserved), ("addr", \.addr), ("length", \.length), ("cookie", \.cookie)]),
    layout("iommu_hwpt_page_response", ciommufd_iommu_hwpt_page_response.self, [("cookie", \.cookie), ("code", \.code)]),
    layout("iommu_fault_alloc", ciommufd_iommu_fault_alloc.self, [
      ("size", \.size), ("flags", \.flags), ("out_fault_id", \.out_fault_id), ("out_fault_fd", \.out_fault_fd)]),
    layout("vfio_info_cap_header", ciommufd_vfio_info_cap_header.self, [("id", \.id), ("version", \.version), ("next", \.next)]),
    layout("vfio_group_status", ciommufd_vfio_group_status.self, [("argsz", \.argsz), ("flags", \.flags)]),
    layout("vfio_device_info", ciommufd_vfio_device_info.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("num_regions", \.num_regions), ("num_irqs", \.num_irqs),
      ("cap_offset", \.cap_offset), ("pad", \.pad)]),
    layout("vfio_region_info", ciommufd_vfio_region_info.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("index", \.index), ("cap_offset", \.cap_offset), ("size", \.size), ("offset", \.offset)]),
    layout("vfio_region_sparse_mmap_area", ciommufd_vfio_region_sparse_mmap_area.self, [("offset", \.offset), ("size", \.size)]),
    layout("vfio_region_info_cap_sparse_mmap", ciommufd_vfio_region_info_cap_sparse_mmap.self, [
      ("header", \.header), ("nr_areas", \.nr_areas), ("reserved", \.reserved)]),
    layout("vfio_region_info_cap_type", ciommufd_vfio_region_info_cap_type.self, [("header", \.header), ("type", \.type), ("subtype", \.subtype)]),
    layout("vfio_irq_info", ciommufd_vfio_irq_info.self, [("argsz", \.argsz), ("flags", \.flags), ("index", \.index), ("count", \.count)]),
    layout("vfio_irq_set", ciommufd_vfio_irq_set.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("index", \.index), ("start", \.start), ("count", \.count)]),
    layout("vfio_device_feature", ciommufd_vfio_device_feature.self, [("argsz", \.argsz), ("flags", \.flags)]),
    layout("vfio_device_feature_migration", ciommufd_vfio_device_feature_migration.self, [("flags", \.flags)]),
    layout("vfio_device_feature_mig_state", ciommufd_vfio_device_feature_mig_state.self, [("device_state", \.device_state), ("data_fd", \.data_fd)]),
    layout("vfio_precopy_info", ciommufd_vfio_precopy_info.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("initial_bytes", \.initial_bytes), ("dirty_bytes", \.dirty_bytes)]),
    layout("vfio_device_feature_mig_data_size", ciommufd_vfio_device_feature_mig_data_size.self, [("stop_copy_length", \.stop_copy_length)]),
    layout("vfio_device_low_power_entry_with_wakeup", ciommufd_vfio_device_low_power_entry_with_wakeup.self, [
      ("wakeup_eventfd", \.wakeup_eventfd), ("reserved", \.reserved)]),
    layout("vfio_device_feature_dma_logging_control", ciommufd_vfio_device_feature_dma_logging_control.self, [
      ("page_size", \.page_size), ("num_ranges", \.num_ranges), ("__reserved", \.__reserved), ("ranges", \.ranges)]),
    layout("vfio_device_feature_dma_logging_range", ciommufd_vfio_device_feature_dma_logging_range.self, [("iova", \.iova), ("length", \.length)]),
    layout("vfio_device_feature_dma_logging_report", ciommufd_vfio_device_feature_dma_logging_report.self, [
      ("iova", \.iova), ("length", \.length), ("page_size", \.page_size), ("bitmap", \.bitmap)]),
    layout("vfio_pci_dependent_device", ciommufd_vfio_pci_dependent_device.self, [
      ("group_id", \.group_id), ("segment", \.segment), ("bus", \.bus), ("devfn", \.devfn)]),
    layout("vfio_pci_hot_reset_info", ciommufd_vfio_pci_hot_reset_info.self, [("argsz", \.argsz), ("flags", \.flags), ("count", \.count)]),
    layout("vfio_pci_hot_reset", ciommufd_vfio_pci_hot_reset.self, [("argsz", \.argsz), ("flags", \.flags), ("count", \.count)]),
    layout("vfio_device_bind_iommufd", ciommufd_vfio_device_bind_iommufd.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("iommufd", \.iommufd), ("out_devid", \.out_devid)]),
    layout("vfio_device_attach_iommufd_pt", ciommufd_vfio_device_attach_iommufd_pt.self, [("argsz", \.argsz), ("flags", \.flags), ("pt_id", \.pt_id)]),
    layout("vfio_device_detach_iommufd_pt", ciommufd_vfio_device_detach_iommufd_pt.self, [("argsz", \.argsz), ("flags", \.flags)]),
    layout("vfio_iommu_type1_info", ciommufd_vfio_iommu_type1_info.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("iova_pgsizes", \.iova_pgsizes), ("cap_offset", \.cap_offset), ("pad", \.pad)]),
    layout("vfio_iova_range", ciommufd_vfio_iova_range.self, [("start", \.start), ("end", \.end)]),
    layout("vfio_iommu_type1_info_cap_iova_range", ciommufd_vfio_iommu_type1_info_cap_iova_range.self, [
      ("header", \.header), ("nr_iovas", \.nr_iovas), ("reserved", \.reserved)]),
    layout("vfio_iommu_type1_dma_map", ciommufd_vfio_iommu_type1_dma_map.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("vaddr", \.vaddr), ("iova", \.iova), ("size", \.size)]),
    layout("vfio_iommu_type1_dma_unmap", ciommufd_vfio_iommu_type1_dma_unmap.self, [
      ("argsz", \.argsz), ("flags", \.flags), ("iova", \.iova), ("size", \.size)]),
  ]

  /// Every ioctl number of the package's uAPI, under the kernel's macro name.
  static let ioctls: [(String, Int32)] = [
    ("IOMMU_DESTROY", CIOMMUFD_IOMMU_DESTROY), ("IOMMU_IOAS_ALLOC", CIOMMUFD_IOMMU_IOAS_ALLOC),
    ("IOMMU_IOAS_ALLOW_IOVAS", CIOMMUFD_IOMMU_IOAS_ALLOW_IOVAS), ("IOMMU_IOAS_COPY", CIOMMUFD_IOMMU_IOAS_COPY),
    ("IOMMU_IOAS_IOVA_RANGES", CIOMMUFD_IOMMU_IOAS_IOVA_RANGES), ("IOMMU_IOAS_MAP", CIOMMUFD_IOMMU_IOAS_MAP),
    ("IOMMU_IOAS_UNMAP", CIOMMUFD_IOMMU_IOAS_UNMAP), ("IOMMU_OPTION", CIOMMUFD_IOMMU_OPTION),
    ("IOMMU_VFIO_IOAS", CIOMMUFD_IOMMU_VFIO_IOAS), ("IOMMU_HWPT_ALLOC", CIOMMUFD_IOMMU_HWPT_ALLOC),
    ("IOMMU_GET_HW_INFO", CIOMMUFD_IOMMU_GET_HW_INFO), ("IOMMU_HWPT_SET_DIRTY_TRACKING", CIOMMUFD_IOMMU_HWPT_SET_DIRTY_TRACKING),
    ("IOMMU_HWPT_GET_DIRTY_BITMAP", CIOMMUFD_IOMMU_HWPT_GET_DIRTY_BITMAP), ("IOMMU_HWPT_INVALIDATE", CIOMMUFD_IOMMU_HWPT_INVALIDATE),
    ("IOMMU_FAULT_QUEUE_ALLOC", CIOMMUFD_IOMMU_FAULT_QUEUE_ALLOC),
    ("VFIO_GET_API_VERSION", CIOMMUFD_VFIO_GET_API_VERSION), ("VFIO_CHECK_EXTENSION", CIOMMUFD_VFIO_CHECK_EXTENSION),
    ("VFIO_SET_IOMMU", CIOMMUFD_VFIO_SET_IOMMU), ("VFIO_GROUP_GET_STATUS", CIOMMUFD_VFIO_GROUP_GET_STATUS),
    ("VFIO_GROUP_SET_CONTAINER", CIOMMUFD_VFIO_GROUP_SET_CONTAINER), ("VFIO_GROUP_UNSET_CONTAINER", CIOMMUFD_VFIO_GROUP_UNSET_CONTAINER),
    ("VFIO_GROUP_GET_DEVICE_FD", CIOMMUFD_VFIO_GROUP_GET_DEVICE_FD), ("VFIO_DEVICE_GET_INFO", CIOMMUFD_VFIO_DEVICE_GET_INFO),
    ("VFIO_DEVICE_GET_REGION_INFO", CIOMMUFD_VFIO_DEVICE_GET_REGION_INFO), ("VFIO_DEVICE_GET_IRQ_INFO", CIOMMUFD_VFIO_DEVICE_GET_IRQ_INFO),
    ("VFIO_DEVICE_SET_IRQS", CIOMMUFD_VFIO_DEVICE_SET_IRQS), ("VFIO_DEVICE_RESET", CIOMMUFD_VFIO_DEVICE_RESET),
    ("VFIO_IOMMU_GET_INFO", CIOMMUFD_VFIO_IOMMU_GET_INFO), ("VFIO_IOMMU_MAP_DMA", CIOMMUFD_VFIO_IOMMU_MAP_DMA),
    ("VFIO_IOMMU_UNMAP_DMA", CIOMMUFD_VFIO_IOMMU_UNMAP_DMA), ("VFIO_DEVICE_FEATURE", CIOMMUFD_VFIO_DEVICE_FEATURE),
    ("VFIO_DEVICE_BIND_IOMMUFD", CIOMMUFD_VFIO_DEVICE_BIND_IOMMUFD),
    ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT),
    ("VFIO_DEVICE_DETACH_IOMMUFD_PT", CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT),
    ("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", CIOMMUFD_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO),
    ("VFIO_DEVICE_PCI_HOT_RESET", CIOMMUFD_VFIO_DEVICE_PCI_HOT_RESET), ("VFIO_MIG_GET_PRECOPY_INFO", CIOMMUFD_VFIO_MIG_GET_PRECOPY_INFO),
    // Values of the requests' structs (compared as numbers, as the ioctl numbers are).
    ("VFIO_DEVICE_FEATURE_MASK", Int32(CIOMMUFD_VFIO_DEVICE_FEATURE_MASK)), ("VFIO_DEVICE_FEATURE_GET", Int32(CIOMMUFD_VFIO_DEVICE_FEATURE_GET)),
    ("VFIO_DEVICE_FEATURE_SET", Int32(CIOMMUFD_VFIO_DEVICE_FEATURE_SET)), ("VFIO_DEVICE_FEATURE_PROBE", Int32(CIOMMUFD_VFIO_DEVICE_FEATURE_PROBE)),
    ("VFIO_DEVICE_FEATURE_PCI_VF_TOKEN", CIOMMUFD_VFIO_DEVICE_FEATURE_PCI_VF_TOKEN),
    ("VFIO_DEVICE_FEATURE_MIGRATION", CIOMMUFD_VFIO_DEVICE_FEATURE_MIGRATION),
    ("VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE", CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE),
    ("VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY", CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY),
    ("VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP", CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP),
    ("VFIO_DEVICE_FEATURE_LOW_POWER_EXIT", CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_EXIT),
    ("VFIO_DEVICE_FEATURE_DMA_LOGGING_START", CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_START),
    ("VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP", CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP),
    ("VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT", CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT),
    ("VFIO_DEVICE_FEATURE_MIG_DATA_SIZE", CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DATA_SIZE),
    ("VFIO_MIGRATION_STOP_COPY", Int32(CIOMMUFD_VFIO_MIGRATION_STOP_COPY)), ("VFIO_MIGRATION_P2P", Int32(CIOMMUFD_VFIO_MIGRATION_P2P)),
    ("VFIO_MIGRATION_PRE_COPY", Int32(CIOMMUFD_VFIO_MIGRATION_PRE_COPY)),
    ("VFIO_DEVICE_STATE_ERROR", CIOMMUFD_VFIO_DEVICE_STATE_ERROR), ("VFIO_DEVICE_STATE_STOP", CIOMMUFD_VFIO_DEVICE_STATE_STOP),
    ("VFIO_DEVICE_STATE_RUNNING", CIOMMUFD_VFIO_DEVICE_STATE_RUNNING), ("VFIO_DEVICE_STATE_STOP_COPY", CIOMMUFD_VFIO_DEVICE_STATE_STOP_COPY),
    ("VFIO_DEVICE_STATE_RESUMING", CIOMMUFD_VFIO_DEVICE_STATE_RESUMING),
    ("VFIO_DEVICE_STATE_RUNNING_P2P", CIOMMUFD_VFIO_DEVICE_STATE_RUNNING_P2P),
    ("VFIO_DEVICE_STATE_PRE_COPY", CIOMMUFD_VFIO_DEVICE_STATE_PRE_COPY),
    ("VFIO_DEVICE_STATE_PRE_COPY_P2P", CIOMMUFD_VFIO_DEVICE_STATE_PRE_COPY_P2P),
    ("VFIO_PCI_HOT_RESET_FLAG_DEV_ID", Int32(CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID)),
    ("VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED", Int32(CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED)),
  ]

  static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  /// The exported 6.12 uAPI headers: `IOMMUFD_UAPI_HEADERS`, else the lab's cache.
  static let headers: String? = {
    let candidates = [ProcessInfo.processInfo.environment["IOMMUFD_UAPI_HEADERS"], "/var/cache/swift-iommufd/uapi-6.12/include"]
    return candidates.compactMap { $0 }.first { FileManager.default.fileExists(atPath: $0 + "/linux/iommufd.h") }
  }()

  static let compiler: String? = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }

  static let missing = "needs the Linux 6.12 uAPI headers (run `bash Scripts/test.sh`, or set IOMMUFD_UAPI_HEADERS to a `make headers_install` include dir) and a C compiler"

  @Test("struct sizes match the ABI facts of Linux 6.12 (semantics doc §1)")
  func sizesMatchFacts() {
    let expected: [String: Int] = [
      "iommu_destroy": 8, "iommu_ioas_alloc": 12, "iommu_ioas_allow_iovas": 24, "iommu_ioas_copy": 40,
      "iommu_ioas_iova_ranges": 32, "iommu_ioas_map": 40, "iommu_ioas_unmap": 24, "iommu_option": 24,
      "iommu_vfio_ioas": 12, "iommu_hwpt_alloc": 48, "iommu_hw_info": 40, "iommu_hwpt_set_dirty_tracking": 16,
      "iommu_hwpt_get_dirty_bitmap": 48, "iommu_hwpt_invalidate": 32, "iommu_fault_alloc": 16,
      "iommu_hwpt_pgfault": 40, "iommu_hwpt_page_response": 8, "vfio_device_bind_iommufd": 16,
      "vfio_device_attach_iommufd_pt": 12, "vfio_device_detach_iommufd_pt": 8, "vfio_device_info": 24,
      "vfio_region_info": 32, "vfio_irq_info": 16, "vfio_irq_set": 20,
    ]
    for layout in Self.layouts where expected[layout.name] != nil {
      #expect(layout.size == expected[layout.name], "\(layout.name)")
    }
    #expect(CIOMMUFD_HWPT_ALLOC_MIN_SIZE == 24 && CIOMMUFD_HW_INFO_MIN_SIZE == 32)
  }

  @Test("ioctl numbers are _IO(';', nr): 0x3B00 | nr")
  func ioctlNumbersMatchFacts() {
    let expected: [String: Int32] = [
      "IOMMU_DESTROY": 0x3B80, "IOMMU_FAULT_QUEUE_ALLOC": 0x3B8E, "VFIO_DEVICE_GET_INFO": 0x3B6B,
      "VFIO_DEVICE_BIND_IOMMUFD": 0x3B76, "VFIO_DEVICE_DETACH_IOMMUFD_PT": 0x3B78, "VFIO_IOMMU_UNMAP_DMA": 0x3B72,
    ]
    for (name, value) in Self.ioctls where expected[name] != nil {
      #expect(value == expected[name], "\(name)")
    }
  }

  @Test(
    "every struct layout and ioctl number Swift sees equals the 6.12 uAPI headers",
    .enabled(if: headers != nil && compiler != nil, Comment(rawValue: missing)))
  func layoutsMatchKernelHeaders() throws {
    try Self.compare(Self.layouts, Self.ioctls, headers: Self.headers!)
  }

  /// Compiles a C program against `headers` that prints every layout and ioctl number, and
  /// expects it to print what Swift sees.
  static func compare(_ layouts: [Layout], _ ioctls: [(String, Int32)], headers: String) throws {
    var program = "#include <stdio.h>\n#include <stddef.h>\n#include <linux/iommufd.h>\n#include <linux/vfio.h>\nint main(void) {\n"
    for layout in layouts {
      program += "  printf(\"%s %zu\", \"\(layout.name)\", sizeof(struct \(layout.name)));\n"
      for (field, _) in layout.offsets {
        program += "  printf(\" %s=%zu\", \"\(field)\", offsetof(struct \(layout.name), \(field)));\n"
      }
      program += "  printf(\"\\n\");\n"
    }
    for (name, _) in ioctls { program += "  printf(\"%s %lu\\n\", \"\(name)\", (unsigned long)(\(name)));\n" }
    program += "  return 0;\n}\n"

    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-abi-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let source = directory.appendingPathComponent("layout.c")
    let binary = directory.appendingPathComponent("layout")
    try program.write(to: source, atomically: true, encoding: .utf8)
    let compile = try run(compiler!, ["-I", headers, "-o", binary.path, source.path])
    #expect(compile.status == 0, "\(compile.output)")
    let output = try run(binary.path, []).output.split(separator: "\n").map(String.init)

    let swiftSide = layouts.map(\.description) + ioctls.map { "\($0.0) \($0.1)" }
    #expect(output.count == swiftSide.count)
    for (kernel, swift) in zip(output, swiftSide) {
      #expect(kernel == swift)
    }
  }

  @Test(
    "the module's compile-time checks pass in strict mode against the 6.12 headers, and a wrong number fails them",
    .enabled(if: headers != nil && compiler != nil, Comment(rawValue: missing)))
  func strictCheckAgainstKernelHeaders() throws {
    try Self.strictCheck(
      define: "CIOMMUFD_ABI_STRICT", headers: Self.headers!, breaking: "#define CIOMMUFD_IOMMU_IOAS_MAP 0x3B85",
      as: "#define CIOMMUFD_IOMMU_IOAS_MAP 0x3B95", failsWith: "IOMMU_IOAS_MAP differs from the system header")
  }

  /// Compiles the module's header with `define` against `headers` and expects no error;
  /// then, as a negative control, a copy with `original` replaced by `replacement` in
  /// `ciommufd_uapi.h`, and expects a failure whose output contains `message`.
  static func strictCheck(define: String, headers: String, breaking original: String, as replacement: String, failsWith message: String) throws {
    let module = packageRoot.appendingPathComponent("Sources/CIommufd")
    let strict = ["-fsyntax-only", "-D\(define)", "-I", headers, "-x", "c"]
    let good = try run(compiler!, strict + [module.appendingPathComponent("CIommufd.h").path])
    #expect(good.status == 0, "\(good.output)")

    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-abi-\(UUID().uuidString)")
    try FileManager.default.copyItem(at: module, to: directory)
    defer { try? FileManager.default.removeItem(at: directory) }
    let uapi = directory.appendingPathComponent("ciommufd_uapi.h")
    let text = try String(contentsOf: uapi, encoding: .utf8)
    let broken = text.replacingOccurrences(of: original, with: replacement)
    #expect(broken != text)
    try broken.write(to: uapi, atomically: true, encoding: .utf8)
    let bad = try run(compiler!, strict + [directory.appendingPathComponent("CIommufd.h").path])
    #expect(bad.status != 0)
    #expect(bad.output.contains(message))
  }

  /// The linux-source-6.12 tree, for the self-test header headers_install does not export.
  static let kernelSource: String? = {
    let candidates = [ProcessInfo.processInfo.environment["IOMMUFD_KERNEL_SOURCE"], "/var/cache/swift-iommufd/src/linux-source-6.12"]
    return candidates.compactMap { $0 }.first { FileManager.default.fileExists(atPath: $0 + "/drivers/iommu/iommufd/iommufd_test.h") }
  }()

  @Test(
    "the self-test command layout equals drivers/iommu/iommufd/iommufd_test.h of 6.12",
    .enabled(if: headers != nil && compiler != nil && kernelSource != nil, "needs the 6.12 uAPI headers and the linux-source-6.12 tree (Lab/lab.sh headers)"))
  func selfTestLayout() throws {
    let program = """
      #include <stddef.h>
      #include <stdio.h>
      #include "\(Self.kernelSourceHeader())"
      int main(void) {
        printf("%zu %zu %zu %zu %zu %zu %lu %u %u %u\\n", sizeof(struct iommu_test_cmd), offsetof(struct iommu_test_cmd, last),
          offsetof(struct iommu_test_cmd, add_reserved.length), offsetof(struct iommu_test_cmd, mock_domain.out_idev_id),
          offsetof(struct iommu_test_cmd, mock_domain_flags.dev_flags), offsetof(struct iommu_test_cmd, mock_domain_replace.pt_id),
          (unsigned long)IOMMU_TEST_CMD, IOMMU_TEST_OP_ADD_RESERVED, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS);
        return 0;
      }
      """
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("iommufd-abi-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let source = directory.appendingPathComponent("test.c")
    try program.write(to: source, atomically: true, encoding: .utf8)
    let binary = directory.appendingPathComponent("test").path
    let compile = try Self.run(Self.compiler!, ["-I", Self.headers!, "-o", binary, source.path])
    #expect(compile.status == 0, "\(compile.output)")
    let payload = MemoryLayout<ciommufd_iommu_test_cmd>.offset(of: \.payload)!
    let swiftSide = [
      MemoryLayout<ciommufd_iommu_test_cmd>.size, MemoryLayout<ciommufd_iommu_test_cmd>.offset(of: \.last)!,
      payload + MemoryLayout<ciommufd_iommu_test_add_reserved>.offset(of: \.length)!,
      payload + MemoryLayout<ciommufd_iommu_test_mock_domain>.offset(of: \.out_idev_id)!,
      payload + MemoryLayout<ciommufd_iommu_test_mock_domain>.offset(of: \.dev_flags)!,
      payload + MemoryLayout<ciommufd_iommu_test_mock_domain_replace>.offset(of: \.pt_id)!,
      Int(CIOMMUFD_IOMMU_TEST_CMD), Int(CIOMMUFD_TEST_OP_ADD_RESERVED), Int(CIOMMUFD_TEST_OP_MOCK_DOMAIN_REPLACE),
      Int(CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS),
    ].map(String.init).joined(separator: " ")
    #expect(try Self.run(binary, []).output.trimmingCharacters(in: .whitespacesAndNewlines) == swiftSide)
    #expect(CIOMMUFD_TEST_CMD_MIN_SIZE == 68)
  }

  static func kernelSourceHeader() -> String { kernelSource! + "/drivers/iommu/iommufd/iommufd_test.h" }

  static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }
}
