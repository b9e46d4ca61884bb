/*
 * kvtc_tokenize - turn a corpus into the uint16 token file train.py reads,
 * with the tokenizer embedded in a GGUF (kvtc's engine, the same SentencePiece
 * BPE as llama.cpp).
 *
 *   kvtc_tokenize MODEL.gguf IN.docs OUT.u16
 *
 * IN.docs holds documents separated by a line containing only the byte 0x1e;
 * each becomes <s> tokens </s>. OUT.u16 is little-endian uint16 (the
 * vocabulary must have <= 65536 tokens), written to a temporary file and
 * renamed. Prints the number of documents and tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "llama.h"

static const char SEP[] = "\n\x1e\n";

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: kvtc_tokenize MODEL.gguf IN.docs OUT.u16\n");
        return 2;
    }
    char err[256];
    eng_model *m = eng_model_load(argv[1], err, sizeof(err));
    if (!m) return cli_fail("tokenize", "%s: %s", argv[1], err);
    if (eng_model_hparams(m)->n_vocab > 65536) {
        eng_model_free(m);
        return cli_fail("tokenize", "%s: vocabulary too large for uint16", argv[1]);
    }
    void *buf = NULL;
    size_t size = 0;
    if (cli_read_file(argv[2], &buf, &size, err, sizeof(err)) != KVTC_OK) {
        eng_model_free(m);
        return cli_fail("tokenize", "%s", err);
    }
    const char *text = buf;
    /* SentencePiece makes at most one token per byte, plus <s> and </s>. */
    size_t cap = size + 2, n_out = 0, n_docs = 0;
    int32_t *ids = malloc(cap * sizeof(int32_t));
    uint16_t *out = malloc((size + 2 * (size / 3 + 1)) * sizeof(uint16_t));
    int rc = 0;
    if (!ids || !out) {
        rc = cli_fail("tokenize", "out of memory");
        goto done;
    }
    for (size_t pos = 0; pos <= size;) {
        const char *end = NULL;
        for (size_t i = pos; i + 3 <= size; i++)
            if (memcmp(text + i, SEP, 3) == 0) {
                end = text + i;
                break;
            }
        size_t len = end ? (size_t)(end - (text + pos)) : size - pos;
        if (len > 0) {
            int n = eng_tokenize(m, text + pos, len, 1, ids, cap);
            if (n < 0 || (size_t)n > cap) {
                rc = cli_fail("tokenize", "tokenizing document %zu failed (%d)", n_docs, n);
                goto done;
            }
            for (int i = 0; i < n; i++) out[n_out++] = (uint16_t)ids[i];
            out[n_out++] = (uint16_t)eng_token_eos(m);
            n_docs++;
        }
        pos += len + 3;
    }
    if (cli_write_file(argv[3], out, n_out * sizeof(uint16_t), err, sizeof(err)) != KVTC_OK) {
        rc = cli_fail("tokenize", "%s", err);
        goto done;
    }
    printf("%zu documents, %zu tokens -> %s\n", n_docs, n_out, argv[3]);
done:
    free(ids);
    free(out);
    free(buf);
    eng_model_free(m);
    return rc;
}
