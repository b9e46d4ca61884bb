/* eval_gpu.h - `kvtc eval --gpu`: a KVTC method's round trip through the
 * CUDA codec (include/kvtc_cuda.h) instead of the CPU one, so the model
 * scores what the GPU really decodes (not an emulation of its arithmetic).
 * Only the kvtc-gpu build of the tool has it (eval_gpu_cuda.c, linked
 * against libkvtc_cuda); the plain kvtc refuses --gpu (eval_gpu_none.c). */
#ifndef KVTC_TOOLS_EVAL_GPU_H
#define KVTC_TOOLS_EVAL_GPU_H

#include <stddef.h>

#include "kvtc.h"

typedef struct eval_gpu eval_gpu;

/* 1 when this binary has the CUDA backend. */
int eval_gpu_built(void);

/* The projections --gpu takes (cmd_eval.c names them bf16, fp8, fp8fast). */
typedef enum eval_gpu_projection {
    EVAL_GPU_BF16,     /* the CUDA default */
    EVAL_GPU_FP8,      /* KVTC_CUDA_PROJ_FP8 */
    EVAL_GPU_FP8_FAST  /* KVTC_CUDA_PROJ_FP8 | KVTC_CUDA_PROJ_FP8_FAST_ACCUM */
} eval_gpu_projection;

/* A CUDA codec of basis b for one eval row: target ratio, sink and window as
 * the CPU rows. Bases with recomputed layers are refused
 * (KVTC_ERR_UNSUPPORTED: the eval has no GPU recompute hook); a machine
 * without a usable GPU gives the codec's error (KVTC_ERR_CUDA, or
 * KVTC_ERR_UNSUPPORTED for FP8 below compute capability 8.9). msg (may be
 * NULL) receives the CUDA error text on KVTC_ERR_CUDA, else it is left
 * empty. */
kvtc_result eval_gpu_open(const kvtc_basis *b, eval_gpu_projection projection, double ratio, uint32_t n_sink,
                          uint32_t n_window, eval_gpu **out, char *msg, size_t msg_cap);

/* Encode host cache c (contiguous) on the GPU and decode the stream back
 * into c on the GPU. *size: the stream's bytes; *info its stream info
 * (struct_size set by the caller); *enc_s, *dec_s: the calls' wall time
 * including the copies. On KVTC_ERR_CUDA, msg (may be NULL) receives which
 * CUDA call failed and why (kvtc_cuda_last_error, else the runtime's last
 * error); else it is left empty. */
kvtc_result eval_gpu_roundtrip(eval_gpu *g, kvtc_cache *c, size_t *size, kvtc_stream_info *info, double *enc_s,
                               double *dec_s, char *msg, size_t msg_cap);

void eval_gpu_close(eval_gpu *g);

#endif
