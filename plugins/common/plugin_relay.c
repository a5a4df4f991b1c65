/*
 * fwx plugins - relaying a TCP connection's two directions inside a data filter (see
 * plugin_relay.h). SPDX-License-Identifier: MIT
 */
#include "plugin_relay.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum { UD_RECV = 1, UD_SEND = 2 };

void plugin_relay_init(plugin_relay *r, IFWXFirewall *fw, IFWXSocket *in, IFWXSocket *ex, IFWXIOCompletion *dir0,
                       IFWXIOCompletion *dir1, const plugin_relay_ops *ops, void *arg, size_t out_max)
{
    memset(r, 0, sizeof *r);
    r->fw = fw;
    r->s[0] = in;
    r->s[1] = ex;
    r->dirs[0] = dir0;
    r->dirs[1] = dir1;
    r->ops = ops;
    r->arg = arg;
    r->out_max = out_max;
}

void plugin_relay_close(plugin_relay *r, const char *why)
{
    if (r->closed)
        return;
    r->closed = true;
    if (r->ops == NULL)
        return; /* never started: nothing to withdraw, no socket */
    r->ops->closing(r->arg, why);
    for (int i = 0; i < 2; i++)
        if (r->s[i] != NULL)
            (void)IFWXSocket_Close(r->s[i]);
}

static void relay_recv(plugin_relay *r, int d)
{
    if (r->closed || r->eof[d] || r->s[d] == NULL)
        return;
    if (FWX_FAILED(IFWXSocket_Recv(r->s[d], NULL, r->dirs[d], UD_RECV)))
        plugin_relay_close(r, "cannot read");
}

void plugin_relay_start(plugin_relay *r)
{
    relay_recv(r, 0);
    relay_recv(r, 1);
}

void plugin_relay_out_add(plugin_relay *r, int target, const void *p, size_t n)
{
    plugin_relay_out *o = &r->out[target];
    if (r->closed || n == 0)
        return;
    if (o->len + n > r->out_max) {
        plugin_relay_close(r, "output limit reached");
        return;
    }
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n)
            cap *= 2;
        char *q = realloc(o->p, cap);
        if (q == NULL) {
            plugin_relay_close(r, "out of memory");
            return;
        }
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

/* Side d's chunk is all out: read d again, or close when the filter is done. */
static void relay_next(plugin_relay *r, int d)
{
    if (r->ops->finished != NULL && r->ops->finished(r->arg))
        plugin_relay_close(r, NULL);
    else
        relay_recv(r, d);
}

/* Sends what side d's chunk produced. */
static void relay_flush(plugin_relay *r, int d)
{
    for (int t = 0; t < 2 && !r->closed; t++) {
        plugin_relay_out *o = &r->out[t];
        if (o->len == 0)
            continue;
        IFWXIOBuffer *b = NULL;
        fwx_result hr = IFWXFirewall_CreateBuffer(r->fw, (uint32_t)o->len, &b);
        if (FWX_SUCCEEDED(hr))
            hr = IFWXIOBuffer_Append(b, o->p, (uint32_t)o->len);
        if (FWX_SUCCEEDED(hr))
            hr = IFWXSocket_Send(r->s[t], b, r->dirs[d], UD_SEND);
        if (b != NULL)
            IFWXIOBuffer_Release(b);
        o->len = 0;
        if (FWX_FAILED(hr)) {
            plugin_relay_close(r, "cannot send");
            return;
        }
        r->pending[d]++;
    }
    if (!r->closed && r->pending[d] == 0)
        relay_next(r, d);
}

void plugin_relay_complete(plugin_relay *r, int d, int32_t ok, IFWXIOBuffer *buf, uintptr_t ud)
{
    if (r->closed)
        return;
    if (!ok) {
        plugin_relay_close(r, NULL); /* a peer reset or the core ended the connection */
        return;
    }
    if (ud == UD_SEND) {
        if (r->pending[d] > 0 && --r->pending[d] == 0)
            relay_next(r, d);
        return;
    }
    uint8_t *p = NULL;
    uint32_t n = 0;
    if (buf == NULL || FWX_FAILED(IFWXIOBuffer_GetBufferAndSize(buf, &p, &n))) {
        plugin_relay_close(r, "cannot read the received buffer");
        return;
    }
    if (n == 0) {
        /* EOF: the other side is told; both gone, the connection is over. */
        r->eof[d] = true;
        (void)IFWXSocket_Shutdown(r->s[1 - d], SHUT_WR);
        if (r->eof[0] && r->eof[1])
            plugin_relay_close(r, NULL);
        return;
    }
    r->ops->data(r->arg, d, p, n);
    if (!r->closed)
        relay_flush(r, d);
}

void plugin_relay_free(plugin_relay *r)
{
    for (int i = 0; i < 2; i++) {
        free(r->out[i].p);
        memset(&r->out[i], 0, sizeof r->out[i]);
    }
}
