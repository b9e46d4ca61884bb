/* bench_store.c - restore throughput and latency of the kvtc store
 * (lookup + get + decode into a layout), KVTC codec against the raw codec,
 * on the file: backend and on Redis.
 *
 *   bench_store URI [--tokens N] [--caches M] [--restores R] [--ratio X] [--threads T] [--chunk C]
 *               [--layers L --heads H --head-dim D] [--paper RANK] [--rans] [--no-raw] [--no-kvtc] [--gpu] [--no-host]
 *
 * Default caches are synthetic (tests/synth.h: a low-rank correlated model,
 * RoPE applied) at the bundled model's geometry (8 layers x 2 KV heads x
 * 64, fp16); the basis is calibrated on 4 other caches of the same
 * synthetic model. --paper RANK: the 12B geometry instead (40 layers x 8 KV
 * heads x 128, bf16, NEOX RoPE at theta 1e6) with the basis and generator
 * of the CUDA benchmark (bench/cuda/bench_synth.c: exact eigenvectors of a
 * rank-RANK generator, plan at ratio 16 unless --ratio). --rans: records
 * coded with rANS (what the GPU decodes) instead of DEFLATE.
 * M caches of N tokens with distinct token ids are put, then R restores
 * cycle through them, into each destination:
 *   host contiguous  a kvtc_cache ([L][H][N][d]);
 *   host vLLM NHD    a paged pool, blocks of 16 in shuffled order
 *                    (kvtc_store_get_layout);
 * (--no-host skips these two: a CPU decode at the 12B geometry takes
 * tens of seconds per restore) and with --gpu (the kvtc_cuda_store_bench
 * build only):
 *   GPU contiguous / GPU vLLM NHD   kvtc_cuda_store_get (KVTC codec);
 *   host + H2D                      raw codec: host get, then cudaMemcpy.
 * Each codec uses a fresh namespace (the model name carries the process id
 * and time), so earlier runs against the same store do not count. GB/s
 * counts the K+V bytes restored (store dtype). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tests/synth.h"
#include "cuda/bench_synth.h"
#include "kvtc_store.h"
#include "util/half.h"
#ifdef BENCH_STORE_GPU
#include <cuda_runtime.h>

#include "kvtc_cuda.h"
#endif

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
    int caches, restores, threads, rans, no_raw, no_kvtc, gpu;
    double ratio;
    uint32_t chunk;
    int no_host;
} cfg;

/* ---- destinations ---------------------------------------------------------- */

enum { DEST_HOST, DEST_HOST_PAGED, DEST_GPU, DEST_GPU_PAGED, DEST_HOST_H2D, N_DEST };
static const char *dest_name[N_DEST] = {"host contiguous", "host vLLM NHD", "GPU contiguous", "GPU vLLM NHD",
                                        "host + H2D"};
#define PAGE 16u

/* A destination of N tokens: contiguous [L][H][N][d] or a vLLM NHD pool
 * ([B][16][H][d] per layer, B = N/16 + 3, shuffled table), in host or
 * device memory. */
typedef struct dest {
    kvtc_cache_layout lay;
    kvtc_cache cache;       /* host contiguous */
    void *mem[2];
    void **kl, **vl;
    int32_t *table, *d_table;
    int on_gpu;
} dest;

static void *dest_malloc(size_t n, int gpu) {
    void *p = NULL;
#ifdef BENCH_STORE_GPU
    if (gpu) return cudaMalloc(&p, n) == cudaSuccess ? p : NULL;
#else
    (void)gpu;
#endif
    p = malloc(n);
    if (p) memset(p, 0, n); /* touch the pages: restores time decoding, not page faults */
    return p;
}

static void dest_mfree(void *p, int gpu) {
#ifdef BENCH_STORE_GPU
    if (gpu) { cudaFree(p); return; }
#else
    (void)gpu;
#endif
    free(p);
}

static int dest_init(dest *d, const kvtc_geometry *g, kvtc_dtype dt, uint64_t n, int paged, int gpu) {
    memset(d, 0, sizeof *d);
    d->on_gpu = gpu;
    size_t es = kvtc_dtype_size(dt);
    uint32_t H = g->n_kv_heads, D = g->head_dim, L = g->n_layers;
    if (!paged) {
        size_t bytes = (size_t)kvtc_cache_tensor_bytes(g, dt, n);
        d->mem[0] = dest_malloc(bytes, gpu);
        d->mem[1] = dest_malloc(bytes, gpu);
        if (!d->mem[0] || !d->mem[1]) return -1;
        kvtc_cache c = {*g, dt, n, d->mem[0], d->mem[1], NULL, NULL};
        d->cache = c;
        kvtc_cache_layout_from_cache(&c, &d->lay);
        return 0;
    }
    uint64_t nb = (n + PAGE - 1) / PAGE, pool = nb + 3, layer = pool * PAGE * H * D;
    d->kl = calloc(L, sizeof(void *));
    d->vl = calloc(L, sizeof(void *));
    d->table = malloc(sizeof(int32_t) * nb);
    if (!d->kl || !d->vl || !d->table) return -1;
    d->mem[0] = dest_malloc(es * layer * L, gpu);
    d->mem[1] = dest_malloc(es * layer * L, gpu);
    if (!d->mem[0] || !d->mem[1]) return -1;
    for (uint32_t l = 0; l < L; l++) {
        d->kl[l] = (char *)d->mem[0] + es * layer * l;
        d->vl[l] = (char *)d->mem[1] + es * layer * l;
    }
    /* blocks in a shuffled order, as a serving engine's allocator leaves them */
    int32_t *perm = malloc(sizeof(int32_t) * pool);
    if (!perm) return -1;
    for (uint64_t i = 0; i < pool; i++) perm[i] = (int32_t)i;
    synth_rng r = {12345};
    for (uint64_t i = pool - 1; i > 0; i--) {
        uint64_t j = synth_next(&r) % (i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(d->table, perm, sizeof(int32_t) * nb);
    free(perm);
    kvtc_tensor_layout k = {(void *const *)d->kl, NULL, 0, (int64_t)H * D, D, 1, (int64_t)PAGE * H * D}, v = k;
    v.layers = (void *const *)d->vl;
    d->lay.geometry = *g;
    d->lay.dtype = dt;
    d->lay.n_tokens = n;
    d->lay.k = k;
    d->lay.v = v;
    d->lay.block_size = PAGE;
    d->lay.n_pool_blocks = pool;
    d->lay.block_table = d->table;
#ifdef BENCH_STORE_GPU
    if (gpu) {
        if (cudaMalloc((void **)&d->d_table, sizeof(int32_t) * nb) != cudaSuccess) return -1;
        cudaMemcpy(d->d_table, d->table, sizeof(int32_t) * nb, cudaMemcpyHostToDevice);
        d->lay.block_table = d->d_table;
    }
#endif
    return 0;
}

static void dest_free(dest *d) {
    dest_mfree(d->mem[0], d->on_gpu);
    dest_mfree(d->mem[1], d->on_gpu);
#ifdef BENCH_STORE_GPU
    cudaFree(d->d_table);
#endif
    free(d->kl);
    free(d->vl);
    free(d->table);
}

/* ||a - b|| / ||b|| of two caches of the same shape (16-bit dtypes) */
static double rel_err(const kvtc_cache *a, const kvtc_cache *b) {
    uint64_t n = kvtc_cache_tensor_bytes(&b->geometry, b->dtype, b->n_tokens) / 2;
    double e = 0, r = 0;
    for (int s = 0; s < 2; s++) {
        const uint16_t *x = s ? a->v : a->k, *y = s ? b->v : b->k;
        for (uint64_t i = 0; i < n; i++) {
            double u = b->dtype == KVTC_DTYPE_BF16 ? kvi_bf16_to_f32(x[i]) : kvi_f16_to_f32(x[i]);
            double w = b->dtype == KVTC_DTYPE_BF16 ? kvi_bf16_to_f32(y[i]) : kvi_f16_to_f32(y[i]);
            e += (u - w) * (u - w);
            r += w * w;
        }
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

/* ---- one codec ------------------------------------------------------------- */

typedef struct run_ctx {
    const cfg *c;
    kvtc_store *s;
    int32_t *const *tokens;
    uint64_t raw_bytes;
#ifdef BENCH_STORE_GPU
    kvtc_cuda_codec *cc;
    cudaStream_t stream;
#endif
} run_ctx;

/* One restore of cache j into d: lookup + get (+ H2D); 0 when all came back. */
static int restore_once(run_ctx *x, int j, int kind, dest *d, dest *host, double *lookup_s) {
    const cfg *c = x->c;
    uint64_t hit = 0, got = 0;
    double a = now_s();
    kvtc_result r = kvtc_store_lookup(x->s, x->tokens[j], c->tokens, &hit);
    *lookup_s = now_s() - a;
    if (r || hit != c->tokens) return -1;
    if (kind == DEST_HOST || kind == DEST_HOST_PAGED) {
        kvtc_store_layout l = {.struct_size = sizeof l, .kind = KVTC_STORE_LAYOUT_CONTIGUOUS, .cache = &d->cache};
        r = kind == DEST_HOST ? kvtc_store_get(x->s, x->tokens[j], c->tokens, &l, &got)
                              : kvtc_store_get_layout(x->s, x->tokens[j], c->tokens, &d->lay, &got);
    }
#ifdef BENCH_STORE_GPU
    else if (kind == DEST_HOST_H2D) {
        kvtc_store_layout l = {.struct_size = sizeof l, .kind = KVTC_STORE_LAYOUT_CONTIGUOUS, .cache = &host->cache};
        r = kvtc_store_get(x->s, x->tokens[j], c->tokens, &l, &got);
        size_t half = (size_t)x->raw_bytes / 2;
        if (!r && (cudaMemcpy(d->mem[0], host->mem[0], half, cudaMemcpyHostToDevice) ||
                   cudaMemcpy(d->mem[1], host->mem[1], half, cudaMemcpyHostToDevice)))
            r = KVTC_ERR_CUDA;
    } else {
        r = kvtc_cuda_store_get(x->cc, x->s, x->tokens[j], c->tokens, &d->lay, x->stream, &got);
    }
#else
    (void)host;
#endif
    if (r) fprintf(stderr, "restore into %s: %s\n", dest_name[kind], kvtc_result_string(r));
    return r || got != c->tokens ? -1 : 0;
}

static int run_dest(run_ctx *x, int kind, const char *label, double bytes_per_token, double put_mbs,
                    const synth_cache *data) {
    const cfg *c = x->c;
    const kvtc_geometry *g = &data[0].c.geometry;
    kvtc_dtype dt = data[0].c.dtype;
    dest d, host;
    memset(&host, 0, sizeof host);
    int gpu = kind == DEST_GPU || kind == DEST_GPU_PAGED || kind == DEST_HOST_H2D;
    int paged = kind == DEST_HOST_PAGED || kind == DEST_GPU_PAGED;
    if (dest_init(&d, g, dt, c->tokens, paged, gpu) ||
        (kind == DEST_HOST_H2D && dest_init(&host, g, dt, c->tokens, 0, 0))) {
        fprintf(stderr, "out of memory for %s\n", dest_name[kind]);
        dest_free(&d);
        dest_free(&host);
        return 1;
    }
    int R = c->restores, bad = 0;
    if (!gpu && c->gpu && R > 2) R = 2; /* in a GPU run the CPU rows are a comparison (a 12B CPU decode takes ~25 s) */
    double *lat = malloc(sizeof(double) * (size_t)R), *look = malloc(sizeof(double) * (size_t)R), l0 = 0;
    for (int i = -1; i < R; i++) { /* i = -1: warm-up */
        int j = (i < 0 ? 0 : i) % c->caches;
        double a = now_s();
        if (restore_once(x, j, kind, &d, &host, i < 0 ? &l0 : &look[i])) bad++;
        if (i >= 0) lat[i] = now_s() - a;
    }
    /* accuracy of the last restore (cache (R-1) % M) against what was put */
    const kvtc_cache *orig = &data[(R - 1) % c->caches].c;
    kvtc_cache back = {*g, dt, c->tokens, NULL, NULL, NULL, NULL};
    double err = -1;
    if (kind == DEST_HOST) {
        back.k = d.mem[0];
        back.v = d.mem[1];
        err = rel_err(&back, orig);
    }
#ifdef BENCH_STORE_GPU
    else if (kind == DEST_GPU) {
        size_t half = (size_t)x->raw_bytes / 2;
        back.k = malloc(half);
        back.v = malloc(half);
        if (back.k && back.v && !cudaMemcpy(back.k, d.mem[0], half, cudaMemcpyDeviceToHost) &&
            !cudaMemcpy(back.v, d.mem[1], half, cudaMemcpyDeviceToHost))
            err = rel_err(&back, orig);
        free(back.k);
        free(back.v);
    }
#endif
    qsort(lat, (size_t)R, sizeof(double), cmp_d);
    qsort(look, (size_t)R, sizeof(double), cmp_d);
    double mean = 0;
    for (int i = 0; i < R; i++) mean += lat[i];
    mean /= R;
    double cache_bytes = bytes_per_token * (double)c->tokens;
    char errs[32] = "-";
    if (err >= 0) snprintf(errs, sizeof errs, "%.4f", err);
    printf("| %s | %s | %s | %.1f | %.0f | %.2f | %.3f | %.1f | %.1f | %.2f | %.1f | %s |%s\n", c->uri, label,
           dest_name[kind], bytes_per_token, 1e9 / cache_bytes, (double)x->raw_bytes / cache_bytes,
           (double)x->raw_bytes / mean / 1e9, 1e3 * pct(lat, R, 0.5), 1e3 * pct(lat, R, 0.99), 1e3 * pct(look, R, 0.5),
           put_mbs, errs, bad ? " RESTORE FAILURES" : "");
    fflush(stdout);
    free(lat);
    free(look);
    dest_free(&d);
    dest_free(&host);
    return bad ? 1 : 0;
}

static int run_codec(const cfg *c, uint32_t codec, const kvtc_basis *basis, const synth_cache *data,
                     int32_t **tokens, const char *label) {
    const kvtc_geometry *g = &data[0].c.geometry;
    kvtc_dtype dt = data[0].c.dtype;
    kvtc_store_options o;
    kvtc_store_options_init(&o);
    o.codec = codec;
    o.chunk_tokens = c->chunk;
    o.ratio = c->ratio;
    o.n_threads = (uint32_t)c->threads;
    o.timeout_ms = 60000;
    o.entropy_codec = c->rans ? KVTC_CODEC_RANS : KVTC_CODEC_DEFLATE;
    char name[96];
    snprintf(name, sizeof name, "bench-%ld-%ld-%u", (long)getpid(), (long)time(NULL), codec);
    o.model_name = name;
    run_ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.tokens = tokens;
    kvtc_result r = kvtc_store_open(c->uri, basis, g, dt, &o, &x.s);
    if (r) { fprintf(stderr, "open %s: %s\n", c->uri, kvtc_result_string(r)); return 1; }
    double t0 = now_s();
    for (int i = 0; i < c->caches; i++)
        if ((r = kvtc_store_put(x.s, tokens[i], c->tokens, &data[i].c, NULL))) {
            fprintf(stderr, "put: %s\n", kvtc_result_string(r));
            kvtc_store_close(x.s);
            return 1;
        }
    double put_s = now_s() - t0;
    kvtc_store_stats st = {.struct_size = sizeof st};
    kvtc_store_stats_get(x.s, &st);
    x.raw_bytes = 2 * kvtc_cache_tensor_bytes(g, dt, c->tokens);
    double bytes_per_token = (double)st.bytes_written / (double)(c->tokens * (uint64_t)c->caches);
    double put_mbs = (double)x.raw_bytes * c->caches / put_s / 1e6;
    int fail = 0;
    if (!c->no_host) {
        fail |= run_dest(&x, DEST_HOST, label, bytes_per_token, put_mbs, data);
        fail |= run_dest(&x, DEST_HOST_PAGED, label, bytes_per_token, put_mbs, data);
    }
#ifdef BENCH_STORE_GPU
    if (c->gpu) {
        cudaStreamCreate(&x.stream);
        if (codec == KVTC_STORE_CODEC_KVTC) {
            kvtc_cuda_options co;
            kvtc_cuda_options_init(&co);
            co.ratio = c->ratio;
            if ((r = kvtc_cuda_codec_alloc(basis, &co, &x.cc))) {
                fprintf(stderr, "GPU codec: %s\n", kvtc_result_string(r));
                fail = 1;
            } else {
                fail |= run_dest(&x, DEST_GPU, label, bytes_per_token, put_mbs, data);
                fail |= run_dest(&x, DEST_GPU_PAGED, label, bytes_per_token, put_mbs, data);
                kvtc_cuda_codec_free(x.cc);
            }
        } else {
            fail |= run_dest(&x, DEST_HOST_H2D, label, bytes_per_token, put_mbs, data);
        }
        cudaStreamDestroy(x.stream);
    }
#endif
    /* leave the store as it was */
    for (int i = 0; i < c->caches; i++) kvtc_store_delete(x.s, tokens[i], c->tokens);
    kvtc_store_close(x.s);
    return fail;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_store URI [--tokens N] [--caches M] [--restores R] [--ratio X] [--threads T] "
                        "[--chunk C] [--layers L --heads H --head-dim D] [--paper RANK] [--rans] [--no-raw] [--no-kvtc] [--gpu] [--no-host]\n");
        return 2;
    }
    cfg c = {argv[1], 8192, 4, 20, 2, 0, 0, 0, 0, 0.0, 256, 0};
    uint32_t L = 8, H = 2, D = 64, paper = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--rans")) { c.rans = 1; continue; }
        if (!strcmp(a, "--no-raw")) { c.no_raw = 1; continue; }
        if (!strcmp(a, "--no-kvtc")) { c.no_kvtc = 1; continue; }
        if (!strcmp(a, "--gpu")) { c.gpu = 1; continue; }
        if (!strcmp(a, "--no-host")) { c.no_host = 1; continue; }
        if (!v) { fprintf(stderr, "%s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--tokens")) c.tokens = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--caches")) c.caches = atoi(v);
        else if (!strcmp(a, "--restores")) c.restores = atoi(v);
        else if (!strcmp(a, "--ratio")) c.ratio = atof(v);
        else if (!strcmp(a, "--threads")) c.threads = atoi(v);
        else if (!strcmp(a, "--chunk")) c.chunk = (uint32_t)atoi(v);
        else if (!strcmp(a, "--layers")) L = (uint32_t)atoi(v);
        else if (!strcmp(a, "--heads")) H = (uint32_t)atoi(v);
        else if (!strcmp(a, "--head-dim")) D = (uint32_t)atoi(v);
        else if (!strcmp(a, "--paper")) paper = (uint32_t)atoi(v);
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
#ifndef BENCH_STORE_GPU
    if (c.gpu) { fprintf(stderr, "--gpu: use kvtc_cuda_store_bench (the CUDA build)\n"); return 2; }
#endif
    if (c.ratio == 0) c.ratio = paper ? 16.0 : 20.0;
    if (c.tokens < c.chunk || c.caches < 1 || c.restores < 1 || c.threads < 1) return 2;
    openblas_set_num_threads(1); /* the codec's threads parallelize (see cmd_codec.c) */

    kvtc_basis *basis = NULL;
    synth_cache *data = calloc((size_t)c.caches, sizeof *data);
    int32_t **tokens = calloc((size_t)c.caches, sizeof *tokens);
    double t0 = now_s();
    if (paper) {
        /* the 12B geometry: basis and generator of the CUDA benchmark */
        kvtc_geometry g;
        memset(&g, 0, sizeof g);
        g.n_layers = 40;
        g.n_kv_heads = 8;
        g.head_dim = 128;
        g.rope_type = KVTC_ROPE_NEOX;
        g.rope_theta = 1e6f;
        float *lambda = malloc(sizeof(float) * paper);
        double sigma2 = 0;
        basis = lambda ? bs_paper_basis(&g, paper, 1.0, 0.5, c.ratio, lambda, &sigma2) : NULL;
        if (!basis) { fprintf(stderr, "paper basis (rank %u)\n", paper); return 1; }
        for (int i = 0; i < c.caches; i++)
            if (bs_paper_cache_host(basis, lambda, sigma2, c.tokens, 1 + (uint64_t)i, (uint32_t)c.threads, &data[i].c)) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
        free(lambda);
        fprintf(stderr, "12B geometry: basis rank %u and %d caches made in %.1f s\n", paper, c.caches, now_s() - t0);
    } else {
        kvtc_geometry g = synth_geometry(L, H, D, KVTC_ROPE_NORM, 0, 10000.0f);
        synth_params sp;
        synth_params_init(&sp, &g, KVTC_DTYPE_F16, 4096);
        sp.rank = 32;
        const double ratios[] = {c.ratio};
        kvtc_result r = synth_calibrate(&sp, 4, 4, 0, ratios, 1, &basis);
        if (r) { fprintf(stderr, "calibrate: %s\n", kvtc_result_string(r)); return 1; }
        fprintf(stderr, "basis calibrated in %.1f s\n", now_s() - t0);
        for (int i = 0; i < c.caches; i++) {
            synth_params q = sp;
            q.n_tokens = c.tokens;
            q.data_seed = 1 + (uint64_t)i;
            if (synth_make(&q, &data[i])) { fprintf(stderr, "out of memory\n"); return 1; }
        }
    }
    for (int i = 0; i < c.caches; i++) {
        tokens[i] = malloc(sizeof(int32_t) * c.tokens);
        if (!tokens[i]) return 1;
        synth_rng rng = {(uint64_t)i * 1000003 + (uint64_t)time(NULL)};
        for (uint64_t t = 0; t < c.tokens; t++) tokens[i][t] = (int32_t)(synth_next(&rng) % 128000);
    }
    printf("| store | codec | restore into | bytes/token | caches/GB | ratio | restore GB/s | p50 ms | p99 ms | "
           "lookup p50 ms | put MB/s | rel. error |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    char label[64];
    snprintf(label, sizeof label, "kvtc @%g%s", c.ratio, c.rans ? " rANS" : "");
    int fail = c.no_kvtc ? 0 : run_codec(&c, KVTC_STORE_CODEC_KVTC, basis, data, tokens, label);
    if (!c.no_raw)
        fail |= run_codec(&c, KVTC_STORE_CODEC_RAW, NULL, data, tokens,
                          data[0].c.dtype == KVTC_DTYPE_BF16 ? "raw bf16" : "raw fp16");
    for (int i = 0; i < c.caches; i++) {
        synth_free(&data[i]);
        free(tokens[i]);
    }
    free(data);
    free(tokens);
    kvtc_basis_free(basis);
    return fail;
}
