/* bench_store.c - restore throughput and latency of the kvtc store
 * (lookup + get + decode into a contiguous cache), KVTC codec against the
 * raw codec, on the file: backend and on Redis.
 *
 *   bench_store URI [--tokens N] [--caches M] [--restores R] [--ratio X] [--threads T] [--chunk C]
 *               [--layers L --heads H --head-dim D]
 *
 * Caches are synthetic (tests/synth.h: a low-rank correlated model, RoPE
 * applied), by default at the bundled model's geometry (8 layers x 2 KV
 * heads x 64, fp16); the basis is calibrated on 4 other caches of the same
 * synthetic model. M caches of N tokens with distinct token ids are put,
 * then R restores cycle through them. Each codec uses a fresh namespace
 * (the model name carries the process id and time), so earlier runs against
 * the same store do not count. GB/s counts fp16 K+V bytes restored. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tests/synth.h"
#include "kvtc_store.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p) {
    int i = (int)(p * (n - 1) + 0.5);
    return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

typedef struct cfg {
    const char *uri;
    uint64_t tokens;
    int caches, restores, threads;
    double ratio;
    uint32_t chunk;
} cfg;

static int run_codec(const cfg *c, uint32_t codec, const kvtc_basis *basis, const synth_cache *data,
                     int32_t **tokens, const char *label) {
    const kvtc_geometry *g = &data[0].c.geometry;
    kvtc_store_options o;
    kvtc_store_options_init(&o);
    o.codec = codec;
    o.chunk_tokens = c->chunk;
    o.ratio = c->ratio;
    o.n_threads = (uint32_t)c->threads;
    o.timeout_ms = 10000;
    char name[96];
    snprintf(name, sizeof name, "bench-%ld-%ld-%u", (long)getpid(), (long)time(NULL), codec);
    o.model_name = name;
    kvtc_store *s = NULL;
    kvtc_result r = kvtc_store_open(c->uri, basis, g, KVTC_DTYPE_F16, &o, &s);
    if (r) { fprintf(stderr, "open %s: %s\n", c->uri, kvtc_result_string(r)); return 1; }
    double t0 = now_s();
    for (int i = 0; i < c->caches; i++)
        if ((r = kvtc_store_put(s, tokens[i], c->tokens, &data[i].c, NULL))) {
            fprintf(stderr, "put: %s\n", kvtc_result_string(r));
            kvtc_store_close(s);
            return 1;
        }
    double put_s = now_s() - t0;
    kvtc_store_stats st = {.struct_size = sizeof st};
    kvtc_store_stats_get(s, &st);
    uint64_t raw_bytes = 2 * kvtc_cache_tensor_bytes(g, KVTC_DTYPE_F16, c->tokens);
    double bytes_per_token = (double)st.bytes_written / (double)(c->tokens * (uint64_t)c->caches);
    double cache_bytes = bytes_per_token * (double)c->tokens;

    kvtc_cache out;
    if (synth_alloc_like(g, KVTC_DTYPE_F16, c->tokens, 0, &out)) return 1;
    kvtc_store_layout lay = {.struct_size = sizeof lay, .kind = KVTC_STORE_LAYOUT_CONTIGUOUS, .cache = &out};
    double *lat = malloc(sizeof(double) * (size_t)c->restores), *look = malloc(sizeof(double) * (size_t)c->restores);
    int bad = 0;
    for (int i = -1; i < c->restores; i++) { /* i = -1: warm-up */
        int j = (i < 0 ? 0 : i) % c->caches;
        uint64_t hit = 0, got = 0;
        double a = now_s();
        r = kvtc_store_lookup(s, tokens[j], c->tokens, &hit);
        double b = now_s();
        if (!r) r = kvtc_store_get(s, tokens[j], c->tokens, &lay, &got);
        double e = now_s();
        if (r || got != c->tokens || hit != c->tokens) bad++;
        if (i >= 0) {
            lat[i] = e - a;
            look[i] = b - a;
        }
    }
    qsort(lat, (size_t)c->restores, sizeof(double), cmp_d);
    qsort(look, (size_t)c->restores, sizeof(double), cmp_d);
    double mean = 0;
    for (int i = 0; i < c->restores; i++) mean += lat[i];
    mean /= c->restores;
    printf("| %s | %s | %.1f | %.0f | %.2f | %.3f | %.1f | %.1f | %.2f | %.1f |%s\n", c->uri, label, bytes_per_token,
           1e9 / cache_bytes, (double)raw_bytes / cache_bytes, (double)raw_bytes / mean / 1e9, 1e3 * pct(lat, c->restores, 0.5),
           1e3 * pct(lat, c->restores, 0.99), 1e3 * pct(look, c->restores, 0.5),
           (double)raw_bytes * c->caches / put_s / 1e6, bad ? " RESTORE FAILURES" : "");
    fflush(stdout);
    /* leave the store as it was */
    for (int i = 0; i < c->caches; i++) kvtc_store_delete(s, tokens[i], c->tokens);
    free(lat);
    free(look);
    synth_cache_free(&out);
    kvtc_store_close(s);
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_store URI [--tokens N] [--caches M] [--restores R] [--ratio X] [--threads T] "
                        "[--chunk C] [--layers L --heads H --head-dim D]\n");
        return 2;
    }
    cfg c = {argv[1], 8192, 4, 20, 2, 20.0, 256};
    uint32_t L = 8, H = 2, D = 64;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--tokens")) c.tokens = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--caches")) c.caches = atoi(v);
        else if (!strcmp(a, "--restores")) c.restores = atoi(v);
        else if (!strcmp(a, "--ratio")) c.ratio = atof(v);
        else if (!strcmp(a, "--threads")) c.threads = atoi(v);
        else if (!strcmp(a, "--chunk")) c.chunk = (uint32_t)atoi(v);
        else if (!strcmp(a, "--layers")) L = (uint32_t)atoi(v);
        else if (!strcmp(a, "--heads")) H = (uint32_t)atoi(v);
        else if (!strcmp(a, "--head-dim")) D = (uint32_t)atoi(v);
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    if (c.tokens < c.chunk || c.caches < 1 || c.restores < 1 || c.threads < 1) return 2;
    openblas_set_num_threads(1); /* the codec's threads parallelize (see cmd_codec.c) */

    kvtc_geometry g = synth_geometry(L, H, D, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 4096);
    sp.rank = 32;
    const double ratios[] = {c.ratio};
    kvtc_basis *basis = NULL;
    double t0 = now_s();
    kvtc_result r = synth_calibrate(&sp, 4, 4, 0, ratios, 1, &basis);
    if (r) { fprintf(stderr, "calibrate: %s\n", kvtc_result_string(r)); return 1; }
    fprintf(stderr, "basis calibrated in %.1f s\n", now_s() - t0);
    synth_cache *data = calloc((size_t)c.caches, sizeof *data);
    int32_t **tokens = calloc((size_t)c.caches, sizeof *tokens);
    for (int i = 0; i < c.caches; i++) {
        synth_params q = sp;
        q.n_tokens = c.tokens;
        q.data_seed = 1 + (uint64_t)i;
        tokens[i] = malloc(sizeof(int32_t) * c.tokens);
        synth_rng rng = {(uint64_t)i * 1000003 + (uint64_t)time(NULL)};
        for (uint64_t t = 0; t < c.tokens; t++) tokens[i][t] = (int32_t)(synth_next(&rng) % 128000);
        if (synth_make(&q, &data[i]) || !tokens[i]) { fprintf(stderr, "out of memory\n"); return 1; }
    }
    printf("| store | codec | bytes/token | caches/GB | ratio | restore GB/s | p50 ms | p99 ms | lookup p50 ms | put MB/s |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    char label[64];
    snprintf(label, sizeof label, "kvtc @%g", c.ratio);
    int fail = run_codec(&c, KVTC_STORE_CODEC_KVTC, basis, data, tokens, label);
    fail |= run_codec(&c, KVTC_STORE_CODEC_RAW, NULL, data, tokens, "raw fp16");
    for (int i = 0; i < c.caches; i++) {
        synth_free(&data[i]);
        free(tokens[i]);
    }
    free(data);
    free(tokens);
    kvtc_basis_free(basis);
    return fail;
}
