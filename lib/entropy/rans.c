/* rans.c - see rans.h. Block layout (docs/FORMAT.md, entropy codec 2):
 * a chunk is a sequence of segments covering its payload in order:
 *
 *   stored:  u32 size, u8 1, then the size payload bytes.
 *   rANS:    u32 size, u8 0, u8 period P (1, 2, 4), u16 n_lanes (1..4096,
 *            a multiple of P), P frequency tables (32-byte bitmap of present
 *            symbols, bit s&7 of byte s>>3, then a u16 freq per present
 *            symbol in increasing order, summing to 4096), u32 state[n_lanes],
 *            u32 words[n_lanes], then lane 0's words[0] u16 words, lane 1's...
 *
 * Byte i of a segment belongs to lane i % n_lanes and uses table i % P
 * (= lane % P). The encoder runs each lane backwards from L = 2^16; each
 * step emits at most one 16-bit word, so the decoder needs at most one
 * refill per symbol. A lane must end with its state back at L having
 * consumed exactly its words: this plus the chunk CRC rejects corrupt blocks. */
#include "entropy/rans.h"
#include "util/bitexact.h"

#include <stdlib.h>
#include <string.h>

#include "model/basis.h"
#include "util/endian.h"

void rans_normalize(const uint32_t count[256], uint64_t n, uint32_t freq[256]) {
    uint64_t rem[256];
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        uint64_t scaled = (uint64_t)count[s] * RANS_PROB_SCALE;
        freq[s] = (uint32_t)(scaled / n);
        rem[s] = scaled % n;
        sum += freq[s];
    }
    /* 1. Largest remainders get the deficit, one each (deficit < present);
     * 2. present symbols that rounded to 0 get 1 (util/bitexact.h: the
     * CUDA encoder runs the same steps, one thread per symbol). */
    uint32_t deficit = RANS_PROB_SCALE - sum;
    for (uint32_t s = 0; s < 256; s++) freq[s] += (uint32_t)kvi_rans_gets_deficit(count, rem, s, deficit);
    kvi_rans_fix_zeros(count, freq);
}

uint32_t rans_merge_segments(rans_segment *segs, uint32_t n_segs) {
    uint32_t m = 0;
    for (uint32_t i = 0; i < n_segs; i++) {
        if (segs[i].size == 0) continue;
        /* P tables cost P times as much: contexts only pay on long segments */
        if (segs[i].size < segs[i].period * RANS_MIN_SEGMENT) segs[i].period = 1;
        if (m && segs[m - 1].period == segs[i].period &&
            (segs[m - 1].size < RANS_MIN_SEGMENT || segs[i].size < RANS_MIN_SEGMENT) &&
            (uint64_t)segs[m - 1].size + segs[i].size <= UINT32_MAX) {
            segs[m - 1].size += segs[i].size;
        } else {
            segs[m++] = segs[i];
        }
    }
    return m;
}

static int push_seg(rans_segment *out, uint32_t cap, uint32_t *n, uint64_t size, uint32_t period) {
    if (size == 0) return 1;
    if (size > UINT32_MAX) return 0;
    if (*n && out[*n - 1].period == period && out[*n - 1].size + size <= UINT32_MAX && period != 1) {
        out[*n - 1].size += (uint32_t)size; /* same kind of parameter run continues */
        return 1;
    }
    if (*n >= cap) return 0;
    out[*n].size = (uint32_t)size;
    out[*n].period = period;
    (*n)++;
    return 1;
}

uint32_t rans_plan_segments(const struct plan_stream *k, const struct plan_stream *v, uint64_t n_tokens,
                            rans_segment *out, uint32_t cap) {
    const plan_stream *ss[2] = {k, v};
    uint32_t n = 0;
    /* parameters: K's groups then V's */
    for (int si = 0; si < 2; si++)
        for (uint32_t i = 0; i < ss[si]->n_groups; i++) {
            const dp_group *g = &ss[si]->groups[i];
            if (g->bits >= 1 && g->bits <= DP_MAX_BITS) {
                if (!push_seg(out, cap, &n, 4 * n_tokens, 4)) return 0;
            } else if (g->bits == DP_RAW_BITS) {
                if (!push_seg(out, cap, &n, 2ull * g->size * n_tokens, 2)) return 0;
            }
        }
    /* codes: runs of one bit width; the bitstream is byte-aligned at every
     * group because quantized group sizes are multiples of 8 */
    uint64_t run_bits = 0;
    uint32_t run_width = 0;
    for (int si = 0; si < 2; si++)
        for (uint32_t i = 0; i < ss[si]->n_groups; i++) {
            const dp_group *g = &ss[si]->groups[i];
            if (!(g->bits >= 1 && g->bits <= DP_MAX_BITS)) continue;
            if (g->bits != run_width && run_bits) {
                if (run_bits % 8 || !push_seg(out, cap, &n, run_bits / 8, 1)) return 0;
                run_bits = 0;
            }
            run_width = g->bits;
            run_bits += (uint64_t)g->size * g->bits * n_tokens;
        }
    if (run_bits && !push_seg(out, cap, &n, (run_bits + 7) / 8, 1)) return 0;
    return n;
}

static size_t store_segment(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    if (cap < n + RANS_STORED_HEADER) return 0;
    kvi_store_u32(out, (uint32_t)n);
    out[4] = RANS_MODE_STORED;
    memcpy(out + RANS_STORED_HEADER, in, n);
    return n + RANS_STORED_HEADER;
}

/* One segment; scratch holds at least n + RANS_MAX_LANES u16 words. */
static size_t encode_segment(const uint8_t *in, size_t n, uint32_t period, uint8_t *out, size_t cap,
                             uint16_t *scratch) {
    uint32_t lanes = rans_lanes_for(n);
    size_t per_lane = n / lanes + 1;
    uint32_t count[RANS_MAX_PERIOD][256];
    uint32_t freq[RANS_MAX_PERIOD][256], start[RANS_MAX_PERIOD][256];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++) count[i % period][in[i]]++;
    size_t head = RANS_SEG_HEADER + 8 * (size_t)lanes;
    for (uint32_t c = 0; c < period; c++) {
        uint64_t tot = n / period + (c < n % period ? 1 : 0);
        if (tot == 0) return store_segment(in, n, out, cap); /* (tiny segments only) */
        rans_normalize(count[c], tot, freq[c]);
        uint32_t acc = 0;
        head += 32;
        for (int s = 0; s < 256; s++) {
            start[c][s] = acc;
            acc += freq[c][s];
            head += freq[c][s] ? 2 : 0;
        }
    }
    if (head >= n + RANS_STORED_HEADER) return store_segment(in, n, out, cap);
    uint32_t state[RANS_MAX_LANES], pos[RANS_MAX_LANES];
    for (uint32_t j = 0; j < lanes; j++) { state[j] = RANS_STATE_L; pos[j] = (uint32_t)per_lane; }
    size_t rows = (n + lanes - 1) / lanes;
    for (size_t k = rows; k-- > 0;) {
        size_t base = k * lanes;
        uint32_t jmax = n - base < lanes ? (uint32_t)(n - base) : lanes;
        for (uint32_t j = 0; j < jmax; j++) {
            uint32_t c = j % period, s = in[base + j], f = freq[c][s];
            uint32_t x = state[j];
            uint64_t x_max = ((uint64_t)(RANS_STATE_L >> RANS_PROB_BITS) << 16) * f;
            if (x >= x_max) {
                scratch[(size_t)j * per_lane + --pos[j]] = (uint16_t)x;
                x >>= 16;
            }
            state[j] = ((x / f) << RANS_PROB_BITS) + (x % f) + start[c][s];
        }
    }
    size_t words = 0;
    for (uint32_t j = 0; j < lanes; j++) words += per_lane - pos[j];
    size_t total = head + 2 * words;
    if (total >= n + RANS_STORED_HEADER) return store_segment(in, n, out, cap);
    if (cap < total) return 0;
    kvi_store_u32(out, (uint32_t)n);
    out[4] = RANS_MODE_RANS;
    out[5] = (uint8_t)period;
    kvi_store_u16(out + 6, (uint16_t)lanes);
    uint8_t *o = out + RANS_SEG_HEADER;
    for (uint32_t c = 0; c < period; c++) {
        uint8_t *bm = o;
        memset(bm, 0, 32);
        o += 32;
        for (int s = 0; s < 256; s++)
            if (freq[c][s]) {
                bm[s >> 3] |= (uint8_t)(1u << (s & 7));
                kvi_store_u16(o, (uint16_t)freq[c][s]);
                o += 2;
            }
    }
    uint8_t *st = o, *wc = o + 4 * (size_t)lanes, *wp = o + 8 * (size_t)lanes;
    for (uint32_t j = 0; j < lanes; j++) {
        uint32_t w = (uint32_t)per_lane - pos[j];
        kvi_store_u32(st + 4 * (size_t)j, state[j]);
        kvi_store_u32(wc + 4 * (size_t)j, w);
        const uint16_t *src = scratch + (size_t)j * per_lane + pos[j];
        for (uint32_t i = 0; i < w; i++) kvi_store_u16(wp + 2 * (size_t)i, src[i]);
        wp += 2 * (size_t)w;
    }
    return total;
}

kvtc_result rans_encode(const uint8_t *in, size_t n, const rans_segment *segs, uint32_t n_segs, uint8_t *out,
                        size_t cap, size_t *out_size) {
    rans_segment one = {(uint32_t)n, 1};
    kvtc_result r = KVTC_ERR_INVALID_ARGUMENT;
    *out_size = 0;
    if (!segs || n_segs == 0) {
        if (n > UINT32_MAX) return KVTC_ERR_TOO_LARGE;
        segs = &one;
        n_segs = 1;
    }
    rans_segment *m = malloc(sizeof *m * n_segs);
    uint16_t *scratch = malloc(sizeof(uint16_t) * (n + RANS_MAX_LANES));
    size_t written = 0, off = 0;
    if (!m || !scratch) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail; }
    memcpy(m, segs, sizeof *m * n_segs);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n_segs; i++) {
        if (m[i].period != 1 && m[i].period != 2 && m[i].period != 4) goto fail;
        sum += m[i].size;
    }
    if (sum != n) goto fail;
    uint32_t k = rans_merge_segments(m, n_segs);
    for (uint32_t i = 0; i < k; i++) {
        size_t z = encode_segment(in + off, m[i].size, m[i].period, out + written, cap - written, scratch);
        if (!z) { r = KVTC_ERR_BUFFER_TOO_SMALL; goto fail; }
        written += z;
        off += m[i].size;
    }
    *out_size = written;
    r = KVTC_OK;
fail:
    free(m);
    free(scratch);
    return r;
}

/* Decode one rANS segment of n bytes from in[0..size); *used = its bytes. */
static kvtc_result decode_segment(const uint8_t *in, size_t size, uint8_t *out, size_t n, size_t *used) {
    if (size < RANS_SEG_HEADER) return KVTC_ERR_CORRUPT;
    uint32_t period = in[5], lanes = kvi_load_u16(in + 6);
    if ((period != 1 && period != 2 && period != 4) || lanes == 0 || lanes > RANS_MAX_LANES || lanes % period)
        return KVTC_ERR_CORRUPT;
    size_t off = RANS_SEG_HEADER;
    uint16_t freq[RANS_MAX_PERIOD][256], start[RANS_MAX_PERIOD][256];
    uint8_t sym[RANS_MAX_PERIOD][RANS_PROB_SCALE];
    for (uint32_t c = 0; c < period; c++) {
        if (size - off < 32) return KVTC_ERR_CORRUPT;
        const uint8_t *bm = in + off;
        off += 32;
        uint32_t sum = 0;
        for (int s = 0; s < 256; s++) {
            uint32_t f = 0;
            if (bm[s >> 3] & (1u << (s & 7))) {
                if (size - off < 2) return KVTC_ERR_CORRUPT;
                f = kvi_load_u16(in + off);
                off += 2;
                if (f == 0 || f > RANS_PROB_SCALE - sum) return KVTC_ERR_CORRUPT;
            }
            freq[c][s] = (uint16_t)f;
            start[c][s] = (uint16_t)sum;
            for (uint32_t i = 0; i < f; i++) sym[c][sum + i] = (uint8_t)s;
            sum += f;
        }
        if (sum != RANS_PROB_SCALE) return KVTC_ERR_CORRUPT;
    }
    if ((size - off) / 8 < lanes) return KVTC_ERR_CORRUPT;
    const uint8_t *st = in + off, *wc = in + off + 4 * (size_t)lanes;
    const uint8_t *words = in + off + 8 * (size_t)lanes;
    size_t avail = size - off - 8 * (size_t)lanes;
    uint32_t x[RANS_MAX_LANES];
    size_t ptr[RANS_MAX_LANES], end[RANS_MAX_LANES];
    size_t w_used = 0;
    for (uint32_t j = 0; j < lanes; j++) {
        x[j] = kvi_load_u32(st + 4 * (size_t)j);
        uint64_t w = kvi_load_u32(wc + 4 * (size_t)j);
        if (x[j] < RANS_STATE_L || w > (avail - w_used) / 2) return KVTC_ERR_CORRUPT;
        ptr[j] = w_used;
        w_used += 2 * w;
        end[j] = w_used;
    }
    for (size_t base = 0; base < n; base += lanes) {
        uint32_t jmax = n - base < lanes ? (uint32_t)(n - base) : lanes;
        for (uint32_t j = 0; j < jmax; j++) {
            uint32_t c = j % period;
            uint32_t v = x[j];
            uint32_t slot = v & (RANS_PROB_SCALE - 1);
            uint32_t s = sym[c][slot];
            v = freq[c][s] * (v >> RANS_PROB_BITS) + slot - start[c][s];
            if (v < RANS_STATE_L) {
                if (ptr[j] == end[j]) return KVTC_ERR_CORRUPT;
                v = (v << 16) | kvi_load_u16(words + ptr[j]);
                ptr[j] += 2;
            }
            x[j] = v;
            out[base + j] = (uint8_t)s;
        }
    }
    for (uint32_t j = 0; j < lanes; j++)
        if (x[j] != RANS_STATE_L || ptr[j] != end[j]) return KVTC_ERR_CORRUPT;
    *used = off + 8 * (size_t)lanes + w_used;
    return KVTC_OK;
}

kvtc_result rans_decode(const uint8_t *in, size_t size, uint8_t *out, size_t n) {
    size_t off = 0, done = 0;
    while (off < size) {
        if (size - off < RANS_STORED_HEADER) return KVTC_ERR_CORRUPT;
        uint32_t len = kvi_load_u32(in + off);
        if (len == 0 || len > n - done) return KVTC_ERR_CORRUPT;
        uint8_t mode = in[off + 4];
        size_t used = 0;
        if (mode == RANS_MODE_STORED) {
            if (size - off - RANS_STORED_HEADER < len) return KVTC_ERR_CORRUPT;
            memcpy(out + done, in + off + RANS_STORED_HEADER, len);
            used = RANS_STORED_HEADER + (size_t)len;
        } else if (mode == RANS_MODE_RANS) {
            kvtc_result r = decode_segment(in + off, size - off, out + done, len, &used);
            if (r) return r;
        } else {
            return KVTC_ERR_CORRUPT;
        }
        off += used;
        done += len;
    }
    return done == n ? KVTC_OK : KVTC_ERR_CORRUPT;
}
