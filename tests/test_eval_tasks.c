/* test_eval_tasks.c - kvtc eval on a model of another shape (stories260K:
 * head_dim 8, 4 KV heads) and the retrieval tasks (--task copy|recall):
 * every method runs (no baseline fails on narrow heads), the tables have the
 * rows they promise, standard errors are reported, the harness restores an
 * untouched cache exactly, copy-random scores a passage of random tokens
 * (deterministically, harder to guess than text), and bad task options are
 * usage errors. Runs the CLI (KVTC_CLI) with --json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "test.h"

static const char *cli;
static char dir[] = "/tmp/kvtc-test-tasks-XXXXXX";
#define MODEL "data/stories260K.gguf"
#define TEXT "data/persuasion.txt"

/* Run `kvtc eval ARGS --json`, parse its output; NULL when it fails. */
static json_value *run_eval(const char *args) {
    char cmd[2048], path[512];
    snprintf(path, sizeof path, "%s/out.json", dir);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --text %s %s --json >%s 2>%s/err", cli, MODEL, TEXT, args, path,
             dir);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s", cmd);
    if (rc) return NULL;
    size_t n = 0;
    char *buf = test_read_file(path, &n);
    json_value *v = buf ? json_parse(buf, n, NULL) : NULL;
    CHECK_MSG(v != NULL, "output of %s does not parse", cmd);
    free(buf);
    return v;
}

static double num(const json_value *o, const char *key) {
    const json_value *v = json_get(o, key);
    return v && v->type == JSON_NUMBER ? v->number : NAN;
}

static const char *str(const json_value *o, const char *key) {
    const json_value *v = json_get(o, key);
    return v && v->type == JSON_STRING ? v->string : "";
}

/* ppl on head_dim 8: all five baselines run, with the block formats' exact ratios. */
static void test_narrow_model_ppl(void) {
    json_value *r = run_eval("--ctx 256 --windows 2 --window 32");
    const json_value *ms = r ? json_get(r, "methods") : NULL;
    CHECK(ms && ms->type == JSON_ARRAY && ms->n == 6);
    for (size_t i = 0; ms && i < ms->n; i++) {
        const json_value *m = &ms->items[i];
        const char *name = str(m, "name");
        if (!strcmp(name, "q8_0")) CHECK(num(m, "compression_ratio") > 1.88 && num(m, "compression_ratio") < 1.89);
        if (!strcmp(name, "q4_0")) CHECK(num(m, "compression_ratio") > 3.55 && num(m, "compression_ratio") < 3.56);
        if (!strcmp(name, "uncompressed"))
            CHECK(num(m, "kld") == 0.0 && num(m, "top1_se") == 0.0 && num(m, "ppl_change_se") == 0.0);
        CHECK(num(m, "top1") >= 0.5 && num(m, "top1") <= 1.0);
        /* standard errors over the 2 windows: present, finite, non-negative */
        CHECK(num(m, "top1_se") >= 0.0 && num(m, "kld_se") >= 0.0 && num(m, "ppl_change_se") >= 0.0);
        if (!strcmp(name, "q4_0")) CHECK(num(m, "kld_se") > 0.0);
    }
    json_free(r);
}

/* copy: (methods + control) x distances rows; f16 and the untouched cache agree. */
static void test_copy_rows(void) {
    json_value *r = run_eval("--task copy --ctx 512 --windows 2 --window 32 --passage 24 --distances 100,400");
    const json_value *rows = r ? json_get(r, "rows") : NULL;
    CHECK(rows && rows->type == JSON_ARRAY && rows->n == 7 * 2);
    CHECK(r && !strcmp(str(r, "task"), "copy"));
    double acc_none = -1, acc_f16 = -2;
    int hidden = 0;
    for (size_t i = 0; rows && i < rows->n; i++) {
        const json_value *x = &rows->items[i];
        double acc = num(x, "accuracy"), se = num(x, "accuracy_se");
        CHECK(acc >= 0 && acc <= 1 && se >= 0 && num(x, "nll") > 0 && num(x, "trials") == 2);
        CHECK(num(x, "distance") == num(x, "point"));
        /* the per-trial scores (for paired differences) average to the row's accuracy */
        const json_value *pt = json_get(x, "per_trial");
        CHECK(pt && pt->type == JSON_ARRAY && pt->n == 2);
        if (pt && pt->type == JSON_ARRAY && pt->n == 2)
            CHECK_MSG(fabs((pt->items[0].number + pt->items[1].number) / 2 - acc) < 1e-5, "per_trial vs %.6f", acc);
        if (num(x, "point") != 400) continue;
        if (!strcmp(str(x, "name"), "uncompressed")) acc_none = acc;
        if (!strcmp(str(x, "name"), "f16")) acc_f16 = acc;
        hidden += strstr(str(x, "name"), "hidden") != NULL;
    }
    CHECK(hidden == 1);
    CHECK_MSG(fabs(acc_none - acc_f16) < 0.05, "uncompressed %.3f vs f16 %.3f", acc_none, acc_f16);
    json_free(r);
}

/* The NLL of the row named name at distance point; NAN when absent. */
static double row_nll(const json_value *r, const char *name, double point) {
    const json_value *rows = r ? json_get(r, "rows") : NULL;
    for (size_t i = 0; rows && rows->type == JSON_ARRAY && i < rows->n; i++)
        if (!strcmp(str(&rows->items[i], "name"), name) && num(&rows->items[i], "point") == point)
            return num(&rows->items[i], "nll");
    return NAN;
}

/* copy-random: the copy layout with a random-token passage. Its rows are the
 * copy rows; the same seeds give the same numbers twice; without the first
 * copy (hidden) random tokens are far harder to predict than the text that
 * the natural copy task scores (a random draw from the text's tokens has no
 * left context to go by), which shows the passage really is random tokens. */
static void test_copy_random(void) {
    const char *args = "--task copy-random --ctx 512 --windows 2 --window 32 --passage 24 --distances 100,400 "
                       "--no-baselines";
    json_value *r = run_eval(args), *again = run_eval(args);
    json_value *natural = run_eval("--task copy --ctx 512 --windows 2 --window 32 --passage 24 --distances 100,400 "
                                   "--no-baselines");
    const json_value *rows = r ? json_get(r, "rows") : NULL;
    CHECK(r && !strcmp(str(r, "task"), "copy-random"));
    CHECK(rows && rows->type == JSON_ARRAY && rows->n == 2 * 2);
    for (size_t i = 0; rows && i < rows->n; i++) {
        const json_value *x = &rows->items[i];
        CHECK(num(x, "accuracy") >= 0 && num(x, "accuracy") <= 1 && num(x, "trials") == 2);
        CHECK(num(x, "distance") == num(x, "point"));
    }
    for (double d = 100; d <= 400; d += 300) {
        const char *names[] = {"uncompressed", "hidden (passage replaced)"};
        for (int k = 0; k < 2; k++)
            CHECK_MSG(row_nll(r, names[k], d) == row_nll(again, names[k], d), "%s at %g: not deterministic",
                      names[k], d);
        double hr = row_nll(r, names[1], d), hn = row_nll(natural, names[1], d);
        CHECK_MSG(hr > hn + 1.0, "distance %g: hidden NLL %.3f (random) vs %.3f (text)", d, hr, hn);
    }
    json_free(r);
    json_free(again);
    json_free(natural);
}

/* The per_trial scores of the row named name at distance point (NULL if absent). */
static const json_value *row_trials(const json_value *r, const char *name, double point) {
    const json_value *rows = r ? json_get(r, "rows") : NULL;
    for (size_t i = 0; rows && rows->type == JSON_ARRAY && i < rows->n; i++)
        if (!strcmp(str(&rows->items[i], "name"), name) && num(&rows->items[i], "point") == point)
            return json_get(&rows->items[i], "per_trial");
    return NULL;
}

/* --trials beyond --windows: trial t reuses window t mod windows with its own
 * random passage, so 3 trials over 1 window give 3 scores whose first is the
 * first trial of a plain 2-window run (same window, same seed). */
static void test_trials_beyond_windows(void) {
    const char *tail = "--task copy-random --ctx 512 --window 32 --passage 24 --distances 100 --no-baselines";
    char args[256];
    snprintf(args, sizeof args, "--windows 1 --trials 3 %s", tail);
    json_value *r = run_eval(args);
    snprintf(args, sizeof args, "--windows 2 %s", tail);
    json_value *plain = run_eval(args);
    const char *names[] = {"uncompressed", "hidden (passage replaced)"};
    for (int k = 0; k < 2; k++) {
        const json_value *a = row_trials(r, names[k], 100), *b = row_trials(plain, names[k], 100);
        CHECK_MSG(a && a->type == JSON_ARRAY && a->n == 3, "%s: 3 trials over 1 window", names[k]);
        CHECK(b && b->type == JSON_ARRAY && b->n == 2);
        if (a && b && a->n == 3 && b->n == 2)
            CHECK_MSG(a->items[0].number == b->items[0].number, "%s: trial 0 %.6f vs %.6f", names[k],
                      a->items[0].number, b->items[0].number);
    }
    json_free(r);
    json_free(plain);
}

/* recall: exact match and answer-token scores in [0, 1], distance reported. */
static void test_recall_rows(void) {
    json_value *r = run_eval("--task recall --ctx 512 --windows 2 --window 32 --depths 0.2,0.8 --no-baselines");
    const json_value *rows = r ? json_get(r, "rows") : NULL;
    CHECK(rows && rows->type == JSON_ARRAY && rows->n == 2 * 2);
    for (size_t i = 0; rows && i < rows->n; i++) {
        const json_value *x = &rows->items[i];
        CHECK(num(x, "exact_match") >= 0 && num(x, "exact_match") <= 1);
        CHECK(num(x, "answer_tokens") >= num(x, "exact_match"));
        CHECK(num(x, "distance") > 32 && num(x, "distance") < 512);
    }
    /* deeper needle (later in the context) -> shorter distance to the question */
    if (rows && rows->n == 4) CHECK(num(&rows->items[0], "distance") > num(&rows->items[1], "distance"));
    json_free(r);
}

static void test_usage_errors(void) {
    const char *bad[] = {"--task summarize", "--task copy --ctx 512 --distances 20",
                         "--task copy --ctx 512 --distances 600", "--task recall --depths 1.5",
                         "--task copy --passage 1", "--task copy-random --passage 1",
                         "--task copy-random --ctx 512 --distances 600", "--task copy-random --trials 0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s eval --model %s --text %s %s >/dev/null 2>&1", cli, MODEL, TEXT, bad[i]);
        int rc = system(cmd);
        CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "%s: exit %d", bad[i], WEXITSTATUS(rc));
    }
}

/* Hostile numbers and names: exit 2 with one line that names the option, before
 * any model work (each of these ran for hours, asked for terabytes, named the
 * value instead of the option, wrote a JSON string with a raw quote, or
 * printed two rows of one name). */
static void test_hostile_options(void) {
    static const struct {
        const char *args, *says;
    } bad[] = {
        {"--task copy-random --ctx 512 --distances 200 --trials 1000000000", "--trials needs a count 1..10000"},
        {"--task copy-random --ctx 512 --distances 200 --trials 10001", "--trials needs a count 1..10000"},
        {"--task copy-random --ctx 512 --distances nan", "--distances takes up to 16 numbers, comma separated, not 'nan'"},
        {"--task recall --ctx 512 --depths=0.5,x", "--depths takes up to 16 numbers, comma separated, not '0.5,x'"},
        {"--task copy --ctx 512 --basis 'a\"b=x.basis'", "NAME must be 1-31 letters"},
        {"--task copy --ctx 512 --basis =x.basis", "NAME must be 1-31 letters"},
        /* ctx/8, ctx/2 and ctx-passage-sinks-1 all lie before passage + window: said, not "1 to 16 distances" */
        {"--task copy --ctx 256", "no default copy distance fits a context of 256"},
        /* hostile sizes wrapped in 32 bits: a default was let through, then refused as if given */
        {"--task copy-random --ctx 512 --passage 4294967295", "no default copy distance fits a context of 512"},
        {"--task copy-random --ctx 512 --sink 4294967295", "no default copy distance fits a context of 512"},
        {"--task copy-random --ctx 512 --window 4294967295", "no default copy distance fits a context of 512"},
        /* a raw window as long as the prefix: nothing compressed, every row "lossless" at ratio 0 */
        {"--ctx 256 --plot " TEXT, "is an input"}, /* the plot would replace the text */
        {"--ctx 256 --ratios ,", "--ratios takes up to 16 numbers > 1"}, /* no ratio: a basis with no row */
        {"--ctx 256 --window 4000000000", "leave no token to compress in a prefix of 192"},
        {"--ctx 256 --sink 100 --window 92", "leave no token to compress"},
        /* 6 rows of baselines + 16 ratios x 4 emulation variants: more rows than the table holds */
        {"--ctx 256 --basis data/none.basis --ratios 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17 --emulate-gpu bf16,fp8,fp8dec",
         "exceed 64 methods"},
        {"--task copy --ctx 512 --basis 0123456789012345678901234567890123=x.basis", "NAME must be 1-31 letters"},
        /* rows of one name cannot be told apart (two unnamed bases are both "kvtc") */
        {"--ctx 256 --basis a.basis --basis b.basis", "two bases are named 'kvtc'"},
        {"--task copy-random --ctx 512 --basis x=a.basis --basis x=b.basis", "two bases are named 'x'"},
        {"--ctx 256 --basis a.basis --ratios 20,16,20.0", "--ratios lists 20 twice"},
        {"--ctx 256 --basis a.basis --emulate-gpu fp8,bf16,fp8", "--emulate-gpu lists fp8 twice"},
        {"--task copy-random --ctx 512 --distances 200,250,200", "--distances lists 200 twice"},
        {"--task recall --ctx 512 --depths 0.5,0.50", "--depths lists 0.5 twice"},
        /* options the task would ignore, or read as another option */
        {"--task copy-random --ctx 512 --depths 200", "--depths is not an option of --task copy-random"},
        {"--task recall --ctx 512 --distances 200", "--distances is not an option of --task recall"},
        {"--ctx 256 --distances 200", "--distances is not an option of --task ppl"},
        {"--ctx 256 --trials 24", "--trials is not an option of --task ppl"},
        {"--task recall --ctx 512 --passage 32", "--passage is not an option of --task recall"},
        {"--task copy --ctx 512 --prefix 0.5", "--prefix is an option of --task ppl only"},
        {"--task recall --ctx 512 --plot x.png", "--plot is an option of --task ppl only"},
    };
    char path[512];
    snprintf(path, sizeof path, "%s/err", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s eval --model %s --text %s %s >/dev/null 2>%s", cli, MODEL, TEXT, bad[i].args,
                 path);
        int rc = system(cmd);
        size_t n = 0;
        char *err = test_read_file(path, &n);
        size_t lines = 0;
        for (size_t j = 0; err && j < n; j++) lines += err[j] == '\n';
        CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 2 && lines == 1 && strstr(err, bad[i].says),
                  "%s: exit %d, stderr: %s", bad[i].args, WEXITSTATUS(rc), err ? err : "(none)");
        free(err);
    }
    /* a --plot that cannot be written fails before the evaluation, not after */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s eval --model %s --text %s --ctx 256 --windows 1 --plot %s/missing/p.png >/dev/null 2>%s",
             cli, MODEL, TEXT, dir, path);
    int rc = system(cmd);
    size_t n = 0;
    char *err = test_read_file(path, &n);
    CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 1 && err && strstr(err, "--plot: cannot write") &&
                  strstr(err, "does not exist") && !strstr(err, "window"),
              "--plot into a missing directory: exit %d, %s", WEXITSTATUS(rc), err ? err : "(none)");
    free(err);
}

/* More --windows than the text holds: evaluated on what it holds, and said
 * (the tables used to hold fewer samples than asked, silently). */
static void test_windows_beyond_text(void) {
    char text[512], cmd[2048], err[512];
    snprintf(text, sizeof text, "%s/short.txt", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    size_t n = 0;
    char *buf = test_read_file(TEXT, &n);
    FILE *f = buf ? fopen(text, "wb") : NULL;
    CHECK(f && fwrite(buf, 1, n < 6000 ? n : 6000, f) == (n < 6000 ? n : 6000));
    if (f) fclose(f);
    free(buf);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --text %s --ctx 512 --windows 1000 --task recall --depths 0.5 "
             "--no-baselines --json >/dev/null 2>%s", cli, MODEL, text, err);
    CHECK(system(cmd) == 0);
    char *e = test_read_file(err, &n);
    CHECK_MSG(e && strstr(e, "window(s) of 512 tokens: evaluating ") && strstr(e, ", not --windows 1000"),
              "stderr: %s", e ? e : "(none)");
    free(e);
}

/* A binary --text (here the model itself) is refused by eval and calibrate,
 * not tokenized into byte tokens and scored. */
static void test_binary_text(void) {
    char cmd[2048], err[512];
    snprintf(err, sizeof err, "%s/err", dir);
    const char *runs[] = {"eval --model " MODEL " --text " MODEL " --ctx 256 --windows 1",
                          "calibrate --model " MODEL " --text " MODEL " --ctx 256 --windows 1 -o %s/b.basis"};
    for (int i = 0; i < 2; i++) {
        char args[512];
        snprintf(args, sizeof args, runs[i], dir);
        snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", cli, args, err);
        int rc = system(cmd);
        size_t n = 0;
        char *e = test_read_file(err, &n);
        CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 1 && e && strstr(e, "is not a text file (a NUL byte at offset"),
                  "%s: exit %d, stderr: %s", args, WEXITSTATUS(rc), e ? e : "(none)");
        free(e);
    }
}

int main(void) {
    cli = getenv("KVTC_CLI");
    if (!cli) cli = "build/kvtc";
    CHECK(mkdtemp(dir) != NULL);
    test_narrow_model_ppl();
    test_copy_rows();
    test_copy_random();
    test_trials_beyond_windows();
    test_recall_rows();
    test_usage_errors();
    test_hostile_options();
    test_windows_beyond_text();
    test_binary_text();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return TEST_REPORT();
}
