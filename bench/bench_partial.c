/* bench_partial.c - costs of the engine-facing operations of issue 11 on
 * the CPU, against a full decode / a full encode of the same stream:
 *
 *   bench_partial CACHE.safetensors BASIS.safetensors RATIO TILES CHUNK
 *
 * The cache is tiled TILES times along the tokens (positions continuing)
 * to make a long stream (2048 x 4 = 8192 tokens from a captured window);
 * it is compressed with chunks of CHUNK tokens. Printed: full decode,
 * decode of the first N chunks (N = 1, 1/8, 1/4, 1/2, 3/4 of them), of one
 * layer (each layer in turn, without and after kvtc_decoder_hold). The
 * cost of kvtc_append is measured by bench_append.c. Times are medians of
 * 5 runs, one codec thread (run with OPENBLAS_NUM_THREADS=1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_tile.h"
#include "io/cache_file.h"
#include "kvtc.h"

#define REPS 5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(*n);
    if (b && fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

/* Median seconds of REPS decodes of `range` into a cache sized for it. */
static double time_decode(kvtc_decoder *d, const uint8_t *s, size_t n, const kvtc_stream_info *in,
                          const kvtc_decode_range *rg) {
    kvtc_cache c;
    memset(&c, 0, sizeof c);
    c.geometry = in->geometry;
    c.dtype = in->dtype;
    c.n_tokens = (rg->token_end ? rg->token_end : in->n_tokens) - rg->token_begin;
    uint64_t bytes = kvtc_cache_tensor_bytes(&c.geometry, c.dtype, c.n_tokens);
    c.k = malloc(bytes);
    c.v = malloc(bytes);
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(&c, &l);
    double t[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = now_s();
        if (kvtc_decompress_layout(d, s, n, rg, &l)) { fprintf(stderr, "decode failed\n"); exit(1); }
        t[i] = now_s() - t0;
    }
    free(c.k);
    free(c.v);
    qsort(t, REPS, sizeof t[0], cmp_d);
    return t[REPS / 2];
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: bench_partial CACHE BASIS RATIO TILES CHUNK\n");
        return 2;
    }
    size_t cn, bn;
    void *cb = read_all(argv[1], &cn), *bb = read_all(argv[2], &bn);
    cache_file cf;
    kvtc_basis *b = NULL;
    if (!cb || !bb || cache_file_parse(cb, cn, &cf) || kvtc_basis_load(bb, bn, &b)) {
        fprintf(stderr, "cannot read the cache or the basis\n");
        return 1;
    }
    uint32_t tiles = (uint32_t)atoi(argv[4]);
    kvtc_cache big;
    if (bench_tile_cache(&cf.cache, tiles, 0, &big)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    const kvtc_geometry *g = &big.geometry;
    uint64_t n = big.n_tokens;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = atof(argv[3]);
    eo.chunk_tokens = (uint32_t)atoi(argv[5]);
    kvtc_encoder *e = NULL;
    kvtc_decoder *d = NULL;
    if (kvtc_encoder_alloc(b, &eo, &e) || kvtc_decoder_alloc(b, NULL, &d)) return 1;
    size_t cap = kvtc_compress_bound(e, &big), sn = 0;
    uint8_t *s = malloc(cap);
    double te[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = now_s();
        if (kvtc_compress(e, &big, s, cap, &sn)) return 1;
        te[i] = now_s() - t0;
    }
    qsort(te, REPS, sizeof te[0], cmp_d);
    double t_enc = te[REPS / 2];
    kvtc_stream_info in = {.struct_size = sizeof in};
    kvtc_stream_get_info(s, sn, &in);
    printf("stream: %llu tokens, %u layers, %u chunks of %u, %zu bytes, ratio %g\n", (unsigned long long)n,
           g->n_layers, in.n_chunks, in.chunk_tokens, sn, in.plan_ratio);
    kvtc_decode_range rg;
    kvtc_decode_range_init(&rg);
    double full = time_decode(d, s, sn, &in, &rg);
    printf("full decode: %.2f ms; full encode: %.2f ms\n", 1e3 * full, 1e3 * t_enc);
    printf("%-28s %10s %10s %10s\n", "partial decode", "ms", "of full", "expected");
    uint32_t nc = in.n_chunks, fr[5] = {1, nc / 8, nc / 4, nc / 2, 3 * nc / 4};
    for (int i = 0; i < 5; i++) {
        kvtc_decode_range_init(&rg);
        rg.token_end = in.n_sink + (uint64_t)fr[i] * in.chunk_tokens;
        double t = time_decode(d, s, sn, &in, &rg);
        char what[64];
        snprintf(what, sizeof what, "first %u of %u chunks", fr[i], nc);
        printf("%-28s %10.2f %10.3f %10.3f\n", what, 1e3 * t, t / full, (double)fr[i] / nc);
    }
    double sum = 0;
    for (uint32_t l = 0; l < g->n_layers; l++) {
        kvtc_decode_range_init(&rg);
        rg.layer_begin = l;
        rg.layer_end = l + 1;
        sum += time_decode(d, s, sn, &in, &rg);
    }
    printf("%-28s %10.2f %10.3f %10.3f\n", "one layer (mean of all)", 1e3 * sum / g->n_layers,
           sum / g->n_layers / full, 1.0 / g->n_layers);
    /* layer by layer after one kvtc_decoder_hold (the engine's pipelined restore) */
    double th[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = now_s();
        if (kvtc_decoder_hold(d, s, sn, 0, 0)) return 1;
        th[i] = now_s() - t0;
    }
    qsort(th, REPS, sizeof th[0], cmp_d);
    double sum_h = 0;
    for (uint32_t l = 0; l < g->n_layers; l++) {
        kvtc_decode_range_init(&rg);
        rg.layer_begin = l;
        rg.layer_end = l + 1;
        sum_h += time_decode(d, s, sn, &in, &rg);
    }
    kvtc_decoder_release(d);
    printf("%-28s %10.2f %10.3f\n", "hold (inflate all chunks)", 1e3 * th[REPS / 2], th[REPS / 2] / full);
    printf("%-28s %10.2f %10.3f %10.3f\n", "one layer after hold (mean)", 1e3 * sum_h / g->n_layers,
           sum_h / g->n_layers / full, 1.0 / g->n_layers);
    free(s);
    free(big.k); free(big.v);
    kvtc_encoder_free(e);
    kvtc_decoder_free(d);
    kvtc_basis_free(b);
    cache_file_free(&cf);
    free(cb); free(bb);
    return 0;
}
