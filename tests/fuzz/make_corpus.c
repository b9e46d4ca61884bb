/* make_corpus.c - writes the seed corpora of the fuzz targets from valid
 * files made in-process: compressed streams (DEFLATE and rANS, explicit
 * positions, all-raw and empty caches, f16/bf16), bases, KV cache files, a
 * minimal valid GGUF llama model, and round-trip parameter blocks.
 *
 *   fuzz_make_corpus OUT_DIR      -> OUT_DIR/fuzz_<target>/seed_*
 *
 * Deterministic: the same build writes the same bytes. scripts/fuzz.sh runs
 * it; tests/fuzz/corpus/ holds its committed output (small: < 200 KB). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "io/cache_file.h"
#include "kvtc.h"

static const char *g_out;

static void write_seed(const char *target, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_out, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) { perror(path); exit(1); }
    snprintf(path, sizeof path, "%s/%s/seed_%s", g_out, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) { perror(path); exit(1); }
}

/* ---- streams ------------------------------------------------------------ */

static void stream_seed(const kvtc_basis *b, const char *name, kvtc_dtype dt, uint64_t n, uint32_t sink,
                        uint32_t win, uint32_t chunk, uint32_t codec, int explicit_pos) {
    kvtc_geometry g = *kvtc_basis_geometry(b);
    int64_t *pos = NULL;
    if (explicit_pos) {
        pos = malloc(sizeof(int64_t) * (n + 1));
        for (uint64_t t = 0; t < n; t++) pos[t] = 1000 + 3 * (int64_t)t;
    }
    synth_params sp;
    synth_params_init(&sp, &g, dt, n);
    sp.model_seed = FUZZ_MODEL_SEED;
    sp.rank = 6;
    sp.data_seed = 42;
    sp.positions = pos;
    synth_cache sc;
    if (synth_make(&sp, &sc)) exit(1);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 4;
    eo.n_sink = sink;
    eo.n_window = win;
    eo.chunk_tokens = chunk;
    eo.entropy_codec = codec;
    uint8_t *s = NULL;
    size_t sn = 0;
    kvtc_result r = synth_compress(b, &eo, &sc.c, &s, &sn);
    if (r) { fprintf(stderr, "compress: %s\n", kvtc_result_string(r)); exit(1); }
    write_seed("fuzz_stream", name, s, sn);
    free(s);
    synth_free(&sc);
    free(pos);
}

/* ---- a minimal GGUF llama model ---------------------------------------- */

typedef struct buf { uint8_t *p; size_t n, cap; } buf;
static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(1);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(buf *b, uint64_t v) { put(b, &v, 8); }
static void putf(buf *b, float v) { put(b, &v, 4); }
static void putstr(buf *b, const char *s) { put64(b, strlen(s)); put(b, s, strlen(s)); }
static void kv_str(buf *b, const char *k, const char *v) { putstr(b, k); put32(b, 8); putstr(b, v); }
static void kv_u32(buf *b, const char *k, uint32_t v) { putstr(b, k); put32(b, 4); put32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { putstr(b, k); put32(b, 6); putf(b, v); }

typedef struct tdesc { const char *name; uint64_t ne0, ne1; } tdesc;

static void eng_gguf_seed(void) {
    enum { D = 8, NV = 8, FF = 16, KVD = 4 };
    static const char *tokens[NV] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "t", ("\xe2\x96\x81" "a"), "<0x0A>"};
    static const tdesc ts[] = {
        {"token_embd.weight", D, NV},   {"output_norm.weight", D, 1},  {"blk.0.attn_norm.weight", D, 1},
        {"blk.0.attn_q.weight", D, D},  {"blk.0.attn_k.weight", D, KVD}, {"blk.0.attn_v.weight", D, KVD},
        {"blk.0.attn_output.weight", D, D}, {"blk.0.ffn_norm.weight", D, 1}, {"blk.0.ffn_gate.weight", D, FF},
        {"blk.0.ffn_up.weight", D, FF}, {"blk.0.ffn_down.weight", FF, D},
    };
    const uint32_t nt = sizeof ts / sizeof ts[0];
    buf b = {0};
    put(&b, "GGUF", 4);
    put32(&b, 3);
    put64(&b, nt);
    put64(&b, 15);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.context_length", 64);
    kv_u32(&b, "llama.embedding_length", D);
    kv_u32(&b, "llama.block_count", 1);
    kv_u32(&b, "llama.feed_forward_length", FF);
    kv_u32(&b, "llama.attention.head_count", 2);
    kv_u32(&b, "llama.attention.head_count_kv", 1);
    kv_f32(&b, "llama.rope.freq_base", 10000.0f);
    kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_str(&b, "tokenizer.ggml.model", "llama");
    putstr(&b, "tokenizer.ggml.tokens"); put32(&b, 9); put32(&b, 8); put64(&b, NV);
    for (int i = 0; i < NV; i++) putstr(&b, tokens[i]);
    putstr(&b, "tokenizer.ggml.scores"); put32(&b, 9); put32(&b, 6); put64(&b, NV);
    for (int i = 0; i < NV; i++) putf(&b, -(float)i);
    putstr(&b, "tokenizer.ggml.token_type"); put32(&b, 9); put32(&b, 5); put64(&b, NV);
    for (int i = 0; i < NV; i++) put32(&b, i == 0 ? 2 : i < 3 ? 3 : i == 7 ? 6 : 1);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
    uint64_t off = 0;
    for (uint32_t i = 0; i < nt; i++) {
        putstr(&b, ts[i].name);
        uint32_t nd = ts[i].ne1 == 1 ? 1 : 2;
        put32(&b, nd);
        put64(&b, ts[i].ne0);
        if (nd == 2) put64(&b, ts[i].ne1);
        put32(&b, 0); /* F32 */
        put64(&b, off);
        off += (ts[i].ne0 * ts[i].ne1 * 4 + 31) & ~31ull;
    }
    static const uint8_t zero[32] = {0};
    while (b.n % 32) put(&b, zero, 1);
    uint32_t seed = 1;
    for (uint32_t i = 0; i < nt; i++) {
        uint64_t ne = ts[i].ne0 * ts[i].ne1;
        for (uint64_t j = 0; j < ne; j++) {
            seed = seed * 1664525u + 1013904223u;
            float v = ts[i].ne1 == 1 ? 1.0f : ((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.5f;
            putf(&b, v);
        }
        while (b.n % 32) put(&b, zero, 1);
    }
    write_seed("fuzz_gguf", "tiny_llama", b.p, b.n);
    /* its header alone (no tensor data): the truncation paths */
    write_seed("fuzz_gguf", "tiny_llama_truncated", b.p, b.n / 3);
    free(b.p);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]); return 2; }
    g_out = argv[1];
    if (mkdir(g_out, 0755) != 0 && errno != EEXIST) { perror(g_out); return 1; }
    kvtc_basis *b = fuzz_make_basis(0);

    /* streams for fuzz_stream (the basis it uses: fuzz_make_basis(0)) */
    stream_seed(b, "deflate", KVTC_DTYPE_F32, 40, 2, 4, 8, KVTC_CODEC_DEFLATE, 0);
    stream_seed(b, "rans", KVTC_DTYPE_F16, 40, 2, 4, 8, KVTC_CODEC_RANS, 0);
    stream_seed(b, "positions_bf16", KVTC_DTYPE_BF16, 23, 1, 2, 5, KVTC_CODEC_DEFLATE, 1);
    stream_seed(b, "all_raw", KVTC_DTYPE_F16, 5, 4, 16, 8, KVTC_CODEC_DEFLATE, 0);
    stream_seed(b, "empty", KVTC_DTYPE_F32, 0, 4, 16, 8, KVTC_CODEC_DEFLATE, 0);
    stream_seed(b, "one_chunk_rans", KVTC_DTYPE_F32, 12, 0, 0, 64, KVTC_CODEC_RANS, 0);

    /* bases for fuzz_basis (and as safetensors seeds) */
    for (int w = 0; w < 3; w++) {
        kvtc_basis *bw = w ? fuzz_make_basis(w) : b;
        size_t n = 0;
        void *bytes = synth_basis_bytes(bw, &n);
        if (!bytes) return 1;
        char name[32];
        snprintf(name, sizeof name, "basis%d", w);
        write_seed("fuzz_basis", name, bytes, n);
        if (w == 2) write_seed("fuzz_safetensors", "basis2", bytes, n);
        free(bytes);
        if (w) kvtc_basis_free(bw);
    }

    /* cache files for fuzz_safetensors */
    for (int dt = 0; dt < 3; dt++) {
        kvtc_geometry g = fuzz_geometry(dt);
        synth_params sp;
        synth_params_init(&sp, &g, (kvtc_dtype)dt, 6);
        synth_cache sc;
        if (synth_make(&sp, &sc)) return 1;
        int32_t ids[6] = {1, 5, 9, 2, 7, 3};
        int64_t pos[6] = {0, 1, 2, 10, 11, 12};
        if (dt == 1) sc.c.token_ids = ids;
        if (dt == 2) { free(sc.c.positions); sc.c.positions = malloc(sizeof pos); memcpy(sc.c.positions, pos, sizeof pos); }
        void *bytes = NULL;
        size_t n = 0;
        if (cache_file_serialize(&sc.c, &bytes, &n)) return 1;
        char name[32];
        snprintf(name, sizeof name, "cache_dtype%d", dt);
        write_seed("fuzz_safetensors", name, bytes, n);
        free(bytes);
        sc.c.token_ids = NULL;
        synth_free(&sc);
    }

    eng_gguf_seed();

    /* round-trip parameter blocks: [basis, dtype, n lo, n hi, sink, window,
     * chunk, threads, codec, level, ratio, flags, seed lo, seed hi, noise, ...] */
    static const uint8_t rt[][20] = {
        {0, 0, 40, 0, 2, 4, 7, 0, 0, 6, 1, 0, 1, 0, 8},
        {1, 1, 200, 0, 4, 16, 63, 1, 1, 1, 0, 1, 2, 0, 0, 0, 16, 5, 7, 9},
        {2, 2, 90, 1, 0, 0, 0, 0, 0, 12, 2, 2, 3, 0, 60, 1, 2, 100},
        {0, 1, 3, 0, 4, 16, 7, 0, 0, 6, 1, 4, 4, 0, 8},
        {1, 0, 0, 0, 4, 16, 7, 0, 1, 6, 3, 0, 5, 0, 8},
        {2, 0, 120, 0, 250, 250, 9, 1, 0, 0, 4, 5, 6, 0, 30},
    };
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "params%zu", i);
        write_seed("fuzz_roundtrip", name, rt[i], sizeof rt[i]);
    }
    kvtc_basis_free(b);
    return 0;
}
