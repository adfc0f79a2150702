/* Names the iommufd selftest in Debian's linux-source-6.12 uses but that kernel's own uAPI
 * headers lack (the shipped selftest is newer than the shipped kernel). Values are those of
 * later kernels' uAPI; the tests that depend on them fail on the 6.12 kernel, and the
 * comparison expects the same answer from the simulator as 6.12. */
#include <linux/iommufd.h>
#ifndef IOMMU_HW_INFO_FLAG_INPUT_TYPE
#define IOMMU_HW_INFO_FLAG_INPUT_TYPE (1 << 0)
#endif
#define IOMMU_HW_INFO_TYPE_DEFAULT 0
#define MOCK_FLAGS_DEVICE_PASID (1 << 2)
#define MOCK_PASID_WIDTH 20
/* Later kernels put in_data_type in a union with out_data_type. */
#define in_data_type out_data_type
