/* cmd_slots.c - kvtc slots: keep a llama-server --slot-save-path directory
 * compressed, without changing llama-server.
 *
 * llama-server saves a slot to DIR/NAME (POST /slots/N?action=save) and
 * restores it from DIR/NAME (action=restore). `kvtc slots compress` turns
 * every saved slot NAME into NAME.kvtc and removes NAME (--keep keeps it);
 * `kvtc slots expand DIR NAME` writes NAME back from NAME.kvtc just before a
 * restore. Every file is written to a temporary and renamed, an original is
 * removed only after its NAME.kvtc decoded back to a file with the same
 * non-K/V bytes, and a NAME.kvtc that decodes to exactly NAME (the copy
 * `slots expand` wrote) is not redone, so running compress again (from
 * cron, or after each save) is safe. A slot
 * llama-server is still writing does not parse (its byte counts are not
 * complete) and is left alone until the next run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_llama.h"
#include "cmd_llama_common.h"
#include "internal.h"

static const char slots_help[] =
    "usage: kvtc slots compress --basis BASIS [--model M.gguf] [--keep] [--ratio R ...] DIR\n"
    "       kvtc slots expand --basis BASIS [--model M.gguf] DIR NAME...\n"
    "       kvtc slots list DIR\n"
    "       kvtc slots check --basis BASIS --model M.gguf [--tokens N] SLOT\n"
    "  DIR is llama-server's --slot-save-path. compress: every llama.cpp state file NAME in\n"
    "  DIR becomes NAME.kvtc (the original is removed once the compressed file is verified,\n"
    "  unless --keep); files already compressed are skipped. expand: NAME.kvtc -> NAME, to\n"
    "  run before POST /slots/ID?action=restore {\"filename\": \"NAME\"}; an existing NAME (a\n"
    "  newer save) is kept, never replaced. list: what DIR holds.\n"
    "  check: how SLOT continues after compression, in kvtc's engine (see --help of check).\n"
    "  compress takes the options of kvtc compress (--ratio, --sink, --window, --chunk,\n"
    "  --threads, --level, --codec, --kv-rotation). A basis that recomputes layers needs\n"
    "  --model for compress too: every compressed slot is decoded before its original goes.\n"
    "  One compress runs per DIR at a time (another one exits 1); symlinks, FIFOs and other\n"
    "  non-regular files in DIR are never read nor written through.\n";

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in dir, sorted (malloc'd array of malloc'd strings). */
static char **list_dir(const char *dir, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t cap = 16;
    char **v = malloc(cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            char **nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) break;
            v = nv;
            cap *= 2;
        }
        if (!(v[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    if (v) qsort(v, *n, sizeof *v, cmp_names);
    return v;
}

static void free_list(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

static char *join(const char *dir, const char *name, const char *suffix) {
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

/* lstat, not stat: a symlink in a slot directory is not a slot llama-server
 * saved, and writing through one (NAME.kvtc -> elsewhere) would overwrite a
 * file outside the directory. */
static int is_regular(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Up to n first bytes of path into head, 0 when it is not a regular file
 * (never follows a symlink nor waits on a FIFO swapped in after a lstat). */
static size_t read_head(const char *path, uint8_t *head, size_t n) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return 0;
    struct stat st;
    ssize_t got = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, head, n) : 0;
    close(fd);
    return got > 0 ? (size_t)got : 0;
}

static int exists_not_regular(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && !S_ISREG(st.st_mode);
}

/* How wrapper z stands to the state file buf: 1 if it decodes to exactly
 * buf's bytes (buf is the copy `slots expand` wrote, which may be removed
 * without losing anything), 0 if it decodes to a file of buf's size that
 * differs (the K/V carry the codec's error: buf is an original), -1 if it
 * does not decode. An equal skeleton alone is not enough to remove buf: a
 * wrapper whose K/V stream is damaged, or a slot saved again with the same
 * tokens and cells but other K/V (another model with the same geometry),
 * would cost the original. dopt carries the model when the basis
 * recomputes layers. */
static int decodes_to(const kvtc_basis *b, const kvtc_decode_options *dopt, const void *z, size_t zn,
                      const void *buf, size_t size) {
    void *back = NULL;
    size_t bn = 0;
    int st = lcpp_wrap_decompress(b, dopt, z, zn, &back, &bn) == KVTC_OK && bn == size ? !memcmp(back, buf, size) : -1;
    free(back);
    return st;
}

/* 1 if path is no longer the file lstat gave as *before (another inode, size
 * or modification time), checked just before an original is removed. */
static int changed_since(const char *path, const struct stat *before) {
    struct stat now;
    return lstat(path, &now) != 0 || now.st_ino != before->st_ino || now.st_dev != before->st_dev ||
           now.st_size != before->st_size || now.st_mtim.tv_sec != before->st_mtim.tv_sec ||
           now.st_mtim.tv_nsec != before->st_mtim.tv_nsec;
}

/* 1 if wrapper bytes z hold the skeleton of state file s/buf. */
static int same_skeleton(const lcpp_state *s, const uint8_t *buf, const void *z, size_t zn) {
    lcpp_wrap w;
    if (lcpp_wrap_parse(z, zn, &w)) return 0;
    int same = 0;
    size_t hn = lcpp_state_hollow_size(s);
    uint8_t *h = hn == w.skeleton_size ? malloc(hn + 1) : NULL;
    if (h) {
        lcpp_state_make_hollow(s, buf, h);
        same = memcmp(h, w.skeleton, hn) == 0;
    }
    free(h);
    lcpp_wrap_free(&w);
    return same;
}

/* Compress one slot; returns 0 done, 1 skipped (not a complete state file), -1 error. */
static int compress_one(const char *dir, const char *name, const kvtc_basis *b, const kvtc_encode_options *eo,
                        const kvtc_decode_options *dopt, uint32_t rot, int keep, size_t *before, size_t *after) {
    char *path = join(dir, name, ""), *zpath = join(dir, name, ".kvtc");
    char err[512];
    void *buf = NULL, *z = NULL, *back = NULL;
    size_t size = 0, zn = 0, bn = 0;
    int rc = -1;
    lcpp_state s;
    memset(&s, 0, sizeof s);
    if (!path || !zpath) { cli_fail("slots", "out of memory"); goto done; }
    struct stat seen;
    if (lstat(path, &seen) != 0) {
        if (errno == ENOENT) { rc = 1; goto done; } /* removed since the listing: nothing to do */
        cli_fail("slots", "%s: %s", path, strerror(errno));
        goto done;
    }
    if (cli_read_regular(path, &buf, &size, err, sizeof err)) { cli_fail("slots", "%s", err); goto done; }
    kvtc_result r = lcpp_state_parse(buf, size, &s);
    if (r) {
        fprintf(stderr, "kvtc: slots: %s: skipped (%s; still being written?)\n", name, kvtc_result_string(r));
        rc = 1;
        goto done;
    }
    void *old = NULL;
    size_t old_n = 0;
    int up_to_date = 0;
    if (exists_not_regular(zpath)) {
        cli_fail("slots", "%s.kvtc is not a regular file (a symlink?); %s kept", name, name);
        goto done;
    }
    int old_state = -1;
    if (is_regular(zpath) && cli_read_regular(zpath, &old, &old_n, err, sizeof err) == KVTC_OK) {
        old_state = same_skeleton(&s, buf, old, old_n) ? decodes_to(b, dopt, old, old_n, buf, size) : -1;
        up_to_date = old_state == 1;
        if (up_to_date) zn = old_n;
    }
    if (!up_to_date) {
        if ((r = lcpp_wrap_compress(b, eo, rot, buf, size, &z, &zn))) {
            cli_fail("slots", "%s: %s%s; kept", name, kvtc_result_string(r),
                     r == KVTC_ERR_GEOMETRY_MISMATCH ? " (the basis is for another model: layers or KV heads x head_dim differ)" : "");
            goto done;
        }
        /* an original kept with --keep: the encoder is deterministic, so
         * NAME.kvtc holds these very bytes, and it just decoded */
        up_to_date = old_state == 0 && zn == old_n && !memcmp(z, old, zn);
    }
    free(old);
    if (!up_to_date) {
        /* verify before the original can go: it decodes, to the same non-K/V bytes */
        if ((r = lcpp_wrap_decompress(b, dopt, z, zn, &back, &bn)) || bn != size) {
            cli_fail("slots", "%s: the compressed slot does not decode (%s); original kept", name, kvtc_result_string(r));
            goto done;
        }
        lcpp_state s2;
        int ok = lcpp_state_parse(back, bn, &s2) == KVTC_OK && same_skeleton(&s2, back, z, zn);
        lcpp_state_free(&s2);
        if (!ok) { cli_fail("slots", "%s: the decoded slot differs outside K/V; original kept", name); goto done; }
        if (cli_write_file(zpath, z, zn, err, sizeof err)) { cli_fail("slots", "%s", err); goto done; }
    }
    if (!keep && changed_since(path, &seen)) {
        /* llama-server saved NAME again while it was compressed: that save is
         * newer than NAME.kvtc. Keep it; the next run compresses it. */
        if (access(path, F_OK) != 0)
            fprintf(stderr, "kvtc: slots: %s: removed while it was compressed; %s.kvtc written\n", name, name);
        else
            fprintf(stderr, "kvtc: slots: %s: changed while it was compressed (saved again?); kept\n", name);
        rc = 1;
        goto done;
    }
    if (!keep && unlink(path) != 0) { cli_fail("slots", "cannot remove %s: %s", path, strerror(errno)); goto done; }
    printf("%s: %zu -> %zu bytes (%.2fx)%s%s\n", name, size, zn, (double)size / (double)zn,
           up_to_date ? ", already compressed" : "", keep ? "" : ", original removed");
    *before += size;
    *after += zn;
    rc = 0;
done:
    lcpp_state_free(&s);
    free(buf);
    free(z);
    free(back);
    free(path);
    free(zpath);
    return rc;
}

static int slots_compress(int argc, char **argv) {
    const char *basis_path = NULL, *dir = NULL, *model_path = NULL;
    int keep = 0;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.n_threads = 2;
    uint32_t rot = LCPP_ROT_AUTO;
    enum { OPT_BASIS = LCPP_OPT_FIRST_FREE, OPT_KEEP, OPT_MODEL };
    static const struct option longopts[] = {LCPP_ENCODE_LONGOPTS,
                                              {"basis", required_argument, NULL, OPT_BASIS},
                                              {"keep", no_argument, NULL, OPT_KEEP},
                                              {"model", required_argument, NULL, OPT_MODEL},
                                              {"help", no_argument, NULL, 'h'},
                                              {NULL, 0, NULL, 0}};
    /* argv[1] ("compress") plays getopt's program name */
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(sub_argc, sub_argv, ":h", longopts, NULL)) != -1) {
        int e = lcpp_cli_encode_option("slots", c, optarg, &eo, &rot);
        if (e > 0) return e;
        if (e == 0) continue;
        switch (c) {
        case 'h': fputs(slots_help, stdout); return 0;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_KEEP: keep = 1; break;
        case OPT_MODEL: model_path = optarg; break;
        case ':': return cli_usage("slots", "%s needs a value", sub_argv[optind - 1]);
        default: return cli_usage("slots", "unknown option %s", sub_argv[optind - 1]);
        }
    }
    for (; optind < sub_argc; optind++) {
        if (dir) return cli_usage("slots", "compress takes one directory");
        dir = sub_argv[optind];
    }
    if (!basis_path || !dir) return cli_usage("slots", "compress needs --basis and a directory");
    cli_codec_threads_setup();
    kvtc_basis *b = NULL;
    if (cli_load_basis("slots", basis_path, &b)) return 1;
    /* the model, for a basis that recomputes layers: without it no
     * compressed slot could be verified, and an expanded copy could not be
     * told from an original (it would be compressed again, losing more) */
    model_text mt;
    kvtc_decode_options dopt;
    if (lcpp_cli_decode_options("slots", b, model_path, eo.n_threads, &dopt, &mt)) { kvtc_basis_free(b); return 1; }
    eo.model_fingerprint = dopt.model_fingerprint; /* recorded, checked at expand */
    /* one compress run per directory at a time: a second run that read a
     * slot before the first removed it could write its older NAME.kvtc over
     * the one of a newer save (an flock on the directory itself: no lock
     * file, works in a read-only directory, released when the process dies) */
    int lock = open(dir, O_RDONLY | O_DIRECTORY);
    if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (lock >= 0) close(lock);
        model_text_free(&mt);
        kvtc_basis_free(b);
        if (lock >= 0 && e == EWOULDBLOCK)
            return cli_fail("slots", "another kvtc slots compress is running on %s; nothing done (run again later)", dir);
        return cli_fail("slots", "cannot read directory %s: %s", dir, strerror(e));
    }
    /* a directory we cannot write: say so once, before coding every slot
     * only to fail at each write */
    if (access(dir, W_OK) != 0) {
        int e = errno;
        close(lock);
        model_text_free(&mt);
        kvtc_basis_free(b);
        return cli_fail("slots", "cannot write in %s: %s; nothing done", dir, strerror(e));
    }
    cli_remove_stale_tmps(dir); /* of runs killed midway (expand's too) */
    size_t n;
    char **names = list_dir(dir, &n);
    if (!names) {
        close(lock);
        model_text_free(&mt);
        kvtc_basis_free(b);
        return cli_fail("slots", "cannot read directory %s: %s", dir, strerror(errno));
    }
    int rc = 0;
    size_t before = 0, after = 0, done = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = join(dir, names[i], "");
        uint8_t head[4];
        int state = path && read_head(path, head, 4) == 4 && lcpp_state_is_state_file(head, 4);
        free(path);
        if (!state) continue;
        int r = compress_one(dir, names[i], b, &eo, &dopt, rot, keep, &before, &after);
        if (r < 0) rc = 1;
        if (r == 0) done++;
    }
    if (done) printf("%zu slot(s): %zu -> %zu bytes (%.2fx)\n", done, before, after, (double)before / (double)after);
    close(lock);
    free_list(names, n);
    model_text_free(&mt);
    kvtc_basis_free(b);
    return rc;
}

/* For expand: 0 if path does not exist, 1 if it is a complete state file,
 * -1 for anything else. expand never replaces an existing NAME: it is the
 * copy an earlier expand wrote, or a save llama-server made after NAME.kvtc
 * (the newer state, which the restore should get), or a save in progress. */
static int existing_slot(const char *path) {
    if (!is_regular(path)) return 0;
    void *buf = NULL;
    size_t size = 0;
    char err[512];
    lcpp_state s;
    if (cli_read_regular(path, &buf, &size, err, sizeof err)) return -1;
    int ok = lcpp_state_parse(buf, size, &s) == KVTC_OK;
    if (ok) lcpp_state_free(&s);
    free(buf);
    return ok ? 1 : -1;
}

static int slots_expand(int argc, char **argv) {
    const char *basis_path = NULL, *dir = NULL, *model_path = NULL;
    uint32_t threads = 2;
    enum { OPT_BASIS = 256, OPT_MODEL, OPT_THREADS };
    static const struct option longopts[] = {{"basis", required_argument, NULL, OPT_BASIS},
                                              {"model", required_argument, NULL, OPT_MODEL},
                                              {"threads", required_argument, NULL, OPT_THREADS},
                                              {"help", no_argument, NULL, 'h'},
                                              {NULL, 0, NULL, 0}};
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(sub_argc, sub_argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(slots_help, stdout); return 0;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_MODEL: model_path = optarg; break;
        case OPT_THREADS:
            if (cli_parse_u32(optarg, &threads) || !threads || threads > 256) return cli_usage("slots", "--threads needs 1..256, not '%s'", optarg);
            break;
        case ':': return cli_usage("slots", "%s needs a value", sub_argv[optind - 1]);
        default: return cli_usage("slots", "unknown option %s", sub_argv[optind - 1]);
        }
    }
    /* getopt moved the operands to the end: DIR, then the slot names */
    if (optind < sub_argc) dir = sub_argv[optind++];
    int first_name = optind < sub_argc ? optind : 0;
    if (!basis_path || !dir || !first_name) return cli_usage("slots", "expand needs --basis, a directory and slot names");
    cli_codec_threads_setup();
    kvtc_basis *b = NULL;
    if (cli_load_basis("slots", basis_path, &b)) return 1;
    model_text mt;
    kvtc_decode_options dopt;
    if (lcpp_cli_decode_options("slots", b, model_path, threads, &dopt, &mt)) { kvtc_basis_free(b); return 1; }
    int rc = 0;
    for (int i = first_name; i < sub_argc; i++) {
        const char *name = sub_argv[i];
        char err[512];
        if (strchr(name, '/')) { rc = cli_fail("slots", "%s: a slot name, not a path", name); continue; }
        char *path = join(dir, name, ""), *zpath = join(dir, name, ".kvtc");
        size_t nl = strlen(name);
        struct stat zst;
        if (zpath && nl > 5 && !strcmp(name + nl - 5, ".kvtc") && lstat(zpath, &zst) != 0) {
            /* the compressed file's name given for the slot's: without this
             * the message was "exists and is not a complete state file" */
            rc = cli_fail("slots", "%s is the compressed file: give the slot's name, %.*s", name, (int)(nl - 5), name);
            free(path);
            free(zpath);
            continue;
        }
        if (path && exists_not_regular(path)) {
            rc = cli_fail("slots", "%s exists and is not a regular file (a symlink?); not written through", path);
            free(path);
            free(zpath);
            continue;
        }
        void *z = NULL, *o = NULL;
        size_t zn, on;
        int existed = 0;
        kvtc_result r;
        int present = path ? existing_slot(path) : 0;
        if (present > 0) printf("%s: kept, already there (expanded before, or saved again after %s.kvtc)\n", name, name);
        else if (present < 0) rc = cli_fail("slots", "%s exists and is not a complete llama.cpp state file (still being written?); not overwritten", path);
        else if (!path || !zpath) rc = cli_fail("slots", "out of memory");
        else if (cli_read_regular(zpath, &z, &zn, err, sizeof err)) rc = cli_fail("slots", "%s", err);
        else if ((r = lcpp_wrap_decompress(b, &dopt, z, zn, &o, &on))) rc = cli_fail("slots", "%s: %s", zpath, kvtc_result_string(r));
        else if (cli_write_new_file(path, o, on, &existed, err, sizeof err)) {
            /* NAME appeared while NAME.kvtc was decoded: a save llama-server
             * made meanwhile, newer than NAME.kvtc; never replaced */
            if (existed) printf("%s: kept, saved again while %s.kvtc was expanded\n", name, name);
            else rc = cli_fail("slots", "%s", err);
        } else printf("%s: %zu -> %zu bytes, ready to restore\n", name, zn, on);
        free(z);
        free(o);
        free(path);
        free(zpath);
    }
    model_text_free(&mt);
    kvtc_basis_free(b);
    return rc;
}

static int slots_list(int argc, char **argv) {
    if (argc != 3) return cli_usage("slots", "list takes one directory");
    size_t n;
    char **names = list_dir(argv[2], &n);
    if (!names) return cli_fail("slots", "cannot read directory %s: %s", argv[2], strerror(errno));
    for (size_t i = 0; i < n; i++) {
        char *path = join(argv[2], names[i], "");
        uint8_t head[8] = {0};
        size_t got = path ? read_head(path, head, sizeof head) : 0;
        struct stat st;
        long long size = path && lstat(path, &st) == 0 ? (long long)st.st_size : -1;
        if (lcpp_state_is_state_file(head, got)) printf("%-40s llama.cpp state, %lld bytes\n", names[i], size);
        else if (lcpp_wrap_is_wrap(head, got)) printf("%-40s compressed, %lld bytes\n", names[i], size);
        free(path);
    }
    free_list(names, n);
    return 0;
}

int cmd_slots(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc < 2) return cli_usage("slots", "needs compress, expand, list or check");
        fputs(slots_help, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "compress")) return slots_compress(argc, argv);
    if (!strcmp(argv[1], "expand")) return slots_expand(argc, argv);
    if (!strcmp(argv[1], "list")) return slots_list(argc, argv);
    if (!strcmp(argv[1], "check")) return cmd_slot_check(argc, argv);
    return cli_usage("slots", "unknown subcommand %s (compress, expand, list or check)", argv[1]);
}
