/* cowfork image ...: import, export, commit, info, verify, ls, rm, gc. */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cowfork/clone.h"
#include "cowfork/error.h"
#include "cowfork/image.h"
#include "internal.h"

enum { OPT_JSON = 1000, OPT_BS };
static const struct option json_opts[] = {{"json", no_argument, 0, OPT_JSON}, {0}};

/* Parse only --help-free option lists: returns -1 after printing usage. */
static int parse_plain(const struct cli_cmd *cmd, int argc, char **argv, int nargs, bool *json)
{
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", json_opts, NULL)) != -1) {
    if (c == OPT_JSON && json)
      *json = true;
    else
      return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]), -1;
  }
  if (argc - optind != nargs)
    return cli_usage(cmd, "expected %d argument%s, got %d", nargs, nargs == 1 ? "" : "s",
                     argc - optind), -1;
  return optind;
}

/* How the data went: "reflink" (all shared), "copy", "reflink+copy", or
 * "none" (no data: all empty). */
static const char *how(const struct cf_clone_stats *st)
{
  if (st->shared_bytes && st->copied_bytes)
    return "reflink+copy";
  return st->shared_bytes ? "reflink" : st->copied_bytes ? "copy" : "none";
}

/* One line on stdout: what was done, the method, bytes shared and copied. */
static void report(bool json, const char *verb, const char *image, const char *file, const char *method,
                   const struct cf_clone_stats *st)
{
  if (json) {
    printf("{\"%s\": true, \"image\": ", verb);
    cf_json_puts(image);
    printf(", \"file\": ");
    cf_json_puts(file);
    printf(", \"method\": \"%s\", \"shared_bytes\": %llu, \"copied_bytes\": %llu}\n", method,
           (unsigned long long)st->shared_bytes, (unsigned long long)st->copied_bytes);
  } else {
    printf("%s %s %s %s: %s, %llu bytes shared, %llu bytes copied\n", verb, strcmp(verb, "exported") ? file : image,
           strcmp(verb, "exported") ? "as" : "to", strcmp(verb, "exported") ? image : file, method,
           (unsigned long long)st->shared_bytes, (unsigned long long)st->copied_bytes);
  }
  fflush(stdout);
}

static int cmd_import(const struct cli_cmd *cmd, int argc, char **argv)
{
  static const struct option opts[] = {{"block-size", required_argument, 0, OPT_BS}, {"json", no_argument, 0, OPT_JSON},
                                       {0}};
  bool json = false;
  uint64_t bs = 4096;
  int c;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == OPT_JSON) {
      json = true;
      continue;
    }
    if (c != OPT_BS)
      return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    if (cli_parse_size(optarg, &bs) < 0 || bs > UINT32_MAX)
      return cli_usage(cmd, "bad block size '%s'", optarg);
  }
  if (argc - optind != 2)
    return cli_usage(cmd, "expected RAW and NAME");
  const char *raw = argv[optind], *name = argv[optind + 1];
  int fd = open(raw, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cli_error("%s: %m", raw);
  struct cf_store *s = cli_open_store();
  if (!s) {
    close(fd);
    return EXIT_ERR;
  }
  struct cli_progress p;
  cli_progress_init(&p, "import");
  struct cf_clone_stats st;
  int r = cf_image_import_stats(s, fd, name, (uint32_t)bs, &st, cli_progress, &p);
  cli_progress_end(&p);
  close(fd);
  cf_store_close(s);
  if (r < 0)
    return cli_error("import %s: %s", raw, cf_error());
  report(json, "imported", name, raw, how(&st), &st);
  return EXIT_OK;
}

/* Whether the image is its one layer file as it is, with only empty blocks
 * after it: its data extents are the layer's blocks at their own offsets. */
static bool whole_layer(struct cf_store *s, const struct cf_header *h, char *path, size_t len)
{
  if (h->nlayers != 1 || h->layers[0].nblocks == 0 || h->layers[0].nblocks * h->block_size > h->size)
    return false;
  for (uint64_t i = 0; i < h->nextents; i++) {
    const struct cf_extent *e = &h->extents[i];
    if (e->layer != CF_LAYER_EMPTY && e->offset != e->first)
      return false;
  }
  struct stat st;
  return cf_store_layer_path(s, h->layers[0].id, path, len) == 0 && stat(path, &st) == 0 &&
         (uint64_t)st.st_size == h->layers[0].nblocks * h->block_size;
}

static int cmd_export(const struct cli_cmd *cmd, int argc, char **argv)
{
  bool json = false;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  int i = parse_plain(cmd, argc, argv, 2, &json);
  if (i < 0)
    return EXIT_USAGE;
  const char *name = argv[i], *raw = argv[i + 1];
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  struct cf_image *img = cf_image_open(s, name);
  if (!img) {
    cf_store_close(s);
    return cli_error("%s", cf_error());
  }
  /* Also before the whole-layer clone below, which reads nothing itself. */
  if (cf_image_check(img) < 0) {
    cli_error("export %s: %s", name, cf_error());
    cf_image_close(img);
    cf_store_close(s);
    return EXIT_ERR;
  }
  int ret = EXIT_OK;
  const struct cf_header *h = cf_image_header(img);
  struct cf_clone_stats st = {0};
  char layer[PATH_MAX];
  struct stat rst;
  /* A new file from a one-layer image: the layer file itself, cloned
   * (cf_clone: reflink, else a copy; never a hardlink, the export is
   * writable), then given the image's size. */
  if (whole_layer(s, h, layer, sizeof layer) && lstat(raw, &rst) < 0 && errno == ENOENT) {
    enum cf_clone_method m;
    uint64_t n = h->layers[0].nblocks * h->block_size;
    mode_t um = umask(0);
    umask(um);
    int fd = -1;
    if (cf_clone(layer, raw, 0, &m) < 0)
      ret = cli_error("export to %s: %s", raw, cf_error());
    else if ((fd = open(raw, O_WRONLY | O_CLOEXEC)) < 0 || fchmod(fd, 0666 & ~um) < 0 ||
             ftruncate(fd, h->size) < 0 || fsync(fd) < 0)
      ret = cli_error("%s: %m", raw);
    if (fd >= 0)
      close(fd);
    if (ret == EXIT_OK) {
      if (m == CF_CLONE_REFLINK)
        st.shared_bytes = n;
      else
        st.copied_bytes = n;
      report(json, "exported", name, raw, cf_clone_method_name(m), &st);
    }
    cf_image_close(img);
    cf_store_close(s);
    return ret;
  }
  int fd = open(raw, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    ret = cli_error("%s: %m", raw);
  else {
    struct cli_progress p;
    cli_progress_init(&p, "export");
    if (cf_image_export_stats(img, fd, &st, cli_progress, &p) < 0)
      ret = cli_error("export to %s: %s", raw, cf_error());
    cli_progress_end(&p);
    if (close(fd) < 0 && ret == EXIT_OK)
      ret = cli_error("%s: %m", raw);
    if (ret == EXIT_OK)
      report(json, "exported", name, raw, how(&st), &st);
  }
  cf_image_close(img);
  cf_store_close(s);
  return ret;
}

static int cmd_commit(const struct cli_cmd *cmd, int argc, char **argv)
{
  bool json = false;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  int i = parse_plain(cmd, argc, argv, 3, &json);
  if (i < 0)
    return EXIT_USAGE;
  const char *parent = argv[i], *raw = argv[i + 1], *name = argv[i + 2];
  int fd = open(raw, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cli_error("%s: %m", raw);
  struct cf_store *s = cli_open_store();
  struct cf_image *img = s ? cf_image_open(s, parent) : NULL;
  int ret = EXIT_OK;
  if (s && !img)
    ret = cli_error("%s", cf_error());
  else if (!s)
    ret = EXIT_ERR;
  else {
    struct cli_progress p;
    cli_progress_init(&p, "commit");
    struct cf_clone_stats st;
    if (cf_image_commit_raw_stats(s, img, fd, name, &st, cli_progress, &p) < 0)
      ret = cli_error("commit %s: %s", raw, cf_error());
    cli_progress_end(&p);
    if (ret == EXIT_OK)
      report(json, "committed", name, raw, how(&st), &st);
  }
  close(fd);
  cf_image_close(img);
  cf_store_close(s);
  return ret;
}

static int cmd_info(const struct cli_cmd *cmd, int argc, char **argv)
{
  bool json = false;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  int i = parse_plain(cmd, argc, argv, 1, &json);
  if (i < 0)
    return EXIT_USAGE;
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  struct cf_header *h = cf_store_get_header(s, argv[i]);
  if (!h) {
    cf_store_close(s);
    return cli_error("%s", cf_error());
  }
  struct cf_image_stats st;
  cf_image_stats(h, &st);
  char id[37], pid[37];
  cf_id_format(h->id, id);
  cf_id_format(h->parent, pid);
  bool has_parent = !cf_id_is_null(h->parent);
  char *pname = has_parent ? cf_store_find_id(s, h->parent) : NULL;
  if (json) {
    printf("{\"name\": ");
    cf_json_puts(argv[i]);
    printf(", \"id\": \"%s\", \"size\": %llu, \"block_size\": %u, \"generation\": %llu, "
           "\"layers\": %u, \"extents\": %llu, \"stored_bytes\": %llu, \"empty_bytes\": %llu, "
           "\"own_bytes\": %llu, \"parent\": ",
           id, (unsigned long long)h->size, h->block_size, (unsigned long long)h->generation,
           h->nlayers, (unsigned long long)h->nextents, (unsigned long long)st.stored_bytes,
           (unsigned long long)st.empty_bytes, (unsigned long long)st.own_bytes);
    if (has_parent)
      printf("\"%s\"", pid);
    else
      printf("null");
    printf(", \"parent_name\": ");
    if (pname)
      cf_json_puts(pname);
    else
      printf("null");
    printf(", \"layer_ids\": [");
    for (uint32_t l = 0; l < h->nlayers; l++) {
      char lid[37];
      cf_id_format(h->layers[l].id, lid);
      printf("%s\"%s\"", l ? ", " : "", lid);
    }
    printf("]}\n");
  } else {
    printf("name:         %s\nid:           %s\nsize:         %llu\nblock size:   %u\n"
           "generation:   %llu\nparent:       %s%s%s%s\nlayers:       %u\nextents:      %llu\n"
           "stored bytes: %llu\nempty bytes:  %llu\nown bytes:    %llu\n",
           argv[i], id, (unsigned long long)h->size, h->block_size,
           (unsigned long long)h->generation, has_parent ? pid : "none", pname ? " (" : "",
           pname ? pname : "", pname ? ")" : "", h->nlayers, (unsigned long long)h->nextents,
           (unsigned long long)st.stored_bytes, (unsigned long long)st.empty_bytes,
           (unsigned long long)st.own_bytes);
  }
  free(pname);
  cf_header_free(h);
  cf_store_close(s);
  return EXIT_OK;
}

static int cmd_verify(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  int i = parse_plain(cmd, argc, argv, 1, NULL);
  if (i < 0)
    return EXIT_USAGE;
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  int ret = EXIT_OK;
  struct cf_image *img = cf_image_open(s, argv[i]);
  if (!img)
    ret = cli_error("verify %s: %s", argv[i], cf_error());
  else {
    struct cli_progress p;
    cli_progress_init(&p, "verify");
    if (cf_image_verify(img, cli_progress, &p) < 0)
      ret = cli_error("verify %s: %s", argv[i], cf_error());
    cli_progress_end(&p);
    if (ret == EXIT_OK)
      printf("%s: ok (%u layers)\n", argv[i], cf_image_header(img)->nlayers);
  }
  cf_image_close(img);
  cf_store_close(s);
  return ret;
}

static int cmd_ls(const struct cli_cmd *cmd, int argc, char **argv)
{
  bool json = false;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  if (parse_plain(cmd, argc, argv, 0, &json) < 0)
    return EXIT_USAGE;
  struct cf_store *s = cli_open_store();
  char **names;
  size_t n;
  if (!s)
    return EXIT_ERR;
  if (cf_store_list(s, &names, &n) < 0) {
    cf_store_close(s);
    return cli_error("%s", cf_error());
  }
  if (json)
    printf("[");
  else
    printf("%-24s %14s %14s %8s\n", "NAME", "SIZE", "STORED", "LAYERS");
  for (size_t k = 0; k < n; k++) {
    struct cf_header *h = cf_store_get_header(s, names[k]);
    struct cf_image_stats st = {0};
    if (h)
      cf_image_stats(h, &st);
    if (json) {
      printf("%s{\"name\": ", k ? ", " : "");
      cf_json_puts(names[k]);
      if (h)
        printf(", \"size\": %llu, \"stored_bytes\": %llu, \"layers\": %u}",
               (unsigned long long)h->size, (unsigned long long)st.stored_bytes, h->nlayers);
      else
        printf(", \"error\": \"unreadable header\"}");
    } else if (h)
      printf("%-24s %14llu %14llu %8u\n", names[k], (unsigned long long)h->size,
             (unsigned long long)st.stored_bytes, h->nlayers);
    else
      printf("%-24s %s\n", names[k], "(unreadable header)");
    cf_header_free(h);
  }
  if (json)
    printf("]\n");
  cf_store_free_list(names, n);
  cf_store_close(s);
  return EXIT_OK;
}

static int cmd_rm(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  if (argc < 2)
    return cli_usage(cmd, "expected at least one NAME");
  int i = parse_plain(cmd, argc, argv, argc - 1, NULL);
  if (i < 0)
    return EXIT_USAGE;
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  int ret = EXIT_OK;
  for (; i < argc; i++)
    if (cli_image_in_use(s, argv[i]) < 0)
      ret = EXIT_ERR;
    else if (cf_store_remove(s, argv[i]) < 0)
      ret = cli_error("rm %s: %s", argv[i], cf_error());
  cf_store_close(s);
  return ret;
}

static int cmd_gc(const struct cli_cmd *cmd, int argc, char **argv)
{
  bool json = false;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  if (parse_plain(cmd, argc, argv, 0, &json) < 0)
    return EXIT_USAGE;
  struct cf_store *s = cli_open_store();
  struct cf_gc_stats st;
  if (!s)
    return EXIT_ERR;
  int r = cf_store_gc(s, &st);
  cf_store_close(s);
  if (r < 0)
    return cli_error("gc: %s", cf_error());
  if (json)
    printf("{\"layers_kept\": %llu, \"layers_removed\": %llu, \"bytes_removed\": %llu, "
           "\"tmp_removed\": %llu}\n",
           (unsigned long long)st.layers_kept, (unsigned long long)st.layers_removed,
           (unsigned long long)st.bytes_removed, (unsigned long long)st.tmp_removed);
  else
    printf("kept %llu layers, removed %llu layers (%llu bytes) and %llu temp files\n",
           (unsigned long long)st.layers_kept, (unsigned long long)st.layers_removed,
           (unsigned long long)st.bytes_removed, (unsigned long long)st.tmp_removed);
  return EXIT_OK;
}

const struct cli_cmd cli_image_cmds[] = {
    {"image import", "store a raw file as a new image (zero blocks stored as nothing)",
     "Usage: cowfork image import RAW NAME [--block-size N] [--json]\n"
     "\n"
     "Store the raw file RAW as image NAME. All-zero blocks become empty extents\n"
     "and take no space. RAW's size must be a multiple of the block size. When\n"
     "RAW is on the store's file system and it has reflink (XFS, btrfs), runs of\n"
     "data blocks aligned to its block size are shared with RAW (FICLONERANGE)\n"
     "instead of written. Prints the method (reflink, copy, reflink+copy, none)\n"
     "and the bytes shared and copied; --json prints them as one object (keys\n"
     "imported, image, file, method, shared_bytes, copied_bytes).\n"
     "\n"
     "  --block-size N  power of two from 512 to 64M (suffixes K, M); default 4096\n",
     cmd_import},
    {"image export", "write an image to a raw file (empty extents as holes)",
     "Usage: cowfork image export NAME RAW [--json]\n"
     "\n"
     "Write image NAME to the file RAW (created or truncated), with its empty\n"
     "extents left as holes. Data is shared with the store's layers by reflink\n"
     "where RAW is on the store's file system and it can (FICLONERANGE, aligned\n"
     "runs), else copied. A new RAW from an image that is its one layer file\n"
     "(with at most empty blocks after it) is that file cloned whole (cf_clone:\n"
     "reflink, else copy_file_range, else read/write; never a hardlink). Prints\n"
     "the method and the bytes shared and copied; --json as one object (keys\n"
     "exported, image, file, method, shared_bytes, copied_bytes).\n",
     cmd_export},
    {"image commit", "store a raw file as a child of an image (only changed blocks)",
     "Usage: cowfork image commit PARENT RAW NAME [--json]\n"
     "\n"
     "Store RAW as image NAME, a child of image PARENT: only the blocks that differ\n"
     "from PARENT are written (all-zero ones as empty extents); the rest is shared\n"
     "with PARENT's layers. RAW must be PARENT's size. Changed runs are shared\n"
     "with RAW by reflink where the store can, as for import; the method and\n"
     "bytes shared and copied are printed (--json: one object).\n",
     cmd_commit},
    {"image info", "describe an image",
     "Usage: cowfork image info NAME [--json]\n"
     "\n"
     "Print the image's size, block size, generation, parent, number of layers and\n"
     "extents, bytes stored (in layers its map uses), bytes empty, and bytes in its\n"
     "own layer. --json prints one JSON object with the keys name, id, size,\n"
     "block_size, generation, layers, extents, stored_bytes, empty_bytes,\n"
     "own_bytes, parent (id or null), parent_name and layer_ids.\n",
     cmd_info},
    {"image verify", "check an image's header and layer checksums",
     "Usage: cowfork image verify NAME\n"
     "\n"
     "Check the header's checksum and structure and every layer's length and XXH3\n"
     "checksum. Exit 1 naming the header or the layer at the first problem.\n",
     cmd_verify},
    {"image ls", "list images",
     "Usage: cowfork image ls [--json]\n"
     "\n"
     "List the images in the store with their size, stored bytes and layer count.\n",
     cmd_ls},
    {"image rm", "remove images (shared layers stay)",
     "Usage: cowfork image rm NAME...\n"
     "\n"
     "Remove each image, then delete the layers no remaining image uses. Images\n"
     "that share layers with a removed one are not affected. The memory image of\n"
     "a template (NAME.mem of template NAME) is refused: `cowfork template rm`.\n",
     cmd_rm},
    {"image gc", "delete layers no image uses and stale temp files",
     "Usage: cowfork image gc [--json]\n"
     "\n"
     "Mark the layers every image uses and delete the rest, and the temp files an\n"
     "interrupted write left. Refuses, deleting nothing, if any header is unreadable.\n",
     cmd_gc},
    {0},
};
