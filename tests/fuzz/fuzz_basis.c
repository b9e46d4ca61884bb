/* fuzz_basis.c - libFuzzer target for the basis reader (kvtc_basis_load).
 * A basis that loads must serialize and load again to the same fingerprint,
 * report its plans, and - when small - drive a real encode and decode of a
 * small synthetic cache with every plan it has. (The basis file's content
 * hash covers tensors and plan text, so most mutations stop at the hash;
 * the parser, the metadata checks and the ordering of checks are what this
 * target exercises, and its own seeds exercise the codec path.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"

static void codec_with_plans(const kvtc_basis *b) {
    const kvtc_geometry *g = kvtc_basis_geometry(b);
    uint64_t p = (uint64_t)g->n_layers * g->n_kv_heads * g->head_dim;
    if (p > 4096 || kvtc_basis_recomputed_layers(b)) return;
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F16, 9);
    synth_cache sc;
    if (synth_make(&sp, &sc)) return;
    for (uint32_t i = 0; i < kvtc_basis_plan_count(b); i++) {
        kvtc_plan_info pi = {.struct_size = sizeof pi};
        if (kvtc_basis_plan_info(b, i, &pi) != KVTC_OK) abort();
        kvtc_encode_options eo;
        kvtc_encode_options_init(&eo);
        eo.ratio = pi.target_ratio;
        eo.n_sink = 1;
        eo.n_window = 1;
        eo.chunk_tokens = 4;
        eo.entropy_codec = (i & 1) ? KVTC_CODEC_RANS : KVTC_CODEC_DEFLATE;
        uint8_t *s = NULL;
        size_t n = 0;
        if (synth_compress(b, &eo, &sc.c, &s, &n) != KVTC_OK) continue;
        kvtc_decoder *d = NULL;
        kvtc_cache out;
        if (kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK && synth_alloc_like(g, KVTC_DTYPE_F16, 9, 0, &out) == 0) {
            if (kvtc_decompress(d, s, n, &out) != KVTC_OK) abort(); /* own stream must decode */
            synth_cache_free(&out);
        }
        kvtc_decoder_free(d);
        free(s);
    }
    synth_free(&sc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kvtc_basis *b = NULL;
    kvtc_result r = kvtc_basis_load(data, size, &b);
    if (r != KVTC_OK) {
        if (b) abort();
        return 0;
    }
    size_t n = kvtc_basis_serialized_size(b), w = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || kvtc_basis_serialize(b, buf, n, &w) != KVTC_OK || w != n) abort();
    kvtc_basis *b2 = NULL;
    if (kvtc_basis_load(buf, n, &b2) != KVTC_OK) abort();
    if (kvtc_basis_fingerprint(b2) != kvtc_basis_fingerprint(b) ||
        kvtc_basis_plan_count(b2) != kvtc_basis_plan_count(b))
        abort();
    kvtc_basis_free(b2);
    free(buf);
    codec_with_plans(b);
    kvtc_basis_free(b);
    return 0;
}
