#!/bin/sh
# Runs inside the lab VM (Lab/lab.sh run), as root in a chroot of the host root:
#   lab-guest.sh vtd|mock|counted BIN_DIR [RELEASE_BIN_DIR]
# vtd: the conformance suite, the real-kernel and differential tests, the handle-safety suite
#      and the bad-input table on the cdev, the differential fuzzer with the device, then the
#      legacy container/group tests, then
#      iommufd-tool against the real sysfs (edu, and an mtty mdev), then edu-dma,
#      vmm-passthrough and migrate.
# mock: the iommufd and self-test mock-domain conformance scenarios (with vIOMMU, vDEVICE and
#       vEVENTQ on a 7.2 kernel), and the handle-safety suite and bad-input table on the kernel;
#       the differential fuzzer, and its variant on an mtty mediated device.
# counted (a vtd boot with QEMU's instruction counting, lab.sh run --count-instructions): the
#       API against C in guest instructions, the table the lab's performance goals are judged on.
# The kernel's release (6.12 or 7.2) picks the expectations where the two differ.
# Every step runs; the exit status is 1 if any failed.
mode=$1 bin=$2 release=${3:-}
bundle=$bin/swift-iommufdPackageTests.xctest tool=$bin/iommufd-tool edu=$IOMMUFD_LAB_EDU
# The differential fuzzer's release build when there is one: most of its time under TCG is
# the simulator's side, which a debug build runs several times slower.
fuzz=${release:-$bin}/iommufd-diff-fuzz
[ -x "$fuzz" ] || fuzz=$bin/iommufd-diff-fuzz
status=0
# Each step says how long it took, so the boot's time can be accounted for.
step() {
  echo "lab-step: $*"
  started=$(date +%s)
  "$@" || { echo "lab-step FAILED: $*"; status=1; }
  echo "lab-step took $(($(date +%s) - started))s: $1 ${2:-}"
}
# One test at a time: the kernel scenarios share one device (a second bind is EINVAL).
# The handle-safety suite's thread races are the simulator's alone and the guest has one
# vCPU, so they would race nothing here: they run in the host's unit tests and under
# ThreadSanitizer, and are left out of the boots.
races='rawDestroyRacingAllocation|closeRacingAttach|staleMappingRace|releaseDuringUnmapAll|closeWhileCallsEnter|refusedDestroyWhileCallsEnter'
tests() { IOMMUFD_TEST_DEVICE=$edu "$bundle" --testing-library swift-testing --no-parallel --verbose --filter "$1" --skip "$races"; }
expect() {  # expect PATTERN COMMAND...: the command succeeds and prints PATTERN
  pattern=$1; shift
  out=$("$@" 2>&1) || { echo "$out"; return 1; }
  echo "$out"
  echo "$out" | grep -q -- "$pattern" || { echo "missing: $pattern"; return 1; }
}

if [ "$mode" = mock ]; then
  step tests "IOMMUConformance|MockConformance|HardwareInfoConformance|DirtyConformance|NestedConformance|FaultConformance|VirtualIOMMUConformance|NewerRequestConformance|SelfTestOpConformance|SelfTestAccessConformance|MediatedDeviceConformance|MigrationConformance|BorrowedDescriptorConformance|HandleSafetyTests|BadInputTableTests"
  # The differential fuzzer: raw ioctl sequences on this kernel and on the simulator.
  step "$fuzz" --seed 1 --sequences 3000
  # Its mdev variant: an mtty instance made for each sequence on this kernel and on the
  # simulator's mtty model, bound, attached, queried and reached through its registers.
  step "$fuzz" --mdev mtty-2 --seed 1 --sequences 400
  step "$fuzz" --mdev mtty-1 --seed 2 --sequences 200
  exit $status
fi
cdev=/dev/vfio/devices/$(ls "/sys/bus/pci/devices/$edu/vfio-dev/" | head -n 1)
if [ "$mode" = counted ]; then
  [ -n "$release" ] || { echo "lab-guest.sh counted needs the release build's directory"; exit 1; }
  step "$release/iommufd-bench" --lab-counted "$cdev" "/tmp/iommufd-floor-$IOMMUFD_LAB_KERNEL.so"
  exit $status
fi
step tests "Conformance|RealKernelTests|DifferentialTests|HandleSafetyTests|BadInputTableTests"
# The differential fuzzer's device variant: raw iommufd and VFIO calls on this kernel with the
# edu and on the simulator with its edu.
step "$fuzz" --device "$cdev" --seed 1 --sequences 1000
# Function 0 of the edu pair behind the root port, where hot reset info and hot reset
# succeed: the simulator's machine has the same topology and cdev numbers.
pair0=${IOMMUFD_LAB_EDU_PAIR%% *}
step "$fuzz" --device "/dev/vfio/devices/$(ls "/sys/bus/pci/devices/$pair0/vfio-dev/" | head -n 1)" --seed 2 --sequences 300
# The API against C on this kernel, interleaved in this boot and timed, for the record (the
# C floor was built against this kernel's headers by Scripts/test.sh; the goals are judged
# in the counted boot).
if [ -n "$release" ]; then
  step "$release/iommufd-bench" --lab "$cdev" "/tmp/iommufd-floor-$IOMMUFD_LAB_KERNEL.so"
fi
step tests "LegacyTests"
step expect "\"route\": \"iommufd\"" "$tool" devices --json
step expect "IOMMU_GET_HW_INFO: yes" "$tool" probe
step expect "legacy container: usable, type1v2" "$tool" probe
step expect "size 0x100000, mmap" "$tool" show --open "$edu"
step expect "\"mappable\": true" "$tool" show --json --open "$edu"
step expect "0xfef00000-0x7fffffffff" "$tool" ranges "$edu"
step expect "VT-d cap 0xd2008c22260286" "$tool" hw-info "$edu"
step expect "now no driver" "$tool" unbind "$edu"
step expect "route: none" "$tool" devices
step expect "bound to vfio-pci (was unbound)" "$tool" bind "$edu"
step expect "round trip matches" "$bin/edu-dma"
# Mediated devices through the tool: the kernel's mtty sample, built in.
mdev=83b8f4f2-509f-382f-3c1e-e6bfe0fa1001
step expect "mtty/mtty-2: Dual port serial" "$tool" mdev types
step expect "created $mdev mtty/mtty-1 mtty" "$tool" mdev create mtty-1 --uuid "$mdev"
step expect "\"uuid\": \"$mdev\"" "$tool" mdev list --json
step expect "removed $mdev" "$tool" mdev remove "$mdev"
# The VMM example on this kernel: guest RAM banks, the hand-over, BARs for KVM, MSI and INTx
# with its resample eventfd, DMA into guest RAM, unplug and replug, teardown.
step expect "all passed" "$bin/vmm-passthrough"
# Migration v2 between two mtty devices on this kernel: the serial state moves.
step expect "96 bytes moved, all passed" "$bin/migrate"
exit $status
