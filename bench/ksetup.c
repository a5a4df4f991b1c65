/*
 * ksetup: permission set-up latency of an FTP gateway, seen from outside (bench/kernel.sh).
 * Not part of the build or of `meson test`; kernel.sh compiles it into its temp dir.
 *
 *   ksetup pasv|port CLI_NS SRV_NS CONNECT_IP CONNECT_PORT SERVER_PORT N DATA
 *
 * One process plays both ends: a scripted FTP server listening on SERVER_PORT in network
 * namespace SRV_NS, and a client in CLI_NS connecting to CONNECT_IP:CONNECT_PORT (the gateway's
 * published port, or the server itself when the gateway is transparent). Sockets are made in
 * their namespace (setns to /run/netns/NAME and back), so one CLOCK_MONOTONIC times both ends.
 *
 *   pasv: N times: the client sends "PASV"; when it has reached the server, the server takes
 *     t0 and writes "227 Entering Passive Mode (h,h,h,h,p,p)"; t1 is when the client has read
 *     the whole (possibly rewritten) 227 line. An FTP filter forwards the 227 only after its
 *     AllowFutureConnect / BindForClient returned, so t1 - t0 = relay + parse + permission
 *     set-up + rewrite.
 *   port: N times: t0 just before the client writes "PORT h,h,h,h,p,p" (its own data
 *     listener), t1 when the server has read the whole (rewritten) PORT line; the server
 *     answers 200. The filter forwards the PORT only after its BindForClient /
 *     RedirectConnections returned.
 *
 * DATA=1: after each exchange the data connection is made at once, from the address the
 * line named (client -> 227's address; server -> PORT's address), and one byte is carried.
 * That shows the permission really was in place when the line arrived: a connection that
 * found no permission is dropped by the gateway and costs a SYN retransmission (>= 1 s), or
 * fails. Its connect time is reported too. DATA=0 for a relay without the FTP filter (the
 * line names the server's own data port, which nothing forwards).
 *
 * cycle: the whole command/reply round trip as the client sees it (PASV written -> 227 read; PORT
 * written -> 200 read). It includes the direction the latency above leaves out: a gateway whose
 * loop is busy (after the previous data connection, say) delays the command itself.
 *
 * The first WARMUP (5) exchanges are not recorded. Every wait is bounded (SO_RCVTIMEO 3 s,
 * connect 3 s); the whole run stops after 120 s. Output: "key value" lines.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 5
#define WAIT_MS 3000

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "ksetup: %s: %s\n", what, strerror(errno));
    printf("harness_error %s\n", what);
    exit(2);
}

static int self_ns = -1;

/* A socket made in namespace NAME (/run/netns/NAME). */
static int socket_in(const char *ns)
{
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    if (setns(fd, CLONE_NEWNET) != 0)
        die("setns");
    close(fd);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        die("socket");
    if (setns(self_ns, CLONE_NEWNET) != 0)
        die("setns back");
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return s;
}

static struct sockaddr_in sin_of(const char *ip, unsigned port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "ksetup: bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static int listener_in(const char *ns, const char *ip, unsigned port, unsigned *bound)
{
    int s = socket_in(ns), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = sin_of(ip, port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0)
        die("bind");
    if (listen(s, 64) != 0)
        die("listen");
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    if (bound)
        *bound = ntohs(a.sin_port);
    return s;
}

static int accept_within(int lfd, int ms)
{
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return -1;
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (s >= 0) {
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    return s;
}

/* connect, bounded by SO_SNDTIMEO (WAIT_MS) */
static int connect_to(int s, const char *ip, unsigned port)
{
    struct sockaddr_in a = sin_of(ip, port);
    return connect(s, (struct sockaddr *)&a, sizeof a);
}

static int write_all(int fd, const char *p, size_t n)
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

/* One CRLF line (a byte at a time: the line ends the exchange, nothing follows it). */
static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = recv(fd, buf + n, 1, 0);
        if (r != 1)
            return -1;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return (int)n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i < n ? i : n - 1] / 1000.0;
}

/* h,h,h,h,p,p after the first '(' (227) or after the verb (PORT) */
static int parse_hp(const char *s, char ip[32], unsigned *port)
{
    unsigned h[4], p1, p2;
    while (*s && (*s < '0' || *s > '9'))
        s++;
    if (sscanf(s, "%u,%u,%u,%u,%u,%u", &h[0], &h[1], &h[2], &h[3], &p1, &p2) != 6 || p1 > 255 || p2 > 255)
        return -1;
    snprintf(ip, 32, "%u.%u.%u.%u", h[0], h[1], h[2], h[3]);
    *port = p1 * 256 + p2;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 9 || (strcmp(argv[1], "pasv") != 0 && strcmp(argv[1], "port") != 0)) {
        fprintf(stderr, "usage: ksetup pasv|port CLI_NS SRV_NS CONNECT_IP CONNECT_PORT SERVER_PORT N DATA\n");
        return 2;
    }
    int pasv = argv[1][1] == 'a';
    const char *cns = argv[2], *sns = argv[3], *cip = argv[4];
    unsigned cport = (unsigned)atoi(argv[5]), sport = (unsigned)atoi(argv[6]);
    int n = atoi(argv[7]), data = atoi(argv[8]);
    if (n < 1 || n > 100000)
        return 2;
    alarm(120); /* the whole run, whatever happens */
    self_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self_ns < 0)
        die("own namespace");

    unsigned sdata_port = 0, cdata_port = 0;
    int sl = listener_in(sns, "0.0.0.0", sport, NULL);
    int sdl = pasv ? listener_in(sns, "0.0.0.0", 0, &sdata_port) : -1; /* the server's passive port */
    int cdl = pasv ? -1 : listener_in(cns, "0.0.0.0", 0, &cdata_port); /* the client's active port */
    char my_ip[32] = "";

    int c = socket_in(cns);
    if (connect_to(c, cip, cport) != 0)
        die("client connect (control)");
    int s = accept_within(sl, WAIT_MS);
    if (s < 0)
        die("server accept (control)");
    {
        struct sockaddr_in a;
        socklen_t l = sizeof a;
        getsockname(c, (struct sockaddr *)&a, &l);
        inet_ntop(AF_INET, &a.sin_addr, my_ip, sizeof my_ip);
    }
    char line[600];
    if (write_all(s, "220 ksetup\r\n", 12) != 0 || read_line(c, line, sizeof line) < 0 || strncmp(line, "220", 3) != 0)
        die("greeting");

    uint64_t *lat = calloc((size_t)n, sizeof *lat), *dlat = calloc((size_t)n, sizeof *dlat);
    uint64_t *cyc = calloc((size_t)n, sizeof *cyc);
    size_t nl = 0, nd = 0, nc = 0;
    int errors = 0, data_ok = 0, data_fail = 0, slow_data = 0;
    char first_err[200] = "", seen_line[200] = "";
    for (int i = 0; i < n + WARMUP; i++) {
        uint64_t t0, t1, c0 = now_ns(), c1;
        char ip[32];
        unsigned port = 0;
        if (pasv) {
            if (write_all(c, "PASV\r\n", 6) != 0 || read_line(s, line, sizeof line) < 0 || strncmp(line, "PASV", 4) != 0) {
                snprintf(first_err, sizeof first_err, "PASV did not reach the server");
                errors++;
                break;
            }
            char reply[80];
            int rl = snprintf(reply, sizeof reply, "227 Entering Passive Mode (10,99,2,2,%u,%u)\r\n", sdata_port >> 8,
                              sdata_port & 255);
            t0 = now_ns();
            if (write_all(s, reply, (size_t)rl) != 0)
                die("server write");
            if (read_line(c, line, sizeof line) < 0) {
                snprintf(first_err, sizeof first_err, "no reply at the client after the 227");
                errors++;
                break;
            }
            t1 = now_ns();
        } else {
            char cmd[80];
            unsigned h[4];
            sscanf(my_ip, "%u.%u.%u.%u", &h[0], &h[1], &h[2], &h[3]);
            int cl = snprintf(cmd, sizeof cmd, "PORT %u,%u,%u,%u,%u,%u\r\n", h[0], h[1], h[2], h[3], cdata_port >> 8,
                              cdata_port & 255);
            t0 = now_ns();
            if (write_all(c, cmd, (size_t)cl) != 0)
                die("client write");
            if (read_line(s, line, sizeof line) < 0) {
                snprintf(first_err, sizeof first_err, "the PORT never reached the server (refused by the gateway?)");
                /* the gateway may have answered the client itself */
                char r2[200];
                if (read_line(c, r2, sizeof r2) > 0)
                    snprintf(first_err, sizeof first_err, "PORT not forwarded; client got: %.120s", r2);
                errors++;
                break;
            }
            t1 = now_ns();
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (i == WARMUP)
            snprintf(seen_line, sizeof seen_line, "%.150s", line);
        if ((pasv && strncmp(line, "227", 3) != 0) || (!pasv && strncmp(line, "PORT", 4) != 0) ||
            parse_hp(pasv ? line + 3 : line + 4, ip, &port) != 0) {
            if (first_err[0] == '\0')
                snprintf(first_err, sizeof first_err, "unexpected line: %.120s", line);
            errors++;
            if (!pasv) /* answer it anyway, so the filter's queue stays paired */
                write_all(s, "500 ?\r\n", 7), read_line(c, line, sizeof line);
            continue;
        }
        if (!pasv && (write_all(s, "200 PORT ok\r\n", 13) != 0 || read_line(c, line, sizeof line) < 0)) {
            snprintf(first_err, sizeof first_err, "no 200 back at the client");
            errors++;
            break;
        }
        c1 = now_ns(); /* pasv: the 227 is in; port: the 200 is in */
        if (i >= WARMUP) {
            lat[nl++] = t1 - t0;
            cyc[nc++] = c1 - c0;
        }
        if (!data)
            continue;
        /* the data connection, at once */
        uint64_t d0 = now_ns();
        int dc = socket_in(pasv ? cns : sns);
        int ok = 0;
        /* A failure says which step failed, and from which port of the data socket. */
        const char *step = "connect";
        int err = 0;
        if (connect_to(dc, ip, port) == 0) {
            uint64_t d1 = now_ns();
            int da = accept_within(pasv ? sdl : cdl, WAIT_MS);
            char b = 0;
            step = da < 0 ? "accept" : "echo";
            if (da >= 0 && write_all(da, "x", 1) == 0 && recv(dc, &b, 1, 0) == 1 && b == 'x')
                ok = 1;
            err = errno;
            if (da >= 0)
                close(da);
            if (ok && i >= WARMUP) {
                dlat[nd++] = d1 - d0;
                if (d1 - d0 > 500000000u)
                    slow_data++;
            }
        } else {
            err = errno;
        }
        struct sockaddr_in own;
        socklen_t ol = sizeof own;
        if (getsockname(dc, (struct sockaddr *)&own, &ol) != 0)
            own.sin_port = 0;
        close(dc);
        if (i < WARMUP)
            continue;
        if (ok)
            data_ok++;
        else {
            data_fail++;
            if (first_err[0] == '\0')
                snprintf(first_err, sizeof first_err, "data connection %d to %s:%u from port %u failed at %s: %s", i, ip,
                         port, ntohs(own.sin_port), step, err ? strerror(err) : "no data");
        }
    }
    close(c);
    close(s);
    qsort(lat, nl, sizeof *lat, cmp_u64);
    qsort(dlat, nd, sizeof *dlat, cmp_u64);
    qsort(cyc, nc, sizeof *cyc, cmp_u64);
    printf("samples %zu\nerrors %d\np50_us %.1f\np90_us %.1f\np99_us %.1f\nmax_us %.1f\nmin_us %.1f\n", nl, errors,
           pct(lat, nl, 50), pct(lat, nl, 90), pct(lat, nl, 99), pct(lat, nl, 100), pct(lat, nl, 0));
    printf("cycle_p50_us %.1f\ncycle_p99_us %.1f\n", pct(cyc, nc, 50), pct(cyc, nc, 99));
    if (data)
        printf("data_ok %d\ndata_fail %d\ndata_slow %d\ndata_connect_p50_us %.1f\ndata_connect_p99_us %.1f\n", data_ok,
               data_fail, slow_data, pct(dlat, nd, 50), pct(dlat, nd, 99));
    printf("line %s\n", seen_line[0] ? seen_line : "-");
    if (first_err[0])
        printf("first_error %s\n", first_err);
    return 0;
}
