/* test_cuda_streams.c - the CUDA decoder on CPU-encoded streams of issue 11
 * (GPU only: exits 77, reported as skipped by ctest, without a GPU):
 * - a stream with a stored plan decodes on the GPU (status 0) to within
 *   the GPU/CPU arithmetic difference of the CPU decode;
 * - a stream carrying a solved plan (a ratio the basis has no plan for,
 *   container 1.1 flag bit 2) is refused with KVTC_ERR_UNSUPPORTED before
 *   anything is enqueued, also when only the 272-byte 1.0 prefix is given.
 * Run on a GPU machine: cmake -S . -B build -DKVTC_CUDA=ON && cmake --build
 * build --target test_cuda_streams && (cd build && ctest -R test_cuda). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc_cuda.h"
#include "synth.h"
#include "test.h"

enum { N_TOK = 600 };

static uint8_t *encode_at(const kvtc_basis *b, const kvtc_cache *c, double ratio, size_t *n) {
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = ratio;
    eo.entropy_codec = KVTC_CODEC_RANS;
    eo.chunk_tokens = 128;
    uint8_t *s = NULL;
    return synth_compress(b, &eo, c, &s, n) == KVTC_OK ? s : NULL;
}

int main(void) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    kvtc_geometry g = synth_geometry(4, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    static const double ratios[] = {8, 32};
    kvtc_basis *b = NULL;
    synth_cache sc;
    if (synth_calibrate(&sp, 2, 4, 128, ratios, 2, &b) || synth_make(&sp, &sc)) return 1;
    size_t n_stored = 0, n_solved = 0;
    uint8_t *stored = encode_at(b, &sc.c, 8, &n_stored), *solved = encode_at(b, &sc.c, 16, &n_solved);
    CHECK(stored && solved);
    CHECK(solved && (solved[16] & 4) && !(stored[16] & 4));

    kvtc_cuda_codec *cc = NULL;
    CHECK(kvtc_cuda_codec_alloc(b, NULL, &cc) == KVTC_OK);
    size_t ws = kvtc_cuda_workspace_size(cc, N_TOK, 128);
    uint64_t kb = kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_F16, N_TOK);
    void *d_ws = NULL, *d_k = NULL, *d_v = NULL, *d_s = NULL;
    uint32_t *d_status = NULL;
    size_t max_n = n_stored > n_solved ? n_stored : n_solved;
    CHECK(cudaMalloc(&d_ws, ws) == cudaSuccess && cudaMalloc(&d_k, kb) == cudaSuccess &&
          cudaMalloc(&d_v, kb) == cudaSuccess && cudaMalloc(&d_s, max_n) == cudaSuccess &&
          cudaMalloc((void **)&d_status, 4) == cudaSuccess);
    kvtc_cache dc;
    memset(&dc, 0, sizeof dc);
    dc.geometry = g;
    dc.dtype = KVTC_DTYPE_F16;
    dc.n_tokens = N_TOK;
    dc.k = d_k;
    dc.v = d_v;

    /* solved plan: refused, with the full prefix or only 272 bytes */
    CHECK(cudaMemcpy(d_s, solved, n_solved, cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(kvtc_cuda_decompress(cc, solved, n_solved, d_s, n_solved, &dc, d_ws, ws, d_status, 0) ==
          KVTC_ERR_UNSUPPORTED);
    CHECK(kvtc_cuda_decompress(cc, solved, 272, d_s, n_solved, &dc, d_ws, ws, d_status, 0) == KVTC_ERR_UNSUPPORTED);

    /* stored plan: decodes; compare with the CPU decode */
    CHECK(cudaMemcpy(d_s, stored, n_stored, cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(kvtc_cuda_decompress(cc, stored, n_stored, d_s, n_stored, &dc, d_ws, ws, d_status, 0) == KVTC_OK);
    uint32_t status = 1;
    CHECK(cudaMemcpy(&status, d_status, 4, cudaMemcpyDeviceToHost) == cudaSuccess && status == 0);
    kvtc_cache cpu;
    synth_alloc_like(&g, KVTC_DTYPE_F16, N_TOK, 0, &cpu);
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK && kvtc_decompress(d, stored, n_stored, &cpu) == KVTC_OK);
    kvtc_cache gpu;
    synth_alloc_like(&g, KVTC_DTYPE_F16, N_TOK, 0, &gpu);
    CHECK(cudaMemcpy(gpu.k, d_k, kb, cudaMemcpyDeviceToHost) == cudaSuccess &&
          cudaMemcpy(gpu.v, d_v, kb, cudaMemcpyDeviceToHost) == cudaSuccess);
    double err = 0, energy = 0;
    for (uint64_t t = 0; t < N_TOK; t++) {
        err += synth_token_sqerr(&cpu, &gpu, 1, t) + synth_token_sqerr(&cpu, &gpu, 0, t);
        energy += synth_token_sqerr(&sc.c, &cpu, 1, t) + synth_token_sqerr(&sc.c, &cpu, 0, t);
    }
    printf("GPU vs CPU decode: squared difference %.4g (CPU decode error %.4g)\n", err, energy);
    CHECK(err <= 0.05 * energy + 1e-6);
    kvtc_decoder_free(d);
    synth_cache_free(&cpu);
    synth_cache_free(&gpu);
    cudaFree(d_ws); cudaFree(d_k); cudaFree(d_v); cudaFree(d_s); cudaFree(d_status);
    kvtc_cuda_codec_free(cc);
    free(stored); free(solved);
    synth_free(&sc);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
