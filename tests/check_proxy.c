/*
 * fwx tests - the "proxy" backend with real sockets on loopback: server publishing through
 * the gateway, BindForClient and RedirectConnections as real listening ports, the peer scope
 * and one-shot rules seen from the network, and nothing left open after a session or the
 * firewall ends.
 *
 * Hosts are distinct loopback addresses (firewall option loopback_hosts): the gateway is
 * 127.0.0.1, the client 127.0.0.2, the server 127.0.0.3, a third party 127.0.0.4. Peers run in
 * threads with blocking sockets bounded by timeouts, while the test's loop runs the gateway.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "plugins/test_plugin.h"
#include "udp_filter.h"
#include "../examples/fault-backend/peers.h" /* the peers, shared with examples/fault-backend */

#include <dlfcn.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>


/* ---- the gateway under test ----------------------------------------------------------------- */

typedef struct gw {
    uv_loop_t loop;
    fwx_firewall *fw;
} gw;

/* The gateway's log lines of the running test (warnings and up), for tests that look for one;
   with FWX_TEST_LOG set, every line, also on stderr. */
static char gw_log_text[32768];
static size_t gw_log_len;

static void gw_log(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg;
    (void)level;
    if (getenv("FWX_TEST_LOG"))
        fprintf(stderr, "%s\n", msg);
    int n = snprintf(gw_log_text + gw_log_len, sizeof gw_log_text - gw_log_len, "%s\n", msg);
    if (n > 0 && gw_log_len + (size_t)n < sizeof gw_log_text)
        gw_log_len += (size_t)n;
}

static void gw_open(gw *g, const char *policy)
{
    fwx_firewall_options o;
    tu_gw_options(&o);
    o.timeout_ms = 200; /* UDP flows idle out quickly in these tests */
    o.log_level = getenv("FWX_TEST_LOG") ? FWX_LOG_DEBUG : FWX_LOG_WARN;
    o.log = gw_log;
    gw_log_len = 0;
    gw_log_text[0] = 0;
    tu_fw_open(&g->loop, &o, &g->fw);
    TU_EXPECT_HR(fwx_firewall_set_backend(g->fw, "proxy"), FWX_S_OK);
    if (policy != NULL)
        tu_fw_set_policy(g->fw, policy);
}

static void gw_close(gw *g) { tu_fw_close(&g->loop, &g->fw); }

static fwx_firewall_stats stats(gw *g) { return tu_fw_stats(g->fw); }

/* The counters expect_none looks at. */
enum { C_SESSIONS = 1, C_CONNECTIONS = 2, C_BOUND_PORTS = 4, C_PERMISSIONS = 8 };

/* After ms of the loop (the relays finish closing), each counter named in `which` is 0. */
static void expect_none(gw *g, uint64_t ms, unsigned which)
{
    tu_loop_run_for(&g->loop, ms);
    fwx_firewall_stats st = stats(g);
    if (which & C_SESSIONS)
        ck_assert_uint_eq(st.sessions, 0);
    if (which & C_CONNECTIONS)
        ck_assert_uint_eq(st.connections, 0);
    if (which & C_BOUND_PORTS)
        ck_assert_uint_eq(st.bound_ports, 0);
    if (which & C_PERMISSIONS)
        ck_assert_uint_eq(st.permissions, 0);
}

/* ---- publishing ------------------------------------------------------------------------------ */

typedef struct xfer {
    uint16_t port;
    const char *from, *to;
    size_t n;
    int ok;
    size_t got;
} xfer;

static void *client_echo_roundtrip(void *arg)
{
    xfer *x = arg;
    int fd = tu_sock_from(x->from, 0);
    if (tu_connect_to(fd, x->to, x->port) == 0)
        x->ok = peer_echo_roundtrip(fd, x->n, &x->got);
    close(fd);
    return NULL;
}

START_TEST(publishing_relays_both_ways)
{
    tu_echo e;
    tu_echo_start(&e, "127.0.0.3");
    gw g;
    uint16_t lp = tu_free_port("127.0.0.1");
    gw_open(&g, tu_publish_policy(lp, e.port));
    xfer small = {lp, "127.0.0.2", "127.0.0.1", 100, 0, 0}, big = {lp, "127.0.0.2", "127.0.0.1", 4u << 20, 0, 0};
    tu_run_peer(&g.loop, client_echo_roundtrip, &small);
    ck_assert_msg(small.ok, "small echo through the gateway: got %zu bytes", small.got);
    tu_run_peer(&g.loop, client_echo_roundtrip, &big);
    ck_assert_msg(big.ok, "4 MiB echo through the gateway: got %zu bytes", big.got);
    ck_assert_int_eq(atomic_load(&e.conns), 2);
    tu_loop_run_for(&g.loop, 50); /* let the relays finish closing */
    fwx_firewall_stats st = stats(&g);
    ck_assert_uint_eq(st.connections, 0);
    ck_assert_uint_eq(st.sessions, 0); /* a published client's session ends with its last connection */
    gw_close(&g);
    tu_echo_stop(&e);
}
END_TEST

/* The relay's two sockets, found in this process's fd table (the gateway runs here) while the
   client is still connected: the client side has the client's address as its peer, the server
   side the echo server's. TCP_NODELAY on each (-1: not found). */
typedef struct nodelay_case {
    uint16_t port, echo_port;
    int ok;
    int nodelay[2];
} nodelay_case;

static bool same_in4(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_family == AF_INET && b->sin_family == AF_INET && a->sin_port == b->sin_port &&
           a->sin_addr.s_addr == b->sin_addr.s_addr;
}

static void *client_nodelay(void *arg)
{
    nodelay_case *x = arg;
    x->nodelay[0] = x->nodelay[1] = -1;
    int fd = tu_sock_from("127.0.0.2", 0);
    /* One echo, the connection left open (a round trip that half-closes would end the relay). */
    char b[5];
    size_t got = 0;
    ssize_t n = 1;
    if (tu_connect_to(fd, "127.0.0.1", x->port) == 0 && tu_write_all(fd, "hello", 5) == 0)
        while (got < sizeof b && (n = recv(fd, b + got, sizeof b - got, 0)) > 0) /* SO_RCVTIMEO bounds it */
            got += (size_t)n;
    if (!(x->ok = got == sizeof b && memcmp(b, "hello", 5) == 0)) {
        close(fd);
        return NULL;
    }
    struct sockaddr_in want[2] = {{0}}, a;
    socklen_t l = sizeof want[0];
    (void)getsockname(fd, (struct sockaddr *)&want[0], &l);
    want[1].sin_family = AF_INET;
    want[1].sin_port = htons(x->echo_port);
    inet_pton(AF_INET, "127.0.0.3", &want[1].sin_addr);
    for (int f = 3; f < 1024; f++) {
        l = sizeof a;
        if (f == fd || getpeername(f, (struct sockaddr *)&a, &l) != 0)
            continue;
        for (int i = 0; i < 2; i++) {
            int v = -1;
            socklen_t vl = sizeof v;
            if (same_in4(&a, &want[i]) && getsockopt(f, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0)
                x->nodelay[i] = v != 0;
        }
    }
    close(fd);
    return NULL;
}

START_TEST(relay_sockets_nodelay)
{
    /* The pump writes what it read at once; with Nagle a small write while an earlier one is
       unacknowledged waits for the peer's ACK, which a peer that has nothing to say delays by
       40 ms or more (an FTP server's 226 after its 150, bench/README.md issue 13 part 5). Both
       of the relay's sockets have TCP_NODELAY: the accepted one from its listener, the one to
       the server set before it connects. */
    tu_echo e;
    tu_echo_start(&e, "127.0.0.3");
    gw g;
    uint16_t lp = tu_free_port("127.0.0.1");
    gw_open(&g, tu_publish_policy(lp, e.port));
    nodelay_case x = {.port = lp, .echo_port = e.port};
    tu_run_peer(&g.loop, client_nodelay, &x);
    ck_assert_msg(x.ok, "no echo through the gateway");
    ck_assert_msg(x.nodelay[0] == 1, "the relay's client-side socket: TCP_NODELAY %d (-1: not found)", x.nodelay[0]);
    ck_assert_msg(x.nodelay[1] == 1, "the relay's server-side socket: TCP_NODELAY %d (-1: not found)", x.nodelay[1]);
    gw_close(&g);
    tu_echo_stop(&e);
}
END_TEST

static void *client_expect_refused(void *arg)
{
    xfer *x = arg;
    int fd = tu_sock_from(x->from, 0);
    uint8_t b[16];
    /* Either the connect is refused or the gateway closes it at once, with nothing relayed. */
    if (tu_connect_to(fd, x->to, x->port) != 0)
        x->ok = 1;
    else
        x->ok = (send(fd, "hello", 5, MSG_NOSIGNAL), tu_read_all(fd, b, sizeof b)) == 0;
    close(fd);
    return NULL;
}

START_TEST(publishing_denied_by_policy)
{
    tu_echo e;
    tu_echo_start(&e, "127.0.0.3");
    gw g;
    uint16_t lp = tu_free_port("127.0.0.1");
    char policy[2048];
    snprintf(policy, sizeof policy, "%s", tu_publish_policy(lp, e.port));
    /* Deny the client 127.0.0.2 before the allow rule. */
    char *rules = strstr(policy, "rules = ( ");
    ck_assert_ptr_nonnull(rules);
    char tail[2048];
    snprintf(tail, sizeof tail, "%s", rules + strlen("rules = ( "));
    snprintf(rules, sizeof policy - (size_t)(rules - policy),
             "address_sets = { bad = [ \"127.0.0.2/32\" ]; };\nrules = ( { name = \"no bad\"; action = \"deny\";"
             " from = [ \"bad\" ]; to = [ \"localhost\" ]; protocols = [ \"all\" ]; }, %s",
             tail);
    gw_open(&g, policy);
    xfer x = {lp, "127.0.0.2", "127.0.0.1", 0, 0, 0}, y = {lp, "127.0.0.4", "127.0.0.1", 1000, 0, 0};
    tu_run_peer(&g.loop, client_expect_refused, &x);
    ck_assert(x.ok);
    ck_assert_int_eq(atomic_load(&e.conns), 0); /* never reached the server */
    tu_run_peer(&g.loop, client_echo_roundtrip, &y);
    ck_assert(y.ok);
    gw_close(&g);
    tu_echo_stop(&e);
}
END_TEST

/* ---- BindForClient as a real port ------------------------------------------------------------- */

typedef struct bfc_case {
    uint16_t gw_port;
    int client_lfd;       /* the client's data port (127.0.0.2) */
    size_t client_got;
    int third_refused, second_refused;
    int ok;
} bfc_case;

static void *server_data_connection(void *arg)
{
    bfc_case *b = arg;
    uint8_t in[16];
    /* The third party tries first (catalog #23, doc/security.md): closed on it, port kept for the server. */
    int t = tu_sock_from("127.0.0.4", 0);
    if (tu_connect_to(t, "127.0.0.1", b->gw_port) != 0)
        b->third_refused = 0;
    else
        b->third_refused = (send(t, "x", 1, MSG_NOSIGNAL), tu_read_all(t, in, 10)) == 0;
    close(t);
    int s = tu_sock_from("127.0.0.3", 0);
    if (tu_connect_to(s, "127.0.0.1", b->gw_port) == 0)
        b->ok = peer_send_to_listener(s, b->client_lfd, 100000, TU_IO_TIMEOUT_S, &b->client_got);
    close(s);
    /* One connection only: the port is gone now. */
    int s2 = tu_sock_from("127.0.0.3", 0);
    b->second_refused = tu_connect_to(s2, "127.0.0.1", b->gw_port) != 0;
    close(s2);
    return NULL;
}

static IFWXSession *nat_session(gw *g, const char *client, IFWXConnection **ctl)
{
    struct sockaddr_storage c = tu_addr(client), gi = tu_addr("127.0.0.1"), srv = tu_addr("127.0.0.3:21");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), TU_SA(gi), tu_len(&gi), NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(g->fw, &sp, &s), FWX_S_OK);
    /* The host reports the client's control connection to the server (carried elsewhere). */
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, ctl), FWX_S_OK);
    return s;
}

/* Ends a session nat_session opened: its control connection closed, the session closed and
   released. */
static void nat_session_end(IFWXSession *s, IFWXConnection *ctl)
{
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
}

/* BindForClient on the gateway (127.0.0.1, a port it picks) for the client's socket `client_fd`
   at 127.0.0.2, one connection (in bound[0]); returns the gateway's port. */
static uint16_t bind_for_client(IFWXSession *s, int client_fd, int32_t proto, uint32_t flags, int32_t backlog,
                                IFWXIpFilter *ipf, IFWXConnection *bound[1])
{
    char ca_text[64];
    snprintf(ca_text, sizeof ca_text, "127.0.0.2:%u", tu_bound_port(client_fd));
    struct sockaddr_storage ca = tu_addr(ca_text), px = tu_addr("127.0.0.1:0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&ca), TU_SAM(px), sizeof px, proto, 1, flags, backlog,
                                           &FWX_GUID_NULL, NULL, NULL, ipf, bound),
                 FWX_S_OK);
    return ntohs(((struct sockaddr_in *)&px)->sin_port);
}

START_TEST(bind_for_client_real_port)
{
    gw g;
    gw_open(&g, NULL);
    IFWXConnection *ctl = NULL, *bound[1];
    IFWXSession *s = nat_session(&g, "127.0.0.2", &ctl);
    bfc_case b = {0};
    b.client_lfd = tu_sock_from("127.0.0.2", 0);
    ck_assert_int_eq(listen(b.client_lfd, 4), 0);
    b.gw_port = bind_for_client(s, b.client_lfd, FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT, 4, NULL, bound);
    ck_assert(b.gw_port >= 40000);
    tu_run_peer(&g.loop, server_data_connection, &b);
    ck_assert_msg(b.third_refused, "a third party got through the bound port");
    ck_assert_msg(b.ok, "the client's data port got %zu of 100000 bytes", b.client_got);
    ck_assert_msg(b.second_refused, "the bound port accepted a second connection");
    close(b.client_lfd);
    IFWXConnection_Release(bound[0]);
    nat_session_end(s, ctl);
    expect_none(&g, 20, C_BOUND_PORTS);
    gw_close(&g);
}
END_TEST

/* GetIpFilter on a BindForClient port made with an IP filter: a copy of the filter in force.
   Widening the copy changes nothing on the wire; SetIpFilter with it does. */
typedef struct ipf_case {
    uint16_t gw_port;
    int client_lfd;
    const char *from;
    int expect_refused;
    int refused;      /* the gateway closed on `from` without relaying */
    char got[32];     /* what the client's data port received first */
} ipf_case;

/* Expecting a refusal: `from` sees its connection closed, and the first connection the
   client's port then accepts carries the server's bytes. Expecting a relay: the client's port
   accepts `from`'s bytes. */
static void *ipf_peers(void *arg)
{
    ipf_case *x = arg;
    uint8_t in[16];
    memset(x->got, 0, sizeof x->got);
    x->refused = 0;
    int t = tu_sock_from(x->from, 0);
    if (tu_connect_to(t, "127.0.0.1", x->gw_port) != 0 || tu_write_all(t, "from-x", 6) != 0) {
        x->refused = 1;
        close(t);
        t = -1;
    } else {
        shutdown(t, SHUT_WR);
    }
    if (t >= 0 && x->expect_refused)
        x->refused = tu_read_all(t, in, sizeof in) == 0;
    int s = -1;
    if (x->expect_refused) {
        s = tu_sock_from("127.0.0.3", 0);
        if (tu_connect_to(s, "127.0.0.1", x->gw_port) == 0 && tu_write_all(s, "from-3", 6) == 0)
            shutdown(s, SHUT_WR);
    }
    int c = accept(x->client_lfd, NULL, NULL);
    if (c >= 0) {
        tu_set_timeouts(c);
        ssize_t r = tu_read_all(c, x->got, sizeof x->got - 1);
        if (r < 0)
            x->got[0] = 0;
        close(c);
    }
    if (s >= 0)
        close(s);
    if (t >= 0)
        close(t);
    return NULL;
}

START_TEST(bind_for_client_get_ip_filter)
{
    gw g;
    gw_open(&g, NULL);
    IFWXConnection *ctl = NULL, *bound[1];
    IFWXSession *s = nat_session(&g, "127.0.0.2", &ctl);
    ipf_case x = {.from = "127.0.0.4", .expect_refused = 1};
    x.client_lfd = tu_sock_from("127.0.0.2", 0);
    ck_assert_int_eq(listen(x.client_lfd, 8), 0);
    struct sockaddr_storage s3 = tu_addr("127.0.0.3"), s4 = tu_addr("127.0.0.4");
    IFWXIpFilter *ipf = NULL, *got = NULL, *again = NULL;
    TU_EXPECT_HR(IFWXFirewall_CreateIpFilter(fwx_firewall_iface(g.fw), &ipf), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(ipf, TU_SA(s3), tu_len(&s3), TU_SA(s3), tu_len(&s3)), FWX_S_OK);
    x.gw_port = bind_for_client(s, x.client_lfd, FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_MULTIPLE, 4, ipf, bound);
    TU_EXPECT_HR(IFWXConnection_GetIpFilter(bound[0], &got), FWX_S_OK);
    ck_assert_ptr_nonnull(got);
    ck_assert_ptr_ne(got, ipf); /* a copy: BindForClient copied the caller's */
    TU_EXPECT_REF(got, 1);
    TU_EXPECT_HR(IFWXIpFilter_Compare(got, ipf), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_IsIncluded(got, TU_SA(s3), tu_len(&s3)), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_IsIncluded(got, TU_SA(s4), tu_len(&s4)), FWX_S_FALSE);
    /* Widening the copy does not widen the port. */
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(got, TU_SA(s4), tu_len(&s4), TU_SA(s4), tu_len(&s4)), FWX_S_OK);
    tu_run_peer(&g.loop, ipf_peers, &x);
    ck_assert_msg(x.refused, "127.0.0.4 got through a port filtered to 127.0.0.3");
    ck_assert_str_eq(x.got, "from-3");
    /* SetIpFilter with it does; GetIpFilter then reads that back. */
    TU_EXPECT_HR(IFWXConnection_SetIpFilter(bound[0], got), FWX_S_OK);
    TU_EXPECT_HR(IFWXConnection_GetIpFilter(bound[0], &again), FWX_S_OK);
    ck_assert_ptr_nonnull(again);
    TU_EXPECT_HR(IFWXIpFilter_Compare(again, got), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_IsIncluded(again, TU_SA(s4), tu_len(&s4)), FWX_S_OK);
    x.expect_refused = 0;
    tu_run_peer(&g.loop, ipf_peers, &x);
    ck_assert_msg(!x.refused, "127.0.0.4 refused by a filter that includes it");
    ck_assert_str_eq(x.got, "from-x");
    ck_assert_uint_eq(IFWXIpFilter_Release(again), 0);
    ck_assert_uint_eq(IFWXIpFilter_Release(got), 0);
    ck_assert_uint_eq(IFWXIpFilter_Release(ipf), 0);
    close(x.client_lfd);
    fwx_connection_close(bound[0]);
    nat_session_end(s, ctl);
    tu_loop_run_for(&g.loop, 20);
    ck_assert_uint_eq(stats(&g).bound_ports, 0);
    gw_close(&g);
}
END_TEST

/* A private session ends on its last release: its bound port closes on the wire, its
   permission goes, its connections end and its filter is detached, though the filter and the
   connection objects the test still holds have references to it. */
typedef struct priv_case {
    uint16_t gw_port;
    int client_lfd;
    int relayed;  /* the server's bytes reached the client through the bound port */
    int refused;  /* a connection to the bound port was refused */
} priv_case;

static void *priv_server_once(void *arg)
{
    priv_case *x = arg;
    char got[16] = {0};
    int s = tu_sock_from("127.0.0.3", 0);
    if (tu_connect_to(s, "127.0.0.1", x->gw_port) == 0 && tu_write_all(s, "from-3", 6) == 0) {
        shutdown(s, SHUT_WR);
        int c = accept(x->client_lfd, NULL, NULL);
        if (c >= 0) {
            tu_set_timeouts(c);
            x->relayed = tu_read_all(c, got, sizeof got - 1) == 6 && strcmp(got, "from-3") == 0;
            close(c);
        }
    }
    close(s);
    return NULL;
}

static void *priv_server_refused(void *arg)
{
    priv_case *x = arg;
    int s = tu_sock_from("127.0.0.3", 0);
    errno = 0;
    x->refused = tu_connect_to(s, "127.0.0.1", x->gw_port) != 0 && errno == ECONNREFUSED;
    close(s);
    return NULL;
}

START_TEST(private_session_ends_on_last_release)
{
    void *h = NULL;
    tp_control *ctl = tu_plugin_map("tp_good", &h);
    ctl->hooks = fwx_Connect_Tcp | fwxSourceWSP;
    gw g;
    gw_open(&g, NULL);
    TU_EXPECT_HR(fwx_firewall_load_plugin(g.fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    struct sockaddr_storage c = tu_addr("127.0.0.2"), gi = tu_addr("127.0.0.1"), srv = tu_addr("127.0.0.3:21");
    IFWXSession *priv = NULL;
    TU_EXPECT_HR(IFWXFirewall_CreatePrivateSession(fwx_firewall_iface(g.fw), TU_SA(c), tu_len(&c), TU_SA(gi),
                                                   tu_len(&gi), NULL, &priv),
                 FWX_S_OK);
    TU_EXPECT_REF(priv, 1); /* the caller's only */
    /* A connection made on the client's behalf: the filter attaches and keeps the session. */
    IFWXConnection *conn = NULL, *bound[1];
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0,
                                0, NULL};
    TU_EXPECT_HR(fwx_connection_open(priv, &cp, &conn), FWX_S_OK);
    ck_assert_int_eq(ctl->n_attach, 1);
    TU_EXPECT_REF(priv, 3); /* ours, the connection's, the session filter's */
    priv_case x = {0};
    x.client_lfd = tu_sock_from("127.0.0.2", 0);
    ck_assert_int_eq(listen(x.client_lfd, 4), 0);
    struct sockaddr_storage target = tu_addr("127.0.0.3:50123");
    x.gw_port = bind_for_client(priv, x.client_lfd, FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_MULTIPLE, 4, NULL, bound);
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(priv, TU_SA(target), tu_len(&target), NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                &FWX_GUID_NULL, NULL, NULL, conn, NULL),
                 FWX_S_OK);
    /* Alive while referenced: the port relays. */
    tu_run_peer(&g.loop, priv_server_once, &x);
    ck_assert_msg(x.relayed, "the private session's bound port did not relay");
    fwx_firewall_stats st = stats(&g);
    ck_assert_uint_eq(st.sessions, 1);
    ck_assert_uint_eq(st.bound_ports, 1);
    ck_assert_uint_eq(st.permissions, 1);
    /* The last release from outside the core ends it. */
    int terminating = ctl->n_terminating;
    /* What is left: our two connection objects' references (and a relay's still closing). */
    ck_assert_uint_ge(IFWXSession_Release(priv), 2);
    st = stats(&g);
    ck_assert_uint_eq(st.sessions, 0);
    ck_assert_uint_eq(st.bound_ports, 0);
    ck_assert_uint_eq(st.permissions, 0);
    ck_assert_int_eq(ctl->n_detach, 1);
    ck_assert_int_ge(ctl->n_terminating, terminating + 2); /* conn and bound[0], and a relay still open */
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(conn, &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_TERMINATED);
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(bound[0], &flags), FWX_S_OK);
    ck_assert(flags & FWX_CONNECTION_TERMINATED);
    tu_loop_run_for(&g.loop, 20);
    tu_run_peer(&g.loop, priv_server_refused, &x);
    ck_assert_msg(x.refused, "the bound port is still open after its private session ended");
    ck_assert_uint_eq(IFWXConnection_Release(bound[0]), 0);
    ck_assert_uint_eq(IFWXConnection_Release(conn), 0);
    ck_assert_int_eq(ctl->n_sf_released, 1);
    close(x.client_lfd);
    gw_close(&g);
    dlclose(h);
}
END_TEST

/* ---- RedirectConnections as a real port --------------------------------------------------------- */

typedef struct rc_case {
    uint16_t port;
    xfer other, client;
} rc_case;

static void *redirect_peers(void *arg)
{
    rc_case *r = arg;
    client_expect_refused(&r->other);
    client_echo_roundtrip(&r->client);
    return NULL;
}

START_TEST(redirect_real_port)
{
    tu_echo e;
    tu_echo_start(&e, "127.0.0.3");
    gw g;
    gw_open(&g, NULL);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, "127.0.0.2", &ctl);
    char t_text[64];
    snprintf(t_text, sizeof t_text, "127.0.0.3:%u", e.port);
    struct sockaddr_storage t = tu_addr(t_text), ia;
    const struct sockaddr *tp[1] = {TU_SA(t)};
    uint32_t ialen = sizeof ia;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&t), 1, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                 &FWX_GUID_NULL, NULL, NULL, NULL),
                 FWX_S_OK);
    uint16_t port = ntohs(((struct sockaddr_in *)&ia)->sin_port);
    rc_case rc = {port, {port, "127.0.0.4", "127.0.0.1", 0, 0, 0}, {port, "127.0.0.2", "127.0.0.1", 50000, 0, 0}};
    tu_run_peer(&g.loop, redirect_peers, &rc);
    ck_assert_msg(rc.other.ok, "someone other than the session's client used the redirect port");
    ck_assert_msg(rc.client.ok, "the client's redirected echo got %zu bytes", rc.client.got);
    nat_session_end(s, ctl);
    gw_close(&g);
    tu_echo_stop(&e);
}
END_TEST

/* ---- nothing left open --------------------------------------------------------------------------- */

typedef struct hold {
    uint16_t port;
    int fd;
    atomic_int connected;
    int eof;
} hold;

static void *client_hold(void *arg)
{
    hold *h = arg;
    h->fd = tu_sock_from("127.0.0.2", 0);
    if (tu_connect_to(h->fd, "127.0.0.1", h->port) == 0 && tu_write_all(h->fd, (const uint8_t *)"ping", 4) == 0) {
        uint8_t b[4];
        if (recv(h->fd, b, 4, MSG_WAITALL) == 4)
            atomic_store(&h->connected, 1);
    }
    return NULL;
}

static void *client_wait_eof(void *arg)
{
    hold *h = arg;
    uint8_t b[16];
    h->eof = tu_read_all(h->fd, b, sizeof b) == 0;
    close(h->fd);
    return NULL;
}

static void *nothing(void *arg)
{
    (void)arg;
    return NULL;
}

START_TEST(session_end_and_close_drop_live_relays)
{
    tu_echo e;
    tu_echo_start(&e, "127.0.0.3");
    gw g;
    uint16_t lp = tu_free_port("127.0.0.1");
    gw_open(&g, tu_publish_policy(lp, e.port));
    hold h = {.port = lp};
    atomic_init(&h.connected, 0);
    tu_run_peer(&g.loop, client_hold, &h);
    ck_assert(atomic_load(&h.connected));
    ck_assert_uint_eq(stats(&g).connections, 1);
    /* Ending the client's session ends its relay: the client sees the connection close. */
    struct sockaddr_storage c = tu_addr("127.0.0.2");
    IFWXSession *s = NULL;
    TU_EXPECT_HR(IFWXFirewall_GetClientSession(fwx_firewall_iface(g.fw), TU_SA(c), tu_len(&c), &s), FWX_S_OK);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    IFWXSession_Release(s);
    tu_run_peer(&g.loop, client_wait_eof, &h);
    ck_assert(h.eof);
    /* And a firewall closed with a relay still open closes every socket. */
    hold h2 = {.port = lp};
    atomic_init(&h2.connected, 0);
    tu_run_peer(&g.loop, client_hold, &h2);
    ck_assert(atomic_load(&h2.connected));
    fwx_firewall_close(g.fw, NULL, NULL);
    tu_run_peer(&g.loop, client_wait_eof, &h2);
    ck_assert(h2.eof);
    tu_run_peer(&g.loop, nothing, NULL);
    tu_loop_close_clean(&g.loop);
    tu_echo_stop(&e);
}
END_TEST

/* ---- SOCKS5 ------------------------------------------------------------------------------------ */

typedef struct sx {
    uint16_t socks_port;
    const char *dst;
    uint16_t dst_port;
    uint8_t cmd;
    int rep;            /* reply code, -1 if the connection closed without one */
    int echo_ok;
    struct sockaddr_in bound;
    /* BIND */
    const char *connector; /* who connects to the bound port */
    int second_rep;
    int data_ok;
} sx;

static int socks_hello(int fd)
{
    uint8_t g[3] = {5, 1, 0}, a[2];
    if (tu_write_all(fd, g, 3) != 0 || recv(fd, a, 2, MSG_WAITALL) != 2 || a[0] != 5 || a[1] != 0)
        return -1;
    return 0;
}

/* Sends a request; returns the reply code (and the bound address), or -1. */
static int socks_request(int fd, uint8_t cmd, const char *ip, uint16_t port, struct sockaddr_in *bnd)
{
    uint8_t r[10] = {5, cmd, 0, 1}, a[10];
    inet_pton(AF_INET, ip, r + 4);
    uint16_t p = htons(port);
    memcpy(r + 8, &p, 2);
    if (tu_write_all(fd, r, 10) != 0)
        return -1;
    if (recv(fd, a, 10, MSG_WAITALL) != 10 || a[0] != 5 || a[3] != 1)
        return -1;
    if (bnd != NULL) {
        memset(bnd, 0, sizeof *bnd);
        bnd->sin_family = AF_INET;
        memcpy(&bnd->sin_addr, a + 4, 4);
        memcpy(&bnd->sin_port, a + 8, 2);
    }
    return a[1];
}

static void *socks_connect_client(void *arg)
{
    sx *x = arg;
    int fd = tu_sock_from("127.0.0.2", 0);
    x->rep = -1;
    if (tu_connect_to(fd, "127.0.0.1", x->socks_port) == 0 && socks_hello(fd) == 0)
        x->rep = socks_request(fd, x->cmd ? x->cmd : 1, x->dst, x->dst_port, NULL);
    if (x->rep == 0) {
        uint8_t out[65536], in[65537];
        for (size_t i = 0; i < sizeof out; i++)
            out[i] = (uint8_t)(i * 13);
        if (tu_write_all(fd, out, sizeof out) == 0) {
            shutdown(fd, SHUT_WR);
            x->echo_ok = tu_read_all(fd, in, sizeof in) == (ssize_t)sizeof out && memcmp(in, out, sizeof out) == 0;
        }
    }
    close(fd);
    return NULL;
}

static void gw_socks(gw *g, uint16_t *port)
{
    *port = tu_free_port("127.0.0.1");
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%u", *port);
    struct sockaddr_storage a = tu_addr(t);
    TU_EXPECT_HR(fwx_proxy_socks_listen(g->fw, TU_SA(a), tu_len(&a)), FWX_S_OK);
}

START_TEST(socks_connect_relays)
{
    tu_echo e;
    tu_echo_start(&e, "127.0.0.3");
    gw g;
    gw_open(&g, NULL);
    sx x = {.dst = "127.0.0.3", .dst_port = e.port};
    gw_socks(&g, &x.socks_port);
    tu_run_peer(&g.loop, socks_connect_client, &x);
    ck_assert_int_eq(x.rep, 0);
    ck_assert_msg(x.echo_ok, "64 KiB echo through SOCKS CONNECT");
    /* Not the "proxy" backend: no SOCKS. */
    gw_close(&g);
    tu_echo_stop(&e);
}
END_TEST

static void *socks_raw(void *arg)
{
    /* arg: bytes to send after the greeting; returns via sx.rep the first reply byte, or -1 on close */
    sx *x = arg;
    int fd = tu_sock_from("127.0.0.2", 0);
    x->rep = -1;
    if (tu_connect_to(fd, "127.0.0.1", x->socks_port) == 0) {
        if (x->cmd == 0xF4) { /* SOCKS4: closed without a reply */
            uint8_t v4[9] = {4, 1, 0, 80, 127, 0, 0, 3, 0}, b[8];
            tu_write_all(fd, v4, sizeof v4);
            x->rep = recv(fd, b, sizeof b, 0) == 0 ? -1 : -2;
        } else if (socks_hello(fd) == 0) {
            uint8_t b[10];
            if (x->cmd == 0xEE) { /* a request with bytes after it */
                uint8_t r[14] = {5, 1, 0, 1, 127, 0, 0, 3, 0x1f, 0x90, 'G', 'E', 'T', ' '};
                tu_write_all(fd, r, sizeof r);
            } else if (x->cmd == 0xA9) { /* unknown address type */
                uint8_t r[10] = {5, 1, 0, 9, 0, 0, 0, 0, 0, 80};
                tu_write_all(fd, r, sizeof r);
            } else {
                ck_abort_msg("unknown raw case");
            }
            x->rep = recv(fd, b, 10, MSG_WAITALL) == 10 ? b[1] : -1;
        }
    }
    close(fd);
    return NULL;
}

START_TEST(socks_refusals)
{
    gw g;
    uint16_t closed_port = tu_free_port("127.0.0.3");
    /* A policy that denies one port, allows the rest. */
    char policy[1024];
    snprintf(policy, sizeof policy,
             "protocols = ( { name = \"blocked\"; guid = \"{0badf00d-0000-0000-0000-0000000000bb}\"; protocol = \"tcp\";"
             " port = 9; } );\n"
             "rules = ( { name = \"no discard\"; action = \"deny\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"blocked\" ]; },\n"
             "  { name = \"rest\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"all\" ]; } );\n");
    gw_open(&g, policy);
    uint16_t sp;
    gw_socks(&g, &sp);
    struct {
        const char *dst;
        uint16_t port;
        uint8_t cmd;
        int want;
    } cases[] = {
        {"127.0.0.1", 2000, 1, 2},        /* the gateway itself (catalog #40) */
        {"127.0.0.3", closed_port, 1, 5}, /* refused by the server */
        {"127.0.0.3", 9, 1, 2},           /* denied by the policy */
        {"127.0.0.3", 2000, 9, 7},        /* an unknown command */
        {"224.0.0.1", 2000, 1, 2},        /* a group address */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sx x = {.socks_port = sp, .dst = cases[i].dst, .dst_port = cases[i].port, .cmd = cases[i].cmd};
        tu_run_peer(&g.loop, socks_connect_client, &x);
        ck_assert_msg(x.rep == cases[i].want, "case %zu: reply %d, expected %d", i, x.rep, cases[i].want);
    }
    sx v4 = {.socks_port = sp, .cmd = 0xF4}, extra = {.socks_port = sp, .cmd = 0xEE}, atyp = {.socks_port = sp, .cmd = 0xA9};
    tu_run_peer(&g.loop, socks_raw, &v4);
    ck_assert_int_eq(v4.rep, -1);
    tu_run_peer(&g.loop, socks_raw, &extra);
    ck_assert_int_eq(extra.rep, 1);
    tu_run_peer(&g.loop, socks_raw, &atyp);
    ck_assert_int_eq(atyp.rep, 8);
    expect_none(&g, 20, C_SESSIONS | C_CONNECTIONS);
    gw_close(&g);
}
END_TEST

/* BIND: discarded until a filter approves it with RetroactiveAllowBind, then relayed. */
static fwx_result approve_binds(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    if (ev->EventType == fwx_Bind_Tcp && *(int *)ctl->arg) {
        const FwxBindEvent *b = &ev->Parameters.Bind;
        fwx_result hr = IFWXSession_RetroactiveAllowBind(s, FWX_PROTOCOL_TCP, (const struct sockaddr *)&b->Address,
                                                         b->AddressLength, &FWX_GUID_NULL, 0, NULL);
        ck_assert_int_eq(hr, FWX_S_OK);
    }
    return FWX_S_OK;
}

typedef struct bind_run {
    uint16_t socks_port;
    int rep1, rep2;
    int third_dropped, data_ok;
} bind_run;

static void *socks_bind_client(void *arg)
{
    bind_run *b = arg;
    int fd = tu_sock_from("127.0.0.2", 0);
    struct sockaddr_in bnd;
    b->rep1 = b->rep2 = -1;
    if (tu_connect_to(fd, "127.0.0.1", b->socks_port) != 0 || socks_hello(fd) != 0) {
        close(fd);
        return NULL;
    }
    b->rep1 = socks_request(fd, 2, "127.0.0.3", 0, &bnd);
    if (b->rep1 != 0) {
        close(fd);
        return NULL;
    }
    uint16_t port = ntohs(bnd.sin_port);
    uint8_t tmp[8];
    /* Not the host named in the request: dropped, the bind keeps waiting. */
    int t = tu_sock_from("127.0.0.4", 0);
    b->third_dropped = tu_connect_to(t, "127.0.0.1", port) != 0 || tu_read_all(t, tmp, sizeof tmp) == 0;
    close(t);
    int srv = tu_sock_from("127.0.0.3", 0);
    if (tu_connect_to(srv, "127.0.0.1", port) == 0) {
        uint8_t a[10];
        struct timeval tv = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (recv(fd, a, 10, MSG_WAITALL) == 10) {
            b->rep2 = a[1];
            tu_write_all(srv, (const uint8_t *)"from-server", 11);
            uint8_t got[11];
            b->data_ok = recv(fd, got, 11, MSG_WAITALL) == 11 && memcmp(got, "from-server", 11) == 0;
        }
    }
    close(srv);
    close(fd);
    return NULL;
}

static void bind_case(int approve, bind_run *out)
{
    tp_control *ctl = tu_plugin_map("tp_good", NULL);
    static int flag;
    flag = approve;
    ctl->hooks = fwx_Bind_Tcp | fwxSourceWSP;
    ctl->on_event = approve_binds;
    ctl->arg = &flag;
    gw g;
    gw_open(&g, NULL);
    TU_EXPECT_HR(fwx_firewall_load_plugin(g.fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    memset(out, 0, sizeof *out);
    gw_socks(&g, &out->socks_port);
    tu_run_peer(&g.loop, socks_bind_client, out);
    tu_loop_run_for(&g.loop, 20);
    ck_assert_uint_eq(stats(&g).bound_ports, 0); /* the client bind went with its SOCKS connection */
    gw_close(&g);
}

START_TEST(socks_bind_needs_approval)
{
    bind_run b;
    bind_case(0, &b);
    ck_assert_int_eq(b.rep1, 0);
    ck_assert_msg(b.rep2 == -1, "an unapproved bind relayed a connection (reply %d)", b.rep2);
}
END_TEST

START_TEST(socks_bind_approved)
{
    bind_run b;
    bind_case(1, &b);
    ck_assert_int_eq(b.rep1, 0);
    ck_assert(b.third_dropped);
    ck_assert_int_eq(b.rep2, 0);
    ck_assert(b.data_ok);
}
END_TEST

/* BIND under a policy: RetroactiveAllowBind with a protocol no rule allows is refused, and the
   server's connection to the bind never reaches the client; with an allowed one it does. */
typedef struct rab_as {
    fwx_guid guid;
    fwx_result hr;
    int calls;
} rab_as;

static fwx_result approve_binds_as(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    rab_as *r = ctl->arg;
    if (ev->EventType == fwx_Bind_Tcp) {
        const FwxBindEvent *b = &ev->Parameters.Bind;
        r->hr = IFWXSession_RetroactiveAllowBind(s, FWX_PROTOCOL_TCP, (const struct sockaddr *)&b->Address,
                                                 b->AddressLength, &r->guid, 0, NULL);
        r->calls++;
    }
    return FWX_S_OK;
}

static void bind_policy_case(const fwx_guid *guid, rab_as *r, bind_run *out)
{
    tp_control *ctl = tu_plugin_map("tp_good", NULL);
    memset(r, 0, sizeof *r);
    r->guid = *guid;
    ctl->hooks = fwx_Bind_Tcp | fwxSourceWSP | fwxAnyProtocol; /* a bind has no protocol of the policy */
    ctl->on_event = approve_binds_as;
    ctl->arg = r;
    gw g;
    gw_open(&g, "protocols = ( { name = \"ctl\"; guid = \"{11111111-0000-0000-0000-000000000021}\"; protocol = \"tcp\";"
                " port = 21; },\n"
                "  { name = \"nobody\"; guid = \"{11111111-0000-0000-0000-000000000099}\"; protocol = \"tcp\"; port = 99; } );\n"
                "rules = ( { name = \"ctl\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
                " protocols = [ \"ctl\" ]; } );\n");
    TU_EXPECT_HR(fwx_firewall_load_plugin(g.fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    memset(out, 0, sizeof *out);
    gw_socks(&g, &out->socks_port);
    tu_run_peer(&g.loop, socks_bind_client, out);
    tu_loop_run_for(&g.loop, 20);
    ck_assert_uint_eq(stats(&g).bound_ports, 0);
    gw_close(&g);
}

START_TEST(socks_bind_policy)
{
    fwx_guid ctl = FWX_GUID_INIT(0x11, 0x11, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21);
    fwx_guid nobody = FWX_GUID_INIT(0x11, 0x11, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99);
    rab_as r;
    bind_run b;
    bind_policy_case(&nobody, &r, &b);
    ck_assert_int_eq(r.calls, 1);
    TU_EXPECT_HR(r.hr, FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_int_eq(b.rep1, 0); /* the bind itself never fails */
    ck_assert_msg(b.rep2 == -1, "a bind the policy refused relayed a connection (reply %d)", b.rep2);
    ck_assert(!b.data_ok);
    bind_policy_case(&ctl, &r, &b);
    TU_EXPECT_HR(r.hr, FWX_S_OK);
    ck_assert_int_eq(b.rep2, 0);
    ck_assert_msg(b.data_ok, "the server's bytes did not reach the client through the approved bind");
}
END_TEST

/* A real client: curl through the SOCKS5 listener to a tiny HTTP responder. */
typedef struct curl_case {
    uint16_t socks_port, http_port;
    int lfd;
    int status;
} curl_case;

static void *http_once(void *arg)
{
    curl_case *c = arg;
    int s = accept(c->lfd, NULL, NULL);
    if (s >= 0) {
        uint8_t req[2048];
        (void)recv(s, req, sizeof req, 0);
        const char *resp = "HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nfwx-ok\r\n";
        tu_write_all(s, (const uint8_t *)resp, strlen(resp));
        close(s);
    }
    return NULL;
}

static void *run_curl(void *arg)
{
    curl_case *c = arg;
    pthread_t th;
    pthread_create(&th, NULL, http_once, c);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 10 --socks5 127.0.0.1:%u http://127.0.0.3:%u/ | grep -q '^fwx-ok'", c->socks_port,
             c->http_port);
    c->status = system(cmd);
    shutdown(c->lfd, SHUT_RDWR);
    pthread_join(th, NULL);
    return NULL;
}

START_TEST(socks_with_curl)
{
    ck_assert_msg(system("command -v curl >/dev/null") == 0, "curl is needed (./run installs it)");
    gw g;
    gw_open(&g, NULL);
    curl_case c = {0};
    gw_socks(&g, &c.socks_port);
    c.lfd = tu_sock_from("127.0.0.3", 0);
    listen(c.lfd, 4);
    c.http_port = tu_bound_port(c.lfd);
    tu_run_peer(&g.loop, run_curl, &c);
    close(c.lfd);
    ck_assert_msg(c.status == 0, "curl --socks5 did not get the page (status %d)", c.status);
    gw_close(&g);
}
END_TEST

/* AllowFutureConnect with real sockets: a permission belongs to its session. Each SOCKS
   connection is a session of its own, so the one a filter made in the client's control session
   serves a later SOCKS CONNECT only if it is address-based; then once. */
START_TEST(socks_connect_admitted_by_permission)
{
    tu_echo e;
    tu_echo_start(&e, "127.0.0.3");
    gw g;
    char policy[1024];
    snprintf(policy, sizeof policy,
             "protocols = ( { name = \"ftp\"; guid = \"{11111111-0000-0000-0000-000000000021}\"; protocol = \"tcp\";"
             " port = 21; } );\n"
             "rules = ( { name = \"ftp only\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"ftp\" ]; } );\n");
    gw_open(&g, policy);
    uint16_t sp;
    gw_socks(&g, &sp);
    sx before = {.socks_port = sp, .dst = "127.0.0.3", .dst_port = e.port};
    tu_run_peer(&g.loop, socks_connect_client, &before);
    ck_assert_int_eq(before.rep, 2); /* the policy allows only ftp */
    /* A filter in the client's control session allows the data connection. */
    struct sockaddr_storage c = tu_addr("127.0.0.2"), srv = tu_addr("127.0.0.3:21");
    fwx_session_params spar = {sizeof spar, fwxSourceWSP, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *s = NULL;
    IFWXConnection *ctl = NULL;
    TU_EXPECT_HR(fwx_session_open(g.fw, &spar, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0,
                                0, NULL};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.3:%u", e.port);
    struct sockaddr_storage target = tu_addr(t);
    IFWXFirewallAction *act = NULL;
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(s, TU_SA(target), tu_len(&target), NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                &FWX_GUID_NULL, NULL, NULL, ctl, &act),
                 FWX_S_OK);
    /* Not address-based: another session of the same client (this SOCKS connection) may not
       use it; the connect is an ordinary one, which the policy refuses, and nothing reaches
       the server. */
    sx other = {.socks_port = sp, .dst = "127.0.0.3", .dst_port = e.port};
    tu_run_peer(&g.loop, socks_connect_client, &other);
    ck_assert_int_eq(other.rep, 2);
    ck_assert(!other.echo_ok);
    ck_assert_int_eq(atomic_load(&e.conns), 0);
    ck_assert_uint_eq(stats(&g).permissions, 1); /* still there, for its own session */
    TU_EXPECT_HR(IFWXFirewallAction_Cancel(act), FWX_S_OK);
    IFWXFirewallAction_Release(act);
    /* Address-based: any session of the client's address may use it, once. */
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(s, TU_SA(target), tu_len(&target), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ADDRESS_BASED, &FWX_GUID_NULL, NULL, NULL, ctl, NULL),
                 FWX_S_OK);
    sx once = {.socks_port = sp, .dst = "127.0.0.3", .dst_port = e.port}, twice = once;
    tu_run_peer(&g.loop, socks_connect_client, &once);
    ck_assert_int_eq(once.rep, 0);
    ck_assert_msg(once.echo_ok, "the permitted connection did not relay");
    tu_run_peer(&g.loop, socks_connect_client, &twice);
    ck_assert_int_eq(twice.rep, 2); /* used up */
    nat_session_end(s, ctl);
    gw_close(&g);
    tu_echo_stop(&e);
    ck_assert_int_eq(atomic_load(&e.conns), 1);
}
END_TEST

/* ---- UDP ----------------------------------------------------------------------------------------- */

static int udp_from(const char *ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static ssize_t udp_send(int fd, const char *ip, uint16_t port, const void *p, size_t n)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return sendto(fd, p, n, 0, (struct sockaddr *)&a, sizeof a);
}

/* A UDP echo server thread: echoes every datagram until its socket is shut down. */
typedef struct uecho {
    int fd;
    uint16_t port;
    pthread_t th;
    atomic_int stop;
} uecho;

static void *uecho_main(void *arg)
{
    uecho *u = arg;
    uint8_t b[65536];
    while (!atomic_load(&u->stop)) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t r = recvfrom(u->fd, b, sizeof b, 0, (struct sockaddr *)&from, &fl);
        if (r > 0)
            sendto(u->fd, b, (size_t)r, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

static void uecho_start(uecho *u, const char *ip)
{
    memset(u, 0, sizeof *u);
    u->fd = udp_from(ip, 0);
    u->port = tu_bound_port(u->fd);
    atomic_init(&u->stop, 0);
    pthread_create(&u->th, NULL, uecho_main, u);
}

static void uecho_stop(uecho *u)
{
    atomic_store(&u->stop, 1);
    pthread_join(u->th, NULL); /* bounded: recvfrom times out after 1 s */
    close(u->fd);
}

/* Starts a UDP echo server at 127.0.0.3 and a gateway that publishes it on 127.0.0.1 (the
   returned port) with a full-proxy publishing rule. */
static uint16_t gw_udp_publish(gw *g, uecho *e)
{
    uecho_start(e, "127.0.0.3");
    uint16_t lp = tu_free_port("127.0.0.1");
    char policy[2048];
    snprintf(policy, sizeof policy,
             "protocols = ( { name = \"dns-like\"; guid = \"{0badf00d-0000-0000-0000-000000000053}\"; protocol = \"udp\";"
             " port = %u; direction = \"inbound\"; } );\n"
             "rules = ( { name = \"publish\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"dns-like\" ]; } );\n"
             "publishing = ( { name = \"u\"; listen = \"127.0.0.1:%u\"; server = \"127.0.0.3:%u\";"
             " protocol = \"dns-like\"; full_proxy = true; } );\n",
             lp, lp, e->port);
    gw_open(g, policy);
    return lp;
}

typedef struct ucase {
    uint16_t port;
    int ok, other_ok;
} ucase;

static void *udp_clients(void *arg)
{
    ucase *u = arg;
    int a = udp_from("127.0.0.2", 0), b = udp_from("127.0.0.4", 0);
    char buf[2048], big[1400];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 3; i++) {
        udp_send(a, "127.0.0.1", u->port, big, sizeof big);
        u->ok += recv(a, buf, sizeof buf, 0) == (ssize_t)sizeof big && memcmp(buf, big, sizeof big) == 0;
    }
    udp_send(b, "127.0.0.1", u->port, "hello", 5);
    u->other_ok = recv(b, buf, sizeof buf, 0) == 5 && memcmp(buf, "hello", 5) == 0;
    close(a);
    close(b);
    return NULL;
}

START_TEST(udp_publishing_flows)
{
    uecho e;
    gw g;
    uint16_t lp = gw_udp_publish(&g, &e);
    ucase u = {.port = lp};
    tu_run_peer(&g.loop, udp_clients, &u);
    ck_assert_int_eq(u.ok, 3);
    ck_assert(u.other_ok);
    fwx_firewall_stats st = stats(&g);
    ck_assert_uint_eq(st.connections, 2); /* one flow per peer */
    ck_assert_uint_eq(st.sessions, 2);
    /* Idle flows end with the firewall's timeout (200 ms here). */
    tu_loop_run_for(&g.loop, 600);
    st = stats(&g);
    ck_assert_uint_eq(st.connections, 0);
    ck_assert_uint_eq(st.sessions, 0);
    gw_close(&g);
    uecho_stop(&e);
}
END_TEST

typedef struct ubind {
    uint16_t gw_port;
    int client_fd;
    int got, third_blocked, second_blocked, back_ok;
} ubind;

static void *udp_bind_peers(void *arg)
{
    ubind *u = arg;
    char buf[64];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    int t = udp_from("127.0.0.4", 0), s = udp_from("127.0.0.3", 0), s2 = udp_from("127.0.0.3", 0);
    udp_send(t, "127.0.0.1", u->gw_port, "theft", 5); /* not the session's peer: dropped */
    udp_send(s, "127.0.0.1", u->gw_port, "data1", 5);
    u->got = recvfrom(u->client_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl) == 5 &&
             memcmp(buf, "data1", 5) == 0;
    /* The client answers to where it came from: BIDIRECTIONAL carries it back to the server. */
    sendto(u->client_fd, "back", 4, 0, (struct sockaddr *)&from, fl);
    u->back_ok = recv(s, buf, sizeof buf, 0) == 4 && memcmp(buf, "back", 4) == 0;
    /* One source only: the same server from another port is refused. */
    udp_send(s2, "127.0.0.1", u->gw_port, "data2", 5);
    ssize_t r = recv(u->client_fd, buf, sizeof buf, 0);
    u->second_blocked = r < 0;
    u->third_blocked = !(r == 5 && memcmp(buf, "theft", 5) == 0);
    close(t);
    close(s);
    close(s2);
    return NULL;
}

START_TEST(udp_bind_for_client)
{
    gw g;
    gw_open(&g, NULL);
    IFWXConnection *ctl = NULL, *bound[1];
    IFWXSession *s = nat_session(&g, "127.0.0.2", &ctl);
    ubind u = {0};
    u.client_fd = udp_from("127.0.0.2", 0);
    u.gw_port = bind_for_client(s, u.client_fd, FWX_PROTOCOL_UDP, FWX_FLAG_BIDIRECTIONAL | FWX_FLAG_TIMEOUT, 0, NULL, bound);
    tu_run_peer(&g.loop, udp_bind_peers, &u);
    ck_assert_msg(u.got, "the server's datagram did not reach the client");
    ck_assert_msg(u.back_ok, "the client's answer did not get back (BIDIRECTIONAL)");
    ck_assert_msg(u.third_blocked, "a third party's datagram reached the client");
    ck_assert_msg(u.second_blocked, "a second source got through a one-source port");
    close(u.client_fd);
    IFWXConnection_Release(bound[0]);
    nat_session_end(s, ctl);
    expect_none(&g, 20, C_CONNECTIONS | C_BOUND_PORTS);
    gw_close(&g);
}
END_TEST

typedef struct uassoc {
    uint16_t socks_port, echo_port;
    int rep, ok, frag_dropped, other_dropped;
} uassoc;

/* A SOCKS5 client at 127.0.0.2 with a UDP association: its control connection, its UDP
   socket, the relay the ASSOCIATE named, and the datagram it sends there ("ping-udp" for the
   echo server at 127.0.0.3, behind a SOCKS UDP header: 18 bytes). */
typedef struct sudp {
    int ctl, u;
    struct sockaddr_in relay;
    char relay_ip[32];
    uint8_t d[18];
    uint8_t in[128]; /* the last answer */
} sudp;

/* Sends the datagram d from fd to the relay; the answer's length in s->in, or -1. */
static ssize_t sudp_roundtrip(sudp *s, int fd)
{
    udp_send(fd, s->relay_ip, ntohs(s->relay.sin_port), s->d, sizeof s->d);
    return recv(fd, s->in, sizeof s->in, 0);
}

/* Opens the association through the SOCKS listener at 127.0.0.1:socks_port; the ASSOCIATE's
   reply code (-1: no reply). */
static int sudp_open(sudp *s, uint16_t socks_port, uint16_t echo_port)
{
    memset(s, 0, sizeof *s);
    s->ctl = tu_sock_from("127.0.0.2", 0);
    s->u = udp_from("127.0.0.2", 0);
    static const uint8_t hdr[8] = {0, 0, 0, 1, 127, 0, 0, 3}; /* RSV, FRAG 0, IPv4 127.0.0.3 */
    uint16_t p = htons(echo_port);
    memcpy(s->d, hdr, sizeof hdr);
    memcpy(s->d + 8, &p, 2);
    memcpy(s->d + 10, "ping-udp", 8);
    if (tu_connect_to(s->ctl, "127.0.0.1", socks_port) != 0 || socks_hello(s->ctl) != 0)
        return -1;
    int rep = socks_request(s->ctl, 3, "0.0.0.0", 0, &s->relay);
    inet_ntop(AF_INET, &s->relay.sin_addr, s->relay_ip, sizeof s->relay_ip);
    return rep;
}

static void sudp_close(sudp *s)
{
    close(s->u);
    close(s->ctl); /* ends the association */
}

static void *socks_udp_client(void *arg)
{
    uassoc *x = arg;
    sudp s;
    int o = udp_from("127.0.0.4", 0);
    x->rep = sudp_open(&s, x->socks_port, x->echo_port);
    if (x->rep == 0) {
        ssize_t r = sudp_roundtrip(&s, s.u);
        x->ok = r == 18 && s.in[3] == 1 && memcmp(s.in + 4, s.d + 4, 6) == 0 && memcmp(s.in + 10, "ping-udp", 8) == 0;
        /* A fragment, and a datagram from someone else: dropped. */
        s.d[2] = 1;
        x->frag_dropped = sudp_roundtrip(&s, s.u) < 0;
        s.d[2] = 0;
        x->other_dropped = sudp_roundtrip(&s, o) < 0;
    }
    close(o);
    sudp_close(&s);
    return NULL;
}

START_TEST(socks_udp_associate)
{
    uecho e;
    uecho_start(&e, "127.0.0.3");
    gw g;
    gw_open(&g, NULL);
    uassoc x = {.echo_port = e.port};
    gw_socks(&g, &x.socks_port);
    tu_run_peer(&g.loop, socks_udp_client, &x);
    ck_assert_int_eq(x.rep, 0);
    ck_assert_msg(x.ok, "no echo through the SOCKS UDP relay");
    ck_assert(x.frag_dropped);
    ck_assert(x.other_dropped);
    expect_none(&g, 50, C_CONNECTIONS | C_SESSIONS);
    gw_close(&g);
    uecho_stop(&e);
}
END_TEST

/* ---- UDP through data filters ---------------------------------------------------------------- */

/* What the plugin's handler does: attach the filter(s), maybe set the buffer size first. */
typedef struct udp_df_case {
    udf f1, f2;
    uint32_t set_buffer;                /* SetBufferSize before attaching, 0: leave the default */
    struct sockaddr_storage dest1, dest2; /* with a family: AttachDataFilterWithDestination */
    fwx_result attach1, attach2, setbuf;
    int events;
} udp_df_case;

static fwx_result attach_udp_filters(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    (void)s;
    udp_df_case *u = ctl->arg;
    IFWXConnection *c = ev->EventType == fwx_Bind_Udp        ? ev->Parameters.Connect.piConnection
                        : ev->EventType == fwx_Udp_Destination ? ev->Parameters.UdpDest.piConnection
                        : ev->EventType == fwx_AcceptedConnection ? ev->Parameters.Accept.piConnectionAccepted
                                                               : NULL;
    if (c == NULL || u->events++ > 0)
        return FWX_S_OK; /* a bound port raises fwx_Bind_Udp when bound and when its peer comes: attach once */
    u->f1.fw = u->f2.fw = ctl->fw;
    if (u->set_buffer != 0)
        u->setbuf = IFWXConnection_SetBufferSize(c, u->set_buffer);
    if (u->dest1.ss_family != 0) {
        u->attach1 = IFWXConnection_AttachDataFilterWithDestination(c, &u->f1.iface, fwx_dfpc_Middle, NULL,
                                                                    TU_SA(u->dest1), tu_len(&u->dest1));
        u->attach2 = IFWXConnection_AttachDataFilterWithDestination(c, &u->f2.iface, fwx_dfpc_Middle, NULL,
                                                                    TU_SA(u->dest2), tu_len(&u->dest2));
    } else {
        u->attach1 = IFWXConnection_AttachDataFilter(c, &u->f1.iface, fwx_dfpc_Middle, NULL);
    }
    return FWX_S_OK;
}

static tp_control *udp_df_plugin(gw *g, uint32_t hooks, udp_df_case *u)
{
    tp_control *ctl = tu_plugin_map("tp_good", NULL);
    ctl->hooks = hooks;
    ctl->on_event = attach_udp_filters;
    ctl->arg = u;
    TU_EXPECT_HR(fwx_firewall_load_plugin(g->fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    return ctl;
}

typedef struct ubig {
    int client_fd;
    uint16_t gw_port;
    size_t big;      /* the large datagram's size */
    ssize_t got1, got_big, got2, back;
    char first[16], second[16], answer[16];
} ubig;

static void *udp_filter_peers(void *arg)
{
    ubig *u = arg;
    static uint8_t buf[70000], big[70000];
    int s = udp_from("127.0.0.3", 0);
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    udp_send(s, "127.0.0.1", u->gw_port, "data1", 5);
    u->got1 = recvfrom(u->client_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (u->got1 > 0)
        memcpy(u->first, buf, u->got1 < 15 ? (size_t)u->got1 : 15);
    memset(big, 'x', sizeof big);
    /* The large one and then a small one: in order on this path, so the first thing the client
       reads is the large one if it passed, the small one if it was dropped (no timing). */
    udp_send(s, "127.0.0.1", u->gw_port, big, u->big);
    udp_send(s, "127.0.0.1", u->gw_port, "data2", 5);
    u->got_big = recv(u->client_fd, buf, sizeof buf, 0);
    if (u->got_big == 5) {
        u->got2 = 5; /* that was the small one */
        u->got_big = -1;
    } else {
        u->got2 = recv(u->client_fd, buf, sizeof buf, 0);
    }
    if (u->got2 > 0)
        memcpy(u->second, buf, u->got2 < 15 ? (size_t)u->got2 : 15);
    /* The client answers: through the filter (upper-cased) back to the server. */
    sendto(u->client_fd, "back", 4, 0, (struct sockaddr *)&from, fl);
    u->back = recv(s, buf, sizeof buf, 0);
    if (u->back > 0)
        memcpy(u->answer, buf, u->back < 15 ? (size_t)u->back : 15);
    close(s);
    return NULL;
}

/* A bound UDP port whose fwx_Bind_Udp handler attaches a data filter: every datagram passes the
   filter (its SetSockets is called, its Recv(NULL) buffers have the connection's buffer size,
   4096 bytes by default); a 5,000-byte datagram is dropped before the filter and counted, and
   the next one still arrives. With SetBufferSize(8192) the same datagram passes. */
static void udp_bind_filter_case(uint32_t set_buffer)
{
    gw g;
    gw_open(&g, NULL);
    static udp_df_case u;
    memset(&u, 0, sizeof u);
    udf_init(&u.f1);
    udf_init(&u.f2);
    u.set_buffer = set_buffer;
    udp_df_plugin(&g, fwx_Bind_Udp | FWX_ALL_SOURCES | fwxAssociatedProtocolsAllConnections, &u);
    IFWXConnection *ctl = NULL, *bound[1];
    IFWXSession *s = nat_session(&g, "127.0.0.2", &ctl);
    ubig x = {.big = 5000};
    x.client_fd = udp_from("127.0.0.2", 0);
    x.gw_port = bind_for_client(s, x.client_fd, FWX_PROTOCOL_UDP, FWX_FLAG_BIDIRECTIONAL, 0, NULL, bound);
    tu_run_peer(&g.loop, udp_filter_peers, &x);

    ck_assert_int_ge(u.events, 1);
    TU_EXPECT_HR(u.attach1, FWX_S_OK);
    ck_assert_int_eq(atomic_load(&u.f1.setsockets), 1);
    ck_assert_int_eq(atomic_load(&u.f1.failures), 0);
    ck_assert_msg(x.got1 == 5 && memcmp(x.first, "DATA1", 5) == 0, "first datagram: %zd bytes \"%s\"", x.got1,
                  x.first);
    ck_assert_msg(x.got2 == 5 && memcmp(x.second, "DATA2", 5) == 0, "third datagram: %zd bytes \"%s\"", x.got2,
                  x.second);
    ck_assert_msg(x.back == 4 && memcmp(x.answer, "BACK", 4) == 0, "the answer: %zd bytes \"%s\"", x.back, x.answer);
    ck_assert_int_eq(u.f1.had_addr, 1);
    if (set_buffer == 0) {
        ck_assert_uint_eq(atomic_load(&u.f1.buf_alloc), 4096); /* T18: the UDP default (doc/sdk-rules.md) */
        ck_assert_msg(x.got_big < 0, "the 5000-byte datagram reached the client (%zd bytes)", x.got_big);
        ck_assert_uint_eq(fwx_firewall_datagrams_dropped(g.fw), 1);
        ck_assert_msg(strstr(gw_log_text, "a 5000-byte datagram from 127.0.0.3:") != NULL &&
                          strstr(gw_log_text, "dropped: larger than the data filter's receive buffer") != NULL,
                      "no line for the dropped datagram:\n%s", gw_log_text);
        ck_assert_int_eq(atomic_load(&u.f1.datagrams), 3); /* data1, data2, back */
    } else {
        TU_EXPECT_HR(u.setbuf, FWX_S_OK);
        ck_assert_uint_eq(atomic_load(&u.f1.buf_alloc), set_buffer);
        ck_assert_msg(x.got_big == 5000, "the 5000-byte datagram: %zd bytes", x.got_big);
        ck_assert_uint_eq(atomic_load(&u.f1.max_len), 5000);
        ck_assert_uint_eq(fwx_firewall_datagrams_dropped(g.fw), 0);
        ck_assert_int_eq(atomic_load(&u.f1.datagrams), 4);
    }
    close(x.client_fd);
    IFWXConnection_Release(bound[0]);
    nat_session_end(s, ctl);
    tu_loop_run_for(&g.loop, 20);
    ck_assert_int_eq(atomic_load(&u.f1.detached), 1);
    ck_assert_uint_eq(stats(&g).connections, 0);
    gw_close(&g);
    ck_assert_uint_eq(fwx_refcount_get(&u.f1.refs), 1); /* every reference the core took is back */
}

START_TEST(udp_data_filter_default_buffer) { udp_bind_filter_case(0); }
END_TEST

START_TEST(udp_data_filter_set_buffer_size) { udp_bind_filter_case(8192); }
END_TEST

typedef struct udest {
    uint16_t socks_port, echo_port;
    udp_df_case *u;
    int rep, got;
    char echo[32];
    int f1_detached_while_open, f2_detached_while_open, f2_setsockets;
} udest;

static void *socks_udp_dest_client(void *arg)
{
    udest *x = arg;
    sudp s;
    x->rep = sudp_open(&s, x->socks_port, x->echo_port);
    if (x->rep == 0) {
        ssize_t r = sudp_roundtrip(&s, s.u);
        if (r > 10) {
            x->got = (int)(r - 10);
            memcpy(x->echo, s.in + 10, (size_t)x->got < sizeof x->echo - 1 ? (size_t)x->got : sizeof x->echo - 1);
        }
        /* The destination's flow idles out (200 ms) while the association stays open: its
           filters are detached then, not when the control connection goes. */
        for (int i = 0; i < 100 && atomic_load(&x->u->f2.detached) == 0; i++)
            usleep(20000);
        x->f1_detached_while_open = atomic_load(&x->u->f1.detached);
        x->f2_detached_while_open = atomic_load(&x->u->f2.detached);
        x->f2_setsockets = atomic_load(&x->u->f2.setsockets);
    }
    sudp_close(&s);
    return NULL;
}

/* SOCKS UDP ASSOCIATE: the fwx_Udp_Destination handler attaches one filter for the echo
   server's address and one for another destination. The first carries the destination's
   datagrams both ways (the client gets its ping back upper-cased twice over: there and back);
   the second never gets sockets. Both are detached when the destination's flow expires, while
   the association itself is still open. */
START_TEST(socks_udp_destination_filters)
{
    uecho e;
    uecho_start(&e, "127.0.0.3");
    gw g;
    gw_open(&g, NULL);
    static udp_df_case u;
    memset(&u, 0, sizeof u);
    udf_init(&u.f1);
    udf_init(&u.f2);
    char et[64];
    snprintf(et, sizeof et, "127.0.0.3:%u", e.port);
    u.dest1 = tu_addr(et);
    u.dest2 = tu_addr("127.0.0.4:9");
    udp_df_plugin(&g, fwx_Udp_Destination | fwxSourceWSP, &u);
    udest x = {.echo_port = e.port, .u = &u};
    gw_socks(&g, &x.socks_port);
    tu_run_peer(&g.loop, socks_udp_dest_client, &x);
    ck_assert_int_eq(x.rep, 0);
    ck_assert_int_eq(u.events, 1);
    TU_EXPECT_HR(u.attach1, FWX_S_OK);
    TU_EXPECT_HR(u.attach2, FWX_S_OK);
    ck_assert_msg(x.got == 8 && memcmp(x.echo, "PING-UDP", 8) == 0, "echo through the filter: %d bytes \"%s\"", x.got,
                  x.echo);
    ck_assert_int_eq(atomic_load(&u.f1.setsockets), 1);
    ck_assert_int_eq(atomic_load(&u.f1.datagrams), 2); /* the ping, and the echo */
    ck_assert_int_eq(x.f2_setsockets, 0);              /* not its destination */
    ck_assert_int_eq(x.f1_detached_while_open, 1);
    ck_assert_int_eq(x.f2_detached_while_open, 1);
    tu_loop_run_for(&g.loop, 50);
    ck_assert_uint_eq(stats(&g).connections, 0);
    gw_close(&g);
    uecho_stop(&e);
    ck_assert_uint_eq(fwx_refcount_get(&u.f1.refs), 1);
    ck_assert_uint_eq(fwx_refcount_get(&u.f2.refs), 1);
}
END_TEST

typedef struct upub {
    uint16_t port;
    ssize_t got;
    char echo[16];
} upub;

static void *udp_pub_client(void *arg)
{
    upub *x = arg;
    int a = udp_from("127.0.0.2", 0);
    char buf[64] = {0};
    udp_send(a, "127.0.0.1", x->port, "hello", 5);
    x->got = recv(a, buf, sizeof buf, 0);
    memcpy(x->echo, buf, 15);
    close(a);
    return NULL;
}

/* A UDP publishing rule: the fwx_AcceptedConnection handler attaches a data filter, and the
   flow's datagrams pass it both ways (the echo server gets "HELLO" and echoes it). */
START_TEST(udp_publishing_data_filter)
{
    uecho e;
    gw g;
    uint16_t lp = gw_udp_publish(&g, &e);
    static udp_df_case u;
    memset(&u, 0, sizeof u);
    udf_init(&u.f1);
    udf_init(&u.f2);
    udp_df_plugin(&g, fwx_AcceptedConnection | FWX_ALL_SOURCES | fwxAnyProtocol, &u);
    upub x = {.port = lp};
    tu_run_peer(&g.loop, udp_pub_client, &x);
    TU_EXPECT_HR(u.attach1, FWX_S_OK);
    ck_assert_int_eq(atomic_load(&u.f1.setsockets), 1);
    ck_assert_msg(x.got == 5 && memcmp(x.echo, "HELLO", 5) == 0, "echo: %zd bytes \"%s\"", x.got, x.echo);
    ck_assert_int_eq(atomic_load(&u.f1.datagrams), 2);
    tu_loop_run_for(&g.loop, 600); /* the flow idles out: its filter is detached */
    ck_assert_int_eq(atomic_load(&u.f1.detached), 1);
    ck_assert_uint_eq(stats(&g).connections, 0);
    gw_close(&g);
    uecho_stop(&e);
    ck_assert_uint_eq(fwx_refcount_get(&u.f1.refs), 1);
}
END_TEST

static fwx_result attach_on_connect(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    (void)s;
    udp_df_case *u = ctl->arg;
    if (ev->EventType == fwx_Connect_Tcp) {
        u->events++;
        u->f1.fw = ctl->fw;
        u->attach1 = IFWXConnection_AttachDataFilter(ev->Parameters.Connect.piConnection, &u->f1.iface,
                                                     fwx_dfpc_Middle, NULL);
    }
    return FWX_S_OK;
}

/* With the proxy backend, a connection the host reports itself is the host's to carry: if a
   filter attached a data filter to it, fwx_connection_open refuses it (and says why) unless the
   host said it relays through fwx_connection_relay. */
START_TEST(host_reported_data_filter_refused)
{
    gw g;
    gw_open(&g, NULL);
    static udp_df_case u;
    memset(&u, 0, sizeof u);
    udf_init(&u.f1);
    tp_control *ctl = tu_plugin_map("tp_good", NULL);
    ctl->hooks = fwx_Connect_Tcp | FWX_ALL_SOURCES;
    ctl->on_event = attach_on_connect;
    ctl->arg = &u;
    TU_EXPECT_HR(fwx_firewall_load_plugin(g.fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    struct sockaddr_storage c = tu_addr("127.0.0.2"), srv = tu_addr("127.0.0.3:21");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(g.fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *conn = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &conn), FWX_E_NOT_SUPPORTED);
    ck_assert_ptr_null(conn);
    TU_EXPECT_HR(u.attach1, FWX_S_OK);
    ck_assert_int_eq(atomic_load(&u.f1.setsockets), 0);
    ck_assert_int_eq(atomic_load(&u.f1.detached), 1);
    ck_assert_msg(strstr(gw_log_text, "refused: the host reported it") != NULL, "log:\n%s", gw_log_text);
    TU_EXPECT_HR(fwx_firewall_set_host_relay(g.fw, 1), FWX_S_OK);
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &conn), FWX_S_OK);
    ck_assert_uint_eq(fwx_connection_data_filters(conn), 1);
    fwx_connection_close(conn);
    fwx_session_close(s);
    IFWXSession_Release(s);
    ck_assert_uint_eq(stats(&g).connections, 0);
    gw_close(&g);
    ck_assert_uint_eq(fwx_refcount_get(&u.f1.refs), 1);
}
END_TEST

static Suite *proxy_suite(void)
{
    const tu_case cases[] = {
        {"publishing", publishing_relays_both_ways},
        {"relay sockets nodelay", relay_sockets_nodelay},
        {"publishing denied", publishing_denied_by_policy},
        {"bind for client", bind_for_client_real_port},
        {"bind for client ip filter", bind_for_client_get_ip_filter},
        {"private session", private_session_ends_on_last_release},
        {"redirect", redirect_real_port},
        {"nothing left open", session_end_and_close_drop_live_relays},
        {"socks connect", socks_connect_relays},
        {"socks refusals", socks_refusals},
        {"socks bind unapproved", socks_bind_needs_approval},
        {"socks bind approved", socks_bind_approved},
        {"socks bind policy", socks_bind_policy},
        {"socks curl", socks_with_curl},
        {"socks permission", socks_connect_admitted_by_permission},
        {"udp publishing", udp_publishing_flows},
        {"udp bind for client", udp_bind_for_client},
        {"socks udp associate", socks_udp_associate},
        {"udp data filter, default buffer", udp_data_filter_default_buffer},
        {"udp data filter, SetBufferSize", udp_data_filter_set_buffer_size},
        {"socks udp destination filters", socks_udp_destination_filters},
        {"host-reported data filter refused", host_reported_data_filter_refused},
        {"udp publishing data filter", udp_publishing_data_filter},
    };
    return TU_SUITE("proxy", cases, 60);
}

int main(void) { return tu_run_suite(proxy_suite()); }
