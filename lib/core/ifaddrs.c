/*
 * fwx - the gateway's own addresses, learned from the system.
 *
 * fwx_firewall_options::local_addresses lists what the host knows; a gateway that is not told
 * every address would let a SOCKS CONNECT, a PORT or a redirect reach services on its other
 * interfaces. fwx_firewall_track_local_addresses() reads the interface addresses once
 * (getifaddrs) and opens an rtnetlink socket subscribed to IPv4 and IPv6 address changes.
 * Rationale for how it follows them: every check first drains that socket without blocking
 * (one recv that usually says EAGAIN) and re-reads the table only when the kernel announced a
 * change. The kernel queues the announcement before `ip addr add` returns, so a check that runs
 * after the change always sees it; a watcher on the loop could be served after the connection
 * that needs the new address. An overflowed socket (ENOBUFS) re-reads as well.
 * Addresses of loopback interfaces are left to the loopback rule (loopback_hosts decides them).
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

#include <errno.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fwx__ifaddrs {
    int nl_fd; /* -1: no notifications, re-read on every check */
    struct sockaddr_storage *addr;
    size_t n;
};

static bool reload(fwx_firewall *fw, fwx__ifaddrs *t)
{
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) != 0) {
        fwx__log(fw, FWX_LOG_WARN, "firewall \"%s\": cannot read the interface addresses: %s", fw->name,
                 strerror(errno));
        return false;
    }
    size_t n = 0;
    for (struct ifaddrs *i = all; i != NULL; i = i->ifa_next)
        if (i->ifa_addr != NULL && (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6))
            n++;
    struct sockaddr_storage *a = calloc(n ? n : 1, sizeof *a);
    if (a == NULL) {
        freeifaddrs(all);
        return false;
    }
    size_t k = 0;
    for (struct ifaddrs *i = all; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        if (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)
            continue;
        if (fwx__sa_canon(i->ifa_addr, fwx__sa_len(i->ifa_addr), &a[k]))
            k++;
    }
    freeifaddrs(all);
    free(t->addr);
    t->addr = a;
    t->n = k;
    return true;
}

/* Drains the notification socket; true if the table may be stale. */
static bool changed(fwx__ifaddrs *t)
{
    if (t->nl_fd < 0)
        return true;
    bool any = false;
    char buf[8192];
    /* Bounded: a burst of changes is read in at most 64 gulps, then re-read anyway. */
    for (int i = 0; i < 64; i++) {
        ssize_t r = recv(t->nl_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) {
            any = true;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ENOBUFS)
            any = true; /* notifications were lost: the table must be read again */
        return any;
    }
    return true;
}

fwx_result fwx_firewall_track_local_addresses(fwx_firewall *fw)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    if (fw->sys != NULL)
        return FWX_S_OK;
    fwx__ifaddrs *t = calloc(1, sizeof *t);
    if (t == NULL)
        return FWX_E_OUTOFMEMORY;
    t->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (t->nl_fd >= 0) {
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
        if (bind(t->nl_fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(t->nl_fd);
            t->nl_fd = -1;
        }
    }
    if (t->nl_fd < 0)
        fwx__log(fw, FWX_LOG_WARN,
                 "firewall \"%s\": no address notifications (%s): the interface addresses are read on every check",
                 fw->name, strerror(errno));
    if (!reload(fw, t)) {
        if (t->nl_fd >= 0)
            close(t->nl_fd);
        free(t);
        return FWX_E_FAIL;
    }
    fw->sys = t;
    fwx__log(fw, FWX_LOG_DEBUG, "firewall \"%s\": %zu interface addresses count as the gateway's own", fw->name,
             t->n);
    return FWX_S_OK;
}

bool fwx__ifaddrs_contains(const fwx_firewall *fw, const struct sockaddr *addr)
{
    fwx__ifaddrs *t = fw->sys;
    if (t == NULL)
        return false;
    /* The table is a cache of kernel state, not of the firewall's: refreshing it on a const
       firewall is fine (fw->sys points to mutable memory). */
    if (changed(t) && !reload((fwx_firewall *)fw, t)) {
        /* Unreadable: keep the last table (it is never emptied by a failure). */
    }
    for (size_t i = 0; i < t->n; i++)
        if (fwx__sa_same_ip((const struct sockaddr *)&t->addr[i], addr))
            return true;
    return false;
}

void fwx__ifaddrs_free(fwx_firewall *fw)
{
    fwx__ifaddrs *t = fw->sys;
    if (t == NULL)
        return;
    if (t->nl_fd >= 0)
        close(t->nl_fd);
    free(t->addr);
    free(t);
    fw->sys = NULL;
}
