/* metrics.h - next-token distribution metrics shared by kvtc eval and the
 * sensitivity measurement: log-softmax and KL divergence from logits. */
#ifndef KVTC_EVAL_METRICS_H
#define KVTC_EVAL_METRICS_H

#include <stdint.h>

/* out[i] = x[i] - logsumexp(x), in double. */
void metrics_log_softmax(const float *x, uint32_t n, double *out);

/* KL(softmax(ref) || softmax(got)) in nats, clamped at 0 against rounding.
 * lp_ref and lp_got are scratch of n doubles and receive the two
 * log-softmaxes. */
double metrics_kl(const float *ref, const float *got, uint32_t n, double *lp_ref, double *lp_got);

/* Index of the largest logit (the first on ties). */
uint32_t metrics_argmax(const float *x, uint32_t n);

#endif
