/* The builtin lexical embedder. See embed.h.
 *
 * One pass over the text: each word's bytes are lower-cased and hashed as
 * they are read, and every feature (unigram, bigram with the previous word,
 * character trigram, or a short word whole) becomes a 64-bit hash counted
 * in a small open-addressing table. The counts then become weights
 * (1 + ln tf, scaled by the feature's kind) added with a sign into one of
 * EMBED_BUILTIN_DIM buckets. No allocation for short texts; one bounded
 * table for long ones. */
#include "memory/embed.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Feature kinds: the tag keeps, say, the word "abc" and the trigram "abc"
 * apart, and picks the weight. */
enum { KIND_UNIGRAM, KIND_BIGRAM, KIND_TRIGRAM, KIND_SHORT, KIND_COUNT };

/* Words carry the meaning; bigrams and word pieces add word order and
 * tolerance to inflections and typos without drowning the words. */
static const float kind_weight[KIND_COUNT] = {1.0f, 0.5f, 0.5f, 0.5f};

/* Boundary marks around a word for its trigrams; neither is a word byte. */
#define MARK_START '^'
#define MARK_END '$'

/* Tables up to this many entries live on the stack (16 KiB): enough for
 * texts of a few hundred bytes, the usual observation. */
#define STACK_ENTRIES 1024u
#define MIN_ENTRIES 64u
/* The heap table for long texts stops here (1 MiB). A text with more
 * distinct features flushes the counts into the vector when the table is
 * three quarters full and carries on, so a feature split across flushes gets
 * two smaller weights instead of one: bounded memory over exact tf for such
 * rare, huge texts. */
#define HEAP_ENTRIES_MAX 65536u

typedef struct feature {
    uint64_t key; /* mixed hash; 0 = empty */
    uint32_t count;
    uint32_t kind;
} feature;

typedef struct counter {
    feature *table;
    size_t cap; /* a power of two */
    size_t used;
    float *out;
} counter;

/* ---- hashing --------------------------------------------------------------- */

#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

/* Murmur3's 64-bit finaliser: FNV's low bits alone spread poorly over 384
 * buckets, so every key goes through a full avalanche. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t feature_key(uint64_t h, unsigned kind)
{
    uint64_t key = mix64(h ^ ((uint64_t)(kind + 1) * 0x9e3779b97f4a7c15ull));
    return key ? key : 1; /* 0 marks an empty entry */
}

/* Three bytes (or marks) packed into one integer: trigrams need no string. */
static uint64_t pack3(unsigned a, unsigned b, unsigned c)
{
    return (uint64_t)a << 16 | (uint64_t)b << 8 | c;
}

/* ---- counting -------------------------------------------------------------- */

static void add_to_vector(float *out, uint64_t key, uint32_t count, unsigned kind)
{
    float w = count == 1 ? 1.0f : 1.0f + logf((float)count);
    w *= kind_weight[kind];
    /* bucket from the high half, sign from the lowest bit: independent bits */
    size_t bucket = (size_t)(((key >> 32) * EMBED_BUILTIN_DIM) >> 32);
    out[bucket] += (key & 1) ? -w : w;
}

static void flush(counter *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->table[i].key) {
            add_to_vector(c->out, c->table[i].key, c->table[i].count, c->table[i].kind);
            c->table[i].key = 0;
        }
    c->used = 0;
}

static void count_feature(counter *c, uint64_t h, unsigned kind)
{
    uint64_t key = feature_key(h, kind);
    size_t mask = c->cap - 1;
    size_t i = (size_t)key & mask;
    while (c->table[i].key && c->table[i].key != key)
        i = (i + 1) & mask;
    if (c->table[i].key) {
        c->table[i].count++;
        return;
    }
    c->table[i] = (feature){key, 1, kind};
    if (++c->used * 4 >= c->cap * 3)
        flush(c);
}

/* ---- words ------------------------------------------------------------------- */

/* Letters, digits and every byte of a multibyte UTF-8 sequence (or of
 * invalid UTF-8: it is kept, not judged). */
static bool word_byte(unsigned char b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b >= 0x80;
}

static unsigned char lower(unsigned char b)
{
    return (b >= 'A' && b <= 'Z') ? (unsigned char)(b | 0x20) : b;
}

/* State of the word being read and the one before it. */
typedef struct words {
    uint64_t fnv;      /* of the current word so far */
    size_t len;        /* bytes of the current word */
    unsigned b1, b2;   /* its last two bytes (b2 the latest) */
    uint64_t prev;     /* hash of the previous word, for the bigram */
    bool have_prev;
} words;

static void word_byte_read(counter *c, words *w, unsigned char b)
{
    w->fnv = (w->fnv ^ b) * FNV_PRIME;
    w->len++;
    if (w->len == 3) /* now known not to be a short word: its first trigram */
        count_feature(c, pack3(MARK_START, w->b1, w->b2), KIND_TRIGRAM);
    if (w->len >= 3)
        count_feature(c, pack3(w->b1, w->b2, b), KIND_TRIGRAM);
    w->b1 = w->b2;
    w->b2 = b;
}

static void word_end(counter *c, words *w)
{
    if (w->len >= 3) {
        count_feature(c, pack3(w->b1, w->b2, MARK_END), KIND_TRIGRAM);
    } else {
        /* "^a$" or "^ab$": the short word whole, as one piece */
        uint64_t whole = w->len == 1 ? pack3(MARK_START, w->b2, MARK_END)
                                     : pack3(MARK_START, w->b1, w->b2) << 8 | MARK_END;
        count_feature(c, whole, KIND_SHORT);
    }
    count_feature(c, w->fnv, KIND_UNIGRAM);
    if (w->have_prev)
        count_feature(c, mix64(w->prev) ^ w->fnv, KIND_BIGRAM);
    w->prev = w->fnv;
    w->have_prev = true;
    w->fnv = FNV_OFFSET;
    w->len = 0;
}

static void count_text(counter *c, const unsigned char *p, size_t len)
{
    words w = {FNV_OFFSET, 0, 0, 0, 0, false};
    for (size_t i = 0; i < len; i++) {
        if (word_byte(p[i]))
            word_byte_read(c, &w, lower(p[i]));
        else if (w.len)
            word_end(c, &w);
    }
    if (w.len)
        word_end(c, &w);
}

/* ---- entry points ------------------------------------------------------------ */

/* Entries for a text of len bytes: each byte adds at most three features
 * (a trigram, and at a word's end a unigram and a bigram), and the table
 * flushes at three quarters full, so 4 x len entries never flush. Short
 * texts use only as much of the stack table as they need, since clearing
 * and walking it is part of their cost. */
static size_t table_entries(size_t len)
{
    size_t want = len * 4, cap = MIN_ENTRIES;
    while (cap < want && cap < HEAP_ENTRIES_MAX)
        cap *= 2;
    return cap;
}

int embed_builtin(const char *text, size_t len, float *out)
{
    memset(out, 0, EMBED_BUILTIN_DIM * sizeof *out);
    if (!text || len == 0)
        return 0;
    if (len > EMBED_TEXT_MAX)
        len = EMBED_TEXT_MAX;
    feature local[STACK_ENTRIES];
    counter c = {local, table_entries(len), 0, out};
    if (c.cap > STACK_ENTRIES) {
        c.table = calloc(c.cap, sizeof *c.table);
        if (!c.table)
            return -1;
    } else {
        memset(local, 0, c.cap * sizeof *local);
    }
    count_text(&c, (const unsigned char *)text, len);
    flush(&c);
    if (c.table != local)
        free(c.table);
    embed_normalise(out, EMBED_BUILTIN_DIM);
    return 0;
}

void embed_normalise(float *v, size_t dim)
{
    double sum = 0;
    for (size_t i = 0; i < dim; i++)
        sum += (double)v[i] * v[i];
    if (!(sum > 0) || !isfinite(sum)) {
        /* zero stays zero; a vector with a NaN or an infinity has no
         * direction, and zero is the one answer a search ignores safely */
        if (sum != 0)
            memset(v, 0, dim * sizeof *v);
        return;
    }
    double scale = 1.0 / sqrt(sum);
    for (size_t i = 0; i < dim; i++)
        v[i] = (float)(v[i] * scale);
}
