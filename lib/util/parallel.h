/* parallel.h - run fn(ctx, item, worker) for item in [0, n_items) on up to
 * n_threads threads (the caller's thread included). Items are handed out
 * statically (worker w takes items w, w+n, ...), so which worker runs an
 * item never changes the result. Returns the first nonzero result by item
 * order, or 0. */
#ifndef KVTC_UTIL_PARALLEL_H
#define KVTC_UTIL_PARALLEL_H

#include <stdint.h>

typedef int (*kvi_item_fn)(void *ctx, uint32_t item, uint32_t worker);

int kvi_parallel_for(uint32_t n_threads, uint32_t n_items, kvi_item_fn fn, void *ctx);

#endif
