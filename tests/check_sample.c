/*
 * fwx tests - the sample filter, plugins/conn-logger, loaded as the real .so a user installs.
 *
 * The path comes from FWX_SAMPLE_PLUGIN (tests/meson.build sets it to the built module). The
 * plugin reads FWX_CONN_LOGGER_FILE when it is loaded, so each test points it at a fresh
 * temporary file first, drives a firewall as a host would, and then compares the file's lines
 * exactly. Each TCase runs in its own forked process, so environment changes stay there.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- environment ---------------------------------------------------------------------- */

#define LINES_MAX 64

static uv_loop_t loop;
static fwx_firewall *fw;
static char log_path[256];

/* The sample's GUID, as written in its source: {c82feda9-0c53-49fd-9f2e-a761501d650f}. */
static const char SAMPLE_GUID_TEXT[] = "{c82feda9-0c53-49fd-9f2e-a761501d650f}";

static const char *sample_path(void)
{
    const char *p = getenv("FWX_SAMPLE_PLUGIN");
    ck_assert_msg(p != NULL && p[0] != '\0', "FWX_SAMPLE_PLUGIN is not set (tests/meson.build sets it)");
    return p;
}

/* A fresh, empty log file for the plugin, named in FWX_CONN_LOGGER_FILE. */
static void log_file_new(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(log_path, sizeof log_path, "%s/fwx-conn-logger-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    int fd = mkstemp(log_path);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    close(fd);
    ck_assert_int_eq(setenv("FWX_CONN_LOGGER_FILE", log_path, 1), 0);
}

/* A firewall on the loop, logging into the capture (not reset: two firewalls share it). */
static fwx_firewall *firewall_new(void)
{
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    tu_fw_gateway_addresses(&o);
    o.log = tu_log_capture;
    o.log_level = FWX_LOG_DEBUG;
    fwx_firewall *f = NULL;
    TU_EXPECT_HR(fwx_firewall_new(&loop, &o, &f), FWX_S_OK);
    ck_assert_ptr_nonnull(f);
    return f;
}

static void env_open(void)
{
    tu_log_reset();
    log_file_new();
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    fw = firewall_new();
}

static void env_close(void)
{
    tu_fw_close(&loop, &fw);
    /* FilterShutdown released the IFWXFirewall it kept from FilterInit. */
    ck_assert_int_eq(tu_log_count("were never released", NULL), 0);
}

/* Reads the plugin's log file into lines (newlines removed); returns the count. */
static int read_lines(const char *path, char lines[LINES_MAX][256])
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    int n = 0;
    while (n < LINES_MAX && fgets(lines[n], 256, f) != NULL) {
        size_t len = strlen(lines[n]);
        ck_assert_msg(len > 0 && lines[n][len - 1] == '\n', "line %d is not whole: \"%s\"", n + 1, lines[n]);
        lines[n][len - 1] = '\0';
        n++;
    }
    fclose(f);
    return n;
}

/* Asserts that the file holds exactly the NULL-terminated list of lines, then removes it. */
static void expect_lines(const char *path, const char *const *want)
{
    char got[LINES_MAX][256];
    int n = read_lines(path, got);
    int i = 0;
    for (; want[i] != NULL; i++) {
        ck_assert_msg(i < n, "line %d missing: expected \"%s\" (only %d lines)", i + 1, want[i], n);
        ck_assert_msg(strcmp(got[i], want[i]) == 0, "line %d: got \"%s\", expected \"%s\"", i + 1, got[i], want[i]);
    }
    ck_assert_msg(n == i, "%d lines, expected %d; line %d is \"%s\"", n, i, i + 1, n > i ? got[i] : "");
    unlink(path);
}

static IFWXConnection *conn_open(IFWXSession *s, uint32_t event, int32_t proto, const char *peer, const char *local)
{
    struct sockaddr_storage p = tu_addr(peer), l;
    fwx_connection_params cp = {sizeof cp, event, proto, TU_SA(p), tu_len(&p), NULL, 0, NULL, 0, 0, NULL};
    if (local != NULL) {
        l = tu_addr(local);
        cp.external_local = TU_SA(l);
        cp.external_local_len = tu_len(&l);
    }
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &c), FWX_S_OK);
    ck_assert_ptr_nonnull(c);
    return c;
}

static fwx_plugin *load_sample(fwx_firewall *f)
{
    fwx_plugin *p = NULL;
    TU_EXPECT_HR(fwx_firewall_load_plugin(f, sample_path(), &p), FWX_S_OK);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* The entry: name, GUID, ABI and a manifest of exactly what it hooks. */
START_TEST(test_entry)
{
    env_open();
    fwx_plugin *p = load_sample(fw);
    const fwx_plugin_entry *e = fwx_plugin_info(p);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->abi_version, FWX_ABI_VERSION);
    ck_assert_uint_eq(e->struct_size, sizeof(fwx_plugin_entry));
    ck_assert_str_eq(e->name, "conn-logger");
    char g[FWX_GUID_STRLEN];
    ck_assert_str_eq(fwx_guid_format(&e->filter_guid, g), SAMPLE_GUID_TEXT);
    ck_assert_uint_eq(e->allowed_events, fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES | fwxAnyProtocol |
                                             fwxAssociatedProtocolsAllConnections);
    ck_assert_ptr_eq(fwx_firewall_find_plugin(fw, &e->filter_guid), p);
    /* It asked for nothing outside its manifest. */
    ck_assert_int_eq(tu_log_count("outside its manifest", NULL), 0);
    /* Loaded once per path. */
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, sample_path(), NULL), FWX_S_FALSE);
    env_close();
    expect_lines(log_path, (const char *const[]){NULL});
}
END_TEST

/* The FTP case from the host's side: primary and secondary connects, an accepted data
   connection, an explicit session, and the lines each one writes, ended ones included. */
START_TEST(test_lines)
{
    env_open();
    load_sample(fw);

    IFWXSession *s = tu_session_open(fw, fwxSourceNAT, "10.0.0.8", NULL);
    IFWXConnection *control = conn_open(s, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", NULL);

    /* Passive mode: the "227" answer lets the client open a secondary connection. */
    struct sockaddr_storage pasv = tu_addr("198.51.100.7:50000");
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(s, TU_SA(pasv), tu_len(&pasv), NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                &FWX_GUID_NULL, NULL, NULL, control, NULL),
                 FWX_S_OK);
    struct sockaddr_storage src = tu_addr("10.0.0.8:40001");
    fwx_flow flow = {sizeof flow, FWX_PROTOCOL_TCP, TU_SA(src), tu_len(&src), TU_SA(pasv), tu_len(&pasv)};
    IFWXConnection *pdata = NULL;
    TU_EXPECT_HR(fwx_firewall_admit(fw, &flow, &pdata), FWX_S_OK);

    /* Active mode: "PORT 10,0,0,8,6,17" binds gateway port 50001 for the client. */
    struct sockaddr_storage client_data = tu_addr("10.0.0.8:1553"), proxy = tu_addr("203.0.113.1:50001");
    const struct sockaddr *clients[1] = {TU_SA(client_data)};
    IFWXConnection *bound[1] = {NULL};
    TU_EXPECT_HR(IFWXSession_BindForClient(s, clients, tu_len(&client_data), TU_SAM(proxy), tu_len(&proxy),
                                           FWX_PROTOCOL_TCP, 1, 0, 1, &FWX_GUID_NULL, NULL, NULL, NULL, bound),
                 FWX_S_OK);
    struct sockaddr_storage server_data = tu_addr("198.51.100.7:20");
    fwx_flow in = {sizeof in, FWX_PROTOCOL_TCP, TU_SA(server_data), tu_len(&server_data), TU_SA(proxy), tu_len(&proxy)};
    IFWXConnection *adata = NULL;
    TU_EXPECT_HR(fwx_firewall_admit(fw, &in, &adata), FWX_S_OK);

    /* A second client, explicit (SOCKS-style): the other source. Left open on purpose. */
    IFWXSession *w = tu_session_open(fw, fwxSourceWSP, "10.0.0.9", NULL);
    IFWXConnection *web = conn_open(w, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "192.0.2.10:443", NULL);

    fwx_connection_close(pdata);
    IFWXConnection_Release(bound[0]);
    fwx_connection_close(adata);
    fwx_connection_close(control);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    IFWXSession_Release(s);
    IFWXConnection_Release(web);
    IFWXSession_Release(w);
    env_close(); /* ends the explicit session and its connection */

    expect_lines(log_path, (const char *const[]){
                               "conn-logger: session 10.0.0.8: connect 198.51.100.7:21 (primary)",
                               "conn-logger: session 10.0.0.8: connect 198.51.100.7:50000 (secondary)",
                               "conn-logger: session 10.0.0.8: accept from 198.51.100.7:20 to 203.0.113.1:50001 (secondary)",
                               "conn-logger: session 10.0.0.9: connect 192.0.2.10:443 (primary)",
                               "conn-logger: session 10.0.0.8: connection ended (198.51.100.7:50000)",
                               "conn-logger: session 10.0.0.8: connection ended (198.51.100.7:20)",
                               "conn-logger: session 10.0.0.8: connection ended (198.51.100.7:21)",
                               "conn-logger: session 10.0.0.9: connection ended (192.0.2.10:443)",
                               NULL,
                           });
}
END_TEST

/* ConnectionTerminating needs no registration: a UDP connection, whose event the sample
   does not hook, writes no opening line but does write its end. IPv6 is bracketed. */
START_TEST(test_terminating_unhooked)
{
    env_open();
    load_sample(fw);
    IFWXSession *s = tu_session_open(fw, fwxSourceNAT, "fd00::8", NULL);
    IFWXConnection *dns = conn_open(s, fwx_Udp_Destination, FWX_PROTOCOL_UDP, "[2001:db8::53]:53", NULL);
    IFWXConnection *tcp = conn_open(s, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "[2001:db8::80]:8080", NULL);
    fwx_connection_close(dns);
    fwx_connection_close(tcp);
    fwx_session_close(s);
    IFWXSession_Release(s);
    env_close();
    expect_lines(log_path, (const char *const[]){
                               "conn-logger: session fd00::8: connect [2001:db8::80]:8080 (primary)",
                               "conn-logger: session fd00::8: connection ended ([2001:db8::53]:53)",
                               "conn-logger: session fd00::8: connection ended ([2001:db8::80]:8080)",
                               NULL,
                           });
}
END_TEST

/* The COM rules, seen from outside: the firewall is AddRef'd by FilterInit and released by
   FilterShutdown; the session is AddRef'd by AttachToSession and released by Detach; no
   reference to a connection survives its ConnectionTerminating. */
START_TEST(test_refcounts)
{
    env_open();
    IFWXFirewall *ifw = fwx_firewall_iface(fw);
    TU_EXPECT_REF(ifw, 1);
    fwx_plugin *p = load_sample(fw);
    TU_EXPECT_REF(ifw, 3); /* the filter's, from FilterInit, and its IFWXHostLog's */

    IFWXSession *s = tu_session_open(fw, fwxSourceNAT, "10.0.0.8", NULL);
    TU_EXPECT_REF(s, 2);   /* ours and the firewall's list: nobody attached yet */
    IFWXConnection *c = conn_open(s, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", NULL);
    TU_EXPECT_REF(s, 4);   /* + the session filter's (AttachToSession) + the connection's */
    TU_EXPECT_REF(c, 2);   /* ours and the session's list: the filter kept none */

    /* Kill ends it (ConnectionTerminating) while we still hold our reference. */
    TU_EXPECT_HR(IFWXConnection_Kill(c), FWX_S_OK);
    TU_EXPECT_REF(c, 1);   /* only ours is left: the filter kept nothing after the event */
    IFWXConnection_Release(c);
    TU_EXPECT_REF(s, 3);

    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    TU_EXPECT_REF(s, 1);   /* Detach released the filter's, the end released the list's */
    IFWXSession_Release(s);

    TU_EXPECT_HR(fwx_plugin_unload(p), FWX_S_OK);
    TU_EXPECT_REF(ifw, 1); /* FilterShutdown released it */
    env_close();
    expect_lines(log_path, (const char *const[]){
                               "conn-logger: session 10.0.0.8: connect 198.51.100.7:21 (primary)",
                               "conn-logger: session 10.0.0.8: connection ended (198.51.100.7:21)",
                               NULL,
                           });
}
END_TEST

/* Unloading detaches the session filters of live sessions (FilterShutdown first, Detach
   after): the session loses the filter's reference and nothing more is written. */
START_TEST(test_unload_detaches)
{
    env_open();
    fwx_plugin *p = load_sample(fw);
    IFWXSession *s = tu_session_open(fw, fwxSourceNAT, "10.0.0.8", NULL);
    IFWXConnection *c = conn_open(s, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", NULL);
    TU_EXPECT_REF(s, 4);
    TU_EXPECT_HR(fwx_plugin_unload(p), FWX_S_OK);
    TU_EXPECT_REF(s, 3); /* Detach released the session filter's reference */
    IFWXConnection *d = conn_open(s, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:22", NULL);
    fwx_connection_close(d);
    fwx_connection_close(c);
    fwx_session_close(s);
    IFWXSession_Release(s);
    env_close();
    expect_lines(log_path, (const char *const[]){
                               "conn-logger: session 10.0.0.8: connect 198.51.100.7:21 (primary)",
                               NULL,
                           });
}
END_TEST

/* Without FWX_CONN_LOGGER_FILE the lines go through the host's log (IFWXHostLog), at info,
   named after the plugin; nothing goes to stderr. */
START_TEST(test_host_log_default)
{
    tu_log_reset();
    ck_assert_int_eq(unsetenv("FWX_CONN_LOGGER_FILE"), 0);
    const char *tmp = getenv("TMPDIR");
    snprintf(log_path, sizeof log_path, "%s/fwx-conn-logger-err-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    int fd = mkstemp(log_path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    close(fd);

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    fw = firewall_new();
    load_sample(fw);
    IFWXSession *s = tu_session_open(fw, fwxSourceNAT, "10.0.0.8", NULL);
    IFWXConnection *c = conn_open(s, fwx_AcceptedConnection, FWX_PROTOCOL_TCP, "192.0.2.5:40000", NULL);
    fwx_connection_close(c);
    IFWXSession_Release(s);
    fwx_firewall_close(fw, NULL, NULL);
    fw = NULL;

    fflush(stderr);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    tu_loop_close_clean(&loop);
    ck_assert_int_eq(tu_log_count("conn-logger: session 10.0.0.8: accept from 192.0.2.5:40000 (primary)", NULL), 1);
    ck_assert_int_eq(tu_log_count("conn-logger: session 10.0.0.8: connection ended (192.0.2.5:40000)", NULL), 1);
    ck_assert_int_eq(tu_log_count("were never released", NULL), 0);
    expect_lines(log_path, (const char *const[]){NULL}); /* stderr stayed empty */
}
END_TEST

/* A log file that cannot be opened refuses the plugin at FilterInit, with a line through the
   host's log saying which file and why, and nothing stays loaded. */
START_TEST(test_bad_log_file)
{
    tu_log_reset();
    ck_assert_int_eq(setenv("FWX_CONN_LOGGER_FILE", "/nonexistent-fwx-dir/conn.log", 1), 0);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    fw = firewall_new();
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, sample_path(), NULL), FWX_E_PLUGIN_INIT);
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "FilterInit failed"));
    ck_assert_int_eq(tu_log_count("conn-logger: cannot open \"/nonexistent-fwx-dir/conn.log\"", NULL), 1);
    fwx_firewall_stats st = {.struct_size = sizeof st};
    TU_EXPECT_HR(fwx_firewall_get_stats(fw, &st), FWX_S_OK);
    ck_assert_uint_eq(st.plugins, 0);
    fwx_firewall_close(fw, NULL, NULL);
    fw = NULL;
    tu_loop_close_clean(&loop);
}
END_TEST

/* Two firewalls in one process share one copy of the plugin: the file stays open until the
   last of them unloads it, and both write to it. */
START_TEST(test_two_firewalls)
{
    env_open();
    fwx_firewall *fw2 = firewall_new();
    load_sample(fw);
    load_sample(fw2);
    IFWXSession *a = tu_session_open(fw, fwxSourceNAT, "10.0.0.8", NULL);
    IFWXSession *b = tu_session_open(fw2, fwxSourceNAT, "10.0.0.9", NULL);
    IFWXConnection *ca = conn_open(a, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", NULL);
    IFWXConnection_Release(ca);
    IFWXSession_Release(a);
    fwx_firewall_close(fw, NULL, NULL); /* ends a and ca: one deinit of two */
    IFWXConnection *cb = conn_open(b, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:80", NULL);
    fwx_connection_close(cb);
    IFWXSession_Release(b);
    fw = fw2;
    env_close();
    expect_lines(log_path, (const char *const[]){
                               "conn-logger: session 10.0.0.8: connect 198.51.100.7:21 (primary)",
                               "conn-logger: session 10.0.0.8: connection ended (198.51.100.7:21)",
                               "conn-logger: session 10.0.0.9: connect 198.51.100.7:80 (primary)",
                               "conn-logger: session 10.0.0.9: connection ended (198.51.100.7:80)",
                               NULL,
                           });
}
END_TEST

/* With a policy, fwxAnyProtocol makes the sample see connections of every protocol, whether
   or not the protocol's definition binds it (`filters = [...]`); a connection the policy
   refuses never reaches a filter. */
START_TEST(test_policy_any_protocol)
{
    env_open();
    static const char policy_text[] =
        "networks = { internal = { ranges = [ \"10.0.0.0/8\" ]; }; };\n"
        "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
        "protocols = (\n"
        "  { name = \"ftp\"; guid = \"{5a0e7c1e-0f7a-4b3e-9c55-000000000021}\"; protocol = \"tcp\"; port = 21;\n"
        "    filters = [ \"good\" ]; },\n"
        "  { name = \"http\"; guid = \"{5a0e7c1e-0f7a-4b3e-9c55-000000000080}\"; protocol = \"tcp\"; port = 80; }\n"
        ");\n"
        "rules = ( { name = \"out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];\n"
        "            protocols = [ \"ftp\", \"http\" ]; } );\n";
    fwx_policy *policy = NULL;
    fwx_config_error err;
    fwx_result hr = fwx_policy_load_string(policy_text, "sample-policy", &policy, &err);
    ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s: %s", err.file, err.line, err.key, err.message);
    /* ftp binds another filter, which must be loaded: a protocol whose filter is missing is
       refused rather than carried unfiltered. */
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), NULL), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_check_policy(fw, policy, &err), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_policy(fw, policy), FWX_S_OK);
    load_sample(fw);
    IFWXSession *s = tu_session_open(fw, fwxSourceNAT, "10.0.0.8", NULL);
    IFWXConnection *c1 = conn_open(s, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:21", NULL);
    IFWXConnection *c2 = conn_open(s, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, "198.51.100.7:80", NULL);
    /* Refused by the policy before any filter: no connection, no line. */
    struct sockaddr_storage ssh = tu_addr("198.51.100.7:22");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(ssh), tu_len(&ssh),
                                NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *none = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &none), FWX_E_PROTOCOL_RULES_DENIED);
    fwx_connection_close(c2);
    fwx_connection_close(c1);
    fwx_session_close(s);
    IFWXSession_Release(s);
    env_close();
    expect_lines(log_path, (const char *const[]){
                               "conn-logger: session 10.0.0.8: connect 198.51.100.7:21 (primary)",
                               "conn-logger: session 10.0.0.8: connect 198.51.100.7:80 (primary)",
                               "conn-logger: session 10.0.0.8: connection ended (198.51.100.7:80)",
                               "conn-logger: session 10.0.0.8: connection ended (198.51.100.7:21)",
                               NULL,
                           });
}
END_TEST

static Suite *sample_suite(void)
{
    const tu_case cases[] = {
        {"entry", test_entry},
        {"lines", test_lines},
        {"terminating_unhooked", test_terminating_unhooked},
        {"refcounts", test_refcounts},
        {"unload_detaches", test_unload_detaches},
        {"host_log_default", test_host_log_default},
        {"bad_log_file", test_bad_log_file},
        {"two_firewalls", test_two_firewalls},
        {"policy_any_protocol", test_policy_any_protocol},
    };
    return TU_SUITE("sample", cases, 0);
}

int main(void)
{
    /* Without the built module there is nothing to test: say so and let meson count a skip
       (77) rather than fail every case with the same message. */
    const char *p = getenv("FWX_SAMPLE_PLUGIN");
    if (p == NULL || p[0] == '\0' || access(p, R_OK) != 0) {
        printf("check_sample: SKIP: FWX_SAMPLE_PLUGIN does not name the built conn-logger.so (\"%s\");"
               " tests/meson.build sets it\n", p ? p : "");
        return 77;
    }
    return tu_run_suite(sample_suite());
}
