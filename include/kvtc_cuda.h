/*
 * kvtc_cuda.h - the CUDA backend of libkvtc (library kvtc_cuda, built when
 * CMake finds nvcc and KVTC_CUDA is ON). It writes and reads the same
 * stream format as the CPU codec (docs/FORMAT.md) with entropy codec 2
 * (interleaved rANS): the CPU decodes what the GPU encodes and vice versa.
 *
 *   kvtc_cuda_codec *cc;  kvtc_cuda_codec_alloc(basis, NULL, &cc);   // uploads the basis once
 *   size_t ws = kvtc_cuda_workspace_size(cc, max_tokens, 0);        // cudaMalloc it once
 *   size_t cap = kvtc_cuda_compress_bound(cc, &dev_cache);          // cudaMalloc d_out once
 *   kvtc_cuda_compress(cc, &dev_cache, d_out, cap, d_size, d_ws, ws, stream);
 *   ...
 *   kvtc_cuda_decompress(cc, host_prefix, n, d_stream, size, &dev_cache, d_ws, ws, d_status, stream);
 *
 * Conventions
 * - kvtc_cache here holds DEVICE pointers (k, v, positions, token_ids).
 *   token_ids (int32 [n_tokens]) are stored when given, and required by
 *   bases that recompute layers (the stream then needs the model to decode:
 *   kvtc_cuda_options.recompute).
 * - compress/decompress are stream-ordered on `stream`: they only enqueue
 *   work (kernels, cuBLAS, cudaMemsetAsync) and return; they never
 *   allocate, synchronize or copy to the host, so they may be captured in
 *   a CUDA graph (one exception: the first decode of a stream that carries
 *   a plan the codec does not hold uploads it; kvtc_cuda_stream_workspace_size
 *   does that ahead of a capture). Host-side argument checks happen before
 *   anything is enqueued. A CUDA or cuBLAS failure returns KVTC_ERR_CUDA
 *   and kvtc_cuda_last_error() says which call failed, where. Results that depend on the data are written to device
 *   memory: the stream size (*d_written) and the decode status (*d_status:
 *   0 = OK, else a kvtc_result such as KVTC_ERR_CORRUPT; the decoded cache
 *   is then unspecified).
 * - One codec object is used by one host thread at a time (it owns a
 *   cuBLAS handle); any number of codecs may share a kvtc_basis. Its calls
 *   may go to different CUDA streams as long as each stream has its own
 *   workspace (a batch alternating between two streams overlaps one
 *   cache's entropy coding with another's GEMMs: kvtc_cuda_bench fp8).
 * - Floats: the GPU projects with bf16 operands and fp32 accumulation by
 *   default (KVTC_CUDA_GEMM_BF16); coefficients may differ slightly from the
 *   CPU's, so quantization codes can differ where a value sits at a
 *   rounding boundary. The bitstream itself is the same format, and for the
 *   same payload bytes the GPU's rANS output is byte-identical to the CPU's.
 *   kvtc_cuda_options.projection can run either GEMM with e4m3 operands
 *   instead (KVTC_CUDA_PROJ_FP8*).
 */
#ifndef KVTC_CUDA_H
#define KVTC_CUDA_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"
#include "kvtc_store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvtc_cuda_gemm {
    KVTC_CUDA_GEMM_BF16 = 0, /* bf16 operands (basis, rows), fp32 accumulation (default) */
    KVTC_CUDA_GEMM_TF32 = 1, /* fp32 storage, tensor-core tf32 products, fp32 accumulation */
    KVTC_CUDA_GEMM_FP32 = 2  /* fp32 throughout (CUBLAS_COMPUTE_32F): the CPU's arithmetic */
} kvtc_cuda_gemm;

/* The projection GEMMs in FP8: bit flags of kvtc_cuda_options.projection.
 * e4m3 operands on FP8 tensor cores (cuBLASLt), fp32 accumulation. They
 * need gemm = KVTC_CUDA_GEMM_BF16 (else KVTC_ERR_INVALID_ARGUMENT), a GPU of
 * compute capability >= 8.9, p and head_dim multiples of 16 (else
 * KVTC_ERR_UNSUPPORTED from kvtc_cuda_codec_alloc). Streams are the same
 * format (docs/FORMAT.md is unchanged) and decode anywhere; only values
 * differ, by e4m3's precision (half a step is 2^-5..2^-4 relative). On the
 * bundled model (bench/RESULTS.md section 9, measured with the CPU
 * emulation `kvtc eval --emulate-gpu`) KL rises by 2-4% at 16x and 32x, but
 * by 20-37% at 8x: meant for 16x and above. Speed: kvtc_cuda_bench fp8.
 *  - DECODE: X = D B. Coefficient j is divided by sqrt(eigenvalue_j) and
 *    cast to e4m3 by the dequantization kernel (no scale pass); the basis,
 *    its rows multiplied by the same factors and transposed, carries one
 *    per-tensor scale; X is bf16.
 *  - ENCODE: D = X B^T. The gathered bf16 rows are cast to e4m3 with one
 *    scale per row (amax / 448, one extra pass over X), the basis with one
 *    per-tensor scale; D is fp32 and the quantizer applies the row scale.
 * Memory: the codec keeps an e4m3 copy of the basis per flag (1 byte per
 * element) besides the bf16 one; ENCODE adds n_tokens * (p + 4) bytes to
 * kvtc_cuda_workspace_size. */
typedef enum kvtc_cuda_projection {
    KVTC_CUDA_PROJ_DEFAULT = 0,    /* both GEMMs in the precision `gemm` selects (default) */
    KVTC_CUDA_PROJ_FP8_DECODE = 1, /* the decoder's reconstruction in FP8 */
    KVTC_CUDA_PROJ_FP8_ENCODE = 2, /* the encoder's projection in FP8 */
    KVTC_CUDA_PROJ_FP8 = 3,        /* both */
    /* With DECODE and/or ENCODE: fast FP8 accumulation for those GEMMs
     * (CUBLASLT_MATMUL_DESC_FAST_ACCUM: the tensor cores' partial sums are
     * not promoted to fp32 every few products). Alone (no DECODE or ENCODE
     * bit): KVTC_ERR_INVALID_ARGUMENT. At the 12B geometry on an H200 it
     * makes a batch 4-7% faster and adds 1.4-1.8% (rank 4096) to 4.0-5.4%
     * (rank 10240) to the squared reconstruction error of V / K, about four
     * times what the e4m3 operands themselves add; its KL on a model is not
     * measured (the accumulation cannot be emulated on the CPU): off by
     * default (bench/RESULTS_CUDA.md, kvtc_cuda_bench fp8 / gemm). */
    KVTC_CUDA_PROJ_FP8_FAST_ACCUM = 4
} kvtc_cuda_projection;

/* Recomputed layers on the GPU (bases with kvtc_basis_recomputed_layers()
 * = m > 0: layers [0, m) of the coded tokens are not stored, the engine
 * recomputes them from the token ids). kvtc_cuda_decompress(_layout) calls
 * this hook on the host, after it has enqueued the decode of the stored
 * layers and before it enqueues the raw sink/window tokens (which the
 * stream stores for every layer, so they overwrite whatever the hook
 * writes there). The hook must ENQUEUE on `stream` (not wait for) the work
 * that writes layers [range->layer_begin, min(m, range->layer_end)) of the
 * range's tokens into `out` (device layout; output token i is stream token
 * range->token_begin + i). d_token_ids and d_positions (device, valid until
 * the work enqueued on `stream` after the call has run) hold the ids and
 * positions of stream tokens [0, n_tokens), n_tokens = range->token_end:
 * causal models need the prefix. `range` is resolved (no 0 ends). Return 0
 * on success; anything else makes the decode return KVTC_ERR_CALLBACK. It
 * is not called when the range has no coded token or no recomputed layer. */
typedef int (*kvtc_cuda_recompute_fn)(void *user, uint32_t n_layers, const int32_t *d_token_ids,
                                      const int64_t *d_positions, uint64_t n_tokens,
                                      const kvtc_decode_range *range, const kvtc_cache_layout *out,
                                      cudaStream_t stream);

typedef struct kvtc_cuda_options {
    size_t struct_size;    /* sizeof(kvtc_cuda_options) */
    double ratio;          /* target ratio of the encoder, as kvtc_encode_options (default
                            * 20): the basis' plan made for exactly this ratio, else a
                            * plan solved at codec creation (the CPU's DP), which every
                            * stream then carries (container 1.1, flag bit 2).
                            * KVTC_ERR_NO_PLAN below the basis' smallest ratio;
                            * KVTC_ERR_INVALID_ARGUMENT unless finite and > 0. */
    uint32_t n_sink;       /* default 4 */
    uint32_t n_window;     /* default 128 */
    uint32_t chunk_tokens; /* default 256 */
    kvtc_cuda_gemm gemm;   /* default KVTC_CUDA_GEMM_BF16 */
    int device;            /* CUDA device (default: the current one) ; -1 = current. Every
                            * entry point runs on the codec's device and leaves the
                            * caller's current device as it found it. */
    int profile;           /* 1: record events between stages and print a per-stage
                            * breakdown to stderr after each call, which SYNCHRONIZES
                            * the stream (benchmarks only; default 0, the library
                            * never reads the environment) */
    /* Added in 0.2 (a caller of 0.1 passes the struct up to `profile` as its
     * struct_size and gets the defaults below): */
    uint64_t model_fingerprint; /* as kvtc_encode_options / kvtc_decode_options: recorded
                            * in streams of bases that recompute layers (encode) and
                            * checked against such streams (decode:
                            * KVTC_ERR_MODEL_MISMATCH); 0 = none */
    kvtc_cuda_recompute_fn recompute; /* needed to decode streams with recomputed layers
                            * (KVTC_ERR_NEEDS_MODEL otherwise); NULL by default */
    void *recompute_user;
    /* Added in 0.3 (callers of 0.1 and 0.2 pass their struct_size, up to
     * `profile` or up to `recompute_user`, and get the default): */
    kvtc_cuda_projection projection; /* default KVTC_CUDA_PROJ_DEFAULT; other bits than
                            * KVTC_CUDA_PROJ_FP8 | KVTC_CUDA_PROJ_FP8_FAST_ACCUM,
                            * FAST_ACCUM alone, or FP8 with gemm != BF16:
                            * KVTC_ERR_INVALID_ARGUMENT */
} kvtc_cuda_options;

KVTC_API void kvtc_cuda_options_init(kvtc_cuda_options *o);

typedef struct kvtc_cuda_codec kvtc_cuda_codec;

/* Why the last call on this codec failed with KVTC_ERR_CUDA: the failing
 * CUDA runtime or cuBLAS call (or the stage whose kernel launch failed),
 * its source file and line, the error's name and text, e.g.
 *   "encode.cu:97: project_rows(...): CUBLAS_STATUS_EXECUTION_FAILED: ..."
 * Copies at most len - 1 bytes and a NUL into buf (buf may be NULL when
 * len is 0) and returns the message's full length (like snprintf), 0 when
 * the last call did not fail in CUDA. Every compress/decompress call
 * clears it first. Errors that happen on the device after a call returned
 * (sticky errors, found by the caller's later cudaStreamSynchronize) and
 * failures of kvtc_cuda_codec_alloc (no codec is returned to hold them)
 * are not recorded here. c may be NULL (empty message). */
KVTC_API size_t kvtc_cuda_last_error(const kvtc_cuda_codec *c, char *buf, size_t len);

/* Upload mean, weights, basis rows (all plans' ranks) and plan tables to
 * the device and create a cuBLAS handle. b must outlive the codec.
 * KVTC_ERR_UNSUPPORTED (besides the cases above) when a basis weight has no
 * finite fp32 reciprocal (below about 2^-128): the decoder un-weights by
 * multiplying with 1 / weight. */
KVTC_API kvtc_result kvtc_cuda_codec_alloc(const kvtc_basis *b, const kvtc_cuda_options *opts, kvtc_cuda_codec **out);
KVTC_API void kvtc_cuda_codec_free(kvtc_cuda_codec *c);

/* Device bytes the workspace needs for caches of up to n_tokens tokens, for
 * encoding and for decoding streams of chunk_tokens per chunk (0 = the
 * codec's chunk_tokens), with any plan of the basis, the encoder's plan and
 * the carried plans the codec holds so far; 0 on overflow. */
KVTC_API size_t kvtc_cuda_workspace_size(const kvtc_cuda_codec *c, uint64_t n_tokens, uint32_t chunk_tokens);

/* Upper bound on the stream size of `cache` (0 if the cache is invalid). */
KVTC_API size_t kvtc_cuda_compress_bound(const kvtc_cuda_codec *c, const kvtc_cache *cache);

/* Encode a cache whose k, v (and positions, if not NULL) are device
 * pointers into d_out[0..cap) (device), codec 2. *d_written (device u64)
 * receives the stream size. cap >= kvtc_cuda_compress_bound(). When
 * positions is non-NULL the stream always carries the positions section.
 * Unlike the CPU encoder, NaN/Inf inputs are not detected. */
KVTC_API kvtc_result kvtc_cuda_compress(kvtc_cuda_codec *c, const kvtc_cache *cache, void *d_out, size_t cap,
                               uint64_t *d_written, void *d_ws, size_t ws_size, cudaStream_t stream);

/* Decode a stream held in device memory d_stream[0..size). The host passes
 * a copy of the stream's first bytes, h_prefix[0..prefix_size), validated
 * on the host without synchronizing:
 *  - at least the header and section table: 272 bytes, or 296 for a
 *    stream that carries a plan (container 1.1 flag bit 2);
 *  - for a stream that carries a plan the codec does not hold yet, up to
 *    the end of its plan section, which is the stream's LAST section: then
 *    h_prefix is the whole stream (else KVTC_ERR_TRUNCATED). The codec
 *    validates the plan (its CRC, its groups against the basis, the
 *    header's plan fingerprint), uploads its tables (this allocates and
 *    synchronizes, so it must not happen during graph capture) and keeps
 *    the last 8 such plans: later streams with the same plan need only the
 *    header and table. kvtc_cuda_stream_workspace_size() does the same
 *    ahead of time.
 * `out` (device pointers) must match the stream's geometry, dtype and
 * n_tokens; out->positions, if not NULL, receives the positions. Every
 * section and chunk CRC is checked on the device; any failure sets
 * *d_status (device u32, set to 0 first) to a kvtc_result != 0. Codec 1
 * (DEFLATE) streams: KVTC_ERR_UNSUPPORTED (decode them on the CPU). Streams
 * with recomputed layers need kvtc_cuda_options.recompute
 * (KVTC_ERR_NEEDS_MODEL, before anything is enqueued) and, when they record
 * a model fingerprint, the codec's must match (KVTC_ERR_MODEL_MISMATCH);
 * out->token_ids, if not NULL, receives the stored ids. ws_size must be at least
 * kvtc_cuda_workspace_size(n_tokens) (stored plans and the encoder's) or,
 * for a stream carrying another plan, kvtc_cuda_stream_workspace_size():
 * else KVTC_ERR_BUFFER_TOO_SMALL. Engine layouts and decode ranges:
 * kvtc_cuda_decompress_layout below; append: kvtc_cuda_append. */
KVTC_API kvtc_result kvtc_cuda_decompress(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size, const void *d_stream,
                                 size_t size, kvtc_cache *out, void *d_ws, size_t ws_size, uint32_t *d_status,
                                 cudaStream_t stream);

/* Prepare to decode the stream whose prefix is h_prefix[0..prefix_size)
 * (same rules as kvtc_cuda_decompress): resolve its plan (uploading and
 * keeping a carried plan; allocates and synchronizes) and set *ws_size to
 * the workspace bytes its decode needs. Call it before capturing a decode
 * of a plan-carrying stream in a CUDA graph. */
KVTC_API kvtc_result kvtc_cuda_stream_workspace_size(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size,
                                            size_t *ws_size);

/* ------------------------------------------------------------------------ */
/* Engine layouts on the GPU                                                 */
/* ------------------------------------------------------------------------ */
/* kvtc_cuda_compress / kvtc_cuda_decompress read and write a cache described
 * by a kvtc_cache_layout (include/kvtc.h: per-layer bases or base + layer
 * stride, token / head / dim strides, optional block table) in place: the
 * gather and scatter kernels address the engine's memory directly, with no
 * intermediate contiguous copy. kvtc_cuda_compress/decompress are the
 * contiguous case of these. On the GPU:
 *  - every pointer of the layout is a DEVICE pointer (k/v base or the
 *    entries of k/v.layers, block_table, positions); the `layers` arrays
 *    themselves are host arrays (read at call time, passed by value to the
 *    kernels), at most 256 layers (else KVTC_ERR_UNSUPPORTED);
 *  - the block table is validated on the device, stream-ordered: an entry
 *    outside [0, n_pool_blocks) or a block that appears twice sets
 *    *d_status to KVTC_ERR_BAD_BLOCK_TABLE (the output is then
 *    unspecified). Kernels never follow an out-of-range entry: the rows it
 *    names are skipped, so no access leaves the pool. The check marks a
 *    bitmap of block ids in the workspace (4 MiB of it, 2^25 ids a pass):
 *    O(entries) per pass, one pass for pools below 2^25 blocks, at most 64
 *    whatever n_pool_blocks says (entries are int32). A 131072-entry table
 *    (an SGLang pool of 128K tokens) takes one pass;
 *  - rows with dim stride 1, 8-byte aligned bases and token / head / block
 *    strides that are multiples of 4 elements take the vectorized kernels;
 *    others (e.g. llama.cpp's transposed V) take the element-wise ones;
 *  - the same bytes as kvtc_cuda_compress of the same values in a
 *    contiguous cache, the same values as kvtc_cuda_decompress. */
KVTC_API size_t kvtc_cuda_compress_layout_bound(const kvtc_cuda_codec *c, const kvtc_cache_layout *cache);
/* d_status (device u32): required with a block table (else
 * KVTC_ERR_INVALID_ARGUMENT), may be NULL without one; set to 0 first. */
KVTC_API kvtc_result kvtc_cuda_compress_layout(kvtc_cuda_codec *c, const kvtc_cache_layout *cache, void *d_out,
                                      size_t cap, uint64_t *d_written, void *d_ws, size_t ws_size,
                                      uint32_t *d_status, cudaStream_t stream);
/* As kvtc_cuda_decompress, into `out`, for
 * `range` (NULL: the whole stream) as kvtc_decompress_layout defines it:
 * out->n_tokens = the range's token count, token i of out receiving stream
 * token token_begin + i; only layers [layer_begin, layer_end) are written
 * (and only their layer pointers need to be set). Only the run of chunks
 * holding the range's coded tokens is parsed, checksummed and decoded
 * (chunk index entries outside it are not examined; the index section's
 * CRC still is), and the reconstruction GEMM covers only the range's
 * tokens and the layer range's basis columns, so the cost follows the
 * range (the section CRCs and the workspace do not shrink). The values
 * equal the same elements of a full GPU decode up to the reconstruction
 * GEMM's rounding: cuBLAS may pick another kernel for another row count,
 * so the last bit of an element can differ (seen on an H200: tokens
 * [0, 50) of a 700-token stream). The CPU decoder's partial decodes are
 * bit-identical (it runs the same per-chunk GEMMs). A range
 * outside the stream: KVTC_ERR_INVALID_ARGUMENT. An empty range (e.g.
 * layer_begin == layer_end) is valid and writes no K/V, as on the CPU
 * (kvtc_decode_range); it used to be KVTC_ERR_INVALID_ARGUMENT here. */
KVTC_API kvtc_result kvtc_cuda_decompress_layout(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size,
                                        const void *d_stream, size_t size, const kvtc_decode_range *range,
                                        const kvtc_cache_layout *out, void *d_ws, size_t ws_size,
                                        uint32_t *d_status, cudaStream_t stream);

/* Layer-by-layer restores: the PCA spans all layers, so decoding one layer
 * range needs every coefficient of its chunks. kvtc_cuda_hold does once
 * everything that does not depend on the layer range, into the workspace
 * d_ws (stream-ordered): it parses, checksums and entropy-decodes every
 * chunk, dequantizes the K and V coefficients of every coded token (kept
 * side by side in the workspace, bf16 or fp32 as the GEMM mode; the
 * workspace size is the same as a decode's) and checks the section CRCs.
 * Failures set *d_status. Later kvtc_cuda_decompress /
 * kvtc_cuda_decompress_layout calls on this codec with the same d_stream,
 * size and d_ws then run only the range's reconstruction GEMM slice (the
 * layer range's basis columns), RoPE, scatter and raw tokens, e.g. one call
 * per layer while the engine computes the previous layer on another
 * stream; each starts its *d_status from the hold's, so a stream the hold
 * found corrupt fails every held decode too. The values equal a decode of
 * the same range without the hold (and the full decode's up to GEMM
 * rounding). The hold ends with kvtc_cuda_release, kvtc_cuda_hold of
 * another stream, any compress call on the codec, or a decode on the codec
 * of another stream or into another workspace (another stream later placed
 * at d_stream with the same size is told apart by its chunk index CRC in
 * the host prefix). Same prefix rules and errors as
 * kvtc_cuda_decompress. The caller keeps d_stream and d_ws unchanged while
 * it holds them. */
KVTC_API kvtc_result kvtc_cuda_hold(kvtc_cuda_codec *c, const void *h_prefix, size_t prefix_size, const void *d_stream,
                           size_t size, void *d_ws, size_t ws_size, uint32_t *d_status, cudaStream_t stream);
KVTC_API void kvtc_cuda_release(kvtc_cuda_codec *c);

/* ------------------------------------------------------------------------ */
/* Append on the GPU                                                         */
/* ------------------------------------------------------------------------ */
/* kvtc_append (include/kvtc.h) for a stream in HOST memory, in[0..in_size)
 * (where offloaded streams live), and new tokens in a DEVICE layout `more`
 * (the rules of kvtc_cuda_compress_layout: device k/v bases or layer
 * pointers, device block_table, device positions and token_ids, each
 * optional as in kvtc_append; host `layers` arrays). The result goes to the
 * caller's HOST buffer out[0..cap); *written receives its size.
 * How: the GPU gathers the new tokens out of the layout (paged, strided,
 * transposed V) into a contiguous staging buffer it takes from and returns
 * to CUDA's stream-ordered pool (cudaMallocAsync on `stream`, K and V one
 * after the other: kvtc_cache_tensor_bytes of the new tokens), they are
 * copied to host memory (also host memory of that size per tensor), and
 * the CPU append codes them with a CPU encoder of the codec's parameters
 * (ratio, so the same plan; sink, window, chunk size, model fingerprint;
 * rANS), made at the first append or bound call and kept by the codec. So
 * the stream is byte for byte kvtc_append's with such an encoder and the
 * same tokens: old chunks carried over, the old partial chunk's payload
 * carried without re-quantization, the tokens that leave the raw window
 * projected in fp32 on the host (whatever `gemm` / `projection` say), the
 * new window stored raw. Cost: the gather and copy of the new tokens, then
 * the CPU append's (the projection of the tokens that leave the window is a
 * host GEMM of m x p x rank, which at large geometries such as p = 40960
 * is the bulk of it; a GPU projection is not implemented). Not stream-ordered: it SYNCHRONIZES `stream` (the
 * host needs the tokens) and allocates; not for graph capture. `in` and
 * `out` must not overlap. The codec is used by this thread only during the
 * call. Errors: those of kvtc_append (KVTC_ERR_BASIS_MISMATCH for a stream
 * of another basis or plan, i.e. another ratio; KVTC_ERR_GEOMETRY_MISMATCH;
 * KVTC_ERR_INVALID_ARGUMENT for a stream with other sink / window / chunk
 * size or a DEFLATE stream with coded tokens, or no positions when the
 * continuing ones would pass INT64_MAX; KVTC_ERR_MODEL_MISMATCH; KVTC_ERR_NUMERIC for NaN/Inf
 * in tokens that get coded; KVTC_ERR_BUFFER_TOO_SMALL; the stream's
 * KVTC_ERR_CORRUPT / _TRUNCATED / _BAD_MAGIC ...), plus the device layout's
 * (as kvtc_cuda_compress_layout: KVTC_ERR_INVALID_ARGUMENT,
 * _GEOMETRY_MISMATCH with the codec's basis, _UNSUPPORTED beyond 256
 * layers), KVTC_ERR_BAD_BLOCK_TABLE (the table is copied to the host and
 * checked there before anything is gathered), KVTC_ERR_TOO_LARGE for more
 * than 2^32 - 1 new tokens in one call, KVTC_ERR_CUDA (kvtc_cuda_last_error
 * says which call). On error *written and the contents of out are
 * unspecified. */
KVTC_API kvtc_result kvtc_cuda_append(kvtc_cuda_codec *c, const void *in, size_t in_size, const kvtc_cache_layout *more,
                                      void *out, size_t cap, size_t *written, cudaStream_t stream);
/* A cap sufficient for kvtc_cuda_append of `more` to in[0..in_size); 0 on
 * error (the same checks, except the block table and positions, which
 * stay in device memory and are not read). Reads no device memory. */
KVTC_API size_t kvtc_cuda_append_bound(kvtc_cuda_codec *c, const void *in, size_t in_size,
                                       const kvtc_cache_layout *more);

/* ------------------------------------------------------------------------ */
/* The prefix store on the GPU (kvtc_store.h)                                */
/* ------------------------------------------------------------------------ */
/* kvtc_store_get decoded on the GPU into a device layout: the first
 * n = out->n_tokens tokens of the sequence tokens[0..n_tokens) (the same
 * rules as kvtc_store_get: the chunks covering n must be whole in tokens;
 * only those are fetched, in one batch, and checked on the host; the last
 * one is decoded only up to token n). `out` follows the device-layout rules
 * of kvtc_cuda_decompress_layout (device pointers, host `layers` arrays,
 * device block table); positions / token_ids (device, when non-NULL)
 * receive 0.. and the restored tokens' ids. Each chunk is decoded in place
 * into a token view of `out` (no contiguous copy). *n_restored as
 * kvtc_store_get: n when every chunk was there and good, else the whole
 * chunks before the first missing or rejected one (a miss is KVTC_OK).
 * Checked before anything is fetched: the layout (as
 * kvtc_cuda_decompress_layout: KVTC_ERR_INVALID_ARGUMENT,
 * _GEOMETRY_MISMATCH with the codec's basis or the store's dtype), the
 * block table (copied to the host and checked there:
 * KVTC_ERR_BAD_BLOCK_TABLE), a block size that does not divide the store's
 * chunk size (KVTC_ERR_UNSUPPORTED), the store's codec (a RAW store:
 * KVTC_ERR_UNSUPPORTED) and basis (another basis than the codec's:
 * KVTC_ERR_BASIS_MISMATCH). Chunks coded with DEFLATE (the store's default
 * entropy codec; open the writing store with entropy_codec =
 * KVTC_CODEC_RANS for the GPU): KVTC_ERR_UNSUPPORTED, and the records are
 * kept. Unlike the codec calls this one is not stream-ordered: it does host
 * I/O, stages the chunks' streams in memory it takes from and returns to
 * CUDA's stream-ordered pool (cudaMallocAsync on `stream`), and
 * synchronizes `stream` before it returns (the store needs each chunk's
 * device status to know what was restored). Not for graph capture. The
 * store object and the codec are used by this thread only during the call.
 * libkvtc and libkvtc_cuda must come from the same build. */
KVTC_API kvtc_result kvtc_cuda_store_get(kvtc_cuda_codec *c, kvtc_store *s, const int32_t *tokens, uint64_t n_tokens,
                                         const kvtc_cache_layout *out, cudaStream_t stream, uint64_t *n_restored);

/* ------------------------------------------------------------------------ */
/* GPU calibration                                                           */
/* ------------------------------------------------------------------------ */
/* The weighted, centered covariance of each stream is accumulated on the
 * GPU from batches of rows (cuBLAS syrk in fp32, or GEMM in TF32), shifted
 * by the first batch's mean so fp32 sums do not cancel; then the top `rank`
 * eigenpairs by randomized subspace iteration on the covariance (cuBLAS
 * GEMM + cuSOLVER geqrf/orgqr, Rayleigh-Ritz with cuSOLVER syevd). When
 * rank + oversample >= p the subspace is all of R^p and the result is the
 * exact eigendecomposition. The DP statistics use the same row subsample as
 * the CPU calibrator (projected on the GPU); the DP and the plans are the
 * CPU code's. Not stream-ordered: these calls synchronize and allocate. */

typedef struct kvtc_cuda_calib_options {
    size_t struct_size;    /* sizeof(kvtc_cuda_calib_options) */
    uint32_t rank;         /* components computed (0: the calibrate options' max_rank, else min(p, 2048)) */
    uint32_t oversample;   /* extra subspace columns (default 32) */
    uint32_t power_iters;  /* subspace iterations (default 3) */
    uint32_t batch_rows;   /* rows per upload / syrk (default 4096) */
    kvtc_cuda_gemm gemm;   /* KVTC_CUDA_GEMM_FP32 (default) or KVTC_CUDA_GEMM_TF32; BF16 is refused */
    int device;            /* -1 = current (default) */
} kvtc_cuda_calib_options;

KVTC_API void kvtc_cuda_calib_options_init(kvtc_cuda_calib_options *o);

/* Seconds spent per phase (wall clock, synchronized). */
typedef struct kvtc_cuda_calib_stats {
    double covariance_s;   /* rows in + shift/weight + syrk, both streams (includes the row source) */
    double eigen_s;        /* subspace iteration + Rayleigh-Ritz, both streams */
    double dp_stats_s;     /* projections of the subsample + dp_stats_compute */
    double plans_s;        /* DP solve and plans (CPU) */
    double total_s;
    uint32_t rank, subspace; /* components computed, subspace columns */
    uint64_t rows;
} kvtc_cuda_calib_stats;

/* Finish a calibrator on the GPU: its collected rows are uploaded in
 * batches (host memory is not duplicated). Same contract as
 * kvtc_calibrator_finish; opts and stats may be NULL. pca_per_layer is
 * not supported (KVTC_ERR_UNSUPPORTED). */
KVTC_API kvtc_result kvtc_cuda_calibrator_finish(kvtc_calibrator *c, const double *ratios, uint32_t n_ratios,
                                        const kvtc_cuda_calib_options *opts, kvtc_basis **out,
                                        kvtc_cuda_calib_stats *stats);

/* Row source for calibrating from rows that never sit in host memory:
 * write rows [row0, row0 + n) of stream is_key (1 = keys, RoPE already
 * removed if the options remove it; 0 = values) as float [n][p] into the
 * device buffer d_rows, stream-ordered on `stream` or synchronously.
 * Return 0 on success. Rows must be the same for the same arguments. */
typedef int (*kvtc_cuda_row_fn)(void *user, int is_key, uint64_t row0, uint64_t n, float *d_rows,
                                cudaStream_t stream);

/* Calibrate from n_rows rows per stream produced by `fill` (p = the coded
 * width of geometry g under copts' recompute_layers). Same result fields as
 * the calibrator. */
KVTC_API kvtc_result kvtc_cuda_calibrate_rows(const kvtc_geometry *g, const kvtc_calibrate_options *copts, uint64_t n_rows,
                                     kvtc_cuda_row_fn fill, void *user, const double *ratios, uint32_t n_ratios,
                                     const kvtc_cuda_calib_options *opts, kvtc_basis **out,
                                     kvtc_cuda_calib_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
