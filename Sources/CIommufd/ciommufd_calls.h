/* Thin non-variadic wrappers so Swift can call these libc functions. */
#ifndef CIOMMUFD_CALLS_H
#define CIOMMUFD_CALLS_H

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

/* ioctl(2) with a pointer argument; returns what ioctl returns, errno untouched. */
static inline int ciommufd_ioctl(int fd, unsigned long request, void *argument) {
  return ioctl(fd, request, argument);
}

/* eventfd(2); returns the new fd or -1 with errno set. */
static inline int ciommufd_eventfd(unsigned int initval, int flags) {
  return eventfd(initval, flags);
}

/* memfd_create flags (include/uapi/linux/memfd.h). */
#define CIOMMUFD_MFD_CLOEXEC 0x0001U
#define CIOMMUFD_MFD_HUGETLB 0x0004U
#define CIOMMUFD_MFD_NOEXEC_SEAL 0x0008U
#define CIOMMUFD_MFD_HUGE_2MB (21U << 26)
#define CIOMMUFD_MFD_HUGE_1GB (30U << 26)

#include <stdint.h>

/* Copies between this process's memory and a buffer like the kernel's copy_from_user and
   copy_to_user: an unmapped or protected address gives -1 with errno EFAULT, never a
   crash. `pid` is this process's id (the caller caches it: getpid(2) is a system call).
   Used by the simulated kernel to read and write ioctl arguments. */
static inline long ciommufd_copy_from_process(long pid, void *to, uint64_t from, size_t count) {
  struct iovec local = { to, count };
  struct iovec remote = { (void *)(uintptr_t)from, count };
  return syscall(SYS_process_vm_readv, pid, &local, 1UL, &remote, 1UL, 0UL);
}
static inline long ciommufd_copy_to_process(long pid, uint64_t to, const void *from, size_t count) {
  struct iovec local = { (void *)from, count };
  struct iovec remote = { (void *)(uintptr_t)to, count };
  return syscall(SYS_process_vm_writev, pid, &local, 1UL, &remote, 1UL, 0UL);
}

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

/* memfd_create(2) through syscall(2) (glibc's declaration needs _GNU_SOURCE). */
static inline int ciommufd_memfd_create(const char *name, unsigned int flags) {
  return (int)syscall(SYS_memfd_create, name, flags);
}

/* O_PATH (asm-generic/fcntl.h), which glibc shows only with _GNU_SOURCE. */
#define CIOMMUFD_O_PATH 010000000

/* Reads up to `length` bytes of `fd` at its position without waiting (preadv2 with
   RWF_NOWAIT, 0x8): EAGAIN instead of blocking, whatever the file's O_NONBLOCK. */
static inline long ciommufd_read_nowait(int fd, void *buffer, size_t length) {
  struct iovec vector = { buffer, length };
  return syscall(SYS_preadv2, fd, &vector, 1, -1L, 0L, 0x8);
}

/* The filesystem magic of the file open as `fd` (statfs f_type), or -1 with errno set. */
static inline long ciommufd_filesystem_type(int fd) {
  struct statfs buffer;
  if (fstatfs(fd, &buffer) != 0) return -1;
  return (long)buffer.f_type;
}

#endif
