/*
 * fwx - the pump: carries one TCP connection between the client-side and server-side fds: as a
 * plain relay (recv/send while transfers are small, splice(2) once they are bulk), or through
 * the connection's data filters (see usermode.h).
 * SPDX-License-Identifier: MIT
 */
#include "backends/usermode/uio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define PUMP_DEFAULT_MAX (256u * 1024u)
#define PUMP_PIPE_MIN 4096u
#define PUMP_PIPE_MAX (1024u * 1024u)
/* Rounds of read+write per event and direction: enough to move a pipe's worth, few enough that
   one busy connection does not starve the loop (it is run again from the loop's next turn). */
#define PUMP_ROUNDS 16
/* A read into user memory that fills this many bytes says "bulk": the direction moves to
   splice(2), as HAProxy's splice-auto does. A shorter transfer costs one recv and one send and
   never a pipe. */
#define PUMP_SMALL (16u * 1024u)
/* What a copying relay (no_splice, or after a fallback) reads at once. */
#define PUMP_COPY (64u * 1024u)
/* Empty pipes a loop keeps for the next bulk transfer: no pipe2 + fcntl per connection. */
#define PUMP_POOL 32
#define PUMP_EVENTS 64
/* relay results besides 0 and -errno */
#define PUMP_FALLBACK 1 /* splice() said EINVAL: copy instead */
#define PUMP_AGAIN 2    /* rounds used up with work left: run again from the loop's next turn */
#define PUMP_BULK 3     /* the direction turned bulk: splice from now on */

enum { MODE_RELAY, MODE_FILTER };
enum { SIDE_INT = 0, SIDE_EXT = 1 };

typedef struct psock psock;
typedef struct rx rx;

/* The pump's IFWXSocket: a real fd (side) or one end of a virtual pair (peer). */
struct psock {
    IFWXSocket iface;
    atomic_uint refs;
    fwx_pump *pump; /* NULL once the pump ended */
    bool is_virtual;
    int side;   /* real: SIDE_INT / SIDE_EXT */
    psock *peer; /* virtual: the other end */
    fwx__uio *recv;
    fwx__uio_queue sendq;
    bool closed, shut_wr_req, shut_wr_done, rd_eof, failed;
};

/* One direction of the relay: dir 0 carries internal -> external, dir 1 the reverse; the
   source of direction d is side d.
   Counts are 32 bits: what a direction holds is bounded by its pipe (PUMP_PIPE_MAX, or the
   size F_SETPIPE_SZ gave, at most the kernel's pipe-max-size) or by one read (PUMP_COPY); two
   directions per relayed connection, so 16 bytes each matter (issue 12). */
typedef struct pdir {
    uint8_t *buf;    /* copy: what the destination did not take yet, allocated while it holds bytes */
    int pipe[2];     /* bulk: taken from the loop's pool while it holds bytes */
    uint32_t pipe_cap;
    uint32_t held;   /* bytes in the pipe or in buf */
    uint32_t head;
    bool bulk;       /* splice(2) from now on */
    bool full;       /* splice: the pipe took nothing more */
    bool eof;        /* the source said EOF */
    bool shut;       /* done: EOF passed on (or the pump's close will pass it on) */
} pdir;

/*
 * The relay's reactor, one per loop: an epoll set of its own, watched by one uv_poll handle.
 * Each relayed fd is added once, edge-triggered for reading and writing, and stays armed until
 * it is closed: no epoll_ctl as a connection's directions fill and drain, and none per uv_poll
 * handle set up (libuv checks each new fd with an ADD and a DEL, and sets O_NONBLOCK again).
 * Readiness is remembered per fd (rd_ready / wr_ready) and cleared only when a call says
 * EAGAIN, or a read comes back short: a short read emptied the socket, and anything arriving
 * later is a new edge. The reactor closes itself when its last pump ends, so a loop can close.
 */
struct rx {
    uv_loop_t *loop;
    int epfd;
    uv_poll_t poll;
    uv_idle_t idle; /* runs the ready list: ends, and relays whose rounds ran out */
    bool idle_on, closing;
    int handles;
    unsigned users; /* pumps, connectors and holds: the reactor closes when none is left */
    unsigned holds; /* fwx_pump_reactor_hold()s among the users */
    fwx_pump *ready_head, *ready_tail;
    fwx_pump_connector *grave; /* ended connectors, freed from the idle callback */
    int n_pool;
    int pool[PUMP_POOL][2];
    size_t pool_cap[PUMP_POOL];
    rx *next;
    uint8_t scratch[PUMP_COPY];
};

/* A connect under way on the reactor (fwx_pump_connect). */
struct fwx_pump_connector {
    rx *rx;
    int fd;
    fwx_pump_connect_cb cb; /* NULL once the handshake ended */
    void *arg;
    uint32_t first_events;   /* what the handshake's event said besides "writable" */
    fwx_pump *pump;          /* handed over: the fd's events are this pump's external side */
    bool buried;
    fwx_pump_connector *grave_next;
};

/* epoll_event.data: a pump's address | side (bit 0), or a connector's | CONNECTOR_TAG. */
#define CONNECTOR_TAG 2u

/* Reactors of this thread's loops (a loop is used from one thread only). */
static _Thread_local rx *rx_list;

/* The filter path's part of a pump (fwx_pump.f). */
struct pump_filt {
    int handles; /* open libuv handles */
    uv_poll_t poll[2];
    bool poll_live[2]; /* initialised and not yet closing */
    int poll_events[2];
    uv_idle_t idle; /* delivers completions and finishes the end */
    bool idle_on;
    fwx__uio_queue cq;
    psock **socks;
    size_t n_socks;
    psock *real[2];
    uint32_t buffer_size;
};

/* One per relayed connection: pointers first, the flags as bits last, so that a plain relay's
   pump is 144 bytes (a 160-byte heap chunk; 200 and 208 before, issue 12, part 4). */
struct fwx_pump {
    IFWXConnection *conn; /* +1, may be NULL */
    fwx_pump_done_cb done;
    void *arg;
    /* relay */
    rx *rx;
    fwx_pump_connector *ext_connector; /* the external fd's registration, when handed over */
    fwx_pump *ready_next;
    /* What a direction may hold. Any bound above 4 GiB is kept as 4 GiB: no direction holds
       more than a pipe, at most PUMP_PIPE_MAX, so the relay behaves the same. */
    uint32_t max_buffered;
    int err;
    int fd[2];
    pdir dir[2];
    bool rd_ready[2], wr_ready[2];
    bool rdhup[2]; /* the peer's FIN was seen (and no error or hang-up) */
    bool hup[2];   /* an error or hang-up was seen: read on to learn which */
    unsigned mode : 1; /* MODE_RELAY or MODE_FILTER */
    bool ending : 1, finishing : 1;
    bool can_splice : 1, fresh : 1, queued : 1;
    /* The filter path's part: allocated only for a pump with data filters, so that a plain
       relay's pump (one per relayed connection) is small (issue 12). */
    struct pump_filt f[];
};

_Static_assert(sizeof(fwx_pump) <= 144, "a plain relay's pump grew: see issue 12 in bench/README.md");

static const IFWXSocketVtbl psock_vtbl;
static void pump_end(fwx_pump *p, int err);
static void update_polls(fwx_pump *p);
static void update_polls_how(fwx_pump *p, bool strict);
static void filter_check_end(fwx_pump *p);

static void kick(fwx_pump *p);

static void count(fwx_pump *p, int dir, size_t n)
{
    if (p->conn != NULL && n > 0)
        fwx_connection_count_bytes(p->conn, dir == 0 ? n : 0, dir == 1 ? n : 0);
}

/* Bytes written out are activity too (lib/core/timeouts.c): a slow reader draining what the
   pump holds must not look idle. */
static void sent(fwx_pump *p)
{
    if (p->conn != NULL)
        fwx_connection_count_bytes(p->conn, 0, 0); /* no bytes to count: the time of activity */
}

static void complete_later(fwx_pump *p, fwx__uio *op)
{
    fwx__uioq_push(&p->f->cq, op);
    kick(p);
}

/* ---- the relay's reactor ----------------------------------------------------------------- */

static void relay_step(fwx_pump *p);
static void relay_finish(fwx_pump *p);

static void rx_closed(uv_handle_t *h)
{
    rx *r = h->data;
    if (--r->handles > 0)
        return;
    while (r->grave != NULL) {
        fwx_pump_connector *c = r->grave;
        r->grave = c->grave_next;
        free(c);
    }
    for (int i = 0; i < r->n_pool; i++) {
        close(r->pool[i][0]);
        close(r->pool[i][1]);
    }
    close(r->epfd); /* only now: libuv must not poll a closed fd */
    free(r);
}

static void rx_close(rx *r)
{
    for (rx **pp = &rx_list; *pp != NULL; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->closing = true;
    uv_close((uv_handle_t *)&r->poll, rx_closed);
    uv_close((uv_handle_t *)&r->idle, rx_closed);
}

static void rx_idle_cb(uv_idle_t *h)
{
    rx *r = h->data;
    while (r->grave != NULL) {
        fwx_pump_connector *c = r->grave;
        r->grave = c->grave_next;
        free(c);
    }
    /* Only what is queued now: a pump queued by these calls waits for the next turn. */
    fwx_pump *list = r->ready_head;
    r->ready_head = r->ready_tail = NULL;
    while (list != NULL) {
        fwx_pump *p = list;
        list = p->ready_next;
        p->ready_next = NULL;
        p->queued = false;
        if (p->ending)
            relay_finish(p);
        else
            relay_step(p);
    }
    if (r->ready_head == NULL) {
        uv_idle_stop(&r->idle);
        r->idle_on = false;
        if (r->users == 0) {
            rx_close(r);
        } else if (r->users == r->holds) {
            /* Only held (fwx_pump_reactor_hold), no relay left: the pooled pipes go, so a
               reactor kept between relays holds no descriptor but its epoll set. */
            for (; r->n_pool > 0; r->n_pool--) {
                close(r->pool[r->n_pool - 1][0]);
                close(r->pool[r->n_pool - 1][1]);
            }
        }
    }
}

static void rx_wake(rx *r)
{
    if (!r->idle_on) {
        r->idle_on = true;
        uv_idle_start(&r->idle, rx_idle_cb);
    }
}

/* Runs p again from the loop's next turn (its end, or what its rounds left). */
static void rx_schedule(fwx_pump *p)
{
    rx *r = p->rx;
    if (p->queued)
        return;
    p->queued = true;
    if (r->ready_tail != NULL)
        r->ready_tail->ready_next = p;
    else
        r->ready_head = p;
    r->ready_tail = p;
    rx_wake(r);
}

/* Ends a connector: out of the epoll set (unless its fd is being closed, which takes it out),
   freed from the idle callback (an event of the batch being handled may still name it). */
static void connector_bury(fwx_pump_connector *c, bool del)
{
    rx *r = c->rx;
    if (c->buried)
        return;
    if (del)
        (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->buried = true;
    c->cb = NULL;
    c->grave_next = r->grave;
    r->grave = c;
    r->users--;
    rx_wake(r);
}

static void pump_event(fwx_pump *p, int side, uint32_t e);

static void connector_event(fwx_pump_connector *c, uint32_t e)
{
    if (c->pump != NULL) {
        pump_event(c->pump, SIDE_EXT, e);
        return;
    }
    if (c->cb == NULL)
        return;
    int status = 0;
    if (e & (EPOLLERR | EPOLLHUP)) {
        /* Only a failure needs SO_ERROR's word; writable alone says connected. */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        status = err != 0 ? -err : UV_ECONNREFUSED;
    } else if (!(e & EPOLLOUT)) {
        return;
    }
    fwx_pump_connect_cb cb = c->cb;
    void *arg = c->arg;
    c->cb = NULL;
    if (status != 0) {
        connector_bury(c, true);
        cb(arg, status);
        return;
    }
    /* Connected: the callback hands the fd, registration and all, to a pump
       (fwx_pump_start_connected) or cancels; if it did neither, the registration goes. */
    c->first_events = e;
    cb(arg, 0);
    if (c->pump == NULL)
        connector_bury(c, true);
}

static void rx_poll_cb(uv_poll_t *h, int status, int events)
{
    rx *r = h->data;
    (void)status;
    (void)events;
    struct epoll_event ev[PUMP_EVENTS];
    int n = epoll_wait(r->epfd, ev, PUMP_EVENTS, 0);
    /* A pump is freed only from the idle callback, so every pointer of this batch is live. */
    for (int i = 0; i < n; i++) {
        uint32_t e = ev[i].events;
        if (ev[i].data.u64 & CONNECTOR_TAG) {
            connector_event((fwx_pump_connector *)(uintptr_t)(ev[i].data.u64 & ~(uint64_t)CONNECTOR_TAG), e);
            continue;
        }
        pump_event((fwx_pump *)(uintptr_t)(ev[i].data.u64 & ~(uint64_t)1), (int)(ev[i].data.u64 & 1), e);
    }
}

/* What an event says about a side, remembered until a call says otherwise. */
static void pump_mark(fwx_pump *p, int side, uint32_t e)
{
    if (e & (EPOLLERR | EPOLLHUP))
        p->hup[side] = true;
    p->rdhup[side] = (e & EPOLLRDHUP) && !p->hup[side];
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        p->rd_ready[side] = true;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        p->wr_ready[side] = true;
}

static void pump_event(fwx_pump *p, int side, uint32_t e)
{
    if (p->ending)
        return;
    pump_mark(p, side, e);
    relay_step(p);
}

/* This loop's reactor, made on first use; NULL if it cannot be (logged by the caller's result). */
static rx *rx_get(uv_loop_t *loop)
{
    for (rx *r = rx_list; r != NULL; r = r->next)
        if (r->loop == loop)
            return r;
    rx *r = malloc(sizeof *r);
    if (r == NULL)
        return NULL;
    memset(r, 0, offsetof(rx, scratch));
    r->loop = loop;
    if ((r->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        free(r);
        return NULL;
    }
    if (uv_poll_init(loop, &r->poll, r->epfd) != 0) {
        close(r->epfd);
        free(r);
        return NULL;
    }
    r->poll.data = r;
    r->handles = 2;
    uv_idle_init(loop, &r->idle); /* cannot fail */
    r->idle.data = r;
    if (uv_poll_start(&r->poll, UV_READABLE, rx_poll_cb) != 0) {
        r->closing = true;
        uv_close((uv_handle_t *)&r->poll, rx_closed);
        uv_close((uv_handle_t *)&r->idle, rx_closed);
        return NULL;
    }
    r->next = rx_list;
    rx_list = r;
    return r;
}

/* A pipe for a bulk direction: from the pool, else a new one sized to the pump's bound. */
static int pipe_get(fwx_pump *p, pdir *D)
{
    rx *r = p->rx;
    if (r->n_pool > 0) {
        r->n_pool--;
        D->pipe[0] = r->pool[r->n_pool][0];
        D->pipe[1] = r->pool[r->n_pool][1];
        D->pipe_cap = r->pool_cap[r->n_pool];
        return 0;
    }
    if (pipe2(D->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    int want = (int)(p->max_buffered < PUMP_PIPE_MIN ? PUMP_PIPE_MIN
                     : p->max_buffered > PUMP_PIPE_MAX ? PUMP_PIPE_MAX
                                                      : p->max_buffered);
    /* F_SETPIPE_SZ answers the size it set; a refusal leaves the default, still a bound. */
    int got = fcntl(D->pipe[1], F_SETPIPE_SZ, want);
    D->pipe_cap = got > 0 ? (uint32_t)got : 65536;
    return 0;
}

/* Gives an empty pipe back to the pool (one with bytes in it is closed). */
static void pipe_put(fwx_pump *p, pdir *D)
{
    rx *r = p->rx;
    if (D->pipe[0] < 0)
        return;
    if (D->held == 0 && r->n_pool < PUMP_POOL && !r->closing) {
        r->pool[r->n_pool][0] = D->pipe[0];
        r->pool[r->n_pool][1] = D->pipe[1];
        r->pool_cap[r->n_pool] = D->pipe_cap;
        r->n_pool++;
    } else {
        close(D->pipe[0]);
        close(D->pipe[1]);
    }
    D->pipe[0] = D->pipe[1] = -1;
}

/* ---- the relay: small transfers, and the copying relay ----------------------------------- */

static int copy_dir(fwx_pump *p, int d)
{
    pdir *D = &p->dir[d];
    int si = d, di = 1 - d, src = p->fd[si], dst = p->fd[di];
    size_t chunk = p->can_splice ? PUMP_SMALL : PUMP_COPY;
    if (chunk > p->max_buffered)
        chunk = p->max_buffered;
    uint8_t *scratch = p->rx->scratch;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        if (D->held > 0) {
            if (!p->wr_ready[di])
                return 0;
            ssize_t n = send(dst, D->buf + D->head, D->held, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN)
                    p->wr_ready[di] = false;
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
            }
            sent(p);
            D->held -= (uint32_t)n;
            D->head += (uint32_t)n;
            if (D->held > 0) {
                p->wr_ready[di] = false; /* a short send: the socket's buffer is full */
                return 0;
            }
            free(D->buf);
            D->buf = NULL;
            D->head = 0;
        }
        if (D->eof || !p->rd_ready[si])
            return 0;
        if (D->bulk)
            return PUMP_BULK;
        ssize_t n = recv(src, scratch, chunk, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN)
                p->rd_ready[si] = false;
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -errno;
        }
        if (n == 0) {
            D->eof = true;
            return 0;
        }
        count(p, d, (size_t)n);
        if ((size_t)n < chunk && !p->hup[si]) {
            /* Short: the socket is empty now, and after the peer's FIN nothing more comes. */
            p->rd_ready[si] = false;
            D->eof = p->rdhup[si];
        } else if ((size_t)n == chunk && p->can_splice) {
            D->bulk = true;
        }
        size_t m = 0;
        if (p->wr_ready[di]) {
            ssize_t w = send(dst, scratch, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                return -errno;
            if (w > 0) {
                m = (size_t)w;
                sent(p);
            }
        }
        if (m < (size_t)n) {
            /* Kept until the destination takes it; nothing more is read meanwhile. */
            p->wr_ready[di] = false;
            if ((D->buf = malloc(chunk)) == NULL)
                return UV_ENOMEM;
            memcpy(D->buf, scratch + m, (size_t)n - m);
            D->held = (uint32_t)((size_t)n - m);
            D->head = 0;
            return 0;
        }
    }
    return PUMP_AGAIN;
}

/* ---- the relay: bulk by splice ----------------------------------------------------------- */

static int splice_dir(fwx_pump *p, int d)
{
    pdir *D = &p->dir[d];
    int si = d, di = 1 - d, src = p->fd[si], dst = p->fd[di];
    if (D->pipe[0] < 0) {
        if (D->eof || !p->rd_ready[si])
            return 0;
        int rc = pipe_get(p, D);
        if (rc == -EMFILE || rc == -ENFILE) {
            /* Out of descriptors: copy through user memory for now rather than drop a
               connection that works; the next full read tries splice again. */
            D->bulk = false;
            return copy_dir(p, d);
        }
        if (rc < 0)
            return rc;
    }
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        bool progress = false;
        if (D->held > 0 && p->wr_ready[di]) {
            ssize_t n = splice(D->pipe[0], NULL, dst, NULL, D->held, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                sent(p);
                D->held -= (uint32_t)n;
                D->full = false;
                progress = true;
            } else if (n < 0 && errno == EAGAIN) {
                p->wr_ready[di] = false;
            } else if (n < 0 && errno != EINTR) {
                return -errno;
            }
        }
        /* The pipe's size counts slots, and one slot may hold a whole TCP page fragment (up
           to 32 KiB on loopback), so the bytes asked for are what bounds the pipe. */
        size_t want = D->held < p->max_buffered ? p->max_buffered - D->held : 0;
        if (want > D->pipe_cap)
            want = D->pipe_cap;
        if (!D->eof && want > 0 && !D->full && p->rd_ready[si]) {
            ssize_t n = splice(src, NULL, D->pipe[1], NULL, want, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                D->held += (uint32_t)n;
                count(p, d, (size_t)n);
                progress = true;
            } else if (n == 0) {
                D->eof = true;
                progress = true;
            } else if (errno == EAGAIN) {
                /* Either the socket is empty or the pipe is full, and splice cannot say which:
                   with bytes in the pipe, assume full and try again once it drained. */
                if (D->held > 0)
                    D->full = true;
                else
                    p->rd_ready[si] = false;
            } else if (errno == EINVAL && D->held == 0) {
                return PUMP_FALLBACK;
            } else if (errno != EINTR) {
                return -errno;
            }
        }
        if (!progress)
            return 0;
    }
    return PUMP_AGAIN;
}

static void relay_dir(fwx_pump *p, int d)
{
    pdir *D = &p->dir[d];
    /* A direction that just turned bulk first writes out what its last read left. */
    int r = D->bulk && D->buf == NULL ? splice_dir(p, d) : copy_dir(p, d);
    if (r == PUMP_BULK)
        r = splice_dir(p, d);
    if (r == PUMP_FALLBACK) {
        /* splice(2) does not take these fds: copy through user memory from now on. */
        p->can_splice = false;
        D->bulk = false;
        pipe_put(p, D);
        r = copy_dir(p, d);
    }
    if (r == PUMP_AGAIN)
        rx_schedule(p);
    else if (r < 0) {
        pump_end(p, r);
        return;
    }
    if (D->held == 0)
        pipe_put(p, D); /* an idle connection holds no pipe */
    if (D->eof && D->held == 0 && !D->shut) {
        /* Half-close: the source is done and everything it sent is written. When the other
           direction is done too, the pump ends now and its close() sends the FIN. */
        D->shut = true;
        if (!p->dir[1 - d].shut && shutdown(p->fd[1 - d], SHUT_WR) < 0 && errno != ENOTCONN)
            pump_end(p, -errno);
    }
}

static void relay_step(fwx_pump *p)
{
    for (int d = 0; d < 2 && !p->ending; d++)
        relay_dir(p, d);
    if (!p->ending && p->dir[0].shut && p->dir[1].shut)
        pump_end(p, 0);
}

/* Closes what the relay holds and reports its end; called from the reactor's idle callback. */
static void relay_finish(fwx_pump *p)
{
    rx *r = p->rx;
    for (int i = 0; i < 2; i++) {
        if (p->fd[i] < 0)
            continue;
        /* close() takes the fd out of the epoll set unless a copy of it lives elsewhere: fds
           of unknown history are taken out first, so no event can name a freed pump. */
        if (!p->fresh)
            (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, p->fd[i], NULL);
        close(p->fd[i]);
        p->fd[i] = -1;
    }
    if (p->ext_connector != NULL)
        connector_bury(p->ext_connector, false); /* its fd is closed: out of the set already */
    p->ext_connector = NULL;
    for (int d = 0; d < 2; d++) {
        pipe_put(p, &p->dir[d]);
        free(p->dir[d].buf);
    }
    if (p->conn != NULL)
        IFWXConnection_Release(p->conn);
    p->conn = NULL;
    p->done(p, p->arg);
    free(p);
    r->users--;
}

/* ---- the filter path: real sockets ------------------------------------------------------- */

static void real_read(fwx_pump *p, psock *s)
{
    fwx__uio *op = s->recv;
    uint8_t *mem;
    uint32_t cap;
    if (!fwx__uio_space(op->buf, &mem, &cap)) {
        s->recv = NULL;
        fwx__uio_fail(op, UV_EINVAL);
        complete_later(p, op);
        return;
    }
    ssize_t n;
    do
        n = read(p->fd[s->side], mem, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    s->recv = NULL;
    if (n < 0) {
        fwx__uio_fail(op, -errno);
        s->failed = true;
        complete_later(p, op);
        pump_end(p, -errno);
        return;
    }
    if (n == 0)
        s->rd_eof = true;
    count(p, s->side == SIDE_INT ? 0 : 1, (size_t)n);
    fwx__uio_recv_done(op, (uint32_t)n);
    complete_later(p, op);
}

/* Writes queued sends; after the last, a requested shutdown. */
static void real_flush(fwx_pump *p, psock *s)
{
    while (!fwx__uioq_empty(&s->sendq)) {
        fwx__uio *op = s->sendq.head;
        uint8_t *data;
        uint32_t len;
        if (!fwx__uio_data(op->buf, &data, &len)) {
            fwx__uio_fail(op, UV_EINVAL);
            complete_later(p, fwx__uioq_pop(&s->sendq));
            continue;
        }
        if (op->off < len) {
            ssize_t n = send(p->fd[s->side], data + op->off, len - op->off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n > 0)
                sent(p);
            if (n < 0) {
                int err = -errno;
                s->failed = true;
                while (!fwx__uioq_empty(&s->sendq)) {
                    fwx__uio *f = fwx__uioq_pop(&s->sendq);
                    fwx__uio_fail(f, err);
                    complete_later(p, f);
                }
                pump_end(p, err);
                return;
            }
            op->off += (uint32_t)n;
            if (op->off < len)
                return;
        }
        complete_later(p, fwx__uioq_pop(&s->sendq));
    }
    if (s->shut_wr_req && !s->shut_wr_done) {
        s->shut_wr_done = true;
        (void)shutdown(p->fd[s->side], SHUT_WR);
    }
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    fwx_pump *p = h->data;
    int i = h == &p->f->poll[SIDE_INT] ? SIDE_INT : SIDE_EXT;
    if (p->ending)
        return;
    if (status < 0) {
        pump_end(p, status);
        return;
    }
    /* Only the filter path polls through libuv; the relay has its reactor. */
    psock *s = p->f->real[i];
    /* Readable with no Recv pending: the filter has not asked again yet, so reading stops for
       now (the poll is level-triggered: it would fire on every turn). */
    bool unwanted = (events & UV_READABLE) && s->recv == NULL;
    if ((events & UV_READABLE) && s->recv != NULL)
        real_read(p, s);
    if (!p->ending && (events & UV_WRITABLE))
        real_flush(p, s);
    if (!p->ending)
        filter_check_end(p);
    if (!p->ending)
        update_polls_how(p, unwanted);
}

static void update_polls(fwx_pump *p) { update_polls_how(p, false); }

/* Arms each real socket's poll for what its psock waits for. Reading stays armed after a Recv
   completed (unless `strict`): the filter nearly always asks again from that completion, before
   the loop polls, and disarming and rearming would cost two epoll_ctl a line (issue 12); if it
   did not, the next readable event finds no Recv and disarms then (poll_cb). */
static void update_polls_how(fwx_pump *p, bool strict)
{
    for (int i = 0; i < 2; i++) {
        if (!p->f->poll_live[i])
            continue;
        int ev = 0;
        if (!p->ending) {
            psock *s = p->f->real[i];
            if (s->recv != NULL || (!strict && !s->rd_eof && !s->closed && (p->f->poll_events[i] & UV_READABLE)))
                ev |= UV_READABLE;
            if (!fwx__uioq_empty(&s->sendq))
                ev |= UV_WRITABLE;
        }
        if (ev == p->f->poll_events[i])
            continue;
        p->f->poll_events[i] = ev;
        if (ev == 0)
            uv_poll_stop(&p->f->poll[i]);
        else if (uv_poll_start(&p->f->poll[i], ev, poll_cb) < 0)
            pump_end(p, UV_EBADF);
    }
}

/* ---- the end ----------------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    fwx_pump *p = h->data;
    if ((uv_handle_t *)&p->f->poll[SIDE_INT] == h || (uv_handle_t *)&p->f->poll[SIDE_EXT] == h) {
        /* The fd goes only after its poll handle (libuv: never close a polled fd). */
        int i = (uv_handle_t *)&p->f->poll[SIDE_INT] == h ? SIDE_INT : SIDE_EXT;
        if (p->fd[i] >= 0)
            close(p->fd[i]);
        p->fd[i] = -1;
    }
    if (--p->f->handles > 0)
        return;
    for (size_t i = 0; i < p->f->n_socks; i++) {
        psock *s = p->f->socks[i];
        s->pump = NULL;
        s->peer = NULL;
        IFWXSocket_Release(&s->iface);
    }
    free(p->f->socks);
    if (p->conn != NULL)
        IFWXConnection_Release(p->conn);
    p->conn = NULL;
    p->done(p, p->arg);
    free(p);
}

static void close_poll(fwx_pump *p, int i)
{
    if (!p->f->poll_live[i])
        return;
    p->f->poll_live[i] = false;
    uv_close((uv_handle_t *)&p->f->poll[i], handle_closed);
}

static void finish(fwx_pump *p)
{
    if (p->finishing)
        return;
    p->finishing = true;
    close_poll(p, SIDE_INT);
    close_poll(p, SIDE_EXT);
    uv_close((uv_handle_t *)&p->f->idle, handle_closed);
}

static void deliver_one(void *op) { fwx__uio_deliver(op); }

static void idle_cb(uv_idle_t *h)
{
    fwx_pump *p = h->data;
    /* Only what is queued now: completions queued by these callbacks wait for the next turn. */
    fwx__uio_queue batch = p->f->cq;
    p->f->cq.head = p->f->cq.tail = NULL;
    fwx__uio *op;
    /* Each completion is a call into the connection's data filters (the core then knows which
       connection they work for, and the watchdog times their plugin). */
    while ((op = fwx__uioq_pop(&batch)) != NULL)
        fwx_connection_data_call(p->conn, deliver_one, op);
    if (fwx__uioq_empty(&p->f->cq)) {
        uv_idle_stop(&p->f->idle);
        p->f->idle_on = false;
        if (p->ending)
            finish(p);
    }
}

static void kick(fwx_pump *p)
{
    if (!p->f->idle_on && !p->finishing) {
        p->f->idle_on = true;
        uv_idle_start(&p->f->idle, idle_cb);
    }
}

static void sock_kill(psock *s, int err);

static void pump_end(fwx_pump *p, int err)
{
    if (p->ending)
        return;
    p->ending = true;
    p->err = err;
    if (p->mode == MODE_RELAY) {
        /* From the reactor's idle callback: done() never runs inside fwx_pump_start. */
        rx_schedule(p);
        return;
    }
    for (int i = 0; i < 2; i++)
        if (p->f->poll_live[i] && p->f->poll_events[i] != 0) {
            uv_poll_stop(&p->f->poll[i]);
            p->f->poll_events[i] = 0;
        }
    for (size_t i = 0; i < p->f->n_socks; i++)
        sock_kill(p->f->socks[i], UV_ECANCELED);
    /* Through the idle handle: done() never runs inside fwx_pump_start or a filter's call. */
    kick(p);
}

void fwx_pump_abort(fwx_pump *p)
{
    if (p != NULL)
        pump_end(p, UV_ECANCELED);
}

size_t fwx_pump_buffered(const fwx_pump *p)
{
    if (p == NULL || p->mode == MODE_FILTER)
        return 0;
    return (size_t)p->dir[0].held + p->dir[1].held;
}

int32_t fwx_pump_spliced(const fwx_pump *p) { return p != NULL && p->mode == MODE_RELAY && p->can_splice; }

int fwx_pump_error(const fwx_pump *p) { return p != NULL ? p->err : 0; }

/* ---- the filter path: the pump's IFWXSocket ---------------------------------------------- */

static psock *impl_from_IFWXSocket(IFWXSocket *iface) { return fwx__container_of(iface, psock, iface); }

static bool sock_live(psock *s) { return s->pump != NULL && !s->pump->ending && !s->closed; }

/* Moves data from a's queued sends into b's pending Recv; EOF when a is done sending. */
static void vflow(psock *a, psock *b)
{
    fwx_pump *p = b->pump;
    if (b->closed) {
        /* Nobody will ever read: what a sends fails. */
        while (!fwx__uioq_empty(&a->sendq)) {
            fwx__uio *f = fwx__uioq_pop(&a->sendq);
            fwx__uio_fail(f, UV_EPIPE);
            complete_later(p, f);
        }
        return;
    }
    while (b->recv != NULL) {
        fwx__uio *r = b->recv;
        if (!fwx__uioq_empty(&a->sendq)) {
            uint8_t *dst;
            uint32_t cap, got = 0;
            if (!fwx__uio_space(r->buf, &dst, &cap)) {
                b->recv = NULL;
                fwx__uio_fail(r, UV_EINVAL);
                complete_later(p, r);
                return;
            }
            /* Fill greedily: a small Recv buffer takes a Send in pieces, a large one several. */
            while (got < cap && !fwx__uioq_empty(&a->sendq)) {
                fwx__uio *s = a->sendq.head;
                uint8_t *src;
                uint32_t len;
                if (!fwx__uio_data(s->buf, &src, &len)) {
                    fwx__uio_fail(s, UV_EINVAL);
                    complete_later(p, fwx__uioq_pop(&a->sendq));
                    continue;
                }
                uint32_t n = len - s->off < cap - got ? len - s->off : cap - got;
                memcpy(dst + got, src + s->off, n);
                got += n;
                s->off += n;
                if (s->off == len)
                    complete_later(p, fwx__uioq_pop(&a->sendq));
            }
            if (got == 0)
                continue; /* only empty sends: they completed; look again */
            b->recv = NULL;
            fwx__uio_recv_done(r, got);
            complete_later(p, r);
        } else if (a->shut_wr_req || a->closed || b->rd_eof) {
            a->shut_wr_done = a->shut_wr_req;
            b->rd_eof = true;
            b->recv = NULL;
            fwx__uio_recv_done(r, 0);
            complete_later(p, r);
        } else {
            break;
        }
    }
    if (fwx__uioq_empty(&a->sendq) && a->shut_wr_req)
        a->shut_wr_done = true;
}

/* Fails what is pending on s; the pump's end and Close share it. */
static void sock_kill(psock *s, int err)
{
    fwx_pump *p = s->pump;
    if (s->closed)
        return;
    s->closed = true;
    if (s->recv != NULL)
        complete_later(p, fwx__uio_end_pending(&s->recv, err));
    while (!fwx__uioq_empty(&s->sendq)) {
        fwx__uio *f = fwx__uioq_pop(&s->sendq);
        fwx__uio_fail(f, err);
        complete_later(p, f);
    }
    if (s->is_virtual && s->peer != NULL && !s->peer->closed)
        vflow(s, s->peer); /* the other end: EOF for its Recv */
    if (s->is_virtual && s->peer != NULL && !s->peer->closed)
        vflow(s->peer, s); /* and failure for its Sends */
}

static fwx_result psock_QueryInterface(IFWXSocket *This, const fwx_guid *riid, void **ppv)
{
    return fwx__uio_sock_query(This, false, riid, ppv);
}

static uint32_t psock_AddRef(IFWXSocket *This)
{
    return atomic_fetch_add(&impl_from_IFWXSocket(This)->refs, 1) + 1;
}

static uint32_t psock_Release(IFWXSocket *This)
{
    psock *s = impl_from_IFWXSocket(This);
    uint32_t n = atomic_fetch_sub(&s->refs, 1) - 1;
    /* The pump keeps a reference until it ends, so the last one goes after it: nothing pending. */
    if (n == 0)
        free(s);
    return n;
}

static fwx_result psock_Send(IFWXSocket *This, IFWXIOBuffer *pBuffer, IFWXIOCompletion *pCompletion, uintptr_t ud)
{
    psock *s = impl_from_IFWXSocket(This);
    fwx__uio *op;
    fwx_result hr = fwx__uio_send_begin(sock_live(s) && !s->shut_wr_req, pBuffer, pCompletion, ud, &op);
    if (FWX_FAILED(hr))
        return hr;
    bool first = fwx__uioq_empty(&s->sendq);
    fwx__uioq_push(&s->sendq, op);
    if (s->is_virtual) {
        vflow(s, s->peer);
    } else {
        /* A real socket is nearly always writable: write now rather than arm the poll for
           writing and wait for the loop to say so (two epoll_ctl and a loop turn before a
           rewritten FTP line left, issue 12). Only when nothing was queued before, so bytes
           keep their order; the completion still comes from the idle callback. */
        if (first)
            real_flush(s->pump, s);
        if (!s->pump->ending)
            update_polls(s->pump);
    }
    return FWX_S_OK;
}

static fwx_result psock_SendTo(IFWXSocket *This, IFWXIOBuffer *pBuffer, const struct sockaddr *a, uint32_t al,
                               IFWXIOCompletion *pCompletion, uintptr_t ud)
{
    (void)a;
    (void)al;
    return psock_Send(This, pBuffer, pCompletion, ud);
}

static fwx_result psock_Recv(IFWXSocket *This, IFWXIOBuffer *pBuffer, IFWXIOCompletion *pCompletion, uintptr_t ud)
{
    psock *s = impl_from_IFWXSocket(This);
    bool live = sock_live(s);
    /* Read at each Recv: the filter may have called SetBufferSize since the pump started. */
    uint32_t size = live ? fwx_connection_buffer_size(s->pump->conn) : 0;
    if (live && size == 0)
        size = s->pump->f->buffer_size;
    fwx__uio *op;
    fwx_result hr = fwx__uio_recv_begin(live, s->recv != NULL, pBuffer, size, pCompletion, ud, &op);
    if (FWX_FAILED(hr))
        return hr;
    if (s->rd_eof) {
        fwx__uio_recv_done(op, 0);
        complete_later(s->pump, op);
        return FWX_S_OK;
    }
    s->recv = op;
    if (s->is_virtual)
        vflow(s->peer, s);
    else
        update_polls(s->pump);
    return FWX_S_OK;
}

static fwx_result psock_Shutdown(IFWXSocket *This, int32_t How)
{
    psock *s = impl_from_IFWXSocket(This);
    if (!fwx__uio_how_valid(How))
        return FWX_E_INVALIDARG;
    if (!sock_live(s))
        return FWX_E_TERMINATING;
    fwx_pump *p = s->pump;
    if (fwx__uio_how_rd(How)) {
        s->rd_eof = true;
        if (!s->is_virtual)
            (void)shutdown(p->fd[s->side], SHUT_RD);
        if (s->recv != NULL)
            complete_later(p, fwx__uio_end_pending(&s->recv, 0));
    }
    if (fwx__uio_how_wr(How)) {
        s->shut_wr_req = true;
        if (s->is_virtual)
            vflow(s, s->peer);
        else
            real_flush(p, s);
    }
    if (!p->ending) {
        filter_check_end(p);
        update_polls(p);
    }
    return FWX_S_OK;
}

static fwx_result psock_Close(IFWXSocket *This)
{
    psock *s = impl_from_IFWXSocket(This);
    if (!sock_live(s))
        return FWX_S_OK;
    fwx_pump *p = s->pump;
    sock_kill(s, UV_ECANCELED);
    if (!s->is_virtual) {
        /* The peer sees the close now, not when the whole pump ends. */
        if (p->f->poll_events[s->side] != 0)
            uv_poll_stop(&p->f->poll[s->side]);
        p->f->poll_events[s->side] = 0;
        close_poll(p, s->side);
    }
    filter_check_end(p);
    return FWX_S_OK;
}

static const IFWXSocketVtbl psock_vtbl = {
    psock_QueryInterface, psock_AddRef, psock_Release, psock_Send, psock_SendTo, psock_Recv, psock_Shutdown, psock_Close,
};

static psock *psock_new(fwx_pump *p, bool is_virtual, int side)
{
    psock *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->iface.lpVtbl = &psock_vtbl;
    atomic_init(&s->refs, 1);
    s->pump = p;
    s->is_virtual = is_virtual;
    s->side = side;
    p->f->socks[p->f->n_socks++] = s;
    return s;
}

static void filter_check_end(fwx_pump *p)
{
    if (p->ending)
        return;
    for (int i = 0; i < 2; i++) {
        psock *s = p->f->real[i];
        if (s != NULL && !(s->closed || s->failed || (s->rd_eof && s->shut_wr_done)))
            return;
    }
    pump_end(p, 0);
}

/* ---- start ------------------------------------------------------------------------------- */

static void ignore_sigpipe_once(void)
{
    static atomic_bool done;
    if (atomic_exchange(&done, true))
        return;
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGPIPE, &sa, NULL);
    }
}

static bool is_socket(int fd)
{
    int type;
    socklen_t len = sizeof type;
    return fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

void fwx_pump_options_init(fwx_pump_options *opts)
{
    if (opts == NULL)
        return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
}

/* Reads what an older caller's smaller struct holds; the rest keeps its default. */
#define OPT(o, field, dflt)                                                                       \
    ((o) != NULL && (o)->struct_size >= offsetof(fwx_pump_options, field) + sizeof((o)->field) ? (o)->field : (dflt))

/* The relay: both fds join this loop's reactor, armed once for good. */
static void relay_start(fwx_pump *p)
{
    fwx_pump_connector *c = p->ext_connector;
    if (c != NULL) {
        /* Registered when the connect began, for reading too: the pump takes it over. */
        c->pump = p;
        p->wr_ready[SIDE_EXT] = true;
        pump_mark(p, SIDE_EXT, c->first_events);
    }
    for (int i = 0; i < 2; i++) {
        if (i == SIDE_EXT && c != NULL)
            continue;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
        if (epoll_ctl(p->rx->epfd, EPOLL_CTL_ADD, p->fd[i], &ev) < 0) {
            pump_end(p, UV_EBADF);
            return;
        }
    }
}

static fwx_result pump_start(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                             const fwx_pump_options *opts, fwx_pump_done_cb done, void *arg, bool fresh,
                             fwx_pump_connector *connector, fwx_pump **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || done == NULL || out == NULL)
        return FWX_E_POINTER;
    /* Every connection of the core has an id; 0 says this one is not the core's. */
    if (conn != NULL && fwx_connection_id(conn) == 0)
        return FWX_E_INVALIDARG;
    size_t n_dfs = fwx_connection_data_filters(conn);
    uint64_t max_buffered = OPT(opts, max_buffered, 0);
    bool no_splice = OPT(opts, no_splice, 0) != 0;
    /* Fresh fds (fwx_pump_start_fresh) are known to be TCP sockets: no SO_TYPE probes. */
    if (internal_fd < 0 || (external_fd == -1 && n_dfs == 0) || internal_fd == external_fd ||
        (!fresh && (!is_socket(internal_fd) || (external_fd != -1 && !is_socket(external_fd)))))
        return FWX_E_INVALIDARG;

    fwx_pump *p = calloc(1, sizeof *p + (n_dfs > 0 ? sizeof p->f[0] : 0));
    if (p == NULL)
        return FWX_E_OUTOFMEMORY;
    p->done = done;
    p->arg = arg;
    p->fresh = fresh;
    p->max_buffered = max_buffered == 0 ? PUMP_DEFAULT_MAX : max_buffered > UINT32_MAX ? UINT32_MAX : (uint32_t)max_buffered;
    p->fd[SIDE_INT] = internal_fd;
    p->fd[SIDE_EXT] = external_fd;
    for (int d = 0; d < 2; d++)
        p->dir[d].pipe[0] = p->dir[d].pipe[1] = -1;
    p->mode = n_dfs > 0 ? MODE_FILTER : MODE_RELAY;
    p->can_splice = p->mode == MODE_RELAY && !no_splice;
    if (connector != NULL && p->mode == MODE_RELAY && connector->rx->loop == loop)
        p->ext_connector = connector;
    else if (connector != NULL)
        fwx_pump_connect_cancel(connector); /* the filter path polls through libuv */
    if (p->mode == MODE_FILTER)
        p->f->buffer_size = fwx_connection_buffer_size(conn) > 0 ? fwx_connection_buffer_size(conn) : 2048;

    fwx_result hr = FWX_S_OK;
    if (p->mode == MODE_RELAY && (p->rx = rx_get(loop)) == NULL)
        hr = FWX_E_FAIL;
    if (FWX_SUCCEEDED(hr) && p->mode == MODE_FILTER) {
        /* two real sockets and two ends per join */
        p->f->socks = calloc(2 + 2 * (n_dfs - 1), sizeof *p->f->socks);
        if (p->f->socks == NULL)
            hr = FWX_E_OUTOFMEMORY;
    }
    if (FWX_SUCCEEDED(hr) && p->mode == MODE_FILTER) {
        if ((p->f->real[SIDE_INT] = psock_new(p, false, SIDE_INT)) == NULL)
            hr = FWX_E_OUTOFMEMORY;
        if (FWX_SUCCEEDED(hr) && external_fd != -1 && (p->f->real[SIDE_EXT] = psock_new(p, false, SIDE_EXT)) == NULL)
            hr = FWX_E_OUTOFMEMORY;
        for (size_t i = 0; FWX_SUCCEEDED(hr) && i + 1 < n_dfs; i++) {
            psock *a = psock_new(p, true, -1), *b = a != NULL ? psock_new(p, true, -1) : NULL;
            if (b == NULL) {
                hr = FWX_E_OUTOFMEMORY;
                break;
            }
            a->peer = b;
            b->peer = a;
        }
    }
    if (FWX_SUCCEEDED(hr) && p->mode == MODE_FILTER && uv_idle_init(loop, &p->f->idle) < 0)
        hr = FWX_E_FAIL;
    if (FWX_FAILED(hr)) {
        for (size_t i = 0; p->mode == MODE_FILTER && i < p->f->n_socks; i++)
            free(p->f->socks[i]);
        if (p->mode == MODE_FILTER)
            free(p->f->socks);
        free(p);
        return hr;
    }
    if (p->mode == MODE_RELAY) {
        p->rx->users++;
    } else {
        p->f->idle.data = p;
        p->f->handles = 1;
    }
    for (int i = 0; i < 2 && p->mode == MODE_FILTER; i++) {
        if (p->fd[i] < 0)
            continue;
        /* uv_poll_init cannot fail for a socket on Linux short of ENOMEM in epoll. */
        if (uv_poll_init_socket(loop, &p->f->poll[i], p->fd[i]) == 0) {
            p->f->poll[i].data = p;
            p->f->poll_live[i] = true;
            p->f->handles++;
        } else {
            p->err = UV_EBADF;
        }
    }
    if (p->can_splice)
        ignore_sigpipe_once();
    if (conn != NULL)
        fwx_connection_established(conn); /* both sides connected: the end-to-end part of the handshake */
    if (conn != NULL) {
        IFWXConnection_AddRef(conn);
        p->conn = conn;
    }
    *out = p;
    if (p->err != 0) {
        pump_end(p, p->err);
        return FWX_S_OK;
    }

    if (p->mode == MODE_FILTER) {
        /* socks: [0] internal real, [1] external real (if any), then the virtual pairs a,b. */
        size_t v = p->f->real[SIDE_EXT] != NULL ? 2 : 1;
        for (size_t i = 0; i < n_dfs; i++) {
            psock *l = i == 0 ? p->f->real[SIDE_INT] : p->f->socks[v + 2 * (i - 1) + 1];
            psock *r = i + 1 == n_dfs ? p->f->real[SIDE_EXT] : p->f->socks[v + 2 * i];
            hr = fwx_connection_data_filter_set_sockets(conn, (uint32_t)i, &l->iface, r != NULL ? &r->iface : NULL);
            /* A filter that detached (or a connection that ended) during the call leaves the
               chain incomplete: the pump ends, as when the filters close, without an error of
               its own (the core's kill, if any, says why). */
            if (FWX_FAILED(hr) || p->ending) {
                pump_end(p, hr == FWX_E_TERMINATING || FWX_SUCCEEDED(hr) ? p->err : UV_ECONNABORTED);
                break;
            }
        }
    }
    if (!p->ending && p->mode == MODE_FILTER)
        update_polls(p);
    else if (!p->ending)
        relay_start(p);
    return FWX_S_OK;
}

fwx_result fwx_pump_start(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                          const fwx_pump_options *opts, fwx_pump_done_cb done, void *arg, fwx_pump **out)
{
    return pump_start(loop, conn, internal_fd, external_fd, opts, done, arg, false, NULL, out);
}

fwx_result fwx_pump_start_fresh(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                                 fwx_pump_done_cb done, void *arg, fwx_pump **out)
{
    return pump_start(loop, conn, internal_fd, external_fd, NULL, done, arg, true, NULL, out);
}

fwx_result fwx_pump_start_connected(uv_loop_t *loop, IFWXConnection *conn, int internal_fd,
                                     fwx_pump_connector *connector, fwx_pump_done_cb done, void *arg, fwx_pump **out)
{
    if (connector == NULL || connector->buried)
        return FWX_E_INVALIDARG;
    fwx_result hr =
        pump_start(loop, conn, internal_fd, connector->fd, NULL, done, arg, true, connector, out);
    if (FWX_FAILED(hr))
        fwx_pump_connect_cancel(connector);
    return hr;
}

/* ---- connecting on the reactor ----------------------------------------------------------- */

int fwx_pump_connect(uv_loop_t *loop, int fd, const struct sockaddr *to, fwx_pump_connect_cb cb, void *arg,
                      fwx_pump_connector **out)
{
    *out = NULL;
    rx *r = rx_get(loop);
    if (r == NULL)
        return UV_ENOMEM;
    fwx_pump_connector *c = calloc(1, sizeof *c);
    int rc = c == NULL ? UV_ENOMEM : 0;
    if (rc == 0 && connect(fd, to, fwx__sa_len(to)) < 0 && errno != EINPROGRESS)
        rc = -errno;
    if (rc == 0) {
        /* Edge-triggered, for reading too: a pump may take the registration over as it is. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)(uintptr_t)c | CONNECTOR_TAG};
        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            rc = -errno;
    }
    if (rc != 0) {
        free(c);
        if (r->users == 0)
            rx_wake(r); /* the idle callback closes a reactor nobody uses */
        return rc;
    }
    c->rx = r;
    c->fd = fd;
    c->cb = cb;
    c->arg = arg;
    r->users++;
    *out = c;
    return 0;
}

int fwx_pump_reactor_hold(uv_loop_t *loop)
{
    if (loop == NULL)
        return UV_EINVAL;
    rx *r = rx_get(loop);
    if (r == NULL)
        return UV_ENOMEM;
    r->users++;
    r->holds++;
    return 0;
}

void fwx_pump_reactor_release(uv_loop_t *loop)
{
    for (rx *r = rx_list; loop != NULL && r != NULL; r = r->next)
        if (r->loop == loop) {
            if (r->holds == 0)
                return;
            r->holds--;
            r->users--;
            rx_wake(r); /* the idle callback closes a reactor nobody uses */
            return;
        }
}

void fwx_pump_connect_cancel(fwx_pump_connector *c)
{
    if (c != NULL && c->pump == NULL)
        connector_bury(c, true);
}
