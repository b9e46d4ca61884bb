/* test_cuda_contracts.c - the CUDA backend's contracts from issue 9, on a
 * GPU (ctest skips it, exit 77, when no GPU is present):
 *  - kvtc_cuda_options_init's default ratio is the CPU's (20);
 *  - kvtc_cuda_codec_alloc / compress / decompress / free leave the caller's
 *    current device as they found it;
 *  - kvtc_cuda_workspace_size returns 0 for sizes that overflow, grows with
 *    the token count, and is never a wrapped small value;
 *  - hostile streams on the GPU decoder: every header byte, every chunk
 *    index field, bytes of every chunk (first, middle, last), with the CRCs
 *    recomputed so the field checks are reached, and the decompression
 *    bomb (all index entries on chunk 0): the decoder must return a
 *    kvtc_result or set *d_status for each, with no CUDA error (a sticky
 *    error = a crash or out-of-bounds access). Prints a summary for
 *    bench/RESULTS_CUDA.md.
 * Usage: test_cuda_contracts [--short]   (--short: fewer mutations, for
 * compute-sanitizer --tool memcheck). */
#include <cuda_runtime.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "kvtc_cuda.h"
#include "model/basis.h"
#include "synth.h"
#include "test.h"

#define N_TOK 600
#define CHUNK 64

static void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Recompute every CRC (chunks, sections, table, header) of a stream. */
static void resign_all(uint8_t *b, size_t n) {
    if (n < 272) return;
    uint64_t io = ld64(b + 128 + 4 * 24), is = ld64(b + 128 + 4 * 24 + 8);
    uint64_t dof = ld64(b + 128 + 5 * 24), ds = ld64(b + 128 + 5 * 24 + 8);
    if (io + is <= n && dof + ds <= n)
        for (uint64_t e = 0; e + 24 <= is; e += 24) {
            uint64_t off = ld64(b + io + e);
            uint32_t sz = ld32(b + io + e + 8);
            if (off <= ds && sz <= ds - off) st32(b + io + e + 12, (uint32_t)libdeflate_crc32(0, b + dof + off, sz));
        }
    for (int s = 0; s < 5; s++) {
        uint64_t off = ld64(b + 128 + 24 * s), sz = ld64(b + 128 + 24 * s + 8);
        if (off <= n && sz <= n - off) st32(b + 128 + 24 * s + 16, (uint32_t)libdeflate_crc32(0, b + off, (size_t)sz));
    }
    st32(b + 108, (uint32_t)libdeflate_crc32(0, b + 128, 6 * 24));
    st32(b + 124, (uint32_t)libdeflate_crc32(0, b, 124));
}

typedef struct gpu_ctx {
    kvtc_cuda_codec *cc;
    kvtc_geometry g;
    void *d_stream, *d_ws, *d_k, *d_v;
    size_t cap, ws;
    uint32_t *d_status;
    cudaStream_t st;
} gpu_ctx;

static long g_runs, g_rejected_host, g_rejected_device, g_accepted, g_cuda_errors;

/* Decode one (possibly hostile) stream on the GPU; classify the outcome. */
static void gpu_decode(gpu_ctx *x, const uint8_t *s, size_t n) {
    if (n > x->cap) return;
    g_runs++;
    cudaMemcpy(x->d_stream, s, n, cudaMemcpyHostToDevice);
    kvtc_cache out;
    memset(&out, 0, sizeof out);
    out.geometry = x->g;
    out.dtype = KVTC_DTYPE_F16;
    out.n_tokens = N_TOK;
    out.k = x->d_k;
    out.v = x->d_v;
    kvtc_result r = kvtc_cuda_decompress(x->cc, s, n < 4096 ? n : 4096, x->d_stream, n, &out, x->d_ws, x->ws,
                                         x->d_status, x->st);
    cudaError_t e = cudaStreamSynchronize(x->st);
    uint32_t status = 0;
    if (e == cudaSuccess) e = cudaMemcpy(&status, x->d_status, 4, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        g_cuda_errors++;
        fprintf(stderr, "CUDA error %s after a hostile stream\n", cudaGetErrorString(e));
        return;
    }
    if (r) g_rejected_host++;
    else if (status) g_rejected_device++;
    else g_accepted++;
}

int main(int argc, char **argv) {
    int short_run = argc > 1 && !strcmp(argv[1], "--short");
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("test_cuda_contracts: no CUDA device, skipped\n");
        return 77;
    }
    kvtc_cuda_options o;
    kvtc_cuda_options_init(&o);
    CHECK(o.ratio == 20.0 && o.profile == 0);

    gpu_ctx x;
    memset(&x, 0, sizeof x);
    x.g = synth_geometry(4, 2, 32, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &x.g, KVTC_DTYPE_F16, N_TOK);
    static const double ratios[2] = {8.0, 20.0};
    kvtc_basis *b = NULL;
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 2, &b) == KVTC_OK);
    if (!b) return TEST_REPORT();

    /* a weight with no fp32 reciprocal (the loader takes any finite w > 0;
     * the decoder multiplies by 1 / w): refused, not decoded to inf/NaN */
    for (int s = 0; s < 2; s++) {
        basis_stream *bs = s ? &b->v : &b->k;
        float keep = bs->weight[3];
        bs->weight[3] = 1e-39f;
        kvtc_cuda_codec *tiny = NULL;
        kvtc_result tr = kvtc_cuda_codec_alloc(b, &o, &tiny);
        CHECK_MSG(tr == KVTC_ERR_UNSUPPORTED && !tiny, "stream %d: weight 1e-39 gave %d", s, (int)tr);
        kvtc_cuda_codec_free(tiny);
        bs->weight[3] = keep;
    }

    /* the caller's device survives every entry point */
    int want_dev = n_dev - 1, caller = 0, now = -1;
    cudaSetDevice(caller);
    o.device = want_dev;
    CHECK(kvtc_cuda_codec_alloc(b, &o, &x.cc) == KVTC_OK);
    cudaGetDevice(&now);
    CHECK_MSG(now == caller, "codec_alloc left device %d current, caller had %d", now, caller);
    cudaSetDevice(want_dev); /* buffers on the codec's device */
    x.ws = kvtc_cuda_workspace_size(x.cc, N_TOK, CHUNK);
    CHECK(x.ws > 0);
    /* workspace: overflow gives 0, sizes grow */
    CHECK(kvtc_cuda_workspace_size(x.cc, UINT64_MAX, 0) == 0);
    CHECK(kvtc_cuda_workspace_size(x.cc, (uint64_t)1 << 40, 1) == 0 ||
          kvtc_cuda_workspace_size(x.cc, (uint64_t)1 << 40, 1) > ((size_t)1 << 40));
    CHECK(kvtc_cuda_workspace_size(x.cc, 2 * N_TOK, CHUNK) > x.ws);
    CHECK(kvtc_cuda_workspace_size(x.cc, N_TOK, 100000) == 0); /* chunk beyond the format */

    /* a valid stream from the CPU encoder (rANS, no token ids) */
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.entropy_codec = KVTC_CODEC_RANS;
    eo.chunk_tokens = CHUNK;
    eo.n_window = 32;
    uint8_t *s = NULL;
    size_t n = 0;
    CHECK(synth_compress(b, &eo, &sc.c, &s, &n) == KVTC_OK);
    x.cap = n + 4096;
    size_t tb = (size_t)kvtc_cache_tensor_bytes(&x.g, KVTC_DTYPE_F16, N_TOK);
    CHECK(cudaMalloc(&x.d_stream, x.cap) == cudaSuccess && cudaMalloc(&x.d_ws, x.ws) == cudaSuccess &&
          cudaMalloc(&x.d_k, tb) == cudaSuccess && cudaMalloc(&x.d_v, tb) == cudaSuccess &&
          cudaMalloc((void **)&x.d_status, 4) == cudaSuccess && cudaStreamCreate(&x.st) == cudaSuccess);
    cudaSetDevice(caller);
    gpu_decode(&x, s, n);
    cudaGetDevice(&now);
    CHECK_MSG(now == caller, "decompress left device %d current", now);
    CHECK_MSG(g_accepted == 1, "the valid stream was not accepted");
    cudaSetDevice(want_dev);

    /* mutations */
    uint8_t *m = malloc(n);
    long before = g_runs;
    int step = short_run ? 7 : 1;
    for (size_t i = 0; i < 124; i += (size_t)step) /* header bytes: bit flips, 0x00, 0xff */
        for (int k = 0; k < 3; k++) {
            memcpy(m, s, n);
            m[i] = k == 0 ? (uint8_t)(m[i] ^ 0x01) : k == 1 ? 0x00 : 0xff;
            resign_all(m, n);
            gpu_decode(&x, m, n);
        }
    uint64_t io = ld64(s + 128 + 4 * 24), is = ld64(s + 128 + 4 * 24 + 8);
    uint64_t dof = ld64(s + 128 + 5 * 24);
    for (uint64_t e = 0; e < is; e += 24) /* every index field: +1, 0, max */
        for (int f = 0; f < 5; f++)
            for (int k = 0; k < 3; k++) {
                static const int off[5] = {0, 8, 12, 16, 20};
                memcpy(m, s, n);
                uint8_t *p = m + io + e + off[f];
                if (f == 0) {
                    uint64_t v = ld64(p);
                    v = k == 0 ? v + 1 : k == 1 ? 0 : UINT64_MAX;
                    memcpy(p, &v, 8);
                } else {
                    uint32_t v = ld32(p);
                    st32(p, k == 0 ? v + 1 : k == 1 ? 0 : UINT32_MAX);
                }
                if (f != 2) resign_all(m, n); /* f == 2 is the chunk CRC itself */
                gpu_decode(&x, m, n);
            }
    for (uint64_t e = 0; e < is; e += 24) { /* chunk bytes: first, middle, last */
        uint64_t off = ld64(s + io + e);
        uint32_t sz = ld32(s + io + e + 8);
        uint64_t at[3] = {off, off + sz / 2, off + sz - 1};
        for (int k = 0; k < 3; k++)
            for (int bit = 0; bit < 8; bit += step > 1 ? 4 : 1) {
                memcpy(m, s, n);
                m[dof + at[k]] ^= (uint8_t)(1u << bit);
                resign_all(m, n);
                gpu_decode(&x, m, n);
            }
    }
    /* the decompression bomb: every entry on chunk 0 */
    memcpy(m, s, n);
    for (uint64_t e = 24; e < is; e += 24) memcpy(m + io + e, m + io, 16);
    resign_all(m, n);
    long dev_before = g_rejected_device + g_rejected_host;
    gpu_decode(&x, m, n);
    CHECK_MSG(g_rejected_device + g_rejected_host == dev_before + 1, "the bomb was accepted on the GPU");
    /* truncations at section boundaries */
    for (size_t cut = 0; cut < n; cut += short_run ? n / 5 + 1 : n / 40 + 1) gpu_decode(&x, s, cut);

    printf("RESULT GPU mutation run: %ld streams, %ld rejected on the host (kvtc_result), %ld rejected on the device "
           "(*d_status), %ld accepted, %ld CUDA errors\n",
           g_runs - before + 1, g_rejected_host, g_rejected_device, g_accepted - 1, g_cuda_errors);
    CHECK(g_cuda_errors == 0);

    free(m);
    free(s);
    synth_free(&sc);
    cudaFree(x.d_stream); cudaFree(x.d_ws); cudaFree(x.d_k); cudaFree(x.d_v); cudaFree(x.d_status);
    cudaStreamDestroy(x.st);
    cudaSetDevice(caller);
    kvtc_cuda_codec_free(x.cc);
    cudaGetDevice(&now);
    CHECK(now == caller);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
