/*
 * fwx - caps on what one SOCKS client can hold; see socks_caps.h.
 *
 * Without them one client could hold 300 BINDs, and under a 64-descriptor limit 25 BINDs cut
 * off every other client. Clients are counted by address (a client's port changes with each
 * connection); an address's entry lives while it holds anything.
 * SPDX-License-Identifier: MIT
 */
#include "backends/proxy/proxy_impl.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct fwx__socks_holder {
    struct sockaddr_storage addr; /* port 0 */
    uint32_t n[FWX__SOCKS_KINDS];
    fwx__socks_holder *next;
};

/* The names the caps have in fwx-gateway's config (gateway.socks_limits), for the log. */
static const char *const kind_name[FWX__SOCKS_KINDS] = {"connections", "binds", "udp", "pending"};

static uint32_t clamp(uint64_t v, uint32_t lo, uint32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (uint32_t)v;
}

static void limits_defaults(fwx_socks_limits *l)
{
    struct rlimit rl;
    uint64_t fds = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        fds = rl.rlim_cur;
    memset(l, 0, sizeof *l);
    l->struct_size = sizeof *l;
    l->connections_per_client = 32;
    l->binds_per_client = 8;
    l->udp_per_client = 8;
    l->pending_per_client = 4;
    /* A control connection is one descriptor; a BIND or a UDP association two or three
       (listener or UDP socket, the accepted peer): keep most descriptors for relays. */
    l->connections = clamp(fds / 4, 64, 4096);
    l->binds = clamp(fds / 8, 16, 1024);
    l->udp = clamp(fds / 8, 16, 1024);
    l->pending = 64;
}

fwx_result fwx_socks_limits_init_sized(fwx_socks_limits *limits, uint32_t struct_size)
{
    fwx_socks_limits l;
    if (limits == NULL)
        return FWX_E_POINTER;
    limits_defaults(&l);
    return FWX__STRUCT_INIT(limits, struct_size, l, FWX__FIRST_SOCKS_LIMITS) ? FWX_S_OK : FWX_E_INVALIDARG;
}

static void caps_ready(fwx__socks_caps *caps)
{
    if (caps->ready)
        return;
    fwx_socks_limits l;
    limits_defaults(&l);
    const uint32_t pc[] = {l.connections_per_client, l.binds_per_client, l.udp_per_client, l.pending_per_client};
    const uint32_t tot[] = {l.connections, l.binds, l.udp, l.pending};
    memcpy(caps->per_client, pc, sizeof pc);
    memcpy(caps->total, tot, sizeof tot);
    caps->ready = true;
}

fwx_result fwx_proxy_socks_set_limits(fwx_firewall *fw, const fwx_socks_limits *in)
{
    pstate *st = fwx_firewall_backend_state_of(fw, &fwx__proxy_backend);
    if (st == NULL || st->magic != FWX__PROXY_MAGIC)
        return FWX_E_NOT_SUPPORTED;
    fwx_socks_limits lim;
    if (in == NULL)
        return FWX_E_INVALIDARG;
    if (!FWX__STRUCT_IN(lim, in, FWX__FIRST_SOCKS_LIMITS))
        return fwx__struct_refused(fw, "fwx_proxy_socks_set_limits", "fwx_socks_limits", in->struct_size,
                                   FWX__FIRST_SOCKS_LIMITS, sizeof lim);
    const fwx_socks_limits *limits = &lim;
    fwx_socks_limits d;
    limits_defaults(&d);
    const uint32_t in_pc[] = {limits->connections_per_client, limits->binds_per_client, limits->udp_per_client,
                              limits->pending_per_client};
    const uint32_t in_tot[] = {limits->connections, limits->binds, limits->udp, limits->pending};
    const uint32_t d_pc[] = {d.connections_per_client, d.binds_per_client, d.udp_per_client, d.pending_per_client};
    const uint32_t d_tot[] = {d.connections, d.binds, d.udp, d.pending};
    uint32_t pc[FWX__SOCKS_KINDS], tot[FWX__SOCKS_KINDS];
    for (int k = 0; k < FWX__SOCKS_KINDS; k++) {
        pc[k] = in_pc[k] ? in_pc[k] : d_pc[k];
        tot[k] = in_tot[k] ? in_tot[k] : d_tot[k];
        /* A global cap set alone that is under twice the default per-client cap lowers the
           per-client cap to fit, rather than refusing a setting the caller never made. */
        if (!in_pc[k] && pc[k] > tot[k] / 2)
            pc[k] = tot[k] / 2 ? tot[k] / 2 : 1;
        if (pc[k] > tot[k] / 2) {
            fwx_firewall_log(fw, FWX_LOG_ERROR,
                             "socks limits: %s per client (%u) is more than half of %s in all (%u): one "
                             "client could starve the others",
                             kind_name[k], pc[k], kind_name[k], tot[k]);
            return FWX_E_INVALIDARG;
        }
    }
    memcpy(st->socks_caps.per_client, pc, sizeof pc);
    memcpy(st->socks_caps.total, tot, sizeof tot);
    st->socks_caps.ready = true;
    return FWX_S_OK;
}

/* The in-all counts of the firewalls that share their listeners (see socks_caps.h). */
static atomic_uint shared_in_use[FWX__SOCKS_KINDS];

static atomic_uint *in_use(fwx__socks_caps *caps, int kind)
{
    return caps->shared ? &shared_in_use[kind] : &caps->in_use[kind];
}

static unsigned bucket_of(const struct sockaddr_storage *a)
{
    const uint8_t *p = a->ss_family == AF_INET ? (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr
                                               : (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr;
    size_t n = a->ss_family == AF_INET ? 4 : 16;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % 64;
}

bool fwx__socks_caps_take(fwx_firewall *fw, fwx__socks_caps *caps, fwx__socks_hold *hold,
                          const struct sockaddr *addr, int kind, char *why, size_t whylen, bool *global)
{
    caps_ready(caps);
    (void)fw;
    fwx__socks_holder *h = hold->h;
    if (h == NULL) {
        struct sockaddr_storage key;
        if (!fwx__sa_canon(addr, fwx__sa_len(addr), &key))
            memcpy(&key, addr, fwx__sa_len(addr));
        fwx__sa_set_port((struct sockaddr *)&key, 0);
        unsigned b = bucket_of(&key);
        for (h = caps->buckets[b]; h != NULL; h = h->next)
            if (fwx__sa_same_ip((struct sockaddr *)&h->addr, (struct sockaddr *)&key))
                break;
        if (h == NULL) {
            if ((h = calloc(1, sizeof *h)) == NULL) {
                snprintf(why, whylen, "out of memory");
                *global = true;
                return false;
            }
            h->addr = key;
            h->next = caps->buckets[b];
            caps->buckets[b] = h;
        }
        hold->h = h;
    }
    if (h->n[kind] >= caps->per_client[kind]) {
        snprintf(why, whylen, "at its cap of %u %s per client (socks_limits.%s_per_client)", caps->per_client[kind],
                 kind_name[kind], kind_name[kind]);
        *global = false;
    } else if (atomic_fetch_add(in_use(caps, kind), 1) >= caps->total[kind]) {
        atomic_fetch_sub(in_use(caps, kind), 1);
        snprintf(why, whylen, "the gateway is at its cap of %u %s in all (socks_limits.%s)", caps->total[kind],
                 kind_name[kind], kind_name[kind]);
        *global = true;
    } else {
        h->n[kind]++;
        hold->n[kind]++;
        return true;
    }
    fwx__socks_caps_put(caps, hold, -1); /* frees a fresh entry that holds nothing */
    return false;
}

fwx_log_level fwx__socks_caps_log_level(fwx__socks_caps *caps, int kind, uint32_t *quiet)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    return fwx__logpace_say(&caps->pace[kind], now, quiet) ? FWX_LOG_WARN : FWX_LOG_DEBUG;
}

void fwx__socks_caps_put(fwx__socks_caps *caps, fwx__socks_hold *hold, int kind)
{
    fwx__socks_holder *h = hold->h;
    if (h == NULL)
        return;
    if (kind >= 0 && hold->n[kind] > 0) {
        hold->n[kind]--;
        h->n[kind]--;
        atomic_fetch_sub(in_use(caps, kind), 1);
    }
    for (int k = 0; k < FWX__SOCKS_KINDS; k++)
        if (hold->n[k] > 0)
            return;
    hold->h = NULL;
    for (int k = 0; k < FWX__SOCKS_KINDS; k++)
        if (h->n[k] > 0)
            return;
    fwx__socks_holder **pp = &caps->buckets[bucket_of(&h->addr)];
    while (*pp != h)
        pp = &(*pp)->next;
    *pp = h->next;
    free(h);
}

void fwx__socks_caps_put_all(fwx__socks_caps *caps, fwx__socks_hold *hold)
{
    for (int k = 0; k < FWX__SOCKS_KINDS; k++)
        while (hold->h != NULL && hold->n[k] > 0)
            fwx__socks_caps_put(caps, hold, k);
}
