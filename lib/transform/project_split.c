/* project_split.c - see project_split.h. */
#include "transform/project_split.h"

#include <cblas.h>

#include "util/parallel.h"

/* Rows per part. The parts depend on n only, never on the thread count:
 * OpenBLAS's result for a row can depend on where the row falls in the
 * GEMM (its M-tail kernels accumulate differently on some CPUs), and the
 * codec's output must not depend on n_threads (tests/test_codec.c). 512
 * rows: 256 cost 3-6% more CPU (B is packed once per block), 1024 leaves a
 * cache under ~1000 tokens on one thread (bench_speed, 2026-11-30). */
#define SPLIT_ROWS 512

typedef struct split_job {
    const basis_stream *s;
    uint32_t r;
    const float *in;
    float *out;
    uint64_t n;
    int reconstruct;
} split_job;

static int split_part(void *p, uint32_t item, uint32_t worker) {
    (void)worker;
    const split_job *j = p;
    uint64_t lo = (uint64_t)item * SPLIT_ROWS, len = j->n - lo < SPLIT_ROWS ? j->n - lo : SPLIT_ROWS;
    uint32_t p_dim = j->s->p;
    if (j->reconstruct)
        reconstruct_centered(j->s, j->r, j->in + lo * j->r, len, j->out + lo * p_dim);
    else
        project_centered(j->s, j->r, j->in + lo * p_dim, len, j->out + lo * j->r);
    return 0;
}

/* Parts to split n rows into: 1 (no split) when OpenBLAS runs its own
 * threads, which would then oversubscribe the cores (measured: encode and
 * decode 1.6-2x slower with OpenBLAS's default threads). */
static uint32_t split_parts(uint64_t n) {
    if (openblas_get_num_threads() > 1) return 1;
    return (uint32_t)((n + SPLIT_ROWS - 1) / SPLIT_ROWS);
}

void project_centered_split(const basis_stream *s, uint32_t r, const float *x, uint64_t n, float *d,
                            uint32_t n_threads) {
    uint32_t parts = split_parts(n);
    if (parts <= 1 || r == 0) {
        project_centered(s, r, x, n, d);
        return;
    }
    split_job j = {s, r, x, d, n, 0};
    kvi_parallel_for(n_threads ? n_threads : 1, parts, split_part, &j);
}

void reconstruct_centered_split(const basis_stream *s, uint32_t r, const float *d, uint64_t n, float *x,
                                uint32_t n_threads) {
    uint32_t parts = split_parts(n);
    if (parts <= 1 || r == 0) {
        reconstruct_centered(s, r, d, n, x);
        return;
    }
    split_job j = {s, r, d, x, n, 1};
    kvi_parallel_for(n_threads ? n_threads : 1, parts, split_part, &j);
}
