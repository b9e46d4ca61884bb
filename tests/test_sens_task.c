/* test_sens_task.c - kvtc calibrate --sens-task / --sens-copy-frac (issue
 * 16): sensitivity measured on copy-random probes instead of perplexity
 * windows. On the small stories260K model (fast): bad values are usage errors
 * (exit 2, one line, no output file); --sens-copy-frac 0 gives the default
 * (perplexity) weights exactly; copy-random probes give other weights; and a
 * mix is (1-F) * ppl + F * copy with each scaled to a mean of 1, checked on
 * the weights stored in the bases (the basis stores their square roots). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test.h"

static const char *cli;
static char dir[] = "/tmp/kvtc-test-sens-XXXXXX";
#define MODEL "data/stories260K.gguf"
#define TEXT "data/persuasion.txt"
#define BASE "--ctx 256 --windows 1 --sens-windows 1 --window 32 --recompute-layers 0 --ratio 8"

/* kvtc calibrate ARGS -o DIR/OUT; the exit status (-1 if it did not exit). */
static int calibrate(const char *args, const char *out, int *stderr_lines) {
    char cmd[2048], err[512];
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(cmd, sizeof cmd, "%s calibrate --model %s --text %s %s -o %s/%s 2>%s", cli, MODEL, TEXT, args, dir, out,
             err);
    int rc = system(cmd);
    if (stderr_lines) {
        size_t n = 0;
        char *buf = test_read_file(err, &n);
        *stderr_lines = 0;
        for (size_t i = 0; buf && i < n; i++) *stderr_lines += buf[i] == '\n';
        free(buf);
    }
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The distortion weights of a basis: k.weight then v.weight, squared (the
 * basis stores sqrt(w)). Returns the count, 0 on failure. */
static size_t read_weights(const char *name, double *w, size_t cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t n = 0, got = 0;
    char *buf = test_read_file(path, &n);
    st_file f;
    if (!buf || st_parse(buf, n, &f)) { free(buf); return 0; }
    const char *names[] = {"k.weight", "v.weight"};
    for (int s = 0; s < 2; s++) {
        const st_tensor *t = st_find(&f, names[s]);
        if (!t || t->dtype != ST_F32 || got + t->n_elements > cap) { got = 0; break; }
        for (uint64_t i = 0; i < t->n_elements; i++) {
            float x;
            memcpy(&x, (const char *)t->data + 4 * i, 4);
            w[got++] = (double)x * x;
        }
    }
    st_file_free(&f);
    free(buf);
    return got;
}

static double mean(const double *w, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += w[i];
    return s / n;
}

static void test_usage_errors(void) {
    const char *bad[] = {
        "--sens-task summarize",                      /* unknown task */
        "--sens-copy-frac 1.5", "--sens-copy-frac -0.1", "--sens-copy-frac x",
        "--sens-task copy-random --sens-copy-frac 0.5", /* both */
        "--plain --sens-task copy-random",              /* no sensitivity to measure */
        "--sens-task copy-random --sens-copy-windows 0", "--sens-task copy-random --sens-copy-distance 0",
        "--sens-copy-windows 4", "--sens-task ppl --sens-copy-distance 128", /* copy options without copy probes */
        /* the first copy must lie in the compressed region: passage 64 + window 32 <= distance <= 256-64-4-1 */
        "--sens-task copy-random --sens-copy-distance 90", "--sens-task copy-random --sens-copy-distance 188",
        /* ctx/8 = 32 by default, too short at this context */
        "--sens-task copy-random",
        /* a count that would run for days is refused, not started */
        "--sens-task copy-random --sens-copy-distance 128 --sens-copy-windows 1000000000",
        "--sens-task copy-random --sens-copy-distance 128 --sens-copy-windows 10001",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[512];
        int lines = 0;
        snprintf(args, sizeof args, BASE " %s", bad[i]);
        int rc = calibrate(args, "bad.safetensors", &lines);
        CHECK_MSG(rc == 2 && lines == 1, "%s: exit %d with %d stderr lines, want 2 and 1", bad[i], rc, lines);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    CHECK(access(path, F_OK) != 0);
    /* the options need a model: with cache files they are usage errors */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s calibrate -o %s/bad.safetensors --sens-task copy-random x.safetensors 2>/dev/null",
             cli, dir);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    /* a layout that does not fit says where the distance must lie, in numbers:
     * passage 64 + window 32 = 96 .. 256 - 64 - 4 - 1 = 187 */
    CHECK(calibrate(BASE " --sens-task copy-random", "bad.safetensors", NULL) == 2);
    snprintf(path, sizeof path, "%s/err", dir);
    size_t n = 0;
    char *err = test_read_file(path, &n);
    CHECK_MSG(err && strstr(err, "the distance 32 must be in [96, 187]") && strstr(err, "--sens-copy-distance"),
              "message: %s", err ? err : "(none)");
    free(err);
    /* documented in --help */
    snprintf(cmd, sizeof cmd, "%s calibrate --help | grep -q -- --sens-copy-frac", cli);
    CHECK(system(cmd) == 0);
}

static void test_weights(void) {
    enum { CAP = 1 << 16 };
    double *dflt = malloc(sizeof(double) * CAP), *ppl = malloc(sizeof(double) * CAP);
    double *copy = malloc(sizeof(double) * CAP), *mix = malloc(sizeof(double) * CAP);
    CHECK(calibrate(BASE, "default.safetensors", NULL) == 0);
    CHECK(calibrate(BASE " --sens-copy-frac 0", "ppl.safetensors", NULL) == 0);
    CHECK(calibrate(BASE " --sens-task copy-random --sens-copy-distance 128 --sens-copy-windows 2", "copy.safetensors",
                    NULL) == 0);
    CHECK(calibrate(BASE " --sens-copy-frac 0.25 --sens-copy-distance 128 --sens-copy-windows 2", "mix.safetensors",
                    NULL) == 0);
    size_t n = read_weights("default.safetensors", dflt, CAP);
    CHECK_MSG(n > 0, "no weights in the default basis");
    CHECK(read_weights("ppl.safetensors", ppl, CAP) == n);
    CHECK(read_weights("copy.safetensors", copy, CAP) == n);
    CHECK(read_weights("mix.safetensors", mix, CAP) == n);
    if (n == 0 || read_weights("mix.safetensors", mix, CAP) != n || read_weights("copy.safetensors", copy, CAP) != n) {
        free(dflt); free(ppl); free(copy); free(mix);
        return;
    }
    /* share 0 is the default, bit for bit; the copy probes weigh otherwise */
    CHECK(memcmp(dflt, ppl, sizeof(double) * n) == 0);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += fabs(copy[i] - ppl[i]) > 1e-3 * ppl[i];
    CHECK_MSG(differ > n / 4, "copy-random weights differ from ppl weights in only %zu of %zu", differ, n);
    /* the mix: each task scaled to a mean of 1 over all coordinates */
    double mp = mean(ppl, n), mc = mean(copy, n), worst = 0;
    size_t checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (ppl[i] <= 1e-10 || copy[i] <= 1e-10) continue; /* floored, insensitive coordinates */
        double want = 0.75 * ppl[i] / mp + 0.25 * copy[i] / mc, rel = fabs(mix[i] - want) / want;
        if (rel > worst) worst = rel;
        checked++;
    }
    CHECK_MSG(checked > n / 2 && worst < 1e-4, "mix off by %.3g (relative) over %zu of %zu weights", worst, checked, n);
    free(dflt); free(ppl); free(copy); free(mix);
}

int main(void) {
    cli = getenv("KVTC_CLI");
    if (!cli) cli = "build/kvtc";
    CHECK(mkdtemp(dir) != NULL);
    double t0 = test_now();
    test_usage_errors();
    test_weights();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    fprintf(stderr, "test_sens_task: %.1f s\n", test_now() - t0);
    return TEST_REPORT();
}
