/*
 * tokenizer.h - a C interface to the sentencepiece library (tokenizer.cc).
 *
 * T5 uses the sentencepiece model (spiece.model) as-is: its ids are the model's
 * token ids.  This shim only encodes text and names pieces; appending EOS and
 * truncating to a length budget is done here too so every caller agrees.
 */
#ifndef PT_TOKENIZER_H
#define PT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C"
{
#endif

typedef struct PtTokenizer PtTokenizer;

/* Loads a serialized sentencepiece model (the bytes of spiece.model). */
PtTokenizer *pt_tokenizer_load(const void *model_bytes, size_t size, const char *path_for_errors);
void		pt_tokenizer_free(PtTokenizer *tok);

int			pt_tokenizer_vocab_size(const PtTokenizer *tok);
/* Piece text (with U+2581 for spaces); "" for ids out of range. */
const char *pt_tokenizer_piece(const PtTokenizer *tok, int id);
/* True for <pad>, </s>, <unk> and other non-text pieces. */
int			pt_tokenizer_is_special(const PtTokenizer *tok, int id);

/*
 * Encodes text[0..len) into at most max_ids ids (max_ids > 0), writing them to
 * ids (capacity max_ids).  Returns the number written, or -1 on failure.
 * Text past what max_ids can hold is not tokenized at all, so a 10 MB input
 * costs no more than a short one.  No EOS is added.
 */
int			pt_tokenizer_encode(const PtTokenizer *tok, const char *text, size_t len,
								int32_t *ids, int max_ids);

/*
 * Decodes ids into text (pieces joined, U+2581 to spaces, control pieces
 * such as <pad> and </s> dropped).  Ids outside the sentencepiece vocabulary
 * (a model's padded rows, e.g. T5's extra ids past the piece count) give no
 * text.  Returns malloc'd NUL-terminated UTF-8 (free() it), or NULL with an
 * error.
 */
char	   *pt_tokenizer_decode(const PtTokenizer *tok, const int32_t *ids, int n);

#ifdef __cplusplus
}
#endif

#endif
