/* retrieval.h - the retrieval tasks of kvtc eval (--task copy|recall): does a
 * compressed cache still let the model look things up far back?
 *
 * copy: a passage of P tokens of the text appears, then a gap of other text,
 *   then the same passage again. The prefix up to the second copy is
 *   prefilled and its cache round-tripped through each method (the first copy
 *   lies in the compressed region: after the sinks, before the raw window);
 *   the second copy is scored teacher-forced: top-1 accuracy and mean NLL of
 *   its P-1 tokens predicted from inside the copy. "distance" is the token
 *   distance between the starts of the two copies.
 * copy-random: the same layout, but the passage is P tokens drawn uniformly
 *   (with a per-trial seed) from the whole text: a random-token string that
 *   nothing but the first copy predicts, so only a model that looks back
 *   (induction) scores above the hidden control; the hidden control's first
 *   copy is another random draw.
 * recall: a needle line "The secret code of NAME is DDDDD." at a chosen depth
 *   (fraction of the context before the needle) of the text, then at the end
 *   "Question: what is the secret code of NAME?\nAnswer: the secret code of
 *   NAME is" and the answer " DDDDD" is scored: exact match = every answer
 *   token is the argmax (what greedy decoding would produce). The depth is
 *   clamped so that the needle lies after the sinks and before the raw
 *   window; "distance" is from the needle to the end of the question.
 *
 * Each row is averaged over trials (different text, passage, name and code per
 * trial, taken from the END of the text like the ppl windows); standard
 * errors are over trials (tokens within a trial are not independent), and
 * binomial for exact match. Control rows: "uncompressed" (method 0, the
 * untouched float32 cache) and "hidden": the same sequence with the first
 * copy / the needle's code replaced by other text / another code, so the
 * answer is not in the cache at all; a task that depends on the cache scores
 * far lower there. */
#ifndef KVTC_TOOLS_EVAL_RETRIEVAL_H
#define KVTC_TOOLS_EVAL_RETRIEVAL_H

#include <stdint.h>
#include <stdio.h>

#include "../model_kv.h"

typedef enum retrieval_task { RETRIEVAL_COPY = 1, RETRIEVAL_RECALL = 2, RETRIEVAL_COPY_RANDOM = 3 } retrieval_task;

#define RETRIEVAL_MAX_POINTS 16
/* Trials per point at most: each prefills a whole context per method, and
 * the per-trial scores are kept ((methods + 1) x points x trials doubles),
 * so a mistyped count is an error rather than a huge allocation or a run of
 * days. */
#define RETRIEVAL_MAX_TRIALS 10000

typedef struct retrieval_opts {
    retrieval_task task;
    uint32_t ctx;                           /* sequence length */
    uint32_t trials;                        /* per point */
    uint32_t windows;                       /* text windows (from the end); trial t uses window
                                               t % windows with its own random draw */
    uint32_t passage;                       /* copy: passage tokens */
    uint32_t n_points;                      /* distances (copy) or depths (recall) */
    double points[RETRIEVAL_MAX_POINTS];    /* copy: distances in tokens; recall: depths in (0, 1) */
    uint32_t n_sink, n_window, threads;     /* the compressed region of the prefix */
} retrieval_opts;

/* Round-trip the prefix cache k/v [L][H][n][d] in place with method m (0 is
 * the identity); ids are the n prefix tokens. Nonzero on failure (the
 * callback has printed why). */
typedef int (*retrieval_apply_fn)(void *user, uint32_t method, float *k, float *v, uint32_t n,
                                  const int32_t *ids);

/* Per method and point: sums over trials of the per-trial scores. */
typedef struct retrieval_stat {
    double acc, acc2;   /* copy: accuracy per trial; recall: answer tokens right; and squares */
    double nll, nll2;   /* copy: mean NLL per trial, and its square */
    double em;          /* recall: exact matches */
    uint32_t n;         /* trials */
} retrieval_stat;

typedef struct retrieval_result {
    uint32_t n_methods;             /* + 1 control row at index n_methods */
    uint32_t n_points;
    retrieval_stat *stat;           /* [(n_methods + 1) * n_points] */
    uint32_t trials;
    /* per trial, for paired differences between methods (the same sequences
     * go through every method): copy accuracy or recall answer tokens right,
     * [((n_methods + 1) * n_points + p) * trials + t] with method-major rows */
    double *per_trial;
    double actual[RETRIEVAL_MAX_POINTS]; /* mean distance needle->question (recall) or copy distance */
} retrieval_result;

/* Check the options against the model and text; 0 or a printed usage error. */
int retrieval_check(const retrieval_opts *o, const model_text *mt);

/* Run the task for n_methods methods through apply. Fills *res (free with
 * retrieval_result_free). Nonzero (printed) on failure. */
int retrieval_run(const retrieval_opts *o, const model_text *mt, uint32_t n_methods,
                  retrieval_apply_fn apply, void *user, retrieval_result *res);

void retrieval_result_free(retrieval_result *res);

/* The table (or JSON) of res: one row per method and point. names[i] and
 * ratios[i] (compression ratio over coded tokens, 0 for none) per method. */
void retrieval_print(const retrieval_opts *o, const retrieval_result *res,
                     const char *const *names, const double *ratios, int json, FILE *f);

#endif
