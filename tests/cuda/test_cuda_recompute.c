/* test_cuda_recompute.c - streams of a basis that recomputes layer 0, on
 * the GPU (issue 11 item 5). The "model" is the original cache: the CPU
 * callback and the GPU hook both produce its layer 0.
 * - A CPU stream decodes on the GPU: the hook is given the stream's token
 *   ids and positions on the device and enqueues the copy of layer 0 on
 *   the decode's stream; layer 0 of the coded tokens then equals the CPU
 *   decode's exactly, the stored layers within the GPU/CPU arithmetic
 *   difference; out->token_ids receives the ids.
 * - Without a hook: KVTC_ERR_NEEDS_MODEL; with another model fingerprint:
 *   KVTC_ERR_MODEL_MISMATCH; a hook that fails: KVTC_ERR_CALLBACK.
 * - The GPU encoder stores the ids and the model fingerprint; the CPU
 *   decodes its stream (with its callback) within the CPU path's error.
 * Exits 77 (skipped) without a GPU. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

enum { N_TOK = 600 };
#define MODEL_FP 0x5eed0123456789abull

typedef struct model {
    const kvtc_cache *host;    /* the original cache (f16) */
    void *d_k, *d_v;           /* its device copy */
    const int32_t *d_ids_seen; /* what the hook was given */
    uint64_t n_seen;
    int fail;
} model;

/* CPU: float32 [m][H][n][d] of the original cache */
static int cpu_recompute(void *user, uint32_t m, const int32_t *ids, const int64_t *pos, uint64_t n, float *k,
                         float *v) {
    const model *md = user;
    const kvtc_geometry *g = &md->host->geometry;
    (void)ids;
    (void)pos;
    for (int s = 0; s < 2; s++) {
        const uint16_t *src = s ? md->host->v : md->host->k;
        float *dst = s ? v : k;
        for (uint32_t l = 0; l < m; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++)
                for (uint64_t t = 0; t < n; t++)
                    for (uint32_t j = 0; j < g->head_dim; j++)
                        dst[(((uint64_t)l * g->n_kv_heads + h) * n + t) * g->head_dim + j] = kvi_f16_to_f32(
                            src[(((uint64_t)l * g->n_kv_heads + h) * N_TOK + t) * g->head_dim + j]);
    }
    return 0;
}

/* GPU: enqueue the copy of layers [layer_begin, min(m, layer_end)) of the
 * range's tokens from the original cache into `out` (a contiguous layout) */
static int gpu_hook(void *user, uint32_t m, const int32_t *d_ids, const int64_t *d_pos, uint64_t n,
                    const kvtc_decode_range *r, const kvtc_cache_layout *out, cudaStream_t st) {
    model *md = user;
    (void)d_pos;
    md->d_ids_seen = d_ids;
    md->n_seen = n;
    if (md->fail) return 1;
    const kvtc_geometry *g = &out->geometry;
    uint64_t nt = r->token_end - r->token_begin, row = (uint64_t)g->head_dim * 2;
    uint32_t le = r->layer_end < m ? r->layer_end : m;
    for (int s = 0; s < 2; s++) {
        const kvtc_tensor_layout *t = s ? &out->v : &out->k;
        const uint8_t *src = s ? md->d_v : md->d_k;
        for (uint32_t l = r->layer_begin; l < le; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++) {
                uint8_t *dst = (uint8_t *)t->base + 2 * (l * t->layer_stride + h * t->head_stride);
                const uint8_t *from = src + ((((uint64_t)l * g->n_kv_heads + h) * N_TOK) + r->token_begin) * row;
                if (cudaMemcpyAsync(dst, from, nt * row, cudaMemcpyDeviceToDevice, st) != cudaSuccess) return 2;
            }
    }
    return 0;
}

int main(void) {
    gpu_test_require_device();
    kvtc_geometry g = synth_geometry(3, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    /* a basis that recomputes layer 0 */
    kvtc_calibrate_options co;
    kvtc_calibrate_options_init(&co);
    co.n_sink = 4;
    co.n_window = 128;
    co.recompute_layers = 1;
    kvtc_calibrator *cal = NULL;
    kvtc_basis *b = NULL;
    static const double ratios[] = {8, 32};
    CHECK(kvtc_calibrator_alloc(&g, &co, &cal) == KVTC_OK);
    for (uint32_t i = 0; i < 2 && cal; i++) {
        synth_params q = sp;
        q.data_seed = 1000 + i;
        q.positions = NULL;
        synth_cache c;
        if (synth_make(&q, &c)) return 1;
        CHECK(kvtc_calibrator_add(cal, &c.c) == KVTC_OK);
        synth_free(&c);
    }
    CHECK(cal && kvtc_calibrator_finish(cal, ratios, 2, &b) == KVTC_OK);
    kvtc_calibrator_free(cal);
    if (!b) return TEST_REPORT();
    CHECK(kvtc_basis_recomputed_layers(b) == 1);
    synth_cache sc;
    if (synth_make(&sp, &sc)) return 1;
    int32_t *ids = malloc(sizeof(int32_t) * N_TOK);
    for (uint64_t t = 0; t < N_TOK; t++) ids[t] = (int32_t)((t * 7919) % 32000);
    kvtc_cache hc = sc.c;
    hc.token_ids = ids;
    uint64_t kb = kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_F16, N_TOK);
    model md = {&hc, NULL, NULL, NULL, 0, 0};
    cudaMalloc(&md.d_k, kb);
    cudaMalloc(&md.d_v, kb);
    cudaMemcpy(md.d_k, hc.k, kb, cudaMemcpyHostToDevice);
    cudaMemcpy(md.d_v, hc.v, kb, cudaMemcpyHostToDevice);

    /* the CPU stream and its CPU decode */
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 8;
    eo.entropy_codec = KVTC_CODEC_RANS;
    eo.model_fingerprint = MODEL_FP;
    uint8_t *s = NULL;
    size_t n = 0;
    CHECK(synth_compress(b, &eo, &hc, &s, &n) == KVTC_OK);
    if (!s) return TEST_REPORT();
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.recompute = cpu_recompute;
    dopt.recompute_user = &md;
    dopt.model_fingerprint = MODEL_FP;
    kvtc_decoder *dec = NULL;
    CHECK(kvtc_decoder_alloc(b, &dopt, &dec) == KVTC_OK);
    kvtc_cache cpu, gpu;
    synth_alloc_like(&g, KVTC_DTYPE_F16, N_TOK, 0, &cpu);
    synth_alloc_like(&g, KVTC_DTYPE_F16, N_TOK, 0, &gpu);
    CHECK(kvtc_decompress(dec, s, n, &cpu) == KVTC_OK);

    /* GPU decode: no hook, wrong model, failing hook, then the real one */
    kvtc_cuda_options go;
    kvtc_cuda_options_init(&go);
    go.ratio = 8;
    kvtc_cuda_codec *cc = NULL;
    CHECK(kvtc_cuda_codec_alloc(b, &go, &cc) == KVTC_OK);
    CHECK(gpu_test_decode(cc, s, n, n, &gpu) == KVTC_ERR_NEEDS_MODEL);
    kvtc_cuda_codec_free(cc);
    go.recompute = gpu_hook;
    go.recompute_user = &md;
    go.model_fingerprint = MODEL_FP ^ 1;
    CHECK(kvtc_cuda_codec_alloc(b, &go, &cc) == KVTC_OK);
    CHECK(gpu_test_decode(cc, s, n, n, &gpu) == KVTC_ERR_MODEL_MISMATCH);
    kvtc_cuda_codec_free(cc);
    go.model_fingerprint = MODEL_FP;
    CHECK(kvtc_cuda_codec_alloc(b, &go, &cc) == KVTC_OK);
    md.fail = 1;
    CHECK(gpu_test_decode(cc, s, n, n, &gpu) == KVTC_ERR_CALLBACK);
    md.fail = 0;

    /* the real decode, with token ids out */
    {
        size_t ws = 0;
        CHECK(kvtc_cuda_stream_workspace_size(cc, s, n, &ws) == KVTC_OK);
        void *d_k = NULL, *d_v = NULL, *d_ws = NULL, *d_s = NULL;
        int32_t *d_ids = NULL;
        uint32_t *d_status = NULL, status = 1;
        cudaMalloc(&d_k, kb); cudaMalloc(&d_v, kb); cudaMalloc(&d_ws, ws); cudaMalloc(&d_s, n);
        cudaMalloc((void **)&d_ids, 4 * N_TOK); cudaMalloc((void **)&d_status, 4);
        cudaMemcpy(d_s, s, n, cudaMemcpyHostToDevice);
        kvtc_cache dc;
        memset(&dc, 0, sizeof dc);
        dc.geometry = g;
        dc.dtype = KVTC_DTYPE_F16;
        dc.n_tokens = N_TOK;
        dc.k = d_k;
        dc.v = d_v;
        dc.token_ids = d_ids;
        CHECK(kvtc_cuda_decompress(cc, s, n, d_s, n, &dc, d_ws, ws, d_status, 0) == KVTC_OK);
        CHECK(cudaDeviceSynchronize() == cudaSuccess);
        cudaMemcpy(&status, d_status, 4, cudaMemcpyDeviceToHost);
        CHECK(status == 0);
        cudaMemcpy(gpu.k, d_k, kb, cudaMemcpyDeviceToHost);
        cudaMemcpy(gpu.v, d_v, kb, cudaMemcpyDeviceToHost);
        int32_t *got = malloc(4 * N_TOK), *seen = malloc(4 * N_TOK);
        cudaMemcpy(got, d_ids, 4 * N_TOK, cudaMemcpyDeviceToHost);
        CHECK(md.n_seen == N_TOK && md.d_ids_seen);
        if (md.d_ids_seen) cudaMemcpy(seen, md.d_ids_seen, 4 * N_TOK, cudaMemcpyDeviceToHost);
        CHECK(memcmp(got, ids, 4 * N_TOK) == 0 && memcmp(seen, ids, 4 * N_TOK) == 0);
        free(got); free(seen);
        cudaFree(d_k); cudaFree(d_v); cudaFree(d_ws); cudaFree(d_s); cudaFree(d_ids); cudaFree(d_status);
        /* layer 0 equal to the CPU decode's, bit for bit; the rest close */
        uint64_t l0 = kb / 3; /* bytes of one layer */
        CHECK(memcmp(gpu.k, cpu.k, l0) == 0 && memcmp(gpu.v, cpu.v, l0) == 0);
        double err = 0, energy = 0;
        for (uint64_t t = 0; t < N_TOK; t++) {
            err += synth_token_sqerr(&cpu, &gpu, 1, t) + synth_token_sqerr(&cpu, &gpu, 0, t);
            energy += synth_token_sqerr(&hc, &cpu, 1, t) + synth_token_sqerr(&hc, &cpu, 0, t);
        }
        printf("recompute stream: GPU vs CPU decode squared difference %.4g (CPU decode error %.4g)\n", err, energy);
        CHECK(err <= 0.05 * energy + 1e-6);
    }

    /* GPU encode (ids on the device) -> CPU decode */
    {
        int32_t *d_ids = NULL;
        cudaMalloc((void **)&d_ids, 4 * N_TOK);
        cudaMemcpy(d_ids, ids, 4 * N_TOK, cudaMemcpyHostToDevice);
        kvtc_cache dc = hc;
        void *d_k = NULL, *d_v = NULL, *d_out = NULL, *d_ws = NULL;
        uint64_t *d_w = NULL, w = 0;
        cudaMalloc(&d_k, kb); cudaMalloc(&d_v, kb);
        cudaMemcpy(d_k, hc.k, kb, cudaMemcpyHostToDevice);
        cudaMemcpy(d_v, hc.v, kb, cudaMemcpyHostToDevice);
        dc.k = d_k;
        dc.v = d_v;
        dc.positions = NULL;
        dc.token_ids = d_ids;
        size_t cap = kvtc_cuda_compress_bound(cc, &dc), ws = kvtc_cuda_workspace_size(cc, N_TOK, 0);
        CHECK(cap > 0);
        cudaMalloc(&d_out, cap ? cap : 1); cudaMalloc(&d_ws, ws); cudaMalloc((void **)&d_w, 8);
        /* a basis that recomputes layers needs the token ids */
        kvtc_cache no_ids = dc;
        no_ids.token_ids = NULL;
        CHECK(kvtc_cuda_compress_bound(cc, &no_ids) == 0);
        CHECK(kvtc_cuda_compress(cc, &no_ids, d_out, cap, d_w, d_ws, ws, 0) == KVTC_ERR_INVALID_ARGUMENT);
        CHECK(kvtc_cuda_compress(cc, &dc, d_out, cap, d_w, d_ws, ws, 0) == KVTC_OK);
        CHECK(cudaDeviceSynchronize() == cudaSuccess);
        cudaMemcpy(&w, d_w, 8, cudaMemcpyDeviceToHost);
        uint8_t *gs = malloc(w ? w : 1);
        cudaMemcpy(gs, d_out, w, cudaMemcpyDeviceToHost);
        kvtc_stream_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        CHECK(kvtc_stream_get_info(gs, w, &info) == KVTC_OK && info.has_token_ids && info.recompute_layers == 1 &&
              info.has_model_fingerprint && info.model_fingerprint == MODEL_FP);
        kvtc_cache back;
        synth_alloc_like(&g, KVTC_DTYPE_F16, N_TOK, 0, &back);
        back.token_ids = malloc(4 * N_TOK);
        CHECK(kvtc_decompress(dec, gs, w, &back) == KVTC_OK);
        CHECK(memcmp(back.token_ids, ids, 4 * N_TOK) == 0);
        double eg = 0, ec = 0;
        for (uint64_t t = 0; t < N_TOK; t++) {
            eg += synth_token_sqerr(&hc, &back, 1, t) + synth_token_sqerr(&hc, &back, 0, t);
            ec += synth_token_sqerr(&hc, &cpu, 1, t) + synth_token_sqerr(&hc, &cpu, 0, t);
        }
        printf("GPU-encoded recompute stream, CPU-decoded: error %.4g (CPU stream %.4g)\n", eg, ec);
        CHECK(eg <= 1.05 * ec + 1e-6);
        uint32_t nch = 0;
        CHECK(gpu_test_rans_identical(gs, w, b, &nch) && nch > 0);
        synth_cache_free(&back);
        free(gs);
        cudaFree(d_k); cudaFree(d_v); cudaFree(d_out); cudaFree(d_ws); cudaFree(d_w); cudaFree(d_ids);
    }
    kvtc_cuda_codec_free(cc);
    kvtc_decoder_free(dec);
    synth_cache_free(&cpu);
    synth_cache_free(&gpu);
    cudaFree(md.d_k);
    cudaFree(md.d_v);
    free(ids);
    free(s);
    synth_free(&sc);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
