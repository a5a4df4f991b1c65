/*
 * fwx - the "nft" backend's policy compiler: the policy's networks, relationships and access
 * rules as nftables sets and rules in the regular chains "pol_net", "pol_rules" and "pol_nat"
 * (rules.h), replaced in one batch whenever the policy changes.
 *
  *   pol_net    (forward, new connections)  filter-bound ports: drop (user mode carries them,
 *              through interception); then one rule per pair of related networks:
 *              "ip saddr @N_a ip daddr @N_b goto pol_rules"; no pair: back to the base
 *              chain's policy drop (FWX_E_NETWORK_RULES_DENIED)
 *   pol_rules  one rule per access rule and family, in file order (first match wins, as in
 *              fwx__policy_decide): "ip saddr @G_s ip daddr @G_d meta l4proto . th dport @P_p
 *              accept|drop"; nothing matched: drop (the default)
 *   pol_nat    (postrouting) "ip saddr @N_a ip daddr @N_b masquerade" for each nat pair
 *
 * Address sets hold the policy's own flattened intervals (a network is every interval its
 * ranges own after "smallest range wins"; "external" also owns the gaps), so thousands of
 * ranges are set elements, not rules. Sets of the same content are shared between rules.
 * Rules for named users or domain sets cannot match a kernel flow (no user, no host name) and
 * are left out, as fwx__policy_decide does for a request without them.
 *
 * Set names carry a generation (N<gen>_<i>_4), so a reload adds the new sets and deletes the
 * old ones in the same transaction without a name ever being reused inside it.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"
#include "backends/nft/rules.h"
#include "policy/policy_impl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ivl {
    fwx__u128 lo, hi;
} ivl;

typedef struct ivls {
    ivl *v;
    size_t n, cap;
    bool oom;
} ivls;

static void iv_push(ivls *a, fwx__u128 lo, fwx__u128 hi)
{
    if (a->oom)
        return;
    if (a->n == a->cap) {
        size_t c = a->cap ? a->cap * 2 : 16;
        ivl *p = realloc(a->v, c * sizeof *p);
        if (p == NULL) {
            a->oom = true;
            return;
        }
        a->v = p;
        a->cap = c;
    }
    a->v[a->n].lo = lo;
    a->v[a->n].hi = hi;
    a->n++;
}

static fwx__u128 u_inc(fwx__u128 x)
{
    x.lo++;
    if (x.lo == 0)
        x.hi++;
    return x;
}

static fwx__u128 u_dec(fwx__u128 x)
{
    if (x.lo == 0)
        x.hi--;
    x.lo--;
    return x;
}

static int iv_cmp(const void *a, const void *b)
{
    return fwx__u128_cmp(((const ivl *)a)->lo, ((const ivl *)b)->lo);
}

/* Sorts and merges overlapping or adjacent intervals (nft refuses overlapping elements). */
static void iv_merge(ivls *a, fwx__u128 max)
{
    if (a->n < 2)
        return;
    qsort(a->v, a->n, sizeof *a->v, iv_cmp);
    size_t o = 0;
    for (size_t i = 1; i < a->n; i++) {
        ivl *last = &a->v[o];
        bool touches = fwx__u128_cmp(last->hi, max) == 0 || fwx__u128_cmp(a->v[i].lo, u_inc(last->hi)) <= 0;
        if (touches) {
            if (fwx__u128_cmp(a->v[i].hi, last->hi) > 0)
                last->hi = a->v[i].hi;
        } else {
            a->v[++o] = a->v[i];
        }
    }
    a->n = o + 1;
}

static fwx__u128 fam_max(int fam)
{
    fwx__u128 m = {fam == 4 ? 0 : UINT64_MAX, fam == 4 ? 0xffffffffu : UINT64_MAX};
    return m;
}

/* The intervals network `net` owns in one family; "external" also owns every gap. */
static void net_intervals(const fwx_policy *p, int fam, uint32_t net, ivls *out)
{
    const fwx__imap *m = fam == 4 ? &p->net_v4 : &p->net_v6;
    fwx__u128 max = fam_max(fam), next = {0, 0};
    bool done = false;
    for (size_t i = 0; i < m->n && !done; i++) {
        const fwx__interval *v = &m->v[i];
        if (net == FWX__NET_EXTERNAL && fwx__u128_cmp(v->lo, next) > 0)
            iv_push(out, next, u_dec(v->lo));
        if (v->owner == net)
            iv_push(out, v->lo, v->hi);
        if (fwx__u128_cmp(v->hi, max) >= 0)
            done = true;
        else
            next = u_inc(v->hi);
    }
    if (net == FWX__NET_EXTERNAL && !done)
        iv_push(out, next, max);
}

static void addr_text(int fam, fwx__u128 x, char out[INET6_ADDRSTRLEN])
{
    if (fam == 4) {
        struct in_addr a;
        a.s_addr = htonl((uint32_t)x.lo);
        inet_ntop(AF_INET, &a, out, INET6_ADDRSTRLEN);
    } else {
        struct in6_addr a;
        for (unsigned i = 0; i < 8; i++) {
            a.s6_addr[i] = (uint8_t)(x.hi >> (56 - 8 * i));
            a.s6_addr[i + 8] = (uint8_t)(x.lo >> (56 - 8 * i));
        }
        inet_ntop(AF_INET6, &a, out, INET6_ADDRSTRLEN);
    }
}

/* "add set inet T NAME { type ...; flags interval; elements = { ... }; }" */
static void emit_addr_set(FILE *f, const char *table, const char *name, int fam, ivls *iv)
{
    iv_merge(iv, fam_max(fam));
    fprintf(f, "add set inet %s %s { type %s; flags interval;", table, name, fam == 4 ? "ipv4_addr" : "ipv6_addr");
    if (iv->n > 0) {
        fprintf(f, " elements = { ");
        for (size_t i = 0; i < iv->n; i++) {
            char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
            addr_text(fam, iv->v[i].lo, a);
            if (fwx__u128_cmp(iv->v[i].lo, iv->v[i].hi) == 0) {
                fprintf(f, "%s%s", i ? ", " : "", a);
            } else {
                addr_text(fam, iv->v[i].hi, b);
                fprintf(f, "%s%s-%s", i ? ", " : "", a, b);
            }
        }
        fprintf(f, " };");
    }
    fprintf(f, " }\n");
}

/* ---- shared sets ---------------------------------------------------------------------------- */

typedef struct group {
    char *key;
    uint32_t id;
} group;

typedef struct groups {
    group *v;
    size_t n, cap;
} groups;

/* The id of the set with this content key, or UINT32_MAX when it is new (then *added set). */
static uint32_t group_find(groups *g, const char *key)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->v[i].key, key) == 0)
            return g->v[i].id;
    return UINT32_MAX;
}

static int group_add(groups *g, const char *key, uint32_t id)
{
    if (g->n == g->cap) {
        size_t c = g->cap ? g->cap * 2 : 16;
        group *p = realloc(g->v, c * sizeof *p);
        if (p == NULL)
            return -1;
        g->v = p;
        g->cap = c;
    }
    if ((g->v[g->n].key = strdup(key)) == NULL)
        return -1;
    g->v[g->n++].id = id;
    return 0;
}

static void groups_free(groups *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->v[i].key);
    free(g->v);
}

/* A content key for an index list pair: "n0,2;s1". Caller frees. */
static char *list_key(const fwx__idx_list *a, const fwx__idx_list *b)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    if (f == NULL)
        return NULL;
    fputc('n', f);
    for (size_t i = 0; i < a->n; i++)
        fprintf(f, "%s%u", i ? "," : "", a->v[i]);
    if (b != NULL) {
        fputs(";s", f);
        for (size_t i = 0; i < b->n; i++)
            fprintf(f, "%s%u", i ? "," : "", b->v[i]);
    }
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

typedef struct cc {
    const fwx_policy *p;
    const char *table;
    unsigned gen;
    FILE *f;
    groups addr, ports;
    fwx__nft_compiled *out;
    bool oom;
} cc;

/* The address group set (both families) of networks + address sets; its id. */
static uint32_t addr_group(cc *c, const fwx__idx_list *nets, const fwx__idx_list *sets)
{
    char *key = list_key(nets, sets);
    if (key == NULL) {
        c->oom = true;
        return 0;
    }
    uint32_t id = group_find(&c->addr, key);
    if (id != UINT32_MAX) {
        free(key);
        return id;
    }
    id = (uint32_t)c->addr.n;
    if (group_add(&c->addr, key, id) != 0)
        c->oom = true;
    free(key);
    for (int fam = 4; fam <= 6; fam += 2) {
        ivls iv = {0};
        for (size_t i = 0; i < nets->n; i++)
            net_intervals(c->p, fam, nets->v[i], &iv);
        for (size_t i = 0; i < sets->n; i++) {
            const fwx__imap *m = fam == 4 ? &c->p->addr_sets[sets->v[i]].v4 : &c->p->addr_sets[sets->v[i]].v6;
            for (size_t j = 0; j < m->n; j++)
                iv_push(&iv, m->v[j].lo, m->v[j].hi);
        }
        char name[48];
        snprintf(name, sizeof name, "G%u_%u_%d", c->gen, id, fam);
        if (iv.oom)
            c->oom = true;
        emit_addr_set(c->f, c->table, name, fam, &iv);
        free(iv.v);
    }
    c->out->n_groups = (uint32_t)c->addr.n;
    return id;
}

/* The intervals of the outbound port maps owned by protocols with want[owner] set. */
static void emit_port_elems(cc *c, const bool *want, size_t *count)
{
    static const int l4[2] = {6, 17};
    for (int pi = 0; pi < 2; pi++) {
        const fwx__imap *m = &c->p->proto_ports[pi][0];
        for (size_t i = 0; i < m->n; i++) {
            if (!want[m->v[i].owner])
                continue;
            unsigned lo = (unsigned)m->v[i].lo.lo, hi = (unsigned)m->v[i].hi.lo;
            fprintf(c->f, "%s%d . %u-%u", *count ? ", " : "", l4[pi], lo, hi);
            (*count)++;
        }
    }
}

/* The port set of a rule's protocols (skipping filter-bound ones for an allow rule): its id,
   or UINT32_MAX when no port is left. */
static uint32_t port_group(cc *c, const fwx__rule *r)
{
    const fwx_policy *p = c->p;
    bool *want = calloc(p->n_protocols ? p->n_protocols : 1, sizeof *want);
    fwx__idx_list kept = {NULL, 0};
    uint32_t *v = calloc(r->protocols.n ? r->protocols.n : 1, sizeof *v);
    if (want == NULL || v == NULL) {
        free(want);
        free(v);
        c->oom = true;
        return UINT32_MAX;
    }
    for (size_t i = 0; i < r->protocols.n; i++) {
        uint32_t pi = r->protocols.v[i];
        if (pi >= p->n_protocols || (r->allow && p->protocols[pi].n_filters > 0))
            continue;
        want[pi] = true;
        v[kept.n++] = pi;
    }
    kept.v = v;
    uint32_t id = UINT32_MAX;
    if (kept.n > 0) {
        char *key = list_key(&kept, NULL);
        if (key == NULL) {
            c->oom = true;
        } else if ((id = group_find(&c->ports, key)) == UINT32_MAX) {
            id = (uint32_t)c->ports.n;
            if (group_add(&c->ports, key, id) != 0)
                c->oom = true;
            fprintf(c->f, "add set inet %s P%u_%u { type inet_proto . inet_service; flags interval;", c->table, c->gen,
                    id);
            size_t count = 0;
            fprintf(c->f, " elements = { ");
            emit_port_elems(c, want, &count);
            if (count == 0)
                fprintf(c->f, "0 . 0"); /* protocols without a port of their own: never matches TCP/UDP */
            fprintf(c->f, " }; }\n");
            c->out->n_ports = (uint32_t)c->ports.n;
        }
        free(key);
    }
    free(want);
    free(v);
    return id;
}

/* One access rule, both families. */
static void emit_rule(cc *c, const fwx__rule *r)
{
    if (r->users != NULL)
        return; /* a named user never matches a kernel flow */
    if (r->from_nets.n + r->from_sets.n == 0 || r->to_nets.n + r->to_sets.n == 0)
        return; /* a domain set alone never matches without a host name */
    uint32_t ports = UINT32_MAX;
    if (!r->all_protocols) {
        ports = port_group(c, r);
        if (ports == UINT32_MAX)
            return;
    }
    uint32_t s = addr_group(c, &r->from_nets, &r->from_sets);
    uint32_t d = addr_group(c, &r->to_nets, &r->to_sets);
    for (int fam = 4; fam <= 6; fam += 2) {
        const char *kw = fam == 4 ? "ip" : "ip6";
        fprintf(c->f, "add rule inet %s pol_rules %s saddr @G%u_%u_%d %s daddr @G%u_%u_%d", c->table, kw, c->gen, s,
                fam, kw, c->gen, d, fam);
        if (ports != UINT32_MAX)
            fprintf(c->f, " meta l4proto . th dport @P%u_%u", c->gen, ports);
        /* accepted flows are marked: conntrack reports them to the core (kernel-mode primaries) */
        fprintf(c->f, " %s comment \"line %d\"\n", r->allow ? FWX_NFT_CT_POLICY_ACCEPT : "drop", r->line);
    }
}

/* The pair rule for networks a -> b in chain `chain`, both families. */
static void emit_pair(cc *c, const char *chain, uint32_t a, uint32_t b, const char *verdict)
{
    for (int fam = 4; fam <= 6; fam += 2) {
        const char *kw = fam == 4 ? "ip" : "ip6";
        fprintf(c->f, "add rule inet %s %s %s saddr @N%u_%u_%d %s daddr @N%u_%u_%d %s\n", c->table, chain, kw, c->gen, a,
                fam, kw, c->gen, b, fam, verdict);
    }
}

void fwx__nft_uncompile(FILE *f, const char *table, const fwx__nft_compiled *old)
{
    fprintf(f, "flush chain inet %s pol_net\nflush chain inet %s pol_rules\nflush chain inet %s pol_nat\n", table,
            table, table);
    fprintf(f, "flush chain inet %s intercept\n", table);
    if (!old->present)
        return;
    for (int fam = 4; fam <= 6; fam += 2) {
        for (uint32_t i = 0; i < old->n_nets; i++)
            fprintf(f, "delete set inet %s N%u_%u_%d\n", table, old->gen, i, fam);
        for (uint32_t i = 0; i < old->n_groups; i++)
            fprintf(f, "delete set inet %s G%u_%u_%d\n", table, old->gen, i, fam);
    }
    for (uint32_t i = 0; i < old->n_ports; i++)
        fprintf(f, "delete set inet %s P%u_%u\n", table, old->gen, i);
    fprintf(f, "delete set inet %s I%u\n", table, old->gen);
}

int fwx__nft_compile(FILE *f, const char *table, const fwx_policy *p, unsigned gen,
                     const fwx__nft_intercept *icpt, fwx__nft_compiled *out)
{
    memset(out, 0, sizeof *out);
    out->gen = gen;
    out->present = true;
    cc c = {p, table, gen, f, {0}, {0}, out, false};

    /* Ports of filter-bound protocols: never forwarded by the kernel. */
    bool *filt = calloc(p->n_protocols ? p->n_protocols : 1, sizeof *filt);
    if (filt == NULL)
        return -1;
    for (size_t i = 0; i < p->n_protocols; i++)
        filt[i] = p->protocols[i].n_filters > 0 ||
                  (icpt != NULL && icpt->udp && icpt->udp_hooked && p->protocols[i].ip_protocol == FWX_PROTOCOL_UDP);
    size_t count = 0;
    for (int pi = 0; pi < 2; pi++)
        for (size_t i = 0; i < p->proto_ports[pi][0].n; i++)
            count += filt[p->proto_ports[pi][0].v[i].owner];
    fprintf(f, "add set inet %s I%u { type inet_proto . inet_service; flags interval;", table, gen);
    if (count > 0) {
        size_t n = 0;
        fprintf(f, " elements = { ");
        emit_port_elems(&c, filt, &n);
        fprintf(f, " };");
    }
    fprintf(f, " }\n");
    out->n_intercept = (uint32_t)count;
    free(filt);

    /* One address set per network and family. */
    out->n_nets = (uint32_t)p->n_networks;
    for (uint32_t i = 0; i < p->n_networks; i++)
        for (int fam = 4; fam <= 6; fam += 2) {
            ivls iv = {0};
            if (i != FWX__NET_LOCALHOST)
                net_intervals(p, fam, i, &iv);
            char name[48];
            snprintf(name, sizeof name, "N%u_%u_%d", gen, i, fam);
            if (iv.oom)
                c.oom = true;
            emit_addr_set(f, table, name, fam, &iv);
            free(iv.v);
        }

    /* policy: filter-bound ports first, then the relationships. */
    if (count > 0)
        fprintf(f, "add rule inet %s pol_net meta l4proto . th dport @I%u drop comment \"filter-bound: user mode\"\n",
                table, gen);
    for (uint32_t i = 0; i < p->n_networks; i++)
        if (i != FWX__NET_LOCALHOST)
            emit_pair(&c, "pol_net", i, i, "goto pol_rules");
    for (size_t i = 0; i < p->n_relations; i++) {
        const fwx__relation *r = &p->relations[i];
        if (r->from == r->to || r->type == FWX__REL_NONE || r->from == FWX__NET_LOCALHOST ||
            r->to == FWX__NET_LOCALHOST)
            continue;
        emit_pair(&c, "pol_net", r->from, r->to, "goto pol_rules");
        if (r->type == FWX__REL_NAT)
            emit_pair(&c, "pol_nat", r->from, r->to, "masquerade");
    }
    for (size_t i = 0; i < p->n_rules; i++)
        emit_rule(&c, &p->rules[i]);

    /* Interception of filter-bound ports into the user-mode data path. */
    if (count > 0 && icpt != NULL && icpt->port != 0) {
        fprintf(f, "add rule inet %s intercept meta mark and %#x == %#x return comment \"fwx's own sockets\"\n", table,
                icpt->own_mark, icpt->own_mark);
        fprintf(f,
                "add rule inet %s intercept meta nfproto ipv4 meta l4proto %s fib daddr type != local"
                " meta l4proto . th dport @I%u"
                " redirect to :%u comment \"filter-bound: into fwx\"\n",
                table, icpt->udp ? "{ tcp, udp }" : "tcp", gen, (unsigned)icpt->port);
        if (icpt->port6 != 0)
            fprintf(f,
                    "add rule inet %s intercept meta nfproto ipv6 meta l4proto tcp fib daddr type != local"
                    " meta l4proto . th dport @I%u"
                    " redirect to :%u comment \"filter-bound: into fwx (IPv6)\"\n",
                    table, gen, (unsigned)icpt->port6);
    }
    groups_free(&c.addr);
    groups_free(&c.ports);
    return c.oom ? -1 : 0;
}
