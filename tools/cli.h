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

/* ---- files (cli_files.c) ---- */

/* Read a whole input (malloc'd): a regular file, "-" for standard input, or
 * a FIFO / character device read to EOF. A directory is refused by name.
 * KVTC_ERR_IO with errno-based text in err. */
kvtc_result cli_read_file(const char *path, void **buf, size_t *size, char *err, size_t errlen);

/* Read a whole regular file (malloc'd), never waiting: a symlink, FIFO,
 * device or directory at path is refused with KVTC_ERR_IO ("... is not a
 * regular file") instead of followed or read (a FIFO would block until a
 * writer comes). For files found in a directory (kvtc slots), where only
 * what llama-server saved there belongs. */
kvtc_result cli_read_regular(const char *path, void **buf, size_t *size, char *err, size_t errlen);

/* Copy up to n first bytes of an input into head; returns how many (0 when
 * it cannot be read: the later cli_read_file reports why). A regular file
 * is opened and read again later; standard input ("-"), a FIFO or a
 * process substitution can be read only once, so it is read whole here and
 * the next cli_read_file of the same name gets those bytes. The tool looks
 * at an input's magic this way to choose a command before the command
 * reads it. */
size_t cli_peek_file(const char *path, void *head, size_t n);

/* Write an output the way cp and zstd do:
 * - "-": standard output;
 * - an existing character device, FIFO or socket: written directly, never
 *   unlinked or replaced (so -o /dev/null is safe even as root);
 * - a directory, or a name ending in '/': refused ("is a directory");
 * - a symlink: written through (its target is replaced, the link stays); a
 *   dangling symlink is refused ("is a symbolic link to a missing file");
 * - a regular file or a new name: atomically: a temporary
 *   ".kvtc-tmp-<16 hex>-<pid>-XXXXXX" in the same directory, fsync, rename,
 *   fsync of the directory. A new file gets mode 0666 minus the umask; a
 *   replaced file keeps its mode. SIGINT/SIGTERM/SIGHUP during the write
 *   remove the temporary; temporaries that a SIGKILLed run left for the
 *   same output name (same hash, dead pid, ours) are removed by the next
 *   write of that output.
 * On any failure `path` is untouched and no temporary remains. */
kvtc_result cli_write_file(const char *path, const void *buf, size_t size, char *err, size_t errlen);

/* Check, before a long computation, that cli_write_file(path) can succeed
 * as far as the file system tells now: not a directory or a dangling
 * symlink, and for a regular file or a new name, an existing directory we
 * may create files in. KVTC_ERR_IO with the reason in err. A command that
 * works for minutes (calibrate, eval --plot) calls it first so that a typo
 * in -o costs nothing; cli_write_file still reports what changes meanwhile. */
kvtc_result cli_check_output(const char *path, char *err, size_t errlen);

/* 1 when a and b name the same existing file (after links), else 0: an
 * output must never replace one of the command's own inputs ("-" is never
 * the same). */
int cli_same_file(const char *a, const char *b);

/* Create path as cli_write_file creates a new regular file (temporary,
 * fsync), but never replace anything: when path exists at the last moment
 * (a symlink included), nothing is written, *existed is 1 and the result
 * KVTC_ERR_IO. For `kvtc slots expand`, which must not overwrite a save
 * llama-server makes while it decodes. */
kvtc_result cli_write_new_file(const char *path, const void *buf, size_t size, int *existed, char *err,
                               size_t errlen);

/* Remove every temporary of cli_write_file in dir whose process is gone
 * (ours, regular files), whatever output it was for: `kvtc slots compress`
 * cleans up after a killed `slots expand` of a slot that is never expanded
 * again. */
void cli_remove_stale_tmps(const char *dir);

/* Parse a temporary name of cli_write_file: 0 and its output-name hash and
 * pid, or -1 when name is not one. */
int cli_tmp_name_owner(const char *name, uint64_t *hash, long *pid);

/* Parse numbers strictly (whole string); return 0 on success. */
int cli_parse_u32(const char *s, uint32_t *out);
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_double(const char *s, double *out);

/* "f32", "f16" or "bf16". */
const char *cli_dtype_name(kvtc_dtype t);

/* A window of ctx tokens on a model trained for n_ctx_train: beyond it the
 * model's output means little and a run can take minutes (issue 9 item 11),
 * so refuse unless `force` ("... exceeds the model's trained context ...;
 * pass --force"). Returns 0 when the run may go on, else 1 (message
 * printed). */
int cli_check_ctx(const char *cmd, uint32_t ctx, uint32_t n_ctx_train, int force);

/* 1 if stderr is a terminal (progress output is shown only then). */
int cli_progress_enabled(void);

/* cli_codec.c: OpenBLAS on one thread (the codec runs its own), and a
 * basis file loaded (prints the error and returns 1 on failure, naming a
 * wrong kind of file as what it is). */
void cli_codec_threads_setup(void);
int cli_load_basis(const char *cmd, const char *path, kvtc_basis **out);
/* kvtc_encoder_alloc; on failure prints the reason (for KVTC_ERR_NO_PLAN
 * the basis' smallest calibrated ratio) and returns 1. */
int cli_encoder_alloc(const char *cmd, const kvtc_basis *b, const kvtc_encode_options *o, kvtc_encoder **out);
/* kvtc_stream_get_info of a whole file: also fails (message printed,
 * returns 1) when the file holds bytes after the stream's end. */
int cli_stream_info(const char *cmd, const char *path, const void *buf, size_t size, kvtc_stream_info *info);

#endif
