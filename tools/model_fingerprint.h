/* model_fingerprint.h - the 64-bit fingerprint of what recomputing a
 * stream's first layers depends on (docs/FORMAT.md "Model fingerprint"):
 * the GGUF tensors of those layers and the token embedding, the tokenizer
 * and the llama.* hyperparameters. Streams record it; decoding with another
 * model fails (issue 9 item 3). */
#ifndef KVTC_TOOLS_MODEL_FINGERPRINT_H
#define KVTC_TOOLS_MODEL_FINGERPRINT_H

#include <stdint.h>

/* Fingerprint of the GGUF file at path for `recompute_layers` layers
 * (never 0). Prints "kvtc: <cmd>: ..." and returns nonzero on failure. */
int model_fingerprint_file(const char *cmd, const char *path, uint32_t recompute_layers, uint64_t *out);

#endif
