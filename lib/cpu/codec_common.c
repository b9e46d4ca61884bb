/* codec_common.c - see codec_common.h. */
#include "cpu/codec_common.h"

#include <string.h>

/* Byte offsets of the sink run and the window run of (layer, head) lh in
 * the tensor, and of its raw tokens in the section. */
typedef struct raw_runs {
    size_t sink, window, section, sink_bytes, window_bytes;
} raw_runs;

static raw_runs runs_of(const container_header *h, uint64_t lh) {
    size_t tok = (size_t)h->geometry.head_dim * kvtc_dtype_size(h->dtype);
    raw_runs r;
    r.sink = lh * h->n_tokens * tok;
    r.window = (lh * h->n_tokens + h->n_tokens - h->n_window) * tok;
    r.section = lh * container_raw_tokens(h) * tok;
    r.sink_bytes = h->n_sink * tok;
    r.window_bytes = h->n_window * tok;
    return r;
}

void codec_cache_to_raw(const container_header *h, const void *tensor, uint8_t *section) {
    const uint8_t *t8 = tensor;
    if (!container_raw_tokens(h)) return; /* an empty cache may have NULL tensors: no memcpy(NULL, ..., 0) */
    for (uint64_t lh = 0; lh < (uint64_t)h->geometry.n_layers * h->geometry.n_kv_heads; lh++) {
        raw_runs r = runs_of(h, lh);
        memcpy(section + r.section, t8 + r.sink, r.sink_bytes);
        memcpy(section + r.section + r.sink_bytes, t8 + r.window, r.window_bytes);
    }
}

void codec_raw_to_cache(const container_header *h, const uint8_t *section, void *tensor) {
    uint8_t *t8 = tensor;
    if (!container_raw_tokens(h)) return; /* an empty cache may have NULL tensors: no memcpy(NULL, ..., 0) */
    for (uint64_t lh = 0; lh < (uint64_t)h->geometry.n_layers * h->geometry.n_kv_heads; lh++) {
        raw_runs r = runs_of(h, lh);
        memcpy(t8 + r.sink, section + r.section, r.sink_bytes);
        memcpy(t8 + r.window, section + r.section + r.sink_bytes, r.window_bytes);
    }
}
