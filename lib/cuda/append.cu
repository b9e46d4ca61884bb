// append.cu - kvtc_cuda_append: extend a stream held in host memory with
// tokens that sit in a device layout (kvtc_cuda.h).
//
// Design: the GPU gathers the new tokens out of the engine's layout
// (strided, paged) into a contiguous staging buffer with the raw-token
// kernel, they are copied to the host, and the CPU append (lib/cpu/append.c)
// does the rest with a CPU encoder of the codec's parameters. Why not the
// GPU projection: an append codes only the tokens that leave the raw window
// plus the old partial chunk (about one chunk for a turn of a conversation),
// the stream and the output live in host memory anyway, and the CPU path
// keeps the old chunks byte for byte, carries the partial chunk's payload
// without re-quantizing it and checks every input as kvtc_append does. So
// the result is exactly kvtc_append's for the same tokens (the same bytes),
// with the same error codes.
#include <stdlib.h>
#include <string.h>

#include "cuda/codec.cuh"
#include "cuda/device_guard.h"
#include "cuda/layout.cuh"
#include "cuda/rope_gather.cuh"

extern "C" {
#include "util/cache.h"
}

namespace {

// The CPU encoder with the codec's ratio (so the same plan), sink, window,
// chunk size, model fingerprint and entropy codec (rANS), made at the first
// append and kept by the codec.
kvtc_result host_encoder(kvtc_cuda_codec *c, kvtc_encoder **out) {
    if (!c->host_enc) {
        kvtc_encode_options eo;
        kvtc_encode_options_init(&eo);
        eo.ratio = c->opt.ratio;
        eo.n_sink = c->opt.n_sink;
        eo.n_window = c->opt.n_window;
        eo.chunk_tokens = c->opt.chunk_tokens;
        eo.entropy_codec = KVTC_CODEC_RANS;
        eo.model_fingerprint = c->opt.model_fingerprint;
        kvtc_result r = kvtc_encoder_alloc(c->basis, &eo, &c->host_enc);
        if (r) return r;
    }
    *out = c->host_enc;
    return KVTC_OK;
}

void host_tokens_free(kvtc_cache *h) {
    free(h->k);
    free(h->v);
    free(h->positions);
    free(h->token_ids);
    memset(h, 0, sizeof *h);
}

// One tensor of `more` gathered into d_stage as [layers][heads][n][d] (the
// raw-token kernel with no sink and a window of all n tokens) and copied
// into host memory dst. Stream-ordered; dst is pageable, so the copy
// returns once the bytes have arrived.
kvtc_result gather_tensor(kvtc_cuda_codec *c, const kvtc_cache_layout *more, int is_key, uint8_t *d_stage,
                          size_t bytes, void *dst, cudaStream_t stream) {
    const kvtc_geometry *g = &more->geometry;
    DevTensor t;
    dev_tensor(more, is_key, &t);
    uint32_t n = (uint32_t)more->n_tokens;  // <= UINT32_MAX: checked by the caller
    RawRange all = {0, n, 0, g->n_layers * g->n_kv_heads};
    launch_raw_copy(t, d_stage, g->n_kv_heads, g->head_dim, n, 0, n, 0, all, stream);
    LAUNCH_CHECK(c, "append gather");
    CUDA_CHECK(c, cudaMemcpyAsync(dst, d_stage, bytes, cudaMemcpyDeviceToHost, stream));
    return KVTC_OK;
}

// The new tokens of the device layout `more` (K, V, positions and ids when
// given) as a contiguous host cache *h (owned: host_tokens_free). Waits for
// `stream`.
kvtc_result download_tokens(kvtc_cuda_codec *c, const kvtc_cache_layout *more, cudaStream_t stream, kvtc_cache *h) {
    memset(h, 0, sizeof *h);
    h->geometry = more->geometry;
    h->dtype = more->dtype;
    h->n_tokens = more->n_tokens;
    uint64_t n = more->n_tokens;
    if (n == 0) return KVTC_OK;
    // the raw-token kernel counts window tokens in 32 bits
    if (n > UINT32_MAX) return KVTC_ERR_TOO_LARGE;
    uint64_t bytes = kvtc_cache_tensor_bytes(&more->geometry, more->dtype, n);
    if (!bytes || bytes > SIZE_MAX) return KVTC_ERR_TOO_LARGE;
    h->k = malloc((size_t)bytes);
    h->v = malloc((size_t)bytes);
    if (more->positions) h->positions = (int64_t *)malloc(sizeof(int64_t) * (size_t)n);
    if (more->token_ids) h->token_ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    if (!h->k || !h->v || (more->positions && !h->positions) || (more->token_ids && !h->token_ids))
        return KVTC_ERR_OUT_OF_MEMORY;
    // bad entries would only be skipped by the kernel (zeros appended):
    // refuse them first, with the CPU's error
    kvtc_result r = cuda_host_check_block_table(c, more, stream);
    if (r) return r;
    uint8_t *d_stage = NULL;
    CUDA_CHECK(c, cudaMallocAsync((void **)&d_stage, (size_t)bytes, stream));
    r = gather_tensor(c, more, 1, d_stage, (size_t)bytes, h->k, stream);
    if (!r) r = gather_tensor(c, more, 0, d_stage, (size_t)bytes, h->v, stream);
    cudaError_t e = cudaFreeAsync(d_stage, stream);
    if (r) {
        cudaStreamSynchronize(stream);  // the staging buffer's work must end before we return
        return r;
    }
    if (e != cudaSuccess) return cuda_fail_rt(c, e, "cudaFreeAsync(append staging)", __FILE__, __LINE__);
    if (more->positions)
        CUDA_CHECK(c, cudaMemcpyAsync(h->positions, more->positions, sizeof(int64_t) * (size_t)n,
                                      cudaMemcpyDeviceToHost, stream));
    if (more->token_ids)
        CUDA_CHECK(c, cudaMemcpyAsync(h->token_ids, more->token_ids, sizeof(int32_t) * (size_t)n,
                                      cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(c, cudaStreamSynchronize(stream));
    return KVTC_OK;
}

}  // namespace

extern "C" size_t kvtc_cuda_append_bound(kvtc_cuda_codec *c, const void *in, size_t in_size,
                                         const kvtc_cache_layout *more) {
    if (!c || !in || !more || check_dev_layout(c, more, 0, 0)) return 0;
    kvtc_encoder *e = NULL;
    if (host_encoder(c, &e)) return 0;
    // the bound depends on the token count and on whether ids are given,
    // not on the values: a host stand-in whose bases are never read (as
    // kvtc_append_bound's own), token_ids only compared with NULL
    kvtc_cache stand;
    memset(&stand, 0, sizeof stand);
    stand.geometry = more->geometry;
    stand.dtype = more->dtype;
    stand.n_tokens = more->n_tokens;
    stand.k = stand.v = (void *)in;
    stand.token_ids = (int32_t *)more->token_ids;
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(&stand, &l);
    return kvtc_append_bound(e, in, in_size, &l);
}

extern "C" kvtc_result kvtc_cuda_append(kvtc_cuda_codec *c, const void *in, size_t in_size,
                                        const kvtc_cache_layout *more, void *out, size_t cap, size_t *written,
                                        cudaStream_t stream) {
    if (!c || !in || !more || !out || !written) return KVTC_ERR_INVALID_ARGUMENT;
    cuda_clear_error(c);
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    kvtc_result r = check_dev_layout(c, more, 0, 0);
    if (r) return r;
    kvtc_encoder *e = NULL;
    if ((r = host_encoder(c, &e))) return r;
    kvtc_cache h;
    r = download_tokens(c, more, stream, &h);
    if (!r) {
        kvtc_cache_layout hl;
        kvtc_cache_layout_from_cache(&h, &hl);
        r = kvtc_append(e, in, in_size, &hl, out, cap, written);
    }
    host_tokens_free(&h);
    return r;
}
