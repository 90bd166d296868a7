#!/usr/bin/env bash
# cf_clone on XFS with reflink: a loop-mounted 300 MiB file system. The clone
# must be a reflink (also with CF_CLONE_IMMUTABLE: reflink comes first), equal
# to the source, with shared extents, and a write to it must not reach the
# source. A copy that runs out of space must fail and leave nothing behind.
# Uses the helper mode of the unit test: $BUILD/tests/clone [-i] SRC DST.
source "$(dirname "$0")/functions.sh"
requires mkfs.xfs mount umount cmp
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) CLONE=$BUILD/tests/clone ;; *) CLONE=$ROOT/$BUILD/tests/clone ;; esac
[ -x "$CLONE" ] || fail "$CLONE is not built (make $BUILD/tests/clone)"
mnt=$TMP/mnt
mount_xfs_reflink "$mnt"

# 20 MiB of random data with a hole in the middle.
head -c 8M /dev/urandom >"$mnt/src"
truncate -s 16M "$mnt/src"
head -c 4M /dev/urandom >>"$mnt/src"
chmod 0640 "$mnt/src"
cp --reflink=never "$mnt/src" "$TMP/src.orig"

method=$("$CLONE" "$mnt/src" "$mnt/dst") || fail "clone failed"
[ "$method" = reflink ] || fail "expected reflink on XFS, got '$method'"
cmp "$mnt/src" "$mnt/dst" || fail "clone differs from source"
[ "$(stat -c %a "$mnt/dst")" = 640 ] || fail "permission bits not copied: $(stat -c %a "$mnt/dst")"
[ "$(stat -c %i "$mnt/src")" != "$(stat -c %i "$mnt/dst")" ] || fail "clone shares the inode"
if command -v xfs_io >/dev/null; then
  # FIEMAP_EXTENT_SHARED (0x2000) on the clone's extents.
  shared=0
  while read -r -a f; do
    [ ${#f[@]} -gt 0 ] && [[ ${f[-1]} == 0x* ]] && (( f[-1] & 0x2000 )) &&
      shared=$((shared + 1)) || true
  done < <(xfs_io -r -c "fiemap -v" "$mnt/dst")
  [ "$shared" -gt 0 ] || fail "clone has no shared extents: $(xfs_io -r -c 'fiemap -v' "$mnt/dst")"
fi

# Write into the clone (inside the first data extent and into the hole).
printf 'written into the clone' | dd of="$mnt/dst" bs=1 seek=4096 conv=notrunc status=none
printf 'also into the hole' | dd of="$mnt/dst" bs=1 seek=$((10 << 20)) conv=notrunc status=none
sync
cmp -s "$mnt/src" "$mnt/dst" && fail "the write did not change the clone"
cmp "$mnt/src" "$TMP/src.orig" || fail "writing to the clone changed the source"

# CF_CLONE_IMMUTABLE still reflinks first.
method=$("$CLONE" -i "$mnt/src" "$mnt/dst2") || fail "immutable clone failed"
[ "$method" = reflink ] || fail "expected reflink with -i on XFS, got '$method'"
cmp "$mnt/src" "$mnt/dst2" || fail "immutable clone differs from source"

# dst exists: refused, untouched.
if "$CLONE" "$mnt/src" "$mnt/dst" 2>"$TMP/err"; then fail "clone over an existing dst succeeded"; fi
grep -q 'already exists' "$TMP/err" || fail "unexpected message: $(cat "$TMP/err")"
cmp -s "$mnt/src" "$mnt/dst" && fail "existing dst was overwritten"

# From another file system (ext4/tmpfs at $TMP) into XFS: a copy, not a
# reflink. 400 MiB of written zeros do not fit: ENOSPC fails, nothing is left.
dd if=/dev/zero of="$TMP/big" bs=1M count=400 status=none
if "$CLONE" "$TMP/big" "$mnt/big" 2>"$TMP/err"; then
  fail "a 400 MiB clone into 300 MiB succeeded"
fi
grep -q 'No space left' "$TMP/err" || fail "expected ENOSPC, got: $(cat "$TMP/err")"
[ ! -e "$mnt/big" ] || fail "a partial clone was left at dst"
left=$(find "$mnt" -name '*.tmp.*')
[ -z "$left" ] || fail "temp files left behind: $left"
rm -f "$TMP/big"

head -c 1M /dev/urandom >"$TMP/small"
method=$("$CLONE" "$TMP/small" "$mnt/small") || fail "cross-file-system clone failed"
case $method in copy_file_range | read/write) ;; *) fail "cross-fs clone used '$method'" ;; esac
cmp "$TMP/small" "$mnt/small" || fail "cross-fs clone differs"
echo "ok: reflink on XFS, source unchanged by writes to the clone, ENOSPC leaves nothing"
