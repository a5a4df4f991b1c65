/*
 * fwx examples - the control server (see ctl.h for the protocol).
 * SPDX-License-Identifier: MIT
 *
 * Each client gets a uv_pipe_t and a uv_timer_t; the answer is built in memory and sent with one
 * uv_write, so nothing here ever blocks the loop. Memory is freed only in close callbacks: a
 * client when both its handles have closed, the server when its listener and every client have.
 */
#include "ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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
} ctl_client;

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

static void buf_lit(ctl_buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_printf(ctl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(ctl_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* A JSON string; NULL becomes null. */
static void buf_str(ctl_buf *b, const char *s)
{
    if (s == NULL) {
        buf_lit(b, "null");
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            buf_add(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            buf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            buf_add(b, (const char *)p + i, 1);
            i++;
        } else {
            size_t len = utf8_seq(p + i, n - i);
            if (len == 0) {
                buf_lit(b, "\\ufffd");
                i++;
            } else {
                buf_add(b, (const char *)p + i, len);
                i += len;
            }
        }
    }
    buf_add(b, "\"", 1);
}

/* "ip:port", "[v6]:port", or without the port when it is 0; null when there is no address. */
static void buf_addr(ctl_buf *b, const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 16];
    uint16_t port;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip) == NULL)
            goto none;
        port = ntohs(a->sin_port);
        if (port != 0)
            snprintf(text, sizeof text, "%s:%u", ip, port);
        else
            snprintf(text, sizeof text, "%s", ip);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip) == NULL)
            goto none;
        port = ntohs(a->sin6_port);
        if (port != 0)
            snprintf(text, sizeof text, "[%s]:%u", ip, port);
        else
            snprintf(text, sizeof text, "%s", ip);
    } else
        goto none;
    buf_str(b, text);
    return;
none:
    buf_lit(b, "null");
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

static void buf_flags(ctl_buf *b, uint32_t flags, const ctl_flag_name *names)
{
    bool first = true;
    buf_printf(b, "\"flags\":%u,\"flag_names\":[", (unsigned)flags);
    for (; names->name != NULL; names++) {
        if (flags & names->bit) {
            buf_printf(b, "%s\"%s\"", first ? "" : ",", names->name);
            flags &= ~names->bit;
            first = false;
        }
    }
    for (unsigned bit = 0; bit < 32; bit++) {
        if (flags & (1u << bit)) {
            buf_printf(b, "%s\"0x%x\"", first ? "" : ",", 1u << bit);
            first = false;
        }
    }
    buf_lit(b, "]");
}

static void list_cb(void *arg, const fwx_object_info *info)
{
    ctl_buf *b = arg;
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
    buf_lit(b, "{\"kind\":");
    buf_str(b, kind);
    buf_printf(b, ",\"id\":%llu,\"session\":", (unsigned long long)info->id);
    if (info->kind == FWX_OBJECT_PLUGIN)
        buf_lit(b, "null");
    else
        buf_printf(b, "%llu", (unsigned long long)info->session_id);
    buf_lit(b, ",\"protocol\":");
    if (info->protocol == FWX_PROTOCOL_TCP)
        buf_lit(b, "\"tcp\"");
    else if (info->protocol == FWX_PROTOCOL_UDP)
        buf_lit(b, "\"udp\"");
    else if (info->protocol == 0)
        buf_lit(b, "null");
    else
        buf_printf(b, "%d", (int)info->protocol);
    buf_lit(b, ",\"client\":");
    buf_addr(b, &info->client);
    buf_lit(b, ",\"peer\":");
    buf_addr(b, &info->peer);
    buf_lit(b, ",\"local\":");
    buf_addr(b, &info->local);
    buf_lit(b, ",");
    buf_flags(b, info->flags, names);
    buf_lit(b, ",\"mode\":");
    bool has_mode = is_conn || info->kind == FWX_OBJECT_GRANT;
    buf_lit(b, !has_mode ? "null" : info->kernel_mode ? "\"kernel\"" : "\"user\"");
    if (is_conn)
        buf_printf(b, ",\"bytes_in\":%llu,\"bytes_out\":%llu", (unsigned long long)info->bytes_in,
                   (unsigned long long)info->bytes_out);
    else
        buf_lit(b, ",\"bytes_in\":null,\"bytes_out\":null");
    buf_printf(b, ",\"age_ms\":%llu,\"expires_in_ms\":", (unsigned long long)info->age_ms);
    if (info->kind == FWX_OBJECT_GRANT && info->expires_in_ms >= 0)
        buf_printf(b, "%lld", (long long)info->expires_in_ms);
    else
        buf_lit(b, "null");
    buf_lit(b, ",\"name\":");
    buf_str(b, info->name ? info->name : "");
    buf_lit(b, ",\"owner\":");
    buf_str(b, info->owner ? info->owner : "");
    /* The filter's class id for a plugin, the protocol's for a grant; a server older than the
       field (a shorter struct) says null. */
    buf_lit(b, ",\"guid\":");
    if ((info->kind == FWX_OBJECT_PLUGIN || info->kind == FWX_OBJECT_GRANT) &&
        info->struct_size >= offsetof(fwx_object_info, guid) + sizeof info->guid) {
        char g[FWX_GUID_STRLEN];
        buf_str(b, fwx_guid_format(&info->guid, g));
    } else {
        buf_lit(b, "null");
    }
    buf_lit(b, "}\n");
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
    buf_lit(b, "{\"kind\":\"redirect\",\"flow\":");
    buf_str(b, flow);
    buf_printf(b, ",\"writer\":%ld,\"slots\":%u,\"original\":", pid, (unsigned)slots);
    if (FWX_SUCCEEDED(fwx_redirect_record_original_destination(rec, &orig)))
        buf_addr(b, &orig);
    else
        buf_lit(b, "null");
    fwx_redirect_app a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    if (FWX_SUCCEEDED(fwx_redirect_record_original_app(rec, &a)) && a.pid != 0)
        snprintf(app, sizeof app, "pid %u uid %ld cgroup %s", (unsigned)a.pid,
                 a.uid == FWX_REDIRECT_UID_UNKNOWN ? -1L : (long)a.uid, a.cgroup_path ? a.cgroup_path : "-");
    else
        snprintf(app, sizeof app, "-");
    buf_lit(b, ",\"application\":");
    buf_str(b, app);
    buf_lit(b, ",\"hops\":[");
    for (size_t i = 0; i < fwx_redirect_record_hop_count(rec); i++) {
        fwx_redirect_hop h;
        memset(&h, 0, sizeof h);
        h.struct_size = sizeof h;
        char g[FWX_GUID_STRLEN] = "?";
        if (FWX_SUCCEEDED(fwx_redirect_record_hop(rec, i, &h)))
            fwx_guid_format(&h.provider, g);
        if (i > 0)
            buf_lit(b, ",");
        buf_str(b, g);
    }
    buf_lit(b, "]}\n");
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
    buf_lit(&b, "{\"error\":");
    buf_str(&b, message);
    buf_lit(&b, "}\n");
    if (!b.oom)
        client_try_send(c, b.p);
    free(b.p);
    client_close(c);
}

static void client_answer(ctl_client *c, const char *req)
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
        for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
            if (strcmp(req + 5, lists[i].what) == 0) {
                fwx_firewall_list(s->fw, lists[i].kinds, list_cb, b);
                known = true;
                break;
            }
        }
    } else if (strcmp(req, "stats") == 0) {
        fwx_firewall_stats st = {0};
        st.struct_size = sizeof st;
        fwx_firewall_get_stats(s->fw, &st);
        buf_printf(b, "{\"kind\":\"stats\",\"sessions\":%u,\"connections\":%u,\"permissions\":%u,", st.sessions,
                   st.connections, st.permissions);
        uint64_t idle = 0, handshake = 0;
        fwx_firewall_get_timeout_stats(s->fw, &idle, &handshake);
        buf_printf(b, "\"bound_ports\":%u,\"factories\":%u,\"plugins\":%u,", st.bound_ports, st.factories,
                   st.plugins);
        buf_printf(b, "\"idle_timeouts\":%llu,\"handshake_timeouts\":%llu}\n", (unsigned long long)idle,
                   (unsigned long long)handshake);
        known = true;
    } else if (strcmp(req, "redirects") == 0) {
        /* The host's redirect-record registry: not this gateway's objects but every
           cooperating proxy's outbound flows, as the next hop would read them. */
        fwx_redirect_registry_list(redirect_cb, b);
        known = true;
    } else if (strcmp(req, "version") == 0) {
        buf_printf(b, "{\"kind\":\"version\",\"protocol\":%d,\"abi\":\"%d.%d\"}\n", CTL_PROTOCOL_VERSION,
                   FWX_ABI_VERSION_MAJOR, FWX_ABI_VERSION_MINOR);
        known = true;
    }
    if (!known) {
        char msg[CTL_MAX_REQUEST + 128];
        snprintf(msg, sizeof msg,
                 "unknown request \"%s\" (expected list sessions|connections|grants|plugins|all, redirects, stats or "
                 "version)",
                 req);
        client_refuse(c, msg);
        return;
    }
    buf_lit(b, "{\"end\":true}\n");
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
    /* Read straight into the request buffer: never more than CTL_MAX_REQUEST + 1 bytes. */
    *buf = uv_buf_init(c->req + c->req_len, (unsigned)(sizeof c->req - c->req_len));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    ctl_client *c = stream->data;
    (void)buf;
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
    /* Bound but not listening yet, so nobody can connect before the mode is 0600. */
    struct stat st;
    if (chmod(path, 0600) != 0 || lstat(path, &st) != 0) {
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
