/*
 * fwx tests - the one struct_size rule (include/fwx/common.h, "Struct sizes"): every public
 * call that takes or fills a struct with struct_size accepts the struct's first version (the
 * layouts are declared here, as a program built then saw them), refuses a size below it or
 * above the library's own with FWX_E_INVALIDARG and a log line, reads no field the caller's
 * size does not cover, and writes no byte past the caller's size (canary bytes after each
 * output struct).
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "core/internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* A struct of type T (member m) with 16 bytes after it, so that a struct_size larger than T
   still names memory the test owns. */
#define PADDED(T, m)                                                                              \
    struct {                                                                                      \
        T m;                                                                                      \
        uint8_t more[16];                                                                         \
    }
/* An older caller's struct (type OLD, member v1) with the bytes of the current one (NEW) and 16
   more after it: the test sets them all, so that reading past OLD would be seen. */
#define OLD_STRUCT(OLD, NEW)                                                                      \
    union {                                                                                       \
        OLD v1;                                                                                   \
        uint8_t bytes[sizeof(NEW) + 16];                                                          \
    }

#define CANARY 0xA5
#define CANARY_LEN 64

/* ---- the first versions, as a caller built against them declared the structs ----------- */

/* fwx_firewall_options up to log_level (84 bytes, sizeof 88 with the padding). */
typedef struct options_v1 {
    uint32_t struct_size;
    const char *name;
    const struct sockaddr_storage *local_addresses;
    size_t n_local_addresses;
    uint32_t timeout_ms;
    uint16_t port_min, port_max;
    uint32_t max_permissions_per_session, max_permissions, max_ports_per_session, max_ports, max_sessions;
    fwx_log_fn log;
    void *log_arg;
    fwx_log_level log_level;
} options_v1;

/* fwx_connection_params up to flags (60 bytes, sizeof 64). */
typedef struct connection_params_v1 {
    uint32_t struct_size;
    uint32_t event;
    int32_t protocol;
    const struct sockaddr *external_peer;
    uint32_t external_peer_len;
    const struct sockaddr *external_local;
    uint32_t external_local_len;
    const char *host_name;
    uint32_t flags;
} connection_params_v1;

/* The structs whose first version is the current one: their sizes are pinned here too, so a
   field appended without a line in FWX__FIRST_* fails this build. */
_Static_assert(sizeof(options_v1) == 88, "options v1 layout");
_Static_assert(sizeof(connection_params_v1) == 64, "connection params v1 layout");
_Static_assert(FWX__FIRST_FIREWALL_OPTIONS == 84, "first size of fwx_firewall_options");
_Static_assert(FWX__FIRST_CONNECTION_PARAMS == 60, "first size of fwx_connection_params");
_Static_assert(FWX__FIRST_FIREWALL_STATS == 28 && sizeof(fwx_firewall_stats) == 28, "fwx_firewall_stats");
_Static_assert(FWX__FIRST_SESSION_PARAMS == 48 && sizeof(fwx_session_params) == 48, "fwx_session_params");
_Static_assert(FWX__FIRST_FLOW == 36 && sizeof(fwx_flow) == 40, "fwx_flow");
_Static_assert(FWX__FIRST_SOCKS_LIMITS == 36 && sizeof(fwx_socks_limits) == 36, "fwx_socks_limits");
_Static_assert(FWX__FIRST_REDIRECT_APP == 32 && sizeof(fwx_redirect_app) == 32, "fwx_redirect_app");
_Static_assert(FWX__FIRST_REDIRECT_HOP == 160 && sizeof(fwx_redirect_hop) == 160, "fwx_redirect_hop");
_Static_assert(FWX__FIRST_OBJECT_INFO == 468, "first size of fwx_object_info");
_Static_assert(FWX__FIRST_LOG_RECORD == 28, "first size of fwx_log_record");
_Static_assert(FWX__FIRST_PLUGIN_ENTRY == 88, "first size of fwx_plugin_entry");
_Static_assert(FWX__FIRST_LOCAL_REDIRECT == 40, "first size of fwx_local_redirect");

/* An output struct followed by canary bytes: whatever the call writes must end before them. */
typedef struct guarded {
    union {
        uint8_t bytes[512];
        max_align_t align;
    } s;
    uint8_t canary[CANARY_LEN];
} guarded;

static void guarded_fill(guarded *g, uint32_t struct_size)
{
    memset(g, CANARY, sizeof *g);
    memcpy(g->s.bytes, &struct_size, sizeof struct_size);
}

/* True when nothing from byte `from` on was written (every byte still the canary). */
static bool untouched_from(const guarded *g, size_t from)
{
    for (size_t i = from; i < sizeof g->s.bytes; i++)
        if (g->s.bytes[i] != CANARY)
            return false;
    for (size_t i = 0; i < CANARY_LEN; i++)
        if (g->canary[i] != CANARY)
            return false;
    return true;
}

static uint32_t size_field(const guarded *g)
{
    uint32_t v;
    memcpy(&v, g->s.bytes, sizeof v);
    return v;
}

/* ---- a firewall with its log captured ----------------------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    fwx_firewall *fw;
    IFWXSession *s;
} fx;

static void fx_open(fx *f)
{
    fwx_firewall_options o;
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    fwx_firewall_options_init(&o);
    o.log = tu_log_capture;
    TU_EXPECT_HR(fwx_firewall_new(&f->loop, &o, &f->fw), FWX_S_OK);
    tu_log_reset();
    struct sockaddr_storage c = tu_addr("10.0.0.8");
    fwx_session_params sp = {.struct_size = sizeof sp, .source = fwxSourceNAT, .client = TU_SA(c),
                             .client_len = tu_len(&c)};
    TU_EXPECT_HR(fwx_session_open(f->fw, &sp, &f->s), FWX_S_OK);
}

static void fx_close(fx *f)
{
    fwx_session_close(f->s);
    IFWXSession_Release(f->s);
    fwx_firewall_close(f->fw, NULL, NULL);
    tu_loop_close_clean(&f->loop);
}

/* The refusal names the call and the struct, once. */
static void expect_refusal_logged(const char *call, const char *type)
{
    ck_assert_int_eq(tu_log_count(call, type), 1);
    ck_assert_ptr_nonnull(tu_log_find("refused", type));
    tu_log_reset();
}

/* ---- fwx_firewall_options: initialiser and input ------------------------------------------ */

START_TEST(options_init_fills_only_the_callers_version)
{
    guarded g;
    /* What fwx_firewall_options_init() passes for a caller built against the first version. */
    guarded_fill(&g, 0);
    TU_EXPECT_HR(fwx_firewall_options_init_sized((fwx_firewall_options *)(void *)g.s.bytes, sizeof(options_v1)),
                 FWX_S_OK);
    const options_v1 *o = (const options_v1 *)(const void *)g.s.bytes;
    ck_assert_uint_eq(o->struct_size, sizeof(options_v1));
    ck_assert_uint_eq(o->timeout_ms, 60000);
    ck_assert_uint_eq(o->port_min, 49152);
    ck_assert_uint_eq(o->max_sessions, 100000);
    ck_assert_int_eq(o->log_level, FWX_LOG_INFO);
    ck_assert(untouched_from(&g, sizeof(options_v1)));

    /* The exact first size, without the padding. */
    guarded_fill(&g, 0);
    TU_EXPECT_HR(fwx_firewall_options_init_sized((fwx_firewall_options *)(void *)g.s.bytes, 84), FWX_S_OK);
    ck_assert_uint_eq(size_field(&g), 84);
    ck_assert(untouched_from(&g, 84));

    /* The symbol of the 1.0 headers fills the 1.0 struct (through loopback_hosts): 88 bytes. */
    guarded_fill(&g, 0);
    (fwx_firewall_options_init)((fwx_firewall_options *)(void *)g.s.bytes);
    ck_assert_uint_eq(size_field(&g), 88);
    ck_assert(untouched_from(&g, 88));

    /* The macro passes the caller's sizeof. */
    guarded_fill(&g, 0);
    fwx_firewall_options_init((fwx_firewall_options *)(void *)g.s.bytes);
    ck_assert_uint_eq(size_field(&g), sizeof(fwx_firewall_options));
    ck_assert(untouched_from(&g, sizeof(fwx_firewall_options)));

    /* Too small, too large: nothing written. */
    guarded_fill(&g, 0);
    TU_EXPECT_HR(fwx_firewall_options_init_sized((fwx_firewall_options *)(void *)g.s.bytes, 83), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_options_init_sized((fwx_firewall_options *)(void *)g.s.bytes,
                                                 sizeof(fwx_firewall_options) + 4),
                 FWX_E_INVALIDARG);
    ck_assert_uint_eq(size_field(&g), 0);
    ck_assert(untouched_from(&g, sizeof(uint32_t)));
    TU_EXPECT_HR(fwx_firewall_options_init_sized(NULL, sizeof(fwx_firewall_options)), FWX_E_POINTER);
}
END_TEST

START_TEST(options_v1_accepted_later_fields_default)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    /* A v1 caller's struct, with every byte after it set: none of it may be read. */
    OLD_STRUCT(options_v1, fwx_firewall_options) u;
    static const uint32_t sizes[] = {84, sizeof(options_v1)};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(sizes); k++) {
        memset(&u, 0xFF, sizeof u);
        fwx_firewall_options_init_sized((fwx_firewall_options *)(void *)&u, sizes[k]);
        u.v1.max_sessions = 1;
        fwx_firewall *fw = NULL;
        TU_EXPECT_HR(fwx_firewall_new(&loop, (const fwx_firewall_options *)(const void *)&u, &fw), FWX_S_OK);
        ck_assert_uint_eq(fw->opts.max_sessions, 1); /* a v1 field the caller set */
        ck_assert_uint_eq(fw->opts.struct_size, sizeof(fwx_firewall_options));
        if (sizes[k] == 84)
            ck_assert_int_eq(fw->opts.loopback_hosts, 0); /* its padding was 0xFF: not read */
        /* the fields appended later read as their defaults, not the 0xFF after the struct */
        ck_assert_int_eq(fw->opts.kernel_end_on_close, 0);
        ck_assert_int_eq(fw->opts.kernel_open_on_stop, 0);
        ck_assert_uint_eq(fw->opts.plugin_soft_limit_ms, 0);
        ck_assert_uint_eq(fw->opts.plugin_hard_limit_ms, 0);
        /* and max_sessions = 1 is in force */
        struct sockaddr_storage a = tu_addr("10.0.0.8"), b = tu_addr("10.0.0.9");
        fwx_session_params sp = {.struct_size = sizeof sp, .source = fwxSourceNAT, .client = TU_SA(a),
                                 .client_len = tu_len(&a)};
        IFWXSession *s1 = NULL, *s2 = NULL;
        TU_EXPECT_HR(fwx_session_open(fw, &sp, &s1), FWX_S_OK);
        sp.client = TU_SA(b);
        TU_EXPECT_HR(fwx_session_open(fw, &sp, &s2), FWX_E_QUOTA_EXCEEDED);
        ck_assert_ptr_null(s2);
        fwx_session_close(s1);
        IFWXSession_Release(s1);
        fwx_firewall_close(fw, NULL, NULL);
        tu_loop_run_for(&loop, 10);
    }
    tu_loop_close_clean(&loop);
}
END_TEST

START_TEST(options_bad_sizes_refused)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    PADDED(fwx_firewall_options, o) big;
    memset(&big, 0, sizeof big);
    fwx_firewall_options_init(&big.o);
    static const uint32_t bad[] = {0, 4, 83, sizeof(fwx_firewall_options) + 4};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad); k++) {
        big.o.struct_size = bad[k];
        fwx_firewall *fw = (fwx_firewall *)&loop; /* must be cleared */
        TU_EXPECT_HR(fwx_firewall_new(&loop, &big.o, &fw), FWX_E_INVALIDARG);
        ck_assert_ptr_null(fw);
    }
    tu_loop_close_clean(&loop);
}
END_TEST

/* ---- fwx_firewall_stats: output ------------------------------------------------------------ */

START_TEST(stats_written_up_to_the_callers_size)
{
    fx f;
    fx_open(&f);
    guarded g;
    guarded_fill(&g, sizeof(fwx_firewall_stats));
    TU_EXPECT_HR(fwx_firewall_get_stats(f.fw, (fwx_firewall_stats *)(void *)g.s.bytes), FWX_S_OK);
    const fwx_firewall_stats *st = (const fwx_firewall_stats *)(const void *)g.s.bytes;
    ck_assert_uint_eq(st->struct_size, sizeof *st);
    ck_assert_uint_eq(st->sessions, 1);
    ck_assert_uint_eq(st->plugins, 0);
    ck_assert(untouched_from(&g, sizeof *st));

    /* 0: a zeroed struct of a caller built against fwx 1.0 (when fwx set the size itself): the
       first size is written, struct_size stays 0, nothing past the first size. */
    guarded_fill(&g, 0);
    TU_EXPECT_HR(fwx_firewall_get_stats(f.fw, (fwx_firewall_stats *)(void *)g.s.bytes), FWX_S_OK);
    ck_assert_uint_eq(size_field(&g), 0);
    ck_assert_uint_eq(st->sessions, 1);
    ck_assert(untouched_from(&g, FWX__FIRST_FIREWALL_STATS));

    /* Too small or too large: refused, logged, nothing written, struct_size left alone. */
    static const uint32_t bad[] = {4, sizeof(fwx_firewall_stats) - 4, sizeof(fwx_firewall_stats) + 4};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad); k++) {
        guarded_fill(&g, bad[k]);
        TU_EXPECT_HR(fwx_firewall_get_stats(f.fw, (fwx_firewall_stats *)(void *)g.s.bytes), FWX_E_INVALIDARG);
        ck_assert_uint_eq(size_field(&g), bad[k]);
        ck_assert(untouched_from(&g, sizeof(uint32_t)));
        expect_refusal_logged("fwx_firewall_get_stats", "fwx_firewall_stats");
    }
    fx_close(&f);
}
END_TEST

/* ---- fwx_session_params, fwx_connection_params, fwx_flow: input ---------------------------- */

START_TEST(session_params_sizes)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage c = tu_addr("10.0.0.20");
    PADDED(fwx_session_params, p) b;
    memset(&b, 0, sizeof b);
    b.p = (fwx_session_params){.struct_size = sizeof b.p, .source = fwxSourceNAT, .client = TU_SA(c),
                               .client_len = tu_len(&c)};
    static const uint32_t bad[] = {0, sizeof(fwx_session_params) - 8, sizeof(fwx_session_params) + 8};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad); k++) {
        b.p.struct_size = bad[k];
        IFWXSession *s = (IFWXSession *)&b;
        TU_EXPECT_HR(fwx_session_open(f.fw, &b.p, &s), FWX_E_INVALIDARG);
        ck_assert_ptr_null(s);
        expect_refusal_logged("fwx_session_open", "fwx_session_params");
    }
    b.p.struct_size = sizeof b.p;
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(f.fw, &b.p, &s), FWX_S_OK);
    fwx_session_close(s);
    IFWXSession_Release(s);
    fx_close(&f);
}
END_TEST

START_TEST(connection_params_v1_accepted)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage peer = tu_addr("192.0.2.10:80");
    /* A v1 caller's struct followed by bytes that would be a published server if read. */
    OLD_STRUCT(connection_params_v1, fwx_connection_params) u;
    static const uint32_t sizes[] = {60, sizeof(connection_params_v1)};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(sizes); k++) {
        memset(&u, 0xFF, sizeof u);
        u.v1 = (connection_params_v1){.struct_size = sizes[k], .event = fwx_Connect_Tcp,
                                      .protocol = FWX_PROTOCOL_TCP, .external_peer = TU_SA(peer),
                                      .external_peer_len = tu_len(&peer)};
        memset(u.bytes + 60, 0xFF, sizeof u.bytes - 60); /* the padding too */
        IFWXConnection *c = NULL;
        TU_EXPECT_HR(fwx_connection_open(f.s, (const fwx_connection_params *)(const void *)&u, &c), FWX_S_OK);
        ck_assert_ptr_nonnull(c);
        fwx_connection_close(c);
    }
    static const uint32_t bad[] = {0, 56, sizeof(fwx_connection_params) + 8};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad); k++) {
        memset(&u, 0, sizeof u);
        u.v1 = (connection_params_v1){.struct_size = bad[k], .event = fwx_Connect_Tcp, .protocol = FWX_PROTOCOL_TCP,
                                      .external_peer = TU_SA(peer), .external_peer_len = tu_len(&peer)};
        IFWXConnection *c = (IFWXConnection *)&u;
        TU_EXPECT_HR(fwx_connection_open(f.s, (const fwx_connection_params *)(const void *)&u, &c), FWX_E_INVALIDARG);
        ck_assert_ptr_null(c);
        expect_refusal_logged("fwx_connection_open", "fwx_connection_params");
    }
    fx_close(&f);
}
END_TEST

START_TEST(flow_sizes)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage src = tu_addr("192.0.2.10:2000"), dst = tu_addr("10.0.0.8:3000");
    PADDED(fwx_flow, fl) b;
    memset(&b, 0, sizeof b);
    b.fl = (fwx_flow){.struct_size = sizeof b.fl, .protocol = FWX_PROTOCOL_TCP, .source = TU_SA(src),
                      .source_len = tu_len(&src), .destination = TU_SA(dst), .destination_len = tu_len(&dst)};
    /* Accepted from the first size (through destination_len) on: nothing was set up for it. */
    static const uint32_t good[] = {36, sizeof(fwx_flow)};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(good); k++) {
        b.fl.struct_size = good[k];
        IFWXConnection *c = NULL;
        TU_EXPECT_HR(fwx_firewall_admit(f.fw, &b.fl, &c), FWX_E_NOT_FOUND);
        TU_EXPECT_HR(fwx_firewall_admit_in_session(f.fw, f.s, &b.fl, &c), FWX_E_NOT_FOUND);
        ck_assert_ptr_null(c);
    }
    static const uint32_t bad[] = {0, 32, sizeof(fwx_flow) + 8};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad); k++) {
        b.fl.struct_size = bad[k];
        IFWXConnection *c = (IFWXConnection *)&b;
        TU_EXPECT_HR(fwx_firewall_admit(f.fw, &b.fl, &c), FWX_E_INVALIDARG);
        ck_assert_ptr_null(c);
        expect_refusal_logged("fwx_firewall_admit", "fwx_flow");
        TU_EXPECT_HR(fwx_firewall_admit_in_session(f.fw, f.s, &b.fl, &c), FWX_E_INVALIDARG);
        expect_refusal_logged("fwx_firewall_admit", "fwx_flow");
    }
    fx_close(&f);
}
END_TEST

/* ---- fwx_socks_limits: initialiser and input ---------------------------------------------- */

START_TEST(socks_limits_sizes)
{
    guarded g;
    guarded_fill(&g, 0);
    fwx_socks_limits_init((fwx_socks_limits *)(void *)g.s.bytes);
    const fwx_socks_limits *l = (const fwx_socks_limits *)(const void *)g.s.bytes;
    ck_assert_uint_eq(l->struct_size, sizeof *l);
    ck_assert_uint_eq(l->connections_per_client, 32);
    ck_assert_uint_eq(l->pending, 64);
    ck_assert(untouched_from(&g, sizeof *l));
    guarded_fill(&g, 0);
    TU_EXPECT_HR(fwx_socks_limits_init_sized((fwx_socks_limits *)(void *)g.s.bytes, sizeof *l - 4), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_socks_limits_init_sized((fwx_socks_limits *)(void *)g.s.bytes, sizeof *l + 4), FWX_E_INVALIDARG);
    ck_assert(untouched_from(&g, sizeof(uint32_t)));

    fx f;
    fx_open(&f);
    TU_EXPECT_HR(fwx_firewall_set_backend(f.fw, "proxy"), FWX_S_OK);
    PADDED(fwx_socks_limits, l) b;
    memset(&b, 0, sizeof b);
    fwx_socks_limits_init(&b.l);
    TU_EXPECT_HR(fwx_proxy_socks_set_limits(f.fw, &b.l), FWX_S_OK);
    static const uint32_t bad[] = {0, sizeof(fwx_socks_limits) - 4, sizeof(fwx_socks_limits) + 4};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad); k++) {
        b.l.struct_size = bad[k];
        tu_log_reset();
        TU_EXPECT_HR(fwx_proxy_socks_set_limits(f.fw, &b.l), FWX_E_INVALIDARG);
        expect_refusal_logged("fwx_proxy_socks_set_limits", "fwx_socks_limits");
    }
    fx_close(&f);
}
END_TEST

/* ---- redirect records: fwx_redirect_app in and out, fwx_redirect_hop out ------------------- */

START_TEST(redirect_structs)
{
    struct sockaddr_storage dst = tu_addr("192.0.2.10:443");
    PADDED(fwx_redirect_app, a) b;
    memset(&b, 0, sizeof b);
    b.a = (fwx_redirect_app){.struct_size = sizeof b.a, .pid = 4242, .uid = 1000, .cgroup_id = 7,
                             .cgroup_path = "/user.slice"};
    fwx_redirect_record *rec = NULL;
    static const uint32_t bad[] = {0, sizeof(fwx_redirect_app) - 8, sizeof(fwx_redirect_app) + 8};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad); k++) {
        b.a.struct_size = bad[k];
        TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(dst), tu_len(&dst), &b.a, &rec), FWX_E_INVALIDARG);
        ck_assert_ptr_null(rec);
    }
    b.a.struct_size = sizeof b.a;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(dst), tu_len(&dst), &b.a, &rec), FWX_S_OK);

    guarded g;
    guarded_fill(&g, sizeof(fwx_redirect_app));
    TU_EXPECT_HR(fwx_redirect_record_original_app(rec, (fwx_redirect_app *)(void *)g.s.bytes), FWX_S_OK);
    const fwx_redirect_app *a = (const fwx_redirect_app *)(const void *)g.s.bytes;
    ck_assert_uint_eq(a->struct_size, sizeof *a);
    ck_assert_uint_eq(a->pid, 4242);
    ck_assert_str_eq(a->cgroup_path, "/user.slice");
    ck_assert(untouched_from(&g, sizeof *a));
    for (size_t k = 1; k < FWX__ARRAY_SIZE(bad); k++) { /* bad[0] is 0: see below */
        guarded_fill(&g, bad[k]);
        TU_EXPECT_HR(fwx_redirect_record_original_app(rec, (fwx_redirect_app *)(void *)g.s.bytes), FWX_E_INVALIDARG);
        ck_assert(untouched_from(&g, sizeof(uint32_t)));
    }
    /* An output struct_size of 0 is the first size (callers built against fwx 1.0). */
    ck_assert_uint_eq(bad[0], 0);
    guarded_fill(&g, 0);
    TU_EXPECT_HR(fwx_redirect_record_original_app(rec, (fwx_redirect_app *)(void *)g.s.bytes), FWX_S_OK);
    ck_assert_uint_eq(size_field(&g), 0);
    ck_assert_uint_eq(a->pid, 4242);
    ck_assert(untouched_from(&g, FWX__FIRST_REDIRECT_APP));

    /* A hop to describe. */
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    fwx_firewall *fw = NULL;
    TU_EXPECT_HR(fwx_firewall_new(&loop, NULL, &fw), FWX_S_OK);
    const fwx_guid prov = FWX_GUID_INIT(0x51, 0x2e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
    fwx_redirect_handle *h = NULL;
    TU_EXPECT_HR(fwx_redirect_handle_create(fw, &prov, 0, &h), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, h, NULL, NULL), FWX_S_OK);
    guarded_fill(&g, sizeof(fwx_redirect_hop));
    TU_EXPECT_HR(fwx_redirect_record_hop(rec, 0, (fwx_redirect_hop *)(void *)g.s.bytes), FWX_S_OK);
    const fwx_redirect_hop *hop = (const fwx_redirect_hop *)(const void *)g.s.bytes;
    ck_assert_uint_eq(hop->struct_size, sizeof *hop);
    ck_assert(fwx_guid_equal(&hop->provider, &prov));
    ck_assert_ptr_eq(hop->handle, h);
    ck_assert(untouched_from(&g, sizeof *hop));
    guarded_fill(&g, 0); /* 0: the first size, as above */
    TU_EXPECT_HR(fwx_redirect_record_hop(rec, 0, (fwx_redirect_hop *)(void *)g.s.bytes), FWX_S_OK);
    ck_assert_uint_eq(size_field(&g), 0);
    ck_assert(fwx_guid_equal(&hop->provider, &prov));
    ck_assert(untouched_from(&g, FWX__FIRST_REDIRECT_HOP));
    static const uint32_t bad_hop[] = {sizeof(fwx_redirect_hop) - 8, sizeof(fwx_redirect_hop) + 8};
    for (size_t k = 0; k < FWX__ARRAY_SIZE(bad_hop); k++) {
        guarded_fill(&g, bad_hop[k]);
        TU_EXPECT_HR(fwx_redirect_record_hop(rec, 0, (fwx_redirect_hop *)(void *)g.s.bytes), FWX_E_INVALIDARG);
        ck_assert(untouched_from(&g, sizeof(uint32_t)));
    }
    fwx_redirect_record_unref(rec);
    fwx_redirect_handle_destroy(h);
    fwx_firewall_close(fw, NULL, NULL);
    tu_loop_close_clean(&loop);
}
END_TEST

/* ---- fwx_plugin_entry: handed out by the plugin, read by the host -------------------------- */

START_TEST(plugin_entry_sizes)
{
    fx f;
    fx_open(&f);
    /* 80 bytes ends before create_filter; 96 is more than this host knows. */
    TU_EXPECT_HR(fwx_firewall_load_plugin(f.fw, tu_plugin_path("tp_shortentry"), NULL), FWX_E_ABI_MISMATCH);
    ck_assert_ptr_nonnull(tu_log_find("entry is 80 bytes", "expected 88 to 88"));
    TU_EXPECT_HR(fwx_firewall_load_plugin(f.fw, tu_plugin_path("tp_longentry"), NULL), FWX_E_ABI_MISMATCH);
    ck_assert_ptr_nonnull(tu_log_find("entry is 96 bytes", "expected 88 to 88"));
    fwx_plugin *p = NULL;
    TU_EXPECT_HR(fwx_firewall_load_plugin(f.fw, tu_plugin_path("tp_good"), &p), FWX_S_OK);
    ck_assert_uint_eq(fwx_plugin_info(p)->struct_size, sizeof(fwx_plugin_entry));
    fx_close(&f);
}
END_TEST

/* ---- handed out: struct_size is the library's ------------------------------------------ */

static void on_info(void *arg, const fwx_object_info *info)
{
    ck_assert_uint_eq(info->struct_size, sizeof *info);
    ++*(int *)arg;
}

static void on_record(void *arg, const fwx_log_record *r)
{
    ck_assert_uint_eq(r->struct_size, sizeof *r);
    ++*(int *)arg;
}

START_TEST(handed_out_structs_carry_the_library_size)
{
    fx f;
    fx_open(&f);
    int n = 0;
    TU_EXPECT_HR(fwx_firewall_list(f.fw, FWX_OBJECT_SESSION, on_info, &n), FWX_S_OK);
    ck_assert_int_eq(n, 1);
    n = 0;
    TU_EXPECT_HR(fwx_firewall_set_log_sink(f.fw, on_record, &n), FWX_S_OK);
    fwx_firewall_log(f.fw, FWX_LOG_ERROR, "a line");
    ck_assert_int_eq(n, 1);
    TU_EXPECT_HR(fwx_firewall_set_log_sink(f.fw, NULL, NULL), FWX_S_OK);
    fx_close(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("struct_size");
    TCase *tc = tcase_create("rule");
    tcase_add_test(tc, options_init_fills_only_the_callers_version);
    tcase_add_test(tc, options_v1_accepted_later_fields_default);
    tcase_add_test(tc, options_bad_sizes_refused);
    tcase_add_test(tc, stats_written_up_to_the_callers_size);
    tcase_add_test(tc, session_params_sizes);
    tcase_add_test(tc, connection_params_v1_accepted);
    tcase_add_test(tc, flow_sizes);
    tcase_add_test(tc, socks_limits_sizes);
    tcase_add_test(tc, redirect_structs);
    tcase_add_test(tc, plugin_entry_sizes);
    tcase_add_test(tc, handed_out_structs_carry_the_library_size);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
