/* Template state files of every version still load: the payloads in
 * tests/fuzz/corpus/state (s1, s2: version 1; v2, v3: versions 2 and 3;
 * v4, v4-limits: version 4, the second with RLIMIT_NOFILE and an
 * alternate stack set; v5: v4-limits with a version 5 section, a POSIX timer; v6: v5 with a
 * version 6 section, two threads besides the one that paused) go through state_parse as a child's load would, with
 * no VM (the memory is anonymous), and what they hold comes back: the VMAs,
 * the cwd, the files; version 3's identity, version 4's limits and
 * alternate signal stack, version 6's threads; v7-sockets (a process
 * tree holding a TCP and an AF_UNIX listener: net.c's socket records) its
 * listeners, and damaged records refused; v8-xattr (version 8) its
 * extended attributes, groups, CPU mask and policy; v8-shm
 * (tests/sandbox/treeshm.c) its shared mappings and hard link. bad-page-list and
 * bad-threads (two threads with one tid) must be refused. */
#include <errno.h>
#include <sched.h>
#include <sys/resource.h>

#define SHIM_UTIL_NO_HARNESS
#include "cowfork/error.h"
#include "shim_util.h"
#include "tap.h"

#define MEM (64ull << 20)
#define CORPUS "tests/fuzz/corpus/state" /* tests/run runs from the top directory */

static uint8_t *read_all(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  static uint8_t buf[1 << 20];
  *len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return buf;
}

/* Parse the seed; 0 and *out kept (the caller frees) or -1. */
static int parse(const char *seed, struct cf_sandbox_opts *o, struct sb **out)
{
  char path[512];
  snprintf(path, sizeof path, "%s/%s", CORPUS, seed);
  size_t len;
  uint8_t *p = read_all(path, &len);
  struct sb *s = shim_sb_new(o, MEM, PROT_READ | PROT_WRITE);
  *out = s;
  if (!p) {
    diag("%s: %m", path);
    return -1;
  }
  s->forked = true;
  struct cf_vm_cpu *cpu = calloc(1, sizeof *cpu);
  struct cf_vm_regs regs;
  int rc = state_parse(s, p, len, seed, cpu, &regs);
  if (rc < 0)
    diag("%s: %s", seed, cf_error());
  free(cpu);
  return rc;
}

static void done(struct sb *s)
{
  fs_fini(s);
  task_free_held(s);
  task_free_creds(s);
  shim_sb_free(s);
}

static int nfds(struct sb *s)
{
  int n = 0;
  for (int i = 0; i < s->nfds; i++)
    n += s->fds[i] != NULL;
  return n;
}

int main(void)
{
  static struct cf_sandbox_opts o;
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  o.stdio[0] = o.stdio[1] = o.stdio[2] = null;
  struct sb *s;
  if (access(CORPUS "/s1", R_OK) < 0)
    skip_all(CORPUS ": not found (run from the top directory)");
  const char *v1[] = {"s1", "s2"};
  for (int i = 0; i < 2; i++) {
    ok(parse(v1[i], &o, &s) == 0, "version 1 seed %s loads", v1[i]);
    ok(s->nvma > 0 && s->cwd[0] == '/' && nfds(s) >= 3, "%s: VMAs, cwd, fds", v1[i]);
    ok(strcmp(s->hostname, CF_DEFAULT_HOSTNAME) == 0 && s->arg_end == 0, "%s: default identity", v1[i]);
    done(s);
  }
  ok(parse("v2", &o, &s) == 0, "version 2 seed loads");
  ok(s->nvma > 0 && nfds(s) >= 3 && s->arg_end == 0, "v2: VMAs, fds, no identity");
  done(s);
  ok(parse("v3", &o, &s) == 0, "version 3 seed loads");
  ok(s->nvma > 0 && nfds(s) >= 3 && s->arg_end > s->arg_start, "v3: VMAs, fds, the identity");
  done(s);
  ok(parse("v4", &o, &s) == 0, "version 4 seed loads");
  ok(s->nvma > 0 && nfds(s) >= 3 && s->arg_end > s->arg_start && s->rlim_set == 0 && s->ss_size == 0,
     "v4: VMAs, fds, identity, default limits, no alternate stack");
  done(s);
  ok(parse("v4-limits", &o, &s) == 0, "version 4 seed with limits loads");
  struct rlimit rl;
  rlim_get(s, RLIMIT_NOFILE, &rl);
  ok(rl.rlim_cur == 20 && rl.rlim_max == 40 && fd_limit(s) == 20, "v4-limits: RLIMIT_NOFILE 20 40");
  rlim_get(s, RLIMIT_STACK, &rl);
  ok(rl.rlim_cur == 8ull << 20, "v4-limits: the others are the defaults");
  ok(s->ss_sp == 0x400000 && s->ss_size == 65536 && s->ss_flags == 0, "v4-limits: the alternate stack");
  done(s);
  ok(parse("v5", &o, &s) == 0, "version 5 seed (v4-limits with a POSIX timer section) loads");
  ok(s->next_timer_id == 2 && s->timers[3].kind == TK_POSIX && s->timers[3].id == 1 && s->timers[3].signo == 34 &&
         s->timers[3].value > 0 && s->timers[3].interval == 100000000 && s->nsigq == 0,
     "v5: POSIX timer 1 armed, SIGRTMIN every 100 ms, next id 2");
  done(s);
  ok(parse("v6", &o, &s) == 0, "version 6 seed (v5 with a thread section) loads");
  ok(s->nheld == 2 && s->next_tid == 6 && s->held[0]->tid == 3 && s->held[1]->tid == 5 &&
         s->held[0]->stop_regs.rip == 0x401000 && s->held[1]->stop_regs.rip == 0x401010 &&
         s->held[1]->cpu->fs_base == 0x510000 && s->held[0]->sigmask == 1u << 9 &&
         s->held[0]->robust_list == 0x600000 && s->robust_list == 0x610000,
     "v6: threads 3 and 5 with their registers, FS base, signal mask, robust list; next tid 6");
  done(s);
  ok(parse("bad-threads", &o, &s) < 0 && errno == EINVAL, "a thread list with a tid twice is refused");
  done(s);
  o.max_threads = 2; /* the template has 3 threads */
  ok(parse("v6", &o, &s) < 0 && errno == EAGAIN, "a template with more threads than the sandbox's max_threads is refused");
  o.max_threads = 0;
  done(s);
  ok(parse("v5", &o, &s) == 0 && s->nheld == 0 && s->next_tid == 0, "v5: one thread");
  done(s);
  ok(parse("v4", &o, &s) == 0 && s->next_timer_id == 0 && s->ntimer <= 3, "v4: no POSIX timer");
  done(s);
  ok(parse("bad-page-list", &o, &s) < 0 && errno == EINVAL, "a bad /tmp page list is refused");
  done(s);
  /* Version 7's process list, appended to the v6 seed: a good one parses,
   * each bad field is refused by name (procs_parse). */
  {
    char path[512];
    size_t n6;
    snprintf(path, sizeof path, "%s/v6", CORPUS);
    uint8_t *p6 = read_all(path, &n6);
    static uint8_t v6[1 << 20];
    if (p6)
      memcpy(v6, p6, n6);
    /* one live process: pid, parent, pgid, sid, exit signal, flags, stop
     * signal, wstatus, exit code, kill signal, image, payload length */
    struct proc_case {
      const char *what;
      uint64_t tag, next, pid, ppid, flags, sig, plen;
      const char *image;
      bool good;
    } cases[] = {
        {"a good list", 0x3753434f52504343ull, 1000, 7, 0, 0, 17, 0, "t.mem.7", true},
        {"a bad tag", 0x3653434f52504343ull, 1000, 7, 0, 0, 17, 0, "t.mem.7", false},
        {"a pid past the next pid", 0x3753434f52504343ull, 1000, 1000, 0, 0, 17, 0, "t.mem.1000", false},
        {"an unknown parent", 0x3753434f52504343ull, 1000, 7, 99, 0, 17, 0, "t.mem.7", false},
        {"its own parent", 0x3753434f52504343ull, 1000, 7, 7, 0, 17, 0, "t.mem.7", false},
        {"unknown flags", 0x3753434f52504343ull, 1000, 7, 0, 64, 17, 0, "t.mem.7", false},
        {"a bad exit signal", 0x3753434f52504343ull, 1000, 7, 0, 0, 65, 0, "t.mem.7", false},
        {"a payload past the end", 0x3753434f52504343ull, 1000, 7, 0, 0, 17, 1u << 20, "t.mem.7", false},
        {"a bad image name", 0x3753434f52504343ull, 1000, 7, 0, 0, 17, 0, "../x", false},
    };
    for (size_t i = 0; p6 && i < sizeof cases / sizeof *cases; i++) {
      const struct proc_case *c = &cases[i];
      struct wbuf w = {0};
      w_bytes(&w, v6, n6);
      w_u64(&w, c->tag);
      w_u64(&w, c->next);
      w_u64(&w, 0); /* the first's pgid, sid */
      w_u64(&w, 0);
      w_u64(&w, 1);
      uint64_t v[10] = {c->pid, c->ppid, 0, 0, c->sig, c->flags, 0, 0, 0, 0};
      for (int k = 0; k < 10; k++)
        w_u64(&w, v[k]);
      w_str(&w, c->image);
      w_u64(&w, c->plen);
      struct sb *s2 = shim_sb_new(&o, MEM, PROT_READ | PROT_WRITE);
      s2->forked = true;
      struct cf_vm_cpu *cpu = calloc(1, sizeof *cpu);
      struct cf_vm_regs regs;
      int rc = state_parse(s2, w.p, w.n, "v7", cpu, &regs);
      if (c->good)
        ok(rc == 0 && s2->nload_procs == 1 && s2->load_procs[0].pid == 7, "v7: %s loads (%s)", c->what,
           rc ? cf_error() : "1 process");
      else
        ok(rc < 0 && errno == EINVAL, "v7: %s is refused (%s)", c->what, rc ? cf_error() : "loaded");
      free(cpu);
      free(s2->load_procs);
      s2->load_procs = NULL;
      s2->nload_procs = 0;
      done(s2);
      free(w.p);
    }
    ok(p6 != NULL, "the v6 seed for the v7 cases");
  }
  /* v7-sockets: a template of tests/sandbox/nettmpl.c (two processes; the
   * first holds a TCP listener on 127.0.0.1 and an AF_UNIX one on an
   * abstract name, net.c's records after their file table entries). */
  ok(parse("v7-sockets", &o, &s) == 0, "v7-sockets: a template holding listeners loads");
  {
    char d3[160] = "", d4[160] = "";
    struct file *f3 = fs_get(s, 3), *f4 = fs_get(s, 4);
    if (f3 && f3->sock)
      net_describe(f3, d3, sizeof d3);
    if (f4 && f4->sock)
      net_describe(f4, d4, sizeof d4);
    ok(strstr(d3, "AF_INET stream socket, listening on 127.0.0.1:") != NULL, "fd 3: %s", d3);
    ok(strstr(d4, "AF_UNIX stream socket, listening on @cf-nettmpl-") != NULL, "fd 4: %s", d4);
    ok(s->nload_procs == 1, "and the server process");
  }
  free(s->load_procs);
  s->load_procs = NULL;
  s->nload_procs = 0;
  fs_load_done(s);
  done(s);
  {
    /* its socket records damaged: refused */
    char path[512];
    size_t n;
    snprintf(path, sizeof path, "%s/v7-sockets", CORPUS);
    uint8_t *p = read_all(path, &n);
    static uint8_t b[1 << 20];
    const uint64_t tag = 0x314b434f53464343ull;
    size_t at = 0;
    for (size_t i = 0; p && i + 8 <= n && !at; i++)
      if (!memcmp(p + i, &tag, 8))
        at = i;
    ok(at > 0, "v7-sockets: a socket record at %zu", at);
    for (int k = 0; at && k < 3; k++) {
      memcpy(b, p, n);
      uint64_t v = k == 0 ? 0 : k == 1 ? 99 : 3; /* the tag, the family, the state */
      memcpy(b + at + 8 * (k == 0 ? 0 : k == 1 ? 1 : 4), &v, 8);
      struct sb *s2 = shim_sb_new(&o, MEM, PROT_READ | PROT_WRITE);
      s2->forked = true;
      struct cf_vm_cpu *cpu = calloc(1, sizeof *cpu);
      struct cf_vm_regs regs;
      int rc = state_parse(s2, b, n, "v7-sockets", cpu, &regs);
      ok(rc < 0 && errno == EINVAL && strstr(cf_error(), "bad socket"), "v7-sockets with a bad %s: refused (%s)",
         k == 0 ? "tag" : k == 1 ? "family" : "state", rc ? cf_error() : "loaded");
      free(cpu);
      free(s2->load_procs);
      s2->load_procs = NULL;
      s2->nload_procs = 0;
      fs_load_done(s2);
      done(s2);
    }
  }
  /* v8-xattr: a template of python3 that set two extended attributes on
   * /tmp/x, groups [7, 5], CPU 0 only and SCHED_BATCH (tmpfs NODE_XATTR,
   * state version 8). */
  ok(parse("v8-xattr", &o, &s) == 0, "v8-xattr: a version 8 template loads");
  {
    struct tnode *x = tmp_lookup(s, "/tmp/x");
    char v[8] = "", names[64] = "";
    long nv = x ? tmp_getxattr(x, "trusted.b", v, sizeof v) : -1, nn = x ? tmp_listxattr(x, names, sizeof names, true) : -1;
    ok(nv == 2 && memcmp(v, "22", 2) == 0 && nn == 17 && memcmp(names, "user.a\0trusted.b\0", 17) == 0,
       "v8-xattr: /tmp/x's attributes (%ld, %ld)", nv, nn);
    ok(s->ngroups == 2 && s->groups[0] == 5 && s->groups[1] == 7, "v8-xattr: groups 5 7");
    ok(s->cpus_off[0] == 2 && s->cpus_off[1] == 0 && s->policy == SCHED_BATCH, "v8-xattr: CPU 0, SCHED_BATCH");
  }
  done(s);
  { /* the same with no CPU left to the thread, or a bad policy: refused */
    char path[512];
    size_t n8;
    snprintf(path, sizeof path, "%s/v8-xattr", CORPUS);
    uint8_t *p8 = read_all(path, &n8);
    for (int k = 0; p8 && k < 2; k++) {
      static uint8_t b[1 << 20];
      memcpy(b, p8, n8);
      uint64_t v = k == 0 ? 3 : 1; /* cpus_off[0]: both CPUs off; policy SCHED_FIFO */
      memcpy(b + n8 - (k == 0 ? 24 : 8), &v, 8);
      struct sb *s2 = shim_sb_new(&o, MEM, PROT_READ | PROT_WRITE);
      s2->forked = true;
      struct cf_vm_cpu *cpu = calloc(1, sizeof *cpu);
      struct cf_vm_regs regs;
      int rc = state_parse(s2, b, n8, "v8", cpu, &regs);
      ok(rc < 0 && errno == EINVAL, "v8: %s is refused (%s)", k == 0 ? "a mask with no CPU" : "SCHED_FIFO",
         rc ? cf_error() : "loaded");
      free(cpu);
      done(s2);
    }
    ok(p8 != NULL, "the v8 seed");
  }
  /* v8-shm: a template of tests/sandbox/treeshm.c (two processes sharing
   * an anonymous MAP_SHARED region and two sem_open semaphores, /dev/shm
   * files mapped MAP_SHARED; a /tmp hard link): version 8's shared mappings. */
  int r8 = parse("v8-shm", &o, &s);
  ok(r8 == 0, "v8-shm: a template holding shared memory loads");
  if (r8 == 0) {
    bool distinct = s->nshmaps == 3;
    for (int i = 0; i < s->nshmaps && distinct; i++)
      for (int k = 0; k < i; k++)
        distinct = distinct && s->shmaps[i].obj != s->shmaps[k].obj;
    ok(distinct, "v8-shm: 3 shared mappings, 3 objects (%d)", s->nshmaps);
    struct tnode *l1 = tmp_lookup(s, "/tmp/treeshm-l1"), *l2 = tmp_lookup(s, "/tmp/treeshm-l2");
    struct stat st = {0};
    if (l1)
      tmp_stat(l1, &st);
    ok(l1 && l1 == l2 && st.st_nlink == 2, "v8-shm: /tmp/treeshm-l1 and l2 one node, 2 links");
    ok(s->nload_procs == 1, "v8-shm: and the server process");
  }
  free(s->load_procs);
  s->load_procs = NULL;
  s->nload_procs = 0;
  done(s);
  /* The template an image belongs to (version 7: NAME.mem.PID per process). */
  const struct {
    const char *image, *tmpl;
  } owners[] = {{"tree.mem", "tree"},      {"tree.mem.3", "tree"}, {"foo.3.mem", "foo.3"}, {"a.mem.mem.12", "a.mem"},
                {"foo.mem.0", NULL},       {"foo.mem.", NULL},     {".mem", NULL},         {"x", NULL},
                {"foo.mem.3x", NULL},      {"foo.3", NULL}};
  for (size_t i = 0; i < sizeof owners / sizeof *owners; i++) {
    char t[256] = "";
    int r = cf_template_of_image(owners[i].image, t, sizeof t);
    ok(owners[i].tmpl ? r == 0 && strcmp(t, owners[i].tmpl) == 0 : r < 0, "image %s: template %s (got %s)",
       owners[i].image, owners[i].tmpl ? owners[i].tmpl : "none", r < 0 ? "none" : t);
  }
  return done_testing();
}
