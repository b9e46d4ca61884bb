/* numfmt.c - locale-independent number formatting and parsing (numfmt.h).
 * uselocale() switches the calling thread only, and only for the duration
 * of one call, so other threads and the host's own locale are untouched. */
#include "util/numfmt.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

int kvi_format_g(char *buf, size_t cap, int precision, double v) {
    locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c == (locale_t)0) {
        if (cap) buf[0] = '\0';
        return -1;
    }
    locale_t prev = uselocale(c);
    int n = snprintf(buf, cap, "%.*g", precision, v);
    uselocale(prev);
    freelocale(c);
    return n;
}

double kvi_strtod(const char *s, char **end) {
    locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c == (locale_t)0) {
        if (end) *end = (char *)s;
        return 0.0;
    }
    locale_t prev = uselocale(c);
    double v = strtod(s, end);
    uselocale(prev);
    freelocale(c);
    return v;
}
