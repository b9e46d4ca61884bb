// kvtc_cuda.cu - the CUDA backend (include/kvtc_cuda.h). Same stream format
// as the CPU codec, entropy codec 2 (docs/FORMAT.md).
//
// Encode, per stream (K then V):  gather + RoPE removal + (x - mean) * w  ->
// cuBLAS GEMM D = X B^T (fp32 out)  ->  quantize + pack into the chunk
// payloads. Then for all chunks at once: byte histograms per segment and
// table -> normalized frequencies -> one thread per rANS lane -> sizes,
// offsets (scans) -> assembly into the output -> CRCs -> chunk index ->
// section CRCs -> header. Decode reverses it: parse chunk index and segment
// headers, CRCs, rANS lanes (one thread per lane, tables in shared memory),
// stored copies, dequantize -> GEMM X = D B -> (x / w + mean), RoPE,
// scatter into [L][H][T][d].
//
// Nothing here allocates, synchronizes or copies to the host on the hot
// path: every size the host cannot know is written to device memory.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/device_guard.h"
#include "kvtc_cuda.h"

extern "C" {
#include "entropy/rans.h"
#include "model/basis.h"
#include "format/container.h"
#include "quant/group_quant.h"
#include "transform/rope.h"
#include "util/cache.h"
#include "util/half.h"
}

// ---- limits of this backend ----------------------------------------------

#define ENC_MAX_SEGS 64   // segments per chunk the encoder writes (host merges beyond)
#define DEC_MAX_SEGS 256  // segments per chunk the decoder accepts (else KVTC_ERR_UNSUPPORTED)
#define CRC_PIECE 4096u   // bytes per CRC piece (pieces are combined per region)
#define LANE_BLOCK 128u   // rANS lanes per thread block

#define CK(x)                                           \
    do {                                                \
        if ((x) != cudaSuccess) return KVTC_ERR_CUDA;   \
    } while (0)
#define CKB(x)                                                  \
    do {                                                        \
        if ((x) != CUBLAS_STATUS_SUCCESS) return KVTC_ERR_CUDA; \
    } while (0)

// ---- host/device plan tables ------------------------------------------------

struct GroupDesc {
    uint32_t col, size, bits;
    uint32_t param_off;  // param bytes per token before this group (within its stream)
    uint32_t code_off;   // code bits per token before this group (within its stream)
};

struct RawDesc {  // one coordinate of a raw fp16 group
    uint32_t col, param_off, size, j;
};

struct StreamPlan {
    uint32_t n_groups, rank;   // quantized and dropped groups up to rank_used; rank_used
    uint32_t n_raw;            // coordinates in raw fp16 groups
    RawDesc *d_raw;            // device
    uint32_t param_bytes;      // per token
    uint32_t code_bits;        // per token (a multiple of 8)
    GroupDesc *d_groups;       // device
};

struct PlanDev {
    StreamPlan s[2];
    uint64_t fingerprint;
    const basis_plan *host;
};

struct SegList {  // the encoder's segments of one chunk size (by value into kernels)
    uint32_t n;
    uint32_t total_lanes;
    uint64_t total_words;  // scratch words for the chunk
    uint32_t size[ENC_MAX_SEGS];
    uint32_t off[ENC_MAX_SEGS];        // payload offset
    uint32_t lanes[ENC_MAX_SEGS];
    uint32_t lane_base[ENC_MAX_SEGS];
    uint64_t word_base[ENC_MAX_SEGS];  // scratch word offset of the segment
    uint8_t period[ENC_MAX_SEGS];
};

struct kvtc_cuda_codec {
    const kvtc_basis *basis;
    kvtc_cuda_options opt;
    uint32_t enc_plan;
    uint32_t n_plans;
    PlanDev *plans;
    uint32_t rmax[2];  // basis rows uploaded per stream
    uint32_t p;
    void *d_basis[2];  // [rmax][p] bf16 or float
    float *d_mean[2], *d_weight[2];
    double *d_inv_freq;
    uint32_t *d_crc_table;  // 256 + 32 (x^2^k mod P)
    cublasHandle_t blas;
    int esize;  // bytes of an X/D/basis element
    // kvtc_cuda_options.profile: events between stages, printed (with a
    // synchronization) at the end of each call. Off the hot path otherwise.
    int profile, n_ev;
    cudaEvent_t ev[48];
    const char *ev_name[48];
};

static void prof_mark(kvtc_cuda_codec *c, cudaStream_t s, const char *name) {
    if (!c->profile || c->n_ev >= 48) return;
    cudaEventRecord(c->ev[c->n_ev], s);
    c->ev_name[c->n_ev++] = name;
}
static void prof_report(kvtc_cuda_codec *c, const char *what) {
    if (!c->profile || c->n_ev < 2) { if (c->profile) c->n_ev = 0; return; }
    cudaEventSynchronize(c->ev[c->n_ev - 1]);
    float tot = 0;
    cudaEventElapsedTime(&tot, c->ev[0], c->ev[c->n_ev - 1]);
    fprintf(stderr, "PROFILE %s: %.3f ms:", what, tot);
    for (int i = 1; i < c->n_ev; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, c->ev[i - 1], c->ev[i]);
        fprintf(stderr, " %s %.3f;", c->ev_name[i], ms);
    }
    fprintf(stderr, "\n");
    c->n_ev = 0;
}
#define PROF(c, s, name) prof_mark(c, s, name)

// ---- small device helpers ---------------------------------------------------

__device__ __forceinline__ void st_u16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
__device__ __forceinline__ void st_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
__device__ __forceinline__ void st_u64(uint8_t *p, uint64_t v) { st_u32(p, (uint32_t)v); st_u32(p + 4, (uint32_t)(v >> 32)); }
__device__ __forceinline__ uint32_t ld_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
__device__ __forceinline__ uint32_t ld_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
__device__ __forceinline__ uint64_t ld_u64(const uint8_t *p) { return (uint64_t)ld_u32(p) | ((uint64_t)ld_u32(p + 4) << 32); }

__device__ __forceinline__ void set_status(uint32_t *st, uint32_t code) { atomicCAS(st, 0u, code); }

// The CPU's fp16 conversions (util/half.h), bit for bit.
__device__ __forceinline__ uint16_t d_f32_to_f16(float f) {
    uint32_t x = __float_as_uint(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) {
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(absx >> 23);
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((absx - 0x38000000u) >> 13);
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}
__device__ __forceinline__ float d_f16_to_f32(uint32_t h) {
    uint32_t sign = (h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return __uint_as_float(sign);
        float f = (float)m * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (e == 31) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}
__device__ __forceinline__ uint16_t d_f32_to_bf16(float f) {
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// cache elements by dtype
__device__ __forceinline__ float load_elem(const void *base, int dtype, uint64_t i) {
    if (dtype == KVTC_DTYPE_F32) return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    return dtype == KVTC_DTYPE_F16 ? d_f16_to_f32(h) : __uint_as_float((uint32_t)h << 16);
}
__device__ __forceinline__ void store_elem(void *base, int dtype, uint64_t i, float x) {
    if (dtype == KVTC_DTYPE_F32) ((float *)base)[i] = x;
    else ((uint16_t *)base)[i] = dtype == KVTC_DTYPE_F16 ? d_f32_to_f16(x) : d_f32_to_bf16(x);
}

// ---- CRC-32 (zlib), piecewise + combine -----------------------------------

__device__ uint32_t multmodp(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ 0xedb88320u : b >> 1;
    }
    return p;
}
__device__ uint32_t x2nmodp(const uint32_t *x2n, uint64_t n, unsigned k) {
    uint32_t p = 1u << 31;
    while (n) {
        if (n & 1) p = multmodp(x2n[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

struct Regions {  // explicit regions (host-known), by value
    uint32_t n;
    uint64_t off[8], size[8];
    uint32_t want[8];  // expected CRCs (decode)
};

// The five checksummed sections (positions, token ids, raw K, raw V, chunk
// index) as CRC regions, with their stored CRCs (0 while encoding), and the
// CRC pieces the largest one needs.
static Regions section_regions(const container_header &h, uint32_t *pieces) {
    static const int secs[5] = {SEC_POSITIONS, SEC_TOKEN_IDS, SEC_RAW_K, SEC_RAW_V, SEC_CHUNK_INDEX};
    Regions sr;
    memset(&sr, 0, sizeof sr);
    sr.n = 5;
    uint64_t maxsec = 0;
    for (int i = 0; i < 5; i++) {
        sr.off[i] = h.sections[secs[i]].offset;
        sr.size[i] = h.sections[secs[i]].size;
        sr.want[i] = h.sections[secs[i]].crc32;
        maxsec = sr.size[i] > maxsec ? sr.size[i] : maxsec;
    }
    *pieces = (uint32_t)(maxsec / CRC_PIECE + 1);
    return sr;
}

// Piece CRCs. Region r: explicit (regs) or chunk c (data_off + chunk_off[c], chunk_size[c]).
__global__ void crc_pieces_k(const uint8_t *base, Regions regs, uint64_t data_off, const uint64_t *chunk_off,
                             const uint32_t *chunk_size, uint32_t max_pieces, const uint32_t *table, uint32_t *piece_crc) {
    __shared__ uint32_t t[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) t[i] = table[i];
    __syncthreads();
    uint32_t r = blockIdx.y;
    uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= max_pieces) return;
    uint64_t off, size;
    if (chunk_off) { off = data_off + chunk_off[r]; size = chunk_size[r]; }
    else { off = regs.off[r]; size = regs.size[r]; }
    uint64_t a = k * CRC_PIECE;
    if (a >= size) return;
    uint64_t e = a + CRC_PIECE < size ? a + CRC_PIECE : size;
    const uint8_t *p = base + off;
    uint32_t c = 0xffffffffu;
    for (uint64_t i = a; i < e; i++) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
    piece_crc[(uint64_t)r * max_pieces + k] = ~c;
}

// Combine the pieces of each region: one block of 256 threads per region;
// each thread folds a run of pieces, then a tree in shared memory. Chunk mode
// (entries != NULL): write the chunk index entry. Check mode (status !=
// NULL): compare with the wanted CRC (chunk: from the entry; explicit: regs.want).
__global__ void crc_combine_k(Regions regs, const uint32_t *chunk_size, uint32_t n_regions, uint32_t max_pieces,
                              const uint32_t *x2n, const uint32_t *piece_crc, uint32_t *out_crc, uint8_t *entries,
                              const uint64_t *chunk_off, uint32_t chunk_tokens, uint64_t coded, uint32_t pay_full,
                              uint32_t pay_last, const uint32_t *want_chunk, uint32_t *status) {
    __shared__ uint32_t sc[256];
    __shared__ uint64_t sl[256];
    uint32_t r = blockIdx.x, tid = threadIdx.x;
    if (r >= n_regions) return;
    uint64_t size = chunk_size ? chunk_size[r] : regs.size[r];
    uint64_t np = (size + CRC_PIECE - 1) / CRC_PIECE;
    if (np > max_pieces) {
        if (status && tid == 0) set_status(status, KVTC_ERR_UNSUPPORTED);
        return;
    }
    uint32_t full = x2nmodp(x2n, CRC_PIECE, 3);
    uint64_t per = (np + 255) / 256, k0 = tid * per, k1 = k0 + per < np ? k0 + per : np;
    uint32_t crc = 0;  // crc of the empty string
    uint64_t len = 0;
    for (uint64_t k = k0; k < k1; k++) {
        uint64_t pl = size - k * CRC_PIECE < CRC_PIECE ? size - k * CRC_PIECE : CRC_PIECE;
        uint32_t op = pl == CRC_PIECE ? full : x2nmodp(x2n, pl, 3);
        crc = multmodp(op, crc) ^ piece_crc[(uint64_t)r * max_pieces + k];
        len += pl;
    }
    sc[tid] = crc;
    sl[tid] = len;
    __syncthreads();
    for (uint32_t s = 1; s < 256; s <<= 1) {
        if ((tid & (2 * s - 1)) == 0 && tid + s < 256 && sl[tid + s]) {
            sc[tid] = multmodp(x2nmodp(x2n, sl[tid + s], 3), sc[tid]) ^ sc[tid + s];
            sl[tid] += sl[tid + s];
        }
        __syncthreads();
    }
    if (tid) return;
    crc = sc[0];
    if (out_crc) out_crc[r] = crc;
    if (entries) {
        uint8_t *e = entries + (uint64_t)r * CONTAINER_CHUNK_ENTRY;
        uint64_t first = (uint64_t)r * chunk_tokens;
        uint32_t n = (uint32_t)(coded - first < chunk_tokens ? coded - first : chunk_tokens);
        st_u64(e, chunk_off[r]);
        st_u32(e + 8, (uint32_t)size);
        st_u32(e + 12, crc);
        st_u32(e + 16, n);
        st_u32(e + 20, n == chunk_tokens ? pay_full : pay_last);
    }
    if (status) {
        uint32_t want = want_chunk ? want_chunk[r] : regs.want[r];
        if (want != crc) set_status(status, KVTC_ERR_CORRUPT);
    }
}

// ---- RoPE angles, gather, scatter ------------------------------------------

// cs[t][i] = (cos, sin)(pos(t0 + t) * inv_freq[i]) in double, rounded to float (as the CPU).
__global__ void rope_table_k(const double *inv_freq, uint32_t n_pairs, const int64_t *positions,
                             const uint8_t *pos_le, uint64_t t0, uint64_t n, float2 *cs) {
    uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * n_pairs) return;
    uint64_t t = idx / n_pairs;
    uint32_t i = (uint32_t)(idx % n_pairs);
    int64_t pos = positions ? positions[t0 + t] : pos_le ? (int64_t)ld_u64(pos_le + 8 * (t0 + t)) : (int64_t)(t0 + t);
    double a = (double)pos * inv_freq[i];
    cs[idx] = make_float2((float)cos(a), (float)sin(a));
}

struct RowGeom {
    uint32_t H, d, rd, rope;  // rope: 0 none, 1 norm, 2 neox (0 also when not rotating)
    uint64_t n_tokens;         // tokens of the cache tensor
    uint64_t t0, n;            // coded tokens [t0, t0 + n)
    uint64_t p;
};

// pair i of a head -> the two dims and whether it rotates
__device__ __forceinline__ void pair_dims(const RowGeom &g, uint32_t i, uint32_t &a, uint32_t &b, bool &rot) {
    uint32_t h = g.rd / 2;
    if (g.rope && i < h) {
        rot = true;
        if (g.rope == 1) { a = 2 * i; b = 2 * i + 1; }
        else { a = i; b = i + h; }
    } else {
        rot = false;
        a = (g.rope ? g.rd : 0) + 2 * (i - (g.rope ? h : 0));
        b = a + 1;
    }
}

// block: (d/2, TT); grid: (ceil(n / TT), L*H)
template <typename T>
__global__ void gather_k(const void *src, int dtype, RowGeom g, const float2 *cs, const float *mean, const float *weight,
                         T *X) {
    uint32_t i = threadIdx.x;
    uint64_t t = (uint64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (t >= g.n) return;
    uint32_t lh = blockIdx.y;
    uint32_t a, b;
    bool rot;
    pair_dims(g, i, a, b, rot);
    uint64_t off = ((uint64_t)lh * g.n_tokens + g.t0 + t) * g.d;
    float x0 = load_elem(src, dtype, off + a), x1 = load_elem(src, dtype, off + b);
    if (rot) {
        float2 c = cs[t * (g.rd / 2) + i];
        float s = -c.y;
        float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, s));
        float y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c.x));
        x0 = y0;
        x1 = y1;
    }
    uint64_t col = (uint64_t)lh * g.d;
    X[t * g.p + col + a] = from_f<T>(__fmul_rn(__fsub_rn(x0, mean[col + a]), weight[col + a]));
    X[t * g.p + col + b] = from_f<T>(__fmul_rn(__fsub_rn(x1, mean[col + b]), weight[col + b]));
}

template <typename T>
__global__ void scatter_k(void *dst, int dtype, RowGeom g, const float2 *cs, const float *mean, const float *weight,
                          const T *X) {
    uint32_t i = threadIdx.x;
    uint64_t t = (uint64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (t >= g.n) return;
    uint32_t lh = blockIdx.y;
    uint32_t a, b;
    bool rot;
    pair_dims(g, i, a, b, rot);
    uint64_t col = (uint64_t)lh * g.d;
    float x0 = __fadd_rn(__fdiv_rn(to_f(X[t * g.p + col + a]), weight[col + a]), mean[col + a]);
    float x1 = __fadd_rn(__fdiv_rn(to_f(X[t * g.p + col + b]), weight[col + b]), mean[col + b]);
    if (rot) {
        float2 c = cs[t * (g.rd / 2) + i];
        float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, c.y));
        float y1 = __fadd_rn(__fmul_rn(x0, c.y), __fmul_rn(x1, c.x));
        x0 = y0;
        x1 = y1;
    }
    uint64_t off = ((uint64_t)lh * g.n_tokens + g.t0 + t) * g.d;
    store_elem(dst, dtype, off + a, x0);
    store_elem(dst, dtype, off + b, x1);
}

// Vectorized gather/scatter for the common case: f16/bf16 cache, bf16 rows,
// head_dim % 8 == 0, RoPE over the whole head (or none). Each thread moves 4
// pairs with 8- or 16-byte accesses; same arithmetic as gather_k/scatter_k.
// ROPE: 0 = adjacent pairs without rotation, 1 = norm, 2 = neox.
__device__ __forceinline__ float h2f(uint32_t h, int dtype) {
    return dtype == KVTC_DTYPE_F16 ? d_f16_to_f32(h) : __uint_as_float(h << 16);
}
__device__ __forceinline__ uint32_t f2h(float x, int dtype) {
    return dtype == KVTC_DTYPE_F16 ? d_f32_to_f16(x) : d_f32_to_bf16(x);
}
__device__ __forceinline__ void ld4(const uint16_t *p, int dtype, float *o) {
    uint2 u = *(const uint2 *)p;
    o[0] = h2f(u.x & 0xffffu, dtype); o[1] = h2f(u.x >> 16, dtype);
    o[2] = h2f(u.y & 0xffffu, dtype); o[3] = h2f(u.y >> 16, dtype);
}
__device__ __forceinline__ void st4(uint16_t *p, int dtype, const float *v) {
    uint2 u;
    u.x = f2h(v[0], dtype) | (f2h(v[1], dtype) << 16);
    u.y = f2h(v[2], dtype) | (f2h(v[3], dtype) << 16);
    *(uint2 *)p = u;
}
#define BF16_BITS(x) ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(x)))

template <int ROPE>
__global__ void gather_vec_k(const uint16_t *src, int dtype, RowGeom g, const float2 *cs, const float *mean,
                             const float *weight, uint16_t *X) {
    uint32_t q = threadIdx.x;
    uint64_t t = (uint64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (t >= g.n) return;
    uint32_t lh = blockIdx.y;
    uint64_t off = ((uint64_t)lh * g.n_tokens + g.t0 + t) * g.d, col = (uint64_t)lh * g.d;
    float lo[4], hi[4];
    uint32_t dl[4], dh[4];
    if (ROPE == 2) {
        ld4(src + off + 4 * q, dtype, lo);
        ld4(src + off + 4 * q + g.d / 2, dtype, hi);
        for (int k = 0; k < 4; k++) { dl[k] = 4 * q + k; dh[k] = 4 * q + k + g.d / 2; }
    } else {
        float x[8];
        ld4(src + off + 8 * q, dtype, x);
        ld4(src + off + 8 * q + 4, dtype, x + 4);
        for (int k = 0; k < 4; k++) { lo[k] = x[2 * k]; hi[k] = x[2 * k + 1]; dl[k] = 8 * q + 2 * k; dh[k] = dl[k] + 1; }
    }
    float ol[4], oh[4];
    for (int k = 0; k < 4; k++) {
        float x0 = lo[k], x1 = hi[k];
        if (ROPE) {
            float2 c = cs[t * (g.rd / 2) + 4 * q + k];
            float sn = -c.y;
            float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, sn));
            float y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, c.x));
            x0 = y0;
            x1 = y1;
        }
        ol[k] = __fmul_rn(__fsub_rn(x0, mean[col + dl[k]]), weight[col + dl[k]]);
        oh[k] = __fmul_rn(__fsub_rn(x1, mean[col + dh[k]]), weight[col + dh[k]]);
    }
    uint16_t *row = X + t * g.p + col;
    if (ROPE == 2) {
        uint2 a, b;
        a.x = BF16_BITS(ol[0]) | (BF16_BITS(ol[1]) << 16); a.y = BF16_BITS(ol[2]) | (BF16_BITS(ol[3]) << 16);
        b.x = BF16_BITS(oh[0]) | (BF16_BITS(oh[1]) << 16); b.y = BF16_BITS(oh[2]) | (BF16_BITS(oh[3]) << 16);
        *(uint2 *)(row + 4 * q) = a;
        *(uint2 *)(row + 4 * q + g.d / 2) = b;
    } else {
        uint4 a;
        a.x = BF16_BITS(ol[0]) | (BF16_BITS(oh[0]) << 16); a.y = BF16_BITS(ol[1]) | (BF16_BITS(oh[1]) << 16);
        a.z = BF16_BITS(ol[2]) | (BF16_BITS(oh[2]) << 16); a.w = BF16_BITS(ol[3]) | (BF16_BITS(oh[3]) << 16);
        *(uint4 *)(row + 8 * q) = a;
    }
}

template <int ROPE>
__global__ void scatter_vec_k(uint16_t *dst, int dtype, RowGeom g, const float2 *cs, const float *mean,
                              const float *weight, const uint16_t *X) {
    uint32_t q = threadIdx.x;
    uint64_t t = (uint64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (t >= g.n) return;
    uint32_t lh = blockIdx.y;
    uint64_t off = ((uint64_t)lh * g.n_tokens + g.t0 + t) * g.d, col = (uint64_t)lh * g.d;
    const uint16_t *row = X + t * g.p + col;
    float lo[4], hi[4];
    uint32_t dl[4], dh[4];
    if (ROPE == 2) {
        ld4(row + 4 * q, KVTC_DTYPE_BF16, lo);
        ld4(row + 4 * q + g.d / 2, KVTC_DTYPE_BF16, hi);
        for (int k = 0; k < 4; k++) { dl[k] = 4 * q + k; dh[k] = 4 * q + k + g.d / 2; }
    } else {
        float x[8];
        ld4(row + 8 * q, KVTC_DTYPE_BF16, x);
        ld4(row + 8 * q + 4, KVTC_DTYPE_BF16, x + 4);
        for (int k = 0; k < 4; k++) { lo[k] = x[2 * k]; hi[k] = x[2 * k + 1]; dl[k] = 8 * q + 2 * k; dh[k] = dl[k] + 1; }
    }
    for (int k = 0; k < 4; k++) {
        float x0 = __fadd_rn(__fdiv_rn(lo[k], weight[col + dl[k]]), mean[col + dl[k]]);
        float x1 = __fadd_rn(__fdiv_rn(hi[k], weight[col + dh[k]]), mean[col + dh[k]]);
        if (ROPE) {
            float2 c = cs[t * (g.rd / 2) + 4 * q + k];
            float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, c.y));
            float y1 = __fadd_rn(__fmul_rn(x0, c.y), __fmul_rn(x1, c.x));
            x0 = y0;
            x1 = y1;
        }
        lo[k] = x0;
        hi[k] = x1;
    }
    if (ROPE == 2) {
        st4(dst + off + 4 * q, dtype, lo);
        st4(dst + off + 4 * q + g.d / 2, dtype, hi);
    } else {
        float x[8] = {lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], lo[3], hi[3]};
        st4(dst + off + 8 * q, dtype, x);
        st4(dst + off + 8 * q + 4, dtype, x + 4);
    }
}

static bool vec_ok(int esize, kvtc_dtype dt, const RowGeom &g) {
    return esize == 2 && (dt == KVTC_DTYPE_F16 || dt == KVTC_DTYPE_BF16) && g.d % 8 == 0 && g.d / 8 <= 256 &&
           (g.rope == 0 || g.rd == g.d);
}

// launch helpers (template on the RoPE kind)
static void launch_gather_vec(const RowGeom &g, uint32_t LH, const void *src, int dtype, const float2 *cs, const float *m,
                              const float *w, void *X, cudaStream_t st) {
    dim3 blk(g.d / 8, 256 / (g.d / 8)), grd((unsigned)((g.n + blk.y - 1) / blk.y), LH);
    if (g.rope == 2) gather_vec_k<2><<<grd, blk, 0, st>>>((const uint16_t *)src, dtype, g, cs, m, w, (uint16_t *)X);
    else if (g.rope == 1) gather_vec_k<1><<<grd, blk, 0, st>>>((const uint16_t *)src, dtype, g, cs, m, w, (uint16_t *)X);
    else gather_vec_k<0><<<grd, blk, 0, st>>>((const uint16_t *)src, dtype, g, cs, m, w, (uint16_t *)X);
}
static void launch_scatter_vec(const RowGeom &g, uint32_t LH, void *dst, int dtype, const float2 *cs, const float *m,
                               const float *w, const void *X, cudaStream_t st) {
    dim3 blk(g.d / 8, 256 / (g.d / 8)), grd((unsigned)((g.n + blk.y - 1) / blk.y), LH);
    if (g.rope == 2) scatter_vec_k<2><<<grd, blk, 0, st>>>((uint16_t *)dst, dtype, g, cs, m, w, (const uint16_t *)X);
    else if (g.rope == 1) scatter_vec_k<1><<<grd, blk, 0, st>>>((uint16_t *)dst, dtype, g, cs, m, w, (const uint16_t *)X);
    else scatter_vec_k<0><<<grd, blk, 0, st>>>((uint16_t *)dst, dtype, g, cs, m, w, (const uint16_t *)X);
}

// raw sink/window tokens: dir 0 cache -> section, 1 section -> cache. grid (blocks, L*H)
__global__ void raw_copy_k(uint8_t *cache, uint8_t *section, uint64_t n_tokens, uint32_t n_sink, uint32_t n_window,
                           uint32_t tok_bytes, int dir) {
    uint64_t lh = blockIdx.y;
    uint64_t run = (uint64_t)(n_sink + n_window) * tok_bytes;
    uint64_t sink_b = (uint64_t)n_sink * tok_bytes;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < run; i += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t co = i < sink_b ? lh * n_tokens * tok_bytes + i
                                 : (lh * n_tokens + n_tokens - n_window) * tok_bytes + (i - sink_b);
        uint64_t so = lh * run + i;
        if (dir == 0) section[so] = cache[co];
        else cache[co] = section[so];
    }
}

// ---- quantize + pack, unpack + dequantize -----------------------------------

struct QuantGeom {
    uint64_t n;              // coded tokens
    uint32_t chunk_tokens;
    uint64_t max_payload;    // payload stride per chunk
    uint32_t pb[2], cb[2];   // param bytes / code bits per token of K, V
    uint32_t stream;         // 0 K, 1 V
    uint32_t rank;           // ld of D
    uint32_t n_groups;
};

struct QuantAddr {
    uint8_t *param, *code;
};

__device__ __forceinline__ QuantAddr quant_addr(const QuantGeom &q, const GroupDesc &gd, uint64_t t, uint8_t *payload) {
    uint64_t c = t / q.chunk_tokens, ti = t % q.chunk_tokens;
    uint64_t nc = q.n - c * q.chunk_tokens < q.chunk_tokens ? q.n - c * q.chunk_tokens : q.chunk_tokens;
    uint8_t *base = payload + c * q.max_payload;
    uint64_t pbase = q.stream ? (uint64_t)q.pb[0] * nc : 0;
    uint64_t cbase = (uint64_t)(q.pb[0] + q.pb[1]) * nc + (q.stream ? (uint64_t)q.cb[0] * nc / 8 : 0);
    QuantAddr a;
    uint32_t per = gd.bits == 16 ? 2 * gd.size : 4;
    a.param = base + pbase + (uint64_t)gd.param_off * nc + ti * per;
    a.code = base + cbase + (uint64_t)gd.code_off * nc / 8 + ti * gd.size * gd.bits / 8;
    return a;
}

__device__ __forceinline__ float warp_min(float v) {
    for (int o = 16; o; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#define F16_MAX_D 65504.0f
__device__ __forceinline__ float clamp16(float x) { return x > F16_MAX_D ? F16_MAX_D : (x < -F16_MAX_D ? -F16_MAX_D : x); }

// warp per (token, group); block 256 = 8 warps; grid (ceil(groups/8), min(n, 65535))
__global__ void quant_k(const float *D, const GroupDesc *groups, QuantGeom q, uint8_t *payload) {
    uint32_t lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint32_t gi = blockIdx.x * 8 + w;
    if (gi >= q.n_groups) return;
    GroupDesc gd = groups[gi];
    if (gd.bits == 0) return;
    for (uint64_t t = blockIdx.y; t < q.n; t += gridDim.y) {
        const float *x = D + t * q.rank + gd.col;
        QuantAddr a = quant_addr(q, gd, t, payload);
        if (gd.bits == 16) {
            for (uint32_t j = lane; j < gd.size; j += 32) {
                uint16_t h = d_f32_to_f16(clamp16(x[j]));
                a.param[2 * j] = (uint8_t)h;
                a.param[2 * j + 1] = (uint8_t)(h >> 8);
            }
            continue;
        }
        float mn = INFINITY, mx = -INFINITY;
        for (uint32_t j = lane; j < gd.size; j += 32) { mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
        mn = warp_min(mn);
        mx = warp_max(mx);
        uint32_t levels = (1u << gd.bits) - 1u;
        uint16_t hs = d_f32_to_f16(clamp16(mn));
        float shift = d_f16_to_f32(hs);
        if (shift > mn && hs != 0xfbffu) {
            hs = (hs & 0x8000u) ? (uint16_t)(hs + 1) : (hs == 0 ? 0x8001u : (uint16_t)(hs - 1));
            shift = d_f16_to_f32(hs);
        }
        float want = __fdiv_rn(__fsub_rn(mx, shift), (float)levels);
        uint16_t hc = d_f32_to_f16(clamp16(want));
        if (d_f16_to_f32(hc) < want && hc < 0x7bffu) hc++;
        float scale = d_f16_to_f32(hc);
        float inv = scale > 0.0f ? __fdiv_rn(1.0f, scale) : 0.0f;
        if (lane == 0) {
            a.param[0] = (uint8_t)hs; a.param[1] = (uint8_t)(hs >> 8);
            a.param[2] = (uint8_t)hc; a.param[3] = (uint8_t)(hc >> 8);
        }
        // 8 codes -> `bits` bytes, byte aligned
        for (uint32_t sb = lane; sb < gd.size / 8; sb += 32) {
            uint64_t acc = 0;
            for (int k = 0; k < 8; k++) {
                float v = __fadd_rn(__fmul_rn(__fsub_rn(x[sb * 8 + k], shift), inv), 0.5f);
                uint32_t c = v <= 0.0f ? 0u : (v >= (float)levels ? levels : (uint32_t)v);
                acc |= (uint64_t)c << (k * gd.bits);
            }
            uint8_t *o = a.code + sb * gd.bits;
            for (uint32_t k = 0; k < gd.bits; k++) o[k] = (uint8_t)(acc >> (8 * k));
        }
    }
}

template <typename T>
__global__ void dequant_k(T *D, const GroupDesc *groups, QuantGeom q, const uint8_t *payload) {
    uint32_t lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint32_t gi = blockIdx.x * 8 + w;
    if (gi >= q.n_groups) return;
    GroupDesc gd = groups[gi];
    for (uint64_t t = blockIdx.y; t < q.n; t += gridDim.y) {
        T *x = D + t * q.rank + gd.col;
        if (gd.bits == 0) {
            for (uint32_t j = lane; j < gd.size; j += 32) x[j] = from_f<T>(0.0f);
            continue;
        }
        QuantAddr a = quant_addr(q, gd, t, (uint8_t *)payload);
        if (gd.bits == 16) {
            for (uint32_t j = lane; j < gd.size; j += 32) x[j] = from_f<T>(d_f16_to_f32(ld_u16(a.param + 2 * j)));
            continue;
        }
        float shift = d_f16_to_f32(ld_u16(a.param)), scale = d_f16_to_f32(ld_u16(a.param + 2));
        uint32_t mask = (1u << gd.bits) - 1u;
        for (uint32_t sb = lane; sb < gd.size / 8; sb += 32) {
            uint64_t acc = 0;
            const uint8_t *o = a.code + sb * gd.bits;
            for (uint32_t k = 0; k < gd.bits; k++) acc |= (uint64_t)o[k] << (8 * k);
            for (int k = 0; k < 8; k++) {
                uint32_t c = (uint32_t)(acc >> (k * gd.bits)) & mask;
                x[sb * 8 + k] = from_f<T>(__fadd_rn(shift, __fmul_rn((float)c, scale)));
            }
        }
    }
}

// raw fp16 coordinates: one thread per (coordinate, token), tokens fastest (coalesced stores)
__device__ __forceinline__ uint8_t *raw_addr(const QuantGeom &q, const RawDesc &rd, uint64_t t, uint8_t *payload) {
    uint64_t c = t / q.chunk_tokens, ti = t - c * q.chunk_tokens;
    uint64_t nc = q.n - c * q.chunk_tokens < q.chunk_tokens ? q.n - c * q.chunk_tokens : q.chunk_tokens;
    uint64_t pbase = q.stream ? (uint64_t)q.pb[0] * nc : 0;
    return payload + c * q.max_payload + pbase + (uint64_t)rd.param_off * nc + (ti * rd.size + rd.j) * 2;
}

__global__ void raw_quant_k(const float *D, const RawDesc *raw, uint32_t n_raw, QuantGeom q, uint8_t *payload) {
    uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (uint64_t)n_raw * q.n) return;
    uint64_t e = idx / q.n, t = idx - e * q.n;
    RawDesc rd = raw[e];
    uint16_t h = d_f32_to_f16(clamp16(D[t * q.rank + rd.col]));
    uint8_t *o = raw_addr(q, rd, t, payload);
    o[0] = (uint8_t)h;
    o[1] = (uint8_t)(h >> 8);
}

template <typename T>
__global__ void raw_dequant_k(T *D, const RawDesc *raw, uint32_t n_raw, QuantGeom q, const uint8_t *payload) {
    uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (uint64_t)n_raw * q.n) return;
    uint64_t e = idx / q.n, t = idx - e * q.n;
    RawDesc rd = raw[e];
    const uint8_t *o = raw_addr(q, rd, t, (uint8_t *)payload);
    D[t * q.rank + rd.col] = from_f<T>(d_f16_to_f32(ld_u16(o)));
}

// ---- rANS encoder ------------------------------------------------------------

struct EncWs {
    uint8_t *payload;      // [C][max_payload]
    uint32_t *hist;        // [C][S][4][256]
    uint16_t *freq, *start;// [C][S][4][256]
    uint32_t *npres;       // [C][S][4] present symbols (0xffffffff: empty table)
    uint32_t *lane_state, *lane_count, *lane_woff;  // [C][Lmax]
    uint16_t *words;       // [C][Wmax]
    uint32_t *seg_bytes, *seg_mode, *seg_out;        // [C][S]
    uint32_t *chunk_size;  // [C]
    uint64_t *chunk_off;   // [C]
    uint64_t *data_size;   // [1]
    uint32_t Lmax;
    uint64_t Wmax, max_payload;
    uint32_t C;
    int last_short;
};

__device__ __forceinline__ const SegList &pick(const SegList &full, const SegList &last, const EncWs &w, uint32_t c) {
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
    for (uint64_t i = a + threadIdx.x; i < e; i += blockDim.x) atomicAdd(&h[wp][(i % P) * 256 + p[i]], 1u);
    __syncthreads();
    for (int i = threadIdx.x; i < 256 * (int)P; i += blockDim.x) {
        uint32_t v = 0;
        for (int k = 0; k < 8; k++) v += h[k][i];
        if (v) atomicAdd(&w.hist[HIX(c, s, 0) + i], v);
    }
}

// rans_normalize (lib/entropy/rans.c) with 256 threads: one table per block.
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
    uint32_t f = fr[sym];
    if (deficit && cnt[sym]) {
        uint32_t rank = 0;
        for (int u = 0; u < 256; u++)
            if (cnt[u] && (rem[u] > rem[sym] || (rem[u] == rem[sym] && u < (int)sym))) rank++;
        if (rank < deficit) f++;
    }
    __syncthreads();
    fr[sym] = f;
    __syncthreads();
    if (sym == 0) {
        uint32_t excess = 0, present = 0;
        for (int u = 0; u < 256; u++) {
            if (cnt[u] && fr[u] == 0) { fr[u] = 1; excess++; }
            present += cnt[u] != 0;
        }
        while (excess) {
            int best = 0;
            for (int u = 1; u < 256; u++)
                if (fr[u] > fr[best]) best = u;
            fr[best]--;
            excess--;
        }
        uint32_t acc = 0;
        for (int u = 0; u < 256; u++) {
            w.freq[base + u] = (uint16_t)fr[u];
            w.start[base + u] = (uint16_t)acc;
            acc += fr[u];
        }
        w.npres[((uint64_t)c * ENC_MAX_SEGS + s) * 4 + t] = present;
    }
}

__device__ __forceinline__ int find_seg(const SegList &L, uint32_t g) {
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
        for (uint32_t k = m; k-- > 0;) {
            uint32_t sym = p[j + (uint64_t)k * N];
            uint32_t f = w.freq[tb + sym], st = w.start[tb + sym];
            uint64_t x_max = ((uint64_t)(RANS_STATE_L >> RANS_PROB_BITS) << 16) * f;
            if (x >= x_max) {
                dst[--pos] = (uint16_t)x;
                x >>= 16;
            }
            x = ((x / f) << RANS_PROB_BITS) + (x % f) + st;
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

// ---- header ------------------------------------------------------------------

struct HdrArgs {
    container_header h;  // everything but chunk data size, total size and CRCs
};

__device__ uint32_t crc_bytes(const uint32_t *table, const uint8_t *p, uint64_t n) {
    uint32_t c = 0xffffffffu;
    for (uint64_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

__global__ void prefix_k(HdrArgs a, const uint64_t *data_size, const uint32_t *sec_crc, const uint32_t *table,
                         uint8_t *out, uint64_t *written) {
    if (threadIdx.x || blockIdx.x) return;
    container_header h = a.h;
    h.sections[SEC_CHUNK_DATA].size = *data_size;
    h.total_size = h.sections[SEC_CHUNK_DATA].offset + *data_size;
    // sec_crc: positions, token ids (unused: 0-size), raw K, raw V, index
    h.sections[SEC_POSITIONS].crc32 = sec_crc[0];
    h.sections[SEC_TOKEN_IDS].crc32 = sec_crc[1];
    h.sections[SEC_RAW_K].crc32 = sec_crc[2];
    h.sections[SEC_RAW_V].crc32 = sec_crc[3];
    h.sections[SEC_CHUNK_INDEX].crc32 = sec_crc[4];
    h.sections[SEC_CHUNK_DATA].crc32 = 0;
    for (int i = 0; i < (int)(CONTAINER_HEADER_SIZE + SEC_COUNT * CONTAINER_SECTION_ENTRY); i++) out[i] = 0;
    const uint8_t magic[8] = {0x89, 'K', 'V', 'T', 'C', '\r', '\n', 0x1a};
    for (int i = 0; i < 8; i++) out[i] = magic[i];
    st_u16(out + 8, h.version_major);
    st_u16(out + 10, h.version_minor);
    st_u32(out + 12, CONTAINER_HEADER_SIZE);
    st_u32(out + 16, h.flags);
    st_u32(out + 20, h.geometry.n_layers);
    st_u32(out + 24, h.geometry.n_kv_heads);
    st_u32(out + 28, h.geometry.head_dim);
    st_u32(out + 32, h.geometry.rope_dim);
    out[36] = (uint8_t)h.geometry.rope_type;
    out[37] = (uint8_t)h.dtype;
    out[38] = h.codec;
    out[39] = h.rope_removed;
    st_u32(out + 40, __float_as_uint(h.geometry.rope_theta));
    st_u32(out + 44, h.recompute_layers);
    st_u64(out + 48, h.n_tokens);
    st_u32(out + 56, h.n_sink);
    st_u32(out + 60, h.n_window);
    st_u32(out + 64, h.chunk_tokens);
    st_u32(out + 68, h.n_chunks);
    st_u64(out + 72, h.transform_fingerprint);
    st_u64(out + 80, h.plan_fingerprint);
    st_u64(out + 88, (uint64_t)__double_as_longlong(h.plan_ratio));
    st_u64(out + 96, h.total_size);
    st_u32(out + 104, SEC_COUNT);
    uint8_t *tab = out + CONTAINER_HEADER_SIZE;
    for (int s = 0; s < SEC_COUNT; s++) {
        uint8_t *e = tab + s * CONTAINER_SECTION_ENTRY;
        st_u64(e, h.sections[s].offset);
        st_u64(e + 8, h.sections[s].size);
        st_u32(e + 16, h.sections[s].crc32);
    }
    st_u32(out + 108, crc_bytes(table, tab, SEC_COUNT * CONTAINER_SECTION_ENTRY));
    st_u32(out + 124, crc_bytes(table, out, 124));
    *written = h.total_size;
}

__global__ void copy_positions_k(const int64_t *pos, uint64_t n, uint8_t *out) {
    uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) st_u64(out + 8 * t, (uint64_t)pos[t]);
}

// ---- rANS decoder ------------------------------------------------------------

struct DSeg {
    uint64_t off;       // segment start, relative to the chunk
    uint32_t pay_off, n, mode, P, N;
    uint32_t st_off;    // relative to the segment: states (counts follow), words after 8N
    uint32_t blk_base;  // first lane block (rANS segments)
};

struct DecWs {
    uint8_t *payload;   // [C][max_payload]
    DSeg *seg;          // [C][DEC_MAX_SEGS]
    uint32_t *n_segs, *n_blocks;  // [C]
    uint64_t *chunk_off;          // [C] relative to chunk data
    uint32_t *chunk_size, *chunk_crc;  // [C]
    uint64_t max_payload;
    uint32_t C;
};

struct DecArgs {
    const uint8_t *in;
    uint64_t index_off, data_off, data_size;
    uint32_t chunk_tokens;
    uint64_t coded;
    uint32_t pay[2];  // payload size of a full chunk, of the last chunk
};

__global__ void parse_k(DecArgs a, DecWs w, uint32_t *status) {
    uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= w.C) return;
    w.n_segs[c] = 0;
    w.n_blocks[c] = 0;
    w.chunk_size[c] = 0;
    w.chunk_off[c] = 0;
    const uint8_t *e = a.in + a.index_off + (uint64_t)c * CONTAINER_CHUNK_ENTRY;
    uint64_t off = ld_u64(e);
    uint32_t size = ld_u32(e + 8), crc = ld_u32(e + 12), ntok = ld_u32(e + 16), pay = ld_u32(e + 20);
    uint64_t first = (uint64_t)c * a.chunk_tokens;
    uint32_t want_n = (uint32_t)(a.coded - first < a.chunk_tokens ? a.coded - first : a.chunk_tokens);
    uint32_t want_pay = want_n == a.chunk_tokens ? a.pay[0] : a.pay[1];
    if (off > a.data_size || size > a.data_size - off || ntok != want_n || pay != want_pay) {
        set_status(status, KVTC_ERR_CORRUPT);
        return;
    }
    // issue 9 item 4 (decompression bomb): chunks back to back from 0,
    // filling chunk data exactly, none claiming more payload than its bytes
    // can produce (the CPU's container_check_chunk_index, one entry per thread)
    const uint8_t *prev = e - CONTAINER_CHUNK_ENTRY;
    bool layout_ok = c == 0 ? off == 0 : off == ld_u64(prev) + ld_u32(prev + 8);
    if (c == w.C - 1 && off + size != a.data_size) layout_ok = false;
    if ((uint64_t)pay > (uint64_t)size * CONTAINER_MAX_EXPANSION + CONTAINER_EXPANSION_SLACK) layout_ok = false;
    if (!layout_ok) {
        set_status(status, KVTC_ERR_CORRUPT);
        return;
    }
    w.chunk_off[c] = off;
    w.chunk_size[c] = size;
    w.chunk_crc[c] = crc;
    const uint8_t *p = a.in + a.data_off + off;
    uint64_t pos = 0, done = 0;
    uint32_t ns = 0, blk = 0;
    DSeg *sd = w.seg + (uint64_t)c * DEC_MAX_SEGS;
    while (pos < size) {
        if (ns == DEC_MAX_SEGS) { set_status(status, KVTC_ERR_UNSUPPORTED); return; }
        if (size - pos < RANS_STORED_HEADER) goto bad;
        DSeg d;
        d.off = pos;
        d.n = ld_u32(p + pos);
        d.mode = p[pos + 4];
        d.pay_off = (uint32_t)done;
        d.blk_base = blk;
        d.P = d.N = d.st_off = 0;
        if (d.n == 0 || d.n > pay - done) goto bad;
        if (d.mode == RANS_MODE_STORED) {
            if (size - pos - RANS_STORED_HEADER < d.n) goto bad;
            pos += RANS_STORED_HEADER + (uint64_t)d.n;
        } else if (d.mode == RANS_MODE_RANS) {
            if (size - pos < RANS_SEG_HEADER) goto bad;
            d.P = p[pos + 5];
            d.N = ld_u16(p + pos + 6);
            if ((d.P != 1 && d.P != 2 && d.P != 4) || d.N == 0 || d.N > RANS_MAX_LANES || d.N % d.P) goto bad;
            uint64_t o = RANS_SEG_HEADER;
            for (uint32_t t = 0; t < d.P; t++) {
                if (size - pos - o < 32) goto bad;
                uint32_t k = 0;
                for (int b = 0; b < 32; b++) k += __popc(p[pos + o + b]);
                o += 32 + 2ull * k;
                if (o > size - pos) goto bad;
            }
            if ((size - pos - o) / 8 < d.N) goto bad;
            d.st_off = (uint32_t)o;
            uint64_t words = 0;
            for (uint32_t j = 0; j < d.N; j++) words += ld_u32(p + pos + o + 4ull * d.N + 4ull * j);
            o += 8ull * d.N;
            if (words > (size - pos - o) / 2) goto bad;
            pos += o + 2 * words;
            blk += (d.N + LANE_BLOCK - 1) / LANE_BLOCK;
        } else {
            goto bad;
        }
        done += d.n;
        sd[ns++] = d;
    }
    if (done != pay) goto bad;
    w.n_segs[c] = ns;
    w.n_blocks[c] = blk;
    return;
bad:
    set_status(status, KVTC_ERR_CORRUPT);
}

__global__ void __launch_bounds__(LANE_BLOCK) dec_lanes_k(DecArgs a, DecWs w, uint32_t *status) {
    __shared__ uint8_t sym[4][RANS_PROB_SCALE];
    __shared__ uint16_t fr[4][256], stt[4][256];
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
        for (uint32_t t = 0; t < d.P; t++)
            for (uint32_t s = tid; s < 256; s += LANE_BLOCK)
                for (uint32_t i = 0; i < fr[t][s]; i++) sym[t][stt[t][s] + i] = (uint8_t)s;
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
            for (uint32_t k = 0; k < m && ok; k++) {
                uint32_t slot = x & (RANS_PROB_SCALE - 1);
                uint32_t s = sym[t][slot];
                x = fr[t][s] * (x >> RANS_PROB_BITS) + slot - stt[t][s];
                if (x < RANS_STATE_L) {
                    if (wp == wend) { ok = false; break; }
                    x = (x << 16) | ld_u16(words + wp);
                    wp += 2;
                }
                out[(uint64_t)k * d.N] = (uint8_t)s;
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

__global__ void write_positions_k(const uint8_t *pos_le, uint64_t n, int64_t *out) {
    uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) out[t] = pos_le ? (int64_t)ld_u64(pos_le + 8 * t) : (int64_t)t;
}

// ---- host: options, codec ------------------------------------------------------

extern "C" void kvtc_cuda_options_init(kvtc_cuda_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->ratio = 20.0;  // the CPU encoder's default (kvtc_encode_options_init)
    o->n_sink = 4;
    o->n_window = 128;
    o->chunk_tokens = 256;
    o->gemm = KVTC_CUDA_GEMM_BF16;
    o->device = -1;
}

static void free_plans(kvtc_cuda_codec *c) {
    if (!c->plans) return;
    for (uint32_t i = 0; i < c->n_plans; i++)
        for (int s = 0; s < 2; s++) {
            cudaFree(c->plans[i].s[s].d_groups);
            cudaFree(c->plans[i].s[s].d_raw);
        }
    free(c->plans);
    c->plans = NULL;
}

extern "C" void kvtc_cuda_codec_free(kvtc_cuda_codec *c) {
    if (!c) return;
    DeviceGuard dg(c->opt.device);
    free_plans(c);
    for (int s = 0; s < 2; s++) {
        cudaFree(c->d_basis[s]);
        cudaFree(c->d_mean[s]);
        cudaFree(c->d_weight[s]);
    }
    cudaFree(c->d_inv_freq);
    cudaFree(c->d_crc_table);
    if (c->blas) cublasDestroy(c->blas);
    if (c->profile)
        for (int i = 0; i < 48; i++) cudaEventDestroy(c->ev[i]);
    free(c);
}

static kvtc_result build_stream_plan(const plan_stream *ps, StreamPlan *sp) {
    memset(sp, 0, sizeof *sp);
    sp->rank = ps->rank_used;
    GroupDesc *g = (GroupDesc *)malloc(sizeof(GroupDesc) * (ps->n_groups + 1));
    RawDesc *rw = (RawDesc *)malloc(sizeof(RawDesc) * (ps->rank_used + 1));
    if (!g || !rw) { free(g); free(rw); return KVTC_ERR_OUT_OF_MEMORY; }
    uint32_t col = 0, n = 0, nr = 0, pb = 0, cb = 0;
    kvtc_result r = KVTC_OK;
    for (uint32_t i = 0; i < ps->n_groups && col < ps->rank_used && !r; i++) {
        const dp_group *dg = &ps->groups[i];
        GroupDesc d = {col, dg->size, dg->bits, pb, cb};
        if (dg->bits >= 1 && dg->bits <= DP_MAX_BITS) {
            if (dg->size % 8 || dg->size > 1024) r = KVTC_ERR_UNSUPPORTED;
            pb += 4;
            cb += dg->size * dg->bits;
            g[n++] = d;
        } else if (dg->bits == DP_RAW_BITS) {
            for (uint32_t j = 0; j < dg->size && col + j < ps->rank_used; j++) rw[nr++] = RawDesc{col + j, pb, dg->size, j};
            pb += 2 * dg->size;
        } else if (dg->bits == 0) {
            g[n++] = d; /* decoded as zeros */
        } else {
            r = KVTC_ERR_UNSUPPORTED;
        }
        col += dg->size;
    }
    sp->n_groups = n;
    sp->n_raw = nr;
    sp->param_bytes = pb;
    sp->code_bits = cb;
    if (!r) {
        cudaError_t e = cudaMalloc(&sp->d_groups, sizeof(GroupDesc) * (n ? n : 1));
        if (e == cudaSuccess && n) e = cudaMemcpy(sp->d_groups, g, sizeof(GroupDesc) * n, cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMalloc(&sp->d_raw, sizeof(RawDesc) * (nr ? nr : 1));
        if (e == cudaSuccess && nr) e = cudaMemcpy(sp->d_raw, rw, sizeof(RawDesc) * nr, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) r = KVTC_ERR_CUDA;
    }
    free(g);
    free(rw);
    return r;
}

static kvtc_result upload_f32(float **dst, const float *src, size_t n) {
    CK(cudaMalloc(dst, sizeof(float) * (n ? n : 1)));
    if (n) CK(cudaMemcpy(*dst, src, sizeof(float) * n, cudaMemcpyHostToDevice));
    return KVTC_OK;
}

extern "C" kvtc_result kvtc_cuda_codec_alloc(const kvtc_basis *b, const kvtc_cuda_options *opts, kvtc_cuda_codec **out) {
    if (!b || !out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    kvtc_cuda_options o;
    kvtc_cuda_options_init(&o);
    if (opts) {
        if (opts->struct_size != sizeof o) return KVTC_ERR_INVALID_ARGUMENT;
        o = *opts;
    }
    if (o.chunk_tokens == 0 || o.chunk_tokens > CONTAINER_MAX_CHUNK_TOKENS || !(o.ratio > 0) ||
        (unsigned)o.gemm > KVTC_CUDA_GEMM_FP32)
        return KVTC_ERR_INVALID_ARGUMENT;
    if (b->recompute_layers) return KVTC_ERR_UNSUPPORTED;
    if (b->geometry.head_dim % 2 || b->geometry.head_dim / 2 > 1024) return KVTC_ERR_UNSUPPORTED;
    if (o.device < 0 && cudaGetDevice(&o.device) != cudaSuccess) return KVTC_ERR_CUDA;
    DeviceGuard dg(o.device);  // the codec lives on o.device; the caller's device is restored
    if (!dg.ok) return KVTC_ERR_CUDA;
    kvtc_cuda_codec *c = (kvtc_cuda_codec *)calloc(1, sizeof *c);
    if (!c) return KVTC_ERR_OUT_OF_MEMORY;
    c->basis = b;
    c->opt = o;
    c->p = b->k.p;
    c->esize = o.gemm == KVTC_CUDA_GEMM_BF16 ? 2 : 4;
    kvtc_result r = kvtc_basis_find_plan(b, o.ratio, &c->enc_plan);
    if (r) { free(c); return r; }
    c->n_plans = b->n_plans;
    c->plans = (PlanDev *)calloc(b->n_plans, sizeof(PlanDev));
    if (!c->plans) { free(c); return KVTC_ERR_OUT_OF_MEMORY; }
    for (uint32_t i = 0; i < b->n_plans && !r; i++) {
        c->plans[i].host = &b->plans[i];
        c->plans[i].fingerprint = b->plans[i].fingerprint;
        r = build_stream_plan(&b->plans[i].k, &c->plans[i].s[0]);
        if (!r) r = build_stream_plan(&b->plans[i].v, &c->plans[i].s[1]);
        for (int s = 0; s < 2 && !r; s++)
            if (c->plans[i].s[s].rank > c->rmax[s]) c->rmax[s] = c->plans[i].s[s].rank;
    }
    const basis_stream *bs[2] = {&b->k, &b->v};
    for (int s = 0; s < 2 && !r; s++) {
        size_t n = (size_t)c->rmax[s] * c->p;
        if (c->rmax[s] > bs[s]->rank) { r = KVTC_ERR_CORRUPT; break; }
        if (cudaMalloc(&c->d_basis[s], (n ? n : 1) * c->esize) != cudaSuccess) { r = KVTC_ERR_CUDA; break; }
        if (n) {
            void *tmp = malloc(n * c->esize);
            if (!tmp) { r = KVTC_ERR_OUT_OF_MEMORY; break; }
            if (c->esize == 2) {
                uint16_t *t16 = (uint16_t *)tmp;
                for (size_t i = 0; i < n; i++) t16[i] = kvi_f32_to_bf16(bs[s]->basis[i]);
            } else {
                memcpy(tmp, bs[s]->basis, n * 4);
            }
            if (cudaMemcpy(c->d_basis[s], tmp, n * c->esize, cudaMemcpyHostToDevice) != cudaSuccess) r = KVTC_ERR_CUDA;
            free(tmp);
        }
        if (!r) r = upload_f32(&c->d_mean[s], bs[s]->mean, c->p);
        if (!r) r = upload_f32(&c->d_weight[s], bs[s]->weight, c->p);
    }
    if (!r) {
        rope_table rt;
        r = rope_table_init(&rt, &b->geometry);
        if (!r) {
            uint32_t np = rt.n_pairs ? rt.n_pairs : 1;
            if (cudaMalloc(&c->d_inv_freq, sizeof(double) * np) != cudaSuccess) r = KVTC_ERR_CUDA;
            else if (rt.n_pairs &&
                     cudaMemcpy(c->d_inv_freq, rt.inv_freq, sizeof(double) * rt.n_pairs, cudaMemcpyHostToDevice) != cudaSuccess)
                r = KVTC_ERR_CUDA;
            rope_table_free(&rt);
        }
    }
    if (!r) {
        uint32_t t[256 + 32];
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++) v = v & 1 ? (v >> 1) ^ 0xedb88320u : v >> 1;
            t[i] = v;
        }
        // x^(2^k) mod P (zlib's x2n_table), with zlib's multmodp
        uint32_t p = 1u << 30;
        for (int k = 0; k < 32; k++) {
            t[256 + k] = p;
            uint32_t a = p, bb = p, m = 1u << 31, q = 0;
            for (;;) {
                if (a & m) {
                    q ^= bb;
                    if ((a & (m - 1)) == 0) break;
                }
                m >>= 1;
                bb = bb & 1 ? (bb >> 1) ^ 0xedb88320u : bb >> 1;
            }
            p = q;
        }
        if (cudaMalloc(&c->d_crc_table, sizeof t) != cudaSuccess ||
            cudaMemcpy(c->d_crc_table, t, sizeof t, cudaMemcpyHostToDevice) != cudaSuccess)
            r = KVTC_ERR_CUDA;
    }
    if (!r && cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS) r = KVTC_ERR_CUDA;
    if (!r && o.profile) {
        c->profile = 1;
        for (int i = 0; i < 48 && !r; i++)
            if (cudaEventCreate(&c->ev[i]) != cudaSuccess) r = KVTC_ERR_CUDA;
    }
    if (r) { kvtc_cuda_codec_free(c); return r; }
    *out = c;
    return KVTC_OK;
}

// ---- host: segment lists and workspace layout ----------------------------------

static void build_seglist(const basis_plan *pl, uint64_t n_c, SegList *L) {
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

struct Layout {
    size_t total;
    size_t cs, X, D, payload, pieces, crc_out, sec_crc, blas, blas_size;
    size_t hist, freq, start, npres, lstate, lcount, lwoff, words, segb, segm, sego, csize, coff, dsize;
    size_t dseg, dnseg, dnblk, dcoff, dcsize, dccrc;
    uint64_t C, max_payload, max_pieces, hist_bytes;
    uint32_t Lmax;
    uint64_t Wmax;
};

static size_t al(size_t x) { return (x + 255) & ~(size_t)255; }

// Checked arithmetic for the workspace layout: hostile or huge token counts
// must give kvtc_cuda_workspace_size() == 0, never a wrapped small size
// (issue 9). Every product saturates to UINT64_MAX and sets *ov.
static uint64_t mulc(uint64_t a, uint64_t b, bool *ov) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) { *ov = true; return UINT64_MAX; }
    return r;
}
static uint64_t addc(uint64_t a, uint64_t b, bool *ov) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) { *ov = true; return UINT64_MAX; }
    return r;
}

// Returns 0 when the layout overflows size_t (or n exceeds the format).
static int layout_ws(const kvtc_cuda_codec *c, uint64_t n, uint32_t chunk_tokens, Layout *L) {
    memset(L, 0, sizeof *L);
    const kvtc_geometry *g = &c->basis->geometry;
    if (n > KVTC_MAX_TOKENS) return 0;
    if (!chunk_tokens) chunk_tokens = c->opt.chunk_tokens;
    if (chunk_tokens > CONTAINER_MAX_CHUNK_TOKENS) return 0;
    bool ov = false;
    uint64_t C = (n + chunk_tokens - 1) / chunk_tokens;
    if (C == 0) C = 1;
    L->C = C;
    uint64_t maxpay = 0;
    for (uint32_t i = 0; i < c->n_plans; i++) {
        uint64_t pz = quant_payload_size(&c->plans[i].host->k, &c->plans[i].host->v, chunk_tokens < n ? chunk_tokens : (n ? n : 1));
        if (pz > maxpay) maxpay = pz;
    }
    if (maxpay > UINT32_MAX) return 0;  // a chunk payload is a u32 in the format
    L->max_payload = al(maxpay + 1);
    // any chunk's segment list: lanes <= payload / 4096 + 32 per segment, words <= payload + lanes
    L->Lmax = (uint32_t)(L->max_payload / RANS_SYMBOLS_PER_LANE + 32 * ENC_MAX_SEGS + 1);
    L->Wmax = L->max_payload + L->Lmax;
    uint64_t raw = mulc((uint64_t)g->n_layers * g->n_kv_heads * g->head_dim * kvtc_dtype_size(KVTC_DTYPE_F32),
                        (uint64_t)c->opt.n_sink + c->opt.n_window + 64, &ov);
    uint64_t big = 2 * maxpay + (uint64_t)DEC_MAX_SEGS * 40000;
    if (raw > big) big = raw;
    if (mulc(n, 8, &ov) > big) big = n * 8;
    if (mulc(C, CONTAINER_CHUNK_ENTRY, &ov) > big) big = C * CONTAINER_CHUNK_ENTRY;
    L->max_pieces = big / CRC_PIECE + 1;
    uint32_t np = g->rope_type != KVTC_ROPE_NONE ? kvi_geometry_rope_dim(g) / 2 : 1;
    uint32_t rm = c->rmax[0] > c->rmax[1] ? c->rmax[0] : c->rmax[1];
    uint64_t o = 0;
#define TAKE(field, bytes)                                                     \
    do {                                                                       \
        uint64_t b_ = (bytes);                                                 \
        if (b_ > SIZE_MAX - 512) ov = true;                                    \
        L->field = (size_t)o;                                                  \
        o = addc(o, ov ? 0 : al((size_t)b_), &ov);                             \
    } while (0)
    uint64_t segs4 = mulc(C, (uint64_t)ENC_MAX_SEGS * 4, &ov);
    TAKE(cs, addc(mulc(mulc(n, np, &ov), sizeof(float2), &ov), 8, &ov));
    TAKE(X, addc(mulc(mulc(n, c->p, &ov), c->esize, &ov), 8, &ov));
    TAKE(D, addc(mulc(n, (uint64_t)(rm ? rm : 1) * 4, &ov), 8, &ov));
    TAKE(payload, mulc(C, L->max_payload, &ov));
    TAKE(pieces, mulc(mulc(C + 8, L->max_pieces, &ov), 4, &ov));
    TAKE(crc_out, mulc(C + 8, 4, &ov));
    TAKE(sec_crc, 64);
    L->blas_size = 32u << 20;
    TAKE(blas, L->blas_size);
    L->hist_bytes = mulc(segs4, 256 * 4, &ov);
    TAKE(hist, L->hist_bytes);
    TAKE(freq, mulc(segs4, 256 * 2, &ov));
    TAKE(start, mulc(segs4, 256 * 2, &ov));
    TAKE(npres, mulc(segs4, 4, &ov));
    TAKE(lstate, mulc(mulc(C, L->Lmax, &ov), 4, &ov));
    TAKE(lcount, mulc(mulc(C, L->Lmax, &ov), 4, &ov));
    TAKE(lwoff, mulc(mulc(C, L->Lmax, &ov), 4, &ov));
    TAKE(words, mulc(mulc(C, L->Wmax, &ov), 2, &ov));
    TAKE(segb, mulc(C, ENC_MAX_SEGS * 4, &ov));
    TAKE(segm, mulc(C, ENC_MAX_SEGS * 4, &ov));
    TAKE(sego, mulc(C, ENC_MAX_SEGS * 4, &ov));
    TAKE(csize, mulc(C, 4, &ov));
    TAKE(coff, mulc(C, 8, &ov));
    TAKE(dsize, 8);
    TAKE(dseg, mulc(C, DEC_MAX_SEGS * sizeof(DSeg), &ov));
    TAKE(dnseg, mulc(C, 4, &ov));
    TAKE(dnblk, mulc(C, 4, &ov));
    TAKE(dcoff, mulc(C, 8, &ov));
    TAKE(dcsize, mulc(C, 4, &ov));
    TAKE(dccrc, mulc(C, 4, &ov));
#undef TAKE
    if (ov || o > SIZE_MAX) return 0;
    L->total = (size_t)o;
    return 1;
}

extern "C" size_t kvtc_cuda_workspace_size(const kvtc_cuda_codec *c, uint64_t n_tokens, uint32_t chunk_tokens) {
    if (!c) return 0;
    Layout L;
    if (!layout_ws(c, n_tokens, chunk_tokens, &L)) return 0;
    return L.total;
}

static kvtc_result check_dev_cache(const kvtc_cuda_codec *c, const kvtc_cache *cache) {
    if (!cache) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_cache_check(cache);
    if (r) return r;
    if (!kvi_geometry_equal(&cache->geometry, &c->basis->geometry)) return KVTC_ERR_GEOMETRY_MISMATCH;
    return KVTC_OK;
}

static kvtc_result enc_header(const kvtc_cuda_codec *c, const kvtc_cache *cache, container_header *h) {
    /* positions live in device memory: any given positions are stored (the
     * CPU encoder omits them when they are 0..n-1; both forms decode alike) */
    kvtc_result r = container_header_init(h, c->basis, c->enc_plan, &cache->geometry, cache->dtype, cache->n_tokens,
                                          c->opt.n_sink, c->opt.n_window, c->opt.chunk_tokens, CONTAINER_CODEC_RANS,
                                          cache->positions != NULL);
    return r ? r : container_layout(h, 0);
}

extern "C" size_t kvtc_cuda_compress_bound(const kvtc_cuda_codec *c, const kvtc_cache *cache) {
    if (!c || check_dev_cache(c, cache)) return 0;
    container_header h;
    if (enc_header(c, cache, &h)) return 0;
    const basis_plan *pl = &c->basis->plans[c->enc_plan];
    uint64_t coded = container_coded_tokens(&h), data = 0;
    for (uint64_t t0 = 0; t0 < coded; t0 += h.chunk_tokens) {
        uint64_t n = coded - t0 < h.chunk_tokens ? coded - t0 : h.chunk_tokens;
        data += rans_bound((size_t)quant_payload_size(&pl->k, &pl->v, n), ENC_MAX_SEGS);
    }
    return (size_t)(h.sections[SEC_CHUNK_DATA].offset + data);
}

// ---- host: compress --------------------------------------------------------------

static cudaDataType_t elem_type(const kvtc_cuda_codec *c) { return c->esize == 2 ? CUDA_R_16BF : CUDA_R_32F; }
static cublasComputeType_t compute_type(const kvtc_cuda_codec *c) {
    return c->opt.gemm == KVTC_CUDA_GEMM_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

static RowGeom row_geom(const container_header *h, int is_key, int unrope) {
    RowGeom g;
    g.H = h->geometry.n_kv_heads;
    g.d = h->geometry.head_dim;
    g.rd = kvi_geometry_rope_dim(&h->geometry);
    g.rope = (is_key && unrope && h->geometry.rope_type != KVTC_ROPE_NONE) ? (uint32_t)h->geometry.rope_type : 0;
    g.n_tokens = h->n_tokens;
    g.t0 = h->n_sink;
    g.n = container_coded_tokens(h);
    g.p = (uint64_t)h->geometry.n_layers * g.H * g.d;
    return g;
}

static dim3 pair_block(uint32_t d) {
    uint32_t px = d / 2, ty = 256 / px;
    return dim3(px, ty ? ty : 1);
}

static QuantGeom quant_geom(const Layout &L, const PlanDev &pd, uint64_t n, uint32_t chunk_tokens, int s) {
    QuantGeom q;
    q.n = n;
    q.chunk_tokens = chunk_tokens;
    q.max_payload = L.max_payload;
    q.pb[0] = pd.s[0].param_bytes; q.pb[1] = pd.s[1].param_bytes;
    q.cb[0] = pd.s[0].code_bits; q.cb[1] = pd.s[1].code_bits;
    q.stream = s;
    q.rank = pd.s[s].rank;
    q.n_groups = pd.s[s].n_groups;
    return q;
}

extern "C" kvtc_result kvtc_cuda_compress(kvtc_cuda_codec *c, const kvtc_cache *cache, void *d_out, size_t cap,
                                          uint64_t *d_written, void *d_ws, size_t ws_size, cudaStream_t stream) {
    if (!c || !cache || !d_out || !d_written || !d_ws) return KVTC_ERR_INVALID_ARGUMENT;
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return KVTC_ERR_CUDA;
    kvtc_result r = check_dev_cache(c, cache);
    if (r) return r;
    if (cap < kvtc_cuda_compress_bound(c, cache)) return KVTC_ERR_BUFFER_TOO_SMALL;
    container_header h;
    if ((r = enc_header(c, cache, &h))) return r;
    Layout L;
    if (!layout_ws(c, cache->n_tokens, h.chunk_tokens, &L)) return KVTC_ERR_TOO_LARGE;
    if (ws_size < L.total) return KVTC_ERR_BUFFER_TOO_SMALL;
    uint8_t *ws = (uint8_t *)d_ws, *out = (uint8_t *)d_out;
    const PlanDev &pd = c->plans[c->enc_plan];
    const basis_plan *pl = pd.host;
    uint64_t coded = container_coded_tokens(&h);
    uint32_t C = h.n_chunks;
    CKB(cublasSetStream(c->blas, stream));
    CKB(cublasSetWorkspace(c->blas, ws + L.blas, L.blas_size));
    PROF(c, stream, "start");
    const kvtc_geometry *g = &h.geometry;
    uint32_t LH = g->n_layers * g->n_kv_heads;
    size_t esz = kvtc_dtype_size(h.dtype);

    // raw sections and positions
    if (container_raw_tokens(&h)) {
        raw_copy_k<<<dim3(64, LH), 256, 0, stream>>>((uint8_t *)cache->k, out + h.sections[SEC_RAW_K].offset, h.n_tokens,
                                                     h.n_sink, h.n_window, (uint32_t)(g->head_dim * esz), 0);
        raw_copy_k<<<dim3(64, LH), 256, 0, stream>>>((uint8_t *)cache->v, out + h.sections[SEC_RAW_V].offset, h.n_tokens,
                                                     h.n_sink, h.n_window, (uint32_t)(g->head_dim * esz), 0);
    }
    if (h.flags & CONTAINER_FLAG_POSITIONS)
        copy_positions_k<<<(unsigned)((h.n_tokens + 255) / 256), 256, 0, stream>>>(cache->positions, h.n_tokens,
                                                                                   out + h.sections[SEC_POSITIONS].offset);
    PROF(c, stream, "raw sections");
    uint64_t *data_size = (uint64_t *)(ws + L.dsize);
    if (coded == 0) {
        CK(cudaMemsetAsync(data_size, 0, 8, stream));
    } else {
        float2 *cs = (float2 *)(ws + L.cs);
        int rot = c->basis->rope_removed && g->rope_type != KVTC_ROPE_NONE;
        uint32_t n_pairs = kvi_geometry_rope_dim(g) / 2;
        if (rot) {
            uint64_t tot = coded * n_pairs;
            rope_table_k<<<(unsigned)((tot + 255) / 256), 256, 0, stream>>>(c->d_inv_freq, n_pairs, cache->positions, NULL,
                                                                            h.n_sink, coded, cs);
        }
        PROF(c, stream, "rope table");
        const float one = 1.0f, zero = 0.0f;
        for (int s = 0; s < 2; s++) {
            RowGeom rg = row_geom(&h, s == 0, rot);
            dim3 blk = pair_block(g->head_dim);
            dim3 grd((unsigned)((coded + blk.y - 1) / blk.y), LH);
            const void *src = s == 0 ? cache->k : cache->v;
            if (vec_ok(c->esize, h.dtype, rg))
                launch_gather_vec(rg, LH, src, h.dtype, cs, c->d_mean[s], c->d_weight[s], ws + L.X, stream);
            else if (c->esize == 2)
                gather_k<__nv_bfloat16><<<grd, blk, 0, stream>>>(src, h.dtype, rg, cs, c->d_mean[s], c->d_weight[s],
                                                                 (__nv_bfloat16 *)(ws + L.X));
            else
                gather_k<float><<<grd, blk, 0, stream>>>(src, h.dtype, rg, cs, c->d_mean[s], c->d_weight[s], (float *)(ws + L.X));
            CK(cudaGetLastError());
            PROF(c, stream, s ? "V gather" : "K gather");
            uint32_t rk = pd.s[s].rank;
            if (rk)
                CKB(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rk, (int)coded, (int)c->p, &one, c->d_basis[s],
                                 elem_type(c), (int)c->p, ws + L.X, elem_type(c), (int)c->p, &zero, ws + L.D, CUDA_R_32F,
                                 (int)rk, compute_type(c), CUBLAS_GEMM_DEFAULT));
            PROF(c, stream, s ? "V gemm" : "K gemm");
            QuantGeom q = quant_geom(L, pd, coded, h.chunk_tokens, s);
            if (q.n_groups) {
                dim3 qg((q.n_groups + 7) / 8, (unsigned)(coded < 256 ? coded : 256));
                quant_k<<<qg, 256, 0, stream>>>((const float *)(ws + L.D), pd.s[s].d_groups, q, ws + L.payload);
            }
            if (pd.s[s].n_raw) {
                uint64_t tot = (uint64_t)pd.s[s].n_raw * coded;
                raw_quant_k<<<(unsigned)((tot + 255) / 256), 256, 0, stream>>>((const float *)(ws + L.D), pd.s[s].d_raw,
                                                                              pd.s[s].n_raw, q, ws + L.payload);
            }
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
        CK(cudaMemsetAsync(w.hist, 0, L.hist_bytes, stream));
        uint32_t maxseg = 0, maxlanes = full.total_lanes > last.total_lanes ? full.total_lanes : last.total_lanes;
        for (uint32_t i = 0; i < full.n; i++) maxseg = full.size[i] > maxseg ? full.size[i] : maxseg;
        for (uint32_t i = 0; i < last.n; i++) maxseg = last.size[i] > maxseg ? last.size[i] : maxseg;
        hist_k<<<dim3(maxseg / 65536 + 1, ENC_MAX_SEGS, C), 256, 0, stream>>>(full, last, w);
        PROF(c, stream, "histograms");
        norm_k<<<dim3(4, ENC_MAX_SEGS, C), 256, 0, stream>>>(full, last, w);
        PROF(c, stream, "normalize");
        enc_lanes_k<<<dim3((maxlanes + 127) / 128, C), 128, 0, stream>>>(full, last, w);
        PROF(c, stream, "rANS lanes");
        segsize_k<<<dim3(ENC_MAX_SEGS, C), 256, 0, stream>>>(full, last, w);
        chunkscan_k<<<1, 256, 0, stream>>>(full, last, w);
        PROF(c, stream, "sizes");
        uint8_t *data = out + h.sections[SEC_CHUNK_DATA].offset;
        asm_hdr_k<<<dim3(ENC_MAX_SEGS, C), 256, 0, stream>>>(full, last, w, data);
        PROF(c, stream, "assemble headers");
        asm_words_k<<<dim3((maxlanes + 7) / 8, C), 256, 0, stream>>>(full, last, w, data);
        PROF(c, stream, "assemble words");
        CK(cudaGetLastError());
        // chunk CRCs -> chunk index
        uint32_t chunk_pieces = (uint32_t)(rans_bound(L.max_payload, ENC_MAX_SEGS) / CRC_PIECE + 1);
        uint32_t *pieces = (uint32_t *)(ws + L.pieces);
        Regions none;
        memset(&none, 0, sizeof none);
        crc_pieces_k<<<dim3((chunk_pieces + 127) / 128, C), 128, 0, stream>>>(data, none, 0, w.chunk_off, w.chunk_size,
                                                                              chunk_pieces, c->d_crc_table, pieces);
        uint32_t pay_full = (uint32_t)quant_payload_size(&pl->k, &pl->v, h.chunk_tokens);
        uint32_t pay_last = (uint32_t)quant_payload_size(&pl->k, &pl->v, last_n);
        crc_combine_k<<<C, 256, 0, stream>>>(none, w.chunk_size, C, chunk_pieces, c->d_crc_table + 256, pieces,
                                                           NULL, out + h.sections[SEC_CHUNK_INDEX].offset, w.chunk_off,
                                                           h.chunk_tokens, coded, pay_full, pay_last, NULL, NULL);
        PROF(c, stream, "chunk CRCs + index");
        CK(cudaGetLastError());
    }
    // section CRCs: positions, token ids, raw K, raw V, chunk index
    uint32_t sec_pieces;
    Regions sr = section_regions(h, &sec_pieces);
    if (sec_pieces > L.max_pieces) return KVTC_ERR_BUFFER_TOO_SMALL;
    uint32_t *pieces = (uint32_t *)(ws + L.pieces);
    uint32_t *sec_crc = (uint32_t *)(ws + L.crc_out);
    crc_pieces_k<<<dim3((sec_pieces + 127) / 128, 5), 128, 0, stream>>>(out, sr, 0, NULL, NULL, sec_pieces, c->d_crc_table,
                                                                         pieces);
    crc_combine_k<<<5, 256, 0, stream>>>(sr, NULL, 5, sec_pieces, c->d_crc_table + 256, pieces, sec_crc, NULL, NULL, 0, 0,
                                        0, 0, NULL, NULL);
    HdrArgs ha;
    ha.h = h;
    PROF(c, stream, "section CRCs");
    prefix_k<<<1, 1, 0, stream>>>(ha, data_size, sec_crc, c->d_crc_table, out, d_written);
    CK(cudaGetLastError());
    PROF(c, stream, "header");
    prof_report(c, "compress");
    return KVTC_OK;
}

// ---- host: decompress ------------------------------------------------------------

extern "C" kvtc_result kvtc_cuda_decompress(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size,
                                            const void *d_stream, size_t size, kvtc_cache *out, void *d_ws, size_t ws_size,
                                            uint32_t *d_status, cudaStream_t stream) {
    if (!c || !h_prefix || !d_stream || !out || !d_ws || !d_status) return KVTC_ERR_INVALID_ARGUMENT;
    /* streams carrying a solved plan (container 1.1 flag bit 2, a longer
     * section table) are not decoded on the GPU yet */
    const uint8_t *hp8 = (const uint8_t *)h_prefix;
    if (prefix_size >= 20 && (hp8[16] & CONTAINER_FLAG_PLAN)) return KVTC_ERR_UNSUPPORTED;
    DeviceGuard dg(c->opt.device);
    if (!dg.ok) return KVTC_ERR_CUDA;
    container_header h;
    kvtc_result r = container_read_prefix_only((const uint8_t *)h_prefix, prefix_size, &h);
    if (r) return r;
    const kvtc_basis *b = c->basis;
    if (h.transform_fingerprint != b->transform_fingerprint || !kvi_geometry_equal(&h.geometry, &b->geometry) ||
        h.recompute_layers != b->recompute_layers || h.rope_removed != (uint8_t)b->rope_removed)
        return KVTC_ERR_BASIS_MISMATCH;
    if (h.codec != CONTAINER_CODEC_RANS || h.recompute_layers || (h.flags & CONTAINER_FLAG_TOKEN_IDS))
        return KVTC_ERR_UNSUPPORTED;
    int pi = basis_find_plan_by_fingerprint(b, h.plan_fingerprint);
    if (pi < 0) return KVTC_ERR_BASIS_MISMATCH;
    if ((r = check_dev_cache(c, out))) return r;
    if (out->dtype != h.dtype || out->n_tokens != h.n_tokens) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (size < h.total_size) return KVTC_ERR_TRUNCATED;
    Layout L;
    if (!layout_ws(c, h.n_tokens, h.chunk_tokens, &L)) return KVTC_ERR_TOO_LARGE;
    if (ws_size < L.total) return KVTC_ERR_BUFFER_TOO_SMALL;
    const PlanDev &pd = c->plans[pi];
    const basis_plan *pl = pd.host;
    uint8_t *ws = (uint8_t *)d_ws;
    const uint8_t *in = (const uint8_t *)d_stream;
    uint64_t coded = container_coded_tokens(&h);
    uint32_t C = h.n_chunks;
    const kvtc_geometry *g = &h.geometry;
    uint32_t LH = g->n_layers * g->n_kv_heads;
    size_t esz = kvtc_dtype_size(h.dtype);
    CK(cudaMemsetAsync(d_status, 0, 4, stream));
    CKB(cublasSetStream(c->blas, stream));
    CKB(cublasSetWorkspace(c->blas, ws + L.blas, L.blas_size));
    PROF(c, stream, "start");
    uint32_t *pieces = (uint32_t *)(ws + L.pieces);
    const uint8_t *pos_le = (h.flags & CONTAINER_FLAG_POSITIONS) ? in + h.sections[SEC_POSITIONS].offset : NULL;
    if (coded) {
        uint64_t last_n = coded - (uint64_t)(C - 1) * h.chunk_tokens;
        DecArgs a;
        a.in = in;
        a.index_off = h.sections[SEC_CHUNK_INDEX].offset;
        a.data_off = h.sections[SEC_CHUNK_DATA].offset;
        a.data_size = h.sections[SEC_CHUNK_DATA].size;
        a.chunk_tokens = h.chunk_tokens;
        a.coded = coded;
        a.pay[0] = (uint32_t)quant_payload_size(&pl->k, &pl->v, h.chunk_tokens);
        a.pay[1] = (uint32_t)quant_payload_size(&pl->k, &pl->v, last_n);
        DecWs w;
        w.payload = ws + L.payload;
        w.seg = (DSeg *)(ws + L.dseg);
        w.n_segs = (uint32_t *)(ws + L.dnseg);
        w.n_blocks = (uint32_t *)(ws + L.dnblk);
        w.chunk_off = (uint64_t *)(ws + L.dcoff);
        w.chunk_size = (uint32_t *)(ws + L.dcsize);
        w.chunk_crc = (uint32_t *)(ws + L.dccrc);
        w.max_payload = L.max_payload;
        w.C = C;
        parse_k<<<(C + 63) / 64, 64, 0, stream>>>(a, w, d_status);
        PROF(c, stream, "parse index+segments");
        uint32_t chunk_pieces = (uint32_t)L.max_pieces;
        Regions none;
        memset(&none, 0, sizeof none);
        crc_pieces_k<<<dim3((chunk_pieces + 127) / 128, C), 128, 0, stream>>>(in, none, a.data_off, w.chunk_off, w.chunk_size,
                                                                              chunk_pieces, c->d_crc_table, pieces);
        crc_combine_k<<<C, 256, 0, stream>>>(none, w.chunk_size, C, chunk_pieces, c->d_crc_table + 256, pieces,
                                                           NULL, NULL, NULL, 0, 0, 0, 0, w.chunk_crc, d_status);
        PROF(c, stream, "chunk CRCs");
        // lane blocks per chunk: about payload / 4096 / 128, at least 1
        uint32_t gx = (uint32_t)(a.pay[0] / RANS_SYMBOLS_PER_LANE / LANE_BLOCK + 2);
        dec_lanes_k<<<dim3(gx, C), LANE_BLOCK, 0, stream>>>(a, w, d_status);
        PROF(c, stream, "rANS lanes");
        dec_stored_k<<<dim3(DEC_MAX_SEGS, C), 256, 0, stream>>>(a, w);
        PROF(c, stream, "stored segments");
        CK(cudaGetLastError());
        float2 *cs = (float2 *)(ws + L.cs);
        int rot = b->rope_removed && g->rope_type != KVTC_ROPE_NONE;
        uint32_t n_pairs = kvi_geometry_rope_dim(g) / 2;
        if (rot) {
            uint64_t tot = coded * n_pairs;
            rope_table_k<<<(unsigned)((tot + 255) / 256), 256, 0, stream>>>(c->d_inv_freq, n_pairs, NULL, pos_le, h.n_sink,
                                                                            coded, cs);
        }
        PROF(c, stream, "rope table");
        const float one = 1.0f, zero = 0.0f;
        for (int s = 0; s < 2; s++) {
            QuantGeom q = quant_geom(L, pd, coded, h.chunk_tokens, s);
            uint32_t rk = pd.s[s].rank;
            if (q.n_groups) {
                dim3 qg((q.n_groups + 7) / 8, (unsigned)(coded < 256 ? coded : 256));
                if (c->esize == 2)
                    dequant_k<__nv_bfloat16><<<qg, 256, 0, stream>>>((__nv_bfloat16 *)(ws + L.D), pd.s[s].d_groups, q,
                                                                     ws + L.payload);
                else
                    dequant_k<float><<<qg, 256, 0, stream>>>((float *)(ws + L.D), pd.s[s].d_groups, q, ws + L.payload);
            }
            if (pd.s[s].n_raw) {
                uint64_t tot = (uint64_t)pd.s[s].n_raw * coded;
                if (c->esize == 2)
                    raw_dequant_k<__nv_bfloat16><<<(unsigned)((tot + 255) / 256), 256, 0, stream>>>(
                        (__nv_bfloat16 *)(ws + L.D), pd.s[s].d_raw, pd.s[s].n_raw, q, ws + L.payload);
                else
                    raw_dequant_k<float><<<(unsigned)((tot + 255) / 256), 256, 0, stream>>>(
                        (float *)(ws + L.D), pd.s[s].d_raw, pd.s[s].n_raw, q, ws + L.payload);
            }
            PROF(c, stream, s ? "V dequantize" : "K dequantize");
            if (rk)
                CKB(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)c->p, (int)coded, (int)rk, &one, c->d_basis[s],
                                 elem_type(c), (int)c->p, ws + L.D, elem_type(c), (int)rk, &zero, ws + L.X, elem_type(c),
                                 (int)c->p, compute_type(c), CUBLAS_GEMM_DEFAULT));
            else
                CK(cudaMemsetAsync(ws + L.X, 0, coded * c->p * c->esize, stream));
            PROF(c, stream, s ? "V gemm" : "K gemm");
            RowGeom rg = row_geom(&h, s == 0, rot);
            dim3 blk = pair_block(g->head_dim);
            dim3 grd((unsigned)((coded + blk.y - 1) / blk.y), LH);
            void *dst = s == 0 ? out->k : out->v;
            if (vec_ok(c->esize, h.dtype, rg))
                launch_scatter_vec(rg, LH, dst, h.dtype, cs, c->d_mean[s], c->d_weight[s], ws + L.X, stream);
            else if (c->esize == 2)
                scatter_k<__nv_bfloat16><<<grd, blk, 0, stream>>>(dst, h.dtype, rg, cs, c->d_mean[s], c->d_weight[s],
                                                                  (const __nv_bfloat16 *)(ws + L.X));
            else
                scatter_k<float><<<grd, blk, 0, stream>>>(dst, h.dtype, rg, cs, c->d_mean[s], c->d_weight[s],
                                                          (const float *)(ws + L.X));
            CK(cudaGetLastError());
            PROF(c, stream, s ? "V scatter" : "K scatter");
        }
    }
    // sections: CRC check, raw tokens, positions
    uint32_t sec_pieces;
    Regions sr = section_regions(h, &sec_pieces);
    if (sec_pieces > L.max_pieces) return KVTC_ERR_BUFFER_TOO_SMALL;
    crc_pieces_k<<<dim3((sec_pieces + 127) / 128, 5), 128, 0, stream>>>(in, sr, 0, NULL, NULL, sec_pieces, c->d_crc_table,
                                                                         pieces + (uint64_t)C * L.max_pieces);
    crc_combine_k<<<5, 256, 0, stream>>>(sr, NULL, 5, sec_pieces, c->d_crc_table + 256, pieces + (uint64_t)C * L.max_pieces,
                                        NULL, NULL, NULL, 0, 0, 0, 0, NULL, d_status);
    PROF(c, stream, "section CRCs");
    if (container_raw_tokens(&h)) {
        raw_copy_k<<<dim3(64, LH), 256, 0, stream>>>((uint8_t *)out->k, (uint8_t *)in + h.sections[SEC_RAW_K].offset,
                                                     h.n_tokens, h.n_sink, h.n_window, (uint32_t)(g->head_dim * esz), 1);
        raw_copy_k<<<dim3(64, LH), 256, 0, stream>>>((uint8_t *)out->v, (uint8_t *)in + h.sections[SEC_RAW_V].offset,
                                                     h.n_tokens, h.n_sink, h.n_window, (uint32_t)(g->head_dim * esz), 1);
    }
    if (out->positions)
        write_positions_k<<<(unsigned)((h.n_tokens + 255) / 256), 256, 0, stream>>>(pos_le, h.n_tokens, out->positions);
    CK(cudaGetLastError());
    PROF(c, stream, "raw tokens + positions");
    prof_report(c, "decompress");
    return KVTC_OK;
}
