/* kv_geometry.h - the KV cache geometry of any GGUF model from its metadata
 * only (no weights are read or needed): layers, KV heads, head_dim, RoPE
 * type, theta and dimension, for the architectures llama.cpp runs with
 * plain K/V and "norm" or "neox" RoPE. Used to read llama.cpp caches of
 * models our engine cannot run. */
#ifndef KVTC_ENGINE_KV_GEOMETRY_H
#define KVTC_ENGINE_KV_GEOMETRY_H

#include <stddef.h>

#include "gguf.h"
#include "kvtc.h"

/* RoPE type llama.cpp uses for an architecture (general.architecture):
 * KVTC_ROPE_NORM, KVTC_ROPE_NEOX, or -1 when the architecture is not in
 * the table (M-RoPE, MLA and other layouts kvtc does not code). */
int eng_gguf_arch_rope_type(const char *arch);

/* Fill *g from a parsed GGUF. Returns 0, or -1 with a message in err. */
int eng_gguf_kv_geometry(const eng_gguf_file *gf, kvtc_geometry *g, char *err, size_t errlen);

/* The same from a file path (reads the file, keeps nothing). */
int eng_gguf_kv_geometry_file(const char *path, kvtc_geometry *g, char *err, size_t errlen);

#endif
