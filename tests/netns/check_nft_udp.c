/*
 * fwx tests - UDP through the "nft" backend's user-mode path: a client
 * namespace sends datagrams through the nft gateway to a UDP server in the server namespace,
 * and a data filter a test plugin (tests/plugins, tp_good) attaches in its fwx_Udp_Destination
 * handler upper-cases every datagram both ways. The filter must run on every datagram (the
 * server and the client read only upper case), a datagram over the 4096-byte default receive
 * buffer is dropped and counted (fwx_firewall_datagrams_dropped), and the next one still
 * passes.
 *
 * - "udp filter bound": the policy binds the plugin to the UDP protocol: the compiled policy
 *   steers its datagrams into fwx (REDIRECT, conntrack for the original destination).
 * - "udp filter bound ipv6": the same over IPv6 (fwx's IPv6 UDP socket, IPV6_PKTINFO).
 * - "udp hook": the protocol binds no filter, but the plugin hooks fwx_Udp_Destination: the
 *   policy's UDP protocols are steered all the same, so no datagram reaches the server
 *   unfiltered, not even the first.
 * - "udp user-mode permission": a permission made with FWX_FLAG_NO_KERNEL_MODE (kernel_mode
 *   0) is an element of user4 for protocol 17 and the datagram is relayed by fwx.
 * - "udp user-mode permission refused": the same without UDP interception: FWX_E_NOT_SUPPORTED
 *   and a warn line, never a permission that lets nothing through.
 * - "udp bound port": a BindForClient UDP port with the filter, DNATed to fwx.
 * - "udp hook, kernel flow refused": without UDP interception, the kernel forwards the first
 *   datagram; the filter attached after the fact refuses the flow (warn line), never a silent
 *   pass of the rest.
 * Not root, or no namespaces: exit 77 (skipped) with the reason.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "netns.h"
#include "backends/nft/nft_impl.h"
#include "core/internal.h"
#include "plugins/test_plugin.h"
#include "udp_filter.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TP_GUID "{7e570000-0000-0000-0000-000000000001}"

typedef tn_gw gw;

/* ---- the data filter: udp_filter.h, upper-cases each datagram, both ways ---------------------- */

/* The plugin's handler: the filter on every UDP destination it hears of. */
typedef struct hcase {
    udf f;
    int events;
    atomic_int seen; /* events, for the peer thread */
    fwx_result attach;
} hcase;

static fwx_result attach_filter(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    (void)s;
    hcase *h = ctl->arg;
    IFWXConnection *c = ev->EventType == fwx_Udp_Destination ? ev->Parameters.UdpDest.piConnection
                        : ev->EventType == fwx_Bind_Udp      ? ev->Parameters.Connect.piConnection
                                                             : NULL;
    if (c == NULL || (ev->EventType == fwx_Bind_Udp && h->events > 0))
        return FWX_S_OK; /* a bound port raises fwx_Bind_Udp when bound and when its peer comes: attach once */
    h->events++;
    atomic_fetch_add(&h->seen, 1);
    h->f.fw = ctl->fw;
    h->attach = IFWXConnection_AttachDataFilter(c, &h->f.iface, fwx_dfpc_Middle, NULL);
    return FWX_S_OK;
}

/* ---- the gateway --------------------------------------------------------------------------- */

static void gw_start(gw *g, hcase *h, uint32_t extra_hooks, const char *policy, bool ipv6)
{
    fwx_firewall_options o;
    tn_gw_begin(g, "u", ipv6, &o); /* the shared fixture (netns.h) */
    tu_fw_open(&g->loop, &o, &g->fw);
    udf_init(&h->f);
    void *dl = NULL;
    tp_control *ctl = tu_plugin_map("tp_good", &dl);
    ctl->hooks = fwx_Udp_Destination | fwx_Bind_Udp | FWX_ALL_SOURCES | fwxAssociatedProtocolsAllConnections | extra_hooks;
    ctl->on_event = attach_filter;
    ctl->arg = h;
    tu_plugin_load(g->fw, "tp_good");
    if (policy != NULL)
        TU_EXPECT_HR(fwx_firewall_set_policy(g->fw, tu_policy(policy)), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_backend(g->fw, "nft"), FWX_S_OK);
    const fwx__nft_features *ft = fwx__nft_features_of(g->fw);
    ck_assert_ptr_nonnull(ft);
    ck_assert_msg((ft->conntrack || (fwx__nft_pretend_missing & FWX__NFT_F_CONNTRACK)) && ft->ct_events, "this kernel has no ctnetlink events: UDP interception needs them");
    dlclose(dl);
}

static void gw_close(gw *g) { tn_gw_close(g); }

/* ---- the peers ------------------------------------------------------------------------------ */

typedef struct upeers {
    tn_topo *topo;
    uint16_t port;
    /* what the server read, in order (first 15 bytes of each) and their sizes */
    char srv[4][16];
    ssize_t srv_len[4];
    int srv_n;
    char srv_from[INET_ADDRSTRLEN];
    /* what the client read back */
    char cli[4][16];
    ssize_t cli_len[4];
    char cli_from[32];
} upeers;

static int udp_in(int nsfd, const char *ip, uint16_t port)
{
    int s = tn_socket_in(nsfd, AF_INET, SOCK_DGRAM);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in a = tn_sin_of(ip, port);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
}

/* The server reads one datagram and answers "reply<n>"; the client reads the answer. */
static void round_trip(upeers *u, int c, int s, int i)
{
    static uint8_t buf[70000];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    u->srv_len[i] = n;
    if (n > 0) {
        memcpy(u->srv[i], buf, n < 15 ? (size_t)n : 15);
        inet_ntop(AF_INET, &from.sin_addr, u->srv_from, sizeof u->srv_from);
        char r[16];
        int rl = snprintf(r, sizeof r, "reply%d", i + 1);
        sendto(s, r, (size_t)rl, 0, (struct sockaddr *)&from, fl);
        struct sockaddr_in cf;
        socklen_t cfl = sizeof cf;
        n = recvfrom(c, buf, sizeof buf, 0, (struct sockaddr *)&cf, &cfl);
        u->cli_len[i] = n;
        if (n > 0) {
            memcpy(u->cli[i], buf, n < 15 ? (size_t)n : 15);
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &cf.sin_addr, ip, sizeof ip);
            snprintf(u->cli_from, sizeof u->cli_from, "%s:%u", ip, ntohs(cf.sin_port));
        }
    }
    u->srv_n = i + 1;
}

static void *udp_peers(void *arg)
{
    upeers *u = arg;
    static uint8_t big[5000];
    int c = udp_in(u->topo->client_fd, TN_CLIENT, 0), s = udp_in(u->topo->server_fd, TN_SERVER, u->port);
    struct sockaddr_in to = tn_sin_of(TN_SERVER, u->port);
    sendto(c, "data1", 5, 0, (struct sockaddr *)&to, sizeof to);
    round_trip(u, c, s, 0);
    /* The large one, then a small one, on the same flow: the server's next read is the large
       one if it passed, the small one if it was dropped. */
    memset(big, 'x', sizeof big);
    sendto(c, big, sizeof big, 0, (struct sockaddr *)&to, sizeof to);
    sendto(c, "data2", 5, 0, (struct sockaddr *)&to, sizeof to);
    round_trip(u, c, s, 1);
    close(c);
    close(s);
    return NULL;
}

/* Every datagram went through the filter: upper case at the server and back at the client, the
   answer from the server's address (conntrack's reverse NAT), the big one dropped and counted. */
static void check_filtered(gw *g, hcase *h, upeers *u)
{
    ck_assert_int_ge(h->events, 1);
    TU_EXPECT_HR(h->attach, FWX_S_OK);
    ck_assert_int_eq(atomic_load(&h->f.setsockets), 1);
    ck_assert_int_eq(atomic_load(&h->f.failures), 0);
    ck_assert_msg(u->srv_len[0] == 5 && memcmp(u->srv[0], "DATA1", 5) == 0, "server's first datagram: %zd \"%s\"",
                  u->srv_len[0], u->srv[0]);
    ck_assert_str_eq(u->srv_from, TN_GW_OUT); /* relayed from the gateway */
    ck_assert_msg(u->cli_len[0] == 6 && memcmp(u->cli[0], "REPLY1", 6) == 0, "client's first answer: %zd \"%s\"",
                  u->cli_len[0], u->cli[0]);
    char want_from[32];
    snprintf(want_from, sizeof want_from, "%s:%u", TN_SERVER, (unsigned)u->port);
    ck_assert_str_eq(u->cli_from, want_from);
    ck_assert_msg(u->srv_len[1] == 5 && memcmp(u->srv[1], "DATA2", 5) == 0,
                  "server's second datagram: %zd bytes \"%s\" (the 5000-byte one passed?)", u->srv_len[1], u->srv[1]);
    ck_assert_msg(u->cli_len[1] == 6 && memcmp(u->cli[1], "REPLY2", 6) == 0, "client's second answer: %zd \"%s\"",
                  u->cli_len[1], u->cli[1]);
    ck_assert_uint_eq(atomic_load(&h->f.buf_alloc), 4096); /* T18 (doc/sdk-rules.md) */
    ck_assert_uint_eq(fwx_firewall_datagrams_dropped(g->fw), 1);
    ck_assert_msg(tu_log_find("a 5000-byte datagram from " TN_CLIENT ":", "dropped: larger than the data filter") != NULL,
                  "no line for the dropped datagram");
    ck_assert_int_eq(atomic_load(&h->f.datagrams), 4); /* data1, reply1, data2, reply2 */
}

#define POLICY_UDP(filters)                                                                             \
    "networks = { internal = { ranges = [ \"10.99.1.0/24\" ]; }; };\n"                                  \
    "protocols = ( { name = \"u1\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000007001}\"; protocol = \"udp\";" \
    " port = 7001; direction = \"outbound\";" filters " } );\n"                                         \
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"                \
    "rules = ( { name = \"u1 out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];" \
    " protocols = [ \"u1\" ]; } );\n"

static void policy_case(uint32_t extra_hooks, const char *policy)
{
    gw g;
    static hcase h;
    memset(&h, 0, sizeof h);
    gw_start(&g, &h, extra_hooks, policy, false);
    static upeers u;
    memset(&u, 0, sizeof u);
    u.topo = &g.topo;
    u.port = 7001;
    tu_run_peer(&g.loop, udp_peers, &u);
    check_filtered(&g, &h, &u);
    ck_assert_msg(tu_log_find("carried in user mode through its data filters", NULL) != NULL,
                  "no line for the user-mode UDP flow");
    gw_close(&g);
    ck_assert_int_eq(atomic_load(&h.f.detached), 1);
    ck_assert_uint_eq(fwx_refcount_get(&h.f.refs), 1); /* every reference the core took is back */
}

START_TEST(udp_filter_bound) { policy_case(0, POLICY_UDP(" filters = [ \"" TP_GUID "\" ];")); }
END_TEST

/* The same over IPv6: the flow reaches fwx's IPv6 UDP socket (the IPv6 listener's port number,
   IPV6_PKTINFO), its original destination read from conntrack, and is relayed through the
   filter from the gateway's IPv6 address; the answer comes back from the server's. */
typedef struct u6peers {
    tn_topo *topo;
    int tries;
    ssize_t srv_len, cli_len;
    char srv[16], cli[16], srv_from[FWX__SA_STRLEN], cli_from[FWX__SA_STRLEN];
} u6peers;

static int udp6_in(int nsfd, const char *ip, uint16_t port)
{
    int s = tn_socket_in(nsfd, AF_INET6, SOCK_DGRAM);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
}

/* One datagram from fd: its first 15 bytes into copy, its sender into *from and, as text, into
   text (FWX__SA_STRLEN: "[address]:port", or the address alone without with_port). */
static ssize_t recv_noted(int fd, char copy[16], struct sockaddr_storage *from, char *text, bool with_port)
{
    char buf[64];
    socklen_t fl = sizeof *from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)from, &fl);
    if (n <= 0)
        return n;
    memcpy(copy, buf, n < 15 ? (size_t)n : 15);
    if (with_port)
        fwx__sa_fmt((const struct sockaddr *)from, text);
    else
        fwx__sa_fmt_ip((const struct sockaddr *)from, text);
    return n;
}

static void *udp6_peers(void *arg)
{
    u6peers *u = arg;
    int c = udp6_in(u->topo->client_fd, TN6_CLIENT, 0), s = udp6_in(u->topo->server_fd, TN6_SERVER, 7001);
    struct sockaddr_storage to = tu_addr("[" TN6_SERVER "]:7001"), from, back;
    u->srv_len = -1;
    /* A fresh IPv6 link may lose a first datagram to neighbour discovery: up to 3 tries. */
    for (u->tries = 1; u->tries <= 3 && u->srv_len < 0; u->tries++) {
        sendto(c, "data1", 5, 0, (struct sockaddr *)&to, tu_len(&to));
        u->srv_len = recv_noted(s, u->srv, &from, u->srv_from, false);
    }
    if (u->srv_len > 0) {
        sendto(s, "reply1", 6, 0, (struct sockaddr *)&from, tu_len(&from));
        u->cli_len = recv_noted(c, u->cli, &back, u->cli_from, true);
    }
    close(c);
    close(s);
    return NULL;
}

START_TEST(udp_filter_bound_ipv6)
{
    static hcase h;
    static u6peers u;
    gw g;
    memset(&h, 0, sizeof h);
    memset(&u, 0, sizeof u);
    gw_start(&g, &h, 0,
             "networks = { internal = { ranges = [ \"10.99.1.0/24\", \"fd99:1::/64\" ]; }; };\n"
             "protocols = ( { name = \"u1\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000007001}\"; protocol = \"udp\";"
             " port = 7001; direction = \"outbound\"; filters = [ \"" TP_GUID "\" ]; } );\n"
             "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
             "rules = ( { name = \"u1 out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
             " protocols = [ \"u1\" ]; } );\n",
             true);
    u.topo = &g.topo;
    tu_run_peer(&g.loop, udp6_peers, &u);
    ck_assert_int_eq(h.events, 1);
    TU_EXPECT_HR(h.attach, FWX_S_OK);
    ck_assert_int_eq(atomic_load(&h.f.setsockets), 1);
    ck_assert_msg(u.srv_len == 5 && memcmp(u.srv, "DATA1", 5) == 0, "server's datagram: %zd \"%s\" (%d tries)", u.srv_len,
                  u.srv, u.tries - 1);
    ck_assert_str_eq(u.srv_from, TN6_GW_OUT); /* relayed from the gateway */
    ck_assert_msg(u.cli_len == 6 && memcmp(u.cli, "REPLY1", 6) == 0, "client's answer: %zd \"%s\"", u.cli_len, u.cli);
    ck_assert_str_eq(u.cli_from, "[" TN6_SERVER "]:7001"); /* conntrack's reverse NAT */
    ck_assert_msg(tu_log_find("UDP [" TN6_CLIENT "]:", "carried in user mode through its data filters") != NULL,
                  "no line for the user-mode IPv6 UDP flow");
    gw_close(&g);
    ck_assert_int_eq(atomic_load(&h.f.detached), 1);
    ck_assert_uint_eq(fwx_refcount_get(&h.f.refs), 1);
}
END_TEST

/* No filter bound, only the hook (fwxAnyProtocol: the handler hears of every UDP flow): still steered from the first datagram, so the server never
   reads a lower-case one. */
START_TEST(udp_hook) { policy_case(fwxAnyProtocol, POLICY_UDP("")); }
END_TEST

/* Without UDP interception (here: conntrack lookups pretended missing), the policy's UDP
   protocol is forwarded by the kernel and the core hears of the flow after its first datagram.
   The handler's data filter cannot run there: the flow is refused with a warn line naming the
   plugin, its conntrack entry killed and its tuple dropped from then on, so the datagrams after
   the first never reach the server (the first one has passed before anyone knew: the reason
   the normal path steers such protocols from the first datagram). */
typedef struct rpeers {
    tn_topo *topo;
    hcase *h;
    ssize_t first, second;
    char first_data[16];
} rpeers;

static void *refused_peers(void *arg)
{
    rpeers *r = arg;
    char buf[64];
    int c = udp_in(r->topo->client_fd, TN_CLIENT, 0), s = udp_in(r->topo->server_fd, TN_SERVER, 7001);
    struct sockaddr_in to = tn_sin_of(TN_SERVER, 7001);
    sendto(c, "data1", 5, 0, (struct sockaddr *)&to, sizeof to);
    r->first = recv(s, buf, sizeof buf, 0);
    if (r->first > 0)
        memcpy(r->first_data, buf, r->first < 15 ? (size_t)r->first : 15);
    /* The core hears of the flow on the loop (conntrack NEW); the refusal follows in the same
       callback. Wait for the handler (bounded), then a little for that callback to end. */
    for (int i = 0; i < 300 && atomic_load(&r->h->seen) == 0; i++)
        usleep(10000);
    usleep(300000);
    sendto(c, "data2", 5, 0, (struct sockaddr *)&to, sizeof to);
    r->second = recv(s, buf, sizeof buf, 0); /* 2 s receive timeout: -1 when nothing came */
    close(c);
    close(s);
    return NULL;
}

START_TEST(udp_hook_kernel_flow_refused)
{
    gw g;
    static hcase h;
    memset(&h, 0, sizeof h);
    fwx__nft_pretend_missing = FWX__NFT_F_CONNTRACK;
    gw_start(&g, &h, fwxAnyProtocol, POLICY_UDP(""), false);
    fwx__nft_pretend_missing = 0;
    ck_assert_msg(tu_log_find("policy compiled", "0 filter-bound port ranges") != NULL,
                  "the UDP protocol was steered although UDP interception is off");
    static rpeers r;
    memset(&r, 0, sizeof r);
    r.topo = &g.topo;
    r.h = &h;
    tu_run_peer(&g.loop, refused_peers, &r);
    ck_assert_int_eq(h.events, 1);
    TU_EXPECT_HR(h.attach, FWX_S_OK);
    ck_assert_int_eq(atomic_load(&h.f.setsockets), 0); /* it never ran */
    ck_assert_msg(tu_log_find("data filter(s) attached (plugin good) to a flow the kernel forwards", "flow refused") !=
                      NULL,
                  "no warn line naming the filter's plugin");
    ck_assert_msg(r.first == 5 && memcmp(r.first_data, "data1", 5) == 0, "the first datagram: %zd", r.first);
    ck_assert_msg(r.second < 0, "a datagram of the refused flow reached the server unfiltered (%zd bytes)", r.second);
    gw_close(&g);
    ck_assert_uint_eq(fwx_refcount_get(&h.f.refs), 1);
}
END_TEST

/* The client's session and a control connection to the server's port 21, and a UDP permission
   to the server's port 7002 that the core wants in user mode: AllowFutureConnect's result. */
static fwx_result user_mode_permission(gw *g, IFWXSession **s, IFWXConnection **ctl)
{
    struct sockaddr_storage client = tu_addr(TN_CLIENT), srv = tu_addr(TN_SERVER ":21"),
                            target = tu_addr(TN_SERVER ":7002");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(client), tu_len(&client), NULL, 0, NULL};
    TU_EXPECT_HR(fwx_session_open(g->fw, &sp, s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL,
                                0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(*s, &cp, ctl), FWX_S_OK);
    return IFWXSession_AllowFutureConnect(*s, TU_SA(target), tu_len(&target), NULL, 0, FWX_PROTOCOL_UDP,
                                          FWX_FLAG_NO_KERNEL_MODE, &FWX_GUID_NULL, NULL, NULL, *ctl, NULL);
}

static void user_mode_permission_end(IFWXSession *s, IFWXConnection *ctl)
{
    fwx_connection_close(ctl);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    IFWXSession_Release(s);
}

/* A permission the core wants in user mode (FWX_FLAG_NO_KERNEL_MODE): no policy at all, so
   only the permission lets the client's datagrams through, and fwx relays them (the handler
   is raised for the flow and attaches the filter). */
START_TEST(udp_user_mode_permission)
{
    gw g;
    static hcase h;
    memset(&h, 0, sizeof h);
    gw_start(&g, &h, 0, NULL, false);
    IFWXSession *s = NULL;
    IFWXConnection *ctl = NULL;
    TU_EXPECT_HR(user_mode_permission(&g, &s, &ctl), FWX_S_OK);
    static upeers u;
    memset(&u, 0, sizeof u);
    u.topo = &g.topo;
    u.port = 7002;
    tu_run_peer(&g.loop, udp_peers, &u);
    check_filtered(&g, &h, &u);
    ck_assert_int_eq(tu_log_count("opened through permission", "(filtered)"), 1);
    user_mode_permission_end(s, ctl);
    gw_close(&g);
    ck_assert_uint_eq(fwx_refcount_get(&h.f.refs), 1);
}
END_TEST

/* The same permission without UDP interception (conntrack pretended missing, so no UDP socket
   of either family): the backend cannot carry it and says so, the call fails rather than
   succeed with nothing to let the datagrams through. */
START_TEST(udp_user_mode_permission_refused)
{
    gw g;
    static hcase h;
    memset(&h, 0, sizeof h);
    fwx__nft_pretend_missing = FWX__NFT_F_CONNTRACK;
    gw_start(&g, &h, 0, NULL, false);
    fwx__nft_pretend_missing = 0;
    IFWXSession *s = NULL;
    IFWXConnection *ctl = NULL;
    TU_EXPECT_HR(user_mode_permission(&g, &s, &ctl), FWX_E_NOT_SUPPORTED);
    ck_assert_msg(tu_log_find("a UDP flow in user mode over IPv4", "UDP interception is off") != NULL,
                  "no warn line for the refused UDP permission");
    fwx_firewall_stats fs = {.struct_size = sizeof fs};
    TU_EXPECT_HR(fwx_firewall_get_stats(g.fw, &fs), FWX_S_OK);
    ck_assert_uint_eq(fs.permissions, 0); /* nothing left behind */
    user_mode_permission_end(s, ctl);
    gw_close(&g);
}
END_TEST

/* A bound UDP port (BindForClient) whose fwx_Bind_Udp handler attaches the filter: the port is
   DNATed to fwx's UDP socket, the datagrams from the server reach the client upper-cased, and
   the client's answer reaches the server upper-cased, from the bound port. */
typedef struct bpeers {
    tn_topo *topo;
    int client_fd;
    uint16_t port;
    ssize_t got, back;
    char data[16], answer[16], back_from[32];
} bpeers;

static void *bound_peers(void *arg)
{
    bpeers *b = arg;
    char buf[64];
    int s = udp_in(b->topo->server_fd, TN_SERVER, 0);
    struct sockaddr_in to = tn_sin_of(TN_GW_OUT, b->port), from;
    socklen_t fl = sizeof from;
    sendto(s, "data1", 5, 0, (struct sockaddr *)&to, sizeof to);
    b->got = recvfrom(b->client_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (b->got > 0) {
        memcpy(b->data, buf, b->got < 15 ? (size_t)b->got : 15);
        sendto(b->client_fd, "back", 4, 0, (struct sockaddr *)&from, fl);
        struct sockaddr_in bf;
        socklen_t bfl = sizeof bf;
        b->back = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&bf, &bfl);
        if (b->back > 0) {
            memcpy(b->answer, buf, b->back < 15 ? (size_t)b->back : 15);
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &bf.sin_addr, ip, sizeof ip);
            snprintf(b->back_from, sizeof b->back_from, "%s:%u", ip, ntohs(bf.sin_port));
        }
    }
    close(s);
    return NULL;
}

START_TEST(udp_bound_port)
{
    gw g;
    static hcase h;
    memset(&h, 0, sizeof h);
    gw_start(&g, &h, fwxAssociatedProtocolsAllConnections, NULL, false);
    static bpeers b;
    memset(&b, 0, sizeof b);
    b.topo = &g.topo;
    b.client_fd = udp_in(g.topo.client_fd, TN_CLIENT, 0);
    struct sockaddr_in cl;
    socklen_t cll = sizeof cl;
    ck_assert_int_eq(getsockname(b.client_fd, (struct sockaddr *)&cl, &cll), 0);
    char ca_text[64];
    snprintf(ca_text, sizeof ca_text, TN_CLIENT ":%u", ntohs(cl.sin_port));
    struct sockaddr_storage client = tu_addr(TN_CLIENT), srv = tu_addr(TN_SERVER ":21"), ca = tu_addr(ca_text),
                            px = tu_addr(TN_GW_OUT ":0");
    IFWXSession *s = NULL;
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(client), tu_len(&client), NULL, 0, NULL};
    TU_EXPECT_HR(fwx_session_open(g.fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL,
                                0, 0, NULL};
    IFWXConnection *ctl = NULL, *bound[1] = {NULL};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&ca), (struct sockaddr *)&px, sizeof px, FWX_PROTOCOL_UDP, 1,
                                           FWX_FLAG_BIDIRECTIONAL, 0, &FWX_GUID_NULL, NULL, NULL, NULL, bound),
                 FWX_S_OK);
    b.port = ntohs(((struct sockaddr_in *)&px)->sin_port);
    ck_assert_uint_ne(b.port, 0);
    tu_run_peer(&g.loop, bound_peers, &b);
    TU_EXPECT_HR(h.attach, FWX_S_OK);
    ck_assert_msg(b.got == 5 && memcmp(b.data, "DATA1", 5) == 0, "the client got %zd bytes \"%s\"", b.got, b.data);
    ck_assert_msg(b.back == 4 && memcmp(b.answer, "BACK", 4) == 0, "the server got %zd bytes \"%s\"", b.back,
                  b.answer);
    char want[32];
    snprintf(want, sizeof want, TN_GW_OUT ":%u", (unsigned)b.port);
    ck_assert_str_eq(b.back_from, want);
    ck_assert_int_eq(atomic_load(&h.f.setsockets), 1);
    close(b.client_fd);
    if (bound[0] != NULL)
        IFWXConnection_Release(bound[0]);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    gw_close(&g);
}
END_TEST

static Suite *udp_suite(void)
{
    const tu_case cases[] = {
        {"udp filter bound", udp_filter_bound},
        {"udp filter bound ipv6", udp_filter_bound_ipv6},
        {"udp hook", udp_hook},
        {"udp user-mode permission", udp_user_mode_permission},
        {"udp user-mode permission refused", udp_user_mode_permission_refused},
        {"udp hook, kernel flow refused", udp_hook_kernel_flow_refused},
        {"udp bound port", udp_bound_port},
    };
    return TU_SUITE("nft udp", cases, 30);
}

int main(void) { return tn_main(udp_suite, "network namespace tests"); }
