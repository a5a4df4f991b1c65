/*
 * fwx - a small open-addressing table of object pointers by a 64-bit hash (util.h, fwx__omap).
 *
 * Why not uthash here: the nft backend keeps one record per kernel-carried flow, tens of
 * thousands at a time, and finds it again by its tuple when the flow ends. With uthash every
 * add, find and delete walks pointers stored in the records themselves (the bucket's chain and
 * the table-wide insertion list), and each of those records is a cache miss of its own: the hash
 * operations were nine tenths of the backend's own time per conntrack event (bench/README.md,
 * issue 13, part 6). Here the slots hold the hash next to the pointer, in one array: a probe
 * reads consecutive slots and touches a record only when the hashes are equal.
 *
 * Linear probing, the capacity a power of two, at most half full. A slot is empty when its
 * object is NULL. Deletion shifts the rest of the probe run back into the hole (no tombstones),
 * so a lookup stops at the first empty slot and never slows with churn.
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

#define OMAP_MIN_CAP 64u

static size_t home(const fwx__omap *m, uint64_t h) { return (size_t)(h & (m->cap - 1)); }

/* Places (h, v) in the first free slot of its probe run; the table has room. */
static void place(fwx__omap *m, uint64_t h, void *v)
{
    size_t i = home(m, h);
    while (m->slots[i].v != NULL)
        i = (i + 1) & (m->cap - 1);
    m->slots[i].h = h;
    m->slots[i].v = v;
}

static bool grow(fwx__omap *m)
{
    size_t cap = m->cap != 0 ? m->cap * 2 : OMAP_MIN_CAP;
    if (cap < m->cap || cap > SIZE_MAX / sizeof *m->slots)
        return false;
    fwx__omap_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = calloc(cap, sizeof *m->slots);
    if (m->slots == NULL) {
        m->slots = old;
        return false;
    }
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].v != NULL)
            place(m, old[i].h, old[i].v);
    free(old);
    return true;
}

bool fwx__omap_put(fwx__omap *m, uint64_t h, void *v)
{
    if (v == NULL)
        return false;
    if ((m->n + 1) * 2 > m->cap && !grow(m))
        return false;
    place(m, h, v);
    m->n++;
    return true;
}

void *fwx__omap_find(const fwx__omap *m, uint64_t h, bool (*eq)(const void *v, const void *key), const void *key)
{
    if (m->n == 0)
        return NULL;
    for (size_t i = home(m, h);; i = (i + 1) & (m->cap - 1)) {
        const fwx__omap_slot *s = &m->slots[i];
        if (s->v == NULL)
            return NULL; /* at most half full: an empty slot always ends the run */
        if (s->h == h && eq(s->v, key))
            return s->v;
    }
}

bool fwx__omap_del(fwx__omap *m, uint64_t h, const void *v)
{
    if (m->n == 0 || v == NULL)
        return false;
    size_t mask = m->cap - 1, i = home(m, h);
    while (m->slots[i].v != v) {
        if (m->slots[i].v == NULL)
            return false;
        i = (i + 1) & mask;
    }
    /* Backward shift: each later member of the run moves into the hole unless its home lies
       cyclically in (hole, its slot], where it would no longer be found from its home. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].v != NULL; j = (j + 1) & mask) {
        size_t k = home(m, m->slots[j].h);
        bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
        if (stays)
            continue;
        m->slots[hole] = m->slots[j];
        hole = j;
    }
    m->slots[hole].v = NULL;
    m->slots[hole].h = 0;
    m->n--;
    return true;
}

void *fwx__omap_any(const fwx__omap *m, size_t *cursor)
{
    for (size_t t = 0; m->n > 0 && t < m->cap; t++, (*cursor)++) {
        void *v = m->slots[*cursor & (m->cap - 1)].v;
        if (v != NULL)
            return v;
    }
    return NULL;
}

void fwx__omap_free(fwx__omap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

uint64_t fwx__hash_bytes(const void *p, size_t n)
{
    /* FNV-1a, then a finalizer that spreads every input bit over the low bits the table uses. */
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return fwx__hash_u64(h);
}
