/* cpu_features.c - see cpu_features.h. */
#include "util/cpu_features.h"

#include <stdlib.h>
#include <string.h>

int kvi_cpu_has_avx2(void) {
#if KVTC_HAVE_AVX2_PATH
    /* libgcc / compiler-rt fill __cpu_model from CPUID and XGETBV (OS saves
     * the YMM state) in a constructor before main. */
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

int kvi_simd_allowed(void) {
    const char *e = getenv("KVTC_SIMD");
    if (e && !strcmp(e, "scalar")) return 0;
    return kvi_cpu_has_avx2();
}
