/*
 * fwx - connections: IFWXConnection, primary connections opened by the host, termination.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "core/log.h"

#include <stdlib.h>

static const IFWXConnection3Vtbl conn_vtbl;
static const IFWXUdpDestinationVtbl udpdest_vtbl;

bool fwx__conn_is_ours(IFWXConnection *c) { return c != NULL && c->lpVtbl == &conn_vtbl.Base.Base; }

/* The rule name a connection keeps: the firewall's one copy of text, +1 (NULL: out of memory).
   Held, not copied per connection, and not pointed into the policy: a reload frees the policy
   while its connections live on. */
static fwx__name *name_hold(fwx_firewall *fw, const char *text)
{
    size_t len = strlen(text);
    fwx__name *n = NULL;
    HASH_FIND(hh, fw->names, text, len, n);
    if (n == NULL) {
        if ((n = malloc(sizeof *n + len + 1)) == NULL)
            return NULL;
        memset(n, 0, sizeof *n);
        memcpy(n->text, text, len + 1);
        HASH_ADD_KEYPTR(hh, fw->names, n->text, len, n);
    }
    n->refs++;
    return n;
}

static void name_drop(fwx_firewall *fw, fwx__name *n)
{
    if (n != NULL && --n->refs == 0) {
        HASH_DEL(fw->names, n);
        free(n);
    }
}

fwx__conn *fwx__conn_new(fwx__session *s, int32_t protocol, uint32_t event, const fwx_guid *pg, uint32_t flags)
{
    fwx__conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->iface.lpVtbl = &conn_vtbl.Base.Base;
    c->udpdest.lpVtbl = &udpdest_vtbl;
    atomic_init(&c->refs, 2); /* the caller's and the session list's */
    fwx__list_init(&c->to_node);
    c->session = s;
    IFWXSession_AddRef(&s->iface);
    atomic_fetch_add(&s->core_refs, 1);
    c->id = fwx__firewall_new_id(s->fw);
    c->created_ms = uv_now(s->fw->loop);
    c->protocol = protocol;
    c->event = event;
    c->protocol_guid = pg ? *pg : FWX_GUID_NULL;
    c->buffer_size = protocol == FWX_PROTOCOL_UDP ? 4096 : 2048;
    c->client = s->client;
    c->flags = flags;
    fwx__list_insert_tail((flags & FWX_CONNECTION_SECONDARY) ? &s->secondaries : &s->conns, &c->node);
    s->fw->n_connections++;
    return c;
}

fwx__conn_ext *fwx__conn_ext_get(fwx__conn *c)
{
    if (c->ext == NULL)
        c->ext = calloc(1, sizeof *c->ext);
    return c->ext;
}

void fwx__conn_set_upstream_local(IFWXConnection *conn, const struct sockaddr *local)
{
    struct sockaddr_storage ss;
    if (!fwx__conn_is_ours(conn) || local == NULL || !fwx__sa_canon(local, fwx__sa_len(local), &ss) ||
        fwx__sa_is_unspecified((struct sockaddr *)&ss))
        return;
    fwx__conn *c = fwx__conn_from(conn);
    /* Toward a published server (or the target of a bound port) the upstream is the internal
       side; for a client's outbound connection (or a redirect's) it is the external side. */
    if (c->event == fwx_AcceptedConnection || c->event == fwx_Bind_Tcp) {
        fwx__sa_set(&c->int_local, (const struct sockaddr *)&ss);
        c->has_int_local = true;
    } else if (!c->has_ext_local) {
        fwx__sa_set(&c->ext_local, (const struct sockaddr *)&ss);
        c->has_ext_local = true;
    }
}

fwx_result fwx_connection_set_upstream_local(IFWXConnection *conn, const struct sockaddr *local, uint32_t len)
{
    struct sockaddr_storage ss;
    if (conn == NULL || local == NULL)
        return FWX_E_POINTER;
    if (!fwx__conn_is_ours(conn) || !fwx__sa_canon(local, len, &ss) || fwx__sa_is_unspecified((struct sockaddr *)&ss))
        return FWX_E_INVALIDARG;
    fwx__conn_set_upstream_local(conn, (const struct sockaddr *)&ss);
    return FWX_S_OK;
}

fwx_result fwx_connection_set_internal_peer(IFWXConnection *conn, const struct sockaddr *peer, uint32_t len)
{
    struct sockaddr_storage ss;
    if (conn == NULL || peer == NULL)
        return FWX_E_POINTER;
    if (!fwx__conn_is_ours(conn) || !fwx__sa_canon(peer, len, &ss) || fwx__sa_port((struct sockaddr *)&ss) == 0)
        return FWX_E_INVALIDARG;
    fwx__conn *c = fwx__conn_from(conn);
    /* Only the port is news: the address is the session's client, whose flows these are. */
    if (c->has_server || !fwx__sa_same_ip((struct sockaddr *)&ss, (struct sockaddr *)&c->session->client))
        return FWX_E_INVALIDARG;
    fwx__sa_set(&c->client, (const struct sockaddr *)&ss);
    return FWX_S_OK;
}

fwx_firewall *fwx_connection_firewall(IFWXConnection *conn)
{
    return conn != NULL && fwx__conn_is_ours(conn) ? fwx__conn_from(conn)->session->fw : NULL;
}

uint64_t fwx_connection_id(IFWXConnection *conn)
{
    return conn != NULL && fwx__conn_is_ours(conn) ? fwx__conn_from(conn)->id : 0;
}

fwx_result fwx__conn_attach_df(fwx__conn *c, IFWXDataFilter *df, FwxDataFilterPriorityClass prio, IUnknown *ctx)
{
    return fwx__conn_attach_df_to(c, df, prio, ctx, NULL);
}

fwx_result fwx__conn_attach_df_to(fwx__conn *c, IFWXDataFilter *df, FwxDataFilterPriorityClass prio, IUnknown *ctx,
                                  const struct sockaddr_storage *dest)
{
    fwx__conn_ext *x = fwx__conn_ext_get(c);
    if (x == NULL)
        return FWX_E_OUTOFMEMORY;
    fwx__dfentry *grown = realloc(c->dfs, (c->n_dfs + 1) * sizeof *grown);
    if (grown == NULL)
        return FWX_E_OUTOFMEMORY;
    c->dfs = grown;
    /* Keep the chain sorted client → server by class; equal classes keep arrival order. */
    size_t at = c->n_dfs;
    while (at > 0 && c->dfs[at - 1].prio > prio)
        at--;
    memmove(&c->dfs[at + 1], &c->dfs[at], (c->n_dfs - at) * sizeof *c->dfs);
    c->dfs[at].df = df;
    c->dfs[at].prio = prio;
    c->dfs[at].ctx = ctx;
    c->dfs[at].has_dest = dest != NULL;
    fwx__sa_set(&c->dfs[at].dest, (const struct sockaddr *)dest); /* canonical (or NULL: zero) */
    fwx__plugin *owner = c->session->fw->current_plugin;
    c->dfs[at].plugin = owner;
    if (x->dfs_seen == 0)
        x->df_owner = owner;
    else if (x->df_owner != owner)
        x->df_owner = NULL;
    x->dfs_seen++;
    c->n_dfs++;
    IFWXDataFilter_AddRef(df);
    if (ctx != NULL)
        IUnknown_AddRef(ctx);
    c->flags &= ~FWX_CONNECTION_KERNEL_MODE;
    return FWX_S_OK;
}

void fwx__conn_terminate(fwx__conn *c)
{
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return;
    c->flags |= FWX_CONNECTION_TERMINATED;
    fwx__timeouts_forget(c);
    fwx__session *s = c->session;
    fwx_firewall *fw = s->fw;
    bool client_bind = fwx__conn_x(c)->grant != NULL && fwx__conn_x(c)->grant->type == FWX__G_CLIENT_BIND;
    IFWXConnection_AddRef(&c->iface); /* handlers may release what they hold */
    /* ConnectionTerminating needs no registration: every session filter hears it. */
    FwxFirewallEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.StructSize = sizeof ev;
    ev.EventType = fwx_ConnectionTerminating;
    ev.EventSource = s->source;
    ev.Parameters.EndConnect.piConnection = &c->iface;
    ev.Parameters.EndConnect.ProtocolGuid = c->protocol_guid;
    for (size_t i = 0; i < s->n_att; i++) {
        fwx__attachment *a = &s->att[i];
        if (a->detached || a->sf == NULL || a->plugin->unloaded)
            continue;
        IFWXSessionFilter *sf = a->sf;
        IFWXSessionFilter_AddRef(sf);
        fwx__plugin_call saved;
        fwx__plugin_enter(fw, a->plugin, fwx_ConnectionTerminating, &saved);
        c->in_event = fwx_ConnectionTerminating;
        (void)IFWXSessionFilter_FirewallEventHandler(sf, &ev);
        c->in_event = 0;
        fwx__plugin_leave(fw, &saved);
        IFWXSessionFilter_Release(sf);
    }
    /* After the event, so that a handler still finds the bind "terminating" (T11, doc/sdk-rules.md). */
    if (fwx__conn_x(c)->grant != NULL)
        fwx__grant_remove(c->ext->grant, "its connection ended");
    for (size_t i = 0; i < c->n_dfs; i++) {
        (void)IFWXDataFilter_Detach(c->dfs[i].df);
        IFWXDataFilter_Release(c->dfs[i].df);
        if (c->dfs[i].ctx != NULL)
            IUnknown_Release(c->dfs[i].ctx);
    }
    free(c->dfs);
    c->dfs = NULL;
    c->n_dfs = 0;
    fwx__backend_kill(fw, c);
    fwx__registry_unlink(c); /* its outbound flow is gone: so is what the next hop could ask */
    if (fwx__conn_x(c)->ipfilter != NULL) {
        IFWXIpFilter_Release(c->ext->ipfilter);
        c->ext->ipfilter = NULL;
    }
    fwx__log_at(fw, FWX_LOG_INFO, &(fwx__log_about){.conn = c, .bytes = true},
                "connection %llu: closed (%llu bytes from the client, %llu from the peer)",
             (unsigned long long)c->id, (unsigned long long)c->bytes_in,
             (unsigned long long)(c->bytes_out + c->bytes_sent));
    fwx__event_conn(c, FWX_EVENT_CONNECTION_CLOSED);
    fwx__list_remove(&c->node);
    if (client_bind)
        fwx__list_insert_tail(&s->closing_binds, &c->node); /* until its object goes (c_Release) */
    IFWXConnection_Release(&c->iface); /* the session list's */
    IFWXConnection_Release(&c->iface); /* ours */
}

/* ---- the host's calls -------------------------------------------------------------------- */

static bool event_is_primary(uint32_t e)
{
    return e == fwx_Connect_Tcp || e == fwx_AcceptedConnection || e == fwx_Udp_Destination || e == fwx_Bind_Tcp ||
           e == fwx_Bind_Udp;
}

static fwx_result deny_code(uint32_t event)
{
    switch (event) {
    case fwx_Connect_Tcp:
        return FWX_E_CONNREFUSED;
    case fwx_Bind_Tcp:
    case fwx_Bind_Udp:
        return FWX_E_ADDRINUSE;
    default:
        return FWX_E_DENIED;
    }
}

/* Fills the event's payload for connection c. */
static void fill_event(FwxFirewallEvent *ev, fwx__conn *c, uint32_t type, FwxFilterAccess access, bool secondary)
{
    memset(ev, 0, sizeof *ev);
    ev->EventType = type;
    if (type == fwx_AcceptedConnection) {
        FwxAcceptEvent *a = &ev->Parameters.Accept;
        fwx__sa_get(&a->RemoteAddress, &c->ext_peer);
        a->RemoteAddressLength = fwx__sa_len((struct sockaddr *)&c->ext_peer);
        if (c->has_ext_local) {
            fwx__sa_get(&a->LocalAddress, &c->ext_local);
            a->LocalAddressLength = fwx__sa_len((struct sockaddr *)&c->ext_local);
        }
        a->piConnectionAccepted = &c->iface;
        a->FilterAccess = access;
        a->ProtocolGuid = c->protocol_guid;
        a->IsSecondary = secondary;
    } else if (type == fwx_Udp_Destination) {
        FwxUdpDestinationEvent *u = &ev->Parameters.UdpDest;
        fwx__sa_get(&u->Address, &c->ext_peer);
        u->AddressLength = fwx__sa_len((struct sockaddr *)&c->ext_peer);
        u->piConnection = &c->iface;
        u->FilterAccess = access;
        u->ProtocolGuid = c->protocol_guid;
        u->IsSecondary = secondary;
        u->piUdpDestination = &c->udpdest;
    } else if (type == fwx_Listen) {
        FwxListenEvent *l = &ev->Parameters.Listen;
        fwx__sa_get(&l->Address, c->has_ext_local ? &c->ext_local : &c->ext_peer);
        l->AddressLength = fwx__sa_len((struct sockaddr *)&l->Address);
        l->piConnection = &c->iface;
        l->ProtocolGuid = c->protocol_guid;
    } else {
        FwxConnectEvent *k = &ev->Parameters.Connect;
        fwx__sa_get(&k->Address, &c->ext_peer);
        k->AddressLength = fwx__sa_len((struct sockaddr *)&c->ext_peer);
        k->piConnection = &c->iface;
        k->FilterAccess = access;
        k->ProtocolGuid = c->protocol_guid;
        k->IsSecondary = secondary;
    }
}


fwx_result fwx__conn_start(fwx__conn *c, uint32_t type, FwxFilterAccess access, bool secondary, bool no_kernel)
{
    fwx__session *s = c->session;
    fwx_result hr = fwx__apply_factories(s, c, type, (const struct sockaddr *)&c->ext_peer);
    if (FWX_FAILED(hr)) {
        fwx__conn_terminate(c);
        return hr;
    }
    FwxFirewallEvent ev;
    fill_event(&ev, c, type, access, secondary);
    hr = fwx__dispatch(s, c, &ev, &c->protocol_guid, secondary);
    if (FWX_FAILED(hr) || c->denied) {
        fwx__conn_terminate(c); /* T16: ConnectionTerminating is still delivered */
        return FWX_FAILED(hr) ? hr : deny_code(type);
    }
    /* T9: the kernel may carry it only if nobody needs to see the data or its events. */
    bool kernel = !no_kernel && c->n_dfs == 0 && !(c->flags & FWX_CONNECTION_EMULATED) &&
                  !fwx__event_hooked(s, type, &c->protocol_guid, secondary);
    if (kernel)
        c->flags |= FWX_CONNECTION_KERNEL_MODE;
    hr = fwx__backend_relay(s->fw, c);
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_FAILED(hr) ? hr : FWX_E_BACKEND;
    fwx__timeouts_arm(c); /* user mode: its protocol's idle and handshake limits */
    return FWX_S_OK;
}

const char *fwx__conn_path_name(fwx__conn *c, bool in_kernel)
{
    if (c->n_dfs > 0)
        return "filtered";
    /* A primary connection in kernel mode is the kernel's under "nft" (a flow its compiled
       policy forwarded); under "proxy", or a host that relays, fwx or the host copies it. */
    if ((c->flags & FWX_CONNECTION_KERNEL_MODE) &&
        (in_kernel || (!(c->flags & FWX_CONNECTION_SECONDARY) && fwx__backend_kernel_carries(c->session->fw))))
        return "kernel-carried";
    return "relayed, no data filter";
}

fwx_result fwx_connection_open(IFWXSession *session, const fwx_connection_params *params, IFWXConnection **out)
{
    struct sockaddr_storage peer, local, server;
    fwx_connection_params cp;
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (session == NULL || params == NULL || !fwx__session_is_ours(session))
        return FWX_E_POINTER;
    fwx__session *s = fwx__session_from(session);
    fwx_firewall *fw = s->fw;
    /* Fields past the caller's size (published_server for a 1.0 caller) read as 0: unset. */
    if (!FWX__STRUCT_IN(cp, params, FWX__FIRST_CONNECTION_PARAMS))
        return fwx__struct_refused(fw, "fwx_connection_open", "fwx_connection_params", params->struct_size,
                                   FWX__FIRST_CONNECTION_PARAMS, sizeof cp);
    const fwx_connection_params *p = &cp;
    bool has_server = p->published_server != NULL;
    if (has_server && (p->event != fwx_AcceptedConnection ||
                       !fwx__sa_canon(p->published_server, p->published_server_len, &server)))
        return FWX_E_INVALIDARG;
    if (!event_is_primary(p->event) ||
        (p->protocol != FWX_PROTOCOL_TCP && p->protocol != FWX_PROTOCOL_UDP) ||
        !fwx__sa_canon(p->external_peer, p->external_peer_len, &peer) ||
        (p->flags & ~FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION) != 0)
        return FWX_E_INVALIDARG;
    if ((p->event == fwx_Connect_Tcp || p->event == fwx_Bind_Tcp) && p->protocol != FWX_PROTOCOL_TCP)
        return FWX_E_INVALIDARG;
    if ((p->event == fwx_Udp_Destination || p->event == fwx_Bind_Udp) && p->protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    if (p->external_local != NULL && !fwx__sa_canon(p->external_local, p->external_local_len, &local))
        return FWX_E_INVALIDARG;
    if (s->ended || fw->closing)
        return FWX_E_TERMINATING;

    bool is_bind = p->event == fwx_Bind_Tcp || p->event == fwx_Bind_Udp;
    const fwx_guid *pg = &FWX_GUID_NULL;
    FwxFilterAccess access = FWX_PASS;
    const char *rule = NULL;
    char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
    /* A client's own bind never fails (RetroactiveAllowBind approves it later); everything
       else meets the policy first: T21, rules before filters. */
    if (fw->policy != NULL && !is_bind) {
        bool inbound = p->event == fwx_AcceptedConnection;
        /* A connection to a publishing rule's listener is decided as going to the server the
           rule names, with the rule's protocol (whatever port it listens on): that is what the
           rule says, and what its access rule names. */
        const fwx__publish_rule *pub =
            has_server ? fwx__policy_publish_find(fw->policy, p->external_local ? (const struct sockaddr *)&local : NULL,
                                                  (const struct sockaddr *)&server)
                       : NULL;
        fwx__policy_request rq = {
            .ip_protocol = p->protocol,
            .direction = inbound ? FWX__DIR_INBOUND : FWX__DIR_OUTBOUND,
            .source = inbound ? (const struct sockaddr *)&peer : (const struct sockaddr *)&s->client,
            .destination = pub != NULL ? (const struct sockaddr *)&server
                           : inbound ? (p->external_local ? (const struct sockaddr *)&local : (const struct sockaddr *)&peer)
                                     : (const struct sockaddr *)&peer,
            .host_name = p->host_name,
            .user = s->user,
            .protocol_guid = pub != NULL && pub->protocol != NULL ? &pub->protocol->guid : NULL,
            .published = pub != NULL,
        };
        fwx__policy_decision d;
        char why[512];
        fwx__policy_decide(fw->policy, &rq, &d);
        if (FWX_FAILED(d.result)) {
            /* At warn: a refusal is what an operator looks for when something does not work. */
            fwx__policy_decision_fmt(&d, &rq, why, sizeof why);
            fwx__log_at(fw, FWX_LOG_WARN, &(fwx__log_about){.session = s, .rule = d.rule_name ? d.rule_name : "default"},
                        "connection %s -> %s refused by %s", fwx__sa_fmt(rq.source, a), fwx__sa_fmt(rq.destination, b),
                        why);
            fwx__event_refused(fw, s, NULL, p->protocol, rq.source, rq.destination, d.result,
                               d.rule_name ? d.rule_name : "default", why);
            return d.result;
        }
        /* A protocol bound to a filter is never relayed without it (a mistyped GUID, a plugin
           that failed to load or was unloaded): the filter is what makes it safe to carry. */
        const fwx__filter_ref *missing = fwx__protocol_missing_filter(fw, d.protocol);
        if (missing != NULL) {
            char g[FWX_GUID_STRLEN];
            fwx__log(fw, FWX_LOG_WARN,
                     "connection %s -> %s refused: protocol \"%s\" binds filter \"%s\" (%s:%d), which no loaded "
                     "plugin provides; not relaying it unfiltered",
                     fwx__sa_fmt(rq.source, a), fwx__sa_fmt(rq.destination, b), d.protocol->name,
                     fwx__filter_ref_fmt(missing, g), fwx__policy_source(fw->policy), missing->line);
            fwx__event_refused(fw, s, NULL, p->protocol, rq.source, rq.destination, FWX_E_CLASSNOTREG,
                               d.rule_name ? d.rule_name : "default", "a bound filter is not loaded");
            return FWX_E_CLASSNOTREG;
        }
        if (d.protocol != NULL)
            pg = &d.protocol->guid;
        access = FWX_ALLOW;
        rule = d.rule_name ? d.rule_name : "default";
    }
    fwx__conn *c = fwx__conn_new(s, p->protocol, p->event, pg, p->flags);
    if (c == NULL)
        return FWX_E_OUTOFMEMORY;
    if (rule != NULL && (c->rule = name_hold(fw, rule)) == NULL) {
        fwx__log(fw, FWX_LOG_ERROR, "connection %llu: out of memory for its rule's name, refused",
                 (unsigned long long)c->id);
        fwx__conn_terminate(c);
        IFWXConnection_Release(&c->iface);
        return FWX_E_OUTOFMEMORY;
    }
    fwx__sa_set(&c->ext_peer, (const struct sockaddr *)&peer);
    c->has_ext_peer = true;
    if (has_server) {
        fwx__sa_set(&c->server, (const struct sockaddr *)&server);
        c->has_server = true;
    }
    if (p->external_local != NULL) {
        fwx__sa_set(&c->ext_local, (const struct sockaddr *)&local);
        c->has_ext_local = true;
    }
    if (is_bind) {
        c->flags |= FWX_CONNECTION_LISTENING;
        fwx_result hr = fwx__client_bind_register(c);
        if (FWX_FAILED(hr)) {
            fwx__conn_terminate(c);
            IFWXConnection_Release(&c->iface);
            return hr;
        }
    }
    fwx_result hr = fwx__conn_start(c, p->event, access, false, false);
    if (FWX_FAILED(hr)) {
        /* Who connected to whom: an accepted connection comes from the peer to the gateway's
           address; every other goes from the client (known by its IP) to the peer. */
        char en[FWX__EVENT_NAME_LEN];
        bool in = p->event == fwx_AcceptedConnection;
        fwx__log_at(fw, FWX_LOG_INFO, &(fwx__log_about){.conn = c, .event = p->event},
                    "connection %llu: %s %s -> %s refused: %s", (unsigned long long)c->id,
                    fwx__event_name(p->event, en),
                    in ? fwx__sa_fmt((struct sockaddr *)&peer, a) : fwx__sa_fmt_ip((struct sockaddr *)&s->client, a),
                    in ? (p->external_local ? fwx__sa_fmt((struct sockaddr *)&local, b) : "?")
                       : fwx__sa_fmt((struct sockaddr *)&peer, b),
                    fwx_strerror(hr));
        fwx__event_refused(fw, s, c, p->protocol, in ? (struct sockaddr *)&peer : (struct sockaddr *)&s->client,
                           in ? (p->external_local ? (struct sockaddr *)&local : NULL) : (struct sockaddr *)&peer, hr,
                           fwx__conn_rule(c), fwx_strerror(hr));
        IFWXConnection_Release(&c->iface);
        return hr;
    }
    if (p->event == fwx_AcceptedConnection)
        fwx__log_conn(c, FWX_LOG_INFO, "connection %llu: %s -> %s accepted (%s)", (unsigned long long)c->id,
                 fwx__sa_fmt((struct sockaddr *)&peer, a),
                 p->external_local ? fwx__sa_fmt((struct sockaddr *)&local, b) : "?", fwx__conn_path_name(c, false));
    else
        fwx__log_conn(c, FWX_LOG_INFO, "connection %llu: %s -> %s %s (%s)", (unsigned long long)c->id,
                 fwx__sa_fmt_ip((struct sockaddr *)&s->client, a), fwx__sa_fmt((struct sockaddr *)&peer, b),
                 is_bind ? "bound" : "opened", fwx__conn_path_name(c, false));
    fwx__event_conn(c, FWX_EVENT_CONNECTION_OPENED);
    *out = &c->iface;
    return FWX_S_OK;
}

fwx_result fwx_connection_listen(IFWXConnection *conn)
{
    if (conn == NULL || !fwx__conn_is_ours(conn))
        return FWX_E_POINTER;
    fwx__conn *c = fwx__conn_from(conn);
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (c->protocol != FWX_PROTOCOL_TCP || !(c->flags & FWX_CONNECTION_LISTENING))
        return FWX_E_INVALIDARG;
    FwxFirewallEvent ev;
    fill_event(&ev, c, fwx_Listen, FWX_PASS, (c->flags & FWX_CONNECTION_SECONDARY) != 0);
    /* A listen cannot be refused (the socket is already bound): handler results are ignored. */
    (void)fwx__dispatch(c->session, c, &ev, &c->protocol_guid, (c->flags & FWX_CONNECTION_SECONDARY) != 0);
    c->denied = false;
    return FWX_S_OK;
}

void fwx_connection_count_bytes(IFWXConnection *conn, uint64_t from_client, uint64_t from_external)
{
    if (conn == NULL || !fwx__conn_is_ours(conn))
        return;
    fwx__conn *c = fwx__conn_from(conn);
    c->bytes_in += from_client;
    c->bytes_out += from_external;
    fwx__timeouts_touch(c);
}

void fwx_connection_close(IFWXConnection *conn)
{
    if (conn == NULL || !fwx__conn_is_ours(conn))
        return;
    fwx__conn_terminate(fwx__conn_from(conn));
    IFWXConnection_Release(conn);
}

/* ---- IFWXConnection ----------------------------------------------------------------------- */

static fwx_result c_QueryInterface(IFWXConnection *This, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    /* IFWXConnection3 starts with IFWXConnection2's methods, which start with IFWXConnection's:
       the same pointer serves all three. */
    if (riid != NULL && (fwx_guid_equal(riid, &IID_IUnknown) || fwx_guid_equal(riid, &IID_IFWXConnection) ||
                         fwx_guid_equal(riid, &IID_IFWXConnection2) || fwx_guid_equal(riid, &IID_IFWXConnection3))) {
        IFWXConnection_AddRef(This);
        *ppv = This;
        return FWX_S_OK;
    }
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}

static uint32_t c_AddRef(IFWXConnection *This) { return atomic_fetch_add(&fwx__conn_from(This)->refs, 1) + 1; }

static uint32_t c_Release(IFWXConnection *This)
{
    fwx__conn *c = fwx__conn_from(This);
    uint32_t n = atomic_fetch_sub(&c->refs, 1) - 1;
    if (n == 0) {
        fwx__session *s = c->session;
        fwx_firewall *fw = s->fw;
        fwx__list_remove(&c->node); /* a closing client bind's entry; a no-op otherwise */
        fwx_redirect_record_unref(fwx__conn_x(c)->redirect); /* the flow is gone: so are its hops' contexts */
        fwx__registry_unlink(c);
        free(c->ext);
        name_drop(fw, c->rule);
        free(c);
        atomic_fetch_sub(&s->core_refs, 1); /* first: this release is the core's own */
        IFWXSession_Release(&s->iface);
        fwx__firewall_connection_gone(fw);
    }
    return n;
}

static bool attachable_event(uint32_t e)
{
    return e == fwx_AcceptedConnection || e == fwx_Bind_Udp || e == fwx_Connect_Tcp || e == fwx_Udp_Destination;
}

static fwx_result c_AttachDataFilter(IFWXConnection *This, IFWXDataFilter *df, FwxDataFilterPriorityClass prio,
                                     IUnknown *ctx)
{
    fwx__conn *c = fwx__conn_from(This);
    if (df == NULL || (int)prio < fwx_dfpc_NAT || prio >= fwx__dfpc_COUNT)
        return FWX_E_INVALIDARG;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (!attachable_event(c->in_event))
        return FWX_E_BAD_CONTEXT;
    return fwx__conn_attach_df(c, df, prio, ctx);
}

static fwx_result c_AttachDataFilterWithDestination(IFWXConnection *This, IFWXDataFilter *df,
                                                    FwxDataFilterPriorityClass prio, IUnknown *ctx,
                                                    const struct sockaddr *ext, uint32_t extlen)
{
    fwx__conn *c = fwx__conn_from(This);
    struct sockaddr_storage dest;
    if (df == NULL || (int)prio < fwx_dfpc_NAT || prio >= fwx__dfpc_COUNT || !fwx__sa_canon(ext, extlen, &dest))
        return FWX_E_INVALIDARG;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (c->in_event != fwx_Udp_Destination)
        return FWX_E_BAD_CONTEXT;
    /* The user-mode UDP path gives this filter only the datagrams of this destination
       (lib/backends/usermode/dgram.c), and detaches it when the destination's flow ends. */
    return fwx__conn_attach_df_to(c, df, prio, ctx, &dest);
}

static fwx_result c_EmulateConnection(IFWXConnection *This, IFWXDataFilter *df, const struct sockaddr *r, uint32_t rl,
                                      const struct sockaddr *l, uint32_t ll, IFWXConnection **ppConnection)
{
    fwx__conn *c = fwx__conn_from(This);
    struct sockaddr_storage remote, local;
    if (ppConnection == NULL)
        return FWX_E_POINTER;
    *ppConnection = NULL;
    if (df == NULL || !fwx__sa_canon(r, rl, &remote) || !fwx__sa_canon(l, ll, &local))
        return FWX_E_INVALIDARG;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (!(c->flags & (FWX_CONNECTION_LISTENING | FWX_CONNECTION_EMULATED)))
        return FWX_E_WSAEINVAL;
    fwx__conn *e = fwx__conn_new(c->session, c->protocol, fwx_AcceptedConnection, &c->protocol_guid,
                                 FWX_CONNECTION_EMULATED | FWX_CONNECTION_SECONDARY);
    if (e == NULL)
        return FWX_E_OUTOFMEMORY;
    fwx__sa_set(&e->ext_peer, (const struct sockaddr *)&remote);
    e->has_ext_peer = true;
    fwx__sa_set(&e->ext_local, (const struct sockaddr *)&local);
    e->has_ext_local = true;
    fwx_result hr = fwx__conn_attach_df(e, df, fwx_dfpc_Emulation, NULL);
    if (FWX_FAILED(hr)) {
        fwx__conn_terminate(e);
        IFWXConnection_Release(&e->iface);
        return hr;
    }
    *ppConnection = &e->iface;
    return FWX_S_OK;
}

static fwx_result c_EmulateForBind(IFWXConnection *This)
{
    fwx__conn *c = fwx__conn_from(This);
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (c->in_event != fwx_Bind_Tcp && c->in_event != fwx_Bind_Udp)
        return FWX_E_BAD_CONTEXT;
    if (c->flags & FWX_CONNECTION_EMULATED)
        return FWX_E_ALREADY_EMULATED;
    c->flags |= FWX_CONNECTION_EMULATED;
    return FWX_S_OK;
}

static fwx_result c_EmulateForConnect(IFWXConnection *This, IFWXDataFilter *df, IUnknown *ctx)
{
    fwx__conn *c = fwx__conn_from(This);
    if (df == NULL)
        return FWX_E_INVALIDARG;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (c->in_event != fwx_Connect_Tcp)
        return FWX_E_BAD_CONTEXT;
    if (c->flags & FWX_CONNECTION_EMULATED)
        return FWX_E_ALREADY_EMULATED;
    fwx_result hr = fwx__conn_attach_df(c, df, fwx_dfpc_Emulation, ctx);
    if (FWX_SUCCEEDED(hr))
        c->flags |= FWX_CONNECTION_EMULATED;
    return hr;
}

static fwx_result c_IncrementBytesSentCounter(IFWXConnection *This, uint32_t n)
{
    fwx__conn_from(This)->bytes_sent += n;
    return FWX_S_OK;
}

static fwx_result c_SetSocketName(IFWXConnection *This, const struct sockaddr *a, uint32_t l)
{
    fwx__conn *c = fwx__conn_from(This);
    struct sockaddr_storage ss;
    if (!fwx__sa_canon(a, l, &ss))
        return FWX_E_INVALIDARG;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    fwx__sa_set(&c->ext_local, (const struct sockaddr *)&ss);
    c->has_ext_local = true;
    return FWX_S_OK;
}

static fwx_result c_Kill(IFWXConnection *This)
{
    fwx__conn_terminate(fwx__conn_from(This));
    return FWX_S_OK;
}

static fwx_result copy_out(const fwx__sa *ss, bool known, struct sockaddr *a, uint32_t *l)
{
    if (a == NULL || l == NULL)
        return FWX_E_POINTER;
    if (!known)
        return FWX_E_NOT_FOUND;
    uint32_t need = fwx__sa_len((const struct sockaddr *)ss);
    if (*l < need) {
        *l = need;
        return FWX_E_INVALIDARG;
    }
    memcpy(a, ss, need);
    *l = need;
    return FWX_S_OK;
}

static fwx_result c_GetExternalSocketName(IFWXConnection *This, struct sockaddr *a, uint32_t *l)
{
    fwx__conn *c = fwx__conn_from(This);
    return copy_out(&c->ext_local, c->has_ext_local, a, l);
}

static fwx_result c_GetExternalPeerName(IFWXConnection *This, struct sockaddr *a, uint32_t *l)
{
    fwx__conn *c = fwx__conn_from(This);
    return copy_out(&c->ext_peer, c->has_ext_peer, a, l);
}

static fwx_result c_SetClientAddress(IFWXConnection *This, const struct sockaddr *a, uint32_t l)
{
    fwx__conn *c = fwx__conn_from(This);
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (!c->client_pending || c->client_set)
        return FWX_E_INVALIDARG; /* T8: once, and only for an all-zero BindForClient address */
    return fwx__binding_set_client(c, a, l);
}

static fwx_result c_Deny(IFWXConnection *This, uint32_t Reserved)
{
    fwx__conn *c = fwx__conn_from(This);
    if (Reserved != 0)
        return FWX_E_INVALIDARG;
    /* T12/T13: only while a deniable event of this connection is being handled. */
    if (c->in_event == 0 || c->in_event == fwx_Listen || c->in_event == fwx_ConnectionTerminating ||
        c->in_event == fwx_EstablishedConnection)
        return FWX_E_BAD_CONTEXT;
    c->denied = true;
    return FWX_S_OK;
}

static fwx_result c_SetBufferSize(IFWXConnection *This, uint32_t n)
{
    if (n == 0 || n > 16u * 1024 * 1024)
        return FWX_E_INVALIDARG;
    fwx__conn_from(This)->buffer_size = n;
    return FWX_S_OK;
}

static fwx_result c_GetSession(IFWXConnection *This, IFWXSession **pp)
{
    if (pp == NULL)
        return FWX_E_POINTER;
    fwx__conn *c = fwx__conn_from(This);
    IFWXSession_AddRef(&c->session->iface);
    *pp = &c->session->iface;
    return FWX_S_OK;
}

static fwx_result c_SetIpFilter(IFWXConnection *This, IFWXIpFilter *f)
{
    fwx__conn *c = fwx__conn_from(This);
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (c->flags & FWX_CONNECTION_EMULATED)
        return FWX_E_NOT_SUPPORTED; /* T14 */
    IFWXIpFilter *copy = NULL;
    if (f != NULL) {
        fwx_result hr = IFWXIpFilter_Clone(f, &copy);
        if (FWX_FAILED(hr))
            return hr;
    }
    if (copy == NULL && c->ext == NULL)
        return FWX_S_OK; /* none set, and no grant (it would be in c->ext) */
    fwx__conn_ext *x = fwx__conn_ext_get(c);
    if (x == NULL) {
        IFWXIpFilter_Release(copy);
        return FWX_E_OUTOFMEMORY;
    }
    if (x->ipfilter != NULL)
        IFWXIpFilter_Release(x->ipfilter);
    x->ipfilter = copy;
    if (x->grant != NULL) {
        if (x->grant->ipfilter != NULL)
            IFWXIpFilter_Release(x->grant->ipfilter);
        x->grant->ipfilter = copy;
        if (copy != NULL)
            IFWXIpFilter_AddRef(copy);
    }
    return FWX_S_OK;
}

static fwx_result c_GetIpFilter(IFWXConnection *This, IFWXIpFilter **pp)
{
    if (pp == NULL)
        return FWX_E_POINTER;
    fwx__conn *c = fwx__conn_from(This);
    *pp = NULL;
    /* What admission checks is the port's grant's filter while it has one. A copy: the one in
       force changes only through SetIpFilter, and BindForClient's ports share theirs. */
    const fwx__conn_ext *x = fwx__conn_x(c);
    IFWXIpFilter *f = x->grant != NULL && x->grant->ipfilter != NULL ? x->grant->ipfilter : x->ipfilter;
    return f != NULL ? IFWXIpFilter_Clone(f, pp) : FWX_S_OK;
}

static fwx_result c_GetConnectionFlags(IFWXConnection *This, uint32_t *f)
{
    if (f == NULL)
        return FWX_E_POINTER;
    *f = fwx__conn_from(This)->flags;
    return FWX_S_OK;
}

/* ---- IFWXUdpDestination: a view of the connection, for fwx_Udp_Destination handlers ---- */

static fwx__conn *conn_from_udpdest(IFWXUdpDestination *u) { return fwx__container_of(u, fwx__conn, udpdest); }

static fwx_result u_QueryInterface(IFWXUdpDestination *This, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    if (riid != NULL && (fwx_guid_equal(riid, &IID_IUnknown) || fwx_guid_equal(riid, &IID_IFWXUdpDestination))) {
        IFWXUdpDestination_AddRef(This);
        *ppv = This;
        return FWX_S_OK;
    }
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t u_AddRef(IFWXUdpDestination *This) { return c_AddRef(&conn_from_udpdest(This)->iface); }
static uint32_t u_Release(IFWXUdpDestination *This) { return c_Release(&conn_from_udpdest(This)->iface); }

static fwx_result u_Deny(IFWXUdpDestination *This, uint32_t Reserved)
{
    fwx__conn *c = conn_from_udpdest(This);
    if (Reserved != 0)
        return FWX_E_INVALIDARG;
    if (c->in_event != fwx_Udp_Destination)
        return FWX_E_BAD_CONTEXT;
    c->denied = true;
    return FWX_S_OK;
}

static const IFWXUdpDestinationVtbl udpdest_vtbl = {u_QueryInterface, u_AddRef, u_Release, u_Deny};

static fwx_result c_GetInternalPeerName(IFWXConnection2 *This, struct sockaddr *a, uint32_t *l)
{
    fwx__conn *c = fwx__conn_from((IFWXConnection *)(void *)This);
    if (c->has_server)
        return copy_out(&c->server, true, a, l);
    /* Otherwise the internal side is the session's client (its port is the host's business). */
    return copy_out(&c->client, !fwx__sa_is_unspecified((struct sockaddr *)&c->client), a, l);
}

static fwx_result c_SetHandshakePending(IFWXConnection3 *This, int32_t pending)
{
    fwx__conn *c = fwx__conn_from((IFWXConnection *)(void *)This);
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    fwx__timeouts_hold_handshake(c, pending != 0);
    return FWX_S_OK;
}

static const IFWXConnection3Vtbl conn_vtbl = {
    {
    {
    c_QueryInterface,
    c_AddRef,
    c_Release,
    c_AttachDataFilter,
    c_AttachDataFilterWithDestination,
    c_EmulateConnection,
    c_EmulateForBind,
    c_EmulateForConnect,
    c_IncrementBytesSentCounter,
    c_SetSocketName,
    c_Kill,
    c_GetExternalSocketName,
    c_SetClientAddress,
    c_Deny,
    c_SetBufferSize,
    c_GetExternalPeerName,
    c_GetSession,
    c_SetIpFilter,
    c_GetIpFilter,
    c_GetConnectionFlags,
},
    c_GetInternalPeerName,
    },
    c_SetHandshakePending,
};
