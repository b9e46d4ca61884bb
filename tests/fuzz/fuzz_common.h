/* fuzz_common.h - shared by the fuzz targets and the seed-corpus generator:
 * small bases calibrated in-process on synthetic caches (tests/synth.h), so
 * the targets need no files. Everything is static; include from one file. */
#ifndef KVTC_FUZZ_COMMON_H
#define KVTC_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"

/* The fixed model of fuzz_stream (and of the stream seeds): 2 layers x 2
 * heads x 16 dims, norm RoPE, plans at ratios 2, 4 and 8. */
#define FUZZ_MODEL_SEED 777u

static __attribute__((unused)) kvtc_geometry fuzz_geometry(int which) {
    switch (which) {
    case 1: return synth_geometry(1, 3, 16, KVTC_ROPE_NEOX, 8, 500000.0f); /* partial neox */
    case 2: return synth_geometry(3, 1, 16, KVTC_ROPE_NONE, 0, 0.0f);       /* no rope */
    default: return synth_geometry(2, 2, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    }
}

/* Calibrate the basis of fuzz_geometry(which) (aborts on failure: a fuzz
 * target without its basis would test nothing). */
static __attribute__((unused)) kvtc_basis *fuzz_make_basis(int which) {
    kvtc_geometry g = fuzz_geometry(which);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F32, 160);
    sp.model_seed = FUZZ_MODEL_SEED + (uint64_t)which;
    sp.rank = 6;
    static const double ratios[3] = {2.0, 4.0, 8.0};
    kvtc_basis *b = NULL;
    kvtc_result r = synth_calibrate(&sp, 2, 4, 16, ratios, 3, &b);
    if (r != KVTC_OK) {
        fprintf(stderr, "fuzz: calibration failed: %s\n", kvtc_result_string(r));
        abort();
    }
    return b;
}

#endif
