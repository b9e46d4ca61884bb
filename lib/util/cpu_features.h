/* cpu_features.h - run-time choice of the SIMD code paths. The library is
 * built for baseline x86-64 (or any other CPU); the AVX2 kernels are compiled
 * with target attributes and only called where the running CPU has AVX2.
 * Every SIMD path produces exactly the bytes and floats of its scalar
 * reference (tests/test_simd_paths.c), so the choice never changes a stream. */
#ifndef KVTC_UTIL_CPU_FEATURES_H
#define KVTC_UTIL_CPU_FEATURES_H

/* 1 when the AVX2 kernels are compiled in (x86-64, gcc or clang; building
 * with -DKVTC_NO_SIMD_BUILD leaves them out, to check the portable build). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(KVTC_NO_SIMD_BUILD)
#define KVTC_HAVE_AVX2_PATH 1
#else
#define KVTC_HAVE_AVX2_PATH 0
#endif

/* Nonzero when the running CPU (and OS) supports AVX2. Cheap: a load and a
 * test of the compiler runtime's CPUID snapshot, nothing cached here. */
int kvi_cpu_has_avx2(void);

/* kvi_cpu_has_avx2(), unless the environment variable KVTC_SIMD is
 * "scalar": an internal switch that lets tests (and anyone comparing) run
 * the scalar reference paths of the quantizer. Calls getenv: call it once
 * per chunk, not per token. */
int kvi_simd_allowed(void);

#endif
