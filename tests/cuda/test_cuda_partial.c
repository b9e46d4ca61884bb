/* test_cuda_partial.c - partial decode on the GPU (issue 11 item 2):
 * kvtc_cuda_decompress_layout with a kvtc_decode_range (first N tokens,
 * a middle range, sink-only, window-only, a layer range, one layer, both)
 * writes the matching slice of a full GPU decode (bit for bit for these ranges on an H200; kvtc_cuda.h promises equality up to GEMM rounding), and
 * nothing else (layers outside the range keep their guard values and may
 * have NULL pointers); empty token and layer ranges are accepted and write
 * nothing (as on the CPU); ranges outside the stream are
 * KVTC_ERR_INVALID_ARGUMENT; after kvtc_cuda_hold, one call per layer (the
 * entropy decoding skipped) gives the same slices. The stream is a CPU stream with a solved plan
 * and small chunks (many chunks). Exits 77 (skipped) without a GPU. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

enum { N_TOK = 700 };

int main(void) {
    gpu_test_require_device();
    kvtc_geometry g = synth_geometry(4, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_BF16, N_TOK);
    static const double ratios[] = {8, 32};
    kvtc_basis *b = NULL;
    synth_cache sc;
    if (synth_calibrate(&sp, 2, 4, 128, ratios, 2, &b) || synth_make(&sp, &sc)) return 1;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 12;
    eo.entropy_codec = KVTC_CODEC_RANS;
    eo.chunk_tokens = 64;
    uint8_t *s = NULL;
    size_t n = 0;
    CHECK(synth_compress(b, &eo, &sc.c, &s, &n) == KVTC_OK);
    kvtc_cuda_codec *cc = NULL;
    CHECK(kvtc_cuda_codec_alloc(b, NULL, &cc) == KVTC_OK);
    if (!s || !cc) return TEST_REPORT();
    size_t ws = 0;
    CHECK(kvtc_cuda_stream_workspace_size(cc, s, n, &ws) == KVTC_OK);
    const uint32_t L = g.n_layers, H = g.n_kv_heads, d = g.head_dim;
    uint64_t kb = kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_BF16, N_TOK);
    void *d_ws = NULL, *d_s = NULL, *d_k = NULL, *d_v = NULL;
    uint32_t *d_status = NULL;
    CHECK(cudaMalloc(&d_ws, ws) == cudaSuccess && cudaMalloc(&d_s, n) == cudaSuccess &&
          cudaMalloc(&d_k, kb) == cudaSuccess && cudaMalloc(&d_v, kb) == cudaSuccess &&
          cudaMalloc((void **)&d_status, 4) == cudaSuccess);
    cudaMemcpy(d_s, s, n, cudaMemcpyHostToDevice);
    /* the full decode */
    kvtc_cache full;
    memset(&full, 0, sizeof full);
    full.geometry = g;
    full.dtype = KVTC_DTYPE_BF16;
    full.n_tokens = N_TOK;
    full.k = d_k;
    full.v = d_v;
    uint32_t st = 1;
    CHECK(kvtc_cuda_decompress(cc, s, n, d_s, n, &full, d_ws, ws, d_status, 0) == KVTC_OK);
    cudaMemcpy(&st, d_status, 4, cudaMemcpyDeviceToHost);
    CHECK(st == 0);
    uint16_t *fk = malloc(kb), *fv = malloc(kb), *pk = malloc(kb), *pv = malloc(kb);
    cudaMemcpy(fk, d_k, kb, cudaMemcpyDeviceToHost);
    cudaMemcpy(fv, d_v, kb, cudaMemcpyDeviceToHost);

    /* ranges: tokens [tb, te) (te 0 = all), layers [lb, le) (le 0 = all) */
    /* empty ranges ({5, 5} tokens, {2, 2} / {4, 4} layers) are valid and
     * write nothing, as on the CPU (they were KVTC_ERR_INVALID_ARGUMENT) */
    static const uint64_t tr[][2] = {{0, 1}, {0, 4}, {0, 200}, {0, 0}, {100, 400}, {650, 700}, {2, 6}, {3, 571}, {5, 5}};
    static const uint32_t lr[][2] = {{0, 0}, {1, 3}, {3, 4}, {2, 2}, {4, 4}};
    for (size_t ti = 0; ti < sizeof tr / sizeof *tr; ti++)
        for (size_t li = 0; li < sizeof lr / sizeof *lr; li++) {
            kvtc_decode_range r;
            kvtc_decode_range_init(&r);
            r.token_begin = tr[ti][0];
            r.token_end = tr[ti][1];
            r.layer_begin = lr[li][0];
            r.layer_end = lr[li][1];
            uint64_t te = r.token_end ? r.token_end : N_TOK, nt = te - r.token_begin;
            uint32_t le = r.layer_end ? r.layer_end : L;
            /* output: [L][H][nt][d] per-layer pointers, NULL outside the layer range */
            uint64_t lbytes = (uint64_t)H * nt * d * 2;
            cudaMemset(d_k, 0x7b, kb);
            cudaMemset(d_v, 0x7b, kb);
            void *lk[8] = {0}, *lv[8] = {0};
            for (uint32_t l = r.layer_begin; l < le; l++) {
                lk[l] = (char *)d_k + l * lbytes;
                lv[l] = (char *)d_v + l * lbytes;
            }
            kvtc_cache_layout o;
            memset(&o, 0, sizeof o);
            o.geometry = g;
            o.dtype = KVTC_DTYPE_BF16;
            o.n_tokens = nt;
            kvtc_tensor_layout t = {NULL, NULL, 0, d, (int64_t)nt * d, 1, 0};
            o.k = t;
            o.v = t;
            o.k.layers = lk;
            o.v.layers = lv;
            kvtc_result rr = kvtc_cuda_decompress_layout(cc, s, n, d_s, n, &r, &o, d_ws, ws, d_status, 0);
            st = 1;
            CHECK(cudaDeviceSynchronize() == cudaSuccess);
            cudaMemcpy(&st, d_status, 4, cudaMemcpyDeviceToHost);
            CHECK_MSG(rr == KVTC_OK && st == 0, "range %zu/%zu: %s, status %u", ti, li, kvtc_result_string(rr), st);
            cudaMemcpy(pk, d_k, kb, cudaMemcpyDeviceToHost);
            cudaMemcpy(pv, d_v, kb, cudaMemcpyDeviceToHost);
            int same = 1, guard = 1;
            for (uint32_t l = 0; l < L; l++)
                for (uint32_t h = 0; h < H; h++)
                    for (uint64_t tk = 0; tk < nt; tk++)
                        for (uint32_t j = 0; j < d; j++) {
                            uint64_t oi = l * (lbytes / 2) + ((uint64_t)h * nt + tk) * d + j;
                            uint64_t fi = (((uint64_t)l * H + h) * N_TOK + r.token_begin + tk) * d + j;
                            if (l >= r.layer_begin && l < le) same &= pk[oi] == fk[fi] && pv[oi] == fv[fi];
                            else guard &= pk[oi] == 0x7b7b && pv[oi] == 0x7b7b;
                        }
            CHECK_MSG(same && guard, "range tokens [%llu, %llu) layers [%u, %u): same %d, others untouched %d",
                      (unsigned long long)r.token_begin, (unsigned long long)te, r.layer_begin, le, same, guard);
        }
    /* held: the chunks entropy-decoded once, then one call per layer (and a token range) */
    CHECK(kvtc_cuda_hold(cc, s, n, d_s, n, d_ws, ws, d_status, 0) == KVTC_OK);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    st = 1;
    cudaMemcpy(&st, d_status, 4, cudaMemcpyDeviceToHost);
    CHECK(st == 0);
    for (uint32_t l = 0; l <= L; l++) {
        kvtc_decode_range r;
        kvtc_decode_range_init(&r);
        if (l < L) { r.layer_begin = l; r.layer_end = l + 1; }
        else { r.token_begin = 130; r.token_end = 333; } /* all layers, a token range inside chunks */
        uint64_t nt = (r.token_end ? r.token_end : N_TOK) - r.token_begin;
        cudaMemset(d_k, 0x7b, kb);
        cudaMemset(d_v, 0x7b, kb);
        kvtc_cache_layout o;
        memset(&o, 0, sizeof o);
        o.geometry = g;
        o.dtype = KVTC_DTYPE_BF16;
        o.n_tokens = nt;
        kvtc_tensor_layout t = {NULL, NULL, (int64_t)H * nt * d, d, (int64_t)nt * d, 1, 0};
        o.k = t;
        o.v = t;
        o.k.base = d_k;
        o.v.base = d_v;
        CHECK(kvtc_cuda_decompress_layout(cc, s, n, d_s, n, &r, &o, d_ws, ws, d_status, 0) == KVTC_OK);
        CHECK(cudaDeviceSynchronize() == cudaSuccess);
        st = 1;
        cudaMemcpy(&st, d_status, 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(pk, d_k, kb, cudaMemcpyDeviceToHost);
        cudaMemcpy(pv, d_v, kb, cudaMemcpyDeviceToHost);
        uint32_t le = r.layer_end ? r.layer_end : L;
        int same = st == 0;
        for (uint32_t ll = r.layer_begin; ll < le; ll++)
            for (uint32_t h = 0; h < H; h++)
                for (uint64_t tk = 0; tk < nt; tk++)
                    for (uint32_t j = 0; j < d; j++) {
                        uint64_t oi = (((uint64_t)ll * H + h) * nt + tk) * d + j;
                        uint64_t fi = (((uint64_t)ll * H + h) * N_TOK + r.token_begin + tk) * d + j;
                        same &= pk[oi] == fk[fi] && pv[oi] == fv[fi];
                    }
        CHECK_MSG(same, "held decode of layers [%u, %u) tokens [%llu, +%llu) differs", r.layer_begin, le,
                  (unsigned long long)r.token_begin, (unsigned long long)nt);
    }
    kvtc_cuda_release(cc);

    /* outside the stream */
    kvtc_decode_range bad;
    kvtc_decode_range_init(&bad);
    bad.token_begin = 10;
    bad.token_end = N_TOK + 1;
    kvtc_cache_layout o;
    kvtc_cache_layout_from_cache(&full, &o);
    o.n_tokens = N_TOK + 1 - 10;
    CHECK(kvtc_cuda_decompress_layout(cc, s, n, d_s, n, &bad, &o, d_ws, ws, d_status, 0) == KVTC_ERR_INVALID_ARGUMENT);
    bad.token_end = 0;
    bad.layer_begin = 2;
    bad.layer_end = 5;
    CHECK(kvtc_cuda_decompress_layout(cc, s, n, d_s, n, &bad, &o, d_ws, ws, d_status, 0) == KVTC_ERR_INVALID_ARGUMENT);
    free(fk); free(fv); free(pk); free(pv); free(s);
    cudaFree(d_ws); cudaFree(d_s); cudaFree(d_k); cudaFree(d_v); cudaFree(d_status);
    kvtc_cuda_codec_free(cc);
    synth_free(&sc);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
