/*
 * llama.h - a small CPU float32 inference engine for GGUF Llama models.
 *
 * It exists to capture real KV caches and to measure how compressing them
 * changes a model's predictions; it is not a general-purpose runtime.
 * Its names use the prefix eng_ (ENG_ for constants; the GGUF reader:
 * eng_gguf_), never llama.cpp's llama_ / gguf_, so that it links into one
 * process with the real llama.cpp.
 *
 *   eng_model *m = eng_model_load("model.gguf", err, sizeof err);
 *   eng_context *ctx = eng_context_alloc(m, 2048, 2);
 *   int32_t ids[64]; int n = eng_tokenize(m, text, strlen(text), 1, ids, 64);
 *   eng_decode(ctx, ids, n, logits);          // logits: [n][n_vocab]
 *   float *k0 = eng_context_k(ctx, 0);        // read / rewrite the cache
 *
 * Model: pre-norm RMSNorm blocks, rotary position embedding (adjacent-pair
 * "norm" style for arch llama, half-split "neox" style for arch qwen2, which
 * also adds biases to the q/k/v projections), grouped-query
 * attention with causal mask and scale 1/sqrt(head_dim), SwiGLU FFN, final
 * RMSNorm and an output head (token_embd reused when output.weight is absent).
 * Weights of type F32, F16, BF16 and Q8_0 are converted to float32 at load;
 * all arithmetic is float32 (projections through cblas_sgemm).
 *
 * KV cache layout, per layer, for keys (RoPE applied) and values alike:
 *
 *   float cache[n_head_kv][n_ctx][head_dim]      (row-major, contiguous)
 *   element (h, pos, d) at h * n_ctx * head_dim + pos * head_dim + d
 *
 * Only positions < n_past hold data. Query head q reads KV head
 * q / (n_head / n_head_kv).
 *
 * Threads: a model is immutable after load and may be shared by contexts on
 * different threads; one context must not be used by two threads at once.
 */
#ifndef KVTC_ENGINE_LLAMA_H
#define KVTC_ENGINE_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes --------------------------------------------------------- */

typedef enum eng_status {
    ENG_OK = 0,
    ENG_E_IO = -1,          /* file not found / unreadable */
    ENG_E_NOMEM = -2,       /* an allocation failed */
    ENG_E_FORMAT = -3,      /* malformed GGUF (magic, truncation, counts, ranges...) */
    ENG_E_UNSUPPORTED = -4, /* GGUF version, architecture, tensor type or tokenizer */
    ENG_E_MODEL = -5,       /* missing/ill-shaped tensor or inconsistent hyperparameters */
    ENG_E_ARG = -6,         /* invalid argument (NULL, n == 0, layer out of range...) */
    ENG_E_CTX_FULL = -7,    /* the tokens would not fit in n_ctx */
    ENG_E_TOKEN = -8        /* a token id outside [0, n_vocab) */
} eng_status;

const char *eng_status_string(int status);

/* ---- model ----------------------------------------------------------------- */

typedef struct eng_hparams {
    uint32_t n_vocab;      /* tokens in the vocabulary */
    uint32_t n_embd;       /* model width */
    uint32_t n_layer;      /* transformer blocks */
    uint32_t n_head;       /* query heads */
    uint32_t n_head_kv;    /* key/value heads (GQA); divides n_head */
    uint32_t head_dim;     /* per-head width (n_embd / n_head unless key_length given) */
    uint32_t n_ff;         /* SwiGLU hidden width */
    uint32_t n_ctx_train;  /* llama.context_length */
    float rope_theta;      /* llama.rope.freq_base, default 10000 */
    uint32_t rope_dim;     /* leading dims of each head that are rotated (<= head_dim, even) */
    uint32_t rope_type;    /* 0 = norm (adjacent pairs), 1 = neox (halves) */
    float rms_eps;         /* RMSNorm epsilon, default 1e-5 */
    int tied_output;       /* 1 when output.weight is absent and token_embd is reused */
    int has_qkv_bias;      /* 1 for arch qwen2: q/k/v projections add a bias (required) */
} eng_hparams;

#define ENG_ROPE_NORM 0
#define ENG_ROPE_NEOX 1

typedef struct eng_model eng_model;

/* Load a GGUF (architecture "llama", or "qwen2": neox RoPE and q/k/v biases,
 * keys "qwen2.*"). NULL on failure with a specific message
 * in err (if non-NULL). */
eng_model *eng_model_load(const char *path, char *err, size_t errlen);
/* The same, also returning the eng_status in *status (if non-NULL). */
eng_model *eng_model_load_ex(const char *path, int *status, char *err, size_t errlen);
/* Load from `size` bytes in memory (copied; the caller keeps its buffer). */
eng_model *eng_model_load_memory(const void *data, size_t size, int *status, char *err,
                                     size_t errlen);
void eng_model_free(eng_model *m);

const eng_hparams *eng_model_hparams(const eng_model *m);

/* ---- tokenizer -------------------------------------------------------------- */

/* SentencePiece-BPE tokenization as llama.cpp does it (dummy prefix space,
 * merges by score, byte fallback), optionally after <s>. Writes up to cap ids
 * and returns the full count (> cap means: call again with a larger buffer),
 * or a negative eng_status. */
int eng_tokenize(const eng_model *m, const char *text, size_t len, int add_bos, int32_t *out,
                   size_t cap);

/* The raw vocabulary piece of id (U+2581 for spaces, "<0x0A>" for byte
 * tokens), NUL-terminated; NULL when id is out of range. */
const char *eng_token_piece(const eng_model *m, int32_t id);

/* Text of n ids: U+2581 -> ' ', byte tokens -> their byte, <s> and </s> ->
 * nothing. strip_leading_space drops one leading ' ' (the dummy prefix), so
 * detokenize(tokenize(t)) == t. Writes up to cap bytes (no NUL terminator) and
 * returns the full length. */
size_t eng_detokenize(const eng_model *m, const int32_t *ids, size_t n,
                        int strip_leading_space, char *out, size_t cap);

int32_t eng_token_bos(const eng_model *m); /* -1 when none */
int32_t eng_token_eos(const eng_model *m); /* -1 when none */

/* ---- context: KV cache and decoding ------------------------------------------ */

typedef struct eng_context eng_context;

/* A context with a float32 KV cache of n_ctx positions (n_ctx 0 means
 * n_ctx_train), zero-filled, and up to n_threads threads (0 means 1) for the
 * attention softmax. The matrix products are OpenBLAS calls made from the
 * calling thread, which OpenBLAS parallelizes itself (OPENBLAS_NUM_THREADS);
 * results do not depend on n_threads. NULL on allocation failure. */
eng_context *eng_context_alloc(const eng_model *m, uint32_t n_ctx, uint32_t n_threads);
void eng_context_free(eng_context *ctx);

/* Run n tokens at positions n_past .. n_past+n-1 (causal over the cache and the
 * batch), store their K/V in the cache, advance n_past, and write logits
 * [n][n_vocab] for every token when logits != NULL. Large batches run in
 * internal chunks of ENG_UBATCH tokens. Returns ENG_OK or a negative
 * eng_status (the context is unchanged on ENG_E_CTX_FULL / ENG_E_TOKEN /
 * ENG_E_ARG); eng_context_error() has the message. */
int eng_decode(eng_context *ctx, const int32_t *tokens, uint32_t n, float *logits);

#define ENG_UBATCH 512

uint32_t eng_context_n_past(const eng_context *ctx);
uint32_t eng_context_n_ctx(const eng_context *ctx);
/* Set the number of valid cache positions (n <= n_ctx): truncate, or declare
 * positions written by hand through eng_context_k/_v. Returns 0 or
 * ENG_E_ARG. */
int eng_context_set_n_past(eng_context *ctx, uint32_t n);

/* The cache of `layer` as [n_head_kv][n_ctx][head_dim] (see the layout above);
 * NULL for a bad layer. Writable: decoding after set_n_past uses what is there. */
float *eng_context_k(eng_context *ctx, uint32_t layer);
float *eng_context_v(eng_context *ctx, uint32_t layer);

/* Message of the last failed call on ctx ("" when none). */
const char *eng_context_error(const eng_context *ctx);

/* ---- K/V of a token sequence without a context --------------------------------- */

/* K and V of the first n_layers layers for n tokens whose RoPE positions are
 * positions[0..n) (attention in the deeper layers is causal in token order).
 * Output layout [n_layers][n_head_kv][n][head_dim] contiguous, keys with RoPE
 * applied. With positions 0..n-1 the values are bitwise equal to what one
 * eng_decode call of the same n tokens on an empty context writes into the
 * cache (same operations in the same order). Layer 0 needs only embedding,
 * RMSNorm, Wk/Wv and RoPE; deeper layers run the layers before them fully.
 * Returns ENG_OK or a negative eng_status. */
int eng_compute_kv_prefix_layers(const eng_model *m, uint32_t n_layers, const int32_t *tokens,
                                   const int64_t *positions, uint64_t n, float *k_out,
                                   float *v_out, uint32_t n_threads);


#ifdef __cplusplus
}
#endif

#endif
