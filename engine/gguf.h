/*
 * gguf.h - a strict reader for GGUF files (versions 2 and 3).
 *
 * GGUF layout (little-endian):
 *
 *   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x      { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data; each tensor at data_start + offset
 *
 *   string = u64 length | bytes (not NUL-terminated)
 *   array  = u32 element_type | u64 count | count elements
 *
 * The whole file is read into memory with one read; every field is bounds
 * checked against the bytes that remain before anything is allocated, so a
 * corrupt or hostile file yields an error code and a specific message, never a
 * crash or a huge allocation. Values stay in the file buffer; the accessors
 * below decode them on demand.
 */
#ifndef KVTC_ENGINE_GGUF_H
#define KVTC_ENGINE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------- */

typedef enum gguf_status {
    GGUF_OK = 0,
    GGUF_E_IO,          /* the file could not be opened or read */
    GGUF_E_NOMEM,       /* an allocation failed */
    GGUF_E_MAGIC,       /* the first four bytes are not "GGUF" */
    GGUF_E_VERSION,     /* a version other than 2 or 3 (or a big-endian file) */
    GGUF_E_TRUNCATED,   /* the file ends inside a field it declares */
    GGUF_E_COUNT,       /* a count or length that cannot fit in the remaining bytes */
    GGUF_E_VALUE_TYPE,  /* an unknown metadata value type */
    GGUF_E_TENSOR_TYPE, /* an unknown or unsupported tensor type */
    GGUF_E_RANGE,       /* tensor data outside the file, misaligned, or sizes overflowing */
    GGUF_E_DUPLICATE,   /* a metadata key or tensor name that occurs twice */
    GGUF_E_INVALID      /* any other inconsistent field (bad alignment, dims, ...) */
} gguf_status;

/* Short name of a status ("truncated", ...); never NULL. */
const char *gguf_status_string(gguf_status s);

/* ---- metadata value types (GGUF spec numbering) -------------------------- */

typedef enum gguf_value_type {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
} gguf_value_type;

/* ---- tensor types (ggml numbering); only these four are supported -------- */

typedef enum gguf_tensor_type {
    GGUF_TT_F32 = 0,
    GGUF_TT_F16 = 1,
    GGUF_TT_Q8_0 = 8,  /* blocks of 32: f16 scale d, 32 x int8 q; value = d * q */
    GGUF_TT_BF16 = 30
} gguf_tensor_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* One metadata entry. Scalars are decoded at parse time; strings and arrays
 * point into the file buffer (unaligned; use the accessors). */
typedef struct gguf_kv {
    char *key;                /* [key_len + 1] NUL-terminated copy of the key */
    uint32_t type;            /* gguf_value_type of the value */
    uint32_t arr_type;        /* element gguf_value_type when type == ARRAY, else 0 */
    uint64_t len;             /* string: bytes; array: element count; scalar: 0 */
    const uint8_t *data;      /* string bytes / first array element in the file buffer */
    uint64_t *str_offsets;    /* [len] for arrays of strings: offset of element i's
                                 u64 length prefix from `data`; NULL otherwise */
    union {
        uint64_t u;           /* unsigned integers and bool (0/1) */
        int64_t i;            /* signed integers */
        double f;             /* float32 and float64 */
    } num;                    /* scalar value, by type */
} gguf_kv;

/* One tensor info. `data` points at its bytes inside the file buffer. */
typedef struct gguf_tensor {
    char *name;               /* NUL-terminated copy of the tensor name */
    uint32_t n_dims;          /* 1..GGUF_MAX_DIMS */
    uint64_t ne[GGUF_MAX_DIMS]; /* [n_dims] extents, fastest-varying first; unused = 1 */
    uint32_t type;            /* gguf_tensor_type */
    uint64_t offset;          /* byte offset from the start of the data section */
    uint64_t n_elements;      /* product of ne */
    uint64_t nbytes;          /* bytes of tensor data */
    const uint8_t *data;      /* [nbytes] in the file buffer */
} gguf_tensor;

/* A parsed file. Owns the file bytes, the key/name copies and the tables. */
typedef struct gguf_file {
    uint8_t *buf;             /* [size] the whole file */
    size_t size;              /* bytes in buf */
    uint32_t version;         /* 2 or 3 */
    uint32_t alignment;       /* general.alignment or 32; a power of two */
    uint64_t data_start;      /* offset of the tensor data section in buf */
    uint64_t n_kv;            /* entries in kv */
    gguf_kv *kv;              /* [n_kv] metadata in file order */
    uint64_t n_tensors;       /* entries in tensors */
    gguf_tensor *tensors;     /* [n_tensors] tensor infos in file order */
} gguf_file;

/* ---- opening ------------------------------------------------------------ */

/* Read `path` with a single read and parse it. On failure *out is NULL and
 * `err` (if non-NULL) holds a specific message. */
gguf_status gguf_open(const char *path, gguf_file **out, char *err, size_t errlen);

/* Parse a copy of `size` bytes at `data` (used by tests and in-memory models). */
gguf_status gguf_open_memory(const void *data, size_t size, gguf_file **out, char *err,
                             size_t errlen);

void gguf_close(gguf_file *gf);

/* ---- metadata accessors --------------------------------------------------- */

/* The entry for `key`, or NULL. */
const gguf_kv *gguf_find_kv(const gguf_file *gf, const char *key);

/* Scalar getters: return 1 and set *out when the key exists and its value is
 * representable in the requested type (any integer type for the integer
 * getters, either float type for the float getter), 0 when the key is absent,
 * -1 when it exists with an incompatible type or out-of-range value. */
int gguf_get_u32(const gguf_file *gf, const char *key, uint32_t *out);
int gguf_get_f32(const gguf_file *gf, const char *key, float *out);
int gguf_get_bool(const gguf_file *gf, const char *key, int *out);
/* String: *s points into the file buffer, *len bytes, not NUL-terminated. */
int gguf_get_str(const gguf_file *gf, const char *key, const char **s, size_t *len);

/* Array element i (i < kv->len) of an array entry, converted; the caller has
 * checked kv->type == GGUF_VT_ARRAY and the element type. */
void gguf_arr_str(const gguf_kv *kv, uint64_t i, const char **s, size_t *len);
/* Numeric array elements of any numeric element type, as double. */
double gguf_arr_num(const gguf_kv *kv, uint64_t i);

/* ---- tensors -------------------------------------------------------------- */

/* The tensor called `name`, or NULL. */
const gguf_tensor *gguf_find_tensor(const gguf_file *gf, const char *name);

/* Name of a tensor type ("q8_0", ...) or "unknown". */
const char *gguf_tensor_type_name(uint32_t type);

/* Dequantize/convert all n_elements of `t` to float32 at `out`. */
void gguf_tensor_to_f32(const gguf_tensor *t, float *out);

/* IEEE half and bfloat16 to float (exact). */
float gguf_f16_to_f32(uint16_t h);
float gguf_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
