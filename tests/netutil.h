/*
 * fwx tests - real peers on loopback: blocking sockets with timeouts, and a peer thread that
 * runs while the test's loop runs the gateway.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_NETUTIL_H
#define FWX_NETUTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* Every blocking read or write of a test peer gives up after this long. */
#define TU_IO_TIMEOUT_S 5

/* Sets the receive and send timeouts and TCP_NODELAY on a TCP socket. */
void tu_set_timeouts(int fd);
/* A TCP socket bound to ip:port (0 for any), with the timeouts set; aborts the test on failure. */
int tu_sock_from(const char *ip, uint16_t port);
uint16_t tu_bound_port(int fd);
int tu_connect_to(int fd, const char *ip, uint16_t port);
/* Writes all of p; 0, or -1 on error. */
int tu_write_all(int fd, const void *p, size_t n);
/* Reads until EOF or cap bytes; the count, or -1 on error or timeout (a reset counts as EOF). */
ssize_t tu_read_all(int fd, void *buf, size_t cap);
/* A port free on ip right now (the kernel's choice). */
uint16_t tu_free_port(const char *ip);
/* Runs fn(arg) in a thread while `loop` runs; returns when fn has returned (bounded: 20 s). */
void tu_run_peer(uv_loop_t *loop, void *(*fn)(void *), void *arg);

/* A TCP echo server on its own thread: accepts connections on ip (port 0: the kernel picks;
   `port` says which) one after another, echoes each until EOF (or TU_IO_TIMEOUT_S of silence)
   and half-closes it. tu_echo_stop() shuts the listener down and joins the thread. */
typedef struct tu_echo {
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_int conns; /* connections accepted so far */
} tu_echo;
void tu_echo_start(tu_echo *e, const char *ip);
void tu_echo_stop(tu_echo *e);

#endif
