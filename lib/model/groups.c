/* groups.c - cost of a plan's groups (lib/model/groups.h). */
#include "model/groups.h"

uint64_t dp_plan_cost_units(const dp_group *g, uint32_t n_groups)
{
    if (!g && n_groups) return UINT64_MAX;
    uint64_t cost = 0;
    for (uint32_t k = 0; k < n_groups; k++) {
        uint32_t size = g[k].size, bits = g[k].bits;
        if (size == 0) return UINT64_MAX;
        if (bits == 0) continue;
        if (bits == DP_RAW_BITS)
            cost += size;
        else if (bits <= DP_MAX_BITS)
            cost += ((uint64_t)size * bits + 15u) / 16u + 2u;
        else
            return UINT64_MAX;
    }
    return cost;
}
