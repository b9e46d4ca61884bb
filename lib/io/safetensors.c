/*
 * safetensors.c - strict safetensors reader and deterministic writer.
 *
 * Reader checks, in this order, and the code each failure returns:
 *   size < 8                                   -> KVTC_ERR_TRUNCATED
 *   a byte after N that is not '{'             -> KVTC_ERR_BAD_MAGIC
 *     (checked before N: the first 8 bytes of a kvtc stream, a text or a
 *     GGUF file read as a length are huge, and "too large" would mislead)
 *   N > ST_MAX_HEADER                          -> KVTC_ERR_TOO_LARGE
 *   8 + N > size                               -> KVTC_ERR_TRUNCATED
 *   header does not start with '{'             -> KVTC_ERR_BAD_MAGIC
 *   more than ST_MAX_JSON_VALUES JSON values   -> KVTC_ERR_TOO_LARGE
 *   malformed JSON (trailing spaces allowed)   -> KVTC_ERR_CORRUPT
 *   then per entry, in header order:
 *     "__metadata__" not an object of strings, or repeated
 *                                              -> KVTC_ERR_CORRUPT
 *     entry not an object, missing / repeated / unknown fields, unknown
 *     dtype, shape not an array of non-negative integer literals,
 *     data_offsets not two non-negative integer literals, begin > end,
 *     end - begin != n_elements * dtype size   -> KVTC_ERR_CORRUPT
 *     name >= ST_MAX_NAME bytes, > ST_MAX_DIMS dims, a dim or offset beyond
 *     INT64_MAX, element or byte count overflowing u64
 *                                              -> KVTC_ERR_TOO_LARGE
 *     end > data section size                  -> KVTC_ERR_TRUNCATED
 *   then globally: duplicate tensor names, overlapping byte ranges
 *                                              -> KVTC_ERR_CORRUPT
 * Gaps between tensors and trailing bytes after the last one are allowed;
 * tensors may appear in any offset order. Two ranges overlap when, sorted
 * by (begin, end), a begin lies below the largest end seen so far (so a
 * zero-size tensor strictly inside another one is rejected, as the Python
 * package would).
 */
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "util/endian.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F64] = {"F64", 8},
    [ST_I8] = {"I8", 1},   [ST_U8] = {"U8", 1},   [ST_I16] = {"I16", 2},   [ST_I32] = {"I32", 4},
    [ST_I64] = {"I64", 8}, [ST_BOOL] = {"BOOL", 1},
};

size_t st_dtype_size(st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *st_dtype_name(st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].name : NULL;
}

int st_dtype_from_name(const char *name, st_dtype *out)
{
    if (!name) return 0;
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            if (out) *out = (st_dtype)i;
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */
/* ------------------------------------------------------------------------ */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A non-negative integer literal that fits int64; else CORRUPT/TOO_LARGE. */
static kvtc_result get_uint(const json_value *v, uint64_t *out)
{
    if (!v || v->type != JSON_NUMBER || !v->number_is_integer) return KVTC_ERR_CORRUPT;
    if (v->number < 0 || (v->integer_fits && v->integer < 0)) return KVTC_ERR_CORRUPT;
    if (!v->integer_fits) return KVTC_ERR_TOO_LARGE;
    *out = (uint64_t)v->integer;
    return KVTC_OK;
}

static kvtc_result parse_tensor(const char *name, const json_value *e, const uint8_t *data, uint64_t data_size,
                                st_tensor *t, uint64_t *begin_out, uint64_t *end_out)
{
    if (e->type != JSON_OBJECT) return KVTC_ERR_CORRUPT;
    const json_value *dtype = NULL, *shape = NULL, *offs = NULL;
    for (size_t i = 0; i < e->n; i++) {
        const json_value **slot;
        if (strcmp(e->keys[i], "dtype") == 0) slot = &dtype;
        else if (strcmp(e->keys[i], "shape") == 0) slot = &shape;
        else if (strcmp(e->keys[i], "data_offsets") == 0) slot = &offs;
        else return KVTC_ERR_CORRUPT; /* unknown field */
        if (*slot) return KVTC_ERR_CORRUPT; /* repeated field */
        *slot = &e->items[i];
    }
    if (!dtype || !shape || !offs) return KVTC_ERR_CORRUPT;

    size_t name_len = strlen(name);
    if (name_len >= ST_MAX_NAME) return KVTC_ERR_TOO_LARGE;
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, name_len + 1);

    if (dtype->type != JSON_STRING || !st_dtype_from_name(dtype->string, &t->dtype)) return KVTC_ERR_CORRUPT;

    if (shape->type != JSON_ARRAY) return KVTC_ERR_CORRUPT;
    kvtc_result r;
    if (shape->n > ST_MAX_DIMS) {
        /* still report a malformed dim as CORRUPT before the limit */
        for (size_t i = 0; i < shape->n; i++) {
            uint64_t d;
            if ((r = get_uint(&shape->items[i], &d)) == KVTC_ERR_CORRUPT) return r;
        }
        return KVTC_ERR_TOO_LARGE;
    }
    uint64_t n_el = 1;
    int overflow = 0, zero = 0;
    for (size_t i = 0; i < shape->n; i++) {
        uint64_t d;
        if ((r = get_uint(&shape->items[i], &d)) != KVTC_OK) return r;
        t->shape[i] = d;
        if (d == 0) zero = 1;
        else if (n_el > UINT64_MAX / d) overflow = 1;
        else n_el *= d;
    }
    if (zero) n_el = 0; /* a zero dim makes the product 0 whatever overflowed */
    else if (overflow) return KVTC_ERR_TOO_LARGE;
    t->n_dims = (uint32_t)shape->n;
    t->n_elements = n_el;
    size_t es = dtype_info[t->dtype].size;
    if (n_el > UINT64_MAX / es) return KVTC_ERR_TOO_LARGE;
    uint64_t nbytes = n_el * es;

    if (offs->type != JSON_ARRAY || offs->n != 2) return KVTC_ERR_CORRUPT;
    uint64_t b, en;
    if ((r = get_uint(&offs->items[0], &b)) != KVTC_OK) return r;
    if ((r = get_uint(&offs->items[1], &en)) != KVTC_OK) return r;
    if (b > en) return KVTC_ERR_CORRUPT;
    if (en - b != nbytes) return KVTC_ERR_CORRUPT;
    if (en > data_size) return KVTC_ERR_TRUNCATED;
    t->nbytes = nbytes;
    t->data = data + b;
    *begin_out = b;
    *end_out = en;
    return KVTC_OK;
}

typedef struct range {
    uint64_t begin, end;
} range;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    const st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_meta_key(const void *a, const void *b)
{
    const st_meta *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

static kvtc_result parse_meta(const json_value *m, st_file *f)
{
    if (m->type != JSON_OBJECT) return KVTC_ERR_CORRUPT;
    for (size_t i = 0; i < m->n; i++)
        if (m->items[i].type != JSON_STRING) return KVTC_ERR_CORRUPT;
    if (m->n == 0) return KVTC_OK;
    if (m->n > UINT32_MAX) return KVTC_ERR_TOO_LARGE;
    f->meta = calloc(m->n, sizeof *f->meta);
    if (!f->meta) return KVTC_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < m->n; i++) {
        f->meta[i].key = dup_str(m->keys[i]);
        f->meta[i].value = dup_str(m->items[i].string);
        f->n_meta = (uint32_t)(i + 1);
        if (!f->meta[i].key || !f->meta[i].value) return KVTC_ERR_OUT_OF_MEMORY;
    }
    /* duplicate keys */
    const st_meta **idx = malloc(m->n * sizeof *idx);
    if (!idx) return KVTC_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < m->n; i++) idx[i] = &f->meta[i];
    qsort(idx, m->n, sizeof *idx, cmp_meta_key);
    kvtc_result r = KVTC_OK;
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(idx[i - 1]->key, idx[i]->key) == 0) r = KVTC_ERR_CORRUPT;
    free(idx);
    return r;
}

static kvtc_result parse_root(const json_value *root, const uint8_t *data, uint64_t data_size, st_file *f)
{
    if (root->type != JSON_OBJECT) return KVTC_ERR_CORRUPT;
    size_t n_meta_keys = 0;
    for (size_t i = 0; i < root->n; i++)
        if (strcmp(root->keys[i], "__metadata__") == 0) n_meta_keys++;
    if (n_meta_keys > 1) return KVTC_ERR_CORRUPT;
    size_t nt = root->n - n_meta_keys;
    if (nt > UINT32_MAX) return KVTC_ERR_TOO_LARGE;

    range *ranges = NULL;
    const st_tensor **idx = NULL;
    kvtc_result r = KVTC_OK;
    if (nt) {
        f->tensors = calloc(nt, sizeof *f->tensors);
        ranges = malloc(nt * sizeof *ranges);
        idx = malloc(nt * sizeof *idx);
        if (!f->tensors || !ranges || !idx) {
            r = KVTC_ERR_OUT_OF_MEMORY;
            goto done;
        }
    }
    for (size_t i = 0; i < root->n; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0) {
            if ((r = parse_meta(&root->items[i], f)) != KVTC_OK) goto done;
            continue;
        }
        uint32_t k = f->n_tensors;
        r = parse_tensor(root->keys[i], &root->items[i], data, data_size, &f->tensors[k], &ranges[k].begin,
                         &ranges[k].end);
        if (r != KVTC_OK) goto done;
        idx[k] = &f->tensors[k];
        f->n_tensors = k + 1;
    }
    if (nt) {
        qsort(idx, nt, sizeof *idx, cmp_name);
        for (size_t i = 1; i < nt; i++)
            if (strcmp(idx[i - 1]->name, idx[i]->name) == 0) {
                r = KVTC_ERR_CORRUPT;
                goto done;
            }
        qsort(ranges, nt, sizeof *ranges, cmp_range);
        uint64_t max_end = 0;
        for (size_t i = 0; i < nt; i++) {
            if (ranges[i].begin < max_end) {
                r = KVTC_ERR_CORRUPT;
                goto done;
            }
            if (ranges[i].end > max_end) max_end = ranges[i].end;
        }
    }
done:
    free(ranges);
    free(idx);
    return r;
}

/* An upper bound on the number of values in the JSON text p[0..n), without
 * parsing it: every value but the first follows a ',' ':' '[' outside a
 * string (a ':' introduces a member value; its key is counted with it). */
static uint64_t json_value_bound(const uint8_t *p, size_t n) {
    uint64_t count = 1;
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == ',' || c == ':' || c == '[') {
            count++;
        }
    }
    return count;
}

kvtc_result st_parse(const void *buf, size_t size, st_file *out)
{
    if (!out) return KVTC_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (!buf && size) return KVTC_ERR_INVALID_ARGUMENT;
    if (size < 8) return KVTC_ERR_TRUNCATED;
    const uint8_t *b = buf;
    if (size > 8 && b[8] != '{') return KVTC_ERR_BAD_MAGIC;
    uint64_t n = kvi_load_u64(b);
    if (n > ST_MAX_HEADER) return KVTC_ERR_TOO_LARGE;
    if (n > (uint64_t)size - 8) return KVTC_ERR_TRUNCATED;
    if (n == 0 || b[8] != '{') return KVTC_ERR_BAD_MAGIC;

    if (json_value_bound(b + 8, (size_t)n) > ST_MAX_JSON_VALUES) return KVTC_ERR_TOO_LARGE;
    json_value *root = json_parse((const char *)b + 8, (size_t)n, NULL);
    if (!root) return KVTC_ERR_CORRUPT; /* (or out of memory; bounded by N) */
    kvtc_result r = parse_root(root, b + 8 + n, (uint64_t)size - 8 - n, out);
    json_free(root);
    if (r != KVTC_OK) st_file_free(out);
    return r;
}

void st_file_free(st_file *f)
{
    if (!f) return;
    for (uint32_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    if (!f || !name) return NULL;
    for (uint32_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta_get(const st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (uint32_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct wtensor {
    char *name;
    st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t begin, nbytes;
    const void *data;
} wtensor;

struct st_writer {
    wtensor *t;
    size_t n_t, cap_t;
    st_meta *m;
    size_t n_m, cap_m;
    uint64_t data_total;
    size_t tensor_chars; /* sum of the tensor entries' JSON lengths */
    size_t meta_chars;   /* sum of the metadata entries' JSON lengths */
};

/* Output sink: counts always, stores when buf is set. */
typedef struct sink {
    char *buf;
    size_t len;
} sink;

static void put(sink *s, const char *p, size_t n)
{
    if (s->buf) memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void put_s(sink *s, const char *p)
{
    put(s, p, strlen(p));
}

static void put_u64(sink *s, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(s, tmp + i, sizeof tmp - i);
}

static void put_json_string(sink *s, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    put(s, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        unsigned c = *p;
        char e[6];
        switch (c) {
        case '"': put(s, "\\\"", 2); break;
        case '\\': put(s, "\\\\", 2); break;
        case '\b': put(s, "\\b", 2); break;
        case '\f': put(s, "\\f", 2); break;
        case '\n': put(s, "\\n", 2); break;
        case '\r': put(s, "\\r", 2); break;
        case '\t': put(s, "\\t", 2); break;
        default:
            if (c < 0x20) {
                e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15];
                put(s, e, 6);
            } else {
                char ch = (char)c;
                put(s, &ch, 1);
            }
        }
    }
    put(s, "\"", 1);
}

static void put_tensor(sink *s, const wtensor *t)
{
    put_json_string(s, t->name);
    put_s(s, ":{\"dtype\":\"");
    put_s(s, dtype_info[t->dtype].name);
    put_s(s, "\",\"shape\":[");
    for (uint32_t i = 0; i < t->n_dims; i++) {
        if (i) put(s, ",", 1);
        put_u64(s, t->shape[i]);
    }
    put_s(s, "],\"data_offsets\":[");
    put_u64(s, t->begin);
    put(s, ",", 1);
    put_u64(s, t->begin + t->nbytes);
    put_s(s, "]}");
}

static void put_meta(sink *s, const st_meta *m)
{
    put_json_string(s, m->key);
    put(s, ":", 1);
    put_json_string(s, m->value);
}

/* Unpadded JSON header length. */
static size_t header_len(const st_writer *w)
{
    size_t n = 2; /* { } */
    if (w->n_m) n += sizeof "\"__metadata__\":{}" - 1 + w->meta_chars + (w->n_m - 1);
    if (w->n_m && w->n_t) n += 1;
    if (w->n_t) n += w->tensor_chars + (w->n_t - 1);
    return n;
}

static size_t padded_header_len(const st_writer *w)
{
    return (header_len(w) + 7) & ~(size_t)7;
}

/* Valid UTF-8 (what the reader's JSON parser accepts). */
static int valid_utf8(const char *str)
{
    const unsigned char *p = (const unsigned char *)str;
    while (*p) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
        } else return 0;
        if (p[1] < lo || p[1] > hi) return 0; /* also stops at NUL */
        for (size_t i = 2; i < n; i++)
            if (p[i] < 0x80 || p[i] > 0xBF) return 0;
        p += n;
    }
    return 1;
}

st_writer *st_writer_alloc(void)
{
    return calloc(1, sizeof(st_writer));
}

void st_writer_free(st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    for (size_t i = 0; i < w->n_m; i++) {
        free(w->m[i].key);
        free(w->m[i].value);
    }
    free(w->t);
    free(w->m);
    free(w);
}

/* Would the header stay within ST_MAX_HEADER after adding extra chars? */
static int header_fits(const st_writer *w, size_t extra)
{
    size_t cur = header_len(w);
    /* +32: room for the "__metadata__" wrapper, commas and padding */
    return extra <= ST_MAX_HEADER && cur + extra + 32 <= ST_MAX_HEADER;
}

kvtc_result st_writer_add_tensor(st_writer *w, const char *name, st_dtype dtype, uint32_t n_dims,
                                 const uint64_t *shape, const void *data)
{
    if (!w || !name || (unsigned)dtype >= ST_DTYPE_COUNT || (n_dims && !shape)) return KVTC_ERR_INVALID_ARGUMENT;
    size_t name_len = strlen(name);
    if (name_len >= ST_MAX_NAME || strcmp(name, "__metadata__") == 0 || !valid_utf8(name))
        return KVTC_ERR_INVALID_ARGUMENT;
    if (n_dims > ST_MAX_DIMS) return KVTC_ERR_TOO_LARGE;
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return KVTC_ERR_INVALID_ARGUMENT;

    wtensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.n_dims = n_dims;
    uint64_t n_el = 1;
    int zero = 0, overflow = 0;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (shape[i] > (uint64_t)INT64_MAX) return KVTC_ERR_TOO_LARGE;
        t.shape[i] = shape[i];
        if (shape[i] == 0) zero = 1;
        else if (n_el > UINT64_MAX / shape[i]) overflow = 1;
        else n_el *= shape[i];
    }
    if (zero) n_el = 0;
    else if (overflow) return KVTC_ERR_TOO_LARGE;
    size_t es = dtype_info[dtype].size;
    if (n_el > UINT64_MAX / es) return KVTC_ERR_TOO_LARGE;
    t.nbytes = n_el * es;
    if (t.nbytes && !data) return KVTC_ERR_INVALID_ARGUMENT;
    /* offsets must stay int64 for readers, and the file must fit size_t */
    if (t.nbytes > (uint64_t)INT64_MAX - w->data_total) return KVTC_ERR_TOO_LARGE;
    if (w->data_total + t.nbytes > (uint64_t)(SIZE_MAX - 8 - ST_MAX_HEADER)) return KVTC_ERR_TOO_LARGE;
    t.begin = w->data_total;
    t.data = data;

    t.name = (char *)name; /* measure before copying */
    sink cnt = {NULL, 0};
    put_tensor(&cnt, &t);
    if (!header_fits(w, cnt.len + 1)) return KVTC_ERR_TOO_LARGE;

    if (w->n_t == w->cap_t) {
        size_t ncap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *nt = realloc(w->t, ncap * sizeof *nt);
        if (!nt) return KVTC_ERR_OUT_OF_MEMORY;
        w->t = nt;
        w->cap_t = ncap;
    }
    t.name = dup_str(name);
    if (!t.name) return KVTC_ERR_OUT_OF_MEMORY;
    w->t[w->n_t++] = t;
    w->data_total += t.nbytes;
    w->tensor_chars += cnt.len;
    return KVTC_OK;
}

kvtc_result st_writer_add_meta(st_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value || !valid_utf8(key) || !valid_utf8(value)) return KVTC_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < w->n_m; i++)
        if (strcmp(w->m[i].key, key) == 0) return KVTC_ERR_INVALID_ARGUMENT;
    st_meta m = {(char *)key, (char *)value};
    sink cnt = {NULL, 0};
    put_meta(&cnt, &m);
    if (!header_fits(w, cnt.len + 1)) return KVTC_ERR_TOO_LARGE;
    if (w->n_m == w->cap_m) {
        size_t ncap = w->cap_m ? w->cap_m * 2 : 8;
        st_meta *nm = realloc(w->m, ncap * sizeof *nm);
        if (!nm) return KVTC_ERR_OUT_OF_MEMORY;
        w->m = nm;
        w->cap_m = ncap;
    }
    m.key = dup_str(key);
    m.value = dup_str(value);
    if (!m.key || !m.value) {
        free(m.key);
        free(m.value);
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    w->m[w->n_m++] = m;
    w->meta_chars += cnt.len;
    return KVTC_OK;
}

size_t st_writer_size(const st_writer *w)
{
    if (!w) return 0;
    return 8 + padded_header_len(w) + (size_t)w->data_total;
}

kvtc_result st_writer_write(const st_writer *w, void *buf, size_t cap, size_t *written)
{
    if (written) *written = 0;
    if (!w) return KVTC_ERR_INVALID_ARGUMENT;
    size_t total = st_writer_size(w);
    if (!buf || cap < total) {
        if (written) *written = total;
        return KVTC_ERR_BUFFER_TOO_SMALL;
    }
    uint8_t *out = buf;
    size_t hl = header_len(w), padded = padded_header_len(w);
    kvi_store_u64(out, (uint64_t)padded);
    sink s = {(char *)out + 8, 0};
    put(&s, "{", 1);
    if (w->n_m) {
        put_s(&s, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_m; i++) {
            if (i) put(&s, ",", 1);
            put_meta(&s, &w->m[i]);
        }
        put(&s, "}", 1);
        if (w->n_t) put(&s, ",", 1);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        if (i) put(&s, ",", 1);
        put_tensor(&s, &w->t[i]);
    }
    put(&s, "}", 1);
    if (s.len != hl) return KVTC_ERR_CORRUPT; /* internal inconsistency; cannot happen */
    memset(out + 8 + hl, ' ', padded - hl);
    uint8_t *d = out + 8 + padded;
    for (size_t i = 0; i < w->n_t; i++) {
        if (w->t[i].nbytes) memcpy(d + w->t[i].begin, w->t[i].data, (size_t)w->t[i].nbytes);
    }
    if (written) *written = total;
    return KVTC_OK;
}
