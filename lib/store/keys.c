/* keys.c - namespace and chained chunk keys (serialized field by field in
 * little-endian, so keys are the same on every machine). */
#include "store/keys.h"

#include <string.h>

#include "util/endian.h"

static void put_u32(kvtc_sha256_ctx *s, uint32_t v) {
    uint8_t b[4];
    kvi_store_u32(b, v);
    kvtc_sha256_update(s, b, 4);
}

static void put_u64(kvtc_sha256_ctx *s, uint64_t v) {
    uint8_t b[8];
    kvi_store_u64(b, v);
    kvtc_sha256_update(s, b, 8);
}

void store_namespace(const store_identity *id, uint8_t ns[KVTC_SHA256_SIZE]) {
    static const char tag[] = "kvtc-store-ns-v1";
    kvtc_sha256_ctx s;
    kvtc_sha256_init(&s);
    kvtc_sha256_update(&s, tag, sizeof tag); /* with its NUL */
    put_u64(&s, id->basis_fingerprint);
    put_u64(&s, id->model_fingerprint);
    put_u32(&s, id->geometry.n_layers);
    put_u32(&s, id->geometry.n_kv_heads);
    put_u32(&s, id->geometry.head_dim);
    put_u32(&s, id->geometry.rope_type == KVTC_ROPE_NONE ? 0 : (id->geometry.rope_dim ? id->geometry.rope_dim : id->geometry.head_dim));
    put_u32(&s, (uint32_t)id->geometry.rope_type);
    uint32_t theta_bits = 0;
    if (id->geometry.rope_type != KVTC_ROPE_NONE) memcpy(&theta_bits, &id->geometry.rope_theta, 4);
    put_u32(&s, theta_bits);
    put_u32(&s, (uint32_t)id->dtype);
    put_u32(&s, id->chunk_tokens);
    put_u32(&s, id->codec);
    put_u32(&s, id->n_sink);
    uint64_t ratio_bits;
    memcpy(&ratio_bits, &id->plan_ratio, 8);
    put_u64(&s, ratio_bits);
    kvtc_sha256_final(&s, ns);
}

void store_chain_key(const uint8_t prev[KVTC_SHA256_SIZE], const int32_t *tokens, uint32_t n,
                     uint8_t out[KVTC_SHA256_SIZE]) {
    kvtc_sha256_ctx s;
    kvtc_sha256_init(&s);
    kvtc_sha256_update(&s, prev, KVTC_SHA256_SIZE);
    uint8_t buf[256];
    uint32_t i = 0;
    while (i < n) {
        uint32_t m = 0;
        for (; i < n && m + 4 <= sizeof buf; i++, m += 4) kvi_store_u32(buf + m, (uint32_t)tokens[i]);
        kvtc_sha256_update(&s, buf, m);
    }
    kvtc_sha256_final(&s, out);
}

void store_key_hex(const uint8_t key[KVTC_SHA256_SIZE], char hex[2 * KVTC_SHA256_SIZE + 1]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < KVTC_SHA256_SIZE; i++) {
        hex[2 * i] = digits[key[i] >> 4];
        hex[2 * i + 1] = digits[key[i] & 15];
    }
    hex[2 * KVTC_SHA256_SIZE] = '\0';
}

uint64_t store_name_fingerprint(const char *name) {
    uint8_t d[KVTC_SHA256_SIZE];
    kvtc_sha256(name, strlen(name), d);
    return kvi_load_u64(d);
}
