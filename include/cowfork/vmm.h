/* KVM micro-VM with no guest kernel: vCPUs in long mode (one per program
 * thread), the program at CPL3, system calls and exceptions returned to the
 * caller (the shim). A struct cf_vm is one vCPU; the VM and its memory
 * belong to vCPU 0's (cf_vm_create), the others are added by cf_vm_vcpu.
 *
 * Guest virtual addresses equal guest physical addresses: the VMM's page
 * tables identity-map [0, mem_size) once and never change, and the address
 * space the program sees is shaped by the host mapping that backs guest
 * memory (cf_vm_mem()): mmap/mprotect/munmap on that host range are what the
 * guest sees, and KVM follows them through its MMU notifiers. This keeps
 * shadow paging (PVM) coherent without guest page-table edits or flushes.
 * The first CF_VM_USER_BASE bytes hold the VMM's system area (GDT, TSS, IDT,
 * page tables, stubs); the program may use [CF_VM_USER_BASE, mem_size). */
#ifndef COWFORK_VMM_H
#define COWFORK_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CF_VM_USER_BASE 0x10000ull

/* The generation page (like a VM generation id, docs/sandbox.md): one page
 * of the system area the program may read and never write. Its first 16
 * bytes are the sandbox's generation id, new in every child of a template.
 * The program finds its address in the auxiliary vector under
 * CF_AT_GENERATION (getauxval; absent: not a cowfork sandbox, or a
 * template older than the page). */
#define CF_VM_GENERATION_VA 0xd000ull
#define CF_VM_GENERATION_LEN 16
#define CF_AT_GENERATION 0x43460001ull /* "CF", 1: far above Linux's AT_* */

struct cf_vm;

/* vCPUs per VM: 0 .. CF_VM_MAX_VCPUS-1 (the system area's kernel stacks). */
#define CF_VM_MAX_VCPUS 121

/* Same layout as struct kvm_regs. */
struct cf_vm_regs {
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rip, rflags;
};

enum cf_vm_exit_reason {
  CF_VM_EXIT_SYSCALL = 1, /* regs hold the call; set rax, then cf_vm_syscall_return */
  CF_VM_EXIT_EXCEPTION,   /* a CPU exception in the program: vector, error_code, cr2 */
  CF_VM_EXIT_FAULT,       /* an access the host mapping refuses (PROT_NONE, read-only) */
  CF_VM_EXIT_KICKED,      /* cf_vm_kick() or a signal interrupted the run */
};

struct cf_vm_exit {
  enum cf_vm_exit_reason reason;
  int vector;          /* EXCEPTION: 0 #DE, 6 #UD, 13 #GP, 14 #PF, ... */
  uint64_t error_code; /* EXCEPTION */
  uint64_t addr;       /* EXCEPTION #PF: CR2 */
};

struct cf_vm_stats {
  uint64_t exits;      /* returns from KVM_RUN */
  uint64_t syscalls;   /* of them system calls */
  double create_us;    /* cf_vm_create, wall clock */
};

/* Create a VM with mem_size bytes of guest memory (a multiple of 2 MiB, at
 * most 4 GiB): the host range starts PROT_NONE except the system area. */
struct cf_vm *cf_vm_create(uint64_t mem_size);
void cf_vm_destroy(struct cf_vm *vm);

/* Where a forked VM's memory comes from: map() replaces [addr, addr+size)
 * (reserved PROT_NONE) with a template's memory image, system area included
 * (its page tables are the same for every VM of that size), e.g. with a
 * memory backend (mem.h) at that address. The VMM then only makes the stub
 * page read-only; the caller applies the rest of the protections.
 * Once map() has succeeded, unmap(ctx) owns all of [addr, addr+size): the
 * VMM calls it exactly once (in cf_vm_destroy, or when a later step of
 * cf_vm_create_from fails) and never unmaps that range itself. If map()
 * fails it must leave the range reserved (anonymous); the VMM unmaps it. */
struct cf_vm_mem_source {
  int (*map)(void *ctx, uint8_t *addr, uint64_t size);
  void (*unmap)(void *ctx);
  void *ctx;
};
struct cf_vm *cf_vm_create_from(uint64_t mem_size, const struct cf_vm_mem_source *src);

/* vCPU i of vm's VM (any handle of it): made on first use (its registers
 * zero, segments, MSRs and CPUID as vCPU 0's; start it with
 * cf_vm_load_cpu), then the same handle until the VM is destroyed
 * (cf_vm_destroy of vCPU 0 destroys them all; of another, nothing). i 0 is
 * the VM's own handle. NULL + cf_error (EAGAIN: i out of range). Memory
 * calls (cf_vm_mem, cf_vm_guard, cf_vm_generation_page) act on the VM from
 * any of its handles; the others on that vCPU. */
struct cf_vm *cf_vm_vcpu(struct cf_vm *vm, int i);
int cf_vm_vcpu_index(const struct cf_vm *vm);

/* The host address of the generation page, or NULL when this VM's page
 * tables (a template's, made before the page existed) do not let the
 * program read it. The host may write it; the guest may not. */
uint8_t *cf_vm_generation_page(const struct cf_vm *vm);

/* The vCPU state a snapshot keeps besides the general registers: FS/GS base
 * and the FPU/SSE/AVX state (KVM_GET_XSAVE's 4 KiB). Segments, control
 * registers and MSRs are the VMM's fixed ones. */
struct cf_vm_cpu {
  uint64_t fs_base, gs_base;
  uint32_t xsave[1024];
};
int cf_vm_save_cpu(struct cf_vm *vm, struct cf_vm_cpu *c);
/* Load c and continue at CPL3 with regs. */
int cf_vm_load_cpu(struct cf_vm *vm, const struct cf_vm_cpu *c, const struct cf_vm_regs *regs);

/* The host mapping of guest memory: guest address a is at base + a. */
/* Make guest [start, end) (4 KiB aligned, above the first 2 MiB, inside
 * guest memory) supervisor-only in the page tables: a program's access is
 * a #PF with its address, while the VMM still reads and writes it through
 * the host mapping. Once per VM, before its first cf_vm_run (the page
 * tables never change after that: shadow paging would not see it); a
 * forked VM inherits it with the system area. -1 + cf_error. */
int cf_vm_guard(struct cf_vm *vm, uint64_t start, uint64_t end);
uint8_t *cf_vm_mem(const struct cf_vm *vm);
uint64_t cf_vm_mem_size(const struct cf_vm *vm);

/* The vCPU's registers (the kvm_run sync area): valid after cf_vm_run
 * returns; after changing them call cf_vm_regs_dirty. */
struct cf_vm_regs *cf_vm_regs(struct cf_vm *vm);
void cf_vm_regs_dirty(struct cf_vm *vm);

/* Start the program at CPL3: rip, rsp, all other registers zero. */
int cf_vm_enter_user(struct cf_vm *vm, uint64_t rip, uint64_t rsp);

/* Run until the next exit. -1 only when the VM itself broke (then the
 * sandbox must end); the program's own faults are exits. */
int cf_vm_run(struct cf_vm *vm, struct cf_vm_exit *exit);

/* After CF_VM_EXIT_SYSCALL (rax set): resume after the SYSCALL instruction. */
void cf_vm_syscall_return(struct cf_vm *vm);

/* After CF_VM_EXIT_EXCEPTION: the program's state when the exception hit
 * (rip, rsp, rflags into regs; the caller may then edit regs and resume at
 * CPL3 with cf_vm_resume_user). */
int cf_vm_exception_state(struct cf_vm *vm, struct cf_vm_regs *regs);
/* Continue at CPL3 with regs (after an exception or to enter a handler). */
int cf_vm_resume_user(struct cf_vm *vm, const struct cf_vm_regs *regs);

/* The program's FS base (arch_prctl ARCH_SET_FS / ARCH_GET_FS). */
int cf_vm_set_fs_base(struct cf_vm *vm, uint64_t base);
int cf_vm_get_fs_base(struct cf_vm *vm, uint64_t *base);

/* Make the current or next cf_vm_run return CF_VM_EXIT_KICKED soon.
 * Async-signal-safe (call it from a signal handler on the vCPU thread). */
void cf_vm_kick(struct cf_vm *vm);

const struct cf_vm_stats *cf_vm_stats(const struct cf_vm *vm);

/* Whether the vCPU has an event in flight (an exception, interrupt or NMI
 * pending or being injected): 1, 0, or -1 + cf_error. After a kick, the
 * program's registers may only be changed (to enter a signal handler) when
 * none is: the event would be delivered at the new rip. */
int cf_vm_event_pending(struct cf_vm *vm);

/* Where the program on this vCPU can be taken from and continued later at
 * CPL3 (cf_vm_load_cpu with *u), after cf_vm_run returned and the exit was
 * handled: 1 with *u when it stands at such a point: in its own code; in
 * the system call stub before the call's exit (*u is rewound to the
 * SYSCALL instruction: the call runs again, rax its number); or after the
 * call was served (*u after the SYSCALL, rax the result). 0 when it is
 * not (an exception stub or an event in flight: run it on to the next
 * exit, which comes without running program code). -1 + cf_error. */
int cf_vm_user_state(struct cf_vm *vm, struct cf_vm_regs *u);

/* Make a VM whose program has ended ready for another one (VM reuse: the
 * caller then puts the memory back and loads the new registers with
 * cf_vm_load_cpu): refuses (ENOTSUP) when the vCPU has an event in flight
 * (a pending or injected exception, interrupt or NMI); clears a pending
 * kick, CR2 and the statistics (create_us becomes 0), and sets the guest's
 * TSC back to 0, as in a VM just created. The VM, the vCPU, the memslot and
 * everything KVM derived from guest memory (PVM's shadow page tables) are
 * kept: that is what reuse saves. */
int cf_vm_reset(struct cf_vm *vm);

/* The guest's TSC (IA32_TSC): read into *get, or, with get NULL, set to
 * set. A parked child (shim/reuse.c) takes its TSC to the next VM it runs
 * in, so the counter never goes back (it stands still while parked). */
int cf_vm_tsc(struct cf_vm *vm, uint64_t *get, uint64_t set);

/* Compare the vCPU state of two VMs as a program could see it or depends
 * on it: general registers, segment and control registers, descriptor
 * tables, EFER, FS/GS base, XSAVE area, XCR0, debug registers, pending
 * events. 0 when equal, else 1 with what differs in why. -1 on an ioctl
 * failure. For tests (COWFORK_CHECK_RESET). */
int cf_vm_compare(struct cf_vm *a, struct cf_vm *b, char *why, size_t len);

#endif
