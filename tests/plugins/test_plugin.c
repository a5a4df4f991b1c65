/*
 * fwx tests - a scriptable filter plugin, built in several variants (see meson.build):
 *   tp_good, tp_good2  the normal plugin (two different filter GUIDs)
 *   tp_newer           declares an ABI minor newer than the host's
 *   tp_nosym           exports no entry symbol
 *   tp_failinit        its init() fails
 * SPDX-License-Identifier: MIT
 */
#include "test_plugin.h"

#include <fwx/plugin_helpers.h>

#include <assert.h>
#include <stdlib.h>

#ifndef TP_GUID_LAST
#define TP_GUID_LAST 0x01
#endif

FWX_PLUGIN_EXPORT tp_control fwx_test_control;

typedef struct tp_filter {
    IFWXFilter iface;
    fwx_refcount refs;
} tp_filter;

typedef struct tp_session_filter {
    IFWXSessionFilter iface;
    fwx_refcount refs;
    IFWXSession *session; /* +1 until Detach */
    int detached;
} tp_session_filter;

static void tp_log(uint32_t what)
{
    if (fwx_test_control.n_log < TP_LOG_MAX)
        fwx_test_control.log[fwx_test_control.n_log++] = what;
}

/* ---- session filter ---- */

static void sf_destroy(tp_session_filter *sf)
{
    if (sf->session != NULL)
        IFWXSession_Release(sf->session);
    fwx_test_control.n_sf_released++;
    free(sf);
}

/* sf_impl, sf_QueryInterface, sf_AddRef, sf_Release (wrapped by sf_checked_Release) */
FWX_IUNKNOWN_IMPL(sf, IFWXSessionFilter, tp_session_filter, iface, refs, sf_destroy, &IID_IFWXSessionFilter)

static uint32_t sf_checked_Release(IFWXSessionFilter *This)
{
    uint32_t n = sf_Release(This);
    assert(n != UINT32_MAX); /* released more often than referenced: a core refcount bug */
    return n;
}

static IFWXConnection *event_connection(const FwxFirewallEvent *ev)
{
    switch (ev->EventType) {
    case fwx_Connect_Tcp:
    case fwx_Bind_Tcp:
    case fwx_Bind_Udp:
        return ev->Parameters.Connect.piConnection;
    case fwx_Udp_Destination:
        return ev->Parameters.UdpDest.piConnection;
    case fwx_AcceptedConnection:
        return ev->Parameters.Accept.piConnectionAccepted;
    case fwx_Listen:
        return ev->Parameters.Listen.piConnection;
    case fwx_ConnectionTerminating:
        return ev->Parameters.EndConnect.piConnection;
    case fwx_EstablishedConnection:
        return ev->Parameters.EstablishedConnection.piConnection;
    default:
        return NULL;
    }
}

static fwx_result sf_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *ev)
{
    tp_session_filter *sf = sf_impl(This);
    tp_control *ctl = &fwx_test_control;
    if (sf->detached) {
        /* T16 (doc/sdk-rules.md): a detached session filter refuses further events. */
        ctl->n_after_detach++;
        return FWX_E_TERMINATING;
    }
    ctl->n_events++;
    tp_log(ev->EventType);
    if (ev->EventType == fwx_ConnectionTerminating)
        ctl->n_terminating++;
    if (ev->EventType == fwx_EstablishedConnection) {
        ctl->n_established++;
        ctl->last_established_ctx = ev->Parameters.EstablishedConnection.UserContext;
        ctl->last_established_conn = ev->Parameters.EstablishedConnection.piConnection;
    }
    fwx_result hr = FWX_S_OK;
    if (ctl->on_event != NULL)
        hr = ctl->on_event(ctl, This, sf->session, ev);
    if (FWX_FAILED(hr))
        return hr;
    if (ctl->fail_events & ev->EventType)
        return FWX_E_OUTOFMEMORY;
    if (ctl->deny_events & ev->EventType) {
        IFWXConnection *c = event_connection(ev);
        if (c != NULL)
            return IFWXConnection_Deny(c, 0);
    }
    return FWX_S_OK;
}

static fwx_result sf_Detach(IFWXSessionFilter *This)
{
    tp_session_filter *sf = sf_impl(This);
    fwx_test_control.n_detach++;
    tp_log(TP_LOG_DETACH);
    sf->detached = 1;
    if (sf->session != NULL) {
        IFWXSession_Release(sf->session);
        sf->session = NULL;
    }
    return FWX_S_OK;
}

static const IFWXSessionFilterVtbl sf_vtbl = {sf_QueryInterface, sf_AddRef, sf_checked_Release, sf_FirewallEventHandler,
                                              sf_Detach};

/* ---- filter ---- */

static void f_destroy(tp_filter *f) { free(f); }

FWX_IUNKNOWN_IMPL(f, IFWXFilter, tp_filter, iface, refs, f_destroy, &IID_IFWXFilter)

static uint32_t f_checked_Release(IFWXFilter *This)
{
    uint32_t n = f_Release(This);
    assert(n != UINT32_MAX); /* released more often than referenced: a core refcount bug */
    return n;
}

static fwx_result f_FilterInit(IFWXFilter *This, IFWXFirewall *fw, FwxFilterHookEvents *ev)
{
    (void)This;
    fwx_test_control.n_init++;
    IFWXFirewall_AddRef(fw);
    fwx_test_control.fw = fw;
    ev->dwGlobalEvents = fwx_test_control.hooks;
    return FWX_S_OK;
}

static fwx_result f_FilterShutdown(IFWXFilter *This)
{
    fwx_test_control.n_shutdown++;
    tp_log(TP_LOG_SHUTDOWN);
    This->lpVtbl->AddRef(This);
    fwx_test_control.filter_refs_at_shutdown = This->lpVtbl->Release(This);
    if (fwx_test_control.fw != NULL) {
        IFWXFirewall_Release(fwx_test_control.fw);
        fwx_test_control.fw = NULL;
    }
    return FWX_S_OK;
}

static fwx_result f_AttachToSession(IFWXFilter *This, IFWXSession *s, IFWXSessionFilter **out, FwxFilterHookEvents *ev)
{
    (void)This;
    tp_control *ctl = &fwx_test_control;
    *out = NULL;
    ctl->n_attach++;
    if (ctl->attach_fail)
        return FWX_E_OUTOFMEMORY;
    if (ctl->attach_decline)
        return FWX_S_OK;
    tp_session_filter *sf = calloc(1, sizeof *sf);
    if (sf == NULL)
        return FWX_E_OUTOFMEMORY;
    sf->iface.lpVtbl = &sf_vtbl;
    fwx_refcount_init(&sf->refs);
    IFWXSession_AddRef(s);
    sf->session = s;
    if (ctl->session_hooks != 0)
        ev->dwGlobalEvents = ctl->session_hooks;
    *out = &sf->iface;
    return FWX_S_OK;
}

static const IFWXFilterVtbl f_vtbl = {f_QueryInterface, f_AddRef, f_checked_Release, f_FilterInit, f_FilterShutdown,
                                      f_AttachToSession};

static fwx_result tp_init(const char *path)
{
    (void)path;
#ifdef TP_FAIL_INIT
    return FWX_E_FAIL;
#else
    return FWX_S_OK;
#endif
}

FWX_PLUGIN_CREATE_FILTER(tp_create_filter, tp_filter, iface, refs, f_vtbl)

#ifndef TP_ABI
#define TP_ABI FWX_ABI_VERSION
#endif
#ifndef TP_ENTRY_NAME
#define TP_ENTRY_NAME fwx_entry
#endif
#ifndef TP_NAME
#define TP_NAME "test"
#endif
#ifndef TP_ENTRY_SIZE
#define TP_ENTRY_SIZE sizeof(fwx_plugin_entry)
#endif

/* Written out, not FWX_PLUGIN_ENTRY(): the variants change the ABI, the symbol's name and the
   struct_size that the macro fixes. */
FWX_PLUGIN_EXPORT const fwx_plugin_entry TP_ENTRY_NAME = {
    .abi_version = TP_ABI,
    .struct_size = TP_ENTRY_SIZE,
    .filter_guid = FWX_GUID_INIT(0x7e, 0x57, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, TP_GUID_LAST),
    .name = TP_NAME,
    .vendor = "fwx tests",
    .version = "1",
    .description = "a scriptable filter for the test suite",
    .allowed_events = FWX_HOOK_EVENTS_MASK & ~(uint32_t)fwx_GetHostByName,
    .init = tp_init,
    .deinit = NULL,
    .create_filter = tp_create_filter,
};
