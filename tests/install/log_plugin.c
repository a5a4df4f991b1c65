/*
 * fwx tests - "probe", a filter plugin built out of tree against the installed headers only
 * (pkg-config --cflags fwx; libfwx is not linked), that logs through the host (IFWXHostLog).
 *
 * check-install.sh builds it and check_log_plugin.py loads it into the installed fwx-gateway
 * with --log-format json. What it does, for that script to check:
 * - FilterInit: asks the firewall for IID_IFWXHostLog and logs one info line, "probe: started",
 *   whose fields are the headers' version (FWX_VERSION_STRING, FWX_VERSION_HEX), the library's
 *   (fwx_version() is not callable: a plugin does not link libfwx), and the results Log returned
 *   for three bad calls (a key with a capital, the reserved key "msg", NULL message), which
 *   must be FWX_E_INVALIDARG, FWX_E_INVALIDARG and FWX_E_POINTER; and the result of a debug
 *   line, which at the gateway's default level must be FWX_S_FALSE (nothing logged).
 * - every accepted connection: one warn line about it, with its own fields (a counter, the
 *   remote address as a FWX_LOG_ADDRESS, a string full of characters JSON must escape); the
 *   second connection is denied (IFWXConnection::Deny), so the host logs the refusal.
 * Its IUnknown methods, factory and entry come from the installed <fwx/plugin_helpers.h>.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

/* The checks below are assert()s: keep them on whatever the build's NDEBUG. */
#undef NDEBUG
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#define PROBE_HOOKS (fwx_AcceptedConnection | FWX_ALL_SOURCES | fwxAnyProtocol)

/* What JSON must escape: a quote, a backslash, a newline, a tab, a control byte; and UTF-8. */
static const char probe_note[] = "q\"b\\n\nt\tc\x01 \xc3\xa9";

typedef struct probe_filter {
    IFWXFilter iface;
    fwx_refcount refs;
    IFWXHostLog *log; /* +1 from FilterInit until FilterShutdown */
    unsigned accepted;
} probe_filter;

typedef struct probe_sf {
    IFWXSessionFilter iface;
    fwx_refcount refs;
    probe_filter *f;  /* the filter outlives its session filters' events (the host's rule) */
    IFWXHostLog *log; /* +1 until Detach */
    bool detached;
} probe_sf;

static void sf_destroy(probe_sf *sf)
{
    if (sf->log != NULL)
        IFWXHostLog_Release(sf->log);
    free(sf);
}
FWX_IUNKNOWN_IMPL(sf, IFWXSessionFilter, probe_sf, iface, refs, sf_destroy, &IID_IFWXSessionFilter)

static void f_destroy(probe_filter *f) { free(f); }
FWX_IUNKNOWN_IMPL(f, IFWXFilter, probe_filter, iface, refs, f_destroy, &IID_IFWXFilter)

static fwx_result sf_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *ev)
{
    probe_sf *sf = sf_impl(This);
    if (sf->detached)
        return FWX_E_TERMINATING;
    if (ev == NULL)
        return FWX_E_POINTER;
    if (ev->EventType != fwx_AcceptedConnection)
        return FWX_S_OK;
    const FwxAcceptEvent *e = &ev->Parameters.Accept;
    unsigned n = ++sf->f->accepted;
    fwx_log_field fields[3];
    fields[0].key = "probe_count";
    fields[0].type = FWX_LOG_UINT;
    fields[0].value.u = n;
    fields[1].key = "remote";
    fields[1].type = FWX_LOG_ADDRESS;
    fields[1].value.address = (const struct sockaddr *)&e->RemoteAddress;
    fields[2].key = "note";
    fields[2].type = FWX_LOG_STRING;
    fields[2].value.string = probe_note;
    (void)IFWXHostLog_Logf(sf->log, FWX_LOG_WARN, NULL, e->piConnectionAccepted, fields, 3,
                           "accepted connection number %u%s", n, n == 2 ? ", denying it" : "");
    if (n == 2)
        return IFWXConnection_Deny(e->piConnectionAccepted, 0);
    return FWX_S_OK;
}

static fwx_result sf_Detach(IFWXSessionFilter *This)
{
    probe_sf *sf = sf_impl(This);
    sf->detached = true;
    if (sf->log != NULL) {
        IFWXHostLog_Release(sf->log);
        sf->log = NULL;
    }
    return FWX_S_OK;
}

static const IFWXSessionFilterVtbl sf_vtbl = {sf_QueryInterface, sf_AddRef, sf_Release, sf_FirewallEventHandler,
                                              sf_Detach};

/* Logs a line naming the broken expectation, then assert() ends the gateway, which the test
   sees (it expects a clean start and the probe's line). */
#define PROBE_ASSERT(log, cond)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            (void)IFWXHostLog_Log((log), FWX_LOG_ERROR, NULL, NULL, NULL, 0,                       \
                                  "probe: assertion failed: " #cond);                              \
        assert(cond);                                                                              \
    } while (0)

static fwx_result f_FilterInit(IFWXFilter *This, IFWXFirewall *fw, FwxFilterHookEvents *hooks)
{
    probe_filter *f = f_impl(This);
    if (fw == NULL || hooks == NULL)
        return FWX_E_POINTER;
    fwx_result hr = IFWXFirewall_QueryInterface(fw, &IID_IFWXHostLog, (void **)&f->log);
    if (FWX_FAILED(hr))
        return hr;
    fwx_log_field bad = {"Bad-Key", FWX_LOG_STRING, {"x"}};
    fwx_result bad_key = IFWXHostLog_Log(f->log, FWX_LOG_INFO, NULL, NULL, &bad, 1, "must not appear");
    bad.key = "msg";
    fwx_result reserved_key = IFWXHostLog_Log(f->log, FWX_LOG_INFO, NULL, NULL, &bad, 1, "must not appear");
    fwx_result no_message = IFWXHostLog_Log(f->log, FWX_LOG_INFO, NULL, NULL, NULL, 0, NULL);
    fwx_result debug = IFWXHostLog_Logf(f->log, FWX_LOG_DEBUG, NULL, NULL, NULL, 0, "debug line %d", 1);
    /* The documented answers, asserted here as well as read back by check_log_plugin.py: a
       plugin that sees anything else refuses to load, with an error line saying which. */
    PROBE_ASSERT(f->log, bad_key == FWX_E_INVALIDARG);
    PROBE_ASSERT(f->log, reserved_key == FWX_E_INVALIDARG);
    PROBE_ASSERT(f->log, no_message == FWX_E_POINTER);
    PROBE_ASSERT(f->log, debug == FWX_S_FALSE || debug == FWX_S_OK);
    fwx_log_field fields[] = {
        {"headers_version", FWX_LOG_STRING, {FWX_VERSION_STRING}},
        {"headers_version_hex", FWX_LOG_UINT, {NULL}},
        {"abi", FWX_LOG_UINT, {NULL}},
        {"bad_key", FWX_LOG_INT, {NULL}},
        {"reserved_key", FWX_LOG_INT, {NULL}},
        {"no_message", FWX_LOG_INT, {NULL}},
        {"debug_result", FWX_LOG_INT, {NULL}},
    };
    fields[1].value.u = FWX_VERSION_HEX;
    fields[2].value.u = FWX_ABI_VERSION;
    fields[3].value.i = bad_key;
    fields[4].value.i = reserved_key;
    fields[5].value.i = no_message;
    fields[6].value.i = debug;
    hr = IFWXHostLog_Log(f->log, FWX_LOG_INFO, NULL, NULL, fields, sizeof fields / sizeof fields[0], "started");
    if (hr != FWX_S_OK)
        return FWX_E_FAIL; /* the host must take the line: refuse to load, the test sees it */
    hooks->dwGlobalEvents = PROBE_HOOKS;
    return FWX_S_OK;
}

static fwx_result f_FilterShutdown(IFWXFilter *This)
{
    probe_filter *f = f_impl(This);
    if (f->log != NULL) {
        (void)IFWXHostLog_Log(f->log, FWX_LOG_INFO, NULL, NULL, NULL, 0, "stopping");
        IFWXHostLog_Release(f->log);
        f->log = NULL;
    }
    return FWX_S_OK;
}

static fwx_result f_AttachToSession(IFWXFilter *This, IFWXSession *session, IFWXSessionFilter **out,
                                    FwxFilterHookEvents *hooks)
{
    probe_filter *f = f_impl(This);
    (void)hooks;
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (session == NULL || f->log == NULL)
        return FWX_E_POINTER;
    probe_sf *sf = calloc(1, sizeof *sf);
    if (sf == NULL)
        return FWX_E_OUTOFMEMORY;
    sf->iface.lpVtbl = &sf_vtbl;
    fwx_refcount_init(&sf->refs);
    sf->f = f;
    IFWXHostLog_AddRef(f->log);
    sf->log = f->log;
    *out = &sf->iface;
    return FWX_S_OK;
}

static const IFWXFilterVtbl f_vtbl = {f_QueryInterface, f_AddRef, f_Release, f_FilterInit, f_FilterShutdown,
                                      f_AttachToSession};

FWX_PLUGIN_CREATE_FILTER(probe_create_filter, probe_filter, iface, refs, f_vtbl)

FWX_PLUGIN_ENTRY(
    .filter_guid = FWX_GUID_INIT(0x9e, 0x41, 0x0c, 0x77, 0x52, 0x1b, 0x4d, 0x3a, 0xb8, 0x6e, 0x13, 0x5f, 0x02, 0xc4,
                                 0x7a, 0x01),
    .name = "probe",
    .vendor = "fwx tests",
    .version = "1",
    .description = "logs through the host: the install test's out-of-tree plugin",
    .allowed_events = PROBE_HOOKS,
    .create_filter = probe_create_filter);
