/* lcpp_state.h - llama.cpp state files: sequence files ('ggsq',
 * llama_state_seq_save_file, llama-server slot saves) and whole-context
 * session files ('ggsn', llama_state_save_file). docs/FORMAT.md section 5
 * and shared/fixtures/llama.cpp/README.md give the byte layout.
 *
 * The version fields did not change when the layout did, so the layout
 * variant is found by structure: every candidate layout is parsed and the
 * one that accounts for every byte of the file wins.
 *
 *   kv-A  llama.cpp <= 2025-05-24: no n_stream; ggsq cells carry n_seq_id 0
 *   kv-B  2025-05-25 .. 2025-07-15: no n_stream; ggsq cells carry 1 seq id
 *   kv-C  >= 2025-07-16: u32 n_stream, then one KV part per stream
 *   ggsn files additionally have a preamble (arch string, and before
 *   2026-02-23 output ids, logits and embeddings) that is kept verbatim.
 *
 * The parser records offsets only: the parsed object borrows the caller's
 * bytes. A "hollow" file is the same file with every K/V data payload cut
 * out (the skeleton kvtc keeps losslessly); lcpp_state_parse_hollow()
 * parses it with the same rules, and lcpp_state_write() fills a hollow
 * file's payloads back in from float values. */
#ifndef KVTC_IO_LCPP_STATE_H
#define KVTC_IO_LCPP_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"

#define LCPP_MAGIC_GGSQ 0x67677371u
#define LCPP_MAGIC_GGSN 0x6767736eu
#define LCPP_GGSQ_VERSION 2u
#define LCPP_GGSN_VERSION 9u

/* ggml tensor types a KV cache may have in a state file. */
#define LCPP_GGML_F32 0
#define LCPP_GGML_F16 1
#define LCPP_GGML_Q8_0 8
#define LCPP_GGML_BF16 30
#define LCPP_Q8_0_BLOCK 32u

/* Bounds on hostile counts (beyond "fits in the file"): llama.cpp itself
 * has at most 256 sequences/streams, and no model has 4096 layers or rows
 * of more than 2^20 values per token. */
#define LCPP_MAX_STREAMS 4096u
#define LCPP_MAX_LAYERS 4096u
#define LCPP_MAX_SEQ_IDS 4096u
#define LCPP_MAX_ROW_VALUES (1u << 20)

typedef enum lcpp_layout {
    LCPP_LAYOUT_KV_A = 0,  /* ggsq cells with n_seq_id 0 */
    LCPP_LAYOUT_KV_B = 1,  /* ggsq cells with n_seq_id 1, no n_stream */
    LCPP_LAYOUT_KV_AB = 2, /* ggsn without n_stream: kv-A and kv-B look the same */
    LCPP_LAYOUT_KV_C = 3   /* u32 n_stream before the KV parts */
} lcpp_layout;

/* One K or V tensor of one layer of one stream. */
typedef struct lcpp_kv_tensor {
    int32_t type;         /* ggml type (LCPP_GGML_*) */
    uint32_t n_embd;      /* values per cell (n_kv_heads * head_dim) */
    uint64_t row_bytes;   /* K, and V with v_trans 0: bytes of one cell's row */
    uint32_t el_bytes;    /* V with v_trans 1: bytes of one value */
    size_t header_off;    /* offset of the tensor header (type ...) */
    size_t data_off;      /* offset of the payload (in a hollow file: where it goes) */
    uint64_t data_bytes;  /* payload bytes in the full file */
} lcpp_kv_tensor;

typedef struct lcpp_stream {
    uint32_t cell_count;
    size_t cells_off;     /* first cell record */
    int64_t *pos;         /* [cell_count] cell positions (owned) */
    uint32_t v_trans;     /* 0 or 1 (0 when cell_count is 0 in kv-C: no data part) */
    uint32_t n_layer;
    lcpp_kv_tensor *k, *v; /* [n_layer] each (owned) */
} lcpp_stream;

typedef struct lcpp_state {
    uint32_t magic, version;
    lcpp_layout layout;
    int hollow;               /* parsed as a hollow file */
    size_t size;              /* bytes parsed */
    size_t full_size;         /* size of the full file (== size unless hollow) */
    uint32_t n_token_count;   /* the token array's length field */
    size_t tokens_off;
    int packed_tokens;        /* token array is a 2026 llama-server server_tokens record */
    uint32_t n_ids;           /* token ids (of the record when packed) */
    size_t ids_off;
    /* ggsn: preamble [preamble_off, preamble_off + preamble_bytes) kept verbatim */
    int has_logits;           /* ggsn written before 2026-02-23 (outputs, logits, embd) */
    size_t preamble_off, preamble_bytes;
    uint32_t n_stream;        /* 1 for kv-A/B */
    lcpp_stream *streams;    /* [n_stream] (owned) */
} lcpp_state;

/* 1 if buf starts with a ggsq or ggsn magic (size >= 4). */
int lcpp_state_is_state_file(const void *buf, size_t size);

/* Parse a whole file; every byte must be accounted for. Errors:
 * KVTC_ERR_BAD_MAGIC (not ggsq/ggsn), KVTC_ERR_UNSUPPORTED_VERSION,
 * KVTC_ERR_TRUNCATED (a count or payload runs past the end),
 * KVTC_ERR_CORRUPT (inconsistent fields, trailing bytes, bad row sizes),
 * KVTC_ERR_UNSUPPORTED (a K/V type other than f32/f16/bf16/q8_0),
 * KVTC_ERR_TOO_LARGE (counts beyond the LCPP_MAX_* bounds),
 * KVTC_ERR_OUT_OF_MEMORY. On failure *out is zeroed and owns nothing. */
kvtc_result lcpp_state_parse(const void *buf, size_t size, lcpp_state *out);

/* The structure a parse found, as bits: LCPP_SHAPE_STREAMS (u32 n_stream
 * present: kv-C), LCPP_SHAPE_LOGITS (ggsn outputs/logits present). A
 * hollow file must be parsed with the shape of its full file: with the
 * payloads gone, another candidate layout can explain its bytes too. */
#define LCPP_SHAPE_STREAMS 1u
#define LCPP_SHAPE_LOGITS 2u
uint32_t lcpp_state_shape(const lcpp_state *s);

/* Parse a hollow file (K/V payloads absent) of the given shape; otherwise
 * as above (KVTC_ERR_CORRUPT for a shape with unknown bits, or LOGITS in
 * a ggsq file). */
kvtc_result lcpp_state_parse_hollow(const void *buf, size_t size, uint32_t shape, lcpp_state *out);

void lcpp_state_free(lcpp_state *s);

/* Name of a layout ("kv-A", ...) and of a ggml type ("f16", ... or "?"). */
const char *lcpp_layout_name(lcpp_layout l);
const char *lcpp_ggml_type_name(int32_t type);

/* Size of the hollow file of a parsed full file, and the hollow file itself
 * (out holds lcpp_state_hollow_size() bytes). */
size_t lcpp_state_hollow_size(const lcpp_state *s);
void lcpp_state_make_hollow(const lcpp_state *s, const uint8_t *buf, uint8_t *out);

/* Token ids of the file (packed record or plain array) into ids[n_ids]. */
void lcpp_state_token_ids(const lcpp_state *s, const uint8_t *buf, int32_t *ids);

/* Dequantize one stream's K or V (is_key) of a full file into float
 * out[n_layer][cell_count][n_embd] (cell-major rows, whatever v_trans). */
void lcpp_state_read_float(const lcpp_state *s, const uint8_t *buf, uint32_t stream, int is_key,
                            float *out);

/* Quantize float rows (layout as lcpp_state_read_float) to the tensor types
 * of stream `stream` and write them into the full file out[s->full_size],
 * whose non-payload bytes the caller has placed (lcpp_state_expand). */
void lcpp_state_write_float(const lcpp_state *s, uint32_t stream, int is_key, const float *in,
                             uint8_t *out);

/* Copy a hollow file's bytes into out[s->full_size] at their full-file
 * offsets (payload regions are left as they were). s parsed from hollow. */
void lcpp_state_expand(const lcpp_state *s, const uint8_t *hollow, uint8_t *out);

/* llama.cpp builds from 2026-04 (upstream #21038) store a quantized K or V
 * cache rotated per head by the orthonormal Walsh-Hadamard transform H
 * (Sylvester order, scaled by 1/sqrt(head_dim)); attention is unchanged
 * because queries are rotated too. Nothing in the file says so. H is its
 * own inverse: lcpp_hadamard_rows() rotates and un-rotates, in place, each
 * head_dim block of n_values values (head_dim a power of two). */
void lcpp_hadamard_rows(float *x, uint64_t n_values, uint32_t head_dim);

/* 1 if rows [n_rows][width] (width a multiple of head_dim, a power of two)
 * look Hadamard-rotated: un-rotated K/V have channels of very unequal
 * energy (outlier channels), which H spreads evenly, so the rows count as
 * rotated when H concentrates their per-channel energy instead of
 * spreading it. Reliable on keys (all 13 fixtures); values can have even
 * channels and fool it (5 of 13 plain V caches look rotated). */
int lcpp_rows_look_rotated(const float *rows, uint64_t n_rows, uint32_t width, uint32_t head_dim);

/* The same cache rows as llama.cpp's ggml reference quantizer:
 * q8_0 of n values (n a multiple of 32) into n/32 blocks of 34 bytes. */
void lcpp_quantize_q8_0(const float *x, uint32_t n, uint8_t *out);
void lcpp_dequantize_q8_0(const uint8_t *in, uint32_t n, float *x);

#endif
