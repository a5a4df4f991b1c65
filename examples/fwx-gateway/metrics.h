/*
 * fwx-gateway: Prometheus metrics. The gateway's event sink counts what
 * the firewall reports (fwx_firewall_set_event_sink); the text exposition adds what it holds
 * now (fwx_firewall_get_stats, fwx_firewall_list), the plugins' handler times
 * (fwx_firewall_plugin_timings) and the loops' lag, summed over the event loops (loops.h) and
 * by loop (fwx_loop_*{loop="N"}). `fwxctl metrics` reads it through the control socket;
 * `metrics_listen` serves it at GET /metrics over HTTP.
 * Every function is [loop-thread] of loop 0 unless it says otherwise.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_GATEWAY_METRICS_H
#define FWX_GATEWAY_METRICS_H

#include <fwx/fwx.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/** Most HTTP clients served at once; one more is closed at once. */
#define GW_METRICS_MAX_CLIENTS 8
/** Longest request head (request line and headers) read, in bytes. */
#define GW_METRICS_MAX_REQUEST 4096
/** Time a client has to send its request and take the answer (ms). */
#define GW_METRICS_TIMEOUT_MS 5000

/** Starts counting: timing of plugin calls on, the loop-lag timer. @p backend is borrowed. */
void gw_metrics_start(uv_loop_t *loop, fwx_firewall *fw, const char *backend);
/** Starts loop @p i's part: timing of its plugin calls, its lag timer. [loop i's thread] */
void gw_metrics_loop_start(unsigned i, uv_loop_t *loop, fwx_firewall *fw);
/** Stops loop @p i's lag timer (its handle closes on loop i). [loop i's thread] */
void gw_metrics_loop_stop(unsigned i);
/** What loop @p i has opened since the start. [any-thread] */
void gw_metrics_loop_served(unsigned i, uint64_t *sessions, uint64_t *connections);
/** Counts one event for the calling thread's loop (call it from the firewall's event sink).
    [the loop's thread] */
void gw_metrics_event(const fwx_event *ev);
/** The text exposition, malloc'd; NULL when out of memory. */
char *gw_metrics_text(void);
/** Serves GET /metrics on @p addr ("IP:PORT"); 0, or -1 with a reason in @p err. */
int gw_metrics_listen(const char *addr, char *err, size_t errlen);
/** Stops the HTTP listener and closes its clients (a reload that changes metrics_listen). */
void gw_metrics_stop_http(void);
/** Stops the HTTP listener, its clients and the lag timer (handles close on the loop). */
void gw_metrics_stop(void);

#endif
