/* fuzz_gguf.c - libFuzzer target for the GGUF reader and model loader
 * (engine/llama.h: eng_model_load_memory), then the tokenizer of a model
 * that loads. Invariant: no crash, a status and a message on failure. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    int status = 0;
    err[0] = 0;
    eng_model *m = eng_model_load_memory(data, size, &status, err, sizeof err);
    if (!m) {
        if (status == 0 || err[0] == 0) abort(); /* failure must be explained */
        return 0;
    }
    static const char text[] = "Once upon a time, a tiny cat \xe2\x9c\x93 sat.\n";
    int32_t ids[128];
    int n = eng_tokenize(m, text, sizeof text - 1, 1, ids, 128);
    if (n > 0 && n <= 128) {
        char out[512];
        size_t len = eng_detokenize(m, ids, (size_t)n, 1, out, sizeof out);
        (void)len;
        for (int i = 0; i < n; i++) (void)eng_token_piece(m, ids[i]);
    }
    eng_model_free(m);
    return 0;
}
