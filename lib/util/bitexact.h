/* bitexact.h - arithmetic the CPU and the CUDA backend must compute
 * identically, written once: C11 for the CPU library, __host__ __device__
 * when nvcc compiles it (lib/cuda/). A change here changes the bytes both
 * sides write, which the CPU<->GPU identity test (tests/cuda) checks.
 *  - CRC-32 (zlib polynomial 0xedb88320) in GF(2): the byte table and
 *    zlib's multmodp / x2nmodp, which combine the CRCs of pieces of a
 *    buffer into the CRC of the whole (the GPU checksums in parallel);
 *  - the two steps of rANS frequency normalization (docs/FORMAT.md) that
 *    the CPU runs in a loop and the GPU runs one thread per symbol. */
#ifndef KVTC_UTIL_BITEXACT_H
#define KVTC_UTIL_BITEXACT_H

#include <stdint.h>

#ifdef __CUDACC__
#define KVI_HD __host__ __device__
#else
#define KVI_HD
#endif

#define KVI_CRC32_POLY 0xedb88320u

/* Entry i of the byte-at-a-time CRC-32 table. */
static inline KVI_HD uint32_t kvi_crc32_table_entry(uint32_t i) {
    uint32_t v = i;
    for (int k = 0; k < 8; k++) v = v & 1 ? (v >> 1) ^ KVI_CRC32_POLY : v >> 1;
    return v;
}

/* a * b mod P in GF(2) (reflected; zlib's multmodp). */
static inline KVI_HD uint32_t kvi_crc32_multmodp(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ KVI_CRC32_POLY : b >> 1;
    }
    return p;
}

/* x^(n * 2^k) mod P, from x2n[j] = x^(2^j) mod P (j < 32; zlib's x2nmodp).
 * With k = 3 and n a byte count: the operator that shifts a CRC past n
 * zero bytes, so crc(A || B) = multmodp(x2nmodp(x2n, |B|, 3), crc(A)) ^ crc(B). */
static inline KVI_HD uint32_t kvi_crc32_x2nmodp(const uint32_t *x2n, uint64_t n, unsigned k) {
    uint32_t p = 1u << 31;
    while (n) {
        if (n & 1) p = kvi_crc32_multmodp(x2n[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

/* x2n[j] = x^(2^j) mod P for j < 32 (zlib's x2n_table). */
static inline KVI_HD void kvi_crc32_x2n_table(uint32_t x2n[32]) {
    uint32_t p = 1u << 30;
    for (int k = 0; k < 32; k++) {
        x2n[k] = p;
        p = kvi_crc32_multmodp(p, p);
    }
}

/* rANS normalization, step 1 (docs/FORMAT.md): after flooring
 * count[s] * SCALE / n, the `deficit` present symbols with the largest
 * remainders rem[] (ties: the smaller symbol) get one more. Returns 1 when
 * symbol s is one of them. count/rem: 256 entries. */
static inline KVI_HD int kvi_rans_gets_deficit(const uint32_t *count, const uint64_t *rem, uint32_t s,
                                                uint32_t deficit) {
    if (!deficit || !count[s]) return 0;
    uint32_t rank = 0; /* present symbols ordered before s */
    for (uint32_t t = 0; t < 256; t++)
        if (count[t] && (rem[t] > rem[s] || (rem[t] == rem[s] && t < s))) rank++;
    return rank < deficit;
}

/* Step 2: present symbols that rounded to 0 get 1, each paid by the
 * currently largest frequency (the first such symbol on ties). */
static inline KVI_HD void kvi_rans_fix_zeros(const uint32_t *count, uint32_t *freq) {
    uint32_t excess = 0;
    for (int s = 0; s < 256; s++)
        if (count[s] && freq[s] == 0) { freq[s] = 1; excess++; }
    while (excess) {
        int best = 0;
        for (int s = 1; s < 256; s++)
            if (freq[s] > freq[best]) best = s;
        freq[best]--;
        excess--;
    }
}

#endif
