/* Forced-include header of the simulated kernel's C face (libIommufdSimulatorC):
 *   cc -include iommufd_simulator.h program.c -L<bin> -lIommufdSimulatorC
 * turns the program's open, close, ioctl, read, write, pread, pwrite, mmap and munmap into
 * calls to the simulator, which passes everything that is not its own to the real libc.
 * /proc/self/task/TID/fail-nth opens as the simulator's own fail-nth (Linux's protocol:
 * write N, read back what is left), so fault-injection tests sweep its failure paths. */
#ifndef IOMMUFD_SIMULATOR_H
#define IOMMUFD_SIMULATOR_H

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

int iommufd_simulator_open(const char *path, int flags, unsigned int mode);
int iommufd_simulator_close(int fd);
int iommufd_simulator_ioctl(int fd, unsigned long request, void *argument);
ssize_t iommufd_simulator_read(int fd, void *buffer, size_t count);
ssize_t iommufd_simulator_write(int fd, const void *buffer, size_t count);
void *iommufd_simulator_mmap(void *address, size_t length, int protection, int flags, int fd, off_t offset);
int iommufd_simulator_munmap(void *address, size_t length);
ssize_t iommufd_simulator_pread(int fd, void *buffer, size_t count, off_t offset);
ssize_t iommufd_simulator_pwrite(int fd, const void *buffer, size_t count, off_t offset);

static inline int iommufd_simulator_open_variadic(const char *path, int flags, ...)
{
	unsigned int mode = 0;
	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list arguments;
		va_start(arguments, flags);
		mode = va_arg(arguments, unsigned int);
		va_end(arguments);
	}
	return iommufd_simulator_open(path, flags, mode);
}

static inline int iommufd_simulator_ioctl_variadic(int fd, unsigned long request, ...)
{
	va_list arguments;
	void *argument;
	va_start(arguments, request);
	argument = va_arg(arguments, void *);
	va_end(arguments);
	return iommufd_simulator_ioctl(fd, request, argument);
}

#define open(...) iommufd_simulator_open_variadic(__VA_ARGS__)
#define close(fd) iommufd_simulator_close(fd)
#define ioctl(...) iommufd_simulator_ioctl_variadic(__VA_ARGS__)
#define read(fd, buffer, count) iommufd_simulator_read(fd, buffer, count)
#define write(fd, buffer, count) iommufd_simulator_write(fd, buffer, count)
#define mmap(address, length, protection, flags, fd, offset) \
	iommufd_simulator_mmap(address, length, protection, flags, fd, offset)
#define munmap(address, length) iommufd_simulator_munmap(address, length)
#define pread(fd, buffer, count, offset) iommufd_simulator_pread(fd, buffer, count, offset)
#define pwrite(fd, buffer, count, offset) iommufd_simulator_pwrite(fd, buffer, count, offset)

#endif
