/*
 * The iommufd and VFIO user ABI as of Linux 6.12, written from the ABI facts (struct
 * layouts, ioctl numbers, flag values). Every name carries the ciommufd_/CIOMMUFD_ prefix,
 * so this header can sit next to any version of <linux/iommufd.h> and <linux/vfio.h>.
 * The fields keep the kernel's names, so a reader can match them to the uAPI docs.
 */
#ifndef CIOMMUFD_UAPI_H
#define CIOMMUFD_UAPI_H

#include <stdint.h>

typedef uint64_t ciommufd_aligned_u64 __attribute__((aligned(8)));

/* ---------------------------------------------------------------- ioctl numbers */
/* Every iommufd and VFIO ioctl is _IO(';', nr) = 0x3B00 | nr: no size, no direction bits.
   Plain literals, so Swift imports them as constants. */

#define CIOMMUFD_IOMMU_DESTROY 0x3B80 /* _IO(';', 0x80) */
#define CIOMMUFD_IOMMU_IOAS_ALLOC 0x3B81 /* _IO(';', 0x81) */
#define CIOMMUFD_IOMMU_IOAS_ALLOW_IOVAS 0x3B82 /* _IO(';', 0x82) */
#define CIOMMUFD_IOMMU_IOAS_COPY 0x3B83 /* _IO(';', 0x83) */
#define CIOMMUFD_IOMMU_IOAS_IOVA_RANGES 0x3B84 /* _IO(';', 0x84) */
#define CIOMMUFD_IOMMU_IOAS_MAP 0x3B85 /* _IO(';', 0x85) */
#define CIOMMUFD_IOMMU_IOAS_UNMAP 0x3B86 /* _IO(';', 0x86) */
#define CIOMMUFD_IOMMU_OPTION 0x3B87 /* _IO(';', 0x87) */
#define CIOMMUFD_IOMMU_VFIO_IOAS 0x3B88 /* _IO(';', 0x88) */
#define CIOMMUFD_IOMMU_HWPT_ALLOC 0x3B89 /* _IO(';', 0x89) */
#define CIOMMUFD_IOMMU_GET_HW_INFO 0x3B8A /* _IO(';', 0x8a) */
#define CIOMMUFD_IOMMU_HWPT_SET_DIRTY_TRACKING 0x3B8B /* _IO(';', 0x8b) */
#define CIOMMUFD_IOMMU_HWPT_GET_DIRTY_BITMAP 0x3B8C /* _IO(';', 0x8c) */
#define CIOMMUFD_IOMMU_HWPT_INVALIDATE 0x3B8D /* _IO(';', 0x8d) */
#define CIOMMUFD_IOMMU_FAULT_QUEUE_ALLOC 0x3B8E /* _IO(';', 0x8e) */

#define CIOMMUFD_VFIO_BASE 100
#define CIOMMUFD_VFIO_GET_API_VERSION 0x3B64 /* _IO(';', 100) */
#define CIOMMUFD_VFIO_CHECK_EXTENSION 0x3B65 /* _IO(';', 101) */
#define CIOMMUFD_VFIO_SET_IOMMU 0x3B66 /* _IO(';', 102) */
#define CIOMMUFD_VFIO_GROUP_GET_STATUS 0x3B67 /* _IO(';', 103) */
#define CIOMMUFD_VFIO_GROUP_SET_CONTAINER 0x3B68 /* _IO(';', 104) */
#define CIOMMUFD_VFIO_GROUP_UNSET_CONTAINER 0x3B69 /* _IO(';', 105) */
#define CIOMMUFD_VFIO_GROUP_GET_DEVICE_FD 0x3B6A /* _IO(';', 106) */
#define CIOMMUFD_VFIO_DEVICE_GET_INFO 0x3B6B /* _IO(';', 107) */
#define CIOMMUFD_VFIO_DEVICE_GET_REGION_INFO 0x3B6C /* _IO(';', 108) */
#define CIOMMUFD_VFIO_DEVICE_GET_IRQ_INFO 0x3B6D /* _IO(';', 109) */
#define CIOMMUFD_VFIO_DEVICE_SET_IRQS 0x3B6E /* _IO(';', 110) */
#define CIOMMUFD_VFIO_DEVICE_RESET 0x3B6F /* _IO(';', 111) */
#define CIOMMUFD_VFIO_IOMMU_GET_INFO 0x3B70 /* _IO(';', 112) */
#define CIOMMUFD_VFIO_IOMMU_MAP_DMA 0x3B71 /* _IO(';', 113) */
#define CIOMMUFD_VFIO_IOMMU_UNMAP_DMA 0x3B72 /* _IO(';', 114) */
#define CIOMMUFD_VFIO_DEVICE_FEATURE 0x3B75 /* _IO(';', 117) */
#define CIOMMUFD_VFIO_DEVICE_BIND_IOMMUFD 0x3B76 /* _IO(';', 118) */
#define CIOMMUFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT 0x3B77 /* _IO(';', 119) */
#define CIOMMUFD_VFIO_DEVICE_DETACH_IOMMUFD_PT 0x3B78 /* _IO(';', 120) */
/* On a device descriptor (the same numbers as VFIO_IOMMU_GET_INFO and _MAP_DMA on a container). */
#define CIOMMUFD_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO 0x3B70 /* _IO(';', 112) */
#define CIOMMUFD_VFIO_DEVICE_PCI_HOT_RESET 0x3B71 /* _IO(';', 113) */
/* On a migration data descriptor. */
#define CIOMMUFD_VFIO_MIG_GET_PRECOPY_INFO 0x3B79 /* _IO(';', 121) */

/* Requests added after 6.12 (absent from the 6.12 headers, so not checked there). */
#define CIOMMUFD_IOMMU_IOAS_MAP_FILE       0x3B8F /* _IO(';', 0x8f), 6.13 */
#define CIOMMUFD_IOMMU_IOAS_CHANGE_PROCESS 0x3B92 /* _IO(';', 0x92), 6.14 */
#define CIOMMUFD_IOMMU_VIOMMU_ALLOC        0x3B90 /* _IO(';', 0x90), 6.13 */
#define CIOMMUFD_IOMMU_VDEVICE_ALLOC       0x3B91 /* _IO(';', 0x91), 6.13 */

/* ---------------------------------------------------------------- iommufd structs */
struct ciommufd_iommu_destroy {
  uint32_t size;
  uint32_t id;
};

struct ciommufd_iommu_ioas_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t out_ioas_id;
};

struct ciommufd_iommu_iova_range {
  ciommufd_aligned_u64 start;
  ciommufd_aligned_u64 last; /* inclusive */
};

struct ciommufd_iommu_ioas_iova_ranges {
  uint32_t size;
  uint32_t ioas_id;
  uint32_t num_iovas;
  uint32_t __reserved;
  ciommufd_aligned_u64 allowed_iovas; /* user pointer to ciommufd_iommu_iova_range[] */
  ciommufd_aligned_u64 out_iova_alignment;
};

struct ciommufd_iommu_ioas_allow_iovas {
  uint32_t size;
  uint32_t ioas_id;
  uint32_t num_iovas;
  uint32_t __reserved;
  ciommufd_aligned_u64 allowed_iovas;
};

#define CIOMMUFD_IOAS_MAP_FIXED_IOVA (1u << 0)
#define CIOMMUFD_IOAS_MAP_WRITEABLE  (1u << 1)
#define CIOMMUFD_IOAS_MAP_READABLE   (1u << 2)

struct ciommufd_iommu_ioas_map {
  uint32_t size;
  uint32_t flags;
  uint32_t ioas_id;
  uint32_t __reserved;
  ciommufd_aligned_u64 user_va;
  ciommufd_aligned_u64 length;
  ciommufd_aligned_u64 iova;
};

struct ciommufd_iommu_ioas_copy {
  uint32_t size;
  uint32_t flags;
  uint32_t dst_ioas_id;
  uint32_t src_ioas_id;
  ciommufd_aligned_u64 length;
  ciommufd_aligned_u64 dst_iova;
  ciommufd_aligned_u64 src_iova;
};

struct ciommufd_iommu_ioas_unmap {
  uint32_t size;
  uint32_t ioas_id;
  ciommufd_aligned_u64 iova;
  ciommufd_aligned_u64 length;
};

#define CIOMMUFD_OPTION_RLIMIT_MODE 0u
#define CIOMMUFD_OPTION_HUGE_PAGES  1u
#define CIOMMUFD_OPTION_OP_SET 0u
#define CIOMMUFD_OPTION_OP_GET 1u

struct ciommufd_iommu_option {
  uint32_t size;
  uint32_t option_id;
  uint16_t op;
  uint16_t __reserved;
  uint32_t object_id;
  ciommufd_aligned_u64 val64;
};

#define CIOMMUFD_VFIO_IOAS_GET   0u
#define CIOMMUFD_VFIO_IOAS_SET   1u
#define CIOMMUFD_VFIO_IOAS_CLEAR 2u

struct ciommufd_iommu_vfio_ioas {
  uint32_t size;
  uint32_t ioas_id;
  uint16_t op;
  uint16_t __reserved;
};

#define CIOMMUFD_HWPT_ALLOC_NEST_PARENT    (1u << 0)
#define CIOMMUFD_HWPT_ALLOC_DIRTY_TRACKING (1u << 1)
#define CIOMMUFD_HWPT_FAULT_ID_VALID       (1u << 2)

#define CIOMMUFD_HWPT_DATA_NONE   0u
#define CIOMMUFD_HWPT_DATA_VTD_S1 1u

#define CIOMMUFD_VTD_S1_SRE  (1u << 0)
#define CIOMMUFD_VTD_S1_EAFE (1u << 1)
#define CIOMMUFD_VTD_S1_WPE  (1u << 2)

struct ciommufd_iommu_hwpt_vtd_s1 {
  ciommufd_aligned_u64 flags;
  ciommufd_aligned_u64 pgtbl_addr;
  uint32_t addr_width;
  uint32_t __reserved;
};

struct ciommufd_iommu_hwpt_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t dev_id;
  uint32_t pt_id;
  uint32_t out_hwpt_id;
  uint32_t __reserved;
  uint32_t data_type;
  uint32_t data_len;
  ciommufd_aligned_u64 data_uptr;
  uint32_t fault_id;
  uint32_t __reserved2;
};
/* The smallest size IOMMU_HWPT_ALLOC accepts: offsetofend(__reserved). */
#define CIOMMUFD_HWPT_ALLOC_MIN_SIZE 24u

#define CIOMMUFD_HW_INFO_VTD_ERRATA_772415_SPR17 (1u << 0)

struct ciommufd_iommu_hw_info_vtd {
  uint32_t flags;
  uint32_t __reserved;
  ciommufd_aligned_u64 cap_reg;
  ciommufd_aligned_u64 ecap_reg;
};

#define CIOMMUFD_HW_INFO_TYPE_NONE       0u
#define CIOMMUFD_HW_INFO_TYPE_INTEL_VTD  1u
#define CIOMMUFD_HW_INFO_TYPE_SELFTEST   0xfeedbeefu

#define CIOMMUFD_HW_CAP_DIRTY_TRACKING (1u << 0)
#define CIOMMUFD_HW_CAP_PCI_PASID_EXEC (1u << 1)
#define CIOMMUFD_HW_CAP_PCI_PASID_PRIV (1u << 2)

struct ciommufd_iommu_hw_info {
  uint32_t size;
  uint32_t flags;
  uint32_t dev_id;
  uint32_t data_len;
  ciommufd_aligned_u64 data_uptr;
  uint32_t out_data_type;
  uint8_t out_max_pasid_log2;
  uint8_t __reserved[3];
  ciommufd_aligned_u64 out_capabilities;
};
/* The smallest size IOMMU_GET_HW_INFO accepts: offsetofend(__reserved). */
#define CIOMMUFD_HW_INFO_MIN_SIZE 32u

#define CIOMMUFD_HWPT_DIRTY_TRACKING_ENABLE 1u

struct ciommufd_iommu_hwpt_set_dirty_tracking {
  uint32_t size;
  uint32_t flags;
  uint32_t hwpt_id;
  uint32_t __reserved;
};

#define CIOMMUFD_HWPT_GET_DIRTY_BITMAP_NO_CLEAR 1u

struct ciommufd_iommu_hwpt_get_dirty_bitmap {
  uint32_t size;
  uint32_t hwpt_id;
  uint32_t flags;
  uint32_t __reserved;
  ciommufd_aligned_u64 iova;
  ciommufd_aligned_u64 length;
  ciommufd_aligned_u64 page_size;
  ciommufd_aligned_u64 data;
};

#define CIOMMUFD_HWPT_INVALIDATE_DATA_VTD_S1 0u
#define CIOMMUFD_VTD_INV_FLAGS_LEAF (1u << 0)

struct ciommufd_iommu_hwpt_vtd_s1_invalidate {
  ciommufd_aligned_u64 addr;
  ciommufd_aligned_u64 npages;
  uint32_t flags;
  uint32_t __reserved;
};

struct ciommufd_iommu_hwpt_invalidate {
  uint32_t size;
  uint32_t hwpt_id;
  ciommufd_aligned_u64 data_uptr;
  uint32_t data_type;
  uint32_t entry_len;
  uint32_t entry_num;
  uint32_t __reserved;
};

#define CIOMMUFD_PGFAULT_FLAGS_PASID_VALID (1u << 0)
#define CIOMMUFD_PGFAULT_FLAGS_LAST_PAGE   (1u << 1)
#define CIOMMUFD_PGFAULT_PERM_READ  (1u << 0)
#define CIOMMUFD_PGFAULT_PERM_WRITE (1u << 1)
#define CIOMMUFD_PGFAULT_PERM_EXEC  (1u << 2)
#define CIOMMUFD_PGFAULT_PERM_PRIV  (1u << 3)

struct ciommufd_iommu_hwpt_pgfault {
  uint32_t flags;
  uint32_t dev_id;
  uint32_t pasid;
  uint32_t grpid;
  uint32_t perm;
  uint32_t __reserved;
  ciommufd_aligned_u64 addr;
  uint32_t length;
  uint32_t cookie;
};

#define CIOMMUFD_PAGE_RESP_SUCCESS 0u
#define CIOMMUFD_PAGE_RESP_INVALID 1u

struct ciommufd_iommu_hwpt_page_response {
  uint32_t cookie;
  uint32_t code;
};

struct ciommufd_iommu_fault_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t out_fault_id;
  uint32_t out_fault_fd;
};

/* IOMMU_IOAS_MAP_FILE (6.13): map `length` bytes of file `fd` from byte `start`. */
struct ciommufd_iommu_ioas_map_file {
  uint32_t size;
  uint32_t flags;
  uint32_t ioas_id;
  int32_t fd;
  ciommufd_aligned_u64 start;
  ciommufd_aligned_u64 length;
  ciommufd_aligned_u64 iova;
};

/* IOMMU_VIOMMU_ALLOC (6.13; data_len and data_uptr were appended later, 7.2 has them; kernels
   without them accept them as zeroed trailing bytes): a virtual IOMMU on a NEST_PARENT HWPT. */
#define CIOMMUFD_VIOMMU_TYPE_DEFAULT          0u
#define CIOMMUFD_VIOMMU_TYPE_ARM_SMMUV3       1u
#define CIOMMUFD_VIOMMU_TYPE_TEGRA241_CMDQV   2u

struct ciommufd_iommu_viommu_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t type;
  uint32_t dev_id;
  uint32_t hwpt_id;
  uint32_t out_viommu_id;
  uint32_t data_len;
  uint32_t __reserved;
  ciommufd_aligned_u64 data_uptr;
};

/* IOMMU_VDEVICE_ALLOC (6.13): a device's identity (`virt_id`) behind a vIOMMU. */
struct ciommufd_iommu_vdevice_alloc {
  uint32_t size;
  uint32_t viommu_id;
  uint32_t dev_id;
  uint32_t out_vdevice_id;
  ciommufd_aligned_u64 virt_id;
};

/* IOMMU_IOAS_CHANGE_PROCESS (6.14): move the pinned-page charge to the caller. */
struct ciommufd_iommu_ioas_change_process {
  uint32_t size;
  uint32_t __reserved;
};

/* IOMMU_VEVENTQ_ALLOC (6.15): a queue of a vIOMMU's events, read from its own fd as
   records of a header followed by type-specific data. */
#define CIOMMUFD_IOMMU_VEVENTQ_ALLOC 0x3B93 /* _IO(';', 0x93), 6.15 */
#define CIOMMUFD_IOMMU_HW_QUEUE_ALLOC 0x3B94 /* _IO(';', 0x94), 6.17 */

#define CIOMMUFD_VEVENTQ_TYPE_DEFAULT         0u
#define CIOMMUFD_VEVENTQ_TYPE_ARM_SMMUV3      1u
#define CIOMMUFD_VEVENTQ_TYPE_TEGRA241_CMDQV  2u
#define CIOMMUFD_VEVENTQ_FLAG_LOST_EVENTS     (1u << 0)

struct ciommufd_iommu_veventq_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t viommu_id;
  uint32_t type;
  uint32_t veventq_depth;
  uint32_t out_veventq_id;
  uint32_t out_veventq_fd;
  uint32_t __reserved;
};

struct ciommufd_iommufd_vevent_header {
  uint32_t flags;
  uint32_t sequence;
};

/* The ARM SMMUv3 vEVENT: one 256-bit event record, little-endian. */
struct ciommufd_iommu_vevent_arm_smmuv3 {
  ciommufd_aligned_u64 evt[4];
};

/* IOMMU_HW_QUEUE_ALLOC (6.17): a vIOMMU's HW-accelerated queue in guest memory. */
#define CIOMMUFD_HW_QUEUE_TYPE_TEGRA241_CMDQV 1u
struct ciommufd_iommu_hw_queue_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t viommu_id;
  uint32_t type;
  uint32_t index;
  uint32_t out_hw_queue_id;
  ciommufd_aligned_u64 nesting_parent_iova;
  ciommufd_aligned_u64 length;
};

/* HWPT_ALLOC flag (after 6.12): the HWPT may be attached to PASIDs. */
#define CIOMMUFD_HWPT_ALLOC_PASID (1u << 3)

/* VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT with a PASID (6.15): the structs grow by a pasid. */
#define CIOMMUFD_VFIO_DEVICE_ATTACH_PASID (1u << 0)
#define CIOMMUFD_VFIO_DEVICE_DETACH_PASID (1u << 0)

struct ciommufd_vfio_device_attach_iommufd_pt_pasid {
  uint32_t argsz;
  uint32_t flags;
  uint32_t pt_id;
  uint32_t pasid;
};

struct ciommufd_vfio_device_detach_iommufd_pt_pasid {
  uint32_t argsz;
  uint32_t flags;
  uint32_t pasid;
};

/* ------------------------------------------------------- iommufd self-test */
/* Kernels built with CONFIG_IOMMUFD_TEST only (drivers/iommu/iommufd/iommufd_test.h, not
   exported by headers_install): a mock IOMMU driver and mock devices. */
#define CIOMMUFD_IOMMU_TEST_CMD 0x3BA0 /* _IO(';', 0x80 + 32) */

#define CIOMMUFD_TEST_OP_ADD_RESERVED        1u
#define CIOMMUFD_TEST_OP_MOCK_DOMAIN         2u
#define CIOMMUFD_TEST_OP_MD_CHECK_MAP        3u
#define CIOMMUFD_TEST_OP_MD_CHECK_REFS       4u
#define CIOMMUFD_TEST_OP_CREATE_ACCESS       5u
#define CIOMMUFD_TEST_OP_DESTROY_ACCESS_PAGES 6u
#define CIOMMUFD_TEST_OP_ACCESS_PAGES        7u
#define CIOMMUFD_TEST_OP_ACCESS_RW           8u
#define CIOMMUFD_TEST_OP_SET_TEMP_MEMORY_LIMIT 9u
#define CIOMMUFD_TEST_OP_MOCK_DOMAIN_REPLACE 10u
#define CIOMMUFD_TEST_OP_ACCESS_REPLACE_IOAS 11u
#define CIOMMUFD_TEST_OP_MOCK_DOMAIN_FLAGS   12u
#define CIOMMUFD_TEST_OP_DIRTY               13u
#define CIOMMUFD_TEST_OP_MD_CHECK_IOTLB      14u
#define CIOMMUFD_TEST_OP_TRIGGER_IOPF        15u
/* Later test kernels (7.2 has them). */
#define CIOMMUFD_TEST_OP_DEV_CHECK_CACHE     16u
#define CIOMMUFD_TEST_OP_TRIGGER_VEVENT      17u
#define CIOMMUFD_TEST_OP_PASID_ATTACH        18u
#define CIOMMUFD_TEST_OP_PASID_REPLACE       19u
#define CIOMMUFD_TEST_OP_PASID_DETACH        20u
#define CIOMMUFD_TEST_OP_PASID_CHECK_HWPT    21u
#define CIOMMUFD_TEST_OP_DMABUF_GET          22u
#define CIOMMUFD_TEST_OP_DMABUF_REVOKE       23u

/* The self-test access ops: CREATE_ACCESS {u32 out_access_fd, u32 flags};
   DESTROY_ACCESS_PAGES {u32 access_pages_id}; ACCESS_PAGES {u32 flags,
   u32 out_access_pages_id, u64 iova, u64 length, u64 uptr}; ACCESS_RW {u64 iova,
   u64 length, u64 uptr, u32 flags}; ACCESS_REPLACE_IOAS {u32 ioas_id}. `id` is the IOAS
   for CREATE_ACCESS and the access descriptor for the others. */
#define CIOMMUFD_MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES (1u << 0)
#define CIOMMUFD_MOCK_FLAGS_ACCESS_WRITE (1u << 0)
#define CIOMMUFD_MOCK_FLAGS_ACCESS_SYZ   (1u << 16)
#define CIOMMUFD_MOCK_ACCESS_RW_WRITE     (1u << 0)
#define CIOMMUFD_MOCK_ACCESS_RW_SLOW_PATH (1u << 2)

/* The mock IOMMU's nested (stage-1) data and its invalidation entries. */
#define CIOMMUFD_HWPT_DATA_SELFTEST            0xdeadu
#define CIOMMUFD_HWPT_INVALIDATE_DATA_SELFTEST 0xdeadbeefu
#define CIOMMUFD_TEST_INVALIDATE_FLAG_ALL      (1u << 0)

/* The mock IOMMU's vIOMMU type and its driver data, and its vEVENTQ type and event
   (later test kernels; 7.2 has them). */
#define CIOMMUFD_VIOMMU_TYPE_SELFTEST  0xdeadbeefu
#define CIOMMUFD_VEVENTQ_TYPE_SELFTEST 0xbeefbeefu
#define CIOMMUFD_HW_QUEUE_TYPE_SELFTEST 0xdeadbeefu
/* The mock vIOMMU's invalidation entries: {u32 flags, u32 vdev_id (a virtual id), u32 cache_id},
   flag bit 0 invalidates every one of the device's four cache slots. */
#define CIOMMUFD_VIOMMU_INVALIDATE_DATA_SELFTEST 0xdeadbeefu

struct ciommufd_iommu_viommu_selftest {
  uint32_t in_data;
  uint32_t out_data;
  ciommufd_aligned_u64 out_mmap_offset;
  ciommufd_aligned_u64 out_mmap_length;
};

struct ciommufd_iommu_viommu_event_selftest {
  uint32_t virt_id;
};

#define CIOMMUFD_MOCK_APERTURE_START (1ull << 24)
#define CIOMMUFD_MOCK_APERTURE_LAST  ((1ull << 31) - 1)
#define CIOMMUFD_MOCK_FLAGS_DEVICE_NO_DIRTY  (1u << 0)
#define CIOMMUFD_MOCK_FLAGS_DEVICE_HUGE_IOVA (1u << 1) /* 6.12 only */
#define CIOMMUFD_MOCK_FLAGS_DEVICE_PASID     (1u << 2) /* later test kernels */

/* struct iommu_test_cmd: a 16-byte header, a union of per-op payloads at offset 16 (48
   bytes, the largest member), and `last` at 64. The payloads are the structs below. */
struct ciommufd_iommu_test_cmd {
  uint32_t size;
  uint32_t op;
  uint32_t id;
  uint32_t __reserved;
  ciommufd_aligned_u64 payload[6];
  uint32_t last;
};
/* The smallest size IOMMU_TEST_CMD accepts: offsetofend(last). */
#define CIOMMUFD_TEST_CMD_MIN_SIZE 68u

struct ciommufd_iommu_test_add_reserved {
  ciommufd_aligned_u64 start;
  ciommufd_aligned_u64 length;
};

struct ciommufd_iommu_test_mock_domain {
  uint32_t out_stdev_id;
  uint32_t out_hwpt_id;
  uint32_t out_idev_id;
  uint32_t dev_flags; /* MOCK_DOMAIN_FLAGS only */
};

struct ciommufd_iommu_test_mock_domain_replace {
  uint32_t pt_id;
};

struct ciommufd_iommu_test_dirty {
  uint32_t flags;
  ciommufd_aligned_u64 iova;
  ciommufd_aligned_u64 length;
  ciommufd_aligned_u64 page_size;
  ciommufd_aligned_u64 uptr;
  ciommufd_aligned_u64 out_nr_dirty;
};

/* ---------------------------------------------------------------- VFIO */
#define CIOMMUFD_VFIO_API_VERSION     0
#define CIOMMUFD_VFIO_TYPE1_IOMMU     1
#define CIOMMUFD_VFIO_TYPE1v2_IOMMU   3
#define CIOMMUFD_VFIO_DMA_CC_IOMMU    4
#define CIOMMUFD_VFIO_NOIOMMU_IOMMU   8
#define CIOMMUFD_VFIO_UNMAP_ALL       9

struct ciommufd_vfio_info_cap_header {
  uint16_t id;
  uint16_t version;
  uint32_t next; /* offset of the next capability from the start of the info struct; 0 ends */
};

#define CIOMMUFD_VFIO_GROUP_FLAGS_VIABLE        (1u << 0)
#define CIOMMUFD_VFIO_GROUP_FLAGS_CONTAINER_SET (1u << 1)

struct ciommufd_vfio_group_status {
  uint32_t argsz;
  uint32_t flags;
};

#define CIOMMUFD_VFIO_DEVICE_FLAGS_RESET    (1u << 0)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_PCI      (1u << 1)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_PLATFORM (1u << 2)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_AMBA     (1u << 3)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_CCW      (1u << 4)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_AP       (1u << 5)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_FSL_MC   (1u << 6)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_CAPS     (1u << 7)
#define CIOMMUFD_VFIO_DEVICE_FLAGS_CDX      (1u << 8)

struct ciommufd_vfio_device_info {
  uint32_t argsz;
  uint32_t flags;
  uint32_t num_regions;
  uint32_t num_irqs;
  uint32_t cap_offset;
  uint32_t pad; /* added after Linux 6.1; older headers end at cap_offset */
};
/* The smallest argsz VFIO_DEVICE_GET_INFO accepts. */
#define CIOMMUFD_VFIO_DEVICE_INFO_MIN_ARGSZ 16u

#define CIOMMUFD_VFIO_REGION_INFO_FLAG_READ  (1u << 0)
#define CIOMMUFD_VFIO_REGION_INFO_FLAG_WRITE (1u << 1)
#define CIOMMUFD_VFIO_REGION_INFO_FLAG_MMAP  (1u << 2)
#define CIOMMUFD_VFIO_REGION_INFO_FLAG_CAPS  (1u << 3)

struct ciommufd_vfio_region_info {
  uint32_t argsz;
  uint32_t flags;
  uint32_t index;
  uint32_t cap_offset;
  ciommufd_aligned_u64 size;
  ciommufd_aligned_u64 offset;
};

#define CIOMMUFD_VFIO_REGION_INFO_CAP_SPARSE_MMAP 1
#define CIOMMUFD_VFIO_REGION_INFO_CAP_TYPE        2

struct ciommufd_vfio_region_sparse_mmap_area {
  ciommufd_aligned_u64 offset;
  ciommufd_aligned_u64 size;
};

struct ciommufd_vfio_region_info_cap_sparse_mmap {
  struct ciommufd_vfio_info_cap_header header;
  uint32_t nr_areas;
  uint32_t reserved;
  struct ciommufd_vfio_region_sparse_mmap_area areas[];
};

struct ciommufd_vfio_region_info_cap_type {
  struct ciommufd_vfio_info_cap_header header;
  uint32_t type;
  uint32_t subtype;
};

#define CIOMMUFD_VFIO_IRQ_INFO_EVENTFD    (1u << 0)
#define CIOMMUFD_VFIO_IRQ_INFO_MASKABLE   (1u << 1)
#define CIOMMUFD_VFIO_IRQ_INFO_AUTOMASKED (1u << 2)
#define CIOMMUFD_VFIO_IRQ_INFO_NORESIZE   (1u << 3)

struct ciommufd_vfio_irq_info {
  uint32_t argsz;
  uint32_t flags;
  uint32_t index;
  uint32_t count;
};

#define CIOMMUFD_VFIO_IRQ_SET_DATA_NONE      (1u << 0)
#define CIOMMUFD_VFIO_IRQ_SET_DATA_BOOL      (1u << 1)
#define CIOMMUFD_VFIO_IRQ_SET_DATA_EVENTFD   (1u << 2)
#define CIOMMUFD_VFIO_IRQ_SET_ACTION_MASK    (1u << 3)
#define CIOMMUFD_VFIO_IRQ_SET_ACTION_UNMASK  (1u << 4)
#define CIOMMUFD_VFIO_IRQ_SET_ACTION_TRIGGER (1u << 5)

struct ciommufd_vfio_irq_set {
  uint32_t argsz;
  uint32_t flags;
  uint32_t index;
  uint32_t start;
  uint32_t count;
  uint8_t data[];
};

#define CIOMMUFD_VFIO_PCI_BAR0_REGION_INDEX   0
#define CIOMMUFD_VFIO_PCI_ROM_REGION_INDEX    6
#define CIOMMUFD_VFIO_PCI_CONFIG_REGION_INDEX 7
#define CIOMMUFD_VFIO_PCI_VGA_REGION_INDEX    8
#define CIOMMUFD_VFIO_PCI_NUM_REGIONS         9

#define CIOMMUFD_VFIO_PCI_INTX_IRQ_INDEX 0
#define CIOMMUFD_VFIO_PCI_MSI_IRQ_INDEX  1
#define CIOMMUFD_VFIO_PCI_MSIX_IRQ_INDEX 2
#define CIOMMUFD_VFIO_PCI_ERR_IRQ_INDEX  3
#define CIOMMUFD_VFIO_PCI_REQ_IRQ_INDEX  4
#define CIOMMUFD_VFIO_PCI_NUM_IRQS       5

#define CIOMMUFD_VFIO_DEVICE_FEATURE_MASK  0xffffu
#define CIOMMUFD_VFIO_DEVICE_FEATURE_GET   (1u << 16)
#define CIOMMUFD_VFIO_DEVICE_FEATURE_SET   (1u << 17)
#define CIOMMUFD_VFIO_DEVICE_FEATURE_PROBE (1u << 18)

struct ciommufd_vfio_device_feature {
  uint32_t argsz;
  uint32_t flags;
  uint8_t data[];
};

/* Feature ids (the low 16 bits of vfio_device_feature.flags). */
#define CIOMMUFD_VFIO_DEVICE_FEATURE_PCI_VF_TOKEN                 0
#define CIOMMUFD_VFIO_DEVICE_FEATURE_MIGRATION                    1
#define CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE             2
#define CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY              3
#define CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP  4
#define CIOMMUFD_VFIO_DEVICE_FEATURE_LOW_POWER_EXIT               5
#define CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_START            6
#define CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP             7
#define CIOMMUFD_VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT           8
#define CIOMMUFD_VFIO_DEVICE_FEATURE_MIG_DATA_SIZE                9

#define CIOMMUFD_VFIO_MIGRATION_STOP_COPY (1u << 0)
#define CIOMMUFD_VFIO_MIGRATION_P2P       (1u << 1)
#define CIOMMUFD_VFIO_MIGRATION_PRE_COPY  (1u << 2)

struct ciommufd_vfio_device_feature_migration {
  uint64_t flags;
};

struct ciommufd_vfio_device_feature_mig_state {
  uint32_t device_state;
  int32_t data_fd;
};

#define CIOMMUFD_VFIO_DEVICE_STATE_ERROR        0
#define CIOMMUFD_VFIO_DEVICE_STATE_STOP         1
#define CIOMMUFD_VFIO_DEVICE_STATE_RUNNING      2
#define CIOMMUFD_VFIO_DEVICE_STATE_STOP_COPY    3
#define CIOMMUFD_VFIO_DEVICE_STATE_RESUMING     4
#define CIOMMUFD_VFIO_DEVICE_STATE_RUNNING_P2P  5
#define CIOMMUFD_VFIO_DEVICE_STATE_PRE_COPY     6
#define CIOMMUFD_VFIO_DEVICE_STATE_PRE_COPY_P2P 7

struct ciommufd_vfio_precopy_info {
  uint32_t argsz;
  uint32_t flags;
  uint64_t initial_bytes;
  uint64_t dirty_bytes;
};

struct ciommufd_vfio_device_feature_mig_data_size {
  uint64_t stop_copy_length;
};

struct ciommufd_vfio_device_low_power_entry_with_wakeup {
  int32_t wakeup_eventfd;
  uint32_t reserved;
};

struct ciommufd_vfio_device_feature_dma_logging_control {
  uint64_t page_size;
  uint32_t num_ranges;
  uint32_t __reserved;
  uint64_t ranges;
};

struct ciommufd_vfio_device_feature_dma_logging_range {
  uint64_t iova;
  uint64_t length;
};

struct ciommufd_vfio_device_feature_dma_logging_report {
  uint64_t iova;
  uint64_t length;
  uint64_t page_size;
  uint64_t bitmap;
};

#define CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID       (1u << 0)
#define CIOMMUFD_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED (1u << 1)

/* group_id (the group form) or devid (the iommufd form), then the device's address. */
struct ciommufd_vfio_pci_dependent_device {
  uint32_t group_id;
  uint16_t segment;
  uint8_t bus;
  uint8_t devfn;
};

struct ciommufd_vfio_pci_hot_reset_info {
  uint32_t argsz;
  uint32_t flags;
  uint32_t count;
  struct ciommufd_vfio_pci_dependent_device devices[];
};

struct ciommufd_vfio_pci_hot_reset {
  uint32_t argsz;
  uint32_t flags;
  uint32_t count;
  int32_t group_fds[];
};

struct ciommufd_vfio_device_bind_iommufd {
  uint32_t argsz;
  uint32_t flags;
  int32_t iommufd;
  uint32_t out_devid;
};

struct ciommufd_vfio_device_attach_iommufd_pt {
  uint32_t argsz;
  uint32_t flags;
  uint32_t pt_id;
};

struct ciommufd_vfio_device_detach_iommufd_pt {
  uint32_t argsz;
  uint32_t flags;
};

#define CIOMMUFD_VFIO_IOMMU_INFO_PGSIZES (1u << 0)
#define CIOMMUFD_VFIO_IOMMU_INFO_CAPS    (1u << 1)

struct ciommufd_vfio_iommu_type1_info {
  uint32_t argsz;
  uint32_t flags;
  ciommufd_aligned_u64 iova_pgsizes;
  uint32_t cap_offset;
  uint32_t pad; /* added after Linux 6.1; older headers end at cap_offset */
};

#define CIOMMUFD_VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE 1

struct ciommufd_vfio_iova_range {
  uint64_t start;
  uint64_t end;
};

struct ciommufd_vfio_iommu_type1_info_cap_iova_range {
  struct ciommufd_vfio_info_cap_header header;
  uint32_t nr_iovas;
  uint32_t reserved;
  struct ciommufd_vfio_iova_range iova_ranges[];
};

#define CIOMMUFD_VFIO_DMA_MAP_FLAG_READ  (1u << 0)
#define CIOMMUFD_VFIO_DMA_MAP_FLAG_WRITE (1u << 1)

struct ciommufd_vfio_iommu_type1_dma_map {
  uint32_t argsz;
  uint32_t flags;
  uint64_t vaddr;
  uint64_t iova;
  uint64_t size;
};

#define CIOMMUFD_VFIO_DMA_UNMAP_FLAG_ALL (1u << 1)

struct ciommufd_vfio_iommu_type1_dma_unmap {
  uint32_t argsz;
  uint32_t flags;
  uint64_t iova;
  uint64_t size;
  uint8_t data[];
};

#endif
