/* test_cuda_append.c - kvtc_cuda_append (issue 11 item 3 on the GPU): a
 * stream in host memory (GPU-encoded, or all raw) extended with 1, 100, 256
 * and 1000 tokens held in a device layout (contiguous, or a vLLM NHD paged
 * pool with a shuffled block table; with and without device positions and
 * token ids) gives the SAME BYTES as kvtc_append on the CPU of the same
 * tokens with the codec's parameters. No tolerance: kvtc_cuda_append only
 * gathers and downloads the tokens on the GPU and codes them with the CPU
 * append (kvtc_cuda.h), so any difference is a bug. The appended streams
 * decode on the CPU (raw sink and window tokens exact, the error of the
 * coded tokens at most 10% above a direct CPU encode of the concatenation:
 * the old chunks were projected by the GPU's bf16 GEMM, so a few codes
 * differ from the CPU's) and on the GPU (its error at most 5% above the
 * CPU decode's: the bf16 reconstruction GEMM). Appending no tokens returns
 * the stream unchanged. A chain of appends equals the CPU
 * chain. Hostile inputs give kvtc_append's error, and the specific one:
 * another ratio (BASIS_MISMATCH), another chunk size or a DEFLATE stream
 * (INVALID_ARGUMENT), another dtype (GEOMETRY_MISMATCH), a corrupt kept
 * chunk (CORRUPT), a truncated stream, NaN in a coded token (NUMERIC), a
 * small buffer (BUFFER_TOO_SMALL), block tables out of range or with a
 * repeated block (BAD_BLOCK_TABLE). Exits 77 (skipped) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

enum { N_ALL = 1700, PAGE = 16 };
static const double RATIO = 8;

static kvtc_basis *g_basis;
static synth_cache g_src; /* all N_ALL tokens, host */

/* Tokens [t0, t0 + n) of the source as a contiguous host cache (owned). */
static kvtc_cache host_slice(uint64_t t0, uint64_t n) {
    kvtc_cache c;
    const kvtc_geometry *g = &g_src.c.geometry;
    synth_alloc_like(g, g_src.c.dtype, n, 0, &c);
    size_t row = (size_t)g->head_dim * kvtc_dtype_size(c.dtype);
    for (uint64_t lh = 0; lh < (uint64_t)g->n_layers * g->n_kv_heads; lh++) {
        memcpy((uint8_t *)c.k + lh * n * row, (const uint8_t *)g_src.c.k + (lh * N_ALL + t0) * row, n * row);
        memcpy((uint8_t *)c.v + lh * n * row, (const uint8_t *)g_src.c.v + (lh * N_ALL + t0) * row, n * row);
    }
    return c;
}

/* New tokens on the device: their layout and what backs it. */
typedef struct dev_tokens {
    kvtc_cache_layout l;
    kvtc_cache host;            /* the same tokens, contiguous, for the CPU reference */
    void *d_k, *d_v;
    int32_t *d_table, *h_table;
    int64_t *d_pos, *h_pos;
    int32_t *d_ids, *h_ids;
} dev_tokens;

static void dev_tokens_free(dev_tokens *t) {
    cudaFree(t->d_k); cudaFree(t->d_v); cudaFree(t->d_table); cudaFree(t->d_pos); cudaFree(t->d_ids);
    free(t->h_table); free(t->h_pos); free(t->h_ids);
    synth_cache_free(&t->host);
    memset(t, 0, sizeof *t);
}

/* Tokens [t0, t0 + n) on the device: contiguous [L][H][n][d], or (paged)
 * a vLLM NHD pool [L][B][PAGE][H][d] of B = blocks + 3 blocks through a
 * shuffled block table. with_pos: explicit positions t0.. (they continue a
 * stream of t0 tokens with default positions); with_ids: token ids. */
static int dev_tokens_make(uint64_t t0, uint64_t n, int paged, int with_pos, int with_ids, dev_tokens *t) {
    memset(t, 0, sizeof *t);
    t->host = host_slice(t0, n);
    const kvtc_geometry *g = &g_src.c.geometry;
    const uint32_t L = g->n_layers, H = g->n_kv_heads, d = g->head_dim;
    size_t es = kvtc_dtype_size(t->host.dtype);
    uint64_t nb = (n + PAGE - 1) / PAGE, pool = nb + 3;
    uint64_t elems = paged ? (uint64_t)L * pool * PAGE * H * d : (uint64_t)L * H * n * d;
    size_t bytes = (size_t)(elems * es);
    if (cudaMalloc(&t->d_k, bytes ? bytes : 1) || cudaMalloc(&t->d_v, bytes ? bytes : 1)) return -1;
    kvtc_cache_layout_from_cache(&t->host, &t->l);
    if (!paged) {
        if (bytes && (cudaMemcpy(t->d_k, t->host.k, bytes, cudaMemcpyHostToDevice) ||
                      cudaMemcpy(t->d_v, t->host.v, bytes, cudaMemcpyHostToDevice)))
            return -1;
        t->l.k.base = t->d_k;
        t->l.v.base = t->d_v;
    } else {
        /* table[b] = a permutation of the pool's blocks (some stay unused) */
        t->h_table = malloc(sizeof(int32_t) * (nb + 1));
        int32_t *perm = malloc(sizeof(int32_t) * pool);
        uint8_t *pk = calloc(1, bytes), *pv = calloc(1, bytes);
        if (!t->h_table || !perm || !pk || !pv) return -1;
        synth_rng r = {77 + n};
        for (uint64_t i = 0; i < pool; i++) perm[i] = (int32_t)i;
        for (uint64_t i = pool - 1; i > 0; i--) {
            uint64_t j = synth_next(&r) % (i + 1);
            int32_t x = perm[i]; perm[i] = perm[j]; perm[j] = x;
        }
        memcpy(t->h_table, perm, sizeof(int32_t) * nb);
        kvtc_tensor_layout tl = {NULL, NULL, (int64_t)(pool * PAGE * H * d), (int64_t)H * d, d, 1, (int64_t)PAGE * H * d};
        t->l.k = tl;
        t->l.v = tl;
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t h = 0; h < H; h++)
                for (uint64_t tk = 0; tk < n; tk++) {
                    uint64_t dst = l * (pool * PAGE * H * d) + (uint64_t)t->h_table[tk / PAGE] * PAGE * H * d +
                                   (tk % PAGE) * H * d + (uint64_t)h * d;
                    uint64_t src = (((uint64_t)l * H + h) * n + tk) * d;
                    memcpy(pk + dst * es, (const uint8_t *)t->host.k + src * es, d * es);
                    memcpy(pv + dst * es, (const uint8_t *)t->host.v + src * es, d * es);
                }
        int bad = cudaMemcpy(t->d_k, pk, bytes, cudaMemcpyHostToDevice) ||
                  cudaMemcpy(t->d_v, pv, bytes, cudaMemcpyHostToDevice) ||
                  cudaMalloc((void **)&t->d_table, sizeof(int32_t) * (nb + 1)) ||
                  cudaMemcpy(t->d_table, t->h_table, sizeof(int32_t) * nb, cudaMemcpyHostToDevice);
        free(perm); free(pk); free(pv);
        if (bad) return -1;
        t->l.k.base = t->d_k;
        t->l.v.base = t->d_v;
        t->l.block_size = PAGE;
        t->l.block_table = t->d_table;
        t->l.n_pool_blocks = pool;
    }
    if (with_pos) {
        t->h_pos = malloc(sizeof(int64_t) * (n + 1));
        if (!t->h_pos || cudaMalloc((void **)&t->d_pos, sizeof(int64_t) * (n + 1))) return -1;
        for (uint64_t i = 0; i < n; i++) t->h_pos[i] = (int64_t)(t0 + i);
        if (cudaMemcpy(t->d_pos, t->h_pos, sizeof(int64_t) * n, cudaMemcpyHostToDevice)) return -1;
        t->l.positions = t->d_pos;
    }
    if (with_ids) {
        t->h_ids = malloc(sizeof(int32_t) * (n + 1));
        if (!t->h_ids || cudaMalloc((void **)&t->d_ids, sizeof(int32_t) * (n + 1))) return -1;
        for (uint64_t i = 0; i < n; i++) t->h_ids[i] = (int32_t)((t0 + i) * 7 % 32000);
        if (cudaMemcpy(t->d_ids, t->h_ids, sizeof(int32_t) * n, cudaMemcpyHostToDevice)) return -1;
        t->l.token_ids = t->d_ids;
    }
    return 0;
}

/* The CPU reference's layout of the same tokens (host memory). */
static kvtc_cache_layout host_layout(const dev_tokens *t) {
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(&t->host, &l);
    l.positions = t->h_pos;
    l.token_ids = t->h_ids;
    return l;
}

static void cpu_options(kvtc_encode_options *o, uint32_t codec) {
    kvtc_encode_options_init(o);
    o->ratio = RATIO;
    o->entropy_codec = codec;
}

/* kvtc_cuda_append into a malloc'd buffer of kvtc_cuda_append_bound. */
static kvtc_result gpu_append(kvtc_cuda_codec *cc, const uint8_t *in, size_t n, const kvtc_cache_layout *more,
                              uint8_t **out, size_t *w) {
    size_t cap = kvtc_cuda_append_bound(cc, in, n, more);
    *out = malloc(cap ? cap : 1);
    *w = 0;
    if (!cap) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvtc_cuda_append(cc, in, n, more, *out, cap, w, 0);
    if (cudaDeviceSynchronize() != cudaSuccess) return KVTC_ERR_CUDA;
    return r;
}

static kvtc_result cpu_append(kvtc_encoder *e, const uint8_t *in, size_t n, const kvtc_cache_layout *more,
                              uint8_t **out, size_t *w) {
    size_t cap = kvtc_append_bound(e, in, n, more);
    *out = malloc(cap ? cap : 1);
    *w = 0;
    if (!cap) return KVTC_ERR_INVALID_ARGUMENT;
    return kvtc_append(e, in, n, more, *out, cap, w);
}

/* Squared error and energy of the coded tokens [a, b) of a decoded cache
 * against the source. */
static void coded_error(const kvtc_cache *dec, uint64_t a, uint64_t b, double *err, double *energy) {
    kvtc_cache zero;
    synth_alloc_like(&dec->geometry, dec->dtype, N_ALL, 0, &zero);
    *err = *energy = 0;
    for (uint64_t t = a; t < b; t++)
        for (int s = 0; s < 2; s++) {
            *err += synth_token_sqerr(&g_src.c, dec, s, t);
            *energy += synth_token_sqerr(&g_src.c, &zero, s, t);
        }
    synth_cache_free(&zero);
}

/* Decode s on the CPU into *out (allocated); KVTC_OK or the error. */
static kvtc_result cpu_decode(const uint8_t *s, size_t n, kvtc_cache *out) {
    kvtc_stream_info in = {.struct_size = sizeof in};
    kvtc_result r = kvtc_stream_get_info(s, n, &in);
    if (r) return r;
    synth_alloc_like(&in.geometry, in.dtype, in.n_tokens, 1, out);
    kvtc_decoder *d = NULL;
    if ((r = kvtc_decoder_alloc(g_basis, NULL, &d))) return r;
    r = kvtc_decompress(d, s, n, out);
    kvtc_decoder_free(d);
    return r;
}

/* One append case: base stream of n_old tokens (GPU-encoded), m new tokens. */
static void check_case(kvtc_cuda_codec *cc, kvtc_encoder *e, const uint8_t *base, size_t base_n, uint64_t n_old,
                       uint64_t m, int paged, int with_pos, int with_ids) {
    dev_tokens t;
    if (dev_tokens_make(n_old, m, paged, with_pos, with_ids, &t)) {
        CHECK_MSG(0, "device tokens for %llu + %llu", (unsigned long long)n_old, (unsigned long long)m);
        dev_tokens_free(&t);
        return;
    }
    kvtc_cache_layout hl = host_layout(&t);
    uint8_t *go = NULL, *co = NULL;
    size_t gw = 0, cw = 0;
    size_t gb = kvtc_cuda_append_bound(cc, base, base_n, &t.l), cb = kvtc_append_bound(e, base, base_n, &hl);
    kvtc_result gr = gpu_append(cc, base, base_n, &t.l, &go, &gw);
    kvtc_result cr = cpu_append(e, base, base_n, &hl, &co, &cw);
    char what[96];
    snprintf(what, sizeof what, "%llu + %llu tokens (%s%s%s)", (unsigned long long)n_old, (unsigned long long)m,
             paged ? "paged" : "contiguous", with_pos ? ", positions" : "", with_ids ? ", ids" : "");
    CHECK_MSG(gb && gb == cb, "%s: bound %zu vs CPU %zu", what, gb, cb);
    CHECK_MSG(gr == KVTC_OK && cr == KVTC_OK, "%s: GPU %s, CPU %s", what, kvtc_result_string(gr),
              kvtc_result_string(cr));
    CHECK_MSG(gw == cw && gw && memcmp(go, co, gw) == 0, "%s: GPU stream (%zu B) differs from CPU append (%zu B)",
              what, gw, cw);
    if (gr == KVTC_OK) {
        /* CPU decode: raw tokens exact, coded error as a direct CPU encode's */
        uint64_t n = n_old + m;
        kvtc_cache dec, direct_dec;
        memset(&direct_dec, 0, sizeof direct_dec);
        kvtc_result dr = cpu_decode(go, gw, &dec);
        CHECK_MSG(dr == KVTC_OK, "%s: CPU decode: %s", what, kvtc_result_string(dr));
        kvtc_stream_info si = {.struct_size = sizeof si};
        CHECK(kvtc_stream_get_info(go, gw, &si) == KVTC_OK && si.n_tokens == n);
        uint64_t sink = si.n_tokens ? 4 : 0, win_begin = n > 4 + 128 ? n - 128 : sink;
        int raw_ok = 1;
        for (uint64_t s = 0; s < n && dr == KVTC_OK; s++)
            if (s < sink || s >= win_begin) raw_ok &= synth_token_equal(&g_src.c, &dec, s);
        CHECK_MSG(raw_ok, "%s: a raw token differs", what);
        if (with_pos && dr == KVTC_OK) {
            int pos_ok = 1;
            for (uint64_t s = 0; s < n; s++) pos_ok &= dec.positions[s] == (int64_t)s;
            CHECK_MSG(pos_ok, "%s: positions", what);
        }
        kvtc_cache whole = host_slice(0, n);
        uint8_t *ds = NULL;
        size_t dn = 0;
        kvtc_encode_options o;
        cpu_options(&o, KVTC_CODEC_RANS);
        CHECK(synth_compress(g_basis, &o, &whole, &ds, &dn) == KVTC_OK && cpu_decode(ds, dn, &direct_dec) == KVTC_OK);
        if (win_begin > sink && dr == KVTC_OK && direct_dec.k) {
            double ea, en, ed, en2;
            coded_error(&dec, sink, win_begin, &ea, &en);
            coded_error(&direct_dec, sink, win_begin, &ed, &en2);
            printf("  %s: %zu B, coded rel. error %.5f (direct CPU encode %zu B, %.5f)\n", what, gw, sqrt(ea / en), dn,
                   sqrt(ed / en));
            CHECK_MSG(ea <= 1.21 * ed + 1e-12 * en, "%s: error %g vs direct %g", what, ea, ed);
        }
        /* the GPU decodes it too, with the same values up to its GEMM */
        kvtc_cache gdec;
        synth_alloc_like(&g_src.c.geometry, g_src.c.dtype, n, 0, &gdec);
        kvtc_result gd = gpu_test_decode(cc, go, gw, gw, &gdec);
        CHECK_MSG(gd == KVTC_OK, "%s: GPU decode: %s", what, kvtc_result_string(gd));
        if (gd == KVTC_OK && dr == KVTC_OK && win_begin > sink) {
            double eg, en;
            double ec, en2;
            coded_error(&gdec, sink, win_begin, &eg, &en);
            coded_error(&dec, sink, win_begin, &ec, &en2);
            CHECK_MSG(eg <= 1.10 * ec + 1e-6 * en, "%s: GPU decode error %g vs CPU %g", what, eg, ec);
        }
        synth_cache_free(&gdec);
        synth_cache_free(&dec);
        synth_cache_free(&direct_dec);
        synth_cache_free(&whole);
        free(ds);
    }
    free(go);
    free(co);
    dev_tokens_free(&t);
}

/* GPU and CPU give the same error, and it is `want`. */
static void check_error(const char *what, kvtc_cuda_codec *cc, kvtc_encoder *e, const uint8_t *in, size_t n,
                        const kvtc_cache_layout *dev, const kvtc_cache_layout *host, kvtc_result want) {
    uint8_t *out = NULL;
    size_t w = 0, cap = 1u << 24;
    out = malloc(cap);
    kvtc_result gr = kvtc_cuda_append(cc, in, n, dev, out, cap, &w, 0);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    kvtc_result cr = host && e ? kvtc_append(e, in, n, host, out, cap, &w) : want;
    CHECK_MSG(gr == want && cr == want, "%s: GPU %s, CPU %s, want %s", what, kvtc_result_string(gr),
              kvtc_result_string(cr), kvtc_result_string(want));
    free(out);
}

static void check_hostile(kvtc_cuda_codec *cc, kvtc_encoder *e, const uint8_t *s300, size_t n300,
                          const uint8_t *s644, size_t n644) {
    dev_tokens t, p;
    if (dev_tokens_make(300, 256, 0, 0, 0, &t) || dev_tokens_make(300, 256, 1, 0, 0, &p)) {
        CHECK_MSG(0, "device tokens");
        dev_tokens_free(&t);
        dev_tokens_free(&p);
        return;
    }
    kvtc_cache_layout hl = host_layout(&t);
    uint8_t buf[16];
    size_t w = 0;
    CHECK(kvtc_cuda_append(NULL, s300, n300, &t.l, buf, sizeof buf, &w, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_append(cc, NULL, n300, &t.l, buf, sizeof buf, &w, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_append(cc, s300, n300, NULL, buf, sizeof buf, &w, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_append(cc, s300, n300, &t.l, NULL, sizeof buf, &w, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_append(cc, s300, n300, &t.l, buf, sizeof buf, NULL, 0) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_cuda_append_bound(NULL, s300, n300, &t.l) == 0);

    /* a codec of another ratio (plan) and one of another chunk size */
    kvtc_cuda_options o;
    kvtc_cuda_options_init(&o);
    o.ratio = 32;
    kvtc_cuda_codec *c32 = NULL;
    CHECK(kvtc_cuda_codec_alloc(g_basis, &o, &c32) == KVTC_OK);
    if (c32) {
        check_error("another ratio", c32, NULL, s300, n300, &t.l, NULL, KVTC_ERR_BASIS_MISMATCH);
        CHECK(kvtc_cuda_append_bound(c32, s300, n300, &t.l) == 0);
    }
    kvtc_cuda_codec_free(c32);
    kvtc_cuda_options_init(&o);
    o.ratio = RATIO;
    o.chunk_tokens = 128;
    kvtc_cuda_codec *c128 = NULL;
    CHECK(kvtc_cuda_codec_alloc(g_basis, &o, &c128) == KVTC_OK);
    if (c128) check_error("another chunk size", c128, NULL, s300, n300, &t.l, NULL, KVTC_ERR_INVALID_ARGUMENT);
    kvtc_cuda_codec_free(c128);

    /* a DEFLATE stream with coded tokens */
    kvtc_cache old = host_slice(0, 300);
    kvtc_encode_options eo;
    cpu_options(&eo, KVTC_CODEC_DEFLATE);
    uint8_t *sd = NULL;
    size_t nd = 0;
    CHECK(synth_compress(g_basis, &eo, &old, &sd, &nd) == KVTC_OK);
    if (sd) check_error("DEFLATE stream", cc, e, sd, nd, &t.l, &hl, KVTC_ERR_INVALID_ARGUMENT);
    free(sd);
    synth_cache_free(&old);

    /* another dtype than the stream's (the device memory read as fp16) */
    kvtc_cache_layout d16 = t.l, h16 = hl;
    d16.dtype = h16.dtype = KVTC_DTYPE_F16;
    check_error("another dtype", cc, e, s300, n300, &d16, &h16, KVTC_ERR_GEOMETRY_MISMATCH);
    /* another geometry than the codec's basis */
    kvtc_cache_layout dg = t.l, hg = hl;
    dg.geometry.n_kv_heads = hg.geometry.n_kv_heads = 1;
    check_error("another geometry", cc, e, s300, n300, &dg, &hg, KVTC_ERR_GEOMETRY_MISMATCH);

    /* a corrupt kept chunk: one byte of chunk 0's data in a stream with full chunks */
    uint8_t *bad = malloc(n644);
    memcpy(bad, s644, n644);
    container_header h;
    if (container_read_prefix(bad, n644, &h) == KVTC_OK && h.n_chunks >= 2) {
        bad[h.sections[SEC_CHUNK_DATA].offset + 5] ^= 0x40;
        check_error("corrupt chunk", cc, e, bad, n644, &t.l, &hl, KVTC_ERR_CORRUPT);
    } else {
        CHECK_MSG(0, "the 644-token stream has 2 full chunks");
    }
    free(bad);
    /* a truncated stream: kvtc_append's error (whatever it is), not OK */
    {
        uint8_t *out = malloc(1u << 24);
        size_t gw = 0, cw = 0;
        kvtc_result gr = kvtc_cuda_append(cc, s300, 100, &t.l, out, 1u << 24, &gw, 0);
        kvtc_result cr = kvtc_append(e, s300, 100, &hl, out, 1u << 24, &cw);
        CHECK_MSG(gr != KVTC_OK && gr == cr, "truncated: GPU %s, CPU %s", kvtc_result_string(gr),
                  kvtc_result_string(cr));
        free(out);
    }
    /* no new tokens: the stream unchanged (after kvtc_append's checks) */
    {
        kvtc_cache_layout none = t.l;
        none.n_tokens = 0;
        uint8_t *out = NULL;
        size_t gw = 0;
        CHECK(gpu_append(cc, s300, n300, &none, &out, &gw) == KVTC_OK && gw == n300 && memcmp(out, s300, n300) == 0);
        free(out);
    }
    /* a buffer one byte short of the result */
    {
        uint8_t *out = NULL;
        size_t gw = 0;
        CHECK(gpu_append(cc, s300, n300, &t.l, &out, &gw) == KVTC_OK);
        size_t w2 = 0;
        CHECK(gw && kvtc_cuda_append(cc, s300, n300, &t.l, out, gw - 1, &w2, 0) == KVTC_ERR_BUFFER_TOO_SMALL);
        free(out);
    }
    /* block tables: an entry outside the pool, a repeated block */
    int32_t saved = p.h_table[3];
    p.h_table[3] = (int32_t)p.l.n_pool_blocks;
    cudaMemcpy(p.d_table, p.h_table, sizeof(int32_t) * 16, cudaMemcpyHostToDevice);
    check_error("block outside the pool", cc, NULL, s300, n300, &p.l, NULL, KVTC_ERR_BAD_BLOCK_TABLE);
    p.h_table[3] = p.h_table[7];
    cudaMemcpy(p.d_table, p.h_table, sizeof(int32_t) * 16, cudaMemcpyHostToDevice);
    check_error("repeated block", cc, NULL, s300, n300, &p.l, NULL, KVTC_ERR_BAD_BLOCK_TABLE);
    p.h_table[3] = saved;
    cudaMemcpy(p.d_table, p.h_table, sizeof(int32_t) * 16, cudaMemcpyHostToDevice);
    /* NaN in a token that gets coded (the first new one: 256 new tokens
     * push it out of the 128-token window) */
    uint16_t nan16 = 0x7fc0;
    cudaMemcpy(t.d_k, &nan16, 2, cudaMemcpyHostToDevice);
    memcpy(t.host.k, &nan16, 2);
    check_error("NaN in a coded token", cc, e, s300, n300, &t.l, &hl, KVTC_ERR_NUMERIC);
    dev_tokens_free(&t);
    dev_tokens_free(&p);
}

int main(void) {
    gpu_test_require_device();
    kvtc_geometry g = synth_geometry(4, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_BF16, N_ALL);
    static const double ratios[] = {RATIO, 32};
    if (synth_calibrate(&sp, 2, 4, 128, ratios, 2, &g_basis) || synth_make(&sp, &g_src)) return 1;
    kvtc_cuda_options co;
    kvtc_cuda_options_init(&co);
    co.ratio = RATIO;
    kvtc_cuda_codec *cc = NULL;
    kvtc_encoder *e = NULL;
    kvtc_encode_options eo;
    cpu_options(&eo, KVTC_CODEC_RANS);
    CHECK(kvtc_cuda_codec_alloc(g_basis, &co, &cc) == KVTC_OK);
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    if (!cc || !e) return TEST_REPORT();

    /* base streams, GPU-encoded: all raw (60), a partial last chunk (300:
     * 168 coded tokens), chunks ending on a boundary (644: 512 coded) */
    static const uint64_t olds[] = {60, 300, 644};
    static const uint64_t adds[] = {1, 100, 256, 1000};
    uint8_t *base[3] = {0};
    size_t base_n[3] = {0};
    for (int i = 0; i < 3; i++) {
        kvtc_cache old = host_slice(0, olds[i]);
        kvtc_result r = KVTC_ERR_CUDA;
        base[i] = gpu_test_encode(cc, &old, &base_n[i], &r);
        CHECK_MSG(r == KVTC_OK && base[i], "GPU encode of %llu tokens: %s", (unsigned long long)olds[i],
                  kvtc_result_string(r));
        synth_cache_free(&old);
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4 && base[i]; j++)
            check_case(cc, e, base[i], base_n[i], olds[i], adds[j], 0, j == 1, j == 2);
    /* a paged pool with a shuffled block table, with positions */
    if (base[1]) check_case(cc, e, base[1], base_n[1], 300, 256, 1, 1, 0);
    if (base[2]) check_case(cc, e, base[2], base_n[2], 644, 1000, 1, 0, 0);

    /* a chain of appends (100 tokens each, 300 -> 1000) equals the CPU chain */
    if (base[1]) {
        uint8_t *gs = malloc(base_n[1]), *cs = malloc(base_n[1]);
        size_t gn = base_n[1], cn = base_n[1];
        memcpy(gs, base[1], gn);
        memcpy(cs, base[1], cn);
        int same = 1;
        for (uint64_t t0 = 300; t0 < 1000 && same; t0 += 100) {
            dev_tokens t;
            if (dev_tokens_make(t0, 100, t0 % 200 == 0, 0, 0, &t)) { same = 0; dev_tokens_free(&t); break; }
            kvtc_cache_layout hl = host_layout(&t);
            uint8_t *g2 = NULL, *c2 = NULL;
            size_t gn2 = 0, cn2 = 0;
            same = gpu_append(cc, gs, gn, &t.l, &g2, &gn2) == KVTC_OK && cpu_append(e, cs, cn, &hl, &c2, &cn2) == KVTC_OK &&
                   gn2 == cn2 && memcmp(g2, c2, gn2) == 0;
            free(gs); free(cs);
            gs = g2; cs = c2; gn = gn2; cn = cn2;
            dev_tokens_free(&t);
        }
        CHECK_MSG(same, "a chain of 100-token appends differs from the CPU chain");
        free(gs);
        free(cs);
    }
    if (base[1] && base[2]) check_hostile(cc, e, base[1], base_n[1], base[2], base_n[2]);
    for (int i = 0; i < 3; i++) free(base[i]);
    kvtc_encoder_free(e);
    kvtc_cuda_codec_free(cc);
    synth_free(&g_src);
    kvtc_basis_free(g_basis);
    return TEST_REPORT();
}
