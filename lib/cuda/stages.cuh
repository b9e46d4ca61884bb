// stages.cuh - small host helpers shared by the encode and decode
// orchestration (encode.cu, decode.cu).
#ifndef KVTC_CUDA_STAGES_CUH
#define KVTC_CUDA_STAGES_CUH

#include "cuda/codec.cuh"
#include "cuda/rope_gather.cuh"

extern "C" {
#include "util/cache.h"
}

// The gather/scatter geometry of stream is_key of h (RoPE handled when unrope).
static inline RowGeom row_geom(const container_header *h, int is_key, int unrope) {
    RowGeom g;
    g.H = h->geometry.n_kv_heads;
    g.d = h->geometry.head_dim;
    g.rd = kvi_geometry_rope_dim(&h->geometry);
    g.rope = (is_key && unrope && h->geometry.rope_type != KVTC_ROPE_NONE) ? (uint32_t)h->geometry.rope_type : 0;
    // the coded layers are [recompute_layers, n_layers): X column 0 is their first head
    g.lh0 = g.col_lh0 = h->recompute_layers * g.H;
    g.t0 = h->n_sink;
    g.n = container_coded_tokens(h);
    g.p = (uint64_t)(h->geometry.n_layers - h->recompute_layers) * g.H * g.d; // X is the coded width
    return g;
}

// Profiler marks from stages that do not know the codec (rans_encode_chunks).
struct ProfArg {
    kvtc_cuda_codec *c;
    cudaStream_t s;
};
static inline void prof_cb(void *arg, const char *name) {
    ProfArg *a = (ProfArg *)arg;
    prof_mark(a->c, a->s, name);
}

#endif
