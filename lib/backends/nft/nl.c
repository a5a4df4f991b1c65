/*
 * fwx - the "nft" backend's set elements over netlink: libnftnl messages on one long-lived
 * libmnl socket (NETLINK_NETFILTER), no libnftables on the permission path.
 *
 * Why: a libnftables text command parses text and re-reads the whole table into its cache on
 * every call (~6.5 KB of netlink, 300-700 us per grant, growing with the policy:
 * bench/README.md). An element message is ~100 bytes and needs no cache: the set is named,
 * the key is bytes.
 *
 * Each element is its own message with NLM_F_ACK and its own sequence number, so the kernel's
 * answer names the element that failed. An nf_tables batch is one transaction (all or
 * nothing): when an element fails, the whole batch was rolled back, so the batch is sent again
 * without the failed element's group (a grant's elements are one group: a grant is in place
 * whole or not at all; a delete is a group of its own). The kernel processes a batch inside
 * sendmsg(), so every answer is queued on the socket when sendmsg() returns: they are read
 * without blocking, and a missing answer is an error, never a wait.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Element messages per transaction: their answers (one ack each) must fit the socket's receive
   buffer, which sendmsg() fills before we read. */
#define CHUNK 128
/* A batch's size; an element message is ~100-200 bytes. */
#define BATCH_LIMIT (64 * 1024)
/* Rounds of "send again without the failed groups": bounded (each round drops at least one
   group). There is no wait: every error, EBUSY too, refuses its group at once (rules.h says
   why the one-shot sets no longer make EBUSY). */
#define MAX_ROUNDS 8
/* The kernel's destroy of a set element (Linux 6.3): a delete that does not fail when the
   element is missing. Debian 12's headers predate it. */
#ifndef NFT_MSG_DESTROYSETELEM
#define NFT_MSG_DESTROYSETELEM 30
#endif

/* Answers read per call (recvmmsg): the kernel queues one datagram per acked message, so a
   transaction of n elements answers with n datagrams, read in one call instead of n. An ack is
   36 bytes with NETLINK_CAP_ACK; without it (an old kernel) it carries the request's message
   back, an element message of at most a few hundred bytes. */
#define ACK_BATCH 16
#define ACK_DGRAM 1024

struct fwx__nftnl {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    char table[64];
    char *buf; /* one chunk's batch */
    size_t bufsz;
    bool destroy_ok; /* the kernel has NFT_MSG_DESTROYSETELEM (fwx__nftnl_probe_destroy) */
    char (*ack)[ACK_DGRAM]; /* ACK_BATCH datagrams' room */
    struct mmsghdr ackmsg[ACK_BATCH];
    struct iovec ackiov[ACK_BATCH];
};

fwx_result fwx__nftnl_open(const char *table, fwx__nftnl **out)
{
    *out = NULL;
    if (table == NULL || strlen(table) >= sizeof(((fwx__nftnl *)0)->table))
        return FWX_E_INVALIDARG;
    fwx__nftnl *h = calloc(1, sizeof *h);
    if (h == NULL)
        return FWX_E_OUTOFMEMORY;
    h->bufsz = BATCH_LIMIT * 2; /* mnl: twice the limit, as the last message may pass it */
    h->buf = malloc(h->bufsz);
    h->ack = malloc(ACK_BATCH * sizeof *h->ack);
    h->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (h->buf == NULL || h->ack == NULL || h->nl == NULL || mnl_socket_bind(h->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = errno;
        fwx__nftnl_close(h);
        return err == EPERM || err == EACCES ? FWX_E_DENIED : FWX_E_BACKEND;
    }
    /* Short acks (not the whole request echoed back), and room for a chunk's acks. */
    int one = 1, rcv = 1 << 20;
    (void)mnl_socket_setsockopt(h->nl, NETLINK_CAP_ACK, &one, sizeof one);
    if (setsockopt(mnl_socket_get_fd(h->nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0)
        (void)setsockopt(mnl_socket_get_fd(h->nl), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    for (int k = 0; k < ACK_BATCH; k++) { /* recvmmsg only writes msg_len and msg_flags back */
        h->ackiov[k] = (struct iovec){h->ack[k], ACK_DGRAM};
        h->ackmsg[k].msg_hdr = (struct msghdr){.msg_iov = &h->ackiov[k], .msg_iovlen = 1};
    }
    h->portid = mnl_socket_get_portid(h->nl);
    h->seq = (uint32_t)getpid() << 8; /* any start; answers are matched by our own numbers */
    memcpy(h->table, table, strlen(table) + 1);
    *out = h;
    return FWX_S_OK;
}

void fwx__nftnl_close(fwx__nftnl *h)
{
    if (h == NULL)
        return;
    if (h->nl != NULL)
        mnl_socket_close(h->nl);
    free(h->buf);
    free(h->ack);
    free(h);
}

/* The bytes of an element's key or data from its nft text ("10.0.0.2 . 10.0.0.9 . 6 . 2121"):
   each field of a concatenation takes a whole number of 32-bit registers, as in the set's type
   (rules.h): an address its 4 or 16 bytes; a number before another field is an inet_proto (one
   byte), the last number an inet_service (two bytes, network order). Returns the length, or 0
   for text that is none of these. */
size_t fwx__nftnl_encode(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0;
    const char *p = text;
    while (p != NULL && *p) {
        const char *sep = strstr(p, " . ");
        size_t len = sep ? (size_t)(sep - p) : strlen(p);
        char tok[48];
        if (len == 0 || len >= sizeof tok)
            return 0;
        memcpy(tok, p, len);
        tok[len] = '\0';
        uint8_t field[16];
        size_t flen, padded;
        if (inet_pton(AF_INET, tok, field) == 1) {
            flen = 4;
        } else if (inet_pton(AF_INET6, tok, field) == 1) {
            flen = 16;
        } else {
            char *end;
            errno = 0;
            unsigned long v = strtoul(tok, &end, 10);
            if (errno != 0 || *end != '\0' || tok[0] < '0' || tok[0] > '9')
                return 0;
            if (sep != NULL) {
                if (v > 255)
                    return 0;
                field[0] = (uint8_t)v;
                flen = 1;
            } else {
                if (v > 65535)
                    return 0;
                field[0] = (uint8_t)(v >> 8);
                field[1] = (uint8_t)v;
                flen = 2;
            }
        }
        padded = (flen + 3) & ~(size_t)3;
        if (n + padded > cap)
            return 0;
        memset(out + n, 0, padded);
        memcpy(out + n, field, flen);
        n += padded;
        p = sep ? sep + 3 : NULL;
    }
    return n;
}

/* One field of a concatenation, padded to whole 32-bit registers; false when it does not fit. */
static bool put_field(uint8_t *out, size_t cap, size_t *n, const void *field, size_t flen)
{
    size_t padded = (flen + 3) & ~(size_t)3;
    if (*n + padded > cap)
        return false;
    memset(out + *n, 0, padded);
    memcpy(out + *n, field, flen);
    *n += padded;
    return true;
}

size_t fwx__nftnl_key(uint8_t *out, size_t cap, const struct sockaddr *a, const struct sockaddr *b, int proto, int port)
{
    size_t n = 0;
    const struct sockaddr *addrs[2] = {a, b};
    for (int i = 0; i < 2 && addrs[i] != NULL; i++) {
        const struct sockaddr *sa = addrs[i];
        if (sa->sa_family != a->sa_family)
            return 0;
        bool ok;
        if (sa->sa_family == AF_INET) {
            ok = put_field(out, cap, &n, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        } else if (sa->sa_family == AF_INET6 && ((const struct sockaddr_in6 *)sa)->sin6_scope_id == 0) {
            ok = put_field(out, cap, &n, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        } else {
            return 0; /* another family, or a zone a set element cannot express */
        }
        if (!ok)
            return 0;
    }
    if (proto >= 0) {
        uint8_t p = (uint8_t)proto;
        if (proto > 255 || !put_field(out, cap, &n, &p, 1))
            return 0;
    }
    if (port >= 0) {
        uint8_t be[2] = {(uint8_t)(port >> 8), (uint8_t)port};
        if (port > 65535 || !put_field(out, cap, &n, be, 2))
            return 0;
    }
    return n;
}

size_t fwx__nftnl_text(int family, const uint8_t *b, size_t len, char *out, size_t cap)
{
    /* The shapes fwx uses (rules.h), told apart by length within a family: addr . addr . proto .
       port, addr . proto . port, addr . port, addr. */
    size_t alen = family == AF_INET6 ? 16 : 4, naddr, nnum;
    if (len == 2 * alen + 8)
        naddr = 2, nnum = 2;
    else if (len == alen + 8)
        naddr = 1, nnum = 2;
    else if (len == alen + 4)
        naddr = 1, nnum = 1;
    else if (len == alen)
        naddr = 1, nnum = 0;
    else
        return cap > 0 ? (out[0] = '\0', 0) : 0;
    size_t o = 0, at = 0;
    for (size_t i = 0; i < naddr + nnum && o < cap; i++) {
        char f[INET6_ADDRSTRLEN];
        if (i < naddr) {
            inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, b + at, f, sizeof f);
            at += alen;
        } else if (i == naddr + nnum - 1) {
            snprintf(f, sizeof f, "%u", (unsigned)(b[at] << 8 | b[at + 1])); /* the port, last */
            at += 4;
        } else {
            snprintf(f, sizeof f, "%u", (unsigned)b[at]);
            at += 4;
        }
        int w = snprintf(out + o, cap - o, "%s%s", i ? " . " : "", f); /* truncated at cap */
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return o;
}

/* Reads what the kernel has queued on the socket, up to ACK_BATCH datagrams into h->ack, without
   blocking, and hands fn each message of ours (our port id) until fn returns false. Returns the
   datagrams read (ACK_BATCH: more may be queued), 0 when none was queued, -1 when the socket
   failed (errno; ENOBUFS: answers were lost). */
static int ack_each(fwx__nftnl *h, bool (*fn)(const struct nlmsghdr *m, void *arg), void *arg)
{
    int got;
    while ((got = recvmmsg(mnl_socket_get_fd(h->nl), h->ackmsg, ACK_BATCH, MSG_DONTWAIT, NULL)) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return -1;
    }
    for (int k = 0; k < got; k++) {
        int len = (int)h->ackmsg[k].msg_len;
        for (const struct nlmsghdr *m = (const struct nlmsghdr *)h->ack[k]; mnl_nlmsg_ok(m, len);
             m = mnl_nlmsg_next(m, &len))
            if (m->nlmsg_pid == h->portid && !fn(m, arg))
                return got;
    }
    return got;
}

/* Set `set` of our table with one element of key `key` (not added to it yet: *e, for the
   caller to complete and add); NULL when out of memory (nothing left allocated). */
static struct nftnl_set *one_elem(fwx__nftnl *h, const char *set, const uint8_t *key, size_t klen,
                                  struct nftnl_set_elem **e)
{
    struct nftnl_set *s = nftnl_set_alloc();
    *e = nftnl_set_elem_alloc();
    if (s == NULL || *e == NULL) {
        if (s != NULL)
            nftnl_set_free(s);
        if (*e != NULL)
            nftnl_set_elem_free(*e);
        return NULL;
    }
    nftnl_set_set_str(s, NFTNL_SET_TABLE, h->table);
    nftnl_set_set_str(s, NFTNL_SET_NAME, set);
    nftnl_set_elem_set(*e, NFTNL_SET_ELEM_KEY, key, (uint32_t)klen);
    return s;
}

/* Appends op's message to the batch; false when it does not encode (op->err set). */
static bool put_op(fwx__nftnl *h, struct mnl_nlmsg_batch *b, fwx__nftnl_op *op, uint32_t seq)
{
    uint8_t kbuf[64], dbuf[64];
    const uint8_t *key = op->kbin, *data = op->dbin;
    size_t klen = op->klen, dlen = op->dlen;
    if (klen == 0) { /* given as text (tests): encoded here */
        key = kbuf;
        klen = op->key != NULL ? fwx__nftnl_encode(op->key, kbuf, sizeof kbuf) : 0;
        if (op->data != NULL && op->data[0]) {
            data = dbuf;
            if ((dlen = fwx__nftnl_encode(op->data, dbuf, sizeof dbuf)) == 0)
                klen = 0;
        }
    }
    if (klen == 0) {
        op->err = EINVAL;
        return false;
    }
    struct nftnl_set_elem *e = NULL;
    struct nftnl_set *s = one_elem(h, op->set, key, klen, &e);
    if (s == NULL) {
        op->err = ENOMEM;
        return false;
    }
    if (dlen > 0 && !op->del)
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, data, (uint32_t)dlen);
    if (op->timeout_ms > 0 && !op->del)
        nftnl_set_elem_set_u64(e, NFTNL_SET_ELEM_TIMEOUT, op->timeout_ms);
    nftnl_set_elem_add(s, e); /* s owns e now */
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(b),
                                                 !op->del                        ? NFT_MSG_NEWSETELEM
                                                 : op->destroy && h->destroy_ok ? NFT_MSG_DESTROYSETELEM
                                                                                : NFT_MSG_DELSETELEM,
                                                 NFPROTO_INET,
                                                 (op->del ? 0 : NLM_F_CREATE) | NLM_F_ACK, seq);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    mnl_nlmsg_batch_next(b);
    return true;
}

/* What send_chunk's acks are matched against: the batch's begin (first) and its elements'
   sequence numbers (base .. base + m - 1, element i is ops[idx[i]]). */
typedef struct chunk_acks {
    fwx__nftnl_op *ops;
    const size_t *idx;
    size_t m, answered;
    uint32_t first, base;
    int batch_err;
} chunk_acks;

static bool chunk_ack(const struct nlmsghdr *nlh, void *arg)
{
    chunk_acks *c = arg;
    if (nlh->nlmsg_type != NLMSG_ERROR)
        return true;
    int err = -((const struct nlmsgerr *)mnl_nlmsg_get_payload(nlh))->error;
    uint32_t seq = nlh->nlmsg_seq;
    if (seq == c->first) {
        c->batch_err = err;
    } else if (seq >= c->base && seq < c->base + c->m && c->ops[c->idx[seq - c->base]].err == -1) {
        c->ops[c->idx[seq - c->base]].err = err;
        c->answered++;
    }
    return true;
}

/*
 * One transaction of ops[idx[0..m)] (those still to send). Fills each one's err from its ack;
 * *batch_err gets an error the kernel gave the batch as a whole (no rights, a failed commit).
 * Returns -1 when the socket failed (errno), else 0.
 */
static int send_chunk(fwx__nftnl *h, fwx__nftnl_op *ops, const size_t *idx, size_t m, int *batch_err)
{
    struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(h->buf, BATCH_LIMIT);
    if (b == NULL)
        return errno = ENOMEM, -1;
    uint32_t first = h->seq;
    nftnl_batch_begin(mnl_nlmsg_batch_current(b), h->seq++);
    mnl_nlmsg_batch_next(b);
    uint32_t base = h->seq;
    size_t sent = 0;
    for (size_t i = 0; i < m; i++) {
        ops[idx[i]].err = -1; /* not answered yet */
        if (mnl_nlmsg_batch_size(b) + 1024 > BATCH_LIMIT) {
            ops[idx[i]].err = E2BIG; /* a group of more than ~300 elements: none here */
            continue;
        }
        if (put_op(h, b, &ops[idx[i]], base + (uint32_t)i))
            sent++;
    }
    h->seq = base + (uint32_t)m;
    nftnl_batch_end(mnl_nlmsg_batch_current(b), h->seq++);
    mnl_nlmsg_batch_next(b);
    *batch_err = 0;
    ssize_t rc = sent == 0 ? 0 : mnl_socket_sendto(h->nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b));
    mnl_nlmsg_batch_stop(b);
    if (rc < 0)
        return -1;
    /* Every answer is queued already (the kernel ran the batch inside sendmsg). */
    chunk_acks c = {.ops = ops, .idx = idx, .m = m, .first = first, .base = base};
    while (sent > 0 && c.answered < sent) {
        int got = ack_each(h, chunk_ack, &c);
        if (got < 0)
            return -1;
        if (c.batch_err != 0 && c.answered == 0)
            break; /* refused as a whole before any element was looked at */
        if (got < ACK_BATCH)
            break; /* the queue is empty: what is missing never came (EPROTO below) */
    }
    *batch_err = c.batch_err;
    for (size_t i = 0; i < m; i++)
        if (ops[idx[i]].err == -1)
            ops[idx[i]].err = c.batch_err != 0 ? c.batch_err : EPROTO; /* no answer: never taken as done */
    return 0;
}

int fwx__nftnl_apply(fwx__nftnl *h, fwx__nftnl_op *ops, size_t n)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (idx == NULL) {
        for (size_t i = 0; i < n; i++)
            ops[i].err = ENOMEM;
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        ops[i].err = 0;
    /* A chunk never splits a group: a group is one transaction. */
    size_t at = 0;
    int sock_err = 0;
    while (at < n) {
        size_t end = at + 1;
        while (end < n && (end - at < CHUNK || ops[end].group == ops[end - 1].group))
            end++;
        for (int round = 0; round < MAX_ROUNDS; round++) {
            size_t m = 0;
            for (size_t i = at; i < end; i++)
                if (round == 0 || ops[i].err == -2) /* -2: to send again */
                    idx[m++] = i;
            if (m == 0)
                break;
            int batch_err = 0;
            if (send_chunk(h, ops, idx, m, &batch_err) != 0) {
                sock_err = errno ? errno : EIO;
                for (size_t i = 0; i < m; i++)
                    ops[idx[i]].err = sock_err;
                break;
            }
            bool failed = false;
            for (size_t i = 0; i < m; i++)
                failed |= ops[idx[i]].err != 0;
            if (!failed || batch_err != 0)
                break; /* done, or refused as a whole (every op has the batch's error) */
            /* The transaction was rolled back: the groups with a failed element stay failed
               (each op of such a group keeps its error, or gets ECANCELED), the others are
               sent again at once. A group's ops are contiguous. */
            for (size_t g0 = 0, g1; g0 < m; g0 = g1) {
                bool group_failed = false;
                for (g1 = g0; g1 < m && ops[idx[g1]].group == ops[idx[g0]].group; g1++)
                    group_failed |= ops[idx[g1]].err != 0;
                for (size_t i = g0; i < g1; i++) {
                    fwx__nftnl_op *o = &ops[idx[i]];
                    o->err = group_failed ? (o->err != 0 ? o->err : ECANCELED) : -2;
                }
            }
            if (round == MAX_ROUNDS - 1)
                for (size_t i = 0; i < m; i++)
                    if (ops[idx[i]].err == -2)
                        ops[idx[i]].err = ECANCELED; /* rare: the kernel answers every failing element of a batch */
        }
        at = end;
    }
    free(idx);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += ops[i].err != 0;
    return sock_err != 0 ? -sock_err : (int)failed;
}

bool fwx__nftnl_probe_destroy(fwx__nftnl *h, const char *set, const char *key)
{
    h->destroy_ok = true;
    fwx__nftnl_op op = {.del = true, .destroy = true, .set = set, .key = key};
    h->destroy_ok = fwx__nftnl_apply(h, &op, 1) == 0;
    return h->destroy_ok;
}

/* fwx__nftnl_has's answer: the element (found), then the ack that ends it (result). */
typedef struct has_answer {
    uint32_t seq;
    int found, result;
    bool done;
} has_answer;

static bool has_ack(const struct nlmsghdr *m, void *arg)
{
    has_answer *a = arg;
    if (m->nlmsg_seq != a->seq)
        return true; /* an earlier request's late answer: not ours */
    if (m->nlmsg_type == NLMSG_ERROR) {
        int err = -((const struct nlmsgerr *)mnl_nlmsg_get_payload(m))->error;
        a->result = err == 0 ? a->found : err == ENOENT ? 0 : -err;
        a->done = true;
        return false;
    }
    if (NFNL_MSG_TYPE(m->nlmsg_type) == NFT_MSG_NEWSETELEM)
        a->found = 1;
    return true;
}

int fwx__nftnl_has(fwx__nftnl *h, const char *set, const uint8_t *key, size_t klen)
{
    struct nftnl_set_elem *e = NULL;
    struct nftnl_set *s = one_elem(h, set, key, klen, &e);
    if (s == NULL)
        return -ENOMEM;
    nftnl_set_elem_add(s, e); /* s owns e now */
    char req[512];
    uint32_t seq = h->seq++;
    /* A lookup of one element (no NLM_F_DUMP): the element back, or ENOENT. Not a batch message:
       the kernel answers inside sendmsg, so the answer is queued when sendto returns. */
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(req, NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_ACK, seq);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    has_answer a = {.seq = seq, .result = -EPROTO}; /* no ack: no answer */
    for (int reads = 0; reads < 2 && !a.done; reads++) { /* the element, then the ack: queued together */
        int got = ack_each(h, has_ack, &a);
        if (got < 0)
            return -errno;
        if (got == 0)
            break;
    }
    return a.result;
}
