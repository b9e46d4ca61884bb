/* cmd_append.c - kvtc append: extend a .kvtc stream with the tokens that
 * follow it (kvtc_append: the stream's full coded chunks are carried over
 * byte for byte). The encoder takes the stream's own plan, sink, window,
 * chunk size and codec. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "file_kind.h"
#include "internal.h"

static const char append_help[] =
    "usage: kvtc append --basis BASIS [options] IN.kvtc MORE.safetensors -o OUT.kvtc\n"
    "  MORE holds the tokens that follow IN (k, v; token_ids when IN stores them or the basis\n"
    "  recomputes layers; positions unless they continue IN's)\n"
    "  --threads N      worker threads (default 2)\n"
    "  --sink N, --window N  raw leading / trailing tokens when IN has no coded tokens\n"
    "                   (such a stream records them cut to its length; default 4 and 128\n"
    "                   as compress); a stream with coded tokens keeps its own\n";

int cmd_append(int argc, char **argv) {
    enum { OPT_BASIS = 256, OPT_THREADS, OPT_SINK, OPT_WINDOW };
    static const struct option longopts[] = {
        {"basis", required_argument, NULL, OPT_BASIS}, {"threads", required_argument, NULL, OPT_THREADS},
        {"output", required_argument, NULL, 'o'},      {"help", no_argument, NULL, 'h'},
        {"sink", required_argument, NULL, OPT_SINK},   {"window", required_argument, NULL, OPT_WINDOW},
        {NULL, 0, NULL, 0}};
    const char *basis_path = NULL, *in = NULL, *more_path = NULL, *out = NULL;
    uint32_t threads = 2, sink = 0, window = 0;
    int sink_given = 0, window_given = 0;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(append_help, stdout); return 0;
        case 'o': out = optarg; break;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_THREADS:
            if (cli_parse_u32(optarg, &threads) || !threads || threads > 256) return cli_usage("append", "--threads needs 1..256, not '%s'", optarg);
            break;
        case OPT_SINK:
            if (cli_parse_u32(optarg, &sink)) return cli_usage("append", "--sink needs a count, not '%s'", optarg);
            sink_given = 1;
            break;
        case OPT_WINDOW:
            if (cli_parse_u32(optarg, &window)) return cli_usage("append", "--window needs a count, not '%s'", optarg);
            window_given = 1;
            break;
        case ':': return cli_usage("append", "%s needs a value", argv[optind - 1]);
        default: return cli_usage("append", "unknown option %s", argv[optind - 1]); /* cli_usage adds the --help hint */
        }
    }
    for (; optind < argc; optind++) {
        if (!in) in = argv[optind];
        else if (!more_path) more_path = argv[optind];
        else return cli_usage("append", "more than two inputs given");
    }
    if (!basis_path || !in || !more_path || !out) return cli_usage("append", "needs --basis, IN.kvtc, MORE.safetensors and -o");
    /* the second read of standard input would find it empty ("- is an empty file") */
    if (!strcmp(in, "-") && !strcmp(more_path, "-")) return cli_usage("append", "IN and MORE cannot both be - (standard input)");
    cli_codec_threads_setup();
    char err[512];
    void *sbuf = NULL, *mbuf = NULL, *obuf = NULL;
    size_t ssize, msize;
    kvtc_basis *b = NULL;
    kvtc_encoder *e = NULL;
    cache_file more;
    memset(&more, 0, sizeof more);
    int rc = 1;
    kvtc_result r;
    if (cli_load_basis("append", basis_path, &b)) goto done;
    if (cli_read_file(in, &sbuf, &ssize, err, sizeof err)) { cli_fail("append", "%s", err); goto done; }
    if (file_kind_expect("append", in, sbuf, ssize, FILE_KIND_STREAM)) goto done;
    kvtc_stream_info info = {.struct_size = sizeof info};
    if (cli_stream_info("append", in, sbuf, ssize, &info)) goto done;
    if (cli_read_file(more_path, &mbuf, &msize, err, sizeof err)) { cli_fail("append", "%s", err); goto done; }
    if (file_kind_expect("append", more_path, mbuf, msize, FILE_KIND_CACHE)) goto done;
    if ((r = cache_file_parse(mbuf, msize, &more))) { cli_fail("append", "%s: %s", more_path, kvtc_result_string(r)); goto done; }
    const kvtc_geometry *sg = &info.geometry, *mg = &more.cache.geometry;
    if (more.cache.dtype != info.dtype || mg->n_layers != sg->n_layers || mg->n_kv_heads != sg->n_kv_heads ||
        mg->head_dim != sg->head_dim) {
        /* the library's "cache geometry does not match" does not say which */
        cli_fail("append", "%s is %u layers x %u kv heads x %u dims %s; %s is %u x %u x %u %s", more_path, mg->n_layers,
                 mg->n_kv_heads, mg->head_dim, cli_dtype_name(more.cache.dtype), in, sg->n_layers, sg->n_kv_heads,
                 sg->head_dim, cli_dtype_name(info.dtype));
        goto done;
    }
    if (more.cache.n_tokens && !more.cache.token_ids) {
        /* kvtc_append keeps ids only when every token has one: it would drop
         * IN's (or, for a basis that recomputes layers, refuse with a bare
         * "invalid argument") */
        if (kvtc_basis_recomputed_layers(b)) {
            cli_fail("append", "%s has no token_ids: the basis recomputes %u layer(s) from token ids", more_path,
                     kvtc_basis_recomputed_layers(b));
            goto done;
        }
        if (info.has_token_ids) {
            cli_fail("append", "%s stores token ids and %s has none (token_ids tensor): the result would lose them", in,
                     more_path);
            goto done;
        }
    }
    kvtc_encode_options o;
    kvtc_encode_options_init(&o);
    o.ratio = info.plan_ratio;
    if (info.n_coded_tokens) {
        /* a stream with coded tokens records its sink and window exactly */
        if ((sink_given && sink != info.n_sink) || (window_given && window != info.n_window)) {
            cli_fail("append", "%s has sink %u and window %u; --sink/--window apply only to streams without coded tokens",
                     in, info.n_sink, info.n_window);
            goto done;
        }
        o.n_sink = info.n_sink;
        o.n_window = info.n_window;
    } else {
        /* an all-raw stream records sink and window cut to its length (a
         * 5-token stream of window 128 says window 1): taking those would
         * code the new tokens that compress keeps raw */
        if (sink_given) o.n_sink = sink;
        if (window_given) o.n_window = window;
    }
    o.chunk_tokens = info.chunk_tokens;
    o.entropy_codec = info.entropy_codec;
    o.n_threads = threads;
    if ((r = kvtc_encoder_alloc(b, &o, &e))) { cli_fail("append", "%s", kvtc_result_string(r)); goto done; }
    kvtc_cache_layout ml;
    kvtc_cache_layout_from_cache(&more.cache, &ml);
    size_t cap = kvtc_append_bound(e, sbuf, ssize, &ml), written = 0;
    if (!cap) {
        /* the bound only fails on a request kvtc_append refuses: say why */
        r = kvtc_append(e, sbuf, ssize, &ml, err, 0, &written);
        cli_fail("append", "%s + %s: %s", in, more_path, kvtc_result_string(r ? r : KVTC_ERR_INVALID_ARGUMENT));
        goto done;
    }
    if (!(obuf = malloc(cap))) { cli_fail("append", "out of memory"); goto done; }
    if ((r = kvtc_append(e, sbuf, ssize, &ml, obuf, cap, &written))) { cli_fail("append", "%s + %s: %s", in, more_path, kvtc_result_string(r)); goto done; }
    if (cli_write_file(out, obuf, written, err, sizeof err)) { cli_fail("append", "%s", err); goto done; }
    if (info.n_tokens && !info.has_token_ids && more.cache.n_tokens && more.cache.token_ids)
        fprintf(stderr, "kvtc: append: warning: %s stores no token ids, so %s's are not stored either\n", in,
                more_path);
    fprintf(stderr, "kvtc: %s + %s -> %s: %llu + %llu tokens, %zu bytes\n", in, more_path, out,
            (unsigned long long)info.n_tokens, (unsigned long long)more.cache.n_tokens, written);
    rc = 0;
done:
    kvtc_encoder_free(e);
    kvtc_basis_free(b);
    cache_file_free(&more);
    free(sbuf); free(mbuf); free(obuf);
    return rc;
}
