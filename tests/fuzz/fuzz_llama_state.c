/* fuzz_llama_state.c - libFuzzer target for the llama.cpp state-file reader
 * (lib/io/lcpp_state.h) and the compressed wrapper's parser
 * (lib/io/lcpp_wrap.h). Invariants: no crash, no out-of-bounds access; a
 * file that parses accounts for every byte, and its hollow file parses to
 * the same structure and expands back to the same non-K/V bytes; the float
 * read and the requantizing write stay inside the file; the input also
 * parsed as a hollow file never crashes; as a wrapper it is parsed and
 * decoded with a fixed basis (fuzz_common.h: 2 layers x 32 values), once
 * as is and once with its three CRCs recomputed so mutations reach the
 * field checks, and what decodes is a state file of the recorded size
 * with the wrapper's skeleton. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "fuzz_common.h"
#include "io/lcpp_state.h"
#include "io/lcpp_wrap.h"
#include "util/endian.h"

static void check_state(const uint8_t *data, size_t size, const lcpp_state *s) {
    if (s->size != size || s->full_size != size) abort();
    size_t hn = lcpp_state_hollow_size(s);
    uint8_t *hollow = malloc(hn + 1), *full = malloc(size + 1);
    if (!hollow || !full) abort();
    lcpp_state_make_hollow(s, data, hollow);
    lcpp_state h;
    if (lcpp_state_parse_hollow(hollow, hn, lcpp_state_shape(s), &h) != KVTC_OK) abort();
    if (h.full_size != size || h.n_stream != s->n_stream || h.layout != s->layout) abort();
    memcpy(full, data, size);
    for (uint32_t i = 0; i < s->n_stream; i++) {
        const lcpp_stream *st = &s->streams[i];
        if (!st->n_layer) continue;
        uint64_t n = (uint64_t)st->cell_count * st->k[0].n_embd * st->n_layer;
        for (uint32_t l = 0; l < st->n_layer; l++)
            if (st->k[l].n_embd != st->k[0].n_embd || st->v[l].n_embd != st->k[0].n_embd) n = 0;
        if (!n || n > (1u << 22)) continue; /* uniform rows only (what kvtc codes) */
        float *f = malloc(sizeof(float) * n);
        if (!f) abort();
        for (int key = 1; key >= 0; key--) {
            lcpp_state_read_float(s, data, i, key, f);
            lcpp_state_write_float(&h, i, key, f, full);
        }
        free(f);
    }
    /* the payloads were rewritten; everything else must be as it was */
    uint8_t *again = malloc(hn + 1);
    if (!again) abort();
    lcpp_state_make_hollow(s, full, again);
    if (memcmp(again, hollow, hn) != 0) abort();
    lcpp_state_expand(&h, hollow, full);
    lcpp_state_make_hollow(s, full, again);
    if (memcmp(again, hollow, hn) != 0) abort();
    free(again);
    free(hollow);
    free(full);
    lcpp_state_free(&h);
}

static void check_wrap(const kvtc_basis *basis, const uint8_t *data, size_t size) {
    lcpp_wrap w;
    if (lcpp_wrap_parse(data, size, &w) != KVTC_OK) return;
    void *out = NULL;
    size_t n = 0;
    if (lcpp_wrap_decompress(basis, NULL, data, size, &out, &n) == KVTC_OK) {
        lcpp_state s;
        if (n != w.full_size || lcpp_state_parse(out, n, &s) != KVTC_OK) abort();
        uint8_t *h = malloc(lcpp_state_hollow_size(&s) + 1);
        if (!h || lcpp_state_hollow_size(&s) != w.skeleton_size) abort();
        lcpp_state_make_hollow(&s, out, h);
        if (memcmp(h, w.skeleton, w.skeleton_size) != 0) abort();
        free(h);
        lcpp_state_free(&s);
    }
    free(out);
    lcpp_wrap_free(&w);
}

/* The input with the wrapper's header, set-table and skeleton CRCs made
 * right (when its sizes allow), or NULL. */
static uint8_t *with_crcs(const uint8_t *data, size_t size) {
    if (!lcpp_wrap_is_wrap(data, size) || size < LCPP_WRAP_HEADER_SIZE) return NULL;
    uint64_t hs = kvi_load_u32(data + 12), sets = kvi_load_u32(data + 20), skel = kvi_load_u64(data + 32);
    if (hs < LCPP_WRAP_HEADER_SIZE || hs > size || sets > (size - hs) / 16 || skel > size - hs - 16 * sets) return NULL;
    uint8_t *c = malloc(size);
    if (!c) abort();
    memcpy(c, data, size);
    kvi_store_u32(c + 52, (uint32_t)libdeflate_crc32(0, c + hs, (size_t)(16 * sets)));
    kvi_store_u32(c + 48, (uint32_t)libdeflate_crc32(0, c + hs + 16 * sets, (size_t)skel));
    kvi_store_u32(c + 60, (uint32_t)libdeflate_crc32(0, c, 60));
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static kvtc_basis *basis;
    if (!basis) basis = fuzz_make_basis(0);
    lcpp_state s;
    if (lcpp_state_parse(data, size, &s) == KVTC_OK) {
        check_state(data, size, &s);
        lcpp_state_free(&s);
    }
    for (uint32_t shape = 0; shape < 4; shape++)
        if (lcpp_state_parse_hollow(data, size, shape, &s) == KVTC_OK) {
            if (s.size != size || s.full_size < size || lcpp_state_shape(&s) != shape) abort();
            lcpp_state_free(&s);
        }
    check_wrap(basis, data, size);
    uint8_t *fixed = with_crcs(data, size);
    if (fixed) {
        check_wrap(basis, fixed, size);
        free(fixed);
    }
    return 0;
}
