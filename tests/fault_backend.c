/*
 * fwx tests - a fault-injecting backend; see fault_backend.h.
 * SPDX-License-Identifier: MIT
 */
#include "fault_backend.h"

#include <assert.h>
#include <string.h>

static struct {
    fwx_firewall *fw;
    int open;
    fault_grant grants[FAULT_BACKEND_MAX_GRANTS];
    size_t n_grants;
    fault_call calls[FAULT_BACKEND_MAX_CALLS];
    size_t n_calls;
    unsigned counts[FAULT_OP_LIST + 1];
    unsigned n_grant_add; /* grant_add calls since the reset, failed ones included */
    unsigned fail_at;     /* 0: no fault pending */
    fwx_result fail_code;
    fwx_result open_code;
    fwx_result relay_code;
} fb;

/* The state handed to the core: its address only matters for the checks below. */
static int fb_state_token;

static fault_call *record(fault_op op)
{
    fb.counts[op]++;
    if (fb.n_calls >= FAULT_BACKEND_MAX_CALLS)
        return NULL;
    fault_call *c = &fb.calls[fb.n_calls++];
    memset(c, 0, sizeof *c);
    c->op = op;
    return c;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

static fwx_result fb_open(const fwx_backend *self, fwx_firewall *fw, void **state)
{
    fault_call *c = record(FAULT_OP_OPEN);
    if (self != &fault_backend || fw == NULL || state == NULL) {
        if (c != NULL)
            c->result = FWX_E_INVALIDARG;
        return FWX_E_INVALIDARG;
    }
    if (c != NULL)
        c->result = fb.open_code;
    if (FWX_FAILED(fb.open_code))
        return fb.open_code;
    fb.fw = fw;
    fb.open = 1;
    fb.n_grants = 0;
    *state = &fb_state_token;
    return FWX_S_OK;
}

static void fb_close(void *state)
{
    (void)state;
    record(FAULT_OP_CLOSE);
    fb.open = 0;
    fb.fw = NULL;
    fb.n_grants = 0; /* a closed backend holds nothing */
}

static fwx_result fb_grant_add(void *state, const fwx_grant *g)
{
    /* The core's contract with backends: a grant always comes whole and with its size. */
    assert(g != NULL && g->struct_size == sizeof *g && g->id != 0);
    fault_call *c = record(FAULT_OP_GRANT_ADD);
    fwx_result hr = FWX_S_OK;
    fb.n_grant_add++;
    if (c != NULL) {
        c->id = g->id;
        c->kind = g->kind;
        c->gateway_port = port_of(&g->gateway);
        c->kernel_mode = g->kernel_mode;
    }
    if (state != &fb_state_token || g->struct_size < sizeof *g)
        hr = FWX_E_INVALIDARG;
    else if (fb.fail_at != 0 && fb.n_grant_add == fb.fail_at) {
        hr = fb.fail_code;
        fb.fail_at = 0;
    } else if (fault_backend_find(g->id) != NULL)
        hr = FWX_E_ALREADY_EXISTS_WIN32; /* the core installs a grant once */
    else if (fb.n_grants >= FAULT_BACKEND_MAX_GRANTS)
        hr = FWX_E_OUTOFMEMORY;
    if (c != NULL)
        c->result = hr;
    if (FWX_FAILED(hr))
        return hr;
    fault_grant *k = &fb.grants[fb.n_grants++];
    memset(k, 0, sizeof *k);
    k->kind = g->kind;
    k->id = g->id;
    k->protocol = g->protocol;
    k->gateway = g->gateway;
    k->target = g->target;
    k->client = g->client;
    k->flags = g->flags;
    k->kernel_mode = g->kernel_mode;
    k->backlog = g->backlog;
    k->expires_ms = g->expires_ms;
    return FWX_S_OK;
}

static fwx_result fb_grant_remove(void *state, uint64_t id)
{
    fault_call *c = record(FAULT_OP_GRANT_REMOVE);
    fwx_result hr = FWX_E_NOT_FOUND;
    (void)state;
    for (size_t i = 0; i < fb.n_grants; i++) {
        if (fb.grants[i].id == id) {
            memmove(&fb.grants[i], &fb.grants[i + 1], (fb.n_grants - i - 1) * sizeof fb.grants[0]);
            fb.n_grants--;
            hr = FWX_S_OK;
            break;
        }
    }
    if (c != NULL) {
        c->id = id;
        c->result = hr;
    }
    return hr;
}

static fwx_result fb_relay(void *state, IFWXConnection *conn, int32_t kernel_mode)
{
    assert(conn != NULL); /* the core relays only connections it admitted */
    fault_call *c = record(FAULT_OP_RELAY);
    (void)state;
    if (c != NULL) {
        c->conn = conn;
        c->kernel_mode = kernel_mode;
        c->result = fb.relay_code;
    }
    return fb.relay_code;
}

static fwx_result fb_kill(void *state, IFWXConnection *conn)
{
    fault_call *c = record(FAULT_OP_KILL);
    (void)state;
    if (c != NULL) {
        c->conn = conn;
        c->result = FWX_S_OK;
    }
    return FWX_S_OK;
}

static fwx_result fb_list(void *state, fwx_backend_list_cb cb, void *arg)
{
    fault_call *c = record(FAULT_OP_LIST);
    (void)state;
    for (size_t i = 0; cb != NULL && i < fb.n_grants; i++) {
        const fault_grant *k = &fb.grants[i];
        fwx_grant g;
        memset(&g, 0, sizeof g);
        g.struct_size = sizeof g;
        g.kind = k->kind;
        g.id = k->id;
        g.protocol = k->protocol;
        g.flags = k->flags;
        g.client = k->client;
        g.target = k->target;
        g.gateway = k->gateway;
        g.backlog = k->backlog;
        g.kernel_mode = k->kernel_mode;
        g.expires_ms = k->expires_ms;
        cb(arg, &g);
    }
    if (c != NULL)
        c->result = FWX_S_OK;
    return FWX_S_OK;
}

const fwx_backend fault_backend = {
    .version = 1,
    .name = FAULT_BACKEND_NAME,
    .app_data = NULL,
    .open = fb_open,
    .close = fb_close,
    .grant_add = fb_grant_add,
    .grant_remove = fb_grant_remove,
    .listen = NULL,
    .unlisten = NULL,
    .relay = fb_relay,
    .kill = fb_kill,
    .create_socket = NULL,
    .list = fb_list,
};

void fault_backend_reset(void)
{
    fwx_firewall *fw = fb.fw;
    int open = fb.open;
    memset(&fb, 0, sizeof fb);
    /* An open instance stays open (and empty): the core still has it. */
    fb.fw = fw;
    fb.open = open;
}

void fault_backend_fail_at(unsigned n, fwx_result code)
{
    fb.fail_at = n;
    fb.fail_code = code;
}

void fault_backend_fail_open(fwx_result code) { fb.open_code = code; }

void fault_backend_fail_relay(fwx_result code) { fb.relay_code = code; }

size_t fault_backend_n_grants(void) { return fb.n_grants; }

const fault_grant *fault_backend_grant(size_t i) { return i < fb.n_grants ? &fb.grants[i] : NULL; }

const fault_grant *fault_backend_find(uint64_t id)
{
    for (size_t i = 0; i < fb.n_grants; i++)
        if (fb.grants[i].id == id)
            return &fb.grants[i];
    return NULL;
}

size_t fault_backend_count_kind(fwx_grant_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < fb.n_grants; i++)
        if (fb.grants[i].kind == kind)
            n++;
    return n;
}

size_t fault_backend_n_calls(void) { return fb.n_calls; }

const fault_call *fault_backend_call(size_t i) { return i < fb.n_calls ? &fb.calls[i] : NULL; }

unsigned fault_backend_count(fault_op op)
{
    return (op >= FAULT_OP_OPEN && op <= FAULT_OP_LIST) ? fb.counts[op] : 0;
}

const fault_call *fault_backend_last(fault_op op)
{
    for (size_t i = fb.n_calls; i > 0; i--)
        if (fb.calls[i - 1].op == op)
            return &fb.calls[i - 1];
    return NULL;
}

fwx_firewall *fault_backend_firewall(void) { return fb.fw; }

int fault_backend_is_open(void) { return fb.open; }
