/* decode_range.c - see decode_range.h. */
#include "decode_range.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int decode_range_parse(const char *tokens, const char *layers, const kvtc_stream_info *info,
                       kvtc_decode_range *rg, char *err, size_t errlen) {
    kvtc_decode_range_init(rg);
    rg->token_end = info->n_tokens;
    rg->layer_end = info->geometry.n_layers;
    if (tokens) {
        uint64_t n;
        if (cli_parse_u64(tokens, &n) || n == 0 || n > info->n_tokens) {
            snprintf(err, errlen, "--tokens needs a count in 1..%llu", (unsigned long long)info->n_tokens);
            return -1;
        }
        rg->token_end = n;
    }
    if (layers) {
        char a[32], *colon = strchr(layers, ':');
        uint32_t lo, hi;
        size_t la = colon ? (size_t)(colon - layers) : 0;
        if (!colon || la == 0 || la >= sizeof a) goto bad;
        memcpy(a, layers, la);
        a[la] = 0;
        if (cli_parse_u32(a, &lo) || cli_parse_u32(colon + 1, &hi) || lo >= hi || hi > info->geometry.n_layers)
            goto bad;
        rg->layer_begin = lo;
        rg->layer_end = hi;
    }
    return 0;
bad:
    snprintf(err, errlen, "--layers needs A:B with 0 <= A < B <= %u", info->geometry.n_layers);
    return -1;
}

void decode_range_output(const kvtc_stream_info *info, const kvtc_decode_range *rg, kvtc_geometry *g,
                         uint64_t *n_tokens) {
    *g = info->geometry;
    g->n_layers = rg->layer_end - rg->layer_begin;
    *n_tokens = rg->token_end - rg->token_begin;
}

kvtc_result decode_range_run(kvtc_decoder *d, const void *buf, size_t size, const kvtc_stream_info *info,
                             const kvtc_decode_range *rg, kvtc_cache *out) {
    /* the output holds layers [A, B) as its layers [0, B - A): shift the
     * layer base back by A layers (never dereferenced below A) */
    kvtc_cache_layout lay;
    kvtc_cache_layout_from_cache(out, &lay);
    lay.geometry = info->geometry;
    void *kl[KVTC_MAX_LAYERS_CLI], *vl[KVTC_MAX_LAYERS_CLI];
    if (info->geometry.n_layers > KVTC_MAX_LAYERS_CLI) return KVTC_ERR_TOO_LARGE;
    size_t es = kvtc_dtype_size(out->dtype);
    for (uint32_t l = 0; l < info->geometry.n_layers; l++) {
        int in = l >= rg->layer_begin && l < rg->layer_end;
        size_t off = in ? es * (size_t)(l - rg->layer_begin) * (size_t)lay.k.layer_stride : 0;
        kl[l] = in ? (char *)out->k + off : NULL;
        vl[l] = in ? (char *)out->v + off : NULL;
    }
    lay.k.layers = kl;
    lay.v.layers = vl;
    return kvtc_decompress_layout(d, buf, size, rg, &lay);
}
