/*
 * fwx - the "nft" backend's UDP interception: UDP flows the core wants in user mode (a data
 * filter attached or expected, FWX_FLAG_NO_KERNEL_MODE, hooked events, a filter-bound protocol
 * of the policy) carried by fwx, through the connection's data filters (lib/backends/usermode/dgram.c,
 * the same datagram path the proxy backend uses).
 *
 * How datagrams get here: the same REDIRECT as TCP (rules.h: the user4/user6 rule and the
 * compiled intercept chain name `meta l4proto { tcp, udp }`), to a UDP socket bound on the
 * same port number as the TCP interception listener. REDIRECT rather than TPROXY for the
 * reasons intercept.c gives for TCP (no ip rule, no local route table in the gateway
 * namespace, one kind of rule for both protocols). What REDIRECT costs for UDP: a UDP socket
 * cannot read the original destination back (SO_ORIGINAL_DST is TCP only, and
 * IP_RECVORIGDSTADDR reports the address after NAT), so the first datagram of each flow asks
 * conntrack for the entry whose reply tuple is <gateway address:port> -> <client> (ct.c,
 * fwx__ct_lookup_reply); the gateway address comes from IP_PKTINFO. Replies leave the same
 * socket from that address to the client, and conntrack's reverse NAT gives them the original
 * destination as source, so the client sees its server answer.
 *
 * Each flow (one client address:port): admitted through the core (fwx_firewall_admit: a
 * user-mode permission or a bound/redirect port, data filters attached by then), or else a
 * primary connection of the client's NAT session (fwx_Udp_Destination; the policy decides and
 * handlers attach their filters). Upstream: a connected UDP socket of the gateway's, marked
 * FWX__NFT_OWN_MARK. With data filters, fwx_dgram_start (fwx/pump.h) runs them (oversized datagrams are
 * dropped and counted there); without, the datagrams are relayed as they are. A flow ends when
 * it has been idle for the firewall's timeout (fwx_firewall_timeout_ms, FWX_FLAG_TIMEOUT's
 * period, as the proxy backend's UDP flows) and a second, or at stop. A primary flow holds
 * its client's NAT session (nft.c, fwx__nft_session_hold) rather than owning it: the kernel
 * flows its grants admitted (a TFTP transfer) hold it too, so the flow's end does not cut
 * them. One socket per family, each on its TCP listener's port number (IPv6: IPV6_PKTINFO for
 * the gateway address, the original destination from conntrack as for IPv4).
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"
#include "backends/nft/ct.h"
#include "util/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define UDP_BUF 65536
#define FWX__NFT_UDP_IDLE_GRACE_MS 1000

typedef struct uflow {
    struct uflow *next, *prev;
    struct fwx__nft_udp *u;
    struct sockaddr_storage client; /* the client's address:port (side 0) */
    struct sockaddr_storage local;  /* the gateway address:port the client's datagrams reached */
    struct sockaddr_storage target; /* where the datagrams go (side 1) */
    IFWXConnection *conn;
    struct fwx__nft_sess *us; /* the client's NAT session, held (a primary flow), else NULL */
    uv_udp_t up;
    uv_timer_t idle;
    fwx_dgram *dg;
    int handles;
    bool closing;
} uflow;

struct fwx__nft_udp {
    fwx_firewall *fw;
    int fd;
    int family; /* AF_INET or AF_INET6: one socket per family, as the TCP listener */
    uv_poll_t poll;
    uint16_t port;
    uint64_t idle_ms;
    uflow flows; /* list head */
    size_t n_flows;
    bool stopping, closed;
    uint8_t buf[UDP_BUF];
};

static void maybe_free(struct fwx__nft_udp *u)
{
    if (u->closed && u->n_flows == 0)
        free(u);
}

/* ---- sending ------------------------------------------------------------------------------- */

/* Control messages big enough for either family's packet info. */
typedef union pktinfo_buf {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(struct in6_pktinfo))];
} pktinfo_buf;

/* To the client, from the address its datagrams reached (conntrack then gives the reply the
   original destination as source). */
static int send_client(uflow *f, const uint8_t *data, size_t n)
{
    pktinfo_buf cm;
    memset(&cm, 0, sizeof cm);
    struct iovec iov = {(void *)data, n};
    bool v6 = f->local.ss_family == AF_INET6;
    size_t pl = v6 ? sizeof(struct in6_pktinfo) : sizeof(struct in_pktinfo);
    struct msghdr m = {&f->client, fwx__sa_len((struct sockaddr *)&f->client), &iov, 1, cm.b, CMSG_SPACE(pl), 0};
    union {
        struct in_pktinfo v4;
        struct in6_pktinfo v6;
    } pi;
    memset(&pi, 0, sizeof pi);
    if (v6)
        pi.v6.ipi6_addr = ((const struct sockaddr_in6 *)&f->local)->sin6_addr;
    else
        pi.v4.ipi_spec_dst = ((const struct sockaddr_in *)&f->local)->sin_addr;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_len = CMSG_LEN(pl);
    c->cmsg_level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
    c->cmsg_type = v6 ? IPV6_PKTINFO : IP_PKTINFO;
    memcpy(CMSG_DATA(c), &pi, pl);
    ssize_t r;
    do
        r = sendmsg(f->u->fd, &m, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int send_up(uflow *f, const uint8_t *data, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int r = uv_udp_try_send(&f->up, &b, 1, NULL);
    return r < 0 ? r : 0;
}

static int dg_send(void *arg, int32_t side, const uint8_t *data, size_t n)
{
    uflow *f = arg;
    if (f->closing)
        return UV_ECANCELED;
    return side == FWX_DGRAM_INTERNAL ? send_client(f, data, n) : send_up(f, data, n);
}

/* ---- flows --------------------------------------------------------------------------------- */

static void flow_handle_closed(uv_handle_t *h)
{
    uflow *f = h->data;
    if (--f->handles > 0)
        return;
    struct fwx__nft_udp *u = f->u;
    free(f);
    u->n_flows--;
    maybe_free(u);
}

static void flow_close(uflow *f)
{
    if (f->closing)
        return;
    f->closing = true;
    f->prev->next = f->next;
    f->next->prev = f->prev;
    fwx_dgram_stop(f->dg); /* before the connection ends: the filters' pending Recvs fail first */
    f->dg = NULL;
    if (f->conn != NULL)
        fwx_connection_close(f->conn); /* ConnectionTerminating, then our reference goes */
    f->conn = NULL;
    fwx__nft_session_release(f->us);
    f->us = NULL;
    f->handles = 2;
    uv_close((uv_handle_t *)&f->up, flow_handle_closed);
    uv_close((uv_handle_t *)&f->idle, flow_handle_closed);
}

static void on_idle(uv_timer_t *t) { flow_close(t->data); }

/* The core ended the connection (Kill, the session's end): the flow goes with it. */
static bool flow_ended(uflow *f)
{
    fwx_object_info ci = {.struct_size = sizeof ci};
    if (f->conn == NULL || fwx_connection_info(f->conn, &ci) != FWX_S_OK || !(ci.flags & FWX_CONNECTION_TERMINATED))
        return false;
    flow_close(f);
    return true;
}

static void up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    uflow *f = h->data;
    (void)suggested;
    buf->base = (char *)f->u->buf;
    buf->len = sizeof f->u->buf;
}

/* A datagram from the target: through the filters, or straight back to the client. */
static void on_up_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
    uflow *f = h->data;
    if (n <= 0 || from == NULL || f->closing || (flags & UV_UDP_PARTIAL) || flow_ended(f))
        return;
    uv_timer_again(&f->idle);
    if (f->dg != NULL) {
        (void)fwx_dgram_input(f->dg, FWX_DGRAM_EXTERNAL, (const uint8_t *)buf->base, (size_t)n);
    } else {
        fwx_connection_count_bytes(f->conn, 0, (uint64_t)n);
        (void)send_client(f, (const uint8_t *)buf->base, (size_t)n);
    }
}

static void flow_input(uflow *f, const uint8_t *data, size_t n)
{
    if (flow_ended(f))
        return;
    uv_timer_again(&f->idle);
    if (f->dg != NULL) {
        (void)fwx_dgram_input(f->dg, FWX_DGRAM_INTERNAL, data, n);
    } else {
        fwx_connection_count_bytes(f->conn, (uint64_t)n, 0);
        (void)send_up(f, data, n);
    }
}

/* The flow's core connection: a user-mode grant's admission, or else a primary connection of
   the client's NAT session. false: refused (the core logged why). */
static bool flow_admit(uflow *f, const struct sockaddr_storage *orig)
{
    struct fwx__nft_udp *u = f->u;
    const struct sockaddr *cl = (const struct sockaddr *)&f->client, *o = (const struct sockaddr *)orig;
    f->target = *orig;
    bool port_grant = fwx__nft_user_port_target(u->fw, FWX_PROTOCOL_UDP, o, &f->target);
    fwx_flow flow = {sizeof flow, FWX_PROTOCOL_UDP, cl, fwx__sa_len(cl), o, fwx__sa_len(o)};
    fwx_result hr = fwx_firewall_admit(u->fw, &flow, &f->conn);
    if (hr == FWX_S_OK)
        return true;
    f->conn = NULL;
    if (hr != FWX_E_NOT_FOUND || port_grant)
        return false;
    if ((f->us = fwx__nft_session_hold(u->fw, cl)) == NULL)
        return false;
    fwx_connection_params cp;
    memset(&cp, 0, sizeof cp);
    cp.struct_size = sizeof cp;
    cp.protocol = FWX_PROTOCOL_UDP;
    cp.event = fwx_Udp_Destination;
    cp.external_peer = o;
    cp.external_peer_len = fwx__sa_len(o);
    if (FWX_FAILED(fwx_connection_open(fwx__nft_session(f->us), &cp, &f->conn))) {
        f->conn = NULL;
        return false;
    }
    /* The client's own port, for a filter that scopes an answer to it (TFTP). */
    (void)fwx_connection_set_internal_peer(f->conn, cl, fwx__sa_len(cl));
    return true;
}

static void flow_new(struct fwx__nft_udp *u, const struct sockaddr_storage *from, const struct sockaddr_storage *local,
                     const uint8_t *data, size_t n)
{
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    fwx__ct *ct = fwx__nft_ct(u->fw);
    fwx__ct_flow cf;
    fwx_result hr = ct != NULL ? fwx__ct_lookup_reply(ct, FWX_PROTOCOL_UDP, (const struct sockaddr *)local,
                                                      (const struct sockaddr *)from, &cf)
                               : FWX_E_NOT_SUPPORTED;
    if (FWX_FAILED(hr) || cf.dst.sa.sa_family != u->family) {
        /* Not a redirected datagram (someone sent to the port itself), or no conntrack. */
        fwx_firewall_log(u->fw, FWX_LOG_DEBUG, "backend \"nft\": UDP %s -> %s: no original destination (%s): dropped",
                         fwx__sa_fmt((const struct sockaddr *)from, a), fwx__sa_fmt((const struct sockaddr *)local, b),
                         fwx_strerror(hr));
        return;
    }
    if (fwx__nft_is_listener(u->fw, &cf.dst.sa)) {
        fwx_firewall_log(u->fw, FWX_LOG_WARN, "backend \"nft\": UDP %s -> %s is fwx's own listener: refused",
                         fwx__sa_fmt((const struct sockaddr *)from, a), fwx__sa_fmt(&cf.dst.sa, b));
        return;
    }
    uflow *f = calloc(1, sizeof *f);
    if (f == NULL)
        return;
    f->u = u;
    f->client = *from;
    f->local = *local;
    uv_loop_t *loop = fwx_firewall_loop(u->fw);
    struct sockaddr_storage orig; /* the flow keeps it whole (f->target) */
    fwx__sa_get(&orig, &cf.dst);
    if (!flow_admit(f, &orig)) {
        fwx__nft_session_release(f->us);
        free(f);
        return;
    }
    /* The timer never fails to initialise; without a socket the flow is refused. */
    uv_timer_init(loop, &f->idle);
    f->idle.data = f;
    f->up.data = f;
    int urc = uv_udp_init_ex(loop, &f->up, (unsigned)u->family);
    if (urc != 0) {
        fwx_firewall_log(u->fw, FWX_LOG_WARN, "backend \"nft\": UDP %s: no upstream socket: %s",
                         fwx__sa_fmt((const struct sockaddr *)from, a), uv_strerror(urc));
        fwx_connection_close(f->conn);
        fwx__nft_session_release(f->us);
        f->handles = 1;
        u->n_flows++; /* flow_handle_closed counts it down */
        uv_close((uv_handle_t *)&f->idle, flow_handle_closed);
        return;
    }
    /* In the list from here: flow_close undoes everything. */
    f->next = u->flows.next;
    f->prev = &u->flows;
    f->next->prev = f;
    u->flows.next = f;
    u->n_flows++;
    uv_os_fd_t ufd;
    uint32_t mark = FWX__NFT_OWN_MARK;
    int rc = uv_fileno((uv_handle_t *)&f->up, &ufd);
    if (rc == 0)
        (void)setsockopt(ufd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
    if (rc == 0)
        rc = uv_udp_connect(&f->up, (const struct sockaddr *)&f->target);
    if (rc == 0)
        rc = uv_udp_recv_start(&f->up, up_alloc, on_up_recv);
    if (rc != 0) {
        fwx_firewall_log(u->fw, FWX_LOG_WARN, "backend \"nft\": UDP %s -> %s: upstream: %s",
                         fwx__sa_fmt((const struct sockaddr *)from, a), fwx__sa_fmt((const struct sockaddr *)&f->target, b),
                         uv_strerror(rc));
        flow_close(f);
        return;
    }
    /* The gateway's address toward the target: what a filter hands out to be reached at. */
    struct sockaddr_storage self;
    int sl = sizeof self;
    if (uv_udp_getsockname(&f->up, (struct sockaddr *)&self, &sl) == 0)
        (void)IFWXConnection_SetSocketName(f->conn, (struct sockaddr *)&self, (uint32_t)sl);
    uv_timer_start(&f->idle, on_idle, u->idle_ms, u->idle_ms);
    hr = fwx_dgram_start(loop, f->conn, (const struct sockaddr *)&f->client, fwx__sa_len((const struct sockaddr *)&f->client),
                         (const struct sockaddr *)&f->target, fwx__sa_len((const struct sockaddr *)&f->target), dg_send, f,
                         &f->dg);
    if (FWX_FAILED(hr)) {
        f->dg = NULL;
        flow_close(f); /* logged by the datagram path */
        return;
    }
    fwx_firewall_log(u->fw, FWX_LOG_DEBUG, "backend \"nft\": UDP %s -> %s carried in user mode%s",
                     fwx__sa_fmt((const struct sockaddr *)from, a), fwx__sa_fmt((const struct sockaddr *)&f->target, b),
                     f->dg != NULL ? " through its data filters" : "");
    flow_input(f, data, n);
}

/* ---- the listening socket ------------------------------------------------------------------ */

static uflow *flow_find(struct fwx__nft_udp *u, const struct sockaddr *from)
{
    for (uflow *f = u->flows.next; f != &u->flows; f = f->next)
        if (fwx__sa_same_endpoint((const struct sockaddr *)&f->client, from))
            return f;
    return NULL;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct fwx__nft_udp *u = h->data;
    if (status < 0 || !(events & UV_READABLE) || u->stopping)
        return;
    /* A bounded batch per wakeup, so one busy client cannot hold the loop. */
    for (int i = 0; i < 64 && !u->stopping; i++) {
        struct sockaddr_storage from;
        pktinfo_buf cm;
        struct iovec iov = {u->buf, sizeof u->buf};
        struct msghdr m = {&from, sizeof from, &iov, 1, cm.b, sizeof cm.b, 0};
        ssize_t n = recvmsg(u->fd, &m, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN, or an error the next datagram will not have */
        }
        if (n == 0 || (m.msg_flags & MSG_TRUNC) || from.ss_family != u->family ||
            m.msg_namelen < fwx__sa_len((const struct sockaddr *)&from))
            continue; /* zero-length datagrams are not carried (dgram.c) */
        struct sockaddr_storage local;
        memset(&local, 0, sizeof local);
        local.ss_family = (sa_family_t)u->family;
        fwx__sa_set_port((struct sockaddr *)&local, u->port);
        bool have_local = false;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
            if (u->family == AF_INET && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                struct in_pktinfo pi;
                memcpy(&pi, CMSG_DATA(c), sizeof pi);
                ((struct sockaddr_in *)&local)->sin_addr = pi.ipi_addr;
                have_local = true;
            } else if (u->family == AF_INET6 && c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                struct in6_pktinfo pi;
                memcpy(&pi, CMSG_DATA(c), sizeof pi);
                if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr))
                    continue; /* a scoped address: the permission sets cannot name it (nft.c ip_text) */
                ((struct sockaddr_in6 *)&local)->sin6_addr = pi.ipi6_addr;
                have_local = true;
            }
        if (!have_local)
            continue;
        uflow *f = flow_find(u, (const struct sockaddr *)&from);
        if (f != NULL)
            flow_input(f, u->buf, (size_t)n);
        else
            flow_new(u, &from, &local, u->buf, (size_t)n);
    }
}

static void poll_closed(uv_handle_t *h)
{
    struct fwx__nft_udp *u = h->data;
    close(u->fd);
    u->closed = true;
    maybe_free(u);
}

fwx_result fwx__nft_udp_start(fwx_firewall *fw, int family, uint16_t port, struct fwx__nft_udp **out)
{
    *out = NULL;
    if (port == 0 || (family != AF_INET && family != AF_INET6))
        return FWX_E_INVALIDARG;
    struct fwx__nft_udp *u = calloc(1, sizeof *u);
    if (u == NULL)
        return FWX_E_OUTOFMEMORY;
    u->fw = fw;
    u->family = family;
    u->port = port;
    /* A second longer than a timed permission: one a filter opened while handling the flow's
       last datagram (a TFTP request's) expires by itself, and says so, before the flow's end
       can end its session (which would withdraw it a moment earlier as "session ended"). */
    u->idle_ms = (uint64_t)fwx_firewall_timeout_ms(fw) + FWX__NFT_UDP_IDLE_GRACE_MS;
    u->flows.next = u->flows.prev = &u->flows;
    u->fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = (sa_family_t)family; /* the wildcard address, as the TCP listener (intercept.c) */
    fwx__sa_set_port((struct sockaddr *)&any, port);
    bool opts = family == AF_INET ? setsockopt(u->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0
                                  : setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0 &&
                                        setsockopt(u->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0;
    if (u->fd < 0 || !opts || bind(u->fd, (struct sockaddr *)&any, fwx__sa_len((struct sockaddr *)&any)) != 0) {
        fwx_result hr = u->fd >= 0 && errno == EADDRINUSE ? FWX_E_ADDRINUSE : FWX_E_BACKEND;
        if (u->fd >= 0)
            close(u->fd);
        free(u);
        return hr;
    }
    if (uv_poll_init(fwx_firewall_loop(fw), &u->poll, u->fd) != 0) {
        close(u->fd);
        free(u);
        return FWX_E_BACKEND;
    }
    u->poll.data = u;
    if (uv_poll_start(&u->poll, UV_READABLE, on_readable) != 0) {
        u->stopping = true;
        uv_close((uv_handle_t *)&u->poll, poll_closed);
        return FWX_E_BACKEND;
    }
    uv_unref((uv_handle_t *)&u->poll); /* must not keep the host's loop alive by itself */
    *out = u;
    return FWX_S_OK;
}

void fwx__nft_udp_stop(struct fwx__nft_udp *u)
{
    if (u == NULL)
        return;
    u->stopping = true;
    while (u->flows.next != &u->flows)
        flow_close(u->flows.next);
    uv_close((uv_handle_t *)&u->poll, poll_closed);
}
