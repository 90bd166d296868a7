/* pthread stress, run natively and in a sandbox by tests/sandbox-pthreads.sh
 * (issue 13, item 7): each mode works glibc's synchronization objects hard
 * from several threads and prints only what must be the same everywhere
 * (counts, sums, error names, "timed out after >= N ms"), never a time; the
 * two runs must print the same and exit the same. Built static (the
 * sandbox's root is the host's /).
 *
 *   pthread-stress MODE [SCALE]    MODE: mutex condvar broadcast barrier
 *        rwlock timeouts tls join cancel robust interrupt, or all (each in turn);
 *        SCALE (default 1) multiplies the loop counts. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int scale = 1;
static int bad; /* a check that failed: the exit status */

#define CHECK(c, ...)                 \
  do {                                \
    if (!(c)) {                       \
      printf("FAILED: " __VA_ARGS__); \
      printf("\n");                   \
      bad = 1;                        \
    }                                 \
  } while (0)

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
  int e = pthread_create(t, NULL, fn, arg);
  if (e) {
    printf("pthread_create: %s\n", strerrorname_np(e));
    exit(2);
  }
}

static long ms_since(clockid_t c, const struct timespec *a)
{
  struct timespec b;
  clock_gettime(c, &b);
  return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static struct timespec in_ms(clockid_t c, long ms)
{
  struct timespec t;
  clock_gettime(c, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (ms % 1000) * 1000000;
  if (t.tv_nsec >= 1000000000) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000;
  }
  return t;
}

static void nap_ms(long ms)
{
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&t, &t) < 0 && errno == EINTR)
    ;
}

static const char *ename(int e) { return e ? strerrorname_np(e) : "0"; }

/* ---- mutex: 8 threads add to one counter; recursive, errorcheck, trylock ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *add(void *arg)
{
  long n = (long)arg;
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&mu);
    long v = counter; /* not atomic: a lost update shows in the sum */
    if (i % 64 == 0)
      sched_yield();
    counter = v + 1;
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static int trylock_res;
static void *try_it(void *arg)
{
  trylock_res = pthread_mutex_trylock(arg);
  return NULL;
}

static void mode_mutex(void)
{
  pthread_t t[8];
  long n = 5000L * scale;
  counter = 0;
  for (int i = 0; i < 8; i++)
    start(&t[i], add, (void *)n);
  for (int i = 0; i < 8; i++)
    pthread_join(t[i], NULL);
  printf("mutex: 8 threads x %ld increments = %ld\n", n, counter);
  CHECK(counter == 8 * n, "mutex lost updates");

  pthread_mutexattr_t a;
  pthread_mutex_t r, ec;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&r, &a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&ec, &a);
  int e1 = pthread_mutex_lock(&r), e2 = pthread_mutex_lock(&r);
  pthread_t x;
  start(&x, try_it, &r);
  pthread_join(x, NULL);
  int busy = trylock_res;
  pthread_mutex_unlock(&r);
  pthread_mutex_unlock(&r);
  start(&x, try_it, &r);
  pthread_join(x, NULL);
  printf("mutex: recursive lock twice %s %s, trylock from another thread %s, after both unlocks %s\n", ename(e1),
         ename(e2), ename(busy), ename(trylock_res));
  e1 = pthread_mutex_lock(&ec);
  e2 = pthread_mutex_lock(&ec);
  int e3 = pthread_mutex_unlock(&ec), e4 = pthread_mutex_unlock(&ec);
  printf("mutex: errorcheck lock %s relock %s unlock %s unlock again %s\n", ename(e1), ename(e2), ename(e3), ename(e4));
}

/* ---- condvar: a bounded queue, producers and consumers with signal ---- */

static pthread_cond_t notempty = PTHREAD_COND_INITIALIZER, notfull = PTHREAD_COND_INITIALIZER;
static long ring[8];
static int rhead, rcount, producers_left;
static long consumed_sum, consumed_n;

static void *produce(void *arg)
{
  long base = (long)arg, n = 2000L * scale;
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&mu);
    while (rcount == 8)
      pthread_cond_wait(&notfull, &mu);
    ring[(rhead + rcount++) % 8] = base + i;
    pthread_cond_signal(&notempty);
    pthread_mutex_unlock(&mu);
  }
  pthread_mutex_lock(&mu);
  if (--producers_left == 0)
    pthread_cond_broadcast(&notempty);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void *consume(void *arg)
{
  long sum = 0, n = 0;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (rcount == 0 && producers_left)
      pthread_cond_wait(&notempty, &mu);
    if (rcount == 0) {
      pthread_mutex_unlock(&mu);
      break;
    }
    long v = ring[rhead];
    rhead = (rhead + 1) % 8;
    rcount--;
    pthread_cond_signal(&notfull);
    pthread_mutex_unlock(&mu);
    sum += v;
    n++;
  }
  pthread_mutex_lock(&mu);
  consumed_sum += sum;
  consumed_n += n;
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void mode_condvar(void)
{
  pthread_t p[3], c[3];
  long n = 2000L * scale, want = 0;
  producers_left = 3;
  for (long i = 0; i < 3; i++) {
    start(&p[i], produce, (void *)(i * 1000000));
    for (long j = 0; j < n; j++)
      want += i * 1000000 + j;
  }
  for (int i = 0; i < 3; i++)
    start(&c[i], consume, NULL);
  for (int i = 0; i < 3; i++)
    pthread_join(p[i], NULL);
  for (int i = 0; i < 3; i++)
    pthread_join(c[i], NULL);
  printf("condvar: 3 producers x %ld items through an 8-slot queue to 3 consumers: %ld items, sum %ld\n", n, consumed_n,
         consumed_sum);
  CHECK(consumed_n == 3 * n && consumed_sum == want, "condvar queue lost or duplicated items (want sum %ld)", want);
}

/* ---- broadcast: rounds of N waiters released at once ---- */

static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER, back_cv = PTHREAD_COND_INITIALIZER;
static int gate_round, arrived, passed;
static void *gate_wait(void *arg)
{
  int rounds = (int)(long)arg;
  for (int r = 1; r <= rounds; r++) {
    pthread_mutex_lock(&mu);
    arrived++;
    pthread_cond_signal(&back_cv);
    while (gate_round < r)
      pthread_cond_wait(&gate_cv, &mu);
    passed++;
    pthread_cond_signal(&back_cv);
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static void mode_broadcast(void)
{
  enum { N = 10 };
  pthread_t t[N];
  int rounds = 50 * scale;
  for (int i = 0; i < N; i++)
    start(&t[i], gate_wait, (void *)(long)rounds);
  int ok = 1;
  for (int r = 1; r <= rounds; r++) {
    pthread_mutex_lock(&mu);
    while (arrived < N * r) /* all N wait at the gate */
      pthread_cond_wait(&back_cv, &mu);
    if (passed != N * (r - 1))
      ok = 0;
    gate_round = r;
    pthread_cond_broadcast(&gate_cv);
    while (passed < N * r) /* one broadcast let all N through */
      pthread_cond_wait(&back_cv, &mu);
    pthread_mutex_unlock(&mu);
  }
  for (int i = 0; i < N; i++)
    pthread_join(t[i], NULL);
  printf("broadcast: %d rounds, %d waiters each released by one broadcast: %d passed\n", rounds, N, passed);
  CHECK(ok && passed == N * rounds, "broadcast");
}

/* ---- barrier: rounds where each thread writes its slot, then all check ---- */

enum { BN = 6 };
static pthread_barrier_t bar;
static long slots[BN];
static _Atomic int serial_count, barrier_errors;
static void *barrier_work(void *arg)
{
  int me = (int)(long)arg, rounds = 200 * scale;
  for (int r = 1; r <= rounds; r++) {
    slots[me] = (long)r * (me + 1);
    int e = pthread_barrier_wait(&bar);
    if (e == PTHREAD_BARRIER_SERIAL_THREAD)
      serial_count++;
    else if (e)
      barrier_errors++;
    long s = 0;
    for (int i = 0; i < BN; i++)
      s += slots[i];
    if (s != (long)r * BN * (BN + 1) / 2)
      barrier_errors++;
    pthread_barrier_wait(&bar); /* nobody writes round r+1 before all read round r */
  }
  return NULL;
}

static void mode_barrier(void)
{
  pthread_t t[BN];
  pthread_barrier_init(&bar, NULL, BN);
  for (long i = 0; i < BN; i++)
    start(&t[i], barrier_work, (void *)i);
  for (int i = 0; i < BN; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&bar);
  printf("barrier: %d threads x %d rounds: %d serial threads, %d errors\n", BN, 200 * scale, serial_count,
         barrier_errors);
  CHECK(serial_count == 200 * scale && !barrier_errors, "barrier");
}

/* ---- rwlock: writers keep two words equal, readers must never see them differ ---- */

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static long wa, wb;
static _Atomic int torn, readers_in, max_readers;
static void *rw_reader(void *arg)
{
  for (int i = 0; i < 2000 * scale; i++) {
    pthread_rwlock_rdlock(&rw);
    int in = ++readers_in;
    int m = max_readers;
    while (in > m && !atomic_compare_exchange_weak(&max_readers, &m, in))
      ;
    if (wa != wb)
      torn++;
    readers_in--;
    pthread_rwlock_unlock(&rw);
  }
  return NULL;
}

static void *rw_writer(void *arg)
{
  for (int i = 0; i < 500 * scale; i++) {
    pthread_rwlock_wrlock(&rw);
    if (readers_in)
      torn++;
    wa++;
    if (i % 16 == 0)
      sched_yield();
    wb++;
    pthread_rwlock_unlock(&rw);
  }
  return NULL;
}

static int try_res[3];
static void *rw_try(void *arg)
{
  struct timespec dl = in_ms(CLOCK_REALTIME, 50);
  try_res[0] = pthread_rwlock_tryrdlock(&rw);
  try_res[1] = pthread_rwlock_trywrlock(&rw);
  try_res[2] = (long)arg ? pthread_rwlock_timedwrlock(&rw, &dl) : pthread_rwlock_timedrdlock(&rw, &dl);
  if (!try_res[0])
    pthread_rwlock_unlock(&rw);
  return NULL;
}

static void mode_rwlock(void)
{
  pthread_t r[4], w[2], x;
  for (int i = 0; i < 4; i++)
    start(&r[i], rw_reader, NULL);
  for (int i = 0; i < 2; i++)
    start(&w[i], rw_writer, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(r[i], NULL);
  for (int i = 0; i < 2; i++)
    pthread_join(w[i], NULL);
  printf("rwlock: 4 readers, 2 writers: %ld writes, %d torn reads or overlaps\n", wa, torn);
  CHECK(wa == 1000L * scale && wa == wb && !torn, "rwlock");
  pthread_rwlock_wrlock(&rw);
  start(&x, rw_try, (void *)0L);
  pthread_join(x, NULL);
  pthread_rwlock_unlock(&rw);
  printf("rwlock: write-locked elsewhere: tryrdlock %s trywrlock %s timedrdlock %s\n", ename(try_res[0]),
         ename(try_res[1]), ename(try_res[2]));
  pthread_rwlock_rdlock(&rw);
  start(&x, rw_try, (void *)1L);
  pthread_join(x, NULL);
  pthread_rwlock_unlock(&rw);
  printf("rwlock: read-locked elsewhere: tryrdlock %s trywrlock %s timedwrlock %s\n", ename(try_res[0]),
         ename(try_res[1]), ename(try_res[2]));
}

/* ---- timeouts: waits that must time out and waits that must not ---- */

static pthread_cond_t tcv = PTHREAD_COND_INITIALIZER;
static int tflag;
static sem_t tsem;
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

static void *set_flag_later(void *arg)
{
  nap_ms(20);
  pthread_mutex_lock(&mu);
  tflag = 1;
  pthread_cond_signal(arg);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void *post_later(void *arg)
{
  nap_ms(20);
  sem_post(&tsem);
  return NULL;
}

static void *hold_mutex(void *arg)
{
  long ms = (long)arg;
  pthread_mutex_lock(&held);
  nap_ms(ms);
  pthread_mutex_unlock(&held);
  return NULL;
}

/* A timed wait on clock c for ms: its result, and whether it took at least ms. */
static void report(const char *what, int e, clockid_t c, const struct timespec *t0, long ms)
{
  long took = ms_since(c, t0);
  if (e == ETIMEDOUT) {
    printf("timeouts: %s: ETIMEDOUT after >= %ld ms: %s\n", what, ms, took >= ms ? "yes" : "no");
    CHECK(took >= ms, "%s timed out early (%ld ms)", what, took);
  } else {
    printf("timeouts: %s: %s before the deadline\n", what, ename(e));
  }
}

static void mode_timeouts(void)
{
  struct timespec t0, dl;
  pthread_t x;
  int e;
  pthread_condattr_t ca;
  pthread_cond_t mcv;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&mcv, &ca);

  /* pthread_cond_timedwait, CLOCK_REALTIME (FUTEX_CLOCK_REALTIME) and CLOCK_MONOTONIC. */
  static const clockid_t clocks[2] = {CLOCK_REALTIME, CLOCK_MONOTONIC};
  for (int k = 0; k < 2; k++) {
    pthread_cond_t *cv = k ? &mcv : &tcv;
    const char *cn = k ? "monotonic" : "realtime";
    char what[96];
    pthread_mutex_lock(&mu);
    clock_gettime(clocks[k], &t0);
    dl = in_ms(clocks[k], 100);
    do
      e = pthread_cond_timedwait(cv, &mu, &dl);
    while (e == 0);
    pthread_mutex_unlock(&mu);
    snprintf(what, sizeof what, "pthread_cond_timedwait (%s) 100 ms, nobody signals", cn);
    report(what, e, clocks[k], &t0, 100);

    tflag = 0;
    pthread_mutex_lock(&mu);
    start(&x, set_flag_later, cv);
    dl = in_ms(clocks[k], 30000);
    e = 0;
    while (!tflag && e == 0)
      e = pthread_cond_timedwait(cv, &mu, &dl);
    pthread_mutex_unlock(&mu);
    pthread_join(x, NULL);
    snprintf(what, sizeof what, "pthread_cond_timedwait (%s) 30 s, signalled after 20 ms", cn);
    report(what, e, clocks[k], &t0, 30000);
  }
  /* A deadline already past: at once. */
  pthread_mutex_lock(&mu);
  dl = (struct timespec){1, 0};
  e = pthread_cond_timedwait(&tcv, &mu, &dl);
  pthread_mutex_unlock(&mu);
  printf("timeouts: pthread_cond_timedwait with a deadline in 1970: %s\n", ename(e));
  pthread_mutex_lock(&mu);
  dl = (struct timespec){0, 1000000000};
  e = pthread_cond_timedwait(&tcv, &mu, &dl);
  pthread_mutex_unlock(&mu);
  printf("timeouts: pthread_cond_timedwait with tv_nsec 1e9: %s\n", ename(e));

  /* pthread_mutex_timedlock and pthread_mutex_clocklock on a mutex another thread holds. */
  start(&x, hold_mutex, (void *)2000L);
  nap_ms(30);
  clock_gettime(CLOCK_REALTIME, &t0);
  dl = in_ms(CLOCK_REALTIME, 100);
  e = pthread_mutex_timedlock(&held, &dl);
  report("pthread_mutex_timedlock 100 ms, held for 2 s", e, CLOCK_REALTIME, &t0, 100);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  dl = in_ms(CLOCK_MONOTONIC, 100);
  e = pthread_mutex_clocklock(&held, CLOCK_MONOTONIC, &dl);
  report("pthread_mutex_clocklock (monotonic) 100 ms, held for 2 s", e, CLOCK_MONOTONIC, &t0, 100);
  dl = in_ms(CLOCK_REALTIME, 30000);
  e = pthread_mutex_timedlock(&held, &dl);
  report("pthread_mutex_timedlock 30 s, held for 2 s", e, CLOCK_REALTIME, &t0, 30000);
  if (!e)
    pthread_mutex_unlock(&held);
  pthread_join(x, NULL);

  /* sem_timedwait and sem_clockwait. */
  sem_init(&tsem, 0, 0);
  clock_gettime(CLOCK_REALTIME, &t0);
  dl = in_ms(CLOCK_REALTIME, 100);
  e = sem_timedwait(&tsem, &dl) ? errno : 0;
  report("sem_timedwait 100 ms, nobody posts", e, CLOCK_REALTIME, &t0, 100);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  dl = in_ms(CLOCK_MONOTONIC, 100);
  e = sem_clockwait(&tsem, CLOCK_MONOTONIC, &dl) ? errno : 0;
  report("sem_clockwait (monotonic) 100 ms, nobody posts", e, CLOCK_MONOTONIC, &t0, 100);
  start(&x, post_later, NULL);
  dl = in_ms(CLOCK_REALTIME, 30000);
  while ((e = sem_timedwait(&tsem, &dl) ? errno : 0) == EINTR)
    ;
  report("sem_timedwait 30 s, posted after 20 ms", e, CLOCK_REALTIME, &t0, 30000);
  pthread_join(x, NULL);
  e = sem_trywait(&tsem) ? errno : 0;
  printf("timeouts: sem_trywait on 0: %s\n", ename(e));

  /* pthread_timedjoin_np: a thread that outlives the wait, then one that does not. */
  start(&x, hold_mutex, (void *)500L);
  clock_gettime(CLOCK_REALTIME, &t0);
  dl = in_ms(CLOCK_REALTIME, 100);
  e = pthread_timedjoin_np(x, NULL, &dl);
  report("pthread_timedjoin_np 100 ms, the thread sleeps 500 ms", e, CLOCK_REALTIME, &t0, 100);
  dl = in_ms(CLOCK_REALTIME, 30000);
  e = pthread_timedjoin_np(x, NULL, &dl);
  report("pthread_timedjoin_np 30 s, the thread sleeps 500 ms", e, CLOCK_REALTIME, &t0, 30000);

  /* Many timed waits at once on one condvar, half of them signalled. */
  pthread_cond_destroy(&mcv);
}

/* ---- tls: __thread variables, pthread keys and their destructors, pthread_once ---- */

static __thread long tls_counter = 100;
static __thread char tls_buf[64];
static pthread_key_t key;
static _Atomic int destructed, once_runs, tls_bad;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void once_fn(void) { once_runs++; }
static void key_dtor(void *v)
{
  if ((long)v >= 1000)
    destructed++;
}

static void *tls_work(void *arg)
{
  long me = (long)arg;
  pthread_once(&once, once_fn);
  if (tls_counter != 100 || tls_buf[0])
    tls_bad++;
  snprintf(tls_buf, sizeof tls_buf, "thread %ld", me);
  pthread_setspecific(key, (void *)(1000 + me));
  for (int i = 0; i < 1000; i++) {
    tls_counter++;
    if (i % 100 == 0)
      sched_yield();
  }
  char want[64];
  snprintf(want, sizeof want, "thread %ld", me);
  if (tls_counter != 1100 || strcmp(tls_buf, want) || pthread_getspecific(key) != (void *)(1000 + me))
    tls_bad++;
  return (void *)tls_counter;
}

static void mode_tls(void)
{
  enum { N = 16 };
  pthread_t t[N];
  long sum = 0;
  pthread_key_create(&key, key_dtor);
  tls_counter = 5;
  for (long i = 0; i < N; i++)
    start(&t[i], tls_work, (void *)i);
  for (int i = 0; i < N; i++) {
    void *r;
    pthread_join(t[i], &r);
    sum += (long)r;
  }
  printf("tls: %d threads: sum of their __thread counters %ld, main's still %ld, %d wrong, pthread_once ran %d, "
         "%d key destructors\n",
         N, sum, tls_counter, tls_bad, once_runs, destructed);
  CHECK(sum == N * 1100L && tls_counter == 5 && !tls_bad && once_runs == 1 && destructed == N, "tls");
  pthread_key_delete(key);
}

/* ---- join: many threads at once (small stacks), detached ones, join errors ---- */

static _Atomic int detached_done;
static void *ret_sq(void *arg) { return (void *)((long)arg * (long)arg); }
static void *detached_work(void *arg)
{
  detached_done++;
  return NULL;
}

static void mode_join(void)
{
  enum { N = 100 };
  static pthread_t t[N];
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 256 * 1024);
  long sum = 0;
  for (int round = 0; round < 3; round++)
    for (long i = 0; i < N; i++) {
      int e = pthread_create(&t[i], &a, ret_sq, (void *)i);
      if (e) {
        printf("join: pthread_create %ld: %s\n", i, strerrorname_np(e));
        exit(2);
      }
      if (i == N - 1)
        for (int j = 0; j < N; j++) {
          void *r;
          pthread_join(t[j], &r);
          sum += (long)r;
        }
    }
  printf("join: 3 rounds of %d threads alive at once (256 KiB stacks): sum of squares %ld\n", N, sum);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  for (int i = 0; i < 20; i++) {
    pthread_t d;
    pthread_create(&d, &a, detached_work, NULL);
  }
  for (int i = 0; i < 30000 && detached_done < 20; i++)
    nap_ms(1);
  printf("join: 20 detached threads ran: %d\n", detached_done);
  printf("join: joining myself: %s\n", ename(pthread_join(pthread_self(), NULL)));
  pthread_attr_destroy(&a);
}

/* ---- cancel: threads cancelled while blocked at cancellation points ---- */

static int cpipe[2];
static sem_t csem;
static _Atomic int cleanups;
static void cleanup(void *arg) { cleanups++; }
static void *cancel_target(void *arg)
{
  long kind = (long)arg;
  char c;
  struct timespec ts = {60, 0};
  pthread_cleanup_push(cleanup, NULL);
  sem_post(&csem);
  switch (kind) {
  case 0: /* a condition variable */
    pthread_mutex_lock(&mu);
    pthread_cleanup_push((void (*)(void *))pthread_mutex_unlock, &mu);
    for (;;)
      pthread_cond_wait(&tcv, &mu);
    pthread_cleanup_pop(0);
    break;
  case 1: /* read of an empty pipe */
    read(cpipe[0], &c, 1);
    break;
  case 2: /* nanosleep */
    nanosleep(&ts, NULL);
    break;
  case 3: /* sem_wait */
    sem_wait(&tsem);
    break;
  default: /* a busy loop with pthread_testcancel */
    for (;;)
      pthread_testcancel();
  }
  pthread_cleanup_pop(0);
  return (void *)1L;
}

static void mode_cancel(void)
{
  static const char *kinds[] = {"pthread_cond_wait", "read of an empty pipe", "nanosleep 60 s", "sem_wait",
                                "pthread_testcancel loop"};
  if (pipe(cpipe) < 0)
    return;
  sem_init(&csem, 0, 0);
  sem_init(&tsem, 0, 0);
  for (long k = 0; k < 5; k++) {
    pthread_t x;
    void *r;
    start(&x, cancel_target, (void *)k);
    sem_wait(&csem);
    nap_ms(20); /* into its blocking call (cancellation works either way) */
    int e = pthread_cancel(x);
    pthread_join(x, &r);
    printf("cancel: a thread in %s: pthread_cancel %s, joined %s\n", kinds[k], ename(e),
           r == PTHREAD_CANCELED ? "PTHREAD_CANCELED" : "a value");
  }
  /* The mutex the condvar's cleanup handler gave back is free. */
  int e = pthread_mutex_trylock(&mu);
  if (!e)
    pthread_mutex_unlock(&mu);
  printf("cancel: %d cleanup handlers ran; the condvar's mutex trylock %s\n", cleanups, ename(e));
  close(cpipe[0]);
  close(cpipe[1]);
}

/* ---- robust: a thread exits holding a robust mutex ---- */

static pthread_mutex_t rmu;
static void *lock_and_exit(void *arg)
{
  pthread_mutex_lock(&rmu);
  return NULL; /* ends holding it */
}

static void *lock_and_wait(void *arg)
{
  pthread_mutex_lock(&rmu);
  sem_post(&csem);
  sem_wait(&tsem); /* the main thread's go */
  return NULL; /* ends holding it */
}

static void *lock_robust(void *arg)
{
  struct timespec dl = in_ms(CLOCK_REALTIME, 10000);
  int e = pthread_mutex_timedlock(&rmu, &dl);
  if (e == EOWNERDEAD)
    pthread_mutex_consistent(&rmu);
  if (e == 0 || e == EOWNERDEAD)
    pthread_mutex_unlock(&rmu);
  return (void *)(long)e;
}

static void mode_robust(void)
{
  pthread_mutexattr_t a;
  pthread_t x;
  void *r;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&rmu, &a);
  start(&x, lock_and_exit, NULL);
  pthread_join(x, NULL);
  int e = pthread_mutex_lock(&rmu);
  printf("robust: lock after its owner thread ended holding it: %s\n", ename(e));
  if (e == EOWNERDEAD)
    pthread_mutex_consistent(&rmu);
  pthread_mutex_unlock(&rmu);
  /* A waiter blocked in the kernel when the owner ends: woken by the exit. */
  sem_init(&csem, 0, 0);
  sem_init(&tsem, 0, 0);
  start(&x, lock_and_wait, NULL);
  sem_wait(&csem);
  pthread_t y;
  start(&y, lock_robust, NULL);
  nap_ms(50); /* y into its futex wait */
  sem_post(&tsem);
  pthread_join(x, NULL);
  pthread_join(y, &r);
  printf("robust: a thread waiting in timedlock when the owner ends: %s\n", ename((int)(long)r));
  e = pthread_mutex_lock(&rmu);
  printf("robust: lock once made consistent and unlocked: %s\n", ename(e));
  pthread_mutex_unlock(&rmu);
}

/* ---- interrupt: blocking pipe I/O that a signal handler ends or feeds ---- */

static int ipipe[2];
static void alarm_writes(int sig)
{
  if (write(ipipe[1], "bar", 3) != 3)
    _exit(3);
}
static void on_usr1(int sig) {}
static void *read_pipe(void *arg)
{
  char b[8];
  ssize_t r = read(ipipe[0], b, sizeof b);
  return (void *)(long)(r < 0 ? -errno : r);
}

static void arm_ms(long ms)
{
  struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
  setitimer(ITIMER_REAL, &it, NULL);
}

static void mode_interrupt(void)
{
  char b[16];
  ssize_t r;
  struct sigaction sa = {.sa_handler = alarm_writes};
  if (pipe(ipipe) < 0)
    return;
  /* One thread alone: the read waits, the handler writes, the read ends. */
  for (int restart = 0; restart < 2; restart++) {
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    arm_ms(50);
    r = read(ipipe[0], b, sizeof b);
    int e = r < 0 ? errno : 0;
    printf("interrupt: one thread, read of an empty pipe, %s: %s", restart ? "SA_RESTART" : "no SA_RESTART",
           r < 0 ? strerrorname_np(e) : "");
    if (r < 0)
      r = read(ipipe[0], b, sizeof b); /* what the handler wrote */
    printf("%s%zd bytes\n", r >= 0 && e == EINTR ? ", then " : "", r);
  }
  /* A blocking write larger than the pipe: what fits, then the alarm ends it. */
  sa.sa_handler = on_usr1;
  sa.sa_flags = 0;
  sigaction(SIGALRM, &sa, NULL);
  static char big[1 << 20];
  arm_ms(50);
  r = write(ipipe[1], big, sizeof big);
  printf("interrupt: one thread, 1 MiB written into a 64 KiB pipe, interrupted: %zd\n", r);
  arm_ms(50);
  r = write(ipipe[1], big, sizeof big);
  printf("interrupt: again into the full pipe: %s\n", r < 0 ? strerrorname_np(errno) : "bytes");
  while (read(ipipe[0], big, sizeof big) == sizeof big)
    ;
  close(ipipe[0]);
  close(ipipe[1]);
  /* A thread blocked in a pipe read, pthread_kill with a handler (no SA_RESTART). */
  if (pipe(ipipe) < 0)
    return;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_t x;
  void *res;
  start(&x, read_pipe, NULL);
  nap_ms(50);
  pthread_kill(x, SIGUSR1);
  pthread_join(x, &res);
  printf("interrupt: a thread's pipe read, pthread_kill: %s\n", (long)res < 0 ? strerrorname_np((int)-(long)res) : "data");
  close(ipipe[0]);
  close(ipipe[1]);
}

static const struct {
  const char *name;
  void (*fn)(void);
} modes[] = {
    {"mutex", mode_mutex},   {"condvar", mode_condvar}, {"broadcast", mode_broadcast}, {"barrier", mode_barrier},
    {"rwlock", mode_rwlock}, {"timeouts", mode_timeouts}, {"tls", mode_tls},           {"join", mode_join},
    {"cancel", mode_cancel}, {"robust", mode_robust}, {"interrupt", mode_interrupt},
};

int main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODE|all [SCALE]\n", argv[0]);
    return 2;
  }
  if (argc > 2)
    scale = atoi(argv[2]) > 0 ? atoi(argv[2]) : 1;
  int found = 0;
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    if (!strcmp(argv[1], "all") || !strcmp(argv[1], modes[i].name)) {
      modes[i].fn();
      found = 1;
    }
  if (!found) {
    fprintf(stderr, "%s: no mode %s\n", argv[0], argv[1]);
    return 2;
  }
  return bad;
}
