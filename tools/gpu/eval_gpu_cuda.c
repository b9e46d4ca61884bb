/* eval_gpu_cuda.c - eval_gpu.h on the CUDA codec (the kvtc-gpu build). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/eval_gpu.h"
#include "kvtc_cuda.h"

struct eval_gpu {
    kvtc_cuda_codec *cc;
};

int eval_gpu_built(void) { return 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

kvtc_result eval_gpu_open(const kvtc_basis *b, eval_gpu_projection projection, double ratio, uint32_t n_sink,
                          uint32_t n_window, eval_gpu **out, char *msg, size_t msg_cap) {
    *out = NULL;
    if (msg && msg_cap) msg[0] = 0;
    if ((unsigned)projection > EVAL_GPU_FP8_FAST) return KVTC_ERR_INVALID_ARGUMENT;
    if (kvtc_basis_recomputed_layers(b)) return KVTC_ERR_UNSUPPORTED;
    kvtc_cuda_options o;
    kvtc_cuda_options_init(&o);
    o.ratio = ratio;
    o.n_sink = n_sink;
    o.n_window = n_window;
    static const kvtc_cuda_projection proj[] = {
        KVTC_CUDA_PROJ_DEFAULT, KVTC_CUDA_PROJ_FP8,
        (kvtc_cuda_projection)(KVTC_CUDA_PROJ_FP8 | KVTC_CUDA_PROJ_FP8_FAST_ACCUM)};
    o.projection = proj[projection];
    eval_gpu *g = calloc(1, sizeof *g);
    if (!g) return KVTC_ERR_OUT_OF_MEMORY;
    cudaGetLastError(); /* a stale error of an earlier call is not this one's reason */
    kvtc_result r = kvtc_cuda_codec_alloc(b, &o, &g->cc);
    if (r) {
        cudaError_t e = cudaGetLastError();
        if (r == KVTC_ERR_CUDA && msg && msg_cap && e != cudaSuccess) snprintf(msg, msg_cap, "%s", cudaGetErrorString(e));
        free(g);
        return r;
    }
    *out = g;
    return KVTC_OK;
}

/* The device buffers of one round trip, freed together. */
typedef struct dev_bufs {
    void *k, *v, *ws, *stream;
    uint64_t *written;
    uint32_t *status;
} dev_bufs;

static void dev_free(dev_bufs *d) {
    cudaFree(d->k);
    cudaFree(d->v);
    cudaFree(d->ws);
    cudaFree(d->stream);
    cudaFree(d->written);
    cudaFree(d->status);
}

kvtc_result eval_gpu_roundtrip(eval_gpu *g, kvtc_cache *c, size_t *size, kvtc_stream_info *info, double *enc_s,
                               double *dec_s, char *msg, size_t msg_cap) {
    if (msg && msg_cap) msg[0] = 0;
    cudaGetLastError(); /* clear a stale error: the one reported below is this call's */
    uint64_t kb = kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens);
    dev_bufs d;
    memset(&d, 0, sizeof d);
    kvtc_cache dc = *c;  /* positions 0..n-1 and no token ids, as the eval's prefixes */
    dc.positions = NULL;
    dc.token_ids = NULL;
    kvtc_result r = KVTC_ERR_CUDA;
    uint8_t *host = NULL;
    uint64_t w = 0;
    uint32_t status = 0;
    size_t ws = kvtc_cuda_workspace_size(g->cc, c->n_tokens, 0), cap = 0, dws = 0;
    double t0 = now_s();
    if (!ws || cudaMalloc(&d.k, kb) || cudaMalloc(&d.v, kb) || cudaMalloc(&d.ws, ws) ||
        cudaMalloc((void **)&d.written, 8) || cudaMalloc((void **)&d.status, 4))
        goto done;
    if (cudaMemcpy(d.k, c->k, kb, cudaMemcpyHostToDevice) || cudaMemcpy(d.v, c->v, kb, cudaMemcpyHostToDevice))
        goto done;
    dc.k = d.k;
    dc.v = d.v;
    cap = kvtc_cuda_compress_bound(g->cc, &dc);
    if (!cap || cudaMalloc(&d.stream, cap)) goto done;
    if ((r = kvtc_cuda_compress(g->cc, &dc, d.stream, cap, d.written, d.ws, ws, 0))) goto done;
    r = KVTC_ERR_CUDA;
    if (cudaDeviceSynchronize() || cudaMemcpy(&w, d.written, 8, cudaMemcpyDeviceToHost)) goto done;
    if (w > cap) { /* never copy past the buffer: the device's size is not trusted */
        if (msg && msg_cap)
            snprintf(msg, msg_cap, "the encoder reported %llu stream bytes, over its bound of %zu",
                     (unsigned long long)w, cap);
        goto done;
    }
    if (!(host = malloc(w ? w : 1))) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    if (cudaMemcpy(host, d.stream, w, cudaMemcpyDeviceToHost)) goto done;
    double t1 = now_s();
    /* decode into zeroed tensors: nothing of the input survives in them */
    if (cudaMemset(d.k, 0, kb) || cudaMemset(d.v, 0, kb)) goto done;
    if ((r = kvtc_cuda_stream_workspace_size(g->cc, host, w, &dws))) goto done;
    if (dws > ws) { r = KVTC_ERR_BUFFER_TOO_SMALL; goto done; }
    if ((r = kvtc_cuda_decompress(g->cc, host, w, d.stream, w, &dc, d.ws, ws, d.status, 0))) goto done;
    r = KVTC_ERR_CUDA;
    if (cudaDeviceSynchronize() || cudaMemcpy(&status, d.status, 4, cudaMemcpyDeviceToHost)) goto done;
    if (status) { r = (kvtc_result)status; goto done; }
    if (cudaMemcpy(c->k, d.k, kb, cudaMemcpyDeviceToHost) || cudaMemcpy(c->v, d.v, kb, cudaMemcpyDeviceToHost))
        goto done;
    *enc_s = t1 - t0;
    *dec_s = now_s() - t1;
    *size = (size_t)w;
    r = kvtc_stream_get_info(host, w, info);
done:
    if (r == KVTC_ERR_CUDA && msg && msg_cap && !msg[0] && !kvtc_cuda_last_error(g->cc, msg, msg_cap)) {
        /* not the codec's call: one of the copies or allocations here */
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) snprintf(msg, msg_cap, "%s", cudaGetErrorString(e));
    }
    free(host);
    dev_free(&d);
    return r;
}

void eval_gpu_close(eval_gpu *g) {
    if (!g) return;
    kvtc_cuda_codec_free(g->cc);
    free(g);
}
