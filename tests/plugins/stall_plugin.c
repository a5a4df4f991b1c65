/*
 * fwx tests - a filter that misbehaves on cue, for the plugin watchdog's tests
 * (tests/gateway/test_watchdog.py, bench/plugin_call.c).
 *
 * It hooks TCP connects and accepted connections of every protocol. When the port of the
 * connect's destination, or of the accept's local address, equals FWX_STALL_PORT its handler
 * sleeps FWX_STALL_MS milliseconds (default 3000); when it equals FWX_CRASH_PORT it writes
 * through a null pointer (SIGSEGV). Both variables are read when the plugin is loaded. Every
 * other event returns at once: the bench uses it as the cheapest real plugin call.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

/* The checks below are assert()s: keep them on whatever the build's NDEBUG. */
#undef NDEBUG
#include <assert.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static unsigned stall_port, crash_port, stall_ms = 3000;

/* The session filter of FWX_PLUGIN_SESSION_FILTER (the filter object is the helpers' too). */
typedef struct sp_sf {
    FWX_PLUGIN_SESSION_FILTER_MEMBERS /* the session and the firewall: +1 until Detach */
} sp_sf;

static unsigned port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
    return 0;
}

static fwx_result sf_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *ev);

/* sf_impl, sf_QueryInterface, sf_AddRef, sf_Release, sf_Detach and the constructor sf_new. */
FWX_PLUGIN_SESSION_FILTER(sf, sp_sf, sf_FirewallEventHandler)

/* A real segmentation fault, not a sanitizer's report of one: built with UBSan, the store
   through a null pointer would otherwise be caught (and, with halt_on_error, end the process
   with status 1) before the kernel's SIGSEGV that the watchdog's handler is tested on. */
#if defined(__clang__) || defined(__GNUC__)
__attribute__((no_sanitize("undefined")))
#endif
static void crash_now(unsigned port)
{
    *(volatile int *)(uintptr_t)(port - port) = 1; /* a null pointer the compiler cannot see */
}

static fwx_result sf_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *ev)
{
    if (sf_impl(This)->detached)
        return FWX_E_TERMINATING;
    unsigned port = 0;
    if (ev->EventType == fwx_Connect_Tcp)
        port = port_of(&ev->Parameters.Connect.Address);
    else if (ev->EventType == fwx_AcceptedConnection)
        port = port_of(&ev->Parameters.Accept.LocalAddress);
    if (port != 0 && port == stall_port) {
        struct timespec ts = {.tv_sec = stall_ms / 1000, .tv_nsec = (long)(stall_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) /* the whole time, even if a signal interrupts it */
            ;
    }
    if (port != 0 && port == crash_port)
        crash_now(port);
    return FWX_S_OK;
}

#define SP_HOOKS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES | fwxAnyProtocol)

/* The filter object (FilterInit hooks SP_HOOKS, AttachToSession calls sf_new) and sp_create. */
FWX_PLUGIN_SESSION_FILTERS(sp_create, SP_HOOKS, sf_new)

static unsigned env_uint(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

/* A setting the test got wrong ends the gateway at the plugin's load (assert(), which
   test_watchdog.py sees as a gateway that never came up) rather than stalling or crashing on the
   wrong connection later. */
#define SP_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fprintf(stderr, "stall plugin: assertion failed: %s\n", #cond);                        \
        assert(cond);                                                                              \
    } while (0)

static fwx_result sp_init(const char *path)
{
    (void)path;
    stall_port = env_uint("FWX_STALL_PORT", 0);
    crash_port = env_uint("FWX_CRASH_PORT", 0);
    stall_ms = env_uint("FWX_STALL_MS", 3000);
    SP_ASSERT(stall_port <= 65535 && crash_port <= 65535);
    SP_ASSERT(stall_port == 0 || stall_port != crash_port);
    SP_ASSERT(stall_ms <= 600000);
    return FWX_S_OK;
}

FWX_PLUGIN_ENTRY(.filter_guid = FWX_GUID_INIT(0x57, 0xa1, 0x1e, 0xd0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x47),
                 .name = "stall", .allowed_events = SP_HOOKS, .init = sp_init, .create_filter = sp_create);
