/* rng.h - the deterministic PRNG (splitmix64) shared by calibration's
 * reservoir sampling, the randomized PCA and the CLI's sensitivity probes:
 * the same seed gives the same numbers on every machine. */
#ifndef KVTC_UTIL_RNG_H
#define KVTC_UTIL_RNG_H

#include <stdint.h>

typedef struct kvi_rng { uint64_t s; } kvi_rng;
uint64_t kvi_rng_next(kvi_rng *r);
double kvi_rng_uniform(kvi_rng *r);  /* [0, 1) */
double kvi_rng_gauss(kvi_rng *r);

#endif
