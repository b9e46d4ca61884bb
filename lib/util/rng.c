/* rng.c - see rng.h. */
#include "util/rng.h"

#include <math.h>

uint64_t kvi_rng_next(kvi_rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double kvi_rng_uniform(kvi_rng *r) { return (double)(kvi_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double kvi_rng_gauss(kvi_rng *r) {
    double u1 = kvi_rng_uniform(r), u2 = kvi_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
