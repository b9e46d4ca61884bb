/* cmd_calibrate.c - kvtc calibrate and kvtc capture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "io/cache_file.h"
#include "model_kv.h"
#include "sensitivity.h"

static const char calibrate_help[] =
    "usage: kvtc calibrate -o BASIS [options] CACHE.safetensors...\n"
    "       kvtc calibrate -o BASIS [options] --model M.gguf --text T.txt\n"
    "  --ratio R            a target ratio to plan for; repeatable (default 8 16 20 32 64)\n"
    "  --model M --text T   capture calibration caches from the model over the text\n"
    "  --ctx N              window length for --model (default: the model's context)\n"
    "  --windows N          windows of the text to use, from its start (default 16)\n"
    "  --sink N / --window N  tokens at the start / end of each cache left out (default 4 / 128)\n"
    "  --recompute-layers M leading layers not stored; decoders recompute them from token ids\n"
    "                       with the model (default: 1 with --model, 0 with cache files)\n"
    "  --max-tokens N       calibration rows kept (reservoir sampled, default 65536)\n"
    "  --pca auto|exact|randomized   (default auto: exact up to 4096 values per token)\n"
    "  --rank N             components of the randomized PCA (default 2048)\n"
    "  --no-rope-removal    keep RoPE on keys during PCA (ablation)\n"
    "  --separate-kv        split the bit budget equally between K and V (ablation)\n"
    "  --per-layer-pca      one PCA per layer instead of across layers (ablation)\n"
    "  --uniform-bits       one bit width for all kept components instead of the DP (ablation)\n"
    "  --seed S             sampling and randomized-PCA seed (default 1)\n"
    "  --sensitivity        weight the distortion by the model's measured KL sensitivity per\n"
    "                       layer, head and K/V, stored in the basis (default with --model)\n"
    "  --plain              the paper's objective: plain squared error, no recomputed layer\n"
    "  --sens-windows N     windows used to measure sensitivity (default 2)\n"
    "  --sens-bands N       RoPE frequency bands per head measured separately (default 1)\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_calibrate(int argc, char **argv) {
    const char *out = NULL, *model_path = NULL, *text_path = NULL;
    const char **inputs = calloc((size_t)argc, sizeof(char *));
    int n_inputs = 0;
    double ratios[64];
    uint32_t n_ratios = 0, ctx = 0, windows = 16, sens_windows = 2, sens_bands = 1;
    int sensitivity = -1, recompute_set = 0, plain = 0;
    float *wk = NULL, *wv = NULL;
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    int rc = 2;
    if (!inputs) return cli_fail("calibrate", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(calibrate_help, stdout); rc = 0; goto done_args; }
        if (!strcmp(a, "-o")) { if (!(out = cli_value(argc, argv, &i))) { rc = cli_usage("calibrate", "%s needs a value", a); goto done_args; } }
        else if (!strcmp(a, "--model")) { if (!(model_path = cli_value(argc, argv, &i))) { rc = cli_usage("calibrate", "%s needs a value", a); goto done_args; } }
        else if (!strcmp(a, "--text")) { if (!(text_path = cli_value(argc, argv, &i))) { rc = cli_usage("calibrate", "%s needs a value", a); goto done_args; } }
        else if (!strcmp(a, "--ratio")) {
            double r;
            if (!(v = cli_value(argc, argv, &i)) || cli_parse_double(v, &r) || r <= 1) { rc = cli_usage("calibrate", "--ratio needs a number > 1"); goto done_args; }
            if (n_ratios == 64) { rc = cli_usage("calibrate", "at most 64 ratios"); goto done_args; }
            ratios[n_ratios++] = r;
        }
        else if (!strcmp(a, "--ctx")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &ctx) || ctx < 2) { rc = cli_usage("calibrate", "--ctx needs a count >= 2"); goto done_args; } }
        else if (!strcmp(a, "--windows")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &windows) || !windows) { rc = cli_usage("calibrate", "--windows needs a count > 0"); goto done_args; } }
        else if (!strcmp(a, "--sink")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.n_sink)) { rc = cli_usage("calibrate", "--sink needs a count"); goto done_args; } }
        else if (!strcmp(a, "--window")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.n_window)) { rc = cli_usage("calibrate", "--window needs a count"); goto done_args; } }
        else if (!strcmp(a, "--recompute-layers")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.recompute_layers)) { rc = cli_usage("calibrate", "--recompute-layers needs a count"); goto done_args; } recompute_set = 1; }
        else if (!strcmp(a, "--max-tokens")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u64(v, &o.max_tokens) || !o.max_tokens) { rc = cli_usage("calibrate", "--max-tokens needs a count > 0"); goto done_args; } }
        else if (!strcmp(a, "--rank")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &o.max_rank) || !o.max_rank) { rc = cli_usage("calibrate", "--rank needs a count > 0"); goto done_args; } }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u64(v, &o.seed)) { rc = cli_usage("calibrate", "--seed needs a number"); goto done_args; } }
        else if (!strcmp(a, "--pca")) {
            if (!(v = cli_value(argc, argv, &i))) { rc = cli_usage("calibrate", "%s needs a value", a); goto done_args; }
            if (!strcmp(v, "auto")) o.pca_method = KVTC_PCA_AUTO;
            else if (!strcmp(v, "exact")) o.pca_method = KVTC_PCA_EXACT;
            else if (!strcmp(v, "randomized")) o.pca_method = KVTC_PCA_RANDOMIZED;
            else { rc = cli_usage("calibrate", "--pca takes auto, exact or randomized"); goto done_args; }
        }
        else if (!strcmp(a, "--no-rope-removal")) o.remove_rope = 0;
        else if (!strcmp(a, "--sensitivity")) sensitivity = 1;
        else if (!strcmp(a, "--plain")) plain = 1;
        else if (!strcmp(a, "--sens-bands")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &sens_bands) || !sens_bands || sens_bands > 64) { rc = cli_usage("calibrate", "--sens-bands needs 1..64"); goto done_args; } }
        else if (!strcmp(a, "--sens-windows")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &sens_windows) || !sens_windows) { rc = cli_usage("calibrate", "--sens-windows needs a count > 0"); goto done_args; } }
        else if (!strcmp(a, "--separate-kv")) o.joint_kv_budget = 0;
        else if (!strcmp(a, "--per-layer-pca")) o.pca_per_layer = 1;
        else if (!strcmp(a, "--uniform-bits")) o.uniform_allocation = 1;
        else if (a[0] == '-') { rc = cli_usage("calibrate", "unknown option %s (see --help)", a); goto done_args; }
        else inputs[n_inputs++] = a;
    }
    if (sensitivity == 1 && !model_path) { rc = cli_usage("calibrate", "--sensitivity needs --model and --text"); goto done_args; }
    if (plain && sensitivity == 1) { rc = cli_usage("calibrate", "--plain and --sensitivity exclude each other"); goto done_args; }
    /* With a model, default to the best measured configuration (bench/RESULTS.md):
     * sensitivity weighting and layer 0 recomputed. */
    if (sensitivity < 0) sensitivity = model_path && !plain;
    if (!recompute_set && model_path && !plain) o.recompute_layers = 1;
    if (!out || (!n_inputs && !model_path) || (model_path && !text_path) || (n_inputs && model_path)) {
        rc = cli_usage("calibrate", "needs -o BASIS and either caches or --model with --text");
        goto done_args;
    }
    if (!n_ratios) {
        static const double dflt[] = {8, 16, 20, 32, 64};
        for (n_ratios = 0; n_ratios < 5; n_ratios++) ratios[n_ratios] = dflt[n_ratios];
    }
    rc = 1;
    double t0 = now_s();
    kvtc_calibrator *cal = NULL;
    kvtc_basis *basis = NULL;
    kvtc_result r;
    char err[512];
    int progress = cli_progress_enabled();
    if (model_path) {
        model_text mt;
        if (model_text_load(&mt, model_path, text_path)) goto done_args;
        kvtc_geometry g = model_geometry(mt.model);
        if (!ctx) ctx = eng_model_hparams(mt.model)->n_ctx_train;
        uint64_t avail = model_text_windows(&mt, ctx);
        if (avail < windows) {
            if (!avail) { cli_fail("calibrate", "%s is shorter than one window of %u tokens", text_path, ctx); model_text_free(&mt); goto done_args; }
            windows = (uint32_t)avail;
        }
        if (sensitivity) {
            size_t p = (size_t)g.n_layers * g.n_kv_heads * g.head_dim;
            sensitivity_opts so = {ctx, sens_windows, ctx / 16, o.n_sink, o.n_window, 0.1, sens_bands, 2};
            wk = malloc(sizeof(float) * p);
            wv = malloc(sizeof(float) * p);
            if (!wk || !wv || sensitivity_measure(&mt, &so, wk, wv, progress)) {
                model_text_free(&mt);
                if (!wk || !wv) cli_fail("calibrate", "out of memory");
                goto done_args;
            }
            o.weights_k = wk;
            o.weights_v = wv;
        }
        int32_t *tok = malloc(sizeof(int32_t) * ctx);
        if (!tok || (r = kvtc_calibrator_alloc(&g, &o, &cal))) {
            free(tok);
            model_text_free(&mt);
            cli_fail("calibrate", "%s", tok ? kvtc_result_string(r) : "out of memory");
            goto done_args;
        }
        for (uint32_t w = 0; w < windows; w++) {
            cache_file cf;
            model_text_window(&mt, ctx, w, 0, tok);
            if (model_capture(mt.model, tok, ctx, KVTC_DTYPE_F32, 2, &cf)) break;
            r = kvtc_calibrator_add(cal, &cf.cache);
            cache_file_free(&cf);
            if (r) { cli_fail("calibrate", "window %u: %s", w, kvtc_result_string(r)); break; }
            if (progress) fprintf(stderr, "\rkvtc: captured window %u/%u", w + 1, windows);
        }
        if (progress) fputc('\n', stderr);
        free(tok);
        model_text_free(&mt);
        if (kvtc_calibrator_rows(cal) == 0) goto done;
    } else {
        for (int i = 0; i < n_inputs; i++) {
            void *buf;
            size_t size;
            cache_file cf;
            if (cli_read_file(inputs[i], &buf, &size, err, sizeof err)) { cli_fail("calibrate", "%s", err); goto done; }
            r = cache_file_parse(buf, size, &cf);
            free(buf);
            if (r) { cli_fail("calibrate", "%s: %s", inputs[i], kvtc_result_string(r)); goto done; }
            if (!cal && (r = kvtc_calibrator_alloc(&cf.cache.geometry, &o, &cal))) {
                cache_file_free(&cf);
                cli_fail("calibrate", "%s", kvtc_result_string(r));
                goto done;
            }
            r = kvtc_calibrator_add(cal, &cf.cache);
            cache_file_free(&cf);
            if (r) { cli_fail("calibrate", "%s: %s", inputs[i], kvtc_result_string(r)); goto done; }
        }
    }
    if (progress) fprintf(stderr, "kvtc: %llu calibration rows, computing PCA and plans\n", (unsigned long long)kvtc_calibrator_rows(cal));
    if ((r = kvtc_calibrator_finish(cal, ratios, n_ratios, &basis))) {
        cli_fail("calibrate", "%s%s", kvtc_result_string(r),
                 r == KVTC_ERR_INVALID_ARGUMENT ? " (fewer than 2 calibration tokens outside sinks and windows?)" : "");
        goto done;
    }
    size_t n = kvtc_basis_serialized_size(basis), written;
    void *sbuf = malloc(n ? n : 1);
    if (!sbuf || (r = kvtc_basis_serialize(basis, sbuf, n, &written))) {
        free(sbuf);
        cli_fail("calibrate", "%s", sbuf ? kvtc_result_string(r) : "out of memory");
        goto done;
    }
    if (cli_write_file(out, sbuf, written, err, sizeof err)) { free(sbuf); cli_fail("calibrate", "%s", err); goto done; }
    free(sbuf);
    fprintf(stderr, "kvtc: basis %s: %llu rows, %u plans, %zu bytes, %.1f s\n", out,
            (unsigned long long)kvtc_calibrator_rows(cal), n_ratios, written, now_s() - t0);
    rc = 0;
done:
    kvtc_basis_free(basis);
    kvtc_calibrator_free(cal);
done_args:
    free(wk);
    free(wv);
    free(inputs);
    return rc;
}

static const char capture_help[] =
    "usage: kvtc capture --model M.gguf --text T.txt [--ctx N] [--window-index W] [--dtype f16|bf16|f32] -o KV.safetensors\n"
    "  Runs the model over [<s>] + the first N-1 tokens of window W of the text (default 0)\n"
    "  and writes its KV cache (keys with RoPE applied), positions and token ids.\n";

int cmd_capture(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out = NULL;
    uint32_t ctx = 0, widx = 0;
    kvtc_dtype dt = KVTC_DTYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(capture_help, stdout); return 0; }
        if (!strcmp(a, "--model")) { if (!(model_path = cli_value(argc, argv, &i))) return cli_usage("capture", "%s needs a value", a); }
        else if (!strcmp(a, "--text")) { if (!(text_path = cli_value(argc, argv, &i))) return cli_usage("capture", "%s needs a value", a); }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value(argc, argv, &i))) return cli_usage("capture", "%s needs a value", a); }
        else if (!strcmp(a, "--ctx")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &ctx) || ctx < 2) return cli_usage("capture", "--ctx needs a count >= 2"); }
        else if (!strcmp(a, "--window-index")) { if (!(v = cli_value(argc, argv, &i)) || cli_parse_u32(v, &widx)) return cli_usage("capture", "--window-index needs a number"); }
        else if (!strcmp(a, "--dtype")) {
            if (!(v = cli_value(argc, argv, &i))) return cli_usage("capture", "%s needs a value", a);
            if (!strcmp(v, "f16")) dt = KVTC_DTYPE_F16;
            else if (!strcmp(v, "bf16")) dt = KVTC_DTYPE_BF16;
            else if (!strcmp(v, "f32")) dt = KVTC_DTYPE_F32;
            else return cli_usage("capture", "--dtype takes f16, bf16 or f32");
        }
        else return cli_usage("capture", "unknown argument %s (see --help)", a);
    }
    if (!model_path || !text_path || !out) return cli_usage("capture", "needs --model, --text and -o");
    model_text mt;
    if (model_text_load(&mt, model_path, text_path)) return 1;
    if (!ctx) ctx = eng_model_hparams(mt.model)->n_ctx_train;
    int rc = 1;
    int32_t *tok = malloc(sizeof(int32_t) * ctx);
    cache_file cf;
    memset(&cf, 0, sizeof cf);
    void *buf = NULL;
    size_t size;
    char err[512];
    kvtc_result r;
    if (!tok) { cli_fail("capture", "out of memory"); goto done; }
    if (model_text_windows(&mt, ctx) <= widx) { cli_fail("capture", "%s has %llu window(s) of %u tokens; index %u is out of range", text_path, (unsigned long long)model_text_windows(&mt, ctx), ctx, widx); goto done; }
    model_text_window(&mt, ctx, widx, 0, tok);
    if (model_capture(mt.model, tok, ctx, dt, 2, &cf)) goto done;
    if ((r = cache_file_serialize(&cf.cache, &buf, &size))) { cli_fail("capture", "%s", kvtc_result_string(r)); goto done; }
    if (cli_write_file(out, buf, size, err, sizeof err)) { cli_fail("capture", "%s", err); goto done; }
    rc = 0;
done:
    free(tok);
    free(buf);
    cache_file_free(&cf);
    model_text_free(&mt);
    return rc;
}
