/* kv_geometry.c - see kv_geometry.h. */
#include "kv_geometry.h"

#include <stdio.h>
#include <string.h>

/* llama.cpp's eng_model_rope_type(), for the architectures whose cache is
 * plain per-head K/V with one RoPE over the first rope_dim dimensions. */
static const char *const norm_archs[] = {
    "llama", "llama4", "mistral", "mistral3", "baichuan", "starcoder", "internlm2", "minicpm", "xverse",
    "command-r", "cohere2", "olmo", "arctic", "deepseek", "granite", "granitemoe", "chameleon",
    "bailingmoe", "deci", "refact", "orion", "solar", "exaone", "exaone4", "smollm3", "ernie4_5",
};
static const char *const neox_archs[] = {
    "qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "gemma", "gemma2", "gemma3", "phi2", "phi3",
    "phimoe", "falcon", "stablelm", "gptneox", "starcoder2", "olmo2", "olmoe", "openelm", "codeshell",
    "nemotron", "plamo", "dbrx", "grok", "bitnet", "minicpm3", "gpt-oss", "hunyuan-moe", "dots1",
};

int eng_gguf_arch_rope_type(const char *arch) {
    for (size_t i = 0; i < sizeof norm_archs / sizeof norm_archs[0]; i++)
        if (!strcmp(arch, norm_archs[i])) return KVTC_ROPE_NORM;
    for (size_t i = 0; i < sizeof neox_archs / sizeof neox_archs[0]; i++)
        if (!strcmp(arch, neox_archs[i])) return KVTC_ROPE_NEOX;
    return -1;
}

/* "<arch>.<key>" as a u32; dflt when absent (dflt < 0: required). */
static int arch_u32(const eng_gguf_file *gf, const char *arch, const char *key, long long dflt, uint32_t *out,
                    char *err, size_t errlen) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int r = eng_gguf_get_u32(gf, full, out);
    if (r == 1) return 0;
    if (r == 0 && dflt >= 0) { *out = (uint32_t)dflt; return 0; }
    snprintf(err, errlen, "%s: %s", full, r == 0 ? "missing" : "not a u32 (per-layer values are not supported)");
    return -1;
}

int eng_gguf_kv_geometry(const eng_gguf_file *gf, kvtc_geometry *g, char *err, size_t errlen) {
    const char *s;
    size_t len;
    char arch[64];
    memset(g, 0, sizeof *g);
    if (eng_gguf_get_str(gf, "general.architecture", &s, &len) != 1 || !len || len >= sizeof arch) {
        snprintf(err, errlen, "general.architecture missing");
        return -1;
    }
    memcpy(arch, s, len);
    arch[len] = '\0';
    int rt = eng_gguf_arch_rope_type(arch);
    if (rt < 0) {
        snprintf(err, errlen, "architecture '%s' is not one kvtc knows the RoPE of (use --rope-type/--rope-theta)", arch);
        return -1;
    }
    uint32_t n_head, n_embd, key_len;
    if (arch_u32(gf, arch, "block_count", -1, &g->n_layers, err, errlen) ||
        arch_u32(gf, arch, "attention.head_count", -1, &n_head, err, errlen) ||
        arch_u32(gf, arch, "attention.head_count_kv", n_head, &g->n_kv_heads, err, errlen) ||
        arch_u32(gf, arch, "embedding_length", -1, &n_embd, err, errlen))
        return -1;
    if (!n_head || !g->n_kv_heads || n_embd % n_head) {
        snprintf(err, errlen, "head counts %u/%u do not divide embedding_length %u", n_head, g->n_kv_heads, n_embd);
        return -1;
    }
    if (arch_u32(gf, arch, "attention.key_length", n_embd / n_head, &key_len, err, errlen)) return -1;
    g->head_dim = key_len;
    if (arch_u32(gf, arch, "rope.dimension_count", g->head_dim, &g->rope_dim, err, errlen)) return -1;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    g->rope_theta = 10000.0f;
    if (eng_gguf_get_f32(gf, key, &g->rope_theta) < 0 || !(g->rope_theta > 0.0f)) {
        snprintf(err, errlen, "%s out of range", key);
        return -1;
    }
    g->rope_type = (kvtc_rope_type)rt;
    if (g->rope_dim > g->head_dim || g->rope_dim % 2) {
        snprintf(err, errlen, "rope.dimension_count %u must be even and <= head_dim %u", g->rope_dim, g->head_dim);
        return -1;
    }
    return 0;
}

int eng_gguf_kv_geometry_file(const char *path, kvtc_geometry *g, char *err, size_t errlen) {
    eng_gguf_file *gf = NULL;
    eng_gguf_status st = eng_gguf_open(path, &gf, err, errlen);
    if (st != ENG_GGUF_OK) return -1;
    int r = eng_gguf_kv_geometry(gf, g, err, errlen);
    eng_gguf_close(gf);
    return r;
}
