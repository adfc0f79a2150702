/*
 * CIommufd: the package's C view of the Linux iommufd and VFIO user ABI.
 *
 * ciommufd_uapi.h   the package's own definitions (structs, ioctl numbers, flags),
 *                   written from the kernel ABI facts and prefixed so they never clash
 *                   with <linux/iommufd.h> or <linux/vfio.h>.
 * ciommufd_check.h  compile-time proof that those definitions equal the system's, where
 *                   the installed headers define the same thing.
 * ciommufd_calls.h  the few libc calls Swift cannot make directly (variadic ioctl).
 */
#ifndef CIOMMUFD_H
#define CIOMMUFD_H

#include "ciommufd_uapi.h"
#include "ciommufd_check.h"
#include "ciommufd_calls.h"

#endif
