/*
 * fwx - IFWXHostLog: a plugin's lines go to the host's sink, named after the plugin and with
 * the fields of the session and connection they are about (include/fwx/sdk.h).
 * SPDX-License-Identifier: MIT
 */
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_PLUGIN_FIELDS 32
#define MAX_MESSAGE 1000

typedef struct hostlog {
    IFWXHostLog iface;
    atomic_uint refs;
    fwx_firewall *fw;
    fwx__plugin *plugin; /* NULL: the core's (asked for by a host) */
} hostlog;

static hostlog *impl(IFWXHostLog *i) { return fwx__container_of(i, hostlog, iface); }

static fwx_result hl_QueryInterface(IFWXHostLog *This, const fwx_guid *riid, void **ppv)
{
    return fwx__query_one(This, &IID_IFWXHostLog, riid, ppv);
}

static uint32_t hl_AddRef(IFWXHostLog *This) { return atomic_fetch_add(&impl(This)->refs, 1) + 1; }

static uint32_t hl_Release(IFWXHostLog *This)
{
    hostlog *h = impl(This);
    uint32_t n = atomic_fetch_sub(&h->refs, 1) - 1;
    if (n == 0) {
        IFWXFirewall_Release(&h->fw->iface);
        free(h);
    }
    return n;
}

static int32_t hl_IsEnabled(IFWXHostLog *This, fwx_log_level Level)
{
    return (unsigned)Level <= FWX_LOG_DEBUG && fwx__log_enabled(impl(This)->fw, Level);
}

/* Keys sinks can write unquoted and unescaped, and never the ones they use for the line. */
static bool key_ok(const char *k)
{
    size_t n = 0;
    if (k == NULL)
        return false;
    for (; k[n] != '\0'; n++)
        if (n >= 31 || !((k[n] >= 'a' && k[n] <= 'z') || (k[n] >= '0' && k[n] <= '9') || k[n] == '_'))
            return false;
    return n > 0 && strcmp(k, "ts") != 0 && strcmp(k, "level") != 0 && strcmp(k, "msg") != 0;
}

static bool field_ok(const fwx_log_field *f)
{
    if (!key_ok(f->key))
        return false;
    switch (f->type) {
    case FWX_LOG_STRING:
    case FWX_LOG_INT:
    case FWX_LOG_UINT:
        return true;
    case FWX_LOG_ADDRESS:
        return f->value.address != NULL && fwx__sa_len(f->value.address) != 0;
    default:
        return false;
    }
}

static fwx_result hl_Log(IFWXHostLog *This, fwx_log_level Level, IFWXSession *pSession, IFWXConnection *pConnection,
                         const fwx_log_field *Fields, uint32_t nFields, const char *Message)
{
    hostlog *h = impl(This);
    if (Message == NULL || (Fields == NULL && nFields > 0))
        return FWX_E_POINTER;
    if ((unsigned)Level > FWX_LOG_DEBUG || nFields > MAX_PLUGIN_FIELDS)
        return FWX_E_INVALIDARG;
    for (uint32_t i = 0; i < nFields; i++)
        if (!field_ok(&Fields[i]))
            return FWX_E_INVALIDARG;
    if ((pSession != NULL && !fwx__session_is_ours(pSession)) ||
        (pConnection != NULL && !fwx__conn_is_ours(pConnection)))
        return FWX_E_INVALIDARG;
    /* FilterShutdown may still log (the host drops the filter only after it returns). */
    if (h->plugin != NULL && h->plugin->unloaded && h->plugin->filter == NULL)
        return FWX_E_TERMINATING;
    if (!fwx__log_enabled(h->fw, Level))
        return FWX_S_FALSE;
    fwx__log_about about = {
        .plugin = h->plugin,
        .session = pSession ? fwx__session_from(pSession) : NULL,
        .conn = pConnection ? fwx__conn_from(pConnection) : NULL,
    };
    char line[MAX_MESSAGE + 80];
    snprintf(line, sizeof line, "%s: %.*s", h->plugin ? h->plugin->name : "fwx", MAX_MESSAGE, Message);
    fwx__log_emit(h->fw, Level, &about, Fields, nFields, line);
    return FWX_S_OK;
}

static const IFWXHostLogVtbl hostlog_vtbl = {hl_QueryInterface, hl_AddRef, hl_Release, hl_IsEnabled, hl_Log};

fwx_result fwx__hostlog_new(fwx_firewall *fw, IFWXHostLog **out)
{
    *out = NULL;
    hostlog *h = calloc(1, sizeof *h);
    if (h == NULL)
        return FWX_E_OUTOFMEMORY;
    h->iface.lpVtbl = &hostlog_vtbl;
    atomic_init(&h->refs, 1);
    h->fw = fw;
    /* The plugin whose call is running on this firewall's loop (tracked per firewall). */
    if (fw->current_plugin != NULL)
        h->plugin = fw->current_plugin;
    IFWXFirewall_AddRef(&fw->iface);
    *out = &h->iface;
    return FWX_S_OK;
}
