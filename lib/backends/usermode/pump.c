/*
 * fwx - the pump: carries one TCP connection between the client-side and server-side fds, by
 * splice(2), by read/write, or through the connection's data filters (see usermode.h).
 * SPDX-License-Identifier: MIT
 */
#include "backends/usermode/uio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define PUMP_DEFAULT_MAX (256u * 1024u)
#define PUMP_PIPE_MIN 4096u
#define PUMP_PIPE_MAX (1024u * 1024u)
/* Rounds of read+write per poll event and direction: enough to move a pipe's worth, few enough
   that one busy connection does not starve the loop. */
#define PUMP_ROUNDS 16
/* splice() asked to fall back to read/write. */
#define PUMP_FALLBACK 1

enum { MODE_SPLICE, MODE_RW, MODE_FILTER };
enum { SIDE_INT = 0, SIDE_EXT = 1 };

typedef struct psock psock;

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

/* One direction of the relay: dir 0 carries internal -> external, dir 1 the reverse. */
typedef struct pdir {
    int pipe[2];
    size_t held;    /* bytes in the pipe or the ring */
    bool full;      /* splice: the pipe took nothing more; rw: ring full */
    bool eof;       /* the source said EOF */
    bool shut;      /* shutdown(SHUT_WR) sent to the destination */
    uint8_t *ring;  /* rw: max_buffered bytes, allocated on first read */
    size_t head;
} pdir;

struct fwx_pump {
    uv_loop_t *loop;
    IFWXConnection *conn; /* +1, may be NULL */
    size_t max_buffered;
    fwx_pump_done_cb done;
    void *arg;
    int mode;
    bool ending, finishing;
    int err;
    int handles; /* open libuv handles */
    int fd[2];
    uv_poll_t poll[2];
    bool poll_live[2]; /* initialised and not yet closing */
    int poll_events[2];
    uv_idle_t idle; /* delivers completions and finishes the end */
    bool idle_on;
    fwx__uio_queue cq;
    pdir dir[2];
    size_t pipe_cap;
    bool moved_any;
    /* filter path */
    psock **socks;
    size_t n_socks;
    psock *real[2];
    uint32_t buffer_size;
};

static const IFWXSocketVtbl psock_vtbl;
static void pump_end(fwx_pump *p, int err);
static void update_polls(fwx_pump *p);
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
    fwx__uioq_push(&p->cq, op);
    kick(p);
}

/* ---- the relay: splice ------------------------------------------------------------------- */

static int make_pipe(fwx_pump *p, int fds[2]);

static int splice_dir(fwx_pump *p, int d)
{
    pdir *D = &p->dir[d];
    int src = p->fd[d == 0 ? SIDE_INT : SIDE_EXT], dst = p->fd[d == 0 ? SIDE_EXT : SIDE_INT];
    /* A direction gets its pipe when it first has bytes to move: an idle relayed connection
       then holds no pipe (two per connection cost ~12 KiB of kernel memory each, idle). */
    if (D->pipe[0] < 0 && !D->eof) {
        int rc = make_pipe(p, D->pipe);
        /* Out of descriptors: copy through user memory instead (no fds needed) rather than drop
           a connection that works, if the other direction holds nothing in its pipe. */
        if ((rc == -EMFILE || rc == -ENFILE) && p->dir[!d].held == 0)
            return PUMP_FALLBACK;
        if (rc < 0)
            return rc;
    }
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        bool progress = false;
        if (D->held > 0) {
            ssize_t n = splice(D->pipe[0], NULL, dst, NULL, D->held, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                sent(p);
                D->held -= (size_t)n;
                D->full = false;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return -errno;
            }
        }
        /* The pipe's size counts slots, and one slot may hold a whole TCP page fragment (up
           to 32 KiB on loopback), so the bytes asked for are what bounds the pipe. */
        size_t want = D->held < p->max_buffered ? p->max_buffered - D->held : 0;
        if (want > p->pipe_cap)
            want = p->pipe_cap;
        if (want == 0)
            D->full = true;
        if (!D->eof && !D->full) {
            ssize_t n = splice(src, NULL, D->pipe[1], NULL, want, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                D->held += (size_t)n;
                p->moved_any = true;
                count(p, d, (size_t)n);
                progress = true;
            } else if (n == 0) {
                D->eof = true;
                progress = true;
            } else if (errno == EAGAIN) {
                /* Either the socket is empty or the pipe is full, and splice cannot say which:
                   with bytes in the pipe, assume full and wait for the destination. */
                if (D->held > 0)
                    D->full = true;
            } else if (errno == EINVAL && !p->moved_any) {
                return PUMP_FALLBACK;
            } else if (errno != EINTR) {
                return -errno;
            }
        }
        if (!progress)
            break;
    }
    return 0;
}

/* ---- the relay: read/write --------------------------------------------------------------- */

static int rw_dir(fwx_pump *p, int d)
{
    pdir *D = &p->dir[d];
    size_t cap = p->max_buffered;
    int src = p->fd[d == 0 ? SIDE_INT : SIDE_EXT], dst = p->fd[d == 0 ? SIDE_EXT : SIDE_INT];
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        bool progress = false;
        if (D->held > 0) {
            size_t first = cap - D->head < D->held ? cap - D->head : D->held;
            struct iovec iov[2] = {{D->ring + D->head, first}, {D->ring, D->held - first}};
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = iov[1].iov_len > 0 ? 2 : 1};
            ssize_t n = sendmsg(dst, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent(p);
                D->held -= (size_t)n;
                D->head = D->held == 0 ? 0 : (D->head + (size_t)n) % cap;
                D->full = false;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return -errno;
            }
        }
        if (!D->eof && D->held < cap) {
            if (D->ring == NULL && (D->ring = malloc(cap)) == NULL)
                return UV_ENOMEM;
            size_t tail = (D->head + D->held) % cap, room = cap - D->held;
            size_t first = cap - tail < room ? cap - tail : room;
            struct iovec iov[2] = {{D->ring + tail, first}, {D->ring, room - first}};
            ssize_t n = readv(src, iov, iov[1].iov_len > 0 ? 2 : 1);
            if (n > 0) {
                D->held += (size_t)n;
                D->full = D->held == cap;
                count(p, d, (size_t)n);
                progress = true;
            } else if (n == 0) {
                D->eof = true;
                progress = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                return -errno;
            }
        }
        if (!progress)
            break;
    }
    return 0;
}

/* Switches a splice relay that never moved a byte to read/write (splice said EINVAL). */
static void fall_back(fwx_pump *p)
{
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < 2; k++) {
            if (p->dir[d].pipe[k] >= 0)
                close(p->dir[d].pipe[k]);
            p->dir[d].pipe[k] = -1;
        }
        p->dir[d].held = 0;
        p->dir[d].full = false;
    }
    p->mode = MODE_RW;
}

static void relay_run(fwx_pump *p, int d)
{
    int r = p->mode == MODE_SPLICE ? splice_dir(p, d) : rw_dir(p, d);
    if (r == PUMP_FALLBACK) {
        fall_back(p);
        r = rw_dir(p, d);
    }
    if (r < 0) {
        pump_end(p, r);
        return;
    }
    pdir *D = &p->dir[d];
    if (D->eof && D->held == 0 && !D->shut) {
        /* Half-close: the source is done and everything it sent is written. */
        D->shut = true;
        if (shutdown(p->fd[d == 0 ? SIDE_EXT : SIDE_INT], SHUT_WR) < 0 && errno != ENOTCONN) {
            pump_end(p, -errno);
            return;
        }
    }
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
    int i = h == &p->poll[SIDE_INT] ? SIDE_INT : SIDE_EXT;
    if (p->ending)
        return;
    if (status < 0) {
        pump_end(p, status);
        return;
    }
    if (p->mode == MODE_FILTER) {
        psock *s = p->real[i];
        if ((events & UV_READABLE) && s->recv != NULL)
            real_read(p, s);
        if (!p->ending && (events & UV_WRITABLE))
            real_flush(p, s);
        if (!p->ending)
            filter_check_end(p);
    } else {
        /* fd i is the source of direction i and the destination of the other. */
        if (events & UV_READABLE)
            relay_run(p, i);
        if (!p->ending && (events & UV_WRITABLE))
            relay_run(p, 1 - i);
        if (!p->ending && p->dir[0].shut && p->dir[1].shut)
            pump_end(p, 0);
    }
    if (!p->ending)
        update_polls(p);
}

static void update_polls(fwx_pump *p)
{
    for (int i = 0; i < 2; i++) {
        if (!p->poll_live[i])
            continue;
        int ev = 0;
        if (!p->ending) {
            if (p->mode == MODE_FILTER) {
                psock *s = p->real[i];
                if (s->recv != NULL)
                    ev |= UV_READABLE;
                if (!fwx__uioq_empty(&s->sendq))
                    ev |= UV_WRITABLE;
            } else {
                pdir *in = &p->dir[i], *out = &p->dir[1 - i];
                if (!in->eof && !in->full)
                    ev |= UV_READABLE;
                if (out->held > 0)
                    ev |= UV_WRITABLE;
            }
        }
        if (ev == p->poll_events[i])
            continue;
        p->poll_events[i] = ev;
        if (ev == 0)
            uv_poll_stop(&p->poll[i]);
        else if (uv_poll_start(&p->poll[i], ev, poll_cb) < 0)
            pump_end(p, UV_EBADF);
    }
}

/* ---- the end ----------------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    fwx_pump *p = h->data;
    if ((uv_handle_t *)&p->poll[SIDE_INT] == h || (uv_handle_t *)&p->poll[SIDE_EXT] == h) {
        /* The fd goes only after its poll handle (libuv: never close a polled fd). */
        int i = (uv_handle_t *)&p->poll[SIDE_INT] == h ? SIDE_INT : SIDE_EXT;
        if (p->fd[i] >= 0)
            close(p->fd[i]);
        p->fd[i] = -1;
    }
    if (--p->handles > 0)
        return;
    for (size_t i = 0; i < p->n_socks; i++) {
        psock *s = p->socks[i];
        s->pump = NULL;
        s->peer = NULL;
        IFWXSocket_Release(&s->iface);
    }
    free(p->socks);
    for (int d = 0; d < 2; d++)
        free(p->dir[d].ring);
    if (p->conn != NULL)
        IFWXConnection_Release(p->conn);
    p->conn = NULL;
    p->done(p, p->arg);
    free(p);
}

static void close_poll(fwx_pump *p, int i)
{
    if (!p->poll_live[i])
        return;
    p->poll_live[i] = false;
    uv_close((uv_handle_t *)&p->poll[i], handle_closed);
}

static void finish(fwx_pump *p)
{
    if (p->finishing)
        return;
    p->finishing = true;
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++)
            if (p->dir[d].pipe[k] >= 0) {
                close(p->dir[d].pipe[k]);
                p->dir[d].pipe[k] = -1;
            }
    close_poll(p, SIDE_INT);
    close_poll(p, SIDE_EXT);
    uv_close((uv_handle_t *)&p->idle, handle_closed);
}

static void deliver_one(void *op) { fwx__uio_deliver(op); }

static void idle_cb(uv_idle_t *h)
{
    fwx_pump *p = h->data;
    /* Only what is queued now: completions queued by these callbacks wait for the next turn. */
    fwx__uio_queue batch = p->cq;
    p->cq.head = p->cq.tail = NULL;
    fwx__uio *op;
    /* Each completion is a call into the connection's data filters (the core then knows which
       connection they work for, and the watchdog times their plugin). */
    while ((op = fwx__uioq_pop(&batch)) != NULL)
        fwx_connection_data_call(p->conn, deliver_one, op);
    if (fwx__uioq_empty(&p->cq)) {
        uv_idle_stop(&p->idle);
        p->idle_on = false;
        if (p->ending)
            finish(p);
    }
}

static void kick(fwx_pump *p)
{
    if (!p->idle_on && !p->finishing) {
        p->idle_on = true;
        uv_idle_start(&p->idle, idle_cb);
    }
}

static void sock_kill(psock *s, int err);

static void pump_end(fwx_pump *p, int err)
{
    if (p->ending)
        return;
    p->ending = true;
    p->err = err;
    for (int i = 0; i < 2; i++)
        if (p->poll_live[i] && p->poll_events[i] != 0) {
            uv_poll_stop(&p->poll[i]);
            p->poll_events[i] = 0;
        }
    for (size_t i = 0; i < p->n_socks; i++)
        sock_kill(p->socks[i], UV_ECANCELED);
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
    return p->dir[0].held + p->dir[1].held;
}

int32_t fwx_pump_spliced(const fwx_pump *p) { return p != NULL && p->mode == MODE_SPLICE; }

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
    fwx__uioq_push(&s->sendq, op);
    if (s->is_virtual)
        vflow(s, s->peer);
    else
        update_polls(s->pump);
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
        size = s->pump->buffer_size;
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
        if (p->poll_events[s->side] != 0)
            uv_poll_stop(&p->poll[s->side]);
        p->poll_events[s->side] = 0;
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
    p->socks[p->n_socks++] = s;
    return s;
}

static void filter_check_end(fwx_pump *p)
{
    if (p->ending)
        return;
    for (int i = 0; i < 2; i++) {
        psock *s = p->real[i];
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

static int make_pipe(fwx_pump *p, int fds[2])
{
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    int want = (int)(p->max_buffered < PUMP_PIPE_MIN ? PUMP_PIPE_MIN
                     : p->max_buffered > PUMP_PIPE_MAX ? PUMP_PIPE_MAX
                                                      : p->max_buffered);
    (void)fcntl(fds[1], F_SETPIPE_SZ, want); /* a refusal leaves the default, still a bound */
    int got = fcntl(fds[1], F_GETPIPE_SZ);
    size_t cap = got > 0 ? (size_t)got : 65536;
    if (p->pipe_cap == 0 || cap < p->pipe_cap)
        p->pipe_cap = cap;
    return 0;
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

fwx_result fwx_pump_start(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                          const fwx_pump_options *opts, fwx_pump_done_cb done, void *arg, fwx_pump **out)
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
    if (!is_socket(internal_fd) || (external_fd != -1 && !is_socket(external_fd)) ||
        (external_fd == -1 && n_dfs == 0) || internal_fd == external_fd)
        return FWX_E_INVALIDARG;

    fwx_pump *p = calloc(1, sizeof *p);
    if (p == NULL)
        return FWX_E_OUTOFMEMORY;
    p->loop = loop;
    p->done = done;
    p->arg = arg;
    p->max_buffered = max_buffered > 0 && max_buffered <= SIZE_MAX ? (size_t)max_buffered : PUMP_DEFAULT_MAX;
    p->fd[SIDE_INT] = internal_fd;
    p->fd[SIDE_EXT] = external_fd;
    for (int d = 0; d < 2; d++)
        p->dir[d].pipe[0] = p->dir[d].pipe[1] = -1;
    p->mode = n_dfs > 0 ? MODE_FILTER : no_splice ? MODE_RW : MODE_SPLICE;
    p->buffer_size = fwx_connection_buffer_size(conn) > 0 ? fwx_connection_buffer_size(conn) : 2048;

    fwx_result hr = FWX_S_OK;
    if (FWX_SUCCEEDED(hr) && p->mode == MODE_FILTER) {
        /* two real sockets and two ends per join */
        p->socks = calloc(2 + 2 * (n_dfs - 1), sizeof *p->socks);
        if (p->socks == NULL)
            hr = FWX_E_OUTOFMEMORY;
    }
    if (FWX_SUCCEEDED(hr) && p->mode == MODE_FILTER) {
        if ((p->real[SIDE_INT] = psock_new(p, false, SIDE_INT)) == NULL)
            hr = FWX_E_OUTOFMEMORY;
        if (FWX_SUCCEEDED(hr) && external_fd != -1 && (p->real[SIDE_EXT] = psock_new(p, false, SIDE_EXT)) == NULL)
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
    if (FWX_SUCCEEDED(hr) && uv_idle_init(loop, &p->idle) < 0)
        hr = FWX_E_FAIL;
    if (FWX_FAILED(hr)) {
        for (size_t i = 0; i < p->n_socks; i++)
            free(p->socks[i]);
        free(p->socks);
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < 2; k++)
                if (p->dir[d].pipe[k] >= 0)
                    close(p->dir[d].pipe[k]);
        free(p);
        return hr;
    }
    p->idle.data = p;
    p->handles = 1;
    for (int i = 0; i < 2; i++) {
        if (p->fd[i] < 0)
            continue;
        /* uv_poll_init cannot fail for a socket on Linux short of ENOMEM in epoll. */
        if (uv_poll_init_socket(loop, &p->poll[i], p->fd[i]) == 0) {
            p->poll[i].data = p;
            p->poll_live[i] = true;
            p->handles++;
        } else {
            p->err = UV_EBADF;
        }
    }
    if (p->mode == MODE_SPLICE)
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
        size_t v = p->real[SIDE_EXT] != NULL ? 2 : 1;
        for (size_t i = 0; i < n_dfs; i++) {
            psock *l = i == 0 ? p->real[SIDE_INT] : p->socks[v + 2 * (i - 1) + 1];
            psock *r = i + 1 == n_dfs ? p->real[SIDE_EXT] : p->socks[v + 2 * i];
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
    if (!p->ending)
        update_polls(p);
    return FWX_S_OK;
}
