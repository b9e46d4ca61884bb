/* test_cli.c - the kvtc command-line tool end to end (no model needed):
 * synthetic caches written with cache_file_serialize -> kvtc calibrate ->
 * kvtc compress -> kvtc decompress -> kvtc info on all three file kinds;
 * exit codes; usage errors (exit 2, one line); failures that leave an
 * existing output file intact and no temporary files behind; --help.
 * The tool's path comes from $KVTC_CLI (set by CMake), else the kvtc next
 * to this test binary. */
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf.h"
#include "io/cache_file.h"
#include "synth.h"
#include "test.h"

static char g_cli[PATH_MAX];
static char g_dir[64];

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static int write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int count_lines(const char *path) {
    size_t n = 0;
    char *b = test_read_file(path, &n);
    if (!b) return -1;
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += b[i] == '\n';
    if (n && b[n - 1] != '\n') lines++;
    free(b);
    return lines;
}

/* Run "kvtc ARGS" with stdout/stderr captured in the temp dir; returns the
 * exit status (or -1 if it did not exit normally, e.g. a crash). */
static int run_cli(const char *args) {
    size_t cap = 3 * strlen(g_dir) + strlen(g_cli) + strlen(args) + 64;
    char *cmd = malloc(cap);
    snprintf(cmd, cap, "cd '%s' && '%s' %s >'%s/stdout.txt' 2>'%s/stderr.txt'", g_dir, g_cli, args, g_dir, g_dir);
    int st = system(cmd);
    free(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    /* a sanitizer report (KVTC_SANITIZE builds) counts as a crash */
    char p[256];
    snprintf(p, sizeof p, "%s/stderr.txt", g_dir);
    size_t n = 0;
    char *err = test_read_file(p, &n);
    int sanitizer = 0;
    if (err) {
        err = realloc(err, n + 1);
        err[n] = 0;
        sanitizer = strstr(err, "Sanitizer") != NULL || strstr(err, "runtime error:") != NULL;
        free(err);
    }
    CHECK_MSG(!sanitizer, "kvtc %s: sanitizer report on stderr", args);
    return sanitizer ? -1 : WEXITSTATUS(st);
}

static int file_starts_with(const char *name, const char *prefix) {
    char p[256];
    path_of(p, sizeof p, name);
    size_t n = 0;
    char *b = test_read_file(p, &n);
    int ok = b && n >= strlen(prefix) && memcmp(b, prefix, strlen(prefix)) == 0;
    free(b);
    return ok;
}

static int file_equals(const char *name, const void *want, size_t wn) {
    char p[256];
    path_of(p, sizeof p, name);
    size_t n = 0;
    void *b = test_read_file(p, &n);
    int ok = b && n == wn && memcmp(b, want, n) == 0;
    free(b);
    return ok;
}

/* Number of leftover temporary files (.kvtc-tmp-*) in the temp dir. */
static int tmp_files(void) {
    DIR *d = opendir(g_dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".kvtc-tmp-")) n++;
    closedir(d);
    return n;
}

static void remove_dir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(g_dir);
}

static int file_contains(const char *name, const char *needle) {
    char p[256];
    path_of(p, sizeof p, name);
    size_t n = 0;
    char *b = test_read_file(p, &n);
    int ok = b && strstr(b, needle) != NULL;
    free(b);
    return ok;
}

static int write_cache(const char *name, const kvtc_cache *c);

/* Issue 9 through the tool (each failed on main at 9e9b377). `stream` is
 * out.kvtc's bytes (compress --ratio 16 --window 16 test.safetensors). */
static void issue9_cli(const uint8_t *stream, size_t sn, const kvtc_cache *test_cache) {
    char p[256];
    struct stat sb;
    /* item 1: /dev/null stays a device; "-" is stdin / stdout; dir/ refused */
    int rc = run_cli("compress --basis B.safetensors --ratio 16 --window 16 test.safetensors -o /dev/null");
    CHECK_MSG(rc == 0 && stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode), "-o /dev/null: exit %d", rc);
    rc = run_cli("compress --basis B.safetensors --ratio 16 --window 16 - -o - <test.safetensors");
    CHECK_MSG(rc == 0 && file_equals("stdout.txt", stream, sn), "compress - -o -: exit %d", rc);
    rc = run_cli("decompress --basis B.safetensors -o - - <out.kvtc");
    path_of(p, sizeof p, "dec.safetensors");
    size_t dn = 0;
    void *dec = test_read_file(p, &dn);
    CHECK_MSG(rc == 0 && dec && file_equals("stdout.txt", dec, dn), "decompress - -o -: exit %d", rc);
    free(dec);
    /* review of issue 9 (rev1): a failed write to standard output (a full
     * disk) is an error, not exit 0 with the result lost */
    if (access("/dev/full", W_OK) == 0) {
        const char *full_args[] = {"info B.safetensors", "--help", "eval --help"};
        for (size_t i = 0; i < sizeof full_args / sizeof full_args[0]; i++) {
            char cmd[8192]; /* g_dir + g_cli (PATH_MAX) + args */
            snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >/dev/full 2>stderr.txt", g_dir, g_cli, full_args[i]);
            int st = system(cmd);
            CHECK_MSG(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
                          file_contains("stderr.txt", "cannot write standard output: No space left on device"),
                      "kvtc %s >/dev/full: status %d", full_args[i], st);
        }
    }
    /* a FIFO and a pipe as inputs (review of issue 9, rev1): looking at
     * the input's magic used to consume its first bytes ("bad magic"), and a
     * FIFO's real read then blocked forever */
    {
        char cmd[16384]; /* g_dir + 3 x g_cli (PATH_MAX) + args */
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && rm -f in.fifo && mkfifo in.fifo && (cat test.safetensors >in.fifo &) && "
                 "timeout 30 '%s' compress --basis B.safetensors --ratio 16 --window 16 in.fifo -o fifo.kvtc 2>stderr.txt && "
                 "cat test.safetensors | timeout 30 '%s' compress --basis B.safetensors --ratio 16 --window 16 - -o pipe.kvtc 2>>stderr.txt && "
                 "'%s' compress --basis B.safetensors --ratio 16 --window 16 test.safetensors -o file.kvtc 2>>stderr.txt && "
                 "cmp -s fifo.kvtc file.kvtc && cmp -s pipe.kvtc file.kvtc",
                 g_dir, g_cli, g_cli, g_cli);
        int st = system(cmd);
        CHECK_MSG(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "FIFO / pipe input: status %d", st);
    }
    rc = run_cli("compress --basis - - -o x.kvtc <B.safetensors");
    CHECK_MSG(rc == 2 && file_contains("stderr.txt", "cannot both be -"), "--basis - -: exit %d", rc);
    rc = run_cli("decompress --basis - - -o x.safetensors <B.safetensors");
    CHECK_MSG(rc == 2 && file_contains("stderr.txt", "cannot both be -"), "decompress --basis - -: exit %d", rc);
    rc = run_cli("compress --basis B.safetensors test.safetensors -o newdir/");
    CHECK(rc == 1 && file_contains("stderr.txt", "is a directory"));
    /* item 2: the achieved error is printed; --max-error refuses to write */
    rc = run_cli("compress --basis B.safetensors --ratio 16 --window 16 test.safetensors -o e.kvtc");
    CHECK(rc == 0 && file_contains("stderr.txt", "relative error"));
    rc = run_cli("compress --basis B.safetensors --ratio 16 --window 16 --max-error 1e-9 test.safetensors -o e2.kvtc");
    path_of(p, sizeof p, "e2.kvtc");
    CHECK_MSG(rc == 1 && access(p, F_OK) != 0 && file_contains("stderr.txt", "exceeds --max-error"),
              "--max-error: exit %d", rc);
    rc = run_cli("compress --basis B.safetensors --ratio 16 --window 16 --max-error 0.5 test.safetensors -o e2.kvtc");
    CHECK(rc == 0);
    /* clearer errors: the file kind by its magic, the differing field */
    path_of(p, sizeof p, "words.txt");
    CHECK(write_file(p, "just some words\n", 16) == 0);
    path_of(p, sizeof p, "empty.bin");
    CHECK(write_file(p, "", 0) == 0);
    path_of(p, sizeof p, "cut.kvtc");
    CHECK(write_file(p, "\x89KVTC", 5) == 0); /* a stream cut inside its magic */
    path_of(p, sizeof p, "binary.bin");
    CHECK(write_file(p, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", 10) == 0);
    const struct { const char *args, *want; } kinds[] = {
        {"compress --basis B.safetensors out.kvtc -o x.kvtc", "out.kvtc is a kvtc stream, not a KV cache"},
        {"compress --basis B.safetensors words.txt -o x.kvtc", "words.txt is a text file, not a KV cache"},
        {"compress --basis B.safetensors B.safetensors -o x.kvtc", "B.safetensors is a kvtc basis, not a KV cache"},
        {"compress --basis test.safetensors test.safetensors -o x.kvtc", "test.safetensors is a KV cache (safetensors), not a kvtc basis"},
        {"decompress --basis B.safetensors B.safetensors -o x.safetensors", "B.safetensors is a kvtc basis, not a kvtc stream"},
        {"info words.txt", "words.txt is a text file, not a kvtc stream, basis or KV cache"},
        {"info short.safetensors", "short.safetensors: KV cache:"},
        /* review of issue 9 (rev1): empty files are not "text files", a
         * stream cut short is a stream, unknown content is not "not a kvtc
         * file, not ..."; one standard input cannot be two files */
        {"compress --basis empty.bin test.safetensors -o x.kvtc", "empty.bin is an empty file, not a kvtc basis"},
        {"compress --basis B.safetensors /dev/null -o x.kvtc", "/dev/null is an empty file, not a KV cache"},
        {"info empty.bin", "empty.bin is an empty file"},
        {"decompress --basis B.safetensors cut.kvtc -o x.safetensors", "cut.kvtc: input truncated"},
        {"info cut.kvtc", "cut.kvtc: kvtc stream: input truncated"},
        {"info binary.bin", "binary.bin is not a kvtc stream, basis, KV cache or llama.cpp state file"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        rc = run_cli(kinds[i].args);
        CHECK_MSG(rc == 1 && file_contains("stderr.txt", kinds[i].want), "kvtc %s: exit %d, want '%s'", kinds[i].args,
                  rc, kinds[i].want);
    }
    kvtc_cache other = *test_cache;
    other.geometry.rope_theta = 500000.0f;
    CHECK(write_cache("theta.safetensors", &other) == 0);
    rc = run_cli("compress --basis B.safetensors theta.safetensors -o x.kvtc");
    CHECK_MSG(rc == 1 && file_contains("stderr.txt", "rope_theta: cache 500000, basis 10000"), "rope_theta mismatch: exit %d", rc);
    other = *test_cache;
    other.geometry.rope_dim = 16;
    CHECK(write_cache("ropedim.safetensors", &other) == 0);
    rc = run_cli("compress --basis B.safetensors ropedim.safetensors -o x.kvtc");
    CHECK_MSG(rc == 1 && file_contains("stderr.txt", "rope_dim: cache 16, basis 32"), "rope_dim mismatch: exit %d", rc);

    /* item 3: a stream that recomputes layer 0 records the model; another
     * model (one byte of blk.0.attn_k.weight changed) is refused */
    char cwd[1024], model[1100], text[1100], args[3000];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(text, sizeof text, "%s/data/persuasion.txt", cwd);
    snprintf(model, sizeof model, "%s/data/stories260K.gguf", cwd);
    snprintf(args, sizeof args, "capture --model %s --text %s --ctx 200 -o cap.safetensors", model, text);
    CHECK(run_cli(args) == 0);
    CHECK(run_cli("calibrate -o R.safetensors --recompute-layers 1 --window 16 --ratio 4 cap.safetensors") == 0);
    CHECK(run_cli("compress --basis R.safetensors --window 16 cap.safetensors -o r.kvtc") == 1 &&
          file_contains("stderr.txt", "pass --model"));
    snprintf(args, sizeof args, "compress --basis R.safetensors --window 16 --model %s cap.safetensors -o r.kvtc", model);
    CHECK(run_cli(args) == 0);
    /* the same cache without token ids: the message names the field */
    path_of(p, sizeof p, "cap.safetensors");
    size_t capn = 0;
    void *capb = test_read_file(p, &capn);
    cache_file capf;
    memset(&capf, 0, sizeof capf);
    CHECK(capb && cache_file_parse(capb, capn, &capf) == KVTC_OK);
    free(capb);
    if (capf.cache.k) {
        kvtc_cache noids = capf.cache;
        noids.token_ids = NULL;
        CHECK(write_cache("noids.safetensors", &noids) == 0);
        snprintf(args, sizeof args, "compress --basis R.safetensors --model %s noids.safetensors -o x.kvtc", model);
        rc = run_cli(args);
        CHECK_MSG(rc == 1 && file_contains("stderr.txt", "token_ids: the basis recomputes 1 layer(s)"), "no token ids: exit %d", rc);
    }
    cache_file_free(&capf);
    size_t mn = 0;
    uint8_t *mb = (uint8_t *)test_read_file(model, &mn);
    eng_gguf_file *gf = NULL;
    CHECK(mb && eng_gguf_open_memory(mb, mn, &gf, NULL, 0) == ENG_GGUF_OK);
    const eng_gguf_tensor *t = gf ? eng_gguf_find_tensor(gf, "blk.0.attn_k.weight") : NULL;
    CHECK(t != NULL);
    if (t) {
        mb[(size_t)(t->data - gf->buf) + 7] ^= 0x80;
        path_of(p, sizeof p, "other.gguf");
        CHECK(write_file(p, mb, mn) == 0);
        rc = run_cli("decompress --basis R.safetensors --model other.gguf r.kvtc -o r.safetensors");
        CHECK_MSG(rc == 1 && file_contains("stderr.txt", "written with another model"), "wrong model: exit %d", rc);
        snprintf(args, sizeof args, "decompress --basis R.safetensors --model %s r.kvtc -o r.safetensors", model);
        CHECK(run_cli(args) == 0);
        /* the first 4 tokens are raw sinks, stored for every layer: no
         * model needed (the CLI used to ask for one); the 5th is coded */
        CHECK(run_cli("decompress --basis R.safetensors --tokens 4 r.kvtc -o r4.safetensors") == 0);
        rc = run_cli("decompress --basis R.safetensors --tokens 5 r.kvtc -o r5.safetensors");
        CHECK_MSG(rc == 1 && file_contains("stderr.txt", "pass --model"), "--tokens 5 without a model: exit %d", rc);
        snprintf(args, sizeof args, "decompress --basis R.safetensors --model %s --tokens 4 r.kvtc -o r4m.safetensors", model);
        CHECK(run_cli(args) == 0);
        size_t n4 = 0, n4m = 0;
        path_of(p, sizeof p, "r4.safetensors");
        void *b4 = test_read_file(p, &n4);
        path_of(p, sizeof p, "r4m.safetensors");
        void *b4m = test_read_file(p, &n4m);
        CHECK(b4 && b4m && n4 == n4m && !memcmp(b4, b4m, n4));
        free(b4);
        free(b4m);
    }
    eng_gguf_close(gf);
    free(mb);
    /* item 11: a context beyond the model's trained one is refused */
    snprintf(args, sizeof args, "eval --model %s --text %s --ctx 100000 --no-baselines --basis R.safetensors", model, text);
    rc = run_cli(args);
    CHECK_MSG(rc == 1 && file_contains("stderr.txt", "exceeds the model's trained context of 512 tokens"),
              "eval --ctx 100000: exit %d", rc);
    /* review (revlate): --plot - appended the PNG to the table or JSON on
     * standard output (a --json reader got binary after the object) */
    snprintf(args, sizeof args, "eval --model %s --text %s --ctx 512 --windows 1 --no-baselines --basis R.safetensors "
             "--json --plot -", model, text);
    rc = run_cli(args);
    CHECK_MSG(rc == 2 && file_contains("stderr.txt", "--plot - would write the PNG into standard output"),
              "eval --plot -: exit %d", rc);
    /* review of issue 9 (rev1): the --plot name went into a shell command
     * ("$(...)" in it ran); now gnuplot runs without a shell on our own
     * temporary names and the PNG is written by the CLI's file writer */
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
        snprintf(args, sizeof args,
                 "eval --model %s --text %s --ctx 512 --windows 1 --no-baselines --basis R.safetensors --ratios 4 "
                 "--plot 'p$(touch pwned).png'", model, text);
        rc = run_cli(args);
        char png[300];
        path_of(p, sizeof p, "pwned");
        path_of(png, sizeof png, "p$(touch pwned).png");
        CHECK_MSG(rc == 0 && access(p, F_OK) != 0 && access(png, F_OK) == 0, "eval --plot: exit %d, pwned %s",
                  rc, access(p, F_OK) == 0 ? "created" : "not created");
    } else {
        printf("gnuplot not installed: eval --plot not checked\n");
    }
    snprintf(args, sizeof args, "capture --model %s --text %s --ctx 100000 -o big.safetensors", model, text);
    CHECK(run_cli(args) == 1 && file_contains("stderr.txt", "pass --force"));
    snprintf(args, sizeof args, "capture --model %s --text %s --window-index 99999999999 -o big.safetensors", model, text);
    CHECK(run_cli(args) == 2 && file_contains("stderr.txt", "not '99999999999'"));
    CHECK(tmp_files() == 0);
}

static int write_cache(const char *name, const kvtc_cache *c) {
    void *buf = NULL;
    size_t n = 0;
    if (cache_file_serialize(c, &buf, &n) != KVTC_OK) return -1;
    char p[256];
    path_of(p, sizeof p, name);
    int r = write_file(p, buf, n);
    free(buf);
    return r;
}

static int find_cli(void) {
    const char *env = getenv("KVTC_CLI");
    if (env && *env) {
        snprintf(g_cli, sizeof g_cli, "%s", env);
    } else {
        ssize_t n = readlink("/proc/self/exe", g_cli, sizeof g_cli - 8);
        if (n <= 0) return -1;
        g_cli[n] = 0;
        char *slash = strrchr(g_cli, '/');
        if (!slash) return -1;
        strcpy(slash + 1, "kvtc");
    }
    if (g_cli[0] != '/') { /* run_cli changes directory */
        char cwd[PATH_MAX], rel[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) || strlen(cwd) + strlen(g_cli) + 2 > sizeof g_cli) return -1;
        memcpy(rel, g_cli, strlen(g_cli) + 1);
        strcpy(g_cli, cwd);
        strcat(g_cli, "/");
        strcat(g_cli, rel);
    }
    return access(g_cli, X_OK);
}

int main(void) {
    if (find_cli() != 0) {
        fprintf(stderr, "kvtc CLI not found (set KVTC_CLI)\n");
        CHECK(0);
        return TEST_REPORT();
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/kvtc_cli_XXXXXX");
    if (!mkdtemp(g_dir)) {
        CHECK(0);
        return TEST_REPORT();
    }

    /* ---- inputs: two calibration caches and a held-out one with positions */
    kvtc_geometry g = synth_geometry(4, 2, 32, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 700);
    synth_cache c1, c2, ct;
    sp.data_seed = 1;
    CHECK(synth_make(&sp, &c1) == 0);
    sp.data_seed = 2;
    CHECK(synth_make(&sp, &c2) == 0);
    int64_t pos[300];
    for (int t = 0; t < 300; t++) pos[t] = 2000 + 2 * t;
    sp.data_seed = 3;
    sp.n_tokens = 300;
    sp.positions = pos;
    CHECK(synth_make(&sp, &ct) == 0);
    CHECK(write_cache("c1.safetensors", &c1.c) == 0);
    CHECK(write_cache("c2.safetensors", &c2.c) == 0);
    CHECK(write_cache("test.safetensors", &ct.c) == 0);

    /* ---- the happy path */
    int rc = run_cli("calibrate -o B.safetensors --window 16 c1.safetensors c2.safetensors");
    CHECK_MSG(rc == 0, "calibrate exit %d", rc);
    char p[256];
    path_of(p, sizeof p, "B.safetensors");
    size_t bn = 0;
    void *bb = test_read_file(p, &bn);
    kvtc_basis *basis = NULL;
    CHECK(bb && kvtc_basis_load(bb, bn, &basis) == KVTC_OK);
    free(bb);
    CHECK(kvtc_basis_plan_count(basis) == 5); /* default ratios 8 16 20 32 64 */

    rc = run_cli("compress --basis B.safetensors --ratio 16 --window 16 test.safetensors -o out.kvtc");
    CHECK_MSG(rc == 0, "compress exit %d", rc);
    path_of(p, sizeof p, "out.kvtc");
    size_t sn = 0;
    uint8_t *stream = (uint8_t *)test_read_file(p, &sn);
    kvtc_stream_info info = {.struct_size = sizeof info};
    CHECK(stream && kvtc_stream_get_info(stream, sn, &info) == KVTC_OK);
    CHECK(info.n_tokens == 300 && info.n_sink == 4 && info.n_window == 16 && info.plan_ratio == 16);
    CHECK(info.has_positions && info.dtype == KVTC_DTYPE_F16);
    CHECK(basis && info.basis_fingerprint == kvtc_basis_fingerprint(basis));

    rc = run_cli("decompress --basis B.safetensors out.kvtc -o dec.safetensors");
    CHECK_MSG(rc == 0, "decompress exit %d", rc);
    path_of(p, sizeof p, "dec.safetensors");
    size_t dn = 0;
    void *db = test_read_file(p, &dn);
    cache_file dec;
    memset(&dec, 0, sizeof dec);
    CHECK(db && cache_file_parse(db, dn, &dec) == KVTC_OK);
    free(db);
    if (dec.cache.k) {
        CHECK(dec.cache.n_tokens == 300 && dec.cache.dtype == KVTC_DTYPE_F16);
        CHECK(dec.cache.geometry.rope_type == KVTC_ROPE_NEOX && dec.cache.geometry.n_layers == 4);
        CHECK(dec.cache.positions && memcmp(dec.cache.positions, pos, sizeof pos) == 0);
        int exact = 1;
        for (uint64_t t = 0; t < 4; t++) exact &= synth_token_equal(&ct.c, &dec.cache, t);
        for (uint64_t t = 300 - 16; t < 300; t++) exact &= synth_token_equal(&ct.c, &dec.cache, t);
        CHECK_MSG(exact, "CLI round trip: sink/window not bit-exact");
        /* the same bytes as the library's own decode */
        kvtc_decoder *d = NULL;
        kvtc_cache lib;
        CHECK(synth_alloc_like(&info.geometry, info.dtype, info.n_tokens, 0, &lib) == 0);
        CHECK(kvtc_decoder_alloc(basis, NULL, &d) == KVTC_OK);
        CHECK(kvtc_decompress(d, stream, sn, &lib) == KVTC_OK);
        CHECK(memcmp(lib.k, dec.cache.k, (size_t)info.k_bytes) == 0 &&
              memcmp(lib.v, dec.cache.v, (size_t)info.v_bytes) == 0);
        kvtc_decoder_free(d);
        synth_cache_free(&lib);
        /* and close to the input */
        double err = 0, energy = 0;
        for (uint64_t t = 4; t < 300 - 16; t++) {
            err += synth_token_sqerr(&ct.c, &dec.cache, 1, t) + synth_token_sqerr(&ct.c, &dec.cache, 0, t);
        }
        kvtc_cache zero;
        synth_alloc_like(&g, KVTC_DTYPE_F16, 300, 0, &zero);
        for (uint64_t t = 4; t < 300 - 16; t++)
            energy += synth_token_sqerr(&ct.c, &zero, 1, t) + synth_token_sqerr(&ct.c, &zero, 0, t);
        synth_cache_free(&zero);
        CHECK_MSG(err < 0.01 * energy, "CLI round trip error %.4g of energy %.4g", err, energy);
    }
    cache_file_free(&dec);

    /* info on the three kinds of file */
    CHECK(run_cli("info out.kvtc") == 0 && file_starts_with("stdout.txt", "kvtc stream"));
    CHECK(run_cli("info B.safetensors") == 0 && file_starts_with("stdout.txt", "basis:"));
    CHECK(run_cli("info test.safetensors") == 0 && file_starts_with("stdout.txt", "KV cache:"));
    CHECK(run_cli("info dec.safetensors") == 0 && file_starts_with("stdout.txt", "KV cache:"));
    CHECK(tmp_files() == 0);

    /* --help of every command: exit 0, text on stdout */
    const char *helps[] = {"--help", "calibrate --help", "compress --help", "decompress --help", "info --help",
                           "capture --help", "compress -h"};
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        rc = run_cli(helps[i]);
        CHECK_MSG(rc == 0 && file_starts_with("stdout.txt", "usage: kvtc"), "kvtc %s: exit %d", helps[i], rc);
    }

    /* ---- usage errors: exit 2 and exactly one line on stderr */
    const char *usage[] = {
        "",                                                                  /* no command */
        "frobnicate",                                                        /* unknown command */
        "info",                                                              /* missing file */
        "info a b",                                                          /* too many files */
        "compress --basis B.safetensors test.safetensors",                   /* no -o */
        "compress --basis B.safetensors -o x.kvtc",                          /* no input */
        "compress test.safetensors -o x.kvtc",                               /* no basis */
        "compress --bogus --basis B.safetensors test.safetensors -o x.kvtc", /* unknown option */
        "compress --basis B.safetensors test.safetensors -o",                /* option without value */
        "compress --basis B.safetensors test.safetensors -o x.kvtc --ratio", /* value missing: 2 messages today */
        "compress --basis B.safetensors --ratio abc test.safetensors -o x.kvtc",
        "compress --basis B.safetensors --ratio 1 test.safetensors -o x.kvtc",
        "compress --basis B.safetensors --threads 0 test.safetensors -o x.kvtc",
        "compress --basis B.safetensors --level 13 test.safetensors -o x.kvtc",
        "compress --basis B.safetensors --chunk 0 test.safetensors -o x.kvtc",
        "compress --basis B.safetensors test.safetensors c1.safetensors -o x.kvtc", /* two inputs */
        "decompress --basis B.safetensors out.kvtc",                         /* no -o */
        "decompress --basis B.safetensors --threads -3 out.kvtc -o x.safetensors",
        "decompress --bogus --basis B.safetensors out.kvtc -o x.safetensors",
        "calibrate c1.safetensors",                                          /* no -o */
        "calibrate -o x.safetensors",                                        /* no input */
        "calibrate -o x.safetensors --ratio 0.5 c1.safetensors",
        "calibrate -o x.safetensors --pca fast c1.safetensors",
        "calibrate -o x.safetensors --bogus c1.safetensors",
    };
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        rc = run_cli(usage[i]);
        path_of(p, sizeof p, "stderr.txt");
        int lines = count_lines(p);
        CHECK_MSG(rc == 2, "usage error 'kvtc %s': exit %d, want 2", usage[i], rc);
        CHECK_MSG(lines == 1, "usage error 'kvtc %s': %d lines on stderr, want 1", usage[i], lines);
    }
    /* no output files were created by any of them */
    path_of(p, sizeof p, "x.kvtc");
    CHECK(access(p, F_OK) != 0);
    path_of(p, sizeof p, "x.safetensors");
    CHECK(access(p, F_OK) != 0);

    /* ---- failures leave an existing output intact and no temporaries */
    static const char precious[] = "PRECIOUS: must survive a failed run\n";
    const char *outs[] = {"keep.kvtc", "keep.safetensors", "keepB.safetensors"};
    for (int i = 0; i < 3; i++) {
        path_of(p, sizeof p, outs[i]);
        CHECK(write_file(p, precious, sizeof precious - 1) == 0);
    }
    /* corrupt stream: one flipped byte in the coded data */
    uint8_t *bad = malloc(sn);
    memcpy(bad, stream, sn);
    bad[sn - 10] ^= 0x40;
    path_of(p, sizeof p, "corrupt.kvtc");
    CHECK(write_file(p, bad, sn) == 0);
    /* truncated stream */
    path_of(p, sizeof p, "short.kvtc");
    CHECK(write_file(p, stream, sn / 2) == 0);
    free(bad);
    /* truncated cache file and a garbage basis */
    path_of(p, sizeof p, "test.safetensors");
    size_t cn = 0;
    void *cb = test_read_file(p, &cn);
    path_of(p, sizeof p, "short.safetensors");
    CHECK(cb && write_file(p, cb, cn - 100) == 0);
    free(cb);
    path_of(p, sizeof p, "junk.safetensors");
    CHECK(write_file(p, "this is not a basis", 19) == 0);

    const struct {
        const char *args, *out;
    } fails[] = {
        {"decompress --basis B.safetensors corrupt.kvtc -o keep.safetensors", "keep.safetensors"},
        {"decompress --basis B.safetensors short.kvtc -o keep.safetensors", "keep.safetensors"},
        {"decompress --basis junk.safetensors out.kvtc -o keep.safetensors", "keep.safetensors"},
        {"decompress --basis B.safetensors missing.kvtc -o keep.safetensors", "keep.safetensors"},
        {"decompress --basis B.safetensors B.safetensors -o keep.safetensors", "keep.safetensors"},
        {"compress --basis B.safetensors short.safetensors -o keep.kvtc", "keep.kvtc"},
        {"compress --basis junk.safetensors test.safetensors -o keep.kvtc", "keep.kvtc"},
        {"compress --basis B.safetensors out.kvtc -o keep.kvtc", "keep.kvtc"},
        {"compress --basis out.kvtc test.safetensors -o keep.kvtc", "keep.kvtc"},
        {"calibrate -o keepB.safetensors short.safetensors", "keepB.safetensors"},
        {"calibrate -o keepB.safetensors c1.safetensors junk.safetensors", "keepB.safetensors"},
        {"calibrate -o keepB.safetensors --window 1000 c1.safetensors", "keepB.safetensors"}, /* no rows */
    };
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
        rc = run_cli(fails[i].args);
        CHECK_MSG(rc != 0 && rc != -1, "'kvtc %s' should fail cleanly: exit %d", fails[i].args, rc);
        CHECK_MSG(file_equals(fails[i].out, precious, sizeof precious - 1), "'kvtc %s' damaged %s", fails[i].args,
                  fails[i].out);
        path_of(p, sizeof p, "stderr.txt");
        CHECK_MSG(count_lines(p) >= 1 && file_starts_with("stderr.txt", "kvtc: "), "'kvtc %s': no error message",
                  fails[i].args);
        CHECK_MSG(tmp_files() == 0, "'kvtc %s' left a temporary file", fails[i].args);
    }
    /* info on a corrupt or unknown file fails (non-zero, no crash) */
    rc = run_cli("info corrupt.kvtc");
    CHECK_MSG(rc == 0, "info reads the header of a stream whose chunk data is damaged: exit %d", rc);
    rc = run_cli("info short.kvtc");
    CHECK_MSG(rc == 1, "info short.kvtc: exit %d", rc);
    rc = run_cli("info junk.safetensors");
    CHECK_MSG(rc == 1, "info junk: exit %d", rc);
    rc = run_cli("info nowhere.bin");
    CHECK_MSG(rc == 1, "info on a missing file: exit %d", rc);
    /* an output in a directory that does not exist: fails, nothing left over */
    rc = run_cli("compress --basis B.safetensors test.safetensors -o nodir/x.kvtc");
    CHECK_MSG(rc == 1, "write into a missing directory: exit %d", rc);
    CHECK(tmp_files() == 0);
    /* a successful run over an existing output replaces it */
    rc = run_cli("compress --basis B.safetensors --ratio 16 --window 16 test.safetensors -o keep.kvtc");
    CHECK(rc == 0 && file_equals("keep.kvtc", stream, sn));
    CHECK(tmp_files() == 0);

    issue9_cli(stream, sn, &ct.c);

    free(stream);
    kvtc_basis_free(basis);
    synth_free(&c1);
    synth_free(&c2);
    synth_free(&ct);
    remove_dir();
    return TEST_REPORT();
}
