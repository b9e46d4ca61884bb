/* cmd_slot_check.c - kvtc slots check: how a compressed slot continues.
 *
 * Restores a llama.cpp slot twice into kvtc's own engine (the model must be
 * one it runs: GGUF "llama"): once from the original file, once from the
 * file kvtc decompresses, and continues both greedily as llama-server does
 * after a restore (the last prompt token is decoded again to get logits).
 * Reports how many of the greedy tokens agree, and the top-1 agreement and
 * KL divergence of the next-token distributions along the original's path,
 * and, as a check that the cache was read right, how the engine's own
 * prefill of the same tokens continues.
 * This measures the codec on llama.cpp's own cache values; a continuation
 * inside llama-server itself may differ by that engine's arithmetic. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_llama.h"
#include "cmd_llama_common.h"
#include "eval/metrics.h"
#include "internal.h"
#include "model_fingerprint.h"
#include "model_kv.h"

static const char check_help[] =
    "usage: kvtc slots check --basis BASIS --model M.gguf [--tokens N] [--ratio R] SLOT\n"
    "  Compresses SLOT (a llama.cpp state file of one stream whose cells are its tokens),\n"
    "  restores both versions into kvtc's engine and continues each greedily for N tokens\n"
    "  (default 32): prints greedy agreement, top-1 agreement and mean KL.\n";

/* Cells 0..n-2 of cache c into a fresh context (the last one is decoded
 * again, as llama-server does after a restore). */
static eng_context *restore(const eng_model *m, const kvtc_cache *c, uint32_t n_ctx) {
    eng_context *ctx = eng_context_alloc(m, n_ctx, 2);
    if (!ctx) return NULL;
    size_t n = kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens) / kvtc_dtype_size(c->dtype);
    float *k = malloc(sizeof(float) * n), *v = malloc(sizeof(float) * n);
    if (!k || !v) { free(k); free(v); eng_context_free(ctx); return NULL; }
    for (size_t i = 0; i < n; i++) {
        k[i] = kvi_load_elem(c->k, c->dtype, i);
        v[i] = kvi_load_elem(c->v, c->dtype, i);
    }
    model_ctx_write_kv(ctx, m, (uint32_t)c->n_tokens, k, v);
    eng_context_set_n_past(ctx, (uint32_t)c->n_tokens - 1);
    free(k);
    free(v);
    return ctx;
}

/* Greedy continuation: feed `first`, then each argmax; tokens[i] gets the
 * i-th generated token and logits (when non-NULL) row i. When forced is
 * non-NULL the fed tokens are forced[i] instead of the argmax. */
static int continue_greedy(eng_context *ctx, int32_t first, uint32_t steps, uint32_t n_vocab, const int32_t *forced,
                           int32_t *tokens, float *logits) {
    float *row = malloc(sizeof(float) * n_vocab);
    int32_t t = first;
    int rc = 0;
    for (uint32_t i = 0; row && i < steps && !rc; i++) {
        rc = eng_decode(ctx, &t, 1, row);
        tokens[i] = (int32_t)metrics_argmax(row, n_vocab);
        if (logits) memcpy(logits + (size_t)i * n_vocab, row, sizeof(float) * n_vocab);
        t = forced ? forced[i] : tokens[i];
    }
    free(row);
    return row ? rc : -1;
}

int cmd_slot_check(int argc, char **argv) {
    const char *basis_path = NULL, *model_path = NULL, *in = NULL;
    uint32_t steps = 32;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.n_threads = 2;
    uint32_t rot = LCPP_ROT_AUTO;
    enum { OPT_BASIS = LCPP_OPT_FIRST_FREE, OPT_MODEL, OPT_TOKENS };
    static const struct option longopts[] = {LCPP_ENCODE_LONGOPTS,
                                              {"basis", required_argument, NULL, OPT_BASIS},
                                              {"model", required_argument, NULL, OPT_MODEL},
                                              {"tokens", required_argument, NULL, OPT_TOKENS},
                                              {"help", no_argument, NULL, 'h'},
                                              {NULL, 0, NULL, 0}};
    /* argv[1] ("check") plays getopt's program name */
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(sub_argc, sub_argv, ":h", longopts, NULL)) != -1) {
        int e = lcpp_cli_encode_option("slots", c, optarg, &eo, &rot);
        if (e > 0) return e;
        if (e == 0) continue;
        switch (c) {
        case 'h': fputs(check_help, stdout); return 0;
        case OPT_BASIS: basis_path = optarg; break;
        case OPT_MODEL: model_path = optarg; break;
        case OPT_TOKENS:
            if (cli_parse_u32(optarg, &steps) || !steps || steps > 4096) return cli_usage("slots", "--tokens needs 1..4096, not '%s'", optarg);
            break;
        case ':': return cli_usage("slots", "%s needs a value", sub_argv[optind - 1]);
        default: return cli_usage("slots", "unknown option %s", sub_argv[optind - 1]);
        }
    }
    for (; optind < sub_argc; optind++) {
        if (in) return cli_usage("slots", "check takes one slot file");
        in = sub_argv[optind];
    }
    if (!basis_path || !model_path || !in) return cli_usage("slots", "check needs --basis, --model and a slot file");
    cli_codec_threads_setup();
    int rc = 1;
    kvtc_basis *b = NULL;
    model_text mt;
    memset(&mt, 0, sizeof mt);
    void *buf = NULL, *z = NULL, *back = NULL;
    size_t size, zn, bn;
    char err[512];
    lcpp_state s0, s1;
    memset(&s0, 0, sizeof s0);
    memset(&s1, 0, sizeof s1);
    kvtc_cache c0, c1;
    memset(&c0, 0, sizeof c0);
    memset(&c1, 0, sizeof c1);
    eng_context *x0 = NULL, *x1 = NULL;
    int32_t *g0 = NULL, *g1 = NULL;
    float *l0 = NULL, *l1 = NULL;
    double *lp = NULL;
    kvtc_result r;
    if (cli_load_basis("slots", basis_path, &b)) goto done;
    if (model_text_load(&mt, model_path, NULL)) goto done;
    const eng_hparams *hp = eng_model_hparams(mt.model);
    kvtc_geometry g = model_geometry(mt.model);
    /* the model recomputes the basis's first layers (if any) and scores
     * both continuations: another shape would write past the decoder's
     * buffers */
    if (model_check_geometry("slots", model_path, &g, kvtc_basis_geometry(b))) goto done;
    if (cli_read_file(in, &buf, &size, err, sizeof err)) { cli_fail("slots", "%s", err); goto done; }
    if ((r = lcpp_state_parse(buf, size, &s0))) { cli_fail("slots", "%s: %s", in, kvtc_result_string(r)); goto done; }
    uint32_t rot0 = rot, rot1 = rot;
    kvtc_decode_options dopt; /* bases that recompute layers use this model */
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = eo.n_threads;
    dopt.recompute = model_recompute;
    dopt.recompute_user = mt.model;
    if ((r = lcpp_wrap_compress(b, &eo, rot, buf, size, &z, &zn)) ||
        (r = lcpp_wrap_decompress(b, &dopt, z, zn, &back, &bn)) || (r = lcpp_state_parse(back, bn, &s1))) {
        cli_fail("slots", "%s: %s", in, kvtc_result_string(r));
        goto done;
    }
    /* both as plain (un-rotated) caches with the cells' token ids */
    if ((r = lcpp_wrap_stream_cache(&s0, buf, 0, &g, 1, &rot0, &c0)) ||
        (r = lcpp_wrap_stream_cache(&s1, back, 0, &g, 1, &rot1, &c1))) {
        cli_fail("slots", "%s: %s (check needs one stream whose cells are the file's tokens, of this model)", in,
                 kvtc_result_string(r));
        goto done;
    }
    uint32_t n = (uint32_t)c0.n_tokens, nv = hp->n_vocab;
    if (n < 2 || (uint64_t)n + steps > 1u << 20) { cli_fail("slots", "%s: %u cells", in, n); goto done; }
    x0 = restore(mt.model, &c0, n + steps);
    x1 = restore(mt.model, &c1, n + steps);
    g0 = malloc(sizeof(int32_t) * steps);
    g1 = malloc(sizeof(int32_t) * steps);
    l0 = malloc(sizeof(float) * steps * nv);
    l1 = malloc(sizeof(float) * steps * nv);
    lp = malloc(sizeof(double) * 2 * nv);
    if (!x0 || !x1 || !g0 || !g1 || !l0 || !l1 || !lp) { cli_fail("slots", "out of memory"); goto done; }
    int32_t last = c0.token_ids[n - 1];
    /* the original's greedy path; the restored one teacher-forced along it */
    if (continue_greedy(x0, last, steps, nv, NULL, g0, l0) || continue_greedy(x1, last, steps, nv, g0, g1, l1)) {
        cli_fail("slots", "decode failed");
        goto done;
    }
    uint32_t top1 = 0;
    double kl = 0;
    for (uint32_t i = 0; i < steps; i++) {
        top1 += g0[i] == g1[i];
        kl += metrics_kl(l0 + (size_t)i * nv, l1 + (size_t)i * nv, nv, lp, lp + nv);
    }
    /* the restored cache continuing on its own: tokens equal to the original's */
    eng_context_free(x1);
    x1 = restore(mt.model, &c1, n + steps);
    if (!x1 || continue_greedy(x1, last, steps, nv, NULL, g1, NULL)) { cli_fail("slots", "decode failed"); goto done; }
    uint32_t same = 0, prefix = 0;
    for (uint32_t i = 0; i < steps; i++) same += g0[i] == g1[i];
    while (prefix < steps && g0[prefix] == g1[prefix]) prefix++;
    /* sanity of the reading: the engine's own prefill of the tokens should
     * continue like llama.cpp's cache of them */
    eng_context_free(x1);
    x1 = eng_context_alloc(mt.model, n + steps, 2);
    if (!x1 || eng_decode(x1, c0.token_ids, n - 1, NULL) || continue_greedy(x1, last, steps, nv, NULL, g1, NULL)) {
        cli_fail("slots", "decode failed");
        goto done;
    }
    uint32_t own = 0;
    for (uint32_t i = 0; i < steps; i++) own += g0[i] == g1[i];
    printf("%s: %u cells, %zu -> %zu bytes (%.2fx)%s\n", in, n, size, zn, (double)size / (double)zn,
           rot0 ? ", Hadamard-rotated cache" : "");
    printf("  greedy tokens identical: %u/%u (first difference at %u)\n", same, steps, prefix);
    printf("  along the original's path: top-1 agreement %.2f%%, mean KL %.3e\n", 100.0 * top1 / steps, kl / steps);
    printf("  (reading check: the engine's own prefill of the tokens continues like the original slot\n"
           "   on %u/%u greedy tokens)\n", own, steps);
    rc = 0;
done:
    eng_context_free(x0);
    eng_context_free(x1);
    free(g0);
    free(g1);
    free(l0);
    free(l1);
    free(lp);
    lcpp_wrap_cache_free(&c0);
    lcpp_wrap_cache_free(&c1);
    lcpp_state_free(&s0);
    lcpp_state_free(&s1);
    free(buf);
    free(z);
    free(back);
    model_text_free(&mt);
    kvtc_basis_free(b);
    return rc;
}
