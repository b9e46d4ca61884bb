/* hist_runs.h - how the rANS histogram kernel (hist_k, rans_encode.cu)
 * splits one block's byte range [a, e) of a segment for 16-byte loads:
 * scalar bytes [a, a16) up to the first 16-byte aligned address (a segment
 * may start anywhere in the payload), n16 aligned 16-byte loads from a16,
 * then scalar bytes [a16 + 16 * n16, e). Every byte is counted once and no
 * load leaves [a, e). Plain C as well, so that tests/test_hist_runs.c
 * checks the split on the CPU (the kernel itself needs a GPU). */
#ifndef KVTC_CUDA_HIST_RUNS_H
#define KVTC_CUDA_HIST_RUNS_H

#include <stdint.h>

#include "util/bitexact.h" /* KVI_HD */

/* addr_a: the address of byte a; a <= e. */
static inline KVI_HD void kvi_hist_runs(uintptr_t addr_a, uint64_t a, uint64_t e, uint64_t *a16, uint64_t *n16) {
    uint64_t head = (16 - (addr_a & 15)) & 15;
    if (head > e - a) head = e - a; /* a range that ends before the aligned address: all scalar */
    *a16 = a + head;
    *n16 = (e - *a16) / 16;
}

#endif
