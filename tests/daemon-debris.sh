#!/usr/bin/env bash
# What a crashed daemon left in its store (issue 11, item 12: a kill -9
# during a branch leaves an image that takes the name, 409, but no template
# to delete, 404): an image whose template never came, a temp state file, a
# pause template's image without its state file, files in tmp/; removed at
# start, and only that. No KVM needed: the debris is made by hand, as
# daemon/daemon.c's save (intent, layer, image, state file) leaves it.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/daemon/api.sh"

# --- 1. debris of a crash -------------------------------------------------------
S=$COWFORK_STORE
up "$TMP/log1"
down
truncate -s 16M "$TMP/z"
printf x | dd of="$TMP/z" bs=1 seek=8192 conv=notrunc status=none
# A branch "nb" killed between its image and its state file: the intent the
# daemon wrote before saving, the image, the temp state file, a layer in tmp/.
mkdir -p "$S/daemon/saving" "$S/templates"
: >"$S/daemon/saving/nb"
cowfork image import "$TMP/z" nb.mem
: >"$S/templates/.nb.AbC123"
head -c 8192 /dev/urandom >"$S/tmp/Xy12Zq"
# A pause template's image without its state file; a temp state file.
cowfork image import "$TMP/z" _sb-00000000000000ab-p1.mem
: >"$S/daemon/.state.json.Qw12er"
# Not the daemon's: an image of another name without a template (stays).
cowfork image import "$TMP/z" mine.mem
api GET /v1/templates/nb >/dev/null 2>&1 || true
up "$TMP/log1"
[ ! -e "$S/images/nb.mem" ] || fail "the half-saved branch's image is still there"
[ ! -e "$S/images/_sb-00000000000000ab-p1.mem" ] || fail "the pause template's orphan image is still there"
[ ! -e "$S/templates/.nb.AbC123" ] || fail "the temp state file is still there"
[ ! -e "$S/tmp/Xy12Zq" ] || fail "the temp layer is still there"
[ ! -e "$S/daemon/.state.json.Qw12er" ] || fail "the state file's temp file is still there"
[ -z "$(ls "$S/daemon/saving")" ] || fail "intents left: $(ls "$S/daemon/saving")"
[ -e "$S/images/mine.mem" ] || fail "an image that is not the daemon's was removed"
grep -q "removed nb.mem" "$TMP/log1" || fail "the removal is not logged: $(cat "$TMP/log1")"
echo "ok   debris of an interrupted save removed at start, other images kept"
# A name taken by an image is refused before anything runs (409).
api POST /v1/templates '{"name":"mine","program":"/bin/busybox","args":["sh"]}' >/dev/null
[ "$code" = 409 ] && grep -q "an image named mine.mem exists" <<<"$body" || fail "POST /v1/templates mine: $code $body"
echo "ok   a template name taken by an image: 409 before running ($body)"
down

