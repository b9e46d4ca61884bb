/* cmd_codec.c - kvtc compress / decompress / info. */
#include <cblas.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "decode_range.h"
#include "io/cache_file.h"
#include "io/safetensors.h"
#include "model_kv.h"

/* The codec's worker threads (--threads) parallelize by chunk and token;
 * OpenBLAS's own threads would spin between the codec's small GEMMs and
 * take the cores from them (measured: 2 worker threads run 1.1-1.7x faster
 * with OpenBLAS on one thread, bench/RESULTS.md). The CLI owns its process,
 * so it may make that process-wide choice; the library never does. */
static void codec_threads_setup(void) { openblas_set_num_threads(1); }

static int load_basis(const char *cmd, const char *path, kvtc_basis **out) {
    void *buf;
    size_t size;
    char err[512];
    if (cli_read_file(path, &buf, &size, err, sizeof err)) return cli_fail(cmd, "%s", err);
    kvtc_result r = kvtc_basis_load(buf, size, out);
    free(buf);
    if (r) return cli_fail(cmd, "basis %s: %s", path, kvtc_result_string(r));
    return 0;
}

static const char *dtype_name(kvtc_dtype t) {
    return t == KVTC_DTYPE_F32 ? "f32" : t == KVTC_DTYPE_F16 ? "f16" : "bf16";
}

static const char *rope_name(kvtc_rope_type t) {
    return t == KVTC_ROPE_NORM ? "norm" : t == KVTC_ROPE_NEOX ? "neox" : "none";
}

/* ---- compress ----------------------------------------------------------- */

static const char compress_help[] =
    "usage: kvtc compress --basis BASIS [options] IN.safetensors -o OUT.kvtc\n"
    "  --ratio R        target compression ratio (default 20): a plan of the basis made for R, else one\n"
    "                   solved for R at start-up and stored in the stream\n"
    "  --sink N         leading tokens kept uncompressed (default 4)\n"
    "  --window N       trailing tokens kept uncompressed (default 128)\n"
    "  --chunk N        tokens per independently decodable chunk (default 256)\n"
    "  --threads N      worker threads (default 2)\n"
    "  --level L        DEFLATE level 0..12 (default 6)\n"
    "  --codec C        entropy coder: deflate (default) or rans (interleaved rANS, GPU-friendly)\n";

int cmd_compress(int argc, char **argv) {
    const char *basis_path = NULL, *in = NULL, *out = NULL;
    kvtc_encode_options o;
    kvtc_encode_options_init(&o);
    o.n_threads = 2;
    o.ratio = 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(compress_help, stdout); return 0; }
        if (!strcmp(a, "--basis")) { if (!(basis_path = cli_value(argc, argv, &i))) return cli_usage("compress", "%s needs a value", a); }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value(argc, argv, &i))) return cli_usage("compress", "%s needs a value", a); }
        else if (!strcmp(a, "--ratio")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_double(v, &o.ratio) || o.ratio <= 1) return cli_usage("compress", "--ratio needs a number > 1"); }
        else if (!strcmp(a, "--sink")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.n_sink)) return cli_usage("compress", "--sink needs a count"); }
        else if (!strcmp(a, "--window")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.n_window)) return cli_usage("compress", "--window needs a count"); }
        else if (!strcmp(a, "--chunk")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.chunk_tokens) || !o.chunk_tokens) return cli_usage("compress", "--chunk needs a count > 0"); }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.n_threads) || !o.n_threads || o.n_threads > 256) return cli_usage("compress", "--threads needs 1..256"); }
        else if (!strcmp(a, "--level")) { uint32_t l; if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &l) || l > 12) return cli_usage("compress", "--level needs 0..12"); o.deflate_level = (int)l; }
        else if (!strcmp(a, "--codec")) {
            if (!(v = cli_value(argc, argv, &i))) return cli_usage("compress", "%s needs a value", a);
            if (!strcmp(v, "deflate")) o.entropy_codec = KVTC_CODEC_DEFLATE;
            else if (!strcmp(v, "rans")) o.entropy_codec = KVTC_CODEC_RANS;
            else return cli_usage("compress", "--codec takes deflate or rans");
        }
        else if (a[0] == '-') return cli_usage("compress", "unknown option %s (see --help)", a);
        else if (!in) in = a;
        else return cli_usage("compress", "more than one input given");
    }
    if (!basis_path || !in || !out) return cli_usage("compress", "needs --basis, an input file and -o");
    codec_threads_setup();
    kvtc_basis *b = NULL;
    if (load_basis("compress", basis_path, &b)) return 1;
    char err[512];
    void *buf = NULL, *zbuf = NULL;
    size_t size;
    cache_file cf;
    memset(&cf, 0, sizeof cf);
    kvtc_encoder *e = NULL;
    int rc = 1;
    kvtc_result r;
    if (cli_read_file(in, &buf, &size, err, sizeof err)) { cli_fail("compress", "%s", err); goto done; }
    if ((r = cache_file_parse(buf, size, &cf))) { cli_fail("compress", "%s: %s", in, kvtc_result_string(r)); goto done; }
    if ((r = kvtc_encoder_alloc(b, &o, &e))) { cli_fail("compress", "%s", kvtc_result_string(r)); goto done; }
    size_t cap = kvtc_compress_bound(e, &cf.cache);
    if (!cap) {
        cli_fail("compress", "%s does not fit the basis: cache %ux%ux%u (rope %s), basis %ux%ux%u (rope %s)", in,
                 cf.cache.geometry.n_layers, cf.cache.geometry.n_kv_heads, cf.cache.geometry.head_dim,
                 rope_name(cf.cache.geometry.rope_type), kvtc_basis_geometry(b)->n_layers,
                 kvtc_basis_geometry(b)->n_kv_heads, kvtc_basis_geometry(b)->head_dim,
                 rope_name(kvtc_basis_geometry(b)->rope_type));
        goto done;
    }
    if (!(zbuf = malloc(cap))) { cli_fail("compress", "out of memory"); goto done; }
    size_t written;
    if ((r = kvtc_compress(e, &cf.cache, zbuf, cap, &written))) { cli_fail("compress", "%s", kvtc_result_string(r)); goto done; }
    if (cli_write_file(out, zbuf, written, err, sizeof err)) { cli_fail("compress", "%s", err); goto done; }
    kvtc_stream_info info;
    kvtc_stream_get_info(zbuf, written, &info);
    double raw16 = 2.0 * info.k_bytes / kvtc_dtype_size(info.dtype) * 2.0;
    fprintf(stderr, "kvtc: %s -> %s: %" PRIu64 " tokens (%" PRIu64 " coded), %zu bytes, %.2fx vs fp16 total, %.2fx over coded tokens\n",
            in, out, info.n_tokens, info.n_coded_tokens, written, raw16 / (double)written,
            info.coded_bytes ? (double)info.n_coded_tokens * raw16 / (double)info.n_tokens / (double)info.coded_bytes : 0.0);
    rc = 0;
done:
    kvtc_encoder_free(e);
    cache_file_free(&cf);
    free(buf);
    free(zbuf);
    kvtc_basis_free(b);
    return rc;
}

/* ---- decompress --------------------------------------------------------- */

static const char decompress_help[] =
    "usage: kvtc decompress --basis BASIS [options] IN.kvtc -o OUT.safetensors\n"
    "  --threads N      worker threads (default 2)\n"
    "  --model M.gguf   the model, for streams that recompute their first layers\n"
    "  --tokens N       only the first N tokens (reads only the chunks they need)\n"
    "  --layers A:B     only layers A..B-1 (written as a cache of B-A layers)\n";

int cmd_decompress(int argc, char **argv) {
    const char *basis_path = NULL, *in = NULL, *out = NULL, *model_path = NULL;
    const char *tokens_arg = NULL, *layers_arg = NULL;
    kvtc_decode_options o;
    kvtc_decode_options_init(&o);
    o.n_threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(decompress_help, stdout); return 0; }
        if (!strcmp(a, "--basis")) { if (!(basis_path = cli_value(argc, argv, &i))) return cli_usage("decompress", "%s needs a value", a); }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value(argc, argv, &i))) return cli_usage("decompress", "%s needs a value", a); }
        else if (!strcmp(a, "--model")) { if (!(model_path = cli_value(argc, argv, &i))) return cli_usage("decompress", "%s needs a value", a); }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.n_threads) || !o.n_threads || o.n_threads > 256) return cli_usage("decompress", "--threads needs 1..256"); }
        else if (!strcmp(a, "--tokens")) { if (!(tokens_arg = cli_value(argc, argv, &i))) return cli_usage("decompress", "%s needs a value", a); }
        else if (!strcmp(a, "--layers")) { if (!(layers_arg = cli_value(argc, argv, &i))) return cli_usage("decompress", "%s needs a value", a); }
        else if (a[0] == '-') return cli_usage("decompress", "unknown option %s (see --help)", a);
        else if (!in) in = a;
        else return cli_usage("decompress", "more than one input given");
    }
    if (!basis_path || !in || !out) return cli_usage("decompress", "needs --basis, an input file and -o");
    codec_threads_setup();
    kvtc_basis *b = NULL;
    if (load_basis("decompress", basis_path, &b)) return 1;
    char err[512];
    void *buf = NULL, *obuf = NULL;
    size_t size, osize;
    cache_file cf;
    memset(&cf, 0, sizeof cf);
    model_text mt;
    memset(&mt, 0, sizeof mt);
    kvtc_decoder *d = NULL;
    int rc = 1;
    kvtc_result r;
    kvtc_stream_info info;
    if (cli_read_file(in, &buf, &size, err, sizeof err)) { cli_fail("decompress", "%s", err); goto done; }
    if ((r = kvtc_stream_get_info(buf, size, &info))) { cli_fail("decompress", "%s: %s", in, kvtc_result_string(r)); goto done; }
    kvtc_decode_range rg;
    if (decode_range_parse(tokens_arg, layers_arg, &info, &rg, err, sizeof err)) { rc = cli_usage("decompress", "%s", err); goto done; }
    if (info.recompute_layers && rg.layer_begin < info.recompute_layers) {
        if (!model_path) { cli_fail("decompress", "%s recomputes its first %u layer(s): pass --model M.gguf", in, info.recompute_layers); goto done; }
        if (model_text_load(&mt, model_path, NULL)) goto done;
        o.recompute = model_recompute;
        o.recompute_user = mt.model;
    }
    if ((r = kvtc_decoder_alloc(b, &o, &d))) { cli_fail("decompress", "%s", kvtc_result_string(r)); goto done; }
    kvtc_geometry og;
    uint64_t on;
    decode_range_output(&info, &rg, &og, &on);
    if ((r = cache_file_alloc(&cf, &og, info.dtype, on, 1, info.has_token_ids))) { cli_fail("decompress", "%s", kvtc_result_string(r)); goto done; }
    if ((r = decode_range_run(d, buf, size, &info, &rg, &cf.cache))) { cli_fail("decompress", "%s: %s", in, kvtc_result_string(r)); goto done; }
    if ((r = cache_file_serialize(&cf.cache, &obuf, &osize))) { cli_fail("decompress", "%s", kvtc_result_string(r)); goto done; }
    if (cli_write_file(out, obuf, osize, err, sizeof err)) { cli_fail("decompress", "%s", err); goto done; }
    rc = 0;
done:
    kvtc_decoder_free(d);
    cache_file_free(&cf);
    model_text_free(&mt);
    free(buf);
    free(obuf);
    kvtc_basis_free(b);
    return rc;
}

/* ---- info --------------------------------------------------------------- */

static void print_basis(const kvtc_basis *b) {
    const kvtc_geometry *g = kvtc_basis_geometry(b);
    printf("basis: %u layers x %u kv heads x %u dims, rope %s (dim %u, theta %g)\n", g->n_layers,
           g->n_kv_heads, g->head_dim, rope_name(g->rope_type), g->rope_dim ? g->rope_dim : g->head_dim,
           (double)g->rope_theta);
    printf("  recomputed layers: %u%s\n", kvtc_basis_recomputed_layers(b),
           kvtc_basis_recomputed_layers(b) ? " (decoding needs the model)" : "");
    printf("  fingerprint: %016" PRIx64 "\n", kvtc_basis_fingerprint(b));
    double ref = 2.0 * 16.0 * g->n_layers * g->n_kv_heads * g->head_dim;
    printf("  %-8s %-12s %-10s %-8s %-8s %-12s %-12s\n", "plan", "target", "bits/tok", "rank K", "rank V",
           "exp.err K", "exp.err V");
    for (uint32_t i = 0; i < kvtc_basis_plan_count(b); i++) {
        kvtc_plan_info pi;
        kvtc_basis_plan_info(b, i, &pi);
        printf("  %-8u %-12.4g %-10.0f %-8u %-8u %-12.4g %-12.4g  (coded ratio %.2fx before DEFLATE)\n", i,
               pi.target_ratio, pi.bits_per_token, pi.rank_k, pi.rank_v, pi.expected_error_k,
               pi.expected_error_v, pi.bits_per_token > 0 ? ref / pi.bits_per_token : 0.0);
    }
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc != 2) return cli_usage("info", "takes exactly one file");
        fputs("usage: kvtc info FILE   (a .kvtc stream, a basis, or a KV cache .safetensors)\n", stdout);
        return 0;
    }
    void *buf;
    size_t size;
    char err[512];
    if (cli_read_file(argv[1], &buf, &size, err, sizeof err)) return cli_fail("info", "%s", err);
    int rc = 0;
    kvtc_stream_info si;
    kvtc_result r = kvtc_stream_get_info(buf, size, &si);
    if (r == KVTC_OK) {
        const kvtc_geometry *g = &si.geometry;
        double fp16_total = 2.0 * (double)si.k_bytes / kvtc_dtype_size(si.dtype) * 2.0;
        double fp16_coded = fp16_total * (double)si.n_coded_tokens / (double)(si.n_tokens ? si.n_tokens : 1);
        printf("kvtc stream, format %u.%u\n", si.version_major, si.version_minor);
        printf("  geometry: %u layers x %u kv heads x %u dims, %s, rope %s (dim %u, theta %g)\n", g->n_layers,
               g->n_kv_heads, g->head_dim, dtype_name(si.dtype), rope_name(g->rope_type), g->rope_dim,
               (double)g->rope_theta);
        printf("  tokens: %" PRIu64 " (%u sink + %u window raw, %" PRIu64 " coded in %u chunks of %u)\n",
               si.n_tokens, si.n_sink, si.n_window, si.n_coded_tokens, si.n_chunks, si.chunk_tokens);
        printf("  plan: target ratio %g, basis fingerprint %016" PRIx64 "\n", si.plan_ratio, si.basis_fingerprint);
        if (si.recompute_layers)
            printf("  needs the model: the first %u layer(s) are recomputed from token ids at decode\n",
                   si.recompute_layers);
        printf("  sizes: stream %" PRIu64 " B, coded chunks %" PRIu64 " B, raw sink/window %" PRIu64 " B\n",
               si.stream_bytes, si.coded_bytes, si.raw_bytes);
        printf("  ratio vs fp16: %.2fx over the whole cache, %.2fx over coded tokens\n",
               fp16_total / (double)si.stream_bytes, si.coded_bytes ? fp16_coded / (double)si.coded_bytes : 0.0);
        printf("  decoded size: k %" PRIu64 " B + v %" PRIu64 " B\n", si.k_bytes, si.v_bytes);
        goto done;
    }
    if (r != KVTC_ERR_BAD_MAGIC) { rc = cli_fail("info", "%s: %s", argv[1], kvtc_result_string(r)); goto done; }
    kvtc_basis *b;
    r = kvtc_basis_load(buf, size, &b);
    if (r == KVTC_OK) {
        print_basis(b);
        kvtc_basis_free(b);
        goto done;
    }
    if (r != KVTC_ERR_BAD_MAGIC) { rc = cli_fail("info", "%s: basis: %s", argv[1], kvtc_result_string(r)); goto done; }
    cache_file cf;
    r = cache_file_parse(buf, size, &cf);
    if (r == KVTC_OK) {
        const kvtc_geometry *g = &cf.cache.geometry;
        printf("KV cache: %u layers x %u kv heads x %" PRIu64 " tokens x %u dims, %s, rope %s (dim %u, theta %g)%s%s\n",
               g->n_layers, g->n_kv_heads, cf.cache.n_tokens, g->head_dim, dtype_name(cf.cache.dtype),
               rope_name(g->rope_type), g->rope_dim, (double)g->rope_theta,
               cf.cache.positions ? ", positions" : "", cf.cache.token_ids ? ", token ids" : "");
        cache_file_free(&cf);
        goto done;
    }
    rc = cli_fail("info", "%s: not a kvtc stream, basis or KV cache file (%s)", argv[1], kvtc_result_string(r));
done:
    free(buf);
    return rc;
}
