/* bench_append.c - cost and ratio of kvtc_append (issue 11) on the CPU:
 *
 *   bench_append CACHE.safetensors BASIS.safetensors RATIO TILES CHUNK [rans]
 *
 * The cache is tiled TILES times along the tokens (2048 x 4 = 8192 tokens
 * from a captured window, each tile with the window's own positions so that
 * the keys' RoPE is undone right) and coded with chunks of CHUNK tokens, one
 * codec thread (run with OPENBLAS_NUM_THREADS=1).
 *
 * 1. Cost: the last m tokens appended to a stream of the rest, for m = 1,
 *    CHUNK, 4 CHUNK, against "one chunk's encode" = a full encode of all
 *    the tokens / its chunks, and against the encode of a stream of one
 *    chunk (n_sink + CHUNK + n_window tokens: the same small GEMMs as the
 *    append's). The full encode, the one-chunk encode and the append
 *    alternate REPS times, so a change of machine load hits all three;
 *    printed: the median append time and the median of the per-round
 *    ratios (min-max). Also whether the appended stream has the bytes of
 *    the direct encode.
 * 2. Ratio: the stream grown from its first 1024 tokens by appends of
 *    STEP tokens (STEP = 1, 16, 64, CHUNK) against the direct encode:
 *    size and relative squared error of the decoded coded tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_tile.h"
#include "io/cache_file.h"
#include "kvtc.h"
#include "util/half.h"

#define REPS 11

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof v[0], cmp_d);
    return v[n / 2];
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

static void die(const char *what, kvtc_result r) {
    fprintf(stderr, "%s: %s\n", what, kvtc_result_string(r));
    exit(1);
}

/* Tokens [t0, t0+n) of the contiguous cache c as a layout (no copy). */
static kvtc_cache_layout tokens_of(const kvtc_cache *c, uint64_t t0, uint64_t n) {
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(c, &l);
    size_t row = (size_t)c->geometry.head_dim * kvtc_dtype_size(c->dtype);
    l.k.base = (uint8_t *)c->k + t0 * row;
    l.v.base = (uint8_t *)c->v + t0 * row;
    l.n_tokens = n;
    l.positions = c->positions + t0;
    return l;
}

static uint8_t *compress_tokens(kvtc_encoder *e, const kvtc_cache *c, uint64_t n, size_t *size) {
    kvtc_cache_layout l = tokens_of(c, 0, n);
    size_t cap = kvtc_compress_layout_bound(e, &l);
    uint8_t *s = malloc(cap);
    kvtc_result r = s ? kvtc_compress_layout(e, &l, s, cap, size) : KVTC_ERR_OUT_OF_MEMORY;
    if (r) die("compress", r);
    return s;
}

/* in (malloc'd) + tokens [t0, t0+m) of c -> the new stream (in freed). */
static uint8_t *append_tokens(kvtc_encoder *e, uint8_t *in, size_t *size, const kvtc_cache *c, uint64_t t0,
                              uint64_t m) {
    kvtc_cache_layout more = tokens_of(c, t0, m);
    size_t cap = kvtc_append_bound(e, in, *size, &more), n = 0;
    uint8_t *out = cap ? malloc(cap) : NULL;
    kvtc_result r = out ? kvtc_append(e, in, *size, &more, out, cap, &n) : KVTC_ERR_OUT_OF_MEMORY;
    if (r) die("append", r);
    free(in);
    *size = n;
    return out;
}

static double value_of(const kvtc_cache *c, const void *base, uint64_t i) {
    if (c->dtype == KVTC_DTYPE_F32) return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    return c->dtype == KVTC_DTYPE_F16 ? kvi_f16_to_f32(h) : kvi_bf16_to_f32(h);
}

/* Relative squared error of stream s's decode against c over all its
 * tokens (raw ones add 0). */
static double rel_error(const kvtc_basis *b, const uint8_t *s, size_t n, const kvtc_cache *c) {
    kvtc_decoder *d = NULL;
    kvtc_cache out = *c;
    uint64_t bytes = kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens);
    out.k = malloc(bytes);
    out.v = malloc(bytes);
    out.positions = NULL; /* not compared */
    out.token_ids = NULL;
    kvtc_result r = kvtc_decoder_alloc(b, NULL, &d);
    if (!r) r = kvtc_decompress(d, s, n, &out);
    if (r) die("decode", r);
    double err = 0, ref = 0;
    uint64_t values = bytes / kvtc_dtype_size(c->dtype);
    for (int kv = 0; kv < 2; kv++) {
        const void *x = kv ? c->v : c->k, *y = kv ? out.v : out.k;
        for (uint64_t i = 0; i < values; i++) {
            double a = value_of(c, x, i), e = value_of(c, y, i) - a;
            err += e * e;
            ref += a * a;
        }
    }
    kvtc_decoder_free(d);
    free(out.k);
    free(out.v);
    return err / ref;
}

static void bench_cost(kvtc_encoder *e, const kvtc_cache *big, uint64_t m) {
    uint64_t n = big->n_tokens, n0 = n - m;
    size_t sn = 0, hn = 0;
    uint8_t *direct = compress_tokens(e, big, n, &sn);
    kvtc_stream_info in = {.struct_size = sizeof in}, ih = {.struct_size = sizeof ih};
    uint8_t *head = compress_tokens(e, big, n0, &hn);
    kvtc_stream_get_info(direct, sn, &in);
    kvtc_stream_get_info(head, hn, &ih);
    kvtc_cache_layout more = tokens_of(big, n0, m);
    size_t cap = kvtc_append_bound(e, head, hn, &more), an = 0, cap_full = sn + sn / 2 + 4096, wn = 0;
    uint8_t *app = malloc(cap), *full = malloc(cap_full);
    kvtc_cache_layout one = tokens_of(big, 0, (uint64_t)in.n_sink + in.chunk_tokens + in.n_window);
    double ta[REPS], ratio[REPS], tf[REPS], ratio1[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = now_s();
        kvtc_result r = kvtc_compress(e, big, full, cap_full, &wn);
        tf[i] = now_s() - t0;
        if (r) die("compress", r);
        t0 = now_s();
        if ((r = kvtc_compress_layout(e, &one, full, cap_full, &wn))) die("compress", r);
        double t1 = now_s() - t0;
        t0 = now_s();
        if ((r = kvtc_append(e, head, hn, &more, app, cap, &an))) die("append", r);
        ta[i] = now_s() - t0;
        ratio[i] = ta[i] / (tf[i] / in.n_chunks);
        ratio1[i] = ta[i] / t1;
    }
    double lo = ratio[0], hi = ratio[0];
    for (int i = 1; i < REPS; i++) {
        lo = ratio[i] < lo ? ratio[i] : lo;
        hi = ratio[i] > hi ? ratio[i] : hi;
    }
    uint32_t rem = (uint32_t)(ih.n_coded_tokens % ih.chunk_tokens);
    double t_app = median(ta, REPS), t_full = median(tf, REPS), q = median(ratio, REPS), q1 = median(ratio1, REPS);
    printf("append %5llu to %llu (old partial chunk %3u tokens): %7.2f ms = %.2f chunk shares of the full encode "
           "(%.2f-%.2f; one share %.2f ms) = %.2f one-chunk encodes; %.4f of the full encode; same bytes as the "
           "direct encode: %s\n",
           (unsigned long long)m, (unsigned long long)n0, rem, 1e3 * t_app, q, lo, hi, 1e3 * t_full / in.n_chunks, q1,
           t_app / t_full, an == sn && !memcmp(app, direct, sn) ? "yes" : "no");
    free(direct); free(head); free(app); free(full);
}

static void bench_growth(kvtc_encoder *e, const kvtc_basis *b, const kvtc_cache *big, uint64_t step,
                         size_t direct_size, double direct_err) {
    uint64_t n = big->n_tokens, t = 1024;
    size_t sz = 0;
    uint8_t *s = compress_tokens(e, big, t, &sz);
    uint32_t appends = 0;
    double t0 = now_s();
    for (; t < n; t += step, appends++) s = append_tokens(e, s, &sz, big, t, n - t < step ? n - t : step);
    double dt = now_s() - t0;
    double err = rel_error(b, s, sz, big);
    printf("grown by %4u appends of %4llu: %zu bytes (%+.3f%% vs direct), rel. error %.5g (%+.3f%%), "
           "%.2f ms per append\n",
           appends, (unsigned long long)step, sz, 100.0 * ((double)sz / (double)direct_size - 1), err,
           100.0 * (err / direct_err - 1), 1e3 * dt / appends);
    free(s);
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: bench_append CACHE BASIS RATIO TILES CHUNK [rans]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they are measured */
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
    if (bench_tile_cache(&cf.cache, tiles, 1, &big)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    uint64_t n = big.n_tokens;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = atof(argv[3]);
    eo.chunk_tokens = (uint32_t)atoi(argv[5]);
    if (argc == 7 && !strcmp(argv[6], "rans")) eo.entropy_codec = KVTC_CODEC_RANS;
    kvtc_encoder *e = NULL;
    kvtc_result r = kvtc_encoder_alloc(b, &eo, &e);
    if (r) die("encoder", r);
    size_t sn = 0;
    uint8_t *direct = compress_tokens(e, &big, n, &sn);
    double direct_err = rel_error(b, direct, sn, &big);
    printf("%llu tokens, %u layers, chunks of %u, %s, ratio %g: direct encode %zu bytes, rel. error %.5g\n",
           (unsigned long long)n, big.geometry.n_layers, eo.chunk_tokens, argc == 7 ? argv[6] : "deflate", eo.ratio, sn,
           direct_err);
    const uint64_t ms[] = {1, eo.chunk_tokens, 4ull * eo.chunk_tokens};
    for (int i = 0; i < 3; i++) bench_cost(e, &big, ms[i]);
    const uint64_t steps[] = {1, 16, 64, eo.chunk_tokens};
    for (int i = 0; i < 4; i++) bench_growth(e, b, &big, steps[i], sn, direct_err);
    free(direct);
    free(big.positions);
    free(big.k);
    free(big.v);
    kvtc_encoder_free(e);
    kvtc_basis_free(b);
    cache_file_free(&cf);
    free(cb);
    free(bb);
    return 0;
}
