/* cmd_llama.h - kvtc on llama.cpp state files (slot saves, sequence and
 * session files): compress, decompress, info and calibrate dispatch here
 * when their input is such a file or a compressed one (lib/io/lcpp_wrap.h),
 * and `kvtc slots` manages a llama-server --slot-save-path directory. */
#ifndef KVTC_TOOLS_CMD_LLAMA_H
#define KVTC_TOOLS_CMD_LLAMA_H

#include <stddef.h>

/* What an argument list holds: the generic commands call these first and
 * hand over to the lcpp_* commands below when they return 1. An argument
 * counts when it is not an option nor the output (after -o) and names a
 * file that starts with a llama.cpp state magic (ggsq, ggsn) or the
 * wrapper magic. */
int lcpp_args_have_state_file(int argc, char **argv);
int lcpp_args_have_wrap_file(int argc, char **argv);

int lcpp_cmd_compress(int argc, char **argv);
int lcpp_cmd_decompress(int argc, char **argv);
int lcpp_cmd_calibrate(int argc, char **argv);

/* kvtc info on bytes already read: returns -1 when buf is neither a
 * llama.cpp state file nor a wrapper (the caller tries other kinds), else
 * the exit status. */
int lcpp_cmd_info(const char *path, const void *buf, size_t size);

int cmd_slots(int argc, char **argv);
/* kvtc slots check (cmd_slot_check.c); argv[1] = "check". */
int cmd_slot_check(int argc, char **argv);

#endif
