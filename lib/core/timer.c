/*
 * fwx - IFWXTimer: a plugin's one-shot timer on the firewall's loop (include/fwx/sdk.h).
 *
 * Each timer is a uv_timer_t of its own, listed on the firewall so that fwx_firewall_close can
 * let go of the ones a plugin still holds: it disarms them and closes their handles (the loop
 * must close clean), and they only answer FWX_E_TERMINATING until the plugin's last Release.
 * The memory goes when both are done: the handle closed and the count at 0.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

#include <stdlib.h>

typedef struct fwx__timer {
    IFWXTimer iface;
    atomic_uint refs;
    fwx_firewall *fw; /* NULL once the firewall let go of it */
    fwx__plugin *plugin;
    fwx__list node; /* fw->timers */
    uv_timer_t h;
    bool handle_closed;
    IFWXIOCompletion *completion; /* +1 while armed */
    uintptr_t user_data;
} fwx__timer;

static fwx__timer *impl(IFWXTimer *i) { return fwx__container_of(i, fwx__timer, iface); }

static void disarm(fwx__timer *t)
{
    IFWXIOCompletion *c = t->completion;
    t->completion = NULL;
    if (t->fw != NULL)
        uv_timer_stop(&t->h);
    if (c != NULL)
        IFWXIOCompletion_Release(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    fwx__timer *t = h->data;
    t->handle_closed = true;
    if (atomic_load(&t->refs) == 0)
        free(t);
}

/* The firewall stops knowing the timer: disarmed, its handle closing. */
static void detach(fwx__timer *t)
{
    disarm(t);
    fwx__list_remove(&t->node);
    t->fw = NULL;
    uv_close((uv_handle_t *)&t->h, on_handle_closed);
}

static void on_expired(uv_timer_t *h)
{
    fwx__timer *t = h->data;
    IFWXIOCompletion *c = t->completion;
    if (c == NULL || t->fw == NULL)
        return;
    t->completion = NULL;
    fwx__plugin_call saved;
    /* The plugin's Release inside the call may not free t under us. */
    IFWXTimer_AddRef(&t->iface);
    fwx__plugin_enter(t->fw, t->plugin, 0, &saved);
    (void)IFWXIOCompletion_CompleteAsyncIO(c, 1, 0, NULL, t->user_data, NULL, 0);
    fwx__plugin_leave(t->fw, &saved);
    IFWXIOCompletion_Release(c);
    IFWXTimer_Release(&t->iface);
}

static fwx_result tm_QueryInterface(IFWXTimer *This, const fwx_guid *riid, void **ppv)
{
    return fwx__query_one(This, &IID_IFWXTimer, riid, ppv);
}

static uint32_t tm_AddRef(IFWXTimer *This) { return atomic_fetch_add(&impl(This)->refs, 1) + 1; }

static uint32_t tm_Release(IFWXTimer *This)
{
    fwx__timer *t = impl(This);
    uint32_t n = atomic_fetch_sub(&t->refs, 1) - 1;
    if (n == 0) {
        if (t->fw != NULL)
            detach(t); /* frees in the close callback */
        else if (t->handle_closed)
            free(t);
    }
    return n;
}

static fwx_result tm_Start(IFWXTimer *This, uint32_t ms, IFWXIOCompletion *pCompletion, uintptr_t UserData)
{
    fwx__timer *t = impl(This);
    if (pCompletion == NULL)
        return FWX_E_POINTER;
    if (t->fw == NULL || t->fw->closing)
        return FWX_E_TERMINATING;
    IFWXIOCompletion_AddRef(pCompletion);
    disarm(t);
    t->completion = pCompletion;
    t->user_data = UserData;
    uv_timer_start(&t->h, on_expired, ms, 0);
    return FWX_S_OK;
}

static fwx_result tm_Stop(IFWXTimer *This)
{
    disarm(impl(This));
    return FWX_S_OK;
}

static const IFWXTimerVtbl timer_vtbl = {tm_QueryInterface, tm_AddRef, tm_Release, tm_Start, tm_Stop};

fwx_result fwx__timer_new(fwx_firewall *fw, IFWXTimer **out)
{
    *out = NULL;
    if (fw->closing)
        return FWX_E_TERMINATING;
    fwx__timer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return FWX_E_OUTOFMEMORY;
    t->iface.lpVtbl = &timer_vtbl;
    atomic_init(&t->refs, 1);
    t->fw = fw;
    t->plugin = fw->current_plugin;
    uv_timer_init(fw->loop, &t->h);
    t->h.data = t;
    fwx__list_insert_tail(&fw->timers, &t->node);
    *out = &t->iface;
    return FWX_S_OK;
}

void fwx__timers_close(fwx_firewall *fw)
{
    for (size_t i = 0, n = fwx__list_count(&fw->timers); i < n && !fwx__list_empty(&fw->timers); i++)
        detach(fwx__list_entry(fw->timers.next, fwx__timer, node));
    fwx__list_assert_drained(&fw->timers);
}
