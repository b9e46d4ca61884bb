/* bench_dp.c - timing of dp_stats_compute and dp_solve (single thread).
 *
 * Usage: bench_dp [n_rows]   (default 4096)
 * Prints one table row per case, times in ms (best of a few repetitions). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "alloc/dp.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static uint64_t rs = 88172645463325252ull;
static double unif(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) * 0x1p-53;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4096;
    static const uint32_t ps[] = {1024, 8192};
    printf("%-14s %6s %6s %10s %10s %12s\n", "op", "p", "n", "units", "ms", "MB");
    for (size_t t = 0; t < 2; t++) {
        uint32_t p = ps[t];
        float *d = malloc((size_t)n * p * sizeof(float));
        if (!d) return 1;
        for (uint64_t r = 0; r < n; r++)
            for (uint32_t i = 0; i < p; i++)
                d[r * p + i] = (float)((unif() * 2 - 1) * 10.0 / sqrt(1.0 + i));
        dp_stats st;
        double best = INFINITY;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now_ms();
            if (dp_stats_compute(d, n, p, p, &st) != KVTC_OK) return 1;
            double t1 = now_ms() - t0;
            if (t1 < best) best = t1;
            if (rep < 2) dp_stats_free(&st);
        }
        printf("%-14s %6u %6llu %10s %10.1f %12.1f\n", "stats", p, (unsigned long long)n, "-", best,
               (double)p * 5 * 8 / 1e6);
        free(d);
        uint64_t units[2] = {2ull * p / 16, 2ull * p / 8};
        for (int u = 0; u < 2; u++) {
            dp_curve cv;
            best = INFINITY;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now_ms();
                if (dp_solve(&st, units[u], 0xF, 1, &cv) != KVTC_OK) return 1;
                double t1 = now_ms() - t0;
                if (t1 < best) best = t1;
                if (rep < 2) dp_curve_free(&cv);
            }
            uint64_t w = units[u] + 1;
            uint64_t ring = (p >= 1024 ? 1025 : p + 1) * (units[u] < p ? w : p + 1ull) * 8;
            double mb = ((double)(p + 1) * w + (double)ring + 16.0 * w) / 1e6;
            dp_plan pl;
            double t0 = now_ms();
            if (dp_plan_extract(&cv, &st, units[u] / 2, &pl) != KVTC_OK) return 1;
            double te = now_ms() - t0;
            printf("%-14s %6u %6s %10llu %10.1f %12.1f   (extract %.3f ms, %u groups, err %.4g)\n",
                   "solve", p, "-", (unsigned long long)units[u], best, mb, te, pl.n_groups,
                   pl.error);
            dp_plan_free(&pl);
            dp_curve_free(&cv);
        }
        dp_stats_free(&st);
    }
    return 0;
}
