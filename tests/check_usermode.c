/*
 * fwx tests - the user-mode data path (lib/backends/usermode): the plain relay by splice(2) and by
 * read/write (small and 16 MiB transfers each way and both ways, half-close, back-pressure with
 * a 64 MiB sender and a server that does not read, peer reset, abort), the data-filter path
 * (an observer, a length-changing modifier, an emulator without a server, a chain of two in
 * priority order, reference counts at each hand-off) and IFWXNetworkSocket (TCP connect and
 * echo, listen and accept, UDP SendTo/Recv, an IP filter that drops a sender).
 * Real sockets on 127.0.0.1 only. The peers are helper threads doing blocking I/O with
 * SO_RCVTIMEO/SO_SNDTIMEO, and every loop run is bounded, so no test can hang.
 * SPDX-License-Identifier: MIT
 */
#include "netutil.h"
#include "testutil.h"
#include "backends/usermode/usermode.h"
#include "core/internal.h"
#include "objects/objects.h"
#include "plugins/test_plugin.h"

#include <dlfcn.h>
#include <stddef.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define PEER_TIMEOUT_S 20
#define RUN_LIMIT_MS 30000

/* ---- loop helpers ------------------------------------------------------------------------- */

typedef bool (*pred_fn)(void *);
typedef struct run_ctl {
    pred_fn pred;
    void *arg;
    void (*sample)(void *);
    uint64_t deadline;
    bool ok;
} run_ctl;

static void run_tick(uv_timer_t *t)
{
    run_ctl *r = t->data;
    if (r->sample != NULL)
        r->sample(r->arg);
    if (r->pred != NULL && r->pred(r->arg)) {
        r->ok = true;
        uv_stop(t->loop);
    } else if (uv_now(t->loop) >= r->deadline) {
        uv_stop(t->loop);
    }
}

/* Runs the loop until pred(arg) holds (checked every millisecond) or ms pass; with pred NULL,
   for ms. sample(arg), if given, runs at each check. Returns whether pred held. */
static bool run_until(uv_loop_t *loop, pred_fn pred, void *arg, uint64_t ms, void (*sample)(void *))
{
    uv_timer_t t;
    run_ctl r = {pred, arg, sample, 0, false};
    uv_update_time(loop);
    r.deadline = uv_now(loop) + ms;
    uv_timer_init(loop, &t);
    t.data = &r;
    uv_timer_start(&t, run_tick, 1, 1);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return r.ok;
}

/* ---- sockets ------------------------------------------------------------------------------ */

static struct sockaddr_in lo4(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void set_timeouts(int fd)
{
    struct timeval tv = {PEER_TIMEOUT_S, 0};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
}

static void set_nonblock(int fd)
{
    ck_assert_int_ne(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), -1);
}

/* Predicates for run_until on a blocking fd, without blocking the loop. */
static bool fd_has_data(void *arg)
{
    char c;
    return recv(*(int *)arg, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}
static bool fd_ended(void *arg)
{
    char c;
    ssize_t n = recv(*(int *)arg, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* A connected pair through a real listening socket on 127.0.0.1:0: *a connected, *b accepted. */
static void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l, 0);
    struct sockaddr_in sa = lo4(0);
    socklen_t len = sizeof sa;
    ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(l, 4), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    *a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(*a, 0);
    ck_assert_int_eq(connect(*a, (struct sockaddr *)&sa, sizeof sa), 0);
    *b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(*b, 0);
    close(l);
}

/* ---- peers: helper threads doing blocking I/O --------------------------------------------- */

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV0 0xcbf29ce484222325ull

typedef struct peer {
    int fd;
    /* sending: tx_text if set, else tx_len random bytes from seed; then shutdown(SHUT_WR) */
    const char *tx_text;
    uint64_t tx_len, seed;
    bool tx_after_eof; /* read to EOF first, then send (a server answering a half-close) */
    bool no_shutdown;  /* leave the write side open after sending */
    bool hold_rx;      /* do not read until gate opens */
    atomic_bool gate;
    atomic_ullong tx_sent;
    uint64_t tx_sum, rx_len, rx_sum;
    char rx[4096];
    size_t rx_kept;
    int tx_err, rx_err;
    pthread_t t_tx, t_rx;
    bool has_tx, has_rx;
} peer;

static void peer_send(peer *p)
{
    p->tx_sum = FNV0;
    if (p->tx_text != NULL) {
        size_t n = strlen(p->tx_text);
        if (n > 0 && send(p->fd, p->tx_text, n, MSG_NOSIGNAL) != (ssize_t)n)
            p->tx_err = errno;
        p->tx_sum = fnv(p->tx_sum, (const uint8_t *)p->tx_text, n);
        atomic_store(&p->tx_sent, n);
    } else {
        static _Thread_local uint8_t chunk[64 * 1024];
        uint64_t x = p->seed | 1, left = p->tx_len;
        while (left > 0 && p->tx_err == 0) {
            size_t n = left < sizeof chunk ? left : sizeof chunk;
            for (size_t i = 0; i < sizeof chunk; i += 8) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                memcpy(chunk + i, &x, 8);
            }
            p->tx_sum = fnv(p->tx_sum, chunk, n);
            for (size_t off = 0; off < n;) {
                ssize_t w = send(p->fd, chunk + off, n - off, MSG_NOSIGNAL);
                if (w <= 0) {
                    p->tx_err = w < 0 ? errno : EIO;
                    break;
                }
                off += (size_t)w;
                atomic_fetch_add(&p->tx_sent, (unsigned long long)w);
            }
            left -= n;
        }
    }
    if (!p->no_shutdown)
        (void)shutdown(p->fd, SHUT_WR);
}

static void peer_recv(peer *p)
{
    static _Thread_local uint8_t buf[64 * 1024];
    p->rx_sum = FNV0;
    for (int i = 0; p->hold_rx && !atomic_load(&p->gate) && i < PEER_TIMEOUT_S * 1000; i++)
        usleep(1000);
    for (;;) {
        ssize_t n = recv(p->fd, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            p->rx_err = errno;
            break;
        }
        if (p->rx_kept < sizeof p->rx - 1) {
            size_t k = sizeof p->rx - 1 - p->rx_kept < (size_t)n ? sizeof p->rx - 1 - p->rx_kept : (size_t)n;
            memcpy(p->rx + p->rx_kept, buf, k);
            p->rx_kept += k;
        }
        p->rx_len += (uint64_t)n;
        p->rx_sum = fnv(p->rx_sum, buf, (size_t)n);
    }
}

static void *tx_main(void *arg)
{
    peer_send(arg);
    return NULL;
}

static void *rx_main(void *arg)
{
    peer *p = arg;
    peer_recv(p);
    if (p->tx_after_eof)
        peer_send(p);
    return NULL;
}

static void peer_start(peer *p, int fd)
{
    p->fd = fd;
    set_timeouts(fd);
    p->has_tx = !p->tx_after_eof && (p->tx_text != NULL || p->tx_len > 0 || !p->no_shutdown);
    if (p->has_tx)
        ck_assert_int_eq(pthread_create(&p->t_tx, NULL, tx_main, p), 0);
    ck_assert_int_eq(pthread_create(&p->t_rx, NULL, rx_main, p), 0);
    p->has_rx = true;
}

static void peer_join(peer *p)
{
    if (p->has_tx)
        pthread_join(p->t_tx, NULL);
    if (p->has_rx)
        pthread_join(p->t_rx, NULL);
    p->has_tx = p->has_rx = false;
    close(p->fd);
    p->fd = -1;
}

/* ---- a relay fixture ---------------------------------------------------------------------- */

typedef struct rfx {
    uv_loop_t loop;
    int client, gw_int, gw_ext, server;
    fwx_pump *p;
    int done_calls;
    fwx_pump *done_p;
    bool spliced_at_end;
    size_t max_seen;
} rfx;

/* New client/gateway and gateway/server pairs (the gateway's ends nonblocking). */
static void rfx_pairs(rfx *f)
{
    tcp_pair(&f->client, &f->gw_int);
    tcp_pair(&f->gw_ext, &f->server);
    set_nonblock(f->gw_int);
    set_nonblock(f->gw_ext);
    f->done_calls = 0;
}

static void rfx_open(rfx *f)
{
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    rfx_pairs(f);
}

static void on_done(fwx_pump *p, void *arg)
{
    rfx *f = arg;
    f->done_calls++;
    f->done_p = p;
    f->spliced_at_end = fwx_pump_spliced(p);
}

static bool is_done(void *arg) { return ((rfx *)arg)->done_calls > 0; }

static void start_relay(rfx *f, IFWXConnection *conn, bool splice, size_t max_buffered)
{
    fwx_pump_options o;
    fwx_pump_options_init(&o);
    o.max_buffered = max_buffered;
    o.no_splice = !splice;
    TU_EXPECT_HR(fwx_pump_start(&f->loop, conn, f->gw_int, f->gw_ext, &o, on_done, f, &f->p), FWX_S_OK);
    ck_assert_ptr_nonnull(f->p);
    ck_assert(fwx_pump_spliced(f->p) == splice);
    ck_assert_int_eq(f->done_calls, 0); /* never from inside start */
}

static void wait_done(rfx *f)
{
    ck_assert_msg(run_until(&f->loop, is_done, f, RUN_LIMIT_MS, NULL), "the pump did not end");
    run_until(&f->loop, NULL, NULL, 5, NULL);
    ck_assert_int_eq(f->done_calls, 1);
    ck_assert_ptr_eq(f->done_p, f->p);
}

/* The peers' exchange through a started relay: both peers run, the pump ends, both are joined. */
static void relay_peers(rfx *f, peer *cl, peer *sv)
{
    peer_start(cl, f->client);
    peer_start(sv, f->server);
    wait_done(f);
    peer_join(cl);
    peer_join(sv);
}

/* Both peers see the end (EOF, not a timeout); their sockets are closed. */
static void expect_both_ended(rfx *f)
{
    set_timeouts(f->client);
    set_timeouts(f->server);
    char c;
    ck_assert_int_eq(recv(f->client, &c, 1, 0), 0);
    ck_assert_int_eq(recv(f->server, &c, 1, 0), 0);
    close(f->client);
    close(f->server);
}

/* ---- plain relay -------------------------------------------------------------------------- */

/* _i: 0 = splice, 1 = read/write. answer_after_eof: the server reads to EOF (the client's
   half-close) before it sends. */
static void relay_transfer_ex(int mode, uint64_t c2s, uint64_t s2c, bool answer_after_eof)
{
    rfx f;
    rfx_open(&f);
    peer cl = {.tx_len = c2s, .seed = 0x1234567u, .no_shutdown = false};
    peer sv = {.tx_len = s2c, .seed = 0x7654321u, .tx_after_eof = answer_after_eof};
    start_relay(&f, NULL, mode == 0, 0);
    relay_peers(&f, &cl, &sv);
    ck_assert_int_eq(cl.tx_err, 0);
    ck_assert_int_eq(sv.tx_err, 0);
    ck_assert_int_eq(cl.rx_err, 0);
    ck_assert_int_eq(sv.rx_err, 0);
    ck_assert_uint_eq(sv.rx_len, c2s);
    ck_assert_uint_eq(cl.rx_len, s2c);
    ck_assert_uint_eq(sv.rx_sum, cl.tx_sum);
    ck_assert_uint_eq(cl.rx_sum, sv.tx_sum);
    ck_assert(f.spliced_at_end == (mode == 0)); /* no fallback happened */
    tu_loop_close_clean(&f.loop);
}

static void relay_transfer(int mode, uint64_t c2s, uint64_t s2c) { relay_transfer_ex(mode, c2s, s2c, false); }

START_TEST(relay_small)
{
    rfx f;
    rfx_open(&f);
    peer cl = {.tx_text = "hello"};
    peer sv = {.tx_text = "world!"};
    start_relay(&f, NULL, _i == 0, 0);
    relay_peers(&f, &cl, &sv);
    ck_assert_str_eq(sv.rx, "hello");
    ck_assert_str_eq(cl.rx, "world!");
    tu_loop_close_clean(&f.loop);
}
END_TEST

START_TEST(relay_large_c2s) { relay_transfer(_i, 16 * MiB, 0); }
END_TEST

START_TEST(relay_large_s2c) { relay_transfer(_i, 0, 16 * MiB); }
END_TEST

START_TEST(relay_large_both) { relay_transfer(_i, 16 * MiB, 16 * MiB); }
END_TEST

/* Half-close after the direction went bulk (splice): the client sends 8 MiB and shuts down
   writing; the server gets every byte and EOF, and only then answers 1 MiB, which reaches the
   client in full. */
START_TEST(relay_half_close_after_splice) { relay_transfer_ex(_i, 8 * MiB, 1 * MiB, true); }
END_TEST

/* The client shuts down writing; the server reads to EOF, then answers; then both end. */
START_TEST(relay_half_close)
{
    rfx f;
    rfx_open(&f);
    peer cl = {.tx_text = "request"};
    peer sv = {.tx_text = "reply after your eof", .tx_after_eof = true};
    start_relay(&f, NULL, _i == 0, 0);
    relay_peers(&f, &cl, &sv);
    ck_assert_str_eq(sv.rx, "request");
    ck_assert_str_eq(cl.rx, "reply after your eof");
    ck_assert_int_eq(cl.rx_err, 0);
    tu_loop_close_clean(&f.loop);
}
END_TEST

typedef struct bp {
    rfx *f;
    peer *sv;
} bp;

static void bp_sample(void *arg)
{
    rfx *f = ((bp *)arg)->f;
    if (f->done_calls == 0) {
        size_t n = fwx_pump_buffered(f->p);
        if (n > f->max_seen)
            f->max_seen = n;
    }
}

static bool bp_done(void *arg) { return ((bp *)arg)->f->done_calls > 0; }

/* The server does not read while the client sends 64 MiB: what the pump holds stays bounded
   and the client is held back; then the server reads it all and the checksum matches. */
START_TEST(relay_backpressure)
{
    const size_t max = 128 * 1024, chunk = 64 * 1024;
    const uint64_t total = 64ull * MiB;
    rfx f;
    rfx_open(&f);
    peer cl = {.tx_len = total, .seed = 99};
    peer sv = {.hold_rx = true};
    atomic_init(&sv.gate, false);
    start_relay(&f, NULL, _i == 0, max);
    peer_start(&cl, f.client);
    peer_start(&sv, f.server);
    bp b = {&f, &sv};
    /* A phase with the server not reading (its length is not asserted on). */
    run_until(&f.loop, NULL, &b, 300, bp_sample);
    ck_assert_int_eq(f.done_calls, 0);
    uint64_t sent = atomic_load(&cl.tx_sent);
    ck_assert_msg(sent < total, "the client sent everything although nobody read (%llu)", (unsigned long long)sent);
    ck_assert_uint_gt(f.max_seen, 0);
    atomic_store(&sv.gate, true);
    ck_assert(run_until(&f.loop, bp_done, &b, RUN_LIMIT_MS, bp_sample));
    ck_assert_msg(f.max_seen <= max + chunk, "the pump held %zu bytes", f.max_seen);
    run_until(&f.loop, NULL, NULL, 5, NULL);
    ck_assert_int_eq(f.done_calls, 1);
    peer_join(&cl);
    peer_join(&sv);
    ck_assert_int_eq(cl.tx_err, 0);
    ck_assert_uint_eq(sv.rx_len, total);
    ck_assert_uint_eq(sv.rx_sum, cl.tx_sum);
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* The client resets its connection: the pump ends, done() once, the server sees the end. */
START_TEST(relay_peer_reset)
{
    rfx f;
    rfx_open(&f);
    start_relay(&f, NULL, _i == 0, 0);
    ck_assert_int_eq(send(f.client, "x", 1, 0), 1);
    run_until(&f.loop, NULL, NULL, 20, NULL);
    struct linger lg = {1, 0};
    ck_assert_int_eq(setsockopt(f.client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(f.client);
    wait_done(&f);
    run_until(&f.loop, NULL, NULL, 20, NULL);
    ck_assert_int_eq(f.done_calls, 1);
    set_timeouts(f.server);
    char buf[16];
    ssize_t n = recv(f.server, buf, sizeof buf, 0);
    if (n == 1)
        n = recv(f.server, buf, sizeof buf, 0);
    ck_assert_int_le(n, 0); /* EOF or reset, never a hang (the timeout would give -1 EAGAIN) */
    ck_assert_int_ne(n < 0 ? errno : 0, EAGAIN);
    close(f.server);
    tu_loop_close_clean(&f.loop);
}
END_TEST

START_TEST(relay_abort)
{
    rfx f;
    rfx_open(&f);
    start_relay(&f, NULL, _i == 0, 0);
    run_until(&f.loop, NULL, NULL, 10, NULL);
    fwx_pump_abort(f.p);
    fwx_pump_abort(f.p); /* harmless while ending */
    ck_assert_int_eq(f.done_calls, 0);
    wait_done(&f);
    expect_both_ended(&f);
    tu_loop_close_clean(&f.loop);
}
END_TEST

START_TEST(relay_bad_args)
{
    uv_loop_t loop;
    fwx_pump *p = (fwx_pump *)(uintptr_t)1;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    TU_EXPECT_HR(fwx_pump_start(&loop, NULL, -1, -1, NULL, on_done, NULL, &p), FWX_E_INVALIDARG);
    ck_assert_ptr_null(p);
    int a, b;
    tcp_pair(&a, &b);
    /* emulated (external_fd -1) without a data filter */
    TU_EXPECT_HR(fwx_pump_start(&loop, NULL, b, -1, NULL, on_done, NULL, &p), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_pump_start(&loop, NULL, b, a, NULL, NULL, NULL, &p), FWX_E_POINTER);
    close(a);
    close(b);
    tu_loop_close_clean(&loop);
}
END_TEST

/* ---- the relay's costs: small vs bulk, the pipe pool ---------------------------------------- */

/* Pipes this process holds open (each pipe is two fds). */
/* Descriptors of this process whose /proc link starts with `prefix`. */
static int count_fds(const char *prefix)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    char path[300], link[64];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, link, sizeof link - 1);
        if (k > 0) {
            link[k] = '\0';
            n += strncmp(link, prefix, strlen(prefix)) == 0;
        }
    }
    closedir(d);
    return n / 2;
}

static int count_pipes(void) { return count_fds("pipe:"); }

typedef struct pipe_watch {
    rfx *f;
    int max_pipes;
} pipe_watch;

static void pipe_sample(void *arg)
{
    pipe_watch *w = arg;
    int n = count_pipes();
    if (n > w->max_pipes)
        w->max_pipes = n;
}

static bool pipe_watch_done(void *arg) { return ((pipe_watch *)arg)->f->done_calls > 0; }

/* A small exchange goes by recv/send: the splice relay never takes a pipe for it. */
START_TEST(relay_small_takes_no_pipe)
{
    rfx f;
    rfx_open(&f);
    int base = count_pipes();
    peer cl = {.tx_text = "a small request"};
    peer sv = {.tx_text = "a small reply", .tx_after_eof = true};
    start_relay(&f, NULL, true, 0);
    peer_start(&cl, f.client);
    peer_start(&sv, f.server);
    pipe_watch w = {&f, base};
    ck_assert(run_until(&f.loop, pipe_watch_done, &w, RUN_LIMIT_MS, pipe_sample));
    peer_join(&cl);
    peer_join(&sv);
    ck_assert_str_eq(sv.rx, "a small request");
    ck_assert_str_eq(cl.rx, "a small reply");
    ck_assert_int_eq(w.max_pipes, base);
    run_until(&f.loop, NULL, NULL, 20, NULL); /* the loop's relay closes after its last pump */
    ck_assert_int_eq(count_pipes(), base);   /* and its pool with it */
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* A bulk transfer moves to splice: while the server does not read, the pump holds the bytes
   in a pipe (so one exists); when it ends, and the loop's relay closes, no pipe is left. */
START_TEST(relay_bulk_takes_a_pipe)
{
    /* More than the kernel's socket buffers can take while the server holds back (tcp_rmem's
       maximum is 32 MiB on Debian 12, tcp_wmem's 4 MiB): with 4 MiB, the server's receive buffer
       could grow to hold it all, and the relay end before the pipe was sampled. */
    const uint64_t total = 64 * MiB;
    rfx f;
    rfx_open(&f);
    int base = count_pipes();
    peer cl = {.tx_len = total, .seed = 42};
    peer sv = {.hold_rx = true};
    atomic_init(&sv.gate, false);
    start_relay(&f, NULL, true, 0);
    peer_start(&cl, f.client);
    peer_start(&sv, f.server);
    pipe_watch w = {&f, base};
    run_until(&f.loop, NULL, &w, 300, pipe_sample); /* the server holds back: the pump fills */
    ck_assert_int_eq(f.done_calls, 0);
    ck_assert_int_eq(w.max_pipes, base + 1);        /* one direction is bulk: one pipe */
    ck_assert_uint_gt(fwx_pump_buffered(f.p), 0);
    atomic_store(&sv.gate, true);
    ck_assert(run_until(&f.loop, pipe_watch_done, &w, RUN_LIMIT_MS, pipe_sample));
    peer_join(&cl);
    peer_join(&sv);
    ck_assert_uint_eq(sv.rx_len, total);
    ck_assert_uint_eq(sv.rx_sum, cl.tx_sum);
    ck_assert(f.spliced_at_end);
    ck_assert_int_eq(w.max_pipes, base + 1);
    run_until(&f.loop, NULL, NULL, 20, NULL); /* the loop's relay closes after its last pump */
    ck_assert_int_eq(count_pipes(), base);   /* and its pool with it */
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* One bulk relay on f (new socket pairs after round 0): `total` bytes client -> server, a short
   reply back; both checked. */
static void bulk_round(rfx *f, int round, uint64_t total, uint64_t seed)
{
    if (round > 0)
        rfx_pairs(f);
    peer cl = {.tx_len = total, .seed = seed + (uint64_t)round};
    peer sv = {.tx_text = "done", .tx_after_eof = true};
    start_relay(f, NULL, true, 0);
    relay_peers(f, &cl, &sv);
    ck_assert_uint_eq(sv.rx_len, total);
    ck_assert_uint_eq(sv.rx_sum, cl.tx_sum);
    ck_assert_str_eq(cl.rx, "done");
}

/* Consecutive bulk relays on one loop take the pipe the first gave back to the pool: the
   process holds no more pipes after the second than after the first, and none when the last
   relay of the loop has ended. */
START_TEST(relay_pipe_pool_reuse)
{
    const uint64_t total = 2 * MiB;
    rfx f;
    rfx_open(&f);
    int base = count_pipes();
    /* A relay kept open and idle for the whole test keeps the loop's relay (and pool) alive. */
    rfx holder = {0};
    rfx_pairs(&holder);
    fwx_pump *hp = NULL;
    TU_EXPECT_HR(fwx_pump_start(&f.loop, NULL, holder.gw_int, holder.gw_ext, NULL, on_done, &holder, &hp), FWX_S_OK);
    int after[2];
    for (int round = 0; round < 2; round++) {
        bulk_round(&f, round, total, 7u);
        after[round] = count_pipes();
    }
    ck_assert_int_gt(after[0], base);     /* the first bulk relay made a pipe, kept in the pool */
    ck_assert_int_eq(after[1], after[0]); /* the second took it again instead of a new one */
    fwx_pump_abort(hp);
    ck_assert(run_until(&f.loop, is_done, &holder, RUN_LIMIT_MS, NULL));
    close(holder.client);
    close(holder.server);
    run_until(&f.loop, NULL, NULL, 20, NULL); /* the loop's relay closes after its last pump */
    ck_assert_int_eq(count_pipes(), base);   /* and its pool with it */
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* fwx_pump_reactor_hold keeps the loop's relay reactor (its epoll set) between relays, closes
   its pooled pipes while no relay is left, and lets it go at the last release. */
START_TEST(relay_reactor_hold)
{
    rfx f;
    rfx_open(&f);
    int pipes0 = count_pipes(), ep0 = count_fds("anon_inode:[eventpoll]");
    ck_assert_int_eq(fwx_pump_reactor_hold(NULL), UV_EINVAL);
    fwx_pump_reactor_release(NULL);    /* nothing held: nothing happens */
    fwx_pump_reactor_release(&f.loop);
    ck_assert_int_eq(fwx_pump_reactor_hold(&f.loop), 0);
    ck_assert_int_eq(count_fds("anon_inode:[eventpoll]"), ep0 + 1);
    for (int round = 0; round < 2; round++) {
        bulk_round(&f, round, 2 * MiB, 11u);
        run_until(&f.loop, NULL, NULL, 20, NULL);
        /* the relay ended: the reactor stays (held), its pooled pipe does not */
        ck_assert_int_eq(count_fds("anon_inode:[eventpoll]"), ep0 + 1);
        ck_assert_int_eq(count_pipes(), pipes0);
    }
    fwx_pump_reactor_release(&f.loop);
    run_until(&f.loop, NULL, NULL, 20, NULL); /* the reactor closes from its idle callback */
    ck_assert_int_eq(count_fds("anon_inode:[eventpoll]"), ep0);
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* ---- a core connection -------------------------------------------------------------------- */

typedef struct cfx {
    fwx_firewall *fw;
    IFWXSession *s;
    IFWXConnection *c;
} cfx;

static void cfx_open(cfx *k, uv_loop_t *loop)
{
    memset(k, 0, sizeof *k);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.log_level = FWX_LOG_ERROR;
    TU_EXPECT_HR(fwx_firewall_new(loop, &o, &k->fw), FWX_S_OK);
    k->s = tu_session_open(k->fw, fwxSourceNAT, "10.0.0.8", NULL);
    struct sockaddr_storage pe = tu_addr("198.51.100.7:21");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(pe), tu_len(&pe), NULL, 0, NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(k->s, &cp, &k->c), FWX_S_OK);
}

static void cfx_close(cfx *k)
{
    if (k->c != NULL)
        fwx_connection_close(k->c);
    fwx_session_close(k->s);
    IFWXSession_Release(k->s);
    fwx_firewall_close(k->fw, NULL, NULL);
}

/* A relay that counts bytes into a connection without filters. */
START_TEST(relay_counts_bytes)
{
    rfx f;
    cfx k;
    rfx_open(&f);
    cfx_open(&k, &f.loop);
    TU_EXPECT_REF(k.c, 2); /* ours and the session's */
    peer cl = {.tx_len = 100000, .seed = 5};
    peer sv = {.tx_len = 7777, .seed = 6};
    start_relay(&f, k.c, _i == 0, 0);
    TU_EXPECT_REF(k.c, 3); /* the pump's */
    relay_peers(&f, &cl, &sv);
    TU_EXPECT_REF(k.c, 2);
    ck_assert_uint_eq(fwx__conn_from(k.c)->bytes_in, 100000);
    ck_assert_uint_eq(fwx__conn_from(k.c)->bytes_out, 7777);
    cfx_close(&k);
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* ---- test data filters -------------------------------------------------------------------- */

enum { F_OBSERVE, F_MODIFY, F_EMULATE, F_MAP, F_MANUAL /* the test drives its sockets */ };
enum { UD_RECV = 1, UD_SEND = 2 };

typedef struct tfilter tfilter;
typedef struct tdir {
    IFWXIOCompletion iface;
    tfilter *f;
    int d; /* 0: reads the internal socket (client to server), 1: the external */
} tdir;

static int order_c2s[8], n_c2s, order_s2c[8], n_s2c;

struct tfilter {
    IFWXDataFilter iface;
    fwx_refcount refs;
    int kind, id;
    char map_from, map_to;
    fwx_result setsockets_hr;
    IFWXSocket *s[2];
    IFWXConnection *conn;
    IUnknown *ctx;
    tdir dirs[2];
    bool eof[2], closed, in_call;
    uint64_t seen[2];
    int setsockets_calls, detach_calls, reentrant, failures;
    fwx_result second_recv_hr, ro_setsize_hr;
    bool checked_ro;
    char line[1024];
    size_t line_len;
};

static void tf_destroy(tfilter *f) { free(f); }

/* tf_impl, tf_QueryInterface, tf_AddRef, tf_Release */
FWX_IUNKNOWN_IMPL(tf, IFWXDataFilter, tfilter, iface, refs, tf_destroy, &IID_IFWXDataFilter)

static void tf_close_all(tfilter *f) { tu_sockets_close(f->s, &f->closed); }

static fwx_result tf_recv(tfilter *f, int d)
{
    f->in_call = true;
    fwx_result hr = IFWXSocket_Recv(f->s[d], NULL, &f->dirs[d].iface, UD_RECV);
    f->in_call = false;
    return hr;
}

static fwx_result tf_send(tfilter *f, int d, const uint8_t *p, size_t n, IFWXIOCompletion *cpl)
{
    IFWXIOBuffer *b;
    fwx_result hr = fwx__iobuffer_new((uint32_t)(n > 0 ? n : 1), &b);
    if (FWX_FAILED(hr))
        return hr;
    IFWXIOBuffer_Append(b, p, (uint32_t)n);
    f->in_call = true;
    hr = IFWXSocket_Send(f->s[d], b, cpl, UD_SEND);
    f->in_call = false;
    IFWXIOBuffer_Release(b);
    return hr;
}

static void tf_log_order(tfilter *f, int d)
{
    if (f->seen[d] != 0)
        return;
    if (d == 0 && n_c2s < 8)
        order_c2s[n_c2s++] = f->id;
    if (d == 1 && n_s2c < 8)
        order_s2c[n_s2c++] = f->id;
}

static void tf_emulate(tfilter *f, const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (f->line_len < sizeof f->line - 1)
            f->line[f->line_len++] = (char)p[i];
        if (p[i] == '\n') {
            char out[1100];
            f->line[f->line_len] = 0;
            int k = snprintf(out, sizeof out, "echo: %s", f->line);
            f->line_len = 0;
            if (FWX_FAILED(tf_send(f, 0, (uint8_t *)out, (size_t)k, &f->dirs[1].iface)))
                f->failures++;
        }
    }
}

static fwx_result tf_CompleteAsyncIO(IFWXIOCompletion *This, int32_t ok, int32_t err, IFWXIOBuffer *buf, uintptr_t ud,
                                     const struct sockaddr *a, uint32_t al)
{
    (void)err;
    (void)a;
    (void)al;
    tdir *td = fwx__container_of(This, tdir, iface);
    tfilter *f = td->f;
    int d = td->d;
    if (f->in_call)
        f->reentrant++;
    if (f->closed)
        return FWX_S_OK;
    if (!ok) {
        f->failures++;
        tf_close_all(f);
        return FWX_S_OK;
    }
    if (f->kind == F_EMULATE && ud == UD_SEND)
        return FWX_S_OK; /* an answer went out */
    if (ud == UD_SEND) {
        if (FWX_FAILED(tf_recv(f, d)))
            tf_close_all(f);
        return FWX_S_OK;
    }
    uint8_t *p;
    uint32_t n;
    IFWXIOBuffer_GetBufferAndSize(buf, &p, &n);
    if (!f->checked_ro) {
        f->checked_ro = true;
        f->ro_setsize_hr = IFWXIOBuffer_SetDataSize(buf, 0); /* a Recv(NULL) buffer is read-only */
    }
    if (n == 0) {
        f->eof[d] = true;
        if (f->kind == F_EMULATE) {
            IFWXSocket_Shutdown(f->s[0], SHUT_WR);
            return FWX_S_OK;
        }
        IFWXSocket_Shutdown(f->s[1 - d], SHUT_WR);
        if (f->eof[0] && f->eof[1])
            tf_close_all(f);
        return FWX_S_OK;
    }
    tf_log_order(f, d);
    f->seen[d] += n;
    if (f->kind == F_EMULATE) {
        tf_emulate(f, p, n);
        if (FWX_FAILED(tf_recv(f, 0)))
            tf_close_all(f);
        return FWX_S_OK;
    }
    uint8_t *out = malloc(2 * (size_t)n);
    size_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (d == 0 && f->kind == F_MODIFY && ch == 'a')
            out[m++] = 'a';
        if (f->kind == F_MAP && ch == (uint8_t)f->map_from)
            ch = (uint8_t)f->map_to;
        out[m++] = ch;
    }
    if (FWX_FAILED(tf_send(f, 1 - d, out, m, &f->dirs[d].iface)))
        tf_close_all(f);
    free(out);
    return FWX_S_OK;
}

/* The completions live inside the filter and share its count: tc_vtbl, tc_init, ... */
TU_DIR_COMPLETIONS(tc, tdir, tfilter, tf_AddRef, tf_Release, tf_CompleteAsyncIO)

static fwx_result tf_SetSockets(IFWXDataFilter *This, IFWXSocket *in, IFWXSocket *ex, IFWXConnection *conn, IUnknown *ctx)
{
    tfilter *f = tf_impl(This);
    f->setsockets_calls++;
    if (FWX_FAILED(f->setsockets_hr))
        return f->setsockets_hr;
    tu_sockets_take(f->s, in, ex);
    f->conn = conn;
    IFWXConnection_AddRef(conn);
    f->ctx = ctx;
    if (ctx != NULL)
        IUnknown_AddRef(ctx);
    if (f->kind == F_MANUAL)
        return FWX_S_OK;
    if (FWX_FAILED(tf_recv(f, 0)))
        f->failures++;
    /* one pending Recv per socket */
    f->in_call = true;
    f->second_recv_hr = IFWXSocket_Recv(in, NULL, &f->dirs[0].iface, UD_RECV);
    f->in_call = false;
    if (ex != NULL && FWX_FAILED(tf_recv(f, 1)))
        f->failures++;
    return FWX_S_OK;
}

static fwx_result tf_Detach(IFWXDataFilter *This)
{
    tfilter *f = tf_impl(This);
    f->detach_calls++;
    tf_close_all(f);
    tu_sockets_release(f->s, 0);
    if (f->conn != NULL)
        IFWXConnection_Release(f->conn);
    f->conn = NULL;
    if (f->ctx != NULL)
        IUnknown_Release(f->ctx);
    f->ctx = NULL;
    return FWX_S_OK;
}

static const IFWXDataFilterVtbl tf_vtbl = {tf_QueryInterface, tf_AddRef, tf_Release, tf_SetSockets, tf_Detach};

static tfilter *tf_new(int kind, int id)
{
    tfilter *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->iface.lpVtbl = &tf_vtbl;
    fwx_refcount_init(&f->refs);
    f->kind = kind;
    f->id = id;
    tc_init(f);
    return f;
}

/* The relay fixture, a core connection on its loop and a test filter of `kind` (tf_new), not
   attached yet. */
static tfilter *filter_open(rfx *f, cfx *k, int kind, int id)
{
    rfx_open(f);
    cfx_open(k, &f->loop);
    return tf_new(kind, id);
}

/* Attaches t to k's connection in class dfpc (asserts FWX_S_OK). */
static void attach(cfx *k, tfilter *t, FwxDataFilterPriorityClass dfpc)
{
    TU_EXPECT_HR(fwx__conn_attach_df(fwx__conn_from(k->c), &t->iface, dfpc, NULL), FWX_S_OK);
}

/* Undoes filter_open: the connection closed, the filter released, the loop closed clean. */
static void filter_done(rfx *f, cfx *k, tfilter *t)
{
    fwx_connection_close(k->c);
    k->c = NULL;
    IFWXDataFilter_Release(&t->iface);
    cfx_close(k);
    tu_loop_close_clean(&f->loop);
}

/* ---- the data-filter path ----------------------------------------------------------------- */

/* Observer: bytes pass unchanged both ways (1 MiB each), counted by the filter and the
   connection; reference counts of the sockets and the connection at each hand-off. */
START_TEST(filter_observer)
{
    rfx f;
    cfx k;
    tfilter *t = filter_open(&f, &k, F_OBSERVE, 1);
    attach(&k, t, fwx_dfpc_Middle);
    TU_EXPECT_REF(&t->iface, 2);
    TU_EXPECT_REF(k.c, 2);
    peer cl = {.tx_len = MiB, .seed = 11};
    peer sv = {.tx_len = MiB, .seed = 12};
    start_relay(&f, k.c, false, 0);
    ck_assert_int_eq(t->setsockets_calls, 1);
    TU_EXPECT_REF(k.c, 4); /* + the pump's + the filter's */
    ck_assert_ptr_nonnull(t->s[0]);
    ck_assert_ptr_nonnull(t->s[1]);
    TU_EXPECT_REF(t->s[0], 2); /* the pump's and the filter's */
    TU_EXPECT_REF(t->s[1], 2);
    TU_EXPECT_HR(t->second_recv_hr, FWX_E_INVALIDARG);
    void *q = NULL;
    TU_EXPECT_HR(IFWXSocket_QueryInterface(t->s[0], &IID_IFWXSocket, &q), FWX_S_OK);
    ck_assert_ptr_eq(q, t->s[0]);
    IFWXSocket_Release(t->s[0]);
    TU_EXPECT_HR(IFWXSocket_QueryInterface(t->s[0], &IID_IFWXNetworkSocket, &q), FWX_E_NOINTERFACE);
    ck_assert_ptr_null(q);
    relay_peers(&f, &cl, &sv);
    ck_assert_uint_eq(sv.rx_len, MiB);
    ck_assert_uint_eq(cl.rx_len, MiB);
    ck_assert_uint_eq(sv.rx_sum, cl.tx_sum);
    ck_assert_uint_eq(cl.rx_sum, sv.tx_sum);
    ck_assert_uint_eq(t->seen[0], MiB);
    ck_assert_uint_eq(t->seen[1], MiB);
    ck_assert_uint_eq(fwx__conn_from(k.c)->bytes_in, MiB);
    ck_assert_uint_eq(fwx__conn_from(k.c)->bytes_out, MiB);
    ck_assert_int_eq(t->reentrant, 0);
    ck_assert_int_eq(t->failures, 0);
    TU_EXPECT_HR(t->ro_setsize_hr, FWX_E_NOT_SUPPORTED);
    /* The pump is gone: its sockets are the filter's alone, dead, and the filter stays attached. */
    TU_EXPECT_REF(t->s[0], 1);
    TU_EXPECT_REF(t->s[1], 1);
    TU_EXPECT_REF(k.c, 3);
    IFWXIOBuffer *b;
    TU_EXPECT_HR(fwx__iobuffer_new(4, &b), FWX_S_OK);
    TU_EXPECT_HR(IFWXSocket_Send(t->s[1], b, NULL, 0), FWX_E_TERMINATING);
    TU_EXPECT_HR(IFWXSocket_Recv(t->s[1], b, &t->dirs[1].iface, 0), FWX_E_TERMINATING);
    TU_EXPECT_HR(IFWXSocket_Close(t->s[1]), FWX_S_OK);
    TU_EXPECT_REF(b, 1);
    IFWXIOBuffer_Release(b);
    ck_assert_int_eq(t->detach_calls, 0);
    fwx_connection_close(k.c); /* the core detaches the filter */
    k.c = NULL;
    ck_assert_int_eq(t->detach_calls, 1);
    TU_EXPECT_REF(&t->iface, 1);
    IFWXDataFilter_Release(&t->iface);
    cfx_close(&k);
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* Modifier: every 'a' from the client becomes "aa"; the server sees the longer stream, the
   connection counts what each peer sent. */
START_TEST(filter_modifier)
{
    rfx f;
    cfx k;
    tfilter *t = filter_open(&f, &k, F_MODIFY, 1);
    attach(&k, t, fwx_dfpc_Middle);
    peer cl = {.tx_text = "banana, a cat and an apple"};
    peer sv = {.tx_text = "ok a"};
    start_relay(&f, k.c, false, 0); /* never spliced: the filter path */
    relay_peers(&f, &cl, &sv);
    ck_assert_str_eq(sv.rx, "baanaanaa, aa caat aand aan aapple");
    ck_assert_str_eq(cl.rx, "ok a");
    ck_assert_uint_eq(fwx__conn_from(k.c)->bytes_in, strlen("banana, a cat and an apple"));
    ck_assert_uint_eq(fwx__conn_from(k.c)->bytes_out, strlen("ok a"));
    ck_assert_uint_eq(t->seen[0], strlen("banana, a cat and an apple"));
    ck_assert_int_eq(t->reentrant, 0);
    filter_done(&f, &k, t);
}
END_TEST

/* An older caller's smaller fwx_pump_options: what its struct_size does not cover keeps its
   default (max_buffered 1 would otherwise make a one-byte ring). */
START_TEST(relay_old_options)
{
    rfx f;
    rfx_open(&f);
    fwx_pump_options o;
    memset(&o, 0xff, sizeof o);
    o.struct_size = (uint32_t)offsetof(fwx_pump_options, max_buffered); /* 1.1's first field only */
    o.no_splice = 1;
    o.max_buffered = 1;
    TU_EXPECT_HR(fwx_pump_start(&f.loop, NULL, f.gw_int, f.gw_ext, &o, on_done, &f, &f.p), FWX_S_OK);
    ck_assert_int_eq(fwx_pump_spliced(f.p), 0);
    peer cl = {.tx_text = "hello"};
    peer sv = {.tx_text = "world!"};
    peer_start(&cl, f.client);
    peer_start(&sv, f.server);
    /* the default 256 KiB ring takes the whole greeting in one read */
    while (f.done_calls == 0 && fwx_pump_buffered(f.p) == 0 && uv_run(&f.loop, UV_RUN_ONCE) != 0) {
    }
    wait_done(&f);
    peer_join(&cl);
    peer_join(&sv);
    ck_assert_str_eq(sv.rx, "hello");
    ck_assert_str_eq(cl.rx, "world!");
    tu_loop_close_clean(&f.loop);
}
END_TEST

static void count_call(void *arg) { (*(int *)arg)++; }

static void nested_call(void *arg)
{
    cfx *k = arg;
    /* during the call the core takes the connection as the one its filters work for */
    int n = 0;
    fwx_connection_data_call(k->c, count_call, &n);
    ck_assert_int_eq(n, 1);
}

/* The chain as a backend outside libfwx sees it: fwx/pump.h and the host.h accessors. */
START_TEST(public_chain)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    cfx k;
    cfx_open(&k, &loop);
    ck_assert_uint_ne(fwx_connection_id(k.c), 0);
    ck_assert_uint_eq(fwx_connection_id(NULL), 0);
    ck_assert_ptr_eq(fwx_connection_firewall(k.c), k.fw);
    ck_assert_ptr_null(fwx_connection_firewall(NULL));
    ck_assert_uint_eq(fwx_firewall_timeout_ms(k.fw), 60000);
    ck_assert_int_eq(fwx_firewall_host_relay(k.fw), 0);
    TU_EXPECT_HR(fwx_firewall_set_host_relay(k.fw, 1), FWX_S_OK);
    ck_assert_int_eq(fwx_firewall_host_relay(k.fw), 1);
    const char *name = "x";
    fwx_guid g = {{0}};
    ck_assert_uint_eq(fwx_firewall_protocol_filters(k.fw, &g, &name), 0); /* no policy */
    ck_assert_ptr_null(name);
    ck_assert_uint_eq(fwx_connection_buffer_size(k.c), 2048); /* TCP's default */
    TU_EXPECT_HR(IFWXConnection_SetBufferSize(k.c, 100), FWX_S_OK);
    ck_assert_uint_eq(fwx_connection_buffer_size(k.c), 100);
    ck_assert_uint_eq(fwx_connection_buffer_size(NULL), 0);

    /* two filters: one for every flow, one only for another destination */
    tfilter *a = tf_new(F_OBSERVE, 1), *b = tf_new(F_OBSERVE, 2);
    struct sockaddr_storage other = tu_addr("198.51.100.9:21"), same = tu_addr("198.51.100.7:21");
    attach(&k, a, fwx_dfpc_Middle);
    TU_EXPECT_HR(fwx__conn_attach_df_to(fwx__conn_from(k.c), &b->iface, fwx_dfpc_Middle, NULL, &other), FWX_S_OK);
    ck_assert_uint_eq(fwx_connection_data_filters(k.c), 2);
    ck_assert_int_eq(fwx_connection_data_filter_applies(k.c, 0), 1);
    ck_assert_int_eq(fwx_connection_data_filter_applies(k.c, 1), 0);
    ck_assert_int_eq(fwx_connection_data_filter_applies(k.c, 2), 0);
    ck_assert_int_eq(fwx_connection_data_filter_applies(NULL, 0), 0);
    tfilter *c = tf_new(F_OBSERVE, 3);
    TU_EXPECT_HR(fwx__conn_attach_df_to(fwx__conn_from(k.c), &c->iface, fwx_dfpc_Middle, NULL, &same), FWX_S_OK);
    ck_assert_int_eq(fwx_connection_data_filter_applies(k.c, 2), 1);

    /* SetSockets through the core, with its refusals */
    IFWXSocket never_called = {NULL}; /* refused before any socket is touched */
    TU_EXPECT_HR(fwx_connection_data_filter_set_sockets(NULL, 0, &never_called, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_connection_data_filter_set_sockets(k.c, 0, NULL, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_connection_data_filter_set_sockets(k.c, 3, &never_called, NULL), FWX_E_INVALIDARG);
    ck_assert_int_eq(a->setsockets_calls + b->setsockets_calls + c->setsockets_calls, 0);

    /* the call back into the filters runs its function, nested too, and plainly without one */
    int n = 0;
    fwx_connection_data_call(NULL, count_call, &n);
    fwx_connection_data_call(k.c, count_call, &n);
    ck_assert_int_eq(n, 2);
    fwx_connection_data_call(k.c, nested_call, &k);
    fwx_connection_data_call(k.c, NULL, NULL); /* harmless */

    /* dropped datagrams count into the firewall's counter */
    uint64_t before = fwx_firewall_datagrams_dropped(k.fw);
    fwx_connection_count_dropped_datagrams(k.c, 3);
    ck_assert_uint_eq(fwx_firewall_datagrams_dropped(k.fw), before + 3);

    /* a receive buffer of the data path's own, read-only once handed over */
    IFWXIOBuffer *buf = NULL;
    TU_EXPECT_HR(fwx_iobuffer_new(0, &buf), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_iobuffer_new(16, &buf), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(buf, 4), FWX_S_OK);
    TU_EXPECT_HR(fwx_iobuffer_set_readonly(buf, 1), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(buf, 5), FWX_E_NOT_SUPPORTED);
    TU_EXPECT_HR(IFWXIOBuffer_Append(buf, "x", 1), FWX_E_NOT_SUPPORTED);
    TU_EXPECT_HR(fwx_iobuffer_set_readonly(buf, 0), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(buf, 5), FWX_S_OK);
    TU_EXPECT_HR(fwx_iobuffer_set_readonly(NULL, 1), FWX_E_POINTER);
    TU_EXPECT_REF(buf, 1);
    IFWXIOBuffer_Release(buf);

    /* once the connection ended, SetSockets is refused */
    IFWXConnection *ended = k.c;
    IFWXConnection_AddRef(ended);
    fwx_connection_close(k.c);
    k.c = NULL;
    TU_EXPECT_HR(fwx_connection_data_filter_set_sockets(ended, 0, &never_called, NULL), FWX_E_TERMINATING);
    IFWXConnection_Release(ended);
    IFWXDataFilter_Release(&a->iface);
    IFWXDataFilter_Release(&b->iface);
    IFWXDataFilter_Release(&c->iface);
    cfx_close(&k);
    tu_loop_close_clean(&loop);
}
END_TEST

/* Emulator: no server (external_fd -1); the filter answers each client line itself. */
START_TEST(filter_emulator)
{
    rfx f;
    cfx k;
    memset(&f, 0, sizeof f);
    ck_assert_int_eq(uv_loop_init(&f.loop), 0);
    tcp_pair(&f.client, &f.gw_int);
    set_nonblock(f.gw_int);
    cfx_open(&k, &f.loop);
    tfilter *t = tf_new(F_EMULATE, 1);
    attach(&k, t, fwx_dfpc_Emulation);
    TU_EXPECT_HR(fwx_pump_start(&f.loop, k.c, f.gw_int, -1, NULL, on_done, &f, &f.p), FWX_S_OK);
    ck_assert_int_eq(t->setsockets_calls, 1);
    ck_assert_ptr_nonnull(t->s[0]);
    ck_assert_ptr_null(t->s[1]);
    peer cl = {.tx_text = "one\ntwo\nthree\n"};
    peer_start(&cl, f.client);
    wait_done(&f);
    peer_join(&cl);
    ck_assert_str_eq(cl.rx, "echo: one\necho: two\necho: three\n");
    ck_assert_uint_eq(fwx__conn_from(k.c)->bytes_in, strlen("one\ntwo\nthree\n"));
    ck_assert_int_eq(t->reentrant, 0);
    ck_assert_int_eq(t->failures, 0);
    filter_done(&f, &k, t);
}
END_TEST

/* Two filters, attached out of order: data meets them by priority class, client to server
   Internal then External, server to client the reverse; each sees the other's changes. */
START_TEST(filter_chain)
{
    rfx f;
    cfx k;
    rfx_open(&f);
    cfx_open(&k, &f.loop);
    tfilter *ext = tf_new(F_MAP, 2), *in = tf_new(F_MAP, 1);
    in->map_from = 'a', in->map_to = 'b';
    ext->map_from = 'b', ext->map_to = 'c';
    attach(&k, ext, fwx_dfpc_External);
    attach(&k, in, fwx_dfpc_Internal);
    n_c2s = n_s2c = 0;
    peer cl = {.tx_text = "aaa"};
    peer sv = {.tx_text = "abab"};
    start_relay(&f, k.c, false, 0);
    ck_assert_int_eq(in->setsockets_calls, 1);
    ck_assert_int_eq(ext->setsockets_calls, 1);
    /* in: client socket and one end of the join; ext: the other end and the server socket */
    ck_assert_ptr_nonnull(in->s[0]);
    ck_assert_ptr_nonnull(in->s[1]);
    ck_assert_ptr_nonnull(ext->s[0]);
    ck_assert_ptr_nonnull(ext->s[1]);
    ck_assert_ptr_ne(in->s[1], ext->s[0]);
    TU_EXPECT_REF(in->s[1], 2);
    TU_EXPECT_REF(ext->s[0], 2);
    TU_EXPECT_REF(k.c, 5); /* ours, the session's, the pump's, one per filter */
    relay_peers(&f, &cl, &sv);
    /* a->b by the internal filter, then b->c by the external one */
    ck_assert_str_eq(sv.rx, "ccc");
    /* server to client: the external filter first (b->c), then the internal (a->b) */
    ck_assert_str_eq(cl.rx, "bcbc");
    ck_assert_int_eq(n_c2s, 2);
    ck_assert_int_eq(order_c2s[0], 1);
    ck_assert_int_eq(order_c2s[1], 2);
    ck_assert_int_eq(n_s2c, 2);
    ck_assert_int_eq(order_s2c[0], 2);
    ck_assert_int_eq(order_s2c[1], 1);
    ck_assert_int_eq(in->reentrant + ext->reentrant, 0);
    TU_EXPECT_REF(in->s[1], 1);
    TU_EXPECT_REF(k.c, 4);
    fwx_connection_close(k.c);
    k.c = NULL;
    ck_assert_int_eq(in->detach_calls, 1);
    ck_assert_int_eq(ext->detach_calls, 1);
    IFWXDataFilter_Release(&in->iface);
    IFWXDataFilter_Release(&ext->iface);
    cfx_close(&k);
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* A failing SetSockets ends the pump: done() follows, the client sees the connection end. */
START_TEST(filter_setsockets_fails)
{
    rfx f;
    cfx k;
    tfilter *t = filter_open(&f, &k, F_OBSERVE, 1);
    t->setsockets_hr = FWX_E_OUTOFMEMORY;
    attach(&k, t, fwx_dfpc_Middle);
    start_relay(&f, k.c, false, 0);
    ck_assert_int_eq(t->setsockets_calls, 1);
    wait_done(&f);
    set_timeouts(f.client);
    char c;
    ck_assert_int_eq(recv(f.client, &c, 1, 0), 0);
    close(f.client);
    close(f.server);
    TU_EXPECT_REF(k.c, 2);
    filter_done(&f, &k, t);
}
END_TEST

/* Closing a real socket under a pending Recv fails it; the filter then closes the other and
   the pump ends; both peers see the end. */
START_TEST(filter_close_fails_pending)
{
    rfx f;
    cfx k;
    tfilter *t = filter_open(&f, &k, F_OBSERVE, 1);
    attach(&k, t, fwx_dfpc_Middle);
    start_relay(&f, k.c, false, 0);
    TU_EXPECT_HR(IFWXSocket_Close(t->s[1]), FWX_S_OK);
    ck_assert_int_eq(t->failures, 0); /* not from inside Close */
    wait_done(&f);
    ck_assert_int_ge(t->failures, 1);
    ck_assert_int_eq(t->reentrant, 0);
    expect_both_ended(&f);
    filter_done(&f, &k, t);
}
END_TEST

typedef struct tcpl tcpl;
static void tcpl_init(tcpl *c);
static bool tcpl_called(void *arg);
static IFWXIOBuffer *text_buf(const char *s);
static const char *tcpl_text(tcpl *c);
static int tcpl_calls(tcpl *c);
static int tcpl_ok(tcpl *c);
static IFWXIOCompletion *tcpl_iface(tcpl *c);

/* The virtual pair between two filters, driven by hand: a Send completes only when the other
   end's Recv took its bytes; Recv into a small buffer takes a Send in pieces; Shutdown(SHUT_WR)
   gives the other end EOF; Close fails the other end's Sends and the closed end's Recv. */
START_TEST(filter_virtual_pair)
{
    rfx f;
    cfx k;
    rfx_open(&f);
    cfx_open(&k, &f.loop);
    tfilter *in = tf_new(F_MANUAL, 1), *ex = tf_new(F_MANUAL, 2);
    attach(&k, in, fwx_dfpc_Internal);
    attach(&k, ex, fwx_dfpc_External);
    start_relay(&f, k.c, false, 0);
    IFWXSocket *a = in->s[1], *b = ex->s[0];
    tcpl *sc = calloc(1, 4096), *rc = calloc(1, 4096), *rc2 = calloc(1, 4096);
    tcpl_init(sc), tcpl_init(rc), tcpl_init(rc2);
    IFWXIOBuffer *msg = text_buf("hello"), *small;
    TU_EXPECT_HR(fwx__iobuffer_new(3, &small), FWX_S_OK);
    TU_EXPECT_HR(IFWXSocket_Send(a, msg, tcpl_iface(sc), 1), FWX_S_OK);
    TU_EXPECT_REF(msg, 2);
    run_until(&f.loop, NULL, NULL, 10, NULL);
    ck_assert_int_eq(tcpl_calls(sc), 0); /* nobody took it yet */
    TU_EXPECT_HR(IFWXSocket_Recv(b, small, tcpl_iface(rc), 2), FWX_S_OK);
    ck_assert_int_eq(tcpl_calls(rc), 0);
    ck_assert(run_until(&f.loop, tcpl_called, rc, RUN_LIMIT_MS, NULL));
    ck_assert_str_eq(tcpl_text(rc), "hel");
    ck_assert_int_eq(tcpl_calls(sc), 0); /* two bytes still wait */
    TU_EXPECT_HR(IFWXSocket_Recv(b, NULL, tcpl_iface(rc2), 3), FWX_S_OK);
    ck_assert(run_until(&f.loop, tcpl_called, sc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(tcpl_ok(sc), 1);
    ck_assert_int_eq(tcpl_calls(rc2), 1);
    ck_assert_str_eq(tcpl_text(rc2), "lo");
    TU_EXPECT_REF(msg, 1);
    /* EOF */
    TU_EXPECT_HR(IFWXSocket_Shutdown(a, SHUT_WR), FWX_S_OK);
    TU_EXPECT_HR(IFWXSocket_Send(a, msg, NULL, 0), FWX_E_TERMINATING);
    tcpl_init(rc);
    TU_EXPECT_HR(IFWXSocket_Recv(b, NULL, tcpl_iface(rc), 4), FWX_S_OK);
    ck_assert(run_until(&f.loop, tcpl_called, rc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(tcpl_ok(rc), 1);
    ck_assert_str_eq(tcpl_text(rc), "");
    /* the other way: a Recv pending on a, then b closes: a sees EOF; b's Recv is gone */
    tcpl_init(rc);
    TU_EXPECT_HR(IFWXSocket_Recv(a, NULL, tcpl_iface(rc), 5), FWX_S_OK);
    TU_EXPECT_HR(IFWXSocket_Close(b), FWX_S_OK);
    TU_EXPECT_HR(IFWXSocket_Recv(b, NULL, tcpl_iface(rc2), 6), FWX_E_TERMINATING);
    ck_assert(run_until(&f.loop, tcpl_called, rc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(tcpl_ok(rc), 1);
    ck_assert_str_eq(tcpl_text(rc), "");
    /* closing the real sockets ends the pump */
    IFWXSocket_Close(in->s[0]);
    IFWXSocket_Close(ex->s[1]);
    wait_done(&f);
    IFWXIOBuffer_Release(msg);
    IFWXIOBuffer_Release(small);
    close(f.client);
    close(f.server);
    fwx_connection_close(k.c);
    k.c = NULL;
    IFWXDataFilter_Release(&in->iface);
    IFWXDataFilter_Release(&ex->iface);
    free(sc), free(rc), free(rc2);
    cfx_close(&k);
    tu_loop_close_clean(&f.loop);
}
END_TEST

/* ---- IFWXNetworkSocket -------------------------------------------------------------------- */

struct tcpl {
    IFWXIOCompletion iface;
    IFWXAcceptCompletion acc;
    atomic_uint refs;
    int calls, ok, err;
    uintptr_t ud;
    char data[2048];
    uint32_t len;
    struct sockaddr_storage addr;
    uint32_t addr_len;
    IFWXNetworkSocket *accepted;
    struct sockaddr_storage remote, local;
};

static fwx_result tcpl_qi(IFWXIOCompletion *This, const fwx_guid *riid, void **ppv)
{
    (void)This;
    (void)riid;
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t tcpl_addref(IFWXIOCompletion *This) { return atomic_fetch_add(&((tcpl *)(void *)This)->refs, 1) + 1; }
static uint32_t tcpl_release(IFWXIOCompletion *This) { return atomic_fetch_sub(&((tcpl *)(void *)This)->refs, 1) - 1; }
static fwx_result tcpl_done(IFWXIOCompletion *This, int32_t ok, int32_t err, IFWXIOBuffer *b, uintptr_t ud,
                            const struct sockaddr *a, uint32_t al)
{
    tcpl *c = (tcpl *)(void *)This;
    c->calls++;
    c->ok = ok;
    c->err = err;
    c->ud = ud;
    uint8_t *p;
    uint32_t n;
    IFWXIOBuffer_GetBufferAndSize(b, &p, &n);
    c->len = n < sizeof c->data - 1 ? n : sizeof c->data - 1;
    memcpy(c->data, p, c->len);
    c->data[c->len] = 0;
    c->addr_len = 0;
    if (a != NULL) {
        memcpy(&c->addr, a, al);
        c->addr_len = al;
    }
    return FWX_S_OK;
}
static const IFWXIOCompletionVtbl tcpl_vtbl = {tcpl_qi, tcpl_addref, tcpl_release, tcpl_done};

static tcpl *acc_impl(IFWXAcceptCompletion *a) { return fwx__container_of(a, tcpl, acc); }
static fwx_result tacc_qi(IFWXAcceptCompletion *This, const fwx_guid *riid, void **ppv)
{
    (void)This;
    (void)riid;
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t tacc_addref(IFWXAcceptCompletion *This) { return tcpl_addref(&acc_impl(This)->iface); }
static uint32_t tacc_release(IFWXAcceptCompletion *This) { return tcpl_release(&acc_impl(This)->iface); }
static fwx_result tacc_done(IFWXAcceptCompletion *This, int32_t ok, int32_t err, IFWXNetworkSocket *ls,
                            IFWXNetworkSocket *as, const struct sockaddr *r, uint32_t rl, const struct sockaddr *l,
                            uint32_t ll, uintptr_t ud)
{
    (void)ls;
    tcpl *c = acc_impl(This);
    c->calls++;
    c->ok = ok;
    c->err = err;
    c->ud = ud;
    c->accepted = as;
    if (r != NULL)
        memcpy(&c->remote, r, rl);
    if (l != NULL)
        memcpy(&c->local, l, ll);
    return FWX_S_OK;
}
static const IFWXAcceptCompletionVtbl tacc_vtbl = {tacc_qi, tacc_addref, tacc_release, tacc_done};

static void tcpl_init(tcpl *c)
{
    memset(c, 0, sizeof *c);
    c->iface.lpVtbl = &tcpl_vtbl;
    c->acc.lpVtbl = &tacc_vtbl;
    atomic_init(&c->refs, 1);
}

static bool tcpl_called(void *arg) { return ((tcpl *)arg)->calls > 0; }
static const char *tcpl_text(tcpl *c) { return c->data; }
static int tcpl_calls(tcpl *c) { return c->calls; }
static int tcpl_ok(tcpl *c) { return c->ok; }
static IFWXIOCompletion *tcpl_iface(tcpl *c) { return &c->iface; }

static IFWXIOBuffer *text_buf(const char *s)
{
    IFWXIOBuffer *b;
    TU_EXPECT_HR(fwx__iobuffer_new((uint32_t)strlen(s) + 1, &b), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, s, (uint32_t)strlen(s)), FWX_S_OK);
    return b;
}

START_TEST(usock_tcp_connect_echo)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    tu_echo e;
    tu_echo_start(&e, "127.0.0.1");
    IFWXNetworkSocket *s = NULL;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, 99, &s), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_TCP, &s), FWX_S_OK);
    TU_EXPECT_REF(s, 1);
    void *q;
    TU_EXPECT_HR(IFWXNetworkSocket_QueryInterface(s, &IID_IFWXSocket, &q), FWX_S_OK);
    ck_assert_ptr_eq(q, s);
    IFWXNetworkSocket_Release(s);
    TU_EXPECT_HR(IFWXNetworkSocket_QueryInterface(s, &IID_IUnknown, &q), FWX_S_OK);
    IFWXNetworkSocket_Release(s);
    TU_EXPECT_HR(IFWXNetworkSocket_QueryInterface(s, &IID_IFWXNetworkSocket, &q), FWX_S_OK);
    IFWXNetworkSocket_Release(s);
    TU_EXPECT_HR(IFWXNetworkSocket_QueryInterface(s, &IID_IFWXDataFilter, &q), FWX_E_NOINTERFACE);
    ck_assert_ptr_null(q);
    TU_EXPECT_REF(s, 1);

    struct sockaddr_in to = lo4(e.port);
    TU_EXPECT_HR(IFWXNetworkSocket_Connect(s, (struct sockaddr *)&to, sizeof to), FWX_S_OK);
    /* Send and Recv right away: held until the connect completes */
    IFWXIOBuffer *b = text_buf("ping");
    tcpl sc, rc;
    tcpl_init(&sc);
    tcpl_init(&rc);
    TU_EXPECT_HR(IFWXNetworkSocket_Send(s, b, &sc.iface, 7), FWX_S_OK);
    TU_EXPECT_REF(b, 2); /* held while the send is pending */
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, NULL, &rc.iface, 8), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, NULL, &rc.iface, 8), FWX_E_INVALIDARG);
    ck_assert_int_eq(sc.calls + rc.calls, 0); /* never from inside the call */
    ck_assert(run_until(&loop, tcpl_called, &rc, RUN_LIMIT_MS, NULL));
    run_until(&loop, tcpl_called, &sc, RUN_LIMIT_MS, NULL);
    ck_assert_int_eq(sc.calls, 1);
    ck_assert_int_eq(sc.ok, 1);
    ck_assert_uint_eq(sc.ud, 7);
    TU_EXPECT_REF(b, 1);
    ck_assert_int_eq(rc.ok, 1);
    ck_assert_uint_eq(rc.ud, 8);
    ck_assert_str_eq(rc.data, "ping");
    ck_assert_uint_eq(rc.addr_len, 0);
    ck_assert_uint_eq(atomic_load(&rc.refs), 1);

    struct sockaddr_storage ss;
    uint32_t sl = sizeof ss;
    TU_EXPECT_HR(IFWXNetworkSocket_GetPeerName(s, TU_SAM(ss), &sl), FWX_S_OK);
    ck_assert_uint_eq(sl, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), e.port);
    sl = sizeof ss;
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockName(s, TU_SAM(ss), &sl), FWX_S_OK);
    ck_assert_uint_ne(ntohs(((struct sockaddr_in *)&ss)->sin_port), 0);
    sl = 2;
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockName(s, TU_SAM(ss), &sl), FWX_E_INVALIDARG);
    int one = 1, val = 0;
    uint32_t vl = sizeof val;
    TU_EXPECT_HR(IFWXNetworkSocket_SetSockOpt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockOpt(s, IPPROTO_TCP, TCP_NODELAY, &val, &vl), FWX_S_OK);
    ck_assert_int_ne(val, 0);
    TU_EXPECT_HR(IFWXNetworkSocket_SetSockOpt(s, 12345, 1, &one, sizeof one), FWX_E_INVALIDARG);

    /* half-close: the echo server sees EOF and closes; we read EOF */
    TU_EXPECT_HR(IFWXNetworkSocket_Shutdown(s, 77), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXNetworkSocket_Shutdown(s, SHUT_WR), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_Send(s, b, NULL, 0), FWX_E_TERMINATING);
    tcpl_init(&rc);
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, NULL, &rc.iface, 9), FWX_S_OK);
    ck_assert(run_until(&loop, tcpl_called, &rc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(rc.ok, 1);
    ck_assert_uint_eq(rc.len, 0);
    /* a pending Recv fails on Close */
    tcpl_init(&rc);
    TU_EXPECT_HR(IFWXNetworkSocket_Close(s), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, NULL, &rc.iface, 9), FWX_E_TERMINATING);
    IFWXIOBuffer_Release(b);
    TU_EXPECT_REF(s, 1);
    IFWXNetworkSocket_Release(s);
    tu_echo_stop(&e);
    tu_loop_close_clean(&loop);
}
END_TEST

START_TEST(usock_tcp_connect_refused_fails_ops)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    /* a port nobody listens on: bind one and close it */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = lo4(0);
    socklen_t len = sizeof sa;
    ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    close(l);
    IFWXNetworkSocket *s;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_TCP, &s), FWX_S_OK);
    tcpl rc;
    tcpl_init(&rc);
    IFWXIOBuffer *b = text_buf("x");
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, b, &rc.iface, 1), FWX_E_INVALIDARG); /* not connected */
    TU_EXPECT_HR(IFWXNetworkSocket_Connect(s, (struct sockaddr *)&sa, sizeof sa), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, b, &rc.iface, 1), FWX_S_OK);
    ck_assert(run_until(&loop, tcpl_called, &rc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(rc.ok, 0);
    ck_assert_int_eq(rc.err, UV_ECONNREFUSED);
    TU_EXPECT_REF(b, 1);
    IFWXIOBuffer_Release(b);
    IFWXNetworkSocket_Release(s); /* the last Release closes it */
    tu_loop_close_clean(&loop);
}
END_TEST

START_TEST(usock_tcp_listen_accept)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    IFWXNetworkSocket *ls;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_TCP, &ls), FWX_S_OK);
    tcpl ac;
    tcpl_init(&ac);
    TU_EXPECT_HR(IFWXNetworkSocket_Listen(ls, 4), FWX_E_WSAEINVAL); /* not bound */
    TU_EXPECT_HR(IFWXNetworkSocket_Accept(ls, &ac.acc, 1), FWX_E_WSAEINVAL);
    struct sockaddr_in at = lo4(0);
    TU_EXPECT_HR(IFWXNetworkSocket_Bind(ls, (struct sockaddr *)&at, sizeof at, NULL), FWX_S_OK);
    struct sockaddr_storage ss;
    uint32_t sl = sizeof ss;
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockName(ls, TU_SAM(ss), &sl), FWX_S_OK);
    uint16_t port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    ck_assert_uint_ne(port, 0);
    /* the same port again: in use, from Bind itself */
    IFWXNetworkSocket *other;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_TCP, &other), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_Listen(ls, 4), FWX_S_OK);
    struct sockaddr_in same = lo4(port);
    TU_EXPECT_HR(IFWXNetworkSocket_Bind(other, (struct sockaddr *)&same, sizeof same, NULL), FWX_E_ADDRINUSE);
    IFWXNetworkSocket_Release(other);

    TU_EXPECT_HR(IFWXNetworkSocket_Accept(ls, &ac.acc, 42), FWX_S_OK);
    TU_EXPECT_REF(&ac.acc, 2);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&same, sizeof same), 0);
    set_timeouts(c);
    ck_assert_int_eq(send(c, "hi", 2, 0), 2);
    ck_assert(run_until(&loop, tcpl_called, &ac, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(ac.ok, 1);
    ck_assert_uint_eq(ac.ud, 42);
    ck_assert_ptr_nonnull(ac.accepted);
    TU_EXPECT_REF(ac.accepted, 1); /* ours */
    TU_EXPECT_REF(&ac.acc, 1);
    struct sockaddr_in cn;
    socklen_t cl = sizeof cn;
    getsockname(c, (struct sockaddr *)&cn, &cl);
    ck_assert_uint_eq(((struct sockaddr_in *)&ac.remote)->sin_port, cn.sin_port);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ac.local)->sin_port), port);
    tcpl rc;
    tcpl_init(&rc);
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(ac.accepted, NULL, &rc.iface, 3), FWX_S_OK);
    ck_assert(run_until(&loop, tcpl_called, &rc, RUN_LIMIT_MS, NULL));
    ck_assert_str_eq(rc.data, "hi");
    IFWXIOBuffer *b = text_buf("yo");
    TU_EXPECT_HR(IFWXNetworkSocket_Send(ac.accepted, b, NULL, 0), FWX_S_OK);
    IFWXIOBuffer_Release(b);
    char got[3] = {0};
    ck_assert(run_until(&loop, fd_has_data, &c, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(recv(c, got, 2, MSG_WAITALL), 2);
    ck_assert_str_eq(got, "yo");
    IFWXNetworkSocket *as = ac.accepted;
    /* a pending Accept fails on Close */
    tcpl_init(&ac);
    TU_EXPECT_HR(IFWXNetworkSocket_Accept(ls, &ac.acc, 5), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_Close(ls), FWX_S_OK);
    ck_assert(run_until(&loop, tcpl_called, &ac, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(ac.ok, 0);
    ck_assert_int_eq(ac.err, UV_ECANCELED);
    ck_assert_ptr_null(ac.accepted);
    TU_EXPECT_HR(IFWXNetworkSocket_Close(as), FWX_S_OK);
    IFWXNetworkSocket_Release(as);
    close(c);
    IFWXNetworkSocket_Release(ls);
    tu_loop_close_clean(&loop);
}
END_TEST

static int udp_fd(const char *ip, struct sockaddr_in *out)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = lo4(0);
    inet_pton(AF_INET, ip, &a.sin_addr);
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    set_timeouts(fd);
    *out = a;
    return fd;
}

START_TEST(usock_udp_sendto_recv)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    IFWXNetworkSocket *s;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_UDP, &s), FWX_S_OK);
    struct sockaddr_in at = lo4(0);
    TU_EXPECT_HR(IFWXNetworkSocket_Bind(s, (struct sockaddr *)&at, sizeof at, NULL), FWX_S_OK);
    struct sockaddr_storage me;
    uint32_t ml = sizeof me;
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockName(s, TU_SAM(me), &ml), FWX_S_OK);
    TU_EXPECT_HR(IFWXNetworkSocket_GetPeerName(s, TU_SAM(me), &ml), FWX_E_WSAEINVAL);
    ml = sizeof me;
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockName(s, TU_SAM(me), &ml), FWX_S_OK);
    struct sockaddr_in from;
    int u = udp_fd("127.0.0.1", &from);
    tcpl rc;
    tcpl_init(&rc);
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, NULL, &rc.iface, 1), FWX_S_OK);
    ck_assert_int_eq(sendto(u, "dgram", 5, 0, TU_SA(me), ml), 5);
    ck_assert(run_until(&loop, tcpl_called, &rc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(rc.ok, 1);
    ck_assert_str_eq(rc.data, "dgram");
    ck_assert_uint_eq(rc.addr_len, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(((struct sockaddr_in *)&rc.addr)->sin_port, from.sin_port);
    ck_assert_uint_eq(((struct sockaddr_in *)&rc.addr)->sin_addr.s_addr, from.sin_addr.s_addr);
    IFWXIOBuffer *b = text_buf("reply");
    tcpl sc;
    tcpl_init(&sc);
    TU_EXPECT_HR(IFWXNetworkSocket_SendTo(s, b, (struct sockaddr *)&from, sizeof from, &sc.iface, 2), FWX_S_OK);
    ck_assert(run_until(&loop, tcpl_called, &sc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(sc.ok, 1);
    ck_assert_uint_eq(sc.addr_len, 0);
    char got[16] = {0};
    ck_assert_int_eq(recv(u, got, sizeof got, 0), 5);
    ck_assert_str_eq(got, "reply");
    IFWXIOBuffer_Release(b);
    close(u);
    IFWXNetworkSocket_Close(s);
    IFWXNetworkSocket_Release(s);
    tu_loop_close_clean(&loop);
}
END_TEST

static int ipf_refusals;
static void count_refusals(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg, (void)level;
    if (strstr(msg, "refused by its ip filter") != NULL)
        ipf_refusals++;
}

/* The IP filter includes 127.0.0.2 only: 127.0.0.1's datagram is dropped (and logged),
   127.0.0.2's arrives. */
START_TEST(usock_udp_ipfilter_drops)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.log = count_refusals;
    fwx_firewall *fw = NULL;
    TU_EXPECT_HR(fwx_firewall_new(&loop, &o, &fw), FWX_S_OK);
    IFWXIpFilter *ipf;
    TU_EXPECT_HR(fwx__ipfilter_new(&ipf), FWX_S_OK);
    struct sockaddr_storage ok2 = tu_addr("127.0.0.2");
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(ipf, TU_SA(ok2), tu_len(&ok2), TU_SA(ok2), tu_len(&ok2)), FWX_S_OK);
    IFWXNetworkSocket *s;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, fw, FWX_PROTOCOL_UDP, &s), FWX_S_OK);
    struct sockaddr_in at = lo4(0);
    TU_EXPECT_HR(IFWXNetworkSocket_Bind(s, (struct sockaddr *)&at, sizeof at, ipf), FWX_S_OK);
    IFWXIpFilter *got_f = NULL;
    TU_EXPECT_HR(IFWXNetworkSocket_GetIpFilter(s, &got_f), FWX_S_OK);
    ck_assert_ptr_eq(got_f, ipf);
    IFWXIpFilter_Release(got_f);
    struct sockaddr_storage me;
    uint32_t ml = sizeof me;
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockName(s, TU_SAM(me), &ml), FWX_S_OK);
    struct sockaddr_in bad_a, good_a;
    int bad = udp_fd("127.0.0.1", &bad_a), good = udp_fd("127.0.0.2", &good_a);
    tcpl rc;
    tcpl_init(&rc);
    TU_EXPECT_HR(IFWXNetworkSocket_Recv(s, NULL, &rc.iface, 1), FWX_S_OK);
    ck_assert_int_eq(sendto(bad, "bad", 3, 0, TU_SA(me), ml), 3);
    run_until(&loop, NULL, NULL, 30, NULL);
    ck_assert_int_eq(rc.calls, 0);
    ck_assert_int_eq(ipf_refusals, 1); /* never silent */
    ck_assert_int_eq(sendto(good, "good", 4, 0, TU_SA(me), ml), 4);
    ck_assert(run_until(&loop, tcpl_called, &rc, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(rc.calls, 1);
    ck_assert_str_eq(rc.data, "good");
    ck_assert_uint_eq(((struct sockaddr_in *)&rc.addr)->sin_addr.s_addr, good_a.sin_addr.s_addr);
    close(bad);
    close(good);
    IFWXNetworkSocket_Close(s);
    IFWXNetworkSocket_Release(s);
    TU_EXPECT_REF(ipf, 1);
    IFWXIpFilter_Release(ipf);
    fwx_firewall_close(fw, NULL, NULL);
    tu_loop_close_clean(&loop);
}
END_TEST

/* An accepted connection from an address the IP filter does not include is dropped. */
START_TEST(usock_tcp_ipfilter_drops)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    IFWXIpFilter *ipf;
    TU_EXPECT_HR(fwx__ipfilter_new(&ipf), FWX_S_OK);
    struct sockaddr_storage ok2 = tu_addr("127.0.0.2");
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(ipf, TU_SA(ok2), tu_len(&ok2), TU_SA(ok2), tu_len(&ok2)), FWX_S_OK);
    IFWXNetworkSocket *ls;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_TCP, &ls), FWX_S_OK);
    struct sockaddr_in at = lo4(0);
    TU_EXPECT_HR(IFWXNetworkSocket_Bind(ls, (struct sockaddr *)&at, sizeof at, ipf), FWX_S_OK);
    IFWXIpFilter_Release(ipf);
    TU_EXPECT_HR(IFWXNetworkSocket_Listen(ls, 4), FWX_S_OK);
    struct sockaddr_storage me;
    uint32_t ml = sizeof me;
    TU_EXPECT_HR(IFWXNetworkSocket_GetSockName(ls, TU_SAM(me), &ml), FWX_S_OK);
    tcpl ac;
    tcpl_init(&ac);
    TU_EXPECT_HR(IFWXNetworkSocket_Accept(ls, &ac.acc, 1), FWX_S_OK);
    int bad = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(bad, TU_SA(me), ml), 0);
    set_timeouts(bad);
    ck_assert(run_until(&loop, fd_ended, &bad, RUN_LIMIT_MS, NULL)); /* closed on it */
    ck_assert_int_eq(ac.calls, 0);
    int good = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in ga = lo4(0);
    inet_pton(AF_INET, "127.0.0.2", &ga.sin_addr);
    ck_assert_int_eq(bind(good, (struct sockaddr *)&ga, sizeof ga), 0);
    ck_assert_int_eq(connect(good, TU_SA(me), ml), 0);
    ck_assert(run_until(&loop, tcpl_called, &ac, RUN_LIMIT_MS, NULL));
    ck_assert_int_eq(ac.ok, 1);
    ck_assert_uint_eq(((struct sockaddr_in *)&ac.remote)->sin_addr.s_addr, ga.sin_addr.s_addr);
    IFWXNetworkSocket_Close(ac.accepted);
    IFWXNetworkSocket_Release(ac.accepted);
    close(bad);
    close(good);
    IFWXNetworkSocket_Close(ls);
    IFWXNetworkSocket_Release(ls);
    tu_loop_close_clean(&loop);
}
END_TEST

/* ---- suite -------------------------------------------------------------------------------- */

/* ---- the host's relay (host.h), from the public headers ------------------------------------ */

/* A stream data filter written against the public headers only: the client's bytes go on
   upper-cased, the server's unchanged; an EOF is passed on as a half-close and the filter
   closes both sockets once both sides have ended (the socket contract). */
typedef struct hfilter hfilter;
typedef struct hdir {
    IFWXIOCompletion iface;
    hfilter *f;
    int d;
} hdir;
struct hfilter {
    IFWXDataFilter iface;
    fwx_refcount refs;
    IFWXFirewall *fw; /* borrowed */
    IFWXSocket *s[2];
    hdir dirs[2];
    bool eof[2], closed;
    int setsockets, detached, failures;
};

/* The filter lives in the test's fixture; the test holds its first reference to the end. */
static void hf_destroy(hfilter *f) { (void)f; }

/* hf_impl, hf_QueryInterface, hf_AddRef, hf_Release */
FWX_IUNKNOWN_IMPL(hf, IFWXDataFilter, hfilter, iface, refs, hf_destroy, &IID_IFWXDataFilter)

static void hf_close(hfilter *f) { tu_sockets_close(f->s, &f->closed); }

static void hf_recv(hfilter *f, int d)
{
    if (FWX_FAILED(IFWXSocket_Recv(f->s[d], NULL, &f->dirs[d].iface, 0))) {
        f->failures++;
        hf_close(f);
    }
}

static fwx_result hf_complete(IFWXIOCompletion *This, int32_t ok, int32_t err, IFWXIOBuffer *buf, uintptr_t ud,
                              const struct sockaddr *a, uint32_t al)
{
    (void)err, (void)ud, (void)a, (void)al;
    hdir *dir = FWX_CONTAINER_OF(This, hdir, iface);
    hfilter *f = dir->f;
    int d = dir->d;
    if (f->closed)
        return FWX_S_OK;
    if (!ok) {
        hf_close(f);
        return FWX_S_OK;
    }
    uint8_t *p;
    uint32_t n;
    IFWXIOBuffer_GetBufferAndSize(buf, &p, &n);
    if (n == 0) {
        f->eof[d] = true;
        IFWXSocket_Shutdown(f->s[1 - d], SHUT_WR);
        if (f->eof[0] && f->eof[1])
            hf_close(f);
        return FWX_S_OK;
    }
    IFWXIOBuffer *out = NULL;
    if (FWX_FAILED(IFWXFirewall_CreateBuffer(f->fw, n, &out))) {
        hf_close(f);
        return FWX_S_OK;
    }
    uint8_t *q;
    uint32_t m;
    IFWXIOBuffer_SetDataSize(out, n);
    IFWXIOBuffer_GetBufferAndSize(out, &q, &m);
    for (uint32_t i = 0; i < n; i++)
        q[i] = d == 0 && p[i] >= 'a' && p[i] <= 'z' ? (uint8_t)(p[i] - 'a' + 'A') : p[i];
    if (FWX_FAILED(IFWXSocket_Send(f->s[1 - d], out, NULL, 0)))
        hf_close(f);
    IFWXIOBuffer_Release(out);
    if (!f->closed)
        hf_recv(f, d);
    return FWX_S_OK;
}

/* hc_vtbl, hc_init, ...: the completions share the filter's count */
TU_DIR_COMPLETIONS(hc, hdir, hfilter, hf_AddRef, hf_Release, hf_complete)

static fwx_result hf_setsockets(IFWXDataFilter *This, IFWXSocket *in, IFWXSocket *ex, IFWXConnection *c, IUnknown *x)
{
    (void)c, (void)x;
    hfilter *f = hf_impl(This);
    f->setsockets++;
    tu_sockets_take(f->s, in, ex);
    hf_recv(f, 0);
    hf_recv(f, 1);
    return FWX_S_OK;
}

static fwx_result hf_detach(IFWXDataFilter *This)
{
    hfilter *f = hf_impl(This);
    f->detached++;
    hf_close(f);
    tu_sockets_release(f->s, 0);
    return FWX_S_OK;
}

static const IFWXDataFilterVtbl hf_vtbl = {hf_QueryInterface, hf_AddRef, hf_Release, hf_setsockets, hf_detach};

/* The host under test: no backend, a test plugin whose fwx_Connect_Tcp handler attaches hf. */
typedef struct hfx {
    uv_loop_t loop;
    fwx_firewall *fw;
    IFWXSession *s;
    hfilter f;
    fwx_result attach_hr;
    char log[8192];
    size_t log_len;
    int done_calls;
    fwx_result done_result;
    int client, gw_int, gw_ext, server;
} hfx;

static void hfx_log(void *arg, fwx_log_level level, const char *msg)
{
    (void)level;
    hfx *h = arg;
    int n = snprintf(h->log + h->log_len, sizeof h->log - h->log_len, "%s\n", msg);
    if (n > 0 && h->log_len + (size_t)n < sizeof h->log)
        h->log_len += (size_t)n;
}

static fwx_result hfx_attach(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf, (void)s;
    hfx *h = ctl->arg;
    if (ev->EventType == fwx_Connect_Tcp || ev->EventType == fwx_Udp_Destination) {
        h->f.fw = ctl->fw;
        IFWXConnection *c = ev->EventType == fwx_Connect_Tcp ? ev->Parameters.Connect.piConnection
                                                             : ev->Parameters.UdpDest.piConnection;
        h->attach_hr = IFWXConnection_AttachDataFilter(c, &h->f.iface, fwx_dfpc_Middle, NULL);
    }
    return FWX_S_OK;
}

static void hfx_open(hfx *h, bool with_filter)
{
    memset(h, 0, sizeof *h);
    h->f.iface.lpVtbl = &hf_vtbl;
    fwx_refcount_init(&h->f.refs);
    hc_init(&h->f);
    h->attach_hr = FWX_E_FAIL;
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.log = hfx_log;
    o.log_arg = h;
    o.log_level = FWX_LOG_DEBUG;
    tu_fw_open(&h->loop, &o, &h->fw);
    if (with_filter) {
        tp_control *ctl = tu_plugin_map("tp_good", NULL);
        ctl->hooks = fwx_Connect_Tcp | fwx_Udp_Destination | FWX_ALL_SOURCES;
        ctl->on_event = hfx_attach;
        ctl->arg = h;
        tu_plugin_load(h->fw, "tp_good");
    }
    h->s = tu_session_open(h->fw, fwxSourceNAT, "10.0.0.8", NULL);
    tcp_pair(&h->client, &h->gw_int);
    tcp_pair(&h->gw_ext, &h->server);
    set_timeouts(h->client);
    set_timeouts(h->server);
}

static fwx_result hfx_connect(hfx *h, IFWXConnection **c)
{
    struct sockaddr_storage pe = tu_addr("198.51.100.7:21");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(pe), tu_len(&pe), NULL, 0, NULL, 0, 0, NULL};
    return fwx_connection_open(h->s, &cp, c);
}

static void hfx_close(hfx *h)
{
    fwx_session_close(h->s);
    IFWXSession_Release(h->s);
    fwx_firewall_close(h->fw, NULL, NULL);
    close(h->client);
    close(h->server);
    tu_loop_close_clean(&h->loop);
}

static void hfx_done(fwx_relay *r, fwx_result result, void *arg)
{
    (void)r;
    hfx *h = arg;
    h->done_calls++;
    h->done_result = result;
}
static bool hfx_is_done(void *arg) { return ((hfx *)arg)->done_calls > 0; }

/* The byte counts of the (one) connection of a protocol, as fwx_firewall_list reports them. */
typedef struct conn_bytes {
    int32_t protocol;
    uint64_t in, out;
} conn_bytes;

static void bytes_of(void *arg, const fwx_object_info *info)
{
    conn_bytes *b = arg;
    if (info->kind == FWX_OBJECT_CONNECTION && info->protocol == b->protocol) {
        b->in = info->bytes_in;
        b->out = info->bytes_out;
    }
}

/* How a test of a relayed connection ends: the bytes counted each way, no failure in the
   filter, the connection closed (its filter detached once), the host closed clean and the
   filter holding only its own reference. */
static void hfx_finish(hfx *h, IFWXConnection *c, int32_t protocol, uint64_t in, uint64_t out)
{
    conn_bytes b = {protocol, 0, 0};
    TU_EXPECT_HR(fwx_firewall_list(h->fw, FWX_OBJECT_CONNECTION, bytes_of, &b), FWX_S_OK);
    ck_assert_uint_eq(b.in, in);
    ck_assert_uint_eq(b.out, out);
    ck_assert_int_eq(h->f.failures, 0);
    fwx_connection_close(c);
    ck_assert_int_eq(h->f.detached, 1);
    hfx_close(h);
    ck_assert_uint_eq(fwx_refcount_get(&h->f.refs), 1);
}

/* A host without a backend that did not say it relays: a connection a filter attached a data
   filter to is refused, with a line saying so; the filter never gets sockets. */
START_TEST(host_relay_refused_without_it)
{
    hfx h;
    hfx_open(&h, true);
    IFWXConnection *c = (IFWXConnection *)(uintptr_t)1;
    TU_EXPECT_HR(hfx_connect(&h, &c), FWX_E_NOT_SUPPORTED);
    ck_assert_ptr_null(c);
    TU_EXPECT_HR(h.attach_hr, FWX_S_OK);
    ck_assert_msg(strstr(h.log, "refused: 1 data filter(s) attached but nothing runs them") != NULL, "log:\n%s", h.log);
    ck_assert_int_eq(h.f.setsockets, 0);
    ck_assert_int_eq(h.f.detached, 1);
    fwx_firewall_stats st = {.struct_size = sizeof st};
    fwx_firewall_get_stats(h.fw, &st);
    ck_assert_uint_eq(st.connections, 0);
    close(h.gw_int);
    close(h.gw_ext);
    hfx_close(&h);
    ck_assert_uint_eq(fwx_refcount_get(&h.f.refs), 1);
}
END_TEST

/* The host says it relays, and hands the sockets to fwx_connection_relay: the filter carries
   the bytes (the client's upper-cased), half-closes pass, done() reports FWX_S_OK, the bytes
   are counted on the connection. */
START_TEST(host_relay_runs_filters)
{
    hfx h;
    hfx_open(&h, true);
    TU_EXPECT_HR(fwx_firewall_set_host_relay(h.fw, 1), FWX_S_OK);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(hfx_connect(&h, &c), FWX_S_OK);
    TU_EXPECT_HR(h.attach_hr, FWX_S_OK);
    ck_assert_uint_eq(fwx_connection_data_filters(c), 1);
    fwx_relay *r = NULL;
    TU_EXPECT_HR(fwx_connection_relay(c, h.gw_int, h.gw_ext, hfx_done, &h, &r), FWX_S_OK);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(h.f.setsockets, 1); /* before the call returned */
    ck_assert_int_eq(h.done_calls, 0);
    TU_EXPECT_HR(fwx_connection_relay(c, h.client, h.server, hfx_done, &h, NULL), FWX_E_INVALIDARG); /* again */
    ck_assert_int_eq(send(h.client, "hello, server\n", 14, 0), 14);
    ck_assert(run_until(&h.loop, fd_has_data, &h.server, RUN_LIMIT_MS, NULL));
    char buf[64] = {0};
    ck_assert_int_eq(recv(h.server, buf, sizeof buf, 0), 14);
    ck_assert_str_eq(buf, "HELLO, SERVER\n");
    ck_assert_int_eq(send(h.server, "hi, client\n", 11, 0), 11);
    ck_assert(run_until(&h.loop, fd_has_data, &h.client, RUN_LIMIT_MS, NULL));
    memset(buf, 0, sizeof buf);
    ck_assert_int_eq(recv(h.client, buf, sizeof buf, 0), 11);
    ck_assert_str_eq(buf, "hi, client\n");
    shutdown(h.client, SHUT_WR);
    ck_assert(run_until(&h.loop, fd_ended, &h.server, RUN_LIMIT_MS, NULL));
    shutdown(h.server, SHUT_WR);
    ck_assert_msg(run_until(&h.loop, hfx_is_done, &h, RUN_LIMIT_MS, NULL), "the relay did not end");
    run_until(&h.loop, NULL, NULL, 5, NULL);
    ck_assert_int_eq(h.done_calls, 1);
    TU_EXPECT_HR(h.done_result, FWX_S_OK);
    ck_assert_int_eq(recv(h.client, buf, sizeof buf, 0), 0);
    hfx_finish(&h, c, FWX_PROTOCOL_TCP, 14, 11);
}
END_TEST

/* The connection ends while fwx relays it (here fwx_connection_close; Kill and the session's
   end are the same path): the relay ends with FWX_E_TERMINATING and both sides see the close.
   Bad arguments are refused with nothing taken. */
START_TEST(host_relay_ends_with_its_connection)
{
    hfx h;
    hfx_open(&h, false);
    TU_EXPECT_HR(fwx_firewall_set_host_relay(h.fw, 1), FWX_S_OK);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(hfx_connect(&h, &c), FWX_S_OK);
    ck_assert_uint_eq(fwx_connection_data_filters(c), 0);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    TU_EXPECT_HR(fwx_connection_relay(NULL, h.gw_int, h.gw_ext, hfx_done, &h, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_connection_relay(c, p[0], h.gw_ext, hfx_done, &h, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_connection_relay(c, h.gw_int, h.gw_int, hfx_done, &h, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_connection_relay(c, h.gw_int, -1, hfx_done, &h, NULL), FWX_E_INVALIDARG); /* nothing emulates */
    close(p[0]);
    close(p[1]);
    TU_EXPECT_HR(fwx_connection_relay(c, h.gw_int, h.gw_ext, hfx_done, &h, NULL), FWX_S_OK);
    ck_assert_int_eq(send(h.client, "x", 1, 0), 1);
    ck_assert(run_until(&h.loop, fd_has_data, &h.server, RUN_LIMIT_MS, NULL));
    char x = 0;
    ck_assert_int_eq(recv(h.server, &x, 1, 0), 1);
    ck_assert_int_eq(x, 'x');
    IFWXConnection_AddRef(c);
    fwx_connection_close(c);
    ck_assert_msg(run_until(&h.loop, hfx_is_done, &h, RUN_LIMIT_MS, NULL), "the relay outlived its connection");
    TU_EXPECT_HR(h.done_result, FWX_E_TERMINATING);
    ck_assert(run_until(&h.loop, fd_ended, &h.client, RUN_LIMIT_MS, NULL));
    ck_assert(run_until(&h.loop, fd_ended, &h.server, RUN_LIMIT_MS, NULL));
    int a, b;
    tcp_pair(&a, &b);
    TU_EXPECT_HR(fwx_connection_relay(c, a, b, hfx_done, &h, NULL), FWX_E_TERMINATING); /* it has ended */
    close(a);
    close(b);
    IFWXConnection_Release(c);
    ck_assert_int_eq(h.done_calls, 1);
    hfx_close(&h);
}
END_TEST

/* The time limits on a host's relay: the defaults' arguments are checked; a relay silent for
   the idle limit ends with its connection (one line naming the limit, counted); a connection
   whose filter holds the handshake ends at the handshake limit although bytes flow. */
START_TEST(host_relay_timeouts)
{
    for (int hold = 0; hold < 2; hold++) {
        hfx h;
        hfx_open(&h, hold);
        TU_EXPECT_HR(fwx_firewall_set_host_relay(h.fw, 1), FWX_S_OK);
        fwx_timeouts t;
        fwx_timeouts_init(&t);
        ck_assert_uint_eq(t.idle_s, FWX_TIMEOUTS_IDLE_DEFAULT);
        ck_assert_uint_eq(t.handshake_s, FWX_TIMEOUTS_HANDSHAKE_DEFAULT);
        TU_EXPECT_HR(fwx_firewall_set_timeouts(NULL, &t), FWX_E_POINTER);
        TU_EXPECT_HR(fwx_firewall_set_timeouts(h.fw, NULL), FWX_E_POINTER);
        t.struct_size = 4;
        TU_EXPECT_HR(fwx_firewall_set_timeouts(h.fw, &t), FWX_E_INVALIDARG);
        fwx_timeouts_init(&t);
        t.idle_s = FWX_TIMEOUTS_MAX + 1;
        TU_EXPECT_HR(fwx_firewall_set_timeouts(h.fw, &t), FWX_E_INVALIDARG);
        t.idle_s = hold ? 0 : 1;
        t.handshake_s = hold ? 1 : 0;
        TU_EXPECT_HR(fwx_firewall_set_timeouts(h.fw, &t), FWX_S_OK);
        IFWXConnection *c = NULL;
        TU_EXPECT_HR(hfx_connect(&h, &c), FWX_S_OK);
        if (hold) {
            IFWXConnection3 *c3 = NULL;
            TU_EXPECT_HR(IFWXConnection_QueryInterface(c, &IID_IFWXConnection3, (void **)&c3), FWX_S_OK);
            TU_EXPECT_HR(IFWXConnection3_SetHandshakePending(c3, 1), FWX_S_OK);
            IFWXConnection3_Release(c3);
        }
        TU_EXPECT_HR(fwx_connection_relay(c, h.gw_int, h.gw_ext, hfx_done, &h, NULL), FWX_S_OK);
        ck_assert_int_eq(send(h.client, "x", 1, 0), 1);
        ck_assert(run_until(&h.loop, fd_has_data, &h.server, RUN_LIMIT_MS, NULL));
        char x = 0;
        ck_assert_int_eq(recv(h.server, &x, 1, 0), 1);
        /* Bytes keep coming while the handshake is held: only its limit can end the relay. */
        for (int i = 0; hold && i < 200 && h.done_calls == 0; i++) {
            ck_assert_int_eq(send(h.client, "y", 1, 0), 1);
            run_until(&h.loop, hfx_is_done, &h, 50, NULL);
            (void)recv(h.server, &x, 1, MSG_DONTWAIT);
        }
        ck_assert_msg(run_until(&h.loop, hfx_is_done, &h, RUN_LIMIT_MS, NULL), "the relay outlived its limit");
        /* Without a filter the core aborts the relay; with one it detaches the filter first,
           which closes its sockets: the relay then ends as a finished one. */
        fwx_result want = hold ? FWX_S_OK : FWX_E_TERMINATING;
        ck_assert_msg(h.done_result == want, "done %s, log:\n%s", fwx_err_name(h.done_result), h.log);
        ck_assert_msg(strstr(h.log, hold ? "handshake timeout (1 s) reached" : "idle timeout (1 s) reached") != NULL,
                      "log:\n%s", h.log);
        ck_assert_msg(strstr(h.log, "client 10.0.0.8, protocol \"none\"") != NULL, "log:\n%s", h.log);
        uint64_t idle = 9, hs = 9;
        TU_EXPECT_HR(fwx_firewall_get_timeout_stats(h.fw, &idle, &hs), FWX_S_OK);
        ck_assert_uint_eq(idle, hold ? 0 : 1);
        ck_assert_uint_eq(hs, hold ? 1 : 0);
        ck_assert(run_until(&h.loop, fd_ended, &h.client, RUN_LIMIT_MS, NULL));
        IFWXConnection3 *c3 = NULL;
        TU_EXPECT_HR(IFWXConnection_QueryInterface(c, &IID_IFWXConnection3, (void **)&c3), FWX_S_OK);
        TU_EXPECT_HR(IFWXConnection3_SetHandshakePending(c3, 0), FWX_E_TERMINATING);
        IFWXConnection3_Release(c3);
        fwx_connection_close(c);
        hfx_close(&h);
    }
}
END_TEST

/* fwx_relay_abort: the host ends a relay; both sockets close, done() says FWX_E_TERMINATING,
   and the connection stays the host's (alive until it closes it). */
START_TEST(host_relay_abort)
{
    hfx h;
    hfx_open(&h, true);
    TU_EXPECT_HR(fwx_firewall_set_host_relay(h.fw, 1), FWX_S_OK);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(hfx_connect(&h, &c), FWX_S_OK);
    fwx_relay *r = NULL;
    TU_EXPECT_HR(fwx_connection_relay(c, h.gw_int, h.gw_ext, hfx_done, &h, &r), FWX_S_OK);
    fwx_relay_abort(r);
    ck_assert_int_eq(h.done_calls, 0); /* never from inside the call */
    ck_assert_msg(run_until(&h.loop, hfx_is_done, &h, RUN_LIMIT_MS, NULL), "the relay did not end");
    TU_EXPECT_HR(h.done_result, FWX_E_TERMINATING);
    ck_assert(run_until(&h.loop, fd_ended, &h.client, RUN_LIMIT_MS, NULL));
    ck_assert(run_until(&h.loop, fd_ended, &h.server, RUN_LIMIT_MS, NULL));
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert(!(flags & FWX_CONNECTION_TERMINATED));
    ck_assert_int_eq(h.f.detached, 0);
    fwx_connection_close(c);
    ck_assert_int_eq(h.f.detached, 1);
    hfx_close(&h);
    ck_assert_uint_eq(fwx_refcount_get(&h.f.refs), 1);
}
END_TEST

/* ---- the datagram path through its public calls (fwx/pump.h), as a backend calls it ---------- */

typedef struct dgsent {
    int calls;
    int32_t side[4];
    char data[4][32];
} dgsent;

static int dg_sent(void *arg, int32_t side, const uint8_t *data, size_t n)
{
    dgsent *t = arg;
    ck_assert_int_lt(t->calls, 4);
    ck_assert_uint_lt(n, sizeof t->data[0]);
    t->side[t->calls] = side;
    memcpy(t->data[t->calls], data, n);
    t->data[t->calls][n] = 0;
    t->calls++;
    return 0;
}
static bool dg_sent_n(void *arg) { return ((dgsent *)arg)->calls >= 2; }
static bool hf_is_closed(void *arg) { return ((hfilter *)arg)->closed; }

/* A UDP flow with the host's data filter (it upper-cases what the client sends): what the
   backend hands in on each side reaches the other side's send callback through the filter, is
   counted on the connection, and stopping the path fails the filter's pending Recvs. */
START_TEST(dgram_public_path)
{
    hfx h;
    hfx_open(&h, true);
    TU_EXPECT_HR(fwx_firewall_set_host_relay(h.fw, 1), FWX_S_OK);
    struct sockaddr_storage client = tu_addr("10.0.0.8:5000"), server = tu_addr("198.51.100.7:53");
    fwx_connection_params cp = {sizeof cp, fwx_Udp_Destination, FWX_PROTOCOL_UDP, TU_SA(server), tu_len(&server),
                                NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_connection_open(h.s, &cp, &c), FWX_S_OK);
    TU_EXPECT_HR(h.attach_hr, FWX_S_OK);
    ck_assert_uint_eq(fwx_connection_data_filters(c), 1);
    dgsent t = {0};
    fwx_dgram *dg = (fwx_dgram *)(uintptr_t)1;
    /* Refused with nothing taken: no callback, an address that is not one, no connection. */
    TU_EXPECT_HR(fwx_dgram_start(&h.loop, c, TU_SA(client), tu_len(&client), TU_SA(server), tu_len(&server), NULL,
                                 &t, &dg),
                 FWX_E_POINTER);
    ck_assert_ptr_null(dg);
    TU_EXPECT_HR(fwx_dgram_start(&h.loop, c, TU_SA(client), 4, TU_SA(server), tu_len(&server), dg_sent, &t, &dg),
                 FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_dgram_start(&h.loop, NULL, TU_SA(client), tu_len(&client), TU_SA(server), tu_len(&server),
                                 dg_sent, &t, &dg),
                 FWX_E_POINTER);
    ck_assert_int_eq(h.f.setsockets, 0);
    TU_EXPECT_HR(fwx_dgram_start(&h.loop, c, TU_SA(client), tu_len(&client), TU_SA(server), tu_len(&server), dg_sent,
                                 &t, &dg),
                 FWX_S_OK);
    ck_assert_ptr_nonnull(dg);
    ck_assert_int_eq(h.f.setsockets, 1); /* before the call returned */
    TU_EXPECT_HR(fwx_dgram_input(dg, FWX_DGRAM_INTERNAL, (const uint8_t *)"query", 5), FWX_S_OK);
    TU_EXPECT_HR(fwx_dgram_input(dg, FWX_DGRAM_EXTERNAL, (const uint8_t *)"answer", 6), FWX_S_OK);
    TU_EXPECT_HR(fwx_dgram_input(dg, 2, (const uint8_t *)"x", 1), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_dgram_input(dg, FWX_DGRAM_INTERNAL, NULL, 1), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_dgram_input(dg, FWX_DGRAM_INTERNAL, (const uint8_t *)"", 0), FWX_S_FALSE); /* would read as EOF */
    TU_EXPECT_HR(fwx_dgram_input(NULL, FWX_DGRAM_INTERNAL, (const uint8_t *)"x", 1), FWX_E_POINTER);
    ck_assert_int_eq(t.calls, 0); /* the filter runs from the loop, never inside input */
    ck_assert_msg(run_until(&h.loop, dg_sent_n, &t, RUN_LIMIT_MS, NULL), "the filter passed on %d datagrams", t.calls);
    ck_assert_int_eq(t.calls, 2);
    ck_assert_int_eq(t.side[0], FWX_DGRAM_EXTERNAL);
    ck_assert_str_eq(t.data[0], "QUERY");
    ck_assert_int_eq(t.side[1], FWX_DGRAM_INTERNAL);
    ck_assert_str_eq(t.data[1], "answer");
    fwx_dgram_stop(dg);
    ck_assert(run_until(&h.loop, hf_is_closed, &h.f, RUN_LIMIT_MS, NULL)); /* its Recvs failed: UV_ECANCELED */
    ck_assert_int_eq(t.calls, 2);
    hfx_finish(&h, c, FWX_PROTOCOL_UDP, 5, 6);
}
END_TEST

/* A filter socket made through the public call logs its IP filter's refusals in the firewall
   it was given; protocol and pointers are checked first. */
START_TEST(network_socket_public_args)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    IFWXNetworkSocket *s = (IFWXNetworkSocket *)(uintptr_t)1;
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, 99, &s), FWX_E_INVALIDARG);
    ck_assert_ptr_null(s);
    TU_EXPECT_HR(fwx_network_socket_new(NULL, NULL, FWX_PROTOCOL_TCP, &s), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_TCP, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_network_socket_new(&loop, NULL, FWX_PROTOCOL_UDP, &s), FWX_S_OK);
    void *same = NULL;
    TU_EXPECT_HR(IFWXNetworkSocket_QueryInterface(s, &IID_IFWXSocket, &same), FWX_S_OK);
    ck_assert_ptr_eq(same, s);
    ck_assert_uint_eq(IFWXNetworkSocket_Release(s), 1);
    TU_EXPECT_HR(IFWXNetworkSocket_QueryInterface(s, &IID_IFWXDataFilter, &same), FWX_E_NOINTERFACE);
    ck_assert_ptr_null(same);
    ck_assert_uint_eq(IFWXNetworkSocket_Release(s), 0);
    tu_loop_close_clean(&loop);
}
END_TEST

static Suite *usermode_suite(void)
{
    Suite *s = suite_create("usermode");
    struct {
        const char *name;
        const TTest *fn;
        int loops; /* 2: run for splice (0) and read/write (1) */
    } tests[] = {
        {"relay_small", relay_small, 2},
        {"relay_large_c2s", relay_large_c2s, 2},
        {"relay_large_s2c", relay_large_s2c, 2},
        {"relay_large_both", relay_large_both, 2},
        {"relay_half_close", relay_half_close, 2},
        {"relay_backpressure", relay_backpressure, 2},
        {"relay_peer_reset", relay_peer_reset, 2},
        {"relay_abort", relay_abort, 2},
        {"relay_counts_bytes", relay_counts_bytes, 2},
        {"relay_bad_args", relay_bad_args, 1},
        {"relay_small_takes_no_pipe", relay_small_takes_no_pipe, 1},
        {"relay_bulk_takes_a_pipe", relay_bulk_takes_a_pipe, 1},
        {"relay_pipe_pool_reuse", relay_pipe_pool_reuse, 1},
        {"relay_reactor_hold", relay_reactor_hold, 1},
        {"relay_half_close_after_splice", relay_half_close_after_splice, 2},
        {"filter_observer", filter_observer, 1},
        {"filter_modifier", filter_modifier, 1},
        {"relay_old_options", relay_old_options, 1},
        {"public_chain", public_chain, 1},
        {"filter_emulator", filter_emulator, 1},
        {"filter_chain", filter_chain, 1},
        {"filter_setsockets_fails", filter_setsockets_fails, 1},
        {"filter_close_fails_pending", filter_close_fails_pending, 1},
        {"filter_virtual_pair", filter_virtual_pair, 1},
        {"usock_tcp_connect_echo", usock_tcp_connect_echo, 1},
        {"usock_tcp_connect_refused_fails_ops", usock_tcp_connect_refused_fails_ops, 1},
        {"usock_tcp_listen_accept", usock_tcp_listen_accept, 1},
        {"usock_udp_sendto_recv", usock_udp_sendto_recv, 1},
        {"usock_udp_ipfilter_drops", usock_udp_ipfilter_drops, 1},
        {"usock_tcp_ipfilter_drops", usock_tcp_ipfilter_drops, 1},
        {"host_relay_refused_without_it", host_relay_refused_without_it, 1},
        {"host_relay_runs_filters", host_relay_runs_filters, 1},
        {"host_relay_ends_with_its_connection", host_relay_ends_with_its_connection, 1},
        {"host_relay_abort", host_relay_abort, 1},
        {"host_relay_timeouts", host_relay_timeouts, 1},
        {"dgram_public_path", dgram_public_path, 1},
        {"network_socket_public_args", network_socket_public_args, 1},
    };
    for (size_t i = 0; i < FWX__ARRAY_SIZE(tests); i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, tests[i].fn, 0, tests[i].loops);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    /* Peers write to sockets the pump may have closed. */
    signal(SIGPIPE, SIG_IGN);
    return tu_run_suite(usermode_suite());
}
