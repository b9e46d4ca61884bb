/* number.h - numbers in text, independent of the process locale: strict
 * parsing of every text field kvtc reads (file metadata, JSON,
 * command-line values) and formatting of what it writes. Issue 9
 * found " 10000" and "0x10" accepted as rope_theta, and strtod follows the
 * process's LC_NUMERIC (a program that called setlocale(LC_ALL, "") in a
 * German locale would read "10000.5" as 10000). */
#ifndef KVTC_UTIL_NUMBER_H
#define KVTC_UTIL_NUMBER_H

#include <stddef.h>
#include <stdint.h>

/* s[0..len) is exactly -?DIGITS(.DIGITS)?([eE][+-]?DIGITS)? (no spaces,
 * sign '+', hex, inf or nan); converted as in the "C" locale whatever the
 * caller's locale. Returns 0 and sets *out for a finite value, -1
 * otherwise. */
int kvi_parse_decimal_n(const char *s, size_t len, double *out);

/* The same for a NUL-terminated string. */
int kvi_parse_decimal(const char *s, double *out);

/* s is exactly DIGITS (no sign, no spaces) and its value fits in 64 bits:
 * 0 and *out, else -1. */
int kvi_parse_u64(const char *s, uint64_t *out);

/* snprintf(buf, cap, "%.*g", precision, v) in the "C" locale (a host that
 * called setlocale(LC_ALL, "") in a decimal-comma locale would otherwise
 * write "12,5" into a basis): returns the length of the full text (as
 * snprintf), or -1 if the C locale object could not be created (then buf
 * holds ""). */
int kvi_format_g(char *buf, size_t cap, int precision, double v);

#endif
