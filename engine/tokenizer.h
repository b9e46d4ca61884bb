/*
 * tokenizer.h - SentencePiece-BPE tokenizer built from GGUF metadata
 * (tokenizer.ggml.model = "llama"), following llama.cpp's SPM tokenizer:
 *
 *   1. prepend a space (the "dummy prefix") and replace every ' ' by U+2581;
 *   2. split into UTF-8 characters;
 *   3. repeatedly merge the adjacent pair whose concatenation is a vocabulary
 *      piece with the highest score (leftmost pair on ties);
 *   4. emit each final symbol's id, or its bytes as <0xXX> byte tokens when the
 *      symbol is not a piece (byte fallback; <unk> when there are no byte tokens).
 *
 * As in SentencePiece, only normal and user-defined pieces take part in merges,
 * so text that happens to spell "<s>" or "<0x0A>" is not turned into control
 * or byte tokens. Special-token syntax in the text is not parsed.
 *
 * Invalid UTF-8: a lead byte 0xF0-0xFF claims 4 bytes whatever follows (as in
 * llama.cpp), so such text does not always detokenize to itself; valid UTF-8
 * and stray continuation bytes do.
 */
#ifndef KVTC_ENGINE_TOKENIZER_H
#define KVTC_ENGINE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Token types, as stored in tokenizer.ggml.token_type (llama.cpp numbering). */
enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6
};

#define TOK_NONE (-1)

typedef struct tok_vocab tok_vocab;

/* Build the vocabulary from a parsed GGUF. Returns NULL with a message in err
 * when the tokenizer metadata is missing or inconsistent. */
tok_vocab *tok_vocab_from_gguf(const eng_gguf_file *gf, char *err, size_t errlen);
void tok_vocab_free(tok_vocab *v);

uint32_t tok_n_vocab(const tok_vocab *v);
int32_t tok_bos(const tok_vocab *v); /* TOK_NONE when the model has none */
int32_t tok_eos(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
int tok_add_bos(const tok_vocab *v);  /* tokenizer.ggml.add_bos_token (default 1) */

/* Raw piece of token `id` (with U+2581 for spaces), NUL-terminated; NULL when
 * id is out of range. */
const char *tok_piece(const tok_vocab *v, int32_t id);
int tok_type(const tok_vocab *v, int32_t id);
float tok_score(const tok_vocab *v, int32_t id);

/* Tokenize `len` bytes of `text`, optionally after <s>. Writes up to `cap` ids
 * to `out` and returns the full number of ids (which may exceed cap: call again
 * with a larger buffer), or -1 on allocation failure or when the count would
 * exceed INT32_MAX. Empty text gives just <s> (if requested). */
int64_t tok_encode(const tok_vocab *v, const char *text, size_t len, int add_bos, int32_t *out,
                   size_t cap);

/* Text of `n` ids: normal pieces with U+2581 turned back into ' ', byte tokens
 * as their byte, control tokens (<s>, </s>) as nothing, anything else as its
 * raw piece. When strip_leading_space is set, one ' ' at the very start of the
 * output is dropped (undoing the dummy prefix). Writes up to `cap` bytes (no
 * NUL terminator: byte tokens may produce NULs) and returns the full length. */
size_t tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, int strip_leading_space,
                  char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
