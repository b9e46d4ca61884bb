/* cmd_llama_common.h - helpers of cmd_llama.c that cmd_slots.c shares. */
#ifndef KVTC_TOOLS_CMD_LLAMA_COMMON_H
#define KVTC_TOOLS_CMD_LLAMA_COMMON_H

#include <stdint.h>

#include "kvtc.h"
#include "model_kv.h"

/* "auto" | "none" | "hadamard" | "k" | "v" -> LCPP_ROT_*; -1 if none of them. */
int lcpp_cli_parse_rotation(const char *v, uint32_t *rot);

/* getopt_long ids of the encoder options that compress, slots compress and
 * slots check share; a command's own ids start at LCPP_OPT_FIRST_FREE. */
enum {
    LCPP_OPT_RATIO = 256, LCPP_OPT_SINK, LCPP_OPT_WINDOW, LCPP_OPT_CHUNK, LCPP_OPT_THREADS, LCPP_OPT_LEVEL,
    LCPP_OPT_CODEC, LCPP_OPT_KV_ROTATION, LCPP_OPT_FIRST_FREE
};

/* The struct option entries of those ids, for a command's longopts array. */
#define LCPP_ENCODE_LONGOPTS                                                                                    \
    {"ratio", required_argument, NULL, LCPP_OPT_RATIO}, {"sink", required_argument, NULL, LCPP_OPT_SINK},       \
    {"window", required_argument, NULL, LCPP_OPT_WINDOW}, {"chunk", required_argument, NULL, LCPP_OPT_CHUNK},   \
    {"threads", required_argument, NULL, LCPP_OPT_THREADS}, {"level", required_argument, NULL, LCPP_OPT_LEVEL}, \
    {"codec", required_argument, NULL, LCPP_OPT_CODEC}, {"kv-rotation", required_argument, NULL, LCPP_OPT_KV_ROTATION}

/* Apply getopt_long result c with argument arg if c is one of the encoder
 * options above: 0 when applied, the usage exit status (2) on a bad value,
 * -1 when c is not one of them. */
int lcpp_cli_encode_option(const char *cmd, int c, const char *arg, kvtc_encode_options *o, uint32_t *rot);

/* Decoder options; loads the model into *mt when the basis recomputes
 * layers (prints the error and returns nonzero when that fails or
 * model_path is NULL). Free *mt with model_text_free. */
kvtc_result lcpp_cli_decode_options(const char *cmd, const kvtc_basis *b, const char *model_path, uint32_t n_threads,
                                     kvtc_decode_options *o, model_text *mt);

#endif
