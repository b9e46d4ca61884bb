/* proj_emul.c - see proj_emul.h and proj_emul_ops.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/proj_emul_ops.h"
#include "transform/fp8.h"
#include "transform/project.h"
#include "util/half.h"

static float round_bf16(float f) { return kvi_bf16_to_f32(kvi_f32_to_bf16(f)); }

static void proj_emul_free(proj_emul *pe) {
    if (!pe) return;
    for (int s = 0; s < 2; s++) {
        free(pe->op[s].basis);
        free(pe->fold[s]);
    }
    memset(pe, 0, sizeof *pe);
}

/* Operand rows of stream bs for the mode and direction. */
static kvtc_result prepare_stream(proj_emul *pe, int s, const basis_stream *bs) {
    uint64_t n = (uint64_t)bs->rank * bs->p;
    basis_stream *op = &pe->op[s];
    *op = *bs;
    op->basis = malloc(sizeof(float) * (n ? n : 1));
    pe->fold[s] = malloc(sizeof(float) * (bs->rank ? bs->rank : 1));
    if (!op->basis || !pe->fold[s]) return KVTC_ERR_OUT_OF_MEMORY;
    pe->scale[s] = 1.0f;
    for (uint32_t j = 0; j < bs->rank; j++) pe->fold[s][j] = 1.0f;
    if (pe->mode == KVI_PROJ_BF16) {
        for (uint64_t i = 0; i < n; i++) op->basis[i] = round_bf16(bs->basis[i]);
        return KVTC_OK;
    }
    if (pe->decode) {
        /* the GPU's bytes (transposed), read back as floats [rank][p] */
        uint32_t ld = bs->rank ? bs->rank : 1;
        uint8_t *bt = malloc((uint64_t)bs->p * ld);
        if (!bt) return KVTC_ERR_OUT_OF_MEMORY;
        kvi_fp8_basis_t(bs, bs->rank, ld, bt, &pe->scale[s]);
        for (uint32_t j = 0; j < bs->rank; j++) {
            pe->fold[s][j] = kvi_fp8_fold(bs, j);
            for (uint32_t i = 0; i < bs->p; i++) op->basis[(uint64_t)j * bs->p + i] = kvi_e4m3_to_f32(bt[(uint64_t)i * ld + j]);
        }
        free(bt);
        return KVTC_OK;
    }
    uint8_t *b8 = malloc(n ? n : 1);
    if (!b8) return KVTC_ERR_OUT_OF_MEMORY;
    kvi_fp8_basis_rows(bs, bs->rank, b8, &pe->scale[s]);
    for (uint64_t i = 0; i < n; i++) op->basis[i] = kvi_e4m3_to_f32(b8[i]);
    free(b8);
    return KVTC_OK;
}

kvtc_result proj_emul_set(proj_emul **slot, const kvtc_basis *b, kvi_proj_mode mode, int decode) {
    if ((unsigned)mode > KVI_PROJ_FP8) return KVTC_ERR_INVALID_ARGUMENT;
    proj_emul_free(*slot);
    free(*slot);
    *slot = NULL;
    if (mode == KVI_PROJ_EXACT) return KVTC_OK;
    proj_emul *pe = calloc(1, sizeof *pe);
    if (!pe) return KVTC_ERR_OUT_OF_MEMORY;
    pe->mode = mode;
    pe->decode = decode;
    kvtc_result r = prepare_stream(pe, 0, &b->k);
    if (!r) r = prepare_stream(pe, 1, &b->v);
    if (r) {
        proj_emul_free(pe);
        free(pe);
        return r;
    }
    *slot = pe;
    return KVTC_OK;
}

void proj_emul_coefs(const proj_emul *pe, int s, uint32_t r, const float *d, uint64_t ldd, uint64_t n, float *dq) {
    const float *f = pe->fold[s];
    for (uint64_t t = 0; t < n; t++) {
        const float *row = d + t * ldd;
        float *o = dq + t * r;
        if (pe->mode == KVI_PROJ_BF16)
            for (uint32_t j = 0; j < r; j++) o[j] = round_bf16(row[j]);
        else
            for (uint32_t j = 0; j < r; j++) o[j] = kvi_round_e4m3(row[j] / f[j]);
    }
}

void proj_emul_output(const proj_emul *pe, int s, float *x, uint64_t ldx, uint64_t n, uint32_t w) {
    float sc = pe->scale[s];
    for (uint64_t t = 0; t < n; t++) {
        float *row = x + t * ldx;
        for (uint32_t i = 0; i < w; i++) row[i] = round_bf16(row[i] * sc);
    }
}

kvtc_result proj_emul_project(const proj_emul *pe, int s, uint32_t r, float *x, uint64_t n, float *d) {
    const basis_stream *op = &pe->op[s];
    uint32_t p = op->p;
    float *rs = NULL; /* FP8: each row's scale */
    if (pe->mode == KVI_PROJ_FP8 && !(rs = malloc(sizeof(float) * (n ? n : 1)))) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint64_t t = 0; t < n; t++) {
        float *row = x + t * p;
        if (!rs) {
            for (uint32_t i = 0; i < p; i++) row[i] = round_bf16(row[i]);
            continue;
        }
        /* the GPU's rows are bf16 (the gather's output), cast per row */
        float amax = 0.0f;
        for (uint32_t i = 0; i < p; i++) {
            row[i] = round_bf16(row[i]);
            amax = fabsf(row[i]) > amax ? fabsf(row[i]) : amax;
        }
        float sc = amax / KVI_E4M3_MAX;
        if (!(sc > 0.0f) || !isfinite(sc)) sc = 1.0f;
        rs[t] = sc;
        for (uint32_t i = 0; i < p; i++) row[i] = kvi_round_e4m3(row[i] / sc);
    }
    project_centered(op, r, x, n, d);
    if (rs) {
        for (uint64_t t = 0; t < n; t++)
            for (uint32_t j = 0; j < r; j++) d[t * r + j] = (d[t * r + j] * pe->scale[s]) * rs[t]; /* GEMM alpha, then the quantizer */
        free(rs);
    }
    return KVTC_OK;
}
