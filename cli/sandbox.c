/* cowfork run: one program in a micro-VM sandbox (shim.h). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cowfork/error.h"
#include "cowfork/shim.h"

extern char **environ;

static int cmd_run(int argc, char **argv)
{
  const struct cli_cmd *cmd = &cli_sandbox_cmds[0];
  enum { OPT_ROOT = 1000, OPT_MEM, OPT_TIMEOUT, OPT_STRACE, OPT_VERBOSE };
  static const struct option opts[] = {{"root", required_argument, 0, OPT_ROOT},
                                       {"mem", required_argument, 0, OPT_MEM},
                                       {"timeout", required_argument, 0, OPT_TIMEOUT},
                                       {"strace", no_argument, 0, OPT_STRACE},
                                       {"verbose", no_argument, 0, OPT_VERBOSE},
                                       {0}};
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  struct cf_sandbox_opts o = {.root = "/", .stdio = {0, 1, 2}, .envp = environ};
  int c;
  optind = 1;
  opterr = 0;
  /* "+": stop at the first non-option (the program). */
  while ((c = getopt_long(argc, argv, "+v", opts, NULL)) != -1) {
    char *end;
    switch (c) {
    case OPT_ROOT:
      o.root = optarg;
      break;
    case OPT_MEM:
      if (cli_parse_size(optarg, &o.mem_size) < 0 || o.mem_size % (2 << 20) || o.mem_size < (16 << 20))
        return cli_usage(cmd, "bad --mem '%s' (a multiple of 2M, at least 16M)", optarg);
      break;
    case OPT_TIMEOUT:
      o.timeout = strtod(optarg, &end);
      if (*end || end == optarg || !(o.timeout > 0))
        return cli_usage(cmd, "bad --timeout '%s'", optarg);
      break;
    case OPT_STRACE:
      o.strace = true;
      break;
    case 'v':
    case OPT_VERBOSE:
      o.verbose = true;
      break;
    default:
      return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return cli_usage(cmd, "missing PROGRAM");
  o.program = argv[optind];
  o.argv = argv + optind;
  struct cf_sandbox_result res;
  fflush(stdout);
  if (cf_sandbox_run(&o, &res) < 0)
    return cli_error("run %s: %s", o.program, cf_error());
  if (res.timed_out)
    fprintf(stderr, "cowfork run: %s: timed out after %g s, sandbox killed\n", o.program, o.timeout);
  else if (res.signal)
    fprintf(stderr, "cowfork run: %s: killed by SIG%s%s%s\n", o.program, sigabbrev_np(res.signal) ? sigabbrev_np(res.signal) : "?",
            res.report[0] ? ": " : "", res.report);
  return res.status;
}

const struct cli_cmd cli_sandbox_cmds[] = {
    {"run", "run a Linux program in a micro-VM sandbox",
     "Usage: cowfork run [--root DIR] [--mem SIZE] [--timeout S] [--strace] [-v] -- PROGRAM [ARGS...]\n"
     "\n"
     "Run a static x86-64 Linux PROGRAM (a path inside the root) in a KVM micro-VM\n"
     "sandbox. Its stdin, stdout and stderr are this command's; the exit status is\n"
     "the program's, or 128+signal when it was killed (a fault, or the timeout).\n"
     "\n"
     "Options:\n"
     "  --root DIR    the sandbox's read-only root directory (default /); writes go\n"
     "                to an in-memory /tmp\n"
     "  --mem SIZE    guest memory, a multiple of 2M (default 256M)\n"
     "  --timeout S   kill the sandbox after S seconds\n"
     "  --strace      print every system call and its result to stderr\n"
     "  -v, --verbose print loader and timing statistics to stderr\n",
     cmd_run},
    {0},
};
