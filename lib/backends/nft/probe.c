/*
 * fwx - the "nft" backend's probe: what the running kernel supports, found by trying it.
 *
 * Each feature is one small batch in the backend's own table (a set, a non-base chain, a rule
 * using the feature's expression), removed again at the end. A non-base chain nobody jumps to
 * is never evaluated, so the probe rules match no packet; the kernel still loads and checks
 * each expression when the rule is added, which is the question. ctnetlink is asked directly
 * (one netlink request), with no library.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

unsigned fwx__nft_pretend_missing;

int fwx__nft_run(struct nft_ctx *nft, const char *cmds, char *err, size_t errlen)
{
    errno = 0;
    int rc = nft_run_cmd_from_buffer(nft, cmds);
    int saved = errno;
    const char *e = nft_ctx_get_error_buffer(nft); /* also rewinds the buffer for the next call */
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
        if (rc != 0 && e != NULL) {
            /* The first line says what failed; the rest echoes the command with carets. */
            size_t n = strcspn(e, "\n");
            if (n >= errlen)
                n = errlen - 1;
            memcpy(err, e, n);
            err[n] = '\0';
        }
        if (rc != 0 && err[0] == '\0')
            snprintf(err, errlen, "%s", saved ? strerror(saved) : "failed");
    }
    (void)nft_ctx_get_output_buffer(nft); /* drop anything a command printed */
    errno = saved;
    return rc == 0 ? 0 : -1;
}

/* One probe batch: the table name goes where the text says %s (every occurrence). */
static bool try_batch(struct nft_ctx *nft, const char *table, const char *fmt)
{
    char cmd[1024], err[256];
    /* fmt holds up to four %s, each the table. */
    snprintf(cmd, sizeof cmd, fmt, table, table, table, table);
    return fwx__nft_run(nft, cmd, err, sizeof err) == 0;
}

/* Asks ctnetlink for its statistics: an answer means conntrack is there and we may talk to it. */
static bool probe_ctnetlink(bool *events)
{
    *events = false;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0)
        return false;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct {
        struct nlmsghdr nh;
        struct nfgenmsg nf;
    } req = {
        .nh = {.nlmsg_len = sizeof req,
               .nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS,
               .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK,
               .nlmsg_seq = 1},
        .nf = {.nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0, .res_id = 0},
    };
    bool ok = false;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&sa, sizeof sa) == (ssize_t)sizeof req) {
        char buf[8192];
        /* A statistics message, then the ack; or one error. Bounded: a few reads at most. */
        for (int i = 0; i < 4; i++) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0)
                break;
            struct nlmsghdr *nh = (struct nlmsghdr *)buf;
            bool done = false;
            for (; NLMSG_OK(nh, (size_t)r); nh = NLMSG_NEXT(nh, r)) {
                if (nh->nlmsg_type == NLMSG_ERROR) {
                    struct nlmsgerr *e = NLMSG_DATA(nh);
                    ok = e->error == 0;
                    done = true;
                    break;
                }
                if ((nh->nlmsg_type >> 8) == NFNL_SUBSYS_CTNETLINK)
                    ok = true;
            }
            if (done)
                break;
        }
    }
    if (ok) {
        /* Events: joining the "new connection" group works only with events built in. */
        unsigned grp = NFNLGRP_CONNTRACK_NEW;
        *events = setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp, sizeof grp) == 0 &&
                  access("/proc/sys/net/netfilter/nf_conntrack_events", F_OK) == 0;
    }
    close(fd);
    return ok;
}

void fwx__nft_probe(struct nft_ctx *nft, const char *table, fwx__nft_features *f)
{
    /* The caller created the table, so nf_tables and our rights are known to be there. */
    f->rights = true;
    f->nf_tables = true;
    f->set_timeout =
        try_batch(nft, table,
                  "add set inet %s fwx_probe_set { type ipv4_addr . inet_service; flags timeout; }\n"
                  "add element inet %s fwx_probe_set { 192.0.2.1 . 9 timeout 1s }\n");
    bool chain = try_batch(nft, table, "add chain inet %s fwx_probe\n");
    f->dynset_delete = f->set_timeout && chain &&
                       try_batch(nft, table,
                                 "add rule inet %s fwx_probe ip saddr . tcp dport @fwx_probe_set"
                                 " delete @fwx_probe_set { ip saddr . tcp dport }\n");
    f->nat = chain && try_batch(nft, table,
                                "add chain inet %s fwx_probe_nat { type nat hook postrouting priority srcnat + 1;"
                                " policy accept; }\n"
                                "add rule inet %s fwx_probe ip daddr 192.0.2.1 tcp dport 9 dnat ip to 192.0.2.2\n"
                                "add rule inet %s fwx_probe ip daddr 192.0.2.1 tcp dport 9 masquerade\n");
    f->tproxy = chain && try_batch(nft, table,
                                   "add rule inet %s fwx_probe ip daddr 192.0.2.1 meta l4proto tcp"
                                   " tproxy ip to 127.0.0.1:9\n");
    f->conntrack = try_batch(nft, table, "add rule inet %s fwx_probe ct state new\n") && probe_ctnetlink(&f->ct_events);
    if (!f->conntrack)
        f->ct_events = false;
    /* Remove what the probe made; each object on its own, since any of them may be missing. */
    (void)try_batch(nft, table, "delete chain inet %s fwx_probe_nat\n");
    (void)try_batch(nft, table, "flush chain inet %s fwx_probe\ndelete chain inet %s fwx_probe\n");
    (void)try_batch(nft, table, "delete set inet %s fwx_probe_set\n");

    unsigned pretend = fwx__nft_pretend_missing;
    if (pretend & FWX__NFT_F_NF_TABLES)
        f->nf_tables = false;
    if (pretend & FWX__NFT_F_SET_TIMEOUT)
        f->set_timeout = false;
    if (pretend & FWX__NFT_F_DYNSET_DELETE)
        f->dynset_delete = false;
    if (pretend & FWX__NFT_F_NAT)
        f->nat = false;
    if (pretend & FWX__NFT_F_TPROXY)
        f->tproxy = false;
    if (pretend & FWX__NFT_F_CONNTRACK)
        f->conntrack = false;
    if (pretend & FWX__NFT_F_CT_EVENTS)
        f->ct_events = false;
}

unsigned fwx__nft_missing(const fwx__nft_features *f)
{
    unsigned m = 0;
    if (!f->nf_tables)
        m |= FWX__NFT_F_NF_TABLES;
    if (!f->set_timeout)
        m |= FWX__NFT_F_SET_TIMEOUT;
    if (!f->dynset_delete)
        m |= FWX__NFT_F_DYNSET_DELETE;
    if (!f->nat)
        m |= FWX__NFT_F_NAT;
    if (!f->tproxy)
        m |= FWX__NFT_F_TPROXY;
    if (!f->conntrack)
        m |= FWX__NFT_F_CONNTRACK;
    if (!f->ct_events)
        m |= FWX__NFT_F_CT_EVENTS;
    return m;
}

const char *fwx__nft_feature_names(unsigned mask, char *buf, size_t len)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {FWX__NFT_F_NF_TABLES, "nf_tables"},
        {FWX__NFT_F_SET_TIMEOUT, "set element timeouts"},
        {FWX__NFT_F_DYNSET_DELETE, "set delete from the packet path"},
        {FWX__NFT_F_NAT, "nat"},
        {FWX__NFT_F_TPROXY, "tproxy"},
        {FWX__NFT_F_CONNTRACK, "conntrack netlink"},
        {FWX__NFT_F_CT_EVENTS, "conntrack events"},
    };
    size_t used = 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(mask & names[i].bit))
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", names[i].name);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    return buf;
}
