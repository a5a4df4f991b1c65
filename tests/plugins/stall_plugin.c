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

/* The checks below are assert()s: keep them on whatever the build's NDEBUG. */
#undef NDEBUG
#include <assert.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static unsigned stall_port, crash_port, stall_ms = 3000;

typedef struct sp_obj {
    union {
        IFWXFilter f;
        IFWXSessionFilter sf;
    } iface;
    atomic_uint refs;
} sp_obj;

static unsigned port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
    return 0;
}

static uint32_t obj_addref(void *This) { return atomic_fetch_add(&((sp_obj *)This)->refs, 1) + 1; }
static uint32_t obj_release(void *This)
{
    sp_obj *o = This;
    uint32_t n = atomic_fetch_sub(&o->refs, 1) - 1;
    if (n == 0)
        free(o);
    return n;
}

static fwx_result sf_QueryInterface(IFWXSessionFilter *This, const fwx_guid *riid, void **ppv)
{
    if (fwx_guid_equal(riid, &IID_IUnknown) || fwx_guid_equal(riid, &IID_IFWXSessionFilter)) {
        obj_addref(This);
        *ppv = This;
        return FWX_S_OK;
    }
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t sf_AddRef(IFWXSessionFilter *This) { return obj_addref(This); }
static uint32_t sf_Release(IFWXSessionFilter *This) { return obj_release(This); }

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
    (void)This;
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

static fwx_result sf_Detach(IFWXSessionFilter *This)
{
    (void)This;
    return FWX_S_OK;
}

static const IFWXSessionFilterVtbl sf_vtbl = {sf_QueryInterface, sf_AddRef, sf_Release, sf_FirewallEventHandler,
                                              sf_Detach};

static fwx_result f_QueryInterface(IFWXFilter *This, const fwx_guid *riid, void **ppv)
{
    if (fwx_guid_equal(riid, &IID_IUnknown) || fwx_guid_equal(riid, &IID_IFWXFilter)) {
        obj_addref(This);
        *ppv = This;
        return FWX_S_OK;
    }
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t f_AddRef(IFWXFilter *This) { return obj_addref(This); }
static uint32_t f_Release(IFWXFilter *This) { return obj_release(This); }

#define SP_HOOKS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES | fwxAnyProtocol)

static fwx_result f_FilterInit(IFWXFilter *This, IFWXFirewall *fw, FwxFilterHookEvents *ev)
{
    (void)This;
    (void)fw;
    ev->dwGlobalEvents = SP_HOOKS;
    return FWX_S_OK;
}

static fwx_result f_FilterShutdown(IFWXFilter *This)
{
    (void)This;
    return FWX_S_OK;
}

static fwx_result f_AttachToSession(IFWXFilter *This, IFWXSession *s, IFWXSessionFilter **out, FwxFilterHookEvents *ev)
{
    (void)This;
    (void)s;
    (void)ev;
    sp_obj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return FWX_E_OUTOFMEMORY;
    o->iface.sf.lpVtbl = &sf_vtbl;
    atomic_init(&o->refs, 1);
    *out = &o->iface.sf;
    return FWX_S_OK;
}

static const IFWXFilterVtbl f_vtbl = {f_QueryInterface, f_AddRef, f_Release, f_FilterInit, f_FilterShutdown,
                                      f_AttachToSession};

static fwx_result sp_create(IFWXFilter **out)
{
    sp_obj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return FWX_E_OUTOFMEMORY;
    o->iface.f.lpVtbl = &f_vtbl;
    atomic_init(&o->refs, 1);
    *out = &o->iface.f;
    return FWX_S_OK;
}

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

FWX_PLUGIN_EXPORT const fwx_plugin_entry fwx_entry = {
    .abi_version = FWX_ABI_VERSION,
    .struct_size = sizeof(fwx_plugin_entry),
    .filter_guid = FWX_GUID_INIT(0x57, 0xa1, 0x1e, 0xd0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x47),
    .name = "stall",
    .allowed_events = SP_HOOKS,
    .init = sp_init,
    .create_filter = sp_create,
};
