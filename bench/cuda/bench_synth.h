/* bench_synth.h - host-side data for the CUDA benchmark (bench_synth.c). */
#ifndef KVTC_BENCH_SYNTH_H
#define KVTC_BENCH_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU-calibrated basis on synthetic caches (tests/synth.h), one plan. */
kvtc_basis *bs_calibrate_small(const kvtc_geometry *g, uint64_t n_tokens, uint32_t rank, double ratio);
/* A synthetic cache from the same model, in host memory (free with bs_free_cache). */
int bs_make_cache(const kvtc_geometry *g, kvtc_dtype dt, uint64_t n, uint32_t rank, uint64_t seed, kvtc_cache *out);
void bs_free_cache(kvtc_cache *c);

/* The paper-geometry basis: exact eigenvectors of a synthetic generator
 * (see bench_synth.c); lambda receives the m latent variances. */
kvtc_basis *bs_paper_basis(const kvtc_geometry *g, uint32_t m, double alpha, double noise_rel, double ratio,
                           float *lambda, double *sigma2_out);
/* A host cache (bf16, n tokens, data seed `seed`) from the generator behind
 * bs_paper_basis (lambda and sigma2 as it returned them), made with
 * n_threads threads; free with bs_free_cache. 0 on success. */
int bs_paper_cache_host(const kvtc_basis *b, const float *lambda, double sigma2, uint64_t n, uint64_t seed,
                        uint32_t n_threads, kvtc_cache *out);
void bs_plan_summary(const kvtc_basis *b, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
