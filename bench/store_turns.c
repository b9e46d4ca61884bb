/* store_turns.c - the kvtc store on a multi-turn workload with the bundled
 * engine: conversations that share a system prompt and grow turn by turn.
 *
 *   bench_store_turns MODEL.gguf TEXT.txt BASIS URI [--conversations N] [--turns T]
 *                     [--system S] [--user U] [--reply R] [--chunk C] [--ratio X] [--threads W]
 *                     [--offset TOKENS]
 *
 * The text starts --offset tokens in (default 16384: past the windows a
 * basis is calibrated on). Every turn's prompt is [<s>] + system prompt + the earlier turns (user
 * message, reply) + this turn's user message, all cut from TEXT. For each
 * prompt:
 *   recompute: prefill the whole prompt in a fresh context (the baseline);
 *   store:     lookup + get the longest stored prefix (leaving at least the
 *              last token to compute), write it into a fresh context,
 *              prefill the rest.
 * Both end with the next-token logits, whose argmax is compared. Then the
 * reply is decoded after the baseline prompt (teacher forcing) and the exact
 * KV of prompt + reply is put into the store, as a server would after the
 * turn. Reported: the fraction of prompt tokens served from the store and
 * the prefill time saved. The engine's matrix products use OpenBLAS's own
 * threads (OPENBLAS_NUM_THREADS); the store decodes with --threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvtc_store.h"
#include "llama.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[sz] = 0; *n = (size_t)sz; }
    return b;
}

static uint32_t argmax(const float *x, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Prefill tokens[from..n) after what ctx holds; logits of the last token. */
static int prefill(eng_context *ctx, const int32_t *tokens, uint32_t from, uint32_t n, float *logits) {
    if (n - from > 1 && eng_decode(ctx, tokens + from, n - 1 - from, NULL) != ENG_OK) return -1;
    return eng_decode(ctx, tokens + n - 1, 1, logits) == ENG_OK ? 0 : -1;
}

/* The context's first n positions as a kvtc_cache (float32, [L][H][n][d]). */
static void read_kv(eng_context *ctx, const eng_hparams *hp, uint32_t n, float *k, float *v) {
    uint32_t n_ctx = eng_context_n_ctx(ctx), d = hp->head_dim;
    for (uint32_t l = 0; l < hp->n_layer; l++)
        for (uint32_t h = 0; h < hp->n_head_kv; h++) {
            size_t dst = ((size_t)l * hp->n_head_kv + h) * n * d;
            memcpy(k + dst, eng_context_k(ctx, l) + (size_t)h * n_ctx * d, sizeof(float) * n * d);
            memcpy(v + dst, eng_context_v(ctx, l) + (size_t)h * n_ctx * d, sizeof(float) * n * d);
        }
}

static void write_kv(eng_context *ctx, const eng_hparams *hp, uint32_t n, const float *k, const float *v) {
    uint32_t n_ctx = eng_context_n_ctx(ctx), d = hp->head_dim;
    for (uint32_t l = 0; l < hp->n_layer; l++)
        for (uint32_t h = 0; h < hp->n_head_kv; h++) {
            size_t src = ((size_t)l * hp->n_head_kv + h) * n * d;
            memcpy(eng_context_k(ctx, l) + (size_t)h * n_ctx * d, k + src, sizeof(float) * n * d);
            memcpy(eng_context_v(ctx, l) + (size_t)h * n_ctx * d, v + src, sizeof(float) * n * d);
        }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_store_turns MODEL.gguf TEXT.txt BASIS URI [--conversations N] [--turns T] "
                        "[--system S] [--user U] [--reply R] [--chunk C] [--ratio X] [--threads W]\n");
        return 2;
    }
    uint32_t n_conv = 8, n_turns = 4, S = 512, U = 96, R = 64, C = 256, threads = 2;
    uint32_t offset = 16384; /* text tokens skipped: calibration windows come from the start */
    double ratio = 20;
    for (int i = 5; i + 1 < argc; i += 2) {
        const char *a = argv[i];
        uint32_t v = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        if (!strcmp(a, "--conversations")) n_conv = v;
        else if (!strcmp(a, "--turns")) n_turns = v;
        else if (!strcmp(a, "--system")) S = v;
        else if (!strcmp(a, "--user")) U = v;
        else if (!strcmp(a, "--reply")) R = v;
        else if (!strcmp(a, "--chunk")) C = v;
        else if (!strcmp(a, "--ratio")) ratio = atof(argv[i + 1]);
        else if (!strcmp(a, "--threads")) threads = v;
        else if (!strcmp(a, "--offset")) offset = v;
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    char err[512] = "";
    eng_model *m = eng_model_load(argv[1], err, sizeof err);
    if (!m) { fprintf(stderr, "model: %s\n", err); return 1; }
    const eng_hparams *hp = eng_model_hparams(m);
    size_t text_len = 0, basis_len = 0;
    char *text = read_all(argv[2], &text_len);
    void *basis_bytes = read_all(argv[3], &basis_len);
    if (!text || !basis_bytes) { fprintf(stderr, "cannot read %s or %s\n", argv[2], argv[3]); return 1; }
    kvtc_basis *basis = NULL;
    kvtc_result r = kvtc_basis_load(basis_bytes, basis_len, &basis);
    free(basis_bytes);
    if (r) { fprintf(stderr, "basis: %s\n", kvtc_result_string(r)); return 1; }

    /* the text: system prompt, then each conversation's turns, disjoint */
    uint64_t need = offset + S + (uint64_t)n_conv * n_turns * (U + R);
    int32_t *ids = malloc(sizeof(int32_t) * (text_len + 2));
    int n_ids = eng_tokenize(m, text, text_len, 0, ids, (int)text_len + 1);
    free(text);
    const int32_t *body = ids + offset;
    if (n_ids < 0 || (uint64_t)n_ids < need) { fprintf(stderr, "text too short: %d tokens, %llu needed\n", n_ids, (unsigned long long)need); return 1; }
    uint32_t max_prompt = 1 + S + n_turns * (U + R);
    if (max_prompt > hp->n_ctx_train) { fprintf(stderr, "conversations exceed the context (%u > %u)\n", max_prompt, hp->n_ctx_train); return 1; }

    kvtc_store_options o;
    kvtc_store_options_init(&o);
    o.chunk_tokens = C;
    o.ratio = ratio;
    o.n_threads = threads;
    char name[64];
    snprintf(name, sizeof name, "turns-%ld", (long)time(NULL)); /* a fresh namespace per run */
    o.model_name = name;
    kvtc_store *s = NULL;
    if ((r = kvtc_store_open(argv[4], basis, kvtc_basis_geometry(basis), KVTC_DTYPE_F32, &o, &s))) {
        fprintf(stderr, "store %s: %s\n", argv[4], kvtc_result_string(r));
        return 1;
    }
    eng_context *full = eng_context_alloc(m, max_prompt, 1), *fast = eng_context_alloc(m, max_prompt, 1);
    size_t per = (size_t)hp->n_layer * hp->n_head_kv * max_prompt * hp->head_dim;
    float *k = malloc(sizeof(float) * per), *v = malloc(sizeof(float) * per);
    float *la = malloc(sizeof(float) * hp->n_vocab), *lb = malloc(sizeof(float) * hp->n_vocab);
    int32_t *prompt = malloc(sizeof(int32_t) * max_prompt);
    if (!full || !fast || !k || !v || !la || !lb || !prompt) { fprintf(stderr, "out of memory\n"); return 1; }

    printf("| turn | prompts | prompt tokens | served from store | recompute ms | store ms (restore + rest) | restore ms |\n");
    printf("|---|---|---|---|---|---|---|\n");
    double *t_full = calloc(n_turns, sizeof(double)), *t_fast = calloc(n_turns, sizeof(double)), *t_rest = calloc(n_turns, sizeof(double));
    uint64_t *tok = calloc(n_turns, sizeof(uint64_t)), *hit = calloc(n_turns, sizeof(uint64_t));
    uint32_t agree = 0, prompts = 0, bad = 0;
    double t_put = 0;
    for (uint32_t c = 0; c < n_conv; c++) {
        uint32_t n = 0;
        prompt[n++] = eng_token_bos(m) >= 0 ? eng_token_bos(m) : ids[0];
        memcpy(prompt + n, body, sizeof(int32_t) * S);
        n += S;
        for (uint32_t t = 0; t < n_turns; t++) {
            const int32_t *turn = body + S + ((uint64_t)c * n_turns + t) * (U + R);
            memcpy(prompt + n, turn, sizeof(int32_t) * U);
            n += U;
            /* recompute */
            eng_context_set_n_past(full, 0);
            double a = now_s();
            if (prefill(full, prompt, 0, n, la)) bad++;
            t_full[t] += now_s() - a;
            /* store */
            eng_context_set_n_past(fast, 0);
            a = now_s();
            uint64_t h = 0, got = 0;
            if (kvtc_store_lookup(s, prompt, n, &h)) bad++;
            if (h >= n) h -= C; /* the last token is computed for its logits */
            if (h) {
                kvtc_cache out = {*kvtc_basis_geometry(basis), KVTC_DTYPE_F32, h, k, v, NULL, NULL};
                kvtc_store_layout lay = {.struct_size = sizeof lay, .kind = KVTC_STORE_LAYOUT_CONTIGUOUS, .cache = &out};
                if (kvtc_store_get(s, prompt, n, &lay, &got) || got != h) bad++;
                write_kv(fast, hp, (uint32_t)got, k, v);
                eng_context_set_n_past(fast, (uint32_t)got);
            }
            t_rest[t] += now_s() - a;
            if (prefill(fast, prompt, (uint32_t)got, n, lb)) bad++;
            t_fast[t] += now_s() - a;
            tok[t] += n;
            hit[t] += got;
            agree += argmax(la, hp->n_vocab) == argmax(lb, hp->n_vocab);
            prompts++;
            /* the reply, then the exact KV of the whole history goes into the store */
            memcpy(prompt + n, turn + U, sizeof(int32_t) * R);
            if (eng_decode(full, prompt + n, R, NULL) != ENG_OK) bad++;
            n += R;
            read_kv(full, hp, n, k, v);
            kvtc_cache in = {*kvtc_basis_geometry(basis), KVTC_DTYPE_F32, n, k, v, NULL, prompt};
            a = now_s();
            if (kvtc_store_put(s, prompt, n, &in, NULL)) bad++;
            t_put += now_s() - a;
        }
    }
    uint64_t all_tok = 0, all_hit = 0;
    double all_full = 0, all_fast = 0, all_rest = 0;
    for (uint32_t t = 0; t < n_turns; t++) {
        printf("| %u | %u | %llu | %.1f%% | %.1f | %.1f | %.1f |\n", t + 1, n_conv, (unsigned long long)tok[t],
               100.0 * (double)hit[t] / (double)tok[t], 1e3 * t_full[t], 1e3 * t_fast[t], 1e3 * t_rest[t]);
        all_tok += tok[t];
        all_hit += hit[t];
        all_full += t_full[t];
        all_fast += t_fast[t];
        all_rest += t_rest[t];
    }
    printf("| all | %u | %llu | %.1f%% | %.1f | %.1f | %.1f |\n", prompts, (unsigned long long)all_tok,
           100.0 * (double)all_hit / (double)all_tok, 1e3 * all_full, 1e3 * all_fast, 1e3 * all_rest);
    kvtc_store_stats st = {.struct_size = sizeof st};
    kvtc_store_stats_get(s, &st);
    printf("\nprefill time saved: %.1f%% (%.0f ms of %.0f ms); next-token argmax agrees in %u of %u prompts; "
           "store: %llu chunks put (%.1f ms, off the critical path), ratio %.1fx, %llu rejected records%s\n",
           100.0 * (all_full - all_fast) / all_full, 1e3 * (all_full - all_fast), 1e3 * all_full, agree, prompts,
           (unsigned long long)st.chunks_put, 1e3 * t_put, st.ratio, (unsigned long long)st.errors,
           bad ? ", FAILURES" : "");
    free(t_full); free(t_fast); free(t_rest); free(tok); free(hit);
    free(k); free(v); free(la); free(lb); free(prompt); free(ids);
    eng_context_free(full);
    eng_context_free(fast);
    kvtc_store_close(s);
    kvtc_basis_free(basis);
    eng_model_free(m);
    return bad ? 1 : 0;
}
