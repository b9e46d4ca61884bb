/* basis.c - the basis file: (de)serialization of the in-memory basis
 * (lib/model/basis.h, which model/basis.c implements).
 *
 * A basis file is a safetensors file (docs/FORMAT.md "Basis file"):
 * tensors k.mean, k.weight, k.basis, k.eigenvalues and the same for v (F32),
 * and string metadata with the geometry and the plans. numpy/PyTorch users
 * read it with the stock safetensors package. */
#include "model/basis.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "util/cache.h"
#include "util/hash.h"
#include "util/number.h"

#include <xxhash.h>

#define BASIS_FORMAT_NAME "kvtc-basis"
/* Version 2 (issue 9 item 7): content_hash is an XXH3-128 digest over the
 * raw tensors and plan texts (32 hex digits). Version 1's 64-bit hash could
 * be forged word by word; version 1 files are still read. */
#define BASIS_FORMAT_VERSION 2
#define BASIS_FORMAT_VERSION_V1_HASH 1
#define BASIS_MAX_PLANS 64

static char *groups_to_string(const plan_stream *s);

/* Hash of everything in a basis file that the transform fingerprint does not
 * cover: the eigenvalues and the exact text of every plan entry (ratio,
 * groups, errors), so a flipped bit anywhere in a basis file is caught on
 * load, even one that parses to the same number ("1e-5" vs "1E-5").
 * meta(ctx, key) returns a malloc'd copy of the text stored under key, or NULL. */
typedef char *(*meta_text_fn)(void *ctx, const char *key);

static kvtc_result basis_content_hash(const kvtc_basis *b, uint32_t n_plans, meta_text_fn meta, void *ctx,
                                      uint64_t *out) {
    static const char *fields[] = {"ratio", "k", "k_error", "v", "v_error"};
    uint64_t h = kvi_hash_update(b->transform_fingerprint, b->k.eigenvalues, sizeof(float) * b->k.rank);
    h = kvi_hash_update(h, b->v.eigenvalues, sizeof(float) * b->v.rank);
    char key[48];
    for (uint32_t i = 0; i < n_plans; i++)
        for (int fi = 0; fi < 5; fi++) {
            snprintf(key, sizeof key, "plan.%u.%s", i, fields[fi]);
            char *text = meta(ctx, key);
            if (!text) return KVTC_ERR_CORRUPT;
            h = kvi_hash_update(h, text, strlen(text) + 1);
            free(text);
        }
    *out = h;
    return KVTC_OK;
}

/* Version 2 content digest: XXH3-128 of "kvtc-basis-2", the canonical
 * geometry (as the transform fingerprint), then per stream k, v: u32 p,
 * u32 rank, the bytes of mean, weight, basis, eigenvalues; then every plan
 * field's exact text with its NUL. Written as 32 lowercase hex digits
 * (high 64 bits first). */
static kvtc_result basis_content_digest(const kvtc_basis *b, uint32_t n_plans, meta_text_fn meta, void *ctx,
                                        char out[33]) {
    static const char *fields[] = {"ratio", "k", "k_error", "v", "v_error"};
    XXH3_state_t *st = XXH3_createState();
    if (!st) return KVTC_ERR_OUT_OF_MEMORY;
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, "kvtc-basis-2", 12);
    uint32_t geo[8] = {b->geometry.n_layers, b->geometry.n_kv_heads, b->geometry.head_dim,
                       kvi_geometry_rope_dim(&b->geometry), (uint32_t)b->geometry.rope_type, 0,
                       b->recompute_layers, (uint32_t)b->rope_removed};
    memcpy(&geo[5], &b->geometry.rope_theta, 4);
    XXH3_128bits_update(st, geo, sizeof geo);
    for (int s = 0; s < 2; s++) {
        const basis_stream *bs = s ? &b->v : &b->k;
        uint32_t pr[2] = {bs->p, bs->rank};
        XXH3_128bits_update(st, pr, sizeof pr);
        XXH3_128bits_update(st, bs->mean, sizeof(float) * bs->p);
        XXH3_128bits_update(st, bs->weight, sizeof(float) * bs->p);
        XXH3_128bits_update(st, bs->basis, sizeof(float) * (size_t)bs->rank * bs->p);
        XXH3_128bits_update(st, bs->eigenvalues, sizeof(float) * bs->rank);
    }
    char key[48];
    kvtc_result r = KVTC_OK;
    for (uint32_t i = 0; i < n_plans && !r; i++)
        for (int fi = 0; fi < 5; fi++) {
            snprintf(key, sizeof key, "plan.%u.%s", i, fields[fi]);
            char *text = meta(ctx, key);
            if (!text) { r = KVTC_ERR_CORRUPT; break; }
            XXH3_128bits_update(st, text, strlen(text) + 1);
            free(text);
        }
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    if (r) return r;
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64, (uint64_t)h.low64);
    return KVTC_OK;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* meta_text_fn over a loaded file */
static char *file_meta_text(void *ctx, const char *key) {
    const char *v = st_meta_get(ctx, key);
    return v ? dup_string(v) : NULL;
}

/* meta_text_fn over an in-memory basis: the text the writer stores */
static char *basis_meta_text(void *ctx, const char *key) {
    const kvtc_basis *b = ctx;
    unsigned i;
    char field[16], buf[64];
    if (sscanf(key, "plan.%u.%15s", &i, field) != 2 || i >= b->n_plans) return NULL;
    const basis_plan *pl = &b->plans[i];
    if (!strcmp(field, "ratio")) kvi_format_g(buf, sizeof buf, 17, pl->target_ratio);
    else if (!strcmp(field, "k_error")) kvi_format_g(buf, sizeof buf, 17, pl->k.error);
    else if (!strcmp(field, "v_error")) kvi_format_g(buf, sizeof buf, 17, pl->v.error);
    else if (!strcmp(field, "k")) return groups_to_string(&pl->k);
    else if (!strcmp(field, "v")) return groups_to_string(&pl->v);
    else return NULL;
    return dup_string(buf);
}

/* ---- serialization ---------------------------------------------------- */

static const char *rope_type_name(kvtc_rope_type t) {
    return t == KVTC_ROPE_NORM ? "norm" : t == KVTC_ROPE_NEOX ? "neox" : "none";
}

/* "size:bits,size:bits,..." */
static char *groups_to_string(const plan_stream *s) {
    size_t cap = (size_t)s->n_groups * 16 + 1, len = 0;
    char *str = malloc(cap);
    if (!str) return NULL;
    str[0] = 0;
    for (uint32_t i = 0; i < s->n_groups; i++)
        len += (size_t)snprintf(str + len, cap - len, "%s%" PRIu32 ":%u", i ? "," : "",
                                s->groups[i].size, (unsigned)s->groups[i].bits);
    return str;
}

/* "size:bits,..." -> groups, validated by plan_stream_from_groups (rank
 * checked by the caller, against the stream's stored components). */
static kvtc_result groups_from_string(const char *str, uint32_t p, plan_stream *out) {
    memset(out, 0, sizeof *out);
    size_t n = 1;
    for (const char *c = str; *c; c++) n += *c == ',';
    if (n > BASIS_MAX_GROUPS || n > (size_t)p) return KVTC_ERR_CORRUPT;
    dp_group *g = calloc(n, sizeof(dp_group));
    if (!g) return KVTC_ERR_OUT_OF_MEMORY;
    const char *c = str;
    kvtc_result r = KVTC_ERR_CORRUPT;
    for (size_t i = 0; i < n; i++) {
        char *end;
        if (*c < '0' || *c > '9') goto done;
        unsigned long size = strtoul(c, &end, 10);
        if (*end != ':' || size == 0 || size > p) goto done;
        c = end + 1;
        if (*c < '0' || *c > '9') goto done;
        unsigned long bits = strtoul(c, &end, 10);
        if (bits > DP_RAW_BITS) goto done;
        if (*end != (i + 1 < n ? ',' : '\0')) goto done;
        c = end + 1;
        g[i].size = (uint32_t)size;
        g[i].bits = (uint8_t)bits;
    }
    r = plan_stream_from_groups(g, (uint32_t)n, p, p, out);
done:
    free(g);
    return r;
}

static kvtc_result add_stream_tensors(st_writer *w, const char *pre, const basis_stream *s) {
    char name[32];
    uint64_t shp1[1] = {s->p}, shp2[2] = {s->rank, s->p}, shpr[1] = {s->rank};
    kvtc_result r;
    snprintf(name, sizeof name, "%s.mean", pre);
    if ((r = st_writer_add_tensor(w, name, ST_F32, 1, shp1, s->mean))) return r;
    snprintf(name, sizeof name, "%s.weight", pre);
    if ((r = st_writer_add_tensor(w, name, ST_F32, 1, shp1, s->weight))) return r;
    snprintf(name, sizeof name, "%s.basis", pre);
    if ((r = st_writer_add_tensor(w, name, ST_F32, 2, shp2, s->basis))) return r;
    snprintf(name, sizeof name, "%s.eigenvalues", pre);
    return st_writer_add_tensor(w, name, ST_F32, 1, shpr, s->eigenvalues);
}

static kvtc_result add_meta_u64(st_writer *w, const char *key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return st_writer_add_meta(w, key, buf);
}

/* Build a writer describing b. */
static kvtc_result basis_writer(const kvtc_basis *b, st_writer **out) {
    st_writer *w = st_writer_alloc();
    if (!w) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_result r = KVTC_OK;
    char buf[64];
    const kvtc_geometry *g = &b->geometry;
    if ((r = st_writer_add_meta(w, "format", BASIS_FORMAT_NAME))) goto fail;
    if ((r = add_meta_u64(w, "format_version", BASIS_FORMAT_VERSION))) goto fail;
    if ((r = add_meta_u64(w, "n_layers", g->n_layers))) goto fail;
    if ((r = add_meta_u64(w, "n_kv_heads", g->n_kv_heads))) goto fail;
    if ((r = add_meta_u64(w, "head_dim", g->head_dim))) goto fail;
    if ((r = add_meta_u64(w, "rope_dim", kvi_geometry_rope_dim(g)))) goto fail;
    if ((r = st_writer_add_meta(w, "rope_type", rope_type_name(g->rope_type)))) goto fail;
    kvi_format_g(buf, sizeof buf, 9, (double)g->rope_theta);
    if ((r = st_writer_add_meta(w, "rope_theta", buf))) goto fail;
    if ((r = add_meta_u64(w, "recompute_layers", b->recompute_layers))) goto fail;
    if ((r = add_meta_u64(w, "rope_removed", (uint64_t)b->rope_removed))) goto fail;
    snprintf(buf, sizeof buf, "%016" PRIx64, b->transform_fingerprint);
    if ((r = st_writer_add_meta(w, "transform_fingerprint", buf))) goto fail;
    if ((r = add_meta_u64(w, "n_plans", b->n_plans))) goto fail;
    if ((r = basis_content_digest(b, b->n_plans, basis_meta_text, (void *)b, buf))) goto fail;
    if ((r = st_writer_add_meta(w, "content_hash", buf))) goto fail;
    static const char *fields[] = {"ratio", "k", "k_error", "v", "v_error"};
    for (uint32_t i = 0; i < b->n_plans; i++)
        for (int fi = 0; fi < 5; fi++) {
            char key[48];
            snprintf(key, sizeof key, "plan.%u.%s", i, fields[fi]);
            char *text = basis_meta_text((void *)b, key);
            if (!text) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail; }
            r = st_writer_add_meta(w, key, text);
            free(text);
            if (r) goto fail;
        }
    if ((r = add_stream_tensors(w, "k", &b->k))) goto fail;
    if ((r = add_stream_tensors(w, "v", &b->v))) goto fail;
    *out = w;
    return KVTC_OK;
fail:
    st_writer_free(w);
    return r;
}

size_t kvtc_basis_serialized_size(const kvtc_basis *b) {
    if (!b) return 0;
    st_writer *w;
    if (basis_writer(b, &w)) return 0;
    size_t n = st_writer_size(w);
    st_writer_free(w);
    return n;
}

kvtc_result kvtc_basis_serialize(const kvtc_basis *b, void *buf, size_t cap, size_t *written) {
    if (!b || !buf || !written) return KVTC_ERR_INVALID_ARGUMENT;
    st_writer *w;
    kvtc_result r = basis_writer(b, &w);
    if (r) return r;
    r = st_writer_write(w, buf, cap, written);
    st_writer_free(w);
    return r;
}

/* ---- loading ---------------------------------------------------------- */

static kvtc_result meta_u32(const st_file *f, const char *key, uint32_t *out) {
    const char *s = st_meta_get(f, key);
    uint64_t v;
    if (kvi_parse_u64(s, &v) || v > UINT32_MAX) return KVTC_ERR_CORRUPT;
    *out = (uint32_t)v;
    return KVTC_OK;
}

static kvtc_result meta_double(const st_file *f, const char *key, double *out) {
    const char *s = st_meta_get(f, key);
    double v;
    if (kvi_parse_decimal(s, &v)) return KVTC_ERR_CORRUPT;
    *out = v;
    return KVTC_OK;
}

static kvtc_result copy_tensor(const st_file *f, const char *name, uint32_t n_dims,
                               const uint64_t *shape, float **out) {
    const st_tensor *t = st_find(f, name);
    if (!t) return KVTC_ERR_CORRUPT;
    if (t->dtype != ST_F32 || t->n_dims != n_dims) return KVTC_ERR_CORRUPT;
    for (uint32_t i = 0; i < n_dims; i++)
        if (t->shape[i] != shape[i]) return KVTC_ERR_CORRUPT;
    size_t bytes = (size_t)t->nbytes;
    *out = malloc(bytes ? bytes : 1);
    if (!*out) return KVTC_ERR_OUT_OF_MEMORY;
    memcpy(*out, t->data, bytes);
    for (uint64_t i = 0; i < t->n_elements; i++)
        if (!isfinite((*out)[i])) return KVTC_ERR_NUMERIC;
    return KVTC_OK;
}

static kvtc_result load_stream(const st_file *f, const char *pre, uint32_t p, basis_stream *s) {
    char name[32];
    snprintf(name, sizeof name, "%s.basis", pre);
    const st_tensor *t = st_find(f, name);
    if (!t || t->n_dims != 2 || t->shape[1] != p || t->shape[0] > p) return KVTC_ERR_CORRUPT;
    s->p = p;
    s->rank = (uint32_t)t->shape[0];
    uint64_t shp1[1] = {p}, shp2[2] = {s->rank, p}, shpr[1] = {s->rank};
    kvtc_result r;
    snprintf(name, sizeof name, "%s.mean", pre);
    if ((r = copy_tensor(f, name, 1, shp1, &s->mean))) return r;
    snprintf(name, sizeof name, "%s.weight", pre);
    if ((r = copy_tensor(f, name, 1, shp1, &s->weight))) return r;
    for (uint32_t i = 0; i < p; i++)
        if (!(s->weight[i] > 0.0f)) return KVTC_ERR_CORRUPT;
    snprintf(name, sizeof name, "%s.basis", pre);
    if ((r = copy_tensor(f, name, 2, shp2, &s->basis))) return r;
    snprintf(name, sizeof name, "%s.eigenvalues", pre);
    return copy_tensor(f, name, 1, shpr, &s->eigenvalues);
}

kvtc_result kvtc_basis_load(const void *buf, size_t size, kvtc_basis **out) {
    if (!buf || !out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    st_file f;
    kvtc_result r = st_parse(buf, size, &f);
    if (r) return r;
    kvtc_basis *b = calloc(1, sizeof *b);
    if (!b) { st_file_free(&f); return KVTC_ERR_OUT_OF_MEMORY; }
    const char *fmt = st_meta_get(&f, "format");
    uint32_t ver = 0, rope_dim = 0, n_plans = 0, rr = 0;
    double theta = 0;
    if (!fmt || strcmp(fmt, BASIS_FORMAT_NAME) != 0) { r = KVTC_ERR_BAD_MAGIC; goto fail; }
    if ((r = meta_u32(&f, "format_version", &ver))) goto fail;
    if (ver != BASIS_FORMAT_VERSION && ver != BASIS_FORMAT_VERSION_V1_HASH) {
        r = KVTC_ERR_UNSUPPORTED_VERSION;
        goto fail;
    }
    kvtc_geometry *g = &b->geometry;
    if ((r = meta_u32(&f, "n_layers", &g->n_layers))) goto fail;
    if ((r = meta_u32(&f, "n_kv_heads", &g->n_kv_heads))) goto fail;
    if ((r = meta_u32(&f, "head_dim", &g->head_dim))) goto fail;
    if ((r = meta_u32(&f, "rope_dim", &rope_dim))) goto fail;
    g->rope_dim = rope_dim;
    const char *rt = st_meta_get(&f, "rope_type");
    if (!rt) { r = KVTC_ERR_CORRUPT; goto fail; }
    if (!strcmp(rt, "norm")) g->rope_type = KVTC_ROPE_NORM;
    else if (!strcmp(rt, "neox")) g->rope_type = KVTC_ROPE_NEOX;
    else if (!strcmp(rt, "none")) g->rope_type = KVTC_ROPE_NONE;
    else { r = KVTC_ERR_CORRUPT; goto fail; }
    if ((r = meta_double(&f, "rope_theta", &theta))) goto fail;
    g->rope_theta = (float)theta;
    if ((r = kvi_geometry_check(g)) != KVTC_OK) {
        r = r == KVTC_ERR_TOO_LARGE ? r : KVTC_ERR_CORRUPT;
        goto fail;
    }
    if ((r = meta_u32(&f, "recompute_layers", &b->recompute_layers))) goto fail;
    if (b->recompute_layers >= g->n_layers) { r = KVTC_ERR_CORRUPT; goto fail; }
    if ((r = meta_u32(&f, "rope_removed", &rr)) || rr > 1) { r = KVTC_ERR_CORRUPT; goto fail; }
    b->rope_removed = (int)rr;
    uint32_t p = (uint32_t)kvi_row_width(g, b->recompute_layers);
    if ((r = load_stream(&f, "k", p, &b->k))) goto fail;
    if ((r = load_stream(&f, "v", p, &b->v))) goto fail;
    if ((r = meta_u32(&f, "n_plans", &n_plans))) goto fail;
    if (n_plans > BASIS_MAX_PLANS) { r = KVTC_ERR_CORRUPT; goto fail; }
    b->plans = calloc(n_plans ? n_plans : 1, sizeof(basis_plan));
    if (!b->plans) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail; }
    for (uint32_t i = 0; i < n_plans; i++) {
        char key[48];
        basis_plan *pl = &b->plans[i];
        b->n_plans = i + 1;
        snprintf(key, sizeof key, "plan.%u.ratio", i);
        if ((r = meta_double(&f, key, &pl->target_ratio))) goto fail;
        if (!(pl->target_ratio > 0)) { r = KVTC_ERR_CORRUPT; goto fail; }
        for (int s = 0; s < 2; s++) {
            plan_stream *ps = s ? &pl->v : &pl->k;
            const basis_stream *bs = s ? &b->v : &b->k;
            snprintf(key, sizeof key, "plan.%u.%s", i, s ? "v" : "k");
            const char *str = st_meta_get(&f, key);
            if (!str) { r = KVTC_ERR_CORRUPT; goto fail; }
            if ((r = groups_from_string(str, p, ps))) goto fail;
            if (ps->rank_used > bs->rank) { r = KVTC_ERR_CORRUPT; goto fail; }
            snprintf(key, sizeof key, "plan.%u.%s_error", i, s ? "v" : "k");
            if ((r = meta_double(&f, key, &ps->error))) goto fail;
        }
    }
    if (basis_has_degenerate_plan(b)) { r = KVTC_ERR_CORRUPT; goto fail; }
    basis_update_fingerprints(b);
    const char *fp = st_meta_get(&f, "transform_fingerprint");
    char want[40];
    snprintf(want, sizeof want, "%016" PRIx64, b->transform_fingerprint);
    if (!fp || strcmp(fp, want) != 0) { r = KVTC_ERR_CORRUPT; goto fail; }
    if (ver == BASIS_FORMAT_VERSION_V1_HASH) {
        uint64_t content;
        if ((r = basis_content_hash(b, b->n_plans, file_meta_text, &f, &content))) goto fail;
        snprintf(want, sizeof want, "%016" PRIx64, content);
    } else if ((r = basis_content_digest(b, b->n_plans, file_meta_text, &f, want))) {
        goto fail;
    }
    const char *ch = st_meta_get(&f, "content_hash");
    if (!ch || strcmp(ch, want) != 0) { r = KVTC_ERR_CORRUPT; goto fail; }
    st_file_free(&f);
    *out = b;
    return KVTC_OK;
fail:
    st_file_free(&f);
    kvtc_basis_free(b);
    return r;
}
