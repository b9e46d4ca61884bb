/* record.c - build and verify chunk records.
 *
 *   0  u8[8]  magic "KVTCSREC"          48 u8[32] chunk key
 *   8  u16    version major (1)         80 u64    chunk index
 *   10 u16    version minor (0)         88 u32    n_tokens
 *   12 u32    codec                     92 u32    reserved (0)
 *   16 u8[32] namespace                 96 u64    payload bytes
 *   104 i32[n_tokens] token ids, then the payload, then u32 CRC-32 of all before it. */
#include "store/record.h"

#include <libdeflate.h>
#include <string.h>

#include "util/endian.h"

size_t store_record_payload_offset(uint32_t n_tokens) { return STORE_RECORD_HEADER + 4 * (size_t)n_tokens; }

size_t store_record_size(uint32_t n_tokens, size_t payload_bytes) {
    size_t head = store_record_payload_offset(n_tokens);
    if (payload_bytes > SIZE_MAX - head - 4) return 0;
    return head + payload_bytes + 4;
}

void store_record_write_header(uint8_t *rec, const store_record_expect *e, size_t payload_bytes) {
    memcpy(rec, STORE_RECORD_MAGIC, 8);
    kvi_store_u16(rec + 8, STORE_RECORD_VERSION_MAJOR);
    kvi_store_u16(rec + 10, STORE_RECORD_VERSION_MINOR);
    kvi_store_u32(rec + 12, e->codec);
    memcpy(rec + 16, e->ns, 32);
    memcpy(rec + 48, e->key, 32);
    kvi_store_u64(rec + 80, e->chunk_index);
    kvi_store_u32(rec + 88, e->n_tokens);
    kvi_store_u32(rec + 92, 0);
    kvi_store_u64(rec + 96, (uint64_t)payload_bytes);
    for (uint32_t i = 0; i < e->n_tokens; i++) kvi_store_u32(rec + STORE_RECORD_HEADER + 4 * (size_t)i, (uint32_t)e->tokens[i]);
}

void store_record_seal(uint8_t *rec, size_t size) {
    kvi_store_u32(rec + size - 4, libdeflate_crc32(0, rec, size - 4));
}

kvtc_result store_record_check(const uint8_t *rec, size_t size, const store_record_expect *e,
                               const uint8_t **payload, size_t *payload_bytes) {
    if (size < 8 || memcmp(rec, STORE_RECORD_MAGIC, 8)) return size < 8 ? KVTC_ERR_TRUNCATED : KVTC_ERR_BAD_MAGIC;
    if (size < STORE_RECORD_HEADER + 4) return KVTC_ERR_TRUNCATED;
    if (kvi_load_u16(rec + 8) != STORE_RECORD_VERSION_MAJOR) return KVTC_ERR_UNSUPPORTED_VERSION;
    uint32_t n = kvi_load_u32(rec + 88);
    uint64_t pb = kvi_load_u64(rec + 96);
    size_t head = store_record_payload_offset(n); /* n < 2^32: no overflow in 64-bit size_t */
    if (head > size - 4 || pb != (uint64_t)(size - 4 - head)) return KVTC_ERR_TRUNCATED;
    if (libdeflate_crc32(0, rec, size - 4) != kvi_load_u32(rec + size - 4)) return KVTC_ERR_CORRUPT;
    if (kvi_load_u32(rec + 92) != 0) return KVTC_ERR_CORRUPT;
    if (memcmp(rec + 16, e->ns, 32) || memcmp(rec + 48, e->key, 32) || kvi_load_u64(rec + 80) != e->chunk_index ||
        kvi_load_u32(rec + 12) != e->codec || n != e->n_tokens)
        return KVTC_ERR_BASIS_MISMATCH;
    for (uint32_t i = 0; i < n; i++)
        if ((int32_t)kvi_load_u32(rec + STORE_RECORD_HEADER + 4 * (size_t)i) != e->tokens[i])
            return KVTC_ERR_BASIS_MISMATCH;
    *payload = rec + head;
    *payload_bytes = (size_t)pb;
    return KVTC_OK;
}
