/*
 * gguf.c - strict GGUF v2/v3 reader. See gguf.h for the layout.
 *
 * Every read goes through a cursor that knows how many bytes remain; counts
 * are compared with the remaining bytes (times the smallest possible encoded
 * size of one item) before anything is allocated, so allocations are bounded
 * by a small multiple of the file size.
 */
#include "gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ======================================================================== */
/* Errors                                                                   */
/* ======================================================================== */

const char *eng_gguf_status_string(eng_gguf_status s) {
    switch (s) {
    case ENG_GGUF_OK: return "ok";
    case ENG_GGUF_E_IO: return "I/O error";
    case ENG_GGUF_E_NOMEM: return "out of memory";
    case ENG_GGUF_E_MAGIC: return "bad magic";
    case ENG_GGUF_E_VERSION: return "unsupported version";
    case ENG_GGUF_E_TRUNCATED: return "truncated file";
    case ENG_GGUF_E_COUNT: return "absurd count";
    case ENG_GGUF_E_VALUE_TYPE: return "unknown value type";
    case ENG_GGUF_E_TENSOR_TYPE: return "unsupported tensor type";
    case ENG_GGUF_E_RANGE: return "tensor data out of range";
    case ENG_GGUF_E_DUPLICATE: return "duplicate name";
    case ENG_GGUF_E_INVALID: return "invalid field";
    }
    return "unknown status";
}

/* Parser state: the bytes, the read position and where errors go. */
typedef struct cursor {
    const uint8_t *p;  /* [size] file bytes */
    size_t size;       /* total bytes */
    size_t pos;        /* next byte to read */
    char *err;         /* [errlen] message buffer or NULL */
    size_t errlen;     /* bytes in err */
} cursor;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static eng_gguf_status fail(cursor *c, eng_gguf_status s, const char *fmt, ...) {
    if (c->err && c->errlen) {
        int n = snprintf(c->err, c->errlen, "gguf: %s: ", eng_gguf_status_string(s));
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return s;
}

static size_t remaining(const cursor *c) { return c->size - c->pos; }

/* ======================================================================== */
/* Primitive reads                                                          */
/* ======================================================================== */

/* Little-endian loads from unaligned bytes (GGUF is little-endian; so is every
 * host this project targets, but decode explicitly anyway). */
static uint16_t ld16(const uint8_t *b) { return (uint16_t)(b[0] | (b[1] << 8)); }
static uint32_t ld32(const uint8_t *b) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static uint64_t ld64(const uint8_t *b) { return (uint64_t)ld32(b) | ((uint64_t)ld32(b + 4) << 32); }

static eng_gguf_status need(cursor *c, size_t n, const char *what) {
    if (remaining(c) < n)
        return fail(c, ENG_GGUF_E_TRUNCATED, "need %zu bytes for %s at offset %zu, file has %zu bytes",
                    n, what, c->pos, c->size);
    return ENG_GGUF_OK;
}

static eng_gguf_status rd_u32(cursor *c, uint32_t *v, const char *what) {
    eng_gguf_status s = need(c, 4, what);
    if (s) return s;
    *v = ld32(c->p + c->pos);
    c->pos += 4;
    return ENG_GGUF_OK;
}

static eng_gguf_status rd_u64(cursor *c, uint64_t *v, const char *what) {
    eng_gguf_status s = need(c, 8, what);
    if (s) return s;
    *v = ld64(c->p + c->pos);
    c->pos += 8;
    return ENG_GGUF_OK;
}

/* A string: returns its bytes in place (not copied). */
static eng_gguf_status rd_str(cursor *c, const uint8_t **s, uint64_t *len, const char *what) {
    size_t at = c->pos;
    eng_gguf_status st = rd_u64(c, len, what);
    if (st) return st;
    if (*len > remaining(c))
        return fail(c, ENG_GGUF_E_COUNT,
                    "%s at offset %zu has length %llu but only %zu bytes remain", what, at,
                    (unsigned long long)*len, remaining(c));
    *s = c->p + c->pos;
    c->pos += (size_t)*len;
    return ENG_GGUF_OK;
}

static char *dup_str(const uint8_t *s, uint64_t len) {
    char *d = malloc((size_t)len + 1);
    if (d) {
        if (len) memcpy(d, s, (size_t)len);
        d[len] = '\0';
    }
    return d;
}

/* Encoded bytes of a fixed-size value type; 0 for string/array (variable). */
static size_t vt_size(uint32_t t) {
    switch (t) {
    case ENG_GGUF_VT_UINT8: case ENG_GGUF_VT_INT8: case ENG_GGUF_VT_BOOL: return 1;
    case ENG_GGUF_VT_UINT16: case ENG_GGUF_VT_INT16: return 2;
    case ENG_GGUF_VT_UINT32: case ENG_GGUF_VT_INT32: case ENG_GGUF_VT_FLOAT32: return 4;
    case ENG_GGUF_VT_UINT64: case ENG_GGUF_VT_INT64: case ENG_GGUF_VT_FLOAT64: return 8;
    default: return 0;
    }
}

/* Smallest encoding of one value of type t: strings need their u64 length,
 * arrays their u32 type and u64 count. Used to reject absurd counts. */
static size_t vt_min_size(uint32_t t) {
    if (t == ENG_GGUF_VT_STRING) return 8;
    if (t == ENG_GGUF_VT_ARRAY) return 12;
    return vt_size(t);
}

/* Decode a fixed-size scalar at b into the kv's number union. */
static void decode_scalar(uint32_t t, const uint8_t *b, eng_gguf_kv *kv) {
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
    switch (t) {
    case ENG_GGUF_VT_UINT8: kv->num.u = b[0]; break;
    case ENG_GGUF_VT_INT8: kv->num.i = (int8_t)b[0]; break;
    case ENG_GGUF_VT_BOOL: kv->num.u = b[0] != 0; break;
    case ENG_GGUF_VT_UINT16: kv->num.u = ld16(b); break;
    case ENG_GGUF_VT_INT16: kv->num.i = (int16_t)ld16(b); break;
    case ENG_GGUF_VT_UINT32: kv->num.u = ld32(b); break;
    case ENG_GGUF_VT_INT32: kv->num.i = (int32_t)ld32(b); break;
    case ENG_GGUF_VT_UINT64: kv->num.u = ld64(b); break;
    case ENG_GGUF_VT_INT64: kv->num.i = (int64_t)ld64(b); break;
    case ENG_GGUF_VT_FLOAT32:
        u32 = ld32(b);
        memcpy(&f32, &u32, 4);
        kv->num.f = f32;
        break;
    case ENG_GGUF_VT_FLOAT64:
        u64 = ld64(b);
        memcpy(&f64, &u64, 8);
        kv->num.f = f64;
        break;
    default: break;
    }
}

/* Skip over one array payload (used for nested arrays, which GGUF allows but
 * nothing here reads). depth bounds the recursion on hostile input. */
static eng_gguf_status skip_array(cursor *c, int depth, const char *key) {
    uint32_t et;
    uint64_t n;
    eng_gguf_status s;
    if (depth > 8) return fail(c, ENG_GGUF_E_INVALID, "key '%s': arrays nested deeper than 8", key);
    if ((s = rd_u32(c, &et, "array element type"))) return s;
    if ((s = rd_u64(c, &n, "array length"))) return s;
    if (et >= ENG_GGUF_VT_COUNT)
        return fail(c, ENG_GGUF_E_VALUE_TYPE, "key '%s': unknown array element type %u", key, et);
    if (vt_min_size(et) && n > remaining(c) / vt_min_size(et))
        return fail(c, ENG_GGUF_E_COUNT, "key '%s': array of %llu elements cannot fit in %zu bytes",
                    key, (unsigned long long)n, remaining(c));
    for (uint64_t i = 0; i < n; i++) {
        if (et == ENG_GGUF_VT_STRING) {
            const uint8_t *sp;
            uint64_t sl;
            if ((s = rd_str(c, &sp, &sl, "array string"))) return s;
        } else if (et == ENG_GGUF_VT_ARRAY) {
            if ((s = skip_array(c, depth + 1, key))) return s;
        } else {
            if ((s = need(c, vt_size(et), "array element"))) return s;
            c->pos += vt_size(et);
        }
    }
    return ENG_GGUF_OK;
}

/* ======================================================================== */
/* Metadata                                                                 */
/* ======================================================================== */

static eng_gguf_status read_kv(cursor *c, eng_gguf_kv *kv) {
    const uint8_t *ks;
    uint64_t klen;
    eng_gguf_status s;
    if ((s = rd_str(c, &ks, &klen, "metadata key"))) return s;
    if (!(kv->key = dup_str(ks, klen))) return fail(c, ENG_GGUF_E_NOMEM, "key copy");
    if ((s = rd_u32(c, &kv->type, "metadata value type"))) return s;
    if (kv->type >= ENG_GGUF_VT_COUNT)
        return fail(c, ENG_GGUF_E_VALUE_TYPE, "key '%s' has unknown value type %u", kv->key, kv->type);

    if (kv->type == ENG_GGUF_VT_STRING) {
        const uint8_t *sp;
        if ((s = rd_str(c, &sp, &kv->len, "string value"))) return s;
        kv->data = sp;
        return ENG_GGUF_OK;
    }
    if (kv->type != ENG_GGUF_VT_ARRAY) {
        size_t n = vt_size(kv->type);
        if ((s = need(c, n, "scalar value"))) return s;
        decode_scalar(kv->type, c->p + c->pos, kv);
        c->pos += n;
        return ENG_GGUF_OK;
    }

    /* Array: element type, count, payload. */
    if ((s = rd_u32(c, &kv->arr_type, "array element type"))) return s;
    if ((s = rd_u64(c, &kv->len, "array length"))) return s;
    if (kv->arr_type >= ENG_GGUF_VT_COUNT)
        return fail(c, ENG_GGUF_E_VALUE_TYPE, "key '%s': unknown array element type %u", kv->key,
                    kv->arr_type);
    size_t emin = vt_min_size(kv->arr_type);
    if (kv->len > remaining(c) / emin)
        return fail(c, ENG_GGUF_E_COUNT,
                    "key '%s': array of %llu elements cannot fit in the %zu remaining bytes",
                    kv->key, (unsigned long long)kv->len, remaining(c));
    kv->data = c->p + c->pos;
    if (kv->arr_type == ENG_GGUF_VT_STRING) {
        /* Index the strings so element i is O(1); len <= remaining/8 bounds this. */
        kv->str_offsets = malloc((size_t)(kv->len ? kv->len : 1) * sizeof(uint64_t));
        if (!kv->str_offsets) return fail(c, ENG_GGUF_E_NOMEM, "string array index");
        for (uint64_t i = 0; i < kv->len; i++) {
            const uint8_t *sp;
            uint64_t sl;
            kv->str_offsets[i] = (uint64_t)(c->p + c->pos - kv->data);
            if ((s = rd_str(c, &sp, &sl, "array string element"))) return s;
        }
    } else if (kv->arr_type == ENG_GGUF_VT_ARRAY) {
        for (uint64_t i = 0; i < kv->len; i++)
            if ((s = skip_array(c, 1, kv->key))) return s;
    } else {
        /* len * emin <= remaining was checked above, so this cannot truncate. */
        c->pos += (size_t)kv->len * emin;
    }
    return ENG_GGUF_OK;
}

/* ======================================================================== */
/* Tensors                                                                  */
/* ======================================================================== */

const char *eng_gguf_tensor_type_name(uint32_t type) {
    switch (type) {
    case ENG_GGUF_TT_F32: return "f32";
    case ENG_GGUF_TT_F16: return "f16";
    case ENG_GGUF_TT_Q8_0: return "q8_0";
    case ENG_GGUF_TT_BF16: return "bf16";
    default: return "unknown";
    }
}

/* Elements per block and bytes per block of a supported type; 0 otherwise. */
static int type_layout(uint32_t type, uint64_t *blck, uint64_t *bsize) {
    switch (type) {
    case ENG_GGUF_TT_F32: *blck = 1; *bsize = 4; return 1;
    case ENG_GGUF_TT_F16: *blck = 1; *bsize = 2; return 1;
    case ENG_GGUF_TT_BF16: *blck = 1; *bsize = 2; return 1;
    case ENG_GGUF_TT_Q8_0: *blck = 32; *bsize = 34; return 1;
    default: return 0;
    }
}

static eng_gguf_status read_tensor_info(cursor *c, eng_gguf_tensor *t) {
    const uint8_t *ns;
    uint64_t nlen;
    eng_gguf_status s;
    if ((s = rd_str(c, &ns, &nlen, "tensor name"))) return s;
    if (!(t->name = dup_str(ns, nlen))) return fail(c, ENG_GGUF_E_NOMEM, "tensor name copy");
    if ((s = rd_u32(c, &t->n_dims, "tensor n_dims"))) return s;
    if (t->n_dims < 1 || t->n_dims > ENG_GGUF_MAX_DIMS)
        return fail(c, ENG_GGUF_E_INVALID, "tensor '%s' has %u dimensions (1..%d allowed)", t->name,
                    t->n_dims, ENG_GGUF_MAX_DIMS);
    t->n_elements = 1;
    for (uint32_t d = 0; d < ENG_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if ((s = rd_u64(c, &t->ne[d], "tensor dimension"))) return s;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
            return fail(c, ENG_GGUF_E_INVALID, "tensor '%s' dimension %u is %llu", t->name, d,
                        (unsigned long long)t->ne[d]);
        if (t->n_elements > (uint64_t)INT64_MAX / t->ne[d])
            return fail(c, ENG_GGUF_E_RANGE, "tensor '%s': element count overflows", t->name);
        t->n_elements *= t->ne[d];
    }
    if ((s = rd_u32(c, &t->type, "tensor type"))) return s;
    if ((s = rd_u64(c, &t->offset, "tensor offset"))) return s;

    uint64_t blck, bsize;
    if (!type_layout(t->type, &blck, &bsize))
        return fail(c, ENG_GGUF_E_TENSOR_TYPE,
                    "tensor '%s' has ggml type %u; supported are f32 (0), f16 (1), q8_0 (8), "
                    "bf16 (30)", t->name, t->type);
    if (t->ne[0] % blck)
        return fail(c, ENG_GGUF_E_INVALID, "tensor '%s': ne0 %llu is not a multiple of the %s block %llu",
                    t->name, (unsigned long long)t->ne[0], eng_gguf_tensor_type_name(t->type),
                    (unsigned long long)blck);
    uint64_t nblocks = t->n_elements / blck;
    if (nblocks > UINT64_MAX / bsize)
        return fail(c, ENG_GGUF_E_RANGE, "tensor '%s': byte size overflows", t->name);
    t->nbytes = nblocks * bsize;
    return ENG_GGUF_OK;
}

/* ======================================================================== */
/* File                                                                     */
/* ======================================================================== */

void eng_gguf_close(eng_gguf_file *gf) {
    if (!gf) return;
    if (gf->kv) {
        for (uint64_t i = 0; i < gf->n_kv; i++) {
            free(gf->kv[i].key);
            free(gf->kv[i].str_offsets);
        }
    }
    if (gf->tensors)
        for (uint64_t i = 0; i < gf->n_tensors; i++) free(gf->tensors[i].name);
    free(gf->kv);
    free(gf->tensors);
    free(gf->buf);
    free(gf);
}

/* Parse gf->buf (already filled). */
static eng_gguf_status parse(eng_gguf_file *gf, cursor *c) {
    eng_gguf_status s;
    /* Smallest encodings: a kv is an 8-byte key length, a 4-byte type and at
     * least a 1-byte value; a tensor info is name length, n_dims, one ne,
     * type and offset. */
    const size_t kv_min = 8 + 4 + 1, ti_min = 8 + 4 + 8 + 4 + 8;

    if (c->size < 4 || memcmp(c->p, "GGUF", 4) != 0) {
        if (c->size < 4) return fail(c, ENG_GGUF_E_TRUNCATED, "file has %zu bytes, no magic", c->size);
        return fail(c, ENG_GGUF_E_MAGIC, "file starts with %02x %02x %02x %02x, not \"GGUF\"", c->p[0],
                    c->p[1], c->p[2], c->p[3]);
    }
    c->pos = 4;
    if ((s = rd_u32(c, &gf->version, "version"))) return s;
    if (gf->version != 2 && gf->version != 3) {
        if ((gf->version & 0xFFFFu) == 0 && (gf->version >> 16) != 0)
            return fail(c, ENG_GGUF_E_VERSION, "version field 0x%08x looks big-endian; only "
                        "little-endian files are supported", gf->version);
        return fail(c, ENG_GGUF_E_VERSION, "version %u (only 2 and 3 are supported)", gf->version);
    }
    if ((s = rd_u64(c, &gf->n_tensors, "n_tensors"))) return s;
    if ((s = rd_u64(c, &gf->n_kv, "n_kv"))) return s;
    if (gf->n_kv > remaining(c) / kv_min) {
        uint64_t n = gf->n_kv;
        gf->n_kv = 0; /* nothing allocated yet; keep close() consistent */
        return fail(c, ENG_GGUF_E_COUNT, "n_kv %llu cannot fit in the %zu remaining bytes",
                    (unsigned long long)n, remaining(c));
    }
    if (gf->n_tensors > remaining(c) / ti_min) {
        uint64_t n = gf->n_tensors;
        gf->n_tensors = 0;
        return fail(c, ENG_GGUF_E_COUNT, "n_tensors %llu cannot fit in the %zu remaining bytes",
                    (unsigned long long)n, remaining(c));
    }

    gf->kv = calloc((size_t)(gf->n_kv ? gf->n_kv : 1), sizeof(eng_gguf_kv));
    gf->tensors = calloc((size_t)(gf->n_tensors ? gf->n_tensors : 1), sizeof(eng_gguf_tensor));
    if (!gf->kv || !gf->tensors) return fail(c, ENG_GGUF_E_NOMEM, "metadata tables");

    for (uint64_t i = 0; i < gf->n_kv; i++) {
        if ((s = read_kv(c, &gf->kv[i]))) return s;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(gf->kv[j].key, gf->kv[i].key) == 0)
                return fail(c, ENG_GGUF_E_DUPLICATE, "metadata key '%s' occurs twice", gf->kv[i].key);
    }

    gf->alignment = ENG_GGUF_DEFAULT_ALIGNMENT;
    const eng_gguf_kv *al = eng_gguf_find_kv(gf, "general.alignment");
    if (al) {
        if (al->type != ENG_GGUF_VT_UINT32 || al->num.u == 0 || (al->num.u & (al->num.u - 1)))
            return fail(c, ENG_GGUF_E_INVALID, "general.alignment must be a power-of-two uint32");
        gf->alignment = (uint32_t)al->num.u;
    }

    for (uint64_t i = 0; i < gf->n_tensors; i++) {
        if ((s = read_tensor_info(c, &gf->tensors[i]))) return s;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(gf->tensors[j].name, gf->tensors[i].name) == 0)
                return fail(c, ENG_GGUF_E_DUPLICATE, "tensor '%s' occurs twice", gf->tensors[i].name);
    }

    /* The data section starts at the next multiple of the alignment. A file
     * with no tensors may end right after the header. */
    uint64_t a = gf->alignment;
    gf->data_start = ((uint64_t)c->pos + a - 1) / a * a;
    if (gf->n_tensors == 0) return ENG_GGUF_OK;
    if (gf->data_start > c->size)
        return fail(c, ENG_GGUF_E_TRUNCATED, "data section would start at %llu, file has %zu bytes",
                    (unsigned long long)gf->data_start, c->size);
    uint64_t data_size = c->size - gf->data_start;
    for (uint64_t i = 0; i < gf->n_tensors; i++) {
        eng_gguf_tensor *t = &gf->tensors[i];
        if (t->offset % a)
            return fail(c, ENG_GGUF_E_RANGE, "tensor '%s' offset %llu is not a multiple of %u", t->name,
                        (unsigned long long)t->offset, gf->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return fail(c, ENG_GGUF_E_RANGE,
                        "tensor '%s' [%llu bytes at data offset %llu] extends past the end of "
                        "the file (data section has %llu bytes)", t->name,
                        (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                        (unsigned long long)data_size);
        t->data = c->p + gf->data_start + t->offset;
    }
    return ENG_GGUF_OK;
}

/* Parse a buffer that the new eng_gguf_file takes ownership of. */
static eng_gguf_status open_buffer(uint8_t *buf, size_t size, eng_gguf_file **out, char *err,
                               size_t errlen) {
    cursor c = {buf, size, 0, err, errlen};
    eng_gguf_file *gf = calloc(1, sizeof(*gf));
    if (!gf) {
        free(buf);
        return fail(&c, ENG_GGUF_E_NOMEM, "file struct");
    }
    gf->buf = buf;
    gf->size = size;
    eng_gguf_status s = parse(gf, &c);
    if (s) {
        eng_gguf_close(gf);
        return s;
    }
    if (err && errlen) err[0] = '\0';
    *out = gf;
    return ENG_GGUF_OK;
}

eng_gguf_status eng_gguf_open_memory(const void *data, size_t size, eng_gguf_file **out, char *err,
                             size_t errlen) {
    cursor c = {NULL, 0, 0, err, errlen};
    *out = NULL;
    if (!data && size) return fail(&c, ENG_GGUF_E_IO, "NULL data");
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return fail(&c, ENG_GGUF_E_NOMEM, "%zu-byte copy", size);
    if (size) memcpy(buf, data, size);
    return open_buffer(buf, size, out, err, errlen);
}

eng_gguf_status eng_gguf_open(const char *path, eng_gguf_file **out, char *err, size_t errlen) {
    cursor c = {NULL, 0, 0, err, errlen};
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(&c, ENG_GGUF_E_IO, "cannot open '%s'", path);
    /* fopen succeeds on a directory, whose "size" (ftell after SEEK_END) is
     * LONG_MAX: say what it is instead of trying to allocate that */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return fail(&c, ENG_GGUF_E_IO, "'%s' is a directory, not a GGUF file", path);
    }
    long end = -1;
    if (fseek(f, 0, SEEK_END) == 0) end = ftell(f);
    if (end < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return fail(&c, ENG_GGUF_E_IO, "cannot determine the size of '%s'", path);
    }
    size_t size = (size_t)end;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return fail(&c, ENG_GGUF_E_NOMEM, "%zu bytes for '%s'", size, path);
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    fclose(f);
    if (got != size) {
        free(buf);
        return fail(&c, ENG_GGUF_E_IO, "read %zu of %zu bytes of '%s'", got, size, path);
    }
    return open_buffer(buf, size, out, err, errlen);
}

/* ======================================================================== */
/* Accessors                                                                */
/* ======================================================================== */

const eng_gguf_kv *eng_gguf_find_kv(const eng_gguf_file *gf, const char *key) {
    for (uint64_t i = 0; i < gf->n_kv; i++)
        if (strcmp(gf->kv[i].key, key) == 0) return &gf->kv[i];
    return NULL;
}

static int is_signed_int(uint32_t t) {
    return t == ENG_GGUF_VT_INT8 || t == ENG_GGUF_VT_INT16 || t == ENG_GGUF_VT_INT32 || t == ENG_GGUF_VT_INT64;
}
static int is_unsigned_int(uint32_t t) {
    return t == ENG_GGUF_VT_UINT8 || t == ENG_GGUF_VT_UINT16 || t == ENG_GGUF_VT_UINT32 || t == ENG_GGUF_VT_UINT64;
}

int eng_gguf_get_u32(const eng_gguf_file *gf, const char *key, uint32_t *out) {
    const eng_gguf_kv *kv = eng_gguf_find_kv(gf, key);
    if (!kv) return 0;
    if (is_unsigned_int(kv->type)) {
        if (kv->num.u > UINT32_MAX) return -1;
        *out = (uint32_t)kv->num.u;
        return 1;
    }
    if (is_signed_int(kv->type)) {
        if (kv->num.i < 0 || kv->num.i > (int64_t)UINT32_MAX) return -1;
        *out = (uint32_t)kv->num.i;
        return 1;
    }
    return -1;
}

int eng_gguf_get_f32(const eng_gguf_file *gf, const char *key, float *out) {
    const eng_gguf_kv *kv = eng_gguf_find_kv(gf, key);
    if (!kv) return 0;
    if (kv->type != ENG_GGUF_VT_FLOAT32 && kv->type != ENG_GGUF_VT_FLOAT64) return -1;
    *out = (float)kv->num.f;
    return 1;
}

int eng_gguf_get_bool(const eng_gguf_file *gf, const char *key, int *out) {
    const eng_gguf_kv *kv = eng_gguf_find_kv(gf, key);
    if (!kv) return 0;
    if (kv->type != ENG_GGUF_VT_BOOL) return -1;
    *out = (int)kv->num.u;
    return 1;
}

int eng_gguf_get_str(const eng_gguf_file *gf, const char *key, const char **s, size_t *len) {
    const eng_gguf_kv *kv = eng_gguf_find_kv(gf, key);
    if (!kv) return 0;
    if (kv->type != ENG_GGUF_VT_STRING) return -1;
    *s = (const char *)kv->data;
    *len = (size_t)kv->len;
    return 1;
}

void eng_gguf_arr_str(const eng_gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    const uint8_t *e = kv->data + kv->str_offsets[i];
    *len = (size_t)ld64(e);
    *s = (const char *)(e + 8);
}

double eng_gguf_arr_num(const eng_gguf_kv *kv, uint64_t i) {
    eng_gguf_kv tmp;
    memset(&tmp, 0, sizeof(tmp));
    decode_scalar(kv->arr_type, kv->data + i * vt_size(kv->arr_type), &tmp);
    if (kv->arr_type == ENG_GGUF_VT_FLOAT32 || kv->arr_type == ENG_GGUF_VT_FLOAT64) return tmp.num.f;
    if (is_signed_int(kv->arr_type)) return (double)tmp.num.i;
    return (double)tmp.num.u;
}

const eng_gguf_tensor *eng_gguf_find_tensor(const eng_gguf_file *gf, const char *name) {
    for (uint64_t i = 0; i < gf->n_tensors; i++)
        if (strcmp(gf->tensors[i].name, name) == 0) return &gf->tensors[i];
    return NULL;
}

/* ======================================================================== */
/* Conversion to float32                                                    */
/* ======================================================================== */

float eng_gguf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); /* inf / nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* signed zero */
    } else {
        /* Subnormal half: value = man * 2^-24, exactly representable in float. */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float eng_gguf_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void eng_gguf_tensor_to_f32(const eng_gguf_tensor *t, float *out) {
    const uint8_t *p = t->data;
    uint64_t n = t->n_elements;
    switch (t->type) {
    case ENG_GGUF_TT_F32:
        memcpy(out, p, (size_t)n * 4);
        break;
    case ENG_GGUF_TT_F16:
        for (uint64_t i = 0; i < n; i++) out[i] = eng_gguf_f16_to_f32(ld16(p + 2 * i));
        break;
    case ENG_GGUF_TT_BF16:
        for (uint64_t i = 0; i < n; i++) out[i] = eng_gguf_bf16_to_f32(ld16(p + 2 * i));
        break;
    case ENG_GGUF_TT_Q8_0:
        for (uint64_t b = 0; b < n / 32; b++) {
            const uint8_t *blk = p + 34 * b;
            float d = eng_gguf_f16_to_f32(ld16(blk));
            for (int j = 0; j < 32; j++) out[32 * b + j] = d * (float)(int8_t)blk[2 + j];
        }
        break;
    default:
        break; /* rejected at parse time */
    }
}
