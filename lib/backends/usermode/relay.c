/*
 * fwx - the host's relay (include/fwx/host.h): an embedding host hands fwx the two sockets of
 * a connection it accepted and dialled itself, and fwx carries the bytes through the
 * connection's data filters with the pump of the proxy backend (pump.c). Without it a host
 * that relays by itself has no way to run a filter, and fwx refuses such connections
 * (lib/core/backend_registry.c) rather than let filters be skipped.
 * SPDX-License-Identifier: MIT
 */
#include "backends/usermode/usermode.h"
#include "core/internal.h"

#include <stdlib.h>

struct fwx_relay {
    fwx__pump *pump;
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

uint32_t fwx_connection_data_filters(IFWXConnection *conn)
{
    if (conn == NULL || !fwx__conn_is_ours(conn))
        return 0;
    return (uint32_t)fwx__conn_from(conn)->n_dfs;
}

static void relay_done(fwx__pump *p, void *arg)
{
    fwx_relay *r = arg;
    int err = fwx__pump_error(p);
    fwx__conn *c = fwx__conn_from(r->conn);
    if (c->host_pump == p)
        c->host_pump = NULL;
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
    if (conn == NULL || !fwx__conn_is_ours(conn))
        return FWX_E_POINTER;
    fwx__conn *c = fwx__conn_from(conn);
    fwx_firewall *fw = c->session->fw;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (c->protocol != FWX_PROTOCOL_TCP)
        return FWX_E_NOT_SUPPORTED;
    if (c->host_pump != NULL)
        return FWX_E_INVALIDARG; /* already relayed */
    fwx_relay *r = calloc(1, sizeof *r);
    if (r == NULL)
        return FWX_E_OUTOFMEMORY;
    r->done = done;
    r->arg = arg;
    r->conn = conn;
    IFWXConnection_AddRef(conn);
    fwx__pump *p = NULL;
    fwx_result hr = fwx__pump_start(fw->loop, conn, client_fd, server_fd, NULL, relay_done, r, &p);
    if (FWX_FAILED(hr)) {
        IFWXConnection_Release(conn);
        free(r);
        fwx__log(fw, FWX_LOG_WARN, "connection %llu: host relay refused: %s", (unsigned long long)c->id,
                 fwx_strerror(hr));
        return hr;
    }
    r->pump = p;
    c->host_pump = p;
    fwx__log(fw, FWX_LOG_DEBUG, "connection %llu: relayed for the host through %zu data filter(s)",
             (unsigned long long)c->id, c->n_dfs);
    if (out != NULL)
        *out = r;
    return FWX_S_OK;
}

void fwx_relay_abort(fwx_relay *relay)
{
    if (relay != NULL)
        fwx__pump_abort(relay->pump);
}

void fwx__relay_kill(fwx__conn *c)
{
    fwx__pump *p = c->host_pump;
    c->host_pump = NULL;
    fwx__pump_abort(p);
}
