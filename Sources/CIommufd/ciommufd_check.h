/*
 * Compile-time proof that ciommufd_uapi.h matches the installed kernel headers wherever
 * those headers define the same ABI: same ioctl numbers, same struct sizes, same offset
 * and size for every field. A mismatch stops the build of the module.
 *
 * Headers differ by kernel version, and the kernel grows some structs at the end while
 * keeping old sizes valid. So:
 *  - a struct or ioctl is checked only when the installed header has its ioctl number
 *    (Debian 12's 6.1 headers have no <linux/iommufd.h> and no VFIO cdev ioctls);
 *  - fields the kernel added to a struct after it first appeared are checked in strict
 *    mode, which the package's ABI test turns on (-DCIOMMUFD_ABI_STRICT) against the
 *    exported 6.12 uAPI headers. Strict mode also fails if anything is missing there;
 *  - the requests added after 6.12 are checked wherever the headers have them, and with
 *    every size in 7.2 strict mode (-DCIOMMUFD_ABI_STRICT_7_2), which the ABI test turns on
 *    against the exported 7.2 uAPI headers.
 */
#ifndef CIOMMUFD_CHECK_H
#define CIOMMUFD_CHECK_H

#include <stddef.h>
#include <linux/vfio.h>
#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#endif

#define CIOMMUFD_SAME_IOCTL(name) \
  _Static_assert(CIOMMUFD_##name == (name), #name " differs from the system header")
#define CIOMMUFD_SAME_VALUE(name) \
  _Static_assert(CIOMMUFD_##name == (name), #name " differs from the system header")
#define CIOMMUFD_SAME_SIZE(s) \
  _Static_assert(sizeof(struct ciommufd_##s) == sizeof(struct s), \
                 "sizeof(struct " #s ") differs from the system header")
#define CIOMMUFD_SAME_FIELD(s, f) \
  _Static_assert(offsetof(struct ciommufd_##s, f) == offsetof(struct s, f) && \
                 sizeof(((struct ciommufd_##s *)0)->f) == sizeof(((struct s *)0)->f), \
                 "struct " #s " field " #f " differs from the system header")
/* A flexible array member: only its offset can be compared. */
#define CIOMMUFD_SAME_ARRAY(s, f) \
  _Static_assert(offsetof(struct ciommufd_##s, f) == offsetof(struct s, f), \
                 "struct " #s " array " #f " differs from the system header")
/* A struct that older headers end before its trailing pad field. */
#define CIOMMUFD_SAME_SIZE_OR_BEFORE_PAD(s) \
  _Static_assert(sizeof(struct ciommufd_##s) == sizeof(struct s) || \
                 sizeof(struct s) == offsetof(struct ciommufd_##s, pad), \
                 "sizeof(struct " #s ") differs from the system header")

#if defined(CIOMMUFD_ABI_STRICT)
#if !__has_include(<linux/iommufd.h>) || !defined(IOMMU_FAULT_QUEUE_ALLOC) || \
    !defined(VFIO_DEVICE_DETACH_IOMMUFD_PT)
#error "CIOMMUFD_ABI_STRICT needs Linux 6.12 or newer uAPI headers first on the include path"
#endif
#endif
#if defined(CIOMMUFD_ABI_STRICT_7_2)
#if !__has_include(<linux/iommufd.h>) || !defined(IOMMU_HW_QUEUE_ALLOC) || !defined(VFIO_DEVICE_BIND_FLAG_TOKEN)
#error "CIOMMUFD_ABI_STRICT_7_2 needs Linux 7.2 uAPI headers first on the include path"
#endif
#endif

/* ------------------------------------------------------------------ VFIO (all versions) */
CIOMMUFD_SAME_VALUE(VFIO_API_VERSION);
CIOMMUFD_SAME_VALUE(VFIO_TYPE1_IOMMU);
CIOMMUFD_SAME_VALUE(VFIO_TYPE1v2_IOMMU);
CIOMMUFD_SAME_VALUE(VFIO_DMA_CC_IOMMU);
CIOMMUFD_SAME_VALUE(VFIO_NOIOMMU_IOMMU);
CIOMMUFD_SAME_VALUE(VFIO_UNMAP_ALL);
CIOMMUFD_SAME_IOCTL(VFIO_GET_API_VERSION);
CIOMMUFD_SAME_IOCTL(VFIO_CHECK_EXTENSION);
CIOMMUFD_SAME_IOCTL(VFIO_SET_IOMMU);
CIOMMUFD_SAME_IOCTL(VFIO_GROUP_GET_STATUS);
CIOMMUFD_SAME_IOCTL(VFIO_GROUP_SET_CONTAINER);
CIOMMUFD_SAME_IOCTL(VFIO_GROUP_UNSET_CONTAINER);
CIOMMUFD_SAME_IOCTL(VFIO_GROUP_GET_DEVICE_FD);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_GET_INFO);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_GET_REGION_INFO);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_GET_IRQ_INFO);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_SET_IRQS);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_RESET);
CIOMMUFD_SAME_IOCTL(VFIO_IOMMU_GET_INFO);
CIOMMUFD_SAME_IOCTL(VFIO_IOMMU_MAP_DMA);
CIOMMUFD_SAME_IOCTL(VFIO_IOMMU_UNMAP_DMA);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_FEATURE);

CIOMMUFD_SAME_SIZE(vfio_info_cap_header);
CIOMMUFD_SAME_FIELD(vfio_info_cap_header, id);
CIOMMUFD_SAME_FIELD(vfio_info_cap_header, version);
CIOMMUFD_SAME_FIELD(vfio_info_cap_header, next);

CIOMMUFD_SAME_SIZE(vfio_group_status);
CIOMMUFD_SAME_FIELD(vfio_group_status, argsz);
CIOMMUFD_SAME_FIELD(vfio_group_status, flags);
CIOMMUFD_SAME_VALUE(VFIO_GROUP_FLAGS_VIABLE);
CIOMMUFD_SAME_VALUE(VFIO_GROUP_FLAGS_CONTAINER_SET);

CIOMMUFD_SAME_SIZE_OR_BEFORE_PAD(vfio_device_info);
CIOMMUFD_SAME_FIELD(vfio_device_info, argsz);
CIOMMUFD_SAME_FIELD(vfio_device_info, flags);
CIOMMUFD_SAME_FIELD(vfio_device_info, num_regions);
CIOMMUFD_SAME_FIELD(vfio_device_info, num_irqs);
CIOMMUFD_SAME_FIELD(vfio_device_info, cap_offset);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_RESET);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_PCI);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_PLATFORM);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_AMBA);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_CCW);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_AP);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_FSL_MC);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_CAPS);

CIOMMUFD_SAME_SIZE(vfio_region_info);
CIOMMUFD_SAME_FIELD(vfio_region_info, argsz);
CIOMMUFD_SAME_FIELD(vfio_region_info, flags);
CIOMMUFD_SAME_FIELD(vfio_region_info, index);
CIOMMUFD_SAME_FIELD(vfio_region_info, cap_offset);
CIOMMUFD_SAME_FIELD(vfio_region_info, size);
CIOMMUFD_SAME_FIELD(vfio_region_info, offset);
CIOMMUFD_SAME_VALUE(VFIO_REGION_INFO_FLAG_READ);
CIOMMUFD_SAME_VALUE(VFIO_REGION_INFO_FLAG_WRITE);
CIOMMUFD_SAME_VALUE(VFIO_REGION_INFO_FLAG_MMAP);
CIOMMUFD_SAME_VALUE(VFIO_REGION_INFO_FLAG_CAPS);
CIOMMUFD_SAME_VALUE(VFIO_REGION_INFO_CAP_SPARSE_MMAP);
CIOMMUFD_SAME_VALUE(VFIO_REGION_INFO_CAP_TYPE);

CIOMMUFD_SAME_SIZE(vfio_region_sparse_mmap_area);
CIOMMUFD_SAME_FIELD(vfio_region_sparse_mmap_area, offset);
CIOMMUFD_SAME_FIELD(vfio_region_sparse_mmap_area, size);
CIOMMUFD_SAME_SIZE(vfio_region_info_cap_sparse_mmap);
CIOMMUFD_SAME_FIELD(vfio_region_info_cap_sparse_mmap, header);
CIOMMUFD_SAME_FIELD(vfio_region_info_cap_sparse_mmap, nr_areas);
CIOMMUFD_SAME_FIELD(vfio_region_info_cap_sparse_mmap, reserved);
CIOMMUFD_SAME_ARRAY(vfio_region_info_cap_sparse_mmap, areas);
CIOMMUFD_SAME_SIZE(vfio_region_info_cap_type);
CIOMMUFD_SAME_FIELD(vfio_region_info_cap_type, header);
CIOMMUFD_SAME_FIELD(vfio_region_info_cap_type, type);
CIOMMUFD_SAME_FIELD(vfio_region_info_cap_type, subtype);

CIOMMUFD_SAME_SIZE(vfio_irq_info);
CIOMMUFD_SAME_FIELD(vfio_irq_info, argsz);
CIOMMUFD_SAME_FIELD(vfio_irq_info, flags);
CIOMMUFD_SAME_FIELD(vfio_irq_info, index);
CIOMMUFD_SAME_FIELD(vfio_irq_info, count);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_INFO_EVENTFD);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_INFO_MASKABLE);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_INFO_AUTOMASKED);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_INFO_NORESIZE);

CIOMMUFD_SAME_SIZE(vfio_irq_set);
CIOMMUFD_SAME_FIELD(vfio_irq_set, argsz);
CIOMMUFD_SAME_FIELD(vfio_irq_set, flags);
CIOMMUFD_SAME_FIELD(vfio_irq_set, index);
CIOMMUFD_SAME_FIELD(vfio_irq_set, start);
CIOMMUFD_SAME_FIELD(vfio_irq_set, count);
CIOMMUFD_SAME_ARRAY(vfio_irq_set, data);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_SET_DATA_NONE);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_SET_DATA_BOOL);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_SET_DATA_EVENTFD);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_SET_ACTION_MASK);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_SET_ACTION_UNMASK);
CIOMMUFD_SAME_VALUE(VFIO_IRQ_SET_ACTION_TRIGGER);

CIOMMUFD_SAME_VALUE(VFIO_PCI_BAR0_REGION_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_ROM_REGION_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_CONFIG_REGION_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_VGA_REGION_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_NUM_REGIONS);
CIOMMUFD_SAME_VALUE(VFIO_PCI_INTX_IRQ_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_MSI_IRQ_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_MSIX_IRQ_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_ERR_IRQ_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_REQ_IRQ_INDEX);
CIOMMUFD_SAME_VALUE(VFIO_PCI_NUM_IRQS);

CIOMMUFD_SAME_SIZE(vfio_device_feature);
CIOMMUFD_SAME_FIELD(vfio_device_feature, argsz);
CIOMMUFD_SAME_FIELD(vfio_device_feature, flags);
CIOMMUFD_SAME_ARRAY(vfio_device_feature, data);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FEATURE_MASK);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FEATURE_GET);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FEATURE_SET);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FEATURE_PROBE);

CIOMMUFD_SAME_SIZE_OR_BEFORE_PAD(vfio_iommu_type1_info);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info, argsz);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info, flags);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info, iova_pgsizes);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info, cap_offset);
CIOMMUFD_SAME_VALUE(VFIO_IOMMU_INFO_PGSIZES);
CIOMMUFD_SAME_VALUE(VFIO_IOMMU_INFO_CAPS);
CIOMMUFD_SAME_VALUE(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
CIOMMUFD_SAME_SIZE(vfio_iova_range);
CIOMMUFD_SAME_FIELD(vfio_iova_range, start);
CIOMMUFD_SAME_FIELD(vfio_iova_range, end);
CIOMMUFD_SAME_SIZE(vfio_iommu_type1_info_cap_iova_range);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info_cap_iova_range, header);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info_cap_iova_range, nr_iovas);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info_cap_iova_range, reserved);
CIOMMUFD_SAME_ARRAY(vfio_iommu_type1_info_cap_iova_range, iova_ranges);

CIOMMUFD_SAME_SIZE(vfio_iommu_type1_dma_map);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_map, argsz);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_map, flags);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_map, vaddr);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_map, iova);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_map, size);
CIOMMUFD_SAME_VALUE(VFIO_DMA_MAP_FLAG_READ);
CIOMMUFD_SAME_VALUE(VFIO_DMA_MAP_FLAG_WRITE);
CIOMMUFD_SAME_SIZE(vfio_iommu_type1_dma_unmap);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_unmap, argsz);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_unmap, flags);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_unmap, iova);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_dma_unmap, size);
CIOMMUFD_SAME_ARRAY(vfio_iommu_type1_dma_unmap, data);

#if defined(CIOMMUFD_ABI_STRICT)
CIOMMUFD_SAME_SIZE(vfio_device_info);
CIOMMUFD_SAME_FIELD(vfio_device_info, pad);
CIOMMUFD_SAME_VALUE(VFIO_DEVICE_FLAGS_CDX);
CIOMMUFD_SAME_SIZE(vfio_iommu_type1_info);
CIOMMUFD_SAME_FIELD(vfio_iommu_type1_info, pad);
#endif

/* ------------------------------------------------------------------ VFIO cdev (6.6+) */
#ifdef VFIO_DEVICE_BIND_IOMMUFD
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_BIND_IOMMUFD);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_ATTACH_IOMMUFD_PT);
CIOMMUFD_SAME_IOCTL(VFIO_DEVICE_DETACH_IOMMUFD_PT);
CIOMMUFD_SAME_FIELD(vfio_device_bind_iommufd, argsz);
CIOMMUFD_SAME_FIELD(vfio_device_bind_iommufd, flags);
CIOMMUFD_SAME_FIELD(vfio_device_bind_iommufd, iommufd);
CIOMMUFD_SAME_FIELD(vfio_device_bind_iommufd, out_devid);
CIOMMUFD_SAME_FIELD(vfio_device_attach_iommufd_pt, argsz);
CIOMMUFD_SAME_FIELD(vfio_device_attach_iommufd_pt, flags);
CIOMMUFD_SAME_FIELD(vfio_device_attach_iommufd_pt, pt_id);
CIOMMUFD_SAME_FIELD(vfio_device_detach_iommufd_pt, argsz);
CIOMMUFD_SAME_FIELD(vfio_device_detach_iommufd_pt, flags);
/* 6.15 and 6.17 append pasid and token fields; the 6.12 sizes are still accepted. */
#if defined(CIOMMUFD_ABI_STRICT) && !defined(VFIO_DEVICE_ATTACH_PASID)
CIOMMUFD_SAME_SIZE(vfio_device_bind_iommufd);
CIOMMUFD_SAME_SIZE(vfio_device_attach_iommufd_pt);
CIOMMUFD_SAME_SIZE(vfio_device_detach_iommufd_pt);
#endif
#endif

/* ------------------------------------------------------------------ iommufd core (6.2+) */
#ifdef IOMMU_DESTROY
CIOMMUFD_SAME_IOCTL(IOMMU_DESTROY);
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_ALLOC);
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_ALLOW_IOVAS);
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_COPY);
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_IOVA_RANGES);
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_MAP);
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_UNMAP);
CIOMMUFD_SAME_IOCTL(IOMMU_OPTION);
CIOMMUFD_SAME_IOCTL(IOMMU_VFIO_IOAS);

CIOMMUFD_SAME_SIZE(iommu_destroy);
CIOMMUFD_SAME_FIELD(iommu_destroy, size);
CIOMMUFD_SAME_FIELD(iommu_destroy, id);

CIOMMUFD_SAME_SIZE(iommu_ioas_alloc);
CIOMMUFD_SAME_FIELD(iommu_ioas_alloc, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_alloc, flags);
CIOMMUFD_SAME_FIELD(iommu_ioas_alloc, out_ioas_id);

CIOMMUFD_SAME_SIZE(iommu_iova_range);
CIOMMUFD_SAME_FIELD(iommu_iova_range, start);
CIOMMUFD_SAME_FIELD(iommu_iova_range, last);

CIOMMUFD_SAME_SIZE(iommu_ioas_iova_ranges);
CIOMMUFD_SAME_FIELD(iommu_ioas_iova_ranges, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_iova_ranges, ioas_id);
CIOMMUFD_SAME_FIELD(iommu_ioas_iova_ranges, num_iovas);
CIOMMUFD_SAME_FIELD(iommu_ioas_iova_ranges, __reserved);
CIOMMUFD_SAME_FIELD(iommu_ioas_iova_ranges, allowed_iovas);
CIOMMUFD_SAME_FIELD(iommu_ioas_iova_ranges, out_iova_alignment);

CIOMMUFD_SAME_SIZE(iommu_ioas_allow_iovas);
CIOMMUFD_SAME_FIELD(iommu_ioas_allow_iovas, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_allow_iovas, ioas_id);
CIOMMUFD_SAME_FIELD(iommu_ioas_allow_iovas, num_iovas);
CIOMMUFD_SAME_FIELD(iommu_ioas_allow_iovas, __reserved);
CIOMMUFD_SAME_FIELD(iommu_ioas_allow_iovas, allowed_iovas);

CIOMMUFD_SAME_SIZE(iommu_ioas_map);
CIOMMUFD_SAME_FIELD(iommu_ioas_map, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_map, flags);
CIOMMUFD_SAME_FIELD(iommu_ioas_map, ioas_id);
CIOMMUFD_SAME_FIELD(iommu_ioas_map, __reserved);
CIOMMUFD_SAME_FIELD(iommu_ioas_map, user_va);
CIOMMUFD_SAME_FIELD(iommu_ioas_map, length);
CIOMMUFD_SAME_FIELD(iommu_ioas_map, iova);
_Static_assert(CIOMMUFD_IOAS_MAP_FIXED_IOVA == IOMMU_IOAS_MAP_FIXED_IOVA, "MAP_FIXED_IOVA differs");
_Static_assert(CIOMMUFD_IOAS_MAP_WRITEABLE == IOMMU_IOAS_MAP_WRITEABLE, "MAP_WRITEABLE differs");
_Static_assert(CIOMMUFD_IOAS_MAP_READABLE == IOMMU_IOAS_MAP_READABLE, "MAP_READABLE differs");

CIOMMUFD_SAME_SIZE(iommu_ioas_copy);
CIOMMUFD_SAME_FIELD(iommu_ioas_copy, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_copy, flags);
CIOMMUFD_SAME_FIELD(iommu_ioas_copy, dst_ioas_id);
CIOMMUFD_SAME_FIELD(iommu_ioas_copy, src_ioas_id);
CIOMMUFD_SAME_FIELD(iommu_ioas_copy, length);
CIOMMUFD_SAME_FIELD(iommu_ioas_copy, dst_iova);
CIOMMUFD_SAME_FIELD(iommu_ioas_copy, src_iova);

CIOMMUFD_SAME_SIZE(iommu_ioas_unmap);
CIOMMUFD_SAME_FIELD(iommu_ioas_unmap, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_unmap, ioas_id);
CIOMMUFD_SAME_FIELD(iommu_ioas_unmap, iova);
CIOMMUFD_SAME_FIELD(iommu_ioas_unmap, length);

CIOMMUFD_SAME_SIZE(iommu_option);
CIOMMUFD_SAME_FIELD(iommu_option, size);
CIOMMUFD_SAME_FIELD(iommu_option, option_id);
CIOMMUFD_SAME_FIELD(iommu_option, op);
CIOMMUFD_SAME_FIELD(iommu_option, __reserved);
CIOMMUFD_SAME_FIELD(iommu_option, object_id);
CIOMMUFD_SAME_FIELD(iommu_option, val64);
_Static_assert(CIOMMUFD_OPTION_RLIMIT_MODE == IOMMU_OPTION_RLIMIT_MODE, "OPTION_RLIMIT_MODE differs");
_Static_assert(CIOMMUFD_OPTION_HUGE_PAGES == IOMMU_OPTION_HUGE_PAGES, "OPTION_HUGE_PAGES differs");
_Static_assert(CIOMMUFD_OPTION_OP_SET == IOMMU_OPTION_OP_SET, "OPTION_OP_SET differs");
_Static_assert(CIOMMUFD_OPTION_OP_GET == IOMMU_OPTION_OP_GET, "OPTION_OP_GET differs");

CIOMMUFD_SAME_SIZE(iommu_vfio_ioas);
CIOMMUFD_SAME_FIELD(iommu_vfio_ioas, size);
CIOMMUFD_SAME_FIELD(iommu_vfio_ioas, ioas_id);
CIOMMUFD_SAME_FIELD(iommu_vfio_ioas, op);
CIOMMUFD_SAME_FIELD(iommu_vfio_ioas, __reserved);
_Static_assert(CIOMMUFD_VFIO_IOAS_GET == IOMMU_VFIO_IOAS_GET, "VFIO_IOAS_GET differs");
_Static_assert(CIOMMUFD_VFIO_IOAS_SET == IOMMU_VFIO_IOAS_SET, "VFIO_IOAS_SET differs");
_Static_assert(CIOMMUFD_VFIO_IOAS_CLEAR == IOMMU_VFIO_IOAS_CLEAR, "VFIO_IOAS_CLEAR differs");
#endif

/* ------------------------------------------------------------------ HW page tables (6.6+) */
#ifdef IOMMU_HWPT_ALLOC
CIOMMUFD_SAME_IOCTL(IOMMU_HWPT_ALLOC);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, size);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, flags);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, dev_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, pt_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, out_hwpt_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, __reserved);
_Static_assert(CIOMMUFD_HWPT_ALLOC_NEST_PARENT == IOMMU_HWPT_ALLOC_NEST_PARENT, "HWPT_ALLOC_NEST_PARENT differs");
#endif
#ifdef IOMMU_GET_HW_INFO
CIOMMUFD_SAME_IOCTL(IOMMU_GET_HW_INFO);
CIOMMUFD_SAME_FIELD(iommu_hw_info, size);
CIOMMUFD_SAME_FIELD(iommu_hw_info, flags);
CIOMMUFD_SAME_FIELD(iommu_hw_info, dev_id);
CIOMMUFD_SAME_FIELD(iommu_hw_info, data_len);
CIOMMUFD_SAME_FIELD(iommu_hw_info, data_uptr);
CIOMMUFD_SAME_FIELD(iommu_hw_info, out_data_type);
CIOMMUFD_SAME_SIZE(iommu_hw_info_vtd);
CIOMMUFD_SAME_FIELD(iommu_hw_info_vtd, flags);
CIOMMUFD_SAME_FIELD(iommu_hw_info_vtd, __reserved);
CIOMMUFD_SAME_FIELD(iommu_hw_info_vtd, cap_reg);
CIOMMUFD_SAME_FIELD(iommu_hw_info_vtd, ecap_reg);
_Static_assert(CIOMMUFD_HW_INFO_TYPE_NONE == IOMMU_HW_INFO_TYPE_NONE, "HW_INFO_TYPE_NONE differs");
_Static_assert(CIOMMUFD_HW_INFO_TYPE_INTEL_VTD == IOMMU_HW_INFO_TYPE_INTEL_VTD, "HW_INFO_TYPE_INTEL_VTD differs");
#endif
#ifdef IOMMU_HWPT_SET_DIRTY_TRACKING
CIOMMUFD_SAME_IOCTL(IOMMU_HWPT_SET_DIRTY_TRACKING);
CIOMMUFD_SAME_IOCTL(IOMMU_HWPT_GET_DIRTY_BITMAP);
CIOMMUFD_SAME_SIZE(iommu_hwpt_set_dirty_tracking);
CIOMMUFD_SAME_FIELD(iommu_hwpt_set_dirty_tracking, size);
CIOMMUFD_SAME_FIELD(iommu_hwpt_set_dirty_tracking, flags);
CIOMMUFD_SAME_FIELD(iommu_hwpt_set_dirty_tracking, hwpt_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_set_dirty_tracking, __reserved);
CIOMMUFD_SAME_SIZE(iommu_hwpt_get_dirty_bitmap);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, size);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, hwpt_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, flags);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, __reserved);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, iova);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, length);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, page_size);
CIOMMUFD_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, data);
_Static_assert(CIOMMUFD_HWPT_ALLOC_DIRTY_TRACKING == IOMMU_HWPT_ALLOC_DIRTY_TRACKING, "HWPT_ALLOC_DIRTY_TRACKING differs");
_Static_assert(CIOMMUFD_HWPT_DIRTY_TRACKING_ENABLE == IOMMU_HWPT_DIRTY_TRACKING_ENABLE, "DIRTY_TRACKING_ENABLE differs");
_Static_assert(CIOMMUFD_HWPT_GET_DIRTY_BITMAP_NO_CLEAR == IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, "GET_DIRTY_BITMAP_NO_CLEAR differs");
_Static_assert(CIOMMUFD_HW_CAP_DIRTY_TRACKING == IOMMU_HW_CAP_DIRTY_TRACKING, "HW_CAP_DIRTY_TRACKING differs");
#endif
#ifdef IOMMU_HWPT_INVALIDATE
CIOMMUFD_SAME_IOCTL(IOMMU_HWPT_INVALIDATE);
CIOMMUFD_SAME_SIZE(iommu_hwpt_invalidate);
CIOMMUFD_SAME_FIELD(iommu_hwpt_invalidate, size);
CIOMMUFD_SAME_FIELD(iommu_hwpt_invalidate, hwpt_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_invalidate, data_uptr);
CIOMMUFD_SAME_FIELD(iommu_hwpt_invalidate, data_type);
CIOMMUFD_SAME_FIELD(iommu_hwpt_invalidate, entry_len);
CIOMMUFD_SAME_FIELD(iommu_hwpt_invalidate, entry_num);
CIOMMUFD_SAME_FIELD(iommu_hwpt_invalidate, __reserved);
CIOMMUFD_SAME_SIZE(iommu_hwpt_vtd_s1_invalidate);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1_invalidate, addr);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1_invalidate, npages);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1_invalidate, flags);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1_invalidate, __reserved);
CIOMMUFD_SAME_SIZE(iommu_hwpt_vtd_s1);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1, flags);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1, pgtbl_addr);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1, addr_width);
CIOMMUFD_SAME_FIELD(iommu_hwpt_vtd_s1, __reserved);
_Static_assert(CIOMMUFD_HWPT_DATA_VTD_S1 == IOMMU_HWPT_DATA_VTD_S1, "HWPT_DATA_VTD_S1 differs");
_Static_assert(CIOMMUFD_HWPT_INVALIDATE_DATA_VTD_S1 == IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, "INVALIDATE_DATA_VTD_S1 differs");
#endif
#ifdef IOMMU_FAULT_QUEUE_ALLOC
CIOMMUFD_SAME_IOCTL(IOMMU_FAULT_QUEUE_ALLOC);
CIOMMUFD_SAME_SIZE(iommu_fault_alloc);
CIOMMUFD_SAME_FIELD(iommu_fault_alloc, size);
CIOMMUFD_SAME_FIELD(iommu_fault_alloc, flags);
CIOMMUFD_SAME_FIELD(iommu_fault_alloc, out_fault_id);
CIOMMUFD_SAME_FIELD(iommu_fault_alloc, out_fault_fd);
CIOMMUFD_SAME_SIZE(iommu_hwpt_pgfault);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, flags);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, dev_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, pasid);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, grpid);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, perm);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, __reserved);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, addr);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, length);
CIOMMUFD_SAME_FIELD(iommu_hwpt_pgfault, cookie);
CIOMMUFD_SAME_SIZE(iommu_hwpt_page_response);
CIOMMUFD_SAME_FIELD(iommu_hwpt_page_response, cookie);
CIOMMUFD_SAME_FIELD(iommu_hwpt_page_response, code);
_Static_assert(CIOMMUFD_HWPT_FAULT_ID_VALID == IOMMU_HWPT_FAULT_ID_VALID, "HWPT_FAULT_ID_VALID differs");
_Static_assert(CIOMMUFD_PAGE_RESP_SUCCESS == IOMMUFD_PAGE_RESP_SUCCESS, "PAGE_RESP_SUCCESS differs");
_Static_assert(CIOMMUFD_PAGE_RESP_INVALID == IOMMUFD_PAGE_RESP_INVALID, "PAGE_RESP_INVALID differs");
#endif

/* Fields added to existing structs after they first appeared: strict mode only. */
#if defined(CIOMMUFD_ABI_STRICT)
CIOMMUFD_SAME_SIZE(iommu_hwpt_alloc);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, data_type);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, data_len);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, data_uptr);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, fault_id);
CIOMMUFD_SAME_FIELD(iommu_hwpt_alloc, __reserved2);
CIOMMUFD_SAME_SIZE(iommu_hw_info);
CIOMMUFD_SAME_FIELD(iommu_hw_info, out_max_pasid_log2);
CIOMMUFD_SAME_FIELD(iommu_hw_info, __reserved);
CIOMMUFD_SAME_FIELD(iommu_hw_info, out_capabilities);
_Static_assert(CIOMMUFD_HW_CAP_PCI_PASID_EXEC == IOMMU_HW_CAP_PCI_PASID_EXEC, "HW_CAP_PCI_PASID_EXEC differs");
_Static_assert(CIOMMUFD_HW_CAP_PCI_PASID_PRIV == IOMMU_HW_CAP_PCI_PASID_PRIV, "HW_CAP_PCI_PASID_PRIV differs");
#endif

/* ------------------------------------------------------------------ after 6.12 */
#ifdef IOMMU_IOAS_MAP_FILE
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_MAP_FILE);
CIOMMUFD_SAME_SIZE(iommu_ioas_map_file);
CIOMMUFD_SAME_FIELD(iommu_ioas_map_file, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_map_file, flags);
CIOMMUFD_SAME_FIELD(iommu_ioas_map_file, ioas_id);
CIOMMUFD_SAME_FIELD(iommu_ioas_map_file, fd);
CIOMMUFD_SAME_FIELD(iommu_ioas_map_file, start);
CIOMMUFD_SAME_FIELD(iommu_ioas_map_file, length);
CIOMMUFD_SAME_FIELD(iommu_ioas_map_file, iova);
#endif
#ifdef IOMMU_VIOMMU_ALLOC
CIOMMUFD_SAME_IOCTL(IOMMU_VIOMMU_ALLOC);
CIOMMUFD_SAME_IOCTL(IOMMU_VDEVICE_ALLOC);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, size);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, flags);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, type);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, dev_id);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, hwpt_id);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, out_viommu_id);
_Static_assert(CIOMMUFD_VIOMMU_TYPE_DEFAULT == IOMMU_VIOMMU_TYPE_DEFAULT, "IOMMU_VIOMMU_TYPE_DEFAULT differs from the system header");
_Static_assert(CIOMMUFD_VIOMMU_TYPE_ARM_SMMUV3 == IOMMU_VIOMMU_TYPE_ARM_SMMUV3, "IOMMU_VIOMMU_TYPE_ARM_SMMUV3 differs from the system header");
CIOMMUFD_SAME_SIZE(iommu_vdevice_alloc);
CIOMMUFD_SAME_FIELD(iommu_vdevice_alloc, size);
CIOMMUFD_SAME_FIELD(iommu_vdevice_alloc, viommu_id);
CIOMMUFD_SAME_FIELD(iommu_vdevice_alloc, dev_id);
CIOMMUFD_SAME_FIELD(iommu_vdevice_alloc, out_vdevice_id);
CIOMMUFD_SAME_FIELD(iommu_vdevice_alloc, virt_id);
#endif
#ifdef IOMMU_IOAS_CHANGE_PROCESS
CIOMMUFD_SAME_IOCTL(IOMMU_IOAS_CHANGE_PROCESS);
CIOMMUFD_SAME_SIZE(iommu_ioas_change_process);
CIOMMUFD_SAME_FIELD(iommu_ioas_change_process, size);
CIOMMUFD_SAME_FIELD(iommu_ioas_change_process, __reserved);
#endif
#ifdef IOMMU_VEVENTQ_ALLOC
CIOMMUFD_SAME_IOCTL(IOMMU_VEVENTQ_ALLOC);
CIOMMUFD_SAME_SIZE(iommu_veventq_alloc);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, size);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, flags);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, viommu_id);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, type);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, veventq_depth);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, out_veventq_id);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, out_veventq_fd);
CIOMMUFD_SAME_FIELD(iommu_veventq_alloc, __reserved);
CIOMMUFD_SAME_SIZE(iommufd_vevent_header);
CIOMMUFD_SAME_FIELD(iommufd_vevent_header, flags);
CIOMMUFD_SAME_FIELD(iommufd_vevent_header, sequence);
CIOMMUFD_SAME_SIZE(iommu_vevent_arm_smmuv3);
_Static_assert(CIOMMUFD_VEVENTQ_TYPE_DEFAULT == IOMMU_VEVENTQ_TYPE_DEFAULT, "IOMMU_VEVENTQ_TYPE_DEFAULT differs from the system header");
_Static_assert(CIOMMUFD_VEVENTQ_TYPE_ARM_SMMUV3 == IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, "IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 differs from the system header");
_Static_assert(CIOMMUFD_VEVENTQ_FLAG_LOST_EVENTS == IOMMU_VEVENTQ_FLAG_LOST_EVENTS, "IOMMU_VEVENTQ_FLAG_LOST_EVENTS differs from the system header");
#endif
#ifdef VFIO_DEVICE_ATTACH_PASID
_Static_assert(CIOMMUFD_VFIO_DEVICE_ATTACH_PASID == VFIO_DEVICE_ATTACH_PASID, "VFIO_DEVICE_ATTACH_PASID differs from the system header");
_Static_assert(CIOMMUFD_VFIO_DEVICE_DETACH_PASID == VFIO_DEVICE_DETACH_PASID, "VFIO_DEVICE_DETACH_PASID differs from the system header");
_Static_assert(sizeof(struct ciommufd_vfio_device_attach_iommufd_pt_pasid) == sizeof(struct vfio_device_attach_iommufd_pt) &&
               offsetof(struct ciommufd_vfio_device_attach_iommufd_pt_pasid, pasid) == offsetof(struct vfio_device_attach_iommufd_pt, pasid),
               "struct vfio_device_attach_iommufd_pt with pasid differs from the system header");
_Static_assert(sizeof(struct ciommufd_vfio_device_detach_iommufd_pt_pasid) == sizeof(struct vfio_device_detach_iommufd_pt) &&
               offsetof(struct ciommufd_vfio_device_detach_iommufd_pt_pasid, pasid) == offsetof(struct vfio_device_detach_iommufd_pt, pasid),
               "struct vfio_device_detach_iommufd_pt with pasid differs from the system header");
#endif
#if defined(CIOMMUFD_ABI_STRICT_7_2)
CIOMMUFD_SAME_IOCTL(IOMMU_HW_QUEUE_ALLOC);
CIOMMUFD_SAME_SIZE(iommu_hw_queue_alloc);
_Static_assert(CIOMMUFD_HW_QUEUE_TYPE_TEGRA241_CMDQV == IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, "IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV differs from the system header");
CIOMMUFD_SAME_FIELD(iommu_hw_queue_alloc, index);
CIOMMUFD_SAME_FIELD(iommu_hw_queue_alloc, out_hw_queue_id);
CIOMMUFD_SAME_FIELD(iommu_hw_queue_alloc, nesting_parent_iova);
CIOMMUFD_SAME_FIELD(iommu_hw_queue_alloc, length);
CIOMMUFD_SAME_SIZE(iommu_viommu_alloc);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, data_len);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, __reserved);
CIOMMUFD_SAME_FIELD(iommu_viommu_alloc, data_uptr);
_Static_assert(CIOMMUFD_HWPT_ALLOC_PASID == IOMMU_HWPT_ALLOC_PASID, "IOMMU_HWPT_ALLOC_PASID differs from the system header");
CIOMMUFD_SAME_SIZE(iommu_hwpt_alloc);
CIOMMUFD_SAME_SIZE(iommu_hw_info);
CIOMMUFD_SAME_FIELD(iommu_hw_info, out_max_pasid_log2);
CIOMMUFD_SAME_FIELD(iommu_hw_info, out_capabilities);
#endif

#undef CIOMMUFD_SAME_IOCTL
#undef CIOMMUFD_SAME_VALUE
#undef CIOMMUFD_SAME_SIZE
#undef CIOMMUFD_SAME_FIELD
#undef CIOMMUFD_SAME_ARRAY
#undef CIOMMUFD_SAME_SIZE_OR_BEFORE_PAD

#endif
