/* calibrate_internal.h - the pieces of the calibrator (calibrate.c) that the
 * GPU calibration (lib/cuda/kvtc_cuda_calib.cu) reuses: the collected rows,
 * validation, DP statistics from projections, and plans + basis assembly.
 * Not a public API. */
#ifndef KVTC_TRANSFORM_CALIBRATE_INTERNAL_H
#define KVTC_TRANSFORM_CALIBRATE_INTERNAL_H

#include <stdint.h>

#include "alloc/dp.h"
#include "kvtc.h"
#include "model/basis.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CALIB_DP_MAX_ROWS 8192u /* rows used for the DP statistics */
#define CALIB_AUTO_RANK 2048u   /* AUTO/randomized: components kept */

/* Mean, weight, basis, DP statistics and curve of one stream. */
typedef struct stream_fit {
    basis_stream bs;
    dp_stats st;
    dp_curve cv;
} stream_fit;

void stream_fit_free(stream_fit *f);

/* Read-only view of a calibrator. rows_*: [n_rows][p] as collected (not yet
 * centered); w*: [p] square roots of the weights. */
typedef struct calib_view {
    kvtc_geometry g;
    kvtc_calibrate_options o;
    uint32_t p;
    uint64_t n_rows;
    const float *rows_k, *rows_v;
    const float *wk, *wv;
} calib_view;

void calib_get_view(const kvtc_calibrator *c, calib_view *v);

/* The checks of kvtc_calibrator_finish (arguments, >= min_rows rows, not
 * finished yet); on success marks the calibrator finished. */
kvtc_result calib_begin_finish(kvtc_calibrator *c, const double *ratios, uint32_t n_ratios, uint64_t min_rows);

/* DP statistics of stream f (f->bs.rank set) from projections d [ns][rank]
 * of ns centered, weighted rows whose mean squared norm is `total`. */
kvtc_result calib_stats_from_proj(const float *d, uint64_t ns, double total, stream_fit *f);

/* DP per stream, one plan per ratio, and the basis (fk->bs, fv->bs moved
 * into it). fk, fv are freed (success or not). */
kvtc_result calib_build_basis(const kvtc_calibrator *c, const double *ratios, uint32_t n_ratios, stream_fit *fk,
                              stream_fit *fv, kvtc_basis **out);

#ifdef __cplusplus
}
#endif

#endif
