/* metrics.c - see metrics.h. */
#include "eval/metrics.h"

#include <math.h>

void metrics_log_softmax(const float *x, uint32_t n, double *out) {
    double mx = x[0];
    for (uint32_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (uint32_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (uint32_t i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

double metrics_kl(const float *ref, const float *got, uint32_t n, double *lp_ref, double *lp_got) {
    metrics_log_softmax(ref, n, lp_ref);
    metrics_log_softmax(got, n, lp_got);
    double kl = 0;
    for (uint32_t j = 0; j < n; j++) kl += exp(lp_ref[j]) * (lp_ref[j] - lp_got[j]);
    return kl > 0 ? kl : 0;
}

uint32_t metrics_argmax(const float *x, uint32_t n) {
    uint32_t b = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}
