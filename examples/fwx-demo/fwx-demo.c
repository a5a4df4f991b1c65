/*
 * fwx-demo: the classic FTP case, decided by the fwx core.
 *
 * A client behind the gateway sends "PORT 10,0,0,8,6,17". The FTP filter (plugins/ftp) calls
 * BindForClient, rewrites the command with the gateway's address, and the server's data
 * connection then reaches the client once, and nobody else's. This program makes the host's and
 * the filter's calls itself, with no network, and prints what the core decides at each step; it
 * exits 1 if any answer is not the documented one. The real thing, vsftpd and curl through
 * fwx-gateway with the FTP plugin, is demo/ftp-demo.sh (`./run demo`).
 * Uses only the public headers. Addresses are documentation ranges: nothing is sent anywhere.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static int failures;

static struct sockaddr_in addr(const char *ip, uint16_t port)
{
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static void expect(const char *what, fwx_result got, fwx_result want)
{
    printf("  %-62s %s\n", what, fwx_err_name(got));
    if (got != want) {
        printf("  ^ expected %s\n", fwx_err_name(want));
        failures++;
    }
}

static void quiet(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg;
    if (level <= FWX_LOG_WARN)
        printf("    log: %s\n", msg);
}

int main(int argc, char **argv)
{
    const char *policy_path = argc > 1 ? argv[1] : FWX_DEMO_POLICY;
    uv_loop_t loop;
    uv_loop_init(&loop);

    /* The gateway: 203.0.113.1 outside, 10.0.0.1 inside. */
    struct sockaddr_storage local[2] = {0};
    struct sockaddr_in g_out = addr("203.0.113.1", 0), g_in = addr("10.0.0.1", 0);
    memcpy(&local[0], &g_out, sizeof g_out);
    memcpy(&local[1], &g_in, sizeof g_in);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.local_addresses = local;
    o.n_local_addresses = 2;
    o.log = quiet;
    fwx_firewall *fw = NULL;
    if (fwx_firewall_new(&loop, &o, &fw) != FWX_S_OK)
        return 1;

    printf("fwx demo: an FTP client behind the gateway, in active mode\n");
    printf("  gateway 203.0.113.1 / 10.0.0.1, client 10.0.0.8, server 198.51.100.7\n\n");

    fwx_policy *policy = NULL;
    fwx_config_error err;
    if (fwx_policy_load_file(policy_path, &policy, &err) != FWX_S_OK) {
        fprintf(stderr, "%s:%d: %s: %s\n", err.file, err.line, err.key, err.message);
        return 1;
    }
    fwx_firewall_set_policy(fw, policy);
    printf("1. policy %s loaded\n", policy_path);

    struct sockaddr_in client = addr("10.0.0.8", 0);
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, (struct sockaddr *)&client, sizeof client, NULL, 0, NULL};
    IFWXSession *session = NULL;
    printf("2. the client's first connection opens its session\n");
    expect("session for 10.0.0.8", fwx_session_open(fw, &sp, &session), FWX_S_OK);

    struct sockaddr_in ftp = addr("198.51.100.7", 21), web = addr("198.51.100.7", 80);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, (struct sockaddr *)&ftp, sizeof ftp,
                                NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *control = NULL, *other = NULL;
    printf("3. connections are decided by the policy\n");
    expect("10.0.0.8 -> 198.51.100.7:21 (rule \"ftp out\")", fwx_connection_open(session, &cp, &control), FWX_S_OK);
    cp.external_peer = (struct sockaddr *)&web;
    expect("10.0.0.8 -> 198.51.100.7:80 (no rule allows http)", fwx_connection_open(session, &cp, &other),
           FWX_E_PROTOCOL_RULES_DENIED);

    printf("4. the client sends \"PORT 10,0,0,8,6,17\": the filter binds a gateway port for it\n");
    struct sockaddr_in data_client = addr("10.0.0.8", 6 * 256 + 17), proxy = addr("203.0.113.1", 0);
    const struct sockaddr *clients[1] = {(struct sockaddr *)&data_client};
    IFWXConnection *bound[1] = {NULL};
    expect("BindForClient(10.0.0.8:1553, one connection, 60 s)",
           IFWXSession_BindForClient(session, clients, sizeof data_client, (struct sockaddr *)&proxy, sizeof proxy,
                                     FWX_PROTOCOL_TCP, 1, FWX_FLAG_TIMEOUT, 1, &FWX_GUID_NULL, NULL, NULL, NULL, bound),
           FWX_S_OK);
    uint16_t port = ntohs(proxy.sin_port);
    printf("  the filter rewrites it to \"PORT 203,0,113,1,%u,%u\"\n", port / 256, port % 256);

    printf("5. connections arrive at 203.0.113.1:%u\n", port);
    struct sockaddr_in server_data = addr("198.51.100.7", 20), thief = addr("192.0.2.99", 20);
    fwx_flow flow = {sizeof flow, FWX_PROTOCOL_TCP, (struct sockaddr *)&thief, sizeof thief, (struct sockaddr *)&proxy,
                     sizeof proxy};
    IFWXConnection *data = NULL;
    expect("from a third party 192.0.2.99 (data theft)", fwx_firewall_admit(fw, &flow, &data), FWX_E_ADDRESS_NOT_ALLOWED);
    flow.source = (struct sockaddr *)&server_data;
    expect("from the server 198.51.100.7:20", fwx_firewall_admit(fw, &flow, &data), FWX_S_OK);
    IFWXConnection *again = NULL;
    expect("from the server again (one connection only)", fwx_firewall_admit(fw, &flow, &again), FWX_E_NOT_FOUND);

    printf("6. hostile commands get nothing\n");
    struct sockaddr_in bounce = addr("192.0.2.99", 31 * 256 + 144), low = addr("10.0.0.8", 22), gw = addr("10.0.0.1", 8080);
    IFWXConnection *none[1];
    const struct sockaddr *b1[1] = {(struct sockaddr *)&bounce}, *b2[1] = {(struct sockaddr *)&low},
                          *b3[1] = {(struct sockaddr *)&gw};
    proxy = addr("203.0.113.1", 0);
    expect("PORT 192,0,2,99,31,144 (FTP bounce to a third party)",
           IFWXSession_BindForClient(session, b1, sizeof bounce, (struct sockaddr *)&proxy, sizeof proxy, FWX_PROTOCOL_TCP,
                                     1, FWX_FLAG_TIMEOUT, 1, &FWX_GUID_NULL, NULL, NULL, NULL, none),
           FWX_E_ADDRESS_NOT_ALLOWED);
    expect("PORT 10,0,0,8,0,22 (privileged port)",
           IFWXSession_BindForClient(session, b2, sizeof low, (struct sockaddr *)&proxy, sizeof proxy, FWX_PROTOCOL_TCP, 1,
                                     FWX_FLAG_TIMEOUT, 1, &FWX_GUID_NULL, NULL, NULL, NULL, none),
           FWX_E_ADDRESS_NOT_ALLOWED);
    expect("PORT 10,0,0,1,31,144 (the gateway itself)",
           IFWXSession_BindForClient(session, b3, sizeof gw, (struct sockaddr *)&proxy, sizeof proxy, FWX_PROTOCOL_TCP, 1,
                                     FWX_FLAG_TIMEOUT | FWX_FLAG_ALLOW_ADDRESSES_ALL, 1, &FWX_GUID_NULL, NULL, NULL,
                                     NULL, none),
           FWX_E_ADDRESS_NOT_ALLOWED);

    printf("7. passive mode: \"227 Entering Passive Mode (198,51,100,7,195,80)\"\n");
    struct sockaddr_in pasv = addr("198.51.100.7", 195 * 256 + 80), pasv_bad = addr("192.0.2.99", 195 * 256 + 80);
    IFWXFirewallAction *action = NULL;
    expect("AllowFutureConnect(198.51.100.7:50000)",
           IFWXSession_AllowFutureConnect(session, (struct sockaddr *)&pasv, sizeof pasv, NULL, 0, FWX_PROTOCOL_TCP,
                                          FWX_FLAG_TIMEOUT, &FWX_GUID_NULL, NULL, NULL, control, &action),
           FWX_S_OK);
    expect("AllowFutureConnect(192.0.2.99:50000) (server-side bounce)",
           IFWXSession_AllowFutureConnect(session, (struct sockaddr *)&pasv_bad, sizeof pasv_bad, NULL, 0,
                                          FWX_PROTOCOL_TCP, FWX_FLAG_TIMEOUT, &FWX_GUID_NULL, NULL, NULL, control, NULL),
           FWX_E_ADDRESS_NOT_ALLOWED);

    printf("8. the control connection ends and the session closes\n");
    fwx_connection_close(data);
    IFWXConnection_Release(bound[0]);
    fwx_connection_close(control);
    fwx_session_close(session);
    IFWXSession_Release(session);
    expect("the passive permission was withdrawn with the session", IFWXFirewallAction_Cancel(action), FWX_S_FALSE);
    IFWXFirewallAction_Release(action);
    fwx_firewall_stats st = {.struct_size = sizeof st};
    fwx_firewall_get_stats(fw, &st);
    printf("  left open: %u sessions, %u permissions, %u bound ports\n", st.sessions, st.permissions, st.bound_ports);
    if (st.sessions || st.permissions || st.bound_ports)
        failures++;
    fwx_firewall_close(fw, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        failures++;
    printf("\n%s\n", failures ? "demo FAILED" : "demo passed: every answer was the documented one");
    return failures ? 1 : 0;
}
