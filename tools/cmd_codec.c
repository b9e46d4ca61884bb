/* cmd_codec.c - kvtc compress / decompress / info. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_llama.h"
#include "decode_range.h"
#include "file_kind.h"
#include "internal.h"
#include "model_fingerprint.h"
#include "model_kv.h"

static const char *rope_name(kvtc_rope_type t) {
    return t == KVTC_ROPE_NORM ? "norm" : t == KVTC_ROPE_NEOX ? "neox" : "none";
}

/* ---- compress ----------------------------------------------------------- */

static const char compress_help[] =
    "usage: kvtc compress --basis BASIS [options] IN.safetensors -o OUT.kvtc\n"
    "  IN and OUT may be - for standard input / output.\n"
    "  --ratio R        target compression ratio (default 20): a plan of the basis made for R, else one\n"
    "                   solved for R at start-up and stored in the stream\n"
    "  --sink N         leading tokens kept uncompressed (default 4)\n"
    "  --window N       trailing tokens kept uncompressed (default 128)\n"
    "  --chunk N        tokens per independently decodable chunk (default 256)\n"
    "  --threads N      worker threads (default 2)\n"
    "  --level L        DEFLATE level 0..12 (default 6)\n"
    "  --codec C        entropy coder: deflate (default) or rans (interleaved rANS, GPU-friendly)\n"
    "  --model M.gguf   the model, required with a basis that recomputes layers: its fingerprint\n"
    "                   goes into the stream and the achieved error is measured with it\n"
    "  --max-error E    fail (write nothing) when the relative error ||x - x'|| / ||x|| over all\n"
    "                   of K and V exceeds E; the error reached is always printed\n";

/* The field in which a cache differs from the basis, named with both values. */
static void describe_mismatch(const kvtc_cache *c, const kvtc_basis *b, char *out, size_t cap) {
    const kvtc_geometry *x = &c->geometry, *y = kvtc_basis_geometry(b);
    if (x->n_layers != y->n_layers)
        snprintf(out, cap, "n_layers: cache %u, basis %u", x->n_layers, y->n_layers);
    else if (x->n_kv_heads != y->n_kv_heads)
        snprintf(out, cap, "n_kv_heads: cache %u, basis %u", x->n_kv_heads, y->n_kv_heads);
    else if (x->head_dim != y->head_dim)
        snprintf(out, cap, "head_dim: cache %u, basis %u", x->head_dim, y->head_dim);
    else if (x->rope_type != y->rope_type)
        snprintf(out, cap, "rope_type: cache %s, basis %s", rope_name(x->rope_type), rope_name(y->rope_type));
    else if (kvi_geometry_rope_dim(x) != kvi_geometry_rope_dim(y))
        snprintf(out, cap, "rope_dim: cache %u, basis %u", kvi_geometry_rope_dim(x), kvi_geometry_rope_dim(y));
    else if (x->rope_theta != y->rope_theta)
        snprintf(out, cap, "rope_theta: cache %.9g, basis %.9g", (double)x->rope_theta, (double)y->rope_theta);
    else if (kvtc_basis_recomputed_layers(b) && !c->token_ids && c->n_tokens)
        snprintf(out, cap, "token_ids: the basis recomputes %u layer(s) from token ids; the cache has none",
                 kvtc_basis_recomputed_layers(b));
    else
        snprintf(out, cap, "the cache is invalid for the codec");
}

/* ||a - b|| / ||a|| over k and v (0 when both are all zero). */
static double relative_error(const kvtc_cache *a, const kvtc_cache *b) {
    uint64_t n = kvtc_cache_tensor_bytes(&a->geometry, a->dtype, a->n_tokens) / kvtc_dtype_size(a->dtype);
    double num = 0, den = 0;
    for (int s = 0; s < 2; s++) {
        const void *x = s ? a->v : a->k, *y = s ? b->v : b->k;
        for (uint64_t i = 0; i < n; i++) {
            double u = kvi_load_elem(x, a->dtype, i), w = kvi_load_elem(y, a->dtype, i);
            num += (u - w) * (u - w);
            den += u * u;
        }
    }
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

/* Decode the stream just made and measure its error against the input. */
static int measure_error(const kvtc_basis *b, const model_text *mt, uint64_t model_fp, const void *stream,
                         size_t size, const kvtc_cache *in, double *err) {
    kvtc_decode_options o;
    kvtc_decode_options_init(&o);
    o.n_threads = 2;
    if (mt->model) {
        o.recompute = model_recompute;
        o.recompute_user = mt->model;
        o.model_fingerprint = model_fp;
    }
    kvtc_decoder *d = NULL;
    cache_file back;
    memset(&back, 0, sizeof back);
    kvtc_result r = kvtc_decoder_alloc(b, &o, &d);
    if (!r) r = cache_file_alloc(&back, &in->geometry, in->dtype, in->n_tokens, 0, 0);
    if (!r) r = kvtc_decompress(d, stream, size, &back.cache);
    if (!r) *err = relative_error(in, &back.cache);
    kvtc_decoder_free(d);
    cache_file_free(&back);
    if (r) return cli_fail("compress", "cannot decode the new stream to measure its error: %s", kvtc_result_string(r));
    return 0;
}

enum { OPT_BASIS = 256, OPT_RATIO, OPT_SINK, OPT_WINDOW, OPT_CHUNK, OPT_THREADS, OPT_LEVEL, OPT_CODEC, OPT_MODEL,
       OPT_MAX_ERROR, OPT_TOKENS, OPT_LAYERS };

int cmd_compress(int argc, char **argv) {
    if (lcpp_args_have_state_file(argc, argv)) return lcpp_cmd_compress(argc, argv);
    static const struct option longopts[] = {
        {"basis", required_argument, NULL, OPT_BASIS},     {"ratio", required_argument, NULL, OPT_RATIO},
        {"sink", required_argument, NULL, OPT_SINK},       {"window", required_argument, NULL, OPT_WINDOW},
        {"chunk", required_argument, NULL, OPT_CHUNK},     {"threads", required_argument, NULL, OPT_THREADS},
        {"level", required_argument, NULL, OPT_LEVEL},     {"codec", required_argument, NULL, OPT_CODEC},
        {"model", required_argument, NULL, OPT_MODEL},     {"max-error", required_argument, NULL, OPT_MAX_ERROR},
        {"output", required_argument, NULL, 'o'},          {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *basis_path = NULL, *in = NULL, *out = NULL, *model_path = NULL;
    double max_error = INFINITY;
    kvtc_encode_options o;
    kvtc_encode_options_init(&o);
    o.n_threads = 2;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        uint32_t l;
        switch (c) {
        case 'h': fputs(compress_help, stdout); return 0;
        case 'o': out = optarg; break;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_MODEL: model_path = optarg; break;
        case OPT_RATIO:
            if (cli_parse_double(optarg, &o.ratio) || o.ratio <= 1) return cli_usage("compress", "--ratio needs a number > 1, not '%s'", optarg);
            break;
        case OPT_MAX_ERROR:
            if (cli_parse_double(optarg, &max_error) || max_error < 0) return cli_usage("compress", "--max-error needs a number >= 0, not '%s'", optarg);
            break;
        case OPT_SINK: if (cli_parse_u32(optarg, &o.n_sink)) return cli_usage("compress", "--sink needs a count, not '%s'", optarg); break;
        case OPT_WINDOW: if (cli_parse_u32(optarg, &o.n_window)) return cli_usage("compress", "--window needs a count, not '%s'", optarg); break;
        case OPT_CHUNK:
            if (cli_parse_u32(optarg, &o.chunk_tokens) || !o.chunk_tokens || o.chunk_tokens > 65536) return cli_usage("compress", "--chunk needs 1..65536, not '%s'", optarg);
            break;
        case OPT_THREADS:
            if (cli_parse_u32(optarg, &o.n_threads) || !o.n_threads || o.n_threads > 256) return cli_usage("compress", "--threads needs 1..256, not '%s'", optarg);
            break;
        case OPT_LEVEL:
            if (cli_parse_u32(optarg, &l) || l > 12) return cli_usage("compress", "--level needs 0..12, not '%s'", optarg);
            o.deflate_level = (int)l;
            break;
        case OPT_CODEC:
            if (!strcmp(optarg, "deflate")) o.entropy_codec = KVTC_CODEC_DEFLATE;
            else if (!strcmp(optarg, "rans")) o.entropy_codec = KVTC_CODEC_RANS;
            else return cli_usage("compress", "--codec takes deflate or rans, not '%s'", optarg);
            break;
        case ':': return cli_usage("compress", "%s needs a value", argv[optind - 1]);
        default: return cli_usage("compress", "unknown option %s", argv[optind - 1]);
        }
    }
    for (; optind < argc; optind++) {
        if (in) return cli_usage("compress", "more than one input given");
        in = argv[optind];
    }
    if (!basis_path || !in || !out) return cli_usage("compress", "needs --basis, an input file and -o");
    if (!strcmp(basis_path, "-") && !strcmp(in, "-"))
        return cli_usage("compress", "--basis and the input cannot both be - (standard input)");
    cli_codec_threads_setup();
    kvtc_basis *b = NULL;
    if (cli_load_basis("compress", basis_path, &b)) return 1;
    char err[512];
    void *buf = NULL, *zbuf = NULL;
    size_t size;
    cache_file cf;
    memset(&cf, 0, sizeof cf);
    model_text mt;
    memset(&mt, 0, sizeof mt);
    kvtc_encoder *e = NULL;
    int rc = 1;
    kvtc_result r;
    uint32_t m = kvtc_basis_recomputed_layers(b);
    if (m && !model_path) {
        cli_fail("compress", "the basis recomputes %u layer(s) from the model: pass --model M.gguf (its fingerprint goes into the stream)", m);
        goto done;
    }
    if (m) {
        if (model_fingerprint_file("compress", model_path, m, kvtc_basis_geometry(b), &o.model_fingerprint)) goto done;
        if (model_text_load(&mt, model_path, NULL)) goto done;
    }
    if (cli_read_file(in, &buf, &size, err, sizeof err)) { cli_fail("compress", "%s", err); goto done; }
    if (file_kind_expect("compress", in, buf, size, FILE_KIND_CACHE)) goto done;
    if ((r = cache_file_parse(buf, size, &cf))) { cli_fail("compress", "%s: %s", in, kvtc_result_string(r)); goto done; }
    if (cli_encoder_alloc("compress", b, &o, &e)) goto done;
    size_t cap = kvtc_compress_bound(e, &cf.cache);
    if (!cap) {
        char why[256];
        describe_mismatch(&cf.cache, b, why, sizeof why);
        cli_fail("compress", "%s does not fit the basis: %s", in, why);
        goto done;
    }
    if (!(zbuf = malloc(cap))) { cli_fail("compress", "out of memory"); goto done; }
    size_t written;
    if ((r = kvtc_compress(e, &cf.cache, zbuf, cap, &written))) { cli_fail("compress", "%s: %s", in, kvtc_result_string(r)); goto done; }
    double rel = 0;
    if (measure_error(b, &mt, o.model_fingerprint, zbuf, written, &cf.cache, &rel)) goto done;
    if (!(rel <= max_error)) {
        cli_fail("compress", "%s: relative error %.4g exceeds --max-error %g; nothing written", in, rel, max_error);
        goto done;
    }
    if (cli_write_file(out, zbuf, written, err, sizeof err)) { cli_fail("compress", "%s", err); goto done; }
    kvtc_stream_info info = {.struct_size = sizeof info};
    kvtc_stream_get_info(zbuf, written, &info);
    double raw16 = 2.0 * info.k_bytes / kvtc_dtype_size(info.dtype) * 2.0;
    fprintf(stderr, "kvtc: %s -> %s: %" PRIu64 " tokens (%" PRIu64 " coded), %zu bytes, %.2fx vs fp16 total, %.2fx over coded tokens, relative error %.4g\n",
            in, out, info.n_tokens, info.n_coded_tokens, written, raw16 / (double)written,
            info.coded_bytes ? (double)info.n_coded_tokens * raw16 / (double)info.n_tokens / (double)info.coded_bytes : 0.0,
            rel);
    rc = 0;
done:
    kvtc_encoder_free(e);
    cache_file_free(&cf);
    model_text_free(&mt);
    free(buf);
    free(zbuf);
    kvtc_basis_free(b);
    return rc;
}

/* ---- decompress --------------------------------------------------------- */

static const char decompress_help[] =
    "usage: kvtc decompress --basis BASIS [options] IN.kvtc -o OUT.safetensors\n"
    "  IN and OUT may be - for standard input / output.\n"
    "  --threads N      worker threads (default 2)\n"
    "  --model M.gguf   the model, for streams that recompute their first layers (it must be the\n"
    "                   model the stream was written with: its fingerprint is checked)\n"
    "  --tokens N       only the first N tokens (reads only the chunks they need)\n"
    "  --layers A:B     only layers A..B-1 (written as a cache of B-A layers)\n";

int cmd_decompress(int argc, char **argv) {
    if (lcpp_args_have_wrap_file(argc, argv)) return lcpp_cmd_decompress(argc, argv);
    static const struct option longopts[] = {
        {"basis", required_argument, NULL, OPT_BASIS},   {"threads", required_argument, NULL, OPT_THREADS},
        {"model", required_argument, NULL, OPT_MODEL},   {"output", required_argument, NULL, 'o'},
        {"tokens", required_argument, NULL, OPT_TOKENS}, {"layers", required_argument, NULL, OPT_LAYERS},
        {"help", no_argument, NULL, 'h'},                {NULL, 0, NULL, 0}};
    const char *basis_path = NULL, *in = NULL, *out = NULL, *model_path = NULL;
    const char *tokens_arg = NULL, *layers_arg = NULL;
    kvtc_decode_options o;
    kvtc_decode_options_init(&o);
    o.n_threads = 2;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(decompress_help, stdout); return 0;
        case 'o': out = optarg; break;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_MODEL: model_path = optarg; break;
        case OPT_THREADS:
            if (cli_parse_u32(optarg, &o.n_threads) || !o.n_threads || o.n_threads > 256) return cli_usage("decompress", "--threads needs 1..256, not '%s'", optarg);
            break;
        case OPT_TOKENS: tokens_arg = optarg; break;
        case OPT_LAYERS: layers_arg = optarg; break;
        case ':': return cli_usage("decompress", "%s needs a value", argv[optind - 1]);
        default: return cli_usage("decompress", "unknown option %s", argv[optind - 1]);
        }
    }
    for (; optind < argc; optind++) {
        if (in) return cli_usage("decompress", "more than one input given");
        in = argv[optind];
    }
    if (!basis_path || !in || !out) return cli_usage("decompress", "needs --basis, an input file and -o");
    if (!strcmp(basis_path, "-") && !strcmp(in, "-"))
        return cli_usage("decompress", "--basis and the input cannot both be - (standard input)");
    cli_codec_threads_setup();
    kvtc_basis *b = NULL;
    if (cli_load_basis("decompress", basis_path, &b)) return 1;
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
    kvtc_stream_info info = {.struct_size = sizeof info};
    if (cli_read_file(in, &buf, &size, err, sizeof err)) { cli_fail("decompress", "%s", err); goto done; }
    if (file_kind_expect("decompress", in, buf, size, FILE_KIND_STREAM)) goto done;
    if (cli_stream_info("decompress", in, buf, size, &info)) goto done;
    kvtc_decode_range rg;
    if (decode_range_parse(tokens_arg, layers_arg, &info, &rg, err, sizeof err)) { rc = cli_usage("decompress", "%s", err); goto done; }
    /* the model is needed only when the range has recomputed layers of coded
     * tokens (raw sink/window tokens are stored for every layer) */
    uint64_t coded_end = info.n_sink + info.n_coded_tokens;
    int range_has_coded = rg.token_begin < coded_end && rg.token_end > info.n_sink && info.n_coded_tokens;
    if (info.recompute_layers && rg.layer_begin < info.recompute_layers && range_has_coded) {
        if (!model_path) { cli_fail("decompress", "%s recomputes its first %u layer(s): pass --model M.gguf", in, info.recompute_layers); goto done; }
        if (model_fingerprint_file("decompress", model_path, info.recompute_layers, kvtc_basis_geometry(b), &o.model_fingerprint)) goto done;
        if (info.has_model_fingerprint && info.model_fingerprint != o.model_fingerprint) {
            cli_fail("decompress", "%s was written with another model than %s (model fingerprint %016" PRIx64 ", this model %016" PRIx64 ")",
                     in, model_path, info.model_fingerprint, o.model_fingerprint);
            goto done;
        }
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
        kvtc_plan_info pi = {.struct_size = sizeof pi};
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
    int rc = lcpp_cmd_info(argv[1], buf, size);
    if (rc >= 0) goto done;
    rc = 0;
    file_kind kind = file_kind_of(buf, size);
    kvtc_stream_info si = {.struct_size = sizeof si};
    kvtc_result r;
    if (kind == FILE_KIND_STREAM) {
        if ((r = kvtc_stream_get_info(buf, size, &si))) { rc = cli_fail("info", "%s: kvtc stream: %s", argv[1], kvtc_result_string(r)); goto done; }
        const kvtc_geometry *g = &si.geometry;
        double fp16_total = 2.0 * (double)si.k_bytes / kvtc_dtype_size(si.dtype) * 2.0;
        double fp16_coded = fp16_total * (double)si.n_coded_tokens / (double)(si.n_tokens ? si.n_tokens : 1);
        printf("kvtc stream, format %u.%u\n", si.version_major, si.version_minor);
        printf("  geometry: %u layers x %u kv heads x %u dims, %s, rope %s (dim %u, theta %g)\n", g->n_layers,
               g->n_kv_heads, g->head_dim, cli_dtype_name(si.dtype), rope_name(g->rope_type), g->rope_dim,
               (double)g->rope_theta);
        printf("  tokens: %" PRIu64 " (%u sink + %u window raw, %" PRIu64 " coded in %u chunks of %u)%s\n",
               si.n_tokens, si.n_sink, si.n_window, si.n_coded_tokens, si.n_chunks, si.chunk_tokens,
               si.has_token_ids ? ", token ids stored" : "");
        printf("  plan: target ratio %g, basis fingerprint %016" PRIx64 "\n", si.plan_ratio, si.basis_fingerprint);
        if (si.recompute_layers)
            printf("  needs the model: the first %u layer(s) are recomputed from token ids at decode\n",
                   si.recompute_layers);
        if (si.has_model_fingerprint) printf("  model fingerprint: %016" PRIx64 "\n", si.model_fingerprint);
        printf("  sizes: stream %" PRIu64 " B, coded chunks %" PRIu64 " B, raw sink/window %" PRIu64 " B\n",
               si.stream_bytes, si.coded_bytes, si.raw_bytes);
        printf("  ratio vs fp16: %.2fx over the whole cache, %.2fx over coded tokens\n",
               fp16_total / (double)si.stream_bytes, si.coded_bytes ? fp16_coded / (double)si.coded_bytes : 0.0);
        printf("  decoded size: k %" PRIu64 " B + v %" PRIu64 " B\n", si.k_bytes, si.v_bytes);
        goto done;
    }
    if (kind == FILE_KIND_BASIS) {
        kvtc_basis *b;
        if ((r = kvtc_basis_load(buf, size, &b))) { rc = cli_fail("info", "%s: kvtc basis: %s", argv[1], kvtc_result_string(r)); goto done; }
        print_basis(b);
        kvtc_basis_free(b);
        goto done;
    }
    if (kind == FILE_KIND_CACHE) {
        cache_file cf;
        if ((r = cache_file_parse(buf, size, &cf))) { rc = cli_fail("info", "%s: KV cache: %s", argv[1], kvtc_result_string(r)); goto done; }
        const kvtc_geometry *g = &cf.cache.geometry;
        printf("KV cache: %u layers x %u kv heads x %" PRIu64 " tokens x %u dims, %s, rope %s (dim %u, theta %g)%s%s\n",
               g->n_layers, g->n_kv_heads, cf.cache.n_tokens, g->head_dim, cli_dtype_name(cf.cache.dtype),
               rope_name(g->rope_type), g->rope_dim, (double)g->rope_theta,
               cf.cache.positions ? ", positions" : "", cf.cache.token_ids ? ", token ids" : "");
        cache_file_free(&cf);
        goto done;
    }
    if (kind == FILE_KIND_UNKNOWN)
        rc = cli_fail("info", "%s is not a kvtc stream, basis, KV cache or llama.cpp state file", argv[1]);
    else
        rc = cli_fail("info", "%s is %s, not a kvtc stream, basis or KV cache", argv[1], file_kind_name(kind));
done:
    free(buf);
    return rc;
}
