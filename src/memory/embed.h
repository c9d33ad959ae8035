/* Embedders: text -> L2-normalised float32 vector.
 *
 * `builtin` is local, deterministic and needs no model files. It is lexical,
 * not semantic: lower-cased word unigrams and word bigrams plus character
 * trigrams of each word (with boundary marks), weighted 1 + ln(tf), hashed
 * with a sign bit into EMBED_BUILTIN_DIM buckets and L2-normalised. Texts that
 * share words and word pieces come out close; synonyms do not. */
#ifndef CAXTON_MEMORY_EMBED_H
#define CAXTON_MEMORY_EMBED_H

#include <stddef.h>

#define EMBED_BUILTIN_DIM 384
#define EMBED_BUILTIN_ID "builtin-lexical-v1"
/* Longest text the builtin embedder reads; the rest is ignored. */
#define EMBED_TEXT_MAX (64u * 1024u)

/* Embeds text[0..len) into out (EMBED_BUILTIN_DIM floats). An empty text (or
 * one with no letters or digits) gives the zero vector. Returns 0, or -1 when
 * out of memory. */
int embed_builtin(const char *text, size_t len, float *out);

/* Normalises v in place; a zero vector stays zero. */
void embed_normalise(float *v, size_t dim);

#endif
