// quant_host.cu - the synchronous C entry to the (de)quantizers (quant_host.h).
#include "cuda/codec.cuh"
#include "cuda/quant_host.h"
#include "cuda/quantize.cuh"

extern "C" {
#include "quant/group_quant.h"
}

// One chunk of n tokens: the geometry quant_geom gives a codec's layout.
static QuantGeom one_chunk(const StreamPlan sp[2], uint64_t n, uint64_t payload, int s) {
    QuantGeom q;
    q.n = n;
    q.chunk_tokens = (uint32_t)n;
    q.max_payload = payload;
    q.pb[0] = sp[0].param_bytes; q.pb[1] = sp[1].param_bytes;
    q.cb[0] = sp[0].code_bits; q.cb[1] = sp[1].code_bits;
    q.stream = (uint32_t)s;
    q.rank = sp[s].rank;
    q.n_groups = sp[s].n_groups;
    return q;
}

// dir 0: host D -> payload -> host bytes; 1: host bytes -> payload -> host D.
static kvtc_result run(const plan_stream *k, const plan_stream *v, float *dk, float *dv, uint64_t n, uint8_t *bytes,
                       int dir) {
    if (!n) return KVTC_OK;
    if (n > UINT32_MAX) return KVTC_ERR_TOO_LARGE;  // one chunk: chunk_tokens is 32-bit
    StreamPlan sp[2] = {};
    kvtc_result r = build_stream_plan(k, &sp[0]);
    if (!r) r = build_stream_plan(v, &sp[1]);
    uint64_t size = quant_payload_size(k, v, n);
    float *host[2] = {dk, dv}, *d[2] = {NULL, NULL};
    uint8_t *pay = NULL;
    cudaError_t e = cudaSuccess;
    if (!r) e = cudaMalloc(&pay, size ? size : 1);
    // not zeros: a byte the quantizer failed to write shows up as a difference
    if (!r && e == cudaSuccess && dir == 0) e = cudaMemset(pay, 0xa5, size ? size : 1);
    for (int s = 0; s < 2 && !r && e == cudaSuccess; s++) {
        size_t nb = sizeof(float) * n * sp[s].rank;
        e = cudaMalloc(&d[s], nb ? nb : 1);
        if (e == cudaSuccess && dir == 0 && nb) e = cudaMemcpy(d[s], host[s], nb, cudaMemcpyHostToDevice);
    }
    if (!r && e == cudaSuccess && dir == 1 && size) e = cudaMemcpy(pay, bytes, size, cudaMemcpyHostToDevice);
    for (int s = 0; s < 2 && !r && e == cudaSuccess; s++) {
        QuantGeom q = one_chunk(sp, n, size, s);
        if (dir == 0) launch_quantize(d[s], NULL, sp[s], q, pay, 0);
        else launch_dequantize(4, d[s], sp[s], q, pay, 0);
        e = cudaGetLastError();
    }
    if (!r && e == cudaSuccess) e = cudaDeviceSynchronize();
    if (!r && e == cudaSuccess && dir == 0 && size) e = cudaMemcpy(bytes, pay, size, cudaMemcpyDeviceToHost);
    for (int s = 0; s < 2 && !r && e == cudaSuccess; s++) {
        size_t nb = sizeof(float) * n * sp[s].rank;
        if (dir == 1 && nb) e = cudaMemcpy(host[s], d[s], nb, cudaMemcpyDeviceToHost);
    }
    for (int s = 0; s < 2; s++) {
        cudaFree(d[s]);
        free_stream_plan(&sp[s]);
    }
    cudaFree(pay);
    if (!r && e != cudaSuccess) r = KVTC_ERR_CUDA;
    return r;
}

extern "C" kvtc_result kvi_cuda_quant_encode(const plan_stream *k, const plan_stream *v, const float *dk,
                                             const float *dv, uint64_t n, uint8_t *out) {
    return run(k, v, (float *)dk, (float *)dv, n, out, 0);  // dir 0 only reads dk, dv
}

extern "C" kvtc_result kvi_cuda_quant_decode(const plan_stream *k, const plan_stream *v, const uint8_t *in, uint64_t n,
                                             float *dk, float *dv) {
    return run(k, v, dk, dv, n, (uint8_t *)in, 1);  // dir 1 only reads in
}
