/* sensitivity.c - see sensitivity.h. */
#include "sensitivity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/metrics.h"
#include "internal.h"

/* Mean KL(ref || got) over c positions. */
static double mean_kl(const float *ref, const float *got, uint32_t c, uint32_t vocab, double *a, double *b) {
    double total = 0;
    for (uint32_t i = 0; i < c; i++) total += metrics_kl(ref + (size_t)i * vocab, got + (size_t)i * vocab, vocab, a, b);
    return total / c;
}

int sensitivity_measure(const model_text *mt, const sensitivity_opts *o, float *wk, float *wv, int verbose) {
    const eng_hparams *hp = eng_model_hparams(mt->model);
    uint32_t L = hp->n_layer, H = hp->n_head_kv, d = hp->head_dim, vocab = hp->n_vocab;
    uint32_t cont = o->continuation, prefix = o->ctx - cont;
    if (o->ctx <= cont + o->n_sink + o->n_window + 1) return cli_fail("sensitivity", "window too short");
    uint64_t avail = model_text_windows(mt, o->ctx);
    uint32_t windows = o->windows < avail ? o->windows : (uint32_t)avail;
    if (!windows) return cli_fail("sensitivity", "text shorter than one window");
    size_t per = (size_t)L * H * prefix * d;
    int32_t *tok = malloc(sizeof(int32_t) * o->ctx);
    float *k0 = malloc(sizeof(float) * per), *v0 = malloc(sizeof(float) * per);
    float *k = malloc(sizeof(float) * per), *v = malloc(sizeof(float) * per);
    float *ref = malloc(sizeof(float) * (size_t)cont * vocab), *got = malloc(sizeof(float) * (size_t)cont * vocab);
    double *a = malloc(sizeof(double) * vocab), *b = malloc(sizeof(double) * vocab);
    uint32_t nb = o->bands ? o->bands : 1;
    if (nb > d / 2) nb = d / 2;
    double *acc = calloc((size_t)2 * L * H * nb, sizeof(double));
    uint8_t *band_of = malloc(d);
    eng_context *ctx = eng_context_alloc(mt->model, o->ctx, o->threads);
    int rc = 1;
    kvi_rng rng = {12345};
    uint32_t t_lo = o->n_sink, t_hi = prefix - o->n_window;
    if (!tok || !k0 || !v0 || !k || !v || !ref || !got || !a || !b || !acc || !ctx || !band_of) { cli_fail("sensitivity", "out of memory"); goto done; }
    /* band of each dim: by RoPE pair index, so a band holds whole pairs */
    for (uint32_t j = 0; j < d; j++) {
        uint32_t pair = hp->rope_type == ENG_ROPE_NEOX ? j % (d / 2) : j / 2;
        band_of[j] = (uint8_t)((uint64_t)pair * nb / (d / 2));
    }
    for (uint32_t w = 0; w < windows; w++) {
        model_text_window(mt, o->ctx, w, 0, tok);
        eng_context_set_n_past(ctx, 0);
        if (eng_decode(ctx, tok, prefix, NULL)) { cli_fail("sensitivity", "%s", eng_context_error(ctx)); goto done; }
        model_ctx_read_kv(ctx, mt->model, prefix, k0, v0);
        if (eng_decode(ctx, tok + prefix, cont, ref)) { cli_fail("sensitivity", "%s", eng_context_error(ctx)); goto done; }
        for (uint32_t s = 0; s < 2; s++)
            for (uint32_t l = 0; l < L; l++)
                for (uint32_t h = 0; h < H; h++)
                    for (uint32_t bi = 0; bi < nb; bi++) {
                        memcpy(k, k0, sizeof(float) * per);
                        memcpy(v, v0, sizeof(float) * per);
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
                        if (eng_decode(ctx, tok + prefix, cont, got)) { cli_fail("sensitivity", "%s", eng_context_error(ctx)); goto done; }
                        double kl = mean_kl(ref, got, cont, vocab, a, b);
                        acc[(((size_t)s * L + l) * H + h) * nb + bi] += kl / (sigma * sigma * nd) / windows;
                    }
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
    eng_context_free(ctx);
    free(tok); free(k0); free(v0); free(k); free(v); free(ref); free(got); free(a); free(b); free(acc); free(band_of);
    return rc;
}
