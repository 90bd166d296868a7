/* Live sandboxes: a child of a busybox sh template, kept alive across
 * several request/answer rounds through a memfd stdin (the daemon's exec
 * loop, cf_sandbox_run_until after a pause), its state kept between rounds,
 * saved as a branch mid-conversation, and ending when the program exits.
 * The conversation runs twice: in one VM, and parked after every round
 * (cf_sandbox_park: the VM given back, the next round in whichever spare
 * VM comes, COWFORK_CHECK_PARK=1 comparing all of memory). Then several
 * parked children whose VMs change hands, one growing its heap and /tmp. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cowfork/daemon.h"
#include "cowfork/error.h"
#include "cowfork/shim.h"
#include "cowfork/store.h"
#include "tap.h"

static int in, out, err;
static bool parking;

static int exec_round(struct cf_sandbox *sb, const char *input, char *got, size_t cap,
                      struct cf_sandbox_result *res)
{
  ftruncate(in, 0);
  lseek(in, 0, SEEK_SET);
  pwrite(in, input, strlen(input), 0);
  ftruncate(out, 0);
  lseek(out, 0, SEEK_SET);
  if (cf_sandbox_run_until(sb, res) < 0)
    return -1;
  ssize_t n = pread(out, got, cap - 1, 0);
  got[n < 0 ? 0 : n] = 0;
  if (parking && res->paused && cf_sandbox_park(sb) < 0) {
    diag("park: %s", cf_error());
    return -1;
  }
  return 0;
}

static void conversation(struct cf_store *s, struct cf_template *t)
{
  struct cf_sandbox_result res;
  char name[32], got[4096];
  snprintf(name, sizeof name, "sh-x%d", parking);
  struct cf_sandbox_opts o = {.stdio = {in, out, err}, .branch = true, .timeout = 10};
  struct cf_sandbox *sb = cf_template_fork(t, &o);
  ok(sb, "forked");
  ok(exec_round(sb, "x=41; echo one\n", got, sizeof got, &res) == 0 && res.paused, "round 1 pauses");
  ok(strcmp(got, "one\n") == 0, "round 1 output '%s'", got);
  ok(exec_round(sb, "x=$((x+1)); echo x=$x\n", got, sizeof got, &res) == 0 && res.paused, "round 2 pauses");
  ok(strcmp(got, "x=42\n") == 0, "round 2 keeps state: '%s'", got);
  ok(exec_round(sb, "", got, sizeof got, &res) == 0 && res.paused && !got[0], "an empty round pauses at once");
  ok(cf_sandbox_save(sb, s, name, NULL) == 0, "saved mid-conversation as a branch: %s", cf_error());
  if (parking)
    ok(cf_sandbox_park(sb) == 0, "parked again after the save (which took a VM)");
  ok(exec_round(sb, "echo /tmp > /tmp/cowfork-live-f; read l < /tmp/cowfork-live-f; echo $l $x\n", got, sizeof got, &res) == 0 &&
         res.paused, "round after the save");
  ok(strcmp(got, "/tmp 42\n") == 0, "state after the save: '%s'", got);
  /* The branch, forked, has x=42 and none of the later /tmp file. */
  int in2 = memfd_create("in2", 0);
  struct cf_sandbox_opts o2 = {.stdio = {in2, out, err}, .branch = true, .timeout = 10};
  struct cf_template *tb = cf_template_open(s, name);
  struct cf_sandbox *b = tb ? cf_template_fork(tb, &o2) : NULL;
  ok(b, "branch forked");
  int save_in = in;
  in = in2;
  ok(exec_round(b, "echo b$x; [ -f /tmp/cowfork-live-f ] && echo file || echo nofile\n", got, sizeof got, &res) == 0 && res.paused,
     "branch round");
  ok(strcmp(got, "b42\nnofile\n") == 0, "branch state: '%s'", got);
  in = save_in;
  int rc = exec_round(sb, "exit 7\n", got, sizeof got, &res);
  ok(rc == 0 && !res.paused, "exit ends it");
  is(res.status, 7, "with its status");
  ok(cf_sandbox_run_until(sb, &res) < 0, "an ended sandbox does not go on");
  ok(!parking || cf_sandbox_park(sb) < 0, "an ended sandbox is not parked");
  cf_sandbox_free(b);
  cf_sandbox_free(sb);
  cf_template_close(tb);
  close(in2);
}

int main(void)
{
  if (access("/dev/kvm", R_OK | W_OK) != 0)
    skip_all("no /dev/kvm");
  if (access("/bin/busybox", X_OK) != 0)
    skip_all("no /bin/busybox");
  char dir[] = "/tmp/cowfork-live.XXXXXX";
  if (!mkdtemp(dir))
    return 1;
  struct cf_store *s = cf_store_open(dir);
  ok(s, "store");
  char *argv[] = {"/bin/busybox", "sh", NULL};
  char *envp[] = {"PATH=/bin", NULL};
  int devnull = open("/dev/null", O_RDONLY);
  struct cf_sandbox_opts to = {.program = "/bin/busybox", .argv = argv, .envp = envp, .mem_size = 64 << 20,
                               .stdio = {devnull, 1, 2}, .ready = CF_READY_STDIN};
  struct cf_sandbox_result res;
  struct cf_sandbox *t0 = cf_sandbox_new(&to);
  ok(t0 && cf_sandbox_run_until(t0, &res) == 0 && res.paused, "template runs to its ready point");
  ok(cf_sandbox_save(t0, s, "sh", NULL) == 0, "template saved: %s", cf_error());
  cf_sandbox_free(t0);
  struct cf_template *t = cf_template_open(s, "sh");
  ok(t, "template opened");
  in = memfd_create("in", 0);
  out = memfd_create("out", 0);
  err = memfd_create("err", 0);
  conversation(s, t);
  setenv("COWFORK_CHECK_PARK", "1", 1);
  parking = true;
  conversation(s, t);

  /* Three parked children; each round runs in whatever VM is spare, so
   * VMs change hands. Child 0 grows its heap (brk: a range mapped anew)
   * and writes /tmp; the others must not see any of it. */
  enum { N = 3 };
  struct cf_sandbox *c[N];
  int cin[N];
  struct cf_sandbox_opts co[N];
  char got[4096];
  for (int i = 0; i < N; i++) {
    cin[i] = memfd_create("cin", 0);
    co[i] = (struct cf_sandbox_opts){.stdio = {cin[i], out, err}, .branch = true, .timeout = 10};
    c[i] = cf_template_fork(t, &co[i]);
    ok(c[i] && cf_sandbox_park(c[i]) == 0, "fresh child %d parked before it ran", i);
    in = cin[i];
    char cmd[64];
    snprintf(cmd, sizeof cmd, "v=%d; echo c$v\n", i);
    ok(c[i] && exec_round(c[i], cmd, got, sizeof got, &res) == 0 && res.paused, "child %d parked", i);
  }
  in = cin[0];
  ok(exec_round(c[0], "i=0; while [ $i -lt 3000 ]; do big=\"$big$i,\"; i=$((i+1)); done; echo ${#big} > /tmp/cowfork-live-g; "
                "read l < /tmp/cowfork-live-g; echo $l\n", got,
                sizeof got, &res) == 0 && strcmp(got, "13890\n") == 0, "child 0 grows its heap and /tmp: '%s'", got);
  for (int k = 0; k < 2; k++)
    for (int i = N - 1; i >= 0; i--) {
      in = cin[i];
      char want[64];
      snprintf(want, sizeof want, "c%d %s\n", i, i == 0 ? "13890" : "none");
      ok(exec_round(c[i], "l=none; [ -f /tmp/cowfork-live-g ] && read l < /tmp/cowfork-live-g; echo c$v $l\n", got, sizeof got, &res) == 0 &&
             strcmp(got, want) == 0, "round %d, child %d: '%s'", k, i, got);
    }
  /* The check can fail: a parked child that lost a page is caught. */
  setenv("COWFORK_CHECK_PARK", "leak", 1);
  in = cin[0];
  ok(exec_round(c[0], "echo again\n", got, sizeof got, &res) == 0 && res.paused, "child 0 parked, losing a page");
  setenv("COWFORK_CHECK_PARK", "1", 1);
  ok(exec_round(c[0], "echo c$v\n", got, sizeof got, &res) < 0 && strstr(cf_error(), "COWFORK_CHECK_PARK"),
     "the check reports it: %s", cf_error());
  for (int i = 0; i < N; i++) {
    cf_sandbox_free(c[i]);
    close(cin[i]);
  }
  cf_template_close(t);
  cf_store_close(s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
