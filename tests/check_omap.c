/*
 * fwx tests - the open-addressing table (lib/util/omap.c, util.h fwx__omap): put, find and
 * delete against a plain array kept alongside, with every object under one hash (the longest
 * probe runs), with a few hashes whose runs wrap past the end of the table, and with random
 * churn; fwx__omap_any ending every object while each end removes others.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "util/util.h"

#include <stdlib.h>

typedef struct obj {
    uint64_t key;
    uint64_t h;
    bool in;
} obj;

static bool eq(const void *v, const void *key) { return ((const obj *)v)->key == *(const uint64_t *)key; }

static obj *find(const fwx__omap *m, const obj *o) { return fwx__omap_find(m, o->h, eq, &o->key); }

/* Every object of objs is found exactly when it is in, and the count agrees. */
static void check_all(const fwx__omap *m, obj *objs, size_t n)
{
    size_t in = 0;
    for (size_t i = 0; i < n; i++) {
        obj *f = find(m, &objs[i]);
        ck_assert_msg(objs[i].in ? f == &objs[i] : f == NULL, "object %zu (hash %llu): %s", i,
                      (unsigned long long)objs[i].h, objs[i].in ? "lost" : "found after its delete");
        in += objs[i].in;
    }
    ck_assert_uint_eq(m->n, in);
}

START_TEST(one_hash)
{
    /* 200 objects under one hash: one run, every delete shifts the rest back. */
    enum { N = 200 };
    obj *o = calloc(N, sizeof *o);
    fwx__omap m = {0};
    for (size_t i = 0; i < N; i++) {
        o[i] = (obj){.key = i, .h = 7, .in = true};
        ck_assert(fwx__omap_put(&m, o[i].h, &o[i]));
    }
    check_all(&m, o, N);
    for (size_t i = 0; i < N; i += 3) { /* from the front, the middle and the end of the run */
        ck_assert(fwx__omap_del(&m, o[i].h, &o[i]));
        o[i].in = false;
        ck_assert(!fwx__omap_del(&m, o[i].h, &o[i])); /* not twice */
    }
    check_all(&m, o, N);
    fwx__omap_free(&m);
    ck_assert_uint_eq(m.n, 0);
    ck_assert_ptr_null(find(&m, &o[1])); /* freed: empty, and still usable */
    free(o);
}
END_TEST

START_TEST(runs_wrap_around)
{
    /* Hashes at the last slots of a 64-slot table: their runs continue at slot 0, where
       objects of their own home slot 0 and 1 mix in. Deletes on both sides of the wrap. */
    enum { N = 30 };
    obj o[N];
    fwx__omap m = {0};
    for (size_t i = 0; i < N; i++) {
        uint64_t homes[] = {62, 63, 0, 1};
        o[i] = (obj){.key = 1000 + i, .h = homes[i % 4] + 64 * (i / 4), .in = true}; /* same slot in 64 */
        ck_assert(fwx__omap_put(&m, o[i].h, &o[i]));
    }
    ck_assert_uint_eq(m.cap, 64); /* 30 of 64: no growth, so the runs do wrap */
    check_all(&m, o, N);
    size_t order[] = {0, 5, 2, 29, 1, 14, 3, 27, 8, 6};
    for (size_t i = 0; i < FWX__ARRAY_SIZE(order); i++) {
        obj *x = &o[order[i]];
        ck_assert(fwx__omap_del(&m, x->h, x));
        x->in = false;
        check_all(&m, o, N);
    }
    fwx__omap_free(&m);
}
END_TEST

START_TEST(random_churn)
{
    /* 20,000 objects, 200,000 random puts and deletes, hashes from a few bits (many shared),
       the table growing from empty; checked against the array every 10,000 steps. */
    enum { N = 20000 };
    obj *o = calloc(N, sizeof *o);
    fwx__omap m = {0};
    srand(12345);
    for (size_t i = 0; i < N; i++)
        o[i] = (obj){.key = i, .h = fwx__hash_u64((uint64_t)(rand() % 5000))};
    for (int step = 1; step <= 200000; step++) {
        obj *x = &o[(size_t)rand() % N];
        if (x->in) {
            ck_assert(fwx__omap_del(&m, x->h, x));
            x->in = false;
        } else {
            ck_assert(fwx__omap_put(&m, x->h, x));
            x->in = true;
        }
        ck_assert_uint_le(m.n * 2, m.cap);
        if (step % 10000 == 0)
            check_all(&m, o, N);
    }
    fwx__omap_free(&m);
    free(o);
}
END_TEST

/* Ending one object ends the next two as well (a flow whose end ends its session's others). */
static size_t ended;
static void end_one(fwx__omap *m, obj *all, obj *x)
{
    for (size_t k = 0; k < 3; k++) {
        obj *y = &all[(size_t)(x - all + (ptrdiff_t)k) % 1000];
        if (y->in) {
            ck_assert(fwx__omap_del(m, y->h, y));
            y->in = false;
            ended++;
        }
    }
}

START_TEST(any_ends_all)
{
    enum { N = 1000 };
    obj *o = calloc(N, sizeof *o);
    fwx__omap m = {0};
    for (size_t i = 0; i < N; i++) {
        o[i] = (obj){.key = i, .h = fwx__hash_u64(i % 97), .in = true};
        ck_assert(fwx__omap_put(&m, o[i].h, &o[i]));
    }
    size_t cursor = 0, calls = 0;
    obj *x;
    ended = 0;
    while ((x = fwx__omap_any(&m, &cursor)) != NULL) {
        ck_assert(x->in);
        end_one(&m, o, x);
        ck_assert_uint_le(++calls, N);
    }
    ck_assert_uint_eq(ended, N);
    ck_assert_uint_eq(m.n, 0);
    /* One pass over the table in all (each object is looked at from the cursor, which only
       moves forward), plus at most one more turn for objects shifted back behind it. */
    ck_assert_uint_le(cursor, 2 * m.cap);
    fwx__omap_free(&m);
    free(o);
}
END_TEST

START_TEST(hash_bytes_spreads)
{
    /* Tuples that differ in one byte (a port) land in different low bits: over 4,096 of them,
       a 4,096-slot table's home slots are nearly all distinct (a weak hash would pile up). */
    enum { N = 4096 };
    static unsigned char seen[N];
    unsigned distinct = 0;
    for (unsigned i = 0; i < N; i++) {
        unsigned char key[44] = {6, 0, 0, 0, 2, 0, 10, 99, 1, 2};
        key[12] = (unsigned char)(i >> 8);
        key[13] = (unsigned char)i;
        uint64_t h = fwx__hash_bytes(key, sizeof key) & (N - 1);
        distinct += !seen[h];
        seen[h] = 1;
    }
    ck_assert_uint_ge(distinct, N * 6 / 10); /* random placement gives 1 - 1/e: about 63 % */
    ck_assert(fwx__hash_bytes("a", 1) != fwx__hash_bytes("b", 1));
}
END_TEST

static Suite *suite(void)
{
    const tu_case cases[] = {
        {"one hash", one_hash},
        {"runs wrap around", runs_wrap_around},
        {"random churn", random_churn},
        {"any ends all", any_ends_all},
        {"hash bytes spreads", hash_bytes_spreads},
    };
    return TU_SUITE("omap", cases, 30);
}

int main(void) { return tu_run_suite(suite()); }
