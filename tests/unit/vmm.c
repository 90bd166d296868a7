/* The VMM core without the shim: create a VM, run a few bytes of guest code
 * at CPL3, serve its system calls, see its exceptions and refused accesses
 * as exits. Prints the measured costs as diagnostics. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/vmm.h"
#include "tap.h"

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

#define CODE 0x100000ull
#define N 1000

int main(void)
{
  if (access("/dev/kvm", R_OK | W_OK) != 0)
    skip_all("no usable /dev/kvm");
  ok(cf_vm_create(3 << 20) == NULL && cf_errno() == EINVAL, "a size that is not a multiple of 2 MiB is refused");

  double t0 = now_us();
  struct cf_vm *vm = cf_vm_create(64 << 20);
  double t_create = now_us() - t0;
  if (!ok(vm != NULL, "create a VM with 64 MiB: %s", vm ? "" : cf_error()))
    return done_testing();
  uint8_t *mem = cf_vm_mem(vm);
  ok(mprotect(mem + CODE, 4096, PROT_READ | PROT_WRITE) == 0, "map a code page");
  static const uint8_t code[] = {
      0xbb, N & 0xff, N >> 8, 0, 0,   /* mov $N, %ebx */
      0xb8, 39, 0, 0, 0,              /* 1: mov $39, %eax (getpid) */
      0x0f, 0x05,                     /* syscall */
      0xff, 0xcb,                     /* dec %ebx */
      0x75, 0xf5,                     /* jnz 1b */
      0xb8, 60, 0, 0, 0,              /* mov $60, %eax */
      0x0f, 0x05,                     /* syscall */
      0x0f, 0x0b,                     /* ud2 */
      0x8a, 0x04, 0x25, 0, 0, 0x20, 0, /* mov 0x200000, %al: PROT_NONE */
      0xf4,                           /* hlt: #GP at CPL3 */
  };
  memcpy(mem + CODE, code, sizeof code);
  ok(cf_vm_enter_user(vm, CODE, 0x400000) == 0, "enter CPL3");

  struct cf_vm_exit ex;
  t0 = now_us();
  int r = cf_vm_run(vm, &ex);
  double t_first = now_us() - t0;
  ok(r == 0 && ex.reason == CF_VM_EXIT_SYSCALL && cf_vm_regs(vm)->rax == 39, "first exit is the getpid syscall");
  int n = 1;
  t0 = now_us();
  for (;;) {
    cf_vm_regs(vm)->rax = 1234;
    cf_vm_syscall_return(vm);
    if (cf_vm_run(vm, &ex) < 0 || ex.reason != CF_VM_EXIT_SYSCALL || cf_vm_regs(vm)->rax != 39)
      break;
    n++;
  }
  double t_sys = (now_us() - t0) / n;
  is(n, N, "all %d syscalls exit to the VMM", N);
  ok(ex.reason == CF_VM_EXIT_SYSCALL && cf_vm_regs(vm)->rax == 60, "then exit(2)");
  is(cf_vm_regs(vm)->rbx, 0, "rbx survived the round trips");
  cf_vm_syscall_return(vm);
  ok(cf_vm_run(vm, &ex) == 0 && ex.reason == CF_VM_EXIT_EXCEPTION && ex.vector == 6, "ud2 is #UD");
  struct cf_vm_regs u;
  ok(cf_vm_exception_state(vm, &u) == 0 && u.rip == CODE + 23 && u.rsp == 0x400000, "the #UD frame has the user rip and rsp");
  u.rip += 2;
  ok(cf_vm_resume_user(vm, &u) == 0, "resume after the ud2");
  ok(cf_vm_run(vm, &ex) == 0 && ex.reason == CF_VM_EXIT_FAULT && cf_vm_regs(vm)->rip == CODE + 25,
     "a load from host PROT_NONE memory is a fault exit at its rip");
  u = *cf_vm_regs(vm);
  u.rip += 7;
  cf_vm_resume_user(vm, &u);
  ok(cf_vm_run(vm, &ex) == 0 && ex.reason == CF_VM_EXIT_EXCEPTION && ex.vector == 13, "hlt at CPL3 is #GP");
  u.rip = 0x5000; /* the VMM's page tables: supervisor-only */
  u.rsp = 0x400000;
  cf_vm_resume_user(vm, &u);
  ok(cf_vm_run(vm, &ex) == 0 && ex.reason == CF_VM_EXIT_EXCEPTION && ex.vector == 14 && ex.addr == 0x5000,
     "executing the system area is #PF at its address");
  /* The generation page: the program reads it, the host writes it, the
   * program may not write it. */
  uint8_t *gen = cf_vm_generation_page(vm);
  ok(gen == mem + CF_VM_GENERATION_VA, "the generation page is at 0x%llx", (unsigned long long)CF_VM_GENERATION_VA);
  static const uint8_t gcode[] = {
      0x48, 0x8b, 0x1c, 0x25, 0x00, 0xd0, 0, 0, /* mov 0xd000, %rbx */
      0xb8, 39, 0, 0, 0,                        /* mov $39, %eax */
      0x0f, 0x05,                               /* syscall */
      0x88, 0x04, 0x25, 0x00, 0xd0, 0, 0,       /* mov %al, 0xd000 */
      0x0f, 0x0b,                               /* ud2 */
  };
  _Static_assert(CF_VM_GENERATION_VA == 0xd000, "gcode");
  memcpy(mem + CODE + 0x100, gcode, sizeof gcode);
  if (gen)
    memcpy(gen, "0123456789abcdef", 16);
  u.rip = CODE + 0x100;
  u.rsp = 0x400000;
  cf_vm_resume_user(vm, &u);
  uint64_t want;
  memcpy(&want, "01234567", 8);
  ok(cf_vm_run(vm, &ex) == 0 && ex.reason == CF_VM_EXIT_SYSCALL && cf_vm_regs(vm)->rbx == want,
     "the program reads the generation page");
  cf_vm_syscall_return(vm);
  ok(cf_vm_run(vm, &ex) == 0 && ex.reason == CF_VM_EXIT_EXCEPTION && ex.vector == 14 && ex.addr == 0xd000,
     "a store to the generation page is #PF at its address");
  cf_vm_kick(vm);
  ok(cf_vm_run(vm, &ex) == 0 && ex.reason == CF_VM_EXIT_KICKED, "a kick ends the next run");
  diag("VM create %.0f us, enter to first syscall exit %.0f us, syscall round trip %.1f us, %llu exits",
       t_create, t_first, t_sys, (unsigned long long)cf_vm_stats(vm)->exits);
  cf_vm_destroy(vm);
  return done_testing();
}
