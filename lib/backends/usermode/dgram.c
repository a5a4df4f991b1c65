/*
 * fwx - the datagram path: one UDP flow carried through its connection's data filters (public:
 * include/fwx/pump.h, with the contract the filters see). The owner (a backend: proxy/udp.c,
 * nft/udp.c) keeps the real sockets and hands each datagram in with fwx_dgram_input; what a
 * filter sends on a real socket goes back out through the owner's send callback.
 * SPDX-License-Identifier: MIT
 */
#include "backends/usermode/uio.h"

#include <stdlib.h>
#include <sys/socket.h>

/* Datagrams a socket holds while its filter has no Recv pending; more are dropped (UDP may). */
#define DGRAM_QUEUE_MAX 64

typedef struct dnode {
    struct dnode *next;
    uint32_t len;
    uint8_t data[];
} dnode;

typedef struct dsock dsock;
struct dsock {
    IFWXSocket iface;
    atomic_uint refs;
    fwx_dgram *dg; /* NULL once the path ended */
    bool is_virtual;
    int side;    /* real: 0 internal, 1 external */
    dsock *peer; /* virtual: the other end */
    fwx__uio *recv;
    dnode *head, *tail; /* datagrams waiting for a Recv */
    unsigned queued;
    bool closed, shut_wr, rd_eof, peer_eof;
};

struct fwx_dgram {
    uv_loop_t *loop;
    fwx_firewall *fw;     /* its log */
    IFWXConnection *conn; /* +1 */
    fwx_dgram_send_cb send;
    void *send_arg;
    bool ending;
    uv_idle_t idle;
    bool idle_on, closing;
    fwx__uio_queue cq;
    dsock **socks;
    size_t n_socks;
    dsock *real[2];
    struct sockaddr_storage addr[2]; /* who each real side talks to: the ExternalAddress of its Recvs */
    uint64_t dropped;
};

static const IFWXSocketVtbl dsock_vtbl;

static dsock *impl_from_IFWXSocket(IFWXSocket *i) { return fwx__container_of(i, dsock, iface); }

static void idle_cb(uv_idle_t *h);

static void complete_later(fwx_dgram *d, fwx__uio *op)
{
    fwx__uioq_push(&d->cq, op);
    if (!d->idle_on && !d->closing) {
        d->idle_on = true;
        uv_idle_start(&d->idle, idle_cb);
    }
}

static void drop(fwx_dgram *d, dsock *s, uint32_t len, uint32_t cap, const char *why)
{
    fwx_connection_count_dropped_datagrams(d->conn, 1);
    if (d->dropped++ == 0) {
        char a[FWX__SA_STRLEN];
        fwx_firewall_log(d->fw, FWX_LOG_WARN, "connection %llu: a %u-byte datagram %s%s dropped: %s (%u)",
                         (unsigned long long)fwx_connection_id(d->conn), (unsigned)len,
                         s->is_virtual ? "between data filters" : "from ",
                         s->is_virtual ? "" : fwx__sa_fmt((struct sockaddr *)&d->addr[s->side], a), why, (unsigned)cap);
    }
}

/* Ends s's pending Recv with one datagram; false (and the datagram dropped) if it does not fit. */
static bool deliver(fwx_dgram *d, dsock *s, const uint8_t *data, uint32_t len)
{
    fwx__uio *op = s->recv;
    uint8_t *mem;
    uint32_t cap;
    if (!fwx__uio_space(op->buf, &mem, &cap)) {
        complete_later(d, fwx__uio_end_pending(&s->recv, UV_EINVAL));
        return false;
    }
    if (len > cap) {
        /* T18 (doc/sdk-rules.md): a datagram larger than the receive buffer is dropped, never cut. */
        drop(d, s, len, cap, "larger than the data filter's receive buffer, bytes");
        return false;
    }
    memcpy(mem, data, len);
    s->recv = NULL;
    if (!s->is_virtual) {
        op->has_addr = true;
        op->addr = d->addr[s->side];
        op->addr_len = fwx__sa_len((struct sockaddr *)&op->addr);
    }
    fwx__uio_recv_done(op, len);
    complete_later(d, op);
    return true;
}

static void enqueue(fwx_dgram *d, dsock *s, const uint8_t *data, uint32_t len)
{
    dnode *n = s->queued < DGRAM_QUEUE_MAX ? malloc(sizeof *n + len) : NULL;
    if (n == NULL) {
        drop(d, s, len, DGRAM_QUEUE_MAX, "the data filter is not receiving, datagrams queued");
        return;
    }
    n->next = NULL;
    n->len = len;
    memcpy(n->data, data, len);
    if (s->tail != NULL)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
    s->queued++;
}

static void queue_clear(dsock *s)
{
    while (s->head != NULL) {
        dnode *n = s->head;
        s->head = n->next;
        free(n);
    }
    s->tail = NULL;
    s->queued = 0;
}

/* Serves s's pending Recv from its queue, or with EOF once nothing more can come. */
static void serve(fwx_dgram *d, dsock *s)
{
    while (s->recv != NULL && s->head != NULL) {
        dnode *n = s->head;
        s->head = n->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->queued--;
        (void)deliver(d, s, n->data, n->len);
        free(n);
    }
    if (s->recv != NULL && (s->rd_eof || s->peer_eof))
        complete_later(d, fwx__uio_end_pending(&s->recv, 0));
}

static void sock_kill(dsock *s, int err)
{
    fwx_dgram *d = s->dg;
    if (s->closed)
        return;
    s->closed = true;
    queue_clear(s);
    if (s->recv != NULL)
        complete_later(d, fwx__uio_end_pending(&s->recv, err));
    if (s->is_virtual && s->peer != NULL && !s->peer->closed) {
        s->peer->peer_eof = true; /* the other end's Recv sees EOF once its queue is read */
        serve(d, s->peer);
    }
}

fwx_result fwx_dgram_input(fwx_dgram *d, int32_t side, const uint8_t *data, size_t n)
{
    if (d == NULL || (data == NULL && n > 0))
        return FWX_E_POINTER;
    if (side != FWX_DGRAM_INTERNAL && side != FWX_DGRAM_EXTERNAL)
        return FWX_E_INVALIDARG;
    if (d->ending)
        return FWX_E_TERMINATING;
    if (n > UINT32_MAX)
        return FWX_E_INVALIDARG;
    dsock *s = d->real[side];
    /* A zero-length datagram would read as EOF: not carried. A closed side takes nothing. */
    if (s == NULL || s->closed || s->rd_eof || n == 0)
        return FWX_S_FALSE;
    fwx_connection_count_bytes(d->conn, side == FWX_DGRAM_INTERNAL ? n : 0, side == FWX_DGRAM_EXTERNAL ? n : 0);
    if (s->recv != NULL && s->head == NULL)
        (void)deliver(d, s, data, (uint32_t)n);
    else
        enqueue(d, s, data, (uint32_t)n);
    return FWX_S_OK;
}

/* ---- IFWXSocket ---------------------------------------------------------------------------- */

static bool sock_live(dsock *s) { return s->dg != NULL && !s->dg->ending && !s->closed; }

static fwx_result ds_QueryInterface(IFWXSocket *This, const fwx_guid *riid, void **ppv)
{
    return fwx__uio_sock_query(This, false, riid, ppv);
}

static uint32_t ds_AddRef(IFWXSocket *This) { return atomic_fetch_add(&impl_from_IFWXSocket(This)->refs, 1) + 1; }

static uint32_t ds_Release(IFWXSocket *This)
{
    dsock *s = impl_from_IFWXSocket(This);
    uint32_t n = atomic_fetch_sub(&s->refs, 1) - 1;
    if (n == 0) {
        queue_clear(s);
        free(s);
    }
    return n;
}

static fwx_result ds_Send(IFWXSocket *This, IFWXIOBuffer *pBuffer, IFWXIOCompletion *pCompletion, uintptr_t ud)
{
    dsock *s = impl_from_IFWXSocket(This);
    fwx__uio *op;
    fwx_result hr = fwx__uio_send_begin(sock_live(s) && !s->shut_wr, pBuffer, pCompletion, ud, &op);
    if (FWX_FAILED(hr))
        return hr;
    fwx_dgram *d = s->dg;
    uint8_t *data;
    uint32_t len;
    if (!fwx__uio_data(pBuffer, &data, &len)) {
        fwx__uio_free(op);
        return FWX_E_INVALIDARG;
    }
    /* One Send is one datagram; it completes once handed on (to the kernel, or queued at the
       other end of a virtual pair), as a UDP send does. */
    if (s->is_virtual) {
        dsock *b = s->peer;
        if (b == NULL || b->closed) {
            fwx__uio_fail(op, UV_EPIPE);
        } else if (len > 0) {
            if (b->recv != NULL && b->head == NULL)
                (void)deliver(d, b, data, len);
            else
                enqueue(d, b, data, len);
        }
    } else {
        int rc = d->send(d->send_arg, s->side, data, len);
        if (rc < 0)
            fwx__uio_fail(op, rc);
    }
    op->off = len;
    complete_later(d, op);
    return FWX_S_OK;
}

static fwx_result ds_SendTo(IFWXSocket *This, IFWXIOBuffer *pBuffer, const struct sockaddr *a, uint32_t al,
                            IFWXIOCompletion *pCompletion, uintptr_t ud)
{
    /* A flow has one peer per side: the address is not a choice here. */
    (void)a;
    (void)al;
    return ds_Send(This, pBuffer, pCompletion, ud);
}

static fwx_result ds_Recv(IFWXSocket *This, IFWXIOBuffer *pBuffer, IFWXIOCompletion *pCompletion, uintptr_t ud)
{
    dsock *s = impl_from_IFWXSocket(This);
    bool live = sock_live(s);
    /* Read at each Recv: the filter may have called SetBufferSize since. */
    fwx__uio *op;
    fwx_result hr = fwx__uio_recv_begin(live, s->recv != NULL, pBuffer,
                                        live ? fwx_connection_buffer_size(s->dg->conn) : 0, pCompletion, ud, &op);
    if (FWX_FAILED(hr))
        return hr;
    s->recv = op;
    serve(s->dg, s);
    return FWX_S_OK;
}

static fwx_result ds_Shutdown(IFWXSocket *This, int32_t How)
{
    dsock *s = impl_from_IFWXSocket(This);
    if (!fwx__uio_how_valid(How))
        return FWX_E_INVALIDARG;
    if (!sock_live(s))
        return FWX_E_TERMINATING;
    fwx_dgram *d = s->dg;
    if (fwx__uio_how_rd(How)) {
        s->rd_eof = true;
        queue_clear(s);
        serve(d, s);
    }
    if (fwx__uio_how_wr(How)) {
        s->shut_wr = true;
        if (s->is_virtual && s->peer != NULL && !s->peer->closed) {
            s->peer->peer_eof = true;
            serve(d, s->peer);
        }
    }
    return FWX_S_OK;
}

static fwx_result ds_Close(IFWXSocket *This)
{
    dsock *s = impl_from_IFWXSocket(This);
    if (!sock_live(s))
        return FWX_S_OK;
    sock_kill(s, UV_ECANCELED);
    return FWX_S_OK;
}

static const IFWXSocketVtbl dsock_vtbl = {
    ds_QueryInterface, ds_AddRef, ds_Release, ds_Send, ds_SendTo, ds_Recv, ds_Shutdown, ds_Close,
};

/* ---- start and end ------------------------------------------------------------------------- */

static void closed_cb(uv_handle_t *h)
{
    fwx_dgram *d = h->data;
    for (size_t i = 0; i < d->n_socks; i++) {
        dsock *s = d->socks[i];
        s->dg = NULL;
        s->peer = NULL;
        IFWXSocket_Release(&s->iface);
    }
    free(d->socks);
    IFWXConnection_Release(d->conn);
    free(d);
}

static void deliver_one(void *op) { fwx__uio_deliver(op); }

static void idle_cb(uv_idle_t *h)
{
    fwx_dgram *d = h->data;
    /* Only what is queued now: completions queued by these callbacks wait for the next turn. */
    fwx__uio_queue batch = d->cq;
    d->cq.head = d->cq.tail = NULL;
    fwx__uio *op;
    /* Each completion is a call into the connection's data filters, as on the TCP path. */
    while ((op = fwx__uioq_pop(&batch)) != NULL)
        fwx_connection_data_call(d->conn, deliver_one, op);
    if (fwx__uioq_empty(&d->cq)) {
        uv_idle_stop(&d->idle);
        d->idle_on = false;
        if (d->ending && !d->closing) {
            d->closing = true;
            uv_close((uv_handle_t *)&d->idle, closed_cb);
        }
    }
}

void fwx_dgram_stop(fwx_dgram *d)
{
    if (d == NULL || d->ending)
        return;
    d->ending = true;
    if (d->dropped > 1)
        fwx_firewall_log(d->fw, FWX_LOG_WARN, "connection %llu: %llu datagrams dropped in all",
                         (unsigned long long)fwx_connection_id(d->conn), (unsigned long long)d->dropped);
    for (size_t i = 0; i < d->n_socks; i++)
        sock_kill(d->socks[i], UV_ECANCELED);
    /* Through the idle handle: the pending operations fail from a loop callback, then it closes. */
    if (!d->idle_on) {
        d->idle_on = true;
        uv_idle_start(&d->idle, idle_cb);
    }
}

static dsock *dsock_new(fwx_dgram *d, bool is_virtual, int side)
{
    dsock *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->iface.lpVtbl = &dsock_vtbl;
    atomic_init(&s->refs, 1);
    s->dg = d;
    s->is_virtual = is_virtual;
    s->side = side;
    d->socks[d->n_socks++] = s;
    return s;
}

fwx_result fwx_dgram_start(uv_loop_t *loop, IFWXConnection *conn, const struct sockaddr *internal_peer,
                           uint32_t internal_len, const struct sockaddr *external_peer, uint32_t external_len,
                           fwx_dgram_send_cb send, void *arg, fwx_dgram **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || conn == NULL || send == NULL || out == NULL || internal_peer == NULL || external_peer == NULL)
        return FWX_E_POINTER;
    fwx_firewall *fw = fwx_connection_firewall(conn);
    if (fw == NULL || !fwx__sa_valid(internal_peer, internal_len) || !fwx__sa_valid(external_peer, external_len))
        return FWX_E_INVALIDARG; /* not the core's connection, or not an address */
    /* A filter attached with a destination joins only the flow of that destination: the core
       says which (fwx_connection_data_filter_applies). */
    uint32_t n_dfs = fwx_connection_data_filters(conn);
    size_t n = 0;
    for (uint32_t i = 0; i < n_dfs; i++)
        n += fwx_connection_data_filter_applies(conn, i) != 0;
    if (n == 0)
        return FWX_S_FALSE; /* nothing to run here: the owner relays the datagrams itself */
    fwx_dgram *d = calloc(1, sizeof *d);
    if (d == NULL)
        return FWX_E_OUTOFMEMORY;
    d->socks = calloc(2 + 2 * (n - 1), sizeof *d->socks);
    if (d->socks == NULL || uv_idle_init(loop, &d->idle) != 0) {
        fwx_result fail = d->socks == NULL ? FWX_E_OUTOFMEMORY : FWX_E_FAIL;
        free(d->socks);
        free(d);
        return fail;
    }
    d->loop = loop;
    d->fw = fw;
    d->send = send;
    d->send_arg = arg;
    d->idle.data = d;
    d->conn = conn;
    IFWXConnection_AddRef(conn);
    memcpy(&d->addr[0], internal_peer, fwx__sa_len(internal_peer)); /* valid: never past its family's size */
    memcpy(&d->addr[1], external_peer, fwx__sa_len(external_peer));
    fwx_result hr = FWX_S_OK;
    if ((d->real[0] = dsock_new(d, false, 0)) == NULL || (d->real[1] = dsock_new(d, false, 1)) == NULL)
        hr = FWX_E_OUTOFMEMORY;
    for (size_t i = 0; FWX_SUCCEEDED(hr) && i + 1 < n; i++) {
        dsock *a = dsock_new(d, true, -1), *b = a != NULL ? dsock_new(d, true, -1) : NULL;
        if (b == NULL) {
            hr = FWX_E_OUTOFMEMORY;
            break;
        }
        a->peer = b;
        b->peer = a;
    }
    /* socks: [0] internal, [1] external, then the virtual pairs a,b: filter k gets the left
       socket (internal or b of the pair before it) and the right one (external or a). */
    size_t k = 0;
    for (uint32_t i = 0; FWX_SUCCEEDED(hr) && i < n_dfs; i++) {
        if (!fwx_connection_data_filter_applies(conn, i))
            continue;
        dsock *l = k == 0 ? d->real[0] : d->socks[2 + 2 * (k - 1) + 1];
        dsock *r = k + 1 == n ? d->real[1] : d->socks[2 + 2 * k];
        /* FWX_E_TERMINATING when a filter detached or the connection ended meanwhile. */
        hr = fwx_connection_data_filter_set_sockets(conn, i, &l->iface, &r->iface);
        k++;
    }
    if (FWX_FAILED(hr)) {
        fwx_firewall_log(fw, FWX_LOG_WARN, "connection %llu: datagram path not started: %s",
                         (unsigned long long)fwx_connection_id(conn), fwx_strerror(hr));
        fwx_dgram_stop(d); /* what a filter got fails from a loop callback; freed after */
        return hr;
    }
    *out = d;
    return FWX_S_OK;
}
