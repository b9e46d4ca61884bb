/* numfmt.h - numbers in files, independent of the process locale.
 *
 * printf("%g") and strtod follow LC_NUMERIC: a host process that called
 * setlocale(LC_ALL, "") in a locale with a decimal comma would write "12,5"
 * into a basis and fail to read "12.5" back. Every number the library writes
 * into or reads from a file (basis and cache metadata, JSON) goes through
 * these, which always use the "C" locale's decimal point. */
#ifndef KVTC_UTIL_NUMFMT_H
#define KVTC_UTIL_NUMFMT_H

#include <stddef.h>

/* snprintf(buf, cap, "%.*g", precision, v) in the "C" locale: returns the
 * length of the full text (as snprintf), or -1 if the C locale object
 * could not be created (then buf holds ""). */
int kvi_format_g(char *buf, size_t cap, int precision, double v);

/* strtod(s, end) in the "C" locale. If the C locale object could not be
 * created, nothing is parsed: returns 0 with *end = s. */
double kvi_strtod(const char *s, char **end);

#endif
