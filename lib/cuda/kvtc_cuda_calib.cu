// kvtc_cuda_calib.cu - GPU calibration (include/kvtc_cuda.h, "GPU calibration").
//
// Per stream (K, then V; one covariance buffer reused):
//   rows in batches -> first batch: column mean = shift s -> every batch:
//   sum (x - s) in double, x := (x - s) * w, C += X^T X (syrk fp32 or GEMM
//   tf32) -> C := C / n - u u^T with u = w (mean - s), symmetrized ->
//   subspace iteration Q := orth(C Q) (geqrf + orgqr) -> T = Q^T C Q ->
//   syevd(T) -> V = Q U, top `rank` columns -> projections of the DP
//   subsample (the CPU calibrator's rows) -> host: dp_stats_compute, DP,
//   plans (calibrate.c).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <chrono>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "cuda/device_guard.h"
#include "kvtc_cuda.h"

extern "C" {
#include "model/basis.h"
#include "transform/calibrate_internal.h"
#include "util/cache.h"
}

#define GC_CK(x)                                      \
    do {                                              \
        if ((x) != cudaSuccess) return KVTC_ERR_CUDA; \
    } while (0)
#define GC_CKB(x)                                               \
    do {                                                        \
        if ((x) != CUBLAS_STATUS_SUCCESS) return KVTC_ERR_CUDA; \
    } while (0)
#define GC_CKS(x)                                                 \
    do {                                                          \
        if ((x) != CUSOLVER_STATUS_SUCCESS) return KVTC_ERR_CUDA; \
    } while (0)

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- kernels ------------------------------------------------------------------

#define COLSUM_ROWS 64

// acc[j] += sum over rows of (X[r][j] - s[j]); if apply, X[r][j] = (X[r][j] - s[j]) * w[j].
__global__ void k_colsum(float *X, uint64_t m, uint32_t p, const float *s, const float *w, double *acc, int apply) {
    uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p) return;
    uint64_t r0 = (uint64_t)blockIdx.y * COLSUM_ROWS, r1 = r0 + COLSUM_ROWS < m ? r0 + COLSUM_ROWS : m;
    float sj = s ? s[j] : 0.0f, wj = w ? w[j] : 1.0f;
    double a = 0;
    for (uint64_t r = r0; r < r1; r++) {
        float x = X[r * p + j] - sj;
        a += x;
        if (apply) X[r * p + j] = x * wj;
    }
    atomicAdd(&acc[j], a);
}

__global__ void k_set_shift(const double *acc, uint64_t m, uint32_t p, float *s) {
    uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < p) s[j] = (float)(acc[j] / (double)m);
}

// C (col-major p x p, lower triangle valid) := C / n - u u^T, both triangles.
__global__ void k_finalize_cov(float *C, uint32_t p, double inv_n, const float *u) {
    uint32_t i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (i >= p || i < j) return;
    float v = (float)((double)C[(size_t)j * p + i] * inv_n) - u[i] * u[j];
    C[(size_t)j * p + i] = v;
    C[(size_t)i * p + j] = v;
}

__device__ __forceinline__ uint64_t gc_mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__global__ void k_gauss(float *a, size_t n, uint64_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint64_t h = gc_mix(seed ^ gc_mix(i));
    double u1 = ((h >> 11) + 1) * 0x1p-53, u2 = (gc_mix(h) >> 11) * 0x1p-53;
    a[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// sub[r][j] := (sub[r][j] - mu[j]) * w[j]; tot += sum of squares.
__global__ void k_center_weight(float *X, uint64_t m, uint32_t p, const float *mu, const float *w, double *tot) {
    __shared__ double red[256];
    size_t n = (size_t)m * p, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    double a = 0;
    for (size_t i = i0; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t j = (uint32_t)(i % p);
        float x = (X[i] - mu[j]) * w[j];
        X[i] = x;
        a += (double)x * x;
    }
    red[threadIdx.x] = a;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    if (!threadIdx.x) atomicAdd(tot, red[0]);
}

// ---- the engine -----------------------------------------------------------------

struct GCal {
    cublasHandle_t h = nullptr;
    cusolverDnHandle_t sh = nullptr;
    cudaStream_t st = nullptr;
    uint32_t p = 0, rank = 0, l = 0, power_iters = 3;
    uint64_t n = 0, B = 0, ns = 0, step = 1;
    cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
    int tf32 = 0;
    float *C = nullptr, *X = nullptr, *sub = nullptr, *shift = nullptr, *w = nullptr, *u = nullptr;
    float *Q = nullptr, *Y = nullptr, *T = nullptr, *eig = nullptr, *tau = nullptr, *work = nullptr, *D = nullptr;
    double *acc = nullptr, *tot = nullptr;
    int *info = nullptr;
    int lwork = 0;
    ~GCal() {
        void *ptrs[] = {C, X, sub, shift, w, u, Q, Y, T, eig, tau, work, D, acc, tot, info};
        for (void *q : ptrs) cudaFree(q);
        if (sh) cusolverDnDestroy(sh);
        if (h) cublasDestroy(h);
        if (st) cudaStreamDestroy(st);
    }
};

static kvtc_result gemm(GCal &g, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A,
                        int lda, const float *Bm, int ldb, float *Cm, int ldc, cublasComputeType_t ct) {
    const float one = 1.0f, zero = 0.0f;
    GC_CKB(cublasGemmEx(g.h, ta, tb, m, n, k, &one, A, CUDA_R_32F, lda, Bm, CUDA_R_32F, ldb, &zero, Cm, CUDA_R_32F,
                        ldc, ct, CUBLAS_GEMM_DEFAULT));
    return KVTC_OK;
}

static kvtc_result orth(GCal &g, float *A) {
    GC_CKS(cusolverDnSgeqrf(g.sh, (int)g.p, (int)g.l, A, (int)g.p, g.tau, g.work, g.lwork, g.info));
    GC_CKS(cusolverDnSorgqr(g.sh, (int)g.p, (int)g.l, (int)g.l, A, (int)g.p, g.tau, g.work, g.lwork, g.info));
    int hinfo = 0;
    GC_CK(cudaMemcpyAsync(&hinfo, g.info, sizeof(int), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaStreamSynchronize(g.st));
    return hinfo == 0 ? KVTC_OK : KVTC_ERR_NUMERIC;
}

static kvtc_result gcal_setup(GCal &g, uint32_t p, uint64_t n, uint32_t rank, const kvtc_cuda_calib_options &o) {
    g.p = p;
    g.n = n;
    g.rank = rank;
    g.l = rank + o.oversample < p ? rank + o.oversample : p;
    g.power_iters = o.power_iters;
    g.B = o.batch_rows;
    g.tf32 = o.gemm == KVTC_CUDA_GEMM_TF32;
    g.ct = g.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    g.ns = n < CALIB_DP_MAX_ROWS ? n : CALIB_DP_MAX_ROWS;
    g.step = n / g.ns;
    GC_CK(cudaStreamCreateWithFlags(&g.st, cudaStreamNonBlocking));
    GC_CKB(cublasCreate(&g.h));
    GC_CKB(cublasSetStream(g.h, g.st));
    GC_CKS(cusolverDnCreate(&g.sh));
    GC_CKS(cusolverDnSetStream(g.sh, g.st));
    size_t pp = (size_t)p * p, pl = (size_t)p * g.l;
    GC_CK(cudaMalloc(&g.C, pp * sizeof(float)));
    GC_CK(cudaMalloc(&g.X, (size_t)g.B * p * sizeof(float)));
    GC_CK(cudaMalloc(&g.sub, (size_t)g.ns * p * sizeof(float)));
    GC_CK(cudaMalloc(&g.shift, p * sizeof(float)));
    GC_CK(cudaMalloc(&g.w, p * sizeof(float)));
    GC_CK(cudaMalloc(&g.u, p * sizeof(float)));
    GC_CK(cudaMalloc(&g.Q, pl * sizeof(float)));
    GC_CK(cudaMalloc(&g.Y, pl * sizeof(float)));
    GC_CK(cudaMalloc(&g.T, (size_t)g.l * g.l * sizeof(float)));
    GC_CK(cudaMalloc(&g.eig, g.l * sizeof(float)));
    GC_CK(cudaMalloc(&g.tau, g.l * sizeof(float)));
    GC_CK(cudaMalloc(&g.D, (size_t)g.ns * rank * sizeof(float) + 4));
    GC_CK(cudaMalloc(&g.acc, p * sizeof(double)));
    GC_CK(cudaMalloc(&g.tot, sizeof(double)));
    GC_CK(cudaMalloc(&g.info, sizeof(int)));
    int l1 = 0, l2 = 0, l3 = 0;
    GC_CKS(cusolverDnSgeqrf_bufferSize(g.sh, (int)p, (int)g.l, g.Q, (int)p, &l1));
    GC_CKS(cusolverDnSorgqr_bufferSize(g.sh, (int)p, (int)g.l, (int)g.l, g.Q, (int)p, g.tau, &l2));
    GC_CKS(cusolverDnSsyevd_bufferSize(g.sh, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, (int)g.l, g.T,
                                       (int)g.l, g.eig, &l3));
    g.lwork = l1 > l2 ? l1 : l2;
    if (l3 > g.lwork) g.lwork = l3;
    GC_CK(cudaMalloc(&g.work, (size_t)g.lwork * sizeof(float) + 4));
    return KVTC_OK;
}

// One stream: fills f->bs (p, rank, mean, weight, basis, eigenvalues) and f->st.
static kvtc_result gcal_stream(GCal &g, int is_key, const float *h_w, kvtc_cuda_row_fn fill, void *user,
                               uint64_t seed, stream_fit *f, kvtc_cuda_calib_stats *stats) {
    const uint32_t p = g.p;
    const int TB = 256;
    dim3 cgrid((p + TB - 1) / TB, 1);
    double t0 = now_s();
    GC_CK(cudaMemcpyAsync(g.w, h_w, p * sizeof(float), cudaMemcpyHostToDevice, g.st));
    GC_CK(cudaMemsetAsync(g.acc, 0, p * sizeof(double), g.st));
    for (uint64_t r0 = 0; r0 < g.n; r0 += g.B) {
        uint64_t m = g.n - r0 < g.B ? g.n - r0 : g.B;
        if (fill(user, is_key, r0, m, g.X, g.st)) return KVTC_ERR_CALLBACK;
        cgrid.y = (unsigned)((m + COLSUM_ROWS - 1) / COLSUM_ROWS);
        if (r0 == 0) {  // shift = mean of the first batch
            k_colsum<<<cgrid, TB, 0, g.st>>>(g.X, m, p, nullptr, nullptr, g.acc, 0);
            k_set_shift<<<cgrid.x, TB, 0, g.st>>>(g.acc, m, p, g.shift);
            GC_CK(cudaMemsetAsync(g.acc, 0, p * sizeof(double), g.st));
        }
        // DP subsample: rows i * step, i < ns, copied raw
        uint64_t i0 = (r0 + g.step - 1) / g.step, i1 = (r0 + m + g.step - 1) / g.step;
        if (i1 > g.ns) i1 = g.ns;
        if (i0 < i1)
            GC_CK(cudaMemcpy2DAsync(g.sub + i0 * p, p * sizeof(float), g.X + (i0 * g.step - r0) * p,
                                    g.step * p * sizeof(float), p * sizeof(float), i1 - i0, cudaMemcpyDeviceToDevice,
                                    g.st));
        k_colsum<<<cgrid, TB, 0, g.st>>>(g.X, m, p, g.shift, g.w, g.acc, 1);
        GC_CK(cudaGetLastError());
        const float one = 1.0f, beta = r0 ? 1.0f : 0.0f;
        if (g.tf32)
            GC_CKB(cublasGemmEx(g.h, CUBLAS_OP_N, CUBLAS_OP_T, (int)p, (int)p, (int)m, &one, g.X, CUDA_R_32F, (int)p,
                                g.X, CUDA_R_32F, (int)p, &beta, g.C, CUDA_R_32F, (int)p, CUBLAS_COMPUTE_32F_FAST_TF32,
                                CUBLAS_GEMM_DEFAULT));
        else
            GC_CKB(cublasSsyrk(g.h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)p, (int)m, &one, g.X, (int)p, &beta, g.C,
                               (int)p));
    }
    // mean and the rank-one correction
    std::vector<double> acc(p);
    std::vector<float> shift(p), uu(p);
    GC_CK(cudaMemcpyAsync(acc.data(), g.acc, p * sizeof(double), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaMemcpyAsync(shift.data(), g.shift, p * sizeof(float), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaStreamSynchronize(g.st));
    basis_stream *s = &f->bs;
    s->p = p;
    s->mean = (float *)malloc(sizeof(float) * p);
    s->weight = (float *)malloc(sizeof(float) * p);
    s->basis = (float *)malloc(sizeof(float) * (size_t)g.rank * p + 4);
    s->eigenvalues = (float *)malloc(sizeof(float) * g.rank + 4);
    if (!s->mean || !s->weight || !s->basis || !s->eigenvalues) return KVTC_ERR_OUT_OF_MEMORY;
    memcpy(s->weight, h_w, sizeof(float) * p);
    for (uint32_t j = 0; j < p; j++) {
        double d = acc[j] / (double)g.n;
        s->mean[j] = (float)(shift[j] + d);
        uu[j] = (float)(d * h_w[j]);
    }
    GC_CK(cudaMemcpyAsync(g.u, uu.data(), p * sizeof(float), cudaMemcpyHostToDevice, g.st));
    k_finalize_cov<<<dim3((p + TB - 1) / TB, p), TB, 0, g.st>>>(g.C, p, 1.0 / (double)g.n, g.u);
    GC_CK(cudaGetLastError());
    GC_CK(cudaStreamSynchronize(g.st));
    double t1 = now_s();

    // subspace iteration
    kvtc_result r;
    size_t pl = (size_t)p * g.l;
    k_gauss<<<(unsigned)((pl + TB - 1) / TB), TB, 0, g.st>>>(g.Q, pl, seed ^ 0x7063615f72616e64ull ^ (uint64_t)is_key);
    if ((r = orth(g, g.Q))) return r;
    for (uint32_t it = 0; it < g.power_iters && g.l < p; it++) {
        if ((r = gemm(g, CUBLAS_OP_N, CUBLAS_OP_N, (int)p, (int)g.l, (int)p, g.C, (int)p, g.Q, (int)p, g.Y, (int)p,
                      g.ct)))
            return r;
        std::swap(g.Q, g.Y);
        if ((r = orth(g, g.Q))) return r;
    }
    // Rayleigh-Ritz (fp32 products: the small eigenproblem wants the accurate T)
    if ((r = gemm(g, CUBLAS_OP_N, CUBLAS_OP_N, (int)p, (int)g.l, (int)p, g.C, (int)p, g.Q, (int)p, g.Y, (int)p,
                  CUBLAS_COMPUTE_32F)))
        return r;
    if ((r = gemm(g, CUBLAS_OP_T, CUBLAS_OP_N, (int)g.l, (int)g.l, (int)p, g.Q, (int)p, g.Y, (int)p, g.T, (int)g.l,
                  CUBLAS_COMPUTE_32F)))
        return r;
    GC_CKS(cusolverDnSsyevd(g.sh, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, (int)g.l, g.T, (int)g.l, g.eig,
                            g.work, g.lwork, g.info));
    // V = Q U (into Y), eigenvalues ascending: component j = column l-1-j
    if ((r = gemm(g, CUBLAS_OP_N, CUBLAS_OP_N, (int)p, (int)g.l, (int)g.l, g.Q, (int)p, g.T, (int)g.l, g.Y, (int)p,
                  CUBLAS_COMPUTE_32F)))
        return r;
    float *V = g.Q;  // p x rank, column j = component j (= row-major [rank][p])
    for (uint32_t j = 0; j < g.rank; j++)
        GC_CK(cudaMemcpyAsync(V + (size_t)j * p, g.Y + (size_t)(g.l - 1 - j) * p, p * sizeof(float),
                              cudaMemcpyDeviceToDevice, g.st));
    std::vector<float> ev(g.l);
    int hinfo = 0;
    GC_CK(cudaMemcpyAsync(ev.data(), g.eig, g.l * sizeof(float), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaMemcpyAsync(&hinfo, g.info, sizeof(int), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaMemcpyAsync(s->basis, V, (size_t)g.rank * p * sizeof(float), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaStreamSynchronize(g.st));
    if (hinfo) return KVTC_ERR_NUMERIC;
    for (uint32_t j = 0; j < g.rank; j++) {
        float e = ev[g.l - 1 - j];
        s->eigenvalues[j] = e > 0 ? e : 0.0f;
    }
    s->rank = g.rank;
    double t2 = now_s();

    // DP statistics: the subsample, centered with the exact mean, projected
    GC_CK(cudaMemcpyAsync(g.u, s->mean, p * sizeof(float), cudaMemcpyHostToDevice, g.st));
    GC_CK(cudaMemsetAsync(g.tot, 0, sizeof(double), g.st));
    k_center_weight<<<1024, 256, 0, g.st>>>(g.sub, g.ns, p, g.u, g.w, g.tot);
    GC_CK(cudaGetLastError());
    if (g.rank && (r = gemm(g, CUBLAS_OP_T, CUBLAS_OP_N, (int)g.rank, (int)g.ns, (int)p, V, (int)p, g.sub, (int)p,
                            g.D, (int)g.rank, CUBLAS_COMPUTE_32F)))
        return r;
    std::vector<float> d((size_t)g.ns * g.rank + 1);
    double total = 0;
    GC_CK(cudaMemcpyAsync(d.data(), g.D, (size_t)g.ns * g.rank * sizeof(float), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaMemcpyAsync(&total, g.tot, sizeof(double), cudaMemcpyDeviceToHost, g.st));
    GC_CK(cudaStreamSynchronize(g.st));
    if ((r = calib_stats_from_proj(d.data(), g.ns, total / (double)g.ns, f))) return r;
    double t3 = now_s();
    if (stats) {
        stats->covariance_s += t1 - t0;
        stats->eigen_s += t2 - t1;
        stats->dp_stats_s += t3 - t2;
    }
    return KVTC_OK;
}

void kvtc_cuda_calib_options_init(kvtc_cuda_calib_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->oversample = 32;
    o->power_iters = 3;
    o->batch_rows = 4096;
    o->gemm = KVTC_CUDA_GEMM_FP32;
    o->device = -1;
}

// Shared body: c gives geometry, options, p and weights.
static kvtc_result gcal_run(kvtc_calibrator *c, uint64_t n_rows, kvtc_cuda_row_fn fill, void *user,
                            const double *ratios, uint32_t n_ratios, const kvtc_cuda_calib_options *opts,
                            kvtc_basis **out, kvtc_cuda_calib_stats *stats) {
    double t0 = now_s();
    kvtc_cuda_calib_options o;
    kvtc_cuda_calib_options_init(&o);
    if (opts) {
        if (opts->struct_size != sizeof o) return KVTC_ERR_INVALID_ARGUMENT;
        o = *opts;
    }
    if (o.batch_rows == 0 || (o.gemm != KVTC_CUDA_GEMM_FP32 && o.gemm != KVTC_CUDA_GEMM_TF32))
        return KVTC_ERR_INVALID_ARGUMENT;
    calib_view v;
    calib_get_view(c, &v);
    if (v.o.pca_per_layer) return KVTC_ERR_UNSUPPORTED;
    uint32_t p = v.p;
    uint32_t rank = o.rank ? o.rank : (v.o.max_rank ? v.o.max_rank : CALIB_AUTO_RANK);
    if (rank > p) rank = p;
    if (rank > n_rows) rank = (uint32_t)n_rows;
    if ((uint64_t)p * p > (1ull << 33) || (uint64_t)p * (rank + o.oversample) > 0x7fffffffull)
        return KVTC_ERR_TOO_LARGE;
    if (o.batch_rows > n_rows) o.batch_rows = (uint32_t)n_rows;
    kvtc_cuda_calib_stats local;
    memset(&local, 0, sizeof local);
    stream_fit fk, fv;
    memset(&fk, 0, sizeof fk);
    memset(&fv, 0, sizeof fv);
    kvtc_result r;
    {
        DeviceGuard dg(o.device);  // declared first: restores the caller's device after g is freed
        if (!dg.ok) return KVTC_ERR_CUDA;
        GCal g;
        if ((r = gcal_setup(g, p, n_rows, rank, o)) ||
            (r = gcal_stream(g, 1, v.wk, fill, user, v.o.seed, &fk, &local)) ||
            (r = gcal_stream(g, 0, v.wv, fill, user, v.o.seed, &fv, &local))) {
            stream_fit_free(&fk);
            stream_fit_free(&fv);
            return r;
        }
        local.subspace = g.l;
    }
    double t1 = now_s();
    r = calib_build_basis(c, ratios, n_ratios, &fk, &fv, out);
    double t2 = now_s();
    local.plans_s = t2 - t1;
    local.total_s = t2 - t0;
    local.rank = rank;
    local.rows = n_rows;
    if (stats) *stats = local;
    return r;
}

struct HostRows {
    const float *k, *v;
    uint32_t p;
};

static int host_rows_fill(void *user, int is_key, uint64_t row0, uint64_t n, float *d_rows, cudaStream_t stream) {
    const HostRows *h = (const HostRows *)user;
    const float *src = (is_key ? h->k : h->v) + row0 * h->p;
    return cudaMemcpyAsync(d_rows, src, n * h->p * sizeof(float), cudaMemcpyHostToDevice, stream) != cudaSuccess;
}

extern "C" kvtc_result kvtc_cuda_calibrator_finish(kvtc_calibrator *c, const double *ratios, uint32_t n_ratios,
                                                   const kvtc_cuda_calib_options *opts, kvtc_basis **out,
                                                   kvtc_cuda_calib_stats *stats) {
    if (!out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (c) {
        calib_view v;
        calib_get_view(c, &v);
        if (v.o.pca_per_layer) return KVTC_ERR_UNSUPPORTED;
    }
    kvtc_result r = calib_begin_finish(c, ratios, n_ratios, 2);
    if (r) return r;
    calib_view v;
    calib_get_view(c, &v);
    HostRows h = {v.rows_k, v.rows_v, v.p};
    return gcal_run(c, v.n_rows, host_rows_fill, &h, ratios, n_ratios, opts, out, stats);
}

extern "C" kvtc_result kvtc_cuda_calibrate_rows(const kvtc_geometry *g, const kvtc_calibrate_options *copts,
                                                uint64_t n_rows, kvtc_cuda_row_fn fill, void *user,
                                                const double *ratios, uint32_t n_ratios,
                                                const kvtc_cuda_calib_options *opts, kvtc_basis **out,
                                                kvtc_cuda_calib_stats *stats) {
    if (!out || !fill || n_rows < 2) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    kvtc_calibrator *c = NULL;
    kvtc_result r = kvtc_calibrator_alloc(g, copts, &c);  // geometry, options, weights; holds no rows
    if (r) return r;
    if (!(r = calib_begin_finish(c, ratios, n_ratios, 0)))
        r = gcal_run(c, n_rows, fill, user, ratios, n_ratios, opts, out, stats);
    kvtc_calibrator_free(c);
    return r;
}
