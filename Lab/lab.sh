#!/usr/bin/env bash
# The swift-iommufd lab: a real Linux kernel (6.12, or 7.2 for the requests added since) with
# iommufd and VFIO cdevs, booted under QEMU (TCG) with an emulated Intel VT-d and the QEMU
# "edu" PCI device, running host-built binaries from the host root (shared read-only over
# virtio 9p).
#
#   lab.sh deps                       install the Debian packages the lab needs
#   lab.sh kernel [--kernel V]        build bzImage once (cached); prints its path last
#   lab.sh headers [--kernel V]       install the uAPI headers once; prints the include dir last
#   lab.sh source [--kernel V]        prepare the source tree; prints its path last
#   lab.sh run [--kernel V] [--mode vtd|mock] [--timeout SECONDS] [--count-instructions] -- COMMAND [ARGS...]
#                                     boot the lab, run COMMAND (in the current directory,
#                                     as root, in a chroot of the host root), exit with its status;
#                                     124 if QEMU ran past the timeout, 125 if the lab failed
#
# --count-instructions runs the guest with QEMU's instruction counting (-icount shift=0):
# its clock then advances one nanosecond per guest instruction executed, kernel and user
# alike, whatever the host is doing. A time the guest measures is then an exact and
# repeatable count of the instructions run (the lab's callgrind), not the emulator's speed
# at that moment.
#
# Kernels (--kernel, default 6.12): 6.12 is Debian's linux-source-6.12 (installed with
# apt-get from the machine's own suites); 7.2 is linux-source-7.2 from Debian's
# trixie-backports (of the Debian archive the machine's apt uses), fetched with `apt-get download` through a private source list in the
# cache (the machine's apt configuration is not changed). Each is configured from
# Lab/kernel.config plus Lab/kernel-V.config.
#
# Modes: vtd (default) has an emulated VT-d (intel_iommu=on) and binds every edu device to
# vfio-pci, so /dev/iommu, /dev/vfio/N and /dev/vfio/devices/vfioN exist. mock has no vIOMMU
# (intel_iommu=off): the mode for iommufd's self-test mock domain (IOMMU_TEST_OP_MOCK_DOMAIN).
# The command sees IOMMUFD_LAB_MODE=vtd|mock, IOMMUFD_LAB_KERNEL=V, IOMMUFD_LAB_COUNTED=yes|no
# (--count-instructions) and, in vtd mode,
# IOMMUFD_LAB_EDU=<the PCI address of the edu device on the root bus, bound to vfio-pci> and
# IOMMUFD_LAB_EDU_PAIR=<the two functions of the edu device behind a PCIe root port> (vtd mode
# has both: the pair is what a hot reset reaches). In the guest,
# / is the host root read-only; /dev, /proc, /sys (with debugfs) are the guest's; /tmp shows
# the host's /tmp with writes going to a tmpfs.
#
# Environment: IOMMUFD_LAB_CACHE (default /var/cache/swift-iommufd) holds the kernel sources,
# kernels (kernel-<key>/bzImage), initramfs images, uAPI headers and per-run directories.
# IOMMUFD_LAB_MEMORY (default 1G) is the guest's RAM; IOMMUFD_LAB_KERNEL_ARGS is added to the
# guest kernel's command line (e.g. hugepages=N).
# Messages of lab.sh itself go to stderr; the guest console goes to stdout.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${IOMMUFD_LAB_CACHE:-/var/cache/swift-iommufd}
BUSYBOX=/bin/busybox                       # from busybox-static
DEPS=(qemu-system-x86 linux-source-6.12 bc bison flex libelf-dev libssl-dev cpio busybox-static rsync libcap-dev)  # rsync: headers_install; libcap-dev: the iommufd selftest
LOCK_TIMEOUT=3600     # waiting for another lab.sh that is preparing the cache
BUILD_TIMEOUT=7200    # a full kernel build (about 5 minutes on 2 cores)
BACKPORTS_KEYRING=/usr/share/keyrings/debian-archive-trixie-automatic.gpg

# Sets the variables of kernel version $1: where its source comes from and goes.
select_kernel() {
  KERNEL_VERSION=$1
  case $KERNEL_VERSION in
    6.12|7.2) ;;
    *) die "--kernel must be 6.12 or 7.2, not '$KERNEL_VERSION'" ;;
  esac
  SOURCE_PACKAGE=linux-source-$KERNEL_VERSION
  SRC=$CACHE/src/$SOURCE_PACKAGE             # pristine source tree; builds go elsewhere (O=)
  UAPI=$CACHE/uapi-$KERNEL_VERSION           # make headers_install INSTALL_HDR_PATH=$UAPI
  CONFIG_FRAGMENT=$LAB_DIR/kernel-$KERNEL_VERSION.config
  [[ -f $CONFIG_FRAGMENT ]] || die "$CONFIG_FRAGMENT is missing"
}
log() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }

# Serialises cache updates (source extraction, builds) between concurrent lab.sh processes.
# Idempotent: the lock is held until the (sub)shell that took it exits.
lock_cache() {
  [[ -z ${LOCK_FD:-} ]] || return 0
  mkdir -p "$CACHE" || die "cannot create $CACHE (set IOMMUFD_LAB_CACHE to a writable directory)"
  exec {LOCK_FD}>"$CACHE/.lock"
  flock -w "$LOCK_TIMEOUT" "$LOCK_FD" || die "another lab.sh held $CACHE/.lock for ${LOCK_TIMEOUT}s"
}

# ---------------------------------------------------------------------------------------------
cmd_deps() {
  local missing=() p
  for p in "${DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then log "all packages present: ${DEPS[*]}"; return; fi
  local sudo=; ((EUID == 0)) || sudo=sudo
  log "installing: ${missing[*]}"
  timeout 900 $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive timeout 1800 $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}

# The tarball of the selected source package and its version, fetched if need be:
# The Debian archive this machine's apt takes packages from (a local mirror or proxy
# included): the first repository of Debian's own release files, from apt's configuration.
debian_archive() {
  local uri
  uri=$(apt-get indextargets --format '$(REPO_URI)' 'Origin: Debian' 'Label: Debian' 2>/dev/null | head -n 1)
  echo "${uri:-http://deb.debian.org/debian/}"
}

# 6.12 from the installed package, 7.2 from trixie-backports with a private apt setup.
locate_source() {
  if [[ $KERNEL_VERSION == 6.12 ]]; then
    TARBALL=/usr/src/$SOURCE_PACKAGE.tar.xz
    SOURCE_VERSION=$(dpkg-query -W -f='${Version}' "$SOURCE_PACKAGE" 2>/dev/null) \
      || die "$SOURCE_PACKAGE is not installed (run: $0 deps)"
    return
  fi
  local apt=$CACHE/apt-trixie-backports
  local -a options=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root
    -o Acquire::Languages=none)
  local deb; deb=$(ls "$apt"/debs/"$SOURCE_PACKAGE"_*_all.deb 2>/dev/null | tail -n 1 || true)
  if [[ -z $deb ]]; then
    lock_cache
    deb=$(ls "$apt"/debs/"$SOURCE_PACKAGE"_*_all.deb 2>/dev/null | tail -n 1 || true)
  fi
  if [[ -z $deb ]]; then
    [[ -f $BACKPORTS_KEYRING ]] || die "$BACKPORTS_KEYRING is missing (debian-archive-keyring is too old)"
    mkdir -p "$apt"/{lists/partial,cache/archives/partial,debs}
    local archive; archive=$(debian_archive)
    echo "deb [signed-by=$BACKPORTS_KEYRING] $archive trixie-backports main" >"$apt/sources.list"
    log "fetching $SOURCE_PACKAGE from trixie-backports of $archive (apt-get download, private source list $apt)"
    timeout 900 apt-get "${options[@]}" -o Acquire::http::Timeout=60 --error-on=any update >&2 \
      || die "apt-get update of trixie-backports from $archive failed (the archive apt uses here, from apt-get indextargets; is it reachable, and does it carry trixie-backports?)"
    (cd "$apt/debs" && timeout 1800 apt-get "${options[@]}" download "$SOURCE_PACKAGE" >&2) \
      || die "apt-get download $SOURCE_PACKAGE failed"
    deb=$(ls "$apt"/debs/"$SOURCE_PACKAGE"_*_all.deb 2>/dev/null | tail -n 1 || true)
    [[ -n $deb ]] || die "apt-get download left no ${SOURCE_PACKAGE}_*_all.deb in $apt/debs"
  fi
  SOURCE_VERSION=$(dpkg-deb -f "$deb" Version)
  TARBALL=$apt/$SOURCE_PACKAGE.tar.xz
  if [[ ! -f $TARBALL || "$(cat "$TARBALL.version" 2>/dev/null)" != "$SOURCE_VERSION" ]]; then
    lock_cache
    local tmp; tmp=$(mktemp -d "$CACHE/deb.tmp.XXXXXX")
    dpkg-deb -x "$deb" "$tmp" && mv "$tmp/usr/src/$SOURCE_PACKAGE.tar.xz" "$TARBALL" \
      || die "$deb did not contain usr/src/$SOURCE_PACKAGE.tar.xz"
    echo "$SOURCE_VERSION" >"$TARBALL.version"; rm -rf "$tmp"
  fi
}

# Extracts the source tarball into $SRC unless the tree there comes from the same package
# version, and keeps the tree clean enough for out-of-tree (O=) builds.
prepare_source() {
  locate_source
  local version=$SOURCE_VERSION
  [[ -f $TARBALL ]] || die "$TARBALL is missing (run: $0 deps)"
  if [[ ! -f $SRC/Makefile || "$(cat "$SRC.version" 2>/dev/null)" != "$version" ]]; then
    log "extracting $TARBALL ($version) into $CACHE/src"
    local tmp; tmp=$(mktemp -d "$CACHE/src.tmp.XXXXXX")
    timeout 1800 tar -C "$tmp" -xf "$TARBALL"
    [[ -f $tmp/$SOURCE_PACKAGE/Makefile ]] || die "$TARBALL did not contain $SOURCE_PACKAGE/"
    mkdir -p "$CACHE/src"
    rm -rf "$SRC.old"; [[ -e $SRC ]] && mv "$SRC" "$SRC.old"
    mv "$tmp/$SOURCE_PACKAGE" "$SRC"; echo "$version" >"$SRC.version"
    rm -rf "$SRC.old" "$tmp"
  fi
  # An in-tree configure or headers_install makes O= builds refuse to start.
  if [[ -e $SRC/.config || -d $SRC/include/config || -d $SRC/arch/x86/include/generated ]]; then
    log "cleaning build products out of $SRC (make mrproper)"
    timeout 600 make -s -C "$SRC" mrproper
  fi
}

cmd_source() {
  if [[ ! -f $SRC/Makefile ]]; then lock_cache; prepare_source; fi
  echo "$SRC"
}

kernel_dir() {
  locate_source
  local key; key=$( { cat "$LAB_DIR/kernel.config" "$CONFIG_FRAGMENT"; echo "$SOURCE_PACKAGE $SOURCE_VERSION"; } | sha256sum | cut -c1-16)
  echo "$CACHE/kernel-$key"
}

cmd_kernel() {
  local dir; dir=$(kernel_dir) && [[ -n $dir ]] || die "cannot locate the $SOURCE_PACKAGE source"
  if [[ -f $dir/bzImage ]]; then log "kernel cache hit: $dir/bzImage (nothing to build)"; echo "$dir/bzImage"; return; fi
  lock_cache
  if [[ -f $dir/bzImage ]]; then log "kernel built meanwhile: $dir/bzImage"; echo "$dir/bzImage"; return; fi
  prepare_source
  local build=$dir/build; rm -rf "$build"; mkdir -p "$build"
  local buildlog=$dir/build.log start=$SECONDS
  local fragments=$build/fragments.config
  cat "$LAB_DIR/kernel.config" "$CONFIG_FRAGMENT" >"$fragments"
  log "configuring $SOURCE_PACKAGE $SOURCE_VERSION in $build (tinyconfig + Lab/kernel.config + Lab/${CONFIG_FRAGMENT##*/})"
  {
    make -C "$SRC" O="$build" tinyconfig
    "$SRC/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragments"
    make -C "$SRC" O="$build" olddefconfig
  } >"$buildlog" 2>&1 || { tail -n 30 "$buildlog" >&2; die "configuration failed (log: $buildlog)"; }
  # Every option the fragment sets to y must still be y: Kconfig silently drops options
  # whose dependencies are not met.
  local opt dropped=()
  while IFS= read -r opt; do
    grep -qx "$opt=y" "$build/.config" || dropped+=("$opt ($(grep -E "^(# )?$opt[= ]" "$build/.config" || echo absent))")
  done < <(sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=y$/\1/p' "$fragments")
  if ((${#dropped[@]})); then
    printf 'lab:   dropped: %s\n' "${dropped[@]}" >&2
    die "${#dropped[@]} option(s) of the config fragments did not end up =y after olddefconfig"
  fi
  log "all $(grep -c '^CONFIG_.*=y$' "$fragments") options of the config fragments are =y"
  log "building bzImage with make -j$(nproc) (log: $buildlog; about 5 minutes on 2 cores)"
  timeout "$BUILD_TIMEOUT" make -C "$SRC" O="$build" -j"$(nproc)" bzImage >>"$buildlog" 2>&1 \
    || { tail -n 40 "$buildlog" >&2; die "kernel build failed or exceeded ${BUILD_TIMEOUT}s (log: $buildlog)"; }
  cp "$build/.config" "$dir/config"
  cp "$build/arch/x86/boot/bzImage" "$dir/bzImage.tmp" && mv "$dir/bzImage.tmp" "$dir/bzImage"
  rm -rf "$build"
  log "built $dir/bzImage in $((SECONDS - start))s"
  echo "$dir/bzImage"
}

cmd_headers() {
  if [[ ! -f $UAPI/include/linux/iommufd.h ]]; then
    lock_cache
    if [[ ! -f $UAPI/include/linux/iommufd.h ]]; then
      prepare_source
      local tmp; tmp=$(mktemp -d "$CACHE/uapi.tmp.XXXXXX")
      log "installing the $KERNEL_VERSION uAPI headers into $UAPI"
      timeout 900 make -s -C "$SRC" O="$tmp/build" headers_install INSTALL_HDR_PATH="$tmp/uapi" >&2
      rm -rf "$UAPI"; mv "$tmp/uapi" "$UAPI"; rm -rf "$tmp"
    fi
  fi
  echo "$UAPI/include"
}

# ---------------------------------------------------------------------------------------------
# /init of the initramfs. The kernel command line carries lab.run=DIR (a host directory with
# run.conf and cmd.sh, seen at /host/DIR) and lab.marker=NONCE; the last line it prints is
# "LAB-EXIT NONCE STATUS", then it powers off.
INIT_SCRIPT='#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t debugfs debugfs /sys/kernel/debug
exec </dev/null >/dev/console 2>&1
RUN= MARKER=none
for arg in $(cat /proc/cmdline); do
  case $arg in lab.run=*) RUN=${arg#*=} ;; lab.marker=*) MARKER=${arg#*=} ;; esac
done
finish() { echo "LAB-EXIT $MARKER $1"; sync; poweroff -f; sleep 10; }

# The host root, read-only, with the guest devices, proc, sys and a writable /tmp inside.
mkdir -p /host /scratch
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /host || { echo "lab: cannot mount the host root over 9p"; finish 125; }
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -o rbind /dev /host/dev && mount -o bind /proc /host/proc && mount -o rbind /sys /host/sys \
  || { echo "lab: cannot bind /dev /proc /sys into /host"; finish 125; }
mount -t tmpfs tmpfs /scratch && mkdir /scratch/upper /scratch/work && chmod 1777 /scratch/upper
mount -t overlay overlay -o lowerdir=/host/tmp,upperdir=/scratch/upper,workdir=/scratch/work /host/tmp \
  || { echo "lab: overlay over /tmp failed, using an empty tmpfs"; mount -t tmpfs -o mode=1777 tmpfs /host/tmp; }
. "/host$RUN/run.conf" || finish 125

# vtd: hand every edu device (1234:11e8) to vfio-pci.
if [ "$MODE" = vtd ]; then
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor):$(cat $d/device)" = 0x1234:0x11e8 ] || continue
    [ -e $d/driver ] && echo ${d##*/} >$d/driver/unbind
    echo vfio-pci >$d/driver_override
    echo ${d##*/} >/sys/bus/pci/drivers_probe
    # The first on the root bus is the edu the suites use; those behind the root port the pair.
    case ${d##*/} in
      0000:00:*) [ -n "$IOMMUFD_LAB_EDU" ] || IOMMUFD_LAB_EDU=${d##*/} ;;
      *) IOMMUFD_LAB_EDU_PAIR="${IOMMUFD_LAB_EDU_PAIR:+$IOMMUFD_LAB_EDU_PAIR }${d##*/}" ;;
    esac
  done
  export IOMMUFD_LAB_EDU IOMMUFD_LAB_EDU_PAIR
  # Where each edu sits: its IOMMU group and the reset methods the kernel has for it.
  for d in $IOMMUFD_LAB_EDU $IOMMUFD_LAB_EDU_PAIR; do
    p=/sys/bus/pci/devices/$d
    echo "lab: edu $d group $(basename $(readlink $p/iommu_group)) reset_method=$(cat $p/reset_method 2>/dev/null || echo none) parent $(basename $(dirname $(readlink -f $p)))"
  done
fi

# One line each: the kernel, the PCI devices (with drivers), the iommufd/VFIO nodes.
echo "lab: kernel $(uname -r) $(uname -v) mode=$MODE"
pci=
for d in /sys/bus/pci/devices/*; do
  drv=; [ -e $d/driver ] && drv="($(basename $(readlink $d/driver)))"
  pci="$pci ${d##*/}=$(cat $d/vendor | cut -c3-):$(cat $d/device | cut -c3-)$drv"
done
echo "lab: pci$pci"
nodes=; for n in /dev/iommu /dev/vfio/* /dev/vfio/devices/*; do [ -c $n ] && nodes="$nodes $n"; done
echo "lab: nodes${nodes:- none}"
echo "lab: running (cwd $CWD):" "$DESCRIPTION"
chroot /host /bin/sh "$RUN/cmd.sh"
finish $?
'

initramfs() {
  [[ -x $BUSYBOX ]] || die "$BUSYBOX is missing (run: $0 deps)"
  local key; key=$( { echo "$INIT_SCRIPT"; sha256sum <"$BUSYBOX"; } | sha256sum | cut -c1-16)
  local image=$CACHE/initramfs-$key.cpio.gz
  if [[ ! -f $image ]]; then
    local tmp; tmp=$(mktemp -d "$CACHE/initramfs.tmp.XXXXXX")
    mkdir -p "$tmp/root/"{bin,dev,proc,sys}
    cp "$BUSYBOX" "$tmp/root/bin/busybox"
    printf '%s' "$INIT_SCRIPT" >"$tmp/root/init"; chmod 755 "$tmp/root/init"
    (cd "$tmp/root" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$tmp/image"
    mv "$tmp/image" "$image"; rm -rf "$tmp"
    log "built $image"
  fi
  echo "$image"
}

# One shell word: as it is when that is safe, else single-quoted.
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then printf '%s' "$1"; return; fi
  local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"
}

cmd_run() {
  local mode=vtd timeout_s=600 counted=no
  while (($#)); do
    case $1 in
      --kernel) select_kernel "${2:-}"; shift 2 ;;
      --mode) mode=${2:-}; shift 2 || die "--mode needs a value" ;;
      --timeout) timeout_s=${2:-}; shift 2 || die "--timeout needs a value" ;;
      --count-instructions) counted=yes; shift ;;
      --) shift; break ;;
      -*) die "unknown option $1 (usage: $0 run [--kernel 6.12|7.2] [--mode vtd|mock] [--timeout SECONDS] [--count-instructions] -- COMMAND [ARGS...])" ;;
      *) break ;;
    esac
  done
  [[ $mode == vtd || $mode == mock ]] || die "--mode must be vtd or mock, not '$mode'"
  [[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds"
  (($#)) || die "no command given (usage: $0 run [--kernel 6.12|7.2] [--mode vtd|mock] [--timeout SECONDS] -- COMMAND [ARGS...])"
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (run: $0 deps)"

  local kernel image
  kernel=$(cmd_kernel) && [[ -f $kernel ]] || die "no Linux $KERNEL_VERSION kernel to boot"
  image=$(initramfs) && [[ -f $image ]] || die "no initramfs to boot"

  # The guest reads the command from a per-run directory of the host root (over 9p).
  mkdir -p "$CACHE/runs"
  RUN_DIR=$(mktemp -d "$CACHE/runs/run.XXXXXX"); trap 'rm -rf "$RUN_DIR"' EXIT
  [[ $RUN_DIR != *[[:space:]]* ]] || die "the run directory $RUN_DIR contains whitespace"
  local marker; marker=$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
  local words= a; for a in "$@"; do words+=" $(quote "$a")"; done
  printf 'MODE=%s\nCWD=%s\nDESCRIPTION=%s\n' "$mode" "$(quote "$PWD")" "$(quote "${words# }")" >"$RUN_DIR/run.conf"
  cat >"$RUN_DIR/cmd.sh" <<EOF
cd $(quote "$PWD") || exit 125
export PATH=$(quote "$PATH") HOME=$(quote "${HOME:-/root}") TERM=dumb IOMMUFD_LAB_MODE=$mode IOMMUFD_LAB_KERNEL=$KERNEL_VERSION IOMMUFD_LAB_COUNTED=$counted
exec$words
EOF

  local machine=q35,accel=tcg append="console=ttyS0 panic=-1 quiet lab.run=$RUN_DIR lab.marker=$marker"
  local -a qemu=(qemu-system-x86_64 -m "${IOMMUFD_LAB_MEMORY:-1G}" -smp 1 -nographic -no-reboot
    -vga none -nic none -kernel "$kernel" -initrd "$image"
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap)
  if [[ $mode == vtd ]]; then
    # A second edu, two functions of one device in the slot of a PCIe root port: what a hot
    # reset reaches (the first edu, on the root bus, has no slot or bus reset).
    qemu+=(-machine "$machine,kernel-irqchip=split" -device intel-iommu,intremap=on,caching-mode=on -device edu
      -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1
      -device edu,bus=rp1,addr=0.0,multifunction=on -device edu,bus=rp1,addr=0.1)
    append+=" intel_iommu=on"
  else
    qemu+=(-machine "$machine" -device edu); append+=" intel_iommu=off"
  fi
  [[ -z ${IOMMUFD_LAB_KERNEL_ARGS:-} ]] || append+=" $IOMMUFD_LAB_KERNEL_ARGS"
  # One nanosecond of guest time per guest instruction; no waiting for the host's clock
  # (align=off), and idle time skipped (sleep=off).
  [[ $counted == no ]] || qemu+=(-icount shift=0,align=off,sleep=off)
  qemu+=(-append "$append")

  # Serial console -> stdout and a log to find the marker in. The filter drops CRs, the
  # firmware's banner and terminal escapes (SeaBIOS turns off line wrapping), and the marker
  # (which ends the command's last line when that line had no newline).
  log "booting Linux $KERNEL_VERSION ($mode mode$([[ $counted == no ]] || echo ", instructions counted"), timeout ${timeout_s}s):$words"
  local start=$SECONDS rc=0
  local clean='s/\r$//; s/\x1bc//g; s/\x1b\[[0-9;?]*[A-Za-z]//g; /^SeaBIOS (version/d; s/^Booting from ROM\.*//'
  local hide="/^LAB-EXIT $marker [0-9]*\$/d; s/LAB-EXIT $marker [0-9]*\$//; /^reboot: Power down/d"
  timeout --foreground -k 10 "$timeout_s" "${qemu[@]}" </dev/null 2>&1 \
    | sed -u "$clean" | tee "$RUN_DIR/console.log" | sed -u "$hide" || rc=${PIPESTATUS[0]}
  if ((rc == 124 || rc == 137)); then
    log "error: QEMU did not finish within ${timeout_s}s and was killed (raise --timeout?)"; exit 124
  fi
  local status; status=$(grep -ao "LAB-EXIT $marker [0-9]*" "$RUN_DIR/console.log" | tail -n 1 | cut -d' ' -f3)
  if [[ -z $status ]]; then
    log "error: the guest stopped without reporting an exit status (QEMU exit status $rc)"; exit 125
  fi
  log "command exited with status $status ($((SECONDS - start))s for boot, run and power-off)"
  exit "$status"
}

# --kernel V of the kernel, headers and source commands.
kernel_option() {
  if (($#)); then
    [[ $1 == --kernel && $# == 2 ]] || die "usage: $0 ${COMMAND} [--kernel 6.12|7.2]"
    select_kernel "$2"
  fi
}

select_kernel 6.12
COMMAND=${1:-}
case $COMMAND in
  deps) cmd_deps ;;
  kernel) shift; kernel_option "$@"; cmd_kernel ;;
  headers) shift; kernel_option "$@"; cmd_headers ;;
  source) shift; kernel_option "$@"; cmd_source ;;
  run) shift; cmd_run "$@" ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
esac
