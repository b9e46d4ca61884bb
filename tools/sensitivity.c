/* sensitivity.c - see sensitivity.h. */
#include "sensitivity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/copy_task.h"
#include "eval/metrics.h"
#include "internal.h"

/* Mean KL(ref || got) over c positions. */
static double mean_kl(const float *ref, const float *got, uint32_t c, uint32_t vocab, double *a, double *b) {
    double total = 0;
    for (uint32_t i = 0; i < c; i++) total += metrics_kl(ref + (size_t)i * vocab, got + (size_t)i * vocab, vocab, a, b);
    return total / c;
}

/* One probe sequence: tok[0 .. prefix) is prefilled and noised, tok[prefix ..
 * prefix + cont) decoded, and the KL of its first `scored` rows measured. */
typedef struct probe {
    uint32_t prefix, cont, scored;
} probe;

/* Probe w of a task. ppl: window w of the text, its last ctx/16 tokens
 * scored. copy: the eval's copy-random layout (copy_task.h) over window w,
 * the passage drawn from the whole text; the P-1 predictions inside the
 * second copy scored, the ones a far lookup decides. */
static int build_probe(const model_text *mt, const sensitivity_opts *o, sensitivity_task task, uint32_t w,
                       int32_t *win, int32_t *pass_buf, int32_t *tok, probe *p) {
    uint64_t avail = model_text_windows(mt, o->ctx);
    if (task == SENS_TASK_PPL) {
        model_text_window(mt, o->ctx, w, 0, tok);
        p->cont = o->continuation;
        p->prefix = o->ctx - p->cont;
        p->scored = p->cont;
        return 0;
    }
    copy_layout l = {o->ctx, o->copy_passage, o->copy_distance, COPY_PASSAGE_RANDOM};
    /* more probes than windows reuse a window with another random passage */
    model_text_window(mt, o->ctx, w % avail, 0, win);
    p->prefix = copy_build(&l, win, mt->ids, mt->n_ids, 0xC0B1Eull + w, 0, pass_buf, tok);
    p->cont = o->copy_passage;
    p->scored = o->copy_passage - 1;
    return p->prefix ? 0 : -1;
}

/* acc[((s * L + l) * H + h) * nb + band] += KL / (sigma^2 * coordinates) per
 * probe, averaged over the probes of one task. */
static int measure_task(const model_text *mt, const sensitivity_opts *o, sensitivity_task task, uint32_t probes,
                        uint32_t nb, const uint8_t *band_of, double *acc, int verbose) {
    const eng_hparams *hp = eng_model_hparams(mt->model);
    uint32_t L = hp->n_layer, H = hp->n_head_kv, d = hp->head_dim, vocab = hp->n_vocab;
    uint32_t max_cont = o->continuation > o->copy_passage ? o->continuation : o->copy_passage;
    size_t per = (size_t)L * H * o->ctx * d;
    int32_t *tok = malloc(sizeof(int32_t) * o->ctx), *win = malloc(sizeof(int32_t) * o->ctx);
    int32_t *pass_buf = malloc(sizeof(int32_t) * 2 * ((size_t)o->copy_passage + 1));
    float *k0 = malloc(sizeof(float) * per), *v0 = malloc(sizeof(float) * per);
    float *k = malloc(sizeof(float) * per), *v = malloc(sizeof(float) * per);
    float *ref = malloc(sizeof(float) * (size_t)max_cont * vocab), *got = malloc(sizeof(float) * (size_t)max_cont * vocab);
    double *a = malloc(sizeof(double) * vocab), *b = malloc(sizeof(double) * vocab);
    eng_context *ctx = eng_context_alloc(mt->model, o->ctx, o->threads);
    int rc = 1;
    kvi_rng rng = {12345};
    const char *what = task == SENS_TASK_PPL ? "sensitivity" : "sensitivity (copy-random)";
    if (!tok || !win || !pass_buf || !k0 || !v0 || !k || !v || !ref || !got || !a || !b || !ctx) {
        cli_fail(what, "out of memory");
        goto done;
    }
    for (uint32_t w = 0; w < probes; w++) {
        probe p;
        if (build_probe(mt, o, task, w, win, pass_buf, tok, &p)) { cli_fail(what, "bad copy layout"); goto done; }
        uint32_t prefix = p.prefix, t_lo = o->n_sink, t_hi = prefix - o->n_window;
        size_t pn = (size_t)L * H * prefix * d;
        eng_context_set_n_past(ctx, 0);
        if (eng_decode(ctx, tok, prefix, NULL)) { cli_fail(what, "%s", eng_context_error(ctx)); goto done; }
        model_ctx_read_kv(ctx, mt->model, prefix, k0, v0);
        if (eng_decode(ctx, tok + prefix, p.cont, ref)) { cli_fail(what, "%s", eng_context_error(ctx)); goto done; }
        for (uint32_t s = 0; s < 2; s++)
            for (uint32_t l = 0; l < L; l++)
                for (uint32_t h = 0; h < H; h++)
                    for (uint32_t bi = 0; bi < nb; bi++) {
                        memcpy(k, k0, sizeof(float) * pn);
                        memcpy(v, v0, sizeof(float) * pn);
                        float *blk = (s ? v : k) + ((size_t)l * H + h) * prefix * d;
                        double ms = 0;
                        uint32_t nd = 0;
                        for (uint32_t j = 0; j < d; j++) nd += band_of[j] == bi;
                        for (uint32_t t = t_lo; t < t_hi; t++)
                            for (uint32_t j = 0; j < d; j++)
                                if (band_of[j] == bi) ms += (double)blk[(size_t)t * d + j] * blk[(size_t)t * d + j];
                        double sigma = o->noise_rel * sqrt(ms / ((double)(t_hi - t_lo) * nd));
                        if (!(sigma > 0)) sigma = 1e-6;
                        for (uint32_t t = t_lo; t < t_hi; t++)
                            for (uint32_t j = 0; j < d; j++)
                                if (band_of[j] == bi) blk[(size_t)t * d + j] += (float)(sigma * kvi_rng_gauss(&rng));
                        model_ctx_write_kv(ctx, mt->model, prefix, k, v);
                        if (eng_decode(ctx, tok + prefix, p.cont, got)) { cli_fail(what, "%s", eng_context_error(ctx)); goto done; }
                        double kl = mean_kl(ref, got, p.scored, vocab, a, b);
                        acc[(((size_t)s * L + l) * H + h) * nb + bi] += kl / (sigma * sigma * nd) / probes;
                    }
        if (verbose) fprintf(stderr, "\rkvtc: %s probe %u/%u", what, w + 1, probes);
    }
    if (verbose) fputc('\n', stderr);
    rc = 0;
done:
    eng_context_free(ctx);
    free(tok); free(win); free(pass_buf); free(k0); free(v0); free(k); free(v); free(ref); free(got); free(a); free(b);
    return rc;
}

/* Mean over coordinates of the measured weights (each block spans the
 * coordinates of its band), so that two tasks' KL scales can be mixed. */
static double mean_weight(const double *acc, size_t n_blocks, uint32_t nb, const uint32_t *band_dims, uint32_t d) {
    double sum = 0;
    for (size_t i = 0; i < n_blocks; i++) sum += acc[i] * band_dims[i % nb];
    return sum / ((double)n_blocks / nb * d);
}

const char *sensitivity_opts_check(const sensitivity_opts *o) {
    if (!(o->copy_frac >= 0.0 && o->copy_frac <= 1.0)) return "the copy share must be in [0, 1]";
    if (o->ctx <= o->continuation + o->n_sink + o->n_window + 1) return "window too short";
    if (o->copy_frac > 0) {
        if (!o->copy_windows || o->copy_windows > SENS_MAX_COPY_PROBES) return "copy probes: needs a count 1..10000";
        copy_layout l = {o->ctx, o->copy_passage, o->copy_distance, COPY_PASSAGE_RANDOM};
        if (copy_layout_invalid(&l, o->n_sink, o->n_window))
            return "copy probe: needs passage >= 2 and passage + window <= distance <= ctx - passage - sinks - 1";
    }
    return NULL;
}

int sensitivity_measure(const model_text *mt, const sensitivity_opts *o, float *wk, float *wv, int verbose) {
    const eng_hparams *hp = eng_model_hparams(mt->model);
    uint32_t L = hp->n_layer, H = hp->n_head_kv, d = hp->head_dim;
    const char *bad = sensitivity_opts_check(o);
    if (bad) return cli_fail("sensitivity", "%s", bad);
    uint64_t avail = model_text_windows(mt, o->ctx);
    if (!avail) return cli_fail("sensitivity", "text shorter than one window");
    /* ppl probes are distinct windows; copy probes may reuse a window */
    uint32_t ppl_probes = o->windows < avail ? o->windows : (uint32_t)avail;
    uint32_t copy_probes = o->copy_windows;
    uint32_t nb = o->bands ? o->bands : 1;
    if (nb > d / 2) nb = d / 2;
    size_t n_blocks = (size_t)2 * L * H * nb;
    double *acc = calloc(n_blocks, sizeof(double)), *acc_copy = calloc(n_blocks, sizeof(double));
    uint8_t *band_of = malloc(d);
    uint32_t *band_dims = calloc(nb, sizeof(uint32_t));
    int rc = 1;
    if (!acc || !acc_copy || !band_of || !band_dims) { cli_fail("sensitivity", "out of memory"); goto done; }
    /* band of each dim: by RoPE pair index, so a band holds whole pairs */
    for (uint32_t j = 0; j < d; j++) {
        uint32_t pair = hp->rope_type == ENG_ROPE_NEOX ? j % (d / 2) : j / 2;
        band_of[j] = (uint8_t)((uint64_t)pair * nb / (d / 2));
        band_dims[band_of[j]]++;
    }
    if (o->copy_frac < 1 && measure_task(mt, o, SENS_TASK_PPL, ppl_probes, nb, band_of, acc, verbose)) goto done;
    if (o->copy_frac > 0 && measure_task(mt, o, SENS_TASK_COPY_RANDOM, copy_probes, nb, band_of, acc_copy, verbose))
        goto done;
    if (o->copy_frac >= 1) {
        memcpy(acc, acc_copy, sizeof(double) * n_blocks);
    } else if (o->copy_frac > 0) {
        /* each task's weights scaled to a mean of 1 first: the KL per unit of
         * noise of a copy probe and of a ppl window differ in scale, and the
         * share F must mean the same whatever the scales */
        double mp = mean_weight(acc, n_blocks, nb, band_dims, d), mc = mean_weight(acc_copy, n_blocks, nb, band_dims, d);
        for (size_t i = 0; i < n_blocks; i++)
            acc[i] = (1 - o->copy_frac) * (mp > 0 ? acc[i] / mp : 0) + o->copy_frac * (mc > 0 ? acc_copy[i] / mc : 0);
    }
    for (uint32_t s = 0; s < 2; s++)
        for (uint32_t l = 0; l < L; l++) {
            for (uint32_t h = 0; h < H; h++) {
                float *dst = (s ? wv : wk) + ((size_t)l * H + h) * d;
                for (uint32_t j = 0; j < d; j++) {
                    double wgt = acc[(((size_t)s * L + l) * H + h) * nb + band_of[j]];
                    /* an insensitive group: weight ~0 but still positive */
                    dst[j] = (float)(wgt > 1e-12 && isfinite(wgt) ? wgt : 1e-12);
                }
            }
            if (verbose) {
                fprintf(stderr, "kvtc: sensitivity %s layer %2u:", s ? "V" : "K", l);
                for (uint32_t h = 0; h < H; h++)
                    for (uint32_t bi = 0; bi < nb; bi++) fprintf(stderr, " %.2e", acc[(((size_t)s * L + l) * H + h) * nb + bi]);
                fputc('\n', stderr);
            }
        }
    rc = 0;
done:
    free(acc); free(acc_copy); free(band_of); free(band_dims);
    return rc;
}
