/* internal.h - the internal API of libkvtc that the kvtc tool (tools/) may
 * use besides the public headers (include/kvtc.h, include/kvtc_store.h).
 *
 * Everything else under lib/ is private to the library: tools/ includes
 * this header and never a lib/ header directly, and this header includes
 * only the headers listed here (tests/test_include_rules.sh enforces both).
 * The tools link the static libkvtc.a, so these functions need no export
 * from libkvtc.so; they are not a stable API. Each entry says why the
 * public API is not enough for the tool that uses it.
 *
 * Ownership, errors and bounds are documented in each header. */
#ifndef KVTC_INTERNAL_H
#define KVTC_INTERNAL_H

/* The KV cache interchange file (safetensors k/v + metadata, docs/FORMAT.md):
 * cache_file_parse / _alloc / _serialize / _free. Every command that reads
 * or writes a cache file (compress, decompress, append, calibrate, store,
 * capture, eval). The library's API takes caches in memory, not files. */
#include "io/cache_file.h"

/* The safetensors container itself: ST_MAX_HEADER, so that `kvtc` can tell a
 * truncated safetensors file from other kinds of file (tools/file_kind.c). */
#include "io/safetensors.h"

/* llama.cpp state files (slot saves, ggsq, ggsn) and kvtc's wrapper around
 * them: lcpp_state_* and lcpp_wrap_* (kvtc compress/decompress/info on
 * llama.cpp files, kvtc slots). */
#include "io/lcpp_state.h"
#include "io/lcpp_wrap.h"

/* Geometry and element helpers: kvi_geometry_rope_dim, kvi_geometry_equal,
 * kvi_load_elem, kvi_store_elem (eval's baselines, info, model capture). */
#include "util/cache.h"

/* Temporary output names (tools/cli_files.c): kvi_hash_update, kvi_hash_mix. */
#include "util/hash.h"

/* The GPU's projection arithmetic (bf16, FP8 operands) emulated in the CPU
 * codec: kvi_decoder_emulate_projection / kvi_encoder_emulate_projection
 * (kvtc eval --emulate-gpu, issue 15). The public codec computes in fp32
 * only; what another precision costs on a model is an eval question. */
#include "cpu/proj_emul.h"

/* Strict, locale-independent option parsing: kvi_parse_decimal, kvi_parse_u64. */
#include "util/number.h"

/* The deterministic PRNG (splitmix64) of the sensitivity probes: kvi_rng. */
#include "util/rng.h"

#endif
