/* test_calibrate_model_text.c - `kvtc calibrate --model M` without --text
 * calibrates on the shipped mixed-domain text and says so: from the build
 * tree on data/calibration-mixed.txt (the basis is byte-identical to one
 * calibrated with that --text), and from an installed layout (bin/kvtc next
 * to share/kvtc/) on the installed copy, which takes precedence. A window
 * that leaves no calibration rows is a one-line error, not a silent exit, and
 * an -o that cannot be written, or that names an input (the default text
 * too), fails before any work. Uses
 * stories260K at a 384-token context ($KVTC_CLI, set by CMake). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test.h"

static char g_dir[64];

/* Runs "BIN ARGS" with stderr in g_dir/err.txt; the exit status, -1 for a
 * crash or a sanitizer report. */
static int run(const char *bin, const char *args) {
    char cmd[2048], p[128];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s/err.txt'", bin, args, g_dir);
    snprintf(p, sizeof p, "%s/err.txt", g_dir);
    return test_system_checked(cmd, p);
}

/* whether the last run's stderr holds needle; loud: say so when it does not */
static int err_contains(const char *needle, int loud) {
    char p[128];
    size_t n;
    snprintf(p, sizeof p, "%s/err.txt", g_dir);
    char *b = test_read_file(p, &n);
    int ok = b && strstr(b, needle);
    if (!ok && loud) fprintf(stderr, "stderr lacks \"%s\": %s\n", needle, b ? b : "(none)");
    free(b);
    return ok;
}
static int err_has(const char *needle) { return err_contains(needle, 1); }
/* err_has without the complaint, for what must be absent */
static int err_has_quiet(const char *needle) { return err_contains(needle, 0); }

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* Writes the first n bytes of src to dst (mode 0755 when exec). */
static int copy_file(const char *src, const char *dst, size_t n, int exec) {
    size_t len;
    char *b = test_read_file(src, &len);
    FILE *f = b ? fopen(dst, "wb") : NULL;
    int ok = f && fwrite(b, 1, n && n < len ? n : len, f) == (n && n < len ? n : len);
    if (f && fclose(f) != 0) ok = 0;
    free(b);
    return ok && (!exec || chmod(dst, 0755) == 0) ? 0 : -1;
}

int main(void) {
    const char *cli = getenv("KVTC_CLI") ? getenv("KVTC_CLI") : "build/kvtc";
    const char *opts = "--model data/stories260K.gguf --plain --windows 2 --ctx 384 --ratio 20";
    snprintf(g_dir, sizeof g_dir, "/tmp/kvtc_caltext_XXXXXX");
    if (!mkdtemp(g_dir)) { CHECK(0); return TEST_REPORT(); }
    char a[1024], p[256], q[256];

    /* from the build tree: the source tree's data/calibration-mixed.txt */
    snprintf(a, sizeof a, "calibrate -o %s/default.basis %s", g_dir, opts);
    CHECK(run(cli, a) == 0 && err_has("no --text: calibrating on the mixed-domain text") &&
          err_has("/data/calibration-mixed.txt"));
    snprintf(a, sizeof a, "calibrate -o %s/explicit.basis %s --text data/calibration-mixed.txt", g_dir, opts);
    CHECK(run(cli, a) == 0);
    snprintf(p, sizeof p, "%s/default.basis", g_dir);
    snprintf(q, sizeof q, "%s/explicit.basis", g_dir);
    CHECK(same_file(p, q));

    /* an installed layout: PREFIX/bin/kvtc reads PREFIX/share/kvtc/, here a
     * different text (the start of Persuasion), so the basis tells which */
    snprintf(p, sizeof p, "%s/bin", g_dir);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/share", g_dir);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/share/kvtc", g_dir);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/bin/kvtc", g_dir);
    CHECK(copy_file(cli, p, 0, 1) == 0);
    snprintf(q, sizeof q, "%s/share/kvtc/calibration-mixed.txt", g_dir);
    CHECK(copy_file("data/persuasion.txt", q, 40000, 0) == 0);
    snprintf(a, sizeof a, "calibrate -o %s/installed.basis %s", g_dir, opts);
    CHECK(run(p, a) == 0 && err_has(q));
    /* -o naming the default text (no --text given) is refused like any
     * input's: it used to replace the shipped text with the basis */
    snprintf(a, sizeof a, "calibrate -o %s %s", q, opts);
    CHECK(run(p, a) == 2 && err_has("is the input"));
    snprintf(a, sizeof a, "%s/persuasion_head.txt", g_dir);
    CHECK(copy_file("data/persuasion.txt", a, 40000, 0) == 0 && same_file(a, q));
    snprintf(a, sizeof a, "calibrate -o %s/installed_explicit.basis %s --text %s", g_dir, opts, q);
    CHECK(run(cli, a) == 0);
    snprintf(p, sizeof p, "%s/installed.basis", g_dir);
    snprintf(q, sizeof q, "%s/installed_explicit.basis", g_dir);
    CHECK(same_file(p, q));
    snprintf(q, sizeof q, "%s/default.basis", g_dir);
    CHECK(!same_file(p, q));

    /* more --sens-windows than the text holds: measured on what it holds, and said */
    snprintf(p, sizeof p, "%s/short.txt", g_dir);
    CHECK(copy_file("data/persuasion.txt", p, 2000, 0) == 0);
    snprintf(a, sizeof a, "calibrate -o %s/sens.basis --model data/stories260K.gguf --text %s --windows 1 --ctx 384 "
             "--ratio 20 --sensitivity --recompute-layers 0 --sens-windows 1000", g_dir, p);
    CHECK(run(cli, a) == 0 && err_has("measuring sensitivity on ") && err_has(", not --sens-windows 1000"));

    /* a ratio that leaves no bit per token (stories260K: 320 K and V values,
     * 2 more units for the token id with a recomputed layer) is a usage error
     * before the work, not "data without variance" after it; the bound works */
    snprintf(a, sizeof a, "calibrate -o %s/r.basis --model data/stories260K.gguf --text %s --windows 1 --ctx 384 "
             "--plain --ratio 321", g_dir, p);
    CHECK(run(cli, a) == 2 && err_has("--ratio 321 leaves no bit to code a token") && err_has("at most 320"));
    snprintf(a, sizeof a, "calibrate -o %s/r.basis --model data/stories260K.gguf --text %s --windows 1 --ctx 384 "
             "--ratio 20 --ratio 1e308", g_dir, p);
    CHECK(run(cli, a) == 2 && err_has("at most 106.666"));
    snprintf(a, sizeof a, "calibrate -o %s/r.basis --model data/stories260K.gguf --text %s --windows 1 --ctx 384 "
             "--plain --ratio 320", g_dir, p);
    CHECK(run(cli, a) == 0);
    snprintf(a, sizeof a, "calibrate -o %s/r.basis --model data/stories260K.gguf --text %s --windows 1 --ctx 384 "
             "--recompute-layers 1 --sens-windows 1 --ratio 106.666", g_dir, p);
    CHECK(run(cli, a) == 0);

    /* sensitivity options without sensitivity (--plain) were ignored silently */
    snprintf(a, sizeof a, "calibrate -o %s/pl.basis %s --sens-bands 4", g_dir, opts);
    CHECK(run(cli, a) == 2 && err_has("need --model (and not --plain)"));
    snprintf(a, sizeof a, "calibrate -o %s/pl.basis %s --sens-windows 3", g_dir, opts);
    CHECK(run(cli, a) == 2 && err_has("need --model (and not --plain)"));

    /* 128-token windows minus 4 sinks and 128 window tokens: no rows */
    snprintf(a, sizeof a, "calibrate -o %s/none.basis --model data/stories260K.gguf --plain --windows 2 --ctx 128", g_dir);
    CHECK(run(cli, a) == 1 && err_has("no calibration rows"));
    snprintf(p, sizeof p, "%s/none.basis", g_dir);
    struct stat st;
    CHECK(stat(p, &st) != 0); /* not written */

    /* an output that cannot be written is refused before the calibration
     * (which can take minutes), with where and why */
    snprintf(a, sizeof a, "calibrate -o %s/missing/x.basis %s", g_dir, opts);
    CHECK(run(cli, a) == 1 && err_has("cannot write") && err_has("/missing does not exist"));
    CHECK(!err_has_quiet("calibrating on"));
    snprintf(a, sizeof a, "calibrate -o %s %s", g_dir, opts);
    CHECK(run(cli, a) == 1 && err_has("is a directory"));

    /* -o naming an input (the model, the text, through another path) is refused, the input untouched */
    snprintf(p, sizeof p, "%s/model.gguf", g_dir);
    CHECK(copy_file("data/stories260K.gguf", p, 0, 0) == 0);
    snprintf(q, sizeof q, "%s/text.txt", g_dir);
    CHECK(copy_file("data/persuasion.txt", q, 40000, 0) == 0);
    snprintf(a, sizeof a, "calibrate -o %s --model %s --text %s --plain --windows 1 --ctx 384", p, p, q);
    CHECK(run(cli, a) == 2 && err_has("is the input"));
    CHECK(same_file(p, "data/stories260K.gguf"));
    snprintf(a, sizeof a, "calibrate -o %s/./text.txt --model %s --text %s --plain --windows 1 --ctx 384", g_dir, p, q);
    CHECK(run(cli, a) == 2 && err_has("is the input"));
    snprintf(p, sizeof p, "%s/ref.txt", g_dir);
    CHECK(copy_file("data/persuasion.txt", p, 40000, 0) == 0 && same_file(p, q));

    snprintf(a, sizeof a, "rm -rf '%s'", g_dir);
    CHECK(system(a) == 0);
    return TEST_REPORT();
}
