/*
 * fwx tests - SOCKS5 CONNECT by host name through a gateway namespace: the
 * policy decides by the name the client asked for (domain sets) and by the address it resolved
 * to (networks, address sets).
 *
 * The gateway runs in a child process inside the gateway namespace of netns.h, with the
 * "proxy" backend, a SOCKS listener on 10.99.1.1:1080 and IP forwarding off, so only what fwx
 * relays gets across. Names resolve through a hosts file the child bind-mounts over /etc/hosts
 * in a mount namespace of its own (what `ip netns exec` does with /etc/netns/NAME/hosts): the
 * machine's /etc/hosts is never touched, and the mount goes with the child. The child's log
 * lines come back on a pipe. The SOCKS client runs in the client namespace, the servers in the
 * server namespace. Not root, or no namespaces: exit 77 (skipped) with the reason.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SOCKS_PORT 1080
#define SERVER_PORT 7000

static const char *hosts_text = "10.99.2.2 good.example www.bad.example\n"
                                "10.99.2.3 other.example\n";

static const char *policy_text =
    "networks = { internal = { ranges = [ \"10.99.1.0/24\" ]; }; };\n"
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
    "address_sets = { blocked_hosts = [ \"" TN_OTHER "/32\" ]; };\n"
    "domain_sets = { blocked_names = [ \"*.bad.example\" ]; };\n"
    "rules = (\n"
    "  { name = \"no bad names\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"blocked_names\" ];"
    " protocols = [ \"all\" ]; },\n"
    "  { name = \"no blocked hosts\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"blocked_hosts\" ];"
    " protocols = [ \"all\" ]; },\n"
    "  { name = \"out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"all\" ]; }\n"
    ");\n";

/* ---- the gateway, in a child ------------------------------------------------------------------ */

static int log_fd = -1;

/* write(2) until done (tu_write_all is for sockets); 0 or -1. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void log_to_pipe(void *arg, fwx_log_level level, const char *message)
{
    (void)arg;
    (void)level;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s\n", message);
    if (n > 0)
        (void)write_all(log_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* The child: its own mount namespace with the test's hosts file, then the gateway namespace,
   then the firewall until it is killed. Exit codes name the step that failed. */
static void gateway_main(tn_topo *t, int wfd)
{
    log_fd = wfd;
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        _exit(10);
    char path[] = "/tmp/fwx-hosts-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        _exit(11);
    if (write_all(fd, hosts_text, strlen(hosts_text)) != 0 || close(fd) != 0) {
        unlink(path);
        _exit(11);
    }
    if (mount(path, "/etc/hosts", NULL, MS_BIND, NULL) != 0) {
        char m[128];
        snprintf(m, sizeof m, "test: cannot mount %s on /etc/hosts: %s", path, strerror(errno));
        log_to_pipe(NULL, FWX_LOG_ERROR, m);
        unlink(path);
        _exit(16);
    }
    unlink(path); /* the mount keeps the file */
    tn_enter(t->gateway_fd);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        _exit(12);
    static struct sockaddr_storage local[2];
    local[0] = tu_addr(TN_GW_IN);
    local[1] = tu_addr(TN_GW_OUT);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.name = "socksnames";
    o.local_addresses = local;
    o.n_local_addresses = 2;
    o.log = log_to_pipe;
    o.log_level = FWX_LOG_DEBUG;
    fwx_firewall *fw = NULL;
    fwx_policy *p = NULL;
    fwx_config_error err;
    if (fwx_firewall_new(&loop, &o, &fw) != FWX_S_OK || fwx_firewall_set_backend(fw, "proxy") != FWX_S_OK ||
        fwx_policy_load_string(policy_text, "test", &p, &err) != FWX_S_OK || fwx_firewall_set_policy(fw, p) != FWX_S_OK)
        _exit(13);
    struct sockaddr_storage sa = tu_addr(TN_GW_IN ":1080");
    if (fwx_proxy_socks_listen(fw, TU_SA(sa), tu_len(&sa)) != FWX_S_OK)
        _exit(14);
    log_to_pipe(NULL, FWX_LOG_INFO, "test: gateway ready");
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(15);
}

typedef struct gwchild {
    tn_topo topo;
    pid_t pid;
    int rfd;
    char log[65536];
    size_t n;
} gwchild;

/* Reads what the child logged so far (waiting up to ms for more). */
static void read_log(gwchild *g, int ms)
{
    struct pollfd pf = {g->rfd, POLLIN, 0};
    while (g->n + 1 < sizeof g->log && poll(&pf, 1, ms) > 0) {
        ssize_t r = read(g->rfd, g->log + g->n, sizeof g->log - 1 - g->n);
        if (r <= 0)
            break;
        g->n += (size_t)r;
        g->log[g->n] = '\0';
        ms = 50; /* the rest of a burst */
    }
}

static void gw_start(gwchild *g)
{
    memset(g, 0, sizeof *g);
    tn_up(&g->topo);
    /* User mode: the gateway namespace does not route, so only fwx's relay gets across. */
    ck_assert_int_eq(tn_sh("ip netns exec %s sysctl -qw net.ipv4.ip_forward=0", g->topo.gateway), 0);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    g->pid = fork();
    ck_assert_int_ge(g->pid, 0);
    if (g->pid == 0) {
        close(p[0]);
        gateway_main(&g->topo, p[1]);
    }
    close(p[1]);
    g->rfd = p[0];
    for (int i = 0; i < 100 && strstr(g->log, "test: gateway ready") == NULL; i++)
        read_log(g, 100);
    if (strstr(g->log, "test: gateway ready") == NULL) {
        int st = 0;
        kill(g->pid, SIGKILL);
        waitpid(g->pid, &st, 0);
        ck_abort_msg("the gateway child did not start (exit %d): %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1, g->log);
    }
}

static void gw_stop(gwchild *g)
{
    kill(g->pid, SIGKILL);
    waitpid(g->pid, NULL, 0);
    close(g->rfd);
    tn_down(&g->topo);
}

/* ---- the SOCKS client ------------------------------------------------------------------------ */

/* CONNECT by name (atyp 3) from the client namespace: the reply code, or -1 if the exchange
   failed. *fd_out gets the connected socket when the reply is 0. */
static int socks_connect_name(gwchild *g, const char *name, uint16_t port, int *fd_out)
{
    *fd_out = -1;
    int fd = tn_connect_in(g->topo.client_fd, NULL, TN_GW_IN, SOCKS_PORT, 3000);
    if (fd < 0)
        return -1;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    tu_set_timeouts(fd);
    uint8_t req[300], rep[300];
    size_t n = strlen(name);
    if (tu_write_all(fd, "\x05\x01\x00", 3) != 0 || recv(fd, rep, 2, MSG_WAITALL) != 2 || rep[0] != 5 || rep[1] != 0) {
        close(fd);
        return -1;
    }
    req[0] = 5, req[1] = 1, req[2] = 0, req[3] = 3, req[4] = (uint8_t)n;
    memcpy(req + 5, name, n);
    req[5 + n] = (uint8_t)(port >> 8), req[6 + n] = (uint8_t)port;
    if (tu_write_all(fd, req, n + 7) != 0 || recv(fd, rep, 4, MSG_WAITALL) != 4 || rep[0] != 5) {
        close(fd);
        return -1;
    }
    size_t tail = rep[3] == 1 ? 6 : rep[3] == 4 ? 18 : 0;
    if (tail == 0 || recv(fd, rep + 4, tail, MSG_WAITALL) != (ssize_t)tail) {
        close(fd);
        return rep[1] != 0 ? rep[1] : -1; /* a refusal may end right after the code */
    }
    if (rep[1] != 0) {
        close(fd);
        return rep[1];
    }
    *fd_out = fd;
    return 0;
}

/* The server at ip got the relayed connection and the bytes both ways; 1 or 0. */
static int carried(int cfd, int lfd)
{
    struct sockaddr_in peer;
    int s = tn_accept_within(lfd, 2000, &peer);
    if (s < 0)
        return 0;
    char b[8];
    int ok = tu_write_all(cfd, "hello", 5) == 0 && recv(s, b, 5, MSG_WAITALL) == 5 && memcmp(b, "hello", 5) == 0 &&
             tu_write_all(s, "world", 5) == 0 && recv(cfd, b, 5, MSG_WAITALL) == 5 && memcmp(b, "world", 5) == 0 &&
             peer.sin_addr.s_addr == tn_sin_of(TN_GW_OUT, 0).sin_addr.s_addr;
    close(s);
    return ok;
}

/* Nothing reached the server: no connection within ms. */
static int nothing_arrives(int lfd, int ms)
{
    int s = tn_accept_within(lfd, ms, NULL);
    if (s >= 0) {
        close(s);
        return 0;
    }
    return 1;
}

START_TEST(connect_by_name_meets_domain_sets)
{
    gwchild g;
    gw_start(&g);
    int l2 = tn_listener_in(g.topo.server_fd, TN_SERVER, SERVER_PORT, NULL);
    int l3 = tn_listener_in(g.topo.server_fd, TN_OTHER, SERVER_PORT, NULL);
    int fd = -1;

    /* A name no rule denies, resolving to an allowed address: relayed. */
    ck_assert_int_eq(socks_connect_name(&g, "good.example", SERVER_PORT, &fd), 0);
    ck_assert_msg(carried(fd, l2), "good.example: the server did not get the relayed connection from the gateway");
    close(fd);

    /* The same address by a name a domain set denies: refused (2: not allowed by the ruleset),
       and nothing reaches the server. Case does not matter. */
    static const char *const bad[] = {"www.bad.example", "WWW.Bad.Example"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rep = socks_connect_name(&g, bad[i], SERVER_PORT, &fd);
        if (fd >= 0)
            close(fd);
        ck_assert_msg(rep == 2, "CONNECT %s: reply %d, want 2 (a domain set denies it)", bad[i], rep);
        ck_assert_msg(nothing_arrives(l2, 300), "CONNECT %s reached the server", bad[i]);
    }

    /* A name no domain set names, resolving to an address an address set denies: refused. */
    int rep = socks_connect_name(&g, "other.example", SERVER_PORT, &fd);
    if (fd >= 0)
        close(fd);
    ck_assert_msg(rep == 2, "CONNECT other.example (%s): reply %d, want 2", TN_OTHER, rep);
    ck_assert(nothing_arrives(l3, 300));

    read_log(&g, 200);
    ck_assert_msg(strstr(g.log, "CONNECT www.bad.example (" TN_SERVER ":7000) refused") != NULL,
                  "no line names the refused host name: %s", g.log);
    ck_assert_msg(strstr(g.log, "refused by rule \"no bad names\"") != NULL, "the domain rule did not decide: %s",
                  g.log);
    ck_assert_msg(strstr(g.log, "refused by rule \"no blocked hosts\"") != NULL, "the address rule did not decide: %s",
                  g.log);
    close(l2);
    close(l3);
    gw_stop(&g);
}
END_TEST

static Suite *socks_names_suite(void)
{
    const tu_case cases[] = {
        {"connect by name meets domain sets", connect_by_name_meets_domain_sets},
    };
    return TU_SUITE("socks names", cases, 40);
}

int main(void) { return tn_main(socks_names_suite, "network namespace tests"); }
