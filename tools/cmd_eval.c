/* cmd_eval.c - placeholder replaced by the evaluation harness. */
#include "cli.h"
int cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("eval", "not built yet");
}
