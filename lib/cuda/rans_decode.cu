// rans_decode.cu - the GPU rANS decoder (rans_decode.cuh).
#include <stdlib.h>

#include "cuda/rans_decode.cuh"

extern "C" {
#include "entropy/rans.h"
#include "format/container.h"
#include "model/basis.h"
}

// One block per chunk: thread 0 walks the index entry and the segment
// headers (each depends on the last); the block sums each rANS segment's
// lane word counts (up to RANS_MAX_LANES loads, the slow part when one
// thread did it).
#define PARSE_THREADS 128u
__global__ void __launch_bounds__(PARSE_THREADS) parse_k(DecArgs a, DecWs w, uint32_t *status) {
    __shared__ uint32_t s_state;         // 0 walking, 1 sum requested, 2 done
    __shared__ const uint8_t *s_cnt;     // the segment's lane counts
    __shared__ uint32_t s_N;
    __shared__ unsigned long long s_words;
    uint32_t c = blockIdx.x, tid = threadIdx.x;
    if (c >= w.C) return;
    // thread 0's walk, kept in its registers between sums
    const uint8_t *p = NULL;
    uint64_t size = 0, pay = 0, pos = 0, done = 0, o = 0;
    uint32_t ns = 0, blk = 0;
    DSeg d;
    DSeg *sd = w.seg + (uint64_t)c * DEC_MAX_SEGS;
    bool ok = true;
    if (tid == 0) {
        w.n_segs[c] = 0;
        w.n_blocks[c] = 0;
        w.chunk_size[c] = 0;
        w.chunk_off[c] = 0;
        uint32_t gc = a.c0 + c;  // the chunk's index in the stream
        const uint8_t *e = a.in + a.index_off + (uint64_t)gc * CONTAINER_CHUNK_ENTRY;
        uint64_t off = ld_u64(e);
        uint32_t crc = ld_u32(e + 12), ntok = ld_u32(e + 16);
        size = ld_u32(e + 8);
        pay = ld_u32(e + 20);
        uint64_t first = (uint64_t)gc * a.chunk_tokens;
        uint32_t want_n = (uint32_t)(a.coded - first < a.chunk_tokens ? a.coded - first : a.chunk_tokens);
        uint32_t want_pay = want_n == a.chunk_tokens ? a.pay[0] : a.pay[1];
        if (off > a.data_size || size > a.data_size - off || ntok != want_n || pay != want_pay) ok = false;
        // issue 9 item 4 (decompression bomb): chunks back to back from 0,
        // filling chunk data exactly, none claiming more payload than its
        // bytes can produce (the CPU's container_check_chunk_index)
        const uint8_t *prev = e - CONTAINER_CHUNK_ENTRY;
        if (ok) {
            bool layout_ok = gc == 0 ? off == 0 : off == ld_u64(prev) + ld_u32(prev + 8);
            if (gc == a.C_total - 1 && off + size != a.data_size) layout_ok = false;
            if (pay > size * CONTAINER_MAX_EXPANSION + CONTAINER_EXPANSION_SLACK) layout_ok = false;
            ok = layout_ok;
        }
        if (ok) {
            w.chunk_off[c] = off;
            w.chunk_size[c] = (uint32_t)size;
            w.chunk_crc[c] = crc;
            p = a.in + a.data_off + off;
        }
        s_state = 0;
    }
    __syncthreads();
    for (;;) {
        if (tid == 0) {
            if (s_state == 1) {  // a sum came back: finish the segment
                uint64_t words = s_words;
                o += 8ull * d.N;
                if (words > (size - pos - o) / 2) ok = false;
                else {
                    pos += o + 2 * words;
                    blk += (d.N + LANE_BLOCK - 1) / LANE_BLOCK;
                    done += d.n;
                    sd[ns++] = d;
                }
            }
            s_state = 2;
            // walk until the next rANS segment needs its lane words summed
            while (ok && pos < size) {
                if (ns == DEC_MAX_SEGS) { set_status(status, KVTC_ERR_UNSUPPORTED); ok = false; break; }
                if (size - pos < RANS_STORED_HEADER) { ok = false; break; }
                d.off = pos;
                d.n = ld_u32(p + pos);
                d.mode = p[pos + 4];
                d.pay_off = (uint32_t)done;
                d.blk_base = blk;
                d.P = d.N = d.st_off = 0;
                if (d.n == 0 || d.n > pay - done) { ok = false; break; }
                if (d.mode == RANS_MODE_STORED) {
                    if (size - pos - RANS_STORED_HEADER < d.n) { ok = false; break; }
                    pos += RANS_STORED_HEADER + (uint64_t)d.n;
                    done += d.n;
                    sd[ns++] = d;
                } else if (d.mode == RANS_MODE_RANS) {
                    if (size - pos < RANS_SEG_HEADER) { ok = false; break; }
                    d.P = p[pos + 5];
                    d.N = ld_u16(p + pos + 6);
                    if ((d.P != 1 && d.P != 2 && d.P != 4) || d.N == 0 || d.N > RANS_MAX_LANES || d.N % d.P) {
                        ok = false;
                        break;
                    }
                    o = RANS_SEG_HEADER;
                    for (uint32_t t = 0; t < d.P && ok; t++) {
                        if (size - pos - o < 32) { ok = false; break; }
                        uint32_t k = 0;
                        for (int b = 0; b < 32; b++) k += __popc(p[pos + o + b]);
                        o += 32 + 2ull * k;
                        if (o > size - pos) ok = false;
                    }
                    if (!ok) break;
                    if ((size - pos - o) / 8 < d.N) { ok = false; break; }
                    d.st_off = (uint32_t)o;
                    s_cnt = p + pos + o + 4ull * d.N;
                    s_N = d.N;
                    s_words = 0;
                    s_state = 1;
                    break;
                } else {
                    ok = false;
                    break;
                }
            }
        }
        __syncthreads();
        if (s_state != 1) break;
        unsigned long long part = 0;
        for (uint32_t j = tid; j < s_N; j += PARSE_THREADS) part += ld_u32(s_cnt + 4ull * j);
        atomicAdd(&s_words, part);
        __syncthreads();
    }
    if (tid == 0) {
        if (ok && done != pay) ok = false;
        if (ok) {
            w.n_segs[c] = ns;
            w.n_blocks[c] = blk;
        } else {
            set_status(status, KVTC_ERR_CORRUPT);
        }
    }
}

__global__ void __launch_bounds__(LANE_BLOCK) dec_lanes_k(DecArgs a, DecWs w, uint32_t *status) {
    __shared__ uint8_t sym[4][RANS_PROB_SCALE];
    __shared__ uint16_t fr[4][256], stt[4][256];
    __shared__ uint32_t fs[4][256];  // fr | stt << 16: one load per decoded symbol instead of two
    __shared__ uint32_t scan[LANE_BLOCK];
    __shared__ int s_seg, s_bad;
    __shared__ uint32_t s_base;
    uint32_t c = blockIdx.y, tid = threadIdx.x;
    uint32_t nb = w.n_blocks[c];
    const uint8_t *chunk = a.in + a.data_off + w.chunk_off[c];
    const DSeg *sd = w.seg + (uint64_t)c * DEC_MAX_SEGS;
    for (uint32_t b = blockIdx.x; b < nb; b += gridDim.x) {
        if (tid == 0) {
            int s = -1;
            for (uint32_t i = 0; i < w.n_segs[c]; i++)
                if (sd[i].mode == RANS_MODE_RANS && sd[i].blk_base <= b) s = (int)i;
            s_seg = s;
            s_bad = 0;
            s_base = 0;
        }
        __syncthreads();
        const DSeg d = sd[s_seg];
        const uint8_t *sp = chunk + d.off;
        // tables
        uint64_t o = RANS_SEG_HEADER;
        for (uint32_t t = 0; t < d.P; t++) {
            const uint8_t *bm = sp + o;
            for (uint32_t s = tid; s < 256; s += LANE_BLOCK) {
                uint32_t idx = 0;
                for (uint32_t q = 0; q < (s >> 3); q++) idx += __popc(bm[q]);
                idx += __popc(bm[s >> 3] & ((1u << (s & 7)) - 1u));
                uint32_t present = (bm[s >> 3] >> (s & 7)) & 1u;
                fr[t][s] = present ? (uint16_t)ld_u16(bm + 32 + 2 * idx) : 0;
                if (present && (ld_u16(bm + 32 + 2 * idx) == 0 || ld_u16(bm + 32 + 2 * idx) > RANS_PROB_SCALE))
                    s_bad = 1;
            }
            uint32_t k = 0;
            for (int q = 0; q < 32; q++) k += __popc(bm[q]);
            o += 32 + 2ull * k;
        }
        __syncthreads();
        if (tid < d.P) {
            uint32_t acc = 0;
            for (int s = 0; s < 256; s++) { stt[tid][s] = (uint16_t)(acc < 65535 ? acc : 65535); acc += fr[tid][s]; }
            if (acc != RANS_PROB_SCALE) s_bad = 1;
        }
        __syncthreads();
        if (s_bad) {
            if (tid == 0) set_status(status, KVTC_ERR_CORRUPT);
            __syncthreads();
            continue;
        }
        // slot -> symbol, one slot per thread: the last symbol starting at
        // or before the slot (binary search of the cumulative table; a
        // symbol of frequency 0 starts where the next one does, so it never
        // wins). Balanced, where a loop per symbol leaves one thread
        // writing thousands of slots of a skewed table.
        for (uint32_t t = 0; t < d.P; t++)
            for (uint32_t slot = tid; slot < RANS_PROB_SCALE; slot += LANE_BLOCK) {
                uint32_t lo = 0, hi = 256;  // stt[lo] <= slot < stt[hi]
                while (hi - lo > 1) {
                    uint32_t mid = (lo + hi) / 2;
                    if (stt[t][mid] <= slot) lo = mid;
                    else hi = mid;
                }
                sym[t][slot] = (uint8_t)lo;
            }
        for (uint32_t t = 0; t < d.P; t++)
            for (uint32_t s = tid; s < 256; s += LANE_BLOCK) fs[t][s] = (uint32_t)fr[t][s] | ((uint32_t)stt[t][s] << 16);
        // word offsets: lanes before this block, then a scan inside it
        uint32_t j0 = (b - d.blk_base) * LANE_BLOCK, j = j0 + tid;
        const uint8_t *st = sp + d.st_off, *cnt = st + 4ull * d.N, *words = st + 8ull * d.N;
        uint32_t before = 0;
        for (uint32_t q = tid; q < j0; q += LANE_BLOCK) before += ld_u32(cnt + 4ull * q);
        atomicAdd(&s_base, before);
        uint32_t mine = j < d.N ? ld_u32(cnt + 4ull * j) : 0;
        scan[tid] = mine;
        __syncthreads();
        if (tid == 0) {
            uint32_t acc = s_base;
            for (uint32_t q = 0; q < LANE_BLOCK; q++) { uint32_t v = scan[q]; scan[q] = acc; acc += v; }
        }
        __syncthreads();
        if (j < d.N) {
            uint32_t t = j % d.P;
            uint32_t x = ld_u32(st + 4ull * j);
            uint64_t wp = 2ull * scan[tid], wend = wp + 2ull * mine;
            uint32_t m = j < d.n ? (d.n - 1 - j) / d.N + 1 : 0;
            uint8_t *out = w.payload + (uint64_t)c * w.max_payload + d.pay_off + j;
            bool ok = x >= RANS_STATE_L;
            const uint8_t *symt = sym[t];
            const uint32_t *fst = fs[t];
            // The next three renormalization words, loaded ahead as raw
            // bytes (the words are not aligned) and combined only when
            // consumed: a load's latency then overlaps the symbols decoded
            // in the meantime. Combining at load time (a PRMT right after
            // the loads) stalled on every load: half the kernel's stall
            // samples on the H200 (ncu source view).
            uint32_t b0 = wp < wend ? words[wp] : 0, b1 = wp + 1 < wend ? words[wp + 1] : 0;
            uint32_t b2 = wp + 2 < wend ? words[wp + 2] : 0, b3 = wp + 3 < wend ? words[wp + 3] : 0;
            uint32_t b4 = wp + 4 < wend ? words[wp + 4] : 0, b5 = wp + 5 < wend ? words[wp + 5] : 0;
            uint8_t *o = out;
            for (uint32_t k = 0; k < m && ok; k++) {
                uint32_t slot = x & (RANS_PROB_SCALE - 1);
                uint32_t s = symt[slot], e = fst[s];
                x = (e & 0xffffu) * (x >> RANS_PROB_BITS) + slot - (e >> 16);
                if (x < RANS_STATE_L) {
                    if (wp == wend) { ok = false; break; }
                    x = (x << 16) | b0 | (b1 << 8);
                    wp += 2;
                    b0 = b2; b1 = b3; b2 = b4; b3 = b5;
                    b4 = wp + 4 < wend ? words[wp + 4] : 0;
                    b5 = wp + 5 < wend ? words[wp + 5] : 0;
                }
                *o = (uint8_t)s;
                o += d.N;
            }
            if (!ok || x != RANS_STATE_L || wp != wend) set_status(status, KVTC_ERR_CORRUPT);
        }
        __syncthreads();
    }
}

__global__ void dec_stored_k(DecArgs a, DecWs w) {
    uint32_t c = blockIdx.y, s = blockIdx.x;
    if (s >= w.n_segs[c]) return;
    const DSeg d = w.seg[(uint64_t)c * DEC_MAX_SEGS + s];
    if (d.mode != RANS_MODE_STORED) return;
    const uint8_t *src = a.in + a.data_off + w.chunk_off[c] + d.off + RANS_STORED_HEADER;
    uint8_t *dst = w.payload + (uint64_t)c * w.max_payload + d.pay_off;
    for (uint32_t i = threadIdx.x; i < d.n; i += blockDim.x) dst[i] = src[i];
}

void launch_parse_chunks(const DecArgs &a, const DecWs &w, uint32_t *status, cudaStream_t st) {
    if (w.C) parse_k<<<w.C, PARSE_THREADS, 0, st>>>(a, w, status);
}

void launch_decode_lanes(const DecArgs &a, const DecWs &w, uint32_t blocks_hint, uint32_t *status, cudaStream_t st) {
    // lane blocks per chunk: the hint (what this library's encoders write),
    // else about payload / 2048 / 128; blocks loop over any more a chunk has
    uint32_t gx = (uint32_t)(a.pay[0] / RANS_SYMBOLS_PER_LANE / LANE_BLOCK + 2);
    if (blocks_hint > gx) gx = blocks_hint < 65535 ? blocks_hint : 65535;
    dec_lanes_k<<<dim3(gx, w.C), LANE_BLOCK, 0, st>>>(a, w, status);
}

uint32_t rans_lane_blocks_hint(const plan_stream *k, const plan_stream *v, uint64_t n_tokens) {
    uint32_t cap = 2 * (k->n_groups + v->n_groups) + 2;
    rans_segment *seg = (rans_segment *)malloc(sizeof(rans_segment) * cap);
    if (!seg) return 0;
    uint32_t ns = rans_plan_segments(k, v, n_tokens, seg, cap);
    ns = rans_merge_segments(seg, ns);
    uint64_t blocks = 0;
    for (uint32_t i = 0; i < ns; i++) blocks += (rans_lanes_for(seg[i].size) + LANE_BLOCK - 1) / LANE_BLOCK;
    free(seg);
    return blocks < 65535 ? (uint32_t)blocks : 65535;
}

void launch_decode_stored(const DecArgs &a, const DecWs &w, cudaStream_t st) {
    dec_stored_k<<<dim3(DEC_MAX_SEGS, w.C), 256, 0, st>>>(a, w);
}
