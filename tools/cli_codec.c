/* cli_codec.c - what every command that runs the codec does first: load a
 * basis file and give the cores to the codec's own threads. */
#include <cblas.h>
#include <stdlib.h>

#include "cli.h"
#include "file_kind.h"

/* The codec's worker threads (--threads) parallelize by chunk and token;
 * OpenBLAS's own threads would spin between the codec's small GEMMs and
 * take the cores from them (measured: 2 worker threads run 1.1-1.7x faster
 * with OpenBLAS on one thread, bench/RESULTS.md). The CLI owns its process,
 * so it may make that process-wide choice; the library never does. */
void cli_codec_threads_setup(void) { openblas_set_num_threads(1); }

int cli_load_basis(const char *cmd, const char *path, kvtc_basis **out) {
    void *buf;
    size_t size;
    char err[512];
    if (cli_read_file(path, &buf, &size, err, sizeof err)) return cli_fail(cmd, "%s", err);
    /* a wrong file is named as what it is, not reported as "bad magic" */
    if (file_kind_expect(cmd, path, buf, size, FILE_KIND_BASIS)) {
        free(buf);
        return 1;
    }
    kvtc_result r = kvtc_basis_load(buf, size, out);
    free(buf);
    if (r) return cli_fail(cmd, "basis %s: %s", path, kvtc_result_string(r));
    return 0;
}

int cli_encoder_alloc(const char *cmd, const kvtc_basis *b, const kvtc_encode_options *o, kvtc_encoder **out) {
    kvtc_result r = kvtc_encoder_alloc(b, o, out);
    if (!r) return 0;
    if (r != KVTC_ERR_NO_PLAN) return cli_fail(cmd, "%s", kvtc_result_string(r));
    /* "no plan for the requested ratio" alone does not say which ratios work */
    double lo = 0;
    for (uint32_t i = 0; i < kvtc_basis_plan_count(b); i++) {
        kvtc_plan_info pi = {.struct_size = sizeof pi};
        if (kvtc_basis_plan_info(b, i, &pi) == KVTC_OK && (lo == 0 || pi.target_ratio < lo)) lo = pi.target_ratio;
    }
    if (lo == 0) return cli_fail(cmd, "%s (the basis has no plans)", kvtc_result_string(r));
    return cli_fail(cmd, "--ratio %g is below the basis' smallest calibrated ratio %g (it lacks the components a "
                    "plan would need: calibrate with --ratio %g)", o->ratio, lo, o->ratio);
}

int cli_stream_info(const char *cmd, const char *path, const void *buf, size_t size, kvtc_stream_info *info) {
    info->struct_size = sizeof *info;
    kvtc_result r = kvtc_stream_get_info(buf, size, info);
    if (r) return cli_fail(cmd, "%s: %s", path, kvtc_result_string(r));
    /* the library reads a stream at the start of a larger buffer; a file
     * with bytes after it (two streams concatenated, say) would otherwise
     * decode as its first stream without a word */
    if (info->stream_bytes != size)
        return cli_fail(cmd, "%s: %llu bytes after the end of the stream (%llu bytes): not one kvtc stream", path,
                        (unsigned long long)(size - info->stream_bytes), (unsigned long long)info->stream_bytes);
    return 0;
}
