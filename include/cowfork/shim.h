/* The Linux ABI shim: runs one static x86-64 Linux program in a micro-VM
 * (vmm.h) and serves its system calls. */
#ifndef COWFORK_SHIM_H
#define COWFORK_SHIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct cf_sandbox_opts {
  const char *root;     /* host directory seen as "/", read-only (NULL: "/") */
  uint64_t mem_size;    /* guest memory (0: 256 MiB) */
  double timeout;       /* seconds, 0: none */
  bool strace;          /* print every system call to trace */
  bool verbose;         /* print loader and exit statistics to trace */
  FILE *trace;          /* NULL: stderr */
  const char *program;  /* path inside the sandbox (resolved under root) */
  char *const *argv;    /* argv[0] included */
  char *const *envp;
  int stdio[3];         /* host fds the sandbox's 0, 1, 2 refer to (dup'ed) */
};

struct cf_sandbox_result {
  int status;           /* the exit status the command should return */
  int exit_code;        /* exit_group argument when exited */
  int signal;           /* killing signal, 0 when the program exited */
  bool timed_out;
  char report[1024];    /* why it was killed: signal, address, registers */
  uint64_t syscalls, enosys, exits;
  uint64_t elf_mapped_bytes, elf_copied_bytes; /* the ELF loader's choice */
  double create_us, first_exit_us, run_us;
};

/* Run opts->program to completion. -1 when the sandbox could not start
 * (no /dev/kvm, program not found or not a supported ELF...): cf_error()
 * says why. Otherwise 0 and res says how it ended (the program's faults,
 * timeouts and VM failures are results, not errors). */
int cf_sandbox_run(const struct cf_sandbox_opts *opts, struct cf_sandbox_result *res);

#endif
