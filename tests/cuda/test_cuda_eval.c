/* test_cuda_eval.c - `kvtc-gpu eval --gpu` (tools/gpu/eval_gpu.h): rows
 * encoded and decoded by the CUDA codec and scored by the bundled model.
 * On one short window:
 *  - gpu-bf16 scores as the CPU's emulation of the bf16 GEMMs
 *    (--emulate-gpu bf16: bf16 operands, fp32 accumulation, bf16 X; the
 *    same plan, so only the GEMMs' summation order differs): KL within 2%;
 *  - gpu-fp8 as the emulation of the FP8 operands (--emulate-gpu fp8),
 *    within 5%; gpu-fp8fast (fast accumulation) within 10% of gpu-fp8;
 *  - every GPU row reaches the ratio and has a KL > 0;
 *  - a basis with recomputed layers is refused before the evaluation
 *    (the eval has no GPU recompute hook).
 * The CLI is KVTC_GPU_CLI (CMake sets it; bench/cuda/gpu_env.sh too), run
 * from the source tree (data/). Without a GPU: only the refusal is checked
 * (exit 1, one line on stderr naming the CUDA codec, nothing on stdout),
 * then skipped (77). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu_test_util.h"
#include "eval_json.h"
#include "test.h"

static const char *const M = "data/eval-llama-27m-q8_0.gguf", *const T = "data/persuasion.txt";

/* A small basis of the bundled model into dir/name (recompute: its
 * --recompute-layers); 0 on success. */
static int calibrate(const char *cli, const char *dir, const char *name, int recompute) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s calibrate --model %s --text %s --ctx 256 --windows 2 --window 32 --ratio 8 --recompute-layers %d "
             "-o %s/%s 2>>%s/cal.err",
             cli, M, T, recompute, dir, name, dir);
    return system(cmd);
}

/* No usable GPU: `kvtc-gpu eval --gpu` must fail before it evaluates
 * anything, in one line and exit 1 (not a crash, not a usage error). */
static int no_gpu_refusal(const char *cli) {
    char dir[] = "/tmp/kvtc-test-cuda-eval-XXXXXX", cmd[4096], path[512], buf[4096];
    CHECK(mkdtemp(dir) != NULL);
    CHECK(calibrate(cli, dir, "basis.safetensors", 0) == 0);
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ctx 256 --windows 1 --window 32 --ratios 8 --no-baselines --threads 1 "
             "--gpu bf16,fp8 --basis %s/basis.safetensors >%s/out.txt 2>%s/eval.err",
             cli, M, T, dir, dir, dir);
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "no GPU: exit status %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    CHECK_MSG(eval_slurp(path, buf, sizeof buf) == 0, "no GPU: stdout: %s", buf);
    snprintf(path, sizeof path, "%s/eval.err", dir);
    size_t n = eval_slurp(path, buf, sizeof buf);
    CHECK_MSG(n > 0 && strchr(buf, '\n') == buf + n - 1, "no GPU: not one line: %s", buf);
    CHECK_MSG(strstr(buf, "kvtc@8/gpu-bf16: the CUDA codec: CUDA error") != NULL, "no GPU: %s", buf);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    if (test_failed_) return TEST_REPORT();
    printf("no CUDA device: kvtc-gpu's refusal checked (%d checks); skipped\n", test_passed_);
    return 77;
}

int main(void) {
    const char *cli = getenv("KVTC_GPU_CLI");
    if (!cli) cli = "build/kvtc-gpu";
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0)
        return no_gpu_refusal(cli);
    gpu_test_require_device();
    char dir[] = "/tmp/kvtc-test-cuda-eval-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cmd[4096], path[512];
    CHECK(calibrate(cli, dir, "basis.safetensors", 0) == 0 && calibrate(cli, dir, "r1.safetensors", 1) == 0);
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ctx 256 --windows 1 --window 32 --ratios 8 --no-baselines "
             "--emulate-gpu bf16,fp8 --gpu bf16,fp8,fp8fast --basis %s/basis.safetensors --json >%s/out.json "
             "2>%s/eval.err",
             cli, M, T, dir, dir, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    char *buf = malloc(1 << 20);
    snprintf(path, sizeof path, "%s/out.json", dir);
    size_t n = eval_slurp(path, buf, 1 << 20);
    json_value *root = json_parse(buf, n, NULL);
    CHECK_MSG(root != NULL, "eval --json output does not parse: %.300s", buf);
    const json_value *ms = root ? json_get(root, "methods") : NULL;
    const json_value *e16 = eval_row(ms, "kvtc@8/bf16"), *e8 = eval_row(ms, "kvtc@8/fp8");
    const json_value *g16 = eval_row(ms, "kvtc@8/gpu-bf16"), *g8 = eval_row(ms, "kvtc@8/gpu-fp8");
    const json_value *gf = eval_row(ms, "kvtc@8/gpu-fp8fast");
    CHECK(e16 && e8 && g16 && g8 && gf);
    double k16 = eval_num(e16, "kld"), k8 = eval_num(e8, "kld"), kg16 = eval_num(g16, "kld"), kg8 = eval_num(g8, "kld"), kgf = eval_num(gf, "kld");
    printf("KL: emulated bf16 %.5g, GPU bf16 %.5g; emulated fp8 %.5g, GPU fp8 %.5g, GPU fp8 fast %.5g\n", k16, kg16, k8,
           kg8, kgf);
    CHECK(k16 > 0 && kg16 > 0 && kg8 > 0 && kgf > 0);
    CHECK_MSG(kg16 > 0.98 * k16 && kg16 < 1.02 * k16, "GPU bf16 %.5g vs emulated %.5g", kg16, k16);
    CHECK_MSG(kg8 > 0.95 * k8 && kg8 < 1.05 * k8, "GPU fp8 %.5g vs emulated %.5g", kg8, k8);
    CHECK_MSG(kgf > 0.9 * kg8 && kgf < 1.1 * kg8, "GPU fp8 fast %.5g vs fp8 %.5g", kgf, kg8);
    const json_value *gpu_rows[3] = {g16, g8, gf};
    for (int i = 0; i < 3; i++)
        CHECK_MSG(eval_num(gpu_rows[i], "compression_ratio") >= 7.0, "GPU row %d ratio %.2f", i,
                  eval_num(gpu_rows[i], "compression_ratio"));
    json_free(root);
    /* recomputed layers: refused up front (exit 1), the reason on stderr */
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --text %s --ctx 256 --windows 1 --window 32 --ratios 8 --no-baselines --gpu bf16 "
             "--basis %s/r1.safetensors >/dev/null 2>%s/r1.err",
             cli, M, T, dir, dir);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    snprintf(path, sizeof path, "%s/r1.err", dir);
    eval_slurp(path, buf, 1 << 20);
    CHECK_MSG(strstr(buf, "recomputed layers") != NULL, "recompute refusal: %s", buf);
    free(buf);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return TEST_REPORT();
}
