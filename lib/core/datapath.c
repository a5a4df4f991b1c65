/*
 * fwx - what a data path gets from the core (include/fwx/pump.h): a connection's data-filter
 * chain, the calls back into its filters, buffers; and the host's relay (include/fwx/host.h),
 * the core's service to hosts that carry connections themselves, built on the public pump
 * (lib/backends/usermode/pump.c) like any backend's data path. Without the relay a host that
 * relays by itself has no way to run a filter, and fwx refuses such connections
 * (lib/core/backend_registry.c) rather than let filters be skipped.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "objects/objects.h"

#include <fwx/pump.h>

#include <stdlib.h>

/* ---- the chain --------------------------------------------------------------------------- */

static fwx__conn *ours(IFWXConnection *conn)
{
    return conn != NULL && fwx__conn_is_ours(conn) ? fwx__conn_from(conn) : NULL;
}

uint32_t fwx_connection_data_filters(IFWXConnection *conn)
{
    fwx__conn *c = ours(conn);
    return c != NULL ? (uint32_t)c->n_dfs : 0;
}

int32_t fwx_connection_data_filter_applies(IFWXConnection *conn, uint32_t index)
{
    fwx__conn *c = ours(conn);
    if (c == NULL || index >= c->n_dfs)
        return 0;
    /* A filter attached with a destination sees only the flow of that destination. */
    const fwx__dfentry *e = &c->dfs[index];
    return !e->has_dest ||
           fwx__sa_same_endpoint((const struct sockaddr *)&e->dest, (const struct sockaddr *)&c->ext_peer);
}

fwx_result fwx_connection_data_filter_set_sockets(IFWXConnection *conn, uint32_t index, IFWXSocket *internal,
                                                  IFWXSocket *external)
{
    fwx__conn *c = ours(conn);
    if (c == NULL || internal == NULL)
        return FWX_E_POINTER;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (index >= c->n_dfs)
        return FWX_E_INVALIDARG;
    fwx_firewall *fw = c->session->fw;
    size_t n_dfs = c->n_dfs;
    /* The core may detach the filter while it runs: hold it for its call. */
    IFWXDataFilter *df = c->dfs[index].df;
    IUnknown *ctx = c->dfs[index].ctx;
    IFWXDataFilter_AddRef(df);
    if (ctx != NULL)
        IUnknown_AddRef(ctx);
    fwx__plugin_call saved;
    fwx__plugin_enter(fw, c->dfs[index].plugin, FWX__EVENT_DATA, &saved);
    fwx_result hr = IFWXDataFilter_SetSockets(df, internal, external, conn, ctx);
    fwx__plugin_leave(fw, &saved);
    if (ctx != NULL)
        IUnknown_Release(ctx);
    IFWXDataFilter_Release(df);
    if (FWX_SUCCEEDED(hr) && (c->n_dfs != n_dfs || (c->flags & FWX_CONNECTION_TERMINATED)))
        hr = FWX_E_TERMINATING;
    return hr;
}

void fwx_connection_data_call(IFWXConnection *conn, fwx_data_call_fn fn, void *arg)
{
    fwx__conn *c = ours(conn);
    if (fn == NULL)
        return;
    if (c == NULL) {
        fn(arg);
        return;
    }
    /* The core learns which connection a filter works for while it handles a completion (a
       session may hold several control connections: RedirectConnections picks this one's). */
    fwx_firewall *fw = c->session->fw;
    const fwx__conn *was = fw->io_conn;
    fw->io_conn = c;
    fwx__plugin_call saved;
    fwx__plugin_enter(fw, fwx__conn_x(c)->df_owner, FWX__EVENT_DATA, &saved);
    fn(arg);
    fwx__plugin_leave(fw, &saved);
    fw->io_conn = was;
}

uint32_t fwx_connection_buffer_size(IFWXConnection *conn)
{
    fwx__conn *c = ours(conn);
    return c != NULL ? c->buffer_size : 0;
}

void fwx_connection_count_dropped_datagrams(IFWXConnection *conn, uint64_t n)
{
    fwx__conn *c = ours(conn);
    if (c != NULL)
        c->session->fw->dgrams_dropped += n;
}

uint64_t fwx_firewall_datagrams_dropped(const fwx_firewall *fw) { return fw != NULL ? fw->dgrams_dropped : 0; }

/* ---- buffers ----------------------------------------------------------------------------- */

fwx_result fwx_iobuffer_new(uint32_t size, IFWXIOBuffer **out) { return fwx__iobuffer_new(size, out); }

fwx_result fwx_iobuffer_set_readonly(IFWXIOBuffer *buf, int32_t readonly)
{
    if (buf == NULL)
        return FWX_E_POINTER;
    if (!fwx__iobuffer_is_ours(buf))
        return FWX_E_INVALIDARG;
    fwx__iobuffer_set_readonly(buf, readonly != 0);
    return FWX_S_OK;
}

/* ---- the host's relay -------------------------------------------------------------------- */

struct fwx_relay {
    fwx_pump *pump;
    IFWXConnection *conn; /* +1 until done() has returned */
    fwx_relay_done_cb done;
    void *arg;
};

fwx_result fwx_firewall_set_host_relay(fwx_firewall *fw, int32_t enabled)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    fw->host_relay = enabled != 0;
    fwx__log(fw, FWX_LOG_DEBUG, "host relay %s: connections with data filters are %s", enabled ? "on" : "off",
             enabled ? "the host's to carry with fwx_connection_relay" : "refused unless a backend relays them");
    return FWX_S_OK;
}

static void relay_done(fwx_pump *p, void *arg)
{
    fwx_relay *r = arg;
    int err = fwx_pump_error(p);
    fwx__conn *c = fwx__conn_from(r->conn);
    if (fwx__conn_x(c)->host_pump == p)
        c->ext->host_pump = NULL;
    fwx_result hr = err == 0 ? FWX_S_OK : err == UV_ECANCELED ? FWX_E_TERMINATING : FWX_E_FAIL;
    if (r->done != NULL)
        r->done(r, hr, r->arg);
    IFWXConnection_Release(r->conn);
    free(r);
}

fwx_result fwx_connection_relay(IFWXConnection *conn, int client_fd, int server_fd, fwx_relay_done_cb done, void *arg,
                                fwx_relay **out)
{
    if (out != NULL)
        *out = NULL;
    fwx__conn *c = ours(conn);
    if (c == NULL)
        return FWX_E_POINTER;
    fwx_firewall *fw = c->session->fw;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (c->protocol != FWX_PROTOCOL_TCP)
        return FWX_E_NOT_SUPPORTED;
    if (fwx__conn_x(c)->host_pump != NULL)
        return FWX_E_INVALIDARG; /* already relayed */
    fwx__conn_ext *x = fwx__conn_ext_get(c);
    fwx_relay *r = x != NULL ? calloc(1, sizeof *r) : NULL;
    if (r == NULL)
        return FWX_E_OUTOFMEMORY;
    r->done = done;
    r->arg = arg;
    r->conn = conn;
    IFWXConnection_AddRef(conn);
    fwx_pump *p = NULL;
    fwx_result hr = fwx_pump_start(fw->loop, conn, client_fd, server_fd, NULL, relay_done, r, &p);
    if (FWX_FAILED(hr)) {
        IFWXConnection_Release(conn);
        free(r);
        fwx__log(fw, FWX_LOG_WARN, "connection %llu: host relay refused: %s", (unsigned long long)c->id,
                 fwx_strerror(hr));
        return hr;
    }
    r->pump = p;
    x->host_pump = p;
    fwx__log(fw, FWX_LOG_DEBUG, "connection %llu: relayed for the host through %zu data filter(s)",
             (unsigned long long)c->id, c->n_dfs);
    if (out != NULL)
        *out = r;
    return FWX_S_OK;
}

void fwx_relay_abort(fwx_relay *relay)
{
    if (relay != NULL)
        fwx_pump_abort(relay->pump);
}

void fwx__relay_kill(fwx__conn *c)
{
    if (c->ext == NULL)
        return;
    fwx_pump *p = c->ext->host_pump;
    c->ext->host_pump = NULL;
    fwx_pump_abort(p);
}
