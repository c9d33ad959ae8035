/* A string-keyed hash map (chained, FNV-1a, grows at load 1).
 *
 * Keys are copied; values are the caller's pointers. Iteration order is
 * unspecified. Not thread-safe: each map belongs to one thread. */
#ifndef CAXTON_CORE_MAP_H
#define CAXTON_CORE_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct map_entry {
    struct map_entry *next;
    size_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
} map_entry;

typedef struct map {
    map_entry **buckets;
    size_t bucket_count;
    size_t count;
} map;

void map_init(map *m);
/* Frees the entries (not the values). */
void map_free(map *m);
void *map_get(const map *m, const char *key);
/* Inserts or replaces; 0 or CX_ENOMEM. *old (may be NULL) gets the replaced value. */
int map_put(map *m, const char *key, void *value, void **old);
/* Removes; returns the value or NULL. */
void *map_remove(map *m, const char *key);
/* Calls fn for each entry; stops when it returns non-zero (returned). fn must
 * not change the map. */
int map_foreach(const map *m, int (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
