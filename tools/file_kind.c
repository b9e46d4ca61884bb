/* file_kind.c - see file_kind.h. */
#include "file_kind.h"

#include <stdint.h>
#include <string.h>

#include "cli.h"
#include "internal.h"

static int contains(const uint8_t *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == (uint8_t)needle[0] && !memcmp(hay + i, needle, m)) return 1;
    return 0;
}

static int looks_like_text(const uint8_t *b, size_t n) {
    size_t look = n < 4096 ? n : 4096;
    for (size_t i = 0; i < look; i++)
        if (b[i] < 0x20 && b[i] != '\n' && b[i] != '\r' && b[i] != '\t') return 0;
    return 1;
}

file_kind file_kind_of(const void *buf, size_t size) {
    const uint8_t *b = buf;
    static const char stream_magic[8] = "\x89KVTC\r\n\x1a";
    /* a stream cut inside its magic is still a (truncated) stream */
    if (size && !memcmp(b, stream_magic, size < 8 ? size : 8)) return FILE_KIND_STREAM;
    if (size >= 4 && !memcmp(b, "GGUF", 4)) return FILE_KIND_GGUF;
    /* before text: a sequence file starts "qsgg" */
    if (lcpp_state_is_state_file(b, size)) return FILE_KIND_LCPP_STATE;
    if (lcpp_wrap_is_wrap(b, size)) return FILE_KIND_LCPP_WRAP;
    if (size == 0) return FILE_KIND_EMPTY;
    if (size >= 10 && b[8] == '{') {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
        if (hl >= 2 && hl <= size - 8)
            return contains(b + 8, (size_t)hl, "\"kvtc-basis\"") ? FILE_KIND_BASIS : FILE_KIND_CACHE;
        /* a header longer than the file: a truncated safetensors file. A
         * basis if what is there says so; else unknown (not "a KV cache":
         * the cut may have taken the basis' metadata), and the parser
         * reports the truncation */
        if (hl >= 2 && hl <= ST_MAX_HEADER && contains(b + 8, size - 8, "\"kvtc-basis\""))
            return FILE_KIND_BASIS;
    }
    if (looks_like_text(b, size)) return FILE_KIND_TEXT;
    return FILE_KIND_UNKNOWN;
}

const char *file_kind_name(file_kind k) {
    switch (k) {
    case FILE_KIND_STREAM: return "a kvtc stream";
    case FILE_KIND_BASIS: return "a kvtc basis";
    case FILE_KIND_CACHE: return "a KV cache (safetensors)";
    case FILE_KIND_GGUF: return "a GGUF model";
    case FILE_KIND_LCPP_STATE: return "a llama.cpp state file";
    case FILE_KIND_LCPP_WRAP: return "a compressed llama.cpp state file";
    case FILE_KIND_TEXT: return "a text file";
    case FILE_KIND_EMPTY: return "an empty file";
    case FILE_KIND_UNKNOWN: break;
    }
    return "not a kvtc file";
}

int file_kind_expect(const char *cmd, const char *path, const void *buf, size_t size, file_kind want) {
    file_kind k = file_kind_of(buf, size);
    if (k == want || k == FILE_KIND_UNKNOWN) return 0;
    cli_fail(cmd, "%s is %s, not %s", path, file_kind_name(k), file_kind_name(want));
    return 1;
}
