/* eval_json.h - reading `kvtc eval --json` output in tests (test_eval.c,
 * cuda/test_cuda_eval.c): a file into a buffer, a row by name, a number. */
#ifndef KVTC_TESTS_EVAL_JSON_H
#define KVTC_TESTS_EVAL_JSON_H

#include <stdio.h>
#include <string.h>

#include "io/json.h"

/* The file's first cap - 1 bytes into buf, NUL-terminated (empty when it
 * cannot be opened); returns the bytes read. */
static inline size_t eval_slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    memset(buf, 0, cap);
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    if (f) fclose(f);
    return n;
}

/* The row of ms (the "methods" array) named name, or NULL. */
static inline const json_value *eval_row(const json_value *ms, const char *name) {
    for (size_t i = 0; ms && i < ms->n; i++) {
        const json_value *n = json_get(&ms->items[i], "name");
        if (n && n->type == JSON_STRING && !strcmp(n->string, name)) return &ms->items[i];
    }
    return NULL;
}

/* Number key of object m, or -1 when m or the key is missing (every eval
 * number is >= 0). */
static inline double eval_num(const json_value *m, const char *key) {
    const json_value *v = m ? json_get(m, key) : NULL;
    return v && v->type == JSON_NUMBER ? v->number : -1.0;
}

#endif
