/*
 * iommufd-floor: the C floor of the lab benchmark, built as a shared library against the
 * kernel's own uAPI headers and loaded by `iommufd-bench --lab CDEV FLOOR.so`. It makes
 * the same calls the Swift side makes through the API, on the Swift side's own iommufd,
 * IOAS, device and buffer, so that both run in one process on the same objects, batch
 * after batch:
 *
 *   double iommufd_floor_batch(const char *operation, long iterations, int iommufd,
 *                              uint32_t ioas, int device, void *buffer, uint64_t length);
 *
 * returns the nanoseconds per operation of one batch of `iterations`. OPERATION is
 * map-unmap-4k, map-unmap-64m, option-get, iova-ranges or attach-detach (the device
 * detached before the batch). A failed call returns -errno; an unknown operation -EINVAL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* Returns -errno from the calling function on a failed call. */
#define CHECK(call)          \
  do {                       \
    if ((call) < 0) return -errno; \
  } while (0)

static uint64_t now(void) {
  struct timespec time;
  clock_gettime(CLOCK_MONOTONIC, &time);
  return (uint64_t)time.tv_sec * 1000000000u + (uint64_t)time.tv_nsec;
}

static int map_unmap(int iommufd, uint32_t ioas, void *buffer, uint64_t length, long iterations) {
  for (long i = 0; i < iterations; i++) {
    struct iommu_ioas_map map = {
      .size = sizeof(map),
      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
      .ioas_id = ioas, .user_va = (uintptr_t)buffer, .length = length, .iova = 0x40000000,
    };
    CHECK(ioctl(iommufd, IOMMU_IOAS_MAP, &map));
    struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = ioas, .iova = map.iova, .length = length };
    CHECK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap));
  }
  return 0;
}

double iommufd_floor_batch(const char *operation, long iterations, int iommufd, uint32_t ioas, int device, void *buffer,
                           uint64_t length) {
  if (iterations < 1) return -EINVAL;
  uint64_t start = now();
  if (strcmp(operation, "map-unmap-4k") == 0 || strcmp(operation, "map-unmap-64m") == 0) {
    int result = map_unmap(iommufd, ioas, buffer, length, iterations);
    if (result < 0) return result;
  } else if (strcmp(operation, "option-get") == 0) {
    for (long i = 0; i < iterations; i++) {
      struct iommu_option option = {
        .size = sizeof(option), .option_id = IOMMU_OPTION_HUGE_PAGES, .op = IOMMU_OPTION_OP_GET, .object_id = ioas,
      };
      CHECK(ioctl(iommufd, IOMMU_OPTION, &option));
    }
  } else if (strcmp(operation, "iova-ranges") == 0) {
    for (long i = 0; i < iterations; i++) {
      struct iommu_iova_range ranges[4];
      struct iommu_ioas_iova_ranges request = {
        .size = sizeof(request), .ioas_id = ioas, .num_iovas = 4, .allowed_iovas = (uintptr_t)ranges,
      };
      CHECK(ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &request));
    }
  } else if (strcmp(operation, "attach-detach") == 0) {
    for (long i = 0; i < iterations; i++) {
      struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas };
      CHECK(ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
      struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
      CHECK(ioctl(device, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach));
    }
  } else {
    return -EINVAL;
  }
  return (double)(now() - start) / (double)iterations;
}
