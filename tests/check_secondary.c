/*
 * fwx tests - the secondary-connection engine: AllowFutureConnect, BindForClient,
 * RedirectConnections, RetroactiveAllowBind, SetDataFilterFactory and admission, against
 * SDK rules T1-T11, T15, T17 (doc/sdk-rules.md) and the attack catalog rows that apply to the core
 * (doc/security.md).
 *
 * The network: client C 10.0.0.8 inside, gateway G 203.0.113.1 outside / 10.0.0.1 inside,
 * server S 198.51.100.7, third party T 192.0.2.99 (documentation ranges; nothing is sent).
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "plugins/test_plugin.h"
#include "core/internal.h" /* fwx__conn_set_upstream_local: what a backend reports */

#include <arpa/inet.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fx {
    uv_loop_t loop;
    fwx_firewall *fw;
    IFWXSession *s;
    IFWXConnection *ctl; /* the primary (control) connection C -> S:21 */
    char lastlog[512];
    int n_refused_logs;
} fx;

static void capture_log(void *arg, fwx_log_level level, const char *msg)
{
    fx *f = arg;
    (void)level;
    snprintf(f->lastlog, sizeof f->lastlog, "%s", msg);
    if (strstr(msg, "refused") != NULL)
        f->n_refused_logs++;
}

static void fx_open_opts(fx *f, const fwx_firewall_options *extra)
{
    memset(f, 0, sizeof *f);
    fwx_firewall_options o;
    if (extra != NULL)
        o = *extra;
    else
        fwx_firewall_options_init(&o);
    tu_fw_gateway_addresses(&o);
    o.port_min = extra && extra->port_min ? extra->port_min : 40000;
    o.port_max = extra && extra->port_max ? extra->port_max : 40255;
    o.timeout_ms = 50;
    o.log = capture_log;
    o.log_arg = f;
    o.log_level = FWX_LOG_DEBUG;
    o.log_repeat_limit = UINT32_MAX; /* the tests count every refusal's line */
    tu_fw_open(&f->loop, &o, &f->fw);
    f->s = tu_session_open(f->fw, fwxSourceNAT, "10.0.0.8", "10.0.0.1");
    struct sockaddr_storage srv = tu_addr("198.51.100.7:21"), gl = tu_addr("203.0.113.1:41000");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv),
                                TU_SA(gl), tu_len(&gl), NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(f->s, &cp, &f->ctl), FWX_S_OK);
}

static void fx_open(fx *f) { fx_open_opts(f, NULL); }

static fwx_firewall_stats fx_stats(fx *f) { return tu_fw_stats(f->fw); }

static void fx_close(fx *f)
{
    if (f->ctl != NULL)
        fwx_connection_close(f->ctl);
    if (f->s != NULL) {
        fwx_session_close(f->s);
        IFWXSession_Release(f->s);
    }
    fwx_firewall_stats st = fx_stats(f);
    ck_assert_uint_eq(st.permissions, 0);
    ck_assert_uint_eq(st.bound_ports, 0);
    ck_assert_uint_eq(st.factories, 0);
    tu_fw_close(&f->loop, &f->fw);
}

static fwx_result afc(fx *f, const char *target, int32_t proto, uint32_t flags, IFWXConnection *conn,
                      IFWXFirewallAction **act)
{
    struct sockaddr_storage t = tu_addr(target);
    return IFWXSession_AllowFutureConnect(f->s, TU_SA(t), tu_len(&t), NULL, 0, proto, flags, &FWX_GUID_NULL, NULL, NULL,
                                          conn, act);
}

static fwx_result bfc(fx *f, const char *client, uint32_t n, uint32_t flags, const char *proxy, IFWXIpFilter *ipf,
                      IFWXConnection **conns, struct sockaddr_storage *proxy_out)
{
    struct sockaddr_storage ca[16];
    const struct sockaddr *cp[16];
    for (uint32_t i = 0; i < n && i < 16; i++) {
        ca[i] = tu_addr(client);
        cp[i] = TU_SA(ca[i]);
    }
    struct sockaddr_storage px = tu_addr(proxy ? proxy : "0.0.0.0:0");
    fwx_result hr = IFWXSession_BindForClient(f->s, cp, sizeof(struct sockaddr_in), TU_SAM(px), sizeof px,
                                              FWX_PROTOCOL_TCP, n, flags, 5, &FWX_GUID_NULL, NULL, NULL, ipf, conns);
    if (proxy_out != NULL)
        *proxy_out = px;
    return hr;
}

/* "203.0.113.1:PORT", PORT the one a call handed out in *gw: where the peer connects to. */
static void gw_dst(const struct sockaddr_storage *gw, char *out, size_t n)
{
    snprintf(out, n, "203.0.113.1:%u", ntohs(((const struct sockaddr_in *)gw)->sin_port));
}

/* One bound port for client (BindForClient), and in dst where its peer connects to. */
static fwx_result bind_one(fx *f, const char *client, IFWXConnection **conn, char *dst, size_t n)
{
    struct sockaddr_storage px;
    fwx_result hr = bfc(f, client, 1, 0, NULL, NULL, conn, &px);
    gw_dst(&px, dst, n);
    return hr;
}

static fwx_result admit(fx *f, int32_t proto, const char *src, const char *dst, IFWXConnection **out)
{
    struct sockaddr_storage s = tu_addr(src), d = tu_addr(dst);
    fwx_flow fl = {sizeof fl, proto, TU_SA(s), tu_len(&s), TU_SA(d), tu_len(&d)};
    return fwx_firewall_admit(f->fw, &fl, out);
}

static uint16_t sa_port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                           : ((const struct sockaddr_in *)ss)->sin_port);
}

static uint16_t conn_local_port(IFWXConnection *c)
{
    struct sockaddr_storage ss;
    uint32_t len = sizeof ss;
    TU_EXPECT_HR(IFWXConnection_GetExternalSocketName(c, TU_SAM(ss), &len), FWX_S_OK);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- T1 and flag validation ---------------------------------------------------------------- */

START_TEST(t1_timeout_with_multiple_refused)
{
    fx f;
    fx_open(&f);
    IFWXFirewallAction *act = (IFWXFirewallAction *)1;
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT | FWX_FLAG_ALLOW_MULTIPLE, f.ctl, &act),
                 FWX_E_INVALIDARG);
    ck_assert_ptr_null(act); /* out pointers are always written */
    IFWXConnection *conns[1] = {(IFWXConnection *)1};
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, FWX_FLAG_TIMEOUT | FWX_FLAG_ALLOW_MULTIPLE, NULL, NULL, conns, NULL),
                 FWX_E_INVALIDARG);
    ck_assert_ptr_null(conns[0]);
    struct sockaddr_storage t = tu_addr("198.51.100.7:50000"), ia;
    const struct sockaddr *tp[1] = {TU_SA(t)};
    uint32_t ialen = sizeof ia;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(f.s, tp, tu_len(&t), 1, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP,
                                                 FWX_FLAG_TIMEOUT | FWX_FLAG_ALLOW_MULTIPLE, &FWX_GUID_NULL, NULL, NULL,
                                                 NULL),
                 FWX_E_INVALIDARG);
    fwx_firewall_stats st = fx_stats(&f);
    ck_assert_uint_eq(st.permissions, 0);
    ck_assert_uint_eq(st.bound_ports, 0);
    ck_assert_int_gt(f.n_refused_logs, 2); /* every refusal is logged */
    fx_close(&f);
}
END_TEST

START_TEST(flags_outside_the_call_refused)
{
    fx f;
    fx_open(&f);
    /* BIDIRECTIONAL is UDP only; PROXY_MODE is BindForClient only; unknown bits are refused. */
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_BIDIRECTIONAL, f.ctl, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_PROXY_MODE, f.ctl, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, 0x80000000u, f.ctl, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", 99, 0, f.ctl, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_UDP, FWX_FLAG_BIDIRECTIONAL, f.ctl, NULL), FWX_S_OK);
    IFWXConnection *c[1];
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, FWX_FLAG_ADDRESS_BASED, NULL, NULL, c, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, FWX_FLAG_BIDIRECTIONAL, NULL, NULL, c, NULL), FWX_E_INVALIDARG);
    fx_close(&f);
}
END_TEST

/* ---- T2, T17: timeouts and automatic cancel ------------------------------------------------ */

START_TEST(t2_permission_expires)
{
    fx f;
    fx_open(&f);
    IFWXFirewallAction *act = NULL;
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT, f.ctl, &act), FWX_S_OK);
    TU_EXPECT_REF(act, 1);
    ck_assert_uint_eq(fx_stats(&f).permissions, 1);
    tu_loop_run_for(&f.loop, 200); /* the firewall's timeout is 50 ms here */
    ck_assert_uint_eq(fx_stats(&f).permissions, 0);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3333", "198.51.100.7:50000", &c), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act), FWX_S_FALSE); /* T17: already cancelled by the timeout */
    ck_assert_uint_eq(IFWXFirewallAction_Release(act), 0);
    fx_close(&f);
}
END_TEST

START_TEST(t2_bound_port_times_out_or_lives_until_kill)
{
    fx f;
    fx_open(&f);
    IFWXConnection *timed[1], *kept[1];
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, FWX_FLAG_TIMEOUT, NULL, NULL, timed, NULL), FWX_S_OK);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2001", 1, 0, NULL, NULL, kept, NULL), FWX_S_OK);
    ck_assert_uint_eq(fx_stats(&f).bound_ports, 2);
    tu_loop_run_for(&f.loop, 200);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(timed[0], &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_TERMINATED);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(kept[0], &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_TERMINATED));
    ck_assert_uint_eq(fx_stats(&f).bound_ports, 1);
    TU_EXPECT_REF(kept[0], 2); /* the caller's and the session's */
    TU_EXPECT_HR(IFWXConnection_Kill(kept[0]), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_Kill(kept[0]), FWX_S_OK); /* T18: Kill always succeeds */
    TU_EXPECT_REF(kept[0], 1);
    ck_assert_uint_eq(fx_stats(&f).bound_ports, 0);
    ck_assert_uint_eq(IFWXConnection_Release(timed[0]), 0);
    ck_assert_uint_eq(IFWXConnection_Release(kept[0]), 0);
    fx_close(&f);
}
END_TEST

START_TEST(t17_cancel_after_use_and_session_end)
{
    fx f;
    fx_open(&f);
    IFWXFirewallAction *a1 = NULL, *a2 = NULL;
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, 0, f.ctl, &a1), FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50001", FWX_PROTOCOL_TCP, 0, f.ctl, &a2), FWX_S_OK);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3333", "198.51.100.7:50000", &c), FWX_S_OK);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(a1), FWX_S_FALSE); /* used up */
    fwx_session_close(f.s);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(a2), FWX_S_FALSE); /* withdrawn with the session */
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50002", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_E_TERMINATING);
    uint32_t sflags = 0;
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(f.s, &sflags), FWX_S_OK);
    ck_assert(sflags & FWX_SESSION_TERMINATED);
    IFWXFirewallAction_Release(a1);
    IFWXFirewallAction_Release(a2);
    IFWXConnection_Release(c);
    fx_close(&f);
}
END_TEST

/* ---- T3: one connection unless ALLOW_MULTIPLE ----------------------------------------------- */

START_TEST(t3_one_shot_and_multiple)
{
    fx f;
    fx_open(&f);
    IFWXFirewallAction *multi = NULL;
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50001", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_MULTIPLE, f.ctl, &multi), FWX_S_OK);
    IFWXConnection *c1 = NULL, *c2 = NULL, *m[3] = {0};
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3333", "198.51.100.7:50000", &c1), FWX_S_OK);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3334", "198.51.100.7:50000", &c2), FWX_E_NOT_FOUND);
    ck_assert_ptr_null(c2);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c1, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_SECONDARY);
    for (int i = 0; i < 3; i++)
        TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:4000", "198.51.100.7:50001", &m[i]), FWX_S_OK);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(multi), FWX_S_OK);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:4000", "198.51.100.7:50001", &c2), FWX_E_NOT_FOUND);
    /* Another client, or another protocol, never matches. */
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50002", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.9:3333", "198.51.100.7:50002", &c2), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_UDP, "10.0.0.8:3333", "198.51.100.7:50002", &c2), FWX_E_NOT_FOUND);
    for (int i = 0; i < 3; i++)
        fwx_connection_close(m[i]);
    fwx_connection_close(c1);
    IFWXFirewallAction_Release(multi);
    fx_close(&f);
}
END_TEST

START_TEST(t3_bound_port_one_connection_only)
{
    fx f;
    fx_open(&f);
    IFWXConnection *conns[1];
    struct sockaddr_storage px;
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, 0, NULL, NULL, conns, &px), FWX_S_OK);
    char dst[64];
    gw_dst(&px, dst, sizeof dst);
    IFWXConnection *c = NULL, *c2 = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &c), FWX_S_OK);
    ck_assert_ptr_eq(c, conns[0]); /* the object BindForClient returned is the connection */
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_LISTENING));
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &c2), FWX_E_NOT_FOUND);
    struct sockaddr_storage peer;
    uint32_t len = sizeof peer;
    TU_EXPECT_HR(IFWXConnection_GetExternalPeerName(c, TU_SAM(peer), &len), FWX_S_OK);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&peer)->sin_port), 20);
    TU_EXPECT_REF(c, 3); /* BindForClient's, admit's, the session's */
    IFWXConnection_Release(c);
    IFWXConnection_Release(conns[0]);
    fx_close(&f);
}
END_TEST

/* ---- T4, T5: address scope ------------------------------------------------------------------ */

START_TEST(t4_afc_scope)
{
    fx f;
    fx_open(&f);
    TU_EXPECT_HR(afc(&f, "198.51.100.99:50000", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(afc(&f, "198.51.100.99:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK, f.ctl, NULL),
                 FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "198.51.101.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK, f.ctl, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    /* Without a policy there are no networks to compare: IN_NETWORK widens nothing. */
    TU_EXPECT_HR(afc(&f, "192.0.2.99:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK, f.ctl, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(afc(&f, "192.0.2.99:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_ALL, f.ctl, NULL), FWX_S_OK);
    ck_assert_ptr_nonnull(strstr(f.lastlog, "permission"));
    fx_close(&f);
}
END_TEST

START_TEST(t4_afc_scope_in_network_with_policy)
{
    fx f;
    fx_open(&f);
    fwx_policy *p = NULL;
    fwx_config_error err;
    const char *cfg = "networks = { partners = { ranges = [ \"198.51.100.0/23\" ]; }; };\n"
                      "relationships = ( { from = \"internal\"; to = \"partners\"; type = \"nat\"; } );\n"
                      "rules = ( { name = \"all out\"; action = \"allow\"; from = [ \"internal\" ];"
                      " to = [ \"partners\", \"external\" ]; protocols = [ \"all\" ]; } );\n";
    fwx_result hr = fwx_policy_load_string(cfg, "scope.cfg", &p, &err);
    ck_assert_msg(hr == FWX_S_OK, "policy: %s:%d: %s: %s", err.file, err.line, err.key, err.message);
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, p), FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "198.51.101.20:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK, f.ctl, NULL),
                 FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "192.0.2.99:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK, f.ctl, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    fx_close(&f);
}
END_TEST

/* A null or unknown ProtocolGuid does not skip the policy: the primary connection's protocol
   stands in (T21). */
START_TEST(t21_secondary_policy_without_guid)
{
    fx f;
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    fx_open_opts(&f, &o);
    /* The control connection was opened before the policy, so give it one and reopen it. */
    fwx_connection_close(f.ctl);
    f.ctl = NULL;
    const char *cfg = "networks = { internal = { ranges = [ \"10.0.0.0/8\" ]; }; };\n"
                      "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
                      "protocols = ( { name = \"ftp\"; guid = \"{11111111-0000-0000-0000-000000000021}\";"
                      " protocol = \"tcp\"; port = 21; } );\n"
                      "address_sets = { bad = [ \"192.0.2.0/24\" ]; };\n"
                      "rules = ( { name = \"no bad\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"bad\" ];"
                      " protocols = [ \"all\" ]; },\n"
                      "  { name = \"ftp\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
                      " protocols = [ \"ftp\" ]; } );\n";
    fwx_policy *p = NULL;
    fwx_config_error err;
    fwx_result hr = fwx_policy_load_string(cfg, "t21b.cfg", &p, &err);
    ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s: %s", err.file, err.line, err.key, err.message);
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, p), FWX_S_OK);
    struct sockaddr_storage srv = tu_addr("198.51.100.7:21");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(f.s, &cp, &f.ctl), FWX_S_OK);
    fwx_guid madeup = FWX_GUID_INIT(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    struct sockaddr_storage bad = tu_addr("192.0.2.99:50000"), ok = tu_addr("198.51.100.9:50000");
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(f.s, TU_SA(bad), tu_len(&bad), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ALLOW_ADDRESSES_ALL, &FWX_GUID_NULL, NULL, NULL, f.ctl, NULL),
                 FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(f.s, TU_SA(bad), tu_len(&bad), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ALLOW_ADDRESSES_ALL, &madeup, NULL, NULL, f.ctl, NULL),
                 FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(f.s, TU_SA(ok), tu_len(&ok), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ALLOW_ADDRESSES_ALL, &FWX_GUID_NULL, NULL, NULL, f.ctl, NULL),
                 FWX_S_OK);
    fx_close(&f);
}
END_TEST

/* A published server is the session's own host: BindForClient binds its passive data ports,
   and it may use the session's redirect ports (active mode through an explicit gateway). */
START_TEST(published_server_is_own_host)
{
    fx f;
    fx_open(&f);
    /* A remote client 198.51.100.20 reaches the published FTP server 10.0.0.5 through us. */
    struct sockaddr_storage rc = tu_addr("198.51.100.20"), remote = tu_addr("198.51.100.20:40000"),
                            pub = tu_addr("203.0.113.1:21"), srv = tu_addr("10.0.0.5:21");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(rc), tu_len(&rc), NULL, 0, NULL};
    IFWXSession *s = NULL;
    IFWXConnection *ctl = NULL, *b[1], *in = NULL;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_AcceptedConnection, FWX_PROTOCOL_TCP, TU_SA(remote), tu_len(&remote),
                                TU_SA(pub), tu_len(&pub), NULL, 0, tu_len(&srv), TU_SA(srv)};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);
    /* IFWXConnection2 tells a filter which server a published connection goes to. */
    IFWXConnection2 *c2 = NULL;
    TU_EXPECT_HR(IFWXConnection_QueryInterface(ctl, &IID_IFWXConnection2, (void **)&c2), FWX_S_OK);
    ck_assert_ptr_eq((void *)c2, (void *)ctl);
    struct sockaddr_storage ip;
    uint32_t iplen = 4;
    TU_EXPECT_HR(IFWXConnection2_GetInternalPeerName(c2, TU_SAM(ip), &iplen), FWX_E_INVALIDARG);
    iplen = sizeof ip;
    TU_EXPECT_HR(IFWXConnection2_GetInternalPeerName(c2, TU_SAM(ip), &iplen), FWX_S_OK);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ip)->sin_port), 21);
    ck_assert_uint_eq(((struct sockaddr_in *)&ip)->sin_addr.s_addr, ((struct sockaddr_in *)&srv)->sin_addr.s_addr);
    TU_EXPECT_REF(ctl, 3);
    IFWXConnection2_Release(c2);
    /* For a client's own connection it is the client. */
    iplen = sizeof ip;
    IFWXConnection2 *f2 = NULL;
    TU_EXPECT_HR(IFWXConnection_QueryInterface(f.ctl, &IID_IFWXConnection2, (void **)&f2), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection2_GetInternalPeerName(f2, TU_SAM(ip), &iplen), FWX_S_OK);
    ck_assert_uint_eq(ntohl(((struct sockaddr_in *)&ip)->sin_addr.s_addr), 0x0a000008);
    IFWXConnection2_Release(f2);
    /* Passive: the server's 227 names 10.0.0.5:50000; the gateway binds for it. */
    struct sockaddr_storage data = tu_addr("10.0.0.5:50000"), other = tu_addr("10.0.0.6:50000"), px = tu_addr("203.0.113.1:0");
    const struct sockaddr *d1[1] = {TU_SA(data)}, *d2[1] = {TU_SA(other)};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, d2, tu_len(&other), TU_SAM(px), sizeof px, FWX_PROTOCOL_TCP, 1, 0, 1,
                                           &FWX_GUID_NULL, NULL, NULL, NULL, b),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    /* A hostile server naming the remote client itself in its 227 gets no port. */
    struct sockaddr_storage self = tu_addr("198.51.100.20:50000");
    const struct sockaddr *d3[1] = {TU_SA(self)};
    px = tu_addr("203.0.113.1:0");
    TU_EXPECT_HR(IFWXSession_BindForClient(s, d3, tu_len(&self), TU_SAM(px), sizeof px, FWX_PROTOCOL_TCP, 1, 0, 1,
                                           &FWX_GUID_NULL, NULL, NULL, NULL, b),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    px = tu_addr("203.0.113.1:0");
    TU_EXPECT_HR(IFWXSession_BindForClient(s, d1, tu_len(&data), TU_SAM(px), sizeof px, FWX_PROTOCOL_TCP, 1, 0, 1,
                                           &FWX_GUID_NULL, NULL, NULL, NULL, b),
                 FWX_S_OK);
    char dst[64];
    gw_dst(&px, dst, sizeof dst);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.20:40001", dst, &in), FWX_S_OK); /* the remote client */
    fwx_connection_close(in);
    IFWXConnection_Release(b[0]);
    /* Active: the client's PORT names 198.51.100.20:40002; the server uses a redirect port. */
    struct sockaddr_storage port = tu_addr("198.51.100.20:40002"), ia;
    const struct sockaddr *tp[1] = {TU_SA(port)};
    uint32_t ialen = sizeof ia;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&port), 1, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                 &FWX_GUID_NULL, NULL, NULL, NULL),
                 FWX_S_OK);
    gw_dst(&ia, dst, sizeof dst);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.6:20", dst, &in), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.5:20", dst, &in), FWX_S_OK);
    fwx_connection_close(in);
    /* A caller built against the 1.0 struct (ending at flags) is still understood. */
    IFWXConnection *old = NULL;
    cp.struct_size = (uint32_t)(offsetof(fwx_connection_params, flags) + sizeof cp.flags);
    cp.published_server = (const struct sockaddr *)(uintptr_t)1; /* beyond its size: never read */
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &old), FWX_S_OK);
    fwx_connection_close(old);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    fx_close(&f);
}
END_TEST

/* FWX_FLAG_REPLY_FROM_PEER: a UDP answer of the primary's other party, any source port, to the
   client's own end of the primary (a TFTP server's transfer port); nobody else may use it. */
START_TEST(reply_from_peer_scope)
{
    fx f;
    fx_open(&f);
    const uint32_t fl = FWX_FLAG_TIMEOUT | FWX_FLAG_BIDIRECTIONAL | FWX_FLAG_REPLY_FROM_PEER;
    struct sockaddr_storage srv = tu_addr("198.51.100.7:69"), gl = tu_addr("203.0.113.1:41001"),
                            me = tu_addr("10.0.0.8:40100"), other = tu_addr("10.0.0.9:40100"), zero = tu_addr("10.0.0.8:0");
    fwx_connection_params cp = {sizeof cp, fwx_Udp_Destination, FWX_PROTOCOL_UDP, TU_SA(srv), tu_len(&srv),
                                TU_SA(gl), tu_len(&gl), NULL, 0, 0, NULL};
    IFWXConnection *udp = NULL, *in = NULL;
    TU_EXPECT_HR(fwx_connection_open(f.s, &cp, &udp), FWX_S_OK);
    /* The client's port is not known yet: nothing to scope the answer to. */
    TU_EXPECT_HR(afc(&f, "10.0.0.8:40100", FWX_PROTOCOL_UDP, fl, udp, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    ck_assert_ptr_nonnull(strstr(f.lastlog, "client port is unknown"));
    TU_EXPECT_HR(fwx_connection_set_internal_peer(udp, TU_SA(other), tu_len(&other)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_connection_set_internal_peer(udp, TU_SA(zero), tu_len(&zero)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_connection_set_internal_peer(NULL, TU_SA(me), tu_len(&me)), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_connection_set_internal_peer(udp, TU_SA(me), tu_len(&me)), FWX_S_OK);
    /* Without the flag the client's own address is out of the default scope (T4). */
    TU_EXPECT_HR(afc(&f, "10.0.0.8:40100", FWX_PROTOCOL_UDP, FWX_FLAG_TIMEOUT | FWX_FLAG_BIDIRECTIONAL, udp, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    /* UDP, BIDIRECTIONAL and the default scope only. */
    TU_EXPECT_HR(afc(&f, "10.0.0.8:40100", FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT | FWX_FLAG_REPLY_FROM_PEER, udp, NULL),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(afc(&f, "10.0.0.8:40100", FWX_PROTOCOL_UDP, FWX_FLAG_TIMEOUT | FWX_FLAG_REPLY_FROM_PEER, udp, NULL),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(afc(&f, "10.0.0.8:40100", FWX_PROTOCOL_UDP, fl | FWX_FLAG_ALLOW_ADDRESSES_ALL, udp, NULL),
                 FWX_E_INVALIDARG);
    /* Only the client's own end: another port, another host, a privileged port. */
    TU_EXPECT_HR(afc(&f, "10.0.0.8:40101", FWX_PROTOCOL_UDP, fl, udp, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(afc(&f, "10.0.0.9:40100", FWX_PROTOCOL_UDP, fl, udp, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(afc(&f, "10.0.0.8:53", FWX_PROTOCOL_UDP, fl, udp, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(afc(&f, "10.0.0.8:40100", FWX_PROTOCOL_UDP, fl, udp, NULL), FWX_S_OK);
    ck_assert_uint_eq(fx_stats(&f).permissions, 1);
    /* The answer: from the server's address alone, whatever its port; not from the client
       itself, not from a neighbour of the server. */
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_UDP, "10.0.0.8:40000", "10.0.0.8:40100", &in), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_UDP, "198.51.100.8:61000", "10.0.0.8:40100", &in), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_UDP, "198.51.100.7:61000", "10.0.0.8:40100", &in), FWX_S_OK);
    ck_assert_ptr_nonnull(in);
    fwx_connection_close(in);
    in = NULL;
    /* One transfer: used up. */
    ck_assert_uint_eq(fx_stats(&f).permissions, 0);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_UDP, "198.51.100.7:61001", "10.0.0.8:40100", &in), FWX_E_NOT_FOUND);
    fwx_connection_close(udp);
    fx_close(&f);
}
END_TEST

START_TEST(t5_null_connection_needs_allow_all)
{
    fx f;
    fx_open(&f);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, 0, NULL, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_ALL, NULL, NULL), FWX_S_OK);
    fx_close(&f);
}
END_TEST

START_TEST(t4_bfc_client_scope)
{
    fx f;
    fx_open(&f);
    IFWXConnection *c[1];
    /* Catalog #1: a PORT naming a third party is a bounce: refused. */
    TU_EXPECT_HR(bfc(&f, "192.0.2.99:2000", 1, 0, NULL, NULL, c, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(bfc(&f, "10.0.0.9:2000", 1, 0, NULL, NULL, c, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(bfc(&f, "10.0.0.9:2000", 1, FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK, NULL, NULL, c, NULL), FWX_S_OK);
    IFWXConnection_Release(c[0]);
    fx_close(&f);
}
END_TEST

/* ---- T6 ------------------------------------------------------------------------------------ */

START_TEST(t6_duplicate_permission)
{
    fx f;
    fx_open(&f);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT, f.ctl, NULL), FWX_E_DUP_NAME);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50001", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_UDP, 0, f.ctl, NULL), FWX_S_OK);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3333", "198.51.100.7:50000", &c), FWX_S_OK);
    /* Used up, so the same target may be allowed again. */
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    fwx_connection_close(c);
    fx_close(&f);
}
END_TEST

/* ---- T7: ports -------------------------------------------------------------------------------- */

START_TEST(t7_consecutive_aligned_ports)
{
    fx f;
    fx_open(&f);
    for (int round = 0; round < 8; round++) {
        IFWXConnection *c[4];
        struct sockaddr_storage px;
        TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 4, 0, "203.0.113.1:0", NULL, c, &px), FWX_S_OK);
        uint16_t low = ntohs(((struct sockaddr_in *)&px)->sin_port);
        ck_assert_uint_eq(low % 4, 0);
        ck_assert(low >= 40000 && low + 3 <= 40255);
        for (int i = 0; i < 4; i++) {
            ck_assert_uint_eq(conn_local_port(c[i]), low + i);
            IFWXConnection_Release(c[i]);
        }
    }
    ck_assert_uint_eq(fx_stats(&f).bound_ports, 32);
    IFWXConnection *c[17];
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 0, 0, NULL, NULL, c, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 17, 0, NULL, NULL, c, NULL), FWX_E_INVALIDARG);
    fx_close(&f);
}
END_TEST

START_TEST(t7_forced_port)
{
    fx f;
    fx_open(&f);
    IFWXConnection *c[2], *d[1];
    struct sockaddr_storage px;
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 1, 0, "203.0.113.1:45001", NULL, c, &px), FWX_S_OK);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&px)->sin_port), 45001); /* outside the range is fine when forced */
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6001", 1, 0, "203.0.113.1:45001", NULL, d, NULL), FWX_E_ADDRINUSE);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6001", 1, 0, "203.0.113.1:21", NULL, d, NULL), FWX_E_ADDRESS_NOT_ALLOWED);
    IFWXConnection_Release(c[0]);
    /* With two addresses a forced port is ignored: the core picks an aligned pair in range. */
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 2, 0, "203.0.113.1:45003", NULL, c, &px), FWX_S_OK);
    uint16_t low = ntohs(((struct sockaddr_in *)&px)->sin_port);
    ck_assert(low >= 40000 && low <= 40254 && low % 2 == 0);
    IFWXConnection_Release(c[0]);
    IFWXConnection_Release(c[1]);
    /* Catalog #4: the proxy address must be the gateway's. */
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 1, 0, "192.0.2.99:0", NULL, d, NULL), FWX_E_ADDRNOTAVAIL);
    fx_close(&f);
}
END_TEST

START_TEST(t7_port_range_exhaustion_is_clean)
{
    fx f;
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.port_min = 65528;
    o.port_max = 65535;
    fx_open_opts(&f, &o);
    IFWXConnection *c[8], *extra[2];
    for (int i = 0; i < 8; i++)
        TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 1, 0, NULL, NULL, &c[i], NULL), FWX_S_OK);
    /* Catalog #42: never wrap past 65535 to low ports; a clean error instead. */
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 1, 0, NULL, NULL, extra, NULL), FWX_E_NO_PORTS);
    ck_assert_uint_eq(fx_stats(&f).bound_ports, 8);
    IFWXConnection_Kill(c[3]);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 2, 0, NULL, NULL, extra, NULL), FWX_E_NO_PORTS);
    for (int i = 0; i < 8; i++)
        IFWXConnection_Release(c[i]);
    fx_close(&f);
}
END_TEST

/* ---- T8: SetClientAddress -------------------------------------------------------------------- */

START_TEST(t8_zero_client_address_set_once)
{
    fx f;
    fx_open(&f);
    IFWXConnection *c[1];
    char dst[64];
    TU_EXPECT_HR(bind_one(&f, "0.0.0.0:0", c, dst, sizeof dst), FWX_S_OK);
    IFWXConnection *a = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &a), FWX_E_ADDRESS_NOT_ALLOWED);
    struct sockaddr_storage bad = tu_addr("192.0.2.99:2000"), low = tu_addr("10.0.0.8:22"), good = tu_addr("10.0.0.8:2000");
    TU_EXPECT_HR(IFWXConnection_SetClientAddress(c[0], TU_SA(bad), tu_len(&bad)), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(IFWXConnection_SetClientAddress(c[0], TU_SA(low), tu_len(&low)), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(IFWXConnection_SetClientAddress(c[0], TU_SA(good), tu_len(&good)), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_SetClientAddress(c[0], TU_SA(good), tu_len(&good)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXConnection_SetClientAddress(f.ctl, TU_SA(good), tu_len(&good)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &a), FWX_S_OK);
    IFWXConnection_Release(a);
    IFWXConnection_Release(c[0]);
    fx_close(&f);
}
END_TEST

/* ---- T10: full proxy mode ---------------------------------------------------------------------- */

START_TEST(t10_proxy_mode_flag)
{
    fx f;
    fx_open(&f);
    IFWXConnection *pub = NULL, *c[1];
    struct sockaddr_storage remote = tu_addr("198.51.100.7:40123"), pubaddr = tu_addr("203.0.113.1:21");
    fwx_connection_params cp = {sizeof cp, fwx_AcceptedConnection, FWX_PROTOCOL_TCP, TU_SA(remote), tu_len(&remote),
                                TU_SA(pubaddr), tu_len(&pubaddr), NULL, FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(f.s, &cp, &pub), FWX_S_OK);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(pub, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:6000", 1, FWX_FLAG_PROXY_MODE, NULL, NULL, c, NULL), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c[0], &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION);
    ck_assert(flags & FWX_CONNECTION_LISTENING);
    IFWXConnection_Release(c[0]);
    fwx_connection_close(pub);
    fx_close(&f);
}
END_TEST

/* ---- T11: RetroactiveAllowBind ---------------------------------------------------------------- */

static IFWXConnection *client_bind(fx *f, const char *bound)
{
    struct sockaddr_storage b = tu_addr(bound);
    fwx_connection_params cp = {sizeof cp, fwx_Bind_Tcp, FWX_PROTOCOL_TCP, TU_SA(b), tu_len(&b), NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_connection_open(f->s, &cp, &c), FWX_S_OK);
    return c;
}

START_TEST(t11_retroactive_allow_bind)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage any = tu_addr("0.0.0.0:46000"), zero = tu_addr("203.0.113.1:0"),
                            other = tu_addr("203.0.113.1:46001");
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(zero), tu_len(&zero), &FWX_GUID_NULL, 0, NULL),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, NULL),
                 FWX_E_NOT_FOUND);
    IFWXConnection *bind = client_bind(&f, "203.0.113.1:46000");
    IFWXConnection *in = NULL;
    /* Until approved, arrivals are discarded; the bind itself stands. */
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", "203.0.113.1:46000", &in), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(other), tu_len(&other), &FWX_GUID_NULL, 0,
                                                  NULL),
                 FWX_E_NOT_FOUND);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL,
                                                  FWX_FLAG_BIDIRECTIONAL, NULL),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, NULL),
                 FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, NULL),
                 FWX_S_FALSE);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", "203.0.113.1:46000", &in), FWX_S_OK);
    fwx_connection_close(in);
    fwx_connection_close(bind);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, NULL),
                 FWX_E_NOT_FOUND);
    fx_close(&f);
}
END_TEST

/* T11 "terminating": a filter asks while the bind's ConnectionTerminating is being handled. */
static fwx_result rab_during_terminate(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    if (ev->EventType == fwx_ConnectionTerminating) {
        struct sockaddr_storage any = tu_addr("0.0.0.0:46000");
        fwx_result *out = ctl->arg;
        *out = IFWXSession_RetroactiveAllowBind(s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, NULL);
    }
    return FWX_S_OK;
}

START_TEST(t11_bind_terminating)
{
    fx f;
    fx_open(&f);
    /* Open the plugin first to script it: FilterInit reads the hooks at load. */
    void *h = NULL;
    tp_control *ctl = tu_plugin_map("tp_good", &h);
    fwx_result seen = FWX_S_OK;
    ctl->on_event = rab_during_terminate;
    ctl->arg = &seen;
    ctl->hooks = fwx_Bind_Tcp | fwxSourceNAT;
    TU_EXPECT_HR(fwx_firewall_load_plugin(f.fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    IFWXConnection *bind = client_bind(&f, "203.0.113.1:46000");
    fwx_connection_close(bind);
    TU_EXPECT_HR(seen, FWX_E_TERMINATING);
    dlclose(h);
    fx_close(&f);
}
END_TEST

/* T11 "terminating" after Kill: the bind is ending while its object is still held; once the
   last reference goes it is unknown. */
START_TEST(t11_bind_terminating_after_kill)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage any = tu_addr("0.0.0.0:46000");
    IFWXConnection *bind = client_bind(&f, "203.0.113.1:46000");
    TU_EXPECT_HR(IFWXConnection_Kill(bind), FWX_S_OK);
    TU_EXPECT_REF(bind, 1); /* only ours */
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, NULL),
                 FWX_E_TERMINATING);
    IFWXConnection *in = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", "203.0.113.1:46000", &in), FWX_E_NOT_FOUND);
    ck_assert_uint_eq(IFWXConnection_Release(bind), 0);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, NULL),
                 FWX_E_NOT_FOUND);
    fx_close(&f);
}
END_TEST

/* RetroactiveAllowBind's IP filter is the one in force: GetIpFilter reads a copy of it back. */
START_TEST(t11_retroactive_allow_bind_ip_filter)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage any = tu_addr("0.0.0.0:46000"), t = tu_addr("192.0.2.99");
    IFWXConnection *bind = client_bind(&f, "203.0.113.1:46000"), *in = NULL;
    IFWXIpFilter *ipf = NULL, *got = (IFWXIpFilter *)1;
    TU_EXPECT_HR(IFWXConnection_GetIpFilter(bind, &got), FWX_S_OK);
    ck_assert_ptr_null(got);
    TU_EXPECT_HR(IFWXFirewall_CreateIpFilter(fwx_firewall_iface(f.fw), &ipf), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(ipf, TU_SA(t), tu_len(&t), TU_SA(t), tu_len(&t)), FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(f.s, FWX_PROTOCOL_TCP, TU_SA(any), tu_len(&any), &FWX_GUID_NULL, 0, ipf),
                 FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_GetIpFilter(bind, &got), FWX_S_OK);
    ck_assert_ptr_nonnull(got);
    TU_EXPECT_HR(IFWXIpFilter_Compare(got, ipf), FWX_S_OK);
    ck_assert_uint_eq(IFWXIpFilter_Release(got), 0);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", "203.0.113.1:46000", &in), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "192.0.2.99:20", "203.0.113.1:46000", &in), FWX_S_OK);
    fwx_connection_close(in);
    ck_assert_uint_eq(IFWXIpFilter_Release(ipf), 0);
    fwx_connection_close(bind);
    fx_close(&f);
}
END_TEST

/* T11/T21: RetroactiveAllowBind decides by the policy. An explicit session with nothing but its
   bind (as a SOCKS BIND is): a protocol no rule allows, or one the policy does not know, is
   refused; an allowed one is approved, and each arrival is then decided with its peer. */
START_TEST(t11_retroactive_allow_bind_policy)
{
    fx f;
    fx_open(&f);
    const char *cfg = "networks = { internal = { ranges = [ \"10.0.0.0/8\" ]; }; };\n"
                      "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
                      "protocols = ( { name = \"ctl\"; guid = \"{11111111-0000-0000-0000-000000000021}\";"
                      " protocol = \"tcp\"; port = 21; },\n"
                      "  { name = \"nobody\"; guid = \"{11111111-0000-0000-0000-000000000099}\";"
                      " protocol = \"tcp\"; port = 99; } );\n"
                      "address_sets = { partners = [ \"198.51.100.0/24\" ]; };\n"
                      "rules = ( { name = \"ctl to partners\"; action = \"allow\"; from = [ \"internal\" ];"
                      " to = [ \"partners\" ]; protocols = [ \"ctl\" ]; } );\n";
    fwx_policy *p = NULL;
    fwx_config_error err;
    fwx_result hr = fwx_policy_load_string(cfg, "rab.cfg", &p, &err);
    ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s: %s", err.file, err.line, err.key, err.message);
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, p), FWX_S_OK);
    struct sockaddr_storage c = tu_addr("10.0.0.8"), b = tu_addr("203.0.113.1:46000");
    fwx_session_params sp = {sizeof sp, fwxSourceWSP, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *ws = NULL;
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &ws), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Bind_Tcp, FWX_PROTOCOL_TCP, TU_SA(b), tu_len(&b), NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *bind = NULL, *in = NULL;
    TU_EXPECT_HR(fwx_connection_open(ws, &cp, &bind), FWX_S_OK);
    fwx_guid ctl = FWX_GUID_INIT(0x11, 0x11, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21);
    fwx_guid nobody = FWX_GUID_INIT(0x11, 0x11, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99);
    fwx_guid madeup = FWX_GUID_INIT(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(ws, FWX_PROTOCOL_TCP, TU_SA(b), tu_len(&b), &nobody, 0, NULL),
                 FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_ptr_nonnull(strstr(f.lastlog, "RetroactiveAllowBind"));
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(ws, FWX_PROTOCOL_TCP, TU_SA(b), tu_len(&b), &madeup, 0, NULL),
                 FWX_E_PROTOCOL_RULES_DENIED);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(ws, FWX_PROTOCOL_TCP, TU_SA(b), tu_len(&b), &FWX_GUID_NULL, 0, NULL),
                 FWX_E_PROTOCOL_RULES_DENIED);
    /* Refused approvals leave the bind discarding. */
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", "203.0.113.1:46000", &in), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(IFWXSession_RetroactiveAllowBind(ws, FWX_PROTOCOL_TCP, TU_SA(b), tu_len(&b), &ctl, 0, NULL), FWX_S_OK);
    /* Approved for "ctl", which the policy allows to partners only. */
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "192.0.2.99:20", "203.0.113.1:46000", &in),
                 FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    ck_assert_ptr_nonnull(strstr(f.lastlog, "refused by the policy"));
    ck_assert_ptr_null(in);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", "203.0.113.1:46000", &in), FWX_S_OK);
    fwx_connection_close(in);
    /* A new policy without the rule: the next arrival is refused. */
    TU_EXPECT_HR(fwx_policy_load_string("protocols = ( { name = \"ctl\"; guid = \"{11111111-0000-0000-0000-000000000021}\";"
                                        " protocol = \"tcp\"; port = 21; } );\n",
                                        "rab2.cfg", &p, &err),
                 FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, p), FWX_S_OK);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:21", "203.0.113.1:46000", &in), FWX_E_PROTOCOL_RULES_DENIED);
    fwx_connection_close(bind);
    fwx_session_close(ws);
    IFWXSession_Release(ws);
    fx_close(&f);
}
END_TEST

/* ---- catalog: forbidden targets, whatever the flags ------------------------------------------ */

START_TEST(forbidden_targets_refused)
{
    fx f;
    fx_open(&f);
    static const char *bad[] = {
        "198.51.100.7:0",     "198.51.100.7:22",   "198.51.100.7:1023", "203.0.113.1:8080", "10.0.0.1:8080",
        "127.0.0.1:8080",     "0.0.0.0:8080",      "255.255.255.255:8080", "224.0.0.1:8080", "[::ffff:127.0.0.1]:8080",
        "[::1]:8080",         "[ff02::1]:8080",    "[::ffff:203.0.113.1]:8080",
        /* 0.0.0.0/8 reaches the host itself on Linux, not only 0.0.0.0 */
        "0.0.0.7:8080",       "0.1.2.3:8080",      "[::ffff:0.9.9.9]:8080",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int before = f.n_refused_logs;
        fwx_result hr = afc(&f, bad[i], FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_ADDRESSES_ALL, f.ctl, NULL);
        ck_assert_msg(hr == FWX_E_ADDRESS_NOT_ALLOWED, "AllowFutureConnect to %s: %s", bad[i], fwx_err_name(hr));
        ck_assert_int_eq(f.n_refused_logs, before + 1);
    }
    /* The same targets as client addresses of BindForClient (PORT 10,0,0,8,0,22 and friends). */
    static const char *badc[] = {"10.0.0.8:22", "10.0.0.8:0", "10.0.0.1:8080", "127.0.0.1:8080", "224.0.0.1:8080"};
    for (size_t i = 0; i < sizeof badc / sizeof badc[0]; i++) {
        IFWXConnection *c[1];
        fwx_result hr = bfc(&f, badc[i], 1, FWX_FLAG_ALLOW_ADDRESSES_ALL, NULL, NULL, c, NULL);
        ck_assert_msg(hr == FWX_E_ADDRESS_NOT_ALLOWED, "BindForClient for %s: %s", badc[i], fwx_err_name(hr));
    }
    ck_assert_uint_eq(fx_stats(&f).permissions, 0);
    ck_assert_uint_eq(fx_stats(&f).bound_ports, 0);
    fx_close(&f);
}
END_TEST

/* Catalog #23: the data connection is accepted only from the expected peer. */
START_TEST(bound_port_only_from_expected_peer)
{
    fx f;
    fx_open(&f);
    IFWXConnection *c[1], *d[1], *in = NULL;
    struct sockaddr_storage px, px2;
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, 0, NULL, NULL, c, &px), FWX_S_OK);
    char dst[64];
    gw_dst(&px, dst, sizeof dst);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "192.0.2.99:5555", dst, &in), FWX_E_ADDRESS_NOT_ALLOWED);
    ck_assert_ptr_nonnull(strstr(f.lastlog, "192.0.2.99"));
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &in), FWX_S_OK);
    IFWXConnection_Release(in);
    /* An explicit IP filter replaces the default scope. */
    IFWXIpFilter *ipf = NULL;
    TU_EXPECT_HR(IFWXFirewall_CreateIpFilter(fwx_firewall_iface(f.fw), &ipf), FWX_S_OK);
    struct sockaddr_storage t = tu_addr("192.0.2.99");
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(ipf, TU_SA(t), tu_len(&t), TU_SA(t), tu_len(&t)), FWX_S_OK);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2001", 1, 0, NULL, ipf, d, &px2), FWX_S_OK);
    TU_EXPECT_REF(ipf, 1); /* BindForClient copied it */
    gw_dst(&px2, dst, sizeof dst);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &in), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "192.0.2.99:20", dst, &in), FWX_S_OK);
    IFWXConnection_Release(in);
    IFWXIpFilter_Release(ipf);
    IFWXConnection_Release(c[0]);
    IFWXConnection_Release(d[0]);
    fx_close(&f);
}
END_TEST

/* Catalog #41: caps on outstanding permissions and ports. */
START_TEST(caps_per_session)
{
    fx f;
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.max_permissions_per_session = 4;
    o.max_ports_per_session = 2;
    fx_open_opts(&f, &o);
    char t[64];
    for (int i = 0; i < 4; i++) {
        snprintf(t, sizeof t, "198.51.100.7:%d", 50000 + i);
        TU_EXPECT_HR(afc(&f, t, FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    }
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50100", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_E_QUOTA_EXCEEDED);
    IFWXConnection *c[3];
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 2, 0, NULL, NULL, c, NULL), FWX_S_OK);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, 0, NULL, NULL, &c[2], NULL), FWX_E_QUOTA_EXCEEDED);
    IFWXConnection_Release(c[0]);
    IFWXConnection_Release(c[1]);
    fx_close(&f);
}
END_TEST

/* ---- RedirectConnections ---------------------------------------------------------------------- */

/* A redirect port is opened on the gateway address the connecting party reaches.
   The fixture's gateway has 203.0.113.1 outside and 10.0.0.1 inside; a remote client reaches a
   server published inside. The server makes the active-mode data connection, so its redirect
   port must be on 10.0.0.1 (the upstream connection's local address), never the first
   configured address (203.0.113.1, the client's side). */
static void published_redirect_case(fx *f, const char *server, const char *upstream_local, const char *want_ip)
{
    struct sockaddr_storage rc = tu_addr("198.51.100.20"), remote = tu_addr("198.51.100.20:40000"),
                            pub = tu_addr("203.0.113.1:21"), srv = tu_addr(server);
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(rc), tu_len(&rc), NULL, 0, NULL};
    IFWXSession *s = NULL;
    IFWXConnection *ctl = NULL, *in = NULL;
    TU_EXPECT_HR(fwx_session_open(f->fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_AcceptedConnection, FWX_PROTOCOL_TCP, TU_SA(remote), tu_len(&remote),
                                TU_SA(pub), tu_len(&pub), NULL, FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION,
                                tu_len(&srv), TU_SA(srv)};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);
    /* The backend connected to the server from this address (its getsockname). */
    struct sockaddr_storage up = tu_addr(upstream_local);
    fwx__conn_set_upstream_local(ctl, TU_SA(up));
    /* That is the internal side: the external socket name stays the address the client reached. */
    struct sockaddr_storage ext;
    uint32_t elen = sizeof ext;
    TU_EXPECT_HR(IFWXConnection_GetExternalSocketName(ctl, TU_SAM(ext), &elen), FWX_S_OK);
    ck_assert_uint_eq(ntohl(((struct sockaddr_in *)&ext)->sin_addr.s_addr), 0xcb007101); /* 203.0.113.1 */
    struct sockaddr_storage port = tu_addr("198.51.100.20:40002"), ia;
    const struct sockaddr *tp[1] = {TU_SA(port)};
    uint32_t ialen = sizeof ia;
    IFWXFirewallAction *act[1] = {NULL};
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&port), 1, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP,
                                                 FWX_FLAG_TIMEOUT, &FWX_GUID_NULL, NULL, NULL, act),
                 FWX_S_OK);
    char ip[INET6_ADDRSTRLEN], dst[96], src[96];
    int fam = ia.ss_family;
    const void *a = fam == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ia)->sin6_addr
                                     : (const void *)&((struct sockaddr_in *)&ia)->sin_addr;
    ck_assert_ptr_nonnull(inet_ntop(fam, a, ip, sizeof ip));
    ck_assert_str_eq(ip, want_ip);
    ck_assert_uint_eq(ialen, fam == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    uint16_t p = sa_port_of(&ia);
    ck_assert(p >= 40000 && p <= 40255);
    /* The published server connects there; the gateway goes on to the client's port. */
    snprintf(dst, sizeof dst, fam == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, p);
    struct sockaddr_storage sv = tu_addr(server);
    char sip[INET6_ADDRSTRLEN];
    inet_ntop(sv.ss_family,
              sv.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&sv)->sin6_addr
                                       : (const void *)&((struct sockaddr_in *)&sv)->sin_addr,
              sip, sizeof sip);
    snprintf(src, sizeof src, sv.ss_family == AF_INET6 ? "[%s]:20" : "%s:20", sip);
    TU_EXPECT_HR(admit(f, FWX_PROTOCOL_TCP, src, dst, &in), FWX_S_OK);
    struct sockaddr_storage peer;
    uint32_t plen = sizeof peer;
    TU_EXPECT_HR(IFWXConnection_GetExternalPeerName(in, TU_SAM(peer), &plen), FWX_S_OK);
    ck_assert_uint_eq(sa_port_of(&peer), 40002); /* onward to the client's PORT */
    fwx_connection_close(in);
    IFWXFirewallAction_Release(act[0]);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
}

START_TEST(redirect_address_as_the_party_sees_it)
{
    fx f;
    fx_open(&f);
    published_redirect_case(&f, "10.0.0.5:21", "10.0.0.1:45000", "10.0.0.1");
    /* Across families: an IPv4 client, an IPv6-only server; the port is on the IPv6 side. */
    published_redirect_case(&f, "[fd00::5]:21", "[fd00::1]:45001", "fd00::1");
    /* A client's outbound connection: the upstream is the external side, and an address the
       host already gave (SetSocketName) is kept. */
    struct sockaddr_storage ext, other = tu_addr("203.0.113.9:1234");
    fwx__conn_set_upstream_local(f.ctl, TU_SA(other));
    uint32_t elen = sizeof ext;
    TU_EXPECT_HR(IFWXConnection_GetExternalSocketName(f.ctl, TU_SAM(ext), &elen), FWX_S_OK);
    ck_assert_uint_eq(sa_port_of(&ext), 41000);
    fx_close(&f);
}
END_TEST

START_TEST(redirect_connections)
{
    fx f;
    fx_open(&f);
    struct sockaddr_storage t[2] = {tu_addr("198.51.100.7:50000"), tu_addr("198.51.100.7:50001")}, ia;
    const struct sockaddr *tp[2] = {TU_SA(t[0]), TU_SA(t[1])};
    IFWXFirewallAction *acts[2] = {0};
    uint32_t ialen = 4;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(f.s, tp, tu_len(&t[0]), 2, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP,
                                                 0, &FWX_GUID_NULL, NULL, NULL, acts),
                 FWX_E_INVALIDARG);
    ck_assert_uint_eq(ialen, sizeof(struct sockaddr_in));
    ialen = sizeof ia;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(f.s, tp, tu_len(&t[0]), 2, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP,
                                                 0, &FWX_GUID_NULL, NULL, NULL, acts),
                 FWX_S_OK);
    ck_assert_ptr_nonnull(acts[0]);
    ck_assert_ptr_nonnull(acts[1]);
    char ip[64];
    ck_assert_str_eq(inet_ntop(AF_INET, &((struct sockaddr_in *)&ia)->sin_addr, ip, sizeof ip), "10.0.0.1");
    uint16_t low = ntohs(((struct sockaddr_in *)&ia)->sin_port);
    ck_assert(low >= 40000 && low % 2 == 0);
    char d0[64], d1[64];
    snprintf(d0, sizeof d0, "10.0.0.1:%u", low);
    snprintf(d1, sizeof d1, "10.0.0.1:%u", low + 1);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.9:3000", d0, &c), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3000", d0, &c), FWX_S_OK);
    struct sockaddr_storage peer;
    uint32_t len = sizeof peer;
    TU_EXPECT_HR(IFWXConnection_GetExternalPeerName(c, TU_SAM(peer), &len), FWX_S_OK);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&peer)->sin_port), 50000);
    fwx_connection_close(c);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3000", d0, &c), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(acts[0]), FWX_S_FALSE);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(acts[1]), FWX_S_OK);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3000", d1, &c), FWX_E_NOT_FOUND);
    IFWXFirewallAction_Release(acts[0]);
    IFWXFirewallAction_Release(acts[1]);
    /* Catalog #51: never to the gateway itself; and never to someone who is not the peer. */
    struct sockaddr_storage self = tu_addr("203.0.113.1:8021"), third = tu_addr("192.0.2.99:50000");
    const struct sockaddr *sp[1] = {TU_SA(self)}, *tp3[1] = {TU_SA(third)};
    ialen = sizeof ia;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(f.s, sp, tu_len(&self), 1, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP,
                                                 0, &FWX_GUID_NULL, NULL, NULL, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(IFWXSession_RedirectConnections(f.s, tp3, tu_len(&third), 1, TU_SAM(ia), &ialen, NULL, 0,
                                                 FWX_PROTOCOL_TCP, 0, &FWX_GUID_NULL, NULL, NULL, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    fx_close(&f);
}
END_TEST

/* ---- T9: kernel or user mode; SetDataFilterFactory --------------------------------------------- */

typedef struct tdf {
    IFWXDataFilter iface;
    atomic_uint refs;
    int *detached;
} tdf;
static fwx_result df_qi(IFWXDataFilter *This, const fwx_guid *riid, void **ppv)
{
    (void)riid;
    *ppv = NULL;
    (void)This;
    return FWX_E_NOINTERFACE;
}
static uint32_t df_addref(IFWXDataFilter *This) { return atomic_fetch_add(&((tdf *)(void *)This)->refs, 1) + 1; }
static uint32_t df_release(IFWXDataFilter *This)
{
    tdf *d = (tdf *)(void *)This;
    uint32_t n = atomic_fetch_sub(&d->refs, 1) - 1;
    if (n == 0)
        free(d);
    return n;
}
static fwx_result df_setsockets(IFWXDataFilter *This, IFWXSocket *i, IFWXSocket *e, IFWXConnection *c, IUnknown *x)
{
    (void)This, (void)i, (void)e, (void)c, (void)x;
    return FWX_S_OK;
}
static fwx_result df_detach(IFWXDataFilter *This)
{
    (*((tdf *)(void *)This)->detached)++;
    return FWX_S_OK;
}
static const IFWXDataFilterVtbl tdf_vtbl = {df_qi, df_addref, df_release, df_setsockets, df_detach};

typedef struct tfactory {
    IClassFactory iface;
    atomic_uint refs;
    int created, detached;
} tfactory;
static fwx_result cf_qi(IClassFactory *This, const fwx_guid *riid, void **ppv)
{
    (void)This, (void)riid;
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t cf_addref(IClassFactory *This) { return atomic_fetch_add(&((tfactory *)(void *)This)->refs, 1) + 1; }
static uint32_t cf_release(IClassFactory *This) { return atomic_fetch_sub(&((tfactory *)(void *)This)->refs, 1) - 1; }
static fwx_result cf_create(IClassFactory *This, IUnknown *outer, const fwx_guid *riid, void **ppv)
{
    tfactory *f = (tfactory *)(void *)This;
    ck_assert_ptr_null(outer);
    ck_assert(fwx_guid_equal(riid, &IID_IFWXDataFilter));
    tdf *d = calloc(1, sizeof *d);
    d->iface.lpVtbl = &tdf_vtbl;
    atomic_init(&d->refs, 1);
    d->detached = &f->detached;
    f->created++;
    *ppv = &d->iface;
    return FWX_S_OK;
}
static fwx_result cf_lock(IClassFactory *This, int32_t l)
{
    (void)This, (void)l;
    return FWX_S_OK;
}
static const IClassFactoryVtbl tfactory_vtbl = {cf_qi, cf_addref, cf_release, cf_create, cf_lock};

START_TEST(t9_kernel_mode_decision_and_factories)
{
    fx f;
    fx_open(&f);
    /* No backend here: the test is the host that would relay, data filters included. */
    TU_EXPECT_HR(fwx_firewall_set_host_relay(f.fw, 1), FWX_S_OK);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(f.ctl, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_KERNEL_MODE); /* no filter, no data filter */
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50001", FWX_PROTOCOL_TCP, FWX_FLAG_NO_KERNEL_MODE, f.ctl, NULL), FWX_S_OK);
    IFWXConnection *k = NULL, *u = NULL, *d = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3000", "198.51.100.7:50000", &k), FWX_S_OK);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3001", "198.51.100.7:50001", &u), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(k, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_KERNEL_MODE);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(u, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_KERNEL_MODE));

    tfactory fac = {{&tfactory_vtbl}, 1, 0, 0};
    struct sockaddr_storage fa = tu_addr("198.51.100.7:0"), bad = tu_addr("198.51.100.7:0");
    IFWXFirewallAction *act = NULL;
    TU_EXPECT_HR(IFWXSession_SetDataFilterFactory(f.s, fwx_Listen, TU_SA(bad), tu_len(&bad), &fac.iface, fwx_dfpc_Middle,
                                                  NULL, 0, NULL),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXSession_SetDataFilterFactory(f.s, fwx_Connect_Tcp, TU_SA(fa), tu_len(&fa), &fac.iface, fwx_dfpc_Middle,
                                                  NULL, FWX_FLAG_TIMEOUT, NULL),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXSession_SetDataFilterFactory(f.s, fwx_Connect_Tcp, TU_SA(fa), tu_len(&fa), &fac.iface, fwx_dfpc_Middle,
                                                  NULL, 0, &act),
                 FWX_S_OK);
    ck_assert_uint_eq(atomic_load(&fac.refs), 2); /* the core keeps one until the action ends */
    ck_assert_uint_eq(fx_stats(&f).factories, 1);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50002", FWX_PROTOCOL_TCP, 0, f.ctl, NULL), FWX_S_OK);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3002", "198.51.100.7:50002", &d), FWX_S_OK);
    ck_assert_int_eq(fac.created, 1);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(d, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_KERNEL_MODE));
    fwx_connection_close(d);
    ck_assert_int_eq(fac.detached, 1);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act), FWX_S_OK);
    ck_assert_uint_eq(atomic_load(&fac.refs), 1);
    IFWXFirewallAction_Release(act);
    fwx_connection_close(k);
    fwx_connection_close(u);
    fx_close(&f);
}
END_TEST

/* ---- permissions belong to their session; ADDRESS_BASED lends them ------------------------------ */

static IFWXSession *wsp_session(fx *f, const char *client)
{
    struct sockaddr_storage c = tu_addr(client);
    fwx_session_params sp = {sizeof sp, fwxSourceWSP, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(f->fw, &sp, &s), FWX_S_OK);
    return s;
}

static fwx_result admit_in(fx *f, IFWXSession *s, int32_t proto, const char *src, const char *dst, IFWXConnection **out)
{
    struct sockaddr_storage a = tu_addr(src), d = tu_addr(dst);
    fwx_flow fl = {sizeof fl, proto, TU_SA(a), tu_len(&a), TU_SA(d), tu_len(&d)};
    return fwx_firewall_admit_in_session(f->fw, s, &fl, out);
}

static fwx_result afc_in(IFWXSession *s, const char *target, uint32_t flags, IFWXFirewallAction **act)
{
    struct sockaddr_storage t = tu_addr(target);
    return IFWXSession_AllowFutureConnect(s, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP,
                                          flags | FWX_FLAG_ALLOW_ADDRESSES_ALL, &FWX_GUID_NULL, NULL, NULL, NULL, act);
}

START_TEST(permissions_belong_to_their_session)
{
    fx f;
    fx_open(&f); /* f.s: the NAT session of 10.0.0.8 */
    IFWXSession *a = wsp_session(&f, "10.0.0.8"), *b = wsp_session(&f, "10.0.0.8");
    IFWXConnection *in = NULL;
    IFWXFirewallAction *act = NULL, *act2 = NULL;
    /* Not address-based: only session a's own flows. */
    TU_EXPECT_HR(afc_in(a, "198.51.100.7:50000", 0, &act), FWX_S_OK);
    TU_EXPECT_HR(admit_in(&f, b, FWX_PROTOCOL_TCP, "10.0.0.8:3000", "198.51.100.7:50000", &in), FWX_E_NOT_FOUND);
    ck_assert_ptr_null(in);
    ck_assert_ptr_nonnull(strstr(f.lastlog, "is not address-based"));
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3000", "198.51.100.7:50000", &in), FWX_E_NOT_FOUND); /* transparent */
    TU_EXPECT_HR(admit_in(&f, f.s, FWX_PROTOCOL_TCP, "10.0.0.8:3000", "198.51.100.7:50000", &in), FWX_E_NOT_FOUND);
    ck_assert_uint_eq(fx_stats(&f).permissions, 1);
    TU_EXPECT_HR(admit_in(&f, a, FWX_PROTOCOL_TCP, "10.0.0.8:3000", "198.51.100.7:50000", &in), FWX_S_OK);
    IFWXSession *owner = NULL;
    TU_EXPECT_HR(IFWXConnection_GetSession(in, &owner), FWX_S_OK);
    ck_assert_ptr_eq(owner, a);
    IFWXSession_Release(owner);
    fwx_connection_close(in);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act), FWX_S_FALSE); /* used up by a */
    IFWXFirewallAction_Release(act);
    /* A NAT session's permission serves transparent flows of its client, not explicit sessions. */
    TU_EXPECT_HR(afc_in(f.s, "198.51.100.7:50001", 0, NULL), FWX_S_OK);
    TU_EXPECT_HR(admit_in(&f, b, FWX_PROTOCOL_TCP, "10.0.0.8:3001", "198.51.100.7:50001", &in), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3001", "198.51.100.7:50001", &in), FWX_S_OK);
    fwx_connection_close(in);
    /* Address-based: any session of the address, and transparent flows; another address never. */
    TU_EXPECT_HR(afc_in(a, "198.51.100.7:50002", FWX_FLAG_ADDRESS_BASED | FWX_FLAG_ALLOW_MULTIPLE, &act), FWX_S_OK);
    TU_EXPECT_HR(admit_in(&f, b, FWX_PROTOCOL_TCP, "10.0.0.8:3002", "198.51.100.7:50002", &in), FWX_S_OK);
    fwx_connection_close(in);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3003", "198.51.100.7:50002", &in), FWX_S_OK);
    fwx_connection_close(in);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.9:3003", "198.51.100.7:50002", &in), FWX_E_NOT_FOUND);
    /* A session's own permission goes before another's address-based one for the same target. */
    TU_EXPECT_HR(afc_in(b, "198.51.100.7:50002", 0, &act2), FWX_S_OK);
    TU_EXPECT_HR(admit_in(&f, b, FWX_PROTOCOL_TCP, "10.0.0.8:3004", "198.51.100.7:50002", &in), FWX_S_OK);
    fwx_connection_close(in);
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act2), FWX_S_FALSE); /* b's own, used up */
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act), FWX_S_OK);     /* a's address-based one was left */
    IFWXFirewallAction_Release(act);
    IFWXFirewallAction_Release(act2);
    /* A port is taken only in the session that set it up. */
    IFWXConnection *c[1];
    struct sockaddr_storage px;
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 1, 0, NULL, NULL, c, &px), FWX_S_OK);
    char dst[64];
    gw_dst(&px, dst, sizeof dst);
    TU_EXPECT_HR(admit_in(&f, a, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &in), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(admit_in(&f, f.s, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &in), FWX_S_OK);
    IFWXConnection_Release(in);
    fwx_connection_close(c[0]);
    /* Bad sessions. */
    fx g;
    fx_open(&g);
    TU_EXPECT_HR(admit_in(&f, g.s, FWX_PROTOCOL_TCP, "10.0.0.8:3005", "198.51.100.7:50003", &in), FWX_E_INVALIDARG);
    fx_close(&g);
    fwx_session_close(b);
    TU_EXPECT_HR(admit_in(&f, b, FWX_PROTOCOL_TCP, "10.0.0.8:3005", "198.51.100.7:50003", &in), FWX_E_TERMINATING);
    fwx_session_close(a);
    IFWXSession_Release(a);
    IFWXSession_Release(b);
    fx_close(&f);
}
END_TEST

/* SetDataFilterFactory with ADDRESS_BASED applies to the other sessions of the client's address;
   without it, to its own session only. */
START_TEST(address_based_factory)
{
    fx f;
    fx_open(&f);
    /* No backend here: the test is the host that would relay, data filters included. */
    TU_EXPECT_HR(fwx_firewall_set_host_relay(f.fw, 1), FWX_S_OK);
    IFWXSession *a = wsp_session(&f, "10.0.0.8"), *b = wsp_session(&f, "10.0.0.8"), *z = wsp_session(&f, "10.0.0.9");
    tfactory own = {{&tfactory_vtbl}, 1, 0, 0}, lent = {{&tfactory_vtbl}, 1, 0, 0};
    struct sockaddr_storage fa = tu_addr("198.51.100.7:0"), fb = tu_addr("198.51.100.8:0");
    TU_EXPECT_HR(IFWXSession_SetDataFilterFactory(a, fwx_Connect_Tcp, TU_SA(fa), tu_len(&fa), &own.iface, fwx_dfpc_Middle,
                                                  NULL, 0, NULL),
                 FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_SetDataFilterFactory(a, fwx_Connect_Tcp, TU_SA(fb), tu_len(&fb), &lent.iface, fwx_dfpc_Middle,
                                                  NULL, FWX_FLAG_ADDRESS_BASED, NULL),
                 FWX_S_OK);
    struct sockaddr_storage s7 = tu_addr("198.51.100.7:80"), s8 = tu_addr("198.51.100.8:80");
    fwx_connection_params p7 = {sizeof p7, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(s7), tu_len(&s7), NULL, 0, NULL, 0, 0, NULL};
    fwx_connection_params p8 = p7;
    p8.external_peer = TU_SA(s8);
    IFWXConnection *c = NULL;
    uint32_t flags = 0;
    TU_EXPECT_HR(fwx_connection_open(b, &p7, &c), FWX_S_OK); /* a's own factory: not for b */
    ck_assert_int_eq(own.created, 0);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_KERNEL_MODE);
    fwx_connection_close(c);
    TU_EXPECT_HR(fwx_connection_open(b, &p8, &c), FWX_S_OK); /* a's address-based one: for b too */
    ck_assert_int_eq(lent.created, 1);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_KERNEL_MODE));
    fwx_connection_close(c);
    ck_assert_int_eq(lent.detached, 1);
    TU_EXPECT_HR(fwx_connection_open(z, &p8, &c), FWX_S_OK); /* another address: no */
    ck_assert_int_eq(lent.created, 1);
    fwx_connection_close(c);
    TU_EXPECT_HR(fwx_connection_open(a, &p7, &c), FWX_S_OK);
    ck_assert_int_eq(own.created, 1);
    fwx_connection_close(c);
    /* When a ends, its factories go, lent ones included. */
    fwx_session_close(a);
    ck_assert_uint_eq(fx_stats(&f).factories, 0);
    TU_EXPECT_HR(fwx_connection_open(b, &p8, &c), FWX_S_OK);
    ck_assert_int_eq(lent.created, 1);
    fwx_connection_close(c);
    ck_assert_uint_eq(atomic_load(&lent.refs), 1);
    IFWXSession *all[3] = {a, b, z};
    for (int i = 0; i < 3; i++) {
        fwx_session_close(all[i]);
        IFWXSession_Release(all[i]);
    }
    fx_close(&f);
}
END_TEST

/* ---- T15: EstablishedConnection only to the filter that asked --------------------------------- */

typedef struct tctx {
    IUnknown iface;
    atomic_uint refs;
} tctx;
static fwx_result ctx_qi(IUnknown *This, const fwx_guid *riid, void **ppv)
{
    (void)This, (void)riid;
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t ctx_addref(IUnknown *This) { return atomic_fetch_add(&((tctx *)(void *)This)->refs, 1) + 1; }
static uint32_t ctx_release(IUnknown *This) { return atomic_fetch_sub(&((tctx *)(void *)This)->refs, 1) - 1; }
static const IUnknownVtbl tctx_vtbl = {ctx_qi, ctx_addref, ctx_release};

static fwx_result afc_from_handler(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    if (ev->EventType != fwx_Connect_Tcp || ev->Parameters.Connect.IsSecondary)
        return FWX_S_OK;
    struct sockaddr_storage t = tu_addr("198.51.100.7:50000");
    return IFWXSession_AllowFutureConnect(s, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP, 0, &FWX_GUID_NULL, sf,
                                          (IUnknown *)ctl->arg, ev->Parameters.Connect.piConnection, NULL);
}

START_TEST(t15_established_only_to_asker)
{
    uv_loop_t loop;
    fwx_firewall *fw;
    uv_loop_init(&loop);
    TU_EXPECT_HR(fwx_firewall_new(&loop, NULL, &fw), FWX_S_OK);
    void *h1 = dlopen(tu_plugin_path("tp_good"), RTLD_NOW | RTLD_LOCAL);
    void *h2 = dlopen(tu_plugin_path("tp_good2"), RTLD_NOW | RTLD_LOCAL);
    tp_control *asker = dlsym(h1, "fwx_test_control"), *other = dlsym(h2, "fwx_test_control");
    tctx ctx = {{&tctx_vtbl}, 1};
    asker->hooks = fwx_Connect_Tcp | fwxSourceNAT;
    asker->on_event = afc_from_handler;
    asker->arg = &ctx.iface;
    /* The other filter hooks everything, secondary connections included, and still must not hear it. */
    other->hooks = FWX_EVENT_TYPE_MASK | FWX_ALL_SOURCES | fwxAssociatedProtocolsAllConnections;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good2"), NULL), FWX_S_OK);

    struct sockaddr_storage c = tu_addr("10.0.0.8"), srv = tu_addr("198.51.100.7:21");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *ctl = NULL, *data = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);
    ck_assert_uint_eq(atomic_load(&ctx.refs), 2); /* the permission keeps the context */
    struct sockaddr_storage src = tu_addr("10.0.0.8:3000"), dst = tu_addr("198.51.100.7:50000");
    fwx_flow fl = {sizeof fl, FWX_PROTOCOL_TCP, TU_SA(src), tu_len(&src), TU_SA(dst), tu_len(&dst)};
    TU_EXPECT_HR(fwx_firewall_admit(fw, &fl, &data), FWX_S_OK);
    ck_assert_int_eq(asker->n_established, 1);
    ck_assert_ptr_eq(asker->last_established_ctx, &ctx.iface);
    ck_assert_ptr_eq(asker->last_established_conn, data);
    ck_assert_int_eq(other->n_established, 0);
    ck_assert_int_gt(other->n_events, 0); /* it did hear the connect events */
    ck_assert_uint_eq(atomic_load(&ctx.refs), 1); /* used up: the context was released */
    fwx_connection_close(data);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    fwx_firewall_close(fw, NULL, NULL);
    tu_loop_close_clean(&loop);
    dlclose(h1);
    dlclose(h2);
}
END_TEST

/* Session end withdraws every grant; nothing is left open (catalog #25). */
START_TEST(session_end_withdraws_everything)
{
    fx f;
    fx_open(&f);
    IFWXConnection *c[2];
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_MULTIPLE, f.ctl, NULL), FWX_S_OK);
    TU_EXPECT_HR(bfc(&f, "10.0.0.8:2000", 2, 0, NULL, NULL, c, NULL), FWX_S_OK);
    fwx_firewall_stats st = fx_stats(&f);
    ck_assert_uint_eq(st.permissions, 1);
    ck_assert_uint_eq(st.bound_ports, 2);
    TU_EXPECT_HR(fwx_session_close(f.s), FWX_S_OK);
    TU_EXPECT_HR(fwx_session_close(f.s), FWX_S_FALSE);
    st = fx_stats(&f);
    ck_assert_uint_eq(st.permissions, 0);
    ck_assert_uint_eq(st.bound_ports, 0);
    ck_assert_uint_eq(st.sessions, 0);
    IFWXConnection *in = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "10.0.0.8:3000", "198.51.100.7:50000", &in), FWX_E_NOT_FOUND);
    TU_EXPECT_REF(c[0], 1); /* the session let go of it */
    IFWXConnection_Release(c[0]);
    IFWXConnection_Release(c[1]);
    fx_close(&f);
}
END_TEST

/* fwx_firewall_list reports what fwxctl shows. */
typedef struct seen {
    int sessions, connections, grants, plugins;
    int64_t expires;
    char grant_name[32];
    uint64_t bytes_in;
} seen;

static void count_cb(void *arg, const fwx_object_info *i)
{
    seen *s = arg;
    ck_assert_uint_eq(i->struct_size, sizeof *i);
    switch (i->kind) {
    case FWX_OBJECT_SESSION:
        s->sessions++;
        ck_assert_str_eq(i->name, "nat");
        break;
    case FWX_OBJECT_CONNECTION:
        s->connections++;
        s->bytes_in += i->bytes_in;
        break;
    case FWX_OBJECT_GRANT:
        s->grants++;
        s->expires = i->expires_in_ms;
        snprintf(s->grant_name, sizeof s->grant_name, "%s", i->name);
        break;
    default:
        s->plugins++;
    }
}

START_TEST(listing)
{
    fx f;
    fx_open(&f);
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT, f.ctl, NULL), FWX_S_OK);
    fwx_connection_count_bytes(f.ctl, 1000, 20);
    seen s = {0};
    TU_EXPECT_HR(fwx_firewall_list(f.fw, FWX_OBJECT_SESSION | FWX_OBJECT_CONNECTION | FWX_OBJECT_GRANT, count_cb, &s),
                 FWX_S_OK);
    ck_assert_int_eq(s.sessions, 1);
    ck_assert_int_eq(s.connections, 1);
    ck_assert_int_eq(s.grants, 1);
    ck_assert_str_eq(s.grant_name, "permission");
    ck_assert(s.expires > 0 && s.expires <= 50);
    ck_assert_uint_eq(s.bytes_in, 1000);
    seen only = {0};
    TU_EXPECT_HR(fwx_firewall_list(f.fw, FWX_OBJECT_GRANT, count_cb, &only), FWX_S_OK);
    ck_assert_int_eq(only.sessions + only.connections, 0);
    ck_assert_int_eq(only.grants, 1);
    fx_close(&f);
}
END_TEST

/* A session keeps its data connections on a list of their own (lib/core/internal.h), so that
   what asks about its primary connections never walks them. With many open, every rule about
   the primary ones still holds, and every connection is still listed, killed by id and ended
   with the session. */
static void last_conn_id_cb(void *arg, const fwx_object_info *i)
{
    if (i->kind == FWX_OBJECT_CONNECTION)
        *(uint64_t *)arg = i->id;
}

START_TEST(many_data_connections)
{
    fx f;
    fx_open(&f);
    enum { N = 40 };
    TU_EXPECT_HR(afc(&f, "198.51.100.7:50000", FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_MULTIPLE, f.ctl, NULL), FWX_S_OK);
    IFWXConnection *d[N];
    for (int i = 0; i < N; i++) {
        char src[64];
        snprintf(src, sizeof src, "10.0.0.8:%d", 30000 + i);
        TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, src, "198.51.100.7:50000", &d[i]), FWX_S_OK);
    }
    /* A bound port is still for the control connection's peer only (the session's peers). */
    IFWXConnection *b[1];
    char dst[64];
    TU_EXPECT_HR(bind_one(&f, "10.0.0.8:2000", b, dst, sizeof dst), FWX_S_OK);
    IFWXConnection *in = NULL;
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.99:20", dst, &in), FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(admit(&f, FWX_PROTOCOL_TCP, "198.51.100.7:20", dst, &in), FWX_S_OK);
    /* Listed: the control connection, the data connections, the bound port's. */
    seen s = {0};
    TU_EXPECT_HR(fwx_firewall_list(f.fw, FWX_OBJECT_CONNECTION, count_cb, &s), FWX_S_OK);
    ck_assert_int_eq(s.connections, 1 + N + 1);
    /* The newest listed is a data connection (the bound port's): the operator can kill it. */
    uint64_t id = 0;
    TU_EXPECT_HR(fwx_firewall_list(f.fw, FWX_OBJECT_CONNECTION, last_conn_id_cb, &id), FWX_S_OK);
    fwx_object_info ci = {.struct_size = sizeof ci};
    TU_EXPECT_HR(fwx_connection_info(in, &ci), FWX_S_OK);
    ck_assert_uint_eq(id, ci.id);
    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_CONNECTION, id), FWX_S_OK);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(in, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_TERMINATED);
    /* The session's end ends every one. */
    fwx_session_close(f.s);
    for (int i = 0; i < N; i++) {
        flags = 0;
        TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(d[i], &flags), FWX_S_OK);
        ck_assert(flags & FWX_CONNECTION_TERMINATED);
        IFWXConnection_Release(d[i]);
    }
    seen after = {0};
    TU_EXPECT_HR(fwx_firewall_list(f.fw, FWX_OBJECT_CONNECTION, count_cb, &after), FWX_S_OK);
    ck_assert_int_eq(after.connections, 0);
    IFWXConnection_Release(in);
    IFWXConnection_Release(b[0]);
    fx_close(&f);
}
END_TEST

/* loopback_hosts: other 127/8 hosts become ordinary peers; the gateway's own stay refused. */
START_TEST(loopback_hosts_option)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_storage gw = tu_addr("127.0.0.1");
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.local_addresses = &gw;
    o.n_local_addresses = 1;
    o.loopback_hosts = 1;
    o.log_level = FWX_LOG_ERROR;
    fwx_firewall *fw = NULL;
    TU_EXPECT_HR(fwx_firewall_new(&loop, &o, &fw), FWX_S_OK);
    struct sockaddr_storage c = tu_addr("127.0.0.2"), srv = tu_addr("127.0.0.3:21");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *s = NULL;
    IFWXConnection *ctl = NULL, *b[1];
    TU_EXPECT_HR(fwx_session_open(fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);
    struct sockaddr_storage ok = tu_addr("127.0.0.3:50000"), self = tu_addr("127.0.0.1:50000"),
                            six = tu_addr("[::1]:50000");
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(s, TU_SA(ok), tu_len(&ok), NULL, 0, FWX_PROTOCOL_TCP, 0, &FWX_GUID_NULL,
                                                NULL, NULL, ctl, NULL),
                 FWX_S_OK);
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(s, TU_SA(self), tu_len(&self), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ALLOW_ADDRESSES_ALL, &FWX_GUID_NULL, NULL, NULL, ctl, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(s, TU_SA(six), tu_len(&six), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ALLOW_ADDRESSES_ALL, &FWX_GUID_NULL, NULL, NULL, ctl, NULL),
                 FWX_E_ADDRESS_NOT_ALLOWED);
    struct sockaddr_storage ca = tu_addr("127.0.0.2:6000"), px = tu_addr("127.0.0.1:0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&ca), TU_SAM(px), sizeof px, FWX_PROTOCOL_TCP, 1, 0, 1,
                                           &FWX_GUID_NULL, NULL, NULL, NULL, b),
                 FWX_S_OK);
    IFWXConnection_Release(b[0]);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    fwx_firewall_close(fw, NULL, NULL);
    tu_loop_close_clean(&loop);
}
END_TEST

static Suite *secondary_suite(void)
{
    const tu_case cases[] = {
        {"t1", t1_timeout_with_multiple_refused},
        {"flags", flags_outside_the_call_refused},
        {"t2 permission", t2_permission_expires},
        {"t2 bound port", t2_bound_port_times_out_or_lives_until_kill},
        {"t17", t17_cancel_after_use_and_session_end},
        {"t3", t3_one_shot_and_multiple},
        {"t3 bound port", t3_bound_port_one_connection_only},
        {"t4 afc", t4_afc_scope},
        {"t4 network", t4_afc_scope_in_network_with_policy},
        {"t5", t5_null_connection_needs_allow_all},
        {"reply from peer", reply_from_peer_scope},
        {"t21 secondary", t21_secondary_policy_without_guid},
        {"published server", published_server_is_own_host},
        {"t4 bfc", t4_bfc_client_scope},
        {"t6", t6_duplicate_permission},
        {"t7 ports", t7_consecutive_aligned_ports},
        {"t7 forced", t7_forced_port},
        {"t7 exhaustion", t7_port_range_exhaustion_is_clean},
        {"t8", t8_zero_client_address_set_once},
        {"t10", t10_proxy_mode_flag},
        {"t11", t11_retroactive_allow_bind},
        {"t11 terminating", t11_bind_terminating},
        {"t11 terminating after kill", t11_bind_terminating_after_kill},
        {"t11 policy", t11_retroactive_allow_bind_policy},
        {"t11 ip filter", t11_retroactive_allow_bind_ip_filter},
        {"forbidden targets", forbidden_targets_refused},
        {"expected peer", bound_port_only_from_expected_peer},
        {"caps", caps_per_session},
        {"redirect", redirect_connections},
        {"redirect address", redirect_address_as_the_party_sees_it},
        {"t9", t9_kernel_mode_decision_and_factories},
        {"session permissions", permissions_belong_to_their_session},
        {"address-based factory", address_based_factory},
        {"t15", t15_established_only_to_asker},
        {"session end", session_end_withdraws_everything},
        {"listing", listing},
        {"many_data_connections", many_data_connections},
        {"loopback hosts", loopback_hosts_option},
    };
    return TU_SUITE("secondary", cases, 0);
}

int main(void) { return tu_run_suite(secondary_suite()); }
