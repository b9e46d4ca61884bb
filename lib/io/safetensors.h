/*
 * safetensors.h - strict reader and writer of the safetensors format
 * (8-byte little-endian header length N, N bytes of JSON, then the data).
 *
 * Used for the KV cache interchange file (docs/FORMAT.md) and for basis
 * files. The reader is zero-copy: tensors point into the caller's buffer.
 * Every field is validated: header length within the file and below
 * ST_MAX_HEADER, JSON well formed, known dtypes only, shapes whose products
 * do not overflow, data_offsets consistent with dtype*shape, inside the data
 * section, non-overlapping; duplicate names rejected. A hostile header never
 * causes a large allocation (bounded by the header size) or an
 * out-of-bounds read.
 */
#ifndef KVTC_IO_SAFETENSORS_H
#define KVTC_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"

#define ST_MAX_HEADER (16u << 20) /* 16 MiB of JSON at most: bounds parse memory */
/* JSON values (objects, arrays, strings, numbers...) a header may hold. The
 * parse tree costs ~72 bytes per value, so a 16 MiB header of "[0,0,0,..."
 * cost 612 MB (issue 9); with this cap the tree stays under 5 MB whatever
 * the header, while a KV cache or basis header needs a few hundred values
 * (a basis: 8 tensors x ~8 values + 5 metadata strings per plan). */
#define ST_MAX_JSON_VALUES (1u << 16)
#define ST_MAX_DIMS 8
#define ST_MAX_NAME 256

typedef enum st_dtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I8, ST_U8, ST_I16, ST_I32, ST_I64, ST_BOOL, ST_DTYPE_COUNT
} st_dtype;

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);        /* "F32", "F16", ... */
/* Added: the inverse of st_dtype_name. Returns 1 and sets *out (if non-NULL)
 * when name is a known dtype, else 0. */
int st_dtype_from_name(const char *name, st_dtype *out);

typedef struct st_tensor {
    char name[ST_MAX_NAME];
    st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t n_elements;
    const void *data;      /* into the parsed buffer (reader) */
    uint64_t nbytes;
} st_tensor;

typedef struct st_meta {
    char *key;
    char *value;
} st_meta;

typedef struct st_file {
    uint32_t n_tensors;
    st_tensor *tensors;
    uint32_t n_meta;
    st_meta *meta;
} st_file;

/* Parse buf[0..size). The tensors' data pointers point into buf, which must
 * outlive *out. Errors: KVTC_ERR_BAD_MAGIC (not safetensors), _TRUNCATED,
 * _CORRUPT (bad JSON or inconsistent offsets), _TOO_LARGE. */
kvtc_result st_parse(const void *buf, size_t size, st_file *out);
/* (safetensors.c lists the exact code returned for each check.) Tensors are
 * kept in header order. Data pointers are NOT aligned in general: copy with
 * memcpy. On failure *out is zeroed and owns nothing. */
void st_file_free(st_file *f);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta_get(const st_file *f, const char *key); /* NULL if absent */

/* Writer: collect tensors (data pointers borrowed until st_writer_write) and
 * metadata strings (copied), then serialize in the order added, data
 * offsets 8-byte aligned by padding the JSON header with spaces. */
typedef struct st_writer st_writer;

st_writer *st_writer_alloc(void);
void st_writer_free(st_writer *w);
kvtc_result st_writer_add_tensor(st_writer *w, const char *name, st_dtype dtype, uint32_t n_dims,
                                 const uint64_t *shape, const void *data);
kvtc_result st_writer_add_meta(st_writer *w, const char *key, const char *value);
/* add_tensor: KVTC_ERR_INVALID_ARGUMENT for a NULL/duplicate/"__metadata__"/
 * non-UTF-8 name or one of ST_MAX_NAME bytes or more, a bad dtype, NULL data
 * with a non-zero size; KVTC_ERR_TOO_LARGE for n_dims > ST_MAX_DIMS, a dim
 * above INT64_MAX, overflowing sizes, or a header beyond ST_MAX_HEADER.
 * add_meta: KVTC_ERR_INVALID_ARGUMENT for NULL, non-UTF-8 or duplicate keys.
 * Both leave the writer unchanged on failure. */
/* Exact size of the serialized file. */
size_t st_writer_size(const st_writer *w);
/* KVTC_ERR_BUFFER_TOO_SMALL when buf is NULL or cap < st_writer_size();
 * *written then receives the required size. */
kvtc_result st_writer_write(const st_writer *w, void *buf, size_t cap, size_t *written);

#endif
