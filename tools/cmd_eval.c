/* cmd_eval.c - kvtc eval: the real-model fidelity harness.
 *
 * For each window of the text (taken from its END, so that windows do not
 * overlap the calibration windows `kvtc calibrate --model` takes from its
 * start): prefill a prefix, take its float32 KV cache, and for each method
 * round-trip that cache through the method, write it back, and score the
 * continuation teacher-forced. Every method is compared with the run on
 * the untouched float32 cache: perplexity of the continuation, mean
 * KL(reference || method) of the next-token distributions, and top-1
 * agreement (argmax equal). Ratios are against fp16 storage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "eval/baselines.h"
#include "eval/metrics.h"
#include "eval/retrieval.h"
#include "internal.h"
#include "model_kv.h"
#include "gpu/eval_gpu.h"

#define EVAL_MAX_METHODS 64

typedef struct eval_method {
    char name[64];
    int is_kvtc;
    int identity;             /* "uncompressed": the cache written back untouched */
    baseline_kind baseline;   /* when !is_kvtc && !identity */
    kvtc_basis *basis;        /* when is_kvtc */
    double ratio;             /* KVTC target ratio */
    kvi_proj_mode enc_mode, dec_mode; /* --emulate-gpu: the GPU's projection arithmetic */
    eval_gpu *gpu;                    /* --gpu: encoded and decoded by the CUDA codec */
    /* accumulated */
    double nll, kld;
    uint64_t n_pred, n_top1;
    double bits_coded, bits_total;      /* storage bits (coded tokens / whole cache) */
    double fp16_coded, fp16_total;      /* fp16 bits of the same */
    double encode_s, decode_s;
    /* per window (windows are independent; tokens within one are not): sums
     * and sums of squares of the NLL change, KL and top-1, for standard errors */
    double w_dnll, w_dnll2, w_kl, w_kl2, w_top1, w_top1_2;
    uint32_t n_win;
} eval_method;

/* Standard error of a mean from a sum and a sum of squares over n samples. */
static double win_se(double sum, double sum2, uint32_t n) {
    if (n < 2) return 0.0;
    double var = (sum2 - sum * sum / n) / (n - 1);
    return var > 0 ? sqrt(var / n) : 0.0;
}

/* Standard errors of ppl change (delta method on the mean NLL change), KL and top-1. */
static void method_se(const eval_method *m, double *ppl_se, double *kl_se, double *top1_se) {
    double dn = m->n_win ? m->w_dnll / m->n_win : 0.0;
    *ppl_se = exp(dn) * win_se(m->w_dnll, m->w_dnll2, m->n_win);
    *kl_se = win_se(m->w_kl, m->w_kl2, m->n_win);
    *top1_se = win_se(m->w_top1, m->w_top1_2, m->n_win);
}

typedef struct eval_opts {
    uint32_t ctx, windows, n_sink, n_window, threads;
    double prefix_frac;
    int json;
    const char *plot;
} eval_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Score C predictions of a method against the reference logits. */
static void score(eval_method *m, const float *ref, const float *got, const int32_t *next, uint32_t c,
                  uint32_t vocab, double *lp_ref, double *lp_got) {
    for (uint32_t i = 0; i < c; i++) {
        const float *r = ref + (size_t)i * vocab, *g = got + (size_t)i * vocab;
        m->kld += metrics_kl(r, g, vocab, lp_ref, lp_got);
        m->nll -= lp_got[next[i]];
        m->n_top1 += metrics_argmax(r, vocab) == metrics_argmax(g, vocab);
        m->n_pred++;
    }
}

/* Round-trip k/v [L][H][n][d] (float32) through KVTC at fp16 storage. */
static int kvtc_roundtrip(eval_method *m, const eval_opts *o, const kvtc_geometry *g, const eng_model *model,
                          float *k, float *v, uint32_t n, const int32_t *ids) {
    cache_file cf;
    kvtc_result r = cache_file_alloc(&cf, g, KVTC_DTYPE_F16, n, 0, 1);
    if (r) return cli_fail("eval", "%s", kvtc_result_string(r));
    uint64_t elems = (uint64_t)g->n_layers * g->n_kv_heads * n * g->head_dim;
    for (uint64_t i = 0; i < elems; i++) {
        kvi_store_elem(cf.cache.k, KVTC_DTYPE_F16, i, k[i]);
        kvi_store_elem(cf.cache.v, KVTC_DTYPE_F16, i, v[i]);
    }
    memcpy(cf.cache.token_ids, ids, sizeof(int32_t) * n);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = m->ratio;
    eo.n_sink = o->n_sink;
    eo.n_window = o->n_window;
    eo.n_threads = o->threads;
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = o->threads;
    dopt.recompute = model_recompute;
    dopt.recompute_user = (void *)model;
    kvtc_encoder *e = NULL;
    kvtc_decoder *d = NULL;
    void *buf = NULL;
    int rc = 1;
    size_t size = 0;
    kvtc_stream_info info = {.struct_size = sizeof info};
    char gmsg[256] = "";
    if (m->gpu) { /* --gpu: the CUDA codec's round trip, in place */
        double es = 0, ds = 0;
        if ((r = eval_gpu_roundtrip(m->gpu, &cf.cache, &size, &info, &es, &ds, gmsg, sizeof gmsg))) goto fail;
        m->encode_s += es;
        m->decode_s += ds;
        goto decoded;
    }
    if ((r = kvtc_encoder_alloc(m->basis, &eo, &e)) || (r = kvtc_decoder_alloc(m->basis, &dopt, &d))) goto fail;
    if ((r = kvi_encoder_emulate_projection(e, m->enc_mode)) || (r = kvi_decoder_emulate_projection(d, m->dec_mode)))
        goto fail;
    size_t cap = kvtc_compress_bound(e, &cf.cache);
    if (!cap || !(buf = malloc(cap))) { r = cap ? KVTC_ERR_OUT_OF_MEMORY : KVTC_ERR_GEOMETRY_MISMATCH; goto fail; }
    double t0 = now_s();
    if ((r = kvtc_compress(e, &cf.cache, buf, cap, &size))) goto fail;
    double t1 = now_s();
    memset(cf.cache.k, 0, (size_t)kvtc_cache_tensor_bytes(g, KVTC_DTYPE_F16, n));
    memset(cf.cache.v, 0, (size_t)kvtc_cache_tensor_bytes(g, KVTC_DTYPE_F16, n));
    if ((r = kvtc_decompress(d, buf, size, &cf.cache))) goto fail;
    m->encode_s += t1 - t0;
    m->decode_s += now_s() - t1;
    if ((r = kvtc_stream_get_info(buf, size, &info))) goto fail;
decoded:
    for (uint64_t i = 0; i < elems; i++) {
        k[i] = kvi_load_elem(cf.cache.k, KVTC_DTYPE_F16, i);
        v[i] = kvi_load_elem(cf.cache.v, KVTC_DTYPE_F16, i);
    }
    double per_tok16 = 2.0 * 16.0 * g->n_layers * g->n_kv_heads * g->head_dim;
    m->bits_coded += 8.0 * (double)info.coded_bytes;
    m->fp16_coded += per_tok16 * (double)info.n_coded_tokens;
    m->bits_total += 8.0 * (double)size;
    m->fp16_total += per_tok16 * n;
    rc = 0;
fail:
    if (rc) cli_fail("eval", "%s: %s%s%s%s", m->name, kvtc_result_string(r), gmsg[0] ? " (" : "", gmsg, gmsg[0] ? ")" : "");
    free(buf);
    kvtc_encoder_free(e);
    kvtc_decoder_free(d);
    cache_file_free(&cf);
    return rc;
}

static int baseline_apply(eval_method *m, const eval_opts *o, const kvtc_geometry *g, float *k, float *v,
                          uint32_t n) {
    baseline_cost c;
    int rc = baseline_roundtrip(m->baseline, k, v, g->n_layers, g->n_kv_heads, n, g->head_dim, o->n_sink,
                                o->n_window, &c);
    if (rc) return cli_fail("eval", "%s: baseline failed (%d)", m->name, rc);
    m->bits_coded += c.bits_compressed;
    m->fp16_coded += 16.0 * (double)c.values_compressed;
    m->bits_total += c.bits_total;
    m->fp16_total += 16.0 * (double)c.values_total;
    return 0;
}

/* What the retrieval tasks need to round-trip a cache with method mi. */
typedef struct apply_ctx {
    eval_method *ms;
    const eval_opts *o;
    kvtc_geometry g;
    const eng_model *model;
} apply_ctx;

static int apply_method(void *user, uint32_t mi, float *k, float *v, uint32_t n, const int32_t *ids) {
    apply_ctx *a = user;
    eval_method *m = &a->ms[mi];
    if (m->identity) return 0;
    return m->is_kvtc ? kvtc_roundtrip(m, a->o, &a->g, a->model, k, v, n, ids) : baseline_apply(m, a->o, &a->g, k, v, n);
}

/* Up to RETRIEVAL_MAX_POINTS comma-separated numbers; the count, or -1 (a
 * list too long for the buffer is refused, not cut). */
static int parse_list(const char *v, double *out) {
    char tmp[256];
    if (snprintf(tmp, sizeof tmp, "%s", v) >= (int)sizeof tmp) return -1;
    int n = 0;
    for (char *s = strtok(tmp, ","); s; s = strtok(NULL, ",")) {
        if (n == RETRIEVAL_MAX_POINTS || cli_parse_double(s, &out[n])) return -1;
        n++;
    }
    return n ? n : -1;
}

/* --emulate-gpu and --gpu: one variant of every KVTC method per entry
 * (gpu: the --gpu entry's name, the row run on the CUDA codec with
 * projection gpu_proj; NULL for an emulation on the CPU) */
#define EVAL_MAX_EMULATIONS 4
#define EVAL_MAX_GPU 3
typedef struct gpu_emulation {
    const char *name;
    kvi_proj_mode enc, dec;
    const char *gpu;
    eval_gpu_projection gpu_proj;
} gpu_emulation;

/* A --basis NAME= label: it names table rows and JSON strings, so it is kept
 * to characters that need no quoting anywhere (and is never cut short). */
static int label_ok(const char *s, size_t n) {
    if (n == 0 || n > 31) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._+:-", c)))
            return 0;
    }
    return 1;
}

static int parse_emulations(const char *v, gpu_emulation *out) {
    static const gpu_emulation known[EVAL_MAX_EMULATIONS] = {{"bf16", KVI_PROJ_BF16, KVI_PROJ_BF16, NULL, 0},
                                                             {"fp8dec", KVI_PROJ_BF16, KVI_PROJ_FP8, NULL, 0},
                                                             {"fp8enc", KVI_PROJ_FP8, KVI_PROJ_BF16, NULL, 0},
                                                             {"fp8", KVI_PROJ_FP8, KVI_PROJ_FP8, NULL, 0}};
    char tmp[256];
    if (snprintf(tmp, sizeof tmp, "%s", v) >= (int)sizeof tmp) return -1;
    int n = 0;
    for (char *s = strtok(tmp, ","); s; s = strtok(NULL, ",")) {
        int k = 0;
        while (k < EVAL_MAX_EMULATIONS && strcmp(s, known[k].name)) k++;
        if (k == EVAL_MAX_EMULATIONS || n == EVAL_MAX_EMULATIONS) return -1;
        out[n++] = known[k];
    }
    return n ? n : -1;
}

/* --gpu LIST: rows out[0..n) named gpu-NAME; the count, or -1. */
static int parse_gpu(const char *v, gpu_emulation *out) {
    static const gpu_emulation known[EVAL_MAX_GPU] = {
        {"gpu-bf16", KVI_PROJ_EXACT, KVI_PROJ_EXACT, "bf16", EVAL_GPU_BF16},
        {"gpu-fp8", KVI_PROJ_EXACT, KVI_PROJ_EXACT, "fp8", EVAL_GPU_FP8},
        {"gpu-fp8fast", KVI_PROJ_EXACT, KVI_PROJ_EXACT, "fp8fast", EVAL_GPU_FP8_FAST}};
    char tmp[256];
    if (snprintf(tmp, sizeof tmp, "%s", v) >= (int)sizeof tmp) return -1;
    int n = 0;
    for (char *s = strtok(tmp, ","); s; s = strtok(NULL, ",")) {
        int k = 0;
        while (k < EVAL_MAX_GPU && strcmp(s, known[k].gpu)) k++;
        if (k == EVAL_MAX_GPU || n == EVAL_MAX_GPU) return -1;
        out[n++] = known[k];
    }
    return n ? n : -1;
}

/* Rows are named LABEL@RATIO[/EMULATION]: two of one name could not be told
 * apart in the table, the JSON or bench/paired_diff.py (two unnamed bases
 * are both "kvtc"), so every label, ratio and emulation must be given once.
 * A usage message, or NULL. */
static const char *duplicate_rows(const char *const *specs, int n_bases, const double *ratios, int n_ratios,
                                  const gpu_emulation *emul, int n_emul, char *msg, size_t cap) {
    char a[32], b[32];
    for (int i = 0; i < n_bases; i++)
        for (int j = 0; j < i; j++) {
            const char *ei = strchr(specs[i], '='), *ej = strchr(specs[j], '=');
            snprintf(a, sizeof a, "%.*s", ei ? (int)(ei - specs[i]) : 4, ei ? specs[i] : "kvtc");
            snprintf(b, sizeof b, "%.*s", ej ? (int)(ej - specs[j]) : 4, ej ? specs[j] : "kvtc");
            if (!strcmp(a, b)) {
                snprintf(msg, cap, "two bases are named '%s' (their rows would look alike): give each --basis its own "
                         "NAME=PATH", a);
                return msg;
            }
        }
    for (int i = 0; i < n_ratios; i++)
        for (int j = 0; j < i; j++) {
            snprintf(a, sizeof a, "%g", ratios[i]);
            snprintf(b, sizeof b, "%g", ratios[j]);
            if (!strcmp(a, b)) {
                snprintf(msg, cap, "--ratios lists %s twice", a);
                return msg;
            }
        }
    for (int i = 0; i < n_emul; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(emul[i].name, emul[j].name)) {
                snprintf(msg, cap, "%s lists %s twice", emul[i].gpu ? "--gpu" : "--emulate-gpu",
                         emul[i].gpu ? emul[i].gpu : emul[i].name);
                return msg;
            }
    return NULL;
}

static void print_table(const eval_method *ms, uint32_t nm, double ref_ppl, FILE *f) {
    fprintf(f, "%-22s %10s %10s %10s %16s %21s %16s\n", "method", "ratio", "ratio_tot", "ppl", "d_ppl", "KL", "top1");
    for (uint32_t i = 0; i < nm; i++) {
        const eval_method *m = &ms[i];
        double ppl = exp(m->nll / (double)m->n_pred), ppl_se, kl_se, top1_se;
        method_se(m, &ppl_se, &kl_se, &top1_se);
        fprintf(f, "%-22s %10.2f %10.2f %10.4f %+8.2f%% +-%4.2f %10.3e +-%8.1e %7.2f%% +-%4.2f\n", m->name,
                m->bits_coded > 0 ? m->fp16_coded / m->bits_coded : 0.0,
                m->bits_total > 0 ? m->fp16_total / m->bits_total : 0.0, ppl, 100.0 * (ppl / ref_ppl - 1.0),
                100.0 * ppl_se, m->kld / (double)m->n_pred, kl_se, 100.0 * (double)m->n_top1 / (double)m->n_pred,
                100.0 * top1_se);
    }
    fprintf(f, "(+- standard errors over windows)\n");
}

static void print_json(const eval_method *ms, uint32_t nm, double ref_ppl, const eval_opts *o, uint32_t prefix,
                       uint32_t windows, uint64_t n_pred) {
    printf("{\"ctx\": %u, \"prefix\": %u, \"windows\": %u, \"predictions_per_method\": %" PRIu64
           ", \"n_sink\": %u, \"n_window\": %u, \"reference_ppl\": %.6f, \"methods\": [",
           o->ctx, prefix, windows, n_pred, o->n_sink, o->n_window, ref_ppl);
    for (uint32_t i = 0; i < nm; i++) {
        const eval_method *m = &ms[i];
        double ppl = exp(m->nll / (double)m->n_pred), ppl_se, kl_se, top1_se;
        method_se(m, &ppl_se, &kl_se, &top1_se);
        printf("%s\n  {\"name\": \"%s\", \"compression_ratio\": %.4f, \"compression_ratio_total\": %.4f, "
               "\"ppl\": %.6f, \"ppl_change\": %.6f, \"kld\": %.6e, \"top1\": %.6f, \"encode_s\": %.4f, \"decode_s\": %.4f, "
               "\"ppl_change_se\": %.6f, \"kld_se\": %.6e, \"top1_se\": %.6f}",
               i ? "," : "", m->name, m->bits_coded > 0 ? m->fp16_coded / m->bits_coded : 0.0,
               m->bits_total > 0 ? m->fp16_total / m->bits_total : 0.0, ppl, ppl / ref_ppl - 1.0,
               m->kld / (double)m->n_pred, (double)m->n_top1 / (double)m->n_pred, m->encode_s, m->decode_s,
               ppl_se, kl_se, top1_se);
    }
    printf("\n]}\n");
}

/* Rate-distortion plot with gnuplot: KL vs ratio (log-log), one point per method.
 *
 * gnuplot is run without a shell and only ever sees names we made (a private
 * mkdtemp directory): the user's output name goes through no shell or
 * gnuplot string, where quotes or "$(...)" in it would be code, and the PNG
 * is then written like every other output (cli_write_file: atomic, never
 * replacing a device or FIFO). */
static int run_gnuplot(const char *script) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", "-e", script, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int write_plot(const eval_method *ms, uint32_t nm, const char *png) {
    char dir[] = "/tmp/kvtc-plot-XXXXXX", dat[64], img[64], script[1024], err[512];
    if (!mkdtemp(dir)) return cli_fail("eval", "cannot create a temporary directory for the plot: %s", strerror(errno));
    snprintf(dat, sizeof dat, "%s/points.dat", dir);
    snprintf(img, sizeof img, "%s/plot.png", dir);
    int rc = 1;
    FILE *f = fopen(dat, "w");
    if (!f) { cli_fail("eval", "cannot write the plot data"); goto done; }
    for (uint32_t i = 0; i < nm; i++) {
        if (ms[i].identity) continue; /* KL 0: no place on a log axis */
        double kl = ms[i].kld / (double)ms[i].n_pred;
        fprintf(f, "%g %g \"", ms[i].fp16_coded / ms[i].bits_coded, kl > 1e-9 ? kl : 1e-9);
        for (const char *c = ms[i].name; *c; c++) fputc(*c == '"' ? '\'' : *c, f); /* a label, not a quote */
        fprintf(f, "\" %d\n", ms[i].is_kvtc);
    }
    if (fclose(f) != 0) { cli_fail("eval", "cannot write the plot data"); goto done; }
    snprintf(script, sizeof script,
             "set terminal pngcairo size 900,600 noenhanced; set output '%s'; set logscale xy; "
             "set xlabel 'compression ratio vs fp16 (compressed tokens)'; set ylabel 'mean KL divergence (nats)'; "
             "set grid; set key off; set title 'KV cache compression: rate vs distortion'; "
             "plot '%s' using 1:2:($4==1?1:2) with points pt 7 ps 1.5 lc variable, "
             "'' using 1:2:3 with labels offset 1,0.8 left font ',9'",
             img, dat);
    if (run_gnuplot(script) != 0) { cli_fail("eval", "gnuplot failed (is gnuplot installed?)"); goto done; }
    void *buf = NULL;
    size_t size = 0;
    if (cli_read_file(img, &buf, &size, err, sizeof err) || cli_write_file(png, buf, size, err, sizeof err)) {
        cli_fail("eval", "%s", err);
        free(buf);
        goto done;
    }
    free(buf);
    rc = 0;
done:
    unlink(dat);
    unlink(img);
    rmdir(dir);
    return rc;
}

static const char eval_help[] =
    "usage: kvtc eval --model M.gguf --text T.txt --basis [NAME=]BASIS... [options]\n"
    "  --basis [NAME=]PATH  a basis to evaluate at every --ratio; repeatable (NAME defaults to kvtc)\n"
    "  --ratios LIST        KVTC target ratios, comma separated (default 8,16,32,64)\n"
    "  --ctx N              window length (default: the model's context; beyond it needs --force)\n"
    "  --force              allow --ctx beyond the model's trained context\n"
    "  --windows N          windows, taken from the END of the text (default 4)\n"
    "  --prefix F           fraction of each window prefilled and compressed (default 0.75)\n"
    "  --sink N / --window N  raw tokens at the start / end of the prefix (default 4 / 128)\n"
    "  --no-baselines       skip f16, fp8_e4m3, q8_0, q4_0, kivi2\n"
    "  --task ppl|copy|copy-random|recall  ppl (default): perplexity, KL and top-1 of a\n"
    "                       continuation; copy: a text passage repeated after a gap;\n"
    "                       copy-random: a passage of random tokens of the text repeated\n"
    "                       (only a lookup predicts it); recall: a key-value needle\n"
    "                       answered at the end (--windows = trials per distance / depth)\n"
    "  --distances LIST     copy, copy-random: token distances between the two copies\n"
    "                       (default ctx/8,ctx/2,ctx-passage-sinks-1)\n"
    "  --depths LIST        recall: needle depths, fractions of the context (default 0.1,0.5,0.9)\n"
    "  --passage N          copy, copy-random: passage tokens (default 64)\n"
    "  --trials N           copy, copy-random, recall: trials per distance / depth, 1..10000 (default:\n"
    "                       the windows); beyond the text's windows a trial reuses window\n"
    "                       t mod windows with its own random passage / needle\n"
    "  --emulate-gpu LIST   also run every KVTC method with the GPU's projection arithmetic\n"
    "                       emulated: bf16 (encode and decode GEMMs in bf16, the CUDA default),\n"
    "                       fp8dec (decode GEMM in e4m3, encode bf16), fp8enc (encode e4m3,\n"
    "                       decode bf16), fp8 (both e4m3); comma separated\n"
    "  --gpu LIST           also run every KVTC method through the CUDA codec on the GPU\n"
    "                       (encode and decode; rows LABEL@RATIO/gpu-NAME): bf16 (the CUDA\n"
    "                       default), fp8 (KVTC_CUDA_PROJ_FP8), fp8fast (FP8 with fast\n"
    "                       accumulation); comma separated. Needs kvtc-gpu (the tool built\n"
    "                       with the CUDA backend), a GPU and a basis without recomputed layers\n"
    "  --threads N          threads (default 2)\n"
    "  --json               print one JSON object instead of the table\n"
    "  --plot OUT.png       write a KL-vs-ratio plot (gnuplot)\n";

int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL;
    const char *basis_specs[16];
    int n_bases = 0, baselines = 1, force = 0, n_emul = 0, n_gpu = 0;
    gpu_emulation emul[EVAL_MAX_EMULATIONS + EVAL_MAX_GPU], gpus[EVAL_MAX_GPU];
    double ratios[16] = {8, 16, 32, 64};
    int n_ratios = 4;
    eval_opts o = {0, 4, 4, 128, 2, 0.75, 0, NULL};
    retrieval_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.passage = 64;
    const char *task = "ppl";
    /* task options given, to refuse those the task would ignore */
    const char *points_opt = NULL;
    int trials_set = 0, passage_set = 0, prefix_set = 0;
    enum { O_MODEL = 256, O_TEXT, O_BASIS, O_RATIOS, O_CTX, O_WINDOWS, O_PREFIX, O_SINK, O_WINDOW, O_THREADS,
           O_NO_BASELINES, O_JSON, O_PLOT, O_FORCE, O_TASK, O_POINTS, O_PASSAGE, O_EMULATE, O_TRIALS, O_GPU };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, O_MODEL}, {"text", required_argument, NULL, O_TEXT},
        {"basis", required_argument, NULL, O_BASIS}, {"ratios", required_argument, NULL, O_RATIOS},
        {"ctx", required_argument, NULL, O_CTX}, {"windows", required_argument, NULL, O_WINDOWS},
        {"prefix", required_argument, NULL, O_PREFIX}, {"sink", required_argument, NULL, O_SINK},
        {"window", required_argument, NULL, O_WINDOW}, {"threads", required_argument, NULL, O_THREADS},
        {"no-baselines", no_argument, NULL, O_NO_BASELINES}, {"json", no_argument, NULL, O_JSON},
        {"plot", required_argument, NULL, O_PLOT}, {"force", no_argument, NULL, O_FORCE},
        {"task", required_argument, NULL, O_TASK}, {"distances", required_argument, NULL, O_POINTS},
        {"depths", required_argument, NULL, O_POINTS}, {"passage", required_argument, NULL, O_PASSAGE},
        {"emulate-gpu", required_argument, NULL, O_EMULATE}, {"trials", required_argument, NULL, O_TRIALS},
        {"gpu", required_argument, NULL, O_GPU},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    opterr = 0;
    optind = 0;
    int opt, li = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, &li)) != -1) {
        const char *v = optarg;
        switch (opt) {
        case 'h': fputs(eval_help, stdout); return 0;
        case O_MODEL: model_path = v; break;
        case O_TEXT: text_path = v; break;
        case O_BASIS:
            if (n_bases == 16) return cli_usage("eval", "at most 16 bases");
            if (strchr(v, '=') && !label_ok(v, (size_t)(strchr(v, '=') - v)))
                return cli_usage("eval", "--basis NAME=PATH: NAME must be 1-31 letters, digits or ._+:-, not '%.*s'",
                                 (int)(strchr(v, '=') - v), v);
            basis_specs[n_bases++] = v;
            break;
        case O_RATIOS: {
            char tmp[256];
            int cut = snprintf(tmp, sizeof tmp, "%s", v) >= (int)sizeof tmp;
            n_ratios = 0;
            for (char *s = strtok(tmp, ","); s && !cut; s = strtok(NULL, ",")) {
                if (n_ratios == 16 || cli_parse_double(s, &ratios[n_ratios]) || ratios[n_ratios] <= 1)
                    return cli_usage("eval", "--ratios takes up to 16 numbers > 1, comma separated, not '%s'", v);
                n_ratios++;
            }
            /* "," or "" would leave a basis with no row (and its memory unowned) */
            if (!n_ratios) return cli_usage("eval", "--ratios takes up to 16 numbers > 1, comma separated, not '%s'", v);
            break;
        }
        case O_CTX: if (cli_parse_u32(v, &o.ctx) || o.ctx < 8) return cli_usage("eval", "--ctx needs a count >= 8"); break;
        case O_TRIALS:
            if (cli_parse_u32(v, &ro.trials) || !ro.trials || ro.trials > RETRIEVAL_MAX_TRIALS)
                return cli_usage("eval", "--trials needs a count 1..%d, not '%s'", RETRIEVAL_MAX_TRIALS, v);
            trials_set = 1;
            break;
        case O_WINDOWS: if (cli_parse_u32(v, &o.windows) || !o.windows) return cli_usage("eval", "--windows needs a count > 0"); break;
        case O_PREFIX:
            if (cli_parse_double(v, &o.prefix_frac) || o.prefix_frac <= 0 || o.prefix_frac >= 1) return cli_usage("eval", "--prefix needs a fraction in (0, 1)");
            prefix_set = 1;
            break;
        case O_SINK: if (cli_parse_u32(v, &o.n_sink)) return cli_usage("eval", "--sink needs a count"); break;
        case O_WINDOW: if (cli_parse_u32(v, &o.n_window)) return cli_usage("eval", "--window needs a count"); break;
        case O_THREADS: if (cli_parse_u32(v, &o.threads) || !o.threads || o.threads > 64) return cli_usage("eval", "--threads needs 1..64"); break;
        case O_NO_BASELINES: baselines = 0; break;
        case O_JSON: o.json = 1; break;
        case O_PLOT: o.plot = v; break;
        case O_TASK:
            task = v;
            if (strcmp(task, "ppl") && strcmp(task, "copy") && strcmp(task, "copy-random") && strcmp(task, "recall"))
                return cli_usage("eval", "--task is ppl, copy, copy-random or recall");
            break;
        case O_POINTS: {
            int n;
            /* named by longindex: argv[optind - 1] is the value when it came as a separate word */
            if ((n = parse_list(v, ro.points)) < 0)
                return cli_usage("eval", "--%s takes up to %d numbers, comma separated, not '%s'", longopts[li].name,
                                 RETRIEVAL_MAX_POINTS, v);
            ro.n_points = (uint32_t)n;
            points_opt = longopts[li].name;
            break;
        }
        case O_PASSAGE:
            if (cli_parse_u32(v, &ro.passage) || ro.passage < 2) return cli_usage("eval", "--passage needs a count >= 2");
            passage_set = 1;
            break;
        case O_FORCE: force = 1; break;
        case O_EMULATE:
            if ((n_emul = parse_emulations(v, emul)) < 0)
                return cli_usage("eval", "--emulate-gpu takes bf16, fp8dec, fp8enc, fp8 (comma separated)");
            break;
        case O_GPU:
            if ((n_gpu = parse_gpu(v, gpus)) < 0)
                return cli_usage("eval", "--gpu takes bf16, fp8, fp8fast (comma separated)");
            break;
        case ':': return cli_usage("eval", "%s needs a value", argv[optind - 1]);
        default: return cli_usage("eval", "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage("eval", "unexpected argument %s (see --help)", argv[optind]);
    if (!model_path || !text_path || (!n_bases && !baselines && !strcmp(task, "ppl"))) return cli_usage("eval", "needs --model, --text and a --basis (or baselines)");
    /* an option the task ignores is refused: "--task ppl --trials 24" or
     * "--task copy-random --depths 1024" would run something else than asked */
    int is_copy = !strcmp(task, "copy") || !strcmp(task, "copy-random"), is_recall = !strcmp(task, "recall");
    if (points_opt && !(is_copy && !strcmp(points_opt, "distances")) && !(is_recall && !strcmp(points_opt, "depths")))
        return cli_usage("eval", "--%s is not an option of --task %s (--distances: copy, copy-random; --depths: "
                         "recall)", points_opt, task);
    if ((trials_set && !is_copy && !is_recall) || (passage_set && !is_copy))
        return cli_usage("eval", "--%s is not an option of --task %s (--trials: copy, copy-random, recall; "
                         "--passage: copy, copy-random)", passage_set && !is_copy ? "passage" : "trials", task);
    if ((prefix_set || o.plot) && strcmp(task, "ppl")) /* the retrieval tasks lay out their own prefix */
        return cli_usage("eval", "--%s is an option of --task ppl only", prefix_set ? "prefix" : "plot");
    if (n_gpu && !eval_gpu_built())
        return cli_usage("eval", "--gpu needs the CUDA backend: this kvtc was built without it (run kvtc-gpu, built "
                         "with -DKVTC_CUDA=ON)");
    for (int i = 0; i < n_gpu; i++) emul[n_emul++] = gpus[i]; /* GPU rows after the emulated ones */
    char dup[160];
    if (duplicate_rows(basis_specs, n_bases, ratios, n_ratios, emul, n_emul, dup, sizeof dup))
        return cli_usage("eval", "%s", dup);
    if (o.plot) {
        char err[512];
        if (!strcmp(o.plot, "-")) /* the PNG would land after the table or JSON on the same stream */
            return cli_usage("eval", "--plot - would write the PNG into standard output, after the %s: give a file "
                             "name", o.json ? "JSON" : "table");
        if (cli_check_output(o.plot, err, sizeof err)) return cli_fail("eval", "--plot: %s", err);
        if (cli_same_file(o.plot, model_path) || cli_same_file(o.plot, text_path))
            return cli_usage("eval", "--plot %s is an input: give another output name", o.plot);
        for (int b = 0; b < n_bases; b++) {
            const char *eq = strchr(basis_specs[b], '=');
            if (cli_same_file(o.plot, eq ? eq + 1 : basis_specs[b]))
                return cli_usage("eval", "--plot %s is an input: give another output name", o.plot);
        }
    }

    model_text mt;
    if (model_text_load(&mt, model_path, text_path)) return 1;
    const eng_hparams *hp = eng_model_hparams(mt.model);
    kvtc_geometry g = model_geometry(mt.model);
    if (!o.ctx) o.ctx = hp->n_ctx_train;
    if (cli_check_ctx("eval", o.ctx, hp->n_ctx_train, force)) { model_text_free(&mt); return 1; }
    uint64_t avail = model_text_windows(&mt, o.ctx);
    if (!avail) { model_text_free(&mt); return cli_fail("eval", "%s is shorter than one window of %u tokens", text_path, o.ctx); }
    if (o.windows > avail) { /* said, as kvtc calibrate does: the tables would hold fewer samples than asked */
        fprintf(stderr, "kvtc: eval: %s holds %llu window(s) of %u tokens: evaluating %llu, not --windows %u\n",
                text_path, (unsigned long long)avail, o.ctx, (unsigned long long)avail, o.windows);
        o.windows = (uint32_t)avail;
    }
    uint32_t prefix = (uint32_t)(o.ctx * o.prefix_frac), cont = o.ctx - prefix;
    if (prefix < 1 || cont < 2) { model_text_free(&mt); return cli_fail("eval", "window too short for prefix %g", o.prefix_frac); }
    if (!strcmp(task, "ppl") && (uint64_t)o.n_sink + o.n_window >= prefix) {
        /* nothing would be compressed: every method would show ratio 0 and no loss */
        model_text_free(&mt);
        return cli_usage("eval", "--sink %u + --window %u leave no token to compress in a prefix of %u (--ctx %u x "
                         "--prefix %g)", o.n_sink, o.n_window, prefix, o.ctx, o.prefix_frac);
    }

    eval_method *ms = calloc(EVAL_MAX_METHODS, sizeof *ms);
    uint32_t nm = 0;
    int rc = 1;
    if (!ms) { model_text_free(&mt); return cli_fail("eval", "out of memory"); }
    /* The identity round trip checks the harness itself: its KL must be 0. */
    snprintf(ms[nm].name, sizeof ms[nm].name, "uncompressed");
    ms[nm].identity = 1;
    nm++;
    if (baselines) {
        static const baseline_kind kinds[] = {BASELINE_F16, BASELINE_FP8_E4M3, BASELINE_Q8_0, BASELINE_Q4_0, BASELINE_KIVI2};
        for (int i = 0; i < 5; i++) {
            /* A method that cannot store this shape is left out with the
             * reason, never a failed run (llama.cpp would refuse it too). */
            if (baseline_cost_of(kinds[i], g.n_layers, g.n_kv_heads, prefix, g.head_dim, o.n_sink, o.n_window,
                                 NULL) == BASELINE_ERR_GEOMETRY) {
                fprintf(stderr, "kvtc: eval: %s skipped: a token's K/V row of %u values (%u heads x %u) does not "
                        "hold whole blocks of %d\n", baseline_name(kinds[i]), g.n_kv_heads * g.head_dim,
                        g.n_kv_heads, g.head_dim, BASELINE_GROUP);
                continue;
            }
            ms[nm].baseline = kinds[i];
            snprintf(ms[nm].name, sizeof ms[nm].name, "%s", baseline_name(kinds[i]));
            nm++;
        }
    }
    /* every basis x ratio x emulation is a row: too many is refused, never cut short */
    if (nm + (uint32_t)n_bases * (uint32_t)n_ratios * (uint32_t)(1 + n_emul) > EVAL_MAX_METHODS) {
        rc = cli_usage("eval", "%d bases x %d ratios x %d variants + %u other rows exceed %d methods", n_bases,
                       n_ratios, 1 + n_emul, nm, EVAL_MAX_METHODS);
        goto done;
    }
    for (int b = 0; b < n_bases; b++) {
        const char *spec = basis_specs[b], *eq = strchr(spec, '=');
        char label[32] = "kvtc";
        if (eq) snprintf(label, sizeof label, "%.*s", (int)(eq - spec), spec); /* label_ok: <= 31 */
        const char *path = eq ? eq + 1 : spec;
        void *buf;
        size_t size;
        char err[512];
        kvtc_basis *basis;
        if (cli_read_file(path, &buf, &size, err, sizeof err)) { cli_fail("eval", "%s", err); goto done; }
        kvtc_result r = kvtc_basis_load(buf, size, &basis);
        free(buf);
        if (r) { cli_fail("eval", "basis %s: %s", path, kvtc_result_string(r)); goto done; }
        if (!kvi_geometry_equal(kvtc_basis_geometry(basis), &g)) {
            kvtc_basis_free(basis);
            cli_fail("eval", "basis %s was calibrated for another model geometry", path);
            goto done;
        }
        for (int i = 0; i < n_ratios && nm < EVAL_MAX_METHODS; i++) {
            /* any ratio the basis supports: a stored plan or one the encoder solves */
            kvtc_encode_options eo;
            kvtc_encode_options_init(&eo);
            eo.ratio = ratios[i];
            kvtc_encoder *probe = NULL;
            kvtc_result pr = kvtc_encoder_alloc(basis, &eo, &probe);
            kvtc_encoder_free(probe);
            if (pr) {
                cli_fail("eval", "basis %s cannot code ratio %g: %s", path, ratios[i], kvtc_result_string(pr));
                if (i == 0) kvtc_basis_free(basis);
                goto done;
            }
            for (int k = -1; k < n_emul && nm < EVAL_MAX_METHODS; k++) {
                ms[nm].is_kvtc = 1;
                ms[nm].basis = basis;
                ms[nm].ratio = ratios[i];
                snprintf(ms[nm].name, sizeof ms[nm].name, "%s@%g%s%s", label, ratios[i], k < 0 ? "" : "/",
                         k < 0 ? "" : emul[k].name);
                if (k >= 0) {
                    ms[nm].enc_mode = emul[k].enc;
                    ms[nm].dec_mode = emul[k].dec;
                }
                if (k >= 0 && emul[k].gpu) {
                    char cmsg[256] = "";
                    kvtc_result gr = eval_gpu_open(basis, emul[k].gpu_proj, ratios[i], o.n_sink, o.n_window,
                                                   &ms[nm].gpu, cmsg, sizeof cmsg);
                    if (gr) {
                        uint32_t rl = kvtc_basis_recomputed_layers(basis);
                        memset(&ms[nm], 0, sizeof ms[nm]); /* the basis stays with the row before (k = -1) */
                        if (gr == KVTC_ERR_UNSUPPORTED && rl)
                            cli_fail("eval", "%s@%g/%s: --gpu rows need a basis without recomputed layers (%s "
                                     "recomputes %u; the eval has no GPU recompute hook)", label, ratios[i],
                                     emul[k].name, path, rl);
                        else if (gr == KVTC_ERR_UNSUPPORTED && emul[k].gpu_proj != EVAL_GPU_BF16)
                            cli_fail("eval", "%s@%g/%s: the CUDA codec: %s (FP8 needs a GPU of compute capability "
                                     "8.9 or later, and head_dim and layers x heads x head_dim multiples of 16)",
                                     label, ratios[i], emul[k].name, kvtc_result_string(gr));
                        else
                            cli_fail("eval", "%s@%g/%s: the CUDA codec: %s%s%s%s", label, ratios[i], emul[k].name,
                                     kvtc_result_string(gr), cmsg[0] ? " (" : "", cmsg, cmsg[0] ? ")" : "");
                        goto done;
                    }
                }
                nm++;
            }
        }
    }

    if (strcmp(task, "ppl")) {
        ro.task = !strcmp(task, "copy")          ? RETRIEVAL_COPY
                  : !strcmp(task, "copy-random") ? RETRIEVAL_COPY_RANDOM
                                                 : RETRIEVAL_RECALL;
        ro.ctx = o.ctx;
        ro.windows = o.windows;
        if (!ro.trials) ro.trials = o.windows;
        ro.n_sink = o.n_sink;
        ro.n_window = o.n_window;
        ro.threads = o.threads;
        if (!ro.n_points && ro.task != RETRIEVAL_RECALL) {
            /* in 64 bits: hostile --passage / --sink / --window wrapped in 32 and let a
             * default through, which was then refused as if the user had given it */
            int64_t far = (int64_t)o.ctx - ro.passage - o.n_sink - 1;
            double d[3] = {o.ctx / 8, o.ctx / 2, (double)far};
            int fits[3];
            for (int i = 0; i < 3; i++) {
                fits[i] = far > 0 && d[i] >= (double)ro.passage + o.n_window && d[i] <= (double)far;
                if (fits[i]) ro.points[ro.n_points++] = d[i];
            }
            if (!ro.n_points) {
                rc = cli_usage("eval", "no default copy distance fits a context of %u with a passage of %u, %u sinks "
                               "and a raw window of %u: raise --ctx, or lower --passage / --sink / --window", o.ctx,
                               ro.passage, o.n_sink, o.n_window);
                goto done;
            }
            for (int i = 0; i < 3; i++) /* said, so that the table's distances are no surprise */
                if (!fits[i])
                    fprintf(stderr, "kvtc: eval: default distance %.0f left out: outside [passage + window, ctx - "
                            "passage - sinks - 1] = [%lld, %lld]\n", d[i], (long long)ro.passage + o.n_window,
                            (long long)o.ctx - ro.passage - o.n_sink - 1);
        } else if (!ro.n_points) {
            ro.points[0] = 0.1, ro.points[1] = 0.5, ro.points[2] = 0.9;
            ro.n_points = 3;
        }
        int bad = retrieval_check(&ro, &mt);
        if (bad) { rc = bad; goto done; }
        apply_ctx ac = {ms, &o, g, mt.model};
        retrieval_result res;
        if (retrieval_run(&ro, &mt, nm, apply_method, &ac, &res)) goto done;
        const char *names[EVAL_MAX_METHODS];
        double rat[EVAL_MAX_METHODS];
        for (uint32_t i = 0; i < nm; i++) {
            names[i] = ms[i].name;
            rat[i] = ms[i].identity ? 0.5 : ms[i].bits_coded > 0 ? ms[i].fp16_coded / ms[i].bits_coded : 0.0;
        }
        if (!o.json) printf("%s: task %s on %s\n", model_path, task, text_path);
        retrieval_print(&ro, &res, names, rat, o.json, stdout);
        retrieval_result_free(&res);
        rc = 0;
        goto done;
    }

    size_t vocab = hp->n_vocab;
    size_t per = (size_t)g.n_layers * g.n_kv_heads * prefix * g.head_dim;
    int32_t *tok = malloc(sizeof(int32_t) * o.ctx);
    float *k0 = malloc(sizeof(float) * per), *v0 = malloc(sizeof(float) * per);
    float *k = malloc(sizeof(float) * per), *v = malloc(sizeof(float) * per);
    float *ref = malloc(sizeof(float) * cont * vocab), *got = malloc(sizeof(float) * cont * vocab);
    double *lp1 = malloc(sizeof(double) * vocab), *lp2 = malloc(sizeof(double) * vocab);
    eng_context *ctx = eng_context_alloc(mt.model, o.ctx, o.threads);
    double ref_nll = 0;
    uint64_t ref_n = 0;
    int progress = cli_progress_enabled();
    if (!tok || !k0 || !v0 || !k || !v || !ref || !got || !lp1 || !lp2 || !ctx) { cli_fail("eval", "out of memory"); goto done_bufs; }
    for (uint32_t w = 0; w < o.windows; w++) {
        model_text_window(&mt, o.ctx, w, 1, tok);
        eng_context_set_n_past(ctx, 0);
        if (eng_decode(ctx, tok, prefix, NULL)) { cli_fail("eval", "prefill: %s", eng_context_error(ctx)); goto done_bufs; }
        model_ctx_read_kv(ctx, mt.model, prefix, k0, v0);
        /* reference continuation; logits i predict token prefix + i + 1 */
        if (eng_decode(ctx, tok + prefix, cont, ref)) { cli_fail("eval", "decode: %s", eng_context_error(ctx)); goto done_bufs; }
        double win_ref_nll = 0;
        for (uint32_t i = 0; i + 1 < cont; i++) {
            metrics_log_softmax(ref + (size_t)i * vocab, (uint32_t)vocab, lp1);
            win_ref_nll -= lp1[tok[prefix + i + 1]];
            ref_n++;
        }
        ref_nll += win_ref_nll;
        for (uint32_t mi = 0; mi < nm; mi++) {
            eval_method *m = &ms[mi];
            memcpy(k, k0, sizeof(float) * per);
            memcpy(v, v0, sizeof(float) * per);
            int bad = 0;
            if (m->identity) {
                double bits = 2.0 * 32.0 * (double)per; /* float32 storage */
                m->bits_coded += bits;
                m->bits_total += bits;
                m->fp16_coded += bits / 2;
                m->fp16_total += bits / 2;
            } else {
                bad = m->is_kvtc ? kvtc_roundtrip(m, &o, &g, mt.model, k, v, prefix, tok)
                                 : baseline_apply(m, &o, &g, k, v, prefix);
            }
            if (bad) goto done_bufs;
            model_ctx_write_kv(ctx, mt.model, prefix, k, v);
            if (eng_decode(ctx, tok + prefix, cont, got)) { cli_fail("eval", "decode: %s", eng_context_error(ctx)); goto done_bufs; }
            double nll0 = m->nll, kld0 = m->kld;
            uint64_t top0 = m->n_top1, pred0 = m->n_pred;
            score(m, ref, got, tok + prefix + 1, cont - 1, (uint32_t)vocab, lp1, lp2);
            double np = (double)(m->n_pred - pred0), dn = (m->nll - nll0 - win_ref_nll) / np,
                   kl = (m->kld - kld0) / np, t1 = (double)(m->n_top1 - top0) / np;
            m->w_dnll += dn, m->w_dnll2 += dn * dn, m->w_kl += kl, m->w_kl2 += kl * kl;
            m->w_top1 += t1, m->w_top1_2 += t1 * t1, m->n_win++;
            if (progress) fprintf(stderr, "\rkvtc eval: window %u/%u, method %u/%u   ", w + 1, o.windows, mi + 1, nm);
        }
    }
    if (progress) fputc('\n', stderr);
    double ref_ppl = exp(ref_nll / (double)ref_n);
    if (o.json) print_json(ms, nm, ref_ppl, &o, prefix, o.windows, ref_n);
    else {
        printf("%s: %u window(s) of %u tokens from the end of %s; prefix %u (sinks %u, window %u raw for KVTC and kivi2), "
               "%u scored continuation tokens per window\n",
               model_path, o.windows, o.ctx, text_path, prefix, o.n_sink, o.n_window, cont - 1);
        print_table(ms, nm, ref_ppl, stdout);
    }
    if (o.plot && write_plot(ms, nm, o.plot)) goto done_bufs;
    rc = 0;
done_bufs:
    eng_context_free(ctx);
    free(tok); free(k0); free(v0); free(k); free(v); free(ref); free(got); free(lp1); free(lp2);
done:
    for (uint32_t i = 0; i < nm; i++) eval_gpu_close(ms[i].gpu);
    for (uint32_t i = 0; i < nm; i++)
        if (ms[i].is_kvtc && (i + 1 == nm || ms[i + 1].basis != ms[i].basis)) kvtc_basis_free(ms[i].basis);
    free(ms);
    model_text_free(&mt);
    return rc;
}
