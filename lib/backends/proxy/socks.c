/*
 * fwx - the proxy backend's forward mode: SOCKS5 (RFC 1928), the modern analogue of the ISA
 * Firewall Client. Each SOCKS connection is a control channel and gets an explicit session.
 *
 * - CONNECT: the core decides: a permission a filter set up (AllowFutureConnect) admits it as
 *   a secondary connection, otherwise it is a primary fwx_Connect_Tcp under the policy and the
 *   filters; then the backend connects and relays. A CONNECT by name is resolved once, and the
 *   policy gets both the name (its domain sets) and the address (networks, address sets).
 * - BIND: the backend listens on the gateway and reports a client bind (fwx_Bind_Tcp). The bind
 *   never fails, but connections to it are discarded until a filter approves it with
 *   IFWXSession::RetroactiveAllowBind, and only the host named in the request may connect.
 * - UDP ASSOCIATE: a UDP relay port for the client; each destination is decided once by the
 *   core (a permission, or a new fwx_Udp_Destination under the policy and filters) and becomes
 *   a flow; the association ends with the control connection. Fragments and host names in
 *   datagrams are dropped.
 *
 * Each SOCKS connection is a session of its own, and the core admits its flows in it
 * (fwx_firewall_admit_in_session): a permission serves a CONNECT or a UDP destination if this
 * session made it, or if another session of the client made it address-based.
 *
 * Authentication: none, or with credentials configured (socks_auth.c) username/password only
 * (RFC 1929), the name then being the session's user, so rules with `users` decide.
 * What the bytes are is socks_wire.c's to say (a pure parser: strict, split-anywhere safe);
 * this file does the I/O and the decisions around it, and allows 10 s to negotiate.
 * SPDX-License-Identifier: MIT
 */
#include "backends/proxy/proxy_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "socks_wire.h"

#define SOCKS_MAX_INPUT 600
#define SOCKS_NEGOTIATE_MS 10000
#define SOCKS_BIND_WAIT_MS 120000

struct socks_listener {
    uv_tcp_t tcp;
    pstate *st;
    struct sockaddr_storage at; /* where it listens (the port the kernel chose, if 0) */
    socks_listener *prev, *next;
};

typedef enum { S_GREETING, S_AUTH, S_REQUEST, S_RESOLVING, S_BIND_WAIT, S_UDP_ASSOC, S_DONE } socks_state;

struct socks_client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    pstate *st;
    socks_client *prev, *next;
    socks_state state;
    uint8_t buf[SOCKS_MAX_INPUT];
    size_t len;
    struct sockaddr_storage peer, local, dst;
    char user[256]; /* the name it authenticated with (RFC 1929), or "" */
    char host[256]; /* CONNECT by name: the name asked for, for the policy's domain sets; else "" */
    uv_getaddrinfo_t gai;
    bool gai_pending;
    psession *ps;
    /* BIND */
    uv_tcp_t *bind_tcp;
    IFWXConnection *bind_conn;
    struct sockaddr_storage bound;
    /* UDP ASSOCIATE */
    udp_port *udp;
    struct sockaddr_storage udp_client; /* where the client's datagrams come from */
    bool have_udp_client;
    fwx__socks_hold hold; /* what it counts against its client's caps (socks_caps.c) */
    int closing; /* handles still to close */
};

static void on_timeout(uv_timer_t *t);
static void do_udp_associate(socks_client *c);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void log_client_at(socks_client *c, fwx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_client_at(socks_client *c, fwx_log_level level, const char *fmt, ...)
{
    char a[FWX__SA_STRLEN], msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fwx_firewall_log(c->st->fw, level, "socks client %s: %s", fwx__sa_fmt((struct sockaddr *)&c->peer, a), msg);
}
#define log_client(c, ...) log_client_at((c), FWX_LOG_WARN, __VA_ARGS__)

/* ---- closing ---------------------------------------------------------------------------------- */

static void client_handle_closed(uv_handle_t *h)
{
    socks_client *c = h->data;
    if (--c->closing > 0)
        return;
    pstate *st = c->st;
    free(c);
    st->handles--;
    fwx__proxy_state_maybe_free(st);
}

static void bind_tcp_closed(uv_handle_t *h)
{
    socks_client *c = h->data;
    free(h);
    client_handle_closed((uv_handle_t *)&c->tcp);
}

/* Ends a negotiation. With keep_fd the client socket lives on in a relay (dup'd first). */
static void client_close(socks_client *c)
{
    if (c->state == S_DONE)
        return;
    c->state = S_DONE;
    pstate *st = c->st;
    if (c->prev)
        c->prev->next = c->next;
    else
        st->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    /* A lookup already running in the thread pool cannot be cancelled (uv_cancel says EBUSY)
       and will still call on_resolved with c->gai: it counts as one more thing the close
       waits for, and on_resolved finishes it. A queued one is cancelled and calls back too. */
    bool lookup = c->gai_pending;
    if (lookup)
        (void)uv_cancel((uv_req_t *)&c->gai);
    fwx__socks_caps_put_all(&st->socks_caps, &c->hold);
    if (c->bind_conn != NULL) {
        fwx_connection_close(c->bind_conn); /* the client bind and its grant go */
        c->bind_conn = NULL;
    }
    if (c->udp != NULL) {
        /* The association lives as long as its control connection (RFC 1928 §7). */
        c->udp->socks = NULL;
        fwx__proxy_udp_port_release(c->udp, true);
        c->udp = NULL;
    }
    if (c->ps != NULL) {
        psession *ps = c->ps;
        c->ps = NULL;
        ps->relays++; /* balance: unref ends the session if no relay took it */
        fwx__proxy_session_unref(st, ps);
    }
    c->closing = 2 + (c->bind_tcp != NULL) + lookup;
    uv_close((uv_handle_t *)&c->tcp, client_handle_closed);
    uv_close((uv_handle_t *)&c->timer, client_handle_closed);
    if (c->bind_tcp != NULL) {
        c->bind_tcp->data = c;
        uv_close((uv_handle_t *)c->bind_tcp, bind_tcp_closed);
        c->bind_tcp = NULL;
    }
}

/* ---- replies ---------------------------------------------------------------------------------- */

/* Replies are a few bytes on a socket that has sent nothing yet: they fit its buffer, so a
   plain send() on the nonblocking fd suffices and keeps the ordering with the relay simple. */
static bool send_reply_fd(int fd, int rep, const struct sockaddr *bnd)
{
    uint8_t r[FWX__SOCKS_REPLY_MAX];
    size_t n = fwx__socks_encode_reply(r, (uint8_t)rep, bnd);
    return send(fd, r, n, MSG_NOSIGNAL) == (ssize_t)n;
}

static bool client_fd(socks_client *c, int *fd)
{
    uv_os_fd_t ufd;
    return uv_fileno((uv_handle_t *)&c->tcp, &ufd) == 0 && (*fd = ufd) >= 0;
}

static void refuse(socks_client *c, int rep, const char *why)
{
    int fd;
    log_client(c, "%s, refused (reply %d)", why, rep);
    if (client_fd(c, &fd))
        (void)send_reply_fd(fd, rep, NULL);
    client_close(c);
}

static int rep_for(fwx_result hr)
{
    switch (hr) {
    case FWX_E_PROTOCOL_RULES_DENIED:
    case FWX_E_SITE_AND_CONTENT_RULES_DENIED:
    case FWX_E_NETWORK_RULES_DENIED:
    case FWX_E_POLICY_RULES_DENIED:
    case FWX_E_ADDRESS_NOT_ALLOWED:
    case FWX_E_CONNREFUSED:
    case FWX_E_DENIED:
        return FWX__SOCKS_REP_NOT_ALLOWED;
    default:
        return FWX__SOCKS_REP_FAILURE;
    }
}

/* Counts one of kind against the client's caps; refuses the request (and logs which cap) if
   it is over one: reply 2 for the client's own cap, 1 for the gateway's. */
static bool take_cap(socks_client *c, int kind, const char *what)
{
    char why[160], msg[200];
    bool global = false;
    if (fwx__socks_caps_take(c->st->fw, &c->st->socks_caps, &c->hold, (struct sockaddr *)&c->peer, kind, why,
                             sizeof why, &global))
        return true;
    int rep = global ? FWX__SOCKS_REP_FAILURE : FWX__SOCKS_REP_NOT_ALLOWED, fd;
    uint32_t quiet;
    fwx_log_level lv = fwx__socks_caps_log_level(&c->st->socks_caps, kind, &quiet);
    msg[0] = '\0';
    if (quiet)
        snprintf(msg, sizeof msg, " (%u more refused at this cap since the last line)", quiet);
    log_client_at(c, lv, "%s: %s, refused (reply %d)%s", what, why, rep, msg);
    (void)fwx_firewall_report_refused(c->st->fw, FWX_PROTOCOL_TCP, (struct sockaddr *)&c->peer,
                                      (struct sockaddr *)&c->local, global ? FWX_E_IS_BUSY : FWX_E_QUOTA_EXCEEDED, why);
    if (client_fd(c, &fd))
        (void)send_reply_fd(fd, rep, NULL);
    client_close(c);
    return false;
}

/* Takes the client's socket out of its handle, for a relay. */
static int take_fd(socks_client *c)
{
    int fd;
    if (!client_fd(c, &fd))
        return -1;
    return dup(fd);
}

/* ---- CONNECT ---------------------------------------------------------------------------------- */

static void connect_done(prelay *r, int status, const struct sockaddr *up_local)
{
    int rep = status == 0                    ? FWX__SOCKS_REP_OK
              : status == UV_ECONNREFUSED    ? FWX__SOCKS_REP_REFUSED
              : status == UV_EHOSTUNREACH || status == UV_ENETUNREACH ? FWX__SOCKS_REP_HOST_UNREACHABLE
                                                                       : FWX__SOCKS_REP_FAILURE;
    /* The relay read the gateway's address towards the server once connected (proxy.c). */
    struct sockaddr_storage bnd = {0};
    bool have = status == 0 && up_local != NULL;
    if (have)
        memcpy(&bnd, up_local, fwx__sa_len(up_local));
    (void)send_reply_fd(r->internal_fd, rep, have ? (struct sockaddr *)&bnd : NULL);
    /* The connection learns the gateway's address on the external side: filters write it into
       what they rewrite (an FTP PORT, for one). */
    if (have && r->conn != NULL)
        (void)IFWXConnection_SetSocketName(r->conn, (struct sockaddr *)&bnd, fwx__sa_len((struct sockaddr *)&bnd));
}

/* Does a connection to dst reach one of the gateway's own listeners (SOCKS or publishing)?
   A SOCKS client could otherwise chain CONNECTs through the gateway dozens deep, each hop a new
   session with the gateway as its client. A listener on the unspecified
   address is reached through any local or loopback address (loopback_hosts or not). */
static bool reaches_listener(const struct sockaddr *l, const struct sockaddr *dst, fwx_firewall *fw)
{
    if (fwx__sa_port(l) != fwx__sa_port(dst))
        return false;
    if (fwx__sa_is_unspecified(l))
        return fwx__sa_is_loopback(dst) || fwx_firewall_is_local_address(fw, dst, fwx__sa_len(dst));
    return fwx__sa_same_ip(l, dst);
}

/* The backend's own listeners: SOCKS, and the publishing rules it listens for (the core's
   `listen` calls, TCP and UDP alike: a port is a port here). */
static bool own_listener(pstate *st, const struct sockaddr *dst)
{
    for (socks_listener *l = st->socks; l != NULL; l = l->next)
        if (reaches_listener((const struct sockaddr *)&l->at, dst, st->fw))
            return true;
    for (plisten *l = st->listeners; l != NULL; l = l->next)
        if (!l->is_grant && reaches_listener((const struct sockaddr *)&l->spec.address, dst, st->fw))
            return true;
    for (udp_port *p = st->udp_ports; p != NULL; p = p->next)
        if (p->kind == UDP_PORT_PUBLISH && reaches_listener((const struct sockaddr *)&p->spec.address, dst, st->fw))
            return true;
    return false;
}

static void do_connect(socks_client *c)
{
    pstate *st = c->st;
    const struct sockaddr *dst = (const struct sockaddr *)&c->dst;
    if (fwx__sa_port(dst) == 0) {
        refuse(c, FWX__SOCKS_REP_NOT_ALLOWED, "connect to port 0");
        return;
    }
    /* A name or address that leads back to the gateway itself (its addresses, loopback, any)
       or to a group address is refused, whatever the policy says: the core's rule for
       secondary targets (doc/security.md, "reach the gateway itself"). */
    if (fwx_firewall_forbidden_host(st->fw, dst, fwx__sa_len(dst)) != NULL) {
        refuse(c, FWX__SOCKS_REP_NOT_ALLOWED, "destination is the gateway itself or a group address");
        return;
    }
    if (own_listener(st, dst)) {
        refuse(c, FWX__SOCKS_REP_NOT_ALLOWED, "destination is one of the gateway's own listeners");
        return;
    }
    int fd = take_fd(c);
    prelay *r = fd >= 0 ? fwx__proxy_relay_new(st, fd) : NULL;
    if (r == NULL) {
        if (fd < 0 && fwx__proxy_fd_short(errno)) {
            fwx__proxy_fd_shortage(st, errno, "relaying a SOCKS CONNECT");
            if (client_fd(c, &fd))
                (void)send_reply_fd(fd, FWX__SOCKS_REP_FAILURE, NULL);
            client_close(c);
            return;
        }
        if (fd >= 0)
            close(fd);
        refuse(c, FWX__SOCKS_REP_FAILURE, "out of resources");
        return;
    }
    /* The relay owns the session from here. */
    r->ps = c->ps;
    c->ps = NULL;
    r->ps->relays++;
    fwx__paddr_set(&r->target, (const struct sockaddr *)&c->dst);
    r->on_connected = connect_done;
    /* A permission set up by a filter (AllowFutureConnect) admits it as a secondary
       connection; otherwise it is a new primary connection under the policy. */
    IFWXConnection *conn = NULL;
    fwx_flow flow = {sizeof flow, FWX_PROTOCOL_TCP, (struct sockaddr *)&c->peer, fwx__sa_len((struct sockaddr *)&c->peer),
                     dst, fwx__sa_len(dst)};
    st->pending = r;
    /* In this control channel's session: another session's permission serves it only if it
       is address-based. */
    fwx_result hr = fwx_firewall_admit_in_session(st->fw, r->ps->session, &flow, &conn);
    if (hr == FWX_E_NOT_FOUND) {
        /* By name: the policy decides by the name asked for (domain sets) and by the address it
           resolved to (networks, address sets), both at once. */
        fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, dst, fwx__sa_len(dst),
                                    (struct sockaddr *)&c->local, fwx__sa_len((struct sockaddr *)&c->local),
                                    c->host[0] ? c->host : NULL, 0, 0, NULL};
        hr = fwx_connection_open(r->ps->session, &cp, &conn);
    }
    st->pending = NULL;
    if (FWX_FAILED(hr) && c->host[0]) {
        char a[FWX__SA_STRLEN];
        log_client(c, "CONNECT %s (%s) refused: %s", c->host, fwx__sa_fmt(dst, a), fwx_strerror(hr));
    }
    client_close(c); /* the negotiation is over either way; the relay holds the socket */
    if (FWX_FAILED(hr)) {
        (void)send_reply_fd(r->internal_fd, rep_for(hr), NULL);
        fwx__proxy_relay_fail(r);
        return;
    }
    fwx__proxy_relay_set_conn(r, conn);
    fwx__proxy_relay_connect(r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    socks_client *c = req->data;
    c->gai_pending = false;
    fwx__socks_caps_put(&c->st->socks_caps, &c->hold, FWX__SOCKS_PENDING);
    if (c->state == S_DONE) {
        /* The negotiation ended while we looked the name up: this was the last thing its close
           waited for (or one of them). */
        uv_freeaddrinfo(res);
        client_handle_closed((uv_handle_t *)&c->tcp);
        return;
    }
    if (status == UV_ECANCELED) {
        uv_freeaddrinfo(res);
        return;
    }
    uint16_t port = fwx__sa_port((struct sockaddr *)&c->dst);
    bool ok = status == 0 && res != NULL && fwx__sa_canon(res->ai_addr, (uint32_t)res->ai_addrlen, &c->dst);
    uv_freeaddrinfo(res);
    if (!ok) {
        refuse(c, FWX__SOCKS_REP_HOST_UNREACHABLE, "host name does not resolve");
        return;
    }
    /* Resolved once; the core checks this address, and the relay connects to it (no TOCTOU). */
    fwx__sa_set_port((struct sockaddr *)&c->dst, port);
    do_connect(c);
}

/* ---- BIND ------------------------------------------------------------------------------------- */

static void on_bind_accept(uv_stream_t *server, int status)
{
    socks_client *c = server->data;
    pstate *st = c->st;
    if (status < 0 || c->state != S_BIND_WAIT)
        return;
    uv_tcp_t *in = malloc(sizeof *in);
    if (in == NULL)
        return;
    uv_tcp_init(st->loop, in);
    struct sockaddr_storage peer;
    int plen = sizeof peer, fd = -1;
    uv_os_fd_t ufd;
    if (uv_accept(server, (uv_stream_t *)in) == 0 && uv_tcp_getpeername(in, (struct sockaddr *)&peer, &plen) == 0 &&
        uv_fileno((uv_handle_t *)in, &ufd) == 0)
        fd = dup(ufd);
    uv_close((uv_handle_t *)in, (uv_close_cb)free);
    if (fd < 0)
        return;
    /* RFC 1928: only the host named in the request; and only once the core admits it. */
    const struct sockaddr *want = (const struct sockaddr *)&c->dst;
    if (!fwx__sa_is_unspecified(want) && !fwx__sa_same_ip(want, (struct sockaddr *)&peer)) {
        close(fd);
        return;
    }
    fwx_flow flow = {sizeof flow, FWX_PROTOCOL_TCP, (struct sockaddr *)&peer, fwx__sa_len((struct sockaddr *)&peer),
                     (struct sockaddr *)&c->bound, fwx__sa_len((struct sockaddr *)&c->bound)};
    int cfd = take_fd(c);
    prelay *r = cfd >= 0 ? fwx__proxy_relay_new(st, cfd) : NULL;
    if (r == NULL) {
        if (cfd >= 0)
            close(cfd);
        close(fd);
        return;
    }
    IFWXConnection *conn = NULL;
    st->pending = r;
    fwx_result hr = fwx_firewall_admit_in_session(st->fw, c->ps ? c->ps->session : NULL, &flow, &conn);
    st->pending = NULL;
    if (FWX_FAILED(hr)) {
        /* Not approved (yet): discarded silently, the bind keeps waiting (T11, doc/sdk-rules.md). */
        close(fd);
        r->internal_fd = -1;
        close(cfd);
        fwx__proxy_relay_fail(r);
        return;
    }
    r->ps = c->ps;
    c->ps = NULL;
    r->ps->relays++;
    fwx__proxy_relay_set_conn(r, conn);
    (void)send_reply_fd(r->internal_fd, FWX__SOCKS_REP_OK, (struct sockaddr *)&peer);
    client_close(c); /* one connection per BIND: the listener and the client bind go */
    fwx__proxy_relay_pump(r, fd);
}

static void do_bind(socks_client *c)
{
    pstate *st = c->st;
    c->bind_tcp = malloc(sizeof *c->bind_tcp);
    if (c->bind_tcp == NULL || uv_tcp_init(st->loop, c->bind_tcp) != 0) {
        free(c->bind_tcp);
        c->bind_tcp = NULL;
        refuse(c, FWX__SOCKS_REP_FAILURE, "out of resources");
        return;
    }
    c->bind_tcp->data = c;
    /* Listen on the address the client reached us on, on a port of the kernel's choosing. */
    struct sockaddr_storage at = c->local;
    fwx__sa_set_port((struct sockaddr *)&at, 0);
    int blen = sizeof c->bound;
    if (uv_tcp_bind(c->bind_tcp, (struct sockaddr *)&at, 0) != 0 ||
        uv_listen((uv_stream_t *)c->bind_tcp, 1, on_bind_accept) != 0 ||
        uv_tcp_getsockname(c->bind_tcp, (struct sockaddr *)&c->bound, &blen) != 0) {
        refuse(c, FWX__SOCKS_REP_FAILURE, "cannot bind");
        return;
    }
    fwx_connection_params cp = {sizeof cp,
                                fwx_Bind_Tcp,
                                FWX_PROTOCOL_TCP,
                                (struct sockaddr *)&c->bound,
                                fwx__sa_len((struct sockaddr *)&c->bound),
                                (struct sockaddr *)&c->bound,
                                fwx__sa_len((struct sockaddr *)&c->bound),
                                NULL,
                                0,
                                0,
                                NULL};
    fwx_result hr = fwx_connection_open(c->ps->session, &cp, &c->bind_conn);
    if (FWX_FAILED(hr)) {
        c->bind_conn = NULL;
        refuse(c, rep_for(hr), "bind refused by a filter");
        return;
    }
    int fd;
    if (!client_fd(c, &fd) || !send_reply_fd(fd, FWX__SOCKS_REP_OK, (struct sockaddr *)&c->bound)) {
        client_close(c);
        return;
    }
    c->state = S_BIND_WAIT;
    uv_timer_start(&c->timer, on_timeout, SOCKS_BIND_WAIT_MS, 0);
    /* Keep reading: a client that hangs up ends the bind. */
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

/* ---- UDP ASSOCIATE ---------------------------------------------------------------------------- */

static void do_udp_associate(socks_client *c)
{
    pstate *st = c->st;
    struct sockaddr_storage at = c->local;
    fwx__sa_set_port((struct sockaddr *)&at, 0);
    fwx_result hr;
    c->udp = fwx__proxy_udp_port_open(st, UDP_PORT_SOCKS, (struct sockaddr *)&at, 0, &hr);
    if (c->udp == NULL) {
        refuse(c, FWX__SOCKS_REP_FAILURE, "cannot open a UDP relay");
        return;
    }
    c->udp->socks = c;
    int fd;
    if (!client_fd(c, &fd) || !send_reply_fd(fd, FWX__SOCKS_REP_OK, (struct sockaddr *)&c->udp->local)) {
        client_close(c);
        return;
    }
    c->state = S_UDP_ASSOC;
    uv_timer_stop(&c->timer);
    /* Keep reading: the association ends when the client closes its control connection. */
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

void fwx__proxy_socks_udp_datagram(udp_port *p, const struct sockaddr *from, const uint8_t *d, size_t n)
{
    socks_client *c = p->socks;
    if (c == NULL || c->state != S_UDP_ASSOC)
        return;
    /* Only the associated client, from the address it announced (if it did). */
    const struct sockaddr *want = (const struct sockaddr *)&c->dst;
    if (!fwx__sa_same_ip(from, (struct sockaddr *)&c->peer) ||
        (!fwx__sa_is_unspecified(want) && !fwx__sa_same_ip(from, want)) ||
        (fwx__sa_port(want) != 0 && fwx__sa_port(want) != fwx__sa_port(from)))
        return;
    struct sockaddr_storage dst;
    size_t hdr;
    if (!fwx__socks_parse_udp(d, n, &dst, &hdr))
        return; /* malformed, a fragment or a host name: dropped (RFC 1928 section 7 allows it) */
    struct sockaddr_storage canon;
    if (fwx__sa_canon((struct sockaddr *)&dst, fwx__sa_len((struct sockaddr *)&dst), &canon))
        dst = canon;
    pstate *st = c->st;
    const struct sockaddr *dp = (const struct sockaddr *)&dst;
    memcpy(&c->udp_client, from, fwx__sa_len(from));
    c->have_udp_client = true;
    udp_flow *f = fwx__proxy_udp_flow_find(p, dp);
    if (f == NULL) {
        if (fwx__sa_port(dp) == 0 || fwx_firewall_forbidden_host(st->fw, dp, fwx__sa_len(dp)) != NULL)
            return;
        IFWXConnection *conn = NULL;
        fwx_flow fl = {sizeof fl, FWX_PROTOCOL_UDP, (struct sockaddr *)&c->peer, fwx__sa_len((struct sockaddr *)&c->peer),
                       dp, fwx__sa_len(dp)};
        st->udp_deciding++; /* ours to carry, data filters included (p_relay) */
        fwx_result hr = fwx_firewall_admit_in_session(st->fw, c->ps ? c->ps->session : NULL, &fl, &conn);
        if (hr == FWX_E_NOT_FOUND && c->ps != NULL) {
            fwx_connection_params cp = {sizeof cp, fwx_Udp_Destination, FWX_PROTOCOL_UDP, dp, fwx__sa_len(dp),
                                        (struct sockaddr *)&p->local, fwx__sa_len((struct sockaddr *)&p->local), NULL, 0,
                                        0, NULL};
            hr = fwx_connection_open(c->ps->session, &cp, &conn);
        }
        st->udp_deciding--;
        if (FWX_FAILED(hr))
            return; /* refused: the core logged it; the datagram is dropped */
        f = fwx__proxy_udp_flow_for(p, dp, conn);
        if (f == NULL) {
            fwx_connection_close(conn);
            return;
        }
    }
    fwx__proxy_udp_flow_send(f, d + hdr, n - hdr);
}

void fwx__proxy_socks_udp_reply(udp_port *p, const struct sockaddr *dst, const uint8_t *data, size_t n)
{
    socks_client *c = p->socks;
    static uint8_t out[65536 + FWX__SOCKS_REPLY_MAX];
    if (c == NULL || !c->have_udp_client)
        return;
    size_t h = fwx__socks_encode_udp(out, dst);
    if (h == 0 || h + n > sizeof out)
        return;
    memcpy(out + h, data, n);
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)(h + n));
    (void)uv_udp_try_send(&p->udp, &b, 1, (struct sockaddr *)&c->udp_client);
}

/* ---- negotiation -------------------------------------------------------------------------------- */

static void start_request(socks_client *c, const fwx__socks_request *rq);

/* Sends a short answer (a method choice, an RFC 1929 status) on the client's socket. */
static bool send_small(socks_client *c, const uint8_t *ans, size_t n)
{
    int fd;
    return client_fd(c, &fd) && send(fd, ans, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Drops the first n bytes of the buffer: the message that was just handled. */
static void consume(socks_client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Ends the negotiation on a message the parser refused, with the answer it names. */
static void refuse_parsed(socks_client *c, fwx__socks_err err, uint8_t cmd)
{
    int ans = fwx__socks_err_reply(err, cmd);
    if (c->state == S_REQUEST && ans != FWX__SOCKS_NO_REPLY) {
        refuse(c, ans, fwx__socks_err_text(err));
        return;
    }
    if (c->state == S_AUTH)
        explicit_bzero(c->buf, c->len); /* what came of a password goes with the refusal */
    if (c->state == S_AUTH && ans != FWX__SOCKS_NO_REPLY) {
        uint8_t st[2];
        (void)send_small(c, st, fwx__socks_encode_auth(st, (uint8_t)ans));
        log_client(c, "authentication failed: %s, closed", fwx__socks_err_text(err));
    } else {
        log_client(c, "%s, closed", fwx__socks_err_text(err));
    }
    client_close(c);
}

/* Method selection. False while incomplete or when the client was closed. */
static bool greeting_step(socks_client *c)
{
    fwx__socks_greeting g;
    fwx__socks_err err;
    size_t used;
    fwx__socks_status ps = fwx__socks_parse_greeting(c->buf, c->len, &g, &used, &err);
    if (ps == FWX__SOCKS_REFUSED)
        refuse_parsed(c, err, 0);
    if (ps != FWX__SOCKS_DONE)
        return false;
    /* With credentials configured, username/password is required and the only method. */
    uint8_t want = c->st->users != NULL ? FWX__SOCKS_METHOD_USERPASS : FWX__SOCKS_METHOD_NONE, ans[2];
    bool ok = fwx__socks_greeting_offers(&g, want);
    if (!send_small(c, ans, fwx__socks_encode_method(ans, ok ? want : FWX__SOCKS_METHOD_REFUSED)) || !ok) {
        if (!ok)
            log_client(c, want ? "does not offer username/password authentication, closed"
                               : "offers no method we accept, closed");
        client_close(c);
        return false;
    }
    consume(c, used);
    c->state = want ? S_AUTH : S_REQUEST;
    return true;
}

/* RFC 1929: answered VER=1 STATUS (0 ok, 1 failure, then close). False while incomplete or
   when the client was closed. */
static bool auth_step(socks_client *c)
{
    fwx__socks_auth a;
    fwx__socks_err err;
    size_t used;
    fwx__socks_status ps = fwx__socks_parse_auth(c->buf, c->len, &a, &used, &err);
    if (ps == FWX__SOCKS_REFUSED)
        refuse_parsed(c, err, 0);
    if (ps != FWX__SOCKS_DONE)
        return false;
    char user[256], pass[256];
    memcpy(user, a.user, a.user_len);
    user[a.user_len] = '\0';
    memcpy(pass, a.pass, a.pass_len);
    pass[a.pass_len] = '\0';
    bool ok = fwx__socks_users_verify(c->st->users, user, pass);
    explicit_bzero(pass, sizeof pass);
    explicit_bzero(c->buf + (a.pass - c->buf), a.pass_len);
    uint8_t ans[2];
    bool sent = send_small(c, ans, fwx__socks_encode_auth(ans, ok ? 0 : 1));
    if (!ok) {
        log_client(c, "authentication failed for user \"%s\", closed", user);
        client_close(c);
        return false;
    }
    if (!sent) {
        client_close(c);
        return false;
    }
    memcpy(c->user, user, a.user_len + 1);
    consume(c, used);
    c->state = S_REQUEST;
    return true;
}

/* Everything the client sent so far, in the state it is in; socks_wire.c decides what it is. */
static void parse(socks_client *c)
{
    if (c->state == S_GREETING && !greeting_step(c))
        return;
    if (c->state == S_AUTH && !auth_step(c))
        return;
    if (c->state == S_REQUEST) {
        fwx__socks_request rq;
        fwx__socks_err err;
        fwx__socks_status ps = fwx__socks_parse_request(c->buf, c->len, &rq, &err);
        if (ps == FWX__SOCKS_REFUSED)
            refuse_parsed(c, err, c->len > 1 ? c->buf[1] : 0);
        else if (ps == FWX__SOCKS_DONE)
            start_request(c, &rq);
    }
}

static void start_request(socks_client *c, const fwx__socks_request *rq)
{
    memset(&c->dst, 0, sizeof c->dst);
    if (rq->atyp != FWX__SOCKS_ATYP_NAME) {
        c->dst = rq->addr;
        struct sockaddr_storage canon;
        if (fwx__sa_canon((struct sockaddr *)&c->dst, fwx__sa_len((struct sockaddr *)&c->dst), &canon))
            c->dst = canon;
    } else if (rq->cmd != FWX__SOCKS_CMD_CONNECT) {
        /* A name is of use to a CONNECT only: a BIND or UDP ASSOCIATE names the peer it expects
           by address, as it arrives. */
        refuse(c, FWX__SOCKS_REP_ATYP_UNSUPPORTED,
               rq->cmd == FWX__SOCKS_CMD_UDP ? "UDP ASSOCIATE names its client by address only"
                                             : "BIND names its peer by address only");
        return;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->ps = fwx__proxy_session_explicit(c->st, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->local,
                                        c->user[0] ? c->user : NULL);
    if (c->ps == NULL) {
        refuse(c, FWX__SOCKS_REP_FAILURE, "no session");
        return;
    }
    if (rq->atyp == FWX__SOCKS_ATYP_NAME) {
        char portbuf[8];
        memcpy(c->host, rq->name, rq->name_len + 1);
        snprintf(portbuf, sizeof portbuf, "%u", rq->port);
        c->dst.ss_family = AF_INET;
        fwx__sa_set_port((struct sockaddr *)&c->dst, rq->port);
        if (!take_cap(c, FWX__SOCKS_PENDING, "CONNECT by name"))
            return;
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        c->gai.data = c;
        c->state = S_RESOLVING;
        if (uv_getaddrinfo(c->st->loop, &c->gai, on_resolved, c->host, portbuf, &hints) != 0) {
            refuse(c, FWX__SOCKS_REP_HOST_UNREACHABLE, "cannot resolve");
            return;
        }
        c->gai_pending = true;
        return;
    }
    if (rq->cmd == FWX__SOCKS_CMD_CONNECT)
        do_connect(c);
    else if (rq->cmd == FWX__SOCKS_CMD_BIND && take_cap(c, FWX__SOCKS_BIND, "BIND"))
        do_bind(c);
    else if (rq->cmd == FWX__SOCKS_CMD_UDP && take_cap(c, FWX__SOCKS_UDP, "UDP ASSOCIATE"))
        do_udp_associate(c);
}

static void on_timeout(uv_timer_t *t)
{
    socks_client *c = t->data;
    log_client(c, c->state == S_BIND_WAIT ? "no connection to the bind in time, closed" : "negotiation timed out");
    client_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    socks_client *c = h->data;
    (void)suggested;
    buf->base = (char *)c->buf + c->len;
    buf->len = sizeof c->buf - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    socks_client *c = s->data;
    (void)buf;
    if (n == 0)
        return;
    if (n < 0 || c->state == S_BIND_WAIT || c->state == S_UDP_ASSOC) {
        /* EOF or error; during a BIND wait or a UDP association the client stays quiet. */
        client_close(c);
        return;
    }
    c->len += (size_t)n;
    if (c->len >= sizeof c->buf) {
        /* A request-shaped refusal would read as a method choice during the greeting. */
        if (c->state == S_GREETING) {
            log_client(c, "greeting too long, closed");
            client_close(c);
        } else {
            refuse(c, FWX__SOCKS_REP_FAILURE, "request too long");
        }
        return;
    }
    parse(c);
}

static void on_accept(uv_stream_t *server, int status)
{
    socks_listener *l = server->data;
    pstate *st = l->st;
    if (status < 0)
        fwx__proxy_accept_failed(st, server, status, "accepting a SOCKS client");
    if (status < 0 || st->closing)
        return;
    socks_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->st = st;
    uv_tcp_init(st->loop, &c->tcp);
    uv_timer_init(st->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    st->handles++;
    c->next = st->clients;
    if (st->clients)
        st->clients->prev = c;
    st->clients = c;
    int pl = sizeof c->peer, ll = sizeof c->local;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &pl) != 0 ||
        uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&c->local, &ll) != 0) {
        client_close(c);
        return;
    }
    char why[160];
    bool global = false;
    if (!fwx__socks_caps_take(st->fw, &st->socks_caps, &c->hold, (struct sockaddr *)&c->peer, FWX__SOCKS_CONN, why,
                              sizeof why, &global)) {
        /* Before the greeting: "no acceptable methods" is the refusal a client reads here. */
        static const uint8_t no_method[2] = {5, 0xff};
        int fd;
        uint32_t quiet;
        fwx_log_level lv = fwx__socks_caps_log_level(&st->socks_caps, FWX__SOCKS_CONN, &quiet);
        char more[80] = "";
        if (quiet)
            snprintf(more, sizeof more, " (%u more refused at this cap since the last line)", quiet);
        log_client_at(c, lv, "connection: %s, refused%s", why, more);
        (void)fwx_firewall_report_refused(st->fw, FWX_PROTOCOL_TCP, (struct sockaddr *)&c->peer,
                                          (struct sockaddr *)&c->local, global ? FWX_E_IS_BUSY : FWX_E_QUOTA_EXCEEDED,
                                          why);
        if (client_fd(c, &fd))
            (void)send(fd, no_method, sizeof no_method, MSG_NOSIGNAL);
        client_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, SOCKS_NEGOTIATE_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

/* ---- listeners ----------------------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *h)
{
    socks_listener *l = h->data;
    pstate *st = l->st;
    free(l);
    st->handles--;
    fwx__proxy_state_maybe_free(st);
}

void fwx__proxy_socks_close_all(pstate *st)
{
    while (st->clients != NULL)
        client_close(st->clients);
    while (st->socks != NULL) {
        socks_listener *l = st->socks;
        st->socks = l->next;
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
    }
}

fwx_result fwx_proxy_socks_listen(fwx_firewall *fw, const struct sockaddr *addr, uint32_t len)
{
    pstate *st = fwx_firewall_backend_state_of(fw, &fwx__proxy_backend);
    if (st == NULL || st->magic != FWX__PROXY_MAGIC)
        return FWX_E_NOT_SUPPORTED;
    if (!fwx__sa_valid(addr, len))
        return FWX_E_INVALIDARG;
    socks_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return FWX_E_OUTOFMEMORY;
    l->st = st;
    int rc = uv_tcp_init_ex(st->loop, &l->tcp, addr->sa_family);
    if (rc != 0) {
        free(l);
        return fwx__result_from_errno(rc, FWX_E_BACKEND);
    }
    l->tcp.data = l;
    st->handles++;
    /* Shared among the process's loops: a client address stays on one of them, since its data
       connection (a CONNECT an FTP filter's address-based permission allows) must find the
       session of its control connection (fwx_firewall_options.listen_shared). */
    uint32_t n = fwx_firewall_listen_shared(fw);
    uv_os_fd_t fd = -1;
    if (n > 1 && uv_fileno((uv_handle_t *)&l->tcp, &fd) == 0)
        rc = fwx__reuseport(fd);
    if (rc == 0)
        rc = uv_tcp_bind(&l->tcp, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 128, on_accept);
    if (rc == 0 && n > 1 && (rc = fwx__reuseport_by_source(fd, n)) != 0) {
        char a[FWX__SA_STRLEN];
        fwx_firewall_log(fw, FWX_LOG_ERROR, "socks: listening on %s: cannot share it among %u loops by client: %s",
                         fwx__sa_fmt(addr, a), (unsigned)n, strerror(-rc));
    }
    int alen = sizeof l->at;
    if (rc == 0 && uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&l->at, &alen) == 0) {
        struct sockaddr_storage canon;
        if (fwx__sa_canon((struct sockaddr *)&l->at, (uint32_t)alen, &canon))
            l->at = canon;
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
        return fwx__result_from_errno(rc, FWX_E_BACKEND);
    }
    l->next = st->socks;
    if (st->socks)
        st->socks->prev = l;
    st->socks = l;
    return FWX_S_OK;
}
