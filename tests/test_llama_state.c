/* test_llama_state.c - the llama.cpp state-file reader and writer
 * (lib/io/lcpp_state.h) on real llama.cpp files: every fixture parses to
 * exactly what its sidecar (written when the fixture was made) says, the
 * float read / requantizing write reproduces every byte, the 2025 and 2026
 * files of the same cache hold the same K/V, multi-stream and f32 files
 * built here parse, and damaged files get specific errors. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/lcpp_state.h"
#include "lcpp_fixtures.h"
#include "test.h"
#include "util/endian.h"

static int64_t jint(const json_value *o, const char *k) {
    const json_value *v = json_get(o, k);
    return v && v->type == JSON_NUMBER ? (int64_t)v->number : -1;
}

/* Full file -> hollow -> parse hollow -> expand + float read/write: the
 * bytes must come back identical (f16/bf16/f32 exactly; q8_0 because
 * requantizing a dequantized q8_0 row gives the same blocks). */
static int rebuild_identical(const lcpp_state *s, const uint8_t *buf) {
    size_t hn = lcpp_state_hollow_size(s);
    uint8_t *hollow = malloc(hn + 1), *out = malloc(s->full_size + 1);
    lcpp_state h;
    int ok = 0;
    lcpp_state_make_hollow(s, buf, hollow);
    if (lcpp_state_parse_hollow(hollow, hn, lcpp_state_shape(s), &h) != KVTC_OK) goto done;
    if (h.full_size != s->full_size || h.layout != s->layout) goto fail;
    memset(out, 0xA5, s->full_size);
    lcpp_state_expand(&h, hollow, out);
    for (uint32_t i = 0; i < s->n_stream; i++) {
        const lcpp_stream *st = &s->streams[i];
        if (!st->n_layer) continue;
        size_t n = (size_t)st->cell_count * st->k[0].n_embd * st->n_layer + 1;
        float *f = malloc(sizeof(float) * n);
        for (int key = 1; key >= 0; key--) {
            lcpp_state_read_float(s, buf, i, key, f);
            lcpp_state_write_float(&h, i, key, f, out);
        }
        free(f);
    }
    ok = memcmp(out, buf, s->full_size) == 0;
fail:
    lcpp_state_free(&h);
done:
    free(hollow);
    free(out);
    return ok;
}

static void check_fixture(const char *name, const uint8_t *buf, size_t size, const json_value *j) {
    lcpp_state s;
    kvtc_result r = lcpp_state_parse(buf, size, &s);
    CHECK_MSG(r == KVTC_OK, "%s: %s", name, kvtc_result_string(r));
    if (r) return;
    int is_2025 = strstr(name, "c392e50") != NULL, ggsn = strstr(name, ".ggsn") != NULL;
    CHECK_MSG(s.size == size && s.full_size == size, "%s: every byte", name);
    CHECK_MSG(s.magic == (ggsn ? LCPP_MAGIC_GGSN : LCPP_MAGIC_GGSQ), "%s", name);
    lcpp_layout want = !is_2025 ? LCPP_LAYOUT_KV_C : ggsn ? LCPP_LAYOUT_KV_AB : LCPP_LAYOUT_KV_A;
    CHECK_MSG(s.layout == want, "%s: layout %s", name, lcpp_layout_name(s.layout));
    /* logits only in 2025 session files (the 2026 layout dropped them) */
    CHECK_MSG(s.has_logits == (ggsn && is_2025), "%s", name);
    CHECK_MSG(s.n_stream == 1, "%s", name);
    CHECK_MSG((int64_t)s.n_token_count == jint(j, "n_token_count_field"), "%s", name);
    CHECK_MSG((int64_t)s.n_ids == jint(j, "n_tokens"), "%s: %u ids", name, s.n_ids);
    const json_value *packed = json_get(j, "token_array_is_packed_server_tokens");
    CHECK_MSG(packed && s.packed_tokens == packed->boolean, "%s: packed", name);
    const json_value *ids = json_get(j, "token_ids");
    if (ids && ids->type == JSON_ARRAY && ids->n == s.n_ids) {
        int32_t *t = malloc(sizeof(int32_t) * (s.n_ids + 1));
        lcpp_state_token_ids(&s, buf, t);
        int same = 1;
        for (uint32_t i = 0; i < s.n_ids; i++) same &= t[i] == (int32_t)ids->items[i].number;
        CHECK_MSG(same, "%s: token ids", name);
        free(t);
    } else {
        CHECK_MSG(0, "%s: sidecar token_ids", name);
    }
    const lcpp_stream *st = &s.streams[0];
    CHECK_MSG((int64_t)st->cell_count == jint(j, "cell_count"), "%s", name);
    int pos_ok = 1;
    for (uint32_t i = 0; i < st->cell_count; i++) pos_ok &= st->pos[i] == (int64_t)i;
    CHECK_MSG(pos_ok, "%s: positions 0..n-1", name);
    CHECK_MSG((int64_t)st->v_trans == jint(j, "v_trans"), "%s", name);
    CHECK_MSG((int64_t)st->n_layer == jint(j, "n_layer"), "%s", name);
    const json_value *offs = json_get(j, "offsets"), *kd = json_get(offs, "k_data"), *vd = json_get(offs, "v_data");
    int layers_ok = kd && vd && kd->n == st->n_layer && vd->n == st->n_layer;
    for (uint32_t l = 0; layers_ok && l < st->n_layer; l++) {
        layers_ok &= st->k[l].type == jint(json_get(j, "k"), "type") && st->v[l].type == jint(json_get(j, "v"), "type");
        layers_ok &= st->k[l].n_embd == jint(json_get(j, "k"), "n_embd_gqa") &&
                     st->v[l].n_embd == jint(json_get(j, "v"), "n_embd_gqa");
        layers_ok &= st->k[l].data_off == (size_t)kd->items[l].number && st->v[l].data_off == (size_t)vd->items[l].number;
    }
    CHECK_MSG(layers_ok, "%s: K/V types, widths and payload offsets as the sidecar", name);
    CHECK_MSG(rebuild_identical(&s, buf), "%s: hollow + float rebuild is byte-identical", name);
    lcpp_state_free(&s);
}

static void test_fixtures(void) {
    int found = 0;
    for (size_t i = 0; i < LCPP_N_FIXTURES; i++) {
        size_t n, jn = 0;
        char *js = NULL;
        char *b = lcpp_fixture_read(lcpp_fixture_names[i], &n, &js, &jn);
        if (!b) { printf("  skipped %s (not on this machine)\n", lcpp_fixture_names[i]); continue; }
        found++;
        json_value *j = js ? json_parse(js, jn, NULL) : NULL;
        CHECK_MSG(j != NULL, "%s: sidecar", lcpp_fixture_names[i]);
        if (j) check_fixture(lcpp_fixture_names[i], (const uint8_t *)b, n, j);
        json_free(j);
        free(js);
        free(b);
    }
    CHECK(found >= 9); /* the repository's own */
}

/* The 2025 (kv-A) and 2026 (kv-C) files of the same 300-token cache: same
 * token ids, same K/V values. */
static void test_versions_agree(void) {
    size_t n1, n2;
    char *a = lcpp_fixture_read("c392e50/eval27m-f16-vtrans1-capi.ggsq", &n1, NULL, NULL);
    char *b = lcpp_fixture_read("3f545be/eval27m-f16-vtrans1-capi.ggsq", &n2, NULL, NULL);
    lcpp_state sa, sb;
    CHECK(a && b);
    if (!a || !b || lcpp_state_parse(a, n1, &sa) || lcpp_state_parse(b, n2, &sb)) {
        CHECK(0);
        free(a);
        free(b);
        return;
    }
    CHECK(sa.layout == LCPP_LAYOUT_KV_A && sb.layout == LCPP_LAYOUT_KV_C);
    CHECK(sa.n_ids == sb.n_ids && sa.streams[0].cell_count == sb.streams[0].cell_count);
    size_t vals = (size_t)sa.streams[0].cell_count * sa.streams[0].k[0].n_embd * sa.streams[0].n_layer;
    float *fa = malloc(sizeof(float) * vals), *fb = malloc(sizeof(float) * vals);
    for (int key = 0; key < 2; key++) {
        lcpp_state_read_float(&sa, (const uint8_t *)a, 0, key, fa);
        lcpp_state_read_float(&sb, (const uint8_t *)b, 0, key, fb);
        double maxd = 0;
        for (size_t i = 0; i < vals; i++) maxd = fmax(maxd, fabs((double)fa[i] - fb[i]));
        CHECK_MSG(maxd == 0.0, "%s differs by %g between the versions", key ? "K" : "V", maxd);
    }
    free(fa);
    free(fb);
    lcpp_state_free(&sa);
    lcpp_state_free(&sb);
    free(a);
    free(b);
}

/* ---- files built here: several streams, f32, bf16 rows ---------------- */

typedef struct wbuf { uint8_t *b; size_t n, cap; } wbuf;
static void put(wbuf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) { w->cap = 2 * (w->n + n); w->b = realloc(w->b, w->cap); }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void put32(wbuf *w, uint32_t v) { uint8_t t[4]; kvi_store_u32(t, v); put(w, t, 4); }
static void put64(wbuf *w, uint64_t v) { uint8_t t[8]; kvi_store_u64(t, v); put(w, t, 8); }

/* A kv-C session (no logits) with streams of cells[] cells each, f32 K and
 * transposed f32 V, 2 layers of 4 values; cell c of stream s at pos 10*s+c. */
static void build_multistream(wbuf *w, const uint32_t *cells, uint32_t n_stream) {
    put32(w, LCPP_MAGIC_GGSN);
    put32(w, LCPP_GGSN_VERSION);
    put32(w, 2);
    put32(w, 1);
    put32(w, 7);
    put32(w, 5);
    put(w, "llama", 5);
    put32(w, n_stream);
    for (uint32_t s = 0; s < n_stream; s++) {
        put32(w, cells[s]);
        if (!cells[s]) continue;
        for (uint32_t c = 0; c < cells[s]; c++) {
            put32(w, 10 * s + c);
            put32(w, 2); /* a cell of two sequences (session files allow it) */
            put32(w, 0);
            put32(w, 1);
        }
        put32(w, 1);
        put32(w, 2);
        for (uint32_t l = 0; l < 2; l++) {
            put32(w, LCPP_GGML_F32);
            put64(w, 16);
            for (uint32_t i = 0; i < 4 * cells[s]; i++) {
                float x = (float)(s * 1000 + l * 100 + i) * 0.5f;
                put(w, &x, 4);
            }
        }
        for (uint32_t l = 0; l < 2; l++) {
            put32(w, LCPP_GGML_F32);
            put32(w, 4);
            put32(w, 4);
            for (uint32_t i = 0; i < 4 * cells[s]; i++) {
                float x = -(float)(s * 1000 + l * 100 + i);
                put(w, &x, 4);
            }
        }
    }
}

static void test_multistream(void) {
    wbuf w = {0};
    const uint32_t cells[3] = {3, 0, 2};
    build_multistream(&w, cells, 3);
    lcpp_state s;
    kvtc_result r = lcpp_state_parse(w.b, w.n, &s);
    CHECK_MSG(r == KVTC_OK, "%s", kvtc_result_string(r));
    if (!r) {
        CHECK(s.layout == LCPP_LAYOUT_KV_C && s.n_stream == 3 && !s.has_logits && !s.packed_tokens);
        CHECK(s.streams[0].cell_count == 3 && s.streams[1].cell_count == 0 && s.streams[2].cell_count == 2);
        CHECK(s.streams[1].n_layer == 0 && s.streams[2].pos[1] == 21 && s.streams[2].v_trans == 1);
        float f[2 * 2 * 4];
        lcpp_state_read_float(&s, w.b, 2, 0, f); /* V of stream 2: transposed back to cell rows */
        CHECK(f[0] == -2000.0f && f[1] == -2002.0f && f[4] == -2001.0f && f[8] == -2100.0f);
        CHECK(rebuild_identical(&s, w.b));
        lcpp_state_free(&s);
    }
    free(w.b);
}

/* ---- damaged files ------------------------------------------------------ */

static kvtc_result parse_mut(const uint8_t *buf, size_t n, size_t off, uint32_t v) {
    uint8_t *c = malloc(n);
    memcpy(c, buf, n);
    kvi_store_u32(c + off, v);
    lcpp_state s;
    kvtc_result r = lcpp_state_parse(c, n, &s);
    lcpp_state_free(&s);
    free(c);
    return r;
}

static void test_hostile(void) {
    size_t n;
    char *raw = lcpp_fixture_read("3f545be/stories260k-f16-vtrans1.ggsq", &n, NULL, NULL);
    CHECK(raw != NULL);
    if (!raw) return;
    const uint8_t *b = (const uint8_t *)raw;
    lcpp_state s;
    CHECK(lcpp_state_parse(b, n, &s) == KVTC_OK);
    size_t tok = s.tokens_off, kv = tok + 4ull * s.n_token_count, cells = s.streams[0].cells_off;
    size_t k0 = s.streams[0].k[0].header_off, v0 = s.streams[0].v[0].header_off;
    size_t data = k0 - 8;
    lcpp_state_free(&s);

    /* every truncation: a specific error, never success */
    int all_trunc = 1;
    for (size_t len = 0; len < n; len += len < 20000 ? 1 : 97) {
        kvtc_result r = lcpp_state_parse(b, len, &s);
        if (r != KVTC_ERR_TRUNCATED) {
            all_trunc = 0;
            fprintf(stderr, "truncated at %zu: %s\n", len, kvtc_result_string(r));
            lcpp_state_free(&s);
            break;
        }
    }
    CHECK(all_trunc);
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, b, n);
    longer[n] = 0;
    CHECK(lcpp_state_parse(longer, n + 1, &s) == KVTC_ERR_CORRUPT); /* trailing byte */
    free(longer);

    CHECK(parse_mut(b, n, 0, 0x67677372u) == KVTC_ERR_BAD_MAGIC);
    CHECK(parse_mut(b, n, 4, 3) == KVTC_ERR_UNSUPPORTED_VERSION);
    CHECK(parse_mut(b, n, 8, 0xffffffffu) == KVTC_ERR_TRUNCATED);       /* token count */
    /* a huge n_stream or n_seq_id also reads as a kv-A file that runs off
     * the end: either error is specific */
    kvtc_result r = parse_mut(b, n, kv, 0xffffffffu);                      /* n_stream */
    CHECK(r == KVTC_ERR_TOO_LARGE || r == KVTC_ERR_TRUNCATED);
    CHECK(parse_mut(b, n, kv, 0) == KVTC_ERR_CORRUPT);                  /* no stream */
    CHECK(parse_mut(b, n, kv + 4, 0xfffffff0u) == KVTC_ERR_TRUNCATED);  /* cell_count */
    CHECK(parse_mut(b, n, cells + 4, 2) == KVTC_ERR_CORRUPT);           /* ggsq cell in 2 seqs */
    r = parse_mut(b, n, cells + 4, 0xffffffffu);                           /* n_seq_id */
    CHECK(r == KVTC_ERR_TOO_LARGE || r == KVTC_ERR_TRUNCATED);
    CHECK(parse_mut(b, n, data, 2) == KVTC_ERR_CORRUPT);                /* v_trans */
    CHECK(parse_mut(b, n, data + 4, 100000) == KVTC_ERR_TOO_LARGE);     /* n_layer */
    CHECK(parse_mut(b, n, data + 4, 3) == KVTC_ERR_CORRUPT);            /* fewer layers: bytes left */
    CHECK(parse_mut(b, n, k0, 99) == KVTC_ERR_UNSUPPORTED);             /* K type */
    CHECK(parse_mut(b, n, k0, LCPP_GGML_Q8_0) == KVTC_ERR_CORRUPT);    /* 64 B is not q8_0 blocks */
    CHECK(parse_mut(b, n, k0 + 4, 63) == KVTC_ERR_CORRUPT);             /* odd f16 row */
    CHECK(parse_mut(b, n, k0 + 4, 0) == KVTC_ERR_CORRUPT);              /* empty row */
    CHECK(parse_mut(b, n, k0 + 8, 1) == KVTC_ERR_TOO_LARGE);            /* row_bytes high word */
    CHECK(parse_mut(b, n, v0, LCPP_GGML_Q8_0) == KVTC_ERR_CORRUPT);    /* transposed q8_0 V */
    CHECK(parse_mut(b, n, v0 + 4, 4) == KVTC_ERR_CORRUPT);              /* el_bytes vs f16 */
    CHECK(parse_mut(b, n, v0 + 8, 0x7fffffff) == KVTC_ERR_TOO_LARGE);   /* n_embd_v */
    free(raw);

    /* the session preamble: a logits count past the end */
    char *ses = lcpp_fixture_read("c392e50/eval27m-f16-vtrans1-capi.ggsn", &n, NULL, NULL);
    CHECK(ses != NULL);
    if (ses) {
        CHECK(lcpp_state_parse(ses, n, &s) == KVTC_OK);
        size_t pre = s.preamble_off;
        lcpp_state_free(&s);
        CHECK(parse_mut((const uint8_t *)ses, n, pre, 0x7fffffff) == KVTC_ERR_TRUNCATED);   /* arch length */
        CHECK(parse_mut((const uint8_t *)ses, n, pre + 17, 0xffffffffu) != KVTC_OK);       /* logits count */
        free(ses);
    }
    CHECK(lcpp_state_parse(NULL, 4, &s) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(lcpp_state_parse("ggs", 3, &s) == KVTC_ERR_TRUNCATED);
}

static void test_q8_0(void) {
    /* ggml's reference quantizer: the largest magnitude maps to +-127 */
    float x[64], y[64];
    uint8_t q[68], q2[68];
    for (int i = 0; i < 64; i++) x[i] = sinf((float)i * 0.7f) * (i < 32 ? 3.0f : 0.001f);
    lcpp_quantize_q8_0(x, 64, q);
    lcpp_dequantize_q8_0(q, 64, y);
    double maxerr = 0;
    for (int i = 0; i < 64; i++) maxerr = fmax(maxerr, fabs((double)x[i] - y[i]) / (i < 32 ? 3.0 : 0.001));
    CHECK_MSG(maxerr <= 0.5 / 127 + 1e-3, "q8_0 error %g", maxerr);
    lcpp_quantize_q8_0(y, 64, q2);
    CHECK(memcmp(q, q2, sizeof q) == 0); /* idempotent */
    memset(x, 0, sizeof x);
    lcpp_quantize_q8_0(x, 32, q);
    CHECK(q[0] == 0 && q[1] == 0 && q[2] == 0);
    /* a damaged file's NaN/Inf: defined results (UBSan would flag a bad cast) */
    x[0] = NAN;
    x[1] = INFINITY;
    x[2] = 1.0f;
    lcpp_quantize_q8_0(x, 32, q);
    CHECK(q[2] == 0 && q[3] == 0); /* d = Inf: 1/d = 0, x / d = 0 */
    x[1] = 2.0f;
    lcpp_quantize_q8_0(x, 32, q);
    CHECK(q[2] == 0 && q[3] == 127 && q[4] == 64); /* NaN -> 0 */
}

/* The Hadamard rotation of 2026 quantized caches: an involution, and the
 * detector tells rotated from plain keys on every real cache (it is applied
 * to q8_0 files only, but must not misfire on plain f16 ones either), and
 * values of the q8_0 caches. */
static void test_rotation(void) {
    float x[128], y[128];
    for (int i = 0; i < 128; i++) x[i] = y[i] = cosf((float)i * (float)i * 0.01f);
    lcpp_hadamard_rows(y, 128, 64);
    CHECK(fabsf(y[0] - x[0]) > 1e-3f);
    lcpp_hadamard_rows(y, 128, 64);
    double maxd = 0;
    for (int i = 0; i < 128; i++) maxd = fmax(maxd, fabs((double)x[i] - y[i]));
    CHECK(maxd < 1e-5);
    int checked = 0;
    for (size_t i = 0; i < LCPP_N_FIXTURES; i++) {
        size_t n;
        char *b = lcpp_fixture_read(lcpp_fixture_names[i], &n, NULL, NULL);
        lcpp_state s;
        if (!b || lcpp_state_parse(b, n, &s)) { free(b); continue; }
        const lcpp_stream *st = &s.streams[0];
        uint32_t hd = strstr(lcpp_fixture_names[i], "eval27m") ? 64 : 8;
        int want = strstr(lcpp_fixture_names[i], "3f545be") && st->k[0].type == LCPP_GGML_Q8_0;
        size_t nv = (size_t)st->cell_count * st->k[0].n_embd * st->n_layer;
        float *f = malloc(sizeof(float) * nv);
        for (int key = 0; key < 2; key++) {
            /* on values the statistic is not reliable (lcpp_state.h): q8_0 V only */
            if (!key && st->v[0].type != LCPP_GGML_Q8_0) continue;
            lcpp_state_read_float(&s, (const uint8_t *)b, 0, key, f);
            int got = lcpp_rows_look_rotated(f, (uint64_t)st->cell_count * st->n_layer, st->k[0].n_embd, hd);
            CHECK_MSG(got == want, "%s %s: rotated %d", lcpp_fixture_names[i], key ? "K" : "V", got);
            checked++;
        }
        free(f);
        lcpp_state_free(&s);
        free(b);
    }
    CHECK(checked >= 11);
}

int main(void) {
    double t0 = test_now();
    test_fixtures();
    test_versions_agree();
    test_multistream();
    test_hostile();
    test_q8_0();
    test_rotation();
    printf("(%.2f s)\n", test_now() - t0);
    return TEST_REPORT();
}
