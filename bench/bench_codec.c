/* bench_codec.c - CPU throughput and calibration time of libkvtc, next to
 * the floors a user would compare with: libdeflate alone on the raw fp16
 * cache, and the GEMM rate OpenBLAS reaches on this machine.
 *
 *   bench_codec codec CACHE.safetensors BASIS.safetensors [RATIO...]
 *   bench_codec calib P N_TOKENS [exact|randomized]
 *   bench_codec gemm
 *
 * Throughput is fp16 KV bytes of the whole cache per second (K and V),
 * median of 5 runs after a warm-up. */
#include <cblas.h>
#include <libdeflate.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/cache_file.h"
#include "util/rng.h"
#include "util/cache.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define REPS 5
static double median(double *t) {
    qsort(t, REPS, sizeof(double), cmp_d);
    return t[REPS / 2];
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

static void bench_gemm(void) {
    int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.2f; }
    double t[REPS];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t[r] = now_s() - t0;
    }
    printf("sgemm %dx%dx%d: %.1f GFLOP/s\n", n, n, n, 2.0 * n * n * n / median(t) / 1e9);
    free(a); free(b); free(c);
}

static int bench_codec(const char *cache_path, const char *basis_path, int nr, char **ratios) {
    size_t cn, bn;
    void *cbuf = read_all(cache_path, &cn), *bbuf = read_all(basis_path, &bn);
    cache_file cf;
    kvtc_basis *basis;
    if (!cbuf || !bbuf || cache_file_parse(cbuf, cn, &cf) || kvtc_basis_load(bbuf, bn, &basis)) {
        fprintf(stderr, "bench_codec: cannot load %s / %s\n", cache_path, basis_path);
        return 1;
    }
    const kvtc_cache *c = &cf.cache;
    size_t tensor = (size_t)kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens);
    double fp16_bytes = 2.0 * (double)tensor / kvtc_dtype_size(c->dtype) * 2.0;
    printf("cache %s: %u layers x %u heads x %llu tokens x %u dims, %.2f MB fp16 (K+V)\n", cache_path,
           c->geometry.n_layers, c->geometry.n_kv_heads, (unsigned long long)c->n_tokens, c->geometry.head_dim,
           fp16_bytes / 1e6);

    /* libdeflate alone on the raw cache bytes (K then V) */
    uint8_t *raw = malloc(2 * tensor);
    memcpy(raw, c->k, tensor);
    memcpy(raw + tensor, c->v, tensor);
    for (int level = 1; level <= 6; level += 5) {
        struct libdeflate_compressor *z = libdeflate_alloc_compressor(level);
        struct libdeflate_decompressor *dz = libdeflate_alloc_decompressor();
        size_t cap = libdeflate_deflate_compress_bound(z, 2 * tensor), zn = 0;
        uint8_t *zb = malloc(cap), *back = malloc(2 * tensor);
        double te[REPS], td[REPS];
        for (int r = 0; r < REPS; r++) {
            double t0 = now_s();
            zn = libdeflate_deflate_compress(z, raw, 2 * tensor, zb, cap);
            te[r] = now_s() - t0;
            t0 = now_s();
            libdeflate_deflate_decompress(dz, zb, zn, back, 2 * tensor, NULL);
            td[r] = now_s() - t0;
        }
        printf("libdeflate L%d on raw cache: ratio %.3f, compress %.0f MB/s, decompress %.0f MB/s\n", level,
               (double)(2 * tensor) / (double)zn, (double)(2 * tensor) / median(te) / 1e6,
               (double)(2 * tensor) / median(td) / 1e6);
        free(zb); free(back);
        libdeflate_free_compressor(z);
        libdeflate_free_decompressor(dz);
    }
    free(raw);

    printf("%-7s %-8s %-8s %-12s %-12s %-14s %-14s\n", "ratio", "codec", "threads", "coded x", "total x",
           "encode MB/s", "decode MB/s");
    for (int ri = 0; ri < nr; ri++)
    for (uint32_t codec = KVTC_CODEC_DEFLATE; codec <= KVTC_CODEC_RANS; codec++) {
        double target = atof(ratios[ri]);
        for (uint32_t th = 1; th <= 2; th++) {
            kvtc_encode_options eo;
            kvtc_encode_options_init(&eo);
            eo.ratio = target;
            eo.n_threads = th;
            eo.entropy_codec = codec;
            kvtc_decode_options dop;
            kvtc_decode_options_init(&dop);
            dop.n_threads = th;
            kvtc_encoder *e;
            kvtc_decoder *d;
            if (kvtc_encoder_alloc(basis, &eo, &e) || kvtc_decoder_alloc(basis, &dop, &d)) return 1;
            size_t cap = kvtc_compress_bound(e, c), size = 0;
            uint8_t *out = malloc(cap);
            cache_file back;
            cache_file_alloc(&back, &c->geometry, c->dtype, c->n_tokens, 0, c->token_ids != NULL);
            double te[REPS], td[REPS];
            kvtc_compress(e, c, out, cap, &size);
            kvtc_decompress(d, out, size, &back.cache);
            for (int r = 0; r < REPS; r++) {
                double t0 = now_s();
                kvtc_result rr = kvtc_compress(e, c, out, cap, &size);
                te[r] = now_s() - t0;
                t0 = now_s();
                rr |= kvtc_decompress(d, out, size, &back.cache);
                td[r] = now_s() - t0;
                if (rr) { fprintf(stderr, "codec failed: %s\n", kvtc_result_string(rr)); return 1; }
            }
            kvtc_stream_info info = {.struct_size = sizeof info};
            kvtc_stream_get_info(out, size, &info);
            double coded16 = fp16_bytes * (double)info.n_coded_tokens / (double)info.n_tokens;
            printf("%-7g %-8s %-8u %-12.2f %-12.2f %-14.1f %-14.1f\n", target,
                   codec == KVTC_CODEC_RANS ? "rans" : "deflate", th, coded16 / (double)info.coded_bytes,
                   fp16_bytes / (double)size, fp16_bytes / median(te) / 1e6, fp16_bytes / median(td) / 1e6);
            free(out);
            cache_file_free(&back);
            kvtc_encoder_free(e);
            kvtc_decoder_free(d);
        }
    }
    kvtc_basis_free(basis);
    cache_file_free(&cf);
    free(cbuf);
    free(bbuf);
    return 0;
}

/* Synthetic correlated rows: a latent of rank 256 with a power-law spectrum,
 * mixed into p coordinates, plus isotropic noise at 1% of the variance. */
static int bench_calib(uint32_t p, uint64_t n, const char *method) {
    kvtc_geometry g = {0};
    g.head_dim = 128;
    g.n_kv_heads = p >= 1024 ? 8 : 1;
    g.n_layers = p / (g.head_dim * g.n_kv_heads);
    if (!g.n_layers || g.n_layers * g.n_kv_heads * g.head_dim != p) { fprintf(stderr, "P must be a multiple of 1024\n"); return 1; }
    g.rope_type = KVTC_ROPE_NORM;
    g.rope_theta = 10000;
    uint32_t r = 256;
    uint64_t T = n + 4 + 128;
    cache_file cf;
    if (cache_file_alloc(&cf, &g, KVTC_DTYPE_F16, T, 0, 0)) { fprintf(stderr, "out of memory\n"); return 1; }
    float *z = malloc(sizeof(float) * T * r), *a = malloc(sizeof(float) * (size_t)r * p), *x = malloc(sizeof(float) * T * 1024);
    kvi_rng rng = {7};
    for (uint32_t i = 0; i < r; i++)
        for (uint32_t j = 0; j < p; j++) a[(size_t)i * p + j] = (float)(kvi_rng_gauss(&rng) / sqrt(p));
    for (uint64_t t = 0; t < T; t++)
        for (uint32_t i = 0; i < r; i++) z[t * r + i] = (float)(kvi_rng_gauss(&rng) * 8.0 / pow(1.0 + i, 0.7));
    /* fill K and V in column blocks of 1024 coordinates */
    for (int s = 0; s < 2; s++) {
        void *dst = s ? cf.cache.v : cf.cache.k;
        for (uint32_t c0 = 0; c0 < p; c0 += 1024) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, 1024, (int)r, 1.0f, z, (int)r, a + c0, (int)p,
                        0.0f, x, 1024);
            for (uint64_t t = 0; t < T; t++)
                for (uint32_t j = 0; j < 1024; j++) {
                    uint32_t col = c0 + j, lh = col / g.head_dim, dd = col % g.head_dim;
                    kvi_store_elem(dst, KVTC_DTYPE_F16, ((uint64_t)lh * T + t) * g.head_dim + dd,
                                    x[t * 1024 + j] + (float)(0.1 * kvi_rng_gauss(&rng)));
                }
        }
    }
    free(z); free(a); free(x);
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    o.pca_method = !strcmp(method, "exact") ? KVTC_PCA_EXACT : !strcmp(method, "randomized") ? KVTC_PCA_RANDOMIZED : KVTC_PCA_AUTO;
    o.max_tokens = n;
    kvtc_calibrator *cal;
    kvtc_basis *b;
    double ratios[] = {8, 16, 32, 64};
    double t0 = now_s();
    if (kvtc_calibrator_alloc(&g, &o, &cal) || kvtc_calibrator_add(cal, &cf.cache)) return 1;
    double t1 = now_s();
    kvtc_result res = kvtc_calibrator_finish(cal, ratios, 4, &b);
    double t2 = now_s();
    if (res) { fprintf(stderr, "calibration failed: %s\n", kvtc_result_string(res)); return 1; }
    kvtc_plan_info pi = {.struct_size = sizeof pi};
    kvtc_basis_plan_info(b, 1, &pi);
    printf("calibrate p=%u n=%llu method=%s: add %.2f s, PCA+DP %.2f s, total %.2f s (plan 16x: rank K %u V %u)\n", p,
           (unsigned long long)n, method, t1 - t0, t2 - t1, t2 - t0, pi.rank_k, pi.rank_v);
    kvtc_basis_free(b);
    kvtc_calibrator_free(cal);
    cache_file_free(&cf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "gemm")) { bench_gemm(); return 0; }
    if (argc >= 4 && !strcmp(argv[1], "codec")) {
        static char *dflt[] = {"8", "16", "32", "64"};
        return argc > 4 ? bench_codec(argv[2], argv[3], argc - 4, argv + 4) : bench_codec(argv[2], argv[3], 4, dflt);
    }
    if (argc >= 4 && !strcmp(argv[1], "calib"))
        return bench_calib((uint32_t)atoi(argv[2]), (uint64_t)atoll(argv[3]), argc > 4 ? argv[4] : "auto");
    fprintf(stderr, "usage: bench_codec gemm | codec CACHE BASIS [RATIO...] | calib P N [auto|exact|randomized]\n");
    return 2;
}
