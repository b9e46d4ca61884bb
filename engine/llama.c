/*
 * llama.c - the forward pass: contexts with a float32 KV cache, batched
 * decoding, and K/V extraction without a context.
 *
 * One code path (forward_ubatch) serves eng_decode and
 * eng_compute_kv_prefix_layers, so both perform the same float operations
 * in the same order: projections are cblas_sgemm over a micro-batch of up to
 * ENG_UBATCH tokens, attention is sgemm per (head, block of ATT_QBLOCK
 * queries) with the softmax rows spread over pthreads. Every row is computed
 * by one thread in full, so results do not depend on the number of threads.
 */
#include "llama_internal.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Queries per attention block: bounds the score scratch (ATT_QBLOCK x n_ctx
 * floats) and the wasted upper triangle per block, while keeping the sgemms
 * large enough for OpenBLAS to thread them. */
#define ATT_QBLOCK 256

/* ======================================================================== */
/* Scratch and cache views                                                  */
/* ======================================================================== */

/* Activations of one micro-batch plus attention scores. */
typedef struct scratch {
    uint32_t rows;       /* token capacity, <= ENG_UBATCH */
    uint32_t n_ctx;      /* key capacity of the score rows */
    float *x;            /* [rows][n_embd] residual stream */
    float *xn;           /* [rows][n_embd] normalized sublayer input, then sublayer output */
    float *q;            /* [rows][n_head * head_dim] queries, RoPE applied */
    float *k;            /* [rows][n_head_kv * head_dim] new keys, RoPE applied */
    float *v;            /* [rows][n_head_kv * head_dim] new values */
    float *att;          /* [rows][n_head * head_dim] attention output, heads side by side */
    float *gate;         /* [rows][n_ff] gate projection, then silu(gate) * up */
    float *up;           /* [rows][n_ff] up projection */
    float *rope;         /* [rows][rope_dim] (cos, sin) per rotated pair and token */
    int64_t *pos;        /* [rows] positions of the decode path */
    float *scores;       /* [ATT_QBLOCK][n_ctx] attention scores / probabilities */
} scratch;

/* Where a forward pass reads and writes K/V: per layer [n_head_kv][n_ctx][head_dim]. */
typedef struct kv_view {
    float *k;            /* [n_layers][n_head_kv][n_ctx][head_dim] */
    float *v;            /* same layout as k */
    uint32_t n_ctx;      /* positions per head (the row stride) */
} kv_view;

static void scratch_free(scratch *s) {
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->gate);
    free(s->up);
    free(s->rope);
    free(s->pos);
    free(s->scores);
    memset(s, 0, sizeof(*s));
}

static float *falloc(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

static int scratch_alloc(scratch *s, const eng_hparams *hp, uint32_t rows, uint32_t n_ctx) {
    memset(s, 0, sizeof(*s));
    size_t r = rows, qd = (size_t)hp->n_head * hp->head_dim,
           kvd = (size_t)hp->n_head_kv * hp->head_dim;
    s->rows = rows;
    s->n_ctx = n_ctx;
    s->x = falloc(r * hp->n_embd);
    s->xn = falloc(r * hp->n_embd);
    s->q = falloc(r * qd);
    s->k = falloc(r * kvd);
    s->v = falloc(r * kvd);
    s->att = falloc(r * qd);
    s->gate = falloc(r * hp->n_ff);
    s->up = falloc(r * hp->n_ff);
    s->rope = falloc(r * hp->rope_dim);
    s->pos = malloc(r * sizeof(int64_t));
    s->scores = falloc((size_t)(rows < ATT_QBLOCK ? rows : ATT_QBLOCK) * n_ctx);
    if (!s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->gate || !s->up || !s->rope ||
        !s->pos || !s->scores) {
        scratch_free(s);
        return ENG_E_NOMEM;
    }
    return ENG_OK;
}

/* ======================================================================== */
/* Kernels                                                                  */
/* ======================================================================== */

/* y[n][out] = x[n][in] W^T with W row-major [out][in]. */
static void matmul(const float *x, const float *w, float *y, uint32_t n, uint32_t in,
                   uint32_t out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, x,
                (int)in, w, (int)in, 0.0f, y, (int)out);
}

/* y[n][k] += b[k] for each row (projection biases). */
static void add_bias(float *y, const float *b, uint32_t n, uint32_t k) {
    if (!b) return;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < k; j++) y[(size_t)i * k + j] += b[j];
}

/* out = x / rms(x) * w per row; the sum of squares in double for accuracy. */
static void rmsnorm(const float *x, const float *w, float *out, uint32_t n, uint32_t d,
                    float eps) {
    for (uint32_t i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        double ss = 0.0;
        for (uint32_t j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
        float scale = (float)(1.0 / sqrt(ss / d + eps));
        for (uint32_t j = 0; j < d; j++) oi[j] = (xi[j] * scale) * w[j];
    }
}

/* cos/sin of pos * theta^(-2i/rope_dim) for each token and pair, computed in
 * double so that large positions keep their accuracy. */
static void rope_table(const eng_hparams *hp, const int64_t *pos, uint32_t n, float *cs) {
    uint32_t half = hp->rope_dim / 2;
    for (uint32_t t = 0; t < n; t++) {
        for (uint32_t i = 0; i < half; i++) {
            double freq = pow((double)hp->rope_theta, -2.0 * i / hp->rope_dim);
            double a = (double)pos[t] * freq;
            cs[(size_t)t * hp->rope_dim + 2 * i] = (float)cos(a);
            cs[(size_t)t * hp->rope_dim + 2 * i + 1] = (float)sin(a);
        }
    }
}

/* Rotate the first rope_dim dims of each of n_heads heads of each token.
 * norm: pairs (2i, 2i+1) (GGUF llama, Meta layout); neox: pairs (i, i+rope_dim/2). */
static void rope_apply(const eng_hparams *hp, float *x, uint32_t n, uint32_t n_heads,
                       const float *cs) {
    uint32_t hd = hp->head_dim, half = hp->rope_dim / 2;
    for (uint32_t t = 0; t < n; t++) {
        const float *c = cs + (size_t)t * hp->rope_dim;
        for (uint32_t h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * hd;
            for (uint32_t i = 0; i < half; i++) {
                uint32_t a = hp->rope_type == ENG_ROPE_NEOX ? i : 2 * i;
                uint32_t b = hp->rope_type == ENG_ROPE_NEOX ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[b], co = c[2 * i], si = c[2 * i + 1];
                v[a] = x0 * co - x1 * si;
                v[b] = x0 * si + x1 * co;
            }
        }
    }
}

/* ======================================================================== */
/* Attention                                                                */
/* ======================================================================== */

/* One block of score rows to turn into causal softmax probabilities. */
typedef struct softmax_task {
    float *s;                /* [m][T] scaled scores in, probabilities out */
    uint32_t m;              /* rows */
    uint32_t T;              /* columns (keys visible to the last row) */
    uint32_t valid0;         /* keys visible to row 0; row r sees valid0 + r */
    uint32_t n_workers;      /* threads sharing the rows */
} softmax_task;

/* Per-thread argument. */
typedef struct softmax_worker {
    const softmax_task *task; /* the shared task */
    uint32_t id;              /* rows id, id + n_workers, ... (interleaved: row
                                 lengths grow, so this balances the work) */
} softmax_worker;

static void *softmax_worker_main(void *arg) {
    const softmax_worker *w = arg;
    const softmax_task *t = w->task;
    for (uint32_t r = w->id; r < t->m; r += t->n_workers) {
        float *row = t->s + (size_t)r * t->T;
        uint32_t valid = t->valid0 + r;
        float mx = row[0];
        for (uint32_t j = 1; j < valid; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (uint32_t j = 0; j < valid; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (uint32_t j = 0; j < valid; j++) row[j] *= inv;
        for (uint32_t j = valid; j < t->T; j++) row[j] = 0.0f; /* causal mask */
    }
    return NULL;
}

/* Softmax of all rows on up to max_workers threads (the caller's thread is
 * worker 0). Each row is computed by exactly one thread, the same way, so the
 * thread count does not change results; a worker whose thread cannot be
 * created runs on the caller's thread, so this cannot fail. */
static void softmax_rows(softmax_task *t, uint32_t max_workers) {
    enum { MAX_WORKERS = 64 };
    uint32_t nw = max_workers < t->m ? max_workers : t->m;
    if (nw > MAX_WORKERS) nw = MAX_WORKERS;
    /* Thread start-up (tens of microseconds) dominates small blocks. */
    if ((uint64_t)t->m * t->T < (1u << 16) || nw < 1) nw = 1;
    t->n_workers = nw;
    softmax_worker w[MAX_WORKERS];
    pthread_t th[MAX_WORKERS];
    int started[MAX_WORKERS] = {0};
    for (uint32_t i = 0; i < nw; i++) {
        w[i].task = t;
        w[i].id = i;
    }
    for (uint32_t i = 1; i < nw; i++)
        started[i] = pthread_create(&th[i], NULL, softmax_worker_main, &w[i]) == 0;
    softmax_worker_main(&w[0]);
    for (uint32_t i = 1; i < nw; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            softmax_worker_main(&w[i]);
    }
}

/* Causal attention of n queries (cache slots slot0..slot0+n-1) over this
 * layer's cache, per head and per block of ATT_QBLOCK queries:
 * S = scale Q K^T over the visible keys, softmax per row, O = P V.
 *
 * The sgemms stay on the calling thread, where OpenBLAS parallelizes them
 * itself; only the softmax is spread over our threads. Calling a threaded
 * OpenBLAS from several of our threads at once serializes its calls and
 * oversubscribes the cores (measured: twice as slow on 2 cores). */
static void attention(const eng_hparams *hp, const float *q, const float *kc, const float *vc,
                      float *att, float *s, uint32_t n_ctx, uint32_t n, uint32_t slot0,
                      uint32_t n_threads) {
    const uint32_t hd = hp->head_dim, qd = hp->n_head * hd, group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t h = 0; h < hp->n_head; h++) {
        const float *K = kc + (size_t)(h / group) * n_ctx * hd;
        const float *V = vc + (size_t)(h / group) * n_ctx * hd;
        for (uint32_t i0 = 0; i0 < n; i0 += ATT_QBLOCK) {
            uint32_t m = n - i0 < ATT_QBLOCK ? n - i0 : ATT_QBLOCK;
            uint32_t T = slot0 + i0 + m; /* keys visible to the block's last query */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)T, (int)hd, scale,
                        q + (size_t)i0 * qd + (size_t)h * hd, (int)qd, K, (int)hd, 0.0f, s,
                        (int)T);
            softmax_task st = {s, m, T, slot0 + i0 + 1, 1};
            softmax_rows(&st, n_threads);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)hd, (int)T, 1.0f,
                        s, (int)T, V, (int)hd, 0.0f, att + (size_t)i0 * qd + (size_t)h * hd,
                        (int)qd);
        }
    }
}

/* ======================================================================== */
/* Forward pass over one micro-batch                                         */
/* ======================================================================== */

/* Run n (<= s->rows) tokens at RoPE positions pos, stored in cache slots
 * slot0..slot0+n-1 of kv, through layers 0..n_run-1. When kv_only_last is set
 * the last of those layers only produces its K/V (what a K/V extraction
 * needs); otherwise all layers must run and logits (if non-NULL) receive
 * [n][n_vocab]. */
static void forward_ubatch(const eng_model *m, scratch *s, const kv_view *kv,
                           const int32_t *tokens, const int64_t *pos, uint32_t n, uint32_t slot0,
                           uint32_t n_run, int kv_only_last, float *logits, uint32_t n_threads) {
    const eng_hparams *hp = &m->hp;
    const uint32_t d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd,
                   kvd = hp->n_head_kv * hd, ff = hp->n_ff;

    for (uint32_t i = 0; i < n; i++)
        memcpy(s->x + (size_t)i * d, m->tok_embd + (size_t)tokens[i] * d, d * sizeof(float));
    rope_table(hp, pos, n, s->rope);

    for (uint32_t l = 0; l < n_run; l++) {
        const eng_layer *L = &m->layers[l];
        float *kc = kv->k + (size_t)l * hp->n_head_kv * kv->n_ctx * hd;
        float *vc = kv->v + (size_t)l * hp->n_head_kv * kv->n_ctx * hd;
        int last_kv = kv_only_last && l + 1 == n_run;

        /* K/V of the new tokens into the cache, [pos][kv_head][d] -> [kv_head][slot][d]. */
        rmsnorm(s->x, L->attn_norm, s->xn, n, d, hp->rms_eps);
        matmul(s->xn, L->wk, s->k, n, d, kvd);
        matmul(s->xn, L->wv, s->v, n, d, kvd);
        add_bias(s->k, L->bk, n, kvd);
        add_bias(s->v, L->bv, n, kvd);
        rope_apply(hp, s->k, n, hp->n_head_kv, s->rope);
        for (uint32_t h = 0; h < hp->n_head_kv; h++) {
            for (uint32_t i = 0; i < n; i++) {
                size_t dst = ((size_t)h * kv->n_ctx + slot0 + i) * hd;
                size_t src = (size_t)i * kvd + (size_t)h * hd;
                memcpy(kc + dst, s->k + src, hd * sizeof(float));
                memcpy(vc + dst, s->v + src, hd * sizeof(float));
            }
        }
        if (last_kv) return;

        /* Attention, output projection, residual. */
        matmul(s->xn, L->wq, s->q, n, d, qd);
        add_bias(s->q, L->bq, n, qd);
        rope_apply(hp, s->q, n, hp->n_head, s->rope);
        attention(hp, s->q, kc, vc, s->att, s->scores, kv->n_ctx, n, slot0, n_threads);
        matmul(s->att, L->wo, s->xn, n, qd, d);
        for (size_t i = 0; i < (size_t)n * d; i++) s->x[i] += s->xn[i];

        /* SwiGLU FFN: down(silu(gate(x)) * up(x)), residual. */
        rmsnorm(s->x, L->ffn_norm, s->xn, n, d, hp->rms_eps);
        matmul(s->xn, L->w_gate, s->gate, n, d, ff);
        matmul(s->xn, L->w_up, s->up, n, d, ff);
        for (size_t i = 0; i < (size_t)n * ff; i++) {
            float g = s->gate[i];
            s->gate[i] = g / (1.0f + expf(-g)) * s->up[i];
        }
        matmul(s->gate, L->w_down, s->xn, n, ff, d);
        for (size_t i = 0; i < (size_t)n * d; i++) s->x[i] += s->xn[i];
    }

    if (logits && n_run == hp->n_layer) {
        rmsnorm(s->x, m->output_norm, s->xn, n, d, hp->rms_eps);
        matmul(s->xn, m->output, logits, n, d, hp->n_vocab);
    }
}

/* ======================================================================== */
/* Context                                                                  */
/* ======================================================================== */

struct eng_context {
    const eng_model *model; /* not owned */
    uint32_t n_ctx;           /* cache capacity in positions */
    uint32_t n_threads;       /* attention threads */
    uint32_t n_past;          /* valid positions in the cache */
    float *k;                 /* [n_layer][n_head_kv][n_ctx][head_dim] keys, RoPE applied */
    float *v;                 /* [n_layer][n_head_kv][n_ctx][head_dim] values */
    scratch s;                /* activations for one micro-batch */
    char err[256];            /* message of the last failure */
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int cfail(eng_context *ctx, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
    va_end(ap);
    return status;
}

eng_context *eng_context_alloc(const eng_model *m, uint32_t n_ctx, uint32_t n_threads) {
    if (!m) return NULL;
    const eng_hparams *hp = &m->hp;
    if (n_ctx == 0) n_ctx = hp->n_ctx_train;
    if (n_threads == 0) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    size_t per_layer = (size_t)hp->n_head_kv * n_ctx * hp->head_dim;
    if (per_layer / n_ctx != (size_t)hp->n_head_kv * hp->head_dim ||
        per_layer > SIZE_MAX / sizeof(float) / hp->n_layer / 2)
        return NULL;
    eng_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) return NULL;
    ctx->model = m;
    ctx->n_ctx = n_ctx;
    ctx->n_threads = n_threads;
    /* calloc: a fresh cache reads as zeros rather than garbage. */
    ctx->k = calloc(per_layer * hp->n_layer, sizeof(float));
    ctx->v = calloc(per_layer * hp->n_layer, sizeof(float));
    uint32_t rows = n_ctx < ENG_UBATCH ? n_ctx : ENG_UBATCH;
    if (!ctx->k || !ctx->v || scratch_alloc(&ctx->s, hp, rows, n_ctx)) {
        eng_context_free(ctx);
        return NULL;
    }
    return ctx;
}

void eng_context_free(eng_context *ctx) {
    if (!ctx) return;
    free(ctx->k);
    free(ctx->v);
    scratch_free(&ctx->s);
    free(ctx);
}

static int check_tokens(const eng_model *m, const int32_t *tokens, uint64_t n, char *err,
                        size_t errlen) {
    for (uint64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= m->hp.n_vocab) {
            snprintf(err, errlen, "token %lld at index %llu is outside [0, %u)",
                     (long long)tokens[i], (unsigned long long)i, m->hp.n_vocab);
            return ENG_E_TOKEN;
        }
    }
    return ENG_OK;
}

int eng_decode(eng_context *ctx, const int32_t *tokens, uint32_t n, float *logits) {
    if (!ctx) return ENG_E_ARG;
    ctx->err[0] = '\0';
    if (n == 0) return ENG_OK;
    if (!tokens) return cfail(ctx, ENG_E_ARG, "NULL tokens");
    if (n > ctx->n_ctx - ctx->n_past)
        return cfail(ctx, ENG_E_CTX_FULL, "%u tokens at n_past %u exceed n_ctx %u", n,
                     ctx->n_past, ctx->n_ctx);
    int st = check_tokens(ctx->model, tokens, n, ctx->err, sizeof(ctx->err));
    if (st) return st;

    const eng_hparams *hp = &ctx->model->hp;
    kv_view kv = {ctx->k, ctx->v, ctx->n_ctx};
    for (uint32_t c = 0; c < n; c += ctx->s.rows) {
        uint32_t nb = n - c < ctx->s.rows ? n - c : ctx->s.rows;
        uint32_t slot0 = ctx->n_past + c;
        for (uint32_t i = 0; i < nb; i++) ctx->s.pos[i] = (int64_t)slot0 + i;
        forward_ubatch(ctx->model, &ctx->s, &kv, tokens + c, ctx->s.pos, nb, slot0, hp->n_layer,
                       0, logits ? logits + (size_t)c * hp->n_vocab : NULL, ctx->n_threads);
    }
    ctx->n_past += n;
    return ENG_OK;
}

uint32_t eng_context_n_past(const eng_context *ctx) { return ctx->n_past; }
uint32_t eng_context_n_ctx(const eng_context *ctx) { return ctx->n_ctx; }

int eng_context_set_n_past(eng_context *ctx, uint32_t n) {
    if (!ctx) return ENG_E_ARG;
    if (n > ctx->n_ctx) return cfail(ctx, ENG_E_ARG, "n_past %u exceeds n_ctx %u", n, ctx->n_ctx);
    ctx->n_past = n;
    return ENG_OK;
}

float *eng_context_k(eng_context *ctx, uint32_t layer) {
    const eng_hparams *hp = &ctx->model->hp;
    if (layer >= hp->n_layer) return NULL;
    return ctx->k + (size_t)layer * hp->n_head_kv * ctx->n_ctx * hp->head_dim;
}

float *eng_context_v(eng_context *ctx, uint32_t layer) {
    const eng_hparams *hp = &ctx->model->hp;
    if (layer >= hp->n_layer) return NULL;
    return ctx->v + (size_t)layer * hp->n_head_kv * ctx->n_ctx * hp->head_dim;
}

const char *eng_context_error(const eng_context *ctx) { return ctx ? ctx->err : "NULL context"; }

/* ======================================================================== */
/* K/V extraction without a context                                         */
/* ======================================================================== */

int eng_compute_kv_prefix_layers(const eng_model *m, uint32_t n_layers, const int32_t *tokens,
                                   const int64_t *positions, uint64_t n, float *k_out,
                                   float *v_out, uint32_t n_threads) {
    if (!m || !tokens || !positions || !k_out || !v_out || n == 0) return ENG_E_ARG;
    if (n_layers == 0 || n_layers > m->hp.n_layer || n > UINT32_MAX) return ENG_E_ARG;
    char err[128];
    int st = check_tokens(m, tokens, n, err, sizeof(err));
    if (st) return st;
    if (n_threads == 0) n_threads = 1;
    if (n_threads > 64) n_threads = 64;

    /* The output buffers are the cache: layout [layer][kv_head][n][head_dim]
     * is a cache of n_ctx = n. Micro-batches match eng_decode's split of a
     * single call on an empty context, which makes the results identical. */
    uint32_t nn = (uint32_t)n;
    uint32_t rows = nn < ENG_UBATCH ? nn : ENG_UBATCH;
    /* Layer 0 alone needs no attention, hence no score buffer rows. */
    scratch s;
    if (scratch_alloc(&s, &m->hp, rows, n_layers > 1 ? nn : 0)) return ENG_E_NOMEM;
    kv_view kv = {k_out, v_out, nn};
    for (uint32_t c = 0; c < nn; c += rows) {
        uint32_t nb = nn - c < rows ? nn - c : rows;
        forward_ubatch(m, &s, &kv, tokens + c, positions + c, nb, c, n_layers, 1, NULL, n_threads);
    }
    scratch_free(&s);
    return ENG_OK;
}
