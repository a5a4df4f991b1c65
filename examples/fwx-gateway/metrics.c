/*
 * fwx-gateway: Prometheus metrics (see metrics.h).
 *
 * The HTTP side is deliberately small: one request per connection, the head read into a fixed
 * buffer (GW_METRICS_MAX_REQUEST), the request line checked exactly ("GET /metrics HTTP/1.x"),
 * anything else answered 400, 404 or 405 and closed; at most GW_METRICS_MAX_CLIENTS at once,
 * each with a timeout. Nothing a client sends is ever echoed back.
 * SPDX-License-Identifier: MIT
 */
#include "metrics.h"
#include "loops.h"

#include <stdatomic.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_REASONS 8
static const char *const reasons[N_REASONS] = {"protocol_rules", "site_rules", "network_rules", "no_filter",
                                                "filter",         "quarantine", "limits",        "other"};

/* What one event loop counts (loops.h). Written by its own thread, read by loop 0's for the
   exposition and `fwxctl loops`: relaxed atomics, each counter on its own. */
typedef struct loop_counts {
    atomic_uint_fast64_t sessions_opened;
    atomic_uint_fast64_t conns_opened[2]; /* [kernel] */
    atomic_uint_fast64_t conns_closed[2];
    atomic_uint_fast64_t perms_added, perms_removed;
    atomic_uint_fast64_t refusals[N_REASONS];
    atomic_uint_fast64_t closed_bytes_in, closed_bytes_out;
    atomic_uint_fast64_t lag_last_ns, lag_max_ns;
    /* the loop's own */
    uv_timer_t lag_timer;
    uint64_t lag_expected; /* uv_hrtime() the timer should fire at */
    bool started;
} loop_counts;

static loop_counts counts[GW_MAX_LOOPS];

static struct {
    uv_loop_t *loop;
    fwx_firewall *fw;
    const char *backend;
    bool started;
    uv_tcp_t *http; /* allocated: a reload closes one and opens the next before the close is done */
    unsigned n_clients;
    struct hclient *clients;
} m;

#define LAG_INTERVAL_MS 250
#define ADD(c, v) atomic_fetch_add_explicit(&(c), (v), memory_order_relaxed)
#define GET(c) ((uint64_t)atomic_load_explicit(&(c), memory_order_relaxed))

static void lag_cb(uv_timer_t *t)
{
    loop_counts *lc = t->data;
    uint64_t now = uv_hrtime();
    uint64_t lag = now > lc->lag_expected ? now - lc->lag_expected : 0;
    atomic_store_explicit(&lc->lag_last_ns, lag, memory_order_relaxed);
    if (lag > GET(lc->lag_max_ns))
        atomic_store_explicit(&lc->lag_max_ns, lag, memory_order_relaxed);
    lc->lag_expected = now + (uint64_t)LAG_INTERVAL_MS * 1000000;
}

void gw_metrics_loop_start(unsigned i, uv_loop_t *loop, fwx_firewall *fw)
{
    loop_counts *lc = &counts[i];
    (void)fwx_firewall_time_plugins(fw, 1);
    uv_timer_init(loop, &lc->lag_timer);
    lc->lag_timer.data = lc;
    lc->lag_expected = uv_hrtime() + (uint64_t)LAG_INTERVAL_MS * 1000000;
    uv_timer_start(&lc->lag_timer, lag_cb, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
    uv_unref((uv_handle_t *)&lc->lag_timer);
    lc->started = true;
}

void gw_metrics_loop_stop(unsigned i)
{
    if (counts[i].started) {
        uv_close((uv_handle_t *)&counts[i].lag_timer, NULL);
        counts[i].started = false;
    }
}

void gw_metrics_loop_served(unsigned i, uint64_t *sessions, uint64_t *connections)
{
    loop_counts *lc = &counts[i < GW_MAX_LOOPS ? i : 0];
    *sessions = GET(lc->sessions_opened);
    *connections = GET(lc->conns_opened[0]) + GET(lc->conns_opened[1]);
}

void gw_metrics_start(uv_loop_t *loop, fwx_firewall *fw, const char *backend)
{
    m.loop = loop;
    m.fw = fw;
    m.backend = backend;
    m.started = true;
    gw_metrics_loop_start(0, loop, fw);
}

void gw_metrics_event(const fwx_event *ev)
{
    gw_loop *L = gw_loop_self();
    loop_counts *lc = &counts[L != NULL ? L->index : 0];
    int k = ev->kernel_mode != 0;
    switch (ev->type) {
    case FWX_EVENT_SESSION_OPENED:
        ADD(lc->sessions_opened, 1);
        break;
    case FWX_EVENT_CONNECTION_OPENED:
        ADD(lc->conns_opened[k], 1);
        break;
    case FWX_EVENT_CONNECTION_CLOSED:
        ADD(lc->conns_closed[k], 1);
        ADD(lc->closed_bytes_in, ev->bytes_in);
        ADD(lc->closed_bytes_out, ev->bytes_out);
        break;
    case FWX_EVENT_PERMISSION_ADDED:
        ADD(lc->perms_added, 1);
        break;
    case FWX_EVENT_PERMISSION_REMOVED:
        ADD(lc->perms_removed, 1);
        break;
    case FWX_EVENT_CONNECTION_REFUSED: {
        size_t i = 0;
        while (i < N_REASONS - 1 && (ev->reason == NULL || strcmp(ev->reason, reasons[i]) != 0))
            i++;
        ADD(lc->refusals[i], 1);
        break;
    }
    default:
        break;
    }
}

/* ---- the exposition ------------------------------------------------------------------- */

typedef struct mbuf {
    char *p;
    size_t len, cap;
    bool oom;
} mbuf;

static void out(mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(mbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A label value: backslash, quote and newline escaped (the exposition format's rule). */
static void out_label(mbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            out(b, "\\%c", *s);
        else if (*s == '\n')
            out(b, "\\n");
        else
            out(b, "%c", *s);
    }
}

typedef struct live {
    uint64_t conns[2];
    uint64_t bytes_in, bytes_out;
} live;

static void live_cb(void *arg, const fwx_object_info *info)
{
    live *l = arg;
    if (info->kind != FWX_OBJECT_CONNECTION)
        return;
    l->conns[info->kernel_mode != 0]++;
    l->bytes_in += info->bytes_in;
    l->bytes_out += info->bytes_out;
}

/* The plugins' handler times, summed over the loops by plugin name. */
typedef struct timings {
    fwx_plugin_timing t[64];
    char names[64][64];
    size_t n;
} timings;

static void timing_add_cb(void *arg, const fwx_plugin_timing *t)
{
    timings *all = arg;
    const char *name = t->name ? t->name : "";
    size_t i = 0;
    while (i < all->n && strcmp(all->names[i], name) != 0)
        i++;
    if (i == all->n) {
        if (all->n == sizeof all->t / sizeof all->t[0])
            return;
        all->n++;
        memset(&all->t[i], 0, sizeof all->t[i]);
        snprintf(all->names[i], sizeof all->names[i], "%s", name);
        all->t[i].name = all->names[i];
    }
    all->t[i].calls += t->calls;
    all->t[i].total_ns += t->total_ns;
    for (size_t b = 0; b < FWX_PLUGIN_TIME_BUCKETS; b++)
        all->t[i].buckets[b] += t->buckets[b];
}

static void timing_cb(mbuf *b, const fwx_plugin_timing *t)
{
    static const uint64_t bounds_us[] = FWX_PLUGIN_TIME_BOUNDS_US;
    uint64_t cum = 0;
    for (size_t i = 0; i < FWX_PLUGIN_TIME_BUCKETS; i++) {
        cum += t->buckets[i];
        out(b, "fwx_plugin_handler_seconds_bucket{plugin=\"");
        out_label(b, t->name ? t->name : "");
        if (i + 1 < FWX_PLUGIN_TIME_BUCKETS)
            out(b, "\",le=\"%g\"} %llu\n", (double)bounds_us[i] / 1e6, (unsigned long long)cum);
        else
            out(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    out(b, "fwx_plugin_handler_seconds_sum{plugin=\"");
    out_label(b, t->name ? t->name : "");
    out(b, "\"} %.9f\n", (double)t->total_ns / 1e9);
    out(b, "fwx_plugin_handler_seconds_count{plugin=\"");
    out_label(b, t->name ? t->name : "");
    out(b, "\"} %llu\n", (unsigned long long)t->calls);
}

/* What one loop holds now, read on its own thread. */
typedef struct loop_now {
    fwx_firewall_stats st;
    live l;
    timings *all;
    bool answered;
} loop_now;

static void gather_on_loop(gw_loop *L, void *arg)
{
    loop_now *n = arg;
    if (L->fw == NULL)
        return;
    n->st.struct_size = sizeof n->st;
    fwx_firewall_get_stats(L->fw, &n->st);
    fwx_firewall_list(L->fw, FWX_OBJECT_CONNECTION, live_cb, &n->l);
    fwx_firewall_plugin_timings(L->fw, timing_add_cb, n->all);
    n->answered = true;
}

char *gw_metrics_text(void)
{
    mbuf b = {malloc(4096), 0, 4096, false};
    timings *all = calloc(1, sizeof *all);
    unsigned n_loops = gw_loops_count() ? gw_loops_count() : 1;
    loop_now *now = calloc(n_loops, sizeof *now);
    if (b.p == NULL || all == NULL || now == NULL || !m.started) {
        free(b.p);
        free(all);
        free(now);
        return NULL;
    }
    /* Every loop's live objects on its own thread; the counters are read here. */
    fwx_firewall_stats st = {0};
    live l = {0};
    uint64_t sessions_opened = 0, conns_opened[2] = {0}, conns_closed[2] = {0}, perms_added = 0;
    uint64_t refusals[N_REASONS] = {0}, closed_in = 0, closed_out = 0, lag_last = 0, lag_max = 0;
    for (unsigned i = 0; i < n_loops; i++) {
        now[i].all = all;
        gw_loop *L = gw_loop_at(i);
        if (L != NULL)
            (void)gw_loop_call(L, gather_on_loop, &now[i]);
        else if (i == 0) { /* a host without loops.h's loops */
            now[0].st.struct_size = sizeof now[0].st;
            fwx_firewall_get_stats(m.fw, &now[0].st);
            fwx_firewall_list(m.fw, FWX_OBJECT_CONNECTION, live_cb, &now[0].l);
            fwx_firewall_plugin_timings(m.fw, timing_add_cb, all);
            now[0].answered = true;
        }
        st.sessions += now[i].st.sessions;
        st.permissions += now[i].st.permissions;
        st.bound_ports += now[i].st.bound_ports;
        for (int k = 0; k < 2; k++)
            l.conns[k] += now[i].l.conns[k];
        l.bytes_in += now[i].l.bytes_in;
        l.bytes_out += now[i].l.bytes_out;
        loop_counts *lc = &counts[i];
        sessions_opened += GET(lc->sessions_opened);
        for (int k = 0; k < 2; k++) {
            conns_opened[k] += GET(lc->conns_opened[k]);
            conns_closed[k] += GET(lc->conns_closed[k]);
        }
        perms_added += GET(lc->perms_added);
        for (size_t r = 0; r < N_REASONS; r++)
            refusals[r] += GET(lc->refusals[r]);
        closed_in += GET(lc->closed_bytes_in);
        closed_out += GET(lc->closed_bytes_out);
        if (GET(lc->lag_last_ns) > lag_last)
            lag_last = GET(lc->lag_last_ns);
        if (GET(lc->lag_max_ns) > lag_max)
            lag_max = GET(lc->lag_max_ns);
    }
    static const char *const modes[2] = {"user", "kernel"};
    out(&b, "# HELP fwx_sessions Open sessions.\n# TYPE fwx_sessions gauge\nfwx_sessions %u\n", st.sessions);
    out(&b, "# HELP fwx_sessions_opened_total Sessions opened since the start.\n"
            "# TYPE fwx_sessions_opened_total counter\nfwx_sessions_opened_total %llu\n",
        (unsigned long long)sessions_opened);
    out(&b, "# HELP fwx_connections Live connections by mode and backend.\n# TYPE fwx_connections gauge\n");
    for (int k = 0; k < 2; k++)
        out(&b, "fwx_connections{mode=\"%s\",backend=\"%s\"} %llu\n", modes[k], m.backend ? m.backend : "none",
            (unsigned long long)l.conns[k]);
    out(&b, "# HELP fwx_connections_opened_total Connections allowed since the start, by mode.\n"
            "# TYPE fwx_connections_opened_total counter\n");
    for (int k = 0; k < 2; k++)
        out(&b, "fwx_connections_opened_total{mode=\"%s\",backend=\"%s\"} %llu\n", modes[k],
            m.backend ? m.backend : "none", (unsigned long long)conns_opened[k]);
    out(&b, "# HELP fwx_connections_closed_total Connections ended since the start, by mode.\n"
            "# TYPE fwx_connections_closed_total counter\n");
    for (int k = 0; k < 2; k++)
        out(&b, "fwx_connections_closed_total{mode=\"%s\",backend=\"%s\"} %llu\n", modes[k],
            m.backend ? m.backend : "none", (unsigned long long)conns_closed[k]);
    out(&b, "# HELP fwx_permissions Outstanding permissions (AllowFutureConnect, redirect ports).\n"
            "# TYPE fwx_permissions gauge\nfwx_permissions %u\n", st.permissions);
    out(&b, "# HELP fwx_bound_ports Ports bound for clients.\n# TYPE fwx_bound_ports gauge\nfwx_bound_ports %u\n",
        st.bound_ports);
    out(&b, "# HELP fwx_permissions_added_total Permissions and ports set up since the start.\n"
            "# TYPE fwx_permissions_added_total counter\nfwx_permissions_added_total %llu\n",
        (unsigned long long)perms_added);
    out(&b, "# HELP fwx_refusals_total Connections refused, by reason.\n# TYPE fwx_refusals_total counter\n");
    for (size_t i = 0; i < N_REASONS; i++)
        out(&b, "fwx_refusals_total{reason=\"%s\"} %llu\n", reasons[i], (unsigned long long)refusals[i]);
    out(&b, "# HELP fwx_bytes_total Bytes relayed, ended and live connections, by direction.\n"
            "# TYPE fwx_bytes_total counter\n");
    out(&b, "fwx_bytes_total{direction=\"from_client\"} %llu\n", (unsigned long long)(closed_in + l.bytes_in));
    out(&b, "fwx_bytes_total{direction=\"from_peer\"} %llu\n", (unsigned long long)(closed_out + l.bytes_out));
    out(&b, "# HELP fwx_plugin_handler_seconds Time of each outermost call into a plugin.\n"
            "# TYPE fwx_plugin_handler_seconds histogram\n");
    for (size_t i = 0; i < all->n; i++)
        timing_cb(&b, &all->t[i]);
    out(&b, "# HELP fwx_loop_lag_seconds How late the loop ran a %d ms timer, last time (the latest loop).\n"
            "# TYPE fwx_loop_lag_seconds gauge\nfwx_loop_lag_seconds %.6f\n",
        LAG_INTERVAL_MS, (double)lag_last / 1e9);
    out(&b, "# HELP fwx_loop_lag_max_seconds The longest such lag since the start.\n"
            "# TYPE fwx_loop_lag_max_seconds gauge\nfwx_loop_lag_max_seconds %.6f\n",
        (double)lag_max / 1e9);
    /* Per event loop (fwx-gateway --threads): where the work went. */
    out(&b, "# HELP fwx_event_loops Event loops the gateway runs.\n# TYPE fwx_event_loops gauge\nfwx_event_loops %u\n",
        n_loops);
    out(&b, "# HELP fwx_loop_sessions Open sessions, by event loop.\n# TYPE fwx_loop_sessions gauge\n");
    for (unsigned i = 0; i < n_loops; i++)
        out(&b, "fwx_loop_sessions{loop=\"%u\"} %u\n", i, now[i].st.sessions);
    out(&b, "# HELP fwx_loop_connections Live connections, by event loop.\n# TYPE fwx_loop_connections gauge\n");
    for (unsigned i = 0; i < n_loops; i++)
        out(&b, "fwx_loop_connections{loop=\"%u\"} %llu\n", i,
            (unsigned long long)(now[i].l.conns[0] + now[i].l.conns[1]));
    out(&b, "# HELP fwx_loop_sessions_opened_total Sessions opened since the start, by event loop.\n"
            "# TYPE fwx_loop_sessions_opened_total counter\n");
    for (unsigned i = 0; i < n_loops; i++)
        out(&b, "fwx_loop_sessions_opened_total{loop=\"%u\"} %llu\n", i, (unsigned long long)GET(counts[i].sessions_opened));
    out(&b, "# HELP fwx_loop_connections_opened_total Connections allowed since the start, by event loop.\n"
            "# TYPE fwx_loop_connections_opened_total counter\n");
    for (unsigned i = 0; i < n_loops; i++)
        out(&b, "fwx_loop_connections_opened_total{loop=\"%u\"} %llu\n", i,
            (unsigned long long)(GET(counts[i].conns_opened[0]) + GET(counts[i].conns_opened[1])));
    out(&b, "# HELP fwx_loop_connections_closed_total Connections ended since the start, by event loop.\n"
            "# TYPE fwx_loop_connections_closed_total counter\n");
    for (unsigned i = 0; i < n_loops; i++)
        out(&b, "fwx_loop_connections_closed_total{loop=\"%u\"} %llu\n", i,
            (unsigned long long)(GET(counts[i].conns_closed[0]) + GET(counts[i].conns_closed[1])));
    out(&b, "# HELP fwx_loop_lag_by_loop_seconds How late each loop ran its %d ms timer, last time.\n"
            "# TYPE fwx_loop_lag_by_loop_seconds gauge\n", LAG_INTERVAL_MS);
    for (unsigned i = 0; i < n_loops; i++)
        out(&b, "fwx_loop_lag_by_loop_seconds{loop=\"%u\"} %.6f\n", i, (double)GET(counts[i].lag_last_ns) / 1e9);
    free(all);
    free(now);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- the HTTP listener ------------------------------------------------------------------ */

typedef struct hclient {
    struct hclient *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    char req[GW_METRICS_MAX_REQUEST];
    size_t len;
    char *answer;
    int handles;
    bool closing, answered;
} hclient;

static void hclient_closed(uv_handle_t *h)
{
    hclient *c = h->data;
    if (--c->handles > 0)
        return;
    free(c->answer);
    free(c);
    m.n_clients--;
}

static void hclient_close(hclient *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        m.clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, hclient_closed);
    uv_close((uv_handle_t *)&c->timer, hclient_closed);
}

static void hwrite_cb(uv_write_t *req, int status)
{
    (void)status;
    hclient_close(req->data);
}

static void hsend(hclient *c, const char *status, const char *type, const char *body)
{
    size_t blen = strlen(body);
    size_t cap = blen + 256;
    c->answer = malloc(cap);
    if (c->answer == NULL) {
        hclient_close(c);
        return;
    }
    int n = snprintf(c->answer, cap,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                     type, blen);
    memcpy(c->answer + n, body, blen);
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_buf_t b = uv_buf_init(c->answer, (unsigned)((size_t)n + blen));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, hwrite_cb) != 0)
        hclient_close(c);
}

static void htimeout(uv_timer_t *t)
{
    hclient_close(t->data);
}

static void halloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    hclient *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->req + c->len, (unsigned)(sizeof c->req - 1 - c->len));
}

/* The request line: exactly "GET /metrics HTTP/1.0" or "HTTP/1.1" (a query string is allowed
   and ignored). Headers are read to their end and not interpreted. */
static void hanswer(hclient *c)
{
    char *eol = strstr(c->req, "\r\n");
    size_t n = eol ? (size_t)(eol - c->req) : 0;
    c->req[n] = '\0';
    const char *sp1 = strchr(c->req, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL ||
        (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0)) {
        hsend(c, "400 Bad Request", "text/plain", "bad request\n");
        return;
    }
    size_t mlen = (size_t)(sp1 - c->req), plen = (size_t)(sp2 - sp1 - 1);
    if (mlen != 3 || memcmp(c->req, "GET", 3) != 0) {
        hsend(c, "405 Method Not Allowed", "text/plain", "only GET\n");
        return;
    }
    if (!((plen == 8 && memcmp(sp1 + 1, "/metrics", 8) == 0) || (plen > 8 && memcmp(sp1 + 1, "/metrics?", 9) == 0))) {
        hsend(c, "404 Not Found", "text/plain", "not found (try /metrics)\n");
        return;
    }
    char *text = gw_metrics_text();
    if (text == NULL) {
        hsend(c, "503 Service Unavailable", "text/plain", "out of memory\n");
        return;
    }
    hsend(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text);
    free(text);
}

static void hread(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hclient *c = s->data;
    (void)buf;
    if (c->answered)
        return;
    if (nread < 0) {
        hclient_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->req[c->len] = '\0';
    if (memchr(c->req, '\0', c->len) != NULL) {
        hsend(c, "400 Bad Request", "text/plain", "bad request\n");
        return;
    }
    if (strstr(c->req, "\r\n\r\n") != NULL) {
        hanswer(c);
        return;
    }
    if (c->len >= sizeof c->req - 1)
        hsend(c, "431 Request Header Fields Too Large", "text/plain", "request too large\n");
}

static void hconnection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    hclient *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    uv_tcp_init(m.loop, &c->tcp);
    uv_timer_init(m.loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    m.n_clients++;
    c->next = m.clients;
    if (m.clients != NULL)
        m.clients->prev = c;
    m.clients = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || m.n_clients > GW_METRICS_MAX_CLIENTS) {
        hclient_close(c);
        return;
    }
    uv_timer_start(&c->timer, htimeout, GW_METRICS_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, halloc, hread) != 0)
        hclient_close(c);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

int gw_metrics_listen(const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    char ip[64];
    const char *colon = strrchr(addr, ':');
    memset(&ss, 0, sizeof ss);
    if (colon == NULL || (size_t)(colon - addr) >= sizeof ip) {
        snprintf(err, errlen, "metrics_listen: \"%s\" is not IP:PORT", addr);
        return -1;
    }
    memcpy(ip, addr, (size_t)(colon - addr));
    ip[colon - addr] = '\0';
    if (ip[0] == '[' && ip[strlen(ip) - 1] == ']') {
        memmove(ip, ip + 1, strlen(ip) - 2);
        ip[strlen(ip) - 2] = '\0';
    }
    int port = atoi(colon + 1);
    if ((uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) != 0 &&
         uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss) != 0)) {
        snprintf(err, errlen, "metrics_listen: \"%s\" is not IP:PORT", addr);
        return -1;
    }
    uv_tcp_t *h = malloc(sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "metrics_listen %s: out of memory", addr);
        return -1;
    }
    uv_tcp_init(m.loop, h);
    int rc = uv_tcp_bind(h, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)h, GW_METRICS_MAX_CLIENTS, hconnection);
    if (rc != 0) {
        snprintf(err, errlen, "metrics_listen %s: %s", addr, uv_strerror(rc));
        uv_close((uv_handle_t *)h, free_handle);
        return -1;
    }
    m.http = h;
    return 0;
}

void gw_metrics_stop_http(void)
{
    if (m.http != NULL) {
        uv_close((uv_handle_t *)m.http, free_handle);
        m.http = NULL;
    }
    while (m.clients != NULL)
        hclient_close(m.clients);
}

void gw_metrics_stop(void)
{
    gw_metrics_stop_http();
    if (m.started) {
        gw_metrics_loop_stop(0);
        m.started = false;
    }
}
