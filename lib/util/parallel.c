/* parallel.c - see parallel.h. Threads are created per call: calls run
 * per batch of chunks (milliseconds of work), so a persistent pool would
 * save little and would add state that must be shut down. */
#include "util/parallel.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct worker_arg {
    uint32_t worker, n_workers, n_items;
    kvi_item_fn fn;
    void *ctx;
    int *results;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *a = p;
    for (uint32_t i = a->worker; i < a->n_items; i += a->n_workers)
        a->results[i] = a->fn(a->ctx, i, a->worker);
    return NULL;
}

int kvi_parallel_for(uint32_t n_threads, uint32_t n_items, kvi_item_fn fn, void *ctx) {
    if (n_items == 0) return 0;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_items) n_threads = n_items;
    int *results = calloc(n_items, sizeof(int));
    worker_arg *args = calloc(n_threads, sizeof(worker_arg));
    pthread_t *tids = calloc(n_threads, sizeof(pthread_t));
    char *started = calloc(n_threads, 1);
    int rc = 0;
    if (!results || !args || !tids || !started) {
        /* no memory for bookkeeping: run serially */
        for (uint32_t i = 0; i < n_items && !rc; i++) rc = fn(ctx, i, 0);
        goto done;
    }
    for (uint32_t w = 0; w < n_threads; w++)
        args[w] = (worker_arg){w, n_threads, n_items, fn, ctx, results};
    for (uint32_t w = 1; w < n_threads; w++)
        started[w] = pthread_create(&tids[w], NULL, worker_main, &args[w]) == 0;
    /* Items of workers that failed to start run here, on the caller's thread. */
    worker_main(&args[0]);
    for (uint32_t w = 1; w < n_threads; w++) {
        if (started[w]) pthread_join(tids[w], NULL);
        else worker_main(&args[w]);
    }
    for (uint32_t i = 0; i < n_items && !rc; i++) rc = results[i];
done:
    free(results);
    free(args);
    free(tids);
    free(started);
    return rc;
}
