/* test_cuda_layouts.c - engine layouts on the GPU (issue 11 item 1):
 * kvtc_cuda_compress_layout / kvtc_cuda_decompress_layout on
 *  - the contiguous layout (kvtc_cache_layout_from_cache),
 *  - vLLM NHD and HND paged pools (block 16) with a shuffled block table,
 *  - llama.cpp rows: K [cells][H*d] through per-layer pointers, V
 *    transposed [H*d][cells] (element-wise kernels),
 * encode to the same bytes as kvtc_cuda_compress of the contiguous cache
 * and decode to the same values as kvtc_cuda_decompress, bit for bit,
 * never touching pool memory outside the named rows (guard values stay);
 * hostile block tables (an id out of range, negative, a repeated block)
 * give KVTC_ERR_BAD_BLOCK_TABLE in the device status with no CUDA error.
 * Exits 77 (skipped) without a GPU. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

enum { N_TOK = 600, BS = 16, EXTRA_BLOCKS = 5 };

/* A layout of one tensor and its device memory, with a host image. */
typedef struct lay {
    kvtc_tensor_layout t;
    void *layers_dev[8];  /* per-layer device bases when per_layer */
    int per_layer;
    uint8_t *dev;         /* one device allocation for all layers */
    uint64_t layer_elems; /* elements per layer */
} lay;

static int64_t elem_off(const lay *x, const int32_t *table, uint64_t tok, uint32_t h, uint32_t j) {
    int64_t slot = table ? (int64_t)table[tok / BS] * x->t.block_stride + (int64_t)(tok % BS) * x->t.token_stride
                         : (int64_t)tok * x->t.token_stride;
    return slot + (int64_t)h * x->t.head_stride + (int64_t)j * x->t.dim_stride;
}

/* contiguous host tensor [L][H][T][d] -> the layout's device memory (0x7b7b guard elsewhere) */
static void upload(lay *x, const kvtc_geometry *g, const uint16_t *src, const int32_t *table) {
    uint64_t n = x->layer_elems * g->n_layers;
    uint16_t *img = malloc(n * 2);
    for (uint64_t i = 0; i < n; i++) img[i] = 0x7b7b;
    for (uint32_t l = 0; l < g->n_layers; l++)
        for (uint32_t h = 0; h < g->n_kv_heads; h++)
            for (uint64_t t = 0; t < N_TOK; t++)
                for (uint32_t j = 0; j < g->head_dim; j++)
                    img[l * x->layer_elems + elem_off(x, table, t, h, j)] =
                        src[(((uint64_t)l * g->n_kv_heads + h) * N_TOK + t) * g->head_dim + j];
    cudaMemcpy(x->dev, img, n * 2, cudaMemcpyHostToDevice);
    free(img);
}

/* the layout's device memory -> contiguous host tensor; *guard_ok = 0 when
 * an element outside the named rows lost its guard value */
static void download(const lay *x, const kvtc_geometry *g, uint16_t *dst, const int32_t *table, int *guard_ok) {
    uint64_t n = x->layer_elems * g->n_layers;
    uint16_t *img = malloc(n * 2);
    uint8_t *used = calloc(n, 1);
    cudaMemcpy(img, x->dev, n * 2, cudaMemcpyDeviceToHost);
    for (uint32_t l = 0; l < g->n_layers; l++)
        for (uint32_t h = 0; h < g->n_kv_heads; h++)
            for (uint64_t t = 0; t < N_TOK; t++)
                for (uint32_t j = 0; j < g->head_dim; j++) {
                    uint64_t i = l * x->layer_elems + elem_off(x, table, t, h, j);
                    dst[(((uint64_t)l * g->n_kv_heads + h) * N_TOK + t) * g->head_dim + j] = img[i];
                    used[i] = 1;
                }
    for (uint64_t i = 0; i < n; i++)
        if (!used[i] && img[i] != 0x7b7b) *guard_ok = 0;
    free(img);
    free(used);
}

static void lay_alloc(lay *x, const kvtc_geometry *g, uint64_t layer_elems, int per_layer) {
    x->layer_elems = layer_elems;
    x->per_layer = per_layer;
    cudaMalloc((void **)&x->dev, layer_elems * g->n_layers * 2);
    if (per_layer) {
        for (uint32_t l = 0; l < g->n_layers; l++) x->layers_dev[l] = x->dev + l * layer_elems * 2;
        x->t.layers = x->layers_dev;
    } else {
        x->t.base = x->dev;
        x->t.layer_stride = (int64_t)layer_elems;
    }
}

typedef struct gpu_bufs {
    void *d_ws, *d_out;
    uint64_t *d_w;
    uint32_t *d_status;
    size_t ws, cap;
} gpu_bufs;

static uint32_t status_of(const gpu_bufs *b) {
    uint32_t s = 99;
    cudaMemcpy(&s, b->d_status, 4, cudaMemcpyDeviceToHost);
    return s;
}

int main(void) {
    gpu_test_require_device();
    kvtc_geometry g = synth_geometry(4, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    static const double ratios[] = {8, 32};
    kvtc_basis *b = NULL;
    synth_cache sc;
    if (synth_calibrate(&sp, 2, 4, 128, ratios, 2, &b) || synth_make(&sp, &sc)) return 1;
    kvtc_cuda_options co;
    kvtc_cuda_options_init(&co);
    co.ratio = 8;
    co.chunk_tokens = 128;
    kvtc_cuda_codec *cc = NULL;
    CHECK(kvtc_cuda_codec_alloc(b, &co, &cc) == KVTC_OK);
    if (!cc) return TEST_REPORT();
    const uint32_t H = g.n_kv_heads, d = g.head_dim, L = g.n_layers;
    uint64_t kb = kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_F16, N_TOK);

    /* reference: the contiguous path */
    kvtc_cache dc;
    memset(&dc, 0, sizeof dc);
    dc.geometry = g;
    dc.dtype = KVTC_DTYPE_F16;
    dc.n_tokens = N_TOK;
    cudaMalloc(&dc.k, kb);
    cudaMalloc(&dc.v, kb);
    cudaMemcpy(dc.k, sc.c.k, kb, cudaMemcpyHostToDevice);
    cudaMemcpy(dc.v, sc.c.v, kb, cudaMemcpyHostToDevice);
    gpu_bufs gb;
    gb.ws = kvtc_cuda_workspace_size(cc, N_TOK, 0);
    gb.cap = kvtc_cuda_compress_bound(cc, &dc);
    CHECK(cudaMalloc(&gb.d_ws, gb.ws) == cudaSuccess && cudaMalloc(&gb.d_out, gb.cap) == cudaSuccess &&
          cudaMalloc((void **)&gb.d_w, 8) == cudaSuccess && cudaMalloc((void **)&gb.d_status, 4) == cudaSuccess);
    CHECK(kvtc_cuda_compress(cc, &dc, gb.d_out, gb.cap, gb.d_w, gb.d_ws, gb.ws, 0) == KVTC_OK);
    uint64_t ref_n = 0;
    cudaDeviceSynchronize();
    cudaMemcpy(&ref_n, gb.d_w, 8, cudaMemcpyDeviceToHost);
    uint8_t *ref = malloc(ref_n);
    cudaMemcpy(ref, gb.d_out, ref_n, cudaMemcpyDeviceToHost);
    void *d_stream = NULL;
    cudaMalloc(&d_stream, ref_n);
    cudaMemcpy(d_stream, ref, ref_n, cudaMemcpyHostToDevice);
    cudaMemset(dc.k, 0, kb);
    cudaMemset(dc.v, 0, kb);
    CHECK(kvtc_cuda_decompress(cc, ref, ref_n, d_stream, ref_n, &dc, gb.d_ws, gb.ws, gb.d_status, 0) == KVTC_OK);
    cudaDeviceSynchronize();
    CHECK(status_of(&gb) == 0);
    uint16_t *ref_k = malloc(kb), *ref_v = malloc(kb), *got_k = malloc(kb), *got_v = malloc(kb);
    cudaMemcpy(ref_k, dc.k, kb, cudaMemcpyDeviceToHost);
    cudaMemcpy(ref_v, dc.v, kb, cudaMemcpyDeviceToHost);

    /* the block table: a shuffled pool, with EXTRA_BLOCKS blocks never named */
    uint32_t n_blk = (N_TOK + BS - 1) / BS, n_pool = n_blk + EXTRA_BLOCKS;
    int32_t *perm = malloc(sizeof(int32_t) * n_pool);
    for (uint32_t i = 0; i < n_pool; i++) perm[i] = (int32_t)i;
    synth_rng rng = {12345};
    for (uint32_t i = n_pool - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(synth_next(&rng) % (i + 1));
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    int32_t *d_table = NULL;
    cudaMalloc((void **)&d_table, sizeof(int32_t) * n_pool);
    cudaMemcpy(d_table, perm, sizeof(int32_t) * n_blk, cudaMemcpyHostToDevice);

    const char *names[4] = {"contiguous", "vLLM NHD paged", "vLLM HND paged", "llama.cpp rows + transposed V"};
    for (int kind = 0; kind < 4; kind++) {
        lay xk, xv;
        memset(&xk, 0, sizeof xk);
        memset(&xv, 0, sizeof xv);
        const int32_t *table = NULL;
        kvtc_tensor_layout *tk = &xk.t, *tv = &xv.t;
        if (kind == 0) { /* [L][H][T][d] */
            lay_alloc(&xk, &g, (uint64_t)H * N_TOK * d, 0);
            lay_alloc(&xv, &g, (uint64_t)H * N_TOK * d, 0);
            tk->token_stride = tv->token_stride = d;
            tk->head_stride = tv->head_stride = (int64_t)N_TOK * d;
            tk->dim_stride = tv->dim_stride = 1;
        } else if (kind == 1 || kind == 2) { /* [B][S][H][d] or [B][H][S][d] per layer */
            table = perm;
            uint64_t blk = (uint64_t)BS * H * d;
            lay_alloc(&xk, &g, n_pool * blk, 0);
            lay_alloc(&xv, &g, n_pool * blk, 0);
            tk->token_stride = tv->token_stride = kind == 1 ? (int64_t)H * d : d;
            tk->head_stride = tv->head_stride = kind == 1 ? d : (int64_t)BS * d;
            tk->dim_stride = tv->dim_stride = 1;
            tk->block_stride = tv->block_stride = (int64_t)blk;
        } else { /* K [cells][H*d] per layer; V^T [H*d][cells] */
            uint64_t cells = N_TOK + 7;
            lay_alloc(&xk, &g, cells * H * d, 1);
            lay_alloc(&xv, &g, cells * H * d, 0);
            tk->token_stride = (int64_t)H * d;
            tk->head_stride = d;
            tk->dim_stride = 1;
            tv->token_stride = 1;
            tv->head_stride = (int64_t)d * cells;
            tv->dim_stride = (int64_t)cells;
        }
        upload(&xk, &g, (const uint16_t *)sc.c.k, table);
        upload(&xv, &g, (const uint16_t *)sc.c.v, table);
        kvtc_cache_layout cl;
        memset(&cl, 0, sizeof cl);
        cl.geometry = g;
        cl.dtype = KVTC_DTYPE_F16;
        cl.n_tokens = N_TOK;
        cl.k = xk.t;
        cl.v = xv.t;
        if (table) {
            cl.block_size = BS;
            cl.block_table = d_table;
            cl.n_pool_blocks = n_pool;
        }
        /* encode through the layout: the contiguous path's bytes */
        CHECK(kvtc_cuda_compress_layout_bound(cc, &cl) == gb.cap);
        kvtc_result r = kvtc_cuda_compress_layout(cc, &cl, gb.d_out, gb.cap, gb.d_w, gb.d_ws, gb.ws, gb.d_status, 0);
        CHECK_MSG(r == KVTC_OK, "%s: %s", names[kind], kvtc_result_string(r));
        uint64_t n = 0;
        CHECK(cudaDeviceSynchronize() == cudaSuccess);
        cudaMemcpy(&n, gb.d_w, 8, cudaMemcpyDeviceToHost);
        uint8_t *s = malloc(n ? n : 1);
        cudaMemcpy(s, gb.d_out, n, cudaMemcpyDeviceToHost);
        int same_bytes = n == ref_n && memcmp(s, ref, n) == 0;
        CHECK_MSG(status_of(&gb) == 0 && same_bytes, "%s: encode status %u, same bytes %d", names[kind],
                  status_of(&gb), same_bytes);
        free(s);
        /* decode into a layout whose memory holds guards: same values, guards kept */
        upload(&xk, &g, (const uint16_t *)sc.c.k, table); /* any content: overwritten where named */
        cudaMemset(xk.dev, 0x7b, xk.layer_elems * L * 2);
        cudaMemset(xv.dev, 0x7b, xv.layer_elems * L * 2);
        r = kvtc_cuda_decompress_layout(cc, ref, ref_n, d_stream, ref_n, NULL, &cl, gb.d_ws, gb.ws, gb.d_status, 0);
        CHECK_MSG(r == KVTC_OK, "%s: %s", names[kind], kvtc_result_string(r));
        CHECK(cudaDeviceSynchronize() == cudaSuccess);
        int guard_ok = 1;
        download(&xk, &g, got_k, table, &guard_ok);
        download(&xv, &g, got_v, table, &guard_ok);
        int same = memcmp(got_k, ref_k, kb) == 0 && memcmp(got_v, ref_v, kb) == 0;
        printf("%s: encode same bytes %s, decode same values %s, memory outside the rows untouched %s\n", names[kind],
               same_bytes ? "yes" : "NO", same ? "yes" : "NO", guard_ok ? "yes" : "NO");
        CHECK(status_of(&gb) == 0 && same && guard_ok);

        if (table) { /* hostile tables: out of range, negative, repeated */
            int32_t bad[3][2] = {{(int32_t)n_pool, 0}, {-1, 0}, {perm[3], 0}};
            const uint32_t where[3] = {n_blk - 1, 0, 7};
            for (int hi = 0; hi < 3; hi++) {
                cudaMemcpy(d_table + where[hi], &bad[hi][0], 4, cudaMemcpyHostToDevice);
                r = kvtc_cuda_compress_layout(cc, &cl, gb.d_out, gb.cap, gb.d_w, gb.d_ws, gb.ws, gb.d_status, 0);
                cudaError_t e1 = cudaDeviceSynchronize();
                uint32_t s1 = status_of(&gb);
                kvtc_result r2 =
                    kvtc_cuda_decompress_layout(cc, ref, ref_n, d_stream, ref_n, NULL, &cl, gb.d_ws, gb.ws, gb.d_status, 0);
                cudaError_t e2 = cudaDeviceSynchronize();
                uint32_t s2 = status_of(&gb);
                CHECK_MSG(r == KVTC_OK && r2 == KVTC_OK && e1 == cudaSuccess && e2 == cudaSuccess &&
                              s1 == KVTC_ERR_BAD_BLOCK_TABLE && s2 == KVTC_ERR_BAD_BLOCK_TABLE,
                          "%s hostile table %d: %d %d %d %d %u %u", names[kind], hi, r, r2, e1, e2, s1, s2);
                cudaMemcpy(d_table + where[hi], &perm[where[hi]], 4, cudaMemcpyHostToDevice);
            }
            /* a block table needs a status word; a block size needs a table */
            CHECK(kvtc_cuda_compress_layout(cc, &cl, gb.d_out, gb.cap, gb.d_w, gb.d_ws, gb.ws, NULL, 0) ==
                  KVTC_ERR_INVALID_ARGUMENT);
            kvtc_cache_layout nt = cl;
            nt.block_table = NULL;
            CHECK(kvtc_cuda_compress_layout(cc, &nt, gb.d_out, gb.cap, gb.d_w, gb.d_ws, gb.ws, gb.d_status, 0) ==
                  KVTC_ERR_INVALID_ARGUMENT);
        }
        cudaFree(xk.dev);
        cudaFree(xv.dev);
    }
    char msg[256];
    CHECK(kvtc_cuda_last_error(cc, msg, sizeof msg) == 0 && msg[0] == 0);
    free(perm); free(ref); free(ref_k); free(ref_v); free(got_k); free(got_v);
    cudaFree(d_table); cudaFree(d_stream); cudaFree(dc.k); cudaFree(dc.v);
    cudaFree(gb.d_ws); cudaFree(gb.d_out); cudaFree(gb.d_w); cudaFree(gb.d_status);
    kvtc_cuda_codec_free(cc);
    synth_free(&sc);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
