/* calibration_text.c - where the default calibration text is found (see the
 * header). An installed tool must not depend on the source tree it was built
 * from, and a tool run from its build tree has no install prefix: hence the
 * two places, the installed one first. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "calibration_text.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* CMake sets both: the install's data directory relative to its bin
 * directory, and the source tree's data/ */
#ifndef KVTC_DATA_FROM_BIN
#define KVTC_DATA_FROM_BIN "../share/kvtc"
#endif
#ifndef KVTC_SOURCE_DATA_DIR
#define KVTC_SOURCE_DATA_DIR "data"
#endif

/* out = the canonical path of a readable file, or -1 */
static int readable(const char *path, char *out, size_t cap) {
    char real[PATH_MAX];
    if (access(path, R_OK) != 0 || !realpath(path, real) || strlen(real) >= cap) return -1;
    memcpy(out, real, strlen(real) + 1);
    return 0;
}

int calibration_text_default(char *out, size_t cap) {
    char exe[PATH_MAX], installed[PATH_MAX + 64] = "(the executable's path is unknown)";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = 0, strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = 0;
        snprintf(installed, sizeof installed, "%s/%s/%s", exe, KVTC_DATA_FROM_BIN, CALIBRATION_TEXT_NAME);
        if (!readable(installed, out, cap)) return 0;
    }
    const char *source = KVTC_SOURCE_DATA_DIR "/" CALIBRATION_TEXT_NAME;
    if (!readable(source, out, cap)) return 0;
    snprintf(out, cap, "%s nor %s", installed, source);
    return -1;
}
