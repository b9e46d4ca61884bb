/* number.c - see number.h. The grammar is checked by hand; the conversion
 * (correct rounding is subtle) is strtod's, run under a "C" LC_NUMERIC
 * locale object installed for the calling thread only (uselocale), so
 * other threads and the caller's locale are untouched. */
#include "util/number.h"

#include <locale.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t digits(const char *s, size_t i, size_t len) {
    size_t j = i;
    while (j < len && s[j] >= '0' && s[j] <= '9') j++;
    return j - i;
}

static int decimal_grammar(const char *s, size_t len) {
    size_t i = 0, d;
    if (i < len && s[i] == '-') i++;
    if (!(d = digits(s, i, len))) return 0;
    i += d;
    if (i < len && s[i] == '.') {
        i++;
        if (!(d = digits(s, i, len))) return 0;
        i += d;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        if (!(d = digits(s, i, len))) return 0;
        i += d;
    }
    return i == len;
}

int kvi_parse_decimal_n(const char *s, size_t len, double *out) {
    if (!s || !decimal_grammar(s, len)) return -1;
    char small[64];
    char *buf = len < sizeof small ? small : malloc(len + 1);
    if (!buf) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = c ? uselocale(c) : (locale_t)0;
    char *end;
    double v = strtod(buf, &end);
    int ok = end == buf + len;
    if (c) {
        uselocale(old);
        freelocale(c);
    } else {
        ok = 0; /* cannot guarantee the decimal point: refuse rather than misread */
    }
    if (buf != small) free(buf);
    if (!ok || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int kvi_parse_decimal(const char *s, double *out) { return s ? kvi_parse_decimal_n(s, strlen(s), out) : -1; }

int kvi_parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s) return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int kvi_format_g(char *buf, size_t cap, int precision, double v) {
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
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
