/*
 * fwx - what operators' tools ask of a running firewall: end an object by its id,
 * explain a policy decision, a stream of events, and how long plugins take.
 *
 * The event sink is called where the core already logs the same thing (session.c,
 * connection.c, secondary.c, backend_registry.c): one call next to each line, so that the
 * events and the log never disagree about what happened.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

/* ---- events ---------------------------------------------------------------------------- */

fwx_result fwx_firewall_set_event_sink(fwx_firewall *fw, fwx_event_fn sink, void *arg)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    fw->event_sink = sink;
    fw->event_sink_arg = arg;
    return FWX_S_OK;
}

static void event_init(fwx_event *e, fwx_event_type type)
{
    memset(e, 0, sizeof *e);
    e->struct_size = sizeof *e;
    e->type = type;
    e->reason = "";
    e->rule = "";
    e->name = "";
    e->detail = "";
}

static void copy_addr(struct sockaddr_storage *to, const struct sockaddr *from)
{
    if (from != NULL && fwx__sa_len(from) != 0)
        memcpy(to, from, fwx__sa_len(from));
}

void fwx__event_session(fwx__session *s, fwx_event_type type)
{
    fwx_firewall *fw = s->fw;
    if (fw->event_sink == NULL)
        return;
    fwx_event e;
    event_init(&e, type);
    e.session_id = s->id;
    copy_addr(&e.client, (const struct sockaddr *)&s->client);
    e.name = (s->flags & FWX_SESSION_PRIVATE) ? "private" : s->source == fwxSourceNAT ? "nat" : "explicit";
    fw->event_sink(fw->event_sink_arg, &e);
}

static const char *conn_name(const fwx__conn *c)
{
    return (c->flags & FWX_CONNECTION_LISTENING) ? "listening"
           : (c->flags & FWX_CONNECTION_SECONDARY) ? "secondary"
                                                    : "primary";
}

void fwx__event_conn(fwx__conn *c, fwx_event_type type)
{
    fwx_firewall *fw = c->session->fw;
    if (fw->event_sink == NULL)
        return;
    fwx_event e;
    event_init(&e, type);
    e.session_id = c->session->id;
    e.id = c->id;
    e.protocol = c->protocol;
    e.kernel_mode = (c->flags & FWX_CONNECTION_KERNEL_MODE) != 0;
    copy_addr(&e.client, (const struct sockaddr *)&c->client);
    if (e.client.ss_family == AF_UNSPEC)
        copy_addr(&e.client, (const struct sockaddr *)&c->session->client);
    if (c->has_ext_peer)
        copy_addr(&e.peer, (const struct sockaddr *)&c->ext_peer);
    e.bytes_in = c->bytes_in;
    e.bytes_out = c->bytes_out + c->bytes_sent;
    e.rule = fwx__conn_rule(c);
    e.name = conn_name(c);
    fw->event_sink(fw->event_sink_arg, &e);
}

/* The reason label a refusal is counted under: stable, for metrics. */
static const char *refusal_reason(fwx_result r)
{
    switch (r) {
    case FWX_E_PROTOCOL_RULES_DENIED:
        return "protocol_rules";
    case FWX_E_SITE_AND_CONTENT_RULES_DENIED:
        return "site_rules";
    case FWX_E_NETWORK_RULES_DENIED:
        return "network_rules";
    case FWX_E_CLASSNOTREG:
        return "no_filter";
    case FWX_E_FILTER_NOT_REGISTERED:
        return "quarantine";
    case FWX_E_CONNREFUSED:
    case FWX_E_ADDRINUSE:
    case FWX_E_DENIED:
        return "filter";
    case FWX_E_QUOTA_EXCEEDED:
    case FWX_E_IS_BUSY:
        return "limits";
    default:
        return "other";
    }
}

void fwx__event_refused(fwx_firewall *fw, fwx__session *s, const fwx__conn *c, int32_t protocol,
                        const struct sockaddr *src, const struct sockaddr *dst, fwx_result result, const char *rule,
                        const char *detail)
{
    if (fw->event_sink == NULL)
        return;
    fwx_event e;
    event_init(&e, FWX_EVENT_CONNECTION_REFUSED);
    e.session_id = s != NULL ? s->id : 0;
    e.id = c != NULL ? c->id : 0;
    e.protocol = protocol;
    copy_addr(&e.client, src);
    copy_addr(&e.peer, dst);
    e.result = result;
    e.reason = refusal_reason(result);
    e.rule = rule ? rule : "";
    e.name = c != NULL ? conn_name(c) : "primary";
    e.detail = detail ? detail : "";
    fw->event_sink(fw->event_sink_arg, &e);
}

fwx_result fwx_firewall_report_refused(fwx_firewall *fw, int32_t protocol, const struct sockaddr *source,
                                       const struct sockaddr *destination, fwx_result result, const char *detail)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    if (!FWX_FAILED(result) || (protocol != FWX_PROTOCOL_TCP && protocol != FWX_PROTOCOL_UDP))
        return FWX_E_INVALIDARG;
    fwx__event_refused(fw, NULL, NULL, protocol, source, destination, result, "", detail);
    return FWX_S_OK;
}

void fwx__event_grant(fwx__grant *g, fwx_event_type type)
{
    fwx_firewall *fw = g->session->fw;
    if (fw->event_sink == NULL || g->type == FWX__G_FACTORY)
        return;
    fwx_event e;
    event_init(&e, type);
    e.session_id = g->session->id;
    e.id = g->pub.id;
    e.protocol = g->pub.protocol;
    e.kernel_mode = g->in_kernel;
    copy_addr(&e.client, (const struct sockaddr *)&g->pub.client);
    copy_addr(&e.peer, (const struct sockaddr *)&g->pub.target);
    e.name = fwx__grant_type_name(g->type);
    fw->event_sink(fw->event_sink_arg, &e);
}

/* ---- kill ------------------------------------------------------------------------------ */

fwx_result fwx_firewall_kill(fwx_firewall *fw, fwx_object_kind kind, uint64_t id)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    if (kind != FWX_OBJECT_SESSION && kind != FWX_OBJECT_CONNECTION)
        return FWX_E_INVALIDARG;
    if (fw->closing)
        return FWX_E_TERMINATING;
    for (fwx__list *sn = fw->sessions.next; sn != &fw->sessions; sn = sn->next) {
        fwx__session *s = fwx__list_entry(sn, fwx__session, node);
        if (kind == FWX_OBJECT_SESSION) {
            if (s->id != id || s->ended)
                continue;
            fwx__log_session(s, FWX_LOG_INFO, "session %llu: ended by the operator", (unsigned long long)id);
            return fwx_session_close(&s->iface) == FWX_S_OK ? FWX_S_OK : FWX_E_NOT_FOUND;
        }
        for (fwx__conn *c = fwx__session_conn_first(s); c != NULL; c = fwx__session_conn_next(c)) {
            if (c->id != id || (c->flags & FWX_CONNECTION_TERMINATED))
                continue;
            fwx__log_conn(c, FWX_LOG_INFO, "connection %llu: killed by the operator", (unsigned long long)id);
            return IFWXConnection_Kill(&c->iface);
        }
    }
    return FWX_E_NOT_FOUND;
}

/* ---- explain --------------------------------------------------------------------------- */

fwx_result fwx_firewall_explain(fwx_firewall *fw, const fwx_explain_request *req, fwx_explanation *out)
{
    struct sockaddr_storage src, dst;
    if (fw == NULL || req == NULL || out == NULL)
        return FWX_E_POINTER;
    if (out->struct_size < sizeof *out || req->struct_size < sizeof *req ||
        (req->protocol != FWX_PROTOCOL_TCP && req->protocol != FWX_PROTOCOL_UDP) ||
        !fwx__sa_canon(req->source, req->source_len, &src) ||
        !fwx__sa_canon(req->destination, req->destination_len, &dst))
        return FWX_E_INVALIDARG;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    if (fw->policy == NULL) {
        snprintf(out->text, sizeof out->text, "no policy loaded: every connection is allowed");
        return FWX_E_NOT_FOUND;
    }
    /* A connection to a publishing rule's listener is decided as fwx_connection_open decides
       it: as going to the rule's server with the rule's protocol. */
    const fwx__publish_rule *pub = NULL;
    for (size_t i = 0; i < fwx__policy_publish_count(fw->policy); i++) {
        const fwx__publish_rule *r = fwx__policy_publish_at(fw->policy, i);
        if (r->protocol != NULL && r->protocol->ip_protocol == req->protocol &&
            fwx__sa_same_endpoint((const struct sockaddr *)&r->listen, (const struct sockaddr *)&dst)) {
            pub = r;
            break;
        }
    }
    fwx__policy_request rq = {
        .ip_protocol = req->protocol,
        .direction = pub != NULL ? FWX__DIR_INBOUND : FWX__DIR_OUTBOUND,
        .source = (const struct sockaddr *)&src,
        .destination = pub != NULL ? (const struct sockaddr *)&pub->server : (const struct sockaddr *)&dst,
        .host_name = req->host_name,
        .user = req->user,
        .protocol_guid = pub != NULL ? &pub->protocol->guid : NULL,
        .published = pub != NULL,
    };
    fwx__policy_decision d;
    fwx__policy_decide(fw->policy, &rq, &d);
    out->result = d.result;
    snprintf(out->rule, sizeof out->rule, "%s", d.rule_name ? d.rule_name : "");
    out->rule_line = d.rule_line;
    snprintf(out->protocol, sizeof out->protocol, "%s", d.protocol ? d.protocol->name : "");
    snprintf(out->source_network, sizeof out->source_network, "%s",
             d.source_network ? fwx__network_name(d.source_network) : "");
    snprintf(out->destination_network, sizeof out->destination_network, "%s",
             d.destination_network ? fwx__network_name(d.destination_network) : "");
    snprintf(out->relationship, sizeof out->relationship, "%s",
             pub != NULL ? "published" : d.relationship == FWX__REL_NAT ? "nat"
                                       : d.relationship == FWX__REL_ROUTE ? "route" : "none");
    snprintf(out->published, sizeof out->published, "%s", pub != NULL && pub->name ? pub->name : "");
    char why[400];
    fwx__policy_decision_fmt(&d, &rq, why, sizeof why);
    if (FWX_SUCCEEDED(d.result)) {
        const fwx__filter_ref *missing = fwx__protocol_missing_filter(fw, d.protocol);
        if (missing != NULL) {
            char g[FWX_GUID_STRLEN];
            out->result = FWX_E_CLASSNOTREG;
            snprintf(out->text, sizeof out->text,
                     "refused: protocol \"%s\" binds filter \"%s\" (%s:%d), which no loaded plugin provides", 
                     d.protocol->name, fwx__filter_ref_fmt(missing, g), fwx__policy_source(fw->policy), missing->line);
            return FWX_S_OK;
        }
        snprintf(out->text, sizeof out->text, "allowed by %s", why);
    } else {
        snprintf(out->text, sizeof out->text, "refused by %s", why);
    }
    return FWX_S_OK;
}

/* ---- plugin timing --------------------------------------------------------------------- */

fwx_result fwx_firewall_time_plugins(fwx_firewall *fw, int32_t enabled)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    /* Not while a plugin call runs: its start would be unset. */
    fw->time_plugins = enabled != 0 && fw->current_plugin == NULL;
    if (enabled != 0 && fw->current_plugin != NULL)
        return FWX_E_INVALIDARG;
    return FWX_S_OK;
}

void fwx__plugin_timed(fwx_firewall *fw, fwx__plugin *p)
{
    static const uint64_t bounds_us[] = FWX_PLUGIN_TIME_BOUNDS_US;
    _Static_assert(FWX__ARRAY_SIZE(bounds_us) + 1 == FWX_PLUGIN_TIME_BUCKETS, "one bucket more than bounds");
    uint64_t ns = uv_hrtime() - fw->plugin_call_start;
    size_t i = 0;
    while (i < FWX__ARRAY_SIZE(bounds_us) && ns > bounds_us[i] * 1000)
        i++;
    p->time_buckets[i]++;
    p->time_calls++;
    p->time_ns += ns;
}

fwx_result fwx_firewall_plugin_timings(fwx_firewall *fw, fwx_plugin_timing_cb cb, void *arg)
{
    if (fw == NULL || cb == NULL)
        return FWX_E_POINTER;
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next) {
        fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
        if (p->unloaded)
            continue;
        fwx_plugin_timing t;
        memset(&t, 0, sizeof t);
        t.struct_size = sizeof t;
        t.name = p->name;
        t.calls = p->time_calls;
        t.total_ns = p->time_ns;
        memcpy(t.buckets, p->time_buckets, sizeof t.buckets);
        cb(arg, &t);
    }
    return FWX_S_OK;
}
