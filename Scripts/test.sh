#!/usr/bin/env bash
# The project's test command, for a fresh Debian 12 machine or CI:
#   1. installs the Debian packages the tests need (when root; otherwise says what is missing),
#   2. prepares the Linux 6.12 uAPI headers for the ABI test,
#   3. builds the package and runs the unit tests (Swift Testing).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

packages=()
command -v cc >/dev/null || packages+=(gcc)
command -v make >/dev/null || packages+=(make)
[[ -f /usr/src/linux-source-6.12.tar.xz ]] || packages+=(linux-source-6.12)
command -v xz >/dev/null || packages+=(xz-utils)
if ((${#packages[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    log "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    log "not root: cannot install ${packages[*]}; the tests that need them will be skipped"
  fi
fi

if headers=$(bash Scripts/uapi-headers.sh); then
  export IOMMUFD_UAPI_HEADERS="$headers"
  log "Linux 6.12 uAPI headers: $IOMMUFD_UAPI_HEADERS"
else
  log "no Linux 6.12 uAPI headers: the ABI test against them will be skipped"
fi

log "build (warnings are errors for the package's own targets)"
swift build --build-tests 2>&1 | tee /tmp/iommufd-build.log
if grep -E "^/.*/(Sources|Tests|Examples)/.*warning:" /tmp/iommufd-build.log; then
  echo "the build printed warnings in the package's own code" >&2
  exit 1
fi

log "unit tests"
swift test --skip-build
