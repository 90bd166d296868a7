#!/usr/bin/env bash
# image import/export share data by reflink where the store's file system can
# (issue 11, item 15: lib/clone.c was reachable from no command): on a loop
# XFS with reflink, import shares the input's aligned data runs with the new
# layer (FICLONERANGE), export shares the layers' runs with the output, and
# a one-layer image is exported by cf_clone of its layer file; each says the
# method and the bytes shared and copied (text and --json). From or to
# another file system the data is copied, and says so. Contents are checked
# with cmp, sharing with FIEMAP (xfs_io) where available.
source "$(dirname "$0")/functions.sh"
requires mkfs.xfs mount umount cmp python3
mnt=$TMP/mnt
mount_xfs_reflink "$mnt"
export COWFORK_STORE=$mnt/store
j() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
shared_extents() { # number of extents of $1 flagged shared (FIEMAP_EXTENT_SHARED 0x2000)
  local n=0 f
  while read -r -a f; do
    [ ${#f[@]} -gt 0 ] && [[ ${f[-1]} == 0x* ]] && (( f[-1] & 0x2000 )) && n=$((n + 1)) || true
  done < <(xfs_io -r -c "fiemap -v" "$1")
  echo $n
}
MiB=$((1 << 20))

# 8 MiB random, 4 MiB of zeros, 4 MiB random: 12 MiB of data.
head -c 8M /dev/urandom >"$mnt/a.raw"
head -c 4M /dev/zero >>"$mnt/a.raw"
head -c 4M /dev/urandom >>"$mnt/a.raw"
out=$(cowfork image import "$mnt/a.raw" a --json)
[ "$(j "$out" method)" = reflink ] && [ "$(j "$out" shared_bytes)" = $((12 * MiB)) ] &&
  [ "$(j "$out" copied_bytes)" = 0 ] || fail "import on XFS: $out"
cowfork image verify a >/dev/null || fail "verify a"
layer=$mnt/store/layers/$(cowfork image info a --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["layer_ids"][0])')
if command -v xfs_io >/dev/null; then
  [ "$(shared_extents "$layer")" -gt 0 ] || fail "the layer shares no extent: $(xfs_io -r -c 'fiemap -v' "$layer")"
fi
# The input is the user's file: writing it must not change the image.
printf 'overwritten' | dd of="$mnt/a.raw" bs=1 seek=4096 conv=notrunc status=none
cowfork image verify a >/dev/null || fail "writing the input changed the image's layer"
echo "ok   import on XFS: $out"

# Export of a (two-extent) image into XFS: every run shared.
out=$(cowfork image export a "$mnt/a.out" --json)
[ "$(j "$out" method)" = reflink ] && [ "$(j "$out" shared_bytes)" = $((12 * MiB)) ] || fail "export a: $out"
cowfork image export a "$TMP/a.ref" >/dev/null
cmp "$mnt/a.out" "$TMP/a.ref" || fail "the reflinked export differs from a copied one"
echo "ok   export on XFS: $out"

# A one-layer image that is its layer file: cloned whole by cf_clone.
head -c 8M /dev/urandom >"$mnt/b.raw"
cowfork image import "$mnt/b.raw" b >/dev/null
out=$(cowfork image export b "$mnt/b.out")
grep -q "^exported b to $mnt/b.out: reflink, $((8 * MiB)) bytes shared, 0 bytes copied$" <<<"$out" ||
  fail "whole-layer export: $out"
cmp "$mnt/b.raw" "$mnt/b.out" || fail "whole-layer export differs"
[ -w "$mnt/b.out" ] && [ "$(stat -c %a "$mnt/b.out")" = "$(printf '%o' $((0666 & ~$(umask))))" ] ||
  fail "the export is not a normal writable file: $(stat -c %a "$mnt/b.out")"
printf 'written' | dd of="$mnt/b.out" bs=1 seek=100 conv=notrunc status=none
cowfork image verify b >/dev/null || fail "writing the export changed the store"
echo "ok   one-layer export: $out"

# Another file system ($TMP): copies, reported as such.
out=$(cowfork image export a "$TMP/a2.out" --json)
[ "$(j "$out" method)" = copy ] && [ "$(j "$out" shared_bytes)" = 0 ] &&
  [ "$(j "$out" copied_bytes)" = $((12 * MiB)) ] || fail "export to another file system: $out"
out=$(cowfork image export b "$TMP/b2.out" --json)
case $(j "$out" method) in copy_file_range | read/write) ;; *) fail "whole-layer export to another fs: $out" ;; esac
[ "$(j "$out" copied_bytes)" = $((8 * MiB)) ] || fail "whole-layer export to another fs: $out"
cmp "$mnt/b.raw" "$TMP/b2.out" || fail "whole-layer copy differs"
cp "$mnt/b.raw" "$TMP/c.raw"
out=$(cowfork image import "$TMP/c.raw" c --json)
[ "$(j "$out" method)" = copy ] && [ "$(j "$out" copied_bytes)" = $((8 * MiB)) ] || fail "import from another fs: $out"
echo "ok   across file systems: copied, and said so"
