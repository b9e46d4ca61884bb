// rans_encode.cu - the GPU rANS encoder (rans_encode.cuh).
#include <stdlib.h>
#include <string.h>

#include "cuda/hist_runs.h"
#include "cuda/rans_encode.cuh"
#include "util/bitexact.h"

extern "C" {
#include "entropy/rans.h"
}

static __device__ __forceinline__ const SegList &pick(const SegList &full, const SegList &last, const EncWs &w, uint32_t c) {
    return (w.last_short && c == w.C - 1) ? last : full;
}
#define HIX(c, s, t) ((((uint64_t)(c) * ENC_MAX_SEGS + (s)) * 4 + (t)) * 256)

__global__ void hist_k(SegList full, SegList last, EncWs w) {
    __shared__ uint32_t h[8][4 * 256];  // one sub-histogram per warp: less contention on peaked data
    uint32_t c = blockIdx.z, s = blockIdx.y;
    const SegList &L = pick(full, last, w, c);
    if (s >= L.n) return;
    uint64_t a = (uint64_t)blockIdx.x * 65536, size = L.size[s];
    if (a >= size) return;
    uint64_t e = a + 65536 < size ? a + 65536 : size;
    for (int i = threadIdx.x; i < 8 * 1024; i += blockDim.x) (&h[0][0])[i] = 0;
    __syncthreads();
    uint32_t P = L.period[s], wp = threadIdx.x >> 5;
    const uint8_t *p = w.payload + (uint64_t)c * w.max_payload + L.off[s];
    // 16 bytes per load where the run is 16-byte aligned (a is a multiple of
    // 65536; the segment's start may not be; cuda/hist_runs.h): byte i + k
    // uses table (i + k) % P
    uint64_t a16, n16;
    kvi_hist_runs((uintptr_t)(p + a), a, e, &a16, &n16);
    for (uint64_t i = a + threadIdx.x; i < a16; i += blockDim.x) atomicAdd(&h[wp][(i % P) * 256 + p[i]], 1u);
    const uint4 *p16 = (const uint4 *)(p + a16);
    for (uint64_t v = threadIdx.x; v < n16; v += blockDim.x) {
        uint4 u = p16[v];
        const uint8_t *b = (const uint8_t *)&u;
        uint64_t i0 = a16 + 16 * v;
        for (int k = 0; k < 16; k++) atomicAdd(&h[wp][((i0 + k) % P) * 256 + b[k]], 1u);
    }
    for (uint64_t i = a16 + 16 * n16 + threadIdx.x; i < e; i += blockDim.x) atomicAdd(&h[wp][(i % P) * 256 + p[i]], 1u);
    __syncthreads();
    for (int i = threadIdx.x; i < 256 * (int)P; i += blockDim.x) {
        uint32_t v = 0;
        for (int k = 0; k < 8; k++) v += h[k][i];
        if (v) atomicAdd(&w.hist[HIX(c, s, 0) + i], v);
    }
}

// rans_normalize (lib/entropy/rans.c) with 256 threads: one table per block;
// the two rounding steps are util/bitexact.h's, as on the CPU.
__global__ void norm_k(SegList full, SegList last, EncWs w) {
    __shared__ uint32_t cnt[256], fr[256];
    __shared__ uint64_t rem[256];
    __shared__ uint32_t sum_s;
    uint32_t c = blockIdx.z, s = blockIdx.y, t = blockIdx.x, sym = threadIdx.x;
    const SegList &L = pick(full, last, w, c);
    if (s >= L.n || t >= L.period[s]) return;
    uint32_t P = L.period[s];
    uint64_t n = L.size[s] / P + (t < L.size[s] % P ? 1 : 0);
    uint64_t base = HIX(c, s, t);
    if (n == 0) {
        if (sym == 0) w.npres[((uint64_t)c * ENC_MAX_SEGS + s) * 4 + t] = 0xffffffffu;
        return;
    }
    cnt[sym] = w.hist[base + sym];
    uint64_t scaled = (uint64_t)cnt[sym] * RANS_PROB_SCALE;
    fr[sym] = (uint32_t)(scaled / n);
    rem[sym] = scaled % n;
    if (sym == 0) sum_s = 0;
    __syncthreads();
    atomicAdd(&sum_s, fr[sym]);
    __syncthreads();
    uint32_t deficit = RANS_PROB_SCALE - sum_s;
    uint32_t f = fr[sym] + (uint32_t)kvi_rans_gets_deficit(cnt, rem, sym, deficit);
    __syncthreads();
    // kvi_rans_fix_zeros with the block: present symbols that rounded to 0
    // get 1, then each unit of that excess is taken from the currently
    // largest frequency, the first such symbol on ties (an argmax per unit
    // over 256 threads, where one thread scanning 256 per unit took 0.2 ms)
    uint32_t zero = cnt[sym] && f == 0;
    if (zero) f = 1;
    fr[sym] = f;
    uint32_t excess = (uint32_t)__syncthreads_count(zero);
    uint32_t present = (uint32_t)__syncthreads_count(cnt[sym] != 0);
    __shared__ unsigned long long best_w[8];
    for (; excess; excess--) {
        unsigned long long key = ((unsigned long long)fr[sym] << 8) | (255u - sym);  // max: largest, then first
        for (int o = 16; o; o >>= 1) {
            unsigned long long k2 = __shfl_xor_sync(0xffffffffu, key, o);
            key = k2 > key ? k2 : key;
        }
        if ((sym & 31) == 0) best_w[sym >> 5] = key;
        __syncthreads();
        if (sym == 0) {
            unsigned long long b = best_w[0];
            for (int k = 1; k < 8; k++) b = best_w[k] > b ? best_w[k] : b;
            fr[255u - (uint32_t)(b & 0xffu)]--;
        }
        __syncthreads();
    }
    if (sym == 0) {  // starts: the prefix of the final frequencies
        uint32_t acc = 0;
        for (int u = 0; u < 256; u++) { uint32_t v = fr[u]; rem[u] = acc; acc += v; }
        w.npres[((uint64_t)c * ENC_MAX_SEGS + s) * 4 + t] = present;
    }
    __syncthreads();
    w.freq[base + sym] = (uint16_t)fr[sym];
    w.start[base + sym] = (uint16_t)rem[sym];
}

static __device__ __forceinline__ int find_seg(const SegList &L, uint32_t g) {
    int s = 0;
    while (s + 1 < (int)L.n && L.lane_base[s + 1] <= g) s++;
    return s;
}

// one thread per lane: encode backwards, words into scratch from the end of the lane's region
__global__ void enc_lanes_k(SegList full, SegList last, EncWs w) {
    uint32_t c = blockIdx.y;
    const SegList &L = pick(full, last, w, c);
    uint32_t g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= L.total_lanes) return;
    int s = find_seg(L, g);
    uint32_t j = g - L.lane_base[s], N = L.lanes[s], P = L.period[s], size = L.size[s];
    uint64_t tb = HIX(c, s, j % P);
    uint32_t cap = size / N + 1;
    uint16_t *dst = w.words + (uint64_t)c * w.Wmax + L.word_base[s] + (uint64_t)j * cap;
    const uint8_t *p = w.payload + (uint64_t)c * w.max_payload + L.off[s];
    uint32_t m = j < size ? (size - 1 - j) / N + 1 : 0;
    uint32_t x = RANS_STATE_L, pos = cap;
    bool empty = false;
    for (uint32_t t = 0; t < P; t++) empty |= w.npres[((uint64_t)c * ENC_MAX_SEGS + s) * 4 + t] == 0xffffffffu;
    if (!empty) {
        // symbols k-1 .. k-8 loaded together, then coded: each step's byte is
        // a fresh L2 read (a warp reads 32 bytes per step, N apart), so
        // loading one per step left the state chain waiting on every one
        uint32_t k = m;
        while (k) {
            uint32_t u8 = k < 8 ? k : 8;
            uint32_t sy[8];
#pragma unroll
            for (uint32_t u = 0; u < 8; u++)
                if (u < u8) sy[u] = p[j + (uint64_t)(k - 1 - u) * N];
#pragma unroll
            for (uint32_t u = 0; u < 8; u++) {
                if (u >= u8) break;
                uint32_t f = w.freq[tb + sy[u]], st = w.start[tb + sy[u]];
                uint64_t x_max = ((uint64_t)(RANS_STATE_L >> RANS_PROB_BITS) << 16) * f;
                if (x >= x_max) {
                    dst[--pos] = (uint16_t)x;
                    x >>= 16;
                }
                x = ((x / f) << RANS_PROB_BITS) + (x % f) + st;
            }
            k -= u8;
        }
    }
    uint64_t li = (uint64_t)c * w.Lmax + g;
    w.lane_state[li] = x;
    w.lane_count[li] = cap - pos;
}

// per (chunk, segment): word offsets of lanes (exclusive scan), coded size, mode
__global__ void segsize_k(SegList full, SegList last, EncWs w) {
    __shared__ uint32_t part[256];
    uint32_t c = blockIdx.y, s = blockIdx.x;
    const SegList &L = pick(full, last, w, c);
    if (s >= L.n) return;
    uint32_t N = L.lanes[s], per = (N + 255) / 256;
    uint64_t li0 = (uint64_t)c * w.Lmax + L.lane_base[s];
    uint32_t a = threadIdx.x * per, e = a + per < N ? a + per : N, sum = 0;
    for (uint32_t j = a; j < e; j++) sum += w.lane_count[li0 + j];
    part[threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        uint32_t acc = 0;
        for (int i = 0; i < 256; i++) { uint32_t v = part[i]; part[i] = acc; acc += v; }
        uint32_t P = L.period[s];
        uint64_t head = RANS_SEG_HEADER + 8ull * N;
        bool empty = false;
        for (uint32_t t = 0; t < P; t++) {
            uint32_t np = w.npres[((uint64_t)c * ENC_MAX_SEGS + s) * 4 + t];
            if (np == 0xffffffffu) empty = true;
            else head += 32 + 2ull * np;
        }
        uint64_t total = head + 2ull * acc, stored = RANS_STORED_HEADER + (uint64_t)L.size[s];
        bool st = empty || head >= stored || total >= stored;
        w.seg_mode[(uint64_t)c * ENC_MAX_SEGS + s] = st ? RANS_MODE_STORED : RANS_MODE_RANS;
        w.seg_bytes[(uint64_t)c * ENC_MAX_SEGS + s] = (uint32_t)(st ? stored : total);
    }
    __syncthreads();
    uint32_t acc = part[threadIdx.x];
    for (uint32_t j = a; j < e; j++) {
        w.lane_woff[li0 + j] = acc;
        acc += w.lane_count[li0 + j];
    }
}

__global__ void chunkscan_k(SegList full, SegList last, EncWs w) {
    for (uint32_t c = threadIdx.x; c < w.C; c += blockDim.x) {
        const SegList &L = pick(full, last, w, c);
        uint32_t acc = 0;
        for (uint32_t s = 0; s < L.n; s++) {
            w.seg_out[(uint64_t)c * ENC_MAX_SEGS + s] = acc;
            acc += w.seg_bytes[(uint64_t)c * ENC_MAX_SEGS + s];
        }
        w.chunk_size[c] = acc;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        uint64_t off = 0;
        for (uint32_t c = 0; c < w.C; c++) { w.chunk_off[c] = off; off += w.chunk_size[c]; }
        *w.data_size = off;
    }
}

// segment headers, tables, states, counts; stored segments' bytes
__global__ void asm_hdr_k(SegList full, SegList last, EncWs w, uint8_t *data) {
    __shared__ uint32_t pre[256];
    uint32_t c = blockIdx.y, s = blockIdx.x;
    const SegList &L = pick(full, last, w, c);
    if (s >= L.n) return;
    uint64_t si = (uint64_t)c * ENC_MAX_SEGS + s;
    uint8_t *o = data + w.chunk_off[c] + w.seg_out[si];
    uint32_t size = L.size[s], N = L.lanes[s], P = L.period[s];
    if (threadIdx.x == 0) { st_u32(o, size); o[4] = (uint8_t)w.seg_mode[si]; }
    if (w.seg_mode[si] == RANS_MODE_STORED) {
        const uint8_t *p = w.payload + (uint64_t)c * w.max_payload + L.off[s];
        for (uint32_t i = threadIdx.x; i < size; i += blockDim.x) o[RANS_STORED_HEADER + i] = p[i];
        return;
    }
    if (threadIdx.x == 0) { o[5] = (uint8_t)P; st_u16(o + 6, N); }
    uint64_t off = RANS_SEG_HEADER;
    uint32_t sym = threadIdx.x;
    for (uint32_t t = 0; t < P; t++) {
        uint64_t tb = HIX(c, s, t);
        uint32_t f = w.freq[tb + sym];
        pre[sym] = f ? 1 : 0;
        __syncthreads();
        if (sym < 32) {
            uint32_t b = 0;
            for (int k = 0; k < 8; k++) b |= pre[sym * 8 + k] << k;
            o[off + sym] = (uint8_t)b;
        }
        __syncthreads();
        if (sym == 0) {
            uint32_t acc = 0;
            for (int u = 0; u < 256; u++) { uint32_t v = pre[u]; pre[u] = acc; acc += v; }
        }
        __syncthreads();
        if (f) st_u16(o + off + 32 + 2 * pre[sym], f);
        off += 32 + 2ull * w.npres[si * 4 + t];
        __syncthreads();
    }
    uint64_t li0 = (uint64_t)c * w.Lmax + L.lane_base[s];
    for (uint32_t j = threadIdx.x; j < N; j += blockDim.x) {
        st_u32(o + off + 4ull * j, w.lane_state[li0 + j]);
        st_u32(o + off + 4ull * N + 4ull * j, w.lane_count[li0 + j]);
    }
}

// warp per lane: copy its words
__global__ void asm_words_k(SegList full, SegList last, EncWs w, uint8_t *data) {
    uint32_t c = blockIdx.y;
    const SegList &L = pick(full, last, w, c);
    uint32_t g = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (g >= L.total_lanes) return;
    int s = find_seg(L, g);
    uint64_t si = (uint64_t)c * ENC_MAX_SEGS + s;
    if (w.seg_mode[si] != RANS_MODE_RANS) return;
    uint32_t j = g - L.lane_base[s], N = L.lanes[s], P = L.period[s];
    uint64_t head = RANS_SEG_HEADER + 8ull * N;
    for (uint32_t t = 0; t < P; t++) head += 32 + 2ull * w.npres[si * 4 + t];
    uint64_t li = (uint64_t)c * w.Lmax + g;
    uint32_t cnt = w.lane_count[li], cap = L.size[s] / N + 1;
    const uint16_t *src = w.words + (uint64_t)c * w.Wmax + L.word_base[s] + (uint64_t)j * cap + (cap - cnt);
    uint8_t *o = data + w.chunk_off[c] + w.seg_out[si] + head + 2ull * w.lane_woff[li];
    for (uint32_t i = lane; i < cnt; i += 32) st_u16(o + 2ull * i, src[i]);
}

void build_seglist(const basis_plan *pl, uint64_t n_c, SegList *L) {
    memset(L, 0, sizeof *L);
    uint32_t cap = 2 * (pl->k.n_groups + pl->v.n_groups) + 1;
    rans_segment *segs = (rans_segment *)malloc(sizeof *segs * cap);
    uint32_t n = segs ? rans_plan_segments(&pl->k, &pl->v, n_c, segs, cap) : 0;
    n = rans_merge_segments(segs, n);
    while (n > ENC_MAX_SEGS) {  // more than the GPU encoder handles: merge the smallest pair
        uint32_t best = 0;
        for (uint32_t i = 1; i + 1 < n; i++)
            if ((uint64_t)segs[i].size + segs[i + 1].size < (uint64_t)segs[best].size + segs[best + 1].size) best = i;
        segs[best].size += segs[best + 1].size;
        segs[best].period = 1;
        memmove(segs + best + 1, segs + best + 2, sizeof *segs * (n - best - 2));
        n--;
    }
    uint32_t off = 0, lanes = 0;
    uint64_t words = 0;
    for (uint32_t i = 0; i < n; i++) {
        L->size[i] = segs[i].size;
        L->period[i] = (uint8_t)segs[i].period;
        L->off[i] = off;
        L->lanes[i] = rans_lanes_for(segs[i].size);
        L->lane_base[i] = lanes;
        L->word_base[i] = words;
        off += segs[i].size;
        lanes += L->lanes[i];
        words += (uint64_t)(segs[i].size / L->lanes[i] + 1) * L->lanes[i];
    }
    L->n = n;
    L->total_lanes = lanes;
    L->total_words = words;
    free(segs);
}

void rans_encode_chunks(const SegList &full, const SegList &last, const EncWs &w, uint8_t *data, cudaStream_t st,
                        void (*mark)(void *, const char *), void *mark_arg) {
    uint32_t C = w.C;
    uint32_t maxseg = 0, maxlanes = full.total_lanes > last.total_lanes ? full.total_lanes : last.total_lanes;
    for (uint32_t i = 0; i < full.n; i++) maxseg = full.size[i] > maxseg ? full.size[i] : maxseg;
    for (uint32_t i = 0; i < last.n; i++) maxseg = last.size[i] > maxseg ? last.size[i] : maxseg;
    // grids over the segments the chunks have (not ENC_MAX_SEGS): blocks
    // past a chunk's segments exit at once, but tens of thousands of them
    // still cost a tenth of a millisecond
    uint32_t maxn = full.n > last.n ? full.n : last.n, maxp = 1;
    for (uint32_t i = 0; i < full.n; i++) maxp = full.period[i] > maxp ? full.period[i] : maxp;
    for (uint32_t i = 0; i < last.n; i++) maxp = last.period[i] > maxp ? last.period[i] : maxp;
    if (!maxn) maxn = 1;
    hist_k<<<dim3(maxseg / 65536 + 1, maxn, C), 256, 0, st>>>(full, last, w);
    mark(mark_arg, "histograms");
    norm_k<<<dim3(maxp, maxn, C), 256, 0, st>>>(full, last, w);
    mark(mark_arg, "normalize");
    enc_lanes_k<<<dim3((maxlanes + 127) / 128, C), 128, 0, st>>>(full, last, w);
    mark(mark_arg, "rANS lanes");
    segsize_k<<<dim3(maxn, C), 256, 0, st>>>(full, last, w);
    chunkscan_k<<<1, 256, 0, st>>>(full, last, w);
    mark(mark_arg, "sizes");
    asm_hdr_k<<<dim3(maxn, C), 256, 0, st>>>(full, last, w, data);
    mark(mark_arg, "assemble headers");
    asm_words_k<<<dim3((maxlanes + 7) / 8, C), 256, 0, st>>>(full, last, w, data);
    mark(mark_arg, "assemble words");
}
