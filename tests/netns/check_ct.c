/*
 * fwx tests - conntrack events for the "nft" backend (lib/backends/nft/ct.c) in network namespaces:
 * NEW and DESTROY events with the right tuples and byte counts for real TCP (IPv4 and IPv6)
 * and UDP flows through the gateway namespace, fwx__ct_kill on a live flow, the mark filter,
 * ENOBUFS counted and survived, and the parser refusing every truncated or corrupted message.
 *
 * Everything happens in the namespaces each test makes (netns.h): the test process enters the
 * gateway namespace before it opens the netlink sockets or writes a sysctl (and checks it is
 * there: the host's own conntrack table and sysctls are never touched). A small nftables table
 * in the gateway namespace turns conntrack on there (a fresh namespace tracks nothing until a
 * rule needs it), and, per test, drops mid-stream packets of unknown flows or sets marks.
 * Peers run on the test's thread with bounded waits; the loop runs only while waiting for
 * events.
 *
 * Not root, or no namespaces: the whole program exits 77 (meson: skipped) with the reason.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include <linux/netfilter/nf_conntrack_tcp.h>
#include "netutil.h"
#include "netns.h"
#include "backends/nft/ct.h"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* The helpers here take addresses whole, as the sockets give them; a flow's are compact. */
static struct sockaddr_storage whole(const fwx__sa *a)
{
    struct sockaddr_storage ss;
    fwx__sa_get(&ss, a);
    return ss;
}

static uint16_t flow_port(const fwx__sa *a)
{
    struct sockaddr_storage ss = whole(a);
    return port_of(&ss);
}

/* ---- the gateway and its events ---------------------------------------------------------------- */

#define MAX_EV 512
typedef struct rec {
    int ev;
    fwx__ct_flow f;
} rec;

typedef struct ctx {
    tn_topo topo;
    uv_loop_t loop;
    fwx__ct *ct;
    rec ev[MAX_EV];
    size_t n;
    int log_lines;
    int close_on_event; /* the callback closes the events at the first one */
} ctx;

static void on_ct(void *arg, int event, const fwx__ct_flow *f)
{
    ctx *c = arg;
    ck_assert(event == FWX__CT_NEW || event == FWX__CT_DESTROY || event == FWX__CT_END);
    if (getenv("FWX_TEST_LOG")) {
        char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
        const struct sockaddr_storage src = whole(&f->src), dst = whole(&f->dst), *s = &src, *d = &dst;
        inet_ntop(s->ss_family, s->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)s)->sin_addr
                                                         : (const void *)&((const struct sockaddr_in6 *)s)->sin6_addr,
                  a, sizeof a);
        inet_ntop(d->ss_family, d->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)d)->sin_addr
                                                         : (const void *)&((const struct sockaddr_in6 *)d)->sin6_addr,
                  b, sizeof b);
        fprintf(stderr, "%s proto %d %s:%u -> %s:%u mark 0x%x bytes %llu/%llu\n",
                event == FWX__CT_NEW ? "NEW" : event == FWX__CT_END ? "END" : "DESTROY",
                (int)f->protocol, a, port_of(s), b, port_of(d), f->mark, (unsigned long long)f->bytes_orig,
                (unsigned long long)f->bytes_reply);
    }
    if (c->n < MAX_EV) {
        c->ev[c->n].ev = event;
        c->ev[c->n].f = *f;
        c->n++;
    }
    if (c->close_on_event) {
        fwx__ct_close(c->ct);
        c->ct = NULL;
    }
}

static void on_log(void *arg, fwx_log_level level, const char *msg)
{
    ctx *c = arg;
    (void)level;
    c->log_lines++;
    if (getenv("FWX_TEST_LOG"))
        fprintf(stderr, "%s\n", msg);
}

/* Aborts unless this thread is in the gateway namespace: a guard before every sysctl write. */
static void assert_in_gateway(ctx *c)
{
    struct stat here, gw;
    ck_assert_int_eq(stat("/proc/thread-self/ns/net", &here), 0);
    ck_assert_int_eq(fstat(c->topo.gateway_fd, &gw), 0);
    ck_assert_msg(here.st_ino == gw.st_ino && here.st_dev == gw.st_dev, "not in the gateway namespace");
}

static void sysctl_gw(ctx *c, const char *path, const char *value)
{
    assert_in_gateway(c);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(write(fd, value, strlen(value)), (ssize_t)strlen(value));
    close(fd);
}

static void nft_gw(ctx *c, const char *cmds)
{
    assert_in_gateway(c);
    tn_nft_do(cmds);
}

/* The topology, this thread in the gateway namespace, short conntrack timeouts there, a table
   that makes the namespace track connections (plus `extra` rules in its forward chain), and
   the events open. */
static void ct_up(ctx *c, const char *extra)
{
    memset(c, 0, sizeof *c);
    tn_up(&c->topo);
    tn_enter(c->topo.gateway_fd);
    assert_in_gateway(c);
    /* Short timeouts so DESTROY comes within the test (these are this namespace's own). */
    sysctl_gw(c, "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait", "1");
    sysctl_gw(c, "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close", "1");
    sysctl_gw(c, "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_fin_wait", "1");
    sysctl_gw(c, "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_last_ack", "1");
    sysctl_gw(c, "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait", "1");
    sysctl_gw(c, "/proc/sys/net/netfilter/nf_conntrack_udp_timeout", "1");
    sysctl_gw(c, "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream", "1");
    char cmds[1024];
    snprintf(cmds, sizeof cmds,
             "add table inet fwxct\n"
             "add chain inet fwxct fw { type filter hook forward priority 0; policy accept; }\n"
             "add rule inet fwxct fw ct state established,related accept\n"
             "%s",
             extra ? extra : "");
    nft_gw(c, cmds);
    ck_assert_int_eq(uv_loop_init(&c->loop), 0);
    TU_EXPECT_HR(fwx__ct_open(&c->loop, on_ct, c, &c->ct), FWX_S_OK);
    fwx__ct_set_log(c->ct, on_log, c);
    fwx__ct_stats st;
    fwx__ct_get_stats(c->ct, &st);
    ck_assert_msg(st.accounting == 1, "accounting was not turned on in the gateway namespace");
}

static void ct_down(ctx *c)
{
    fwx__ct_close(c->ct);
    c->ct = NULL;
    tu_loop_close_clean(&c->loop);
    tn_down(&c->topo);
}

/* Runs the loop for ms (bounded), returning early when pred says so. */
static int run_until(ctx *c, int (*pred)(ctx *, const void *), const void *arg, uint64_t ms)
{
    uint64_t end = tn_now_ms() + ms;
    for (;;) {
        uv_run(&c->loop, UV_RUN_NOWAIT);
        if (pred != NULL && pred(c, arg))
            return 1;
        if (tn_now_ms() >= end)
            return 0;
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 && x->sin6_port == y->sin6_port;
}

static int same_flow_addr(const fwx__sa *flow_addr, const struct sockaddr_storage *b)
{
    const struct sockaddr_storage a = whole(flow_addr);
    return same_addr(&a, b);
}

/* What an event must match: the event, the protocol and the original tuple. */
typedef struct want {
    int ev;
    int32_t proto;
    struct sockaddr_storage src, dst;
} want;

static const rec *find(ctx *c, const want *w)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->ev[i].ev == w->ev && c->ev[i].f.protocol == w->proto && same_flow_addr(&c->ev[i].f.src, &w->src) &&
            same_flow_addr(&c->ev[i].f.dst, &w->dst))
            return &c->ev[i];
    return NULL;
}

static int pred_found(ctx *c, const void *arg) { return find(c, arg) != NULL; }

static const rec *wait_event(ctx *c, int ev, int32_t proto, const struct sockaddr_storage *src,
                             const struct sockaddr_storage *dst, uint64_t ms)
{
    want w = {.ev = ev, .proto = proto, .src = *src, .dst = *dst};
    (void)run_until(c, pred_found, &w, ms);
    return find(c, &w);
}

/* ---- peers ------------------------------------------------------------------------------------- */

static int sock_in(int nsfd, const char *addr_port, int type, struct sockaddr_storage *bound)
{
    struct sockaddr_storage a = tu_addr(addr_port);
    int fd = tn_socket_in(nsfd, a.ss_family, type);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ck_assert_msg(bind(fd, TU_SA(a), tu_len(&a)) == 0, "bind %s: %s", addr_port, strerror(errno));
    socklen_t l = sizeof *bound;
    ck_assert_int_eq(getsockname(fd, TU_SAM(*bound), &l), 0);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* A connected TCP pair client -> server through the gateway: *cfd, *sfd and the tuple. */
static void tcp_pair(ctx *c, const char *client, const char *server, int *cfd, int *sfd,
                     struct sockaddr_storage *src, struct sockaddr_storage *dst)
{
    int l = sock_in(c->topo.server_fd, server, SOCK_STREAM, dst);
    ck_assert_int_eq(listen(l, 4), 0);
    *cfd = sock_in(c->topo.client_fd, client, SOCK_STREAM, src);
    /* Up to 5 s: a fresh IPv6 link may lose the first SYN to neighbour discovery (1 s retry). */
    struct timeval tv = {5, 0}, tv2 = {2, 0};
    setsockopt(*cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ck_assert_msg(connect(*cfd, TU_SA(*dst), tu_len(dst)) == 0, "connect: %s", strerror(errno));
    setsockopt(*cfd, SOL_SOCKET, SO_SNDTIMEO, &tv2, sizeof tv2);
    *sfd = accept(l, NULL, NULL);
    ck_assert_int_ge(*sfd, 0);
    close(l);
}

/* Sends n bytes one way and reads them on the other (both sides on this thread: n fits the
   socket buffers). */
static void push(int from, int to, size_t n)
{
    static char buf[65536];
    ck_assert_uint_le(n, sizeof buf);
    memset(buf, 'x', n);
    ck_assert_int_eq(tu_write_all(from, buf, n), 0);
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(to, buf, n - got, 0);
        ck_assert_msg(r > 0, "recv: %zd %s", r, strerror(errno));
        got += (size_t)r;
    }
}

/* ---- tests ------------------------------------------------------------------------------------- */

static void tcp_new_destroy_for(const char *client, const char *server)
{
    ctx c;
    ct_up(&c, NULL);
    int cfd, sfd;
    struct sockaddr_storage src, dst;
    TU_EXPECT_HR(fwx__ct_follow_updates(c.ct), FWX_S_OK); /* for the END */
    tcp_pair(&c, client, server, &cfd, &sfd, &src, &dst);
    const rec *r = wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src, &dst, 2000);
    ck_assert_msg(r != NULL, "no NEW event for the TCP connection (%zu events)", c.n);
    ck_assert(same_flow_addr(&r->f.reply_src, &dst)); /* no NAT: the reply comes from the target */
    ck_assert_uint_eq(r->f.mark, 0);

    const size_t N = 40000;
    push(cfd, sfd, N);
    push(sfd, cfd, N / 2);
    /* While it lives: its counters, read without touching the entry. */
    uint64_t o = 0, rp = 0;
    TU_EXPECT_HR(fwx__ct_get_counted(c.ct, &r->f, &o, &rp), FWX_S_OK);
    ck_assert_msg(o >= N && rp >= N / 2, "get: bytes %llu/%llu", (unsigned long long)o, (unsigned long long)rp);
    close(cfd);
    close(sfd);
    /* The close is an END (TIME_WAIT or CLOSE) at once, the DESTROY when the entry goes. */
    const rec *e = wait_event(&c, FWX__CT_END, FWX_PROTOCOL_TCP, &src, &dst, 5000);
    ck_assert_msg(e != NULL, "no END event when the TCP connection closed");
    ck_assert(e->f.tcp_state == TCP_CONNTRACK_TIME_WAIT || e->f.tcp_state == TCP_CONNTRACK_CLOSE);
    r = wait_event(&c, FWX__CT_DESTROY, FWX_PROTOCOL_TCP, &src, &dst, 15000);
    ck_assert_msg(r != NULL, "no DESTROY event for the TCP connection");
    ck_assert(same_flow_addr(&r->f.reply_src, &dst));
    ck_assert_msg(r->f.bytes_orig >= N, "bytes_orig %llu < %zu", (unsigned long long)r->f.bytes_orig, N);
    ck_assert_msg(r->f.bytes_reply >= N / 2, "bytes_reply %llu < %zu", (unsigned long long)r->f.bytes_reply, N / 2);
    /* Exactly one NEW and one DESTROY for this tuple. */
    size_t news = 0, destroys = 0, ends = 0;
    for (size_t i = 0; i < c.n; i++)
        if (same_flow_addr(&c.ev[i].f.src, &src) && same_flow_addr(&c.ev[i].f.dst, &dst))
            *(c.ev[i].ev == FWX__CT_NEW ? &news : c.ev[i].ev == FWX__CT_DESTROY ? &destroys : &ends) += 1;
    ck_assert_uint_eq(news, 1);
    ck_assert_uint_eq(destroys, 1);
    ck_assert_uint_ge(ends, 1); /* TIME_WAIT, and maybe CLOSE after it */
    fwx__ct_stats st;
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_uint_eq(st.malformed, 0);
    ck_assert_uint_eq(st.overruns, 0);
    ct_down(&c);
}

START_TEST(tcp_new_destroy)
{
    tcp_new_destroy_for(TN_CLIENT ":0", TN_SERVER ":0");
}
END_TEST

START_TEST(tcp6_new_destroy)
{
    /* IPv6 beside the IPv4 topology: ULA addresses inside the namespaces only, added right
       after ct_up makes the topology. */
    ctx c;
    ct_up(&c, NULL);
    tn_add_ipv6(&c.topo);
    int cfd, sfd;
    struct sockaddr_storage src, dst;
    tcp_pair(&c, "[" TN6_CLIENT "]:0", "[" TN6_SERVER "]:0", &cfd, &sfd, &src, &dst);
    const rec *r = wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src, &dst, 2000);
    ck_assert_msg(r != NULL, "no NEW event for the IPv6 TCP connection (%zu events)", c.n);
    ck_assert_int_eq(r->f.src.sa.sa_family, AF_INET6);
    ck_assert(same_flow_addr(&r->f.reply_src, &dst));
    push(cfd, sfd, 10000);
    close(cfd);
    close(sfd);
    r = wait_event(&c, FWX__CT_DESTROY, FWX_PROTOCOL_TCP, &src, &dst, 15000);
    ck_assert_msg(r != NULL, "no DESTROY event for the IPv6 TCP connection");
    ck_assert_uint_ge(r->f.bytes_orig, 10000);
    ct_down(&c);
}
END_TEST

START_TEST(udp_new_destroy)
{
    ctx c;
    ct_up(&c, NULL);
    struct sockaddr_storage src, dst, from;
    int s = sock_in(c.topo.server_fd, TN_SERVER ":0", SOCK_DGRAM, &dst);
    int u = sock_in(c.topo.client_fd, TN_CLIENT ":0", SOCK_DGRAM, &src);
    char b[1200];
    memset(b, 'u', sizeof b);
    ck_assert_int_eq(sendto(u, b, sizeof b, 0, TU_SA(dst), tu_len(&dst)), (ssize_t)sizeof b);
    socklen_t fl = sizeof from;
    ck_assert_int_eq(recvfrom(s, b, sizeof b, 0, TU_SAM(from), &fl), (ssize_t)sizeof b);
    ck_assert(same_addr(&from, &src));
    ck_assert_int_eq(sendto(s, b, 100, 0, TU_SA(from), fl), 100);
    ck_assert_int_eq(recv(u, b, sizeof b, 0), 100);
    const rec *r = wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_UDP, &src, &dst, 2000);
    ck_assert_msg(r != NULL, "no NEW event for the UDP flow");
    ck_assert(same_flow_addr(&r->f.reply_src, &dst));
    /* DESTROY at the (1 s) UDP timeout, when the kernel's garbage collector reaps it. */
    r = wait_event(&c, FWX__CT_DESTROY, FWX_PROTOCOL_UDP, &src, &dst, 15000);
    ck_assert_msg(r != NULL, "no DESTROY event for the UDP flow");
    ck_assert_uint_ge(r->f.bytes_orig, sizeof b);
    ck_assert_uint_ge(r->f.bytes_reply, 100);
    close(u);
    close(s);
    ct_down(&c);
}
END_TEST

START_TEST(kill_live_tcp)
{
    /* As the nft backend's forward chain does: a packet of an unknown flow that is not a SYN is
       dropped (without it, conntrack's loose pick-up would simply re-track the flow). */
    ctx c;
    ct_up(&c, "add rule inet fwxct fw ct state new tcp flags & (syn|ack) != syn drop\n");
    int cfd, sfd;
    struct sockaddr_storage src, dst;
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":0", &cfd, &sfd, &src, &dst);
    const rec *r = wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src, &dst, 2000);
    ck_assert_ptr_nonnull(r);
    fwx__ct_flow f = r->f;
    push(cfd, sfd, 1000);

    TU_EXPECT_HR(fwx__ct_kill(c.ct, &f), FWX_S_OK);
    r = wait_event(&c, FWX__CT_DESTROY, FWX_PROTOCOL_TCP, &src, &dst, 2000);
    ck_assert_msg(r != NULL, "no DESTROY event after the kill");
    ck_assert_uint_ge(r->f.bytes_orig, 1000);
    /* Gone: a second kill finds nothing. */
    TU_EXPECT_HR(fwx__ct_kill(c.ct, &f), FWX_E_NOT_FOUND);

    /* The next packet does not get through: the server reads nothing within 2 s. */
    ck_assert_int_eq(send(cfd, "after", 5, 0), 5);
    uint64_t t0 = tn_now_ms();
    char b[16];
    ssize_t n = recv(sfd, b, sizeof b, 0); /* SO_RCVTIMEO 2 s */
    ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "data got through after the kill (%zd)", n);
    ck_assert_uint_le(tn_now_ms() - t0, 3000);
    /* And no NEW event was reported for the dropped mid-stream packets. */
    want w = {.ev = FWX__CT_NEW, .proto = FWX_PROTOCOL_TCP, .src = src, .dst = dst};
    size_t news = 0;
    for (size_t i = 0; i < c.n; i++)
        if (c.ev[i].ev == w.ev && same_flow_addr(&c.ev[i].f.src, &src))
            news++;
    ck_assert_uint_eq(news, 1);

    /* Bad requests. */
    fwx__ct_flow bad = f;
    bad.protocol = 1;
    TU_EXPECT_HR(fwx__ct_kill(c.ct, &bad), FWX_E_INVALIDARG);
    bad = f;
    struct sockaddr_storage v6 = tu_addr("[" TN6_SERVER "]:80");
    fwx__sa_set(&bad.dst, (const struct sockaddr *)&v6);
    TU_EXPECT_HR(fwx__ct_kill(c.ct, &bad), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx__ct_kill(c.ct, NULL), FWX_E_INVALIDARG);
    close(cfd);
    close(sfd);
    ct_down(&c);
}
END_TEST

START_TEST(kill_udp)
{
    ctx c;
    ct_up(&c, NULL);
    /* A long UDP timeout here, so only the kill can end it within the test. */
    sysctl_gw(&c, "/proc/sys/net/netfilter/nf_conntrack_udp_timeout", "30");
    sysctl_gw(&c, "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream", "30");
    struct sockaddr_storage src, dst;
    int s = sock_in(c.topo.server_fd, TN_SERVER ":0", SOCK_DGRAM, &dst);
    int u = sock_in(c.topo.client_fd, TN_CLIENT ":0", SOCK_DGRAM, &src);
    ck_assert_int_eq(sendto(u, "q", 1, 0, TU_SA(dst), tu_len(&dst)), 1);
    char b[8];
    ck_assert_int_eq(recv(s, b, sizeof b, 0), 1);
    const rec *r = wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_UDP, &src, &dst, 2000);
    ck_assert_ptr_nonnull(r);
    fwx__ct_flow f = r->f;
    TU_EXPECT_HR(fwx__ct_kill(c.ct, &f), FWX_S_OK);
    ck_assert_ptr_nonnull(wait_event(&c, FWX__CT_DESTROY, FWX_PROTOCOL_UDP, &src, &dst, 2000));
    close(u);
    close(s);
    ct_down(&c);
}
END_TEST

START_TEST(mark_filter)
{
    ctx c;
    ct_up(&c, "add rule inet fwxct fw ct state new tcp dport 5001 ct mark set 0x00000120\n");
    TU_EXPECT_HR(fwx__ct_set_mark_filter(c.ct, 0x100, 0xf00), FWX_S_OK);
    int c1, s1, c2, s2;
    struct sockaddr_storage src1, dst1, src2, dst2;
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":5001", &c1, &s1, &src1, &dst1);
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":5002", &c2, &s2, &src2, &dst2);
    const rec *r = wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src1, &dst1, 2000);
    ck_assert_msg(r != NULL, "no NEW event for the marked flow");
    ck_assert_uint_eq(r->f.mark, 0x120);
    (void)run_until(&c, NULL, NULL, 300);
    want w2 = {.ev = FWX__CT_NEW, .proto = FWX_PROTOCOL_TCP, .src = src2, .dst = dst2};
    ck_assert_msg(find(&c, &w2) == NULL, "the unmarked flow was reported");
    fwx__ct_stats st;
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_int_eq(st.kernel_filter, 1);
    ck_assert_uint_eq(st.events, 1); /* the kernel kept the unmarked flow's NEW from the socket */
    ck_assert_uint_eq(st.reported, 1);

    /* Kill works for any entry, reported or not; the unmarked DESTROY stays filtered too. */
    fwx__ct_flow f2 = {.protocol = FWX_PROTOCOL_TCP};
    fwx__sa_set(&f2.src, (const struct sockaddr *)&src2);
    fwx__sa_set(&f2.dst, (const struct sockaddr *)&dst2);
    TU_EXPECT_HR(fwx__ct_kill(c.ct, &f2), FWX_S_OK);
    TU_EXPECT_HR(fwx__ct_kill(c.ct, &r->f), FWX_S_OK);
    ck_assert_ptr_nonnull(wait_event(&c, FWX__CT_DESTROY, FWX_PROTOCOL_TCP, &src1, &dst1, 2000));
    (void)run_until(&c, NULL, NULL, 300);
    w2.ev = FWX__CT_DESTROY;
    ck_assert_msg(find(&c, &w2) == NULL, "the unmarked flow's DESTROY was reported");

    /* 0/0 reports everything again (the kernel's filter removed). */
    TU_EXPECT_HR(fwx__ct_set_mark_filter(c.ct, 0, 0), FWX_S_OK);
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_int_eq(st.kernel_filter, 0);
    int c3, s3;
    struct sockaddr_storage src3, dst3;
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":5003", &c3, &s3, &src3, &dst3);
    ck_assert_ptr_nonnull(wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src3, &dst3, 2000));
    int fds[] = {c1, s1, c2, s2, c3, s3};
    for (size_t i = 0; i < 6; i++)
        close(fds[i]);
    ct_down(&c);
}
END_TEST

static int pred_overrun(ctx *c, const void *arg)
{
    (void)arg;
    fwx__ct_stats st;
    fwx__ct_get_stats(c->ct, &st);
    return st.overruns > 0;
}

START_TEST(enobufs_counted_not_fatal)
{
    ctx c;
    ct_up(&c, NULL);
    fwx__ct_set_rcvbuf(c.ct, 4096); /* a few events at most */
    struct sockaddr_storage dst, src;
    int s = sock_in(c.topo.server_fd, TN_SERVER ":0", SOCK_DGRAM, &dst);
    /* 300 UDP flows (one per client port) while the loop does not run: the buffer overflows. */
    for (int i = 0; i < 300; i++) {
        int u = sock_in(c.topo.client_fd, TN_CLIENT ":0", SOCK_DGRAM, &src);
        ck_assert_int_eq(sendto(u, "x", 1, 0, TU_SA(dst), tu_len(&dst)), 1);
        close(u);
    }
    ck_assert_msg(run_until(&c, pred_overrun, NULL, 3000), "no overrun was counted");
    ck_assert_int_ge(c.log_lines, 1);
    /* Still working: a new flow after the overrun is reported. */
    fwx__ct_set_rcvbuf(c.ct, 1 << 20);
    (void)run_until(&c, NULL, NULL, 200);
    int cfd, sfd;
    struct sockaddr_storage s1, d1;
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":0", &cfd, &sfd, &s1, &d1);
    ck_assert_ptr_nonnull(wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &s1, &d1, 2000));
    close(cfd);
    close(sfd);
    close(s);
    ct_down(&c);
}
END_TEST

START_TEST(close_inside_callback)
{
    /* fwx__ct_close from the callback with more events queued: no callback after it, and the
       memory is freed in the close callback (ASan: no leak, no use after free). */
    ctx c;
    ct_up(&c, NULL);
    struct sockaddr_storage dst, src;
    int s = sock_in(c.topo.server_fd, TN_SERVER ":0", SOCK_DGRAM, &dst);
    for (int i = 0; i < 5; i++) {
        int u = sock_in(c.topo.client_fd, TN_CLIENT ":0", SOCK_DGRAM, &src);
        ck_assert_int_eq(sendto(u, "x", 1, 0, TU_SA(dst), tu_len(&dst)), 1);
        close(u);
    }
    c.close_on_event = 1;
    (void)run_until(&c, NULL, NULL, 500);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_ptr_null(c.ct);
    close(s);
    fwx__ct_close(NULL);
    tu_loop_close_clean(&c.loop);
    tn_down(&c.topo);
}
END_TEST

/* ---- the kernel's filter: flows that are not fwx's never reach it --------------------------------- */

/* A second, unfiltered reader of the same namespace: proves the unrelated flows made events. */
typedef struct control {
    uint64_t news, destroys;
    fwx__ct_flow flows[64];
    size_t n;
} control;

static void on_control(void *arg, int event, const fwx__ct_flow *f)
{
    control *k = arg;
    if (event == FWX__CT_NEW) {
        k->news++;
        if (k->n < sizeof k->flows / sizeof k->flows[0])
            k->flows[k->n++] = *f;
    } else if (event == FWX__CT_DESTROY) {
        k->destroys++;
    }
}

static int pred_control(ctx *c, const void *arg)
{
    (void)c;
    const control *k = arg;
    return k->news >= 40 && k->destroys >= k->n;
}

static int pred_control_news(ctx *c, const void *arg)
{
    (void)c;
    return ((const control *)arg)->news >= 48;
}

/* A reader and how many events it must have read. */
typedef struct reads {
    fwx__ct *ct;
    uint64_t n;
} reads;

/* The unfiltered control reader has read at least w->n events (it reads paced: up to
   CT_PACE_MS after the filtered one). */
static int pred_control_read(ctx *c, const void *arg)
{
    (void)c;
    const reads *w = arg;
    fwx__ct_stats cs;
    fwx__ct_get_stats(w->ct, &cs);
    return cs.events >= w->n;
}

START_TEST(kernel_filter_unrelated_zero)
{
    /* The nft backend's filter (the ADMITTED bit); only port 5001 carries the mark. Unrelated
       flows: 20 TCP and 20 UDP forwarded through the gateway, 8 TCP on the gateway's own
       loopback. The control reader sees all of them come and go; the filtered one reads
       nothing until the one marked flow, then exactly its NEW. */
    ctx c;
    ct_up(&c, "add rule inet fwxct fw ct state new tcp dport 5001 ct mark set 0x20000000\n");
    TU_EXPECT_HR(fwx__ct_set_mark_filter(c.ct, 0x20000000u, 0x20000000u), FWX_S_OK);
    /* The UDP entries must still be there when the control kills them (ct_up made it 1 s). */
    sysctl_gw(&c, "/proc/sys/net/netfilter/nf_conntrack_udp_timeout", "60");
    /* Sweeps (a walk of the whole table) every 50 ms, but only while a flow of ours is open. */
    fwx__ct_set_sweep(c.ct, 50);
    control k = {0};
    fwx__ct *ctl = NULL;
    TU_EXPECT_HR(fwx__ct_open(&c.loop, on_control, &k, &ctl), FWX_S_OK);
    int fds[96];
    size_t nf = 0;
    for (int i = 0; i < 20; i++) {
        int cf, sf;
        struct sockaddr_storage src, dst;
        tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":5002", &cf, &sf, &src, &dst);
        fds[nf++] = cf;
        fds[nf++] = sf;
    }
    struct sockaddr_storage udst, usrc;
    int us = sock_in(c.topo.server_fd, TN_SERVER ":0", SOCK_DGRAM, &udst);
    for (int i = 0; i < 20; i++) {
        int u = sock_in(c.topo.client_fd, TN_CLIENT ":0", SOCK_DGRAM, &usrc);
        ck_assert_int_eq(sendto(u, "u", 1, 0, TU_SA(udst), tu_len(&udst)), 1);
        char b[4];
        ck_assert_int_eq(recv(us, b, sizeof b, 0), 1);
        fds[nf++] = u; /* kept open: a closed one's port may come again, to the same entry (no NEW) */
    }
    /* The gateway's own loopback (this thread is in the gateway namespace). */
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t ll = sizeof lo;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&lo, sizeof lo), 0);
    ck_assert_int_eq(listen(ls, 16), 0);
    ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&lo, &ll), 0);
    for (int i = 0; i < 8; i++) {
        int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(connect(a, (struct sockaddr *)&lo, sizeof lo), 0);
        int b = accept(ls, NULL, NULL);
        ck_assert_int_ge(b, 0);
        fds[nf++] = a;
        fds[nf++] = b;
    }
    /* Each unrelated entry ends too (killed: its DESTROY now, not after a timeout). */
    k.destroys = 0;
    ck_assert_msg(run_until(&c, pred_control_news, &k, 3000), "control: %llu NEW of 48", (unsigned long long)k.news);
    for (size_t i = 0; i < k.n; i++)
        TU_EXPECT_HR(fwx__ct_kill(ctl, &k.flows[i]), FWX_S_OK);
    ck_assert_msg(run_until(&c, pred_control, &k, 3000), "control: %llu NEW, %llu DESTROY of %zu",
                  (unsigned long long)k.news, (unsigned long long)k.destroys, k.n);
    /* The one marked flow: the filtered reader sees it, after nothing else. */
    int c1, s1;
    struct sockaddr_storage src1, dst1;
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":5001", &c1, &s1, &src1, &dst1);
    const rec *r = wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src1, &dst1, 2000);
    ck_assert_msg(r != NULL, "no NEW event for the marked flow");
    ck_assert_uint_eq(r->f.mark, 0x20000000u);
    fwx__ct_stats st, cs;
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_int_eq(st.kernel_filter, 1);
    ck_assert_uint_eq(st.events, 1); /* what crossed the socket: the marked NEW, nothing of the other flows */
    ck_assert_uint_eq(st.reported, 1);
    ck_assert_uint_eq(st.malformed, 0);
    ck_assert_uint_eq(st.overruns, 0);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_uint_eq(st.sweeps, 0);          /* the loop ran for seconds: no flow of ours, no walk */
    const reads all = {ctl, 2 * 48 + 1};
    (void)run_until(&c, pred_control_read, &all, 1000);
    fwx__ct_get_stats(ctl, &cs);
    ck_assert_uint_ge(cs.events, 2 * 48 + 1); /* the control read every NEW and DESTROY, and the marked NEW */
    (void)run_until(&c, NULL, NULL, 300);
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_uint_ge(st.sweeps, 1);          /* one open now */
    fwx__ct_close(ctl);
    close(c1);
    close(s1);
    for (size_t i = 0; i < nf; i++)
        close(fds[i]);
    close(us);
    close(ls);
    ct_down(&c);
}
END_TEST

/* n UDP entries of no one's (mark 0) made straight in the gateway namespace's table through
   ctnetlink, each with a 600 s timeout: a big table without n real flows. */
static void fill_table(ctx *c, unsigned n)
{
    assert_in_gateway(c);
    struct nfct_handle *h = nfct_open(CONNTRACK, 0);
    ck_assert_ptr_nonnull(h);
    struct nf_conntrack *e = nfct_new();
    ck_assert_ptr_nonnull(e);
    struct in_addr cl, sv;
    ck_assert_int_eq(inet_pton(AF_INET, TN_CLIENT, &cl), 1);
    ck_assert_int_eq(inet_pton(AF_INET, TN_SERVER, &sv), 1);
    unsigned made = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t sport = htons((uint16_t)(1024 + i % 60000)), dport = htons((uint16_t)(2000 + i / 60000));
        nfct_set_attr_u8(e, ATTR_L3PROTO, AF_INET);
        nfct_set_attr_u32(e, ATTR_IPV4_SRC, cl.s_addr);
        nfct_set_attr_u32(e, ATTR_IPV4_DST, sv.s_addr);
        nfct_set_attr_u8(e, ATTR_L4PROTO, IPPROTO_UDP);
        nfct_set_attr_u16(e, ATTR_PORT_SRC, sport);
        nfct_set_attr_u16(e, ATTR_PORT_DST, dport);
        nfct_setobjopt(e, NFCT_SOPT_SETUP_REPLY);
        nfct_set_attr_u32(e, ATTR_TIMEOUT, 600);
        if (nfct_query(h, NFCT_Q_CREATE, e) == 0)
            made++;
    }
    nfct_destroy(e);
    nfct_close(h);
    ck_assert_msg(made == n, "made %u of %u conntrack entries: %s", made, n, strerror(errno));
}

START_TEST(sweep_budget)
{
    /* A sweep walks the whole table inside the kernel: with 40,000 entries (a few ms) asked
       every millisecond, walking would take most of fwx's time. The wait after a walk is
       stretched to 1,000 times its length (ct.c CT_SWEEP_SHARE), so one open flow of ours
       and half a second of loop make one walk, not a hundred. */
    ctx c;
    ct_up(&c, "add rule inet fwxct fw ct state new tcp dport 5001 ct mark set 0x20000000\n");
    TU_EXPECT_HR(fwx__ct_set_mark_filter(c.ct, 0x20000000u, 0x20000000u), FWX_S_OK);
    fill_table(&c, 40000);
    int c1, s1;
    struct sockaddr_storage src1, dst1;
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":5001", &c1, &s1, &src1, &dst1);
    ck_assert_msg(wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src1, &dst1, 2000) != NULL, "no NEW for our flow");
    fwx__ct_set_sweep(c.ct, 1);
    fwx__ct_stats st;
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_uint_eq(st.sweep_interval_ms, 1); /* no walk measured yet: the interval asked */
    (void)run_until(&c, NULL, NULL, 500);
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_uint_ge(st.sweeps, 1);
    /* The table's walk is long enough to judge the budget by (else this kernel walks faster
       than this test assumes, and it says so rather than passing). */
    ck_assert_msg(st.sweep_walk_us >= 500, "a walk of 40,000 entries took %llu us", (unsigned long long)st.sweep_walk_us);
    ck_assert_uint_ge(st.sweep_interval_ms, st.sweep_walk_us); /* W us of walking, at least W ms of wait */
    ck_assert_uint_le(st.sweep_interval_ms, 60000);
    ck_assert_msg(st.sweeps <= 2, "%llu sweeps in 500 ms (last walk %llu us, next in %llu ms)",
                  (unsigned long long)st.sweeps, (unsigned long long)st.sweep_walk_us,
                  (unsigned long long)st.sweep_interval_ms);
    /* Asked again (a new interval): the budget still holds, from the last walk measured. */
    fwx__ct_set_sweep(c.ct, 1);
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_uint_ge(st.sweep_interval_ms, st.sweep_walk_us);
    fwx__ct_set_sweep(c.ct, 0);
    fwx__ct_get_stats(c.ct, &st);
    ck_assert_uint_eq(st.sweep_interval_ms, 0); /* never */
    close(c1);
    close(s1);
    ct_down(&c);
}
END_TEST

/* ---- the namespace's settings: restored by the last fwx instance ------------------------------- */

static char settings_log[2048];

/* The walks of the sweeps made since `seen`: the longest and the shortest (sweeps_watch). */
typedef struct walks {
    fwx__ct *ct;
    uint64_t seen, want, longest, shortest;
} walks;

static int pred_walks(ctx *c, const void *arg)
{
    (void)c;
    walks *w = (walks *)arg; /* run_until's predicates read; this one also keeps a tally */
    fwx__ct_stats st;
    fwx__ct_get_stats(w->ct, &st);
    if (st.sweeps != w->seen) {
        w->seen = st.sweeps;
        w->want -= w->want > 0;
        w->longest = st.sweep_walk_us > w->longest ? st.sweep_walk_us : w->longest;
        w->shortest = st.sweep_walk_us < w->shortest ? st.sweep_walk_us : w->shortest;
    }
    return w->want == 0;
}

/* Runs the loop (the sweep asked at 1 ms, so each follows the last walk's budget) until n more
   sweeps were made or ms passed; the longest and the shortest walk counted among them. */
static uint64_t sweeps_watch(ctx *c, unsigned n, uint64_t ms, uint64_t *shortest)
{
    fwx__ct_stats st;
    fwx__ct_get_stats(c->ct, &st);
    walks w = {.ct = c->ct, .seen = st.sweeps, .want = n, .longest = 0, .shortest = UINT64_MAX};
    ck_assert_msg(run_until(c, pred_walks, &w, ms), "%u of %u sweeps in %llu ms (last walk %llu us)",
                  n - (unsigned)w.want, n, (unsigned long long)ms, (unsigned long long)w.longest);
    *shortest = w.shortest;
    return w.longest;
}

/* The sweep's budget counts the kernel's walk, not time the loop thread spent waiting for a
   CPU: a thread preempted around the dump (other work on its CPU, as on a busy gateway) must
   not push the next sweep seconds away, or every expired flow's DESTROY comes that much late.
   The walks with two spinning processes on the thread's CPU are compared with the walks
   without them (the walk itself is not small: the kernel walks its whole hash table, every
   namespace's buckets, whatever this one holds). */
START_TEST(sweep_budget_busy_cpu)
{
    ctx c;
    ct_up(&c, "add rule inet fwxct fw ct state new tcp dport 5001 ct mark set 0x20000000\n");
    TU_EXPECT_HR(fwx__ct_set_mark_filter(c.ct, 0x20000000u, 0x20000000u), FWX_S_OK);
    int c1, s1;
    struct sockaddr_storage src1, dst1;
    tcp_pair(&c, TN_CLIENT ":0", TN_SERVER ":5001", &c1, &s1, &src1, &dst1);
    ck_assert_msg(wait_event(&c, FWX__CT_NEW, FWX_PROTOCOL_TCP, &src1, &dst1, 2000) != NULL, "no NEW for our flow");
    cpu_set_t one, all;
    ck_assert_int_eq(sched_getaffinity(0, sizeof all, &all), 0);
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ck_assert_int_eq(sched_setaffinity(0, sizeof one, &one), 0);
    fwx__ct_set_sweep(c.ct, 1);
    uint64_t idle_short, busy_short;
    uint64_t idle = sweeps_watch(&c, 2, 8000, &idle_short);
    pid_t spin[2];
    for (int i = 0; i < 2; i++) {
        spin[i] = fork();
        ck_assert_int_ge(spin[i], 0);
        if (spin[i] == 0) {
            alarm(30); /* bounded, should the test die before it kills them */
            for (volatile unsigned long n = 0;; n++)
                ;
        }
    }
    uint64_t busy = sweeps_watch(&c, 2, 16000, &busy_short);
    for (int i = 0; i < 2; i++) {
        kill(spin[i], SIGKILL);
        waitpid(spin[i], NULL, 0);
    }
    (void)sched_setaffinity(0, sizeof all, &all);
    ck_assert_msg(busy < 2 * idle + 500,
                  "walks counted %llu-%llu us with the CPU shared, %llu-%llu us without",
                  (unsigned long long)busy_short, (unsigned long long)busy, (unsigned long long)idle_short,
                  (unsigned long long)idle);
    fwx__ct_set_sweep(c.ct, 0);
    close(c1);
    close(s1);
    ct_down(&c);
}
END_TEST

static void on_settings_log(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg;
    (void)level;
    snprintf(settings_log, sizeof settings_log, "%s", msg);
    if (getenv("FWX_TEST_LOG"))
        fprintf(stderr, "%s\n", msg);
}

static int sysctl_get(const char *path)
{
    char b[16] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(read(fd, b, sizeof b - 1), 0);
    close(fd);
    return atoi(b);
}

static void nop_ct(void *arg, int event, const fwx__ct_flow *f)
{
    (void)arg;
    (void)event;
    (void)f;
}

#define ACCT "/proc/sys/net/netfilter/nf_conntrack_acct"
#define EVENTS "/proc/sys/net/netfilter/nf_conntrack_events"

static fwx__ct *settings_open(uv_loop_t *loop)
{
    fwx__ct *x = NULL;
    TU_EXPECT_HR(fwx__ct_open(loop, nop_ct, NULL, &x), FWX_S_OK);
    fwx__ct_set_log(x, on_settings_log, NULL);
    return x;
}

START_TEST(settings_restored_by_last)
{
    ctx c;
    memset(&c, 0, sizeof c);
    tn_up(&c.topo);
    tn_enter(c.topo.gateway_fd);
    sysctl_gw(&c, ACCT, "0");
    sysctl_gw(&c, EVENTS, "0");
    ck_assert_int_eq(uv_loop_init(&c.loop), 0);

    /* A switches both on; B finds them on. */
    fwx__ct *a = settings_open(&c.loop), *b = settings_open(&c.loop);
    fwx__ct_stats st;
    fwx__ct_get_stats(a, &st);
    ck_assert_int_eq(st.switched, FWX__CT_SWITCHED_ACCT | FWX__CT_SWITCHED_EVENTS);
    fwx__ct_get_stats(b, &st);
    ck_assert_int_eq(st.switched, 0);
    ck_assert_int_eq(st.accounting, 1);
    ck_assert_int_eq(sysctl_get(ACCT), 1);
    ck_assert_int_eq(sysctl_get(EVENTS), 1);

    /* Another process in this namespace holds them too (forked: it inherits this thread's
       network namespace). */
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        uv_loop_t l;
        fwx__ct *x = NULL;
        if (uv_loop_init(&l) != 0 || fwx__ct_open(&l, nop_ct, NULL, &x) != FWX_S_OK)
            _exit(1);
        (void)!write(pfd[1], "r", 1);
        for (;;)
            pause(); /* killed below: a crash, it never closes */
    }
    close(pfd[1]);
    char rb;
    ck_assert_int_eq(read(pfd[0], &rb, 1), 1);
    close(pfd[0]);

    /* A and B close: the other process still uses them. */
    fwx__ct_close(a);
    ck_assert_int_eq(sysctl_get(ACCT), 1);
    ck_assert_ptr_nonnull(strstr(settings_log, "left on: 2 other fwx instance(s)"));
    fwx__ct_close(b);
    ck_assert_int_eq(sysctl_get(ACCT), 1);
    ck_assert_int_eq(sysctl_get(EVENTS), 1);
    ck_assert_ptr_nonnull(strstr(settings_log, "left on: 1 other fwx instance(s)"));
    char pidtxt[32];
    snprintf(pidtxt, sizeof pidtxt, "(pid %ld)", (long)child);
    ck_assert_ptr_nonnull(strstr(settings_log, pidtxt));

    /* It dies without closing; the next instance to close here restores what A found. */
    ck_assert_int_eq(kill(child, SIGKILL), 0);
    int ws;
    ck_assert_int_eq(waitpid(child, &ws, 0), child);
    fwx__ct *d = settings_open(&c.loop);
    fwx__ct_get_stats(d, &st);
    ck_assert_int_eq(st.switched, 0);
    settings_log[0] = '\0';
    fwx__ct_close(d);
    ck_assert_int_eq(sysctl_get(ACCT), 0);
    ck_assert_int_eq(sysctl_get(EVENTS), 0);
    ck_assert_ptr_nonnull(strstr(settings_log, "nf_conntrack_acct and nf_conntrack_events restored to 0"));

    /* Settings that were on before fwx stay on, and nothing is said about them. */
    sysctl_gw(&c, ACCT, "1");
    fwx__ct *e = settings_open(&c.loop);
    settings_log[0] = '\0';
    fwx__ct_close(e);
    ck_assert_int_eq(sysctl_get(ACCT), 1);
    ck_assert_int_eq(sysctl_get(EVENTS), 0);
    ck_assert_ptr_nonnull(strstr(settings_log, "nf_conntrack_events restored to 0"));
    ck_assert_ptr_null(strstr(settings_log, "acct"));
    tu_loop_close_clean(&c.loop);
    tn_down(&c.topo);
}
END_TEST

/* ---- the parser, on messages built here -------------------------------------------------------- */

typedef struct mb {
    unsigned char b[1024] __attribute__((aligned(4)));
    size_t at;
    size_t stack[8];
    int depth;
    size_t after_tuples; /* where the optional attributes start */
} mb;

static void mb_put(mb *m, uint16_t type, const void *d, size_t l)
{
    struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + l), .nla_type = type};
    ck_assert_uint_le(m->at + NLA_ALIGN(NLA_HDRLEN + l), sizeof m->b);
    memcpy(m->b + m->at, &a, sizeof a);
    if (l)
        memcpy(m->b + m->at + NLA_HDRLEN, d, l);
    m->at += NLA_ALIGN(NLA_HDRLEN + l);
}
static void mb_open(mb *m, uint16_t type)
{
    m->stack[m->depth++] = m->at;
    mb_put(m, type | NLA_F_NESTED, NULL, 0);
}
static void mb_close(mb *m)
{
    size_t s = m->stack[--m->depth];
    struct nlattr a;
    memcpy(&a, m->b + s, sizeof a);
    a.nla_len = (uint16_t)(m->at - s);
    memcpy(m->b + s, &a, sizeof a);
}
static void mb_tuple(mb *m, uint16_t which, int fam, const char *s, const char *d, uint8_t proto, uint16_t sp,
                     uint16_t dp)
{
    unsigned char a[16], b[16];
    ck_assert_int_eq(inet_pton(fam, s, a), 1);
    ck_assert_int_eq(inet_pton(fam, d, b), 1);
    size_t l = fam == AF_INET ? 4 : 16;
    mb_open(m, which);
    mb_open(m, CTA_TUPLE_IP);
    mb_put(m, fam == AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, a, l);
    mb_put(m, fam == AF_INET ? CTA_IP_V4_DST : CTA_IP_V6_DST, b, l);
    mb_close(m);
    mb_open(m, CTA_TUPLE_PROTO);
    mb_put(m, CTA_PROTO_NUM, &proto, 1);
    uint16_t x = htons(sp), y = htons(dp);
    mb_put(m, CTA_PROTO_SRC_PORT, &x, 2);
    mb_put(m, CTA_PROTO_DST_PORT, &y, 2);
    mb_close(m);
    mb_put(m, 99, "junk", 4); /* an attribute nobody knows: skipped */
    mb_close(m);
}
static void mb_counters(mb *m, uint16_t which, uint64_t bytes)
{
    unsigned char v[8];
    for (int i = 0; i < 8; i++)
        v[i] = (unsigned char)(bytes >> (56 - 8 * i));
    mb_open(m, which);
    mb_put(m, CTA_COUNTERS_PACKETS, v, 8);
    mb_put(m, CTA_COUNTERS_BYTES, v, 8);
    mb_close(m);
}
/* A complete event message. */
static size_t mb_event(mb *m, int type, uint16_t flags, int fam, uint8_t proto)
{
    memset(m, 0, sizeof *m);
    m->at = NLMSG_HDRLEN;
    struct nfgenmsg nf = {.nfgen_family = (uint8_t)fam, .version = NFNETLINK_V0};
    memcpy(m->b + m->at, &nf, sizeof nf);
    m->at += NLMSG_ALIGN(sizeof nf);
    const char *cs = fam == AF_INET ? "10.99.1.2" : "fd99:1::2";
    const char *sd = fam == AF_INET ? "10.99.2.200" : "fd99:2::200";
    const char *rs = fam == AF_INET ? "10.99.2.2" : "fd99:2::2";
    const char *rd = fam == AF_INET ? "10.99.1.2" : "fd99:1::2";
    mb_tuple(m, CTA_TUPLE_ORIG, fam, cs, sd, proto, 40001, 21);
    mb_tuple(m, CTA_TUPLE_REPLY, fam, rs, rd, proto, 2121, 40001);
    m->after_tuples = m->at;
    uint32_t mark = htonl(0x120), id = htonl(7);
    mb_put(m, CTA_ID, &id, 4);
    mb_put(m, CTA_MARK, &mark, 4);
    mb_counters(m, CTA_COUNTERS_ORIG, 123456789012ull);
    mb_counters(m, CTA_COUNTERS_REPLY, 42);
    struct nlmsghdr nh = {.nlmsg_len = (uint32_t)m->at,
                          .nlmsg_type = (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | type),
                          .nlmsg_flags = flags};
    memcpy(m->b, &nh, sizeof nh);
    return m->at;
}

START_TEST(parse_strict)
{
    static const int fams[] = {AF_INET, AF_INET6};
    for (size_t k = 0; k < 2; k++) {
        int fam = fams[k];
        mb m;
        fwx__ct_flow f;
        size_t len = mb_event(&m, IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, fam, IPPROTO_TCP);
        ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_NEW);
        ck_assert_int_eq(f.protocol, FWX_PROTOCOL_TCP);
        ck_assert_int_eq(f.src.sa.sa_family, fam);
        ck_assert_uint_eq(flow_port(&f.src), 40001);
        ck_assert_uint_eq(flow_port(&f.dst), 21);
        ck_assert_uint_eq(flow_port(&f.reply_src), 2121);
        char t[64];
        const void *ra = fam == AF_INET ? (const void *)&f.reply_src.sin.sin_addr
                                        : (const void *)&f.reply_src.sin6.sin6_addr;
        inet_ntop(fam, ra, t, sizeof t);
        ck_assert_str_eq(t, fam == AF_INET ? "10.99.2.2" : "fd99:2::2");
        ck_assert_uint_eq(f.mark, 0x120);
        ck_assert_uint_eq(f.bytes_orig, 123456789012ull);
        ck_assert_uint_eq(f.bytes_reply, 42);

        len = mb_event(&m, IPCTNL_MSG_CT_DELETE, 0, fam, IPPROTO_UDP);
        ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_DESTROY);
        ck_assert_int_eq(f.protocol, FWX_PROTOCOL_UDP);
        /* An update (NEW without CREATE), ICMP, another subsystem: well formed, not reported. */
        len = mb_event(&m, IPCTNL_MSG_CT_NEW, 0, fam, IPPROTO_TCP);
        ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), 0);
        len = mb_event(&m, IPCTNL_MSG_CT_NEW, NLM_F_CREATE, fam, fam == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
        ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), 0);
        len = mb_event(&m, IPCTNL_MSG_CT_NEW, NLM_F_CREATE, fam, IPPROTO_TCP);
        uint16_t ty = (NFNL_SUBSYS_CTNETLINK_EXP << 8) | 0;
        memcpy(m.b + offsetof(struct nlmsghdr, nlmsg_type), &ty, 2);
        ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), 0);

        /* Every truncation (header length saying so, buffer exactly that long, on the heap so
           ASan sees a read past the end): refused, never a crash. */
        len = mb_event(&m, IPCTNL_MSG_CT_NEW, NLM_F_CREATE, fam, IPPROTO_TCP);
        for (size_t cut = 0; cut < len; cut++) {
            unsigned char *h = malloc(cut ? cut : 1);
            memcpy(h, m.b, cut);
            if (cut >= sizeof(uint32_t)) {
                uint32_t l32 = (uint32_t)cut;
                memcpy(h, &l32, 4);
            }
            int rc = fwx__ct_parse(h, cut, &f);
            ck_assert_msg(rc == -1 || rc == 0 || rc == FWX__CT_NEW, "cut %zu: %d", cut, rc);
            /* Short of both tuples: malformed. Past them, a cut at an attribute boundary is a
               well-formed message without the optional attributes; inside one it is not. */
            if (cut < m.after_tuples)
                ck_assert_msg(rc == -1, "cut %zu of %zu accepted (%d)", cut, len, rc);
            /* The header claiming more than the buffer holds. */
            if (cut >= NLMSG_HDRLEN) {
                uint32_t l32 = (uint32_t)len;
                memcpy(h, &l32, 4);
                ck_assert_int_eq(fwx__ct_parse(h, cut, &f), -1);
            }
            free(h);
        }
        /* Every 16-bit word of the message set to values that break lengths: never a crash or
           a read outside the buffer (ASan), whatever the result. */
        static const uint16_t evil[] = {0, 1, 3, 4, 5, 7, 8, 0xffff, 0x8000, 0x7fff};
        for (size_t off = NLMSG_HDRLEN; off + 2 <= len; off += 2)
            for (size_t e = 0; e < sizeof evil / sizeof evil[0]; e++) {
                unsigned char *h = malloc(len);
                memcpy(h, m.b, len);
                memcpy(h + off, &evil[e], 2);
                int rc = fwx__ct_parse(h, len, &f);
                ck_assert(rc == -1 || rc == 0 || rc == FWX__CT_NEW);
                if (rc == FWX__CT_NEW)
                    ck_assert(f.protocol == FWX_PROTOCOL_TCP || f.protocol == FWX_PROTOCOL_UDP);
                free(h);
            }
    }
    /* A wrong-size address, port or mark: refused. */
    mb m;
    fwx__ct_flow f;
    size_t len = mb_event(&m, IPCTNL_MSG_CT_NEW, NLM_F_CREATE, AF_INET6, IPPROTO_TCP);
    /* Claim IPv4 for an IPv6 tuple. */
    m.b[NLMSG_HDRLEN] = AF_INET;
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), -1);
    m.b[NLMSG_HDRLEN] = AF_UNSPEC;
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), -1);
    ck_assert_int_eq(fwx__ct_parse(NULL, 0, &f), -1);
}
END_TEST

/* ---- the one-pass parser, on crafted messages ---------------------------------------------------- */

/* What a crafted message gets wrong (or right in an unusual way). */
enum {
    C_OK,             /* a well-formed IPv4 TCP entry with counters and the TCP state */
    C_COUNTERS32,     /* 32-bit byte counters: read */
    C_ODD_UNKNOWN,    /* attributes fwx does not read, of odd sizes: skipped */
    C_UNPADDED_LAST,  /* the last attribute's padding missing from the message: fine */
    C_MARK2,          /* a 2-byte mark */
    C_BYTES4,         /* 64-bit counter in 4 bytes */
    C_BYTES32_8,      /* 32-bit counter in 8 bytes */
    C_STATE2,         /* a 2-byte TCP state */
    C_PORT4,          /* a 4-byte port */
    C_PROTO2,         /* a 2-byte protocol number */
    C_ADDR16,         /* an IPv4 address of 16 bytes */
    C_OTHER_FAMILY,   /* an IPv6 address in an IPv4 tuple */
    C_NO_REPLY,       /* no reply tuple */
    C_NO_SPORT,       /* the original tuple without its source port */
    C_PROTO_DIFFERS,  /* the reply tuple's protocol another than the original's */
    C_TRAILING_TOP,   /* 4 bytes after the last attribute that are not one */
    C_TRAILING_NEST,  /* the same inside the original tuple */
    C_NEST_PAST_END,  /* the reply tuple's nest claiming 8 bytes more than the message has */
    C_COUNT
};

static void craft_tuple(mb *m, int c, uint16_t which, const char *s, const char *d, uint8_t proto, uint16_t sp,
                        uint16_t dp)
{
    unsigned char a[16] = {0}, b[16] = {0};
    ck_assert_int_eq(inet_pton(AF_INET, s, a), 1);
    ck_assert_int_eq(inet_pton(AF_INET, d, b), 1);
    bool orig = which == CTA_TUPLE_ORIG;
    mb_open(m, which);
    mb_open(m, CTA_TUPLE_IP);
    mb_put(m, CTA_IP_V4_SRC, a, c == C_ADDR16 && orig ? 16 : 4);
    mb_put(m, CTA_IP_V4_DST, b, 4);
    if (c == C_OTHER_FAMILY && !orig)
        mb_put(m, CTA_IP_V6_SRC, a, 16);
    mb_close(m);
    mb_open(m, CTA_TUPLE_PROTO);
    uint8_t p2[2] = {proto, 0};
    if (c == C_PROTO_DIFFERS && !orig)
        p2[0] = IPPROTO_UDP;
    mb_put(m, CTA_PROTO_NUM, p2, c == C_PROTO2 && orig ? 2 : 1);
    uint16_t x[2] = {htons(sp), 0}, y = htons(dp);
    if (!(c == C_NO_SPORT && orig))
        mb_put(m, CTA_PROTO_SRC_PORT, x, c == C_PORT4 && !orig ? 4 : 2);
    mb_put(m, CTA_PROTO_DST_PORT, &y, 2);
    mb_close(m);
    if (c == C_TRAILING_NEST && orig) {
        memset(m->b + m->at, 0, 4); /* nla_len 0: not an attribute */
        m->at += 4;
    }
    mb_close(m);
}

/* A NEW (flags) or update message, variant c; its length. */
static size_t craft(mb *m, int c, uint16_t flags, uint8_t tcp_state)
{
    memset(m, 0, sizeof *m);
    m->at = NLMSG_HDRLEN;
    struct nfgenmsg nf = {.nfgen_family = AF_INET, .version = NFNETLINK_V0};
    memcpy(m->b + m->at, &nf, sizeof nf);
    m->at += NLMSG_ALIGN(sizeof nf);
    uint32_t status = htonl(8);
    if (c == C_ODD_UNKNOWN) {
        mb_put(m, CTA_STATUS, &status, 3); /* not read, so its size is not fwx's concern */
        mb_put(m, 77, "odd", 3);
    }
    craft_tuple(m, c, CTA_TUPLE_ORIG, "10.98.1.2", "10.98.2.200", IPPROTO_TCP, 40002, 21);
    if (c != C_NO_REPLY)
        craft_tuple(m, c, CTA_TUPLE_REPLY, "10.98.2.2", "10.98.1.2", IPPROTO_TCP, 2122, 40002);
    uint32_t mark[2] = {htonl(0x340), 0};
    mb_put(m, CTA_MARK, mark, c == C_MARK2 ? 2 : 4);
    unsigned char v8[8] = {0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9a}, v4[4] = {0, 1, 0, 2};
    mb_open(m, CTA_COUNTERS_ORIG);
    if (c == C_COUNTERS32 || c == C_BYTES32_8)
        mb_put(m, CTA_COUNTERS32_BYTES, c == C_BYTES32_8 ? (const void *)v8 : v4, c == C_BYTES32_8 ? 8 : 4);
    else
        mb_put(m, CTA_COUNTERS_BYTES, v8, c == C_BYTES4 ? 4 : 8);
    mb_close(m);
    mb_open(m, CTA_PROTOINFO);
    mb_open(m, CTA_PROTOINFO_TCP);
    uint8_t st[2] = {tcp_state, 0};
    mb_put(m, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, st + 1, 1);
    mb_put(m, CTA_PROTOINFO_TCP_STATE, st, c == C_STATE2 ? 2 : 1);
    mb_close(m);
    mb_close(m);
    if (c == C_TRAILING_TOP) {
        uint16_t two[2] = {2, 0}; /* nla_len 2: shorter than an attribute's header */
        memcpy(m->b + m->at, two, 4);
        m->at += 4;
    }
    size_t len = m->at;
    if (c == C_UNPADDED_LAST) {
        mb_put(m, 78, "x", 1);
        len = m->at - 3;
    }
    struct nlmsghdr nh = {.nlmsg_len = (uint32_t)len,
                          .nlmsg_type = (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW),
                          .nlmsg_flags = flags};
    memcpy(m->b, &nh, sizeof nh);
    if (c == C_NEST_PAST_END) {
        /* the reply tuple is the second top-level attribute after the original's */
        size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof nf);
        struct nlattr a;
        memcpy(&a, m->b + off, sizeof a);
        off += NLA_ALIGN(a.nla_len);
        memcpy(&a, m->b + off, sizeof a);
        a.nla_len = (uint16_t)(len - off + 8);
        memcpy(m->b + off, &a, sizeof a);
    }
    return len;
}

START_TEST(parse_one_pass)
{
    mb m;
    fwx__ct_flow f;
    /* Well formed: every field read from its attribute. */
    size_t len = craft(&m, C_OK, NLM_F_CREATE | NLM_F_EXCL, TCP_CONNTRACK_SYN_SENT);
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_NEW);
    ck_assert_int_eq(f.protocol, FWX_PROTOCOL_TCP);
    ck_assert_uint_eq(flow_port(&f.src), 40002);
    ck_assert_uint_eq(flow_port(&f.dst), 21);
    ck_assert_uint_eq(flow_port(&f.reply_src), 2122);
    ck_assert_uint_eq(ntohl(f.dst.sin.sin_addr.s_addr), 0x0a6202c8);       /* 10.98.2.200 */
    ck_assert_uint_eq(ntohl(f.reply_src.sin.sin_addr.s_addr), 0x0a620202); /* 10.98.2.2 */
    ck_assert_uint_eq(f.mark, 0x340);
    ck_assert_uint_eq(f.bytes_orig, 0x123456789aull);
    ck_assert_uint_eq(f.bytes_reply, 0);
    ck_assert_uint_eq(f.tcp_state, TCP_CONNTRACK_SYN_SENT);
    /* An update: reported (END) only at TIME_WAIT or CLOSE. */
    len = craft(&m, C_OK, 0, TCP_CONNTRACK_TIME_WAIT);
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_END);
    len = craft(&m, C_OK, 0, TCP_CONNTRACK_CLOSE);
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_END);
    len = craft(&m, C_OK, 0, TCP_CONNTRACK_ESTABLISHED);
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), 0);
    ck_assert_int_eq(f.protocol, FWX_PROTOCOL_TCP); /* still read: a GET's answer is such a message */
    ck_assert_uint_eq(f.tcp_state, TCP_CONNTRACK_ESTABLISHED);

    len = craft(&m, C_COUNTERS32, NLM_F_CREATE, TCP_CONNTRACK_SYN_SENT);
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_NEW);
    ck_assert_uint_eq(f.bytes_orig, 0x00010002u);
    len = craft(&m, C_ODD_UNKNOWN, NLM_F_CREATE, TCP_CONNTRACK_SYN_SENT);
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_NEW);
    ck_assert_uint_eq(f.mark, 0x340);
    len = craft(&m, C_UNPADDED_LAST, NLM_F_CREATE, TCP_CONNTRACK_SYN_SENT);
    ck_assert_uint_eq(len % 4, 1);
    ck_assert_int_eq(fwx__ct_parse(m.b, len, &f), FWX__CT_NEW);

    /* Each defect alone: refused, and nothing of it left in f. */
    for (int c = C_MARK2; c < C_COUNT; c++) {
        len = craft(&m, c, NLM_F_CREATE, TCP_CONNTRACK_SYN_SENT);
        memset(&f, 0xa5, sizeof f);
        ck_assert_msg(fwx__ct_parse(m.b, len, &f) == -1, "defect %d accepted", c);
        ck_assert_int_eq(f.protocol, 0);
        ck_assert_uint_eq(f.mark, 0);
    }

    /* Every truncation of the whole message (header length and buffer alike): refused; a cut
       inside an attribute never passes for a shorter well-formed message, even past the tuples. */
    len = craft(&m, C_OK, NLM_F_CREATE, TCP_CONNTRACK_SYN_SENT);
    for (size_t cut = NLMSG_HDRLEN; cut < len; cut++) {
        unsigned char *h = malloc(cut);
        memcpy(h, m.b, cut);
        uint32_t l32 = (uint32_t)cut;
        memcpy(h, &l32, 4);
        int rc = fwx__ct_parse(h, cut, &f);
        /* The only cuts that leave a well-formed message end exactly after a top-level
           attribute past both tuples: the reply tuple (then mark 8, counters 16 and protoinfo
           24 bytes follow), the mark, the counters. */
        ck_assert_msg(rc == -1 || rc == FWX__CT_NEW, "cut %zu: %d", cut, rc);
        bool boundary = cut == len - 48 || cut == len - 40 || cut == len - 24;
        ck_assert_msg(rc == (boundary ? FWX__CT_NEW : -1), "cut %zu of %zu: %d", cut, len, rc);
        free(h);
    }
}
END_TEST

static Suite *ct_suite(void)
{
    const tu_case cases[] = {
        {"parse strict", parse_strict},
        {"parse one pass", parse_one_pass},
        {"tcp new destroy", tcp_new_destroy},
        {"tcp6 new destroy", tcp6_new_destroy},
        {"udp new destroy", udp_new_destroy},
        {"kill live tcp", kill_live_tcp},
        {"kill udp", kill_udp},
        {"mark filter", mark_filter},
        {"kernel filter unrelated zero", kernel_filter_unrelated_zero},
        {"sweep budget", sweep_budget},
        {"sweep budget busy cpu", sweep_budget_busy_cpu},
        {"settings restored by last", settings_restored_by_last},
        {"enobufs counted not fatal", enobufs_counted_not_fatal},
        {"close", close_inside_callback},
    };
    return TU_SUITE("ct", cases, 30);
}

int main(void) { return tn_main(ct_suite, "conntrack namespace tests"); }
