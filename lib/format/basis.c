/* basis.c - basis lifetime, fingerprints, accessors and (de)serialization.
 *
 * A basis file is a safetensors file (docs/FORMAT.md "Basis file"):
 * tensors k.mean, k.weight, k.basis, k.eigenvalues and the same for v (F32),
 * and string metadata with the geometry and the plans. numpy/PyTorch users
 * read it with the stock safetensors package. */
#include "format/basis.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "util/cache.h"
#include "util/hash.h"

#define BASIS_FORMAT_NAME "kvtc-basis"
#define BASIS_FORMAT_VERSION 1
#define BASIS_MAX_PLANS 64
#define BASIS_MAX_GROUPS (1u << 22)

void basis_stream_free(basis_stream *s) {
    free(s->mean);
    free(s->weight);
    free(s->basis);
    free(s->eigenvalues);
    memset(s, 0, sizeof *s);
}

void plan_stream_free(plan_stream *s) {
    free(s->groups);
    memset(s, 0, sizeof *s);
}

void plan_stream_finalize(plan_stream *s) {
    uint32_t col = 0;
    s->rank_used = 0;
    s->units = dp_plan_cost_units(s->groups, s->n_groups);
    for (uint32_t i = 0; i < s->n_groups; i++) {
        col += s->groups[i].size;
        if (s->groups[i].bits) s->rank_used = col;
    }
}

void kvtc_basis_free(kvtc_basis *b) {
    if (!b) return;
    basis_stream_free(&b->k);
    basis_stream_free(&b->v);
    for (uint32_t i = 0; i < b->n_plans; i++) {
        plan_stream_free(&b->plans[i].k);
        plan_stream_free(&b->plans[i].v);
    }
    free(b->plans);
    free(b);
}

static uint64_t hash_stream(uint64_t h, const basis_stream *s) {
    h = kvi_hash_update(h, &s->p, sizeof s->p);
    h = kvi_hash_update(h, &s->rank, sizeof s->rank);
    h = kvi_hash_update(h, s->mean, sizeof(float) * s->p);
    h = kvi_hash_update(h, s->weight, sizeof(float) * s->p);
    h = kvi_hash_update(h, s->basis, sizeof(float) * (size_t)s->rank * s->p);
    return h;
}

static uint64_t hash_groups(uint64_t h, const plan_stream *s) {
    for (uint32_t i = 0; i < s->n_groups; i++) {
        uint8_t rec[5];
        memcpy(rec, &s->groups[i].size, 4);
        rec[4] = s->groups[i].bits;
        h = kvi_hash_update(h, rec, sizeof rec);
    }
    return h;
}

void basis_update_fingerprints(kvtc_basis *b) {
    /* Hash a canonical byte form of the geometry so padding never enters. */
    uint32_t geo[8] = {b->geometry.n_layers, b->geometry.n_kv_heads, b->geometry.head_dim,
                       kvi_geometry_rope_dim(&b->geometry), (uint32_t)b->geometry.rope_type, 0,
                       b->recompute_layers, (uint32_t)b->rope_removed};
    memcpy(&geo[5], &b->geometry.rope_theta, 4);
    uint64_t h = kvi_hash_update(KVTC_HASH_SEED, geo, sizeof geo);
    h = hash_stream(h, &b->k);
    h = hash_stream(h, &b->v);
    b->transform_fingerprint = h;
    for (uint32_t i = 0; i < b->n_plans; i++) {
        uint64_t ph = hash_groups(h, &b->plans[i].k);
        ph = hash_groups(ph ^ 0x5555, &b->plans[i].v);
        b->plans[i].fingerprint = ph;
    }
}

int basis_find_plan_by_fingerprint(const kvtc_basis *b, uint64_t fp) {
    for (uint32_t i = 0; i < b->n_plans; i++)
        if (b->plans[i].fingerprint == fp) return (int)i;
    return -1;
}

double basis_reference_bits_per_token(const kvtc_basis *b) {
    const kvtc_geometry *g = &b->geometry;
    return 2.0 * 16.0 * g->n_layers * g->n_kv_heads * g->head_dim;
}

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
    if (!strcmp(field, "ratio")) snprintf(buf, sizeof buf, "%.17g", pl->target_ratio);
    else if (!strcmp(field, "k_error")) snprintf(buf, sizeof buf, "%.17g", pl->k.error);
    else if (!strcmp(field, "v_error")) snprintf(buf, sizeof buf, "%.17g", pl->v.error);
    else if (!strcmp(field, "k")) return groups_to_string(&pl->k);
    else if (!strcmp(field, "v")) return groups_to_string(&pl->v);
    else return NULL;
    return dup_string(buf);
}

/* ---- accessors -------------------------------------------------------- */

const kvtc_geometry *kvtc_basis_geometry(const kvtc_basis *b) { return b ? &b->geometry : NULL; }
uint32_t kvtc_basis_recomputed_layers(const kvtc_basis *b) { return b ? b->recompute_layers : 0; }
uint64_t kvtc_basis_fingerprint(const kvtc_basis *b) { return b ? b->transform_fingerprint : 0; }
uint32_t kvtc_basis_plan_count(const kvtc_basis *b) { return b ? b->n_plans : 0; }

kvtc_result kvtc_basis_plan_info(const kvtc_basis *b, uint32_t index, kvtc_plan_info *out) {
    if (!b || !out) return KVTC_ERR_INVALID_ARGUMENT;
    if (index >= b->n_plans) return KVTC_ERR_NO_PLAN;
    const basis_plan *pl = &b->plans[index];
    out->target_ratio = pl->target_ratio;
    out->bits_per_token = 16.0 * (double)(pl->k.units + pl->v.units);
    out->expected_error_k = pl->k.error;
    out->expected_error_v = pl->v.error;
    out->n_groups_k = pl->k.n_groups;
    out->n_groups_v = pl->v.n_groups;
    out->rank_k = pl->k.rank_used;
    out->rank_v = pl->v.rank_used;
    return KVTC_OK;
}

kvtc_result kvtc_basis_find_plan(const kvtc_basis *b, double ratio, uint32_t *index) {
    if (!b || !index || !(ratio > 0)) return KVTC_ERR_INVALID_ARGUMENT;
    if (b->n_plans == 0) return KVTC_ERR_NO_PLAN;
    double best = INFINITY;
    for (uint32_t i = 0; i < b->n_plans; i++) {
        double d = fabs(log(b->plans[i].target_ratio / ratio));
        if (d < best) {
            best = d;
            *index = i;
        }
    }
    return KVTC_OK;
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

static kvtc_result groups_from_string(const char *str, uint32_t p, plan_stream *out) {
    memset(out, 0, sizeof *out);
    size_t n = 1;
    for (const char *c = str; *c; c++) n += *c == ',';
    if (n > BASIS_MAX_GROUPS || n > (size_t)p) return KVTC_ERR_CORRUPT;
    out->groups = calloc(n, sizeof(dp_group));
    if (!out->groups) return KVTC_ERR_OUT_OF_MEMORY;
    const char *c = str;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char *end;
        if (*c < '0' || *c > '9') goto bad;
        unsigned long size = strtoul(c, &end, 10);
        if (*end != ':' || size == 0 || size > p) goto bad;
        c = end + 1;
        if (*c < '0' || *c > '9') goto bad;
        unsigned long bits = strtoul(c, &end, 10);
        if (!(bits <= DP_MAX_BITS || bits == DP_RAW_BITS)) goto bad;
        /* quantized groups only in the sizes the cost model knows */
        if (bits >= 1 && bits <= DP_MAX_BITS && size != 16 && size != 64 && size != 256 && size != 1024)
            goto bad;
        if (*end != (i + 1 < n ? ',' : '\0')) goto bad;
        c = end + 1;
        out->groups[i].size = (uint32_t)size;
        out->groups[i].bits = (uint8_t)bits;
        total += size;
    }
    if (total != p) goto bad;
    out->n_groups = (uint32_t)n;
    plan_stream_finalize(out);
    return KVTC_OK;
bad:
    plan_stream_free(out);
    return KVTC_ERR_CORRUPT;
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
    snprintf(buf, sizeof buf, "%.9g", (double)g->rope_theta);
    if ((r = st_writer_add_meta(w, "rope_theta", buf))) goto fail;
    if ((r = add_meta_u64(w, "recompute_layers", b->recompute_layers))) goto fail;
    if ((r = add_meta_u64(w, "rope_removed", (uint64_t)b->rope_removed))) goto fail;
    snprintf(buf, sizeof buf, "%016" PRIx64, b->transform_fingerprint);
    if ((r = st_writer_add_meta(w, "transform_fingerprint", buf))) goto fail;
    if ((r = add_meta_u64(w, "n_plans", b->n_plans))) goto fail;
    uint64_t content;
    if ((r = basis_content_hash(b, b->n_plans, basis_meta_text, (void *)b, &content))) goto fail;
    snprintf(buf, sizeof buf, "%016" PRIx64, content);
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
    if (!s || *s < '0' || *s > '9') return KVTC_ERR_CORRUPT;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v > UINT32_MAX) return KVTC_ERR_CORRUPT;
    *out = (uint32_t)v;
    return KVTC_OK;
}

static kvtc_result meta_double(const st_file *f, const char *key, double *out) {
    const char *s = st_meta_get(f, key);
    if (!s || !*s) return KVTC_ERR_CORRUPT;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return KVTC_ERR_CORRUPT;
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
    if (ver != BASIS_FORMAT_VERSION) { r = KVTC_ERR_UNSUPPORTED_VERSION; goto fail; }
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
    basis_update_fingerprints(b);
    const char *fp = st_meta_get(&f, "transform_fingerprint");
    char want[32];
    snprintf(want, sizeof want, "%016" PRIx64, b->transform_fingerprint);
    if (!fp || strcmp(fp, want) != 0) { r = KVTC_ERR_CORRUPT; goto fail; }
    uint64_t content;
    if ((r = basis_content_hash(b, b->n_plans, file_meta_text, &f, &content))) goto fail;
    snprintf(want, sizeof want, "%016" PRIx64, content);
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
