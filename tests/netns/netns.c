/*
 * fwx tests - network namespaces for the kernel-mode tests (see netns.h).
 * SPDX-License-Identifier: MIT
 */
#include "netns.h"
#include "netutil.h"
#include "testutil.h"
#include <time.h>
#include <arpa/inet.h>
#include <poll.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#if FWX_HAVE_NFT
#include <nftables/libnftables.h>
#include "backends/nft/nft_impl.h"
#endif

#define NETNS_DIR "/run/netns"
#define PREFIX "fwxt-"

static const char *ip_bin(void)
{
    static const char *const cands[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

int tn_sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc < 0 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int tn_available(char *why, size_t len)
{
    if (ip_bin() == NULL) {
        snprintf(why, len, "the ip command (iproute2) is not installed");
        return -1;
    }
    if (geteuid() != 0) {
        snprintf(why, len, "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)");
        return -1;
    }
    /* Try in a child, so this process stays where it is. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(unshare(CLONE_NEWNET) == 0 ? 0 : 1);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(why, len, "cannot create a network namespace here (unshare(CLONE_NEWNET) failed)");
        return -1;
    }
    return 0;
}

static void del_ns(const char *name)
{
    const char *ip = ip_bin();
    if (ip != NULL)
        (void)tn_sh("%s netns del %s 2>/dev/null", ip, name);
}

/* Deletes fwxt-<runner>-... namespaces for which keep(runner) says no. */
static void cleanup_where(int (*doomed)(long runner))
{
    DIR *d = opendir(NETNS_DIR);
    if (d == NULL)
        return;
    struct dirent *e;
    char names[256][128];
    size_t n = 0;
    while ((e = readdir(d)) != NULL && n < 256) {
        if (strncmp(e->d_name, PREFIX, strlen(PREFIX)) != 0)
            continue;
        long runner = strtol(e->d_name + strlen(PREFIX), NULL, 10);
        if (runner > 0 && doomed(runner) && strlen(e->d_name) < sizeof names[0])
            memcpy(names[n++], e->d_name, strlen(e->d_name) + 1);
    }
    closedir(d);
    for (size_t i = 0; i < n; i++)
        del_ns(names[i]);
}

static int runner_dead(long runner) { return kill((pid_t)runner, 0) != 0 && errno == ESRCH; }
static int runner_me(long runner) { return runner == (long)getpid(); }

void tn_cleanup_stale(void) { cleanup_where(runner_dead); }
void tn_cleanup_mine(void) { cleanup_where(runner_me); }

/* The topology atexit removes: one per test process. */
static tn_topo *registered;

static void at_exit_down(void)
{
    if (registered != NULL)
        tn_down(registered);
}

static int open_ns(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, NETNS_DIR "/%s", name);
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* Writes a sysctl inside a namespace: a child enters it, so this thread stays put. */
static int sysctl_in(int nsfd, const char *path, const char *value)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (setns(nsfd, CLONE_NEWNET) != 0)
            _exit(1);
        int fd = open(path, O_WRONLY);
        if (fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value))
            _exit(2);
        close(fd);
        _exit(0);
    }
    int st = 0;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void tn_up(tn_topo *t)
{
    const char *ip = ip_bin();
    memset(t, 0, sizeof *t);
    t->client_fd = t->gateway_fd = t->server_fd = -1;
    ck_assert_msg(ip != NULL, "no ip command");
    long runner = (long)getppid(), me = (long)getpid();
    snprintf(t->client, sizeof t->client, PREFIX "%ld-%ld-c", runner, me);
    snprintf(t->gateway, sizeof t->gateway, PREFIX "%ld-%ld-g", runner, me);
    snprintf(t->server, sizeof t->server, PREFIX "%ld-%ld-s", runner, me);
    t->up = 1;
    registered = t;
    static int once;
    if (!once++)
        atexit(at_exit_down);
    const char *c = t->client, *g = t->gateway, *s = t->server;
    struct {
        const char *what;
        int rc;
    } steps[32];
    size_t n = 0;
#define STEP(...) (steps[n].what = #__VA_ARGS__, steps[n++].rc = tn_sh(__VA_ARGS__))
    STEP("%s netns add %s", ip, c);
    STEP("%s netns add %s", ip, g);
    STEP("%s netns add %s", ip, s);
    /* Each pair is made inside the client or server namespace with its peer end placed
       straight into the gateway's: no interface ever exists in the host's namespace. */
    STEP("%s -n %s link add eth0 type veth peer name cl0 netns %s", ip, c, g);
    STEP("%s -n %s link add eth0 type veth peer name sv0 netns %s", ip, s, g);
    STEP("%s -n %s addr add " TN_CLIENT "/24 dev eth0", ip, c);
    STEP("%s -n %s addr add " TN_GW_IN "/24 dev cl0", ip, g);
    STEP("%s -n %s addr add " TN_GW_OUT "/24 dev sv0", ip, g);
    STEP("%s -n %s addr add " TN_SERVER "/24 dev eth0", ip, s);
    STEP("%s -n %s addr add " TN_OTHER "/24 dev eth0", ip, s);
    STEP("%s -n %s link set lo up", ip, c);
    STEP("%s -n %s link set lo up", ip, g);
    STEP("%s -n %s link set lo up", ip, s);
    STEP("%s -n %s link set eth0 up", ip, c);
    STEP("%s -n %s link set cl0 up", ip, g);
    STEP("%s -n %s link set sv0 up", ip, g);
    STEP("%s -n %s link set eth0 up", ip, s);
    STEP("%s -n %s route add default via " TN_GW_IN, ip, c);
    STEP("%s -n %s route add default via " TN_GW_OUT, ip, s);
#undef STEP
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(steps[i].rc == 0, "netns setup step %zu failed (%d): %s", i, steps[i].rc, steps[i].what);
    t->client_fd = open_ns(c);
    t->gateway_fd = open_ns(g);
    t->server_fd = open_ns(s);
    ck_assert_msg(t->client_fd >= 0 && t->gateway_fd >= 0 && t->server_fd >= 0, "opening the namespaces: %s",
                  strerror(errno));
    ck_assert_int_eq(sysctl_in(t->gateway_fd, "/proc/sys/net/ipv4/ip_forward", "1"), 0);
}

void tn_down(tn_topo *t)
{
    if (!t->up)
        return;
    t->up = 0;
    if (registered == t)
        registered = NULL;
    int *fds[] = {&t->client_fd, &t->gateway_fd, &t->server_fd};
    for (size_t i = 0; i < 3; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
    del_ns(t->client);
    del_ns(t->gateway);
    del_ns(t->server);
}

void tn_enter(int nsfd) { ck_assert_msg(setns(nsfd, CLONE_NEWNET) == 0, "setns: %s", strerror(errno)); }

int tn_socket_in(int nsfd, int domain, int type)
{
    int here = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(here, 0);
    tn_enter(nsfd);
    int fd = socket(domain, type | SOCK_CLOEXEC, 0);
    int err = errno;
    tn_enter(here);
    close(here);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(err));
    return fd;
}

/* ---- peers in the namespaces (shared by the namespace suites) ---- */

uint64_t tn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct sockaddr_in tn_sin_of(const char *ip, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    ck_assert_int_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

/* A TCP listener in namespace nsfd on ip:port (port 0: any). */
int tn_listener_in(int nsfd, const char *ip, uint16_t port, uint16_t *bound)
{
    int fd = tn_socket_in(nsfd, AF_INET, SOCK_STREAM);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = tn_sin_of(ip, port);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    if (bound != NULL)
        *bound = tu_bound_port(fd);
    return fd;
}

int tn_connect_in(int nsfd, const char *src, const char *ip, uint16_t port, int ms)
{
    int fd = tn_socket_in(nsfd, AF_INET, SOCK_STREAM);
    if (src != NULL) {
        struct sockaddr_in from = tn_sin_of(src, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&from, sizeof from), 0);
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct sockaddr_in a = tn_sin_of(ip, port);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t el = sizeof err;
        rc = poll(&p, 1, ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0 ? 0 : -1;
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, 0);
    tu_set_timeouts(fd);
    return fd;
}

/* Accepts one connection within ms: the socket (peer in *peer), or -1. */
int tn_accept_within(int lfd, int ms, struct sockaddr_in *peer)
{
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return -1;
    socklen_t l = sizeof *peer;
    int fd = accept(lfd, (struct sockaddr *)peer, &l);
    if (fd >= 0)
        tu_set_timeouts(fd);
    return fd;
}

int tn_main(Suite *(*make_suite)(void), const char *what)
{
    char why[256];
    if (tn_available(why, sizeof why) != 0) {
        printf("SKIP: %s: %s\n", what, why);
        return 77;
    }
    tn_cleanup_stale();
    int rc = tu_run_suite(make_suite());
    tn_cleanup_mine();
    return rc;
}

void tn_gw_up(tn_topo *t)
{
    tn_up(t);
    tn_enter(t->gateway_fd);
}

void tn_gw_options(fwx_firewall_options *o, const char *name)
{
    /* Static: the firewall keeps the pointer for its life, past the caller's frame. */
    static struct sockaddr_storage local[2];
    local[0] = tu_addr(TN_GW_IN);
    local[1] = tu_addr(TN_GW_OUT);
    tu_fw_options(o);
    o->name = name;
    o->local_addresses = local;
    o->n_local_addresses = 2;
    o->port_min = 40000;
    o->port_max = 40999;
}

/* tn_gw_options with the gateway's two IPv6 addresses among its own too (tn_gw_begin). */
static void tn_gw_options_ipv6(fwx_firewall_options *o, const char *name)
{
    static struct sockaddr_storage local[4]; /* kept by the firewall, as tn_gw_options' */
    local[0] = tu_addr(TN_GW_IN);
    local[1] = tu_addr(TN_GW_OUT);
    local[2] = tu_addr(TN6_GW_IN);
    local[3] = tu_addr(TN6_GW_OUT);
    tn_gw_options(o, name);
    o->local_addresses = local;
    o->n_local_addresses = 4;
}

void tn_gw_close(tn_gw *g)
{
    tu_fw_close(&g->loop, &g->fw);
    tn_down(&g->topo);
}

void tn_add_ipv6(const tn_topo *t)
{
    const char *ip = ip_bin();
    ck_assert_ptr_nonnull(ip);
    ck_assert_int_eq(tn_sh("%s -n %s addr add " TN6_CLIENT "/64 dev eth0 nodad", ip, t->client), 0);
    ck_assert_int_eq(tn_sh("%s -n %s addr add " TN6_GW_IN "/64 dev cl0 nodad", ip, t->gateway), 0);
    ck_assert_int_eq(tn_sh("%s -n %s addr add " TN6_GW_OUT "/64 dev sv0 nodad", ip, t->gateway), 0);
    ck_assert_int_eq(tn_sh("%s -n %s addr add " TN6_SERVER "/64 dev eth0 nodad", ip, t->server), 0);
    ck_assert_int_eq(tn_sh("%s -n %s -6 route add default via " TN6_GW_IN, ip, t->client), 0);
    ck_assert_int_eq(tn_sh("%s -n %s -6 route add default via " TN6_GW_OUT, ip, t->server), 0);
    ck_assert_int_eq(sysctl_in(t->gateway_fd, "/proc/sys/net/ipv6/conf/all/forwarding", "1"), 0);
}

void tn_gw_begin(tn_gw *g, const char *tag, bool ipv6, fwx_firewall_options *o)
{
    memset(g, 0, sizeof *g);
    tn_up(&g->topo);
    if (ipv6)
        tn_add_ipv6(&g->topo);
    tn_enter(g->topo.gateway_fd);
    snprintf(g->name, sizeof g->name, "%s%ld", tag, (long)getpid());
#if FWX_HAVE_NFT
    fwx__nft_table_name(g->name, g->table, sizeof g->table);
#endif
    if (ipv6)
        tn_gw_options_ipv6(o, g->name);
    else
        tn_gw_options(o, g->name);
}

void tn_gw_start(tn_gw *g, const fwx_firewall_options *o, const char *plugin, const char *policy,
                 const char *backend)
{
    tu_fw_open(&g->loop, o, &g->fw);
    if (plugin != NULL)
        TU_EXPECT_HR(fwx_firewall_load_plugin(g->fw, plugin, NULL), FWX_S_OK);
    if (policy != NULL)
        TU_EXPECT_HR(fwx_firewall_set_policy(g->fw, tu_policy(policy)), FWX_S_OK);
    if (backend != NULL)
        TU_EXPECT_HR(fwx_firewall_set_backend(g->fw, backend), FWX_S_OK);
}

void tn_gw_open(tn_gw *g, const char *tag, bool ipv6, const char *plugin, const char *policy, const char *backend)
{
    fwx_firewall_options o;
    tn_gw_begin(g, tag, ipv6, &o);
    tn_gw_start(g, &o, plugin, policy, backend);
}

#if FWX_HAVE_NFT
void tn_nft_do(const char *cmds)
{
    struct nft_ctx *n = nft_ctx_new(NFT_CTX_DEFAULT);
    ck_assert_ptr_nonnull(n);
    nft_ctx_buffer_error(n);
    int rc = nft_run_cmd_from_buffer(n, cmds);
    ck_assert_msg(rc == 0, "nft: %s: %s", cmds, nft_ctx_get_error_buffer(n));
    nft_ctx_free(n);
}

const char *tn_nft_list(const char *what)
{
    static char out[65536];
    struct nft_ctx *n = nft_ctx_new(NFT_CTX_DEFAULT);
    ck_assert_ptr_nonnull(n);
    nft_ctx_buffer_output(n);
    nft_ctx_buffer_error(n);
    nft_ctx_output_set_flags(n, NFT_CTX_OUTPUT_NUMERIC_ALL);
    int rc = nft_run_cmd_from_buffer(n, what);
    snprintf(out, sizeof out, "%s", nft_ctx_get_output_buffer(n));
    nft_ctx_free(n);
    return rc == 0 ? out : NULL;
}
#endif
