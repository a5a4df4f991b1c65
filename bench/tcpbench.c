/*
 * tcpbench: the small load tool of the fwx relay benchmark (bench/run.sh). Not part of the build
 * or of `meson test`; run.sh compiles it into its temp dir with the system cc.
 *
 *   tcpbench serve PORT
 *       echo server: every byte read is written back; a connection ends at the peer's EOF.
 *   tcpbench rate HOST PORT SECONDS CONC SIZE
 *       connection rate: CONC connections in flight; each connects, sends SIZE bytes, reads the
 *       SIZE echoed bytes back (so the relay really connected upstream and carried data both
 *       ways), then closes and is replaced. Prints completed connections per second.
 *   tcpbench rr HOST PORT SECONDS CONC SIZE
 *       request/response latency: CONC persistent connections, one SIZE-byte request
 *       outstanding on each; prints round-trip percentiles in microseconds.
 *   tcpbench idle HOST PORT N HOLD_SECONDS
 *       opens N connections, does one 16-byte echo on each (relayed end to end), prints
 *       "ready OK FAILED", then holds them open for HOLD_SECONDS (or until SIGTERM).
 *   tcpbench wake CPU_A CPU_B GAP_US N
 *       scheduler wake-up cost: a process pinned to CPU_A and its child pinned to CPU_B pass one
 *       byte back and forth over a socketpair, N round trips, each after GAP_US of sleep (so the
 *       other side has gone idle, as a relay between two exchanges has); prints round-trip
 *       percentiles in microseconds. One round trip is two wake-ups, each of a process that
 *       sleeps; across CPUs, each also wakes an idle CPU (bench/README.md, issue 13 part 10).
 *
 * Every loop is bounded by a deadline. Output is "key value" lines for run.sh to parse.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXSIZE 65536

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "tcpbench: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &r);
    }
}

static struct sockaddr_in make_addr(const char *host, const char *port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "tcpbench: bad IPv4 address %s\n", host);
        exit(2);
    }
    return a;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i < n ? i : n - 1] / 1000.0; /* ns -> us */
}

/* ---- serve ------------------------------------------------------------------------------------ */

typedef struct sconn {
    int fd;
    size_t off, len;
    char buf[16384];
} sconn;

static int serve(const char *port)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (ls < 0)
        die("socket");
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = make_addr("0.0.0.0", port);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind");
    if (listen(ls, 4096) < 0)
        die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    for (;;) { /* runs until run.sh kills it (by pid) */
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            sconn *c = evs[i].data.ptr;
            if (c == NULL) {
                for (int k = 0; k < 256; k++) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    sconn *nc = malloc(sizeof *nc);
                    if (nc == NULL) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    nc->off = nc->len = 0;
                    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
                }
                continue;
            }
            int dead = 0;
            for (int round = 0; round < 16 && !dead; round++) {
                if (c->len > c->off) {
                    ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
                    if (w > 0)
                        c->off += (size_t)w;
                    else if (w < 0 && errno != EAGAIN)
                        dead = 1;
                    if (c->off < c->len)
                        break; /* wait for EPOLLOUT */
                }
                c->off = c->len = 0;
                ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN))
                    dead = 1;
                else if (r < 0)
                    break;
                else
                    c->len = (size_t)r;
            }
            if (dead) {
                close(c->fd); /* also leaves the epoll set */
                free(c);
                continue;
            }
            struct epoll_event e2 = {.events = c->len > c->off ? EPOLLOUT : EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e2);
        }
    }
    return 0;
}

/* ---- rate and rr: a slot is one client connection ------------------------------------------- */

enum { S_CONNECTING, S_SENT };

typedef struct slot {
    int fd;
    int state;
    size_t got;
    uint64_t t0;
} slot;

static char payload[MAXSIZE], sink[MAXSIZE];

static int open_nb(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static int rate(const char *host, const char *port, double secs, int conc, size_t size)
{
    struct sockaddr_in a = make_addr(host, port);
    int ep = epoll_create1(0);
    slot *s = calloc((size_t)conc, sizeof *s);
    size_t cap = 4000000, nlat = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    long done = 0, errors = 0;
    double start = now_s(), end = start + secs, last_progress = start;
    for (int i = 0; i < conc; i++) {
        s[i].fd = open_nb(&a);
        s[i].state = S_CONNECTING;
        s[i].t0 = now_ns();
        if (s[i].fd < 0) {
            errors++;
            continue;
        }
        struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &e);
    }
    struct epoll_event evs[512];
    double t;
    while ((t = now_s()) < end && t - last_progress < 5.0) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            slot *c = &s[evs[k].data.u32];
            int fail = 0, finished = 0;
            if (c->state == S_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err != 0 || send(c->fd, payload, size, MSG_NOSIGNAL) != (ssize_t)size) {
                    fail = 1;
                } else {
                    c->state = S_SENT;
                    c->got = 0;
                    struct epoll_event e = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                }
            } else {
                ssize_t r = recv(c->fd, sink, sizeof sink, 0);
                if (r > 0) {
                    c->got += (size_t)r;
                    finished = c->got >= size;
                } else if (r == 0 || errno != EAGAIN) {
                    fail = 1;
                }
            }
            if (fail || finished) {
                if (finished) {
                    done++;
                    last_progress = now_s();
                    if (nlat < cap)
                        lat[nlat++] = now_ns() - c->t0;
                } else {
                    errors++;
                }
                close(c->fd);
                c->fd = -1;
                for (int tries = 0; tries < 3 && c->fd < 0; tries++)
                    c->fd = open_nb(&a);
                c->state = S_CONNECTING;
                c->t0 = now_ns();
                if (c->fd < 0) {
                    errors++;
                    continue;
                }
                struct epoll_event e = {.events = EPOLLOUT, .data.u32 = evs[k].data.u32};
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
            }
        }
    }
    double el = now_s() - start;
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    printf("conns_per_s %.0f\nconns %ld\nerrors %ld\nelapsed %.2f\nconn_p50_us %.1f\nconn_p99_us %.1f\n",
           (double)done / el, done, errors, el, pct(lat, nlat, 50), pct(lat, nlat, 99));
    return 0;
}

static int rr(const char *host, const char *port, double secs, int conc, size_t size)
{
    struct sockaddr_in a = make_addr(host, port);
    int ep = epoll_create1(0);
    slot *s = calloc((size_t)conc, sizeof *s);
    size_t cap = 20000000, nlat = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    long errors = 0;
    /* connect all first (bounded: 5 s each via SO_SNDTIMEO on a blocking connect) */
    for (int i = 0; i < conc; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("rr connect");
        fcntl(fd, F_SETFL, O_NONBLOCK);
        s[i].fd = fd;
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    }
    double start = now_s(), end = start + secs, last_progress = start;
    /* a short warm-up round on every connection, not recorded */
    for (int i = 0; i < conc; i++) {
        s[i].t0 = now_ns();
        s[i].got = 0;
        s[i].state = 0; /* 0 = warm-up request in flight */
        if (send(s[i].fd, payload, size, MSG_NOSIGNAL) != (ssize_t)size)
            die("rr send");
    }
    struct epoll_event evs[512];
    double t;
    int alive = conc;
    while ((t = now_s()) < end && t - last_progress < 5.0 && alive > 0) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            slot *c = &s[evs[k].data.u32];
            ssize_t r = recv(c->fd, sink, sizeof sink, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                alive--;
                continue;
            }
            if (r < 0)
                continue;
            c->got += (size_t)r;
            if (c->got < size)
                continue;
            uint64_t tn = now_ns();
            if (c->state == 1 && nlat < cap)
                lat[nlat++] = tn - c->t0;
            c->state = 1;
            c->got = 0;
            last_progress = now_s();
            c->t0 = now_ns();
            if (send(c->fd, payload, size, MSG_NOSIGNAL) != (ssize_t)size) {
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                alive--;
            }
        }
    }
    double el = now_s() - start;
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    printf("rr_per_s %.0f\nsamples %zu\nerrors %ld\np50_us %.1f\np90_us %.1f\np99_us %.1f\np999_us %.1f\nmax_us %.1f\n",
           (double)nlat / el, nlat, errors, pct(lat, nlat, 50), pct(lat, nlat, 90), pct(lat, nlat, 99),
           pct(lat, nlat, 99.9), pct(lat, nlat, 100));
    return 0;
}

/* ---- idle ------------------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_flag;
static void on_term(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int idle(const char *host, const char *port, int n, double hold)
{
    struct sockaddr_in a = make_addr(host, port);
    int *fds = calloc((size_t)n, sizeof *fds);
    int ok = 0, failed = 0;
    double deadline = now_s() + 60.0; /* opening all of them must not take longer than this */
    for (int i = 0; i < n && now_s() < deadline; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char msg[16] = "fwx-bench-idle!", back[16];
        size_t got = 0;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && send(fd, msg, 16, MSG_NOSIGNAL) == 16) {
            while (got < 16) {
                ssize_t r = recv(fd, back + got, 16 - got, 0);
                if (r <= 0)
                    break;
                got += (size_t)r;
            }
        }
        if (got == 16 && memcmp(msg, back, 16) == 0) {
            fds[ok++] = fd;
        } else {
            failed++;
            close(fd);
        }
    }
    printf("ready %d %d\n", ok, failed);
    fflush(stdout);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    double end = now_s() + hold;
    while (!stop_flag && now_s() < end)
        usleep(50000);
    for (int i = 0; i < ok; i++)
        close(fds[i]);
    return 0;
}

static void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity");
}

static int wake(int cpu_a, int cpu_b, int gap_us, int n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        die("socketpair");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) { /* the echo side: ends at EOF or after n bytes */
        close(sv[0]);
        pin_to(cpu_b);
        char c;
        for (int i = 0; i < n && read(sv[1], &c, 1) == 1; i++)
            if (write(sv[1], &c, 1) != 1)
                break;
        _exit(0);
    }
    close(sv[1]);
    pin_to(cpu_a);
    uint64_t *rt = calloc((size_t)n, sizeof *rt);
    if (rt == NULL)
        die("calloc");
    int got = 0;
    struct timespec gap = {gap_us / 1000000, (long)(gap_us % 1000000) * 1000};
    for (int i = 0; i < n; i++) {
        char c = 'w';
        nanosleep(&gap, NULL);
        uint64_t t0 = now_ns();
        if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1)
            break;
        rt[got++] = now_ns() - t0;
    }
    close(sv[0]);
    waitpid(child, NULL, 0);
    if (got == 0) {
        fprintf(stderr, "tcpbench: wake: no round trip\n");
        return 1;
    }
    qsort(rt, (size_t)got, sizeof *rt, cmp_u64);
    printf("samples %d\np50_us %.1f\np90_us %.1f\np99_us %.1f\n", got, rt[got / 2] / 1e3,
           rt[(size_t)got * 9 / 10] / 1e3, rt[(size_t)got * 99 / 100] / 1e3);
    free(rt);
    return 0;
}

int main(int argc, char **argv)
{
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    memset(payload, 'x', sizeof payload);
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc == 7 && (strcmp(argv[1], "rate") == 0 || strcmp(argv[1], "rr") == 0)) {
        double secs = atof(argv[4]);
        int conc = atoi(argv[5]);
        size_t size = (size_t)atol(argv[6]);
        if (secs <= 0 || secs > 600 || conc < 1 || conc > 10000 || size < 1 || size > MAXSIZE) {
            fprintf(stderr, "tcpbench: bad arguments\n");
            return 2;
        }
        return argv[1][1] == 'a' ? rate(argv[2], argv[3], secs, conc, size) : rr(argv[2], argv[3], secs, conc, size);
    }
    if (argc == 6 && strcmp(argv[1], "idle") == 0) {
        int n = atoi(argv[4]);
        double hold = atof(argv[5]);
        if (n < 1 || n > 100000 || hold <= 0 || hold > 3600)
            return 2;
        return idle(argv[2], argv[3], n, hold);
    }
    if (argc == 6 && strcmp(argv[1], "wake") == 0) {
        int a = atoi(argv[2]), b = atoi(argv[3]), gap = atoi(argv[4]), n = atoi(argv[5]);
        if (a < 0 || b < 0 || a >= CPU_SETSIZE || b >= CPU_SETSIZE || gap < 0 || gap > 1000000 || n < 1 || n > 100000)
            return 2;
        return wake(a, b, gap, n);
    }
    fprintf(stderr, "usage: tcpbench serve PORT | rate|rr HOST PORT SECONDS CONC SIZE | idle HOST PORT N HOLD"
                    " | wake CPU_A CPU_B GAP_US N\n");
    return 2;
}
