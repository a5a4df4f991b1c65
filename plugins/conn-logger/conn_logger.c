/*
 * conn-logger - the sample filter: one log line per connection event.
 *
 * The smallest filter that does something useful, written to be copied (the ISA Server SDK
 * shipped "DataMonitor" for the same purpose). It hooks outbound TCP connects and accepted
 * connections, primary and secondary, of every protocol and both session sources; it attaches
 * to every session; and for each event it writes one line:
 *
 *     conn-logger: session 10.0.0.8: connect 198.51.100.7:21 (primary)
 *     conn-logger: session 10.0.0.8: accept from 198.51.100.7:20 to 203.0.113.1:50001 (secondary)
 *     conn-logger: session 10.0.0.8: connection ended (198.51.100.7:21)
 *
 * The lines go through the host's log (IFWXHostLog, at level info), so that they land where the
 * host's own lines go, with its timestamps and format; a host that writes JSON gets the
 * session, client, connection and peer as fields. With the environment variable
 * FWX_CONN_LOGGER_FILE set (read when the plugin is loaded) they are appended to that file
 * instead: a plugin may do its own I/O as long as it does not block the loop for long. A plugin
 * never writes to stderr: that is the host's, and may not even be a terminal.
 *
 * What to copy from it (see doc/writing-a-filter.md for the reasons):
 * - every object is born with a reference count of 1 and freed when it drops to 0: the
 *   IUnknown methods, the filter factory and the entry come from <fwx/plugin_helpers.h>;
 * - FilterInit AddRefs the IFWXFirewall it is given and asks it for its IFWXHostLog,
 *   FilterShutdown releases both;
 * - AttachToSession AddRefs the session, IFWXSessionFilter::Detach releases it;
 * - after Detach the session filter answers every event with FWX_E_TERMINATING;
 * - no reference to a connection is kept at all, so none outlives its ConnectionTerminating;
 * - the only exported symbol is fwx_entry (plugins/fwx-plugin.map); everything else is static;
 * - only the public headers are used and libfwx is not linked: the interfaces are the API.
 *
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the filter hooks: both event types, both session sources, every protocol (a logger is
   not bound to protocols in the policy) and secondary connections too. ConnectionTerminating
   is not listed: it reaches every attached session filter without registration. */
#define CL_HOOKS                                                                                   \
    (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES | fwxAnyProtocol |                 \
     fwxAssociatedProtocolsAllConnections)

/* "[ffff:...:ffff]:65535" and a NUL, with room to spare. */
#define CL_ADDRSTRLEN (INET6_ADDRSTRLEN + 16)

/* ---- the sink ---------------------------------------------------------------------------- */

/* One file per process. If two firewalls in one process load this plugin, dlopen hands both
   the same copy of these variables, so init and deinit count their users and the file is closed
   by the last deinit. Firewalls may run on different threads: the lock covers the file. */
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static int sink_fd = -1;      /* -1: no file, the host's log */
static unsigned sink_users;   /* init calls not yet matched by deinit */

/* Writes one line to the file. A single write(2) on an O_APPEND descriptor keeps lines whole
   even when several processes share the file. */
static void cl_write_line(const char *line, size_t len)
{
    pthread_mutex_lock(&sink_lock);
    int fd = sink_fd;
    while (fd >= 0 && len > 0) {
        ssize_t n = write(fd, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a logger never fails the traffic it logs */
        line += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&sink_lock);
}

static bool cl_has_file(void)
{
    pthread_mutex_lock(&sink_lock);
    bool yes = sink_fd >= 0;
    pthread_mutex_unlock(&sink_lock);
    return yes;
}

/* One line, about a session and maybe one of its connections: to the file, or through the host
   (which names the plugin itself and adds the session's and connection's fields). */
static void cl_log(IFWXHostLog *log, IFWXSession *session, IFWXConnection *conn, const char *client, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static void cl_log(IFWXHostLog *log, IFWXSession *session, IFWXConnection *conn, const char *client, const char *fmt,
                   ...)
{
    char line[512];
    bool to_file = cl_has_file();
    int n = snprintf(line, sizeof line, "%ssession %s: ", to_file ? "conn-logger: " : "", client);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    size_t room = sizeof line - (size_t)n - 1; /* one byte is kept for the newline */
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, room, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < room ? (size_t)m : room - 1); /* truncated if too long */
    if (!to_file) {
        line[len] = '\0';
        if (log != NULL)
            (void)IFWXHostLog_Log(log, FWX_LOG_INFO, session, conn, NULL, 0, line); /* never fails traffic */
        return;
    }
    line[len++] = '\n';
    cl_write_line(line, len);
}

/* Formats an address as "a.b.c.d:port" or "[v6]:port"; with_port false leaves the port out. */
static const char *cl_addr(const struct sockaddr *sa, uint32_t len, bool with_port, char out[CL_ADDRSTRLEN])
{
    char ip[INET6_ADDRSTRLEN];
    if (sa != NULL && sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        if (with_port)
            snprintf(out, CL_ADDRSTRLEN, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
        else
            snprintf(out, CL_ADDRSTRLEN, "%s", ip);
    } else if (sa != NULL && sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        if (with_port)
            snprintf(out, CL_ADDRSTRLEN, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
        else
            snprintf(out, CL_ADDRSTRLEN, "%s", ip);
    } else {
        snprintf(out, CL_ADDRSTRLEN, "?");
    }
    return out;
}

#define CL_SA(ss) ((const struct sockaddr *)(const void *)&(ss))

/* ---- the session filter: one per session ------------------------------------------------- */

typedef struct cl_session_filter {
    IFWXSessionFilter iface;
    fwx_refcount refs;
    IFWXSession *session;         /* +1 from AttachToSession until Detach */
    IFWXHostLog *log;             /* +1 from AttachToSession until Detach */
    bool detached;                /* loop thread only */
    char client[CL_ADDRSTRLEN];   /* the session's client, for the log lines */
} cl_session_filter;

/* The last Release. The core always calls Detach first; this only covers a host that does not. */
static void sf_destroy(cl_session_filter *sf)
{
    if (sf->session != NULL)
        IFWXSession_Release(sf->session);
    if (sf->log != NULL)
        IFWXHostLog_Release(sf->log);
    free(sf);
}

/* sf_impl, sf_QueryInterface, sf_AddRef, sf_Release. */
FWX_IUNKNOWN_IMPL(sf, IFWXSessionFilter, cl_session_filter, iface, refs, sf_destroy, &IID_IFWXSessionFilter)

static const char *primary_or_secondary(int32_t is_secondary) { return is_secondary ? "secondary" : "primary"; }

static fwx_result sf_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *pEvent)
{
    cl_session_filter *sf = sf_impl(This);
    char a[CL_ADDRSTRLEN], b[CL_ADDRSTRLEN];
    if (sf->detached)
        return FWX_E_TERMINATING; /* the SDK's rule for events that arrive after Detach */
    if (pEvent == NULL)
        return FWX_E_POINTER;
    switch (pEvent->EventType) {
    case fwx_Connect_Tcp: {
        const FwxConnectEvent *e = &pEvent->Parameters.Connect;
        cl_log(sf->log, sf->session, e->piConnection, sf->client, "connect %s (%s)", cl_addr(CL_SA(e->Address), e->AddressLength, true, a),
               primary_or_secondary(e->IsSecondary));
        break;
    }
    case fwx_AcceptedConnection: {
        const FwxAcceptEvent *e = &pEvent->Parameters.Accept;
        if (e->LocalAddressLength != 0)
            cl_log(sf->log, sf->session, e->piConnectionAccepted, sf->client, "accept from %s to %s (%s)",
                   cl_addr(CL_SA(e->RemoteAddress), e->RemoteAddressLength, true, a),
                   cl_addr(CL_SA(e->LocalAddress), e->LocalAddressLength, true, b),
                   primary_or_secondary(e->IsSecondary));
        else
            cl_log(sf->log, sf->session, e->piConnectionAccepted, sf->client, "accept from %s (%s)", cl_addr(CL_SA(e->RemoteAddress), e->RemoteAddressLength, true, a),
                   primary_or_secondary(e->IsSecondary));
        break;
    }
    case fwx_ConnectionTerminating: {
        /* Delivered for every connection of the session, including ones whose opening this
           filter did not hook. The connection is borrowed: use it now, keep nothing. */
        IFWXConnection *c = pEvent->Parameters.EndConnect.piConnection;
        struct sockaddr_storage peer;
        uint32_t len = sizeof peer;
        if (c != NULL && IFWXConnection_GetExternalPeerName(c, (struct sockaddr *)&peer, &len) == FWX_S_OK)
            cl_log(sf->log, sf->session, c, sf->client, "connection ended (%s)", cl_addr(CL_SA(peer), len, true, a));
        else
            cl_log(sf->log, sf->session, c, sf->client, "connection ended");
        break;
    }
    default:
        /* fwx_EstablishedConnection goes only to filters that asked for a secondary
           connection; this one never does. Anything else was not hooked. */
        break;
    }
    /* FWX_S_OK lets the request go on; a failure here would refuse it. A logger never does. */
    return FWX_S_OK;
}

static fwx_result sf_Detach(IFWXSessionFilter *This)
{
    cl_session_filter *sf = sf_impl(This);
    sf->detached = true;
    if (sf->session != NULL) {
        IFWXSession_Release(sf->session);
        sf->session = NULL;
    }
    if (sf->log != NULL) {
        IFWXHostLog_Release(sf->log);
        sf->log = NULL;
    }
    return FWX_S_OK;
}

static const IFWXSessionFilterVtbl sf_vtbl = {
    sf_QueryInterface,
    sf_AddRef,
    sf_Release,
    sf_FirewallEventHandler,
    sf_Detach,
};

/* ---- the filter: one per loaded plugin --------------------------------------------------- */

typedef struct cl_filter {
    IFWXFilter iface;
    fwx_refcount refs;
    IFWXFirewall *firewall; /* +1 from FilterInit until FilterShutdown */
    IFWXHostLog *log;       /* +1 from FilterInit until FilterShutdown */
} cl_filter;

/* The firewall reference is gone already at the last Release: FilterShutdown released it. */
static void f_destroy(cl_filter *f) { free(f); }

/* f_impl, f_QueryInterface, f_AddRef, f_Release. */
FWX_IUNKNOWN_IMPL(f, IFWXFilter, cl_filter, iface, refs, f_destroy, &IID_IFWXFilter)

static fwx_result f_FilterInit(IFWXFilter *This, IFWXFirewall *pIFWXFirewall, FwxFilterHookEvents *pFilterHookEvents)
{
    cl_filter *f = f_impl(This);
    if (pIFWXFirewall == NULL || pFilterHookEvents == NULL)
        return FWX_E_POINTER;
    /* Borrowed: keep it only with a reference of our own. This filter does not need the
       firewall, but a real one would (CreateIpFilter, CreateBuffer, GetClientSession). */
    IFWXFirewall_AddRef(pIFWXFirewall);
    f->firewall = pIFWXFirewall;
    /* The host's log, named after this plugin: asked for here, inside the plugin's own call. */
    fwx_result hr = IFWXFirewall_QueryInterface(pIFWXFirewall, &IID_IFWXHostLog, (void **)&f->log);
    if (FWX_FAILED(hr))
        return hr; /* a logger with nowhere to log; the host calls FilterShutdown */
    /* The file, if one is asked for: opened by the first firewall that starts the plugin. */
    const char *path = getenv("FWX_CONN_LOGGER_FILE");
    int err = 0;
    pthread_mutex_lock(&sink_lock);
    if (sink_fd < 0 && path != NULL && path[0] != '\0') {
        sink_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        err = sink_fd < 0 ? errno : 0;
    }
    pthread_mutex_unlock(&sink_lock);
    if (err != 0) {
        /* The host logs "FilterInit failed"; say which file and why, where the operator looks. */
        char line[600];
        snprintf(line, sizeof line, "cannot open \"%s\": %s", path, strerror(err));
        (void)IFWXHostLog_Log(f->log, FWX_LOG_ERROR, NULL, NULL, NULL, 0, line);
        return FWX_E_FAIL;
    }
    pFilterHookEvents->dwGlobalEvents = CL_HOOKS;
    return FWX_S_OK;
}

static fwx_result f_FilterShutdown(IFWXFilter *This)
{
    cl_filter *f = f_impl(This);
    /* Session filters may still be detached after this returns: they must not need f. */
    if (f->log != NULL) {
        IFWXHostLog_Release(f->log);
        f->log = NULL;
    }
    if (f->firewall != NULL) {
        IFWXFirewall_Release(f->firewall);
        f->firewall = NULL;
    }
    return FWX_S_OK;
}

static fwx_result f_AttachToSession(IFWXFilter *This, IFWXSession *piSession, IFWXSessionFilter **piSessionFilter,
                                    FwxFilterHookEvents *pFilterHookEvents)
{
    cl_filter *f = f_impl(This);
    (void)pFilterHookEvents; /* in: the global hooks; left as they are for every session */
    if (piSessionFilter == NULL)
        return FWX_E_POINTER;
    *piSessionFilter = NULL;
    if (piSession == NULL)
        return FWX_E_POINTER;
    cl_session_filter *sf = calloc(1, sizeof *sf);
    if (sf == NULL)
        return FWX_E_OUTOFMEMORY; /* fails the request that made the core attach us */
    sf->iface.lpVtbl = &sf_vtbl;
    fwx_refcount_init(&sf->refs); /* born at 1: this reference goes to the caller (+1) */
    struct sockaddr_storage client;
    uint32_t len = sizeof client;
    if (IFWXSession_GetClientAddress(piSession, (struct sockaddr *)&client, &len) == FWX_S_OK)
        cl_addr(CL_SA(client), len, false, sf->client);
    else
        snprintf(sf->client, sizeof sf->client, "?");
    IFWXSession_AddRef(piSession); /* borrowed: keep it with our own reference until Detach */
    sf->session = piSession;
    if (f->log != NULL) {
        IFWXHostLog_AddRef(f->log); /* the session filter may be detached after FilterShutdown */
        sf->log = f->log;
    }
    *piSessionFilter = &sf->iface;
    return FWX_S_OK;
}

static const IFWXFilterVtbl f_vtbl = {
    f_QueryInterface,
    f_AddRef,
    f_Release,
    f_FilterInit,
    f_FilterShutdown,
    f_AttachToSession,
};

/* ---- the plugin entry -------------------------------------------------------------------- */

static fwx_result cl_init(const char *plugin_path)
{
    (void)plugin_path;
    pthread_mutex_lock(&sink_lock);
    sink_users++; /* the file itself is opened in FilterInit, where a failure can be logged */
    pthread_mutex_unlock(&sink_lock);
    return FWX_S_OK;
}

static void cl_deinit(void)
{
    pthread_mutex_lock(&sink_lock);
    if (sink_users > 0 && --sink_users == 0 && sink_fd >= 0) {
        close(sink_fd);
        sink_fd = -1;
    }
    pthread_mutex_unlock(&sink_lock);
}

/* A zeroed cl_filter born at 1, whose reference goes to the host. */
FWX_PLUGIN_CREATE_FILTER(cl_create_filter, cl_filter, iface, refs, f_vtbl)

/* The one exported symbol, with abi_version and struct_size of these headers. The GUID is this
   filter's own: generate a new one for yours. */
FWX_PLUGIN_ENTRY(
    /* {c82feda9-0c53-49fd-9f2e-a761501d650f} */
    .filter_guid = FWX_GUID_INIT(0xc8, 0x2f, 0xed, 0xa9, 0x0c, 0x53, 0x49, 0xfd, 0x9f, 0x2e, 0xa7, 0x61, 0x50, 0x1d,
                                 0x65, 0x0f),
    .name = "conn-logger",
    .vendor = "fwx",
    .version = "1.1",
    .description = "writes one line per connection, accepted connection and connection end",
    .allowed_events = CL_HOOKS,
    .init = cl_init,
    .deinit = cl_deinit,
    .create_filter = cl_create_filter);
