/* test_llama_cli.c - the kvtc tool on llama.cpp state files end to end:
 * calibrate from slot files (geometry from the GGUF's metadata, or by
 * flags), info, compress, decompress (all non-K/V bytes identical), and
 * `kvtc slots` on a slot directory: in-place compression that skips what
 * is not a complete state file, idempotence, expand before a restore,
 * --keep; `kvtc slots check` in the engine; failures exit 1 with one line. Uses the stories260K fixtures
 * (small) and $KVTC_CLI (set by CMake). */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf.h"
#include "io/lcpp_state.h"
#include "io/lcpp_wrap.h"
#include "test.h"

#define FIX "tests/fixtures/llama.cpp"

static char g_dir[64];

/* Run "kvtc ARGS" from the source root, output in g_dir/out.txt and
 * err.txt; the exit status, or -1 for a crash or a sanitizer report. */
static int kvtc(const char *args) {
    const char *cli = getenv("KVTC_CLI");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/out.txt' 2>'%s/err.txt'", cli ? cli : "build/kvtc", args, g_dir, g_dir);
    char p[128];
    snprintf(p, sizeof p, "%s/err.txt", g_dir);
    return test_system_checked(cmd, p);
}

/* g_dir/NAME's content (NUL-terminated, malloc'd) */
static char *out_of(const char *name, size_t *n) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return test_read_file(p, n);
}

static int output_has(const char *name, const char *needle) {
    size_t n;
    char *b = out_of(name, &n);
    int ok = b && strstr(b, needle);
    free(b);
    return ok;
}

static int one_line_error(void) {
    size_t n;
    char *b = out_of("err.txt", &n);
    int lines = 0;
    for (size_t i = 0; b && i < n; i++) lines += b[i] == '\n';
    int ok = b && lines == 1 && !strncmp(b, "kvtc: ", 6);
    free(b);
    return ok;
}

static int exists(const char *rel) {
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    return stat(p, &st) == 0;
}

static void copy_to(const char *src, const char *rel, size_t cut) {
    size_t n;
    char *b = test_read_file(src, &n), p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    FILE *f = fopen(p, "wb");
    if (b && f) fwrite(b, 1, cut && cut < n ? cut : n, f);
    if (f) fclose(f);
    free(b);
}

/* The non-K/V bytes of two state files agree. */
static int same_skeleton(const char *a_path, const char *b_path) {
    size_t na, nb;
    char *a = test_read_file(a_path, &na), *b = test_read_file(b_path, &nb);
    lcpp_state sa, sb;
    int ok = 0;
    if (a && b && lcpp_state_parse(a, na, &sa) == KVTC_OK) {
        if (lcpp_state_parse(b, nb, &sb) == KVTC_OK) {
            size_t ha = lcpp_state_hollow_size(&sa), hb = lcpp_state_hollow_size(&sb);
            uint8_t *x = malloc(ha + 1), *y = malloc(hb + 1);
            lcpp_state_make_hollow(&sa, (uint8_t *)a, x);
            lcpp_state_make_hollow(&sb, (uint8_t *)b, y);
            ok = na == nb && ha == hb && memcmp(x, y, ha) == 0;
            free(x);
            free(y);
            lcpp_state_free(&sb);
        }
        lcpp_state_free(&sa);
    }
    free(a);
    free(b);
    return ok;
}

/* Rewrite g_dir/REL: how(bytes, size) edits them in place. */
static int edit_file(const char *rel, int (*how)(uint8_t *, size_t)) {
    char p[256];
    size_t n;
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    uint8_t *b = (uint8_t *)test_read_file(p, &n);
    int ok = b && how(b, n) == 0;
    FILE *f = ok ? fopen(p, "wb") : NULL;
    ok = f && fwrite(b, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    free(b);
    return ok;
}

/* The same tokens and cells with other K/V (as another model of the same
 * geometry saves them): layer 0's K takes layer 1's values. */
static int other_kv(uint8_t *b, size_t n) {
    lcpp_state s;
    if (lcpp_state_parse(b, n, &s)) return -1;
    const lcpp_kv_tensor *k0 = &s.streams[0].k[0], *k1 = &s.streams[0].k[1];
    int ok = k0->data_bytes == k1->data_bytes && memcmp(b + k0->data_off, b + k1->data_off, k0->data_bytes);
    if (ok) memcpy(b + k0->data_off, b + k1->data_off, k0->data_bytes);
    lcpp_state_free(&s);
    return ok ? 0 : -1;
}

/* One flipped bit inside the first K/V stream of a wrapper (its skeleton,
 * header and table stay intact). */
static int damage_stream(uint8_t *b, size_t n) {
    lcpp_wrap w;
    if (lcpp_wrap_parse(b, n, &w)) return -1;
    size_t at = (size_t)(w.set_data[0] - b) + w.set_size[0] / 2;
    lcpp_wrap_free(&w);
    b[at] ^= 0x10;
    return 0;
}

/* Another model of the same geometry: one flipped bit in layer 0's K
 * weights (which a recomputed layer 0 depends on). */
static int other_model(uint8_t *b, size_t n) {
    eng_gguf_file *gf = NULL;
    if (eng_gguf_open_memory(b, n, &gf, NULL, 0) != ENG_GGUF_OK) return -1;
    const eng_gguf_tensor *t = eng_gguf_find_tensor(gf, "blk.0.attn_k.weight");
    size_t at = t ? (size_t)(t->data - gf->buf) + 7 : 0;
    eng_gguf_close(gf);
    if (!t) return -1;
    b[at] ^= 0x80;
    return 0;
}

static int no_temporaries(const char *sub) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, sub);
    DIR *d = opendir(p);
    if (!d) return 0;
    struct dirent *e;
    int ok = 1;
    while ((e = readdir(d))) ok &= strncmp(e->d_name, ".kvtc-tmp-", 10) != 0; /* cli_write_file's temporaries */
    closedir(d);
    return ok;
}

int main(void) {
    double t0 = test_now();
    snprintf(g_dir, sizeof g_dir, "/tmp/kvtc_llama_XXXXXX");
    if (!mkdtemp(g_dir)) { CHECK(0); return TEST_REPORT(); }
    char a[1024], p1[256], p2[256];

    /* calibrate from slot files: the GGUF gives heads and RoPE, or flags do */
    snprintf(a, sizeof a, "calibrate -o %s/s.basis --model data/stories260K.gguf --ratio 8 --ratio 20 "
             FIX "/3f545be/stories260k-f16-vtrans0.ggsq " FIX "/c392e50/stories260k-f16-vtrans1.ggsq", g_dir);
    CHECK(kvtc(a) == 0);
    snprintf(a, sizeof a, "calibrate -o %s/m.basis --kv-heads 4 --rope-theta 10000 --ratio 20 " FIX "/3f545be/stories260k-bf16-vtrans0.ggsq", g_dir);
    CHECK(kvtc(a) == 0);
    snprintf(a, sizeof a, "info %s/m.basis", g_dir);
    CHECK(kvtc(a) == 0 && output_has("out.txt", "5 layers x 4 kv heads x 8 dims"));
    snprintf(a, sizeof a, "calibrate -o %s/x.basis " FIX "/3f545be/stories260k-bf16-vtrans0.ggsq", g_dir);
    CHECK(kvtc(a) == 2 && one_line_error()); /* no geometry source */
    snprintf(a, sizeof a, "calibrate -o %s/x.basis --model data/stories260K.gguf " FIX "/3f545be/eval27m-f16-vtrans1-capi.ggsq", g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "not of this model"));

    /* info on a state file */
    CHECK(kvtc("info " FIX "/3f545be/stories260k-bf16-vtrans0.ggsq") == 0);
    CHECK(output_has("out.txt", "kv-C") && output_has("out.txt", "345 cells") && output_has("out.txt", "bf16"));
    CHECK(kvtc("info " FIX "/c392e50/eval27m-f16-vtrans1-capi.ggsn") == 0 && output_has("out.txt", "with outputs/logits"));

    /* compress / info / decompress */
    snprintf(a, sizeof a, "compress --basis %s/s.basis " FIX "/3f545be/stories260k-f16-vtrans1.ggsq -o %s/s.kvtc", g_dir, g_dir);
    CHECK(kvtc(a) == 0);
    /* the wrong one of the two kinds is named as what it is (it was "not a
     * kvtc stream, basis or safetensors file (bad magic)") */
    snprintf(a, sizeof a, "compress --basis %s/s.basis %s/s.kvtc -o %s/y.kvtc", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "is a compressed llama.cpp state file") && !exists("y.kvtc"));
    snprintf(a, sizeof a, "decompress --basis %s/s.basis " FIX "/3f545be/stories260k-f16-vtrans1.ggsq -o %s/y.ggsq", g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "is a llama.cpp state file, not a kvtc stream") && !exists("y.ggsq"));
    snprintf(a, sizeof a, "calibrate -o %s/y.basis --model data/stories260K.gguf %s/s.kvtc " FIX "/3f545be/stories260k-f16-vtrans1.ggsq", g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "is a compressed llama.cpp state file") && !exists("y.basis"));
    /* options of caches that state files do not take: said once, plainly */
    CHECK(kvtc("compress --basis x --max-error 0.1 " FIX "/3f545be/stories260k-f16-vtrans1.ggsq -o /dev/null") == 2 &&
          one_line_error() && output_has("err.txt", "unknown option --max-error for llama.cpp state files (see kvtc compress --help)"));
    snprintf(a, sizeof a, "info %s/s.kvtc", g_dir);
    CHECK(kvtc(a) == 0 && output_has("out.txt", "compressed llama.cpp state") && output_has("out.txt", "398 cells"));
    snprintf(a, sizeof a, "decompress --basis %s/s.basis %s/s.kvtc -o %s/s.ggsq", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 0);
    snprintf(p1, sizeof p1, "%s/s.ggsq", g_dir);
    CHECK(same_skeleton(FIX "/3f545be/stories260k-f16-vtrans1.ggsq", p1));
    /* "-" (standard input) for llama.cpp files too: the magic that picks
     * the command is read without losing the input's bytes (review of
     * issue 9, rev1: "-: not a kvtc stream, basis or safetensors file") */
    snprintf(a, sizeof a, "compress --basis %s/s.basis - -o %s/s_in.kvtc <" FIX "/3f545be/stories260k-f16-vtrans1.ggsq",
             g_dir, g_dir);
    CHECK(kvtc(a) == 0);
    {
        size_t n1 = 0, n2 = 0;
        char *s1 = out_of("s.kvtc", &n1), *s2 = out_of("s_in.kvtc", &n2);
        CHECK(s1 && s2 && n1 == n2 && memcmp(s1, s2, n1) == 0);
        free(s1);
        free(s2);
        snprintf(a, sizeof a, "decompress --basis %s/s.basis - -o - <%s/s.kvtc", g_dir, g_dir);
        CHECK(kvtc(a) == 0);
        s1 = out_of("s.ggsq", &n1);
        s2 = out_of("out.txt", &n2);
        CHECK(s1 && s2 && n1 == n2 && memcmp(s1, s2, n1) == 0);
        free(s1);
        free(s2);
    }
    snprintf(a, sizeof a, "compress --basis - - -o %s/s_in2.kvtc <" FIX "/3f545be/stories260k-f16-vtrans1.ggsq", g_dir);
    CHECK(kvtc(a) == 2 && output_has("err.txt", "cannot both be -"));
    /* failures: one line, exit 1, outputs untouched */
    copy_to(FIX "/3f545be/stories260k-f16-vtrans1.ggsq", "cut.ggsq", 100000);
    snprintf(a, sizeof a, "compress --basis %s/s.basis %s/cut.ggsq -o %s/s.kvtc", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "truncated"));
    snprintf(a, sizeof a, "info %s/s.kvtc", g_dir);
    CHECK(kvtc(a) == 0); /* the earlier output survived */
    snprintf(a, sizeof a, "compress --basis %s/s.basis " FIX "/3f545be/eval27m-f16-vtrans1-capi.ggsq -o %s/e.kvtc", g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "another model") && !exists("e.kvtc"));
    snprintf(a, sizeof a, "decompress --basis %s/m.basis %s/s.kvtc -o %s/t.ggsq", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && !exists("t.ggsq")); /* another basis */

    /* a FIFO argument (process substitution, --basis <(...)): choosing between
     * the llama.cpp and the safetensors command must not read (and so eat)
     * its first bytes */
    snprintf(p1, sizeof p1, "%s/basis.fifo", g_dir);
    CHECK(mkfifo(p1, 0600) == 0);
    snprintf(a, sizeof a, "compress --basis %s " FIX "/3f545be/stories260k-f16-vtrans1.ggsq -o %s/f.kvtc & "
             "cat %s/s.basis > %s; wait", p1, g_dir, g_dir, p1);
    {
        const char *cli = getenv("KVTC_CLI");
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "'%s' %s", cli ? cli : "build/kvtc", a);
        int st = system(cmd);
        CHECK(st == 0 && exists("f.kvtc"));
    }

    /* slots check: llama.cpp's cache, read by kvtc, continues in kvtc's engine
     * exactly as the engine's own prefill of the same tokens does */
    snprintf(a, sizeof a, "slots check --basis %s/s.basis --model data/stories260K.gguf --tokens 16 "
             FIX "/c392e50/stories260k-f16-vtrans1.ggsq", g_dir);
    CHECK(kvtc(a) == 0 && output_has("out.txt", "top-1 agreement") && output_has("out.txt", "on 16/16 greedy tokens"));

    /* a basis that recomputes layer 0 from token ids: the slot's own tokens
     * go into the stream, and decoding needs the model */
    snprintf(a, sizeof a, "calibrate -o %s/r.basis --model data/stories260K.gguf --text data/persuasion.txt --plain "
             "--recompute-layers 1 --windows 2 --ctx 384 --ratio 20", g_dir);
    CHECK(kvtc(a) == 0);
    snprintf(a, sizeof a, "compress --basis %s/r.basis " FIX "/3f545be/stories260k-f16-vtrans0.ggsq -o %s/r.kvtc", g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "--model") && !exists("r.kvtc"));
    snprintf(a, sizeof a, "compress --basis %s/r.basis --model data/stories260K.gguf " FIX "/3f545be/stories260k-f16-vtrans0.ggsq -o %s/r.kvtc", g_dir, g_dir);
    CHECK(kvtc(a) == 0);
    snprintf(a, sizeof a, "decompress --basis %s/r.basis %s/r.kvtc -o %s/r.ggsq", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "--model") && !exists("r.ggsq"));
    /* the file records the model: expanding with another one fails */
    copy_to("data/stories260K.gguf", "other.gguf", 0);
    CHECK(edit_file("other.gguf", other_model));
    snprintf(a, sizeof a, "decompress --basis %s/r.basis --model %s/other.gguf %s/r.kvtc -o %s/r.ggsq", g_dir, g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "different model") && !exists("r.ggsq"));
    /* a model of another shape for a basis that recomputes layers is
     * refused by name: its recompute wrote past the decoder's buffers (heap
     * corruption, abort) and compress recorded its fingerprint, so the file
     * then restored only with that wrong model */
    snprintf(a, sizeof a, "compress --basis %s/r.basis --model data/eval-llama-27m-q8_0.gguf " FIX "/3f545be/stories260k-f16-vtrans0.ggsq -o %s/wm.kvtc", g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "not the basis's model") && !exists("wm.kvtc"));
    snprintf(a, sizeof a, "decompress --basis %s/r.basis --model data/eval-llama-27m-q8_0.gguf %s/r.kvtc -o %s/r.ggsq", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "not the basis's model") && !exists("r.ggsq"));
    snprintf(a, sizeof a, "slots check --basis %s/r.basis --model data/eval-llama-27m-q8_0.gguf --tokens 4 " FIX "/3f545be/stories260k-f16-vtrans0.ggsq", g_dir);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "not the basis's model"));
    snprintf(a, sizeof a, "info %s/r.kvtc", g_dir);
    CHECK(kvtc(a) == 0 && output_has("out.txt", "model fingerprint"));
    snprintf(a, sizeof a, "decompress --basis %s/r.basis --model data/stories260K.gguf %s/r.kvtc -o %s/r.ggsq", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 0);
    snprintf(p1, sizeof p1, "%s/r.ggsq", g_dir);
    CHECK(same_skeleton(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", p1));

    /* kvtc slots on a llama-server slot directory */
    snprintf(p2, sizeof p2, "%s/slots", g_dir);
    mkdir(p2, 0755);
    copy_to(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", "slots/chat-1.bin", 0);
    copy_to(FIX "/3f545be/stories260k-bf16-vtrans0.ggsq", "slots/chat-2.bin", 0);
    copy_to(FIX "/3f545be/stories260k-f16-vtrans1.ggsq", "slots/saving.bin", 150000); /* being written */
    copy_to("data/persuasion.txt", "slots/notes.txt", 1000);
    copy_to(FIX "/3f545be/eval27m-f16-vtrans1-capi.ggsq", "slots/other-model.bin", 0);
    snprintf(a, sizeof a, "slots compress --basis %s/s.basis %s", g_dir, p2);
    /* a slot of another model: said so, kept; the others are compressed */
    CHECK(kvtc(a) == 1 && output_has("err.txt", "other-model.bin: cache geometry does not match (the basis is for another model") &&
          exists("slots/other-model.bin") && !exists("slots/other-model.bin.kvtc"));
    snprintf(p1, sizeof p1, "%s/slots/other-model.bin", g_dir);
    CHECK(unlink(p1) == 0);
    CHECK(!exists("slots/chat-1.bin") && exists("slots/chat-1.bin.kvtc") && exists("slots/chat-2.bin.kvtc"));
    CHECK(exists("slots/saving.bin") && !exists("slots/saving.bin.kvtc") && exists("slots/notes.txt"));
    CHECK(output_has("err.txt", "saving.bin: skipped"));
    size_t n1, n2;
    char *before = out_of("slots/chat-1.bin.kvtc", &n1);
    CHECK(kvtc(a) == 0); /* again: nothing to do */
    char *again = out_of("slots/chat-1.bin.kvtc", &n2);
    CHECK(before && again && n1 == n2 && !memcmp(before, again, n1));
    free(before);
    free(again);
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s chat-1.bin", g_dir, p2);
    CHECK(kvtc(a) == 0);
    snprintf(p1, sizeof p1, "%s/slots/chat-1.bin", g_dir);
    CHECK(same_skeleton(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", p1));
    snprintf(a, sizeof a, "slots compress --keep --basis %s/s.basis %s", g_dir, p2);
    CHECK(kvtc(a) == 0 && exists("slots/chat-1.bin") && output_has("out.txt", "chat-1.bin: ") &&
          output_has("out.txt", "already compressed"));
    snprintf(a, sizeof a, "slots list %s", p2);
    CHECK(kvtc(a) == 0 && output_has("out.txt", "chat-2.bin.kvtc") && output_has("out.txt", "compressed"));
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s missing.bin", g_dir, p2);
    CHECK(kvtc(a) == 1 && one_line_error());
    /* the compressed file's name instead of the slot's: said so (it was "not
     * a complete llama.cpp state file (still being written?)") */
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s chat-2.bin.kvtc", g_dir, p2);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "give the slot's name, chat-2.bin") &&
          !exists("slots/chat-2.bin"));
    CHECK(kvtc("slots frobnicate x") == 2);
    CHECK(no_temporaries("") && no_temporaries("slots"));

    /* slots with a basis that recomputes layer 0: compress needs the model
     * (it decodes every slot before removing the original), and an expanded
     * copy is recognised, not compressed again (which would add error) */
    snprintf(p2, sizeof p2, "%s/slots_r", g_dir);
    mkdir(p2, 0755);
    copy_to(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", "slots_r/c.bin", 0);
    snprintf(a, sizeof a, "slots compress --basis %s/r.basis %s", g_dir, p2);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "--model") && exists("slots_r/c.bin") &&
          !exists("slots_r/c.bin.kvtc"));
    snprintf(a, sizeof a, "slots compress --basis %s/r.basis --model data/eval-llama-27m-q8_0.gguf %s", g_dir, p2);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "not the basis's model") && exists("slots_r/c.bin") &&
          !exists("slots_r/c.bin.kvtc"));
    snprintf(a, sizeof a, "slots compress --basis %s/r.basis --model data/stories260K.gguf %s", g_dir, p2);
    CHECK(kvtc(a) == 0 && !exists("slots_r/c.bin") && output_has("out.txt", "original removed"));
    {
        char *z1 = out_of("slots_r/c.bin.kvtc", &n1);
        snprintf(a, sizeof a, "slots expand --basis %s/r.basis --model data/stories260K.gguf %s c.bin", g_dir, p2);
        CHECK(kvtc(a) == 0 && exists("slots_r/c.bin"));
        snprintf(a, sizeof a, "slots compress --basis %s/r.basis --model data/stories260K.gguf %s", g_dir, p2);
        CHECK(kvtc(a) == 0 && output_has("out.txt", "already compressed") && !exists("slots_r/c.bin"));
        char *z2 = out_of("slots_r/c.bin.kvtc", &n2);
        CHECK(z1 && z2 && n1 == n2 && !memcmp(z1, z2, n1));
        free(z1);
        free(z2);
    }
    CHECK(no_temporaries("slots_r"));

    /* slots compress never removes an original that its NAME.kvtc does not
     * restore: a damaged NAME.kvtc whose skeleton is intact, and a slot saved
     * again with the same cells but other K/V, are compressed again */
    snprintf(p2, sizeof p2, "%s/slots2", g_dir);
    mkdir(p2, 0755);
    copy_to(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", "slots2/dmg.bin", 0);
    copy_to(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", "slots2/new.bin", 0);
    snprintf(a, sizeof a, "slots compress --keep --basis %s/s.basis %s", g_dir, p2);
    CHECK(kvtc(a) == 0);
    CHECK(kvtc(a) == 0 && output_has("out.txt", "dmg.bin: 294052 -> ") && output_has("out.txt", "already compressed"));
    CHECK(edit_file("slots2/dmg.bin.kvtc", damage_stream) && edit_file("slots2/new.bin", other_kv));
    char *old_new = out_of("slots2/new.bin.kvtc", &n1);
    snprintf(a, sizeof a, "slots compress --basis %s/s.basis %s", g_dir, p2);
    CHECK(kvtc(a) == 0 && !output_has("out.txt", "already compressed"));
    char *new_new = out_of("slots2/new.bin.kvtc", &n2);
    CHECK(old_new && new_new && (n1 != n2 || memcmp(old_new, new_new, n1))); /* the new save was coded */
    free(old_new);
    free(new_new);
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s dmg.bin new.bin", g_dir, p2);
    CHECK(kvtc(a) == 0);
    /* expand never replaces an existing NAME: a save llama-server made after
     * NAME.kvtc is the newer state; one still being written is refused */
    copy_to(FIX "/3f545be/stories260k-bf16-vtrans0.ggsq", "slots2/dmg.bin", 0);
    copy_to(FIX "/3f545be/stories260k-f16-vtrans1.ggsq", "slots2/new.bin", 150000);
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s dmg.bin", g_dir, p2);
    CHECK(kvtc(a) == 0 && output_has("out.txt", "dmg.bin: kept"));
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s new.bin", g_dir, p2);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "not overwritten"));
    {
        size_t nf, nd, nn;
        char *fix = test_read_file(FIX "/3f545be/stories260k-bf16-vtrans0.ggsq", &nf);
        char *dmg = out_of("slots2/dmg.bin", &nd), *part = out_of("slots2/new.bin", &nn);
        CHECK(fix && dmg && nf == nd && !memcmp(fix, dmg, nf) && part && nn == 150000);
        free(fix);
        free(dmg);
        free(part);
    }
    /* symlinks are never written through: not NAME.kvtc by compress, not NAME by expand */
    copy_to("data/persuasion.txt", "victim.txt", 100);
    char victim[256];
    snprintf(victim, sizeof victim, "%s/victim.txt", g_dir);
    snprintf(p1, sizeof p1, "%s/slots2/ln.bin.kvtc", g_dir);
    CHECK(symlink(victim, p1) == 0);
    copy_to(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", "slots2/ln.bin", 0);
    snprintf(a, sizeof a, "slots compress --basis %s/s.basis %s", g_dir, p2);
    CHECK(kvtc(a) == 1 && output_has("err.txt", "ln.bin.kvtc is not a regular file") && exists("slots2/ln.bin"));
    CHECK(unlink(p1) == 0);
    snprintf(p1, sizeof p1, "%s/slots2/ln.bin", g_dir);
    CHECK(unlink(p1) == 0 && symlink(victim, p1) == 0);
    snprintf(a, sizeof a, "cp '%s/slots2/dmg.bin.kvtc' '%s/slots2/ln.bin.kvtc'", g_dir, g_dir);
    CHECK(system(a) == 0);
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s ln.bin", g_dir, p2);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "not a regular file"));
    size_t nv;
    char *v = out_of("victim.txt", &nv);
    {
        size_t np;
        char *orig = test_read_file("data/persuasion.txt", &np);
        CHECK(v && orig && np >= 100 && !memcmp(v, orig, 100)); /* untouched */
        free(orig);
    }
    free(v);
    /* a FIFO or a symlink as NAME.kvtc: expand refuses it at once (it waited
     * forever for a writer on the FIFO); list and compress pass FIFOs by */
    snprintf(p1, sizeof p1, "%s/slots2/fifo.bin.kvtc", g_dir);
    CHECK(mkfifo(p1, 0644) == 0);
    snprintf(p1, sizeof p1, "%s/slots2/fifo2.bin", g_dir);
    CHECK(mkfifo(p1, 0644) == 0);
    snprintf(p1, sizeof p1, "%s/slots2/lnk.bin.kvtc", g_dir);
    CHECK(symlink(victim, p1) == 0);
    {
        const char *cli = getenv("KVTC_CLI");
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "timeout 20 '%s' slots expand --basis %s/s.basis %s fifo.bin >'%s/out.txt' 2>'%s/err.txt'",
                 cli ? cli : "build/kvtc", g_dir, p2, g_dir, g_dir);
        int st = system(cmd);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && one_line_error() && output_has("err.txt", "not a regular file"));
        snprintf(cmd, sizeof cmd, "timeout 20 '%s' slots list %s >'%s/out.txt' 2>'%s/err.txt'", cli ? cli : "build/kvtc", p2,
                 g_dir, g_dir);
        st = system(cmd);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && output_has("out.txt", "dmg.bin.kvtc"));
    }
    snprintf(a, sizeof a, "slots expand --basis %s/s.basis %s lnk.bin", g_dir, p2);
    CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "symbolic link") && !exists("slots2/lnk.bin"));
    CHECK(unlink(p1) == 0);
    snprintf(p1, sizeof p1, "%s/slots2/fifo.bin.kvtc", g_dir);
    CHECK(unlink(p1) == 0);
    snprintf(p1, sizeof p1, "%s/slots2/fifo2.bin", g_dir);
    CHECK(unlink(p1) == 0);
    /* a directory that cannot be written: one line, nothing coded (root may
     * write anyway: checked only for other users) */
    if (geteuid() != 0) {
        copy_to(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", "slots2/ro.bin", 0);
        CHECK(chmod(p2, 0555) == 0);
        snprintf(a, sizeof a, "slots compress --basis %s/s.basis %s", g_dir, p2);
        CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "cannot write in") && exists("slots2/ro.bin"));
        CHECK(chmod(p2, 0755) == 0);
        snprintf(p1, sizeof p1, "%s/slots2/ro.bin", g_dir);
        CHECK(unlink(p1) == 0);
    }
    /* one compress run per directory: while another holds it, a run does
     * nothing and says why (two runs could write an older NAME.kvtc over
     * the one of a newer save) */
    {
        copy_to(FIX "/3f545be/stories260k-f16-vtrans0.ggsq", "slots2/later.bin", 0);
        int lock = open(p2, O_RDONLY | O_DIRECTORY);
        CHECK(lock >= 0 && flock(lock, LOCK_EX) == 0);
        snprintf(a, sizeof a, "slots compress --basis %s/s.basis %s", g_dir, p2);
        CHECK(kvtc(a) == 1 && one_line_error() && output_has("err.txt", "another kvtc slots compress is running") &&
              exists("slots2/later.bin") && !exists("slots2/later.bin.kvtc"));
        if (lock >= 0) close(lock);
        CHECK(kvtc(a) == 0 && !exists("slots2/later.bin") && exists("slots2/later.bin.kvtc"));
    }
    /* getopt_long: --opt=value forms, and a missing value is a usage error */
    snprintf(a, sizeof a, "slots expand --basis=%s/s.basis --threads=1 %s dmg.bin", g_dir, p2);
    CHECK(kvtc(a) == 0);
    CHECK(kvtc("slots compress --basis") == 2 && one_line_error());
    CHECK(kvtc("slots compress --help") == 0 && output_has("out.txt", "usage: kvtc slots"));
    CHECK(kvtc("slots expand -h") == 0 && output_has("out.txt", "usage: kvtc slots"));
    snprintf(a, sizeof a, "decompress --basis %s/s.basis --threads 0 %s/s.kvtc -o %s/y.ggsq", g_dir, g_dir, g_dir);
    CHECK(kvtc(a) == 2 && one_line_error() && !exists("y.ggsq"));
    snprintf(a, sizeof a, "compress --basis %s/s.basis --kv-rotation=sideways " FIX "/3f545be/stories260k-f16-vtrans1.ggsq -o %s/y.kvtc", g_dir, g_dir);
    CHECK(kvtc(a) == 2 && one_line_error() && !exists("y.kvtc"));

    /* a slot llama-server saves again while `slots compress` codes it (here:
     * its mtime moves every 10 ms) is the newer state: kept, not removed */
    snprintf(a, sizeof a, "calibrate -o %s/e.basis --model data/eval-llama-27m-q8_0.gguf --ratio 20 "
             FIX "/3f545be/eval27m-f16-vtrans1-capi.ggsq", g_dir);
    CHECK(kvtc(a) == 0);
    snprintf(p2, sizeof p2, "%s/slots3", g_dir);
    mkdir(p2, 0755);
    copy_to(FIX "/3f545be/eval27m-q8_0-vtrans0.ggsq", "slots3/busy.bin", 0);
    {
        const char *cli = getenv("KVTC_CLI");
        char cmd[3000];
        snprintf(cmd, sizeof cmd,
                 "(i=0; while [ $i -lt 1000 ]; do touch -c '%s/busy.bin'; sleep 0.01; i=$((i+1)); done) & t=$!; "
                 "'%s' slots compress --basis '%s/e.basis' --threads 1 '%s' >'%s/out.txt' 2>'%s/err.txt'; kill $t",
                 p2, cli ? cli : "build/kvtc", g_dir, p2, g_dir, g_dir);
        CHECK(system(cmd) == 0);
        CHECK(exists("slots3/busy.bin") && output_has("err.txt", "changed while it was compressed"));
    }

    snprintf(a, sizeof a, "rm -rf '%s'", g_dir);
    CHECK(system(a) == 0);
    printf("(%.2f s)\n", test_now() - t0);
    return TEST_REPORT();
}
