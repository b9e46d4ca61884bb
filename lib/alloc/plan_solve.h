/* plan_solve.h - a bit-allocation plan for any target ratio, solved from
 * what every basis stores (the eigenvalues), without recalibrating. */
#ifndef KVTC_ALLOC_PLAN_SOLVE_H
#define KVTC_ALLOC_PLAN_SOLVE_H

#include "model/basis.h"

/* The stored plan made for exactly `ratio` (relative difference below
 * 1e-9), or -1. */
int basis_find_exact_plan(const kvtc_basis *b, double ratio);

/* Solve the DP (lib/alloc/dp.h) for `ratio` over the stored components of
 * b, with one budget shared by K and V and every group size allowed (the
 * calibrator's defaults). The DP's statistics come from the eigenvalues:
 * var_i = eigenvalue_i, and E[(max-min)^2] of a group = c(size) * mean var
 * of its coordinates, c the expected squared range of `size` Gaussian
 * samples. The plan gets its fingerprint; free with plan_stream_free on k
 * and v. KVTC_ERR_NO_PLAN below the basis' smallest calibrated ratio (its
 * stored components would not be enough) or when the basis has no plan. */
kvtc_result basis_solve_plan(const kvtc_basis *b, double ratio, basis_plan *out);

#endif
