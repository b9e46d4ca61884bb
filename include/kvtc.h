/*
 * kvtc.h - KV Cache Transform Coding: the public API of libkvtc.
 *
 * KVTC stores the key/value cache of a transformer compactly:
 *
 *   calibrate (once per model)     encode (per cache)              decode
 *   --------------------------     ------------------------        ---------------------
 *   caches -> RoPE removed from    keep 4 sink + 128 window        inflate chunk
 *   keys -> mean, per-coordinate   tokens raw; for the rest:       dequantize
 *   weights, PCA basis over all    undo RoPE, (x - mean) * w,      x = D V^T / w + mean
 *   layers and heads -> DP bit     project D = x V, quantize per   re-apply RoPE to keys
 *   allocation per target ratio    token per group, DEFLATE in
 *   -> kvtc_basis                  independent chunks
 *
 * Usage in one breath:
 *
 *   kvtc_basis *basis;  kvtc_basis_load(file_bytes, n, &basis);
 *   kvtc_encoder *enc;  kvtc_encoder_alloc(basis, NULL, &enc);   // default options
 *   size_t cap = kvtc_compress_bound(enc, &cache);
 *   kvtc_compress(enc, &cache, buf, cap, &size);
 *   kvtc_stream_info info = {.struct_size = sizeof info}; kvtc_stream_get_info(buf, size, &info);
 *   ... allocate info.k_bytes / info.v_bytes ...
 *   kvtc_decoder *dec;  kvtc_decoder_alloc(basis, NULL, &dec);
 *   kvtc_decompress(dec, buf, size, &out_cache);
 *   kvtc_encoder_free(enc); kvtc_decoder_free(dec); kvtc_basis_free(basis);
 *
 * Conventions
 * - Every fallible function returns a kvtc_result; kvtc_result_string() names it.
 *   On failure, output arguments are left in an unspecified but safe state and
 *   nothing is leaked.
 * - Objects are opaque and come in alloc/free pairs; every *_free(NULL) is a no-op.
 * - The library allocates only inside *_alloc, kvtc_basis_load, the calibrator
 *   and (temporarily) inside compress/decompress; it never keeps global state.
 *   Separate objects may be used from separate threads at the same time; one
 *   object must not be used by two threads at once. A kvtc_basis is immutable
 *   after creation and may be shared by any number of encoders and decoders on
 *   any threads.
 * - All buffers are owned by the caller. Sizes are size_t or uint64_t.
 * - The bitstream is specified in docs/FORMAT.md. Streams carry a major and a
 *   minor version; a decoder rejects a major version it does not know
 *   (KVTC_ERR_UNSUPPORTED_VERSION) rather than guessing.
 */
#ifndef KVTC_H
#define KVTC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* KVTC_API marks the functions libkvtc exports; everything else in the
 * library is built with -fvisibility=hidden, so the shared library exports
 * exactly the functions declared in kvtc.h, kvtc_store.h and kvtc_cuda.h.
 * Internal helpers use the prefix kvi_ (never kvtc_). Define KVTC_API before including this
 * header to override it (e.g. as empty). */
#ifndef KVTC_API
#if defined(__GNUC__) || defined(__clang__)
#define KVTC_API __attribute__((visibility("default")))
#else
#define KVTC_API
#endif
#endif

/* Version of this header; kvtc_version_number() and kvtc_version_string()
 * give the library's at run time (they differ when a program built against
 * one version runs with another libkvtc.so.0). */
#define KVTC_VERSION_MAJOR 0
#define KVTC_VERSION_MINOR 1
#define KVTC_VERSION_PATCH 0
#define KVTC_VERSION_STRING "0.1.0"
#define KVTC_VERSION_NUMBER (KVTC_VERSION_MAJOR * 10000 + KVTC_VERSION_MINOR * 100 + KVTC_VERSION_PATCH)

/* MAJOR*10000 + MINOR*100 + PATCH of the library, e.g. 100 for 0.1.0. */
KVTC_API unsigned kvtc_version_number(void);
/* "MAJOR.MINOR.PATCH" of the library (static, never NULL). */
KVTC_API const char *kvtc_version_string(void);

/* Version of the container bitstream this library writes (docs/FORMAT.md). */
#define KVTC_FORMAT_VERSION_MAJOR 1
#define KVTC_FORMAT_VERSION_MINOR 1

/* ------------------------------------------------------------------------ */
/* Results                                                                   */
/* ------------------------------------------------------------------------ */

/* The values are stable: they never change, and new codes are only
 * appended (bindings may store the numbers). */
typedef enum kvtc_result {
    KVTC_OK = 0,
    KVTC_ERR_INVALID_ARGUMENT = 1,    /* a NULL pointer, zero size or out-of-range option */
    KVTC_ERR_OUT_OF_MEMORY = 2,       /* an allocation failed */
    KVTC_ERR_TOO_LARGE = 3,           /* sizes overflow or exceed the format's limits */
    KVTC_ERR_BAD_MAGIC = 4,           /* the bytes are not a kvtc stream / basis / safetensors file */
    KVTC_ERR_UNSUPPORTED_VERSION = 5, /* a format version this library cannot read */
    KVTC_ERR_TRUNCATED = 6,           /* the input ends before a section it declares */
    KVTC_ERR_CORRUPT = 7,             /* a checksum mismatch or an inconsistent field */
    KVTC_ERR_BASIS_MISMATCH = 8,      /* the stream was written with another basis or plan */
    KVTC_ERR_GEOMETRY_MISMATCH = 9,   /* cache geometry differs from the basis' */
    KVTC_ERR_NO_PLAN = 10,            /* the basis has no plan for the requested ratio */
    KVTC_ERR_BUFFER_TOO_SMALL = 11,   /* the caller's output buffer is too small */
    KVTC_ERR_NEEDS_MODEL = 12,        /* the stream recomputes layers; no recompute callback given */
    KVTC_ERR_UNSUPPORTED = 13,        /* a valid request this build cannot serve (e.g. no CUDA) */
    KVTC_ERR_NUMERIC = 14,            /* NaN/Inf in inputs or basis, a failed decomposition,
                                       * or calibration data without variance (a basis
                                       * whose plan would code nothing is refused) */
    KVTC_ERR_IO = 15,                 /* a file could not be read or written (CLI helpers) */
    KVTC_ERR_CALLBACK = 16,           /* a user callback reported failure */
    KVTC_ERR_CUDA = 17,               /* a CUDA runtime, cuBLAS or cuSOLVER call failed */
    KVTC_ERR_OUT_OF_RANGE = 18,       /* finite input the codec cannot represent: a PCA
                                       * coordinate or quantization step beyond fp16's
                                       * +-65504 (e.g. values near fp16's limit or f32
                                       * caches of huge magnitude), or a coded token
                                       * whose norm is over 100x the calibrated typical
                                       * token's (one huge outlier value); nothing is
                                       * written */
    KVTC_ERR_MODEL_MISMATCH = 19,     /* the stream recomputes layers with another model
                                       * (model fingerprints differ, docs/FORMAT.md) */
    KVTC_ERR_BAD_BLOCK_TABLE = 20,    /* a cache layout's block table names a block outside the
                                       * pool, a negative block, or the same block twice */
} kvtc_result;

/* A static, human-readable description of r (never NULL). */
KVTC_API const char *kvtc_result_string(kvtc_result r);

/* ------------------------------------------------------------------------ */
/* Caches                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum kvtc_dtype {
    KVTC_DTYPE_F32 = 0,
    KVTC_DTYPE_F16 = 1,
    KVTC_DTYPE_BF16 = 2
} kvtc_dtype;

/* Bytes per element of a dtype (0 for an unknown value). */
KVTC_API size_t kvtc_dtype_size(kvtc_dtype t);

typedef enum kvtc_rope_type {
    KVTC_ROPE_NONE = 0, /* keys carry no rotary embedding */
    KVTC_ROPE_NORM = 1, /* adjacent pairs (x[2i], x[2i+1]): GGUF llama, Meta llama */
    KVTC_ROPE_NEOX = 2  /* halves (x[i], x[i + rope_dim/2]): HF transformers, GPT-NeoX */
} kvtc_rope_type;

/* Shape of a model's KV cache. Pair i of the first rope_dim dimensions of a
 * key at position pos is rotated by pos * rope_theta^(-2i / rope_dim). */
typedef struct kvtc_geometry {
    uint32_t n_layers;
    uint32_t n_kv_heads;
    uint32_t head_dim;
    uint32_t rope_dim;        /* <= head_dim, even; 0 means head_dim */
    kvtc_rope_type rope_type;
    float rope_theta;         /* > 0 when rope_type != NONE */
} kvtc_geometry;

/* A KV cache in caller-owned memory.
 * k, v: [n_layers][n_kv_heads][n_tokens][head_dim] contiguous, in dtype, keys
 *       with RoPE already applied (as engines cache them).
 * positions: [n_tokens] RoPE positions; NULL means 0, 1, ..., n_tokens-1.
 * token_ids: [n_tokens]; needed only by bases that recompute their first
 *       layers (kvtc_basis_recomputed_layers() > 0); otherwise may be NULL.
 * Encoding reads these; decoding writes k, v, and positions/token_ids when
 * they are non-NULL. */
typedef struct kvtc_cache {
    kvtc_geometry geometry;
    kvtc_dtype dtype;
    uint64_t n_tokens;
    void *k;
    void *v;
    int64_t *positions;
    int32_t *token_ids;
} kvtc_cache;

/* Bytes of one of k or v for this geometry, dtype and token count; 0 on overflow. */
KVTC_API uint64_t kvtc_cache_tensor_bytes(const kvtc_geometry *g, kvtc_dtype dtype, uint64_t n_tokens);

/* ------------------------------------------------------------------------ */
/* Cache layouts: engine memory read and written in place                    */
/* ------------------------------------------------------------------------ */

/* Where one of K or V lives. Element (layer l, token t, head h, dim j) is at
 *
 *     base_l + es * (slot_offset(t) + h * head_stride + j * dim_stride)
 *
 * with es = kvtc_dtype_size(dtype), base_l = layers[l] when `layers` is
 * non-NULL, else (char *)base + es * l * layer_stride, and
 *
 *     slot_offset(t) = t * token_stride                          (no block table)
 *     slot_offset(t) = table[t / block_size] * block_stride
 *                      + (t % block_size) * token_stride         (paged)
 *
 * All strides are in elements, not bytes, and may be negative. Examples
 * (T tokens, H heads, d dims, B blocks of size S):
 *   kvtc_cache / HF [batch, H, T, d] per layer: token d, head T*d, dim 1;
 *   vLLM NHD [B, S, H, d] per layer: token H*d, head d, dim 1, block S*H*d;
 *   vLLM HND [B, H, S, d] per layer: token d, head S*d, dim 1, block H*S*d;
 *   SGLang token pool [slots, H, d]: block_size 1, table = slot of each
 *     token, block H*d, head d, dim 1;
 *   llama.cpp K rows [cells][H*d]: token H*d, head d, dim 1;
 *   llama.cpp transposed V [H*d][cells]: token 1, head d*cells, dim cells.
 * Strides whose offsets cannot be computed in int64 (the sum over token
 * (within a block), block (over the pool), head, dim and layer of |stride|
 * x (count - 1), times es) are KVTC_ERR_INVALID_ARGUMENT.
 * The library cannot check that the addressed memory exists: the caller
 * guarantees every addressed element lies in its allocation, and on decode
 * that distinct (token, head, dim) of one layer address distinct elements. */
typedef struct kvtc_tensor_layout {
    void *const *layers;         /* [n_layers] per-layer bases, or NULL to use base */
    void *base;                  /* with layers == NULL: layer l at base + l * layer_stride */
    int64_t layer_stride;
    int64_t token_stride, head_stride, dim_stride;
    int64_t block_stride;        /* paged layouts only */
} kvtc_tensor_layout;

/* A cache described by layouts (K and V share the block table, as in vLLM).
 * positions / token_ids: as in kvtc_cache ([n_tokens], logical token order).
 * Block table: entries [0, ceil(n_tokens / block_size)) are read; each must
 * be in [0, n_pool_blocks) and no block may appear twice
 * (KVTC_ERR_BAD_BLOCK_TABLE). Layers outside a decode's layer range are
 * never touched, and their pointers may be NULL. */
typedef struct kvtc_cache_layout {
    kvtc_geometry geometry;
    kvtc_dtype dtype;
    uint64_t n_tokens;
    kvtc_tensor_layout k, v;
    uint32_t block_size;         /* 0: no block table */
    const int32_t *block_table;
    uint64_t n_pool_blocks;
    int64_t *positions;
    int32_t *token_ids;
} kvtc_cache_layout;

/* The layout of a contiguous kvtc_cache (no allocation; pointers alias c). */
KVTC_API void kvtc_cache_layout_from_cache(const kvtc_cache *c, kvtc_cache_layout *out);

/* ------------------------------------------------------------------------ */
/* Basis: mean, weights, PCA basis and bit-allocation plans of one model     */
/* ------------------------------------------------------------------------ */

typedef struct kvtc_basis kvtc_basis;

/* Parse a basis file (a safetensors file, docs/FORMAT.md) from memory.
 * Every field is validated and the content checksum verified; the bytes are
 * copied, so buf may be freed afterwards. */
KVTC_API kvtc_result kvtc_basis_load(const void *buf, size_t size, kvtc_basis **out);

/* Exact size of the serialized basis, and serialization into a caller buffer. */
KVTC_API size_t kvtc_basis_serialized_size(const kvtc_basis *b);
KVTC_API kvtc_result kvtc_basis_serialize(const kvtc_basis *b, void *buf, size_t cap, size_t *written);

KVTC_API void kvtc_basis_free(kvtc_basis *b);

/* Geometry the basis was calibrated for. */
KVTC_API const kvtc_geometry *kvtc_basis_geometry(const kvtc_basis *b);

/* Number of leading layers whose K/V are not stored but recomputed by the
 * decoder from token ids (0 for the paper's method). */
KVTC_API uint32_t kvtc_basis_recomputed_layers(const kvtc_basis *b);

/* 64-bit fingerprint of the basis content, recorded in every stream. */
KVTC_API uint64_t kvtc_basis_fingerprint(const kvtc_basis *b);

/* Plans: one per calibrated target ratio. */
KVTC_API uint32_t kvtc_basis_plan_count(const kvtc_basis *b);

/* Output structs (kvtc_plan_info, kvtc_stream_info; kvtc_store_stats in
 * kvtc_store.h) can grow, by fields appended at the end: the caller sets
 * struct_size to sizeof the struct it was compiled with; the library fills
 * the fields that fit in struct_size bytes. A struct_size smaller than the
 * struct of kvtc 0.1.0, or larger than this library's struct (a caller
 * built against a newer kvtc.h, or an uninitialized struct_size), is
 * refused and nothing is written: the library never writes past what it
 * knows the caller has. The code is KVTC_ERR_INVALID_ARGUMENT, unless
 * another argument fails its own check first (a corrupt stream, a plan
 * index out of range): then that error, and still nothing is written. */
typedef struct kvtc_plan_info {
    size_t struct_size;          /* set by the caller: sizeof(kvtc_plan_info) */
    double target_ratio;         /* the ratio the plan was made for */
    double bits_per_token;       /* coded bits per compressed token, K and V, before DEFLATE */
    double expected_error_k;     /* predicted mean squared error per token (weighted), keys */
    double expected_error_v;     /* ... values */
    uint32_t n_groups_k, n_groups_v;
    uint32_t rank_k, rank_v;     /* PCA components that receive bits */
} kvtc_plan_info;

KVTC_API kvtc_result kvtc_basis_plan_info(const kvtc_basis *b, uint32_t index, kvtc_plan_info *out);

/* Index of the plan whose target ratio is closest to `ratio` (relative
 * distance); KVTC_ERR_NO_PLAN if the basis has none,
 * KVTC_ERR_INVALID_ARGUMENT unless ratio is finite and > 0. */
KVTC_API kvtc_result kvtc_basis_find_plan(const kvtc_basis *b, double ratio, uint32_t *index);

/* ------------------------------------------------------------------------ */
/* Calibration                                                               */
/* ------------------------------------------------------------------------ */

typedef struct kvtc_calibrator kvtc_calibrator;

typedef enum kvtc_pca_method {
    KVTC_PCA_AUTO = 0,       /* exact below p = 8192, randomized above */
    KVTC_PCA_EXACT = 1,      /* covariance (syrk) + symmetric eigendecomposition */
    KVTC_PCA_RANDOMIZED = 2  /* randomized range finder + small SVD */
} kvtc_pca_method;

typedef struct kvtc_calibrate_options {
    size_t struct_size;          /* sizeof(kvtc_calibrate_options) */
    uint32_t n_sink;             /* tokens at the start excluded (default 4) */
    uint32_t n_window;           /* tokens at the end excluded (default 128) */
    uint32_t recompute_layers;   /* leading layers not coded (default 0) */
    kvtc_pca_method pca_method;
    uint32_t max_rank;           /* randomized path: components kept (0 = auto) */
    uint64_t max_tokens;         /* calibration rows kept, by reservoir sampling (0 = 65536) */
    uint64_t seed;               /* for sampling and the randomized SVD */
    int remove_rope;             /* 1 (default): un-rotate keys before PCA */
    /* Per-coordinate distortion weights, [n_layers*n_kv_heads*head_dim] each
     * (layer-major, then head, then dim), > 0; NULL = plain squared error. */
    const float *weights_k;
    const float *weights_v;
    /* Group sizes the DP may use, as a bit mask of KVTC_GROUP_* (0 = all). */
    uint32_t group_size_mask;
    int joint_kv_budget;         /* 1 (default): one budget shared by K and V */
    /* Ablation knobs (the paper's choices are the defaults, 0):
     * pca_per_layer: a separate PCA per layer instead of one across all
     *   layers (exact PCA of each layer block; the basis is block-diagonal);
     * uniform_allocation: one bit width for every kept coordinate, in groups
     *   of 64, with the width and the number of kept components chosen to
     *   minimize the expected error under the same budget, instead of the DP. */
    int pca_per_layer;
    int uniform_allocation;
} kvtc_calibrate_options;

#define KVTC_GROUP_1 (1u << 0)
#define KVTC_GROUP_16 (1u << 1)
#define KVTC_GROUP_64 (1u << 2)
#define KVTC_GROUP_256 (1u << 3)
#define KVTC_GROUP_1024 (1u << 4)

/* Fill *o with the defaults above. */
KVTC_API void kvtc_calibrate_options_init(kvtc_calibrate_options *o);

/* opts may be NULL for defaults. */
KVTC_API kvtc_result kvtc_calibrator_alloc(const kvtc_geometry *g, const kvtc_calibrate_options *opts,
                                  kvtc_calibrator **out);

/* Add one cache's tokens (all but its sinks and window) as calibration rows. */
KVTC_API kvtc_result kvtc_calibrator_add(kvtc_calibrator *c, const kvtc_cache *cache);

/* Rows collected so far. */
KVTC_API uint64_t kvtc_calibrator_rows(const kvtc_calibrator *c);

/* Compute mean, PCA and one DP plan per target ratio (each > 1).
 * KVTC_ERR_NUMERIC when some plan would code no component of K or V (e.g.
 * all-zero or constant calibration data): such a basis would "compress"
 * any cache to its mean. kvtc_basis_load rejects such files too
 * (KVTC_ERR_CORRUPT). This
 * consumes the collected rows: afterwards the calibrator only accepts
 * kvtc_calibrator_free (add/finish return KVTC_ERR_INVALID_ARGUMENT). */
KVTC_API kvtc_result kvtc_calibrator_finish(kvtc_calibrator *c, const double *ratios, uint32_t n_ratios,
                                   kvtc_basis **out);

KVTC_API void kvtc_calibrator_free(kvtc_calibrator *c);

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct kvtc_encoder kvtc_encoder;

typedef struct kvtc_encode_options {
    size_t struct_size;          /* sizeof(kvtc_encode_options) */
    double ratio;                /* target ratio (default 20): the basis plan made for exactly
                                  * this ratio, else a plan solved from the basis' eigenvalues
                                  * at kvtc_encoder_alloc (the stream then carries it; format
                                  * 1.1). KVTC_ERR_NO_PLAN below the smallest calibrated ratio;
                                  * KVTC_ERR_INVALID_ARGUMENT unless finite and > 0. */
    uint32_t n_sink;             /* leading tokens stored raw (default 4) */
    uint32_t n_window;           /* trailing tokens stored raw (default 128) */
    uint32_t chunk_tokens;       /* tokens per independently decodable chunk (default 256) */
    uint32_t n_threads;          /* worker threads for chunks, per-token work and the
                                  * projection GEMM's token rows (0 = 1).
                                  * With OpenBLAS, run it single-threaded
                                  * (OPENBLAS_NUM_THREADS=1) and use these:
                                  * its spinning threads otherwise take the cores. */
    int deflate_level;           /* libdeflate level 0..12 (default 6) */
    uint32_t entropy_codec;      /* KVTC_CODEC_DEFLATE (default) or KVTC_CODEC_RANS */
    /* Fingerprint of the model the recomputed layers depend on (docs/FORMAT.md
     * "Model fingerprint": the weights of the recomputed layers, the token
     * embedding and the tokenizer), computed by the caller, which owns the
     * model; the library never looks at a model. Non-zero: recorded in the
     * stream (header flag bit 3) so that decoding with another model fails
     * with KVTC_ERR_MODEL_MISMATCH. 0 (default): none recorded. */
    uint64_t model_fingerprint;
} kvtc_encode_options;

/* Entropy codecs of the chunk payloads (docs/FORMAT.md). Both code the same
 * payload bytes; a decoder reads either. DEFLATE is what any inflate reads;
 * RANS (interleaved static rANS) is built for GPUs and decodes there at
 * memory speed. */
#define KVTC_CODEC_DEFLATE 1u
#define KVTC_CODEC_RANS 2u

KVTC_API void kvtc_encode_options_init(kvtc_encode_options *o);

KVTC_API kvtc_result kvtc_encoder_alloc(const kvtc_basis *b, const kvtc_encode_options *opts,
                               kvtc_encoder **out);
KVTC_API void kvtc_encoder_free(kvtc_encoder *e);

/* Upper bound on the compressed size of `cache` (0 if the cache is invalid
 * or the bound overflows size_t). */
KVTC_API size_t kvtc_compress_bound(const kvtc_encoder *e, const kvtc_cache *cache);

/* Compress `cache` into out[0..cap). *written receives the exact size.
 * KVTC_ERR_BUFFER_TOO_SMALL if cap is too small (a cap of
 * kvtc_compress_bound() always suffices). KVTC_ERR_NUMERIC for NaN/Inf in
 * a coded token; KVTC_ERR_OUT_OF_RANGE for finite values whose PCA
 * coordinates or quantization steps exceed fp16's range (the stream's
 * parameters are fp16), instead of writing a stream that decodes wrongly.
 * The token ids are stored when cache->token_ids is non-NULL (always
 * needed when the basis recomputes layers), so a round trip keeps them.
 *
 * Determinism: the same input, options, basis and library build on the same
 * BLAS kernel give the same bytes with any thread count. Different OpenBLAS
 * kernels (OPENBLAS_CORETYPE: Haswell, SkylakeX, ...) or CPUs may sum the
 * projection in another order; a last-bit difference in a PCA coordinate
 * can move it across a rounding boundary, so the bytes may differ (all of
 * them decode, with the same error bound). Pin OPENBLAS_CORETYPE when
 * byte-identical streams matter (e.g. content-addressed storage). */
KVTC_API kvtc_result kvtc_compress(kvtc_encoder *e, const kvtc_cache *cache, void *out, size_t cap,
                          size_t *written);

/* kvtc_compress reading the cache through a layout (no intermediate copy).
 * The bound is kvtc_compress_bound of a kvtc_cache of the same geometry,
 * dtype, token count and positions: use kvtc_compress_layout_bound. Same
 * bytes as kvtc_compress of the same values. */
KVTC_API size_t kvtc_compress_layout_bound(const kvtc_encoder *e, const kvtc_cache_layout *cache);
KVTC_API kvtc_result kvtc_compress_layout(kvtc_encoder *e, const kvtc_cache_layout *cache, void *out, size_t cap,
                                 size_t *written);

/* Append: extend the stream in[0..in_size) with the tokens that follow it
 * (`more`, same geometry and dtype; more->positions NULL means positions
 * continuing the stream's: its last position + 1, + 2, ..., which is n,
 * n+1, ... for a stream with the default positions 0..n-1;
 * KVTC_ERR_INVALID_ARGUMENT if they would pass INT64_MAX), writing a new
 * stream to out.
 * The stream's coded chunks that are full are copied byte for byte (the
 * decoder reads them exactly as before); the tokens that leave the raw
 * window are coded and complete its last chunk when that is partial (whose
 * tokens keep their quantized codes: only its entropy coding is redone);
 * the new last n_window tokens stay raw. The result is the stream that
 * kvtc_compress of the concatenation gives (up to the rounding of the
 * projection; docs/FORMAT.md "Append"), however many appends built it. The
 * cost is that of coding the new tokens plus entropy-recoding one chunk
 * and copying the stream, not re-encoding it. in and out must not overlap.
 * The encoder must use the stream's basis, plan,
 * sink, window, chunk size and codec (KVTC_ERR_BASIS_MISMATCH /
 * KVTC_ERR_INVALID_ARGUMENT otherwise). A stream without coded tokens
 * records sink and window cut to its length (kvtc_stream_info), so it is
 * coded afresh with the encoder's own sink and window: use those the
 * stream was compressed with, not the info's; bases that recompute layers need
 * more->token_ids. Token ids are kept only when every token has one: a
 * stream that stores ids, appended without more->token_ids, yields a
 * stream without any (kvtc append refuses that). The stream's model
 * fingerprint is kept (an encoder without one keeps it; with another one:
 * KVTC_ERR_MODEL_MISMATCH). Appending no tokens (more->n_tokens 0) writes the
 * stream unchanged, after the same checks (chunk CRCs included).
 * kvtc_append_bound gives a sufficient cap (0 on error). */
KVTC_API size_t kvtc_append_bound(const kvtc_encoder *e, const void *in, size_t in_size, const kvtc_cache_layout *more);
KVTC_API kvtc_result kvtc_append(kvtc_encoder *e, const void *in, size_t in_size, const kvtc_cache_layout *more,
                        void *out, size_t cap, size_t *written);

/* ------------------------------------------------------------------------ */
/* Stream inspection (no basis needed)                                       */
/* ------------------------------------------------------------------------ */

typedef struct kvtc_stream_info {
    size_t struct_size;          /* set by the caller: sizeof(kvtc_stream_info) */
    uint32_t version_major, version_minor;
    kvtc_geometry geometry;
    kvtc_dtype dtype;
    uint64_t n_tokens;           /* all tokens, raw and coded */
    uint32_t n_sink, n_window;   /* raw tokens at the start and end (clamped to n_tokens) */
    uint64_t n_coded_tokens;     /* tokens transform-coded */
    uint32_t n_chunks, chunk_tokens;
    uint32_t recompute_layers;   /* decoder must recompute these leading layers */
    uint32_t entropy_codec;      /* KVTC_CODEC_DEFLATE or KVTC_CODEC_RANS */
    int has_positions;           /* explicit positions stored */
    int has_token_ids;           /* token ids stored */
    uint64_t basis_fingerprint;
    double plan_ratio;           /* target ratio of the plan used */
    uint64_t k_bytes, v_bytes;   /* exact decoded size of k and of v in dtype */
    uint64_t stream_bytes;       /* total size of the stream */
    uint64_t coded_bytes;        /* bytes of the coded chunks (payload only) */
    uint64_t raw_bytes;          /* bytes of the raw sink/window sections */
    /* Added in 0.2 (after raw_bytes, so a caller of 0.1 gets the fields it knows): */
    int has_model_fingerprint;   /* a model fingerprint is recorded (format 1.1) */
    uint64_t model_fingerprint;  /* that fingerprint, else 0 */
} kvtc_stream_info;

/* Parse and validate the stream header and section table (all checksums of
 * the header and table; chunk payload checksums are checked on decode). */
KVTC_API kvtc_result kvtc_stream_get_info(const void *buf, size_t size, kvtc_stream_info *out);

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct kvtc_decoder kvtc_decoder;

/* Recompute the K/V of layers [0, n_layers) for the given tokens, as float32
 * in the cache layout [n_layers][n_kv_heads][n_tokens][head_dim], keys with
 * RoPE applied. Return 0 on success. */
typedef int (*kvtc_recompute_fn)(void *user, uint32_t n_layers, const int32_t *token_ids,
                                 const int64_t *positions, uint64_t n_tokens, float *k_out,
                                 float *v_out);

typedef struct kvtc_decode_options {
    size_t struct_size;          /* sizeof(kvtc_decode_options) */
    uint32_t n_threads;          /* worker threads for chunks, per-token work and the
                                  * projection GEMM's token rows (0 = 1) */
    kvtc_recompute_fn recompute; /* needed for streams with recompute_layers > 0 */
    void *recompute_user;
    /* Fingerprint of the model behind `recompute` (see
     * kvtc_encode_options.model_fingerprint). A stream that recomputes
     * layers and records a fingerprint is decoded only when this equals it
     * (KVTC_ERR_MODEL_MISMATCH otherwise, 0 included, before anything is
     * written). Streams without one (format 1.0) cannot be checked. */
    uint64_t model_fingerprint;
} kvtc_decode_options;

KVTC_API void kvtc_decode_options_init(kvtc_decode_options *o);

KVTC_API kvtc_result kvtc_decoder_alloc(const kvtc_basis *b, const kvtc_decode_options *opts,
                               kvtc_decoder **out);
KVTC_API void kvtc_decoder_free(kvtc_decoder *d);

/* Decode a whole stream into `out`, whose geometry, dtype and n_tokens must
 * match the stream (fill them from kvtc_stream_get_info) and whose k and v
 * hold k_bytes and v_bytes. out->positions, when non-NULL, receives the
 * positions (stored or 0..n-1); out->token_ids, when non-NULL, receives the
 * stored ids if the stream has them (has_token_ids) and is left untouched
 * otherwise. Every checksum is verified before its bytes are used; streams
 * with recompute_layers > 0 need kvtc_decode_options.recompute
 * (KVTC_ERR_NEEDS_MODEL otherwise, before anything is written). On failure
 * the contents of out are unspecified. */
KVTC_API kvtc_result kvtc_decompress(kvtc_decoder *d, const void *buf, size_t size, kvtc_cache *out);

/* Part of a stream to decode: stream tokens [token_begin, token_end) and
 * layers [layer_begin, layer_end). token_end = 0 means n_tokens, layer_end
 * = 0 means n_layers. Only the chunks holding coded tokens of the range are
 * read and inflated, and the reconstruction GEMM runs on the basis columns
 * of the layer range only, so the cost is proportional to the range.
 * The values are bit-identical to the same elements of a full decode.
 * Chunk i holds stream tokens [n_sink + i * chunk_tokens, ...) (see
 * kvtc_stream_info); a chunk range is the token range it covers.
 * Empty ranges (token_begin == token_end, or layer_begin == layer_end with
 * layer_end != 0, e.g. {.., n_layers, n_layers}) are valid: the decode
 * checks the stream as any other, writes no K/V and calls no recompute
 * callback (positions and ids of a non-empty token range are still
 * written). The CUDA decoder (kvtc_cuda_decompress_layout) treats them
 * the same way, so an engine's layer loop needs no special case. */
typedef struct kvtc_decode_range {
    uint64_t token_begin, token_end;
    uint32_t layer_begin, layer_end;
} kvtc_decode_range;

/* The whole stream. */
KVTC_API void kvtc_decode_range_init(kvtc_decode_range *r);

/* Decode `range` (NULL: everything) of a stream into `out`: out->n_tokens
 * must equal the range's token count, token i of out receiving stream
 * token token_begin + i; geometry and dtype must match the stream. Only
 * layers of the range are written; out->positions / out->token_ids, when
 * non-NULL, receive the range's positions and stored ids. Streams that
 * recompute layers call the recompute callback only when the layer range
 * includes recomputed layers and the token range coded tokens; it is then
 * given the ids and positions of tokens [0, token_end) (causal models need
 * the prefix) and its output for the range is stored. Errors as
 * kvtc_decompress; a range outside the stream is KVTC_ERR_INVALID_ARGUMENT,
 * a bad block table KVTC_ERR_BAD_BLOCK_TABLE (before anything is written). */
KVTC_API kvtc_result kvtc_decompress_layout(kvtc_decoder *d, const void *buf, size_t size,
                                   const kvtc_decode_range *range, kvtc_cache_layout *out);

/* Layer-by-layer restores. A layer range still needs every coefficient of
 * its chunks (the PCA spans all layers), so decoding L layers one call at a
 * time would inflate each chunk L times. kvtc_decoder_hold inflates and
 * dequantizes the chunks of stream tokens [token_begin, token_end)
 * (token_end 0 = all) once and keeps the coefficients in the decoder
 * (about tokens x (rank_k + rank_v) floats); later kvtc_decompress_layout
 * calls on the same buffer (same address and stream: size and chunk index
 * checksum are compared, so another stream later placed at that address
 * is decoded from its own chunks) skip that stage for those chunks, with
 * bit-identical results. The caller must not change the
 * buffer while held. A new hold replaces the previous one;
 * kvtc_decoder_release (or kvtc_decoder_free) frees it. Errors as
 * kvtc_decompress (nothing is held on failure). */
KVTC_API kvtc_result kvtc_decoder_hold(kvtc_decoder *d, const void *buf, size_t size, uint64_t token_begin,
                              uint64_t token_end);
KVTC_API void kvtc_decoder_release(kvtc_decoder *d);

#ifdef __cplusplus
}
#endif

#endif /* KVTC_H */
