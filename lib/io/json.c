/*
 * json.c - a strict RFC 8259 JSON parser into a read-only tree.
 *
 * Grammar: exactly RFC 8259. Rejected: trailing commas, comments, leading
 * zeros, '+' signs, NaN/Infinity, a BOM, raw control characters (< 0x20) in
 * strings, invalid escapes, unpaired surrogates, \u0000, invalid UTF-8
 * (overlong forms, surrogates, > U+10FFFF), anything after the value other
 * than whitespace. Numbers whose magnitude overflows a double are rejected
 * (an implementation limit permitted by RFC 8259 section 6); underflow
 * rounds to zero or a subnormal. Duplicate object keys are kept (json_get
 * returns the first).
 *
 * Two passes: the first validates and counts values, object members and
 * each container's children; the second fills one exact-size node pool (the
 * children of a container are contiguous in it) and one key pool, and
 * cannot fail. Every decoded string is shorter than its quoted literal, so
 * all strings live in a single arena of len + 1 bytes. Total memory is
 * O(len): four allocations, at most ~37 bytes per input byte in the worst
 * case "[0,0,0,...]" (sizeof(json_value) per 2 bytes), typically a few
 * bytes per byte. The recursion depth is bounded by JSON_MAX_DEPTH.
 *
 * Numbers are converted by kvi_parse_decimal_n (util/number.h): strtod
 * under a "C" locale for this thread, whatever the process's locale.
 * Integral literals are additionally accumulated exactly into int64.
 */
#include "io/json.h"

#include "util/number.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* The root is the first member so that json_free can recover the pools. */
typedef struct json_doc {
    json_value root;
    json_value *nodes; /* all non-root values */
    char **keys;       /* all object keys */
    char *arena;       /* all strings */
} json_doc;

typedef struct parser {
    const unsigned char *p;
    const unsigned char *end;
    const unsigned char *start;
    int build;         /* 0: validate and count; 1: fill the pools */
    char *arena;       /* string arena */
    size_t arena_used;
    size_t *counts;    /* children per container, in preorder */
    size_t n_containers, cap_containers;
    size_t n_nodes, n_keys; /* pass 1: totals; pass 2: used so far */
    size_t next_container;
    json_value *nodes;
    char **keys;
    int failed;
    size_t err_pos;
} parser;

static int fail(parser *ps, const unsigned char *at)
{
    if (!ps->failed) {
        ps->failed = 1;
        ps->err_pos = (size_t)(at - ps->start);
    }
    return 0;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = (v << 4) | d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of a valid UTF-8 sequence starting at s (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;       /* overlong */
        else if (c == 0xED) hi = 0x9F;  /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;       /* overlong */
        else if (c == 0xF4) hi = 0x8F;  /* > U+10FFFF */
    } else return 0;
    if ((size_t)(end - s) < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

/* ps->p at the opening quote. Decodes into the arena. */
static char *parse_string(parser *ps)
{
    const unsigned char *p = ps->p + 1, *end = ps->end;
    char *out = ps->arena + ps->arena_used, *o = out;
    for (;;) {
        if (p >= end) {
            fail(ps, p);
            return NULL;
        }
        unsigned c = *p;
        if (c == '"') {
            p++;
            break;
        }
        if (c < 0x20) {
            fail(ps, p);
            return NULL;
        }
        if (c == '\\') {
            if (end - p < 2) {
                fail(ps, end);
                return NULL;
            }
            unsigned e = p[1];
            switch (e) {
            case '"': *o++ = '"'; p += 2; break;
            case '\\': *o++ = '\\'; p += 2; break;
            case '/': *o++ = '/'; p += 2; break;
            case 'b': *o++ = '\b'; p += 2; break;
            case 'f': *o++ = '\f'; p += 2; break;
            case 'n': *o++ = '\n'; p += 2; break;
            case 'r': *o++ = '\r'; p += 2; break;
            case 't': *o++ = '\t'; p += 2; break;
            case 'u': {
                unsigned cp, lo;
                if (end - p < 6 || !hex4(p + 2, &cp)) {
                    fail(ps, p);
                    return NULL;
                }
                if (cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) {
                    fail(ps, p);
                    return NULL;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !hex4(p + 8, &lo) || lo < 0xDC00 ||
                        lo > 0xDFFF) {
                        fail(ps, p);
                        return NULL;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 12;
                } else {
                    p += 6;
                }
                /* \uXXXX is 6 bytes -> at most 3 bytes; a pair is 12 -> 4. */
                o += put_utf8(o, cp);
                break;
            }
            default:
                fail(ps, p);
                return NULL;
            }
            continue;
        }
        if (c < 0x80) {
            *o++ = (char)c;
            p++;
            continue;
        }
        size_t n = utf8_seq(p, end);
        if (!n) {
            fail(ps, p);
            return NULL;
        }
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    *o++ = '\0';
    ps->arena_used += (size_t)(o - out);
    ps->p = p;
    return out;
}

static int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static int parse_number(parser *ps, json_value *v)
{
    const unsigned char *s = ps->p, *p = s, *end = ps->end;
    int neg = 0, integral = 1;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (!is_digit(p, end)) return fail(ps, p);
    const unsigned char *digits = p;
    if (*p == '0') {
        p++;
        if (is_digit(p, end)) return fail(ps, p); /* leading zero */
    } else {
        while (is_digit(p, end)) p++;
    }
    const unsigned char *digits_end = p;
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (!is_digit(p, end)) return fail(ps, p);
        while (is_digit(p, end)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (!is_digit(p, end)) return fail(ps, p);
        while (is_digit(p, end)) p++;
    }

    size_t len = (size_t)(p - s);
    double d;
    if (kvi_parse_decimal_n((const char *)s, len, &d)) return fail(ps, s);

    memset(v, 0, sizeof *v);
    v->type = JSON_NUMBER;
    v->number = d;
    v->number_is_integer = integral;
    if (integral) {
        /* |INT64_MIN| = 9223372036854775808 */
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
        uint64_t acc = 0;
        int fits = 1;
        for (const unsigned char *q = digits; q < digits_end; q++) {
            unsigned dg = (unsigned)(*q - '0');
            if (acc > (limit - dg) / 10) {
                fits = 0;
                break;
            }
            acc = acc * 10 + dg;
        }
        if (fits) {
            v->integer_fits = 1;
            if (neg) v->integer = acc == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)acc;
            else v->integer = (int64_t)acc;
        }
    }
    ps->p = p;
    return 1;
}

static int match_lit(parser *ps, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) return fail(ps, ps->p);
    ps->p += n;
    return 1;
}

static int parse_value(parser *ps, json_value *v, int depth);

static int parse_container(parser *ps, json_value *v, int depth, int is_obj)
{
    const unsigned char *open = ps->p;
    if (depth >= JSON_MAX_DEPTH) return fail(ps, open);
    char close = is_obj ? '}' : ']';
    size_t k = 0, n = 0;
    json_value *items = NULL;
    char **keys = NULL;
    memset(v, 0, sizeof *v);
    v->type = is_obj ? JSON_OBJECT : JSON_ARRAY;
    if (ps->build) {
        /* reserve this container's children contiguously */
        k = ps->next_container++;
        n = ps->counts[k];
        if (n) {
            items = ps->nodes + ps->n_nodes;
            ps->n_nodes += n;
            if (is_obj) {
                keys = ps->keys + ps->n_keys;
                ps->n_keys += n;
            }
        }
        v->n = n;
        v->items = items;
        v->keys = keys;
    } else {
        if (ps->n_containers == ps->cap_containers) {
            size_t ncap = ps->cap_containers ? ps->cap_containers * 2 : 64;
            size_t *nc = realloc(ps->counts, ncap * sizeof *nc);
            if (!nc) return fail(ps, open);
            ps->counts = nc;
            ps->cap_containers = ncap;
        }
        k = ps->n_containers++;
        ps->counts[k] = 0;
    }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 1;
    }
    size_t i = 0;
    for (;;) {
        char *key = NULL;
        json_value scratch;
        skip_ws(ps);
        if (is_obj) {
            if (ps->p >= ps->end || *ps->p != '"') return fail(ps, ps->p);
            key = parse_string(ps);
            if (!key) return 0;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail(ps, ps->p);
            ps->p++;
            skip_ws(ps);
        }
        if (!parse_value(ps, ps->build ? &items[i] : &scratch, depth + 1)) return 0;
        if (ps->build) {
            if (is_obj) keys[i] = key;
        } else {
            ps->counts[k]++;
            ps->n_nodes++;
            if (is_obj) ps->n_keys++;
        }
        i++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return 1;
        }
        return fail(ps, ps->p);
    }
}

static int parse_value(parser *ps, json_value *v, int depth)
{
    if (ps->p >= ps->end) return fail(ps, ps->p);
    switch (*ps->p) {
    case '{': return parse_container(ps, v, depth, 1);
    case '[': return parse_container(ps, v, depth, 0);
    case '"': {
        char *s = parse_string(ps);
        if (!s) return 0;
        memset(v, 0, sizeof *v);
        v->type = JSON_STRING;
        v->string = s;
        return 1;
    }
    case 't':
        if (!match_lit(ps, "true")) return 0;
        memset(v, 0, sizeof *v);
        v->type = JSON_BOOL;
        v->boolean = 1;
        return 1;
    case 'f':
        if (!match_lit(ps, "false")) return 0;
        memset(v, 0, sizeof *v);
        v->type = JSON_BOOL;
        return 1;
    case 'n':
        if (!match_lit(ps, "null")) return 0;
        memset(v, 0, sizeof *v);
        v->type = JSON_NULL;
        return 1;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps, v);
        return fail(ps, ps->p);
    }
}

static int run_pass(parser *ps, json_value *root)
{
    ps->p = ps->start;
    ps->arena_used = 0;
    skip_ws(ps);
    if (!parse_value(ps, root, 0)) return 0;
    skip_ws(ps);
    if (ps->p != ps->end) return fail(ps, ps->p);
    return 1;
}

json_value *json_parse(const char *text, size_t len, size_t *err_pos)
{
    if (err_pos) *err_pos = 0;
    if (!text && len) return NULL;
    if (len > SIZE_MAX - 1) return NULL;
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.start = (const unsigned char *)(text ? text : "");
    ps.end = ps.start + len;
    ps.arena = malloc(len + 1);
    json_doc *doc = calloc(1, sizeof *doc);
    if (!ps.arena || !doc) goto fail;

    /* pass 1: validate, count */
    if (!run_pass(&ps, &doc->root)) goto fail;
    /* pass 2: fill exact-size pools; cannot fail on validated input */
    if (ps.n_nodes) {
        if (ps.n_nodes > SIZE_MAX / sizeof *doc->nodes) goto fail;
        doc->nodes = malloc(ps.n_nodes * sizeof *doc->nodes);
        if (!doc->nodes) goto fail;
    }
    if (ps.n_keys) {
        doc->keys = malloc(ps.n_keys * sizeof *doc->keys);
        if (!doc->keys) goto fail;
    }
    ps.build = 1;
    ps.nodes = doc->nodes;
    ps.keys = doc->keys;
    ps.n_nodes = ps.n_keys = 0;
    if (!run_pass(&ps, &doc->root)) goto fail;
    free(ps.counts);
    doc->arena = ps.arena;
    return &doc->root;

fail:
    if (err_pos) *err_pos = ps.err_pos; /* 0 after an allocation failure */
    free(ps.counts);
    free(ps.arena);
    if (doc) {
        free(doc->nodes);
        free(doc->keys);
        free(doc);
    }
    return NULL;
}

void json_free(json_value *v)
{
    if (!v) return;
    json_doc *doc = (json_doc *)(void *)v;
    free(doc->nodes);
    free(doc->keys);
    free(doc->arena);
    free(doc);
}

const json_value *json_get(const json_value *v, const char *key)
{
    if (!v || v->type != JSON_OBJECT || !key) return NULL;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0) return &v->items[i];
    return NULL;
}
