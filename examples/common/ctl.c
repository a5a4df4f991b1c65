/*
 * fwx examples - the control server (see ctl.h for the protocol).
 * SPDX-License-Identifier: MIT
 *
 * Each client gets a uv_pipe_t and a uv_timer_t; the answer is built in memory and sent with one
 * uv_write, so nothing here ever blocks the loop. Memory is freed only in close callbacks: a
 * client when both its handles have closed, the server when its listener and every client have.
 */
#include "ctl.h"
#include "json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

typedef struct ctl_buf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
} ctl_buf;

typedef struct ctl_client {
    uv_pipe_t pipe;
    uv_timer_t timer;
    uv_write_t wreq;
    ctl_server *srv;
    struct ctl_client *prev;
    struct ctl_client *next;
    /* The request line: CTL_MAX_REQUEST bytes and its newline. */
    char req[CTL_MAX_REQUEST + 1];
    size_t req_len;
    ctl_buf out;
    int open_handles; /* freed when this reaches 0 */
    bool closing;
    bool writing;
    bool streaming; /* asked for events: stays until it closes */
} ctl_client;

/* One event line on its way to a streaming client. */
typedef struct ctl_ewrite {
    uv_write_t req;
    ctl_client *c;
    size_t len;
    char data[];
} ctl_ewrite;

struct ctl_server {
    uv_loop_t *loop;
    fwx_firewall *fw;
    uv_pipe_t listener;
    char path[CTL_SUN_PATH_MAX];
    dev_t dev;
    ino_t ino;
    bool have_ino;
    bool closing;
    uint64_t timeout_ms;
    ctl_client *clients;
    unsigned n_clients; /* live clients (not closing), for CTL_MAX_CLIENTS */
    unsigned refs;      /* the listener + every client not yet freed */
    ctl_level level;
    ctl_hooks hooks;
    atomic_uint event_clients; /* clients that asked for `events`, read by other loops' threads */
};

/* ---- output buffer and JSON ------------------------------------------------------------------ */

static void buf_add(ctl_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Appends one JSON line of @p o (taken) to @p b. */
static void buf_json(ctl_buf *b, json_t *o)
{
    size_t n;
    char *line = ex_json_line(o, &n);
    if (line == NULL) {
        b->oom = true;
        return;
    }
    buf_add(b, line, n);
    free(line);
}

/* "ip:port", "[v6]:port", or without the port when it is 0; null when there is no address. */
static json_t *json_addr(const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 16];
    uint16_t port;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip) == NULL)
            return json_null();
        port = ntohs(a->sin_port);
        if (port != 0)
            snprintf(text, sizeof text, "%s:%u", ip, port);
        else
            snprintf(text, sizeof text, "%s", ip);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip) == NULL)
            return json_null();
        port = ntohs(a->sin6_port);
        if (port != 0)
            snprintf(text, sizeof text, "[%s]:%u", ip, port);
        else
            snprintf(text, sizeof text, "%s", ip);
    } else
        return json_null();
    return json_string(text);
}

typedef struct ctl_flag_name {
    uint32_t bit;
    const char *name;
} ctl_flag_name;

static const ctl_flag_name session_flags[] = {
    {FWX_SESSION_NAT, "nat"},
    {FWX_SESSION_PRIVATE, "private"},
    {FWX_SESSION_AUTHENTICATED, "authenticated"},
    {FWX_SESSION_TERMINATED, "terminated"},
    {0, NULL},
};

static const ctl_flag_name connection_flags[] = {
    {FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION, "address_translation"},
    {FWX_CONNECTION_KERNEL_MODE, "kernel"},
    {FWX_CONNECTION_SECONDARY, "secondary"},
    {FWX_CONNECTION_EMULATED, "emulated"},
    {FWX_CONNECTION_LISTENING, "listening"},
    {FWX_CONNECTION_TERMINATED, "terminated"},
    {0, NULL},
};

static const ctl_flag_name grant_flags[] = {
    {FWX_FLAG_ADDRESS_BASED, "address_based"},
    {FWX_FLAG_ALLOW_MULTIPLE, "multiple"},
    {FWX_FLAG_TIMEOUT, "timeout"},
    {FWX_FLAG_NO_KERNEL_MODE, "no_kernel_mode"},
    {FWX_FLAG_BIDIRECTIONAL, "bidirectional"},
    {FWX_FLAG_PROXY_MODE, "proxy_mode"},
    {FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK, "class_c"},
    {FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK, "network"},
    {FWX_FLAG_ALLOW_ADDRESSES_ALL, "all_addresses"},
    {FWX_INCREASE_RECEIVE_BUFFER, "increase_receive_buffer"},
    {FWX_FLAG_REPLY_FROM_PEER, "reply_from_peer"},
    {0, NULL},
};

static const ctl_flag_name hook_flags[] = {
    {fwx_Connect_Tcp, "connect_tcp"},
    {fwx_Udp_Destination, "udp_destination"},
    {fwx_Bind_Tcp, "bind_tcp"},
    {fwx_Bind_Udp, "bind_udp"},
    {fwx_Listen, "listen"},
    {fwx_AcceptedConnection, "accepted"},
    {fwx_GetHostByName, "gethostbyname"},
    {fwx_GetHostByAddr, "gethostbyaddr"},
    {fwx_ConnectionTerminating, "terminating"},
    {fwx_EstablishedConnection, "established"},
    {fwxAnyProtocol, "any_protocol"},
    {fwxAssociatedProtocolsAllConnections, "all_connections"},
    {fwxSourceWSP, "wsp"},
    {fwxSourceNAT, "nat"},
    {0, NULL},
};

/* "flags": the bits, "flag_names": their names (unknown bits as "0x..."), set on @p o. */
static int json_flags(json_t *o, uint32_t flags, const ctl_flag_name *names)
{
    json_t *list = json_array();
    int rc = json_object_set_new(o, "flags", json_integer(flags));
    for (; names->name != NULL; names++) {
        if (flags & names->bit) {
            rc |= json_array_append_new(list, json_string(names->name));
            flags &= ~names->bit;
        }
    }
    for (unsigned bit = 0; bit < 32; bit++) {
        if (flags & (1u << bit)) {
            char hex[16];
            snprintf(hex, sizeof hex, "0x%x", 1u << bit);
            rc |= json_array_append_new(list, json_string(hex));
        }
    }
    return rc | json_object_set_new(o, "flag_names", list);
}

/* A protocol number as text: "tcp", "udp", null for none, the number otherwise. */
static json_t *json_protocol(int32_t protocol)
{
    if (protocol == FWX_PROTOCOL_TCP)
        return json_string("tcp");
    if (protocol == FWX_PROTOCOL_UDP)
        return json_string("udp");
    return protocol == 0 ? json_null() : json_integer(protocol);
}

/* An unsigned count, or null when @p known is false. */
static json_t *json_count(bool known, uint64_t n)
{
    return known ? json_integer((json_int_t)n) : json_null();
}

static void list_cb(ctl_buf *b, unsigned loop, const fwx_object_info *info)
{
    const char *kind;
    const ctl_flag_name *names;
    switch (info->kind) {
    case FWX_OBJECT_SESSION:
        kind = "session";
        names = session_flags;
        break;
    case FWX_OBJECT_CONNECTION:
        kind = "connection";
        names = connection_flags;
        break;
    case FWX_OBJECT_GRANT:
        kind = "grant";
        names = grant_flags;
        break;
    case FWX_OBJECT_PLUGIN:
        kind = "plugin";
        names = hook_flags;
        break;
    default:
        return; /* a kind newer than this server: leave it out rather than mislabel it */
    }
    bool is_conn = info->kind == FWX_OBJECT_CONNECTION;
    bool has_mode = is_conn || info->kind == FWX_OBJECT_GRANT;
    /* The filter's class id for a plugin, the protocol's for a grant; a server older than the
       field (a shorter struct) says null. */
    char g[FWX_GUID_STRLEN];
    const char *guid = NULL;
    if ((info->kind == FWX_OBJECT_PLUGIN || info->kind == FWX_OBJECT_GRANT) &&
        info->struct_size >= offsetof(fwx_object_info, guid) + sizeof info->guid)
        guid = fwx_guid_format(&info->guid, g);
    json_t *o = json_pack("{s:s, s:I, s:o, s:o, s:o, s:o, s:o}", "kind", kind, "id", (json_int_t)info->id,
                          "session", json_count(info->kind != FWX_OBJECT_PLUGIN, info->session_id), "protocol",
                          json_protocol(info->protocol), "client", json_addr(&info->client), "peer",
                          json_addr(&info->peer), "local", json_addr(&info->local));
    if (o != NULL && json_flags(o, info->flags, names) != 0) {
        json_decref(o);
        o = NULL;
    }
    if (o != NULL &&
        (json_object_update_new(
            o, json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o}", "mode",
                         !has_mode ? json_null() : json_string(info->kernel_mode ? "kernel" : "user"), "bytes_in",
                         json_count(is_conn, info->bytes_in), "bytes_out", json_count(is_conn, info->bytes_out),
                         "age_ms", (json_int_t)info->age_ms, "expires_in_ms",
                         info->kind == FWX_OBJECT_GRANT && info->expires_in_ms >= 0
                             ? json_integer((json_int_t)info->expires_in_ms)
                             : json_null(),
                         "name", ex_json_text(info->name ? info->name : ""), "owner",
                         ex_json_text(info->owner ? info->owner : ""), "guid", ex_json_text(guid))) != 0 ||
         json_object_set_new(o, "loop", json_integer(loop)) != 0)) {
        json_decref(o);
        o = NULL;
    }
    buf_json(b, o);
}

/* One registry entry: {"kind":"redirect","flow":...,"writer":pid,"slots":n,"original":...,
   "application":...,"hops":[provider GUIDs]} */
static void redirect_cb(void *arg, uint16_t sport, const struct sockaddr *dst, long pid, uint32_t slots,
                        const fwx_redirect_record *rec)
{
    ctl_buf *b = arg;
    struct sockaddr_storage d, orig;
    memset(&d, 0, sizeof d);
    memcpy(&d, dst, dst->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    char flow[80], app[FWX_REDIRECT_CGROUP_PATH_MAX + 64], ip[INET6_ADDRSTRLEN] = "?";
    if (d.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&d)->sin_addr, ip, sizeof ip);
    snprintf(flow, sizeof flow, "tcp4 *:%u -> %s:%u", (unsigned)sport, ip,
             (unsigned)ntohs(((struct sockaddr_in *)&d)->sin_port));
    json_t *orig_j = FWX_SUCCEEDED(fwx_redirect_record_original_destination(rec, &orig)) ? json_addr(&orig) : json_null();
    fwx_redirect_app a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    if (FWX_SUCCEEDED(fwx_redirect_record_original_app(rec, &a)) && a.pid != 0)
        snprintf(app, sizeof app, "pid %u uid %ld cgroup %s", (unsigned)a.pid,
                 a.uid == FWX_REDIRECT_UID_UNKNOWN ? -1L : (long)a.uid, a.cgroup_path ? a.cgroup_path : "-");
    else
        snprintf(app, sizeof app, "-");
    json_t *hops = json_array();
    for (size_t i = 0; i < fwx_redirect_record_hop_count(rec); i++) {
        fwx_redirect_hop h;
        memset(&h, 0, sizeof h);
        h.struct_size = sizeof h;
        char g[FWX_GUID_STRLEN] = "?";
        if (FWX_SUCCEEDED(fwx_redirect_record_hop(rec, i, &h)))
            fwx_guid_format(&h.provider, g);
        json_array_append_new(hops, json_string(g));
    }
    buf_json(b, json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:o}", "kind", "redirect", "flow", flow, "writer",
                          (json_int_t)pid, "slots", (json_int_t)slots, "original", orig_j, "application",
                          ex_json_text(app), "hops", hops));
}

/* ---- clients --------------------------------------------------------------------------------- */

static void server_unref(ctl_server *s)
{
    if (--s->refs == 0)
        free(s);
}

static void client_closed_cb(uv_handle_t *h)
{
    ctl_client *c = h->data;
    /* Event writes still queued hold the client until their callbacks have run (they run,
       cancelled, before the pipe's close callback). */
    if (--c->open_handles > 0)
        return;
    ctl_server *s = c->srv;
    free(c->out.p);
    free(c);
    server_unref(s);
}

static void client_close(ctl_client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    ctl_server *s = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n_clients--;
    if (c->streaming)
        atomic_fetch_sub(&s->event_clients, 1);
    /* A pending write is cancelled; its callback runs before the close callbacks. */
    uv_close((uv_handle_t *)&c->pipe, client_closed_cb);
    uv_close((uv_handle_t *)&c->timer, client_closed_cb);
}

/* Sends a short line without waiting: used only just before closing. */
static void client_try_send(ctl_client *c, const char *line)
{
    uv_buf_t b = uv_buf_init((char *)line, (unsigned)strlen(line));
    (void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
}

static void write_cb(uv_write_t *req, int status)
{
    ctl_client *c = req->data;
    (void)status; /* sent, failed or cancelled: either way this client is done */
    c->writing = false;
    client_close(c);
}

static void timeout_cb(uv_timer_t *t)
{
    ctl_client *c = t->data;
    if (!c->writing)
        client_try_send(c, "{\"error\":\"timeout\"}\n");
    client_close(c);
}

static void client_refuse(ctl_client *c, const char *message)
{
    ctl_buf b = {0};
    buf_json(&b, json_pack("{s:o}", "error", ex_json_text(message)));
    if (!b.oom)
        client_try_send(c, b.p);
    free(b.p);
    client_close(c);
}

static void host_log(ctl_server *s, fwx_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void host_log(ctl_server *s, fwx_log_level level, const char *fmt, ...)
{
    if (s->hooks.log == NULL)
        return;
    char line[512];
    int n = snprintf(line, sizeof line, "control socket %s: ", s->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    s->hooks.log(s->hooks.arg, level, line);
}

/* ---- filters on lists -------------------------------------------------------------------- */

typedef struct ctl_filter {
    bool client, session, plugin, mode, address;
    struct sockaddr_storage client_ip;
    uint64_t session_id;
    char plugin_name[64];
    bool kernel;
    struct sockaddr_storage addr;
    bool addr_port; /* address= gave a port */
} ctl_filter;

typedef struct ctl_list {
    ctl_buf *b;
    const ctl_filter *f;
    uint32_t kinds;
    unsigned loop;
} ctl_list;

/* Parses "IP", "IP:PORT", "[V6]:PORT"; port 0 when none (then *has_port false). */
static bool parse_ip_port(const char *text, bool allow_port, struct sockaddr_storage *out, bool *has_port)
{
    char ip[INET6_ADDRSTRLEN + 2];
    const char *port = NULL;
    memset(out, 0, sizeof *out);
    *has_port = false;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL || (size_t)(end - text - 1) >= sizeof ip)
            return false;
        memcpy(ip, text + 1, (size_t)(end - text - 1));
        ip[end - text - 1] = '\0';
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return false;
    } else {
        const char *colon = strchr(text, ':');
        bool v4port = colon != NULL && strchr(colon + 1, ':') == NULL;
        size_t n = v4port ? (size_t)(colon - text) : strlen(text);
        if (n >= sizeof ip)
            return false;
        memcpy(ip, text, n);
        ip[n] = '\0';
        if (v4port)
            port = colon + 1;
    }
    unsigned long pv = 0;
    if (port != NULL) {
        if (!allow_port || port[0] < '0' || port[0] > '9' || strlen(port) > 5)
            return false;
        char *e;
        pv = strtoul(port, &e, 10);
        if (*e != '\0' || pv == 0 || pv > 65535)
            return false;
        *has_port = true;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)pv);
        return true;
    }
    if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)pv);
        return true;
    }
    return false;
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr, &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      16) == 0;
    return false;
}

static uint16_t port_of(const struct sockaddr_storage *a)
{
    return a->ss_family == AF_INET    ? ntohs(((const struct sockaddr_in *)a)->sin_port)
           : a->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)a)->sin6_port)
                                      : 0;
}

static bool addr_matches(const ctl_filter *f, const struct sockaddr_storage *a)
{
    return same_ip(&f->addr, a) && (!f->addr_port || port_of(&f->addr) == port_of(a));
}

static bool filter_pass(const ctl_filter *f, const fwx_object_info *info)
{
    bool plugin = info->kind == FWX_OBJECT_PLUGIN;
    bool has_mode = info->kind == FWX_OBJECT_CONNECTION || info->kind == FWX_OBJECT_GRANT;
    if (f->client && (plugin || !same_ip(&f->client_ip, &info->client)))
        return false;
    if (f->session && (plugin || (info->kind == FWX_OBJECT_SESSION ? info->id : info->session_id) != f->session_id))
        return false;
    if (f->plugin) {
        const char *who = plugin ? info->name : info->kind == FWX_OBJECT_GRANT ? info->owner : NULL;
        if (who == NULL || strcmp(who, f->plugin_name) != 0)
            return false;
    }
    if (f->mode && (!has_mode || (info->kernel_mode != 0) != f->kernel))
        return false;
    if (f->address && (plugin || (!addr_matches(f, &info->client) && !addr_matches(f, &info->peer) &&
                                  !addr_matches(f, &info->local))))
        return false;
    return true;
}

static void filtered_list_cb(void *arg, const fwx_object_info *info)
{
    ctl_list *l = arg;
    if (filter_pass(l->f, info))
        list_cb(l->b, l->loop, info);
}

/* ---- several loops ---------------------------------------------------------------------------
 * A host that runs one firewall per event loop (ctl_hooks.loops) answers for all of them: each
 * loop's firewall is asked on its own thread (ctl_hooks.on_loop), the server's own directly. */

static unsigned n_loops(const ctl_server *s)
{
    unsigned n = s->hooks.loops != NULL ? s->hooks.loops(s->hooks.arg) : 0;
    return n > 0 ? n : 1;
}

/* Runs fn(fw of loop i, arg) where it may run: 0, or -1 when loop i did not answer. */
static int on_loop(ctl_server *s, unsigned i, void (*fn)(fwx_firewall *fw, void *arg), void *arg)
{
    if (s->hooks.loops == NULL || s->hooks.on_loop == NULL) {
        fn(s->fw, arg);
        return 0;
    }
    return s->hooks.on_loop(s->hooks.arg, i, fn, arg);
}

static void list_on_loop(fwx_firewall *fw, void *arg)
{
    ctl_list *l = arg;
    fwx_firewall_list(fw, l->kinds, filtered_list_cb, l);
}

/* One loop's counters for `stats`, each named in stat_fields. */
typedef struct ctl_stats {
    uint64_t sessions, connections, permissions, bound_ports, factories, plugins, idle_timeouts, handshake_timeouts;
} ctl_stats;

/* How a counter of the loops becomes the gateway's: added up, or taken from loop 0 (a count
   every loop holds the same, such as its plugins, which each loop loads). */
enum { STAT_SUM, STAT_LOOP0 };

/* The counters `stats` answers, in the order it answers them, each by its name: a new counter
   is one line here and one in stats_on_loop, so none is summed by position. */
static const struct {
    const char *name;
    size_t offset; /* in ctl_stats */
    int combine;   /* STAT_ */
} stat_fields[] = {
    {"sessions", offsetof(ctl_stats, sessions), STAT_SUM},
    {"connections", offsetof(ctl_stats, connections), STAT_SUM},
    {"permissions", offsetof(ctl_stats, permissions), STAT_SUM},
    {"bound_ports", offsetof(ctl_stats, bound_ports), STAT_SUM},
    {"factories", offsetof(ctl_stats, factories), STAT_SUM},
    {"plugins", offsetof(ctl_stats, plugins), STAT_LOOP0},
    {"idle_timeouts", offsetof(ctl_stats, idle_timeouts), STAT_SUM},
    {"handshake_timeouts", offsetof(ctl_stats, handshake_timeouts), STAT_SUM},
};

static uint64_t *stat_at(ctl_stats *st, size_t field) { return (uint64_t *)((char *)st + stat_fields[field].offset); }

static void stats_on_loop(fwx_firewall *fw, void *arg)
{
    ctl_stats *v = arg;
    fwx_firewall_stats st = {0};
    st.struct_size = sizeof st;
    fwx_firewall_get_stats(fw, &st);
    v->sessions = st.sessions;
    v->connections = st.connections;
    v->permissions = st.permissions;
    v->bound_ports = st.bound_ports;
    v->factories = st.factories;
    v->plugins = st.plugins;
    fwx_firewall_get_timeout_stats(fw, &v->idle_timeouts, &v->handshake_timeouts);
}

/* The `stats` answer: every loop's counters combined as stat_fields says, and the loops. */
static json_t *stats_json(ctl_server *s, unsigned n)
{
    ctl_stats sum = {0};
    for (unsigned k = 0; k < n; k++) {
        ctl_stats v = {0};
        if (on_loop(s, k, stats_on_loop, &v) != 0)
            host_log(s, FWX_LOG_WARN, "stats: loop %u did not answer; its counts are left out", k);
        for (size_t j = 0; j < sizeof stat_fields / sizeof stat_fields[0]; j++)
            if (stat_fields[j].combine == STAT_SUM)
                *stat_at(&sum, j) += *stat_at(&v, j);
            else if (k == 0)
                *stat_at(&sum, j) = *stat_at(&v, j);
    }
    json_t *o = json_pack("{s:s}", "kind", "stats");
    for (size_t j = 0; j < sizeof stat_fields / sizeof stat_fields[0]; j++)
        json_object_set_new(o, stat_fields[j].name, json_integer((json_int_t)*stat_at(&sum, j)));
    json_object_set_new(o, "loops", json_integer((json_int_t)n));
    return o;
}

typedef struct ctl_kill {
    fwx_object_kind kind;
    uint64_t id;
    bool found;
    fwx_result hr;
} ctl_kill;

static void find_cb(void *arg, const fwx_object_info *info)
{
    ctl_kill *k = arg;
    if (info->kind == k->kind && info->id == k->id)
        k->found = true;
}

static void find_on_loop(fwx_firewall *fw, void *arg)
{
    ctl_kill *k = arg;
    k->found = false;
    fwx_firewall_list(fw, k->kind, find_cb, k);
}

static void kill_on_loop(fwx_firewall *fw, void *arg)
{
    ctl_kill *k = arg;
    k->hr = fwx_firewall_kill(fw, k->kind, k->id);
}

/* `loops`: one line per loop, what it holds and what it has served. */
static void answer_loops(ctl_server *s, ctl_buf *b)
{
    unsigned n = n_loops(s);
    for (unsigned i = 0; i < n; i++) {
        uint64_t v[8] = {0}, sessions = 0, connections = 0;
        bool up = on_loop(s, i, stats_on_loop, v) == 0;
        if (s->hooks.loop_served != NULL)
            s->hooks.loop_served(s->hooks.arg, i, &sessions, &connections);
        buf_json(b, json_pack("{s:s, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "kind", "loop", "loop", (json_int_t)i,
                              "answered", up, "sessions", (json_int_t)v[0], "connections", (json_int_t)v[1],
                              "permissions", (json_int_t)v[2], "bound_ports", (json_int_t)v[3], "sessions_served",
                              (json_int_t)sessions, "connections_served", (json_int_t)connections));
    }
}

/* Parses the filters after "list WHAT"; NULL, or why not. */
static const char *filter_parse(char *words, ctl_filter *f)
{
    memset(f, 0, sizeof *f);
    for (char *save = NULL, *w = strtok_r(words, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(w, '=');
        if (eq == NULL || eq[1] == '\0')
            return "a filter is key=value";
        *eq = '\0';
        const char *v = eq + 1;
        bool has_port;
        if (strcmp(w, "client") == 0) {
            if (f->client || !parse_ip_port(v, false, &f->client_ip, &has_port))
                return "client= takes one IP address";
            f->client = true;
        } else if (strcmp(w, "session") == 0) {
            char *e;
            errno = 0;
            unsigned long long id = strtoull(v, &e, 10);
            if (f->session || *e != '\0' || v[0] < '0' || v[0] > '9' || errno != 0)
                return "session= takes one decimal id";
            f->session = true;
            f->session_id = id;
        } else if (strcmp(w, "plugin") == 0) {
            if (f->plugin || strlen(v) >= sizeof f->plugin_name)
                return "plugin= takes one plugin name";
            f->plugin = true;
            snprintf(f->plugin_name, sizeof f->plugin_name, "%s", v);
        } else if (strcmp(w, "mode") == 0) {
            if (f->mode || (strcmp(v, "user") != 0 && strcmp(v, "kernel") != 0))
                return "mode= takes user or kernel";
            f->mode = true;
            f->kernel = strcmp(v, "kernel") == 0;
        } else if (strcmp(w, "address") == 0) {
            if (f->address || !parse_ip_port(v, true, &f->addr, &f->addr_port))
                return "address= takes one IP address, with a port or not";
            f->address = true;
        } else {
            return "unknown filter (client, session, plugin, mode, address)";
        }
    }
    return NULL;
}

/* ---- the requests ------------------------------------------------------------------------- */

static const char *event_name(fwx_event_type t)
{
    switch (t) {
    case FWX_EVENT_SESSION_OPENED: return "session-opened";
    case FWX_EVENT_SESSION_ENDED: return "session-ended";
    case FWX_EVENT_CONNECTION_OPENED: return "connection-opened";
    case FWX_EVENT_CONNECTION_CLOSED: return "connection-closed";
    case FWX_EVENT_CONNECTION_REFUSED: return "connection-refused";
    case FWX_EVENT_PERMISSION_ADDED: return "permission-added";
    case FWX_EVENT_PERMISSION_REMOVED: return "permission-removed";
    default: return NULL;
    }
}

static void ewrite_cb(uv_write_t *req, int status)
{
    ctl_ewrite *w = req->data;
    ctl_client *c = w->c;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        client_close(c);
    if (--c->open_handles == 0) { /* the last reference: both handles closed already */
        ctl_server *s = c->srv;
        free(c->out.p);
        free(c);
        server_unref(s);
    }
}

/* Queues one line to a streaming client; a client that cannot take it is closed. */
static void stream_line(ctl_client *c, const char *line, size_t len)
{
    ctl_ewrite *w = malloc(sizeof *w + len);
    if (w == NULL)
        return;
    w->c = c;
    w->len = len;
    memcpy(w->data, line, len);
    w->req.data = w;
    uv_buf_t ub = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &ub, 1, ewrite_cb) != 0) {
        free(w);
        client_close(c);
        return;
    }
    c->open_handles++; /* the write holds the client */
}

void ctl_server_event(ctl_server *s, const fwx_event *ev)
{
    if (s == NULL || s->closing)
        return;
    bool any = false;
    for (ctl_client *c = s->clients; c != NULL; c = c->next)
        any |= c->streaming;
    const char *name = event_name(ev->type);
    if (!any || name == NULL)
        return;
    ctl_buf b = {0};
    bool has_mode = ev->type != FWX_EVENT_SESSION_OPENED && ev->type != FWX_EVENT_SESSION_ENDED &&
                    ev->type != FWX_EVENT_CONNECTION_REFUSED;
    bool has_bytes = ev->type == FWX_EVENT_CONNECTION_CLOSED;
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "kind", "event", "event", name,
                          "session", (json_int_t)ev->session_id, "id", (json_int_t)ev->id, "protocol",
                          json_protocol(ev->protocol == FWX_PROTOCOL_TCP || ev->protocol == FWX_PROTOCOL_UDP ? ev->protocol : 0),
                          "mode", !has_mode ? json_null() : json_string(ev->kernel_mode ? "kernel" : "user"),
                          "client", json_addr(&ev->client), "peer", json_addr(&ev->peer), "bytes_in",
                          json_count(has_bytes, ev->bytes_in), "bytes_out", json_count(has_bytes, ev->bytes_out));
    if (o != NULL &&
        json_object_update_new(
            o, json_pack("{s:o, s:o, s:o, s:o, s:o}", "reason", ex_json_text(ev->reason && ev->reason[0] ? ev->reason : NULL),
                         "code", ex_json_text(ev->type == FWX_EVENT_CONNECTION_REFUSED ? fwx_err_name(ev->result) : NULL),
                         "rule", ex_json_text(ev->rule && ev->rule[0] ? ev->rule : NULL), "name",
                         ex_json_text(ev->name ? ev->name : ""), "detail",
                         ex_json_text(ev->detail && ev->detail[0] ? ev->detail : NULL))) != 0) {
        json_decref(o);
        o = NULL;
    }
    buf_json(&b, o);
    if (b.oom) {
        free(b.p);
        return;
    }
    for (ctl_client *c = s->clients, *next; c != NULL; c = next) {
        next = c->next;
        if (!c->streaming)
            continue;
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) + b.len > CTL_MAX_EVENT_BACKLOG) {
            host_log(s, FWX_LOG_WARN, "events client dropped: more than %d bytes of events unread",
                     CTL_MAX_EVENT_BACKLOG);
            client_close(c);
            continue;
        }
        stream_line(c, b.p, b.len);
    }
    free(b.p);
}

static void explain(ctl_client *c, char *args)
{
    ctl_buf *b = &c->out;
    char *save = NULL;
    char *src = strtok_r(args, " ", &save), *dst = strtok_r(NULL, " ", &save), *pp = strtok_r(NULL, " ", &save);
    char *user = strtok_r(NULL, " ", &save);
    struct sockaddr_storage sa, da;
    bool hp;
    if (src == NULL || dst == NULL || pp == NULL || strtok_r(NULL, " ", &save) != NULL ||
        (user != NULL && strncmp(user, "user=", 5) != 0)) {
        client_refuse(c, "usage: explain SRC DST tcp/PORT|udp/PORT [user=NAME]");
        return;
    }
    if (!parse_ip_port(src, true, &sa, &hp) || !parse_ip_port(dst, false, &da, &hp)) {
        client_refuse(c, "explain: SRC and DST are IP addresses (SRC may have a port)");
        return;
    }
    int32_t proto = strncmp(pp, "tcp/", 4) == 0 ? FWX_PROTOCOL_TCP : strncmp(pp, "udp/", 4) == 0 ? FWX_PROTOCOL_UDP : 0;
    char *e = NULL;
    unsigned long port = proto ? strtoul(pp + 4, &e, 10) : 0;
    if (proto == 0 || pp[4] < '0' || pp[4] > '9' || *e != '\0' || port == 0 || port > 65535) {
        client_refuse(c, "explain: the protocol is tcp/PORT or udp/PORT, PORT 1 to 65535");
        return;
    }
    if (da.ss_family == AF_INET)
        ((struct sockaddr_in *)&da)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&da)->sin6_port = htons((uint16_t)port);
    fwx_explain_request rq;
    memset(&rq, 0, sizeof rq);
    rq.struct_size = sizeof rq;
    rq.protocol = proto;
    rq.source = (struct sockaddr *)&sa;
    rq.source_len = sizeof sa;
    rq.destination = (struct sockaddr *)&da;
    rq.destination_len = sizeof da;
    rq.user = user ? user + 5 : NULL;
    fwx_explanation x;
    memset(&x, 0, sizeof x);
    x.struct_size = sizeof x;
    fwx_result hr = fwx_firewall_explain(c->srv->fw, &rq, &x);
    if (hr == FWX_E_NOT_FOUND) { /* no policy: everything is allowed */
        buf_json(b, json_pack("{s:s, s:b, s:s, s:n, s:n, s:n, s:n, s:n, s:n, s:n, s:o}", "kind", "explain", "allowed", 1,
                              "code", "S_OK", "rule", "rule_line", "protocol", "source_network",
                              "destination_network", "relationship", "published", "text", ex_json_text(x.text)));
        return;
    }
    if (FWX_FAILED(hr)) {
        char msg[128];
        snprintf(msg, sizeof msg, "explain: %s", fwx_strerror(hr));
        client_refuse(c, msg);
        return;
    }
    buf_json(b, json_pack("{s:s, s:b, s:o, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "kind", "explain", "allowed",
                          FWX_SUCCEEDED(x.result), "code", ex_json_text(fwx_err_name(x.result)), "rule",
                          ex_json_text(x.rule[0] ? x.rule : "default"), "rule_line", (int)x.rule_line, "protocol",
                          ex_json_text(x.protocol[0] ? x.protocol : NULL), "source_network",
                          ex_json_text(x.source_network), "destination_network", ex_json_text(x.destination_network),
                          "relationship", ex_json_text(x.relationship), "published",
                          ex_json_text(x.published[0] ? x.published : NULL), "text", ex_json_text(x.text)));
}

/* Refuses a request above the socket's level; true when refused. */
static bool needs_admin(ctl_client *c, const char *what)
{
    ctl_server *s = c->srv;
    if (s->level >= CTL_LEVEL_ADMIN)
        return false;
    host_log(s, FWX_LOG_WARN, "\"%s\" refused: this socket's level is operator (read-only)", what);
    char msg[128];
    snprintf(msg, sizeof msg, "permission denied: \"%s\" needs level admin; this socket is operator", what);
    client_refuse(c, msg);
    return true;
}

static void client_answer(ctl_client *c, char *req)
{
    static const struct {
        const char *what;
        uint32_t kinds;
    } lists[] = {
        {"sessions", FWX_OBJECT_SESSION},
        {"connections", FWX_OBJECT_CONNECTION},
        {"grants", FWX_OBJECT_GRANT},
        {"plugins", FWX_OBJECT_PLUGIN},
        {"all", FWX_OBJECT_SESSION | FWX_OBJECT_CONNECTION | FWX_OBJECT_GRANT | FWX_OBJECT_PLUGIN},
    };
    ctl_server *s = c->srv;
    ctl_buf *b = &c->out;
    bool known = false;
    if (strncmp(req, "list ", 5) == 0) {
        char *what = req + 5, *rest = strchr(what, ' ');
        if (rest != NULL)
            *rest++ = '\0';
        for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
            if (strcmp(what, lists[i].what) == 0) {
                ctl_filter f;
                char none[1] = "";
                const char *why = filter_parse(rest ? rest : none, &f);
                if (why != NULL) {
                    client_refuse(c, why);
                    return;
                }
                /* Every loop holds the same plugins: they are listed once, from loop 0. */
                unsigned n = n_loops(s);
                for (unsigned k = 0; k < n; k++) {
                    ctl_list l = {b, &f, k == 0 ? lists[i].kinds : lists[i].kinds & ~(uint32_t)FWX_OBJECT_PLUGIN, k};
                    if (l.kinds != 0 && on_loop(s, k, list_on_loop, &l) != 0)
                        host_log(s, FWX_LOG_WARN, "list: loop %u did not answer; its objects are left out", k);
                }
                known = true;
                break;
            }
        }
        if (!known && rest != NULL)
            rest[-1] = ' ';
    } else if (strcmp(req, "stats") == 0) {
        buf_json(b, stats_json(s, n_loops(s)));
        known = true;
    } else if (strcmp(req, "loops") == 0) {
        answer_loops(s, b);
        known = true;
    } else if (strcmp(req, "redirects") == 0) {
        /* The host's redirect-record registry: not this gateway's objects but every
           cooperating proxy's outbound flows, as the next hop would read them. */
        fwx_redirect_registry_list(redirect_cb, b);
        known = true;
    } else if (strcmp(req, "version") == 0) {
        char abi[32];
        snprintf(abi, sizeof abi, "%d.%d", FWX_ABI_VERSION_MAJOR, FWX_ABI_VERSION_MINOR);
        buf_json(b, json_pack("{s:s, s:i, s:s}", "kind", "version", "protocol", CTL_PROTOCOL_VERSION, "abi", abi));
        known = true;
    } else if (strncmp(req, "kill ", 5) == 0) {
        if (needs_admin(c, "kill"))
            return;
        char what[16];
        unsigned long long id;
        unsigned loop = 0;
        char tail;
        int words = sscanf(req + 5, "%15s %llu loop=%u%c", what, &id, &loop, &tail);
        unsigned n = n_loops(s);
        if ((words != 2 && words != 3) || (strcmp(what, "session") != 0 && strcmp(what, "connection") != 0) ||
            strchr(req + 5, '-') != NULL || (words == 2 && sscanf(req + 5, "%15s %llu%c", what, &id, &tail) != 2) || loop >= n) {
            client_refuse(c, "usage: kill session ID | kill connection ID  [loop=N]");
            return;
        }
        bool sess = strcmp(what, "session") == 0;
        ctl_kill k = {sess ? FWX_OBJECT_SESSION : FWX_OBJECT_CONNECTION, id, false, FWX_E_NOT_FOUND};
        if (words == 2 && n > 1) {
            /* Ids are each loop's own: the one loop that has it, or the operator says which. */
            unsigned found = 0;
            for (unsigned i = 0; i < n; i++) {
                if (on_loop(s, i, find_on_loop, &k) == 0 && k.found) {
                    found++;
                    loop = i;
                }
            }
            if (found > 1) {
                char msg[128];
                snprintf(msg, sizeof msg, "kill %s %llu: %u loops have one; say which with loop=N (fwxctl loops)", what,
                         id, found);
                client_refuse(c, msg);
                return;
            }
        }
        if (on_loop(s, loop, kill_on_loop, &k) != 0)
            k.hr = FWX_E_TERMINATING;
        fwx_result hr = k.hr;
        if (FWX_FAILED(hr)) {
            char msg[128];
            snprintf(msg, sizeof msg, "kill %s %llu: %s", what, id,
                     hr == FWX_E_NOT_FOUND ? "no such object" : fwx_strerror(hr));
            client_refuse(c, msg);
            return;
        }
        host_log(s, FWX_LOG_INFO, "kill %s %llu: done", what, id);
        buf_json(b, json_pack("{s:s, s:s, s:I}", "kind", "killed", "what", what, "id", (json_int_t)id));
        known = true;
    } else if (strncmp(req, "explain ", 8) == 0) {
        explain(c, req + 8);
        if (c->closing)
            return;
        known = true;
    } else if (strcmp(req, "reload") == 0) {
        if (needs_admin(c, "reload"))
            return;
        if (s->hooks.reload == NULL) {
            client_refuse(c, "reload: this host cannot reload");
            return;
        }
        char msg[1024] = "";
        int rc = s->hooks.reload(s->hooks.arg, msg, sizeof msg);
        buf_json(b, json_pack("{s:s, s:b, s:o}", "kind", "reload", "ok", rc == 0, "message", ex_json_text(msg)));
        known = true;
    } else if (strcmp(req, "metrics") == 0) {
        char *text = s->hooks.metrics ? s->hooks.metrics(s->hooks.arg) : NULL;
        if (text == NULL) {
            client_refuse(c, "metrics: not available from this host");
            return;
        }
        buf_json(b, json_pack("{s:s, s:o}", "kind", "metrics", "text", ex_json_text(text)));
        free(text);
        known = true;
    } else if (strcmp(req, "events") == 0) {
        /* From now on this client gets every event; it reads until it closes. */
        c->streaming = true;
        atomic_fetch_add(&s->event_clients, 1);
        uv_timer_stop(&c->timer);
        static const char started[] = "{\"kind\":\"events\",\"started\":true}\n";
        stream_line(c, started, sizeof started - 1);
        return;
    }
    if (!known) {
        char msg[CTL_MAX_REQUEST + 160];
        snprintf(msg, sizeof msg,
                 "unknown request \"%s\" (expected list sessions|connections|grants|plugins|all [FILTER...], "
                 "redirects, stats, loops, version, kill, explain, reload, events or metrics)",
                 req);
        client_refuse(c, msg);
        return;
    }
    buf_json(b, json_pack("{s:b}", "end", 1));
    if (b->oom) {
        client_refuse(c, "out of memory");
        return;
    }
    /* The answer gets a fresh timeout: a client that does not read it is closed too. */
    uv_timer_start(&c->timer, timeout_cb, s->timeout_ms, 0);
    uv_buf_t ub = uv_buf_init(b->p, (unsigned)b->len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &ub, 1, write_cb) != 0) {
        client_close(c);
        return;
    }
    c->writing = true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ctl_client *c = h->data;
    (void)suggested;
    if (c->streaming) { /* an events client's input is only watched for its end */
        static char discard[256];
        *buf = uv_buf_init(discard, sizeof discard);
        return;
    }
    /* Read straight into the request buffer: never more than CTL_MAX_REQUEST + 1 bytes. */
    *buf = uv_buf_init(c->req + c->req_len, (unsigned)(sizeof c->req - c->req_len));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    ctl_client *c = stream->data;
    (void)buf;
    if (c->streaming) {
        if (nread < 0)
            client_close(c);
        return;
    }
    if (nread < 0) {
        client_close(c); /* gone (or EOF) before a whole request line */
        return;
    }
    size_t start = c->req_len;
    c->req_len += (size_t)nread;
    char *nl = memchr(c->req + start, '\n', (size_t)nread);
    if (nl == NULL) {
        if (c->req_len >= sizeof c->req)
            client_refuse(c, "request too long");
        return;
    }
    uv_read_stop(stream); /* one request per connection; the rest is ignored */
    size_t len = (size_t)(nl - c->req);
    if (len > 0 && c->req[len - 1] == '\r')
        len--;
    c->req[len] = '\0';
    if (strlen(c->req) != len) {
        client_refuse(c, "request contains a NUL byte");
        return;
    }
    client_answer(c, c->req);
    if (c->streaming && !c->closing && uv_read_start(stream, alloc_cb, read_cb) != 0)
        client_close(c);
}

static void connection_cb(uv_stream_t *listener, int status)
{
    ctl_server *s = listener->data;
    if (status < 0 || s->closing)
        return;
    ctl_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return; /* libuv calls again while the connection waits in the backlog */
    c->srv = s;
    if (uv_pipe_init(s->loop, &c->pipe, 0) != 0) {
        free(c);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->pipe.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    s->refs++;
    c->next = s->clients;
    if (s->clients != NULL)
        s->clients->prev = c;
    s->clients = c;
    s->n_clients++;
    if (uv_accept(listener, (uv_stream_t *)&c->pipe) != 0) {
        client_close(c);
        return;
    }
    if (s->n_clients > CTL_MAX_CLIENTS) {
        client_refuse(c, "too many clients");
        return;
    }
    uv_timer_start(&c->timer, timeout_cb, s->timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb) != 0)
        client_close(c);
}

/* ---- the server ------------------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Removes a socket file nobody listens on. Returns 0, or -1 with err filled. */
static int remove_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        set_err(err, errlen, "ctl: cannot stat %s: %s", path, uv_strerror(-errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        set_err(err, errlen, "ctl: %s exists and is not a socket, not replacing it", path);
        return -1;
    }
    /* A non-blocking connect to a Unix socket answers at once: refused means stale. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errlen, "ctl: socket: %s", uv_strerror(-errno));
        return -1;
    }
    struct sockaddr_un sun = {0};
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof sun);
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
        set_err(err, errlen, "ctl: %s: another server is listening there", path);
        return -1;
    }
    if (e != ECONNREFUSED && e != ENOENT) {
        set_err(err, errlen, "ctl: cannot probe %s: %s", path, uv_strerror(-e));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        set_err(err, errlen, "ctl: cannot remove stale socket %s: %s", path, uv_strerror(-errno));
        return -1;
    }
    return 0;
}

static void listener_closed_cb(uv_handle_t *h)
{
    server_unref(h->data);
}

int ctl_path_check(const char *path, bool create, char *err, size_t errlen)
{
    char dir[CTL_SUN_PATH_MAX];
    if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof dir) {
        set_err(err, errlen, "socket path must be 1 to %zu bytes", sizeof dir - 1);
        return -1;
    }
    memcpy(dir, path, strlen(path) + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT && strcmp(dir, CTL_DEFAULT_DIR) == 0) {
        if (!create)
            return 0; /* a start makes it */
        /* mkdir's mode is masked by the umask; chmod says exactly what it is to be. */
        if ((mkdir(dir, 0750) != 0 && errno != EEXIST) || chmod(dir, 0750) != 0) {
            set_err(err, errlen, "cannot create directory %s: %s (not root? give a socket path in a directory of "
                    "yours, or none)", dir, strerror(errno));
            return -1;
        }
    }
    if (stat(dir, &st) != 0) {
        set_err(err, errlen, "directory %s: %s", dir,
                errno == ENOENT ? "does not exist (create it, owned by root, not writable by others)" : strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "%s is not a directory", dir);
        return -1;
    }
    if (st.st_mode & S_IWOTH) {
        set_err(err, errlen, "directory %s is writable by others: anyone could take the socket's name first "
                "(use a directory only root can write, such as " CTL_DEFAULT_DIR ")", dir);
        return -1;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        set_err(err, errlen, "directory %s belongs to uid %u, not to root or to this user: its owner could take "
                "the socket's name first", dir, (unsigned)st.st_uid);
        return -1;
    }
    return 0;
}

ctl_server *ctl_server_start(uv_loop_t *loop, fwx_firewall *fw, const char *path, char *err, size_t errlen)
{
    ctl_config cfg = {.path = path, .mode = 0600, .gid = -1, .level = CTL_LEVEL_ADMIN};
    return ctl_server_start_with(loop, fw, &cfg, err, errlen);
}

ctl_server *ctl_server_start_with(uv_loop_t *loop, fwx_firewall *fw, const ctl_config *cfg, char *err,
                                  size_t errlen)
{
    const char *path = cfg ? cfg->path : NULL;
    set_err(err, errlen, "%s", "");
    if (loop == NULL || fw == NULL || path == NULL || path[0] == '\0') {
        set_err(err, errlen, "ctl: no loop, firewall or socket path");
        return NULL;
    }
    if (strlen(path) >= CTL_SUN_PATH_MAX) {
        set_err(err, errlen, "ctl: socket path %s is longer than %zu bytes", path, CTL_SUN_PATH_MAX - 1);
        return NULL;
    }
    if (remove_stale(path, err, errlen) != 0)
        return NULL;
    /* libuv writes to sockets with write(2): a client that disconnects before it has read its
       answer would raise SIGPIPE, whose default action kills the host. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    ctl_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(err, errlen, "ctl: out of memory");
        return NULL;
    }
    s->loop = loop;
    s->fw = fw;
    s->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    s->level = cfg->level ? cfg->level : CTL_LEVEL_ADMIN;
    if (cfg->hooks != NULL)
        s->hooks = *cfg->hooks;
    memcpy(s->path, path, strlen(path) + 1);
    int rc = uv_pipe_init(loop, &s->listener, 0);
    if (rc != 0) {
        set_err(err, errlen, "ctl: %s: %s", path, uv_strerror(rc));
        free(s);
        return NULL;
    }
    s->listener.data = s;
    s->refs = 1;
    rc = uv_pipe_bind(&s->listener, path);
    if (rc != 0) {
        set_err(err, errlen, "ctl: cannot bind %s: %s", path, uv_strerror(rc));
        goto fail;
    }
    /* Bound but not listening yet, so nobody can connect before the group and mode are set. */
    struct stat st;
    if (cfg->gid >= 0 && chown(path, (uid_t)-1, (gid_t)cfg->gid) != 0) {
        set_err(err, errlen, "ctl: cannot give %s to group %ld: %s", path, cfg->gid, uv_strerror(-errno));
        unlink(path);
        goto fail;
    }
    if (chmod(path, cfg->mode ? cfg->mode : 0600) != 0 || lstat(path, &st) != 0) {
        set_err(err, errlen, "ctl: cannot chmod %s: %s", path, uv_strerror(-errno));
        unlink(path);
        goto fail;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->have_ino = true;
    rc = uv_listen((uv_stream_t *)&s->listener, CTL_MAX_CLIENTS, connection_cb);
    if (rc != 0) {
        set_err(err, errlen, "ctl: cannot listen on %s: %s", path, uv_strerror(rc));
        unlink(path);
        goto fail;
    }
    return s;
fail:
    s->closing = true;
    uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
    return NULL;
}

unsigned ctl_server_event_clients(ctl_server *s)
{
    return s != NULL ? atomic_load(&s->event_clients) : 0;
}

void ctl_server_set_level(ctl_server *s, ctl_level level)
{
    if (s != NULL)
        s->level = level ? level : CTL_LEVEL_ADMIN;
}

void ctl_server_set_timeout(ctl_server *s, uint64_t ms)
{
    if (s != NULL)
        s->timeout_ms = ms ? ms : 1;
}

void ctl_server_close(ctl_server *s)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    while (s->clients != NULL)
        client_close(s->clients);
    /* Unlink only our own socket: another server may have replaced it since. */
    struct stat st;
    if (s->have_ino && lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->path);
    uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
}
