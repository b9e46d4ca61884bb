/* model_fingerprint.c - see model_fingerprint.h. XXH3-64 (seed 0) of, in
 * this order (all integers little-endian):
 *   "kvtc-model-fp1", u32 recompute_layers;
 *   each tensor in file order named "token_embd.weight" or "blk.<i>.*" with
 *     i < recompute_layers: name, NUL, u32 type, u32 n_dims, u64 ne[n_dims],
 *     its data bytes;
 *   each metadata entry in file order whose key starts with "tokenizer." or
 *     "llama.": key, NUL, u32 type, then the value (value_bytes below).
 * The file is parsed with the engine's validating GGUF reader. */
#include "model_fingerprint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cli.h"
#include "gguf.h"
#include "kv_geometry.h"

static void put_u32(XXH3_state_t *st, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    XXH3_64bits_update(st, b, 4);
}

static void put_u64(XXH3_state_t *st, uint64_t v) {
    put_u32(st, (uint32_t)v);
    put_u32(st, (uint32_t)(v >> 32));
}

static void put_str(XXH3_state_t *st, const char *s, size_t n) {
    put_u64(st, n);
    XXH3_64bits_update(st, s, n);
}

static void put_f64(XXH3_state_t *st, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    put_u64(st, u);
}

/* Scalars: u64 of the integer (two's complement for signed), or the f64
 * bits of a float; strings: u64 length + bytes; arrays: u32 element type,
 * u64 count, elements (strings as strings, numbers as f64). */
static void value_bytes(XXH3_state_t *st, const eng_gguf_kv *kv) {
    switch (kv->type) {
    case ENG_GGUF_VT_STRING: put_str(st, (const char *)kv->data, (size_t)kv->len); break;
    case ENG_GGUF_VT_FLOAT32:
    case ENG_GGUF_VT_FLOAT64: put_f64(st, kv->num.f); break;
    case ENG_GGUF_VT_INT8:
    case ENG_GGUF_VT_INT16:
    case ENG_GGUF_VT_INT32:
    case ENG_GGUF_VT_INT64: put_u64(st, (uint64_t)kv->num.i); break;
    case ENG_GGUF_VT_ARRAY:
        put_u32(st, kv->arr_type);
        put_u64(st, kv->len);
        for (uint64_t i = 0; i < kv->len; i++) {
            if (kv->arr_type == ENG_GGUF_VT_STRING) {
                const char *s;
                size_t n;
                eng_gguf_arr_str(kv, i, &s, &n);
                put_str(st, s, n);
            } else if (kv->arr_type != ENG_GGUF_VT_ARRAY) {
                put_f64(st, eng_gguf_arr_num(kv, i));
            }
        }
        break;
    default: put_u64(st, kv->num.u); break;
    }
}

static int layer_tensor(const char *name, uint32_t m) {
    if (!strcmp(name, "token_embd.weight")) return 1;
    if (strncmp(name, "blk.", 4) != 0) return 0;
    char *end;
    unsigned long l = strtoul(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && l < m;
}

int model_check_geometry(const char *cmd, const char *path, const kvtc_geometry *model, const kvtc_geometry *basis) {
    if (model->n_layers == basis->n_layers && model->n_kv_heads == basis->n_kv_heads && model->head_dim == basis->head_dim)
        return 0;
    return cli_fail(cmd, "model %s is not the basis's model: %u layers x %u kv heads x %u dims, the basis %u x %u x %u", path,
                    model->n_layers, model->n_kv_heads, model->head_dim, basis->n_layers, basis->n_kv_heads,
                    basis->head_dim);
}

int model_fingerprint_file(const char *cmd, const char *path, uint32_t m, const kvtc_geometry *basis, uint64_t *out) {
    char err[256] = "";
    eng_gguf_file *gf = NULL;
    if (eng_gguf_open(path, &gf, err, sizeof err) != ENG_GGUF_OK) return cli_fail(cmd, "model %s: %s", path, err);
    if (basis) {
        kvtc_geometry g;
        int bad = eng_gguf_kv_geometry(gf, &g, err, sizeof err) ? cli_fail(cmd, "model %s: %s", path, err)
                                                              : model_check_geometry(cmd, path, &g, basis);
        if (bad) {
            eng_gguf_close(gf);
            return 1;
        }
    }
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        eng_gguf_close(gf);
        return cli_fail(cmd, "out of memory");
    }
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, "kvtc-model-fp1", 14);
    put_u32(st, m);
    for (uint64_t i = 0; i < gf->n_tensors; i++) {
        const eng_gguf_tensor *t = &gf->tensors[i];
        if (!layer_tensor(t->name, m)) continue;
        XXH3_64bits_update(st, t->name, strlen(t->name) + 1);
        put_u32(st, t->type);
        put_u32(st, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(st, t->ne[d]);
        XXH3_64bits_update(st, t->data, (size_t)t->nbytes);
    }
    for (uint64_t i = 0; i < gf->n_kv; i++) {
        const eng_gguf_kv *kv = &gf->kv[i];
        if (strncmp(kv->key, "tokenizer.", 10) != 0 && strncmp(kv->key, "llama.", 6) != 0) continue;
        XXH3_64bits_update(st, kv->key, strlen(kv->key) + 1);
        put_u32(st, kv->type);
        value_bytes(st, kv);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    eng_gguf_close(gf);
    *out = h ? h : 1; /* 0 means "none" in the stream */
    return 0;
}
