/*
 * fwx - the secondary-connection engine: AllowFutureConnect, BindForClient,
 * RedirectConnections, RetroactiveAllowBind, SetDataFilterFactory, and admission of the flows
 * they allow.
 *
 * Every grant lives in its session's list and in one lookup table (ports by protocol and
 * gateway port; permissions by protocol and target endpoint), so that admission is a hash
 * lookup and a session's end withdraws everything it set up.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

/* Flags each call accepts (as the SDK documents them; include/fwx/sdk.h). */
#define AFC_FLAGS                                                                                 \
    (FWX_FLAG_ADDRESS_BASED | FWX_FLAG_ALLOW_MULTIPLE | FWX_FLAG_TIMEOUT | FWX_FLAG_NO_KERNEL_MODE |  \
     FWX_FLAG_BIDIRECTIONAL | FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK | FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK | \
     FWX_FLAG_ALLOW_ADDRESSES_ALL | FWX_INCREASE_RECEIVE_BUFFER | FWX_FLAG_REPLY_FROM_PEER)
#define BFC_FLAGS                                                                                 \
    (FWX_FLAG_ALLOW_MULTIPLE | FWX_FLAG_TIMEOUT | FWX_FLAG_NO_KERNEL_MODE | FWX_FLAG_BIDIRECTIONAL |  \
     FWX_FLAG_PROXY_MODE | FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK | FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK |   \
     FWX_FLAG_ALLOW_ADDRESSES_ALL | FWX_INCREASE_RECEIVE_BUFFER)
#define RC_FLAGS (FWX_FLAG_ALLOW_MULTIPLE | FWX_FLAG_TIMEOUT | FWX_FLAG_NO_KERNEL_MODE | FWX_INCREASE_RECEIVE_BUFFER)
#define RAB_FLAGS (FWX_FLAG_BIDIRECTIONAL | FWX_INCREASE_RECEIVE_BUFFER)
/* Ports one BindForClient or RedirectConnections call may take at once. */
#define MAX_PORTS_PER_CALL 16
/* Aligned slots tried before giving up on a port range: bounded, and ample for a sane range. */
#define MAX_PORT_TRIES 2048


/* ---- firewall actions ---------------------------------------------------------------------- */

struct fwx__action {
    IFWXFirewallAction iface;
    atomic_uint refs;
    fwx__grant *grant; /* NULL once the grant is gone */
};

static fwx__action *action_from(IFWXFirewallAction *a) { return fwx__container_of(a, fwx__action, iface); }

static fwx_result a_QueryInterface(IFWXFirewallAction *This, const fwx_guid *riid, void **ppv)
{
    return fwx__query_one(This, &IID_IFWXFirewallAction, riid, ppv);
}

static uint32_t a_AddRef(IFWXFirewallAction *This) { return atomic_fetch_add(&action_from(This)->refs, 1) + 1; }

static uint32_t a_Release(IFWXFirewallAction *This)
{
    fwx__action *a = action_from(This);
    uint32_t n = atomic_fetch_sub(&a->refs, 1) - 1;
    if (n == 0) {
        /* Dropping the action does not cancel the permission: Cancel does. */
        if (a->grant != NULL)
            a->grant->action = NULL;
        free(a);
    }
    return n;
}

static fwx_result a_Cancel(IFWXFirewallAction *This)
{
    fwx__action *a = action_from(This);
    if (a->grant == NULL)
        return FWX_S_FALSE;
    fwx__grant_remove(a->grant, "cancelled");
    return FWX_S_OK;
}

static const IFWXFirewallActionVtbl action_vtbl = {a_QueryInterface, a_AddRef, a_Release, a_Cancel};

static IFWXFirewallAction *action_new(fwx__grant *g)
{
    fwx__action *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->iface.lpVtbl = &action_vtbl;
    atomic_init(&a->refs, 1);
    a->grant = g;
    g->action = a;
    return &a->iface;
}

/* ---- grants --------------------------------------------------------------------------------- */

const char *fwx__grant_type_name(fwx__grant_type t)
{
    switch (t) {
    case FWX__G_PERMISSION:
        return "permission";
    case FWX__G_BINDING:
        return "bound port";
    case FWX__G_REDIRECT:
        return "redirect port";
    case FWX__G_CLIENT_BIND:
        return "client bind";
    case FWX__G_FACTORY:
        return "data-filter factory";
    }
    return "grant";
}

static fwx__plugin *plugin_of_sf(fwx__session *s, IFWXSessionFilter *sf)
{
    for (size_t i = 0; sf != NULL && i < s->n_att; i++)
        if (s->att[i].sf == sf)
            return s->att[i].plugin;
    return NULL;
}

/* A request made outside any event and without a session filter comes from a data filter on
   one of the session's connections (the FTP filter reads PORT there): when a single plugin
   attached those, it made the request. NULL when none did or several did. */
static fwx__plugin *plugin_of_data_filters(fwx__session *s)
{
    fwx__plugin *found = NULL;
    for (const fwx__conn *c = fwx__session_conn_first(s); c != NULL; c = fwx__session_conn_next(c)) {
        for (size_t i = 0; i < c->n_dfs; i++) {
            fwx__plugin *p = c->dfs[i].plugin;
            if (p == NULL || p == found)
                continue;
            if (found != NULL)
                return NULL;
            found = p;
        }
    }
    return found;
}

static fwx__grant *grant_new(fwx__session *s, fwx__grant_type type, int32_t protocol, uint32_t flags,
                             const fwx_guid *pg, IFWXSessionFilter *sf, IUnknown *ctx)
{
    fwx__grant *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->type = type;
    g->session = s;
    g->pub.struct_size = sizeof g->pub;
    g->pub.kind = type == FWX__G_FACTORY ? (fwx_grant_kind)0 : (fwx_grant_kind)type;
    g->pub.id = fwx__firewall_new_id(s->fw);
    g->pub.protocol = protocol;
    g->pub.flags = flags;
    fwx__sa_get(&g->pub.client, &s->client);
    g->protocol_guid = pg ? *pg : FWX_GUID_NULL;
    g->created_ms = uv_now(s->fw->loop);
    /* The deadline is known now, so the backend sees it when the grant is installed. */
    if (flags & FWX_FLAG_TIMEOUT)
        g->pub.expires_ms = uv_now(s->fw->loop) + s->fw->opts.timeout_ms;
    g->owner = s->fw->current_plugin ? s->fw->current_plugin : plugin_of_sf(s, sf);
    if (g->owner == NULL)
        g->owner = plugin_of_data_filters(s);
    g->sf = sf;
    if (sf != NULL)
        IFWXSessionFilter_AddRef(sf);
    g->ctx = ctx;
    if (ctx != NULL)
        IUnknown_AddRef(ctx);
    fwx__list_init(&g->expiry_node);
    fwx__list_init(&g->bucket_node);
    fwx__list_insert_tail(&s->grants, &g->session_node);
    return g;
}

static void perm_key(int32_t protocol, const struct sockaddr *sa, fwx__perm_key *k)
{
    memset(k, 0, sizeof *k);
    k->protocol = protocol;
    fwx__sa_key_of(sa, true, &k->target);
}

static fwx__perm_bucket *perm_bucket(fwx_firewall *fw, int32_t protocol, const struct sockaddr *target, bool create)
{
    fwx__perm_key k;
    fwx__perm_bucket *b = NULL;
    perm_key(protocol, target, &k);
    HASH_FIND(hh, fw->perms, &k, sizeof k, b);
    if (b == NULL && create && (b = calloc(1, sizeof *b)) != NULL) {
        b->key = k;
        fwx__list_init(&b->grants);
        HASH_ADD(hh, fw->perms, key, sizeof b->key, b);
    }
    return b;
}

static void perm_insert(fwx_firewall *fw, fwx__grant *g, fwx__perm_bucket *b)
{
    g->bucket = b;
    fwx__list_insert_tail(&b->grants, &g->bucket_node);
    fw->n_permissions++;
    g->session->n_permissions++;
}

static fwx__grant *port_find(fwx_firewall *fw, int32_t protocol, uint16_t port)
{
    fwx__port_key k = {protocol, port};
    fwx__grant *g = NULL;
    HASH_FIND(hh, fw->ports, &k, sizeof k, g);
    return g;
}

static void port_insert(fwx_firewall *fw, fwx__grant *g, uint16_t port)
{
    g->port_key.protocol = g->pub.protocol;
    g->port_key.port = port;
    HASH_ADD(hh, fw->ports, port_key, sizeof g->port_key, g);
    g->in_ports = true;
    if (g->type == FWX__G_REDIRECT) {
        fw->n_permissions++;
        g->session->n_permissions++;
    } else {
        fw->n_ports++;
        g->session->n_ports++;
    }
}

static void port_delete(fwx_firewall *fw, fwx__grant *g)
{
    if (!g->in_ports)
        return;
    HASH_DELETE(hh, fw->ports, g);
    g->in_ports = false;
    if (g->type == FWX__G_REDIRECT) {
        fw->n_permissions--;
        g->session->n_permissions--;
    } else {
        fw->n_ports--;
        g->session->n_ports--;
    }
}

void fwx__grant_remove(fwx__grant *g, const char *why)
{
    fwx__session *s = g->session;
    fwx_firewall *fw = s->fw;
    if (g->action != NULL) {
        g->action->grant = NULL;
        g->action = NULL;
    }
    fwx__expiry_remove(fw, g);
    fwx__backend_grant_remove(fw, g);
    port_delete(fw, g);
    if (g->bucket != NULL) {
        fwx__list_remove(&g->bucket_node);
        fw->n_permissions--;
        s->n_permissions--;
        if (fwx__list_empty(&g->bucket->grants)) {
            HASH_DELETE(hh, fw->perms, g->bucket);
            free(g->bucket);
        }
        g->bucket = NULL;
    }
    if (g->type == FWX__G_FACTORY) {
        fw->n_factories--;
        s->n_factories--;
        fwx__list_remove(&g->factory_node);
        fwx__list_remove(&g->bucket_node); /* address-based: off fw->address_factories */
    }
    if (g->conn != NULL) {
        g->conn->ext->grant = NULL; /* g->conn's grant is g, in its extension */
        g->conn = NULL;
    }
    fwx__list_remove(&g->session_node);
    if (g->announced)
        fwx__event_grant(g, FWX_EVENT_PERMISSION_REMOVED);
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    fwx__log(fw, FWX_LOG_DEBUG, "%s %llu (%s -> %s) withdrawn: %s", fwx__grant_type_name(g->type), (unsigned long long)g->pub.id,
             fwx__sa_fmt((struct sockaddr *)&g->pub.gateway, a), fwx__sa_fmt((struct sockaddr *)&g->pub.target, b), why);
    if (g->sf != NULL)
        IFWXSessionFilter_Release(g->sf);
    if (g->ctx != NULL)
        IUnknown_Release(g->ctx);
    if (g->ipfilter != NULL)
        IFWXIpFilter_Release(g->ipfilter);
    if (g->factory != NULL)
        IClassFactory_Release(g->factory);
    free(g);
}

void fwx__grant_expired(fwx__grant *g)
{
    fwx__log(g->session->fw, FWX_LOG_INFO, "%s %llu of session %llu: unused for its timeout, closed",
             fwx__grant_type_name(g->type), (unsigned long long)g->pub.id, (unsigned long long)g->session->id);
    /* T2 (doc/sdk-rules.md): a bound port's listener is closed with its connection object. */
    if (g->type == FWX__G_BINDING && g->conn != NULL)
        fwx__conn_terminate(g->conn);
    else
        fwx__grant_remove(g, "timed out");
}

static void grant_set_timeout(fwx__grant *g)
{
    fwx_firewall *fw = g->session->fw;
    if (g->pub.flags & FWX_FLAG_TIMEOUT)
        fwx__expiry_add(fw, g, g->pub.expires_ms);
}

/* ---- checks shared by the calls ---------------------------------------------------------- */

static fwx_result check_common_flags(uint32_t flags, uint32_t allowed, int32_t protocol)
{
    if (protocol != FWX_PROTOCOL_TCP && protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    if (flags & ~allowed)
        return FWX_E_INVALIDARG;
    /* T1 */
    if ((flags & FWX_FLAG_TIMEOUT) && (flags & FWX_FLAG_ALLOW_MULTIPLE))
        return FWX_E_INVALIDARG;
    if ((flags & FWX_FLAG_BIDIRECTIONAL) && protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    return FWX_S_OK;
}

/* Why a secondary target is never allowed, whatever the flags, or NULL if it may be. */
static const char *forbidden_target(fwx_firewall *fw, const struct sockaddr *t)
{
    uint16_t port = fwx__sa_port(t);
    if (port == 0)
        return "port 0";
    if (port < 1024)
        return "a privileged port";
    return fwx__firewall_forbidden_host(fw, t);
}

/* Is `addr` within the scope of `ref` that the flags allow? (T4) */
static bool in_scope(fwx_firewall *fw, uint32_t flags, const struct sockaddr *addr, const struct sockaddr *ref)
{
    if (flags & FWX_FLAG_ALLOW_ADDRESSES_ALL)
        return true;
    if (ref == NULL)
        return false;
    if (fwx__sa_same_ip(addr, ref))
        return true;
    /* "Class C" is read as the same /24, and for IPv6 the same /64 (one subnet). */
    if ((flags & FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK) &&
        fwx__sa_same_prefix(addr, ref, addr->sa_family == AF_INET ? 24 : 64))
        return true;
    if ((flags & FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK) && fw->policy != NULL &&
        fwx__policy_network_of(fw->policy, addr) == fwx__policy_network_of(fw->policy, ref))
        return true;
    return false;
}

/* FWX_FLAG_REPLY_FROM_PEER (include/fwx/sdk.h): the target must be the client's own end of pc,
   address and port; the only source is pc's other party, and the answer arrives at the gateway
   socket that relays pc to it, when a backend has one. NULL, or why it is refused. */
static const char *reply_scope(const fwx__conn *pc, const struct sockaddr *t, struct sockaddr_storage *source,
                               struct sockaddr_storage *gateway)
{
    const fwx__sa *client_end, *other, *gw = NULL;
    if (pc == NULL || !pc->has_ext_peer)
        return "no primary connection with a peer";
    if (fwx__conn_has_own_server(pc)) {
        client_end = &pc->ext_peer;
        other = &pc->server;
        if (pc->has_int_local)
            gw = &pc->int_local;
    } else {
        client_end = &pc->client;
        other = &pc->ext_peer;
        if (pc->has_ext_local)
            gw = &pc->ext_local;
    }
    if (fwx__sa_port((const struct sockaddr *)client_end) == 0)
        return "the connection's client port is unknown";
    if (!fwx__sa_same_ip(t, (const struct sockaddr *)client_end) ||
        fwx__sa_port(t) != fwx__sa_port((const struct sockaddr *)client_end))
        return "not the client's own end of the connection";
    fwx__sa_get(source, other);
    fwx__sa_set_port((struct sockaddr *)source, 0);
    memset(gateway, 0, sizeof *gateway);
    gateway->ss_family = t->sa_family;
    if (gw != NULL && gw->sa.sa_family == t->sa_family)
        fwx__sa_get(gateway, gw);
    return NULL;
}

/* The newest primary connection of the session: its protocol stands in for a secondary
   request that names none the policy knows. */
static const fwx__conn *last_primary(fwx__session *s)
{
    for (fwx__list *n = s->conns.prev; n != &s->conns; n = n->prev) {
        const fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
        if (!(c->flags & (FWX_CONNECTION_SECONDARY | FWX_CONNECTION_LISTENING)))
            return c;
    }
    return NULL;
}

/* T21 for secondary connections: may this session's user use the protocol at all?
   Rationale: a null or made-up ProtocolGuid must not skip the check, so the protocol of the
   primary connection the request belongs to (pc, or the session's newest) is used instead. */
static fwx_result check_protocol(fwx__session *s, const fwx_guid *pg, const fwx__conn *pc, const struct sockaddr *dest,
                                 fwx__direction dir, char *why, size_t why_size)
{
    fwx_firewall *fw = s->fw;
    if (fw->policy == NULL || dest == NULL)
        return FWX_S_OK;
    const fwx__protocol *proto = pg ? fwx__policy_protocol_by_guid(fw->policy, pg) : NULL;
    if (pc == NULL)
        pc = last_primary(s);
    if (proto == NULL && pc != NULL)
        proto = fwx__policy_protocol_by_guid(fw->policy, &pc->protocol_guid);
    if (proto == NULL)
        return FWX_S_OK; /* no protocol the policy knows: the primary connection was decided already */
    fwx__policy_request rq = {
        .ip_protocol = proto->ip_protocol,
        .direction = dir,
        .source = (const struct sockaddr *)&s->client,
        .destination = dest,
        .user = s->user,
        .protocol_guid = &proto->guid,
    };
    /* A published server's session: its data connections run between the remote client and
       the server the publishing rule names, whichever of them opens one, so they are decided
       as the control connection was: to that server, the rule standing in for a relationship. */
    if (pc != NULL && pc->has_server) {
        rq.destination = (const struct sockaddr *)&pc->server;
        rq.direction = FWX__DIR_INBOUND;
        rq.published = true;
    }
    fwx__policy_decision d;
    fwx__policy_decide(fw->policy, &rq, &d);
    if (!FWX_FAILED(d.result))
        return FWX_S_OK;
    /* The refusal names what decided it: the rule, the networks and the protocol. */
    fwx__policy_decision_fmt(&d, &rq, why, why_size);
    return d.result == FWX_E_NETWORK_RULES_DENIED ? FWX_E_PROTOCOL_RULES_DENIED : d.result;
}

/* T21 for a client's own bind, at RetroactiveAllowBind (peer: the session's newest peer, or
   NULL when none is known) and again at each arrival (peer: who connects): may a peer reach
   the session's client through this protocol?
   Rationale: the bind itself met no rule (a client's bind never fails), so nothing has
   decided the protocol yet: a guid the policy does not know, with no primary connection to
   stand in, is refused. When no peer is known (a SOCKS BIND is a session of its own), the
   approval is refused only if no allow rule lets this client use the protocol at all
   (the default rule's denial, asked for no destination); anything that depends on the
   destination is decided when a peer arrives. */
static fwx_result check_bind_policy(fwx__session *s, const fwx_guid *pg, const struct sockaddr *peer)
{
    fwx_firewall *fw = s->fw;
    if (fw->policy == NULL)
        return FWX_S_OK;
    const fwx__protocol *proto = pg ? fwx__policy_protocol_by_guid(fw->policy, pg) : NULL;
    const fwx__conn *pc = proto == NULL ? last_primary(s) : NULL;
    if (pc != NULL)
        proto = fwx__policy_protocol_by_guid(fw->policy, &pc->protocol_guid);
    if (proto == NULL)
        return FWX_E_PROTOCOL_RULES_DENIED;
    fwx__policy_request rq = {
        .ip_protocol = proto->ip_protocol,
        .direction = FWX__DIR_INBOUND,
        .source = (const struct sockaddr *)&s->client,
        .destination = peer,
        .user = s->user,
        .protocol_guid = &proto->guid,
    };
    fwx__policy_decision d;
    fwx__policy_decide(fw->policy, &rq, &d);
    if (FWX_SUCCEEDED(d.result))
        return FWX_S_OK;
    if (peer == NULL && !(d.result == FWX_E_PROTOCOL_RULES_DENIED && d.rule_name == NULL))
        return FWX_S_OK;
    return d.result == FWX_E_NETWORK_RULES_DENIED ? FWX_E_PROTOCOL_RULES_DENIED : d.result;
}

/* Does factory g apply to `event` for `addr` (NULL: any address)? */
static bool factory_matches(const fwx__grant *g, uint32_t event, const struct sockaddr *addr)
{
    if (g->type != FWX__G_FACTORY || g->event_type != event)
        return false;
    const struct sockaddr *fa = (const struct sockaddr *)&g->pub.target;
    return addr == NULL ||
           (fwx__sa_same_ip(fa, addr) && (fwx__sa_port(fa) == 0 || fwx__sa_port(fa) == fwx__sa_port(addr)));
}

/* An address-based factory of another session of s's client address applies to s too. */
static bool factory_lent_to(const fwx__grant *g, const fwx__session *s)
{
    return g->session != s && !g->session->ended &&
           fwx__sa_same_ip((const struct sockaddr *)&g->session->client, (const struct sockaddr *)&s->client);
}

static bool factory_pending(fwx__session *s, uint32_t event, const struct sockaddr *addr)
{
    fwx__list *af = &s->fw->address_factories;
    if (s->n_factories == 0 && fwx__list_empty(af))
        return false; /* the common case, at once */
    for (fwx__list *n = s->factories.next; n != &s->factories; n = n->next)
        if (factory_matches(fwx__list_entry(n, fwx__grant, factory_node), event, addr))
            return true;
    for (fwx__list *n = af->next; n != af; n = n->next) {
        fwx__grant *g = fwx__list_entry(n, fwx__grant, bucket_node);
        if (factory_lent_to(g, s) && factory_matches(g, event, addr))
            return true;
    }
    return false;
}

static fwx_result refuse(fwx__session *s, fwx_result hr, const char *call, const struct sockaddr *what, const char *why)
{
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    fwx__log(s->fw, FWX_LOG_WARN, "session %llu (client %s): %s%s%s refused: %s", (unsigned long long)s->id,
             fwx__sa_fmt_ip((struct sockaddr *)&s->client, a), call, what ? " " : "", what ? fwx__sa_fmt(what, b) : "",
             why);
    return hr;
}

/* Refuses a permission over the session's or the firewall's cap. The
   first refusal of a session says at warn which cap and how to raise it; the rest of a storm
   goes at debug, so that a filter looping on a refusal cannot flood the log. */
static fwx_result refuse_perm_cap(fwx__session *s, const char *call, const struct sockaddr *what, uint32_t n)
{
    fwx_firewall *fw = s->fw;
    char why[256], a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    if (s->n_permissions + n > fw->opts.max_permissions_per_session)
        snprintf(why, sizeof why,
                 "the session is at its cap of %u outstanding permissions (max_permissions_per_session; "
                 "fwx-gateway: gateway.max_permissions_per_client)",
                 fw->opts.max_permissions_per_session);
    else
        snprintf(why, sizeof why,
                 "the gateway is at its cap of %u outstanding permissions (max_permissions; "
                 "fwx-gateway: gateway.max_permissions)",
                 fw->opts.max_permissions);
    fwx__log(fw, s->warned_perm_cap ? FWX_LOG_DEBUG : FWX_LOG_WARN, "session %llu (client %s): %s%s%s refused: %s",
             (unsigned long long)s->id, fwx__sa_fmt_ip((struct sockaddr *)&s->client, a), call, what ? " " : "",
             what ? fwx__sa_fmt(what, b) : "", why);
    s->warned_perm_cap = true;
    return FWX_E_QUOTA_EXCEEDED;
}

/* ---- port allocation ------------------------------------------------------------------------ */

static void ports_rollback(fwx_firewall *fw, fwx__grant **gs, uint32_t upto)
{
    for (uint32_t i = 0; i < upto; i++) {
        fwx__backend_grant_remove(fw, gs[i]);
        port_delete(fw, gs[i]);
    }
}

/* Takes ports base .. base+n-1 for gs[0..n-1], all or nothing. */
static fwx_result ports_try(fwx_firewall *fw, fwx__grant **gs, uint32_t n, uint32_t base)
{
    if (base + n - 1 > 65535)
        return FWX_E_ADDRINUSE;
    for (uint32_t i = 0; i < n; i++)
        if (port_find(fw, gs[0]->pub.protocol, (uint16_t)(base + i)) != NULL)
            return FWX_E_ADDRINUSE;
    for (uint32_t i = 0; i < n; i++) {
        fwx__sa_set_port((struct sockaddr *)&gs[i]->pub.gateway, (uint16_t)(base + i));
        port_insert(fw, gs[i], (uint16_t)(base + i));
        fwx_result hr = fwx__backend_grant_add(fw, gs[i]);
        if (FWX_FAILED(hr)) {
            ports_rollback(fw, gs, i + 1);
            return hr;
        }
    }
    return FWX_S_OK;
}

/* T7: n consecutive ports, the lowest a multiple of n, from a random starting slot so that
   the next port cannot be guessed (catalog #24, doc/security.md), never past the configured range (#42). */
static fwx_result ports_alloc(fwx_firewall *fw, fwx__grant **gs, uint32_t n, uint16_t forced)
{
    if (forced != 0)
        return ports_try(fw, gs, 1, forced);
    uint32_t lo = ((fw->opts.port_min + n - 1) / n) * n;
    if (fw->opts.port_max < n - 1 || lo > (uint32_t)fw->opts.port_max - (n - 1))
        return FWX_E_NO_PORTS;
    uint32_t slots = ((uint32_t)fw->opts.port_max - (n - 1) - lo) / n + 1;
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint32_t)fwx__now_ms() * 2654435761u;
    uint32_t start = r % slots, tries = slots < MAX_PORT_TRIES ? slots : MAX_PORT_TRIES;
    for (uint32_t k = 0; k < tries; k++) {
        fwx_result hr = ports_try(fw, gs, n, lo + ((start + k) % slots) * n);
        if (hr != FWX_E_ADDRINUSE)
            return hr;
    }
    return FWX_E_NO_PORTS;
}

/* ---- AllowFutureConnect -------------------------------------------------------------------- */

fwx_result fwx__AllowFutureConnect(IFWXSession *This, const struct sockaddr *Address, uint32_t AddressLength,
                                   const struct sockaddr *ProxyExt, uint32_t ProxyExtLength, int32_t Protocol,
                                   uint32_t dwFlags, const fwx_guid *ProtocolGuid, IFWXSessionFilter *pSessionFilter,
                                   IUnknown *punkContext, IFWXConnection *pConnection,
                                   IFWXFirewallAction **ppFirewallAction)
{
    fwx__session *s = fwx__session_from(This);
    fwx_firewall *fw = s->fw;
    struct sockaddr_storage target, pext;
    const char *why;
    if (ppFirewallAction != NULL)
        *ppFirewallAction = NULL;
    if (s->ended)
        return FWX_E_TERMINATING;
    fwx_result hr = check_common_flags(dwFlags, AFC_FLAGS, Protocol);
    if (FWX_FAILED(hr))
        return refuse(s, hr, "AllowFutureConnect", NULL, "invalid flags or protocol");
    if (!fwx__sa_canon(Address, AddressLength, &target))
        return refuse(s, FWX_E_INVALIDARG, "AllowFutureConnect", NULL, "invalid address");
    /* T5 */
    if (pConnection == NULL && !(dwFlags & FWX_FLAG_ALLOW_ADDRESSES_ALL))
        return refuse(s, FWX_E_INVALIDARG, "AllowFutureConnect", NULL, "no connection and no ALLOW_ADDRESSES_ALL");
    if (pConnection != NULL && (!fwx__conn_is_ours(pConnection) || fwx__conn_from(pConnection)->session != s))
        return refuse(s, FWX_E_INVALIDARG, "AllowFutureConnect", NULL, "the connection is not of this session");
    if (ProxyExt != NULL) {
        if (!fwx__sa_canon(ProxyExt, ProxyExtLength, &pext))
            return refuse(s, FWX_E_INVALIDARG, "AllowFutureConnect", NULL, "invalid proxy external address");
        if (!fwx__sa_is_unspecified((struct sockaddr *)&pext) && !fwx__firewall_is_local(fw, (struct sockaddr *)&pext))
            return refuse(s, FWX_E_ADDRNOTAVAIL, "AllowFutureConnect", (struct sockaddr *)&pext,
                          "not an address of the gateway");
    } else {
        memset(&pext, 0, sizeof pext);
        pext.ss_family = target.ss_family;
    }
    const struct sockaddr *t = (const struct sockaddr *)&target;
    if ((why = forbidden_target(fw, t)) != NULL)
        return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "AllowFutureConnect to", t, why);
    /* T4: by default only the peer of the primary connection. */
    fwx__conn *pc = pConnection ? fwx__conn_from(pConnection) : NULL;
    const struct sockaddr *peer = pc && pc->has_ext_peer ? (const struct sockaddr *)&pc->ext_peer : NULL;
    struct sockaddr_storage reply_src, reply_gw;
    const struct sockaddr *policy_dest = t;
    if (dwFlags & FWX_FLAG_REPLY_FROM_PEER) {
        if (Protocol != FWX_PROTOCOL_UDP || !(dwFlags & FWX_FLAG_BIDIRECTIONAL) || ProxyExt != NULL ||
            (dwFlags & (FWX_FLAG_ADDRESS_BASED | FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK |
                        FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK | FWX_FLAG_ALLOW_ADDRESSES_ALL)))
            return refuse(s, FWX_E_INVALIDARG, "AllowFutureConnect", t,
                          "REPLY_FROM_PEER is for UDP, BIDIRECTIONAL, the default scope and no proxy address");
        if ((why = reply_scope(pc, t, &reply_src, &reply_gw)) != NULL)
            return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "AllowFutureConnect to", t, why);
        policy_dest = (const struct sockaddr *)&reply_src; /* the flow is the primary's answer */
    } else if (!in_scope(fw, dwFlags, t, peer))
        return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "AllowFutureConnect to", t, "not the session's peer");
    /* T6 */
    fwx__perm_bucket *b = perm_bucket(fw, Protocol, t, false);
    for (fwx__list *n = b ? b->grants.next : NULL; b != NULL && n != &b->grants; n = n->next)
        if (fwx__list_entry(n, fwx__grant, bucket_node)->session == s)
            return refuse(s, FWX_E_DUP_NAME, "AllowFutureConnect to", t, "a permission for it exists");
    char why_policy[512] = "";
    hr = check_protocol(s, ProtocolGuid, pc, policy_dest, FWX__DIR_OUTBOUND, why_policy, sizeof why_policy);
    if (FWX_FAILED(hr))
        return refuse(s, hr, "AllowFutureConnect to", t, why_policy);
    if (s->n_permissions >= fw->opts.max_permissions_per_session || fw->n_permissions >= fw->opts.max_permissions)
        return refuse_perm_cap(s, "AllowFutureConnect to", t, 1);

    fwx__grant *g = grant_new(s, FWX__G_PERMISSION, Protocol, dwFlags, ProtocolGuid, pSessionFilter, punkContext);
    if (g == NULL || (b = perm_bucket(fw, Protocol, t, true)) == NULL) {
        if (g != NULL)
            fwx__grant_remove(g, "out of memory");
        return FWX_E_OUTOFMEMORY;
    }
    uint32_t event = Protocol == FWX_PROTOCOL_TCP ? fwx_Connect_Tcp : fwx_Udp_Destination;
    g->pub.target = target;
    g->pub.gateway = pext;
    if (dwFlags & FWX_FLAG_REPLY_FROM_PEER) {
        fwx__sa_set(&g->only_source, (const struct sockaddr *)&reply_src);
        g->pub.gateway = reply_gw;
    }
    g->pub.kernel_mode = !(dwFlags & FWX_FLAG_NO_KERNEL_MODE) && !factory_pending(s, event, t) &&
                         !fwx__event_hooked(s, event, &g->protocol_guid, true);
    perm_insert(fw, g, b);
    hr = fwx__backend_grant_add(fw, g);
    if (FWX_FAILED(hr)) {
        fwx__grant_remove(g, "the backend refused it");
        return refuse(s, hr, "AllowFutureConnect to", t, fwx_strerror(hr));
    }
    grant_set_timeout(g);
    if (ppFirewallAction != NULL && (*ppFirewallAction = action_new(g)) == NULL) {
        fwx__grant_remove(g, "out of memory");
        return FWX_E_OUTOFMEMORY;
    }
    char a[FWX__SA_STRLEN], c[FWX__SA_STRLEN];
    fwx__log(fw, FWX_LOG_INFO, "session %llu: permission %llu: %s%s may connect to %s (%s%s%s)", (unsigned long long)s->id,
             (unsigned long long)g->pub.id,
             fwx__sa_fmt_ip((dwFlags & FWX_FLAG_REPLY_FROM_PEER) ? (struct sockaddr *)&reply_src : (struct sockaddr *)&s->client, a),
             (dwFlags & FWX_FLAG_REPLY_FROM_PEER) ? " (any port)" : "", fwx__sa_fmt(t, c),
             Protocol == FWX_PROTOCOL_TCP ? "tcp" : "udp", (dwFlags & FWX_FLAG_ALLOW_MULTIPLE) ? ", multiple" : ", once",
             (dwFlags & FWX_FLAG_TIMEOUT) ? ", timeout" : "");
    return FWX_S_OK;
}

/* ---- BindForClient ------------------------------------------------------------------------- */

/* Checks a client address given to BindForClient or SetClientAddress. */
static const char *bad_client_address(fwx__session *s, uint32_t flags, const struct sockaddr *ca)
{
    const char *why = forbidden_target(s->fw, ca);
    if (why != NULL)
        return why;
    /* A published server counts as the session's own host: its passive data ports are bound
       for it just as a client's active ones are. In a session of published connections only,
       the client is the remote party: a port forwarding to it would be a server's bounce. */
    bool published_only = fwx__session_published_only(s);
    if (published_only ? !fwx__session_is_server(s, ca)
                       : !in_scope(s->fw, flags, ca, (const struct sockaddr *)&s->client) &&
                             !fwx__session_is_own_host(s, ca))
        return published_only ? "not the published server's address" : "not the session client's address";
    return NULL;
}

fwx_result fwx__BindForClient(IFWXSession *This, const struct sockaddr *const ClientAddresses[], uint32_t cal,
                              struct sockaddr *ProxyAddress, uint32_t pal, int32_t Protocol, uint32_t n,
                              uint32_t dwFlags, int32_t Backlog, const fwx_guid *ProtocolGuid,
                              IFWXSessionFilter *pSessionFilter, IUnknown *punkContext, IFWXIpFilter *pIpFilter,
                              IFWXConnection *ConnectionArray[])
{
    fwx__session *s = fwx__session_from(This);
    fwx_firewall *fw = s->fw;
    struct sockaddr_storage clients[MAX_PORTS_PER_CALL], proxy;
    bool pending[MAX_PORTS_PER_CALL];
    fwx__conn *conns[MAX_PORTS_PER_CALL] = {0};
    fwx__grant *gs[MAX_PORTS_PER_CALL] = {0};
    const char *why;

    if (ConnectionArray == NULL || ClientAddresses == NULL || ProxyAddress == NULL)
        return FWX_E_POINTER;
    for (uint32_t i = 0; i < n && i < MAX_PORTS_PER_CALL; i++)
        ConnectionArray[i] = NULL;
    if (s->ended)
        return FWX_E_TERMINATING;
    fwx_result hr = check_common_flags(dwFlags, BFC_FLAGS, Protocol);
    if (FWX_FAILED(hr))
        return refuse(s, hr, "BindForClient", NULL, "invalid flags or protocol");
    if (n == 0 || n > MAX_PORTS_PER_CALL)
        return refuse(s, FWX_E_INVALIDARG, "BindForClient", NULL, "the number of addresses is 0 or over 16");
    if (!fwx__sa_canon(ProxyAddress, pal, &proxy))
        return refuse(s, FWX_E_INVALIDARG, "BindForClient", NULL, "invalid proxy address");
    const struct sockaddr *px = (const struct sockaddr *)&proxy;
    if (!fwx__sa_is_unspecified(px) && !fwx__firewall_is_local(fw, px))
        return refuse(s, FWX_E_ADDRNOTAVAIL, "BindForClient on", px, "not an address of the gateway");
    /* T7: a forced port only when binding one; otherwise the core chooses. */
    uint16_t forced = n == 1 ? fwx__sa_port(px) : 0;
    if (forced != 0 && forced < 1024)
        return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "BindForClient on", px, "a privileged port");
    for (uint32_t i = 0; i < n; i++) {
        if (ClientAddresses[i] == NULL || !fwx__sa_canon(ClientAddresses[i], cal, &clients[i]))
            return refuse(s, FWX_E_INVALIDARG, "BindForClient", NULL, "invalid client address");
        const struct sockaddr *ca = (const struct sockaddr *)&clients[i];
        /* T8: all zeros means "not known yet"; SetClientAddress checks it later. */
        pending[i] = fwx__sa_is_unspecified(ca) && fwx__sa_port(ca) == 0;
        if (!pending[i] && (why = bad_client_address(s, dwFlags, ca)) != NULL)
            return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "BindForClient for", ca, why);
    }
    char why_policy[512] = "";
    hr = check_protocol(s, ProtocolGuid, NULL, fwx__session_last_peer(s), FWX__DIR_INBOUND, why_policy, sizeof why_policy);
    if (FWX_FAILED(hr))
        return refuse(s, hr, "BindForClient", NULL, why_policy);
    if (s->n_ports + n > fw->opts.max_ports_per_session || fw->n_ports + n > fw->opts.max_ports)
        return refuse(s, FWX_E_QUOTA_EXCEEDED, "BindForClient", NULL, "too many bound ports");
    IFWXIpFilter *ipf = NULL;
    if (pIpFilter != NULL && FWX_FAILED(hr = IFWXIpFilter_Clone(pIpFilter, &ipf)))
        return hr;

    uint32_t accept_event = Protocol == FWX_PROTOCOL_TCP ? fwx_AcceptedConnection : fwx_Bind_Udp;
    uint32_t bind_event = Protocol == FWX_PROTOCOL_TCP ? fwx_Bind_Tcp : fwx_Bind_Udp;
    bool kernel = !(dwFlags & FWX_FLAG_NO_KERNEL_MODE) && !factory_pending(s, accept_event, NULL) &&
                  !fwx__event_hooked(s, accept_event, ProtocolGuid, true);
    hr = FWX_S_OK;
    uint32_t bind_flags = FWX_CONNECTION_LISTENING | FWX_CONNECTION_SECONDARY |
                          ((dwFlags & FWX_FLAG_PROXY_MODE) ? FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION : 0);
    for (uint32_t i = 0; i < n; i++) {
        conns[i] = fwx__conn_new(s, Protocol, bind_event, ProtocolGuid, bind_flags);
        /* The grant is kept in the connection's extension: made first, so none fails later. */
        gs[i] = conns[i] && fwx__conn_ext_get(conns[i])
                    ? grant_new(s, FWX__G_BINDING, Protocol, dwFlags, ProtocolGuid, pSessionFilter, punkContext)
                    : NULL;
        if (gs[i] == NULL) {
            hr = FWX_E_OUTOFMEMORY;
            break;
        }
        fwx__conn *c = conns[i];
        fwx__sa_set(&c->client, (const struct sockaddr *)&clients[i]);
        c->client_pending = pending[i];
        fwx__sa_set(&c->ext_local, (const struct sockaddr *)&proxy);
        c->has_ext_local = true;
        c->ext->grant = gs[i];
        gs[i]->conn = c;
        gs[i]->pub.target = clients[i];
        gs[i]->pub.gateway = proxy;
        gs[i]->pub.backlog = Backlog;
        gs[i]->pub.kernel_mode = kernel;
        if (ipf != NULL) {
            gs[i]->ipfilter = ipf;
            IFWXIpFilter_AddRef(ipf);
            c->ext->ipfilter = ipf; /* GetIpFilter reads it after the grant is used up */
            IFWXIpFilter_AddRef(ipf);
        }
    }
    if (FWX_SUCCEEDED(hr))
        hr = ports_alloc(fw, gs, n, forced);
    if (FWX_SUCCEEDED(hr)) {
        /* Filters hooking binds may deny this one (T13: the caller sees ADDRINUSE). */
        for (uint32_t i = 0; i < n && FWX_SUCCEEDED(hr); i++) {
            fwx__conn *c = conns[i];
            fwx__sa_set(&c->ext_local, (const struct sockaddr *)&gs[i]->pub.gateway);
            FwxFirewallEvent ev;
            memset(&ev, 0, sizeof ev);
            ev.EventType = bind_event;
            ev.Parameters.Bind.Address = gs[i]->pub.gateway;
            ev.Parameters.Bind.AddressLength = fwx__sa_len((struct sockaddr *)&gs[i]->pub.gateway);
            ev.Parameters.Bind.piConnection = &c->iface;
            ev.Parameters.Bind.FilterAccess = FWX_ALLOW;
            ev.Parameters.Bind.ProtocolGuid = c->protocol_guid;
            ev.Parameters.Bind.IsSecondary = 1;
            hr = fwx__dispatch(s, c, &ev, &c->protocol_guid, true);
            if (FWX_SUCCEEDED(hr) && c->denied)
                hr = FWX_E_ADDRINUSE;
        }
    }
    if (ipf != NULL)
        IFWXIpFilter_Release(ipf);
    if (FWX_FAILED(hr)) {
        for (uint32_t i = 0; i < n; i++) {
            if (conns[i] == NULL)
                continue;
            fwx__conn_terminate(conns[i]); /* withdraws its grant */
            IFWXConnection_Release(&conns[i]->iface);
        }
        return refuse(s, hr, "BindForClient", NULL, fwx_strerror(hr));
    }
    for (uint32_t i = 0; i < n; i++) {
        grant_set_timeout(gs[i]);
        ConnectionArray[i] = &conns[i]->iface; /* the caller's reference from fwx__conn_new */
    }
    memcpy(ProxyAddress, &gs[0]->pub.gateway, fwx__sa_len((struct sockaddr *)&gs[0]->pub.gateway));
    char a[FWX__SA_STRLEN], c[FWX__SA_STRLEN];
    fwx__log(fw, FWX_LOG_INFO, "session %llu: bound %s%s for %s (%u port%s, %s%s%s)", (unsigned long long)s->id,
             fwx__sa_fmt((struct sockaddr *)&gs[0]->pub.gateway, a), n > 1 ? "+" : "",
             pending[0] ? "a client address to be set" : fwx__sa_fmt((struct sockaddr *)&clients[0], c), n,
             n > 1 ? "s" : "", Protocol == FWX_PROTOCOL_TCP ? "tcp" : "udp",
             (dwFlags & FWX_FLAG_ALLOW_MULTIPLE) ? ", multiple" : ", once", (dwFlags & FWX_FLAG_TIMEOUT) ? ", timeout" : "");
    return FWX_S_OK;
}

fwx_result fwx__binding_set_client(fwx__conn *c, const struct sockaddr *addr, uint32_t len)
{
    struct sockaddr_storage ca;
    fwx__session *s = c->session;
    const char *why;
    if (!fwx__sa_canon(addr, len, &ca) || fwx__sa_is_unspecified((struct sockaddr *)&ca))
        return FWX_E_INVALIDARG;
    fwx__grant *g = fwx__conn_x(c)->grant;
    uint32_t flags = g ? g->pub.flags : 0;
    if ((why = bad_client_address(s, flags, (struct sockaddr *)&ca)) != NULL)
        return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "SetClientAddress", (struct sockaddr *)&ca, why);
    fwx__sa_set(&c->client, (const struct sockaddr *)&ca);
    c->client_set = true;
    if (g != NULL) {
        /* The backend learns the new target by a fresh install. */
        bool was = g->installed;
        fwx__backend_grant_remove(s->fw, g);
        g->pub.target = ca;
        if (was) {
            fwx_result hr = fwx__backend_grant_add(s->fw, g);
            if (FWX_FAILED(hr))
                return hr;
        }
    }
    return FWX_S_OK;
}

/* ---- RedirectConnections ------------------------------------------------------------------ */

/*
 * The gateway address a redirect port is opened on: ISA's InternalAddress, the address the
 * party that will connect to the port reaches the gateway at, as that party sees it. A
 * redirect to the session's client (a published server's active-mode data connection) is
 * used by the other side, the published server: the local address of the upstream connection
 * to it (of the connection whose data filter is calling, since one client's session may hold
 * control connections to servers on different sides). A redirect to a server is used by the client: the gateway address its session came
 * in on. Only when the backend told neither, a configured address of the right family.
 * Rationale: on a gateway with one address per side, an address of the other side is one the
 * connecting party may not reach, and a strict FTP server refuses a PORT naming any host but
 * its control connection's peer.
 */
static void redirect_address(fwx__session *s, const struct sockaddr *target, struct sockaddr_storage *out)
{
    fwx_firewall *fw = s->fw;
    int family = s->client.sa.sa_family;
    memset(out, 0, sizeof *out);
    if (fwx__sa_same_ip(target, (const struct sockaddr *)&s->client)) {
        /* Called from a filter handling a connection's bytes: that connection's upstream. */
        const fwx__conn *io = fw->io_conn;
        if (io != NULL && io->session == s && io->has_int_local) {
            fwx__sa_get(out, &io->int_local);
            return;
        }
        /* Otherwise the newest control connection that has one. */
        for (fwx__list *n = s->conns.prev; n != &s->conns; n = n->prev) {
            const fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
            if (c->flags & (FWX_CONNECTION_SECONDARY | FWX_CONNECTION_LISTENING))
                continue;
            if (c->has_int_local) {
                fwx__sa_get(out, &c->int_local);
                return;
            }
            if (c->has_server && family == s->client.sa.sa_family)
                family = c->server.sa.sa_family; /* the connecting party's, for the fallback */
        }
    } else if (s->has_gw_internal) {
        fwx__sa_get(out, &s->gw_internal);
        return;
    }
    out->ss_family = (sa_family_t)family;
    for (size_t i = 0; i < fw->n_local; i++) {
        if (fw->local[i].ss_family == family) {
            *out = fw->local[i];
            return;
        }
    }
    /* No configured address: a publishing rule's listen address is one of ours. */
    for (size_t i = 0; i < fw->n_published; i++) {
        const struct sockaddr *l = (const struct sockaddr *)&fw->published[i].address;
        if (!fwx__sa_is_unspecified(l) && l->sa_family == family) {
            memcpy(out, l, fwx__sa_len(l));
            return;
        }
    }
}

fwx_result fwx__RedirectConnections(IFWXSession *This, const struct sockaddr *const ConnectAddresses[], uint32_t cal,
                                    uint32_t n, struct sockaddr *InternalAddress, uint32_t *InternalAddressLength,
                                    const struct sockaddr *ProxyExt, uint32_t ProxyExtLength, int32_t Protocol,
                                    uint32_t dwFlags, const fwx_guid *ProtocolGuid, IFWXSessionFilter *pSessionFilter,
                                    IUnknown *punkContext, IFWXFirewallAction *FirewallActionArray[])
{
    fwx__session *s = fwx__session_from(This);
    fwx_firewall *fw = s->fw;
    struct sockaddr_storage targets[MAX_PORTS_PER_CALL], internal, pext;
    fwx__grant *gs[MAX_PORTS_PER_CALL] = {0};
    const char *why;

    if (ConnectAddresses == NULL || InternalAddress == NULL || InternalAddressLength == NULL)
        return FWX_E_POINTER;
    for (uint32_t i = 0; FirewallActionArray != NULL && i < n && i < MAX_PORTS_PER_CALL; i++)
        FirewallActionArray[i] = NULL;
    if (s->ended)
        return FWX_E_TERMINATING;
    fwx_result hr = check_common_flags(dwFlags, RC_FLAGS, Protocol);
    if (FWX_FAILED(hr))
        return refuse(s, hr, "RedirectConnections", NULL, "invalid flags or protocol");
    if (n == 0 || n > MAX_PORTS_PER_CALL)
        return refuse(s, FWX_E_INVALIDARG, "RedirectConnections", NULL, "the number of addresses is 0 or over 16");
    if (ProxyExt != NULL && !fwx__sa_canon(ProxyExt, ProxyExtLength, &pext))
        return refuse(s, FWX_E_INVALIDARG, "RedirectConnections", NULL, "invalid proxy external address");
    for (uint32_t i = 0; i < n; i++) {
        if (ConnectAddresses[i] == NULL || !fwx__sa_canon(ConnectAddresses[i], cal, &targets[i]))
            return refuse(s, FWX_E_INVALIDARG, "RedirectConnections", NULL, "invalid connect address");
        const struct sockaddr *t = (const struct sockaddr *)&targets[i];
        /* Catalog #51: never to the gateway itself; and only to this session's peers. */
        if ((why = forbidden_target(fw, t)) != NULL)
            return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "RedirectConnections to", t, why);
        if (!fwx__session_is_peer(s, t))
            return refuse(s, FWX_E_ADDRESS_NOT_ALLOWED, "RedirectConnections to", t, "not the session's peer");
        char why_policy[512] = "";
        hr = check_protocol(s, ProtocolGuid, NULL, t, FWX__DIR_OUTBOUND, why_policy, sizeof why_policy);
        if (FWX_FAILED(hr))
            return refuse(s, hr, "RedirectConnections to", t, why_policy);
    }
    redirect_address(s, (const struct sockaddr *)&targets[0], &internal);
    fwx__sa_set_port((struct sockaddr *)&internal, 0);
    uint32_t need = fwx__sa_len((struct sockaddr *)&internal);
    if (*InternalAddressLength < need) {
        *InternalAddressLength = need;
        return refuse(s, FWX_E_INVALIDARG, "RedirectConnections", NULL, "internal address buffer too small");
    }
    if (s->n_permissions + n > fw->opts.max_permissions_per_session || fw->n_permissions + n > fw->opts.max_permissions)
        return refuse_perm_cap(s, "RedirectConnections", NULL, n);

    uint32_t event = Protocol == FWX_PROTOCOL_TCP ? fwx_Connect_Tcp : fwx_Udp_Destination;
    hr = FWX_S_OK;
    for (uint32_t i = 0; i < n; i++) {
        gs[i] = grant_new(s, FWX__G_REDIRECT, Protocol, dwFlags, ProtocolGuid, pSessionFilter, punkContext);
        if (gs[i] == NULL) {
            hr = FWX_E_OUTOFMEMORY;
            break;
        }
        gs[i]->pub.target = targets[i];
        gs[i]->pub.gateway = internal;
        gs[i]->pub.kernel_mode = !(dwFlags & FWX_FLAG_NO_KERNEL_MODE) &&
                                 !factory_pending(s, event, (struct sockaddr *)&targets[i]) &&
                                 !fwx__event_hooked(s, event, &gs[i]->protocol_guid, true);
    }
    if (FWX_SUCCEEDED(hr))
        hr = ports_alloc(fw, gs, n, 0);
    for (uint32_t i = 0; FWX_SUCCEEDED(hr) && FirewallActionArray != NULL && i < n; i++)
        if ((FirewallActionArray[i] = action_new(gs[i])) == NULL)
            hr = FWX_E_OUTOFMEMORY;
    if (FWX_FAILED(hr)) {
        for (uint32_t i = 0; i < n; i++) {
            if (FirewallActionArray != NULL && FirewallActionArray[i] != NULL) {
                IFWXFirewallAction_Release(FirewallActionArray[i]);
                FirewallActionArray[i] = NULL;
            }
            if (gs[i] != NULL)
                fwx__grant_remove(gs[i], "the call failed");
        }
        return refuse(s, hr, "RedirectConnections", NULL, fwx_strerror(hr));
    }
    for (uint32_t i = 0; i < n; i++)
        grant_set_timeout(gs[i]);
    memcpy(InternalAddress, &gs[0]->pub.gateway, need);
    *InternalAddressLength = need;
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    fwx__log(fw, FWX_LOG_INFO, "session %llu: redirect %s%s -> %s (%u port%s)", (unsigned long long)s->id,
             fwx__sa_fmt((struct sockaddr *)&gs[0]->pub.gateway, a), n > 1 ? "+" : "",
             fwx__sa_fmt((struct sockaddr *)&targets[0], b), n, n > 1 ? "s" : "");
    return FWX_S_OK;
}

/* ---- client binds and RetroactiveAllowBind ------------------------------------------------- */

fwx_result fwx__client_bind_register(fwx__conn *c)
{
    fwx__session *s = c->session;
    fwx_firewall *fw = s->fw;
    uint16_t port = fwx__sa_port((struct sockaddr *)&c->ext_peer);
    if (port == 0)
        return FWX_E_INVALIDARG;
    if (port_find(fw, c->protocol, port) != NULL)
        return FWX_E_ADDRINUSE;
    if (s->n_ports >= fw->opts.max_ports_per_session || fw->n_ports >= fw->opts.max_ports)
        return refuse(s, FWX_E_QUOTA_EXCEEDED, "client bind", (struct sockaddr *)&c->ext_peer, "too many bound ports");
    fwx__grant *g = fwx__conn_ext_get(c) != NULL
                        ? grant_new(s, FWX__G_CLIENT_BIND, c->protocol, 0, &c->protocol_guid, NULL, NULL)
                        : NULL;
    if (g == NULL)
        return FWX_E_OUTOFMEMORY;
    fwx__sa_get(&g->pub.gateway, &c->ext_peer);
    fwx__sa_get(&g->pub.target, &s->client);
    g->conn = c;
    c->ext->grant = g;
    /* Not given to the backend yet: until approved, arrivals are silently discarded (T11). */
    port_insert(fw, g, port);
    return FWX_S_OK;
}

/* Does the client bind `bound` (its gateway address) answer RetroactiveAllowBind's address? */
static bool bind_matches(const struct sockaddr *bound, const struct sockaddr *a)
{
    return fwx__sa_port(bound) == fwx__sa_port(a) &&
           (fwx__sa_is_unspecified(a) || fwx__sa_is_unspecified(bound) || fwx__sa_same_ip(bound, a));
}

fwx_result fwx__RetroactiveAllowBind(IFWXSession *This, int32_t Protocol, const struct sockaddr *Address,
                                     uint32_t AddressLength, const fwx_guid *ProtocolGuid, uint32_t dwFlags,
                                     IFWXIpFilter *pIpFilter)
{
    fwx__session *s = fwx__session_from(This);
    struct sockaddr_storage addr;
    if (s->ended)
        return FWX_E_TERMINATING;
    fwx_result hr = check_common_flags(dwFlags, RAB_FLAGS, Protocol);
    if (FWX_FAILED(hr))
        return hr;
    if (!fwx__sa_canon(Address, AddressLength, &addr) || fwx__sa_port((struct sockaddr *)&addr) == 0)
        return FWX_E_INVALIDARG;
    const struct sockaddr *a = (const struct sockaddr *)&addr;
    fwx__grant *g = NULL;
    for (fwx__list *n = s->grants.next; n != &s->grants; n = n->next) {
        fwx__grant *x = fwx__list_entry(n, fwx__grant, session_node);
        if (x->type == FWX__G_CLIENT_BIND && x->pub.protocol == Protocol &&
            bind_matches((const struct sockaddr *)&x->pub.gateway, a)) {
            g = x;
            break;
        }
    }
    if (g == NULL) {
        /* T11: a bind killed while its object is still held is ending, not unknown. */
        for (fwx__list *n = s->closing_binds.next; n != &s->closing_binds; n = n->next) {
            fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
            if (c->protocol == Protocol && bind_matches((const struct sockaddr *)&c->ext_peer, a))
                return FWX_E_TERMINATING;
        }
        return FWX_E_NOT_FOUND;
    }
    if (g->conn == NULL || (g->conn->flags & FWX_CONNECTION_TERMINATED))
        return FWX_E_TERMINATING;
    if (g->approved)
        return FWX_S_FALSE;
    hr = check_bind_policy(s, ProtocolGuid, fwx__session_last_peer(s));
    const char *why_policy = FWX_FAILED(hr) ? fwx_strerror(hr) : "";
    if (FWX_FAILED(hr))
        return refuse(s, hr, "RetroactiveAllowBind", a, why_policy);
    IFWXIpFilter *ipf = NULL;
    if (pIpFilter != NULL && FWX_FAILED(hr = IFWXIpFilter_Clone(pIpFilter, &ipf)))
        return hr;
    fwx_guid was_guid = g->protocol_guid;
    g->ipfilter = ipf;
    g->pub.flags = dwFlags;
    if (ProtocolGuid != NULL)
        g->protocol_guid = *ProtocolGuid;
    g->approved = true;
    hr = fwx__backend_grant_add(s->fw, g);
    if (FWX_FAILED(hr)) {
        /* Still unapproved, as it was: a later call starts afresh. */
        g->approved = false;
        g->ipfilter = NULL;
        g->pub.flags = 0;
        g->protocol_guid = was_guid;
        if (ipf != NULL)
            IFWXIpFilter_Release(ipf);
        return refuse(s, hr, "RetroactiveAllowBind", a, fwx_strerror(hr));
    }
    if (ipf != NULL) {
        /* The bind's connection object reports the filter in force (GetIpFilter). */
        fwx__conn_ext *x = g->conn->ext; /* there: it holds g */
        if (x->ipfilter != NULL)
            IFWXIpFilter_Release(x->ipfilter);
        x->ipfilter = ipf;
        IFWXIpFilter_AddRef(ipf);
    }
    char b[FWX__SA_STRLEN];
    fwx__log(s->fw, FWX_LOG_INFO, "session %llu: client bind %s approved", (unsigned long long)s->id,
             fwx__sa_fmt((struct sockaddr *)&g->pub.gateway, b));
    return FWX_S_OK;
}

/* ---- data-filter factories ---------------------------------------------------------------- */

fwx_result fwx__SetDataFilterFactory(IFWXSession *This, uint32_t EventType, const struct sockaddr *Address,
                                     uint32_t AddressLength, IClassFactory *pFactory, FwxDataFilterPriorityClass Priority,
                                     IUnknown *pFilterContext, uint32_t dwFlags, IFWXFirewallAction **ppFirewallAction)
{
    fwx__session *s = fwx__session_from(This);
    fwx_firewall *fw = s->fw;
    struct sockaddr_storage addr;
    if (ppFirewallAction != NULL)
        *ppFirewallAction = NULL;
    if (s->ended)
        return FWX_E_TERMINATING;
    if ((EventType != fwx_Connect_Tcp && EventType != fwx_Bind_Udp && EventType != fwx_AcceptedConnection &&
         EventType != fwx_Udp_Destination) ||
        pFactory == NULL || (int)Priority < fwx_dfpc_NAT || Priority >= fwx__dfpc_COUNT ||
        (dwFlags & ~FWX_FLAG_ADDRESS_BASED) != 0 || !fwx__sa_canon(Address, AddressLength, &addr))
        return FWX_E_INVALIDARG;
    if (s->n_permissions >= fw->opts.max_permissions_per_session)
        return refuse(s, FWX_E_QUOTA_EXCEEDED, "SetDataFilterFactory", (struct sockaddr *)&addr, "too many factories");
    int32_t proto = (EventType == fwx_Connect_Tcp || EventType == fwx_AcceptedConnection) ? FWX_PROTOCOL_TCP
                                                                                           : FWX_PROTOCOL_UDP;
    fwx__grant *g = grant_new(s, FWX__G_FACTORY, proto, dwFlags, NULL, NULL, pFilterContext);
    if (g == NULL)
        return FWX_E_OUTOFMEMORY;
    g->event_type = EventType;
    g->pub.target = addr;
    g->factory = pFactory;
    IClassFactory_AddRef(pFactory);
    g->prio = Priority;
    fw->n_factories++;
    s->n_factories++;
    fwx__list_insert_tail(&s->factories, &g->factory_node);
    if (dwFlags & FWX_FLAG_ADDRESS_BASED)
        fwx__list_insert_tail(&fw->address_factories, &g->bucket_node);
    if (ppFirewallAction != NULL && (*ppFirewallAction = action_new(g)) == NULL) {
        fwx__grant_remove(g, "out of memory");
        return FWX_E_OUTOFMEMORY;
    }
    return FWX_S_OK;
}

static fwx_result factory_apply(fwx__session *s, fwx__grant *g, fwx__conn *c)
{
    IFWXDataFilter *df = NULL;
    fwx_result hr = IClassFactory_CreateInstance(g->factory, NULL, &IID_IFWXDataFilter, (void **)&df);
    if (FWX_FAILED(hr) || df == NULL) {
        fwx__log(s->fw, FWX_LOG_WARN, "data-filter factory %llu: CreateInstance failed: %s, connection killed",
                 (unsigned long long)g->pub.id, fwx_strerror(FWX_FAILED(hr) ? hr : FWX_E_POINTER));
        return FWX_FAILED(hr) ? hr : FWX_E_POINTER;
    }
    hr = fwx__conn_attach_df(c, df, g->prio, g->ctx);
    IFWXDataFilter_Release(df);
    return hr;
}

fwx_result fwx__apply_factories(fwx__session *s, fwx__conn *c, uint32_t event, const struct sockaddr *addr)
{
    for (fwx__list *n = s->factories.next; n != &s->factories; n = n->next) {
        fwx__grant *g = fwx__list_entry(n, fwx__grant, factory_node);
        if (!factory_matches(g, event, addr))
            continue;
        fwx_result hr = factory_apply(s, g, c);
        if (FWX_FAILED(hr))
            return hr;
    }
    /* Then the address-based ones other sessions of the same client set up. */
    fwx__list *af = &s->fw->address_factories;
    for (fwx__list *n = af->next; n != af; n = n->next) {
        fwx__grant *g = fwx__list_entry(n, fwx__grant, bucket_node);
        if (!factory_lent_to(g, s) || !factory_matches(g, event, addr))
            continue;
        fwx_result hr = factory_apply(s, g, c);
        if (FWX_FAILED(hr))
            return hr;
    }
    return FWX_S_OK;
}

/* ---- admission ------------------------------------------------------------------------------ */

static bool sf_attached(fwx__session *s, IFWXSessionFilter *sf)
{
    for (size_t i = 0; i < s->n_att; i++)
        if (s->att[i].sf == sf && !s->att[i].detached)
            return !s->att[i].plugin->unloaded;
    return false;
}

/* T15: only the filter that asked hears fwx_EstablishedConnection, with its context. */
static void established(fwx__conn *c, IFWXSessionFilter *sf, IUnknown *ctx)
{
    fwx__session *s = c->session;
    if (sf == NULL || !sf_attached(s, sf))
        return;
    FwxFirewallEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.StructSize = sizeof ev;
    ev.EventType = fwx_EstablishedConnection;
    ev.EventSource = s->source;
    ev.Parameters.EstablishedConnection.Protocol = c->protocol;
    ev.Parameters.EstablishedConnection.piConnection = &c->iface;
    ev.Parameters.EstablishedConnection.UserContext = ctx;
    fwx__plugin_call saved;
    fwx__plugin_enter(s->fw, plugin_of_sf(s, sf), fwx_EstablishedConnection, &saved);
    c->in_event = fwx_EstablishedConnection;
    (void)IFWXSessionFilter_FirewallEventHandler(sf, &ev);
    c->in_event = 0;
    fwx__plugin_leave(s->fw, &saved);
}

static bool source_allowed(fwx__grant *g, const struct sockaddr *src)
{
    if (g->ipfilter != NULL)
        return IFWXIpFilter_IsIncluded(g->ipfilter, src, fwx__sa_len(src)) == FWX_S_OK;
    return fwx__session_is_peer(g->session, src);
}

/* Creates and starts the secondary connection for grant g; consumes g when one-shot. */
static fwx_result admit_grant(fwx__grant *g, const struct sockaddr *src, const struct sockaddr *dst,
                              IFWXConnection **out)
{
    fwx__session *s = g->session;
    bool one_shot = !(g->pub.flags & FWX_FLAG_ALLOW_MULTIPLE) && g->type != FWX__G_CLIENT_BIND;
    bool udp = g->pub.protocol == FWX_PROTOCOL_UDP;
    fwx__conn *c;
    uint32_t event;
    /* Keep what EstablishedConnection needs: a one-shot grant is gone before it is raised. */
    IFWXSessionFilter *sf = g->sf;
    IUnknown *ctx = g->ctx;
    if (sf != NULL)
        IFWXSessionFilter_AddRef(sf);
    if (ctx != NULL)
        IUnknown_AddRef(ctx);

    if (g->type == FWX__G_BINDING && one_shot) {
        /* The object BindForClient returned becomes the connection itself. */
        c = g->conn;
        IFWXConnection_AddRef(&c->iface);
        c->flags &= ~FWX_CONNECTION_LISTENING;
        event = udp ? fwx_Bind_Udp : fwx_AcceptedConnection;
    } else {
        event = g->type == FWX__G_BINDING || g->type == FWX__G_CLIENT_BIND ? (udp ? fwx_Bind_Udp : fwx_AcceptedConnection)
                                                                          : (udp ? fwx_Udp_Destination : fwx_Connect_Tcp);
        c = fwx__conn_new(s, g->pub.protocol, event, &g->protocol_guid, FWX_CONNECTION_SECONDARY);
        if (c == NULL) {
            if (sf != NULL)
                IFWXSessionFilter_Release(sf);
            if (ctx != NULL)
                IUnknown_Release(ctx);
            return FWX_E_OUTOFMEMORY;
        }
        if (g->type == FWX__G_BINDING && g->conn != NULL)
            c->client = g->conn->client;
    }
    if (g->type == FWX__G_BINDING || g->type == FWX__G_CLIENT_BIND) {
        fwx__sa_set(&c->ext_peer, src);
        fwx__sa_set(&c->ext_local, (const struct sockaddr *)&g->pub.gateway);
        c->has_ext_local = true;
    } else if (g->type == FWX__G_REDIRECT) {
        /* The gateway's external socket is the backend's to choose when it connects. */
        fwx__sa_set(&c->ext_peer, (const struct sockaddr *)&g->pub.target);
    } else {
        fwx__sa_set(&c->ext_peer, dst);
        if (!fwx__sa_is_unspecified((struct sockaddr *)&g->pub.gateway)) {
            fwx__sa_set(&c->ext_local, (const struct sockaddr *)&g->pub.gateway);
            c->has_ext_local = true;
        }
    }
    c->has_ext_peer = true;
    bool no_kernel = !g->pub.kernel_mode;
    g->uses++;
    /* For the log line and the record: the grant may be gone by then. */
    const char *gname = fwx__grant_type_name(g->type);
    unsigned long long gid = (unsigned long long)g->pub.id;
    /* A redirect port, or a bound port in proxy mode: fwx redirected this connection. */
    bool redirected = g->type == FWX__G_REDIRECT || (g->type == FWX__G_BINDING && (g->pub.flags & FWX_FLAG_PROXY_MODE));
    struct sockaddr_storage target = g->pub.target;
    bool in_kernel = g->in_kernel;
    if (one_shot)
        fwx__grant_remove(g, "used"); /* T3/T17: one connection, then the grant is gone */
    fwx_result hr = fwx__conn_start(c, event, FWX_ALLOW, true, no_kernel);
    if (FWX_SUCCEEDED(hr)) {
        char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
        fwx__log_conn(c, FWX_LOG_INFO, "connection %llu: %s -> %s opened through %s %llu (%s)",
                 (unsigned long long)c->id, fwx__sa_fmt(src, a), fwx__sa_fmt(dst, b), gname, gid,
                 fwx__conn_path_name(c, in_kernel));
        fwx__event_conn(c, FWX_EVENT_CONNECTION_OPENED);
        if (redirected)
            fwx__redirect_admitted(c, dst, (const struct sockaddr *)&target);
        established(c, sf, ctx);
    }
    if (sf != NULL)
        IFWXSessionFilter_Release(sf);
    if (ctx != NULL)
        IUnknown_Release(ctx);
    if (FWX_FAILED(hr)) {
        IFWXConnection_Release(&c->iface);
        return hr;
    }
    *out = &c->iface;
    return FWX_S_OK;
}

/* May a flow from src use permission p? Its session's own hosts may, or with
   FWX_FLAG_REPLY_FROM_PEER the one address it names and nobody else (any source port). */
static bool perm_source_ok(const fwx__grant *p, const struct sockaddr *src)
{
    if (p->pub.flags & FWX_FLAG_REPLY_FROM_PEER)
        return fwx__sa_same_ip((const struct sockaddr *)&p->only_source, src);
    return fwx__session_is_own_host(p->session, src);
}

/* May a flow of session `in` (NULL: a transparent flow, which is its source's NAT session's)
   use permission p, whose session's own host is the flow's source? Only p's own session may,
   unless p is address-based (SDK: tied to the client's address, not to the session). */
static bool perm_is_for(const fwx__grant *p, const fwx__session *in)
{
    if (in != NULL)
        return p->session == in;
    return p->session->source == fwxSourceNAT;
}

fwx_result fwx_firewall_admit(fwx_firewall *fw, const fwx_flow *flow, IFWXConnection **out)
{
    return fwx_firewall_admit_in_session(fw, NULL, flow, out);
}

fwx_result fwx_firewall_admit_in_session(fwx_firewall *fw, IFWXSession *session, const fwx_flow *in_flow,
                                         IFWXConnection **out)
{
    struct sockaddr_storage src, dst;
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    fwx_flow fl;
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (fw == NULL || in_flow == NULL)
        return FWX_E_POINTER;
    if (!FWX__STRUCT_IN(fl, in_flow, FWX__FIRST_FLOW))
        return fwx__struct_refused(fw, "fwx_firewall_admit", "fwx_flow", in_flow->struct_size, FWX__FIRST_FLOW,
                                   sizeof fl);
    const fwx_flow *flow = &fl;
    if ((flow->protocol != FWX_PROTOCOL_TCP && flow->protocol != FWX_PROTOCOL_UDP) ||
        !fwx__sa_canon(flow->source, flow->source_len, &src) ||
        !fwx__sa_canon(flow->destination, flow->destination_len, &dst))
        return FWX_E_INVALIDARG;
    if (session != NULL && (!fwx__session_is_ours(session) || fwx__session_from(session)->fw != fw))
        return FWX_E_INVALIDARG;
    fwx__session *in = session != NULL ? fwx__session_from(session) : NULL;
    if (fw->closing || (in != NULL && in->ended))
        return FWX_E_TERMINATING;
    const struct sockaddr *sp = (const struct sockaddr *)&src, *dp = (const struct sockaddr *)&dst;

    fwx__grant *g = port_find(fw, flow->protocol, fwx__sa_port(dp));
    const struct sockaddr *gw = g ? (const struct sockaddr *)&g->pub.gateway : NULL;
    if (g != NULL && (fwx__sa_is_unspecified(gw) || fwx__sa_same_ip(gw, dp))) {
        fwx__session *s = g->session;
        /* A flow carried for one session never takes another session's port. */
        if (in != NULL && in != s) {
            fwx__log(fw, FWX_LOG_WARN, "%s %s: connection from %s in session %llu refused: the port is session %llu's",
                     fwx__grant_type_name(g->type), fwx__sa_fmt(dp, a), fwx__sa_fmt(sp, b), (unsigned long long)in->id,
                     (unsigned long long)s->id);
            return FWX_E_ADDRESS_NOT_ALLOWED;
        }
        switch (g->type) {
        case FWX__G_BINDING:
            if (g->conn == NULL || (g->conn->flags & FWX_CONNECTION_TERMINATED))
                return FWX_E_NOT_FOUND;
            /* Catalog #23: only the expected peer may take the port. */
            if (!source_allowed(g, sp)) {
                fwx__log(fw, FWX_LOG_WARN, "bound port %s: connection from %s refused: not an allowed peer",
                         fwx__sa_fmt(dp, a), fwx__sa_fmt(sp, b));
                return FWX_E_ADDRESS_NOT_ALLOWED;
            }
            if (g->conn->client_pending && !g->conn->client_set) {
                fwx__log(fw, FWX_LOG_WARN, "bound port %s: connection from %s refused: client address not yet set",
                         fwx__sa_fmt(dp, a), fwx__sa_fmt(sp, b));
                return FWX_E_ADDRESS_NOT_ALLOWED;
            }
            break;
        case FWX__G_REDIRECT:
            if (!fwx__session_is_own_host(s, sp)) {
                fwx__log(fw, FWX_LOG_WARN, "redirect port %s: connection from %s refused: not the session's client",
                         fwx__sa_fmt(dp, a), fwx__sa_fmt(sp, b));
                return FWX_E_ADDRESS_NOT_ALLOWED;
            }
            break;
        case FWX__G_CLIENT_BIND:
            if (g->conn == NULL || (g->conn->flags & FWX_CONNECTION_TERMINATED))
                return FWX_E_NOT_FOUND;
            /* T11: discarded until RetroactiveAllowBind; the bind itself stays. */
            if (!g->approved) {
                fwx__log(fw, FWX_LOG_DEBUG, "client bind %s: connection from %s discarded: not approved",
                         fwx__sa_fmt(dp, a), fwx__sa_fmt(sp, b));
                return FWX_E_ADDRESS_NOT_ALLOWED;
            }
            if (g->ipfilter != NULL && IFWXIpFilter_IsIncluded(g->ipfilter, sp, fwx__sa_len(sp)) != FWX_S_OK) {
                fwx__log(fw, FWX_LOG_WARN, "client bind %s: connection from %s refused by its ip filter",
                         fwx__sa_fmt(dp, a), fwx__sa_fmt(sp, b));
                return FWX_E_ADDRESS_NOT_ALLOWED;
            }
            /* The approval may not have known the peer: the policy decides each arrival. */
            fwx_result hr = check_bind_policy(s, &g->protocol_guid, sp);
            if (FWX_FAILED(hr)) {
                fwx__log(fw, FWX_LOG_WARN, "client bind %s: connection from %s refused by the policy: %s",
                         fwx__sa_fmt(dp, a), fwx__sa_fmt(sp, b), fwx_strerror(hr));
                return hr;
            }
            break;
        default:
            return FWX_E_NOT_FOUND;
        }
        return admit_grant(g, sp, dp, out);
    }

    /* The flow's own session's permission first, then another session's address-based one. */
    fwx__perm_bucket *bk = perm_bucket(fw, flow->protocol, dp, false);
    fwx__grant *by_address = NULL, *not_ours = NULL;
    for (fwx__list *n = bk ? bk->grants.next : NULL; bk != NULL && n != &bk->grants; n = n->next) {
        fwx__grant *p = fwx__list_entry(n, fwx__grant, bucket_node);
        if (!perm_source_ok(p, sp))
            continue;
        if (perm_is_for(p, in))
            return admit_grant(p, sp, dp, out);
        if (p->pub.flags & FWX_FLAG_ADDRESS_BASED) {
            if (by_address == NULL)
                by_address = p;
        } else if (not_ours == NULL) {
            not_ours = p;
        }
    }
    if (by_address != NULL)
        return admit_grant(by_address, sp, dp, out);
    if (not_ours != NULL) {
        char where[48];
        if (in != NULL)
            snprintf(where, sizeof where, "session %llu", (unsigned long long)in->id);
        else
            snprintf(where, sizeof where, "a transparent flow");
        fwx__log(fw, FWX_LOG_INFO, "flow %s -> %s (%s): permission %llu of session %llu is not address-based, not used",
                 fwx__sa_fmt(sp, a), fwx__sa_fmt(dp, b), where, (unsigned long long)not_ours->pub.id,
                 (unsigned long long)not_ours->session->id);
    } else
        fwx__log(fw, FWX_LOG_DEBUG, "flow %s -> %s: nothing allows it", fwx__sa_fmt(sp, a), fwx__sa_fmt(dp, b));
    return FWX_E_NOT_FOUND;
}
