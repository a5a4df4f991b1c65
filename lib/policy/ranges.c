/*
 * fwx - interval maps: overlapping address or port ranges flattened once, at load, into sorted
 * disjoint intervals so that every lookup is a binary search.
 * SPDX-License-Identifier: MIT
 */
#include "policy/policy_impl.h"

#include <stdlib.h>

int fwx__u128_cmp(fwx__u128 a, fwx__u128 b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo)
        return a.lo < b.lo ? -1 : 1;
    return 0;
}

static fwx__u128 u128_sub(fwx__u128 a, fwx__u128 b)
{
    fwx__u128 r;
    r.lo = a.lo - b.lo;
    r.hi = a.hi - b.hi - (a.lo < b.lo ? 1u : 0u);
    return r;
}

static bool u128_is_max(fwx__u128 a)
{
    return a.hi == UINT64_MAX && a.lo == UINT64_MAX;
}

static fwx__u128 u128_inc(fwx__u128 a)
{
    a.lo++;
    if (a.lo == 0)
        a.hi++;
    return a;
}

static fwx__u128 u128_dec(fwx__u128 a)
{
    if (a.lo == 0)
        a.hi--;
    a.lo--;
    return a;
}

bool fwx__u128_from_sa(const struct sockaddr *sa, fwx__u128 *out)
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        out->hi = 0;
        out->lo = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        out->hi = 0;
        out->lo = 0;
        for (unsigned i = 0; i < 8; i++) {
            out->hi = out->hi << 8 | b[i];
            out->lo = out->lo << 8 | b[i + 8];
        }
        return true;
    }
    return false;
}

static int cmp_item_lo(const void *a, const void *b)
{
    const fwx__range_item *x = a, *y = b;
    return fwx__u128_cmp(x->lo, y->lo);
}

static int cmp_u128p(const void *a, const void *b)
{
    return fwx__u128_cmp(*(const fwx__u128 *)a, *(const fwx__u128 *)b);
}

/* Heap order: the most specific range (smallest, then lowest order) on top. */
static bool item_before(const fwx__range_item *a, const fwx__range_item *b)
{
    int c = fwx__u128_cmp(u128_sub(a->hi, a->lo), u128_sub(b->hi, b->lo));
    if (c != 0)
        return c < 0;
    return a->order < b->order;
}

static void heap_push(const fwx__range_item *items, uint32_t *heap, size_t *n, uint32_t v)
{
    size_t i = (*n)++;
    heap[i] = v;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!item_before(&items[heap[i]], &items[heap[parent]]))
            break;
        uint32_t t = heap[i];
        heap[i] = heap[parent];
        heap[parent] = t;
        i = parent;
    }
}

static void heap_pop(const fwx__range_item *items, uint32_t *heap, size_t *n)
{
    heap[0] = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < *n && item_before(&items[heap[l]], &items[heap[best]]))
            best = l;
        if (r < *n && item_before(&items[heap[r]], &items[heap[best]]))
            best = r;
        if (best == i)
            break;
        uint32_t t = heap[i];
        heap[i] = heap[best];
        heap[best] = t;
        i = best;
    }
}

int fwx__imap_build(fwx__range_item *items, size_t n, fwx__imap *out)
{
    out->v = NULL;
    out->n = 0;
    if (n == 0)
        return 0;
    if (n > UINT32_MAX / 2)
        return -1;
    qsort(items, n, sizeof *items, cmp_item_lo);

    /* Every point where the set of ranges holding an address changes: each start and each
       end + 1. Between two consecutive points the winner cannot change. */
    fwx__u128 *points = malloc(2 * n * sizeof *points);
    uint32_t *heap = malloc(n * sizeof *heap);
    fwx__interval *res = malloc(2 * n * sizeof *res);
    if (points == NULL || heap == NULL || res == NULL) {
        free(points);
        free(heap);
        free(res);
        return -1;
    }
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        points[np++] = items[i].lo;
        if (!u128_is_max(items[i].hi))
            points[np++] = u128_inc(items[i].hi);
    }
    qsort(points, np, sizeof *points, cmp_u128p);
    size_t nu = 0;
    for (size_t i = 0; i < np; i++)
        if (nu == 0 || fwx__u128_cmp(points[nu - 1], points[i]) != 0)
            points[nu++] = points[i];

    size_t nh = 0, next = 0, nr = 0;
    for (size_t i = 0; i < nu; i++) {
        fwx__u128 pt = points[i];
        while (next < n && fwx__u128_cmp(items[next].lo, pt) <= 0)
            heap_push(items, heap, &nh, (uint32_t)next++);
        /* Ranges that ended before pt leave lazily: only the top matters. */
        while (nh > 0 && fwx__u128_cmp(items[heap[0]].hi, pt) < 0)
            heap_pop(items, heap, &nh);
        if (nh == 0)
            continue;
        fwx__u128 end = i + 1 < nu ? u128_dec(points[i + 1]) : items[heap[0]].hi;
        uint32_t owner = items[heap[0]].owner;
        if (nr > 0 && res[nr - 1].owner == owner && !u128_is_max(res[nr - 1].hi) &&
            fwx__u128_cmp(u128_inc(res[nr - 1].hi), pt) == 0) {
            res[nr - 1].hi = end;
        } else {
            res[nr].lo = pt;
            res[nr].hi = end;
            res[nr].owner = owner;
            nr++;
        }
    }
    free(points);
    free(heap);
    if (nr == 0) {
        free(res);
        return 0;
    }
    fwx__interval *shrunk = realloc(res, nr * sizeof *res);
    out->v = shrunk != NULL ? shrunk : res;
    out->n = nr;
    return 0;
}

bool fwx__imap_find(const fwx__imap *m, fwx__u128 key, uint32_t *owner)
{
    /* The last interval starting at or before key is the only one that can hold it. */
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fwx__u128_cmp(m->v[mid].lo, key) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    const fwx__interval *iv = &m->v[lo - 1];
    if (fwx__u128_cmp(key, iv->hi) > 0)
        return false;
    if (owner != NULL)
        *owner = iv->owner;
    return true;
}

void fwx__imap_free(fwx__imap *m)
{
    free(m->v);
    m->v = NULL;
    m->n = 0;
}
