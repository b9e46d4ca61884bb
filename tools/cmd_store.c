/* cmd_store.c - kvtc store put|lookup|get|stats|evict: the prefix store
 * (include/kvtc_store.h, docs/STORE.md) from the command line, with caches
 * and token ids from safetensors files. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_store.h"
#include "file_kind.h"
#include "internal.h"
#include "kvtc_store.h"

static const char store_help[] =
    "usage: kvtc store put    --store URI --basis BASIS [options] CACHE.safetensors\n"
    "       kvtc store lookup --store URI --basis BASIS [options] CACHE.safetensors\n"
    "       kvtc store get    --store URI --basis BASIS [options] CACHE.safetensors -o OUT.safetensors [-n N]\n"
    "       kvtc store stats  --store URI --basis BASIS [options]\n"
    "       kvtc store evict  --store URI --basis BASIS [options] --max-bytes N\n"
    "  URI              file:DIR (embedded) or redis://HOST:PORT[/DB]\n"
    "  CACHE            a cache file with token_ids (put stores its whole chunks;\n"
    "                   lookup and get use only its token ids)\n"
    "  get              restores the longest stored prefix (or its first N tokens)\n"
    "                   into OUT with k, v, positions and token_ids; a stored chunk\n"
    "                   failing its checks ends that prefix (it is removed; with -n\n"
    "                   the restore then fails instead of writing fewer tokens)\n"
    "  --model NAME     model identity pinned into the namespace (default: none)\n"
    "  --chunk C        tokens per chunk and key (default 256)\n"
    "  --ratio R        basis plan closest to R (default 20)\n"
    "  --raw            store uncompressed chunks (the raw codec)\n"
    "  --ttl S          redis: expire values after S seconds\n"
    "  --timeout-ms T   redis: connect/command timeout (default 2000)\n"
    "  --max-bytes N    file: size cap with LRU eviction; evict: the target size\n"
    "  --threads N      codec worker threads (default 2)\n";

/* The library reports a backend that cannot be used as KVTC_ERR_IO ("file
 * input/output error"), which names neither the directory nor the server:
 * say which, and why when the system knows. */
static int fail_backend(const char *uri, const char *what, kvtc_result r) {
    if (r == KVTC_ERR_IO && !strncmp(uri, "file:", 5)) {
        const char *dir = uri + 5;
        struct stat st;
        if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
            return cli_fail("store", "%s: %s is not a directory", uri, dir);
        if (stat(dir, &st) != 0 && mkdir(dir, 0777) != 0)
            return cli_fail("store", "%s: cannot create the store directory %s: %s", uri, dir, strerror(errno));
        if (access(dir, W_OK | X_OK) != 0)
            return cli_fail("store", "%s: cannot write in the store directory %s: %s", uri, dir, strerror(errno));
    }
    if (r == KVTC_ERR_IO && !strncmp(uri, "redis://", 8))
        return cli_fail("store", "%s%s%s: cannot reach or use the Redis server (input/output error)", uri,
                        what ? ": " : "", what ? what : "");
    return cli_fail("store", "%s%s%s: %s", uri, what ? ": " : "", what ? what : "", kvtc_result_string(r));
}

static int load_file_cache(const char *path, cache_file *out) {
    void *buf = NULL;
    size_t size = 0;
    char err[512];
    if (cli_read_file(path, &buf, &size, err, sizeof err)) return cli_fail("store", "%s", err);
    if (file_kind_expect("store", path, buf, size, FILE_KIND_CACHE)) { free(buf); return 1; } /* a basis, a stream... */
    kvtc_result r = cache_file_parse(buf, size, out);
    free(buf);
    if (r) return cli_fail("store", "%s: %s", path, kvtc_result_string(r));
    if (!out->cache.token_ids) {
        cache_file_free(out);
        return cli_fail("store", "%s: no token_ids tensor (the store is addressed by token ids)", path);
    }
    return 0;
}

/* Shrink a contiguous cache ([L][H][n][d] per tensor) of `have` tokens to
 * its first `keep` in place: each (layer, head) row moves down, never over
 * a row not yet moved. positions and token_ids are prefixes already. */
static void cache_keep_prefix(kvtc_cache *c, uint64_t keep) {
    const kvtc_geometry *g = &c->geometry;
    size_t row = (size_t)g->head_dim * kvtc_dtype_size(c->dtype);
    uint64_t rows = (uint64_t)g->n_layers * g->n_kv_heads;
    for (uint64_t i = 0; i < rows && keep < c->n_tokens; i++) {
        memmove((char *)c->k + i * keep * row, (char *)c->k + i * c->n_tokens * row, keep * row);
        memmove((char *)c->v + i * keep * row, (char *)c->v + i * c->n_tokens * row, keep * row);
    }
    if (keep < c->n_tokens) c->n_tokens = keep;
}

static void print_stats(const kvtc_store *s) {
    kvtc_store_stats st = {.struct_size = sizeof st};
    if (kvtc_store_stats_get(s, &st)) return;
    printf("chunks put %" PRIu64 ", already stored %" PRIu64 ", hit %" PRIu64 ", missed %" PRIu64
           ", rejected records %" PRIu64 ", backend errors %" PRIu64 ", bytes written %" PRIu64
           ", bytes read %" PRIu64 ", ratio %.2f\n",
           st.chunks_put, st.chunks_already, st.hit_chunks, st.miss_chunks, st.errors, st.backend_errors,
           st.bytes_written, st.bytes_read, st.ratio);
}

int cmd_store(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(store_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *op = argv[1];
    if (strcmp(op, "put") && strcmp(op, "lookup") && strcmp(op, "get") && strcmp(op, "stats") && strcmp(op, "evict"))
        return cli_usage("store", "unknown operation '%s' (put, lookup, get, stats or evict)", op);
    /* A write past `ulimit -f` kills the process by default, in the middle of
     * the store's record write (a partial file left in DIR/tmp, no message).
     * Ignored, write() fails with EFBIG like a full disk: the store removes
     * its temporary and put reports KVTC_ERR_IO; cli_write_file (get -o) does
     * the same for its output. The library itself leaves handlers alone. */
    signal(SIGXFSZ, SIG_IGN);
    const char *uri = NULL, *basis_path = NULL, *in = NULL, *out = NULL;
    uint64_t n_get = 0, max_bytes = 0;
    int have_n = 0, have_max = 0;
    kvtc_store_options o;
    kvtc_store_options_init(&o);
    o.n_threads = 2;
    enum { OPT_STORE = 256, OPT_BASIS, OPT_MODEL, OPT_RAW, OPT_CHUNK, OPT_RATIO, OPT_TTL, OPT_TIMEOUT, OPT_MAX_BYTES,
           OPT_THREADS };
    static const struct option longopts[] = {
        {"store", required_argument, NULL, OPT_STORE},         {"basis", required_argument, NULL, OPT_BASIS},
        {"model", required_argument, NULL, OPT_MODEL},         {"raw", no_argument, NULL, OPT_RAW},
        {"chunk", required_argument, NULL, OPT_CHUNK},         {"ratio", required_argument, NULL, OPT_RATIO},
        {"ttl", required_argument, NULL, OPT_TTL},             {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
        {"max-bytes", required_argument, NULL, OPT_MAX_BYTES}, {"threads", required_argument, NULL, OPT_THREADS},
        {"output", required_argument, NULL, 'o'},              {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    /* options follow the operation: parse argv[1..] with the operation as argv[0] */
    int oargc = argc - 1;
    char **oargv = argv + 1;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(oargc, oargv, ":o:n:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(store_help, stdout); return 0;
        case 'o': out = optarg; break;
        case OPT_STORE: uri = optarg; break;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_MODEL: o.model_name = optarg; break;
        case OPT_RAW: o.codec = KVTC_STORE_CODEC_RAW; break;
        case 'n': if (cli_parse_u64(optarg, &n_get) || !n_get) return cli_usage("store", "-n needs a count > 0, not '%s'", optarg); have_n = 1; break;
        case OPT_CHUNK: if (cli_parse_u32(optarg, &o.chunk_tokens) || !o.chunk_tokens) return cli_usage("store", "--chunk needs a count > 0, not '%s'", optarg); break;
        case OPT_RATIO: if (cli_parse_double(optarg, &o.ratio) || o.ratio <= 1) return cli_usage("store", "--ratio needs a number > 1, not '%s'", optarg); break;
        case OPT_TTL: if (cli_parse_u32(optarg, &o.ttl_seconds)) return cli_usage("store", "--ttl needs seconds, not '%s'", optarg); break;
        case OPT_TIMEOUT: if (cli_parse_u32(optarg, &o.timeout_ms) || !o.timeout_ms) return cli_usage("store", "--timeout-ms needs a count > 0, not '%s'", optarg); break;
        case OPT_MAX_BYTES: if (cli_parse_u64(optarg, &max_bytes)) return cli_usage("store", "--max-bytes needs a count, not '%s'", optarg); have_max = 1; break;
        case OPT_THREADS: if (cli_parse_u32(optarg, &o.n_threads) || !o.n_threads || o.n_threads > 256) return cli_usage("store", "--threads needs 1..256, not '%s'", optarg); break;
        case ':': return cli_usage("store", "%s needs a value", oargv[optind - 1]);
        default: return cli_usage("store", "unknown option %s (see --help)", oargv[optind - 1]);
        }
    }
    for (; optind < oargc; optind++) {
        if (in) return cli_usage("store", "more than one input given");
        in = oargv[optind];
    }
    int needs_cache = strcmp(op, "stats") && strcmp(op, "evict");
    if (!uri || !basis_path) return cli_usage("store", "needs --store and --basis");
    if (needs_cache && !in) return cli_usage("store", "%s needs a cache file", op);
    if (!needs_cache && in) return cli_usage("store", "%s takes no cache file", op);
    if (!strcmp(op, "get") && !out) return cli_usage("store", "get needs -o");
    if (!strcmp(op, "evict") && !have_max) return cli_usage("store", "evict needs --max-bytes");
    if (strcmp(op, "evict")) o.max_bytes = max_bytes; /* for evict it is the target, not a cap */
    /* kvtc_store_open's bounds, said here: the library can only answer
     * "invalid argument" */
    if (o.chunk_tokens > (1u << 20)) return cli_usage("store", "--chunk %u is over the limit of %u tokens", o.chunk_tokens, 1u << 20);
    if (o.codec == KVTC_STORE_CODEC_KVTC && o.chunk_tokens < o.n_sink)
        return cli_usage("store", "--chunk %u is shorter than the %u attention-sink tokens chunk 0 keeps raw (use --chunk >= %u, or --raw)",
                         o.chunk_tokens, o.n_sink, o.n_sink);
    cli_codec_threads_setup();

    kvtc_basis *basis = NULL;
    if (cli_load_basis("store", basis_path, &basis)) return 1;
    kvtc_result r;
    char err[512];
    cache_file cf;
    memset(&cf, 0, sizeof cf);
    if (needs_cache && load_file_cache(in, &cf)) { kvtc_basis_free(basis); return 1; }
    kvtc_dtype dtype = needs_cache ? cf.cache.dtype : KVTC_DTYPE_F16;
    kvtc_store *s = NULL;
    int rc = 0;
    r = kvtc_store_open(uri, basis, kvtc_basis_geometry(basis), dtype, &o, &s);
    /* the options were checked above: what open refuses is the URI */
    if (r == KVTC_ERR_INVALID_ARGUMENT) { rc = cli_usage("store", "--store %s: not a store URI (file:DIR, DIR up to 3800 bytes, or redis://HOST:PORT[/DB])", uri); goto done; }
    if (r) { rc = fail_backend(uri, NULL, r); goto done; }
    const int32_t *tokens = cf.cache.token_ids;
    uint64_t n = cf.cache.n_tokens;

    if (!strcmp(op, "put")) {
        uint64_t stored = 0;
        /* kvtc_store_put's KVTC_ERR_INVALID_ARGUMENT for this says nothing */
        for (uint64_t i = 0; cf.cache.positions && i < n; i++)
            if (cf.cache.positions[i] != (int64_t)i) {
                rc = cli_fail("store", "put: %s: token %" PRIu64 " is at position %" PRId64 ", not %" PRIu64
                              " (the store holds prompt prefixes, which start at position 0)",
                              in, i, cf.cache.positions[i], i);
                goto done;
            }
        r = kvtc_store_put(s, tokens, n, &cf.cache, &stored);
        if (r == KVTC_ERR_IO) { rc = fail_backend(uri, "put", r); goto done; }
        if (r) { rc = cli_fail("store", "put: %s (%" PRIu64 " chunks stored before)", kvtc_result_string(r), stored); goto done; }
        printf("stored %" PRIu64 " new chunks of %" PRIu64 " tokens (%" PRIu64 " whole chunks in the cache)\n", stored,
               (uint64_t)o.chunk_tokens, n / o.chunk_tokens);
        print_stats(s);
    } else if (!strcmp(op, "lookup")) {
        uint64_t hit = 0;
        if ((r = kvtc_store_lookup(s, tokens, n, &hit))) { rc = fail_backend(uri, "lookup", r); goto done; }
        printf("%" PRIu64 " of %" PRIu64 " tokens stored\n", hit, n);
    } else if (!strcmp(op, "get")) {
        uint64_t want = 0, got = 0;
        if ((r = kvtc_store_lookup(s, tokens, n, &want))) { rc = fail_backend(uri, "get", r); goto done; }
        if (have_n) {
            if (n_get > want) { rc = cli_fail("store", "get: only %" PRIu64 " tokens stored, -n %" PRIu64 " asked", want, n_get); goto done; }
            want = n_get;
        }
        if (!want) { rc = cli_fail("store", "get: no stored prefix for these tokens"); goto done; }
        cache_file res;
        if ((r = cache_file_alloc(&res, &cf.cache.geometry, dtype, want, 1, 1))) { rc = cli_fail("store", "get: %s", kvtc_result_string(r)); goto done; }
        kvtc_store_layout lay = {.struct_size = sizeof lay, .kind = KVTC_STORE_LAYOUT_CONTIGUOUS, .cache = &res.cache};
        r = kvtc_store_get(s, tokens, n, &lay, &got);
        /* Fewer than lookup promised: a stored chunk failed its checks (and
         * was removed) or disappeared meanwhile. That is a miss, not an
         * error of the input: without -n the longest prefix restored is
         * still what was asked for; with -n it is too short. */
        kvtc_store_stats st = {.struct_size = sizeof st};
        uint64_t rejected = kvtc_store_stats_get(s, &st) == KVTC_OK ? st.errors : 0;
        if (r == KVTC_ERR_IO) { rc = fail_backend(uri, "get", r); cache_file_free(&res); goto done; }
        if (!r && got < want && (have_n || !got)) {
            rc = cli_fail("store", "get: only %" PRIu64 " of the %" PRIu64 " tokens stored could be restored (%" PRIu64
                          " stored chunks failed their checks and were removed, or were evicted meanwhile)",
                          got, want, rejected);
            cache_file_free(&res);
            goto done;
        }
        if (!r) cache_keep_prefix(&res.cache, got);
        void *buf = NULL;
        size_t size = 0;
        if (!r) r = cache_file_serialize(&res.cache, &buf, &size);
        if (r) rc = cli_fail("store", "get: %s (%" PRIu64 " of %" PRIu64 " tokens restored)", kvtc_result_string(r), got, want);
        else if (cli_write_file(out, buf, size, err, sizeof err)) rc = cli_fail("store", "%s", err);
        else if (got < want)
            printf("restored %" PRIu64 " of %" PRIu64 " tokens into %s (%" PRIu64 " stored chunks failed their checks "
                   "and were removed, or were evicted meanwhile)\n", got, n, out, rejected);
        else printf("restored %" PRIu64 " of %" PRIu64 " tokens into %s\n", got, n, out);
        free(buf);
        cache_file_free(&res);
    } else if (!strcmp(op, "stats")) {
        uint64_t bytes = 0, values = 0;
        r = kvtc_store_backend_bytes(s, &bytes, &values);
        if (r == KVTC_ERR_UNSUPPORTED) printf("%s: the server keeps its own statistics (redis-cli INFO memory)\n", uri);
        else if (r) rc = fail_backend(uri, "stats", r);
        else printf("%" PRIu64 " values, %" PRIu64 " bytes\n", values, bytes);
    } else {
        uint64_t evicted = 0;
        r = kvtc_store_evict(s, max_bytes, &evicted);
        if (r == KVTC_ERR_UNSUPPORTED) printf("%s: the server evicts by itself (maxmemory-policy allkeys-lru)\n", uri);
        else if (r) rc = fail_backend(uri, "evict", r);
        else printf("evicted %" PRIu64 " values\n", evicted);
    }
done:
    kvtc_store_close(s);
    if (needs_cache) cache_file_free(&cf);
    kvtc_basis_free(basis);
    return rc;
}
