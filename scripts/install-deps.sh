#!/bin/sh
# Installs the Debian 12 packages cowfork needs to build and test. Idempotent:
# asks apt only for what is missing. Run as root.
set -eu
PKGS="
gcc make pkg-config
libroaring-dev uuid-dev libxxhash-dev libext2fs-dev libmicrohttpd-dev libjansson-dev libarchive-dev libseccomp-dev
clang libclang-rt-14-dev
xfsprogs e2fsprogs util-linux
qemu-utils libnbd-bin nbdkit python3-libnbd fio
qemu-system-x86 cpio kmod
python3 python3-numpy python3-pytest python3-hypothesis libpython3.11-testsuite busybox-static curl
libopenblas0-pthread
"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# OpenBLAS is there for the tests that run numpy on its threads
# (LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread); numpy's
# default BLAS stays the reference one, as on a system without OpenBLAS.
pin_blas() {
  [ "$(id -u)" = 0 ] || return 0
  for lib in blas/libblas lapack/liblapack; do
    f=/usr/lib/x86_64-linux-gnu/$lib.so.3
    if [ -e "$f" ]; then update-alternatives --set "${lib#*/}.so.3-x86_64-linux-gnu" "$f" >/dev/null || true; fi
  done
}
if [ -z "$missing" ]; then
  pin_blas
  echo "install-deps: all packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing:$missing; run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q || true # a stale or unreachable list must not stop an install from cache
apt-get install -y -q --no-install-recommends $missing
pin_blas
