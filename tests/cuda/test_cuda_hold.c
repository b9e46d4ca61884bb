/* test_cuda_hold.c - the device integrity check and the layer-pipelined
 * restore (issues 15 and 11):
 *  - the device CRC-32 (slicing by 16, a warp per 4 KB piece, pieces
 *    combined in GF(2)) equals the CPU's libdeflate_crc32 for regions of
 *    every alignment and of sizes around the lane (128 B) and piece (4 KB)
 *    boundaries, up to 1 MB;
 *  - after kvtc_cuda_hold, one decode per layer writes the same values as a
 *    decode of that layer range without the hold (which dequantizes itself)
 *    and as the full decode, in the default bf16 and the fp32 GEMM modes;
 *  - a held decode reports the hold's CRC failures (a corrupt chunk byte, a
 *    corrupt raw-token byte) in its own status, since it checks no CRC;
 *  - a decode of another stream in the same workspace, or a compress, ends
 *    the hold: the next layer decode of the first stream decodes it again
 *    and is still right.
 * Exits 77 (skipped) without a GPU. */
#include <libdeflate.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/crc_host.h"
#include "gpu_test_util.h"
#include "synth.h"
#include "test.h"

enum { N_TOK = 700 };

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void test_crc(void) {
    const size_t nbuf = (size_t)3 << 20;
    uint8_t *h = malloc(nbuf);
    void *d = NULL;
    CHECK(h && cudaMalloc(&d, nbuf) == cudaSuccess);
    if (!h || !d) { free(h); return; }
    for (size_t i = 0; i < nbuf; i++) h[i] = (uint8_t)next_u32();
    memset(h + 5000, 0, 9000); /* a run of zeros too */
    cudaMemcpy(d, h, nbuf, cudaMemcpyHostToDevice);
    static const uint32_t sizes[] = {0,    1,    2,    15,   16,   17,    31,    127,   128,   129,  255,
                                     2047, 4095, 4096, 4097, 4111, 8191,  8192,  12289, 65536, 65549,
                                     (1u << 20) - 3, 1u << 20, (1u << 20) + 4097};
    enum { NS = sizeof sizes / sizeof *sizes, NA = 20 };
    uint64_t off[NS * NA];
    uint32_t sz[NS * NA], got[NS * NA];
    uint32_t n = 0;
    for (uint32_t i = 0; i < NS; i++)
        for (uint32_t a = 0; a < NA; a++, n++) {
            /* offsets 0..16 cover every alignment; then random ones */
            off[n] = a <= 16 ? a : next_u32() % (nbuf - sizes[i]);
            sz[n] = sizes[i];
        }
    CHECK(kvi_cuda_crc32_chunks(d, off, sz, n, got) == 0);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t want = libdeflate_crc32(0, h + off[i], sz[i]);
        if (got[i] != want && bad++ < 5)
            printf("device CRC of %u bytes at offset %llu: %08x, CPU %08x\n", sz[i], (unsigned long long)off[i],
                   got[i], want);
    }
    CHECK_MSG(bad == 0, "%u of %u device CRCs differ from libdeflate_crc32", bad, n);
    printf("RESULT device CRC-32 == libdeflate_crc32 for %u regions (sizes 0..%u, all 16 alignments): %s\n", n,
           sizes[NS - 1], bad ? "NO" : "yes");
    cudaFree(d);
    free(h);
}

/* Device buffers of one test stream. */
typedef struct {
    kvtc_cuda_codec *cc;
    size_t ws;
    void *d_ws, *d_s, *d_k, *d_v;
    uint32_t *d_status;
    uint64_t kb;
} ctx;

/* Decode layers [lb, le) (le 0: all) of stream d_s (host copy s, n bytes) into
 * the contiguous [L][H][N_TOK][d] buffers; returns the device status (or
 * 1000 + the kvtc_result when the call fails). */
static uint32_t decode_layers(ctx *x, const uint8_t *s, size_t n, const void *d_s, const kvtc_geometry *g,
                              uint32_t lb, uint32_t le) {
    kvtc_cache c;
    memset(&c, 0, sizeof c);
    c.geometry = *g;
    c.dtype = KVTC_DTYPE_BF16;
    c.n_tokens = N_TOK;
    c.k = x->d_k;
    c.v = x->d_v;
    kvtc_cache_layout o;
    kvtc_cache_layout_from_cache(&c, &o);
    kvtc_decode_range r;
    kvtc_decode_range_init(&r);
    r.layer_begin = lb;
    r.layer_end = le;
    kvtc_result rr = kvtc_cuda_decompress_layout(x->cc, s, n, d_s, n, &r, &o, x->d_ws, x->ws, x->d_status, 0);
    if (rr) return 1000 + (uint32_t)rr;
    uint32_t st = 12345;
    if (cudaDeviceSynchronize() || cudaMemcpy(&st, x->d_status, 4, cudaMemcpyDeviceToHost)) return 2000;
    return st;
}

/* Elements of layers [lb, le) where a and b differ by more than `ulps`
 * bf16 units (bf16 bit patterns of finite values, ordered by magnitude). */
static float bf16_to_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Elements of layers [lb, le) where a and b differ. ulps 0: any bit. ulps 1:
 * more than one bf16 step of the larger magnitude AND more than 2^-9 of the
 * tensor's rms: a GEMM's rounding error scales with its summands, not with
 * the result, so where K's RoPE or the sum cancels to near zero another
 * kernel's (another column split's) last-bit difference is many ulps of a
 * tiny result yet far below the data's scale. */
static uint64_t count_diff(const uint16_t *a, const uint16_t *b, const kvtc_geometry *g, uint32_t lb, uint32_t le,
                           int ulps) {
    uint64_t per = (uint64_t)g->n_kv_heads * N_TOK * g->head_dim, nd = 0;
    double ss = 0;
    for (uint64_t i = lb * per; i < le * per; i++) ss += (double)bf16_to_f(b[i]) * bf16_to_f(b[i]);
    uint64_t count = (uint64_t)(le - lb) * per;
    double floor_abs = sqrt(ss / (double)(count ? count : 1)) / 512.0;
    for (uint64_t i = lb * per; i < le * per; i++) {
        if (!ulps) { /* equal values (+0 == -0) */
            int32_t x = a[i] & 0x8000 ? -(int32_t)(a[i] & 0x7fff) : a[i];
            int32_t y = b[i] & 0x8000 ? -(int32_t)(b[i] & 0x7fff) : b[i];
            nd += x != y;
            continue;
        }
        double x = bf16_to_f(a[i]), y = bf16_to_f(b[i]), m = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
        double ulp = m > 0 ? ldexp(1.0, ilogb(m) - 7) : 0; /* bf16: 8 significant bits */
        double d = fabs(x - y);
        nd += d > ulp && d > floor_abs;
    }
    return nd;
}

static void test_hold(kvtc_cuda_gemm gemm) {
    kvtc_geometry g = synth_geometry(4, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_BF16, N_TOK);
    static const double ratios[] = {8, 32};
    kvtc_basis *b = NULL;
    synth_cache sc;
    if (synth_calibrate(&sp, 2, 4, 128, ratios, 2, &b) || synth_make(&sp, &sc)) {
        CHECK(0);
        return;
    }
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 8;
    eo.entropy_codec = KVTC_CODEC_RANS;
    eo.chunk_tokens = 64;
    uint8_t *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    CHECK(synth_compress(b, &eo, &sc.c, &s, &n) == KVTC_OK);
    eo.ratio = 32; /* a second stream, another plan */
    CHECK(synth_compress(b, &eo, &sc.c, &s2, &n2) == KVTC_OK);
    kvtc_cuda_options co;
    kvtc_cuda_options_init(&co);
    co.gemm = gemm;
    ctx x;
    memset(&x, 0, sizeof x);
    CHECK(kvtc_cuda_codec_alloc(b, &co, &x.cc) == KVTC_OK);
    if (!s || !s2 || !x.cc) goto done;
    size_t ws2 = 0;
    CHECK(kvtc_cuda_stream_workspace_size(x.cc, s, n, &x.ws) == KVTC_OK);
    CHECK(kvtc_cuda_stream_workspace_size(x.cc, s2, n2, &ws2) == KVTC_OK);
    if (ws2 > x.ws) x.ws = ws2;
    size_t ws_enc = kvtc_cuda_workspace_size(x.cc, N_TOK, 0); /* the compress below */
    if (ws_enc > x.ws) x.ws = ws_enc;
    x.kb = kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_BF16, N_TOK);
    void *d_s2 = NULL, *d_bad = NULL;
    CHECK(cudaMalloc(&x.d_ws, x.ws) == cudaSuccess && cudaMalloc(&x.d_s, n) == cudaSuccess &&
          cudaMalloc(&d_s2, n2) == cudaSuccess && cudaMalloc(&d_bad, n) == cudaSuccess &&
          cudaMalloc(&x.d_k, x.kb) == cudaSuccess && cudaMalloc(&x.d_v, x.kb) == cudaSuccess &&
          cudaMalloc((void **)&x.d_status, 4) == cudaSuccess);
    cudaMemcpy(x.d_s, s, n, cudaMemcpyHostToDevice);
    cudaMemcpy(d_s2, s2, n2, cudaMemcpyHostToDevice);
    const uint32_t L = g.n_layers;
    uint16_t *fk = malloc(x.kb), *fv = malloc(x.kb), *rk = malloc(x.kb), *rv = malloc(x.kb), *hk = malloc(x.kb),
             *hv = malloc(x.kb);
    if (!fk || !fv || !rk || !rv || !hk || !hv) { CHECK(0); goto free_host; }
    /* the full decode, then each layer without a hold */
    CHECK(decode_layers(&x, s, n, x.d_s, &g, 0, 0) == 0);
    cudaMemcpy(fk, x.d_k, x.kb, cudaMemcpyDeviceToHost);
    cudaMemcpy(fv, x.d_v, x.kb, cudaMemcpyDeviceToHost);
    cudaMemset(x.d_k, 0x7b, x.kb);
    cudaMemset(x.d_v, 0x7b, x.kb);
    for (uint32_t l = 0; l < L; l++) CHECK(decode_layers(&x, s, n, x.d_s, &g, l, l + 1) == 0);
    cudaMemcpy(rk, x.d_k, x.kb, cudaMemcpyDeviceToHost);
    cudaMemcpy(rv, x.d_v, x.kb, cudaMemcpyDeviceToHost);
    /* held: entropy decode + dequantize + CRCs once, then one decode per layer */
    cudaMemset(x.d_k, 0x7b, x.kb);
    cudaMemset(x.d_v, 0x7b, x.kb);
    uint32_t st = 1;
    CHECK(kvtc_cuda_hold(x.cc, s, n, x.d_s, n, x.d_ws, x.ws, x.d_status, 0) == KVTC_OK);
    cudaMemcpy(&st, x.d_status, 4, cudaMemcpyDeviceToHost);
    CHECK(st == 0);
    for (uint32_t l = 0; l < L; l++) CHECK(decode_layers(&x, s, n, x.d_s, &g, l, l + 1) == 0);
    cudaMemcpy(hk, x.d_k, x.kb, cudaMemcpyDeviceToHost);
    cudaMemcpy(hv, x.d_v, x.kb, cudaMemcpyDeviceToHost);
    uint64_t d_unheld = count_diff(hk, rk, &g, 0, L, 0) + count_diff(hv, rv, &g, 0, L, 0);
    uint64_t d_full = count_diff(hk, fk, &g, 0, L, 1) + count_diff(hv, fv, &g, 0, L, 1);
    CHECK_MSG(d_unheld == 0, "gemm %d: held layer decodes differ from unheld ones in %llu elements", (int)gemm,
              (unsigned long long)d_unheld);
    CHECK_MSG(d_full == 0, "gemm %d: held layer decodes differ from the full decode by > 1 bf16 ulp (and > rms/512) in %llu elements",
              (int)gemm, (unsigned long long)d_full);
    printf("RESULT gemm %d: held one-layer decodes == unheld ones: %s; == full decode within 1 ulp: %s\n", (int)gemm,
           d_unheld ? "NO" : "yes", d_full ? "NO" : "yes");

    /* a decode of another stream in the workspace ends the hold; the next
     * layer decode of the first stream decodes it again, correctly */
    cudaMemset(x.d_k, 0x7b, x.kb);
    CHECK(decode_layers(&x, s2, n2, d_s2, &g, 0, 0) == 0);
    CHECK(decode_layers(&x, s, n, x.d_s, &g, 2, 3) == 0);
    cudaMemcpy(hk, x.d_k, x.kb, cudaMemcpyDeviceToHost);
    CHECK_MSG(count_diff(hk, rk, &g, 2, 3, 0) == 0, "layer 2 after the hold ended differs");
    /* a compress ends the hold too */
    CHECK(kvtc_cuda_hold(x.cc, s, n, x.d_s, n, x.d_ws, x.ws, x.d_status, 0) == KVTC_OK);
    {
        kvtc_cache dc;
        memset(&dc, 0, sizeof dc);
        dc.geometry = g;
        dc.dtype = KVTC_DTYPE_BF16;
        dc.n_tokens = N_TOK;
        dc.k = x.d_k;
        dc.v = x.d_v;
        cudaMemcpy(x.d_k, sc.c.k, x.kb, cudaMemcpyHostToDevice);
        cudaMemcpy(x.d_v, sc.c.v, x.kb, cudaMemcpyHostToDevice);
        size_t cap = kvtc_cuda_compress_bound(x.cc, &dc);
        void *d_out = NULL;
        uint64_t *d_w = NULL;
        CHECK(cap && cudaMalloc(&d_out, cap) == cudaSuccess && cudaMalloc((void **)&d_w, 8) == cudaSuccess);
        if (d_out && d_w)
            CHECK(kvtc_cuda_compress(x.cc, &dc, d_out, cap, d_w, x.d_ws, x.ws, 0) == KVTC_OK);
        cudaDeviceSynchronize();
        cudaFree(d_out);
        cudaFree(d_w);
    }
    cudaMemset(x.d_k, 0x7b, x.kb);
    CHECK(decode_layers(&x, s, n, x.d_s, &g, 1, 2) == 0);
    cudaMemcpy(hk, x.d_k, x.kb, cudaMemcpyDeviceToHost);
    CHECK_MSG(count_diff(hk, rk, &g, 1, 2, 0) == 0, "layer 1 after a compress ended the hold differs");

    /* corruption found by the hold reaches every held decode's status */
    {
        container_header h;
        CHECK(container_read_prefix_only(s, n, &h) == KVTC_OK);
        const uint64_t where[2] = {h.sections[SEC_CHUNK_DATA].offset + h.sections[SEC_CHUNK_DATA].size / 2,
                                   h.sections[SEC_RAW_K].offset + 3};
        for (int w = 0; w < 2; w++) {
            uint8_t *bad = malloc(n);
            if (!bad) { CHECK(0); break; }
            memcpy(bad, s, n);
            bad[where[w]] ^= 0x10;
            cudaMemcpy(d_bad, bad, n, cudaMemcpyHostToDevice);
            st = 0;
            CHECK(kvtc_cuda_hold(x.cc, bad, n, d_bad, n, x.d_ws, x.ws, x.d_status, 0) == KVTC_OK);
            cudaMemcpy(&st, x.d_status, 4, cudaMemcpyDeviceToHost);
            uint32_t st_layer = decode_layers(&x, bad, n, d_bad, &g, 1, 2);
            /* the raw K section fails only its CRC; a chunk byte may fail its
             * segment parse first (the first failure wins) */
            CHECK_MSG(st != 0 && st_layer == st && (w == 0 || st == (uint32_t)KVTC_ERR_CORRUPT),
                      "corrupt %s byte: hold status %u, held decode status %u", w ? "raw K" : "chunk", st, st_layer);
            free(bad);
        }
        kvtc_cuda_release(x.cc);
    }
free_host:
    free(fk); free(fv); free(rk); free(rv); free(hk); free(hv);
    cudaFree(d_s2); cudaFree(d_bad);
done:
    cudaFree(x.d_ws); cudaFree(x.d_s); cudaFree(x.d_k); cudaFree(x.d_v); cudaFree(x.d_status);
    kvtc_cuda_codec_free(x.cc);
    free(s);
    free(s2);
    synth_free(&sc);
    kvtc_basis_free(b);
}

int main(void) {
    gpu_test_require_device();
    test_crc();
    test_hold(KVTC_CUDA_GEMM_BF16);
    test_hold(KVTC_CUDA_GEMM_FP32);
    return TEST_REPORT();
}
