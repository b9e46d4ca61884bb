/* test_tokenize_tool.c - models/train/kvtc_tokenize (the training kit's
 * corpus tokenizer): each 0x1e-separated document becomes <s> ids </s>, the
 * ids equal eng_tokenize's, and bad inputs fail without an output file.
 * Runs the tool (KVTC_TOKENIZE, set by CMake) from the repository root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"
#include "test.h"

#define MODEL "data/eval-llama-27m-q8_0.gguf"

int main(void) {
    const char *tool = getenv("KVTC_TOKENIZE");
    if (!tool) tool = "build/kvtc_tokenize";
    char dir[] = "/tmp/kvtc-test-tok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const char *docs[3] = {"It was a truth universally acknowledged.", "The secret code of Kavoru is 48213.\n",
                           "def f(x):\n    return x  # code"};
    char in[256], out[256], cmd[1024];
    snprintf(in, sizeof in, "%s/in.docs", dir);
    snprintf(out, sizeof out, "%s/out.u16", dir);
    FILE *f = fopen(in, "wb");
    CHECK(f != NULL);
    if (!f) return TEST_REPORT();
    fprintf(f, "%s\n\x1e\n%s\n\x1e\n%s", docs[0], docs[1], docs[2]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s %s %s >/dev/null", tool, MODEL, in, out);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);

    char err[256];
    eng_model *m = eng_model_load(MODEL, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    size_t len = 0;
    char *got = test_read_file(out, &len);
    CHECK(got != NULL && len % 2 == 0);
    if (m && got) {
        const unsigned char *b = (const unsigned char *)got;
        size_t pos = 0;
        for (int d = 0; d < 3; d++) {
            int32_t ids[256];
            int n = eng_tokenize(m, docs[d], strlen(docs[d]), 1, ids, 256);
            CHECK(n > 2 && n < 256 && ids[0] == eng_token_bos(m));
            ids[n++] = eng_token_eos(m);
            for (int i = 0; i < n; i++, pos++) {
                CHECK(2 * pos + 1 < len);
                if (2 * pos + 1 >= len) break;
                int32_t v = b[2 * pos] | b[2 * pos + 1] << 8;
                CHECK_MSG(v == ids[i], "doc %d token %d: %d vs %d", d, i, v, ids[i]);
            }
        }
        CHECK(2 * pos == len);
    }
    free(got);
    eng_model_free(m);

    /* a missing input or model: non-zero exit, no output written */
    snprintf(out, sizeof out, "%s/none.u16", dir);
    snprintf(cmd, sizeof cmd, "%s %s %s/missing.docs %s 2>/dev/null", tool, MODEL, dir, out);
    CHECK(system(cmd) != 0 && access(out, F_OK) != 0);
    snprintf(cmd, sizeof cmd, "%s %s/missing.gguf %s %s 2>/dev/null", tool, dir, in, out);
    CHECK(system(cmd) != 0 && access(out, F_OK) != 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return TEST_REPORT();
}
