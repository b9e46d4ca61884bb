// codec.cuh - the codec object of the CUDA backend and what the host-side
// stages share: plan tables on the device, the workspace layout, error
// recording with location (CUDA_CHECK) and the optional stage profiler.
#ifndef KVTC_CUDA_CODEC_CUH
#define KVTC_CUDA_CODEC_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "kvtc_cuda.h"

extern "C" {
#include "model/basis.h"
#include "format/container.h"
}

// ---- host/device plan tables ------------------------------------------------

struct GroupDesc {
    uint32_t col, size, bits;
    uint32_t param_off;  // param bytes per token before this group (within its stream)
    uint32_t code_off;   // code bits per token before this group (within its stream)
};

// Threads the (de)quantizers give each token of a group: one per 8 codes of
// a quantized group (16..1024 codes), at most 32 (a warp; powers of two, so
// a token's threads never straddle a warp and shuffles reduce within them);
// 32 for a dropped group (zeros written element by element).
static __host__ __device__ __forceinline__ uint32_t group_threads(uint32_t size, uint32_t bits) {
    return bits == 0 || size / 8 >= 32 ? 32u : size / 8;
}

struct RawDesc {  // one coordinate of a raw fp16 group
    uint32_t col, param_off, size, j;
};

struct StreamPlan {
    uint32_t n_groups, rank;   // quantized and dropped groups up to rank_used; rank_used
    uint32_t n_raw;            // coordinates in raw fp16 groups
    RawDesc *d_raw;            // device
    uint32_t param_bytes;      // per token
    uint32_t code_bits;        // per token (a multiple of 8)
    GroupDesc *d_groups;       // device
    // the (de)quantizers' thread map (quantize.cu): group g owns threads
    // [item0[g], item0[g + 1]) of each token, group_threads(g) of them
    uint32_t *d_item0;         // device, n_groups + 1 entries
    uint32_t items;            // item0[n_groups]: threads per token
};

struct PlanDev {
    StreamPlan s[2];
    uint64_t fingerprint;
    const basis_plan *host;
};

// The device plan of one stream (groups up to rank_used, raw coordinates,
// the (de)quantizers' item map): KVTC_ERR_UNSUPPORTED for a group the
// kernels do not take, KVTC_ERR_OUT_OF_MEMORY, KVTC_ERR_CUDA. Whatever the
// result, free_stream_plan releases it (and zeroes *sp).
kvtc_result build_stream_plan(const plan_stream *ps, StreamPlan *sp);
void free_stream_plan(StreamPlan *sp);

#define KVTC_CUDA_ERR_MSG 320
// Plans decoded streams carry (container 1.1 flag bit 2) that the codec
// keeps on the device, most recent first out when full.
#define KVTC_CUDA_CARRIED_PLANS 8
#define KVTC_CUDA_PROF_EVENTS 48

struct kvtc_cuda_codec {
    const kvtc_basis *basis;
    kvtc_cuda_options opt;
    // plans[0, n_stored): the basis' plans; then the encoder's solved plan
    // (if any), then up to KVTC_CUDA_CARRIED_PLANS plans read from streams.
    // own[i] holds the host groups of the plans the codec made or read.
    uint32_t enc_plan;       // index in plans of the encoder's plan
    int enc_carries_plan;    // 1: the encoder's plan is not stored in the basis (streams carry it)
    uint32_t n_plans, n_stored, cap_plans, next_carried;
    PlanDev *plans;
    basis_plan *own;
    uint8_t *d_plan_section;  // the encoder's plan section (enc_carries_plan)
    uint64_t plan_section_size;
    uint32_t plan_section_crc;
    uint32_t rmax[2];  // basis rows uploaded per stream (all stored components)
    // kvtc_cuda_hold: the workspace's D area holds the dequantized K and V
    // coefficients of every coded token of this stream (hold_d_offset), its
    // chunk and section CRCs were checked and hstat holds that status;
    // decodes of the same stream and workspace run only the layer range's
    // GEMMs, scatter and raw tokens. Any call that overwrites D clears it.
    struct {
        int valid;
        const void *d_stream, *ws;
        size_t size, d_off, hstat_off;
        uint64_t plan, coded;
        uint32_t index_crc;  // the chunk index's CRC (host prefix): another stream later
                             // placed at d_stream with the same size is not the held one
    } held;
    uint32_t p;
    void *d_basis[2];  // [rmax][p] bf16 or float
    float *d_mean[2], *d_weight[2];
    float *d_inv_weight[2];  // 1 / weight, the scatter's un-weighting
    double *d_inv_freq;
    uint32_t *d_crc_table;  // 256 + 32 (x^2^k mod P)
    cublasHandle_t blas;
    int esize;  // bytes of an X/D/basis element
    // KVTC_CUDA_PROJ_FP8_DECODE (fp8_dec): the decoder's operands
    // (transform/fp8.h). The basis TRANSPOSED in e4m3, [p][ld8] (components
    // fastest, zero past rmax), its per-tensor scale, and the fold factors
    // f_j the dequantization divides coefficient j by; coefficients in e4m3
    // are [n][round16(rank)].
    // KVTC_CUDA_PROJ_FP8_ENCODE (fp8_enc): the basis rows in e4m3 [rmax][p]
    // and their per-tensor scale; rows are cast per row (workspace X8, rs).
    // lt: the cuBLASLt handle of the FP8 GEMMs.
    // fp8_fast_accum: KVTC_CUDA_PROJ_FP8_FAST_ACCUM (cuBLASLt's FAST_ACCUM)
    int fp8_dec, fp8_enc, fp8_fast_accum;
    uint8_t *d_basis8[2];
    uint32_t ld8[2];
    float scale8[2];
    float *d_fold[2];
    uint8_t *d_basis8e[2];
    float scale8e[2];
    cublasLtHandle_t lt;
    // kvtc_cuda_append: the CPU encoder (same basis, plan, sink, window,
    // chunk size, rANS) that codes the appended tokens and splices the
    // container; made at the first append, freed with the codec
    kvtc_encoder *host_enc;
    // the last CUDA/cuBLAS failure of an entry point: call, file, line
    // (kvtc_cuda_last_error); empty when the last call did not fail there
    char err[KVTC_CUDA_ERR_MSG];
    // kvtc_cuda_options.profile: events between stages, printed (with a
    // synchronization) at the end of each call. Off the hot path otherwise.
    int profile, n_ev;
    cudaEvent_t ev[KVTC_CUDA_PROF_EVENTS];
    const char *ev_name[KVTC_CUDA_PROF_EVENTS];
};

// ---- errors with their location ---------------------------------------------

// Record "file:line: call: error name: text" in c->err (c may be NULL) and
// return KVTC_ERR_CUDA.
kvtc_result cuda_fail_rt(kvtc_cuda_codec *c, cudaError_t e, const char *call, const char *file, int line);
kvtc_result cuda_fail_blas(kvtc_cuda_codec *c, cublasStatus_t s, const char *call, const char *file, int line);
// Forget the previous failure (every entry point starts with this).
static inline void cuda_clear_error(kvtc_cuda_codec *c) {
    if (c) c->err[0] = 0;
}

// A device layout's block table copied to the host and checked there
// (kvi_layout_check: KVTC_ERR_BAD_BLOCK_TABLE for an entry outside the pool
// or a repeated block); synchronizes `stream`. KVTC_OK without a table.
// Used where the host must know before it goes on (store_get.cu, append.cu).
kvtc_result cuda_host_check_block_table(kvtc_cuda_codec *c, const kvtc_cache_layout *l, cudaStream_t stream);

#define CUDA_CHECK(c, x)                                                                         \
    do {                                                                                         \
        cudaError_t e_ = (x);                                                                    \
        if (e_ != cudaSuccess) return cuda_fail_rt((c), e_, #x, __FILE__, __LINE__);            \
    } while (0)
#define CUBLAS_CHECK(c, x)                                                                       \
    do {                                                                                         \
        cublasStatus_t s_ = (x);                                                                 \
        if (s_ != CUBLAS_STATUS_SUCCESS) return cuda_fail_blas((c), s_, #x, __FILE__, __LINE__); \
    } while (0)
// After kernel launches: a launch error (bad configuration, no device
// image) names the stage that launched.
#define LAUNCH_CHECK(c, stage)                                                                   \
    do {                                                                                         \
        cudaError_t e_ = cudaGetLastError();                                                     \
        if (e_ != cudaSuccess) return cuda_fail_rt((c), e_, "launch " stage, __FILE__, __LINE__); \
    } while (0)

// ---- profiler ---------------------------------------------------------------

void prof_mark(kvtc_cuda_codec *c, cudaStream_t s, const char *name);
void prof_report(kvtc_cuda_codec *c, const char *what);
#define PROF(c, s, name) prof_mark(c, s, name)

// ---- workspace layout ---------------------------------------------------------

struct Layout {
    size_t total;
    size_t cs, X, X8, rs, D, payload, pieces, crc_out, sec_crc, blas, blas_size, block_check;
    size_t hist, freq, start, npres, lstate, lcount, lwoff, words, segb, segm, sego, csize, coff, dsize;
    size_t dseg, dnseg, dnblk, dcoff, dcsize, dccrc;
    size_t hpos, hids;  // positions and token ids handed to the recompute hook
    size_t hstat;       // kvtc_cuda_hold's status word, copied into each held decode's
    uint64_t C, max_payload, max_pieces, hist_bytes;
    uint32_t Lmax;
    uint64_t Wmax;
};

// Returns 0 when the layout overflows size_t (or n exceeds the format).
// The payload bound covers every plan the codec holds (stored, the
// encoder's, the carried ones cached so far) and `extra` (may be NULL).
int layout_ws(const kvtc_cuda_codec *c, uint64_t n, uint32_t chunk_tokens, const PlanDev *extra, Layout *L);

// The plan a stream (header h, host prefix buf[0..size)) was coded with: a
// plan of the codec by fingerprint, else the plan section the stream
// carries (read from buf, which must then reach the end of that section,
// else KVTC_ERR_TRUNCATED), validated, uploaded and cached. Uploading
// allocates and synchronizes. *pd points into the codec.
kvtc_result resolve_stream_plan(kvtc_cuda_codec *c, const container_header *h, const uint8_t *buf, size_t size,
                                const PlanDev **pd);

// ---- host helpers shared by encode and decode --------------------------------

kvtc_result check_dev_cache(const kvtc_cuda_codec *c, const kvtc_cache *cache);
// A layout of device pointers for this codec (layout.cuh's host checks for
// layers [lb, le), le 0 = all, + the basis geometry).
kvtc_result check_dev_layout(const kvtc_cuda_codec *c, const kvtc_cache_layout *l, uint32_t lb, uint32_t le);
// The encoder's header for a cache described by l.
kvtc_result enc_header(const kvtc_cuda_codec *c, const kvtc_cache_layout *l, container_header *h);

#endif
