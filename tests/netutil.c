/*
 * fwx tests - real peers on loopback.
 * SPDX-License-Identifier: MIT
 */
#include "netutil.h"
#include "testutil.h"

/* The peers proper, shared with the out-of-tree example that runs the proxy backend's tests
   through the fault-injecting wrapper. */
#include "../examples/fault-backend/peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

void tu_set_timeouts(int fd)
{
    struct timeval tv = {TU_IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int tu_sock_from(const char *ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    tu_set_timeouts(fd);
    ck_assert_int_eq(peer_bind(fd, ip, port), 0);
    return fd;
}

uint16_t tu_bound_port(int fd) { return peer_bound_port(fd); }

int tu_connect_to(int fd, const char *ip, uint16_t port) { return peer_connect(fd, ip, port); }

int tu_write_all(int fd, const void *p, size_t n) { return peer_write_all(fd, p, n); }

ssize_t tu_read_all(int fd, void *buf, size_t cap) { return peer_read_all(fd, buf, cap); }

uint16_t tu_free_port(const char *ip)
{
    int fd = tu_sock_from(ip, 0);
    uint16_t p = tu_bound_port(fd);
    close(fd);
    return p;
}

typedef struct peer {
    pthread_t th;
    atomic_int done;
    void *(*fn)(void *);
    void *arg;
} peer;

static void *peer_main(void *arg)
{
    peer *p = arg;
    p->fn(p->arg);
    atomic_store(&p->done, 1);
    return NULL;
}

static void stop_loop(uv_timer_t *t) { uv_stop(t->loop); }

static void check_done(uv_timer_t *t)
{
    peer *p = t->data;
    if (atomic_load(&p->done))
        uv_stop(t->loop);
}

void tu_run_peer(uv_loop_t *loop, void *(*fn)(void *), void *arg)
{
    peer p = {.fn = fn, .arg = arg};
    atomic_init(&p.done, 0);
    pthread_create(&p.th, NULL, peer_main, &p);
    uv_timer_t t, limit;
    uv_timer_init(loop, &t);
    uv_timer_init(loop, &limit);
    t.data = &p;
    uv_timer_start(&t, check_done, 5, 5);
    uv_timer_start(&limit, stop_loop, 20000, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&limit, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    ck_assert_msg(atomic_load(&p.done), "peer did not finish in 20 s");
    pthread_join(p.th, NULL);
}

static void *echo_main(void *arg)
{
    tu_echo *e = arg;
    peer_echo_serve(e->lfd, &e->conns, TU_IO_TIMEOUT_S);
    return NULL;
}

void tu_echo_start(tu_echo *e, const char *ip)
{
    e->lfd = tu_sock_from(ip, 0);
    ck_assert_int_eq(listen(e->lfd, 16), 0);
    e->port = tu_bound_port(e->lfd);
    atomic_init(&e->conns, 0);
    ck_assert_int_eq(pthread_create(&e->th, NULL, echo_main, e), 0);
}

void tu_echo_stop(tu_echo *e)
{
    shutdown(e->lfd, SHUT_RDWR);
    close(e->lfd);
    pthread_join(e->th, NULL);
}
