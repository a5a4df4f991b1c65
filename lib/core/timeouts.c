/*
 * fwx - connection time limits: the idle timeout (no byte either way for N seconds) and the
 * handshake timeout (N seconds from accept until the connection is established end to end and
 * no filter holds its handshake open), per protocol definition, with the firewall's defaults
 * (fwx_firewall_set_timeouts). See fwx/host.h (fwx_timeouts) and doc/security.md.
 * SPDX-License-Identifier: MIT
 *
 * Cost: data records the loop's cached time on the connection (no syscall, no timer call).
 * One repeating 1 s timer per firewall turns a wheel of FWX__TW_SLOTS one-second slots; a
 * connection sits in the slot of its nearest deadline as it was when placed. When its slot
 * comes round, the real deadline is computed: past, the connection ends; not yet (it moved
 * bytes since), it is placed again. So a connection costs a look once per idle period, or once
 * per FWX__TW_SLOTS seconds when its deadline is further than that, whatever its traffic.
 */
#include "core/internal.h"
#include "core/log.h"

#define SECOND_MS 1000u

enum { HIT_NONE, HIT_IDLE, HIT_HANDSHAKE };

void fwx__timeouts_init(fwx_firewall *fw)
{
    fwx__timeouts *to = &fw->to;
    to->idle_ms = FWX_TIMEOUTS_IDLE_DEFAULT * SECOND_MS;
    to->handshake_ms = FWX_TIMEOUTS_HANDSHAKE_DEFAULT * SECOND_MS;
    for (size_t i = 0; i < FWX__TW_SLOTS; i++)
        fwx__list_init(&to->slot[i]);
    to->done_s = uv_now(fw->loop) / SECOND_MS;
    uv_timer_init(fw->loop, &to->tick);
    to->tick.data = fw;
    /* Timed connections keep the loop alive by their sockets; the tick must not on its own. */
    uv_unref((uv_handle_t *)&to->tick);
}

static void on_tick_closed(uv_handle_t *h)
{
    fwx_firewall *fw = h->data;
    fw->to.then(fw);
}

void fwx__timeouts_close(fwx_firewall *fw, void (*then)(fwx_firewall *fw))
{
    /* Every session has ended by now, so the wheel is empty. */
    fw->to.then = then;
    uv_timer_stop(&fw->to.tick);
    uv_close((uv_handle_t *)&fw->to.tick, on_tick_closed);
}

static bool handshake_open(const fwx__conn *c) { return c->handshake_ms != 0 && (!c->established || c->hs_pending); }

/* The nearest deadline in loop ms, UINT64_MAX for none. */
static uint64_t deadline(const fwx__conn *c)
{
    uint64_t d = UINT64_MAX;
    if (c->idle_ms != 0)
        d = c->last_active_ms + c->idle_ms;
    if (handshake_open(c) && c->created_ms + c->handshake_ms < d)
        d = c->created_ms + c->handshake_ms;
    return d;
}

static void unplace(fwx__conn *c)
{
    if (!c->timed)
        return;
    c->timed = false;
    if (c->timed_primary) {
        c->timed_primary = false;
        c->session->timed_primaries--;
    }
    fwx__list_remove(&c->to_node);
    c->session->fw->to.n--;
}

static void tick_cb(uv_timer_t *t);

/* Puts c in the slot of its nearest deadline (rounded up to the second), or takes it out of
   the wheel when it has none. */
static void place(fwx__conn *c)
{
    fwx_firewall *fw = c->session->fw;
    fwx__timeouts *to = &fw->to;
    uint64_t d = deadline(c);
    if (d == UINT64_MAX) {
        unplace(c);
        return;
    }
    if (!to->tick_on) {
        /* First, so that the slot below is one the tick will reach in its first turn. */
        to->tick_on = true;
        to->done_s = uv_now(fw->loop) / SECOND_MS;
        uv_timer_start(&to->tick, tick_cb, SECOND_MS, SECOND_MS);
    }
    uint64_t s = (d + SECOND_MS - 1) / SECOND_MS;
    if (s <= to->done_s)
        s = to->done_s + 1; /* already due: the next tick */
    if (c->timed)
        fwx__list_remove(&c->to_node);
    else {
        c->timed = true;
        to->n++;
        c->timed_primary = !(c->flags & FWX_CONNECTION_SECONDARY);
        if (c->timed_primary)
            c->session->timed_primaries++;
    }
    c->to_check_s = s;
    fwx__list_insert_tail(&to->slot[s % FWX__TW_SLOTS], &c->to_node);
}

static int hit(const fwx__conn *c, uint64_t now_ms)
{
    if (handshake_open(c) && now_ms >= c->created_ms + c->handshake_ms)
        return HIT_HANDSHAKE;
    if (c->idle_ms != 0 && now_ms >= c->last_active_ms + c->idle_ms)
        return HIT_IDLE;
    return HIT_NONE;
}

static void expire(fwx__conn *c, int why)
{
    fwx__session *s = c->session;
    fwx_firewall *fw = s->fw;
    const fwx__protocol *pr = fw->policy != NULL ? fwx__policy_protocol_by_guid(fw->policy, &c->protocol_guid) : NULL;
    char a[FWX__SA_STRLEN];
    bool in = c->event == fwx_AcceptedConnection;
    unplace(c);
    if (why == HIT_IDLE)
        fw->to.n_idle++;
    else
        fw->to.n_handshake++;
    /* Folded by its format like a warning (fold_format): a client that opens hundreds of
       connections and lets them time out must not flood the log. */
    fwx__log_at(fw, FWX_LOG_INFO, &(fwx__log_about){.conn = c, .fold_format = true},
                "connection %llu: client %s, protocol \"%s\": %s timeout (%u s) reached, closing it",
                (unsigned long long)c->id,
                in ? fwx__sa_fmt((struct sockaddr *)&c->ext_peer, a) : fwx__sa_fmt_ip((struct sockaddr *)&s->client, a),
                pr != NULL ? pr->name : "none", why == HIT_IDLE ? "idle" : "handshake",
                (why == HIT_IDLE ? c->idle_ms : c->handshake_ms) / SECOND_MS);
    fwx__conn_terminate(c); /* as any close: its filters, grants and relay go with it */
}

static void tick_cb(uv_timer_t *t)
{
    fwx_firewall *fw = t->data;
    fwx__timeouts *to = &fw->to;
    uint64_t now_ms = uv_now(fw->loop), now_s = now_ms / SECOND_MS;
    /* After a stall longer than the wheel, every slot once is every connection once. */
    if (now_s > to->done_s + FWX__TW_SLOTS)
        to->done_s = now_s - FWX__TW_SLOTS;
    for (uint64_t sec = to->done_s + 1; sec <= now_s; sec++) {
        fwx__list *slot = &to->slot[sec % FWX__TW_SLOTS], batch;
        if (fwx__list_empty(slot))
            continue;
        /* Work on a detached batch: what is placed again goes to the wheel, not into the
           batch, and a termination that ends other connections unlinks them from either. */
        batch.next = slot->next;
        batch.prev = slot->prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        fwx__list_init(slot);
        while (!fwx__list_empty(&batch)) {
            fwx__conn *c = fwx__list_entry(batch.next, fwx__conn, to_node);
            fwx__list_remove(&c->to_node);
            fwx__list_insert_tail(slot, &c->to_node); /* where place() expects it */
            int why = c->to_check_s <= now_s ? hit(c, now_ms) : HIT_NONE;
            if (why != HIT_NONE)
                expire(c, why);
            else
                place(c);
        }
    }
    to->done_s = now_s;
    if (to->n == 0 && to->tick_on) {
        to->tick_on = false;
        uv_timer_stop(&to->tick);
    }
}

/* Sets c's limits from its protocol definition (or the firewall's defaults) and puts it in
   the wheel. Once per connection. */
static void arm(fwx__conn *c)
{
    fwx_firewall *fw = c->session->fw;
    if (c->armed || c->protocol != FWX_PROTOCOL_TCP ||
        (c->flags & (FWX_CONNECTION_LISTENING | FWX_CONNECTION_TERMINATED)))
        return;
    c->armed = true;
    /* The policy of the moment decides; a reload later leaves running connections as they are. */
    const fwx__protocol *pr = fw->policy != NULL ? fwx__policy_protocol_by_guid(fw->policy, &c->protocol_guid) : NULL;
    c->idle_ms = pr != NULL && pr->idle_s >= 0 ? (uint32_t)pr->idle_s * SECOND_MS : fw->to.idle_ms;
    c->handshake_ms = pr != NULL && pr->handshake_s >= 0 ? (uint32_t)pr->handshake_s * SECOND_MS : fw->to.handshake_ms;
    if (c->flags & FWX_CONNECTION_EMULATED)
        c->established = true; /* a filter is the other side: nothing to connect */
    if (c->last_active_ms == 0)
        c->last_active_ms = uv_now(fw->loop);
    place(c);
}

void fwx__timeouts_arm(fwx__conn *c)
{
    /* From accept only what fwx's user-mode path must carry (a filter sees it), with a
       backend to carry it. What the kernel may carry is timed only if fwx's relay ends up
       carrying it after all (the proxy backend splices it), from when that relay starts; so
       is a connection a host relays itself through fwx_connection_relay() (no backend). */
    if ((c->flags & FWX_CONNECTION_KERNEL_MODE) || c->session->fw->backend == NULL)
        return;
    arm(c);
}

void fwx__timeouts_forget(fwx__conn *c) { unplace(c); }

void fwx__timeouts_touch(fwx__conn *c)
{
    uint64_t now = uv_now(c->session->fw->loop);
    c->last_active_ms = now;
    /* A secondary connection's bytes are its primary's activity too: an FTP control connection
       is silent while its data connection carries a long transfer, and must not be cut for it.
       The core does not know which primary asked for the secondary, so every primary of the
       session with the same protocol definition counts it: at most once a second. */
    if (!(c->flags & FWX_CONNECTION_SECONDARY) || now - c->touched_ms < SECOND_MS)
        return;
    c->touched_ms = now;
    fwx__session *s = c->session;
    if (s->timed_primaries == 0)
        return; /* no primary to keep alive */
    /* Once a second for the session too: thousands of short secondaries of one protocol (kernel
       flows of ALLOW_MULTIPLE permissions) each walked every connection of the session once. */
    if (now - s->touched_ms < SECOND_MS && s->touched_ms != 0 && fwx_guid_equal(&s->touched_guid, &c->protocol_guid))
        return;
    s->touched_ms = now;
    s->touched_guid = c->protocol_guid;
    for (fwx__list *n = s->conns.next; n != &s->conns; n = n->next) {
        fwx__conn *o = fwx__list_entry(n, fwx__conn, node);
        if (o->timed_primary && fwx_guid_equal(&o->protocol_guid, &c->protocol_guid))
            o->last_active_ms = now;
    }
}

void fwx__timeouts_established(fwx__conn *c)
{
    c->established = true;
    arm(c); /* fwx's relay carries it: timed from now if it was not already */
}

void fwx__timeouts_hold_handshake(fwx__conn *c, bool pending)
{
    c->hs_pending = pending;
    if (c->timed)
        place(c); /* its deadline may be nearer now */
}

/* ---- the host's calls -------------------------------------------------------------------- */

void fwx_timeouts_init(fwx_timeouts *t)
{
    if (t == NULL)
        return;
    memset(t, 0, sizeof *t);
    t->struct_size = sizeof *t;
    t->idle_s = FWX_TIMEOUTS_IDLE_DEFAULT;
    t->handshake_s = FWX_TIMEOUTS_HANDSHAKE_DEFAULT;
}

fwx_result fwx_firewall_set_timeouts(fwx_firewall *fw, const fwx_timeouts *t)
{
    if (fw == NULL || t == NULL)
        return FWX_E_POINTER;
    if (t->struct_size < offsetof(fwx_timeouts, handshake_s) + sizeof t->handshake_s ||
        t->idle_s > FWX_TIMEOUTS_MAX || t->handshake_s > FWX_TIMEOUTS_MAX)
        return FWX_E_INVALIDARG;
    fw->to.idle_ms = t->idle_s * SECOND_MS;
    fw->to.handshake_ms = t->handshake_s * SECOND_MS;
    return FWX_S_OK;
}

fwx_result fwx_firewall_get_timeout_stats(const fwx_firewall *fw, uint64_t *idle, uint64_t *handshake)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    if (idle != NULL)
        *idle = fw->to.n_idle;
    if (handshake != NULL)
        *handshake = fw->to.n_handshake;
    return FWX_S_OK;
}

void fwx_connection_established(IFWXConnection *conn)
{
    if (conn != NULL && fwx__conn_is_ours(conn))
        fwx__timeouts_established(fwx__conn_from(conn));
}
