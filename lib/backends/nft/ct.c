/*
 * fwx - conntrack events for the "nft" backend (see ct.h).
 *
 * Two netlink sockets, both made in the calling thread's network namespace at open:
 *  - the event socket joins NFNLGRP_CONNTRACK_NEW and _DESTROY, and _UPDATE when asked
 *    (fwx__ct_follow_updates: only a TCP entry's move to TIME_WAIT or CLOSE is reported, as
 *    FWX__CT_END), and is read on the loop (uv_poll, non-blocking, a bounded number of reads
 *    per wake-up);
 *  - the request socket sends IPCTNL_MSG_CT_DELETE for fwx__ct_kill (with an echo of the
 *    DESTROY for its counters) and IPCTNL_MSG_CT_GET for fwx__ct_get_counted. nfnetlink handles a
 *    request inside sendmsg, so the ack is already queued when sendto returns: no wait. It is a
 *    socket of its own because the kernel leaves the requester's socket out of the broadcast of
 *    the DESTROY event a delete causes, and because acks must not mix with events.
 *
 * The parser trusts no length: every netlink header and attribute length is checked against
 * what is left of its container before anything under it is read, fixed-size payloads must
 * have exactly their size, values are copied out with memcpy (no unaligned loads), unknown
 * attributes are skipped, and a message that does not fit is counted and dropped (the
 * attack catalog's rows 34-35 in doc/security.md: decoders die on lengths).
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/ct.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads per wake-up of the loop: the rest waits for the next iteration (poll is level-triggered). */
#define CT_READS_PER_WAKE 64
/* The event socket's receive buffer (SO_RCVBUFFORCE as root, else what SO_RCVBUF allows). */
#define CT_RCVBUF (4 * 1024 * 1024)
/* One datagram: ctnetlink events are well under a page; MSG_TRUNC tells if one was not. */
#define CT_BUF 65536

struct fwx__ct {
    uv_poll_t poll;
    uv_timer_t sweep;    /* the periodic reaping dump (see fwx__ct_set_sweep) */
    int handles_open;    /* freed when the last handle's close callback has run */
    uint64_t sweep_ms;
    uv_loop_t *loop;
    int fd;     /* events */
    int req_fd; /* kill requests */
    uint32_t seq;
    fwx__ct_cb cb;
    void *arg;
    uint32_t mark_value, mark_mask;
    fwx_log_fn log;
    void *log_arg;
    bool closing;
    fwx__ct_stats st;
    union {
        struct nlmsghdr align;
        unsigned char b[CT_BUF];
    } buf;
};

static void ct_log(fwx__ct *ct, fwx_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ct_log(fwx__ct *ct, fwx_log_level level, const char *fmt, ...)
{
    if (ct->log == NULL)
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "conntrack: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    ct->log(ct->log_arg, level, line);
}

/* ---- parsing --------------------------------------------------------------------------------- */

/* One level of attributes: tb[type] points at the payload (NULL if absent), tl[type] its length.
   Types above max are skipped. Returns -1 if a length does not fit what is left. */
#define CT_TB_MAX 32
_Static_assert(CTA_MAX <= CT_TB_MAX && CTA_TUPLE_MAX <= CT_TB_MAX && CTA_IP_MAX <= CT_TB_MAX &&
                   CTA_PROTO_MAX <= CT_TB_MAX && CTA_COUNTERS_MAX <= CT_TB_MAX && CTA_PROTOINFO_MAX <= CT_TB_MAX &&
                   CTA_PROTOINFO_TCP_MAX <= CT_TB_MAX,
               "CT_TB_MAX too small for the attribute tables");
static int attrs(const unsigned char *p, size_t len, const unsigned char *tb[CT_TB_MAX + 1], size_t tl[CT_TB_MAX + 1],
                 unsigned max)
{
    for (unsigned i = 0; i <= max; i++) {
        tb[i] = NULL;
        tl[i] = 0;
    }
    while (len > 0) {
        struct nlattr a;
        if (len < sizeof a)
            return -1; /* 1-3 stray bytes: the kernel pads to 4, never leaves a partial header */
        memcpy(&a, p, sizeof a);
        if (a.nla_len < NLA_HDRLEN || a.nla_len > len)
            return -1;
        unsigned type = a.nla_type & NLA_TYPE_MASK;
        if (type <= max) {
            tb[type] = p + NLA_HDRLEN;
            tl[type] = (size_t)a.nla_len - NLA_HDRLEN;
        }
        size_t step = NLA_ALIGN((size_t)a.nla_len);
        if (step > len)
            step = len; /* the last attribute's padding may be missing */
        p += step;
        len -= step;
    }
    return 0;
}

static int get_u16be(const unsigned char *p, size_t l, uint16_t *v)
{
    if (p == NULL || l != 2)
        return -1;
    memcpy(v, p, 2);
    *v = ntohs(*v);
    return 0;
}

static int get_u32be(const unsigned char *p, size_t l, uint32_t *v)
{
    if (p == NULL || l != 4)
        return -1;
    memcpy(v, p, 4);
    *v = ntohl(*v);
    return 0;
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* CTA_COUNTERS_*: the byte count (64-bit, or the old 32-bit form). Absent or odd: 0. */
static uint64_t counter_bytes(const unsigned char *p, size_t l, int *bad)
{
    const unsigned char *tb[CT_TB_MAX + 1];
    size_t tl[CT_TB_MAX + 1];
    if (p == NULL)
        return 0;
    if (attrs(p, l, tb, tl, CTA_COUNTERS_MAX) != 0) {
        *bad = 1;
        return 0;
    }
    if (tb[CTA_COUNTERS_BYTES] != NULL) {
        if (tl[CTA_COUNTERS_BYTES] != 8) {
            *bad = 1;
            return 0;
        }
        return be64(tb[CTA_COUNTERS_BYTES]);
    }
    uint32_t v32;
    if (tb[CTA_COUNTERS32_BYTES] != NULL) {
        if (get_u32be(tb[CTA_COUNTERS32_BYTES], tl[CTA_COUNTERS32_BYTES], &v32) != 0) {
            *bad = 1;
            return 0;
        }
        return v32;
    }
    return 0;
}

/* An address of `family` (AF_INET or AF_INET6) from its raw bytes in network order, port 0. */
static void set_ip(struct sockaddr_storage *ss, int family, const unsigned char *raw)
{
    memset(ss, 0, sizeof *ss);
    ss->ss_family = (sa_family_t)family;
    if (family == AF_INET)
        memcpy(&((struct sockaddr_in *)ss)->sin_addr, raw, 4);
    else
        memcpy(&((struct sockaddr_in6 *)ss)->sin6_addr, raw, 16);
}

/* A CTA_TUPLE_*: addresses of `family` and, for TCP/UDP, ports. *proto gets the IP protocol.
   Returns 0, 1 (well formed, not TCP/UDP: no ports to read), or -1. */
static int tuple(const unsigned char *p, size_t l, int family, uint8_t *proto, struct sockaddr_storage *src,
                 struct sockaddr_storage *dst)
{
    const unsigned char *tb[CT_TB_MAX + 1], *ip[CT_TB_MAX + 1], *pr[CT_TB_MAX + 1];
    size_t tl[CT_TB_MAX + 1], il[CT_TB_MAX + 1], pl[CT_TB_MAX + 1];
    if (p == NULL || attrs(p, l, tb, tl, CTA_TUPLE_MAX) != 0)
        return -1;
    if (tb[CTA_TUPLE_IP] == NULL || tb[CTA_TUPLE_PROTO] == NULL)
        return -1;
    if (attrs(tb[CTA_TUPLE_IP], tl[CTA_TUPLE_IP], ip, il, CTA_IP_MAX) != 0 ||
        attrs(tb[CTA_TUPLE_PROTO], tl[CTA_TUPLE_PROTO], pr, pl, CTA_PROTO_MAX) != 0)
        return -1;
    /* CTA_PROTO_NUM is a u8; the kernel's nla_put_u8 gives a 1-byte payload. */
    if (pr[CTA_PROTO_NUM] == NULL || pl[CTA_PROTO_NUM] != 1)
        return -1;
    *proto = pr[CTA_PROTO_NUM][0];
    /* Both addresses of the tuple's family, each of its exact size, and none of the other's. */
    if (family != AF_INET && family != AF_INET6)
        return -1;
    bool v4 = family == AF_INET;
    int at_src = v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, at_dst = v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST;
    int other_src = v4 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, other_dst = v4 ? CTA_IP_V6_DST : CTA_IP_V4_DST;
    size_t ip_len = v4 ? 4 : 16;
    if (ip[at_src] == NULL || il[at_src] != ip_len || ip[at_dst] == NULL || il[at_dst] != ip_len ||
        ip[other_src] != NULL || ip[other_dst] != NULL)
        return -1;
    set_ip(src, family, ip[at_src]);
    set_ip(dst, family, ip[at_dst]);
    if (*proto != IPPROTO_TCP && *proto != IPPROTO_UDP)
        return 1;
    uint16_t sp, dp;
    if (get_u16be(pr[CTA_PROTO_SRC_PORT], pl[CTA_PROTO_SRC_PORT], &sp) != 0 ||
        get_u16be(pr[CTA_PROTO_DST_PORT], pl[CTA_PROTO_DST_PORT], &dp) != 0)
        return -1;
    fwx__sa_set_port((struct sockaddr *)src, sp);
    fwx__sa_set_port((struct sockaddr *)dst, dp);
    return 0;
}

/* CTA_PROTOINFO (optional): the TCP state of CTA_PROTOINFO_TCP, if any. 0, or -1. */
static int tcp_state(const unsigned char *p, size_t l, uint8_t *state)
{
    const unsigned char *tb[CT_TB_MAX + 1], *tt[CT_TB_MAX + 1];
    size_t tl[CT_TB_MAX + 1], ttl[CT_TB_MAX + 1];
    *state = 0;
    if (p == NULL)
        return 0;
    if (attrs(p, l, tb, tl, CTA_PROTOINFO_MAX) != 0)
        return -1;
    if (tb[CTA_PROTOINFO_TCP] == NULL)
        return 0;
    if (attrs(tb[CTA_PROTOINFO_TCP], tl[CTA_PROTOINFO_TCP], tt, ttl, CTA_PROTOINFO_TCP_MAX) != 0)
        return -1;
    if (tt[CTA_PROTOINFO_TCP_STATE] == NULL)
        return 0;
    if (ttl[CTA_PROTOINFO_TCP_STATE] != 1)
        return -1;
    *state = tt[CTA_PROTOINFO_TCP_STATE][0];
    return 0;
}

int fwx__ct_parse(const void *msg, size_t len, fwx__ct_flow *f)
{
    struct nlmsghdr nh;
    struct nfgenmsg nf;
    if (msg == NULL || f == NULL || len < NLMSG_HDRLEN)
        return -1;
    memcpy(&nh, msg, sizeof nh);
    if (nh.nlmsg_len < NLMSG_HDRLEN || nh.nlmsg_len > len)
        return -1;
    if (NFNL_SUBSYS_ID(nh.nlmsg_type) != NFNL_SUBSYS_CTNETLINK)
        return 0;
    int event;
    switch (NFNL_MSG_TYPE(nh.nlmsg_type)) {
    case IPCTNL_MSG_CT_NEW:
        /* A new entry is flagged CREATE|EXCL; an update (or a GET's answer) is not: it counts
           only when a TCP entry has reached TIME_WAIT or CLOSE (decided below). */
        event = (nh.nlmsg_flags & NLM_F_CREATE) ? FWX__CT_NEW : FWX__CT_END;
        break;
    case IPCTNL_MSG_CT_DELETE:
        event = FWX__CT_DESTROY;
        break;
    default:
        return 0;
    }
    const unsigned char *p = (const unsigned char *)msg + NLMSG_HDRLEN;
    size_t l = nh.nlmsg_len - NLMSG_HDRLEN;
    if (l < NLMSG_ALIGN(sizeof nf))
        return -1;
    memcpy(&nf, p, sizeof nf);
    p += NLMSG_ALIGN(sizeof nf);
    l -= NLMSG_ALIGN(sizeof nf);
    if (nf.nfgen_family != AF_INET && nf.nfgen_family != AF_INET6)
        return -1;

    const unsigned char *tb[CT_TB_MAX + 1];
    size_t tl[CT_TB_MAX + 1];

    if (attrs(p, l, tb, tl, CTA_MAX) != 0)
        return -1;
    memset(f, 0, sizeof *f);
    uint8_t po = 0, pr = 0;
    struct sockaddr_storage reply_dst;
    int ro = tuple(tb[CTA_TUPLE_ORIG], tl[CTA_TUPLE_ORIG], nf.nfgen_family, &po, &f->src, &f->dst);
    int rr = tuple(tb[CTA_TUPLE_REPLY], tl[CTA_TUPLE_REPLY], nf.nfgen_family, &pr, &f->reply_src, &reply_dst);
    if (ro < 0 || rr < 0 || po != pr)
        return -1;
    if (ro == 1) {
        memset(f, 0, sizeof *f);
        return 0; /* ICMP and the rest: not ours */
    }
    f->protocol = po == IPPROTO_TCP ? FWX_PROTOCOL_TCP : FWX_PROTOCOL_UDP;
    if (tb[CTA_MARK] != NULL && get_u32be(tb[CTA_MARK], tl[CTA_MARK], &f->mark) != 0)
        return -1;
    int bad = 0;
    f->bytes_orig = counter_bytes(tb[CTA_COUNTERS_ORIG], tl[CTA_COUNTERS_ORIG], &bad);
    f->bytes_reply = counter_bytes(tb[CTA_COUNTERS_REPLY], tl[CTA_COUNTERS_REPLY], &bad);
    if (bad || tcp_state(tb[CTA_PROTOINFO], tl[CTA_PROTOINFO], &f->tcp_state) != 0)
        return -1;
    if (event == FWX__CT_END && (f->protocol != FWX_PROTOCOL_TCP || (f->tcp_state != TCP_CONNTRACK_TIME_WAIT &&
                                                                    f->tcp_state != TCP_CONNTRACK_CLOSE)))
        return 0; /* an update of no interest */
    return event;
}

/* ---- events on the loop ---------------------------------------------------------------------- */

static void handle(fwx__ct *ct, const unsigned char *p, size_t len)
{
    /* Each message's length is checked against what is left of the datagram before use. */
    while (len >= NLMSG_HDRLEN && !ct->closing) {
        struct nlmsghdr nh;
        memcpy(&nh, p, sizeof nh);
        if (nh.nlmsg_len < NLMSG_HDRLEN || nh.nlmsg_len > len) {
            ct->st.malformed++;
            return;
        }
        if (nh.nlmsg_type >= NLMSG_MIN_TYPE) {
            fwx__ct_flow f;
            int ev = fwx__ct_parse(p, nh.nlmsg_len, &f);
            if (ev < 0) {
                ct->st.malformed++;
            } else if (ev > 0) {
                ct->st.events++;
                if ((f.mark & ct->mark_mask) == ct->mark_value) {
                    ct->st.reported++;
                    ct->cb(ct->arg, ev, &f);
                }
            }
        }
        size_t step = NLMSG_ALIGN((size_t)nh.nlmsg_len);
        if (step > len)
            step = len;
        p += step;
        len -= step;
    }
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    fwx__ct *ct = h->data;
    (void)events;
    if (status < 0 && !ct->closing) {
        /* epoll reported an error on the socket (EPOLLERR: the kernel set sk_err, ENOBUFS after
           an overrun). libuv has stopped the handle and says UV_EBADF: start it again, and let
           the read below collect the error (which clears it) and the events still queued. */
        if (uv_poll_start(&ct->poll, UV_READABLE, on_readable) != 0)
            ct_log(ct, FWX_LOG_ERROR, "cannot restart reading events after a socket error: events stop");
    }
    for (int i = 0; i < CT_READS_PER_WAKE && !ct->closing; i++) {
        struct sockaddr_nl from;
        struct iovec iov = {ct->buf.b, sizeof ct->buf.b};
        struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t r = recvmsg(ct->fd, &m, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOBUFS) {
                /* The socket buffer was full: the kernel dropped events. Go on reading. */
                ct->st.overruns++;
                if ((ct->st.overruns & (ct->st.overruns - 1)) == 0) /* 1, 2, 4, 8, ...: no flood */
                    ct_log(ct, FWX_LOG_WARN, "events lost (socket buffer full, ENOBUFS); %llu time(s) so far",
                           (unsigned long long)ct->st.overruns);
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                ct_log(ct, FWX_LOG_WARN, "reading events: %s", strerror(errno));
            return;
        }
        if (m.msg_namelen < sizeof from || from.nl_pid != 0)
            continue; /* only the kernel speaks here */
        if (m.msg_flags & MSG_TRUNC) {
            ct->st.malformed++;
            continue;
        }
        handle(ct, ct->buf.b, (size_t)r);
    }
}

static size_t put(unsigned char *b, size_t cap, size_t at, uint16_t type, const void *data, size_t dl);

/* ---- open / close ---------------------------------------------------------------------------- */

/* Reads a sysctl of this thread's network namespace: its value, -1 if unreadable. */
static int sysctl_read(const char *path)
{
    char b[16] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    return n > 0 ? atoi(b) : -1;
}

/* Sets `path` to `want` if it reads `if_is`; returns the value it has afterwards (-1 unreadable). */
static int sysctl_ensure(const char *path, int if_is, int want)
{
    int v = sysctl_read(path);
    if (v != if_is)
        return v; /* -1 when unreadable */
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return v;
    char w[8];
    int wl = snprintf(w, sizeof w, "%d", want);
    bool ok = write(fd, w, (size_t)wl) == wl;
    close(fd);
    return ok ? want : v;
}

static int nl_socket(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
    if (fd < 0)
        return -1;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

fwx_result fwx__ct_open(uv_loop_t *loop, fwx__ct_cb cb, void *arg, fwx__ct **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || cb == NULL || out == NULL)
        return FWX_E_INVALIDARG;
    fwx__ct *ct = calloc(1, sizeof *ct);
    if (ct == NULL)
        return FWX_E_OUTOFMEMORY;
    ct->loop = loop;
    ct->cb = cb;
    ct->arg = arg;
    ct->fd = nl_socket();
    ct->req_fd = nl_socket();
    if (ct->fd < 0 || ct->req_fd < 0)
        goto unsupported;
    /* Events off in this namespace would mean silence: turn them on (2, the default, means "when
       someone listens", which we are about to do). */
    bool events_were_off = sysctl_ensure("/proc/sys/net/netfilter/nf_conntrack_events", 0, 1) == 1;
    unsigned groups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (setsockopt(ct->fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &groups[i], sizeof groups[i]) != 0)
            goto unsupported;
    int rb = CT_RCVBUF;
    if (setsockopt(ct->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) != 0)
        (void)setsockopt(ct->fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    int was = sysctl_read("/proc/sys/net/netfilter/nf_conntrack_acct");
    ct->st.accounting = sysctl_ensure("/proc/sys/net/netfilter/nf_conntrack_acct", 0, 1) == 1;
    ct->st.switched = (was == 0 && ct->st.accounting ? FWX__CT_SWITCHED_ACCT : 0) |
                      (events_were_off ? FWX__CT_SWITCHED_EVENTS : 0);
    if (uv_poll_init_socket(loop, &ct->poll, ct->fd) != 0)
        goto unsupported;
    ct->poll.data = ct;
    (void)uv_timer_init(loop, &ct->sweep); /* cannot fail on Linux */
    ct->sweep.data = ct;
    ct->handles_open = 2;
    fwx__ct_set_sweep(ct, FWX__CT_SWEEP_DEFAULT_MS);
    if (uv_poll_start(&ct->poll, UV_READABLE, on_readable) != 0) {
        /* The handle exists now: it is closed through the loop, which frees everything. */
        fwx__ct_close(ct);
        return FWX_E_NOT_SUPPORTED;
    }
    *out = ct;
    return FWX_S_OK;
unsupported:
    if (ct->fd >= 0)
        close(ct->fd);
    if (ct->req_fd >= 0)
        close(ct->req_fd);
    free(ct);
    return FWX_E_NOT_SUPPORTED;
}

static void on_closed(uv_handle_t *h)
{
    fwx__ct *ct = h->data;
    if (--ct->handles_open > 0)
        return;
    close(ct->fd);
    close(ct->req_fd);
    free(ct);
}

void fwx__ct_close(fwx__ct *ct)
{
    if (ct == NULL || ct->closing)
        return;
    ct->closing = true;
    uv_poll_stop(&ct->poll);
    uv_timer_stop(&ct->sweep);
    uv_close((uv_handle_t *)&ct->poll, on_closed);
    uv_close((uv_handle_t *)&ct->sweep, on_closed);
}

/* Reads (and drops) whatever answers are queued on the request socket; bounded. */
static void drain_requests(fwx__ct *ct)
{
    unsigned char rb[4096] __attribute__((aligned(4)));
    for (int i = 0; i < 64 && recv(ct->req_fd, rb, sizeof rb, MSG_DONTWAIT) > 0; i++)
        ;
}

/* Why a sweep: the kernel sends DESTROY when an entry is removed, and an entry whose timeout
   ran out is removed only when something looks at it: a packet of the same tuple, or the
   garbage collector, which on 6.x paces itself by the timeouts it sees (up to 60 s between
   runs when most entries are long-lived established TCP). A ctnetlink dump evicts every
   expired entry it walks past, before any filter; this one's mark filter (mask 0, value 1)
   matches nothing, so the kernel walks the table inside sendmsg and answers only DONE. */
static void sweep_now(fwx__ct *ct)
{
    union {
        struct nlmsghdr align;
        unsigned char b[64];
    } m;
    memset(&m, 0, sizeof m);
    size_t at = NLMSG_HDRLEN;
    struct nfgenmsg nf = {.nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0, .res_id = 0};
    memcpy(m.b + at, &nf, sizeof nf);
    at += NLMSG_ALIGN(sizeof nf);
    uint32_t val = htonl(1), mask = htonl(0);
    at = put(m.b, sizeof m.b, at, CTA_MARK, &val, 4);
    at = at ? put(m.b, sizeof m.b, at, CTA_MARK_MASK, &mask, 4) : 0;
    if (at == 0)
        return;
    struct nlmsghdr nh = {.nlmsg_len = (uint32_t)at,
                          .nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                          .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                          .nlmsg_seq = ++ct->seq};
    memcpy(m.b, &nh, sizeof nh);
    drain_requests(ct);
    struct sockaddr_nl k = {.nl_family = AF_NETLINK};
    if (sendto(ct->req_fd, m.b, at, 0, (struct sockaddr *)&k, sizeof k) == (ssize_t)at)
        ct->st.sweeps++;
    drain_requests(ct); /* DONE (or, on a kernel that ignored the filter, a bounded part of a dump) */
}

static void on_sweep(uv_timer_t *t)
{
    fwx__ct *ct = t->data;
    if (!ct->closing)
        sweep_now(ct);
}

void fwx__ct_set_sweep(fwx__ct *ct, uint64_t interval_ms)
{
    if (ct == NULL || ct->closing)
        return;
    ct->sweep_ms = interval_ms;
    uv_timer_stop(&ct->sweep);
    if (interval_ms > 0)
        (void)uv_timer_start(&ct->sweep, on_sweep, interval_ms, interval_ms);
}

void fwx__ct_set_mark_filter(fwx__ct *ct, uint32_t value, uint32_t mask)
{
    if (ct == NULL)
        return;
    ct->mark_mask = mask;
    ct->mark_value = value & mask;
}

void fwx__ct_set_log(fwx__ct *ct, fwx_log_fn log, void *arg)
{
    if (ct == NULL)
        return;
    ct->log = log;
    ct->log_arg = arg;
}

void fwx__ct_set_rcvbuf(fwx__ct *ct, int bytes)
{
    if (ct == NULL || bytes <= 0)
        return;
    if (setsockopt(ct->fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
        (void)setsockopt(ct->fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

void fwx__ct_get_stats(const fwx__ct *ct, fwx__ct_stats *out)
{
    if (ct == NULL || out == NULL)
        return;
    *out = ct->st;
}

/* ---- kill ------------------------------------------------------------------------------------ */

/* Appends one attribute (header + payload + padding) to b; returns the new length or 0 on overflow. */
static size_t put(unsigned char *b, size_t cap, size_t at, uint16_t type, const void *data, size_t dl)
{
    size_t total = NLA_ALIGN(NLA_HDRLEN + dl);
    if (at > cap || total > cap - at || NLA_HDRLEN + dl > UINT16_MAX)
        return 0;
    struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + dl), .nla_type = type};
    memset(b + at, 0, total);
    memcpy(b + at, &a, sizeof a);
    if (dl > 0)
        memcpy(b + at + NLA_HDRLEN, data, dl);
    return at + total;
}

/* Closes a nest opened at `start`: its length becomes everything written since. */
static void nest_end(unsigned char *b, size_t start, size_t end)
{
    struct nlattr a;
    memcpy(&a, b + start, sizeof a);
    a.nla_len = (uint16_t)(end - start);
    memcpy(b + start, &a, sizeof a);
}

static int addr_port(const struct sockaddr_storage *ss, const void **addr, size_t *alen, uint16_t *port_be)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        *addr = &s->sin_addr;
        *alen = 4;
        *port_be = s->sin_port;
        return AF_INET;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        *addr = &s->sin6_addr;
        *alen = 16;
        *port_be = s->sin6_port;
        return AF_INET6;
    }
    return -1;
}

static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const void *aa = NULL, *ba = NULL;
    size_t al = 0, bl = 0;
    uint16_t ap = 0, bp = 0;
    int af = addr_port(a, &aa, &al, &ap), bf = addr_port(b, &ba, &bl, &bp);
    return af >= 0 && af == bf && al == bl && ap == bp && memcmp(aa, ba, al) == 0;
}

fwx_result fwx__ct_follow_updates(fwx__ct *ct)
{
    unsigned g = NFNLGRP_CONNTRACK_UPDATE;
    if (ct == NULL || ct->closing)
        return FWX_E_INVALIDARG;
    return setsockopt(ct->fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) == 0 ? FWX_S_OK : FWX_E_NOT_SUPPORTED;
}

fwx_result fwx__ct_kill(fwx__ct *ct, const fwx__ct_flow *f)
{
    uint64_t o, r;
    return fwx__ct_kill_counted(ct, f, &o, &r);
}

/* One request about f's entry on the request socket: DELETE (with an echo of the DESTROY) or
   GET; the entry's counters from the answer, the ack's verdict. */
static fwx_result ct_request(fwx__ct *ct, const fwx__ct_flow *f, int msg, bool by_reply, fwx__ct_flow *found,
                             uint64_t *bytes_orig, uint64_t *bytes_reply)
{
    *bytes_orig = *bytes_reply = 0;
    if (ct == NULL || f == NULL || ct->closing)
        return FWX_E_INVALIDARG;
    if (f->protocol != FWX_PROTOCOL_TCP && f->protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    const void *sa, *da;
    size_t sl, dl;
    uint16_t sp, dp;
    int fam = addr_port(&f->src, &sa, &sl, &sp);
    if (fam < 0 || addr_port(&f->dst, &da, &dl, &dp) != fam || sp == 0 || dp == 0)
        return FWX_E_INVALIDARG;

    union {
        struct nlmsghdr align;
        unsigned char b[256];
    } m;
    memset(&m, 0, sizeof m);
    size_t at = NLMSG_HDRLEN;
    struct nfgenmsg nf = {.nfgen_family = (uint8_t)fam, .version = NFNETLINK_V0, .res_id = 0};
    memcpy(m.b + at, &nf, sizeof nf);
    at += NLMSG_ALIGN(sizeof nf);
    size_t t0 = at, i0, p0;
    uint8_t proto = f->protocol == FWX_PROTOCOL_TCP ? IPPROTO_TCP : IPPROTO_UDP;
    at = put(m.b, sizeof m.b, at, (by_reply ? CTA_TUPLE_REPLY : CTA_TUPLE_ORIG) | NLA_F_NESTED, NULL, 0);
    i0 = at;
    at = at ? put(m.b, sizeof m.b, at, CTA_TUPLE_IP | NLA_F_NESTED, NULL, 0) : 0;
    at = at ? put(m.b, sizeof m.b, at, fam == AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, sa, sl) : 0;
    at = at ? put(m.b, sizeof m.b, at, fam == AF_INET ? CTA_IP_V4_DST : CTA_IP_V6_DST, da, dl) : 0;
    if (at)
        nest_end(m.b, i0, at);
    p0 = at;
    at = at ? put(m.b, sizeof m.b, at, CTA_TUPLE_PROTO | NLA_F_NESTED, NULL, 0) : 0;
    at = at ? put(m.b, sizeof m.b, at, CTA_PROTO_NUM, &proto, 1) : 0;
    at = at ? put(m.b, sizeof m.b, at, CTA_PROTO_SRC_PORT, &sp, 2) : 0;
    at = at ? put(m.b, sizeof m.b, at, CTA_PROTO_DST_PORT, &dp, 2) : 0;
    if (at == 0)
        return FWX_E_FAIL; /* cannot happen: 256 bytes hold an IPv6 tuple */
    nest_end(m.b, p0, at);
    nest_end(m.b, t0, at);
    struct nlmsghdr nh = {.nlmsg_len = (uint32_t)at,
                          .nlmsg_type = (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | msg),
                          .nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK |
                                                    (msg == IPCTNL_MSG_CT_DELETE ? NLM_F_ECHO : 0)),
                          .nlmsg_seq = ++ct->seq};
    memcpy(m.b, &nh, sizeof nh);

    /* Drop anything a previous call left (an ack that came after we gave up). */
    drain_requests(ct);
    unsigned char rb[8192] __attribute__((aligned(4)));
    struct sockaddr_nl k = {.nl_family = AF_NETLINK};
    if (sendto(ct->req_fd, m.b, at, 0, (struct sockaddr *)&k, sizeof k) != (ssize_t)at) {
        ct_log(ct, FWX_LOG_WARN, "%s: sending the request failed: %s", msg == IPCTNL_MSG_CT_DELETE ? "kill" : "get",
               strerror(errno));
        return FWX_E_FAIL;
    }
    /* The ack is normally queued already (after the echoed event); wait at most 100 ms
       (bounded) if it is not. */
    for (int tries = 0; tries < 6; tries++) {
        ssize_t r = recv(ct->req_fd, rb, sizeof rb, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                break;
            struct pollfd pf = {ct->req_fd, POLLIN, 0};
            if (poll(&pf, 1, 100) <= 0)
                break;
            continue;
        }
        size_t len = (size_t)r;
        const unsigned char *p = rb;
        while (len >= NLMSG_HDRLEN) {
            struct nlmsghdr h;
            memcpy(&h, p, sizeof h);
            if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len)
                break;
            fwx__ct_flow echoed;
            memset(&echoed, 0, sizeof echoed);
            int ev = h.nlmsg_type != NLMSG_ERROR ? fwx__ct_parse(p, h.nlmsg_len, &echoed) : -1;
            /* a GET's answer is an entry message without CREATE: parsed (0 or END) all the same */
            bool answer = msg == IPCTNL_MSG_CT_DELETE ? ev == FWX__CT_DESTROY : ev >= 0;
            if (answer && echoed.protocol == f->protocol &&
                (by_reply ? same_endpoint(&echoed.reply_src, &f->src) : same_endpoint(&echoed.src, &f->src))) {
                /* the echo of our delete (final counters), or the answer to our get */
                *bytes_orig = echoed.bytes_orig;
                *bytes_reply = echoed.bytes_reply;
                if (found != NULL) {
                    *found = echoed;
                    found->protocol = f->protocol; /* marks it found */
                }
            }
            if (h.nlmsg_type == NLMSG_ERROR && h.nlmsg_seq == ct->seq &&
                h.nlmsg_len >= NLMSG_HDRLEN + sizeof(int)) {
                int err;
                memcpy(&err, p + NLMSG_HDRLEN, sizeof err);
                if (err == 0)
                    return found == NULL || found->protocol != 0 ? FWX_S_OK : FWX_E_NOT_FOUND;
                if (err == -ENOENT)
                    return FWX_E_NOT_FOUND;
                ct_log(ct, FWX_LOG_WARN, "%s: the kernel refused: %s", msg == IPCTNL_MSG_CT_DELETE ? "kill" : "get",
                       strerror(-err));
                return FWX_E_FAIL;
            }
            size_t step = NLMSG_ALIGN((size_t)h.nlmsg_len);
            if (step > len)
                step = len;
            p += step;
            len -= step;
        }
    }
    ct_log(ct, FWX_LOG_WARN, "%s: no answer from the kernel", msg == IPCTNL_MSG_CT_DELETE ? "kill" : "get");
    return FWX_E_FAIL;
}

fwx_result fwx__ct_kill_counted(fwx__ct *ct, const fwx__ct_flow *f, uint64_t *bytes_orig, uint64_t *bytes_reply)
{
    return ct_request(ct, f, IPCTNL_MSG_CT_DELETE, false, NULL, bytes_orig, bytes_reply);
}

fwx_result fwx__ct_get_counted(fwx__ct *ct, const fwx__ct_flow *f, uint64_t *bytes_orig, uint64_t *bytes_reply)
{
    return ct_request(ct, f, IPCTNL_MSG_CT_GET, false, NULL, bytes_orig, bytes_reply);
}

fwx_result fwx__ct_lookup_reply(fwx__ct *ct, int32_t protocol, const struct sockaddr *reply_src,
                                const struct sockaddr *reply_dst, fwx__ct_flow *out)
{
    if (out == NULL || reply_src == NULL || reply_dst == NULL)
        return FWX_E_POINTER;
    memset(out, 0, sizeof *out);
    fwx__ct_flow q;
    memset(&q, 0, sizeof q);
    q.protocol = protocol;
    if (reply_src->sa_family != reply_dst->sa_family ||
        (reply_src->sa_family != AF_INET && reply_src->sa_family != AF_INET6))
        return FWX_E_INVALIDARG;
    size_t sl = reply_src->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    memcpy(&q.src, reply_src, sl);
    memcpy(&q.dst, reply_dst, sl);
    uint64_t o, r;
    return ct_request(ct, &q, IPCTNL_MSG_CT_GET, true, out, &o, &r);
}
