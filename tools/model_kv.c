/* model_kv.c - see model_kv.h. */
#include "model_kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "internal.h"

int model_text_load(model_text *mt, const char *model_path, const char *text_path) {
    memset(mt, 0, sizeof *mt);
    char err[512] = "";
    mt->model = eng_model_load(model_path, err, sizeof err);
    if (!mt->model) return cli_fail("model", "%s", err);
    if (!text_path) return 0;
    void *buf;
    size_t size;
    if (cli_read_file(text_path, &buf, &size, err, sizeof err)) {
        model_text_free(mt);
        return cli_fail("text", "%s", err);
    }
    /* text never holds a NUL byte: a binary file (a model, a basis, a cache
     * given as --text) would tokenize into byte tokens and calibrate or score
     * garbage without a word */
    const char *nul = memchr(buf, 0, size);
    if (nul) {
        size_t at = (size_t)(nul - (const char *)buf);
        free(buf);
        model_text_free(mt);
        return cli_fail("text", "%s is not a text file (a NUL byte at offset %zu)", text_path, at);
    }
    int n = eng_tokenize(mt->model, buf, size, 0, NULL, 0);
    if (n < 0) {
        free(buf);
        model_text_free(mt);
        return cli_fail("text", "tokenization failed: %s", eng_status_string(n));
    }
    mt->ids = malloc(sizeof(int32_t) * ((size_t)n + 1));
    if (!mt->ids) {
        free(buf);
        model_text_free(mt);
        return cli_fail("text", "out of memory");
    }
    mt->n_ids = (uint64_t)eng_tokenize(mt->model, buf, size, 0, mt->ids, (size_t)n);
    free(buf);
    return 0;
}

void model_text_free(model_text *mt) {
    eng_model_free(mt->model);
    free(mt->ids);
    memset(mt, 0, sizeof *mt);
}

kvtc_geometry model_geometry(const eng_model *m) {
    const eng_hparams *hp = eng_model_hparams(m);
    kvtc_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = hp->n_layer;
    g.n_kv_heads = hp->n_head_kv;
    g.head_dim = hp->head_dim;
    g.rope_dim = hp->rope_dim;
    g.rope_type = hp->rope_type == ENG_ROPE_NEOX ? KVTC_ROPE_NEOX : KVTC_ROPE_NORM;
    g.rope_theta = hp->rope_theta;
    return g;
}

uint64_t model_text_windows(const model_text *mt, uint32_t ctx) {
    return ctx > 1 ? mt->n_ids / (ctx - 1) : 0;
}

void model_text_window(const model_text *mt, uint32_t ctx, uint64_t w, int from_end, int32_t *out) {
    uint64_t len = ctx - 1;
    uint64_t start = from_end ? mt->n_ids - (w + 1) * len : w * len;
    out[0] = eng_token_bos(mt->model) >= 0 ? eng_token_bos(mt->model) : 1;
    memcpy(out + 1, mt->ids + start, sizeof(int32_t) * len);
}

void model_ctx_read_kv(eng_context *ctx, const eng_model *m, uint32_t n, float *k, float *v) {
    const eng_hparams *hp = eng_model_hparams(m);
    uint32_t n_ctx = eng_context_n_ctx(ctx), d = hp->head_dim;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const float *ck = eng_context_k(ctx, l), *cv = eng_context_v(ctx, l);
        for (uint32_t h = 0; h < hp->n_head_kv; h++) {
            size_t dst = ((size_t)l * hp->n_head_kv + h) * n * d;
            memcpy(k + dst, ck + (size_t)h * n_ctx * d, sizeof(float) * n * d);
            memcpy(v + dst, cv + (size_t)h * n_ctx * d, sizeof(float) * n * d);
        }
    }
}

void model_ctx_write_kv(eng_context *ctx, const eng_model *m, uint32_t n, const float *k, const float *v) {
    const eng_hparams *hp = eng_model_hparams(m);
    uint32_t n_ctx = eng_context_n_ctx(ctx), d = hp->head_dim;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        float *ck = eng_context_k(ctx, l), *cv = eng_context_v(ctx, l);
        for (uint32_t h = 0; h < hp->n_head_kv; h++) {
            size_t src = ((size_t)l * hp->n_head_kv + h) * n * d;
            memcpy(ck + (size_t)h * n_ctx * d, k + src, sizeof(float) * n * d);
            memcpy(cv + (size_t)h * n_ctx * d, v + src, sizeof(float) * n * d);
        }
    }
    eng_context_set_n_past(ctx, n);
}

int model_capture(const eng_model *m, const int32_t *tokens, uint32_t n, kvtc_dtype dtype,
                  uint32_t n_threads, cache_file *out) {
    kvtc_geometry g = model_geometry(m);
    eng_context *ctx = eng_context_alloc(m, n, n_threads);
    if (!ctx) return cli_fail("capture", "cannot allocate a context of %u tokens", n);
    int rc = eng_decode(ctx, tokens, n, NULL);
    if (rc) {
        cli_fail("capture", "decode failed: %s", eng_context_error(ctx));
        eng_context_free(ctx);
        return 1;
    }
    size_t per = (size_t)g.n_layers * g.n_kv_heads * n * g.head_dim;
    float *k = malloc(sizeof(float) * per), *v = malloc(sizeof(float) * per);
    kvtc_result r = cache_file_alloc(out, &g, dtype, n, 1, 1);
    if (!k || !v || r) {
        free(k); free(v);
        eng_context_free(ctx);
        if (!r) cache_file_free(out);
        return cli_fail("capture", "out of memory");
    }
    model_ctx_read_kv(ctx, m, n, k, v);
    for (size_t i = 0; i < per; i++) {
        kvi_store_elem(out->cache.k, dtype, i, k[i]);
        kvi_store_elem(out->cache.v, dtype, i, v[i]);
    }
    for (uint32_t t = 0; t < n; t++) {
        out->cache.positions[t] = t;
        out->cache.token_ids[t] = tokens[t];
    }
    free(k);
    free(v);
    eng_context_free(ctx);
    return 0;
}

int model_recompute(void *user, uint32_t n_layers, const int32_t *token_ids, const int64_t *positions,
                    uint64_t n_tokens, float *k_out, float *v_out) {
    const eng_model *m = user;
    return eng_compute_kv_prefix_layers(m, n_layers, token_ids, positions, n_tokens, k_out, v_out, 2) ==
                   ENG_OK
               ? 0
               : 1;
}
