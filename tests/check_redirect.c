/*
 * fwx tests - redirect tracking: handles (one per provider), the four states for every chain
 * of up to three providers, contexts returned only to "self" and freed exactly once, pushes
 * refused as loops with one log line, the wire form and its strict parser, the destination
 * check against fwx's own listeners, and a record carried by a real connection.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "core/internal.h" /* only to plant a bound port in the port table */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- fixture ------------------------------------------------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    fwx_firewall *fw;
} fx;

static void fx_open_with(fx *f, fwx_firewall_options *o)
{
    memset(f, 0, sizeof *f);
    o->log = tu_log_capture;
    o->log_level = FWX_LOG_DEBUG;
    tu_fw_open(&f->loop, o, &f->fw);
    tu_log_reset();
}

static void fx_open(fx *f)
{
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    fx_open_with(f, &o);
}

static void fx_close(fx *f) { tu_fw_close(&f->loop, &f->fw); }

/* Providers A, B, C, D: GUIDs that differ in their last byte. */
static fwx_guid provider(int i)
{
    fwx_guid g = FWX_GUID_INIT(0x7e, 0xd1, 0x2e, 0xc7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    g.bytes[15] = (uint8_t)(i + 1);
    return g;
}

static fwx_redirect_handle *handle_of(fx *f, int i)
{
    fwx_guid g = provider(i);
    fwx_redirect_handle *h = NULL;
    TU_EXPECT_HR(fwx_redirect_handle_create(f->fw, &g, 0, &h), FWX_S_OK);
    ck_assert_ptr_nonnull(h);
    return h;
}

/* fx_open, and the handles of providers 0..n-1 in h. */
static void fx_open_handles(fx *f, fwx_redirect_handle **h, int n)
{
    fx_open(f);
    for (int i = 0; i < n; i++)
        h[i] = handle_of(f, i);
}

/* Destroys the n handles of h, then fx_close. */
static void fx_close_handles(fx *f, fwx_redirect_handle *const *h, int n)
{
    for (int i = 0; i < n; i++)
        fwx_redirect_handle_destroy(h[i]);
    fx_close(f);
}
#define FX_CLOSE_WITH(f, ...)                                                                     \
    fx_close_handles((f), (fwx_redirect_handle *const[]){__VA_ARGS__},                            \
                     (int)(sizeof((fwx_redirect_handle *const[]){__VA_ARGS__}) / sizeof(fwx_redirect_handle *)))

static fwx_redirect_record *record_to(const char *dst)
{
    struct sockaddr_storage d = tu_addr(dst);
    fwx_redirect_record *rec = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), tu_len(&d), NULL, &rec), FWX_S_OK);
    ck_assert_ptr_nonnull(rec);
    return rec;
}

/* Contexts are slots of this array; the free callback counts how often each slot is freed. */
static int freed[64];
static void count_free(void *ctx) { (*(int *)ctx)++; }
static void *ctx_slot(int i) { return &freed[i]; }

/* ---- the four states -------------------------------------------------------------------- */

/* What W1-W4 (doc/sdk-rules.md) say the state of `chain` (provider indexes, oldest first) is
   for provider h. */
static fwx_redirect_state expected_state(const int *chain, int n, int h)
{
    if (n == 0)
        return FWX_REDIRECT_NOT_REDIRECTED;
    if (chain[n - 1] == h)
        return FWX_REDIRECT_BY_SELF;
    for (int i = 0; i < n - 1; i++)
        if (chain[i] == h)
            return FWX_REDIRECT_PREVIOUSLY_BY_SELF;
    return FWX_REDIRECT_BY_OTHER;
}

START_TEST(states_for_every_chain_up_to_three)
{
    fx f;
    fwx_redirect_handle *h[4];
    fx_open_handles(&f, h, 4);
    /* Every chain of 0..3 distinct providers out of A, B, C (D never redirects: "other"). */
    int chains[16][3], lens[16], n_chains = 0;
    lens[n_chains++] = 0;
    for (int a = 0; a < 3; a++) {
        chains[n_chains][0] = a;
        lens[n_chains++] = 1;
        for (int b = 0; b < 3; b++) {
            if (b == a)
                continue;
            chains[n_chains][0] = a, chains[n_chains][1] = b;
            lens[n_chains++] = 2;
            for (int c = 0; c < 3; c++) {
                if (c == a || c == b)
                    continue;
                chains[n_chains][0] = a, chains[n_chains][1] = b, chains[n_chains][2] = c;
                lens[n_chains++] = 3;
            }
        }
    }
    ck_assert_int_eq(n_chains, 16);
    memset(freed, 0, sizeof freed);
    for (int k = 0; k < n_chains; k++) {
        fwx_redirect_record *rec = record_to("192.0.2.10:443");
        for (int i = 0; i < lens[k]; i++) /* context of hop i of chain k: slot k * 3 + i */
            TU_EXPECT_HR(fwx_redirect_record_push(rec, h[chains[k][i]], ctx_slot(k * 3 + i), count_free), FWX_S_OK);
        ck_assert_uint_eq(fwx_redirect_record_hop_count(rec), (size_t)lens[k]);
        for (int p = 0; p < 4; p++) {
            void *ctx = (void *)&ctx; /* must be overwritten */
            fwx_redirect_state want = expected_state(chains[k], lens[k], p);
            fwx_redirect_state got = fwx_redirect_query(rec, h[p], &ctx);
            ck_assert_msg(got == want, "chain %d (len %d), provider %d: state %d, expected %d", k, lens[k], p,
                          (int)got, (int)want);
            /* The context only in the two "self" states, and it is that provider's hop's. */
            void *want_ctx = NULL;
            for (int i = 0; i < lens[k]; i++)
                if (chains[k][i] == p && (want == FWX_REDIRECT_BY_SELF || want == FWX_REDIRECT_PREVIOUSLY_BY_SELF))
                    want_ctx = ctx_slot(k * 3 + i);
            ck_assert_ptr_eq(ctx, want_ctx);
            ck_assert_int_eq(fwx_redirect_query(rec, h[p], NULL), want); /* context is optional */
        }
        /* No handle: anything redirected is "by other". */
        ck_assert_int_eq(fwx_redirect_query(rec, NULL, NULL),
                         lens[k] ? FWX_REDIRECT_BY_OTHER : FWX_REDIRECT_NOT_REDIRECTED);
        for (int i = 0; i < lens[k]; i++) {
            fwx_redirect_hop hop = {.struct_size = sizeof hop};
            TU_EXPECT_HR(fwx_redirect_record_hop(rec, (size_t)i, &hop), FWX_S_OK);
            ck_assert_uint_eq(hop.struct_size, sizeof hop);
            fwx_guid g = provider(chains[k][i]);
            ck_assert(fwx_guid_equal(&hop.provider, &g));
            ck_assert_ptr_eq(hop.handle, h[chains[k][i]]);
            ck_assert_int_eq(hop.target.ss_family, AF_UNSPEC);
        }
        fwx_redirect_hop hop = {.struct_size = sizeof hop};
        TU_EXPECT_HR(fwx_redirect_record_hop(rec, (size_t)lens[k], &hop), FWX_E_INVALIDARG);
        fwx_redirect_record_unref(rec);
        for (int i = 0; i < lens[k]; i++)
            ck_assert_int_eq(freed[k * 3 + i], 1);
    }
    void *ctx = (void *)&ctx;
    ck_assert_int_eq(fwx_redirect_query(NULL, h[0], &ctx), FWX_REDIRECT_NOT_REDIRECTED);
    ck_assert_ptr_null(ctx);
    for (int i = 0; i < 48; i++)
        ck_assert_int_eq(freed[i], i % 3 < (i / 3 < n_chains ? lens[i / 3] : 0) ? 1 : 0);
    fx_close_handles(&f, h, 4);
}
END_TEST

/* W2, W4: a provider never redirects a connection twice; the refusal is logged once. */
START_TEST(push_refused_in_self_states)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *a = handle_of(&f, 0), *b = handle_of(&f, 1), *c = handle_of(&f, 2);
    memset(freed, 0, sizeof freed);
    fwx_redirect_record *rec = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, ctx_slot(0), count_free), FWX_S_OK);

    /* BY_SELF */
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, ctx_slot(1), count_free), FWX_E_REDIRECT_LOOP);
    ck_assert_int_eq(tu_log_count("already redirected by this provider", "192.0.2.10:80"), 1);
    ck_assert_int_eq(tu_log_count("redirect handle {7ed12ec7-", NULL), 1);
    ck_assert_uint_eq(fwx_redirect_record_hop_count(rec), 1);

    /* BY_OTHER: allowed (W3 leaves the trust decision to the party). */
    TU_EXPECT_HR(fwx_redirect_record_push(rec, b, ctx_slot(2), count_free), FWX_S_OK);

    /* PREVIOUSLY_BY_SELF for a, BY_SELF for b: both refused. */
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, ctx_slot(3), count_free), FWX_E_REDIRECT_LOOP);
    ck_assert_int_eq(tu_log_count("previously redirected by this provider (hop 1 of 2)", NULL), 1);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, b, ctx_slot(4), count_free), FWX_E_REDIRECT_LOOP);
    ck_assert_int_eq(tu_log_count("already redirected by this provider (hop 2 of 2)", NULL), 1);
    ck_assert_int_eq(tu_log_count("not redirecting it again", NULL), 3);
    ck_assert_uint_eq(fwx_redirect_record_hop_count(rec), 2);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, c, NULL, NULL), FWX_S_OK);

    /* A refused context stays the caller's: never freed by fwx. */
    fwx_redirect_record_unref(rec);
    ck_assert_int_eq(freed[0], 1);
    ck_assert_int_eq(freed[1], 0);
    ck_assert_int_eq(freed[2], 1);
    ck_assert_int_eq(freed[3], 0);
    ck_assert_int_eq(freed[4], 0);

    TU_EXPECT_HR(fwx_redirect_record_push(NULL, a, NULL, NULL), FWX_E_POINTER);
    rec = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_redirect_record_push(rec, NULL, NULL, NULL), FWX_E_POINTER);
    fwx_redirect_record_unref(rec);
    FX_CLOSE_WITH(&f, a, b, c);
}
END_TEST

/* A chain never grows past FWX_REDIRECT_MAX_HOPS: the 17th distinct provider is taken for a loop. */
START_TEST(chain_is_bounded)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *h[FWX_REDIRECT_MAX_HOPS + 1];
    fwx_redirect_record *rec = record_to("[2001:db8::5]:8080");
    for (int i = 0; i <= FWX_REDIRECT_MAX_HOPS; i++) {
        h[i] = handle_of(&f, i);
        TU_EXPECT_HR(fwx_redirect_record_push(rec, h[i], NULL, NULL),
                     i < FWX_REDIRECT_MAX_HOPS ? FWX_S_OK : FWX_E_REDIRECT_LOOP);
    }
    ck_assert_uint_eq(fwx_redirect_record_hop_count(rec), FWX_REDIRECT_MAX_HOPS);
    ck_assert_int_eq(tu_log_count("redirected 16 times already", "[2001:db8::5]:8080"), 1);
    fwx_redirect_record_unref(rec);
    fx_close_handles(&f, h, FWX_REDIRECT_MAX_HOPS + 1);
}
END_TEST

/* ---- contexts ------------------------------------------------------------------------------ */

START_TEST(contexts_freed_once_with_the_record)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *a = handle_of(&f, 0), *b = handle_of(&f, 1);
    memset(freed, 0, sizeof freed);
    fwx_redirect_record *rec = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, ctx_slot(0), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, b, ctx_slot(1), count_free), FWX_S_OK);
    ck_assert_ptr_eq(fwx_redirect_record_ref(rec), rec);
    ck_assert_ptr_eq(fwx_redirect_record_ref(rec), rec);
    fwx_redirect_record_unref(rec);
    fwx_redirect_record_unref(rec);
    ck_assert_int_eq(freed[0] + freed[1], 0); /* one reference left */
    fwx_redirect_record_unref(rec);
    ck_assert_int_eq(freed[0], 1);
    ck_assert_int_eq(freed[1], 1);
    ck_assert_ptr_null(fwx_redirect_record_ref(NULL));
    fwx_redirect_record_unref(NULL);

    /* Real allocations freed by free(): LSan in the ASan build catches a context never freed. */
    rec = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, strdup("a's context"), free), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, b, malloc(100), free), FWX_S_OK);
    fwx_redirect_record_unref(rec);

    FX_CLOSE_WITH(&f, a, b);
}
END_TEST

/* Destroying a handle frees its contexts now (fwx never calls an unloaded plugin later); its hops
   keep their provider, so the states do not change, but the context is gone. */
START_TEST(handle_destroy_frees_its_contexts_early)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *a = handle_of(&f, 0), *b = handle_of(&f, 1);
    memset(freed, 0, sizeof freed);
    fwx_redirect_record *r1 = record_to("192.0.2.10:80"), *r2 = record_to("192.0.2.11:80");
    TU_EXPECT_HR(fwx_redirect_record_push(r1, a, ctx_slot(0), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(r1, b, ctx_slot(1), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(r2, a, ctx_slot(2), count_free), FWX_S_OK);
    fwx_redirect_handle_destroy(a);
    ck_assert_int_eq(freed[0], 1);
    ck_assert_int_eq(freed[1], 0);
    ck_assert_int_eq(freed[2], 1);
    fwx_redirect_hop hop = {.struct_size = sizeof hop};
    TU_EXPECT_HR(fwx_redirect_record_hop(r1, 0, &hop), FWX_S_OK);
    ck_assert_ptr_null(hop.handle);

    /* The provider comes back with a new handle: still "self", but no context. */
    a = handle_of(&f, 0);
    void *ctx = (void *)&ctx;
    ck_assert_int_eq(fwx_redirect_query(r1, a, &ctx), FWX_REDIRECT_PREVIOUSLY_BY_SELF);
    ck_assert_ptr_null(ctx);
    ctx = (void *)&ctx;
    ck_assert_int_eq(fwx_redirect_query(r2, a, &ctx), FWX_REDIRECT_BY_SELF);
    ck_assert_ptr_null(ctx);
    TU_EXPECT_HR(fwx_redirect_record_push(r2, a, ctx_slot(3), count_free), FWX_E_REDIRECT_LOOP);

    fwx_redirect_record_unref(r1);
    fwx_redirect_record_unref(r2);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(freed[i], 1); /* never twice */
    ck_assert_int_eq(freed[3], 0);
    FX_CLOSE_WITH(&f, a, b, NULL); /* destroying NULL is harmless */
}
END_TEST

/* ---- handles ------------------------------------------------------------------------------- */

START_TEST(handle_one_per_provider)
{
    fx f;
    fx_open(&f);
    fwx_guid g = provider(0), null = FWX_GUID_NULL;
    fwx_redirect_handle *a = NULL, *again = (fwx_redirect_handle *)&g;
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, &g, 0, &a), FWX_S_OK);
    ck_assert(fwx_guid_equal(fwx_redirect_handle_provider(a), &g));
    ck_assert_ptr_null(fwx_redirect_handle_provider(NULL));
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, &g, 0, &again), FWX_E_ALREADY_EXISTS_WIN32);
    ck_assert_ptr_null(again);
    ck_assert_int_eq(tu_log_count("the provider already has a handle", NULL), 1);
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, &null, 0, &again), FWX_E_INVALIDARG);
    fwx_guid g2 = provider(1);
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, &g2, 1, &again), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, &g2, 0, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_handle_create(NULL, &g2, 0, &again), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, NULL, 0, &again), FWX_E_POINTER);
    ck_assert_ptr_null(again);

    /* Another firewall is another namespace of handles. */
    fx f2;
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    memset(&f2, 0, sizeof f2);
    ck_assert_int_eq(uv_loop_init(&f2.loop), 0);
    TU_EXPECT_HR(fwx_firewall_new(&f2.loop, &o, &f2.fw), FWX_S_OK);
    fwx_redirect_handle *other = NULL;
    TU_EXPECT_HR(fwx_redirect_handle_create(f2.fw, &g, 0, &other), FWX_S_OK);
    fwx_redirect_handle_destroy(other);
    fx_close(&f2);

    /* Once destroyed, the provider may create its handle again. */
    fwx_redirect_handle_destroy(a);
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, &g, 0, &a), FWX_S_OK);
    fwx_redirect_handle_destroy(a);
    fx_close(&f);
}
END_TEST

static int close_cb_ran;
static void on_closed(fwx_firewall *fw, void *arg)
{
    (void)fw;
    (void)arg;
    close_cb_ran++;
}

/* A handle its owner forgot is destroyed (and its contexts freed) when the firewall goes. */
START_TEST(leftover_handle_destroyed_with_firewall)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *a = handle_of(&f, 0);
    memset(freed, 0, sizeof freed);
    fwx_redirect_record *rec = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, ctx_slot(0), count_free), FWX_S_OK);
    fwx_guid g = provider(1);
    fwx_redirect_handle *late = NULL;
    fwx_firewall_close(f.fw, on_closed, NULL);
    TU_EXPECT_HR(fwx_redirect_handle_create(f.fw, &g, 0, &late), FWX_E_TERMINATING);
    tu_loop_close_clean(&f.loop);
    ck_assert_int_eq(close_cb_ran, 1);
    ck_assert_int_eq(freed[0], 1);
    ck_assert_int_eq(tu_log_count("never destroyed, destroying it with firewall", NULL), 1);
    /* The record outlives the firewall; its hop keeps the provider. */
    ck_assert_int_eq(fwx_redirect_query(rec, NULL, NULL), FWX_REDIRECT_BY_OTHER);
    fwx_redirect_record_unref(rec);
    ck_assert_int_eq(freed[0], 1);
}
END_TEST

/* ---- records ------------------------------------------------------------------------------- */

START_TEST(record_fields_and_validation)
{
    fwx_redirect_record *rec = NULL;
    struct sockaddr_storage d = tu_addr("[::ffff:192.0.2.7]:25");
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), tu_len(&d), NULL, &rec), FWX_S_OK);
    struct sockaddr_storage got;
    TU_EXPECT_HR(fwx_redirect_record_original_destination(rec, &got), FWX_S_OK);
    ck_assert_int_eq(got.ss_family, AF_INET); /* v4-mapped is the IPv4 host */
    fwx_redirect_app app = {.struct_size = sizeof app};
    TU_EXPECT_HR(fwx_redirect_record_original_app(rec, &app), FWX_S_FALSE);
    ck_assert_uint_eq(app.pid, 0);
    ck_assert_uint_eq(app.uid, FWX_REDIRECT_UID_UNKNOWN);
    ck_assert_ptr_null(app.cgroup_path);
    fwx_redirect_record_unref(rec);

    /* Forwarded traffic: nothing known at all. */
    TU_EXPECT_HR(fwx_redirect_record_new(NULL, 0, NULL, &rec), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_original_destination(rec, &got), FWX_S_FALSE);
    ck_assert_int_eq(got.ss_family, AF_UNSPEC);
    fwx_redirect_record_unref(rec);

    char path[FWX_REDIRECT_CGROUP_PATH_MAX + 2];
    memset(path, 'x', sizeof path);
    path[0] = '/';
    path[FWX_REDIRECT_CGROUP_PATH_MAX] = '\0'; /* exactly the maximum */
    fwx_redirect_app in = {sizeof in, 4242, 1000, 0, 77, path};
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), tu_len(&d), &in, &rec), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_original_app(rec, &app), FWX_S_OK);
    ck_assert_uint_eq(app.struct_size, sizeof app);
    ck_assert_uint_eq(app.pid, 4242);
    ck_assert_uint_eq(app.uid, 1000);
    ck_assert_uint_eq(app.cgroup_id, 77);
    ck_assert_str_eq(app.cgroup_path, path);
    ck_assert_ptr_ne(app.cgroup_path, path); /* copied */
    fwx_redirect_record_unref(rec);

    rec = (fwx_redirect_record *)&d;
    path[FWX_REDIRECT_CGROUP_PATH_MAX] = 'x'; /* one too long */
    path[FWX_REDIRECT_CGROUP_PATH_MAX + 1] = '\0';
    TU_EXPECT_HR(fwx_redirect_record_new(NULL, 0, &in, &rec), FWX_E_INVALIDARG);
    ck_assert_ptr_null(rec);
    in.cgroup_path = "";
    TU_EXPECT_HR(fwx_redirect_record_new(NULL, 0, &in, &rec), FWX_E_INVALIDARG);
    in.cgroup_path = NULL;
    in.reserved = 1;
    TU_EXPECT_HR(fwx_redirect_record_new(NULL, 0, &in, &rec), FWX_E_INVALIDARG);
    in.reserved = 0;
    in.struct_size = 8;
    TU_EXPECT_HR(fwx_redirect_record_new(NULL, 0, &in, &rec), FWX_E_INVALIDARG);
    struct sockaddr_storage noport = tu_addr("192.0.2.7");
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(noport), tu_len(&noport), NULL, &rec), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), 4, NULL, &rec), FWX_E_INVALIDARG); /* short length */
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    TU_EXPECT_HR(fwx_redirect_record_new(&unix_sa, sizeof unix_sa, NULL, &rec), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_redirect_record_new(NULL, 0, NULL, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_record_original_destination(NULL, &got), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_record_original_app(NULL, &app), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_record_hop(NULL, 0, NULL), FWX_E_POINTER);
    ck_assert_uint_eq(fwx_redirect_record_hop_count(NULL), 0);
}
END_TEST

/* ---- loops through addresses -------------------------------------------------------------- */

START_TEST(push_to_a_target_already_passed)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *a = handle_of(&f, 0), *b = handle_of(&f, 1), *c = handle_of(&f, 2);
    fwx_redirect_record *rec = record_to("192.0.2.10:80");
    struct sockaddr_storage ta = tu_addr("127.0.0.1:15001"), tb = tu_addr("127.0.0.1:3128");
    struct sockaddr_storage bad = tu_addr("127.0.0.1");
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, a, TU_SA(bad), tu_len(&bad), NULL, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, a, TU_SA(ta), tu_len(&ta), NULL, NULL), FWX_S_OK);
    /* b would send it back into a's listener. */
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, b, TU_SA(ta), tu_len(&ta), NULL, NULL), FWX_E_REDIRECT_LOOP);
    ck_assert_int_eq(tu_log_count("would go back to 127.0.0.1:15001", "at hop 1"), 1);
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, b, TU_SA(tb), tu_len(&tb), NULL, NULL), FWX_S_OK);
    fwx_redirect_hop hop = {.struct_size = sizeof hop};
    TU_EXPECT_HR(fwx_redirect_record_hop(rec, 1, &hop), FWX_S_OK);
    ck_assert(fwx_guid_equal(&hop.provider, fwx_redirect_handle_provider(b)));
    struct sockaddr_in *t4 = (struct sockaddr_in *)&hop.target;
    ck_assert_int_eq(t4->sin_family, AF_INET);
    ck_assert_uint_eq(ntohs(t4->sin_port), 3128);

    /* Onward: not into a proxy already passed; the original destination is fine. */
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, rec, FWX_PROTOCOL_TCP, TU_SA(tb), tu_len(&tb)),
                 FWX_E_REDIRECT_LOOP);
    ck_assert_int_eq(tu_log_count("127.0.0.1:3128 is where provider", "it would loop back"), 1);
    struct sockaddr_storage dst = tu_addr("192.0.2.10:80");
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, rec, FWX_PROTOCOL_TCP, TU_SA(dst), tu_len(&dst)), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, NULL, FWX_PROTOCOL_TCP, TU_SA(tb), tu_len(&tb)), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, rec, 47, TU_SA(dst), tu_len(&dst)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, rec, FWX_PROTOCOL_TCP, TU_SA(bad), tu_len(&bad)),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_redirect_check_destination(NULL, rec, FWX_PROTOCOL_TCP, TU_SA(dst), tu_len(&dst)),
                 FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, c, NULL, 0, NULL, NULL), FWX_S_OK);
    fwx_redirect_record_unref(rec);
    FX_CLOSE_WITH(&f, a, b, c);
}
END_TEST

/* Connecting onward to fwx's own listener would bring the flow straight back (a mesh's
   self-connection loop): a real publishing listener of the proxy backend, and a bound port. */
START_TEST(destination_is_own_listener)
{
    static struct sockaddr_storage local;
    local = tu_addr("127.0.0.1");
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.local_addresses = &local;
    o.n_local_addresses = 1;
    o.loopback_hosts = 1;
    fx f;
    fx_open_with(&f, &o);
    TU_EXPECT_HR(fwx_firewall_set_backend(f.fw, "proxy"), FWX_S_OK);
    uint16_t lp = tu_free_port("127.0.0.1"), sp = tu_free_port("127.0.0.3");
    fwx_policy *p = NULL;
    fwx_config_error err;
    fwx_result hr = fwx_policy_load_string(tu_publish_policy(lp, sp), "test policy", &p, &err);
    ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s: %s", err.file, err.line, err.key, err.message);
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, p), FWX_S_OK);

    fwx_redirect_record *rec = record_to("192.0.2.10:80");
    char text[64];
    snprintf(text, sizeof text, "127.0.0.1:%u", lp);
    struct sockaddr_storage own = tu_addr(text);
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, rec, FWX_PROTOCOL_TCP, TU_SA(own), tu_len(&own)),
                 FWX_E_REDIRECT_LOOP);
    ck_assert_int_eq(tu_log_count(text, "is a publishing listener of fwx, it would loop back"), 1);
    /* Same port over UDP, or the server behind it, is not fwx's listener. */
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, rec, FWX_PROTOCOL_UDP, TU_SA(own), tu_len(&own)), FWX_S_OK);
    snprintf(text, sizeof text, "127.0.0.3:%u", sp);
    struct sockaddr_storage server = tu_addr(text);
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, rec, FWX_PROTOCOL_TCP, TU_SA(server), tu_len(&server)),
                 FWX_S_OK);

    /* A port bound for a filter (planted in the port table: the check reads only the table). */
    fwx__grant *g = calloc(1, sizeof *g);
    g->port_key.protocol = FWX_PROTOCOL_TCP;
    g->port_key.port = 50123;
    HASH_ADD(hh, f.fw->ports, port_key, sizeof g->port_key, g);
    struct sockaddr_storage bound = tu_addr("127.0.0.1:50123"), elsewhere = tu_addr("192.0.2.99:50123");
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, NULL, FWX_PROTOCOL_TCP, TU_SA(bound), tu_len(&bound)),
                 FWX_E_REDIRECT_LOOP);
    ck_assert_int_eq(tu_log_count("127.0.0.1:50123 is a port fwx bound for a filter", NULL), 1);
    TU_EXPECT_HR(fwx_redirect_check_destination(f.fw, NULL, FWX_PROTOCOL_TCP, TU_SA(elsewhere), tu_len(&elsewhere)),
                 FWX_S_OK);
    HASH_DEL(f.fw->ports, g);
    free(g);

    fwx_redirect_record_unref(rec);
    fx_close(&f);
}
END_TEST

/* ---- wire form ----------------------------------------------------------------------------- */

static size_t wire_of(const fwx_redirect_record *rec, uint8_t *buf, size_t size)
{
    size_t len = 0;
    TU_EXPECT_HR(fwx_redirect_record_serialize(rec, buf, size, &len), FWX_S_OK);
    return len;
}

START_TEST(wire_round_trip)
{
    fx f;
    fwx_redirect_handle *h[3];
    fx_open_handles(&f, h, 3);
    memset(freed, 0, sizeof freed);
    fwx_redirect_app app = {sizeof app, 31337, 1000, 0, 0x123456789abcdefULL, "/user.slice/app.scope"};
    struct sockaddr_storage d = tu_addr("[2001:db8::80]:443"), t0 = tu_addr("127.0.0.1:15001"),
                            t2 = tu_addr("[::1]:3129");
    fwx_redirect_record *rec = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), tu_len(&d), &app, &rec), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, h[0], TU_SA(t0), tu_len(&t0), ctx_slot(0), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, h[1], ctx_slot(1), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, h[2], TU_SA(t2), tu_len(&t2), ctx_slot(2), count_free), FWX_S_OK);

    size_t need = 0;
    TU_EXPECT_HR(fwx_redirect_record_serialize(rec, NULL, 0, &need), FWX_E_BUFFERFULL);
    ck_assert_uint_eq(need, 6 + 19 + 4 + 4 + 8 + 2 + strlen(app.cgroup_path) + 36 * 3 - 12 - 19);
    uint8_t small[8] = {0};
    TU_EXPECT_HR(fwx_redirect_record_serialize(rec, small, sizeof small, &need), FWX_E_BUFFERFULL);
    for (size_t i = 0; i < sizeof small; i++)
        ck_assert_uint_eq(small[i], 0); /* nothing written into a short buffer */
    uint8_t buf[FWX_REDIRECT_WIRE_MAX];
    size_t len = wire_of(rec, buf, sizeof buf);
    ck_assert_uint_eq(len, need);
    ck_assert_int_eq(memcmp(buf, "FXR\x01", 4), 0);

    fwx_redirect_record *back = NULL;
    TU_EXPECT_HR(fwx_redirect_record_parse(buf, len, &back), FWX_S_OK);
    struct sockaddr_storage got;
    TU_EXPECT_HR(fwx_redirect_record_original_destination(back, &got), FWX_S_OK);
    ck_assert_int_eq(got.ss_family, AF_INET6);
    ck_assert_int_eq(memcmp(&((struct sockaddr_in6 *)&got)->sin6_addr, &((struct sockaddr_in6 *)&d)->sin6_addr, 16), 0);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&got)->sin6_port), 443);
    fwx_redirect_app a2 = {.struct_size = sizeof a2};
    TU_EXPECT_HR(fwx_redirect_record_original_app(back, &a2), FWX_S_OK);
    ck_assert_uint_eq(a2.pid, 31337);
    ck_assert_uint_eq(a2.uid, 1000);
    ck_assert(a2.cgroup_id == 0x123456789abcdefULL);
    ck_assert_str_eq(a2.cgroup_path, "/user.slice/app.scope");
    ck_assert_uint_eq(fwx_redirect_record_hop_count(back), 3);
    for (size_t i = 0; i < 3; i++) {
        fwx_redirect_hop x = {.struct_size = sizeof x}, y = {.struct_size = sizeof y};
        TU_EXPECT_HR(fwx_redirect_record_hop(rec, i, &x), FWX_S_OK);
        TU_EXPECT_HR(fwx_redirect_record_hop(back, i, &y), FWX_S_OK);
        ck_assert(fwx_guid_equal(&x.provider, &y.provider));
        ck_assert_ptr_null(y.handle); /* foreign hops: no handle */
        ck_assert_int_eq(x.target.ss_family, y.target.ss_family);
        if (x.target.ss_family != AF_UNSPEC) {
            char sx[FWX__SA_STRLEN], sy[FWX__SA_STRLEN];
            ck_assert_str_eq(fwx__sa_fmt(TU_SA(x.target), sx), fwx__sa_fmt(TU_SA(y.target), sy));
        }
    }
    /* The states read the same by provider; contexts never cross. */
    void *ctx = (void *)&ctx;
    ck_assert_int_eq(fwx_redirect_query(back, h[2], &ctx), FWX_REDIRECT_BY_SELF);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(fwx_redirect_query(back, h[0], &ctx), FWX_REDIRECT_PREVIOUSLY_BY_SELF);
    ck_assert_ptr_null(ctx);
    TU_EXPECT_HR(fwx_redirect_record_push(back, h[1], NULL, NULL), FWX_E_REDIRECT_LOOP);
    /* One meaning, one form: writing it again gives the same bytes. */
    uint8_t again[FWX_REDIRECT_WIRE_MAX];
    ck_assert_uint_eq(wire_of(back, again, sizeof again), len);
    ck_assert_int_eq(memcmp(buf, again, len), 0);
    fwx_redirect_record_unref(back);
    ck_assert_int_eq(freed[0] + freed[1] + freed[2], 0); /* the parsed copy owns no context */

    /* The smallest record: nothing known, no hop. */
    fwx_redirect_record *empty = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(NULL, 0, NULL, &empty), FWX_S_OK);
    len = wire_of(empty, buf, sizeof buf);
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(memcmp(buf, "FXR\x01\x00\x00", 6), 0);
    TU_EXPECT_HR(fwx_redirect_record_parse(buf, len, &back), FWX_S_OK);
    ck_assert_int_eq(fwx_redirect_query(back, h[0], NULL), FWX_REDIRECT_NOT_REDIRECTED);
    TU_EXPECT_HR(fwx_redirect_record_original_app(back, &a2), FWX_S_FALSE);
    fwx_redirect_record_unref(back);
    fwx_redirect_record_unref(empty);

    TU_EXPECT_HR(fwx_redirect_record_serialize(NULL, buf, sizeof buf, &len), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_record_serialize(rec, buf, sizeof buf, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_record_parse(NULL, 0, &back), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_redirect_record_parse(buf, 6, NULL), FWX_E_POINTER);

    fwx_redirect_record_unref(rec);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(freed[i], 1);
        fwx_redirect_handle_destroy(h[i]);
    }
    fx_close(&f);
}
END_TEST

/* The biggest record fits FWX_REDIRECT_WIRE_MAX exactly. */
START_TEST(wire_max_is_the_maximum)
{
    fx f;
    fx_open(&f);
    char path[FWX_REDIRECT_CGROUP_PATH_MAX + 1];
    memset(path, 'p', FWX_REDIRECT_CGROUP_PATH_MAX);
    path[FWX_REDIRECT_CGROUP_PATH_MAX] = '\0';
    fwx_redirect_app app = {sizeof app, 1, 0, 0, 1, path};
    struct sockaddr_storage d = tu_addr("[2001:db8::1]:1");
    fwx_redirect_record *rec = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), tu_len(&d), &app, &rec), FWX_S_OK);
    fwx_redirect_handle *h[FWX_REDIRECT_MAX_HOPS];
    for (int i = 0; i < FWX_REDIRECT_MAX_HOPS; i++) {
        h[i] = handle_of(&f, i);
        char t[64];
        snprintf(t, sizeof t, "[2001:db8::%x]:%d", i + 1, 1000 + i);
        struct sockaddr_storage ts = tu_addr(t);
        TU_EXPECT_HR(fwx_redirect_record_push_to(rec, h[i], TU_SA(ts), tu_len(&ts), NULL, NULL), FWX_S_OK);
    }
    uint8_t *buf = malloc(FWX_REDIRECT_WIRE_MAX);
    size_t len = wire_of(rec, buf, FWX_REDIRECT_WIRE_MAX);
    ck_assert_uint_eq(len, FWX_REDIRECT_WIRE_MAX);
    fwx_redirect_record *back = NULL;
    TU_EXPECT_HR(fwx_redirect_record_parse(buf, len, &back), FWX_S_OK);
    ck_assert_uint_eq(fwx_redirect_record_hop_count(back), FWX_REDIRECT_MAX_HOPS);
    fwx_redirect_record_unref(back);
    free(buf);
    fwx_redirect_record_unref(rec);
    fx_close_handles(&f, h, FWX_REDIRECT_MAX_HOPS);
}
END_TEST

/* A hand-built encoding: the header, then `body` (hex pairs, spaces ignored). */
static size_t hex(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = text; *p != '\0';) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned v;
        ck_assert_msg(sscanf(p, "%2x", &v) == 1 && n < cap, "bad hex in test table: %s", p);
        out[n++] = (uint8_t)v;
        p += 2;
    }
    return n;
}

#define GUID_A "7ed12ec7000000000000000000000001"
#define GUID_B "7ed12ec7000000000000000000000002"
#define V4_80 "04 c0000201 0050"   /* 192.0.2.1:80 */

START_TEST(wire_parser_refuses_bad_input)
{
    static const struct {
        const char *why;
        const char *bytes; /* hex */
        fwx_result want;
    } table[] = {
        {"the smallest valid record", "465852 01 00 00", FWX_S_OK},
        {"valid: destination, pid, uid, cgroup id, path, two hops",
         "465852 01 1f 02 " V4_80 " 00000001 000003e8 0000000000000001 0002 2f61 " GUID_A " 00 " GUID_B " 01 " V4_80,
         FWX_S_OK},
        {"empty input", "", FWX_E_INVALIDARG},
        {"magic only", "465852", FWX_E_INVALIDARG},
        {"bad magic", "465853 01 00 00", FWX_E_INVALIDARG},
        {"version 2", "465852 02 00 00", FWX_E_NOT_SUPPORTED},
        {"version 0", "465852 00 00 00", FWX_E_NOT_SUPPORTED},
        {"unknown presence bit", "465852 01 20 00", FWX_E_INVALIDARG},
        {"17 hops", "465852 01 00 11", FWX_E_INVALIDARG},
        {"255 hops", "465852 01 00 ff", FWX_E_INVALIDARG},
        {"a hop announced, none there", "465852 01 00 01", FWX_E_INVALIDARG},
        {"trailing byte", "465852 01 00 00 00", FWX_E_INVALIDARG},
        {"trailing byte after a hop", "465852 01 00 01 " GUID_A " 00 ff", FWX_E_INVALIDARG},
        {"family 5", "465852 01 01 00 05 c0000201 0050", FWX_E_INVALIDARG},
        {"family 0", "465852 01 01 00 00", FWX_E_INVALIDARG},
        {"port 0", "465852 01 01 00 04 c0000201 0000", FWX_E_INVALIDARG},
        {"v4-mapped IPv6", "465852 01 01 00 06 00000000000000000000ffffc0000201 0050", FWX_E_INVALIDARG},
        {"truncated address", "465852 01 01 00 04 c00002", FWX_E_INVALIDARG},
        {"pid 0 written as present", "465852 01 02 00 00000000", FWX_E_INVALIDARG},
        {"unknown uid written as present", "465852 01 04 00 ffffffff", FWX_E_INVALIDARG},
        {"cgroup id 0 written as present", "465852 01 08 00 0000000000000000", FWX_E_INVALIDARG},
        {"empty cgroup path", "465852 01 10 00 0000", FWX_E_INVALIDARG},
        {"cgroup path longer than the input", "465852 01 10 00 0005 2f61", FWX_E_INVALIDARG},
        {"cgroup path over the maximum", "465852 01 10 00 0400", FWX_E_INVALIDARG},
        {"cgroup path with a NUL", "465852 01 10 00 0003 2f0061", FWX_E_INVALIDARG},
        {"unknown hop flag", "465852 01 00 01 " GUID_A " 02", FWX_E_INVALIDARG},
        {"hop target missing", "465852 01 00 01 " GUID_A " 01", FWX_E_INVALIDARG},
        {"hop target port 0", "465852 01 00 01 " GUID_A " 01 04 c0000201 0000", FWX_E_INVALIDARG},
        {"null provider", "465852 01 00 01 00000000000000000000000000000000 00", FWX_E_INVALIDARG},
        {"the same provider twice", "465852 01 00 02 " GUID_A " 00 " GUID_A " 00", FWX_E_INVALIDARG},
        {"the same provider apart", "465852 01 00 03 " GUID_A " 00 " GUID_B " 00 " GUID_A " 00", FWX_E_INVALIDARG},
        {"truncated GUID", "465852 01 00 01 7ed12ec7", FWX_E_INVALIDARG},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        uint8_t buf[512];
        size_t n = hex(table[i].bytes, buf, sizeof buf);
        fwx_redirect_record *rec = (fwx_redirect_record *)buf;
        fwx_result hr = fwx_redirect_record_parse(buf, n, &rec);
        ck_assert_msg(hr == table[i].want, "%s: got %s, expected %s", table[i].why, fwx_err_name(hr),
                      fwx_err_name(table[i].want));
        if (hr == FWX_S_OK) {
            /* What parses writes back to the same bytes. */
            uint8_t again[512];
            ck_assert_uint_eq(wire_of(rec, again, sizeof again), n);
            ck_assert_int_eq(memcmp(buf, again, n), 0);
            fwx_redirect_record_unref(rec);
        } else {
            ck_assert_ptr_null(rec);
        }
    }
}
END_TEST

/* Every proper prefix of a valid wire form is refused, and so is every single-byte change that
   breaks it (whatever it does, the parser neither crashes nor leaks: ASan and LSan watch). */
START_TEST(wire_parser_truncations_and_mutations)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *a = handle_of(&f, 0), *b = handle_of(&f, 1);
    fwx_redirect_app app = {sizeof app, 99, 0, 0, 5, "/a/b"};
    struct sockaddr_storage d = tu_addr("192.0.2.1:80"), t = tu_addr("[::1]:15001");
    fwx_redirect_record *rec = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), tu_len(&d), &app, &rec), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push_to(rec, a, TU_SA(t), tu_len(&t), NULL, NULL), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, b, NULL, NULL), FWX_S_OK);
    uint8_t buf[FWX_REDIRECT_WIRE_MAX];
    size_t len = wire_of(rec, buf, sizeof buf);
    for (size_t n = 0; n < len; n++) {
        fwx_redirect_record *back = rec;
        fwx_result hr = fwx_redirect_record_parse(buf, n, &back);
        ck_assert_msg(hr == FWX_E_INVALIDARG, "prefix of %zu bytes: %s", n, fwx_err_name(hr));
        ck_assert_ptr_null(back);
    }
    int accepted = 0;
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            uint8_t m[FWX_REDIRECT_WIRE_MAX];
            memcpy(m, buf, len);
            m[i] ^= (uint8_t)(1u << bit);
            fwx_redirect_record *back = NULL;
            fwx_result hr = fwx_redirect_record_parse(m, len, &back);
            ck_assert(hr == FWX_S_OK || hr == FWX_E_INVALIDARG || hr == FWX_E_NOT_SUPPORTED);
            if (hr == FWX_S_OK) {
                accepted++; /* a changed value (an address, a pid): still one meaning */
                uint8_t again[FWX_REDIRECT_WIRE_MAX];
                ck_assert_uint_eq(wire_of(back, again, sizeof again), len);
                ck_assert_int_eq(memcmp(m, again, len), 0);
                fwx_redirect_record_unref(back);
            }
        }
    }
    ck_assert_int_gt(accepted, 0);
    fwx_redirect_record_unref(rec);
    FX_CLOSE_WITH(&f, a, b);
}
END_TEST

/* Two fwx instances (two firewalls, providers A and B) pass one flow's record to each other in
   its wire form, as two cooperating proxies on one path would: each reads the state it must. */
START_TEST(two_instances_cooperate_through_the_wire)
{
    fx f1, f2;
    fx_open(&f1);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    memset(&f2, 0, sizeof f2);
    ck_assert_int_eq(uv_loop_init(&f2.loop), 0);
    o.log = tu_log_capture;
    TU_EXPECT_HR(fwx_firewall_new(&f2.loop, &o, &f2.fw), FWX_S_OK);
    fwx_redirect_handle *a = handle_of(&f1, 0), *b = handle_of(&f2, 1);
    struct sockaddr_storage la = tu_addr("127.0.0.1:15001"), lb = tu_addr("127.0.0.1:3128");
    uint8_t buf[FWX_REDIRECT_WIRE_MAX];

    /* Instance 1 intercepts a local connection first: not redirected, so it may (W1). */
    fwx_redirect_app app = {sizeof app, 4321, 1000, 0, 0, "/user.slice/curl.scope"};
    struct sockaddr_storage d = tu_addr("198.51.100.7:443");
    fwx_redirect_record *r1 = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(d), tu_len(&d), &app, &r1), FWX_S_OK);
    ck_assert_int_eq(fwx_redirect_query(r1, a, NULL), FWX_REDIRECT_NOT_REDIRECTED);
    TU_EXPECT_HR(fwx_redirect_record_push_to(r1, a, TU_SA(la), tu_len(&la), strdup("a"), free), FWX_S_OK);
    size_t len = wire_of(r1, buf, sizeof buf);

    /* Instance 2 sees instance 1's outbound leg: by other (W3), and it redirects it once. */
    fwx_redirect_record *r2 = NULL;
    TU_EXPECT_HR(fwx_redirect_record_parse(buf, len, &r2), FWX_S_OK);
    ck_assert_int_eq(fwx_redirect_query(r2, b, NULL), FWX_REDIRECT_BY_OTHER);
    /* Sending it back into instance 1's listener is refused; its own listener is fine. */
    TU_EXPECT_HR(fwx_redirect_record_push_to(r2, b, TU_SA(la), tu_len(&la), NULL, NULL), FWX_E_REDIRECT_LOOP);
    TU_EXPECT_HR(fwx_redirect_record_push_to(r2, b, TU_SA(lb), tu_len(&lb), strdup("b"), free), FWX_S_OK);
    len = wire_of(r2, buf, sizeof buf);

    /* Instance 1 sees instance 2's outbound leg: previously by self (W4), it must not redirect. */
    fwx_redirect_record *r3 = NULL;
    TU_EXPECT_HR(fwx_redirect_record_parse(buf, len, &r3), FWX_S_OK);
    ck_assert_int_eq(fwx_redirect_query(r3, a, NULL), FWX_REDIRECT_PREVIOUSLY_BY_SELF);
    TU_EXPECT_HR(fwx_redirect_record_push(r3, a, NULL, NULL), FWX_E_REDIRECT_LOOP);
    /* And instance 2 would see its own hop last: by self (W2). */
    ck_assert_int_eq(fwx_redirect_query(r3, b, NULL), FWX_REDIRECT_BY_SELF);
    /* Whoever connects onward must not go back into either listener; the original
       destination and application arrive intact at every hop. */
    TU_EXPECT_HR(fwx_redirect_check_destination(f1.fw, r3, FWX_PROTOCOL_TCP, TU_SA(lb), tu_len(&lb)),
                 FWX_E_REDIRECT_LOOP);
    TU_EXPECT_HR(fwx_redirect_check_destination(f1.fw, r3, FWX_PROTOCOL_TCP, TU_SA(d), tu_len(&d)), FWX_S_OK);
    struct sockaddr_storage got;
    TU_EXPECT_HR(fwx_redirect_record_original_destination(r3, &got), FWX_S_OK);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&got)->sin_port), 443);
    fwx_redirect_app a3 = {.struct_size = sizeof a3};
    TU_EXPECT_HR(fwx_redirect_record_original_app(r3, &a3), FWX_S_OK);
    ck_assert_uint_eq(a3.pid, 4321);
    ck_assert_str_eq(a3.cgroup_path, "/user.slice/curl.scope");

    fwx_redirect_record_unref(r3);
    fwx_redirect_record_unref(r2);
    fwx_redirect_record_unref(r1);
    fwx_redirect_handle_destroy(a);
    fwx_redirect_handle_destroy(b);
    fx_close(&f2);
    fx_close(&f1);
}
END_TEST

/* ---- a connection carries its record ---------------------------------------------------- */

static IFWXConnection *open_connect(IFWXSession *s, const char *peer)
{
    struct sockaddr_storage p = tu_addr(peer);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(p), tu_len(&p),
                                NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &c), FWX_S_OK);
    return c;
}

START_TEST(connection_carries_record_until_it_is_freed)
{
    fx f;
    fx_open(&f);
    fwx_redirect_handle *a = handle_of(&f, 0), *b = handle_of(&f, 1);
    memset(freed, 0, sizeof freed);
    struct sockaddr_storage cl = tu_addr("10.0.0.8");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(cl), tu_len(&cl), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &s), FWX_S_OK);

    /* Closed by the host: the record, and so the contexts, go with the connection. */
    IFWXConnection *c = open_connect(s, "192.0.2.10:80");
    ck_assert_ptr_null(fwx_connection_redirect_record(c));
    fwx_redirect_record *rec = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, ctx_slot(0), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, b, ctx_slot(1), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_connection_set_redirect_record(c, rec), FWX_S_OK);
    TU_EXPECT_HR(fwx_connection_set_redirect_record(c, rec), FWX_S_FALSE);
    fwx_redirect_record *other = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_connection_set_redirect_record(c, other), FWX_E_ALREADY_EXISTS_WIN32);
    fwx_redirect_record_unref(other);
    fwx_redirect_record_unref(rec); /* the connection's reference is the last */
    ck_assert_ptr_eq(fwx_connection_redirect_record(c), rec);
    void *ctx = NULL;
    ck_assert_int_eq(fwx_redirect_query(fwx_connection_redirect_record(c), a, &ctx),
                     FWX_REDIRECT_PREVIOUSLY_BY_SELF);
    ck_assert_ptr_eq(ctx, ctx_slot(0));
    TU_EXPECT_REF(c, 2); /* ours and the session's */
    ck_assert_int_eq(freed[0] + freed[1], 0);
    fwx_connection_close(c);
    ck_assert_int_eq(freed[0], 1);
    ck_assert_int_eq(freed[1], 1);

    /* Ended by the session while the host still holds it: the record lives as long as the object. */
    c = open_connect(s, "192.0.2.11:80");
    rec = record_to("192.0.2.11:80");
    TU_EXPECT_HR(fwx_redirect_record_push(rec, a, ctx_slot(2), count_free), FWX_S_OK);
    TU_EXPECT_HR(fwx_connection_set_redirect_record(c, rec), FWX_S_OK);
    fwx_redirect_record_unref(rec);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    ck_assert_int_eq(freed[2], 0);
    ck_assert_ptr_eq(fwx_connection_redirect_record(c), rec);
    IFWXConnection_Release(c);
    ck_assert_int_eq(freed[2], 1);

    /* Not one of fwx's connections. */
    ck_assert_ptr_null(fwx_connection_redirect_record(NULL));
    rec = record_to("192.0.2.11:80");
    TU_EXPECT_HR(fwx_connection_set_redirect_record(NULL, rec), FWX_E_POINTER);
    fwx_redirect_record_unref(rec);

    IFWXSession_Release(s);
    FX_CLOSE_WITH(&f, a, b);
}
END_TEST

/* A record can be attached only while the connection lives. */
START_TEST(connection_ended_refuses_a_record)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage cl = tu_addr("10.0.0.8");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(cl), tu_len(&cl), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &s), FWX_S_OK);
    IFWXConnection *c = open_connect(s, "192.0.2.10:80");
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK); /* ends c; we still hold it */
    fwx_redirect_record *rec = record_to("192.0.2.10:80");
    TU_EXPECT_HR(fwx_connection_set_redirect_record(c, rec), FWX_E_TERMINATING);
    ck_assert_ptr_null(fwx_connection_redirect_record(c));
    TU_EXPECT_HR(fwx_connection_set_redirect_record(c, NULL), FWX_E_POINTER);
    fwx_redirect_record_unref(rec);
    IFWXConnection_Release(c);
    IFWXSession_Release(s);
    fx_close(&f);
}
END_TEST

/* The core redirects a connection itself through a redirect port (RedirectConnections) and a
   bound port in proxy mode: the admitted connection carries a record with one hop of the
   firewall's own identity (a name-derived provider), the gateway port it reached as original
   destination and the redirect's target as the hop's target. A plain bound port does not. */
START_TEST(core_records_its_redirects)
{
    fx f;
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    static struct sockaddr_storage local[1];
    local[0] = tu_addr("10.0.0.1");
    o.name = "corerec";
    o.local_addresses = local;
    o.n_local_addresses = 1;
    fx_open_with(&f, &o);
    fwx_redirect_handle *me = fwx_firewall_redirect_identity(f.fw);
    ck_assert_ptr_nonnull(me);
    ck_assert_ptr_eq(fwx_firewall_redirect_identity(f.fw), me); /* one, made once */
    /* the same name, the same provider: a second firewall of that name derives it too */
    fx g;
    fx_open_with(&g, &o);
    ck_assert(fwx_guid_equal(fwx_redirect_handle_provider(fwx_firewall_redirect_identity(g.fw)),
                             fwx_redirect_handle_provider(me)));
    fx_close(&g);

    struct sockaddr_storage cl = tu_addr("10.0.0.8");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(cl), tu_len(&cl), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &s), FWX_S_OK);
    IFWXConnection *ctl = open_connect(s, "192.0.2.10:21");
    struct sockaddr_storage t = tu_addr("192.0.2.10:2000"), ia;
    const struct sockaddr *tp[1] = {TU_SA(t)};
    uint32_t ialen = sizeof ia;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&t), 1, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                 &FWX_GUID_NULL, NULL, NULL, NULL),
                 FWX_S_OK);
    struct sockaddr_storage reached = tu_addr("10.0.0.1:0");
    fwx__sa_set_port((struct sockaddr *)&reached, fwx__sa_port(TU_SA(ia)));
    struct sockaddr_storage src = tu_addr("10.0.0.8:40001");
    fwx_flow flow = {sizeof flow, FWX_PROTOCOL_TCP, TU_SA(src), tu_len(&src), TU_SA(reached), tu_len(&reached)};
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_firewall_admit(f.fw, &flow, &c), FWX_S_OK);
    const fwx_redirect_record *rec = fwx_connection_redirect_record(c);
    ck_assert_ptr_nonnull(rec);
    ck_assert_int_eq(fwx_redirect_query(rec, me, NULL), FWX_REDIRECT_BY_SELF);
    ck_assert_uint_eq(fwx_redirect_record_hop_count(rec), 1);
    struct sockaddr_storage od;
    TU_EXPECT_HR(fwx_redirect_record_original_destination(rec, &od), FWX_S_OK);
    ck_assert(fwx__sa_same_endpoint(TU_SA(od), TU_SA(reached)));
    fwx_redirect_hop hop = {.struct_size = sizeof hop};
    memset(&hop, 0, sizeof hop);
    hop.struct_size = sizeof hop;
    TU_EXPECT_HR(fwx_redirect_record_hop(rec, 0, &hop), FWX_S_OK);
    ck_assert(fwx__sa_same_endpoint((const struct sockaddr *)&hop.target, TU_SA(t)));
    fwx_connection_close(c);

    /* A bound port without proxy mode: fwx did not redirect it, no record. */
    struct sockaddr_storage ca = tu_addr("10.0.0.8:5000"), px = tu_addr("10.0.0.1:0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    IFWXConnection *bound[1] = {NULL};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&ca), TU_SAM(px), sizeof px, FWX_PROTOCOL_TCP, 1, 0, 4,
                                           &FWX_GUID_NULL, NULL, NULL, NULL, bound),
                 FWX_S_OK);
    struct sockaddr_storage peer = tu_addr("192.0.2.10:20");
    fwx_flow f2 = {sizeof f2, FWX_PROTOCOL_TCP, TU_SA(peer), tu_len(&peer), TU_SA(px), tu_len(&px)};
    TU_EXPECT_HR(fwx_firewall_admit(f.fw, &f2, &c), FWX_S_OK);
    ck_assert_ptr_null(fwx_connection_redirect_record(c));
    fwx_connection_close(c);
    IFWXConnection_Release(bound[0]);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    fx_close(&f);
}
END_TEST

/* The registry matches a flow by its whole tuple: an entry written for
   10.0.0.1:40000 -> 192.0.2.9:21 is found for that source address (and by port alone through
   the older call), but not for another host using the same source port to the same server;
   a file in the old header format (no src) is not read at all. */
START_TEST(registry_matches_the_whole_tuple)
{
    char top[] = "/tmp/fwx-registry-test-XXXXXX", dir[64];
    ck_assert_ptr_nonnull(mkdtemp(top));
    /* Two levels that do not exist yet: the first write makes them. */
    snprintf(dir, sizeof dir, "%s/run/redirect", top);
    ck_assert_int_eq(setenv("FWX_REDIRECT_DIR", dir, 1), 0);
    struct sockaddr_storage dst = tu_addr("192.0.2.9:21"), src = tu_addr("10.0.0.1:40000"),
                            other = tu_addr("10.0.0.2:40000"), any = tu_addr("0.0.0.0:40000");
    fwx_redirect_app app = {sizeof app, 0, FWX_REDIRECT_UID_UNKNOWN, 0, 0, NULL};
    fwx_redirect_record *rec = NULL, *got = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(dst), tu_len(&dst), &app, &rec), FWX_S_OK);
    char path[FWX__REG_PATH_MAX];
    ck_assert_int_eq(fwx__registry_put(TU_SA(any), TU_SA(dst), rec, 0, path, sizeof path), -1); /* src needed */
    ck_assert_int_eq(fwx__registry_put(TU_SA(src), TU_SA(dst), rec, 0x03, path, sizeof path), 0);
    uint32_t slots = 0;
    TU_EXPECT_HR(fwx_redirect_registry_lookup_flow(TU_SA(src), tu_len(&src), TU_SA(dst), tu_len(&dst), &got, &slots),
                 FWX_S_OK);
    ck_assert_uint_eq(slots, 0x03);
    fwx_redirect_record_unref(got);
    TU_EXPECT_HR(fwx_redirect_registry_lookup_flow(TU_SA(other), tu_len(&other), TU_SA(dst), tu_len(&dst), &got, NULL),
                 FWX_E_NOT_FOUND);
    ck_assert_ptr_null(got);
    TU_EXPECT_HR(fwx_redirect_registry_lookup_flow(TU_SA(any), tu_len(&any), TU_SA(dst), tu_len(&dst), &got, NULL),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_redirect_registry_lookup(40000, TU_SA(dst), tu_len(&dst), &got, NULL), FWX_S_OK);
    fwx_redirect_record_unref(got);
    /* The same file with the header of format 1 (no source address): refused. */
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char *nl = memchr(buf, '\n', n);
    ck_assert_ptr_nonnull(nl);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "fwx-redirect 1 pid=%ld slots=0x03\n", (long)getpid());
    fwrite(nl + 1, 1, n - (size_t)(nl + 1 - buf), f);
    fclose(f);
    TU_EXPECT_HR(fwx_redirect_registry_lookup_flow(TU_SA(src), tu_len(&src), TU_SA(dst), tu_len(&dst), &got, NULL),
                 FWX_E_NOT_FOUND);
    unlink(path);
    rmdir(dir);
    snprintf(dir, sizeof dir, "%s/run", top);
    rmdir(dir);
    rmdir(top);
    unsetenv("FWX_REDIRECT_DIR");
    fwx_redirect_record_unref(rec);
}
END_TEST

static Suite *redirect_suite(void)
{
    const tu_case cases[] = {
        {"states", states_for_every_chain_up_to_three},
        {"w2 w4 push refused", push_refused_in_self_states},
        {"chain bounded", chain_is_bounded},
        {"contexts freed once", contexts_freed_once_with_the_record},
        {"handle destroy frees contexts", handle_destroy_frees_its_contexts_early},
        {"handle per provider", handle_one_per_provider},
        {"leftover handle", leftover_handle_destroyed_with_firewall},
        {"record fields", record_fields_and_validation},
        {"target already passed", push_to_a_target_already_passed},
        {"own listener", destination_is_own_listener},
        {"wire round trip", wire_round_trip},
        {"wire max", wire_max_is_the_maximum},
        {"wire bad input", wire_parser_refuses_bad_input},
        {"wire truncations", wire_parser_truncations_and_mutations},
        {"two instances", two_instances_cooperate_through_the_wire},
        {"connection record", connection_carries_record_until_it_is_freed},
        {"connection ended", connection_ended_refuses_a_record},
        {"core records its redirects", core_records_its_redirects},
        {"registry matches the whole tuple", registry_matches_the_whole_tuple},
    };
    return TU_SUITE("redirect", cases, 0);
}

int main(void) { return tu_run_suite(redirect_suite()); }
