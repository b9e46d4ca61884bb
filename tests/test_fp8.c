/* test_fp8.c - e4m3 conversions (transform/fp8.h), the FP8 basis operand,
 * and the emulated GPU projection arithmetic of the CPU codec
 * (cpu/proj_emul.h) that `kvtc eval --emulate-gpu` measures with. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/proj_emul.h"
#include "model/basis.h"
#include "synth.h"
#include "test.h"
#include "transform/fp8.h"

static void test_known_values(void) {
    CHECK(kvi_f32_to_e4m3(0.0f) == 0x00);
    CHECK(kvi_f32_to_e4m3(-0.0f) == 0x80);
    CHECK(kvi_f32_to_e4m3(1.0f) == 0x38);
    CHECK(kvi_f32_to_e4m3(-2.0f) == 0xc0);
    CHECK(kvi_f32_to_e4m3(240.0f) == 0x77);      /* 1.875 * 2^7 */
    CHECK(kvi_f32_to_e4m3(448.0f) == 0x7e);      /* largest finite */
    /* saturation: beyond 448, and infinities, give +-448 (never NaN) */
    CHECK(kvi_f32_to_e4m3(464.0f) == 0x7e);
    CHECK(kvi_f32_to_e4m3(1e30f) == 0x7e);
    CHECK(kvi_f32_to_e4m3(INFINITY) == 0x7e);
    CHECK(kvi_f32_to_e4m3(-INFINITY) == 0xfe);
    /* NaN stays NaN (S.1111.111), with its sign */
    CHECK(kvi_f32_to_e4m3(NAN) == 0x7f);
    CHECK(kvi_f32_to_e4m3(-NAN) == 0xff);
    CHECK(isnan(kvi_e4m3_to_f32(0x7f)) && isnan(kvi_e4m3_to_f32(0xff)));
    /* subnormals: k * 2^-9 */
    CHECK(kvi_f32_to_e4m3(0x1p-9f) == 0x01);
    CHECK(kvi_f32_to_e4m3(7 * 0x1p-9f) == 0x07);
    CHECK(kvi_f32_to_e4m3(0x1p-6f) == 0x08);     /* smallest normal */
    CHECK(kvi_e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(kvi_e4m3_to_f32(0x86) == -6 * 0x1p-9f);
    CHECK(kvi_f32_to_e4m3(0x1p-10f) == 0x00);    /* tie between 0 and 2^-9: even */
    CHECK(kvi_f32_to_e4m3(0x1.01p-10f) == 0x01); /* just above the tie */
    CHECK(kvi_f32_to_e4m3(3 * 0x1p-10f) == 0x02); /* tie between 1 and 2 units: even */
    CHECK(kvi_f32_to_e4m3(0x1p-20f) == 0x00);
    CHECK(kvi_f32_to_e4m3(1e-45f) == 0x00);      /* float subnormal */
    CHECK(kvi_f32_to_e4m3(15.5f * 0x1p-9f) == 0x10); /* 1.9375 * 2^-6: tie, to 2^-5 */
    /* ties in the normal range: to the even mantissa */
    CHECK(kvi_f32_to_e4m3(1.0625f) == 0x38);     /* between 1 and 1.125 */
    CHECK(kvi_f32_to_e4m3(1.1875f) == 0x3a);     /* between 1.125 and 1.25 */
    CHECK(kvi_f32_to_e4m3(1.9375f) == 0x40);     /* between 1.875 and 2: carries into the exponent */
    CHECK(kvi_e4m3_to_f32(0x7e) == 448.0f && kvi_e4m3_to_f32(0xfe) == -448.0f);
}

/* Every finite code decodes to a value that encodes back to it, the values
 * increase with the code, and points between two neighbours round to the
 * nearer one (the midpoint to the even code). */
static void test_all_codes(void) {
    int bad_rt = 0, bad_order = 0, bad_mid = 0;
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) continue;
        if (kvi_f32_to_e4m3(kvi_e4m3_to_f32((uint8_t)c)) != c) bad_rt++;
    }
    for (int c = 0; c < 0x7e; c++) {
        float a = kvi_e4m3_to_f32((uint8_t)c), b = kvi_e4m3_to_f32((uint8_t)(c + 1));
        if (!(a < b)) bad_order++;
        float mid = (a + b) / 2; /* exact: neighbours differ in their last bits only */
        uint8_t even = (c & 1) ? (uint8_t)(c + 1) : (uint8_t)c;
        if (kvi_f32_to_e4m3(mid) != even) bad_mid++;
        if (kvi_f32_to_e4m3(nextafterf(mid, 0.0f)) != c) bad_mid++;
        if (kvi_f32_to_e4m3(nextafterf(mid, 1e9f)) != c + 1) bad_mid++;
        if (kvi_f32_to_e4m3(-mid) != (uint8_t)(0x80 | even)) bad_mid++;
    }
    CHECK_MSG(bad_rt == 0, "%d codes do not round-trip", bad_rt);
    CHECK_MSG(bad_order == 0, "%d codes out of order", bad_order);
    CHECK_MSG(bad_mid == 0, "%d midpoints rounded wrong", bad_mid);
}

/* The transposed basis operand of the decoder: one per-tensor scale that
 * maps the largest folded entry to 448, entries within half an e4m3 step of
 * f_j B[j][i], zero padding past the rank. The encoder's (untransposed,
 * unfolded) likewise. */
static void test_basis_operand(const kvtc_basis *b) {
    const basis_stream *s = &b->k;
    uint32_t r = s->rank < 24 ? s->rank : 24, ld = r + 8;
    uint8_t *bt = malloc((size_t)s->p * ld);
    float scale = 0;
    kvi_fp8_basis_t(s, r, ld, bt, &scale);
    int n448 = 0, bad = 0, pad = 0;
    for (uint32_t i = 0; i < s->p; i++) {
        for (uint32_t j = 0; j < r; j++) {
            float want = kvi_fp8_fold(s, j) * s->basis[(size_t)j * s->p + i] / scale;
            float got = kvi_e4m3_to_f32(bt[(size_t)i * ld + j]);
            if (fabsf(got) == 448.0f) n448++;
            /* half a step: 2^-4 relative for normals, 2^-10 absolute below 2^-6 */
            if (fabsf(got - want) > fmaxf(fabsf(want) * 0x1p-4f, 0x1p-10f)) bad++;
        }
        for (uint32_t j = r; j < ld; j++) pad += bt[(size_t)i * ld + j] != 0;
    }
    CHECK(scale > 0 && n448 >= 1);
    CHECK_MSG(bad == 0, "%d operand entries beyond half an e4m3 step", bad);
    CHECK(pad == 0);
    /* the encoder's operand: the rows themselves, one per-tensor scale */
    uint8_t *b8 = malloc((size_t)r * s->p);
    float sc8 = 0;
    kvi_fp8_basis_rows(s, r, b8, &sc8);
    int n448e = 0, bade = 0;
    for (size_t i = 0; i < (size_t)r * s->p; i++) {
        float want = s->basis[i] / sc8, got = kvi_e4m3_to_f32(b8[i]);
        if (fabsf(got) == 448.0f) n448e++;
        if (fabsf(got - want) > fmaxf(fabsf(want) * 0x1p-4f, 0x1p-10f)) bade++;
    }
    CHECK(sc8 > 0 && n448e >= 1);
    CHECK_MSG(bade == 0, "%d row-operand entries beyond half an e4m3 step", bade);
    free(b8);
    /* the fold is sqrt(eigenvalue), or 1 for a component without one */
    CHECK(fabsf(kvi_fp8_fold(s, 0) - sqrtf(s->eigenvalues[0])) <= 1e-6f * kvi_fp8_fold(s, 0));
    free(bt);
}

enum { N_TOK = 400, SINK = 4, WIN = 16 };

/* Decode `stream` with the decoder's projection arithmetic `mode`. */
static kvtc_result decode_mode(const kvtc_basis *b, kvi_proj_mode mode, const uint8_t *s, size_t n, kvtc_cache *out) {
    kvtc_decoder *d = NULL;
    kvtc_result r = kvtc_decoder_alloc(b, NULL, &d);
    if (!r) r = kvi_decoder_emulate_projection(d, mode);
    if (!r) r = kvtc_decompress(d, s, n, out);
    kvtc_decoder_free(d);
    return r;
}

/* The emulated decoder changes the values by about the operand precision:
 * bf16 less than e4m3, e4m3 by a few percent (rms) of what the PCA codes
 * (half an e4m3 step is 2^-5..2^-4 relative, about 3.6% rms per operand at
 * worst, errors of the terms of a dot product add incoherently); switching
 * back to exact gives the exact decoder's bytes. Encoder likewise. */
static void test_emulated_codec(const kvtc_basis *b, const synth_cache *src) {
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 8;
    eo.n_sink = SINK;
    eo.n_window = WIN;
    uint8_t *s = NULL;
    size_t n = 0;
    CHECK(synth_compress(b, &eo, &src->c, &s, &n) == KVTC_OK);
    kvtc_cache exact, bf, f8, back;
    synth_alloc_like(&src->c.geometry, src->c.dtype, N_TOK, 0, &exact);
    synth_alloc_like(&src->c.geometry, src->c.dtype, N_TOK, 0, &bf);
    synth_alloc_like(&src->c.geometry, src->c.dtype, N_TOK, 0, &f8);
    synth_alloc_like(&src->c.geometry, src->c.dtype, N_TOK, 0, &back);
    CHECK(decode_mode(b, KVI_PROJ_EXACT, s, n, &exact) == KVTC_OK);
    CHECK(decode_mode(b, KVI_PROJ_BF16, s, n, &bf) == KVTC_OK);
    CHECK(decode_mode(b, KVI_PROJ_FP8, s, n, &f8) == KVTC_OK);
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
    CHECK(kvi_decoder_emulate_projection(d, KVI_PROJ_FP8) == KVTC_OK);
    CHECK(kvi_decoder_emulate_projection(d, (kvi_proj_mode)3) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvi_decoder_emulate_projection(d, KVI_PROJ_EXACT) == KVTC_OK);
    CHECK(kvtc_decompress(d, s, n, &back) == KVTC_OK);
    kvtc_decoder_free(d);
    CHECK(kvi_decoder_emulate_projection(NULL, KVI_PROJ_FP8) == KVTC_ERR_INVALID_ARGUMENT);
    double codec = synth_sqerr(&src->c, &exact), e_bf = synth_sqerr(&exact, &bf), e_f8 = synth_sqerr(&exact, &f8);
    double energy = synth_centered_energy(&src->c);
    printf("decode squared error: centered energy %.4g, codec %.4g, bf16 vs exact %.4g, fp8 vs exact %.4g (rms %.2f%%)\n",
           energy, codec, e_bf, e_f8, 100 * sqrt(e_f8 / energy));
    CHECK(synth_sqerr(&exact, &back) == 0.0);
    CHECK(e_bf > 0 && e_f8 > e_bf);
    CHECK(e_f8 > 1e-5 * energy && e_f8 < 0.05 * 0.05 * energy);
    /* the encoder: another stream, same format, decodable, close */
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_OK);
    CHECK(kvi_encoder_emulate_projection(e, KVI_PROJ_FP8) == KVTC_OK);
    size_t cap = kvtc_compress_bound(e, &src->c), w = 0;
    uint8_t *s8 = malloc(cap);
    CHECK(kvtc_compress(e, &src->c, s8, cap, &w) == KVTC_OK);
    kvtc_encoder_free(e);
    CHECK(decode_mode(b, KVI_PROJ_EXACT, s8, w, &back) == KVTC_OK);
    double e_enc = synth_sqerr(&src->c, &back);
    printf("encode squared error: exact %.4g, fp8 %.4g\n", codec, e_enc);
    CHECK(e_enc != codec && e_enc < codec + 0.05 * 0.05 * energy);
    free(s8);
    free(s);
    synth_cache_free(&exact);
    synth_cache_free(&bf);
    synth_cache_free(&f8);
    synth_cache_free(&back);
}

int main(void) {
    test_known_values();
    test_all_codes();
    kvtc_geometry g = synth_geometry(4, 2, 32, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    sp.rank = 24;
    double ratios[] = {8, 16};
    kvtc_basis *b = NULL;
    synth_cache src;
    if (synth_calibrate(&sp, 3, SINK, WIN, ratios, 2, &b) != KVTC_OK || synth_make(&sp, &src)) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    test_basis_operand(b);
    test_emulated_codec(b, &src);
    kvtc_basis_free(b);
    synth_free(&src);
    return TEST_REPORT();
}
