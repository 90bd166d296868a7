/* A small static program for template tests: it prints READY, then reads
 * commands from stdin, one per line:
 *   rand      16 bytes of getrandom(), hex
 *   time      seconds since the epoch (CLOCK_REALTIME)
 *   inc       increments a global counter and prints it
 *   big N     dirties N pages of a heap buffer and prints their sum
 *   put F S   writes S to file F;  get F  prints file F
 *   gen       the sandbox's generation id (docs/sandbox.md), hex, or "none"
 *             where the auxiliary vector has none (natively)
 * and exits 0 at end of input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <time.h>

#define CF_AT_GENERATION 0x43460001ul /* include/cowfork/vmm.h */

static long counter;

int main(void)
{
  char line[4096], a[1024], b[1024];
  static char *buf;
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("READY\n");
  while (fgets(line, sizeof line, stdin)) {
    long n;
    if (strncmp(line, "rand", 4) == 0) {
      unsigned char r[16];
      if (getrandom(r, sizeof r, 0) != sizeof r)
        return 1;
      for (int i = 0; i < 16; i++)
        printf("%02x", r[i]);
      printf("\n");
    } else if (strncmp(line, "gen", 3) == 0) {
      unsigned long a = getauxval(CF_AT_GENERATION);
      if (!a) {
        printf("none\n");
        continue;
      }
      const volatile unsigned char *g = (const volatile unsigned char *)a;
      for (int i = 0; i < 16; i++)
        printf("%02x", g[i]);
      printf("\n");
    } else if (strncmp(line, "time", 4) == 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      printf("%lld\n", (long long)ts.tv_sec);
    } else if (strncmp(line, "inc", 3) == 0) {
      printf("%ld\n", ++counter);
    } else if (sscanf(line, "big %ld", &n) == 1 && n > 0 && n < 100000) {
      buf = realloc(buf, (size_t)n * 4096);
      long sum = 0;
      for (long i = 0; i < n; i++) {
        buf[i * 4096] = (char)(i + 1);
        sum += buf[i * 4096];
      }
      printf("%ld\n", sum);
    } else if (sscanf(line, "put %1023s %1023s", a, b) == 2) {
      FILE *f = fopen(a, "w");
      if (!f || fputs(b, f) < 0 || fclose(f) != 0)
        printf("put failed\n");
    } else if (sscanf(line, "get %1023s", a) == 1) {
      FILE *f = fopen(a, "r");
      if (!f) {
        printf("no %s\n", a);
        continue;
      }
      while (fgets(b, sizeof b, f))
        printf("%s\n", b);
      fclose(f);
    }
  }
  return 0;
}
