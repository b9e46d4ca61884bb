// bench_cuda.cu - correctness and speed of the CUDA backend (run through
// bench/cuda/run_all.sh on the GPU machine).
//
//   kvtc_cuda_bench check          small geometry, CPU-calibrated basis:
//                                  GPU encode -> CPU decode, CPU encode -> GPU
//                                  decode, errors vs the CPU path, rANS bytes
//                                  GPU == CPU, corruption, graph capture
//   kvtc_cuda_bench bench [m]      paper geometry (40 x 8 x 128, bf16), basis of
//                                  rank m (default 4096) from a synthetic
//                                  generator: batch 8 x 8K and 2 x 16K
//   kvtc_cuda_bench paged [m]      same geometry, 8 x 8K: encode/decode through a
//                                  vLLM NHD paged pool (block 16, shuffled block
//                                  tables) vs the contiguous caches; streams must
//                                  be byte-identical, decodes equal; then a
//                                  layer-pipelined restore (kvtc_cuda_hold + one
//                                  layer per decode, a stand-in attention kernel
//                                  on a second stream) vs decode-then-compute,
//                                  and its parts alone
//   kvtc_cuda_bench crc            the decoder's chunk CRC check alone: GB/s
//                                  over 1 GiB in 320 chunks, CRCs vs libdeflate
//   kvtc_cuda_bench fp8 [m]        same geometry and basis, 8 x 8K: compress and
//                                  decompress with the default (bf16) codec and
//                                  with KVTC_CUDA_PROJ_FP8 (both GEMMs in e4m3,
//                                  issue 15); errors of the bf16, FP8-decode-only
//                                  and all-FP8 round trips; per-stage profiles
//   kvtc_cuda_bench gemm           the FP8 projection GEMMs alone: every
//                                  algorithm cuBLASLt offers, fast accumulation
//                                  on and off, 16 GEMMs back to back
//   kvtc_cuda_bench epilogue       which cuBLASLt FP8 features a decode GEMM
//                                  writing the cache itself could use (alpha
//                                  vector, outer-vector scales, bias, batches
//                                  of one head), timed where offered
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp8.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <libdeflate.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench_synth.h"
#include "cuda/common.cuh"
#include "cuda/crc.cuh"
#include "kvtc_cuda.h"

extern "C" {
#include "entropy/rans.h"
#include "format/container.h"
#include "model/basis.h"
#include "quant/group_quant.h"
#include "util/half.h"
}

#define CU(x)                                                                                       \
    do {                                                                                            \
        cudaError_t e_ = (x);                                                                       \
        if (e_ != cudaSuccess) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
            exit(2);                                                                                \
        }                                                                                           \
    } while (0)
#define KV(x)                                                                                       \
    do {                                                                                            \
        kvtc_result r_ = (x);                                                                       \
        if (r_ != KVTC_OK) {                                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, kvtc_result_string(r_));     \
            exit(2);                                                                                \
        }                                                                                           \
    } while (0)

static int g_fail = 0;
#define EXPECT(cond, ...)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            g_fail++;                                                        \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- device cache helpers -------------------------------------------------------

struct DevCache {
    kvtc_cache c;
    size_t bytes;
};

static DevCache dev_alloc_like(const kvtc_geometry &g, kvtc_dtype dt, uint64_t n) {
    DevCache d;
    memset(&d, 0, sizeof d);
    d.c.geometry = g;
    d.c.dtype = dt;
    d.c.n_tokens = n;
    d.bytes = kvtc_cache_tensor_bytes(&g, dt, n);
    CU(cudaMalloc(&d.c.k, d.bytes));
    CU(cudaMalloc(&d.c.v, d.bytes));
    CU(cudaMemset(d.c.k, 0xff, d.bytes));  // poison: NaN in every dtype
    CU(cudaMemset(d.c.v, 0xff, d.bytes));
    return d;
}
static void dev_free(DevCache &d) {
    cudaFree(d.c.k);
    cudaFree(d.c.v);
}

static float elem(const void *b, kvtc_dtype t, uint64_t i) {
    if (t == KVTC_DTYPE_F32) return ((const float *)b)[i];
    uint16_t h = ((const uint16_t *)b)[i];
    return t == KVTC_DTYPE_F16 ? kvi_f16_to_f32(h) : kvi_bf16_to_f32(h);
}

struct Cmp {
    double rel;       // ||a - ref|| / ||ref||
    double max_abs;   // max |a - b|
    double mean_abs;
    uint64_t nonfinite;
};

static Cmp compare(const kvtc_cache &a, const kvtc_cache &b, const kvtc_cache &ref) {
    Cmp r = {0, 0, 0, 0};
    uint64_t n = kvtc_cache_tensor_bytes(&a.geometry, a.dtype, a.n_tokens) / kvtc_dtype_size(a.dtype);
    double e2 = 0, r2 = 0, sa = 0;
    for (int s = 0; s < 2; s++) {
        const void *pa = s ? a.v : a.k, *pb = s ? b.v : b.k, *pr = s ? ref.v : ref.k;
        for (uint64_t i = 0; i < n; i++) {
            float x = elem(pa, a.dtype, i), y = elem(pb, b.dtype, i), z = elem(pr, ref.dtype, i);
            if (!std::isfinite(x) || !std::isfinite(y)) { r.nonfinite++; continue; }
            e2 += (double)(x - z) * (x - z);
            r2 += (double)z * z;
            double d = fabs((double)x - y);
            r.max_abs = std::max(r.max_abs, d);
            sa += d;
        }
    }
    r.rel = sqrt(e2 / (r2 > 0 ? r2 : 1));
    r.mean_abs = sa / (2.0 * n);
    return r;
}

static void host_alloc_like(const kvtc_cache &src, kvtc_cache &dst) {
    dst = src;
    size_t bytes = kvtc_cache_tensor_bytes(&src.geometry, src.dtype, src.n_tokens);
    dst.k = malloc(bytes);
    dst.v = malloc(bytes);
    dst.positions = NULL;
    dst.token_ids = NULL;
    memset(dst.k, 0, bytes);
    memset(dst.v, 0, bytes);
}

// ---- the correctness check --------------------------------------------------------

struct GpuRun {
    std::vector<uint8_t> stream;
};

static std::vector<uint8_t> gpu_compress(kvtc_cuda_codec *cc, const DevCache &dc, void *ws, size_t wsz, cudaStream_t st) {
    size_t cap = kvtc_cuda_compress_bound(cc, &dc.c);
    void *d_out;
    uint64_t *d_w;
    CU(cudaMalloc(&d_out, cap));
    CU(cudaMalloc(&d_w, 8));
    KV(kvtc_cuda_compress(cc, &dc.c, d_out, cap, d_w, ws, wsz, st));
    CU(cudaStreamSynchronize(st));
    uint64_t w = 0;
    CU(cudaMemcpy(&w, d_w, 8, cudaMemcpyDeviceToHost));
    std::vector<uint8_t> out(w);
    CU(cudaMemcpy(out.data(), d_out, w, cudaMemcpyDeviceToHost));
    cudaFree(d_out);
    cudaFree(d_w);
    return out;
}

static uint32_t gpu_decompress(kvtc_cuda_codec *cc, const std::vector<uint8_t> &s, DevCache &out, void *ws, size_t wsz,
                               cudaStream_t st) {
    void *d_in;
    uint32_t *d_status, status = 99;
    CU(cudaMalloc(&d_in, s.size()));
    CU(cudaMalloc(&d_status, 4));
    CU(cudaMemcpy(d_in, s.data(), s.size(), cudaMemcpyHostToDevice));
    kvtc_result r = kvtc_cuda_decompress(cc, s.data(), s.size(), d_in, s.size(), &out.c, ws, wsz, d_status, st);
    if (r) {
        cudaFree(d_in);
        cudaFree(d_status);
        return 1000 + r;
    }
    CU(cudaStreamSynchronize(st));
    CU(cudaMemcpy(&status, d_status, 4, cudaMemcpyDeviceToHost));
    cudaFree(d_in);
    cudaFree(d_status);
    return status;
}

static void to_host(const DevCache &d, kvtc_cache &h) {
    CU(cudaMemcpy(h.k, d.c.k, d.bytes, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(h.v, d.c.v, d.bytes, cudaMemcpyDeviceToHost));
}

// Re-encode every chunk's payload with the CPU rANS encoder: same bytes as the GPU's?
static int rans_bytes_identical(const std::vector<uint8_t> &s, const kvtc_basis *b, uint32_t *n_chunks) {
    container_header h;
    if (container_read_prefix(s.data(), s.size(), &h)) return 0;
    // a stored plan, or the solved one the stream carries (flag bit 2)
    int pi = basis_find_plan_by_fingerprint(b, h.plan_fingerprint);
    static basis_plan carried;
    plan_stream_free(&carried.k);
    plan_stream_free(&carried.v);
    memset(&carried, 0, sizeof carried);
    if (pi < 0 && container_read_plan_section(s.data(), &h, b, &carried)) return 0;
    const basis_plan *pl = pi >= 0 ? &b->plans[pi] : &carried;
    int same = 1;
    *n_chunks = h.n_chunks;
    for (uint32_t i = 0; i < h.n_chunks; i++) {
        container_chunk_entry ce;
        if (container_read_chunk_entry(s.data(), &h, i, &ce)) return 0;
        const uint8_t *z = s.data() + h.sections[SEC_CHUNK_DATA].offset + ce.offset;
        std::vector<uint8_t> pay(ce.payload_size + 1), re(rans_bound(ce.payload_size, 1024));
        if (rans_decode(z, ce.size, pay.data(), ce.payload_size)) return 0;
        uint32_t cap = 2 * (pl->k.n_groups + pl->v.n_groups) + 1;
        std::vector<rans_segment> segs(cap);
        uint32_t ns = rans_plan_segments(&pl->k, &pl->v, ce.n_tokens, segs.data(), cap);
        size_t zs = 0;
        if (rans_encode(pay.data(), ce.payload_size, segs.data(), ns, re.data(), re.size(), &zs)) return 0;
        same &= zs == ce.size && memcmp(re.data(), z, zs) == 0;
    }
    return same;
}

static void check(void) {
    printf("== check: small geometry, CPU-calibrated basis ==\n");
    kvtc_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = 4;
    g.n_kv_heads = 4;
    g.head_dim = 128;
    g.rope_type = KVTC_ROPE_NEOX;
    g.rope_theta = 1e6f;
    const uint64_t n = 1500;
    const uint32_t rank = 48;
    double t0 = now_s();
    kvtc_basis *b = bs_calibrate_small(&g, n, rank, 16.0);
    if (!b) { printf("FAIL: calibration\n"); g_fail++; return; }
    kvtc_plan_info pi{};
    pi.struct_size = sizeof pi;
    kvtc_basis_plan_info(b, 0, &pi);
    printf("calibrated p=%u in %.1f s: plan 16x rank_k %u rank_v %u, %u/%u groups\n", g.n_layers * g.n_kv_heads * g.head_dim,
           now_s() - t0, pi.rank_k, pi.rank_v, pi.n_groups_k, pi.n_groups_v);
    kvtc_cache hc;
    if (bs_make_cache(&g, KVTC_DTYPE_BF16, n, rank, 7, &hc)) { g_fail++; return; }
    DevCache dc = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
    CU(cudaMemcpy(dc.c.k, hc.k, dc.bytes, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dc.c.v, hc.v, dc.bytes, cudaMemcpyHostToDevice));
    cudaStream_t st;
    CU(cudaStreamCreate(&st));

    // the CPU path: codec 2 and codec 1
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.entropy_codec = KVTC_CODEC_RANS;
    eo.n_threads = 8;
    kvtc_encoder *enc;
    KV(kvtc_encoder_alloc(b, &eo, &enc));
    std::vector<uint8_t> cpu_s(kvtc_compress_bound(enc, &hc));
    size_t cw = 0;
    KV(kvtc_compress(enc, &hc, cpu_s.data(), cpu_s.size(), &cw));
    cpu_s.resize(cw);
    kvtc_encoder_free(enc);
    eo.entropy_codec = KVTC_CODEC_DEFLATE;
    KV(kvtc_encoder_alloc(b, &eo, &enc));
    std::vector<uint8_t> cpu_d(kvtc_compress_bound(enc, &hc));
    KV(kvtc_compress(enc, &hc, cpu_d.data(), cpu_d.size(), &cw));
    cpu_d.resize(cw);
    kvtc_encoder_free(enc);
    kvtc_decoder *dec;
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = 8;
    KV(kvtc_decoder_alloc(b, &dopt, &dec));
    kvtc_cache cpu_out;
    host_alloc_like(hc, cpu_out);
    KV(kvtc_decompress(dec, cpu_s.data(), cpu_s.size(), &cpu_out));
    Cmp ccpu = compare(cpu_out, cpu_out, hc);
    printf("CPU codec 2: %zu bytes (DEFLATE stream %zu), rel err vs input %.5f\n", cpu_s.size(), cpu_d.size(), ccpu.rel);

    const kvtc_cuda_gemm modes[3] = {KVTC_CUDA_GEMM_BF16, KVTC_CUDA_GEMM_TF32, KVTC_CUDA_GEMM_FP32};
    const char *names[3] = {"bf16", "tf32", "fp32"};
    for (int mi = 0; mi < 3; mi++) {
        kvtc_cuda_options co;
        kvtc_cuda_options_init(&co);
        co.gemm = modes[mi];
        kvtc_cuda_codec *cc;
        KV(kvtc_cuda_codec_alloc(b, &co, &cc));
        size_t wsz = kvtc_cuda_workspace_size(cc, n, 0);
        void *ws;
        CU(cudaMalloc(&ws, wsz));
        // GPU encode -> CPU decode
        std::vector<uint8_t> gs = gpu_compress(cc, dc, ws, wsz, st);
        kvtc_stream_info info{};
        info.struct_size = sizeof info;
        kvtc_result ri = kvtc_stream_get_info(gs.data(), gs.size(), &info);
        EXPECT(ri == KVTC_OK && info.entropy_codec == KVTC_CODEC_RANS, "GPU stream info: %s", kvtc_result_string(ri));
        kvtc_cache a;
        host_alloc_like(hc, a);
        kvtc_result rd = kvtc_decompress(dec, gs.data(), gs.size(), &a);
        EXPECT(rd == KVTC_OK, "CPU decode of GPU stream: %s", kvtc_result_string(rd));
        Cmp c_a = compare(a, cpu_out, hc);
        // GPU decode of the GPU stream and of the CPU stream
        DevCache o1 = dev_alloc_like(g, KVTC_DTYPE_BF16, n), o2 = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
        uint32_t s1 = gpu_decompress(cc, gs, o1, ws, wsz, st);
        uint32_t s2 = gpu_decompress(cc, cpu_s, o2, ws, wsz, st);
        EXPECT(s1 == 0 && s2 == 0, "GPU decode status %u %u", s1, s2);
        kvtc_cache h1, h2;
        host_alloc_like(hc, h1);
        host_alloc_like(hc, h2);
        to_host(o1, h1);
        to_host(o2, h2);
        Cmp c1 = compare(h1, a, hc);      // GPU dec vs CPU dec, same (GPU) stream
        Cmp c2 = compare(h2, cpu_out, hc);  // GPU dec vs CPU dec, same (CPU) stream
        uint32_t nch = 0;
        int same = rans_bytes_identical(gs, b, &nch);
        printf("[%s] GPU stream %zu bytes (CPU %zu); GPU enc->CPU dec rel err %.5f (CPU path %.5f), |GPU-enc - CPU-enc "
               "decoded| max %.4g mean %.3g\n",
               names[mi], gs.size(), cpu_s.size(), c_a.rel, ccpu.rel, c_a.max_abs, c_a.mean_abs);
        printf("[%s] GPU dec of GPU stream vs CPU dec: rel err %.5f, max |diff| %.4g mean %.3g, non-finite %llu\n", names[mi],
               c1.rel, c1.max_abs, c1.mean_abs, (unsigned long long)c1.nonfinite);
        printf("[%s] GPU dec of CPU stream vs CPU dec: rel err %.5f, max |diff| %.4g mean %.3g, non-finite %llu\n", names[mi],
               c2.rel, c2.max_abs, c2.mean_abs, (unsigned long long)c2.nonfinite);
        printf("[%s] rANS chunks of the GPU stream == CPU rans_encode of their payloads: %s (%u chunks)\n", names[mi],
               same ? "yes, byte-identical" : "NO", nch);
        EXPECT(same, "rANS bytes differ");
        EXPECT(c1.nonfinite == 0 && c2.nonfinite == 0, "unwritten outputs");
        EXPECT(c_a.rel < ccpu.rel * 1.05 + 1e-4, "GPU-encoded error %.5f vs CPU %.5f", c_a.rel, ccpu.rel);
        EXPECT(c1.rel < 1.02 * c_a.rel + 1e-3 && c2.rel < 1.02 * ccpu.rel + 1e-3 && c1.max_abs < 0.25 && c2.max_abs < 0.25,
               "GPU decode differs from CPU decode");
        // corruption: a flipped byte in the chunk data, in a raw section; a truncated stream
        std::vector<uint8_t> bad = gs;
        bad[bad.size() - info.coded_bytes / 2] ^= 0x04;
        uint32_t sb = gpu_decompress(cc, bad, o1, ws, wsz, st);
        bad = gs;
        bad[info.stream_bytes - info.coded_bytes - info.n_chunks * 24 - 10] ^= 0x80;
        uint32_t sr = gpu_decompress(cc, bad, o1, ws, wsz, st);
        std::vector<uint8_t> tr(gs.begin(), gs.end() - 1);
        uint32_t stt = gpu_decompress(cc, tr, o1, ws, wsz, st);
        printf("[%s] corrupt chunk -> status %u, corrupt raw section -> %u, truncated -> %u (want %d, %d, %d)\n", names[mi], sb,
               sr, stt, KVTC_ERR_CORRUPT, KVTC_ERR_CORRUPT, 1000 + KVTC_ERR_TRUNCATED);
        EXPECT(sb == KVTC_ERR_CORRUPT && sr == KVTC_ERR_CORRUPT && stt == 1000 + KVTC_ERR_TRUNCATED, "corruption");
        // CUDA graph capture: compress and decompress replayed from a graph
        if (mi == 0) {
            size_t cap = kvtc_cuda_compress_bound(cc, &dc.c);
            void *d_out, *d_in;
            uint64_t *d_w;
            uint32_t *d_status;
            CU(cudaMalloc(&d_out, cap));
            CU(cudaMalloc(&d_w, 8));
            CU(cudaMalloc(&d_status, 4));
            CU(cudaMalloc(&d_in, gs.size()));
            CU(cudaMemcpy(d_in, gs.data(), gs.size(), cudaMemcpyHostToDevice));
            cudaGraph_t gr;
            cudaGraphExec_t ge;
            CU(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
            kvtc_result r1 = kvtc_cuda_compress(cc, &dc.c, d_out, cap, d_w, ws, wsz, st);
            kvtc_result r2 = kvtc_cuda_decompress(cc, gs.data(), gs.size(), d_in, gs.size(), &o2.c, ws, wsz, d_status, st);
            CU(cudaStreamEndCapture(st, &gr));
            CU(cudaGraphInstantiate(&ge, gr, 0));
            CU(cudaMemset(o2.c.k, 0xff, o2.bytes));
            CU(cudaGraphLaunch(ge, st));
            CU(cudaStreamSynchronize(st));
            uint64_t w = 0;
            uint32_t status = 9;
            CU(cudaMemcpy(&w, d_w, 8, cudaMemcpyDeviceToHost));
            CU(cudaMemcpy(&status, d_status, 4, cudaMemcpyDeviceToHost));
            std::vector<uint8_t> gg(w);
            CU(cudaMemcpy(gg.data(), d_out, w, cudaMemcpyDeviceToHost));
            kvtc_cache h3;
            host_alloc_like(hc, h3);
            to_host(o2, h3);
            Cmp c3 = compare(h3, h1, hc);
            int ok = r1 == KVTC_OK && r2 == KVTC_OK && status == 0 && c3.nonfinite == 0 && c3.rel < 1.02 * c1.rel + 1e-3;
            printf("[graph] compress+decompress captured in one CUDA graph and replayed: stream identical %s, decode "
                   "identical %s\n",
                   gg == gs ? "yes" : "NO", (c3.max_abs == 0 && c3.nonfinite == 0) ? "yes" : "NO");
            EXPECT(ok, "graph capture");
            bs_free_cache(&h3);
            cudaGraphExecDestroy(ge);
            cudaGraphDestroy(gr);
            cudaFree(d_out); cudaFree(d_w); cudaFree(d_status); cudaFree(d_in);
        }
        bs_free_cache(&a); bs_free_cache(&h1); bs_free_cache(&h2);
        dev_free(o1); dev_free(o2);
        cudaFree(ws);
        kvtc_cuda_codec_free(cc);
    }
    kvtc_decoder_free(dec);
    bs_free_cache(&cpu_out);
    bs_free_cache(&hc);
    dev_free(dc);
    cudaStreamDestroy(st);
    kvtc_basis_free(b);
}

// ---- the benchmark at the paper's geometry ------------------------------------------

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
__device__ __forceinline__ float gauss(uint64_t key) {
    uint64_t a = mix64(key * 0x9e3779b97f4a7c15ull + 1), b = mix64(a + 0x632be59bd9b4e019ull);
    float u1 = ((a >> 40) + 1) * (1.0f / 16777217.0f), u2 = (b >> 40) * (1.0f / 16777216.0f);
    return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

// Z[t][i] = N(0,1) * sqrt(lambda_i)
__global__ void latent_k(__nv_bfloat16 *Z, const float *lambda, uint64_t n, uint32_t m, uint64_t seed) {
    uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * m) return;
    Z[idx] = __float2bfloat16(gauss(seed * 0x100000000ull + idx) * sqrtf(lambda[idx % m]));
}

// cache[l][h][t][d] = rope(mean + X + noise), bf16
__global__ void emit_k(const __nv_bfloat16 *X, const float *mean, float sigma, int rope, float theta, uint32_t H, uint32_t d,
                       uint64_t n, uint64_t seed, __nv_bfloat16 *cache) {
    uint32_t i = threadIdx.x;  // pair (neox: i, i + d/2)
    uint64_t t = (uint64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (t >= n) return;
    uint32_t lh = blockIdx.y;
    uint64_t p = (uint64_t)gridDim.y * d;
    uint32_t a = i, b = i + d / 2;
    uint64_t col = (uint64_t)lh * d;
    float x0 = __bfloat162float(X[t * p + col + a]) + mean[col + a] + sigma * gauss(seed ^ ((t * p + col + a) << 1));
    float x1 = __bfloat162float(X[t * p + col + b]) + mean[col + b] + sigma * gauss(seed ^ ((t * p + col + b) << 1));
    if (rope) {
        double ang = (double)t * pow((double)theta, -2.0 * i / (double)d);
        float c = (float)cos(ang), s = (float)sin(ang);
        float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        x0 = y0;
        x1 = y1;
    }
    uint64_t off = ((uint64_t)lh * n + t) * d;
    cache[off + a] = __float2bfloat16(x0);
    cache[off + b] = __float2bfloat16(x1);
}

// sum (a - ref)^2 and ref^2 over a tensor
__global__ void err_k(const __nv_bfloat16 *a, const __nv_bfloat16 *ref, uint64_t n, double *acc) {
    double e = 0, r = 0;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        float x = __bfloat162float(a[i]), y = __bfloat162float(ref[i]);
        if (!isfinite(x)) { e += 1e30; continue; }
        e += (double)(x - y) * (x - y);
        r += (double)y * y;
    }
    for (int o = 16; o; o >>= 1) { e += __shfl_xor_sync(~0u, e, o); r += __shfl_xor_sync(~0u, r, o); }
    if ((threadIdx.x & 31) == 0) { atomicAdd(acc, e); atomicAdd(acc + 1, r); }
}

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct Timer {
    cudaEvent_t a, b;
    Timer() { cudaEventCreate(&a); cudaEventCreate(&b); }
    void start(cudaStream_t s) { cudaEventRecord(a, s); }
    float stop(cudaStream_t s) {
        cudaEventRecord(b, s);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        return ms;
    }
};

// The synthetic generator's inputs on the device (bench_synth.h's model:
// latents of variance lambda through the basis' rank-m rows Q, plus the
// mean and noise of variance sigma2), shared by every mode that makes caches.
struct Gen {
    const kvtc_basis *b;
    uint32_t m;
    double sigma2;
    float *d_lambda, *d_mean[2];
    __nv_bfloat16 *d_Q[2];
};

static Gen gen_upload(const kvtc_basis *b, const float *lambda, uint32_t m, double sigma2) {
    Gen gn = {b, m, sigma2, NULL, {NULL, NULL}, {NULL, NULL}};
    uint64_t p = b->k.p;
    CU(cudaMalloc(&gn.d_lambda, 4 * m));
    CU(cudaMemcpy(gn.d_lambda, lambda, 4 * m, cudaMemcpyHostToDevice));
    const basis_stream *bs[2] = {&b->k, &b->v};
    for (int s = 0; s < 2; s++) {
        std::vector<uint16_t> q((size_t)m * p);
        for (size_t i = 0; i < q.size(); i++) q[i] = kvi_f32_to_bf16(bs[s]->basis[i]);
        CU(cudaMalloc(&gn.d_Q[s], q.size() * 2));
        CU(cudaMemcpy(gn.d_Q[s], q.data(), q.size() * 2, cudaMemcpyHostToDevice));
        CU(cudaMalloc(&gn.d_mean[s], 4 * p));
        CU(cudaMemcpy(gn.d_mean[s], bs[s]->mean, 4 * p, cudaMemcpyHostToDevice));
    }
    return gn;
}

static void gen_free(Gen &gn) {
    for (int s = 0; s < 2; s++) { cudaFree(gn.d_Q[s]); cudaFree(gn.d_mean[s]); }
    cudaFree(gn.d_lambda);
}

static void fill_cache(const Gen &gn, DevCache &dc, uint64_t seed, cublasHandle_t blas, __nv_bfloat16 *Z,
                       __nv_bfloat16 *X, cudaStream_t st) {
    const kvtc_geometry &g = gn.b->geometry;
    uint64_t n = dc.c.n_tokens, p = gn.b->k.p;
    uint32_t m = gn.m;
    const float one = 1, zero = 0;
    for (int s = 0; s < 2; s++) {
        latent_k<<<(unsigned)((n * m + 255) / 256), 256, 0, st>>>(Z, gn.d_lambda, n, m, seed * 2 + s);
        // X[n][p] = Z[n][m] Q[m][p]
        cublasSetStream(blas, st);
        cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)p, (int)n, (int)m, &one, gn.d_Q[s], CUDA_R_16BF, (int)p, Z,
                     CUDA_R_16BF, (int)m, &zero, X, CUDA_R_16BF, (int)p, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        dim3 blk(g.head_dim / 2, 4), grd((unsigned)((n + 3) / 4), g.n_layers * g.n_kv_heads);
        emit_k<<<grd, blk, 0, st>>>(X, gn.d_mean[s], (float)sqrt(gn.sigma2), s == 0, g.rope_theta, g.n_kv_heads,
                                    g.head_dim, n, seed * 7 + s, (__nv_bfloat16 *)(s ? dc.c.v : dc.c.k));
    }
    CU(cudaGetLastError());
}

static void bench(uint32_t m) {
    printf("== bench: paper geometry 40 x 8 x 128 bf16, basis rank m = %u ==\n", m);
    kvtc_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = 40;
    g.n_kv_heads = 8;
    g.head_dim = 128;
    g.rope_type = KVTC_ROPE_NEOX;
    g.rope_theta = 1e6f;
    uint32_t p = 40960;
    std::vector<float> lambda(m);
    double sigma2 = 0;
    double t0 = now_s();
    kvtc_basis *b = bs_paper_basis(&g, m, 1.0, 0.5, 16.0, lambda.data(), &sigma2);
    if (!b) { printf("FAIL: basis\n"); g_fail++; return; }
    char summary[4096];
    bs_plan_summary(b, summary, sizeof summary);
    printf("basis built in %.1f s (lambda_i = (i+1)^-1, i < %u; noise sigma^2 = %.3g on all %u coords)\n", now_s() - t0, m,
           sigma2, p);
    printf("plan 16x (K and V alike): %s\n", summary);
    uint32_t rk = b->plans[0].k.rank_used;
    cudaStream_t st, cst;
    CU(cudaStreamCreate(&st));
    CU(cudaStreamCreate(&cst));
    cublasHandle_t blas;
    cublasCreate(&blas);
    kvtc_cuda_codec *cc;
    t0 = now_s();
    kvtc_cuda_options bo;
    kvtc_cuda_options_init(&bo);
    bo.ratio = 16.0;  // the basis' plan (the default 20 would solve a new plan)
    // KVTC_BENCH_FP8=1: the whole mode (batch, restore from pinned host,
    // stages) with FP8 projections (KVTC_CUDA_PROJ_FP8)
    const char *fp8_env = getenv("KVTC_BENCH_FP8");
    int bench_fp8 = fp8_env && atoi(fp8_env) == 1;
    if (bench_fp8) bo.projection = KVTC_CUDA_PROJ_FP8;
    KV(kvtc_cuda_codec_alloc(b, &bo, &cc));
    printf("codec alloc (basis upload, %s): %.2f s\n", bench_fp8 ? "FP8 projections" : "bf16", now_s() - t0);
    Gen gn = gen_upload(b, lambda.data(), m, sigma2);  // generator inputs on the device
    // floors: HBM copy and the GEMM rate at the decoder's shape
    {
        size_t nb = 4ull << 30;
        void *x, *y;
        CU(cudaMalloc(&x, nb));
        CU(cudaMalloc(&y, nb));
        CU(cudaMemset(x, 1, nb));
        Timer t;
        std::vector<float> v;
        for (int i = 0; i < 12; i++) {
            t.start(st);
            CU(cudaMemcpyAsync(y, x, nb, cudaMemcpyDeviceToDevice, st));
            float ms = t.stop(st);
            if (i >= 2) v.push_back(ms);
        }
        float ms = median(v);
        printf("FLOOR hbm copy: %.1f GB/s (read+write of 4 GiB, median of 10)\n", 2.0 * nb / ms / 1e6);
        cudaFree(x);
        cudaFree(y);
        // GEMM: X[8060][p] = D[8060][r] B[r][p] (bf16 in, bf16 out, fp32 accumulate), random operands
        uint64_t nn = 8060;
        __nv_bfloat16 *A, *B2, *Cm;
        CU(cudaMalloc(&A, nn * rk * 2));
        CU(cudaMalloc(&B2, (size_t)rk * p * 2));
        CU(cudaMalloc(&Cm, nn * p * 2));
        latent_k<<<(unsigned)((nn * rk + 255) / 256), 256, 0, st>>>(A, gn.d_lambda, nn, rk, 5);
        latent_k<<<(unsigned)(((uint64_t)rk * p + 255) / 256), 256, 0, st>>>(B2, gn.d_lambda, p, rk, 6);
        const float one = 1, zero = 0;
        cublasSetStream(blas, st);
        v.clear();
        for (int i = 0; i < 12; i++) {
            t.start(st);
            cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)p, (int)nn, (int)rk, &one, B2, CUDA_R_16BF, (int)p, A,
                         CUDA_R_16BF, (int)rk, &zero, Cm, CUDA_R_16BF, (int)p, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            float ms2 = t.stop(st);
            if (i >= 2) v.push_back(ms2);
        }
        float gms = median(v);
        double tf = 2.0 * nn * p * rk / gms / 1e9;
        printf("FLOOR gemm bf16 %llux%ux%u: %.3f ms, %.0f TFLOP/s -> K+V GEMMs of one 8K cache %.2f ms\n",
               (unsigned long long)nn, p, rk, gms, tf, 2 * gms);
        cudaFree(A);
        cudaFree(B2);
        cudaFree(Cm);
    }
    struct Cfg { int batch; uint64_t n; } cfgs[2] = {{8, 8192}, {2, 16384}};
    for (int ci = 0; ci < 2; ci++) {
        int B = cfgs[ci].batch;
        uint64_t n = cfgs[ci].n;
        printf("-- batch %d x %llu tokens --\n", B, (unsigned long long)n);
        std::vector<DevCache> in(B), out(B);
        __nv_bfloat16 *Z, *X;
        CU(cudaMalloc(&Z, n * m * 2));
        CU(cudaMalloc(&X, n * p * 2));
        for (int i = 0; i < B; i++) {
            in[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
            out[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
            fill_cache(gn, in[i], 1000 + i, blas, Z, X,
                       st);
        }
        CU(cudaStreamSynchronize(st));
        cudaFree(Z);
        cudaFree(X);
        size_t wsz = kvtc_cuda_workspace_size(cc, n, 0);
        void *ws;
        CU(cudaMalloc(&ws, wsz));
        std::vector<void *> d_out(B);
        std::vector<size_t> cap(B);
        uint64_t *d_w;
        uint32_t *d_status;
        CU(cudaMalloc(&d_w, 8 * B));
        CU(cudaMalloc(&d_status, 4 * B));
        for (int i = 0; i < B; i++) {
            cap[i] = kvtc_cuda_compress_bound(cc, &in[i].c);
            CU(cudaMalloc(&d_out[i], cap[i]));
        }
        printf("workspace %.2f GB, stream bound %.1f MB per cache\n", wsz / 1e9, cap[0] / 1e6);
        Timer t;
        std::vector<float> vc, vd;
        for (int rep = 0; rep < 12; rep++) {
            t.start(st);
            for (int i = 0; i < B; i++) KV(kvtc_cuda_compress(cc, &in[i].c, d_out[i], cap[i], d_w + i, ws, wsz, st));
            float ms = t.stop(st);
            if (rep >= 2) vc.push_back(ms);
        }
        std::vector<uint64_t> sizes(B);
        CU(cudaMemcpy(sizes.data(), d_w, 8 * B, cudaMemcpyDeviceToHost));
        std::vector<std::vector<uint8_t>> prefix(B);
        for (int i = 0; i < B; i++) {
            prefix[i].resize(4096);
            CU(cudaMemcpy(prefix[i].data(), d_out[i], 4096, cudaMemcpyDeviceToHost));
        }
        for (int rep = 0; rep < 12; rep++) {
            t.start(st);
            for (int i = 0; i < B; i++)
                KV(kvtc_cuda_decompress(cc, prefix[i].data(), 4096, d_out[i], sizes[i], &out[i].c, ws, wsz, d_status + i, st));
            float ms = t.stop(st);
            if (rep >= 2) vd.push_back(ms);
        }
        std::vector<uint32_t> status(B);
        CU(cudaMemcpy(status.data(), d_status, 4 * B, cudaMemcpyDeviceToHost));
        int st_ok = 1;
        for (int i = 0; i < B; i++) st_ok &= status[i] == 0;
        EXPECT(st_ok, "decode status");
        // errors
        double *d_acc;
        CU(cudaMalloc(&d_acc, 16));
        double ek = 0, ev = 0;
        for (int s = 0; s < 2; s++) {
            CU(cudaMemset(d_acc, 0, 16));
            for (int i = 0; i < B; i++)
                err_k<<<1024, 256, 0, st>>>((const __nv_bfloat16 *)(s ? out[i].c.v : out[i].c.k),
                                            (const __nv_bfloat16 *)(s ? in[i].c.v : in[i].c.k), in[i].bytes / 2, d_acc);
            double acc[2];
            CU(cudaMemcpy(acc, d_acc, 16, cudaMemcpyDeviceToHost));
            (s ? ev : ek) = sqrt(acc[0] / acc[1]);
        }
        cudaFree(d_acc);
        kvtc_stream_info info{};
        info.struct_size = sizeof info;
        std::vector<uint8_t> s0(sizes[0]);
        CU(cudaMemcpy(s0.data(), d_out[0], sizes[0], cudaMemcpyDeviceToHost));
        KV(kvtc_stream_get_info(s0.data(), s0.size(), &info));
        double raw_bytes = 2.0 * in[0].bytes * B;
        double tot = 0;
        for (int i = 0; i < B; i++) tot += sizes[i];
        double coded_fp16 = 2.0 * 2.0 * info.n_coded_tokens * p;
        float mc = median(vc), md = median(vd);
        printf("RESULT%s batch %dx%llu: compress %.2f ms (%.0f GB/s of raw KV), decompress %.2f ms (%.0f GB/s); raw %.2f GB -> "
               "%.1f MB (%.2fx overall, %.2fx over coded tokens); rel err K %.4f V %.4f; status %s\n",
               bench_fp8 ? " FP8" : "", B, (unsigned long long)n, mc, raw_bytes / mc / 1e6, md, raw_bytes / md / 1e6, raw_bytes / 1e9, tot / 1e6,
               raw_bytes / tot, coded_fp16 / info.coded_bytes, ek, ev, st_ok ? "ok" : "FAIL");
        printf("  compress min/median/max %.2f/%.2f/%.2f ms; decompress %.2f/%.2f/%.2f ms (10 reps after 2 warm-ups)\n",
               *std::min_element(vc.begin(), vc.end()), mc, *std::max_element(vc.begin(), vc.end()),
               *std::min_element(vd.begin(), vd.end()), md, *std::max_element(vd.begin(), vd.end()));
        // TTFT restore: compressed bytes in pinned host memory -> H2D copy -> decode, copies overlapped with decodes
        {
            std::vector<void *> h_pin(B);
            for (int i = 0; i < B; i++) {
                CU(cudaMallocHost(&h_pin[i], sizes[i]));
                CU(cudaMemcpy(h_pin[i], d_out[i], sizes[i], cudaMemcpyDeviceToHost));
            }
            std::vector<void *> d_in(B);
            for (int i = 0; i < B; i++) CU(cudaMalloc(&d_in[i], sizes[i]));
            std::vector<cudaEvent_t> ev_copy(B);
            for (int i = 0; i < B; i++) cudaEventCreateWithFlags(&ev_copy[i], cudaEventDisableTiming);
            std::vector<float> vr, vh;
            for (int rep = 0; rep < 8; rep++) {
                CU(cudaDeviceSynchronize());
                t.start(cst);
                CU(cudaStreamWaitEvent(st, t.a, 0));
                for (int i = 0; i < B; i++) {
                    CU(cudaMemcpyAsync(d_in[i], h_pin[i], sizes[i], cudaMemcpyHostToDevice, cst));
                    CU(cudaEventRecord(ev_copy[i], cst));
                }
                for (int i = 0; i < B; i++) {
                    CU(cudaStreamWaitEvent(st, ev_copy[i], 0));
                    KV(kvtc_cuda_decompress(cc, prefix[i].data(), 4096, d_in[i], sizes[i], &out[i].c, ws, wsz, d_status + i,
                                            st));
                }
                CU(cudaEventRecord(t.b, st));
                CU(cudaEventSynchronize(t.b));
                float ms = 0;
                cudaEventElapsedTime(&ms, t.a, t.b);
                if (rep >= 2) vr.push_back(ms);
                // the copies alone
                t.start(cst);
                for (int i = 0; i < B; i++) CU(cudaMemcpyAsync(d_in[i], h_pin[i], sizes[i], cudaMemcpyHostToDevice, cst));
                float mh = t.stop(cst);
                if (rep >= 2) vh.push_back(mh);
            }
            CU(cudaMemcpy(status.data(), d_status, 4 * B, cudaMemcpyDeviceToHost));
            int ok2 = 1;
            for (int i = 0; i < B; i++) ok2 &= status[i] == 0;
            printf("RESULT%s restore batch %dx%llu from pinned host memory: %.2f ms (H2D of %.1f MB alone %.2f ms = %.1f GB/s; "
                   "decode %.2f ms), status %s\n",
                   bench_fp8 ? " FP8" : "", B, (unsigned long long)n, median(vr), tot / 1e6, median(vh), tot / median(vh) / 1e6, md,
                   ok2 ? "ok" : "FAIL");
            for (int i = 0; i < B; i++) { cudaFreeHost(h_pin[i]); cudaFree(d_in[i]); cudaEventDestroy(ev_copy[i]); }
        }
        {
            // per-stage breakdown of one cache (a codec with options.profile records events between stages)
            kvtc_cuda_options po;
            kvtc_cuda_options_init(&po);
            po.ratio = 16.0;  // the plan the rest of this benchmark measures
            po.projection = bo.projection;
            po.profile = 1;
            kvtc_cuda_codec *pc;
            KV(kvtc_cuda_codec_alloc(b, &po, &pc));
            for (int rep = 0; rep < 3; rep++) {
                if (rep == 2) fprintf(stderr, "(batch %dx%llu, cache 0)\n", B, (unsigned long long)n);
                KV(kvtc_cuda_compress(pc, &in[0].c, d_out[0], cap[0], d_w, ws, wsz, st));
                KV(kvtc_cuda_decompress(pc, prefix[0].data(), 4096, d_out[0], sizes[0], &out[0].c, ws, wsz, d_status, st));
                CU(cudaStreamSynchronize(st));
            }
            kvtc_cuda_codec_free(pc);
        }
        if (ci == 0) {
            // codec sizes at this geometry: DEFLATE-6 of the same payloads (CPU), first 8 chunks of cache 0
            container_header h;
            KV(container_read_prefix(s0.data(), s0.size(), &h));
            struct libdeflate_compressor *dc6 = libdeflate_alloc_compressor(6);
            double zr = 0, zd = 0, pz = 0, td = 0, tr = 0;
            uint32_t nchk = h.n_chunks < 8 ? h.n_chunks : 8;
            for (uint32_t i = 0; i < nchk; i++) {
                container_chunk_entry ce;
                KV(container_read_chunk_entry(s0.data(), &h, i, &ce));
                const uint8_t *z = s0.data() + h.sections[SEC_CHUNK_DATA].offset + ce.offset;
                std::vector<uint8_t> pay(ce.payload_size), dz(libdeflate_deflate_compress_bound(dc6, ce.payload_size));
                double a0 = now_s();
                KV(rans_decode(z, ce.size, pay.data(), pay.size()));
                double a1 = now_s();
                size_t dsz = libdeflate_deflate_compress(dc6, pay.data(), pay.size(), dz.data(), dz.size());
                double a2 = now_s();
                struct libdeflate_decompressor *dd = libdeflate_alloc_decompressor();
                size_t got = 0;
                double a3 = now_s();
                libdeflate_deflate_decompress(dd, dz.data(), dsz, pay.data(), pay.size(), &got);
                double a4 = now_s();
                libdeflate_free_decompressor(dd);
                (void)a2;
                zr += ce.size; zd += dsz; pz += ce.payload_size; tr += a1 - a0; td += a4 - a3;
            }
            libdeflate_free_compressor(dc6);
            printf("RESULT codec sizes (first %u chunks of cache 0, %.1f MB of payload): rANS %.2f%% of payload, DEFLATE-6 "
                   "%.2f%%; one CPU thread: rANS decode %.0f MB/s, inflate %.0f MB/s\n",
                   nchk, pz / 1e6, 100 * zr / pz, 100 * zd / pz, pz / tr / 1e6, pz / td / 1e6);
            // GPU encode -> CPU decode at this geometry, on a 1200-token cache
            DevCache small = dev_alloc_like(g, KVTC_DTYPE_BF16, 1200), sout = dev_alloc_like(g, KVTC_DTYPE_BF16, 1200);
            __nv_bfloat16 *Z2, *X2;
            CU(cudaMalloc(&Z2, 1200ull * m * 2));
            CU(cudaMalloc(&X2, 1200ull * p * 2));
            fill_cache(gn, small, 77, blas, Z2, X2, st);
            CU(cudaStreamSynchronize(st));
            cudaFree(Z2);
            cudaFree(X2);
            std::vector<uint8_t> gs = gpu_compress(cc, small, ws, wsz, st);
            kvtc_cache hin, hcpu, hgpu;
            kvtc_cache tmpl = small.c;
            host_alloc_like(tmpl, hin);
            host_alloc_like(tmpl, hcpu);
            host_alloc_like(tmpl, hgpu);
            to_host(small, hin);
            kvtc_decoder *dec;
            kvtc_decode_options dopt;
            kvtc_decode_options_init(&dopt);
            dopt.n_threads = 16;
            KV(kvtc_decoder_alloc(b, &dopt, &dec));
            double a0 = now_s();
            kvtc_result rd = kvtc_decompress(dec, gs.data(), gs.size(), &hcpu);
            double a1 = now_s();
            uint32_t sg = gpu_decompress(cc, gs, sout, ws, wsz, st);
            to_host(sout, hgpu);
            Cmp c1 = compare(hgpu, hcpu, hin), c0 = compare(hcpu, hcpu, hin);
            int same = 0;
            uint32_t nch = 0;
            same = rans_bytes_identical(gs, b, &nch);
            printf("RESULT paper geometry, 1200 tokens: GPU encode -> CPU decode %s (%.1f s on the CPU), rel err %.4f; GPU "
                   "decode rel err %.4f, max |GPU - CPU decode| %.4g, mean %.3g; rANS bytes GPU == CPU: %s\n",
                   kvtc_result_string(rd), a1 - a0, c0.rel, c1.rel, c1.max_abs, c1.mean_abs, same ? "yes" : "NO");
            EXPECT(rd == KVTC_OK && sg == 0 && same, "paper-geometry cross check");
            kvtc_decoder_free(dec);
            bs_free_cache(&hin); bs_free_cache(&hcpu); bs_free_cache(&hgpu);
            dev_free(small); dev_free(sout);
        }
        for (int i = 0; i < B; i++) { dev_free(in[i]); dev_free(out[i]); cudaFree(d_out[i]); }
        cudaFree(ws);
        cudaFree(d_w);
        cudaFree(d_status);
    }
    kvtc_cuda_codec_free(cc);
    cublasDestroy(blas);
    gen_free(gn);
    kvtc_basis_free(b);
}

// ---- paged: vLLM-style paged pool vs contiguous at the paper geometry ---------------

// pool[l][table[t / S]][t % S][h][j] = cache[l][h][t][j] (vLLM NHD, one pool per tensor)
__global__ void to_paged_k(const uint16_t *cache, uint16_t *pool, const int32_t *table, uint32_t H, uint32_t d,
                           uint64_t n, uint32_t S, uint64_t n_pool, uint32_t L) {
    uint64_t per_layer = (uint64_t)H * n * d;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < per_layer * L;
         i += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t l = i / per_layer, r = i % per_layer, h = r / (n * d), t = (r / d) % n, j = r % d;
        uint64_t blk = (uint64_t)table[t / S];
        pool[((l * n_pool + blk) * S + t % S) * H * d + h * d + j] = cache[i];
    }
}

// stand-in for a layer's attention: read K and V of one layer `reps` times
__global__ void standin_k(const uint16_t *k, const uint16_t *v, uint64_t n, int reps, float *sink) {
    float acc = 0;
    for (int r = 0; r < reps; r++)
        for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
            acc += __uint_as_float((uint32_t)k[i] << 16) * __uint_as_float((uint32_t)v[i] << 16);
    if (acc == 12345.0f) *sink = acc;  // keeps the loads
}

static void paged(uint32_t m) {
    printf("== paged: paper geometry 40 x 8 x 128 bf16, 8 x 8K tokens, vLLM NHD pool (block 16, shuffled table) vs "
           "contiguous, basis rank m = %u ==\n", m);
    kvtc_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = 40;
    g.n_kv_heads = 8;
    g.head_dim = 128;
    g.rope_type = KVTC_ROPE_NEOX;
    g.rope_theta = 1e6f;
    const uint32_t p = 40960, H = 8, d = 128, L = 40, S = 16;
    const int B = 8;
    const uint64_t n = 8192;
    std::vector<float> lambda(m);
    double sigma2 = 0;
    kvtc_basis *b = bs_paper_basis(&g, m, 1.0, 0.5, 16.0, lambda.data(), &sigma2);
    if (!b) { printf("FAIL: basis\n"); g_fail++; return; }
    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    cublasHandle_t blas;
    cublasCreate(&blas);
    kvtc_cuda_options bo;
    kvtc_cuda_options_init(&bo);
    bo.ratio = 16.0;
    kvtc_cuda_codec *cc;
    KV(kvtc_cuda_codec_alloc(b, &bo, &cc));
    Gen gn = gen_upload(b, lambda.data(), m, sigma2);  // generator inputs on the device
    // one pool of B caches' blocks (plus spares), each cache with its own shuffled table
    const uint64_t nb = n / S, n_pool = B * nb + 64;
    std::vector<int32_t> perm(n_pool);
    for (uint64_t i = 0; i < n_pool; i++) perm[i] = (int32_t)i;
    uint64_t rs = 88172645463325252ull;
    for (uint64_t i = n_pool - 1; i > 0; i--) {
        rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
        std::swap(perm[i], perm[rs % (i + 1)]);
    }
    int32_t *d_tables;
    CU(cudaMalloc(&d_tables, 4 * B * nb));
    CU(cudaMemcpy(d_tables, perm.data(), 4 * B * nb, cudaMemcpyHostToDevice));
    size_t pool_bytes = (size_t)L * n_pool * S * H * d * 2;
    uint16_t *pool[2];
    CU(cudaMalloc(&pool[0], pool_bytes));
    CU(cudaMalloc(&pool[1], pool_bytes));
    printf("pool %.1f GB per tensor (%llu blocks of %u tokens)\n", pool_bytes / 1e9, (unsigned long long)n_pool, S);
    std::vector<DevCache> in(B), out(B);
    std::vector<kvtc_cache_layout> pl(B);
    __nv_bfloat16 *Z, *X;
    CU(cudaMalloc(&Z, n * m * 2));
    CU(cudaMalloc(&X, n * p * 2));
    for (int i = 0; i < B; i++) {
        in[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
        out[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
        fill_cache(gn, in[i], 1000 + i, blas, Z, X,
                   st);
        for (int s = 0; s < 2; s++)
            to_paged_k<<<4096, 256, 0, st>>>((const uint16_t *)(s ? in[i].c.v : in[i].c.k), pool[s],
                                             d_tables + i * nb, H, d, n, S, n_pool, L);
        kvtc_cache_layout &c = pl[i];
        memset(&c, 0, sizeof c);
        c.geometry = g;
        c.dtype = KVTC_DTYPE_BF16;
        c.n_tokens = n;
        kvtc_tensor_layout t = {NULL, NULL, (int64_t)(n_pool * S * H * d), (int64_t)H * d, (int64_t)d, 1,
                                (int64_t)S * H * d};
        c.k = t;
        c.v = t;
        c.k.base = pool[0];
        c.v.base = pool[1];
        c.block_size = S;
        c.block_table = d_tables + i * nb;
        c.n_pool_blocks = n_pool;
    }
    CU(cudaStreamSynchronize(st));
    CU(cudaGetLastError());
    cudaFree(Z);
    cudaFree(X);
    size_t wsz = kvtc_cuda_workspace_size(cc, n, 0);
    void *ws;
    CU(cudaMalloc(&ws, wsz));
    std::vector<void *> d_out(B), d_out2(B);
    std::vector<size_t> cap(B);
    uint64_t *d_w, *d_w2;
    uint32_t *d_status;
    CU(cudaMalloc(&d_w, 8 * B));
    CU(cudaMalloc(&d_w2, 8 * B));
    CU(cudaMalloc(&d_status, 4 * B));
    for (int i = 0; i < B; i++) {
        cap[i] = kvtc_cuda_compress_bound(cc, &in[i].c);
        EXPECT(kvtc_cuda_compress_layout_bound(cc, &pl[i]) == cap[i], "layout bound");
        CU(cudaMalloc(&d_out[i], cap[i]));
        CU(cudaMalloc(&d_out2[i], cap[i]));
    }
    Timer t;
    std::vector<float> vc, vp, vd, vpd;
    for (int rep = 0; rep < 12; rep++) {
        t.start(st);
        for (int i = 0; i < B; i++) KV(kvtc_cuda_compress(cc, &in[i].c, d_out[i], cap[i], d_w + i, ws, wsz, st));
        float a = t.stop(st);
        t.start(st);
        for (int i = 0; i < B; i++)
            KV(kvtc_cuda_compress_layout(cc, &pl[i], d_out2[i], cap[i], d_w2 + i, ws, wsz, d_status + i, st));
        float c2 = t.stop(st);
        if (rep >= 2) { vc.push_back(a); vp.push_back(c2); }
    }
    std::vector<uint32_t> status(B);
    CU(cudaMemcpy(status.data(), d_status, 4 * B, cudaMemcpyDeviceToHost));
    std::vector<uint64_t> sz(B), sz2(B);
    CU(cudaMemcpy(sz.data(), d_w, 8 * B, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(sz2.data(), d_w2, 8 * B, cudaMemcpyDeviceToHost));
    int same = 1;
    for (int i = 0; i < B; i++) {
        std::vector<uint8_t> a(sz[i]), c2(sz2[i]);
        CU(cudaMemcpy(a.data(), d_out[i], sz[i], cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(c2.data(), d_out2[i], sz2[i], cudaMemcpyDeviceToHost));
        same &= sz[i] == sz2[i] && memcmp(a.data(), c2.data(), sz[i]) == 0 && status[i] == 0;
    }
    EXPECT(same, "paged streams differ from contiguous ones");
    std::vector<std::vector<uint8_t>> prefix(B);
    for (int i = 0; i < B; i++) {
        prefix[i].resize(4096);
        CU(cudaMemcpy(prefix[i].data(), d_out[i], 4096, cudaMemcpyDeviceToHost));
    }
    for (int rep = 0; rep < 12; rep++) {
        t.start(st);
        for (int i = 0; i < B; i++)
            KV(kvtc_cuda_decompress(cc, prefix[i].data(), 4096, d_out[i], sz[i], &out[i].c, ws, wsz, d_status + i, st));
        float a = t.stop(st);
        t.start(st);
        for (int i = 0; i < B; i++)
            KV(kvtc_cuda_decompress_layout(cc, prefix[i].data(), 4096, d_out[i], sz[i], NULL, &pl[i], ws, wsz,
                                           d_status + i, st));
        float c2 = t.stop(st);
        if (rep >= 2) { vd.push_back(a); vpd.push_back(c2); }
    }
    CU(cudaMemcpy(status.data(), d_status, 4 * B, cudaMemcpyDeviceToHost));
    int ok = 1;
    for (int i = 0; i < B; i++) ok &= status[i] == 0;
    // the paged decode of cache 0, gathered back, equals the contiguous decode
    {
        std::vector<uint16_t> pk((size_t)L * n_pool * S * H * d);
        CU(cudaMemcpy(pk.data(), pool[0], pool_bytes, cudaMemcpyDeviceToHost));
        std::vector<uint16_t> ck(out[0].bytes / 2);
        CU(cudaMemcpy(ck.data(), out[0].c.k, out[0].bytes, cudaMemcpyDeviceToHost));
        uint64_t diff = 0;
        for (uint64_t l = 0; l < L; l++)
            for (uint64_t h = 0; h < H; h++)
                for (uint64_t tk = 0; tk < n; tk++)
                    for (uint64_t j = 0; j < d; j++)
                        diff += pk[((l * n_pool + (uint64_t)perm[tk / S]) * S + tk % S) * H * d + h * d + j] !=
                                ck[((l * H + h) * n + tk) * d + j];
        EXPECT(diff == 0, "paged decode differs from contiguous decode in %llu K elements", (unsigned long long)diff);
    }
    // layer-pipelined restore of cache 0: decode layer l + 1 (held chunks, one
    // layer range per call) on `st` while a stand-in attention kernel reads
    // layer l on `cst`, against decode-then-compute on one stream; and the
    // parts alone: the hold, the 40 held one-layer decodes, the stand-in
    {
        cudaStream_t cst;
        CU(cudaStreamCreate(&cst));
        float *d_sink;
        CU(cudaMalloc(&d_sink, 4 * L));
        std::vector<cudaEvent_t> ev(L);
        for (uint32_t l = 0; l < L; l++) CU(cudaEventCreateWithFlags(&ev[l], cudaEventDisableTiming));
        const uint64_t layer_elems = (uint64_t)H * n * d;
        const int reps = 4;  // the stand-in reads a layer's K and V this many times
        kvtc_cache_layout o;
        kvtc_cache_layout_from_cache(&out[0].c, &o);
        auto decode_layer = [&](uint32_t l) {
            kvtc_decode_range r;
            kvtc_decode_range_init(&r);
            r.layer_begin = l;
            r.layer_end = l + 1;
            KV(kvtc_cuda_decompress_layout(cc, prefix[0].data(), 4096, d_out[0], sz[0], &r, &o, ws, wsz,
                                           d_status + 1, st));
        };
        // the full decode, kept to compare the pipelined restore with
        KV(kvtc_cuda_decompress(cc, prefix[0].data(), 4096, d_out[0], sz[0], &out[0].c, ws, wsz, d_status, st));
        CU(cudaStreamSynchronize(st));
        std::vector<uint16_t> fk(out[0].bytes / 2), fv(out[0].bytes / 2);
        CU(cudaMemcpy(fk.data(), out[0].c.k, out[0].bytes, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(fv.data(), out[0].c.v, out[0].bytes, cudaMemcpyDeviceToHost));
        std::vector<float> vseq, vpipe, vstand, vhold, vlayers, vfirst;
        for (int rep = 0; rep < 10; rep++) {
            // decode-then-compute
            t.start(st);
            KV(kvtc_cuda_decompress(cc, prefix[0].data(), 4096, d_out[0], sz[0], &out[0].c, ws, wsz, d_status, st));
            for (uint32_t l = 0; l < L; l++)
                standin_k<<<1024, 256, 0, st>>>((const uint16_t *)out[0].c.k + l * layer_elems,
                                                (const uint16_t *)out[0].c.v + l * layer_elems, layer_elems, reps,
                                                d_sink + l);
            float a = t.stop(st);
            // the stand-in alone
            t.start(cst);
            for (uint32_t l = 0; l < L; l++)
                standin_k<<<1024, 256, 0, cst>>>((const uint16_t *)out[0].c.k + l * layer_elems,
                                                 (const uint16_t *)out[0].c.v + l * layer_elems, layer_elems, reps,
                                                 d_sink + l);
            float sa = t.stop(cst);
            // the hold alone, then the held one-layer decodes alone (first one timed too)
            t.start(st);
            KV(kvtc_cuda_hold(cc, prefix[0].data(), 4096, d_out[0], sz[0], ws, wsz, d_status, st));
            float ha = t.stop(st);
            t.start(st);
            decode_layer(0);
            float fa = t.stop(st);
            t.start(st);
            for (uint32_t l = 0; l < L; l++) decode_layer(l);
            float la = t.stop(st);
            kvtc_cuda_release(cc);
            // pipelined; poison the output first so that a layer nothing wrote shows
            CU(cudaMemset(out[0].c.k, 0xff, out[0].bytes));
            CU(cudaMemset(out[0].c.v, 0xff, out[0].bytes));
            CU(cudaDeviceSynchronize());
            t.start(st);
            KV(kvtc_cuda_hold(cc, prefix[0].data(), 4096, d_out[0], sz[0], ws, wsz, d_status, st));
            for (uint32_t l = 0; l < L; l++) {
                decode_layer(l);
                CU(cudaEventRecord(ev[l], st));
                CU(cudaStreamWaitEvent(cst, ev[l], 0));
                standin_k<<<1024, 256, 0, cst>>>((const uint16_t *)out[0].c.k + l * layer_elems,
                                                 (const uint16_t *)out[0].c.v + l * layer_elems, layer_elems, reps,
                                                 d_sink + l);
            }
            CU(cudaEventRecord(t.b, cst));
            CU(cudaEventSynchronize(t.b));
            float pm = 0;
            cudaEventElapsedTime(&pm, t.a, t.b);
            kvtc_cuda_release(cc);
            if (rep >= 2) {
                vseq.push_back(a); vpipe.push_back(pm); vstand.push_back(sa);
                vhold.push_back(ha); vlayers.push_back(la); vfirst.push_back(ha + fa);
            }
        }
        CU(cudaDeviceSynchronize());
        uint32_t st2[2] = {1, 1};
        CU(cudaMemcpy(st2, d_status, 8, cudaMemcpyDeviceToHost));
        EXPECT(st2[0] == 0 && st2[1] == 0, "pipelined decode status %u %u", st2[0], st2[1]);
        // the pipelined restore (the last one) against the full decode: bf16
        // patterns ordered by magnitude, at most 1 unit apart (GEMM rounding)
        std::vector<uint16_t> pk(out[0].bytes / 2), pv(out[0].bytes / 2);
        CU(cudaMemcpy(pk.data(), out[0].c.k, out[0].bytes, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(pv.data(), out[0].c.v, out[0].bytes, cudaMemcpyDeviceToHost));
        uint64_t same = 0, ulp1 = 0, worse = 0;
        for (int s = 0; s < 2; s++) {
            const std::vector<uint16_t> &x = s ? pv : pk, &y = s ? fv : fk;
            for (size_t i = 0; i < x.size(); i++) {
                int32_t a = x[i] & 0x8000 ? -(int32_t)(x[i] & 0x7fff) : x[i];
                int32_t b2 = y[i] & 0x8000 ? -(int32_t)(y[i] & 0x7fff) : y[i];
                int32_t dd = abs(a - b2);
                same += dd == 0;
                ulp1 += dd == 1;
                worse += dd > 1;
            }
        }
        EXPECT(worse == 0, "pipelined restore differs from the full decode by > 1 bf16 ulp in %llu elements",
               (unsigned long long)worse);
        printf("RESULT pipelined restore == full decode: %llu elements equal, %llu 1 ulp apart, %llu further\n",
               (unsigned long long)same, (unsigned long long)ulp1, (unsigned long long)worse);
        printf("RESULT pipelined parts, one 8K cache: hold (parse + chunk CRCs + rANS + dequantize K,V + section "
               "CRCs) %.3f ms; 40 held one-layer decodes %.3f ms (%.3f ms each); first layer ready after %.3f ms; "
               "stand-in alone %.3f ms\n",
               median(vhold), median(vlayers), median(vlayers) / L, median(vfirst), median(vstand));
        printf("RESULT pipelined restore of one 8K cache (40 layers; stand-in reads each layer's K and V %d times, "
               "%.2f ms alone): decode-then-compute %.2f ms, layer-pipelined (hold + 40 one-layer decodes on one "
               "stream, stand-in on another) %.2f ms (%.2fx)\n",
               reps, median(vstand), median(vseq), median(vpipe), median(vseq) / median(vpipe));
        // both captured once in a CUDA graph and replayed (what an engine
        // that captures its restore would see: no launch gaps). Not fatal:
        // a capture failure is printed and the bench goes on.
        {
            cudaEvent_t fork, join;
            CU(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
            CU(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
            float gm[2] = {0, 0};
            for (int pipelined = 0; pipelined < 2; pipelined++) {
                cudaGraph_t graph = NULL;
                cudaGraphExec_t gexec = NULL;
                kvtc_result r = KVTC_OK;
                cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
                if (e == cudaSuccess) {
                    cudaEventRecord(fork, st);
                    cudaStreamWaitEvent(cst, fork, 0);
                    if (pipelined)
                        r = kvtc_cuda_hold(cc, prefix[0].data(), 4096, d_out[0], sz[0], ws, wsz, d_status, st);
                    else
                        r = kvtc_cuda_decompress(cc, prefix[0].data(), 4096, d_out[0], sz[0], &out[0].c, ws, wsz,
                                                 d_status, st);
                    for (uint32_t l = 0; l < L && r == KVTC_OK; l++) {
                        cudaStream_t cs2 = st;
                        if (pipelined) {
                            kvtc_decode_range rg;
                            kvtc_decode_range_init(&rg);
                            rg.layer_begin = l;
                            rg.layer_end = l + 1;
                            r = kvtc_cuda_decompress_layout(cc, prefix[0].data(), 4096, d_out[0], sz[0], &rg, &o, ws,
                                                            wsz, d_status + 1, st);
                            cudaEventRecord(ev[l], st);
                            cudaStreamWaitEvent(cst, ev[l], 0);
                            cs2 = cst;
                        }
                        standin_k<<<1024, 256, 0, cs2>>>((const uint16_t *)out[0].c.k + l * layer_elems,
                                                         (const uint16_t *)out[0].c.v + l * layer_elems, layer_elems,
                                                         reps, d_sink + l);
                    }
                    cudaEventRecord(join, cst);
                    cudaStreamWaitEvent(st, join, 0);
                    e = cudaStreamEndCapture(st, &graph);
                    if (e == cudaSuccess && r == KVTC_OK) e = cudaGraphInstantiate(&gexec, graph, 0);
                }
                kvtc_cuda_release(cc);
                std::vector<float> vg;
                for (int rep = 0; rep < 10 && e == cudaSuccess && r == KVTC_OK; rep++) {
                    t.start(st);
                    e = cudaGraphLaunch(gexec, st);
                    float ms = t.stop(st);
                    if (rep >= 2) vg.push_back(ms);
                }
                if (e == cudaSuccess) e = cudaStreamSynchronize(st);
                if (e != cudaSuccess || r != KVTC_OK) {
                    printf("graph of the %s restore failed: %s / %s\n", pipelined ? "pipelined" : "sequential",
                           cudaGetErrorString(e), kvtc_result_string(r));
                    cudaGetLastError();
                } else {
                    gm[pipelined] = median(vg);
                }
                if (gexec) cudaGraphExecDestroy(gexec);
                if (graph) cudaGraphDestroy(graph);
            }
            uint32_t st3[2] = {1, 1};
            CU(cudaMemcpy(st3, d_status, 8, cudaMemcpyDeviceToHost));
            EXPECT(st3[0] == 0 && st3[1] == 0, "graph restore status %u %u", st3[0], st3[1]);
            printf("RESULT pipelined restore in a CUDA graph (replays): decode-then-compute %.2f ms, layer-pipelined "
                   "%.2f ms (%.2fx)\n",
                   gm[0], gm[1], gm[1] > 0 ? gm[0] / gm[1] : 0.0);
            cudaEventDestroy(fork);
            cudaEventDestroy(join);
        }
        // where the time of a hold and of one held layer decode goes: the
        // stage profiler (a second codec, profile = 1, which synchronizes)
        {
            kvtc_cuda_options po = bo;
            po.profile = 1;
            kvtc_cuda_codec *pc;
            KV(kvtc_cuda_codec_alloc(b, &po, &pc));
            for (int rep = 0; rep < 2; rep++) {  // the first one warms up
                fprintf(stderr, "(profile of a hold and held decodes of layers 0 and 20, rep %d)\n", rep);
                KV(kvtc_cuda_hold(pc, prefix[0].data(), 4096, d_out[0], sz[0], ws, wsz, d_status, st));
                for (uint32_t l = 0; l < L; l += 20) {
                    kvtc_decode_range r;
                    kvtc_decode_range_init(&r);
                    r.layer_begin = l;
                    r.layer_end = l + 1;
                    KV(kvtc_cuda_decompress_layout(pc, prefix[0].data(), 4096, d_out[0], sz[0], &r, &o, ws, wsz,
                                                   d_status + 1, st));
                }
                kvtc_cuda_release(pc);
            }
            CU(cudaStreamSynchronize(st));
            kvtc_cuda_codec_free(pc);
        }
        for (uint32_t l = 0; l < L; l++) cudaEventDestroy(ev[l]);
        cudaFree(d_sink);
        cudaStreamDestroy(cst);
    }
    double raw = 2.0 * in[0].bytes * B;
    float mc = median(vc), mp = median(vp), md = median(vd), mpd = median(vpd);
    printf("RESULT paged batch %dx%llu: compress contiguous %.2f ms (%.0f GB/s), paged %.2f ms (%.0f GB/s, %+.1f%%); "
           "decompress contiguous %.2f ms, paged %.2f ms (%+.1f%%); paged streams == contiguous: %s; status %s\n",
           B, (unsigned long long)n, mc, raw / mc / 1e6, mp, raw / mp / 1e6, 100.0 * (mp - mc) / mc, md, mpd,
           100.0 * (mpd - md) / md, same ? "yes" : "NO", ok ? "ok" : "FAIL");
    for (int i = 0; i < B; i++) { dev_free(in[i]); dev_free(out[i]); cudaFree(d_out[i]); cudaFree(d_out2[i]); }
    cudaFree(ws); cudaFree(d_w); cudaFree(d_w2); cudaFree(d_status); cudaFree(d_tables);
    cudaFree(pool[0]); cudaFree(pool[1]);
    kvtc_cuda_codec_free(cc);
    cublasDestroy(blas);
    gen_free(gn);
    kvtc_basis_free(b);
}

// ---- crc: the device chunk CRC check in isolation ----------------------------------

__global__ void fill_bytes_k(uint8_t *p, uint64_t n, uint64_t seed) {
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t x = (i + seed) * 0x9e3779b97f4a7c15ull;
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ull;
        p[i] = (uint8_t)(x >> 32);
    }
}

// The decoder's chunk CRC check (crc_chunks_check: piece kernel + combine)
// over 1 GiB of random bytes cut into 320 chunks of ~3.3 MB (the size of a
// 256-token chunk of the paper geometry at 16x) at unaligned offsets; the
// expected CRCs come from libdeflate_crc32 on the host (the CPU decoder's).
static void crc_bench(void) {
    printf("== crc: device chunk CRC-32 check, 1 GiB in 320 chunks ==\n");
    const uint64_t total = 1ull << 30;
    const uint32_t C = 320;
    uint8_t *d_data;
    CU(cudaMalloc(&d_data, total + 64));
    fill_bytes_k<<<4096, 256>>>(d_data, total + 64, 7);
    CU(cudaGetLastError());
    std::vector<uint64_t> off(C);
    std::vector<uint32_t> size(C), want(C);
    uint64_t per = total / C, at = 3, max_size = 0;
    for (uint32_t c = 0; c < C; c++) {
        size[c] = (uint32_t)(per - 7 - c % 13);  // odd sizes, so chunk starts drift off alignment
        off[c] = at;
        at += size[c];
        max_size = std::max<uint64_t>(max_size, size[c]);
    }
    uint64_t bytes = at - 3;
    std::vector<uint8_t> h(at);
    CU(cudaMemcpy(h.data(), d_data, at, cudaMemcpyDeviceToHost));
    for (uint32_t c = 0; c < C; c++) want[c] = libdeflate_crc32(0, h.data() + off[c], size[c]);
    uint32_t table[CRC_DEVICE_TABLE_WORDS];
    crc_device_table(table);
    uint32_t max_pieces = (uint32_t)((max_size + CRC_PIECE - 1) / CRC_PIECE);
    uint32_t *d_table, *d_size, *d_want, *d_pieces, *d_status;
    uint64_t *d_off;
    CU(cudaMalloc(&d_table, sizeof table));
    CU(cudaMalloc(&d_off, 8 * C));
    CU(cudaMalloc(&d_size, 4 * C));
    CU(cudaMalloc(&d_want, 4 * C));
    CU(cudaMalloc(&d_pieces, 4ull * C * max_pieces));
    CU(cudaMalloc(&d_status, 4));
    CU(cudaMemcpy(d_table, table, sizeof table, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d_off, off.data(), 8 * C, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d_size, size.data(), 4 * C, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d_want, want.data(), 4 * C, cudaMemcpyHostToDevice));
    CU(cudaMemset(d_status, 0, 4));
    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    Timer t;
    std::vector<float> v;
    for (int rep = 0; rep < 22; rep++) {
        t.start(st);
        crc_chunks_check(d_data, d_off, d_size, C, max_pieces, d_table, d_pieces, d_want, d_status, st);
        float ms = t.stop(st);
        CU(cudaGetLastError());
        if (rep >= 2) v.push_back(ms);
    }
    uint32_t status = 1;
    CU(cudaMemcpy(&status, d_status, 4, cudaMemcpyDeviceToHost));
    EXPECT(status == 0, "device chunk CRCs differ from libdeflate_crc32 (status %u)", status);
    // one flipped bit in one chunk must be found
    uint8_t byte;
    uint64_t where = off[C / 2] + size[C / 2] / 3;
    CU(cudaMemcpy(&byte, d_data + where, 1, cudaMemcpyDeviceToHost));
    byte ^= 4;
    CU(cudaMemcpy(d_data + where, &byte, 1, cudaMemcpyHostToDevice));
    crc_chunks_check(d_data, d_off, d_size, C, max_pieces, d_table, d_pieces, d_want, d_status, st);
    CU(cudaStreamSynchronize(st));
    uint32_t status2 = 0;
    CU(cudaMemcpy(&status2, d_status, 4, cudaMemcpyDeviceToHost));
    EXPECT(status2 == (uint32_t)KVTC_ERR_CORRUPT, "a flipped bit gave status %u", status2);
    std::sort(v.begin(), v.end());
    float md = median(v);
    printf("RESULT crc: device chunk CRC-32 check of %.3f GB in %u chunks: median %.3f ms = %.0f GB/s (min %.3f, max "
           "%.3f ms, 20 reps); CRCs == libdeflate_crc32: %s; flipped bit found: %s\n",
           bytes / 1e9, C, md, bytes / md / 1e6, v.front(), v.back(), status == 0 ? "yes" : "NO",
           status2 == (uint32_t)KVTC_ERR_CORRUPT ? "yes" : "NO");
    cudaFree(d_data); cudaFree(d_table); cudaFree(d_off); cudaFree(d_size); cudaFree(d_want); cudaFree(d_pieces);
    cudaFree(d_status);
    cudaStreamDestroy(st);
}

// ---- FP8 reconstruction (issue 15) -----------------------------------------------

static double rel_err(const DevCache &a, const DevCache &ref, int s, double *d_acc, cudaStream_t st) {
    CU(cudaMemsetAsync(d_acc, 0, 16, st));
    err_k<<<1024, 256, 0, st>>>((const __nv_bfloat16 *)(s ? a.c.v : a.c.k), (const __nv_bfloat16 *)(s ? ref.c.v : ref.c.k),
                                ref.bytes / 2, d_acc);
    double acc[2];
    CU(cudaMemcpyAsync(acc, d_acc, 16, cudaMemcpyDeviceToHost, st));
    CU(cudaStreamSynchronize(st));
    return sqrt(acc[0] / acc[1]);
}

static void fp8_bench(uint32_t m) {
    printf("== fp8: 40 x 8 x 128 bf16, basis rank m = %u, 8 x 8K: default (bf16) vs KVTC_CUDA_PROJ_FP8 vs FP8 with "
           "KVTC_CUDA_PROJ_FP8_FAST_ACCUM ==\n",
           m);
    kvtc_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = 40;
    g.n_kv_heads = 8;
    g.head_dim = 128;
    g.rope_type = KVTC_ROPE_NEOX;
    g.rope_theta = 1e6f;
    uint32_t p = 40960;
    std::vector<float> lambda(m);
    double sigma2 = 0;
    kvtc_basis *b = bs_paper_basis(&g, m, 1.0, 0.5, 16.0, lambda.data(), &sigma2);
    if (!b) { printf("FAIL: basis\n"); g_fail++; return; }
    printf("plan 16x: rank K %u V %u\n", b->plans[0].k.rank_used, b->plans[0].v.rank_used);
    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    cublasHandle_t blas;
    cublasCreate(&blas);
    const int NC = 3;  // codecs: 0 default, 1 FP8, 2 FP8 with fast accumulation
    kvtc_cuda_codec *cc[NC] = {NULL, NULL, NULL};
    static const char *const cname[NC] = {"bf16", "FP8 ", "FP8 fast"};
    static const kvtc_cuda_projection proj[NC] = {
        KVTC_CUDA_PROJ_DEFAULT, KVTC_CUDA_PROJ_FP8,
        (kvtc_cuda_projection)(KVTC_CUDA_PROJ_FP8 | KVTC_CUDA_PROJ_FP8_FAST_ACCUM)};
    kvtc_cuda_options o;
    kvtc_cuda_options_init(&o);
    o.ratio = 16.0;
    kvtc_result r8 = KVTC_OK;
    for (int k = 0; k < NC && !r8; k++) {
        o.projection = proj[k];
        double t0 = now_s();
        r8 = kvtc_cuda_codec_alloc(b, &o, &cc[k]);
        if (k == 1 && !r8)
            printf("FP8 codec alloc (e4m3 basis converted on the device): %.2f s\n", now_s() - t0);
    }
    if (r8) {
        printf("FAIL: codec: %s\n", kvtc_result_string(r8));
        g_fail++;
        for (int k = 0; k < NC; k++) kvtc_cuda_codec_free(cc[k]);
        kvtc_basis_free(b);
        return;
    }
    Gen gn = gen_upload(b, lambda.data(), m, sigma2);  // generator inputs on the device
    const int B = 8;
    const uint64_t n = 8192;
    std::vector<DevCache> in(B), out16(B), out8(B), outf(B);
    std::vector<DevCache> *outs[NC] = {&out16, &out8, &outf};  // each codec's decodes
    __nv_bfloat16 *Z, *X;
    CU(cudaMalloc(&Z, n * m * 2));
    CU(cudaMalloc(&X, n * p * 2));
    for (int i = 0; i < B; i++) {
        in[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
        out16[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
        out8[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
        outf[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
        fill_cache(gn, in[i], 1000 + i, blas, Z, X,
                   st);
    }
    CU(cudaStreamSynchronize(st));
    cudaFree(Z);
    cudaFree(X);
    size_t wsz = std::max(kvtc_cuda_workspace_size(cc[0], n, 0), kvtc_cuda_workspace_size(cc[1], n, 0));
    void *ws;
    CU(cudaMalloc(&ws, wsz));
    std::vector<void *> d_out(B);
    std::vector<size_t> cap(B);
    uint64_t *d_w;
    uint32_t *d_status;
    CU(cudaMalloc(&d_w, 8 * B));
    CU(cudaMalloc(&d_status, 4 * B));
    for (int i = 0; i < B; i++) {
        cap[i] = kvtc_cuda_compress_bound(cc[0], &in[i].c);
        CU(cudaMalloc(&d_out[i], cap[i]));
    }
    Timer t;
    float mc[NC], md[NC];
    std::vector<uint64_t> sizes(B);
    std::vector<std::vector<uint8_t>> prefix(B, std::vector<uint8_t>(4096));
    std::vector<DevCache> outd(B);  // the bf16 streams decoded by the FP8 decoder (decode-only FP8)
    for (int i = 0; i < B; i++) outd[i] = dev_alloc_like(g, KVTC_DTYPE_BF16, n);
    auto decode_all = [&](kvtc_cuda_codec *c, std::vector<DevCache> &out, const char *what) {
        for (int i = 0; i < B; i++)
            KV(kvtc_cuda_decompress(c, prefix[i].data(), 4096, d_out[i], sizes[i], &out[i].c, ws, wsz, d_status + i, st));
        std::vector<uint32_t> status(B);
        CU(cudaMemcpy(status.data(), d_status, 4 * B, cudaMemcpyDeviceToHost));
        for (int i = 0; i < B; i++) EXPECT(status[i] == 0, "%s decode status %u", what, status[i]);
    };
    for (int k = 0; k < NC; k++) {
        std::vector<float> vc, vd, hc, hd;  // GPU time of the batch; host time of its enqueue
        for (int rep = 0; rep < 12; rep++) {
            t.start(st);
            double h0 = now_s();
            for (int i = 0; i < B; i++) KV(kvtc_cuda_compress(cc[k], &in[i].c, d_out[i], cap[i], d_w + i, ws, wsz, st));
            double h1 = now_s();
            float ms = t.stop(st);
            if (rep >= 2) vc.push_back(ms), hc.push_back((float)((h1 - h0) * 1e3));
        }
        CU(cudaMemcpy(sizes.data(), d_w, 8 * B, cudaMemcpyDeviceToHost));
        for (int i = 0; i < B; i++) CU(cudaMemcpy(prefix[i].data(), d_out[i], 4096, cudaMemcpyDeviceToHost));
        std::vector<DevCache> &out = *outs[k];
        for (int rep = 0; rep < 12; rep++) {
            t.start(st);
            double h0 = now_s();
            for (int i = 0; i < B; i++)
                KV(kvtc_cuda_decompress(cc[k], prefix[i].data(), 4096, d_out[i], sizes[i], &out[i].c, ws, wsz, d_status + i, st));
            double h1 = now_s();
            float ms = t.stop(st);
            if (rep >= 2) vd.push_back(ms), hd.push_back((float)((h1 - h0) * 1e3));
        }
        decode_all(cc[k], out, cname[k]);
        if (k == 0) decode_all(cc[1], outd, "fp8 decode of bf16 streams");
        mc[k] = median(vc);
        md[k] = median(vd);
        double tot = 0;
        for (int i = 0; i < B; i++) tot += sizes[i];
        printf("  %s codec: compress min/median/max %.2f/%.2f/%.2f ms; decompress %.2f/%.2f/%.2f ms (10 reps); %.1f MB\n",
               cname[k], *std::min_element(vc.begin(), vc.end()), mc[k], *std::max_element(vc.begin(), vc.end()),
               *std::min_element(vd.begin(), vd.end()), md[k], *std::max_element(vd.begin(), vd.end()), tot / 1e6);
        printf("  %s codec: host time to enqueue the batch, median: compress %.2f ms, decompress %.2f ms\n", cname[k],
               median(hc), median(hd));
    }
    // The same batch over two CUDA streams of one codec, each with its own
    // workspace (caches alternate): the rANS, dequantize and scatter kernels
    // of one cache leave the GPU part idle, the other stream's GEMMs fill it.
    {
        cudaStream_t st2;
        CU(cudaStreamCreate(&st2));
        void *ws2;
        CU(cudaMalloc(&ws2, wsz));
        cudaEvent_t fork, join;
        CU(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
        CU(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
        std::vector<uint64_t> sizes2(B);
        for (int k = 0; k < NC; k++) {
            std::vector<float> vc, vd;
            for (int rep = 0; rep < 12; rep++) {
                t.start(st);
                CU(cudaEventRecord(fork, st));
                CU(cudaStreamWaitEvent(st2, fork, 0));
                for (int i = 0; i < B; i++)
                    KV(kvtc_cuda_compress(cc[k], &in[i].c, d_out[i], cap[i], d_w + i, i & 1 ? ws2 : ws, wsz,
                                          i & 1 ? st2 : st));
                CU(cudaEventRecord(join, st2));
                CU(cudaStreamWaitEvent(st, join, 0));
                float ms = t.stop(st);
                if (rep >= 2) vc.push_back(ms);
            }
            CU(cudaMemcpy(sizes2.data(), d_w, 8 * B, cudaMemcpyDeviceToHost));
            for (int i = 0; i < B; i++) CU(cudaMemcpy(prefix[i].data(), d_out[i], 4096, cudaMemcpyDeviceToHost));
            std::vector<DevCache> &out = *outs[k];
            CU(cudaMemset(d_status, 0, 4 * B));
            for (int rep = 0; rep < 12; rep++) {
                t.start(st);
                CU(cudaEventRecord(fork, st));
                CU(cudaStreamWaitEvent(st2, fork, 0));
                for (int i = 0; i < B; i++)
                    KV(kvtc_cuda_decompress(cc[k], prefix[i].data(), 4096, d_out[i], sizes2[i], &out[i].c,
                                            i & 1 ? ws2 : ws, wsz, d_status + i, i & 1 ? st2 : st));
                CU(cudaEventRecord(join, st2));
                CU(cudaStreamWaitEvent(st, join, 0));
                float ms = t.stop(st);
                if (rep >= 2) vd.push_back(ms);
            }
            std::vector<uint32_t> status(B);
            CU(cudaMemcpy(status.data(), d_status, 4 * B, cudaMemcpyDeviceToHost));
            for (int i = 0; i < B; i++) EXPECT(status[i] == 0, "2-stream decode status %u", status[i]);
            printf("RESULT fp8 rank %u batch %dx%llu, 2 streams: %s compress %.2f ms (one stream %.2f), decompress %.2f "
                   "ms (one stream %.2f)\n",
                   m, B, (unsigned long long)n, cname[k], median(vc), mc[k], median(vd), md[k]);
        }
        cudaEventDestroy(fork);
        cudaEventDestroy(join);
        cudaFree(ws2);
        cudaStreamDestroy(st2);
    }
    double *d_acc;
    CU(cudaMalloc(&d_acc, 16));
    double e16[2] = {0, 0}, e8[2] = {0, 0}, ed[2] = {0, 0}, ed16[2] = {0, 0}, ef[2] = {0, 0}, ef8[2] = {0, 0};
    for (int i = 0; i < B; i++)
        for (int s = 0; s < 2; s++) {
            e16[s] += rel_err(out16[i], in[i], s, d_acc, st) / B;
            e8[s] += rel_err(out8[i], in[i], s, d_acc, st) / B;
            ed[s] += rel_err(outd[i], in[i], s, d_acc, st) / B;
            ed16[s] += rel_err(outd[i], out16[i], s, d_acc, st) / B;
            ef[s] += rel_err(outf[i], in[i], s, d_acc, st) / B;
            ef8[s] += rel_err(outf[i], out8[i], s, d_acc, st) / B;
        }
    cudaFree(d_acc);
    for (int i = 0; i < B; i++) dev_free(outd[i]);
    printf("RESULT fp8 rank %u batch %dx%llu: compress bf16 %.2f ms, FP8 %.2f ms (%.2fx); decompress bf16 %.2f ms, FP8 %.2f ms "
           "(%.2fx); rel err K/V: bf16 %.4f/%.4f, FP8 decode only %.4f/%.4f (vs the bf16 decode %.4f/%.4f), FP8 both "
           "%.4f/%.4f\n",
           m, B, (unsigned long long)n, mc[0], mc[1], mc[0] / mc[1], md[0], md[1], md[0] / md[1], e16[0], e16[1], ed[0],
           ed[1], ed16[0], ed16[1], e8[0], e8[1]);
    printf("RESULT fp8 fast accumulation rank %u: compress %.2f ms, decompress %.2f ms; rel err K/V %.4f/%.4f (FP8 "
           "%.4f/%.4f), its distance from the FP8 decode %.5f/%.5f\n",
           m, mc[2], md[2], ef[0], ef[1], e8[0], e8[1], ef8[0], ef8[1]);
    // per-stage breakdown of one encode and decode with each precision
    for (int k = 0; k < NC; k++) {
        kvtc_cuda_options po;
        kvtc_cuda_options_init(&po);
        po.ratio = 16.0;
        po.profile = 1;
        po.projection = proj[k];
        kvtc_cuda_codec *pc;
        KV(kvtc_cuda_codec_alloc(b, &po, &pc));
        for (int rep = 0; rep < 3; rep++) {
            if (rep == 2) fprintf(stderr, "(%s encode and decode, cache 0)\n", cname[k]);
            KV(kvtc_cuda_compress(pc, &in[0].c, d_out[0], cap[0], d_w, ws, wsz, st));
            uint64_t sz = 0;
            CU(cudaMemcpyAsync(&sz, d_w, 8, cudaMemcpyDeviceToHost, st));
            CU(cudaMemcpyAsync(prefix[0].data(), d_out[0], 4096, cudaMemcpyDeviceToHost, st));
            CU(cudaStreamSynchronize(st));
            KV(kvtc_cuda_decompress(pc, prefix[0].data(), 4096, d_out[0], sz, &out8[0].c, ws, wsz, d_status, st));
            CU(cudaStreamSynchronize(st));
        }
        kvtc_cuda_codec_free(pc);
    }
    for (int i = 0; i < B; i++) {
        dev_free(in[i]);
        dev_free(out16[i]);
        dev_free(out8[i]);
        dev_free(outf[i]);
        cudaFree(d_out[i]);
    }
    cudaFree(ws);
    cudaFree(d_w);
    cudaFree(d_status);
    gen_free(gn);
    kvtc_cuda_codec_free(cc[0]);
    kvtc_cuda_codec_free(cc[1]);
    kvtc_cuda_codec_free(cc[2]);
    cublasDestroy(blas);
    cudaStreamDestroy(st);
    kvtc_basis_free(b);
}

// ---- gemm: the FP8 projection GEMMs alone, every algorithm cuBLASLt's
// heuristic offers (up to 8), with and without FAST_ACCUM: is the codec's
// first-choice algorithm the fastest, and what does fast accumulation buy?
// Operands are hashed values in [-1, 1) in e4m3; the distance is the RMS
// of (out - reference) / RMS of the reference, reference = algorithm 0
// without fast accumulation.
__global__ static void fill_e4m3_k(__nv_fp8_e4m3 *x, uint64_t n, uint32_t seed) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        x[i] = __nv_fp8_e4m3((float)(h >> 8) / 8388608.0f - 1.0f);
    }
}

template <typename T>
__global__ static void dist_k(const T *a, const T *ref, uint64_t n, double *acc) {
    double d = 0, r = 0;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        double x = (double)(float)a[i], y = (double)(float)ref[i];
        d += (x - y) * (x - y);
        r += y * y;
    }
    atomicAdd(&acc[0], d);
    atomicAdd(&acc[1], r);
}

static void gemm_sweep(void) {
    printf("== gemm: cuBLASLt FP8 TN GEMMs of the 12B geometry (p 40960, 8192 tokens), up to 8 algorithms, FAST_ACCUM 0/1 ==\n");
    struct Shape {
        const char *what;
        uint64_t m, n, k;
        cudaDataType_t ct;
    } shapes[] = {{"decode rank 4096", 40960, 8192, 4096, CUDA_R_16BF},
                  {"decode rank 10240", 40960, 8192, 10240, CUDA_R_16BF},
                  {"encode rank 4096", 4096, 8192, 40960, CUDA_R_32F},
                  {"encode rank 10240", 10240, 8192, 40960, CUDA_R_32F}};
    cublasLtHandle_t lt;
    if (cublasLtCreate(&lt)) { printf("FAIL: cublasLtCreate\n"); g_fail++; return; }
    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    const size_t wsz = 32u << 20;
    uint8_t *A, *Bm, *out, *ref;
    void *ws;
    double *acc;
    CU(cudaMalloc(&A, 40960ull * 10240));
    CU(cudaMalloc(&Bm, 40960ull * 8192));
    CU(cudaMalloc(&out, 40960ull * 8192 * 2));
    CU(cudaMalloc(&ref, 40960ull * 8192 * 2));
    CU(cudaMalloc(&ws, wsz));
    CU(cudaMalloc(&acc, 16));
    fill_e4m3_k<<<4096, 256, 0, st>>>((__nv_fp8_e4m3 *)A, 40960ull * 10240, 17);
    fill_e4m3_k<<<4096, 256, 0, st>>>((__nv_fp8_e4m3 *)Bm, 40960ull * 8192, 91);
    Timer t;
    for (const Shape &sh : shapes) {
        size_t osz = sh.m * sh.n * (sh.ct == CUDA_R_16BF ? 2 : 4);
        double flop = 2.0 * sh.m * sh.n * sh.k;
        for (int fast = 0; fast < 2; fast++) {
            cublasLtMatmulDesc_t op;
            cublasLtMatrixLayout_t la, lb, lc;
            cublasLtMatmulPreference_t pref;
            cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
            int8_t fa = (int8_t)fast;
            uint64_t w64 = wsz;
            cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa, sizeof fa);
            cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, sh.k, sh.m, (int64_t)sh.k);
            cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, sh.k, sh.n, (int64_t)sh.k);
            cublasLtMatrixLayoutCreate(&lc, sh.ct, sh.m, sh.n, (int64_t)sh.m);
            cublasLtMatmulPreferenceCreate(&pref);
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &w64, sizeof w64);
            cublasLtMatmulHeuristicResult_t heur[8];
            int found = 0;
            cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 8, heur, &found);
            const float alpha = 1.0f / 64, beta = 0.0f;
            int best = -1;
            float best_ms = 0;
            for (int a = 0; a < found; a++) {
                std::vector<float> v;
                cublasStatus_t r = CUBLAS_STATUS_SUCCESS;
                for (int rep = 0; rep < 12 && !r; rep++) {
                    t.start(st);
                    r = cublasLtMatmul(lt, op, &alpha, A, la, Bm, lb, &beta, out, lc, out, lc, &heur[a].algo, ws, wsz, st);
                    float ms = t.stop(st);
                    if (rep >= 2) v.push_back(ms);
                }
                if (r) { printf("  %s fast %d algo %d: status %d\n", sh.what, fast, a, (int)r); continue; }
                if (!fast && !a) CU(cudaMemcpyAsync(ref, out, osz, cudaMemcpyDeviceToDevice, st));
                CU(cudaMemsetAsync(acc, 0, 16, st));
                if (sh.ct == CUDA_R_16BF)
                    dist_k<<<1024, 256, 0, st>>>((const __nv_bfloat16 *)out, (const __nv_bfloat16 *)ref, sh.m * sh.n, acc);
                else
                    dist_k<<<1024, 256, 0, st>>>((const float *)out, (const float *)ref, sh.m * sh.n, acc);
                double h[2];
                CU(cudaMemcpyAsync(h, acc, 16, cudaMemcpyDeviceToHost, st));
                CU(cudaStreamSynchronize(st));
                float med = median(v);
                if (best < 0 || med < best_ms) best = a, best_ms = med;
                printf("RESULT gemm %s fast_accum %d algo %d (waves %.2f): median %.3f ms min %.3f ms, %.0f TFLOP/s, "
                       "distance %.2e\n",
                       sh.what, fast, a, heur[a].wavesCount, med, *std::min_element(v.begin(), v.end()), flop / med / 1e9,
                       sqrt(h[0] / h[1]));
            }
            // sustained: the 16 GEMMs of a batch of 8 caches (K and V) back to
            // back, as the codec's batch runs them, with nothing in between:
            // what the board's power limit leaves of the isolated rate
            for (int pick = 0; pick < 2 && found > 0; pick++) {
                int a = pick ? best : 0;
                if (pick && best == 0) break;
                std::vector<float> v;
                for (int rep = 0; rep < 6; rep++) {
                    t.start(st);
                    for (int g = 0; g < 16; g++)
                        cublasLtMatmul(lt, op, &alpha, A, la, Bm, lb, &beta, out, lc, out, lc, &heur[a].algo, ws, wsz, st);
                    float ms = t.stop(st);
                    if (rep >= 1) v.push_back(ms);
                }
                float med = median(v);
                printf("RESULT gemm %s fast_accum %d algo %d sustained: 16 GEMMs back to back %.2f ms (%.3f ms each, "
                       "%.0f TFLOP/s)\n",
                       sh.what, fast, a, med, med / 16, 16 * flop / med / 1e9);
            }
            cublasLtMatmulPreferenceDestroy(pref);
            cublasLtMatrixLayoutDestroy(la);
            cublasLtMatrixLayoutDestroy(lb);
            cublasLtMatrixLayoutDestroy(lc);
            cublasLtMatmulDescDestroy(op);
        }
    }
    cudaFree(A);
    cudaFree(Bm);
    cudaFree(out);
    cudaFree(ref);
    cudaFree(ws);
    cudaFree(acc);
    cudaStreamDestroy(st);
    cublasLtDestroy(lt);
}

// ---- epilogue: which cuBLASLt FP8 features the direct decode can use ------
// The decode GEMM at rank 4096 (m = 40960 coordinates, n = 8192 tokens),
// either as one matrix or as 320 strided batches of one head (m = 128, the
// [L][H][T][d] cache), with a per-coordinate alpha (device vector, or A's
// outer-vector scale), a bias epilogue (bf16 or fp32) and B shared (batch
// stride 0) or not: cuBLASLt's heuristic answer for each, timed when it has one.
static void epilogue_probe() {
    printf("== epilogue: cuBLASLt FP8 decode GEMM variants, rank 4096 (40960 x 8192 x 4096) ==\n");
    cublasLtHandle_t lt;
    cublasLtCreate(&lt);
    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    const uint64_t M = 40960, N = 8192, K = 4096, d = 128, nbat = M / d;
    void *A, *Bm, *out, *ws, *vec, *bias;
    size_t wsz = 64u << 20;
    CU(cudaMalloc(&A, M * K));
    CU(cudaMalloc(&Bm, N * K * nbat));  // "B per batch": its own rows for every batch
    CU(cudaMalloc(&out, M * N * 2));
    CU(cudaMalloc(&ws, wsz));
    CU(cudaMalloc(&vec, M * 4 + N * 4));
    CU(cudaMalloc(&bias, M * 4));
    CU(cudaMemset(vec, 0, M * 4 + N * 4));
    CU(cudaMemset(bias, 0, M * 4));
    fill_e4m3_k<<<4096, 256, 0, st>>>((__nv_fp8_e4m3 *)A, M * K, 17);
    fill_e4m3_k<<<4096, 256, 0, st>>>((__nv_fp8_e4m3 *)Bm, N * K * nbat, 91);
    static const char *const alpha_name[] = {"alpha scalar", "alpha device vector + batch stride",
                                             "alpha device vector, beta zero", "A/B outer-vector scales"};
    static const char *const bias_name[] = {"no bias", "bias bf16", "bias fp32"};
    for (int batched = 0; batched < 2; batched++)
        for (int bshared = 0; bshared < 1 + batched; bshared++)
            for (int am = 0; am < 4; am++)
                for (int bm = 0; bm < 3; bm++) {
                    cublasLtMatmulDesc_t op = NULL;
                    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
                    cublasLtMatmulPreference_t pref = NULL;
                    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
                    uint64_t m = batched ? d : M;
                    int32_t nb = batched ? (int32_t)nbat : 1;
                    int64_t sa = (int64_t)(d * K), sb = bshared ? 0 : (int64_t)(N * K), sc = (int64_t)(N * d), vs = (int64_t)d;
                    cublasStatus_t r = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
                    if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
                    if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
                    const void *vp = vec, *vpb = (char *)vec + M * 4;
                    if (!r && (am == 1 || am == 2)) {
                        int32_t pm = am == 1 ? CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST
                                             : CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO;
                        r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof pm);
                        if (!r && am == 1 && batched)
                            r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE, &vs, sizeof vs);
                    }
                    if (!r && am == 3) {
                        int32_t smode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
                        r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &smode, sizeof smode);
                        if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &smode, sizeof smode);
                        if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &vp, sizeof vp);
                        if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &vpb, sizeof vpb);
                    }
                    if (!r && bm) {
                        uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
                        int32_t bt = bm == 1 ? CUDA_R_16BF : CUDA_R_32F;
                        r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
                        if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
                        if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
                        if (!r && batched)
                            r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &vs, sizeof vs);
                    }
                    if (!r) r = cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, K, m, K);
                    if (!r) r = cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, K, N, K);
                    if (!r) r = cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, m, N, m);
                    if (!r && batched) {
                        r = cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb);
                        if (!r) r = cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa);
                        if (!r) r = cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb);
                        if (!r) r = cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb);
                        if (!r) r = cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb);
                        if (!r) r = cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof sc);
                    }
                    if (!r) r = cublasLtMatmulPreferenceCreate(&pref);
                    uint64_t w64 = wsz;
                    if (!r) r = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &w64, sizeof w64);
                    cublasLtMatmulHeuristicResult_t heur;
                    int found = 0;
                    cublasStatus_t hr = r ? r : cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found);
                    char line[256];
                    snprintf(line, sizeof line, "%s%s, %s, %s", batched ? "320 batches of one head" : "one matrix",
                             batched ? (bshared ? " (B shared)" : " (B per batch)") : "", alpha_name[am], bias_name[bm]);
                    if (r || hr || found < 1) {
                        printf("RESULT epilogue %s: setup %d heuristic %d found %d\n", line, (int)r, (int)hr, found);
                    } else {
                        std::vector<float> v;
                        Timer t;
                        float one = 1.0f, zero = 0.0f;
                        const void *alpha = (am == 1 || am == 2) ? vp : (const void *)&one;
                        for (int rep = 0; rep < 8; rep++) {
                            t.start(st);
                            cublasStatus_t e = cublasLtMatmul(lt, op, alpha, A, la, Bm, lb, &zero, out, lc, out, lc,
                                                              &heur.algo, ws, wsz, st);
                            float ms = t.stop(st);
                            if (e) { printf("  matmul status %d\n", (int)e); break; }
                            if (rep >= 3) v.push_back(ms);
                        }
                        printf("RESULT epilogue %s: %.3f ms\n", line, v.empty() ? -1.0 : median(v));
                    }
                    if (pref) cublasLtMatmulPreferenceDestroy(pref);
                    if (lc) cublasLtMatrixLayoutDestroy(lc);
                    if (lb) cublasLtMatrixLayoutDestroy(lb);
                    if (la) cublasLtMatrixLayoutDestroy(la);
                    if (op) cublasLtMatmulDescDestroy(op);
                }
    cudaFree(A);
    cudaFree(Bm);
    cudaFree(out);
    cudaFree(ws);
    cudaFree(vec);
    cudaFree(bias);
    cudaStreamDestroy(st);
    cublasLtDestroy(lt);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "check";
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, %.0f GB\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1e9);
    if (!strcmp(mode, "check") || !strcmp(mode, "all")) check();
    if (!strcmp(mode, "bench") || !strcmp(mode, "all")) bench(argc > 2 ? (uint32_t)atoi(argv[2]) : 4096);
    if (!strcmp(mode, "paged") || !strcmp(mode, "all")) paged(argc > 2 ? (uint32_t)atoi(argv[2]) : 4096);
    if (!strcmp(mode, "crc") || !strcmp(mode, "all")) crc_bench();
    if (!strcmp(mode, "fp8")) fp8_bench(argc > 2 ? (uint32_t)atoi(argv[2]) : 4096);
    if (!strcmp(mode, "gemm")) gemm_sweep();
    if (!strcmp(mode, "epilogue")) epilogue_probe();
    printf("%s: %d failures\n", mode, g_fail);
    return g_fail ? 1 : 0;
}
