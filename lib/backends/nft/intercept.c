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
#include <netinet/tcp.h>
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
    int up_fd;                             /* the upstream socket while it connects, else -1 */
    fwx_pump_connector *connector;         /* its connect on the pump's reactor, while connecting */
    fwx_pump *pump;
    fwx_redirect_record *rec;              /* +1: the flow's record (primary intercepted flows) */
    uint32_t slots;                        /* the local-redirection slots it has passed */
} irelay;

/* A listening socket of the backend's own, watched by a poll handle (data: the listener set):
   accept4 gives the relay its descriptor and the peer's address at once (no libuv stream to
   copy the descriptor out of, no getpeername). */
typedef struct ilisten {
    uv_poll_t poll;
    int fd; /* -1: none */
} ilisten;

struct fwx__nft_icpt {
    fwx_firewall *fw;
    ilisten lis[2];       /* IPv4 interception (or the publishing rule's address), IPv6 interception */
    uv_timer_t pause;     /* accepting paused while descriptors are short (ACCEPT_PAUSE_MS) */
    int handles;          /* poll and timer handles not closed yet */
    bool published;       /* a publishing rule's listener (pub), not the interception one */
    bool reactor_held;    /* fwx_pump_reactor_hold taken at start, released at stop */
    fwx_listen_spec pub;
    irelay relays; /* list head */
    fwx__logpace short_pace; /* out-of-descriptors lines, once a second */
    bool stopping, closed;
};

/* Accepts taken per readiness of a listener: a burst is served in one go, and one busy
   listener does not starve the loop. */
#define ACCEPT_BATCH 32
/* Out of descriptors (EMFILE, ENFILE): accepting pauses this long, and the connections wait in
   the kernel's listen queue until some descriptors are free again. */
#define ACCEPT_PAUSE_MS 100

static uv_loop_t *t_loop(const struct fwx__nft_icpt *l) { return fwx_firewall_loop(l->fw); }

static void maybe_free(struct fwx__nft_icpt *l)
{
    if (l->closed && l->relays.next == &l->relays)
        free(l);
}

static void relay_free(irelay *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    if (r->connector != NULL)
        fwx_pump_connect_cancel(r->connector);
    if (r->up_fd >= 0)
        close(r->up_fd);
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

static void pump_done(fwx_pump *p, void *arg)
{
    (void)p;
    relay_free(arg);
}

static void on_upstream(void *arg, int status)
{
    irelay *r = arg;
    fwx_pump_connector *connector = r->connector; /* gone after this callback */
    r->connector = NULL;
    if (status < 0) {
        fwx_firewall_log(r->l->fw, FWX_LOG_WARN, "backend \"nft\": intercepted connection: upstream: %s",
                         uv_strerror(status));
        relay_free(r);
        return;
    }
    /* The gateway's address toward the server: what a filter gives the server to connect back
       to (active FTP's rewritten PORT), as in the proxy backend. */
    struct sockaddr_storage self;
    socklen_t sl = sizeof self;
    if (getsockname(r->up_fd, (struct sockaddr *)&self, &sl) == 0) {
        if (!r->l->published)
            (void)IFWXConnection_SetSocketName(r->conn, (struct sockaddr *)&self, (uint32_t)sl);
        else /* toward a published server: where its active-mode redirect ports go */
            (void)fwx_connection_set_upstream_local(r->conn, (struct sockaddr *)&self, (uint32_t)sl);
    }
    /* Both descriptors are this backend's own (accept4, socket): the pump takes them as they
       are, and the upstream one keeps its registration on the reactor. */
    fwx_pump *p = NULL;
    fwx_result hr = fwx_pump_start_connected(fwx_firewall_loop(r->l->fw), r->conn, r->client_fd, connector,
                                             pump_done, r, &p);
    if (FWX_FAILED(hr)) {
        relay_free(r); /* closes both */
        return;
    }
    r->client_fd = r->up_fd = -1; /* the pump's now */
    r->pump = p;
}

/* Upstream, from the gateway's own address, marked so that interception skips it, connected on
   the pump's reactor; the pump starts when it connects (on_upstream). Unless a filter emulates
   the server: then the pump starts at once, with no upstream. Frees r on failure. */
static void upstream_connect(irelay *r, uv_loop_t *loop, const struct sockaddr_storage *to)
{
    const struct sockaddr *ta = (const struct sockaddr *)to;
    uint32_t flags = 0;
    if (IFWXConnection_GetConnectionFlags(r->conn, &flags) == FWX_S_OK && (flags & FWX_CONNECTION_EMULATED)) {
        /* A filter emulates the server (EmulateForConnect): nothing is dialled; the last
           filter gets no external socket, as in the proxy backend. */
        fwx_pump *p = NULL;
        if (FWX_FAILED(fwx_pump_start_fresh(loop, r->conn, r->client_fd, -1, pump_done, r, &p))) {
            relay_free(r);
            return;
        }
        r->client_fd = -1; /* the pump's now */
        r->pump = p;
        return;
    }
    r->up_fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->up_fd < 0) {
        fwx_firewall_log(r->l->fw, FWX_LOG_WARN, "backend \"nft\": intercepted connection: upstream socket: %s",
                         strerror(errno));
        relay_free(r);
        return;
    }
    uint32_t mark = FWX__NFT_OWN_MARK | FWX__NFT_SLOT_MARK(r->slots);
    int one = 1;
    /* No Nagle toward the server either (see listen_socket). */
    (void)setsockopt(r->up_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(r->up_fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
    /* A flow with a record: bound, its record in the registry under the source port and the
       mark set before connect, so the next hop on this host can look it up the moment it
       accepts. The core removes the file when the connection ends. */
    if (r->rec != NULL && to->ss_family == AF_INET)
        (void)fwx_connection_link_outbound(r->conn, r->up_fd, ta, fwx__sa_len(ta), r->slots);
    int rc = fwx_pump_connect(loop, r->up_fd, ta, on_upstream, r, &r->connector);
    if (rc != 0) {
        char a[FWX__SA_STRLEN];
        fwx_firewall_log(r->l->fw, FWX_LOG_WARN, "backend \"nft\": intercepted connection: upstream %s: %s",
                         fwx__sa_fmt(ta, a), uv_strerror(rc));
        r->connector = NULL;
        relay_free(r);
    }
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

/* One accepted connection (fd ours, nonblocking, with TCP_NODELAY from the listener). */
static void accepted(struct fwx__nft_icpt *l, uv_loop_t *loop, int fd, const struct sockaddr_storage *peer_in)
{
    struct sockaddr_storage peer = *peer_in, orig;
    socklen_t ol = sizeof orig;
    memset(&orig, 0, sizeof orig);
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
    r->up_fd = -1;
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
            upstream_connect(r, loop, &target);
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
    upstream_connect(r, loop, &orig);
}

/* Out of descriptors: one line a second with the count since the last (fwx__logpace), then
   accepting pauses (the listen queue keeps the connections) instead of waking on them again at once. */
static void on_pause_end(uv_timer_t *t);
static void shortage(struct fwx__nft_icpt *l, int err)
{
    uint32_t unsaid;
    if (fwx__logpace_say(&l->short_pace, uv_now(t_loop(l)), &unsaid))
        fwx_firewall_log(l->fw, FWX_LOG_ERROR,
                         "backend \"nft\": out of file descriptors (%s: %s) accepting %s connections: "
                         "accepting pauses %d ms at a time until some close (%u more since the last line)",
                         err == ENFILE ? "ENFILE" : "EMFILE", strerror(err), l->published ? "published" : "intercepted",
                         ACCEPT_PAUSE_MS, unsaid);
    for (int i = 0; i < 2; i++)
        if (l->lis[i].fd >= 0)
            uv_poll_stop(&l->lis[i].poll);
    (void)uv_timer_start(&l->pause, on_pause_end, ACCEPT_PAUSE_MS, 0);
}

static void on_listen_ready(uv_poll_t *h, int status, int events);

static void on_pause_end(uv_timer_t *t)
{
    struct fwx__nft_icpt *l = t->data;
    for (int i = 0; i < 2 && !l->stopping; i++)
        if (l->lis[i].fd >= 0)
            (void)uv_poll_start(&l->lis[i].poll, UV_READABLE, on_listen_ready);
}

static void on_listen_ready(uv_poll_t *h, int status, int events)
{
    struct fwx__nft_icpt *l = h->data;
    uv_os_fd_t lfd;
    (void)status;
    (void)events;
    if (uv_fileno((uv_handle_t *)h, &lfd) != 0)
        return;
    for (int i = 0; i < ACCEPT_BATCH && !l->stopping; i++) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        int fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                shortage(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                fwx_firewall_log(l->fw, FWX_LOG_WARN, "backend \"nft\": accepting: %s", strerror(errno));
            return;
        }
        accepted(l, h->loop, fd, &peer);
    }
}

/*
 * A listening socket on `a`, watched by li's poll handle (not keeping the host's loop alive by
 * itself). TCP_NODELAY is set on it, which Linux passes on to every accepted socket (no call
 * per connection). The pump writes what it read at once; with Nagle a write while an earlier
 * one is unacknowledged waits for the peer's ACK, and a peer that sends nothing back delays it
 * (40 ms and more): an FTP server's "226 Transfer complete" after its "150" reached the client
 * ~42 ms late through this relay (bench/README.md, issue 13, part 5), where direct or through
 * the kernel's helper it took 0.25 ms. A negative errno on failure (nothing left open).
 */
static int listen_socket(struct fwx__nft_icpt *l, ilisten *li, const struct sockaddr *a, bool v6only)
{
    int one = 1;
    int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (v6only && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 || bind(fd, a, fwx__sa_len(a)) != 0 ||
        listen(fd, 128) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (uv_poll_init_socket(t_loop(l), &li->poll, fd) != 0) {
        close(fd);
        return UV_EBADF;
    }
    li->fd = fd;
    li->poll.data = l;
    l->handles++;
    uv_unref((uv_handle_t *)&li->poll);
    return uv_poll_start(&li->poll, UV_READABLE, on_listen_ready);
}

static void handle_closed(uv_handle_t *h)
{
    struct fwx__nft_icpt *l = h->data; /* the pause timer's and the polls' */
    if (--l->handles > 0)
        return;
    l->closed = true;
    maybe_free(l);
}

/* Closes a listening socket, its poll handle first: uv_close takes the descriptor out of the
   loop's epoll set, so the port is free when this returns. */
static void listener_close(ilisten *li)
{
    if (li->fd < 0)
        return;
    uv_close((uv_handle_t *)&li->poll, handle_closed);
    close(li->fd);
    li->fd = -1;
}

/* Closes the listening sockets and the pause timer. */
static void listeners_close(struct fwx__nft_icpt *l)
{
    l->stopping = true;
    for (int i = 0; i < 2; i++)
        listener_close(&l->lis[i]);
    uv_close((uv_handle_t *)&l->pause, handle_closed);
    if (l->reactor_held) {
        l->reactor_held = false;
        fwx_pump_reactor_release(t_loop(l));
    }
}

/* A listener set with no socket yet: its pause timer, and the relay reactor held, so that an
   FTP session's control connections, coming one at a time, do not each make it anew. */
static struct fwx__nft_icpt *icpt_new(fwx_firewall *fw)
{
    struct fwx__nft_icpt *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->fw = fw;
    l->lis[0].fd = l->lis[1].fd = -1;
    l->relays.next = l->relays.prev = &l->relays;
    uv_loop_t *loop = fwx_firewall_loop(fw);
    if (uv_timer_init(loop, &l->pause) != 0) {
        free(l);
        return NULL;
    }
    l->pause.data = l;
    uv_unref((uv_handle_t *)&l->pause);
    l->handles = 1;
    l->reactor_held = fwx_pump_reactor_hold(loop) == 0;
    return l;
}

fwx_result fwx__nft_icpt_start(fwx_firewall *fw, struct fwx__nft_icpt **out, fwx__nft_intercept *icpt)
{
    *out = NULL;
    icpt->port = icpt->port6 = 0;
    icpt->own_mark = FWX__NFT_OWN_MARK;
    struct fwx__nft_icpt *l = icpt_new(fw);
    if (l == NULL)
        return FWX_E_OUTOFMEMORY;
    struct sockaddr_in any = {.sin_family = AF_INET};
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (listen_socket(l, &l->lis[0], (struct sockaddr *)&any, false) != 0 ||
        getsockname(l->lis[0].fd, (struct sockaddr *)&ss, &sl) != 0) {
        listeners_close(l);
        return FWX_E_BACKEND;
    }
    icpt->port = fwx__sa_port((struct sockaddr *)&ss);
    /* IPv6, IPv6 only, if the host has it: without, interception stays IPv4. */
    struct sockaddr_in6 any6 = {.sin6_family = AF_INET6};
    sl = sizeof ss;
    if (listen_socket(l, &l->lis[1], (struct sockaddr *)&any6, true) == 0 &&
        getsockname(l->lis[1].fd, (struct sockaddr *)&ss, &sl) == 0)
        icpt->port6 = fwx__sa_port((struct sockaddr *)&ss);
    else
        listener_close(&l->lis[1]);
    *out = l;
    return FWX_S_OK;
}

fwx_result fwx__nft_pub_start(fwx_firewall *fw, const fwx_listen_spec *spec, struct fwx__nft_icpt **out)
{
    *out = NULL;
    const struct sockaddr *la = (const struct sockaddr *)&spec->address;
    if (spec->protocol != FWX_PROTOCOL_TCP || !fwx__sa_valid(la, fwx__sa_len(la)))
        return FWX_E_NOT_SUPPORTED;
    struct fwx__nft_icpt *l = icpt_new(fw);
    if (l == NULL)
        return FWX_E_OUTOFMEMORY;
    l->published = true;
    l->pub = *spec;
    int rc = listen_socket(l, &l->lis[0], la, false);
    if (rc != 0) {
        listeners_close(l);
        return fwx__result_from_errno(rc, FWX_E_BACKEND);
    }
    *out = l;
    return FWX_S_OK;
}

void fwx__nft_icpt_stop(struct fwx__nft_icpt *l)
{
    if (l == NULL)
        return;
    for (irelay *r = l->relays.next, *nx; r != &l->relays; r = nx) {
        nx = r->next;
        if (r->pump != NULL)
            fwx_pump_abort(r->pump); /* done() follows from the loop; detach r from l first */
        else if (r->connector != NULL)
            relay_free(r); /* cancels its connect */
    }
    listeners_close(l);
}
