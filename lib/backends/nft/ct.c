/*
 * fwx - conntrack events for the "nft" backend (see ct.h), on libnetfilter_conntrack and libmnl.
 *
 * Two netlink sockets, both made in the calling thread's network namespace at open:
 *  - the event socket joins NFNLGRP_CONNTRACK_NEW and _DESTROY, and _UPDATE when asked
 *    (fwx__ct_follow_updates: only a TCP entry's move to TIME_WAIT or CLOSE is reported, as
 *    FWX__CT_END), and is read on the loop (uv_poll, non-blocking, up to CT_BATCH datagrams per
 *    recvmmsg, a bounded number of reads per wake-up; while events keep coming, read every
 *    CT_PACE_MS instead of on each one).
 *    fwx__ct_set_mark_filter attaches libnetfilter_conntrack's socket filter
 *    (nfct_filter_attach: a classic BPF program the kernel runs on each event before queueing
 *    it), so an event of a flow without fwx's mark never reaches this process: no wake-up, no
 *    copy, no parse. Events are still checked against the mark here (a kernel without socket
 *    filters, and so that the two never disagree).
 *  - the request socket sends IPCTNL_MSG_CT_DELETE for fwx__ct_kill (with an echo of the
 *    DESTROY for its counters), IPCTNL_MSG_CT_GET for fwx__ct_get_counted and
 *    fwx__ct_lookup_reply, and the sweep's empty dump. nfnetlink handles a request inside
 *    sendmsg, so the answer and the ack are already queued when sendto returns: no wait, and
 *    one recvmmsg reads both (a request is a sendto and a recvmmsg). It is a socket of its
 *    own because the kernel leaves the requester's socket out of the broadcast of the DESTROY
 *    event a delete causes, and because acks must not mix with events.
 *
 * Requests are built by nfct_nlmsg_build. Events (and the answers to requests) are read by
 * fwx__ct_parse, one pass over the attributes without the library ("reading an entry" below).
 *
 * Namespace-wide settings (net.netfilter.nf_conntrack_acct, nf_conntrack_events) are switched
 * on at open when off, and switched back at close by the last fwx instance of the namespace
 * that uses them: see "settings" below.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/ct.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Datagrams per read (recvmmsg): a burst of events costs one system call per CT_BATCH, and a
   read that returns fewer says the queue is empty (no read just to see EAGAIN). */
#define CT_BATCH 16
/* Reads per wake-up of the loop: the rest waits for the next iteration (poll is level-triggered). */
#define CT_READS_PER_WAKE 8
/* Pacing: a wake-up that found events stops watching the socket and reads it again CT_PACE_MS
   later, as long as each read finds more. Waking fwx for every event cost the CPU that makes the
   events (the one forwarding the packets) a cross-CPU wake-up each: at 10,000 new flows a second
   the kernel's NAT lost about a fifth of its connection rate to a listener that read every event
   as it came, and a few percent to one that read them every millisecond (bench/README.md, issue
   13, part 4). fwx's own wake-up (epoll_wait's sleep and return, the timer) was then a third of
   its CPU per flow on this VM; reading every 4 ms instead of every 1 ms takes about 40 events per
   wake-up at that rate instead of 10 (issue 13, part 6). The first event after a quiet spell is
   read at once; the ones behind it wait at most this long. */
#define CT_PACE_MS 4
/* The event socket's receive buffer (SO_RCVBUFFORCE as root, else what SO_RCVBUF allows). */
#define CT_RCVBUF (4 * 1024 * 1024)
/* One datagram: a ctnetlink event is one entry, well under 1 KiB; a longer one is truncated by
   the kernel (MSG_TRUNC), refused and logged. */
#define CT_DGRAM 8192
/* The sweep's budget: a walk that took W microseconds is followed by the next one no sooner
   than W milliseconds later (a thousandth of one CPU), however short the interval asked. The
   walk costs time in proportion to the namespace's whole table (about 175 ns an entry here:
   80,000 entries, 14 ms): at the default 2 s a busy gateway's sweeps were a tenth of fwx's CPU
   per kernel flow (bench/README.md, issue 13, part 6). */
#define CT_SWEEP_SHARE 1000
/* ... and no later than this: the kernel's own collector visits every entry about this often
   when most are long-lived (see sweep_now), so a later sweep would find nothing left to do. */
#define CT_SWEEP_MAX_MS 60000
#define CT_ACCT "/proc/sys/net/netfilter/nf_conntrack_acct"
#define CT_EVENTS "/proc/sys/net/netfilter/nf_conntrack_events"

struct fwx__ct {
    uv_poll_t poll;
    uv_timer_t pace;     /* the next read while events keep coming (CT_PACE_MS) */
    uv_timer_t sweep;    /* the next reaping dump (see fwx__ct_set_sweep), armed once at a time */
    int handles_open;    /* freed when the last handle's close callback has run */
    uint64_t sweep_ms;   /* the interval asked (0: never); the budget may stretch it (sweep_after) */
    uv_loop_t *loop;
    struct mnl_socket *ev;  /* events */
    struct mnl_socket *req; /* requests */
    uint32_t seq;
    fwx__ct_cb cb;
    void *arg;
    uint32_t mark_value, mark_mask;
    uint64_t open_flows;  /* reported NEW minus DESTROY: entries whose end is still to come */
    bool flows_unknown;   /* events were lost (ENOBUFS): open_flows cannot be trusted */
    fwx_log_fn log;
    void *log_arg;
    bool closing;
    bool unpaced;        /* fwx__ct_set_paced(false): read each event as it comes */
    bool req_stale;      /* answers to an earlier request may still be queued (drain_requests) */
    char holder[96];     /* this instance's holder file of the namespace's settings, "" if none */
    char nsdir[80];      /* the namespace's folder under CT_RUN_DIR, "" if it could not be kept */
    fwx__ct_stats st;
    /* the event socket's reads: filled once at open, reused (no allocation per event) */
    struct mmsghdr rx[CT_BATCH];
    struct iovec rx_iov[CT_BATCH];
    struct sockaddr_nl rx_from[CT_BATCH];
    union {
        struct nlmsghdr align;
        unsigned char b[CT_DGRAM];
    } rx_buf[CT_BATCH];
};

static void ct_log(fwx__ct *ct, fwx_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ct_log(fwx__ct *ct, fwx_log_level level, const char *fmt, ...)
{
    if (ct->log == NULL)
        return;
    char line[320];
    int n = snprintf(line, sizeof line, "conntrack: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    ct->log(ct->log_arg, level, line);
}

/* ---- reading an entry ------------------------------------------------------------------------ */

/*
 * One pass over the message as it came off the socket: no library parse, no object, no
 * allocation. An event is read on the loop for every flow fwx owns, twice (NEW and DESTROY),
 * and libnetfilter_conntrack's parse (which reads every attribute into an object, and ends the
 * process on an attribute of a size it does not expect, so it needed a validating walk of its
 * own first) was three quarters of fwx's cost per flow (bench/README.md, issue 13 part 2).
 *
 * Strict all the same (the attack catalog's rows 34-35 in doc/security.md: decoders die on
 * lengths): at every level walked, each attribute must fit what is left of its container and
 * the attributes must fill it exactly (bytes left over that are not an attribute: refused, so a
 * truncated message never passes for a shorter well-formed one); an attribute read here must
 * have its exact size; both tuples must be complete, with addresses of the header's family and
 * none of the other. Attributes fwx does not read (status, timeout, helper, zone, ...) are
 * skipped by their length, unread: nothing trusts them.
 */
typedef struct attr_walk {
    const unsigned char *p, *end;
} attr_walk;

static void walk_init(attr_walk *w, const void *payload, size_t len)
{
    w->p = payload;
    w->end = w->p + len;
}

/* 1: *a is the next attribute; 0: the container ends here; -1: what is left is not an
   attribute (a length below the header or past the container). The last attribute's padding
   may be missing. Attributes are 4-byte aligned when the message is. */
static int walk_next(attr_walk *w, const struct nlattr **a)
{
    size_t left = (size_t)(w->end - w->p);
    if (left == 0)
        return 0;
    const struct nlattr *x = (const struct nlattr *)(const void *)w->p;
    if (left < NLA_HDRLEN || x->nla_len < NLA_HDRLEN || x->nla_len > left)
        return -1;
    size_t step = MNL_ALIGN(x->nla_len);
    w->p += step < left ? step : left;
    *a = x;
    return 1;
}

/* libmnl's accessors, inline: they are a call each through the PLT, and the walk is most of
   what an event costs. Valid on an attribute walk_next returned. */
static inline uint16_t at_type(const struct nlattr *a) { return a->nla_type & NLA_TYPE_MASK; }
static inline uint16_t at_len(const struct nlattr *a) { return (uint16_t)(a->nla_len - NLA_HDRLEN); }
static inline const void *at_data(const struct nlattr *a) { return (const unsigned char *)a + NLA_HDRLEN; }

static void walk_nested(attr_walk *w, const struct nlattr *nest)
{
    walk_init(w, at_data(nest), at_len(nest));
}

/* One tuple (CTA_TUPLE_ORIG or _REPLY) as found. */
typedef struct ct_tuple {
    const void *src, *dst; /* addresses of the header's family, in the message */
    uint16_t sport, dport; /* network order */
    uint8_t proto;
    uint8_t have; /* TU_* */
} ct_tuple;
enum { TU_PROTO = 1, TU_SPORT = 2, TU_DPORT = 4 };

/* CTA_TUPLE_IP: 0, or -1 (a wrong size, or an address of the other family). */
static int tuple_ip(const struct nlattr *nest, int family, ct_tuple *t)
{
    attr_walk w;
    const struct nlattr *a;
    int r;
    walk_nested(&w, nest);
    while ((r = walk_next(&w, &a)) > 0) {
        uint16_t type = at_type(a), l = at_len(a);
        bool v4 = type == CTA_IP_V4_SRC || type == CTA_IP_V4_DST, v6 = type == CTA_IP_V6_SRC || type == CTA_IP_V6_DST;
        if (!v4 && !v6)
            continue;
        if (v4 != (family == AF_INET) || l != (v4 ? 4 : 16))
            return -1;
        if (type == CTA_IP_V4_SRC || type == CTA_IP_V6_SRC)
            t->src = at_data(a);
        else
            t->dst = at_data(a);
    }
    return r;
}

/* a's payload, which must be exactly n bytes, into out: 0, or -1 (another size). */
static int read_fixed(const struct nlattr *a, uint16_t n, void *out)
{
    if (at_len(a) != n)
        return -1;
    memcpy(out, at_data(a), n);
    return 0;
}

/* CTA_TUPLE_PROTO: 0, or -1. Ports stay in network order. */
static int tuple_proto(const struct nlattr *nest, ct_tuple *t)
{
    attr_walk w;
    const struct nlattr *a;
    int r, bad = 0;
    walk_nested(&w, nest);
    while (!bad && (r = walk_next(&w, &a)) > 0) {
        switch (at_type(a)) {
        case CTA_PROTO_NUM:
            bad = read_fixed(a, 1, &t->proto);
            t->have |= TU_PROTO;
            break;
        case CTA_PROTO_SRC_PORT:
            bad = read_fixed(a, 2, &t->sport);
            t->have |= TU_SPORT;
            break;
        case CTA_PROTO_DST_PORT:
            bad = read_fixed(a, 2, &t->dport);
            t->have |= TU_DPORT;
            break;
        default:
            break;
        }
    }
    return bad ? -1 : r;
}

static int tuple_of(const struct nlattr *nest, int family, ct_tuple *t)
{
    attr_walk w;
    const struct nlattr *a;
    int r;
    memset(t, 0, sizeof *t);
    walk_nested(&w, nest);
    while ((r = walk_next(&w, &a)) > 0) {
        uint16_t type = at_type(a);
        if ((type == CTA_TUPLE_IP && tuple_ip(a, family, t) != 0) || (type == CTA_TUPLE_PROTO && tuple_proto(a, t) != 0))
            return -1;
    }
    return r;
}

/* CTA_COUNTERS_*: the byte count, 64 or 32 bits. 0, or -1. */
static int counters_of(const struct nlattr *nest, uint64_t *bytes)
{
    attr_walk w;
    const struct nlattr *a;
    int r;
    uint64_t v64;
    uint32_t v32;
    walk_nested(&w, nest);
    while ((r = walk_next(&w, &a)) > 0) {
        if (at_type(a) == CTA_COUNTERS_BYTES) {
            if (read_fixed(a, 8, &v64) != 0)
                return -1;
            *bytes = be64toh(v64);
        } else if (at_type(a) == CTA_COUNTERS32_BYTES) {
            if (read_fixed(a, 4, &v32) != 0)
                return -1;
            *bytes = ntohl(v32);
        }
    }
    return r;
}

/* CTA_PROTOINFO: the TCP state, when there is one. 0, or -1. */
static int tcp_state_of(const struct nlattr *nest, uint8_t *state)
{
    attr_walk w, in;
    const struct nlattr *a, *b;
    int r, q = 0;
    walk_nested(&w, nest);
    while (q >= 0 && (r = walk_next(&w, &a)) > 0) {
        if (at_type(a) != CTA_PROTOINFO_TCP)
            continue;
        walk_nested(&in, a);
        while ((q = walk_next(&in, &b)) > 0)
            if (at_type(b) == CTA_PROTOINFO_TCP_STATE && read_fixed(b, 1, state) != 0)
                return -1;
    }
    return q < 0 ? -1 : r;
}

static void put_addr(fwx__sa *out, int family, const void *addr, uint16_t port_be)
{
    /* Built whole here (the family is the header's, checked by the caller), then stored
       through the one writer of a fwx__sa. */
    fwx__sa a;
    memset(&a, 0, sizeof a);
    if (family == AF_INET) {
        a.sin.sin_family = AF_INET;
        memcpy(&a.sin.sin_addr, addr, 4);
        a.sin.sin_port = port_be;
    } else {
        a.sin6.sin6_family = AF_INET6;
        memcpy(&a.sin6.sin6_addr, addr, 16);
        a.sin6.sin6_port = port_be;
    }
    fwx__sa_set(out, &a.sa);
}

/* The entry's attributes (after the family header) into f. 1: TCP or UDP, filled; 0: well
   formed but another protocol; -1: malformed (see above). */
static int entry_of(const void *attrs, size_t len, int family, fwx__ct_flow *f)
{
    ct_tuple orig, reply;
    bool have_orig = false, have_reply = false;
    uint8_t tcp_state = 0;
    uint32_t mark;
    attr_walk w;
    const struct nlattr *a;
    int r;
    memset(f, 0, sizeof *f);
    walk_init(&w, attrs, len);
    while ((r = walk_next(&w, &a)) > 0) {
        switch (at_type(a)) {
        case CTA_TUPLE_ORIG:
            if (tuple_of(a, family, &orig) != 0)
                return -1;
            have_orig = true;
            break;
        case CTA_TUPLE_REPLY:
            if (tuple_of(a, family, &reply) != 0)
                return -1;
            have_reply = true;
            break;
        case CTA_MARK:
            if (read_fixed(a, 4, &mark) != 0)
                return -1;
            f->mark = ntohl(mark);
            break;
        case CTA_COUNTERS_ORIG:
            if (counters_of(a, &f->bytes_orig) != 0)
                return -1;
            break;
        case CTA_COUNTERS_REPLY:
            if (counters_of(a, &f->bytes_reply) != 0)
                return -1;
            break;
        case CTA_PROTOINFO:
            if (tcp_state_of(a, &tcp_state) != 0)
                return -1;
            break;
        default:
            break; /* not read: skipped by its length */
        }
    }
    if (r < 0 || !have_orig || !have_reply)
        return -1;
    const uint8_t full = TU_PROTO | TU_SPORT | TU_DPORT;
    if (orig.src == NULL || orig.dst == NULL || reply.src == NULL || reply.dst == NULL ||
        !(orig.have & TU_PROTO) || !(reply.have & TU_PROTO) || orig.proto != reply.proto)
        return -1;
    if (orig.proto != IPPROTO_TCP && orig.proto != IPPROTO_UDP)
        return 0; /* ICMP and the rest: not ours */
    if ((orig.have & full) != full || (reply.have & full) != full)
        return -1;
    f->protocol = orig.proto == IPPROTO_TCP ? FWX_PROTOCOL_TCP : FWX_PROTOCOL_UDP;
    put_addr(&f->src, family, orig.src, orig.sport);
    put_addr(&f->dst, family, orig.dst, orig.dport);
    put_addr(&f->reply_src, family, reply.src, reply.sport);
    if (f->protocol == FWX_PROTOCOL_TCP)
        f->tcp_state = tcp_state;
    return 1;
}

int fwx__ct_parse(const void *msg, size_t len, fwx__ct_flow *f)
{
    struct nlmsghdr nh;
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
    if (nh.nlmsg_len < NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct nfgenmsg)))
        return -1;
    struct nfgenmsg nf;
    memcpy(&nf, (const unsigned char *)msg + NLMSG_HDRLEN, sizeof nf);
    if (nf.nfgen_family != AF_INET && nf.nfgen_family != AF_INET6)
        return -1;
    size_t off = NLMSG_HDRLEN + MNL_ALIGN(sizeof nf);
    int rc = entry_of((const unsigned char *)msg + off, nh.nlmsg_len - off, nf.nfgen_family, f);
    if (rc <= 0) {
        memset(f, 0, sizeof *f);
        return rc;
    }
    if (event == FWX__CT_END && (f->protocol != FWX_PROTOCOL_TCP || (f->tcp_state != TCP_CONNTRACK_TIME_WAIT &&
                                                                    f->tcp_state != TCP_CONNTRACK_CLOSE)))
        return 0; /* an update of no interest */
    return event;
}

/* ---- events on the loop ---------------------------------------------------------------------- */

/* A message or datagram refused: counted, and logged at the 1st, 2nd, 4th, 8th, ... (no flood). */
static void refused(fwx__ct *ct, const char *what, unsigned type, size_t len)
{
    ct->st.malformed++;
    if ((ct->st.malformed & (ct->st.malformed - 1)) == 0)
        ct_log(ct, FWX_LOG_WARN, "refused %s from the kernel (message type 0x%04x, %zu bytes): not read; "
                                 "%llu refused so far", what, type, len, (unsigned long long)ct->st.malformed);
}

static void handle(fwx__ct *ct, const unsigned char *p, size_t len)
{
    const struct nlmsghdr *nh = (const struct nlmsghdr *)p;
    int left = (int)len;
    for (; mnl_nlmsg_ok(nh, left) && !ct->closing; nh = mnl_nlmsg_next(nh, &left)) {
        if (nh->nlmsg_type < NLMSG_MIN_TYPE)
            continue;
        ct->st.events++; /* crossed the socket: what the kernel's filter let through */
        fwx__ct_flow f;
        int ev = fwx__ct_parse(nh, nh->nlmsg_len, &f);
        if (ev < 0) {
            refused(ct, "a malformed event", nh->nlmsg_type, nh->nlmsg_len);
        } else if (ev > 0 && (f.mark & ct->mark_mask) == ct->mark_value) {
            ct->st.reported++;
            if (ev == FWX__CT_NEW)
                ct->open_flows++;
            else if (ev == FWX__CT_DESTROY && ct->open_flows > 0)
                ct->open_flows--;
            ct->cb(ct->arg, ev, &f);
        }
    }
    if (!ct->closing && left > 0) /* a length that does not fit what is left of the datagram */
        refused(ct, "a datagram whose message lengths do not fit it", 0, len);
}

/* Up to CT_BATCH datagrams from the event socket: their count, or -1 (errno). */
static int read_batch(fwx__ct *ct)
{
    for (int i = 0; i < CT_BATCH; i++) {
        ct->rx[i].msg_hdr.msg_namelen = sizeof ct->rx_from[i];
        ct->rx[i].msg_hdr.msg_flags = 0;
    }
    return recvmmsg(mnl_socket_get_fd(ct->ev), ct->rx, CT_BATCH, MSG_DONTWAIT, NULL);
}

/* Reads what is queued, up to CT_READS_PER_WAKE batches: the number of datagrams read. */
static int drain(fwx__ct *ct)
{
    int got = 0;
    for (int i = 0; i < CT_READS_PER_WAKE && !ct->closing; i++) {
        int n = read_batch(ct);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOBUFS) {
                /* The socket buffer was full: the kernel dropped events. Go on reading. */
                ct->st.overruns++;
                ct->flows_unknown = true; /* a lost DESTROY or NEW: sweep from now on */
                if ((ct->st.overruns & (ct->st.overruns - 1)) == 0) /* 1, 2, 4, 8, ...: no flood */
                    ct_log(ct, FWX_LOG_WARN, "events lost (socket buffer full, ENOBUFS); %llu time(s) so far",
                           (unsigned long long)ct->st.overruns);
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                ct_log(ct, FWX_LOG_WARN, "reading events: %s", strerror(errno));
            return got;
        }
        got += n;
        for (int k = 0; k < n && !ct->closing; k++) {
            const struct msghdr *m = &ct->rx[k].msg_hdr;
            if (m->msg_namelen < sizeof(struct sockaddr_nl) || ct->rx_from[k].nl_pid != 0)
                continue; /* not the kernel's: another process may send to our port id */
            if (m->msg_flags & MSG_TRUNC)
                refused(ct, "a truncated datagram", 0, ct->rx[k].msg_len);
            else
                handle(ct, ct->rx_buf[k].b, ct->rx[k].msg_len);
        }
        if (n < CT_BATCH)
            break; /* the queue is empty */
    }
    return got;
}

static void on_readable(uv_poll_t *h, int status, int events);
static void on_paced(uv_timer_t *t);

/* Reads on each event again (the poll armed); says so if it cannot, since events then stop. */
static void watch(fwx__ct *ct, const char *why)
{
    if (uv_poll_start(&ct->poll, UV_READABLE, on_readable) != 0)
        ct_log(ct, FWX_LOG_ERROR, "cannot %s: events stop", why);
}

/* Events came: read again in CT_PACE_MS instead of on the next one (see CT_PACE_MS). */
static void pace(fwx__ct *ct)
{
    if (ct->unpaced)
        return; /* the poll stays armed */
    uv_poll_stop(&ct->poll);
    if (uv_timer_start(&ct->pace, on_paced, CT_PACE_MS, 0) != 0)
        watch(ct, "go on reading events");
}

static void on_paced(uv_timer_t *t)
{
    fwx__ct *ct = t->data;
    if (ct->closing)
        return;
    ct->st.paced_reads++;
    if (drain(ct) > 0 && !ct->closing)
        pace(ct);
    else if (!ct->closing)
        watch(ct, "go on reading events");
}

void fwx__ct_set_paced(fwx__ct *ct, bool on)
{
    if (ct == NULL || ct->closing || ct->unpaced == !on)
        return;
    ct->unpaced = !on;
    if (!on && uv_is_active((uv_handle_t *)&ct->pace)) {
        /* A paced read is pending: watch the socket again, so what is queued is read on the
           next loop turn and each event after it at once. */
        uv_timer_stop(&ct->pace);
        watch(ct, "go on reading events");
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
        watch(ct, "restart reading events after a socket error");
    }
    if (drain(ct) > 0 && !ct->closing)
        pace(ct);
}

/* ---- settings: nf_conntrack_acct and nf_conntrack_events ------------------------------------- */

/*
 * Both are per network namespace and fwx needs them on (byte counts; events at all). The first
 * fwx instance of a namespace that finds one off records the values it found and switches it
 * on; every instance using the namespace registers as a holder; the instance that leaves no
 * live holder behind at close writes the recorded values back. The count lives in files, so
 * it spans processes:
 *
 *   CT_RUN_DIR/lock                        flock'ed around every change below
 *   CT_RUN_DIR/<netns>/saved               "acct=<v> events=<v>": what the first instance found
 *   CT_RUN_DIR/<netns>/h.<pid>.<start>.<n> one per open instance
 *
 * <netns> is the namespace's cookie (SO_NETNS_COOKIE, never reused while the system runs), or
 * its inode number on kernels before 5.14. A holder whose process has died (kill -9, a crash)
 * or whose pid now belongs to another process (<start>, the process's start time, differs) is
 * removed by the next instance that opens or closes in the namespace, so a crashed gateway
 * never pins the settings on forever: the next fwx to close there restores them.
 */
#define CT_RUN_DIR "/run/fwx/conntrack"

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

/* 0, or -1 (errno) */
static int sysctl_write(const char *path, int v)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char w[16];
    int wl = snprintf(w, sizeof w, "%d", v);
    bool ok = write(fd, w, (size_t)wl) == wl;
    int e = errno;
    close(fd);
    errno = e;
    return ok ? 0 : -1;
}

/* The process's start time (field 22 of /proc/<pid>/stat), 0 if it is gone. */
static unsigned long long proc_start(long pid)
{
    char path[64], b[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0)
        return 0;
    b[n] = '\0';
    const char *p = strrchr(b, ')'); /* the command name may hold spaces and parentheses */
    if (p == NULL)
        return 0;
    /* After ")": state (3) ... starttime (22): 20 fields on. */
    for (int field = 2; field < 22 && p != NULL; field++)
        p = strchr(p + 1, ' ');
    return p != NULL ? strtoull(p + 1, NULL, 10) : 0;
}

static bool holder_alive(const char *name)
{
    long pid;
    unsigned long long start;
    unsigned n;
    if (sscanf(name, "h.%ld.%llu.%u", &pid, &start, &n) != 3 || pid <= 0)
        return false;
    return proc_start(pid) == start;
}

/* Removes dead holders of dir; returns the live ones other than `self`, and one's pid. */
static int holders_prune(const char *dir, const char *self, long *some_pid)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int live = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "h.", 2) != 0 || strcmp(e->d_name, self) == 0)
            continue;
        if (holder_alive(e->d_name)) {
            live++;
            *some_pid = strtol(e->d_name + 2, NULL, 10);
        } else {
            (void)unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
    return live;
}

/* The lock around CT_RUN_DIR, or -1 (nothing can be counted). */
static int settings_lock(void)
{
    (void)mkdir("/run/fwx", 0755);
    (void)mkdir(CT_RUN_DIR, 0755);
    int fd = open(CT_RUN_DIR "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void settings_unlock(int fd)
{
    (void)flock(fd, LOCK_UN);
    close(fd);
}

static int saved_read(const char *dir, int *acct, int *events)
{
    char path[128], b[64] = {0};
    snprintf(path, sizeof path, "%s/saved", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    return n > 0 && sscanf(b, "acct=%d events=%d", acct, events) == 2 ? 0 : -1;
}

static int saved_write(const char *dir, int acct, int events)
{
    char path[128], b[64];
    snprintf(path, sizeof path, "%s/saved", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int l = snprintf(b, sizeof b, "acct=%d events=%d\n", acct, events);
    bool ok = write(fd, b, (size_t)l) == l;
    close(fd);
    return ok ? 0 : -1;
}

/* This thread's network namespace as a folder name. */
static void netns_name(int sock_fd, char *out, size_t cap)
{
    uint64_t cookie = 0;
    socklen_t l = sizeof cookie;
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
    if (getsockopt(sock_fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &l) == 0 && l == sizeof cookie) {
        snprintf(out, cap, "%s/cookie-%llu", CT_RUN_DIR, (unsigned long long)cookie);
        return;
    }
    struct stat s;
    if (stat("/proc/thread-self/ns/net", &s) == 0)
        snprintf(out, cap, "%s/ino-%llu", CT_RUN_DIR, (unsigned long long)s.st_ino);
    else
        out[0] = '\0';
}

/* Open: record, switch on, register. Sets st.accounting and st.switched. */
static void settings_take(fwx__ct *ct)
{
    static atomic_uint seq;
    int lk = settings_lock();
    int acct = sysctl_read(CT_ACCT), events = sysctl_read(CT_EVENTS); /* under the lock: what others left */
    if (lk >= 0)
        netns_name(mnl_socket_get_fd(ct->ev), ct->nsdir, sizeof ct->nsdir);
    if (lk >= 0 && ct->nsdir[0] != '\0' && (mkdir(ct->nsdir, 0755) == 0 || errno == EEXIST)) {
        long pid = 0;
        int sa, se;
        /* No saved values: nobody switched anything here yet (or the last holder restored
           them). With saved values and no live holder, a crashed instance left them: keep
           them, they are still what the namespace had before fwx. */
        (void)holders_prune(ct->nsdir, "", &pid);
        if (saved_read(ct->nsdir, &sa, &se) != 0 && saved_write(ct->nsdir, acct, events) != 0)
            ct->nsdir[0] = '\0';
    } else {
        ct->nsdir[0] = '\0';
    }
    /* Events off would mean silence: turn them on (2, the default, means "when someone
       listens", which we are about to do). */
    if (events == 0 && sysctl_write(CT_EVENTS, 1) == 0)
        ct->st.switched |= FWX__CT_SWITCHED_EVENTS;
    if (acct == 0 && sysctl_write(CT_ACCT, 1) == 0) {
        ct->st.switched |= FWX__CT_SWITCHED_ACCT;
        acct = 1;
    }
    ct->st.accounting = acct > 0;
    if (ct->nsdir[0] != '\0') {
        char path[sizeof ct->nsdir + sizeof ct->holder + 2];
        snprintf(ct->holder, sizeof ct->holder, "h.%ld.%llu.%u", (long)getpid(), proc_start((long)getpid()),
                 atomic_fetch_add(&seq, 1));
        snprintf(path, sizeof path, "%s/%s", ct->nsdir, ct->holder);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
        else
            ct->holder[0] = '\0';
    }
    if (lk >= 0)
        settings_unlock(lk);
    if (ct->holder[0] == '\0' && ct->st.switched)
        ct->st.switched |= FWX__CT_SWITCHED_UNCOUNTED;
}

/* Close: unregister; the last live holder restores what the first one found. Logged. Runs in
   the thread that opened (the namespace of the settings): fwx__ct_close is [loop-thread]. */
static void settings_release(fwx__ct *ct)
{
    if (ct->holder[0] == '\0') {
        if (ct->st.switched)
            ct_log(ct, FWX_LOG_WARN, "%s%s%s left on: no count of fwx instances could be kept in " CT_RUN_DIR,
                   (ct->st.switched & FWX__CT_SWITCHED_ACCT) ? "net.netfilter.nf_conntrack_acct" : "",
                   (ct->st.switched & FWX__CT_SWITCHED_ACCT) && (ct->st.switched & FWX__CT_SWITCHED_EVENTS) ? " and "
                                                                                                         : "",
                   (ct->st.switched & FWX__CT_SWITCHED_EVENTS) ? "net.netfilter.nf_conntrack_events" : "");
        return;
    }
    int lk = settings_lock();
    if (lk < 0) {
        ct_log(ct, FWX_LOG_WARN, "cannot lock " CT_RUN_DIR "/lock (%s): conntrack settings left as they are",
               strerror(errno));
        return;
    }
    char path[sizeof ct->nsdir + sizeof ct->holder + 2];
    snprintf(path, sizeof path, "%s/%s", ct->nsdir, ct->holder);
    (void)unlink(path);
    long pid = 0;
    int others = holders_prune(ct->nsdir, ct->holder, &pid);
    int sa = -1, se = -1;
    bool have = saved_read(ct->nsdir, &sa, &se) == 0;
    bool acct_ours = have && sa == 0 && sysctl_read(CT_ACCT) > 0;
    bool events_ours = have && se == 0 && sysctl_read(CT_EVENTS) > 0;
    const char *names = acct_ours && events_ours ? "net.netfilter.nf_conntrack_acct and nf_conntrack_events"
                        : acct_ours              ? "net.netfilter.nf_conntrack_acct"
                                                 : "net.netfilter.nf_conntrack_events";
    if (others > 0) {
        if (acct_ours || events_ours)
            ct_log(ct, FWX_LOG_INFO, "%s left on: %d other fwx instance(s) in this network namespace still use "
                                     "them (pid %ld)", names, others, pid);
    } else {
        int failed = 0;
        if (acct_ours && sysctl_write(CT_ACCT, 0) != 0)
            failed |= FWX__CT_SWITCHED_ACCT;
        if (events_ours && sysctl_write(CT_EVENTS, 0) != 0)
            failed |= FWX__CT_SWITCHED_EVENTS;
        if (failed)
            ct_log(ct, FWX_LOG_WARN, "restoring %s to 0 failed: %s", names, strerror(errno));
        else if (acct_ours || events_ours)
            ct_log(ct, FWX_LOG_INFO, "%s restored to 0 (as before fwx; no other fwx instance in this network "
                                     "namespace uses them)", names);
        snprintf(path, sizeof path, "%s/saved", ct->nsdir);
        (void)unlink(path);
        (void)rmdir(ct->nsdir);
    }
    settings_unlock(lk);
    ct->holder[0] = '\0';
}

/* ---- open / close ---------------------------------------------------------------------------- */

static struct mnl_socket *nl_socket(void)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (nl == NULL)
        return NULL;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) != 0) {
        mnl_socket_close(nl);
        return NULL;
    }
    return nl;
}

static void sockets_close(fwx__ct *ct)
{
    if (ct->ev != NULL)
        mnl_socket_close(ct->ev);
    if (ct->req != NULL)
        mnl_socket_close(ct->req);
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
    for (int i = 0; i < CT_BATCH; i++) {
        ct->rx_iov[i] = (struct iovec){.iov_base = ct->rx_buf[i].b, .iov_len = sizeof ct->rx_buf[i].b};
        ct->rx[i].msg_hdr = (struct msghdr){.msg_name = &ct->rx_from[i], .msg_namelen = sizeof ct->rx_from[i],
                                            .msg_iov = &ct->rx_iov[i], .msg_iovlen = 1};
    }
    ct->ev = nl_socket();
    ct->req = nl_socket();
    if (ct->ev == NULL || ct->req == NULL)
        goto unsupported;
    unsigned groups[] = {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (mnl_socket_setsockopt(ct->ev, NETLINK_ADD_MEMBERSHIP, &groups[i], sizeof groups[i]) != 0)
            goto unsupported;
    int rb = CT_RCVBUF, fd = mnl_socket_get_fd(ct->ev);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    if (uv_poll_init_socket(loop, &ct->poll, fd) != 0)
        goto unsupported;
    settings_take(ct);
    ct->poll.data = ct;
    (void)uv_timer_init(loop, &ct->sweep); /* cannot fail on Linux */
    ct->sweep.data = ct;
    (void)uv_timer_init(loop, &ct->pace);
    ct->pace.data = ct;
    ct->handles_open = 3;
    fwx__ct_set_sweep(ct, FWX__CT_SWEEP_DEFAULT_MS);
    if (uv_poll_start(&ct->poll, UV_READABLE, on_readable) != 0) {
        /* The handle exists now: it is closed through the loop, which frees everything. */
        fwx__ct_close(ct);
        return FWX_E_NOT_SUPPORTED;
    }
    *out = ct;
    return FWX_S_OK;
unsupported:
    sockets_close(ct);
    free(ct);
    return FWX_E_NOT_SUPPORTED;
}

static void on_closed(uv_handle_t *h)
{
    fwx__ct *ct = h->data;
    if (--ct->handles_open > 0)
        return;
    sockets_close(ct);
    free(ct);
}

void fwx__ct_close(fwx__ct *ct)
{
    if (ct == NULL || ct->closing)
        return;
    ct->closing = true;
    uv_poll_stop(&ct->poll);
    uv_timer_stop(&ct->sweep);
    uv_timer_stop(&ct->pace);
    settings_release(ct);
    uv_close((uv_handle_t *)&ct->poll, on_closed);
    uv_close((uv_handle_t *)&ct->sweep, on_closed);
    uv_close((uv_handle_t *)&ct->pace, on_closed);
}

/* ---- requests -------------------------------------------------------------------------------- */

/* Reads (and drops) whatever answers are queued on the request socket; bounded. Only after a
   request that did not read its own ack (a sweep's dump, a request given up): a request that
   did leaves nothing behind (the kernel answers it within the send, and no group is joined on
   this socket), and the read would be a system call per request that finds nothing. */
static void drain_requests(fwx__ct *ct)
{
    if (!ct->req_stale)
        return;
    unsigned char rb[4096] __attribute__((aligned(4)));
    for (int i = 0; i < 64 && recv(mnl_socket_get_fd(ct->req), rb, sizeof rb, MSG_DONTWAIT) > 0; i++)
        ;
    ct->req_stale = false;
}

/* A ctnetlink request header in b: type, flags, a new sequence number, the family header. */
static struct nlmsghdr *req_header(fwx__ct *ct, void *b, int msg, uint16_t flags, uint8_t family)
{
    struct nlmsghdr *nh = mnl_nlmsg_put_header(b);
    nh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | msg);
    nh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    nh->nlmsg_seq = ++ct->seq;
    struct nfgenmsg *nf = mnl_nlmsg_put_extra_header(nh, sizeof *nf);
    nf->nfgen_family = family;
    nf->version = NFNETLINK_V0;
    nf->res_id = 0;
    return nh;
}

/* This thread's CPU time, kernel time included. The sweep's walk is measured with it, not with
   the wall clock: a loop thread that waits for its CPU around the dump (preempted on its way
   back from sendmsg, on a busy gateway) was once counted as a 10 ms walk, and the next sweep,
   and with it the DESTROY of every expired flow of ours, came 10 s later. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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
        unsigned char b[256];
    } m;
    memset(&m, 0, sizeof m);
    struct nlmsghdr *nh = req_header(ct, m.b, IPCTNL_MSG_CT_GET, NLM_F_DUMP, AF_UNSPEC);
    struct nfct_filter_dump *fd = nfct_filter_dump_create();
    if (fd == NULL)
        return;
    struct nfct_filter_dump_mark none = {.val = 1, .mask = 0};
    nfct_filter_dump_set_attr(fd, NFCT_FILTER_DUMP_MARK, &none);
    int rc = nfct_nlmsg_build_filter(nh, fd);
    nfct_filter_dump_destroy(fd);
    if (rc < 0)
        return;
    drain_requests(ct);
    uint64_t t0 = thread_cpu_ns();
    ct->req_stale = true;
    if (mnl_socket_sendto(ct->req, nh, nh->nlmsg_len) == (ssize_t)nh->nlmsg_len) {
        ct->st.sweeps++;
        ct->st.sweep_walk_us = (thread_cpu_ns() - t0) / 1000; /* the walk ran inside sendmsg */
    }
    drain_requests(ct); /* DONE (or, on a kernel that ignored the filter, a bounded part of a dump) */
    ct->req_stale = true;  /* ... and whatever of a longer dump that left */
}

/* When the next sweep may come: the interval asked, stretched so that walking takes at most
   1/CT_SWEEP_SHARE of the time (the last walk's length, in microseconds, is the wait in
   milliseconds), and never beyond CT_SWEEP_MAX_MS. */
static uint64_t sweep_after(const fwx__ct *ct)
{
    uint64_t ms = ct->sweep_ms;
    uint64_t budget = ct->st.sweep_walk_us * CT_SWEEP_SHARE / 1000;
    if (budget > ms)
        ms = budget < CT_SWEEP_MAX_MS ? budget : CT_SWEEP_MAX_MS;
    return ms;
}

static void on_sweep(uv_timer_t *t);

static void sweep_arm(fwx__ct *ct)
{
    ct->st.sweep_interval_ms = sweep_after(ct);
    (void)uv_timer_start(&ct->sweep, on_sweep, ct->st.sweep_interval_ms, 0);
}

/* Only while a reported flow's DESTROY is still to come: the walk costs time in proportion to
   the whole table, other flows' entries included, and with none of ours open it is for no one. */
static void on_sweep(uv_timer_t *t)
{
    fwx__ct *ct = t->data;
    if (ct->closing)
        return;
    if (ct->open_flows > 0 || ct->flows_unknown)
        sweep_now(ct);
    sweep_arm(ct);
}

void fwx__ct_set_sweep(fwx__ct *ct, uint64_t interval_ms)
{
    if (ct == NULL || ct->closing)
        return;
    ct->sweep_ms = interval_ms;
    uv_timer_stop(&ct->sweep);
    ct->st.sweep_interval_ms = 0;
    if (interval_ms > 0)
        sweep_arm(ct);
}

fwx_result fwx__ct_set_mark_filter(fwx__ct *ct, uint32_t value, uint32_t mask)
{
    if (ct == NULL || ct->closing)
        return FWX_E_INVALIDARG;
    ct->mark_mask = mask;
    ct->mark_value = value & mask;
    int fd = mnl_socket_get_fd(ct->ev);
    if (mask == 0) {
        ct->st.kernel_filter = 0;
        /* ENOENT: no filter was attached */
        return nfct_filter_detach(fd) == 0 || errno == ENOENT ? FWX_S_OK : FWX_E_FAIL;
    }
    struct nfct_filter *f = nfct_filter_create();
    if (f == NULL)
        return FWX_E_OUTOFMEMORY;
    struct nfct_filter_dump_mark m = {.val = value & mask, .mask = mask};
    nfct_filter_add_attr(f, NFCT_FILTER_MARK, &m);
    int rc = nfct_filter_attach(fd, f);
    int e = errno;
    nfct_filter_destroy(f);
    ct->st.kernel_filter = rc == 0;
    if (rc == 0)
        return FWX_S_OK;
    /* The user-space check above still applies: correct, only dearer. */
    ct_log(ct, FWX_LOG_WARN, "the kernel refused the event filter on the mark (%s): every conntrack event of this "
                             "network namespace is read and filtered here", strerror(e));
    return FWX_S_FALSE;
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
    int fd = mnl_socket_get_fd(ct->ev);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

void fwx__ct_get_stats(const fwx__ct *ct, fwx__ct_stats *out)
{
    if (ct == NULL || out == NULL)
        return;
    *out = ct->st;
    out->paced = !ct->unpaced;
}

fwx_result fwx__ct_follow_updates(fwx__ct *ct)
{
    unsigned g = NFNLGRP_CONNTRACK_UPDATE;
    if (ct == NULL || ct->closing)
        return FWX_E_INVALIDARG;
    return mnl_socket_setsockopt(ct->ev, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) == 0 ? FWX_S_OK : FWX_E_NOT_SUPPORTED;
}

/* The tuple src -> dst of `protocol` as the original tuple of a new object, or NULL. */
static struct nf_conntrack *tuple_object(int32_t protocol, const fwx__sa *src, const fwx__sa *dst)
{
    if (protocol != FWX_PROTOCOL_TCP && protocol != FWX_PROTOCOL_UDP)
        return NULL;
    int fam = src->sa.sa_family;
    if ((fam != AF_INET && fam != AF_INET6) || dst->sa.sa_family != fam)
        return NULL;
    struct nf_conntrack *o = nfct_new();
    if (o == NULL)
        return NULL;
    nfct_set_attr_u8(o, ATTR_L3PROTO, (uint8_t)fam);
    nfct_set_attr_u8(o, ATTR_L4PROTO, protocol == FWX_PROTOCOL_TCP ? IPPROTO_TCP : IPPROTO_UDP);
    uint16_t sp, dp;
    if (fam == AF_INET) {
        const struct sockaddr_in *s = &src->sin, *d = &dst->sin;
        nfct_set_attr_u32(o, ATTR_IPV4_SRC, s->sin_addr.s_addr);
        nfct_set_attr_u32(o, ATTR_IPV4_DST, d->sin_addr.s_addr);
        sp = s->sin_port;
        dp = d->sin_port;
    } else {
        const struct sockaddr_in6 *s = &src->sin6, *d = &dst->sin6;
        nfct_set_attr(o, ATTR_IPV6_SRC, &s->sin6_addr);
        nfct_set_attr(o, ATTR_IPV6_DST, &d->sin6_addr);
        sp = s->sin6_port;
        dp = d->sin6_port;
    }
    if (sp == 0 || dp == 0) {
        nfct_destroy(o);
        return NULL;
    }
    nfct_set_attr_u16(o, ATTR_PORT_SRC, sp);
    nfct_set_attr_u16(o, ATTR_PORT_DST, dp);
    return o;
}

/* One request about f's entry on the request socket: DELETE (with an echo of the DESTROY) or
   GET, by the original tuple or (by_reply) by the reply tuple; the entry's counters from the
   answer, the ack's verdict. */
static fwx_result ct_request(fwx__ct *ct, const fwx__ct_flow *f, int msg, bool by_reply, fwx__ct_flow *found,
                             uint64_t *bytes_orig, uint64_t *bytes_reply)
{
    *bytes_orig = *bytes_reply = 0;
    if (ct == NULL || f == NULL || ct->closing)
        return FWX_E_INVALIDARG;
    struct nf_conntrack *o = tuple_object(f->protocol, &f->src, &f->dst);
    if (o == NULL)
        return FWX_E_INVALIDARG;
    union {
        struct nlmsghdr align;
        unsigned char b[512];
    } m;
    memset(&m, 0, sizeof m);
    struct nlmsghdr *nh = req_header(ct, m.b, msg, NLM_F_ACK | (msg == IPCTNL_MSG_CT_DELETE ? NLM_F_ECHO : 0),
                                     (uint8_t)f->src.sa.sa_family);
    int rc = nfct_nlmsg_build(nh, o);
    nfct_destroy(o);
    if (rc < 0)
        return FWX_E_FAIL; /* cannot happen: a tuple fits in 512 bytes */
    if (by_reply) {
        /* nfct_nlmsg_build writes the original tuple whenever the family is set; the same
           attributes are a reply tuple when the nest says so (the kernel looks an entry up by
           whichever tuple it is given). The tuple is the first attribute. */
        struct nlattr *t = mnl_nlmsg_get_payload_offset(nh, sizeof(struct nfgenmsg));
        t->nla_type = NLA_F_NESTED | CTA_TUPLE_REPLY;
    }
    uint32_t seq = nh->nlmsg_seq;
    const char *what = msg == IPCTNL_MSG_CT_DELETE ? "kill" : "get";

    /* Drop anything a previous call left (an ack that came after we gave up). */
    drain_requests(ct);
    if (mnl_socket_sendto(ct->req, nh, nh->nlmsg_len) != (ssize_t)nh->nlmsg_len) {
        ct_log(ct, FWX_LOG_WARN, "%s: sending the request failed: %s", what, strerror(errno));
        return FWX_E_FAIL;
    }
    ct->req_stale = true; /* until its ack is read */
    /* The kernel handles the request within the send: a DELETE's echoed DESTROY and the ack are
       normally queued already, and one recvmmsg takes both. Wait at most 100 ms a time
       (bounded) if they are not. */
    enum { ANSWERS = 4, ANSWER_SIZE = 2048 };
    unsigned char rb[ANSWERS][ANSWER_SIZE] __attribute__((aligned(4)));
    struct iovec iov[ANSWERS];
    struct mmsghdr mm[ANSWERS];
    memset(mm, 0, sizeof mm); /* recvmmsg writes only each msg_len (and flags): set up once */
    for (int i = 0; i < ANSWERS; i++) {
        iov[i] = (struct iovec){rb[i], ANSWER_SIZE};
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    for (int tries = 0; tries < 6; tries++) {
        int n = recvmmsg(mnl_socket_get_fd(ct->req), mm, ANSWERS, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR || errno == ESRCH || errno == ENOSPC)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                break;
            struct pollfd pf = {mnl_socket_get_fd(ct->req), POLLIN, 0};
            if (poll(&pf, 1, 100) <= 0)
                break;
            continue;
        }
        for (int d = 0; d < n; d++) {
            int left = (int)mm[d].msg_len;
            for (const struct nlmsghdr *h = (const void *)rb[d]; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left)) {
                if (h->nlmsg_type == NLMSG_ERROR) {
                    if (h->nlmsg_seq != seq || h->nlmsg_len < NLMSG_HDRLEN + sizeof(int))
                        continue;
                    ct->req_stale = false; /* the ack ends the answers; all of them are read */
                    int err;
                    memcpy(&err, mnl_nlmsg_get_payload(h), sizeof err);
                    if (err == 0)
                        return found == NULL || found->protocol != 0 ? FWX_S_OK : FWX_E_NOT_FOUND;
                    if (err == -ENOENT)
                        return FWX_E_NOT_FOUND;
                    ct_log(ct, FWX_LOG_WARN, "%s: the kernel refused: %s", what, strerror(-err));
                    return FWX_E_FAIL;
                }
                fwx__ct_flow echoed;
                int ev = fwx__ct_parse(h, h->nlmsg_len, &echoed);
                /* a GET's answer is an entry message without CREATE: parsed (0 or END) all the same */
                bool answer = msg == IPCTNL_MSG_CT_DELETE ? ev == FWX__CT_DESTROY : ev >= 0;
                if (answer && echoed.protocol == f->protocol &&
                    (by_reply ? fwx__sa_same_endpoint(&echoed.reply_src.sa, &f->src.sa)
                              : fwx__sa_same_endpoint(&echoed.src.sa, &f->src.sa))) {
                    /* the echo of our delete (final counters), or the answer to our get */
                    *bytes_orig = echoed.bytes_orig;
                    *bytes_reply = echoed.bytes_reply;
                    if (found != NULL)
                        *found = echoed; /* protocol != 0 marks it found */
                }
            }
        }
    }
    ct_log(ct, FWX_LOG_WARN, "%s: no answer from the kernel", what);
    return FWX_E_FAIL;
}

fwx_result fwx__ct_kill(fwx__ct *ct, const fwx__ct_flow *f)
{
    uint64_t o, r;
    return fwx__ct_kill_counted(ct, f, &o, &r);
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
    fwx__sa_set(&q.src, reply_src);
    fwx__sa_set(&q.dst, reply_dst);
    uint64_t o, r;
    return ct_request(ct, &q, IPCTNL_MSG_CT_GET, true, out, &o, &r);
}
