/* cli.c - see cli.h. */
#include "cli.h"

#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_fail(const char *what, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvtc: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvtc: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see kvtc %s --help)\n", cmd);
    return 2;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    return kvi_parse_u64(s, out);
}

int cli_parse_u32(const char *s, uint32_t *out) {
    uint64_t v;
    if (cli_parse_u64(s, &v) || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

const char *cli_dtype_name(kvtc_dtype t) {
    return t == KVTC_DTYPE_F32 ? "f32" : t == KVTC_DTYPE_F16 ? "f16" : "bf16";
}

int cli_parse_double(const char *s, double *out) {
    return kvi_parse_decimal(s, out);
}

int cli_check_ctx(const char *cmd, uint32_t ctx, uint32_t n_ctx_train, int force) {
    if (!n_ctx_train || ctx <= n_ctx_train) return 0;
    if (force) {
        fprintf(stderr, "kvtc: %s: warning: --ctx %u exceeds the model's trained context %u (--force)\n", cmd, ctx,
                n_ctx_train);
        return 0;
    }
    cli_fail(cmd, "--ctx %u exceeds the model's trained context of %u tokens; pass --force to run anyway", ctx,
             n_ctx_train);
    return 1;
}

int cli_progress_enabled(void) { return isatty(2); }
