/*
 * test_engine_qwen2.c - the engine on a qwen2-architecture GGUF (half-split
 * "neox" RoPE, theta 1e6, q/k/v biases, head_dim 128, grouped-query
 * attention, key_length != n_embd / n_head) against the logits PyTorch
 * computed from the same file.
 *
 * The fixture tests/fixtures/qwen2-tiny-q8_0.gguf and its reference
 * qwen2-tiny.reference.json were made by the training kit on CPU
 * (models/train/README.md, "CPU smoke test"): train.py --config tiny trains a
 * 2-layer model for 30 s, exports the Q8_0 GGUF, reloads the GGUF into the
 * PyTorch model and writes that model's fp32 logits. Agreement here proves
 * that the export and the engine agree on layout, RoPE convention and biases,
 * which is what makes the GPU run's model usable. Checked by mutation: with
 * the q/k biases dropped the last position's logits differ by 2.3e-2, with
 * adjacent-pair RoPE by 1.6e-1 (both fail here); correct, by ~5e-6.
 * Run from the repo root.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "llama.h"
#include "test.h"

#define MODEL "tests/fixtures/qwen2-tiny-q8_0.gguf"
#define REFERENCE "tests/fixtures/qwen2-tiny.reference.json"

static double nll(const float *row, uint32_t n_vocab, int32_t target) {
    double mx = row[0], sum = 0.0;
    for (uint32_t j = 1; j < n_vocab; j++) mx = row[j] > mx ? row[j] : mx;
    for (uint32_t j = 0; j < n_vocab; j++) sum += exp((double)row[j] - mx);
    return -((double)row[target] - mx - log(sum));
}

static int32_t argmax(const float *row, uint32_t n) {
    int32_t b = 0;
    for (uint32_t j = 1; j < n; j++)
        if (row[j] > row[b]) b = (int32_t)j;
    return b;
}

/* Max |ours - ref| over the reference's leading logits of one position. */
static double max_diff(const json_value *a, const float *row) {
    double m = 0.0;
    for (size_t i = 0; a && i < a->n; i++) {
        double d = fabs((double)row[i] - a->items[i].number);
        m = d > m ? d : m;
    }
    return m;
}

static void test_against_pytorch(void) {
    char err[256];
    int st = 0;
    eng_model *m = eng_model_load_ex(MODEL, &st, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    size_t rlen = 0;
    char *rtext = test_read_file(REFERENCE, &rlen);
    CHECK(rtext != NULL);
    json_value *ref = rtext ? json_parse(rtext, rlen, NULL) : NULL;
    CHECK(ref != NULL);
    if (!m || !ref) goto out;

    const eng_hparams *hp = eng_model_hparams(m);
    CHECK(hp->rope_type == ENG_ROPE_NEOX && hp->has_qkv_bias == 1);
    CHECK(hp->head_dim == 128 && hp->n_head == 2 && hp->n_head_kv == 1 && hp->n_embd == 64);
    CHECK(hp->rope_theta == 1.0e6f && hp->rope_dim == 128);

    const json_value *jids = json_get(ref, "ids");
    CHECK(jids && jids->type == JSON_ARRAY && jids->n > 100);
    if (!jids || jids->type != JSON_ARRAY) goto out;
    uint32_t n = (uint32_t)jids->n, nv = hp->n_vocab;
    int32_t *ids = malloc(n * sizeof(int32_t));
    float *lg = malloc((size_t)n * nv * sizeof(float));
    float *lg2 = malloc((size_t)n * nv * sizeof(float));
    CHECK(ids && lg && lg2);
    if (!ids || !lg || !lg2) goto free_bufs;
    for (uint32_t i = 0; i < n; i++) ids[i] = (int32_t)jids->items[i].number;

    eng_context *ctx = eng_context_alloc(m, n, 2);
    CHECK(ctx != NULL);
    CHECK(ctx && eng_decode(ctx, ids, n, lg) == ENG_OK);

    /* Logits at the first and last positions, and the mean NLL: fp32 here and
     * in PyTorch over identical dequantized weights, so only rounding differs. */
    double d0 = max_diff(json_get(ref, "logits_first_pos"), lg);
    double d1 = max_diff(json_get(ref, "logits_last_pos"), lg + (size_t)(n - 1) * nv);
    printf("qwen2 fixture: max |dlogit| first %.2e, last %.2e\n", d0, d1);
    CHECK_MSG(d0 < 2e-3 && d1 < 2e-3, "logits differ: %.3e %.3e", d0, d1);
    double sum = 0.0;
    for (uint32_t i = 0; i + 1 < n; i++) sum += nll(lg + (size_t)i * nv, nv, ids[i + 1]);
    const json_value *mn = json_get(ref, "mean_nll");
    CHECK(mn && mn->type == JSON_NUMBER);
    if (mn) {
        printf("qwen2 fixture: mean NLL %.6f (PyTorch %.6f)\n", sum / (n - 1), mn->number);
        CHECK(fabs(sum / (n - 1) - mn->number) < 1e-4);
    }
    /* Argmax at every position (the reference's top-5, first entry). */
    const json_value *top = json_get(ref, "top5");
    CHECK(top && top->type == JSON_ARRAY && top->n == n);
    uint32_t agree = 0;
    for (uint32_t i = 0; top && i < n && i < top->n; i++)
        agree += argmax(lg + (size_t)i * nv, nv) == (int32_t)top->items[i].items[0].number;
    CHECK_MSG(agree + 1 >= n, "argmax agrees at %u of %u positions", agree, n);

    /* Decoding in pieces (one token, then the rest) gives the same logits:
     * the biases and neox RoPE use absolute positions through the cache. */
    CHECK(eng_context_set_n_past(ctx, 0) == ENG_OK);
    CHECK(eng_decode(ctx, ids, 1, lg2) == ENG_OK);
    CHECK(eng_decode(ctx, ids + 1, n - 1, lg2 + nv) == ENG_OK);
    double dm = 0.0;
    for (size_t i = 0; i < (size_t)n * nv; i++) {
        double d = fabs((double)lg[i] - lg2[i]);
        dm = d > dm ? d : dm;
    }
    CHECK_MSG(dm < 1e-3, "piecewise decode differs by %.3e", dm);
    eng_context_free(ctx);
free_bufs:
    free(ids);
    free(lg);
    free(lg2);
out:
    json_free(ref);
    free(rtext);
    eng_model_free(m);
}

/* A qwen2 file without one of its biases is rejected with a specific error. */
static void test_missing_bias(void) {
    size_t len = 0;
    char *buf = test_read_file(MODEL, &len);
    CHECK(buf != NULL);
    if (!buf) return;
    const char *name = "blk.1.attn_k.bias";
    size_t nl = strlen(name);
    int renamed = 0;
    for (size_t i = 0; i + nl <= len && !renamed; i++)
        if (memcmp(buf + i, name, nl) == 0) {
            buf[i + nl - 1] = 'z'; /* same length: the file stays well-formed */
            renamed = 1;
        }
    CHECK(renamed);
    char err[256] = "";
    int st = 0;
    eng_model *m = eng_model_load_memory(buf, len, &st, err, sizeof(err));
    CHECK(m == NULL && st == ENG_E_MODEL);
    CHECK_MSG(strstr(err, "blk.1.attn_k.bias") != NULL, "message: %s", err);
    eng_model_free(m);
    free(buf);
}

int main(void) {
    test_against_pytorch();
    test_missing_bias();
    return TEST_REPORT();
}
