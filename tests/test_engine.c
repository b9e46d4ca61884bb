/*
 * test_engine.c - the llama engine against data/eval-llama.reference.json
 * (token ids, per-position NLL, top-5 logits, perplexity of the first 1024
 * tokens of persuasion.txt), plus decode/cache semantics, K/V extraction
 * equality, the third-party stories260K model and a prefill timing.
 * Run from the repository root.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/json.h"
#include "llama.h"
#include "test.h"

#define EVAL_MODEL "data/eval-llama-27m-q8_0.gguf"
#define STORIES_MODEL "data/stories260K.gguf"
#define REFERENCE "data/eval-llama.reference.json"
#define TEXT "data/persuasion.txt"

/* The reference array `key` (numbers) of object o into out[cap]; returns its length. */
static size_t ref_nums(const json_value *o, const char *key, double *out, size_t cap) {
    const json_value *a = json_get(o, key);
    if (!a || a->type != JSON_ARRAY) return 0;
    for (size_t i = 0; i < a->n && i < cap; i++) out[i] = a->items[i].number;
    return a->n;
}

static double ref_num(const json_value *o, const char *key) {
    const json_value *v = json_get(o, key);
    return v && v->type == JSON_NUMBER ? v->number : NAN;
}

/* -log softmax(row)[target], in double. */
static double nll(const float *row, uint32_t n_vocab, int32_t target) {
    double mx = row[0], sum = 0.0;
    for (uint32_t j = 1; j < n_vocab; j++) mx = row[j] > mx ? row[j] : mx;
    for (uint32_t j = 0; j < n_vocab; j++) sum += exp((double)row[j] - mx);
    return -((double)row[target] - mx - log(sum));
}

/* Indices of the 5 largest entries, descending. */
static void top5(const float *row, uint32_t n_vocab, int32_t *ids) {
    for (int k = 0; k < 5; k++) ids[k] = -1;
    for (uint32_t j = 0; j < n_vocab; j++) {
        int k = 5;
        while (k > 0 && (ids[k - 1] < 0 || row[j] > row[ids[k - 1]])) k--;
        if (k >= 5) continue;
        for (int m = 4; m > k; m--) ids[m] = ids[m - 1];
        ids[k] = (int32_t)j;
    }
}

static int32_t argmax(const float *row, uint32_t n) {
    int32_t b = 0;
    for (uint32_t j = 1; j < n; j++)
        if (row[j] > row[b]) b = (int32_t)j;
    return b;
}

/* Compare a top-5 entry of the reference with our logits row. */
static void check_top5(const json_value *e, const float *row, uint32_t n_vocab, int pos) {
    double rid[5], rlg[5];
    CHECK(ref_nums(e, "ids", rid, 5) == 5);
    CHECK(ref_nums(e, "logits", rlg, 5) == 5);
    int32_t ids[5];
    top5(row, n_vocab, ids);
    for (int k = 0; k < 5; k++) {
        /* Near-ties may swap order; then the logits still agree. */
        CHECK_MSG(fabs(row[(int32_t)rid[k]] - rlg[k]) < 5e-3, "pos %d top%d id %d: %.5f vs ref %.5f",
                  pos, k, (int)rid[k], (double)row[(int32_t)rid[k]], rlg[k]);
    }
    CHECK_MSG(ids[0] == (int32_t)rid[0], "pos %d argmax %d vs ref %d", pos, ids[0], (int)rid[0]);
}

/* ======================================================================== */

static void test_eval_model(void) {
    char err[256];
    double t0 = test_now();
    eng_model *m = eng_model_load(EVAL_MODEL, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return;
    printf("load: %.3f s\n", test_now() - t0);
    const eng_hparams *hp = eng_model_hparams(m);
    CHECK(hp->n_vocab == 4096 && hp->n_embd == 512 && hp->n_layer == 8);
    CHECK(hp->n_head == 8 && hp->n_head_kv == 2 && hp->head_dim == 64 && hp->n_ff == 1408);
    CHECK(hp->n_ctx_train == 2048 && hp->rope_dim == 64 && hp->rope_type == ENG_ROPE_NORM);
    CHECK(hp->rope_theta == 10000.0f && fabsf(hp->rms_eps - 1e-5f) < 1e-9f && !hp->tied_output);

    size_t rlen = 0, tlen = 0;
    char *rtext = test_read_file(REFERENCE, &rlen);
    char *text = test_read_file(TEXT, &tlen);
    CHECK(rtext && text);
    json_value *ref = rtext ? json_parse(rtext, rlen, NULL) : NULL;
    CHECK(ref != NULL);
    if (!ref || !text) goto out;

    /* ---- tokens --------------------------------------------------------- */
    int n_tok = eng_tokenize(m, text, tlen, 1, NULL, 0);
    CHECK(n_tok > 1024);
    int32_t *ids = malloc((size_t)n_tok * sizeof(int32_t));
    t0 = test_now();
    CHECK(eng_tokenize(m, text, tlen, 1, ids, (size_t)n_tok) == n_tok);
    printf("tokenize persuasion.txt (%zu bytes -> %d tokens): %.3f s\n", tlen, n_tok, test_now() - t0);
    double r64[64];
    CHECK(ref_nums(ref, "first_64_ids", r64, 64) == 64);
    int same = 1;
    for (int i = 0; i < 64; i++) same &= ids[i] == (int32_t)r64[i];
    CHECK_MSG(same, "first_64_ids differ");

    const json_value *sent = json_get(ref, "sentence");
    double rs[64], rsb[64];
    size_t ns = ref_nums(ref, "sentence_ids", rs, 64);
    size_t nsb = ref_nums(ref, "sentence_ids_with_bos", rsb, 64);
    CHECK(sent && sent->type == JSON_STRING && ns == 17 && nsb == 18);
    if (sent && sent->type == JSON_STRING) {
        int32_t sid[64];
        int k = eng_tokenize(m, sent->string, strlen(sent->string), 0, sid, 64);
        CHECK((size_t)k == ns);
        for (size_t i = 0; i < ns && (int)i < k; i++) CHECK(sid[i] == (int32_t)rs[i]);
        k = eng_tokenize(m, sent->string, strlen(sent->string), 1, sid, 64);
        CHECK((size_t)k == nsb);
        for (size_t i = 0; i < nsb && (int)i < k; i++) CHECK(sid[i] == (int32_t)rsb[i]);
        const json_value *pieces = json_get(ref, "sentence_pieces");
        CHECK(pieces && pieces->n == ns);
        for (size_t i = 0; pieces && i < pieces->n && i < ns; i++)
            CHECK_MSG(strcmp(eng_token_piece(m, (int32_t)rs[i]), pieces->items[i].string) == 0,
                      "piece %zu", i);
    }

    /* ---- logits over the reference span -------------------------------- */
    const uint32_t N = 1024, V = hp->n_vocab;
    eng_context *ctx = eng_context_alloc(m, 2048, 2);
    CHECK(ctx != NULL);
    float *logits = malloc((size_t)N * V * sizeof(float));
    t0 = test_now();
    CHECK(eng_decode(ctx, ids, N, logits) == ENG_OK);
    printf("decode 1024 tokens with logits: %.3f s\n", test_now() - t0);
    CHECK(eng_context_n_past(ctx) == N);

    double r16[16];
    CHECK(ref_nums(ref, "nll_first_16", r16, 16) == 16);
    for (int p = 0; p < 16; p++) {
        double x = nll(logits + (size_t)p * V, V, ids[p + 1]);
        CHECK_MSG(fabs(x - r16[p]) < 2e-3, "nll[%d] %.5f vs ref %.5f", p, x, r16[p]);
    }
    const json_value *t8 = json_get(ref, "top5_first_8_positions");
    CHECK(t8 && t8->n == 8);
    for (size_t i = 0; t8 && i < t8->n; i++) {
        int pos = (int)ref_num(&t8->items[i], "pos");
        check_top5(&t8->items[i], logits + (size_t)pos * V, V, pos);
    }
    const json_value *tl = json_get(ref, "top5_last_position");
    CHECK(tl != NULL);
    if (tl) check_top5(tl, logits + (size_t)(N - 1) * V, V, (int)N - 1);

    double sum = 0.0;
    for (uint32_t p = 0; p + 1 < N; p++) sum += nll(logits + (size_t)p * V, V, ids[p + 1]);
    double mean = sum / (N - 1), ppl = exp(mean);
    double ref_ppl = ref_num(ref, "perplexity"), ref_mean = ref_num(ref, "mean_nll");
    printf("mean NLL %.6f (ref %.6f), perplexity %.4f (ref %.4f, rel diff %.2e)\n", mean, ref_mean,
           ppl, ref_ppl, fabs(ppl / ref_ppl - 1.0));
    CHECK(fabs(ppl / ref_ppl - 1.0) < 0.005);
    CHECK(fabs(mean - ref_mean) < 1e-3);

    /* ---- incremental decoding agrees with the batch --------------------- */
    {
        eng_context *c2 = eng_context_alloc(m, 1100, 2);
        float *lg = malloc((size_t)8 * V * sizeof(float));
        CHECK(c2 && lg);
        CHECK(eng_decode(c2, ids, 1000, NULL) == ENG_OK);
        double maxd = 0.0;
        for (uint32_t p = 1000; p < 1008; p++) {
            CHECK(eng_decode(c2, ids + p, 1, lg) == ENG_OK);
            for (uint32_t j = 0; j < V; j++) {
                double dd = fabs(lg[j] - logits[(size_t)p * V + j]);
                maxd = dd > maxd ? dd : maxd;
            }
        }
        printf("incremental vs batch max |dlogit| %.2e\n", maxd);
        CHECK(maxd < 1e-3);
        /* Truncate and redo: same logits as before, bitwise (same calls). */
        CHECK(eng_context_set_n_past(c2, 1007) == ENG_OK);
        float *again = malloc((size_t)V * sizeof(float));
        CHECK(eng_decode(c2, ids + 1007, 1, again) == ENG_OK);
        CHECK(memcmp(again, lg, (size_t)V * sizeof(float)) == 0); /* lg: position 1007 */
        CHECK(eng_context_n_past(c2) == 1008);
        /* Errors leave the context unchanged. */
        CHECK(eng_decode(c2, ids, 200, NULL) == ENG_E_CTX_FULL);
        CHECK(strstr(eng_context_error(c2), "exceed") != NULL);
        int32_t bad[2] = {5, 4096};
        CHECK(eng_decode(c2, bad, 2, NULL) == ENG_E_TOKEN);
        CHECK(eng_context_n_past(c2) == 1008);
        CHECK(eng_context_set_n_past(c2, 1101) == ENG_E_ARG);
        CHECK(eng_context_k(c2, 8) == NULL && eng_context_k(c2, 7) != NULL);
        free(again);
        free(lg);
        eng_context_free(c2);
    }

    /* ---- K/V extraction equals the cache of one decode call ------------- */
    {
        const uint32_t n = 600; /* two micro-batches */
        eng_context *c3 = eng_context_alloc(m, 700, 2);
        CHECK(c3 && eng_decode(c3, ids, n, NULL) == ENG_OK);
        int64_t *pos = malloc(n * sizeof(int64_t));
        for (uint32_t i = 0; i < n; i++) pos[i] = i;
        const size_t per = (size_t)hp->n_head_kv * n * hp->head_dim;
        float *ko = malloc(per * hp->n_layer * sizeof(float));
        float *vo = malloc(per * hp->n_layer * sizeof(float));
        for (uint32_t nl = 1; nl <= hp->n_layer; nl += hp->n_layer - 1) {
            CHECK(eng_compute_kv_prefix_layers(m, nl, ids, pos, n, ko, vo, 2) == ENG_OK);
            int eq = 1;
            for (uint32_t l = 0; l < nl; l++) {
                const float *kc = eng_context_k(c3, l), *vc = eng_context_v(c3, l);
                for (uint32_t h = 0; h < hp->n_head_kv; h++) {
                    size_t row = (size_t)n * hp->head_dim;
                    eq &= memcmp(ko + l * per + h * row, kc + (size_t)h * 700 * hp->head_dim,
                                 row * sizeof(float)) == 0;
                    eq &= memcmp(vo + l * per + h * row, vc + (size_t)h * 700 * hp->head_dim,
                                 row * sizeof(float)) == 0;
                }
            }
            CHECK_MSG(eq, "compute_kv_prefix_layers(%u) differs from the decode cache", nl);
        }
        CHECK(eng_compute_kv_prefix_layers(m, 0, ids, pos, n, ko, vo, 1) == ENG_E_ARG);
        CHECK(eng_compute_kv_prefix_layers(m, 9, ids, pos, n, ko, vo, 1) == ENG_E_ARG);

        /* Writing a cache back by hand: copy layer caches out, clear, restore,
         * and the next token's logits are unchanged. */
        float *lg1 = malloc((size_t)V * sizeof(float)), *lg2 = malloc((size_t)V * sizeof(float));
        CHECK(eng_decode(c3, ids + n, 1, lg1) == ENG_OK);
        eng_context *c4 = eng_context_alloc(m, 700, 1);
        for (uint32_t l = 0; l < hp->n_layer; l++) {
            memcpy(eng_context_k(c4, l), eng_context_k(c3, l),
                   (size_t)hp->n_head_kv * 700 * hp->head_dim * sizeof(float));
            memcpy(eng_context_v(c4, l), eng_context_v(c3, l),
                   (size_t)hp->n_head_kv * 700 * hp->head_dim * sizeof(float));
        }
        CHECK(eng_context_set_n_past(c4, n) == ENG_OK);
        CHECK(eng_decode(c4, ids + n, 1, lg2) == ENG_OK);
        CHECK(memcmp(lg1, lg2, (size_t)V * sizeof(float)) == 0);
        free(lg1);
        free(lg2);
        eng_context_free(c4);
        free(ko);
        free(vo);
        free(pos);
        eng_context_free(c3);
    }

    /* ---- prefill timing ------------------------------------------------- */
    {
        eng_context *c5 = eng_context_alloc(m, 2048, 2);
        CHECK(c5 != NULL && n_tok >= 2048);
        t0 = test_now();
        CHECK(eng_decode(c5, ids, 2048, NULL) == ENG_OK);
        double dt = test_now() - t0;
        printf("prefill 2048 tokens (no logits): %.3f s (%.0f tok/s)\n", dt, 2048 / dt);
        float *lg = malloc((size_t)V * sizeof(float));
        CHECK(eng_context_set_n_past(c5, 2000) == ENG_OK);
        t0 = test_now();
        for (int i = 0; i < 32; i++) CHECK(eng_decode(c5, ids + 2000 + i, 1, lg) == ENG_OK);
        printf("single-token decode at ~2000 context: %.2f ms/token\n", (test_now() - t0) / 32 * 1e3);
        free(lg);
        eng_context_free(c5);
    }

    free(logits);
    eng_context_free(ctx);
    free(ids);
out:
    json_free(ref);
    free(rtext);
    free(text);
    eng_model_free(m);
}

/* ======================================================================== */

static void test_stories(void) {
    char err[256];
    eng_model *m = eng_model_load(STORIES_MODEL, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return;
    const eng_hparams *hp = eng_model_hparams(m);
    CHECK(hp->n_vocab == 512 && hp->n_embd == 64 && hp->n_layer == 5 && hp->n_head == 8);
    CHECK(hp->n_head_kv == 4 && hp->head_dim == 8 && hp->n_ff == 172 && hp->n_ctx_train == 512);
    CHECK(hp->rope_theta == 10000.0f); /* absent from the file: the default */

    const char *prompt = "Once upon a time";
    /* llama.cpp's and llama2.c's greedy continuation (third-party README). */
    const char *expect = "Once upon a time, there was a little girl named Lily. She loved to play "
                         "outside in the park. One day, she saw a big, red ball.";
    int32_t toks[128];
    int n = eng_tokenize(m, prompt, strlen(prompt), 1, toks, 128);
    CHECK(n > 1 && toks[0] == 1);
    eng_context *ctx = eng_context_alloc(m, 0, 2);
    CHECK(ctx && eng_context_n_ctx(ctx) == 512);
    float *lg = malloc((size_t)n * hp->n_vocab * sizeof(float));
    CHECK(eng_decode(ctx, toks, (uint32_t)n, lg) == ENG_OK);
    int32_t next = argmax(lg + (size_t)(n - 1) * hp->n_vocab, hp->n_vocab);
    int total = n;
    for (int i = 0; i < 30 && total < 128; i++) {
        toks[total++] = next;
        CHECK(eng_decode(ctx, &next, 1, lg) == ENG_OK);
        next = argmax(lg, hp->n_vocab);
    }
    char out[1024];
    size_t len = eng_detokenize(m, toks, (size_t)total, 1, out, sizeof(out) - 1);
    out[len < sizeof(out) - 1 ? len : sizeof(out) - 1] = '\0';
    printf("stories260K: %s\n", out);
    size_t cmp = strlen(out) < strlen(expect) ? strlen(out) : strlen(expect);
    CHECK(cmp > 80);
    CHECK_MSG(strncmp(out, expect, cmp) == 0, "got '%s'", out);
    free(lg);
    eng_context_free(ctx);
    eng_model_free(m);
}

int main(void) {
    char note[256];
    if (eng_blas_check(note, sizeof(note))) printf("note: %s\n", note);
    test_eval_model();
    test_stories();
    return TEST_REPORT();
}
