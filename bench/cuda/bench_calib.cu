// bench_calib.cu - GPU calibration: correctness against the CPU calibrator on
// small geometries, and timing at the paper's geometry (p = 40960).
//
//   kvtc_cuda_calib_bench check
//   kvtc_cuda_calib_bench time N_TOKENS RANK fp32|tf32 [M_LATENT]
//
// check: the same synthetic caches (tests/synth.h via bench_synth.c) go into
// two calibrators; one finishes on the CPU (exact PCA), the other on the GPU
// (kvtc_cuda_calibrator_finish). Compared: eigenvalues, subspace agreement
// ||Vc_k^T Vg_k||_F^2 / k of the top k components, plans.
//
// time: rows generated on the device (they never exist in host memory):
// x = mean + Q diag(sqrt(lambda)) z + sigma e, z, e ~ N(0, I), Q a random
// orthonormal p x m (QR of a Gaussian), lambda_i = (i+1)^-1 (the power law
// bench_cuda uses for the paper-geometry basis), sigma^2 = 0.5 lambda_{m-1},
// mean_j ~ 3 N(0,1). The covariance's eigenvectors are Q's columns with
// eigenvalues lambda_i + sigma^2 (a flat tail of sigma^2 beyond m).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <chrono>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "kvtc_cuda.h"

extern "C" {
#include "bench_synth.h"
#include "model/basis.h"
}

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static int failures = 0;
#define EXPECT(c, ...)                             \
    do {                                           \
        if (!(c)) {                                \
            printf("FAIL %s:%d ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                   \
            printf("\n");                          \
            failures++;                            \
        }                                          \
    } while (0)

// ||A_k^T B_k||_F^2 / k for [rank][p] row bases (double on the host)
static double subspace_agreement(const float *a, const float *b, uint32_t p, uint32_t k) {
    double s = 0;
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < k; j++) {
            double d = 0;
            for (uint32_t t = 0; t < p; t++) d += (double)a[(size_t)i * p + t] * b[(size_t)j * p + t];
            s += d * d;
        }
    return s / k;
}

// err_tol: relative tolerance on the plans' total expected error. Exact (subspace = p):
// 2%. Randomized: components beyond the latent rank lie in a flat noise floor where
// 3 subspace iterations capture a little less variance than exact eigenvectors.
static int check_case(const char *name, kvtc_geometry g, uint64_t n_tok, uint32_t n_caches, uint32_t latent,
                      kvtc_pca_method cpu_method, uint32_t gpu_rank, kvtc_cuda_gemm mode, double err_tol) {
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    o.pca_method = cpu_method;
    o.max_rank = gpu_rank;
    kvtc_calibrator *cc = NULL, *cg = NULL;
    if (kvtc_calibrator_alloc(&g, &o, &cc) || kvtc_calibrator_alloc(&g, &o, &cg)) return 1;
    for (uint32_t i = 0; i < n_caches; i++) {
        kvtc_cache c;
        if (bs_make_cache(&g, KVTC_DTYPE_F32, n_tok, latent, 100 + i, &c)) return 1;
        if (kvtc_calibrator_add(cc, &c) || kvtc_calibrator_add(cg, &c)) return 1;
        bs_free_cache(&c);
    }
    double ratios[2] = {8.0, 16.0};
    kvtc_basis *bc = NULL, *bgp = NULL;
    double t0 = now_s();
    kvtc_result r1 = kvtc_calibrator_finish(cc, ratios, 2, &bc);
    double t1 = now_s();
    kvtc_cuda_calib_options go;
    kvtc_cuda_calib_options_init(&go);
    go.gemm = mode;
    go.batch_rows = 1000;  // several batches, a partial last one
    kvtc_cuda_calib_stats st;
    kvtc_result r2 = kvtc_cuda_calibrator_finish(cg, ratios, 2, &go, &bgp, &st);
    double t2 = now_s();
    EXPECT(r1 == KVTC_OK && r2 == KVTC_OK, "%s: finish cpu %d gpu %d", name, r1, r2);
    if (r1 || r2) return 1;
    uint32_t p = bc->k.p;
    printf("%s: p=%u rows=%llu cpu %.2fs gpu %.2fs (rank %u subspace %u, %s)\n", name, p,
           (unsigned long long)st.rows, t1 - t0, t2 - t1, st.rank, st.subspace, mode == KVTC_CUDA_GEMM_TF32 ? "tf32" : "fp32");
    for (int s = 0; s < 2; s++) {
        const basis_stream *a = s ? &bc->v : &bc->k, *b = s ? &bgp->v : &bgp->k;
        double md = 0;
        for (uint32_t j = 0; j < p; j++) md = fmax(md, fabs((double)a->mean[j] - b->mean[j]));
        uint32_t rk = a->rank < b->rank ? a->rank : b->rank;
        double emax = 0;
        uint32_t ecount = rk < 64 ? rk : 64;
        // top 16 (the signal): relative; top 64 (into the noise floor): absolute, against
        // lambda0, since the GPU covariance is fp32 (the CPU's is double): eps * |C| * O(10)
        double abs_max = 0;
        for (uint32_t j = 0; j < ecount; j++) {
            double dj = fabs((double)a->eigenvalues[j] - b->eigenvalues[j]);
            if (j < 16) emax = fmax(emax, dj / fmax(1e-30, a->eigenvalues[j]));
            abs_max = fmax(abs_max, dj / a->eigenvalues[0]);
        }
        printf("  %s: mean max|diff| %.2e, top-16 eigenvalue max rel diff %.2e, top-%u max |diff|/lambda0 %.2e "
               "(lambda0 %.4g vs %.4g), rank cpu %u gpu %u\n",
               s ? "V" : "K", md, emax, ecount, abs_max, a->eigenvalues[0], b->eigenvalues[0], a->rank, b->rank);
        EXPECT(emax < 2e-3 && abs_max < 1e-5, "%s %s eigenvalues", name, s ? "V" : "K");
        uint32_t ks[3] = {4, 8, 16};
        for (int q = 0; q < 3; q++) {
            uint32_t k = ks[q];
            if (k > rk) continue;
            double ag = subspace_agreement(a->basis, b->basis, p, k);
            printf("    top-%u subspace agreement %.6f\n", k, ag);
            EXPECT(ag > 0.999, "%s %s subspace k=%u: %f", name, s ? "V" : "K", k, ag);
        }
    }
    for (uint32_t i = 0; i < bc->n_plans; i++) {
        kvtc_plan_info pc{}, pg{};
        pc.struct_size = sizeof pc;
        pg.struct_size = sizeof pg;
        kvtc_basis_plan_info(bc, i, &pc);
        kvtc_basis_plan_info(bgp, i, &pg);
        printf("  plan %.0f: cpu rank %u/%u err %.4g/%.4g bits %.0f | gpu rank %u/%u err %.4g/%.4g bits %.0f\n",
               pc.target_ratio, pc.rank_k, pc.rank_v, pc.expected_error_k, pc.expected_error_v, pc.bits_per_token,
               pg.rank_k, pg.rank_v, pg.expected_error_k, pg.expected_error_v, pg.bits_per_token);
        double ec = pc.expected_error_k + pc.expected_error_v, eg = pg.expected_error_k + pg.expected_error_v;
        EXPECT(fabs(ec - eg) <= err_tol * ec + 1e-12, "%s plan %u expected error cpu %g gpu %g", name, i, ec, eg);
    }
    kvtc_basis_free(bc);
    kvtc_basis_free(bgp);
    kvtc_calibrator_free(cc);
    kvtc_calibrator_free(cg);
    return 0;
}

// ---- device generator for the timing run ------------------------------------------

struct Gen {
    uint32_t p, m;
    float *Q;      // p x m col-major, orthonormal columns
    float *Z;      // m x B col-major
    float *mean;   // p
    float *lam;    // m (sqrt)
    float sigma;
    cublasHandle_t h;
};

__device__ __forceinline__ uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
__device__ __forceinline__ float gauss(uint64_t key) {
    uint64_t h = mix(key);
    double u1 = ((h >> 11) + 1) * 0x1p-53, u2 = (mix(h) >> 11) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
__global__ void k_gen_z(float *Z, uint32_t m, uint64_t n, uint64_t row0, const float *sl, uint64_t salt) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)m * n) return;
    uint32_t c = (uint32_t)(i % m);
    uint64_t r = row0 + i / m;
    Z[i] = gauss(salt ^ (r * 0x100000001b3ull + c)) * sl[c];
}
__global__ void k_gen_noise(float *X, uint32_t p, uint64_t n, uint64_t row0, const float *mean, float sigma, uint64_t salt) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)p * n) return;
    uint32_t j = (uint32_t)(i % p);
    uint64_t r = row0 + i / p;
    X[i] += mean[j] + sigma * gauss(salt ^ 0x5bd1e995ull ^ (r * 0x9e3779b1ull + j * 0x85ebca6bull));
}
__global__ void k_fill_gauss(float *a, size_t n, uint64_t salt) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] = gauss(salt ^ (i * 0xff51afd7ed558ccdull));
}

static int gen_fill(void *user, int is_key, uint64_t row0, uint64_t n, float *d_rows, cudaStream_t stream) {
    Gen *g = (Gen *)user;
    cublasSetStream(g->h, stream);
    size_t zn = (size_t)g->m * n;
    uint64_t salt = is_key ? 0x1111ull : 0x2222ull;
    k_gen_z<<<(unsigned)((zn + 255) / 256), 256, 0, stream>>>(g->Z, g->m, n, row0, g->lam, salt);
    const float one = 1.0f, zero = 0.0f;
    // X (p x n col-major = [n][p] rows) = Q Z
    if (cublasGemmEx(g->h, CUBLAS_OP_N, CUBLAS_OP_N, (int)g->p, (int)n, (int)g->m, &one, g->Q, CUDA_R_32F, (int)g->p,
                     g->Z, CUDA_R_32F, (int)g->m, &zero, d_rows, CUDA_R_32F, (int)g->p, CUBLAS_COMPUTE_32F_FAST_TF32,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
        return 1;
    size_t xn = (size_t)g->p * n;
    k_gen_noise<<<(unsigned)((xn + 255) / 256), 256, 0, stream>>>(d_rows, g->p, n, row0, g->mean, g->sigma, salt);
    return cudaGetLastError() != cudaSuccess;
}

static int time_case(uint64_t n_tok, uint32_t rank, kvtc_cuda_gemm mode, uint32_t m) {
    kvtc_geometry g = {40, 8, 128, 0, KVTC_ROPE_NONE, 0.0f};  // rows arrive already un-rotated
    uint32_t p = 40 * 8 * 128;
    uint32_t B = 4096;
    Gen gen;
    gen.p = p;
    gen.m = m;
    cublasCreate(&gen.h);
    cudaMalloc(&gen.Q, (size_t)p * m * 4);
    cudaMalloc(&gen.Z, (size_t)m * B * 4);
    cudaMalloc(&gen.mean, (size_t)p * 4);
    cudaMalloc(&gen.lam, (size_t)m * 4);
    std::vector<float> sl(m), lam(m);
    for (uint32_t i = 0; i < m; i++) lam[i] = (float)pow(i + 1.0, -1.0);
    gen.sigma = (float)sqrt(0.5 * lam[m - 1]);
    for (uint32_t i = 0; i < m; i++) sl[i] = sqrtf(lam[i]);
    cudaMemcpy(gen.lam, sl.data(), m * 4, cudaMemcpyHostToDevice);
    k_fill_gauss<<<(unsigned)(((size_t)p * m + 255) / 256), 256>>>(gen.Q, (size_t)p * m, 77);
    k_fill_gauss<<<(p + 255) / 256, 256>>>(gen.mean, p, 78);
    cublasSscal(gen.h, (int)p, std::vector<float>{3.0f}.data(), gen.mean, 1);
    {  // orthonormalize Q
        cusolverDnHandle_t sh;
        cusolverDnCreate(&sh);
        int lw1 = 0, lw2 = 0, *info;
        float *tau, *work;
        cusolverDnSgeqrf_bufferSize(sh, (int)p, (int)m, gen.Q, (int)p, &lw1);
        cudaMalloc(&tau, m * 4);
        cusolverDnSorgqr_bufferSize(sh, (int)p, (int)m, (int)m, gen.Q, (int)p, tau, &lw2);
        int lw = lw1 > lw2 ? lw1 : lw2;
        cudaMalloc(&work, (size_t)lw * 4);
        cudaMalloc(&info, 4);
        cusolverDnSgeqrf(sh, (int)p, (int)m, gen.Q, (int)p, tau, work, lw, info);
        cusolverDnSorgqr(sh, (int)p, (int)m, (int)m, gen.Q, (int)p, tau, work, lw, info);
        cudaDeviceSynchronize();
        cudaFree(tau); cudaFree(work); cudaFree(info);
        cusolverDnDestroy(sh);
    }
    // generator alone: one pass over both streams (to net it out)
    float *X;
    cudaMalloc(&X, (size_t)B * p * 4);
    cudaDeviceSynchronize();
    double t0 = now_s();
    for (int s = 0; s < 2; s++)
        for (uint64_t r0 = 0; r0 < n_tok; r0 += B) gen_fill(&gen, s, r0, n_tok - r0 < B ? n_tok - r0 : B, X, 0);
    cudaDeviceSynchronize();
    double tgen = now_s() - t0;
    cudaFree(X);
    printf("generator alone (both streams, %llu rows each, m = %u latents): %.2f s\n", (unsigned long long)n_tok, m,
           tgen);

    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    o.max_rank = rank;
    kvtc_cuda_calib_options go;
    kvtc_cuda_calib_options_init(&go);
    go.gemm = mode;
    go.batch_rows = B;
    double ratios[3] = {8.0, 16.0, 32.0};
    kvtc_basis *b = NULL;
    kvtc_cuda_calib_stats st;
    t0 = now_s();
    kvtc_result r = kvtc_cuda_calibrate_rows(&g, &o, n_tok, gen_fill, &gen, ratios, 3, &go, &b, &st);
    double tt = now_s() - t0;
    EXPECT(r == KVTC_OK, "calibrate_rows: %s", kvtc_result_string(r));
    if (r) return 1;
    printf("RESULT gpu_calib p=%u rows=%llu rank=%u subspace=%u gemm=%s: total %.2f s (covariance %.2f incl. "
           "generator, eigen %.2f, dp stats %.2f, plans %.2f); net of generator %.2f s\n",
           p, (unsigned long long)n_tok, st.rank, st.subspace, mode == KVTC_CUDA_GEMM_TF32 ? "tf32" : "fp32", tt,
           st.covariance_s, st.eigen_s, st.dp_stats_s, st.plans_s, tt - tgen);
    for (uint32_t i = 0; i < b->n_plans; i++) {
        kvtc_plan_info pi{};
        pi.struct_size = sizeof pi;
        kvtc_basis_plan_info(b, i, &pi);
        printf("  plan %.0f: rank K %u V %u, expected error K %.4g V %.4g\n", pi.target_ratio, pi.rank_k, pi.rank_v,
               pi.expected_error_k, pi.expected_error_v);
    }
    // truth: eigenvalues lambda_i + sigma^2; subspace agreement with Q's leading columns
    const basis_stream *bk = &b->k;
    double s2 = (double)gen.sigma * gen.sigma;
    uint32_t idx[6] = {0, 9, 99, 499, 999, 1999};
    for (int q = 0; q < 6; q++)
        if (idx[q] < bk->rank)
            printf("  K eigenvalue %u: %.5g (true %.5g)\n", idx[q] + 1, bk->eigenvalues[idx[q]], lam[idx[q]] + s2);
    float *dV, *dM;
    uint32_t ks[4] = {16, 64, 256, 1024};
    cudaMalloc(&dV, (size_t)p * 1024 * 4);
    cudaMalloc(&dM, (size_t)1024 * 1024 * 4);
    for (int q = 0; q < 4; q++) {
        uint32_t k = ks[q];
        if (k > bk->rank || k > m) continue;
        cudaMemcpy(dV, bk->basis, (size_t)k * p * 4, cudaMemcpyHostToDevice);
        const float one = 1.0f, zero = 0.0f;
        cublasSetStream(gen.h, 0);
        cublasSgemm(gen.h, CUBLAS_OP_T, CUBLAS_OP_N, (int)k, (int)k, (int)p, &one, gen.Q, (int)p, dV, (int)p, &zero, dM,
                    (int)k);
        std::vector<float> M((size_t)k * k);
        cudaMemcpy(M.data(), dM, (size_t)k * k * 4, cudaMemcpyDeviceToHost);
        double s = 0;
        for (float x : M) s += (double)x * x;
        printf("  K top-%u subspace agreement with the generator's eigenvectors: %.4f\n", k, s / k);
    }
    cudaFree(dV);
    cudaFree(dM);
    kvtc_basis_free(b);
    cudaFree(gen.Q); cudaFree(gen.Z); cudaFree(gen.mean); cudaFree(gen.lam);
    cublasDestroy(gen.h);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "check")) {
        // exact: subspace = p (rank + oversample >= p), vs LAPACK dsyevr
        check_case("small exact fp32", kvtc_geometry{2, 2, 64, 0, KVTC_ROPE_NEOX, 10000.0f}, 3000, 3, 16,
                   KVTC_PCA_EXACT, 0, KVTC_CUDA_GEMM_FP32, 0.02);
        check_case("small exact tf32", kvtc_geometry{2, 2, 64, 0, KVTC_ROPE_NEOX, 10000.0f}, 3000, 3, 16,
                   KVTC_PCA_EXACT, 0, KVTC_CUDA_GEMM_TF32, 0.02);
        // randomized on the GPU (rank 256 of p = 2048) vs the CPU's exact PCA
        check_case("p2048 randomized fp32", kvtc_geometry{4, 4, 128, 0, KVTC_ROPE_NEOX, 10000.0f}, 4000, 3, 64,
                   KVTC_PCA_EXACT, 256, KVTC_CUDA_GEMM_FP32, 0.05);
        // the same against the CPU's randomized PCA (same rank, oversampling and iterations)
        check_case("p2048 randomized vs cpu randomized", kvtc_geometry{4, 4, 128, 0, KVTC_ROPE_NEOX, 10000.0f}, 4000, 3,
                   64, KVTC_PCA_RANDOMIZED, 256, KVTC_CUDA_GEMM_FP32, 0.01);
        printf("%s: %d failures\n", failures ? "FAILED" : "check passed", failures);
        return failures != 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "time")) {
        uint64_t n = strtoull(argv[2], NULL, 10);
        uint32_t rank = (uint32_t)atoi(argv[3]);
        kvtc_cuda_gemm mode = !strcmp(argv[4], "tf32") ? KVTC_CUDA_GEMM_TF32 : KVTC_CUDA_GEMM_FP32;
        uint32_t m = argc >= 6 ? (uint32_t)atoi(argv[5]) : 4096;
        time_case(n, rank, mode, m);
        return failures != 0;
    }
    fprintf(stderr, "usage: %s check | time N_TOKENS RANK fp32|tf32 [M_LATENT]\n", argv[0]);
    return 2;
}
