/*
 * fwx tests - the "nft" backend as a gateway: the policy compiled into the kernel (access
 * rules, network relationships nat/route, reload without dropping established flows) and,
 * for protocols with a filter bound, transparent interception into the user-mode path
 * (the real FTP plugin, FWX_FTP_PLUGIN) with a scripted FTP server in the server namespace.
 *
 * Topology and rules as in check_nft.c (netns.h): the test thread is in the gateway namespace
 * for every nftables change; peers are sockets made in their own namespaces.
 * Not root, or no namespaces: exit 77 (skipped) with the reason.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "netns.h"
#include "backends/nft/nft_impl.h"
#include "core/internal.h"
#include "plugins/test_plugin.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REFUSED_MS 1500
/* Long enough for a paused listener (intercept.c ACCEPT_PAUSE_MS, 100) to accept again. */
#define ACCEPT_WAIT_MS 300

typedef tn_gw gw;

/* Sets the policy; until the core calls the backend's policy_changed (backend version 2), the
   test does. */
static void set_policy(gw *g, const char *text)
{
    TU_EXPECT_HR(fwx_firewall_set_policy(g->fw, tu_policy(text)), FWX_S_OK);
}

/* The shared fixture (netns.h): IPv6 too when asked, the plugin loaded (if any), the policy
   set (if any: the backend compiles the one it finds at open), then the nft backend. */
static void gw_start(gw *g, bool ipv6, const char *plugin, const char *policy)
{
    tn_gw_open(g, "g", ipv6, plugin, policy, "nft");
}

static void gw_open(gw *g, const char *policy) { gw_start(g, false, NULL, policy); }

/* The real FTP plugin: meson sets FWX_FTP_PLUGIN; a run without it must not pass as if tested. */
static const char *ftp_plugin(void)
{
    const char *plugin = getenv("FWX_FTP_PLUGIN");
    ck_assert_msg(plugin != NULL && access(plugin, R_OK) == 0, "FWX_FTP_PLUGIN names no readable FTP plugin");
    return plugin;
}

static void gw_close(gw *g) { tn_gw_close(g); }

/* ---- peers (blocking, bounded) ------------------------------------------------------------------- */






/* One exchange each way on a connected pair: true if both arrived. */
static bool exchange(int c, int s)
{
    char buf[8];
    return tu_write_all(c, "hello", 5) == 0 && recv(s, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "hello", 5) == 0 &&
           tu_write_all(s, "world", 5) == 0 && recv(c, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "world", 5) == 0;
}

/* A client connection to ip:port through the gateway, accepted on lfd: 1 if it carried data
   both ways (the server saw it come from *seen), 0 if refused. */
static int try_flow(gw *g, int lfd, const char *ip, uint16_t port, char seen[INET_ADDRSTRLEN])
{
    int c = tn_connect_in(g->topo.client_fd, NULL, ip, port, REFUSED_MS);
    if (c < 0)
        return 0;
    struct sockaddr_in peer;
    int s = tn_accept_within(lfd, 1000, &peer);
    int ok = s >= 0 && exchange(c, s);
    if (seen != NULL && s >= 0)
        inet_ntop(AF_INET, &peer.sin_addr, seen, INET_ADDRSTRLEN);
    if (s >= 0)
        close(s);
    close(c);
    return ok;
}

/* ---- policy forwarding ----------------------------------------------------------------------------- */

#define POLICY_HEAD                                                                                    \
    "networks = { internal = { ranges = [ \"10.99.1.0/24\" ]; }; };\n"                                 \
    "address_sets = { other = [ \"" TN_OTHER "\" ]; };\n"                                              \
    "protocols = (\n"                                                                                  \
    "  { name = \"p1\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000005001}\"; protocol = \"tcp\";"        \
    " port = 5001; direction = \"outbound\"; },\n"                                                     \
    "  { name = \"p2\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000005002}\"; protocol = \"tcp\";"        \
    " port = 5002; direction = \"outbound\"; }\n"                                                      \
    ");\n"

static const char *policy_nat = POLICY_HEAD
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
    "rules = (\n"
    "  { name = \"not other\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"other\" ]; protocols = [ \"all\" ]; },\n"
    "  { name = \"p1 out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"p1\" ]; }\n"
    ");\n";

static const char *policy_route = POLICY_HEAD
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"route\"; } );\n"
    "rules = (\n"
    "  { name = \"both out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
    " protocols = [ \"p1\", \"p2\" ]; }\n"
    ");\n";

static const char *policy_none = POLICY_HEAD
    "rules = (\n"
    "  { name = \"both out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
    " protocols = [ \"p1\", \"p2\" ]; }\n"
    ");\n";

START_TEST(policy_forwarding)
{
    gw g;
    gw_open(&g, policy_nat);
    int l1 = tn_listener_in(g.topo.server_fd, "0.0.0.0", 5001, NULL), l2 = tn_listener_in(g.topo.server_fd, "0.0.0.0", 5002, NULL);
    char seen[INET_ADDRSTRLEN] = "";

    /* nat: the allowed port passes and the server sees the gateway; the other port and the
       denied address do not pass. */
    ck_assert_msg(try_flow(&g, l1, TN_SERVER, 5001, seen), "allowed port 5001 refused");
    ck_assert_str_eq(seen, TN_GW_OUT);
    ck_assert_msg(!try_flow(&g, l2, TN_SERVER, 5002, NULL), "port 5002 passed without a rule");
    ck_assert_msg(!try_flow(&g, l1, TN_OTHER, 5001, NULL), "the denied address set passed");

    /* An established connection, then a reload to route + both ports. */
    int c = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, 5001, REFUSED_MS);
    ck_assert_int_ge(c, 0);
    struct sockaddr_in peer;
    int s = tn_accept_within(l1, 1000, &peer);
    ck_assert_int_ge(s, 0);
    ck_assert(exchange(c, s));
    set_policy(&g, policy_route);
    ck_assert_msg(exchange(c, s), "the established connection stopped at the reload");
    ck_assert_msg(try_flow(&g, l2, TN_SERVER, 5002, seen), "port 5002 refused after the reload");
    ck_assert_str_eq(seen, TN_CLIENT);
    ck_assert_msg(try_flow(&g, l1, TN_OTHER, 5001, seen), "the address set is no longer denied");

    /* No relationship: nothing passes, the established connection still does. */
    set_policy(&g, policy_none);
    ck_assert_msg(!try_flow(&g, l1, TN_SERVER, 5001, NULL), "passed without a network relationship");
    ck_assert_msg(exchange(c, s), "the established connection stopped at the second reload");
    close(c);
    close(s);
    close(l1);
    close(l2);
    gw_close(&g);
}
END_TEST

/* A connection the compiled policy lets the kernel forward is still the core's: a kernel-mode
   primary connection of the client's NAT session (fwxctl lists it), with its bytes, ended by
   its conntrack DESTROY. */
typedef struct prim {
    int n;
    char peer[64];
} prim;

static void count_kernel_primaries(void *arg, const fwx_object_info *i)
{
    prim *p = arg;
    if (i->kind != FWX_OBJECT_CONNECTION || (i->flags & FWX_CONNECTION_SECONDARY) || !i->kernel_mode)
        return;
    p->n++;
    char ip[INET_ADDRSTRLEN] = "?";
    const struct sockaddr_in *a = (const struct sockaddr_in *)&i->peer;
    if (a->sin_family == AF_INET)
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(p->peer, sizeof p->peer, "%s:%u", ip, ntohs(a->sin_port));
}

static prim kernel_primaries(gw *g)
{
    prim p;
    memset(&p, 0, sizeof p);
    TU_EXPECT_HR(fwx_firewall_list(g->fw, FWX_OBJECT_CONNECTION, count_kernel_primaries, &p), FWX_S_OK);
    return p;
}

START_TEST(policy_flows_reported)
{
    gw g;
    gw_open(&g, policy_nat);
    tu_log_reset();
    int fd = open("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait", O_WRONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "time_wait sysctl: %s", strerror(errno));
    ck_assert_int_eq(write(fd, "1", 1), 1);
    close(fd);
    int l1 = tn_listener_in(g.topo.server_fd, "0.0.0.0", 5001, NULL);
    int c = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, 5001, REFUSED_MS);
    ck_assert_int_ge(c, 0);
    int s = tn_accept_within(l1, 1000, NULL);
    ck_assert_int_ge(s, 0);
    ck_assert(exchange(c, s));
    prim p = kernel_primaries(&g);
    for (int i = 0; i < 100 && p.n == 0; i++) {
        tu_loop_run_for(&g.loop, 20);
        p = kernel_primaries(&g);
    }
    ck_assert_int_eq(p.n, 1);
    ck_assert_str_eq(p.peer, TN_SERVER ":5001");
    close(c);
    close(s);
    for (int i = 0; i < 300 && p.n > 0; i++) {
        tu_loop_run_for(&g.loop, 50);
        p = kernel_primaries(&g);
    }
    ck_assert_msg(p.n == 0, "the forwarded connection was still listed after its flow ended");
    const char *acc = tu_log_find(TN_SERVER ":5001 opened (kernel-carried)", NULL);
    ck_assert_msg(acc != NULL, "no line for the forwarded connection");
    unsigned long long id = 0, from_client = 0, from_peer = 0;
    ck_assert_int_eq(sscanf(strstr(acc, "connection "), "connection %llu:", &id), 1);
    char tag[48];
    snprintf(tag, sizeof tag, "connection %llu: closed (", id);
    const char *closed = tu_log_find(tag, NULL);
    ck_assert_msg(closed != NULL, "no closed line for connection %llu", id);
    ck_assert_int_eq(sscanf(strstr(closed, "closed ("), "closed (%llu bytes from the client, %llu from the peer)",
                            &from_client, &from_peer),
                     2);
    ck_assert_msg(from_client >= 5 && from_peer >= 5, "bytes %llu/%llu: the flow's counters were lost", from_client,
                  from_peer);
    close(l1);
    gw_close(&g);
}
END_TEST

/* Thousands of rules and ranges compile into one batch and still decide right. */
START_TEST(policy_many_rules)
{
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    n += (size_t)snprintf(text + n, cap - n, "networks = { internal = { ranges = [ \"10.99.1.0/24\"");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(text + n, cap - n, ", \"10.%d.%d.0/24\"", 100 + i / 250, i % 250);
    n += (size_t)snprintf(text + n, cap - n, " ]; }; };\nprotocols = (\n");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "%s  { name = \"q%d\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-%012d}\"; protocol = \"tcp\";"
                              " port = %d; direction = \"outbound\"; }\n",
                              i ? "," : "", i, 100000 + i, 6000 + i);
    n += (size_t)snprintf(text + n, cap - n,
                          ");\nrelationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
                          "rules = (\n");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "%s  { name = \"r%d\"; action = \"%s\"; from = [ \"internal\" ]; to = [ \"external\" ];"
                              " protocols = [ \"q%d\" ]; }\n",
                              i ? "," : "", i, i == 998 ? "deny" : "allow", i);
    n += (size_t)snprintf(text + n, cap - n, ");\n");
    ck_assert_uint_lt(n, cap - 1);
    gw g;
    uint64_t t0 = tn_now_ms();
    gw_open(&g, text);
    fprintf(stderr, "policy_many_rules: compiled 1000 rules, 2001 ranges in %llu ms\n",
            (unsigned long long)(tn_now_ms() - t0));
    int l = tn_listener_in(g.topo.server_fd, "0.0.0.0", 6999, NULL), d = tn_listener_in(g.topo.server_fd, "0.0.0.0", 6998, NULL);
    ck_assert_msg(try_flow(&g, l, TN_SERVER, 6999, NULL), "the last rule's port refused");
    ck_assert_msg(!try_flow(&g, d, TN_SERVER, 6998, NULL), "the denied port passed");
    close(l);
    close(d);
    free(text);
    gw_close(&g);
}
END_TEST

/* ---- interception of a filter-bound protocol (the real FTP plugin) ------------------------------ */

#define FTP_GUID "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"

static const char *policy_ftp =
    "networks = { internal = { ranges = [ \"10.99.1.0/24\" ]; }; };\n"
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
    "protocols = ( { name = \"ftp\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000000021}\"; protocol = \"tcp\";"
    " port = 21; direction = \"outbound\"; filters = [ \"" FTP_GUID "\" ]; } );\n"
    "rules = ( { name = \"ftp out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
    " protocols = [ \"ftp\" ]; } );\n";

typedef enum { M_PASV, M_EPSV, M_PORT, M_EPRT } ftp_mode;
static const char *const mode_name[] = {"PASV", "EPSV", "PORT", "EPRT"};

typedef struct ftp_run {
    gw *g;
    ftp_mode mode;
    /* Who is where: transparent, the client is in the client namespace and dials the server
       itself; published, the client is outside (server namespace) and dials the publishing
       rule's address, the server is inside (client namespace). */
    int cli_ns, srv_ns;
    const char *cli_ip, *srv_ip, *dial_ip; /* dial_ip: where the control connection goes */
    uint16_t dial_port;
    int ctl_l, data_l;
    uint16_t data_port;
    char seen_ctl[INET_ADDRSTRLEN], seen_data[INET_ADDRSTRLEN], got[64];
    char told[64];   /* active: the address the server was told to connect to */
    int ok;          /* the data connection carried the payload */
    int nodelay[2];  /* TCP_NODELAY of fwx's relayed sockets, client side and server side (-1: not found) */
    int second;      /* a second data connection to the same port got through (must not) */
    int stranger;    /* active: a host other than the server got through (must not) */
    char why[160];
    volatile int done;
} ftp_run;

static bool read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0'; /* a failed read never shows an earlier line */
    while (n + 1 < cap) {
        if (recv(fd, buf + n, 1, 0) != 1) {
            buf[n] = '\0';
            return false;
        }
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return true;
}

/* "a,b,c,d,p1,p2" (after `prefix`) or "|1|a.b.c.d|port|": the address and port, or false. */
static bool parse_hostport(const char *s, bool extended, char ip[32], uint16_t *port)
{
    unsigned h[4], p1, p2, p;
    char tail;
    if (!extended) {
        if (sscanf(s, "%u,%u,%u,%u,%u,%u%c", &h[0], &h[1], &h[2], &h[3], &p1, &p2, &tail) < 6 || p1 > 255 || p2 > 255)
            return false;
        snprintf(ip, 32, "%u.%u.%u.%u", h[0], h[1], h[2], h[3]);
        *port = (uint16_t)(p1 * 256 + p2);
        return true;
    }
    char a[32];
    if (sscanf(s, "|1|%31[0-9.]|%u|", a, &p) != 2 || p == 0 || p > 65535)
        return false;
    snprintf(ip, 32, "%s", a);
    *port = (uint16_t)p;
    return true;
}

#define FAIL_RUN(...)                                                                                  \
    do {                                                                                               \
        snprintf(r->why, sizeof r->why, __VA_ARGS__);                                                  \
        goto out;                                                                                      \
    } while (0)

/* Passive: the server opens a data port, the client connects to what the (rewritten) reply
   says. The one-shot permission must admit exactly one connection. */
static void passive_transfer(ftp_run *r, int c, int s)
{
    char line[256], ip[32];
    uint16_t port = 0;
    bool ext = r->mode == M_EPSV;
    tu_write_all(c, ext ? "EPSV\r\n" : "PASV\r\n", 6);
    if (!read_line(s, line, sizeof line) || strncmp(line, ext ? "EPSV" : "PASV", 4) != 0)
        FAIL_RUN("server got \"%s\" for %s", line, mode_name[r->mode]);
    if (ext)
        snprintf(line, sizeof line, "229 Entering Extended Passive Mode (|||%u|)\r\n", r->data_port);
    else
    {
        unsigned a, b, c2, d;
        sscanf(r->srv_ip, "%u.%u.%u.%u", &a, &b, &c2, &d);
        snprintf(line, sizeof line, "227 Entering Passive Mode (%u,%u,%u,%u,%u,%u)\r\n", a, b, c2, d, r->data_port >> 8,
                 r->data_port & 255);
    }
    tu_write_all(s, line, strlen(line));
    if (!read_line(c, line, sizeof line) || strncmp(line, ext ? "229" : "227", 3) != 0)
        FAIL_RUN("client got \"%s\"", line);
    if (ext) {
        unsigned p = 0;
        const char *o = strstr(line, "(|||");
        if (o == NULL || sscanf(o, "(|||%u|)", &p) != 1 || p == 0 || p > 65535)
            FAIL_RUN("client got \"%s\"", line);
        snprintf(ip, sizeof ip, "%s", r->dial_ip); /* EPSV: the control connection's peer */
        port = (uint16_t)p;
    } else {
        const char *o = strchr(line, '(');
        if (o == NULL || !parse_hostport(o + 1, false, ip, &port))
            FAIL_RUN("client got \"%s\"", line);
    }
    struct sockaddr_in peer;
    int d = tn_connect_in(r->cli_ns, NULL, ip, port, 3000);
    int ds = d >= 0 ? tn_accept_within(r->data_l, 3000, &peer) : -1;
    if (ds >= 0) {
        inet_ntop(AF_INET, &peer.sin_addr, r->seen_data, sizeof r->seen_data);
        tu_write_all(ds, "payload", 7);
        close(ds);
        ssize_t n = recv(d, r->got, sizeof r->got - 1, MSG_WAITALL);
        r->got[n > 0 ? n : 0] = '\0';
        r->ok = 1;
    }
    if (d >= 0)
        close(d);
    int d2 = tn_connect_in(r->cli_ns, NULL, ip, port, REFUSED_MS);
    if (d2 >= 0) {
        r->second = 1;
        close(d2);
    }
out:;
}

/* Active: the client listens and says where; the server connects to what the (rewritten)
   command says. The kernel's DNAT element carries it to the client; a host other than the
   server, and a second connection, must not get through. */
static void active_transfer(ftp_run *r, int c, int s)
{
    char line[256], ip[32];
    uint16_t cport = 0, port = 0;
    bool ext = r->mode == M_EPRT;
    int cl = tn_listener_in(r->cli_ns, r->cli_ip, 0, &cport);
    if (ext) {
        snprintf(line, sizeof line, "EPRT |1|%s|%u|\r\n", r->cli_ip, cport);
    } else {
        unsigned a, b, c2, d;
        sscanf(r->cli_ip, "%u.%u.%u.%u", &a, &b, &c2, &d);
        snprintf(line, sizeof line, "PORT %u,%u,%u,%u,%u,%u\r\n", a, b, c2, d, cport >> 8, cport & 255);
    }
    tu_write_all(c, line, strlen(line));
    if (!read_line(s, line, sizeof line) || strncmp(line, ext ? "EPRT " : "PORT ", 5) != 0 ||
        !parse_hostport(line + 5, ext, ip, &port))
        FAIL_RUN("server got \"%s\"", line);
    snprintf(r->told, sizeof r->told, "%s", ip);
    tu_write_all(s, "200 ok\r\n", 8);
    if (!read_line(c, line, sizeof line) || strncmp(line, "200", 3) != 0)
        FAIL_RUN("client got \"%s\"", line);
    struct sockaddr_in peer;
    /* A stranger: another host on the server's side (only the transparent layout has one). */
    int x = r->srv_ns == r->g->topo.server_fd ? tn_connect_in(r->srv_ns, TN_OTHER, ip, port, REFUSED_MS) : -1;
    if (x >= 0) {
        r->stranger = 1;
        close(x);
        int xs = tn_accept_within(cl, 200, NULL);
        if (xs >= 0)
            close(xs);
    }
    int d = tn_connect_in(r->srv_ns, r->srv_ip, ip, port, 3000);
    int dc = d >= 0 ? tn_accept_within(cl, 3000, &peer) : -1;
    if (dc >= 0) {
        inet_ntop(AF_INET, &peer.sin_addr, r->seen_data, sizeof r->seen_data);
        tu_write_all(d, "payload", 7);
        close(d);
        d = -1;
        ssize_t n = recv(dc, r->got, sizeof r->got - 1, MSG_WAITALL);
        r->got[n > 0 ? n : 0] = '\0';
        r->ok = 1;
        close(dc);
    }
    if (d >= 0)
        close(d);
    int d2 = tn_connect_in(r->srv_ns, r->srv_ip, ip, port, REFUSED_MS);
    if (d2 >= 0) {
        r->second = 1;
        close(d2);
    }
out:
    close(cl);
}

/* The same IPv4 or IPv6 address and port. */
static bool same_inet(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
    return a->ss_family == AF_INET && x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

/* TCP_NODELAY of fwx's two relayed sockets of the control connection c (client) / s (server's
   accepted end): the gateway runs in this process, so they are in its fd table. The client-side
   one has c's address as its peer, the server-side one s's peer as its own address.
   out[i] = -1 when not found. */
static void relay_nodelay(int c, int s, int out[2])
{
    struct sockaddr_storage want[2], a;
    socklen_t l = sizeof want[0];
    out[0] = out[1] = -1;
    if (getsockname(c, (struct sockaddr *)&want[0], &l) != 0)
        return;
    l = sizeof want[1];
    if (getpeername(s, (struct sockaddr *)&want[1], &l) != 0)
        return;
    for (int fd = 3; fd < 1024; fd++) {
        if (fd == c || fd == s)
            continue;
        for (int i = 0; i < 2; i++) {
            l = sizeof a;
            if ((i == 0 ? getpeername(fd, (struct sockaddr *)&a, &l) : getsockname(fd, (struct sockaddr *)&a, &l)) != 0 ||
                !same_inet(&a, &want[i]))
                continue;
            int v = -1;
            socklen_t vl = sizeof v;
            if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0)
                out[i] = v != 0;
        }
    }
}

/* Client and scripted server (one transfer in r->mode), on a thread: the test thread runs the
   loop. */
static void *ftp_peers(void *arg)
{
    ftp_run *r = arg;
    char line[256];
    struct sockaddr_in peer;
    int c = tn_connect_in(r->cli_ns, NULL, r->dial_ip, r->dial_port, 3000);
    int s = c >= 0 ? tn_accept_within(r->ctl_l, 3000, &peer) : -1;
    if (s < 0)
        goto out;
    inet_ntop(AF_INET, &peer.sin_addr, r->seen_ctl, sizeof r->seen_ctl);
    tu_write_all(s, "220 hi\r\n", 8);
    if (!read_line(c, line, sizeof line) || strncmp(line, "220", 3) != 0)
        goto out;
    relay_nodelay(c, s, r->nodelay); /* the greeting went through: the relay is running */
    if (r->mode == M_PASV || r->mode == M_EPSV)
        passive_transfer(r, c, s);
    else
        active_transfer(r, c, s);
out:
    if (s >= 0)
        close(s);
    if (c >= 0)
        close(c);
    r->done = 1;
    return NULL;
}

/* A published FTP server inside (the client namespace, 10.99.1.2:21) reached from outside at
   the gateway's 10.99.2.1:2121; the rule's protocol has the FTP filter, so the control
   connection takes a user-mode listener while the data connections are kernel elements. */
/* The rule also covers the data connections (checked against the control connection's
   protocol): the server's passive port inside, the remote client's active port outside. */
static const char *policy_ftp_published =
    "networks = { internal = { ranges = [ \"10.99.1.0/24\" ]; };\n"
    "             localhost = { ranges = [ \"" TN_GW_IN "/32\", \"" TN_GW_OUT "/32\" ]; }; };\n"
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
    "protocols = ( { name = \"ftp-in\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000002121}\"; protocol = \"tcp\";"
    " port = 2121; direction = \"inbound\"; filters = [ \"" FTP_GUID "\" ]; } );\n"
    "rules = ( { name = \"publish ftp\"; action = \"allow\"; from = [ \"external\", \"internal\" ];"
    " to = [ \"localhost\", \"internal\", \"external\" ];"
    " protocols = [ \"ftp-in\" ]; } );\n"
    "publishing = ( { name = \"ftp\"; listen = \"" TN_GW_OUT ":2121\"; server = \"" TN_CLIENT ":21\";"
    " protocol = \"ftp-in\"; full_proxy = true; } );\n";

/* One FTP session in one mode through the kernel gateway with the real FTP filter: the
   control connection in the user-mode path (intercepted, or a publishing rule's listener),
   the data connection a kernel-mode secondary connection (a permission element, or a DNAT
   element). */
static void ftp_through_kernel(ftp_mode mode, bool published)
{
    gw g;
    gw_start(&g, false, ftp_plugin(), published ? policy_ftp_published : policy_ftp);

    ftp_run r;
    memset(&r, 0, sizeof r);
    r.g = &g;
    r.mode = mode;
    if (published) {
        r.cli_ns = g.topo.server_fd, r.cli_ip = TN_SERVER;
        r.srv_ns = g.topo.client_fd, r.srv_ip = TN_CLIENT;
        r.dial_ip = TN_GW_OUT, r.dial_port = 2121;
    } else {
        r.cli_ns = g.topo.client_fd, r.cli_ip = TN_CLIENT;
        r.srv_ns = g.topo.server_fd, r.srv_ip = TN_SERVER;
        r.dial_ip = TN_SERVER, r.dial_port = 21;
    }
    r.ctl_l = tn_listener_in(r.srv_ns, "0.0.0.0", 21, NULL);
    r.data_l = tn_listener_in(r.srv_ns, "0.0.0.0", 0, NULL);
    r.data_port = tu_bound_port(r.data_l);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, ftp_peers, &r), 0);
    uint64_t t0 = tn_now_ms();
    while (!r.done && tn_now_ms() - t0 < 20000)
        uv_run(&g.loop, UV_RUN_NOWAIT), usleep(1000);
    pthread_join(th, NULL);
    /* The gateway's address on the server's side: fwx dialled the control connection. */
    const char *gw_srv_side = published ? TN_GW_IN : TN_GW_OUT;
    ck_assert_msg(r.seen_ctl[0] != '\0', "the control connection never reached the server");
    ck_assert_str_eq(r.seen_ctl, gw_srv_side);
    ck_assert_msg(r.why[0] == '\0', "%s: %s", mode_name[mode], r.why);
    ck_assert_msg(r.ok, "%s data: got \"%s\" (seen from \"%s\")", mode_name[mode], r.got, r.seen_data);
    ck_assert_str_eq(r.got, "payload");
    if (mode == M_PASV || mode == M_EPSV) {
        /* transparent: the kernel's masquerade (nat relationship); published with full_proxy:
           the gateway's inside address (the filter asks for PROXY_MODE, the kernel masquerades) */
        ck_assert_str_eq(r.seen_data, published ? TN_GW_IN : TN_GW_OUT);
    } else {
        ck_assert_str_eq(r.told, gw_srv_side); /* the server was given the gateway, never the client */
        /* DNAT to the client; transparent: the server's address kept; published: the inside
           server stays hidden behind the gateway (masquerade of the nat relationship) */
        ck_assert_str_eq(r.seen_data, published ? TN_GW_OUT : TN_SERVER);
        ck_assert_msg(!r.stranger, "%s: a host other than the server reached the bound port", mode_name[mode]);
    }
    ck_assert_msg(!r.second, "%s: a second data connection got through a one-shot grant", mode_name[mode]);
    /* The relay writes what it read at once: with Nagle, a reply written while the previous one
       is unacknowledged waits for the peer's delayed ACK (an FTP 226 after its 150: ~40 ms,
       bench/README.md, issue 13, part 5). */
    ck_assert_msg(r.nodelay[0] == 1 && r.nodelay[1] == 1,
                  "%s: TCP_NODELAY of the relay's client-side socket %d, server-side %d (1: set, -1: not found)",
                  mode_name[mode], r.nodelay[0], r.nodelay[1]);
    close(r.ctl_l);
    close(r.data_l);
    gw_close(&g);
}

/* One test per mode, intercepted and published: the table of what ftp_through_kernel runs. */
#define FTP_KERNEL_CASE(name, mode, published)                                                        \
    START_TEST(name) { ftp_through_kernel(mode, published); }                                          \
    END_TEST
FTP_KERNEL_CASE(intercept_ftp_pasv, M_PASV, false)
FTP_KERNEL_CASE(intercept_ftp_epsv, M_EPSV, false)
FTP_KERNEL_CASE(intercept_ftp_port, M_PORT, false)
FTP_KERNEL_CASE(intercept_ftp_eprt, M_EPRT, false)
FTP_KERNEL_CASE(published_ftp_pasv, M_PASV, true)
FTP_KERNEL_CASE(published_ftp_epsv, M_EPSV, true)
FTP_KERNEL_CASE(published_ftp_port, M_PORT, true)
FTP_KERNEL_CASE(published_ftp_eprt, M_EPRT, true)

/* fwx's interception listener listens on the wildcard address (REDIRECT
   delivers to the ingress interface's address), but takes only what the redirect rules
   deliver: a client that connects to the listener's port directly, on either of the gateway's
   addresses, gets no connection (dropped in input: no DNAT in its conntrack status), and the
   gateway logs nothing about it. An intercepted FTP session still works (the tests above). */
START_TEST(intercept_listener_strays_dropped)
{
    gw g;
    gw_start(&g, false, ftp_plugin(), policy_ftp);
    char cmd[160], line[256];
    /* the listener's port: where the policy's interception rule redirects to */
    snprintf(cmd, sizeof cmd, "nft list chain inet fwx_%s intercept 2>&1", g.name);
    FILE *f = popen(cmd, "r"); /* the test thread is in the gateway namespace: so is the child */
    ck_assert_ptr_nonnull(f);
    unsigned port = 0;
    for (int i = 0; i < 64 && fgets(line, sizeof line, f) != NULL; i++) {
        const char *d = strstr(line, "redirect to :");
        if (strstr(line, "ipv4") != NULL && d != NULL)
            port = (unsigned)strtoul(d + 13, NULL, 10);
    }
    pclose(f);
    ck_assert_msg(port != 0, "no interception rule in the table");
    const char *addrs[] = {TN_GW_IN, TN_GW_OUT};
    for (int k = 0; k < 3; k++) {
        int c = tn_connect_in(g.topo.client_fd, NULL, addrs[k % 2], (uint16_t)port, 600);
        ck_assert_msg(c < 0, "a direct connection to the interception listener %s:%u was accepted", addrs[k % 2],
                      port);
        tu_loop_run_for(&g.loop, 20);
    }
    ck_assert_int_eq(tu_log_count("interception listener", NULL), 0);
    ck_assert_int_eq(tu_log_count("intercepted connection", NULL), 0);
    gw_close(&g);
}
END_TEST

/* Reads one line from the client socket c while the gateway's loop runs (up to a second), into
   buf (NUL-terminated, what arrived when no line did). */
static void line_while_running(gw *g, int c, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = '\0';
    for (int i = 0; i < 100 && strstr(buf, "\r\n") == NULL && got < cap - 1; i++) {
        tu_loop_run_for(&g->loop, 10);
        ssize_t n = recv(c, buf + got, cap - 1 - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        buf[got] = '\0';
    }
}

/* Out of file descriptors, the interception listener neither spins nor loses the connection:
   accept4 fails with EMFILE, one line says so (rate-limited: one a second), accepting pauses
   (the connection waits in the kernel's listen queue), and once descriptors are free again the
   connection is taken and relayed. The loop's turns are counted while short: a listener that
   woke on the waiting connection again at once would turn it thousands of times. */
static void count_turn(uv_prepare_t *h) { (*(unsigned *)h->data)++; }

START_TEST(intercept_out_of_descriptors)
{
    gw g;
    gw_start(&g, false, ftp_plugin(), policy_ftp);
    int srv_l = tn_listener_in(g.topo.server_fd, "0.0.0.0", 21, NULL);
    /* Queued on fwx's listener before the shortage: the loop has not run since. */
    int c = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, 21, 2000);
    ck_assert_msg(c >= 0, "the client could not connect to the interception listener's queue");
    struct rlimit was;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
    int lowest = dup(0); /* the lowest free descriptor: a limit there leaves none to open */
    ck_assert_int_ge(lowest, 0);
    close(lowest);
    struct rlimit none = {(rlim_t)lowest, was.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
    unsigned turns = 0;
    uv_prepare_t turn;
    uv_prepare_init(&g.loop, &turn);
    turn.data = &turns;
    uv_prepare_start(&turn, count_turn);
    tu_loop_run_for(&g.loop, 350);
    uv_prepare_stop(&turn);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
    ck_assert_int_eq(tu_log_count("out of file descriptors (EMFILE", "accepting intercepted connections"), 1);
    ck_assert_msg(turns < 100, "the loop turned %u times in 350 ms while descriptors were short", turns);
    /* Descriptors again: the waiting connection is accepted and relayed to the server. */
    tu_loop_run_for(&g.loop, ACCEPT_WAIT_MS);
    int s = tn_accept_within(srv_l, 2000, NULL);
    ck_assert_msg(s >= 0, "the connection that waited was not relayed once descriptors were free");
    ck_assert_int_eq(tu_write_all(s, "220 ready\r\n", 11), 0);
    char buf[16];
    line_while_running(&g, c, buf, sizeof buf);
    ck_assert_str_eq(buf, "220 ready\r\n");
    uv_close((uv_handle_t *)&turn, NULL);
    close(s);
    close(c);
    close(srv_l);
    gw_close(&g);
}
END_TEST

/* ---- a filter that plays the server (EmulateForConnect) ------------------------------------ */

#define TP_GUID "{7e570000-0000-0000-0000-000000000001}"
#define EMU_GREETING "220 emulated\r\n"

/* Writes a greeting to the client when its sockets come, and remembers whether it was given a
   server-side socket (it must not be: nothing is dialled for an emulated connection). */
typedef struct emu {
    IFWXDataFilter iface;
    fwx_refcount refs;
    IFWXFirewall *fw;
    IFWXSocket *in;
    int setsockets, had_external, detached, send_failed, emulate_hr;
} emu;

static void emu_destroy(emu *e)
{
    (void)e;
    ck_abort_msg("the emulating filter was released more often than referenced");
}

/* emu_impl, emu_QueryInterface, emu_AddRef, emu_Release */
FWX_IUNKNOWN_IMPL(emu, IFWXDataFilter, emu, iface, refs, emu_destroy, &IID_IFWXDataFilter)

static fwx_result emu_setsockets(IFWXDataFilter *This, IFWXSocket *in, IFWXSocket *ex, IFWXConnection *c, IUnknown *x)
{
    (void)c;
    (void)x;
    emu *e = emu_impl(This);
    e->setsockets++;
    e->had_external = ex != NULL;
    e->in = in;
    IFWXSocket_AddRef(in);
    IFWXIOBuffer *b = NULL;
    uint8_t *p;
    uint32_t n;
    if (FWX_FAILED(IFWXFirewall_CreateBuffer(e->fw, sizeof EMU_GREETING - 1, &b)) ||
        FWX_FAILED(IFWXIOBuffer_SetDataSize(b, sizeof EMU_GREETING - 1))) {
        e->send_failed++;
    } else {
        IFWXIOBuffer_GetBufferAndSize(b, &p, &n);
        memcpy(p, EMU_GREETING, n);
        if (FWX_FAILED(IFWXSocket_Send(in, b, NULL, 0)))
            e->send_failed++;
    }
    if (b != NULL)
        IFWXIOBuffer_Release(b);
    return FWX_S_OK;
}

static fwx_result emu_detach(IFWXDataFilter *This)
{
    emu *e = emu_impl(This);
    e->detached++;
    if (e->in != NULL) {
        IFWXSocket_Close(e->in);
        IFWXSocket_Release(e->in);
    }
    e->in = NULL;
    return FWX_S_OK;
}

static const IFWXDataFilterVtbl emu_vtbl = {emu_QueryInterface, emu_AddRef, emu_Release, emu_setsockets, emu_detach};

/* The test plugin's handler: every intercepted connection is emulated. */
static fwx_result emulate_it(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    (void)s;
    emu *e = ctl->arg;
    if (ev->EventType == fwx_Connect_Tcp) {
        e->fw = ctl->fw;
        e->emulate_hr = IFWXConnection_EmulateForConnect(ev->Parameters.Connect.piConnection, &e->iface, NULL);
    }
    return FWX_S_OK;
}

#define POLICY_EMU                                                                                      \
    "networks = { internal = { ranges = [ \"10.99.1.0/24\" ]; }; };\n"                                  \
    "protocols = ( { name = \"e1\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000007002}\"; protocol = \"tcp\";" \
    " port = 7002; direction = \"outbound\"; filters = [ \"" TP_GUID "\" ]; } );\n"                    \
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"                \
    "rules = ( { name = \"e1 out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];" \
    " protocols = [ \"e1\" ]; } );\n"

/* A filter that emulates the server of an intercepted connection (EmulateForConnect): fwx
   dials nothing (the server's listener sees no connection), the filter gets no external
   socket, and the client talks to the filter. */
START_TEST(intercept_emulated_server)
{
    gw g;
    fwx_firewall_options o;
    tn_gw_begin(&g, "e", false, &o);
    tu_fw_open(&g.loop, &o, &g.fw);
    static emu e;
    memset(&e, 0, sizeof e);
    e.iface.lpVtbl = &emu_vtbl;
    fwx_refcount_init(&e.refs);
    void *dl = NULL;
    tp_control *ctl = tu_plugin_map("tp_good", &dl);
    ctl->hooks = fwx_Connect_Tcp | FWX_ALL_SOURCES | fwxAssociatedProtocolsAllConnections;
    ctl->on_event = emulate_it;
    ctl->arg = &e;
    tu_plugin_load(g.fw, "tp_good");
    TU_EXPECT_HR(fwx_firewall_set_policy(g.fw, tu_policy(POLICY_EMU)), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_S_OK);
    dlclose(dl);

    int srv_l = tn_listener_in(g.topo.server_fd, "0.0.0.0", 7002, NULL);
    int c = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, 7002, 2000);
    ck_assert_msg(c >= 0, "the client could not connect (interception)");
    char buf[32];
    line_while_running(&g, c, buf, sizeof buf);
    TU_EXPECT_HR(e.emulate_hr, FWX_S_OK);
    ck_assert_int_eq(e.setsockets, 1);
    ck_assert_msg(!e.had_external, "the emulating filter was given a server-side socket");
    ck_assert_int_eq(e.send_failed, 0);
    ck_assert_str_eq(buf, EMU_GREETING);
    int s = tn_accept_within(srv_l, 200, NULL);
    if (s >= 0)
        close(s);
    ck_assert_msg(s < 0, "fwx dialled the server of an emulated connection");
    close(c);
    tu_loop_run_for(&g.loop, 50);
    close(srv_l);
    gw_close(&g);
    ck_assert_int_eq(e.detached, 1);
    ck_assert_uint_eq(fwx_refcount_get(&e.refs), 1); /* every reference the core took is back */
}
END_TEST

/* ---- IPv6: the same interception (fwx's IPv6 listener, IP6T_SO_ORIGINAL_DST) ----------------- */

static const char *policy_ftp6 =
    "networks = { internal = { ranges = [ \"10.99.1.0/24\", \"fd99:1::/64\" ]; }; };\n"
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
    "protocols = ( { name = \"ftp\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000000021}\"; protocol = \"tcp\";"
    " port = 21; direction = \"outbound\"; filters = [ \"" FTP_GUID "\" ]; } );\n"
    "rules = ( { name = \"ftp out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
    " protocols = [ \"ftp\" ]; } );\n";

static int listen6_in(int nsfd, const char *ip, uint16_t port, uint16_t *bound)
{
    int fd = tn_socket_in(nsfd, AF_INET6, SOCK_STREAM);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    if (bound != NULL) {
        socklen_t l = sizeof a;
        getsockname(fd, (struct sockaddr *)&a, &l);
        *bound = ntohs(a.sin6_port);
    }
    return fd;
}

static int connect6_in(int nsfd, const char *ip, uint16_t port)
{
    int fd = tn_socket_in(nsfd, AF_INET6, SOCK_STREAM);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    struct timeval tv = {5, 0}; /* a fresh IPv6 link may lose a first SYN to neighbour discovery */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    tu_set_timeouts(fd);
    return fd;
}

static int accept6_within(int lfd, int ms, char ip[INET6_ADDRSTRLEN])
{
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return -1;
    struct sockaddr_in6 peer;
    socklen_t l = sizeof peer;
    int fd = accept(lfd, (struct sockaddr *)&peer, &l);
    if (fd >= 0) {
        tu_set_timeouts(fd);
        if (ip != NULL)
            inet_ntop(AF_INET6, &peer.sin6_addr, ip, INET6_ADDRSTRLEN);
    }
    return fd;
}

typedef struct ftp6 {
    gw *g;
    int ctl_l, data_l;
    uint16_t data_port;
    char seen_ctl[INET6_ADDRSTRLEN], seen_data[INET6_ADDRSTRLEN], got[16], why[160];
    int nodelay[2]; /* as ftp_run's: fwx's IPv6 listener passes TCP_NODELAY on too */
    volatile int done;
} ftp6;

static void *ftp6_peers(void *arg)
{
    ftp6 *r = arg;
    char line[256];
    int c = connect6_in(r->g->topo.client_fd, TN6_SERVER, 21);
    int s = c >= 0 ? accept6_within(r->ctl_l, 5000, r->seen_ctl) : -1;
    int d = -1, ds = -1;
    if (s < 0) {
        snprintf(r->why, sizeof r->why, "the IPv6 control connection did not reach the server");
        goto out;
    }
    tu_write_all(s, "220 hi\r\n", 8);
    if (!read_line(c, line, sizeof line) || strncmp(line, "220", 3) != 0)
        goto out;
    relay_nodelay(c, s, r->nodelay);
    tu_write_all(c, "EPSV\r\n", 6);
    if (!read_line(s, line, sizeof line) || strncmp(line, "EPSV", 4) != 0) {
        snprintf(r->why, sizeof r->why, "server got \"%s\"", line);
        goto out;
    }
    snprintf(line, sizeof line, "229 Entering Extended Passive Mode (|||%u|)\r\n", r->data_port);
    tu_write_all(s, line, strlen(line));
    unsigned p = 0;
    if (!read_line(c, line, sizeof line) || strncmp(line, "229", 3) != 0 || strstr(line, "(|||") == NULL ||
        sscanf(strstr(line, "(|||"), "(|||%u|)", &p) != 1) {
        snprintf(r->why, sizeof r->why, "client got \"%s\"", line);
        goto out;
    }
    d = connect6_in(r->g->topo.client_fd, TN6_SERVER, (uint16_t)p);
    ds = d >= 0 ? accept6_within(r->data_l, 5000, r->seen_data) : -1;
    if (ds < 0) {
        snprintf(r->why, sizeof r->why, "the IPv6 data connection did not reach the server");
        goto out;
    }
    tu_write_all(ds, "payload", 7);
    close(ds);
    ds = -1;
    ssize_t n = recv(d, r->got, sizeof r->got - 1, MSG_WAITALL);
    r->got[n > 0 ? n : 0] = '\0';
out:
    if (ds >= 0)
        close(ds);
    if (d >= 0)
        close(d);
    if (s >= 0)
        close(s);
    if (c >= 0)
        close(c);
    r->done = 1;
    return NULL;
}

/* A transparent FTP session over IPv6 (EPSV): the control connection is intercepted by fwx's
   IPv6 listener, the data connection is a kernel permission element of the IPv6 set, and the
   nat relationship masquerades it. */
START_TEST(intercept_ftp_epsv_ipv6)
{
    gw g;
    gw_start(&g, true, ftp_plugin(), policy_ftp6);

    ftp6 r;
    memset(&r, 0, sizeof r);
    r.g = &g;
    r.ctl_l = listen6_in(g.topo.server_fd, "::", 21, NULL);
    r.data_l = listen6_in(g.topo.server_fd, "::", 0, &r.data_port);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, ftp6_peers, &r), 0);
    uint64_t t0 = tn_now_ms();
    while (!r.done && tn_now_ms() - t0 < 20000)
        uv_run(&g.loop, UV_RUN_NOWAIT), usleep(1000);
    pthread_join(th, NULL);
    ck_assert_msg(r.why[0] == '\0', "IPv6 EPSV: %s", r.why);
    ck_assert_str_eq(r.seen_ctl, TN6_GW_OUT);  /* intercepted: fwx dialled from the gateway */
    ck_assert_str_eq(r.got, "payload");
    ck_assert_str_eq(r.seen_data, TN6_GW_OUT); /* the kernel's masquerade */
    ck_assert_msg(r.nodelay[0] == 1 && r.nodelay[1] == 1, "IPv6: TCP_NODELAY of the relay's sockets %d, %d",
                  r.nodelay[0], r.nodelay[1]);
    /* the kernel carried it: its conntrack NEW made it the core's kernel-mode connection */
    for (int i = 0; i < 100 && tu_log_count("opened through permission", "(kernel-carried)") == 0; i++)
        tu_loop_run_for(&g.loop, 20);
    ck_assert_int_eq(tu_log_count("opened through permission", "(kernel-carried)"), 1);
    close(r.ctl_l);
    close(r.data_l);
    gw_close(&g);
}
END_TEST

/* A user-mode permission over IPv6 (FWX_FLAG_NO_KERNEL_MODE): the flow is redirected by the
   user6 set into fwx's IPv6 listener, admitted through the core, and relayed from the gateway. */
typedef struct flow6 {
    gw *g;
    int lfd, ok;
    uint16_t port;
    char seen[INET6_ADDRSTRLEN];
    volatile int done;
} flow6;

static void *flow6_run(void *arg)
{
    flow6 *f = arg;
    int c = connect6_in(f->g->topo.client_fd, TN6_SERVER, f->port);
    int a = c >= 0 ? accept6_within(f->lfd, 5000, f->seen) : -1;
    char buf[8];
    if (a >= 0) {
        f->ok = tu_write_all(c, "hello", 5) == 0 && recv(a, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "hello", 5) == 0;
        close(a);
    }
    if (c >= 0)
        close(c);
    f->done = 1;
    return NULL;
}

START_TEST(user_mode_permission_ipv6)
{
    gw g;
    gw_start(&g, true, NULL, NULL);
    flow6 f;
    memset(&f, 0, sizeof f);
    f.g = &g;
    f.lfd = listen6_in(g.topo.server_fd, "::", 0, &f.port);
    struct sockaddr_storage c = tu_addr(TN6_CLIENT), srv = tu_addr("[" TN6_SERVER "]:21");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(g.fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL,
                                0, 0, NULL};
    IFWXConnection *ctl = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &ctl), FWX_S_OK);
    char t[64];
    snprintf(t, sizeof t, "[" TN6_SERVER "]:%u", f.port);
    struct sockaddr_storage tgt = tu_addr(t);
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(s, TU_SA(tgt), tu_len(&tgt), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_NO_KERNEL_MODE, &FWX_GUID_NULL, NULL, NULL, ctl, NULL),
                 FWX_S_OK);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, flow6_run, &f), 0);
    uint64_t t0 = tn_now_ms();
    while (!f.done && tn_now_ms() - t0 < 15000)
        tu_loop_run_for(&g.loop, 10);
    pthread_join(th, NULL);
    ck_assert_msg(f.ok, "the user-mode IPv6 permission did not carry data");
    ck_assert_str_eq(f.seen, TN6_GW_OUT); /* relayed by fwx from the gateway */
    ck_assert_int_eq(tu_log_count("opened through permission", "(relayed, no data filter)"), 1);
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
    close(f.lfd);
    gw_close(&g);
}
END_TEST

static Suite *gateway_suite(void)
{
    const tu_case cases[] = {
        {"policy forwarding", policy_forwarding},
        {"policy many rules", policy_many_rules},
        {"policy flows reported", policy_flows_reported},
        {"intercept ftp PASV", intercept_ftp_pasv},
        {"intercept ftp EPSV", intercept_ftp_epsv},
        {"intercept ftp PORT", intercept_ftp_port},
        {"intercept ftp EPRT", intercept_ftp_eprt},
        {"intercept listener strays dropped", intercept_listener_strays_dropped},
        {"intercept out of descriptors", intercept_out_of_descriptors},
        {"intercept emulated server", intercept_emulated_server},
        {"published ftp PASV", published_ftp_pasv},
        {"published ftp EPSV", published_ftp_epsv},
        {"published ftp PORT", published_ftp_port},
        {"published ftp EPRT", published_ftp_eprt},
        {"intercept ftp EPSV ipv6", intercept_ftp_epsv_ipv6},
        {"user mode permission ipv6", user_mode_permission_ipv6},
    };
    return TU_SUITE("nft gateway", cases, 30);
}

int main(void) { return tn_main(gateway_suite, "network namespace tests"); }
