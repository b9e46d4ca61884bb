/* test_cuda_rans_identity.c - the CPU<->GPU byte-identity promise of
 * include/kvtc_cuda.h, as a ctest (it used to live only in
 * bench/cuda/bench_cuda.cu `check`): for streams the GPU encodes (bf16 and
 * f16 caches, each GEMM mode, several chunks with a short last one), every
 * chunk re-encoded by the CPU's rans_encode from its decoded payload gives
 * the same bytes, and the CPU decodes the stream. Exits 77 (skipped)
 * without a GPU. */
#include <stdint.h>
#include <stdlib.h>

#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

int main(void) {
    gpu_test_require_device();
    static const double ratios[] = {8, 20};
    const kvtc_dtype dts[2] = {KVTC_DTYPE_BF16, KVTC_DTYPE_F16};
    const kvtc_cuda_gemm modes[3] = {KVTC_CUDA_GEMM_BF16, KVTC_CUDA_GEMM_TF32, KVTC_CUDA_GEMM_FP32};
    for (int di = 0; di < 2; di++) {
        kvtc_geometry g = synth_geometry(4, 4, 128, KVTC_ROPE_NEOX, 0, 1e6f);
        synth_params sp;
        synth_params_init(&sp, &g, dts[di], 1500);
        kvtc_basis *b = NULL;
        synth_cache sc;
        if (synth_calibrate(&sp, 2, 4, 128, ratios, 2, &b) || synth_make(&sp, &sc)) return 1;
        kvtc_decoder *d = NULL;
        CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
        kvtc_cache out;
        synth_alloc_like(&g, dts[di], 1500, 0, &out);
        for (int mi = 0; mi < 3; mi++) {
            for (int ri = 0; ri < 3; ri++) { /* a stored plan, the other stored plan, a solved one */
                kvtc_cuda_options co;
                kvtc_cuda_options_init(&co);
                co.gemm = modes[mi];
                co.ratio = ri == 2 ? 12.0 : ratios[ri];
                co.chunk_tokens = 256;
                kvtc_cuda_codec *cc = NULL;
                CHECK(kvtc_cuda_codec_alloc(b, &co, &cc) == KVTC_OK);
                if (!cc) continue;
                size_t n = 0;
                kvtc_result r;
                uint8_t *s = gpu_test_encode(cc, &sc.c, &n, &r);
                CHECK_MSG(s != NULL, "encode: %s", kvtc_result_string(r));
                uint32_t nch = 0;
                int same = s ? gpu_test_rans_identical(s, n, b, &nch) : 0;
                printf("dtype %d gemm %d ratio %g: %zu bytes, %u chunks, rANS byte-identical to the CPU: %s\n",
                       (int)dts[di], (int)modes[mi], co.ratio, n, nch, same ? "yes" : "NO");
                CHECK(same && nch == 6); /* 1500 - 4 sink - 128 window = 1368 coded tokens: 5 full chunks + 88 */
                CHECK(s && kvtc_decompress(d, s, n, &out) == KVTC_OK);
                free(s);
                kvtc_cuda_codec_free(cc);
            }
        }
        synth_cache_free(&out);
        kvtc_decoder_free(d);
        synth_free(&sc);
        kvtc_basis_free(b);
    }
    return TEST_REPORT();
}
