/* project_split.c - see project_split.h. */
#include "transform/project_split.h"

#include "util/parallel.h"

/* Below this many rows per part the GEMM is too small to pay for a thread. */
#define SPLIT_MIN_ROWS 64

typedef struct split_job {
    const basis_stream *s;
    uint32_t r;
    const float *in;
    float *out;
    uint64_t n;
    uint32_t parts;
    int reconstruct;
} split_job;

static int split_part(void *p, uint32_t item, uint32_t worker) {
    (void)worker;
    const split_job *j = p;
    uint64_t lo = j->n * item / j->parts, len = j->n * (item + 1) / j->parts - lo;
    uint32_t p_dim = j->s->p;
    if (j->reconstruct)
        reconstruct_centered(j->s, j->r, j->in + lo * j->r, len, j->out + lo * p_dim);
    else
        project_centered(j->s, j->r, j->in + lo * p_dim, len, j->out + lo * j->r);
    return 0;
}

static uint32_t split_parts(uint64_t n, uint32_t n_threads) {
    uint64_t most = n / SPLIT_MIN_ROWS;
    uint32_t parts = n_threads ? n_threads : 1;
    if (parts > most) parts = most ? (uint32_t)most : 1;
    return parts;
}

void project_centered_split(const basis_stream *s, uint32_t r, const float *x, uint64_t n, float *d,
                            uint32_t n_threads) {
    uint32_t parts = split_parts(n, n_threads);
    if (parts <= 1 || r == 0) {
        project_centered(s, r, x, n, d);
        return;
    }
    split_job j = {s, r, x, d, n, parts, 0};
    kvi_parallel_for(parts, parts, split_part, &j);
}

void reconstruct_centered_split(const basis_stream *s, uint32_t r, const float *d, uint64_t n, float *x,
                                uint32_t n_threads) {
    uint32_t parts = split_parts(n, n_threads);
    if (parts <= 1 || r == 0) {
        reconstruct_centered(s, r, d, n, x);
        return;
    }
    split_job j = {s, r, d, x, n, parts, 1};
    kvi_parallel_for(parts, parts, split_part, &j);
}
