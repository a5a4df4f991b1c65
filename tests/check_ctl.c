/*
 * fwx tests - the example control server (examples/common/ctl.c) and the real fwxctl binary.
 *
 * A firewall on the test's loop holds a NAT session for client C 10.0.0.8, its primary
 * connection to S 198.51.100.7:21 (never contacted), an AllowFutureConnect permission with
 * FWX_FLAG_TIMEOUT and a BindForClient bound port; a test plugin is loaded. A ctl server listens
 * on a socket in a temporary directory, and fwxctl (from FWX_CTL_BIN) runs as a child process
 * while the loop keeps serving it. Raw clients made with libuv check the refusals.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "plugins/test_plugin.h"

#include "ctl.h"  /* tests/meson.build links ctl_common_dep */
#include "json.h" /* the examples' one JSON escaping rule */

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fx {
    uv_loop_t loop;
    fwx_firewall *fw;
    IFWXSession *s;
    IFWXConnection *primary;
    IFWXFirewallAction *perm;
    IFWXConnection *bound[1];
    uint16_t bound_port;
    void *plugin_handle;
    ctl_server *srv;
    char dir[64];
    char sock[128];
} fx;

static void quiet_log(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg;
    (void)level;
    (void)msg;
}

static void fx_open_firewall(fx *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fwx-ctl-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/ctl.sock", f->dir);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    tu_fw_gateway_addresses(&o);
    o.port_min = 40000;
    o.port_max = 40255;
    o.log = quiet_log;
    tu_fw_open(&f->loop, &o, &f->fw);
}

/* Everything the listings show. The permission's timeout is the default 60 s. */
static void fx_populate(fx *f)
{
    /* The plugin hooks WSP events only, so that it stays out of this NAT session's way. */
    tp_control *tpc = tu_plugin_map("tp_good", &f->plugin_handle);
    tpc->hooks = fwx_Connect_Tcp | fwxSourceWSP;
    tu_plugin_load(f->fw, "tp_good");

    f->s = tu_session_open(f->fw, fwxSourceNAT, "10.0.0.8", "10.0.0.1");
    struct sockaddr_storage srv = tu_addr("198.51.100.7:21"), gl = tu_addr("203.0.113.1:41000");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(srv), tu_len(&srv),
                                TU_SA(gl), tu_len(&gl), NULL, 0, 0, NULL};
    TU_EXPECT_HR(fwx_connection_open(f->s, &cp, &f->primary), FWX_S_OK);

    struct sockaddr_storage t = tu_addr("198.51.100.7:50000");
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(f->s, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT,
                                                &FWX_GUID_NULL, NULL, NULL, f->primary, &f->perm),
                 FWX_S_OK);

    struct sockaddr_storage ca = tu_addr("10.0.0.8:2000"), px = tu_addr("0.0.0.0:0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    TU_EXPECT_HR(IFWXSession_BindForClient(f->s, cap, sizeof(struct sockaddr_in), TU_SAM(px), sizeof px,
                                           FWX_PROTOCOL_TCP, 1, 0, 5, &FWX_GUID_NULL, NULL, NULL, NULL, f->bound),
                 FWX_S_OK);
    f->bound_port = ntohs(((struct sockaddr_in *)&px)->sin_port);
    ck_assert_uint_ge(f->bound_port, 40000);
    ck_assert_uint_le(f->bound_port, 40255);

    fwx_firewall_stats st = {sizeof st, 0, 0, 0, 0, 0, 0};
    TU_EXPECT_HR(fwx_firewall_get_stats(f->fw, &st), FWX_S_OK);
    ck_assert_uint_eq(st.sessions, 1);
    ck_assert_uint_eq(st.permissions, 1);
    ck_assert_uint_eq(st.bound_ports, 1);
}

static void fx_start_server(fx *f)
{
    char err[256];
    f->srv = ctl_server_start(&f->loop, f->fw, f->sock, err, sizeof err);
    ck_assert_msg(f->srv != NULL, "ctl_server_start: %s", err);
}

static void fx_open(fx *f)
{
    fx_open_firewall(f);
    fx_populate(f);
    fx_start_server(f);
}

static void fx_close(fx *f)
{
    if (f->srv != NULL) {
        ctl_server_close(f->srv);
        f->srv = NULL;
        struct stat st;
        ck_assert_msg(lstat(f->sock, &st) != 0 && errno == ENOENT, "ctl_server_close left %s behind", f->sock);
    }
    if (f->bound[0] != NULL)
        IFWXConnection_Release(f->bound[0]);
    if (f->perm != NULL)
        IFWXFirewallAction_Release(f->perm);
    if (f->primary != NULL)
        fwx_connection_close(f->primary);
    if (f->s != NULL) {
        fwx_session_close(f->s);
        IFWXSession_Release(f->s);
    }
    tu_fw_close(&f->loop, &f->fw);
    if (f->plugin_handle != NULL)
        dlclose(f->plugin_handle);
    unlink(f->sock);
    rmdir(f->dir);
}

/* ---- running the loop until something happens ------------------------------------------------ */

static void guard_cb(uv_timer_t *t) { *(bool *)t->data = true; }

/* Runs the loop until *done, or fails the test after max_ms. */
static void run_until(fx *f, const bool *done, uint64_t max_ms, const char *what)
{
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(&f->loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, guard_cb, max_ms, 0);
    while (!*done && !expired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    ck_assert_msg(*done, "%s did not finish within %llu ms", what, (unsigned long long)max_ms);
}

/* ---- fwxctl as a child process ------------------------------------------------------------------- */

typedef struct proc {
    uv_process_t p;
    uv_pipe_t out;
    uv_pipe_t err;
    char obuf[65536];
    size_t olen;
    char ebuf[4096];
    size_t elen;
    int64_t status;
    int term_signal;
    int open; /* handles not yet closed */
    bool done;
} proc;

static void proc_closed_cb(uv_handle_t *h)
{
    proc *r = h->data;
    if (--r->open == 0)
        r->done = true;
}

static void proc_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    proc *r = p->data;
    r->status = status;
    r->term_signal = term_signal;
    uv_close((uv_handle_t *)p, proc_closed_cb);
}

static void proc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    proc *r = h->data;
    (void)suggested;
    if (h == (uv_handle_t *)&r->out)
        *buf = uv_buf_init(r->obuf + r->olen, (unsigned)(sizeof r->obuf - 1 - r->olen));
    else
        *buf = uv_buf_init(r->ebuf + r->elen, (unsigned)(sizeof r->ebuf - 1 - r->elen));
}

static void proc_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    proc *r = s->data;
    (void)buf;
    if (nread > 0) {
        size_t *len = s == (uv_stream_t *)&r->out ? &r->olen : &r->elen;
        size_t cap = s == (uv_stream_t *)&r->out ? sizeof r->obuf : sizeof r->ebuf;
        *len += (size_t)nread;
        ck_assert_msg(*len < cap - 1, "fwxctl wrote more than the test's buffer");
    } else if (nread < 0) {
        uv_close((uv_handle_t *)s, proc_closed_cb);
    }
}

static const char *ctl_bin(void)
{
    static char buf[4096];
    const char *bin = getenv("FWX_CTL_BIN");
    if (bin == NULL || bin[0] == '\0') {
        /* Beside the test plugins: <build>/tests/plugins -> <build>/examples/fwxctl/fwxctl. */
        const char *pd = getenv("FWX_TEST_PLUGIN_DIR");
        snprintf(buf, sizeof buf, "%s/../../examples/fwxctl/fwxctl", pd ? pd : "tests/plugins");
        bin = buf;
    }
    ck_assert_msg(access(bin, X_OK) == 0, "fwxctl not found at %s (set FWX_CTL_BIN)", bin);
    return bin;
}

/*
 * Runs fwxctl with args (NULL-terminated, without argv[0]) while the loop keeps serving, and
 * returns what it printed. env_socket: if not NULL, the child's whole environment is
 * FWX_CTL_SOCKET=env_socket. The caller frees the result.
 */
static proc *run_ctl_env(fx *f, const char *env_socket, const char *const *args)
{
    proc *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)ctl_bin();
    for (; *args != NULL && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    char envbuf[256];
    char *env[2] = {envbuf, NULL};
    if (env_socket != NULL)
        snprintf(envbuf, sizeof envbuf, "FWX_CTL_SOCKET=%s", env_socket);

    ck_assert_int_eq(uv_pipe_init(&f->loop, &r->out, 0), 0);
    ck_assert_int_eq(uv_pipe_init(&f->loop, &r->err, 0), 0);
    r->out.data = r->err.data = r->p.data = r;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&r->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&r->err;
    uv_process_options_t po = {0};
    po.file = argv[0];
    po.args = argv;
    po.env = env_socket != NULL ? env : NULL;
    po.stdio = stdio;
    po.stdio_count = 3;
    po.exit_cb = proc_exit_cb;
    int rc = uv_spawn(&f->loop, &r->p, &po);
    ck_assert_msg(rc == 0, "uv_spawn %s: %s", argv[0], uv_strerror(rc));
    r->open = 3;
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&r->out, proc_alloc_cb, proc_read_cb), 0);
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&r->err, proc_alloc_cb, proc_read_cb), 0);
    run_until(f, &r->done, 20000, "fwxctl");
    r->obuf[r->olen] = '\0';
    r->ebuf[r->elen] = '\0';
    ck_assert_msg(r->term_signal == 0, "fwxctl died of signal %d; stderr: %s", r->term_signal, r->ebuf);
    return r;
}

/* fwxctl --socket <sock> [--json] what; asserts exit 0 and an empty stderr. */
static proc *ctl_ok(fx *f, bool json, const char *what)
{
    const char *args[] = {"--socket", f->sock, json ? "--json" : what, json ? what : NULL, NULL};
    proc *r = run_ctl_env(f, NULL, args);
    ck_assert_msg(r->status == 0, "fwxctl %s%s: exit %lld, stderr: %s", json ? "--json " : "", what,
                  (long long)r->status, r->ebuf);
    ck_assert_msg(r->elen == 0, "fwxctl %s: stderr: %s", what, r->ebuf);
    return r;
}

/* ---- looking at the output ----------------------------------------------------------------------- */

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        if (*p == '\n')
            n++;
    return n;
}

/* Lines of text containing every needle (NULL-terminated). */
static int count_matching(const char *text, const char *const *needles)
{
    int n = 0;
    const char *line = text;
    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char *copy = strndup(line, len);
        bool all = true;
        for (const char *const *nd = needles; *nd; nd++)
            if (strstr(copy, *nd) == NULL)
                all = false;
        n += all;
        free(copy);
        line += len + (nl ? 1 : 0);
    }
    return n;
}

#define MATCHES(text, ...) count_matching((text), (const char *const[]){__VA_ARGS__, NULL})

/* Asserts that text holds every needle (NULL-terminated), naming the first it lacks. */
static void expect_all(const char *text, const char *const *needles)
{
    ck_assert_ptr_nonnull(text);
    for (const char *const *nd = needles; *nd; nd++)
        ck_assert_msg(strstr(text, *nd) != NULL, "no %s in:\n%s", *nd, text);
}
#define EXPECT_ALL(text, ...) expect_all((text), (const char *const[]){__VA_ARGS__, NULL})

/* The value of "key":<number> in a JSON line, or -1. */
static long long json_num(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    if (*p < '0' || *p > '9')
        return -1;
    return strtoll(p, NULL, 10);
}

/* The first line of text containing needle (a copy), or fails the test. */
static char *line_with(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    ck_assert_msg(p != NULL, "no line with %s in:\n%s", needle, text);
    while (p > text && p[-1] != '\n')
        p--;
    const char *nl = strchr(p, '\n');
    return strndup(p, nl ? (size_t)(nl - p) : strlen(p));
}

/* ---- raw clients ------------------------------------------------------------------------------------ */

typedef struct raw {
    uv_pipe_t pipe;
    uv_connect_t creq;
    uv_write_t wreq;
    fx *f;
    const char *data;
    size_t len;
    char resp[4096];
    size_t rlen;
    uint64_t t0;
    uint64_t elapsed_ms;
    int connect_status;
    bool done;
} raw;

static void raw_closed_cb(uv_handle_t *h)
{
    raw *r = h->data;
    r->done = true;
}

static void raw_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    raw *r = h->data;
    (void)suggested;
    *buf = uv_buf_init(r->resp + r->rlen, (unsigned)(sizeof r->resp - 1 - r->rlen));
}

static void raw_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    raw *r = s->data;
    (void)buf;
    if (nread > 0) {
        r->rlen += (size_t)nread;
        ck_assert_uint_lt(r->rlen, sizeof r->resp - 1);
    } else if (nread < 0) {
        uv_update_time(&r->f->loop);
        r->elapsed_ms = uv_now(&r->f->loop) - r->t0;
        r->resp[r->rlen] = '\0';
        uv_close((uv_handle_t *)s, raw_closed_cb);
    }
}

static void raw_write_cb(uv_write_t *w, int status)
{
    (void)w;
    (void)status; /* the server may already have closed: the read side tells */
}

static void raw_connect_cb(uv_connect_t *c, int status)
{
    raw *r = c->data;
    r->connect_status = status;
    if (status != 0) {
        uv_close((uv_handle_t *)&r->pipe, raw_closed_cb);
        return;
    }
    if (r->len > 0) {
        uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)r->len);
        r->wreq.data = r;
        ck_assert_int_eq(uv_write(&r->wreq, (uv_stream_t *)&r->pipe, &b, 1, raw_write_cb), 0);
    }
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&r->pipe, raw_alloc_cb, raw_read_cb), 0);
}

static void raw_start(fx *f, raw *r, const char *data, size_t len)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->data = data;
    r->len = len;
    ck_assert_int_eq(uv_pipe_init(&f->loop, &r->pipe, 0), 0);
    r->pipe.data = r;
    r->creq.data = r;
    uv_update_time(&f->loop);
    r->t0 = uv_now(&f->loop);
    uv_pipe_connect(&r->creq, &r->pipe, f->sock, raw_connect_cb);
}

/* Sends data on a new connection and returns what came back before the server closed it. */
static void raw_exchange(fx *f, raw *r, const char *data, size_t len)
{
    raw_start(f, r, data, len);
    run_until(f, &r->done, 10000, "raw client");
    ck_assert_int_eq(r->connect_status, 0);
}

/* ---- listings with --json ---------------------------------------------------------------------------- */

START_TEST(json_sessions)
{
    fx f;
    fx_open(&f);
    proc *r = ctl_ok(&f, true, "sessions");
    ck_assert_int_eq(count_lines(r->obuf), 1);
    ck_assert_ptr_null(strstr(r->obuf, "\"end\"")); /* the end marker is not printed */
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"session\"", "\"client\":\"10.0.0.8\"", "\"name\":\"nat\"",
                             "\"flag_names\":[\"nat\"]", "\"protocol\":null", "\"expires_in_ms\":null"),
                     1);
    free(r);
    fx_close(&f);
}
END_TEST

START_TEST(json_connections)
{
    fx f;
    fx_open(&f);
    proc *r = ctl_ok(&f, true, "connections");
    /* The primary connection and the one BindForClient made for the bound port. */
    ck_assert_msg(count_lines(r->obuf) == 2, "connections:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"connection\""), 2);
    char *prim = line_with(r->obuf, "\"name\":\"primary\"");
    EXPECT_ALL(prim, "\"protocol\":\"tcp\"", "\"client\":\"10.0.0.8\"", "\"peer\":\"198.51.100.7:21\"",
                     "\"local\":\"203.0.113.1:41000\"", "\"mode\":", "\"bytes_in\":0,\"bytes_out\":0");
    ck_assert_int_ge(json_num(prim, "age_ms"), 0);
    ck_assert_int_ge(json_num(prim, "session"), 1);
    char *sec = line_with(r->obuf, "\"secondary\"");
    ck_assert_ptr_nonnull(strstr(sec, "\"flag_names\":["));
    ck_assert_int_eq(json_num(sec, "session"), json_num(prim, "session"));
    free(prim);
    free(sec);
    free(r);
    fx_close(&f);
}
END_TEST

START_TEST(json_permissions_and_ports)
{
    fx f;
    fx_open(&f);
    proc *r = ctl_ok(&f, true, "permissions");
    ck_assert_msg(count_lines(r->obuf) == 1, "permissions:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"grant\"", "\"name\":\"permission\"", "\"protocol\":\"tcp\"",
                             "\"client\":\"10.0.0.8\"", "\"peer\":\"198.51.100.7:50000\"",
                             "\"flag_names\":[\"timeout\"]", "\"flags\":4,"),
                     1);
    long long exp = json_num(r->obuf, "expires_in_ms");
    ck_assert_msg(exp > 0 && exp <= 60000, "expires_in_ms %lld", exp);
    free(r);

    r = ctl_ok(&f, true, "ports");
    ck_assert_msg(count_lines(r->obuf) == 1, "ports:\n%s", r->obuf);
    char port[64];
    snprintf(port, sizeof port, ":%u\"", f.bound_port);
    ck_assert_msg(MATCHES(r->obuf, "\"kind\":\"grant\"", "\"name\":\"bound port\"", "\"protocol\":\"tcp\"",
                          "\"client\":\"10.0.0.8\"", "\"peer\":\"10.0.0.8:2000\"", port, "\"expires_in_ms\":null") == 1,
                  "ports:\n%s", r->obuf);
    free(r);
    fx_close(&f);
}
END_TEST

START_TEST(json_plugins_stats_all)
{
    fx f;
    fx_open(&f);
    proc *r = ctl_ok(&f, true, "plugins");
    ck_assert_msg(count_lines(r->obuf) == 1, "plugins:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"plugin\"", "\"name\":\"good\"", "tp_good.so\"",
                             "\"flag_names\":[\"connect_tcp\",\"wsp\"]", "\"session\":null"),
                     1);
    free(r);

    r = ctl_ok(&f, true, "stats");
    ck_assert_int_eq(count_lines(r->obuf), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"stats\"", "\"sessions\":1,", "\"connections\":2,",
                             "\"permissions\":1,", "\"bound_ports\":1,", "\"plugins\":1"),
                     1);
    free(r);

    r = ctl_ok(&f, true, "all");
    ck_assert_msg(count_lines(r->obuf) == 6, "all:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"plugin\""), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"session\""), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"connection\""), 2);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"grant\""), 2);
    /* Plugins first, as fwx_firewall_list describes them. */
    ck_assert_ptr_eq(strstr(r->obuf, "{\"kind\":\"plugin\""), r->obuf);
    free(r);

    r = ctl_ok(&f, true, "version");
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"version\"", "\"protocol\":1"), 1);
    free(r);
    fx_close(&f);
}
END_TEST

/* ---- tables ------------------------------------------------------------------------------------------ */

START_TEST(tables)
{
    fx f;
    fx_open(&f);
    proc *r = ctl_ok(&f, false, "connections");
    ck_assert_msg(count_lines(r->obuf) == 3, "connections:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "ID", "SESSION", "PROTO", "MODE", "CLIENT", "PEER", "LOCAL", "BYTES-IN",
                             "BYTES-OUT", "AGE"),
                     1);
    ck_assert_ptr_eq(strstr(r->obuf, "ID "), r->obuf); /* the header comes first */
    ck_assert_int_eq(MATCHES(r->obuf, " tcp ", "10.0.0.8", "198.51.100.7:21", "203.0.113.1:41000"), 1);
    free(r);

    r = ctl_ok(&f, false, "permissions");
    ck_assert_msg(count_lines(r->obuf) == 2, "permissions:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "ID", "SESSION", "KIND", "PROTO", "CLIENT", "TARGET", "GATEWAY", "EXPIRES",
                             "FLAGS", "OWNER"),
                     1);
    char *row = line_with(r->obuf, "permission");
    EXPECT_ALL(row, "198.51.100.7:50000", " timeout ");
    ck_assert_ptr_null(strstr(row, "never"));
    ck_assert_msg(strstr(row, " 60s ") != NULL || strstr(row, " 59s ") != NULL, "expiry in: %s", row);
    free(row);
    free(r);

    r = ctl_ok(&f, false, "ports");
    ck_assert_msg(count_lines(r->obuf) == 2, "ports:\n%s", r->obuf);
    row = line_with(r->obuf, "bound port");
    char port[64];
    snprintf(port, sizeof port, ":%u ", f.bound_port);
    EXPECT_ALL(row, port, "10.0.0.8:2000", " never ");
    free(row);
    free(r);

    r = ctl_ok(&f, false, "plugins");
    ck_assert_msg(count_lines(r->obuf) == 2, "plugins:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "ID", "NAME", "HOOKS", "PATH"), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "good", "connect_tcp,wsp", "tp_good.so"), 1);
    free(r);

    r = ctl_ok(&f, false, "sessions");
    ck_assert_msg(count_lines(r->obuf) == 2, "sessions:\n%s", r->obuf);
    ck_assert_int_eq(MATCHES(r->obuf, "nat", "10.0.0.8"), 1);
    free(r);

    r = ctl_ok(&f, false, "stats");
    ck_assert_int_eq(MATCHES(r->obuf, "sessions", " 1"), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "connections", " 2"), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "bound_ports", " 1"), 1);
    free(r);

    r = ctl_ok(&f, false, "all");
    ck_assert_int_eq(MATCHES(r->obuf, "plugins: 1"), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "sessions: 1"), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "connections: 2"), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "permissions: 1"), 1);
    ck_assert_int_eq(MATCHES(r->obuf, "ports: 1"), 1);
    free(r);
    fx_close(&f);
}
END_TEST

START_TEST(socket_from_environment)
{
    fx f;
    fx_open(&f);
    const char *args[] = {"--json", "stats", NULL};
    proc *r = run_ctl_env(&f, f.sock, args);
    ck_assert_msg(r->status == 0, "exit %lld: %s", (long long)r->status, r->ebuf);
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"stats\"", "\"sessions\":1,"), 1);
    free(r);
    fx_close(&f);
}
END_TEST

START_TEST(empty_firewall)
{
    fx f;
    fx_open_firewall(&f);
    fx_start_server(&f);
    proc *r = ctl_ok(&f, true, "all");
    ck_assert_int_eq(r->olen, 0);
    free(r);
    r = ctl_ok(&f, false, "connections");
    ck_assert_int_eq(count_lines(r->obuf), 1); /* the header only */
    free(r);
    fx_close(&f);
}
END_TEST

/* ---- refusals ---------------------------------------------------------------------------------------- */

START_TEST(unknown_request_gets_an_error)
{
    fx f;
    fx_open(&f);
    raw r;
    raw_exchange(&f, &r, "list everything\n", 16);
    ck_assert_msg(strncmp(r.resp, "{\"error\":\"unknown request \\\"list everything\\\"", 44) == 0, "got %s", r.resp);
    ck_assert_int_eq(count_lines(r.resp), 1);
    ck_assert_ptr_null(strstr(r.resp, "\"end\""));

    /* Quotes and control bytes in the request come back escaped. */
    raw_exchange(&f, &r, "a\"b\x01\n", 5);
    ck_assert_msg(strstr(r.resp, "\\\"a\\\"b\\u0001\\\"") != NULL, "got %s", r.resp);

    /* A request with CRLF is fine. */
    raw_exchange(&f, &r, "stats\r\n", 7);
    ck_assert_msg(strstr(r.resp, "\"kind\":\"stats\"") != NULL && strstr(r.resp, "{\"end\":true}\n") != NULL,
                  "got %s", r.resp);
    fx_close(&f);
}
END_TEST

START_TEST(long_request_refused)
{
    fx f;
    fx_open(&f);
    char big[4096];
    memset(big, 'a', sizeof big);
    raw r;
    raw_exchange(&f, &r, big, 300); /* no newline */
    ck_assert_msg(strcmp(r.resp, "{\"error\":\"request too long\"}\n") == 0, "got %s", r.resp);
    big[1000] = '\n';
    raw_exchange(&f, &r, big, 1001);
    ck_assert_msg(strcmp(r.resp, "{\"error\":\"request too long\"}\n") == 0, "got %s", r.resp);
    /* 256 bytes and a newline is a request (an unknown one). */
    big[256] = '\n';
    raw_exchange(&f, &r, big, 257);
    ck_assert_msg(strncmp(r.resp, "{\"error\":\"unknown request", 25) == 0, "got %s", r.resp);
    /* The server still answers. */
    raw_exchange(&f, &r, "version\n", 8);
    ck_assert_ptr_nonnull(strstr(r.resp, "\"kind\":\"version\""));
    fx_close(&f);
}
END_TEST

/* Objects in an answer: its lines but the end marker. */
static int answer_objects(const char *resp)
{
    int n = count_lines(resp);
    return strstr(resp, "{\"end\":true}\n") != NULL ? n - 1 : -1;
}

START_TEST(list_filters)
{
    fx f;
    fx_open(&f);
    raw r;
    raw_exchange(&f, &r, "list all\n", 9);
    /* plugin, session, primary and listening connections, permission, bound port */
    ck_assert_msg(answer_objects(r.resp) == 6, "got %s", r.resp);
    long long sid = json_num(strstr(r.resp, "\"kind\":\"session\""), "id");

    char req[128];
    int n = snprintf(req, sizeof req, "list all session=%lld\n", sid);
    raw_exchange(&f, &r, req, (size_t)n); /* the session and what belongs to it; no plugin */
    ck_assert_msg(answer_objects(r.resp) == 5 && strstr(r.resp, "\"kind\":\"plugin\"") == NULL, "got %s", r.resp);
    n = snprintf(req, sizeof req, "list all session=%lld\n", sid + 1000);
    raw_exchange(&f, &r, req, (size_t)n);
    ck_assert_int_eq(answer_objects(r.resp), 0);

    raw_exchange(&f, &r, "list all client=10.0.0.8\n", 25);
    ck_assert_int_eq(answer_objects(r.resp), 5);
    raw_exchange(&f, &r, "list all client=10.0.0.9\n", 25);
    ck_assert_int_eq(answer_objects(r.resp), 0);
    /* Connections and grants only. Without a backend the primary counts as carried by the kernel
       (no data filter asked for the user-mode path); the rest is user mode. */
    raw_exchange(&f, &r, "list all mode=user\n", 19);
    ck_assert_msg(answer_objects(r.resp) == 3 && strstr(r.resp, "\"kind\":\"session\"") == NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "list connections mode=kernel\n", 30);
    ck_assert_msg(answer_objects(r.resp) == 1 && strstr(r.resp, "\"name\":\"primary\"") != NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "list plugins\n", 13);
    char pname[64] = "";
    const char *np = strstr(r.resp, "\"name\":\"");
    ck_assert_ptr_nonnull(np);
    ck_assert_int_eq(sscanf(np, "\"name\":\"%63[^\"]\"", pname), 1);
    n = snprintf(req, sizeof req, "list all plugin=%s\n", pname);
    raw_exchange(&f, &r, req, (size_t)n); /* the plugin; the grants were asked for outside it */
    ck_assert_msg(answer_objects(r.resp) == 1 && strstr(r.resp, "\"kind\":\"plugin\"") != NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "list all plugin=nosuch\n", 23);
    ck_assert_int_eq(answer_objects(r.resp), 0);
    raw_exchange(&f, &r, "list all address=198.51.100.7:21\n", 33); /* the primary connection's peer */
    ck_assert_msg(answer_objects(r.resp) == 1 && strstr(r.resp, "\"name\":\"primary\"") != NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "list all address=198.51.100.7\n", 30); /* and the permission's target */
    ck_assert_int_eq(answer_objects(r.resp), 2);
    raw_exchange(&f, &r, "list all client=10.0.0.8 mode=user address=198.51.100.7\n", 56);
    ck_assert_msg(answer_objects(r.resp) == 1 && strstr(r.resp, "\"name\":\"permission\"") != NULL, "got %s", r.resp);

    static const char *const bad[] = {
        "list sessions colour=red\n",   "list sessions client=10.0.0.300\n", "list sessions client=1.2.3.4:80\n",
        "list sessions session=-1\n",   "list sessions session=1x\n",        "list sessions mode=both\n",
        "list sessions client\n",       "list sessions client=\n",            "list sessions mode=user mode=user\n",
        "list sessions address=[::1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_exchange(&f, &r, bad[i], strlen(bad[i]));
        ck_assert_msg(strncmp(r.resp, "{\"error\":", 9) == 0 && count_lines(r.resp) == 1, "%s got %s", bad[i], r.resp);
    }
    fx_close(&f);
}
END_TEST

typedef struct heard {
    char lines[4][256];
    int n;
} heard;

static void hear(void *arg, fwx_log_level level, const char *line)
{
    heard *h = arg;
    ck_assert_int_le(level, FWX_LOG_INFO);
    if (h->n < 4)
        snprintf(h->lines[h->n++], sizeof h->lines[0], "%s", line);
}

START_TEST(kill_and_levels)
{
    fx f;
    fx_open_firewall(&f);
    fx_populate(&f);
    heard h = {0};
    ctl_hooks hooks = {.log = hear, .arg = &h};
    ctl_config cc = {.path = f.sock, .mode = 0660, .gid = -1, .level = CTL_LEVEL_OPERATOR, .hooks = &hooks};
    char err[256];
    f.srv = ctl_server_start_with(&f.loop, f.fw, &cc, err, sizeof err);
    ck_assert_msg(f.srv != NULL, "%s", err);
    struct stat st;
    ck_assert_int_eq(lstat(f.sock, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0660);

    raw r;
    raw_exchange(&f, &r, "list connections\n", 17);
    long long cid = json_num(r.resp, "id");
    raw_exchange(&f, &r, "kill session 1\n", 15);
    ck_assert_msg(strstr(r.resp, "permission denied: \\\"kill\\\" needs level admin") != NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "reload\n", 7);
    ck_assert_msg(strstr(r.resp, "permission denied") != NULL, "got %s", r.resp);
    ck_assert_int_eq(h.n, 2);
    ck_assert_msg(strstr(h.lines[0], "\"kill\" refused") != NULL && strstr(h.lines[0], f.sock) != NULL, "%s",
                  h.lines[0]);
    raw_exchange(&f, &r, "metrics\n", 8); /* a host without the hook */
    ck_assert_msg(strstr(r.resp, "metrics: not available") != NULL, "got %s", r.resp);

    ctl_server_set_level(f.srv, CTL_LEVEL_ADMIN);
    raw_exchange(&f, &r, "kill connection 987654\n", 23);
    ck_assert_msg(strstr(r.resp, "no such object") != NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "kill connection -1\n", 19);
    ck_assert_msg(strstr(r.resp, "usage: kill") != NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "kill connection 1 2\n", 20);
    ck_assert_msg(strstr(r.resp, "usage: kill") != NULL, "got %s", r.resp);
    raw_exchange(&f, &r, "reload\n", 7);
    ck_assert_msg(strstr(r.resp, "cannot reload") != NULL, "got %s", r.resp);
    char req[64];
    int n = snprintf(req, sizeof req, "kill connection %lld\n", cid);
    raw_exchange(&f, &r, req, (size_t)n);
    char want[96];
    snprintf(want, sizeof want, "{\"kind\":\"killed\",\"what\":\"connection\",\"id\":%lld}\n{\"end\":true}\n", cid);
    ck_assert_str_eq(r.resp, want);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(f.primary, &flags), FWX_S_OK);
    ck_assert_uint_ne(flags & FWX_CONNECTION_TERMINATED, 0);
    raw_exchange(&f, &r, "list connections\n", 17); /* the bound port's listening connection is left */
    ck_assert_msg(answer_objects(r.resp) == 1 && strstr(r.resp, "\"name\":\"listening\"") != NULL, "got %s", r.resp);
    fx_close(&f);
}
END_TEST

START_TEST(explain_without_policy)
{
    fx f;
    fx_open(&f);
    raw r;
    raw_exchange(&f, &r, "explain 10.0.0.8 198.51.100.7 tcp/21\n", 37);
    ck_assert_msg(strstr(r.resp, "\"kind\":\"explain\",\"allowed\":true") != NULL &&
                      strstr(r.resp, "no policy loaded") != NULL,
                  "got %s", r.resp);
    static const char *const bad[] = {"explain 10.0.0.8 198.51.100.7\n", "explain 10.0.0.8 198.51.100.7 tcp/0\n",
                                      "explain 10.0.0.8 198.51.100.7 tcp/65536\n", "explain x 198.51.100.7 tcp/21\n",
                                      "explain 10.0.0.8 198.51.100.7:21 tcp/21\n", "explain 10.0.0.8 1.2.3.4 icmp/1\n",
                                      "explain 10.0.0.8 1.2.3.4 tcp/21 bob\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_exchange(&f, &r, bad[i], strlen(bad[i]));
        ck_assert_msg(strncmp(r.resp, "{\"error\":", 9) == 0, "%s got %s", bad[i], r.resp);
    }
    fx_close(&f);
}
END_TEST

START_TEST(silent_client_times_out)
{
    fx f;
    fx_open(&f);
    ctl_server_set_timeout(f.srv, 200);
    raw r;
    raw_exchange(&f, &r, NULL, 0);
    ck_assert_msg(r.elapsed_ms >= 150 && r.elapsed_ms < 3000, "closed after %llu ms",
                  (unsigned long long)r.elapsed_ms);
    ck_assert_str_eq(r.resp, "{\"error\":\"timeout\"}\n");
    /* Half a request is as good as none. */
    raw_exchange(&f, &r, "list sess", 9);
    ck_assert_str_eq(r.resp, "{\"error\":\"timeout\"}\n");
    fx_close(&f);
}
END_TEST

START_TEST(at_most_16_clients)
{
    fx f;
    fx_open(&f);
    ctl_server_set_timeout(f.srv, 300);
    raw r[CTL_MAX_CLIENTS + 1];
    for (int i = 0; i < CTL_MAX_CLIENTS; i++)
        raw_start(&f, &r[i], NULL, 0);
    tu_loop_run_for(&f.loop, 50); /* all 16 accepted and waiting */
    raw_exchange(&f, &r[CTL_MAX_CLIENTS], "stats\n", 6);
    ck_assert_str_eq(r[CTL_MAX_CLIENTS].resp, "{\"error\":\"too many clients\"}\n");
    for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
        run_until(&f, &r[i].done, 5000, "silent client");
        ck_assert_str_eq(r[i].resp, "{\"error\":\"timeout\"}\n");
    }
    /* Once they are gone, a client is served again. */
    raw_exchange(&f, &r[0], "stats\n", 6);
    ck_assert_ptr_nonnull(strstr(r[0].resp, "{\"end\":true}"));
    fx_close(&f);
}
END_TEST

START_TEST(close_with_clients_connected)
{
    fx f;
    fx_open(&f);
    raw r[3];
    for (int i = 0; i < 3; i++)
        raw_start(&f, &r[i], NULL, 0);
    tu_loop_run_for(&f.loop, 50);
    ctl_server_close(f.srv);
    f.srv = NULL;
    for (int i = 0; i < 3; i++)
        run_until(&f, &r[i].done, 2000, "client of a closed server");
    struct stat st;
    ck_assert_int_ne(lstat(f.sock, &st), 0);
    fx_close(&f);
}
END_TEST

/* ---- the socket file ----------------------------------------------------------------------------------- */

START_TEST(socket_mode_is_0600)
{
    fx f;
    fx_open(&f);
    struct stat st;
    ck_assert_int_eq(lstat(f.sock, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    fx_close(&f);
}
END_TEST

START_TEST(stale_socket_replaced)
{
    fx f;
    fx_open_firewall(&f);
    fx_populate(&f);
    /* A socket file left by a server that died: bound, then closed without unlink. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sun = {0};
    sun.sun_family = AF_UNIX;
    ck_assert_uint_lt(strlen(f.sock), sizeof sun.sun_path);
    memcpy(sun.sun_path, f.sock, strlen(f.sock));
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(fd);
    struct stat st;
    ck_assert_int_eq(lstat(f.sock, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ne(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    ck_assert_int_eq(errno, ECONNREFUSED); /* nobody listens: stale */
    close(fd);
    fx_start_server(&f);
    ck_assert_int_eq(lstat(f.sock, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    proc *r = ctl_ok(&f, true, "stats");
    ck_assert_int_eq(MATCHES(r->obuf, "\"kind\":\"stats\""), 1);
    free(r);
    fx_close(&f);
}
END_TEST

START_TEST(live_socket_or_file_not_replaced)
{
    fx f;
    fx_open(&f);
    char err[256];
    /* Another server listens there: leave it alone. */
    ctl_server *s2 = ctl_server_start(&f.loop, f.fw, f.sock, err, sizeof err);
    ck_assert_ptr_null(s2);
    ck_assert_msg(strstr(err, "another server is listening") != NULL, "err: %s", err);
    proc *r = ctl_ok(&f, true, "stats"); /* the first one still answers */
    free(r);
    /* A file that is not a socket. */
    char other[160];
    snprintf(other, sizeof other, "%s/not-a-socket", f.dir);
    FILE *fp = fopen(other, "w");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
    s2 = ctl_server_start(&f.loop, f.fw, other, err, sizeof err);
    ck_assert_ptr_null(s2);
    ck_assert_msg(strstr(err, "is not a socket") != NULL, "err: %s", err);
    ck_assert_int_eq(access(other, F_OK), 0);
    unlink(other);
    /* A directory that does not exist. */
    snprintf(other, sizeof other, "%s/no/such/dir.sock", f.dir);
    s2 = ctl_server_start(&f.loop, f.fw, other, err, sizeof err);
    ck_assert_ptr_null(s2);
    ck_assert_msg(strncmp(err, "ctl: cannot bind ", 17) == 0, "err: %s", err);
    fx_close(&f);
}
END_TEST

START_TEST(missing_socket_exit_1)
{
    fx f;
    fx_open_firewall(&f);
    char path[160];
    snprintf(path, sizeof path, "%s/missing.sock", f.dir);
    const char *args[] = {"--socket", path, "connections", NULL};
    proc *r = run_ctl_env(&f, NULL, args);
    ck_assert_int_eq(r->status, 1);
    char want[256];
    snprintf(want, sizeof want, "fwxctl: cannot connect to %s: No such file or directory\n", path);
    ck_assert_str_eq(r->ebuf, want);
    ck_assert_int_eq(r->olen, 0);
    free(r);
    fx_close(&f);
}
END_TEST

START_TEST(bad_usage_exit_2)
{
    fx f;
    fx_open_firewall(&f);
    const char *const cases[][4] = {
        {NULL},
        {"frobnicate", NULL},
        {"--json", NULL},
        {"--socket", NULL},
        {"--bogus", "stats", NULL},
        {"stats", "sessions", NULL},
        {"-x", "stats", NULL},
        {"-s", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        proc *r = run_ctl_env(&f, NULL, cases[i]);
        ck_assert_msg(r->status == 2, "case %zu: exit %lld", i, (long long)r->status);
        ck_assert_msg(strstr(r->ebuf, "usage: fwxctl") != NULL, "case %zu: stderr %s", i, r->ebuf);
        ck_assert_int_eq(r->olen, 0);
        free(r);
    }
    fx_close(&f);
}
END_TEST

/* ctl_path_check: the directory must exist, be a directory, belong to root or to us and not be
   writable by others (sticky or not); the message names the directory and the cause. */
START_TEST(path_check_refuses_open_directories)
{
    fx f;
    fx_open_firewall(&f);
    char path[200], dir[160], err[512];
    /* The fixture's own mkdtemp directory (0700, ours): fine. */
    ck_assert_int_eq(ctl_path_check(f.sock, false, err, sizeof err), 0);
    /* Missing. */
    snprintf(path, sizeof path, "%s/none/x.sock", f.dir);
    ck_assert_int_eq(ctl_path_check(path, true, err, sizeof err), -1);
    char want[512];
    snprintf(want, sizeof want, "directory %s/none: does not exist", f.dir);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "err: %s", err);
    /* Not a directory. */
    snprintf(dir, sizeof dir, "%s/file", f.dir);
    FILE *fp = fopen(dir, "w");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/x.sock", dir);
    ck_assert_int_eq(ctl_path_check(path, false, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s is not a directory", dir);
    ck_assert_str_eq(err, want);
    unlink(dir);
    /* Writable by others, with and without the sticky bit; group write is allowed. */
    static const mode_t modes[] = {0777, 01777, 0702};
    snprintf(dir, sizeof dir, "%s/open", f.dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/x.sock", dir);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        ck_assert_int_eq(chmod(dir, modes[i]), 0);
        ck_assert_int_eq(ctl_path_check(path, true, err, sizeof err), -1);
        snprintf(want, sizeof want, "directory %s is writable by others", dir);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "mode %o: err %s", (unsigned)modes[i], err);
    }
    ck_assert_int_eq(chmod(dir, 0770), 0);
    ck_assert_int_eq(ctl_path_check(path, true, err, sizeof err), 0);
    /* Another user's directory (needs root to make one). */
    if (geteuid() == 0) {
        ck_assert_int_eq(chmod(dir, 0755), 0);
        ck_assert_int_eq(chown(dir, 65534, 65534), 0);
        ck_assert_int_eq(ctl_path_check(path, true, err, sizeof err), -1);
        snprintf(want, sizeof want, "directory %s belongs to uid 65534", dir);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "err %s", err);
    }
    ck_assert_int_eq(rmdir(dir), 0);
    /* Nothing was created: create applies to the default directory only. */
    snprintf(path, sizeof path, "%s/none", f.dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    fx_close(&f);
}
END_TEST

/* getopt_long: short options say the same as the long ones, options may follow the command,
   --socket=PATH works, and -V/--version print the version meson built fwxctl with. */
START_TEST(short_options_and_version)
{
    fx f;
    fx_open(&f);
    proc *want = ctl_ok(&f, true, "stats");
    char eq[200];
    snprintf(eq, sizeof eq, "--socket=%s", f.sock);
    const char *const cases[][5] = {
        {"-s", f.sock, "-j", "stats", NULL},
        {"stats", "-j", "-s", f.sock, NULL},
        {"-j", eq, "stats", NULL},
        {"-js", f.sock, "stats", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        proc *r = run_ctl_env(&f, NULL, cases[i]);
        ck_assert_msg(r->status == 0, "case %zu: exit %lld, stderr %s", i, (long long)r->status, r->ebuf);
        ck_assert_int_eq(r->elen, 0);
        ck_assert_str_eq(r->obuf, want->obuf);
        free(r);
    }
    free(want);
    const char *const versions[][2] = {{"-V", NULL}, {"--version", NULL}};
    for (size_t i = 0; i < 2; i++) {
        proc *r = run_ctl_env(&f, NULL, versions[i]);
        ck_assert_int_eq(r->status, 0);
        ck_assert_str_eq(r->obuf, "fwxctl " FWX_VERSION_STRING "\n");
        ck_assert_int_eq(r->elen, 0);
        free(r);
    }
    /* An empty --socket is refused, not taken as the default. */
    const char *args[] = {"-s", "", "stats", NULL};
    proc *r = run_ctl_env(&f, NULL, args);
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->ebuf, "fwxctl: --socket needs a path\n") == r->ebuf, "stderr %s", r->ebuf);
    ck_assert_int_eq(r->olen, 0);
    free(r);
    fx_close(&f);
}
END_TEST

/* The one escaping rule of every JSON line the examples write (examples/common/json.h), as the
   control socket and the gateway's JSON log both apply it: quotes, backslashes and control
   characters escaped, valid UTF-8 kept, each byte that starts no valid sequence as U+FFFD. */
START_TEST(json_one_escaping_rule)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "{\"v\":\"plain\"}\n"},
        {"q\"b\\s", "{\"v\":\"q\\\"b\\\\s\"}\n"},
        {"nl\ntab\tc\x01", "{\"v\":\"nl\\ntab\\tc\\u0001\"}\n"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "{\"v\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}\n"},
        {"bad\xff", "{\"v\":\"bad\xef\xbf\xbd\"}\n"},                       /* not UTF-8 at all */
        {"\xc0\xaf", "{\"v\":\"\xef\xbf\xbd\xef\xbf\xbd\"}\n"},                 /* overlong "/" */
        {"\xed\xa0\x80", "{\"v\":\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}\n"}, /* a surrogate */
        {"cut\xe2\x82", "{\"v\":\"cut\xef\xbf\xbd\xef\xbf\xbd\"}\n"},          /* truncated */
        {"", "{\"v\":\"\"}\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        char *line = ex_json_line(json_pack("{s:o}", "v", ex_json_text(cases[i].in)), &n);
        ck_assert_ptr_nonnull(line);
        ck_assert_msg(strcmp(line, cases[i].out) == 0, "case %zu: got %s", i, line);
        ck_assert_uint_eq(n, strlen(cases[i].out));
        /* What is written reads back as valid JSON. */
        json_error_t e;
        json_t *back = json_loads(line, 0, &e);
        ck_assert_msg(back != NULL, "case %zu: %s", i, e.text);
        json_decref(back);
        free(line);
    }
    json_t *null = ex_json_text(NULL);
    ck_assert(json_is_null(null));
    json_decref(null);
    ck_assert_ptr_null(ex_json_line(NULL, NULL)); /* a json_pack that failed stays a failure */
}
END_TEST

/* A server that answers one request with @p answer, then closes (a child process). */
static pid_t fake_server(const char *path, const char *answer)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof sun.sun_path);
    memcpy(sun.sun_path, path, strlen(path));
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(20); /* never outlive a stuck test */
        int c = accept(fd, NULL, NULL);
        char buf[512];
        ssize_t got = c >= 0 ? recv(c, buf, sizeof buf, 0) : -1; /* the request line */
        if (got > 0 && send(c, answer, strlen(answer), MSG_NOSIGNAL) < 0)
            _exit(2);
        _exit(got > 0 ? 0 : 1);
    }
    close(fd);
    return pid;
}

/* fwxctl reads answers with libjansson and refuses what the server never writes: not JSON, not
   an object, a duplicate key, a nested object, a NUL escape; each with exit 1 and the reason. */
START_TEST(fwxctl_refuses_bad_answers)
{
    fx f;
    fx_open_firewall(&f);
    static const struct {
        const char *answer, *why;
    } cases[] = {
        {"{\"kind\":\"stats\",\n", "bad answer: "},
        {"[1,2]\n", "bad answer: expected an object"},
        {"{\"kind\":\"stats\",\"kind\":\"x\"}\n", "bad answer: duplicate object key"},
        {"{\"kind\":\"stats\",\"x\":{\"y\":1}}\n", "bad answer: unexpected value for \"x\""},
        {"{\"kind\":\"stats\",\"x\":[1]}\n", "bad answer: unexpected value for \"x\""},
        {"{\"kind\":\"stats\",\"x\":1.5}\n", "bad answer: unexpected value for \"x\""},
        {"{\"kind\":\"a\\u0000b\"}\n", "bad answer: "},
        {"{\"kind\":\"stats\"} x\n", "bad answer: "},
    };
    char path[160];
    snprintf(path, sizeof path, "%s/fake.sock", f.dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(path);
        pid_t pid = fake_server(path, cases[i].answer);
        const char *args[] = {"--socket", path, "stats", NULL};
        proc *r = run_ctl_env(&f, NULL, args);
        int st = 0;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert_msg(WIFEXITED(st), "case %zu: the fake server did not exit", i);
        ck_assert_int_eq(r->status, 1);
        ck_assert_msg(strstr(r->ebuf, cases[i].why) != NULL, "case %zu: stderr %s", i, r->ebuf);
        ck_assert_int_eq(r->olen, 0);
        free(r);
    }
    /* A good answer with an escaped name and a byte that was not UTF-8 (now U+FFFD): the table
       shows the name, control characters as '?'. */
    unlink(path);
    pid_t pid = fake_server(path, "{\"kind\":\"plugin\",\"id\":7,\"name\":\"a\\tb\\\"c\xef\xbf\xbd\","
                                  "\"guid\":null,\"flag_names\":[\"listen\",\"nat\"],\"owner\":\"/p.so\"}\n"
                                  "{\"end\":true}\n");
    const char *args[] = {"--socket", path, "plugins", NULL};
    proc *r = run_ctl_env(&f, NULL, args);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(r->status == 0, "exit %lld, stderr %s", (long long)r->status, r->ebuf);
    ck_assert_msg(strstr(r->obuf, "a?b\"c\xef\xbf\xbd") != NULL, "stdout %s", r->obuf);
    ck_assert_msg(strstr(r->obuf, "listen,nat") != NULL, "stdout %s", r->obuf);
    free(r);
    unlink(path);
    fx_close(&f);
}
END_TEST

static Suite *ctl_suite(void)
{
    const tu_case cases[] = {
        {"json_sessions", json_sessions},
        {"json_one_escaping_rule", json_one_escaping_rule},
        {"fwxctl_refuses_bad_answers", fwxctl_refuses_bad_answers},
        {"json_connections", json_connections},
        {"json_permissions_and_ports", json_permissions_and_ports},
        {"json_plugins_stats_all", json_plugins_stats_all},
        {"tables", tables},
        {"socket_from_environment", socket_from_environment},
        {"empty_firewall", empty_firewall},
        {"unknown_request_gets_an_error", unknown_request_gets_an_error},
        {"long_request_refused", long_request_refused},
        {"silent_client_times_out", silent_client_times_out},
        {"at_most_16_clients", at_most_16_clients},
        {"close_with_clients_connected", close_with_clients_connected},
        {"socket_mode_is_0600", socket_mode_is_0600},
        {"stale_socket_replaced", stale_socket_replaced},
        {"live_socket_or_file_not_replaced", live_socket_or_file_not_replaced},
        {"missing_socket_exit_1", missing_socket_exit_1},
        {"bad_usage_exit_2", bad_usage_exit_2},
        {"short_options_and_version", short_options_and_version},
        {"path_check_refuses_open_directories", path_check_refuses_open_directories},
        {"list_filters", list_filters},
        {"kill_and_levels", kill_and_levels},
        {"explain_without_policy", explain_without_policy},
    };
    return TU_SUITE("ctl", cases, 60);
}

int main(void)
{
    /* A raw client may write to a connection the server has already refused and closed. */
    signal(SIGPIPE, SIG_IGN);
    return tu_run_suite(ctl_suite());
}
