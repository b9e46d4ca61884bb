/* basis.c - the in-memory basis (lib/model/basis.h): lifetime,
 * fingerprints, plan validation and the public accessors. The file form is
 * lib/format/basis.c. */
#include "model/basis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/cache.h"
#include "util/hash.h"
#include "util/out_struct.h"

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
    for (uint32_t i = 0; i < b->n_plans; i++) basis_plan_update_fingerprint(b, &b->plans[i]);
}

void basis_plan_update_fingerprint(const kvtc_basis *b, basis_plan *pl) {
    uint64_t ph = hash_groups(b->transform_fingerprint, &pl->k);
    pl->fingerprint = hash_groups(ph ^ 0x5555, &pl->v);
}

int basis_has_degenerate_plan(const kvtc_basis *b) {
    for (uint32_t i = 0; i < b->n_plans; i++)
        if (b->plans[i].k.rank_used == 0 && b->plans[i].v.rank_used == 0) return 1;
    return 0;
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

/* ---- accessors -------------------------------------------------------- */

const kvtc_geometry *kvtc_basis_geometry(const kvtc_basis *b) { return b ? &b->geometry : NULL; }
uint32_t kvtc_basis_recomputed_layers(const kvtc_basis *b) { return b ? b->recompute_layers : 0; }
uint64_t kvtc_basis_fingerprint(const kvtc_basis *b) { return b ? b->transform_fingerprint : 0; }
uint32_t kvtc_basis_plan_count(const kvtc_basis *b) { return b ? b->n_plans : 0; }

kvtc_result kvtc_basis_plan_info(const kvtc_basis *b, uint32_t index, kvtc_plan_info *caller) {
    /* filled completely here, then copied as far as the caller's struct_size reaches */
    kvtc_plan_info full = {0}, *out = &full;
    if (!b || !caller) return KVTC_ERR_INVALID_ARGUMENT;
    if (caller->struct_size < KVI_PLAN_INFO_MIN_SIZE) return KVTC_ERR_INVALID_ARGUMENT;
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
    return kvi_out_struct_fill(caller, out, sizeof *out, KVI_PLAN_INFO_MIN_SIZE);
}

kvtc_result kvtc_basis_find_plan(const kvtc_basis *b, double ratio, uint32_t *index) {
    if (!b || !index || !(ratio > 0) || !isfinite(ratio)) return KVTC_ERR_INVALID_ARGUMENT;
    if (b->n_plans == 0) return KVTC_ERR_NO_PLAN;
    /* plan 0 unless one is closer: a denormal ratio makes every distance
     * infinite, which left *index unwritten under KVTC_OK */
    *index = 0;
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

kvtc_result plan_stream_from_groups(const dp_group *g, uint32_t n, uint32_t p, uint32_t rank, plan_stream *out) {
    memset(out, 0, sizeof *out);
    if (n == 0 || n > BASIS_MAX_GROUPS || n > p) return KVTC_ERR_CORRUPT;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t size = g[i].size, bits = g[i].bits;
        if (size == 0 || size > p) return KVTC_ERR_CORRUPT;
        if (!(bits <= DP_MAX_BITS || bits == DP_RAW_BITS)) return KVTC_ERR_CORRUPT;
        /* quantized groups only in the sizes the cost model knows */
        if (bits >= 1 && bits <= DP_MAX_BITS && size != 16 && size != 64 && size != 256 && size != 1024)
            return KVTC_ERR_CORRUPT;
        total += size;
    }
    if (total != p) return KVTC_ERR_CORRUPT;
    out->groups = malloc(sizeof(dp_group) * n);
    if (!out->groups) return KVTC_ERR_OUT_OF_MEMORY;
    memcpy(out->groups, g, sizeof(dp_group) * n);
    out->n_groups = n;
    plan_stream_finalize(out);
    if (out->rank_used > rank) {
        plan_stream_free(out);
        return KVTC_ERR_CORRUPT;
    }
    return KVTC_OK;
}
