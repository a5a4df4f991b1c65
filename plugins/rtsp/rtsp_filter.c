/*
 * rtsp - the RTSP application-layer filter.
 *
 * It hooks the primary TCP connections of the protocol the policy binds it to
 * (fwx_AcceptedConnection for a published RTSP server, fwx_Connect_Tcp for clients behind the
 * gateway), attaches a data filter to each control connection and relays its messages in both
 * directions through rtsp_parse.c's framing. Only SETUP and its reply are changed:
 *
 * - a SETUP whose Transport asks for UDP unicast (`client_port=a-b`) is checked
 *   (rtsp_check_request_spec: a pair with the lowest even, >= 1024, no third-party
 *   destination, no multicast) and gets two consecutive gateway ports, the lowest even (the
 *   SDK's N-consecutive-ports rule, doc/sdk-rules.md T7), on the server's side, forwarding to
 *   the client's pair; the request goes on with `client_port` naming the gateway's pair and
 *   without `destination`;
 * - the server's 200 reply is checked against what the request offered
 *   (rtsp_check_reply_spec: same ports, a server_port pair, no source but the server); for a
 *   published server the client gets two gateway ports on its side, the lowest even, forwarding
 *   to the server's `server_port` pair (the client's RTCP receiver reports); the reply goes on
 *   with the client's own `client_port`, the gateway's `server_port` and `source`;
 * - interleaved transport (`RTP/AVP/TCP;interleaved=`) passes untouched, and so do the `$`
 *   frames on the control connection;
 * - TEARDOWN and the control connection's end withdraw every port this connection opened and
 *   kill the media flows they admitted; an unused port expires with FWX_FLAG_TIMEOUT and a
 *   used one when its flow is idle for that long (the core's UDP flow timeout).
 *
 * What the checks refuse is answered by the gateway itself (`461 Unsupported Transport` for a
 * transport, `503 Service Unavailable` when the core refuses the ports) with the request's
 * CSeq, never reaches the server, and is logged once through the host's log; a framing error
 * (rtsp_parse.c) is answered `400 Bad Request` and the connection closed. See README.md.
 *
 * Structure as plugins/ftp: the parser is pure and tested alone; the filter and session filter
 * are the conn-logger sample's; the data filter (its plumbing plugins/common/plugin_df.h) pumps
 * both directions on plugins/common/plugin_relay.c: one pending Recv per socket, a direction
 * read again only when what it sent for the last chunk is gone.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

#include "plugin_df.h"
#include "plugin_relay.h"
#include "plugin_util.h"
#include "rtsp_parse.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RTSP_SA(ss) ((struct sockaddr *)(void *)&(ss))
#define RTSP_CSA(ss) ((const struct sockaddr *)(const void *)&(ss))

/* Primary connections of the protocols the policy binds to this filter, both sources. */
#define RTSP_HOOKS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)
/* Port pairs one control connection may hold at once (a pair per UDP stream: audio and video
   of a few presentations). Beyond this a SETUP is answered 453 Not Enough Bandwidth. */
#define RTSP_PAIRS_MAX 8
/* SETUPs sent to the server and not answered yet. */
#define RTSP_PENDING_MAX 8
/* Media flows admitted through this connection's ports, kept to be killed at TEARDOWN. */
#define RTSP_FLOWS_MAX (RTSP_PAIRS_MAX * 4)
/* Output produced from one received chunk, per target. */
#define RTSP_OUT_MAX (512u * 1024u)
#define RTSP_ADDRSTRLEN (INET6_ADDRSTRLEN + 16)
/* The RTSP session timeout when the server's Session header names none (RFC 2326 12.37). */
#define RTSP_SESSION_TIMEOUT_DEFAULT 60u
/* The longest session timeout the filter keeps ports for without a request from the client,
   whatever the server announces: a server's `timeout=86400` would otherwise keep a client's
   ports a day after it went silent. */
#define RTSP_SESSION_TIMEOUT_MAX 600u
/* Slack on top of the session timeout before the ports go (as gst-rtsp-server's sessions'
   extra-timeout): a keep-alive sent at the last moment still crosses the network in time. */
#define RTSP_SESSION_SLACK_MS 5000u
/* Session ids as shown in the log line, cut beyond. */
#define RTSP_SESSION_SHOWN 64

typedef enum rtsp_kind {
    RTSP_TRANSPARENT, /* fwx_Connect_Tcp: a client behind the gateway */
    RTSP_PUBLISHED,   /* fwx_AcceptedConnection: a published server inside */
} rtsp_kind;

/* Two consecutive gateway ports for one UDP stream. */
typedef struct rtsp_pair {
    bool used;
    uint16_t client_port;         /* the client's own RTP port (RTCP is the next) */
    uint16_t to_server;           /* the gateway's pair the server sends to (its lowest) */
    IFWXFirewallAction *act[2];   /* +1: published, RedirectConnections to the client */
    IFWXConnection *bound[2];     /* +1: transparent, BindForClient for the client */
    IFWXConnection *back[2];      /* +1: published, BindForClient for the server's RTCP */
    IFWXFirewallAction *rtcp;     /* +1: transparent, AllowFutureConnect to the server's RTCP */
} rtsp_pair;

/* A SETUP the server has yet to answer. */
typedef struct rtsp_pending {
    bool used;
    uint32_t cseq;
    size_t len;                      /* of the rewritten Transport value */
    char transport[RTSP_TRANSPORT_TEXT_MAX];
    int pair[RTSP_TRANSPORTS_MAX];   /* per offered spec: its pair, -1: none (TCP) */
    size_t n_specs;
} rtsp_pending;

typedef struct rtsp_ctl rtsp_ctl;

typedef struct rtsp_dir {
    IFWXIOCompletion iface;
    rtsp_ctl *c;
    int d; /* 0 reads the client (internal socket), 1 the server (external) */
} rtsp_dir;

/* The session timer's completion (IFWXTimer). */
typedef struct rtsp_tick {
    IFWXIOCompletion iface;
    rtsp_ctl *c;
} rtsp_tick;

struct rtsp_ctl {
    PLUGIN_DF_MEMBERS           /* the data filter's plumbing (plugins/common/plugin_df.h) */
    rtsp_dir dirs[2];
    rtsp_kind kind;
    IFWXSessionFilter *sf;      /* +1: the session filter hearing fwx_EstablishedConnection */
    plugin_relay relay;         /* the two directions (plugins/common/plugin_relay.h) */
    rtsp_stream in[2];
    bool drop_body[2];          /* the body of a head that was replaced is dropped */
    rtsp_pair pairs[RTSP_PAIRS_MAX];
    rtsp_pending setups[RTSP_PENDING_MAX];
    IFWXConnection *flows[RTSP_FLOWS_MAX]; /* +1 each */
    /* The RTSP session timeout: the ports go when the client has sent nothing for this long. */
    IFWXTimer *timer;           /* +1, NULL: the host has none (older than 1.1) */
    rtsp_tick tick;
    bool timer_armed;
    uint32_t session_timeout_s; /* the last SETUP reply's, 0: no UDP stream set up */
    uint64_t last_client_ms;    /* when the client last sent anything on this connection */
    char session_id[RTSP_SESSION_SHOWN + 1];
    struct sockaddr_storage client; /* the session's client */
    struct sockaddr_storage server; /* the server: the control connection's far side */
    bool has_server;
    char client_text[RTSP_ADDRSTRLEN];
};

static void ctl_destroy(rtsp_ctl *c);
/* ctl_impl, ctl_QueryInterface, ctl_AddRef, ctl_Release, ctl_base_init, ctl_take_sockets,
   ctl_drop_refs (plugins/common/plugin_df.h). */
PLUGIN_DATA_FILTER(ctl, rtsp_ctl, ctl_destroy)

/* ---- addresses and log ------------------------------------------------------------------ */

static void ip_text(const struct sockaddr *sa, char out[RTSP_ADDRSTRLEN])
{
    out[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, RTSP_ADDRSTRLEN);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, RTSP_ADDRSTRLEN);
    if (out[0] == '\0')
        snprintf(out, RTSP_ADDRSTRLEN, "?");
}

/* `rtsp: session <client>: ...` through the host's log, with the session's and the control
   connection's fields. */
PLUGIN_DF_LOG(rtsp_log, rtsp_ctl, "session", client_text)

/* The first line of a head, with C escapes, cut at 120 bytes: hostile bytes never reach a log raw. */
static void shown_line(const char *p, size_t len, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < len && i < 120 && p[i] != '\r' && k + 8 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            out[k++] = (char)ch;
        else
            k += (size_t)snprintf(out + k, cap - k, "\\x%02x", ch);
    }
    out[k] = '\0';
}

/* ---- ports -------------------------------------------------------------------------------- */

static void kill_conn(IFWXConnection **pc)
{
    if (*pc != NULL) {
        (void)IFWXConnection_Kill(*pc); /* a bound port, or the flow it became */
        IFWXConnection_Release(*pc);
        *pc = NULL;
    }
}

static void pair_free(rtsp_pair *p)
{
    for (int i = 0; i < 2; i++) {
        if (p->act[i] != NULL) {
            (void)IFWXFirewallAction_Cancel(p->act[i]);
            IFWXFirewallAction_Release(p->act[i]);
            p->act[i] = NULL;
        }
        kill_conn(&p->bound[i]);
        kill_conn(&p->back[i]);
    }
    if (p->rtcp != NULL) {
        (void)IFWXFirewallAction_Cancel(p->rtcp);
        IFWXFirewallAction_Release(p->rtcp);
        p->rtcp = NULL;
    }
    p->used = false;
}

/* Withdraws every port of this control connection and kills the media flows they admitted. */
static void ctl_withdraw_all(rtsp_ctl *c)
{
    for (size_t i = 0; i < RTSP_PAIRS_MAX; i++)
        if (c->pairs[i].used)
            pair_free(&c->pairs[i]);
    for (size_t i = 0; i < RTSP_PENDING_MAX; i++)
        c->setups[i].used = false;
    for (size_t i = 0; i < RTSP_FLOWS_MAX; i++)
        kill_conn(&c->flows[i]);
    if (c->timer != NULL)
        (void)IFWXTimer_Stop(c->timer);
    c->timer_armed = false;
    c->session_timeout_s = 0;
}

/* ---- the RTSP session timeout ------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool ctl_has_ports(const rtsp_ctl *c)
{
    for (size_t i = 0; i < RTSP_PAIRS_MAX; i++)
        if (c->pairs[i].used)
            return true;
    return false;
}

/* (Re)arms the session timer to fire when the client will have been silent for the session
   timeout, unless it is armed already (the expiry looks at the client's last activity). */
static void session_arm(rtsp_ctl *c)
{
    if (c->timer == NULL || c->timer_armed || c->session_timeout_s == 0)
        return;
    uint64_t limit = (uint64_t)c->session_timeout_s * 1000u + RTSP_SESSION_SLACK_MS;
    uint64_t idle = now_ms() - c->last_client_ms;
    uint32_t ms = idle >= limit ? 0 : (uint32_t)(limit - idle);
    c->timer_armed = IFWXTimer_Start(c->timer, ms, &c->tick.iface, 0) == FWX_S_OK;
}

/* A SETUP reply named the session: its timeout (or RFC 2326's default, capped) now applies to
   every port of this connection. */
static void session_note(rtsp_ctl *c, const rtsp_msg *m)
{
    uint32_t timeout = 0;
    size_t id_len = 0;
    if (m->session >= 0) {
        const rtsp_header *h = &m->headers[m->session];
        if (rtsp_parse_session(h->value, h->value_len, &id_len, &timeout)) {
            size_t k = id_len < RTSP_SESSION_SHOWN ? id_len : RTSP_SESSION_SHOWN;
            memcpy(c->session_id, h->value, k);
            c->session_id[k] = '\0';
        }
    }
    if (timeout == 0)
        timeout = RTSP_SESSION_TIMEOUT_DEFAULT;
    if (timeout > RTSP_SESSION_TIMEOUT_MAX)
        timeout = RTSP_SESSION_TIMEOUT_MAX;
    if (c->timer == NULL)
        return; /* logged once when the connection began */
    if (timeout != c->session_timeout_s) {
        c->session_timeout_s = timeout;
        (void)IFWXTimer_Stop(c->timer); /* a shorter timeout takes effect now */
        c->timer_armed = false;
    }
    session_arm(c);
}

static fwx_result tick_CompleteAsyncIO(IFWXIOCompletion *This, int32_t ok, int32_t err, IFWXIOBuffer *buf,
                                       uintptr_t ud, const struct sockaddr *a, uint32_t al)
{
    rtsp_ctl *c = FWX_CONTAINER_OF(This, rtsp_tick, iface)->c;
    (void)ok, (void)err, (void)buf, (void)ud, (void)a, (void)al;
    c->timer_armed = false;
    if (c->detached || c->relay.closed || c->session_timeout_s == 0 || !ctl_has_ports(c))
        return FWX_S_OK;
    uint64_t idle = now_ms() - c->last_client_ms;
    if (idle < (uint64_t)c->session_timeout_s * 1000u + RTSP_SESSION_SLACK_MS) {
        session_arm(c); /* the client spoke since: wait for the rest */
        return FWX_S_OK;
    }
    const fwx_log_field f[] = {
        {.key = "rtsp_session", .type = FWX_LOG_STRING, .value = {.string = c->session_id[0] ? c->session_id : "-"}},
        {.key = "timeout_s", .type = FWX_LOG_UINT, .value = {.u = c->session_timeout_s}},
    };
    rtsp_log(c, FWX_LOG_INFO, f, 2,
             "RTSP session %s timed out: nothing from the client for %u s (+%u s slack); every port of the "
             "control connection withdrawn",
             c->session_id[0] ? c->session_id : "-", c->session_timeout_s, RTSP_SESSION_SLACK_MS / 1000u);
    ctl_withdraw_all(c);
    return FWX_S_OK;
}

/* tick_AddRef, tick_Release, tick_QueryInterface and tick_vtbl: the timer's completion lives
   inside the data filter and shares its count (an armed timer keeps the data filter). */
FWX_PLUGIN_IO_COMPLETION(tick, rtsp_tick, c, ctl, tick_CompleteAsyncIO)

/* A media flow admitted through one of our ports (fwx_EstablishedConnection). */
static void ctl_adopt_flow(rtsp_ctl *c, IFWXConnection *flow)
{
    if (flow == NULL)
        return;
    if (c->relay.closed) {
        (void)IFWXConnection_Kill(flow); /* its control connection is gone already */
        return;
    }
    for (size_t i = 0; i < RTSP_FLOWS_MAX; i++) {
        uint32_t flags = 0;
        if (c->flows[i] == flow)
            return;
        /* A flow that ended by itself (idle) makes room: a long session SETs UP again and again. */
        if (c->flows[i] != NULL && IFWXConnection_GetConnectionFlags(c->flows[i], &flags) == FWX_S_OK &&
            (flags & FWX_CONNECTION_TERMINATED)) {
            IFWXConnection_Release(c->flows[i]);
            c->flows[i] = NULL;
        }
        if (c->flows[i] == NULL) {
            IFWXConnection_AddRef(flow);
            c->flows[i] = flow;
            return;
        }
    }
    /* More live flows than our ports can admit cannot happen (RTSP_PAIRS_MAX pairs, two
       directions each); were it to, the flow still ends at its idle limit. */
    rtsp_log(c, FWX_LOG_WARN, NULL, 0, "more media flows than ports, one left to its idle limit");
}

/* The gateway address on the client's side of the control connection (port 0). */
static bool ctl_client_side(rtsp_ctl *c, struct sockaddr_storage *out)
{
    uint32_t len = sizeof *out;
    memset(out, 0, sizeof *out);
    if (IFWXConnection_GetExternalSocketName(c->conn, RTSP_SA(*out), &len) != FWX_S_OK ||
        (out->ss_family != AF_INET && out->ss_family != AF_INET6))
        return false;
    plugin_sa_set_port(RTSP_SA(*out), 0);
    return true;
}

/* Sets up the pair for a client's UDP spec: the gateway's ports the server will send to,
   forwarding to the client's @p port pair. Returns the pair's index, or -1 with *hr. */
static int pair_open(rtsp_ctl *c, uint16_t port, fwx_result *hr)
{
    int idx = -1;
    for (int i = 0; i < RTSP_PAIRS_MAX; i++)
        if (!c->pairs[i].used) {
            idx = i;
            break;
        }
    if (idx < 0) {
        *hr = FWX_E_QUOTA_EXCEEDED;
        return -1;
    }
    rtsp_pair *p = &c->pairs[idx];
    memset(p, 0, sizeof *p);
    struct sockaddr_storage to[2];
    const struct sockaddr *ta[2];
    for (int i = 0; i < 2; i++) {
        to[i] = c->client;
        plugin_sa_set_port(RTSP_SA(to[i]), (uint16_t)(port + i));
        ta[i] = RTSP_CSA(to[i]);
    }
    struct sockaddr_storage gw;
    memset(&gw, 0, sizeof gw);
    if (c->kind == RTSP_PUBLISHED) {
        /* The published server sends to a redirect pair on its side of the gateway, which
           forwards to the remote client (as the FTP filter's active mode does). */
        uint32_t glen = sizeof gw;
        *hr = IFWXSession_RedirectConnections(c->session, ta, plugin_sa_len(ta[0]), 2, RTSP_SA(gw), &glen, NULL, 0,
                                              FWX_PROTOCOL_UDP, FWX_FLAG_TIMEOUT, &c->protocol, c->sf,
                                              (IUnknown *)(void *)&c->iface, p->act);
    } else {
        /* A client behind the gateway: two consecutive ports bound for it on the server's
           side, the lowest even (BindForClient with N = 2). */
        if (!ctl_client_side(c, &gw))
            gw.ss_family = c->client.ss_family; /* the unspecified address: the core picks */
        *hr = IFWXSession_BindForClient(c->session, ta, plugin_sa_len(ta[0]), RTSP_SA(gw), sizeof gw, FWX_PROTOCOL_UDP, 2,
                                        FWX_FLAG_TIMEOUT, 1, &c->protocol, c->sf, (IUnknown *)(void *)&c->iface,
                                        NULL, p->bound);
    }
    if (FWX_FAILED(*hr)) {
        pair_free(p);
        return -1;
    }
    p->used = true;
    p->client_port = port;
    p->to_server = plugin_sa_port(RTSP_CSA(gw));
    if (p->to_server == 0 || p->to_server % 2 != 0) {
        pair_free(p); /* the core broke T7: never hand the server an odd pair */
        *hr = FWX_E_NO_PORTS;
        return -1;
    }
    return idx;
}

/* Published: the client's RTCP to the server's @p server_port pair goes through two ports on
   the client's side of the gateway; writes the lowest into *gw_port. */
static fwx_result pair_open_back(rtsp_ctl *c, rtsp_pair *p, uint16_t server_port, uint16_t *gw_port)
{
    struct sockaddr_storage to[2], gw;
    const struct sockaddr *ta[2];
    for (int i = 0; i < 2; i++) {
        to[i] = c->server;
        plugin_sa_set_port(RTSP_SA(to[i]), (uint16_t)(server_port + i));
        ta[i] = RTSP_CSA(to[i]);
    }
    if (!ctl_client_side(c, &gw))
        return FWX_E_ADDRNOTAVAIL;
    uint32_t cflags = 0;
    (void)IFWXConnection_GetConnectionFlags(c->conn, &cflags);
    uint32_t flags = FWX_FLAG_TIMEOUT |
                     ((cflags & FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION) ? FWX_FLAG_PROXY_MODE : 0);
    fwx_result hr = IFWXSession_BindForClient(c->session, ta, plugin_sa_len(ta[0]), RTSP_SA(gw), sizeof gw,
                                              FWX_PROTOCOL_UDP, 2, flags, 1, &c->protocol, c->sf,
                                              (IUnknown *)(void *)&c->iface, NULL, p->back);
    if (FWX_FAILED(hr))
        return hr;
    *gw_port = plugin_sa_port(RTSP_CSA(gw));
    return FWX_S_OK;
}

/* Transparent: the client's RTCP (receiver reports) from its RTCP port to the server's RTCP
   port, the one the SETUP reply's @p server_port pair names: a UDP permission toward the
   control connection's server only (AllowFutureConnect's default scope), for this client. */
static fwx_result pair_open_rtcp(rtsp_ctl *c, rtsp_pair *p, uint16_t server_port)
{
    struct sockaddr_storage to = c->server;
    plugin_sa_set_port(RTSP_SA(to), (uint16_t)(server_port + 1u));
    return IFWXSession_AllowFutureConnect(c->session, RTSP_CSA(to), plugin_sa_len(RTSP_CSA(to)), NULL, 0,
                                          FWX_PROTOCOL_UDP, FWX_FLAG_TIMEOUT, &c->protocol, c->sf,
                                          (IUnknown *)(void *)&c->iface, c->conn, &p->rtcp);
}

/* ---- output ------------------------------------------------------------------------------- */

static void out_add(rtsp_ctl *c, int target, const void *p, size_t n)
{
    plugin_relay_out_add(&c->relay, target, p, n);
}

/* The gateway answers the client itself with @p code, in place of a request the server never
   sees (@p d = 0) or of a server's reply (@p d = 1, whose body is then dropped), and logs why. */
static void refuse(rtsp_ctl *c, int d, int code, const rtsp_msg *m, const char *head, size_t len, const char *why)
{
    char text[256], shown[120 * 4 + 8];
    size_t n = rtsp_fmt_error(text, sizeof text, code, m);
    shown_line(head, len, shown, sizeof shown);
    const fwx_log_field f[] = {
        {.key = d == 0 ? "request" : "reply", .type = FWX_LOG_STRING, .value = {.string = shown}},
        {.key = "reason", .type = FWX_LOG_STRING, .value = {.string = why}},
    };
    rtsp_log(c, FWX_LOG_WARN, f, 2, "refused %s\"%s\" with %d: %s", d == 0 ? "" : "the server's reply ", shown, code,
             why);
    out_add(c, 0, text, n);
    if (d == 1)
        c->drop_body[1] = m->content_length > 0;
}

/* Writes head @p m with its Transport value replaced to @p target; false (nothing written)
   when the result would be longer than a head may be. */
static bool out_head(rtsp_ctl *c, int target, const char *head, size_t len, const rtsp_msg *m, const char *transport,
                     size_t tlen)
{
    char *text = malloc(RTSP_HEAD_MAX + 1);
    size_t n = text != NULL ? rtsp_fmt_head(text, RTSP_HEAD_MAX + 1, head, len, m, transport, tlen) : 0;
    if (n > 0)
        out_add(c, target, text, n);
    free(text);
    return n > 0;
}

static void pending_done(rtsp_ctl *c, rtsp_pending *pd, int keep);
static rtsp_pending *pending_find(rtsp_ctl *c, uint32_t cseq);

/* ---- client to server --------------------------------------------------------------------- */

/* Returns whether the request went on to the server (false: the gateway answered it). */
static bool on_setup(rtsp_ctl *c, const char *head, size_t len, const rtsp_msg *m)
{
    rtsp_transport specs[RTSP_TRANSPORTS_MAX];
    size_t n_specs = 0;
    uint32_t cseq;
    if (m->transport < 0) {
        refuse(c, 0, 461, m, head, len, "SETUP without Transport");
        return false;
    }
    if (!rtsp_msg_cseq(m, &cseq)) {
        refuse(c, 0, 400, m, head, len, "SETUP without CSeq");
        return false;
    }
    const rtsp_header *th = &m->headers[m->transport];
    rtsp_status st = rtsp_parse_transport(th->value, th->value_len, specs, &n_specs);
    for (size_t i = 0; st == RTSP_P_OK && i < n_specs; i++)
        st = rtsp_check_request_spec(&specs[i], RTSP_CSA(c->client));
    if (st != RTSP_P_OK) {
        refuse(c, 0, rtsp_status_code(st), m, head, len, rtsp_status_text(st));
        return false;
    }
    if (pending_find(c, cseq) != NULL) {
        /* Its reply could not be told from the earlier one's. */
        refuse(c, 0, 400, m, head, len, "SETUP with the CSeq of a SETUP not yet answered");
        return false;
    }
    rtsp_pending *pd = NULL;
    for (size_t i = 0; i < RTSP_PENDING_MAX; i++)
        if (!c->setups[i].used) {
            pd = &c->setups[i];
            break;
        }
    if (pd == NULL) {
        refuse(c, 0, 503, m, head, len, "too many SETUPs without a reply");
        return false;
    }
    memset(pd, 0, sizeof *pd);
    pd->used = true;
    pd->cseq = cseq;
    pd->n_specs = n_specs;
    for (size_t i = 0; i < RTSP_TRANSPORTS_MAX; i++)
        pd->pair[i] = -1;
    char one[RTSP_TRANSPORT_TEXT_MAX];
    const char *why = NULL;
    int code = 461;
    for (size_t i = 0; i < n_specs && why == NULL; i++) {
        rtsp_rewrite rw = {0};
        if (!specs[i].tcp) {
            fwx_result hr;
            pd->pair[i] = pair_open(c, specs[i].client_port[0], &hr);
            if (pd->pair[i] < 0) {
                why = plugin_result_text(hr);
                code = hr == FWX_E_QUOTA_EXCEEDED || hr == FWX_E_NO_PORTS ? 453 : 503;
                break;
            }
            rw.client_port = c->pairs[pd->pair[i]].to_server;
            rw.drop_destination = true; /* the server sends to its peer: the gateway */
        }
        size_t n = rtsp_fmt_transport(one, sizeof one, &specs[i], &rw);
        if (n == 0 || pd->len + n + 1 >= sizeof pd->transport) {
            why = "the rewritten Transport is too long";
            break;
        }
        if (i > 0)
            pd->transport[pd->len++] = ',';
        memcpy(pd->transport + pd->len, one, n);
        pd->len += n;
    }
    if (why != NULL) {
        pending_done(c, pd, -1);
        refuse(c, 0, code, m, head, len, why);
        return false;
    }
    if (!out_head(c, 1, head, len, m, pd->transport, pd->len)) {
        pending_done(c, pd, -1);
        refuse(c, 0, 400, m, head, len, "the rewritten request would be longer than a head may be");
        return false;
    }
    for (size_t i = 0; i < n_specs; i++)
        if (pd->pair[i] >= 0) {
            const rtsp_pair *p = &c->pairs[pd->pair[i]];
            rtsp_log(c, FWX_LOG_INFO, NULL, 0, "SETUP (CSeq %u): client_port %u-%u now the gateway's %u-%u (udp)",
                     (unsigned)cseq, p->client_port, p->client_port + 1u, p->to_server, p->to_server + 1u);
        }
    return true;
}

static void on_client_head(rtsp_ctl *c, const char *head, size_t len, const rtsp_msg *m)
{
    if (!m->response && rtsp_is_method(m, "SETUP")) {
        /* A refused request's body (if any) never reaches the server either. */
        c->drop_body[0] = !on_setup(c, head, len, m) && m->content_length > 0;
        return;
    }
    if (!m->response && rtsp_is_method(m, "TEARDOWN")) {
        /* Every port of this control connection goes now, before the server answers: a
           client that tore a stream down may not keep its ports by never reading the reply. */
        ctl_withdraw_all(c);
        rtsp_log(c, FWX_LOG_INFO, NULL, 0, "TEARDOWN: every port of the control connection withdrawn");
    }
    out_add(c, 1, head, len);
}

/* ---- server to client --------------------------------------------------------------------- */

static rtsp_pending *pending_find(rtsp_ctl *c, uint32_t cseq)
{
    for (size_t i = 0; i < RTSP_PENDING_MAX; i++)
        if (c->setups[i].used && c->setups[i].cseq == cseq)
            return &c->setups[i];
    return NULL;
}

/* The pairs of a pending SETUP that the reply did not choose go; the chosen one stays. */
static void pending_done(rtsp_ctl *c, rtsp_pending *pd, int keep)
{
    for (size_t i = 0; i < pd->n_specs; i++)
        if (pd->pair[i] >= 0 && pd->pair[i] != keep)
            pair_free(&c->pairs[pd->pair[i]]);
    pd->used = false;
}

static void on_setup_reply(rtsp_ctl *c, const char *head, size_t len, const rtsp_msg *m, rtsp_pending *pd)
{
    rtsp_transport req[RTSP_TRANSPORTS_MAX], rep[RTSP_TRANSPORTS_MAX];
    size_t n_req = 0, n_rep = 0, which = 0;
    if (m->code < 200 || m->code > 299 || m->transport < 0) {
        pending_done(c, pd, -1); /* refused (or nothing chosen): its ports go */
        out_add(c, 0, head, len);
        return;
    }
    const rtsp_header *th = &m->headers[m->transport];
    rtsp_status st = rtsp_parse_transport(pd->transport, pd->len, req, &n_req);
    if (st == RTSP_P_OK)
        st = rtsp_parse_transport(th->value, th->value_len, rep, &n_rep);
    if (st == RTSP_P_OK && n_rep != 1)
        st = RTSP_P_REPLY_MISMATCH; /* a server chooses one */
    if (st == RTSP_P_OK)
        st = rtsp_check_reply_spec(&rep[0], req, n_req, c->has_server ? RTSP_CSA(c->server) : RTSP_CSA(c->client),
                                   &which);
    if (st == RTSP_P_OK && !c->has_server && rep[0].source >= 0)
        st = RTSP_P_SOURCE; /* the server is not known: no source= can be believed */
    if (st != RTSP_P_OK) {
        pending_done(c, pd, -1);
        refuse(c, 1, rtsp_status_code(st), m, head, len, rtsp_status_text(st));
        return;
    }
    int keep = pd->pair[which];
    if (rep[0].tcp || keep < 0) {
        pending_done(c, pd, -1);
        out_add(c, 0, head, len); /* interleaved: untouched */
        return;
    }
    rtsp_pair *p = &c->pairs[keep];
    rtsp_rewrite rw = {.client_port = p->client_port, .drop_destination = true};
    char gw_text[RTSP_ADDRSTRLEN];
    if (c->kind == RTSP_TRANSPARENT && rep[0].n_server_port == 2 && c->has_server) {
        /* The client's RTCP receiver reports, from its RTCP port, to the server's RTCP port. */
        fwx_result hr = pair_open_rtcp(c, p, rep[0].server_port[0]);
        if (hr == FWX_E_DUP_NAME) {
            /* Another stream of this session (a server that gives every client the same
               server_port) holds the same permission: that one admits these reports too. */
            rtsp_log(c, FWX_LOG_INFO, NULL, 0, "SETUP reply: RTCP to the server's %u already permitted for this client",
                     rep[0].server_port[0] + 1u);
        } else if (FWX_FAILED(hr)) {
            pending_done(c, pd, -1);
            refuse(c, 1, 503, m, head, len, plugin_result_text(hr));
            return;
        } else {
            rtsp_log(c, FWX_LOG_INFO, NULL, 0, "SETUP reply: RTCP from the client's port %u to the server's %u (udp)",
                     p->client_port + 1u, rep[0].server_port[0] + 1u);
        }
    }
    if (c->kind == RTSP_PUBLISHED) {
        /* The client sees the gateway as the server: its RTCP goes to a pair on its side. */
        struct sockaddr_storage side;
        if (rep[0].n_server_port == 2) {
            uint16_t back = 0;
            fwx_result hr = pair_open_back(c, p, rep[0].server_port[0], &back);
            if (FWX_FAILED(hr)) {
                pending_done(c, pd, -1);
                refuse(c, 1, 503, m, head, len, plugin_result_text(hr));
                return;
            }
            rw.server_port = back;
            rtsp_log(c, FWX_LOG_INFO, NULL, 0, "SETUP reply: server_port %u-%u now the gateway's %u-%u (udp)",
                     rep[0].server_port[0], rep[0].server_port[0] + 1u, back, back + 1u);
        }
        if (rep[0].source >= 0) {
            if (ctl_client_side(c, &side)) {
                ip_text(RTSP_CSA(side), gw_text);
                rw.source = gw_text;
            } else {
                rw.drop_source = true;
            }
        }
    }
    char text[RTSP_TRANSPORT_TEXT_MAX];
    size_t n = rtsp_fmt_transport(text, sizeof text, &rep[0], &rw);
    pending_done(c, pd, keep);
    if (n == 0) {
        pair_free(p);
        refuse(c, 1, 503, m, head, len, "the rewritten Transport is too long");
        return;
    }
    if (!out_head(c, 0, head, len, m, text, n)) {
        pair_free(p);
        refuse(c, 1, 503, m, head, len, "the rewritten reply would be longer than a head may be");
        return;
    }
    session_note(c, m);
}

static void on_server_head(rtsp_ctl *c, const char *head, size_t len, const rtsp_msg *m)
{
    uint32_t cseq;
    rtsp_pending *pd;
    if (m->response && rtsp_msg_cseq(m, &cseq) && (pd = pending_find(c, cseq)) != NULL) {
        on_setup_reply(c, head, len, m, pd);
        return;
    }
    out_add(c, 0, head, len);
}

/* ---- pumping ------------------------------------------------------------------------------ */

/* Runs direction d's chunk through its framing; heads are acted on, the rest passes. */
static void ctl_feed(rtsp_ctl *c, int d, const uint8_t *p, size_t n)
{
    rtsp_stream *s = &c->in[d];
    if (d == 0 && n > 0)
        c->last_client_ms = now_ms(); /* any request or frame keeps the RTSP session */
    while (n > 0 && !c->relay.closed) {
        rtsp_event ev;
        const uint8_t *pass;
        size_t pass_len;
        bool in_body = s->state == RTSP_S_BODY;
        size_t took = rtsp_stream_feed(s, p, n, &ev, &pass, &pass_len);
        p += took;
        n -= took;
        switch (ev) {
        case RTSP_EV_MORE:
            break;
        case RTSP_EV_PASS:
            if (!(in_body && c->drop_body[d]))
                out_add(c, 1 - d, pass, pass_len);
            if (s->state != RTSP_S_BODY)
                c->drop_body[d] = false;
            break;
        case RTSP_EV_HEAD:
            c->drop_body[d] = false;
            if (d == 0)
                on_client_head(c, s->head, s->head_len, &s->msg);
            else
                on_server_head(c, s->head, s->head_len, &s->msg);
            break;
        case RTSP_EV_ERROR: {
            /* The stream cannot be trusted past this point: answer and close. */
            const fwx_log_field f[] = {
                {.key = "reason", .type = FWX_LOG_STRING, .value = {.string = rtsp_status_text(s->error)}}};
            rtsp_log(c, FWX_LOG_WARN, f, 1, "%s stream refused, closing: %s", d == 0 ? "client" : "server",
                     rtsp_status_text(s->error));
            char text[128];
            size_t k = rtsp_fmt_error(text, sizeof text, d == 0 ? 400 : 503, NULL);
            out_add(c, 0, text, k); /* then rtsp_finished closes */
            return;
        }
        }
        if (took == 0 && ev != RTSP_EV_PASS)
            break;
    }
}

/* plugin_relay_ops: what the relay reads, when it closes, when it is done. */
static void rtsp_data(void *arg, int d, const uint8_t *p, size_t n)
{
    ctl_feed(arg, d, p, n);
}

static void rtsp_closing(void *arg, const char *why)
{
    rtsp_ctl *c = arg;
    if (why != NULL)
        rtsp_log(c, FWX_LOG_WARN, NULL, 0, "control connection closed: %s", why);
    /* The control connection is over: every port it opened goes with it. */
    ctl_withdraw_all(c);
}

/* After a framing error the gateway's answer goes out, then the connection closes. */
static bool rtsp_finished(void *arg)
{
    rtsp_ctl *c = arg;
    return c->in[0].state == RTSP_S_ERROR || c->in[1].state == RTSP_S_ERROR;
}

static const plugin_relay_ops relay_ops = {rtsp_data, rtsp_closing, rtsp_finished};

/* dir_CompleteAsyncIO (to the relay), dir_QueryInterface, dir_AddRef, dir_Release and
   dir_vtbl: the completions live inside the data filter and share its count. */
PLUGIN_RELAY_COMPLETION(dir, rtsp_dir, c, ctl)

/* ---- the data filter's own methods -------------------------------------------------------- */

static void ctl_release_all(rtsp_ctl *c)
{
    ctl_withdraw_all(c);
    plugin_relay_free(&c->relay);
    PLUGIN_DROP(c->sf, IFWXSessionFilter_Release);
    PLUGIN_DROP(c->timer, IFWXTimer_Release); /* stopped by ctl_withdraw_all */
    ctl_drop_refs(c);
}

/* SetSockets, once the relay is set up: the client and the server, whom the ports are for. */
static fwx_result ctl_start(rtsp_ctl *c)
{
    uint32_t len = sizeof c->client;
    if (IFWXSession_GetClientAddress(c->session, RTSP_SA(c->client), &len) != FWX_S_OK ||
        (c->client.ss_family != AF_INET && c->client.ss_family != AF_INET6))
        return FWX_E_INVALIDARG;
    plugin_sa_set_port(RTSP_SA(c->client), 0);
    ip_text(RTSP_CSA(c->client), c->client_text);
    c->last_client_ms = now_ms();
    if (c->timer == NULL)
        rtsp_log(c, FWX_LOG_WARN, NULL, 0,
                 "the host has no timers (IFWXTimer): RTSP session timeouts are left to the ports' idle limit");
    len = sizeof c->server;
    memset(&c->server, 0, sizeof c->server);
    if (c->kind == RTSP_PUBLISHED) {
        /* The published server, as the core names it (IFWXConnection2). */
        IFWXConnection2 *c2 = NULL;
        if (IFWXConnection_QueryInterface(c->conn, &IID_IFWXConnection2, (void **)&c2) == FWX_S_OK && c2 != NULL) {
            c->has_server = IFWXConnection2_GetInternalPeerName(c2, RTSP_SA(c->server), &len) == FWX_S_OK;
            IFWXConnection2_Release(c2);
        }
    } else {
        c->has_server = IFWXConnection_GetExternalPeerName(c->conn, RTSP_SA(c->server), &len) == FWX_S_OK;
    }
    c->has_server = c->has_server && (c->server.ss_family == AF_INET || c->server.ss_family == AF_INET6);
    if (c->kind == RTSP_PUBLISHED && !c->has_server) {
        /* Fail closed: the server's RTCP ports cannot be scoped without its address. */
        rtsp_log(c, FWX_LOG_ERROR, NULL, 0, "the core names no published server for this connection; refused");
        plugin_relay_close(&c->relay, NULL);
        return FWX_E_FAIL;
    }
    return FWX_S_OK;
}

/* ctl_destroy, ctl_SetSockets (an RTSP gateway relays; it never emulates the server),
   ctl_Detach (withdraws every port, through rtsp_closing) and ctl_vtbl
   (plugins/common/plugin_df.h). */
PLUGIN_RELAY_DATA_FILTER(ctl, rtsp_ctl, relay_ops, RTSP_OUT_MAX, ctl_start, ctl_release_all)

static rtsp_ctl *ctl_new(rtsp_kind kind, IFWXFirewall *fw, IFWXSession *session, IFWXSessionFilter *sf,
                         const fwx_guid *protocol)
{
    rtsp_ctl *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    ctl_base_init(c, &ctl_vtbl, fw, session, protocol);
    for (int d = 0; d < 2; d++) {
        c->dirs[d].iface.lpVtbl = &dir_vtbl;
        c->dirs[d].c = c;
        c->dirs[d].d = d;
        rtsp_stream_init(&c->in[d]);
    }
    c->kind = kind;
    IFWXSessionFilter_AddRef(sf);
    c->sf = sf;
    c->tick.iface.lpVtbl = &tick_vtbl;
    c->tick.c = c;
    if (FWX_FAILED(IFWXFirewall_QueryInterface(fw, &IID_IFWXTimer, (void **)&c->timer)))
        c->timer = NULL;
    return c;
}

/* ---- the session filter ------------------------------------------------------------------- */

/* A media flow through one of our ports (fwx_EstablishedConnection): the context is the control
   connection's data filter that asked (T15: it comes back only to us), kept so TEARDOWN can
   kill it. Nothing else but primary connections concerns this filter. */
static fwx_result sf_other(struct plugin_sf *sf, const FwxFirewallEvent *ev)
{
    (void)sf;
    if (ev->EventType == fwx_EstablishedConnection) {
        const FwxEstablishedConnectionEvent *e = &ev->Parameters.EstablishedConnection;
        if (e->UserContext != NULL)
            ctl_adopt_flow(ctl_impl((IFWXDataFilter *)(void *)e->UserContext), e->piConnection);
    }
    return FWX_S_OK;
}

/* plugin_sf, and sf_impl, sf_QueryInterface, sf_AddRef, sf_Release, sf_Detach (drops the session
   and the firewall), the constructor sf_new and sf_FirewallEventHandler, which hands sf_attach
   each primary connection and sf_other the rest (plugins/common/plugin_df.h). */
PLUGIN_SESSION_FILTER(sf_attach, sf_other)

static fwx_result sf_attach(plugin_sf *sf, const FwxFirewallEvent *ev, IFWXConnection *conn, const fwx_guid *protocol)
{
    /* fwx_AcceptedConnection: a published server's; fwx_Connect_Tcp: a client's behind the gateway. */
    rtsp_kind kind = ev->EventType == fwx_AcceptedConnection ? RTSP_PUBLISHED : RTSP_TRANSPARENT;
    rtsp_ctl *c = ctl_new(kind, sf->fw, sf->session, &sf->iface, protocol);
    if (c == NULL)
        return FWX_E_OUTOFMEMORY;
    /* Fail closed: an RTSP control connection this filter cannot watch is refused. */
    return plugin_df_attach(conn, &c->iface, c->log, sf->session, "an RTSP control connection");
}

/* ---- the filter --------------------------------------------------------------------------- */

FWX_PLUGIN_SESSION_FILTERS(rtsp_create_filter, RTSP_HOOKS, sf_new)

/* The one exported symbol; the filter GUID is {3b7d9e21-6c48-4f1a-a2d5-8e0c47b1f923}. */
PLUGIN_SHIPPED_ENTRY(FWX_GUID_INIT(0x3b, 0x7d, 0x9e, 0x21, 0x6c, 0x48, 0x4f, 0x1a,
                                   0xa2, 0xd5, 0x8e, 0x0c, 0x47, 0xb1, 0xf9, 0x23),
                     "rtsp", "1.0",
                     "RTSP gateway: SETUP Transport checked, RTP/RTCP port pairs bound and rewritten",
                     RTSP_HOOKS, rtsp_create_filter);
