/* eval_gpu_none.c - eval_gpu.h in the CPU-only kvtc: no CUDA backend, so
 * every --gpu row is refused before the evaluation starts. */
#include "gpu/eval_gpu.h"

int eval_gpu_built(void) { return 0; }

kvtc_result eval_gpu_open(const kvtc_basis *b, eval_gpu_projection projection, double ratio, uint32_t n_sink,
                          uint32_t n_window, eval_gpu **out, char *msg, size_t msg_cap) {
    (void)b, (void)projection, (void)ratio, (void)n_sink, (void)n_window;
    *out = NULL;
    if (msg && msg_cap) msg[0] = 0;
    return KVTC_ERR_UNSUPPORTED;
}

kvtc_result eval_gpu_roundtrip(eval_gpu *g, kvtc_cache *c, size_t *size, kvtc_stream_info *info, double *enc_s,
                               double *dec_s, char *msg, size_t msg_cap) {
    (void)g, (void)c, (void)size, (void)info, (void)enc_s, (void)dec_s;
    if (msg && msg_cap) msg[0] = 0;
    return KVTC_ERR_UNSUPPORTED;
}

void eval_gpu_close(eval_gpu *g) { (void)g; }
