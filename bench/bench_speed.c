/* bench_speed.c - one codec direction, many repetitions, for A/B runs of the
 * CPU codec on a shared machine (issue 15; bench/speed_ab.sh builds it
 * against two library versions and interleaves them):
 *   bench_speed enc|dec CACHE.safetensors BASIS.safetensors RATIO REPS [CODEC]
 * DEFLATE (or CODEC 2: rANS), 2 worker threads. Prints the median of REPS
 * timed runs (after one warm-up) as MB/s of fp16 K+V, the fastest and
 * slowest run, and the CPU time per run (user + system of the process, all
 * threads): wall time shows what a user sees, CPU time the work done, which
 * a loaded machine disturbs less. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "io/cache_file.h"
#include "kvtc.h"

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = len > 0 ? malloc((size_t)len) : NULL;
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 6 || (strcmp(argv[1], "enc") && strcmp(argv[1], "dec"))) {
        fprintf(stderr, "usage: bench_speed enc|dec CACHE BASIS RATIO REPS [CODEC]\n");
        return 2;
    }
    int enc = !strcmp(argv[1], "enc"), reps = atoi(argv[5]);
    if (reps < 1) reps = 1;
    size_t cn, bn;
    void *cb = read_all(argv[2], &cn), *bb = read_all(argv[3], &bn);
    cache_file cf;
    kvtc_basis *basis;
    if (!cb || !bb || cache_file_parse(cb, cn, &cf) || kvtc_basis_load(bb, bn, &basis)) {
        fprintf(stderr, "bench_speed: cannot load %s / %s\n", argv[2], argv[3]);
        return 1;
    }
    const kvtc_cache *c = &cf.cache;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = atof(argv[4]);
    eo.n_threads = 2;
    if (argc > 6) eo.entropy_codec = (uint32_t)atoi(argv[6]);
    kvtc_decode_options dop;
    kvtc_decode_options_init(&dop);
    dop.n_threads = 2;
    kvtc_encoder *e;
    kvtc_decoder *d;
    if (kvtc_encoder_alloc(basis, &eo, &e) || kvtc_decoder_alloc(basis, &dop, &d)) return 1;
    size_t cap = kvtc_compress_bound(e, c), size = 0;
    uint8_t *out = malloc(cap);
    cache_file back;
    if (!out || cache_file_alloc(&back, &c->geometry, c->dtype, c->n_tokens, 0, c->token_ids != NULL)) return 1;
    if (kvtc_compress(e, c, out, cap, &size) || kvtc_decompress(d, out, size, &back.cache)) return 1;
    double fp16 = 4.0 * (double)kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens) /
                  (double)kvtc_dtype_size(c->dtype);
    double *t = malloc(sizeof(double) * (size_t)reps), c0 = cpu_s();
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        kvtc_result r = enc ? kvtc_compress(e, c, out, cap, &size) : kvtc_decompress(d, out, size, &back.cache);
        t[i] = now_s() - t0;
        if (r) { fprintf(stderr, "bench_speed: %s\n", kvtc_result_string(r)); return 1; }
    }
    double cpu = (cpu_s() - c0) / reps;
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    printf("%s ratio %s: median %.0f MB/s (fastest %.0f, slowest %.0f; %d runs), CPU %.1f ms/run, %zu bytes\n",
           argv[1], argv[4], fp16 / t[reps / 2] / 1e6, fp16 / t[0] / 1e6, fp16 / t[reps - 1] / 1e6, reps, cpu * 1e3,
           size);
    free(t);
    free(out);
    cache_file_free(&back);
    kvtc_encoder_free(e);
    kvtc_decoder_free(d);
    kvtc_basis_free(basis);
    cache_file_free(&cf);
    free(cb);
    free(bb);
    return 0;
}
