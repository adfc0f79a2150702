#!/usr/bin/env bash
# Prints the include directory of the Linux 6.12 uAPI headers (`make headers_install` of
# Debian's linux-source-6.12), preparing them once in a cache outside the clone.
# The ABI test checks the package's own definitions against them.
set -euo pipefail

cache="${IOMMUFD_LAB_CACHE:-/var/cache/swift-iommufd}"
tarball=/usr/src/linux-source-6.12.tar.xz
headers="$cache/uapi-6.12/include"

if [[ -f "$headers/linux/iommufd.h" ]]; then
  echo "$headers"
  exit 0
fi
if [[ ! -f "$tarball" ]]; then
  echo "uapi-headers: $tarball is missing (apt-get install linux-source-6.12)" >&2
  exit 1
fi
source_dir="$cache/src/linux-source-6.12"
if [[ ! -f "$source_dir/Makefile" ]]; then
  mkdir -p "$cache/src"
  tar -C "$cache/src" -xf "$tarball"
fi
make -s -C "$source_dir" headers_install INSTALL_HDR_PATH="$cache/uapi-6.12" >&2
echo "$headers"
