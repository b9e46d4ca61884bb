/* lcpp_wrap.h - compressed llama.cpp state files (docs/FORMAT.md section
 * 5): a small checksummed wrapper that holds the state file with its K/V
 * payloads cut out (the "skeleton": header, tokens, session preamble, cells,
 * types and row sizes, byte for byte) and one standard kvtc stream per
 * llama.cpp KV stream that has cells. Decompression puts the skeleton back
 * and requantizes the decoded K/V to the file's own types, so the result
 * has the original layout variant, types and every non-K/V byte. */
#ifndef KVTC_IO_LCPP_WRAP_H
#define KVTC_IO_LCPP_WRAP_H

#include <stddef.h>
#include <stdint.h>

#include "io/lcpp_state.h"
#include "kvtc.h"

#define LCPP_WRAP_VERSION_MAJOR 1u
#define LCPP_WRAP_VERSION_MINOR 1u
#define LCPP_WRAP_HEADER_SIZE 64u
/* header flag (wrapper 1.1): the skeleton is stored as u64 raw size + raw
 * DEFLATE (its token record and cells shrink several-fold; a 1.0 wrapper,
 * flags 0, stores it as is and still reads) */
#define LCPP_WRAP_FLAG_SKELETON_DEFLATE 1u

/* Hadamard rotation of the file's K / V (lcpp_hadamard_rows): undone
 * before coding so the basis sees plain post-RoPE keys, redone on restore.
 * LCPP_ROT_AUTO (an input only) decides per K and V: never for f16, bf16
 * and f32 caches (llama.cpp rotates quantized caches only), for q8_0 keys
 * by lcpp_rows_look_rotated(), for q8_0 values as the keys when those are
 * q8_0 too (the statistic is reliable on keys only), else by the statistic. */
#define LCPP_ROT_K 1u
#define LCPP_ROT_V 2u
#define LCPP_ROT_AUTO 0x80000000u

/* A parsed wrapper: offsets into the caller's buffer (borrowed), except a
 * DEFLATE-stored skeleton, inflated into skeleton_owned. */
typedef struct lcpp_wrap {
    uint32_t version_major, version_minor;
    uint64_t full_size;         /* bytes of the restored llama.cpp file */
    uint64_t total_size;        /* bytes of the wrapper */
    const uint8_t *skeleton;    /* the hollow state file */
    size_t skeleton_size;
    size_t skeleton_stored;     /* its bytes in the wrapper (compressed or not) */
    uint8_t *skeleton_owned;    /* the inflated skeleton (owned), or NULL */
    lcpp_state state;          /* the skeleton, parsed (owned) */
    uint32_t n_sets;            /* embedded kvtc streams */
    const uint8_t **set_data;   /* [n_sets] (owned array, borrowed bytes) */
    size_t *set_size;           /* [n_sets] (owned) */
    uint32_t *set_stream;       /* [n_sets] llama.cpp stream of each set (owned) */
    uint32_t *set_rotation;     /* [n_sets] LCPP_ROT_K | LCPP_ROT_V of each set (owned) */
} lcpp_wrap;

/* 1 if buf starts with the wrapper magic. */
int lcpp_wrap_is_wrap(const void *buf, size_t size);

/* Parse and validate header, set table, checksums and the skeleton (the
 * embedded kvtc streams are validated when decoded). Errors:
 * KVTC_ERR_BAD_MAGIC, KVTC_ERR_UNSUPPORTED_VERSION, KVTC_ERR_TRUNCATED,
 * KVTC_ERR_CORRUPT (checksums, inconsistent sizes, a skeleton that does
 * not parse or whose sets do not match its streams), KVTC_ERR_OUT_OF_MEMORY. */
kvtc_result lcpp_wrap_parse(const void *buf, size_t size, lcpp_wrap *out);
void lcpp_wrap_free(lcpp_wrap *w);

/* The geometry a llama.cpp stream has under basis geometry g (the file
 * carries no head split, no RoPE parameters): n_layer must equal
 * g->n_layers and every K and V row width n_kv_heads * head_dim, else
 * KVTC_ERR_GEOMETRY_MISMATCH. */
kvtc_result lcpp_wrap_check_geometry(const lcpp_state *s, uint32_t stream, const kvtc_geometry *g);

/* The K/V of one llama.cpp stream as a kvtc cache of geometry g (owned
 * arrays in *cache: free with lcpp_wrap_cache_free): dtype f16 or bf16
 * when every K/V tensor has that type, f32 otherwise (f32, q8_0
 * dequantized); positions from the cells; token ids when want_ids and the
 * file's tokens are the stream's cells (one sequence, positions 0..n-1),
 * else KVTC_ERR_UNSUPPORTED when want_ids. *rotation: LCPP_ROT_AUTO or a
 * mask of LCPP_ROT_K/V to undo (KVTC_ERR_INVALID_ARGUMENT when head_dim is
 * not a power of two); receives the mask undone. */
kvtc_result lcpp_wrap_stream_cache(const lcpp_state *s, const uint8_t *buf, uint32_t stream,
                                    const kvtc_geometry *g, int want_ids, uint32_t *rotation,
                                    kvtc_cache *cache);
void lcpp_wrap_cache_free(kvtc_cache *cache);

/* Compress a llama.cpp state file into a wrapper (*out malloc'd). Errors
 * of lcpp_state_parse, lcpp_wrap_check_geometry, the encoder; a basis
 * that recomputes layers needs the token ids of the cells (see above).
 * rotation: as for lcpp_wrap_stream_cache (LCPP_ROT_AUTO by default). */
kvtc_result lcpp_wrap_compress(const kvtc_basis *b, const kvtc_encode_options *eo, uint32_t rotation,
                                const void *state, size_t size, void **out, size_t *out_size);

/* Restore the llama.cpp state file (*out malloc'd, w->full_size bytes).
 * Errors of lcpp_wrap_parse and kvtc_decompress; KVTC_ERR_CORRUPT when an
 * embedded stream does not match its cells (count, positions, geometry). */
kvtc_result lcpp_wrap_decompress(const kvtc_basis *b, const kvtc_decode_options *dopt, const void *buf,
                                  size_t size, void **out, size_t *out_size);

#endif
