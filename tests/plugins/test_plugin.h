/*
 * fwx tests - the control block of the test plugins.
 *
 * A test plugin is a real .so loaded by the plugin host. Besides its entry it exports
 * `fwx_test_control` (through its own version script), which a test reaches with
 * dlopen(RTLD_NOLOAD) + dlsym to set the plugin's behaviour and read what it saw.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_TEST_PLUGIN_H
#define FWX_TEST_PLUGIN_H

#include <fwx/fwx.h>

#define TP_LOG_MAX 256

typedef struct tp_control tp_control;

/* Called from FirewallEventHandler before the plugin's own reaction; its result is returned. */
typedef fwx_result (*tp_event_fn)(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *session,
                                  const FwxFirewallEvent *ev);

struct tp_control {
    /* set by the test */
    uint32_t hooks;          /* FilterInit's dwGlobalEvents */
    uint32_t session_hooks;  /* if nonzero, AttachToSession answers these */
    int attach_fail;         /* AttachToSession returns FWX_E_OUTOFMEMORY */
    int attach_decline;      /* AttachToSession returns FWX_S_OK and no session filter */
    uint32_t deny_events;    /* event types the handler denies with IFWXConnection::Deny */
    uint32_t fail_events;    /* event types whose handler returns FWX_E_OUTOFMEMORY */
    tp_event_fn on_event;    /* may be NULL */
    void *arg;               /* for on_event */

    /* seen by the plugin */
    int n_init, n_shutdown, n_attach, n_detach, n_sf_released;
    int n_events;            /* handler calls, all types */
    int n_after_detach;      /* handler calls after Detach (answered FWX_E_TERMINATING) */
    int n_terminating, n_established;
    IUnknown *last_established_ctx; /* borrowed, compared by pointer only */
    IFWXConnection *last_established_conn; /* borrowed, compared by pointer only */
    uint32_t log[TP_LOG_MAX]; /* event types in order; 0xF0000001 = shutdown, 0xF0000002 = detach */
    int n_log;
    IFWXFirewall *fw;        /* kept from FilterInit until FilterShutdown */
    uint32_t filter_refs_at_shutdown;
};

#define TP_LOG_SHUTDOWN 0xF0000001u
#define TP_LOG_DETACH 0xF0000002u

#endif
