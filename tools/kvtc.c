/* kvtc.c - the kvtc command-line tool: dispatch to subcommands. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_store.h"
#include "cmd_llama.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"calibrate", cmd_calibrate, "compute a basis (mean, PCA, bit plans) from caches or a model"},
    {"compress", cmd_compress, "compress a KV cache (safetensors) into a .kvtc stream"},
    {"decompress", cmd_decompress, "decompress a .kvtc stream into a KV cache (safetensors)"},
    {"append", cmd_append, "extend a .kvtc stream with the tokens that follow it"},
    {"info", cmd_info, "describe a .kvtc stream, a basis or a cache file"},
    {"capture", cmd_capture, "run a GGUF model over text and write its KV cache"},
    {"slots", cmd_slots, "keep a llama-server --slot-save-path directory compressed"},
    {"eval", cmd_eval, "measure perplexity / KL / top-1 of KVTC and baselines on a model"},
    {"store", cmd_store, "a prefix-addressed store of compressed caches (file: or redis://)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: kvtc <command> [options]   (kvtc <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nkvtc %s, stream format %d.%d\n", KVTC_VERSION_STRING, KVTC_FORMAT_VERSION_MAJOR,
            KVTC_FORMAT_VERSION_MINOR);
}

/* Output on standard output (info, eval --json, --help, ...) goes through
 * stdio, which reports a failed write (a full disk, /dev/full) only through
 * fflush/ferror: check them before exiting, as coreutils' close_stdout does,
 * so that a result that was not written is not exit status 0. */
static int finish_stdout(const char *cmd, int rc) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    fprintf(stderr, "kvtc: %s: cannot write standard output: %s\n", cmd, errno ? strerror(errno) : "write error");
    return rc ? rc : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "kvtc: no command given (see kvtc --help)\n");
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return finish_stdout("help", 0);
    }
    if (!strcmp(argv[1], "--version")) {
        printf("kvtc %s\n", KVTC_VERSION_STRING);
        return finish_stdout("version", 0);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return finish_stdout(argv[1], commands[i].fn(argc - 1, argv + 1));
    fprintf(stderr, "kvtc: unknown command '%s' (see kvtc --help)\n", argv[1]);
    return 2;
}
