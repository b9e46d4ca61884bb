/* cmd_llama_common.h - helpers of cmd_llama.c that cmd_slots.c shares. */
#ifndef KVTC_TOOLS_CMD_LLAMA_COMMON_H
#define KVTC_TOOLS_CMD_LLAMA_COMMON_H

#include <stdint.h>

#include "kvtc.h"
#include "model_kv.h"

/* Load a basis file; prints the error and returns 1 on failure. */
int lcpp_cli_load_basis(const char *cmd, const char *path, kvtc_basis **out);

/* "auto" | "none" | "hadamard" | "k" | "v" -> LCPP_ROT_*; -1 if none of them. */
int lcpp_cli_parse_rotation(const char *v, uint32_t *rot);

/* Parse argv[*i] if it is an encoder option (--ratio, --sink, --window,
 * --chunk, --threads, --level, --codec, --kv-rotation): 0 when parsed,
 * the usage exit status (2) on a bad value, -1 when it is not one. */
int lcpp_cli_encode_option(const char *cmd, int argc, char **argv, int *i, kvtc_encode_options *o, uint32_t *rot);

/* OpenBLAS on one thread (the codec runs its own). */
void lcpp_cli_threads_setup(void);

/* Decoder options; loads the model into *mt when the basis recomputes
 * layers (prints the error and returns nonzero when that fails or
 * model_path is NULL). Free *mt with model_text_free. */
kvtc_result lcpp_cli_decode_options(const char *cmd, const kvtc_basis *b, const char *model_path, uint32_t n_threads,
                                     kvtc_decode_options *o, model_text *mt);

#endif
