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
    uint32_t p = s->p;
    if (n == 0) return;
    if (r == 0) {
        memset(x, 0, sizeof(float) * n * p);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)p, (int)r, 1.0f, d, (int)r, s->basis, (int)p,
                0.0f, x, (int)p);
}

void uncenter_rows(const basis_stream *s, float *x, uint64_t n) {
    uint32_t p = s->p;
    for (uint64_t t = 0; t < n; t++) {
        float *row = x + t * p;
        for (uint32_t i = 0; i < p; i++) row[i] = row[i] / s->weight[i] + s->mean[i];
    }
}
