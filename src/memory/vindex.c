/* The in-memory vector index. See vindex.h.
 *
 * Slots 0..count-1 are all in use: slot i holds the vector at
 * vecs[i * dim], the id ids[i] and the scope scopes[i]. Keeping them dense
 * (a removal moves the last slot into the hole) makes a search one pass over
 * contiguous memory, which is what bounds its speed. An open-addressing
 * table maps id -> slot for puts, removals and lookups. */
#include "memory/vindex.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VINDEX_HAVE_AVX2 1
#endif

#define INITIAL_SLOTS 16
#define INITIAL_MAP 32 /* entries; a power of two */
#define VEC_ALIGN 64   /* cache line: rows of a multiple-of-16 dim start on one */
#define NO_SLOT UINT32_MAX
#define SCAN_BLOCK 64 /* rows scored per kernel call */
#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_ARRAY_MIN ((size_t)8 << 20) /* below this, huge pages would waste memory */

typedef struct id_entry {
    int64_t id;
    uint32_t slot; /* NO_SLOT = empty entry */
} id_entry;

struct vindex {
    size_t dim;
    size_t count;
    size_t cap; /* slots allocated in vecs, ids and scopes */
    float *vecs;
    int64_t *ids;
    uint32_t *scopes;
    id_entry *map;
    size_t map_cap; /* a power of two, or 0 before the first put */
};

/* ---- kernels -------------------------------------------------------------
 *
 * A search is bound by memory bandwidth (100,000 x 384 floats is 150 MB per
 * query), so the kernels read rows strictly in order, which the hardware
 * prefetcher follows best; scoring several rows side by side was measured
 * slower. `dots` scores a block of consecutive rows so the scan makes one
 * indirect call per block, not per row. A row's sum is formed in the same
 * order by dots and dot1, so equal vectors always get equal scores and ties
 * are broken by id alone. */

typedef float (*dot1_fn)(const float *q, const float *r, size_t dim);
typedef void (*dots_fn)(const float *q, const float *rows, size_t dim, size_t n, float *out);

typedef struct kernel {
    const char *name;
    dot1_fn dot1;
    dots_fn dots;
} kernel;

/* Eight independent partial sums: no loop-carried dependency on one float,
 * so the compiler can keep them in vector registers without reassociating. */
static inline float dot_portable(const float *q, const float *r, size_t dim)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= dim; i += 8)
        for (size_t j = 0; j < 8; j++)
            acc[j] += q[i + j] * r[i + j];
    for (size_t j = 0; i + j < dim; j++)
        acc[j] += q[i + j] * r[i + j];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

static float dot1_portable(const float *q, const float *r, size_t dim)
{
    return dot_portable(q, r, dim);
}

static void dots_portable(const float *q, const float *rows, size_t dim, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = dot_portable(q, rows + i * dim, dim);
}

static const kernel portable_kernel = {"portable", dot1_portable, dots_portable};

#ifdef VINDEX_HAVE_AVX2
#define AVX2_TARGET __attribute__((target("avx2,fma")))

/* Lanes 8-n.. of this window are -1: the mask that loads the first n floats. */
static const int32_t tail_masks[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

AVX2_TARGET static inline __m256i tail_mask(size_t n)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)(tail_masks + 8 - n));
}

AVX2_TARGET static inline float hsum8(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* Four accumulators (32 floats per step) hide the latency of the
 * multiply-add; the last partial step uses masked loads, which never touch
 * the floats past the end of the row. */
AVX2_TARGET static inline float dot_avx2(const float *q, const float *r, size_t dim)
{
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(q + i), a);
        b = _mm256_fmadd_ps(_mm256_loadu_ps(r + i + 8), _mm256_loadu_ps(q + i + 8), b);
        c = _mm256_fmadd_ps(_mm256_loadu_ps(r + i + 16), _mm256_loadu_ps(q + i + 16), c);
        d = _mm256_fmadd_ps(_mm256_loadu_ps(r + i + 24), _mm256_loadu_ps(q + i + 24), d);
    }
    for (; i + 8 <= dim; i += 8)
        a = _mm256_fmadd_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(q + i), a);
    if (i < dim) {
        __m256i m = tail_mask(dim - i);
        b = _mm256_fmadd_ps(_mm256_maskload_ps(r + i, m), _mm256_maskload_ps(q + i, m), b);
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
}

AVX2_TARGET static float dot1_avx2(const float *q, const float *r, size_t dim)
{
    return dot_avx2(q, r, dim);
}

AVX2_TARGET static void dots_avx2(const float *q, const float *rows, size_t dim, size_t n,
                                  float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = dot_avx2(q, rows + i * dim, dim);
}

static const kernel avx2_kernel = {"avx2", dot1_avx2, dots_avx2};
#endif

static const kernel *detected_kernel = &portable_kernel;
static bool forced_portable;
static pthread_once_t kernel_once = PTHREAD_ONCE_INIT;

static void choose_kernel(void)
{
#ifdef VINDEX_HAVE_AVX2
    __builtin_cpu_init(); /* we may run before the constructors that set it up */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        detected_kernel = &avx2_kernel;
#endif
    const char *env = getenv("CAXTON_VINDEX_PORTABLE");
    if (env && strcmp(env, "1") == 0)
        detected_kernel = &portable_kernel;
}

static const kernel *current_kernel(void)
{
    pthread_once(&kernel_once, choose_kernel);
    return forced_portable ? &portable_kernel : detected_kernel;
}

const char *vindex_kernel(void)
{
    return current_kernel()->name;
}

void vindex_force_portable(bool on)
{
    forced_portable = on;
}

float vindex_dot(const float *a, const float *b, size_t dim)
{
    return current_kernel()->dot1(a, b, dim);
}

/* ---- id -> slot table (linear probing, load at most 1/2) ----------------- */

static size_t id_hash(int64_t id)
{
    /* splitmix64's finaliser: sequential ids spread over the whole table */
    uint64_t x = (uint64_t)id;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (size_t)x;
}

/* The entry holding id, or the empty entry where it would go. The table is
 * never more than half full, so the probe always ends. */
static size_t map_find(const vindex *vi, int64_t id)
{
    size_t mask = vi->map_cap - 1;
    size_t i = id_hash(id) & mask;
    while (vi->map[i].slot != NO_SLOT && vi->map[i].id != id)
        i = (i + 1) & mask;
    return i;
}

static uint32_t slot_of(const vindex *vi, int64_t id)
{
    return vi->map_cap ? vi->map[map_find(vi, id)].slot : NO_SLOT;
}

static id_entry *new_map(size_t cap)
{
    id_entry *map = malloc(cap * sizeof *map);
    if (map)
        for (size_t i = 0; i < cap; i++)
            map[i].slot = NO_SLOT;
    return map;
}

/* Makes room for one more id; on failure the table is untouched. */
static int map_reserve(vindex *vi)
{
    if ((vi->count + 1) * 2 <= vi->map_cap)
        return 0;
    size_t cap = vi->map_cap ? vi->map_cap * 2 : INITIAL_MAP;
    id_entry *map = new_map(cap);
    if (!map)
        return -1;
    id_entry *old = vi->map;
    size_t old_cap = vi->map_cap;
    vi->map = map;
    vi->map_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].slot != NO_SLOT)
            vi->map[map_find(vi, old[i].id)] = old[i];
    free(old);
    return 0;
}

/* Empties entry `hole` and shifts later entries of its probe run back, so
 * lookups never need tombstones. */
static void map_delete(vindex *vi, size_t hole)
{
    size_t mask = vi->map_cap - 1;
    for (size_t j = (hole + 1) & mask; vi->map[j].slot != NO_SLOT; j = (j + 1) & mask) {
        size_t home = id_hash(vi->map[j].id) & mask;
        /* the entry may move into the hole only if the hole lies on its
         * probe path, i.e. between its home and where it sits now */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            vi->map[hole] = vi->map[j];
            hole = j;
        }
    }
    vi->map[hole].slot = NO_SLOT;
}

/* ---- slots ---------------------------------------------------------------- */

static float *row(const vindex *vi, size_t slot)
{
    return vi->vecs + slot * vi->dim;
}

/* The vector array. A large one is aligned to and advised for huge pages:
 * a scan touches every page of it, and fewer TLB misses measured a few
 * percent faster. The advice is only a hint; without it the array works
 * the same. */
static float *alloc_vectors(size_t bytes)
{
    if (bytes < HUGE_ARRAY_MIN) /* a multiple of the alignment, as C11 wants */
        return aligned_alloc(VEC_ALIGN, (bytes + VEC_ALIGN - 1) / VEC_ALIGN * VEC_ALIGN);
    bytes = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    float *v = aligned_alloc(HUGE_PAGE, bytes);
#ifdef MADV_HUGEPAGE
    if (v)
        madvise(v, bytes, MADV_HUGEPAGE);
#endif
    return v;
}

/* Doubles the slot arrays; on failure everything stays as it was. */
static int grow_slots(vindex *vi)
{
    if (vi->cap >= VINDEX_MAX_COUNT)
        return -1;
    size_t cap = vi->cap ? vi->cap * 2 : INITIAL_SLOTS;
    if (cap > VINDEX_MAX_COUNT)
        cap = VINDEX_MAX_COUNT;
    if (cap > (SIZE_MAX - HUGE_PAGE) / sizeof(float) / vi->dim)
        return -1;
    float *vecs = alloc_vectors(cap * vi->dim * sizeof(float));
    int64_t *ids = malloc(cap * sizeof *ids);
    uint32_t *scopes = malloc(cap * sizeof *scopes);
    if (!vecs || !ids || !scopes) {
        free(vecs);
        free(ids);
        free(scopes);
        return -1;
    }
    if (vi->count) {
        memcpy(vecs, vi->vecs, vi->count * vi->dim * sizeof(float));
        memcpy(ids, vi->ids, vi->count * sizeof *ids);
        memcpy(scopes, vi->scopes, vi->count * sizeof *scopes);
    }
    free(vi->vecs);
    free(vi->ids);
    free(vi->scopes);
    vi->vecs = vecs;
    vi->ids = ids;
    vi->scopes = scopes;
    vi->cap = cap;
    return 0;
}

static void release(vindex *vi)
{
    free(vi->vecs);
    free(vi->ids);
    free(vi->scopes);
    free(vi->map);
    vi->vecs = NULL;
    vi->ids = NULL;
    vi->scopes = NULL;
    vi->map = NULL;
    vi->count = vi->cap = vi->map_cap = 0;
}

vindex *vindex_new(size_t dim)
{
    if (dim == 0 || dim > VINDEX_MAX_DIM)
        return NULL;
    vindex *vi = calloc(1, sizeof *vi);
    if (vi)
        vi->dim = dim;
    return vi;
}

void vindex_free(vindex *vi)
{
    if (!vi)
        return;
    release(vi);
    free(vi);
}

size_t vindex_dim(const vindex *vi)
{
    return vi->dim;
}

size_t vindex_count(const vindex *vi)
{
    return vi->count;
}

size_t vindex_bytes(const vindex *vi)
{
    return sizeof *vi + vi->cap * (vi->dim * sizeof(float) + sizeof(int64_t) + sizeof(uint32_t)) +
           vi->map_cap * sizeof(id_entry);
}

int vindex_put(vindex *vi, int64_t id, uint32_t scope, const float *vec)
{
    if (!vec)
        return -1;
    uint32_t slot = slot_of(vi, id);
    if (slot != NO_SLOT) { /* replace in place: nothing to allocate */
        memcpy(row(vi, slot), vec, vi->dim * sizeof(float));
        vi->scopes[slot] = scope;
        return 0;
    }
    if (vi->count == vi->cap && grow_slots(vi) < 0)
        return -1;
    if (map_reserve(vi) < 0)
        return -1;
    slot = (uint32_t)vi->count;
    memcpy(row(vi, slot), vec, vi->dim * sizeof(float));
    vi->ids[slot] = id;
    vi->scopes[slot] = scope;
    id_entry *e = &vi->map[map_find(vi, id)];
    e->id = id;
    e->slot = slot;
    vi->count++;
    return 0;
}

bool vindex_remove(vindex *vi, int64_t id)
{
    if (!vi->map_cap)
        return false;
    size_t pos = map_find(vi, id);
    uint32_t slot = vi->map[pos].slot;
    if (slot == NO_SLOT)
        return false;
    map_delete(vi, pos);
    size_t last = vi->count - 1;
    if (slot != last) { /* fill the hole with the last slot to stay dense */
        memcpy(row(vi, slot), row(vi, last), vi->dim * sizeof(float));
        vi->ids[slot] = vi->ids[last];
        vi->scopes[slot] = vi->scopes[last];
        vi->map[map_find(vi, vi->ids[slot])].slot = slot;
    }
    vi->count--;
    return true;
}

bool vindex_contains(const vindex *vi, int64_t id)
{
    return slot_of(vi, id) != NO_SLOT;
}

bool vindex_get(const vindex *vi, int64_t id, float *out)
{
    uint32_t slot = slot_of(vi, id);
    if (slot == NO_SLOT)
        return false;
    memcpy(out, row(vi, slot), vi->dim * sizeof(float));
    return true;
}

void vindex_clear(vindex *vi)
{
    /* memory goes back too: a cleared index is usually refilled from the
     * database, and doubling growth makes that cheap */
    release(vi);
}

/* ---- search --------------------------------------------------------------- */

/* The k best hits so far, as a heap whose root is the worst of them. `gate`
 * is the lowest score that can still get in: min_score until the heap is
 * full, then the root's score. The scan compares against it before touching
 * the heap, so most rows cost one comparison after their dot product. */
typedef struct topk {
    vindex_hit *heap;
    size_t n, k;
    float gate;
} topk;

static bool worse(const vindex_hit *a, const vindex_hit *b)
{
    return a->score < b->score || (a->score == b->score && a->id > b->id);
}

static void sift_up(vindex_hit *h, size_t i)
{
    vindex_hit x = h[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!worse(&x, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = x;
}

static void sift_down(vindex_hit *h, size_t n, size_t i)
{
    vindex_hit x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && worse(&h[c + 1], &h[c]))
            c++;
        if (!worse(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Called only for score >= gate (so never for NaN). */
static void topk_offer(topk *t, int64_t id, float score)
{
    vindex_hit hit = {id, score};
    if (t->n < t->k) {
        t->heap[t->n] = hit;
        sift_up(t->heap, t->n++);
        if (t->n == t->k)
            t->gate = t->heap[0].score;
        return;
    }
    if (!worse(&t->heap[0], &hit)) /* an equal score with a larger id */
        return;
    t->heap[0] = hit;
    sift_down(t->heap, t->n, 0);
    t->gate = t->heap[0].score;
}

/* Heap sort in place: repeatedly moving the worst to the end leaves the
 * array best first. */
static size_t topk_finish(topk *t)
{
    for (size_t m = t->n; m > 1; m--) {
        vindex_hit x = t->heap[0];
        t->heap[0] = t->heap[m - 1];
        t->heap[m - 1] = x;
        sift_down(t->heap, m - 1, 0);
    }
    return t->n;
}

/* Rows are scored a block at a time, then the block's scores are checked
 * against the gate. */
static void scan_all(const vindex *vi, const kernel *kn, const float *q, topk *t)
{
    float s[SCAN_BLOCK];
    for (size_t i = 0; i < vi->count; i += SCAN_BLOCK) {
        size_t n = vi->count - i < SCAN_BLOCK ? vi->count - i : SCAN_BLOCK;
        kn->dots(q, row(vi, i), vi->dim, n, s);
        for (size_t j = 0; j < n; j++)
            if (s[j] >= t->gate)
                topk_offer(t, vi->ids[i + j], s[j]);
    }
}

static bool scope_allowed(const vindex_filter *f, uint32_t scope)
{
    size_t lo = 0, hi = f->scope_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->scopes[mid] < scope)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->scope_count && f->scopes[lo] == scope;
}

/* Rows of a refused scope are skipped before their dot product. */
static void scan_filtered(const vindex *vi, const kernel *kn, const float *q,
                          const vindex_filter *f, topk *t)
{
    for (size_t i = 0; i < vi->count; i++) {
        if (!scope_allowed(f, vi->scopes[i]))
            continue;
        float x = kn->dot1(q, row(vi, i), vi->dim);
        if (x >= t->gate)
            topk_offer(t, vi->ids[i], x);
    }
}

size_t vindex_search(const vindex *vi, const float *query, size_t k, float min_score,
                     const vindex_filter *filter, vindex_hit *out)
{
    if (!query || !out || k == 0 || vi->count == 0)
        return 0;
    if (filter && (filter->scope_count == 0 || !filter->scopes))
        return 0; /* no scope may be read */
    if (k > VINDEX_K_MAX)
        k = VINDEX_K_MAX;
    /* the caller's array is the heap: no allocation per search */
    topk t = {out, 0, k, min_score};
    const kernel *kn = current_kernel();
    if (filter)
        scan_filtered(vi, kn, query, filter, &t);
    else
        scan_all(vi, kn, query, &t);
    return topk_finish(&t);
}
