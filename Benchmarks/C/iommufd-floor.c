/*
 * iommufd-floor: the C floor of the lab benchmark. It makes the same calls as
 * `iommufd-bench --lab` makes through the Swift API, with the kernel's own uAPI headers,
 * and prints the nanoseconds per operation of one timed run:
 *
 *   iommufd-floor OPERATION ITERATIONS CDEV
 *
 * OPERATION is map-unmap-4k, map-unmap-64m, option-get, iova-ranges or attach-detach.
 * The setup is the Swift side's: /dev/iommu, one IOAS, the VFIO device CDEV bound and
 * attached to it, an anonymous buffer touched before it is timed. Any failed call ends the
 * program with status 1 and the errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void check(int result, const char *what) {
  if (result < 0) {
    fprintf(stderr, "iommufd-floor: %s failed: %s\n", what, strerror(errno));
    exit(1);
  }
}

static uint64_t now(void) {
  struct timespec time;
  clock_gettime(CLOCK_MONOTONIC, &time);
  return (uint64_t)time.tv_sec * 1000000000u + (uint64_t)time.tv_nsec;
}

static void map_unmap(int iommufd, uint32_t ioas, void *buffer, uint64_t length, long iterations) {
  for (long i = 0; i < iterations; i++) {
    struct iommu_ioas_map map = {
      .size = sizeof(map),
      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
      .ioas_id = ioas, .user_va = (uintptr_t)buffer, .length = length, .iova = 0x40000000,
    };
    check(ioctl(iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP");
    struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = ioas, .iova = map.iova, .length = length };
    check(ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap), "IOMMU_IOAS_UNMAP");
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: iommufd-floor map-unmap-4k|map-unmap-64m|option-get|iova-ranges|attach-detach ITERATIONS CDEV\n");
    return 64;
  }
  const char *operation = argv[1];
  long iterations = atol(argv[2]);
  int iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  check(iommufd, "open /dev/iommu");
  struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
  check(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc), "IOMMU_IOAS_ALLOC");
  uint32_t ioas = alloc.out_ioas_id;
  int device = open(argv[3], O_RDWR | O_CLOEXEC);
  check(device, "open the device");
  struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
  check(ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind), "VFIO_DEVICE_BIND_IOMMUFD");
  struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas };
  check(ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
  uint64_t length = strcmp(operation, "map-unmap-64m") == 0 ? 64u << 20 : 4096;
  void *buffer = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buffer == MAP_FAILED) check(-1, "mmap");
  memset(buffer, 1, length);
  map_unmap(iommufd, ioas, buffer, length, 1); /* warm-up */

  uint64_t start = now();
  if (strcmp(operation, "map-unmap-4k") == 0 || strcmp(operation, "map-unmap-64m") == 0) {
    map_unmap(iommufd, ioas, buffer, length, iterations);
  } else if (strcmp(operation, "option-get") == 0) {
    for (long i = 0; i < iterations; i++) {
      struct iommu_option option = {
        .size = sizeof(option), .option_id = IOMMU_OPTION_HUGE_PAGES, .op = IOMMU_OPTION_OP_GET, .object_id = ioas,
      };
      check(ioctl(iommufd, IOMMU_OPTION, &option), "IOMMU_OPTION");
    }
  } else if (strcmp(operation, "iova-ranges") == 0) {
    for (long i = 0; i < iterations; i++) {
      struct iommu_iova_range ranges[4];
      struct iommu_ioas_iova_ranges request = {
        .size = sizeof(request), .ioas_id = ioas, .num_iovas = 4, .allowed_iovas = (uintptr_t)ranges,
      };
      check(ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &request), "IOMMU_IOAS_IOVA_RANGES");
    }
  } else if (strcmp(operation, "attach-detach") == 0) {
    struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
    check(ioctl(device, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach), "VFIO_DEVICE_DETACH_IOMMUFD_PT");
    start = now();
    for (long i = 0; i < iterations; i++) {
      struct vfio_device_attach_iommufd_pt again = { .argsz = sizeof(again), .pt_id = ioas };
      check(ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &again), "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
      struct vfio_device_detach_iommufd_pt off = { .argsz = sizeof(off) };
      check(ioctl(device, VFIO_DEVICE_DETACH_IOMMUFD_PT, &off), "VFIO_DEVICE_DETACH_IOMMUFD_PT");
    }
  } else {
    fprintf(stderr, "iommufd-floor: unknown operation %s\n", operation);
    return 64;
  }
  printf("%.1f\n", (double)(now() - start) / (double)iterations);
  close(device);
  close(iommufd);
  return 0;
}
