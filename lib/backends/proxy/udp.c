/*
 * fwx - UDP in the proxy backend: per-peer flows over a gateway port.
 *
 * A UDP "port" is a socket on the gateway facing outside peers: a publishing rule's listener,
 * a bound or redirect port a filter asked for, or a SOCKS5 UDP relay. Each distinct peer (or,
 * for SOCKS, each destination) is a flow: the core decides it once, with the first datagram
 * (fwx_connection_open or fwx_firewall_admit), and the flow then carries datagrams both ways
 * over its own connected upstream socket until it has been idle for the flow timeout, or the
 * core kills it. A port stops taking new peers when its grant goes (a one-shot bound port has
 * one peer) but keeps carrying the flows it has.
 *
 * Datagrams are relayed whole, up to 64 KiB; nothing is buffered: a datagram the kernel will
 * not take now is dropped, as UDP allows. A flow whose connection has data filters (attached in
 * the fwx_Bind_Udp, fwx_Udp_Destination or fwx_AcceptedConnection handler, or by a factory)
 * carries its datagrams through them (lib/backends/usermode/dgram.c): each datagram from either side
 * goes to the filter chain, and what the filters send goes out. That holds for every kind of
 * port: publishing, bound and redirect ports, and the destinations of a SOCKS UDP ASSOCIATE.
 *
 * Answers from a new port (FWX_FLAG_REPLY_FROM_PEER, a TFTP server's transfer port): a
 * published flow's upstream socket is connected to the server's port, so the kernel would drop
 * the server's answer from another port. That socket is opened with SO_REUSEADDR, and the
 * permission becomes an "answer port": an unconnected socket on the same address and port
 * (fwx_grant::gateway, which the core learnt from fwx_connection_set_upstream_local). The
 * kernel prefers the connected socket for what comes from the server's own port, so the answer
 * port sees only the other datagrams; the first the core admits (the permitted address, any
 * port) becomes a flow to the client from a new gateway port, and its replies go back out of
 * the answer port, so the server sees the transfer come from the port it answered. One flow,
 * then the port takes no more; it closes with that flow, or at once when the permission goes
 * unused (Cancel, timeout, the session's end).
 * SPDX-License-Identifier: MIT
 */
#include "backends/proxy/proxy_impl.h"


#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#define UDP_MAX_DATAGRAM 65536
#define UDP_MAX_FLOWS_PER_PORT 4096

struct udp_flow {
    udp_port *port;
    fwx__sa_key key; /* the peer */
    struct sockaddr_storage peer;   /* the outside peer (SOCKS: the destination) */
    struct sockaddr_storage target; /* where datagrams from the peer go (SOCKS: the destination) */
    uv_udp_t up;
    uv_timer_t idle;
    IFWXConnection *conn; /* +1 */
    psession *ps;         /* its own reference on the session (NAT peers of a publishing rule) */
    bool back;            /* replies may go back to the peer (BIDIRECTIONAL) */
    fwx_dgram *dg;       /* the data filters' path, or NULL: relayed as is */
    bool closing;
    int handles;
    UT_hash_handle hh;
    UT_hash_handle hh_conn; /* in pstate.flow_by_conn while conn is set */
};

static void flow_set_conn(udp_flow *f, IFWXConnection *conn)
{
    f->conn = conn;
    HASH_ADD(hh_conn, f->port->st->flow_by_conn, conn, sizeof f->conn, f);
}

static IFWXConnection *flow_take_conn(udp_flow *f)
{
    IFWXConnection *c = f->conn;
    if (c != NULL)
        HASH_DELETE(hh_conn, f->port->st->flow_by_conn, f);
    f->conn = NULL;
    return c;
}

static void port_maybe_close(udp_port *p);

/* ---- flows ------------------------------------------------------------------------------------- */

static void flow_handle_closed(uv_handle_t *h)
{
    udp_flow *f = h->data;
    if (--f->handles > 0)
        return;
    udp_port *p = f->port;
    pstate *st = p->st;
    free(f);
    p->n_flows--;
    st->handles--;
    port_maybe_close(p);
    fwx__proxy_state_maybe_free(st);
}

static void flow_close(udp_flow *f)
{
    if (f->closing)
        return;
    f->closing = true;
    udp_port *p = f->port;
    HASH_DEL(p->flows, f);
    fwx_dgram_stop(f->dg); /* before the connection ends: the filters' pending Recvs fail first */
    f->dg = NULL;
    IFWXConnection *c = flow_take_conn(f);
    if (c != NULL)
        fwx_connection_close(c);
    if (f->ps != NULL) {
        if (!p->st->closing)
            fwx__proxy_session_unref(p->st, f->ps);
        f->ps = NULL;
    }
    f->handles = 2;
    uv_close((uv_handle_t *)&f->up, flow_handle_closed);
    uv_close((uv_handle_t *)&f->idle, flow_handle_closed);
}

static void on_idle(uv_timer_t *t)
{
    flow_close(t->data);
}

static void touch(udp_flow *f)
{
    uv_timer_again(&f->idle);
}

static void up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    udp_flow *f = h->data;
    (void)suggested;
    buf->base = (char *)f->port->buf;
    buf->len = sizeof f->port->buf;
}

/* A datagram from the flow's target (or SOCKS destination): back to the peer. */
static void on_up_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
    udp_flow *f = h->data;
    (void)from;
    if (n <= 0 || f->closing || (flags & UV_UDP_PARTIAL))
        return;
    if (!f->back)
        return; /* without BIDIRECTIONAL nothing goes back to the peer */
    touch(f);
    udp_port *p = f->port;
    if (f->dg != NULL) {
        (void)fwx_dgram_input(f->dg, FWX_DGRAM_EXTERNAL, (const uint8_t *)buf->base, (size_t)n);
        return;
    }
    if (p->kind == UDP_PORT_SOCKS) {
        fwx__proxy_socks_udp_reply(p, (struct sockaddr *)&f->peer, (const uint8_t *)buf->base, (size_t)n);
    } else {
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
        if (uv_udp_try_send(&p->udp, &b, 1, (struct sockaddr *)&f->peer) == (int)n && f->conn != NULL)
            fwx_connection_count_bytes(f->conn, 0, (uint64_t)n);
    }
}

static udp_flow *flow_new(udp_port *p, const struct sockaddr *peer, const struct sockaddr *target, bool back,
                          uint32_t sockopt_flags)
{
    pstate *st = p->st;
    if (p->n_flows >= UDP_MAX_FLOWS_PER_PORT)
        return NULL;
    udp_flow *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->port = p;
    memcpy(&f->peer, peer, fwx__sa_len(peer));
    memcpy(&f->target, target, fwx__sa_len(target));
    fwx__sa_key_of(peer, true, &f->key);
    f->back = back;
    if (uv_udp_init_ex(st->loop, &f->up, f->target.ss_family) != 0) {
        free(f);
        return NULL;
    }
    if (p->kind == UDP_PORT_PUBLISH) {
        /* An answer port may share this socket's address and port (see the top). */
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&f->up, &fd) == 0)
            (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    uv_timer_init(st->loop, &f->idle);
    f->up.data = f;
    f->idle.data = f;
    p->n_flows++;
    st->handles++;
    HASH_ADD(hh, p->flows, key, sizeof f->key, f);
    if (sockopt_flags & FWX_INCREASE_RECEIVE_BUFFER) {
        int sz = 64 * 1024;
        uv_recv_buffer_size((uv_handle_t *)&f->up, &sz);
    }
    if (uv_udp_connect(&f->up, (struct sockaddr *)&f->target) != 0 ||
        uv_udp_recv_start(&f->up, up_alloc, on_up_recv) != 0) {
        flow_close(f);
        return NULL;
    }
    uv_timer_start(&f->idle, on_idle, st->udp_idle_ms, st->udp_idle_ms);
    return f;
}

/* The data filters send a datagram out of side 0 (to the peer) or 1 (to the target). */
static int flow_dg_send(void *arg, int32_t side, const uint8_t *data, size_t n)
{
    udp_flow *f = arg;
    udp_port *p = f->port;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    if (f->closing)
        return UV_ECANCELED;
    touch(f);
    if (side == FWX_DGRAM_EXTERNAL) {
        int rc = uv_udp_try_send(&f->up, &b, 1, NULL);
        return rc < 0 ? rc : 0;
    }
    if (!f->back)
        return UV_EPERM; /* a one-way bound port: nothing goes back to the peer, filtered or not */
    if (p->kind == UDP_PORT_SOCKS) {
        fwx__proxy_socks_udp_reply(p, (struct sockaddr *)&f->peer, data, n);
        return 0;
    }
    int rc = uv_udp_try_send(&p->udp, &b, 1, (struct sockaddr *)&f->peer);
    return rc < 0 ? rc : 0;
}

/* Puts the flow's datagrams through its connection's data filters, if it has any that apply.
   False when the filters refused to start (the flow must not carry anything unfiltered). */
static bool flow_start_filters(udp_flow *f)
{
    if (fwx_connection_data_filters(f->conn) == 0)
        return true;
    fwx_result hr = fwx_dgram_start(f->port->st->loop, f->conn, (struct sockaddr *)&f->peer,
                                    fwx__sa_len((struct sockaddr *)&f->peer), (struct sockaddr *)&f->target,
                                    fwx__sa_len((struct sockaddr *)&f->target), flow_dg_send, f, &f->dg);
    return FWX_SUCCEEDED(hr);
}

void fwx__proxy_udp_flow_send(udp_flow *f, const uint8_t *data, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    touch(f);
    if (f->dg != NULL) {
        (void)fwx_dgram_input(f->dg, FWX_DGRAM_INTERNAL, data, n);
        return;
    }
    if (uv_udp_try_send(&f->up, &b, 1, NULL) == (int)n && f->conn != NULL)
        fwx_connection_count_bytes(f->conn, (uint64_t)n, 0);
}

udp_flow *fwx__proxy_udp_flow_find(udp_port *p, const struct sockaddr *peer)
{
    fwx__sa_key k;
    udp_flow *f = NULL;
    fwx__sa_key_of(peer, true, &k);
    HASH_FIND(hh, p->flows, &k, sizeof k, f);
    return f;
}

/* ---- deciding a new peer --------------------------------------------------------------------- */

/* The core decides a new peer of a publishing or grant port; returns its flow or NULL. */
static udp_flow *admit_peer(udp_port *p, const struct sockaddr *peer)
{
    pstate *st = p->st;
    IFWXConnection *conn = NULL;
    psession *ps = NULL;
    fwx_result hr;
    const struct sockaddr *target;
    bool back = true;
    uint32_t flags = 0;
    if (p->kind == UDP_PORT_PUBLISH) {
        ps = fwx__proxy_session_nat(st, peer);
        if (ps == NULL)
            return NULL;
        ps->relays++;
        fwx_connection_params cp = {sizeof cp,
                                    fwx_AcceptedConnection,
                                    FWX_PROTOCOL_UDP,
                                    peer,
                                    fwx__sa_len(peer),
                                    (struct sockaddr *)&p->spec.address,
                                    fwx__sa_len((struct sockaddr *)&p->spec.address),
                                    NULL,
                                    p->spec.full_proxy ? FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION : 0,
                                    fwx__sa_len((struct sockaddr *)&p->spec.server),
                                    (struct sockaddr *)&p->spec.server};
        st->udp_deciding++; /* ours to carry, data filters included (p_relay) */
        hr = fwx_connection_open(ps->session, &cp, &conn);
        st->udp_deciding--;
        target = (const struct sockaddr *)&p->spec.server;
    } else {
        if (p->kind == UDP_PORT_ANSWER) {
            /* The transfer holds the client's session, as its request flow does: a transfer
               outlasts the request flow's idle timeout, and the session's end would kill it. */
            if ((ps = fwx__proxy_session_nat(st, (const struct sockaddr *)&p->grant.client)) == NULL)
                return NULL;
            ps->relays++;
        }
        /* A permission is asked for by where the flow goes; a port by the port itself. */
        struct sockaddr_storage dst = p->kind == UDP_PORT_ANSWER ? p->grant.target : p->grant.gateway;
        if (fwx__sa_is_unspecified((struct sockaddr *)&dst))
            dst = p->local;
        fwx_flow fl = {sizeof fl, FWX_PROTOCOL_UDP, peer, fwx__sa_len(peer), (struct sockaddr *)&dst,
                       fwx__sa_len((struct sockaddr *)&dst)};
        st->udp_deciding++;
        hr = fwx_firewall_admit(st->fw, &fl, &conn);
        st->udp_deciding--;
        target = (const struct sockaddr *)&p->grant.target;
        flags = p->grant.flags;
        /* A bound port's replies go back only with BIDIRECTIONAL; a redirect is a connection. */
        back = p->grant.kind == FWX_GRANT_REDIRECT || (flags & FWX_FLAG_BIDIRECTIONAL);
    }
    if (FWX_FAILED(hr)) {
        if (ps != NULL)
            fwx__proxy_session_unref(st, ps);
        return NULL;
    }
    udp_flow *f = flow_new(p, peer, target, back, flags);
    if (f == NULL) {
        fwx_connection_close(conn);
        if (ps != NULL)
            fwx__proxy_session_unref(st, ps);
        return NULL;
    }
    flow_set_conn(f, conn);
    f->ps = ps;
    if (p->kind == UDP_PORT_PUBLISH) {
        /* Where the server's answers arrive: an answer port is opened there (see the top). */
        struct sockaddr_storage self;
        int sl = sizeof self;
        if (uv_udp_getsockname(&f->up, (struct sockaddr *)&self, &sl) == 0)
            (void)fwx_connection_set_upstream_local(conn, (struct sockaddr *)&self, (uint32_t)sl);
    }
    if (!flow_start_filters(f)) {
        flow_close(f); /* closes the connection and lets go of the session */
        return NULL;
    }
    return f;
}

/* ---- ports ------------------------------------------------------------------------------------- */

static void port_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    udp_port *p = h->data;
    (void)suggested;
    buf->base = (char *)p->buf;
    buf->len = sizeof p->buf;
}

static void on_port_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
    udp_port *p = h->data;
    if (n < 0 || from == NULL || (flags & UV_UDP_PARTIAL) || p->closing)
        return; /* n == 0 with no address: nothing more to read now */
    if (p->kind == UDP_PORT_SOCKS) {
        fwx__proxy_socks_udp_datagram(p, from, (const uint8_t *)buf->base, (size_t)n);
        return;
    }
    udp_flow *f = fwx__proxy_udp_flow_find(p, from);
    if (f == NULL) {
        if (!p->accepting)
            return; /* a one-shot port already has its peer */
        /* Admitting a one-shot port's peer withdraws its grant, which releases this port:
           keep the socket until the flow that carries on with it exists. */
        p->admitting = true;
        f = admit_peer(p, from);
        p->admitting = false;
        if (f == NULL) {
            port_maybe_close(p);
            return; /* refused: the core logged why; the datagram is dropped */
        }
        if ((p->kind == UDP_PORT_GRANT || p->kind == UDP_PORT_ANSWER) && !(p->grant.flags & FWX_FLAG_ALLOW_MULTIPLE))
            p->accepting = false; /* one source only (T3 for UDP, doc/sdk-rules.md) */
    }
    fwx__proxy_udp_flow_send(f, (const uint8_t *)buf->base, (size_t)n);
}

static void port_closed(uv_handle_t *h)
{
    udp_port *p = h->data;
    pstate *st = p->st;
    free(p);
    st->handles--;
    fwx__proxy_state_maybe_free(st);
}

static void port_maybe_close(udp_port *p)
{
    if (p->released && p->n_flows == 0 && !p->admitting && !p->handle_closing) {
        p->handle_closing = true;
        uv_close((uv_handle_t *)&p->udp, port_closed);
    }
}

udp_port *fwx__proxy_udp_port_open(pstate *st, int kind, const struct sockaddr *addr, uint32_t flags, fwx_result *hr)
{
    udp_port *p = calloc(1, sizeof *p);
    if (p == NULL) {
        *hr = FWX_E_OUTOFMEMORY;
        return NULL;
    }
    p->st = st;
    p->kind = kind;
    p->accepting = true;
    int rc = uv_udp_init_ex(st->loop, &p->udp, addr->sa_family);
    if (rc != 0) {
        free(p);
        *hr = fwx__result_from_errno(rc, FWX_E_BACKEND);
        return NULL;
    }
    p->udp.data = p;
    st->handles++;
    /* A publishing rule's port is shared among the process's loops (listen_shared), one client
       address to one loop as for TCP. A grant's port is not. */
    uint32_t n = kind == UDP_PORT_PUBLISH ? fwx_firewall_listen_shared(st->fw) : 0;
    uv_os_fd_t fd = -1;
    if (n > 1 && uv_fileno((uv_handle_t *)&p->udp, &fd) == 0)
        rc = fwx__reuseport(fd);
    if (rc == 0)
        rc = uv_udp_bind(&p->udp, addr, kind == UDP_PORT_ANSWER ? UV_UDP_REUSEADDR : 0);
    if (rc == 0 && n > 1)
        rc = fwx__reuseport_by_source(fd, n);
    int len = sizeof p->local;
    if (rc == 0)
        rc = uv_udp_getsockname(&p->udp, (struct sockaddr *)&p->local, &len);
    if (rc == 0 && (flags & FWX_INCREASE_RECEIVE_BUFFER)) {
        int sz = 64 * 1024;
        uv_recv_buffer_size((uv_handle_t *)&p->udp, &sz);
    }
    if (rc == 0)
        rc = uv_udp_recv_start(&p->udp, port_alloc, on_port_recv);
    if (rc != 0) {
        p->released = true;
        port_maybe_close(p);
        *hr = fwx__result_from_errno(rc, FWX_E_BACKEND);
        return NULL;
    }
    p->next = st->udp_ports;
    if (st->udp_ports)
        st->udp_ports->prev = p;
    st->udp_ports = p;
    *hr = FWX_S_OK;
    return p;
}

fwx_result fwx__proxy_udp_answer_open(pstate *st, const fwx_grant *g)
{
    const struct sockaddr *gw = (const struct sockaddr *)&g->gateway;
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    if (fwx__sa_is_unspecified(gw) || fwx__sa_port(gw) == 0) {
        /* Only a flow this backend relays from a socket of its own has a port the answer
           comes to (a published UDP server's); anything else it cannot carry. */
        fwx_firewall_log(st->fw, FWX_LOG_WARN,
                         "permission %llu (UDP answer to %s): no gateway socket the answer would arrive at; this "
                         "backend carries such a permission for a published UDP server only",
                         (unsigned long long)g->id, fwx__sa_fmt((const struct sockaddr *)&g->target, a));
        return FWX_E_NOT_SUPPORTED;
    }
    fwx_result hr;
    udp_port *u = fwx__proxy_udp_port_open(st, UDP_PORT_ANSWER, gw, g->flags, &hr);
    if (u == NULL) {
        fwx_firewall_log(st->fw, FWX_LOG_WARN, "permission %llu: cannot open the answer port %s: %s",
                         (unsigned long long)g->id, fwx__sa_fmt(gw, b), fwx_strerror(hr));
        return hr;
    }
    u->id = g->id;
    u->grant = *g;
    u->grant.sources = NULL; /* borrowed for the grant_add call only */
    u->grant.n_sources = 0;
    return FWX_S_OK;
}

/* The owner lets go: no new peers; the socket closes with the last flow (or at once). */
void fwx__proxy_udp_port_release(udp_port *p, bool kill_flows)
{
    pstate *st = p->st;
    if (p->released)
        return;
    p->released = true;
    p->accepting = false;
    if (p->prev)
        p->prev->next = p->next;
    else
        st->udp_ports = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    if (kill_flows) {
        p->closing = true;
        udp_flow *f, *tmp;
        HASH_ITER(hh, p->flows, f, tmp)
        {
            flow_close(f);
        }
    }
    port_maybe_close(p);
}

udp_port *fwx__proxy_udp_port_find(pstate *st, uint64_t id)
{
    for (udp_port *p = st->udp_ports; p != NULL; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

bool fwx__proxy_udp_kill(pstate *st, IFWXConnection *conn)
{
    udp_flow *f = NULL;
    HASH_FIND(hh_conn, st->flow_by_conn, &conn, sizeof conn, f);
    if (f == NULL)
        return false;
    /* The core is ending the connection: let go of it without closing it again. */
    flow_take_conn(f);
    IFWXConnection_Release(conn);
    flow_close(f);
    return true;
}

void fwx__proxy_udp_close_all(pstate *st)
{
    while (st->udp_ports != NULL)
        fwx__proxy_udp_port_release(st->udp_ports, true);
}

/* For SOCKS: a flow to a destination the core has already allowed. */
udp_flow *fwx__proxy_udp_flow_for(udp_port *p, const struct sockaddr *dst, IFWXConnection *conn)
{
    udp_flow *f = flow_new(p, dst, dst, true, 0);
    if (f == NULL)
        return NULL;
    flow_set_conn(f, conn);
    if (!flow_start_filters(f)) {
        flow_take_conn(f); /* the caller still owns the connection and closes it */
        flow_close(f);
        return NULL;
    }
    return f;
}
