// store_get.cu - kvtc_cuda_store_get: a prefix-store get decoded on the GPU
// into a device layout (kvtc_cuda.h).
//
// Why here: libkvtc (the store) must not depend on CUDA, and the GPU codec
// already depends on libkvtc. The store hands verified chunk payloads to a
// decoder callback (kvtc_store_get_chunks); this file is that callback for
// the GPU: it copies the chunks' streams to the device and enqueues one
// kvtc_cuda_decompress_layout per chunk onto a token view of the caller's
// layout (the same view the CPU get uses, util/layout.h), then waits for
// the device statuses so the store can tell a restored prefix from a miss.
#include <stdlib.h>
#include <string.h>

#include "cuda/codec.cuh"
#include "cuda/device_guard.h"
#include "kvtc_cuda.h"

extern "C" {
#include "util/layout.h"
}

namespace {

struct GpuGet {
    kvtc_cuda_codec *c;
    const kvtc_cache_layout *out;  // device layout, checked
    cudaStream_t stream;
    void **k_layers, **v_layers;   // host arrays of a chunk's view
    kvtc_result err;               // a CUDA failure of our own calls
};

size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

// Stage every chunk's stream in one stream-ordered allocation (streams,
// then the codec workspace, then one status word per chunk), enqueue the
// decodes, wait, and report each chunk's result.
void gpu_decode(void *user, const kvtc_store_chunk *ch, uint64_t n, kvtc_result *res) {
    GpuGet *g = (GpuGet *)user;
    kvtc_cuda_codec *c = g->c;
    for (uint64_t i = 0; i < n; i++) res[i] = KVTC_OK;
    // host-side checks of every chunk first: the workspace its plan needs
    size_t ws = 0, off = 0;
    uint64_t n_ok = 0;
    while (n_ok < n) {
        size_t need = 0;
        kvtc_result r = ch[n_ok].codec == KVTC_STORE_CODEC_KVTC
                            ? kvtc_cuda_stream_workspace_size(c, ch[n_ok].payload, ch[n_ok].payload_size, &need)
                            : KVTC_ERR_UNSUPPORTED;  // raw chunks: decode them with kvtc_store_get
        if (r) { res[n_ok] = r; break; }
        if (need > ws) ws = need;
        off += align256(ch[n_ok].payload_size);
        n_ok++;
    }
    if (!n_ok) return;
    size_t ws_off = off, st_off = ws_off + align256(ws), total = st_off + sizeof(uint32_t) * n_ok;
    uint8_t *d_buf = NULL;
    uint32_t *h_status = (uint32_t *)calloc(n_ok, sizeof(uint32_t));
    kvtc_result *h_res = (kvtc_result *)calloc(n_ok, sizeof(kvtc_result));
    cudaError_t e = h_status && h_res ? cudaMallocAsync((void **)&d_buf, total, g->stream) : cudaErrorMemoryAllocation;
    if (e != cudaSuccess) {
        g->err = h_status && h_res ? cuda_fail_rt(c, e, "cudaMallocAsync(store get staging)", __FILE__, __LINE__)
                                   : KVTC_ERR_OUT_OF_MEMORY;
        for (uint64_t i = 0; i < n_ok; i++) res[i] = g->err;
        free(h_status);
        free(h_res);
        return;
    }
    uint32_t *d_status = (uint32_t *)(d_buf + st_off);
    // All copies first, then all decodes: a copy from pageable memory waits
    // for the stream to drain, so interleaving them would serialize every
    // chunk's copy behind the previous chunk's decode.
    uint64_t n_copied = 0;
    for (off = 0; n_copied < n_ok; n_copied++) {
        // the call returns once the bytes are staged: the store may free
        // its copy after this callback
        e = cudaMemcpyAsync(d_buf + off, ch[n_copied].payload, ch[n_copied].payload_size, cudaMemcpyHostToDevice,
                            g->stream);
        if (e != cudaSuccess) {
            h_res[n_copied] = g->err = cuda_fail_rt(c, e, "cudaMemcpyAsync(chunk stream)", __FILE__, __LINE__);
            break;
        }
        off += align256(ch[n_copied].payload_size);
    }
    off = 0;
    for (uint64_t i = 0; i < n_copied; i++) {
        uint8_t *d_stream = d_buf + off;
        off += align256(ch[i].payload_size);
        kvtc_cache_layout view;
        kvtc_result r = kvi_layout_token_view(g->out, ch[i].token_begin, ch[i].n_tokens, g->k_layers, g->v_layers, &view);
        kvtc_decode_range range = {0, ch[i].n_tokens, 0, 0};
        if (r == KVTC_OK)
            r = kvtc_cuda_decompress_layout(c, ch[i].payload, ch[i].payload_size, d_stream, ch[i].payload_size, &range,
                                            &view, d_buf + ws_off, ws, d_status + i, g->stream);
        if (r) {
            h_res[i] = r;
            if (r == KVTC_ERR_CUDA) g->err = r;
            break;  // later chunks are not restored anyway
        }
    }
    e = cudaMemcpyAsync(h_status, d_status, sizeof(uint32_t) * n_ok, cudaMemcpyDeviceToHost, g->stream);
    cudaError_t e2 = cudaFreeAsync(d_buf, g->stream), e3 = cudaStreamSynchronize(g->stream);
    if (e == cudaSuccess) e = e2;
    if (e == cudaSuccess) e = e3;
    if (e != cudaSuccess) g->err = cuda_fail_rt(c, e, "store get: status copy / free / synchronize", __FILE__, __LINE__);
    int stop = 0;
    for (uint64_t i = 0; i < n_ok; i++) {
        if (!stop && h_res[i]) stop = 1, res[i] = h_res[i];
        else if (!stop && e != cudaSuccess) stop = 1, res[i] = g->err;
        else if (!stop && h_status[i]) stop = 1, res[i] = (kvtc_result)h_status[i];  // a device-side check failed
        else if (stop) res[i] = KVTC_ERR_INVALID_ARGUMENT;  // not decoded (the store reads only up to the first failure)
    }
    free(h_status);
    free(h_res);
}


// positions 0.. and the token ids of the restored tokens, to the device
kvtc_result write_ids(kvtc_cuda_codec *c, const kvtc_cache_layout *out, const int32_t *tokens, uint64_t done,
                      cudaStream_t stream) {
    if (!done || (!out->positions && !out->token_ids)) return KVTC_OK;
    int64_t *pos = (int64_t *)malloc(sizeof(int64_t) * (size_t)done);
    if (!pos) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint64_t t = 0; t < done; t++) pos[t] = (int64_t)t;
    cudaError_t e = cudaSuccess;
    if (out->positions) e = cudaMemcpyAsync(out->positions, pos, sizeof(int64_t) * done, cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess && out->token_ids)
        e = cudaMemcpyAsync(out->token_ids, tokens, sizeof(int32_t) * done, cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);  // pos is freed below
    free(pos);
    return e == cudaSuccess ? KVTC_OK : cuda_fail_rt(c, e, "cudaMemcpyAsync(positions / token ids)", __FILE__, __LINE__);
}

}  // namespace

// The block table lives on the device; check it on a host copy, as the CPU
// get does, before anything is fetched. A block repeated in two chunks is
// visible only to a check of the whole table (each chunk's decode checks
// its own C / block_size entries on the device).
kvtc_result cuda_host_check_block_table(kvtc_cuda_codec *c, const kvtc_cache_layout *out, cudaStream_t stream) {
    if (!out->block_size || !out->n_tokens) return KVTC_OK;
    uint64_t n = (out->n_tokens + out->block_size - 1) / out->block_size;
    int32_t *h = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    if (!h) return KVTC_ERR_OUT_OF_MEMORY;
    cudaError_t e = cudaMemcpyAsync(h, out->block_table, sizeof(int32_t) * n, cudaMemcpyDeviceToHost, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    kvtc_result r = KVTC_OK;
    if (e != cudaSuccess) {
        r = cuda_fail_rt(c, e, "cudaMemcpyAsync(block table to host)", __FILE__, __LINE__);
    } else {
        kvtc_cache_layout mirror = *out;  // addresses are only compared, never followed, by the check
        mirror.block_table = h;
        r = kvi_layout_check(&mirror, 0, out->geometry.n_layers);
    }
    free(h);
    return r;
}

extern "C" kvtc_result kvtc_cuda_store_get(kvtc_cuda_codec *c, kvtc_store *s, const int32_t *tokens,
                                           uint64_t n_tokens, const kvtc_cache_layout *out, cudaStream_t stream,
                                           uint64_t *n_restored) {
    if (n_restored) *n_restored = 0;
    if (!c || !s || !out || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    cuda_clear_error(c);
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    kvtc_result r = check_dev_layout(c, out, 0, 0);
    if (r) return r;
    // the store's codec, basis and dtype must be the codec's and the
    // layout's: checked here, so that a mismatch is the caller's error and
    // never makes the store reject (delete) good records
    kvtc_store_info si;
    si.struct_size = sizeof si;
    if ((r = kvtc_store_info_get(s, &si))) return r;
    if (si.codec != KVTC_STORE_CODEC_KVTC) return KVTC_ERR_UNSUPPORTED;
    if (!si.basis || kvtc_basis_fingerprint(si.basis) != kvtc_basis_fingerprint(c->basis)) return KVTC_ERR_BASIS_MISMATCH;
    if (out->dtype != si.dtype) return KVTC_ERR_GEOMETRY_MISMATCH;
    // chunk views shift a paged layout by whole blocks
    if (out->block_size && si.chunk_tokens % out->block_size) return KVTC_ERR_UNSUPPORTED;
    if ((r = cuda_host_check_block_table(c, out, stream))) return r;
    uint32_t L = out->geometry.n_layers;
    void **layers = (void **)malloc(sizeof(void *) * 2 * (L ? L : 1));
    if (!layers) return KVTC_ERR_OUT_OF_MEMORY;
    GpuGet g = {c, out, stream, layers, layers + L, KVTC_OK};
    uint64_t done = 0;
    r = kvtc_store_get_chunks(s, tokens, n_tokens, out->n_tokens, gpu_decode, &g, &done);
    free(layers);
    if (r == KVTC_OK) r = write_ids(c, out, tokens, done, stream);
    if (r) return r;
    if (n_restored) *n_restored = done;
    return KVTC_OK;
}
