/*
 * fwx tests - a minimal host built only against the installed fwx (pkg-config fwx).
 *
 * usage: embed_demo PLUGIN.so VERSION
 *
 * First checks that the installed headers (FWX_VERSION_*) and the installed library
 * (fwx_version(), fwx_version_string()) both say VERSION, meson's project version.
 * Creates a firewall on a libuv loop, loads the plugin, opens a NAT session and a primary
 * connection, and calls AllowFutureConnect the three documented ways:
 *   1. to the connection's peer, another port          -> FWX_S_OK
 *   2. with FWX_FLAG_TIMEOUT | FWX_FLAG_ALLOW_MULTIPLE  -> FWX_E_INVALIDARG
 *   3. the same as 1 again                              -> FWX_E_DUP_NAME
 * Exits 0 only if every result is the documented one and uv_loop_close() returns 0.
 * Compile with -D_GNU_SOURCE (for <uv.h>).
 * SPDX-License-Identifier: MIT
 */
#include <assert.h>
#include <fwx/fwx.h>
#include <uv.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static int failures;

static void expect(const char *what, fwx_result got, fwx_result want)
{
    int ok = got == want;
    printf("%-44s %-28s %s\n", what, fwx_err_name(got), ok ? "ok" : "UNEXPECTED");
    if (!ok) {
        printf("    expected %s\n", fwx_err_name(want));
        failures++;
    }
}

static int no_send(void *arg, int32_t side, const uint8_t *data, size_t n)
{
    (void)arg, (void)side, (void)data, (void)n;
    return -1; /* never called: no path was started */
}

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", ip);
        failures++;
    }
    return sa;
}

static int closed;
static void on_closed(fwx_firewall *fw, void *arg)
{
    (void)fw;
    (void)arg;
    closed++;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PLUGIN.so VERSION\n", argv[0]);
        return 2;
    }
    char hdr[32];
    snprintf(hdr, sizeof hdr, "%d.%d.%d", FWX_VERSION_MAJOR, FWX_VERSION_MINOR, FWX_VERSION_PATCH);
    int versions_ok = strcmp(hdr, argv[2]) == 0 && strcmp(FWX_VERSION_STRING, argv[2]) == 0 &&
                      strcmp(fwx_version_string(), argv[2]) == 0 && fwx_version() == (unsigned)FWX_VERSION_HEX &&
                      FWX_ABI_VERSION == (uint32_t)((FWX_VERSION_MAJOR << 16) | FWX_VERSION_MINOR);
    printf("%-44s headers %s (%s), library %s (0x%06x) %s\n", "versions", hdr, FWX_VERSION_STRING,
           fwx_version_string(), fwx_version(), versions_ok ? "ok" : "UNEXPECTED");
    if (!versions_ok) {
        printf("    expected %s everywhere\n", argv[2]);
        failures++;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return 1;

    fwx_firewall_options opts;
    fwx_firewall_options_init(&opts);
    opts.name = "embed-demo";
    fwx_firewall *fw = NULL;
    expect("fwx_firewall_new", fwx_firewall_new(&loop, &opts, &fw), FWX_S_OK);
    if (fw == NULL)
        return 1;

    fwx_plugin *plugin = NULL;
    expect("fwx_firewall_load_plugin", fwx_firewall_load_plugin(fw, argv[1], &plugin), FWX_S_OK);
    if (plugin == NULL)
        printf("    %s\n", fwx_firewall_last_error(fw));
    else
        printf("    plugin \"%s\" loaded\n", fwx_plugin_info(plugin)->name);

    struct sockaddr_in client = v4("10.0.0.8", 0);
    fwx_session_params sp;
    memset(&sp, 0, sizeof sp);
    sp.struct_size = sizeof sp;
    sp.source = fwxSourceNAT;
    sp.client = (const struct sockaddr *)&client;
    sp.client_len = sizeof client;
    IFWXSession *session = NULL;
    expect("fwx_session_open", fwx_session_open(fw, &sp, &session), FWX_S_OK);

    IFWXConnection *conn = NULL;
    if (session != NULL) {
        struct sockaddr_in server = v4("198.51.100.7", 21);
        fwx_connection_params cp;
        memset(&cp, 0, sizeof cp);
        cp.struct_size = sizeof cp;
        cp.event = fwx_Connect_Tcp;
        cp.protocol = FWX_PROTOCOL_TCP;
        cp.external_peer = (const struct sockaddr *)&server;
        cp.external_peer_len = sizeof server;
        expect("fwx_connection_open", fwx_connection_open(session, &cp, &conn), FWX_S_OK);
    }

    if (session != NULL && conn != NULL) {
        struct sockaddr_in data = v4("198.51.100.7", 50000);
        const struct sockaddr *t = (const struct sockaddr *)&data;
        IFWXFirewallAction *action = NULL;
        expect("AllowFutureConnect", IFWXSession_AllowFutureConnect(session, t, sizeof data, NULL, 0, FWX_PROTOCOL_TCP,
                                                                    0, NULL, NULL, NULL, conn, &action),
               FWX_S_OK);
        expect("AllowFutureConnect TIMEOUT|ALLOW_MULTIPLE",
               IFWXSession_AllowFutureConnect(session, t, sizeof data, NULL, 0, FWX_PROTOCOL_TCP,
                                              FWX_FLAG_TIMEOUT | FWX_FLAG_ALLOW_MULTIPLE, NULL, NULL, NULL, conn, NULL),
               FWX_E_INVALIDARG);
        expect("AllowFutureConnect again", IFWXSession_AllowFutureConnect(session, t, sizeof data, NULL, 0,
                                                                          FWX_PROTOCOL_TCP, 0, NULL, NULL, NULL, conn,
                                                                          NULL),
               FWX_E_DUP_NAME);
        if (action != NULL) {
            expect("IFWXFirewallAction::Cancel", IFWXFirewallAction_Cancel(action), FWX_S_OK);
            IFWXFirewallAction_Release(action);
        }
    }

    /* The user-mode data path's public calls (fwx/pump.h), as a backend written outside libfwx
       makes them: a filter socket, and a datagram path for a connection none of whose data
       filters applies (it has none: the backend relays the datagrams itself). */
    IFWXNetworkSocket *ns = NULL;
    expect("fwx_network_socket_new bad protocol", fwx_network_socket_new(&loop, fw, 99, &ns), FWX_E_INVALIDARG);
    expect("fwx_network_socket_new UDP", fwx_network_socket_new(&loop, fw, FWX_PROTOCOL_UDP, &ns), FWX_S_OK);
    if (ns != NULL) {
        void *as_socket = NULL;
        expect("IFWXNetworkSocket::QueryInterface(IFWXSocket)",
               IFWXNetworkSocket_QueryInterface(ns, &IID_IFWXSocket, &as_socket), FWX_S_OK);
        if (as_socket != NULL)
            IFWXSocket_Release((IFWXSocket *)as_socket);
        IFWXNetworkSocket_Release(ns); /* freed in libuv's close callbacks, below */
    }
    if (conn != NULL) {
        struct sockaddr_in in = v4("10.0.0.8", 5000), ex = v4("198.51.100.7", 53);
        fwx_dgram *dg = NULL;
        expect("fwx_dgram_start without a send callback",
               fwx_dgram_start(&loop, conn, (const struct sockaddr *)&in, sizeof in, (const struct sockaddr *)&ex,
                               sizeof ex, NULL, NULL, &dg),
               FWX_E_POINTER);
        expect("fwx_dgram_start no filter applies",
               fwx_dgram_start(&loop, conn, (const struct sockaddr *)&in, sizeof in, (const struct sockaddr *)&ex,
                               sizeof ex, no_send, NULL, &dg),
               FWX_S_FALSE);
        if (dg != NULL) {
            printf("fwx_dgram_start returned a path with FWX_S_FALSE\n");
            failures++;
        }
        expect("fwx_dgram_input NULL", fwx_dgram_input(NULL, FWX_DGRAM_INTERNAL, (const uint8_t *)"x", 1),
               FWX_E_POINTER);
    }
    {
        struct sockaddr_in lo = v4("127.0.0.1", 80), far = v4("198.51.100.7", 80);
        const char *why = fwx_firewall_forbidden_host(fw, (const struct sockaddr *)&lo, sizeof lo);
        int ok = why != NULL && fwx_firewall_forbidden_host(fw, (const struct sockaddr *)&far, sizeof far) == NULL;
        printf("%-44s %-28s %s\n", "fwx_firewall_forbidden_host", why ? why : "(null)", ok ? "ok" : "UNEXPECTED");
        if (!ok)
            failures++;
    }

    fwx_connection_close(conn);
    if (session != NULL) {
        expect("fwx_session_close", fwx_session_close(session), FWX_S_OK);
        IFWXSession_Release(session);
    }
    fwx_firewall_close(fw, on_closed, NULL);
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    int rc = uv_loop_close(&loop);
    printf("%-44s %d (%s)\n", "uv_loop_close", rc, rc == 0 ? "ok" : uv_strerror(rc));
    if (rc != 0)
        failures++;
    if (closed != 1) {
        printf("the firewall close callback ran %d times, expected once\n", closed);
        failures++;
    }
    printf("%s\n", failures == 0 ? "embed_demo: ok" : "embed_demo: FAILED");
    /* The install test checks the exit code; a debugger stops here. */
    assert(failures == 0 && "every call gave its documented result and the loop closed clean");
    return failures == 0 ? 0 : 1;
}
