/*
 * fwx - policy decisions: networks, relationships, protocol definitions and access rules,
 * answered from the indexes built at load time.
 * SPDX-License-Identifier: MIT
 */
#include "policy/policy_impl.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- lookups ----------------------------------------------------------------------------- */

/* Requests should carry canonical addresses; a v4-mapped one would otherwise miss every IPv4
   range, so it is canonicalized here too. */
static const struct sockaddr *canon(const struct sockaddr *sa, struct sockaddr_storage *tmp)
{
    if (sa == NULL || !fwx__sa_canon(sa, fwx__sa_len(sa), tmp))
        return NULL;
    return (const struct sockaddr *)tmp;
}

static uint32_t network_index_of(const fwx_policy *p, const struct sockaddr *addr)
{
    fwx__u128 key;
    uint32_t owner;
    if (!fwx__u128_from_sa(addr, &key))
        return FWX__NET_EXTERNAL;
    const fwx__imap *m = addr->sa_family == AF_INET ? &p->net_v4 : &p->net_v6;
    if (fwx__imap_find(m, key, &owner))
        return owner;
    return FWX__NET_EXTERNAL;
}

const fwx__network *fwx__policy_network_of(const fwx_policy *p, const struct sockaddr *addr)
{
    struct sockaddr_storage tmp;
    return &p->networks[network_index_of(p, canon(addr, &tmp))];
}

const char *fwx__network_name(const fwx__network *n)
{
    return n != NULL ? n->name : NULL;
}

static int cmp_guid_ent(const void *key, const void *elem)
{
    const fwx__guid_ent *e = elem;
    return memcmp(key, e->guid.bytes, sizeof e->guid.bytes);
}

const fwx__protocol *fwx__policy_protocol_by_guid(const fwx_policy *p, const fwx_guid *guid)
{
    if (p == NULL || guid == NULL || p->n_protocols == 0)
        return NULL;
    const fwx__guid_ent *e = bsearch(guid->bytes, p->by_guid, p->n_protocols, sizeof *p->by_guid, cmp_guid_ent);
    return e != NULL ? &p->protocols[e->index] : NULL;
}

static const fwx__imap *port_map(const fwx_policy *p, int32_t ip_protocol, fwx__direction direction)
{
    int pi = ip_protocol == FWX_PROTOCOL_TCP ? 0 : ip_protocol == FWX_PROTOCOL_UDP ? 1 : -1;
    int di = direction == FWX__DIR_INBOUND ? 1 : direction == FWX__DIR_OUTBOUND ? 0 : -1;
    if (pi < 0 || di < 0)
        return NULL;
    return &p->proto_ports[pi][di];
}

const fwx__protocol *fwx__policy_protocol_by_port(const fwx_policy *p, int32_t ip_protocol, uint16_t port,
                                                  fwx__direction direction)
{
    if (p == NULL)
        return NULL;
    const fwx__imap *m = port_map(p, ip_protocol, direction);
    uint32_t owner;
    fwx__u128 key = { 0, port };
    if (m == NULL || !fwx__imap_find(m, key, &owner))
        return NULL;
    return &p->protocols[owner];
}

bool fwx__protocol_has_filter(const fwx__protocol *proto, const fwx_guid *filter, const char *name)
{
    if (proto == NULL)
        return false;
    for (size_t i = 0; i < proto->n_filters; i++) {
        const fwx__filter_ref *f = &proto->filters[i];
        if (f->name != NULL ? name != NULL && strcmp(f->name, name) == 0
                            : filter != NULL && fwx_guid_equal(&f->guid, filter))
            return true;
    }
    return false;
}

const char *fwx__filter_ref_fmt(const fwx__filter_ref *f, char *buf)
{
    if (f->name != NULL)
        return f->name;
    return fwx_guid_format(&f->guid, buf);
}

size_t fwx__policy_protocol_index(const fwx_policy *p, const fwx__protocol *proto)
{
    return (size_t)(proto - p->protocols);
}

size_t fwx__policy_protocol_count(const fwx_policy *p)
{
    return p != NULL ? p->n_protocols : 0;
}

const fwx__protocol *fwx__policy_protocol_at(const fwx_policy *p, size_t i)
{
    return p != NULL && i < p->n_protocols ? &p->protocols[i] : NULL;
}

size_t fwx__policy_publish_count(const fwx_policy *p)
{
    return p != NULL ? p->n_publish : 0;
}

const fwx__publish_rule *fwx__policy_publish_at(const fwx_policy *p, size_t i)
{
    if (p == NULL || i >= p->n_publish)
        return NULL;
    return &p->publish[i];
}

const fwx__publish_rule *fwx__policy_publish_find(const fwx_policy *p, const struct sockaddr *listen,
                                                  const struct sockaddr *server)
{
    const fwx__publish_rule *by_server = NULL;
    for (size_t i = 0; p != NULL && server != NULL && i < p->n_publish; i++) {
        const fwx__publish_rule *r = &p->publish[i];
        if (!fwx__sa_same_endpoint((const struct sockaddr *)&r->server, server))
            continue;
        if (listen != NULL && fwx__sa_same_endpoint((const struct sockaddr *)&r->listen, listen))
            return r;
        if (by_server == NULL)
            by_server = r;
    }
    return by_server;
}

static int cmp_relation_key(const void *key, const void *elem)
{
    const fwx__relation *k = key, *e = elem;
    if (k->from != e->from)
        return k->from < e->from ? -1 : 1;
    if (k->to != e->to)
        return k->to < e->to ? -1 : 1;
    return 0;
}

static fwx__relationship relationship(const fwx_policy *p, uint32_t from, uint32_t to)
{
    if (from == to)
        return FWX__REL_ROUTE;
    fwx__relation key = { from, to, FWX__REL_NONE };
    const fwx__relation *r = NULL;
    if (p->n_relations > 0)
        r = bsearch(&key, p->relations, p->n_relations, sizeof *p->relations, cmp_relation_key);
    if (r != NULL)
        return r->type;
    /* The gateway itself reaches and is reached by every network (ISA's implicit route). */
    if (from == FWX__NET_LOCALHOST || to == FWX__NET_LOCALHOST)
        return FWX__REL_ROUTE;
    return FWX__REL_NONE;
}

/* ---- domain sets ----------------------------------------------------------------------- */

static int cmp_str_key(const void *key, const void *elem)
{
    return strcmp(key, *(char *const *)elem);
}

/* DNS names are 253 characters at most; anything longer cannot be in a set. */
#define FWX__HOST_MAX 254

bool fwx__domain_set_match(const fwx__domain_set *d, const char *host_name)
{
    char name[FWX__HOST_MAX + 1];
    size_t n = 0;
    if (host_name == NULL)
        return false;
    for (; host_name[n] != '\0'; n++) {
        if (n >= FWX__HOST_MAX)
            return false;
        name[n] = (char)tolower((unsigned char)host_name[n]);
    }
    /* "example.com." is the same name written fully qualified. */
    if (n > 0 && name[n - 1] == '.')
        n--;
    name[n] = '\0';
    if (n == 0)
        return false;
    if (d->n_exact > 0 && bsearch(name, d->exact, d->n_exact, sizeof *d->exact, cmp_str_key) != NULL)
        return true;
    if (d->n_suffix == 0)
        return false;
    for (size_t i = 1; i < n; i++)
        if (name[i] == '.' && bsearch(name + i, d->suffix, d->n_suffix, sizeof *d->suffix, cmp_str_key) != NULL)
            return true;
    return false;
}

/* ---- rule matching --------------------------------------------------------------------- */

static bool idx_has(const fwx__idx_list *l, uint32_t v)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid] == v)
            return true;
        if (l->v[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool addr_set_has(const fwx__addr_set *s, const struct sockaddr *addr)
{
    fwx__u128 key;
    if (!fwx__u128_from_sa(addr, &key))
        return false;
    return fwx__imap_find(addr->sa_family == AF_INET ? &s->v4 : &s->v6, key, NULL);
}

/* What one request looks like to the rules, worked out once. */
typedef struct match_ctx {
    const fwx_policy *p;
    uint32_t src_net, dst_net;
    const struct sockaddr *src, *dst;
    uint32_t proto; /* FWX__NO_PROTOCOL when none */
    const char *host_name;
    const char *user;
} match_ctx;

static bool match_source(const match_ctx *c, const fwx__rule *r)
{
    if (idx_has(&r->from_nets, c->src_net))
        return true;
    for (size_t i = 0; i < r->from_sets.n; i++)
        if (addr_set_has(&c->p->addr_sets[r->from_sets.v[i]], c->src))
            return true;
    return false;
}

static bool match_destination(const match_ctx *c, const fwx__rule *r)
{
    if (idx_has(&r->to_nets, c->dst_net))
        return true;
    for (size_t i = 0; i < r->to_sets.n; i++)
        if (addr_set_has(&c->p->addr_sets[r->to_sets.v[i]], c->dst))
            return true;
    for (size_t i = 0; i < r->to_domains.n; i++)
        if (fwx__domain_set_match(&c->p->domain_sets[r->to_domains.v[i]], c->host_name))
            return true;
    return false;
}

static bool match_protocol(const match_ctx *c, const fwx__rule *r)
{
    if (r->all_protocols)
        return true;
    return c->proto != FWX__NO_PROTOCOL && idx_has(&r->protocols, c->proto);
}

static bool match_user(const match_ctx *c, const fwx__rule *r)
{
    if (r->users == NULL)
        return true;
    if (c->user == NULL)
        return false;
    for (size_t i = 0; i < r->n_users; i++)
        if (strcmp(r->users[i], c->user) == 0)
            return true;
    return false;
}

/* The candidates along one index: the key's own list merged with the "any" list, in rule
   order. Both lists are ascending, so the merge keeps file order. */
typedef struct cand_iter {
    const uint32_t *a, *b;
    size_t na, nb, ia, ib;
} cand_iter;

static cand_iter cand_along(const fwx__rule_index *ix, uint32_t key)
{
    cand_iter it = { NULL, ix->any.v, 0, ix->any.n, 0, 0 };
    if (key < ix->n_keys) {
        it.a = ix->idx + ix->off[key];
        it.na = ix->off[key + 1] - ix->off[key];
    }
    return it;
}

static size_t cand_len(const cand_iter *it)
{
    return it->na + it->nb;
}

static bool cand_next(cand_iter *it, uint32_t *out)
{
    bool ha = it->ia < it->na, hb = it->ib < it->nb;
    if (!ha && !hb)
        return false;
    if (ha && (!hb || it->a[it->ia] <= it->b[it->ib])) {
        *out = it->a[it->ia++];
        /* A rule can sit in both lists (from = [ "internal", "partners" ]): visit it once. */
        if (hb && it->b[it->ib] == *out)
            it->ib++;
    } else {
        *out = it->b[it->ib++];
    }
    return true;
}

static cand_iter shortest(cand_iter a, cand_iter b)
{
    return cand_len(&b) < cand_len(&a) ? b : a;
}

void fwx__policy_decide(const fwx_policy *p, const fwx__policy_request *req, fwx__policy_decision *out)
{
    struct sockaddr_storage src_tmp, dst_tmp;
    memset(out, 0, sizeof *out);
    out->result = FWX_E_PROTOCOL_RULES_DENIED;
    if (p == NULL || req == NULL)
        return;

    match_ctx c;
    c.p = p;
    c.src = canon(req->source, &src_tmp);
    c.dst = canon(req->destination, &dst_tmp);
    c.src_net = network_index_of(p, c.src);
    c.dst_net = network_index_of(p, c.dst);
    c.host_name = req->host_name;
    c.user = req->user;
    out->source_network = &p->networks[c.src_net];
    out->destination_network = &p->networks[c.dst_net];

    out->relationship = relationship(p, c.src_net, c.dst_net);
    if (out->relationship == FWX__REL_NONE && !req->published) {
        out->result = FWX_E_NETWORK_RULES_DENIED;
        return;
    }

    const fwx__protocol *proto = NULL;
    if (req->protocol_guid != NULL) {
        proto = fwx__policy_protocol_by_guid(p, req->protocol_guid);
    } else if (c.dst != NULL) {
        fwx__direction dir = req->direction == FWX__DIR_INBOUND ? FWX__DIR_INBOUND : FWX__DIR_OUTBOUND;
        proto = fwx__policy_protocol_by_port(p, req->ip_protocol, fwx__sa_port(c.dst), dir);
    }
    out->protocol = proto;
    c.proto = proto != NULL ? (uint32_t)(proto - p->protocols) : FWX__NO_PROTOCOL;

    /* Every matching rule is in each of the three candidate lists, so walking the shortest
       one in order finds the same first match as a scan of all rules would. */
    cand_iter by_proto = cand_along(&p->by_protocol, c.proto);
    cand_iter by_src = cand_along(&p->by_source, c.src_net);
    cand_iter by_dst = cand_along(&p->by_destination, c.dst_net);
    cand_iter it = shortest(shortest(by_proto, by_src), by_dst);
    uint32_t ri;
    /* Bounded by construction: each cand_next steps one of two finite index lists. */
    while (cand_next(&it, &ri)) {
        assert(ri < p->n_rules);
        const fwx__rule *r = &p->rules[ri];
        if (!match_protocol(&c, r) || !match_source(&c, r) || !match_destination(&c, r) || !match_user(&c, r))
            continue;
        out->rule_name = r->name;
        out->rule_line = r->line;
        if (r->allow)
            out->result = FWX_S_OK;
        else
            out->result = r->site ? FWX_E_SITE_AND_CONTENT_RULES_DENIED : FWX_E_PROTOCOL_RULES_DENIED;
        return;
    }

    /* Default deny. Since nothing matched, an allow rule that fits source, protocol and user
       failed on the destination only: the site is what is refused, not the protocol. */
    it = shortest(by_proto, by_src);
    while (cand_next(&it, &ri)) {
        assert(ri < p->n_rules);
        const fwx__rule *r = &p->rules[ri];
        if (r->allow && match_protocol(&c, r) && match_source(&c, r) && match_user(&c, r)) {
            out->result = FWX_E_SITE_AND_CONTENT_RULES_DENIED;
            return;
        }
    }
    out->result = FWX_E_PROTOCOL_RULES_DENIED;
}

static const char *relationship_name(fwx__relationship r)
{
    return r == FWX__REL_NAT ? "nat" : r == FWX__REL_ROUTE ? "route" : "no relationship";
}

void fwx__policy_decision_fmt(const fwx__policy_decision *d, const fwx__policy_request *req, char *buf,
                              size_t size)
{
    char who[160], proto[160];
    const char *from = d->source_network ? d->source_network->name : "?";
    const char *to = d->destination_network ? d->destination_network->name : "?";
    if (d->result == FWX_E_NETWORK_RULES_DENIED)
        snprintf(who, sizeof who, "the network relationships (none from \"%s\" to \"%s\")", from, to);
    else if (d->rule_name != NULL)
        snprintf(who, sizeof who, "rule \"%s\" (line %d)", d->rule_name, d->rule_line);
    else
        snprintf(who, sizeof who, "the default rule (no rule matched)");
    if (d->protocol != NULL) {
        snprintf(proto, sizeof proto, "protocol \"%s\"", d->protocol->name);
    } else if (req != NULL && req->protocol_guid != NULL) {
        char g[FWX_GUID_STRLEN];
        snprintf(proto, sizeof proto, "protocol %s (not in the policy)", fwx_guid_format(req->protocol_guid, g));
    } else if (req != NULL && req->destination != NULL) {
        snprintf(proto, sizeof proto, "no protocol (none defined for %s port %u %s)",
                 req->ip_protocol == FWX_PROTOCOL_UDP ? "udp" : "tcp", (unsigned)fwx__sa_port(req->destination),
                 req->direction == FWX__DIR_INBOUND ? "inbound" : "outbound");
    } else {
        snprintf(proto, sizeof proto, "no protocol");
    }
    snprintf(buf, size, "%s: %s; %s -> %s (%s), %s", who, fwx_strerror(d->result), from, to,
             relationship_name(d->relationship), proto);
}

/* ---- index building -------------------------------------------------------------------- */

static int append_idx(uint32_t **v, size_t *n, size_t *cap, uint32_t x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        uint32_t *nv = realloc(*v, nc * sizeof *nv);
        if (nv == NULL)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

/* Which keys of one index a rule belongs to; returns false when it belongs to "any". */
typedef bool (*keys_fn)(const fwx__rule *r, const fwx__idx_list **keys);

static bool protocol_keys(const fwx__rule *r, const fwx__idx_list **keys)
{
    *keys = &r->protocols;
    return !r->all_protocols;
}

static bool source_keys(const fwx__rule *r, const fwx__idx_list **keys)
{
    *keys = &r->from_nets;
    return r->from_sets.n == 0;
}

static bool destination_keys(const fwx__rule *r, const fwx__idx_list **keys)
{
    *keys = &r->to_nets;
    return r->to_sets.n == 0 && r->to_domains.n == 0;
}

/* Counting sort into compressed rows: rules are visited in order, so each row is ascending. */
static int build_one(const fwx_policy *p, size_t n_keys, keys_fn fn, fwx__rule_index *ix)
{
    size_t cap_any = 0;
    ix->n_keys = n_keys;
    ix->off = calloc(n_keys + 1, sizeof *ix->off);
    if (ix->off == NULL)
        return -1;
    size_t total = 0;
    for (size_t i = 0; i < p->n_rules; i++) {
        const fwx__idx_list *keys;
        if (!fn(&p->rules[i], &keys)) {
            if (append_idx(&ix->any.v, &ix->any.n, &cap_any, (uint32_t)i) != 0)
                return -1;
            continue;
        }
        for (size_t k = 0; k < keys->n; k++)
            ix->off[keys->v[k] + 1]++;
        total += keys->n;
    }
    if (total > UINT32_MAX)
        return -1;
    for (size_t k = 0; k < n_keys; k++)
        ix->off[k + 1] += ix->off[k];
    ix->idx = malloc((total ? total : 1) * sizeof *ix->idx);
    uint32_t *fill = malloc((n_keys ? n_keys : 1) * sizeof *fill);
    if (ix->idx == NULL || fill == NULL) {
        free(fill);
        return -1;
    }
    memcpy(fill, ix->off, n_keys * sizeof *fill);
    for (size_t i = 0; i < p->n_rules; i++) {
        const fwx__idx_list *keys;
        if (!fn(&p->rules[i], &keys))
            continue;
        for (size_t k = 0; k < keys->n; k++)
            ix->idx[fill[keys->v[k]]++] = (uint32_t)i;
    }
    free(fill);
    return 0;
}

int fwx__policy_build_index(fwx_policy *p)
{
    if (build_one(p, p->n_protocols, protocol_keys, &p->by_protocol) != 0 ||
        build_one(p, p->n_networks, source_keys, &p->by_source) != 0 ||
        build_one(p, p->n_networks, destination_keys, &p->by_destination) != 0)
        return -1;
    return 0;
}

/* ---- freeing --------------------------------------------------------------------------- */

static void free_index(fwx__rule_index *ix)
{
    free(ix->off);
    free(ix->idx);
    free(ix->any.v);
}

static void free_strings(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void fwx_policy_free(fwx_policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_networks; i++)
        free(p->networks[i].name);
    free(p->networks);
    fwx__imap_free(&p->net_v4);
    fwx__imap_free(&p->net_v6);
    free(p->relations);
    for (size_t i = 0; i < p->n_protocols; i++) {
        free(p->protocols[i].name);
        for (size_t k = 0; k < p->protocols[i].n_filters; k++)
            free(p->protocols[i].filters[k].name);
        free(p->protocols[i].filters);
    }
    free(p->protocols);
    free(p->by_guid);
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 2; j++)
            fwx__imap_free(&p->proto_ports[i][j]);
    for (size_t i = 0; i < p->n_addr_sets; i++) {
        free(p->addr_sets[i].name);
        fwx__imap_free(&p->addr_sets[i].v4);
        fwx__imap_free(&p->addr_sets[i].v6);
    }
    free(p->addr_sets);
    for (size_t i = 0; i < p->n_domain_sets; i++) {
        free(p->domain_sets[i].name);
        free_strings(p->domain_sets[i].exact, p->domain_sets[i].n_exact);
        free_strings(p->domain_sets[i].suffix, p->domain_sets[i].n_suffix);
    }
    free(p->domain_sets);
    for (size_t i = 0; i < p->n_rules; i++) {
        fwx__rule *r = &p->rules[i];
        free(r->name);
        free(r->from_nets.v);
        free(r->from_sets.v);
        free(r->to_nets.v);
        free(r->to_sets.v);
        free(r->to_domains.v);
        free(r->protocols.v);
        free_strings(r->users, r->n_users);
    }
    free(p->rules);
    free_index(&p->by_protocol);
    free_index(&p->by_source);
    free_index(&p->by_destination);
    for (size_t i = 0; i < p->n_publish; i++)
        free(p->publish[i].name);
    free(p->publish);
    free(p->source);
    free(p);
}

const char *fwx__policy_source(const fwx_policy *p) { return p != NULL && p->source != NULL ? p->source : "policy"; }
