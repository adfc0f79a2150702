#!/usr/bin/env bash
# The project's test command, for a fresh Debian 12 machine or CI:
#   1. installs the Debian packages the tests and the lab need (when root; otherwise says
#      what is missing and goes on without it),
#   2. exports the Linux 6.12 uAPI headers for the ABI test (Lab/lab.sh headers),
#   3. builds the package (warnings in its own code fail the run) and runs the unit tests,
#      including the conformance suite on the simulated kernel,
#   4. runs the lab: a real 6.12 kernel with iommufd under QEMU, where the conformance
#      suite, the real-kernel tests and the edu DMA example run against the kernel (and the
#      simulator, in the same run), unless the lab cannot run here, which it says.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

packages=()
command -v cc >/dev/null || packages+=(gcc)
command -v make >/dev/null || packages+=(make)
command -v xz >/dev/null || packages+=(xz-utils)
if ((${#packages[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    log "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    log "not root: cannot install ${packages[*]}"
  fi
fi

lab=yes
if [[ $(id -u) -eq 0 ]]; then
  bash Lab/lab.sh deps
elif ! command -v qemu-system-x86_64 >/dev/null || [[ ! -f /usr/src/linux-source-6.12.tar.xz ]]; then
  lab="no: not root, and QEMU or linux-source-6.12 is missing (apt-get install qemu-system-x86 linux-source-6.12 busybox-static)"
fi

if headers=$(bash Lab/lab.sh headers | tail -n 1) && [[ -f $headers/linux/iommufd.h ]]; then
  export IOMMUFD_UAPI_HEADERS="$headers"
  export IOMMUFD_KERNEL_SOURCE="${IOMMUFD_LAB_CACHE:-/var/cache/swift-iommufd}/src/linux-source-6.12"
  log "Linux 6.12 uAPI headers: $IOMMUFD_UAPI_HEADERS"
else
  log "no Linux 6.12 uAPI headers: the ABI test against them will be skipped"
fi

log "build (warnings in the package's own code fail the run)"
swift build --build-tests 2>&1 | tee /tmp/iommufd-build.log
if grep -E "^/.*/(Sources|Tests|Examples)/.*warning:" /tmp/iommufd-build.log; then
  echo "the build printed warnings in the package's own code" >&2
  exit 1
fi

log "unit tests (simulated kernel, ABI, encoding, discovery)"
swift test --skip-build

if [[ $lab != yes ]]; then
  log "lab skipped: $lab"
  exit 0
fi
log "lab: building or reusing the 6.12 kernel"
bash Lab/lab.sh kernel >/dev/null
bin=$(swift build --show-bin-path)

# Boots the lab in MODE and runs Scripts/lab-guest.sh there; prints the lab's own lines,
# the steps, failures, the test runs' closing lines and how many scenario cases passed on
# each backend.
lab_boot() {
  local mode=$1 log=/tmp/iommufd-lab-$1.log status=0
  bash Lab/lab.sh run --mode "$mode" --timeout 1200 -- sh Scripts/lab-guest.sh "$mode" "$bin" >"$log" 2>&1 || status=$?
  sed 's/\x1b\[[0-9;]*m//g' "$log" \
    | grep -E '^lab: |^lab-step|^✘|differential:|Test run with|recorded an issue|^↳ [^T]|round trip|^missing' || true
  local backend
  for backend in "kernel" "simulated" "simulated test kernel"; do
    printf '== lab (%s boot): %s scenario cases passed on the %s backend\n' "$mode" \
      "$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep "Test case passing 1 argument platform → $backend (" | grep -c "passed after" || true)" "$backend"
  done
  return $status
}

log "lab: first boot (emulated VT-d, edu on vfio-pci): conformance, real-kernel, differential, legacy, iommufd-tool, edu-dma"
lab_boot vtd
log "lab: second boot (no vIOMMU): iommufd and self-test mock-domain conformance"
lab_boot mock
