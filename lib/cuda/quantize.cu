// quantize.cu - quantization and packing of the chunk payloads (quantize.cuh).
#include <cuda_fp8.h>

#include "cuda/common.cuh"
#include "cuda/quantize.cuh"

struct QuantAddr {
    uint8_t *param, *code;
};

static __device__ __forceinline__ QuantAddr quant_addr(const QuantGeom &q, const GroupDesc &gd, uint64_t t, uint8_t *payload) {
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

static __device__ __forceinline__ float warp_min(float v) {
    for (int o = 16; o; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#define F16_MAX_D 65504.0f
static __device__ __forceinline__ float clamp16(float x) { return x > F16_MAX_D ? F16_MAX_D : (x < -F16_MAX_D ? -F16_MAX_D : x); }

// warp per (token, group); block 256 = 8 warps; grid (ceil(groups/8), min(n, 65535)).
// row_scale (NULL: 1): token t's coefficients are D[t] * row_scale[t] (the
// FP8 encoder's per-row operand scale; x * 1.0f is x, bit for bit).
__global__ void quant_k(const float *D, const float *row_scale, const GroupDesc *groups, QuantGeom q, uint8_t *payload) {
    uint32_t lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint32_t gi = blockIdx.x * 8 + w;
    if (gi >= q.n_groups) return;
    GroupDesc gd = groups[gi];
    if (gd.bits == 0) return;
    for (uint64_t t = blockIdx.y; t < q.n; t += gridDim.y) {
        const float *x = D + t * q.rank + gd.col;
        const float rs = row_scale ? row_scale[t] : 1.0f;
        QuantAddr a = quant_addr(q, gd, t, payload);
        if (gd.bits == 16) {
            for (uint32_t j = lane; j < gd.size; j += 32) {
                uint16_t h = d_f32_to_f16(clamp16(__fmul_rn(x[j], rs)));
                a.param[2 * j] = (uint8_t)h;
                a.param[2 * j + 1] = (uint8_t)(h >> 8);
            }
            continue;
        }
        float mn = INFINITY, mx = -INFINITY;
        for (uint32_t j = lane; j < gd.size; j += 32) {
            float v = __fmul_rn(x[j], rs);
            mn = fminf(mn, v);
            mx = fmaxf(mx, v);
        }
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
                float v = __fadd_rn(__fmul_rn(__fsub_rn(__fmul_rn(x[sb * 8 + k], rs), shift), inv), 0.5f);
                uint32_t c = v <= 0.0f ? 0u : (v >= (float)levels ? levels : (uint32_t)v);
                acc |= (uint64_t)c << (k * gd.bits);
            }
            uint8_t *o = a.code + sb * gd.bits;
            for (uint32_t k = 0; k < gd.bits; k++) o[k] = (uint8_t)(acc >> (8 * k));
        }
    }
}

// Where dequantized coefficients go: element (t, col) of D with row length
// ld, in the GEMM's input type. E4m3 divides coefficient col by its fold
// factor first (transform/fp8.h: __fdiv_rn and RNE saturating conversion,
// the same arithmetic as the CPU emulation's).
template <typename T> struct StoreCoef {
    T *D;
    uint32_t ld;
    __device__ __forceinline__ void operator()(uint64_t t, uint32_t col, float v) const { D[t * ld + col] = from_f<T>(v); }
};
struct StoreE4m3 {
    __nv_fp8_storage_t *D;
    uint32_t ld;
    const float *fold;
    __device__ __forceinline__ void operator()(uint64_t t, uint32_t col, float v) const {
        D[t * ld + col] = __nv_cvt_float_to_fp8(__fdiv_rn(v, fold[col]), __NV_SATFINITE, __NV_E4M3);
    }
};

template <typename Store>
__global__ void dequant_k(Store out, const GroupDesc *groups, QuantGeom q, const uint8_t *payload) {
    uint32_t lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint32_t gi = blockIdx.x * 8 + w;
    if (gi >= q.n_groups) return;
    GroupDesc gd = groups[gi];
    for (uint64_t t = blockIdx.y; t < q.n; t += gridDim.y) {
        if (gd.bits == 0) {
            for (uint32_t j = lane; j < gd.size; j += 32) out(t, gd.col + j, 0.0f);
            continue;
        }
        QuantAddr a = quant_addr(q, gd, t, (uint8_t *)payload);
        if (gd.bits == 16) {
            for (uint32_t j = lane; j < gd.size; j += 32) out(t, gd.col + j, d_f16_to_f32(ld_u16(a.param + 2 * j)));
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
                out(t, gd.col + sb * 8 + k, __fadd_rn(shift, __fmul_rn((float)c, scale)));
            }
        }
    }
}

// raw fp16 coordinates: one thread per (coordinate, token), tokens fastest (coalesced stores)
static __device__ __forceinline__ uint8_t *raw_addr(const QuantGeom &q, const RawDesc &rd, uint64_t t, uint8_t *payload) {
    uint64_t c = t / q.chunk_tokens, ti = t - c * q.chunk_tokens;
    uint64_t nc = q.n - c * q.chunk_tokens < q.chunk_tokens ? q.n - c * q.chunk_tokens : q.chunk_tokens;
    uint64_t pbase = q.stream ? (uint64_t)q.pb[0] * nc : 0;
    return payload + c * q.max_payload + pbase + (uint64_t)rd.param_off * nc + (ti * rd.size + rd.j) * 2;
}

__global__ void raw_quant_k(const float *D, const float *row_scale, const RawDesc *raw, uint32_t n_raw, QuantGeom q,
                            uint8_t *payload) {
    uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (uint64_t)n_raw * q.n) return;
    uint64_t e = idx / q.n, t = idx - e * q.n;
    RawDesc rd = raw[e];
    uint16_t h = d_f32_to_f16(clamp16(__fmul_rn(D[t * q.rank + rd.col], row_scale ? row_scale[t] : 1.0f)));
    uint8_t *o = raw_addr(q, rd, t, payload);
    o[0] = (uint8_t)h;
    o[1] = (uint8_t)(h >> 8);
}

template <typename Store>
__global__ void raw_dequant_k(Store out, const RawDesc *raw, uint32_t n_raw, QuantGeom q, const uint8_t *payload) {
    uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (uint64_t)n_raw * q.n) return;
    uint64_t e = idx / q.n, t = idx - e * q.n;
    RawDesc rd = raw[e];
    const uint8_t *o = raw_addr(q, rd, t, (uint8_t *)payload);
    out(t, rd.col, d_f16_to_f32(ld_u16(o)));
}

QuantGeom quant_geom(const Layout &L, const PlanDev &pd, uint64_t n, uint32_t chunk_tokens, int s) {
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

void launch_quantize(const float *D, const float *row_scale, const StreamPlan &sp, const QuantGeom &q, uint8_t *payload,
                     cudaStream_t st) {
    if (q.n_groups) {
        dim3 qg((q.n_groups + 7) / 8, (unsigned)(q.n < 256 ? q.n : 256));
        quant_k<<<qg, 256, 0, st>>>(D, row_scale, sp.d_groups, q, payload);
    }
    if (sp.n_raw) {
        uint64_t tot = (uint64_t)sp.n_raw * q.n;
        raw_quant_k<<<(unsigned)((tot + 255) / 256), 256, 0, st>>>(D, row_scale, sp.d_raw, sp.n_raw, q, payload);
    }
}

template <typename Store>
static void launch_dequant(Store out, const StreamPlan &sp, const QuantGeom &q, const uint8_t *payload, cudaStream_t st) {
    if (q.n_groups) {
        dim3 qg((q.n_groups + 7) / 8, (unsigned)(q.n < 256 ? q.n : 256));
        dequant_k<Store><<<qg, 256, 0, st>>>(out, sp.d_groups, q, payload);
    }
    if (sp.n_raw) {
        uint64_t tot = (uint64_t)sp.n_raw * q.n;
        raw_dequant_k<Store><<<(unsigned)((tot + 255) / 256), 256, 0, st>>>(out, sp.d_raw, sp.n_raw, q, payload);
    }
}

void launch_dequantize(int esize, void *D, const StreamPlan &sp, const QuantGeom &q, const uint8_t *payload,
                       cudaStream_t st) {
    if (esize == 2)
        launch_dequant(StoreCoef<__nv_bfloat16>{(__nv_bfloat16 *)D, q.rank}, sp, q, payload, st);
    else
        launch_dequant(StoreCoef<float>{(float *)D, q.rank}, sp, q, payload, st);
}

cudaError_t launch_dequantize_e4m3(uint8_t *D, uint32_t ld, const float *fold, const StreamPlan &sp, const QuantGeom &q,
                                   const uint8_t *payload, cudaStream_t st) {
    // columns [rank, ld) are the GEMM's padding to 16: zeros
    if (ld > q.rank && q.n) {
        cudaError_t e = cudaMemset2DAsync(D + q.rank, ld, 0, ld - q.rank, q.n, st);
        if (e != cudaSuccess) return e;
    }
    launch_dequant(StoreE4m3{(__nv_fp8_storage_t *)D, ld, fold}, sp, q, payload, st);
    return cudaSuccess;
}

// One block per row of X (bf16 [n][p], p a multiple of 8): amax, the row's
// scale amax / 448 (1 when 0 or not finite), then x / scale in e4m3
// (round to nearest even, saturating), 8 elements per 16-byte load.
__global__ void cast_rows_e4m3_k(const __nv_bfloat16 *X, uint64_t n, uint32_t p, uint8_t *X8, float *row_scale) {
    __shared__ float red[32];
    uint64_t t = blockIdx.x;
    if (t >= n) return;
    const uint4 *row = (const uint4 *)(X + t * p);
    uint32_t nv = p / 8;
    float amax = 0.0f;
    for (uint32_t v = threadIdx.x; v < nv; v += blockDim.x) {
        uint4 u = row[v];
        const __nv_bfloat16 *h = (const __nv_bfloat16 *)&u;
        for (int k = 0; k < 8; k++) amax = fmaxf(amax, fabsf(__bfloat162float(h[k])));
    }
    for (int o = 16; o; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = amax;
    __syncthreads();
    if (threadIdx.x < 32) {
        amax = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
        for (int o = 16; o; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        if (threadIdx.x == 0) {
            float sc = __fdiv_rn(amax, 448.0f);
            red[0] = (sc > 0.0f && isfinite(sc)) ? sc : 1.0f;
        }
    }
    __syncthreads();
    float sc = red[0];
    if (threadIdx.x == 0) row_scale[t] = sc;
    uint2 *out = (uint2 *)(X8 + t * p);
    for (uint32_t v = threadIdx.x; v < nv; v += blockDim.x) {
        uint4 u = row[v];
        const __nv_bfloat16 *h = (const __nv_bfloat16 *)&u;
        uint8_t b[8];
        for (int k = 0; k < 8; k++)
            b[k] = __nv_cvt_float_to_fp8(__fdiv_rn(__bfloat162float(h[k]), sc), __NV_SATFINITE, __NV_E4M3);
        uint2 w;
        w.x = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
        w.y = (uint32_t)b[4] | ((uint32_t)b[5] << 8) | ((uint32_t)b[6] << 16) | ((uint32_t)b[7] << 24);
        out[v] = w;
    }
}

void launch_cast_rows_e4m3(const void *X, uint64_t n, uint32_t p, uint8_t *X8, float *row_scale, cudaStream_t st) {
    if (n) cast_rows_e4m3_k<<<(unsigned)n, 256, 0, st>>>((const __nv_bfloat16 *)X, n, p, X8, row_scale);
}
