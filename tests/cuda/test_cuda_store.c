/* test_cuda_store.c - kvtc_cuda_store_get (issue 12): the prefix store's get
 * decoded on the GPU into device layouts.
 *  - a contiguous device cache: equal to the CPU get up to the GEMM's
 *    rounding (the codec runs KVTC_CUDA_GEMM_FP32, the CPU's arithmetic);
 *  - a vLLM NHD paged pool (block 16, shuffled table, per-layer pointers):
 *    equal bit for bit to the contiguous GPU get (the same per-chunk
 *    decodes), pool rows not named keep their guard values;
 *  - positions and token ids written on the device; partial n; a missing
 *    chunk restores the prefix before it;
 *  - refused before anything is fetched (stats unchanged, records kept): a
 *    repeated or out-of-range block (KVTC_ERR_BAD_BLOCK_TABLE), a block size
 *    that does not divide the chunk (KVTC_ERR_UNSUPPORTED), a raw store
 *    (KVTC_ERR_UNSUPPORTED), a codec of another basis (BASIS_MISMATCH), a
 *    bf16 layout on an fp16 store (GEOMETRY_MISMATCH);
 *  - DEFLATE chunks: KVTC_ERR_UNSUPPORTED and nothing deleted.
 * Exits 77 (skipped) without a GPU. */
#define _XOPEN_SOURCE 700 /* nftw (store_fixture.h) */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test_util.h"
#include "store_fixture.h"
#include "util/half.h"

#define N_PUT 128u /* 4 chunks of FX_C = 32 */
#define N_GET 100u
#define BS 16u
#define GUARD 0x7b7bu

typedef struct dev_dest {
    kvtc_cache_layout lay;
    uint16_t *mem[2];        /* device, all layers */
    uint64_t layer_elems;
    void *kl[2], *vl[2];
    int32_t table[16], *d_table;
    int64_t *d_pos;
    int32_t *d_ids;
} dev_dest;

static void dd_alloc(dev_dest *d, const kvtc_geometry *g, uint64_t layer_elems) {
    memset(d, 0, sizeof *d);
    d->layer_elems = layer_elems;
    uint64_t n = layer_elems * g->n_layers;
    uint16_t *img = malloc(2 * n);
    for (uint64_t i = 0; i < n; i++) img[i] = GUARD;
    for (int s = 0; s < 2; s++) {
        CHECK(cudaMalloc((void **)&d->mem[s], 2 * n) == cudaSuccess);
        cudaMemcpy(d->mem[s], img, 2 * n, cudaMemcpyHostToDevice);
    }
    free(img);
    CHECK(cudaMalloc((void **)&d->d_pos, 8 * N_PUT) == cudaSuccess);
    CHECK(cudaMalloc((void **)&d->d_ids, 4 * N_PUT) == cudaSuccess);
    d->lay.geometry = *g;
    d->lay.dtype = KVTC_DTYPE_F16;
    d->lay.n_tokens = N_GET;
    d->lay.positions = d->d_pos;
    d->lay.token_ids = d->d_ids;
}

static void dd_free(dev_dest *d) {
    cudaFree(d->mem[0]);
    cudaFree(d->mem[1]);
    cudaFree(d->d_table);
    cudaFree(d->d_pos);
    cudaFree(d->d_ids);
}

/* [L][H][N_GET][d] on the device */
static void make_contiguous(dev_dest *d, const kvtc_geometry *g) {
    dd_alloc(d, g, (uint64_t)g->n_kv_heads * N_GET * g->head_dim);
    kvtc_cache c = {*g, KVTC_DTYPE_F16, N_GET, d->mem[0], d->mem[1], d->d_pos, d->d_ids};
    kvtc_cache_layout_from_cache(&c, &d->lay);
}

/* vLLM NHD [B][BS][H][d] per layer (per-layer pointers), shuffled table over
 * nb + 3 blocks */
static void make_nhd(dev_dest *d, const kvtc_geometry *g, uint32_t block_size) {
    uint32_t H = g->n_kv_heads, D = g->head_dim, nb = (N_GET + block_size - 1) / block_size;
    dd_alloc(d, g, (uint64_t)(nb + 3) * block_size * H * D);
    for (uint32_t l = 0; l < g->n_layers; l++) {
        d->kl[l] = d->mem[0] + l * d->layer_elems;
        d->vl[l] = d->mem[1] + l * d->layer_elems;
    }
    kvtc_tensor_layout k = {d->kl, NULL, 0, (int64_t)H * D, D, 1, (int64_t)block_size * H * D};
    kvtc_tensor_layout v = k;
    v.layers = d->vl;
    d->lay.k = k;
    d->lay.v = v;
    d->lay.block_size = block_size;
    for (uint32_t i = 0; i < nb; i++) d->table[i] = (int32_t)((i * 7 + 2) % (nb + 3)); /* distinct: 7 is coprime to 10 and 12 */
    d->lay.n_pool_blocks = nb + 3;
    CHECK(cudaMalloc((void **)&d->d_table, 4 * 16) == cudaSuccess);
    cudaMemcpy(d->d_table, d->table, 4 * 16, cudaMemcpyHostToDevice);
    d->lay.block_table = d->d_table;
}

static void upload_table(dev_dest *d) { cudaMemcpy(d->d_table, d->table, 4 * 16, cudaMemcpyHostToDevice); }

/* Tokens [0, n) of the device layout as a host [L][H][n][d] fp16 cache;
 * *guard_ok = 0 when an element the layout does not name lost GUARD. */
static void download(const dev_dest *d, uint64_t n, uint16_t *out[2], int *guard_ok) {
    const kvtc_geometry *g = &d->lay.geometry;
    uint64_t total = d->layer_elems * g->n_layers;
    uint16_t *img = malloc(2 * total);
    uint8_t *named = calloc(total, 1);
    *guard_ok = 1;
    for (int s = 0; s < 2; s++) {
        const kvtc_tensor_layout *t = s ? &d->lay.v : &d->lay.k;
        cudaMemcpy(img, d->mem[s], 2 * total, cudaMemcpyDeviceToHost);
        memset(named, 0, total);
        for (uint32_t l = 0; l < g->n_layers; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++)
                for (uint64_t tok = 0; tok < n; tok++)
                    for (uint32_t j = 0; j < g->head_dim; j++) {
                        int64_t slot = d->lay.block_size
                                           ? (int64_t)d->table[tok / d->lay.block_size] * t->block_stride +
                                                 (int64_t)(tok % d->lay.block_size) * t->token_stride
                                           : (int64_t)tok * t->token_stride;
                        uint64_t at = l * d->layer_elems + (uint64_t)(slot + (int64_t)h * t->head_stride + j);
                        out[s][(((uint64_t)l * g->n_kv_heads + h) * n + tok) * g->head_dim + j] = img[at];
                        named[at] = 1;
                    }
        for (uint64_t i = 0; i < total; i++)
            if (!named[i] && img[i] != GUARD) *guard_ok = 0;
    }
    free(img);
    free(named);
}

/* ||a - b|| / ||b|| over n fp16 values */
static double rel_err(const uint16_t *a, const uint16_t *b, uint64_t n) {
    double e = 0, r = 0;
    for (uint64_t i = 0; i < n; i++) {
        double x = kvi_f16_to_f32(a[i]), y = kvi_f16_to_f32(b[i]);
        e += (x - y) * (x - y);
        r += y * y;
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static kvtc_store *open_store(const fixture *fx, const char *dir, uint32_t codec, uint32_t entropy) {
    char uri[96];
    snprintf(uri, sizeof uri, "file:%s", dir);
    kvtc_store_options o;
    fixture_options(&o);
    o.codec = codec;
    o.entropy_codec = entropy;
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, codec == KVTC_STORE_CODEC_RAW ? NULL : fx->basis, &fx->sp.g, KVTC_DTYPE_F16, &o, &s) ==
          KVTC_OK);
    return s;
}

static kvtc_store_stats stats(const kvtc_store *s) {
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK);
    return st;
}

int main(void) {
    gpu_test_require_device();
    fixture fx;
    CHECK(fixture_init(&fx) == 0);
    const kvtc_geometry *g = &fx.sp.g;
    uint64_t tb = kvtc_cache_tensor_bytes(g, KVTC_DTYPE_F16, N_GET), ne = tb / 2;
    char dir[64], dir2[64];
    CHECK(fixture_tmpdir(dir, sizeof dir, "cuda_store") == 0);
    CHECK(fixture_tmpdir(dir2, sizeof dir2, "cuda_store_deflate") == 0);
    kvtc_store *s = open_store(&fx, dir, KVTC_STORE_CODEC_KVTC, KVTC_CODEC_RANS);
    synth_cache sc;
    CHECK(fixture_cache(&fx, N_PUT, 3, &sc) == 0);
    int32_t tokens[N_PUT];
    fixture_tokens(tokens, N_PUT, 21);
    CHECK(kvtc_store_put(s, tokens, N_PUT, &sc.c, NULL) == KVTC_OK);

    /* the CPU get: the reference */
    kvtc_cache ref;
    kvtc_store_layout lay;
    uint64_t got = 0;
    CHECK(fixture_out(&fx, N_GET, &ref, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, N_PUT, &lay, &got) == KVTC_OK && got == N_GET);

    kvtc_cuda_options co;
    kvtc_cuda_options_init(&co);
    co.ratio = 8.0;
    co.gemm = KVTC_CUDA_GEMM_FP32;
    kvtc_cuda_codec *cc = NULL;
    CHECK(kvtc_cuda_codec_alloc(fx.basis, &co, &cc) == KVTC_OK);
    cudaStream_t st;
    CHECK(cudaStreamCreate(&st) == cudaSuccess);

    /* contiguous device cache: the CPU's values up to GEMM rounding */
    dev_dest dc;
    make_contiguous(&dc, g);
    got = 0;
    kvtc_result r = kvtc_cuda_store_get(cc, s, tokens, N_PUT, &dc.lay, st, &got);
    CHECK_MSG(r == KVTC_OK && got == N_GET, "contiguous GPU get: %s, %llu tokens", kvtc_result_string(r),
              (unsigned long long)got);
    uint16_t *gc[2] = {malloc(tb), malloc(tb)}, *gp[2] = {malloc(tb), malloc(tb)};
    int guard = 0;
    download(&dc, N_GET, gc, &guard);
    double ek = rel_err(gc[0], ref.k, ne), ev = rel_err(gc[1], ref.v, ne);
    printf("GPU get vs CPU get: rel err K %.2e V %.2e\n", ek, ev);
    CHECK(ek < 2e-3 && ev < 2e-3);
    int64_t pos[N_PUT];
    int32_t ids[N_PUT];
    cudaMemcpy(pos, dc.d_pos, 8 * N_GET, cudaMemcpyDeviceToHost);
    cudaMemcpy(ids, dc.d_ids, 4 * N_GET, cudaMemcpyDeviceToHost);
    int ids_ok = 1;
    for (uint32_t t = 0; t < N_GET; t++) ids_ok = ids_ok && pos[t] == (int64_t)t && ids[t] == tokens[t];
    CHECK(ids_ok);

    /* vLLM NHD pool: the contiguous GPU get's values, bit for bit */
    dev_dest dp;
    make_nhd(&dp, g, BS);
    r = kvtc_cuda_store_get(cc, s, tokens, N_PUT, &dp.lay, st, &got);
    CHECK_MSG(r == KVTC_OK && got == N_GET, "paged GPU get: %s", kvtc_result_string(r));
    download(&dp, N_GET, gp, &guard);
    CHECK(guard && !memcmp(gp[0], gc[0], tb) && !memcmp(gp[1], gc[1], tb));

    /* hostile tables and mismatches: refused before any fetch */
    kvtc_store_stats before = stats(s);
    dp.table[4] = dp.table[1];
    upload_table(&dp);
    CHECK(kvtc_cuda_store_get(cc, s, tokens, N_PUT, &dp.lay, st, &got) == KVTC_ERR_BAD_BLOCK_TABLE && got == 0);
    dp.table[4] = (int32_t)dp.lay.n_pool_blocks;
    upload_table(&dp);
    CHECK(kvtc_cuda_store_get(cc, s, tokens, N_PUT, &dp.lay, st, &got) == KVTC_ERR_BAD_BLOCK_TABLE);
    dp.lay.dtype = KVTC_DTYPE_BF16;
    CHECK(kvtc_cuda_store_get(cc, s, tokens, N_PUT, &dp.lay, st, &got) == KVTC_ERR_GEOMETRY_MISMATCH);
    dev_dest d12;
    make_nhd(&d12, g, 12);
    CHECK(kvtc_cuda_store_get(cc, s, tokens, N_PUT, &d12.lay, st, &got) == KVTC_ERR_UNSUPPORTED);
    kvtc_store_stats after = stats(s);
    CHECK(after.bytes_read == before.bytes_read && after.errors == before.errors);

    /* a codec of another basis */
    fixture fx2;
    CHECK(fixture_init(&fx2) == 0);
    fx2.sp.model_seed ^= 0x5eed;
    kvtc_basis_free(fx2.basis);
    const double ratios[] = {8.0};
    CHECK(synth_calibrate(&fx2.sp, 4, 4, 0, ratios, 1, &fx2.basis) == KVTC_OK);
    kvtc_cuda_codec *cc2 = NULL;
    CHECK(kvtc_cuda_codec_alloc(fx2.basis, &co, &cc2) == KVTC_OK);
    CHECK(kvtc_cuda_store_get(cc2, s, tokens, N_PUT, &dc.lay, st, &got) == KVTC_ERR_BASIS_MISMATCH);
    kvtc_cuda_codec_free(cc2);
    fixture_free(&fx2);

    /* partial n, then a missing chunk */
    dc.lay.n_tokens = 40;
    CHECK(kvtc_cuda_store_get(cc, s, tokens, N_PUT, &dc.lay, st, &got) == KVTC_OK && got == 40);
    dc.lay.n_tokens = N_GET;
    CHECK(kvtc_store_delete(s, tokens, 3 * FX_C) == KVTC_OK);
    CHECK(kvtc_store_put(s, tokens, 2 * FX_C, &sc.c, NULL) == KVTC_OK); /* chunks 0-1 back, 2 missing */
    CHECK(kvtc_cuda_store_get(cc, s, tokens, N_PUT, &dc.lay, st, &got) == KVTC_OK && got == 2 * FX_C);

    /* DEFLATE chunks: the GPU's refusal, records kept */
    kvtc_store *sd = open_store(&fx, dir2, KVTC_STORE_CODEC_KVTC, KVTC_CODEC_DEFLATE);
    CHECK(kvtc_store_put(sd, tokens, N_PUT, &sc.c, NULL) == KVTC_OK);
    CHECK(kvtc_cuda_store_get(cc, sd, tokens, N_PUT, &dc.lay, st, &got) == KVTC_ERR_UNSUPPORTED && got == 0);
    uint64_t hit = 0;
    CHECK(kvtc_store_lookup(sd, tokens, N_PUT, &hit) == KVTC_OK && hit == N_PUT && stats(sd).errors == 0);
    kvtc_store_close(sd);
    /* a raw store */
    kvtc_store *sr = open_store(&fx, dir2, KVTC_STORE_CODEC_RAW, 0);
    CHECK(kvtc_cuda_store_get(cc, sr, tokens, N_PUT, &dc.lay, st, &got) == KVTC_ERR_UNSUPPORTED);
    kvtc_store_close(sr);

    CHECK(cudaStreamSynchronize(st) == cudaSuccess && cudaGetLastError() == cudaSuccess);
    for (int i = 0; i < 2; i++) { free(gc[i]); free(gp[i]); }
    dd_free(&dc);
    dd_free(&dp);
    dd_free(&d12);
    cudaStreamDestroy(st);
    kvtc_cuda_codec_free(cc);
    kvtc_store_close(s);
    synth_cache_free(&ref);
    synth_free(&sc);
    fixture_rmtree(dir);
    fixture_rmtree(dir2);
    fixture_free(&fx);
    return TEST_REPORT();
}
