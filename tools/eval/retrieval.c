/* retrieval.c - copy and key-value recall tasks over a compressed cache; see
 * retrieval.h. */
#include "retrieval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "copy_task.h"
#include "internal.h"
#include "metrics.h"

/* One task instance: the token sequence, where its prefix ends, and the
 * scored continuation. */
typedef struct task_seq {
    int32_t *tok;      /* [ctx] */
    uint32_t n_pre;    /* prefilled (and compressed) tokens */
    uint32_t n_cont;   /* continuation tokens tok[n_pre .. n_pre + n_cont) */
    uint32_t distance; /* copy: start of copy 1 -> start of copy 2; recall: needle -> end of question */
} task_seq;

/* A made-up name of 2-4 consonant-vowel syllables, capitalized, as the
 * training kit's recall documents use (models/train/build_corpus.py). */
static void make_name(kvi_rng *s, char *out) {
    static const char cons[] = "bdfgklmnprstvz", vow[] = "aeiou";
    int n = 2 + (int)(kvi_rng_next(s) % 3), j = 0;
    for (int i = 0; i < n; i++) {
        out[j++] = cons[kvi_rng_next(s) % (sizeof cons - 1)];
        out[j++] = vow[kvi_rng_next(s) % (sizeof vow - 1)];
    }
    out[0] = (char)(out[0] - 'a' + 'A');
    out[j] = '\0';
}

/* Tokens of s as they appear inside running text: without <s>, and without
 * the dummy-prefix space piece when s starts with a newline (a newline never
 * merges with what precedes it, so these are the in-context tokens). */
static int tokenize_inner(const eng_model *m, const char *s, int32_t *out, int cap) {
    int32_t tmp[512];
    int n = eng_tokenize(m, s, strlen(s), 0, tmp, 512);
    if (n < 0 || n > 512) return -1;
    int skip = n > 0 && s[0] == '\n' && strcmp(eng_token_piece(m, tmp[0]), "\xe2\x96\x81") == 0;
    if (n - skip > cap) return -1;
    memcpy(out, tmp + skip, sizeof(int32_t) * (size_t)(n - skip));
    return n - skip;
}

/* copy and copy-random: the layout of copy_task.h, random passages drawn
 * from the whole text. */
static int build_copy(const retrieval_opts *o, const model_text *mt, const int32_t *w, uint32_t dist,
                      uint64_t seed, int hidden, int32_t *pass_buf, task_seq *q) {
    copy_layout l = {o->ctx, o->passage, dist,
                     o->task == RETRIEVAL_COPY_RANDOM ? COPY_PASSAGE_RANDOM : COPY_PASSAGE_TEXT};
    q->n_pre = copy_build(&l, w, mt->ids, mt->n_ids, seed, hidden, pass_buf, q->tok);
    q->n_cont = o->passage;
    q->distance = dist;
    return q->n_pre ? 0 : -1;
}

/* recall: [<s>] text[a] needle text[b] question | answer; hidden: the needle
 * carries another code. The prefix ends one token before the answer so that
 * the first answer token's prediction is among the continuation's logits. */
static int build_recall(const retrieval_opts *o, const eng_model *m, const int32_t *w,
                        double depth, uint64_t seed, int hidden, task_seq *q, uint32_t *n_answer) {
    kvi_rng s = {seed};
    char name[16], needle[128], question[256], full[320];
    make_name(&s, name);
    unsigned code = (unsigned)(kvi_rng_next(&s) % 100000), other = (code + 1 + (unsigned)(kvi_rng_next(&s) % 99999)) % 100000;
    snprintf(needle, sizeof needle, "\nThe secret code of %s is %05u.\n", name, hidden ? other : code);
    snprintf(question, sizeof question,
             "\nQuestion: what is the secret code of %s?\nAnswer: the secret code of %s is", name, name);
    snprintf(full, sizeof full, "%s %05u", question, code);
    int32_t nt[128], qt[256], ft[256];
    int nn = tokenize_inner(m, needle, nt, 128), nq = tokenize_inner(m, question, qt, 256),
        nf = tokenize_inner(m, full, ft, 256);
    if (nn < 1 || nq < 1 || nf <= nq || memcmp(qt, ft, sizeof(int32_t) * (size_t)nq) != 0) {
        cli_fail("eval", "recall: the question does not tokenize as a prefix of question + answer");
        return -1;
    }
    uint32_t na = (uint32_t)(nf - nq), fixed = 1 + (uint32_t)nn + (uint32_t)nf;
    if (fixed + 2 * o->n_window > o->ctx) {
        cli_fail("eval", "recall: context %u too short for the needle, question and a raw window of %u", o->ctx,
                 o->n_window);
        return -1;
    }
    /* depth clamped so that the needle lies in the compressed region */
    uint32_t fill = o->ctx - fixed, a = (uint32_t)(depth * fill + 0.5);
    if (a < o->n_sink) a = o->n_sink;
    if (a > fill - o->n_window) a = fill - o->n_window;
    uint32_t b = fill - a;
    int32_t *t = q->tok;
    uint32_t n = 0;
    t[n++] = w[0];
    memcpy(t + n, w + 1, sizeof(int32_t) * a);
    n += a;
    uint32_t needle_at = n;
    memcpy(t + n, nt, sizeof(int32_t) * (size_t)nn);
    n += (uint32_t)nn;
    memcpy(t + n, w + 1 + a, sizeof(int32_t) * b);
    n += b;
    memcpy(t + n, ft, sizeof(int32_t) * (size_t)nf);
    n += (uint32_t)nf;
    q->n_pre = n - na - 1;
    q->n_cont = na + 1;
    q->distance = q->n_pre + 1 - needle_at;
    *n_answer = na;
    return n == o->ctx ? 0 : -1;
}

int retrieval_check(const retrieval_opts *o, const model_text *mt) {
    if (o->n_points == 0 || o->n_points > RETRIEVAL_MAX_POINTS)
        return cli_usage("eval", "1 to %d distances / depths", RETRIEVAL_MAX_POINTS);
    if (!o->windows || !o->trials || model_text_windows(mt, o->ctx) < o->windows)
        return cli_fail("eval", "the text holds %llu windows of %u tokens, fewer than --windows %u",
                        (unsigned long long)model_text_windows(mt, o->ctx), o->ctx, o->windows);
    for (uint32_t i = 0; i < o->n_points; i++) {
        double p = o->points[i];
        /* a point twice would print two rows of one name and point */
        for (uint32_t j = 0; j < i; j++)
            if (o->points[j] == p)
                return cli_usage("eval", "--%s lists %g twice", o->task == RETRIEVAL_RECALL ? "depths" : "distances", p);
        if (o->task == RETRIEVAL_RECALL) {
            if (!(p >= 0.0 && p <= 1.0)) return cli_usage("eval", "--depths are fractions in [0, 1]");
            continue;
        }
        /* the first copy must lie after the sinks and before the raw window */
        uint32_t P = o->passage;
        copy_layout l = {o->ctx, P, p >= 0 && p <= o->ctx ? (uint32_t)p : 0, COPY_PASSAGE_TEXT};
        if (p != floor(p) || copy_layout_invalid(&l, o->n_sink, o->n_window))
            return cli_usage("eval",
                             "copy distance %g: needs passage + window (%lld) <= distance <= ctx - passage - "
                             "sinks - 1 (%lld)", p, (long long)P + o->n_window,
                             (long long)o->ctx - P - o->n_sink - 1);
    }
    return 0;
}

void retrieval_result_free(retrieval_result *res) {
    free(res->stat);
    free(res->per_trial);
    res->stat = NULL;
    res->per_trial = NULL;
}

/* Score one continuation: copy -> accuracy and NLL; recall -> exact match.
 * Returns the trial's accuracy (recall: answer tokens right). */
static double score_seq(const retrieval_opts *o, const task_seq *q, const float *lg, uint32_t vocab, uint32_t na,
                      double *lp, retrieval_stat *st) {
    const int32_t *cont = q->tok + q->n_pre;
    if (o->task != RETRIEVAL_RECALL) {
        double acc = 0, nll = 0;
        uint32_t n = q->n_cont - 1;
        for (uint32_t i = 0; i < n; i++) {
            const float *row = lg + (size_t)i * vocab;
            metrics_log_softmax(row, vocab, lp);
            nll -= lp[cont[i + 1]];
            acc += metrics_argmax(row, vocab) == (uint32_t)cont[i + 1];
        }
        acc /= n;
        nll /= n;
        st->acc += acc;
        st->acc2 += acc * acc;
        st->nll += nll;
        st->nll2 += nll * nll;
        st->n++;
        return acc;
    } else {
        uint32_t right = 0;
        for (uint32_t i = 0; i < na; i++)
            right += metrics_argmax(lg + (size_t)i * vocab, vocab) == (uint32_t)cont[i + 1];
        double acc = (double)right / na;
        st->em += right == na;
        st->acc += acc; /* answer tokens right: partial credit, for weak models */
        st->acc2 += acc * acc;
        st->n++;
        return acc;
    }
}

int retrieval_run(const retrieval_opts *o, const model_text *mt, uint32_t n_methods,
                  retrieval_apply_fn apply, void *user, retrieval_result *res) {
    const eng_model *m = mt->model;
    kvtc_geometry g = model_geometry(m);
    uint32_t vocab = eng_model_hparams(m)->n_vocab;
    memset(res, 0, sizeof *res);
    res->n_methods = n_methods;
    res->n_points = o->n_points;
    res->trials = o->trials;
    res->stat = calloc((size_t)(n_methods + 1) * o->n_points, sizeof *res->stat);
    res->per_trial = calloc((size_t)(n_methods + 1) * o->n_points * o->trials, sizeof *res->per_trial);
    size_t per = (size_t)g.n_layers * g.n_kv_heads * o->ctx * g.head_dim;
    int32_t *w = malloc(sizeof(int32_t) * o->ctx), *tok = malloc(sizeof(int32_t) * o->ctx);
    float *k0 = malloc(sizeof(float) * per), *v0 = malloc(sizeof(float) * per);
    float *k = malloc(sizeof(float) * per), *v = malloc(sizeof(float) * per);
    uint32_t max_cont = o->task != RETRIEVAL_RECALL ? o->passage : 64;
    int32_t *pass_buf = malloc(sizeof(int32_t) * 2 * (size_t)o->passage);
    float *lg = malloc(sizeof(float) * (size_t)max_cont * vocab);
    double *lp = malloc(sizeof(double) * vocab);
    eng_context *ctx = eng_context_alloc(m, o->ctx, o->threads);
    int rc = 1, progress = cli_progress_enabled();
    if (!res->stat || !res->per_trial || !w || !tok || !k0 || !v0 || !k || !v || !lg || !lp || !ctx || !pass_buf) {
        cli_fail("eval", "out of memory");
        goto done;
    }
    for (uint32_t p = 0; p < o->n_points; p++) {
        double dist_sum = 0;
        for (uint32_t t = 0; t < o->trials; t++) {
            /* more trials than windows reuse a window's text with another
             * random passage / needle (the seed depends on t) */
            model_text_window(mt, o->ctx, t % o->windows, 1, w);
            uint64_t seed = 0x5EED0000ull + 1000003ull * p + t;
            uint32_t na = 0;
            for (int hidden = 0; hidden < 2; hidden++) {
                task_seq q = {tok, 0, 0, 0};
                int bad = o->task != RETRIEVAL_RECALL
                              ? build_copy(o, mt, w, (uint32_t)o->points[p], seed, hidden, pass_buf, &q)
                              : build_recall(o, m, w, o->points[p], seed, hidden, &q, &na);
                if (bad || q.n_cont > max_cont) {
                    if (q.n_cont > max_cont) cli_fail("eval", "recall: answer too long");
                    goto done;
                }
                if (!hidden) dist_sum += q.distance;
                eng_context_set_n_past(ctx, 0);
                if (eng_decode(ctx, tok, q.n_pre, NULL)) {
                    cli_fail("eval", "prefill: %s", eng_context_error(ctx));
                    goto done;
                }
                /* the control: this sequence, uncompressed */
                uint32_t first = hidden ? n_methods : 0, last = hidden ? n_methods + 1 : n_methods;
                size_t pn = (size_t)g.n_layers * g.n_kv_heads * q.n_pre * g.head_dim;
                if (!hidden) model_ctx_read_kv(ctx, m, q.n_pre, k0, v0);
                for (uint32_t mi = first; mi < last; mi++) {
                    if (!hidden) {
                        memcpy(k, k0, sizeof(float) * pn);
                        memcpy(v, v0, sizeof(float) * pn);
                        if (apply(user, mi, k, v, q.n_pre, tok)) goto done;
                        model_ctx_write_kv(ctx, m, q.n_pre, k, v);
                        eng_context_set_n_past(ctx, q.n_pre);
                    }
                    if (eng_decode(ctx, tok + q.n_pre, q.n_cont, lg)) {
                        cli_fail("eval", "decode: %s", eng_context_error(ctx));
                        goto done;
                    }
                    size_t cell = (size_t)mi * o->n_points + p;
                    res->per_trial[cell * o->trials + t] = score_seq(o, &q, lg, vocab, na, lp, &res->stat[cell]);
                    if (progress)
                        fprintf(stderr, "\rkvtc eval: point %u/%u, trial %u/%u, method %u/%u   ", p + 1,
                                o->n_points, t + 1, o->trials, mi + 1, n_methods + 1);
                }
            }
        }
        res->actual[p] = dist_sum / o->trials;
    }
    if (progress) fputc('\n', stderr);
    rc = 0;
done:
    eng_context_free(ctx);
    free(w); free(tok); free(k0); free(v0); free(k); free(v); free(lg); free(lp); free(pass_buf);
    if (rc) retrieval_result_free(res);
    return rc;
}

/* Mean and standard error over trials of a per-trial score. */
static void mean_se(double sum, double sum2, uint32_t n, double *mean, double *se) {
    *mean = n ? sum / n : 0;
    double var = n > 1 ? (sum2 - sum * sum / n) / (n - 1) : 0;
    *se = n > 1 && var > 0 ? sqrt(var / n) : 0;
}

void retrieval_print(const retrieval_opts *o, const retrieval_result *res,
                     const char *const *names, const double *ratios, int json, FILE *f) {
    int copy = o->task != RETRIEVAL_RECALL, random = o->task == RETRIEVAL_COPY_RANDOM;
    if (json)
        fprintf(f, "{\"task\": \"%s\", \"ctx\": %u, \"trials\": %u, \"passage\": %u, \"n_sink\": %u, "
                   "\"n_window\": %u, \"rows\": [",
                random ? "copy-random" : copy ? "copy" : "recall", o->ctx, o->trials, copy ? o->passage : 0,
                o->n_sink, o->n_window);
    else if (copy)
        fprintf(f, "%s: passage of %u %s tokens repeated at each distance, %u trial(s), context %u (sinks %u, "
                   "window %u raw for KVTC and kivi2); accuracy and NLL of the second copy, +- standard error "
                   "over trials\n%-26s %7s %8s %16s %16s\n",
                random ? "copy-random" : "copy", o->passage, random ? "random" : "text", o->trials, o->ctx,
                o->n_sink, o->n_window, "method", "ratio", "distance", "copy accuracy", "NLL");
    else
        fprintf(f, "recall: needle line at each depth, question at the end, %u trial(s), context %u (sinks %u, "
                   "window %u raw for KVTC and kivi2); exact match of the 5-digit answer, +- binomial standard "
                   "error; answer tokens right, +- standard error over trials\n%-26s %7s %6s %8s %16s %16s\n",
                o->trials, o->ctx, o->n_sink, o->n_window, "method", "ratio", "depth", "distance", "exact match",
                "answer tokens");
    int first = 1;
    for (uint32_t mi = 0; mi <= res->n_methods; mi++) {
        const char *name = mi < res->n_methods ? names[mi] : copy ? "hidden (passage replaced)"
                                                                  : "hidden (code replaced)";
        double ratio = mi < res->n_methods ? ratios[mi] : 0;
        for (uint32_t p = 0; p < res->n_points; p++) {
            const retrieval_stat *s = &res->stat[(size_t)mi * res->n_points + p];
            double acc, acc_se, nll, nll_se, em = s->n ? s->em / s->n : 0;
            double em_se = s->n ? sqrt(em * (1 - em) / s->n) : 0;
            mean_se(s->acc, s->acc2, s->n, &acc, &acc_se);
            mean_se(s->nll, s->nll2, s->n, &nll, &nll_se);
            if (json) {
                fprintf(f, "%s\n  {\"name\": \"%s\", \"compression_ratio\": %.4f, \"point\": %g, \"distance\": %.1f, "
                           "\"trials\": %u",
                        first ? "" : ",", name, ratio, o->points[p], res->actual[p], s->n);
                const double *pt = res->per_trial + ((size_t)mi * res->n_points + p) * res->trials;
                fprintf(f, ", \"per_trial\": [");
                for (uint32_t t = 0; t < s->n; t++) fprintf(f, "%s%.6f", t ? ", " : "", pt[t]);
                fputc(']', f);
                if (copy)
                    fprintf(f, ", \"accuracy\": %.6f, \"accuracy_se\": %.6f, \"nll\": %.6f, \"nll_se\": %.6f}", acc,
                            acc_se, nll, nll_se);
                else
                    fprintf(f, ", \"exact_match\": %.6f, \"exact_match_se\": %.6f, \"answer_tokens\": %.6f, "
                               "\"answer_tokens_se\": %.6f}", em, em_se, acc, acc_se);
            } else if (copy) {
                fprintf(f, "%-26s %7.2f %8.0f %8.2f%% +-%4.2f %8.4f +-%5.3f\n", name, ratio, res->actual[p],
                        100 * acc, 100 * acc_se, nll, nll_se);
            } else {
                fprintf(f, "%-26s %7.2f %6.2f %8.0f %8.2f%% +-%4.1f %8.2f%% +-%4.1f\n", name, ratio, o->points[p],
                        res->actual[p], 100 * em, 100 * em_se, 100 * acc, 100 * acc_se);
            }
            first = 0;
        }
    }
    if (json) fprintf(f, "\n]}\n");
}
