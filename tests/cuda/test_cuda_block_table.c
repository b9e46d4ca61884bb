/* test_cuda_block_table.c - the GPU block-table check at engine scale
 * (issue 11): an SGLang-style token pool (block size 1) holding a
 * 131072-token cache through a shuffled 131072-entry table. The check used
 * to compare every pair of entries (8.6e9 comparisons: a stall); it now
 * marks a bitmap of block ids. Checked:
 *  - encode and decode through the pool run in well under a second, with
 *    status 0, the contiguous encode's bytes and its decoded values;
 *  - a repeated block at the far end, and an id == n_pool, give
 *    KVTC_ERR_BAD_BLOCK_TABLE in the device status (encode and decode);
 *  - a hostile n_pool_blocks (2^40: the check covers ids up to 2^31 in 64
 *    bitmap windows) accepts distinct ids spread over [0, 2^31) and finds
 *    repeats in the first, a middle and the last window (block_stride 0,
 *    so every id addresses the pool's first slot and reads stay in bounds).
 * Prints what failed and the times. Exits 77 (skipped) without a GPU. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

enum { N_TOK = 131072, EXTRA_SLOTS = 1000 };

typedef struct gpu_run {
    kvtc_cuda_codec *cc;
    void *d_ws, *d_out;
    uint64_t *d_w;
    uint32_t *d_status;
    size_t ws, cap;
} gpu_run;

static uint32_t read_status(const gpu_run *g) {
    uint32_t s = 99;
    cudaMemcpy(&s, g->d_status, 4, cudaMemcpyDeviceToHost);
    return s;
}

/* Encode through layout l; *status the device status, *secs the wall time
 * of the call and its completion; returns the API result (KVTC_ERR_CUDA when
 * the device reported an error). */
static kvtc_result encode_layout(gpu_run *g, const kvtc_cache_layout *l, uint32_t *status, double *secs) {
    double t0 = test_now();
    kvtc_result r = kvtc_cuda_compress_layout(g->cc, l, g->d_out, g->cap, g->d_w, g->d_ws, g->ws, g->d_status, 0);
    cudaError_t e = cudaDeviceSynchronize();
    *secs = test_now() - t0;
    *status = read_status(g);
    if (!r && e != cudaSuccess) {
        fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
        r = KVTC_ERR_CUDA;
    }
    return r;
}

static kvtc_result decode_layout(gpu_run *g, const uint8_t *s, size_t n, const void *d_s, const kvtc_cache_layout *l,
                                 uint32_t *status, double *secs) {
    double t0 = test_now();
    kvtc_result r = kvtc_cuda_decompress_layout(g->cc, s, n, d_s, n, NULL, l, g->d_ws, g->ws, g->d_status, 0);
    cudaError_t e = cudaDeviceSynchronize();
    *secs = test_now() - t0;
    *status = read_status(g);
    if (!r && e != cudaSuccess) {
        fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
        r = KVTC_ERR_CUDA;
    }
    return r;
}

/* Set table entry i (host copy and device) to id. */
static void set_entry(int32_t *table, int32_t *d_table, uint64_t i, int32_t id) {
    table[i] = id;
    cudaMemcpy(d_table + i, &table[i], 4, cudaMemcpyHostToDevice);
}

int main(void) {
    gpu_test_require_device();
    kvtc_geometry g = synth_geometry(2, 2, 32, KVTC_ROPE_NEOX, 0, 10000.0f);
    const uint32_t L = g.n_layers, H = g.n_kv_heads, d = g.head_dim;
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 2048);
    static const double ratios[] = {8};
    kvtc_basis *b = NULL;
    synth_cache sc;
    if (synth_calibrate(&sp, 2, 4, 128, ratios, 1, &b)) return 1;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    sp.data_seed = 77;
    if (synth_make(&sp, &sc)) return 1;
    kvtc_cuda_options co;
    kvtc_cuda_options_init(&co);
    co.ratio = 8;
    gpu_run gr;
    memset(&gr, 0, sizeof gr);
    CHECK(kvtc_cuda_codec_alloc(b, &co, &gr.cc) == KVTC_OK);
    if (!gr.cc) return TEST_REPORT();

    /* reference: the contiguous cache (also warms up cuBLAS and the kernels) */
    uint64_t kb = kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_F16, N_TOK);
    kvtc_cache dc = sc.c;
    dc.positions = NULL;
    dc.token_ids = NULL;
    CHECK(cudaMalloc(&dc.k, kb) == cudaSuccess && cudaMalloc(&dc.v, kb) == cudaSuccess);
    cudaMemcpy(dc.k, sc.c.k, kb, cudaMemcpyHostToDevice);
    cudaMemcpy(dc.v, sc.c.v, kb, cudaMemcpyHostToDevice);
    gr.ws = kvtc_cuda_workspace_size(gr.cc, N_TOK, 0);
    gr.cap = kvtc_cuda_compress_bound(gr.cc, &dc);
    CHECK(gr.ws && gr.cap && cudaMalloc(&gr.d_ws, gr.ws) == cudaSuccess && cudaMalloc(&gr.d_out, gr.cap) == cudaSuccess &&
          cudaMalloc((void **)&gr.d_w, 8) == cudaSuccess && cudaMalloc((void **)&gr.d_status, 4) == cudaSuccess);
    CHECK(kvtc_cuda_compress(gr.cc, &dc, gr.d_out, gr.cap, gr.d_w, gr.d_ws, gr.ws, 0) == KVTC_OK);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    uint64_t ref_n = 0;
    cudaMemcpy(&ref_n, gr.d_w, 8, cudaMemcpyDeviceToHost);
    uint8_t *ref = malloc(ref_n ? ref_n : 1), *got = malloc(ref_n ? ref_n : 1);
    cudaMemcpy(ref, gr.d_out, ref_n, cudaMemcpyDeviceToHost);
    void *d_stream = NULL;
    CHECK(cudaMalloc(&d_stream, ref_n ? ref_n : 1) == cudaSuccess);
    cudaMemcpy(d_stream, ref, ref_n, cudaMemcpyHostToDevice);
    CHECK(kvtc_cuda_decompress(gr.cc, ref, ref_n, d_stream, ref_n, &dc, gr.d_ws, gr.ws, gr.d_status, 0) == KVTC_OK);
    CHECK(cudaDeviceSynchronize() == cudaSuccess && read_status(&gr) == 0);
    uint16_t *ref_k = malloc(kb), *ref_v = malloc(kb);
    cudaMemcpy(ref_k, dc.k, kb, cudaMemcpyDeviceToHost);
    cudaMemcpy(ref_v, dc.v, kb, cudaMemcpyDeviceToHost);

    /* the pool [slots][H][d] per layer and a shuffled table of N_TOK slots */
    uint64_t n_pool = N_TOK + EXTRA_SLOTS, slot = (uint64_t)H * d, layer_elems = n_pool * slot;
    int32_t *perm = malloc(sizeof(int32_t) * n_pool);
    for (uint64_t i = 0; i < n_pool; i++) perm[i] = (int32_t)i;
    synth_rng rng = {4242};
    for (uint64_t i = n_pool - 1; i > 0; i--) {
        uint64_t j = synth_next(&rng) % (i + 1);
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    int32_t *d_table = NULL;
    uint16_t *pool_img = malloc(layer_elems * L * 2);
    void *d_pool_k = NULL, *d_pool_v = NULL;
    CHECK(cudaMalloc((void **)&d_table, sizeof(int32_t) * N_TOK) == cudaSuccess &&
          cudaMalloc(&d_pool_k, layer_elems * L * 2) == cudaSuccess &&
          cudaMalloc(&d_pool_v, layer_elems * L * 2) == cudaSuccess);
    cudaMemcpy(d_table, perm, sizeof(int32_t) * N_TOK, cudaMemcpyHostToDevice);
    for (int kv = 0; kv < 2; kv++) {
        const uint16_t *src = kv ? (const uint16_t *)sc.c.v : (const uint16_t *)sc.c.k;
        memset(pool_img, 0, layer_elems * L * 2);
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t h = 0; h < H; h++)
                for (uint64_t t = 0; t < N_TOK; t++)
                    memcpy(pool_img + l * layer_elems + (uint64_t)perm[t] * slot + (uint64_t)h * d,
                           src + (((uint64_t)l * H + h) * N_TOK + t) * d, 2 * d);
        cudaMemcpy(kv ? d_pool_v : d_pool_k, pool_img, layer_elems * L * 2, cudaMemcpyHostToDevice);
    }
    kvtc_cache_layout pl;
    memset(&pl, 0, sizeof pl);
    pl.geometry = g;
    pl.dtype = KVTC_DTYPE_F16;
    pl.n_tokens = N_TOK;
    kvtc_tensor_layout t = {NULL, NULL, (int64_t)layer_elems, (int64_t)slot, (int64_t)d, 1, (int64_t)slot};
    pl.k = t;
    pl.v = t;
    pl.k.base = d_pool_k;
    pl.v.base = d_pool_v;
    pl.block_size = 1;
    pl.block_table = d_table;
    pl.n_pool_blocks = n_pool;

    /* 1. a valid 131072-entry table: fast, the contiguous bytes and values */
    uint32_t st = 99;
    double secs = 0;
    kvtc_result r = encode_layout(&gr, &pl, &st, &secs);
    uint64_t n = 0;
    cudaMemcpy(&n, gr.d_w, 8, cudaMemcpyDeviceToHost);
    int same = n == ref_n && cudaMemcpy(got, gr.d_out, n, cudaMemcpyDeviceToHost) == cudaSuccess &&
               memcmp(got, ref, n) == 0;
    printf("encode through a %u-entry table (block size 1): %.1f ms, status %u, same bytes as contiguous %s\n", N_TOK,
           1e3 * secs, st, same ? "yes" : "NO");
    CHECK_MSG(r == KVTC_OK && st == 0 && same, "valid table encode: %s, status %u, same bytes %d",
              kvtc_result_string(r), st, same);
    CHECK_MSG(secs < 1.0, "encode with a %u-entry table took %.3f s (the pairwise check stalled here)", N_TOK, secs);
    cudaMemset(d_pool_k, 0, layer_elems * L * 2);
    cudaMemset(d_pool_v, 0, layer_elems * L * 2);
    r = decode_layout(&gr, ref, ref_n, d_stream, &pl, &st, &secs);
    int values = 1;
    for (int kv = 0; kv < 2 && r == KVTC_OK; kv++) {
        const uint16_t *want = kv ? ref_v : ref_k;
        cudaMemcpy(pool_img, kv ? d_pool_v : d_pool_k, layer_elems * L * 2, cudaMemcpyDeviceToHost);
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t h = 0; h < H; h++)
                for (uint64_t tk = 0; tk < N_TOK && values; tk++)
                    values = !memcmp(pool_img + l * layer_elems + (uint64_t)perm[tk] * slot + (uint64_t)h * d,
                                     want + (((uint64_t)l * H + h) * N_TOK + tk) * d, 2 * d);
    }
    printf("decode through the table: %.1f ms, status %u, values of the contiguous decode %s\n", 1e3 * secs, st,
           values ? "yes" : "NO");
    CHECK_MSG(r == KVTC_OK && st == 0 && values, "valid table decode: %s, status %u, same values %d",
              kvtc_result_string(r), st, values);
    CHECK_MSG(secs < 1.0, "decode with a %u-entry table took %.3f s", N_TOK, secs);

    /* 2. a repeated block at the far end, an id == n_pool: rejected both ways */
    const struct { uint64_t at; int32_t id; const char *what; } bad[] = {
        {N_TOK - 1, 0, "entry 131071 repeats entry 0's block"},
        {N_TOK / 2, (int32_t)n_pool, "entry 65536 = n_pool"},
    };
    for (int i = 0; i < 2; i++) {
        int32_t keep = perm[bad[i].at];
        set_entry(perm, d_table, bad[i].at, bad[i].id == 0 ? perm[0] : bad[i].id);
        uint32_t s1 = 0, s2 = 0;
        double t1 = 0, t2 = 0;
        kvtc_result r1 = encode_layout(&gr, &pl, &s1, &t1);
        kvtc_result r2 = decode_layout(&gr, ref, ref_n, d_stream, &pl, &s2, &t2);
        printf("%s: encode status %u (%.1f ms), decode status %u (%.1f ms)\n", bad[i].what, s1, 1e3 * t1, s2, 1e3 * t2);
        CHECK_MSG(r1 == KVTC_OK && r2 == KVTC_OK && s1 == KVTC_ERR_BAD_BLOCK_TABLE && s2 == KVTC_ERR_BAD_BLOCK_TABLE,
                  "%s: results %s / %s, status %u / %u (want %d)", bad[i].what, kvtc_result_string(r1),
                  kvtc_result_string(r2), s1, s2, KVTC_ERR_BAD_BLOCK_TABLE);
        set_entry(perm, d_table, bad[i].at, keep);
    }

    /* 3. a hostile pool size: ids spread over [0, 2^31), 64 bitmap windows */
    kvtc_cache_layout hl = pl;
    hl.n_pool_blocks = 1ull << 40;
    hl.k.block_stride = hl.v.block_stride = 0; /* every id addresses slot 0: reads stay in the pool */
    for (uint64_t i = 0; i < N_TOK; i++) perm[i] = (int32_t)(i * 16384 + i % 7); /* distinct, < 2^31 */
    cudaMemcpy(d_table, perm, sizeof(int32_t) * N_TOK, cudaMemcpyHostToDevice);
    r = encode_layout(&gr, &hl, &st, &secs);
    printf("n_pool 2^40, distinct ids up to %d: status %u, %.1f ms\n", perm[N_TOK - 1], st, 1e3 * secs);
    CHECK_MSG(r == KVTC_OK && st == 0, "hostile n_pool, distinct ids: %s, status %u", kvtc_result_string(r), st);
    CHECK_MSG(secs < 1.0, "hostile n_pool check took %.3f s", secs);
    const uint64_t dup_at[3] = {1, N_TOK / 2 + 1, N_TOK - 1}; /* windows 0, 32 and 63 */
    for (int i = 0; i < 3; i++) {
        int32_t keep = perm[dup_at[i]];
        set_entry(perm, d_table, dup_at[i], perm[dup_at[i] - 1]);
        r = encode_layout(&gr, &hl, &st, &secs);
        printf("n_pool 2^40, entry %llu repeats block %d: status %u\n", (unsigned long long)dup_at[i],
               perm[dup_at[i]], st);
        CHECK_MSG(r == KVTC_OK && st == KVTC_ERR_BAD_BLOCK_TABLE, "hostile n_pool, repeat at %llu: %s, status %u",
                  (unsigned long long)dup_at[i], kvtc_result_string(r), st);
        set_entry(perm, d_table, dup_at[i], keep);
    }
    char msg[256];
    CHECK_MSG(kvtc_cuda_last_error(gr.cc, msg, sizeof msg) == 0 && msg[0] == 0, "last CUDA error: %s", msg);

    free(perm); free(pool_img); free(ref); free(got); free(ref_k); free(ref_v);
    cudaFree(d_table); cudaFree(d_pool_k); cudaFree(d_pool_v); cudaFree(d_stream); cudaFree(dc.k); cudaFree(dc.v);
    cudaFree(gr.d_ws); cudaFree(gr.d_out); cudaFree(gr.d_w); cudaFree(gr.d_status);
    kvtc_cuda_codec_free(gr.cc);
    synth_free(&sc);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
