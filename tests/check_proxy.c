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

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define IO_TIMEOUT_S 5

/* ---- plain blocking peers ------------------------------------------------------------------- */

static int sock_from(const char *ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    return ntohs(a.sin_port);
}

static int connect_to(int fd, const char *ip, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return connect(fd, (struct sockaddr *)&a, sizeof a);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until EOF (or up to cap); returns the count, or -1 on error/timeout. */
static ssize_t read_all(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, cap - got, 0);
        if (r == 0)
            return (ssize_t)got;
        if (r < 0)
            return errno == ECONNRESET ? (ssize_t)got : -1;
        got += (size_t)r;
        if (got == cap)
            return (ssize_t)got;
    }
}

/* An echo server on the test's own thread: accept one connection, echo until EOF. */
typedef struct echo {
    int lfd;
    uint16_t port;
    pthread_t th;
    int conns;
} echo;

static void *echo_main(void *arg)
{
    echo *e = arg;
    uint8_t buf[65536];
    for (;;) {
        int c = accept(e->lfd, NULL, NULL);
        if (c < 0)
            return NULL;
        e->conns++;
        struct timeval tv = {IO_TIMEOUT_S, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        for (;;) {
            ssize_t r = recv(c, buf, sizeof buf, 0);
            if (r <= 0 || write_all(c, buf, (size_t)r) != 0)
                break;
        }
        shutdown(c, SHUT_WR);
        close(c);
    }
}

static void echo_start(echo *e, const char *ip)
{
    memset(e, 0, sizeof *e);
    e->lfd = sock_from(ip, 0);
    ck_assert_int_eq(listen(e->lfd, 16), 0);
    e->port = bound_port(e->lfd);
    pthread_create(&e->th, NULL, echo_main, e);
}

static void echo_stop(echo *e)
{
    shutdown(e->lfd, SHUT_RDWR);
    close(e->lfd);
    pthread_join(e->th, NULL);
}

/* ---- the gateway under test ----------------------------------------------------------------- */

typedef struct gw {
    uv_loop_t loop;
    fwx_firewall *fw;
} gw;

static void gw_open(gw *g, const char *policy)
{
    ck_assert_int_eq(uv_loop_init(&g->loop), 0);
    static struct sockaddr_storage local;
    local = tu_addr("127.0.0.1");
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.local_addresses = &local;
    o.n_local_addresses = 1;
    o.loopback_hosts = 1;
    o.port_min = 40000;
    o.port_max = 60999;
    o.log_level = getenv("FWX_TEST_LOG") ? FWX_LOG_DEBUG : FWX_LOG_ERROR;
    TU_EXPECT_HR(fwx_firewall_new(&g->loop, &o, &g->fw), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_backend(g->fw, "proxy"), FWX_S_OK);
    if (policy != NULL) {
        fwx_policy *p = NULL;
        fwx_config_error err;
        fwx_result hr = fwx_policy_load_string(policy, "test policy", &p, &err);
        ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s: %s", err.file, err.line, err.key, err.message);
        TU_EXPECT_HR(fwx_firewall_set_policy(g->fw, p), FWX_S_OK);
    }
}

static void gw_close(gw *g)
{
    fwx_firewall_close(g->fw, NULL, NULL);
    tu_loop_close_clean(&g->loop);
}

/* A peer thread: runs fn(arg) while the test's loop runs the gateway. */
typedef struct peer {
    pthread_t th;
    atomic_int done;
    void *(*fn)(void *);
    void *arg;
} peer;

static void *peer_main(void *arg)
{
    peer *p = arg;
    p->fn(p->arg);
    atomic_store(&p->done, 1);
    return NULL;
}

static void stop_loop(uv_timer_t *t) { uv_stop(t->loop); }

static void check_done(uv_timer_t *t)
{
    peer *p = t->data;
    if (atomic_load(&p->done))
        uv_stop(t->loop);
}

/* Runs the loop until the peer function returns (bounded: 20 s). */
static void run_peer(gw *g, void *(*fn)(void *), void *arg)
{
    peer p = {.fn = fn, .arg = arg};
    atomic_init(&p.done, 0);
    pthread_create(&p.th, NULL, peer_main, &p);
    uv_timer_t t, limit;
    uv_timer_init(&g->loop, &t);
    uv_timer_init(&g->loop, &limit);
    t.data = &p;
    uv_timer_start(&t, check_done, 5, 5);
    uv_timer_start(&limit, stop_loop, 20000, 0);
    uv_run(&g->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&limit, NULL);
    uv_run(&g->loop, UV_RUN_NOWAIT);
    ck_assert_msg(atomic_load(&p.done), "peer did not finish in 20 s");
    pthread_join(p.th, NULL);
}

static uint16_t free_port(const char *ip)
{
    int fd = sock_from(ip, 0);
    uint16_t p = bound_port(fd);
    close(fd);
    return p;
}

static fwx_firewall_stats stats(gw *g)
{
    fwx_firewall_stats st;
    fwx_firewall_get_stats(g->fw, &st);
    return st;
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
    uint8_t *out = malloc(x->n), *in = malloc(x->n + 1);
    for (size_t i = 0; i < x->n; i++)
        out[i] = (uint8_t)(i * 131 + 7);
    int fd = sock_from(x->from, 0);
    if (connect_to(fd, x->to, x->port) == 0 && write_all(fd, out, x->n) == 0) {
        shutdown(fd, SHUT_WR); /* half-close: the reply still comes back */
        ssize_t r = read_all(fd, in, x->n + 1);
        x->got = r < 0 ? 0 : (size_t)r;
        x->ok = r == (ssize_t)x->n && memcmp(in, out, x->n) == 0;
    }
    close(fd);
    free(out);
    free(in);
    return NULL;
}

static char *publish_policy(uint16_t listen, uint16_t server)
{
    static char text[2048];
    snprintf(text, sizeof text,
             "protocols = ( { name = \"svc\"; guid = \"{0badf00d-0000-0000-0000-000000000001}\"; protocol = \"tcp\";"
             " port = %u; direction = \"inbound\"; } );\n"
             "rules = ( { name = \"publish\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"svc\" ]; } );\n"
             "publishing = ( { name = \"svc\"; listen = \"127.0.0.1:%u\"; server = \"127.0.0.3:%u\";"
             " protocol = \"svc\"; full_proxy = true; } );\n",
             listen, listen, server);
    return text;
}

START_TEST(publishing_relays_both_ways)
{
    echo e;
    echo_start(&e, "127.0.0.3");
    gw g;
    uint16_t lp = free_port("127.0.0.1");
    gw_open(&g, publish_policy(lp, e.port));
    xfer small = {lp, "127.0.0.2", "127.0.0.1", 100, 0, 0}, big = {lp, "127.0.0.2", "127.0.0.1", 4u << 20, 0, 0};
    run_peer(&g, client_echo_roundtrip, &small);
    ck_assert_msg(small.ok, "small echo through the gateway: got %zu bytes", small.got);
    run_peer(&g, client_echo_roundtrip, &big);
    ck_assert_msg(big.ok, "4 MiB echo through the gateway: got %zu bytes", big.got);
    ck_assert_int_eq(e.conns, 2);
    tu_loop_run_for(&g.loop, 50); /* let the relays finish closing */
    fwx_firewall_stats st = stats(&g);
    ck_assert_uint_eq(st.connections, 0);
    ck_assert_uint_eq(st.sessions, 0); /* a published client's session ends with its last connection */
    gw_close(&g);
    echo_stop(&e);
}
END_TEST

static void *client_expect_refused(void *arg)
{
    xfer *x = arg;
    int fd = sock_from(x->from, 0);
    uint8_t b[16];
    /* Either the connect is refused or the gateway closes it at once, with nothing relayed. */
    if (connect_to(fd, x->to, x->port) != 0)
        x->ok = 1;
    else
        x->ok = (send(fd, "hello", 5, MSG_NOSIGNAL), read_all(fd, b, sizeof b)) == 0;
    close(fd);
    return NULL;
}

START_TEST(publishing_denied_by_policy)
{
    echo e;
    echo_start(&e, "127.0.0.3");
    gw g;
    uint16_t lp = free_port("127.0.0.1");
    char policy[2048];
    snprintf(policy, sizeof policy, "%s", publish_policy(lp, e.port));
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
    run_peer(&g, client_expect_refused, &x);
    ck_assert(x.ok);
    ck_assert_int_eq(e.conns, 0); /* never reached the server */
    run_peer(&g, client_echo_roundtrip, &y);
    ck_assert(y.ok);
    gw_close(&g);
    echo_stop(&e);
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
    uint8_t data[100000], in[100001];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    /* The third party tries first (catalog #23): closed on it, port kept for the server. */
    int t = sock_from("127.0.0.4", 0);
    if (connect_to(t, "127.0.0.1", b->gw_port) != 0)
        b->third_refused = 0;
    else
        b->third_refused = (send(t, "x", 1, MSG_NOSIGNAL), read_all(t, in, 10)) == 0;
    close(t);
    int s = sock_from("127.0.0.3", 0);
    if (connect_to(s, "127.0.0.1", b->gw_port) == 0 && write_all(s, data, sizeof data) == 0) {
        shutdown(s, SHUT_WR);
        int c = accept(b->client_lfd, NULL, NULL);
        if (c >= 0) {
            struct timeval tv = {IO_TIMEOUT_S, 0};
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ssize_t r = read_all(c, in, sizeof in);
            b->client_got = r < 0 ? 0 : (size_t)r;
            b->ok = r == (ssize_t)sizeof data && memcmp(in, data, sizeof data) == 0;
            close(c);
        }
    }
    close(s);
    /* One connection only: the port is gone now. */
    int s2 = sock_from("127.0.0.3", 0);
    b->second_refused = connect_to(s2, "127.0.0.1", b->gw_port) != 0;
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
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL, 0};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, ctl), FWX_S_OK);
    return s;
}

START_TEST(bind_for_client_real_port)
{
    gw g;
    gw_open(&g, NULL);
    IFWXConnection *ctl = NULL, *bound[1];
    IFWXSession *s = nat_session(&g, "127.0.0.2", &ctl);
    bfc_case b = {0};
    b.client_lfd = sock_from("127.0.0.2", 0);
    ck_assert_int_eq(listen(b.client_lfd, 4), 0);
    char ca_text[64];
    snprintf(ca_text, sizeof ca_text, "127.0.0.2:%u", bound_port(b.client_lfd));
    struct sockaddr_storage ca = tu_addr(ca_text), px = tu_addr("127.0.0.1:0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&ca), TU_SAM(px), sizeof px, FWX_PROTOCOL_TCP, 1,
                                           FWX_FLAG_TIMEOUT, 4, &FWX_GUID_NULL, NULL, NULL, NULL, bound),
                 FWX_S_OK);
    b.gw_port = ntohs(((struct sockaddr_in *)&px)->sin_port);
    ck_assert(b.gw_port >= 40000);
    run_peer(&g, server_data_connection, &b);
    ck_assert_msg(b.third_refused, "a third party got through the bound port");
    ck_assert_msg(b.ok, "the client's data port got %zu of 100000 bytes", b.client_got);
    ck_assert_msg(b.second_refused, "the bound port accepted a second connection");
    close(b.client_lfd);
    IFWXConnection_Release(bound[0]);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    tu_loop_run_for(&g.loop, 20);
    fwx_firewall_stats st = stats(&g);
    ck_assert_uint_eq(st.bound_ports, 0);
    gw_close(&g);
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
    echo e;
    echo_start(&e, "127.0.0.3");
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
    run_peer(&g, redirect_peers, &rc);
    ck_assert_msg(rc.other.ok, "someone other than the session's client used the redirect port");
    ck_assert_msg(rc.client.ok, "the client's redirected echo got %zu bytes", rc.client.got);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    gw_close(&g);
    echo_stop(&e);
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
    h->fd = sock_from("127.0.0.2", 0);
    if (connect_to(h->fd, "127.0.0.1", h->port) == 0 && write_all(h->fd, (const uint8_t *)"ping", 4) == 0) {
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
    h->eof = read_all(h->fd, b, sizeof b) == 0;
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
    echo e;
    echo_start(&e, "127.0.0.3");
    gw g;
    uint16_t lp = free_port("127.0.0.1");
    gw_open(&g, publish_policy(lp, e.port));
    hold h = {.port = lp};
    atomic_init(&h.connected, 0);
    run_peer(&g, client_hold, &h);
    ck_assert(atomic_load(&h.connected));
    ck_assert_uint_eq(stats(&g).connections, 1);
    /* Ending the client's session ends its relay: the client sees the connection close. */
    struct sockaddr_storage c = tu_addr("127.0.0.2");
    IFWXSession *s = NULL;
    TU_EXPECT_HR(IFWXFirewall_GetClientSession(fwx_firewall_iface(g.fw), TU_SA(c), tu_len(&c), &s), FWX_S_OK);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    IFWXSession_Release(s);
    run_peer(&g, client_wait_eof, &h);
    ck_assert(h.eof);
    /* And a firewall closed with a relay still open closes every socket. */
    hold h2 = {.port = lp};
    atomic_init(&h2.connected, 0);
    run_peer(&g, client_hold, &h2);
    ck_assert(atomic_load(&h2.connected));
    fwx_firewall_close(g.fw, NULL, NULL);
    run_peer(&g, client_wait_eof, &h2);
    ck_assert(h2.eof);
    run_peer(&g, nothing, NULL);
    tu_loop_close_clean(&g.loop);
    echo_stop(&e);
}
END_TEST

static Suite *proxy_suite(void)
{
    Suite *s = suite_create("proxy");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"publishing", publishing_relays_both_ways},
        {"publishing denied", publishing_denied_by_policy},
        {"bind for client", bind_for_client_real_port},
        {"redirect", redirect_real_port},
        {"nothing left open", session_end_and_close_drop_live_relays},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) { return tu_run_suite(proxy_suite()); }
