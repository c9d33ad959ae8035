/* The in-memory vector index: every embedding of the memory database in one
 * contiguous float32 array, searched by an exact scan.
 *
 * Vectors are L2-normalised by the caller, so cosine similarity is a dot
 * product. The scan runs with AVX2+FMA when the CPU has them (chosen once at
 * run time) and a portable loop otherwise; both give the same ranking up to
 * float rounding. Each slot carries the entity id and a small scope number so
 * a search can skip the scopes the caller may not read without a lookup.
 *
 * Not thread-safe: one owner (the memory store, on the loop thread). */
#ifndef CAXTON_MEMORY_VINDEX_H
#define CAXTON_MEMORY_VINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VINDEX_MAX_DIM 8192 /* the largest embedding a provider may answer (llm.h) */
/* Most hits one search returns; a larger k is clamped to it. */
#define VINDEX_K_MAX 1000
/* Most vectors one index holds (slots are 32-bit). */
#define VINDEX_MAX_COUNT (UINT32_C(1) << 30)

typedef struct vindex vindex;

typedef struct vindex_hit {
    int64_t id;
    float score; /* dot product = cosine for normalised vectors */
} vindex_hit;

/* Which scope numbers a search may return: a caller-supplied predicate over
 * the small scope number stored with each vector. NULL = every scope. */
typedef struct vindex_filter {
    const uint32_t *scopes; /* sorted ascending */
    size_t scope_count;
} vindex_filter;

vindex *vindex_new(size_t dim);
void vindex_free(vindex *vi);
size_t vindex_dim(const vindex *vi);
size_t vindex_count(const vindex *vi);
/* Bytes held by the arrays (for resource-usage). */
size_t vindex_bytes(const vindex *vi);

/* Inserts or replaces the vector of `id`. Returns 0, or -1 when out of
 * memory or holding VINDEX_MAX_COUNT vectors already (the index is
 * unchanged). */
int vindex_put(vindex *vi, int64_t id, uint32_t scope, const float *vec);
/* Removes `id`; returns true when it was there. */
bool vindex_remove(vindex *vi, int64_t id);
bool vindex_contains(const vindex *vi, int64_t id);
/* Copies the stored vector of `id` into out (dim floats); false if absent. */
bool vindex_get(const vindex *vi, int64_t id, float *out);
void vindex_clear(vindex *vi);

/* The k best vectors for `query` (dim floats, normalised), best first, ties
 * broken by smaller id. Writes up to k hits to out and returns how many.
 * Vectors scoring below min_score are left out. */
size_t vindex_search(const vindex *vi, const float *query, size_t k, float min_score,
                     const vindex_filter *filter, vindex_hit *out);

/* The dot product the scan uses (exposed for tests and the benchmark). */
float vindex_dot(const float *a, const float *b, size_t dim);
/* "avx2" or "portable": the kernel chosen for this CPU. Setting the
 * environment variable CAXTON_VINDEX_PORTABLE=1 before the first search
 * forces the portable kernel (the variable is read once). */
const char *vindex_kernel(void);
/* Test hook: true forces the portable kernel, false returns to the one chosen
 * for this CPU. Not thread-safe; call it only while no search runs. */
void vindex_force_portable(bool on);

#endif
