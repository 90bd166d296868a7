/* libFuzzer target: the template state-file payload parser (state_parse,
 * shim/snapshot.c), what every child of a template loads: image and parent
 * names, root, program, registers, XSAVE, VMA list, cwd, signals, the /tmp
 * tree with its page lists, the file and fd tables. The input is the
 * payload as it is once the file's checksum has matched (the checksum only
 * catches accidents; the parser must survive anything). The seeds in
 * tests/fuzz/corpus/state are payloads of real templates (busybox sh, with
 * /tmp files and open fds) of every version: s1, s2 version 1, v2, v3, v4, v5, v6 (v5 + two threads),
 * v7-sockets (a process tree holding listening sockets: net.c's records),
 * v8-xattr (extended attributes on a /tmp file, groups, a CPU mask, SCHED_BATCH)
 * v8-shm (a tree sharing memory, /dev/shm files and a hard link: version 8)
 * (tests/unit/shim_state.c loads each). Guest memory is an anonymous 64 MiB mapping: a
 * page list pointing outside the /tmp region must be refused, not read. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shim/shim.h"

#define MEM (64ull << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static uint8_t *mem;
  static struct cf_sandbox_opts o;
  if (!mem) {
    mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (mem == MAP_FAILED || null < 0)
      abort();
    o.stdio[0] = o.stdio[1] = o.stdio[2] = null;
  }
  /* The last byte picks a branch child (it pauses again at its ready point). */
  o.branch = size && (data[size - 1] & 1);
  struct sb *sb = calloc(1, sizeof *sb);
  struct cf_vm_cpu *cpu = malloc(sizeof *cpu);
  struct cf_vm_regs regs;
  if (!sb || !cpu)
    abort();
  sb->opts = &o;
  sb->mem = mem;
  sb->mem_size = MEM;
  sb->rootfd = -1;
  sb->forked = true;
  if (state_parse(sb, data, size, "fuzz", cpu, &regs) == 0) {
    /* What was loaded must hold together: VMAs sorted inside guest memory,
     * every open fd a file. */
    for (int i = 0; i < sb->nvma; i++)
      if (sb->vmas[i].start >= sb->vmas[i].end || sb->vmas[i].end > MEM ||
          (i && sb->vmas[i].start < sb->vmas[i - 1].end))
        abort();
    if (sb->cwd[0] != '/' || !sb->tmpfs)
      abort();
    /* threads: distinct tids below the next one, each with its vCPU state */
    for (int i = 0; i < sb->nheld; i++) {
      if (!sb->held[i]->cpu || sb->held[i]->tid <= 0 || sb->held[i]->tid >= sb->next_tid)
        abort();
      for (int k = 0; k < i; k++)
        if (sb->held[k]->tid == sb->held[i]->tid)
          abort();
    }
  }
  /* a tree's other processes (version 7) are parsed only: procs_make is
   * not run here, so their records and the load's file references go */
  free(sb->load_procs);
  sb->load_procs = NULL;
  sb->nload_procs = 0;
  fs_load_done(sb);
  fs_fini(sb);
  task_free_held(sb);
  task_free_creds(sb);
  free(sb->vmas);
  free(sb);
  free(cpu);
  return 0;
}
