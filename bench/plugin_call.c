/*
 * fwx bench - the cost of the plugin watchdog's heartbeat.
 *
 * A benchmark, not a test: it prints figures and exits 0 unless something it needs fails.
 * Built by meson (build/bench/plugin_call), run by hand:
 *
 *     build/bench/plugin_call build/tests/plugins/tp_stall.so
 *
 * 1. The heartbeat alone: fwx__plugin_enter + fwx__plugin_leave, as every call into a plugin
 *    makes them, on a firewall without a watchdog and on one with (its thread running), in ns
 *    per pair.
 * 2. End to end: fwx_connection_open + fwx_connection_close of a Connect_Tcp connection whose
 *    filter (the stall test plugin, which returns at once) hears Connect_Tcp and
 *    ConnectionTerminating, without and with the watchdog, in ns per connection.
 * Each figure is the best of 5 runs (the machine is shared: the minimum is the least disturbed).
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static fwx_firewall *make(uv_loop_t *loop, uint32_t soft_ms)
{
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.plugin_soft_limit_ms = soft_ms;
    o.plugin_hard_limit_ms = soft_ms ? soft_ms * 10 : 0;
    o.log_level = FWX_LOG_ERROR;
    fwx_firewall *fw = NULL;
    if (fwx_firewall_new(loop, &o, &fw) != FWX_S_OK) {
        fprintf(stderr, "plugin_call: fwx_firewall_new failed\n");
        exit(1);
    }
    return fw;
}

static double heartbeat_ns(fwx_firewall *fw, fwx__plugin *p, long n)
{
    double best = 1e18;
    for (int run = 0; run < 5; run++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            fwx__plugin_call saved;
            fwx__plugin_enter(fw, p, fwx_Connect_Tcp, &saved);
            __asm__ volatile("" ::: "memory"); /* the plugin's code would be here */
            fwx__plugin_leave(fw, &saved);
            __asm__ volatile("" ::: "memory");
        }
        double per = (now_ns() - t0) / (double)n;
        best = per < best ? per : best;
    }
    return best;
}

static double connection_ns(fwx_firewall *fw, const char *plugin, long n)
{
    fwx_plugin *pl = NULL;
    if (fwx_firewall_load_plugin(fw, plugin, &pl) != FWX_S_OK) {
        fprintf(stderr, "plugin_call: cannot load %s: %s\n", plugin, fwx_firewall_last_error(fw));
        exit(1);
    }
    struct sockaddr_in client = {.sin_family = AF_INET}, server = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "10.0.0.8", &client.sin_addr);
    inet_pton(AF_INET, "198.51.100.7", &server.sin_addr);
    fwx_session_params sp = {.struct_size = sizeof sp, .source = fwxSourceNAT,
                             .client = (const struct sockaddr *)&client, .client_len = sizeof client};
    IFWXSession *s = NULL;
    if (fwx_session_open(fw, &sp, &s) != FWX_S_OK) {
        fprintf(stderr, "plugin_call: fwx_session_open failed\n");
        exit(1);
    }
    fwx_connection_params cp = {.struct_size = sizeof cp, .event = fwx_Connect_Tcp, .protocol = FWX_PROTOCOL_TCP,
                                .external_peer = (const struct sockaddr *)&server, .external_peer_len = sizeof server};
    double best = 1e18;
    for (int run = 0; run < 5; run++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            IFWXConnection *c = NULL;
            if (fwx_connection_open(s, &cp, &c) != FWX_S_OK) {
                fprintf(stderr, "plugin_call: fwx_connection_open failed\n");
                exit(1);
            }
            fwx_connection_close(c);
        }
        double per = (now_ns() - t0) / (double)n;
        best = per < best ? per : best;
    }
    fwx_session_close(s);
    IFWXSession_Release(s);
    return best;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: plugin_call PATH/tp_stall.so\n");
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    fwx_firewall *off = make(&loop, 0), *on = make(&loop, 1000);
    static fwx__plugin fake = {.name = "bench"};
    const long n_hb = 20000000, n_conn = 100000;
    double hb_off = heartbeat_ns(off, &fake, n_hb), hb_on = heartbeat_ns(on, &fake, n_hb);
    double c_off = connection_ns(off, argv[1], n_conn), c_on = connection_ns(on, argv[1], n_conn);
    printf("heartbeat: enter+leave per plugin call: %.2f ns without a watchdog, %.2f ns with (+%.2f ns)\n", hb_off,
           hb_on, hb_on - hb_off);
    printf("connection: open+close, 2 plugin calls each: %.0f ns without a watchdog, %.0f ns with (%+.1f %%)\n",
           c_off, c_on, 100.0 * (c_on - c_off) / c_off);
    fwx_firewall_close(off, NULL, NULL);
    fwx_firewall_close(on, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
