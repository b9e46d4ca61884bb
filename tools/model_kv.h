/* model_kv.h - the bridge between the engine (engine/llama.h) and the codec:
 * capture KV caches of text windows, and recompute the first layers for
 * streams that store token ids instead of those layers. */
#ifndef KVTC_TOOLS_MODEL_KV_H
#define KVTC_TOOLS_MODEL_KV_H

#include <stdint.h>

#include "internal.h"
#include "kvtc.h"
#include "llama.h"

/* A model with its tokenized text. */
typedef struct model_text {
    eng_model *model;
    int32_t *ids;    /* [n_ids]: text tokens, no <s> */
    uint64_t n_ids;
} model_text;

/* Load model (and text, if text_path != NULL). Prints an error and returns
 * nonzero on failure. */
int model_text_load(model_text *mt, const char *model_path, const char *text_path);
void model_text_free(model_text *mt);

/* The cache geometry of a model. */
kvtc_geometry model_geometry(const eng_model *m);

/* Window w of length ctx: [<s>] + ids[start .. start+ctx-1), where windows
 * tile the text from its start (from_end = 0) or from its end backwards
 * (from_end = 1, window 0 is the last full window). Returns the number of
 * full windows available. */
uint64_t model_text_windows(const model_text *mt, uint32_t ctx);
void model_text_window(const model_text *mt, uint32_t ctx, uint64_t w, int from_end, int32_t *out);

/* Run a fresh context over tokens[0..n) and copy its KV cache into a new
 * cache of the given dtype (positions 0..n-1, token ids kept). */
int model_capture(const eng_model *m, const int32_t *tokens, uint32_t n, kvtc_dtype dtype,
                  uint32_t n_threads, cache_file *out);

/* Copy a context's first n positions out as float32 [L][H][n][d] (k, v) or
 * write them back. */
void model_ctx_read_kv(eng_context *ctx, const eng_model *m, uint32_t n, float *k, float *v);
void model_ctx_write_kv(eng_context *ctx, const eng_model *m, uint32_t n, const float *k, const float *v);

/* kvtc_recompute_fn over the engine; user = the eng_model. */
int model_recompute(void *user, uint32_t n_layers, const int32_t *token_ids, const int64_t *positions,
                    uint64_t n_tokens, float *k_out, float *v_out);

#endif
