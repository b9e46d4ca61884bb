/* test_eval.c - kvtc eval on one short window of the bundled model: the
 * relations that must hold whatever the exact numbers are. Runs the CLI
 * (KVTC_CLI, set by CMake) and parses its --json output. Also
 * --emulate-gpu (issue 15): one variant per entry next to each KVTC method,
 * the plain method unchanged by it, bf16 within a hair of exact, FP8 off
 * exact by a few percent of KL, an unknown entry refused; --gpu refused by
 * this CPU-only build (tests/cuda/test_cuda_eval.c runs it in kvtc-gpu). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval_json.h"
#include "test.h"

int main(void) {
    const char *cli = getenv("KVTC_CLI");
    if (!cli) cli = "build/kvtc";
    char dir[] = "/tmp/kvtc-test-eval-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cmd[4096];
    const char *M = "data/eval-llama-27m-q8_0.gguf", *T = "data/persuasion.txt";
    snprintf(cmd, sizeof cmd,
             "%s calibrate --model %s --text %s --ctx 256 --windows 2 --window 32 --ratio 8 --ratio 64 "
             "-o %s/basis.safetensors 2>%s/cal.err",
             cli, M, T, dir, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ctx 256 --windows 1 --window 32 --ratios 8,64 "
             "--basis %s/basis.safetensors --json >%s/out.json 2>%s/eval.err",
             cli, M, T, dir, dir, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);

    char path[512];
    snprintf(path, sizeof path, "%s/out.json", dir);
    char *buf = calloc(1, 1 << 20);
    size_t n = eval_slurp(path, buf, 1 << 20);
    json_value *root = json_parse(buf, n, NULL);
    CHECK_MSG(root != NULL, "eval --json output does not parse: %.200s", buf);
    const json_value *ms = root ? json_get(root, "methods") : NULL;
    CHECK(ms && ms->type == JSON_ARRAY && ms->n == 8);

    const json_value *none = eval_row(ms, "uncompressed"), *f16 = eval_row(ms, "f16");
    const json_value *q8 = eval_row(ms, "q8_0"), *q4 = eval_row(ms, "q4_0"), *kivi = eval_row(ms, "kivi2");
    const json_value *k8 = eval_row(ms, "kvtc@8"), *k64 = eval_row(ms, "kvtc@64");
    CHECK(none && f16 && q8 && q4 && kivi && k8 && k64);
    /* the harness restores an untouched cache exactly */
    CHECK(eval_num(none, "kld") == 0.0);
    CHECK(eval_num(none, "top1") == 1.0);
    CHECK(eval_num(none, "ppl") == eval_num(root, "reference_ppl"));
    /* more bits, less damage */
    CHECK(eval_num(f16, "kld") < 1e-6);
    CHECK(eval_num(f16, "kld") < eval_num(q8, "kld"));
    CHECK(eval_num(q8, "kld") < eval_num(q4, "kld"));
    CHECK(eval_num(k8, "kld") < eval_num(k64, "kld"));
    /* ratios: the block formats are exact; KVTC reaches its targets */
    CHECK(eval_num(q8, "compression_ratio") > 1.88 && eval_num(q8, "compression_ratio") < 1.89);
    CHECK(eval_num(q4, "compression_ratio") > 3.55 && eval_num(q4, "compression_ratio") < 3.56);
    CHECK(eval_num(kivi, "compression_ratio") > 5.33 && eval_num(kivi, "compression_ratio") < 5.34);
    CHECK_MSG(eval_num(k8, "compression_ratio") >= 7.6, "kvtc@8 ratio %.2f", eval_num(k8, "compression_ratio"));
    CHECK_MSG(eval_num(k64, "compression_ratio") >= 55, "kvtc@64 ratio %.2f", eval_num(k64, "compression_ratio"));
    CHECK(eval_num(k8, "compression_ratio_total") < eval_num(k8, "compression_ratio"));
    for (size_t i = 0; ms && i < ms->n; i++) {
        double kl = eval_num(&ms->items[i], "kld"), t1 = eval_num(&ms->items[i], "top1");
        CHECK(kl >= 0.0 && t1 >= 0.0 && t1 <= 1.0);
    }
    double k8_kld = eval_num(k8, "kld");
    json_free(root);

    /* --emulate-gpu: the same window, kvtc@8 and its variants */
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ctx 256 --windows 1 --window 32 --ratios 8 --no-baselines "
             "--emulate-gpu bf16,fp8 --basis %s/basis.safetensors --json >%s/emu.json 2>%s/emu.err",
             cli, M, T, dir, dir, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/emu.json", dir);
    n = eval_slurp(path, buf, 1 << 20);
    root = json_parse(buf, n, NULL);
    ms = root ? json_get(root, "methods") : NULL;
    CHECK(ms && ms->type == JSON_ARRAY && ms->n == 4);
    const json_value *e0 = eval_row(ms, "kvtc@8"), *eb = eval_row(ms, "kvtc@8/bf16"), *e8 = eval_row(ms, "kvtc@8/fp8");
    CHECK(e0 && eb && e8);
    double kl0 = eval_num(e0, "kld"), klb = eval_num(eb, "kld"), kl8 = eval_num(e8, "kld");
    printf("kvtc@8 KL: exact %.4e, bf16 %.4e, fp8 %.4e\n", kl0, klb, kl8);
    CHECK(kl0 == k8_kld);                          /* the option adds methods, changes none */
    CHECK(klb > 0.95 * kl0 && klb < 1.05 * kl0);   /* bf16 operands: 2^-9 relative */
    CHECK(kl8 != kl0 && kl8 > 0.8 * kl0 && kl8 < 1.5 * kl0); /* e4m3: ~3% rms of the signal */
    json_free(root);
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ratios 8 --emulate-gpu fp16 --basis %s/basis.safetensors "
             ">/dev/null 2>%s/bad.err",
             cli, M, T, dir, dir);
    CHECK(system(cmd) != 0);
    /* --gpu: this (CPU-only) kvtc refuses it as a usage error naming kvtc-gpu,
     * before any work; an unknown projection likewise */
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ratios 8 --gpu fp8 --basis %s/basis.safetensors >/dev/null 2>%s/gpu.err",
             cli, M, T, dir, dir);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(path, sizeof path, "%s/gpu.err", dir);
    n = eval_slurp(path, buf, 1 << 20);
    CHECK_MSG(strstr(buf, "kvtc-gpu") != NULL, "--gpu refusal: %s", buf);
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ratios 8 --gpu fp16 --basis %s/basis.safetensors >/dev/null 2>/dev/null",
             cli, M, T, dir);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    free(buf);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return TEST_REPORT();
}
