/*
 * llama_internal.h - the model structure shared by llama_model.c (loading)
 * and llama.c (the forward pass). Not part of the public API.
 *
 * Weight matrices are float32, row-major [out][in]: a GGUF tensor with
 * ne = [in, out] is exactly that, so y = x W^T is
 * cblas_sgemm(RowMajor, NoTrans, Trans, n, out, in, 1, x, in, W, in, 0, y, out).
 */
#ifndef KVTC_ENGINE_LLAMA_INTERNAL_H
#define KVTC_ENGINE_LLAMA_INTERNAL_H

#include "llama.h"
#include "tokenizer.h"

typedef struct eng_layer {
    float *attn_norm; /* [n_embd] RMSNorm weight before attention */
    float *wq;        /* [n_head * head_dim][n_embd] */
    float *wk;        /* [n_head_kv * head_dim][n_embd] */
    float *wv;        /* [n_head_kv * head_dim][n_embd] */
    float *wo;        /* [n_embd][n_head * head_dim] */
    float *bq;        /* [n_head * head_dim] query bias (qwen2), NULL when absent */
    float *bk;        /* [n_head_kv * head_dim] key bias (qwen2), NULL when absent */
    float *bv;        /* [n_head_kv * head_dim] value bias (qwen2), NULL when absent */
    float *ffn_norm;  /* [n_embd] RMSNorm weight before the FFN */
    float *w_gate;    /* [n_ff][n_embd] */
    float *w_up;      /* [n_ff][n_embd] */
    float *w_down;    /* [n_embd][n_ff] */
} eng_layer;

struct eng_model {
    eng_hparams hp;      /* hyperparameters (defaults filled in) */
    tok_vocab *vocab;      /* tokenizer */
    float *tok_embd;       /* [n_vocab][n_embd] token embeddings */
    float *output_norm;    /* [n_embd] final RMSNorm weight */
    float *output;         /* [n_vocab][n_embd] output head; == tok_embd when tied */
    eng_layer *layers;   /* [n_layer] */
    float **allocs;        /* [n_allocs] every weight buffer, for freeing */
    size_t n_allocs;       /* entries in allocs */
};

#endif
