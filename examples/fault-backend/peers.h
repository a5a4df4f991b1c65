/*
 * peers.h - the blocking peers of a relay test: whole writes and reads, an echo server's loop,
 * an echo round trip and a one-way transfer to a listening client. Header-only, libc and
 * POSIX only (no fwx, no test framework), so that this out-of-tree example (proxy_faults.c)
 * and fwx's own tests (tests/netutil.c, tests/check_proxy.c) drive the proxy backend with the
 * same peers. Every function takes sockets the caller made (bound, in whatever network
 * namespace, with I/O timeouts set): none of them waits forever on a socket with a timeout.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_EXAMPLE_PEERS_H
#define FWX_EXAMPLE_PEERS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Writes all of p; 0, or -1 on an error (a timeout included). */
static inline int peer_write_all(int fd, const void *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t w = send(fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Reads until EOF or cap bytes: the count, or -1 on an error or a timeout (a reset counts as
   EOF: a relay that gives up resets). */
static inline ssize_t peer_read_all(int fd, void *p, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = recv(fd, (char *)p + got, cap - got, 0);
        if (r == 0)
            break;
        if (r < 0)
            return errno == ECONNRESET ? (ssize_t)got : -1;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* An IPv4 address from text and a port. */
static inline struct sockaddr_in peer_v4(const char *ip, uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return sa;
}

/* Binds fd to ip:port (port 0: the kernel's choice), SO_REUSEADDR set first: bind()'s result. */
static inline int peer_bind(int fd, const char *ip, uint16_t port)
{
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = peer_v4(ip, port);
    return bind(fd, (const struct sockaddr *)&a, sizeof a);
}

/* The port an IPv4 socket is bound to. */
static inline uint16_t peer_bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

/* Connects fd to ip:port: connect()'s result. */
static inline int peer_connect(int fd, const char *ip, uint16_t port)
{
    struct sockaddr_in a = peer_v4(ip, port);
    return connect(fd, (const struct sockaddr *)&a, sizeof a);
}

/* Gives fd receive and send timeouts of s seconds. */
static inline void peer_timeouts(int fd, int s)
{
    struct timeval tv = {s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* An echo server's loop, for its own thread: accepts on the listening socket lfd one
   connection after another (counting them in *conns), echoes each until EOF or timeout_s of
   silence and half-closes it; returns when lfd is shut down. */
static inline void peer_echo_serve(int lfd, atomic_int *conns, int timeout_s)
{
    char buf[65536];
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            return;
        atomic_fetch_add(conns, 1);
        peer_timeouts(c, timeout_s);
        for (;;) {
            ssize_t r = recv(c, buf, sizeof buf, 0);
            if (r <= 0 || peer_write_all(c, buf, (size_t)r) != 0)
                break;
        }
        shutdown(c, SHUT_WR);
        close(c);
    }
}

/* The bytes a peer sends: a pattern that differs per offset and per seed. */
static inline char *peer_pattern(size_t n, unsigned seed)
{
    char *p = malloc(n + 1);
    for (size_t i = 0; p != NULL && i < n; i++)
        p[i] = (char)(i * seed + 7);
    return p;
}

/* On fd, connected to an echo server (through the relay under test): sends n patterned bytes,
   half-closes, reads the echo. 1 when exactly the n bytes came back; *got the count read. A
   send that fails half-way (a refused relay may reset) still reads what came back. */
static inline int peer_echo_roundtrip(int fd, size_t n, size_t *got)
{
    char *out = peer_pattern(n, 131), *in = malloc(n + 1);
    int ok = 0;
    *got = 0;
    if (out != NULL && in != NULL) {
        (void)peer_write_all(fd, out, n);
        shutdown(fd, SHUT_WR); /* half-close: the echo still comes back */
        ssize_t r = peer_read_all(fd, in, n + 1);
        *got = r < 0 ? 0 : (size_t)r;
        ok = r == (ssize_t)n && memcmp(in, out, n) == 0;
    }
    free(out);
    free(in);
    return ok;
}

/* A one-way transfer through a port the relay bound for a client: on `server`, connected to the
   bound port, sends n patterned bytes and half-closes; the relay's connection must arrive on
   the client's listening socket `client_lfd` and carry exactly those bytes. 1 if it did; *got
   the count the client read. */
static inline int peer_send_to_listener(int server, int client_lfd, size_t n, int timeout_s, size_t *got)
{
    char *out = peer_pattern(n, 13), *in = malloc(n + 1);
    int ok = 0;
    *got = 0;
    if (out != NULL && in != NULL && peer_write_all(server, out, n) == 0) {
        shutdown(server, SHUT_WR);
        int c = accept(client_lfd, NULL, NULL);
        if (c >= 0) {
            peer_timeouts(c, timeout_s);
            ssize_t r = peer_read_all(c, in, n + 1);
            *got = r < 0 ? 0 : (size_t)r;
            ok = r == (ssize_t)n && memcmp(in, out, n) == 0;
            close(c);
        }
    }
    free(out);
    free(in);
    return ok;
}

#endif
