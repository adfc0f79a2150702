/* Thin non-variadic wrappers so Swift can call these libc functions. */
#ifndef CIOMMUFD_CALLS_H
#define CIOMMUFD_CALLS_H

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/eventfd.h>

/* ioctl(2) with a pointer argument; returns what ioctl returns, errno untouched. */
static inline int ciommufd_ioctl(int fd, unsigned long request, void *argument) {
  return ioctl(fd, request, argument);
}

/* eventfd(2); returns the new fd or -1 with errno set. */
static inline int ciommufd_eventfd(unsigned int initval, int flags) {
  return eventfd(initval, flags);
}

#include <stdint.h>

/* Volatile loads and stores for memory-mapped device registers (a BAR mmap): the
   compiler must issue each access exactly once, at its width, in program order. */
static inline uint8_t ciommufd_mmio_read8(const void *address) { return *(const volatile uint8_t *)address; }
static inline uint16_t ciommufd_mmio_read16(const void *address) { return *(const volatile uint16_t *)address; }
static inline uint32_t ciommufd_mmio_read32(const void *address) { return *(const volatile uint32_t *)address; }
static inline uint64_t ciommufd_mmio_read64(const void *address) { return *(const volatile uint64_t *)address; }
static inline void ciommufd_mmio_write8(void *address, uint8_t value) { *(volatile uint8_t *)address = value; }
static inline void ciommufd_mmio_write16(void *address, uint16_t value) { *(volatile uint16_t *)address = value; }
static inline void ciommufd_mmio_write32(void *address, uint32_t value) { *(volatile uint32_t *)address = value; }
static inline void ciommufd_mmio_write64(void *address, uint64_t value) { *(volatile uint64_t *)address = value; }

#endif
