/*
 * fwx tests - network namespaces for the kernel-mode tests (see netns.h).
 * SPDX-License-Identifier: MIT
 */
#include "netns.h"

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
