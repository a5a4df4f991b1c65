/*
 * fwx - the "proxy" backend: steering by explicit listeners, in user mode, with no kernel rules
 * and no privileges, so it runs on loopback anywhere.
 *
 * - Publishing rules: listen on the rule's address; each accepted client gets a transparent
 *   (NAT) session for its address and an fwx_AcceptedConnection; if the core allows it, the
 *   backend connects to the published server and the user-mode data path carries the bytes.
 * - Grants become real sockets: a bound port (BindForClient) or redirect port
 *   (RedirectConnections) is a listener on the gateway; a connection to it is offered to the
 *   core with fwx_firewall_admit() and, if admitted, connected onward to the grant's target.
 *
 * It uses the public API only, plus the core's user-mode data path (lib/backends/usermode), as a
 * third-party backend built on fwx's data path would.
 * SPDX-License-Identifier: MIT
 */
#include "backends/proxy/proxy_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void fwx__proxy_state_maybe_free(pstate *st)
{
    if (st->closing && st->handles == 0) {
        fwx__proxy_reserve_close(st);
        fwx__socks_users_free(st->users);
        free(st->perms);
        free(st);
    }
}

/* ---- relays ------------------------------------------------------------------------------ */

void fwx__proxy_session_unref(pstate *st, psession *ps)
{
    if (ps == NULL || --ps->relays > 0)
        return;
    HASH_DEL(st->sessions, ps);
    fwx_session_close(ps->session);
    IFWXSession_Release(ps->session);
    free(ps);
}

void fwx__proxy_relay_set_conn(prelay *r, IFWXConnection *conn)
{
    r->conn = conn;
    HASH_ADD(hh_conn, r->st->relay_by_conn, conn, sizeof r->conn, r);
}

static void relay_free(prelay *r)
{
    pstate *st = r->st;
    DLIST_DEL(st->relays, r);
    if (r->conn != NULL) {
        HASH_DELETE(hh_conn, st->relay_by_conn, r);
        fwx_connection_close(r->conn); /* ConnectionTerminating, then our reference goes */
    }
    if (!st->closing)
        fwx__proxy_session_unref(st, r->ps);
    else if (r->ps != NULL && --r->ps->relays == 0) {
        HASH_DEL(st->sessions, r->ps);
        IFWXSession_Release(r->ps->session);
        free(r->ps);
    }
    free(r);
    st->handles--;
    fwx__proxy_state_maybe_free(st);
}

static void pump_done(fwx_pump *p, void *arg)
{
    (void)p;
    relay_free(arg);
}

/* Ends a relay that never got a pump: close what it holds, then free it. */
void fwx__proxy_relay_fail(prelay *r)
{
    if (r->finished)
        return;
    r->finished = true;
    if (r->internal_fd >= 0)
        close(r->internal_fd);
    r->internal_fd = -1;
    if (r->connecting) {
        r->connecting = false;
        fwx_pump_connect_cancel(r->connector);
        r->connector = NULL;
    }
    if (r->up_fd >= 0)
        close(r->up_fd);
    r->up_fd = -1;
    relay_free(r);
}

static void on_upstream(void *arg, int status)
{
    prelay *r = arg;
    pstate *st = r->st;
    char a[FWX__SA_STRLEN];
    fwx_pump_connector *connector = r->connector; /* gone after this call */
    r->connector = NULL;
    r->connecting = false;
    if (r->finished) /* killed while connecting: the close is already under way */
        return;
    if (status < 0) {
        fwx_firewall_log(st->fw, FWX_LOG_WARN, "proxy: connecting to %s failed: %s",
                         fwx__sa_fmt((struct sockaddr *)&r->target, a), uv_strerror(status));
        if (r->on_connected != NULL)
            r->on_connected(r, status, NULL);
        fwx__proxy_relay_fail(r);
        return;
    }
    /* The core learns the gateway's address on this side as the peer sees it: for a published
       server, the address a redirect port must be opened on for it (active FTP's PORT); SOCKS
       writes it in its reply. Read before the pump starts, so before any filter sees the first
       byte. */
    paddr up_local;
    socklen_t sl = sizeof up_local;
    bool have_up_local = false;
    if (r->on_connected != NULL || r->need_up_local || fwx_connection_data_filters(r->conn) > 0)
        have_up_local = getsockname(r->up_fd, &up_local.sa, &sl) == 0;
    if (r->on_connected != NULL)
        r->on_connected(r, 0, have_up_local ? &up_local.sa : NULL);
    if (r->conn != NULL && have_up_local)
        (void)fwx_connection_set_upstream_local(r->conn, &up_local.sa, (uint32_t)sl);
    /* The server side is this backend's own socket; so is the client's when our accept4 made
       it (a SOCKS client's is a copy out of its libuv handle): the pump then takes them as
       they are, without probes. */
    r->external_fd = r->up_fd;
    r->up_fd = -1;
    fwx_pump *p = NULL;
    fwx_result hr;
    if (r->fresh) {
        hr = fwx_pump_start_connected(st->loop, r->conn, r->internal_fd, connector, pump_done, r, &p);
    } else {
        fwx_pump_connect_cancel(connector); /* the public start registers the fd itself */
        hr = fwx_pump_start(st->loop, r->conn, r->internal_fd, r->external_fd, NULL, pump_done, r, &p);
    }
    r->internal_fd = r->external_fd = -1; /* the pump owns them now, even on failure */
    r->finished = true;
    if (FWX_FAILED(hr)) {
        relay_free(r);
        return;
    }
    r->pump = p;
}

void fwx__proxy_relay_pump(prelay *r, int external_fd)
{
    fwx_pump *p = NULL;
    fwx_result hr = fwx_pump_start(r->st->loop, r->conn, r->internal_fd, external_fd, NULL, pump_done, r, &p);
    r->internal_fd = -1;
    r->finished = true;
    if (FWX_FAILED(hr)) {
        relay_free(r);
        return;
    }
    r->pump = p;
}

void fwx__proxy_relay_connect(prelay *r)
{
    pstate *st = r->st;
    uint32_t flags = 0;
    if (r->conn != NULL && IFWXConnection_GetConnectionFlags(r->conn, &flags) == FWX_S_OK &&
        (flags & FWX_CONNECTION_EMULATED)) {
        /* A filter emulates the server (EmulateForConnect): nothing to dial; it is the source. */
        if (r->on_connected != NULL)
            r->on_connected(r, 0, NULL);
        fwx__proxy_relay_pump(r, -1);
        return;
    }
    int fam = r->target.sa.sa_family;
    r->up_fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->up_fd < 0) {
        int rc = -errno;
        if (fwx__proxy_fd_short(rc))
            fwx__proxy_fd_shortage(st, rc, "opening a connection to the server");
        /* Said, not just closed: SOCKS writes its failure reply, others get a reset. */
        if (r->on_connected != NULL)
            r->on_connected(r, rc, NULL);
        else if (r->internal_fd >= 0)
            fwx__proxy_fd_reset(r->internal_fd);
        fwx__proxy_relay_fail(r);
        return;
    }
    int one = 1; /* no Nagle toward the server either (see listen_on); a failure only costs latency */
    (void)setsockopt(r->up_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (r->transparent) {
        /* Without full proxy the server should see the client's address: that needs
           IP_TRANSPARENT (CAP_NET_ADMIN) and routing back through us; without it, say so once
           and connect from the gateway's address. */
        bool ok = setsockopt(r->up_fd, r->source.sa.sa_family == AF_INET6 ? SOL_IPV6 : SOL_IP,
                             r->source.sa.sa_family == AF_INET6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, &one,
                             sizeof one) == 0 &&
                  bind(r->up_fd, (struct sockaddr *)&r->source, fwx__sa_len((struct sockaddr *)&r->source)) == 0;
        if (!ok && !st->warned_transparent) {
            st->warned_transparent = true;
            fwx_firewall_log(st->fw, FWX_LOG_WARN,
                             "proxy: cannot keep client source addresses (%s); published servers see the "
                             "gateway's address",
                             strerror(errno));
        }
    }
    r->connecting = true;
    int rc = fwx_pump_connect(st->loop, r->up_fd, (struct sockaddr *)&r->target, on_upstream, r, &r->connector);
    if (rc != 0) {
        /* Refused at once (no route, ...): as a failed handshake would be. */
        r->connecting = false;
        char a[FWX__SA_STRLEN];
        fwx_firewall_log(st->fw, FWX_LOG_WARN, "proxy: connecting to %s failed: %s",
                         fwx__sa_fmt((struct sockaddr *)&r->target, a), uv_strerror(rc));
        if (r->on_connected != NULL)
            r->on_connected(r, rc, NULL);
        fwx__proxy_relay_fail(r);
    }
}

prelay *fwx__proxy_relay_new(pstate *st, int fd)
{
    prelay *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->st = st;
    r->need_up_local = true;
    r->internal_fd = fd;
    r->external_fd = -1;
    r->up_fd = -1;
    DLIST_ADD(st->relays, r);
    st->handles++;
    return r;
}

/* ---- listeners --------------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *h)
{
    plisten *l = h->data;
    pstate *st = l->st;
    if (l->fd >= 0)
        close(l->fd);
    free(l);
    st->handles--;
    fwx__proxy_state_maybe_free(st);
}

static void listener_close(plisten *l)
{
    DLIST_DEL(l->st->listeners, l);
    uv_close((uv_handle_t *)&l->poll, listener_closed);
    /* uv_close has taken the fd out of the loop's epoll set already, so the port is free when
       unlisten returns (a policy change that drops a rule frees its port at once), not a loop
       turn later. */
    close(l->fd);
    l->fd = -1;
}

/* Connections taken per readiness of a listener: a burst is served in one go, and one busy
   listener does not starve the loop. */
#define ACCEPT_BATCH 32

/* Accepts one connection as the plain nonblocking fd the relay will own (no libuv handle to
   copy it out of), its peer from accept4 itself; -1 when none is waiting or on an error (an
   fd shortage is logged and handled). The local address is read only when the caller needs
   it (a listener on a wildcard address). */
static int accept_fd(pstate *st, plisten *l, struct sockaddr_storage *peer, struct sockaddr_storage *local,
                     bool want_local)
{
    for (;;) {
        socklen_t pl = sizeof *peer;
        int fd = accept4(l->fd, (struct sockaddr *)peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                fwx__proxy_accept_failed_fd(st, l->fd, -errno, "accepting a client");
            return -1;
        }
        socklen_t ll = sizeof *local;
        if (want_local && getsockname(fd, (struct sockaddr *)local, &ll) < 0) {
            close(fd);
            continue;
        }
        return fd;
    }
}


/* Opens a session with sp and keeps it: the one we keep already when the core answers with a
   session we hold (a NAT session is one per client), else a new entry. */
static psession *session_keep(pstate *st, const fwx_session_params *sp)
{
    IFWXSession *s = NULL;
    if (FWX_FAILED(fwx_session_open(st->fw, sp, &s)))
        return NULL;
    psession *ps = NULL;
    HASH_FIND_PTR(st->sessions, &s, ps);
    if (ps != NULL) {
        IFWXSession_Release(s); /* we hold one already */
        return ps;
    }
    if ((ps = calloc(1, sizeof *ps)) == NULL) {
        fwx_session_close(s);
        IFWXSession_Release(s);
        return NULL;
    }
    ps->session = s;
    HASH_ADD_PTR(st->sessions, session, ps);
    return ps;
}

psession *fwx__proxy_session_nat(pstate *st, const struct sockaddr *client)
{
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, client, fwx__sa_len(client), NULL, 0, NULL};
    return session_keep(st, &sp);
}

psession *fwx__proxy_session_explicit(pstate *st, const struct sockaddr *client, const struct sockaddr *gw,
                                      const char *user)
{
    fwx_session_params sp = {sizeof sp, fwxSourceWSP, client, fwx__sa_len(client), gw, gw ? fwx__sa_len(gw) : 0, user};
    return session_keep(st, &sp);
}

/* Takes one connection off a publishing listener; false when none was waiting. */
static bool publish_one(plisten *l)
{
    pstate *st = l->st;
    struct sockaddr_storage peer, local;
    int fd = accept_fd(st, l, &peer, &local, fwx__sa_is_unspecified((struct sockaddr *)&l->spec.address));
    if (fd < 0)
        return false;
    psession *ps = fwx__proxy_session_nat(st, (struct sockaddr *)&peer);
    prelay *r = ps ? fwx__proxy_relay_new(st, fd) : NULL;
    if (r == NULL) {
        close(fd);
        if (ps != NULL && ps->relays == 0) {
            ps->relays = 1;
            fwx__proxy_session_unref(st, ps);
        }
        return true;
    }
    r->fresh = true;
    /* The gateway's address toward the server matters to a filter (a redirect port for active
       FTP); a protocol that binds none is relayed without asking the kernel for it. */
    r->need_up_local = fwx_firewall_protocol_filters(st->fw, &l->spec.protocol_guid, NULL) > 0;
    r->ps = ps;
    ps->relays++;
    fwx__paddr_set(&r->target, (const struct sockaddr *)&l->spec.server);
    r->transparent = !l->spec.full_proxy;
    fwx__paddr_set(&r->source, (const struct sockaddr *)&peer);
    fwx__sa_set_port((struct sockaddr *)&r->source, 0);
    /* The gateway's address on the client's side is the one the client reached: the rule's,
       or for a rule on a wildcard address the accepted socket's (the policy decides on it, and
       a filter names it in what it rewrites, a passive-mode reply for one). */
    const struct sockaddr *reached = fwx__sa_is_unspecified((struct sockaddr *)&l->spec.address)
                                         ? (const struct sockaddr *)&local
                                         : (const struct sockaddr *)&l->spec.address;
    fwx_connection_params cp = {sizeof cp,
                                fwx_AcceptedConnection,
                                FWX_PROTOCOL_TCP,
                                (struct sockaddr *)&peer,
                                fwx__sa_len((struct sockaddr *)&peer),
                                reached,
                                fwx__sa_len(reached),
                                NULL,
                                l->spec.full_proxy ? FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION : 0,
                                fwx__sa_len((struct sockaddr *)&l->spec.server),
                                (struct sockaddr *)&l->spec.server};
    IFWXConnection *conn = NULL;
    st->pending = r;
    fwx_result hr = fwx_connection_open(ps->session, &cp, &conn);
    st->pending = NULL;
    if (FWX_FAILED(hr)) {
        fwx__proxy_relay_fail(r); /* the core logged why; the client sees the connection close */
        return true;
    }
    fwx__proxy_relay_set_conn(r, conn);
    fwx__proxy_relay_connect(r);
    return true;
}

/* Takes one connection off a grant's listener; false when none was waiting. */
static bool grant_one(plisten *l)
{
    pstate *st = l->st;
    struct sockaddr_storage peer, local;
    int fd = accept_fd(st, l, &peer, &local, fwx__sa_is_unspecified((struct sockaddr *)&l->grant.gateway));
    if (fd < 0)
        return false;
    prelay *r = fwx__proxy_relay_new(st, fd);
    if (r == NULL) {
        close(fd);
        return true;
    }
    r->fresh = true;
    /* copy now: a one-shot grant closes this listener during admit */
    fwx__paddr_set(&r->target, (const struct sockaddr *)&l->grant.target);
    /* Arrivals are identified by the grant's own gateway address, which a wildcard bind hides. */
    struct sockaddr_storage dst = l->grant.gateway;
    if (fwx__sa_is_unspecified((struct sockaddr *)&dst))
        dst = local;
    fwx_flow flow = {sizeof flow,
                     l->grant.protocol,
                     (struct sockaddr *)&peer,
                     fwx__sa_len((struct sockaddr *)&peer),
                     (struct sockaddr *)&dst,
                     fwx__sa_len((struct sockaddr *)&dst)};
    IFWXConnection *conn = NULL;
    st->pending = r;
    fwx_result hr = fwx_firewall_admit(st->fw, &flow, &conn);
    st->pending = NULL;
    if (FWX_FAILED(hr)) {
        fwx__proxy_relay_fail(r);
        return true;
    }
    fwx__proxy_relay_set_conn(r, conn);
    fwx__proxy_relay_connect(r);
    return true;
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    plisten *l = h->data;
    (void)events;
    if (status < 0)
        fwx_firewall_log(l->st->fw, FWX_LOG_WARN, "proxy: listener: %s", uv_strerror(status));
    /* Bounded; the next loop turn takes the rest. A one-shot grant closes its listener during
       the admit, a policy change from a callback may close a publishing one: stop then. */
    for (int i = 0; i < ACCEPT_BATCH && !l->st->closing && !uv_is_closing((uv_handle_t *)&l->poll); i++)
        if (!(l->is_grant ? grant_one(l) : publish_one(l)))
            break;
}

/* A listening socket of the backend's own, bound as libuv's uv_tcp_bind would (SO_REUSEADDR;
   IPv6 also takes IPv4, V6ONLY off), watched by a uv_poll handle. A shared one (a publishing
   rule's, when several firewalls of the process carry one policy) takes SO_REUSEPORT; a grant's
   never does: only the firewall that made the grant may receive its connection. */
static fwx_result listen_on(pstate *st, plisten *l, const struct sockaddr *addr, int backlog, bool shared)
{
    int one = 1, zero = 0, rc = 0;
    uint32_t n = shared ? fwx_firewall_listen_shared(st->fw) : 0;
    l->st = st;
    l->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (addr->sa_family == AF_INET6 && setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0))
        rc = -errno;
    /* No Nagle on the relay's sockets: Linux passes TCP_NODELAY from the listener to every
       socket it accepts, so the client side costs no call per connection (the server side sets
       it in fwx__proxy_relay_connect). The pump writes what it read at once; with Nagle a small
       write while an earlier one is unacknowledged waits for the peer's ACK, and a peer with
       nothing to say delays it 40 ms or more (bench/README.md, issue 13 part 5: an FTP
       server's 226 after its 150). */
    if (rc == 0 && setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        rc = -errno;
    if (rc == 0 && n > 1)
        rc = fwx__reuseport(l->fd);
    if (rc == 0 && (bind(l->fd, addr, fwx__sa_len(addr)) < 0 || listen(l->fd, backlog > 0 ? backlog : 128) < 0))
        rc = -errno;
    /* One client address, one loop: its connections to every published address share its
       session, as they do with one loop (fwx_firewall_options.listen_shared). */
    if (rc == 0 && n > 1 && (rc = fwx__reuseport_by_source(l->fd, n)) != 0) {
        char a[FWX__SA_STRLEN];
        fwx_firewall_log(st->fw, FWX_LOG_ERROR, "proxy: listening on %s: cannot share it among %u loops by client: %s",
                         fwx__sa_fmt(addr, a), (unsigned)n, strerror(-rc));
    }
    if (rc == 0)
        rc = uv_poll_init_socket(st->loop, &l->poll, l->fd);
    if (rc != 0) {
        char a[FWX__SA_STRLEN]; /* the result code alone loses the cause (EMFILE, EACCES...) */
        fwx_firewall_log(st->fw, FWX_LOG_ERROR, "proxy: cannot listen on %s: %s", fwx__sa_fmt(addr, a), strerror(-rc));
        if (l->fd >= 0)
            close(l->fd);
        free(l);
        return fwx__result_from_errno(rc, FWX_E_BACKEND);
    }
    l->poll.data = l;
    st->handles++;
    if ((rc = uv_poll_start(&l->poll, UV_READABLE, on_accept)) != 0) {
        uv_close((uv_handle_t *)&l->poll, listener_closed);
        return fwx__result_from_errno(rc, FWX_E_BACKEND);
    }
    DLIST_ADD(st->listeners, l);
    return FWX_S_OK;
}

static plisten *listener_find(pstate *st, uint64_t id)
{
    for (plisten *l = st->listeners; l != NULL; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

/* ---- the backend methods ----------------------------------------------------------------- */

static fwx_result p_open(const fwx_backend *self, fwx_firewall *fw, void **state)
{
    (void)self;
    pstate *st = calloc(1, sizeof *st);
    if (st == NULL)
        return FWX_E_OUTOFMEMORY;
    st->magic = FWX__PROXY_MAGIC;
    /* UDP flows idle out after the firewall's timeout (FWX_FLAG_TIMEOUT's period, 60 s). */
    st->udp_idle_ms = fwx_firewall_timeout_ms(fw);
    st->fw = fw;
    st->loop = fwx_firewall_loop(fw);
    /* Fixed when the firewall was made: whether the caps in all are the process's. */
    st->socks_caps.shared = fwx_firewall_listen_shared(fw) > 1;
    st->reserve_fd = -1;
    fwx__proxy_reserve_open(st);
    /* The loop's relay reactor stays while the backend is open: relays one at a time (an FTP
       session's data connections) would otherwise make and close it for each (issue 12). A
       failure only costs that. */
    st->reactor_held = fwx_pump_reactor_hold(st->loop) == 0;
    *state = st;
    return FWX_S_OK;
}

static void p_close(void *state)
{
    pstate *st = state;
    st->closing = true;
    fwx__proxy_socks_close_all(st);
    fwx__proxy_udp_close_all(st);
    while (st->listeners != NULL)
        listener_close(st->listeners);
    for (prelay *r = st->relays, *next; r != NULL; r = next) {
        next = r->next;
        if (r->pump != NULL)
            fwx_pump_abort(r->pump);
        else
            fwx__proxy_relay_fail(r);
    }
    if (st->reactor_held) /* after the aborts: it closes once their pumps ended */
        fwx_pump_reactor_release(st->loop);
    st->reactor_held = false;
    st->n_perms = 0;
    fwx__proxy_state_maybe_free(st);
}

static fwx_result p_grant_add(void *state, const fwx_grant *g)
{
    pstate *st = state;
    if (g->kind == FWX_GRANT_PERMISSION && (g->flags & FWX_FLAG_REPLY_FROM_PEER))
        return fwx__proxy_udp_answer_open(st, g);
    if (g->kind == FWX_GRANT_PERMISSION || g->kind == FWX_GRANT_CLIENT_BIND) {
        /* Nothing to open: a permission is used by a forwarded connect, a client bind already
           listens on its own socket. Kept for list(). */
        if (st->n_perms == st->cap_perms) {
            size_t cap = st->cap_perms ? st->cap_perms * 2 : 16;
            ppermission *p = realloc(st->perms, cap * sizeof *p);
            if (p == NULL)
                return FWX_E_OUTOFMEMORY;
            st->perms = p;
            st->cap_perms = cap;
        }
        st->perms[st->n_perms++].grant = *g;
        return FWX_S_OK;
    }
    if (g->protocol == FWX_PROTOCOL_UDP) {
        fwx_result hr;
        udp_port *u = fwx__proxy_udp_port_open(st, UDP_PORT_GRANT, (const struct sockaddr *)&g->gateway, g->flags, &hr);
        if (u == NULL)
            return hr;
        u->id = g->id;
        u->grant = *g;
        return FWX_S_OK;
    }
    plisten *l = calloc(1, sizeof *l);
    if (l == NULL)
        return FWX_E_OUTOFMEMORY;
    l->id = g->id;
    l->is_grant = true;
    l->grant = *g;
    return listen_on(st, l, (const struct sockaddr *)&g->gateway, g->backlog, false);
}

static fwx_result p_grant_remove(void *state, uint64_t id)
{
    pstate *st = state;
    plisten *l = listener_find(st, id);
    if (l != NULL) {
        listener_close(l);
        return FWX_S_OK;
    }
    udp_port *u = fwx__proxy_udp_port_find(st, id);
    if (u != NULL) {
        /* A used-up grant: no new peer, but the flow it admitted carries on. */
        fwx__proxy_udp_port_release(u, false);
        return FWX_S_OK;
    }
    for (size_t i = 0; i < st->n_perms; i++) {
        if (st->perms[i].grant.id == id) {
            st->perms[i] = st->perms[--st->n_perms];
            return FWX_S_OK;
        }
    }
    return FWX_E_NOT_FOUND;
}

static fwx_result p_listen(void *state, const fwx_listen_spec *spec)
{
    pstate *st = state;
    if (spec->protocol == FWX_PROTOCOL_UDP) {
        fwx_result hr;
        udp_port *u = fwx__proxy_udp_port_open(st, UDP_PORT_PUBLISH, (const struct sockaddr *)&spec->address, 0, &hr);
        if (u == NULL)
            return hr;
        u->id = spec->id;
        u->spec = *spec;
        return FWX_S_OK;
    }
    /* Without full proxy the server would see the client's own address on the control
       connection; the connections a filter adds for it (FTP data: the server's to a redirect
       port, the client's through a bound port) are made from the gateway's address, and a
       strict server refuses data from, and PORTs naming, any host but its control peer. Keeping
       the client's address on those too needs kernel interception (the nft backend): refused
       here, before anything listens, rather than failing at the first transfer. */
    const char *proto_name = NULL;
    if (!spec->full_proxy && fwx_firewall_protocol_filters(st->fw, &spec->protocol_guid, &proto_name) > 0) {
        char a[FWX__SA_STRLEN];
        fwx_firewall_log(st->fw, FWX_LOG_ERROR,
                         "proxy: publishing %s: protocol \"%s\" binds a filter, whose data connections "
                         "cannot keep the client's address in user mode; write full_proxy = true (the server "
                         "then sees the gateway's address), or run the nft backend",
                         fwx__sa_fmt((const struct sockaddr *)&spec->address, a), proto_name);
        return FWX_E_NOT_SUPPORTED;
    }
    plisten *l = calloc(1, sizeof *l);
    if (l == NULL)
        return FWX_E_OUTOFMEMORY;
    l->id = spec->id;
    l->spec = *spec;
    return listen_on(st, l, (const struct sockaddr *)&spec->address, 511, true);
}

static fwx_result p_unlisten(void *state, uint64_t id)
{
    plisten *l = listener_find(state, id);
    udp_port *u = fwx__proxy_udp_port_find(state, id);
    if (u != NULL && u->kind == UDP_PORT_PUBLISH) {
        fwx__proxy_udp_port_release(u, false); /* live flows of the rule carry on */
        return FWX_S_OK;
    }
    if (l == NULL || l->is_grant)
        return FWX_E_NOT_FOUND;
    listener_close(l); /* live relays of the rule are not touched */
    return FWX_S_OK;
}

static fwx_result p_relay(void *state, IFWXConnection *conn, int32_t kernel_mode)
{
    /* This backend carries only connections it originated, and starts each itself once the
       core has admitted it (publish_accepted, grant_accepted, SOCKS, UDP flows): nothing to
       do here. Connections a host reports itself are carried by that host, so their data
       filters run only if the host relays them through fwx_connection_relay; one that did not
       say so has such a connection refused rather than its filters skipped. With no data
       filter the pump takes the splice path by itself, which is what kernel_mode allows. */
    pstate *st = state;
    (void)kernel_mode;
    if (st->pending == NULL && st->udp_deciding == 0 && fwx_connection_data_filters(conn) > 0 &&
        !fwx_firewall_host_relay(st->fw)) {
        uint64_t id = fwx_connection_id(conn);
        fwx_firewall_log(st->fw, FWX_LOG_WARN,
                         "proxy: connection %llu: refused: the host reported it, so the host carries it, but "
                         "it has data filters and the host did not call fwx_firewall_set_host_relay",
                         (unsigned long long)id);
        return FWX_E_NOT_SUPPORTED;
    }
    return FWX_S_OK;
}

static fwx_result p_kill(void *state, IFWXConnection *conn)
{
    pstate *st = state;
    prelay *r = NULL;
    HASH_FIND(hh_conn, st->relay_by_conn, &conn, sizeof conn, r);
    if (r != NULL) {
        if (r->pump != NULL)
            fwx_pump_abort(r->pump);
        else
            fwx__proxy_relay_fail(r);
        return FWX_S_OK;
    }
    return fwx__proxy_udp_kill(st, conn) ? FWX_S_OK : FWX_E_NOT_FOUND;
}

static fwx_result p_create_socket(void *state, int32_t protocol, IFWXNetworkSocket **out)
{
    pstate *st = state;
    return fwx_network_socket_new(st->loop, st->fw, protocol, out);
}

static fwx_result p_list(void *state, fwx_backend_list_cb cb, void *arg)
{
    pstate *st = state;
    for (plisten *l = st->listeners; l != NULL; l = l->next)
        if (l->is_grant)
            cb(arg, &l->grant);
    for (udp_port *u = st->udp_ports; u != NULL; u = u->next)
        if (u->kind == UDP_PORT_GRANT || u->kind == UDP_PORT_ANSWER)
            cb(arg, &u->grant);
    for (size_t i = 0; i < st->n_perms; i++)
        cb(arg, &st->perms[i].grant);
    return FWX_S_OK;
}

const fwx_backend fwx__proxy_backend = {
    .version = 1,
    .name = "proxy",
    .app_data = NULL,
    .open = p_open,
    .close = p_close,
    .grant_add = p_grant_add,
    .grant_remove = p_grant_remove,
    .listen = p_listen,
    .unlisten = p_unlisten,
    .relay = p_relay,
    .kill = p_kill,
    .create_socket = p_create_socket,
    .list = p_list,
};
