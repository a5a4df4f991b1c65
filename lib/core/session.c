/*
 * fwx - sessions: IFWXSession, session filters and event dispatch.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "core/log.h"

#include <stdlib.h>

static const IFWXSessionVtbl session_vtbl;

bool fwx__session_is_ours(IFWXSession *s) { return s != NULL && s->lpVtbl == &session_vtbl; }

fwx__session *fwx__session_new(fwx_firewall *fw, uint32_t source, const struct sockaddr *client,
                               const struct sockaddr *gw_internal, const char *user, uint32_t flags)
{
    fwx__session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if (user != NULL && (s->user = strdup(user)) == NULL) {
        free(s);
        return NULL;
    }
    s->iface.lpVtbl = &session_vtbl;
    /* One for the caller, one for the firewall's list (dropped when the session ends). A
       private session's list entry holds none: it ends on its last release (s_Release). */
    atomic_init(&s->refs, (flags & FWX_SESSION_PRIVATE) ? 1 : 2);
    atomic_init(&s->core_refs, 0);
    s->fw = fw;
    s->id = fwx__firewall_new_id(fw);
    s->created_ms = uv_now(fw->loop);
    s->source = source;
    s->flags = flags | (source == fwxSourceNAT ? FWX_SESSION_NAT : 0) | (user ? FWX_SESSION_AUTHENTICATED : 0);
    fwx__sa_set(&s->client, client);
    fwx__sa_set_port((struct sockaddr *)&s->client, 0);
    if (gw_internal != NULL) {
        fwx__sa_set(&s->gw_internal, gw_internal);
        s->has_gw_internal = true;
    }
    fwx__list_init(&s->conns);
    fwx__list_init(&s->secondaries);
    fwx__list_init(&s->grants);
    fwx__list_init(&s->factories);
    fwx__list_init(&s->closing_binds);
    fwx__list_insert_tail(&fw->sessions, &s->node);
    fw->n_sessions++;
    char a[FWX__SA_STRLEN];
    fwx__log_session(s, FWX_LOG_INFO, "session %llu: opened for %s (%s%s)", (unsigned long long)s->id, fwx__sa_fmt_ip(client, a),
             source == fwxSourceNAT ? "nat" : "explicit", (flags & FWX_SESSION_PRIVATE) ? ", private" : "");
    fwx__event_session(s, FWX_EVENT_SESSION_OPENED);
    return s;
}

fwx_result fwx_session_open(fwx_firewall *fw, const fwx_session_params *params, IFWXSession **out)
{
    struct sockaddr_storage client, gw;
    fwx_session_params sp;
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (fw == NULL || params == NULL)
        return FWX_E_POINTER;
    if (!FWX__STRUCT_IN(sp, params, FWX__FIRST_SESSION_PARAMS))
        return fwx__struct_refused(fw, "fwx_session_open", "fwx_session_params", params->struct_size,
                                   FWX__FIRST_SESSION_PARAMS, sizeof sp);
    const fwx_session_params *p = &sp;
    if ((p->source != fwxSourceNAT && p->source != fwxSourceWSP) ||
        !fwx__sa_canon(p->client, p->client_len, &client))
        return FWX_E_INVALIDARG;
    if (p->gateway_internal != NULL && !fwx__sa_canon(p->gateway_internal, p->gateway_internal_len, &gw))
        return FWX_E_INVALIDARG;
    if (fw->closing)
        return FWX_E_TERMINATING;
    fwx__sa_key k;
    fwx__sa_key_of((const struct sockaddr *)&client, false, &k);
    if (p->source == fwxSourceNAT) {
        fwx__session *found = NULL;
        HASH_FIND(hh, fw->nat_by_ip, &k, sizeof k, found);
        if (found != NULL) {
            IFWXSession_AddRef(&found->iface);
            *out = &found->iface;
            return FWX_S_FALSE;
        }
    }
    if (fw->n_sessions >= fw->opts.max_sessions) {
        char a[FWX__SA_STRLEN];
        fwx__log(fw, FWX_LOG_WARN, "session for %s refused: %u sessions open (max_sessions)",
                 fwx__sa_fmt_ip((const struct sockaddr *)&client, a), fw->n_sessions);
        return FWX_E_QUOTA_EXCEEDED;
    }
    fwx__session *s = fwx__session_new(fw, p->source, (const struct sockaddr *)&client,
                                       p->gateway_internal ? (const struct sockaddr *)&gw : NULL, p->user, 0);
    if (s == NULL)
        return FWX_E_OUTOFMEMORY;
    if (p->source == fwxSourceNAT) {
        s->ip_key = k;
        HASH_ADD(hh, fw->nat_by_ip, ip_key, sizeof s->ip_key, s);
        s->in_nat_table = true;
    }
    *out = &s->iface;
    return FWX_S_OK;
}

/* ---- attachments ------------------------------------------------------------------------- */

static fwx__attachment *find_att(fwx__session *s, fwx__plugin *p)
{
    for (size_t i = 0; i < s->n_att; i++)
        if (s->att[i].plugin == p)
            return &s->att[i];
    return NULL;
}

fwx__attachment *fwx__session_attach(fwx__session *s, fwx__plugin *p, fwx_result *hr)
{
    fwx__attachment *a = find_att(s, p);
    *hr = FWX_S_OK;
    if (a != NULL)
        return a;
    fwx__attachment *grown = realloc(s->att, (s->n_att + 1) * sizeof *grown);
    if (grown == NULL) {
        *hr = FWX_E_OUTOFMEMORY;
        return NULL;
    }
    s->att = grown;
    FwxFilterHookEvents ev = {p->hooks};
    IFWXSessionFilter *sf = NULL;
    fwx__plugin_call saved;
    fwx__plugin_enter(s->fw, p, 0, &saved);
    uint32_t refs0 = atomic_load(&s->refs), core0 = atomic_load(&s->core_refs);
    fwx_result r = IFWXFilter_AttachToSession(p->filter, &s->iface, &sf, &ev);
    /* What the filter kept of the session (not counting connections it made meanwhile) is
       the core's own: a session filter holding its session must not keep a private one alive. */
    int64_t took = ((int64_t)atomic_load(&s->refs) - refs0) - ((int64_t)atomic_load(&s->core_refs) - core0);
    fwx__plugin_leave(s->fw, &saved);
    if (FWX_FAILED(r)) {
        if (sf != NULL)
            IFWXSessionFilter_Release(sf);
        fwx__log(s->fw, FWX_LOG_WARN, "plugin \"%s\": AttachToSession failed: %s", p->name, fwx_strerror(r));
        *hr = r;
        return NULL;
    }
    /* The per-session set may narrow or widen the global one, but never past the manifest. */
    uint32_t events = ev.dwGlobalEvents & FWX_HOOK_EVENTS_MASK & p->entry->allowed_events;
    a = &s->att[s->n_att++];
    a->plugin = p;
    a->sf = sf;
    a->events = sf ? events : 0;
    a->held = sf != NULL && took > 0 ? (uint32_t)took : 0;
    atomic_fetch_add(&s->core_refs, a->held);
    a->detached = false;
    return a;
}

static void detach_one(fwx__session *s, fwx__attachment *a)
{
    if (a->detached)
        return;
    a->detached = true;
    /* The filter gives back what it took from here on: count it as ours no more first. */
    atomic_fetch_sub(&s->core_refs, a->held);
    a->held = 0;
    if (a->sf == NULL)
        return;
    fwx__plugin_call saved;
    fwx__plugin_enter(s->fw, a->plugin, 0, &saved);
    fwx_result hr = IFWXSessionFilter_Detach(a->sf);
    fwx__plugin_leave(s->fw, &saved);
    if (FWX_FAILED(hr))
        fwx__log(s->fw, FWX_LOG_WARN, "plugin \"%s\": session filter Detach failed: %s", a->plugin->name,
                 fwx_strerror(hr));
    IFWXSessionFilter *sf = a->sf;
    a->sf = NULL;
    IFWXSessionFilter_Release(sf);
}

void fwx__sessions_detach_plugin(fwx_firewall *fw, fwx__plugin *p)
{
    for (fwx__list *n = fw->sessions.next; n != &fw->sessions; n = n->next) {
        fwx__session *s = fwx__list_entry(n, fwx__session, node);
        fwx__attachment *a = find_att(s, p);
        if (a != NULL)
            detach_one(s, a);
    }
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* Would plugin p see this event at all, before any per-session narrowing? */
static bool plugin_wants(fwx__session *s, fwx__plugin *p, uint32_t hooks, uint32_t type, const fwx_guid *pg,
                         bool secondary)
{
    if (p->unloaded || !(hooks & type) || !(hooks & s->source))
        return false;
    if (secondary && !(hooks & fwxAssociatedProtocolsAllConnections))
        return false;
    if (hooks & fwxAnyProtocol)
        return true;
    /* Without a policy there are no protocol bindings: every filter sees every protocol. */
    if (s->fw->policy == NULL)
        return true;
    const fwx__protocol *proto = pg ? fwx__policy_protocol_by_guid(s->fw->policy, pg) : NULL;
    return proto != NULL && fwx__protocol_has_filter(proto, &p->guid, p->name);
}

bool fwx__event_hooked(fwx__session *s, uint32_t type, const fwx_guid *pg, bool secondary)
{
    fwx_firewall *fw = s->fw;
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next) {
        fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
        fwx__attachment *a = find_att(s, p);
        uint32_t hooks = a ? (a->detached || !a->sf ? 0 : a->events) : p->hooks;
        if (plugin_wants(s, p, hooks, type, pg, secondary))
            return true;
    }
    return false;
}

static FwxFilterAccess *access_field(FwxFirewallEvent *ev)
{
    switch (ev->EventType) {
    case fwx_Connect_Tcp:
    case fwx_Bind_Tcp:
    case fwx_Bind_Udp:
        return &ev->Parameters.Connect.FilterAccess;
    case fwx_Udp_Destination:
        return &ev->Parameters.UdpDest.FilterAccess;
    case fwx_AcceptedConnection:
        return &ev->Parameters.Accept.FilterAccess;
    default:
        return NULL;
    }
}

fwx_result fwx__dispatch(fwx__session *s, fwx__conn *c, FwxFirewallEvent *ev, const fwx_guid *pg, bool secondary)
{
    fwx_firewall *fw = s->fw;
    FwxFilterAccess *access = access_field(ev);
    ev->StructSize = sizeof *ev;
    ev->EventSource = s->source;
    /* The plugins loaded when the event starts: one a handler loads joins from the next event
       (plugins are appended, and only unlinked when the firewall's memory goes). */
    const fwx__list *last = fw->plugins.prev;
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n == last ? &fw->plugins : n->next) {
        fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
        fwx__attachment *a = find_att(s, p);
        if (a == NULL) {
            /* Not attached yet: the global hooks decide whether this event attaches it. */
            if (!plugin_wants(s, p, p->hooks, ev->EventType, pg, secondary))
                continue;
            if (fwx__plugin_quarantined(p)) {
                /* The watchdog caught it overrunning: no new sessions. A plugin that watches
                   every protocol is skipped; one the policy binds to this protocol cannot be,
                   or the protocol would be relayed unfiltered: the request is refused. */
                if (p->hooks & fwxAnyProtocol)
                    continue;
                char en[FWX__EVENT_NAME_LEN];
                fwx__log_at(fw, FWX_LOG_WARN, &(fwx__log_about){.plugin = p, .session = s, .conn = c,
                                                                .event = ev->EventType},
                            "plugin \"%s\": quarantined after overrunning its time limit, %s refused", p->name,
                            fwx__event_name(ev->EventType, en));
                return FWX_E_FILTER_NOT_REGISTERED;
            }
            fwx_result hr;
            a = fwx__session_attach(s, p, &hr);
            if (a == NULL)
                return hr; /* T16 (doc/sdk-rules.md): AttachToSession failing fails the request */
        }
        /* Attached: the per-session hooks decide. */
        if (a->detached || a->sf == NULL || !plugin_wants(s, p, a->events, ev->EventType, pg, secondary))
            continue;
        uint32_t saved_event = c ? c->in_event : 0;
        if (c != NULL)
            c->in_event = ev->EventType;
        fwx__plugin_call saved;
        fwx__plugin_enter(s->fw, p, ev->EventType, &saved);
        IFWXSessionFilter_AddRef(a->sf); /* the handler may end the session and detach it */
        IFWXSessionFilter *sf = a->sf;
        fwx_result hr = IFWXSessionFilter_FirewallEventHandler(sf, ev);
        IFWXSessionFilter_Release(sf);
        fwx__plugin_leave(s->fw, &saved);
        if (c != NULL)
            c->in_event = saved_event;
        char en[FWX__EVENT_NAME_LEN];
        fwx__log_about about = {.plugin = p, .session = s, .conn = c, .event = ev->EventType};
        if (FWX_FAILED(hr)) {
            fwx__log_at(fw, FWX_LOG_WARN, &about, "plugin \"%s\": %s handler failed: %s, request refused", p->name,
                        fwx__event_name(ev->EventType, en), fwx_strerror(hr));
            return hr;
        }
        if (c != NULL && c->denied) {
            fwx__log_at(fw, FWX_LOG_INFO, &about, "plugin \"%s\": denied %s on connection %llu", p->name,
                        fwx__event_name(ev->EventType, en), (unsigned long long)c->id);
            if (access != NULL)
                *access = FWX_DENY;
            return FWX_S_OK;
        }
        if (access != NULL && c != NULL && (c->flags & FWX_CONNECTION_EMULATED))
            *access = FWX_EMULATE;
        /* Sessions may end inside a handler (the host closed it); stop at once. */
        if (s->ended)
            return FWX_E_TERMINATING;
    }
    return FWX_S_OK;
}

/* ---- peers -------------------------------------------------------------------------------- */

bool fwx__session_is_peer(fwx__session *s, const struct sockaddr *addr)
{
    for (fwx__list *n = s->conns.next; n != &s->conns; n = n->next) {
        fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
        if (fwx__conn_counts_as_peer(c) && fwx__sa_same_ip((const struct sockaddr *)&c->ext_peer, addr))
            return true;
    }
    return false;
}

bool fwx__session_is_own_host(fwx__session *s, const struct sockaddr *addr)
{
    if (fwx__sa_same_ip((const struct sockaddr *)&s->client, addr))
        return true;
    for (fwx__list *n = s->conns.next; n != &s->conns; n = n->next) {
        fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
        if (fwx__conn_has_own_server(c) && fwx__sa_same_ip((const struct sockaddr *)&c->server, addr))
            return true;
    }
    return false;
}

bool fwx__session_is_server(fwx__session *s, const struct sockaddr *addr)
{
    for (fwx__list *n = s->conns.next; n != &s->conns; n = n->next) {
        fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
        if (fwx__conn_has_own_server(c) && fwx__sa_same_ip((const struct sockaddr *)&c->server, addr))
            return true;
    }
    return false;
}

bool fwx__session_published_only(fwx__session *s)
{
    bool any = false;
    for (fwx__list *n = s->conns.next; n != &s->conns; n = n->next) {
        fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
        if (c->flags & (FWX_CONNECTION_SECONDARY | FWX_CONNECTION_LISTENING))
            continue;
        if (!c->has_server)
            return false;
        any = true;
    }
    return any;
}

const struct sockaddr *fwx__session_last_peer(fwx__session *s)
{
    for (fwx__list *n = s->conns.prev; n != &s->conns; n = n->prev) {
        fwx__conn *c = fwx__list_entry(n, fwx__conn, node);
        if (c->has_ext_peer && !(c->flags & (FWX_CONNECTION_SECONDARY | FWX_CONNECTION_LISTENING)))
            return (const struct sockaddr *)&c->ext_peer;
    }
    return NULL;
}

/* ---- end ---------------------------------------------------------------------------------- */

void fwx__session_end(fwx__session *s)
{
    fwx_firewall *fw = s->fw;
    if (s->ended)
        return;
    s->ended = true;
    s->flags |= FWX_SESSION_TERMINATED;
    IFWXSession_AddRef(&s->iface); /* keep it while filters run */
    /* Grants first: nothing may be admitted while the connections go. The backend withdraws
       them all in one step (one kernel transaction for nft), so that no permission stays
       usable in the kernel while the others are deleted one by one. */
    size_t ng = 0;
    for (fwx__list *n = s->grants.next; n != &s->grants; n = n->next)
        ng++;
    fwx__grant **gs = ng > 1 ? malloc(ng * sizeof *gs) : NULL;
    if (gs != NULL) {
        size_t i = 0;
        for (fwx__list *n = s->grants.next; n != &s->grants; n = n->next)
            gs[i++] = fwx__list_entry(n, fwx__grant, session_node);
        fwx__backend_grant_remove_many(fw, gs, ng);
        free(gs);
    }
    for (size_t i = 0; i < ng && !fwx__list_empty(&s->grants); i++)
        fwx__grant_remove(fwx__list_entry(s->grants.next, fwx__grant, session_node), "its session ended");
    fwx__list_assert_drained(&s->grants);
    fwx__list *lists[] = {&s->conns, &s->secondaries};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0, n = fwx__list_count(lists[l]); i < n && !fwx__list_empty(lists[l]); i++)
            fwx__conn_terminate(fwx__list_entry(lists[l]->next, fwx__conn, node));
        fwx__list_assert_drained(lists[l]);
    }
    for (size_t i = 0; i < s->n_att; i++)
        detach_one(s, &s->att[i]);
    if (s->in_nat_table) {
        HASH_DELETE(hh, fw->nat_by_ip, s);
        s->in_nat_table = false;
    }
    fwx__list_remove(&s->node);
    fw->n_sessions--;
    char a[FWX__SA_STRLEN];
    fwx__log_session(s, FWX_LOG_INFO, "session %llu: ended for %s", (unsigned long long)s->id,
             fwx__sa_fmt_ip((struct sockaddr *)&s->client, a));
    fwx__event_session(s, FWX_EVENT_SESSION_ENDED);
    if (!(s->flags & FWX_SESSION_PRIVATE))
        IFWXSession_Release(&s->iface); /* the list's reference */
    IFWXSession_Release(&s->iface); /* ours, from above */
}

fwx_result fwx_session_close(IFWXSession *session)
{
    if (session == NULL || !fwx__session_is_ours(session))
        return FWX_E_POINTER;
    fwx__session *s = fwx__session_from(session);
    if (s->ended)
        return FWX_S_FALSE;
    fwx__session_end(s);
    return FWX_S_OK;
}

/* ---- IFWXSession -------------------------------------------------------------------------- */

static fwx_result s_QueryInterface(IFWXSession *This, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    if (riid != NULL && (fwx_guid_equal(riid, &IID_IUnknown) || fwx_guid_equal(riid, &IID_IFWXSession))) {
        IFWXSession_AddRef(This);
        *ppv = This;
        return FWX_S_OK;
    }
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}

static uint32_t s_AddRef(IFWXSession *This) { return atomic_fetch_add(&fwx__session_from(This)->refs, 1) + 1; }

static uint32_t s_Release(IFWXSession *This)
{
    fwx__session *s = fwx__session_from(This);
    uint32_t n = atomic_fetch_sub(&s->refs, 1) - 1;
    if (n != 0 && (s->flags & FWX_SESSION_PRIVATE) && !s->ended && n <= atomic_load(&s->core_refs)) {
        /* The last reference from outside the core went: a private session ends now, as
           fwx_session_close() would end it. Held across the end, which releases its own. */
        atomic_fetch_add(&s->refs, 1);
        fwx__session_end(s);
        n = atomic_fetch_sub(&s->refs, 1) - 1;
    }
    if (n == 0) {
        free(s->att);
        free(s->user);
        free(s);
    }
    return n;
}

static fwx_result s_GetClientAddress(IFWXSession *This, struct sockaddr *Address, uint32_t *AddressLength)
{
    fwx__session *s = fwx__session_from(This);
    if (Address == NULL || AddressLength == NULL)
        return FWX_E_POINTER;
    uint32_t need = fwx__sa_len((const struct sockaddr *)&s->client);
    if (*AddressLength < need) {
        *AddressLength = need;
        return FWX_E_INVALIDARG;
    }
    memcpy(Address, &s->client, need);
    *AddressLength = need;
    return FWX_S_OK;
}

static fwx_result s_EmulateClientBind(IFWXSession *This, const struct sockaddr *ClientAddress, uint32_t cl,
                                      const struct sockaddr *ProxyAddress, uint32_t pl, int32_t Protocol,
                                      const fwx_guid *ProtocolGuid, IFWXConnection **ppConnection, int32_t fIat)
{
    fwx__session *s = fwx__session_from(This);
    struct sockaddr_storage client, proxy;
    if (ppConnection == NULL)
        return FWX_E_POINTER;
    *ppConnection = NULL;
    if (s->ended)
        return FWX_E_TERMINATING;
    if ((Protocol != FWX_PROTOCOL_TCP && Protocol != FWX_PROTOCOL_UDP) || !fwx__sa_canon(ClientAddress, cl, &client) ||
        !fwx__sa_canon(ProxyAddress, pl, &proxy))
        return FWX_E_INVALIDARG;
    /* The filter produces the data, but it still may only do so for this session's own hosts. */
    if (!fwx__session_is_own_host(s, (const struct sockaddr *)&client))
        return FWX_E_ADDRESS_NOT_ALLOWED;
    fwx__conn *c = fwx__conn_new(s, Protocol, Protocol == FWX_PROTOCOL_TCP ? fwx_Bind_Tcp : fwx_Bind_Udp,
                                 ProtocolGuid ? ProtocolGuid : &FWX_GUID_NULL,
                                 FWX_CONNECTION_LISTENING | FWX_CONNECTION_EMULATED |
                                     (fIat ? FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION : 0));
    if (c == NULL)
        return FWX_E_OUTOFMEMORY;
    fwx__sa_set(&c->client, (const struct sockaddr *)&client);
    fwx__sa_set(&c->ext_local, (const struct sockaddr *)&proxy);
    c->has_ext_local = true;
    *ppConnection = &c->iface;
    return FWX_S_OK;
}

static fwx_result s_GetSessionFlags(IFWXSession *This, uint32_t *pdwFlags)
{
    if (pdwFlags == NULL)
        return FWX_E_POINTER;
    *pdwFlags = fwx__session_from(This)->flags;
    return FWX_S_OK;
}

static fwx_result s_AttachFilter(IFWXSession *This, const fwx_guid *FilterGuid)
{
    fwx__session *s = fwx__session_from(This);
    if (FilterGuid == NULL)
        return FWX_E_POINTER;
    if (s->ended)
        return FWX_E_TERMINATING;
    fwx__plugin *p = fwx__plugin_find(s->fw, FilterGuid);
    if (p == NULL)
        return FWX_E_CLASSNOTREG;
    fwx_result hr;
    fwx__attachment *a = fwx__session_attach(s, p, &hr);
    return a ? FWX_S_OK : hr;
}

static fwx_result s_CreateNetworkSocket(IFWXSession *This, int32_t Protocol, IFWXNetworkSocket **ppSocket)
{
    fwx__session *s = fwx__session_from(This);
    if (ppSocket == NULL)
        return FWX_E_POINTER;
    *ppSocket = NULL;
    if (s->ended)
        return FWX_E_TERMINATING;
    return IFWXFirewall_CreateNetworkSocket(&s->fw->iface, Protocol, ppSocket);
}

static const IFWXSessionVtbl session_vtbl = {
    s_QueryInterface,
    s_AddRef,
    s_Release,
    s_GetClientAddress,
    fwx__AllowFutureConnect,
    fwx__BindForClient,
    s_EmulateClientBind,
    s_GetSessionFlags,
    fwx__RedirectConnections,
    s_AttachFilter,
    fwx__SetDataFilterFactory,
    fwx__RetroactiveAllowBind,
    s_CreateNetworkSocket,
};
