#!/usr/bin/env bash
# The kernel's own iommufd selftests (tools/testing/selftests/iommu/iommufd.c and the
# fault-injection iommufd_fail_nth.c of the Linux source the lab fetches; nothing of them is
# committed) on the kernel and on the simulator:
#   selftests.sh VERSION BIN_DIR
# Builds each selftest twice from the lab's source tree of Linux VERSION (6.12 or 7.2): as it
# is, and with the simulator's C face (whose fail-nth file is the simulator's own fault
# injection) (Sources/IommufdSimulatorC/iommufd_simulator.h and
# libIommufdSimulatorC from BIN_DIR). Runs both in one mock boot of that kernel, with huge
# pages reserved, and compares the results test by test. Prints
#   selftest VERSION: kernel P/F/S, simulator P/F/S, differing D (K known)
# and fails if a test differs that Lab/selftest-known-differences-VERSION.txt does not name.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$1 bin=$2
cache=${IOMMUFD_LAB_CACHE:-/var/cache/swift-iommufd}
source=$cache/src/linux-source-$version
headers=$cache/uapi-$version/include
known=Lab/selftest-known-differences-$version.txt
[[ -f $source/tools/testing/selftests/iommu/iommufd.c ]] || { echo "selftest $version: no source tree at $source (run Lab/lab.sh source --kernel $version)" >&2; exit 1; }
[[ -f $headers/linux/iommufd.h ]] || { echo "selftest $version: no uAPI headers at $headers" >&2; exit 1; }
swift_libraries=$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift/linux
out=$(mktemp -d /tmp/iommufd-selftest-$version.XXXXXX)
flags=(-O1 -D_GNU_SOURCE -I"$source/tools/testing/selftests" -I"$headers" -I"$source/tools/include")
# Debian's 6.12 source ships a selftest newer than its uAPI: a few names come from a compat
# header; the tests that use them fail on both backends alike.
[[ $version != 6.12 ]] || flags+=(-include Lab/selftest-compat-6.12.h)
for test in iommufd iommufd_fail_nth; do
  test_source=$source/tools/testing/selftests/iommu/$test.c
  gcc "${flags[@]}" -o "$out/kernel-$test" "$test_source" -lcap -lpthread
  gcc "${flags[@]}" -include Sources/IommufdSimulatorC/iommufd_simulator.h -o "$out/simulator-$test" "$test_source" \
    -L"$bin" -lIommufdSimulatorC -Wl,-rpath,"$bin" -Wl,-rpath,"$swift_libraries" -lcap -lpthread
done

cat >"$out/run.sh" <<GUEST
echo "== selftest on the kernel"
$out/kernel-iommufd
$out/kernel-iommufd_fail_nth
echo "== selftest on the simulator"
SWIFT_BACKTRACE=enable=no IOMMUFD_SIMULATOR_RELEASE=$version $out/simulator-iommufd
SWIFT_BACKTRACE=enable=no IOMMUFD_SIMULATOR_RELEASE=$version $out/simulator-iommufd_fail_nth
exit 0
GUEST
IOMMUFD_LAB_MEMORY=2G IOMMUFD_LAB_KERNEL_ARGS="hugepages=320" \
  bash Lab/lab.sh run --kernel "$version" --mode mock --timeout 1800 -- sh "$out/run.sh" >"$out/console.log" 2>&1 || {
  tail -n 30 "$out/console.log"; echo "selftest $version: the lab boot failed" >&2; exit 1; }

# Results by test name: pass, fail or skip, from the TAP lines of each run.
results() {
  awk -v part="$1" '
    /^== selftest on the kernel/ { current = "kernel"; next }
    /^== selftest on the simulator/ { current = "simulator"; next }
    current == part && /^(not )?ok [0-9]+ / {
      line = $0; result = ($1 == "ok") ? "pass" : "fail"
      if (line ~ /# *SKIP/) result = "skip"
      sub(/ *# *SKIP.*$/, "", line); sub(/^(not )?ok [0-9]+ /, "", line)
      print line "\t" result
    }' "$out/console.log" | sort
}
results kernel >"$out/kernel.txt"
results simulator >"$out/simulator.txt"
count() { printf '%s/%s/%s' "$(grep -c $'\tpass$' "$1" || true)" "$(grep -c $'\tfail$' "$1" || true)" "$(grep -c $'\tskip$' "$1" || true)"; }
[[ -s $out/kernel.txt && -s $out/simulator.txt ]] || { tail -n 30 "$out/console.log"; echo "selftest $version: no results" >&2; exit 1; }
join -t $'\t' -a 1 -e missing -o 0,1.2,2.2 "$out/kernel.txt" "$out/simulator.txt" | awk -F'\t' '$2 != $3' >"$out/differing.txt"
sed 's/[[:space:]]*#.*$//; /^$/d' "$known" | sort -u >"$out/known.txt"
cut -f1 "$out/differing.txt" | sort -u | comm -23 - "$out/known.txt" >"$out/unexpected.txt"
cut -f1 "$out/differing.txt" | sort -u | comm -12 - "$out/known.txt" >"$out/expected.txt"
comm -13 <(cut -f1 "$out/differing.txt" | sort -u) "$out/known.txt" >"$out/fixed.txt"
echo "selftest $version: kernel $(count "$out/kernel.txt"), simulator $(count "$out/simulator.txt"), differing $(wc -l <"$out/differing.txt") ($(wc -l <"$out/expected.txt") known)"
if [[ -s $out/fixed.txt ]]; then
  echo "selftest $version: known differences that no longer differ (remove them from $known):"
  sed 's/^/  /' "$out/fixed.txt"
fi
if [[ -s $out/unexpected.txt ]]; then
  echo "selftest $version: FAILED: tests whose result differs (kernel, simulator), not on $known:"
  grep -F -f "$out/unexpected.txt" "$out/differing.txt" | sed 's/^/  /'
  exit 1
fi
