/* copy_task.h - the copy layout that kvtc eval's copy tasks score
 * (retrieval.c) and that calibration measures sensitivity on
 * (sensitivity.c, --sens-task copy-random): one place, so that the weights a
 * basis is calibrated with come from the very sequences the eval builds.
 *
 *   [<s>] text[a]  P  text[gap]  | P
 *   \------------- prefix -------/ \- continuation (scored)
 *
 * The prefix ends where the second copy starts; "distance" is the token
 * distance between the starts of the two copies (gap = distance - P). */
#ifndef KVTC_TOOLS_EVAL_COPY_TASK_H
#define KVTC_TOOLS_EVAL_COPY_TASK_H

#include <stdint.h>

typedef enum copy_passage {
    COPY_PASSAGE_TEXT = 0,   /* P = the text that follows the gap */
    COPY_PASSAGE_RANDOM = 1, /* P = tokens drawn uniformly from a token pool */
} copy_passage;

typedef struct copy_layout {
    uint32_t ctx;      /* sequence length */
    uint32_t passage;  /* P, tokens per copy */
    uint32_t distance; /* start of copy 1 -> start of copy 2 */
    copy_passage kind;
} copy_layout;

/* Nonzero unless the first copy lies after n_sink sinks and before the
 * n_window raw tokens at the end of the prefix (the compressed region), i.e.
 * P >= 2, P + n_window <= distance <= ctx - P - n_sink - 1. */
int copy_layout_invalid(const copy_layout *l, uint32_t n_sink, uint32_t n_window);

/* Build one sequence into tok[l->ctx] from the text window w[l->ctx] (a
 * model_text_window: w[0] is <s>). Random passages are 2P draws from
 * pool[n_pool] seeded by seed (the same seed gives the same scored passage
 * for both runs of a trial); pass_buf holds them (2P tokens). hidden: the
 * first copy is replaced by tokens that appear nowhere else (text: the
 * window's last P tokens; random: the second P draws), the control that
 * shows the task needs the cache. Returns the prefix length (the scored
 * continuation is tok[prefix .. prefix + P)), or 0 if l is invalid. */
uint32_t copy_build(const copy_layout *l, const int32_t *w, const int32_t *pool, uint64_t n_pool, uint64_t seed,
                    int hidden, int32_t *pass_buf, int32_t *tok);

#endif
