/* container.h - the kvtc stream container (docs/FORMAT.md): a fixed
 * 128-byte header, a section table, then the sections. This module only
 * lays out and validates; encode/decode fill and read the sections. */
#ifndef KVTC_FORMAT_CONTAINER_H
#define KVTC_FORMAT_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"

#define KVTC_MAGIC_BYTES "\x89KVTC\r\n\x1a"
#define CONTAINER_HEADER_SIZE 128u
#define CONTAINER_SECTION_ENTRY 24u
#define CONTAINER_CHUNK_ENTRY 24u
#define CONTAINER_CODEC_DEFLATE 1u
#define CONTAINER_CODEC_RANS 2u
#define CONTAINER_MAX_CHUNK_TOKENS 65536u
/* A plan section larger than this is corrupt (2 x 2^20 groups of 8 bytes). */
#define CONTAINER_MAX_PLAN_SECTION (16ull + 16ull * (1ull << 20))

#define CONTAINER_FLAG_POSITIONS 1u
#define CONTAINER_FLAG_TOKEN_IDS 2u
#define CONTAINER_FLAG_PLAN 4u /* 1.1: a plan section (the groups of a plan the basis does not store) */
#define CONTAINER_FLAG_MODEL_FINGERPRINT 8u /* u64 at offset 112 (format 1.1) */

enum container_section {
    SEC_POSITIONS = 0, /* int64 [n_tokens] */
    SEC_TOKEN_IDS,     /* int32 [n_tokens] */
    SEC_RAW_K,         /* dtype [n_layers][n_kv_heads][n_sink + n_window][head_dim] */
    SEC_RAW_V,
    SEC_CHUNK_INDEX,   /* n_chunks x chunk_entry */
    SEC_CHUNK_DATA,    /* the entropy-coded chunks back to back */
    SEC_COUNT,         /* sections of every stream (the 1.0 table) */
    SEC_PLAN = SEC_COUNT, /* 1.1, with CONTAINER_FLAG_PLAN: the plan's groups */
    SEC_COUNT_MAX
};

typedef struct container_section_entry {
    uint64_t offset; /* from the start of the stream */
    uint64_t size;
    uint32_t crc32;  /* of the section bytes (CHUNK_DATA: 0, chunks carry their own) */
} container_section_entry;

typedef struct container_chunk_entry {
    uint64_t offset;      /* within SEC_CHUNK_DATA */
    uint32_t size;        /* compressed bytes */
    uint32_t crc32;       /* of the compressed bytes */
    uint32_t n_tokens;
    uint32_t payload_size;/* bytes after entropy decoding */
} container_chunk_entry;

typedef struct container_header {
    uint16_t version_major, version_minor;
    uint32_t flags;
    kvtc_geometry geometry;
    kvtc_dtype dtype;
    uint8_t codec;
    uint8_t rope_removed;
    uint32_t recompute_layers;
    uint64_t n_tokens;
    uint32_t n_sink, n_window; /* effective: n_sink + n_window <= n_tokens */
    uint32_t chunk_tokens;
    uint32_t n_chunks;
    uint64_t transform_fingerprint;
    uint64_t plan_fingerprint;
    double plan_ratio;
    uint64_t model_fingerprint; /* with CONTAINER_FLAG_MODEL_FINGERPRINT, else 0 */
    uint64_t total_size;
    container_section_entry sections[SEC_COUNT_MAX];
} container_header;

/* Bytes of header + section table of a stream without a plan section. */
static inline uint64_t container_prefix_size(void) {
    return CONTAINER_HEADER_SIZE + (uint64_t)SEC_COUNT * CONTAINER_SECTION_ENTRY;
}

/* Sections in h's table: SEC_COUNT, plus the plan section when flagged. */
static inline int container_n_sections(const container_header *h) {
    return (h->flags & CONTAINER_FLAG_PLAN) ? SEC_COUNT_MAX : SEC_COUNT;
}

/* Bytes of header + section table of h. */
static inline uint64_t container_prefix_size_of(const container_header *h) {
    return CONTAINER_HEADER_SIZE + (uint64_t)container_n_sections(h) * CONTAINER_SECTION_ENTRY;
}

/* Size of the plan section for groups counts nk, nv (docs/FORMAT.md). */
static inline uint64_t container_plan_section_size(uint32_t nk, uint32_t nv) {
    return 16 + 8 * ((uint64_t)nk + nv);
}

/* Fill the derived fields of h (section offsets and sizes, except the size
 * of SEC_CHUNK_DATA which the caller sets) from its geometry and counts.
 * Returns KVTC_ERR_TOO_LARGE on overflow. */
kvtc_result container_layout(container_header *h, uint64_t chunk_data_size);

/* Set the plan-section flag and its size (call before container_layout). */
void container_set_plan_section(container_header *h, uint64_t size);

/* Header of a stream encoding `n_tokens` tokens of geometry g and dtype with
 * plan `plan` of basis b: sink and window clamped to the cache, chunk count,
 * fingerprints, flags (positions when has_positions, token ids when the
 * basis recomputes layers). Section sizes are left to container_layout().
 * KVTC_ERR_TOO_LARGE when the chunk count does not fit. Shared by the CPU
 * and CUDA encoders so both write the same header for the same request. */
struct kvtc_basis;
kvtc_result container_header_init(container_header *h, const struct kvtc_basis *b, uint32_t plan,
                                  const kvtc_geometry *g, kvtc_dtype dtype, uint64_t n_tokens,
                                  uint32_t n_sink, uint32_t n_window, uint32_t chunk_tokens, uint8_t codec,
                                  int has_positions);
/* The same for any plan of b (stored or solved; the caller adds the plan
 * section for one the basis does not store). */
struct basis_plan;
kvtc_result container_header_init_plan(container_header *h, const struct kvtc_basis *b,
                                       const struct basis_plan *pl, const kvtc_geometry *g, kvtc_dtype dtype,
                                       uint64_t n_tokens, uint32_t n_sink, uint32_t n_window,
                                       uint32_t chunk_tokens, uint8_t codec, int has_positions);

/* Plan section <-> groups (docs/FORMAT.md "Plan section"). write: out holds
 * container_plan_section_size(k->n_groups, v->n_groups) bytes. read:
 * validates the groups against the basis (sizes, kinds, stored rank) and
 * fills *out with fingerprint; KVTC_ERR_CORRUPT if invalid. */
void container_write_plan_section(const struct basis_plan *pl, uint8_t *out);
kvtc_result container_read_plan_section(const uint8_t *buf, const container_header *h,
                                        const struct kvtc_basis *b, struct basis_plan *out);

/* Serialize header and table (CRCs computed) into out[0..container_prefix_size_of(h)). */
void container_write_prefix(const container_header *h, uint8_t *out);

/* Parse and fully validate header, table and (CRC of) every non-chunk
 * section of buf[0..size). */
kvtc_result container_read_prefix(const uint8_t *buf, size_t size, container_header *h);

/* Like container_read_prefix, but reads and validates only the header and
 * the section table (buf holds at least container_prefix_size() bytes; the
 * sections are not checked): for decoders that verify the sections
 * elsewhere, e.g. on a GPU. */
kvtc_result container_read_prefix_only(const uint8_t *buf, size_t size, container_header *h);

/* Read and validate chunk entry i (bounds, token counts, payload size
 * against `expected_payload` for its token count computed by the caller). */
void container_write_chunk_entry(const container_chunk_entry *e, uint8_t *out);
kvtc_result container_read_chunk_entry(const uint8_t *buf, const container_header *h, uint32_t i,
                                       container_chunk_entry *e);

/* A chunk's payload may be at most CONTAINER_MAX_EXPANSION times its coded
 * size plus CONTAINER_EXPANSION_SLACK bytes: DEFLATE cannot expand more than
 * 1032:1 (a 258-byte match per 2 bits), and this library's rANS encoder
 * gives every 2048 bytes a lane with 8 bytes of state (at most 256:1). */
#define CONTAINER_MAX_EXPANSION 1032u
#define CONTAINER_EXPANSION_SLACK 1024u

/* Check the whole chunk index (its CRC already verified): entries in order,
 * back to back from offset 0, filling chunk data exactly, token counts as
 * the header implies, payload sizes within the expansion bound above.
 * KVTC_ERR_CORRUPT otherwise. container_read_prefix calls it. */
kvtc_result container_check_chunk_index(const uint8_t *buf, const container_header *h);

/* Raw (sink + window) tokens. */
static inline uint64_t container_raw_tokens(const container_header *h) {
    return (uint64_t)h->n_sink + h->n_window;
}
static inline uint64_t container_coded_tokens(const container_header *h) {
    return h->n_tokens - container_raw_tokens(h);
}

#endif
