/*
 * json.h - a small, strict JSON parser (RFC 8259) into a read-only tree.
 * Bounded: depth <= JSON_MAX_DEPTH, and the tree's memory is proportional to
 * the input length. Strings are decoded (escapes, \uXXXX with surrogate
 * pairs -> UTF-8); embedded NUL characters are rejected.
 */
#ifndef KVTC_IO_JSON_H
#define KVTC_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

typedef enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    int boolean;
    double number;
    int number_is_integer;  /* the literal had no fraction/exponent */
    int64_t integer;        /* exact value when number_is_integer and it fits */
    int integer_fits;       /* integer holds the literal exactly */
    char *string;           /* JSON_STRING: NUL-terminated UTF-8 */
    size_t n;               /* array / object element count */
    json_value *items;      /* array elements or object values */
    char **keys;            /* object keys (parallel to items) */
};

/* Parse text[0..len). Returns NULL on any error; *err_pos (if non-NULL)
 * receives the byte offset of the error. */
json_value *json_parse(const char *text, size_t len, size_t *err_pos);
/* Frees a whole tree; v must be a pointer returned by json_parse (never an
 * inner node). */
void json_free(json_value *v);

/* Object lookup (first match), NULL if absent or v is not an object. */
const json_value *json_get(const json_value *v, const char *key);

#endif
