/* calibration_text.h - the text `kvtc calibrate --model M` reads when no
 * --text is given: the project's mixed-domain calibration text. */
#ifndef KVTC_TOOLS_CALIBRATION_TEXT_H
#define KVTC_TOOLS_CALIBRATION_TEXT_H

#include <stddef.h>

#define CALIBRATION_TEXT_NAME "calibration-mixed.txt"

/* Finds the shipped calibration text: first where `cmake --install` puts it
 * relative to the running executable (BINDIR/../share/kvtc/), then in the
 * source tree the tool was built from (data/). Writes its path to out (cap
 * bytes) and returns 0; returns -1 with the places looked at in out when
 * neither is readable. */
int calibration_text_default(char *out, size_t cap);

#endif
