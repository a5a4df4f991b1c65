/*
 * fwx - the firewall object: options, logging, the expiry timer, IFWXFirewall, close.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "objects/objects.h"
#include "core/log.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static const IFWXFirewallVtbl firewall_vtbl;

static fwx_firewall *fw_from(IFWXFirewall *i) { return fwx__container_of(i, fwx_firewall, iface); }

static void options_defaults(fwx_firewall_options *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->name = "fwx";
    o->timeout_ms = 60000;
    o->port_min = 49152;
    o->port_max = 65535;
    o->max_permissions_per_session = 64;
    o->max_permissions = 65536;
    o->max_ports_per_session = 64;
    o->max_ports = 16384;
    o->max_sessions = 100000;
    o->log_level = FWX_LOG_INFO;
}

fwx_result fwx_firewall_options_init_sized(fwx_firewall_options *opts, uint32_t struct_size)
{
    fwx_firewall_options o;
    if (opts == NULL)
        return FWX_E_POINTER;
    options_defaults(&o);
    return FWX__STRUCT_INIT(opts, struct_size, o, FWX__FIRST_FIREWALL_OPTIONS) ? FWX_S_OK : FWX_E_INVALIDARG;
}

/* The symbol programs built against the 1.0 headers call (those headers had no macro, and their
   struct ended at loopback_hosts): it fills exactly that much, never the newer fields. */
void(fwx_firewall_options_init)(fwx_firewall_options *opts)
{
    (void)fwx_firewall_options_init_sized(opts, FWX__SIZE_THROUGH(fwx_firewall_options, loopback_hosts));
}

static void vlog(fwx_firewall *fw, fwx_log_level level, const char *fmt, va_list ap)
{
    fwx__logv(fw, level, NULL, fmt, ap); /* lib/core/log.c: to the host's sink, with fields */
}

void (fwx__log)(fwx_firewall *fw, fwx_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fw, level, fmt, ap);
    va_end(ap);
}

void fwx_firewall_log(fwx_firewall *fw, fwx_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fw, level, fmt, ap);
    va_end(ap);
}

void fwx__fail(fwx_firewall *fw, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fw->last_error, sizeof fw->last_error, fmt, ap);
    va_end(ap);
    fwx__log(fw, FWX_LOG_ERROR, "%s", fw->last_error);
}

const char *fwx_firewall_last_error(const fwx_firewall *fw)
{
    return fw ? fw->last_error : "";
}

bool fwx__firewall_is_local(const fwx_firewall *fw, const struct sockaddr *addr)
{
    if (fwx__sa_is_loopback(addr) && (!fw->opts.loopback_hosts || addr->sa_family == AF_INET6))
        return true;
    for (size_t i = 0; i < fw->n_local; i++)
        if (fwx__sa_same_ip((const struct sockaddr *)&fw->local[i], addr))
            return true;
    if (fwx__ifaddrs_contains(fw, addr))
        return true;
    /* Where a publishing rule listens is the gateway's own address, configured or not. */
    for (size_t i = 0; i < fw->n_published; i++) {
        const struct sockaddr *l = (const struct sockaddr *)&fw->published[i].address;
        if (!fwx__sa_is_unspecified(l) && fwx__sa_same_ip(l, addr))
            return true;
    }
    return false;
}

const char *fwx__firewall_forbidden_host(const fwx_firewall *fw, const struct sockaddr *addr)
{
    if (fwx__sa_is_unspecified(addr))
        return "the unspecified address";
    if (fwx__sa_is_this_network(addr))
        return "an address of 0.0.0.0/8 (this host on this network)";
    if (fwx__sa_is_multicast(addr))
        return "a multicast address";
    if (fwx__sa_is_broadcast(addr))
        return "the broadcast address";
    if (fwx__firewall_is_local(fw, addr))
        return fwx__sa_is_loopback(addr) ? "a loopback address" : "an address of the gateway";
    return NULL;
}

uint64_t fwx__firewall_new_id(fwx_firewall *fw) { return ++fw->next_id; }

/* ---- expiry ------------------------------------------------------------------------------
 * One timer for the whole firewall, armed at the earliest deadline. Deadlines are nearly
 * always appended in order (every grant gets now + the same timeout), so insertion walks
 * from the tail and is O(1) in practice. */

static void expiry_cb(uv_timer_t *t);

static void expiry_arm(fwx_firewall *fw)
{
    if (fwx__list_empty(&fw->expiry)) {
        uv_timer_stop(&fw->timer);
        return;
    }
    fwx__grant *first = fwx__list_entry(fw->expiry.next, fwx__grant, expiry_node);
    uint64_t now = uv_now(fw->loop);
    uv_timer_start(&fw->timer, expiry_cb, first->expires > now ? first->expires - now : 0, 0);
}

static void expiry_cb(uv_timer_t *t)
{
    fwx_firewall *fw = t->data;
    uint64_t now = uv_now(fw->loop);
    /* Bounded by the number of grants: each pass removes the head. */
    while (!fwx__list_empty(&fw->expiry)) {
        fwx__grant *g = fwx__list_entry(fw->expiry.next, fwx__grant, expiry_node);
        if (g->expires > now)
            break;
        fwx__grant_expired(g); /* removes g from the list */
    }
    expiry_arm(fw);
}

void fwx__expiry_add(fwx_firewall *fw, fwx__grant *g, uint64_t expires)
{
    g->expires = expires;
    fwx__list *pos = fw->expiry.prev;
    while (pos != &fw->expiry && fwx__list_entry(pos, fwx__grant, expiry_node)->expires > expires)
        pos = pos->prev;
    /* insert after pos */
    g->expiry_node.prev = pos;
    g->expiry_node.next = pos->next;
    pos->next->prev = &g->expiry_node;
    pos->next = &g->expiry_node;
    expiry_arm(fw);
}

void fwx__expiry_remove(fwx_firewall *fw, fwx__grant *g)
{
    if (g->expiry_node.next == NULL || g->expiry_node.next == &g->expiry_node)
        return;
    fwx__list_remove(&g->expiry_node);
    if (!fw->closing)
        expiry_arm(fw);
}

/* ---- create ------------------------------------------------------------------------------- */

fwx_result fwx_firewall_new(uv_loop_t *loop, const fwx_firewall_options *opts, fwx_firewall **out)
{
    fwx_firewall_options o;
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (loop == NULL)
        return FWX_E_INVALIDARG;
    options_defaults(&o);
    /* Fields the caller's size does not cover are 0 here: each has 0 as "the default" below. */
    if (opts != NULL && !FWX__STRUCT_IN(o, opts, FWX__FIRST_FIREWALL_OPTIONS))
        return FWX_E_INVALIDARG; /* no firewall yet to log it */
    if (o.name == NULL || o.name[0] == '\0')
        o.name = "fwx";
    if (o.timeout_ms == 0)
        o.timeout_ms = 60000;
    if (o.port_min == 0 && o.port_max == 0) {
        o.port_min = 49152;
        o.port_max = 65535;
    }
    /* Secondary ports below 1024 are never handed out, whatever the configuration. */
    if (o.port_min < 1024 || o.port_max < o.port_min)
        return FWX_E_INVALIDARG;
    if (o.n_local_addresses > 0 && o.local_addresses == NULL)
        return FWX_E_INVALIDARG;
    if (o.plugin_soft_limit_ms != 0 && o.plugin_hard_limit_ms != 0 && o.plugin_hard_limit_ms < o.plugin_soft_limit_ms)
        return FWX_E_INVALIDARG;

    fwx_firewall *fw = calloc(1, sizeof *fw);
    if (fw == NULL)
        return FWX_E_OUTOFMEMORY;
    fw->iface.lpVtbl = &firewall_vtbl;
    atomic_init(&fw->refs, 1);
    fw->loop = loop;
    fw->opts = o;
    fw->name = strdup(o.name);
    fw->opts.name = fw->name;
    if (o.n_local_addresses > 0) {
        fw->local = calloc(o.n_local_addresses, sizeof *fw->local);
        if (fw->local == NULL || fw->name == NULL) {
            free(fw->local);
            free(fw->name);
            free(fw);
            return FWX_E_OUTOFMEMORY;
        }
        for (size_t i = 0; i < o.n_local_addresses; i++) {
            const struct sockaddr *sa = (const struct sockaddr *)&o.local_addresses[i];
            if (!fwx__sa_canon(sa, sizeof o.local_addresses[i], &fw->local[i])) {
                free(fw->local);
                free(fw->name);
                free(fw);
                return FWX_E_INVALIDARG;
            }
        }
        fw->n_local = o.n_local_addresses;
    }
    fw->opts.local_addresses = NULL;
    if (fw->name == NULL) {
        free(fw->local);
        free(fw);
        return FWX_E_OUTOFMEMORY;
    }
    fwx__list_init(&fw->plugins);
    fwx__list_init(&fw->sessions);
    fwx__list_init(&fw->timers);
    fwx__list_init(&fw->expiry);
    fwx__list_init(&fw->address_factories);
    uv_timer_init(loop, &fw->timer);
    fw->timer.data = fw;
    /* The timer must not keep the host's loop alive when nothing else is going on. */
    uv_unref((uv_handle_t *)&fw->timer);
    fwx__timeouts_init(fw);
    fwx_result hr = fwx__watchdog_start(fw);
    if (FWX_FAILED(hr)) {
        fwx_firewall_close(fw, NULL, NULL);
        return hr;
    }
    *out = fw;
    return FWX_S_OK;
}

IFWXFirewall *fwx_firewall_iface(fwx_firewall *fw) { return fw ? &fw->iface : NULL; }
uv_loop_t *fwx_firewall_loop(fwx_firewall *fw) { return fw ? fw->loop : NULL; }

uint32_t fwx_firewall_timeout_ms(const fwx_firewall *fw) { return fw != NULL ? fwx__firewall_timeout_ms(fw) : 0; }

uint32_t fwx_firewall_listen_shared(const fwx_firewall *fw) { return fw != NULL ? fw->opts.listen_shared : 0; }

int32_t fwx_firewall_host_relay(const fwx_firewall *fw) { return fw != NULL && fw->host_relay; }

uint32_t fwx_firewall_protocol_filters(fwx_firewall *fw, const fwx_guid *protocol, const char **name)
{
    const fwx__protocol *proto =
        fw != NULL && fw->policy != NULL && protocol != NULL ? fwx__policy_protocol_by_guid(fw->policy, protocol) : NULL;
    if (name != NULL)
        *name = proto != NULL ? proto->name : NULL;
    return proto != NULL ? (uint32_t)proto->n_filters : 0;
}

const fwx__filter_ref *fwx__protocol_missing_filter(fwx_firewall *fw, const fwx__protocol *proto)
{
    for (size_t i = 0; proto != NULL && i < proto->n_filters; i++)
        if (fwx__plugin_for_filter(fw, &proto->filters[i]) == NULL)
            return &proto->filters[i];
    return NULL;
}

/* "ftp, conn-logger", or "none". */
static void loaded_names(fwx_firewall *fw, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins && len < size; n = n->next) {
        fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
        if (p->unloaded)
            continue;
        int w = snprintf(buf + len, size - len, "%s\"%s\"", len ? ", " : "", p->name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len == 0)
        snprintf(buf, size, "none");
}

/* Whether an interface carries exactly this address. */
static bool interface_has(const struct sockaddr *sa)
{
    struct ifaddrs *ifs = NULL;
    bool found = false;
    if (getifaddrs(&ifs) != 0)
        return false;
    for (struct ifaddrs *it = ifs; it != NULL && !found; it = it->ifa_next)
        found = it->ifa_addr != NULL && it->ifa_addr->sa_family == sa->sa_family && fwx__sa_same_ip(it->ifa_addr, sa);
    freeifaddrs(ifs);
    return found;
}

/* Whether this host can listen on sa: a bind to it (port 0) is the exact question, where a
   list of interface addresses would miss 127.0.0.0/8 and nonlocal binding; an IPv6 address
   still in duplicate address detection refuses the bind for a moment but is the host's. */
static bool host_holds(const struct sockaddr *sa)
{
    struct sockaddr_storage tmp;
    if (fwx__sa_is_unspecified(sa))
        return true;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: the listener will say */
    memcpy(&tmp, sa, fwx__sa_len(sa));
    fwx__sa_set_port((struct sockaddr *)&tmp, 0);
    int rc = bind(fd, (struct sockaddr *)&tmp, fwx__sa_len(sa));
    int e = errno;
    close(fd);
    return rc == 0 || e != EADDRNOTAVAIL || interface_has(sa);
}

/* "10.0.1.1, 192.168.5.1": this host's addresses of one family, for a message. */
static void host_addresses(int family, char *buf, size_t size)
{
    struct ifaddrs *ifs = NULL, *it;
    size_t len = 0;
    buf[0] = '\0';
    if (getifaddrs(&ifs) == 0) {
        for (it = ifs; it != NULL && len + 1 < size; it = it->ifa_next) {
            char a[FWX__SA_STRLEN];
            if (it->ifa_addr == NULL || it->ifa_addr->sa_family != family || (it->ifa_flags & IFF_LOOPBACK))
                continue;
            if (family == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr))
                continue;
            int w = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", fwx__sa_fmt_ip(it->ifa_addr, a));
            if (w < 0)
                break;
            len += (size_t)w;
        }
        freeifaddrs(ifs);
    }
    if (len == 0)
        snprintf(buf, size, "none but loopback");
}

static fwx_result check_error(fwx_config_error *err, const fwx_policy *p, int line, const char *key, const char *fmt,
                              ...) __attribute__((format(printf, 5, 6)));
static fwx_result check_error(fwx_config_error *err, const fwx_policy *p, int line, const char *key, const char *fmt,
                              ...)
{
    va_list ap;
    if (err == NULL)
        return FWX_E_CONFIG;
    memset(err, 0, sizeof *err);
    snprintf(err->file, sizeof err->file, "%s", fwx__policy_source(p));
    err->line = line;
    snprintf(err->key, sizeof err->key, "%s", key);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return FWX_E_CONFIG;
}

fwx_result fwx_firewall_check_policy(fwx_firewall *fw, const fwx_policy *policy, fwx_config_error *err)
{
    char key[128], names[160], g[FWX_GUID_STRLEN];
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if (fw == NULL || policy == NULL)
        return FWX_E_POINTER;
    for (size_t i = 0; i < fwx__policy_protocol_count(policy); i++) {
        const fwx__protocol *pr = fwx__policy_protocol_at(policy, i);
        const fwx__filter_ref *f = fwx__protocol_missing_filter(fw, pr);
        if (f == NULL)
            continue;
        loaded_names(fw, names, sizeof names);
        snprintf(key, sizeof key, "protocols.[%zu].filters.[%zu]", i, (size_t)(f - pr->filters));
        return check_error(err, policy, f->line, key,
                           "protocol \"%s\": no loaded plugin provides filter \"%s\" (loaded: %s); load its "
                           "plugin, or write a loaded plugin's name here",
                           pr->name, fwx__filter_ref_fmt(f, g), names);
    }
    for (size_t i = 0; i < fwx__policy_publish_count(policy); i++) {
        const fwx__publish_rule *r = fwx__policy_publish_at(policy, i);
        const struct sockaddr *l = (const struct sockaddr *)&r->listen;
        char a[FWX__SA_STRLEN], have[160];
        if (host_holds(l))
            continue;
        host_addresses(l->sa_family, have, sizeof have);
        snprintf(key, sizeof key, "publishing.[%zu].listen", i);
        return check_error(err, policy, r->line, key,
                           "publishing rule \"%s\": %s is not an address of this host (it has %s): listen on "
                           "one of those, or on %s",
                           r->name, fwx__sa_fmt_ip(l, a), have, l->sa_family == AF_INET ? "0.0.0.0" : "[::]");
    }
    return FWX_S_OK;
}

fwx_result fwx_firewall_set_policy(fwx_firewall *fw, fwx_policy *policy)
{
    if (fw == NULL) {
        fwx_policy_free(policy);
        return FWX_E_POINTER;
    }
    /* Plugins may still be loaded after the policy, so this is not refused here (hosts call
       fwx_firewall_check_policy first); until then such a protocol's connections are refused. */
    for (size_t i = 0; i < fwx__policy_protocol_count(policy); i++) {
        const fwx__protocol *pr = fwx__policy_protocol_at(policy, i);
        const fwx__filter_ref *f = fwx__protocol_missing_filter(fw, pr);
        char g[FWX_GUID_STRLEN];
        if (f != NULL)
            fwx__log(fw, FWX_LOG_WARN,
                     "policy %s:%d: protocol \"%s\" binds filter \"%s\", which no loaded plugin provides: its "
                     "connections are refused until one is loaded",
                     fwx__policy_source(policy), f->line, pr->name, fwx__filter_ref_fmt(f, g));
    }
    fwx_policy_free(fw->policy);
    fw->policy = policy;
    fwx__backend_policy_changed(fw);
    /* Live sessions stay; only the publishing listeners that changed are replaced. */
    return fwx__publish_sync(fw);
}

fwx_result fwx_firewall_get_stats(const fwx_firewall *fw, fwx_firewall_stats *out)
{
    if (fw == NULL || out == NULL)
        return FWX_E_POINTER;
    fwx_firewall_stats st = {.struct_size = sizeof st};
    st.sessions = fw->n_sessions;
    st.connections = fw->n_connections;
    st.permissions = fw->n_permissions;
    st.bound_ports = fw->n_ports;
    st.factories = fw->n_factories;
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next)
        st.plugins++;
    if (!FWX__STRUCT_OUT(out, st, FWX__FIRST_FIREWALL_STATS))
        return fwx__struct_refused((fwx_firewall *)fw, "fwx_firewall_get_stats", "fwx_firewall_stats", out->struct_size,
                                   FWX__FIRST_FIREWALL_STATS, sizeof st);
    return FWX_S_OK;
}

/* ---- close -------------------------------------------------------------------------------- */

static void firewall_free(fwx_firewall *fw)
{
    unsigned refs = atomic_load(&fw->refs);
    if (refs > 1)
        fwx__log(fw, FWX_LOG_WARN, "firewall \"%s\": %u references to IFWXFirewall were never released",
                 fw->name, refs - 1);
    fwx__redirect_firewall_free(fw);
    fwx__watchdog_stop(fw); /* before the plugins' names go: its signal handler reads them */
    fwx__log_fold_flush(fw);
    fwx__plugins_free_all(fw);
    /* Last use of fw: the callback may read it, but not keep it. */
    if (fw->close_cb != NULL)
        fw->close_cb(fw, fw->close_arg);
    fwx__ifaddrs_free(fw);
    free(fw->local);
    free(fw->name);
    free(fw);
}

/* Connection objects may outlive the close (a data path releases them from its own close
   callbacks), and their Release updates the firewall's count: the memory goes with the last. */
void fwx__firewall_connection_gone(fwx_firewall *fw)
{
    fw->n_connections--;
    if (fw->timer_closed && fw->n_connections == 0)
        firewall_free(fw);
}

static void on_timer_closed(uv_handle_t *h)
{
    fwx_firewall *fw = h->data;
    fw->timer_closed = true;
    if (fw->n_connections == 0)
        firewall_free(fw);
    else
        fwx__log(fw, FWX_LOG_DEBUG, "firewall \"%s\": closed, %u connection objects still referenced", fw->name,
                 fw->n_connections);
}

static void close_timer(fwx_firewall *fw) { uv_close((uv_handle_t *)&fw->timer, on_timer_closed); }

void fwx_firewall_close(fwx_firewall *fw, fwx_firewall_close_cb cb, void *arg)
{
    if (fw == NULL || fw->closing)
        return;
    fw->closing = true;
    fw->close_cb = cb;
    fw->close_arg = arg;
    /* Sessions first, so filters see their sessions end before they are shut down. */
    for (size_t i = 0, n = fwx__list_count(&fw->sessions); i < n && !fwx__list_empty(&fw->sessions); i++)
        fwx__session_end(fwx__list_entry(fw->sessions.next, fwx__session, node));
    fwx__list_assert_drained(&fw->sessions);
    fwx__plugins_close_all(fw);
    fwx__timers_close(fw); /* the filters are shut down: what they still hold only closes */
    fwx__backend_close(fw);
    fwx_policy_free(fw->policy);
    fw->policy = NULL;
    uv_timer_stop(&fw->timer);
    fwx__timeouts_close(fw, close_timer); /* then the expiry timer, whose close frees */
}

/* ---- IFWXFirewall ------------------------------------------------------------------------- */

static fwx_result fw_QueryInterface(IFWXFirewall *This, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    if (riid != NULL && (fwx_guid_equal(riid, &IID_IUnknown) || fwx_guid_equal(riid, &IID_IFWXFirewall))) {
        This->lpVtbl->AddRef(This);
        *ppv = This;
        return FWX_S_OK;
    }
    if (riid != NULL && fwx_guid_equal(riid, &IID_IFWXHostLog))
        return fwx__hostlog_new(fw_from(This), (IFWXHostLog **)ppv); /* lib/core/hostlog.c */
    if (riid != NULL && fwx_guid_equal(riid, &IID_IFWXTimer))
        return fwx__timer_new(fw_from(This), (IFWXTimer **)ppv); /* lib/core/timer.c */
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}

/* The firewall's count is informational: its life is fwx_firewall_new .. fwx_firewall_close. */
static uint32_t fw_AddRef(IFWXFirewall *This) { return atomic_fetch_add(&fw_from(This)->refs, 1) + 1; }
static uint32_t fw_Release(IFWXFirewall *This)
{
    fwx_firewall *fw = fw_from(This);
    unsigned cur = atomic_load(&fw->refs);
    /* Never below 1: the host's own reference is dropped by fwx_firewall_close. */
    while (cur > 1 && !atomic_compare_exchange_weak(&fw->refs, &cur, cur - 1))
        ;
    return cur > 1 ? cur - 1 : 1;
}

static fwx_result fw_CreateNetworkSocket(IFWXFirewall *This, int32_t Protocol, IFWXNetworkSocket **ppSocket)
{
    fwx_firewall *fw = fw_from(This);
    if (ppSocket == NULL)
        return FWX_E_POINTER;
    *ppSocket = NULL;
    if (Protocol != FWX_PROTOCOL_TCP && Protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    if (fw->closing)
        return FWX_E_TERMINATING;
    if (fw->backend == NULL || fw->backend->create_socket == NULL)
        return FWX_E_NOT_SUPPORTED;
    return fw->backend->create_socket(fw->backend_state, Protocol, ppSocket);
}

static fwx_result fw_CreateBuffer(IFWXFirewall *This, uint32_t dwSize, IFWXIOBuffer **ppBuffer)
{
    (void)This;
    if (ppBuffer == NULL)
        return FWX_E_POINTER;
    return fwx__iobuffer_new(dwSize, ppBuffer);
}

static fwx_result fw_CreateIpFilter(IFWXFirewall *This, IFWXIpFilter **ppIpFilter)
{
    (void)This;
    if (ppIpFilter == NULL)
        return FWX_E_POINTER;
    return fwx__ipfilter_new(ppIpFilter);
}

static fwx_result fw_GetClientSession(IFWXFirewall *This, const struct sockaddr *ClientAddress, uint32_t len,
                                      IFWXSession **ppSession)
{
    fwx_firewall *fw = fw_from(This);
    if (ppSession == NULL)
        return FWX_E_POINTER;
    *ppSession = NULL;
    fwx_session_params p = {
        .struct_size = sizeof p, .source = fwxSourceNAT, .client = ClientAddress, .client_len = len};
    fwx_result hr = fwx_session_open(fw, &p, ppSession);
    return FWX_SUCCEEDED(hr) ? FWX_S_OK : hr;
}

static fwx_result fw_CreatePrivateSession(IFWXFirewall *This, const struct sockaddr *ClientAddress, uint32_t len,
                                          const struct sockaddr *ProxyInternalAddress, uint32_t plen, IUnknown *pUser,
                                          IFWXSession **ppSession)
{
    fwx_firewall *fw = fw_from(This);
    struct sockaddr_storage client, gw;
    if (ppSession == NULL)
        return FWX_E_POINTER;
    *ppSession = NULL;
    if (pUser != NULL || !fwx__sa_canon(ClientAddress, len, &client))
        return FWX_E_INVALIDARG;
    if (ProxyInternalAddress != NULL && !fwx__sa_canon(ProxyInternalAddress, plen, &gw))
        return FWX_E_INVALIDARG;
    if (fw->closing)
        return FWX_E_TERMINATING;
    fwx__session *s = fwx__session_new(fw, fwxSourceWSP, (const struct sockaddr *)&client,
                                       ProxyInternalAddress ? (const struct sockaddr *)&gw : NULL, NULL,
                                       FWX_SESSION_PRIVATE);
    if (s == NULL)
        return FWX_E_OUTOFMEMORY;
    *ppSession = &s->iface; /* the new reference from fwx__session_new */
    return FWX_S_OK;
}

static const IFWXFirewallVtbl firewall_vtbl = {
    fw_QueryInterface,      fw_AddRef,         fw_Release,          fw_CreateNetworkSocket,
    fw_CreateBuffer,        fw_CreateIpFilter, fw_GetClientSession, fw_CreatePrivateSession,
};
