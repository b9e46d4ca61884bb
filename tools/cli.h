/* cli.h - helpers shared by the kvtc subcommands: whole-file reads, crash-
 * safe writes (temporary file, fsync, rename), option parsing and errors. */
#ifndef KVTC_TOOLS_CLI_H
#define KVTC_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"

/* Every subcommand: int cmd_x(int argc, char **argv), argv[0] = "x". */
int cmd_calibrate(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_decompress(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_capture(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_append(int argc, char **argv);

/* Print "kvtc: <what>: <msg>" to stderr; returns 1 (the exit status). */
int cli_fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A usage error: print "kvtc: <cmd>: <msg> (see kvtc <cmd> --help)"; returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Read a whole file (malloc'd). KVTC_ERR_IO with errno-based text in err. */
kvtc_result cli_read_file(const char *path, void **buf, size_t *size, char *err, size_t errlen);

/* Write atomically: path.tmp.XXXXXX in the same directory, fsync, rename.
 * On any failure the temporary is removed and `path` is untouched. */
kvtc_result cli_write_file(const char *path, const void *buf, size_t size, char *err, size_t errlen);

/* Parse numbers strictly (whole string); return 0 on success. */
int cli_parse_u32(const char *s, uint32_t *out);
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_double(const char *s, double *out);

/* 1 if stderr is a terminal (progress output is shown only then). */
int cli_progress_enabled(void);

/* The option value after argv[*i] (advancing *i), or NULL when it is the
 * last argument (the caller reports the usage error). */
const char *cli_value(int argc, char **argv, int *i);

#endif
