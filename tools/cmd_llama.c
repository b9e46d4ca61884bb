/* cmd_llama.c - kvtc compress / decompress / info / calibrate on llama.cpp
 * state files (see cmd_llama.h). */
#include "cmd_llama.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_llama_common.h"
#include "internal.h"
#include "file_kind.h"
#include "kv_geometry.h"
#include "model_fingerprint.h"
#include "model_kv.h"

/* ---- shared with cmd_slots.c (cmd_llama_common.h) ------------------------ */

/* cli_peek_file, not a plain open + read: standard input, a FIFO or a
 * process substitution would lose the bytes read here (and a FIFO whose
 * writer saw this reader close would block the real read forever). */
static int file_starts_with(const char *path, int (*is)(const void *, size_t)) {
    uint8_t head[8];
    size_t n = cli_peek_file(path, head, sizeof head);
    return n > 0 && is(head, n);
}

/* Inputs: arguments that are not options (or "-", standard input), and not
 * the value of -o / --output (an output FIFO must not be read). */
static int args_have(int argc, char **argv, int (*is)(const void *, size_t)) {
    for (int i = 1; i < argc; i++)
        if ((argv[i][0] != '-' || !strcmp(argv[i], "-")) && strcmp(argv[i - 1], "-o") &&
            strcmp(argv[i - 1], "--output") && file_starts_with(argv[i], is))
            return 1;
    return 0;
}

int lcpp_args_have_state_file(int argc, char **argv) { return args_have(argc, argv, lcpp_state_is_state_file); }
int lcpp_args_have_wrap_file(int argc, char **argv) { return args_have(argc, argv, lcpp_wrap_is_wrap); }

int lcpp_cli_parse_rotation(const char *v, uint32_t *rot) {
    if (!strcmp(v, "auto")) *rot = LCPP_ROT_AUTO;
    else if (!strcmp(v, "none")) *rot = 0;
    else if (!strcmp(v, "hadamard")) *rot = LCPP_ROT_K | LCPP_ROT_V;
    else if (!strcmp(v, "k")) *rot = LCPP_ROT_K;
    else if (!strcmp(v, "v")) *rot = LCPP_ROT_V;
    else return -1;
    return 0;
}

int lcpp_cli_encode_option(const char *cmd, int c, const char *v, kvtc_encode_options *o, uint32_t *rot) {
    uint32_t l;
    switch (c) {
    case LCPP_OPT_RATIO:
        if (cli_parse_double(v, &o->ratio) || o->ratio <= 1) return cli_usage(cmd, "--ratio needs a number > 1, not '%s'", v);
        break;
    case LCPP_OPT_SINK:
        if (cli_parse_u32(v, &o->n_sink)) return cli_usage(cmd, "--sink needs a count, not '%s'", v);
        break;
    case LCPP_OPT_WINDOW:
        if (cli_parse_u32(v, &o->n_window)) return cli_usage(cmd, "--window needs a count, not '%s'", v);
        break;
    case LCPP_OPT_CHUNK:
        if (cli_parse_u32(v, &o->chunk_tokens) || !o->chunk_tokens) return cli_usage(cmd, "--chunk needs a count > 0, not '%s'", v);
        break;
    case LCPP_OPT_THREADS:
        if (cli_parse_u32(v, &o->n_threads) || !o->n_threads || o->n_threads > 256) return cli_usage(cmd, "--threads needs 1..256, not '%s'", v);
        break;
    case LCPP_OPT_LEVEL:
        if (cli_parse_u32(v, &l) || l > 12) return cli_usage(cmd, "--level needs 0..12, not '%s'", v);
        o->deflate_level = (int)l;
        break;
    case LCPP_OPT_CODEC:
        if (!strcmp(v, "deflate")) o->entropy_codec = KVTC_CODEC_DEFLATE;
        else if (!strcmp(v, "rans")) o->entropy_codec = KVTC_CODEC_RANS;
        else return cli_usage(cmd, "--codec takes deflate or rans, not '%s'", v);
        break;
    case LCPP_OPT_KV_ROTATION:
        if (lcpp_cli_parse_rotation(v, rot)) return cli_usage(cmd, "--kv-rotation takes auto, none, hadamard, k or v, not '%s'", v);
        break;
    default: return -1; /* not an encode option */
    }
    return 0;
}

kvtc_result lcpp_cli_decode_options(const char *cmd, const kvtc_basis *b, const char *model_path, uint32_t n_threads,
                                     kvtc_decode_options *o, model_text *mt) {
    kvtc_decode_options_init(o);
    o->n_threads = n_threads;
    memset(mt, 0, sizeof *mt);
    if (!kvtc_basis_recomputed_layers(b)) return KVTC_OK;
    if (!model_path) {
        cli_fail(cmd, "the basis recomputes its first %u layer(s): pass --model M.gguf", kvtc_basis_recomputed_layers(b));
        return KVTC_ERR_NEEDS_MODEL;
    }
    /* streams that record the model they were written with are decoded
     * only with that model (KVTC_ERR_MODEL_MISMATCH otherwise) */
    if (model_fingerprint_file(cmd, model_path, kvtc_basis_recomputed_layers(b), kvtc_basis_geometry(b), &o->model_fingerprint)) return KVTC_ERR_IO;
    if (model_text_load(mt, model_path, NULL)) return KVTC_ERR_IO;
    o->recompute = model_recompute;
    o->recompute_user = mt->model;
    return KVTC_OK;
}

/* ---- compress ------------------------------------------------------------- */

static const char compress_help[] =
    "usage: kvtc compress --basis BASIS [--model M.gguf] [options] STATE -o OUT.kvtc\n"
    "  STATE: a llama.cpp state file (a llama-server slot save, or a sequence or session file\n"
    "  saved through the llama.cpp C API). Every byte that is not K/V is kept exactly; K/V are coded\n"
    "  with the basis (its layers and KV heads x head_dim must match the file's).\n"
    "  --model M.gguf   required with a basis that recomputes layers: its fingerprint goes into\n"
    "                   the file, so that expanding with another model fails\n"
    "  --ratio R, --sink N, --window N, --chunk N, --threads N, --level L, --codec C  as for caches\n"
    "  --kv-rotation auto|none|hadamard|k|v   Hadamard rotation llama.cpp applied to the\n"
    "                   K/V (builds from 2026-04 rotate quantized caches; default auto: detected)\n";

int lcpp_cmd_compress(int argc, char **argv) {
    const char *basis_path = NULL, *in = NULL, *out = NULL, *model_path = NULL;
    kvtc_encode_options o;
    kvtc_encode_options_init(&o);
    o.n_threads = 2;
    uint32_t rot = LCPP_ROT_AUTO;
    enum { OPT_BASIS = LCPP_OPT_FIRST_FREE, OPT_MODEL };
    static const struct option longopts[] = {LCPP_ENCODE_LONGOPTS,
                                              {"basis", required_argument, NULL, OPT_BASIS},
                                              {"model", required_argument, NULL, OPT_MODEL},
                                              {"output", required_argument, NULL, 'o'},
                                              {"help", no_argument, NULL, 'h'},
                                              {NULL, 0, NULL, 0}};
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        int e = lcpp_cli_encode_option("compress", c, optarg, &o, &rot);
        if (e > 0) return e;
        if (e == 0) continue;
        switch (c) {
        case 'h': fputs(compress_help, stdout); return 0;
        case 'o': out = optarg; break;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_MODEL: model_path = optarg; break;
        case ':': return cli_usage("compress", "%s needs a value", argv[optind - 1]);
        default: return cli_usage("compress", "unknown option %s for llama.cpp state files", argv[optind - 1]);
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
    void *buf = NULL, *z = NULL;
    size_t size, zn;
    int rc = 1;
    uint32_t m = kvtc_basis_recomputed_layers(b);
    if (m && !model_path) {
        cli_fail("compress", "the basis recomputes %u layer(s) from the model: pass --model M.gguf (its fingerprint goes into the file)", m);
        goto done;
    }
    if (m && model_fingerprint_file("compress", model_path, m, kvtc_basis_geometry(b), &o.model_fingerprint)) goto done;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (cli_read_file(in, &buf, &size, err, sizeof err)) { cli_fail("compress", "%s", err); goto done; }
    kvtc_result r = lcpp_wrap_compress(b, &o, rot, buf, size, &z, &zn);
    if (r) {
        cli_fail("compress", "%s: %s%s", in, kvtc_result_string(r),
                 r == KVTC_ERR_GEOMETRY_MISMATCH ? " (the basis is for another model: layers or KV heads x head_dim differ)"
                 : r == KVTC_ERR_UNSUPPORTED && kvtc_basis_recomputed_layers(b) ? " (the basis recomputes layers, which needs the cells to be the file's tokens; calibrate with --recompute-layers 0)"
                                                                               : "");
        goto done;
    }
    if (cli_write_file(out, z, zn, err, sizeof err)) { cli_fail("compress", "%s", err); goto done; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "kvtc: %s -> %s: %zu -> %zu bytes (%.2fx), %.2f s\n", in, out, size, zn, (double)size / (double)zn,
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    rc = 0;
done:
    free(buf);
    free(z);
    kvtc_basis_free(b);
    return rc;
}

/* ---- decompress ----------------------------------------------------------- */

static const char decompress_help[] =
    "usage: kvtc decompress --basis BASIS [--threads N] [--model M.gguf] IN.kvtc -o STATE\n"
    "  Restores the llama.cpp state file IN.kvtc was made from: same layout, types and\n"
    "  non-K/V bytes; K/V within the codec's error (and requantized to q8_0 where the file\n"
    "  was q8_0). --model: for bases that recompute their first layers.\n";

int lcpp_cmd_decompress(int argc, char **argv) {
    const char *basis_path = NULL, *in = NULL, *out = NULL, *model_path = NULL;
    uint32_t threads = 2;
    enum { OPT_BASIS = 256, OPT_MODEL, OPT_THREADS };
    static const struct option longopts[] = {
        {"basis", required_argument, NULL, OPT_BASIS}, {"model", required_argument, NULL, OPT_MODEL},
        {"threads", required_argument, NULL, OPT_THREADS}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
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
            if (cli_parse_u32(optarg, &threads) || !threads || threads > 256) return cli_usage("decompress", "--threads needs 1..256, not '%s'", optarg);
            break;
        case ':': return cli_usage("decompress", "%s needs a value", argv[optind - 1]);
        default: return cli_usage("decompress", "unknown option %s for llama.cpp state files", argv[optind - 1]);
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
    void *buf = NULL, *o = NULL;
    size_t size, on;
    int rc = 1;
    model_text mt;
    kvtc_decode_options dopt;
    if (lcpp_cli_decode_options("decompress", b, model_path, threads, &dopt, &mt)) goto done;
    if (cli_read_file(in, &buf, &size, err, sizeof err)) { cli_fail("decompress", "%s", err); goto done; }
    kvtc_result r = lcpp_wrap_decompress(b, &dopt, buf, size, &o, &on);
    if (r) { cli_fail("decompress", "%s: %s", in, kvtc_result_string(r)); goto done; }
    if (cli_write_file(out, o, on, err, sizeof err)) { cli_fail("decompress", "%s", err); goto done; }
    rc = 0;
done:
    model_text_free(&mt);
    free(buf);
    free(o);
    kvtc_basis_free(b);
    return rc;
}

/* ---- info ----------------------------------------------------------------- */

static void print_state(const lcpp_state *s) {
    printf("llama.cpp %s file, version %u, layout %s%s\n", s->magic == LCPP_MAGIC_GGSQ ? "sequence (ggsq)" : "session (ggsn)",
           s->version, lcpp_layout_name(s->layout),
           s->magic == LCPP_MAGIC_GGSN ? (s->has_logits ? ", with outputs/logits (before 2026-02)" : ", without logits") : "");
    printf("  tokens: %u%s\n", s->n_ids, s->packed_tokens ? " (llama-server packed record)" : "");
    if (s->magic == LCPP_MAGIC_GGSN) printf("  session preamble: %zu bytes\n", s->preamble_bytes);
    for (uint32_t i = 0; i < s->n_stream; i++) {
        const lcpp_stream *st = &s->streams[i];
        if (!st->cell_count) { printf("  stream %u: empty\n", i); continue; }
        int64_t lo = st->pos[0], hi = st->pos[0];
        for (uint32_t c = 0; c < st->cell_count; c++) {
            lo = st->pos[c] < lo ? st->pos[c] : lo;
            hi = st->pos[c] > hi ? st->pos[c] : hi;
        }
        uint64_t kv = 0;
        for (uint32_t l = 0; l < st->n_layer; l++) kv += st->k[l].data_bytes + st->v[l].data_bytes;
        printf("  stream %u: %u cells (positions %" PRId64 "..%" PRId64 "), %u layers, K %s x %u, V %s x %u, v_trans %u, K/V %" PRIu64 " bytes\n",
               i, st->cell_count, lo, hi, st->n_layer, lcpp_ggml_type_name(st->k[0].type), st->k[0].n_embd,
               lcpp_ggml_type_name(st->v[0].type), st->v[0].n_embd, st->v_trans, kv);
    }
    printf("  size: %zu bytes\n", s->full_size);
}

int lcpp_cmd_info(const char *path, const void *buf, size_t size) {
    if (lcpp_state_is_state_file(buf, size)) {
        lcpp_state s;
        kvtc_result r = lcpp_state_parse(buf, size, &s);
        if (r) return cli_fail("info", "%s: llama.cpp state file: %s", path, kvtc_result_string(r));
        print_state(&s);
        lcpp_state_free(&s);
        return 0;
    }
    if (!lcpp_wrap_is_wrap(buf, size)) return -1;
    lcpp_wrap w;
    kvtc_result r = lcpp_wrap_parse(buf, size, &w);
    if (r) return cli_fail("info", "%s: compressed llama.cpp state: %s", path, kvtc_result_string(r));
    printf("compressed llama.cpp state, wrapper format %u.%u: %zu bytes, restores %" PRIu64 " bytes (%.2fx)\n",
           w.version_major, w.version_minor, size, w.full_size, (double)w.full_size / (double)size);
    if (w.skeleton_owned)
        printf("  skeleton (all non-K/V bytes): %zu bytes, stored DEFLATE'd in %zu\n", w.skeleton_size, w.skeleton_stored);
    else
        printf("  skeleton (all non-K/V bytes): %zu bytes\n", w.skeleton_size);
    for (uint32_t i = 0; i < w.n_sets; i++) {
        kvtc_stream_info si = {.struct_size = sizeof si};
        r = kvtc_stream_get_info(w.set_data[i], w.set_size[i], &si);
        if (r) { lcpp_wrap_free(&w); return cli_fail("info", "%s: stream %u: %s", path, i, kvtc_result_string(r)); }
        printf("  stream %u: kvtc stream %u.%u, %zu bytes: %" PRIu64 " cells (%u sink + %u window raw), plan ratio %g, "
               "basis %016" PRIx64 "%s%s%s\n",
               w.set_stream[i], si.version_major, si.version_minor, w.set_size[i], si.n_tokens, si.n_sink, si.n_window,
               si.plan_ratio, si.basis_fingerprint, w.set_rotation[i] ? ", Hadamard-rotated" : "",
               w.set_rotation[i] & LCPP_ROT_K ? " K" : "", w.set_rotation[i] & LCPP_ROT_V ? " V" : "");
        if (si.recompute_layers)
            printf("    needs the model: the first %u layer(s) are recomputed%s\n", si.recompute_layers,
                   si.has_model_fingerprint ? "" : " (no model fingerprint recorded: any model is accepted)");
        if (si.has_model_fingerprint) printf("    model fingerprint: %016" PRIx64 "\n", si.model_fingerprint);
    }
    printf("as a llama.cpp file:\n  ");
    print_state(&w.state);
    lcpp_wrap_free(&w);
    return 0;
}

/* ---- calibrate ------------------------------------------------------------ */

static const char calibrate_help[] =
    "usage: kvtc calibrate -o BASIS (--model M.gguf | --kv-heads H --rope-theta T [--rope-type norm|neox|none]\n"
    "                       [--rope-dim D]) [options] STATE...\n"
    "  Calibrates a basis from llama.cpp state files (llama-server slot saves of your own\n"
    "  text, see README). The files hold no head split and no RoPE parameters: --model reads\n"
    "  them from the GGUF's metadata only (any weight type; the architecture must be one\n"
    "  with plain K/V and norm or neox RoPE), or give them by hand.\n"
    "  --ratio R            target ratio to plan for; repeatable (default 8 16 20 32 64)\n"
    "  --sink N / --window N  tokens at the start / end of each cache left out (default 4 / 128)\n"
    "  --max-tokens N       calibration rows kept (reservoir sampled, default 65536)\n"
    "  --seed S             sampling seed (default 1)\n"
    "  --kv-rotation auto|none|hadamard|k|v   as for compress (default auto)\n"
    "  The basis recomputes no layers, so streams decode without the model.\n";

int lcpp_cmd_calibrate(int argc, char **argv) {
    const char *out = NULL, *model_path = NULL;
    const char **inputs = calloc((size_t)argc, sizeof(char *));
    int n_inputs = 0, rc = 2, rope_type = -1;
    double ratios[64];
    uint32_t n_ratios = 0, kv_heads = 0, rope_dim = 0;
    double theta = 0;
    uint32_t rot = LCPP_ROT_AUTO;
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    if (!inputs) return cli_fail("calibrate", "out of memory");
    enum { OPT_MODEL = 256, OPT_RATIO, OPT_KV_HEADS, OPT_ROPE_DIM, OPT_ROPE_THETA, OPT_ROPE_TYPE, OPT_SINK, OPT_WINDOW,
           OPT_MAX_TOKENS, OPT_SEED, OPT_KV_ROTATION };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, OPT_MODEL},         {"ratio", required_argument, NULL, OPT_RATIO},
        {"kv-heads", required_argument, NULL, OPT_KV_HEADS},   {"rope-dim", required_argument, NULL, OPT_ROPE_DIM},
        {"rope-theta", required_argument, NULL, OPT_ROPE_THETA}, {"rope-type", required_argument, NULL, OPT_ROPE_TYPE},
        {"sink", required_argument, NULL, OPT_SINK},           {"window", required_argument, NULL, OPT_WINDOW},
        {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS}, {"seed", required_argument, NULL, OPT_SEED},
        {"kv-rotation", required_argument, NULL, OPT_KV_ROTATION}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},                      {NULL, 0, NULL, 0}};
    opterr = 0;
    optind = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        const char *v = optarg;
        double r;
        switch (opt) {
        case 'h': fputs(calibrate_help, stdout); rc = 0; goto done_args;
        case 'o': out = v; break;
        case OPT_MODEL: model_path = v; break;
        case OPT_RATIO:
            if (cli_parse_double(v, &r) || r <= 1 || n_ratios == 64) { rc = cli_usage("calibrate", "--ratio needs a number > 1 (at most 64), not '%s'", v); goto done_args; }
            ratios[n_ratios++] = r;
            break;
        case OPT_KV_HEADS:
            if (cli_parse_u32(v, &kv_heads) || !kv_heads) { rc = cli_usage("calibrate", "--kv-heads needs a count > 0, not '%s'", v); goto done_args; }
            break;
        case OPT_ROPE_DIM:
            if (cli_parse_u32(v, &rope_dim)) { rc = cli_usage("calibrate", "--rope-dim needs a count, not '%s'", v); goto done_args; }
            break;
        case OPT_ROPE_THETA:
            if (cli_parse_double(v, &theta) || !(theta > 0)) { rc = cli_usage("calibrate", "--rope-theta needs a number > 0, not '%s'", v); goto done_args; }
            break;
        case OPT_ROPE_TYPE:
            rope_type = !strcmp(v, "norm") ? KVTC_ROPE_NORM : !strcmp(v, "neox") ? KVTC_ROPE_NEOX : !strcmp(v, "none") ? KVTC_ROPE_NONE : -2;
            if (rope_type == -2) { rc = cli_usage("calibrate", "--rope-type takes norm, neox or none, not '%s'", v); goto done_args; }
            break;
        case OPT_SINK:
            if (cli_parse_u32(v, &o.n_sink)) { rc = cli_usage("calibrate", "--sink needs a count, not '%s'", v); goto done_args; }
            break;
        case OPT_WINDOW:
            if (cli_parse_u32(v, &o.n_window)) { rc = cli_usage("calibrate", "--window needs a count, not '%s'", v); goto done_args; }
            break;
        case OPT_MAX_TOKENS:
            if (cli_parse_u64(v, &o.max_tokens) || !o.max_tokens) { rc = cli_usage("calibrate", "--max-tokens needs a count > 0, not '%s'", v); goto done_args; }
            break;
        case OPT_SEED:
            if (cli_parse_u64(v, &o.seed)) { rc = cli_usage("calibrate", "--seed needs a number, not '%s'", v); goto done_args; }
            break;
        case OPT_KV_ROTATION:
            if (lcpp_cli_parse_rotation(v, &rot)) { rc = cli_usage("calibrate", "--kv-rotation takes auto, none, hadamard, k or v, not '%s'", v); goto done_args; }
            break;
        case ':': rc = cli_usage("calibrate", "%s needs a value", argv[optind - 1]); goto done_args;
        default: rc = cli_usage("calibrate", "unknown option %s for llama.cpp state files", argv[optind - 1]); goto done_args;
        }
    }
    for (; optind < argc; optind++) inputs[n_inputs++] = argv[optind];
    if (!out || !n_inputs) { rc = cli_usage("calibrate", "needs -o BASIS and llama.cpp state files"); goto done_args; }
    if (!model_path && (!kv_heads || (rope_type != KVTC_ROPE_NONE && !(theta > 0)))) {
        rc = cli_usage("calibrate", "llama.cpp state files need --model M.gguf, or --kv-heads and --rope-theta");
        goto done_args;
    }
    if (!n_ratios) {
        static const double dflt[] = {8, 16, 20, 32, 64};
        for (n_ratios = 0; n_ratios < 5; n_ratios++) ratios[n_ratios] = dflt[n_ratios];
    }
    rc = 1;
    char err[512];
    kvtc_geometry g;
    memset(&g, 0, sizeof g);
    if (model_path && eng_gguf_kv_geometry_file(model_path, &g, err, sizeof err)) { cli_fail("calibrate", "%s: %s", model_path, err); goto done_args; }
    if (kv_heads) g.n_kv_heads = kv_heads;
    if (theta > 0) g.rope_theta = (float)theta;
    if (rope_type >= 0) g.rope_type = (kvtc_rope_type)rope_type;
    if (rope_dim) g.rope_dim = rope_dim;
    if (!model_path && rope_type < 0) g.rope_type = KVTC_ROPE_NORM;
    kvtc_calibrator *cal = NULL;
    kvtc_basis *basis = NULL;
    kvtc_result r;
    for (int i = 0; i < n_inputs; i++) {
        void *buf;
        size_t size;
        lcpp_state s;
        if (cli_read_file(inputs[i], &buf, &size, err, sizeof err)) { cli_fail("calibrate", "%s", err); goto done; }
        if (file_kind_expect("calibrate", inputs[i], buf, size, FILE_KIND_LCPP_STATE)) { free(buf); goto done; }
        if ((r = lcpp_state_parse(buf, size, &s))) { free(buf); cli_fail("calibrate", "%s: %s", inputs[i], kvtc_result_string(r)); goto done; }
        for (uint32_t si = 0; si < s.n_stream; si++) {
            const lcpp_stream *st = &s.streams[si];
            if (!st->cell_count) continue;
            if (!model_path) { /* the file gives layers and row width; the flags the rest */
                if (st->k[0].n_embd % g.n_kv_heads) { r = KVTC_ERR_GEOMETRY_MISMATCH; cli_fail("calibrate", "%s: rows of %u values do not split into %u KV heads", inputs[i], st->k[0].n_embd, g.n_kv_heads); break; }
                g.n_layers = st->n_layer;
                g.head_dim = st->k[0].n_embd / g.n_kv_heads;
            }
            if (!cal && (r = kvtc_calibrator_alloc(&g, &o, &cal))) { cli_fail("calibrate", "%s: geometry: %s", inputs[i], kvtc_result_string(r)); break; }
            kvtc_cache c;
            uint32_t rr = rot;
            if ((r = lcpp_wrap_stream_cache(&s, buf, si, &g, 0, &rr, &c))) {
                cli_fail("calibrate", "%s: %s%s", inputs[i], kvtc_result_string(r),
                         r == KVTC_ERR_GEOMETRY_MISMATCH ? " (the file is not of this model: layers or KV heads x head_dim differ)" : "");
                break;
            }
            r = kvtc_calibrator_add(cal, &c);
            lcpp_wrap_cache_free(&c);
            if (r) { cli_fail("calibrate", "%s: %s", inputs[i], kvtc_result_string(r)); break; }
        }
        lcpp_state_free(&s);
        free(buf);
        if (r) goto done;
    }
    if (!cal) { cli_fail("calibrate", "the state files hold no cells"); goto done; }
    if ((r = kvtc_calibrator_finish(cal, ratios, n_ratios, &basis))) {
        cli_fail("calibrate", "%s%s", kvtc_result_string(r),
                 r == KVTC_ERR_INVALID_ARGUMENT ? " (fewer than 2 calibration tokens outside sinks and windows?)" : "");
        goto done;
    }
    size_t n = kvtc_basis_serialized_size(basis), written;
    void *sbuf = malloc(n ? n : 1);
    if (!sbuf || (r = kvtc_basis_serialize(basis, sbuf, n, &written))) {
        free(sbuf);
        cli_fail("calibrate", "%s", sbuf ? kvtc_result_string(r) : "out of memory");
        goto done;
    }
    if (cli_write_file(out, sbuf, written, err, sizeof err)) { free(sbuf); cli_fail("calibrate", "%s", err); goto done; }
    free(sbuf);
    fprintf(stderr, "kvtc: basis %s: %llu rows from %d llama.cpp file(s), %u plans, %zu bytes\n", out,
            (unsigned long long)kvtc_calibrator_rows(cal), n_inputs, n_ratios, written);
    rc = 0;
done:
    kvtc_basis_free(basis);
    kvtc_calibrator_free(cal);
done_args:
    free(inputs);
    return rc;
}
