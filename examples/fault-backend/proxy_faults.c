/*
 * proxy_faults - the "proxy" backend's behaviour through the fault-injecting wrapper, and a
 * fault injected into each backend method in turn. Built out of tree against the installed fwx
 * (pkg-config fwx), like the wrapper; run by tests/meson.build's `fault-wrap` test.
 *
 * usage: proxy_faults            (exit 0: every check held; 1: a check failed; 77: cannot run)
 *
 * On loopback, with three addresses standing for three hosts (the gateway 127.0.0.1, the
 * client 127.0.0.2, the server 127.0.0.3), or, with FAULT_NS_* and the addresses in the
 * environment (check-fault-wrap.sh), in the gateway's network namespace between the client's
 * and the server's. Real sockets throughout; peers run on their own threads while the test
 * thread runs the firewall's loop. For each method, the fault makes the
 * documented call fail with the injected code, the core logs it, nothing is left behind (the
 * core's grants, the proxy's own list, the ports on the wire) and the next call succeeds.
 * Set FAULT_TEST_LOG=1 to see the firewall's log.
 * SPDX-License-Identifier: MIT
 */
#include "fault_backend.h"
#include "peers.h"

#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The three hosts: on loopback by default; on a real topology (check-fault-wrap.sh) the
   gateway has an address on each side, and client and server sockets are made in their own
   network namespaces (FAULT_NS_CLIENT, FAULT_NS_SERVER: /run/netns/... paths). */
static const char *GW_IN = "127.0.0.1";  /* the gateway, as the client reaches it */
static const char *GW_OUT = "127.0.0.1"; /* the gateway, as the server reaches it */
static const char *CLIENT = "127.0.0.2";
static const char *SERVER = "127.0.0.3";
static int ns_self = -1, ns_client = -1, ns_server = -1;
#define IO_TIMEOUT_S 5

static int failures;
static const char *scenario = "";

static void check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%-14s ", scenario);
    vprintf(fmt, ap);
    printf(" %s\n", ok ? "ok" : "FAILED");
    va_end(ap);
    if (!ok)
        failures++;
}

static void check_hr(const char *what, fwx_result got, fwx_result want)
{
    check(got == want, "%s: %s (want %s)", what, fwx_err_name(got), fwx_err_name(want));
}

/* ---- the firewall's log ------------------------------------------------------------------- */

static char log_lines[512][512];
static int n_log;

static void on_log(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg;
    if (getenv("FAULT_TEST_LOG") != NULL)
        fprintf(stderr, "  log[%d] %s\n", (int)level, msg);
    if (n_log < (int)(sizeof log_lines / sizeof log_lines[0]))
        snprintf(log_lines[n_log++], sizeof log_lines[0], "%s", msg);
}

/* The first line since the last log_reset() holding both a and b (b may be NULL), or NULL. */
static const char *log_find(const char *a, const char *b)
{
    for (int i = 0; i < n_log; i++)
        if (strstr(log_lines[i], a) != NULL && (b == NULL || strstr(log_lines[i], b) != NULL))
            return log_lines[i];
    return NULL;
}

static void log_reset(void) { n_log = 0; }

static void check_log(const char *a, const char *b)
{
    const char *line = log_find(a, b);
    check(line != NULL, "log says \"%s\"%s%s%s: %s", a, b ? " ... \"" : "", b ? b : "", b ? "\"" : "",
          line ? line : "(no such line)");
}

/* ---- sockets ------------------------------------------------------------------------------ */

#define SA(x) ((const struct sockaddr *)&(x))

/* A TCP socket bound to ip (port 0), with I/O timeouts so that no peer waits forever. */
static int sock_from(const char *ip)
{
    int ns = strcmp(ip, CLIENT) == 0 ? ns_client : strcmp(ip, SERVER) == 0 ? ns_server : -1, fd = -1;
    /* A socket belongs to the network namespace of the thread that makes it. */
    if (ns >= 0 && setns(ns, CLONE_NEWNET) != 0)
        return -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ns >= 0 && setns(ns_self, CLONE_NEWNET) != 0) {
        fprintf(stderr, "proxy_faults: cannot return to the gateway's namespace: %s\n", strerror(errno));
        abort();
    }
    if (fd >= 0)
        peer_timeouts(fd, IO_TIMEOUT_S);
    if (fd >= 0 && peer_bind(fd, ip, 0) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Nothing listens on ip:port when a fresh socket can bind it. */
static int port_free(const char *ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = peer_v4(ip, port);
    int ok = bind(fd, SA(a), sizeof a) == 0;
    close(fd);
    return ok;
}

static uint16_t free_port(const char *ip)
{
    int fd = sock_from(ip);
    uint16_t p = peer_bound_port(fd);
    close(fd);
    return p;
}

/* ---- the loop, and peers on threads --------------------------------------------------------- */

static uv_loop_t loop;

static void stop_cb(uv_timer_t *t) { uv_stop(t->loop); }

static void run_for(uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, stop_cb, ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

typedef struct peer {
    void *(*fn)(void *);
    void *arg;
    atomic_int done;
} peer;

static void *peer_main(void *p)
{
    peer *pr = p;
    pr->fn(pr->arg);
    atomic_store(&pr->done, 1);
    return NULL;
}

/* Runs fn(arg) on a thread while this thread runs the loop; bounded by the peers' own I/O
   timeouts (each blocking call gives up after IO_TIMEOUT_S). */
static void run_peer(void *(*fn)(void *), void *arg)
{
    peer pr = {fn, arg, 0};
    pthread_t th;
    pthread_create(&th, NULL, peer_main, &pr);
    while (!atomic_load(&pr.done))
        run_for(2);
    pthread_join(th, NULL);
    run_for(10); /* let the gateway see the ends */
}

/* An echo server at SERVER: echoes each connection until EOF. */
typedef struct echo {
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_int conns;
} echo;

static void *echo_main(void *arg)
{
    echo *e = arg;
    peer_echo_serve(e->lfd, &e->conns, IO_TIMEOUT_S);
    return NULL;
}

static void echo_start(echo *e)
{
    memset(e, 0, sizeof *e);
    e->lfd = sock_from(SERVER);
    listen(e->lfd, 16);
    e->port = peer_bound_port(e->lfd);
    pthread_create(&e->th, NULL, echo_main, e);
}

static void echo_stop(echo *e)
{
    shutdown(e->lfd, SHUT_RDWR);
    close(e->lfd);
    pthread_join(e->th, NULL);
}

/* A client at CLIENT sends n patterned bytes to GW_IN:port, half-closes, reads the echo. */
typedef struct roundtrip {
    uint16_t port;
    size_t n;
    int connected;
    size_t got;
    int ok;
} roundtrip;

static void *roundtrip_main(void *arg)
{
    roundtrip *x = arg;
    int fd = sock_from(CLIENT);
    x->connected = peer_connect(fd, GW_IN, x->port) == 0;
    if (x->connected)
        x->ok = peer_echo_roundtrip(fd, x->n, &x->got);
    close(fd);
    return NULL;
}

static roundtrip echo_through(uint16_t port, size_t n)
{
    roundtrip x = {port, n, 0, 0, 0};
    run_peer(roundtrip_main, &x);
    return x;
}

/* ---- the firewall under test ---------------------------------------------------------------- */

static fault_backend *fb;
static const fwx_backend *proxy;
static fwx_firewall *fw;

static fwx_firewall *firewall_new(void)
{
    static struct sockaddr_storage local[2];
    struct sockaddr_in in = peer_v4(GW_IN, 0), out = peer_v4(GW_OUT, 0);
    memset(local, 0, sizeof local);
    memcpy(&local[0], &in, sizeof in);
    memcpy(&local[1], &out, sizeof out);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.name = "fault-test";
    o.local_addresses = local;
    o.n_local_addresses = strcmp(GW_IN, GW_OUT) != 0 ? 2 : 1;
    o.loopback_hosts = 1;
    o.port_min = 40000;
    o.port_max = 60999;
    o.log = on_log;
    o.log_level = FWX_LOG_INFO;
    fwx_firewall *f = NULL;
    check_hr("fwx_firewall_new", fwx_firewall_new(&loop, &o, &f), FWX_S_OK);
    return f;
}

static void firewall_close(void)
{
    fwx_firewall_close(fw, NULL, NULL);
    fw = NULL;
    run_for(20);
}

static fwx_result set_policy(const char *text)
{
    fwx_policy *p = NULL;
    fwx_config_error err;
    fwx_result hr = fwx_policy_load_string(text, "test policy", &p, &err);
    if (hr != FWX_S_OK) {
        check(0, "policy: %s:%d: %s", err.file, err.line, err.message);
        return hr;
    }
    return fwx_firewall_set_policy(fw, p);
}

static void count_object(void *arg, const fwx_object_info *info)
{
    (void)info;
    ++*(unsigned *)arg;
}

static void count_grant(void *arg, const fwx_grant *g)
{
    (void)g;
    ++*(unsigned *)arg;
}

/* The grants the core holds. */
static unsigned core_grants(void)
{
    unsigned n = 0;
    fwx_firewall_list(fw, FWX_OBJECT_GRANT, count_object, &n);
    return n;
}

/* The grants the proxy itself holds: asked directly, with the state found behind the wrapper. */
static unsigned proxy_grants(void)
{
    unsigned n = 0;
    void *st = fwx_firewall_backend_state_of(fw, proxy);
    if (st != NULL && proxy->list != NULL)
        proxy->list(st, count_grant, &n);
    return n;
}

static unsigned calls(fault_method m) { return fault_backend_calls(fb, m); }

static void arm(fault_method m, unsigned nth, fwx_result code)
{
    check_hr("arm", fault_backend_arm(fb, m, nth, code, 0), FWX_S_OK);
}

/* A NAT session for CLIENT, with its control connection to SERVER:21 reported by the host. */
static IFWXSession *nat_session(IFWXConnection **ctl)
{
    struct sockaddr_in c = peer_v4(CLIENT, 0), gi = peer_v4(GW_IN, 0), srv = peer_v4(SERVER, 21);
    fwx_session_params sp;
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.source = fwxSourceNAT;
    sp.client = SA(c);
    sp.client_len = sizeof c;
    sp.gateway_internal = SA(gi);
    sp.gateway_internal_len = sizeof gi;
    IFWXSession *s = NULL;
    check_hr("fwx_session_open", fwx_session_open(fw, &sp, &s), FWX_S_OK);
    fwx_connection_params cp;
    memset(&cp, 0, sizeof cp);
    cp.struct_size = sizeof cp;
    cp.event = fwx_Connect_Tcp;
    cp.protocol = FWX_PROTOCOL_TCP;
    cp.external_peer = SA(srv);
    cp.external_peer_len = sizeof srv;
    *ctl = NULL;
    if (s != NULL)
        check_hr("fwx_connection_open", fwx_connection_open(s, &cp, ctl), FWX_S_OK);
    return s;
}

/* ---- the wrapper as registered ---------------------------------------------------------------- */

static void test_registry(void)
{
    scenario = "registry";
    const fwx_backend *vt = fault_backend_vtable(fb);
    check(fwx_backend_find("fault") == vt, "fwx_backend_find(\"fault\") is the wrapper");
    check(vt->version == FWX_BACKEND_VERSION && vt->wrapped != NULL, "version %d with wrapped()", (int)vt->version);
    /* Optional methods: present exactly where the proxy has them. */
    check((vt->listen == NULL) == (proxy->listen == NULL) && (vt->unlisten == NULL) == (proxy->unlisten == NULL) &&
              (vt->relay == NULL) == (proxy->relay == NULL) && (vt->kill == NULL) == (proxy->kill == NULL) &&
              (vt->create_socket == NULL) == (proxy->create_socket == NULL) && (vt->list == NULL) == (proxy->list == NULL),
          "version 1 optional methods mirror the proxy's");
    int proxy_pc = proxy->version >= 2 && proxy->policy_changed != NULL;
    int proxy_rm = proxy->version >= 3 && proxy->grant_remove_many != NULL;
    check((vt->policy_changed != NULL) == proxy_pc, "policy_changed %s like the proxy's (version %d)",
          vt->policy_changed ? "set" : "NULL", (int)proxy->version);
    check((vt->grant_remove_many != NULL) == proxy_rm, "grant_remove_many %s like the proxy's",
          vt->grant_remove_many ? "set" : "NULL");
    fault_backend *dup = NULL;
    check_hr("a second \"fault\"", fault_backend_register("fault", "proxy", &dup), FWX_E_ALREADY_EXISTS_WIN32);
    check_hr("wrapping a backend that does not exist", fault_backend_register("fault2", "no-such", &dup),
             FWX_E_NOT_FOUND);
    check_hr("arming close", fault_backend_arm(fb, FAULT_CLOSE, 1, FWX_E_FAIL, 0), FWX_E_INVALIDARG);
    check_hr("arming a success", fault_backend_arm(fb, FAULT_OPEN, 1, FWX_S_OK, 0), FWX_E_INVALIDARG);
}

/* ---- open: set_backend fails with the code, nothing is opened, the next one works ------------ */

static void test_open(void)
{
    scenario = "open";
    fw = firewall_new();
    log_reset();
    arm(FAULT_OPEN, 1, FWX_E_OUTOFMEMORY);
    check_hr("fwx_firewall_set_backend(\"fault\") with open failing", fwx_firewall_set_backend(fw, "fault"),
             FWX_E_OUTOFMEMORY);
    check_log("backend \"fault\": open failed", NULL);
    check(fwx_firewall_backend_state(fw) == NULL, "no backend state after the failed open");
    check_hr("fwx_firewall_set_backend(\"fault\") again", fwx_firewall_set_backend(fw, "fault"), FWX_S_OK);
    check_log("using backend \"fault\" (wrapping \"proxy\")", NULL);
    check(calls(FAULT_OPEN) == 2 && fault_backend_faults(fb) == 1, "open called twice, one fault (%u, %u)",
          calls(FAULT_OPEN), fault_backend_faults(fb));
    void *outer = fwx_firewall_backend_state(fw), *inner = fwx_firewall_backend_state_of(fw, proxy);
    check(outer != NULL && inner != NULL && inner != outer, "the proxy's state is found behind the wrapper");
    check(fwx_firewall_backend_state_of(fw, fault_backend_vtable(fb)) == outer, "the wrapper's own state is its own");
    const fwx_backend *nft = fwx_backend_find("nft");
    check(nft == NULL || fwx_firewall_backend_state_of(fw, nft) == NULL, "no state for a backend not in use");
}

/* ---- SOCKS: the proxy's own API behind the wrapper --------------------------------------------- */

typedef struct socks_case {
    uint16_t socks_port, dst_port;
    int rep;
    int ok;
} socks_case;

static void *socks_client(void *arg)
{
    socks_case *x = arg;
    x->rep = -1;
    int fd = sock_from(CLIENT);
    unsigned char hello[3] = {5, 1, 0}, a[10], req[10] = {5, 1, 0, 1};
    struct sockaddr_in d = peer_v4(SERVER, x->dst_port);
    memcpy(req + 4, &d.sin_addr, 4);
    memcpy(req + 8, &d.sin_port, 2);
    if (peer_connect(fd, GW_IN, x->socks_port) == 0 && peer_write_all(fd, hello, 3) == 0 &&
        recv(fd, a, 2, MSG_WAITALL) == 2 && a[1] == 0 && peer_write_all(fd, req, 10) == 0 &&
        recv(fd, a, 10, MSG_WAITALL) == 10) {
        x->rep = a[1];
        char out[20000], in[20001];
        for (size_t i = 0; i < sizeof out; i++)
            out[i] = (char)(i * 7);
        if (x->rep == 0 && peer_write_all(fd, out, sizeof out) == 0) {
            shutdown(fd, SHUT_WR);
            x->ok = peer_read_all(fd, in, sizeof in) == (ssize_t)sizeof out && memcmp(in, out, sizeof out) == 0;
        }
    }
    close(fd);
    return NULL;
}

static void test_socks(echo *e)
{
    scenario = "socks";
    socks_case x = {free_port(GW_IN), e->port, -1, 0};
    struct sockaddr_in at = peer_v4(GW_IN, x.socks_port);
    check_hr("fwx_proxy_socks_listen behind the wrapper", fwx_proxy_socks_listen(fw, SA(at), sizeof at), FWX_S_OK);
    fwx_socks_limits lim;
    fwx_socks_limits_init(&lim);
    check_hr("fwx_proxy_socks_set_limits behind the wrapper", fwx_proxy_socks_set_limits(fw, &lim), FWX_S_OK);
    check_hr("fwx_proxy_socks_set_users(NULL) behind the wrapper", fwx_proxy_socks_set_users(fw, NULL), FWX_S_OK);
    unsigned relays = calls(FAULT_RELAY);
    run_peer(socks_client, &x);
    check(x.rep == 0 && x.ok, "SOCKS CONNECT to the echo server relays 20000 bytes both ways (reply %d)", x.rep);
    check(calls(FAULT_RELAY) > relays, "the core asked the backend to relay it, through the wrapper");
}

/* ---- publishing: listen, relay, unlisten ------------------------------------------------------ */

/* One publishing rule per port in ports[0..n-1], each to the echo server. */
static const char *publish_policy(const uint16_t *ports, int n, uint16_t server)
{
    static char text[4096];
    int off = 0;
    const char *from = "\"localhost\"", *to = "\"localhost\"";
    if (ns_client >= 0) {
        /* Two sides: the client's (internal), the server's (dmz), the gateway on both. */
        off = snprintf(text, sizeof text,
                       "networks = { internal = { ranges = [ \"%s/32\" ]; }; dmz = { ranges = [ \"%s/32\" ]; };\n"
                       "  localhost = { ranges = [ \"%s/32\", \"%s/32\" ]; }; };\n"
                       "relationships = ( { from = \"internal\"; to = \"dmz\"; type = \"nat\"; } );\n",
                       CLIENT, SERVER, GW_IN, GW_OUT);
        from = "\"internal\"";
        to = "\"localhost\", \"dmz\"";
    }
    off += snprintf(text + off, sizeof text - (size_t)off, "protocols = (");
    for (int i = 0; i < n; i++)
        off += snprintf(text + off, sizeof text - (size_t)off,
                        "%s { name = \"svc%d\"; guid = \"{0badf00d-0000-0000-0000-00000000000%d}\"; protocol = \"tcp\";"
                        " port = %u; direction = \"inbound\"; }",
                        i ? "," : "", i, i + 1, ports[i]);
    off += snprintf(text + off, sizeof text - (size_t)off,
                    " );\nrules = ( { name = \"publish\"; action = \"allow\"; from = [ %s ];"
                    " to = [ %s ]; protocols = [ \"all\" ]; } );\npublishing = (", from, to);
    for (int i = 0; i < n; i++)
        off += snprintf(text + off, sizeof text - (size_t)off,
                        "%s { name = \"pub%d\"; listen = \"%s:%u\"; server = \"%s:%u\"; protocol = "
                        "\"svc%d\"; full_proxy = true; }",
                        i ? "," : "", i, GW_IN, ports[i], SERVER, server, i);
    snprintf(text + off, sizeof text - (size_t)off, " );\n");
    return text;
}

static unsigned live_connections(void)
{
    fwx_firewall_stats st = {.struct_size = sizeof st};
    if (FWX_FAILED(fwx_firewall_get_stats(fw, &st)))
        return UINT_MAX; /* fails every "no connection left" check, and says why in the figure */
    return st.connections;
}

static void test_publishing(echo *e)
{
    scenario = "publishing";
    uint16_t ports[2] = {free_port(GW_IN), free_port(GW_IN)};
    check_hr("a policy publishing one port", set_policy(publish_policy(ports, 1, e->port)), FWX_S_OK);
    check(calls(FAULT_LISTEN) == 1 && !port_free(GW_IN, ports[0]), "the proxy listens on :%u", ports[0]);
    roundtrip x = echo_through(ports[0], 100000);
    check(x.ok, "100000 bytes echoed through the published port (got %zu)", x.got);

    scenario = "relay";
    log_reset();
    int conns = atomic_load(&e->conns);
    arm(FAULT_RELAY, 1, FWX_E_OUTOFMEMORY);
    x = echo_through(ports[0], 1000);
    check(!x.ok && x.got == 0, "the client of the failed relay got nothing back (%zu bytes)", x.got);
    check_log("backend \"fault\": relay of connection", "failed: ");
    run_for(50);
    check(live_connections() == 0, "no connection left (%u)", live_connections());
    x = echo_through(ports[0], 1000);
    check(x.ok, "the next connection is relayed");
    check(atomic_load(&e->conns) >= conns + 1, "the server saw the next connection");

    scenario = "listen";
    log_reset();
    arm(FAULT_LISTEN, 1, FWX_E_DENIED);
    check_hr("a policy adding a second port, listen failing", set_policy(publish_policy(ports, 2, e->port)),
             FWX_E_DENIED);
    check_log("publishing rule \"pub1\"", "cannot serve it");
    check(port_free(GW_IN, ports[1]), "nothing listens on :%u", ports[1]);
    check(echo_through(ports[0], 1000).ok, "the first port still serves");
    check_hr("the same policy again", set_policy(publish_policy(ports, 2, e->port)), FWX_S_OK);
    check(!port_free(GW_IN, ports[1]) && echo_through(ports[1], 1000).ok, "now :%u listens and serves", ports[1]);

    scenario = "unlisten";
    log_reset();
    arm(FAULT_UNLISTEN, 1, FWX_E_BACKEND);
    check_hr("a policy dropping the second port, unlisten failing", set_policy(publish_policy(ports, 1, e->port)),
             FWX_S_OK);
    check_log("closing the listener on", "failed");
    check(!port_free(GW_IN, ports[1]), "the listener the backend failed to close is still there");
    unsigned before = calls(FAULT_UNLISTEN);
    check_hr("the next policy change", set_policy(publish_policy(ports, 1, e->port)), FWX_S_OK);
    check(calls(FAULT_UNLISTEN) == before + 1 && port_free(GW_IN, ports[1]),
          "retries the close, and :%u is free", ports[1]);
    check(echo_through(ports[0], 1000).ok, "the first port still serves");
    check_hr("no policy", fwx_firewall_set_policy(fw, NULL), FWX_S_OK);
    check(port_free(GW_IN, ports[0]), "nothing listens on :%u", ports[0]);
}

/* ---- grants: a permission, a bound port -------------------------------------------------------- */

static fwx_result allow(IFWXSession *s, IFWXConnection *ctl, uint16_t port, IFWXFirewallAction **action)
{
    struct sockaddr_in t = peer_v4(SERVER, port);
    return IFWXSession_AllowFutureConnect(s, SA(t), sizeof t, NULL, 0, FWX_PROTOCOL_TCP, 0, NULL, NULL, NULL, ctl,
                                          action);
}

static void test_permission(void)
{
    scenario = "grant_add";
    IFWXConnection *ctl = NULL;
    IFWXSession *s = nat_session(&ctl);
    if (s == NULL)
        return;
    IFWXFirewallAction *a1 = NULL, *a2 = NULL;
    check_hr("AllowFutureConnect", allow(s, ctl, 50000, &a1), FWX_S_OK);
    check(core_grants() == 1 && proxy_grants() == 1, "one grant in the core and in the proxy");
    log_reset();
    arm(FAULT_GRANT_ADD, 1, FWX_E_OUTOFMEMORY);
    check_hr("AllowFutureConnect, grant_add failing", allow(s, ctl, 50001, &a2), FWX_E_OUTOFMEMORY);
    check(a2 == NULL, "no action handed out");
    char refused[80];
    snprintf(refused, sizeof refused, "AllowFutureConnect to %s:50001 refused", SERVER);
    check_log(refused, NULL);
    check(core_grants() == 1 && proxy_grants() == 1, "still one grant in the core and in the proxy (%u, %u)",
          core_grants(), proxy_grants());
    check_hr("AllowFutureConnect again", allow(s, ctl, 50001, &a2), FWX_S_OK);
    check(core_grants() == 2 && proxy_grants() == 2, "two grants");

    scenario = "any";
    arm(FAULT_ANY, 2, FWX_E_FAIL);
    unsigned any = calls(FAULT_ANY);
    check_hr("the first call after arming the 2nd of any", allow(s, ctl, 50002, NULL), FWX_S_OK);
    check_hr("the second call", allow(s, ctl, 50003, NULL), FWX_E_FAIL);
    check(calls(FAULT_ANY) == any + 2 && core_grants() == 3 && proxy_grants() == 3, "three grants");

    scenario = "grant_remove";
    log_reset();
    arm(FAULT_GRANT_REMOVE, 1, FWX_E_BACKEND);
    check_hr("IFWXFirewallAction::Cancel, grant_remove failing", IFWXFirewallAction_Cancel(a2), FWX_S_OK);
    check_log("backend \"fault\": removing grant", "failed");
    /* The core lets go of the grant; the backend, which said it could not remove it, still
       holds it, and is asked again at the next grant change. */
    check(core_grants() == 2 && proxy_grants() == 3, "the core holds 2 grants, the proxy still 3 (%u, %u)",
          core_grants(), proxy_grants());
    check_hr("IFWXFirewallAction::Cancel of the other", IFWXFirewallAction_Cancel(a1), FWX_S_OK);
    check_log("removed on a later try", NULL);
    check(core_grants() == 1 && proxy_grants() == 1, "both removals reached the proxy (%u, %u)", core_grants(),
          proxy_grants());
    IFWXFirewallAction_Release(a1);
    IFWXFirewallAction_Release(a2);

    scenario = "list";
    const fwx_backend *vt = fault_backend_vtable(fb);
    unsigned n = 0;
    arm(FAULT_LIST, 1, FWX_E_DENIED);
    check_hr("list through the wrapper, failing", vt->list(fwx_firewall_backend_state(fw), count_grant, &n),
             FWX_E_DENIED);
    check(n == 0, "reported nothing");
    check_hr("list again", vt->list(fwx_firewall_backend_state(fw), count_grant, &n), FWX_S_OK);
    check(n == proxy_grants(), "reports what the proxy holds (%u)", n);

    fwx_connection_close(ctl);
    check_hr("fwx_session_close", fwx_session_close(s), FWX_S_OK);
    IFWXSession_Release(s);
    run_for(10);
    check(core_grants() == 0 && proxy_grants() == 0, "the session's grants are gone from the core and the proxy");
}

typedef struct bound_case {
    uint16_t gw_port;
    int client_lfd;
    size_t got;
    int ok;
    int second_refused;
} bound_case;

/* The server connects to the bound port and sends; the client's own port receives it. */
static void *bound_peers(void *arg)
{
    bound_case *b = arg;
    int s = sock_from(SERVER);
    if (peer_connect(s, GW_OUT, b->gw_port) == 0)
        b->ok = peer_send_to_listener(s, b->client_lfd, 100000, IO_TIMEOUT_S, &b->got);
    close(s);
    return NULL;
}

/* A data connection held open across calls: opened by live_open, checked by live_more, and
   seen to end when the firewall closes (live_end). */
typedef struct live_case {
    uint16_t gw_port;
    int client_lfd;
    int server_fd, client_fd;
    int ok, still_flowing;
} live_case;

static live_case live_lc = {0, -1, -1, -1, 0, 0};

static void *live_open(void *arg)
{
    live_case *l = arg;
    char in[5];
    l->server_fd = sock_from(SERVER);
    if (peer_connect(l->server_fd, GW_OUT, l->gw_port) != 0 || peer_write_all(l->server_fd, "hello", 5) != 0)
        return NULL;
    l->client_fd = accept(l->client_lfd, NULL, NULL);
    if (l->client_fd < 0)
        return NULL;
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(l->client_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    l->ok = recv(l->client_fd, in, 5, MSG_WAITALL) == 5 && memcmp(in, "hello", 5) == 0;
    return NULL;
}

static void *live_more(void *arg)
{
    live_case *l = arg;
    char in[4];
    l->still_flowing = l->client_fd >= 0 && peer_write_all(l->server_fd, "more", 4) == 0 &&
                       recv(l->client_fd, in, 4, MSG_WAITALL) == 4 && memcmp(in, "more", 4) == 0;
    return NULL;
}

/* After the firewall closed: the client's side of the data connection sees its end. */
static void live_end(void)
{
    if (live_lc.client_fd < 0)
        return;
    char c;
    check(recv(live_lc.client_fd, &c, 1, 0) <= 0, "the relay ends with the backend's close");
    close(live_lc.client_fd);
    close(live_lc.server_fd);
}

static fwx_result bind_for_client(IFWXSession *s, int client_lfd, uint16_t *gw_port, IFWXConnection **bound)
{
    struct sockaddr_in ca = peer_v4(CLIENT, peer_bound_port(client_lfd));
    struct sockaddr_storage px;
    memset(&px, 0, sizeof px);
    struct sockaddr_in g = peer_v4(GW_OUT, 0); /* the server connects to it */
    memcpy(&px, &g, sizeof g);
    const struct sockaddr *cap[1] = {SA(ca)};
    *bound = NULL;
    fwx_result hr = IFWXSession_BindForClient(s, cap, sizeof ca, (struct sockaddr *)&px, sizeof px, FWX_PROTOCOL_TCP,
                                              1, FWX_FLAG_TIMEOUT, 4, &FWX_GUID_NULL, NULL, NULL, NULL, bound);
    *gw_port = ntohs(((struct sockaddr_in *)&px)->sin_port);
    return hr;
}

static void test_bound_port(void)
{
    scenario = "bound port";
    IFWXConnection *ctl = NULL, *bound = NULL;
    IFWXSession *s = nat_session(&ctl);
    if (s == NULL)
        return;
    unsigned base = proxy_grants(); /* none: nothing was left above */
    check(base == 0, "the proxy holds no grant (%u)", base);
    bound_case b = {0};
    b.client_lfd = sock_from(CLIENT);
    listen(b.client_lfd, 4);
    /* FWX_E_ADDRINUSE from the backend: the core takes another port, and the call succeeds. */
    arm(FAULT_GRANT_ADD, 1, FWX_E_ADDRINUSE);
    unsigned adds = calls(FAULT_GRANT_ADD);
    check_hr("BindForClient, the first port in use", bind_for_client(s, b.client_lfd, &b.gw_port, &bound), FWX_S_OK);
    check(calls(FAULT_GRANT_ADD) == adds + 2, "grant_add tried twice (%u)", calls(FAULT_GRANT_ADD) - adds);
    check(b.gw_port >= 40000 && !port_free(GW_OUT, b.gw_port), "the proxy listens on the bound port :%u", b.gw_port);
    check(core_grants() == 1 && proxy_grants() == base + 1, "one bound port in the core and in the proxy");
    run_peer(bound_peers, &b);
    check(b.ok, "the server's 100000 bytes reached the client's port through the bound port (got %zu)", b.got);
    run_for(20);
    if (bound != NULL)
        IFWXConnection_Release(bound);

    scenario = "grant_add";
    log_reset();
    arm(FAULT_GRANT_ADD, 1, FWX_E_DENIED);
    uint16_t port2 = 0;
    check_hr("BindForClient, grant_add failing", bind_for_client(s, b.client_lfd, &port2, &bound), FWX_E_DENIED);
    check(bound == NULL, "no bound connection handed out");
    check_log("BindForClient", "refused");
    check(core_grants() == 0 && proxy_grants() == base, "no bound port left in the core or the proxy (%u, %u)",
          core_grants(), proxy_grants());
    check_hr("BindForClient again", bind_for_client(s, b.client_lfd, &port2, &bound), FWX_S_OK);
    check(!port_free(GW_OUT, port2), "the proxy listens on :%u", port2);

    /* A live relay through the bound port, then the session ends with kill failing: the core
       forgets the connection and says so; the proxy, told nothing it could act on, carries
       the bytes on until it closes (the firewall's close below ends it). */
    scenario = "kill";
    live_case lc = {port2, b.client_lfd, -1, -1, 0, 0};
    run_peer(live_open, &lc);
    check(lc.ok, "a data connection through :%u carries bytes", port2);
    check(live_connections() == 2, "two connections in the core: the control and the data (%u)", live_connections());
    log_reset();
    if (bound != NULL)
        IFWXConnection_Release(bound);
    fwx_connection_close(ctl); /* its kill is the host's: the proxy answers FWX_E_NOT_FOUND */
    check(log_find("killing connection", NULL) == NULL, "FWX_E_NOT_FOUND from kill is not logged");
    arm(FAULT_KILL, 1, FWX_E_FAIL);
    unsigned kills = calls(FAULT_KILL);
    check_hr("fwx_session_close, kill failing", fwx_session_close(s), FWX_S_OK);
    IFWXSession_Release(s);
    run_for(10);
    check(calls(FAULT_KILL) == kills + 1, "kill asked once, for the data connection (%u)", calls(FAULT_KILL) - kills);
    check_log("backend \"fault\": killing connection", "failed");
    unsigned listed = 0;
    fwx_firewall_list(fw, FWX_OBJECT_CONNECTION | FWX_OBJECT_SESSION, count_object, &listed);
    check(listed == 0 && core_grants() == 0, "the core lists no session, connection or grant (%u, %u)", listed,
          core_grants());
    /* The connection object lives on in the proxy's reference (stats count objects), until the
       backend lets go of it at its close. */
    check(live_connections() == 1, "one connection object still held by the proxy (%u)", live_connections());
    check(proxy_grants() == base && port_free(GW_OUT, port2), "the bound port is closed with the session");
    run_peer(live_more, &lc);
    check(lc.still_flowing, "the relay the backend was not able to kill still carries bytes");
    close(b.client_lfd);
    live_lc = lc;
}

/* ---- create_socket -------------------------------------------------------------------------- */

static void test_create_socket(void)
{
    scenario = "create_socket";
    IFWXFirewall *ifw = fwx_firewall_iface(fw); /* borrowed */
    IFWXNetworkSocket *sock = (IFWXNetworkSocket *)&sock; /* any non-NULL: it must be cleared */
    arm(FAULT_CREATE_SOCKET, 1, FWX_E_OUTOFMEMORY);
    check_hr("IFWXFirewall::CreateNetworkSocket, failing", IFWXFirewall_CreateNetworkSocket(ifw, FWX_PROTOCOL_TCP, &sock),
             FWX_E_OUTOFMEMORY);
    check(sock == NULL, "no socket handed out");
    check_hr("CreateNetworkSocket again", IFWXFirewall_CreateNetworkSocket(ifw, FWX_PROTOCOL_TCP, &sock), FWX_S_OK);
    if (sock != NULL)
        IFWXNetworkSocket_Release(sock);
}

/* A real topology, when check-fault-wrap.sh made one: addresses and namespaces from the
   environment; 0, or -1 with a reason printed. */
static int topology_from_env(void)
{
    const char *nc = getenv("FAULT_NS_CLIENT"), *nsv = getenv("FAULT_NS_SERVER");
    if (nc == NULL && nsv == NULL)
        return 0;
    const char *gi = getenv("FAULT_GW_IN"), *go = getenv("FAULT_GW_OUT"), *c = getenv("FAULT_CLIENT"),
               *sv = getenv("FAULT_SERVER");
    if (nc == NULL || nsv == NULL || gi == NULL || go == NULL || c == NULL || sv == NULL) {
        printf("proxy_faults: FAULT_NS_CLIENT, FAULT_NS_SERVER, FAULT_GW_IN, FAULT_GW_OUT, FAULT_CLIENT and "
               "FAULT_SERVER go together\n");
        return -1;
    }
    GW_IN = gi, GW_OUT = go, CLIENT = c, SERVER = sv;
    ns_self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    ns_client = open(nc, O_RDONLY | O_CLOEXEC);
    ns_server = open(nsv, O_RDONLY | O_CLOEXEC);
    if (ns_self < 0 || ns_client < 0 || ns_server < 0) {
        printf("proxy_faults: cannot open the namespaces %s, %s: %s\n", nc, nsv, strerror(errno));
        return -1;
    }
    printf("proxy_faults: client %s -> gateway %s | %s <- server %s, in namespaces\n", CLIENT, GW_IN, GW_OUT,
           SERVER);
    return 0;
}

/* ---- a wrapper that says it wraps itself: the core's walk is bounded ---------------------- */

static int self_state;
static fwx_result self_open(const fwx_backend *self, fwx_firewall *f, void **state)
{
    (void)self;
    (void)f;
    *state = &self_state;
    return FWX_S_OK;
}
static void self_close(void *state) { (void)state; }
static fwx_result self_grant_add(void *state, const fwx_grant *g)
{
    (void)state;
    (void)g;
    return FWX_S_OK;
}
static fwx_result self_grant_remove(void *state, uint64_t id)
{
    (void)state;
    (void)id;
    return FWX_S_OK;
}
static const fwx_backend *self_wrapped(void *state, void **inner_state);
static const fwx_backend self_backend = {
    .version = 4, .name = "self-wrapping", .open = self_open, .close = self_close,
    .grant_add = self_grant_add, .grant_remove = self_grant_remove, .wrapped = self_wrapped,
};
static const fwx_backend *self_wrapped(void *state, void **inner_state)
{
    *inner_state = state;
    return &self_backend;
}

static void test_self_wrapping(void)
{
    scenario = "self-wrapping";
    check_hr("registering a backend that wraps itself", fwx_backend_register(&self_backend), FWX_S_OK);
    fwx_firewall *saved = fw;
    fw = firewall_new();
    check_hr("fwx_firewall_set_backend", fwx_firewall_set_backend(fw, "self-wrapping"), FWX_S_OK);
    check(fwx_firewall_backend_state_of(fw, &self_backend) == &self_state, "its own state is found");
    check(fwx_firewall_backend_state_of(fw, proxy) == NULL, "the proxy's is not: the walk ends");
    firewall_close();
    fw = saved;
    check_hr("fwx_backend_unregister", fwx_backend_unregister(&self_backend), FWX_S_OK);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (topology_from_env() != 0)
        return 1;
    proxy = fwx_backend_find("proxy");
    if (proxy == NULL) {
        printf("proxy_faults: SKIP: this libfwx has no \"proxy\" backend\n");
        return 77;
    }
    {
        int probe = sock_from(CLIENT);
        if (probe < 0) {
            printf("proxy_faults: SKIP: cannot bind %s (%s)\n", CLIENT,
                   ns_client < 0 ? "loopback is not 127.0.0.0/8 here" : "the client's namespace lacks it");
            return 77;
        }
        close(probe);
    }
    if (uv_loop_init(&loop) != 0)
        return 1;
    scenario = "register";
    check_hr("fault_backend_register(\"fault\", \"proxy\")", fault_backend_register("fault", "proxy", &fb), FWX_S_OK);
    if (fb == NULL)
        return 1;
    echo e;
    echo_start(&e);

    test_registry();
    test_self_wrapping();
    test_open();
    if (fw != NULL && fwx_firewall_backend_state(fw) != NULL) {
        test_socks(&e);
        test_publishing(&e);
        test_permission();
        test_bound_port();
        test_create_socket();
    }
    scenario = "close";
    unsigned closes = calls(FAULT_CLOSE);
    firewall_close();
    check(calls(FAULT_CLOSE) == closes + 1, "the firewall's close closed the wrapper and the proxy");
    scenario = "kill";
    live_end();
    fault_backend_disarm(fb);
    check_hr("fault_backend_unregister", fault_backend_unregister(fb), FWX_S_OK);
    check(fwx_backend_find("fault") == NULL, "\"fault\" is gone from the registry");
    echo_stop(&e);

    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    int rc = uv_loop_close(&loop);
    check(rc == 0, "uv_loop_close: %s", rc == 0 ? "0" : uv_strerror(rc));
    printf("proxy_faults: %s (%d failed)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
