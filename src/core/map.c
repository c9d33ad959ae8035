/* String-keyed hash map. See map.h. */
#include "core/map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define MAP_INITIAL_BUCKETS 16

static size_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return (size_t)h;
}

void map_init(map *m)
{
    m->buckets = NULL;
    m->bucket_count = 0;
    m->count = 0;
}

void map_free(map *m)
{
    for (size_t i = 0; i < m->bucket_count; i++) {
        map_entry *e = m->buckets[i];
        while (e) {
            map_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    map_init(m);
}

static map_entry **find_slot(const map *m, const char *key, size_t hash)
{
    if (!m->bucket_count)
        return NULL;
    map_entry **slot = &m->buckets[hash & (m->bucket_count - 1)];
    while (*slot && ((*slot)->hash != hash || strcmp((*slot)->key, key) != 0))
        slot = &(*slot)->next;
    return slot;
}

void *map_get(const map *m, const char *key)
{
    map_entry **slot = find_slot(m, key, hash_key(key));
    return slot && *slot ? (*slot)->value : NULL;
}

static int grow(map *m)
{
    size_t count = m->bucket_count ? m->bucket_count * 2 : MAP_INITIAL_BUCKETS;
    map_entry **buckets = calloc(count, sizeof *buckets);
    if (!buckets)
        return CX_ENOMEM;
    for (size_t i = 0; i < m->bucket_count; i++) {
        map_entry *e = m->buckets[i];
        while (e) {
            map_entry *next = e->next;
            size_t b = e->hash & (count - 1);
            e->next = buckets[b];
            buckets[b] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = buckets;
    m->bucket_count = count;
    return 0;
}

int map_put(map *m, const char *key, void *value, void **old)
{
    size_t hash = hash_key(key);
    map_entry **slot = find_slot(m, key, hash);
    if (slot && *slot) {
        if (old)
            *old = (*slot)->value;
        (*slot)->value = value;
        return 0;
    }
    if (old)
        *old = NULL;
    if (m->count >= m->bucket_count && grow(m) < 0)
        return CX_ENOMEM;
    size_t len = strlen(key);
    map_entry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return CX_ENOMEM;
    memcpy(e->key, key, len + 1);
    e->hash = hash;
    e->value = value;
    size_t b = hash & (m->bucket_count - 1);
    e->next = m->buckets[b];
    m->buckets[b] = e;
    m->count++;
    return 0;
}

void *map_remove(map *m, const char *key)
{
    map_entry **slot = find_slot(m, key, hash_key(key));
    if (!slot || !*slot)
        return NULL;
    map_entry *e = *slot;
    void *value = e->value;
    *slot = e->next;
    free(e);
    m->count--;
    return value;
}

int map_foreach(const map *m, int (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->bucket_count; i++)
        for (map_entry *e = m->buckets[i]; e; e = e->next) {
            int rc = fn(e->key, e->value, arg);
            if (rc)
                return rc;
        }
    return 0;
}
