/* cmd_calibrate.c - kvtc calibrate and kvtc capture. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calibration_text.h"
#include "cli.h"
#include "cmd_llama.h"
#include "eval/copy_task.h"
#include "internal.h"
#include "model_kv.h"
#include "sensitivity.h"

static const char calibrate_help[] =
    "usage: kvtc calibrate -o BASIS [options] CACHE.safetensors...\n"
    "       kvtc calibrate -o BASIS [options] --model M.gguf [--text T.txt]\n"
    "  --ratio R            a target ratio to plan for; repeatable (default 8 16 20 32 64)\n"
    "  --model M --text T   capture calibration caches from the model over the text; without\n"
    "                       --text: the project's mixed-domain text (novels, dictionary, manual\n"
    "                       pages, code, jargon; data/" CALIBRATION_TEXT_NAME ", installed in\n"
    "                       share/kvtc/), the most robust across domains (bench/RESULTS.md section 8)\n"
    "  --ctx N              window length for --model (default: the model's context; beyond it needs --force)\n"
    "  --force              allow --ctx beyond the model's trained context\n"
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
    "  --sens-bands N       RoPE frequency bands per head measured separately (default 1)\n"
    "  --sens-task ppl|copy-random  what the sensitivity KL is scored on: the continuation of\n"
    "                       perplexity windows (default), or the second copy of a random-token\n"
    "                       passage of the text repeated after a gap, as kvtc eval --task\n"
    "                       copy-random (weights what far lookups need); same as\n"
    "                       --sens-copy-frac 0 / 1\n"
    "  --sens-copy-frac F   mix: (1-F) * ppl weights + F * copy-random weights, each scaled to\n"
    "                       a mean of 1 (0 <= F <= 1; default 0)\n"
    "  --sens-copy-windows N  copy-random probes, 1..10000 (default 16: each scores only 63 tokens); probe i\n"
    "                       uses window i mod (windows in the text) with its own random passage\n"
    "  --sens-copy-distance D  tokens between the starts of the two 64-token copies\n"
    "                       (default ctx/8, kvtc eval's first default distance)\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_calibrate(int argc, char **argv) {
    if (lcpp_args_have_state_file(argc, argv)) return lcpp_cmd_calibrate(argc, argv);
    const char *out = NULL, *model_path = NULL, *text_path = NULL;
    const char **inputs = calloc((size_t)argc, sizeof(char *));
    int n_inputs = 0;
    double ratios[64];
    uint32_t n_ratios = 0, ctx = 0, windows = 16, sens_windows = 2, sens_bands = 1, sens_copy_windows = 0,
             sens_copy_distance = 0;
    double sens_copy_frac = 0;
    int sens_task_set = 0, sens_opt_set = 0; /* sens_opt_set: --sens-windows or --sens-bands given */
    int sensitivity = -1, recompute_set = 0, plain = 0, force = 0;
    float *wk = NULL, *wv = NULL;
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    int rc = 2;
    if (!inputs) return cli_fail("calibrate", "out of memory");
    enum { O_MODEL = 256, O_TEXT, O_RATIO, O_CTX, O_FORCE, O_WINDOWS, O_SINK, O_WINDOW, O_RECOMPUTE, O_MAX_TOKENS,
           O_RANK, O_SEED, O_PCA, O_NO_ROPE, O_SENS, O_PLAIN, O_SENS_BANDS, O_SENS_WINDOWS, O_SEPARATE_KV,
           O_PER_LAYER, O_UNIFORM, O_SENS_TASK, O_SENS_COPY_FRAC, O_SENS_COPY_WINDOWS, O_SENS_COPY_DISTANCE };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, O_MODEL}, {"text", required_argument, NULL, O_TEXT},
        {"ratio", required_argument, NULL, O_RATIO}, {"ctx", required_argument, NULL, O_CTX},
        {"force", no_argument, NULL, O_FORCE}, {"windows", required_argument, NULL, O_WINDOWS},
        {"sink", required_argument, NULL, O_SINK}, {"window", required_argument, NULL, O_WINDOW},
        {"recompute-layers", required_argument, NULL, O_RECOMPUTE},
        {"max-tokens", required_argument, NULL, O_MAX_TOKENS}, {"rank", required_argument, NULL, O_RANK},
        {"seed", required_argument, NULL, O_SEED}, {"pca", required_argument, NULL, O_PCA},
        {"no-rope-removal", no_argument, NULL, O_NO_ROPE}, {"sensitivity", no_argument, NULL, O_SENS},
        {"plain", no_argument, NULL, O_PLAIN}, {"sens-bands", required_argument, NULL, O_SENS_BANDS},
        {"sens-windows", required_argument, NULL, O_SENS_WINDOWS}, {"separate-kv", no_argument, NULL, O_SEPARATE_KV},
        {"per-layer-pca", no_argument, NULL, O_PER_LAYER}, {"uniform-bits", no_argument, NULL, O_UNIFORM},
        {"sens-task", required_argument, NULL, O_SENS_TASK}, {"sens-copy-frac", required_argument, NULL, O_SENS_COPY_FRAC},
        {"sens-copy-windows", required_argument, NULL, O_SENS_COPY_WINDOWS},
        {"sens-copy-distance", required_argument, NULL, O_SENS_COPY_DISTANCE},
        {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    opterr = 0;
    optind = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        const char *v = optarg;
        double r;
        switch (opt) {
        case 'h': fputs(calibrate_help, stdout); rc = 0; goto done_args;
        case 'o': out = v; break;
        case O_MODEL: model_path = v; break;
        case O_TEXT: text_path = v; break;
        case O_RATIO:
            if (cli_parse_double(v, &r) || r <= 1) { rc = cli_usage("calibrate", "--ratio needs a number > 1, not '%s'", v); goto done_args; }
            if (n_ratios == 64) { rc = cli_usage("calibrate", "at most 64 ratios"); goto done_args; }
            ratios[n_ratios++] = r;
            break;
        case O_CTX: if (cli_parse_u32(v, &ctx) || ctx < 2) { rc = cli_usage("calibrate", "--ctx needs a count >= 2"); goto done_args; } break;
        case O_FORCE: force = 1; break;
        case O_WINDOWS: if (cli_parse_u32(v, &windows) || !windows) { rc = cli_usage("calibrate", "--windows needs a count > 0"); goto done_args; } break;
        case O_SINK: if (cli_parse_u32(v, &o.n_sink)) { rc = cli_usage("calibrate", "--sink needs a count"); goto done_args; } break;
        case O_WINDOW: if (cli_parse_u32(v, &o.n_window)) { rc = cli_usage("calibrate", "--window needs a count"); goto done_args; } break;
        case O_RECOMPUTE:
            if (cli_parse_u32(v, &o.recompute_layers)) { rc = cli_usage("calibrate", "--recompute-layers needs a count"); goto done_args; }
            recompute_set = 1;
            break;
        case O_MAX_TOKENS: if (cli_parse_u64(v, &o.max_tokens) || !o.max_tokens) { rc = cli_usage("calibrate", "--max-tokens needs a count > 0"); goto done_args; } break;
        case O_RANK: if (cli_parse_u32(v, &o.max_rank) || !o.max_rank) { rc = cli_usage("calibrate", "--rank needs a count > 0"); goto done_args; } break;
        case O_SEED: if (cli_parse_u64(v, &o.seed)) { rc = cli_usage("calibrate", "--seed needs a number"); goto done_args; } break;
        case O_PCA:
            if (!strcmp(v, "auto")) o.pca_method = KVTC_PCA_AUTO;
            else if (!strcmp(v, "exact")) o.pca_method = KVTC_PCA_EXACT;
            else if (!strcmp(v, "randomized")) o.pca_method = KVTC_PCA_RANDOMIZED;
            else { rc = cli_usage("calibrate", "--pca takes auto, exact or randomized"); goto done_args; }
            break;
        case O_NO_ROPE: o.remove_rope = 0; break;
        case O_SENS: sensitivity = 1; break;
        case O_PLAIN: plain = 1; break;
        case O_SENS_BANDS: if (cli_parse_u32(v, &sens_bands) || !sens_bands || sens_bands > 64) { rc = cli_usage("calibrate", "--sens-bands needs 1..64"); goto done_args; } sens_opt_set = 1; break;
        case O_SENS_WINDOWS: if (cli_parse_u32(v, &sens_windows) || !sens_windows) { rc = cli_usage("calibrate", "--sens-windows needs a count > 0"); goto done_args; } sens_opt_set = 1; break;
        case O_SENS_TASK:
            if (sens_task_set) { rc = cli_usage("calibrate", "give --sens-task or --sens-copy-frac once"); goto done_args; }
            if (!strcmp(v, "ppl")) sens_copy_frac = 0;
            else if (!strcmp(v, "copy-random")) sens_copy_frac = 1;
            else { rc = cli_usage("calibrate", "--sens-task takes ppl or copy-random, not '%s'", v); goto done_args; }
            sens_task_set = 1;
            break;
        case O_SENS_COPY_FRAC:
            if (sens_task_set) { rc = cli_usage("calibrate", "give --sens-task or --sens-copy-frac once"); goto done_args; }
            if (cli_parse_double(v, &sens_copy_frac) || !(sens_copy_frac >= 0 && sens_copy_frac <= 1)) {
                rc = cli_usage("calibrate", "--sens-copy-frac needs a number in [0, 1], not '%s'", v);
                goto done_args;
            }
            sens_task_set = 1;
            break;
        case O_SENS_COPY_WINDOWS:
            if (cli_parse_u32(v, &sens_copy_windows) || !sens_copy_windows || sens_copy_windows > SENS_MAX_COPY_PROBES) {
                rc = cli_usage("calibrate", "--sens-copy-windows needs a count 1..%d, not '%s'", SENS_MAX_COPY_PROBES, v);
                goto done_args;
            }
            break;
        case O_SENS_COPY_DISTANCE:
            if (cli_parse_u32(v, &sens_copy_distance) || !sens_copy_distance) { rc = cli_usage("calibrate", "--sens-copy-distance needs a count > 0"); goto done_args; }
            break;
        case O_SEPARATE_KV: o.joint_kv_budget = 0; break;
        case O_PER_LAYER: o.pca_per_layer = 1; break;
        case O_UNIFORM: o.uniform_allocation = 1; break;
        case ':': rc = cli_usage("calibrate", "%s needs a value", argv[optind - 1]); goto done_args;
        default: rc = cli_usage("calibrate", "unknown option %s", argv[optind - 1]); goto done_args;
        }
    }
    for (; optind < argc; optind++) inputs[n_inputs++] = argv[optind];
    if (sensitivity == 1 && !model_path) { rc = cli_usage("calibrate", "--sensitivity needs --model"); goto done_args; }
    if (plain && sensitivity == 1) { rc = cli_usage("calibrate", "--plain and --sensitivity exclude each other"); goto done_args; }
    if ((sens_task_set || sens_opt_set || sens_copy_windows || sens_copy_distance) && (!model_path || plain)) {
        /* without sensitivity they would be ignored silently */
        rc = cli_usage("calibrate", "--sens-task, --sens-windows, --sens-bands, --sens-copy-* need --model (and not --plain)");
        goto done_args;
    }
    if ((sens_copy_windows || sens_copy_distance) && !(sens_copy_frac > 0)) {
        rc = cli_usage("calibrate", "--sens-copy-windows / --sens-copy-distance need --sens-task copy-random or --sens-copy-frac > 0");
        goto done_args;
    }
    /* With a model, default to the best measured configuration (bench/RESULTS.md):
     * sensitivity weighting and layer 0 recomputed. */
    if (sensitivity < 0) sensitivity = model_path && !plain;
    if (!recompute_set && model_path && !plain) o.recompute_layers = 1;
    if (!out || (!n_inputs && !model_path) || (n_inputs && model_path)) {
        rc = cli_usage("calibrate", "needs -o BASIS and either caches or --model");
        goto done_args;
    }
    /* the default text is chosen before the -o checks, which must protect it
     * as any other input (it is said below, once -o is known to be good) */
    char default_text[4096];
    if (model_path && !text_path) {
        if (calibration_text_default(default_text, sizeof default_text)) {
            rc = cli_fail("calibrate", "no --text given and the default calibration text is missing (neither %s): "
                          "pass --text", default_text);
            goto done_args;
        }
        text_path = default_text;
    }
    /* -o over the model, the text or a cache would replace an input with the basis */
    const char *same = cli_same_file(out, model_path) ? model_path : cli_same_file(out, text_path) ? text_path : NULL;
    for (int i = 0; !same && i < n_inputs; i++)
        if (cli_same_file(out, inputs[i])) same = inputs[i];
    if (same) {
        rc = cli_usage("calibrate", "-o %s is the input %s: give another output name", out, same);
        goto done_args;
    }
    /* a bad -o is found before minutes of calibration, not after */
    char out_err[512];
    if (cli_check_output(out, out_err, sizeof out_err)) {
        rc = cli_fail("calibrate", "%s", out_err);
        goto done_args;
    }
    /* the default text is said, never silently taken */
    if (text_path == default_text)
        fprintf(stderr, "kvtc: calibrate: no --text: calibrating on the mixed-domain text %s\n", text_path);
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
        if (cli_check_ctx("calibrate", ctx, eng_model_hparams(mt.model)->n_ctx_train, force)) { model_text_free(&mt); goto done_args; }
        /* a ratio whose budget holds no bit for a token (the stored token id
         * counts when layers are recomputed) fails only after the whole
         * calibration, as "calibration data without variance": said now */
        double units = 2.0 * g.n_layers * g.n_kv_heads * g.head_dim, id_units = o.recompute_layers ? 2.0 : 0.0;
        for (uint32_t i = 0; i < n_ratios; i++)
            if (floor(units / ratios[i]) - id_units < 1) {
                cli_usage("calibrate", "--ratio %g leaves no bit to code a token of this model (%.0f K and V values%s): "
                          "at most %g", ratios[i], units, id_units ? ", plus the token id of recomputed layers" : "",
                          floor(units / (1 + id_units) * 1000) / 1000); /* rounded down: the printed value works */
                model_text_free(&mt);
                rc = 2;
                goto done_args;
            }
        uint64_t avail = model_text_windows(&mt, ctx);
        if (avail < windows) {
            if (!avail) { cli_fail("calibrate", "%s is shorter than one window of %u tokens", text_path, ctx); model_text_free(&mt); goto done_args; }
            fprintf(stderr, "kvtc: calibrate: %s holds %llu window(s) of %u tokens: calibrating on %llu, not %u\n",
                    text_path, (unsigned long long)avail, ctx, (unsigned long long)avail, windows);
            windows = (uint32_t)avail;
        }
        if (sensitivity && sens_copy_frac < 1 && avail < sens_windows) /* said as for --windows, never silently cut */
            fprintf(stderr, "kvtc: calibrate: %s holds %llu window(s) of %u tokens: measuring sensitivity on %llu, "
                    "not --sens-windows %u\n", text_path, (unsigned long long)avail, ctx, (unsigned long long)avail,
                    sens_windows);
        if (sensitivity) {
            size_t p = (size_t)g.n_layers * g.n_kv_heads * g.head_dim;
            sensitivity_opts so = {ctx, sens_windows, ctx / 16, o.n_sink, o.n_window, 0.1, sens_bands, 2,
                                   sens_copy_frac, sens_copy_windows ? sens_copy_windows : 16, 64, sens_copy_distance ? sens_copy_distance : ctx / 8};
            const char *bad = sensitivity_opts_check(&so);
            copy_layout probe = {ctx, so.copy_passage, so.copy_distance, COPY_PASSAGE_RANDOM};
            if (bad && so.copy_frac > 0 && copy_layout_invalid(&probe, so.n_sink, so.n_window)) {
                /* the layout's bounds in numbers, and what to change */
                long lo = (long)so.copy_passage + so.n_window, hi = (long)ctx - so.copy_passage - so.n_sink - 1;
                cli_usage("calibrate", "copy probes at --ctx %u: the distance %u must be in [%ld, %ld] (passage %u + "
                          "window %u .. ctx - passage - sinks - 1)%s", ctx, so.copy_distance, lo, hi,
                          so.copy_passage, so.n_window,
                          lo > hi ? ": the context is too short, raise --ctx or lower --window"
                                  : ": set --sens-copy-distance in that range");
                model_text_free(&mt);
                rc = 2;
                goto done_args;
            }
            if (bad) {
                cli_usage("calibrate", "sensitivity at --ctx %u: %s", ctx, bad);
                model_text_free(&mt);
                rc = 2;
                goto done_args;
            }
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
        uint32_t w = 0;
        for (; w < windows; w++) {
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
        if (kvtc_calibrator_rows(cal) == 0) {
            /* every window captured, yet nothing to calibrate on: it used to exit 1 without a word */
            if (w == windows)
                cli_fail("calibrate", "no calibration rows: a window of %u tokens keeps none outside its %u sink and "
                         "%u window tokens (raise --ctx or lower --sink / --window)", ctx, o.n_sink, o.n_window);
            goto done;
        }
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
    "  and writes its KV cache (keys with RoPE applied), positions and token ids.\n"
    "  --force          allow --ctx beyond the model's trained context\n";

int cmd_capture(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out = NULL;
    uint32_t ctx = 0, widx = 0;
    int force = 0;
    kvtc_dtype dt = KVTC_DTYPE_F16;
    enum { O_MODEL = 256, O_TEXT, O_CTX, O_WINDOW_INDEX, O_DTYPE, O_FORCE };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, O_MODEL}, {"text", required_argument, NULL, O_TEXT},
        {"ctx", required_argument, NULL, O_CTX}, {"window-index", required_argument, NULL, O_WINDOW_INDEX},
        {"dtype", required_argument, NULL, O_DTYPE}, {"force", no_argument, NULL, O_FORCE},
        {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    opterr = 0;
    optind = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        const char *v = optarg;
        switch (opt) {
        case 'h': fputs(capture_help, stdout); return 0;
        case 'o': out = v; break;
        case O_MODEL: model_path = v; break;
        case O_TEXT: text_path = v; break;
        case O_CTX: if (cli_parse_u32(v, &ctx) || ctx < 2) return cli_usage("capture", "--ctx needs a count >= 2"); break;
        case O_FORCE: force = 1; break;
        case O_WINDOW_INDEX:
            if (cli_parse_u32(v, &widx)) return cli_usage("capture", "--window-index needs a whole number 0..4294967295, not '%s'", v);
            break;
        case O_DTYPE:
            if (!strcmp(v, "f16")) dt = KVTC_DTYPE_F16;
            else if (!strcmp(v, "bf16")) dt = KVTC_DTYPE_BF16;
            else if (!strcmp(v, "f32")) dt = KVTC_DTYPE_F32;
            else return cli_usage("capture", "--dtype takes f16, bf16 or f32");
            break;
        case ':': return cli_usage("capture", "%s needs a value", argv[optind - 1]);
        default: return cli_usage("capture", "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage("capture", "unexpected argument %s", argv[optind]);
    if (!model_path || !text_path || !out) return cli_usage("capture", "needs --model, --text and -o");
    model_text mt;
    if (model_text_load(&mt, model_path, text_path)) return 1;
    if (!ctx) ctx = eng_model_hparams(mt.model)->n_ctx_train;
    if (cli_check_ctx("capture", ctx, eng_model_hparams(mt.model)->n_ctx_train, force)) { model_text_free(&mt); return 1; }
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
