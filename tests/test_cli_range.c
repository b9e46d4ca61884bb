/* test_cli_range.c - the CLI side of issue 11: `kvtc compress --ratio R`
 * for a ratio the basis stores no plan for, and `kvtc decompress --tokens N
 * --layers A:B`, whose output must equal the library's partial decode of
 * the same range (bit for bit), shaped [B-A, H, N, d]. Uses $KVTC_CLI. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/cache_file.h"
#include "kvtc.h"
#include "synth.h"
#include "test.h"

static char g_dir[64];

static int run(const char *cli, const char *args) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >out.txt 2>err.txt", g_dir, cli, args);
    int st = system(cmd);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static int write_in_dir(const char *name, const void *buf, size_t n) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    int ok = fwrite(buf, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void *read_in_dir(const char *name, size_t *n) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return test_read_file(p, n);
}

/* Tokens [t0, t0 + n) of c as their own cache (positions left to the
 * default, which the append continues). */
static int slice_tokens(const kvtc_cache *c, uint64_t t0, uint64_t n, kvtc_cache *out) {
    if (synth_alloc_like(&c->geometry, c->dtype, n, 0, out)) return -1;
    size_t row = (size_t)c->geometry.head_dim * kvtc_dtype_size(c->dtype);
    uint64_t lh = (uint64_t)c->geometry.n_layers * c->geometry.n_kv_heads;
    for (uint64_t i = 0; i < lh; i++) {
        memcpy((uint8_t *)out->k + i * n * row, (const uint8_t *)c->k + (i * c->n_tokens + t0) * row, n * row);
        memcpy((uint8_t *)out->v + i * n * row, (const uint8_t *)c->v + (i * c->n_tokens + t0) * row, n * row);
    }
    return 0;
}

/* A stream shorter than sink + window records both cut to its length
 * (10 tokens of window 32: sink 4, window 6). kvtc append took those, so
 * the appended stream kept 6 raw tokens instead of 32 and coded the rest:
 * smaller, lossier, and not what compress gives. With --window it is the
 * stream compress makes of the concatenation, byte for byte. */
static void test_append_to_all_raw_stream(const char *cli, const kvtc_cache *all) {
    kvtc_cache head, tail;
    void *hb = NULL, *tb = NULL;
    size_t hn = 0, tn = 0;
    CHECK(slice_tokens(all, 0, 10, &head) == 0 && slice_tokens(all, 10, all->n_tokens - 10, &tail) == 0);
    CHECK(cache_file_serialize(&head, &hb, &hn) == KVTC_OK && cache_file_serialize(&tail, &tb, &tn) == KVTC_OK);
    CHECK(write_in_dir("head.safetensors", hb, hn) == 0 && write_in_dir("tail.safetensors", tb, tn) == 0);
    CHECK(run(cli, "compress --basis basis.safetensors --ratio 12 --chunk 64 --window 32 head.safetensors -o h.kvtc") == 0);
    CHECK(run(cli, "append --basis basis.safetensors --window 32 h.kvtc tail.safetensors -o ht.kvtc") == 0);
    size_t sn = 0, an = 0;
    uint8_t *sb = read_in_dir("s.kvtc", &sn), *ab = read_in_dir("ht.kvtc", &an);
    CHECK_MSG(sb && ab && sn == an && !memcmp(sb, ab, sn), "append to a 10-token stream: %zu bytes, compress: %zu", an, sn);
    /* a stream with coded tokens keeps its own window: a different one is refused */
    CHECK(run(cli, "append --basis basis.safetensors --window 8 s.kvtc tail.safetensors -o bad.kvtc") == 1);
    size_t en = 0;
    char *err = read_in_dir("err.txt", &en);
    CHECK_MSG(err && strstr(err, "window 32"), "%s", err ? err : "(no stderr)");
    free(err);
    /* a stream with token ids, extended by tokens without: kvtc_append
     * drops every id (ids are kept only when all tokens have one); the CLI
     * refuses instead of losing them silently */
    int32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    head.token_ids = ids;
    void *ib = NULL;
    size_t in_ = 0;
    CHECK(cache_file_serialize(&head, &ib, &in_) == KVTC_OK && write_in_dir("headid.safetensors", ib, in_) == 0);
    head.token_ids = NULL;
    CHECK(run(cli, "compress --basis basis.safetensors --ratio 12 headid.safetensors -o hid.kvtc") == 0);
    CHECK(run(cli, "append --basis basis.safetensors hid.kvtc tail.safetensors -o bad.kvtc") == 1);
    err = read_in_dir("err.txt", &en);
    CHECK_MSG(err && strstr(err, "stores token ids and tail.safetensors has none"), "%s", err ? err : "(no stderr)");
    free(err); free(ib);
    free(sb); free(ab); free(hb); free(tb);
    synth_cache_free(&head);
    synth_cache_free(&tail);
}

int main(void) {
    const char *cli = getenv("KVTC_CLI");
    if (!cli || !*cli) {
        fprintf(stderr, "KVTC_CLI not set\n");
        return 1;
    }
    char abs_cli[PATH_MAX];
    char cwd[PATH_MAX - 64];
    if (cli[0] == '/') snprintf(abs_cli, sizeof abs_cli, "%s", cli); /* run() changes directory */
    else if (getcwd(cwd, sizeof cwd) && strlen(cli) < 60) snprintf(abs_cli, sizeof abs_cli, "%s/%s", cwd, cli);
    else return 1;
    snprintf(g_dir, sizeof g_dir, "/tmp/kvtc_range_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;

    kvtc_geometry g = synth_geometry(4, 2, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 500);
    static const double ratios[] = {8, 32};
    kvtc_basis *b = NULL;
    synth_cache sc;
    if (synth_calibrate(&sp, 2, 4, 32, ratios, 2, &b) || synth_make(&sp, &sc)) return 1;
    size_t bn = 0, cn = 0;
    void *bb = synth_basis_bytes(b, &bn), *cb = NULL;
    CHECK(bb && cache_file_serialize(&sc.c, &cb, &cn) == KVTC_OK);
    CHECK(write_in_dir("basis.safetensors", bb, bn) == 0 && write_in_dir("cache.safetensors", cb, cn) == 0);

    CHECK(run(abs_cli, "compress --basis basis.safetensors --ratio 12 --chunk 64 --window 32 cache.safetensors -o s.kvtc") == 0);
    /* below the smallest calibrated ratio: say which ratios work, not only
     * "basis has no plan for the requested ratio" */
    CHECK(run(abs_cli, "compress --basis basis.safetensors --ratio 4 cache.safetensors -o low.kvtc") == 1);
    size_t ln = 0;
    char *low = read_in_dir("err.txt", &ln);
    CHECK_MSG(low && strstr(low, "--ratio 4 is below the basis' smallest calibrated ratio 8"), "%s", low ? low : "(no stderr)");
    free(low);
    CHECK(run(abs_cli, "decompress --basis basis.safetensors --tokens 300 --layers 1:3 s.kvtc -o part.safetensors") == 0);
    CHECK(run(abs_cli, "decompress --basis basis.safetensors --layers 3:1 s.kvtc -o bad.safetensors") == 2);
    CHECK(run(abs_cli, "decompress --basis basis.safetensors --tokens 501 s.kvtc -o bad.safetensors") == 2);

    /* kvtc append: 100 following tokens (explicit positions 500..599) */
    int64_t pos[100];
    for (int i = 0; i < 100; i++) pos[i] = 500 + i;
    synth_params mp = sp;
    mp.n_tokens = 100;
    mp.data_seed = 2;
    mp.positions = pos;
    synth_cache more;
    size_t mn = 0, an = 0;
    void *mb = NULL;
    CHECK(synth_make(&mp, &more) == 0 && cache_file_serialize(&more.c, &mb, &mn) == KVTC_OK);
    CHECK(write_in_dir("more.safetensors", mb, mn) == 0);
    CHECK(run(abs_cli, "append --basis basis.safetensors s.kvtc more.safetensors -o a.kvtc") == 0);
    CHECK(run(abs_cli, "append --basis basis.safetensors s.kvtc -o a2.kvtc") == 2);
    CHECK(run(abs_cli, "append --basis basis.safetensors - - -o a2.kvtc <s.kvtc") == 2);
    /* a file with bytes after the stream (two streams concatenated) decoded
     * or extended its first stream without a word */
    {
        char cat[256];
        snprintf(cat, sizeof cat, "cd '%s' && cat s.kvtc s.kvtc > two.kvtc", g_dir);
        CHECK(system(cat) == 0);
    }
    static const char *const two[] = {"append --basis basis.safetensors two.kvtc more.safetensors -o a2.kvtc",
                                      "decompress --basis basis.safetensors two.kvtc -o two.safetensors"};
    for (int i = 0; i < 2; i++) {
        CHECK(run(abs_cli, two[i]) == 1);
        size_t tn = 0;
        char *te = read_in_dir("err.txt", &tn);
        CHECK_MSG(te && strstr(te, "bytes after the end of the stream"), "%s: %s", two[i], te ? te : "(no stderr)");
        free(te);
    }
    /* ids only in MORE: a stream keeps ids only when every token has one,
     * so they are dropped; said, not silent */
    int32_t more_ids[100];
    for (int i = 0; i < 100; i++) more_ids[i] = i;
    more.c.token_ids = more_ids;
    void *mib = NULL;
    size_t min_ = 0;
    CHECK(cache_file_serialize(&more.c, &mib, &min_) == KVTC_OK && write_in_dir("moreid.safetensors", mib, min_) == 0);
    more.c.token_ids = NULL;
    CHECK(run(abs_cli, "append --basis basis.safetensors s.kvtc moreid.safetensors -o aid.kvtc") == 0);
    size_t wn = 0;
    char *warn = read_in_dir("err.txt", &wn);
    CHECK_MSG(warn && strstr(warn, "warning: s.kvtc stores no token ids, so moreid.safetensors's are not stored"), "%s",
              warn ? warn : "(no stderr)");
    free(warn);
    free(mib);
    /* swapped or wrong files are named as what they are (the library's
     * "not a kvtc stream, basis or safetensors file" named a kvtc stream) */
    static const struct { const char *args, *says; } wrong[] = {
        {"append --basis basis.safetensors more.safetensors s.kvtc -o a2.kvtc", "more.safetensors is a KV cache (safetensors), not a kvtc stream"},
        {"append --basis basis.safetensors s.kvtc s.kvtc -o a2.kvtc", "s.kvtc is a kvtc stream, not a KV cache"},
        {"append --basis s.kvtc s.kvtc more.safetensors -o a2.kvtc", "s.kvtc is a kvtc stream, not a kvtc basis"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        CHECK(run(abs_cli, wrong[i].args) == 1);
        size_t en = 0;
        char *err = read_in_dir("err.txt", &en);
        CHECK_MSG(err && strstr(err, wrong[i].says), "%s: %s", wrong[i].args, err ? err : "(no stderr)");
        free(err);
    }
    test_append_to_all_raw_stream(abs_cli, &sc.c);
    /* tokens of another geometry: the CLI names both shapes (the library
     * says only "cache geometry does not match") */
    kvtc_geometry g3 = synth_geometry(3, 2, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params p3;
    synth_params_init(&p3, &g3, KVTC_DTYPE_F16, 20);
    synth_cache c3;
    void *b3 = NULL;
    size_t n3 = 0;
    CHECK(synth_make(&p3, &c3) == 0 && cache_file_serialize(&c3.c, &b3, &n3) == KVTC_OK);
    CHECK(write_in_dir("more3.safetensors", b3, n3) == 0);
    CHECK(run(abs_cli, "append --basis basis.safetensors s.kvtc more3.safetensors -o a3.kvtc") == 1);
    char *e3 = read_in_dir("err.txt", &n3);
    CHECK_MSG(e3 && strstr(e3, "more3.safetensors is 3 layers x 2 kv heads x 16 dims f16; s.kvtc is 4 x 2 x 16 f16"), "%s",
              e3 ? e3 : "(no stderr)");
    free(e3); free(b3);
    synth_free(&c3);
    uint8_t *ab = read_in_dir("a.kvtc", &an);
    kvtc_stream_info ai = {.struct_size = sizeof ai};
    CHECK(ab && kvtc_stream_get_info(ab, an, &ai) == KVTC_OK && ai.n_tokens == 600 && ai.plan_ratio == 12.0);
    free(ab);
    free(mb);
    synth_free(&more);

    size_t sn = 0, pn = 0;
    uint8_t *s = read_in_dir("s.kvtc", &sn);
    void *pb = read_in_dir("part.safetensors", &pn);
    kvtc_stream_info in = {.struct_size = sizeof in};
    CHECK(s && kvtc_stream_get_info(s, sn, &in) == KVTC_OK && in.plan_ratio == 12.0);
    cache_file part;
    memset(&part, 0, sizeof part);
    CHECK(pb && cache_file_parse(pb, pn, &part) == KVTC_OK);
    CHECK(part.cache.geometry.n_layers == 2 && part.cache.n_tokens == 300);
    /* the library's decode of the same range into a full-geometry cache */
    kvtc_cache ref;
    synth_alloc_like(&g, KVTC_DTYPE_F16, 300, 0, &ref);
    kvtc_cache_layout lay;
    kvtc_cache_layout_from_cache(&ref, &lay);
    kvtc_decode_range rg;
    kvtc_decode_range_init(&rg);
    rg.token_end = 300;
    rg.layer_begin = 1;
    rg.layer_end = 3;
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
    CHECK(s && kvtc_decompress_layout(d, s, sn, &rg, &lay) == KVTC_OK);
    size_t layer_bytes = (size_t)2 * 300 * 16 * 2;
    if (part.cache.k && part.cache.n_tokens == 300 && part.cache.geometry.n_layers == 2)
        CHECK(!memcmp(part.cache.k, (uint8_t *)ref.k + layer_bytes, 2 * layer_bytes) &&
              !memcmp(part.cache.v, (uint8_t *)ref.v + layer_bytes, 2 * layer_bytes));
    kvtc_decoder_free(d);
    synth_cache_free(&ref);
    cache_file_free(&part);
    free(s); free(pb); free(bb); free(cb);
    synth_free(&sc);
    kvtc_basis_free(b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return TEST_REPORT();
}
