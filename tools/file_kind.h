/* file_kind.h - tell the kvtc tool's file kinds apart by their first bytes,
 * so that a wrong file gets "X is a kvtc stream, not a KV cache" instead of
 * whatever error the expected parser happens to hit first (issue 9). */
#ifndef KVTC_TOOLS_FILE_KIND_H
#define KVTC_TOOLS_FILE_KIND_H

#include <stddef.h>

typedef enum file_kind {
    FILE_KIND_UNKNOWN = 0,
    FILE_KIND_STREAM,      /* kvtc stream: "\x89KVTC\r\n\x1a" */
    FILE_KIND_BASIS,       /* safetensors whose metadata says "kvtc-basis" */
    FILE_KIND_CACHE,       /* any other safetensors file (a KV cache, we hope) */
    FILE_KIND_GGUF,        /* "GGUF" */
    FILE_KIND_LCPP_STATE,  /* llama.cpp state file: "ggsq" / "ggsn" magic */
    FILE_KIND_LCPP_WRAP,   /* compressed llama.cpp state file (lcpp_wrap) */
    FILE_KIND_TEXT,        /* printable UTF-8/ASCII text */
    FILE_KIND_EMPTY        /* 0 bytes (/dev/null, a file truncated to nothing) */
} file_kind;

file_kind file_kind_of(const void *buf, size_t size);

/* "a kvtc stream", "a kvtc basis", "a KV cache (safetensors)", "a GGUF
 * model", "a llama.cpp state file", "a compressed llama.cpp state file",
 * "a text file", "an empty file", "not a kvtc file". */
const char *file_kind_name(file_kind k);

/* If buf is not of kind `want`, print "kvtc: <cmd>: <path> is <kind>, not
 * <want>" and return 1; else 0. Unknown content is left to the parser. */
int file_kind_expect(const char *cmd, const char *path, const void *buf, size_t size, file_kind want);

#endif
