// rope_gather.cu - RoPE angles, gather/scatter between the cache and the
// projection rows, raw tokens and positions (rope_gather.cuh).
#include "cuda/common.cuh"
#include "cuda/rope_gather.cuh"

// cache elements by dtype at a signed element index from a row
static __device__ __forceinline__ float load_at(const char *row, int dtype, int64_t i) {
    if (dtype == KVTC_DTYPE_F32) return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    return dtype == KVTC_DTYPE_F16 ? d_f16_to_f32(h) : __uint_as_float((uint32_t)h << 16);
}
static __device__ __forceinline__ void store_at(char *row, int dtype, int64_t i, float x) {
    if (dtype == KVTC_DTYPE_F32) ((float *)row)[i] = x;
    else ((uint16_t *)row)[i] = dtype == KVTC_DTYPE_F16 ? d_f32_to_f16(x) : d_f32_to_bf16(x);
}

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

// pair i of a head -> the two dims and whether it rotates
static __device__ __forceinline__ void pair_dims(const RowGeom &g, uint32_t i, uint32_t &a, uint32_t &b, bool &rot) {
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
__global__ void gather_k(DevTensor src, int dtype, RowGeom g, const float2 *cs, const float *mean, const float *weight,
                         T *X) {
    uint32_t i = threadIdx.x;
    uint64_t t = (uint64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (t >= g.n) return;
    uint32_t lh = g.lh0 + blockIdx.y;
    uint32_t a, b;
    bool rot;
    pair_dims(g, i, a, b, rot);
    const char *row = tensor_row(src, lh / g.H, g.t0 + t, lh % g.H);
    if (!row) return;
    float x0 = load_at(row, dtype, (int64_t)a * src.dim_stride), x1 = load_at(row, dtype, (int64_t)b * src.dim_stride);
    if (rot) {
        float2 c = cs[t * (g.rd / 2) + i];
        float s = -c.y;
        float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, s));
        float y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c.x));
        x0 = y0;
        x1 = y1;
    }
    uint64_t col = (uint64_t)(lh - g.col_lh0) * g.d;
    X[t * g.p + col + a] = from_f<T>(__fmul_rn(__fsub_rn(x0, mean[col + a]), weight[col + a]));
    X[t * g.p + col + b] = from_f<T>(__fmul_rn(__fsub_rn(x1, mean[col + b]), weight[col + b]));
}

template <typename T>
__global__ void scatter_k(DevTensor dst, int dtype, RowGeom g, const float2 *cs, const float *mean, const float *inv_weight,
                          const T *X) {
    uint32_t i = threadIdx.x;
    uint64_t t = (uint64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (t >= g.n) return;
    uint32_t lh = g.lh0 + blockIdx.y;
    uint32_t a, b;
    bool rot;
    pair_dims(g, i, a, b, rot);
    uint64_t col = (uint64_t)(lh - g.col_lh0) * g.d;
    float x0 = __fadd_rn(__fmul_rn(to_f(X[t * g.p + col + a]), inv_weight[col + a]), mean[col + a]);
    float x1 = __fadd_rn(__fmul_rn(to_f(X[t * g.p + col + b]), inv_weight[col + b]), mean[col + b]);
    if (rot) {
        float2 c = cs[t * (g.rd / 2) + i];
        float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, c.y));
        float y1 = __fadd_rn(__fmul_rn(x0, c.y), __fmul_rn(x1, c.x));
        x0 = y0;
        x1 = y1;
    }
    char *row = tensor_row(dst, lh / g.H, g.t0 + t, lh % g.H);
    if (!row) return;
    store_at(row, dtype, (int64_t)a * dst.dim_stride, x0);
    store_at(row, dtype, (int64_t)b * dst.dim_stride, x1);
}

// Vectorized gather/scatter for the common case: f16/bf16 cache, bf16 rows,
// head_dim % 8 == 0, RoPE over the whole head (or none). Each thread moves 4
// pairs with 8- or 16-byte accesses; same arithmetic as gather_k/scatter_k.
// ROPE: 0 = adjacent pairs without rotation, 1 = norm, 2 = neox.
static __device__ __forceinline__ float h2f(uint32_t h, int dtype) {
    return dtype == KVTC_DTYPE_F16 ? d_f16_to_f32(h) : __uint_as_float(h << 16);
}
static __device__ __forceinline__ uint32_t f2h(float x, int dtype) {
    return dtype == KVTC_DTYPE_F16 ? d_f32_to_f16(x) : d_f32_to_bf16(x);
}
static __device__ __forceinline__ void ld4(const uint16_t *p, int dtype, float *o) {
    uint2 u = *(const uint2 *)p;
    o[0] = h2f(u.x & 0xffffu, dtype); o[1] = h2f(u.x >> 16, dtype);
    o[2] = h2f(u.y & 0xffffu, dtype); o[3] = h2f(u.y >> 16, dtype);
}
static __device__ __forceinline__ void st4(uint16_t *p, int dtype, const float *v) {
    uint2 u;
    u.x = f2h(v[0], dtype) | (f2h(v[1], dtype) << 16);
    u.y = f2h(v[2], dtype) | (f2h(v[3], dtype) << 16);
    *(uint2 *)p = u;
}
#define BF16_BITS(x) ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(x)))

// The per-coordinate mean and weight of a thread's 8 coordinates and the
// angles of its 4 pairs, in 16-byte loads (their offsets are multiples of 4
// floats: vec_ok asks head_dim % 8 == 0 and RoPE over the whole head): 6
// loads instead of 20 per 8 elements, which is what held the vectorized
// kernels at half the memory bandwidth.
struct VecParams {
    float ml[4], mh[4], wl[4], wh[4];
    float2 c[4];
};
static __device__ __forceinline__ void ld_f4(const float *p, float *o) {
    float4 v = *(const float4 *)p;
    o[0] = v.x; o[1] = v.y; o[2] = v.z; o[3] = v.w;
}
template <int ROPE>
static __device__ __forceinline__ void load_cols(const RowGeom &g, uint32_t q, uint64_t col, const float *mean,
                                                 const float *weight, VecParams &v) {
    if (ROPE == 2) {  // lo: 4q + k, hi: 4q + k + d/2
        ld_f4(mean + col + 4 * q, v.ml);
        ld_f4(mean + col + 4 * q + g.d / 2, v.mh);
        ld_f4(weight + col + 4 * q, v.wl);
        ld_f4(weight + col + 4 * q + g.d / 2, v.wh);
    } else {  // lo: 8q + 2k, hi: 8q + 2k + 1
        float m8[8], w8[8];
        ld_f4(mean + col + 8 * q, m8);
        ld_f4(mean + col + 8 * q + 4, m8 + 4);
        ld_f4(weight + col + 8 * q, w8);
        ld_f4(weight + col + 8 * q + 4, w8 + 4);
        for (int k = 0; k < 4; k++) {
            v.ml[k] = m8[2 * k]; v.mh[k] = m8[2 * k + 1];
            v.wl[k] = w8[2 * k]; v.wh[k] = w8[2 * k + 1];
        }
    }
}
template <int ROPE>
static __device__ __forceinline__ void load_angles(const RowGeom &g, uint64_t t, uint32_t q, const float2 *cs,
                                                   VecParams &v) {
    if (ROPE) {
        const float4 *c4 = (const float4 *)(cs + t * (g.rd / 2) + 4 * q);
        float4 a = c4[0], b = c4[1];
        v.c[0] = make_float2(a.x, a.y); v.c[1] = make_float2(a.z, a.w);
        v.c[2] = make_float2(b.x, b.y); v.c[3] = make_float2(b.z, b.w);
    }
}

// A thread's 4 RoPE pairs of one head's row p (16-bit elements of dtype):
// lo[k], hi[k] are pair k's two elements (neox: 4q + k and that + d/2;
// adjacent pairs and no RoPE: 8q + 2k and 8q + 2k + 1).
template <int ROPE>
static __device__ __forceinline__ void load_pairs(const uint16_t *p, int dtype, uint32_t q, uint32_t d, float *lo,
                                                  float *hi) {
    if (ROPE == 2) {
        ld4(p + 4 * q, dtype, lo);
        ld4(p + 4 * q + d / 2, dtype, hi);
    } else {
        float x[8];
        ld4(p + 8 * q, dtype, x);
        ld4(p + 8 * q + 4, dtype, x + 4);
        for (int k = 0; k < 4; k++) { lo[k] = x[2 * k]; hi[k] = x[2 * k + 1]; }
    }
}

// Tokens per thread of the vectorized kernels (a (layer, head)'s mean and
// weight loaded once for all of them). 4 measured slower on the H200 for
// the RoPE'd keys (more registers, lower occupancy): 1.
#define VEC_TOKENS 1u

template <int ROPE>
__global__ void gather_vec_k(DevTensor tsrc, int dtype, RowGeom g, const float2 *cs, const float *mean,
                             const float *weight, uint16_t *X) {
    uint32_t q = threadIdx.x;
    uint32_t lh = g.lh0 + blockIdx.y;
    const uint64_t col = (uint64_t)(lh - g.col_lh0) * g.d;
    VecParams vp;
    load_cols<ROPE>(g, q, col, mean, weight, vp);
    for (uint32_t r = 0; r < VEC_TOKENS; r++) {
        uint64_t t = ((uint64_t)blockIdx.x * VEC_TOKENS + r) * blockDim.y + threadIdx.y;
        if (t >= g.n) break;
        const uint16_t *src = (const uint16_t *)tensor_row(tsrc, lh / g.H, g.t0 + t, lh % g.H);
        if (!src) continue;
        float lo[4], hi[4];
        load_pairs<ROPE>(src, dtype, q, g.d, lo, hi);
        load_angles<ROPE>(g, t, q, cs, vp);
        float ol[4], oh[4];
        for (int k = 0; k < 4; k++) {
            float x0 = lo[k], x1 = hi[k];
            if (ROPE) {
                float2 c = vp.c[k];
                float sn = -c.y;
                float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, sn));
                float y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, c.x));
                x0 = y0;
                x1 = y1;
            }
            ol[k] = __fmul_rn(__fsub_rn(x0, vp.ml[k]), vp.wl[k]);
            oh[k] = __fmul_rn(__fsub_rn(x1, vp.mh[k]), vp.wh[k]);
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
}

template <int ROPE>
__global__ void scatter_vec_k(DevTensor tdst, int dtype, RowGeom g, const float2 *cs, const float *mean,
                              const float *inv_weight, const uint16_t *X) {
    uint32_t q = threadIdx.x;
    uint32_t lh = g.lh0 + blockIdx.y;
    const uint64_t col = (uint64_t)(lh - g.col_lh0) * g.d;
    VecParams vp;
    load_cols<ROPE>(g, q, col, mean, inv_weight, vp);
    for (uint32_t r = 0; r < VEC_TOKENS; r++) {
        uint64_t t = ((uint64_t)blockIdx.x * VEC_TOKENS + r) * blockDim.y + threadIdx.y;
        if (t >= g.n) break;
        uint16_t *dst = (uint16_t *)tensor_row(tdst, lh / g.H, g.t0 + t, lh % g.H);
        if (!dst) continue;
        const uint16_t *row = X + t * g.p + col;
        float lo[4], hi[4];
        load_pairs<ROPE>(row, KVTC_DTYPE_BF16, q, g.d, lo, hi);
        load_angles<ROPE>(g, t, q, cs, vp);
        for (int k = 0; k < 4; k++) {
            float x0 = __fadd_rn(__fmul_rn(lo[k], vp.wl[k]), vp.ml[k]);  // wl, wh: inverse weights here
            float x1 = __fadd_rn(__fmul_rn(hi[k], vp.wh[k]), vp.mh[k]);
            if (ROPE) {
                float2 c = vp.c[k];
                float y0 = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, c.y));
                float y1 = __fadd_rn(__fmul_rn(x0, c.y), __fmul_rn(x1, c.x));
                x0 = y0;
                x1 = y1;
            }
            lo[k] = x0;
            hi[k] = x1;
        }
        if (ROPE == 2) {
            st4(dst + 4 * q, dtype, lo);
            st4(dst + 4 * q + g.d / 2, dtype, hi);
        } else {
            float x[8] = {lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], lo[3], hi[3]};
            st4(dst + 8 * q, dtype, x);
            st4(dst + 8 * q + 4, dtype, x + 4);
        }
    }
}

static bool vec_ok(int esize, kvtc_dtype dt, const RowGeom &g, const DevTensor &t) {
    return esize == 2 && (dt == KVTC_DTYPE_F16 || dt == KVTC_DTYPE_BF16) && g.d % 8 == 0 && g.d / 8 <= 256 &&
           (g.rope == 0 || g.rd == g.d) && t.vec;
}

// launch helpers (template on the RoPE kind)
static void launch_gather_vec(const RowGeom &g, uint32_t LH, const DevTensor &src, int dtype, const float2 *cs, const float *m,
                              const float *w, void *X, cudaStream_t st) {
    dim3 blk(g.d / 8, 256 / (g.d / 8)), grd((unsigned)((g.n + blk.y * VEC_TOKENS - 1) / (blk.y * VEC_TOKENS)), LH);
    if (g.rope == 2) gather_vec_k<2><<<grd, blk, 0, st>>>(src, dtype, g, cs, m, w, (uint16_t *)X);
    else if (g.rope == 1) gather_vec_k<1><<<grd, blk, 0, st>>>(src, dtype, g, cs, m, w, (uint16_t *)X);
    else gather_vec_k<0><<<grd, blk, 0, st>>>(src, dtype, g, cs, m, w, (uint16_t *)X);
}
static void launch_scatter_vec(const RowGeom &g, uint32_t LH, const DevTensor &dst, int dtype, const float2 *cs, const float *m,
                               const float *w, const void *X, cudaStream_t st) {
    dim3 blk(g.d / 8, 256 / (g.d / 8)), grd((unsigned)((g.n + blk.y * VEC_TOKENS - 1) / (blk.y * VEC_TOKENS)), LH);
    if (g.rope == 2) scatter_vec_k<2><<<grd, blk, 0, st>>>(dst, dtype, g, cs, m, w, (const uint16_t *)X);
    else if (g.rope == 1) scatter_vec_k<1><<<grd, blk, 0, st>>>(dst, dtype, g, cs, m, w, (const uint16_t *)X);
    else scatter_vec_k<0><<<grd, blk, 0, st>>>(dst, dtype, g, cs, m, w, (const uint16_t *)X);
}

static dim3 pair_block(uint32_t d) {
    uint32_t px = d / 2, ty = 256 / px;
    return dim3(px, ty ? ty : 1);
}

void launch_rope_table(const double *inv_freq, uint32_t n_pairs, const int64_t *positions, const uint8_t *pos_le,
                       uint64_t t0, uint64_t n, float2 *cs, cudaStream_t st) {
    uint64_t tot = n * n_pairs;
    rope_table_k<<<(unsigned)((tot + 255) / 256), 256, 0, st>>>(inv_freq, n_pairs, positions, pos_le, t0, n, cs);
}

void launch_gather(int esize, int dtype, const RowGeom &g, uint32_t LH, const DevTensor &src, const float2 *cs,
                   const float *mean, const float *weight, void *X, cudaStream_t st) {
    dim3 blk = pair_block(g.d);
    dim3 grd((unsigned)((g.n + blk.y - 1) / blk.y), LH);
    if (vec_ok(esize, (kvtc_dtype)dtype, g, src))
        launch_gather_vec(g, LH, src, dtype, cs, mean, weight, X, st);
    else if (esize == 2)
        gather_k<__nv_bfloat16><<<grd, blk, 0, st>>>(src, dtype, g, cs, mean, weight, (__nv_bfloat16 *)X);
    else
        gather_k<float><<<grd, blk, 0, st>>>(src, dtype, g, cs, mean, weight, (float *)X);
}

void launch_scatter(int esize, int dtype, const RowGeom &g, uint32_t LH, const DevTensor &dst, const float2 *cs,
                    const float *mean, const float *inv_weight, const void *X, cudaStream_t st) {
    dim3 blk = pair_block(g.d);
    dim3 grd((unsigned)((g.n + blk.y - 1) / blk.y), LH);
    if (vec_ok(esize, (kvtc_dtype)dtype, g, dst))
        launch_scatter_vec(g, LH, dst, dtype, cs, mean, inv_weight, X, st);
    else if (esize == 2)
        scatter_k<__nv_bfloat16><<<grd, blk, 0, st>>>(dst, dtype, g, cs, mean, inv_weight, (const __nv_bfloat16 *)X);
    else
        scatter_k<float><<<grd, blk, 0, st>>>(dst, dtype, g, cs, mean, inv_weight, (const float *)X);
}

// raw sink/window tokens, element by element through the layout: dir 0
// cache -> section, 1 section -> cache. The section holds, per (layer,
// head), the n_sink first then the n_window last tokens, d elements each.
// grid (blocks, L*H)
__global__ void raw_copy_k(DevTensor t, uint8_t *section, uint32_t H, uint32_t d, uint64_t n_tokens, uint32_t n_sink,
                           uint32_t n_window, int dir, RawRange rr) {
    uint64_t lh = rr.lh0 + blockIdx.y;
    uint64_t n_raw = (uint64_t)n_sink + n_window, run = n_raw * d;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < run; i += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t r = i / d, j = i - r * d;
        uint64_t tok = r < n_sink ? r : n_tokens - n_window + (r - n_sink);
        if (tok < rr.tb || tok >= rr.te) continue;
        char *row = tensor_row(t, (uint32_t)(lh / H), tok - rr.tb, (uint32_t)(lh % H));
        if (!row) continue;
        uint8_t *e = (uint8_t *)row + (int64_t)t.es * (int64_t)j * t.dim_stride;
        uint8_t *sp = section + (lh * run + i) * t.es;
        if (t.es == 2) {
            if (dir == 0) *(uint16_t *)sp = *(const uint16_t *)e;
            else *(uint16_t *)e = *(const uint16_t *)sp;
        } else {
            if (dir == 0) *(uint32_t *)sp = *(const uint32_t *)e;
            else *(uint32_t *)e = *(const uint32_t *)sp;
        }
    }
}

void launch_raw_copy(const DevTensor &t, uint8_t *section, uint32_t H, uint32_t d, uint64_t n_tokens, uint32_t n_sink,
                     uint32_t n_window, int dir, const RawRange &rr, cudaStream_t st) {
    raw_copy_k<<<dim3(64, rr.LH), 256, 0, st>>>(t, section, H, d, n_tokens, n_sink, n_window, dir, rr);
}

__global__ void copy_positions_k(const int64_t *pos, uint64_t n, uint8_t *out) {
    uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) st_u64(out + 8 * t, (uint64_t)pos[t]);
}

__global__ void write_positions_k(const uint8_t *pos_le, uint64_t t0, uint64_t n, int64_t *out) {
    uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) out[t] = pos_le ? (int64_t)ld_u64(pos_le + 8 * (t0 + t)) : (int64_t)(t0 + t);
}

void launch_copy_positions(const int64_t *pos, uint64_t n, uint8_t *out, cudaStream_t st) {
    copy_positions_k<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(pos, n, out);
}

void launch_write_positions(const uint8_t *pos_le, uint64_t t0, uint64_t n, int64_t *out, cudaStream_t st) {
    write_positions_k<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(pos_le, t0, n, out);
}

__global__ void copy_ids_k(const int32_t *ids, uint64_t n, uint8_t *out) {
    uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) st_u32(out + 4 * t, (uint32_t)ids[t]);
}

__global__ void write_ids_k(const uint8_t *ids_le, uint64_t t0, uint64_t n, int32_t *out) {
    uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) out[t] = (int32_t)ld_u32(ids_le + 4 * (t0 + t));
}

void launch_copy_ids(const int32_t *ids, uint64_t n, uint8_t *out, cudaStream_t st) {
    copy_ids_k<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(ids, n, out);
}

void launch_write_ids(const uint8_t *ids_le, uint64_t t0, uint64_t n, int32_t *out, cudaStream_t st) {
    write_ids_k<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(ids_le, t0, n, out);
}
