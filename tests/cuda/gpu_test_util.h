/* gpu_test_util.h - helpers of the GPU ctests (tests/cuda): skip without a
 * GPU, run a GPU encode or decode to completion, and the CPU<->GPU rANS
 * byte-identity check (every chunk of a stream re-encoded by the CPU's
 * rans_encode from its decoded payload must give the same bytes). */
#ifndef KVTC_GPU_TEST_UTIL_H
#define KVTC_GPU_TEST_UTIL_H

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entropy/rans.h"
#include "model/basis.h"
#include "format/container.h"
#include "kvtc_cuda.h"

/* exit 77 (ctest: skipped) when no CUDA device is present */
static inline void gpu_test_require_device(void) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("no CUDA device: skipped\n");
        exit(77);
    }
}

/* GPU-encode a host cache (copied to the device); returns the stream
 * (malloc'd, *n bytes) or NULL, with *r the result. */
static inline uint8_t *gpu_test_encode(kvtc_cuda_codec *cc, const kvtc_cache *hc, size_t *n, kvtc_result *r) {
    uint64_t kb = kvtc_cache_tensor_bytes(&hc->geometry, hc->dtype, hc->n_tokens);
    size_t ws = kvtc_cuda_workspace_size(cc, hc->n_tokens, 0);
    kvtc_cache dc = *hc;
    dc.token_ids = NULL;
    dc.positions = NULL;
    void *d_k = NULL, *d_v = NULL, *d_ws = NULL, *d_out = NULL;
    uint64_t *d_w = NULL, w = 0;
    uint8_t *out = NULL;
    *r = KVTC_ERR_CUDA;
    if (cudaMalloc(&d_k, kb) || cudaMalloc(&d_v, kb) || cudaMalloc(&d_ws, ws ? ws : 1) ||
        cudaMalloc((void **)&d_w, 8))
        goto done;
    cudaMemcpy(d_k, hc->k, kb, cudaMemcpyHostToDevice);
    cudaMemcpy(d_v, hc->v, kb, cudaMemcpyHostToDevice);
    dc.k = d_k;
    dc.v = d_v;
    size_t cap = kvtc_cuda_compress_bound(cc, &dc);
    if (!cap || cudaMalloc(&d_out, cap)) goto done;
    *r = kvtc_cuda_compress(cc, &dc, d_out, cap, d_w, d_ws, ws, 0);
    if (*r) goto done;
    if (cudaDeviceSynchronize() || cudaMemcpy(&w, d_w, 8, cudaMemcpyDeviceToHost) || w > cap) {
        *r = KVTC_ERR_CUDA;
        goto done;
    }
    out = (uint8_t *)malloc(w ? w : 1);
    if (out && cudaMemcpy(out, d_out, w, cudaMemcpyDeviceToHost)) { free(out); out = NULL; }
    *n = w;
done:
    cudaFree(d_k); cudaFree(d_v); cudaFree(d_ws); cudaFree(d_out); cudaFree(d_w);
    return out;
}

/* GPU-decode stream s[0..n) (prefix_size bytes of it given as the host
 * prefix) into host cache out (allocated by the caller with the stream's
 * geometry). Returns the API result, or the device status when the API
 * accepted the call. */
static inline kvtc_result gpu_test_decode(kvtc_cuda_codec *cc, const uint8_t *s, size_t n, size_t prefix_size,
                                          kvtc_cache *out) {
    uint64_t kb = kvtc_cache_tensor_bytes(&out->geometry, out->dtype, out->n_tokens);
    size_t ws = 0;
    kvtc_result r = kvtc_cuda_stream_workspace_size(cc, s, prefix_size, &ws);
    if (r) return r;
    void *d_k = NULL, *d_v = NULL, *d_ws = NULL, *d_s = NULL;
    uint32_t *d_status = NULL, status = 0;
    kvtc_cache dc = *out;
    dc.token_ids = NULL;
    dc.positions = NULL;
    r = KVTC_ERR_CUDA;
    if (cudaMalloc(&d_k, kb) || cudaMalloc(&d_v, kb) || cudaMalloc(&d_ws, ws) || cudaMalloc(&d_s, n) ||
        cudaMalloc((void **)&d_status, 4))
        goto done;
    cudaMemcpy(d_s, s, n, cudaMemcpyHostToDevice);
    dc.k = d_k;
    dc.v = d_v;
    r = kvtc_cuda_decompress(cc, s, prefix_size, d_s, n, &dc, d_ws, ws, d_status, 0);
    if (r) goto done;
    if (cudaDeviceSynchronize() || cudaMemcpy(&status, d_status, 4, cudaMemcpyDeviceToHost) ||
        cudaMemcpy(out->k, d_k, kb, cudaMemcpyDeviceToHost) || cudaMemcpy(out->v, d_v, kb, cudaMemcpyDeviceToHost)) {
        r = KVTC_ERR_CUDA;
        goto done;
    }
    r = (kvtc_result)status;
done:
    cudaFree(d_k); cudaFree(d_v); cudaFree(d_ws); cudaFree(d_s); cudaFree(d_status);
    return r;
}

/* 1 when every chunk of the rANS stream s re-encodes on the CPU to the same
 * bytes (*n_chunks receives the count); 0 otherwise or on a parse error. */
static inline int gpu_test_rans_identical(const uint8_t *s, size_t n, const kvtc_basis *b, uint32_t *n_chunks) {
    container_header h;
    *n_chunks = 0;
    if (container_read_prefix(s, n, &h) || h.codec != CONTAINER_CODEC_RANS) return 0;
    basis_plan carried;
    memset(&carried, 0, sizeof carried);
    const basis_plan *pl = NULL;
    int pi = basis_find_plan_by_fingerprint(b, h.plan_fingerprint);
    if (pi >= 0) pl = &b->plans[pi];
    else if (container_read_plan_section(s, &h, b, &carried) == KVTC_OK) pl = &carried;
    if (!pl) return 0;
    int same = 1;
    *n_chunks = h.n_chunks;
    for (uint32_t i = 0; i < h.n_chunks && same; i++) {
        container_chunk_entry ce;
        if (container_read_chunk_entry(s, &h, i, &ce)) { same = 0; break; }
        const uint8_t *z = s + h.sections[SEC_CHUNK_DATA].offset + ce.offset;
        uint32_t cap = 2 * (pl->k.n_groups + pl->v.n_groups) + 1;
        uint8_t *pay = (uint8_t *)malloc(ce.payload_size + 1);
        size_t rcap = rans_bound(ce.payload_size, 1024), zs = 0;
        uint8_t *re = (uint8_t *)malloc(rcap);
        rans_segment *segs = (rans_segment *)malloc(sizeof *segs * cap);
        if (!pay || !re || !segs || rans_decode(z, ce.size, pay, ce.payload_size)) {
            same = 0;
        } else {
            uint32_t ns = rans_plan_segments(&pl->k, &pl->v, ce.n_tokens, segs, cap);
            same = rans_encode(pay, ce.payload_size, segs, ns, re, rcap, &zs) == KVTC_OK && zs == ce.size &&
                   memcmp(re, z, zs) == 0;
        }
        free(pay); free(re); free(segs);
    }
    if (pl == &carried) {
        plan_stream_free(&carried.k);
        plan_stream_free(&carried.v);
    }
    return same;
}

#endif
