/*
 * fault-backend - the wrapping backend (see fault_backend.h). Public fwx headers only.
 * SPDX-License-Identifier: MIT
 */
#include "fault_backend.h"

#include <stdlib.h>
#include <string.h>

/* fwx_backend::wrapped came with backend version 4: without it the core could not find the
   wrapped backend's state behind us, and its own API (SOCKS for "proxy") would refuse. */
#if FWX_BACKEND_VERSION < 4
#error "fault-backend needs fwx with backend version 4 (fwx 1.1) or newer"
#endif

struct fault_backend {
    fwx_backend vt;            /* what is registered; vt.app_data points back here */
    const fwx_backend *inner;  /* the wrapped backend, as found at registration */
    char *name;
    unsigned calls[FAULT__COUNT];
    unsigned faults;
    int armed, persist;
    fault_method arm_method;
    unsigned countdown;        /* the armed call is the countdown-th from now */
    fwx_result code;
};

/* One instance per firewall: ours, and the wrapped backend's it forwards to. */
typedef struct fault_instance {
    fault_backend *fb;
    void *inner_state;
} fault_instance;

static const char *const method_names[FAULT__COUNT] = {
    [FAULT_OPEN] = "open",
    [FAULT_CLOSE] = "close",
    [FAULT_GRANT_ADD] = "grant_add",
    [FAULT_GRANT_REMOVE] = "grant_remove",
    [FAULT_LISTEN] = "listen",
    [FAULT_UNLISTEN] = "unlisten",
    [FAULT_RELAY] = "relay",
    [FAULT_KILL] = "kill",
    [FAULT_CREATE_SOCKET] = "create_socket",
    [FAULT_LIST] = "list",
    [FAULT_POLICY_CHANGED] = "policy_changed",
    [FAULT_GRANT_REMOVE_MANY] = "grant_remove_many",
    [FAULT_WRAPPED] = "wrapped",
    [FAULT_ANY] = "any",
};

const char *fault_method_name(fault_method m)
{
    return (unsigned)m < FAULT__COUNT ? method_names[m] : "?";
}

static int can_fail(fault_method m) { return m != FAULT_CLOSE && m != FAULT_WRAPPED && m < FAULT__COUNT; }

/* Counts a call of m; true, with *code set, when this is the call to fail. */
static int hit(fault_backend *fb, fault_method m, fwx_result *code)
{
    fb->calls[m]++;
    if (!can_fail(m))
        return 0;
    fb->calls[FAULT_ANY]++;
    if (!fb->armed || (fb->arm_method != FAULT_ANY && fb->arm_method != m))
        return 0;
    if (fb->countdown > 1) {
        fb->countdown--;
        return 0;
    }
    if (!fb->persist)
        fb->armed = 0;
    fb->faults++;
    *code = fb->code;
    return 1;
}

/* ---- the methods: count, maybe fail, else forward ------------------------------------------ */

static fwx_result f_open(const fwx_backend *self, fwx_firewall *fw, void **state)
{
    fault_backend *fb = self->app_data;
    fwx_result hr;
    *state = NULL;
    if (hit(fb, FAULT_OPEN, &hr))
        return hr;
    fault_instance *fi = calloc(1, sizeof *fi);
    if (fi == NULL)
        return FWX_E_OUTOFMEMORY;
    fi->fb = fb;
    /* The wrapped backend is handed its own struct as self, as if the core had opened it. */
    hr = fb->inner->open(fb->inner, fw, &fi->inner_state);
    if (FWX_FAILED(hr)) {
        free(fi);
        return hr;
    }
    *state = fi;
    return FWX_S_OK;
}

static void f_close(void *state)
{
    fault_instance *fi = state;
    fwx_result unused;
    (void)hit(fi->fb, FAULT_CLOSE, &unused);
    fi->fb->inner->close(fi->inner_state);
    free(fi);
}

static fwx_result f_grant_add(void *state, const fwx_grant *grant)
{
    fault_instance *fi = state;
    fwx_result hr;
    /* The same grant pointer goes on: fwx_backend_grant_in_kernel() checks it. */
    return hit(fi->fb, FAULT_GRANT_ADD, &hr) ? hr : fi->fb->inner->grant_add(fi->inner_state, grant);
}

static fwx_result f_grant_remove(void *state, uint64_t id)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_GRANT_REMOVE, &hr) ? hr : fi->fb->inner->grant_remove(fi->inner_state, id);
}

static fwx_result f_listen(void *state, const fwx_listen_spec *spec)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_LISTEN, &hr) ? hr : fi->fb->inner->listen(fi->inner_state, spec);
}

static fwx_result f_unlisten(void *state, uint64_t id)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_UNLISTEN, &hr) ? hr : fi->fb->inner->unlisten(fi->inner_state, id);
}

static fwx_result f_relay(void *state, IFWXConnection *conn, int32_t kernel_mode)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_RELAY, &hr) ? hr : fi->fb->inner->relay(fi->inner_state, conn, kernel_mode);
}

static fwx_result f_kill(void *state, IFWXConnection *conn)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_KILL, &hr) ? hr : fi->fb->inner->kill(fi->inner_state, conn);
}

static fwx_result f_create_socket(void *state, int32_t protocol, IFWXNetworkSocket **out)
{
    fault_instance *fi = state;
    fwx_result hr;
    if (hit(fi->fb, FAULT_CREATE_SOCKET, &hr)) {
        if (out != NULL)
            *out = NULL;
        return hr;
    }
    return fi->fb->inner->create_socket(fi->inner_state, protocol, out);
}

static fwx_result f_list(void *state, fwx_backend_list_cb cb, void *arg)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_LIST, &hr) ? hr : fi->fb->inner->list(fi->inner_state, cb, arg);
}

static fwx_result f_policy_changed(void *state, const fwx_policy *policy)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_POLICY_CHANGED, &hr) ? hr : fi->fb->inner->policy_changed(fi->inner_state, policy);
}

static fwx_result f_grant_remove_many(void *state, const uint64_t *ids, size_t n)
{
    fault_instance *fi = state;
    fwx_result hr;
    return hit(fi->fb, FAULT_GRANT_REMOVE_MANY, &hr) ? hr
                                                     : fi->fb->inner->grant_remove_many(fi->inner_state, ids, n);
}

static const fwx_backend *f_wrapped(void *state, void **inner_state)
{
    fault_instance *fi = state;
    fwx_result unused;
    (void)hit(fi->fb, FAULT_WRAPPED, &unused);
    *inner_state = fi->inner_state;
    return fi->fb->inner;
}

/* ---- registration ---------------------------------------------------------------------------- */

fwx_result fault_backend_register(const char *name, const char *wrapped, fault_backend **out)
{
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (name == NULL || wrapped == NULL)
        return FWX_E_INVALIDARG;
    const fwx_backend *in = fwx_backend_find(wrapped);
    if (in == NULL)
        return FWX_E_NOT_FOUND;
    fault_backend *fb = calloc(1, sizeof *fb);
    if (fb == NULL || (fb->name = strdup(name)) == NULL) {
        free(fb);
        return FWX_E_OUTOFMEMORY;
    }
    fb->inner = in;
    fb->vt.version = FWX_BACKEND_VERSION;
    fb->vt.name = fb->name;
    fb->vt.app_data = fb;
    /* Required methods are always forwarded; an optional one only where the wrapped backend
       has it, reading no field past the struct version it declares. */
    fb->vt.open = f_open;
    fb->vt.close = f_close;
    fb->vt.grant_add = f_grant_add;
    fb->vt.grant_remove = f_grant_remove;
    fb->vt.listen = in->listen ? f_listen : NULL;
    fb->vt.unlisten = in->unlisten ? f_unlisten : NULL;
    fb->vt.relay = in->relay ? f_relay : NULL;
    fb->vt.kill = in->kill ? f_kill : NULL;
    fb->vt.create_socket = in->create_socket ? f_create_socket : NULL;
    fb->vt.list = in->list ? f_list : NULL;
    fb->vt.policy_changed = in->version >= 2 && in->policy_changed ? f_policy_changed : NULL;
    fb->vt.grant_remove_many = in->version >= 3 && in->grant_remove_many ? f_grant_remove_many : NULL;
    fb->vt.wrapped = f_wrapped;
    fwx_result hr = fwx_backend_register(&fb->vt);
    if (FWX_FAILED(hr)) {
        free(fb->name);
        free(fb);
        return hr;
    }
    *out = fb;
    return FWX_S_OK;
}

fwx_result fault_backend_unregister(fault_backend *fb)
{
    if (fb == NULL)
        return FWX_S_OK;
    fwx_result hr = fwx_backend_unregister(&fb->vt);
    free(fb->name);
    free(fb);
    return hr;
}

const fwx_backend *fault_backend_vtable(const fault_backend *fb) { return &fb->vt; }

fwx_result fault_backend_arm(fault_backend *fb, fault_method m, unsigned nth, fwx_result code, int persist)
{
    if (fb == NULL || nth == 0 || !FWX_FAILED(code) || !can_fail(m))
        return FWX_E_INVALIDARG;
    fb->armed = 1;
    fb->persist = persist != 0;
    fb->arm_method = m;
    fb->countdown = nth;
    fb->code = code;
    return FWX_S_OK;
}

void fault_backend_disarm(fault_backend *fb) { fb->armed = 0; }

unsigned fault_backend_calls(const fault_backend *fb, fault_method m)
{
    return (unsigned)m < FAULT__COUNT ? fb->calls[m] : 0;
}

unsigned fault_backend_faults(const fault_backend *fb) { return fb->faults; }
