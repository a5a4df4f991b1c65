/*
 * tftp - the TFTP application-layer filter.
 *
 * It hooks the primary UDP flows of the protocol the policy binds it to (fwx_AcceptedConnection
 * for a published TFTP server, fwx_Udp_Destination for clients behind the gateway), attaches a
 * data filter to each, and reads the client's datagrams. A well-formed read or write request
 * (RFC 1350, options of RFC 2347-2349 and 7440) opens exactly the permission the server's answer
 * needs, with the SDK's AllowFutureConnect: UDP to the client's own address and port, from the
 * server's address and any source port (FWX_FLAG_REPLY_FROM_PEER: the server's new port, its
 * TID, is unknown in advance), FWX_FLAG_BIDIRECTIONAL so the client's
 * ACKs and DATA go back, FWX_FLAG_TIMEOUT so an unused permission expires; one transfer per
 * request (one-shot, no ALLOW_MULTIPLE). A new request from the same flow replaces the earlier
 * permission; the flow's end withdraws it. Everything else is refused before it reaches the
 * server: an ERROR packet to the client, never longer than what it sent, and one line through
 * the host's IFWXHostLog. See README.md.
 *
 * The transfer itself is not read: the permission alone carries it, so the data path needs no
 * data filter (and the kernel may carry it).
 *
 * Structure as plugins/ftp: tftp_parse.c is the parser (pure, bounded, unit-tested, fuzzed);
 * the filter object and session filter are the conn-logger sample's; the data filter's plumbing
 * is plugins/common/plugin_df.h, and it keeps one Recv pending per socket and relays datagram
 * by datagram.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

#include "plugin_df.h"
#include "plugin_util.h"
#include "tftp_parse.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TFTP_SA(ss) ((struct sockaddr *)(void *)&(ss))
#define TFTP_CSA(ss) ((const struct sockaddr *)(const void *)&(ss))

/* Primary UDP flows of the protocols the policy binds to this filter, both sources. No
   fwxAnyProtocol (a TFTP parser reads no other protocol), no
   fwxAssociatedProtocolsAllConnections (the transfer is not read). */
#define TFTP_HOOKS (fwx_AcceptedConnection | fwx_Udp_Destination | FWX_ALL_SOURCES)
/* The permission: one transfer, replies both ways, expires when unused. */
#define TFTP_GRANT_FLAGS (FWX_FLAG_TIMEOUT | FWX_FLAG_BIDIRECTIONAL | FWX_FLAG_REPLY_FROM_PEER)
#define TFTP_ADDRSTRLEN (INET6_ADDRSTRLEN + 16)

enum { UD_RECV = 1, UD_SEND = 2 };
typedef enum tftp_kind { TFTP_PUBLISHED, TFTP_CLIENT } tftp_kind;

static void addr_text(const struct sockaddr *sa, char out[TFTP_ADDRSTRLEN])
{
    char ip[INET6_ADDRSTRLEN];
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, TFTP_ADDRSTRLEN, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, TFTP_ADDRSTRLEN, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, TFTP_ADDRSTRLEN, "?");
    }
}

static bool same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)(const void *)a)->sin_addr,
                      &((const struct sockaddr_in *)(const void *)b)->sin_addr, 4) == 0;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr, 16) == 0;
    return false;
}

/* ---- the data filter: one per primary flow (one client address and port) ------------------- */

typedef struct tftp_flow tftp_flow;

typedef struct tftp_dir {
    IFWXIOCompletion iface;
    tftp_flow *f;
    int d; /* 0: the client's side, 1: the server's */
} tftp_dir;

struct tftp_flow {
    PLUGIN_DF_MEMBERS       /* the data filter's plumbing (plugins/common/plugin_df.h) */
    tftp_dir dirs[2];
    tftp_kind kind;
    IFWXFirewallAction *action; /* +1: the outstanding transfer's permission */
    struct sockaddr_storage client; /* the client's address and port (the request's source) */
    struct sockaddr_storage gateway; /* the gateway's address facing the client, if known */
    bool has_gateway;
    char client_text[TFTP_ADDRSTRLEN];
    bool closed;
};

/* flow_impl, flow_QueryInterface, flow_AddRef, flow_Release, flow_base_init, flow_take_sockets,
   flow_drop_refs (plugins/common/plugin_df.h). */
static void flow_destroy(tftp_flow *f);
PLUGIN_DATA_FILTER(flow, tftp_flow, flow_destroy)

/* `tftp: client <address:port>: ...` through the host's log. */
PLUGIN_DF_LOG(tftp_log, tftp_flow, "client", client_text)

static void flow_withdraw(tftp_flow *f)
{
    if (f->action != NULL) {
        (void)IFWXFirewallAction_Cancel(f->action);
        IFWXFirewallAction_Release(f->action);
        f->action = NULL;
    }
}

static void flow_close_all(tftp_flow *f)
{
    if (f->closed)
        return;
    f->closed = true;
    flow_withdraw(f);
    for (int i = 0; i < 2; i++)
        if (f->s[i] != NULL)
            (void)IFWXSocket_Close(f->s[i]);
}

static void flow_recv(tftp_flow *f, int d)
{
    if (f->closed || f->s[d] == NULL)
        return;
    if (FWX_FAILED(IFWXSocket_Recv(f->s[d], NULL, &f->dirs[d].iface, UD_RECV)))
        flow_close_all(f);
}

/* Sends a copy of p/n on side t. */
static fwx_result flow_send(tftp_flow *f, int t, int d, const uint8_t *p, size_t n)
{
    IFWXIOBuffer *b = NULL;
    fwx_result hr = IFWXFirewall_CreateBuffer(f->fw, (uint32_t)n, &b);
    if (FWX_SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(b, p, (uint32_t)n);
    if (FWX_SUCCEEDED(hr))
        hr = IFWXSocket_Send(f->s[t], b, &f->dirs[d].iface, UD_SEND);
    if (b != NULL)
        IFWXIOBuffer_Release(b);
    return hr;
}

/* Refuses a client datagram: ERROR back (no longer than the datagram) and one log line.
   No ERROR answers an ERROR (RFC 1350: ERRORs are not acknowledged) or goes to a port under
   1024: an echo or chargen service at the "client" would answer it, and two gateways (or a
   gateway and such a service) would bounce ERRORs for ever (catalog rows 53, 65 in doc/security.md). */
static void refuse(tftp_flow *f, uint16_t code, const char *why, const uint8_t *p, size_t received)
{
    uint8_t pkt[4 + TFTP_ERRMSG_MAX + 1];
    size_t n = 0;
    if (tftp_opcode(p, received) != TFTP_OP_ERROR && plugin_sa_port(TFTP_CSA(f->client)) >= 1024)
        n = tftp_fmt_error(pkt, received < sizeof pkt ? received : sizeof pkt, code, why);
    const fwx_log_field fl[] = {{.key = "reason", .type = FWX_LOG_STRING, .value = {.string = why}}};
    tftp_log(f, FWX_LOG_WARN, fl, 1, "request refused%s: %s", n > 0 ? "" : " (no ERROR sent)", why);
    if (n > 0 && FWX_FAILED(flow_send(f, 0, 0, pkt, n)))
        flow_close_all(f);
}

/* What AllowFutureConnect answered, for the log and the client's ERROR: TFTP asks for
   permissions, and its texts say so where the shared ones (plugin_util.h) say grants. */
static const char *grant_result_text(fwx_result hr)
{
    switch (hr) {
    case FWX_E_QUOTA_EXCEEDED: return "too many permissions (FWX_E_QUOTA_EXCEEDED)";
    case FWX_E_DUP_NAME: return "a permission for it exists (FWX_E_DUP_NAME)";
    case FWX_E_ADDRNOTAVAIL: return "the core refused it";
    default: return plugin_result_text(hr);
    }
}

/* Opens the permission the server's answer needs; false when the core refused it. */
static bool grant(tftp_flow *f, const tftp_request *r, const char **why)
{
    flow_withdraw(f); /* one transfer per request: a new request replaces the earlier one */
    fwx_result hr = IFWXSession_AllowFutureConnect(f->session, TFTP_CSA(f->client), plugin_sa_len(TFTP_CSA(f->client)), NULL,
                                                   0, FWX_PROTOCOL_UDP, TFTP_GRANT_FLAGS, &f->protocol, NULL, NULL,
                                                   f->conn, &f->action);
    if (FWX_FAILED(hr)) {
        f->action = NULL;
        *why = grant_result_text(hr);
        return false;
    }
    const fwx_log_field fl[] = {
        {.key = "file", .type = FWX_LOG_STRING, .value = {.string = r->filename}},
        {.key = "op", .type = FWX_LOG_STRING, .value = {.string = r->opcode == TFTP_OP_RRQ ? "RRQ" : "WRQ"}},
    };
    tftp_log(f, FWX_LOG_INFO, fl, 2, "%s \"%s\": permission to %s (UDP, any source port of the server)",
             r->opcode == TFTP_OP_RRQ ? "RRQ" : "WRQ", r->filename, f->client_text);
    return true;
}

/* A datagram from the client: a request is checked and granted, anything else refused. */
static void on_client_datagram(tftp_flow *f, const uint8_t *p, size_t n)
{
    const char *why = tftp_check_client(TFTP_CSA(f->client));
    if (why == NULL && f->has_gateway && same_ip(TFTP_CSA(f->client), TFTP_CSA(f->gateway)))
        why = "the gateway's own address";
    if (why != NULL) {
        refuse(f, TFTP_ERR_ACCESS, why, p, n);
        return;
    }
    tftp_request r;
    tftp_status st = tftp_parse_request(p, n, &r);
    if (st != TFTP_P_OK) {
        refuse(f, tftp_status_error_code(st), tftp_status_text(st), p, n);
        return;
    }
    if (!grant(f, &r, &why)) {
        refuse(f, TFTP_ERR_ACCESS, why, p, n);
        return;
    }
    if (FWX_FAILED(flow_send(f, 1, 0, p, n)))
        flow_close_all(f);
}

static fwx_result dir_CompleteAsyncIO(IFWXIOCompletion *This, int32_t ok, int32_t err, IFWXIOBuffer *buf,
                                      uintptr_t ud, const struct sockaddr *a, uint32_t al)
{
    tftp_dir *dir = FWX_CONTAINER_OF(This, tftp_dir, iface);
    tftp_flow *f = dir->f;
    int d = dir->d;
    (void)err;
    (void)a;
    (void)al;
    if (f->closed || f->detached)
        return FWX_S_OK;
    if (!ok) {
        flow_close_all(f);
        return FWX_S_OK;
    }
    if (ud == UD_SEND)
        return FWX_S_OK; /* datagrams: nothing waits for a send */
    uint8_t *p = NULL;
    uint32_t n = 0;
    if (buf == NULL || FWX_FAILED(IFWXIOBuffer_GetBufferAndSize(buf, &p, &n))) {
        flow_close_all(f);
        return FWX_S_OK;
    }
    if (n > 0) {
        if (d == 0) {
            on_client_datagram(f, p, n);
        } else {
            /* From the server's well-known port: only an ERROR is expected (RFC 1350 answers
               come from a new port); it ends the request, so its permission goes. */
            if (tftp_opcode(p, n) == TFTP_OP_ERROR)
                flow_withdraw(f);
            if (FWX_FAILED(flow_send(f, 0, 1, p, n)))
                flow_close_all(f);
        }
    }
    flow_recv(f, d);
    return FWX_S_OK;
}

/* dir_QueryInterface, dir_AddRef, dir_Release and dir_vtbl: the completions live inside the
   data filter and share its count. */
FWX_PLUGIN_IO_COMPLETION(dir, tftp_dir, f, flow, dir_CompleteAsyncIO)

static void flow_release_all(tftp_flow *f)
{
    flow_withdraw(f);
    flow_drop_refs(f);
}

static void flow_destroy(tftp_flow *f)
{
    flow_release_all(f); /* the core always Detaches first; this covers a host that does not */
    free(f);
}

/* The client's address and port: the external peer of a published flow, the internal peer
   (IFWXConnection2) of a client's own flow. */
static bool learn_client(tftp_flow *f)
{
    uint32_t len = sizeof f->client;
    memset(&f->client, 0, sizeof f->client);
    if (f->kind == TFTP_PUBLISHED) {
        if (IFWXConnection_GetExternalPeerName(f->conn, TFTP_SA(f->client), &len) != FWX_S_OK)
            return false;
        uint32_t glen = sizeof f->gateway;
        f->has_gateway = IFWXConnection_GetExternalSocketName(f->conn, TFTP_SA(f->gateway), &glen) == FWX_S_OK;
    } else {
        IFWXConnection2 *c2 = NULL;
        if (IFWXConnection_QueryInterface(f->conn, &IID_IFWXConnection2, (void **)&c2) != FWX_S_OK || c2 == NULL)
            return false;
        fwx_result hr = IFWXConnection2_GetInternalPeerName(c2, TFTP_SA(f->client), &len);
        IFWXConnection2_Release(c2);
        if (hr != FWX_S_OK)
            return false;
    }
    return (f->client.ss_family == AF_INET || f->client.ss_family == AF_INET6) && plugin_sa_port(TFTP_CSA(f->client)) != 0;
}

static fwx_result flow_SetSockets(IFWXDataFilter *This, IFWXSocket *in, IFWXSocket *ex, IFWXConnection *conn,
                                  IUnknown *ctx)
{
    tftp_flow *f = flow_impl(This);
    (void)ctx;
    fwx_result hr = flow_take_sockets(f, in, ex, conn); /* a TFTP gateway relays; it never emulates the server */
    if (FWX_FAILED(hr))
        return hr;
    if (!learn_client(f)) {
        /* Fail closed: without the client's port no permission can be scoped. */
        tftp_log(f, FWX_LOG_ERROR, NULL, 0, "the core names no client address and port for this flow; refused");
        flow_close_all(f);
        return FWX_E_FAIL;
    }
    addr_text(TFTP_CSA(f->client), f->client_text);
    flow_recv(f, 0);
    flow_recv(f, 1);
    return f->closed ? FWX_E_FAIL : FWX_S_OK;
}

static fwx_result flow_Detach(IFWXDataFilter *This)
{
    tftp_flow *f = flow_impl(This);
    /* The flow is ending: its permission goes with it (a transfer already under way keeps the
       flow the permission admitted). */
    flow_close_all(f);
    f->detached = true;
    flow_release_all(f);
    return FWX_S_OK;
}

static const IFWXDataFilterVtbl flow_vtbl = {flow_QueryInterface, flow_AddRef, flow_Release, flow_SetSockets,
                                             flow_Detach};

static tftp_flow *flow_new(tftp_kind kind, IFWXFirewall *fw, IFWXSession *session, const fwx_guid *protocol)
{
    tftp_flow *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    flow_base_init(f, &flow_vtbl, fw, session, protocol);
    for (int d = 0; d < 2; d++) {
        f->dirs[d].iface.lpVtbl = &dir_vtbl;
        f->dirs[d].f = f;
        f->dirs[d].d = d;
    }
    f->kind = kind;
    return f;
}

/* ---- the session filter ---------------------------------------------------------------------- */

/* plugin_sf, and sf_impl, sf_QueryInterface, sf_AddRef, sf_Release, sf_Detach (drops the session
   and the firewall), the constructor sf_new and sf_FirewallEventHandler, which hands sf_attach
   each primary flow: a transfer is carried by its permission, not read
   (plugins/common/plugin_df.h). */
PLUGIN_SESSION_FILTER(sf_attach, plugin_sf_ignore)

static fwx_result sf_attach(plugin_sf *sf, const FwxFirewallEvent *ev, IFWXConnection *conn, const fwx_guid *protocol)
{
    /* fwx_AcceptedConnection: a published server's; fwx_Udp_Destination: a client's own. */
    tftp_kind kind = ev->EventType == fwx_AcceptedConnection ? TFTP_PUBLISHED : TFTP_CLIENT;
    tftp_flow *f = flow_new(kind, sf->fw, sf->session, protocol);
    if (f == NULL)
        return FWX_E_OUTOFMEMORY;
    /* Fail closed: a TFTP flow this filter cannot read is refused. */
    return plugin_df_attach(conn, &f->iface, f->log, sf->session, "a TFTP flow");
}

/* ---- the filter --------------------------------------------------------------------------- */

/* The filter object itself (FilterInit, FilterShutdown, AttachToSession) and tftp_create_filter. */
FWX_PLUGIN_SESSION_FILTERS(tftp_create_filter, TFTP_HOOKS, sf_new)

/* The one exported symbol; the filter GUID is {8c3f2b91-4e6a-4d27-b1f0-5a9e7c2d6e41}. */
PLUGIN_SHIPPED_ENTRY(FWX_GUID_INIT(0x8c, 0x3f, 0x2b, 0x91, 0x4e, 0x6a, 0x4d, 0x27,
                                   0xb1, 0xf0, 0x5a, 0x9e, 0x7c, 0x2d, 0x6e, 0x41),
                     "tftp", "1.0",
                     "TFTP gateway: RRQ/WRQ checked, one UDP permission per transfer for the server's reply",
                     TFTP_HOOKS, tftp_create_filter);
