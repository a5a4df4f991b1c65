/*
 * fwx - listing what a firewall holds, for tools such as fwxctl.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

static void base(fwx_object_info *i, fwx_object_kind kind, uint64_t id, uint64_t now, uint64_t created)
{
    memset(i, 0, sizeof *i);
    i->struct_size = sizeof *i;
    i->kind = kind;
    i->id = id;
    i->age_ms = now >= created ? now - created : 0;
    i->expires_in_ms = -1;
    i->name = "";
    i->owner = "";
}

/* A connection as fwx_firewall_list and fwx_connection_info describe it. */
static void conn_info(const fwx__conn *c, uint64_t now, fwx_object_info *o)
{
    fwx_object_info i;
    base(&i, FWX_OBJECT_CONNECTION, c->id, now, c->created_ms);
    i.session_id = c->session->id;
    i.protocol = c->protocol;
    i.flags = c->flags;
    fwx__sa_get(&i.client, &c->client);
    if (c->has_ext_peer)
        fwx__sa_get(&i.peer, &c->ext_peer);
    if (c->has_ext_local)
        fwx__sa_get(&i.local, &c->ext_local);
    i.bytes_in = c->bytes_in;
    i.bytes_out = c->bytes_out + c->bytes_sent;
    i.kernel_mode = (c->flags & FWX_CONNECTION_KERNEL_MODE) != 0;
    i.name = (c->flags & FWX_CONNECTION_LISTENING) ? "listening"
             : (c->flags & FWX_CONNECTION_SECONDARY) ? "secondary"
                                                      : "primary";
    *o = i;
}

fwx_result fwx_firewall_list(fwx_firewall *fw, uint32_t kinds, fwx_list_cb cb, void *arg)
{
    fwx_object_info i;
    if (fw == NULL || cb == NULL)
        return FWX_E_POINTER;
    uint64_t now = uv_now(fw->loop);
    if (kinds & FWX_OBJECT_PLUGIN) {
        for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next) {
            fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
            if (p->unloaded)
                continue;
            base(&i, FWX_OBJECT_PLUGIN, p->index, now, now);
            i.flags = p->hooks;
            i.name = p->name;
            i.owner = p->path;
            i.guid = p->guid;
            cb(arg, &i);
        }
    }
    for (fwx__list *sn = fw->sessions.next; sn != &fw->sessions; sn = sn->next) {
        fwx__session *s = fwx__list_entry(sn, fwx__session, node);
        if (kinds & FWX_OBJECT_SESSION) {
            base(&i, FWX_OBJECT_SESSION, s->id, now, s->created_ms);
            i.session_id = s->id;
            i.flags = s->flags;
            fwx__sa_get(&i.client, &s->client);
            i.name = (s->flags & FWX_SESSION_PRIVATE) ? "private" : s->source == fwxSourceNAT ? "nat" : "explicit";
            i.owner = s->user ? s->user : "";
            cb(arg, &i);
        }
        if (kinds & FWX_OBJECT_CONNECTION) {
            for (fwx__conn *c = fwx__session_conn_first(s); c != NULL; c = fwx__session_conn_next(c)) {
                conn_info(c, now, &i);
                cb(arg, &i);
            }
        }
        if (kinds & FWX_OBJECT_GRANT) {
            for (fwx__list *gn = s->grants.next; gn != &s->grants; gn = gn->next) {
                fwx__grant *g = fwx__list_entry(gn, fwx__grant, session_node);
                base(&i, FWX_OBJECT_GRANT, g->pub.id, now, g->created_ms);
                i.session_id = s->id;
                i.protocol = g->pub.protocol;
                i.flags = g->pub.flags;
                i.client = g->pub.client;
                i.peer = g->pub.target;
                i.local = g->pub.gateway;
                if (g->expires != 0)
                    i.expires_in_ms = g->expires > now ? (int64_t)(g->expires - now) : 0;
                i.name = fwx__grant_type_name(g->type);
                i.owner = g->owner ? g->owner->name : "";
                i.kernel_mode = g->in_kernel;
                i.guid = g->protocol_guid;
                cb(arg, &i);
            }
        }
    }
    return FWX_S_OK;
}

fwx_result fwx_connection_info(IFWXConnection *conn, fwx_object_info *out)
{
    if (conn == NULL || out == NULL)
        return FWX_E_POINTER;
    if (!fwx__conn_is_ours(conn))
        return FWX_E_INVALIDARG;
    const fwx__conn *c = fwx__conn_from(conn);
    fwx_object_info i;
    conn_info(c, uv_now(c->session->fw->loop), &i);
    /* An output struct (the one rule of @ref struct_sizes). The call came with 1.1, when the
       struct already had all its fields: its first size is the whole struct. */
    return FWX__STRUCT_OUT(out, i, sizeof i) ? FWX_S_OK : FWX_E_INVALIDARG;
}
