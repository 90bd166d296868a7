/* KVM micro-VM: vCPUs in long mode running a program at CPL3.
 *
 * Keeps: the VM and vCPU fds, the kvm_run area (its sync-regs block is the
 * register file the shim edits), and one host mapping of guest memory.
 * A struct cf_vm is one vCPU of a VM: cf_vm_create makes the VM and its
 * vCPU 0 (the handle that owns the VM and its memory); cf_vm_vcpu adds
 * vCPU i (1 .. CF_VM_MAX_VCPUS-1) on first use, a handle sharing the VM's
 * fd and memory, kept until the VM is destroyed (KVM cannot remove a vCPU,
 * so an idle one waits for the next thread: shim/thread.c).
 *
 * Guest layout (guest virtual == guest physical, see vmm.h):
 *   0x0000 GDT (Linux selectors: kernel CS 0x10, DS 0x18, user CS32 0x23,
 *          user DS 0x2b, user CS 0x33) and the TSS at 0x800 (selector 0x40)
 *   0x1000 IDT (32 vectors) and at 0x1800 one exception stub per vector
 *   0x2000 PML4, 0x3000 PDPT, 0x4000 the 4 KiB page table of the first 2 MiB,
 *   0x5000..0x8fff page directories (2 MiB pages, user RWX): up to 4 GiB
 *   0x9000..0xafff kernel stacks (TSS.RSP0): vCPU 0's is the top 512 bytes;
 *          vCPU i >= 1 has a 64-byte slot from 0x9000: its TSS starts there
 *          and its RSP0 is the slot's end. Of a TSS the CPU reads only RSP0
 *          (bytes 4-11: no IST in the IDT, no I/O bitmap at CPL0), so the
 *          rest of its 104 bytes may overlap the next slot; the exception
 *          frame (48 bytes with an error code) fills bytes 16-63 and never
 *          reaches an RSP0 field. Written when the vCPU is made; 0xb000 and 0xc000 the 4 KiB
 *   page tables of the edges of a guarded range (cf_vm_guard), 0xd000 the generation page (user
 *   read-only: CF_AT_GENERATION), 0xe000 MMIO page (its guest
 *   physical address is outside every memslot), 0xf000 syscall stub (user RX)
 *   All of it is below CF_VM_USER_BASE (Linux's mmap_min_addr) and, except
 *   the two stub pages, supervisor-only: a NULL dereference is a #PF.
 *
 * System calls: SYSCALL jumps to MSR_LSTAR = the stub, which stores EAX to
 * the MMIO page: KVM exits with KVM_EXIT_MMIO. On PVM the stub runs at CPL3
 * (PVM does not switch a non-PVM guest to supervisor mode on SYSCALL), so
 * the VMM resumes the program itself (rip = rcx, rflags = r11); on hardware
 * KVM the stub runs at CPL0 and its SYSRETQ returns. Which one applies is
 * read once, at the first system call. No guest CPL0 code runs per call on
 * PVM; one emulated instruction (SYSRETQ) on hardware.
 *
 * Exceptions: the IDT sends every vector to a CPL0 stub `out %al, $vector`,
 * an I/O exit; the VMM reads the iret frame off the kernel stack. Resuming
 * the program after an exception sets CS/SS/RIP/RSP directly.
 *
 * Accesses the host mapping refuses (PROT_NONE, write to read-only) make
 * KVM_RUN fail with EFAULT: reported as CF_VM_EXIT_FAULT (the address is
 * not known, KVM on this kernel gives no memory-fault info).
 *
 * Not thread-safe: one thread runs a vCPU at a time (its thread); the
 * vCPUs of one VM may run on their own threads at once. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/vmm.h"
#include "internal.h"

_Static_assert(sizeof(struct cf_vm_regs) == sizeof(struct kvm_regs), "cf_vm_regs layout");

#define GDT_ADDR 0x0000ull
#define TSS_ADDR 0x0800ull
#define IDT_ADDR 0x1000ull
#define EXC_STUBS 0x1800ull
#define PML4_ADDR 0x2000ull
#define PDPT_ADDR 0x3000ull
#define PT0_ADDR 0x4000ull
#define PD_ADDR 0x5000ull
#define PD_PAGES 4ull
#define KSTACK_TOP 0xb000ull
#define KSLOT_BASE 0x9000ull /* vCPU i >= 1: TSS at KSLOT_BASE + (i-1)*KSLOT, RSP0 at its end */
#define KSLOT 64ull
#define GUARD_PT0 0xb000ull
#define GUARD_PT1 0xc000ull
#define GEN_VA CF_VM_GENERATION_VA
#define MMIO_VA 0xe000ull
#define STUB_VA 0xf000ull
#define SYS_SIZE 0x10000ull
#define STUB_MMIO_LEN 7 /* mov %eax, MMIO_VA */
#define PTE_A 0x20ull
#define PTE_D 0x40ull

_Static_assert(SYS_SIZE <= CF_VM_USER_BASE, "layout");
_Static_assert(KSLOT_BASE + (CF_VM_MAX_VCPUS - 1) * KSLOT <= KSTACK_TOP - 512, "kernel stack slots");
_Static_assert(GEN_VA >= KSTACK_TOP && GEN_VA < MMIO_VA && GEN_VA % 4096 == 0, "layout");

#define SEL_KCS 0x10
#define SEL_KDS 0x18
#define SEL_UCS32 0x23
#define SEL_UDS 0x2b
#define SEL_UCS 0x33
#define SEL_TSS 0x40

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_FMASK 0xc0000084

struct cf_vm {
  int kvm, vm, cpu;                   /* kvm and vm: the owner's in a vCPU i >= 1 */
  int index;                          /* the vCPU's */
  struct cf_vm *owner;                /* vCPU 0's handle (itself for vCPU 0) */
  struct cf_vm *vcpus[CF_VM_MAX_VCPUS]; /* vCPU 0: the others, made on first use */
  uint64_t tss, kstack_top;           /* this vCPU's TSS and kernel stack */
  struct kvm_run *run;
  size_t run_size;
  uint8_t *mem;
  uint64_t mem_size;
  int syscall_mode; /* 0 unknown, 1 stub ran at CPL3 (PVM), 2 at CPL0 */
  void (*mem_unmap)(void *ctx); /* the memory source's teardown */
  void *mem_unmap_ctx;
  struct cf_vm_stats stats;
};

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static bool has_error_code(int v)
{
  return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

/* The one place guest memory comes from: a private anonymous range, all
 * PROT_NONE but the system area; or, for a VM forked from a template, the
 * caller's memory source maps the template's memory image over that range
 * (a memory backend: file or uffd), system area included. */
static int mem_setup(struct cf_vm *vm, const struct cf_vm_mem_source *src)
{
  vm->mem = mmap(NULL, vm->mem_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (vm->mem == MAP_FAILED) {
    vm->mem = NULL;
    return cf_fail(errno, "mmap %llu bytes of guest memory: %m", (unsigned long long)vm->mem_size);
  }
  if (src) {
    if (src->map(src->ctx, vm->mem, vm->mem_size) < 0)
      return -1;
    vm->mem_unmap = src->unmap; /* from now on the source unmaps it all */
    vm->mem_unmap_ctx = src->ctx;
    return 0;
  }
  if (mprotect(vm->mem, SYS_SIZE, PROT_READ | PROT_WRITE) < 0)
    return cf_fail(errno, "mprotect: %m");
  return 0;
}

static uint64_t seg_desc(uint64_t flags) { return 0xffffull | (0xfull << 48) | flags; }

static void build_system_area(struct cf_vm *vm)
{
  uint8_t *m = vm->mem;
  uint64_t *gdt = (uint64_t *)(m + GDT_ADDR);
  gdt[SEL_KCS >> 3] = seg_desc(0x00a09b0000000000ull);
  gdt[SEL_KDS >> 3] = seg_desc(0x00c0930000000000ull);
  gdt[SEL_UCS32 >> 3] = seg_desc(0x00c0fb0000000000ull);
  gdt[SEL_UDS >> 3] = seg_desc(0x00c0f30000000000ull);
  gdt[SEL_UCS >> 3] = seg_desc(0x00a0fb0000000000ull);
  uint64_t tss = TSS_ADDR;
  gdt[SEL_TSS >> 3] = 103 | ((tss & 0xffffff) << 16) | (0x89ull << 40) | (((tss >> 24) & 0xff) << 56);
  gdt[(SEL_TSS >> 3) + 1] = tss >> 32;
  uint8_t *t = m + TSS_ADDR;
  memcpy(t + 4, &(uint64_t){KSTACK_TOP}, 8); /* RSP0 */
  memcpy(t + 102, &(uint16_t){104}, 2);      /* no I/O bitmap */

  uint64_t *idt = (uint64_t *)(m + IDT_ADDR);
  for (int v = 0; v < 32; v++) {
    uint64_t h = EXC_STUBS + 16 * v;
    uint8_t *s = m + h;
    s[0] = 0xe6; /* out %al, $v */
    s[1] = (uint8_t)v;
    s[2] = 0xeb; /* jmp . (never resumed: the VMM sets CS:RIP) */
    s[3] = 0xfe;
    idt[2 * v] = (h & 0xffff) | ((uint64_t)SEL_KCS << 16) | (0x8eull << 40) | (((h >> 16) & 0xffff) << 48);
    idt[2 * v + 1] = h >> 32;
  }

  uint64_t *pml4 = (uint64_t *)(m + PML4_ADDR), *pdpt = (uint64_t *)(m + PDPT_ADDR);
  uint64_t *pt0 = (uint64_t *)(m + PT0_ADDR), *pd = (uint64_t *)(m + PD_ADDR);
  /* Accessed and dirty bits are set up front: the page walker then never
   * writes to the page tables, so a forked VM whose memory maps a template
   * image copy-on-write keeps sharing these pages. */
  pml4[0] = PDPT_ADDR | 7 | PTE_A;
  uint64_t n2m = vm->mem_size >> 21;
  for (uint64_t i = 0; i < (n2m + 511) / 512; i++)
    pdpt[i] = (PD_ADDR + i * 4096) | 7 | PTE_A;
  pd[0] = PT0_ADDR | 7 | PTE_A;
  for (uint64_t i = 1; i < n2m; i++)
    pd[i] = (i << 21) | 0x87 | PTE_A | PTE_D; /* present, RW, user, 2 MiB */
  for (uint64_t i = 0; i < 512; i++) {
    uint64_t va = i << 12;
    if (va < SYS_SIZE)
      pt0[i] = va | 3 | PTE_A | PTE_D; /* supervisor RW */
    else
      pt0[i] = va | 7 | PTE_A | PTE_D;
  }
  /* The MMIO page points past the end of guest memory (no memslot there). */
  pt0[MMIO_VA >> 12] = (vm->mem_size + 0x200000) | 7 | PTE_A | PTE_D;
  pt0[STUB_VA >> 12] = STUB_VA | 5 | PTE_A; /* user, read-only */
  pt0[GEN_VA >> 12] = GEN_VA | 5 | PTE_A;   /* the generation page: user, read-only */
  static const uint8_t stub[] = {0x89, 0x04, 0x25, MMIO_VA & 0xff, (MMIO_VA >> 8) & 0xff,
                                 (MMIO_VA >> 16) & 0xff, 0, /* mov %eax, MMIO_VA */
                                 0x48, 0x0f, 0x07 /* sysretq */};
  memcpy(m + STUB_VA, stub, sizeof stub);
}

/* KVM_GET_SUPPORTED_CPUID costs ~90 us here and never changes while the
 * process lives: asked once (the one piece of process-wide state here). */
struct cpuid_set {
  struct kvm_cpuid2 c;
  struct kvm_cpuid_entry2 e[256];
};
static struct cpuid_set supported_cpuid;
static int supported_cpuid_err;
static pthread_once_t cpuid_once = PTHREAD_ONCE_INIT;

static void get_cpuid(void)
{
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  supported_cpuid.c.nent = 256;
  if (kvm < 0 || ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &supported_cpuid) < 0)
    supported_cpuid_err = errno ? errno : EIO;
  if (kvm >= 0)
    close(kvm);
}

static int set_cpu_state(struct cf_vm *vm)
{
  pthread_once(&cpuid_once, get_cpuid);
  if (supported_cpuid_err)
    return cf_fail(supported_cpuid_err, "KVM_GET_SUPPORTED_CPUID: %s", strerror(supported_cpuid_err));
  struct cpuid_set cp = supported_cpuid;
  uint64_t xcr0 = 3;
  for (uint32_t i = 0; i < cp.c.nent; i++)
    if (cp.e[i].function == 0xd && cp.e[i].index == 0)
      xcr0 = cp.e[i].eax & 0xe7; /* x87 SSE AVX and AVX-512; no AMX, no MPX */
  if (ioctl(vm->cpu, KVM_SET_CPUID2, &cp) < 0)
    return cf_fail(errno, "KVM_SET_CPUID2: %m");

  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  struct kvm_segment kcs = {.limit = 0xffffffff, .selector = SEL_KCS, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1};
  struct kvm_segment kds = {.limit = 0xffffffff, .selector = SEL_KDS, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1};
  s.cs = kcs;
  s.ds = s.es = s.fs = s.gs = s.ss = kds;
  s.tr = (struct kvm_segment){.base = vm->tss, .limit = 103, .selector = SEL_TSS, .type = 11, .present = 1};
  s.ldt = (struct kvm_segment){.type = 2, .present = 1, .unusable = 1};
  s.gdt.base = GDT_ADDR;
  s.gdt.limit = 10 * 8 - 1;
  s.idt.base = IDT_ADDR;
  s.idt.limit = 32 * 16 - 1;
  s.cr0 = 0x80050033;                                        /* PG WP NE ET MP PE */
  s.cr3 = PML4_ADDR;
  s.cr4 = (1u << 5) | (1u << 9) | (1u << 10) | (1u << 18); /* PAE OSFXSR OSXMMEXCPT OSXSAVE */
  s.efer = 0xd01;                                            /* SCE LME LMA NXE */
  if (ioctl(vm->cpu, KVM_SET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_SET_SREGS: %m");

  struct {
    struct kvm_msrs m;
    struct kvm_msr_entry e[3];
  } msrs = {.m.nmsrs = 3};
  msrs.e[0] = (struct kvm_msr_entry){.index = MSR_STAR, .data = ((uint64_t)SEL_UCS32 << 48) | ((uint64_t)SEL_KCS << 32)};
  msrs.e[1] = (struct kvm_msr_entry){.index = MSR_LSTAR, .data = STUB_VA};
  msrs.e[2] = (struct kvm_msr_entry){.index = MSR_FMASK, .data = 0x47700};
  if (ioctl(vm->cpu, KVM_SET_MSRS, &msrs) != 3)
    return cf_fail(EINVAL, "KVM_SET_MSRS: syscall MSRs refused");

  struct kvm_xcrs x = {.nr_xcrs = 1};
  x.xcrs[0].xcr = 0;
  x.xcrs[0].value = xcr0;
  if (ioctl(vm->cpu, KVM_SET_XCRS, &x) < 0)
    return cf_fail(errno, "KVM_SET_XCRS: %m");
  return 0;
}

int cf_vm_guard(struct cf_vm *vm, uint64_t start, uint64_t end)
{
  if (start % 4096 || end % 4096 || start < (2ull << 20) || end > vm->mem_size || start >= end)
    return cf_fail(EINVAL, "cf_vm_guard: bad range [0x%llx, 0x%llx)", (unsigned long long)start,
                   (unsigned long long)end);
  if (vm->stats.exits)
    return cf_fail(EBUSY, "cf_vm_guard: the vCPU has run (its page tables are shadowed)");
  uint64_t *pd = (uint64_t *)(vm->mem + PD_ADDR);
  uint64_t first = start >> 21, last = (end - 1) >> 21;
  for (uint64_t i = first; i <= last; i++)
    if ((pd[i] & 0x84) != 0x84) /* not a 2 MiB user page: guarded already */
      return cf_fail(EBUSY, "cf_vm_guard: a range is guarded already");
  uint64_t pts[2] = {GUARD_PT0, GUARD_PT1};
  int npt = 0;
  for (uint64_t i = first; i <= last; i++) {
    uint64_t lo = i << 21, hi = lo + (2ull << 20);
    if (start <= lo && end >= hi) {
      pd[i] = lo | 0x83 | PTE_A | PTE_D; /* present, RW, supervisor, 2 MiB */
      continue;
    }
    /* A 2 MiB block partly in the range: a 4 KiB page table for it. */
    uint64_t *pt = (uint64_t *)(vm->mem + pts[npt]);
    for (uint64_t k = 0; k < 512; k++) {
      uint64_t va = lo + (k << 12);
      pt[k] = va | (va >= start && va < end ? 3 : 7) | PTE_A | PTE_D;
    }
    pd[i] = pts[npt++] | 7 | PTE_A;
  }
  return 0;
}

struct cf_vm *cf_vm_create(uint64_t mem_size) { return cf_vm_create_from(mem_size, NULL); }

/* Create vm's vCPU (vm->index), map its run area and set its state: 0, or
 * -1 + cf_error with nothing left open. */
static int vcpu_open(struct cf_vm *vm)
{
  vm->cpu = ioctl(vm->vm, KVM_CREATE_VCPU, vm->index);
  if (vm->cpu < 0)
    return cf_fail(errno, "KVM_CREATE_VCPU %d: %m", vm->index);
  int sz = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (sz <= 0) {
    cf_fail(errno, "KVM_GET_VCPU_MMAP_SIZE: %m");
    goto err_cpu;
  }
  vm->run_size = (size_t)sz;
  vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->cpu, 0);
  if (vm->run == MAP_FAILED) {
    vm->run = NULL;
    cf_fail(errno, "mmap kvm_run: %m");
    goto err_cpu;
  }
  if (set_cpu_state(vm) < 0)
    goto err_run;
  vm->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
  return 0;
err_run:
  munmap(vm->run, vm->run_size);
  vm->run = NULL;
err_cpu:
  close(vm->cpu);
  vm->cpu = -1;
  return -1;
}

struct cf_vm *cf_vm_vcpu(struct cf_vm *vm, int i)
{
  vm = vm->owner;
  if (i == 0)
    return vm;
  if (i < 0 || i >= CF_VM_MAX_VCPUS)
    return cf_fail_null(EAGAIN, "vCPU %d: at most %d per VM", i, CF_VM_MAX_VCPUS);
  if (vm->vcpus[i])
    return vm->vcpus[i];
  struct cf_vm *c = calloc(1, sizeof *c);
  if (!c)
    return cf_fail_null(errno, "calloc: %m");
  c->kvm = vm->kvm;
  c->vm = vm->vm;
  c->index = i;
  c->owner = vm;
  c->mem = vm->mem;
  c->mem_size = vm->mem_size;
  c->tss = KSLOT_BASE + (uint64_t)(i - 1) * KSLOT;
  c->kstack_top = c->tss + KSLOT;
  /* Its TSS's RSP0 (the rest of the TSS is never read: see the layout),
   * written only when not there yet (a child of a template made with this
   * vCPU shares the page). */
  if (memcmp(vm->mem + c->tss + 4, &c->kstack_top, 8) != 0)
    memcpy(vm->mem + c->tss + 4, &c->kstack_top, 8);
  if (vcpu_open(c) < 0) {
    free(c);
    return NULL;
  }
  vm->vcpus[i] = c;
  return c;
}

int cf_vm_vcpu_index(const struct cf_vm *vm) { return vm->index; }

struct cf_vm *cf_vm_create_from(uint64_t mem_size, const struct cf_vm_mem_source *src)
{
  double t0 = now_us();
  if (mem_size < (4ull << 20) || mem_size % (2ull << 20) || mem_size > PD_PAGES << 30)
    return cf_fail_null(EINVAL, "guest memory size must be a multiple of 2 MiB in [4 MiB, 4 GiB]");
  struct cf_vm *vm = calloc(1, sizeof *vm);
  if (!vm)
    return cf_fail_null(errno, "calloc: %m");
  vm->kvm = vm->vm = vm->cpu = -1;
  vm->owner = vm;
  vm->tss = TSS_ADDR;
  vm->kstack_top = KSTACK_TOP;
  vm->mem_size = mem_size;
  vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (vm->kvm < 0) {
    cf_fail(errno, "/dev/kvm: %m");
    goto err_vm;
  }
  vm->vm = ioctl(vm->kvm, KVM_CREATE_VM, 0);
  if (vm->vm < 0) {
    cf_fail(errno, "KVM_CREATE_VM: %m");
    goto err_vm;
  }
  if (ioctl(vm->vm, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS) <= 0) {
    cf_fail(ENOTSUP, "KVM lacks KVM_CAP_SYNC_REGS");
    goto err_vm;
  }
  if (mem_setup(vm, src) < 0)
    goto err_mem;
  struct kvm_userspace_memory_region r = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uint64_t)vm->mem};
  if (ioctl(vm->vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
    cf_fail(errno, "KVM_SET_USER_MEMORY_REGION: %m");
    goto err_mem;
  }
  if (!src)
    build_system_area(vm);
  /* The stub page becomes read-only for the guest and for us. */
  if (mprotect(vm->mem + STUB_VA, 4096, PROT_READ) < 0) {
    cf_fail(errno, "mprotect: %m");
    goto err_mem;
  }
  if (vcpu_open(vm) < 0)
    goto err_mem;
  vm->stats.create_us = now_us() - t0;
  return vm;

err_mem:
  if (vm->mem_unmap)
    vm->mem_unmap(vm->mem_unmap_ctx);
  else if (vm->mem)
    munmap(vm->mem, vm->mem_size);
err_vm:
  if (vm->vm >= 0)
    close(vm->vm);
  if (vm->kvm >= 0)
    close(vm->kvm);
  int e = errno;
  free(vm);
  errno = e;
  return NULL;
}

void cf_vm_destroy(struct cf_vm *vm)
{
  if (!vm || vm->owner != vm) /* a vCPU i >= 1 goes with its VM */
    return;
  for (int i = 1; i < CF_VM_MAX_VCPUS; i++)
    if (vm->vcpus[i]) {
      munmap(vm->vcpus[i]->run, vm->vcpus[i]->run_size);
      close(vm->vcpus[i]->cpu);
      free(vm->vcpus[i]);
    }
  munmap(vm->run, vm->run_size);
  close(vm->cpu);
  close(vm->vm);
  close(vm->kvm);
  /* Exactly one owner unmaps each byte of guest memory: the source's unmap
   * when there is one, else us. Unmapping a range twice is a race with
   * every other thread of the process: between the two calls another VM
   * may be mapped at the freed address, and the second munmap takes it. */
  if (vm->mem_unmap)
    vm->mem_unmap(vm->mem_unmap_ctx);
  else
    munmap(vm->mem, vm->mem_size);
  free(vm);
}


int cf_vm_save_cpu(struct cf_vm *vm, struct cf_vm_cpu *c)
{
  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  c->fs_base = s.fs.base;
  c->gs_base = s.gs.base;
  _Static_assert(sizeof c->xsave == sizeof(struct kvm_xsave), "xsave size");
  if (ioctl(vm->cpu, KVM_GET_XSAVE, c->xsave) < 0)
    return cf_fail(errno, "KVM_GET_XSAVE: %m");
  return 0;
}

int cf_vm_load_cpu(struct cf_vm *vm, const struct cf_vm_cpu *c, const struct cf_vm_regs *regs)
{
  if (ioctl(vm->cpu, KVM_SET_XSAVE, c->xsave) < 0)
    return cf_fail(errno, "KVM_SET_XSAVE: %m");
  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  s.fs.base = c->fs_base;
  s.gs.base = c->gs_base;
  if (ioctl(vm->cpu, KVM_SET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_SET_SREGS: %m");
  return cf_vm_resume_user(vm, regs);
}

uint8_t *cf_vm_mem(const struct cf_vm *vm) { return vm->mem; }

uint8_t *cf_vm_generation_page(const struct cf_vm *vm)
{
  uint64_t pte;
  memcpy(&pte, vm->mem + PT0_ADDR + (GEN_VA >> 12) * 8, sizeof pte);
  return (pte & 7) == 5 && (pte & ~0xfffull & ((1ull << 52) - 1)) == GEN_VA ? vm->mem + GEN_VA : NULL;
}
uint64_t cf_vm_mem_size(const struct cf_vm *vm) { return vm->mem_size; }
const struct cf_vm_stats *cf_vm_stats(const struct cf_vm *vm) { return &vm->stats; }

struct cf_vm_regs *cf_vm_regs(struct cf_vm *vm) { return (struct cf_vm_regs *)&vm->run->s.regs.regs; }
void cf_vm_regs_dirty(struct cf_vm *vm) { vm->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS; }

void cf_vm_kick(struct cf_vm *vm) { __atomic_store_n(&vm->run->immediate_exit, 1, __ATOMIC_SEQ_CST); }

static int set_user_segments(struct cf_vm *vm)
{
  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  s.cs = (struct kvm_segment){.limit = 0xffffffff, .selector = SEL_UCS, .type = 11, .present = 1, .dpl = 3, .s = 1, .l = 1, .g = 1};
  struct kvm_segment ds = {.limit = 0xffffffff, .selector = SEL_UDS, .type = 3, .present = 1, .dpl = 3, .s = 1, .db = 1, .g = 1};
  uint64_t fs = s.fs.base, gs = s.gs.base;
  s.ss = s.ds = s.es = ds;
  s.fs = ds;
  s.fs.selector = 0;
  s.fs.base = fs;
  s.gs = ds;
  s.gs.selector = 0;
  s.gs.base = gs;
  if (ioctl(vm->cpu, KVM_SET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_SET_SREGS: %m");
  return 0;
}

int cf_vm_resume_user(struct cf_vm *vm, const struct cf_vm_regs *regs)
{
  if (set_user_segments(vm) < 0)
    return -1;
  struct cf_vm_regs *r = cf_vm_regs(vm);
  *r = *regs;
  r->rflags = (r->rflags & 0x240cd5) | 0x202; /* user-settable flags, IF on */
  cf_vm_regs_dirty(vm);
  return 0;
}

int cf_vm_enter_user(struct cf_vm *vm, uint64_t rip, uint64_t rsp)
{
  struct cf_vm_regs r = {.rip = rip, .rsp = rsp, .rflags = 0x202};
  return cf_vm_resume_user(vm, &r);
}

int cf_vm_set_fs_base(struct cf_vm *vm, uint64_t base)
{
  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  s.fs.base = base;
  if (ioctl(vm->cpu, KVM_SET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_SET_SREGS: %m");
  return 0;
}

int cf_vm_get_fs_base(struct cf_vm *vm, uint64_t *base)
{
  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  *base = s.fs.base;
  return 0;
}

void cf_vm_syscall_return(struct cf_vm *vm)
{
  struct cf_vm_regs *r = cf_vm_regs(vm);
  if (vm->syscall_mode == 1) {
    r->rip = r->rcx;
    r->rflags = (r->r11 & 0x240cd5) | 0x202;
  }
  cf_vm_regs_dirty(vm);
}

/* The lowest address of vm's kernel stack (vCPU 0's is the old 4 KiB one). */
static uint64_t kstack_low(const struct cf_vm *vm)
{
  return vm->index ? vm->tss + 16 : KSTACK_TOP - 0x1000;
}

int cf_vm_exception_state(struct cf_vm *vm, struct cf_vm_regs *regs)
{
  struct cf_vm_regs *r = cf_vm_regs(vm);
  *regs = *r;
  /* The stub has not touched the stack: it holds [error code] rip cs rflags rsp ss. */
  uint64_t sp = r->rsp;
  int vec = (int)(vm->run->io.port);
  if (has_error_code(vec))
    sp += 8;
  if (sp < kstack_low(vm) || sp + 40 > vm->kstack_top)
    return cf_fail(EINVAL, "exception frame outside the kernel stack");
  uint64_t f[5];
  memcpy(f, vm->mem + sp, sizeof f);
  regs->rip = f[0];
  regs->rflags = f[2];
  regs->rsp = f[3];
  return 0;
}

int cf_vm_run(struct cf_vm *vm, struct cf_vm_exit *exit)
{
  struct kvm_run *run = vm->run;
  memset(exit, 0, sizeof *exit);
  for (;;) {
    int rc = ioctl(vm->cpu, KVM_RUN, 0);
    vm->stats.exits++;
    run->kvm_dirty_regs = 0;
    if (rc < 0) {
      int e = errno;
      if (e == EINTR || e == EAGAIN) {
        __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        exit->reason = CF_VM_EXIT_KICKED;
        return 0;
      }
      if (e == EFAULT) {
        /* Refresh the register file: KVM may not have stored it. */
        if (ioctl(vm->cpu, KVM_GET_REGS, &run->s.regs.regs) < 0)
          return cf_fail(errno, "KVM_GET_REGS: %m");
        exit->reason = CF_VM_EXIT_FAULT;
        return 0;
      }
      return cf_fail(e, "KVM_RUN: %m");
    }
    switch (run->exit_reason) {
    case KVM_EXIT_MMIO: {
      struct cf_vm_regs *r = cf_vm_regs(vm);
      if (r->rip != STUB_VA + STUB_MMIO_LEN || !run->mmio.is_write) {
        /* The program touched the MMIO page itself. */
        exit->reason = CF_VM_EXIT_FAULT;
        exit->addr = MMIO_VA;
        return 0;
      }
      if (vm->syscall_mode == 0) {
        struct kvm_sregs s;
        if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
          return cf_fail(errno, "KVM_GET_SREGS: %m");
        vm->syscall_mode = (s.cs.selector & 3) == 3 ? 1 : 2;
      }
      vm->stats.syscalls++;
      exit->reason = CF_VM_EXIT_SYSCALL;
      return 0;
    }
    case KVM_EXIT_IO:
      if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port < 32) {
        struct kvm_sregs s;
        if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
          return cf_fail(errno, "KVM_GET_SREGS: %m");
        exit->reason = CF_VM_EXIT_EXCEPTION;
        exit->vector = run->io.port;
        exit->addr = s.cr2;
        uint64_t sp = cf_vm_regs(vm)->rsp;
        if (has_error_code(exit->vector) && sp >= kstack_low(vm) && sp + 8 <= vm->kstack_top)
          memcpy(&exit->error_code, vm->mem + sp, 8);
        /* An exception in the system area means the VMM's own code broke. */
        struct cf_vm_regs st;
        if (cf_vm_exception_state(vm, &st) < 0)
          return -1;
        if (st.rip >= EXC_STUBS && st.rip < EXC_STUBS + 512)
          return cf_fail(EFAULT, "double exception in the exception stub (vector %d)", exit->vector);
        return 0;
      }
      return cf_fail(EPROTO, "unexpected I/O exit, port 0x%x", run->io.port);
    case KVM_EXIT_INTR:
      exit->reason = CF_VM_EXIT_KICKED;
      return 0;
    case KVM_EXIT_SHUTDOWN:
      return cf_fail(EFAULT, "the vCPU shut down (triple fault) at rip 0x%llx",
                     (unsigned long long)run->s.regs.regs.rip);
    case KVM_EXIT_INTERNAL_ERROR:
      return cf_fail(EPROTO, "KVM internal error %u at rip 0x%llx", run->internal.suberror,
                     (unsigned long long)run->s.regs.regs.rip);
    case KVM_EXIT_FAIL_ENTRY:
      return cf_fail(EPROTO, "KVM entry failed, reason 0x%llx",
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
    default:
      return cf_fail(EPROTO, "unexpected KVM exit %u", run->exit_reason);
    }
  }
}

int cf_vm_event_pending(struct cf_vm *vm)
{
  struct kvm_vcpu_events ev;
  if (ioctl(vm->cpu, KVM_GET_VCPU_EVENTS, &ev) < 0)
    return cf_fail(errno, "KVM_GET_VCPU_EVENTS: %m");
  return ev.exception.injected || ev.exception.pending || ev.interrupt.injected || ev.nmi.injected ||
         ev.nmi.pending;
}

int cf_vm_user_state(struct cf_vm *vm, struct cf_vm_regs *u)
{
  int ev = cf_vm_event_pending(vm);
  if (ev != 0)
    return ev < 0 ? -1 : 0;
  *u = *cf_vm_regs(vm);
  if (u->rip == STUB_VA || u->rip == STUB_VA + STUB_MMIO_LEN) {
    /* At the stub's store (the exit not taken yet: the call again) or at
     * its SYSRETQ (served: rax the result), at CPL0 or CPL3. */
    u->rip = u->rip == STUB_VA ? u->rcx - 2 : u->rcx;
    u->rflags = u->r11;
    return 1;
  }
  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  return (s.cs.selector & 3) == 3 && u->rip >= CF_VM_USER_BASE;
}

int cf_vm_reset(struct cf_vm *vm)
{
  struct kvm_vcpu_events ev;
  if (ioctl(vm->cpu, KVM_GET_VCPU_EVENTS, &ev) < 0)
    return cf_fail(errno, "KVM_GET_VCPU_EVENTS: %m");
  if (ev.exception.injected || ev.exception.pending || ev.interrupt.injected || ev.nmi.injected || ev.nmi.pending)
    return cf_fail(ENOTSUP, "the vCPU has an event in flight: not reused");
  /* The last exception's vector and error code stay behind in KVM: clear
   * them, as in a new vCPU. */
  memset(&ev.exception, 0, sizeof ev.exception);
  ev.flags = 0;
  if (ioctl(vm->cpu, KVM_SET_VCPU_EVENTS, &ev) < 0)
    return cf_fail(errno, "KVM_SET_VCPU_EVENTS: %m");
  __atomic_store_n(&vm->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
  vm->run->kvm_dirty_regs = 0;
  struct kvm_sregs s;
  if (ioctl(vm->cpu, KVM_GET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  s.cr2 = 0;
  if (ioctl(vm->cpu, KVM_SET_SREGS, &s) < 0)
    return cf_fail(errno, "KVM_SET_SREGS: %m");
  /* A new VM's TSC starts near 0: the next program must not learn how long
   * the VM ran before it. */
  if (cf_vm_tsc(vm, NULL, 0) < 0)
    return cf_fail(ENOTSUP, "%s: not reused", cf_error());
  vm->stats = (struct cf_vm_stats){0};
  return 0;
}

int cf_vm_tsc(struct cf_vm *vm, uint64_t *get, uint64_t set)
{
  struct {
    struct kvm_msrs m;
    struct kvm_msr_entry e[1];
  } msrs = {.m.nmsrs = 1, .e[0] = {.index = 0x10 /* IA32_TSC */, .data = set}};
  if (get) {
    if (ioctl(vm->cpu, KVM_GET_MSRS, &msrs) != 1)
      return cf_fail(ENOTSUP, "KVM_GET_MSRS: IA32_TSC refused");
    *get = msrs.e[0].data;
    return 0;
  }
  if (ioctl(vm->cpu, KVM_SET_MSRS, &msrs) != 1)
    return cf_fail(ENOTSUP, "KVM_SET_MSRS: IA32_TSC refused");
  return 0;
}

#define DIFF(what)                                          \
  do {                                                      \
    snprintf(why, len, "vCPU state differs: %s", what);     \
    return 1;                                               \
  } while (0)

int cf_vm_compare(struct cf_vm *a, struct cf_vm *b, char *why, size_t len)
{
  struct kvm_sregs sa, sb;
  if (ioctl(a->cpu, KVM_GET_SREGS, &sa) < 0 || ioctl(b->cpu, KVM_GET_SREGS, &sb) < 0)
    return cf_fail(errno, "KVM_GET_SREGS: %m");
  /* The APIC base and the interrupt bitmap are KVM's own, the same for both. */
  if (memcmp(&sa, &sb, sizeof sa) != 0)
    DIFF("segment/control registers (KVM_GET_SREGS)");
  if (memcmp(&a->run->s.regs.regs, &b->run->s.regs.regs, sizeof(struct kvm_regs)) != 0)
    DIFF("general registers");
  if ((a->run->kvm_dirty_regs ^ b->run->kvm_dirty_regs) & KVM_SYNC_X86_REGS)
    DIFF("pending register update");
  static __thread struct kvm_xsave xa, xb;
  if (ioctl(a->cpu, KVM_GET_XSAVE, &xa) < 0 || ioctl(b->cpu, KVM_GET_XSAVE, &xb) < 0)
    return cf_fail(errno, "KVM_GET_XSAVE: %m");
  if (memcmp(&xa, &xb, sizeof xa) != 0)
    DIFF("XSAVE area");
  struct kvm_xcrs ca, cb;
  if (ioctl(a->cpu, KVM_GET_XCRS, &ca) < 0 || ioctl(b->cpu, KVM_GET_XCRS, &cb) < 0)
    return cf_fail(errno, "KVM_GET_XCRS: %m");
  if (ca.nr_xcrs != cb.nr_xcrs || memcmp(ca.xcrs, cb.xcrs, ca.nr_xcrs * sizeof ca.xcrs[0]) != 0)
    DIFF("XCRs");
  struct kvm_debugregs da, db;
  if (ioctl(a->cpu, KVM_GET_DEBUGREGS, &da) == 0 && ioctl(b->cpu, KVM_GET_DEBUGREGS, &db) == 0 &&
      memcmp(&da, &db, sizeof da) != 0)
    DIFF("debug registers");
  struct kvm_vcpu_events ea, eb;
  if (ioctl(a->cpu, KVM_GET_VCPU_EVENTS, &ea) < 0 || ioctl(b->cpu, KVM_GET_VCPU_EVENTS, &eb) < 0)
    return cf_fail(errno, "KVM_GET_VCPU_EVENTS: %m");
  if (memcmp(&ea.exception, &eb.exception, sizeof ea.exception) != 0 ||
      memcmp(&ea.interrupt, &eb.interrupt, sizeof ea.interrupt) != 0 || memcmp(&ea.nmi, &eb.nmi, sizeof ea.nmi) != 0)
  {
    snprintf(why, len,
             "vCPU state differs: pending events (exception %u/%u/%u/%u, interrupt %u/%u/%u, nmi %u/%u/%u/%u vs "
             "exception %u/%u/%u/%u, interrupt %u/%u/%u, nmi %u/%u/%u/%u)",
             ea.exception.injected, ea.exception.pending, ea.exception.nr, ea.exception.error_code,
             ea.interrupt.injected, ea.interrupt.nr, ea.interrupt.shadow, ea.nmi.injected, ea.nmi.pending,
             ea.nmi.masked, ea.nmi.pad, eb.exception.injected, eb.exception.pending, eb.exception.nr,
             eb.exception.error_code, eb.interrupt.injected, eb.interrupt.nr, eb.interrupt.shadow, eb.nmi.injected,
             eb.nmi.pending, eb.nmi.masked, eb.nmi.pad);
    return 1;
  }
  struct {
    struct kvm_msrs m;
    struct kvm_msr_entry e[3];
  } ma = {.m.nmsrs = 3, .e = {{.index = MSR_STAR}, {.index = MSR_LSTAR}, {.index = MSR_FMASK}}}, mb = ma;
  if (ioctl(a->cpu, KVM_GET_MSRS, &ma) == 3 && ioctl(b->cpu, KVM_GET_MSRS, &mb) == 3 &&
      memcmp(ma.e, mb.e, sizeof ma.e) != 0)
    DIFF("syscall MSRs");
  if (memcmp(a->mem, b->mem, SYS_SIZE) != 0 && a->mem_size == b->mem_size)
    DIFF("system area (GDT, IDT, page tables, stubs)");
  return 0;
}
