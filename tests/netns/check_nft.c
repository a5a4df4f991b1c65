/*
 * fwx tests - the "nft" backend in network namespaces: the table's life (created at open,
 * replaced after a crash, gone after close), the kernel probe, no rights -> FWX_E_NOT_SUPPORTED
 * and the proxy fallback, and grants observed with real TCP connections between a client and
 * a server namespace through the gateway namespace (netns.h).
 *
 * The test process enters the gateway namespace before it makes a firewall, so every
 * nftables change happens there; client and server sockets are made in their own namespaces
 * (tn_socket_in). The kernel forwards by itself: the peers run on the test's thread with
 * bounded waits, and the loop runs only when the core's timers matter.
 *
 * Not root, or no namespaces: the whole program exits 77 (meson: skipped) with the reason.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "netns.h"
#include "backends/nft/ct.h"
#include "backends/nft/nft_impl.h"
#include "backends/nft/rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a connection that should be refused may take to fail (dropped SYNs). */
#define REFUSED_MS 2000

/* ---- the gateway ------------------------------------------------------------------------------ */

typedef tn_gw gw;

/* The upper end of BindForClient's port range (40000-). */
static uint16_t port_max = 40999;
/* fwx_firewall_options.kernel_end_on_close for the next gw_open. */
static int end_on_close;
/* fwx_firewall_options.kernel_open_on_stop for the next gw_open. */
static int open_on_stop;

/* The shared fixture (netns.h) with this suite's options: a firewall, no backend yet. */
static void gw_new(gw *g, uint32_t timeout_ms)
{
    fwx_firewall_options o;
    tn_gw_begin(g, "t", false, &o);
    o.port_max = port_max;
    o.timeout_ms = timeout_ms;
    o.kernel_end_on_close = end_on_close;
    o.kernel_open_on_stop = open_on_stop;
    tn_gw_start(g, &o, NULL, NULL, NULL);
}

static void gw_open(gw *g, uint32_t timeout_ms)
{
    gw_new(g, timeout_ms);
    TU_EXPECT_HR(fwx_firewall_set_backend(g->fw, "nft"), FWX_S_OK);
}

static void gw_close(gw *g) { tn_gw_close(g); }

/* gw_open, and a listener on ip (in the client's namespace for TN_CLIENT, else the server's;
   its port in *port): the listening socket. */
static int gw_open_listener(gw *g, uint32_t timeout_ms, const char *ip, uint16_t *port)
{
    gw_open(g, timeout_ms);
    return tn_listener_in(strcmp(ip, TN_CLIENT) == 0 ? g->topo.client_fd : g->topo.server_fd, ip, 0, port);
}

/* Undoes gw_open_listener. */
static void gw_close_listener(gw *g, int lfd)
{
    close(lfd);
    gw_close(g);
}

static const char *table_text(gw *g)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "list table inet %s", g->table);
    return tn_nft_list(cmd);
}

/* ---- peers ------------------------------------------------------------------------------------- */




/* Connects from namespace nsfd (from address src, or the namespace's choice if NULL) to
   ip:port within ms: the connected socket, or -1. */


/* A connection from the client's namespace to the server's listener through the gateway:
   1 if it connected and carried a request and a reply, 0 if it was refused or timed out.
   *elapsed gets how long the attempt took. */
static int client_to_server(gw *g, int lfd, const char *ip, uint16_t port, uint64_t *elapsed)
{
    uint64_t t0 = tn_now_ms();
    int c = tn_connect_in(g->topo.client_fd, NULL, ip, port, REFUSED_MS);
    if (elapsed != NULL)
        *elapsed = tn_now_ms() - t0;
    if (c < 0)
        return 0;
    struct sockaddr_in peer;
    int s = tn_accept_within(lfd, 1000, &peer);
    int ok = 0;
    char buf[8];
    if (s >= 0 && tu_write_all(c, "hello", 5) == 0 && recv(s, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "hello", 5) == 0 &&
        tu_write_all(s, "world", 5) == 0 && recv(c, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "world", 5) == 0)
        ok = 1;
    if (s >= 0)
        close(s);
    close(c);
    return ok;
}

/* ---- sessions --------------------------------------------------------------------------------- */

/* A NAT session of the client with a primary connection to the server's port 21 (reported by
   the host; carried elsewhere), as an FTP filter would have it. */
static IFWXSession *nat_session(gw *g, IFWXConnection **ctl)
{
    struct sockaddr_storage c = tu_addr(TN_CLIENT), gi = tu_addr(TN_GW_IN), srv = tu_addr(TN_SERVER ":21");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), TU_SA(gi), tu_len(&gi), NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(g->fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv), NULL, 0, NULL,
                                0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(s, &cp, ctl), FWX_S_OK);
    return s;
}

/* BindForClient for the client's port cport (TN_CLIENT) on the gateway's outer address, one
   connection of `protocol` with flags, backlog and ipf (may be NULL); asserts FWX_S_OK and
   returns the gateway's port. */
static uint16_t bind_client(IFWXSession *s, uint16_t cport, int32_t protocol, uint32_t flags, int32_t backlog,
                            IFWXIpFilter *ipf, IFWXConnection *bound[1])
{
    char ca_text[64];
    snprintf(ca_text, sizeof ca_text, TN_CLIENT ":%u", cport);
    struct sockaddr_storage ca = tu_addr(ca_text), px = tu_addr(TN_GW_OUT ":0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, cap, tu_len(&ca), TU_SAM(px), sizeof px, protocol, 1, flags, backlog,
                                           &FWX_GUID_NULL, NULL, NULL, ipf, bound),
                 FWX_S_OK);
    return ntohs(((struct sockaddr_in *)&px)->sin_port);
}

static void session_end(IFWXSession *s, IFWXConnection *ctl)
{
    fwx_connection_close(ctl);
    fwx_session_close(s);
    IFWXSession_Release(s);
}

static fwx_result allow(IFWXSession *s, IFWXConnection *ctl, const char *ip, uint16_t port, uint32_t flags)
{
    char text[64];
    snprintf(text, sizeof text, "%s:%u", ip, port);
    struct sockaddr_storage t = tu_addr(text);
    return IFWXSession_AllowFutureConnect(s, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP, flags, &FWX_GUID_NULL,
                                          NULL, NULL, ctl, NULL);
}

typedef struct listed {
    int n;
    fwx_grant last;
} listed;

static void count_grant(void *arg, const fwx_grant *gr)
{
    listed *l = arg;
    l->n++;
    l->last = *gr;
}

static listed backend_list(gw *g)
{
    listed l = {0};
    const fwx_backend *b = fwx_backend_find("nft");
    ck_assert_ptr_nonnull(b);
    TU_EXPECT_HR(b->list(fwx_firewall_backend_state(g->fw), count_grant, &l), FWX_S_OK);
    return l;
}

/* ---- the table -------------------------------------------------------------------------------- */

START_TEST(table_lifecycle)
{
    gw g;
    gw_open(&g, 60000);
    const char *t = table_text(&g);
    ck_assert_msg(t != NULL, "table inet %s is missing after open", g.table);
    ck_assert_ptr_nonnull(strstr(t, "chain prerouting"));
    ck_assert_ptr_nonnull(strstr(t, "chain forward"));
    ck_assert_ptr_nonnull(strstr(t, "chain postrouting"));
    ck_assert_ptr_nonnull(strstr(t, "type filter hook forward priority 0; policy drop;"));
    ck_assert_ptr_null(strstr(t, "fwx_probe")); /* the probe cleaned up after itself */
    ck_assert_ptr_null(strstr(t, "elements"));
    ck_assert_int_eq(tu_log_count("left by an earlier run", NULL), 0);
    /* The probe: this kernel (6.x with everything built in) has what the backend needs. */
    const fwx__nft_features *f = fwx__nft_features_of(g.fw);
    ck_assert_ptr_nonnull(f);
    ck_assert(f->rights && f->nf_tables && f->set_timeout && f->dynset_delete && f->nat);
    char names[256];
    unsigned missing = fwx__nft_missing(f);
    fprintf(stderr, "nft probe: tproxy %d, conntrack %d, conntrack events %d; missing: %s\n", f->tproxy, f->conntrack,
            f->ct_events, missing ? fwx__nft_feature_names(missing, names, sizeof names) : "nothing");
    if (missing == 0)
        ck_assert_int_eq(tu_log_count("kernel has every feature fwx uses", NULL), 1);
    else
        ck_assert_int_eq(tu_log_count(fwx__nft_feature_names(missing, names, sizeof names), NULL), 1);
    /* Another backend in its place: the instance's table goes, and a closed one (forward
       drop, nothing else) stays in its place (fail closed). */
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "proxy"), FWX_S_OK);
    t = table_text(&g);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t, FWX_NFT_CLOSED_TAG));
    ck_assert_ptr_nonnull(strstr(t, "type filter hook forward priority 0; policy drop;"));
    ck_assert_ptr_null(strstr(t, "chain prerouting"));
    ck_assert_int_eq(tu_log_count("stopped: table inet ", "left closed: every forwarded packet is dropped"), 1);
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_S_OK);
    ck_assert_int_eq(tu_log_count("kept forwarding closed since an earlier run stopped", NULL), 1);
    t = table_text(&g);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t, "chain prerouting"));
    ck_assert_ptr_null(strstr(t, FWX_NFT_CLOSED_TAG));
    fwx_firewall_close(g.fw, NULL, NULL);
    tu_loop_close_clean(&g.loop);
    t = table_text(&g);
    ck_assert_msg(t != NULL && strstr(t, FWX_NFT_CLOSED_TAG) != NULL && strstr(t, "chain prerouting") == NULL,
                  "table inet %s is not the closed one after a clean close: %s", g.table, t ? t : "(none)");
    tn_down(&g.topo);
}
END_TEST

START_TEST(table_names)
{
    char a[80], b[80], c[80];
    fwx__nft_table_name("gw1", a, sizeof a);
    ck_assert_str_eq(a, "fwx_gw1");
    fwx__nft_table_name("a-b", b, sizeof b);
    fwx__nft_table_name("a.b", c, sizeof c);
    ck_assert_str_ne(b, c);
    ck_assert(strncmp(b, "fwx_a_b_", 8) == 0);
    fwx__nft_table_name("x\"; flush ruleset; \"", a, sizeof a);
    for (const char *p = a; *p; p++)
        ck_assert_msg((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_', "bad character in %s", a);
}
END_TEST

START_TEST(leftover_table_replaced)
{
    gw g;
    gw_new(&g, 60000);
    /* What a killed gateway leaves: its table, with state in it. */
    char cmds[1024];
    snprintf(cmds, sizeof cmds,
             "add table inet %s { comment \"fwx gateway (pid 999999)\"; }\n"
             "add chain inet %s stale { type filter hook forward priority filter; policy drop; }\n"
             "add set inet %s once4 { type ipv4_addr; }\n"
             "add element inet %s once4 { 10.99.1.2 }\n",
             g.table, g.table, g.table, g.table);
    tn_nft_do(cmds);
    ck_assert_ptr_nonnull(strstr(table_text(&g), "chain stale"));
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_S_OK);
    ck_assert_int_eq(tu_log_count("was left by an earlier run (pid 999999); replaced", NULL), 1);
    const char *t = table_text(&g);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_null(strstr(t, "chain stale"));
    ck_assert_ptr_null(strstr(t, "elements"));
    ck_assert_ptr_nonnull(strstr(t, "chain forward"));
    gw_close(&g);
}
END_TEST

/* A clean stop fails closed. The gateway namespace forwards (ip_forward=1):
   without fwx the client reaches the server; while fwx runs, only what it allows; after a
   clean close nothing (the closed table), while the gateway's own connection to the server
   still works; a new start replaces the closed table and carries a permission again. With
   kernel_open_on_stop the table goes and the line says forwarding is on. */
START_TEST(stop_fails_closed)
{
    gw g;
    gw_new(&g, 60000);
    uint16_t port = 0;
    int lfd = tn_listener_in(g.topo.server_fd, TN_SERVER, 0, &port);
    ck_assert_int_ge(lfd, 0);
    ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL) == 1, "no forwarding before fwx: the test is wrong");
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_S_OK);
    ck_assert_int_eq(client_to_server(&g, lfd, TN_SERVER, port, NULL), 0);
    fwx_firewall_close(g.fw, NULL, NULL);
    tu_loop_close_clean(&g.loop);
    ck_assert_int_eq(tu_log_count("stopped: table inet ", "left closed: every forwarded packet is dropped until fwx "
                                                          "starts again (`nft delete table inet"),
                     1);
    ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL) == 0,
                  "a clean stop opened the gateway: the client reached the server through it");
    /* The gateway's own output is not filtered. */
    int own = tn_connect_in(g.topo.gateway_fd, NULL, TN_SERVER, port, REFUSED_MS);
    ck_assert_msg(own >= 0, "the stopped gateway cannot reach the server itself");
    int a = tn_accept_within(lfd, 1000, NULL);
    ck_assert_int_ge(a, 0);
    close(a);
    close(own);
    /* A new start (same name) replaces the closed table and works as before. */
    ck_assert_int_eq(uv_loop_init(&g.loop), 0);
    fwx_firewall_options o;
    tn_gw_options(&o, g.name);
    o.kernel_open_on_stop = 1;
    TU_EXPECT_HR(fwx_firewall_new(&g.loop, &o, &g.fw), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_S_OK);
    ck_assert_int_eq(tu_log_count("kept forwarding closed since an earlier run stopped", NULL), 1);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, 0), FWX_S_OK);
    ck_assert_int_eq(client_to_server(&g, lfd, TN_SERVER, port, NULL), 1);
    session_end(s, ctl);
    /* kernel_open_on_stop: the table is deleted, and the line says what that means here. */
    fwx_firewall_close(g.fw, NULL, NULL);
    tu_loop_close_clean(&g.loop);
    ck_assert_ptr_null(table_text(&g));
    ck_assert_int_eq(tu_log_count("stopped: table inet ", "deleted (on_stop = open): IP forwarding is on"), 1);
    ck_assert_int_eq(client_to_server(&g, lfd, TN_SERVER, port, NULL), 1);
    close(lfd);
    tn_down(&g.topo);
}
END_TEST

START_TEST(probe_names_what_is_missing)
{
    gw g;
    gw_new(&g, 60000);
    /* Optional features missing: the backend opens and one line names exactly those. */
    fwx__nft_pretend_missing = FWX__NFT_F_TPROXY | FWX__NFT_F_CT_EVENTS;
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_S_OK);
    ck_assert_int_eq(tu_log_count("kernel lacks: tproxy, conntrack events (those features stay in user mode)", NULL), 1);
    const fwx__nft_features *f = fwx__nft_features_of(g.fw);
    ck_assert(!f->tproxy && !f->ct_events && f->nat);
    /* A required one missing: open fails, says what, leaves only the closed table (forwarding
       dropped); the proxy still works. */
    fwx__nft_pretend_missing = FWX__NFT_F_DYNSET_DELETE;
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_E_NOT_SUPPORTED);
    ck_assert_int_eq(tu_log_count("kernel lacks: set delete from the packet path; use the \"proxy\" backend", NULL), 1);
    const char *t = table_text(&g);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t, FWX_NFT_CLOSED_TAG));
    ck_assert_ptr_null(strstr(t, "chain prerouting"));
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "proxy"), FWX_S_OK);
    fwx__nft_pretend_missing = FWX__NFT_F_NF_TABLES;
    TU_EXPECT_HR(fwx_firewall_set_backend(g.fw, "nft"), FWX_E_NOT_SUPPORTED);
    ck_assert_int_eq(tu_log_count("kernel lacks: nf_tables", NULL), 1);
    fwx__nft_pretend_missing = 0;
    gw_close(&g);
}
END_TEST

/* Without CAP_NET_ADMIN (a child that became "nobody" inside the gateway namespace): one
   clear line, FWX_E_NOT_SUPPORTED, and the proxy backend still opens. */
START_TEST(no_rights_falls_back)
{
    gw g;
    gw_new(&g, 60000);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
            _exit(10);
        fwx_result hr = fwx_firewall_set_backend(g.fw, "nft");
        if (hr != FWX_E_NOT_SUPPORTED)
            _exit(11);
        if (tu_log_count("no right to change the network here (needs CAP_NET_ADMIN", NULL) != 1)
            _exit(12);
        if (fwx_firewall_set_backend(g.fw, "proxy") != FWX_S_OK)
            _exit(13);
        _exit(0);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the unprivileged child failed at step %d",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    ck_assert_ptr_null(table_text(&g));
    gw_close(&g);
}
END_TEST

/* ---- permissions (AllowFutureConnect) ------------------------------------------------------------ */

static int wait_kernel_secondaries(gw *g, int want);

START_TEST(permission_once)
{
    gw g;
    gw_open(&g, 60000);
    /* A new namespace counts no bytes: fwx switches accounting on, and says so once (and that
       it switches it off at exit: check_ct.c "settings restored by last"). */
    ck_assert_int_eq(tu_log_count("switched on net.netfilter.nf_conntrack_acct",
                                  "switched off at exit unless another fwx instance still uses them"), 1);
    uint16_t port;
    int lfd = tn_listener_in(g.topo.server_fd, "0.0.0.0", 0, &port);
    /* No permission: the forward policy drops the connection. */
    uint64_t took;
    ck_assert_msg(!client_to_server(&g, lfd, TN_SERVER, port, &took), "forwarded with no permission");
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, 0), FWX_S_OK);
    ck_assert_int_eq(backend_list(&g).n, 1);
    ck_assert_ptr_nonnull(strstr(table_text(&g), TN_CLIENT " . " TN_SERVER " . 6 . "));
    ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "the permitted connection did not go through");
    /* One-shot: the packet path deleted the element; the second attempt is refused. */
    ck_assert_msg(!client_to_server(&g, lfd, TN_SERVER, port, &took), "a second connection went through");
    ck_assert_uint_le(took, REFUSED_MS + 500);
    ck_assert_int_eq(backend_list(&g).n, 0); /* the table no longer holds it */
    /* The core withdraws the used grant when the flow's NEW event comes; the backend knows the
       packet path deleted the element and does not delete it again (a failing batch). */
    for (int i = 0; i < 100 && tu_log_count("withdrawn: used", NULL) == 0; i++)
        tu_loop_run_for(&g.loop, 20);
    ck_assert_int_eq(tu_log_count("withdrawn: used", NULL), 1);
    ck_assert_int_eq(tu_log_count("already gone from the kernel", NULL), 0);
    ck_assert_int_eq(tu_log_count("deleting failed", NULL), 0);
    /* The same key granted again at once, over and over (an FTP server handing out one data
       port again and again): the packet path deletes nothing (rules.h), so every grant goes in
       at once (a deleted element used to linger until the set's garbage collection, and after
       ~16 re-adds the kernel refused with EBUSY), and each lets one connection through. */
    for (int i = 0; i < 40; i++) {
        TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, 0), FWX_S_OK);
        ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "grant %d: the connection did not go through", i);
        for (int w = 0; w < 100 && tu_log_count("withdrawn: used", NULL) < i + 2; w++)
            tu_loop_run_for(&g.loop, 20);
        ck_assert_int_eq(tu_log_count("withdrawn: used", NULL), i + 2);
    }
    ck_assert_msg(!client_to_server(&g, lfd, TN_SERVER, port, NULL), "a used permission let a second connection through");
    /* Used, and withdrawn (the session ends) before the loop reads the flow's NEW event: its key
       is destroyed in the used set too, so the next grant of the key works, once. */
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, 0), FWX_S_OK);
    ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "the last grant's connection did not go through");
    session_end(s, ctl);
    tu_loop_run_for(&g.loop, 200);
    ck_assert_ptr_null(strstr(table_text(&g), TN_CLIENT " . " TN_SERVER " . 6 . "));
    s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, 0), FWX_S_OK);
    ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "a stale used key refused a new grant");
    ck_assert_msg(!client_to_server(&g, lfd, TN_SERVER, port, NULL), "the new grant let a second connection through");
    ck_assert_int_eq(tu_log_count("already gone from the kernel", NULL), 0);
    ck_assert_int_eq(tu_log_count("deleting failed", NULL), 0);
    ck_assert_int_eq(tu_log_count("refused:", NULL), 0);
    for (int w = 0; w < 100 && tu_log_count("withdrawn: used", NULL) < 42; w++)
        tu_loop_run_for(&g.loop, 20);
    ck_assert_int_eq(tu_log_count("withdrawn: used", NULL), 42); /* 1, 40, and the new grant's */
    tu_loop_run_for(&g.loop, 20); /* the used element's deletion, at the iteration's end */
    /* Out of scope: 10.99.2.3 is not the primary connection's peer. The core refuses before
       anything reaches the kernel, and the kernel refuses the connection. */
    TU_EXPECT_HR(allow(s, ctl, TN_OTHER, port, 0), FWX_E_ADDRESS_NOT_ALLOWED);
    ck_assert_ptr_null(strstr(table_text(&g), "elements"));
    ck_assert_msg(!client_to_server(&g, lfd, TN_OTHER, port, NULL), "an out-of-scope host was reached");
    session_end(s, ctl);
    gw_close_listener(&g, lfd);
}
END_TEST

/* A session with many outstanding permissions ends; by the time its end is
   reported (the "ended" line) not one of them is still in the kernel, and a connection the last
   one made would have allowed is refused. The elements go in one transaction (backend version
   3, grant_remove_many), not one per grant. */
START_TEST(session_end_withdraws_all_at_once)
{
    gw g;
    uint16_t port;
    int lfd = gw_open_listener(&g, 60000, "0.0.0.0", &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    /* 63 permissions (the session's cap is 64) to ports nobody listens on, then the one that
       matters last: one batch per grant deleted it last. */
    int made = 0;
    for (uint16_t p = 20000; made < 63; p++)
        if (p != port && allow(s, ctl, TN_SERVER, p, FWX_FLAG_ALLOW_MULTIPLE) == FWX_S_OK)
            made++;
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_ALLOW_MULTIPLE), FWX_S_OK);
    ck_assert_int_eq(backend_list(&g).n, 64);
    ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "the permitted connection did not go through");
    session_end(s, ctl);
    /* The end is reported... */
    ck_assert_int_eq(tu_log_count("ended for " TN_CLIENT, NULL), 1);
    /* ...and nothing of it is left: no element, and the connection is refused. */
    ck_assert_int_eq(backend_list(&g).n, 0);
    ck_assert_ptr_null(strstr(table_text(&g), TN_CLIENT " . " TN_SERVER " . 6 . "));
    ck_assert_msg(!client_to_server(&g, lfd, TN_SERVER, port, NULL), "a withdrawn permission still let a connection through");
    ck_assert_int_eq(tu_log_count("already gone from the kernel", NULL), 0);
    ck_assert_int_eq(tu_log_count("deleting failed", NULL), 0);
    gw_close_listener(&g, lfd);
}
END_TEST

START_TEST(permission_multiple)
{
    gw g;
    uint16_t port;
    int lfd = gw_open_listener(&g, 60000, TN_SERVER, &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_ALLOW_MULTIPLE), FWX_S_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "connection %d refused", i + 1);
    ck_assert_int_eq(backend_list(&g).n, 1);
    session_end(s, ctl);
    /* Session closed: its elements are gone, and so is the way through. */
    ck_assert_ptr_null(strstr(table_text(&g), "elements"));
    ck_assert_int_eq(backend_list(&g).n, 0);
    ck_assert_msg(!client_to_server(&g, lfd, TN_SERVER, port, NULL), "forwarded after the session closed");
    gw_close_listener(&g, lfd);
}
END_TEST

/* fwx_firewall_list (fwxctl's source) says which grants the kernel carries. */
typedef struct modes {
    int kernel, user;
} modes;

static void count_grant_modes(void *arg, const fwx_object_info *i)
{
    modes *m = arg;
    if (i->kind == FWX_OBJECT_GRANT)
        (*(i->kernel_mode ? &m->kernel : &m->user))++;
}

START_TEST(permission_modes_listed)
{
    gw g;
    gw_open(&g, 60000);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, 5301, 0), FWX_S_OK);
    modes m = {0, 0};
    TU_EXPECT_HR(fwx_firewall_list(g.fw, FWX_OBJECT_GRANT, count_grant_modes, &m), FWX_S_OK);
    ck_assert_int_eq(m.kernel, 1);
    ck_assert_int_eq(m.user, 0);
    /* FWX_FLAG_NO_KERNEL_MODE: carried by fwx's user-mode path; the kernel only steers it
       there (the user set), it admits nothing by itself (not in once/allow). */
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, 5302, FWX_FLAG_NO_KERNEL_MODE), FWX_S_OK);
    memset(&m, 0, sizeof m);
    TU_EXPECT_HR(fwx_firewall_list(g.fw, FWX_OBJECT_GRANT, count_grant_modes, &m), FWX_S_OK);
    ck_assert_int_eq(m.kernel, 1);
    ck_assert_int_eq(m.user, 1);
    const char *t = table_text(&g), *user = strstr(t, "set user4"), *once = strstr(t, "set once4"),
               *allow = strstr(t, "set allow4");
    ck_assert(user != NULL && once != NULL && allow != NULL && once < allow);
    ck_assert_ptr_nonnull(strstr(user, " . 5302"));
    const char *in_once = strstr(once, " . 5302");
    ck_assert_msg(in_once == NULL || in_once > allow, "a user-mode permission is in the kernel's once set");
    /* Only the grant inside grant_add can be marked. */
    fwx_grant other;
    memset(&other, 0, sizeof other);
    TU_EXPECT_HR(fwx_backend_grant_in_kernel(g.fw, &other), FWX_E_INVALIDARG);
    session_end(s, ctl);
    gw_close(&g);
}
END_TEST

/* Conntrack events make kernel-carried flows the core's secondary connections: each permitted
   flow is a kernel-mode connection the core lists (and could Kill). */
static void count_kernel_secondaries(void *arg, const fwx_object_info *i)
{
    if (i->kind == FWX_OBJECT_CONNECTION && (i->flags & FWX_CONNECTION_SECONDARY) &&
        (i->flags & FWX_CONNECTION_KERNEL_MODE))
        (*(int *)arg)++;
}

START_TEST(kernel_flows_reported)
{
    gw g;
    uint16_t port;
    int lfd = gw_open_listener(&g, 60000, TN_SERVER, &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_ALLOW_MULTIPLE), FWX_S_OK);
    /* Three live flows (a closed one ends at once: its TIME_WAIT update is the END). */
    int cs[3], as[3];
    for (int i = 0; i < 3; i++) {
        cs[i] = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, port, REFUSED_MS);
        ck_assert_msg(cs[i] >= 0, "connection %d refused", i + 1);
        as[i] = tn_accept_within(lfd, 1000, NULL);
        ck_assert_int_ge(as[i], 0);
    }
    /* The events are read on the loop; bounded wait until all three are reported. */
    int n = 0;
    for (int tries = 0; tries < 40 && n < 3; tries++) {
        tu_loop_run_for(&g.loop, 50);
        n = 0;
        TU_EXPECT_HR(fwx_firewall_list(g.fw, FWX_OBJECT_CONNECTION, count_kernel_secondaries, &n), FWX_S_OK);
    }
    ck_assert_msg(n == 3, "the core saw %d of 3 kernel-carried connections", n);
    session_end(s, ctl); /* ends them too */
    for (int i = 0; i < 3; i++) {
        close(cs[i]);
        close(as[i]);
    }
    n = 0;
    TU_EXPECT_HR(fwx_firewall_list(g.fw, FWX_OBJECT_CONNECTION, count_kernel_secondaries, &n), FWX_S_OK);
    ck_assert_int_eq(n, 0);
    gw_close_listener(&g, lfd);
}
END_TEST

static int kernel_secondaries(gw *g)
{
    int n = 0;
    TU_EXPECT_HR(fwx_firewall_list(g->fw, FWX_OBJECT_CONNECTION, count_kernel_secondaries, &n), FWX_S_OK);
    return n;
}

/* Runs the loop (bounded, about 10 s: conntrack reaps expired entries lazily) until the core
   lists `want` kernel-carried connections. */
static int wait_kernel_secondaries(gw *g, int want)
{
    int n = kernel_secondaries(g);
    for (int tries = 0; tries < 200 && n != want; tries++) {
        tu_loop_run_for(&g->loop, 50);
        n = kernel_secondaries(g);
    }
    return n;
}

/* The byte counts of a kernel-carried flow ended with its session (the FTP client's QUIT
   right after a transfer): the kill's echo brings them, "from the client" being the
   session's client whichever side opened the flow. */
static void closed_bytes(const char *conn_tag, unsigned long long *from_client, unsigned long long *from_peer)
{
    const char *line = tu_log_find(conn_tag, ": closed (");
    ck_assert_msg(line != NULL, "no closed line for %s", conn_tag);
    const char *p = strstr(line, ": closed (");
    ck_assert_int_eq(sscanf(p, ": closed (%llu bytes from the client, %llu from the peer)", from_client, from_peer), 2);
}

static void bytes_case(bool bound)
{
    gw g;
    gw_open(&g, 60000);
    uint16_t port;
    int lfd = bound ? tn_listener_in(g.topo.client_fd, TN_CLIENT, 0, &port) : tn_listener_in(g.topo.server_fd, TN_SERVER, 0, &port);
    IFWXConnection *ctl = NULL, *bnd[1] = {NULL};
    IFWXSession *s = nat_session(&g, &ctl);
    int c, a;
    struct sockaddr_in peer;
    if (bound) {
        uint16_t bport = bind_client(s, port, FWX_PROTOCOL_TCP, 0, 4, NULL, bnd);
        /* the server opens it; the client (a = accepted) is the session's client */
        c = tn_connect_in(g.topo.server_fd, TN_SERVER, TN_GW_OUT, bport, 2000);
    } else {
        TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, 0), FWX_S_OK);
        c = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, port, 2000);
    }
    ck_assert_int_ge(c, 0);
    a = tn_accept_within(lfd, 2000, &peer);
    ck_assert_int_ge(a, 0);
    int client_side = bound ? a : c, peer_side = bound ? c : a;
    static char big[3000];
    memset(big, 'x', sizeof big);
    ck_assert_int_eq(tu_write_all(client_side, big, 1000), 0);
    ck_assert_int_eq(recv(peer_side, big, 1000, MSG_WAITALL), 1000);
    ck_assert_int_eq(tu_write_all(peer_side, big, 3000), 0);
    ck_assert_int_eq(recv(client_side, big, 3000, MSG_WAITALL), 3000);
    ck_assert_int_eq(wait_kernel_secondaries(&g, 1), 1);
    session_end(s, ctl); /* kills the flow while it lives */
    if (bnd[0] != NULL)
        IFWXConnection_Release(bnd[0]);
    ck_assert_int_eq(kernel_secondaries(&g), 0);
    unsigned long long from_client = 0, from_peer = 0;
    /* the flow's connection, by the core's line for it (its mode said) */
    const char *opened = tu_log_find(bound ? "opened through bound port" : "opened through permission", "(kernel-carried)");
    ck_assert_msg(opened != NULL, "no \"opened through ... (kernel mode)\" line");
    unsigned long long id = 0;
    ck_assert_int_eq(sscanf(strstr(opened, "connection "), "connection %llu:", &id), 1);
    char tag[48];
    snprintf(tag, sizeof tag, "connection %llu:", id);
    closed_bytes(tag, &from_client, &from_peer);
    /* IP packet sizes: the payload plus a few headers */
    ck_assert_msg(from_client >= 1000 && from_client < 3000 && from_peer >= 3000,
                  "closed with %llu bytes from the client, %llu from the peer (want >= 1000 and >= 3000)", from_client,
                  from_peer);
    close(a);
    close(c);
    gw_close_listener(&g, lfd);
}

START_TEST(kernel_flow_bytes_at_session_end)
{
    bytes_case(false);
}
END_TEST

START_TEST(kernel_flow_bytes_bound_port)
{
    bytes_case(true);
}
END_TEST

/* With kernel_end_on_close, a TCP flow that closes ends its connection at once (the update to
   TIME_WAIT is the END), with its bytes, although conntrack keeps the entry for TIME_WAIT (120 s
   in this new namespace): ConnectionTerminating when the connection ends, not two minutes
   later. (Each test runs in a child of its own: the flag does not leak.) */
START_TEST(kernel_flow_ends_at_close)
{
    gw g;
    end_on_close = 1;
    uint16_t port;
    int lfd = gw_open_listener(&g, 60000, TN_SERVER, &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, 0), FWX_S_OK);
    int c = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, port, REFUSED_MS);
    ck_assert_int_ge(c, 0);
    int a = tn_accept_within(lfd, 1000, NULL);
    ck_assert_int_ge(a, 0);
    ck_assert_int_eq(tu_write_all(c, "hello", 5), 0);
    char buf[8];
    ck_assert_int_eq(recv(a, buf, 5, MSG_WAITALL), 5);
    ck_assert_int_eq(wait_kernel_secondaries(&g, 1), 1);
    uint64_t t0 = tn_now_ms();
    close(c);
    close(a);
    int n = 1;
    while (n > 0 && tn_now_ms() - t0 < 5000) {
        tu_loop_run_for(&g.loop, 20);
        n = kernel_secondaries(&g);
    }
    ck_assert_msg(n == 0, "the closed flow's connection still lives (waiting for TIME_WAIT?)");
    const char *opened = tu_log_find("opened through permission", "(kernel-carried)");
    ck_assert_ptr_nonnull(opened);
    unsigned long long id = 0, from_client = 0, from_peer = 0;
    ck_assert_int_eq(sscanf(strstr(opened, "connection "), "connection %llu:", &id), 1);
    char tag[48];
    snprintf(tag, sizeof tag, "connection %llu:", id);
    closed_bytes(tag, &from_client, &from_peer);
    ck_assert_msg(from_client >= 5, "the ended flow's bytes were not counted (%llu)", from_client);
    session_end(s, ctl);
    gw_close_listener(&g, lfd);
}
END_TEST

/* A flow's conntrack DESTROY ends its connection (ConnectionTerminating) while the session
   lives on, and only that flow's: two flows at once, ended one after the other. */
START_TEST(kernel_flow_destroy_ends_it)
{
    gw g;
    gw_open(&g, 60000);
    /* TIME_WAIT entries of this (test-made) gateway namespace expire in a second. */
    int fd = open("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait", O_WRONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "time_wait sysctl: %s", strerror(errno));
    ck_assert_int_eq(write(fd, "1", 1), 1);
    close(fd);
    uint16_t port;
    int lfd = tn_listener_in(g.topo.server_fd, TN_SERVER, 0, &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_ALLOW_MULTIPLE), FWX_S_OK);
    int c[2], a[2];
    for (int i = 0; i < 2; i++) {
        c[i] = tn_connect_in(g.topo.client_fd, NULL, TN_SERVER, port, REFUSED_MS);
        ck_assert_msg(c[i] >= 0, "connection %d refused", i + 1);
        struct sockaddr_in peer;
        a[i] = tn_accept_within(lfd, 1000, &peer);
        ck_assert_int_ge(a[i], 0);
    }
    ck_assert_int_eq(wait_kernel_secondaries(&g, 2), 2);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(c[i]);
        ck_assert_msg(wait_kernel_secondaries(&g, 1 - i) == 1 - i, "flow %d still listed after its DESTROY", i + 1);
    }
    ck_assert_int_eq(kernel_secondaries(&g), 0);
    session_end(s, ctl);
    gw_close_listener(&g, lfd);
}
END_TEST

START_TEST(permission_timed)
{
    gw g;
    gw_open(&g, 300); /* FWX_FLAG_TIMEOUT's period */
    uint16_t port;
    int lfd = tn_listener_in(g.topo.server_fd, TN_SERVER, 0, &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_TIMEOUT), FWX_S_OK);
    ck_assert_ptr_nonnull(strstr(table_text(&g), "timeout"));
    /* The loop does not run: only the kernel's own timeout can remove the element. */
    usleep(700 * 1000);
    ck_assert_msg(!client_to_server(&g, lfd, TN_SERVER, port, NULL), "a late connection went through");
    /* Now the core's timer withdraws the grant; deleting an element the kernel expired is fine. */
    tu_loop_run_for(&g.loop, 50);
    ck_assert_int_eq(tu_log_count("deleting failed", NULL), 0);
    ck_assert_ptr_null(strstr(table_text(&g), "elements"));
    /* In time, it works. */
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_TIMEOUT), FWX_S_OK);
    ck_assert(client_to_server(&g, lfd, TN_SERVER, port, NULL));
    session_end(s, ctl);
    gw_close_listener(&g, lfd);
}
END_TEST

/* ---- BindForClient -------------------------------------------------------------------------------- */

static void bind_case(uint32_t flags, const char *seen_from)
{
    gw g;
    uint16_t cport;
    int clfd = gw_open_listener(&g, 60000, TN_CLIENT, &cport);
    IFWXConnection *ctl = NULL, *bound[1] = {NULL};
    IFWXSession *s = nat_session(&g, &ctl);
    uint16_t bport = bind_client(s, cport, FWX_PROTOCOL_TCP, flags, 4, NULL, bound);
    ck_assert(bport >= 40000 && bport <= 40999);
    ck_assert_int_eq(backend_list(&g).n, 1);
    /* A third party first (not the session's peer): refused, and the port is still there. */
    int t = tn_connect_in(g.topo.server_fd, TN_OTHER, TN_GW_OUT, bport, REFUSED_MS);
    if (t >= 0)
        close(t);
    ck_assert_msg(t < 0, "a third party took the bound port");
    /* The server (the primary connection's peer) reaches the client's listener. */
    int sfd = tn_socket_in(g.topo.server_fd, AF_INET, SOCK_STREAM);
    struct sockaddr_in from = tn_sin_of(TN_SERVER, 0), to = tn_sin_of(TN_GW_OUT, bport);
    ck_assert_int_eq(bind(sfd, (struct sockaddr *)&from, sizeof from), 0);
    tu_set_timeouts(sfd);
    ck_assert_msg(connect(sfd, (struct sockaddr *)&to, sizeof to) == 0, "the server could not connect: %s",
                  strerror(errno));
    struct sockaddr_in peer;
    int c = tn_accept_within(clfd, 1000, &peer);
    ck_assert_msg(c >= 0, "nothing arrived at the client's port");
    char ip[INET_ADDRSTRLEN], buf[8];
    inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
    ck_assert_str_eq(ip, seen_from);
    ck_assert_int_eq(tu_write_all(sfd, "data!", 5), 0);
    ck_assert_int_eq(recv(c, buf, 5, MSG_WAITALL), 5);
    ck_assert(memcmp(buf, "data!", 5) == 0);
    close(c);
    close(sfd);
    /* One-shot: a second connection is refused. */
    int again = tn_connect_in(g.topo.server_fd, TN_SERVER, TN_GW_OUT, bport, REFUSED_MS);
    if (again >= 0)
        close(again);
    ck_assert_msg(again < 0 || (flags & FWX_FLAG_ALLOW_MULTIPLE), "the bound port took a second connection");
    IFWXConnection_Release(bound[0]);
    session_end(s, ctl);
    ck_assert_ptr_null(strstr(table_text(&g), "elements"));
    close(clfd);
    gw_close(&g);
}

START_TEST(bind_for_client)
{
    bind_case(0, TN_SERVER);
}
END_TEST

START_TEST(bind_for_client_proxy_mode)
{
    bind_case(FWX_FLAG_PROXY_MODE, TN_GW_IN); /* the client sees the gateway's address */
}
END_TEST

/* The server reaches the client's port through the bound port bport: true if data arrived. */
static bool server_to_bound(gw *g, int clfd, uint16_t bport)
{
    int sfd = tn_connect_in(g->topo.server_fd, TN_SERVER, TN_GW_OUT, bport, REFUSED_MS);
    if (sfd < 0)
        return false;
    int c = tn_accept_within(clfd, 1000, NULL);
    char buf[8];
    bool ok = c >= 0 && tu_write_all(sfd, "data!", 5) == 0 && recv(c, buf, 5, MSG_WAITALL) == 5;
    if (c >= 0)
        close(c);
    close(sfd);
    return ok;
}

/* Active FTP with a client that keeps its data port: each PORT binds a new gateway port to the
   same client port, so every binding's permission element has the same key (server . client .
   tcp . port). The second binding comes before the first connection's conntrack NEW event was
   read (the loop does not run in between; under load a busy loop does the same): the key the
   first connection used must not refuse the second, and the late NEW must not consume the
   second binding's element. Both connections are admitted by their own binding. */
START_TEST(bind_same_client_port_before_new_event)
{
    gw g;
    uint16_t cport;
    int clfd = gw_open_listener(&g, 60000, TN_CLIENT, &cport);
    IFWXConnection *ctl = NULL, *b1[1] = {NULL}, *b2[1] = {NULL};
    IFWXSession *s = nat_session(&g, &ctl);
    uint16_t p1 = bind_client(s, cport, FWX_PROTOCOL_TCP, 0, 4, NULL, b1);
    ck_assert_msg(server_to_bound(&g, clfd, p1), "the first bound port did not carry its connection");
    uint16_t p2 = bind_client(s, cport, FWX_PROTOCOL_TCP, 0, 4, NULL, b2);
    ck_assert_msg(server_to_bound(&g, clfd, p2), "the second bound port (same client port) was refused: the first "
                                                 "connection's used key was left in place");
    tu_loop_run_for(&g.loop, 100); /* both NEW events */
    ck_assert_int_eq(tu_log_count("has no grant", NULL), 0);
    ck_assert_int_eq(tu_log_count("opened through", NULL), 2);
    /* Both used: nothing is left in the table, and neither port takes another connection. */
    ck_assert_ptr_null(strstr(table_text(&g), "elements"));
    ck_assert(!server_to_bound(&g, clfd, p1));
    ck_assert(!server_to_bound(&g, clfd, p2));
    IFWXConnection_Release(b1[0]);
    IFWXConnection_Release(b2[0]);
    session_end(s, ctl);
    close(clfd);
    gw_close(&g);
}
END_TEST

/* RedirectConnections: the client's connection to a gateway port goes to the target. */
START_TEST(redirect_port)
{
    gw g;
    uint16_t sport;
    int lfd = gw_open_listener(&g, 60000, TN_SERVER, &sport);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    char t_text[64];
    snprintf(t_text, sizeof t_text, TN_SERVER ":%u", sport);
    struct sockaddr_storage t = tu_addr(t_text), ia;
    const struct sockaddr *tp[1] = {TU_SA(t)};
    uint32_t ialen = sizeof ia;
    TU_EXPECT_HR(IFWXSession_RedirectConnections(s, tp, tu_len(&t), 1, TU_SAM(ia), &ialen, NULL, 0, FWX_PROTOCOL_TCP,
                                                 0, &FWX_GUID_NULL, NULL, NULL, NULL),
                 FWX_S_OK);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ia)->sin_addr, ip, sizeof ip);
    uint16_t port = ntohs(((struct sockaddr_in *)&ia)->sin_port);
    if (strcmp(ip, "0.0.0.0") == 0)
        snprintf(ip, sizeof ip, TN_GW_IN);
    ck_assert_msg(client_to_server(&g, lfd, ip, port, NULL), "the redirect port %s:%u did not reach the server", ip,
                  port);
    ck_assert_msg(!client_to_server(&g, lfd, ip, port, NULL), "the redirect port took a second connection");
    session_end(s, ctl);
    ck_assert_ptr_null(strstr(table_text(&g), "elements"));
    gw_close_listener(&g, lfd);
}
END_TEST

/* ---- user-mode secondary connections (a data filter, or FWX_FLAG_NO_KERNEL_MODE) ----------------- */

/* One connection from `from_ns` (bound to `src`) to ip:port, accepted on lfd, on a thread
   while the test thread runs the loop (fwx's user-mode path carries it). */
typedef struct uflow {
    int from_ns;
    const char *src, *ip;
    uint16_t port;
    int lfd;
    int ok;
    char seen[INET_ADDRSTRLEN];
    int user_listed;          /* while it was open, fwx listed a user-mode secondary connection */
    volatile int exchanged, checked, done;
} uflow;

static void *uflow_run(void *arg)
{
    uflow *u = arg;
    int c = tn_connect_in(u->from_ns, u->src, u->ip, u->port, REFUSED_MS);
    struct sockaddr_in peer;
    int a = c >= 0 ? tn_accept_within(u->lfd, 2000, &peer) : -1;
    char buf[8];
    if (a >= 0) {
        inet_ntop(AF_INET, &peer.sin_addr, u->seen, sizeof u->seen);
        u->ok = tu_write_all(c, "hello", 5) == 0 && recv(a, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "hello", 5) == 0 &&
                tu_write_all(a, "world", 5) == 0 && recv(c, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "world", 5) == 0;
        /* Held open until the test thread has looked at fwx's connections (bounded). */
        u->exchanged = 1;
        for (int i = 0; i < 300 && !u->checked; i++)
            usleep(10000);
        close(a);
    }
    if (c >= 0)
        close(c);
    u->done = 1;
    return NULL;
}

static void count_user_secondaries(void *arg, const fwx_object_info *i)
{
    if (i->kind == FWX_OBJECT_CONNECTION && (i->flags & FWX_CONNECTION_SECONDARY) && !i->kernel_mode)
        (*(int *)arg)++;
}

static int uflow_through(gw *g, uflow *u)
{
    pthread_t th;
    u->done = u->exchanged = u->checked = 0;
    u->ok = u->user_listed = 0;
    u->seen[0] = '\0';
    ck_assert_int_eq(pthread_create(&th, NULL, uflow_run, u), 0);
    uint64_t t0 = tn_now_ms();
    while (!u->done && tn_now_ms() - t0 < 8000) {
        tu_loop_run_for(&g->loop, 10);
        if (u->exchanged && !u->checked) {
            TU_EXPECT_HR(fwx_firewall_list(g->fw, FWX_OBJECT_CONNECTION, count_user_secondaries, &u->user_listed),
                         FWX_S_OK);
            u->checked = 1;
        }
    }
    pthread_join(th, NULL);
    return u->ok;
}

/* AllowFutureConnect with FWX_FLAG_NO_KERNEL_MODE: the connection is redirected into fwx,
   admitted through the core (a user-mode secondary connection), and relayed from the gateway;
   one-shot as in the kernel. */
START_TEST(permission_user_mode)
{
    gw g;
    uint16_t port;
    int lfd = gw_open_listener(&g, 60000, "0.0.0.0", &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_NO_KERNEL_MODE), FWX_S_OK);
    ck_assert_ptr_nonnull(strstr(table_text(&g), "set user4"));
    ck_assert_ptr_nonnull(strstr(table_text(&g), TN_CLIENT " . " TN_SERVER " . 6 . "));
    ck_assert_int_eq(backend_list(&g).n, 1);
    uflow u = {.from_ns = g.topo.client_fd, .ip = TN_SERVER, .port = port, .lfd = lfd};
    ck_assert_msg(uflow_through(&g, &u), "the user-mode permitted connection did not carry data");
    ck_assert_str_eq(u.seen, TN_GW_OUT); /* fwx dialled it from the gateway */
    ck_assert_int_eq(u.user_listed, 1);  /* a user-mode secondary connection while it was open */
    /* used up: the user-set element went with the grant */
    ck_assert_ptr_null(strstr(table_text(&g), TN_CLIENT " . " TN_SERVER " . 6 . "));
    ck_assert_msg(!uflow_through(&g, &u), "a second connection went through a one-shot user-mode permission");
    session_end(s, ctl);
    gw_close_listener(&g, lfd);
}
END_TEST

/* BindForClient with FWX_FLAG_NO_KERNEL_MODE: the gateway port is DNATed into fwx, admitted
   (only the session's peers), and relayed to the client from the gateway. */
START_TEST(bind_for_client_user_mode)
{
    gw g;
    uint16_t cport;
    int clfd = gw_open_listener(&g, 60000, TN_CLIENT, &cport);
    IFWXConnection *ctl = NULL, *bound[1] = {NULL};
    IFWXSession *s = nat_session(&g, &ctl);
    uint16_t bport = bind_client(s, cport, FWX_PROTOCOL_TCP, FWX_FLAG_NO_KERNEL_MODE, 4, NULL, bound);
    /* A third party: the core refuses it (not the session's peer); the port stays. */
    uflow x = {.from_ns = g.topo.server_fd, .src = TN_OTHER, .ip = TN_GW_OUT, .port = bport, .lfd = clfd};
    ck_assert_msg(!uflow_through(&g, &x), "a third party took the user-mode bound port");
    uflow u = {.from_ns = g.topo.server_fd, .src = TN_SERVER, .ip = TN_GW_OUT, .port = bport, .lfd = clfd};
    ck_assert_msg(uflow_through(&g, &u), "the server did not reach the client through the user-mode bound port");
    ck_assert_str_eq(u.seen, TN_GW_IN); /* fwx dialled the client from the gateway */
    ck_assert_int_eq(u.user_listed, 1);
    ck_assert_msg(!uflow_through(&g, &u), "the user-mode bound port took a second connection");
    IFWXConnection_Release(bound[0]);
    session_end(s, ctl);
    ck_assert_ptr_null(strstr(table_text(&g), "elements"));
    close(clfd);
    gw_close(&g);
}
END_TEST

/* BindForClient with an IP filter (only 10.99.2.3 may connect, not the session's peer): the
   kernel cannot express the filter, so the port takes the user-mode path, where the core
   applies it to each connection. */
START_TEST(bind_for_client_ip_filter)
{
    gw g;
    uint16_t cport;
    int clfd = gw_open_listener(&g, 60000, TN_CLIENT, &cport);
    IFWXConnection *ctl = NULL, *bound[1] = {NULL};
    IFWXSession *s = nat_session(&g, &ctl);
    IFWXIpFilter *ipf = NULL;
    TU_EXPECT_HR(IFWXFirewall_CreateIpFilter(fwx_firewall_iface(g.fw), &ipf), FWX_S_OK);
    struct sockaddr_storage other = tu_addr(TN_OTHER);
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(ipf, TU_SA(other), tu_len(&other), TU_SA(other), tu_len(&other)), FWX_S_OK);
    uint16_t bport = bind_client(s, cport, FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_MULTIPLE, 4, ipf, bound);
    modes m = {0, 0};
    TU_EXPECT_HR(fwx_firewall_list(g.fw, FWX_OBJECT_GRANT, count_grant_modes, &m), FWX_S_OK);
    ck_assert_int_eq(m.user, 1); /* not in the kernel */
    ck_assert_int_eq(m.kernel, 0);
    uflow peer = {.from_ns = g.topo.server_fd, .src = TN_SERVER, .ip = TN_GW_OUT, .port = bport, .lfd = clfd};
    ck_assert_msg(!uflow_through(&g, &peer), "the session's peer got through a port whose IP filter excludes it");
    ck_assert_int_eq(tu_log_count("connection from " TN_SERVER, "refused"), 1);
    uflow ok = {.from_ns = g.topo.server_fd, .src = TN_OTHER, .ip = TN_GW_OUT, .port = bport, .lfd = clfd};
    ck_assert_msg(uflow_through(&g, &ok), "the host the IP filter allows did not get through");
    IFWXIpFilter_Release(ipf);
    IFWXConnection_Release(bound[0]);
    session_end(s, ctl);
    close(clfd);
    gw_close(&g);
}
END_TEST

/* A UDP bound port: the server's datagrams reach the client; the client's answers go back only
   with FWX_FLAG_BIDIRECTIONAL (the ct mark of the flow says one-way otherwise). */
static void udp_bind_case(uint32_t flags)
{
    gw g;
    gw_open(&g, 60000);
    int cu = tn_socket_in(g.topo.client_fd, AF_INET, SOCK_DGRAM), su = tn_socket_in(g.topo.server_fd, AF_INET, SOCK_DGRAM);
    struct sockaddr_in cb = tn_sin_of(TN_CLIENT, 0), sb = tn_sin_of(TN_SERVER, 0);
    ck_assert_int_eq(bind(cu, (struct sockaddr *)&cb, sizeof cb), 0);
    ck_assert_int_eq(bind(su, (struct sockaddr *)&sb, sizeof sb), 0);
    struct timeval tv = {0, 500000};
    setsockopt(cu, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(su, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint16_t cport = tu_bound_port(cu);
    IFWXConnection *ctl = NULL, *bound[1] = {NULL};
    IFWXSession *s = nat_session(&g, &ctl);
    uint16_t bport = bind_client(s, cport, FWX_PROTOCOL_UDP, flags, 0, NULL, bound);
    struct sockaddr_in to = tn_sin_of(TN_GW_OUT, bport), from;
    socklen_t fl = sizeof from;
    char buf[16];
    ck_assert_int_eq(sendto(su, "ping", 4, 0, (struct sockaddr *)&to, sizeof to), 4);
    ck_assert_msg(recvfrom(cu, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl) == 4, "the datagram did not reach the client");
    ck_assert_int_eq(sendto(cu, "pong", 4, 0, (struct sockaddr *)&from, fl), 4);
    ssize_t back = recv(su, buf, sizeof buf, 0);
    if (flags & FWX_FLAG_BIDIRECTIONAL)
        ck_assert_msg(back == 4 && memcmp(buf, "pong", 4) == 0, "BIDIRECTIONAL: the client's answer did not come back");
    else
        ck_assert_msg(back < 0, "without BIDIRECTIONAL the client's answer went back to the peer");
    IFWXConnection_Release(bound[0]);
    session_end(s, ctl);
    close(cu);
    close(su);
    gw_close(&g);
}

START_TEST(udp_bound_port_one_way)
{
    udp_bind_case(FWX_FLAG_ALLOW_MULTIPLE);
}
END_TEST

START_TEST(udp_bound_port_bidirectional)
{
    udp_bind_case(FWX_FLAG_ALLOW_MULTIPLE | FWX_FLAG_BIDIRECTIONAL);
}
END_TEST

/* A gateway port already used by a local socket is not shadowed: the core picks another. */
START_TEST(bind_port_in_use)
{
    gw g;
    port_max = 40007;
    gw_open(&g, 60000);
    int busy[8];
    size_t nb = 0;
    /* Take every port of the range but the last on the gateway itself. */
    for (uint16_t p = 40000; p < 40007; p++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = tn_sin_of(TN_GW_OUT, p);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0)
            busy[nb++] = fd;
        else
            close(fd);
    }
    IFWXConnection *ctl = NULL, *bound[1] = {NULL};
    IFWXSession *s = nat_session(&g, &ctl);
    ck_assert_uint_eq(bind_client(s, 5000, FWX_PROTOCOL_TCP, 0, 4, NULL, bound), 40007);
    IFWXConnection_Release(bound[0]);
    session_end(s, ctl);
    for (size_t i = 0; i < nb; i++)
        close(busy[i]);
    gw_close(&g);
}
END_TEST

/* ---- conntrack events: only fwx's flows reach fwx ------------------------------------------------- */

/* The backend's event socket has the kernel's filter on fwx's mark: the gateway's own traffic
   (clients to a service of the gateway, loopback inside it), which conntrack tracks but is not
   fwx's, puts nothing on it; a flow a permission admits does. Counted by the ct layer
   (fwx__ct_stats.events: what crossed the socket), not by time. */
/* A gateway of the nft backend, its conntrack layer and that layer's counts so far. */
static fwx__ct *gw_open_ct(gw *g, fwx__ct_stats *st)
{
    gw_open(g, 60000);
    fwx__ct *ct = fwx__nft_ct(g->fw);
    ck_assert_ptr_nonnull(ct);
    fwx__ct_get_stats(ct, st);
    return ct;
}

/* Runs the loop until the conntrack layer has read at least n events in all (bounded: 2 s);
   *st gets its counts. */
static void ct_run_until_read(gw *g, fwx__ct *ct, fwx__ct_stats *st, uint64_t n)
{
    fwx__ct_get_stats(ct, st);
    for (int i = 0; i < 100 && st->events < n; i++) {
        tu_loop_run_for(&g->loop, 20);
        fwx__ct_get_stats(ct, st);
    }
}

START_TEST(ct_events_only_fwx_flows)
{
    gw g;
    fwx__ct_stats st;
    fwx__ct *ct = gw_open_ct(&g, &st);
    ck_assert_int_eq(st.kernel_filter, 1);
    uint64_t before = st.events;
    uint16_t gport, lport;
    int gl = tn_listener_in(g.topo.gateway_fd, TN_GW_IN, 0, &gport);
    int ll = tn_listener_in(g.topo.gateway_fd, "127.0.0.1", 0, &lport);
    for (int i = 0; i < 10; i++) {
        int c = tn_connect_in(g.topo.client_fd, NULL, TN_GW_IN, gport, REFUSED_MS);
        ck_assert_int_ge(c, 0);
        int a = tn_accept_within(gl, 1000, NULL);
        ck_assert_int_ge(a, 0);
        int c2 = tn_connect_in(g.topo.gateway_fd, NULL, "127.0.0.1", lport, REFUSED_MS);
        ck_assert_int_ge(c2, 0);
        int a2 = tn_accept_within(ll, 1000, NULL);
        ck_assert_int_ge(a2, 0);
        close(c);
        close(a);
        close(c2);
        close(a2);
    }
    /* conntrack tracked them (the namespace's table counts them) ... */
    FILE *cf = fopen("/proc/sys/net/netfilter/nf_conntrack_count", "re");
    ck_assert_ptr_nonnull(cf);
    int entries = 0;
    ck_assert_int_eq(fscanf(cf, "%d", &entries), 1);
    fclose(cf);
    ck_assert_int_ge(entries, 20);
    /* ... and none of their events reached fwx. */
    tu_loop_run_for(&g.loop, 300);
    fwx__ct_get_stats(ct, &st);
    ck_assert_uint_eq(st.events, before);
    ck_assert_uint_eq(st.malformed, 0);

    /* A flow of fwx's own: its NEW crosses the socket and the core lists it. */
    uint16_t port;
    int lfd = tn_listener_in(g.topo.server_fd, "0.0.0.0", 0, &port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_ALLOW_MULTIPLE), FWX_S_OK);
    ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "the permitted connection did not go through");
    ct_run_until_read(&g, ct, &st, before + 1);
    ck_assert_uint_ge(st.events, before + 1);
    ck_assert_uint_ge(st.reported, 1);
    session_end(s, ctl);
    close(lfd);
    close(gl);
    close(ll);
    gw_close(&g);
}
END_TEST

/* Events are read paced (ct.c CT_PACE_MS: after a wake-up that found some, the next read is
   4 ms later) except while a one-shot element is held: then each is read as it comes, so
   a flow's NEW is matched against the permissions of the moment it passed, not those of a
   few milliseconds later (a one-shot grant of the same key made meanwhile would be taken for its
   own). Counted by the ct layer's reads, not by time. */
START_TEST(ct_paced_unless_one_shot)
{
    gw g;
    fwx__ct_stats st;
    fwx__ct *ct = gw_open_ct(&g, &st);
    ck_assert_int_eq(st.paced, 1);
    uint16_t port, once_port;
    int lfd = tn_listener_in(g.topo.server_fd, "0.0.0.0", 0, &port);
    int ofd = tn_listener_in(g.topo.server_fd, "0.0.0.0", 0, &once_port);
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&g, &ctl);
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, port, FWX_FLAG_ALLOW_MULTIPLE), FWX_S_OK);
    /* A burst while the loop does not run: the wake-up that reads it is followed by a paced read. */
    for (int i = 0; i < 8; i++)
        ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "connection %d did not go through", i);
    uint64_t before = st.events;
    for (int i = 0; i < 100 && (st.events < before + 8 || st.paced_reads == 0); i++) {
        tu_loop_run_for(&g.loop, 10);
        fwx__ct_get_stats(ct, &st);
    }
    ck_assert_uint_ge(st.events, before + 8);
    ck_assert_uint_ge(st.paced_reads, 1);
    /* A one-shot grant: unpaced while it is held, whatever comes. */
    TU_EXPECT_HR(allow(s, ctl, TN_SERVER, once_port, 0), FWX_S_OK);
    tu_loop_run_for(&g.loop, 20); /* a paced read still pending is stopped */
    fwx__ct_get_stats(ct, &st);
    ck_assert_int_eq(st.paced, 0);
    uint64_t paced = st.paced_reads;
    before = st.events;
    for (int i = 0; i < 8; i++)
        ck_assert_msg(client_to_server(&g, lfd, TN_SERVER, port, NULL), "connection %d did not go through", i);
    ct_run_until_read(&g, ct, &st, before + 8);
    tu_loop_run_for(&g.loop, 20);
    fwx__ct_get_stats(ct, &st);
    ck_assert_uint_ge(st.events, before + 8);
    ck_assert_uint_eq(st.paced_reads, paced); /* every one read as it came */
    /* The one-shot permission used: its element is released, and reading is paced again. */
    ck_assert_msg(client_to_server(&g, ofd, TN_SERVER, once_port, NULL), "the one-shot connection did not go through");
    for (int i = 0; i < 100 && st.paced == 0; i++) {
        tu_loop_run_for(&g.loop, 10);
        fwx__ct_get_stats(ct, &st);
    }
    ck_assert_int_eq(st.paced, 1);
    ck_assert_uint_eq(st.malformed, 0);
    ck_assert_uint_eq(st.overruns, 0);
    session_end(s, ctl);
    close(lfd);
    close(ofd);
    gw_close(&g);
}
END_TEST

static Suite *nft_suite(void)
{
    const tu_case cases[] = {
        {"table names", table_names},
        {"ct events only fwx flows", ct_events_only_fwx_flows},
        {"ct paced unless one shot", ct_paced_unless_one_shot},
        {"table lifecycle", table_lifecycle},
        {"leftover table replaced", leftover_table_replaced},
        {"probe names what is missing", probe_names_what_is_missing},
        {"stop fails closed", stop_fails_closed},
        {"no rights falls back", no_rights_falls_back},
        {"permission once", permission_once},
        {"permission multiple", permission_multiple},
        {"session end withdraws all at once", session_end_withdraws_all_at_once},
        {"permission modes listed", permission_modes_listed},
        {"permission user mode", permission_user_mode},
        {"bind for client user mode", bind_for_client_user_mode},
        {"bind for client ip filter", bind_for_client_ip_filter},
        {"udp bound port one way", udp_bound_port_one_way},
        {"udp bound port bidirectional", udp_bound_port_bidirectional},
        {"kernel flows reported", kernel_flows_reported},
        {"kernel flow destroy ends it", kernel_flow_destroy_ends_it},
        {"kernel flow ends at close", kernel_flow_ends_at_close},
        {"kernel flow bytes at session end", kernel_flow_bytes_at_session_end},
        {"kernel flow bytes bound port", kernel_flow_bytes_bound_port},
        {"permission timed", permission_timed},
        {"bind for client", bind_for_client},
        {"bind for client proxy mode", bind_for_client_proxy_mode},
        {"bind same client port before new event", bind_same_client_port_before_new_event},
        {"redirect port", redirect_port},
        {"bind port in use", bind_port_in_use},
    };
    return TU_SUITE("nft", cases, 30);
}

int main(void) { return tn_main(nft_suite, "network namespace tests"); }
