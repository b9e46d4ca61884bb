/* test_cuda_host.c - the CUDA backend's host-side contracts that need no
 * GPU (it runs, not skips, on a machine without one):
 * - kvtc_cuda_last_error: NULL codec -> empty message, length 0; buf may be
 *   NULL with len 0; a too-small buffer is truncated and NUL-terminated;
 * - kvtc_cuda_options_init: the 0.2 fields default to none (no model
 *   fingerprint, no recompute hook), the 0.3 projection to the default;
 * - kvtc_cuda_codec_alloc: NULL arguments, a struct_size that is neither
 *   this header's nor 0.1's nor 0.2's, an unknown projection and FP8 with a
 *   gemm other than bf16 are KVTC_ERR_INVALID_ARGUMENT before any CUDA
 *   call; 0.1's and 0.2's struct_size are accepted (they then fail, without
 *   a GPU, on the device, not on the argument);
 * - the GPU entry points refuse NULL arguments. */
#include <stddef.h>
#include <string.h>

#include "kvtc_cuda.h"
#include "synth.h"
#include "test.h"

int main(void) {
    char buf[8];
    memset(buf, 'x', sizeof buf);
    CHECK(kvtc_cuda_last_error(NULL, buf, sizeof buf) == 0 && buf[0] == 0);
    CHECK(kvtc_cuda_last_error(NULL, NULL, 0) == 0);

    kvtc_cuda_options o;
    kvtc_cuda_options_init(&o);
    CHECK(o.struct_size == sizeof o && o.ratio == 20.0 && o.model_fingerprint == 0 && o.recompute == NULL &&
          o.recompute_user == NULL && o.projection == KVTC_CUDA_PROJ_DEFAULT);

    kvtc_geometry g = synth_geometry(2, 2, 16, KVTC_ROPE_NONE, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 300);
    static const double ratios[] = {8};
    kvtc_basis *b = NULL;
    CHECK(synth_calibrate(&sp, 1, 4, 16, ratios, 1, &b) == KVTC_OK);
    if (!b) return TEST_REPORT();
    kvtc_cuda_codec *cc = (kvtc_cuda_codec *)&o; /* must be reset to NULL on failure */
    CHECK(kvtc_cuda_codec_alloc(NULL, &o, &cc) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_codec_alloc(b, &o, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    o.struct_size = sizeof o + 8;
    CHECK(kvtc_cuda_codec_alloc(b, &o, &cc) == KVTC_ERR_INVALID_ARGUMENT && cc == NULL);
    o.struct_size = offsetof(kvtc_cuda_options, model_fingerprint) + 4;
    CHECK(kvtc_cuda_codec_alloc(b, &o, &cc) == KVTC_ERR_INVALID_ARGUMENT);
    o.struct_size = offsetof(kvtc_cuda_options, model_fingerprint); /* a 0.1 caller */
    kvtc_result r = kvtc_cuda_codec_alloc(b, &o, &cc);
    CHECK_MSG(r != KVTC_ERR_INVALID_ARGUMENT, "0.1 options refused: %s", kvtc_result_string(r));
    if (r == KVTC_OK) { /* a GPU is present */
        char msg[64];
        CHECK(kvtc_cuda_last_error(cc, msg, sizeof msg) == 0 && msg[0] == 0);
        kvtc_cuda_codec_free(cc);
    }
    o.struct_size = offsetof(kvtc_cuda_options, projection); /* a 0.2 caller */
    o.projection = (kvtc_cuda_projection)7;                  /* beyond its struct: never read */
    cc = NULL;
    r = kvtc_cuda_codec_alloc(b, &o, &cc);
    CHECK_MSG(r != KVTC_ERR_INVALID_ARGUMENT, "0.2 options refused: %s", kvtc_result_string(r));
    kvtc_cuda_codec_free(cc);
    kvtc_cuda_options_init(&o);
    o.projection = KVTC_CUDA_PROJ_FP8_FAST_ACCUM; /* fast accumulation of no FP8 GEMM */
    CHECK(kvtc_cuda_codec_alloc(b, &o, &cc) == KVTC_ERR_INVALID_ARGUMENT);
    o.projection = (kvtc_cuda_projection)8;
    CHECK(kvtc_cuda_codec_alloc(b, &o, &cc) == KVTC_ERR_INVALID_ARGUMENT);
    o.projection = (kvtc_cuda_projection)(KVTC_CUDA_PROJ_FP8_ENCODE | KVTC_CUDA_PROJ_FP8_FAST_ACCUM);
    cc = NULL;
    r = kvtc_cuda_codec_alloc(b, &o, &cc);
    CHECK_MSG(r != KVTC_ERR_INVALID_ARGUMENT, "FP8 with fast accumulation refused");
    kvtc_cuda_codec_free(cc);
    /* every bit combination x every gemm: valid iff only DECODE / ENCODE /
     * FAST_ACCUM bits, FAST_ACCUM with DECODE or ENCODE, and any FP8 bit only
     * with gemm BF16 (the header's rule); a valid one may still fail later
     * (no GPU, no FP8 tensor cores), never as an invalid argument */
    for (int gm = KVTC_CUDA_GEMM_BF16; gm <= KVTC_CUDA_GEMM_FP32; gm++)
        for (int pr = -1; pr < 16; pr++) {
            kvtc_cuda_options_init(&o);
            o.gemm = (kvtc_cuda_gemm)gm;
            o.projection = (kvtc_cuda_projection)pr;
            int valid = pr >= 0 && pr <= 7 && pr != KVTC_CUDA_PROJ_FP8_FAST_ACCUM &&
                        (pr == KVTC_CUDA_PROJ_DEFAULT || gm == KVTC_CUDA_GEMM_BF16);
            cc = NULL;
            r = kvtc_cuda_codec_alloc(b, &o, &cc);
            CHECK_MSG(valid ? r != KVTC_ERR_INVALID_ARGUMENT : r == KVTC_ERR_INVALID_ARGUMENT && cc == NULL,
                      "gemm %d, projection %d: %s", gm, pr, kvtc_result_string(r));
            kvtc_cuda_codec_free(cc);
        }
    kvtc_cuda_options_init(&o);
    o.projection = KVTC_CUDA_PROJ_FP8;
    o.gemm = KVTC_CUDA_GEMM_TF32; /* FP8 operands replace bf16 ones only */
    CHECK(kvtc_cuda_codec_alloc(b, &o, &cc) == KVTC_ERR_INVALID_ARGUMENT);
    o.projection = KVTC_CUDA_PROJ_FP8_ENCODE;
    o.gemm = KVTC_CUDA_GEMM_FP32;
    CHECK(kvtc_cuda_codec_alloc(b, &o, &cc) == KVTC_ERR_INVALID_ARGUMENT);

    /* NULL arguments everywhere, before anything touches a device */
    CHECK(kvtc_cuda_compress(NULL, NULL, NULL, 0, NULL, NULL, 0, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_decompress(NULL, NULL, 0, NULL, 0, NULL, NULL, 0, NULL, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_compress_layout(NULL, NULL, NULL, 0, NULL, NULL, 0, NULL, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_decompress_layout(NULL, NULL, 0, NULL, 0, NULL, NULL, NULL, 0, NULL, 0) ==
          KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_hold(NULL, NULL, 0, NULL, 0, NULL, 0, NULL, 0) == KVTC_ERR_INVALID_ARGUMENT);
    size_t ws = 1;
    CHECK(kvtc_cuda_stream_workspace_size(NULL, NULL, 0, &ws) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_compress_layout_bound(NULL, NULL) == 0 && kvtc_cuda_workspace_size(NULL, 1, 0) == 0);
    kvtc_cuda_release(NULL);
    kvtc_cuda_codec_free(NULL);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
