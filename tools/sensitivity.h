/* sensitivity.h - distortion weights measured on the model itself.
 *
 * KL divergence of the next-token distribution is, for small cache errors,
 * a quadratic form in the error. We estimate its diagonal per block (one
 * layer, one KV head, keys or values): add Gaussian noise of known variance
 * s^2 to that block of the coded tokens of a prefilled prefix, decode the
 * continuation, and measure the mean KL against the clean run. The weight of
 * every coordinate of the block is KL / (s^2 * coordinates noised), so the
 * codec's weighted squared
 * error approximates the KL the errors cause, and the PCA and the DP spend
 * bits where the model is sensitive rather than where the variance is.
 * With bands > 1 each head is split further into groups of RoPE pairs (by
 * pair index, i.e. by rotation frequency), one measurement per group.
 * Decoding needs no model: the weights are stored in the basis.
 *
 * Which continuation the KL is measured on decides what the weights protect.
 * Perplexity windows (the default) score natural text, which leans mostly on
 * the raw recent window; copy-random probes (eval/copy_task.h, the layout of
 * kvtc eval --task copy-random) score the second copy of a random-token
 * passage whose first copy lies in the noised region, so they weigh what a
 * far lookup needs. copy_frac mixes the two: each task's weights are scaled
 * to a mean of 1 over all coordinates, then (1 - F) * ppl + F * copy. */
#ifndef KVTC_TOOLS_SENSITIVITY_H
#define KVTC_TOOLS_SENSITIVITY_H

#include <stdint.h>

#include "model_kv.h"

/* At most this many copy-random probes: each one prefills a whole window and
 * decodes it once per measured block, so more would run for days; the bound
 * also turns a mistyped count into an error instead of an endless run. */
#define SENS_MAX_COPY_PROBES 10000

typedef enum sensitivity_task { SENS_TASK_PPL = 0, SENS_TASK_COPY_RANDOM = 1 } sensitivity_task;

typedef struct sensitivity_opts {
    uint32_t ctx;         /* window length */
    uint32_t windows;     /* perplexity windows from the start of the text */
    uint32_t continuation;/* tokens scored after the prefix */
    uint32_t n_sink, n_window;
    double noise_rel;     /* noise std relative to the block's RMS */
    uint32_t bands;       /* frequency bands per head (RoPE pairs grouped by index), >= 1 */
    uint32_t threads;
    double copy_frac;       /* share of copy-random probes in the weights, [0, 1]; 0 = perplexity only */
    uint32_t copy_windows;  /* copy-random probes (> 0); probe i uses window i mod (windows in
                               the text) with its own random passage */
    uint32_t copy_passage;  /* tokens per copy (>= 2) */
    uint32_t copy_distance; /* start of copy 1 -> start of copy 2, tokens */
} sensitivity_opts;

/* NULL when o is consistent (copy share in [0, 1], windows long enough, a
 * copy layout whose first copy lies in the noised region), else why not. */
const char *sensitivity_opts_check(const sensitivity_opts *o);

/* wk, wv: [n_layers * n_kv_heads * head_dim] (layer-major, head, dim).
 * Prints one line per layer to stderr when verbose. Returns 0 on success. */
int sensitivity_measure(const model_text *mt, const sensitivity_opts *o, float *wk, float *wv, int verbose);

#endif
