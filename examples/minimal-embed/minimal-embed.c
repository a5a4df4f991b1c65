/*
 * minimal-embed: the smallest way to put fwx into a TCP proxy you already have.
 *   minimal-embed POLICY LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT [PLUGIN.so ...]
 * The proxy is plain libuv and owns every socket: its listener, its upstream connect, its relay
 * (uv_read_start / uv_write). fwx opens no socket here. For each client it accepts, the proxy
 * asks fwx "may this connection go ahead?" (the policy, then the filters), tells it the bytes
 * it carried, and tells it when the client has gone. Only <fwx/fwx.h> and <uv.h>.
 *
 * Filter plugins (such as the FTP filter) may attach data filters, which must see the bytes:
 * the proxy hands such a connection's two sockets to fwx_connection_relay(), which carries it
 * through the filters (the FTP filter then refuses a bounce PORT on the wire). The proxy says
 * it does so with fwx_firewall_set_host_relay(); a host that did not would have such
 * connections refused, never relayed past the filter.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

static fwx_firewall *fw;
static uv_tcp_t listener;
static uv_signal_t sigterm;
static struct sockaddr_in listen_addr, upstream_addr;
static int stopping, n_clients;

/* A NAT session stands for one client address: fwx_session_open() hands the open one
 * (FWX_S_FALSE) to a second client from that address. So the proxy counts its own users of
 * each session, and closes the session when the last of them goes. */
typedef struct session { IFWXSession *s; int users; struct session *next; } session;
static session *sessions;

typedef struct client {
    uv_tcp_t side[2];     /* [0] the client, [1] the upstream server */
    uv_connect_t connect;
    uv_shutdown_t sd[2];  /* sd[i] half-closes side[i] when the other side has sent EOF */
    int shut, handles, closing; /* handles: the two sides, and fwx's relay while it runs */
    session *ses;
    IFWXConnection *conn; /* fwx's view of this connection: our reference (+1) */
} client;

static session *session_ref(const struct sockaddr_in *addr)
{
    fwx_session_params p = {.struct_size = sizeof p, .source = fwxSourceNAT,
                            .client = (const struct sockaddr *)addr, .client_len = sizeof *addr};
    IFWXSession *s;
    if (FWX_FAILED(fwx_session_open(fw, &p, &s))) /* FWX_S_OK: a new one; FWX_S_FALSE: the open one */
        return NULL;
    session *e = sessions;
    while (e != NULL && e->s != s)
        e = e->next;
    if (e != NULL)
        IFWXSession_Release(s), e->users++; /* one we hold already: a user more, not a reference */
    else if ((e = malloc(sizeof *e)) != NULL)
        *e = (session){s, 1, sessions}, sessions = e;
    else
        fwx_session_close(s), IFWXSession_Release(s);
    return e;
}

static void session_unref(session *e)
{
    session **pp = &sessions;
    if (e == NULL || --e->users > 0)
        return;
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    fwx_session_close(e->s); /* whatever filters set up for the session is withdrawn */
    IFWXSession_Release(e->s);
    free(e);
}

static void client_release(client *c)
{
    if (--c->handles > 0)
        return;
    fwx_connection_close(c->conn); /* filters hear fwx_ConnectionTerminating; NULL is fine */
    session_unref(c->ses);
    free(c);
    if (--n_clients == 0 && stopping)
        fwx_firewall_close(fw, NULL, NULL); /* the last client has gone: fwx may go too */
}

static void on_closed(uv_handle_t *h) { client_release(h->data); }

static void client_close(client *c)
{
    for (int i = 0; i < 2 && c->closing == 0; i++) /* on_closed runs once per side */
        uv_close((uv_handle_t *)&c->side[i], on_closed);
    c->closing = 1;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    uv_write_t *w = malloc(sizeof *w + 65536); /* a write request in front of each read buffer */
    (void)h, (void)size;
    *b = uv_buf_init(w != NULL ? (char *)(w + 1) : NULL, w != NULL ? 65536 : 0);
}

static void on_written(uv_write_t *w, int status)
{
    client *c = w->handle->data;
    free(w);
    if (status < 0)
        client_close(c);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
    client *c = r->handle->data;
    if (status < 0 || ++c->shut == 2) /* both directions have ended, so has the relay */
        client_close(c);
}

static void on_read(uv_stream_t *src, ssize_t n, const uv_buf_t *buf)
{
    client *c = src->data;
    int from = src == (uv_stream_t *)&c->side[1], to = !from;
    uv_stream_t *dst = (uv_stream_t *)&c->side[to];
    uv_write_t *w = buf->base != NULL ? (uv_write_t *)buf->base - 1 : NULL;
    if (n > 0) {
        /* Tell fwx what went through: fwxctl and the logs show it. (A real proxy would also
         * stop reading while dst->write_queue_size is large: back-pressure.) */
        fwx_connection_count_bytes(c->conn, from == 0 ? (uint64_t)n : 0, from == 1 ? (uint64_t)n : 0);
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
        if (uv_write(w, dst, &b, 1, on_written) != 0)
            free(w), client_close(c);
        return;
    }
    free(w);
    if (n == UV_EOF) { /* a half-close: pass the EOF on, keep the other direction going */
        uv_read_stop(src);
        if (uv_shutdown(&c->sd[to], dst, on_shutdown) != 0)
            client_close(c);
    } else if (n < 0) {
        client_close(c);
    }
}

static void on_relay_done(fwx_relay *relay, fwx_result result, void *arg)
{
    (void)relay, (void)result; /* fwx logged how it ended; it closed both sockets */
    client_release(arg);
}

/* A data filter is attached: fwx carries the bytes. It takes plain fds: a copy of each side's
 * socket, and the libuv handles go (libuv leaves the socket nonblocking, as fwx wants it). */
static void relay_through_fwx(client *c)
{
    uv_os_fd_t fd[2];
    int dup_fd[2] = {-1, -1};
    for (int i = 0; i < 2; i++)
        if (uv_fileno((uv_handle_t *)&c->side[i], &fd[i]) == 0)
            dup_fd[i] = dup(fd[i]);
    c->handles++; /* the relay's, until on_relay_done */
    if (dup_fd[0] < 0 || dup_fd[1] < 0 ||
        fwx_connection_relay(c->conn, dup_fd[0], dup_fd[1], on_relay_done, c, NULL) != FWX_S_OK) {
        for (int i = 0; i < 2; i++)
            if (dup_fd[i] >= 0)
                close(dup_fd[i]);
        c->handles--; /* no relay: fwx logged why */
    }
    client_close(c);
}

static void on_upstream(uv_connect_t *r, int status)
{
    client *c = r->data;
    if (status == 0 && !c->closing && fwx_connection_data_filters(c->conn) > 0) {
        relay_through_fwx(c);
        return;
    }
    for (int i = 0; i < 2 && status == 0 && !c->closing; i++) /* connected: relay both ways */
        uv_read_start((uv_stream_t *)&c->side[i], on_alloc, on_read);
    if (status < 0)
        client_close(c);
}

static void on_client(uv_stream_t *l, int status)
{
    client *c = status == 0 ? calloc(1, sizeof *c) : NULL;
    struct sockaddr_in peer;
    int len = sizeof peer;
    if (c == NULL)
        return;
    for (int i = 0; i < 2; i++, c->handles++) /* both sides now: client_close() closes both */
        uv_tcp_init(l->loop, &c->side[i]), c->side[i].data = c;
    n_clients++;
    if (uv_accept(l, (uv_stream_t *)&c->side[0]) != 0 ||
        uv_tcp_getpeername(&c->side[0], (struct sockaddr *)&peer, &len) != 0 || peer.sin_family != AF_INET) {
        client_close(c);
        return;
    }
    /* The two questions. A session for the client's address; then the connection itself, as
     * fwx_AcceptedConnection: someone connected in to a server we publish. The policy decides
     * it by the client's address and our listening address and port; then filters may refuse. */
    fwx_connection_params p = {.struct_size = sizeof p, .event = fwx_AcceptedConnection,
                               .protocol = FWX_PROTOCOL_TCP, /* the remote client, and our address: */
                               .external_peer = (struct sockaddr *)&peer, .external_peer_len = sizeof peer,
                               .external_local = (struct sockaddr *)&listen_addr,
                               .external_local_len = sizeof listen_addr};
    c->ses = session_ref(&peer);
    fwx_result hr = c->ses != NULL ? fwx_connection_open(c->ses->s, &p, &c->conn) : FWX_E_FAIL;
    c->connect.data = c;
    if (FWX_FAILED(hr)) /* fwx said no, and logged why: drop the client, never bother the server */
        client_close(c);
    else if (uv_tcp_connect(&c->connect, &c->side[1], (struct sockaddr *)&upstream_addr, on_upstream) != 0)
        client_close(c);
}

/* SIGTERM: stop accepting; clients still relaying finish first (a graceful drain). */
static void on_signal(uv_signal_t *h, int signum)
{
    (void)h, (void)signum;
    stopping = 1;
    uv_close((uv_handle_t *)&listener, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    if (n_clients == 0)
        fwx_firewall_close(fw, NULL, NULL); /* else on_closed does, after the last client */
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    fwx_policy *policy;
    fwx_config_error e;
    if (argc < 6 || uv_ip4_addr(argv[2], atoi(argv[3]), &listen_addr) != 0 ||
        uv_ip4_addr(argv[4], atoi(argv[5]), &upstream_addr) != 0) {
        fprintf(stderr, "usage: minimal-embed POLICY LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT [PLUGIN.so ...]\n");
        return 2;
    }
    /* fwx on our own loop, with the policy from the file (errors name file:line and the key).
     * No backend is set: fwx decides, the proxy carries the bytes. */
    if (fwx_policy_load_file(argv[1], &policy, &e) != FWX_S_OK) {
        fprintf(stderr, "minimal-embed: %s:%d: %s: %s\n", e.file, e.line, e.key, e.message);
        return 2;
    }
    if (fwx_firewall_new(loop, NULL, &fw) != FWX_S_OK) /* NULL: default options, logs on stderr */
        return 1;
    fwx_firewall_set_policy(fw, policy); /* the firewall owns the policy now */
    fwx_firewall_set_host_relay(fw, 1);  /* connections with data filters: fwx_connection_relay */
    for (int i = 6; i < argc; i++)
        if (FWX_FAILED(fwx_firewall_load_plugin(fw, argv[i], NULL))) /* fwx logged why */
            return 1;
    uv_tcp_init(loop, &listener);
    int rc = uv_tcp_bind(&listener, (struct sockaddr *)&listen_addr, 0);
    if (rc != 0 || (rc = uv_listen((uv_stream_t *)&listener, 128, on_client)) != 0) {
        fprintf(stderr, "minimal-embed: %s:%s: %s\n", argv[2], argv[3], uv_strerror(rc));
        return 1;
    }
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    signal(SIGPIPE, SIG_IGN); /* a peer that has gone must fail a write, not kill the proxy */
    printf("minimal-embed: ready on %s:%s\n", argv[2], argv[3]);
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT); /* until SIGTERM, and then the last client */
    return uv_loop_close(loop) == 0 ? 0 : 1; /* 0: fwx and the proxy closed every handle */
}
