/* test_simd_paths.c - the AVX2 quantizer (lib/quant/group_quant_avx2.c) and
 * RoPE rotation (lib/transform/rope_avx2.c) against their scalar references:
 * identical payload bytes and bit-identical decodes on random plans and
 * data and on adversarial values (code ties at .5, fp16 extremes that pass
 * the range check, fp32 and fp16 denormals, signed zeros, constant groups),
 * the same range-check answers with NaN, infinities and out-of-range values,
 * groups the kernels must leave to the scalar path (sizes not a multiple of
 * 8, codes that do not start on a byte), corrupt parameters; then whole
 * streams and decodes through the public API: KVTC_SIMD=scalar on 1 thread
 * against the default path on 2 threads, with OpenBLAS single-threaded so
 * that the projection GEMMs are split in row blocks over the threads
 * (lib/transform/project_split.c). On a CPU without AVX2 both sides run the
 * scalar code and the test says so. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/basis.h"
#include "quant/group_quant.h"
#include "quant/group_quant_kernels.h"
#include "synth.h"
#include "test.h"
#include "transform/rope.h"
#include "transform/rope_kernels.h"
#include "util/cache.h"
#include "util/cpu_features.h"

/* ---- quantizer ------------------------------------------------------------ */

/* Value classes of the data generator. */
enum { DATA_GAUSS, DATA_TIES, DATA_EXTREME, DATA_DENORMAL, DATA_ZEROS, DATA_CONST, DATA_MIXED, DATA_KINDS };

/* One coordinate of token t, column j, of the given class. Ties: integers
 * and half-integers on a grid whose step is a power of two, so that
 * (x - shift) / scale lands exactly on k + .5 for many codes. */
static float data_value(synth_rng *r, int kind, uint32_t j) {
    switch (kind) {
    case DATA_TIES: return 0.25f * (float)(synth_next(r) % 64) - 4.0f;
    case DATA_EXTREME: {
        /* within fp16's range and with (max - min) / levels finite */
        static const float ext[] = {65504.0f, -65504.0f, 32752.0f, -32752.0f, 65519.0f * 0.5f, 1e-3f, 0.0f};
        return ext[synth_next(r) % 7] * ((synth_next(r) & 1) ? 0.5f : 0.25f);
    }
    case DATA_DENORMAL: {
        static const float den[] = {1e-40f, -1e-40f, 1.4e-45f, 5.96e-8f, -5.96e-8f, 6.1e-5f, 2.98e-8f, 0.0f, -0.0f};
        return den[synth_next(r) % 9];
    }
    case DATA_ZEROS: return (synth_next(r) & 1) ? 0.0f : -0.0f;
    case DATA_CONST: return 1.0f / 3.0f;
    case DATA_MIXED: return (j % 5 == 0) ? ((synth_next(r) & 1) ? -0.0f : 0.0f) : (float)synth_gauss(r);
    default: return (float)(synth_gauss(r) * ldexp(1.0, (int)(synth_next(r) % 12) - 6));
    }
}

/* A plan of quantized groups of the DP's sizes and every bit width, raw fp16
 * groups (no codes: alignment unchanged), and optionally one group of 12
 * coordinates at 3 bits (36 code bits: the groups after it start mid-byte
 * and must take the scalar path). */
static void make_plan(synth_rng *r, int odd_group, plan_stream *ps) {
    static const uint32_t sizes[] = {16, 64, 256};
    memset(ps, 0, sizeof *ps);
    ps->groups = calloc(24, sizeof(dp_group));
    uint32_t n = 4 + (uint32_t)(synth_next(r) % 12);
    for (uint32_t i = 0; i < n; i++) {
        dp_group *g = &ps->groups[ps->n_groups++];
        if (odd_group && i == n / 2) {
            g->size = 12;
            g->bits = 3;
        } else if (synth_next(r) % 6 == 0) {
            g->size = 1 + (uint32_t)(synth_next(r) % 3);
            g->bits = DP_RAW_BITS;
        } else {
            g->size = sizes[synth_next(r) % 3];
            g->bits = (uint8_t)(1 + synth_next(r) % DP_MAX_BITS);
        }
    }
    dp_group *tail = &ps->groups[ps->n_groups++];
    tail->size = 7;
    tail->bits = 0;
    plan_stream_finalize(ps);
}

static uint32_t plan_width(const plan_stream *ps) {
    uint32_t p = 0;
    for (uint32_t i = 0; i < ps->n_groups; i++) p += ps->groups[i].size;
    return p;
}

/* Encode with both paths, compare the bytes, decode each payload with both
 * paths, compare the floats bit for bit. */
static void compare_quant(synth_rng *r, int kind, int odd_group, uint64_t n) {
    plan_stream pk, pv;
    make_plan(r, odd_group, &pk);
    make_plan(r, 0, &pv);
    uint64_t ldk = plan_width(&pk) + 3, ldv = plan_width(&pv);
    float *dk = malloc(sizeof(float) * n * ldk), *dv = malloc(sizeof(float) * n * ldv);
    for (uint64_t i = 0; i < n * ldk; i++) dk[i] = data_value(r, kind, (uint32_t)(i % ldk));
    for (uint64_t i = 0; i < n * ldv; i++) dv[i] = data_value(r, kind, (uint32_t)(i % ldv));
    CHECK_MSG(quant_check_range(&pk, &pv, dk, ldk, dv, ldv, n) == KVTC_OK, "kind %d: generator out of range", kind);

    uint64_t size = quant_payload_size(&pk, &pv, n);
    uint8_t *a = malloc(size + 1), *b = malloc(size + 1);
    memset(a, 0xAA, size + 1);
    memset(b, 0x55, size + 1);
    quant_encode_path(&pk, &pv, dk, ldk, dv, ldv, n, a, 0);
    quant_encode_path(&pk, &pv, dk, ldk, dv, ldv, n, b, 1);
    CHECK_MSG(memcmp(a, b, size) == 0, "kind %d odd %d n %llu: payloads differ", kind, odd_group,
              (unsigned long long)n);
    CHECK_MSG(a[size] == 0xAA && b[size] == 0x55, "kind %d: wrote past the payload", kind);

    uint64_t ek = n * pk.rank_used, ev = n * pv.rank_used;
    float *k0 = malloc(sizeof(float) * (ek + 1)), *v0 = malloc(sizeof(float) * (ev + 1));
    float *k1 = malloc(sizeof(float) * (ek + 1)), *v1 = malloc(sizeof(float) * (ev + 1));
    CHECK(quant_decode_path(&pk, &pv, a, n, k0, pk.rank_used, v0, pv.rank_used, 0) == KVTC_OK);
    CHECK(quant_decode_path(&pk, &pv, a, n, k1, pk.rank_used, v1, pv.rank_used, 1) == KVTC_OK);
    CHECK_MSG(memcmp(k0, k1, sizeof(float) * ek) == 0 && memcmp(v0, v1, sizeof(float) * ev) == 0,
              "kind %d odd %d: decodes differ", kind, odd_group);

    /* a non-finite scale in the first group: both paths refuse it */
    if (pk.groups[0].bits >= 1 && pk.groups[0].bits <= DP_MAX_BITS && n > 1) {
        a[4 * (n - 1) + 2] = 0x00;
        a[4 * (n - 1) + 3] = 0x7c; /* +Inf */
        CHECK(quant_decode_path(&pk, &pv, a, n, k0, pk.rank_used, v0, pv.rank_used, 0) == KVTC_ERR_CORRUPT);
        CHECK(quant_decode_path(&pk, &pv, a, n, k1, pk.rank_used, v1, pv.rank_used, 1) == KVTC_ERR_CORRUPT);
    }
    free(k0); free(v0); free(k1); free(v1);
    free(a); free(b); free(dk); free(dv);
    plan_stream_free(&pk);
    plan_stream_free(&pv);
}

/* The range check on both paths, for clean data and with one hostile value
 * (NaN, infinities, beyond fp16, a step too large for fp16) at a random
 * place, a group's first coordinate included (where the scalar scan sees a
 * NaN; elsewhere it skips it). Returns how many inputs were refused. */
static int compare_range(synth_rng *r, int trials) {
    static const float bad[] = {NAN, INFINITY, -INFINITY, 70000.0f, -70000.0f, 65504.0f, -65504.0f, 1e30f};
    int refused = 0;
    for (int i = 0; i < trials; i++) {
        plan_stream pk, pv;
        make_plan(r, i & 1, &pk);
        make_plan(r, 0, &pv);
        uint64_t n = 1 + synth_next(r) % 9, ldk = plan_width(&pk), ldv = plan_width(&pv);
        float *dk = malloc(sizeof(float) * n * ldk), *dv = malloc(sizeof(float) * n * ldv);
        for (uint64_t j = 0; j < n * ldk; j++) dk[j] = (float)synth_gauss(r);
        for (uint64_t j = 0; j < n * ldv; j++) dv[j] = (float)synth_gauss(r);
        kvtc_result want_clean = quant_check_range_path(&pk, &pv, dk, ldk, dv, ldv, n, 0);
        CHECK(want_clean == KVTC_OK);
        CHECK(quant_check_range_path(&pk, &pv, dk, ldk, dv, ldv, n, 1) == want_clean);
        /* one hostile value: at a group's start in half the trials */
        uint64_t t = synth_next(r) % n, col = 0;
        uint32_t gi = (uint32_t)(synth_next(r) % pk.n_groups);
        for (uint32_t g = 0; g < gi; g++) col += pk.groups[g].size;
        if (i & 2) col += synth_next(r) % pk.groups[gi].size;
        dk[t * ldk + col] = bad[synth_next(r) % 8];
        kvtc_result want = quant_check_range_path(&pk, &pv, dk, ldk, dv, ldv, n, 0);
        CHECK_MSG(quant_check_range_path(&pk, &pv, dk, ldk, dv, ldv, n, 1) == want,
                  "trial %d: range check differs", i);
        refused += want != KVTC_OK;
        free(dk);
        free(dv);
        plan_stream_free(&pk);
        plan_stream_free(&pv);
    }
    return refused;
}

/* ---- RoPE ------------------------------------------------------------------ */

static void compare_rope(synth_rng *r, kvtc_rope_type type, uint32_t head_dim, uint32_t rope_dim) {
    kvtc_geometry g = synth_geometry(1, 1, head_dim, type, rope_dim, 10000.0f);
    rope_table t;
    CHECK(rope_table_init(&t, &g) == KVTC_OK);
    static const int64_t pos[] = {0, 1, 5, 4095, 123457, 2000003};
    float cs[KVTC_MAX_HEAD_DIM], x0[KVTC_MAX_HEAD_DIM], x1[KVTC_MAX_HEAD_DIM];
    int same = 1;
    for (int pi = 0; pi < 6; pi++) {
        rope_angles(&t, pos[pi], cs);
        for (int dir = -1; dir <= 1; dir += 2)
            for (int kind = 0; kind < DATA_KINDS; kind++) {
                for (uint32_t j = 0; j < head_dim; j++) x0[j] = x1[j] = data_value(r, kind, j);
                rope_rotate_path(&g, cs, dir, x0, 0);
                rope_rotate_path(&g, cs, dir, x1, 1);
                same &= memcmp(x0, x1, sizeof(float) * head_dim) == 0;
            }
    }
    CHECK_MSG(same, "rope type %d head_dim %u rope_dim %u: paths differ", (int)type, head_dim, rope_dim);
    rope_table_free(&t);
}

/* ---- whole streams ----------------------------------------------------------- */

static void compare_streams(kvtc_rope_type rope, kvtc_dtype dt) {
    kvtc_geometry g = synth_geometry(2, 2, 64, rope, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, dt, 400);
    static const double ratios[] = {8.0, 16.0, 32.0};
    kvtc_basis *b = NULL;
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 3, &b) == KVTC_OK);
    if (!b) return;
    synth_params tp = sp;
    tp.n_tokens = 1100; /* 1080 coded rows: 3 row blocks of the split GEMMs */
    tp.data_seed = 99;
    synth_cache sc;
    CHECK(synth_make(&tp, &sc) == 0);
    size_t tensor = (size_t)kvtc_cache_tensor_bytes(&g, dt, tp.n_tokens);
    for (int ri = 0; ri < 3; ri++)
        for (uint32_t codec = KVTC_CODEC_DEFLATE; codec <= KVTC_CODEC_RANS; codec++) {
            kvtc_encode_options eo;
            kvtc_encode_options_init(&eo);
            eo.ratio = ratios[ri];
            eo.n_sink = 4;
            eo.n_window = 16;
            eo.chunk_tokens = 64;
            eo.n_threads = 1;
            eo.entropy_codec = codec;
            uint8_t *s0 = NULL, *s1 = NULL;
            size_t n0 = 0, n1 = 0;
            setenv("KVTC_SIMD", "scalar", 1);
            CHECK(synth_compress(b, &eo, &sc.c, &s0, &n0) == KVTC_OK);
            unsetenv("KVTC_SIMD");
            eo.n_threads = 2;
            CHECK(synth_compress(b, &eo, &sc.c, &s1, &n1) == KVTC_OK);
            CHECK_MSG(s0 && s1 && n0 == n1 && memcmp(s0, s1, n0) == 0, "ratio %g codec %u: streams differ",
                      ratios[ri], codec);
            kvtc_cache c0, c1;
            CHECK(synth_alloc_like(&g, dt, tp.n_tokens, 0, &c0) == 0);
            CHECK(synth_alloc_like(&g, dt, tp.n_tokens, 0, &c1) == 0);
            kvtc_decode_options dop;
            kvtc_decode_options_init(&dop);
            dop.n_threads = 1;
            kvtc_decoder *d = NULL, *d2 = NULL;
            CHECK(kvtc_decoder_alloc(b, &dop, &d) == KVTC_OK);
            dop.n_threads = 2;
            CHECK(kvtc_decoder_alloc(b, &dop, &d2) == KVTC_OK);
            setenv("KVTC_SIMD", "scalar", 1);
            CHECK(d && s0 && kvtc_decompress(d, s0, n0, &c0) == KVTC_OK);
            unsetenv("KVTC_SIMD");
            CHECK(d2 && s0 && kvtc_decompress(d2, s0, n0, &c1) == KVTC_OK);
            CHECK_MSG(memcmp(c0.k, c1.k, tensor) == 0 && memcmp(c0.v, c1.v, tensor) == 0,
                      "ratio %g codec %u: decodes differ", ratios[ri], codec);
            kvtc_decoder_free(d);
            kvtc_decoder_free(d2);
            synth_cache_free(&c0);
            synth_cache_free(&c1);
            free(s0);
            free(s1);
        }
    synth_free(&sc);
    kvtc_basis_free(b);
}

int main(void) {
    printf("AVX2 %s: %s\n", kvi_cpu_has_avx2() ? "present" : "absent",
           kvi_cpu_has_avx2() ? "comparing AVX2 with scalar" : "both sides run the scalar path");
    synth_rng r = {2026};
    static const uint64_t ns[] = {1, 3, 17, 64};
    for (int kind = 0; kind < DATA_KINDS; kind++)
        for (int ni = 0; ni < 4; ni++)
            for (int odd = 0; odd <= 1; odd++) compare_quant(&r, kind, odd, ns[ni]);

    int refused = compare_range(&r, 400);
    CHECK_MSG(refused > 100 && refused < 400, "range trials refused %d of 400", refused);

    compare_rope(&r, KVTC_ROPE_NORM, 64, 0);
    compare_rope(&r, KVTC_ROPE_NORM, 128, 0);
    compare_rope(&r, KVTC_ROPE_NORM, 128, 24); /* 12 pairs: vector width 4 */
    compare_rope(&r, KVTC_ROPE_NORM, 64, 20);  /* 10 pairs: scalar fallback */
    compare_rope(&r, KVTC_ROPE_NEOX, 64, 0);
    compare_rope(&r, KVTC_ROPE_NEOX, 128, 32);
    compare_rope(&r, KVTC_ROPE_NEOX, 128, 24); /* 12 pairs: scalar fallback */

    openblas_set_num_threads(1); /* as kvtc compress/decompress run it: the GEMMs are split */
    compare_streams(KVTC_ROPE_NORM, KVTC_DTYPE_F16);
    compare_streams(KVTC_ROPE_NEOX, KVTC_DTYPE_BF16);
    return TEST_REPORT();
}
