/* test_sha256.c - lib/util/sha256 against the FIPS 180-2 / NIST CAVS
 * example digests, and incremental updates split at every offset. */
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "util/sha256.h"

static void hex(const uint8_t *d, char *out) {
    for (int i = 0; i < KVTC_SHA256_SIZE; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static int digest_is(const void *msg, size_t n, const char *want) {
    uint8_t d[KVTC_SHA256_SIZE];
    char h[65];
    kvtc_sha256(msg, n, d);
    hex(d, h);
    if (strcmp(h, want)) fprintf(stderr, "got %s\nwant %s\n", h, want);
    return !strcmp(h, want);
}

int main(void) {
    /* FIPS 180-2 appendix B.1, B.2, B.3 and the NIST empty-message vector */
    CHECK(digest_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK(digest_is("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(digest_is(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    static char million[1000000];
    memset(million, 'a', sizeof million);
    CHECK(digest_is(million, sizeof million, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    /* NIST CAVS SHA256ShortMsg, Len = 8 (0xd3) and the 896-bit FIPS 180-4 example message */
    const uint8_t d3 = 0xd3;
    CHECK(digest_is(&d3, 1, "28969cdfa74a12c82f3bad960b0b000aca2ac329deea5c2328ebc6f2ba9802c1"));
    const char *long2 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    CHECK(digest_is(long2, strlen(long2), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));

    /* incremental: every split point of a 200-byte message gives the one-shot digest */
    uint8_t msg[200], whole[32], part[32];
    for (int i = 0; i < 200; i++) msg[i] = (uint8_t)(i * 37 + 11);
    kvtc_sha256(msg, sizeof msg, whole);
    int all_equal = 1;
    for (size_t cut = 0; cut <= sizeof msg; cut++) {
        kvtc_sha256_ctx s;
        kvtc_sha256_init(&s);
        kvtc_sha256_update(&s, msg, cut);
        kvtc_sha256_update(&s, msg + cut, sizeof msg - cut);
        kvtc_sha256_final(&s, part);
        all_equal &= !memcmp(whole, part, 32);
    }
    CHECK(all_equal);
    return TEST_REPORT();
}
