/* test_concurrency.c - one kvtc_basis shared by N threads, each with its own
 * encoder and decoder, encoding and decoding different caches for several
 * iterations (encoders and decoders themselves multi-threaded on some
 * threads). Every stream and every decoded cache must equal the bytes a
 * single thread produced beforehand. scripts/sanitize.sh also runs this
 * under ThreadSanitizer (OPENBLAS_NUM_THREADS=1 keeps OpenBLAS's own
 * threads out of the report). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"
#include "test.h"

#define N_THREADS 4
#define N_CACHES 4
#define ITERS 8

static kvtc_geometry G;
static kvtc_basis *BASIS;
static synth_cache CACHES[N_CACHES];
static uint8_t *REF[N_CACHES];
static size_t REF_N[N_CACHES];
static uint8_t *REF_K[N_CACHES], *REF_V[N_CACHES];

static void options(int i, kvtc_encode_options *eo) {
    kvtc_encode_options_init(eo);
    eo->ratio = (i & 1) ? 8 : 4;
    eo->n_sink = 4;
    eo->n_window = 16;
    eo->chunk_tokens = 32 + 16 * (uint32_t)i;
    eo->entropy_codec = (i & 2) ? KVTC_CODEC_RANS : KVTC_CODEC_DEFLATE;
}

/* Encode and decode cache i with `threads` worker threads inside. */
static int run_one(int i, uint32_t threads, uint8_t **s, size_t *n, kvtc_cache *o) {
    kvtc_encode_options eo;
    options(i, &eo);
    eo.n_threads = threads;
    if (synth_compress(BASIS, &eo, &CACHES[i].c, s, n) != KVTC_OK) return -1;
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = threads;
    kvtc_decoder *d = NULL;
    if (kvtc_decoder_alloc(BASIS, &dopt, &d) != KVTC_OK) return -1;
    if (synth_alloc_like(&G, CACHES[i].c.dtype, CACHES[i].c.n_tokens, 0, o)) return -1;
    kvtc_result r = kvtc_decompress(d, *s, *n, o);
    kvtc_decoder_free(d);
    return r == KVTC_OK ? 0 : -1;
}

typedef struct worker { int id; int mismatches; int errors; } worker;

static void *work(void *p) {
    worker *w = p;
    for (int it = 0; it < ITERS; it++)
        for (int j = 0; j < N_CACHES; j++) {
            int i = (j + w->id + it) % N_CACHES; /* different caches at the same time */
            uint8_t *s = NULL;
            size_t n = 0;
            kvtc_cache o;
            memset(&o, 0, sizeof o);
            uint32_t threads = 1 + (uint32_t)((w->id + it) % 3);
            if (run_one(i, threads, &s, &n, &o)) {
                w->errors++;
            } else {
                size_t tb = (size_t)kvtc_cache_tensor_bytes(&G, o.dtype, o.n_tokens);
                if (n != REF_N[i] || memcmp(s, REF[i], n) || memcmp(o.k, REF_K[i], tb) || memcmp(o.v, REF_V[i], tb))
                    w->mismatches++;
            }
            free(s);
            synth_cache_free(&o);
        }
    return NULL;
}

int main(void) {
    G = synth_geometry(2, 2, 32, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &G, KVTC_DTYPE_F16, 200);
    static const double ratios[2] = {4.0, 8.0};
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 2, &BASIS) == KVTC_OK);
    if (!BASIS) return TEST_REPORT();
    for (int i = 0; i < N_CACHES; i++) {
        synth_params cp;
        synth_params_init(&cp, &G, (kvtc_dtype)(i % 3), 150 + 60 * (uint64_t)i);
        cp.data_seed = 50 + (uint64_t)i;
        CHECK(synth_make(&cp, &CACHES[i]) == 0);
        kvtc_cache o;
        CHECK(run_one(i, 1, &REF[i], &REF_N[i], &o) == 0); /* the single-thread reference */
        REF_K[i] = o.k;
        REF_V[i] = o.v;
        o.k = o.v = NULL;
        synth_cache_free(&o);
    }
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        w[t] = (worker){t, 0, 0};
        CHECK(pthread_create(&th[t], NULL, work, &w[t]) == 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK_MSG(w[t].errors == 0, "thread %d: %d failed calls", t, w[t].errors);
        CHECK_MSG(w[t].mismatches == 0, "thread %d: %d outputs differ from one thread's", t, w[t].mismatches);
    }
    for (int i = 0; i < N_CACHES; i++) {
        synth_free(&CACHES[i]);
        free(REF[i]);
        free(REF_K[i]);
        free(REF_V[i]);
    }
    kvtc_basis_free(BASIS);
    return TEST_REPORT();
}
