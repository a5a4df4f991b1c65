/*
 * fwx tests - backends: the registry, and what the core hands a backend (grants, relays,
 * kills), checked with the fault-injecting backend of fault_backend.c.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "fault_backend.h"
#include "plugins/test_plugin.h"
#include "util/util.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- environment ------------------------------------------------------------------------ */

#define PORT_MIN 40000
#define PORT_MAX 40063

static uv_loop_t loop;
static fwx_firewall *fw;

static void env_open_nobackend(void)
{
    fwx_firewall_options o;
    tu_fw_options(&o);
    o.port_min = PORT_MIN;
    o.port_max = PORT_MAX;
    tu_fw_open(&loop, &o, &fw);
}

static void use_fault_backend(void)
{
    fwx_result hr = fwx_backend_register(&fault_backend);
    ck_assert_msg(hr == FWX_S_OK || hr == FWX_S_FALSE, "register: %s", fwx_err_name(hr));
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_S_OK);
    ck_assert(fault_backend_is_open());
    ck_assert_ptr_eq(fault_backend_firewall(), fw);
    ck_assert_ptr_nonnull(fwx_firewall_backend_state(fw));
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_OPEN), 1);
    fault_backend_reset();
}

static void env_open(void)
{
    env_open_nobackend();
    use_fault_backend();
}

static void env_close(void) { tu_fw_close(&loop, &fw); }

static fwx_firewall_stats stats(void) { return tu_fw_stats(fw); }

static IFWXSession *open_session(const char *client)
{
    struct sockaddr_storage c = tu_addr(client);
    fwx_session_params sp = {
        .struct_size = sizeof sp, .source = fwxSourceNAT, .client = TU_SA(c), .client_len = tu_len(&c)};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(fw, &sp, &s), FWX_S_OK);
    ck_assert_ptr_nonnull(s);
    TU_EXPECT_REF(s, 2);
    return s;
}

static IFWXConnection *open_connect(IFWXSession *s, const char *peer)
{
    struct sockaddr_storage p = tu_addr(peer);
    fwx_connection_params cp = {
        .struct_size = sizeof cp,
        .event = fwx_Connect_Tcp,
        .protocol = FWX_PROTOCOL_TCP,
        .external_peer = TU_SA(p),
        .external_peer_len = tu_len(&p),
    };
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &c), FWX_S_OK);
    ck_assert_ptr_nonnull(c);
    TU_EXPECT_REF(c, 2);
    return c;
}

static fwx_result afc(IFWXSession *s, const char *target, uint32_t flags, IFWXConnection *conn,
                      IFWXFirewallAction **action)
{
    struct sockaddr_storage t = tu_addr(target);
    return IFWXSession_AllowFutureConnect(s, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP, flags, NULL, NULL, NULL,
                                          conn, action);
}

/* BindForClient of n ports for the session's client (10.0.0.8) on 0.0.0.0:0. */
static fwx_result bind_n(IFWXSession *s, uint32_t n, IFWXConnection *conns[])
{
    struct sockaddr_storage ca[16];
    const struct sockaddr *cap[16];
    char text[64];
    ck_assert_uint_le(n, 16);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(text, sizeof text, "10.0.0.8:%u", 1024 + i);
        ca[i] = tu_addr(text);
        cap[i] = TU_SA(ca[i]);
    }
    struct sockaddr_storage proxy = tu_addr("0.0.0.0:0");
    return IFWXSession_BindForClient(s, cap, tu_len(&ca[0]), TU_SAM(proxy), tu_len(&proxy), FWX_PROTOCOL_TCP, n, 0, 5,
                                     NULL, NULL, NULL, NULL, conns);
}

static int same_endpoint(const struct sockaddr_storage *a, const char *text)
{
    struct sockaddr_storage b = tu_addr(text);
    return fwx__sa_same_endpoint((const struct sockaddr *)a, TU_SA(b));
}

/* ---- registry ---------------------------------------------------------------------------- */

static fwx_result noop_open(const fwx_backend *self, fwx_firewall *f, void **state)
{
    (void)self, (void)f;
    *state = NULL;
    return FWX_S_OK;
}
static void noop_close(void *state) { (void)state; }
static fwx_result noop_add(void *state, const fwx_grant *g)
{
    (void)state, (void)g;
    return FWX_S_OK;
}
static fwx_result noop_remove(void *state, uint64_t id)
{
    (void)state, (void)id;
    return FWX_S_OK;
}

/* The usual start: the environment, a session for the client 10.0.0.8 and its control
   connection to 198.51.100.7:21 (in *c). */
static IFWXSession *open_env_session(IFWXConnection **c)
{
    env_open();
    IFWXSession *s = open_session("10.0.0.8");
    *c = open_connect(s, "198.51.100.7:21");
    return s;
}

/* ... and its end: the control connection closed, our session reference dropped, the
   environment closed (which checks nothing is left). */
static void close_env_session(IFWXSession *s, IFWXConnection *c)
{
    fwx_connection_close(c);
    IFWXSession_Release(s);
    env_close();
}

START_TEST(registry)
{
    TU_EXPECT_HR(fwx_backend_register(&fault_backend), FWX_S_OK);
    TU_EXPECT_HR(fwx_backend_register(&fault_backend), FWX_S_FALSE);
    ck_assert_ptr_eq(fwx_backend_find(FAULT_BACKEND_NAME), &fault_backend);

    /* Another struct with the same name. */
    fwx_backend other = {.version = 1, .name = FAULT_BACKEND_NAME, .open = noop_open, .close = noop_close,
                         .grant_add = noop_add, .grant_remove = noop_remove};
    TU_EXPECT_HR(fwx_backend_register(&other), FWX_E_ALREADY_EXISTS_WIN32);
    ck_assert_ptr_eq(fwx_backend_find(FAULT_BACKEND_NAME), &fault_backend);

    /* Malformed ones; the registry must not touch them. */
    fwx_backend bad = other;
    bad.name = "bad";
    bad.version = 0;
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_E_INVALIDARG);
    ck_assert_int_eq(bad.version, 0);
    bad.version = -1;
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_E_INVALIDARG);
    bad.version = 1;
    bad.name = NULL;
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_E_INVALIDARG);
    bad.name = "";
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_E_INVALIDARG);
    bad.name = "bad";
    bad.grant_add = NULL;
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_E_INVALIDARG);
    bad.grant_add = noop_add;
    bad.open = NULL;
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_E_INVALIDARG);
    bad.open = noop_open;
    bad.version = 99;
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_E_NOT_SUPPORTED);
    ck_assert_int_eq(bad.version, 99);
    ck_assert_ptr_null(fwx_backend_find("bad"));
    TU_EXPECT_HR(fwx_backend_register(NULL), FWX_E_INVALIDARG);

    /* Optional methods may be NULL: a minimal backend registers. */
    bad.version = 1;
    TU_EXPECT_HR(fwx_backend_register(&bad), FWX_S_OK);
    ck_assert_ptr_eq(fwx_backend_find("bad"), &bad);
    ck_assert_ptr_eq(fwx_backend_find(FAULT_BACKEND_NAME), &fault_backend);
    ck_assert_ptr_null(fwx_backend_find("nope"));
    ck_assert_ptr_null(fwx_backend_find(NULL));

    TU_EXPECT_HR(fwx_backend_unregister(&fault_backend), FWX_S_OK);
    ck_assert_ptr_null(fwx_backend_find(FAULT_BACKEND_NAME));
    TU_EXPECT_HR(fwx_backend_unregister(&fault_backend), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(fwx_backend_unregister(&other), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(fwx_backend_unregister(NULL), FWX_E_NOT_FOUND);
    /* The name is free again: the other struct may take it. */
    TU_EXPECT_HR(fwx_backend_register(&other), FWX_S_OK);
    ck_assert_ptr_eq(fwx_backend_find(FAULT_BACKEND_NAME), &other);
    TU_EXPECT_HR(fwx_backend_unregister(&other), FWX_S_OK);
    TU_EXPECT_HR(fwx_backend_unregister(&bad), FWX_S_OK);
}
END_TEST

START_TEST(set_backend_unknown)
{
    env_open_nobackend();
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, "no-such-backend"), FWX_E_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "no-such-backend"));
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, NULL), FWX_E_NOT_FOUND);
    ck_assert_ptr_null(fwx_firewall_backend_state(fw));
    /* Registered, then unregistered: not found either. */
    TU_EXPECT_HR(fwx_backend_register(&fault_backend), FWX_S_OK);
    TU_EXPECT_HR(fwx_backend_unregister(&fault_backend), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_E_NOT_FOUND);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_OPEN), 0);
    env_close();
}
END_TEST

START_TEST(set_backend_open_fails)
{
    env_open_nobackend();
    TU_EXPECT_HR(fwx_backend_register(&fault_backend), FWX_S_OK);
    fault_backend_fail_open(FWX_E_BACKEND);
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_E_BACKEND);
    ck_assert_ptr_null(fwx_firewall_backend_state(fw));
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "open failed"));
    /* The firewall works without it. */
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:21");
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_ADD), 0);
    close_env_session(s, c);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_CLOSE), 0);
}
END_TEST

/* ---- grants ------------------------------------------------------------------------------- */

static void list_cb(void *arg, const fwx_grant *lg)
{
    ck_assert_uint_eq(lg->struct_size, sizeof *lg);
    ck_assert_int_eq(lg->kind, FWX_GRANT_PERMISSION);
    ++*(size_t *)arg;
}

START_TEST(afc_grant_and_cancel)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    IFWXFirewallAction *act = NULL;
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, &act), FWX_S_OK);
    ck_assert_ptr_nonnull(act);
    TU_EXPECT_REF(act, 1);
    TU_EXPECT_REF(c, 2);
    ck_assert_uint_eq(stats().permissions, 1);

    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    const fault_grant *g = fault_backend_grant(0);
    ck_assert_int_eq(g->kind, FWX_GRANT_PERMISSION);
    ck_assert_int_eq(g->protocol, FWX_PROTOCOL_TCP);
    ck_assert_uint_eq(g->flags, 0);
    ck_assert(same_endpoint(&g->target, "198.51.100.7:50000"));
    ck_assert(same_endpoint(&g->client, "10.0.0.8:0"));
    ck_assert(fwx__sa_is_unspecified((const struct sockaddr *)&g->gateway));
    ck_assert_int_eq(g->kernel_mode, 1);
    ck_assert_uint_eq(g->expires_ms, 0);
    uint64_t id = g->id;
    ck_assert_uint_ne(id, 0);

    /* list reports it. */
    size_t listed = 0;
    TU_EXPECT_HR(fault_backend.list(fwx_firewall_backend_state(fw), list_cb, &listed), FWX_S_OK);
    ck_assert_uint_eq(listed, 1);

    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_REMOVE), 1);
    ck_assert_uint_eq(fault_backend_last(FAULT_OP_GRANT_REMOVE)->id, id);
    TU_EXPECT_HR(fault_backend_last(FAULT_OP_GRANT_REMOVE)->result, FWX_S_OK);
    ck_assert_uint_eq(stats().permissions, 0);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act), FWX_S_FALSE);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_REMOVE), 1);
    TU_EXPECT_REF(act, 1);
    IFWXFirewallAction_Release(act);

    /* The same target may be allowed again once cancelled. */
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    ck_assert_uint_ne(fault_backend_grant(0)->id, id);

    close_env_session(s, c);

    ck_assert_uint_eq(fault_backend_n_grants(), 0);
}
END_TEST

START_TEST(afc_backend_refuses)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    fault_backend_fail_at(1, FWX_E_BACKEND);
    IFWXFirewallAction *act = (IFWXFirewallAction *)(uintptr_t)1;
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, &act), FWX_E_BACKEND);
    ck_assert_ptr_null(act);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    ck_assert_uint_eq(stats().permissions, 0);
    /* Nothing is left behind: the same permission succeeds next time. */
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    ck_assert_uint_eq(stats().permissions, 1);
    close_env_session(s, c);
}
END_TEST

START_TEST(afc_timeout_grant_carries_expiry)
{
    /* fwx_grant::expires_ms is "loop time when it expires, 0 for never": a TIMEOUT grant must
       reach the backend with its deadline. */
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    uint64_t before = uv_now(&loop);
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", FWX_FLAG_TIMEOUT, c, NULL), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    ck_assert_uint_eq(fault_backend_grant(0)->flags, FWX_FLAG_TIMEOUT);
    ck_assert_msg(fault_backend_grant(0)->expires_ms >= before + 60000,
                  "the backend got expires_ms %llu for a TIMEOUT grant (loop time %llu, timeout 60000)",
                  (unsigned long long)fault_backend_grant(0)->expires_ms, (unsigned long long)before);
    close_env_session(s, c);
}
END_TEST

START_TEST(bind_timeout_grant_carries_expiry)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    IFWXConnection *conns[1] = {NULL};
    struct sockaddr_storage ca = tu_addr("10.0.0.8:1024"), proxy = tu_addr("0.0.0.0:0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    uint64_t before = uv_now(&loop);
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&ca), TU_SAM(proxy), tu_len(&proxy), FWX_PROTOCOL_TCP, 1,
                                           FWX_FLAG_TIMEOUT, 5, NULL, NULL, NULL, NULL, conns),
                 FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    ck_assert_msg(fault_backend_grant(0)->expires_ms >= before + 60000,
                  "the backend got expires_ms %llu for a TIMEOUT binding",
                  (unsigned long long)fault_backend_grant(0)->expires_ms);
    IFWXConnection_Release(conns[0]);
    close_env_session(s, c);
}
END_TEST

static void expect_bindings(IFWXConnection *conns[], uint32_t n)
{
    ck_assert_uint_eq(fault_backend_n_grants(), n);
    ck_assert_uint_eq(fault_backend_count_kind(FWX_GRANT_BINDING), n);
    uint16_t base = fwx__sa_port((const struct sockaddr *)&fault_backend_grant(0)->gateway);
    ck_assert_uint_eq(base % n, 0);
    ck_assert_uint_ge(base, PORT_MIN);
    ck_assert_uint_le(base + n - 1, PORT_MAX);
    for (uint32_t i = 0; i < n; i++) {
        const fault_grant *g = fault_backend_grant(i);
        ck_assert_int_eq(g->kind, FWX_GRANT_BINDING);
        ck_assert_int_eq(g->protocol, FWX_PROTOCOL_TCP);
        ck_assert_uint_eq(fwx__sa_port((const struct sockaddr *)&g->gateway), base + i);
        ck_assert(fwx__sa_is_unspecified((const struct sockaddr *)&g->gateway));
        char want[64];
        snprintf(want, sizeof want, "10.0.0.8:%u", 1024 + i);
        ck_assert(same_endpoint(&g->target, want));
        ck_assert(same_endpoint(&g->client, "10.0.0.8:0"));
        ck_assert_int_eq(g->backlog, 5);
        ck_assert_int_eq(g->kernel_mode, 1);
        ck_assert_ptr_nonnull(conns[i]);
        TU_EXPECT_REF(conns[i], 2); /* ours and the session's list */
        struct sockaddr_storage local;
        uint32_t len = sizeof local;
        TU_EXPECT_HR(IFWXConnection_GetExternalSocketName(conns[i], TU_SAM(local), &len), FWX_S_OK);
        ck_assert_uint_eq(fwx__sa_port(TU_SA(local)), base + i);
    }
    ck_assert_uint_eq(stats().bound_ports, n);
}

START_TEST(bind_for_client)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    uint32_t conns_before = stats().connections;
    IFWXConnection *conns[4] = {NULL};
    TU_EXPECT_HR(bind_n(s, 4, conns), FWX_S_OK);
    expect_bindings(conns, 4);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_ADD), 4);
    ck_assert_uint_eq(stats().connections, conns_before + 4);

    /* Closing the session withdraws everything from the backend. */
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_REMOVE), 4);
    ck_assert_uint_eq(stats().bound_ports, 0);
    for (int i = 0; i < 4; i++) {
        TU_EXPECT_REF(conns[i], 1);
        IFWXConnection_Release(conns[i]);
    }
    TU_EXPECT_REF(c, 1);
    IFWXConnection_Release(c);
    TU_EXPECT_REF(s, 1);
    IFWXSession_Release(s);
    ck_assert_uint_eq(stats().connections, 0);
    env_close();
}
END_TEST

START_TEST(bind_for_client_backend_fails)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    uint32_t conns_before = stats().connections;
    IFWXConnection *conns[4] = {(IFWXConnection *)(uintptr_t)1, (IFWXConnection *)(uintptr_t)1,
                                (IFWXConnection *)(uintptr_t)1, (IFWXConnection *)(uintptr_t)1};
    fault_backend_fail_at(3, FWX_E_BACKEND);
    TU_EXPECT_HR(bind_n(s, 4, conns), FWX_E_BACKEND);
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_null(conns[i]);
    /* All or nothing: the two ports the backend took were given back. */
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_ADD), 3);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_REMOVE), 2);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    ck_assert_uint_eq(stats().bound_ports, 0);
    ck_assert_uint_eq(stats().connections, conns_before);
    TU_EXPECT_REF(s, 3); /* ours, the list's, the primary connection's */

    /* And the next call works. */
    IFWXConnection *more[4] = {NULL};
    fault_backend_reset();
    TU_EXPECT_HR(bind_n(s, 4, more), FWX_S_OK);
    expect_bindings(more, 4);
    for (int i = 0; i < 4; i++)
        IFWXConnection_Release(more[i]);
    close_env_session(s, c);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
}
END_TEST

START_TEST(bind_for_client_port_taken)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    IFWXConnection *conns[4] = {NULL};
    fault_backend_reset(); /* forget the primary connection's relay: calls start with the bind */
    fault_backend_fail_at(1, FWX_E_ADDRINUSE);
    TU_EXPECT_HR(bind_n(s, 4, conns), FWX_S_OK);
    /* The first slot was refused; the core moved to another one. */
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_ADD), 5);
    const fault_call *first = fault_backend_call(0);
    ck_assert_int_eq(first->op, FAULT_OP_GRANT_ADD);
    TU_EXPECT_HR(first->result, FWX_E_ADDRINUSE);
    expect_bindings(conns, 4);
    uint16_t base = fwx__sa_port((const struct sockaddr *)&fault_backend_grant(0)->gateway);
    ck_assert_uint_ne(first->gateway_port, base);
    ck_assert_uint_eq(first->gateway_port % 4, 0);
    for (int i = 0; i < 4; i++)
        IFWXConnection_Release(conns[i]);
    fwx_connection_close(c);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    IFWXSession_Release(s);
    env_close();
}
END_TEST

START_TEST(session_close_withdraws_all)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    IFWXConnection *conns[2] = {NULL};
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    TU_EXPECT_HR(afc(s, "198.51.100.7:50001", FWX_FLAG_ALLOW_MULTIPLE, c, NULL), FWX_S_OK);
    TU_EXPECT_HR(bind_n(s, 2, conns), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 4);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_REMOVE), 4);
    ck_assert_uint_eq(stats().permissions, 0);
    ck_assert_uint_eq(stats().bound_ports, 0);
    /* Each killed connection was reported to the backend. */
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_KILL), 3);
    IFWXConnection_Release(conns[0]);
    IFWXConnection_Release(conns[1]);
    IFWXConnection_Release(c);
    IFWXSession_Release(s);
    env_close();
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_CLOSE), 1);
    ck_assert(!fault_backend_is_open());
}
END_TEST

START_TEST(admit_uses_up_grant)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    struct sockaddr_storage src = tu_addr("10.0.0.8:33000"), dst = tu_addr("198.51.100.7:50000");
    fwx_flow flow = {.struct_size = sizeof flow, .protocol = FWX_PROTOCOL_TCP, .source = TU_SA(src),
                     .source_len = tu_len(&src), .destination = TU_SA(dst), .destination_len = tu_len(&dst)};
    IFWXConnection *sec = NULL;
    unsigned relays = fault_backend_count(FAULT_OP_RELAY);
    TU_EXPECT_HR(fwx_firewall_admit(fw, &flow, &sec), FWX_S_OK);
    ck_assert_ptr_nonnull(sec);
    TU_EXPECT_REF(sec, 2);
    /* A one-shot permission is gone from the backend once used; the new connection is relayed. */
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_RELAY), relays + 1);
    ck_assert_ptr_eq(fault_backend_last(FAULT_OP_RELAY)->conn, sec);
    ck_assert_int_eq(fault_backend_last(FAULT_OP_RELAY)->kernel_mode, 1);
    IFWXConnection *again = (IFWXConnection *)(uintptr_t)1;
    TU_EXPECT_HR(fwx_firewall_admit(fw, &flow, &again), FWX_E_NOT_FOUND);
    ck_assert_ptr_null(again);
    fwx_connection_close(sec);
    ck_assert_ptr_eq(fault_backend_last(FAULT_OP_KILL)->conn, sec);
    close_env_session(s, c);
}
END_TEST

START_TEST(set_backend_installs_existing)
{
    env_open_nobackend();
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:21");
    IFWXConnection *conns[2] = {NULL};
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    TU_EXPECT_HR(bind_n(s, 2, conns), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_ADD), 0);

    TU_EXPECT_HR(fwx_backend_register(&fault_backend), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 3);
    ck_assert_uint_eq(fault_backend_count_kind(FWX_GRANT_PERMISSION), 1);
    ck_assert_uint_eq(fault_backend_count_kind(FWX_GRANT_BINDING), 2);
    for (size_t i = 0; i < 3; i++) {
        const fault_grant *g = fault_backend_grant(i);
        if (g->kind == FWX_GRANT_PERMISSION)
            ck_assert(same_endpoint(&g->target, "198.51.100.7:50000"));
        else
            ck_assert_uint_ge(fwx__sa_port((const struct sockaddr *)&g->gateway), PORT_MIN);
    }
    ck_assert_int_eq(tu_log_count("using backend \"fault\"", NULL), 1);

    /* Setting it again closes the instance and installs everything into the new one. */
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_CLOSE), 1);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_OPEN), 2);
    ck_assert_uint_eq(fault_backend_n_grants(), 3);

    /* Withdrawals reach the new instance. */
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    IFWXConnection_Release(conns[0]);
    IFWXConnection_Release(conns[1]);
    IFWXConnection_Release(c);
    IFWXSession_Release(s);
    env_close();
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_CLOSE), 2);
}
END_TEST

START_TEST(set_backend_install_fails)
{
    env_open_nobackend();
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:21");
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    TU_EXPECT_HR(afc(s, "198.51.100.7:50001", 0, c, NULL), FWX_S_OK);
    TU_EXPECT_HR(fwx_backend_register(&fault_backend), FWX_S_OK);
    fault_backend_fail_at(2, FWX_E_BACKEND);
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_E_BACKEND);
    ck_assert_ptr_null(fwx_firewall_backend_state(fw));
    ck_assert(!fault_backend_is_open());
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_CLOSE), 1);
    /* The core still holds and enforces its grants without a backend. */
    ck_assert_uint_eq(stats().permissions, 2);
    /* A later backend gets them all. */
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 2);
    close_env_session(s, c);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
}
END_TEST

START_TEST(kernel_mode_flag)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    IFWXFirewallAction *a1 = NULL, *a2 = NULL;
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", FWX_FLAG_NO_KERNEL_MODE, c, &a1), FWX_S_OK);
    TU_EXPECT_HR(afc(s, "198.51.100.7:50001", 0, c, &a2), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 2);
    ck_assert_uint_eq(fault_backend_grant(0)->flags, FWX_FLAG_NO_KERNEL_MODE);
    ck_assert_int_eq(fault_backend_grant(0)->kernel_mode, 0);
    ck_assert_uint_eq(fault_backend_grant(1)->flags, 0);
    ck_assert_int_eq(fault_backend_grant(1)->kernel_mode, 1);
    IFWXFirewallAction_Release(a1);
    IFWXFirewallAction_Release(a2);
    /* Dropping the action objects does not cancel the permissions. */
    ck_assert_uint_eq(fault_backend_n_grants(), 2);
    close_env_session(s, c);
}
END_TEST

/* ---- relay and kill ----------------------------------------------------------------------- */

static tp_control *load_good(uint32_t hooks, void **handle)
{
    tp_control *ctl = tu_plugin_map("tp_good", handle);
    ctl->hooks = hooks;
    tu_plugin_load(fw, "tp_good");
    return ctl;
}

START_TEST(relay_kernel_without_hooks)
{
    env_open();
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:80");
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_RELAY), 1);
    const fault_call *r = fault_backend_last(FAULT_OP_RELAY);
    ck_assert_ptr_eq(r->conn, c);
    ck_assert_int_eq(r->kernel_mode, 1);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_KERNEL_MODE);
    fwx_connection_close(c);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_KILL), 1);
    ck_assert_ptr_eq(fault_backend_last(FAULT_OP_KILL)->conn, c);
    IFWXSession_Release(s);
    env_close();
}
END_TEST

START_TEST(relay_user_with_hook)
{
    void *h;
    env_open();
    tp_control *ctl = load_good(fwx_Connect_Tcp | fwxSourceNAT, &h);
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_events, 1);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_RELAY), 1);
    ck_assert_ptr_eq(fault_backend_last(FAULT_OP_RELAY)->conn, c);
    ck_assert_int_eq(fault_backend_last(FAULT_OP_RELAY)->kernel_mode, 0);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_KERNEL_MODE));
    /* A permission made while the filter hooks secondary connects too stays in user mode. */
    close_env_session(s, c);
    dlclose(h);
}
END_TEST

START_TEST(relay_kernel_when_hook_is_other_source)
{
    void *h;
    env_open();
    tp_control *ctl = load_good(fwx_Connect_Tcp | fwxSourceWSP, &h);
    IFWXSession *s = open_session("10.0.0.8"); /* NAT */
    IFWXConnection *c = open_connect(s, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_events, 0);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_RELAY), 1);
    ck_assert_int_eq(fault_backend_last(FAULT_OP_RELAY)->kernel_mode, 1);
    close_env_session(s, c);
    dlclose(h);
}
END_TEST

/* The log line says how the bytes travel, not the SDK's flag: a kernel-mode connection (no
   user-mode filter needs it) that a user-space backend relays is "relayed, no data filter",
   never "kernel"; one a data filter reads is "filtered". (The nft backend's "kernel-carried"
   is held by tests/netns/check_nft.c and check_nft_gateway.c.) */
static fwx_result nop_df_qi(IFWXDataFilter *T, const fwx_guid *r, void **p) { (void)T, (void)r; *p = NULL; return FWX_E_NOINTERFACE; }
static uint32_t nop_df_ref(IFWXDataFilter *T) { (void)T; return 1; }
static fwx_result nop_df_sockets(IFWXDataFilter *T, IFWXSocket *a, IFWXSocket *b, IFWXConnection *c, IUnknown *x)
{
    (void)T, (void)a, (void)b, (void)c, (void)x;
    return FWX_S_OK;
}
static fwx_result nop_df_detach(IFWXDataFilter *T) { (void)T; return FWX_S_OK; }
static const IFWXDataFilterVtbl nop_df_vtbl = {nop_df_qi, nop_df_ref, nop_df_ref, nop_df_sockets, nop_df_detach};
static IFWXDataFilter nop_df = {&nop_df_vtbl};

static fwx_result attach_nop_df(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)ctl, (void)sf, (void)s;
    if (ev->EventType == fwx_Connect_Tcp)
        return IFWXConnection_AttachDataFilter(ev->Parameters.Connect.piConnection, &nop_df, fwx_dfpc_Middle, NULL);
    return FWX_S_OK;
}

START_TEST(log_says_how_bytes_travel)
{
    void *h;
    env_open();
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:80");
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_KERNEL_MODE); /* the SDK's sense: no data filter */
    ck_assert_int_eq(tu_log_count("198.51.100.7:80 opened (relayed, no data filter)", NULL), 1);
    ck_assert_int_eq(tu_log_count("kernel", NULL), 0);
    fwx_connection_close(c);
    IFWXSession_Release(s);
    env_close();

    env_open();
    tp_control *ctl = load_good(fwx_Connect_Tcp | fwxSourceNAT, &h);
    ctl->on_event = attach_nop_df;
    s = open_session("10.0.0.8");
    c = open_connect(s, "198.51.100.7:81");
    ck_assert_uint_eq(fwx_connection_data_filters(c), 1);
    ck_assert_int_eq(tu_log_count("198.51.100.7:81 opened (filtered)", NULL), 1);
    fwx_connection_close(c);
    IFWXSession_Release(s);
    env_close();
    dlclose(h);
}
END_TEST

/* Whether a data-filter factory waits for a permission's connections decides its kernel mode
   (T9). The core counts a session's factories where they are added and removed, and asks only
   those (and the address-based ones lent by the client's other sessions): each case below is a
   permission made after a change of that count. The factory itself is never asked for a filter:
   no connection arrives. */
static fwx_result idle_cf_qi(IClassFactory *T, const fwx_guid *r, void **p) { (void)T, (void)r; *p = NULL; return FWX_E_NOINTERFACE; }
static uint32_t idle_cf_ref(IClassFactory *T) { (void)T; return 1; }
static fwx_result idle_cf_create(IClassFactory *T, IUnknown *o, const fwx_guid *r, void **p)
{
    (void)T, (void)o, (void)r;
    *p = NULL;
    ck_abort_msg("no connection arrives: the factory is never asked");
    return FWX_E_FAIL;
}
static fwx_result idle_cf_lock(IClassFactory *T, int32_t l) { (void)T, (void)l; return FWX_S_OK; }
static const IClassFactoryVtbl idle_cf_vtbl = {idle_cf_qi, idle_cf_ref, idle_cf_ref, idle_cf_create, idle_cf_lock};
static IClassFactory idle_cf = {&idle_cf_vtbl};

static fwx_result set_factory(IFWXSession *s, uint32_t event, const char *addr, uint32_t flags, IFWXFirewallAction **act)
{
    struct sockaddr_storage a = tu_addr(addr);
    return IFWXSession_SetDataFilterFactory(s, event, TU_SA(a), tu_len(&a), &idle_cf, fwx_dfpc_Middle, NULL, flags, act);
}

/* A new permission of s's to target: the kernel_mode the backend was given. */
static int32_t permission_kernel_mode(IFWXSession *s, IFWXConnection *c, const char *target)
{
    TU_EXPECT_HR(afc(s, target, FWX_FLAG_ALLOW_ADDRESSES_ALL, c, NULL), FWX_S_OK); /* any peer of the test's */
    size_t n = fault_backend_n_grants();
    ck_assert_uint_gt(n, 0);
    const fault_grant *g = fault_backend_grant(n - 1);
    ck_assert(same_endpoint(&g->target, target));
    return g->kernel_mode;
}

START_TEST(factory_pending_counted)
{
    env_open();
    IFWXSession *s = open_session("10.0.0.8"), *t = NULL, *z = open_session("10.0.0.9");
    /* Another session of the same client: a Winsock-proxy one (a second NAT one is the first). */
    struct sockaddr_storage tc = tu_addr("10.0.0.8");
    fwx_session_params sp = {
        .struct_size = sizeof sp, .source = fwxSourceWSP, .client = TU_SA(tc), .client_len = tu_len(&tc)};
    TU_EXPECT_HR(fwx_session_open(fw, &sp, &t), FWX_S_OK);
    IFWXConnection *cs = open_connect(s, "198.51.100.7:21"), *ct = open_connect(t, "198.51.100.7:21"),
                   *cz = open_connect(z, "198.51.100.7:21");
    ck_assert_int_eq(permission_kernel_mode(s, cs, "198.51.100.7:50000"), 1); /* none: kernel mode */

    IFWXFirewallAction *own = NULL, *lent = NULL;
    TU_EXPECT_HR(set_factory(s, fwx_Connect_Tcp, "198.51.100.7:0", 0, &own), FWX_S_OK);
    TU_EXPECT_HR(set_factory(s, fwx_Udp_Destination, "198.51.100.9:0", 0, NULL), FWX_S_OK);
    ck_assert_uint_eq(stats().factories, 2);
    ck_assert_int_eq(permission_kernel_mode(s, cs, "198.51.100.7:50001"), 0); /* pending */
    ck_assert_int_eq(permission_kernel_mode(s, cs, "198.51.100.9:50002"), 1); /* UDP's factory, TCP permission */
    ck_assert_int_eq(permission_kernel_mode(t, ct, "198.51.100.7:50003"), 1); /* not lent: s's own */
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(own), FWX_S_OK);
    IFWXFirewallAction_Release(own);
    ck_assert_uint_eq(stats().factories, 1);
    ck_assert_int_eq(permission_kernel_mode(s, cs, "198.51.100.7:50004"), 1); /* withdrawn: no longer */

    TU_EXPECT_HR(set_factory(s, fwx_Connect_Tcp, "198.51.100.8:0", FWX_FLAG_ADDRESS_BASED, &lent), FWX_S_OK);
    ck_assert_int_eq(permission_kernel_mode(t, ct, "198.51.100.8:50005"), 0); /* lent to the same client */
    ck_assert_int_eq(permission_kernel_mode(z, cz, "198.51.100.8:50006"), 1); /* another client */
    fwx_session_close(s); /* its factories go with it, the lent one too */
    ck_assert_uint_eq(stats().factories, 0);
    ck_assert_int_eq(permission_kernel_mode(t, ct, "198.51.100.8:50007"), 1);
    IFWXFirewallAction_Release(lent);

    fwx_connection_close(ct);
    fwx_connection_close(cz);
    IFWXSession *all[3] = {s, t, z};
    for (int i = 0; i < 3; i++) {
        fwx_session_close(all[i]);
        IFWXSession_Release(all[i]);
    }
    env_close();
}
END_TEST

START_TEST(relay_kernel_when_filter_declines)
{
    void *h;
    env_open();
    tp_control *ctl = load_good(fwx_Connect_Tcp | fwxSourceNAT, &h);
    ctl->attach_decline = 1;
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(fault_backend_last(FAULT_OP_RELAY)->kernel_mode, 1);
    close_env_session(s, c);
    dlclose(h);
}
END_TEST

START_TEST(afc_kernel_mode_with_secondary_hook)
{
    /* A filter that hooks secondary connects sees the permitted connection: not kernel mode. */
    void *h;
    env_open();
    load_good(fwx_Connect_Tcp | fwxSourceNAT | fwxAssociatedProtocolsAllConnections, &h);
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:21");
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    ck_assert_int_eq(fault_backend_grant(0)->kernel_mode, 0);
    close_env_session(s, c);
    dlclose(h);
}
END_TEST

START_TEST(no_socket_method)
{
    env_open();
    IFWXNetworkSocket *sock = (IFWXNetworkSocket *)(uintptr_t)1;
    TU_EXPECT_HR(IFWXFirewall_CreateNetworkSocket(fwx_firewall_iface(fw), FWX_PROTOCOL_TCP, &sock),
                 FWX_E_NOT_SUPPORTED);
    ck_assert_ptr_null(sock);
    env_close();
}
END_TEST

START_TEST(close_withdraws_then_closes)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    fwx_firewall_close(fw, NULL, NULL);
    /* Grants were removed one by one before the instance closed. */
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_GRANT_REMOVE), 1);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_CLOSE), 1);
    size_t n = fault_backend_n_calls();
    ck_assert_int_eq(fault_backend_call(n - 1)->op, FAULT_OP_CLOSE);
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, FAULT_BACKEND_NAME), FWX_E_TERMINATING);
    fwx_connection_close(c);
    IFWXSession_Release(s);
    fw = NULL;
    tu_loop_close_clean(&loop);
}
END_TEST


START_TEST(set_client_address_reinstalls)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    struct sockaddr_storage zero = tu_addr("0.0.0.0:0"), proxy = tu_addr("0.0.0.0:0");
    const struct sockaddr *cap[1] = {TU_SA(zero)};
    IFWXConnection *b[1] = {NULL};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&zero), TU_SAM(proxy), tu_len(&proxy), FWX_PROTOCOL_TCP, 1,
                                           0, 5, NULL, NULL, NULL, NULL, b),
                 FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    uint64_t id = fault_backend_grant(0)->id;
    ck_assert(fwx__sa_is_unspecified((const struct sockaddr *)&fault_backend_grant(0)->target));
    struct sockaddr_storage real = tu_addr("10.0.0.8:2000");
    TU_EXPECT_HR(IFWXConnection_SetClientAddress(b[0], TU_SA(real), tu_len(&real)), FWX_S_OK);
    /* The backend learns the new target: still one grant, now aimed at the client. */
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    ck_assert_uint_eq(fault_backend_grant(0)->id, id);
    ck_assert(same_endpoint(&fault_backend_grant(0)->target, "10.0.0.8:2000"));
    TU_EXPECT_HR(IFWXConnection_SetClientAddress(b[0], TU_SA(real), tu_len(&real)), FWX_E_INVALIDARG);
    fwx_connection_close(b[0]);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    close_env_session(s, c);
}
END_TEST

/* The client's own bind (fwx_Bind_Tcp, the host reports it) at the gateway's 192.0.2.1:45000. */
static IFWXConnection *open_client_bind(IFWXSession *s)
{
    struct sockaddr_storage bound = tu_addr("192.0.2.1:45000");
    fwx_connection_params cp = {.struct_size = sizeof cp, .event = fwx_Bind_Tcp, .protocol = FWX_PROTOCOL_TCP,
                                .external_peer = TU_SA(bound), .external_peer_len = tu_len(&bound)};
    IFWXConnection *bc = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &bc), FWX_S_OK);
    return bc;
}

/* RetroactiveAllowBind for that bind. */
static fwx_result approve_client_bind(IFWXSession *s)
{
    struct sockaddr_storage bound = tu_addr("192.0.2.1:45000");
    return IFWXSession_RetroactiveAllowBind(s, FWX_PROTOCOL_TCP, TU_SA(bound), tu_len(&bound), NULL, 0, NULL);
}

START_TEST(client_bind_installed_when_approved)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    IFWXConnection *bc = open_client_bind(s);
    ck_assert_uint_eq(fault_backend_n_grants(), 0); /* discarding until approved */
    TU_EXPECT_HR(approve_client_bind(s), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    const fault_grant *g = fault_backend_grant(0);
    ck_assert_int_eq(g->kind, FWX_GRANT_CLIENT_BIND);
    ck_assert(same_endpoint(&g->gateway, "192.0.2.1:45000"));
    ck_assert(same_endpoint(&g->target, "10.0.0.8:0"));
    TU_EXPECT_HR(approve_client_bind(s), FWX_S_FALSE);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    fwx_connection_close(bc);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    close_env_session(s, c);
}
END_TEST

START_TEST(client_bind_backend_refuses)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    IFWXConnection *bc = open_client_bind(s);
    fault_backend_reset();
    fault_backend_fail_at(1, FWX_E_BACKEND);
    TU_EXPECT_HR(approve_client_bind(s), FWX_E_BACKEND);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    /* Still unapproved: a second try goes to the backend again and succeeds. */
    TU_EXPECT_HR(approve_client_bind(s), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    fwx_connection_close(bc);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    close_env_session(s, c);
}
END_TEST

START_TEST(redirect_grants)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    struct sockaddr_storage t[2] = {tu_addr("198.51.100.7:50000"), tu_addr("198.51.100.7:50001")};
    const struct sockaddr *tp[2] = {TU_SA(t[0]), TU_SA(t[1])};
    struct sockaddr_storage internal;
    uint32_t ilen = sizeof internal;
    IFWXFirewallAction *acts[2] = {NULL, NULL};
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&t[0]), 2, TU_SAM(internal), &ilen, NULL, 0,
                                                 FWX_PROTOCOL_TCP, 0, NULL, NULL, NULL, acts),
                 FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 2);
    ck_assert_uint_eq(fault_backend_count_kind(FWX_GRANT_REDIRECT), 2);
    uint16_t base = fwx__sa_port((const struct sockaddr *)&fault_backend_grant(0)->gateway);
    ck_assert_uint_eq(base % 2, 0);
    ck_assert_uint_ge(base, PORT_MIN);
    ck_assert_uint_le(base + 1, PORT_MAX);
    ck_assert_uint_eq(fwx__sa_port((const struct sockaddr *)&fault_backend_grant(1)->gateway), base + 1);
    ck_assert_uint_eq(fwx__sa_port(TU_SA(internal)), base);
    ck_assert(same_endpoint(&fault_backend_grant(0)->target, "198.51.100.7:50000"));
    ck_assert(same_endpoint(&fault_backend_grant(1)->target, "198.51.100.7:50001"));
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(acts[1]), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 1);
    IFWXFirewallAction_Release(acts[0]);
    IFWXFirewallAction_Release(acts[1]);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    IFWXConnection_Release(c);
    IFWXSession_Release(s);
    env_close();
}
END_TEST

START_TEST(redirect_backend_fails)
{
    IFWXConnection *c = NULL;
    IFWXSession *s = open_env_session(&c);
    struct sockaddr_storage t[2] = {tu_addr("198.51.100.7:50000"), tu_addr("198.51.100.7:50001")};
    const struct sockaddr *tp[2] = {TU_SA(t[0]), TU_SA(t[1])};
    struct sockaddr_storage internal;
    uint32_t ilen = sizeof internal;
    IFWXFirewallAction *acts[2] = {NULL, NULL};
    fault_backend_fail_at(2, FWX_E_BACKEND);
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&t[0]), 2, TU_SAM(internal), &ilen, NULL, 0,
                                                 FWX_PROTOCOL_TCP, 0, NULL, NULL, NULL, acts),
                 FWX_E_BACKEND);
    ck_assert_ptr_null(acts[0]);
    ck_assert_ptr_null(acts[1]);
    ck_assert_uint_eq(fault_backend_n_grants(), 0);
    ck_assert_uint_eq(stats().permissions, 0);
    close_env_session(s, c);
}
END_TEST

START_TEST(relay_failure_kills)
{
    env_open();
    IFWXSession *s = open_session("10.0.0.8");
    uint32_t before = stats().connections;
    fault_backend_fail_relay(FWX_E_BACKEND);
    struct sockaddr_storage p = tu_addr("198.51.100.7:80");
    fwx_connection_params cp = {.struct_size = sizeof cp, .event = fwx_Connect_Tcp, .protocol = FWX_PROTOCOL_TCP,
                                .external_peer = TU_SA(p), .external_peer_len = tu_len(&p)};
    IFWXConnection *c = (IFWXConnection *)(uintptr_t)1;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &c), FWX_E_BACKEND);
    ck_assert_ptr_null(c);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_RELAY), 1);
    ck_assert_uint_eq(fault_backend_count(FAULT_OP_KILL), 1);
    ck_assert_uint_eq(stats().connections, before);
    ck_assert_int_eq(tu_log_count("relay of connection", "killing it"), 1);
    TU_EXPECT_REF(s, 2);
    fault_backend_fail_relay(FWX_S_OK);
    c = open_connect(s, "198.51.100.7:80");
    close_env_session(s, c);
}
END_TEST

/* ---- what the core tells a backend (fwx_grant::sources, accessors; 1.1) ---------------------- */

/* A backend that only records what grant_add saw: the allowed sources, and whether
   fwx_backend_grant_in_kernel takes the grant handed over (and refuses a copy of it). */
typedef struct seen_grant {
    fwx_grant_kind kind;
    uint32_t n_sources, source_flags;
    struct sockaddr_storage src[4];
    uint32_t src_flags[4];
    fwx_result in_kernel, copy_in_kernel;
    const fwx_grant *ptr;
} seen_grant;
static seen_grant seen[16];
static size_t n_seen;
static fwx_firewall *seen_fw;

static fwx_result seen_open(const fwx_backend *self, fwx_firewall *f, void **state)
{
    (void)self;
    seen_fw = f;
    n_seen = 0;
    *state = &n_seen;
    return FWX_S_OK;
}

static fwx_result seen_add(void *state, const fwx_grant *g)
{
    (void)state;
    ck_assert_uint_lt(n_seen, 16);
    ck_assert_uint_ge(g->struct_size, offsetof(fwx_grant, source_flags) + sizeof g->source_flags);
    seen_grant *e = &seen[n_seen++];
    memset(e, 0, sizeof *e);
    e->kind = g->kind;
    e->n_sources = g->n_sources;
    e->source_flags = g->source_flags;
    ck_assert(g->n_sources == 0 || g->sources != NULL);
    for (uint32_t i = 0; i < g->n_sources && i < 4; i++) {
        e->src[i] = g->sources[i].address;
        e->src_flags[i] = g->sources[i].flags;
    }
    fwx_grant copy = *g;
    e->copy_in_kernel = fwx_backend_grant_in_kernel(seen_fw, &copy);
    e->in_kernel = fwx_backend_grant_in_kernel(seen_fw, g);
    e->ptr = g;
    return FWX_S_OK;
}

static const fwx_backend seen_backend = {.version = 3, .name = "seen", .open = seen_open, .close = noop_close,
                                         .grant_add = seen_add, .grant_remove = noop_remove};

static void kernel_grants_cb(void *arg, const fwx_object_info *i)
{
    if (i->kind == FWX_OBJECT_GRANT && i->kernel_mode)
        (*(int *)arg)++;
}

START_TEST(grant_sources)
{
    env_open_nobackend();
    fwx_result hr = fwx_backend_register(&seen_backend);
    ck_assert_msg(hr == FWX_S_OK || hr == FWX_S_FALSE, "register: %s", fwx_err_name(hr));
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, "seen"), FWX_S_OK);
    ck_assert_ptr_eq(fwx_firewall_backend(fw), &seen_backend);
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:21");
    IFWXConnection *c2 = open_connect(s, "198.51.100.9:21");

    /* A permission: the session's client (port 0). */
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, NULL), FWX_S_OK);
    ck_assert_uint_eq(n_seen, 1);
    ck_assert_int_eq(seen[0].kind, FWX_GRANT_PERMISSION);
    ck_assert_uint_eq(seen[0].n_sources, 1);
    ck_assert(same_endpoint(&seen[0].src[0], "10.0.0.8:0"));
    ck_assert_uint_eq(seen[0].src_flags[0], 0);
    ck_assert_uint_eq(seen[0].source_flags, 0);
    /* The mark takes the grant handed over, never a copy, and only inside grant_add. */
    TU_EXPECT_HR(seen[0].in_kernel, FWX_S_OK);
    TU_EXPECT_HR(seen[0].copy_in_kernel, FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_backend_grant_in_kernel(fw, seen[0].ptr), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_backend_grant_in_kernel(fw, NULL), FWX_E_POINTER);

    /* A bound port: the external peers of the primary connections, not the client. */
    IFWXConnection *bc[1] = {NULL};
    TU_EXPECT_HR(bind_n(s, 1, bc), FWX_S_OK);
    ck_assert_uint_eq(n_seen, 2);
    ck_assert_int_eq(seen[1].kind, FWX_GRANT_BINDING);
    ck_assert_uint_eq(seen[1].n_sources, 2);
    ck_assert(same_endpoint(&seen[1].src[0], "198.51.100.7:0"));
    ck_assert(same_endpoint(&seen[1].src[1], "198.51.100.9:0"));
    ck_assert_uint_eq(seen[1].source_flags, 0);

    /* A redirect port: the session's client. */
    struct sockaddr_storage t = tu_addr("198.51.100.7:50002"), internal;
    const struct sockaddr *tp[1] = {TU_SA(t)};
    uint32_t ilen = sizeof internal;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&t), 1, TU_SAM(internal), &ilen, NULL, 0,
                                                 FWX_PROTOCOL_TCP, 0, NULL, NULL, NULL, NULL),
                 FWX_S_OK);
    ck_assert_uint_eq(n_seen, 3);
    ck_assert_int_eq(seen[2].kind, FWX_GRANT_REDIRECT);
    ck_assert_uint_eq(seen[2].n_sources, 1);
    ck_assert(same_endpoint(&seen[2].src[0], "10.0.0.8:0"));

    /* fwx_firewall_list reports the three as the kernel's. */
    int kernel = 0;
    TU_EXPECT_HR(fwx_firewall_list(fw, FWX_OBJECT_GRANT, kernel_grants_cb, &kernel), FWX_S_OK);
    ck_assert_int_eq(kernel, 3);

    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    IFWXConnection_Release(bc[0]);
    IFWXConnection_Release(c);
    IFWXConnection_Release(c2);
    IFWXSession_Release(s);
    env_close();
    TU_EXPECT_HR(fwx_backend_unregister(&seen_backend), FWX_S_OK);
}
END_TEST

/* A session of a published server: the server is one of the session's own hosts, translated
   when the rule is a full proxy; a bound port with an IP filter says the core decides each
   arrival. */
START_TEST(grant_sources_published)
{
    env_open_nobackend();
    fwx_result hr = fwx_backend_register(&seen_backend);
    ck_assert_msg(hr == FWX_S_OK || hr == FWX_S_FALSE, "register: %s", fwx_err_name(hr));
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, "seen"), FWX_S_OK);
    struct sockaddr_storage rc = tu_addr("198.51.100.20"), remote = tu_addr("198.51.100.20:40000"),
                            pub = tu_addr("203.0.113.1:21"), srv = tu_addr("10.0.0.5:21");
    fwx_session_params sp = {.struct_size = sizeof sp, .source = fwxSourceNAT, .client = TU_SA(rc),
                             .client_len = tu_len(&rc)};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {.struct_size = sizeof cp, .event = fwx_AcceptedConnection, .protocol = FWX_PROTOCOL_TCP,
                                .external_peer = TU_SA(remote), .external_peer_len = tu_len(&remote),
                                .external_local = TU_SA(pub), .external_local_len = tu_len(&pub),
                                .flags = FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION,
                                .published_server_len = tu_len(&srv), .published_server = TU_SA(srv)};
    IFWXConnection *ctl = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);

    /* Active FTP to the published server: a redirect port to the remote client, which the
       server uses, seen from the gateway's address. */
    struct sockaddr_storage t = tu_addr("198.51.100.20:50000"), internal;
    const struct sockaddr *tp[1] = {TU_SA(t)};
    uint32_t ilen = sizeof internal;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&t), 1, TU_SAM(internal), &ilen, NULL, 0,
                                                 FWX_PROTOCOL_TCP, 0, NULL, NULL, NULL, NULL),
                 FWX_S_OK);
    ck_assert_uint_eq(n_seen, 1);
    ck_assert_int_eq(seen[0].kind, FWX_GRANT_REDIRECT);
    ck_assert_uint_eq(seen[0].n_sources, 2);
    ck_assert(same_endpoint(&seen[0].src[0], "198.51.100.20:0"));
    ck_assert_uint_eq(seen[0].src_flags[0], 0);
    ck_assert(same_endpoint(&seen[0].src[1], "10.0.0.5:0"));
    ck_assert_uint_eq(seen[0].src_flags[1], FWX_GRANT_SOURCE_TRANSLATE);
    ck_assert_uint_eq(seen[0].source_flags, 0);

    /* Passive: a bound port for the server, with an IP filter: the peers, and FILTERED. */
    IFWXIpFilter *ipf = NULL;
    TU_EXPECT_HR(IFWXFirewall_CreateIpFilter(fwx_firewall_iface(fw), &ipf), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(ipf, TU_SA(rc), tu_len(&rc), TU_SA(rc), tu_len(&rc)), FWX_S_OK);
    struct sockaddr_storage data = tu_addr("10.0.0.5:50001"), px = tu_addr("0.0.0.0:0");
    const struct sockaddr *d[1] = {TU_SA(data)};
    IFWXConnection *b[1] = {NULL};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, d, tu_len(&data), TU_SAM(px), sizeof px, FWX_PROTOCOL_TCP, 1, 0, 1,
                                           &FWX_GUID_NULL, NULL, NULL, ipf, b),
                 FWX_S_OK);
    ck_assert_uint_eq(n_seen, 2);
    ck_assert_int_eq(seen[1].kind, FWX_GRANT_BINDING);
    ck_assert_uint_eq(seen[1].n_sources, 1);
    ck_assert(same_endpoint(&seen[1].src[0], "198.51.100.20:0"));
    ck_assert_uint_eq(seen[1].source_flags, FWX_GRANT_SOURCES_FILTERED);

    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    IFWXIpFilter_Release(ipf);
    IFWXConnection_Release(b[0]);
    IFWXConnection_Release(ctl);
    IFWXSession_Release(s);
    env_close();
    TU_EXPECT_HR(fwx_backend_unregister(&seen_backend), FWX_S_OK);
}
END_TEST

/* A backend that, inside each grant_add, tries to mark the grant it was handed before (still
   installed, but not the one being added), and marks its own on every other call. */
static const fwx_grant *marker_prev;
static fwx_result marker_prev_hr[4], marker_own_hr[4];
static size_t n_marker;

static fwx_result marker_add(void *state, const fwx_grant *g)
{
    (void)state;
    ck_assert_uint_lt(n_marker, 4);
    marker_prev_hr[n_marker] = marker_prev != NULL ? fwx_backend_grant_in_kernel(seen_fw, marker_prev) : FWX_S_FALSE;
    marker_own_hr[n_marker] = n_marker % 2 == 0 ? fwx_backend_grant_in_kernel(seen_fw, g) : FWX_S_FALSE;
    marker_prev = g;
    n_marker++;
    return FWX_S_OK;
}

static const fwx_backend marker_backend = {.version = 3, .name = "marker", .open = seen_open, .close = noop_close,
                                           .grant_add = marker_add, .grant_remove = noop_remove};

/* fwx_backend_grant_in_kernel marks only the grant being handed over: another grant the backend
   holds is refused, and only the marked ones are reported as the kernel's. */
START_TEST(grant_in_kernel_own_only)
{
    env_open_nobackend();
    marker_prev = NULL;
    n_marker = 0;
    fwx_result hr = fwx_backend_register(&marker_backend);
    ck_assert_msg(hr == FWX_S_OK || hr == FWX_S_FALSE, "register: %s", fwx_err_name(hr));
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, "marker"), FWX_S_OK);
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_connect(s, "198.51.100.7:21");
    IFWXFirewallAction *a[3] = {NULL, NULL, NULL};
    int kernel = 0;

    /* The first marks its own. */
    TU_EXPECT_HR(afc(s, "198.51.100.7:50000", 0, c, &a[0]), FWX_S_OK);
    ck_assert_uint_eq(n_marker, 1);
    TU_EXPECT_HR(marker_own_hr[0], FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_list(fw, FWX_OBJECT_GRANT, kernel_grants_cb, &kernel), FWX_S_OK);
    ck_assert_int_eq(kernel, 1);

    /* The second marks only the first, which it was not handed: refused, nothing changes. */
    TU_EXPECT_HR(afc(s, "198.51.100.7:50001", 0, c, &a[1]), FWX_S_OK);
    ck_assert_uint_eq(n_marker, 2);
    TU_EXPECT_HR(marker_prev_hr[1], FWX_E_INVALIDARG);
    kernel = 0;
    TU_EXPECT_HR(fwx_firewall_list(fw, FWX_OBJECT_GRANT, kernel_grants_cb, &kernel), FWX_S_OK);
    ck_assert_int_eq(kernel, 1);

    /* The third tries the second (refused) and marks its own: two of three are the kernel's. */
    TU_EXPECT_HR(afc(s, "198.51.100.7:50002", 0, c, &a[2]), FWX_S_OK);
    ck_assert_uint_eq(n_marker, 3);
    TU_EXPECT_HR(marker_prev_hr[2], FWX_E_INVALIDARG);
    TU_EXPECT_HR(marker_own_hr[2], FWX_S_OK);
    kernel = 0;
    TU_EXPECT_HR(fwx_firewall_list(fw, FWX_OBJECT_GRANT, kernel_grants_cb, &kernel), FWX_S_OK);
    ck_assert_int_eq(kernel, 2);

    /* Withdrawn, a grant can no longer be marked even through a pointer of its own shape. */
    fwx_grant gone = *marker_prev;
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(a[2]), FWX_S_OK);
    TU_EXPECT_HR(fwx_backend_grant_in_kernel(fw, &gone), FWX_E_INVALIDARG);
    marker_prev = NULL;

    for (int i = 0; i < 3; i++)
        IFWXFirewallAction_Release(a[i]);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    IFWXConnection_Release(c);
    IFWXSession_Release(s);
    env_close();
    TU_EXPECT_HR(fwx_backend_unregister(&marker_backend), FWX_S_OK);
}
END_TEST

START_TEST(core_facts)
{
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    struct sockaddr_storage own = tu_addr("203.0.113.1:0");
    o.name = "facts";
    o.local_addresses = &own;
    o.n_local_addresses = 1;
    o.port_min = PORT_MIN;
    o.port_max = PORT_MAX;
    o.log = tu_log_capture;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    TU_EXPECT_HR(fwx_firewall_new(&loop, &o, &fw), FWX_S_OK);

    ck_assert_str_eq(fwx_firewall_name(fw), "facts");
    ck_assert_str_eq(fwx_firewall_name(NULL), "");
    ck_assert_ptr_null(fwx_firewall_backend(fw));
    ck_assert_ptr_null(fwx_firewall_policy(fw));

    fwx_firewall_options got;
    memset(&got, 0, sizeof got);
    got.struct_size = sizeof got;
    TU_EXPECT_HR(fwx_firewall_get_options(fw, &got), FWX_S_OK);
    ck_assert_uint_eq(got.struct_size, sizeof got);
    ck_assert_uint_eq(got.port_min, PORT_MIN);
    ck_assert_uint_eq(got.n_local_addresses, 1);
    got.struct_size = 4;
    TU_EXPECT_HR(fwx_firewall_get_options(fw, &got), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_get_options(NULL, &got), FWX_E_POINTER);

    struct sockaddr_storage a;
    TU_EXPECT_HR(fwx_firewall_local_address(fw, 0, &a), FWX_S_OK);
    ck_assert(same_endpoint(&a, "203.0.113.1:0"));
    TU_EXPECT_HR(fwx_firewall_local_address(fw, 1, &a), FWX_S_FALSE);
    ck_assert_int_eq(a.ss_family, 0);
    struct sockaddr_storage peer = tu_addr("198.51.100.7:21"), lo = tu_addr("127.0.0.1:0");
    ck_assert_int_ne(fwx_firewall_is_local_address(fw, TU_SA(own), tu_len(&own)), 0);
    ck_assert_int_ne(fwx_firewall_is_local_address(fw, TU_SA(lo), tu_len(&lo)), 0);
    ck_assert_int_eq(fwx_firewall_is_local_address(fw, TU_SA(peer), tu_len(&peer)), 0);
    ck_assert_int_eq(fwx_firewall_is_local_address(fw, TU_SA(own), 3), 0);

    /* Hooks: none without plugins; a plugin's own, all of them or nothing. */
    ck_assert_int_eq(fwx_firewall_hooks(fw, fwx_Connect_Tcp), 0);
    void *h = NULL;
    (void)load_good(fwx_Connect_Tcp, &h);
    ck_assert_int_ne(fwx_firewall_hooks(fw, fwx_Connect_Tcp), 0);
    ck_assert_int_eq(fwx_firewall_hooks(fw, fwx_Connect_Tcp | fwx_Udp_Destination), 0);

    /* A connection as the backend sees it. */
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = NULL;
    fwx_connection_params cp = {.struct_size = sizeof cp, .event = fwx_Connect_Tcp, .protocol = FWX_PROTOCOL_TCP,
                                .external_peer = TU_SA(peer), .external_peer_len = tu_len(&peer)};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &c), FWX_S_OK);
    fwx_object_info ci = {.struct_size = sizeof ci};
    TU_EXPECT_HR(fwx_connection_info(c, &ci), FWX_S_OK);
    ck_assert_int_eq(ci.kind, FWX_OBJECT_CONNECTION);
    ck_assert_uint_ne(ci.id, 0);
    ck_assert_int_eq(ci.protocol, FWX_PROTOCOL_TCP);
    ck_assert(same_endpoint(&ci.peer, "198.51.100.7:21"));
    ck_assert(same_endpoint(&ci.client, "10.0.0.8:0"));
    ck_assert_str_eq(ci.name, "primary");
    TU_EXPECT_HR(fwx_connection_info(NULL, &ci), FWX_E_POINTER);
    fwx_object_info older = {.struct_size = offsetof(fwx_object_info, guid)};
    TU_EXPECT_HR(fwx_connection_info(c, &older), FWX_E_INVALIDARG);
    ck_assert_uint_eq(fwx_connection_data_filters(c), 0);
    ck_assert_ptr_null(fwx_connection_data_filter_owner(c, 0));
    TU_EXPECT_HR(fwx_connection_set_upstream_local(c, TU_SA(own), 3), FWX_E_INVALIDARG);
    struct sockaddr_storage any = tu_addr("0.0.0.0:0");
    TU_EXPECT_HR(fwx_connection_set_upstream_local(c, TU_SA(any), tu_len(&any)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_connection_set_upstream_local(c, TU_SA(own), tu_len(&own)), FWX_S_OK);

    /* A backend's failure text becomes the firewall's last error, logged at error. */
    fwx_backend_fail(fw, "backend \"x\": %s", "no kernel");
    ck_assert_str_eq(fwx_firewall_last_error(fw), "backend \"x\": no kernel");
    ck_assert_int_eq(tu_log_count("backend \"x\": no kernel", NULL), 1);

    close_env_session(s, c);
    dlclose(h);
}
END_TEST

/* The nft backend's name is reserved whether or not libfwx was built with it (meson feature
   'nft'); without it, asking for it fails saying why. */
START_TEST(nft_name)
{
    fwx_backend imp = {.version = 1, .name = "nft", .open = noop_open, .close = noop_close,
                       .grant_add = noop_add, .grant_remove = noop_remove};
    TU_EXPECT_HR(fwx_backend_register(&imp), FWX_E_ALREADY_EXISTS_WIN32);
    env_open_nobackend();
#if FWX_HAVE_NFT
    ck_assert_ptr_nonnull(fwx_backend_find("nft"));
#else
    ck_assert_ptr_null(fwx_backend_find("nft"));
    TU_EXPECT_HR(fwx_firewall_set_backend(fw, "nft"), FWX_E_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "built without libnftables"));
    fwx_local_redirect lr = {.struct_size = sizeof lr, .protocol = FWX_PROTOCOL_TCP, .port_min = 80, .port_max = 80,
                             .uid = -1};
    TU_EXPECT_HR(fwx_firewall_redirect_local(fw, &lr), FWX_E_NOT_SUPPORTED);
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "built without it"));
#endif
    env_close();
}
END_TEST

static Suite *backend_suite(void)
{
    const tu_case cases[] = {
        {"registry", registry},
        {"set_backend_unknown", set_backend_unknown},
        {"set_backend_open_fails", set_backend_open_fails},
        {"afc_grant_and_cancel", afc_grant_and_cancel},
        {"afc_backend_refuses", afc_backend_refuses},
        {"afc_timeout_grant_carries_expiry", afc_timeout_grant_carries_expiry},
        {"bind_timeout_grant_carries_expiry", bind_timeout_grant_carries_expiry},
        {"bind_for_client", bind_for_client},
        {"bind_for_client_backend_fails", bind_for_client_backend_fails},
        {"bind_for_client_port_taken", bind_for_client_port_taken},
        {"session_close_withdraws_all", session_close_withdraws_all},
        {"admit_uses_up_grant", admit_uses_up_grant},
        {"set_backend_installs_existing", set_backend_installs_existing},
        {"set_backend_install_fails", set_backend_install_fails},
        {"kernel_mode_flag", kernel_mode_flag},
        {"relay_kernel_without_hooks", relay_kernel_without_hooks},
        {"relay_user_with_hook", relay_user_with_hook},
        {"log_says_how_bytes_travel", log_says_how_bytes_travel},
        {"factory_pending_counted", factory_pending_counted},
        {"relay_kernel_when_hook_is_other_source", relay_kernel_when_hook_is_other_source},
        {"relay_kernel_when_filter_declines", relay_kernel_when_filter_declines},
        {"afc_kernel_mode_with_secondary_hook", afc_kernel_mode_with_secondary_hook},
        {"no_socket_method", no_socket_method},
        {"set_client_address_reinstalls", set_client_address_reinstalls},
        {"client_bind_installed_when_approved", client_bind_installed_when_approved},
        {"client_bind_backend_refuses", client_bind_backend_refuses},
        {"redirect_grants", redirect_grants},
        {"redirect_backend_fails", redirect_backend_fails},
        {"relay_failure_kills", relay_failure_kills},
        {"close_withdraws_then_closes", close_withdraws_then_closes},
        {"grant_sources", grant_sources},
        {"grant_sources_published", grant_sources_published},
        {"grant_in_kernel_own_only", grant_in_kernel_own_only},
        {"core_facts", core_facts},
        {"nft_name", nft_name},
    };
    return TU_SUITE("backend", cases, 0);
}

int main(void) { return tu_run_suite(backend_suite()); }
