/* model_fingerprint.h - the 64-bit fingerprint of what recomputing a
 * stream's first layers depends on (docs/FORMAT.md "Model fingerprint"):
 * the GGUF tensors of those layers and the token embedding, the tokenizer
 * and the llama.* hyperparameters. Streams record it; decoding with another
 * model fails (issue 9 item 3). */
#ifndef KVTC_TOOLS_MODEL_FINGERPRINT_H
#define KVTC_TOOLS_MODEL_FINGERPRINT_H

#include <stdint.h>

#include "kvtc.h"

/* Fingerprint of the GGUF file at path for `recompute_layers` layers
 * (never 0). basis: the geometry of the basis whose layers the model will
 * recompute, or NULL; the model's must have its layers, KV heads and
 * head_dim (model_check_geometry), since a recompute callback of another
 * shape would write past the decoder's buffers. Prints "kvtc: <cmd>: ..."
 * and returns nonzero on failure. */
int model_fingerprint_file(const char *cmd, const char *path, uint32_t recompute_layers, const kvtc_geometry *basis,
                           uint64_t *out);

/* 0 if a model of geometry `model` (at path, for the message) can
 * recompute layers for a basis of geometry `basis` (same layers, KV heads
 * and head_dim); else prints "kvtc: <cmd>: ..." and returns 1. */
int model_check_geometry(const char *cmd, const char *path, const kvtc_geometry *model, const kvtc_geometry *basis);

#endif
