/* Threads, run natively and in a sandbox by tests/sandbox-threads.sh: each
 * mode prints what it saw; the two runs must print the same and exit the
 * same. Built static (the sandbox's root is the host's /). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void *square(void *arg)
{
  long v = (long)arg;
  return (void *)(v * v);
}

/* N threads at once, each returning its square; joined in order. */
static int create(int n)
{
  pthread_t t[64];
  long sum = 0;
  for (long i = 0; i < n; i++)
    if (pthread_create(&t[i], NULL, square, (void *)i)) {
      printf("pthread_create %ld failed\n", i);
      return 1;
    }
  for (int i = 0; i < n; i++) {
    void *r;
    pthread_join(t[i], &r);
    sum += (long)r;
  }
  printf("%d threads: sum of squares %ld\n", n, sum);
  return 0;
}

/* Many threads one after another: each one's vCPU is reused. */
static int serial(int n)
{
  long sum = 0;
  for (long i = 0; i < n; i++) {
    pthread_t t;
    void *r;
    if (pthread_create(&t, NULL, square, (void *)i)) {
      printf("pthread_create %ld failed\n", i);
      return 1;
    }
    pthread_join(t, &r);
    sum += (long)r;
  }
  printf("%d threads one by one: sum %ld\n", n, sum);
  return 0;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *add(void *arg)
{
  for (int i = 0; i < 20000; i++) {
    pthread_mutex_lock(&mu);
    counter++;
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static int mutex(void)
{
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, add, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  printf("4 threads x 20000 locked increments: %ld\n", counter);
  return 0;
}

/* Producer and consumer over a condition variable. */
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int q[16], qn, qdone;
static void *consume(void *arg)
{
  long sum = 0;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (!qn && !qdone)
      pthread_cond_wait(&cv, &mu);
    if (!qn && qdone) {
      pthread_mutex_unlock(&mu);
      break;
    }
    sum += q[--qn];
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
  }
  return (void *)sum;
}

static int condvar(void)
{
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&t[i], NULL, consume, NULL);
  for (int v = 1; v <= 2000; v++) {
    pthread_mutex_lock(&mu);
    while (qn == 16)
      pthread_cond_wait(&cv, &mu);
    q[qn++] = v;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
  }
  pthread_mutex_lock(&mu);
  qdone = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  long sum = 0;
  for (int i = 0; i < 2; i++) {
    void *r;
    pthread_join(t[i], &r);
    sum += (long)r;
  }
  printf("2000 items through a condition variable: sum %ld\n", sum);
  return 0;
}

static __thread long tls_v = 7;
static _Atomic int tids_distinct = 1;
static pid_t main_tid;
static void *ident(void *arg)
{
  tls_v += (long)arg;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (tid == main_tid || getpid() != main_tid)
    tids_distinct = 0;
  return (void *)tls_v;
}

static int identity(void)
{
  main_tid = (pid_t)syscall(SYS_gettid);
  printf("main: gettid == getpid: %d\n", main_tid == getpid());
  pthread_t t[3];
  for (long i = 0; i < 3; i++)
    pthread_create(&t[i], NULL, ident, (void *)(i + 1));
  long s = 0;
  for (int i = 0; i < 3; i++) {
    void *r;
    pthread_join(t[i], &r);
    s += (long)r;
  }
  printf("TLS per thread: %ld (main's still %ld); thread ids distinct, pid shared: %d\n", s, tls_v,
         (int)tids_distinct);
  return 0;
}

/* pthread_kill: the handler runs on the target thread. */
static _Atomic pid_t handled_on;
static void on_usr1(int sig) { handled_on = (pid_t)syscall(SYS_gettid); }
static _Atomic pid_t worker_tid;
static _Atomic int stop;
static void *spin(void *arg)
{
  worker_tid = (pid_t)syscall(SYS_gettid);
  while (!stop)
    ;
  return NULL;
}

static int kill_thread(void)
{
  signal(SIGUSR1, on_usr1);
  pthread_t t;
  pthread_create(&t, NULL, spin, NULL);
  while (!worker_tid)
    ;
  pthread_kill(t, SIGUSR1);
  double t0 = now();
  while (!handled_on && now() - t0 < 10)
    ;
  stop = 1;
  pthread_join(t, NULL);
  printf("SIGUSR1 by pthread_kill handled on the target thread: %d\n", handled_on == worker_tid);
  return 0;
}

/* A thread blocks reading a pipe; the main thread writes to it later. */
static int pfd[2];
static void *reader(void *arg)
{
  char buf[16] = {0};
  ssize_t n = read(pfd[0], buf, sizeof buf - 1);
  printf("reader got %zd bytes: %s\n", n, buf);
  return NULL;
}

static void *drain(void *arg)
{
  char buf[4096];
  long total = 0;
  ssize_t n;
  while ((n = read(pfd[0], buf, sizeof buf)) > 0)
    total += n;
  return (void *)total;
}

static int pipe_block(void)
{
  if (pipe(pfd) < 0)
    return 1;
  pthread_t t;
  pthread_create(&t, NULL, reader, NULL);
  struct timespec d = {0, 100000000};
  nanosleep(&d, NULL); /* the reader is blocked by now; this thread runs */
  int nb[2];
  char c;
  if (pipe2(nb, O_NONBLOCK) < 0)
    return 1;
  printf("an empty O_NONBLOCK pipe meanwhile: %s\n", read(nb[0], &c, 1) < 0 && errno == EAGAIN ? "EAGAIN" : "?");
  if (write(pfd[1], "hello", 5) != 5)
    return 1;
  pthread_join(t, NULL);
  /* A full pipe: the writer waits until a reader thread empties it. */
  static char big[1 << 20];
  memset(big, 'x', sizeof big);
  pthread_t r2;
  pthread_create(&r2, NULL, drain, NULL);
  ssize_t w = write(pfd[1], big, sizeof big);
  close(pfd[1]);
  void *got;
  pthread_join(r2, &got);
  printf("1 MiB through a 64 KiB pipe: wrote %zd, the reader got %ld\n", w, (long)got);
  return 0;
}

/* Sleeps of several threads overlap. */
static void *nap(void *arg)
{
  struct timespec d = {0, 300000000};
  nanosleep(&d, NULL);
  return NULL;
}

static int sleeps(void)
{
  pthread_t t[4];
  double t0 = now();
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, nap, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  double el = now() - t0;
  printf("4 threads sleeping 0.3 s each overlap: %s\n", el < 1.1 ? "yes" : "no");
  return 0;
}

/* Semaphores: a thread posts what the main thread waits for. */
static sem_t sem;
static void *post(void *arg)
{
  for (int i = 0; i < 100; i++)
    sem_post(&sem);
  return NULL;
}

static int semaphore(void)
{
  sem_init(&sem, 0, 0);
  pthread_t t;
  pthread_create(&t, NULL, post, NULL);
  for (int i = 0; i < 100; i++)
    sem_wait(&sem);
  pthread_join(t, NULL);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_nsec += 50000000;
  if (dl.tv_nsec >= 1000000000) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000;
  }
  int r = sem_timedwait(&sem, &dl);
  printf("100 posts waited for; one more wait: %s\n", r < 0 && errno == ETIMEDOUT ? "ETIMEDOUT" : "?");
  return 0;
}

/* exit() in a thread ends the process while main is blocked in a join. */
static void *quit(void *arg)
{
  struct timespec d = {0, 50000000};
  nanosleep(&d, NULL);
  printf("thread calls exit(5)\n");
  fflush(stdout);
  exit(5);
}

static int exit_thread(void)
{
  pthread_t t;
  pthread_create(&t, NULL, quit, NULL);
  pthread_join(t, NULL);
  printf("not reached\n");
  return 0;
}

/* The main thread leaves with pthread_exit; the process goes on until
 * the last thread returns (exit status 0). */
static void *late(void *arg)
{
  struct timespec d = {0, 100000000};
  nanosleep(&d, NULL);
  printf("the last thread ends after main's pthread_exit\n");
  fflush(stdout);
  return NULL;
}

static int main_exit(void)
{
  pthread_t t;
  pthread_create(&t, NULL, late, NULL);
  pthread_exit(NULL);
}

/* N threads alive at once (each waits for the main thread's go): how many
 * pthread_create made, and the error of the first it could not. */
static int go;
static void *hold_wait(void *arg)
{
  pthread_mutex_lock(&mu);
  while (!go)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static int hold(int n)
{
  static pthread_t t[256];
  int made = 0, err = 0;
  for (; made < n && made < 256; made++)
    if ((err = pthread_create(&t[made], NULL, hold_wait, NULL)))
      break;
  pthread_mutex_lock(&mu);
  go = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < made; i++)
    pthread_join(t[i], NULL);
  printf("%d of %d threads alive at once; then %s\n", made, n, err ? strerrorname_np(err) : "none failed");
  return 0;
}

/* The CPUs this process may run on. */
static int affinity(void)
{
  cpu_set_t s;
  if (sched_getaffinity(0, sizeof s, &s) < 0)
    return 1;
  printf("sched_getaffinity: %d CPUs\n", CPU_COUNT(&s));
  return 0;
}

/* Two threads spin-wait for each other's turn (no system call): with one
 * CPU this ends only if the running one is preempted. */
static _Atomic int turn;
static void *ping(void *arg)
{
  int me = (int)(long)arg;
  for (int i = 0; i < 20; i++) {
    while (turn != me)
      ;
    turn = !me;
  }
  return NULL;
}

static int pingpong(void)
{
  pthread_t a, b;
  pthread_create(&a, NULL, ping, (void *)0L);
  pthread_create(&b, NULL, ping, (void *)1L);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  printf("20 turns each between two spinning threads\n");
  return 0;
}

/* execve in a thread while main waits in a join: the other threads end,
 * the new program runs as the process, its tid is the pid. */
static char *self;
static void *exec_it(void *arg)
{
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  execl(self, self, "exec-child", pid, (char *)NULL);
  printf("execl failed: %s\n", strerror(errno));
  return NULL;
}

static int exec_thread(void)
{
  pthread_t t;
  pthread_create(&t, NULL, exec_it, NULL);
  pthread_join(t, NULL);
  printf("not reached\n");
  return 1;
}

static int exec_child(const char *pid)
{
  printf("after execve in a thread: same pid %d, tid is the pid %d\n", getpid() == atoi(pid),
         (int)syscall(SYS_gettid) == getpid());
  return 3;
}

int main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *m = argc > 1 ? argv[1] : "";
  if (!strcmp(m, "create"))
    return create(argc > 2 ? atoi(argv[2]) : 8);
  if (!strcmp(m, "serial"))
    return serial(argc > 2 ? atoi(argv[2]) : 100);
  if (!strcmp(m, "mutex"))
    return mutex();
  if (!strcmp(m, "condvar"))
    return condvar();
  if (!strcmp(m, "identity"))
    return identity();
  if (!strcmp(m, "kill"))
    return kill_thread();
  if (!strcmp(m, "pipe"))
    return pipe_block();
  if (!strcmp(m, "sleeps"))
    return sleeps();
  if (!strcmp(m, "sem"))
    return semaphore();
  if (!strcmp(m, "exit"))
    return exit_thread();
  self = argv[0];
  if (!strcmp(m, "exec"))
    return exec_thread();
  if (!strcmp(m, "exec-child"))
    return exec_child(argc > 2 ? argv[2] : "0");
  if (!strcmp(m, "affinity"))
    return affinity();
  if (!strcmp(m, "pingpong"))
    return pingpong();
  if (!strcmp(m, "hold"))
    return hold(argc > 2 ? atoi(argv[2]) : 40);
  if (!strcmp(m, "main-exit"))
    return main_exit();
  fprintf(stderr, "usage: threads create|serial|mutex|condvar|identity|kill|pipe|sleeps|sem|exit|main-exit\n");
  return 2;
}
