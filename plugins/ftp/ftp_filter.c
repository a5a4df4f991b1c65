/*
 * ftp - the FTP application-layer gateway filter: the canonical fwx filter.
 *
 * It hooks the primary connections of the protocol the policy binds it to (fwx_Connect_Tcp for
 * clients behind the gateway, transparent or explicit; fwx_AcceptedConnection for published
 * servers), attaches a data filter to each control connection, and relays the control stream
 * line by line in both directions. Commands and replies that negotiate a data connection
 * (PORT, EPRT, PASV/227, EPSV/229) are checked, turned into exactly one secondary-connection
 * grant with the SDK call that fits the session kind, and rewritten where the gateway stands
 * in between. Everything else about them is refused: see README.md for the table and reasons.
 *
 * Structure, for filter authors copying it:
 * - ftp_parse.c is the parser: pure, bounded, no fwx types. Test it alone.
 * - the filter object and the session filter are the conn-logger sample's, plus the choice of
 *   the session kind and AttachDataFilter;
 * - the data filter (ftp_ctl) relays both directions on plugins/common/plugin_relay.c (one
 *   pending Recv per socket, a direction read again only when what it sent for the last chunk
 *   is gone: back-pressure) and its plumbing is plugins/common/plugin_df.h; this file cuts
 *   each chunk into lines and keeps a queue of the commands the server has yet to answer, so
 *   that a reply is matched to its command and the gateway's own error replies keep their
 *   place in a pipelined conversation;
 * - everything a control connection set up is withdrawn in the data filter's Detach.
 *
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

#include "ftp_parse.h"
#include "plugin_df.h"
#include "plugin_relay.h"
#include "plugin_util.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FTP_SA(ss) ((struct sockaddr *)(void *)&(ss))
#define FTP_CSA(ss) ((const struct sockaddr *)(const void *)&(ss))
/* The shared socket-address helpers and result texts (plugins/common/plugin_util.h), under the
   short names the grant code below uses. */
#define sa_port plugin_sa_port
#define sa_set_port plugin_sa_set_port
#define sa_len plugin_sa_len
#define hr_text plugin_result_text

/* Primary connections of the protocols the policy binds to this filter, both sources. No
   fwxAnyProtocol: an FTP parser has no business reading other protocols' streams. */
#define FTP_HOOKS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)

/* Commands sent to the server and not yet answered; beyond this the client is flooding. */
#define FTP_QUEUE_MAX 1024
/* Output produced from one received chunk, per target; a 2 KiB chunk of one-byte bad lines
   makes about 40 KiB of error replies, so this is never reached by a sane peer. */
#define FTP_OUT_MAX (256u * 1024u)
/* Text for addresses in log lines. */
#define FTP_ADDRSTRLEN (INET6_ADDRSTRLEN + 16)

/* ---- log ----------------------------------------------------------------------------------- */

static void ftp_addr_text(const struct sockaddr *sa, bool with_port, char out[FTP_ADDRSTRLEN])
{
    char ip[INET6_ADDRSTRLEN];
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        if (with_port)
            snprintf(out, FTP_ADDRSTRLEN, "%s:%u", ip, ntohs(in->sin_port));
        else
            snprintf(out, FTP_ADDRSTRLEN, "%s", ip);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        if (with_port)
            snprintf(out, FTP_ADDRSTRLEN, "[%s]:%u", ip, ntohs(in6->sin6_port));
        else
            snprintf(out, FTP_ADDRSTRLEN, "%s", ip);
    } else {
        snprintf(out, FTP_ADDRSTRLEN, "?");
    }
}

typedef struct ftp_ctl ftp_ctl;
static void ftp_log(ftp_ctl *c, fwx_log_level level, const fwx_log_field *f, uint32_t n, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* One line through the host: `ftp: session <client>: refused "<line>": <why>`, at warn, with
   the line and the reason as fields too. The line is shown with C escapes and cut at 80 bytes,
   so hostile bytes never reach a terminal or a log raw. */
static void ftp_log_refusal(ftp_ctl *c, const char *what, const char *line, size_t len, const char *why)
{
    char shown[80 * 4 + 8];
    size_t k = 0;
    for (size_t i = 0; i < len && i < 80; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            shown[k++] = (char)ch;
        else
            k += (size_t)snprintf(shown + k, sizeof shown - k, "\\x%02x", ch);
    }
    if (len > 80)
        k += (size_t)snprintf(shown + k, sizeof shown - k, "...");
    shown[k] = '\0';
    const fwx_log_field f[] = {
        {.key = "line", .type = FWX_LOG_STRING, .value = {.string = shown}},
        {.key = "reason", .type = FWX_LOG_STRING, .value = {.string = why}},
    };
    ftp_log(c, FWX_LOG_WARN, f, 2, "%s \"%s\": %s", what, shown, why);
}

/* ---- the gateway's own replies ------------------------------------------------------------- */

enum {
    R_500_SYNTAX,   /* a line the rules refuse or a command that is not one */
    R_500_PORT,     /* PORT naming a forbidden address or port */
    R_500_EPRT,     /* EPRT naming a forbidden address or port */
    R_501_ARGS,     /* PORT/EPRT/PASV/EPSV arguments that break the grammar */
    R_502_VERB,     /* LPRT, LPSV, AUTH ...: verbs the gateway cannot check */
    R_502_EPSV_ALL, /* PORT/EPRT/PASV after EPSV ALL */
    R_502_IPV6,     /* PORT/PASV on an IPv6 session */
    R_522_V4,       /* EPRT/EPSV with the other family, IPv4 session */
    R_522_V6,       /* same, IPv6 session */
    R_200_EPSV_ALL, /* EPSV ALL, answered by the gateway */
    R_425,          /* a 227/229 the gateway refused, or no data port could be set up */
    R_COUNT
};

static const char *const reply_text[R_COUNT] = {
    [R_500_SYNTAX] = "500 Syntax error, command unrecognized.\r\n",
    [R_500_PORT] = "500 Illegal PORT command.\r\n",
    [R_500_EPRT] = "500 Illegal EPRT command.\r\n",
    [R_501_ARGS] = "501 Syntax error in parameters or arguments.\r\n",
    [R_502_VERB] = "502 Command not implemented.\r\n",
    [R_502_EPSV_ALL] = "502 Command not allowed after EPSV ALL.\r\n",
    [R_502_IPV6] = "502 Command not allowed on an IPv6 session, use EPRT or EPSV.\r\n",
    [R_522_V4] = "522 Network protocol not supported, use (1)\r\n",
    [R_522_V6] = "522 Network protocol not supported, use (2)\r\n",
    [R_200_EPSV_ALL] = "200 EPSV ALL command successful.\r\n",
    [R_425] = "425 Can't open data connection.\r\n",
};

/* ---- the data filter: one per control connection ------------------------------------------- */

typedef enum ftp_kind {
    FTP_TRANSPARENT, /* fwx_Connect_Tcp in a NAT session: a client behind the gateway */
    FTP_EXPLICIT,    /* fwx_Connect_Tcp in an explicit session (SOCKS): the client only talks to us */
    FTP_PUBLISHED,   /* fwx_AcceptedConnection: a published server inside */
} ftp_kind;

static const char *const kind_name[] = {"transparent", "explicit", "published"};

/* What a forwarded command waits for, or a gateway reply waiting for its turn. */
typedef enum ftp_q {
    Q_OTHER,          /* any command: its final reply passes unchanged */
    Q_PASV,           /* PASV: 227 expected */
    Q_EPSV,           /* EPSV: 229 expected */
    Q_EPSV_VIA_PASV,  /* published: the client's EPSV went to the server as PASV; 227 -> 229 */
    Q_PASV_VIA_EPSV,  /* IPv6 server: an IPv4 client's PASV went as EPSV; 229 -> 227 */
    Q_PORT,           /* PORT/EPRT: a non-2xx answer withdraws the grant made for it */
    Q_LOCAL,          /* a gateway reply to send when everything before it is answered */
} ftp_q;

typedef struct ftp_qent {
    uint8_t type;
    uint8_t local;   /* Q_LOCAL: the reply */
    uint32_t gen;    /* Q_PORT: the grant generation it made */
} ftp_qent;

/* One per direction: 0 reads the client (internal socket), 1 the server (external). */
typedef struct ftp_dir {
    IFWXIOCompletion iface;
    ftp_ctl *c;
    int d;
} ftp_dir;

struct ftp_ctl {
    PLUGIN_DF_MEMBERS         /* the data filter's plumbing (plugins/common/plugin_df.h) */
    ftp_dir dirs[2];
    ftp_kind kind;
    plugin_relay relay;       /* the two directions (plugins/common/plugin_relay.h) */
    ftp_lines lines[2];
    ftp_replies replies;
    ftp_qent queue[FTP_QUEUE_MAX];
    size_t qhead, qlen;
    bool epsv_all;
    bool logged_in;           /* the server said 230 (or 232): the handshake timeout is over */
    /* The one outstanding data-connection grant (catalog #26 in doc/security.md: newest replaces
       oldest). */
    IFWXFirewallAction *action; /* +1: AllowFutureConnect or RedirectConnections */
    IFWXConnection *bound;      /* +1: BindForClient */
    uint32_t gen;               /* bumped at every grant */
    /* Addresses learnt once in SetSockets. */
    struct sockaddr_storage client; /* the session's client (port 0) */
    uint32_t client_len;
    struct sockaddr_storage server; /* published: the server (IFWXConnection2), if the core says */
    bool has_server;
    char client_text[FTP_ADDRSTRLEN];
};

/* ctl_impl, ctl_QueryInterface, ctl_AddRef, ctl_Release, ctl_base_init, ctl_take_sockets,
   ctl_drop_refs (plugins/common/plugin_df.h). */
static void ctl_destroy(ftp_ctl *c);
PLUGIN_DATA_FILTER(ctl, ftp_ctl, ctl_destroy)

/* `ftp: session <client>: ...` through the host's log, with the session's and the control
   connection's fields. */
PLUGIN_DF_LOG(ftp_log, ftp_ctl, "session", client_text)

static void out_add(ftp_ctl *c, int target, const char *p, size_t n);
static void ctl_close_all(ftp_ctl *c);

/* ---- grants ---------------------------------------------------------------------------------- */

/* Withdraws the outstanding grant: a permission or redirect is cancelled (harmless once used),
   a bound port still listening is killed. A bound port that became the data connection is left
   to finish its transfer: it is no longer a grant. */
static void ctl_withdraw(ftp_ctl *c)
{
    if (c->action != NULL) {
        (void)IFWXFirewallAction_Cancel(c->action);
        IFWXFirewallAction_Release(c->action);
        c->action = NULL;
    }
    if (c->bound != NULL) {
        uint32_t flags = 0;
        if (IFWXConnection_GetConnectionFlags(c->bound, &flags) == FWX_S_OK && (flags & FWX_CONNECTION_LISTENING))
            (void)IFWXConnection_Kill(c->bound);
        IFWXConnection_Release(c->bound);
        c->bound = NULL;
    }
}

static bool sa_unspecified(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
    return true;
}

/* The gateway address on the external side of the control connection, port 0; the
   unspecified address of the client's family when the core does not know it. */
static void ctl_external_name(ftp_ctl *c, struct sockaddr_storage *out)
{
    uint32_t len = sizeof *out;
    memset(out, 0, sizeof *out);
    if (IFWXConnection_GetExternalSocketName(c->conn, FTP_SA(*out), &len) != FWX_S_OK ||
        (out->ss_family != AF_INET && out->ss_family != AF_INET6)) {
        memset(out, 0, sizeof *out);
        out->ss_family = c->client.ss_family;
    }
    sa_set_port(FTP_SA(*out), 0);
}

static bool ctl_peer(ftp_ctl *c, struct sockaddr_storage *out)
{
    uint32_t len = sizeof *out;
    memset(out, 0, sizeof *out);
    return IFWXConnection_GetExternalPeerName(c->conn, FTP_SA(*out), &len) == FWX_S_OK &&
           (out->ss_family == AF_INET || out->ss_family == AF_INET6);
}

/*
 * Active mode: the client will listen on @p addr (already checked to be the client's own,
 * port >= 1024). Sets up the grant and writes into @p gw the address the server must connect
 * to. Returns a reason on failure (the grant is then not made).
 */
static const char *ctl_grant_active(ftp_ctl *c, const struct sockaddr_storage *addr, struct sockaddr_storage *gw)
{
    fwx_result hr;
    const struct sockaddr *ca[1] = {FTP_CSA(*addr)};
    ctl_withdraw(c);
    c->gen++;
    if (c->kind == FTP_PUBLISHED) {
        /* The server inside connects to a redirect port of the gateway, which connects on to
           the client (the core lets the published server use the session's redirect ports). */
        uint32_t glen = sizeof *gw;
        IFWXFirewallAction *acts[1] = {NULL};
        hr = IFWXSession_RedirectConnections(c->session, ca, sa_len(ca[0]), 1, FTP_SA(*gw), &glen, NULL, 0,
                                             FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT, &c->protocol, NULL, NULL, acts);
        if (FWX_FAILED(hr))
            return hr_text(hr);
        c->action = acts[0];
    } else {
        /* A client behind the gateway: bind a gateway port on its behalf (BindForClient's
           default scope: only the session's own client, only the session's peers connect). */
        IFWXConnection *bound[1] = {NULL};
        ctl_external_name(c, gw);
        if (c->kind == FTP_TRANSPARENT && gw->ss_family != addr->ss_family) {
            memset(gw, 0, sizeof *gw);
            gw->ss_family = addr->ss_family;
        }
        /* Explicit (SOCKS): the port is bound on the gateway's address on the server's side,
           the local address of its CONNECT, in the server's family whatever the client's (an
           IPv4 client's PORT reaches an IPv6 server as EPRT naming that address); the bound
           port then connects on to the client in the client's family. */
        hr = IFWXSession_BindForClient(c->session, ca, sa_len(ca[0]), FTP_SA(*gw), sizeof *gw, FWX_PROTOCOL_TCP, 1,
                                       FWX_FLAG_TIMEOUT, 1, &c->protocol, NULL, NULL, NULL, bound);
        if (FWX_FAILED(hr))
            return hr_text(hr);
        c->bound = bound[0];
    }
    if (sa_unspecified(FTP_CSA(*gw)) || sa_port(FTP_CSA(*gw)) == 0) {
        ctl_withdraw(c);
        return "the gateway has no address to give the server";
    }
    return NULL;
}

/*
 * Passive mode: the server will listen on @p host (from a 227; NULL for a 229, which names
 * none) port @p port. Sets up the grant and writes into @p gw the address the client must
 * connect to (for the transparent kind: the server's own, the reply passes unchanged).
 */
static const char *ctl_grant_passive(ftp_ctl *c, const struct sockaddr_storage *host, uint16_t port,
                                     struct sockaddr_storage *gw)
{
    struct sockaddr_storage peer, target;
    const char *why;
    fwx_result hr;
    if ((why = ftp_check_port_number(port)) != NULL)
        return why;
    if (c->kind == FTP_PUBLISHED) {
        /* The control peer is the remote client here. With IFWXConnection2 the server's
           address is known and a reply naming any other host is refused (catalog #2); without
           it, the address in the 227 is used and the core accepts it only if it is the
           published server. */
        if (host == NULL && !c->has_server)
            return "no address in the reply";
        if (host != NULL) {
            if ((why = ftp_check_address(FTP_CSA(*host))) != NULL)
                return why;
            if (c->has_server && !ftp_same_ip(FTP_CSA(*host), FTP_CSA(c->server)))
                return "names a host other than the published server";
            if (ftp_same_ip(FTP_CSA(*host), FTP_CSA(c->client)))
                return "names the remote client, not the published server";
            struct sockaddr_storage ext;
            ctl_external_name(c, &ext);
            if (!sa_unspecified(FTP_CSA(ext)) && ftp_same_ip(FTP_CSA(*host), FTP_CSA(ext)))
                return "names the gateway";
        }
        target = c->has_server ? c->server : *host;
        sa_set_port(FTP_SA(target), port);
        ctl_withdraw(c);
        c->gen++;
        uint32_t cflags = 0;
        (void)IFWXConnection_GetConnectionFlags(c->conn, &cflags);
        uint32_t flags = FWX_FLAG_TIMEOUT |
                         ((cflags & FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION) ? FWX_FLAG_PROXY_MODE : 0);
        const struct sockaddr *ca[1] = {FTP_CSA(target)};
        IFWXConnection *bound[1] = {NULL};
        ctl_external_name(c, gw);
        hr = IFWXSession_BindForClient(c->session, ca, sa_len(ca[0]), FTP_SA(*gw), sizeof *gw, FWX_PROTOCOL_TCP, 1,
                                       flags, 1, &c->protocol, NULL, NULL, NULL, bound);
        if (FWX_FAILED(hr))
            return hr_text(hr);
        c->bound = bound[0];
        if (sa_unspecified(FTP_CSA(*gw)) || sa_port(FTP_CSA(*gw)) == 0) {
            ctl_withdraw(c);
            return "the gateway has no address to give the client";
        }
        return NULL;
    }
    /* The server is the control connection's peer; the address in the reply is never used,
       and a reply naming any other host is refused (catalog #2). */
    if (!ctl_peer(c, &peer))
        return "the control connection's peer is not known";
    if (host != NULL && !ftp_same_ip(FTP_CSA(*host), FTP_CSA(peer)))
        return "names a host other than the server";
    target = peer;
    sa_set_port(FTP_SA(target), port);
    ctl_withdraw(c);
    c->gen++;
    /* Transparent and explicit alike, the client's data connection goes out to the server's
       own address and port (a SOCKS client asks the gateway to CONNECT there): the gateway
       only has to permit that one connection, and makes it from its own server-side address,
       the one the server's control connection sees (a strict server checks that). A redirect
       port on the gateway would not do for SOCKS: its clients tunnel the data connection
       through SOCKS too, and a CONNECT to the gateway itself is refused (catalog #40). That
       CONNECT is a session of its own, so an explicit client's permission is address-based:
       any session of the same client address may use it (still once, still to that port). */
    uint32_t pflags = FWX_FLAG_TIMEOUT | (c->kind == FTP_EXPLICIT ? FWX_FLAG_ADDRESS_BASED : 0);
    hr = IFWXSession_AllowFutureConnect(c->session, FTP_CSA(target), sa_len(FTP_CSA(target)), NULL, 0,
                                        FWX_PROTOCOL_TCP, pflags, &c->protocol, NULL, NULL, c->conn, &c->action);
    if (FWX_FAILED(hr))
        return hr_text(hr);
    *gw = target;
    return NULL;
}

/* ---- the reply queue ------------------------------------------------------------------------ */

static bool q_push(ftp_ctl *c, uint8_t type, uint8_t local, uint32_t gen)
{
    if (c->qlen == FTP_QUEUE_MAX)
        return false;
    ftp_qent *e = &c->queue[(c->qhead + c->qlen) % FTP_QUEUE_MAX];
    e->type = type;
    e->local = local;
    e->gen = gen;
    c->qlen++;
    return true;
}

static ftp_qent *q_head(ftp_ctl *c) { return c->qlen ? &c->queue[c->qhead] : NULL; }

static void q_pop(ftp_ctl *c)
{
    c->qhead = (c->qhead + 1) % FTP_QUEUE_MAX;
    c->qlen--;
}

/* Sends the gateway's reply now if nothing is outstanding, else when its turn comes. */
static void reply_local(ftp_ctl *c, int r)
{
    if (c->qlen == 0) {
        out_add(c, 0, reply_text[r], strlen(reply_text[r]));
        return;
    }
    if (!q_push(c, Q_LOCAL, (uint8_t)r, 0)) {
        ftp_log(c, FWX_LOG_WARN, NULL, 0, "too many commands without a reply, closing");
        ctl_close_all(c);
    }
}

/* Sends the gateway replies that were waiting for the answers before them. */
static void flush_locals(ftp_ctl *c)
{
    ftp_qent *e;
    while ((e = q_head(c)) != NULL && e->type == Q_LOCAL) {
        out_add(c, 0, reply_text[e->local], strlen(reply_text[e->local]));
        q_pop(c);
    }
}

static void forward_cmd(ftp_ctl *c, const char *line, size_t len, uint8_t type)
{
    if (!q_push(c, type, 0, c->gen)) {
        ftp_log(c, FWX_LOG_WARN, NULL, 0, "too many commands without a reply, closing");
        ctl_close_all(c);
        return;
    }
    out_add(c, 1, line, len);
}

/* ---- commands (client to server) ----------------------------------------------------------- */

static void refuse_cmd(ftp_ctl *c, const char *line, size_t len, int r, const char *why)
{
    ftp_log_refusal(c, "refused", line, len, why);
    reply_local(c, r);
}

static bool verb_is(const ftp_cmd *cmd, const char *v) { return strcmp(cmd->verb, v) == 0; }

/* Verbs whose data connections (or encrypted control channel) the gateway cannot check:
   refused rather than passed through unchecked (catalog #13). */
static bool verb_refused(const ftp_cmd *cmd)
{
    static const char *const refused[] = {"LPRT", "LPSV", "SPSV", "AUTH", "ADAT", "CCC", "CONF", "ENC", "MIC"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (verb_is(cmd, refused[i]))
            return true;
    return false;
}

static void on_port(ftp_ctl *c, const char *line, size_t len, const ftp_cmd *cmd, bool extended)
{
    struct sockaddr_storage addr, gw;
    const char *why;
    int net_prt = 1;
    char text[FTP_LINE_MAX + 1];
    if (c->epsv_all) {
        refuse_cmd(c, line, len, R_502_EPSV_ALL, "data-connection command after EPSV ALL");
        return;
    }
    if (!extended && c->client.ss_family != AF_INET) {
        refuse_cmd(c, line, len, R_502_IPV6, "PORT on an IPv6 session");
        return;
    }
    ftp_perr pe = extended ? ftp_parse_eprt(cmd->arg, cmd->arg_len, &addr, &net_prt)
                           : ftp_parse_port(cmd->arg, cmd->arg_len, &addr);
    if (pe == FTP_P_FAMILY) {
        refuse_cmd(c, line, len, c->client.ss_family == AF_INET ? R_522_V4 : R_522_V6, ftp_perr_text(pe));
        return;
    }
    if (pe != FTP_P_OK) {
        refuse_cmd(c, line, len, R_501_ARGS, ftp_perr_text(pe));
        return;
    }
    /* EPRT's network protocol must be the control connection's (after v4-mapped addresses
       were turned into IPv4 by the parser). */
    int family = c->client.ss_family == AF_INET ? 1 : 2;
    if (net_prt != family || addr.ss_family != c->client.ss_family) {
        refuse_cmd(c, line, len, family == 1 ? R_522_V4 : R_522_V6, "network protocol differs from the session's");
        return;
    }
    int illegal = extended ? R_500_EPRT : R_500_PORT;
    /* Catalog #1: the address must be the client's own; #3: no port 0 or below 1024;
       #4: never a group or unspecified address. */
    if ((why = ftp_check_active(FTP_CSA(addr), FTP_CSA(c->client))) != NULL) {
        refuse_cmd(c, line, len, illegal, why);
        return;
    }
    if ((why = ctl_grant_active(c, &addr, &gw)) != NULL) {
        refuse_cmd(c, line, len, illegal, why);
        return;
    }
    size_t n = extended || gw.ss_family != AF_INET ? ftp_fmt_eprt(text, sizeof text, FTP_CSA(gw))
                                                    : ftp_fmt_port(text, sizeof text, FTP_CSA(gw));
    if (n == 0) {
        ctl_withdraw(c);
        refuse_cmd(c, line, len, illegal, "cannot write the rewritten command");
        return;
    }
    forward_cmd(c, text, n, Q_PORT);
}

/* Whether the server is an IPv6 one: published, the server the core names (IFWXConnection2);
   explicit (SOCKS), the peer of the control connection, which the client asked the gateway to
   CONNECT to. A transparent session never crosses families (a router does not translate). */
static bool ctl_server_is_v6(ftp_ctl *c)
{
    struct sockaddr_storage peer;
    if (c->kind == FTP_PUBLISHED)
        return c->has_server && c->server.ss_family == AF_INET6;
    return c->kind == FTP_EXPLICIT && ctl_peer(c, &peer) && peer.ss_family == AF_INET6;
}

static void on_pasv(ftp_ctl *c, const char *line, size_t len, const ftp_cmd *cmd, bool extended)
{
    static const char pasv[] = "PASV\r\n";
    if (!extended) {
        if (c->epsv_all) {
            refuse_cmd(c, line, len, R_502_EPSV_ALL, "data-connection command after EPSV ALL");
            return;
        }
        if (c->client.ss_family != AF_INET) {
            refuse_cmd(c, line, len, R_502_IPV6, "PASV on an IPv6 session");
            return;
        }
        if (cmd->arg != NULL) {
            refuse_cmd(c, line, len, R_501_ARGS, "PASV takes no argument");
            return;
        }
    } else if (cmd->arg != NULL) {
        if (cmd->arg_len == 3 && strncasecmp(cmd->arg, "ALL", 3) == 0) {
            /* From now on only EPSV (RFC 2428 section 4). Answered here: the server need not
               know, and in the published kind the gateway itself asks it with PASV. */
            c->epsv_all = true;
            reply_local(c, R_200_EPSV_ALL);
            return;
        }
        int family = c->client.ss_family == AF_INET ? 1 : 2;
        if (cmd->arg_len != 1 || (cmd->arg[0] != '1' && cmd->arg[0] != '2')) {
            refuse_cmd(c, line, len, R_501_ARGS, "EPSV takes nothing, 1, 2 or ALL");
            return;
        }
        if (cmd->arg[0] - '0' != family) {
            refuse_cmd(c, line, len, family == 1 ? R_522_V4 : R_522_V6, "network protocol differs from the session's");
            return;
        }
    }
    /* Catalog #26: a new request replaces the outstanding grant at once. */
    ctl_withdraw(c);
    c->gen++;
    if (extended && c->kind == FTP_PUBLISHED && !c->has_server) {
        /* Without IFWXConnection2 the gateway learns the published server's address only
           from a 227, and a 229 names none: ask the server with PASV, answer with a 229. */
        forward_cmd(c, pasv, sizeof pasv - 1, Q_EPSV_VIA_PASV);
        return;
    }
    if (!extended && ctl_server_is_v6(c)) {
        /* An IPv4 client's PASV to an IPv6 server: PASV cannot name an IPv6 address (a server
           answers 0,0,0,0 or refuses), so the server is asked with EPSV and the client answered
           with a 227 (published: naming the gateway's IPv4 address it reached; explicit: see
           on_data_reply). */
        forward_cmd(c, "EPSV\r\n", 6, Q_PASV_VIA_EPSV);
        return;
    }
    forward_cmd(c, extended ? "EPSV\r\n" : pasv, extended ? 6 : sizeof pasv - 1, extended ? Q_EPSV : Q_PASV);
}

static void on_client_line(void *arg, ftp_line_status st, const char *line, size_t len)
{
    ftp_ctl *c = arg;
    ftp_cmd cmd;
    char whole[FTP_LINE_MAX];
    if (c->relay.closed)
        return;
    if (st != FTP_LINE_OK) {
        refuse_cmd(c, line, len, R_500_SYNTAX, ftp_line_status_text(st));
        return;
    }
    if (!ftp_cmd_parse(line, len, &cmd)) {
        refuse_cmd(c, line, len, R_500_SYNTAX, "not a command");
        return;
    }
    if (verb_refused(&cmd)) {
        refuse_cmd(c, line, len, R_502_VERB, "a verb the gateway does not check");
        return;
    }
    if (verb_is(&cmd, "PORT") || verb_is(&cmd, "EPRT")) {
        on_port(c, line, len, &cmd, verb_is(&cmd, "EPRT"));
        return;
    }
    if (verb_is(&cmd, "PASV") || verb_is(&cmd, "EPSV")) {
        on_pasv(c, line, len, &cmd, verb_is(&cmd, "EPSV"));
        return;
    }
    /* Anything else goes on as it came, re-terminated with CRLF. */
    memcpy(whole, line, len);
    whole[len] = '\r';
    whole[len + 1] = '\n';
    forward_cmd(c, whole, len + 2, Q_OTHER);
}

/* ---- replies (server to client) ------------------------------------------------------------- */

static void pass_reply(ftp_ctl *c, const char *line, size_t len)
{
    out_add(c, 0, line, len);
    out_add(c, 0, "\r\n", 2);
}

/* A final 227 or 229 line. @p head is what it answers (NULL: nothing outstanding). */
static void on_data_reply(ftp_ctl *c, const char *line, size_t len, int code, const ftp_qent *head)
{
    struct sockaddr_storage host, gw;
    uint16_t port = 0;
    const char *why = NULL;
    char text[FTP_LINE_MAX + 1];
    size_t n = 0;
    uint8_t t = head ? head->type : Q_OTHER;
    bool want227 = t == Q_PASV || t == Q_EPSV_VIA_PASV, want229 = t == Q_EPSV || t == Q_PASV_VIA_EPSV;
    if ((code == 227 && !want227) || (code == 229 && !want229)) {
        why = "not an answer to PASV or EPSV";
    } else if (code == 227) {
        ftp_perr pe = ftp_parse_227(line, len, &host);
        if (pe != FTP_P_OK)
            why = ftp_perr_text(pe);
        else if (c->client.ss_family != AF_INET && t == Q_PASV)
            why = "227 on an IPv6 session";
        else
            why = ctl_grant_passive(c, &host, sa_port(FTP_CSA(host)), &gw);
    } else {
        ftp_perr pe = ftp_parse_229(line, len, &port);
        why = pe != FTP_P_OK ? ftp_perr_text(pe) : ctl_grant_passive(c, NULL, port, &gw);
    }
    if (why == NULL) {
        if (c->kind != FTP_PUBLISHED && t != Q_PASV_VIA_EPSV) {
            pass_reply(c, line, len); /* the client connects to the server itself */
            return;
        }
        /* The client gets the reply of the command it sent, whatever the server was asked. */
        if (t == Q_PASV_VIA_EPSV && c->kind == FTP_EXPLICIT) {
            /* A SOCKS client CONNECTs to the server through the gateway, and the IPv6 server has
               no IPv4 address a 227 could name (nor would a CONNECT to one of the gateway's own
               be allowed, catalog #40). The 227 names no host, 0.0.0.0, with the server's port:
               a client that reuses the control connection's host for the data connection (as
               curl does by default, --ftp-skip-pasv-ip) CONNECTs to [server]:port, which the
               grant above permits. */
            struct sockaddr_in none = {.sin_family = AF_INET, .sin_port = htons(sa_port(FTP_CSA(gw)))};
            n = ftp_fmt_227(text, sizeof text, (const struct sockaddr *)&none);
        } else if (t == Q_EPSV_VIA_PASV || t == Q_EPSV)
            n = ftp_fmt_229(text, sizeof text, sa_port(FTP_CSA(gw)));
        else if (gw.ss_family == AF_INET)
            n = ftp_fmt_227(text, sizeof text, FTP_CSA(gw));
        else
            n = 0; /* a 227 cannot name an IPv6 address */
        if (n == 0) {
            ctl_withdraw(c);
            why = "cannot write the rewritten reply";
        }
    }
    if (why != NULL) {
        ftp_log_refusal(c, "refused reply", line, len, why);
        out_add(c, 0, reply_text[R_425], strlen(reply_text[R_425]));
        return;
    }
    out_add(c, 0, text, n);
}

/* Tells the core whether the login is still under way: the connection's handshake timeout
   runs until it is over (IFWXConnection3; an older core without it has no such limit). */
static void hold_handshake(IFWXConnection *conn, bool pending)
{
    IFWXConnection3 *c3 = NULL;
    if (conn != NULL && IFWXConnection_QueryInterface(conn, &IID_IFWXConnection3, (void **)&c3) == FWX_S_OK) {
        (void)IFWXConnection3_SetHandshakePending(c3, pending);
        IFWXConnection3_Release(c3);
    }
}

/* A final reply line (single, or the last of a multi-line reply). */
static void on_final(ftp_ctl *c, const char *line, size_t len, int code)
{
    ftp_qent head = {Q_OTHER, 0, 0};
    bool have = false;
    if (code >= 200 && c->qlen > 0 && q_head(c)->type != Q_LOCAL) {
        head = *q_head(c);
        have = true;
        q_pop(c); /* a final reply answers the oldest outstanding command */
    }
    if ((code == 230 || code == 232) && !c->logged_in) {
        c->logged_in = true;
        hold_handshake(c->conn, false); /* logged in: from now on only the idle limit applies */
    }
    if (code == 227 || code == 229) {
        on_data_reply(c, line, len, code, have ? &head : NULL);
    } else {
        if (have && head.type == Q_PORT && (code < 200 || code > 299) && head.gen == c->gen)
            ctl_withdraw(c); /* the server refused the PORT: nobody will connect */
        pass_reply(c, line, len); /* including a refusal of PASV or EPSV: nothing to grant */
    }
    flush_locals(c);
}

static void on_server_line(void *arg, ftp_line_status st, const char *line, size_t len)
{
    ftp_ctl *c = arg;
    int code = 0;
    int multi_code = c->replies.code;
    if (c->relay.closed)
        return;
    ftp_reply_kind k = ftp_replies_line(&c->replies, line, len, &code);
    if (st != FTP_LINE_OK) {
        /* Keep the reply structure, drop the bytes: the client still gets an answer with the
           server's code, and nothing the gateway could not check. */
        ftp_log_refusal(c, "refused reply", line, len, ftp_line_status_text(st));
        char text[64];
        switch (k) {
        case FTP_R_FINAL:
            if (code == 227 || code == 229) {
                ftp_qent *h = q_head(c);
                if (code >= 200 && h != NULL && h->type != Q_LOCAL)
                    q_pop(c);
                out_add(c, 0, reply_text[R_425], strlen(reply_text[R_425]));
                flush_locals(c);
                return;
            }
            snprintf(text, sizeof text, "%03d Reply refused by the gateway.", code);
            on_final(c, text, strlen(text), code);
            return;
        case FTP_R_MULTI_START:
            if (code != 227 && code != 229) {
                snprintf(text, sizeof text, "%03d-Reply line refused by the gateway.", code);
                pass_reply(c, text, strlen(text));
            }
            return;
        case FTP_R_MULTI_TEXT:
        case FTP_R_BAD:
            return;
        }
        return;
    }
    switch (k) {
    case FTP_R_BAD:
        ftp_log_refusal(c, "refused reply", line, len, "not a reply line");
        return;
    case FTP_R_MULTI_START:
        /* A 227 or 229 is answered by its last line alone: its other lines are dropped, so
           a refused one can be replaced by a single 425 line. */
        if (code != 227 && code != 229)
            pass_reply(c, line, len);
        return;
    case FTP_R_MULTI_TEXT:
        if (multi_code == 227 || multi_code == 229)
            return;
        /* RFC 959 4.2: text lines that begin with a digit must be padded, or a careless client
           takes "227 ..." inside another reply for the reply itself. */
        if (len > 0 && line[0] >= '0' && line[0] <= '9')
            out_add(c, 0, " ", 1);
        pass_reply(c, line, len);
        return;
    case FTP_R_FINAL:
        if (code < 200) {
            pass_reply(c, line, len); /* preliminary: the command is still outstanding */
            return;
        }
        on_final(c, line, len, code);
        return;
    }
}

/* ---- output and pumping ------------------------------------------------------------------- */

static void out_add(ftp_ctl *c, int target, const char *p, size_t n)
{
    plugin_relay_out_add(&c->relay, target, p, n);
}

static void ctl_close_all(ftp_ctl *c)
{
    plugin_relay_close(&c->relay, NULL);
}

/* plugin_relay_ops: the lines of a chunk, and the end of the control connection. */
static void ftp_data(void *arg, int d, const uint8_t *p, size_t n)
{
    ftp_ctl *c = arg;
    (void)ftp_lines_feed(&c->lines[d], p, n, d == 0 ? on_client_line : on_server_line, c);
}

static void ftp_closing(void *arg, const char *why)
{
    ftp_ctl *c = arg;
    if (why != NULL)
        ftp_log(c, FWX_LOG_WARN, NULL, 0, "%s, closing", why);
    /* The control stream is over: nothing it negotiated may be used any more (catalog #25). */
    ctl_withdraw(c);
}

/* No `finished`: the control connection ends when a peer ends it (a partial line left at EOF
   is never passed on: it was never a command). */
static const plugin_relay_ops relay_ops = {ftp_data, ftp_closing, NULL};

/* The completion of each side (dir_vtbl), handing its I/O to the relay
   (plugins/common/plugin_relay.h). */
PLUGIN_RELAY_COMPLETION(dir, ftp_dir, c, ctl)

/* ---- the data filter's own methods ---------------------------------------------------------- */

static void ctl_release_all(ftp_ctl *c)
{
    ctl_withdraw(c);
    plugin_relay_free(&c->relay);
    ctl_drop_refs(c);
}

/* SetSockets, once the relay is set up: the addresses the checks need. */
static fwx_result ctl_start(ftp_ctl *c)
{
    c->client_len = sizeof c->client;
    if (IFWXSession_GetClientAddress(c->session, FTP_SA(c->client), &c->client_len) != FWX_S_OK ||
        (c->client.ss_family != AF_INET && c->client.ss_family != AF_INET6))
        return FWX_E_INVALIDARG;
    ftp_addr_text(FTP_CSA(c->client), false, c->client_text);
    if (c->kind == FTP_PUBLISHED) {
        /* A core that offers IFWXConnection2 names the published server: the address in a
           227 then need not be believed at all, and EPSV can go to the server as it is. */
        IFWXConnection2 *c2 = NULL;
        if (IFWXConnection_QueryInterface(c->conn, &IID_IFWXConnection2, (void **)&c2) == FWX_S_OK && c2 != NULL) {
            uint32_t len = sizeof c->server;
            /* Of either family: across families the server gets its own family's
               commands, the client its own. */
            c->has_server = IFWXConnection2_GetInternalPeerName(c2, FTP_SA(c->server), &len) == FWX_S_OK &&
                            (c->server.ss_family == AF_INET || c->server.ss_family == AF_INET6);
            IFWXConnection2_Release(c2);
        }
    }
    /* The server speaks first: its greeting is the first reply, answering no command. */
    (void)q_push(c, Q_OTHER, 0, 0);
    return FWX_S_OK;
}

/* ctl_destroy, ctl_SetSockets (an FTP gateway relays; it never emulates the server), ctl_Detach
   (the control connection is ending: every grant it made goes with it, catalog #25, through
   ftp_closing) and ctl_vtbl (plugins/common/plugin_df.h). */
PLUGIN_RELAY_DATA_FILTER(ctl, ftp_ctl, relay_ops, FTP_OUT_MAX, ctl_start, ctl_release_all)

static ftp_ctl *ctl_new(ftp_kind kind, IFWXFirewall *fw, IFWXSession *session, const fwx_guid *protocol)
{
    ftp_ctl *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    /* Made inside the event handler that attaches it, so its log lines name this plugin. */
    ctl_base_init(c, &ctl_vtbl, fw, session, protocol);
    for (int d = 0; d < 2; d++) {
        c->dirs[d].iface.lpVtbl = &dir_vtbl;
        c->dirs[d].c = c;
        c->dirs[d].d = d;
        ftp_lines_init(&c->lines[d]);
    }
    c->kind = kind;
    return c;
}

/* ---- the session filter ---------------------------------------------------------------------- */

/* plugin_sf, and sf_impl, sf_QueryInterface, sf_AddRef, sf_Release, sf_Detach (drops the session
   and the firewall), the constructor sf_new and sf_FirewallEventHandler, which hands sf_attach
   each primary connection: a data connection has nothing to parse, and at
   fwx_ConnectionTerminating the data filter's Detach has already withdrawn its grants
   (plugins/common/plugin_df.h). */
PLUGIN_SESSION_FILTER(sf_attach, plugin_sf_ignore)

/* Attaches the FTP data filter of the connection's kind to a new control connection. */
static fwx_result sf_attach(plugin_sf *sf, const FwxFirewallEvent *ev, IFWXConnection *conn, const fwx_guid *protocol)
{
    ftp_kind kind = FTP_PUBLISHED; /* fwx_AcceptedConnection */
    if (ev->EventType == fwx_Connect_Tcp) {
        uint32_t flags = 0;
        if (FWX_FAILED(IFWXSession_GetSessionFlags(sf->session, &flags)))
            return FWX_E_FAIL;
        kind = (flags & FWX_SESSION_NAT) ? FTP_TRANSPARENT : FTP_EXPLICIT;
    }
    ftp_ctl *c = ctl_new(kind, sf->fw, sf->session, protocol);
    if (c == NULL)
        return FWX_E_OUTOFMEMORY;
    char what[64];
    snprintf(what, sizeof what, "a %s control connection", kind_name[kind]);
    /* Fail closed: an FTP control connection this filter cannot watch is refused. */
    fwx_result hr = plugin_df_attach(conn, &c->iface, c->log, sf->session, what);
    if (FWX_SUCCEEDED(hr))
        hold_handshake(conn, true); /* until the server's 230 */
    return hr;
}

/* ---- the filter --------------------------------------------------------------------------- */

/* The filter object itself (FilterInit, FilterShutdown, AttachToSession) and ftp_create_filter. */
FWX_PLUGIN_SESSION_FILTERS(ftp_create_filter, FTP_HOOKS, sf_new)

/* The one exported symbol; the filter GUID is {5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}. */
PLUGIN_SHIPPED_ENTRY(FWX_GUID_INIT(0x5d, 0x1e, 0x7a, 0x3c, 0x9b, 0x42, 0x4f, 0x0e,
                                   0x8c, 0x6a, 0x2f, 0x71, 0xd9, 0xe0, 0x4b, 0x13),
                     "ftp", "1.0",
                     "FTP application-layer gateway: PORT/EPRT/PASV/EPSV checked, granted and rewritten",
                     FTP_HOOKS, ftp_create_filter);
