/*
 * fwx - the "nft" backend's interception listener (SecureNAT).
 *
 * The compiled policy redirects (nat prerouting, "redirect to :port") new TCP connections to
 * ports of protocols that have a filter bound to this listener. REDIRECT rather than TPROXY:
 * it needs no policy routing (no ip rule, no local route table) in the gateway namespace, the
 * original destination comes back with SO_ORIGINAL_DST, and for a nat relationship the
 * upstream socket is an ordinary one from the gateway's own address, so the kernel needs
 * nothing more. (A route relationship, where the server should see the client's address,
 * needs a transparent upstream socket and a route back to it: not done yet.)
 *
 * Each accepted connection: a hold of the client's NAT session (fwx__nft_session_hold in nft.c,
 * shared with the backend's other flows of the client, so the last of them ends it), the
 * primary connection (fwx_connection_open, fwx_Connect_Tcp, external peer = the original
 * destination; the core decides by the policy and the filters attach), an upstream connect
 * marked FWX__NFT_OWN_MARK (the interception rule skips marked packets), then the public pump
 * (fwx_pump_start, fwx/pump.h) through the connection's data filters. The same steps as the proxy
 * backend's accept -> relay; the shape of a shared helper is in the README.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"
#include "util/util.h"

#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

typedef struct irelay {
    struct irelay *next, *prev;
    struct fwx__nft_icpt *l;
    struct fwx__nft_sess *us;              /* a hold of the client's NAT session (nft.c), or NULL */
    IFWXConnection *conn;
    int client_fd;
    uv_tcp_t *up;
    uv_connect_t creq;
    fwx_pump *pump;
    bool connecting;
    fwx_redirect_record *rec;              /* +1: the flow's record (primary intercepted flows) */
    uint32_t slots;                        /* the local-redirection slots it has passed */
} irelay;

struct fwx__nft_icpt {
    fwx_firewall *fw;
    uv_tcp_t tcp;
    uv_tcp_t tcp6;        /* interception of IPv6 (not for a publishing rule's listener) */
    int handles;          /* listener handles not closed yet */
    bool published;       /* a publishing rule's listener (pub), not the interception one */
    fwx_listen_spec pub;
    irelay relays; /* list head */
    bool stopping, closed;
};

static void maybe_free(struct fwx__nft_icpt *l)
{
    if (l->closed && l->relays.next == &l->relays)
        free(l);
}

static void relay_free(irelay *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    if (r->client_fd >= 0)
        close(r->client_fd);
    if (r->conn != NULL)
        fwx_connection_close(r->conn); /* ConnectionTerminating, then our reference goes */
    fwx_redirect_record_unref(r->rec);
    fwx__nft_session_release(r->us); /* may end the session: after the connection is closed */
    struct fwx__nft_icpt *l = r->l;
    free(r);
    maybe_free(l);
}

static void up_closed(uv_handle_t *h)
{
    irelay *r = h->data;
    free(h);
    if (r != NULL)
        relay_free(r);
}

static void pump_done(fwx_pump *p, void *arg)
{
    (void)p;
    relay_free(arg);
}

static void on_upstream(uv_connect_t *req, int status)
{
    irelay *r = req->data;
    r->connecting = false;
    int fd = -1;
    uv_os_fd_t ufd;
    if (status == 0 && uv_fileno((uv_handle_t *)r->up, &ufd) == 0)
        fd = dup(ufd);
    if (fd < 0) {
        if (status < 0)
            fwx_firewall_log(r->l->fw, FWX_LOG_WARN, "backend \"nft\": intercepted connection: upstream: %s",
                             uv_strerror(status));
        uv_close((uv_handle_t *)r->up, up_closed); /* frees r */
        return;
    }
    /* The gateway's address toward the server: what a filter gives the server to connect back
       to (active FTP's rewritten PORT), as in the proxy backend. */
    struct sockaddr_storage self;
    int sl = sizeof self;
    if (uv_tcp_getsockname(r->up, (struct sockaddr *)&self, &sl) == 0) {
        if (!r->l->published)
            (void)IFWXConnection_SetSocketName(r->conn, (struct sockaddr *)&self, (uint32_t)sl);
        else /* toward a published server: where its active-mode redirect ports go */
            (void)fwx_connection_set_upstream_local(r->conn, (struct sockaddr *)&self, (uint32_t)sl);
    }
    r->up->data = NULL;
    uv_close((uv_handle_t *)r->up, up_closed);
    r->up = NULL;
    fwx_pump *p = NULL;
    fwx_result hr = fwx_pump_start(fwx_firewall_loop(r->l->fw), r->conn, r->client_fd, fd, NULL, pump_done, r, &p);
    if (FWX_FAILED(hr)) {
        close(fd);
        relay_free(r);
        return;
    }
    r->client_fd = -1; /* the pump's now */
    r->pump = p;
}

/* Upstream, from the gateway's own address, marked so that interception skips it; the pump
   starts when it connects (on_upstream). Frees r on failure. */
static void upstream_connect(irelay *r, uv_loop_t *loop, const struct sockaddr_storage *to)
{
    if ((r->up = malloc(sizeof *r->up)) != NULL && uv_tcp_init_ex(loop, r->up, to->ss_family) == 0) {
        uint32_t mark = FWX__NFT_OWN_MARK | FWX__NFT_SLOT_MARK(r->slots);
        uv_os_fd_t ufd;
        r->up->data = r;
        /* No Nagle toward the server either (see relay_listen). */
        (void)uv_tcp_nodelay(r->up, 1);
        if (uv_fileno((uv_handle_t *)r->up, &ufd) == 0) {
            (void)setsockopt(ufd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
            /* A flow with a record: bound, its record in the registry under the source port
               and the mark set before connect, so the next hop on this host can look it up
               the moment it accepts. The core removes the file when the connection ends. */
            if (r->rec != NULL && to->ss_family == AF_INET)
                (void)fwx_connection_link_outbound(r->conn, ufd, (const struct sockaddr *)to,
                                                   fwx__sa_len((const struct sockaddr *)to), r->slots);
        }
        r->creq.data = r;
        r->connecting = true;
        if (uv_tcp_connect(&r->creq, r->up, (const struct sockaddr *)to, on_upstream) != 0) {
            r->connecting = false;
            uv_close((uv_handle_t *)r->up, up_closed); /* frees r */
        }
        return;
    }
    free(r->up);
    r->up = NULL;
    relay_free(r);
}

static const char *const state_names[] = {"NOT_REDIRECTED", "REDIRECTED_BY_SELF", "REDIRECTED_BY_OTHER",
                                          "PREVIOUSLY_REDIRECTED_BY_SELF"};

/*
 * The redirect record of an intercepted flow: the one an earlier hop on this host
 * left in the registry, or a new one with the original destination and, for a local process,
 * the original application. This instance's hop is pushed unless the record says it has
 * redirected the flow before: then the flow has come back (a relay in the path dropped the
 * mark), and it is refused (W2/W4 of doc/sdk-rules.md: never redirect twice). The
 * destination must not be one of fwx's own listeners. FWX_E_REDIRECT_LOOP when refused.
 */
static fwx_result redirect_record(irelay *r, const struct sockaddr_storage *peer, const struct sockaddr_storage *orig)
{
    fwx_firewall *fw = r->l->fw;
    const struct sockaddr *p = (const struct sockaddr *)peer, *o = (const struct sockaddr *)orig;
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    uint32_t in_slots = 0, my_slot = 0;
    fwx_redirect_handle *h = fwx__nft_identity(fw, &my_slot);
    fwx_redirect_record *rec = NULL; /* the whole tuple; none is FWX_E_NOT_FOUND */
    (void)fwx_redirect_registry_lookup_flow(p, fwx__sa_len(p), o, fwx__sa_len(o), &rec, &in_slots);
    bool from_registry = rec != NULL;
    if (rec == NULL) {
        fwx_redirect_app app = {sizeof app, 0, FWX_REDIRECT_UID_UNKNOWN, 0, 0, NULL};
        char cg[FWX_REDIRECT_CGROUP_PATH_MAX + 1];
        /* A local process's connection reaches this listener only through this instance's
           local redirection (a slot); without one every flow is forwarded, and the lookup
           (sock_diag, then /proc) is not made on that path. */
        if (my_slot != 0)
            (void)fwx__nft_local_app(p, o, &app, cg, sizeof cg);
        if (FWX_FAILED(fwx_redirect_record_new(o, fwx__sa_len(o), &app, &rec)))
            return FWX_S_OK; /* out of memory: the flow goes on without a record */
    }
    fwx_redirect_app app;
    memset(&app, 0, sizeof app);
    app.struct_size = sizeof app;
    (void)fwx_redirect_record_original_app(rec, &app);
    fwx_redirect_state state = h != NULL ? fwx_redirect_query(rec, h, NULL) : FWX_REDIRECT_NOT_REDIRECTED;
    fwx_firewall_log(fw, FWX_LOG_INFO,
                     "connection %s -> %s: redirect record %s: %s, %zu earlier hop(s); original destination %s, "
                     "application pid %u uid %ld cgroup %s",
                     fwx__sa_fmt(p, a), fwx__sa_fmt(o, b), from_registry ? "from the previous hop" : "new", state_names[state],
                     fwx_redirect_record_hop_count(rec), fwx__sa_fmt(o, b), (unsigned)app.pid,
                     app.uid == FWX_REDIRECT_UID_UNKNOWN ? -1L : (long)app.uid,
                     app.cgroup_path != NULL ? app.cgroup_path : "-");
    if (state == FWX_REDIRECT_BY_SELF || state == FWX_REDIRECT_PREVIOUSLY_BY_SELF) {
        fwx_firewall_log(fw, FWX_LOG_WARN,
                         "connection %s -> %s came back to this proxy (%s): a redirect loop, refused (%s)",
                         fwx__sa_fmt(p, a), fwx__sa_fmt(o, b), state_names[state], fwx_strerror(FWX_E_REDIRECT_LOOP));
        fwx_redirect_record_unref(rec);
        return FWX_E_REDIRECT_LOOP;
    }
    if (fwx__nft_is_listener(fw, o)) {
        fwx_firewall_log(fw, FWX_LOG_WARN, "connection %s -> %s is fwx's own interception listener: a redirect "
                                           "loop, refused (%s)",
                         fwx__sa_fmt(p, a), fwx__sa_fmt(o, b), fwx_strerror(FWX_E_REDIRECT_LOOP));
        fwx_redirect_record_unref(rec);
        return FWX_E_REDIRECT_LOOP;
    }
    fwx_result hr = fwx_redirect_check_destination(fw, rec, FWX_PROTOCOL_TCP, o, fwx__sa_len(o));
    if (FWX_SUCCEEDED(hr) && h != NULL) {
        /* The hop's context: where this instance found the flow going, for whoever asks with
           our handle later (W5); fwx frees it when the record dies. */
        char *ctx = strdup(fwx__sa_fmt(o, b));
        hr = fwx_redirect_record_push(rec, h, ctx, free);
        if (FWX_FAILED(hr))
            free(ctx); /* refused: still ours */
    }
    if (FWX_FAILED(hr)) {
        fwx_redirect_record_unref(rec);
        return hr; /* logged by the record code */
    }
    r->rec = rec; /* attached to the connection once the core has opened it */
    r->slots = in_slots | my_slot;
    return FWX_S_OK;
}

static void on_accept(uv_stream_t *server, int status)
{
    struct fwx__nft_icpt *l = server->data;
    if (status < 0 || l->stopping)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    if (c == NULL)
        return;
    uv_tcp_init(server->loop, c);
    int fd = -1;
    uv_os_fd_t ufd;
    if (uv_accept(server, (uv_stream_t *)c) == 0 && uv_fileno((uv_handle_t *)c, &ufd) == 0)
        fd = dup(ufd);
    uv_close((uv_handle_t *)c, (uv_close_cb)free); /* closes the handle's copy of the fd */
    if (fd < 0)
        return;
    struct sockaddr_storage peer, orig;
    socklen_t pl = sizeof peer, ol = sizeof orig;
    memset(&orig, 0, sizeof orig);
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0) {
        close(fd);
        return;
    }
    if (l->published) {
        orig = l->pub.server; /* the published server; the client dialled the rule's address */
    } else if (peer.ss_family == AF_INET6
                   ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &orig, &ol) != 0 || orig.ss_family != AF_INET6
                   : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &ol) != 0 || orig.ss_family != AF_INET) {
        close(fd); /* not a redirected connection: someone dialled the port itself */
        return;
    }
    irelay *r = calloc(1, sizeof *r);
    if (r == NULL) {
        close(fd);
        return;
    }
    r->l = l;
    r->client_fd = fd;
    r->next = l->relays.next;
    r->prev = &l->relays;
    r->next->prev = r;
    l->relays.next = r;
    if (!l->published) {
        /* A secondary connection the core wants in user mode (a user-mode permission, or a
           bound or redirect port DNATed here)? Admitted through the core, which attaches the
           data filters; a port's target must be read before the admit uses the grant up. */
        struct sockaddr_storage target = orig;
        bool port_grant = fwx__nft_user_port_target(l->fw, FWX_PROTOCOL_TCP, (struct sockaddr *)&orig, &target);
        fwx_flow flow = {sizeof flow, FWX_PROTOCOL_TCP, (struct sockaddr *)&peer, fwx__sa_len((struct sockaddr *)&peer),
                         (struct sockaddr *)&orig, fwx__sa_len((struct sockaddr *)&orig)};
        fwx_result hr = fwx_firewall_admit(l->fw, &flow, &r->conn);
        if (hr == FWX_S_OK) {
            upstream_connect(r, server->loop, &target);
            return;
        }
        r->conn = NULL;
        if (hr != FWX_E_NOT_FOUND || port_grant) {
            relay_free(r); /* refused (the core logged why), or a port whose grant is gone */
            return;
        }
    }
    /* Loops first: a flow that has come back is refused as a loop, before any policy. */
    if (!l->published && FWX_FAILED(redirect_record(r, &peer, &orig))) {
        relay_free(r); /* logged */
        return;
    }
    struct sockaddr_storage client = peer;
    fwx__sa_set_port((struct sockaddr *)&client, 0);
    if ((r->us = fwx__nft_session_hold(l->fw, (struct sockaddr *)&client)) == NULL) {
        relay_free(r);
        return;
    }
    fwx_connection_params cp;
    memset(&cp, 0, sizeof cp);
    cp.struct_size = sizeof cp;
    cp.protocol = FWX_PROTOCOL_TCP;
    if (l->published) {
        /* As the proxy backend does for a publishing rule: the remote client is the external
           peer, the rule's address the gateway's, and the core learns the server behind it. */
        cp.event = fwx_AcceptedConnection;
        cp.external_peer = (struct sockaddr *)&peer;
        cp.external_peer_len = fwx__sa_len((struct sockaddr *)&peer);
        cp.external_local = (struct sockaddr *)&l->pub.address;
        cp.external_local_len = fwx__sa_len((struct sockaddr *)&l->pub.address);
        cp.flags = l->pub.full_proxy ? FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION : 0;
        cp.published_server = (struct sockaddr *)&l->pub.server;
        cp.published_server_len = fwx__sa_len((struct sockaddr *)&l->pub.server);
    } else {
        cp.event = fwx_Connect_Tcp;
        cp.external_peer = (struct sockaddr *)&orig;
        cp.external_peer_len = fwx__sa_len((struct sockaddr *)&orig);
    }
    if (FWX_FAILED(fwx_connection_open(fwx__nft_session(r->us), &cp, &r->conn))) {
        r->conn = NULL;
        relay_free(r); /* the core logged why; the client sees the connection close */
        return;
    }
    if (r->rec != NULL)
        (void)fwx_connection_set_redirect_record(r->conn, r->rec);
    upstream_connect(r, server->loop, &orig);
}

/*
 * Listens on a bound listener handle with TCP_NODELAY set, which Linux passes on to every
 * accepted socket (no call per connection). The pump writes what it read at once; with Nagle
 * a write while an earlier one is unacknowledged waits for the peer's ACK, and a peer that
 * sends nothing back delays it (40 ms and more): an FTP server's "226 Transfer complete" after
 * its "150" reached the client ~42 ms late through this relay (bench/README.md, issue 13,
 * part 5), where direct or through the kernel's helper it took 0.25 ms.
 */
static int relay_listen(uv_tcp_t *t)
{
    int rc = uv_tcp_nodelay(t, 1);
    return rc != 0 ? rc : uv_listen((uv_stream_t *)t, 128, on_accept);
}

static void listener_closed(uv_handle_t *h)
{
    struct fwx__nft_icpt *l = h->data;
    if (--l->handles > 0)
        return;
    l->closed = true;
    maybe_free(l);
}

fwx_result fwx__nft_icpt_start(fwx_firewall *fw, struct fwx__nft_icpt **out, fwx__nft_intercept *icpt)
{
    *out = NULL;
    icpt->port = icpt->port6 = 0;
    icpt->own_mark = FWX__NFT_OWN_MARK;
    struct fwx__nft_icpt *l = calloc(1, sizeof *l);
    if (l == NULL)
        return FWX_E_OUTOFMEMORY;
    l->fw = fw;
    l->relays.next = l->relays.prev = &l->relays;
    uv_loop_t *loop = fwx_firewall_loop(fw);
    struct sockaddr_in any = {.sin_family = AF_INET};
    if (uv_tcp_init(loop, &l->tcp) != 0) {
        free(l);
        return FWX_E_BACKEND;
    }
    l->tcp.data = l;
    l->handles = 1;
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_bind(&l->tcp, (struct sockaddr *)&any, 0) != 0 || relay_listen(&l->tcp) != 0 ||
        uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &sl) != 0) {
        l->stopping = true;
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
        return FWX_E_BACKEND;
    }
    /* The listener must not keep the host's loop alive by itself. */
    uv_unref((uv_handle_t *)&l->tcp);
    icpt->port = fwx__sa_port((struct sockaddr *)&ss);
    /* IPv6, IPv6 only, if the host has it: without, interception stays IPv4. */
    struct sockaddr_in6 any6 = {.sin6_family = AF_INET6};
    if (uv_tcp_init(loop, &l->tcp6) == 0) {
        l->tcp6.data = l;
        l->handles++;
        sl = sizeof ss;
        if (uv_tcp_bind(&l->tcp6, (struct sockaddr *)&any6, UV_TCP_IPV6ONLY) == 0 &&
            relay_listen(&l->tcp6) == 0 &&
            uv_tcp_getsockname(&l->tcp6, (struct sockaddr *)&ss, &sl) == 0) {
            uv_unref((uv_handle_t *)&l->tcp6);
            icpt->port6 = fwx__sa_port((struct sockaddr *)&ss);
        } else {
            uv_close((uv_handle_t *)&l->tcp6, listener_closed);
        }
    }
    *out = l;
    return FWX_S_OK;
}

fwx_result fwx__nft_pub_start(fwx_firewall *fw, const fwx_listen_spec *spec, struct fwx__nft_icpt **out)
{
    *out = NULL;
    const struct sockaddr *la = (const struct sockaddr *)&spec->address;
    if (spec->protocol != FWX_PROTOCOL_TCP || !fwx__sa_valid(la, fwx__sa_len(la)))
        return FWX_E_NOT_SUPPORTED;
    struct fwx__nft_icpt *l = calloc(1, sizeof *l);
    if (l == NULL)
        return FWX_E_OUTOFMEMORY;
    l->fw = fw;
    l->published = true;
    l->pub = *spec;
    l->relays.next = l->relays.prev = &l->relays;
    if (uv_tcp_init(fwx_firewall_loop(fw), &l->tcp) != 0) {
        free(l);
        return FWX_E_BACKEND;
    }
    l->tcp.data = l;
    l->handles = 1;
    int rc = uv_tcp_bind(&l->tcp, la, 0);
    if (rc == 0)
        rc = relay_listen(&l->tcp);
    if (rc != 0) {
        l->stopping = true;
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
        return fwx__result_from_errno(rc, FWX_E_BACKEND);
    }
    uv_unref((uv_handle_t *)&l->tcp);
    *out = l;
    return FWX_S_OK;
}

void fwx__nft_icpt_stop(struct fwx__nft_icpt *l)
{
    if (l == NULL)
        return;
    l->stopping = true;
    for (irelay *r = l->relays.next, *nx; r != &l->relays; r = nx) {
        nx = r->next;
        if (r->pump != NULL)
            fwx_pump_abort(r->pump); /* done() follows from the loop; detach r from l first */
        else if (r->connecting) {
            r->connecting = false;
            uv_close((uv_handle_t *)r->up, up_closed);
        }
    }
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
    if (!l->published && !uv_is_closing((uv_handle_t *)&l->tcp6) && l->tcp6.data == l)
        uv_close((uv_handle_t *)&l->tcp6, listener_closed);
}
