/* fuzz_safetensors.c - libFuzzer target for the safetensors reader and the
 * KV cache interchange file: st_parse + cache_file_parse. Invariants: no
 * crash; every parsed tensor lies inside the input and is readable; a cache
 * that parses serializes and parses again to the same cache. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/cache_file.h"
#include "io/safetensors.h"
#include "kvtc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    if (st_parse(data, size, &f) == KVTC_OK) {
        volatile uint8_t acc = 0;
        for (uint32_t i = 0; i < f.n_tensors; i++) {
            const st_tensor *t = &f.tensors[i];
            const uint8_t *p = t->data;
            if (t->nbytes) {
                if (p < data || p + t->nbytes > data + size) abort();
                acc ^= p[0] ^ p[t->nbytes - 1];
            }
            if (st_find(&f, t->name) == NULL) abort();
        }
        for (uint32_t i = 0; i < f.n_meta; i++)
            if (st_meta_get(&f, f.meta[i].key) == NULL) abort();
        (void)acc;
        st_file_free(&f);
    }
    cache_file cf;
    if (cache_file_parse(data, size, &cf) == KVTC_OK) {
        void *buf = NULL;
        size_t n = 0;
        if (cache_file_serialize(&cf.cache, &buf, &n) != KVTC_OK) abort();
        cache_file again;
        if (cache_file_parse(buf, n, &again) != KVTC_OK) abort();
        uint64_t kb = kvtc_cache_tensor_bytes(&cf.cache.geometry, cf.cache.dtype, cf.cache.n_tokens);
        if (again.cache.n_tokens != cf.cache.n_tokens || again.cache.dtype != cf.cache.dtype ||
            memcmp(again.cache.k, cf.cache.k, (size_t)kb) != 0 ||
            memcmp(again.cache.v, cf.cache.v, (size_t)kb) != 0)
            abort();
        cache_file_free(&again);
        free(buf);
        cache_file_free(&cf);
    }
    return 0;
}
