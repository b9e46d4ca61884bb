/* fuzz_store_record.c - libFuzzer target for the store's record check
 * (lib/store/record.c), the first thing that reads a value fetched from a
 * file or a server. Each input is checked twice: as it is (the CRC stops
 * almost every mutation), and re-sealed with a correct CRC and with the
 * expectation taken from its own header, so the later checks (sizes,
 * version, identity, token ids) and the payload's stream header are
 * reached. An accepted record's payload must lie inside the record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "kvtc_store.h"
#include "store/record.h"
#include "util/endian.h"

static void check_payload(const uint8_t *rec, size_t size, const uint8_t *p, size_t n) {
    if (p < rec + STORE_RECORD_HEADER || p + n != rec + size - 4) abort();
    kvtc_stream_info info = {.struct_size = sizeof info};
    (void)kvtc_stream_get_info(p, n, &info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = NULL;
    size_t n = 0;
    uint8_t zero[32] = {0};
    int32_t no_tokens[1] = {0};
    store_record_expect fixed = {zero, zero, 0, KVTC_STORE_CODEC_KVTC, no_tokens, 0};
    if (store_record_check(data, size, &fixed, &p, &n) == KVTC_OK) check_payload(data, size, p, n);

    if (size < STORE_RECORD_HEADER + 4) return 0;
    uint8_t *rec = malloc(size);
    if (!rec) return 0;
    memcpy(rec, data, size);
    store_record_seal(rec, size);
    uint32_t n_tokens = kvi_load_u32(rec + 88);
    size_t head = store_record_payload_offset(n_tokens);
    int32_t *tokens = NULL;
    if (head <= size - 4) {
        tokens = malloc(sizeof(int32_t) * (n_tokens ? n_tokens : 1));
        if (tokens)
            for (uint32_t i = 0; i < n_tokens; i++) tokens[i] = (int32_t)kvi_load_u32(rec + STORE_RECORD_HEADER + 4 * (size_t)i);
    }
    store_record_expect own = {rec + 16, rec + 48, kvi_load_u64(rec + 80), kvi_load_u32(rec + 12),
                               tokens ? tokens : no_tokens, tokens ? n_tokens : 0};
    if (store_record_check(rec, size, &own, &p, &n) == KVTC_OK) check_payload(rec, size, p, n);
    free(tokens);
    free(rec);
    return 0;
}
