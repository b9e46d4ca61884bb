/* bench_llama_f16_slot.c - make an f16 llama.cpp slot file from a q8_0 one
 * of the same tokens, for measuring kvtc on a slot length the fixtures only
 * have as q8_0 (the 1900-token eval-llama slot):
 *
 *   build/bench_llama_f16_slot IN.ggsq VTRANS OUT.ggsq
 *
 * Header, tokens and cells are copied; K/V are the dequantized q8_0 values
 * (un-rotated when llama.cpp stored them Hadamard-rotated) written as f16,
 * with V transposed when VTRANS is 1 (llama-server -fa off) or not (0).
 * Single-stream files only. The values differ from a true f16 cache by the
 * q8_0 rounding (relative squared error ~1e-4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/lcpp_state.h"
#include "util/endian.h"
#include "util/half.h"

static void put(FILE *f, const void *p, size_t n) { fwrite(p, 1, n, f); }
static void put32(FILE *f, uint32_t v) { uint8_t b[4]; kvi_store_u32(b, v); put(f, b, 4); }
static void put64(FILE *f, uint64_t v) { uint8_t b[8]; kvi_store_u64(b, v); put(f, b, 8); }
static void put16f(FILE *f, float x) { uint8_t b[2]; kvi_store_u16(b, kvi_f32_to_f16(x)); put(f, b, 2); }

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[2], "0") && strcmp(argv[2], "1"))) {
        fprintf(stderr, "usage: %s IN.ggsq VTRANS(0|1) OUT.ggsq\n", argv[0]);
        return 2;
    }
    int vtrans = argv[2][0] == '1';
    FILE *in = fopen(argv[1], "rb");
    if (!in) { perror(argv[1]); return 1; }
    fseek(in, 0, SEEK_END);
    size_t n = (size_t)ftell(in);
    fseek(in, 0, SEEK_SET);
    uint8_t *b = malloc(n);
    if (!b || fread(b, 1, n, in) != n) { fprintf(stderr, "read failed\n"); return 1; }
    fclose(in);
    lcpp_state s;
    kvtc_result r = lcpp_state_parse(b, n, &s);
    if (r || s.n_stream != 1) { fprintf(stderr, "%s: %s\n", argv[1], r ? kvtc_result_string(r) : "more than one stream"); return 1; }
    const lcpp_stream *st = &s.streams[0];
    uint32_t cells = st->cell_count, E = st->k[0].n_embd, L = st->n_layer, hd = 64;
    size_t nv = (size_t)cells * E * L;
    float *k = malloc(sizeof(float) * nv), *v = malloc(sizeof(float) * nv);
    lcpp_state_read_float(&s, b, 0, 1, k);
    lcpp_state_read_float(&s, b, 0, 0, v);
    if (st->k[0].type == LCPP_GGML_Q8_0 && lcpp_rows_look_rotated(k, (uint64_t)cells * L, E, hd)) {
        fprintf(stderr, "un-rotating K and V (Hadamard, head_dim %u)\n", hd);
        lcpp_hadamard_rows(k, nv, hd);
        lcpp_hadamard_rows(v, nv, hd);
    }
    FILE *out = fopen(argv[3], "wb");
    if (!out) { perror(argv[3]); return 1; }
    put(out, b, st->k[0].header_off - 8); /* everything before v_trans */
    put32(out, (uint32_t)vtrans);
    put32(out, L);
    for (uint32_t l = 0; l < L; l++) {
        put32(out, LCPP_GGML_F16);
        put64(out, 2ull * E);
        for (size_t i = 0; i < (size_t)cells * E; i++) put16f(out, k[(size_t)l * cells * E + i]);
    }
    for (uint32_t l = 0; l < L; l++) {
        put32(out, LCPP_GGML_F16);
        const float *x = v + (size_t)l * cells * E;
        if (vtrans) {
            put32(out, 2);
            put32(out, E);
            for (uint32_t j = 0; j < E; j++)
                for (uint32_t c = 0; c < cells; c++) put16f(out, x[(size_t)c * E + j]);
        } else {
            put64(out, 2ull * E);
            for (size_t i = 0; i < (size_t)cells * E; i++) put16f(out, x[i]);
        }
    }
    if (fclose(out)) { perror(argv[3]); return 1; }
    lcpp_state_free(&s);
    free(k);
    free(v);
    free(b);
    return 0;
}
