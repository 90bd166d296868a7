/* cowfork disk ...: serve images as copy-on-write NBD exports, save one.
 * The server itself is nbd/ (nbd/nbd.h); this file parses options, wires
 * signals to cf_nbd_server_stop and prints the ready line. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cowfork/error.h"
#include "nbd/nbd.h"

enum { OPT_EXPORT = 1000, OPT_UNIX, OPT_TCP, OPT_READONLY, OPT_CACHE_DIR, OPT_CONTROL, OPT_AS, OPT_QUIET,
       OPT_SOCKET_MODE };

static struct cf_nbd_server *running;

static void on_signal(int sig)
{
  (void)sig;
  if (running)
    cf_nbd_server_stop(running);
}

static void log_line(void *ctx, const char *line)
{
  (void)ctx;
  fprintf(stderr, "cowfork disk serve: %s\n", line);
}

struct export_arg {
  char *name, *image, *save_as;
};

/* NAME=IMAGE[:SAVE_AS] (modified in place). */
static int parse_export(char *s, struct export_arg *e)
{
  char *eq = strchr(s, '=');
  if (!eq || eq == s || !eq[1])
    return -1;
  *eq = 0;
  e->name = s;
  e->image = eq + 1;
  char *colon = strchr(e->image, ':');
  e->save_as = NULL;
  if (colon) {
    *colon = 0;
    e->save_as = colon + 1;
    if (!*e->save_as || !*e->image)
      return -1;
  }
  return 0;
}

static int cmd_serve(const struct cli_cmd *cmd, int argc, char **argv)
{
  static const struct option opts[] = {
      {"export", required_argument, 0, OPT_EXPORT}, {"unix", required_argument, 0, OPT_UNIX},
      {"tcp", required_argument, 0, OPT_TCP},       {"readonly", no_argument, 0, OPT_READONLY},
      {"cache-dir", required_argument, 0, OPT_CACHE_DIR}, {"control", required_argument, 0, OPT_CONTROL},
      {"quiet", no_argument, 0, OPT_QUIET},         {"socket-mode", required_argument, 0, OPT_SOCKET_MODE},
      {0}};
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  struct export_arg *ex = calloc((size_t)argc, sizeof *ex);
  size_t nex = 0;
  const char *unix_path = NULL, *tcp = NULL, *cache_dir = NULL, *control = NULL, *mode_arg = NULL;
  bool readonly = false, quiet = false;
  mode_t socket_mode = 0;
  int c, ret = EXIT_USAGE;
  if (!ex)
    return cli_error("out of memory");
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case OPT_EXPORT:
      if (parse_export(optarg, &ex[nex]) < 0) {
        cli_usage(cmd, "bad --export '%s': expected NAME=IMAGE[:SAVE_AS]", optarg);
        goto out;
      }
      nex++;
      break;
    case OPT_UNIX: unix_path = optarg; break;
    case OPT_TCP: tcp = optarg; break;
    case OPT_READONLY: readonly = true; break;
    case OPT_CACHE_DIR: cache_dir = optarg; break;
    case OPT_CONTROL: control = optarg; break;
    case OPT_QUIET: quiet = true; break;
    case OPT_SOCKET_MODE: mode_arg = optarg; break;
    default:
      cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
      goto out;
    }
  }
  if (optind != argc) {
    cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    goto out;
  }
  if (nex == 0) {
    cli_usage(cmd, "give at least one --export NAME=IMAGE[:SAVE_AS]");
    goto out;
  }
  if (!unix_path == !tcp) {
    cli_usage(cmd, "give exactly one of --unix PATH and --tcp HOST:PORT");
    goto out;
  }
  if (mode_arg) {
    char *end;
    unsigned long m = strtoul(mode_arg, &end, 8);
    if (!unix_path) {
      cli_usage(cmd, "--socket-mode applies to --unix only");
      goto out;
    }
    if (!*mode_arg || *end || *mode_arg == '-' || m == 0 || m > 0777) {
      cli_usage(cmd, "bad --socket-mode '%s': expected octal permission bits 1-777, e.g. 0660", mode_arg);
      goto out;
    }
    socket_mode = (mode_t)m;
  }
  char hostbuf[256];
  const char *port = NULL;
  if (tcp) {
    const char *colon = strrchr(tcp, ':');
    if (!colon || !colon[1] || (size_t)(colon - tcp) >= sizeof hostbuf) {
      cli_usage(cmd, "bad --tcp '%s': expected HOST:PORT", tcp);
      goto out;
    }
    memcpy(hostbuf, tcp, (size_t)(colon - tcp));
    hostbuf[colon - tcp] = 0;
    if (hostbuf[0] == '[' && colon - tcp >= 2 && hostbuf[colon - tcp - 1] == ']') { /* [::1]:10809 */
      memmove(hostbuf, hostbuf + 1, strlen(hostbuf));
      hostbuf[strlen(hostbuf) - 1] = 0;
    }
    port = colon + 1;
  }
  char ctlbuf[4096];
  if (!control && unix_path) {
    snprintf(ctlbuf, sizeof ctlbuf, "%s.ctl", unix_path);
    control = ctlbuf;
  }

  ret = EXIT_ERR;
  struct cf_store *s = cli_open_store();
  if (!s)
    goto out;
  struct cf_nbd_config cfg = {.store = s, .cache_dir = cache_dir, .readonly = readonly,
                              .socket_mode = socket_mode, .log = quiet ? NULL : log_line};
  struct cf_nbd_server *srv = cf_nbd_server_new(&cfg);
  if (!srv) {
    cli_error("%s", cf_error());
    cf_store_close(s);
    goto out;
  }
  for (size_t i = 0; i < nex; i++)
    if (cf_nbd_server_add_export(srv, ex[i].name, ex[i].image, ex[i].save_as) < 0) {
      cli_error("export %s: %s", ex[i].name, cf_error());
      goto fail;
    }
  /* Signals before the sockets appear: a client (or a test) may send one as
   * soon as it sees the socket. */
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  running = srv;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (control && cf_nbd_server_control_unix(srv, control) < 0) {
    cli_error("control socket: %s", cf_error());
    goto fail;
  }
  if (unix_path ? cf_nbd_server_listen_unix(srv, unix_path) : cf_nbd_server_listen_tcp(srv, hostbuf, port)) {
    cli_error("%s", cf_error());
    goto fail;
  }
  fprintf(stderr, "serving %zu export%s on %s%s%s\n", nex, nex == 1 ? "" : "s", unix_path ? unix_path : tcp,
          control ? ", control socket " : "", control ? control : "");
  ret = cf_nbd_server_run(srv) < 0 ? EXIT_ERR : EXIT_OK;
fail:
  running = NULL;
  cf_nbd_server_free(srv);
  cf_store_close(s);
out:
  free(ex);
  return ret;
}

static int cmd_save(const struct cli_cmd *cmd, int argc, char **argv)
{
  static const struct option opts[] = {{"as", required_argument, 0, OPT_AS},
                                       {"control", required_argument, 0, OPT_CONTROL},
                                       {"unix", required_argument, 0, OPT_UNIX},
                                       {0}};
  const char *as = NULL, *control = NULL, *unix_path = NULL;
  int c;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case OPT_AS: as = optarg; break;
    case OPT_CONTROL: control = optarg; break;
    case OPT_UNIX: unix_path = optarg; break;
    default: return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (argc - optind != 1)
    return cli_usage(cmd, "expected one export NAME");
  if (!control == !unix_path)
    return cli_usage(cmd, "give exactly one of --control PATH and --unix SOCKET");
  const char *name = argv[optind];
  if (strpbrk(name, " \t\r\n") || (as && strpbrk(as, " \t\r\n")) || !*name || (as && !*as))
    return cli_usage(cmd, "names cannot be empty or contain spaces");
  char ctlbuf[4096], req[8300], reply[65536];
  if (!control) {
    snprintf(ctlbuf, sizeof ctlbuf, "%s.ctl", unix_path);
    control = ctlbuf;
  }
  snprintf(req, sizeof req, "save %s%s%s", name, as ? " " : "", as ? as : "");
  if (cf_nbd_control_request(control, req, reply, sizeof reply) < 0)
    return cli_error("save %s: %s", name, cf_error());
  printf("%s\n", reply);
  return EXIT_OK;
}

const struct cli_cmd cli_disk_cmds[] = {
    {"disk serve", "serve images as copy-on-write disks over NBD",
     "Usage: cowfork disk serve --export NAME=IMAGE[:SAVE_AS] [--export ...]\n"
     "                          (--unix PATH | --tcp HOST:PORT) [--readonly]\n"
     "                          [--socket-mode MODE] [--cache-dir DIR]\n"
     "                          [--control PATH] [--quiet]\n"
     "\n"
     "Serve each IMAGE of the store as the NBD export NAME (fixed newstyle; the\n"
     "empty name is the first export). Every export is a private copy-on-write\n"
     "overlay: the image is never written, changes go to a sparse cache file\n"
     "(in DIR, default /dev/shm) that vanishes with the process. Many exports may\n"
     "use one image. Runs in the foreground; prints 'serving N exports on PATH'\n"
     "to stderr when clients can connect.\n"
     "\n"
     "On SIGINT or SIGTERM the server stops accepting, lets every connection\n"
     "finish its request in flight, saves each export that has a SAVE_AS as a\n"
     "child image of its IMAGE (only changed blocks are stored), and exits 0\n"
     "(1 if a save failed). SAVE_AS must not exist when the server starts.\n"
     "\n"
     "  --export NAME=IMAGE[:SAVE_AS]  an export (repeatable)\n"
     "  --unix PATH       listen on a Unix socket (nbd+unix:///NAME?socket=PATH)\n"
     "  --socket-mode MODE\n"
     "                    permissions of the --unix socket, octal (default 0600:\n"
     "                    only this user may connect, whatever the umask)\n"
     "  --tcp HOST:PORT   listen on TCP (nbd://HOST:PORT/NAME); HOST may be empty\n"
     "  --readonly        every export is read-only\n"
     "  --cache-dir DIR   where the overlays' cache files go\n"
     "  --control PATH    the control socket for 'cowfork disk save' (default\n"
     "                    PATH.ctl next to --unix PATH; none for --tcp unless given)\n"
     "  --quiet           do not log dropped connections and saves\n",
     cmd_serve},
    {"disk save", "save a served export as an image without stopping the server",
     "Usage: cowfork disk save NAME [--as IMAGE] (--unix SOCKET | --control PATH)\n"
     "\n"
     "Ask the server behind SOCKET (its control socket SOCKET.ctl) or the control\n"
     "socket PATH to save export NAME now, as IMAGE or else as the export's\n"
     "SAVE_AS, while it keeps serving. Saving again to the same image replaces it\n"
     "(the old one stays until the new one is complete); if nothing changed since,\n"
     "nothing is written. Any other existing image is an error.\n",
     cmd_save},
    {0},
};
