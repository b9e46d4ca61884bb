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

typedef enum eng_gguf_status {
    ENG_GGUF_OK = 0,
    ENG_GGUF_E_IO,          /* the file could not be opened or read */
    ENG_GGUF_E_NOMEM,       /* an allocation failed */
    ENG_GGUF_E_MAGIC,       /* the first four bytes are not "GGUF" */
    ENG_GGUF_E_VERSION,     /* a version other than 2 or 3 (or a big-endian file) */
    ENG_GGUF_E_TRUNCATED,   /* the file ends inside a field it declares */
    ENG_GGUF_E_COUNT,       /* a count or length that cannot fit in the remaining bytes */
    ENG_GGUF_E_VALUE_TYPE,  /* an unknown metadata value type */
    ENG_GGUF_E_TENSOR_TYPE, /* an unknown or unsupported tensor type */
    ENG_GGUF_E_RANGE,       /* tensor data outside the file, misaligned, or sizes overflowing */
    ENG_GGUF_E_DUPLICATE,   /* a metadata key or tensor name that occurs twice */
    ENG_GGUF_E_INVALID      /* any other inconsistent field (bad alignment, dims, ...) */
} eng_gguf_status;

/* Short name of a status ("truncated", ...); never NULL. */
const char *eng_gguf_status_string(eng_gguf_status s);

/* ---- metadata value types (GGUF spec numbering) -------------------------- */

typedef enum eng_gguf_value_type {
    ENG_GGUF_VT_UINT8 = 0,
    ENG_GGUF_VT_INT8 = 1,
    ENG_GGUF_VT_UINT16 = 2,
    ENG_GGUF_VT_INT16 = 3,
    ENG_GGUF_VT_UINT32 = 4,
    ENG_GGUF_VT_INT32 = 5,
    ENG_GGUF_VT_FLOAT32 = 6,
    ENG_GGUF_VT_BOOL = 7,
    ENG_GGUF_VT_STRING = 8,
    ENG_GGUF_VT_ARRAY = 9,
    ENG_GGUF_VT_UINT64 = 10,
    ENG_GGUF_VT_INT64 = 11,
    ENG_GGUF_VT_FLOAT64 = 12,
    ENG_GGUF_VT_COUNT
} eng_gguf_value_type;

/* ---- tensor types (ggml numbering); only these four are supported -------- */

typedef enum eng_gguf_tensor_type {
    ENG_GGUF_TT_F32 = 0,
    ENG_GGUF_TT_F16 = 1,
    ENG_GGUF_TT_Q8_0 = 8,  /* blocks of 32: f16 scale d, 32 x int8 q; value = d * q */
    ENG_GGUF_TT_BF16 = 30
} eng_gguf_tensor_type;

#define ENG_GGUF_MAX_DIMS 4
#define ENG_GGUF_DEFAULT_ALIGNMENT 32

/* One metadata entry. Scalars are decoded at parse time; strings and arrays
 * point into the file buffer (unaligned; use the accessors). */
typedef struct eng_gguf_kv {
    char *key;                /* [key_len + 1] NUL-terminated copy of the key */
    uint32_t type;            /* eng_gguf_value_type of the value */
    uint32_t arr_type;        /* element eng_gguf_value_type when type == ARRAY, else 0 */
    uint64_t len;             /* string: bytes; array: element count; scalar: 0 */
    const uint8_t *data;      /* string bytes / first array element in the file buffer */
    uint64_t *str_offsets;    /* [len] for arrays of strings: offset of element i's
                                 u64 length prefix from `data`; NULL otherwise */
    union {
        uint64_t u;           /* unsigned integers and bool (0/1) */
        int64_t i;            /* signed integers */
        double f;             /* float32 and float64 */
    } num;                    /* scalar value, by type */
} eng_gguf_kv;

/* One tensor info. `data` points at its bytes inside the file buffer. */
typedef struct eng_gguf_tensor {
    char *name;               /* NUL-terminated copy of the tensor name */
    uint32_t n_dims;          /* 1..ENG_GGUF_MAX_DIMS */
    uint64_t ne[ENG_GGUF_MAX_DIMS]; /* [n_dims] extents, fastest-varying first; unused = 1 */
    uint32_t type;            /* eng_gguf_tensor_type */
    uint64_t offset;          /* byte offset from the start of the data section */
    uint64_t n_elements;      /* product of ne */
    uint64_t nbytes;          /* bytes of tensor data */
    const uint8_t *data;      /* [nbytes] in the file buffer */
} eng_gguf_tensor;

/* A parsed file. Owns the file bytes, the key/name copies and the tables. */
typedef struct eng_gguf_file {
    uint8_t *buf;             /* [size] the whole file */
    size_t size;              /* bytes in buf */
    uint32_t version;         /* 2 or 3 */
    uint32_t alignment;       /* general.alignment or 32; a power of two */
    uint64_t data_start;      /* offset of the tensor data section in buf */
    uint64_t n_kv;            /* entries in kv */
    eng_gguf_kv *kv;              /* [n_kv] metadata in file order */
    uint64_t n_tensors;       /* entries in tensors */
    eng_gguf_tensor *tensors;     /* [n_tensors] tensor infos in file order */
} eng_gguf_file;

/* ---- opening ------------------------------------------------------------ */

/* Read `path` with a single read and parse it. On failure *out is NULL and
 * `err` (if non-NULL) holds a specific message. */
eng_gguf_status eng_gguf_open(const char *path, eng_gguf_file **out, char *err, size_t errlen);

/* Parse a copy of `size` bytes at `data` (used by tests and in-memory models). */
eng_gguf_status eng_gguf_open_memory(const void *data, size_t size, eng_gguf_file **out, char *err,
                             size_t errlen);

void eng_gguf_close(eng_gguf_file *gf);

/* ---- metadata accessors --------------------------------------------------- */

/* The entry for `key`, or NULL. */
const eng_gguf_kv *eng_gguf_find_kv(const eng_gguf_file *gf, const char *key);

/* Scalar getters: return 1 and set *out when the key exists and its value is
 * representable in the requested type (any integer type for the integer
 * getters, either float type for the float getter), 0 when the key is absent,
 * -1 when it exists with an incompatible type or out-of-range value. */
int eng_gguf_get_u32(const eng_gguf_file *gf, const char *key, uint32_t *out);
int eng_gguf_get_f32(const eng_gguf_file *gf, const char *key, float *out);
int eng_gguf_get_bool(const eng_gguf_file *gf, const char *key, int *out);
/* String: *s points into the file buffer, *len bytes, not NUL-terminated. */
int eng_gguf_get_str(const eng_gguf_file *gf, const char *key, const char **s, size_t *len);

/* Array element i (i < kv->len) of an array entry, converted; the caller has
 * checked kv->type == ENG_GGUF_VT_ARRAY and the element type. */
void eng_gguf_arr_str(const eng_gguf_kv *kv, uint64_t i, const char **s, size_t *len);
/* Numeric array elements of any numeric element type, as double. */
double eng_gguf_arr_num(const eng_gguf_kv *kv, uint64_t i);

/* ---- tensors -------------------------------------------------------------- */

/* The tensor called `name`, or NULL. */
const eng_gguf_tensor *eng_gguf_find_tensor(const eng_gguf_file *gf, const char *name);

/* Name of a tensor type ("q8_0", ...) or "unknown". */
const char *eng_gguf_tensor_type_name(uint32_t type);

/* Dequantize/convert all n_elements of `t` to float32 at `out`. */
void eng_gguf_tensor_to_f32(const eng_gguf_tensor *t, float *out);

/* IEEE half and bfloat16 to float (exact). */
float eng_gguf_f16_to_f32(uint16_t h);
float eng_gguf_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
