/*
 * fwx plugins - the plumbing every shipped filter writes around its protocol code: the data
 * filter's members, constructor, the references SetSockets hands it and their release, its
 * log lines, SetSockets and Detach of a filter that relays on plugin_relay, attaching it to a
 * primary connection, the session filter that does so, and the exported entry.
 *
 * Header-only: the macros expand to the plugin's own `static` functions on the plugin's own
 * struct, whose members keep the names the filters' protocol code has always used (c->session,
 * c->conn, c->protocol ...), so that code reads as before. A plugin still links nothing of
 * libfwx. Everything runs on the loop thread. SPDX-License-Identifier: MIT
 */
#ifndef FWX_PLUGIN_DF_H
#define FWX_PLUGIN_DF_H

#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

#include "plugin_relay.h"
#include "plugin_util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * The members PLUGIN_DATA_FILTER needs, first in the data filter's struct:
 * `iface` and `refs` (its IUnknown), `protocol` (the rule's, for the grants the filter asks
 * for), `fw` and `session` (+1 from the constructor), `conn` and `s[2]` (+1 each from
 * SetSockets; s[0] the internal socket, the client's side, s[1] the external), `log` (+1: the
 * host's log, named after the plugin, or NULL), `started` (SetSockets ran) and `detached`.
 */
#define PLUGIN_DF_MEMBERS                                                                          \
    IFWXDataFilter iface;                                                                          \
    fwx_refcount refs;                                                                             \
    fwx_guid protocol;                                                                             \
    IFWXFirewall *fw;                                                                              \
    IFWXSession *session;                                                                          \
    IFWXConnection *conn;                                                                          \
    IFWXSocket *s[2];                                                                              \
    IFWXHostLog *log;                                                                              \
    bool started, detached;

/*
 * Defines, for a data filter struct @p type that opens with PLUGIN_DF_MEMBERS:
 * - FWX_IUNKNOWN_IMPL's prefix_impl, prefix_QueryInterface, prefix_AddRef, prefix_Release
 *   (the last Release calls `void destroy(type *)`, which the plugin declares before);
 * - `prefix_base_init(c, vtbl, fw, session, protocol)`: the vtable, a count of 1, a reference
 *   on @p fw and @p session (borrowed by the call), the host's log. Call it inside the event
 *   handler that attaches the filter, so that the log lines name this plugin;
 * - `prefix_take_sockets(c, in, ex, conn)`: the body of SetSockets' checks. A reference on
 *   each; FWX_E_INVALIDARG for a missing one (a gateway filter relays, it never emulates the
 *   server) or a second call;
 * - `prefix_drop_refs(c)`: releases every reference of the members, each once.
 */
#define PLUGIN_DATA_FILTER(prefix, type, destroy)                                                  \
    FWX_IUNKNOWN_IMPL(prefix, IFWXDataFilter, type, iface, refs, destroy, &IID_IFWXDataFilter)     \
    static void prefix##_base_init(type *c, const IFWXDataFilterVtbl *vtbl, IFWXFirewall *fw,      \
                                   IFWXSession *session, const fwx_guid *protocol)                 \
    {                                                                                              \
        c->iface.lpVtbl = vtbl;                                                                    \
        fwx_refcount_init(&c->refs);                                                               \
        c->protocol = *protocol;                                                                   \
        IFWXFirewall_AddRef(fw);                                                                   \
        c->fw = fw;                                                                                \
        IFWXSession_AddRef(session);                                                               \
        c->session = session;                                                                      \
        if (FWX_FAILED(IFWXFirewall_QueryInterface(fw, &IID_IFWXHostLog, (void **)&c->log)))       \
            c->log = NULL;                                                                         \
    }                                                                                              \
    static fwx_result prefix##_take_sockets(type *c, IFWXSocket *in, IFWXSocket *ex, IFWXConnection *conn) \
    {                                                                                              \
        if (in == NULL || ex == NULL || conn == NULL || c->started)                                \
            return FWX_E_INVALIDARG;                                                               \
        c->started = true;                                                                         \
        IFWXSocket_AddRef(in);                                                                     \
        IFWXSocket_AddRef(ex);                                                                     \
        IFWXConnection_AddRef(conn);                                                               \
        c->s[0] = in;                                                                              \
        c->s[1] = ex;                                                                              \
        c->conn = conn;                                                                            \
        return FWX_S_OK;                                                                           \
    }                                                                                              \
    static void prefix##_drop_refs(type *c)                                                        \
    {                                                                                              \
        for (int i_ = 0; i_ < 2; i_++)                                                             \
            PLUGIN_DROP(c->s[i_], IFWXSocket_Release);                                             \
        PLUGIN_DROP(c->conn, IFWXConnection_Release);                                              \
        PLUGIN_DROP(c->session, IFWXSession_Release);                                              \
        PLUGIN_DROP(c->fw, IFWXFirewall_Release);                                                  \
        PLUGIN_DROP(c->log, IFWXHostLog_Release);                                                  \
    }

/* Drops a reference held in @p field, if any, and forgets it. */
#define PLUGIN_DROP(field, release)                                                                \
    do {                                                                                           \
        if ((field) != NULL)                                                                       \
            release(field);                                                                        \
        (field) = NULL;                                                                            \
    } while (0)

/*
 * For a data filter that relays a control connection on a plugin_relay (its struct, after
 * PLUGIN_DF_MEMBERS, has `plugin_relay relay` and `dirs[2]`, each with an IFWXIOCompletion
 * `iface`; PLUGIN_DATA_FILTER expanded before with destroy named `prefix_destroy`), defines
 * `prefix_destroy`, `prefix_SetSockets`, `prefix_Detach` and `prefix_vtbl`:
 * - SetSockets takes the sockets (prefix_take_sockets), sets the relay up with @p ops (a
 *   plugin_relay_ops object) and @p out_max, calls `fwx_result start(type *)`, in which the
 *   filter learns its addresses (a failure is returned and nothing is read), then reads both
 *   sides: FWX_S_OK, or FWX_E_FAIL when the relay closed at once;
 * - Detach closes the relay (ops.closing withdraws what the connection set up), marks the
 *   filter detached and calls `void release_all(type *)`, which withdraws, frees the relay
 *   (plugin_relay_free) and drops the references (prefix_drop_refs);
 * - destroy, the last Release, calls release_all and frees the object: the core always
 *   Detaches first, this guards a host that does not.
 */
#define PLUGIN_RELAY_DATA_FILTER(prefix, type, ops, out_max, start, release_all)                   \
    static void prefix##_destroy(type *c)                                                          \
    {                                                                                              \
        release_all(c);                                                                            \
        free(c);                                                                                   \
    }                                                                                              \
    static fwx_result prefix##_SetSockets(IFWXDataFilter *This, IFWXSocket *in, IFWXSocket *ex,    \
                                          IFWXConnection *conn, IUnknown *ctx)                     \
    {                                                                                              \
        type *c = prefix##_impl(This);                                                             \
        (void)ctx;                                                                                 \
        fwx_result hr = prefix##_take_sockets(c, in, ex, conn);                                    \
        if (FWX_FAILED(hr))                                                                        \
            return hr;                                                                             \
        plugin_relay_init(&c->relay, c->fw, in, ex, &c->dirs[0].iface, &c->dirs[1].iface, &(ops), c, \
                          (out_max));                                                              \
        hr = start(c);                                                                             \
        if (FWX_FAILED(hr))                                                                        \
            return hr;                                                                             \
        plugin_relay_start(&c->relay);                                                             \
        return c->relay.closed ? FWX_E_FAIL : FWX_S_OK;                                            \
    }                                                                                              \
    static fwx_result prefix##_Detach(IFWXDataFilter *This)                                        \
    {                                                                                              \
        type *c = prefix##_impl(This);                                                             \
        plugin_relay_close(&c->relay, NULL);                                                       \
        c->detached = true;                                                                        \
        release_all(c);                                                                            \
        return FWX_S_OK;                                                                           \
    }                                                                                              \
    static const IFWXDataFilterVtbl prefix##_vtbl = {prefix##_QueryInterface, prefix##_AddRef,     \
                                                     prefix##_Release, prefix##_SetSockets,        \
                                                     prefix##_Detach};

/*
 * Defines `static void name(type *c, fwx_log_level, const fwx_log_field *, uint32_t, fmt, ...)`:
 * one line through the host's log (never stderr: that is the host's), `<label> <who>: ...`,
 * with the session's and the connection's fields. @p who is the struct's member holding the
 * peer's text ("?" while empty).
 */
#define PLUGIN_DF_LOG(name, type, label, who)                                                      \
    static void name(type *c, fwx_log_level level, const fwx_log_field *f, uint32_t n, const char *fmt, ...) \
        __attribute__((format(printf, 5, 6)));                                                     \
    static void name(type *c, fwx_log_level level, const fwx_log_field *f, uint32_t n, const char *fmt, ...) \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        plugin_vlog(c->log, c->session, c->conn, level, f, n, label, c->who, fmt, ap);             \
        va_end(ap);                                                                                \
    }

static inline void plugin_vlog(IFWXHostLog *log, IFWXSession *session, IFWXConnection *conn, fwx_log_level level,
                               const fwx_log_field *f, uint32_t n, const char *label, const char *who,
                               const char *fmt, va_list ap)
{
    char msg[768];
    if (log == NULL || !IFWXHostLog_IsEnabled(log, level))
        return;
    int k = snprintf(msg, sizeof msg, "%s %s: ", label, who[0] ? who : "?");
    vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    (void)IFWXHostLog_Log(log, level, session, conn, f, n, msg); /* a log line never fails traffic */
}

/*
 * Attaches @p df (the constructor's reference, handed over: released here) to the primary
 * connection @p conn at NAT priority (an address editor sees the client's bytes first and the
 * server's last). A failure is logged, `cannot attach to <what>: <why>`, and returned: the
 * caller returns it from the event handler, so a connection the filter cannot watch is refused
 * (fail closed).
 */
static inline fwx_result plugin_df_attach(IFWXConnection *conn, IFWXDataFilter *df, IFWXHostLog *log,
                                          IFWXSession *session, const char *what)
{
    fwx_result hr = IFWXConnection_AttachDataFilter(conn, df, fwx_dfpc_NAT, NULL);
    if (FWX_FAILED(hr) && log != NULL) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot attach to %s: %s", what, plugin_result_text(hr));
        (void)IFWXHostLog_Log(log, FWX_LOG_ERROR, session, conn, NULL, 0, msg);
    }
    IFWXDataFilter_Release(df); /* the core holds its own reference now */
    return hr;
}

/*
 * The primary connection that @p ev opens (fwx_Connect_Tcp, fwx_AcceptedConnection,
 * fwx_Udp_Destination) and its protocol: true with *conn (borrowed; NULL if the event carries
 * none) and *protocol set. False for a secondary connection (one of the filter's own grants
 * carries it) and for any other event.
 */
static inline bool plugin_event_primary(const FwxFirewallEvent *ev, IFWXConnection **conn, const fwx_guid **protocol)
{
    switch (ev->EventType) {
    case fwx_Connect_Tcp:
        *conn = ev->Parameters.Connect.piConnection;
        *protocol = &ev->Parameters.Connect.ProtocolGuid;
        return !ev->Parameters.Connect.IsSecondary;
    case fwx_AcceptedConnection:
        *conn = ev->Parameters.Accept.piConnectionAccepted;
        *protocol = &ev->Parameters.Accept.ProtocolGuid;
        return !ev->Parameters.Accept.IsSecondary;
    case fwx_Udp_Destination:
        *conn = ev->Parameters.UdpDest.piConnection;
        *protocol = &ev->Parameters.UdpDest.ProtocolGuid;
        return !ev->Parameters.UdpDest.IsSecondary;
    default:
        return false;
    }
}

/*
 * The session filter of a filter whose work is done by a data filter on each primary
 * connection: `plugin_sf`, nothing but FWX_PLUGIN_SESSION_FILTER_MEMBERS (a reference on the
 * session and the firewall until Detach), and FWX_PLUGIN_SESSION_FILTER's sf_impl,
 * sf_QueryInterface, sf_AddRef, sf_Release, sf_Detach and constructor sf_new, with the event
 * handler sf_FirewallEventHandler. After Detach it answers FWX_E_TERMINATING, to a NULL event
 * FWX_E_POINTER; a primary connection (plugin_event_primary) goes to the plugin's
 * `fwx_result attach(plugin_sf *, const FwxFirewallEvent *, IFWXConnection *conn, const fwx_guid *protocol)`
 * (FWX_E_POINTER for a NULL connection), whose result is the handler's (a failure refuses the
 * connection: fail closed), declared here and defined by the plugin after; every other event
 * to `fwx_result other(struct plugin_sf *, const FwxFirewallEvent *)`, defined before
 * (plugin_sf_ignore for a filter that acts on no other event).
 */
struct plugin_sf;
/* PLUGIN_SESSION_FILTER's `other` for a filter that acts on no other event. */
static inline fwx_result plugin_sf_ignore(struct plugin_sf *sf, const FwxFirewallEvent *ev)
{
    (void)sf;
    (void)ev;
    return FWX_S_OK;
}

#define PLUGIN_SESSION_FILTER(attach, other)                                                       \
    typedef struct plugin_sf {                                                                     \
        FWX_PLUGIN_SESSION_FILTER_MEMBERS                                                          \
    } plugin_sf;                                                                                   \
    static fwx_result attach(plugin_sf *sf, const FwxFirewallEvent *ev, IFWXConnection *conn,      \
                             const fwx_guid *protocol);                                            \
    static fwx_result sf_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *ev); \
    FWX_PLUGIN_SESSION_FILTER(sf, plugin_sf, sf_FirewallEventHandler)                              \
    static fwx_result sf_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *ev) \
    {                                                                                              \
        plugin_sf *sf = sf_impl(This);                                                             \
        IFWXConnection *conn = NULL;                                                               \
        const fwx_guid *protocol = NULL;                                                           \
        if (sf->detached)                                                                          \
            return FWX_E_TERMINATING;                                                              \
        if (ev == NULL)                                                                            \
            return FWX_E_POINTER;                                                                  \
        if (!plugin_event_primary(ev, &conn, &protocol))                                           \
            return other(sf, ev);                                                                  \
        return conn != NULL ? attach(sf, ev, conn, protocol) : FWX_E_POINTER;                      \
    }

/*
 * The one exported symbol of a filter shipped with fwx: FWX_PLUGIN_ENTRY with vendor "fwx" and
 * the filter's GUID (an FWX_GUID_INIT), name, version, description, hooks and create_filter.
 * Follow it with a semicolon.
 */
#define PLUGIN_SHIPPED_ENTRY(guid, name_, version_, description_, hooks, create)                   \
    FWX_PLUGIN_ENTRY(.filter_guid = guid, .name = name_, .vendor = "fwx", .version = version_,      \
                     .description = description_, .allowed_events = hooks, .create_filter = create)

#endif /* FWX_PLUGIN_DF_H */
