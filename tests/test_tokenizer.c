/*
 * test_tokenizer.c - the SentencePiece BPE tokenizer of the engine: speed and
 * round trip on persuasion.txt, byte fallback, spaces, empty input, merge
 * order, and the detokenizer's piece mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"
#include "test.h"

/* tokenize then detokenize `s`; 1 when the text comes back unchanged. */
static int round_trip(const eng_model *m, const char *s, size_t len) {
    int n = eng_tokenize(m, s, len, 1, NULL, 0);
    if (n < 0) return 0;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof(int32_t));
    int ok = eng_tokenize(m, s, len, 1, ids, (size_t)n) == n;
    char *back = malloc(len + 16);
    size_t bl = eng_detokenize(m, ids, (size_t)n, 1, back, len + 16);
    ok &= bl == len && memcmp(back, s, len) == 0;
    free(back);
    free(ids);
    return ok;
}

static void test_model(const char *path, int big) {
    char err[256];
    eng_model *m = eng_model_load(path, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return;

    if (big) {
        size_t len = 0;
        char *text = test_read_file("data/persuasion.txt", &len);
        CHECK(text != NULL);
        double t0 = test_now();
        int n = eng_tokenize(m, text, len, 1, NULL, 0);
        double dt = test_now() - t0;
        printf("%s: persuasion.txt -> %d tokens in %.3f s\n", path, n, dt);
        CHECK(n > 100000);
#ifdef NDEBUG
        CHECK(dt < 1.0); /* optimized builds; sanitizer builds are several times slower */
#endif
        CHECK(round_trip(m, text, len));
        free(text);
    }

    /* Byte fallback, multi-byte characters, odd spaces, invalid UTF-8. */
    const char *cases[] = {"", " ", "  two  spaces ", "x", "\n\n\ttab", "caf\xc3\xa9 na\xc3\xafve",
                           "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "emoji \xf0\x9f\x98\x80!",
                           "stray \x80\xbf and a cut sequence \xc3", "<s> and </s> are text", "<0x0A> too",
                           "digits 1234567890"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_MSG(round_trip(m, cases[i], strlen(cases[i])), "round trip of case %zu", i);

    /* Invalid lead bytes take the following bytes into their "character" (as
     * llama.cpp does), which may split a U+2581; it must not crash. */
    CHECK(eng_tokenize(m, "a\xff b\xf0", 6, 1, NULL, 0) > 0);

    /* Empty text: just <s>, or nothing. */
    int32_t ids[64];
    CHECK(eng_tokenize(m, "", 0, 1, ids, 64) == 1 && ids[0] == eng_token_bos(m));
    CHECK(eng_tokenize(m, "", 0, 0, ids, 64) == 0);
    /* Text spelling special tokens stays text. */
    int n = eng_tokenize(m, "<s>", 3, 0, ids, 64);
    for (int i = 0; i < n; i++) CHECK(ids[i] != eng_token_bos(m));
    /* A byte-fallback character becomes its UTF-8 bytes. */
    n = eng_tokenize(m, "\xe6\x97\xa5", 3, 0, ids, 64);
    CHECK(n >= 3 && strcmp(eng_token_piece(m, ids[n - 1]), "<0xA5>") == 0);
    /* The count comes back even when the buffer is too small. */
    CHECK(eng_tokenize(m, "hello world", 11, 1, ids, 1) ==
          eng_tokenize(m, "hello world", 11, 1, ids, 64));
    CHECK(eng_token_piece(m, -1) == NULL && eng_token_piece(m, 1 << 30) == NULL);
    /* </s> and <s> detokenize to nothing; detokenize reports the full length. */
    int32_t sp[3] = {eng_token_bos(m), eng_token_eos(m), ids[0]};
    char out[8];
    CHECK(eng_detokenize(m, sp, 2, 0, out, sizeof(out)) == 0);
    eng_model_free(m);
}

int main(void) {
    test_model("data/eval-llama-27m-q8_0.gguf", 1);
    test_model("data/stories260K.gguf", 0);
    return TEST_REPORT();
}
