/*
 * fwx - the read-only policy view (include/fwx/policy_view.h): the loader's arrays handed out
 * one element at a time, in public structs, so that a backend compiling the policy never sees
 * the private layout (policy_impl.h).
 * SPDX-License-Identifier: MIT
 */
#include "policy/policy_impl.h"

#include <fwx/policy_view.h>
#include <string.h>
#include <sys/socket.h>

/* An interval key back to network-order bytes (IPv4 keeps its address in the low 32 bits). */
static void u128_bytes(int32_t family, fwx__u128 x, uint8_t out[16])
{
    memset(out, 0, 16);
    if (family == AF_INET) {
        for (unsigned i = 0; i < 4; i++)
            out[i] = (uint8_t)(x.lo >> (24 - 8 * i));
        return;
    }
    for (unsigned i = 0; i < 8; i++) {
        out[i] = (uint8_t)(x.hi >> (56 - 8 * i));
        out[i + 8] = (uint8_t)(x.lo >> (56 - 8 * i));
    }
}

static fwx_result range_at(const fwx__imap *m, int32_t family, size_t index, bool own, uint32_t owner,
                           fwx_policy_range *out)
{
    memset(out, 0, sizeof *out);
    if (index >= m->n)
        return FWX_S_FALSE;
    out->family = family;
    out->owner = own ? owner : m->v[index].owner;
    u128_bytes(family, m->v[index].lo, out->lo);
    u128_bytes(family, m->v[index].hi, out->hi);
    return FWX_S_OK;
}

uint32_t fwx_policy_network_count(const fwx_policy *p) { return p != NULL ? (uint32_t)p->n_networks : 0; }

const char *fwx_policy_network_name(const fwx_policy *p, uint32_t network)
{
    return p != NULL && network < p->n_networks ? p->networks[network].name : NULL;
}

fwx_result fwx_policy_network_range(const fwx_policy *p, int32_t family, size_t index, fwx_policy_range *out)
{
    if (p == NULL || out == NULL)
        return FWX_E_POINTER;
    if (family != AF_INET && family != AF_INET6)
        return FWX_E_INVALIDARG;
    return range_at(family == AF_INET ? &p->net_v4 : &p->net_v6, family, index, false, 0, out);
}

size_t fwx_policy_relation_count(const fwx_policy *p)
{
    size_t n = 0;
    for (size_t i = 0; p != NULL && i < p->n_relations; i++)
        n += p->relations[i].type != FWX__REL_NONE;
    return n;
}

fwx_result fwx_policy_relation_get(const fwx_policy *p, size_t index, fwx_policy_relation *out)
{
    if (p == NULL || out == NULL)
        return FWX_E_POINTER;
    memset(out, 0, sizeof *out);
    /* NONE entries are the loader's own (a rule that names no relationship): not listed. */
    for (size_t i = 0, k = 0; i < p->n_relations; i++) {
        const fwx__relation *r = &p->relations[i];
        if (r->type == FWX__REL_NONE)
            continue;
        if (k++ == index) {
            out->from = r->from;
            out->to = r->to;
            out->type = r->type == FWX__REL_NAT ? FWX_POLICY_RELATION_NAT : FWX_POLICY_RELATION_ROUTE;
            return FWX_S_OK;
        }
    }
    return FWX_S_FALSE;
}

uint32_t fwx_policy_address_set_count(const fwx_policy *p) { return p != NULL ? (uint32_t)p->n_addr_sets : 0; }

const char *fwx_policy_address_set_name(const fwx_policy *p, uint32_t set)
{
    return p != NULL && set < p->n_addr_sets ? p->addr_sets[set].name : NULL;
}

fwx_result fwx_policy_address_set_range(const fwx_policy *p, uint32_t set, int32_t family, size_t index,
                                        fwx_policy_range *out)
{
    if (p == NULL || out == NULL)
        return FWX_E_POINTER;
    if ((family != AF_INET && family != AF_INET6) || set >= p->n_addr_sets)
        return FWX_E_INVALIDARG;
    const fwx__addr_set *s = &p->addr_sets[set];
    return range_at(family == AF_INET ? &s->v4 : &s->v6, family, index, true, set, out);
}

uint32_t fwx_policy_protocol_count(const fwx_policy *p) { return p != NULL ? (uint32_t)p->n_protocols : 0; }

fwx_result fwx_policy_protocol_get(const fwx_policy *p, uint32_t protocol, fwx_policy_protocol_info *out)
{
    if (p == NULL || out == NULL)
        return FWX_E_POINTER;
    fwx_policy_protocol_info i = {.struct_size = sizeof i};
    fwx_result hr = FWX_S_FALSE; /* past the end: the caller's struct zeroed */
    if (protocol < p->n_protocols) {
        const fwx__protocol *pr = &p->protocols[protocol];
        i.name = pr->name;
        i.guid = pr->guid;
        i.ip_protocol = pr->ip_protocol;
        i.port_lo = pr->port_lo;
        i.port_hi = pr->port_hi;
        i.direction = pr->direction == FWX__DIR_INBOUND ? FWX_POLICY_INBOUND : FWX_POLICY_OUTBOUND;
        i.n_filters = (uint32_t)pr->n_filters;
        i.line = pr->line;
        hr = FWX_S_OK;
    }
    return FWX__STRUCT_OUT(out, i, FWX__FIRST_POLICY_PROTOCOL_INFO) ? hr : FWX_E_INVALIDARG;
}

fwx_result fwx_policy_protocol_find(const fwx_policy *p, const fwx_guid *guid, uint32_t *index)
{
    if (p == NULL || guid == NULL || index == NULL)
        return FWX_E_POINTER;
    const fwx__protocol *pr = fwx__policy_protocol_by_guid(p, guid);
    if (pr == NULL)
        return FWX_E_NOT_FOUND;
    *index = (uint32_t)(pr - p->protocols);
    return FWX_S_OK;
}

fwx_result fwx_policy_port_range_get(const fwx_policy *p, int32_t ip_protocol, fwx_policy_direction direction,
                                     size_t index, fwx_policy_port_range *out)
{
    if (p == NULL || out == NULL)
        return FWX_E_POINTER;
    memset(out, 0, sizeof *out);
    int pi = ip_protocol == FWX_PROTOCOL_TCP ? 0 : ip_protocol == FWX_PROTOCOL_UDP ? 1 : -1;
    int di = direction == FWX_POLICY_OUTBOUND ? 0 : direction == FWX_POLICY_INBOUND ? 1 : -1;
    if (pi < 0 || di < 0)
        return FWX_E_INVALIDARG;
    const fwx__imap *m = &p->proto_ports[pi][di];
    if (index >= m->n)
        return FWX_S_FALSE;
    out->protocol = m->v[index].owner;
    out->lo = (uint16_t)m->v[index].lo.lo;
    out->hi = (uint16_t)m->v[index].hi.lo;
    return FWX_S_OK;
}

uint32_t fwx_policy_rule_count(const fwx_policy *p) { return p != NULL ? (uint32_t)p->n_rules : 0; }

fwx_result fwx_policy_rule_get(const fwx_policy *p, uint32_t rule, fwx_policy_rule_info *out)
{
    if (p == NULL || out == NULL)
        return FWX_E_POINTER;
    fwx_policy_rule_info i = {.struct_size = sizeof i};
    if (rule >= p->n_rules) /* past the end: the caller's struct zeroed */
        return FWX__STRUCT_OUT(out, i, FWX__FIRST_POLICY_RULE_INFO) ? FWX_S_FALSE : FWX_E_INVALIDARG;
    const fwx__rule *r = &p->rules[rule];
    i.name = r->name;
    i.line = r->line;
    i.allow = r->allow;
    i.all_protocols = r->all_protocols;
    i.n_users = r->users != NULL ? (uint32_t)(r->n_users > 0 ? r->n_users : 1) : 0;
    i.from_networks = r->from_nets.v;
    i.n_from_networks = (uint32_t)r->from_nets.n;
    i.from_sets = r->from_sets.v;
    i.n_from_sets = (uint32_t)r->from_sets.n;
    i.to_networks = r->to_nets.v;
    i.n_to_networks = (uint32_t)r->to_nets.n;
    i.to_sets = r->to_sets.v;
    i.n_to_sets = (uint32_t)r->to_sets.n;
    i.n_to_domains = (uint32_t)r->to_domains.n;
    i.protocols = r->all_protocols ? NULL : r->protocols.v;
    i.n_protocols = r->all_protocols ? 0 : (uint32_t)r->protocols.n;
    return FWX__STRUCT_OUT(out, i, FWX__FIRST_POLICY_RULE_INFO) ? FWX_S_OK : FWX_E_INVALIDARG;
}
