/*
 * fwx tests - the FTP filter plugin (plugins/ftp) in a real firewall with the proxy backend,
 * against a scripted FTP server and scripted clients (threads with blocking sockets bounded by
 * timeouts; no FTP software needed).
 *
 * Hosts are distinct loopback addresses (firewall option loopback_hosts): the gateway is
 * 127.0.0.1, the client 127.0.0.2, the server 127.0.0.3, a third party 127.0.0.4.
 *
 * - published server (publishing rule, inbound "ftp" protocol bound to the filter): PASV, EPSV
 *   and PORT through the gateway; every hostile client line of the attack catalog (doc/security.md); hostile
 *   server replies; data theft; timeout; withdrawal when the control connection closes;
 * - explicit client through the SOCKS5 listener: the PASV reply passes unchanged and the data
 *   connection, a SOCKS CONNECT to the server's port, is admitted by the filter's permission;
 * - explicit client across families (IPv4 client, IPv6 server, driven through the pump like the
 *   transparent one): PASV sent as EPSV and answered with a 227, PORT/EPRT sent as EPRT naming
 *   the gateway's IPv6 address;
 * - transparent client: a NAT session's fwx_Connect_Tcp opened by the test, the plugin's data
 *   filter driven by the core's user-mode pump over loopback TCP pairs (no kernel NAT needed),
 *   the grants checked with fwx_firewall_admit and the stats.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netutil.h"
#include "backends/usermode/usermode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define FTP_GUID "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"
#define PAYLOAD "fwx ftp data connection payload\n"

static const char *plugin_path(void)
{
    const char *p = getenv("FWX_FTP_PLUGIN");
    ck_assert_msg(p != NULL, "FWX_FTP_PLUGIN is not set");
    return p;
}

/* ---- sockets ------------------------------------------------------------------------------ */

static int write_str(int fd, const char *s) { return tu_write_all(fd, s, strlen(s)); }

/* Accepts with a timeout; -1 if nobody came. */
static int accept_within(int lfd, int ms)
{
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return -1;
    int c = accept(lfd, NULL, NULL);
    if (c >= 0)
        tu_set_timeouts(c);
    return c;
}

/* A line reader over a blocking socket. */
typedef struct lr {
    int fd;
    char buf[8192];
    size_t len;
} lr;

/* Reads one CRLF line (without CRLF) into out; false on EOF/timeout. */
static bool lr_line(lr *r, char *out, size_t cap)
{
    for (;;) {
        for (size_t i = 0; i + 1 < r->len; i++) {
            if (r->buf[i] == '\r' && r->buf[i + 1] == '\n') {
                size_t n = i < cap - 1 ? i : cap - 1;
                memcpy(out, r->buf, n);
                out[n] = '\0';
                memmove(r->buf, r->buf + i + 2, r->len - i - 2);
                r->len -= i + 2;
                return true;
            }
        }
        if (r->len == sizeof r->buf)
            return false;
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
        if (n <= 0)
            return false;
        r->len += (size_t)n;
    }
}

/* Reads one whole reply (multi-line aware); all its lines joined with "\n" into out. Returns
   the final line's code, or -1. */
static int lr_reply(lr *r, char *out, size_t cap)
{
    char line[1024];
    out[0] = '\0';
    if (!lr_line(r, line, sizeof line))
        return -1;
    snprintf(out, cap, "%s", line);
    if (strlen(line) >= 4 && line[3] == '-') {
        char code[4];
        memcpy(code, line, 3);
        code[3] = 0;
        for (;;) {
            if (!lr_line(r, line, sizeof line))
                return -1;
            size_t k = strlen(out);
            snprintf(out + k, cap - k, "\n%s", line);
            if (strncmp(line, code, 3) == 0 && line[3] == ' ')
                break;
        }
    }
    return atoi(out + (strrchr(out, '\n') ? strrchr(out, '\n') - out + 1 : 0));
}

/* ---- the scripted FTP server ---------------------------------------------------------------- */

typedef struct srv {
    int lfd;
    uint16_t port;
    pthread_t th;
    pthread_mutex_t mu;
    char log[65536]; /* every command line received, each followed by "\n" */
    size_t loglen;
    char next_reply[1024]; /* raw reply for the next command instead of the normal one */
    atomic_int data_conns;
    atomic_int stop;
    int sessions;
} srv;

static void srv_log(srv *s, const char *line)
{
    pthread_mutex_lock(&s->mu);
    size_t n = strlen(line);
    if (s->loglen + n + 2 < sizeof s->log) {
        memcpy(s->log + s->loglen, line, n);
        s->loglen += n;
        s->log[s->loglen++] = '\n';
        s->log[s->loglen] = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

static bool srv_take_override(srv *s, char *out, size_t cap)
{
    pthread_mutex_lock(&s->mu);
    bool have = s->next_reply[0] != 0;
    if (have) {
        snprintf(out, cap, "%s", s->next_reply);
        s->next_reply[0] = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return have;
}

static void srv_set_override(srv *s, const char *reply)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->next_reply, sizeof s->next_reply, "%s", reply);
    pthread_mutex_unlock(&s->mu);
}

static void srv_session(srv *s, int c)
{
    lr r = {.fd = c};
    char line[1024], reply[1200];
    int data_lfd = -1;
    struct sockaddr_in active = {0};
    bool have_active = false;
    write_str(c, "220 fwx test server ready.\r\n");
    while (lr_line(&r, line, sizeof line)) {
        srv_log(s, line);
        if (srv_take_override(s, reply, sizeof reply)) {
            write_str(c, reply);
            continue;
        }
        if (strcasecmp(line, "NOOP") == 0) {
            write_str(c, "200 NOOP ok.\r\n");
        } else if (strcasecmp(line, "PASV") == 0 || strcasecmp(line, "EPSV") == 0) {
            if (data_lfd >= 0)
                close(data_lfd);
            data_lfd = tu_sock_from("127.0.0.3", 0);
            listen(data_lfd, 4);
            uint16_t p = tu_bound_port(data_lfd);
            if (line[0] == 'P' || line[0] == 'p')
                snprintf(reply, sizeof reply, "227 Entering Passive Mode (127,0,0,3,%u,%u).\r\n", p >> 8, p & 0xff);
            else
                snprintf(reply, sizeof reply, "229 Entering Extended Passive Mode (|||%u|)\r\n", p);
            have_active = false;
            write_str(c, reply);
        } else if (strncasecmp(line, "PORT ", 5) == 0) {
            unsigned h[6];
            if (sscanf(line + 5, "%u,%u,%u,%u,%u,%u", &h[0], &h[1], &h[2], &h[3], &h[4], &h[5]) == 6) {
                active.sin_family = AF_INET;
                active.sin_addr.s_addr = htonl(h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3]);
                active.sin_port = htons((uint16_t)(h[4] * 256 + h[5]));
                have_active = true;
                write_str(c, "200 PORT command successful.\r\n");
            } else {
                write_str(c, "501 bad PORT.\r\n");
            }
        } else if (strncasecmp(line, "EPRT ", 5) == 0) {
            char ip[64];
            unsigned port;
            if (sscanf(line + 5, "|1|%63[0-9.]|%u|", ip, &port) == 2) {
                active.sin_family = AF_INET;
                inet_pton(AF_INET, ip, &active.sin_addr);
                active.sin_port = htons((uint16_t)port);
                have_active = true;
                write_str(c, "200 EPRT command successful.\r\n");
            } else {
                write_str(c, "501 bad EPRT.\r\n");
            }
        } else if (strncasecmp(line, "RETR", 4) == 0) {
            int d = -1;
            write_str(c, "150 Opening data connection.\r\n");
            if (have_active) {
                d = tu_sock_from("127.0.0.3", 0);
                if (connect(d, (struct sockaddr *)&active, sizeof active) != 0) {
                    close(d);
                    d = -1;
                }
            } else if (data_lfd >= 0) {
                d = accept_within(data_lfd, TU_IO_TIMEOUT_S * 1000);
            }
            if (d >= 0) {
                atomic_fetch_add(&s->data_conns, 1);
                write_str(d, PAYLOAD);
                close(d);
                write_str(c, "226 Transfer complete.\r\n");
            } else {
                write_str(c, "425 No data connection.\r\n");
            }
        } else if (strcasecmp(line, "QUIT") == 0) {
            write_str(c, "221 Goodbye.\r\n");
            break;
        } else {
            write_str(c, "500 Unknown command.\r\n");
        }
    }
    if (data_lfd >= 0)
        close(data_lfd);
    close(c);
}

static void *srv_main(void *arg)
{
    srv *s = arg;
    while (!atomic_load(&s->stop)) {
        int c = accept_within(s->lfd, 100);
        if (c >= 0) {
            s->sessions++;
            srv_session(s, c);
        }
    }
    return NULL;
}

static void srv_start(srv *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = tu_sock_from("127.0.0.3", 0);
    ck_assert_int_eq(listen(s->lfd, 8), 0);
    s->port = tu_bound_port(s->lfd);
    pthread_create(&s->th, NULL, srv_main, s);
}

static void srv_stop(srv *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
}

static bool srv_saw(srv *s, const char *needle)
{
    pthread_mutex_lock(&s->mu);
    bool r = strstr(s->log, needle) != NULL;
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* ---- the gateway ---------------------------------------------------------------------------- */

typedef struct gw {
    uv_loop_t loop;
    fwx_firewall *fw;
    uint16_t lp; /* published port */
} gw;

static void gw_open(gw *g, const char *policy, uint32_t timeout_ms)
{
    fwx_firewall_options o;
    tu_gw_options(&o);
    if (timeout_ms)
        o.timeout_ms = timeout_ms;
    tu_fw_open(&g->loop, &o, &g->fw);
    TU_EXPECT_HR(fwx_firewall_set_backend(g->fw, "proxy"), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_load_plugin(g->fw, plugin_path(), NULL), FWX_S_OK);
    if (policy != NULL)
        tu_fw_set_policy(g->fw, policy);
}

static void gw_close(gw *g) { tu_fw_close(&g->loop, &g->fw); }

static fwx_firewall_stats stats(gw *g) { return tu_fw_stats(g->fw); }

static const char *publish_policy(uint16_t listen, uint16_t server)
{
    static char text[2048];
    snprintf(text, sizeof text,
             "protocols = ( { name = \"ftp\"; guid = \"{0badf00d-0000-0000-0000-0000000000f1}\"; protocol = \"tcp\";"
             " port = %u; direction = \"inbound\"; filters = [ \"" FTP_GUID "\" ]; } );\n"
             "rules = ( { name = \"publish\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"ftp\" ]; } );\n"
             "publishing = ( { name = \"ftp\"; listen = \"127.0.0.1:%u\"; server = \"127.0.0.3:%u\";"
             " protocol = \"ftp\"; full_proxy = true; } );\n",
             listen, listen, server);
    return text;
}

static void gw_publish(gw *g, srv *s, uint32_t timeout_ms)
{
    srv_start(s);
    g->lp = tu_free_port("127.0.0.1");
    gw_open(g, publish_policy(g->lp, s->port), timeout_ms);
}

/* ---- a scripted client ------------------------------------------------------------------------ */

typedef struct cli {
    gw *g;
    srv *s;
    lr r;
    int fd;
    char reply[4096];
    int code;
    bool ok;
    char why[8192];
    /* results */
    uint16_t data_port;
    int extra;
} cli;

#define CLI_EXPECT(c, cond, ...)                                                                  \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            snprintf((c)->why, sizeof (c)->why, __VA_ARGS__);                                     \
            (c)->ok = false;                                                                      \
            return NULL;                                                                          \
        }                                                                                         \
    } while (0)

static int cli_cmd(cli *c, const char *bytes)
{
    if (bytes != NULL && write_str(c->fd, bytes) != 0)
        return -1;
    c->code = lr_reply(&c->r, c->reply, sizeof c->reply);
    return c->code;
}

static bool cli_connect(cli *c, const char *ip, uint16_t port)
{
    c->fd = tu_sock_from("127.0.0.2", 0);
    c->r.fd = c->fd;
    c->r.len = 0;
    c->ok = true;
    if (tu_connect_to(c->fd, ip, port) != 0)
        return false;
    return cli_cmd(c, NULL) == 220;
}

/* Runs the scripted client on its thread while the loop runs; its checks must all hold. */
static void run_client(gw *g, void *(*client)(void *), cli *c)
{
    tu_run_peer(&g->loop, client, c);
    ck_assert_msg(c->ok, "%s", c->why);
}

/* Publishes a scripted server (timeout_ms: the grants' timeout, 0 the default) and runs the
   scripted client against it. */
static void publish_and_run(gw *g, srv *s, uint32_t timeout_ms, void *(*client)(void *), cli *c)
{
    gw_publish(g, s, timeout_ms);
    memset(c, 0, sizeof *c);
    c->g = g;
    c->s = s;
    run_client(g, client, c);
}

/* Asserts the gateway holds no bound port and no permission. */
static void expect_no_grants(gw *g)
{
    fwx_firewall_stats st = stats(g);
    ck_assert_uint_eq(st.bound_ports, 0);
    ck_assert_uint_eq(st.permissions, 0);
}

/* A test's end: a moment for the loop, then no grant left, the gateway closed clean and the
   server stopped. */
static void ftp_end(gw *g, srv *s)
{
    tu_loop_run_for(&g->loop, 50);
    expect_no_grants(g);
    gw_close(g);
    srv_stop(s);
}

/* Parses "227 ... (h1,h2,h3,h4,p1,p2)" into ip text and port. */
static bool parse227(const char *reply, char ip[32], uint16_t *port)
{
    unsigned h[6];
    const char *p = strchr(reply, '(');
    if (p == NULL || sscanf(p, "(%u,%u,%u,%u,%u,%u)", &h[0], &h[1], &h[2], &h[3], &h[4], &h[5]) != 6)
        return false;
    snprintf(ip, 32, "%u.%u.%u.%u", h[0], h[1], h[2], h[3]);
    *port = (uint16_t)(h[4] * 256 + h[5]);
    return true;
}

/* Connects to ip:port from the client host and reads the payload. */
static bool fetch_data(const char *from, const char *ip, uint16_t port, char *buf, size_t cap)
{
    int d = tu_sock_from(from, 0);
    bool ok = tu_connect_to(d, ip, port) == 0;
    if (ok) {
        ssize_t n = tu_read_all(d, buf, cap - 1);
        ok = n >= 0;
        buf[n > 0 ? n : 0] = 0;
    }
    close(d);
    return ok;
}

/* Active mode: the client listens on 127.0.0.2 and sends PORT (or EPRT) naming that port; the
   server must get it naming the gateway instead (127.0.0.1), never the client; after RETR f the
   server's data connection must reach the client's port with the payload. */
static void *active_retr(cli *c, bool eprt)
{
    char data[256], cmd[128];
    int l = tu_sock_from("127.0.0.2", 0);
    listen(l, 4);
    uint16_t p = tu_bound_port(l);
    if (eprt)
        snprintf(cmd, sizeof cmd, "EPRT |1|127.0.0.2|%u|\r\n", p);
    else
        snprintf(cmd, sizeof cmd, "PORT 127,0,0,2,%u,%u\r\n", p >> 8, p & 0xff);
    int code = cli_cmd(c, cmd), d = -1;
    if (code == 200 && write_str(c->fd, "RETR f\r\n") == 0)
        d = accept_within(l, TU_IO_TIMEOUT_S * 1000);
    ssize_t n = d >= 0 ? tu_read_all(d, data, sizeof data - 1) : -1;
    data[n > 0 ? n : 0] = 0;
    if (d >= 0)
        close(d);
    close(l);
    CLI_EXPECT(c, code == 200, "%s: %s", cmd, c->reply);
    CLI_EXPECT(c, srv_saw(c->s, eprt ? "EPRT |1|127.0.0.1|" : "PORT 127,0,0,1,"),
               "the server did not get a rewritten %s", eprt ? "EPRT" : "PORT");
    CLI_EXPECT(c, !srv_saw(c->s, eprt ? "EPRT |1|127.0.0.2|" : "PORT 127,0,0,2,"),
               "the client's own address reached the server");
    CLI_EXPECT(c, d >= 0, "the server's data connection never reached the client");
    CLI_EXPECT(c, strcmp(data, PAYLOAD) == 0, "active payload: \"%s\"", data);
    CLI_EXPECT(c, cli_cmd(c, NULL) == 150 && cli_cmd(c, NULL) == 226, "RETR: %s", c->reply);
    return NULL;
}

/* (a) and (e): PASV rewritten to the gateway; a third party racing for the port is refused; the
   real client's data connection reaches the server's data port once. Then EPSV the same way. */
static void *published_passive_client(void *arg)
{
    cli *c = arg;
    char ip[32], data[256];
    uint16_t port;
    CLI_EXPECT(c, cli_connect(c, "127.0.0.1", c->g->lp), "no greeting");
    CLI_EXPECT(c, cli_cmd(c, "PASV\r\n") == 227, "PASV: %s", c->reply);
    CLI_EXPECT(c, parse227(c->reply, ip, &port), "227 unreadable: %s", c->reply);
    CLI_EXPECT(c, strcmp(ip, "127.0.0.1") == 0 && port >= 40000 && port <= 60999, "227 not rewritten: %s", c->reply);
    CLI_EXPECT(c, srv_saw(c->s, "PASV\n"), "the server never saw PASV");
    /* Catalog #23: the third party connects first and gets nothing. */
    int t = tu_sock_from("127.0.0.4", 0);
    bool third_in = false;
    if (tu_connect_to(t, "127.0.0.1", port) == 0) {
        char b[16];
        send(t, "x", 1, MSG_NOSIGNAL);
        third_in = tu_read_all(t, b, sizeof b) > 0;
    }
    close(t);
    CLI_EXPECT(c, !third_in, "a third party got data through the bound port");
    CLI_EXPECT(c, write_str(c->fd, "RETR f\r\n") == 0, "send RETR");
    CLI_EXPECT(c, fetch_data("127.0.0.2", ip, port, data, sizeof data), "data connection failed");
    CLI_EXPECT(c, strcmp(data, PAYLOAD) == 0, "payload: \"%s\"", data);
    CLI_EXPECT(c, cli_cmd(c, NULL) == 150, "RETR: %s", c->reply);
    CLI_EXPECT(c, cli_cmd(c, NULL) == 226, "RETR end: %s", c->reply);
    /* EPSV: the gateway asks the server with PASV and answers with a 229. */
    CLI_EXPECT(c, cli_cmd(c, "EPSV\r\n") == 229, "EPSV: %s", c->reply);
    unsigned p229;
    const char *par = strchr(c->reply, '(');
    CLI_EXPECT(c, par != NULL && sscanf(par, "(|||%u|)", &p229) == 1 && p229 >= 40000, "229: %s", c->reply);
    CLI_EXPECT(c, write_str(c->fd, "RETR f\r\n") == 0, "send RETR");
    CLI_EXPECT(c, fetch_data("127.0.0.2", "127.0.0.1", (uint16_t)p229, data, sizeof data), "EPSV data failed");
    CLI_EXPECT(c, strcmp(data, PAYLOAD) == 0, "EPSV payload: \"%s\"", data);
    CLI_EXPECT(c, cli_cmd(c, NULL) == 150 && cli_cmd(c, NULL) == 226, "RETR (EPSV): %s", c->reply);
    CLI_EXPECT(c, cli_cmd(c, "QUIT\r\n") == 221, "QUIT: %s", c->reply);
    close(c->fd);
    return NULL;
}

/* A published server and a scripted client that makes two transfers (each its own data
   connection), then no grant left behind. */
static void published_transfers(void *(*client)(void *))
{
    srv s;
    gw g;
    cli c;
    publish_and_run(&g, &s, 0, client, &c);
    ck_assert_int_eq(atomic_load(&s.data_conns), 2);
    ftp_end(&g, &s);
}

START_TEST(published_passive) { published_transfers(published_passive_client); }
END_TEST

/* (b): PORT from the client is rewritten to the gateway's internal address; the server's
   connection to it reaches the client. EPRT the same way. */
static void *published_active_client(void *arg)
{
    cli *c = arg;
    CLI_EXPECT(c, cli_connect(c, "127.0.0.1", c->g->lp), "no greeting");
    for (int eprt = 0; eprt < 2 && c->ok; eprt++)
        active_retr(c, eprt);
    if (!c->ok)
        return NULL;
    CLI_EXPECT(c, cli_cmd(c, "QUIT\r\n") == 221, "QUIT: %s", c->reply);
    close(c->fd);
    return NULL;
}

START_TEST(published_active) { published_transfers(published_active_client); }
END_TEST

/* ---- (c) hostile client input -------------------------------------------------------------- */

typedef struct hostile {
    const char *bytes;
    size_t len; /* 0: strlen */
    const char *want;
} hostile;

#define R500 "500 Syntax error, command unrecognized."
#define R500P "500 Illegal PORT command."
#define R500E "500 Illegal EPRT command."
#define R501 "501 Syntax error in parameters or arguments."
#define R502 "502 Command not implemented."

static const hostile hostile_lines[] = {
    /* #1 bounce */
    {"PORT 192,0,2,99,0,25\r\n", 0, R500P},
    {"PORT 127,0,0,4,4,1\r\n", 0, R500P},
    {"EPRT |1|127.0.0.4|1025|\r\n", 0, R500E},
    /* #3 privileged and zero ports */
    {"PORT 127,0,0,2,0,22\r\n", 0, R500P},
    {"PORT 127,0,0,2,0,0\r\n", 0, R500P},
    /* #4 gateway, loopback, any, broadcast, multicast */
    {"PORT 127,0,0,1,31,144\r\n", 0, R500P},
    {"PORT 0,0,0,0,31,144\r\n", 0, R500P},
    {"PORT 255,255,255,255,31,144\r\n", 0, R500P},
    {"PORT 224,0,0,1,31,144\r\n", 0, R500P},
    /* #6 overflow */
    {"PORT 127,0,0,2,4,4294967297\r\n", 0, R501},
    {"PORT 999999999999,0,0,2,4,1\r\n", 0, R501},
    /* #7 sign, whitespace, field count */
    {"PORT 127,0,0,2,-1,1\r\n", 0, R501},
    {"PORT 127,0,0,2,+4,1\r\n", 0, R501},
    {"PORT 127, 0,0,2,4,1\r\n", 0, R501},
    {"PORT  127,0,0,2,4,1\r\n", 0, R501},
    {"PORT 127,0,0,2,4,1x\r\n", 0, R501},
    {"PORT 127,0,0,2,4\r\n", 0, R501},
    {"PORT 127,0,0,2,4,1,7\r\n", 0, R501},
    /* #12 EPRT */
    {"EPRT |2|::1|8080|\r\n", 0, "522 Network protocol not supported, use (1)"},
    {"EPRT |2|fe80::1%eth0|8080|\r\n", 0, R501},
    {"EPRT |3|x|8080|\r\n", 0, "522 Network protocol not supported, use (1)"},
    {"EPRT |1|127.0.0.2|8080\r\n", 0, R501},
    /* #13 verbs the gateway does not check */
    {"LPRT 4,4,127,0,0,2,2,4,1\r\n", 0, R502},
    {"LPSV\r\n", 0, R502},
    {"AUTH TLS\r\n", 0, R502},
    /* #18 bare LF smuggling */
    {"CWD leetXXXX\nPORT 127,0,0,2,31,144\r\n", 0, R500},
    {"CWD x\rPORT 127,0,0,2,31,144\r\n", 0, R500},
    /* #19 NUL and 8-bit */
    {"PORT 127,0,0,2,4,1\0\r\n", 21, R500},
    {"PO\0RT 127,0,0,2,4,1\r\n", 21, R500},
    {"PORT 127,0,0,2,4,1\xff\r\n", 0, R500},
    /* PASV with an argument */
    {"PASV 1\r\n", 0, R501},
};

static void *hostile_client(void *arg)
{
    cli *c = arg;
    CLI_EXPECT(c, cli_connect(c, "127.0.0.1", c->g->lp), "no greeting");
    for (size_t i = 0; i < sizeof hostile_lines / sizeof hostile_lines[0]; i++) {
        const hostile *h = &hostile_lines[i];
        size_t n = h->len ? h->len : strlen(h->bytes);
        CLI_EXPECT(c, tu_write_all(c->fd, h->bytes, n) == 0, "send %zu", i);
        cli_cmd(c, NULL);
        CLI_EXPECT(c, strcmp(c->reply, h->want) == 0, "case %zu (%.20s): got \"%s\", want \"%s\"", i, h->bytes, c->reply,
                   h->want);
        CLI_EXPECT(c, cli_cmd(c, "NOOP\r\n") == 200, "NOOP after case %zu: %s", i, c->reply);
    }
    /* #21 overlong: refused at the limit (before its end arrives), the rest discarded. */
    static char big[100100];
    memcpy(big, "PORT ", 5);
    memset(big + 5, '0', 100000);
    CLI_EXPECT(c, tu_write_all(c->fd, big, 100005) == 0, "send overlong");
    cli_cmd(c, NULL);
    CLI_EXPECT(c, strcmp(c->reply, R500) == 0, "overlong: got \"%s\"", c->reply);
    CLI_EXPECT(c, write_str(c->fd, ",0,0,2,4,1\r\n") == 0, "send overlong end");
    CLI_EXPECT(c, cli_cmd(c, "NOOP\r\n") == 200, "NOOP after overlong: %s", c->reply);
    /* #14 split: "PO" then the rest, 50 ms apart. */
    CLI_EXPECT(c, write_str(c->fd, "PO") == 0, "split 1");
    usleep(50000);
    CLI_EXPECT(c, write_str(c->fd, "RT 127,0,0,4,4,1\r\n") == 0, "split 2");
    cli_cmd(c, NULL);
    CLI_EXPECT(c, strcmp(c->reply, R500P) == 0, "split bounce: %s", c->reply);
    CLI_EXPECT(c, write_str(c->fd, "PORT 127,0,0,2,") == 0, "split 3");
    usleep(50000);
    CLI_EXPECT(c, write_str(c->fd, "0,25\r\n") == 0, "split 4");
    cli_cmd(c, NULL);
    CLI_EXPECT(c, strcmp(c->reply, R500P) == 0, "split privileged: %s", c->reply);
    /* #15 several per segment: each answered, in order (the refusal waits for the NOOP). */
    CLI_EXPECT(c, write_str(c->fd, "NOOP\r\nPORT 192,0,2,99,0,25\r\nNOOP\r\n") == 0, "multi");
    CLI_EXPECT(c, cli_cmd(c, NULL) == 200, "multi 1: %s", c->reply);
    cli_cmd(c, NULL);
    CLI_EXPECT(c, strcmp(c->reply, R500P) == 0, "multi 2: %s", c->reply);
    CLI_EXPECT(c, cli_cmd(c, NULL) == 200, "multi 3: %s", c->reply);
    /* the control connection stays open: the test checks the grants now */
    return NULL;
}

static void *hostile_client_end(void *arg)
{
    cli *c = arg;
    CLI_EXPECT(c, cli_cmd(c, "NOOP\r\n") == 200, "final NOOP: %s", c->reply);
    /* #13: EPSV ALL, then PORT/EPRT/PASV are refused; EPSV still works. */
    CLI_EXPECT(c, cli_cmd(c, "EPSV ALL\r\n") == 200, "EPSV ALL: %s", c->reply);
    cli_cmd(c, "PORT 127,0,0,2,4,1\r\n");
    CLI_EXPECT(c, strcmp(c->reply, "502 Command not allowed after EPSV ALL.") == 0, "PORT after EPSV ALL: %s",
               c->reply);
    cli_cmd(c, "PASV\r\n");
    CLI_EXPECT(c, strcmp(c->reply, "502 Command not allowed after EPSV ALL.") == 0, "PASV after EPSV ALL: %s",
               c->reply);
    CLI_EXPECT(c, cli_cmd(c, "QUIT\r\n") == 221, "QUIT: %s", c->reply);
    close(c->fd);
    return NULL;
}

START_TEST(hostile_client_input)
{
    srv s;
    gw g;
    cli c;
    publish_and_run(&g, &s, 0, hostile_client, &c);
    expect_no_grants(&g);
    ck_assert_uint_eq(stats(&g).sessions, 1);
    run_client(&g, hostile_client_end, &c);
    /* Nothing of a refused line ever reached the server: it saw NOOPs and the last QUIT. */
    pthread_mutex_lock(&s.mu);
    const char *p = s.log;
    int lines = 0;
    while (*p) {
        const char *e = strchr(p, '\n');
        ck_assert_ptr_nonnull(e);
        ck_assert_msg((e - p == 4 && (strncmp(p, "NOOP", 4) == 0 || strncmp(p, "QUIT", 4) == 0)),
                      "the server received \"%.*s\"", (int)(e - p), p);
        lines++;
        p = e + 1;
    }
    pthread_mutex_unlock(&s.mu);
    ck_assert_int_eq(lines, (int)(sizeof hostile_lines / sizeof hostile_lines[0]) + 1 + 2 + 1 + 1);
    ftp_end(&g, &s);
}
END_TEST

/* ---- (d) hostile server replies -------------------------------------------------------------- */

typedef struct hreply {
    const char *cmd;
    const char *reply; /* what the server sends */
    const char *want;  /* what the client must get (all lines, "\n"-joined) */
} hreply;

static const hreply hostile_replies[] = {
    {"PASV\r\n", "227 Entering Passive Mode (127,0,0,4,200,10)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (127,0,0,1,200,10)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (127,0,0,2,200,10)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (192,0,2,99,200,10)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (127,0,0,3,0,25)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (127,0,0,3,0,0)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (1216,256,2,127,127,127)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (127,0,0,3,200,10,7)\r\n", "425 Can't open data connection."},
    {"EPSV\r\n", "229 Entering Extended Passive Mode (|||6446)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "229 Entering Extended Passive Mode (|||6446|)\r\n", "425 Can't open data connection."},
    {"NOOP\r\n", "227 Entering Passive Mode (127,0,0,3,200,10)\r\n", "425 Can't open data connection."},
    {"PASV\r\n", "227 Entering Passive Mode (127,0,0,3,200,10)\x01\r\n", "425 Can't open data connection."},
    /* a refusal of PASV passes unchanged */
    {"PASV\r\n", "500 PASV not here.\r\n", "500 PASV not here."},
    /* a 227 inside another reply is text (padded), and grants nothing */
    {"PASV\r\n", "230-hello\r\n227 Entering Passive Mode (127,0,0,3,200,10)\r\n230 done\r\n",
     "230-hello\n 227 Entering Passive Mode (127,0,0,3,200,10)\n230 done"},
    /* a 213 far too long: answered with the code, without the bytes */
    {"NOOP\r\n", NULL, "213 Reply refused by the gateway."},
};

static void *hostile_server_client(void *arg)
{
    cli *c = arg;
    static char big[70100];
    CLI_EXPECT(c, cli_connect(c, "127.0.0.1", c->g->lp), "no greeting");
    for (size_t i = 0; i < sizeof hostile_replies / sizeof hostile_replies[0]; i++) {
        const hreply *h = &hostile_replies[i];
        if (h->reply != NULL) {
            srv_set_override(c->s, h->reply);
        } else {
            memcpy(big, "213 ", 4);
            memset(big + 4, '9', 900);
            memcpy(big + 904, "\r\n", 3);
            srv_set_override(c->s, big);
        }
        cli_cmd(c, h->cmd);
        CLI_EXPECT(c, strcmp(c->reply, h->want) == 0, "case %zu: got \"%s\", want \"%s\"", i, c->reply, h->want);
        CLI_EXPECT(c, cli_cmd(c, "NOOP\r\n") == 200, "NOOP after case %zu: %s", i, c->reply);
    }
    return NULL;
}

START_TEST(hostile_server_replies)
{
    srv s;
    gw g;
    cli c;
    publish_and_run(&g, &s, 0, hostile_server_client, &c);
    expect_no_grants(&g);
    run_client(&g, hostile_client_end, &c); /* the session still works */
    ftp_end(&g, &s);
}
END_TEST

/* ---- (f) timeout and (g) withdrawal at close ------------------------------------------------- */

static void *pasv_and_hold(void *arg)
{
    cli *c = arg;
    char ip[32];
    CLI_EXPECT(c, cli_connect(c, "127.0.0.1", c->g->lp), "no greeting");
    CLI_EXPECT(c, cli_cmd(c, "PASV\r\n") == 227 && parse227(c->reply, ip, &c->data_port), "PASV: %s", c->reply);
    /* a second PASV replaces the first (catalog #26) */
    uint16_t first = c->data_port;
    CLI_EXPECT(c, cli_cmd(c, "PASV\r\n") == 227 && parse227(c->reply, ip, &c->data_port), "PASV 2: %s", c->reply);
    c->extra = first;
    return NULL;
}

static void *close_control(void *arg)
{
    cli *c = arg;
    close(c->fd);
    usleep(100000);
    return NULL;
}

static void *port_and_hold(void *arg)
{
    cli *c = arg;
    CLI_EXPECT(c, cli_cmd(c, "PORT 127,0,0,2,200,10\r\n") == 200, "PORT: %s", c->reply);
    return NULL;
}

START_TEST(timeout_and_close)
{
    srv s;
    gw g;
    cli c;
    publish_and_run(&g, &s, 300, pasv_and_hold, &c);
    ck_assert_uint_ne(c.extra, c.data_port);
    ck_assert_uint_eq(stats(&g).bound_ports, 1); /* the first was killed */
    tu_loop_run_for(&g.loop, 700);
    ck_assert_uint_eq(stats(&g).bound_ports, 0); /* (f) unused: timed out */
    /* (g): a PASV and a PORT outstanding, then the control connection closes. */
    run_client(&g, port_and_hold, &c);
    ck_assert_uint_eq(stats(&g).permissions, 1);
    tu_run_peer(&g.loop, close_control, &c);
    tu_loop_run_for(&g.loop, 50);
    ck_assert_uint_eq(stats(&g).connections, 0);
    ftp_end(&g, &s);
}
END_TEST

/* A PORT the server refuses withdraws its grant. */
static void *port_refused(void *arg)
{
    cli *c = arg;
    CLI_EXPECT(c, cli_connect(c, "127.0.0.1", c->g->lp), "no greeting");
    srv_set_override(c->s, "500 No active mode here.\r\n");
    CLI_EXPECT(c, cli_cmd(c, "PORT 127,0,0,2,200,10\r\n") == 500, "PORT: %s", c->reply);
    return NULL;
}

START_TEST(port_refused_withdraws)
{
    srv s;
    gw g;
    cli c;
    publish_and_run(&g, &s, 0, port_refused, &c);
    ck_assert_uint_eq(stats(&g).permissions, 0);
    tu_run_peer(&g.loop, close_control, &c);
    ftp_end(&g, &s);
}
END_TEST

/* ---- explicit client through SOCKS5 -------------------------------------------------------- */

static int socks_connect(uint16_t socks_port, const char *ip, uint16_t port)
{
    int fd = tu_sock_from("127.0.0.2", 0);
    uint8_t g[3] = {5, 1, 0}, a[10], r[10] = {5, 1, 0, 1};
    inet_pton(AF_INET, ip, r + 4);
    uint16_t p = htons(port);
    memcpy(r + 8, &p, 2);
    if (tu_connect_to(fd, "127.0.0.1", socks_port) != 0 || tu_write_all(fd, g, 3) != 0 || recv(fd, a, 2, MSG_WAITALL) != 2 ||
        tu_write_all(fd, r, 10) != 0 || recv(fd, a, 10, MSG_WAITALL) != 10 || a[1] != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct sox {
    cli c;
    uint16_t socks_port;
} sox;

static void *socks_client(void *arg)
{
    sox *x = arg;
    cli *c = &x->c;
    char ip[32], data[256];
    uint16_t port;
    c->ok = true;
    c->fd = socks_connect(x->socks_port, "127.0.0.3", c->s->port);
    CLI_EXPECT(c, c->fd >= 0, "SOCKS CONNECT failed");
    c->r.fd = c->fd;
    CLI_EXPECT(c, cli_cmd(c, NULL) == 220, "greeting: %s", c->reply);
    CLI_EXPECT(c, cli_cmd(c, "PASV\r\n") == 227 && parse227(c->reply, ip, &port), "PASV: %s", c->reply);
    CLI_EXPECT(c, strcmp(ip, "127.0.0.3") == 0, "227 not the server's own: %s", c->reply);
    CLI_EXPECT(c, write_str(c->fd, "RETR f\r\n") == 0, "send RETR");
    /* As a SOCKS client makes it: a CONNECT to the address in the reply, through the gateway. */
    int dfd = socks_connect(x->socks_port, ip, port);
    CLI_EXPECT(c, dfd >= 0, "SOCKS CONNECT to the passive data port refused");
    ssize_t got = tu_read_all(dfd, data, sizeof data - 1);
    data[got > 0 ? got : 0] = 0;
    close(dfd);
    CLI_EXPECT(c, strcmp(data, PAYLOAD) == 0, "payload: \"%s\"", data);
    CLI_EXPECT(c, cli_cmd(c, NULL) == 150 && cli_cmd(c, NULL) == 226, "RETR: %s", c->reply);
    /* active: PORT rewritten to a gateway port bound for the client */
    active_retr(c, false);
    if (!c->ok)
        return NULL;
    CLI_EXPECT(c, cli_cmd(c, "QUIT\r\n") == 221, "QUIT: %s", c->reply);
    close(c->fd);
    return NULL;
}

START_TEST(explicit_socks_client)
{
    srv s;
    srv_start(&s);
    gw g;
    char policy[1024];
    snprintf(policy, sizeof policy,
             "protocols = ( { name = \"ftp\"; guid = \"{0badf00d-0000-0000-0000-0000000000f2}\"; protocol = \"tcp\";"
             " port = %u; filters = [ \"" FTP_GUID "\" ]; } );\n"
             "rules = ( { name = \"out\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"all\" ]; } );\n",
             s.port);
    gw_open(&g, policy, 0);
    sox x = {.c = {.g = &g, .s = &s}};
    x.socks_port = tu_free_port("127.0.0.1");
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%u", x.socks_port);
    struct sockaddr_storage a = tu_addr(t);
    TU_EXPECT_HR(fwx_proxy_socks_listen(g.fw, TU_SA(a), tu_len(&a)), FWX_S_OK);
    tu_run_peer(&g.loop, socks_client, &x);
    ck_assert_msg(x.c.ok, "%s", x.c.why);
    ck_assert_int_eq(atomic_load(&s.data_conns), 2);
    ftp_end(&g, &s);
}
END_TEST

/* ---- transparent client: the core's pump drives the plugin's data filter -------------------- */

/* A connected TCP pair on loopback: *a is the pump's end, *b the test's. */
static void tcp_pair(const char *ip, int *a, int *b)
{
    int l = tu_sock_from(ip, 0);
    listen(l, 1);
    *b = tu_sock_from(ip, 0);
    ck_assert_int_eq(tu_connect_to(*b, ip, tu_bound_port(l)), 0);
    *a = accept(l, NULL, NULL);
    ck_assert_int_ge(*a, 0);
    close(l);
}

/* One exchange on a control connection that the pump relays: the client's line (NULL: none),
   the line the server must get (NULL: none reaches it), the server's line (NULL: none) and the
   line the client must get back. A wanted line ending in '*' is a prefix. */
typedef struct step {
    const char *client_says, *server_gets, *server_says, *client_gets;
} step;

typedef struct tx {
    int client, server; /* the test's ends */
    lr rc, rs;
    const step *steps;
    size_t n_steps;
    bool ok;
    char why[4096];
    char line[1024];
} tx;

static bool line_is(const char *got, const char *want)
{
    size_t n = strlen(want);
    if (n > 0 && want[n - 1] == '*')
        return strncmp(got, want, n - 1) == 0;
    return strcmp(got, want) == 0;
}

static int say(int fd, const char *line)
{
    char b[1024];
    snprintf(b, sizeof b, "%s\r\n", line);
    return write_str(fd, b);
}

/* Reads one line from r and compares it with want; false (t->why says why) if it differs. */
static bool tx_expect(tx *t, lr *r, const char *who, size_t i, const char *want)
{
    t->line[0] = '\0';
    if (lr_line(r, t->line, sizeof t->line) && line_is(t->line, want))
        return true;
    snprintf(t->why, sizeof t->why, "step %zu: %s got \"%s\", want \"%s\"", i, who, t->line, want);
    return false;
}

/* Runs t->steps in order, the test's thread playing both ends; stops at the first that fails. */
static void *run_steps(void *arg)
{
    tx *t = arg;
    t->ok = false;
    for (size_t i = 0; i < t->n_steps; i++) {
        const step *st = &t->steps[i];
        if (st->client_says != NULL && say(t->client, st->client_says) != 0)
            return snprintf(t->why, sizeof t->why, "step %zu: the client cannot send", i), NULL;
        if (st->server_gets != NULL && !tx_expect(t, &t->rs, "the server", i, st->server_gets))
            return NULL;
        if (st->server_says != NULL && say(t->server, st->server_says) != 0)
            return snprintf(t->why, sizeof t->why, "step %zu: the server cannot send", i), NULL;
        if (!tx_expect(t, &t->rc, "the client", i, st->client_gets))
            return NULL;
    }
    t->ok = true;
    return NULL;
}

#define RUN_STEPS(g, t, table)                                                                    \
    do {                                                                                          \
        (t)->steps = (table);                                                                     \
        (t)->n_steps = sizeof(table) / sizeof(table)[0];                                          \
        tu_run_peer(&(g)->loop, run_steps, (t));                                                  \
        ck_assert_msg((t)->ok, "%s", (t)->why);                                                   \
    } while (0)

#define GREETING {NULL, NULL, "220 hi", "220 hi"} /* the server's, passed unchanged */

static const step transparent_passive_steps[] = {
    GREETING,
    /* passive: the reply passes unchanged, a permission to the server's port is made */
    {"PASV", "PASV", "227 Entering Passive Mode (127,0,0,3,200,10)", "227 Entering Passive Mode (127,0,0,3,200,10)"},
    /* a 227 naming another host is refused */
    {"PASV", "PASV", "227 Entering Passive Mode (127,0,0,4,200,11)", "425 Can't open data connection."},
    /* EPSV: the permission is for the control peer's address */
    {"EPSV", "EPSV", "229 Entering Extended Passive Mode (|||51212|)", "229 Entering Extended Passive Mode (|||51212|)"},
};

static const step transparent_active_steps[] = {
    {"PORT 127,0,0,2,200,10", "PORT 127,0,0,1,*", "200 ok", "200 ok"},
    {"PORT 127,0,0,4,200,10", NULL, NULL, R500P}, /* a bounce never reaches the server */
};

/* An IPv4 SOCKS client whose CONNECT reached an IPv6 server (the core's view: an explicit
   session, the control connection's peer IPv6, the CONNECT's local address the gateway's IPv6
   one, here ::1 as the only IPv6 address of the gateway on loopback). */
static const step explicit_xfamily_steps[] = {
    GREETING,
    /* PASV goes to the IPv6 server as EPSV; the client gets a 227 naming no host (an IPv4 one
       cannot lead to the server) and the server's port, to CONNECT to with the control host. */
    {"PASV", "EPSV", "229 Entering Extended Passive Mode (|||51213|)", "227 Entering Passive Mode (0,0,0,0,200,13)."},
    /* EPSV names only a port: it goes and comes back as it is. */
    {"EPSV", "EPSV", "229 Entering Extended Passive Mode (|||51214|)", "229 Entering Extended Passive Mode (|||51214|)"},
    /* PORT and EPRT reach the server as EPRT naming the gateway's IPv6 address on its side. */
    {"PORT 127,0,0,2,200,10", "EPRT |2|::1|*", "200 ok", "200 ok"},
    {"EPRT |1|127.0.0.2|51300|", "EPRT |2|::1|*", "200 ok", "200 ok"},
    /* Still the client's own address only (no bounce). */
    {"PORT 127,0,0,4,200,10", NULL, NULL, R500P},
};

static void pump_done(fwx_pump *p, void *arg)
{
    (void)p;
    *(int *)arg = 1;
}

static fwx_result admit(gw *g, const char *src, const char *dst)
{
    struct sockaddr_storage s = tu_addr(src), d = tu_addr(dst);
    fwx_flow f = {sizeof f, FWX_PROTOCOL_TCP, TU_SA(s), tu_len(&s), TU_SA(d), tu_len(&d)};
    IFWXConnection *c = NULL;
    fwx_result hr = fwx_firewall_admit(g->fw, &f, &c);
    if (c != NULL)
        fwx_connection_close(c);
    return hr;
}

/* A control connection the test reports and relays itself, through the pump: a gateway with
   no policy (every filter sees every protocol) and host relay on, a session of `source` for the
   client 127.0.0.2, its connection to `server` seen at the gateway's `ext`. */
typedef struct relayed {
    gw g;
    IFWXSession *s;
    IFWXConnection *ctl;
    int done; /* the pump's completion ran */
    tx t;
} relayed;

static void relayed_open(relayed *r, uint32_t source, const char *server, const char *ext)
{
    memset(r, 0, sizeof *r);
    gw_open(&r->g, NULL, 0);
    TU_EXPECT_HR(fwx_firewall_set_host_relay(r->g.fw, 1), FWX_S_OK);
    struct sockaddr_storage cl = tu_addr("127.0.0.2"), srv_a = tu_addr(server), ext_a = tu_addr(ext);
    fwx_session_params sp = {sizeof sp, source, TU_SA(cl), tu_len(&cl), NULL, 0, NULL};
    TU_EXPECT_HR(fwx_session_open(r->g.fw, &sp, &r->s), FWX_S_OK);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv_a), tu_len(&srv_a),
                                TU_SA(ext_a), tu_len(&ext_a), NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(r->s, &cp, &r->ctl), FWX_S_OK);
    int pc, ps;
    tcp_pair("127.0.0.1", &pc, &r->t.client);
    tcp_pair("127.0.0.1", &ps, &r->t.server);
    r->t.rc.fd = r->t.client;
    r->t.rs.fd = r->t.server;
    fwx_pump *p = NULL;
    TU_EXPECT_HR(fwx_pump_start(&r->g.loop, r->ctl, pc, ps, NULL, pump_done, &r->done, &p), FWX_S_OK);
}

/* Closing the control connection ends the pump and withdraws the bound port; then all goes. */
static void relayed_close(relayed *r)
{
    close(r->t.client);
    close(r->t.server);
    tu_loop_run_for(&r->g.loop, 100);
    ck_assert_int_eq(r->done, 1);
    ck_assert_uint_eq(stats(&r->g).bound_ports, 0);
    fwx_connection_close(r->ctl);
    fwx_session_close(r->s);
    IFWXSession_Release(r->s);
    gw_close(&r->g);
}

START_TEST(transparent_client)
{
    relayed r;
    relayed_open(&r, fwxSourceNAT, "127.0.0.3:21", "127.0.0.1:40001");
    RUN_STEPS(&r.g, &r.t, transparent_passive_steps);
    /* The EPSV permission replaced the PASV one: the client may connect to the server's port. */
    ck_assert_uint_eq(stats(&r.g).permissions, 1);
    TU_EXPECT_HR(admit(&r.g, "127.0.0.4:3000", "127.0.0.3:51212"), FWX_E_NOT_FOUND); /* not the client */
    TU_EXPECT_HR(admit(&r.g, "127.0.0.2:3000", "127.0.0.3:51210"), FWX_E_NOT_FOUND); /* the replaced one */
    TU_EXPECT_HR(admit(&r.g, "127.0.0.2:3000", "127.0.0.3:51212"), FWX_S_OK);
    ck_assert_uint_eq(stats(&r.g).permissions, 0); /* used once */
    RUN_STEPS(&r.g, &r.t, transparent_active_steps);
    ck_assert_uint_eq(stats(&r.g).bound_ports, 1);
    relayed_close(&r);
}
END_TEST

START_TEST(explicit_across_families)
{
    relayed r;
    relayed_open(&r, fwxSourceWSP, "[2001:db8::3]:21", "[::1]:40002");
    RUN_STEPS(&r.g, &r.t, explicit_xfamily_steps);
    /* The last EPRT's bound port is the one grant left (each grant replaces the one before). */
    ck_assert_uint_eq(stats(&r.g).permissions, 0);
    ck_assert_uint_eq(stats(&r.g).bound_ports, 1);
    relayed_close(&r);
}
END_TEST

START_TEST(plugin_exports)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "test \"$(nm -D --defined-only '%s' | awk '{print $3}')\" = fwx_entry", plugin_path());
    ck_assert_msg(system(cmd) == 0, "the plugin exports more than fwx_entry");
}
END_TEST

static Suite *ftp_suite(void)
{
    const tu_case cases[] = {
        {"published passive", published_passive},
        {"published active", published_active},
        {"hostile client", hostile_client_input},
        {"hostile server", hostile_server_replies},
        {"timeout and close", timeout_and_close},
        {"port refused", port_refused_withdraws},
        {"explicit socks", explicit_socks_client},
        {"transparent", transparent_client},
        {"explicit across families", explicit_across_families},
        {"exports", plugin_exports},
    };
    return TU_SUITE("ftp", cases, 30);
}

int main(void) { return tu_run_suite(ftp_suite()); }
