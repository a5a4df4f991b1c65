/*
 * fwx tests - sessions, connections and event dispatch: session kinds and flags, Deny and its
 * codes (T13), handler failures (T16), calls outside their event (T12), emulation (T14),
 * ConnectionTerminating without registration (T15), policy before filters (T21) and protocol
 * bindings, reference counts after each hand-off. The T-rules are in doc/sdk-rules.md.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "plugins/test_plugin.h"
#include "util/util.h" /* fwx__sa, the core's compact address */

#include <arpa/inet.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct fx {
    uv_loop_t loop;
    fwx_firewall *fw;
    IFWXSession *s;
    void *h;
    tp_control *ctl;
} fx;

/* Opens the firewall and a NAT session for 10.0.0.8; with `plugin`, loads it after `setup`
   scripted its control block (FilterInit reads the hooks at load). */
static void fx_open(fx *f, const char *plugin, void (*setup)(tp_control *))
{
    memset(f, 0, sizeof *f);
    tu_fw_open(&f->loop, NULL, &f->fw);
    if (plugin != NULL) {
        f->ctl = tu_plugin_map(plugin, &f->h);
        if (setup != NULL)
            setup(f->ctl);
        tu_plugin_load(f->fw, plugin);
    }
    f->s = tu_session_open(f->fw, fwxSourceNAT, "10.0.0.8", NULL);
}

static void fx_close(fx *f)
{
    fwx_session_close(f->s);
    TU_EXPECT_REF(f->s, 1); /* only ours is left */
    IFWXSession_Release(f->s);
    fwx_firewall_stats st = tu_fw_stats(f->fw);
    ck_assert_uint_eq(st.connections, 0);
    ck_assert_uint_eq(st.sessions, 0);
    tu_fw_close(&f->loop, &f->fw);
    /* The plugin handle stays open: tests read the control block after the firewall closed,
       and Check forks each test, so it ends with the process. */
}

static fwx_result open_conn(fx *f, uint32_t event, int32_t proto, const char *peer, IFWXConnection **out)
{
    struct sockaddr_storage p = tu_addr(peer);
    fwx_connection_params cp = {sizeof cp, event, proto, TU_SA(p), tu_len(&p), NULL, 0, NULL, 0, 0, NULL};
    return fwx_connection_open(f->s, &cp, out);
}

static void hooks_connect(tp_control *c) { c->hooks = fwx_Connect_Tcp | fwxSourceNAT; }

/* ---- session kinds -------------------------------------------------------------------------- */

START_TEST(nat_sessions_per_address_explicit_per_channel)
{
    fx f;
    fx_open(&f, NULL, NULL);
    struct sockaddr_storage c = tu_addr("10.0.0.8:5555");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *again = NULL, *w1 = NULL, *w2 = NULL, *viafw = NULL, *priv = NULL;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &again), FWX_S_FALSE); /* the port does not matter */
    ck_assert_ptr_eq(again, f.s);
    TU_EXPECT_REF(f.s, 3); /* ours twice and the firewall's */
    IFWXSession_Release(again);
    TU_EXPECT_HR(IFWXFirewall_GetClientSession(fwx_firewall_iface(f.fw), TU_SA(c), tu_len(&c), &viafw), FWX_S_OK);
    ck_assert_ptr_eq(viafw, f.s);
    IFWXSession_Release(viafw);
    sp.source = fwxSourceWSP;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &w1), FWX_S_OK);
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &w2), FWX_S_OK);
    ck_assert_ptr_ne(w1, w2);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(f.s, &flags), FWX_S_OK);
    ck_assert_uint_eq(flags, FWX_SESSION_NAT);
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(w1, &flags), FWX_S_OK);
    ck_assert_uint_eq(flags, 0);
    TU_EXPECT_HR(IFWXFirewall_CreatePrivateSession(fwx_firewall_iface(f.fw), TU_SA(c), tu_len(&c), NULL, 0, NULL, &priv),
                 FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(priv, &flags), FWX_S_OK);
    ck_assert(flags & FWX_SESSION_PRIVATE);
    fwx_firewall_stats st = {.struct_size = sizeof st};
    fwx_firewall_get_stats(f.fw, &st);
    ck_assert_uint_eq(st.sessions, 4);

    struct sockaddr_storage out;
    uint32_t len = 4;
    TU_EXPECT_HR(IFWXSession_GetClientAddress(f.s, TU_SAM(out), &len), FWX_E_INVALIDARG);
    ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
    len = sizeof out;
    TU_EXPECT_HR(IFWXSession_GetClientAddress(f.s, TU_SAM(out), &len), FWX_S_OK);
    ck_assert_uint_eq(((struct sockaddr_in *)&out)->sin_port, 0);
    char ip[32];
    ck_assert_str_eq(inet_ntop(AF_INET, &((struct sockaddr_in *)&out)->sin_addr, ip, sizeof ip), "10.0.0.8");

    IFWXSession *list[3] = {w1, w2, priv};
    for (int i = 0; i < 3; i++) {
        fwx_session_close(list[i]);
        IFWXSession_Release(list[i]);
    }
    sp.source = 7;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &w1), FWX_E_INVALIDARG);
    fx_close(&f);
}
END_TEST

/* A private session ends when its last reference from outside the core goes; the references
   its connection objects hold do not keep it alive, those the caller took (AddRef, GetSession)
   do. */
START_TEST(private_session_ends_on_last_release)
{
    fx f;
    fx_open(&f, NULL, NULL);
    struct sockaddr_storage c = tu_addr("10.0.0.9");
    IFWXSession *priv = NULL, *again = NULL;
    TU_EXPECT_HR(IFWXFirewall_CreatePrivateSession(fwx_firewall_iface(f.fw), TU_SA(c), tu_len(&c), NULL, 0, NULL, &priv),
                 FWX_S_OK);
    struct sockaddr_storage p = tu_addr("198.51.100.7:21");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(p), tu_len(&p), NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *conn = NULL;
    TU_EXPECT_HR(fwx_connection_open(priv, &cp, &conn), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_GetSession(conn, &again), FWX_S_OK);
    ck_assert_ptr_eq(again, priv);
    ck_assert_uint_eq(IFWXSession_Release(priv), 2); /* `again` and the connection's */
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(again, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_SESSION_TERMINATED)); /* `again` is a reference from outside */
    fwx_firewall_stats st = {.struct_size = sizeof st};
    fwx_firewall_get_stats(f.fw, &st);
    ck_assert_uint_eq(st.sessions, 2);
    ck_assert_uint_eq(IFWXSession_Release(again), 1); /* the last one from outside: it ends */
    fwx_firewall_get_stats(f.fw, &st);
    ck_assert_uint_eq(st.sessions, 1);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(conn, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_TERMINATED);
    TU_EXPECT_HR(IFWXConnection_GetSession(conn, &again), FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(again, &flags), FWX_S_OK);
    ck_assert(flags & FWX_SESSION_TERMINATED);
    TU_EXPECT_HR(fwx_session_close(again), FWX_S_FALSE);
    ck_assert_uint_eq(IFWXSession_Release(again), 1);
    ck_assert_uint_eq(IFWXConnection_Release(conn), 0); /* and the session with it */
    /* Closed before its release, as before: the release then only frees it. */
    TU_EXPECT_HR(IFWXFirewall_CreatePrivateSession(fwx_firewall_iface(f.fw), TU_SA(c), tu_len(&c), NULL, 0, NULL, &priv),
                 FWX_S_OK);
    TU_EXPECT_HR(fwx_session_close(priv), FWX_S_OK);
    ck_assert_uint_eq(IFWXSession_Release(priv), 0);
    fx_close(&f);
}
END_TEST

START_TEST(ended_session_refuses_calls)
{
    fx f;
    fx_open(&f, NULL, NULL);
    TU_EXPECT_HR(fwx_session_close(f.s), FWX_S_OK);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_E_TERMINATING);
    struct sockaddr_storage t = tu_addr("198.51.100.7:50000");
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(f.s, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ALLOW_ADDRESSES_ALL, &FWX_GUID_NULL, NULL, NULL, NULL, NULL),
                 FWX_E_TERMINATING);
    fwx_guid g = {{1}};
    TU_EXPECT_HR(IFWXSession_AttachFilter(f.s, &g), FWX_E_TERMINATING);
    IFWXNetworkSocket *sock = NULL;
    TU_EXPECT_HR(IFWXSession_CreateNetworkSocket(f.s, FWX_PROTOCOL_TCP, &sock), FWX_E_TERMINATING);
    /* Still answers who it was. */
    struct sockaddr_storage out;
    uint32_t len = sizeof out, flags = 0;
    TU_EXPECT_HR(IFWXSession_GetClientAddress(f.s, TU_SAM(out), &len), FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(f.s, &flags), FWX_S_OK);
    ck_assert(flags & FWX_SESSION_TERMINATED);
    fx_close(&f);
}
END_TEST

/* ---- connections and refcounts ----------------------------------------------------------- */

START_TEST(connection_basics_and_refcounts)
{
    fx f;
    fx_open(&f, NULL, NULL);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_S_OK);
    TU_EXPECT_REF(c, 2); /* ours and the session's */
    IFWXSession *s = NULL;
    TU_EXPECT_HR(IFWXConnection_GetSession(c, &s), FWX_S_OK);
    ck_assert_ptr_eq(s, f.s);
    IFWXSession_Release(s);
    struct sockaddr_storage a;
    uint32_t len = sizeof a;
    TU_EXPECT_HR(IFWXConnection_GetExternalPeerName(c, TU_SAM(a), &len), FWX_S_OK);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&a)->sin_port), 21);
    len = sizeof a;
    TU_EXPECT_HR(IFWXConnection_GetExternalSocketName(c, TU_SAM(a), &len), FWX_E_NOT_FOUND);
    IFWXIpFilter *ipf = (IFWXIpFilter *)1;
    TU_EXPECT_HR(IFWXConnection_GetIpFilter(c, &ipf), FWX_S_OK);
    ck_assert_ptr_null(ipf); /* T19: unrestricted */
    TU_EXPECT_HR(IFWXConnection_SetBufferSize(c, 0), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXConnection_SetBufferSize(c, 65536), FWX_S_OK);
    IUnknown *unk = NULL;
    TU_EXPECT_HR(IFWXConnection_QueryInterface(c, &IID_IUnknown, (void **)&unk), FWX_S_OK);
    IUnknown_Release(unk);
    TU_EXPECT_HR(IFWXConnection_QueryInterface(c, &IID_IFWXSession, (void **)&unk), FWX_E_NOINTERFACE);
    ck_assert_ptr_null(unk);
    /* Bad parameters. */
    IFWXConnection *bad = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_UDP, "198.51.100.7:21", &bad), FWX_E_INVALIDARG);
    TU_EXPECT_HR(open_conn(&f, fwx_Listen, FWX_PROTOCOL_TCP, "198.51.100.7:21", &bad), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXConnection_Kill(c), FWX_S_OK);
    TU_EXPECT_REF(c, 1);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_TERMINATED);
    ck_assert_uint_eq(IFWXConnection_Release(c), 0);
    fx_close(&f);
}
END_TEST

/* ---- compact addresses (issue 12: fwx__sa instead of sockaddr_storage) ------------------- */

START_TEST(compact_address_copies)
{
    /* fwx__sa_set keeps a whole IPv6 address (flow label and scope too) and refuses what it
       cannot hold; fwx__sa_get fills a sockaddr_storage and zeroes the rest. */
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(2121), .sin6_flowinfo = htonl(0x12345),
                              .sin6_scope_id = 3};
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::7", &v6.sin6_addr), 1);
    fwx__sa a;
    ck_assert(fwx__sa_set(&a, (const struct sockaddr *)&v6));
    ck_assert(memcmp(&a.sin6, &v6, sizeof v6) == 0);
    struct sockaddr_storage out;
    memset(&out, 0xAA, sizeof out);
    fwx__sa_get(&out, &a);
    ck_assert(memcmp(&out, &v6, sizeof v6) == 0);
    for (size_t i = sizeof v6; i < sizeof out; i++)
        ck_assert_uint_eq(((const unsigned char *)&out)[i], 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/run/x"};
    ck_assert(!fwx__sa_set(&a, (const struct sockaddr *)&un));
    ck_assert_uint_eq(a.sa.sa_family, AF_UNSPEC);
    ck_assert(fwx__sa_set(&a, NULL));
    ck_assert_uint_eq(a.sa.sa_family, AF_UNSPEC);
    memset(&out, 0xAA, sizeof out);
    fwx__sa_get(&out, &a);
    ck_assert_uint_eq(out.ss_family, AF_UNSPEC);

    /* Through a connection: the peer a filter reads back is the address given, byte for byte,
       and nothing past it is written. */
    fx f;
    fx_open(&f, NULL, NULL);
    IFWXConnection *c = NULL;
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, (const struct sockaddr *)&v6,
                                sizeof v6, NULL, 0, NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(f.s, &cp, &c), FWX_S_OK);
    memset(&out, 0xAA, sizeof out);
    uint32_t len = sizeof(struct sockaddr_in);
    TU_EXPECT_HR(IFWXConnection_GetExternalPeerName(c, TU_SAM(out), &len), FWX_E_INVALIDARG);
    ck_assert_uint_eq(len, sizeof v6);
    len = sizeof out;
    TU_EXPECT_HR(IFWXConnection_GetExternalPeerName(c, TU_SAM(out), &len), FWX_S_OK);
    ck_assert_uint_eq(len, sizeof v6);
    ck_assert(memcmp(&out, &v6, sizeof v6) == 0);
    ck_assert_uint_eq(((const unsigned char *)&out)[sizeof v6], 0xAA);
    TU_EXPECT_HR(IFWXConnection_Kill(c), FWX_S_OK);
    ck_assert_uint_eq(IFWXConnection_Release(c), 0);
    fx_close(&f);
}
END_TEST

/* ---- T13: Deny ----------------------------------------------------------------------------------- */

static void hooks_all_deny(tp_control *c)
{
    c->hooks = fwx_Connect_Tcp | fwx_Bind_Tcp | fwx_AcceptedConnection | fwx_Udp_Destination | fwxSourceNAT;
    c->deny_events = c->hooks & FWX_EVENT_TYPE_MASK;
}

START_TEST(t13_deny_codes)
{
    fx f;
    fx_open(&f, "tp_good", hooks_all_deny);
    IFWXConnection *c = (IFWXConnection *)1;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_E_CONNREFUSED);
    ck_assert_ptr_null(c);
    TU_EXPECT_HR(open_conn(&f, fwx_Bind_Tcp, FWX_PROTOCOL_TCP, "203.0.113.1:46000", &c), FWX_E_ADDRINUSE);
    TU_EXPECT_HR(open_conn(&f, fwx_AcceptedConnection, FWX_PROTOCOL_TCP, "198.51.100.7:40000", &c), FWX_E_DENIED);
    TU_EXPECT_HR(open_conn(&f, fwx_Udp_Destination, FWX_PROTOCOL_UDP, "198.51.100.7:53", &c), FWX_E_DENIED);
    /* Each refused connection still got its ConnectionTerminating, and none is left. */
    ck_assert_int_eq(f.ctl->n_terminating, 4);
    ck_assert_int_eq(f.ctl->n_attach, 1); /* once per session */
    fwx_firewall_stats st = {.struct_size = sizeof st};
    fwx_firewall_get_stats(f.fw, &st);
    ck_assert_uint_eq(st.connections, 0);
    ck_assert_uint_eq(st.bound_ports, 0);
    fx_close(&f);
}
END_TEST

/* ---- T16: a failing handler fails the request ---------------------------------------------- */

static void fail_connect(tp_control *c)
{
    c->hooks = fwx_Connect_Tcp | fwxSourceNAT;
    c->fail_events = fwx_Connect_Tcp;
}

START_TEST(t16_handler_failure_fails_request)
{
    fx f;
    fx_open(&f, "tp_good", fail_connect);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_E_OUTOFMEMORY);
    ck_assert_int_eq(f.ctl->n_terminating, 1);
    f.ctl->fail_events = 0;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_S_OK);
    fwx_connection_close(c);
    fx_close(&f);
    /* After Detach the session filter answers FWX_E_TERMINATING; the core sent it nothing more. */
    ck_assert_int_eq(f.ctl->n_detach, 1);
    ck_assert_int_eq(f.ctl->n_after_detach, 0);
}
END_TEST

static void attach_fails(tp_control *c)
{
    c->hooks = fwx_Connect_Tcp | fwxSourceNAT;
    c->attach_fail = 1;
}

START_TEST(t16_attach_failure_fails_request)
{
    fx f;
    fx_open(&f, "tp_good", attach_fails);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_E_OUTOFMEMORY);
    fx_close(&f);
}
END_TEST

/* ---- T12: calls outside the event that allows them --------------------------------------- */

typedef struct probe {
    fwx_result deny_in_listen, attach_in_listen, attach_in_connect, emulate1, emulate2, deny_reserved, setipf,
        emulate_bind_in_connect;
} probe;


static fwx_result probe_df_qi(IFWXDataFilter *T, const fwx_guid *r, void **p)
{
    (void)T, (void)r;
    *p = NULL;
    return FWX_E_NOINTERFACE;
}
static atomic_uint probe_df_refs = 1;
static uint32_t probe_df_addref(IFWXDataFilter *T)
{
    (void)T;
    return atomic_fetch_add(&probe_df_refs, 1) + 1;
}
static uint32_t probe_df_release(IFWXDataFilter *T)
{
    (void)T;
    return atomic_fetch_sub(&probe_df_refs, 1) - 1;
}
static fwx_result probe_df_ss(IFWXDataFilter *T, IFWXSocket *a, IFWXSocket *b, IFWXConnection *c, IUnknown *x)
{
    (void)T, (void)a, (void)b, (void)c, (void)x;
    return FWX_S_OK;
}
static fwx_result probe_df_detach(IFWXDataFilter *T)
{
    (void)T;
    return FWX_S_OK;
}
static const IFWXDataFilterVtbl probe_df_vtbl = {probe_df_qi, probe_df_addref, probe_df_release, probe_df_ss,
                                                 probe_df_detach};
static IFWXDataFilter probe_df = {&probe_df_vtbl};

static fwx_result probe_event(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    probe *p = ctl->arg;
    (void)sf, (void)s;
    if (ev->EventType == fwx_Listen) {
        IFWXConnection *c = ev->Parameters.Listen.piConnection;
        p->deny_in_listen = IFWXConnection_Deny(c, 0);
        p->attach_in_listen = IFWXConnection_AttachDataFilter(c, &probe_df, fwx_dfpc_Middle, NULL);
    } else if (ev->EventType == fwx_Connect_Tcp) {
        IFWXConnection *c = ev->Parameters.Connect.piConnection;
        ck_assert_int_eq(ev->Parameters.Connect.FilterAccess, FWX_PASS); /* no policy: nothing decided */
        p->deny_reserved = IFWXConnection_Deny(c, 1);
        p->emulate_bind_in_connect = IFWXConnection_EmulateForBind(c);
        p->emulate1 = IFWXConnection_EmulateForConnect(c, &probe_df, NULL);
        p->emulate2 = IFWXConnection_EmulateForConnect(c, &probe_df, NULL);
        p->setipf = IFWXConnection_SetIpFilter(c, NULL);
        p->attach_in_connect = IFWXConnection_AttachDataFilter(c, &probe_df, fwx_dfpc_PreTrust, NULL);
    }
    return FWX_S_OK;
}

static void hooks_probe(tp_control *c)
{
    c->hooks = fwx_Connect_Tcp | fwx_Listen | fwx_Bind_Tcp | fwxSourceNAT;
    c->on_event = probe_event;
}

START_TEST(t12_t14_calls_in_and_out_of_context)
{
    fx f;
    probe p;
    memset(&p, 0x55, sizeof p);
    fx_open(&f, "tp_good", hooks_probe);
    /* No backend here: the test is the host that would relay, data filters included. */
    TU_EXPECT_HR(fwx_firewall_set_host_relay(f.fw, 1), FWX_S_OK);
    f.ctl->arg = &p;
    IFWXConnection *c = NULL, *b = NULL, *e = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_S_OK);
    TU_EXPECT_HR(p.deny_reserved, FWX_E_INVALIDARG);
    TU_EXPECT_HR(p.emulate_bind_in_connect, FWX_E_BAD_CONTEXT);
    TU_EXPECT_HR(p.emulate1, FWX_S_OK);
    TU_EXPECT_HR(p.emulate2, FWX_E_ALREADY_EMULATED);
    TU_EXPECT_HR(p.setipf, FWX_E_NOT_SUPPORTED); /* T14: not for emulated connections */
    TU_EXPECT_HR(p.attach_in_connect, FWX_S_OK);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_EMULATED);
    ck_assert(!(flags & FWX_CONNECTION_KERNEL_MODE));
    ck_assert_uint_eq(atomic_load(&probe_df_refs), 3); /* held twice by the connection */
    /* Outside any handler. */
    TU_EXPECT_HR(IFWXConnection_Deny(c, 0), FWX_E_BAD_CONTEXT);
    TU_EXPECT_HR(IFWXConnection_AttachDataFilter(c, &probe_df, fwx_dfpc_Middle, NULL), FWX_E_BAD_CONTEXT);
    TU_EXPECT_HR(IFWXConnection_EmulateForConnect(c, &probe_df, NULL), FWX_E_BAD_CONTEXT);
    IFWXConnection *ec = NULL;
    struct sockaddr_storage r = tu_addr("198.51.100.7:20"), l = tu_addr("203.0.113.1:40000");
    /* T14: EmulateConnection needs a listening or emulated connection. */
    TU_EXPECT_HR(open_conn(&f, fwx_Bind_Tcp, FWX_PROTOCOL_TCP, "203.0.113.1:46000", &b), FWX_S_OK);
    fwx_connection_close(c);
    ck_assert_uint_eq(atomic_load(&probe_df_refs), 1); /* detached and released at the end */
    /* Listen cannot be denied, and nothing may be attached there. */
    TU_EXPECT_HR(fwx_connection_listen(b), FWX_S_OK);
    TU_EXPECT_HR(p.deny_in_listen, FWX_E_BAD_CONTEXT);
    TU_EXPECT_HR(p.attach_in_listen, FWX_E_BAD_CONTEXT);
    TU_EXPECT_HR(IFWXConnection_EmulateConnection(b, &probe_df, TU_SA(r), tu_len(&r), TU_SA(l), tu_len(&l), &ec),
                 FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(ec, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_EMULATED);
    TU_EXPECT_HR(IFWXConnection_EmulateConnection(ec, &probe_df, TU_SA(r), tu_len(&r), TU_SA(l), tu_len(&l), &e),
                 FWX_S_OK); /* an emulated connection may emulate again */
    fwx_connection_close(e);
    fwx_connection_close(ec);
    IFWXConnection *plain = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Udp_Destination, FWX_PROTOCOL_UDP, "198.51.100.7:53", &plain), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_EmulateConnection(plain, &probe_df, TU_SA(r), tu_len(&r), TU_SA(l), tu_len(&l), &e),
                 FWX_E_WSAEINVAL);
    fwx_connection_close(plain);
    fwx_connection_close(b);
    fx_close(&f);
}
END_TEST

/* ---- T15: ConnectionTerminating without registration --------------------------------------- */

START_TEST(t15_terminating_without_registration)
{
    fx f;
    fx_open(&f, "tp_good", hooks_connect);
    IFWXConnection *c = NULL, *u = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_S_OK);
    /* A UDP connection raises no hooked event, but its end is still heard once attached. */
    TU_EXPECT_HR(open_conn(&f, fwx_Udp_Destination, FWX_PROTOCOL_UDP, "198.51.100.7:53", &u), FWX_S_OK);
    ck_assert_int_eq(f.ctl->n_events, 1);
    fwx_connection_close(u);
    fwx_connection_close(c);
    ck_assert_int_eq(f.ctl->n_terminating, 2);
    ck_assert_uint_eq(f.ctl->log[0], fwx_Connect_Tcp);
    ck_assert_uint_eq(f.ctl->log[1], fwx_ConnectionTerminating);
    fx_close(&f);
    ck_assert_uint_eq(f.ctl->log[3], TP_LOG_DETACH);
}
END_TEST

/* ---- T21 and protocol bindings --------------------------------------------------------------- */


static fwx_result record_access(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf, (void)s;
    if (ev->EventType == fwx_Connect_Tcp)
        *(int *)ctl->arg = ev->Parameters.Connect.FilterAccess;
    return FWX_S_OK;
}

static void hooks_bound_only(tp_control *c)
{
    c->hooks = fwx_Connect_Tcp | fwxSourceNAT; /* no fwxAnyProtocol: bound protocols only */
    c->on_event = record_access;
}

START_TEST(t21_policy_first_then_bound_filters)
{
    fx f;
    int access = -1;
    fx_open(&f, "tp_good", hooks_bound_only);
    f.ctl->arg = &access;
    const char *cfg = "networks = { internal = { ranges = [ \"10.0.0.0/8\" ]; }; };\n"
                      "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
                      "protocols = (\n"
                      "  { name = \"ftp\"; guid = \"{11111111-0000-0000-0000-000000000021}\"; protocol = \"tcp\";"
                      " port = 21; filters = [ \"{7e570000-0000-0000-0000-000000000001}\" ]; },\n"
                      "  { name = \"http\"; guid = \"{11111111-0000-0000-0000-000000000080}\"; protocol = \"tcp\";"
                      " port = 80; },\n"
                      "  { name = \"smtp\"; guid = \"{11111111-0000-0000-0000-000000000025}\"; protocol = \"tcp\";"
                      " port = 25; } );\n"
                      "address_sets = { bad = [ \"192.0.2.0/24\" ]; };\n"
                      "rules = (\n"
                      "  { name = \"no bad sites\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"bad\" ];"
                      " protocols = [ \"all\" ]; },\n"
                      "  { name = \"web and ftp\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
                      " protocols = [ \"ftp\", \"http\" ]; } );\n";
    fwx_policy *p = NULL;
    fwx_config_error err;
    fwx_result hr = fwx_policy_load_string(cfg, "t21.cfg", &p, &err);
    ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s: %s", err.file, err.line, err.key, err.message);
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, p), FWX_S_OK);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "192.0.2.99:21", &c), FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:25", &c), FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_int_eq(f.ctl->n_events, 0); /* the policy refused before any filter was asked */
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:80", &c), FWX_S_OK);
    ck_assert_int_eq(f.ctl->n_events, 0); /* http is not bound to this filter */
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_KERNEL_MODE); /* T9: nobody needs to see it */
    fwx_connection_close(c);
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_S_OK);
    ck_assert_int_eq(f.ctl->n_events, 1);
    ck_assert_int_eq(access, FWX_ALLOW);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_KERNEL_MODE)); /* T9: a filter hooks it */
    fwx_connection_close(c);
    fx_close(&f);
}
END_TEST

/* ---- the plugin watchdog's quarantine ------------------------------------ */

static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static char wd_log[8192]; /* the lines, one after another; the watchdog thread writes here too */

static void wd_capture(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg;
    (void)level;
    pthread_mutex_lock(&wd_lock);
    size_t n = strlen(wd_log);
    snprintf(wd_log + n, sizeof wd_log - n, "%s\n", msg);
    pthread_mutex_unlock(&wd_lock);
}

static bool wd_seen(const char *text)
{
    pthread_mutex_lock(&wd_lock);
    bool yes = strstr(wd_log, text) != NULL;
    pthread_mutex_unlock(&wd_lock);
    return yes;
}

/* Sleeps 1 s (20 times the soft limit) in Connect_Tcp while *arg is nonzero. */
static fwx_result slow_handler(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    (void)s;
    if (ev->EventType == fwx_Connect_Tcp && ctl->arg != NULL && *(int *)ctl->arg)
        usleep(1000 * 1000);
    return FWX_S_OK;
}

static void hooks_bound_slow(tp_control *c)
{
    c->hooks = fwx_Connect_Tcp | fwxSourceNAT; /* bound protocols only */
    c->on_event = slow_handler;
}

static void hooks_any_slow(tp_control *c)
{
    c->hooks = fwx_Connect_Tcp | fwxSourceNAT | fwxAnyProtocol;
    c->on_event = slow_handler;
}

/* A handler that overruns the soft limit is named with its event (from the watchdog's thread,
   while it runs) and its plugin quarantined: the sessions it has keep it; a new session's
   connection of a protocol the policy binds to it is refused (never relayed unfiltered); one
   of another protocol passes. A plugin hooking every protocol is skipped instead. With
   other_firewall, the new session is another firewall's of the process that loaded the same
   plugin (a host running one firewall per event loop): the quarantine holds there too. */
static void quarantine_case(bool any_protocol, bool other_firewall)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    wd_log[0] = '\0';
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.plugin_soft_limit_ms = 50;
    o.log = wd_capture;
    fwx_firewall *fw = NULL;
    TU_EXPECT_HR(fwx_firewall_new(&loop, &o, &fw), FWX_S_OK);
    tp_control *ctl = tu_plugin_map("tp_good", NULL);
    (any_protocol ? hooks_any_slow : hooks_bound_slow)(ctl);
    int slow = 1;
    ctl->arg = &slow;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    const char *cfg = "networks = { internal = { ranges = [ \"10.0.0.0/8\" ]; }; };\n"
                      "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
                      "protocols = (\n"
                      "  { name = \"ftp\"; guid = \"{11111111-0000-0000-0000-000000000021}\"; protocol = \"tcp\";"
                      " port = 21; filters = [ \"{7e570000-0000-0000-0000-000000000001}\" ]; },\n"
                      "  { name = \"http\"; guid = \"{11111111-0000-0000-0000-000000000080}\"; protocol = \"tcp\";"
                      " port = 80; } );\n"
                      "rules = ( { name = \"out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
                      " protocols = [ \"ftp\", \"http\" ]; } );\n";
    fwx_policy *p = NULL;
    fwx_config_error err;
    ck_assert_int_eq(fwx_policy_load_string(cfg, "wd.cfg", &p, &err), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_policy(fw, p), FWX_S_OK);
    uv_loop_t loop2;
    fwx_firewall *fw2 = NULL;
    if (other_firewall) { /* the same plugin and policy, on a loop of its own */
        ck_assert_int_eq(uv_loop_init(&loop2), 0);
        TU_EXPECT_HR(fwx_firewall_new(&loop2, &o, &fw2), FWX_S_OK);
        TU_EXPECT_HR(fwx_firewall_load_plugin(fw2, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
        ck_assert_int_eq(fwx_policy_load_string(cfg, "wd.cfg", &p, &err), FWX_S_OK);
        TU_EXPECT_HR(fwx_firewall_set_policy(fw2, p), FWX_S_OK);
    }

    struct sockaddr_storage ca = tu_addr("10.0.0.8"), cb = tu_addr("10.0.0.9");
    struct sockaddr_storage ftp = tu_addr("198.51.100.7:21"), web = tu_addr("198.51.100.7:80");
    fwx_session_params spa = {sizeof spa, fwxSourceNAT, TU_SA(ca), tu_len(&ca), NULL, 0, NULL};
    fwx_session_params spb = {sizeof spb, fwxSourceNAT, TU_SA(cb), tu_len(&cb), NULL, 0, NULL};
    fwx_connection_params to_ftp = {sizeof to_ftp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(ftp), tu_len(&ftp),
                                    NULL, 0, NULL, 0, 0, NULL};
    fwx_connection_params to_web = {sizeof to_web, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(web), tu_len(&web),
                                    NULL, 0, NULL, 0, 0, NULL};
    IFWXSession *a = NULL, *b = NULL;
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_session_open(fw, &spa, &a), FWX_S_OK);
    TU_EXPECT_HR(fwx_connection_open(a, &to_ftp, &c), FWX_S_OK); /* the handler sleeps 1 s */
    fwx_connection_close(c);
    ck_assert_msg(wd_seen("fwx: plugin \"good\": Connect_Tcp has run for "), "no soft-limit line in:\n%s", wd_log);
    ck_assert(wd_seen("past the soft limit of 50 ms; the plugin gets no new sessions"));
    ck_assert_int_eq(ctl->n_events, 2); /* Connect_Tcp, ConnectionTerminating */
    slow = 0;
    /* session a keeps its filter */
    TU_EXPECT_HR(fwx_connection_open(a, &to_ftp, &c), FWX_S_OK);
    fwx_connection_close(c);
    ck_assert_int_eq(ctl->n_events, 4);
    /* a new session */
    int before = ctl->n_events;
    TU_EXPECT_HR(fwx_session_open(other_firewall ? fw2 : fw, &spb, &b), FWX_S_OK);
    if (any_protocol) {
        TU_EXPECT_HR(fwx_connection_open(b, &to_ftp, &c), FWX_S_OK); /* skipped: not consulted */
        fwx_connection_close(c);
    } else {
        TU_EXPECT_HR(fwx_connection_open(b, &to_ftp, &c), FWX_E_FILTER_NOT_REGISTERED);
        ck_assert_ptr_null(c);
        ck_assert(wd_seen("fwx: plugin \"good\": quarantined after overrunning its time limit, Connect_Tcp refused"));
    }
    TU_EXPECT_HR(fwx_connection_open(b, &to_web, &c), FWX_S_OK);
    fwx_connection_close(c);
    ck_assert_int_eq(ctl->n_events, before); /* the quarantined plugin heard nothing of session b */
    fwx_session_close(a);
    IFWXSession_Release(a);
    fwx_session_close(b);
    IFWXSession_Release(b);
    fwx_firewall_close(fw, NULL, NULL);
    tu_loop_close_clean(&loop);
    if (other_firewall) {
        fwx_firewall_close(fw2, NULL, NULL);
        tu_loop_close_clean(&loop2);
    }
}

START_TEST(watchdog_quarantine_bound) { quarantine_case(false, false); }
END_TEST
START_TEST(watchdog_quarantine_any_protocol) { quarantine_case(true, false); }
END_TEST
START_TEST(watchdog_quarantine_other_firewall) { quarantine_case(false, true); }
END_TEST

/* AttachFilter attaches early, once; unknown class ids are refused. */
static void hooks_none(tp_control *c) { c->hooks = 0; }

START_TEST(attach_filter_early)
{
    fx f;
    fx_open(&f, "tp_good", hooks_none);
    fwx_guid good = FWX_GUID_INIT(0x7e, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01);
    fwx_guid unknown = FWX_GUID_INIT(0x7e, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99);
    TU_EXPECT_HR(IFWXSession_AttachFilter(f.s, &unknown), FWX_E_CLASSNOTREG);
    TU_EXPECT_HR(IFWXSession_AttachFilter(f.s, &good), FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_AttachFilter(f.s, &good), FWX_S_OK);
    ck_assert_int_eq(f.ctl->n_attach, 1);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", &c), FWX_S_OK);
    fwx_connection_close(c);
    ck_assert_int_eq(f.ctl->n_terminating, 1); /* attached, so it hears the end */
    fx_close(&f);
    ck_assert_int_eq(f.ctl->n_sf_released, 1);
}
END_TEST

/* IFWXUdpDestination::Deny works in its handler only. */
static fwx_result deny_udp(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf, (void)s;
    if (ev->EventType == fwx_Udp_Destination) {
        IFWXUdpDestination *u = ev->Parameters.UdpDest.piUdpDestination;
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(IFWXUdpDestination_Deny(u, 7), FWX_E_INVALIDARG);
        *(IFWXUdpDestination **)ctl->arg = u;
        IFWXUdpDestination_AddRef(u);
        return IFWXUdpDestination_Deny(u, 0);
    }
    return FWX_S_OK;
}

static void hooks_udp(tp_control *c)
{
    c->hooks = fwx_Udp_Destination | fwxSourceNAT;
    c->on_event = deny_udp;
}

START_TEST(udp_destination_deny)
{
    fx f;
    IFWXUdpDestination *kept = NULL;
    fx_open(&f, "tp_good", hooks_udp);
    f.ctl->arg = &kept;
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, fwx_Udp_Destination, FWX_PROTOCOL_UDP, "198.51.100.7:5060", &c), FWX_E_DENIED);
    ck_assert_ptr_nonnull(kept);
    TU_EXPECT_HR(IFWXUdpDestination_Deny(kept, 0), FWX_E_BAD_CONTEXT); /* outside the handler */
    ck_assert_uint_eq(IFWXUdpDestination_Release(kept), 0);               /* the last reference */
    fx_close(&f);
}
END_TEST

static Suite *session_suite(void)
{
    const tu_case cases[] = {
        {"kinds", nat_sessions_per_address_explicit_per_channel},
        {"private session", private_session_ends_on_last_release},
        {"ended", ended_session_refuses_calls},
        {"connections", connection_basics_and_refcounts},
        {"compact addresses", compact_address_copies},
        {"t13 deny", t13_deny_codes},
        {"t16 handler", t16_handler_failure_fails_request},
        {"t16 attach", t16_attach_failure_fails_request},
        {"t12 t14", t12_t14_calls_in_and_out_of_context},
        {"t15 terminating", t15_terminating_without_registration},
        {"t21", t21_policy_first_then_bound_filters},
        {"attach filter", attach_filter_early},
        {"udp destination", udp_destination_deny},
        {"watchdog quarantine bound", watchdog_quarantine_bound},
        {"watchdog quarantine other firewall", watchdog_quarantine_other_firewall},
        {"watchdog quarantine any protocol", watchdog_quarantine_any_protocol},
    };
    return TU_SUITE("session", cases, 0);
}

int main(void) { return tu_run_suite(session_suite()); }
