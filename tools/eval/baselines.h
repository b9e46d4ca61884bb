/* baselines.h - the KV-cache compression methods the evaluation compares
 * kvtc against, reproduced as in-place "quantize then dequantize" round
 * trips over float32 caches, with an honest storage cost in bits.
 *
 * Cache layout: k and v are float arrays [n_layers][n_kv_heads][n_tokens]
 * [head_dim] (keys with RoPE applied, as cached).
 *
 * Methods and the numerics they reproduce:
 *   f16       every value rounded to IEEE binary16 (round to nearest even,
 *             subnormals, overflow to +-inf, NaN stays NaN). 16 bits/value;
 *             the uncompressed reference (ratio 1).
 *   fp8_e4m3  vLLM's fp8 KV cache with a per-tensor scale: for each layer and
 *             each of K and V, scale = amax/448 (float32, stored); values are
 *             e4m3fn(x / scale) * scale with round-to-nearest-even, saturating
 *             to +-448 (as __nv_cvt_float_to_fp8(.., __NV_SATFINITE, E4M3)).
 *             8 bits/value plus 32 bits per scale.
 *   q8_0      llama.cpp block_q8_0 (quantize_row_q8_0_ref): blocks of 32
 *             consecutive values along head_dim; d = amax/127 (float),
 *             id = d ? 1/d : 0, q = roundf(x*id), d stored as fp16;
 *             x' = fp16(d) * q. 34 bytes per 32 values = 8.5 bits/value.
 *   q4_0      llama.cpp block_q4_0 (quantize_row_q4_0_ref): max = the value
 *             of largest |x| with its sign, d = max / -8, id = d ? 1/d : 0,
 *             q = min(15, (int8_t)(x*id + 8.5f)); x' = (q - 8) * fp16(d).
 *             18 bytes per 32 values = 4.5 bits/value.
 *   kivi2     KIVI 2-bit, group 32, asymmetric: keys per channel (per layer,
 *             head and channel, 32 consecutive tokens share an fp16 min and
 *             an fp16 scale = (max-min)/3), values per token (32 consecutive
 *             channels share an fp16 min and scale); q = clamp(round_half_even(
 *             (x - min16) / scale16), 0, 3), x' = q * scale16 + min16, using
 *             the fp16-rounded min and scale on both sides. 2 bits/value plus
 *             32 bits per group (3 bits/value in all).
 *
 * n_sink / n_window: only kivi2 protects tokens. Its first n_sink and last
 * n_window tokens (of K and V), and the key tokens of the compressed range
 * that do not fill a whole group of 32 (KIVI's full-precision residual, the
 * tokens just before the window), are left exactly unchanged and are counted
 * at 16 bits each (the cache they come from is 16-bit). f16, fp8_e4m3, q8_0
 * and q4_0 ignore n_sink and n_window: like vLLM and llama.cpp they quantize
 * every token.
 *
 * Blocks of q8_0 / q4_0 and kivi2's value groups lie along a token's row of
 * all KV heads of a layer (head 0's head_dim values, then head 1's, ...), as
 * in llama.cpp's K/V cache rows: when head_dim is a multiple of 32 they are
 * the blocks within each head; for smaller heads (e.g. head_dim 8) a block
 * spans several heads. n_kv_heads * head_dim must therefore be a multiple of
 * 32 for q8_0, q4_0 and kivi2 (BASELINE_ERR_GEOMETRY otherwise: llama.cpp
 * cannot store such a row either); f16 and fp8_e4m3 accept any shape.
 *
 * Inputs are expected finite. Non-finite inputs never cause undefined
 * behaviour, but the outputs for them (and for their blocks) are unspecified
 * except for f16, which maps them like a hardware conversion. */
#ifndef KVTC_EVAL_BASELINES_H
#define KVTC_EVAL_BASELINES_H

#include <stdint.h>

typedef enum baseline_kind {
    BASELINE_F16,
    BASELINE_FP8_E4M3,
    BASELINE_Q8_0,
    BASELINE_Q4_0,
    BASELINE_KIVI2
} baseline_kind;

#define BASELINE_COUNT 5
#define BASELINE_GROUP 32 /* llama.cpp QK8_0 / QK4_0 and KIVI's group size */

/* Storage cost of a round trip, over K and V together.
 *   values_compressed / bits_compressed: the values the method quantized and
 *     the bits they take, metadata (scales, mins) included.
 *   values_total / bits_total: every value of K and V, with values the method
 *     left in full precision counted at 16 bits each.
 * The compression ratio against fp16 is 16 * values / bits (either pair). */
typedef struct baseline_cost {
    double bits_compressed;
    uint64_t values_compressed;
    double bits_total;
    uint64_t values_total;
} baseline_cost;

/* Error codes (0 on success). */
#define BASELINE_OK 0
#define BASELINE_ERR_ARG (-1)      /* NULL pointer, zero dimension or unknown kind */
#define BASELINE_ERR_GEOMETRY (-2) /* n_kv_heads * head_dim not a multiple of 32 where required */
#define BASELINE_ERR_TOO_LARGE (-3) /* the cache size overflows size_t */

/* Round-trip k and v in place with method kind and report its cost in *cost
 * (cost may be NULL). n_sink / n_window are honoured by kivi2 only (see
 * above). On error nothing is modified and *cost is zeroed. */
int baseline_roundtrip(baseline_kind kind, float *k, float *v, uint32_t n_layers,
                       uint32_t n_kv_heads, uint64_t n_tokens, uint32_t head_dim,
                       uint32_t n_sink, uint32_t n_window, baseline_cost *cost);

/* The cost baseline_roundtrip would report, without touching any data.
 * Same argument checks and return codes. */
int baseline_cost_of(baseline_kind kind, uint32_t n_layers, uint32_t n_kv_heads,
                     uint64_t n_tokens, uint32_t head_dim, uint32_t n_sink,
                     uint32_t n_window, baseline_cost *cost);

/* "f16", "fp8_e4m3", "q8_0", "q4_0", "kivi2"; NULL for an unknown kind. */
const char *baseline_name(baseline_kind kind);

/* Parse a name as returned by baseline_name; 0 on success, -1 if unknown. */
int baseline_from_name(const char *name, baseline_kind *kind);

/* The scalar conversions the methods use, exposed for tests and callers. */
uint16_t baseline_f32_to_f16(float f);  /* IEEE binary16, round to nearest even */
float baseline_f16_to_f32(uint16_t h);
uint8_t baseline_f32_to_e4m3(float f);  /* E4M3FN, RNE, saturating to +-448; NaN -> 0x7F|sign */
float baseline_e4m3_to_f32(uint8_t b);

#endif
