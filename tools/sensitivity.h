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
 * Decoding needs no model: the weights are stored in the basis. */
#ifndef KVTC_TOOLS_SENSITIVITY_H
#define KVTC_TOOLS_SENSITIVITY_H

#include <stdint.h>

#include "model_kv.h"

typedef struct sensitivity_opts {
    uint32_t ctx;         /* window length */
    uint32_t windows;     /* windows from the start of the text */
    uint32_t continuation;/* tokens scored after the prefix */
    uint32_t n_sink, n_window;
    double noise_rel;     /* noise std relative to the block's RMS */
    uint32_t bands;       /* frequency bands per head (RoPE pairs grouped by index), >= 1 */
    uint32_t threads;
} sensitivity_opts;

/* wk, wv: [n_layers * n_kv_heads * head_dim] (layer-major, head, dim).
 * Prints one line per layer to stderr when verbose. Returns 0 on success. */
int sensitivity_measure(const model_text *mt, const sensitivity_opts *o, float *wk, float *wv, int verbose);

#endif
