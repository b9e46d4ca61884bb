// decode.cu - kvtc_cuda_decompress: the host orchestration of the decoder.
// Parse chunk index and segment headers, chunk CRCs, rANS lanes, stored
// copies (rans_decode.cu), then per stream: dequantize -> GEMM X = D B ->
// (x / w + mean), RoPE, scatter into [L][H][T][d]; finally the section
// CRCs, raw tokens and positions. Stream-ordered; failures that depend on
// the data go to the device status word.
#include <string.h>

#include "cuda/codec.cuh"
#include "cuda/common.cuh"
#include "cuda/crc.cuh"
#include "cuda/device_guard.h"
#include "cuda/layout.cuh"
#include "cuda/projection.cuh"
#include "cuda/quantize.cuh"
#include "cuda/rans_decode.cuh"
#include "cuda/rope_gather.cuh"
#include "cuda/stages.cuh"

extern "C" {
#include "entropy/rans.h"
#include "quant/group_quant.h"
}

#define TRY(x)                 \
    do {                                \
        kvtc_result r_ = (x);           \
        if (r_ != KVTC_OK) return r_;   \
    } while (0)

// Parse, checksum and entropy-decode chunks [ch0, ch0 + Cn) of the stream
// (header h, plan pl) into the workspace's payload area, chunk ch0 first.
static kvtc_result entropy_decode_chunks(kvtc_cuda_codec *c, const container_header &h, const basis_plan &pl,
                                         const Layout &L, const uint8_t *in, uint8_t *ws, uint32_t ch0, uint32_t Cn,
                                         uint32_t *d_status, cudaStream_t stream) {
    uint64_t coded = container_coded_tokens(&h);
    uint32_t C = h.n_chunks;
    uint64_t last_n = coded - (uint64_t)(C - 1) * h.chunk_tokens;
    DecArgs a;
    a.in = in;
    a.index_off = h.sections[SEC_CHUNK_INDEX].offset;
    a.data_off = h.sections[SEC_CHUNK_DATA].offset;
    a.data_size = h.sections[SEC_CHUNK_DATA].size;
    a.chunk_tokens = h.chunk_tokens;
    a.coded = coded;
    a.pay[0] = (uint32_t)quant_payload_size(&pl.k, &pl.v, h.chunk_tokens);
    a.pay[1] = (uint32_t)quant_payload_size(&pl.k, &pl.v, last_n);
    a.c0 = ch0;
    a.C_total = C;
    DecWs w;
    w.payload = ws + L.payload;
    w.seg = (DSeg *)(ws + L.dseg);
    w.n_segs = (uint32_t *)(ws + L.dnseg);
    w.n_blocks = (uint32_t *)(ws + L.dnblk);
    w.chunk_off = (uint64_t *)(ws + L.dcoff);
    w.chunk_size = (uint32_t *)(ws + L.dcsize);
    w.chunk_crc = (uint32_t *)(ws + L.dccrc);
    w.max_payload = L.max_payload;
    w.C = Cn;
    launch_parse_chunks(a, w, d_status, stream);
    PROF(c, stream, "parse index+segments");
    crc_chunks_check(in + a.data_off, w.chunk_off, w.chunk_size, Cn, (uint32_t)L.max_pieces, c->d_crc_table,
                     (uint32_t *)(ws + L.pieces), w.chunk_crc, d_status, stream);
    PROF(c, stream, "chunk CRCs");
    launch_decode_lanes(a, w, rans_lane_blocks_hint(&pl.k, &pl.v, h.chunk_tokens < coded ? h.chunk_tokens : coded),
                        d_status, stream);
    PROF(c, stream, "rANS lanes");
    launch_decode_stored(a, w, stream);
    PROF(c, stream, "stored segments");
    LAUNCH_CHECK(c, "rANS decode");
    return KVTC_OK;
}

// Bytes of one token's dequantized coefficients of a stream of rank rk:
// esize each, or e4m3 rows padded to 16 for the FP8 decode GEMM
// (dequantize_coefs / reconstruct_range).
static uint64_t coef_row_bytes(const kvtc_cuda_codec *c, uint32_t rk) {
    return c->fp8_dec ? (uint64_t)(rk + 15) / 16 * 16 : (uint64_t)rk * c->esize;
}

// Where stream s's dequantized coefficients ([coded] rows of
// coef_row_bytes) start in the workspace's D area while kvtc_cuda_hold keeps
// both streams: K first, V after it (layout_ws sizes D for both).
static uint64_t hold_d_offset(const kvtc_cuda_codec *c, const PlanDev &pd, uint64_t coded, int s) {
    return s ? (coded * coef_row_bytes(c, pd.s[0].rank) + 255) & ~(uint64_t)255 : 0;
}

// Whether kvtc_cuda_hold left this stream's coefficients in this workspace,
// at the offsets this layout gives (a plan uploaded since can move them).
static int hold_matches(const kvtc_cuda_codec *c, const container_header &h, const void *d_stream, size_t size,
                        const void *d_ws, const PlanDev &pd, const Layout &L, uint64_t coded) {
    return c->held.valid && c->held.d_stream == d_stream && c->held.size == size && c->held.ws == d_ws &&
           c->held.plan == pd.fingerprint && c->held.d_off == L.D && c->held.hstat_off == L.hstat &&
           c->held.coded == coded && c->held.index_crc == h.sections[SEC_CHUNK_INDEX].crc32;
}

// The CRCs of the five checksummed sections, on the device.
static kvtc_result check_section_crcs(kvtc_cuda_codec *c, const container_header &h, const Layout &L,
                                      const uint8_t *in, uint32_t *pieces, uint32_t *d_status, cudaStream_t stream) {
    uint32_t sec_pieces;
    Regions sr = section_regions(h, &sec_pieces);
    if (sec_pieces > L.max_pieces) return KVTC_ERR_BUFFER_TOO_SMALL;
    crc_regions_check(in, sr, sec_pieces, c->d_crc_table, pieces + (uint64_t)h.n_chunks * L.max_pieces, d_status,
                      stream);
    LAUNCH_CHECK(c, "section CRCs");
    return KVTC_OK;
}

// The decoder into a layout of device pointers (out, checked by the caller).
static kvtc_result decompress_impl(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size, const void *d_stream,
                                   size_t size, const kvtc_decode_range *range, const kvtc_cache_layout *out,
                                   void *d_ws, size_t ws_size, uint32_t *d_status, cudaStream_t stream) {
    container_header h;
    kvtc_result r = container_read_prefix_only((const uint8_t *)h_prefix, prefix_size, &h);
    if (r) return r;
    const kvtc_basis *b = c->basis;
    if (h.transform_fingerprint != b->transform_fingerprint || !kvi_geometry_equal(&h.geometry, &b->geometry) ||
        h.recompute_layers != b->recompute_layers || h.rope_removed != (uint8_t)b->rope_removed)
        return KVTC_ERR_BASIS_MISMATCH;
    if (h.codec != CONTAINER_CODEC_RANS) return KVTC_ERR_UNSUPPORTED;
    // the range: stream tokens [tb, te), layers [lb, le)
    uint64_t tb = range ? range->token_begin : 0;
    uint64_t te = range && range->token_end ? range->token_end : h.n_tokens;
    uint32_t lb = range ? range->layer_begin : 0;
    uint32_t le = range && range->layer_end ? range->layer_end : h.geometry.n_layers;
    // empty ranges (tb == te, lb == le) are valid, as on the CPU: they write
    // only the range's positions and ids, after the same checks
    if (tb > te || te > h.n_tokens || lb > le || le > h.geometry.n_layers) return KVTC_ERR_INVALID_ARGUMENT;
    if (out->dtype != h.dtype || out->n_tokens != te - tb) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (size < h.total_size) return KVTC_ERR_TRUNCATED;
    // a plan of the codec, or the one the stream carries (read from the prefix)
    const PlanDev *ppd = NULL;
    if ((r = resolve_stream_plan(c, &h, (const uint8_t *)h_prefix, prefix_size, &ppd))) return r;
    const PlanDev &pd = *ppd;
    Layout L;
    if (!layout_ws(c, h.n_tokens, h.chunk_tokens, ppd, &L)) return KVTC_ERR_TOO_LARGE;
    if (ws_size < L.total) return KVTC_ERR_BUFFER_TOO_SMALL;
    const basis_plan *pl = pd.host;
    uint8_t *ws = (uint8_t *)d_ws;
    const uint8_t *in = (const uint8_t *)d_stream;
    uint64_t coded = container_coded_tokens(&h);
    const kvtc_geometry *g = &h.geometry;
    // layers of the range: all of them for the raw tokens, the stored ones
    // [sl0, le) for the coded tokens (the recomputed [lb, m) come from the hook)
    uint32_t m = h.recompute_layers, sl0 = lb > m ? lb : m;
    uint32_t H = g->n_kv_heads, lh0 = lb * H, nLH = (le - lb) * H;
    uint32_t slh0 = sl0 * H, snLH = le > sl0 ? (le - sl0) * H : 0;
    // coded tokens of the range [k0, k1) (coded index = stream token - n_sink),
    // and the run of chunks holding them [ch0, ch1)
    uint64_t w0 = h.n_tokens - h.n_window;
    uint64_t k0 = (tb > h.n_sink ? tb : h.n_sink) - h.n_sink, e0 = te < w0 ? te : w0;
    uint64_t k1 = e0 > h.n_sink ? e0 - h.n_sink : 0;
    if (k1 < k0) k1 = k0;
    uint32_t ch0 = (uint32_t)(k0 / h.chunk_tokens), ch1 = (uint32_t)((k1 + h.chunk_tokens - 1) / h.chunk_tokens);
    uint32_t Cn = k1 > k0 ? ch1 - ch0 : 0;
    uint64_t run0 = (uint64_t)ch0 * h.chunk_tokens;  // coded index of the run's first token
    uint64_t run_end = (uint64_t)ch1 * h.chunk_tokens < coded ? (uint64_t)ch1 * h.chunk_tokens : coded;
    // recomputed layers of coded tokens in the range: the engine's hook, from the stream's model
    int need_model = m && k1 > k0 && lb < m && lb < le;
    if (need_model && !c->opt.recompute) return KVTC_ERR_NEEDS_MODEL;
    if (need_model && (h.flags & CONTAINER_FLAG_MODEL_FINGERPRINT) && h.model_fingerprint != c->opt.model_fingerprint)
        return KVTC_ERR_MODEL_MISMATCH;
    if (!snLH) Cn = 0;  // no stored layer in the range: no chunk to decode
    // held: the hold checked every CRC and dequantized every chunk; its
    // status becomes this call's initial status
    int held = hold_matches(c, h, d_stream, size, d_ws, pd, L, coded);
    if (held)
        CUDA_CHECK(c, cudaMemcpyAsync(d_status, ws + L.hstat, 4, cudaMemcpyDeviceToDevice, stream));
    else
        CUDA_CHECK(c, cudaMemsetAsync(d_status, 0, 4, stream));
    CUDA_CHECK(c, launch_check_block_table(out, ws + L.block_check, d_status, stream));
    LAUNCH_CHECK(c, "block table check");
    DevTensor tk, tv;  // K and V through their layouts (by value into the kernels)
    dev_tensor(out, 1, &tk);
    dev_tensor(out, 0, &tv);
    CUBLAS_CHECK(c, cublasSetStream(c->blas, stream));
    CUBLAS_CHECK(c, cublasSetWorkspace(c->blas, ws + L.blas, L.blas_size));
    PROF(c, stream, "start");
    uint32_t *pieces = (uint32_t *)(ws + L.pieces);
    const uint8_t *pos_le = (h.flags & CONTAINER_FLAG_POSITIONS) ? in + h.sections[SEC_POSITIONS].offset : NULL;
    if (Cn) {
        uint64_t run_n = run_end - run0, n = k1 - k0;  // tokens decoded, tokens written
        // the coefficients of chunks [ch0, ch1): held by kvtc_cuda_hold, or decoded now
        const uint8_t *payload = ws + L.payload;
        if (!held) {
            c->held.valid = 0;  // the payload and D areas are overwritten
            TRY(entropy_decode_chunks(c, h, *pl, L, in, ws, ch0, Cn, d_status, stream));
        }
        float2 *cs = (float2 *)(ws + L.cs);
        int rot = b->rope_removed && g->rope_type != KVTC_ROPE_NONE;
        uint32_t n_pairs = kvi_geometry_rope_dim(g) / 2;
        // angles of the written tokens: stream tokens n_sink + [k0, k1) (a
        // hold computed those of every coded token)
        if (held)
            cs += k0 * n_pairs;
        else if (rot)
            launch_rope_table(c->d_inv_freq, n_pairs, NULL, pos_le, h.n_sink + k0, n, cs, stream);
        PROF(c, stream, "rope table");
        uint64_t col0 = (uint64_t)(slh0 - m * H) * g->head_dim, ncols = (uint64_t)snLH * g->head_dim;
        for (int s = 0; s < 2; s++) {
            uint32_t rk = pd.s[s].rank;
            // rows of the written tokens only, columns of the layer range only:
            // X row t = coded token k0 + t
            const uint8_t *Dbase;
            uint64_t row0;
            if (held) {  // the hold's D holds coded tokens [0, coded) of both streams
                Dbase = ws + L.D + hold_d_offset(c, pd, coded, s);
                row0 = k0;
            } else {
                QuantGeom q = quant_geom(L, pd, run_n, h.chunk_tokens, s);
                CUDA_CHECK(c, dequantize_coefs(c, s, ws + L.D, pd.s[s], q, payload, stream));
                LAUNCH_CHECK(c, "dequantize");
                PROF(c, stream, s ? "V dequantize" : "K dequantize");
                Dbase = ws + L.D;
                row0 = k0 - run0;
            }
            TRY(reconstruct_range(c, s, rk, Dbase, row0, n, ws + L.X, col0, ncols, ws + L.blas, L.blas_size, stream));
            PROF(c, stream, s ? "V gemm" : "K gemm");
            RowGeom rg = row_geom(&h, s == 0, rot);
            rg.lh0 = slh0;
            rg.t0 = h.n_sink + k0 - tb;  // the output token of X row 0
            rg.n = n;
            launch_scatter(c->esize, h.dtype, rg, snLH, s == 0 ? tk : tv, cs, c->d_mean[s], c->d_inv_weight[s], ws + L.X,
                           stream);
            LAUNCH_CHECK(c, "scatter");
            PROF(c, stream, s ? "V scatter" : "K scatter");
        }
    }
    if (need_model) {
        // ids and positions of stream tokens [0, te), aligned, in the workspace
        int64_t *hpos = (int64_t *)(ws + L.hpos);
        int32_t *hids = (int32_t *)(ws + L.hids);
        launch_write_positions(pos_le, 0, te, hpos, stream);
        if (h.flags & CONTAINER_FLAG_TOKEN_IDS)
            launch_write_ids(in + h.sections[SEC_TOKEN_IDS].offset, 0, te, hids, stream);
        else
            CUDA_CHECK(c, cudaMemsetAsync(hids, 0, te * 4, stream));  // a basis that recomputes always stores ids
        LAUNCH_CHECK(c, "recompute inputs");
        kvtc_decode_range rr = {tb, te, lb, le};
        if (c->opt.recompute(c->opt.recompute_user, m, hids, hpos, te, &rr, out, stream) != 0)
            return KVTC_ERR_CALLBACK;
        PROF(c, stream, "recompute hook");
    }
    // sections: CRC check (done once by a hold), raw tokens, positions
    if (!held) {
        TRY(check_section_crcs(c, h, L, in, pieces, d_status, stream));
        PROF(c, stream, "section CRCs");
    }
    if (container_raw_tokens(&h) && te > tb && nLH) {
        RawRange rr = {tb, te, lh0, nLH};
        launch_raw_copy(tk, (uint8_t *)in + h.sections[SEC_RAW_K].offset, H, g->head_dim, h.n_tokens, h.n_sink,
                        h.n_window, 1, rr, stream);
        launch_raw_copy(tv, (uint8_t *)in + h.sections[SEC_RAW_V].offset, H, g->head_dim, h.n_tokens, h.n_sink,
                        h.n_window, 1, rr, stream);
    }
    if (out->positions && te > tb) launch_write_positions(pos_le, tb, te - tb, out->positions, stream);
    if (out->token_ids && te > tb && (h.flags & CONTAINER_FLAG_TOKEN_IDS))
        launch_write_ids(in + h.sections[SEC_TOKEN_IDS].offset, tb, te - tb, out->token_ids, stream);
    LAUNCH_CHECK(c, "section CRCs + raw tokens");
    PROF(c, stream, "raw tokens + positions");
    prof_report(c, "decompress");
    return KVTC_OK;
}

extern "C" kvtc_result kvtc_cuda_decompress(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size,
                                            const void *d_stream, size_t size, kvtc_cache *out, void *d_ws, size_t ws_size,
                                            uint32_t *d_status, cudaStream_t stream) {
    if (!c || !h_prefix || !d_stream || !out || !d_ws || !d_status) return KVTC_ERR_INVALID_ARGUMENT;
    cuda_clear_error(c);
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    kvtc_result r = check_dev_cache(c, out);
    if (r) return r;
    kvtc_cache_layout l;  // the contiguous case of a layout
    kvtc_cache_layout_from_cache(out, &l);
    if ((r = check_dev_layout(c, &l, 0, 0))) return r;
    return decompress_impl(c, h_prefix, prefix_size, d_stream, size, NULL, &l, d_ws, ws_size, d_status, stream);
}

extern "C" kvtc_result kvtc_cuda_decompress_layout(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size,
                                                   const void *d_stream, size_t size, const kvtc_decode_range *range,
                                                   const kvtc_cache_layout *out, void *d_ws, size_t ws_size,
                                                   uint32_t *d_status, cudaStream_t stream) {
    if (!c || !h_prefix || !d_stream || !out || !d_ws || !d_status) return KVTC_ERR_INVALID_ARGUMENT;
    cuda_clear_error(c);
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    kvtc_result r = check_dev_layout(c, out, range ? range->layer_begin : 0, range ? range->layer_end : 0);
    if (r) return r;
    return decompress_impl(c, h_prefix, prefix_size, d_stream, size, range, out, d_ws, ws_size, d_status, stream);
}

extern "C" kvtc_result kvtc_cuda_hold(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size,
                                      const void *d_stream, size_t size, void *d_ws, size_t ws_size,
                                      uint32_t *d_status, cudaStream_t stream) {
    if (!c || !h_prefix || !d_stream || !d_ws || !d_status) return KVTC_ERR_INVALID_ARGUMENT;
    cuda_clear_error(c);
    c->held.valid = 0;
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    container_header h;
    kvtc_result r = container_read_prefix_only((const uint8_t *)h_prefix, prefix_size, &h);
    if (r) return r;
    const kvtc_basis *b = c->basis;
    if (h.transform_fingerprint != b->transform_fingerprint || !kvi_geometry_equal(&h.geometry, &b->geometry) ||
        h.recompute_layers != b->recompute_layers || h.rope_removed != (uint8_t)b->rope_removed)
        return KVTC_ERR_BASIS_MISMATCH;
    if (h.codec != CONTAINER_CODEC_RANS) return KVTC_ERR_UNSUPPORTED;
    if (size < h.total_size) return KVTC_ERR_TRUNCATED;
    const PlanDev *pd = NULL;
    if ((r = resolve_stream_plan(c, &h, (const uint8_t *)h_prefix, prefix_size, &pd))) return r;
    Layout L;
    if (!layout_ws(c, h.n_tokens, h.chunk_tokens, pd, &L)) return KVTC_ERR_TOO_LARGE;
    if (ws_size < L.total) return KVTC_ERR_BUFFER_TOO_SMALL;
    uint8_t *ws = (uint8_t *)d_ws;
    const uint8_t *in = (const uint8_t *)d_stream;
    uint64_t coded = container_coded_tokens(&h);
    CUDA_CHECK(c, cudaMemsetAsync(d_status, 0, 4, stream));
    PROF(c, stream, "start");
    if (coded) {
        // everything that does not depend on the layer range, once: chunks
        // entropy-decoded and dequantized, K's and V's coefficients side by
        // side in D, so a held decode is the range's GEMM + scatter only
        TRY(entropy_decode_chunks(c, h, *pd->host, L, in, ws, 0, h.n_chunks, d_status, stream));
        for (int s = 0; s < 2; s++) {
            QuantGeom q = quant_geom(L, *pd, coded, h.chunk_tokens, s);
            CUDA_CHECK(c, dequantize_coefs(c, s, ws + L.D + hold_d_offset(c, *pd, coded, s), pd->s[s], q,
                                           ws + L.payload, stream));
            LAUNCH_CHECK(c, "dequantize");
            PROF(c, stream, s ? "V dequantize" : "K dequantize");
        }
        const kvtc_geometry *g = &h.geometry;
        if (b->rope_removed && g->rope_type != KVTC_ROPE_NONE) {  // the angles of every coded token
            const uint8_t *pos_le = (h.flags & CONTAINER_FLAG_POSITIONS) ? in + h.sections[SEC_POSITIONS].offset : NULL;
            launch_rope_table(c->d_inv_freq, kvi_geometry_rope_dim(g) / 2, NULL, pos_le, h.n_sink, coded,
                              (float2 *)(ws + L.cs), stream);
            LAUNCH_CHECK(c, "rope table");
            PROF(c, stream, "rope table");
        }
    }
    TRY(check_section_crcs(c, h, L, in, (uint32_t *)(ws + L.pieces), d_status, stream));
    PROF(c, stream, "section CRCs");
    // held decodes start from this status (a failure here fails each of them)
    CUDA_CHECK(c, cudaMemcpyAsync(ws + L.hstat, d_status, 4, cudaMemcpyDeviceToDevice, stream));
    c->held.valid = 1;
    c->held.d_stream = d_stream;
    c->held.ws = d_ws;
    c->held.size = size;
    c->held.d_off = L.D;
    c->held.hstat_off = L.hstat;
    c->held.plan = pd->fingerprint;
    c->held.coded = coded;
    c->held.index_crc = h.sections[SEC_CHUNK_INDEX].crc32;
    prof_report(c, "hold");
    return KVTC_OK;
}

extern "C" void kvtc_cuda_release(kvtc_cuda_codec *c) {
    if (c) c->held.valid = 0;
}

extern "C" kvtc_result kvtc_cuda_stream_workspace_size(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size,
                                                       size_t *ws_size) {
    if (!c || !h_prefix || !ws_size) return KVTC_ERR_INVALID_ARGUMENT;
    *ws_size = 0;
    cuda_clear_error(c);
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return cuda_fail_rt(c, cudaErrorInvalidDevice, "cudaSetDevice(codec device)", __FILE__, __LINE__);
    container_header h;
    kvtc_result r = container_read_prefix_only((const uint8_t *)h_prefix, prefix_size, &h);
    if (r) return r;
    const kvtc_basis *b = c->basis;
    if (h.transform_fingerprint != b->transform_fingerprint || !kvi_geometry_equal(&h.geometry, &b->geometry))
        return KVTC_ERR_BASIS_MISMATCH;
    const PlanDev *pd = NULL;
    if ((r = resolve_stream_plan(c, &h, (const uint8_t *)h_prefix, prefix_size, &pd))) return r;
    Layout L;
    if (!layout_ws(c, h.n_tokens, h.chunk_tokens, pd, &L)) return KVTC_ERR_TOO_LARGE;
    *ws_size = L.total;
    return KVTC_OK;
}
