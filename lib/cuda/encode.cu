// encode.cu - kvtc_cuda_compress: the host orchestration of the encoder.
// Per stream (K then V): gather + RoPE removal + (x - mean) * w -> cuBLAS
// GEMM D = X B^T (fp32 out) -> quantize + pack into the chunk payloads.
// Then for all chunks at once: rANS (rans_encode.cu) -> CRCs -> chunk
// index -> section CRCs -> header. Nothing here allocates, synchronizes or
// copies to the host: every size the host cannot know is written to device
// memory.
#include <string.h>

#include "cuda/codec.cuh"
#include "cuda/common.cuh"
#include "cuda/crc.cuh"
#include "cuda/device_guard.h"
#include "cuda/header.cuh"
#include "cuda/layout.cuh"
#include "cuda/projection.cuh"
#include "cuda/quantize.cuh"
#include "cuda/rans_encode.cuh"
#include "cuda/rope_gather.cuh"
#include "cuda/stages.cuh"

extern "C" {
#include "entropy/rans.h"
#include "quant/group_quant.h"
}

// The encoder for a validated layout of device pointers (cache).
static kvtc_result compress_impl(kvtc_cuda_codec *c, const kvtc_cache_layout *cache, void *d_out, size_t cap,
                                 uint64_t *d_written, void *d_ws, size_t ws_size, uint32_t *d_status,
                                 cudaStream_t stream) {
    kvtc_result r;
    container_header h;
    if ((r = enc_header(c, cache, &h))) return r;
    if (cap < kvtc_cuda_compress_layout_bound(c, cache)) return KVTC_ERR_BUFFER_TOO_SMALL;
    Layout L;
    if (!layout_ws(c, cache->n_tokens, h.chunk_tokens, NULL, &L)) return KVTC_ERR_TOO_LARGE;
    if (ws_size < L.total) return KVTC_ERR_BUFFER_TOO_SMALL;
    uint8_t *ws = (uint8_t *)d_ws, *out = (uint8_t *)d_out;
    c->held.valid = 0;  // the payload area is about to be overwritten
    if (d_status) {
        CUDA_CHECK(c, cudaMemsetAsync(d_status, 0, 4, stream));
        CUDA_CHECK(c, launch_check_block_table(cache, ws + L.block_check, d_status, stream));
        LAUNCH_CHECK(c, "block table check");
    }
    // K and V through their layouts (the per-layer bases travel by value); ~2 KB each
    DevTensor tk, tv;
    dev_tensor(cache, 1, &tk);
    dev_tensor(cache, 0, &tv);
    const PlanDev &pd = c->plans[c->enc_plan];
    const basis_plan *pl = pd.host;
    uint64_t coded = container_coded_tokens(&h);
    uint32_t C = h.n_chunks;
    CUBLAS_CHECK(c, cublasSetStream(c->blas, stream));
    CUBLAS_CHECK(c, cublasSetWorkspace(c->blas, ws + L.blas, L.blas_size));
    PROF(c, stream, "start");
    const kvtc_geometry *g = &h.geometry;
    uint32_t LH = g->n_layers * g->n_kv_heads;

    // raw sections and positions
    if (container_raw_tokens(&h)) {
        RawRange all = {0, h.n_tokens, 0, LH};
        launch_raw_copy(tk, out + h.sections[SEC_RAW_K].offset, g->n_kv_heads, g->head_dim, h.n_tokens, h.n_sink,
                        h.n_window, 0, all, stream);
        launch_raw_copy(tv, out + h.sections[SEC_RAW_V].offset, g->n_kv_heads, g->head_dim, h.n_tokens, h.n_sink,
                        h.n_window, 0, all, stream);
    }
    if (h.flags & CONTAINER_FLAG_POSITIONS)
        launch_copy_positions(cache->positions, h.n_tokens, out + h.sections[SEC_POSITIONS].offset, stream);
    if (h.flags & CONTAINER_FLAG_TOKEN_IDS)
        launch_copy_ids(cache->token_ids, h.n_tokens, out + h.sections[SEC_TOKEN_IDS].offset, stream);
    LAUNCH_CHECK(c, "raw sections");
    PROF(c, stream, "raw sections");
    uint64_t *data_size = (uint64_t *)(ws + L.dsize);
    if (coded == 0) {
        CUDA_CHECK(c, cudaMemsetAsync(data_size, 0, 8, stream));
    } else {
        float2 *cs = (float2 *)(ws + L.cs);
        int rot = c->basis->rope_removed && g->rope_type != KVTC_ROPE_NONE;
        uint32_t n_pairs = kvi_geometry_rope_dim(g) / 2;
        if (rot) launch_rope_table(c->d_inv_freq, n_pairs, cache->positions, NULL, h.n_sink, coded, cs, stream);
        PROF(c, stream, "rope table");
        for (int s = 0; s < 2; s++) {
            RowGeom rg = row_geom(&h, s == 0, rot);
            launch_gather(c->esize, h.dtype, rg, LH - rg.lh0, s == 0 ? tk : tv, cs, c->d_mean[s], c->d_weight[s],
                          ws + L.X, stream);
            LAUNCH_CHECK(c, "gather");
            PROF(c, stream, s ? "V gather" : "K gather");
            uint32_t rk = pd.s[s].rank;
            const float *row_scale = NULL;  // FP8: the rows' operand scales
            uint32_t ld = rk;               // D's row length (FP8: rounded up to 16)
            kvtc_result pr = project_coefs(c, s, rk, coded, ws + L.X, ws + L.X8, (float *)(ws + L.rs),
                                           (float *)(ws + L.D), &ld, ws + L.blas, L.blas_size, stream, &row_scale);
            if (pr) return pr;
            PROF(c, stream, s ? "V gemm" : "K gemm");
            QuantGeom q = quant_geom(L, pd, coded, h.chunk_tokens, s);
            q.rank = ld;
            launch_quantize((const float *)(ws + L.D), row_scale, pd.s[s], q, ws + L.payload, stream);
            LAUNCH_CHECK(c, "quantize");
            PROF(c, stream, s ? "V quantize" : "K quantize");
        }
        // rANS
        SegList full, last;
        build_seglist(pl, h.chunk_tokens, &full);
        uint64_t last_n = coded - (uint64_t)(C - 1) * h.chunk_tokens;
        build_seglist(pl, last_n, &last);
        EncWs w;
        w.payload = ws + L.payload;
        w.hist = (uint32_t *)(ws + L.hist);
        w.freq = (uint16_t *)(ws + L.freq);
        w.start = (uint16_t *)(ws + L.start);
        w.npres = (uint32_t *)(ws + L.npres);
        w.lane_state = (uint32_t *)(ws + L.lstate);
        w.lane_count = (uint32_t *)(ws + L.lcount);
        w.lane_woff = (uint32_t *)(ws + L.lwoff);
        w.words = (uint16_t *)(ws + L.words);
        w.seg_bytes = (uint32_t *)(ws + L.segb);
        w.seg_mode = (uint32_t *)(ws + L.segm);
        w.seg_out = (uint32_t *)(ws + L.sego);
        w.chunk_size = (uint32_t *)(ws + L.csize);
        w.chunk_off = (uint64_t *)(ws + L.coff);
        w.data_size = data_size;
        w.Lmax = L.Lmax;
        w.Wmax = L.Wmax;
        w.max_payload = L.max_payload;
        w.C = C;
        w.last_short = last_n != h.chunk_tokens;
        CUDA_CHECK(c, cudaMemsetAsync(w.hist, 0, L.hist_bytes, stream));
        uint8_t *data = out + h.sections[SEC_CHUNK_DATA].offset;
        ProfArg pa = {c, stream};
        rans_encode_chunks(full, last, w, data, stream, prof_cb, &pa);
        LAUNCH_CHECK(c, "rANS encode");
        // chunk CRCs -> chunk index
        uint32_t chunk_pieces = (uint32_t)(rans_bound(L.max_payload, ENC_MAX_SEGS) / CRC_PIECE + 1);
        ChunkIndexArgs ix;
        ix.entries = out + h.sections[SEC_CHUNK_INDEX].offset;
        ix.chunk_off = w.chunk_off;
        ix.chunk_tokens = h.chunk_tokens;
        ix.coded = coded;
        ix.pay_full = (uint32_t)quant_payload_size(&pl->k, &pl->v, h.chunk_tokens);
        ix.pay_last = (uint32_t)quant_payload_size(&pl->k, &pl->v, last_n);
        crc_chunks_index(data, w.chunk_size, C, chunk_pieces, c->d_crc_table, (uint32_t *)(ws + L.pieces), ix, stream);
        PROF(c, stream, "chunk CRCs + index");
        LAUNCH_CHECK(c, "chunk CRCs");
    }
    // section CRCs: positions, token ids, raw K, raw V, chunk index
    uint32_t sec_pieces;
    Regions sr = section_regions(h, &sec_pieces);
    if (sec_pieces > L.max_pieces) return KVTC_ERR_BUFFER_TOO_SMALL;
    uint32_t *sec_crc = (uint32_t *)(ws + L.crc_out);
    crc_regions_store(out, sr, sec_pieces, c->d_crc_table, (uint32_t *)(ws + L.pieces), sec_crc, stream);
    PROF(c, stream, "section CRCs");
    if (c->enc_carries_plan)
        launch_write_plan_section(c->d_plan_section, c->plan_section_size, h.sections[SEC_CHUNK_DATA].offset,
                                  data_size, out, stream);
    launch_write_prefix(h, data_size, sec_crc, c->d_crc_table, out, d_written, stream);
    LAUNCH_CHECK(c, "section CRCs + header");
    PROF(c, stream, "header");
    prof_report(c, "compress");
    return KVTC_OK;
}

extern "C" kvtc_result kvtc_cuda_compress(kvtc_cuda_codec *c, const kvtc_cache *cache, void *d_out, size_t cap,
                                          uint64_t *d_written, void *d_ws, size_t ws_size, cudaStream_t stream) {
    if (!c || !cache || !d_out || !d_written || !d_ws) return KVTC_ERR_INVALID_ARGUMENT;
    cuda_clear_error(c);
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    kvtc_result r = check_dev_cache(c, cache);
    if (r) return r;
    kvtc_cache_layout l;  // the contiguous case of a layout
    kvtc_cache_layout_from_cache(cache, &l);
    if ((r = check_dev_layout(c, &l, 0, 0))) return r;
    return compress_impl(c, &l, d_out, cap, d_written, d_ws, ws_size, NULL, stream);
}

extern "C" kvtc_result kvtc_cuda_compress_layout(kvtc_cuda_codec *c, const kvtc_cache_layout *cache, void *d_out,
                                                 size_t cap, uint64_t *d_written, void *d_ws, size_t ws_size,
                                                 uint32_t *d_status, cudaStream_t stream) {
    if (!c || !cache || !d_out || !d_written || !d_ws) return KVTC_ERR_INVALID_ARGUMENT;
    if (cache->block_size && !d_status) return KVTC_ERR_INVALID_ARGUMENT;
    cuda_clear_error(c);
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    kvtc_result r = check_dev_layout(c, cache, 0, 0);
    if (r) return r;
    return compress_impl(c, cache, d_out, cap, d_written, d_ws, ws_size, d_status, stream);
}
