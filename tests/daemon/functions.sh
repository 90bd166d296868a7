# Sourced by tests/daemon-*.sh (after functions.sh): skips without /dev/kvm
# or busybox, then the helpers of tests/daemon/api.sh (a daemon on a private
# socket, `api METHOD PATH [BODY]`...) and a busybox sh template.
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
. "$(dirname "${BASH_SOURCE[0]}")/api.sh"
start_daemon() { up "" "$@"; } # start_daemon [ARGS...]: up, its stderr as it is
stop_daemon() { down; }
make_sh_template() {
  cowfork template create "${1:-sh}" --mem 64M -- /bin/busybox sh 2>/dev/null || fail "template create"
}
