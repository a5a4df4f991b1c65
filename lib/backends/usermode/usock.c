/*
 * fwx - IFWXNetworkSocket over libuv (uv_tcp_t, uv_udp_t): the sockets filters open themselves
 * (IFWXFirewall::CreateNetworkSocket). Public: fwx_network_socket_new (include/fwx/pump.h, with
 * the semantics the filters see).
 * SPDX-License-Identifier: MIT
 */
#include "backends/usermode/uio.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define USOCK_TCP_BUF 8192u
#define USOCK_UDP_BUF 65536u

typedef struct usock {
    IFWXNetworkSocket iface;
    atomic_uint refs;
    uv_loop_t *loop;
    int32_t proto;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_udp_t udp;
    } io;
    uv_idle_t idle; /* delivers completions */
    bool idle_on;
    int handles;    /* open libuv handles; freed at 0 refs and 0 handles */
    bool closed;    /* Close (or the last Release) happened */
    bool io_closed, idle_closing;
    bool has_fd, connecting, connected, listening, reading, rd_eof, shut_wr;
    int conn_err;   /* a failed connect's error */
    uv_connect_t creq;
    uv_shutdown_t sreq;
    fwx__uio *recv;
    fwx__uio_queue accepts;
    bool conn_waiting; /* libuv holds an accepted fd for us */
    fwx__uio_queue cq;
    IFWXIpFilter *ipf; /* +1, may be NULL */
    fwx_firewall *fw;  /* for log lines, may be NULL (fwx_network_socket_new) */
} usock;

static const IFWXNetworkSocketVtbl usock_vtbl;
static fwx_result usock_alloc(uv_loop_t *loop, int32_t protocol, usock **out);
static void try_accept(usock *s);
static void set_ipf(usock *s, IFWXIpFilter *f);

static usock *impl_from(IFWXNetworkSocket *iface) { return fwx__container_of(iface, usock, iface); }

/* ---- lifetime ---------------------------------------------------------------------------- */

static void maybe_free(usock *s)
{
    if (s->handles == 0 && atomic_load(&s->refs) == 0) {
        if (s->ipf != NULL)
            IFWXIpFilter_Release(s->ipf);
        free(s);
    }
}

static void handle_closed(uv_handle_t *h)
{
    usock *s = h->data;
    if (h == &s->io.handle)
        s->io_closed = true;
    s->handles--;
    maybe_free(s);
}

/* The idle handle goes last: completions queued by the io handle's close must still run. */
static void maybe_close_idle(usock *s)
{
    if (s->closed && s->io_closed && fwx__uioq_empty(&s->cq) && !s->idle_closing) {
        s->idle_closing = true;
        uv_close((uv_handle_t *)&s->idle, handle_closed);
    }
}

static void idle_cb(uv_idle_t *h)
{
    usock *s = h->data;
    s->handles++; /* keeps s while the filter runs (it may Release its last reference) */
    fwx__uio_queue batch = s->cq;
    s->cq.head = s->cq.tail = NULL;
    fwx__uio *op;
    while ((op = fwx__uioq_pop(&batch)) != NULL)
        fwx__uio_deliver(op);
    if (fwx__uioq_empty(&s->cq)) {
        uv_idle_stop(&s->idle);
        s->idle_on = false;
    }
    s->handles--;
    maybe_close_idle(s);
}

static void complete_later(usock *s, fwx__uio *op)
{
    fwx__uioq_push(&s->cq, op);
    if (!s->idle_on && !s->idle_closing) {
        s->idle_on = true;
        uv_idle_start(&s->idle, idle_cb);
    }
}

static void io_closed_cb(uv_handle_t *h)
{
    usock *s = h->data;
    s->io_closed = true;
    s->handles--;
    maybe_close_idle(s);
    maybe_free(s);
}

static void do_close(usock *s)
{
    if (s->closed)
        return;
    s->closed = true;
    if (s->recv != NULL)
        complete_later(s, fwx__uio_end_pending(&s->recv, UV_ECANCELED));
    while (!fwx__uioq_empty(&s->accepts)) {
        fwx__uio *a = fwx__uioq_pop(&s->accepts);
        fwx__uio_fail(a, UV_ECANCELED);
        complete_later(s, a);
    }
    set_ipf(s, NULL);
    /* libuv cancels queued writes, sends, the connect and the shutdown with UV_ECANCELED. */
    uv_close(&s->io.handle, io_closed_cb);
}

/* ---- IUnknown ---------------------------------------------------------------------------- */

static fwx_result us_QueryInterface(IFWXNetworkSocket *This, const fwx_guid *riid, void **ppv)
{
    /* IFWXNetworkSocket's table starts with IFWXSocket's: one pointer serves all three. */
    return fwx__uio_sock_query((IFWXSocket *)This, true, riid, ppv);
}

static uint32_t us_AddRef(IFWXNetworkSocket *This) { return atomic_fetch_add(&impl_from(This)->refs, 1) + 1; }

static uint32_t us_Release(IFWXNetworkSocket *This)
{
    usock *s = impl_from(This);
    uint32_t n = atomic_fetch_sub(&s->refs, 1) - 1;
    if (n == 0) {
        do_close(s); /* no-op when closed already */
        maybe_free(s);
    }
    return n;
}

/* ---- reading ----------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    usock *s = h->data;
    uint8_t *mem = NULL;
    uint32_t cap = 0;
    /* Straight into the filter's buffer: no copy. */
    if (s->recv != NULL)
        (void)fwx__uio_space(s->recv->buf, &mem, &cap);
    *buf = uv_buf_init((char *)mem, cap);
}

static void stop_reading(usock *s)
{
    if (!s->reading)
        return;
    s->reading = false;
    if (s->proto == FWX_PROTOCOL_TCP)
        uv_read_stop(&s->io.stream);
    else
        uv_udp_recv_stop(&s->io.udp);
}

static void finish_recv(usock *s, ssize_t n, const struct sockaddr *from)
{
    fwx__uio *r = s->recv;
    s->recv = NULL;
    stop_reading(s);
    if (n < 0) {
        fwx__uio_fail(r, (int)n);
    } else {
        fwx__uio_recv_done(r, (uint32_t)n);
        if (from != NULL) {
            uint32_t len = fwx__sa_len(from);
            memcpy(&r->addr, from, len);
            r->addr_len = len;
            r->has_addr = true;
        }
    }
    complete_later(s, r);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    usock *s = st->data;
    if (nread == 0 || s->recv == NULL)
        return;
    if (nread == UV_EOF) {
        s->rd_eof = true;
        nread = 0;
    }
    finish_recv(s, nread, NULL);
}

static bool ip_allowed(usock *s, const struct sockaddr *a)
{
    if (s->ipf == NULL || IFWXIpFilter_IsIncluded(s->ipf, a, fwx__sa_len(a)) == FWX_S_OK)
        return true;
    /* Refused input is never silent (one line per refusal; a flood is the log's to rate). */
    if (s->fw != NULL) {
        char b[FWX__SA_STRLEN];
        fwx_firewall_log(s->fw, FWX_LOG_WARN, "filter socket: %s from %s refused by its ip filter",
                         s->proto == FWX_PROTOCOL_TCP ? "connection" : "datagram", fwx__sa_fmt(a, b));
    }
    return false;
}

static void udp_recv_cb(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr, unsigned flags)
{
    (void)buf;
    usock *s = u->data;
    if (s->recv == NULL || (nread == 0 && addr == NULL))
        return;
    if (nread >= 0 && (addr == NULL || !ip_allowed(s, addr) || (flags & UV_UDP_PARTIAL)))
        return; /* dropped: not from an allowed address, or larger than the buffer */
    finish_recv(s, nread, nread >= 0 ? addr : NULL);
}

static void start_reading(usock *s)
{
    if (s->reading || s->recv == NULL)
        return;
    int rc = s->proto == FWX_PROTOCOL_TCP ? uv_read_start(&s->io.stream, alloc_cb, read_cb)
                                          : uv_udp_recv_start(&s->io.udp, alloc_cb, udp_recv_cb);
    if (rc < 0) {
        finish_recv(s, rc, NULL);
        return;
    }
    s->reading = true;
}

/* ---- IFWXSocket -------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status)
{
    fwx__uio *op = req->data;
    usock *s = op->owner;
    if (status < 0)
        fwx__uio_fail(op, status);
    complete_later(s, op);
}

static void udp_send_cb(uv_udp_send_t *req, int status)
{
    fwx__uio *op = req->data;
    usock *s = op->owner;
    if (status < 0)
        fwx__uio_fail(op, status);
    complete_later(s, op);
}

static fwx_result do_send(usock *s, IFWXIOBuffer *b, const struct sockaddr *a, uint32_t al, IFWXIOCompletion *cpl,
                          uintptr_t ud)
{
    fwx__uio *op;
    fwx_result hr = fwx__uio_send_begin(!s->closed && !s->shut_wr, b, cpl, ud, &op);
    if (FWX_FAILED(hr))
        return hr;
    struct sockaddr_storage to;
    uint8_t *data;
    uint32_t len;
    if ((a != NULL && !fwx__sa_canon(a, al, &to)) || !fwx__uio_data(b, &data, &len) ||
        (s->proto == FWX_PROTOCOL_TCP && !s->connected && !s->connecting)) {
        fwx__uio_free(op);
        return FWX_E_INVALIDARG;
    }
    op->owner = s;
    uv_buf_t ub = uv_buf_init((char *)data, len);
    int rc;
    if (s->conn_err != 0) {
        fwx__uio_fail(op, s->conn_err);
        complete_later(s, op);
        return FWX_S_OK;
    }
    if (s->proto == FWX_PROTOCOL_TCP) {
        if (len == 0) {
            complete_later(s, op);
            return FWX_S_OK;
        }
        op->req.write.data = op;
        rc = uv_write(&op->req.write, &s->io.stream, &ub, 1, write_cb);
    } else {
        op->req.udp_send.data = op;
        rc = uv_udp_send(&op->req.udp_send, &s->io.udp, &ub, 1, a != NULL ? (const struct sockaddr *)&to : NULL,
                         udp_send_cb);
        if (rc == 0)
            s->has_fd = true; /* libuv bound it */
    }
    if (rc < 0) {
        fwx__uio_free(op);
        return FWX_E_INVALIDARG;
    }
    return FWX_S_OK;
}

static fwx_result us_Send(IFWXNetworkSocket *This, IFWXIOBuffer *b, IFWXIOCompletion *cpl, uintptr_t ud)
{
    return do_send(impl_from(This), b, NULL, 0, cpl, ud);
}

static fwx_result us_SendTo(IFWXNetworkSocket *This, IFWXIOBuffer *b, const struct sockaddr *a, uint32_t al,
                            IFWXIOCompletion *cpl, uintptr_t ud)
{
    usock *s = impl_from(This);
    if (a == NULL)
        return FWX_E_INVALIDARG;
    /* A stream socket ignores the address, as sendto(2) on a connected TCP socket does. */
    return do_send(s, b, s->proto == FWX_PROTOCOL_UDP ? a : NULL, al, cpl, ud);
}

static fwx_result us_Recv(IFWXNetworkSocket *This, IFWXIOBuffer *b, IFWXIOCompletion *cpl, uintptr_t ud)
{
    usock *s = impl_from(This);
    /* Busy also while a TCP socket has no connection to read from, nor one under way. */
    bool busy = s->recv != NULL || (s->proto == FWX_PROTOCOL_TCP && !s->connected && !s->connecting && s->conn_err == 0);
    fwx__uio *op;
    fwx_result hr = fwx__uio_recv_begin(!s->closed, busy, b, s->proto == FWX_PROTOCOL_TCP ? USOCK_TCP_BUF : USOCK_UDP_BUF,
                                        cpl, ud, &op);
    if (FWX_FAILED(hr))
        return hr;
    op->owner = s;
    if (s->conn_err != 0) {
        fwx__uio_fail(op, s->conn_err);
        complete_later(s, op);
    } else if (s->rd_eof) {
        fwx__uio_recv_done(op, 0);
        complete_later(s, op);
    } else {
        s->recv = op;
        if (s->proto == FWX_PROTOCOL_UDP || s->connected)
            start_reading(s);
        if (s->proto == FWX_PROTOCOL_UDP)
            s->has_fd = true;
    }
    return FWX_S_OK;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static fwx_result us_Shutdown(IFWXNetworkSocket *This, int32_t How)
{
    usock *s = impl_from(This);
    if (!fwx__uio_how_valid(How))
        return FWX_E_INVALIDARG;
    if (s->closed)
        return FWX_E_TERMINATING;
    if (How != SHUT_WR) {
        s->rd_eof = true;
        if (s->recv != NULL)
            finish_recv(s, 0, NULL);
    }
    if (How != SHUT_RD && !s->shut_wr) {
        s->shut_wr = true;
        if (s->proto == FWX_PROTOCOL_TCP && (s->connected || s->connecting) &&
            uv_shutdown(&s->sreq, &s->io.stream, shutdown_cb) < 0)
            return FWX_E_INVALIDARG;
    }
    return FWX_S_OK;
}

static fwx_result us_Close(IFWXNetworkSocket *This)
{
    do_close(impl_from(This));
    return FWX_S_OK;
}

/* ---- IFWXNetworkSocket ------------------------------------------------------------------- */

static void connect_cb(uv_connect_t *req, int status)
{
    usock *s = req->data;
    s->connecting = false;
    if (status < 0) {
        s->conn_err = status;
        if (s->recv != NULL)
            finish_recv(s, status, NULL);
        return;
    }
    s->connected = true;
    start_reading(s);
}

static fwx_result us_Connect(IFWXNetworkSocket *This, const struct sockaddr *a, uint32_t al)
{
    usock *s = impl_from(This);
    struct sockaddr_storage to;
    if (!fwx__sa_canon(a, al, &to))
        return FWX_E_INVALIDARG;
    if (s->closed)
        return FWX_E_TERMINATING;
    if (s->proto == FWX_PROTOCOL_UDP) {
        int rc = uv_udp_connect(&s->io.udp, (const struct sockaddr *)&to);
        if (rc < 0)
            return fwx__result_from_errno(rc, FWX_E_INVALIDARG);
        s->has_fd = s->connected = true;
        return FWX_S_OK;
    }
    if (s->connecting || s->connected || s->listening)
        return FWX_E_INVALIDARG;
    s->creq.data = s;
    int rc = uv_tcp_connect(&s->creq, &s->io.tcp, (const struct sockaddr *)&to, connect_cb);
    if (rc < 0)
        return fwx__result_from_errno(rc, FWX_E_INVALIDARG);
    s->has_fd = s->connecting = true;
    return FWX_S_OK;
}

static void set_ipf(usock *s, IFWXIpFilter *f)
{
    if (f != NULL)
        IFWXIpFilter_AddRef(f);
    if (s->ipf != NULL)
        IFWXIpFilter_Release(s->ipf);
    s->ipf = f;
}

static fwx_result us_Bind(IFWXNetworkSocket *This, const struct sockaddr *a, uint32_t al, IFWXIpFilter *f)
{
    usock *s = impl_from(This);
    struct sockaddr_storage at;
    if (!fwx__sa_canon(a, al, &at))
        return FWX_E_INVALIDARG;
    if (s->closed)
        return FWX_E_TERMINATING;
    if (s->has_fd)
        return FWX_E_INVALIDARG;
    const struct sockaddr *sa = (const struct sockaddr *)&at;
    if (s->proto == FWX_PROTOCOL_UDP) {
        int rc = uv_udp_bind(&s->io.udp, sa, UV_UDP_REUSEADDR);
        if (rc < 0)
            return fwx__result_from_errno(rc, FWX_E_INVALIDARG);
    } else {
        /* Our own socket: uv_tcp_bind defers EADDRINUSE to listen or connect, and the SDK
           wants it from Bind. */
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return FWX_E_INVALIDARG;
        int on = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (bind(fd, sa, fwx__sa_len(sa)) < 0) {
            fwx_result hr = fwx__result_from_errno(errno, FWX_E_INVALIDARG);
            close(fd);
            return hr;
        }
        if (uv_tcp_open(&s->io.tcp, fd) < 0) {
            close(fd);
            return FWX_E_INVALIDARG;
        }
    }
    s->has_fd = true;
    set_ipf(s, f);
    return FWX_S_OK;
}

static fwx_result name_out(int rc, struct sockaddr_storage *ss, int len, struct sockaddr *a, uint32_t *al,
                           fwx_result not_connected)
{
    if (rc == UV_ENOTCONN)
        return not_connected;
    if (rc < 0)
        return FWX_E_INVALIDARG;
    if ((uint32_t)len > *al)
        return FWX_E_INVALIDARG;
    memcpy(a, ss, (size_t)len);
    *al = (uint32_t)len;
    return FWX_S_OK;
}

static fwx_result us_GetSockName(IFWXNetworkSocket *This, struct sockaddr *a, uint32_t *al)
{
    usock *s = impl_from(This);
    if (a == NULL || al == NULL)
        return FWX_E_INVALIDARG;
    if (s->closed || !s->has_fd)
        return FWX_E_INVALIDARG;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = s->proto == FWX_PROTOCOL_TCP ? uv_tcp_getsockname(&s->io.tcp, (struct sockaddr *)&ss, &len)
                                          : uv_udp_getsockname(&s->io.udp, (struct sockaddr *)&ss, &len);
    return name_out(rc, &ss, len, a, al, FWX_E_INVALIDARG);
}

static fwx_result us_GetPeerName(IFWXNetworkSocket *This, struct sockaddr *a, uint32_t *al)
{
    usock *s = impl_from(This);
    if (a == NULL || al == NULL)
        return FWX_E_INVALIDARG;
    if (s->closed || !s->has_fd)
        return FWX_E_WSAEINVAL;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = s->proto == FWX_PROTOCOL_TCP ? uv_tcp_getpeername(&s->io.tcp, (struct sockaddr *)&ss, &len)
                                          : uv_udp_getpeername(&s->io.udp, (struct sockaddr *)&ss, &len);
    return name_out(rc, &ss, len, a, al, FWX_E_WSAEINVAL);
}

static void connection_cb(uv_stream_t *server, int status)
{
    usock *s = server->data;
    if (status < 0) {
        fwx__uio *a = fwx__uioq_pop(&s->accepts);
        if (a != NULL) {
            fwx__uio_fail(a, status);
            complete_later(s, a);
        }
        return;
    }
    s->conn_waiting = true;
    try_accept(s);
}

/* Hands libuv's waiting connection to the oldest Accept; drops those the IP filter refuses. */
static void try_accept(usock *s)
{
    while (s->conn_waiting && !fwx__uioq_empty(&s->accepts) && !s->closed) {
        s->conn_waiting = false;
        usock *c;
        if (FWX_FAILED(usock_alloc(s->loop, FWX_PROTOCOL_TCP, &c)))
            return; /* the connection stays with libuv; the next Accept retries */
        if (uv_accept(&s->io.stream, &c->io.stream) < 0) {
            us_Release(&c->iface);
            return;
        }
        c->has_fd = c->connected = true;
        c->fw = s->fw;
        struct sockaddr_storage peer, local;
        int pl = sizeof peer, ll = sizeof local;
        if (uv_tcp_getpeername(&c->io.tcp, (struct sockaddr *)&peer, &pl) < 0 ||
            uv_tcp_getsockname(&c->io.tcp, (struct sockaddr *)&local, &ll) < 0 ||
            !ip_allowed(s, (struct sockaddr *)&peer)) {
            us_Release(&c->iface); /* closes it: the client sees the connection end */
            continue;
        }
        fwx__uio *a = fwx__uioq_pop(&s->accepts);
        a->accepted = &c->iface;
        memcpy(&a->addr, &peer, (size_t)pl);
        a->addr_len = (uint32_t)pl;
        memcpy(&a->local, &local, (size_t)ll);
        a->local_len = (uint32_t)ll;
        complete_later(s, a);
    }
}

static fwx_result us_Listen(IFWXNetworkSocket *This, int32_t backlog)
{
    usock *s = impl_from(This);
    if (s->closed)
        return FWX_E_TERMINATING;
    if (s->proto != FWX_PROTOCOL_TCP || !s->has_fd || s->connected || s->connecting)
        return FWX_E_WSAEINVAL;
    if (s->listening)
        return FWX_S_OK;
    if (uv_listen(&s->io.stream, backlog > 0 ? backlog : SOMAXCONN, connection_cb) < 0)
        return FWX_E_WSAEINVAL;
    s->listening = true;
    return FWX_S_OK;
}

static fwx_result us_Accept(IFWXNetworkSocket *This, IFWXAcceptCompletion *cpl, uintptr_t ud)
{
    usock *s = impl_from(This);
    if (cpl == NULL)
        return FWX_E_POINTER;
    if (s->closed)
        return FWX_E_TERMINATING;
    if (!s->listening)
        return FWX_E_WSAEINVAL;
    fwx__uio *a = fwx__uio_new(FWX__UIO_ACCEPT, NULL, NULL, ud);
    if (a == NULL)
        return FWX_E_OUTOFMEMORY;
    a->acpl = cpl;
    IFWXAcceptCompletion_AddRef(cpl);
    a->listener = This;
    a->owner = s;
    fwx__uioq_push(&s->accepts, a);
    try_accept(s); /* completes later, through the queue */
    return FWX_S_OK;
}

static fwx_result us_SetSockOpt(IFWXNetworkSocket *This, int32_t level, int32_t name, const void *v, uint32_t len)
{
    usock *s = impl_from(This);
    uv_os_fd_t fd;
    if (s->closed || uv_fileno(&s->io.handle, &fd) < 0 || setsockopt(fd, level, name, v, len) < 0)
        return FWX_E_INVALIDARG;
    return FWX_S_OK;
}

static fwx_result us_GetSockOpt(IFWXNetworkSocket *This, int32_t level, int32_t name, void *v, uint32_t *len)
{
    usock *s = impl_from(This);
    uv_os_fd_t fd;
    if (len == NULL)
        return FWX_E_INVALIDARG;
    socklen_t l = *len;
    if (s->closed || uv_fileno(&s->io.handle, &fd) < 0 || getsockopt(fd, level, name, v, &l) < 0)
        return FWX_E_INVALIDARG;
    *len = l;
    return FWX_S_OK;
}

static fwx_result us_SetIpFilter(IFWXNetworkSocket *This, IFWXIpFilter *f)
{
    set_ipf(impl_from(This), f);
    return FWX_S_OK;
}

static fwx_result us_GetIpFilter(IFWXNetworkSocket *This, IFWXIpFilter **pf)
{
    if (pf == NULL)
        return FWX_E_POINTER;
    usock *s = impl_from(This);
    *pf = s->ipf;
    if (s->ipf != NULL)
        IFWXIpFilter_AddRef(s->ipf);
    return FWX_S_OK;
}

static const IFWXNetworkSocketVtbl usock_vtbl = {
    us_QueryInterface, us_AddRef,      us_Release,     us_Send,        us_SendTo,     us_Recv,
    us_Shutdown,       us_Close,       us_Connect,     us_Bind,        us_GetSockName, us_GetPeerName,
    us_Listen,         us_SetSockOpt,  us_GetSockOpt,  us_Accept,      us_SetIpFilter, us_GetIpFilter,
};

static fwx_result usock_alloc(uv_loop_t *loop, int32_t protocol, usock **out)
{
    usock *s = calloc(1, sizeof *s);
    if (s == NULL)
        return FWX_E_OUTOFMEMORY;
    s->iface.lpVtbl = &usock_vtbl;
    atomic_init(&s->refs, 1);
    s->loop = loop;
    s->proto = protocol;
    int rc = protocol == FWX_PROTOCOL_TCP ? uv_tcp_init(loop, &s->io.tcp) : uv_udp_init(loop, &s->io.udp);
    if (rc < 0) {
        free(s);
        return FWX_E_FAIL;
    }
    s->io.handle.data = s;
    s->handles = 1;
    if (uv_idle_init(loop, &s->idle) < 0) {
        s->closed = s->idle_closing = true;
        uv_close(&s->io.handle, io_closed_cb);
        atomic_store(&s->refs, 0);
        return FWX_E_FAIL;
    }
    s->idle.data = s;
    s->handles++;
    *out = s;
    return FWX_S_OK;
}

fwx_result fwx_network_socket_new(uv_loop_t *loop, fwx_firewall *fw, int32_t protocol, IFWXNetworkSocket **out)
{
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (loop == NULL)
        return FWX_E_POINTER;
    if (protocol != FWX_PROTOCOL_TCP && protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    usock *s;
    fwx_result hr = usock_alloc(loop, protocol, &s);
    if (FWX_FAILED(hr))
        return hr;
    s->fw = fw;
    *out = &s->iface;
    return FWX_S_OK;
}
