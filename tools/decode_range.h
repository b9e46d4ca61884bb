/* decode_range.h - `kvtc decompress --tokens N --layers A:B`: the range
 * options and a decode that writes layers [A, B) of the first N tokens into
 * a cache of B - A layers, through a layout (no copy). */
#ifndef KVTC_TOOLS_DECODE_RANGE_H
#define KVTC_TOOLS_DECODE_RANGE_H

#include <stddef.h>

#include "kvtc.h"

/* Layer pointers are kept on the stack. */
#define KVTC_MAX_LAYERS_CLI 1024u

/* Parse --tokens (NULL: all) and --layers "A:B" (NULL: all) against the
 * stream. Returns 0, or -1 with a message in err. */
int decode_range_parse(const char *tokens, const char *layers, const kvtc_stream_info *info,
                       kvtc_decode_range *rg, char *err, size_t errlen);

/* Geometry and token count of the output cache of rg. */
void decode_range_output(const kvtc_stream_info *info, const kvtc_decode_range *rg, kvtc_geometry *g,
                         uint64_t *n_tokens);

/* Decode rg into out (shaped by decode_range_output). */
kvtc_result decode_range_run(kvtc_decoder *d, const void *buf, size_t size, const kvtc_stream_info *info,
                             const kvtc_decode_range *rg, kvtc_cache *out);

#endif
