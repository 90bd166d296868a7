#!/usr/bin/env bash
# Run a command where /dev/kvm exists, on a machine that has none.
#
#   scripts/kvm-vm.sh [--mem MiB] [--cpus N] -- COMMAND...
#
# Some machines of this kind have no /dev/kvm (their kernel is itself a PVM
# guest, and PVM does not nest). There, cowfork's sandboxes cannot run, and
# every test that needs them would only be skipped. This script boots
# Debian's own kernel in QEMU with TCG (software emulation, which implements
# AMD SVM with nested paging), loads kvm-amd in it, and runs COMMAND in a
# chroot of this machine's / shared read-write over virtio-9p, from the
# current directory, with /tmp, /var/tmp and /run the guest's own (tmpfs: 9p
# lacks renameat2 flags the store uses). Guest code then runs under real (nested) KVM: slow
# (a syscall round trip ~65 us, QEMU itself emulated), but the same KVM API
# as on hardware. COMMAND's stdout and stderr come back, and its exit status.
# COWFORK_EMULATED=1 is set for COMMAND: tests with a time bound or a long
# loop scale them by it, saying so.
#
# What it needs (installed by scripts/install-deps.sh): qemu-system-x86,
# busybox-static, cpio, kmod; Debian's kernel package is downloaded once with
# apt-get into $COWFORK_KVM_CACHE (default /var/cache/cowfork-kvm).
set -euo pipefail
mem=6144 cpus=2
while [ $# -gt 0 ]; do
  case $1 in
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--mem MiB] [--cpus N] -- COMMAND..." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "kvm-vm: needs root (9p passthrough of /)" >&2; exit 2; }
for p in qemu-system-x86_64 cpio busybox; do
  command -v $p >/dev/null || { echo "kvm-vm: $p is missing (scripts/install-deps.sh)" >&2; exit 2; }
done
# The newest Debian 12 kernel (6.12 has PAGEMAP_SCAN and the userfaultfd
# features lib/dirty.c and lib/uffd.c use; 6.1's linux-image-amd64 has not).
pkg=${COWFORK_KVM_KERNEL:-$(apt-cache search --names-only '^linux-image-[0-9.]*\+deb12-amd64$' |
  awk '{print $1}' | sort -V | tail -n 1)}
[ -n "$pkg" ] || pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-.*\)/\1/p' | head -n 1)
[ -n "$pkg" ] || { echo "kvm-vm: no Debian kernel package found (apt-get update?)" >&2; exit 2; }
cache=${COWFORK_KVM_CACHE:-/var/cache/cowfork-kvm}/$pkg
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
if [ ! -f "$cache/initrd.gz" ]; then
  # Debian's current kernel, unpacked (not installed: no hooks run).
  rm -rf "$cache/deb" "$cache/root" && mkdir -p "$cache/deb"
  (cd "$cache/deb" && apt-get download "$pkg" 2>/dev/null >&2)
  dpkg-deb -x "$cache"/deb/"$pkg"_*.deb "$cache/root"
  kver=$(ls "$cache/root/lib/modules")
  /sbin/depmod -b "$cache/root" "$kver"
  cp "$cache/root/boot/vmlinuz-$kver" "$cache/vmlinuz"
  ird=$cache/ird
  rm -rf "$ird" && mkdir -p "$ird"/{bin,mod,newroot,proc,sys,dev}
  cp "$(command -v busybox)" "$ird/bin/busybox"
  # The modules for 9p over virtio-pci and kvm-amd, dependencies first.
  moddir=$cache/root/lib/modules/$kver
  order=()
  add() { # add MODULE-PATH after its dependencies (modules.dep lists them)
    local m=$1 d
    for x in "${order[@]:-}"; do [ "$x" = "$m" ] && return; done
    for d in $(sed -n "s|^$m: *||p" "$moddir/modules.dep" | tr ' ' '\n' | tac); do add "$d"; done
    order+=("$m")
  }
  for m in virtio_pci 9pnet_virtio 9p kvm-amd; do
    add "$(grep -o "^[^:]*/$m\.ko[^:]*" "$moddir/modules.dep")"
  done
  list=""
  for m in "${order[@]}"; do
    b=$(basename "$m")
    case $b in *.xz) xz -dc "$moddir/$m" >"$ird/mod/${b%.xz}"; b=${b%.xz} ;; *) cp "$moddir/$m" "$ird/mod/$b" ;; esac
    list="$list $b"
  done
  cat >"$ird/init" <<EOF
#!/bin/busybox sh
B=/bin/busybox
\$B mount -t proc proc /proc; \$B mount -t sysfs sys /sys; \$B mount -t devtmpfs dev /dev
for m in $list; do \$B insmod /mod/\$m || echo "kvm-vm: insmod \$m failed"; done
\$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose root /newroot || \$B poweroff -f
\$B mount --move /dev /newroot/dev
job=\$(\$B sed -n 's/.*cfjob=\([^ ]*\).*/\1/p' /proc/cmdline)
\$B chroot /newroot /bin/sh "\$job/run"
\$B sync
\$B poweroff -f
EOF
  chmod +x "$ird/init"
  (cd "$ird" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$cache/initrd.gz.tmp"
  mv "$cache/initrd.gz.tmp" "$cache/initrd.gz"
fi
flock -u 9
# The job: a directory on the shared file system holding the script the
# guest runs, its output and its exit status.
mkdir -p "$cache/jobs"
job=$(mktemp -d "$cache/jobs/job.XXXXXX")
trap 'rm -rf "$job"' EXIT
{
  echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t tmpfs tmp /tmp; mount -t tmpfs run /run; mount -t tmpfs vartmp /var/tmp'
  echo 'busybox ip link set lo up || echo "kvm-vm: no loopback" >&2'
  echo 'mount -t devpts devpts /dev/pts 2>/dev/null; mkdir -p /dev/shm && mount -t tmpfs shm /dev/shm; ln -sf /proc/self/fd /dev/fd; for i in 0:stdin 1:stdout 2:stderr; do ln -sf /proc/self/fd/${i%:*} /dev/${i#*:}; done'
  printf 'export PATH=%q HOME=%q TERM=dumb COWFORK_EMULATED=1\n' "$PATH" "${HOME:-/root}"
  for v in FUZZ_SECONDS ASAN_OPTIONS UBSAN_OPTIONS BUILD COWFORK_TEST_DIR TESTS_EXACT COWFORK_KVM_VM; do
    [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  printf 'cd %q || exit 1\n' "$PWD"
  printf '%q ' "$@"
  echo '>"$(dirname "$0")/out" 2>&1; echo $? >"$(dirname "$0")/rc"'
} >"$job/run"
touch "$job/out"
tail -n +1 -f "$job/out" &
tailpid=$!
qemu-system-x86_64 -M q35 -nic none -cpu max -m "$mem" -smp "$cpus" -accel "tcg,thread=${COWFORK_KVM_TCG_THREAD:-single}" \
  -nographic -no-reboot -kernel "$cache/vmlinuz" -initrd "$cache/initrd.gz" \
  -append "console=ttyS0 quiet loglevel=1 nowatchdog panic=-1 cfjob=$job" \
  -virtfs local,path=/,mount_tag=root,security_model=passthrough,id=r,multidevs=remap \
  >"$job/console" 2>&1 </dev/null || true
sleep 0.3
kill $tailpid 2>/dev/null || true
wait $tailpid 2>/dev/null || true
if [ ! -s "$job/rc" ]; then
  echo "kvm-vm: the VM ended without the command's status; its console:" >&2
  tail -n 30 "$job/console" >&2
  exit 125
fi
exit "$(cat "$job/rc")"
