/*
 * fwx tests - proxied-connection tracking across proxies on one host: local
 * redirection by the "nft" backend, redirect records through the registry, the four states
 * as each hop reads them, and loops refused.
 *
 * The "host" is the gateway namespace of netns.h: the test's client sockets are made there
 * (a local process: the test itself), the destination listens in the server namespace. Two
 * firewalls A and B (two instances, different provider GUIDs, slots 0 and 1) run on one loop
 * on the test thread; peers run on a second thread. FWX_REDIRECT_DIR points at a directory of
 * the test's own. Not root, or no namespaces: exit 77 (skipped) with the reason.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "netns.h"
#include "backends/nft/nft_impl.h"
#include "core/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT 7000

/* ---- the instances' logs, each line tagged with its instance ------------------------------------ */

#define LOG_MAX 512
static char logs[LOG_MAX][640];
static int n_logs;

static void log_tagged(void *arg, fwx_log_level level, const char *msg)
{
    (void)level;
    if (getenv("FWX_TEST_LOG"))
        fprintf(stderr, "[%s] %s\n", (const char *)arg, msg);
    ck_assert_msg(n_logs < LOG_MAX, "log capture overflowed");
    snprintf(logs[n_logs++], sizeof logs[0], "%s: %s", (const char *)arg, msg);
}

static int log_count(const char *a, const char *b, const char *c)
{
    int n = 0;
    for (int i = 0; i < n_logs; i++)
        if (strstr(logs[i], a) && (b == NULL || strstr(logs[i], b)) && (c == NULL || strstr(logs[i], c)))
            n++;
    return n;
}

/* ---- the host ------------------------------------------------------------------------------------ */

typedef struct host {
    tn_topo topo;
    uv_loop_t loop;
    fwx_firewall *fw[2];
    char name[2][32];
    char dir[128];
} host;

static const char *policy_text =
    "networks = { localhost = { ranges = [ \"" TN_GW_IN "/32\", \"" TN_GW_OUT "/32\" ]; }; };\n"
    "protocols = ( { name = \"p7000\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-000000007000}\"; protocol = \"tcp\";"
    " port = 7000; direction = \"outbound\"; } );\n"
    "rules = ( { name = \"local out\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"external\", \"localhost\" ];"
    " protocols = [ \"p7000\" ]; } );\n";

static void host_up(host *h)
{
    memset(h, 0, sizeof *h);
    n_logs = 0;
    snprintf(h->dir, sizeof h->dir, "/tmp/fwx-redirect-test-%ld", (long)getpid());
    tn_sh("rm -rf %s", h->dir);
    setenv("FWX_REDIRECT_DIR", h->dir, 1);
    tn_gw_up(&h->topo);
    ck_assert_int_eq(uv_loop_init(&h->loop), 0);
}

/* A firewall of h's loop named `name` whose log lines are tagged `tag` (log_tagged); asserts
   FWX_S_OK. */
static fwx_firewall *tagged_firewall(host *h, const char *name, const char *tag)
{
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.name = name;
    o.log = log_tagged;
    o.log_arg = (void *)tag;
    fwx_firewall *fw = NULL;
    TU_EXPECT_HR(fwx_firewall_new(&h->loop, &o, &fw), FWX_S_OK);
    return fw;
}

/* Instance i (0 = A, 1 = B) with the nft backend, redirecting local TCP to ports lo..hi. */
static void instance(host *h, int i, uint16_t lo, uint16_t hi)
{
    static struct sockaddr_storage local[2];
    local[0] = tu_addr(TN_GW_IN);
    local[1] = tu_addr(TN_GW_OUT);
    snprintf(h->name[i], sizeof h->name[i], "r%c%ld", 'a' + i, (long)getpid());
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.name = h->name[i];
    o.local_addresses = local;
    o.n_local_addresses = 2;
    o.log = log_tagged;
    o.log_arg = i == 0 ? "A" : "B";
    o.log_level = FWX_LOG_DEBUG;
    TU_EXPECT_HR(fwx_firewall_new(&h->loop, &o, &h->fw[i]), FWX_S_OK);
    tu_fw_set_policy(h->fw[i], policy_text);
    TU_EXPECT_HR(fwx_firewall_set_backend(h->fw[i], "nft"), FWX_S_OK);
    fwx_local_redirect lr;
    memset(&lr, 0, sizeof lr);
    lr.struct_size = sizeof lr;
    lr.protocol = FWX_PROTOCOL_TCP;
    lr.port_min = lo;
    lr.port_max = hi;
    lr.slot = (uint32_t)i;
    lr.uid = -1;
    TU_EXPECT_HR(fwx_firewall_redirect_local(h->fw[i], &lr), FWX_S_OK);
}

static void host_down(host *h)
{
    for (int i = 0; i < 2; i++)
        if (h->fw[i] != NULL)
            fwx_firewall_close(h->fw[i], NULL, NULL);
    tu_loop_close_clean(&h->loop);
    tn_down(&h->topo);
    tn_sh("rm -rf %s", h->dir);
    unsetenv("FWX_REDIRECT_DIR");
}

static int registry_files(host *h)
{
    DIR *d = opendir(h->dir);
    if (d == NULL)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strncmp(e->d_name, "tcp4-", 5) == 0;
    closedir(d);
    return n;
}

/* Runs the loop until *done (bounded). */
static void run_until(host *h, volatile int *done, uint64_t ms)
{
    uint64_t t0 = tn_now_ms();
    while (!*done && tn_now_ms() - t0 < ms)
        tu_loop_run_for(&h->loop, 10);
}

/* ---- a client through the chain -------------------------------------------------------------------- */

/* What fwx_redirect_registry_list reports: entries, and the largest hop count. */
typedef struct listed {
    int n, max_hops, orig_ok;
} listed;

static void count_entry(void *arg, uint16_t sport, const struct sockaddr *dst, long pid, uint32_t slots,
                        const fwx_redirect_record *rec)
{
    (void)sport, (void)dst, (void)slots;
    listed *l = arg;
    struct sockaddr_storage o;
    l->n++;
    if ((int)fwx_redirect_record_hop_count(rec) > l->max_hops)
        l->max_hops = (int)fwx_redirect_record_hop_count(rec);
    if (pid == (long)getpid() && FWX_SUCCEEDED(fwx_redirect_record_original_destination(rec, &o)) &&
        fwx__sa_port((struct sockaddr *)&o) == PORT)
        l->orig_ok++;
}

typedef struct run {
    host *h;
    listed reg;     /* the registry while the flow was open */
    int lfd;            /* the destination's listener (server namespace) */
    int ok;             /* data both ways */
    int second;         /* the destination saw a second connection */
    int files_live;     /* registry files while the flow was open */
    volatile int exchanged, looked, done;
} run;

static void *client_thread(void *arg)
{
    run *r = arg;
    char buf[8];
    /* the client is a local process of the host (the gateway namespace) */
    int c = tn_connect_in(r->h->topo.gateway_fd, NULL, TN_SERVER, PORT, 3000);
    struct sockaddr_in peer;
    int a = c >= 0 ? tn_accept_within(r->lfd, 3000, &peer) : -1;
    if (a >= 0) {
        r->ok = tu_write_all(c, "hello", 5) == 0 && recv(a, buf, 5, MSG_WAITALL) == 5 && tu_write_all(a, "world", 5) == 0 &&
                recv(c, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "world", 5) == 0;
        r->exchanged = 1;
        for (int i = 0; i < 300 && !r->looked; i++)
            usleep(10000);
        int again = tn_accept_within(r->lfd, 300, NULL);
        if (again >= 0) {
            r->second = 1;
            close(again);
        }
        close(a);
    }
    if (c >= 0)
        close(c);
    r->done = 1;
    return NULL;
}

/* Two instances redirect the same local traffic: the connection passes each once, in either
   order, and reaches its destination once; the first reads NOT_REDIRECTED, the second
   REDIRECTED_BY_OTHER with one earlier hop; both see the original destination and the
   original application (this process); the registry holds the record while the flow lives. */
START_TEST(two_instances_chain)
{
    host h;
    host_up(&h);
    instance(&h, 0, PORT, PORT);
    instance(&h, 1, PORT, PORT);
    run r;
    memset(&r, 0, sizeof r);
    r.h = &h;
    r.lfd = tn_listener_in(h.topo.server_fd, TN_SERVER, PORT, NULL);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, client_thread, &r), 0);
    run_until(&h, &r.exchanged, 8000);
    r.files_live = registry_files(&h);
    TU_EXPECT_HR(fwx_redirect_registry_list(count_entry, &r.reg), FWX_S_OK);
    r.looked = 1;
    run_until(&h, &r.done, 8000);
    pthread_join(th, NULL);
    /* let both relays see the ends and close */
    tu_loop_run_for(&h.loop, 300);

    ck_assert_msg(r.ok, "no data through the chain of two proxies");
    ck_assert_msg(!r.second, "the destination saw the connection twice");
    ck_assert_int_eq(log_count("redirect record new: NOT_REDIRECTED, 0 earlier hop(s)", NULL, NULL), 1);
    ck_assert_int_eq(log_count("redirect record from the previous hop: REDIRECTED_BY_OTHER, 1 earlier hop(s)", NULL, NULL),
                     1);
    /* each instance read the flow exactly once */
    ck_assert_int_eq(log_count("A: ", "redirect record", NULL), 1);
    ck_assert_int_eq(log_count("B: ", "redirect record", NULL), 1);
    char want[96];
    snprintf(want, sizeof want, "original destination %s:%d, application pid %ld uid 0", TN_SERVER, PORT, (long)getpid());
    ck_assert_msg(log_count(want, NULL, NULL) == 2, "both hops should report \"%s\"", want);
    ck_assert_int_eq(log_count("redirect loop", NULL, NULL), 0);
    ck_assert_int_eq(r.files_live, 2); /* one record per outbound flow */
    ck_assert_int_eq(r.reg.n, 2);      /* both listed, written by this process, original destination kept */
    ck_assert_int_eq(r.reg.orig_ok, 2);
    ck_assert_int_eq(r.reg.max_hops, 2); /* the second proxy's outbound flow carries both hops */
    ck_assert_int_eq(registry_files(&h), 0);
    close(r.lfd);
    host_down(&h);
}
END_TEST

/* An unrelated plain relay (socat) in the path: the client talks to socat, socat's own
   connection to the destination is what the two instances redirect. It passes each once; the
   original application in the record is socat, not the client. */
START_TEST(chain_behind_socat)
{
    host h;
    host_up(&h);
    instance(&h, 0, PORT, PORT);
    instance(&h, 1, PORT, PORT);
    int lfd = tn_listener_in(h.topo.server_fd, TN_SERVER, PORT, NULL);
    char ns[160];
    snprintf(ns, sizeof ns, "%s", h.topo.gateway);
    pid_t socat = fork();
    ck_assert_int_ge(socat, 0);
    if (socat == 0) {
        /* one connection, no fork: the process that connects out is this pid */
        execlp("ip", "ip", "netns", "exec", ns, "socat", "TCP-LISTEN:7100,bind=" TN_GW_IN ",reuseaddr",
               "TCP:" TN_SERVER ":7000", (char *)NULL);
        _exit(127);
    }
    /* socat listening (bounded) */
    int c = -1;
    for (int i = 0; i < 100 && c < 0; i++) {
        c = tn_connect_in(h.topo.gateway_fd, NULL, TN_GW_IN, 7100, 100);
        if (c < 0)
            usleep(20000);
    }
    ck_assert_msg(c >= 0, "socat did not listen (is it installed?)");
    /* the loop must run for the chain to carry socat's outbound connection */
    int a = -1;
    for (int i = 0; i < 300 && a < 0; i++) {
        tu_loop_run_for(&h.loop, 10);
        a = tn_accept_within(lfd, 0, NULL);
    }
    ck_assert_msg(a >= 0, "socat's connection did not reach the destination through the chain");
    char buf[8];
    ck_assert_int_eq(tu_write_all(c, "hello", 5), 0);
    int got = 0;
    for (int i = 0; i < 300 && got < 5; i++) {
        tu_loop_run_for(&h.loop, 10);
        ssize_t n = recv(a, buf + got, (size_t)(5 - got), MSG_DONTWAIT);
        if (n > 0)
            got += (int)n;
    }
    ck_assert_int_eq(got, 5);
    ck_assert_int_lt(tn_accept_within(lfd, 200, NULL), 0); /* once */
    close(a);
    close(c);
    for (int i = 0; i < 30; i++)
        tu_loop_run_for(&h.loop, 10);
    kill(socat, SIGTERM);
    waitpid(socat, NULL, 0);
    char want[96];
    snprintf(want, sizeof want, "application pid %ld uid 0", (long)socat);
    ck_assert_int_eq(log_count("NOT_REDIRECTED, 0 earlier hop(s)", want, NULL), 1);
    ck_assert_int_eq(log_count("REDIRECTED_BY_OTHER, 1 earlier hop(s)", want, NULL), 1);
    ck_assert_int_eq(log_count("redirect loop", NULL, NULL), 0);
    close(lfd);
    host_down(&h);
}
END_TEST

/* A host that makes its own outbound connection links it to the connection's record
   (fwx_connection_link_outbound): the next proxy on the host, fwx instance A, reads the record
   (REDIRECTED_BY_OTHER, the host's hop, the original application the host recorded); the
   registry entry goes when the host's connection ends. */
typedef struct linked {
    host *h;
    int fd, lfd, ok;
    volatile int done;
} linked;

static void *linked_thread(void *arg)
{
    linked *k = arg;
    struct sockaddr_in dst = tn_sin_of(TN_SERVER, PORT);
    tu_set_timeouts(k->fd);
    if (connect(k->fd, (struct sockaddr *)&dst, sizeof dst) == 0) {
        int a = tn_accept_within(k->lfd, 3000, NULL);
        char b[8];
        if (a >= 0) {
            k->ok = tu_write_all(k->fd, "hello", 5) == 0 && recv(a, b, 5, MSG_WAITALL) == 5;
            close(a);
        }
    }
    k->done = 1;
    return NULL;
}

START_TEST(host_links_outbound)
{
    host h;
    host_up(&h);
    instance(&h, 0, PORT, PORT);
    /* The host: a firewall with the proxy backend, one session and connection of its own. */
    h.fw[1] = tagged_firewall(&h, "hostproxy", "H");
    TU_EXPECT_HR(fwx_firewall_set_backend(h.fw[1], "proxy"), FWX_S_OK);
    struct sockaddr_storage cl = tu_addr(TN_GW_IN), dst = tu_addr(TN_SERVER ":7000");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(cl), tu_len(&cl), NULL, 0, NULL};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(h.fw[1], &sp, &s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(dst), tu_len(&dst), NULL, 0, NULL,
                                0, 0, NULL};
    IFWXConnection *conn = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &conn), FWX_S_OK);
    fwx_redirect_app app = {sizeof app, 4242, 42, 0, 0, "/host.slice"};
    fwx_redirect_record *rec = NULL;
    TU_EXPECT_HR(fwx_redirect_record_new(TU_SA(dst), tu_len(&dst), &app, &rec), FWX_S_OK);
    fwx_guid hg;
    TU_EXPECT_HR(fwx_guid_parse("{0d3c6a55-2b1e-4c8f-9a77-5e2f1c0b7d02}", &hg), FWX_S_OK);
    fwx_redirect_handle *hh = NULL;
    TU_EXPECT_HR(fwx_redirect_handle_create(h.fw[1], &hg, 0, &hh), FWX_S_OK);
    TU_EXPECT_HR(fwx_redirect_record_push(rec, hh, NULL, NULL), FWX_S_OK);
    linked k;
    memset(&k, 0, sizeof k);
    k.h = &h;
    k.fd = tn_socket_in(h.topo.gateway_fd, AF_INET, SOCK_STREAM);
    /* not linked before it carries a record */
    TU_EXPECT_HR(fwx_connection_link_outbound(conn, k.fd, TU_SA(dst), tu_len(&dst), 0), FWX_E_NOT_FOUND);
    TU_EXPECT_HR(fwx_connection_set_redirect_record(conn, rec), FWX_S_OK);
    TU_EXPECT_HR(fwx_connection_link_outbound(conn, k.fd, TU_SA(dst), tu_len(&dst), 0), FWX_S_OK);
    TU_EXPECT_HR(fwx_connection_link_outbound(conn, k.fd, TU_SA(dst), tu_len(&dst), 0), FWX_E_ALREADY_EXISTS_WIN32);
    ck_assert_int_eq(registry_files(&h), 1);
    /* what the next hop asks: by the source port and the original destination */
    struct sockaddr_in self;
    socklen_t sl = sizeof self;
    ck_assert_int_eq(getsockname(k.fd, (struct sockaddr *)&self, &sl), 0);
    fwx_redirect_record *got = NULL;
    uint32_t slots = 99;
    TU_EXPECT_HR(fwx_redirect_registry_lookup(ntohs(self.sin_port), TU_SA(dst), tu_len(&dst), &got, &slots), FWX_S_OK);
    ck_assert_uint_eq(fwx_redirect_record_hop_count(got), 1);
    ck_assert_uint_eq(slots, 0);
    fwx_redirect_record_unref(got);
    TU_EXPECT_HR(fwx_redirect_registry_lookup((uint16_t)(ntohs(self.sin_port) + 1), TU_SA(dst), tu_len(&dst), &got, NULL),
                 FWX_E_NOT_FOUND);
    /* By the whole tuple: the source address the route gave the socket finds
       it; a flow from another host with the same source port and destination does not. */
    struct sockaddr_in from = tn_sin_of(TN_GW_OUT, ntohs(self.sin_port)), other = tn_sin_of(TN_CLIENT, ntohs(self.sin_port));
    TU_EXPECT_HR(fwx_redirect_registry_lookup_flow((struct sockaddr *)&from, sizeof from, TU_SA(dst), tu_len(&dst), &got,
                                                   &slots),
                 FWX_S_OK);
    ck_assert_uint_eq(fwx_redirect_record_hop_count(got), 1);
    fwx_redirect_record_unref(got);
    TU_EXPECT_HR(fwx_redirect_registry_lookup_flow((struct sockaddr *)&other, sizeof other, TU_SA(dst), tu_len(&dst), &got,
                                                   NULL),
                 FWX_E_NOT_FOUND);
    ck_assert_ptr_null(got);
    k.lfd = tn_listener_in(h.topo.server_fd, TN_SERVER, PORT, NULL);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, linked_thread, &k), 0);
    run_until(&h, &k.done, 8000);
    pthread_join(th, NULL);
    ck_assert_msg(k.ok, "the host's linked connection did not reach the destination through A");
    ck_assert_int_eq(log_count("A: ", "redirect record from the previous hop: REDIRECTED_BY_OTHER, 1 earlier hop(s)",
                               "application pid 4242 uid 42 cgroup /host.slice"),
                     1);
    fwx_connection_close(conn);
    close(k.fd);
    tu_loop_run_for(&h.loop, 100);
    ck_assert_int_eq(registry_files(&h), 0); /* only A's own entry could remain, and its flow ended */
    fwx_redirect_record_unref(rec);
    fwx_session_close(s);
    IFWXSession_Release(s);
    fwx_redirect_handle_destroy(hh);
    close(k.lfd);
    host_down(&h);
}
END_TEST

/* ---- a relay that keeps the record but drops the mark: the flow comes back to A ---------------- */

typedef struct relay {
    host *h;
    int lfd;
    fwx_redirect_handle *ph; /* the relay's own provider */
    int state_seen;          /* what the relay read: the fwx_redirect_state, -1 if no record */
    int came_back;           /* its onward connection carried data to the destination (must not) */
    volatile int done;
} relay;

static void *relay_thread(void *arg)
{
    relay *p = arg;
    p->state_seen = -1;
    /* The client (a local process) to the destination; A redirects it and connects on: the
       relay, standing in for the destination, accepts A's outbound flow. */
    int c = tn_connect_in(p->h->topo.gateway_fd, NULL, TN_SERVER, PORT, 3000);
    struct sockaddr_in peer;
    int a = c >= 0 ? tn_accept_within(p->lfd, 3000, &peer) : -1;
    if (a >= 0) {
        uint32_t slots = 0;
        struct sockaddr_storage dst = tu_addr(TN_SERVER ":7000");
        fwx_redirect_record *rec = fwx__registry_get((struct sockaddr *)&peer, (struct sockaddr *)&dst, &slots);
        if (rec != NULL) {
            p->state_seen = (int)fwx_redirect_query(rec, p->ph, NULL);
            /* A cooperating relay: its own hop, the record passed on for its onward flow, but
               (misconfigured) without the mark: A's rule catches the flow again. */
            TU_EXPECT_HR(fwx_redirect_record_push(rec, p->ph, NULL, NULL), FWX_S_OK);
            int o = tn_socket_in(p->h->topo.gateway_fd, AF_INET, SOCK_STREAM);
            struct sockaddr_in any = {.sin_family = AF_INET};
            ck_assert_int_eq(bind(o, (struct sockaddr *)&any, sizeof any), 0);
            char path[FWX__REG_PATH_MAX];
            struct sockaddr_in src = tn_sin_of(TN_GW_OUT, tu_bound_port(o)); /* the route's source to dst */
            ck_assert_int_eq(fwx__registry_put((struct sockaddr *)&src, (struct sockaddr *)&dst, rec, 0, path, sizeof path),
                             0);
            tu_set_timeouts(o);
            if (connect(o, (struct sockaddr *)&dst, sizeof(struct sockaddr_in)) == 0) {
                char b[4];
                int s2 = tn_accept_within(p->lfd, 1000, NULL);
                if (s2 >= 0) {
                    p->came_back = 1; /* A let it through to the destination */
                    close(s2);
                }
                (void)tu_write_all(o, "x", 1);
                (void)recv(o, b, sizeof b, 0); /* A closes it: 0 or an error */
            }
            close(o);
            unlink(path);
            fwx_redirect_record_unref(rec);
        }
        close(a);
    }
    if (c >= 0)
        close(c);
    p->done = 1;
    return NULL;
}

START_TEST(loop_through_relay_refused)
{
    host h;
    host_up(&h);
    instance(&h, 0, PORT, PORT);
    /* The relay's provider: a handle of a firewall of its own (no backend needed). */
    h.fw[1] = NULL;
    fwx_firewall *pf = tagged_firewall(&h, "relay", "P");
    fwx_guid pg;
    TU_EXPECT_HR(fwx_guid_parse("{0d3c6a55-2b1e-4c8f-9a77-5e2f1c0b7d01}", &pg), FWX_S_OK);
    relay p;
    memset(&p, 0, sizeof p);
    p.h = &h;
    TU_EXPECT_HR(fwx_redirect_handle_create(pf, &pg, 0, &p.ph), FWX_S_OK);
    p.lfd = tn_listener_in(h.topo.server_fd, TN_SERVER, PORT, NULL);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, relay_thread, &p), 0);
    run_until(&h, &p.done, 10000);
    pthread_join(th, NULL);
    tu_loop_run_for(&h.loop, 200);

    ck_assert_msg(p.state_seen == FWX_REDIRECT_BY_OTHER, "the relay read state %d from A's record (want BY_OTHER)",
                  p.state_seen);
    ck_assert_int_eq(log_count("A: ", "PREVIOUSLY_REDIRECTED_BY_SELF, 2 earlier hop(s)", NULL), 1);
    ck_assert_int_eq(log_count("A: ", "came back to this proxy (PREVIOUSLY_REDIRECTED_BY_SELF): a redirect loop, refused",
                               NULL),
                     1);
    ck_assert_msg(!p.came_back, "the looping flow reached the destination again");
    fwx_redirect_handle_destroy(p.ph);
    fwx_firewall_close(pf, NULL, NULL);
    close(p.lfd);
    host_down(&h);
}
END_TEST

/* A connection to fwx's own interception listener, caught by its own local redirection (a
   port range that includes the listener): refused, not spun. */
typedef struct selfrun {
    host *h;
    uint16_t port;
    int got_data;
    volatile int done;
} selfrun;

static void *self_thread(void *arg)
{
    selfrun *s = arg;
    int c = tn_connect_in(s->h->topo.gateway_fd, NULL, TN_GW_IN, s->port, 2000);
    if (c >= 0) {
        char b[4];
        (void)tu_write_all(c, "x", 1);
        s->got_data = recv(c, b, sizeof b, 0) > 0;
        close(c);
    }
    s->done = 1;
    return NULL;
}

static uint16_t listener_port(host *h, int i)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "nft list chain inet fwx_%s output_redirect 2>/dev/null | grep -o 'redirect to :[0-9]*' | "
                              "head -1 | cut -d: -f2 > %s.port", h->name[i], h->dir);
    ck_assert_int_eq(tn_sh("mkdir -p %s", h->dir), 0);
    ck_assert_int_eq(tn_sh("%s", cmd), 0);
    char path[256];
    snprintf(path, sizeof path, "%s.port", h->dir);
    FILE *f = fopen(path, "r");
    unsigned port = 0;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%u", &port), 1);
    fclose(f);
    unlink(path);
    return (uint16_t)port;
}

START_TEST(own_listener_refused)
{
    host h;
    host_up(&h);
    instance(&h, 0, PORT, PORT);
    selfrun s;
    memset(&s, 0, sizeof s);
    s.h = &h;
    s.port = listener_port(&h, 0);
    /* a second rule of the same instance whose range holds the listener's port */
    fwx_local_redirect lr;
    memset(&lr, 0, sizeof lr);
    lr.struct_size = sizeof lr;
    lr.protocol = FWX_PROTOCOL_TCP;
    lr.port_min = lr.port_max = s.port;
    lr.slot = 0;
    lr.uid = -1;
    TU_EXPECT_HR(fwx_firewall_redirect_local(h.fw[0], &lr), FWX_S_OK);
    /* another slot for the same instance is refused */
    lr.slot = 3;
    TU_EXPECT_HR(fwx_firewall_redirect_local(h.fw[0], &lr), FWX_E_INVALIDARG);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, self_thread, &s), 0);
    run_until(&h, &s.done, 6000);
    pthread_join(th, NULL);
    ck_assert_msg(!s.got_data, "a connection to fwx's own listener was relayed");
    ck_assert_int_eq(log_count("A: ", "is fwx's own interception listener: a redirect loop, refused", NULL), 1);
    host_down(&h);
}
END_TEST

/* The proxy backend has no local redirection; a bad spec is refused with a reason. */
START_TEST(local_redirect_refusals)
{
    host h;
    host_up(&h);
    h.fw[0] = tagged_firewall(&h, "lrbad", "X");
    fwx_local_redirect lr;
    memset(&lr, 0, sizeof lr);
    lr.struct_size = sizeof lr;
    lr.protocol = FWX_PROTOCOL_TCP;
    lr.port_min = lr.port_max = PORT;
    lr.uid = -1;
    TU_EXPECT_HR(fwx_firewall_set_backend(h.fw[0], "proxy"), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_redirect_local(h.fw[0], &lr), FWX_E_NOT_SUPPORTED);
    TU_EXPECT_HR(fwx_firewall_set_backend(h.fw[0], "nft"), FWX_S_OK);
    const struct {
        const char *why;
        int field;
    } bad[] = {{"udp", 0}, {"port 0", 1}, {"range upside down", 2}, {"slot 8", 3}, {"uid -2", 4}, {"cgroup with a space", 5},
               {"cgroup not absolute", 6}, {"cgroup with //", 7}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fwx_local_redirect b = lr;
        switch (bad[i].field) {
        case 0: b.protocol = FWX_PROTOCOL_UDP; break;
        case 1: b.port_min = 0; break;
        case 2: b.port_min = 8000, b.port_max = 7000; break;
        case 3: b.slot = 8; break;
        case 4: b.uid = -2; break;
        case 5: b.cgroup = "/a b"; break;
        case 6: b.cgroup = "a/b"; break;
        default: b.cgroup = "/a//b"; break;
        }
        ck_assert_msg(fwx_firewall_redirect_local(h.fw[0], &b) == FWX_E_INVALIDARG, "not refused: %s", bad[i].why);
    }
    host_down(&h);
}
END_TEST

static Suite *redirect_local_suite(void)
{
    const tu_case cases[] = {
        {"two instances chain", two_instances_chain},
        {"chain behind socat", chain_behind_socat},
        {"host links outbound", host_links_outbound},
        {"loop through relay refused", loop_through_relay_refused},
        {"own listener refused", own_listener_refused},
        {"local redirect refusals", local_redirect_refusals},
    };
    return TU_SUITE("redirect local", cases, 40);
}

int main(void) { return tn_main(redirect_local_suite, "network namespace tests"); }
