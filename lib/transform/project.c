/* project.c - see project.h. */
#include "transform/project.h"

#include <cblas.h>
#include <string.h>

void center_rows(const basis_stream *s, float *x, uint64_t n) {
    uint32_t p = s->p;
    for (uint64_t t = 0; t < n; t++) {
        float *row = x + t * p;
        for (uint32_t i = 0; i < p; i++) row[i] = (row[i] - s->mean[i]) * s->weight[i];
    }
}

void project_centered(const basis_stream *s, uint32_t r, const float *x, uint64_t n, float *d) {
    if (r == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)s->p, 1.0f, x, (int)s->p, s->basis,
                (int)s->p, 0.0f, d, (int)r);
}

void reconstruct_centered(const basis_stream *s, uint32_t r, const float *d, uint64_t n, float *x) {
    reconstruct_centered_cols(s, r, d, r, n, 0, s->p, x, s->p);
}

void reconstruct_centered_cols(const basis_stream *s, uint32_t r, const float *d, uint64_t ldd, uint64_t n,
                               uint32_t col0, uint32_t w, float *x, uint64_t ldx) {
    if (n == 0 || w == 0) return;
    if (r == 0) {
        for (uint64_t t = 0; t < n; t++) memset(x + t * ldx, 0, sizeof(float) * w);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)w, (int)r, 1.0f, d, (int)ldd,
                s->basis + col0, (int)s->p, 0.0f, x, (int)ldx);
}

void uncenter_rows(const basis_stream *s, float *x, uint64_t n) { uncenter_cols(s, 0, s->p, x, n); }

void uncenter_cols(const basis_stream *s, uint32_t col0, uint32_t w, float *x, uint64_t n) {
    const float *mean = s->mean + col0, *weight = s->weight + col0;
    for (uint64_t t = 0; t < n; t++) {
        float *row = x + t * w;
        for (uint32_t i = 0; i < w; i++) row[i] = row[i] / weight[i] + mean[i];
    }
}
