/* test_cuda_streams.c - the CUDA backend on the streams of issue 11, both
 * directions (GPU only: exits 77, reported as skipped by ctest, without a
 * GPU):
 * - CPU streams with a stored plan and with a solved plan (a ratio the
 *   basis has no plan for: container 1.1 flag bit 2) decode on the GPU
 *   (status 0) to within the GPU/CPU arithmetic difference of the CPU
 *   decode; the solved-plan stream needs its plan section in the host
 *   prefix the first time (KVTC_ERR_TRUNCATED with only the header and
 *   table, 296 bytes), and only the header and table once the codec holds
 *   the plan; a 272-byte prefix is too short for its section table;
 * - the GPU encoder at a stored ratio writes no plan section, at another
 *   ratio it solves the plan like the CPU (same plan fingerprint as the
 *   CPU encoder's stream) and carries it; the CPU decodes both with the
 *   error of the CPU path.
 * Run on a GPU machine: (cd build && ctest -R test_cuda). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

enum { N_TOK = 600 };

static uint8_t *cpu_encode_at(const kvtc_basis *b, const kvtc_cache *c, double ratio, size_t *n) {
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = ratio;
    eo.entropy_codec = KVTC_CODEC_RANS;
    uint8_t *s = NULL;
    return synth_compress(b, &eo, c, &s, n) == KVTC_OK ? s : NULL;
}


static uint64_t plan_fp(const uint8_t *s, size_t n) {
    container_header h;
    return container_read_prefix_only(s, n, &h) == KVTC_OK ? h.plan_fingerprint : 0;
}

int main(void) {
    gpu_test_require_device();
    kvtc_geometry g = synth_geometry(4, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    static const double ratios[] = {8, 32};
    kvtc_basis *b = NULL;
    synth_cache sc;
    if (synth_calibrate(&sp, 2, 4, 128, ratios, 2, &b) || synth_make(&sp, &sc)) return 1;
    size_t n_stored = 0, n_solved = 0;
    uint8_t *stored = cpu_encode_at(b, &sc.c, 8, &n_stored), *solved = cpu_encode_at(b, &sc.c, 16, &n_solved);
    CHECK(stored && solved);
    if (!stored || !solved) return TEST_REPORT();
    CHECK((solved[16] & 4) && !(stored[16] & 4));

    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
    kvtc_cache cpu, gpu;
    synth_alloc_like(&g, KVTC_DTYPE_F16, N_TOK, 0, &cpu);
    synth_alloc_like(&g, KVTC_DTYPE_F16, N_TOK, 0, &gpu);

    /* GPU decode of CPU streams (the codec's own ratio is irrelevant to decoding) */
    kvtc_cuda_options co;
    kvtc_cuda_options_init(&co);
    co.ratio = 8;
    kvtc_cuda_codec *cc = NULL;
    CHECK(kvtc_cuda_codec_alloc(b, &co, &cc) == KVTC_OK);
    const uint8_t *streams[2] = {stored, solved};
    size_t sizes[2] = {n_stored, n_solved};
    for (int i = 0; i < 2; i++) {
        if (i == 1) {
            /* the plan section is not in these prefixes: refused before anything is enqueued */
            size_t ws = 0;
            CHECK(kvtc_cuda_stream_workspace_size(cc, solved, 296, &ws) == KVTC_ERR_TRUNCATED);
            CHECK(gpu_test_decode(cc, solved, n_solved, 272, &gpu) == KVTC_ERR_TRUNCATED);
            CHECK(gpu_test_decode(cc, solved, n_solved, 296, &gpu) == KVTC_ERR_TRUNCATED);
        }
        CHECK(kvtc_decompress(d, streams[i], sizes[i], &cpu) == KVTC_OK);
        kvtc_result r = gpu_test_decode(cc, streams[i], sizes[i], sizes[i], &gpu);
        CHECK_MSG(r == KVTC_OK, "stream %d: %s", i, kvtc_result_string(r));
        double err = synth_sqerr(&cpu, &gpu), energy = synth_sqerr(&sc.c, &cpu);
        printf("%s plan: GPU vs CPU decode: squared difference %.4g (CPU decode error %.4g)\n", i ? "solved" : "stored",
               err, energy);
        CHECK(err <= 0.05 * energy + 1e-6);
    }
    /* the codec now holds the solved plan: the header and table suffice */
    memset(gpu.k, 0, kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_F16, N_TOK));
    CHECK(gpu_test_decode(cc, solved, n_solved, 296, &gpu) == KVTC_OK);
    CHECK(kvtc_decompress(d, solved, n_solved, &cpu) == KVTC_OK);
    CHECK(synth_sqerr(&cpu, &gpu) <= 0.05 * synth_sqerr(&sc.c, &cpu) + 1e-6);
    kvtc_cuda_codec_free(cc);

    /* GPU encoder at a stored ratio and at a solved one; CPU decode */
    const double gpu_ratios[2] = {8, 16};
    for (int i = 0; i < 2; i++) {
        co.ratio = gpu_ratios[i];
        cc = NULL;
        CHECK(kvtc_cuda_codec_alloc(b, &co, &cc) == KVTC_OK);
        if (!cc) break;
        size_t n = 0;
        kvtc_result r;
        uint8_t *gs = gpu_test_encode(cc, &sc.c, &n, &r);
        CHECK_MSG(gs != NULL, "GPU encode at %g: %s", gpu_ratios[i], kvtc_result_string(r));
        if (gs) {
            CHECK(((gs[16] & 4) != 0) == (i == 1));
            CHECK(plan_fp(gs, n) == plan_fp(streams[i], sizes[i]));
            CHECK(kvtc_decompress(d, gs, n, &gpu) == KVTC_OK);
            CHECK(kvtc_decompress(d, streams[i], sizes[i], &cpu) == KVTC_OK);
            double eg = synth_sqerr(&sc.c, &gpu), ec = synth_sqerr(&sc.c, &cpu);
            printf("GPU encode at %gx: %zu bytes (CPU %zu); CPU-decoded error %.4g (CPU stream %.4g)\n",
                   gpu_ratios[i], n, sizes[i], eg, ec);
            CHECK(eg <= 1.05 * ec + 1e-6);
            uint32_t nch = 0;
            CHECK(gpu_test_rans_identical(gs, n, b, &nch) && nch > 0);
            free(gs);
        }
        kvtc_cuda_codec_free(cc);
    }
    kvtc_decoder_free(d);
    synth_cache_free(&cpu);
    synth_cache_free(&gpu);
    free(stored);
    free(solved);
    synth_free(&sc);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
