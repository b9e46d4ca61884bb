/* record.h - the store's value: one self-contained, checksummed record per
 * chunk (docs/STORE.md, "Record format"). */
#ifndef KVTC_STORE_RECORD_H
#define KVTC_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"
#include "util/sha256.h"

#define STORE_RECORD_MAGIC "KVTCSREC"
#define STORE_RECORD_VERSION_MAJOR 1
#define STORE_RECORD_VERSION_MINOR 0
#define STORE_RECORD_HEADER 104u /* bytes before the token ids */

/* What a record must match to be used. */
typedef struct store_record_expect {
    const uint8_t *ns;           /* [32] */
    const uint8_t *key;          /* [32] */
    uint64_t chunk_index;
    uint32_t codec;
    const int32_t *tokens;       /* the chunk's token ids */
    uint32_t n_tokens;
} store_record_expect;

/* Size of a record with this many tokens and payload bytes (0 on overflow). */
size_t store_record_size(uint32_t n_tokens, size_t payload_bytes);

/* Write the header and token ids into rec (store_record_size bytes); the
 * payload goes at rec + store_record_payload_offset(n) and
 * store_record_seal() then appends the CRC. */
size_t store_record_payload_offset(uint32_t n_tokens);
void store_record_write_header(uint8_t *rec, const store_record_expect *e, size_t payload_bytes);
void store_record_seal(uint8_t *rec, size_t size);

/* Check everything: size, magic, version, CRC-32, then namespace, key,
 * index, codec and token ids against e. On success *payload and *payload_bytes
 * point into rec. KVTC_ERR_TRUNCATED, BAD_MAGIC, UNSUPPORTED_VERSION,
 * CORRUPT, or BASIS_MISMATCH (a valid record of another namespace, key or
 * token sequence). */
kvtc_result store_record_check(const uint8_t *rec, size_t size, const store_record_expect *e,
                               const uint8_t **payload, size_t *payload_bytes);

#endif
