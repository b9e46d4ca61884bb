/* groups.h - the vocabulary of a bit-allocation plan: consecutive PCA
 * coordinates split into groups, each dropped, quantized or stored raw.
 * It lives in model/ (not alloc/) because every stage reads plans: the
 * quantizer, the rANS coder, the container and the basis file, while only
 * the calibrator and plan_solve run the allocator that makes them.
 *
 * Group kinds, and the cost model lib/alloc/dp.h explains in full:
 *   bits = 0       dropped (decoded as the mean); costs nothing;
 *   bits = 1..8    fp16 shift and scale per token, then `size` codes;
 *   bits = 16      raw fp16 (used with size 1).
 * Costs are in units of 16 bits per token. */
#ifndef KVTC_MODEL_GROUPS_H
#define KVTC_MODEL_GROUPS_H

#include <stdint.h>

#define DP_N_SIZES 4 /* quantized group sizes 16, 64, 256, 1024 */
#define DP_MAX_BITS 8
#define DP_RAW_BITS 16

/* Size of quantized-group class s (0..3): 16 << (2*s). */
static inline uint32_t dp_size_of_class(int s) { return 16u << (2 * s); }

typedef struct dp_group {
    uint32_t size; /* coordinates in the group */
    uint8_t bits;  /* 0, 1..8, or 16 (raw fp16) */
} dp_group;

/* Cost of an explicit plan in units of 16 bits per token; UINT64_MAX when a
 * group has size 0 or an unknown kind, or g is NULL with n_groups > 0. */
uint64_t dp_plan_cost_units(const dp_group *g, uint32_t n_groups);

#endif
