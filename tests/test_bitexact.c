/* test_bitexact.c - util/bitexact.h, the arithmetic the CPU and the CUDA
 * backend share: the CRC-32 table and GF(2) combination against
 * libdeflate's CRC-32 (what the CPU codec writes), and the rANS
 * normalization steps through rans_normalize's contract (sum 4096, every
 * present symbol >= 1, absent ones 0, deterministic largest remainders). */
#include <libdeflate.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entropy/rans.h"
#include "test.h"
#include "util/bitexact.h"

static uint32_t crc_table_bytes(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = kvi_crc32_table_entry((c ^ p[i]) & 0xff) ^ (c >> 8);
    return ~c;
}

static void test_crc(void) {
    enum { N = 20000 };
    uint8_t *buf = malloc(N);
    CHECK(buf != NULL);
    if (!buf) return;
    uint32_t s = 12345;
    for (size_t i = 0; i < N; i++) { s = s * 1103515245u + 12345u; buf[i] = (uint8_t)(s >> 16); }
    CHECK(crc_table_bytes(buf, N) == (uint32_t)libdeflate_crc32(0, buf, N));
    uint32_t x2n[32];
    kvi_crc32_x2n_table(x2n);
    /* crc(A || B) from crc(A), crc(B), |B|: splits at piece-like and odd places, incl. empty halves */
    static const size_t cuts[] = {0, 1, 7, 4096, 8191, 12288, 19999, N};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        size_t a = cuts[i], b = N - a;
        uint32_t ca = (uint32_t)libdeflate_crc32(0, buf, a), cb = (uint32_t)libdeflate_crc32(0, buf + a, b);
        uint32_t whole = kvi_crc32_multmodp(kvi_crc32_x2nmodp(x2n, b, 3), ca) ^ cb;
        CHECK_MSG(whole == (uint32_t)libdeflate_crc32(0, buf, N), "cut %zu", a);
    }
    free(buf);
}

static void check_norm(const uint32_t count[256], uint64_t n) {
    uint32_t f[256];
    rans_normalize(count, n, f);
    uint32_t sum = 0;
    int ok = 1;
    for (int s = 0; s < 256; s++) {
        sum += f[s];
        if ((count[s] != 0) != (f[s] != 0)) ok = 0;
    }
    CHECK(sum == RANS_PROB_SCALE);
    CHECK(ok);
}

static void test_rans_norm(void) {
    uint32_t count[256];
    /* equal remainders everywhere: the deficit goes to the smallest symbols */
    memset(count, 0, sizeof count);
    for (int s = 0; s < 3; s++) count[s] = 1;
    uint32_t f[256];
    rans_normalize(count, 3, f);
    CHECK(f[0] == 1366 && f[1] == 1365 && f[2] == 1365);
    /* one huge symbol and 255 singletons: step 2 pays every 0 with the largest */
    for (int s = 0; s < 256; s++) count[s] = 1;
    count[7] = 100000000;
    check_norm(count, 100000000u + 255);
    rans_normalize(count, 100000000u + 255, f);
    CHECK(f[7] == RANS_PROB_SCALE - 255 && f[0] == 1);
    /* random histograms */
    uint32_t s = 99;
    for (int it = 0; it < 200; it++) {
        uint64_t n = 0;
        for (int k = 0; k < 256; k++) {
            s = s * 1103515245u + 12345u;
            count[k] = (s >> 8) % 7 == 0 ? 0 : (s >> 12) % (1u + (uint32_t)it * 50);
            n += count[k];
        }
        if (n) check_norm(count, n);
    }
    /* the deficit rule directly: ranks by remainder, then symbol */
    uint64_t rem[256] = {0};
    memset(count, 0, sizeof count);
    count[3] = count[4] = count[9] = 1;
    rem[3] = 5; rem[4] = 9; rem[9] = 5;
    CHECK(kvi_rans_gets_deficit(count, rem, 4, 1) == 1);
    CHECK(kvi_rans_gets_deficit(count, rem, 3, 1) == 0);
    CHECK(kvi_rans_gets_deficit(count, rem, 3, 2) == 1);
    CHECK(kvi_rans_gets_deficit(count, rem, 9, 2) == 0);
    CHECK(kvi_rans_gets_deficit(count, rem, 0, 3) == 0); /* absent symbols never */
}

int main(void) {
    test_crc();
    test_rans_norm();
    return TEST_REPORT();
}
