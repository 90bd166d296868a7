/* Fan-out: N child processes each map one image through a memory backend,
 * touch and write pages, check them, and report (cowfork bench fanout,
 * bench/mem). docs/memory.md describes what is measured. */
#ifndef COWFORK_FANOUT_H
#define COWFORK_FANOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "cowfork/mem.h"

struct cf_fanout_opts {
  struct cf_store *store;
  const char *image;                    /* image name in the store */
  const struct cf_mem_backend *backend;
  unsigned children;                    /* 1..4096 */
  uint64_t touch;                       /* pages each child reads (same pseudo-random set) */
  uint64_t write;                       /* of those, pages each child also writes */
  bool prefetch;                        /* record the working set if none, then prefetch it */
  uint64_t seed;
  unsigned cpu;                         /* CF_FANOUT_CPU_*: where children run */
};

/* CF_FANOUT_CPU_DEFAULT: PIN for uffd, FREE for file (no page server there:
 * pinning would only cost load balancing). PIN: child i is pinned to the
 * (i mod n)-th CPU this process may run on before it maps the image, so the
 * page server serves it from its worker on that CPU (uffd.h). FREE: the
 * scheduler places children; uffd faults are served by the shared worker. */
#define CF_FANOUT_CPU_DEFAULT 0u
#define CF_FANOUT_CPU_PIN 1u
#define CF_FANOUT_CPU_FREE 2u

struct cf_fanout_result {
  unsigned children, failed;          /* failed: could not map, or held wrong bytes */
  double spawn_p50_us, spawn_p99_us;  /* request to a child's mapping being ready */
  double all_ready_ms;                /* first request to the last child ready */
  double touch_p50_us, touch_p99_us;  /* one first touch of a page, as the child times it */
  double faults_per_child;            /* uffd: fault messages served; file: minor faults */
  double prefetched_per_child;        /* uffd: pages installed by prefetch */
  double server_us_per_fault;         /* uffd: the server's mean time per fault (lookup, read, ioctl) */
  double private_kib_p50, private_kib_max; /* smaps_rollup Private_Clean + Private_Dirty */
  double map_private_kib_p50;         /* the same, inside the image mapping only */
  double written_kib;                 /* what each child wrote */
  double read_empty_kib;              /* what each child only read of the image's empty extents:
                                         private too, file backend, where !shared_zero_page */
  bool shared_zero_page;              /* cf_dirty_shared_zero_page(): reads of untouched
                                         anonymous memory map the shared zero page */
  double shared_fraction;             /* Shared / Rss inside the mapping, averaged */
  bool recorded;                      /* a working set was recorded by this run */
  bool pinned;                        /* children were pinned round robin to the CPUs */
  uint64_t wset_pages;                /* pages in the working set used */
};

/* Run it. The children are forked from a small helper process (a zygote
 * forked before anything is mapped), so each child is a separate address
 * space that maps the image itself; for uffd a page server runs in this
 * process for the duration. -1 with cf_error() if the run could not be made;
 * children that fail are counted in failed. */
int cf_fanout_run(const struct cf_fanout_opts *o, struct cf_fanout_result *r);

#endif
