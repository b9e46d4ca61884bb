/* fuzz_stream.c - libFuzzer target for the stream container and the CPU
 * decoder: kvtc_stream_get_info + kvtc_decompress with a fixed small basis
 * (fuzz_common.h, calibrated in-process at startup).
 *
 * Each input is decoded twice: as is (so the CRC checks themselves are
 * fuzzed), and once more with every CRC (header, section table, sections,
 * chunks) recomputed, so that mutations reach the field checks, the chunk
 * index, the entropy decoders and dequantization behind the checksums.
 * A stream that decodes is also extended by kvtc_append with a few of its
 * own decoded tokens (an encoder with the stream's parameters), so that the
 * append's reading of the old stream (kept chunks, the partial last
 * chunk's payload) is fuzzed too.
 * Invariants: no crash or sanitizer report; get_info and decompress agree on
 * whether the prefix is valid; a successful decode wrote every byte; an
 * append that succeeds writes a stream that decodes. */
#include <libdeflate.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "kvtc.h"

static kvtc_basis *g_basis;
static kvtc_decoder *g_dec1, *g_dec2;

#define MAX_DECODED (4u << 20) /* bytes of k (and of v) we are willing to allocate */

static int recompute_zero(void *user, uint32_t n_layers, const int32_t *ids, const int64_t *pos,
                          uint64_t n, float *k, float *v) {
    (void)user; (void)ids; (void)pos;
    (void)n_layers; (void)n; (void)k; (void)v;
    return 1; /* refuse: the fuzz basis recomputes nothing, so never reached on success */
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    g_basis = fuzz_make_basis(0);
    kvtc_decode_options o;
    kvtc_decode_options_init(&o);
    o.recompute = recompute_zero;
    if (kvtc_decoder_alloc(g_basis, &o, &g_dec1)) abort();
    o.n_threads = 2;
    if (kvtc_decoder_alloc(g_basis, &o, &g_dec2)) abort();
    return 0;
}

static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Recompute every CRC the format has, trusting nothing (bounds checked). */
static void fix_crcs(uint8_t *b, size_t n) {
    if (n < 272) return;
    uint8_t *tab = b + 128;
    /* 1.1: a seventh section (the plan) when flag bit 2 is set */
    int n_sec = (b[16] & 4) && n >= 128 + 7 * 24 ? 7 : 6;
    for (int s = 0; s < n_sec; s++) { /* sections but chunk data */
        if (s == 5) continue;
        uint64_t off = ld64(tab + 24 * s), sz = ld64(tab + 24 * s + 8);
        if (off <= n && sz <= n - off) st32(tab + 24 * s + 16, (uint32_t)libdeflate_crc32(0, b + off, (size_t)sz));
    }
    /* chunks: index entries are in section 4, data in section 5 */
    uint64_t io = ld64(tab + 96), is = ld64(tab + 104), dof = ld64(tab + 120), ds = ld64(tab + 128);
    if (io <= n && is <= n - io && dof <= n && ds <= n - dof) {
        for (uint64_t e = 0; e + 24 <= is; e += 24) {
            uint8_t *ent = b + io + e;
            uint64_t co = ld64(ent);
            uint32_t cs = ld32(ent + 8);
            if (co <= ds && cs <= ds - co) st32(ent + 12, (uint32_t)libdeflate_crc32(0, b + dof + co, cs));
        }
        /* the index changed: its section CRC again */
        st32(tab + 24 * 4 + 16, (uint32_t)libdeflate_crc32(0, b + io, (size_t)is));
    }
    st32(b + 108, (uint32_t)libdeflate_crc32(0, tab, (size_t)n_sec * 24));
    st32(b + 124, (uint32_t)libdeflate_crc32(0, b, 124));
}

/* kvtc_append of the first min(3, n) tokens of c (the stream's own decode)
 * to the stream, with an encoder of its parameters; a result must decode. */
static void append_some(const uint8_t *data, size_t size, const kvtc_stream_info *info, const kvtc_cache *c) {
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = info->plan_ratio;
    eo.n_sink = info->n_sink;
    eo.n_window = info->n_window;
    eo.chunk_tokens = info->chunk_tokens;
    eo.entropy_codec = info->entropy_codec;
    kvtc_encoder *e = NULL;
    if (kvtc_encoder_alloc(g_basis, &eo, &e)) return;
    kvtc_cache_layout more;
    kvtc_cache_layout_from_cache(c, &more);
    more.n_tokens = c->n_tokens < 3 ? c->n_tokens : 3; /* strides of the whole cache */
    more.positions = NULL;
    more.token_ids = NULL;
    size_t cap = kvtc_append_bound(e, data, size, &more), n = 0;
    uint8_t *out = cap && cap <= (8u << 20) ? malloc(cap) : NULL;
    if (out && kvtc_append(e, data, size, &more, out, cap, &n) == KVTC_OK) {
        kvtc_stream_info ai = {.struct_size = sizeof ai};
        if (kvtc_stream_get_info(out, n, &ai) != KVTC_OK || ai.n_tokens != info->n_tokens + more.n_tokens) abort();
    }
    free(out);
    kvtc_encoder_free(e);
}

static void decode_one(const uint8_t *data, size_t size, int threads) {
    kvtc_stream_info info = {.struct_size = sizeof info};
    kvtc_result ri = kvtc_stream_get_info(data, size, &info);
    if (ri != KVTC_OK) {
        /* decompress validates the same prefix: it must fail as well */
        kvtc_cache dummy;
        memset(&dummy, 0, sizeof dummy);
        if (kvtc_decompress(g_dec1, data, size, &dummy) == KVTC_OK) abort();
        return;
    }
    if (info.k_bytes > MAX_DECODED || info.n_tokens > (1u << 20)) return;
    kvtc_cache c;
    memset(&c, 0, sizeof c);
    c.geometry = info.geometry;
    c.dtype = info.dtype;
    c.n_tokens = info.n_tokens;
    size_t kb = (size_t)info.k_bytes;
    c.k = malloc(kb ? kb : 1);
    c.v = malloc(kb ? kb : 1);
    c.positions = malloc(sizeof(int64_t) * (info.n_tokens + 1));
    c.token_ids = malloc(sizeof(int32_t) * (info.n_tokens + 1));
    if (c.k && c.v && c.positions && c.token_ids) {
        memset(c.k, 0xA5, kb);
        memset(c.v, 0x5A, kb);
        kvtc_result r = kvtc_decompress(threads > 1 ? g_dec2 : g_dec1, data, size, &c);
        if (r == KVTC_OK) {
            /* touch everything (MSan-style: uninitialized bytes would be
             * the 0xA5/0x5A fill, which is legal data, so only read) */
            volatile uint8_t acc = 0;
            for (size_t i = 0; i < kb; i++) acc ^= ((uint8_t *)c.k)[i] ^ ((uint8_t *)c.v)[i];
            (void)acc;
            append_some(data, size, &info, &c);
        }
        /* a partial decode (issue 11) into the same buffers: token and
         * layer range from the input's last bytes; must not read or write
         * outside them whatever the stream says */
        if (size >= 4 && info.n_tokens) {
            kvtc_decode_range rg;
            kvtc_decode_range_init(&rg);
            rg.token_begin = data[size - 1] % (info.n_tokens + 1);
            rg.token_end = rg.token_begin + data[size - 2] % (info.n_tokens - rg.token_begin + 1);
            rg.layer_begin = data[size - 3] % info.geometry.n_layers;
            rg.layer_end = rg.layer_begin + 1 + data[size - 4] % (info.geometry.n_layers - rg.layer_begin);
            kvtc_cache_layout lay;
            kvtc_cache_layout_from_cache(&c, &lay);
            lay.n_tokens = (rg.token_end ? rg.token_end : info.n_tokens) - rg.token_begin; /* strides of the full cache */
            kvtc_decompress_layout(threads > 1 ? g_dec2 : g_dec1, data, size, &rg, &lay);
        }
    }
    free(c.k); free(c.v); free(c.positions); free(c.token_ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    decode_one(data, size, 1);
    if (size >= 272 && size <= (1u << 22)) {
        uint8_t *copy = malloc(size);
        if (!copy) return 0;
        memcpy(copy, data, size);
        fix_crcs(copy, size);
        decode_one(copy, size, (size & 1) ? 2 : 1);
        free(copy);
    }
    return 0;
}
