/*
 * llama_model.c - load a GGUF Llama model: hyperparameters with llama.cpp's
 * defaults, tensor presence and shape checks, float32 conversion of weights,
 * and the tokenizer. Also the tokenizer wrappers of the public API.
 */
#include "llama_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

/* ======================================================================== */
/* Errors                                                                   */
/* ======================================================================== */

const char *eng_status_string(int status) {
    switch (status) {
    case ENG_OK: return "ok";
    case ENG_E_IO: return "I/O error";
    case ENG_E_NOMEM: return "out of memory";
    case ENG_E_FORMAT: return "malformed GGUF";
    case ENG_E_UNSUPPORTED: return "unsupported";
    case ENG_E_MODEL: return "invalid model";
    case ENG_E_ARG: return "invalid argument";
    case ENG_E_CTX_FULL: return "context full";
    case ENG_E_TOKEN: return "token out of range";
    default: return "unknown status";
    }
}

/* Where load errors go. */
typedef struct load_err {
    char *msg;      /* [len] or NULL */
    size_t len;     /* bytes in msg */
    int status;     /* eng_status of the first error */
} load_err;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int lfail(load_err *e, int status, const char *fmt, ...) {
    e->status = status;
    if (e->msg && e->len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, e->len, fmt, ap);
        va_end(ap);
    }
    return status;
}

static int map_gguf_status(eng_gguf_status s) {
    switch (s) {
    case ENG_GGUF_OK: return ENG_OK;
    case ENG_GGUF_E_IO: return ENG_E_IO;
    case ENG_GGUF_E_NOMEM: return ENG_E_NOMEM;
    case ENG_GGUF_E_VERSION:
    case ENG_GGUF_E_TENSOR_TYPE: return ENG_E_UNSUPPORTED;
    default: return ENG_E_FORMAT;
    }
}

/* ======================================================================== */
/* Hyperparameters                                                          */
/* ======================================================================== */

/* A uint32 hyperparameter "<arch>.<name>": required ones fail when absent,
 * optional ones keep *out. Any integer type is accepted; per-layer arrays are not. */
static int hp_u32(const eng_gguf_file *gf, const char *arch, const char *name, int required,
                  uint32_t *out, load_err *e) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, name);
    int r = eng_gguf_get_u32(gf, key, out);
    if (r == 0 && required) return lfail(e, ENG_E_MODEL, "missing required key %s", key);
    if (r < 0) return lfail(e, ENG_E_MODEL, "key %s is not a non-negative 32-bit integer", key);
    return ENG_OK;
}

static int hp_f32(const eng_gguf_file *gf, const char *arch, const char *name, float *out,
                  load_err *e) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, name);
    if (eng_gguf_get_f32(gf, key, out) < 0)
        return lfail(e, ENG_E_MODEL, "key %s is not a float", key);
    return ENG_OK;
}

static int read_hparams(const eng_gguf_file *gf, uint32_t n_vocab, eng_hparams *hp, load_err *e) {
    const char *arch;
    size_t arch_len;
    int r = eng_gguf_get_str(gf, "general.architecture", &arch, &arch_len);
    if (r == 0) return lfail(e, ENG_E_MODEL, "missing required key general.architecture");
    if (r < 0) return lfail(e, ENG_E_MODEL, "general.architecture is not a string");
    /* qwen2 is llama with half-split ("neox") RoPE and q/k/v biases, as
     * llama.cpp maps it; its keys are prefixed "qwen2." instead of "llama.". */
    const char *A;
    if (arch_len == 5 && memcmp(arch, "llama", 5) == 0)
        A = "llama";
    else if (arch_len == 5 && memcmp(arch, "qwen2", 5) == 0)
        A = "qwen2";
    else
        return lfail(e, ENG_E_UNSUPPORTED, "unsupported architecture '%.*s' (llama, qwen2)",
                     (int)(arch_len > 64 ? 64 : arch_len), arch);

    memset(hp, 0, sizeof(*hp));
    hp->n_vocab = n_vocab;
    if (hp_u32(gf, A, "context_length", 1, &hp->n_ctx_train, e) ||
        hp_u32(gf, A, "embedding_length", 1, &hp->n_embd, e) ||
        hp_u32(gf, A, "block_count", 1, &hp->n_layer, e) ||
        hp_u32(gf, A, "feed_forward_length", 1, &hp->n_ff, e) ||
        hp_u32(gf, A, "attention.head_count", 1, &hp->n_head, e))
        return e->status;
    /* llama.cpp defaults for the optional keys. */
    hp->n_head_kv = hp->n_head;
    hp->rope_theta = 10000.0f;
    hp->rms_eps = 1e-5f;
    /* what llama.cpp uses for LLM_ARCH_LLAMA / LLM_ARCH_QWEN2 */
    hp->rope_type = A[0] == 'q' ? ENG_ROPE_NEOX : ENG_ROPE_NORM;
    hp->has_qkv_bias = A[0] == 'q';
    if (hp_u32(gf, A, "attention.head_count_kv", 0, &hp->n_head_kv, e) ||
        hp_f32(gf, A, "rope.freq_base", &hp->rope_theta, e) ||
        hp_f32(gf, A, "attention.layer_norm_rms_epsilon", &hp->rms_eps, e))
        return e->status;

    const uint32_t big = 1u << 20; /* far above any model this engine will see */
    if (hp->n_embd == 0 || hp->n_embd > big || hp->n_layer == 0 || hp->n_layer > 4096 ||
        hp->n_ff == 0 || hp->n_ff > big || hp->n_head == 0 || hp->n_head > hp->n_embd ||
        hp->n_ctx_train == 0)
        return lfail(e, ENG_E_MODEL,
                     "implausible hyperparameters: n_embd %u n_layer %u n_ff %u n_head %u "
                     "context_length %u", hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head,
                     hp->n_ctx_train);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return lfail(e, ENG_E_MODEL, "head_count_kv %u does not divide head_count %u",
                     hp->n_head_kv, hp->n_head);

    if (hp->n_embd % hp->n_head)
        return lfail(e, ENG_E_MODEL, "embedding_length %u is not a multiple of head_count %u",
                     hp->n_embd, hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    uint32_t key_len = hp->head_dim, val_len = hp->head_dim;
    if (hp_u32(gf, A, "attention.key_length", 0, &key_len, e) ||
        hp_u32(gf, A, "attention.value_length", 0, &val_len, e))
        return e->status;
    if (key_len != val_len || key_len == 0 || key_len > big)
        return lfail(e, ENG_E_MODEL, "key_length %u / value_length %u unsupported", key_len,
                     val_len);
    hp->head_dim = key_len;
    hp->rope_dim = hp->head_dim;
    if (hp_u32(gf, A, "rope.dimension_count", 0, &hp->rope_dim, e)) return e->status;
    if (hp->rope_dim > hp->head_dim || hp->rope_dim % 2)
        return lfail(e, ENG_E_MODEL, "rope.dimension_count %u must be even and <= head_dim %u",
                     hp->rope_dim, hp->head_dim);
    if (!(hp->rope_theta > 0.0f) || !(hp->rms_eps >= 0.0f))
        return lfail(e, ENG_E_MODEL, "rope.freq_base %g / rms epsilon %g out of range",
                     (double)hp->rope_theta, (double)hp->rms_eps);

    uint32_t vs = n_vocab;
    if (hp_u32(gf, A, "vocab_size", 0, &vs, e)) return e->status;
    if (vs != n_vocab)
        return lfail(e, ENG_E_MODEL, "llama.vocab_size %u but the tokenizer has %u tokens", vs,
                     n_vocab);
    return ENG_OK;
}

/* ======================================================================== */
/* Tensors                                                                  */
/* ======================================================================== */

/* Load tensor `name` with extents ne0 x ne1 (ne1 = 1 for vectors) as float32.
 * *out stays NULL for an absent optional tensor. */
static int load_tensor(const eng_gguf_file *gf, eng_model *m, const char *name, uint64_t ne0,
                       uint64_t ne1, int required, float **out, load_err *e) {
    *out = NULL;
    const eng_gguf_tensor *t = eng_gguf_find_tensor(gf, name);
    if (!t) {
        if (required) return lfail(e, ENG_E_MODEL, "missing required tensor '%s'", name);
        return ENG_OK;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return lfail(e, ENG_E_MODEL,
                     "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]", name,
                     (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                     (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                     (unsigned long long)ne0, (unsigned long long)ne1);
    float *w = malloc((size_t)t->n_elements * sizeof(float));
    if (!w) return lfail(e, ENG_E_NOMEM, "out of memory for tensor '%s'", name);
    m->allocs[m->n_allocs++] = w;
    eng_gguf_tensor_to_f32(t, w);
    *out = w;
    return ENG_OK;
}

void eng_model_free(eng_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_allocs; i++) free(m->allocs[i]);
    free(m->allocs);
    free(m->layers);
    tok_vocab_free(m->vocab);
    free(m);
}

static eng_model *load_from_gguf(const eng_gguf_file *gf, load_err *e) {
    eng_model *m = calloc(1, sizeof(*m));
    if (!m) {
        lfail(e, ENG_E_NOMEM, "out of memory");
        return NULL;
    }
    char tmsg[256] = "";
    m->vocab = tok_vocab_from_gguf(gf, tmsg, sizeof(tmsg));
    if (!m->vocab) {
        lfail(e, strstr(tmsg, "unsupported") ? ENG_E_UNSUPPORTED : ENG_E_MODEL, "%s", tmsg);
        goto fail;
    }
    eng_hparams *hp = &m->hp;
    if (read_hparams(gf, tok_n_vocab(m->vocab), hp, e)) goto fail;

    /* 3 global tensors + 9 per layer (+ 3 biases for qwen2). */
    m->allocs = calloc(3 + 12 * (size_t)hp->n_layer, sizeof(float *));
    m->layers = calloc(hp->n_layer, sizeof(eng_layer));
    if (!m->allocs || !m->layers) {
        lfail(e, ENG_E_NOMEM, "out of memory");
        goto fail;
    }
    const uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim,
                   kvd = (uint64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff, nv = hp->n_vocab;
    if (load_tensor(gf, m, "token_embd.weight", d, nv, 1, &m->tok_embd, e) ||
        load_tensor(gf, m, "output_norm.weight", d, 1, 1, &m->output_norm, e) ||
        load_tensor(gf, m, "output.weight", d, nv, 0, &m->output, e))
        goto fail;
    if (!m->output) {
        m->output = m->tok_embd;
        hp->tied_output = 1;
    }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        eng_layer *L = &m->layers[l];
        char name[96];
#define LOAD(field, suffix, a, b)                                                   \
    do {                                                                            \
        snprintf(name, sizeof(name), "blk.%u." suffix ".weight", l);                \
        if (load_tensor(gf, m, name, a, b, 1, &L->field, e)) goto fail;             \
    } while (0)
        LOAD(attn_norm, "attn_norm", d, 1);
        LOAD(wq, "attn_q", d, qd);
        LOAD(wk, "attn_k", d, kvd);
        LOAD(wv, "attn_v", d, kvd);
        LOAD(wo, "attn_output", qd, d);
        LOAD(ffn_norm, "ffn_norm", d, 1);
        LOAD(w_gate, "ffn_gate", d, ff);
        LOAD(w_up, "ffn_up", d, ff);
        LOAD(w_down, "ffn_down", ff, d);
#undef LOAD
        if (hp->has_qkv_bias) {
#define LOAD_BIAS(field, suffix, a)                                                 \
    do {                                                                            \
        snprintf(name, sizeof(name), "blk.%u." suffix ".bias", l);                  \
        if (load_tensor(gf, m, name, a, 1, 1, &L->field, e)) goto fail;             \
    } while (0)
            LOAD_BIAS(bq, "attn_q", qd);
            LOAD_BIAS(bk, "attn_k", kvd);
            LOAD_BIAS(bv, "attn_v", kvd);
#undef LOAD_BIAS
        }
    }
    return m;

fail:
    eng_model_free(m);
    return NULL;
}

static eng_model *finish_load(eng_gguf_status gs, eng_gguf_file *gf, int *status, char *err,
                                size_t errlen) {
    load_err e = {err, errlen, ENG_OK};
    eng_model *m = NULL;
    if (gs != ENG_GGUF_OK) {
        e.status = map_gguf_status(gs); /* gguf already wrote the message */
    } else {
        m = load_from_gguf(gf, &e);
        eng_gguf_close(gf); /* weights are converted copies; the file bytes can go */
    }
    if (status) *status = m ? ENG_OK : e.status;
    if (m && err && errlen) err[0] = '\0';
    return m;
}

eng_model *eng_model_load_ex(const char *path, int *status, char *err, size_t errlen) {
    eng_gguf_file *gf = NULL;
    if (!path) {
        if (status) *status = ENG_E_ARG;
        if (err && errlen) snprintf(err, errlen, "NULL path");
        return NULL;
    }
    eng_gguf_status gs = eng_gguf_open(path, &gf, err, errlen);
    return finish_load(gs, gf, status, err, errlen);
}

eng_model *eng_model_load(const char *path, char *err, size_t errlen) {
    return eng_model_load_ex(path, NULL, err, errlen);
}

eng_model *eng_model_load_memory(const void *data, size_t size, int *status, char *err,
                                     size_t errlen) {
    eng_gguf_file *gf = NULL;
    eng_gguf_status gs = eng_gguf_open_memory(data, size, &gf, err, errlen);
    return finish_load(gs, gf, status, err, errlen);
}

const eng_hparams *eng_model_hparams(const eng_model *m) { return &m->hp; }

/* ======================================================================== */
/* Tokenizer wrappers                                                       */
/* ======================================================================== */

int eng_tokenize(const eng_model *m, const char *text, size_t len, int add_bos, int32_t *out,
                   size_t cap) {
    if (!m || (!text && len) || (!out && cap)) return ENG_E_ARG;
    int64_t n = tok_encode(m->vocab, text ? text : "", len, add_bos, out, cap);
    if (n < 0 || n > INT32_MAX) return ENG_E_NOMEM;
    return (int)n;
}

const char *eng_token_piece(const eng_model *m, int32_t id) { return tok_piece(m->vocab, id); }

size_t eng_detokenize(const eng_model *m, const int32_t *ids, size_t n,
                        int strip_leading_space, char *out, size_t cap) {
    return tok_decode(m->vocab, ids, n, strip_leading_space, out, cap);
}

int32_t eng_token_bos(const eng_model *m) { return tok_bos(m->vocab); }
int32_t eng_token_eos(const eng_model *m) { return tok_eos(m->vocab); }
