/*
 * tokenizer.c - SentencePiece BPE (llama.cpp "SPM") tokenizer. See tokenizer.h.
 *
 * Encoding is O(n log n) in the text length: symbols form a doubly linked list
 * over the escaped text, and candidate merges sit in a binary max-heap keyed by
 * (score, -left index). A popped candidate whose symbols have changed since it
 * was pushed is stale and skipped, exactly as llama.cpp does.
 */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Vocabulary                                                               */
/* ======================================================================== */

struct tok_vocab {
    uint32_t n;              /* number of tokens */
    char **pieces;           /* [n] NUL-terminated raw pieces */
    uint32_t *piece_len;     /* [n] bytes of each piece (pieces may hold NULs) */
    float *scores;           /* [n] merge priority (higher merges first) */
    uint8_t *types;          /* [n] TOK_TYPE_* */
    int32_t *hash;           /* [hash_cap] token id or -1: open addressing over
                                the pieces that may result from a merge */
    uint32_t hash_cap;       /* power of two >= 2 n */
    int32_t byte_id[256];    /* token for each raw byte (byte fallback) */
    int32_t bos, eos, unk;   /* special ids or TOK_NONE */
    int add_bos;             /* prepend <s> by default */
};

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Token id of the mergeable piece s[0..n), or -1. */
static int32_t lookup(const tok_vocab *v, const char *s, size_t n) {
    uint32_t mask = v->hash_cap - 1;
    for (uint32_t h = fnv1a(s, n) & mask;; h = (h + 1) & mask) {
        int32_t id = v->hash[h];
        if (id < 0) return -1;
        if (v->piece_len[id] == n && memcmp(v->pieces[id], s, n) == 0) return id;
    }
}

/* SentencePiece merges only into these; control/byte/unknown pieces are
 * reserved and never produced from text. */
static int mergeable(int type) {
    return type == TOK_TYPE_NORMAL || type == TOK_TYPE_USER_DEFINED || type == TOK_TYPE_UNDEFINED;
}

void tok_vocab_free(tok_vocab *v) {
    if (!v) return;
    if (v->pieces)
        for (uint32_t i = 0; i < v->n; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->piece_len);
    free(v->scores);
    free(v->types);
    free(v->hash);
    free(v);
}

/* Optional special id: absent or 0xFFFFFFFF (llama.cpp's "none") gives TOK_NONE. */
static int special_id(const eng_gguf_file *gf, const char *key, int32_t dflt, uint32_t n,
                      int32_t *out, char *err, size_t errlen) {
    uint32_t u;
    int r = eng_gguf_get_u32(gf, key, &u);
    if (r == 0) {
        *out = dflt < (int32_t)n ? dflt : TOK_NONE;
        return 0;
    }
    if (r < 0) {
        snprintf(err, errlen, "tokenizer: %s has a non-integer type", key);
        return -1;
    }
    if (u == UINT32_MAX) {
        *out = TOK_NONE;
        return 0;
    }
    if (u >= n) {
        snprintf(err, errlen, "tokenizer: %s = %u is outside the %u-token vocabulary", key, u, n);
        return -1;
    }
    *out = (int32_t)u;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Byte value of a "<0xXX>" piece, or -1. */
static int byte_piece_value(const char *p, uint32_t n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

tok_vocab *tok_vocab_from_gguf(const eng_gguf_file *gf, char *err, size_t errlen) {
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    const char *model;
    size_t model_len;
    int r = eng_gguf_get_str(gf, "tokenizer.ggml.model", &model, &model_len);
    if (r > 0 && !(model_len == 5 && memcmp(model, "llama", 5) == 0)) {
        snprintf(err, errlen, "tokenizer: unsupported tokenizer.ggml.model '%.*s' (only llama/SPM)",
                 (int)(model_len > 64 ? 64 : model_len), model);
        return NULL;
    }
    const eng_gguf_kv *tk = eng_gguf_find_kv(gf, "tokenizer.ggml.tokens");
    if (!tk || tk->type != ENG_GGUF_VT_ARRAY || tk->arr_type != ENG_GGUF_VT_STRING) {
        snprintf(err, errlen, "tokenizer: tokenizer.ggml.tokens missing or not a string array");
        return NULL;
    }
    if (tk->len == 0 || tk->len > (uint64_t)INT32_MAX / 4) {
        snprintf(err, errlen, "tokenizer: vocabulary of %llu tokens", (unsigned long long)tk->len);
        return NULL;
    }
    uint32_t n = (uint32_t)tk->len;
    const eng_gguf_kv *sc = eng_gguf_find_kv(gf, "tokenizer.ggml.scores");
    const eng_gguf_kv *ty = eng_gguf_find_kv(gf, "tokenizer.ggml.token_type");
    if (sc && (sc->type != ENG_GGUF_VT_ARRAY || sc->len != n || sc->arr_type == ENG_GGUF_VT_STRING ||
               sc->arr_type == ENG_GGUF_VT_ARRAY || sc->arr_type == ENG_GGUF_VT_BOOL)) {
        snprintf(err, errlen, "tokenizer: tokenizer.ggml.scores is not a numeric array of %u", n);
        return NULL;
    }
    if (ty && (ty->type != ENG_GGUF_VT_ARRAY || ty->len != n || ty->arr_type == ENG_GGUF_VT_STRING ||
               ty->arr_type == ENG_GGUF_VT_ARRAY || ty->arr_type == ENG_GGUF_VT_FLOAT32 ||
               ty->arr_type == ENG_GGUF_VT_FLOAT64)) {
        snprintf(err, errlen, "tokenizer: tokenizer.ggml.token_type is not an integer array of %u",
                 n);
        return NULL;
    }

    tok_vocab *v = calloc(1, sizeof(*v));
    if (!v) goto nomem;
    v->n = n;
    v->pieces = calloc(n, sizeof(char *));
    v->piece_len = calloc(n, sizeof(uint32_t));
    v->scores = calloc(n, sizeof(float));
    v->types = calloc(n, 1);
    v->hash_cap = 16;
    while (v->hash_cap < 2 * n) v->hash_cap *= 2;
    v->hash = malloc((size_t)v->hash_cap * sizeof(int32_t));
    if (!v->pieces || !v->piece_len || !v->scores || !v->types || !v->hash) goto nomem;
    memset(v->hash, 0xFF, (size_t)v->hash_cap * sizeof(int32_t)); /* all -1 */

    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        eng_gguf_arr_str(tk, i, &s, &len);
        if (len > UINT32_MAX - 1) {
            snprintf(err, errlen, "tokenizer: token %u is %zu bytes long", i, len);
            tok_vocab_free(v);
            return NULL;
        }
        if (!(v->pieces[i] = malloc(len + 1))) goto nomem;
        memcpy(v->pieces[i], s, len);
        v->pieces[i][len] = '\0';
        v->piece_len[i] = (uint32_t)len;
        v->scores[i] = sc ? (float)eng_gguf_arr_num(sc, i) : 0.0f;
        double t = ty ? eng_gguf_arr_num(ty, i) : TOK_TYPE_NORMAL;
        v->types[i] = (t >= 0 && t <= TOK_TYPE_BYTE) ? (uint8_t)t : TOK_TYPE_UNDEFINED;
        if (!ty && byte_piece_value(s, (uint32_t)len) >= 0) v->types[i] = TOK_TYPE_BYTE;
        if (mergeable(v->types[i]) && lookup(v, s, len) < 0) {
            /* First occurrence wins when a piece is duplicated. */
            uint32_t mask = v->hash_cap - 1, h = fnv1a(s, len) & mask;
            while (v->hash[h] >= 0) h = (h + 1) & mask;
            v->hash[h] = (int32_t)i;
        }
    }

    if (special_id(gf, "tokenizer.ggml.bos_token_id", 1, n, &v->bos, err, errlen) ||
        special_id(gf, "tokenizer.ggml.eos_token_id", 2, n, &v->eos, err, errlen) ||
        special_id(gf, "tokenizer.ggml.unknown_token_id", 0, n, &v->unk, err, errlen)) {
        tok_vocab_free(v);
        return NULL;
    }
    int ab = 1;
    if (eng_gguf_get_bool(gf, "tokenizer.ggml.add_bos_token", &ab) < 0) ab = 1;
    v->add_bos = ab && v->bos != TOK_NONE;

    /* Byte fallback: the <0xXX> byte tokens, else a one-byte piece, else <unk>. */
    for (int b = 0; b < 256; b++) v->byte_id[b] = TOK_NONE;
    for (uint32_t i = 0; i < n; i++) {
        int b = v->types[i] == TOK_TYPE_BYTE ? byte_piece_value(v->pieces[i], v->piece_len[i]) : -1;
        if (b >= 0 && v->byte_id[b] == TOK_NONE) v->byte_id[b] = (int32_t)i;
    }
    for (int b = 0; b < 256; b++) {
        if (v->byte_id[b] != TOK_NONE) continue;
        char c = (char)b;
        int32_t id = lookup(v, &c, 1);
        v->byte_id[b] = id >= 0 ? id : v->unk;
    }
    return v;

nomem:
    snprintf(err, errlen, "tokenizer: out of memory");
    tok_vocab_free(v);
    return NULL;
}

uint32_t tok_n_vocab(const tok_vocab *v) { return v->n; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
int tok_add_bos(const tok_vocab *v) { return v->add_bos; }

const char *tok_piece(const tok_vocab *v, int32_t id) {
    return id >= 0 && (uint32_t)id < v->n ? v->pieces[id] : NULL;
}
int tok_type(const tok_vocab *v, int32_t id) {
    return id >= 0 && (uint32_t)id < v->n ? v->types[id] : -1;
}
float tok_score(const tok_vocab *v, int32_t id) {
    return id >= 0 && (uint32_t)id < v->n ? v->scores[id] : 0.0f;
}

/* ======================================================================== */
/* Encoding                                                                 */
/* ======================================================================== */

/* A live or merged-away symbol: a span of the escaped text in a linked list. */
typedef struct symbol {
    int32_t prev;   /* index of the previous live symbol or -1 */
    int32_t next;   /* index of the next live symbol or -1 */
    uint32_t start; /* byte offset in the escaped text */
    uint32_t n;     /* bytes; 0 once merged into its left neighbour */
} symbol;

/* A merge candidate: symbols left and right, their merged piece's score and
 * length (length detects stale entries). */
typedef struct bigram {
    int32_t left;   /* symbol index */
    int32_t right;  /* symbol index */
    float score;    /* score of the merged piece */
    uint32_t size;  /* bytes of the merged piece when pushed */
} bigram;

/* Binary max-heap of bigrams. */
typedef struct heap {
    bigram *a;      /* [cap] */
    size_t n;       /* live entries */
    size_t cap;     /* allocated entries */
} heap;

/* a outranks b: higher score, then leftmost. */
static int outranks(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(heap *h, bigram b) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? 2 * h->cap : 64;
        bigram *na = realloc(h->a, nc * sizeof(bigram));
        if (!na) return -1;
        h->a = na;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!outranks(&b, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = b;
    return 0;
}

static bigram heap_pop(heap *h) {
    bigram top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && outranks(&h->a[c + 1], &h->a[c])) c++;
        if (!outranks(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

/* Push the pair (l, r) when their concatenation is a mergeable piece. */
static int try_bigram(const tok_vocab *v, const char *text, const symbol *sym, heap *h, int32_t l,
                      int32_t r) {
    if (l < 0 || r < 0) return 0;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = lookup(v, text + sym[l].start, size);
    if (id < 0) return 0;
    bigram b = {l, r, v->scores[id], size};
    return heap_push(h, b);
}

/* UTF-8 sequence length from the lead byte, as llama.cpp's unicode_len_utf8:
 * stray continuation bytes count as one-byte characters. */
static uint32_t utf8_len(uint8_t c) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

/* Append id (counting it even past cap). */
static void emit(int32_t *out, size_t cap, int64_t *count, int32_t id) {
    if ((uint64_t)*count < cap) out[*count] = id;
    (*count)++;
}

int64_t tok_encode(const tok_vocab *v, const char *text, size_t len, int add_bos, int32_t *out,
                   size_t cap) {
    int64_t count = 0;
    if (add_bos && v->bos != TOK_NONE) emit(out, cap, &count, v->bos);
    if (len == 0) return count;
    /* Escaped text is at most 3 bytes per input byte plus the 3-byte prefix;
     * indices are int32, so bound the input. */
    if (len > (size_t)(INT32_MAX / 3 - 4)) return -1;

    size_t cap_esc = 3 * (len + 1);
    char *esc = malloc(cap_esc);
    /* One symbol per input byte at most, plus the prefix. */
    symbol *sym = malloc((len + 1) * sizeof(symbol));
    heap h = {NULL, 0, 0};
    int64_t result = -1;
    if (!esc || !sym) goto done;

    /* 1. Dummy prefix and U+2581 (E2 96 81) for every space. */
    size_t m = 0;
    static const char sp[3] = {(char)0xE2, (char)0x96, (char)0x81};
    memcpy(esc, sp, 3);
    m = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + m, sp, 3);
            m += 3;
        } else {
            esc[m++] = text[i];
        }
    }

    /* 2. One symbol per UTF-8 character (a truncated final sequence is cut). */
    int32_t ns = 0;
    for (size_t off = 0; off < m;) {
        uint32_t cl = utf8_len((uint8_t)esc[off]);
        if (cl > m - off) cl = (uint32_t)(m - off);
        sym[ns].start = (uint32_t)off;
        sym[ns].n = cl;
        sym[ns].prev = ns - 1;
        off += cl;
        sym[ns].next = off == m ? -1 : ns + 1;
        ns++;
    }

    /* 3. Merge the best-scoring adjacent pair until none is a piece. */
    for (int32_t i = 1; i < ns; i++)
        if (try_bigram(v, esc, sym, &h, i - 1, i)) goto done;
    while (h.n) {
        bigram b = heap_pop(&h);
        symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        if (try_bigram(v, esc, sym, &h, l->prev, b.left) ||
            try_bigram(v, esc, sym, &h, b.left, l->next))
            goto done;
    }

    /* 4. Emit pieces; bytes of symbols that are not pieces. */
    for (int32_t i = 0; i != -1; i = sym[i].next) {
        int32_t id = lookup(v, esc + sym[i].start, sym[i].n);
        if (id >= 0) {
            emit(out, cap, &count, id);
        } else {
            for (uint32_t j = 0; j < sym[i].n; j++)
                emit(out, cap, &count, v->byte_id[(uint8_t)esc[sym[i].start + j]]);
        }
        if (count > INT32_MAX) goto done;
    }
    result = count;

done:
    free(esc);
    free(sym);
    free(h.a);
    return result;
}

/* ======================================================================== */
/* Decoding                                                                 */
/* ======================================================================== */

static void put(char *out, size_t cap, size_t *n, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++, (*n)++)
        if (*n < cap) out[*n] = s[i];
}

size_t tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, int strip_leading_space,
                  char *out, size_t cap) {
    size_t w = 0;
    int strip = strip_leading_space;
    for (size_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        if (id < 0 || (uint32_t)id >= v->n) continue;
        int t = v->types[id];
        const char *p = v->pieces[id];
        size_t pl = v->piece_len[id];
        if (t == TOK_TYPE_CONTROL) continue;
        if (t == TOK_TYPE_BYTE) {
            int b = byte_piece_value(p, (uint32_t)pl);
            if (b >= 0) {
                char c = (char)b;
                if (strip && c == ' ') {
                    strip = 0;
                    continue;
                }
                strip = 0;
                put(out, cap, &w, &c, 1);
                continue;
            }
        }
        if (mergeable(t)) {
            for (size_t i = 0; i < pl;) {
                if (i + 3 <= pl && (uint8_t)p[i] == 0xE2 && (uint8_t)p[i + 1] == 0x96 &&
                    (uint8_t)p[i + 2] == 0x81) {
                    if (!strip) put(out, cap, &w, " ", 1);
                    strip = 0;
                    i += 3;
                } else {
                    strip = 0;
                    put(out, cap, &w, p + i, 1);
                    i++;
                }
            }
            continue;
        }
        if (pl) strip = 0;
        put(out, cap, &w, p, pl);
    }
    return w;
}
