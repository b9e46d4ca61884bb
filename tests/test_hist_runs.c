/* test_hist_runs.c - cuda/hist_runs.h, the split of a segment's bytes that
 * the GPU histogram kernel (hist_k, lib/cuda/rans_encode.cu) reads 16 at a
 * time. The kernel needs a GPU; its three loops are replayed here on their
 * index ranges, over every start alignment, short segments (shorter than
 * 16, than one aligned load, than the head) and segments spanning the
 * kernel's 64K blocks: each byte counted exactly once, the 16-byte loads
 * aligned and inside the block, and the per-period histograms (period 1, 2,
 * 4) equal to a byte-by-byte count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/hist_runs.h"
#include "test.h"

#define BLOCK 65536u /* hist_k's bytes per block */

/* The histograms of seg[0..size) with period P, through the kernel's split
 * (per block: head, 16-byte loads, tail); *seen[i] counts the reads of byte
 * i; returns 0, or 1 when a load is misaligned or leaves its block. */
static int split_hist(const uint8_t *seg, uint64_t size, uint32_t P, uint32_t *hist, uint32_t *seen) {
    for (uint64_t a = 0; a < size; a += BLOCK) {
        uint64_t e = a + BLOCK < size ? a + BLOCK : size, a16, n16;
        kvi_hist_runs((uintptr_t)(seg + a), a, e, &a16, &n16);
        if (a16 < a || a16 > e || a16 + 16 * n16 > e) return 1;
        if (n16 && ((uintptr_t)(seg + a16) & 15)) return 1;
        for (uint64_t i = a; i < a16; i++) hist[(i % P) * 256 + seg[i]]++, seen[i]++;
        for (uint64_t v = 0; v < n16; v++)
            for (uint64_t k = 0; k < 16; k++) {
                uint64_t i = a16 + 16 * v + k;
                hist[(i % P) * 256 + seg[i]]++, seen[i]++;
            }
        for (uint64_t i = a16 + 16 * n16; i < e; i++) hist[(i % P) * 256 + seg[i]]++, seen[i]++;
    }
    return 0;
}

int main(void) {
    const uint64_t cap = 3 * BLOCK + 64;
    uint8_t *buf = aligned_alloc(64, cap);
    uint32_t *seen = malloc(sizeof(uint32_t) * cap), hist[4 * 256], want[4 * 256];
    CHECK(buf && seen);
    if (!buf || !seen) return TEST_REPORT();
    uint32_t s = 7;
    for (uint64_t i = 0; i < cap; i++) { s = s * 1103515245u + 12345u; buf[i] = (uint8_t)(s >> 16); }
    static const uint64_t long_sizes[] = {BLOCK - 1, BLOCK, BLOCK + 1, BLOCK + 15, BLOCK + 16, 2 * BLOCK + 17, 3 * BLOCK};
    int bad_split = 0, bad_once = 0, bad_hist = 0, cases = 0;
    for (uint32_t start = 0; start < 32; start++)
        for (int si = 0; si < 48 + 7; si++) {
            uint64_t size = si < 48 ? (uint64_t)si : long_sizes[si - 48];
            if (start + size > cap) continue;
            const uint8_t *seg = buf + start;
            for (uint32_t P = 1; P <= 4; P *= 2) {
                memset(hist, 0, sizeof hist);
                memset(want, 0, sizeof want);
                memset(seen, 0, sizeof(uint32_t) * size);
                bad_split += split_hist(seg, size, P, hist, seen);
                for (uint64_t i = 0; i < size; i++) {
                    want[(i % P) * 256 + seg[i]]++;
                    bad_once += seen[i] != 1;
                }
                bad_hist += memcmp(hist, want, sizeof hist) != 0;
                cases++;
            }
        }
    CHECK_MSG(bad_split == 0, "%d cases load outside the block or unaligned", bad_split);
    CHECK_MSG(bad_once == 0, "%d bytes not counted exactly once", bad_once);
    CHECK_MSG(bad_hist == 0, "%d histograms differ from the byte-by-byte count", bad_hist);
    CHECK(cases > 3 * 32 * 48);
    /* the split itself: a head only up to the aligned address, never past e */
    uint64_t a16, n16;
    kvi_hist_runs((uintptr_t)16 * 1000 + 3, 0, 5, &a16, &n16);
    CHECK(a16 == 5 && n16 == 0); /* 5 bytes end before the aligned address 13 bytes on */
    kvi_hist_runs((uintptr_t)16 * 1000 + 3, 0, 45, &a16, &n16);
    CHECK(a16 == 13 && n16 == 2); /* 13 scalar, two loads (32), 0 left */
    kvi_hist_runs((uintptr_t)16 * 1000, BLOCK, BLOCK + 20, &a16, &n16);
    CHECK(a16 == BLOCK && n16 == 1); /* aligned: no head, one load, 4 in the tail */
    free(buf);
    free(seen);
    return TEST_REPORT();
}
