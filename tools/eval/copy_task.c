/* copy_task.c - see copy_task.h. */
#include "copy_task.h"

#include <string.h>

#include "internal.h"

int copy_layout_invalid(const copy_layout *l, uint32_t n_sink, uint32_t n_window) {
    uint64_t P = l->passage, dist = l->distance;
    return P < 2 || dist < P + n_window || dist + P + 1 + n_sink > l->ctx;
}

/* Natural text: the passage is partly predictable from its own left context,
 * so a weak model copies it no better than its hidden control. Random
 * tokens: only the first copy predicts them (what a model without induction
 * heads cannot use). */
uint32_t copy_build(const copy_layout *l, const int32_t *w, const int32_t *pool, uint64_t n_pool, uint64_t seed,
                    int hidden, int32_t *pass_buf, int32_t *tok) {
    if (copy_layout_invalid(l, 0, 0) || (l->kind == COPY_PASSAGE_RANDOM && !n_pool)) return 0;
    uint32_t P = l->passage, gap = l->distance - P, a = l->ctx - 1 - 2 * P - gap, n = 0;
    const int32_t *pass = w + 1 + a + gap, *first = hidden ? w + l->ctx - P : pass;
    if (l->kind == COPY_PASSAGE_RANDOM) {
        kvi_rng rng = {seed};
        for (uint32_t i = 0; i < 2 * P; i++) pass_buf[i] = pool[kvi_rng_next(&rng) % n_pool];
        pass = pass_buf;
        first = hidden ? pass_buf + P : pass_buf;
    }
    tok[n++] = w[0];
    memcpy(tok + n, w + 1, sizeof(int32_t) * a);
    n += a;
    memcpy(tok + n, first, sizeof(int32_t) * P);
    n += P;
    memcpy(tok + n, w + 1 + a, sizeof(int32_t) * gap);
    n += gap;
    uint32_t prefix = n;
    memcpy(tok + n, pass, sizeof(int32_t) * P);
    return prefix;
}
