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
 *              the core's decision): "ip saddr @G_s ip daddr @G_d meta l4proto . th dport @P_p
 *              accept|drop"; nothing matched: drop (the default)
 *   pol_nat    (postrouting) "ip saddr @N_a ip daddr @N_b masquerade" for each nat pair
 *
 * Address sets hold the policy's own flattened intervals (a network is every interval its
 * ranges own after "smallest range wins"; "external" also owns the gaps), so thousands of
 * ranges are set elements, not rules. Sets of the same content are shared between rules.
 * Rules for named users or domain sets cannot match a kernel flow (no user, no host name) and
 * are left out, as the core's policy decision does for a request without them.
 *
 * The policy is read through its public view (fwx/policy_view.h) only.
 *
 * Set names carry a generation (N<gen>_<i>_4), so a reload adds the new sets and deletes the
 * old ones in the same transaction without a name ever being reused inside it.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"
#include "backends/nft/rules.h"
#include <fwx/policy_view.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Addresses as 128-bit numbers (IPv4 in the low 32 bits), for interval arithmetic. */
typedef struct u128 {
    uint64_t hi, lo;
} u128;

static int u_cmp(u128 a, u128 b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    return a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0;
}

static u128 u_from(int fam, const uint8_t b[16])
{
    u128 x = {0, 0};
    if (fam == 4) {
        x.lo = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
        return x;
    }
    for (unsigned i = 0; i < 8; i++) {
        x.hi = x.hi << 8 | b[i];
        x.lo = x.lo << 8 | b[i + 8];
    }
    return x;
}

static int32_t af_of(int fam) { return fam == 4 ? AF_INET : AF_INET6; }

/* A sorted, duplicate-free list of indexes (a rule's networks, sets or protocols). */
typedef struct idx_list {
    const uint32_t *v;
    size_t n;
} idx_list;

typedef struct ivl {
    u128 lo, hi;
} ivl;

typedef struct ivls {
    ivl *v;
    size_t n, cap;
    bool oom;
} ivls;

static void iv_push(ivls *a, u128 lo, u128 hi)
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

static u128 u_inc(u128 x)
{
    x.lo++;
    if (x.lo == 0)
        x.hi++;
    return x;
}

static u128 u_dec(u128 x)
{
    if (x.lo == 0)
        x.hi--;
    x.lo--;
    return x;
}

static int iv_cmp(const void *a, const void *b)
{
    return u_cmp(((const ivl *)a)->lo, ((const ivl *)b)->lo);
}

/* Sorts and merges overlapping or adjacent intervals (nft refuses overlapping elements). */
static void iv_merge(ivls *a, u128 max)
{
    if (a->n < 2)
        return;
    qsort(a->v, a->n, sizeof *a->v, iv_cmp);
    size_t o = 0;
    for (size_t i = 1; i < a->n; i++) {
        ivl *last = &a->v[o];
        bool touches = u_cmp(last->hi, max) == 0 || u_cmp(a->v[i].lo, u_inc(last->hi)) <= 0;
        if (touches) {
            if (u_cmp(a->v[i].hi, last->hi) > 0)
                last->hi = a->v[i].hi;
        } else {
            a->v[++o] = a->v[i];
        }
    }
    a->n = o + 1;
}

static u128 fam_max(int fam)
{
    u128 m = {fam == 4 ? 0 : UINT64_MAX, fam == 4 ? 0xffffffffu : UINT64_MAX};
    return m;
}

/* The intervals network `net` owns in one family; "external" also owns every gap. */
static void net_intervals(const fwx_policy *p, int fam, uint32_t net, ivls *out)
{
    u128 max = fam_max(fam), next = {0, 0};
    bool done = false;
    fwx_policy_range r;
    for (size_t i = 0; !done && fwx_policy_network_range(p, af_of(fam), i, &r) == FWX_S_OK; i++) {
        u128 lo = u_from(fam, r.lo), hi = u_from(fam, r.hi);
        if (net == FWX_POLICY_NETWORK_EXTERNAL && u_cmp(lo, next) > 0)
            iv_push(out, next, u_dec(lo));
        if (r.owner == net)
            iv_push(out, lo, hi);
        if (u_cmp(hi, max) >= 0)
            done = true;
        else
            next = u_inc(hi);
    }
    if (net == FWX_POLICY_NETWORK_EXTERNAL && !done)
        iv_push(out, next, max);
}

static void addr_text(int fam, u128 x, char out[INET6_ADDRSTRLEN])
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
            if (u_cmp(iv->v[i].lo, iv->v[i].hi) == 0) {
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
static char *list_key(const idx_list *a, const idx_list *b)
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
static uint32_t addr_group(cc *c, const idx_list *nets, const idx_list *sets)
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
        fwx_policy_range r;
        for (size_t i = 0; i < sets->n; i++)
            for (size_t j = 0; fwx_policy_address_set_range(c->p, sets->v[i], af_of(fam), j, &r) == FWX_S_OK; j++)
                iv_push(&iv, u_from(fam, r.lo), u_from(fam, r.hi));
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
    static const int32_t ipp[2] = {FWX_PROTOCOL_TCP, FWX_PROTOCOL_UDP};
    fwx_policy_port_range r;
    for (int pi = 0; pi < 2; pi++)
        for (size_t i = 0; fwx_policy_port_range_get(c->p, ipp[pi], FWX_POLICY_OUTBOUND, i, &r) == FWX_S_OK; i++) {
            if (!want[r.protocol])
                continue;
            fprintf(c->f, "%s%d . %u-%u", *count ? ", " : "", l4[pi], (unsigned)r.lo, (unsigned)r.hi);
            (*count)++;
        }
}

/* The port set of a rule's protocols (skipping filter-bound ones for an allow rule): its id,
   or UINT32_MAX when no port is left. */
static uint32_t port_group(cc *c, const fwx_policy_rule_info *r, const bool *filter_bound)
{
    uint32_t np = fwx_policy_protocol_count(c->p);
    bool *want = calloc(np ? np : 1, sizeof *want);
    idx_list kept = {NULL, 0};
    uint32_t *v = calloc(r->n_protocols ? r->n_protocols : 1, sizeof *v);
    if (want == NULL || v == NULL) {
        free(want);
        free(v);
        c->oom = true;
        return UINT32_MAX;
    }
    for (size_t i = 0; i < r->n_protocols; i++) {
        uint32_t pi = r->protocols[i];
        if (pi >= np || (r->allow && filter_bound[pi]))
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
static void emit_rule(cc *c, const fwx_policy_rule_info *r, const bool *filter_bound)
{
    if (r->n_users > 0)
        return; /* a named user never matches a kernel flow */
    if (r->n_from_networks + r->n_from_sets == 0 || r->n_to_networks + r->n_to_sets == 0)
        return; /* a domain set alone never matches without a host name */
    uint32_t ports = UINT32_MAX;
    if (!r->all_protocols) {
        ports = port_group(c, r, filter_bound);
        if (ports == UINT32_MAX)
            return;
    }
    idx_list fn = {r->from_networks, r->n_from_networks}, fs = {r->from_sets, r->n_from_sets};
    idx_list tn = {r->to_networks, r->n_to_networks}, ts = {r->to_sets, r->n_to_sets};
    uint32_t s = addr_group(c, &fn, &fs);
    uint32_t d = addr_group(c, &tn, &ts);
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
    uint32_t np = fwx_policy_protocol_count(p);
    bool *filt = calloc(np ? np : 1, sizeof *filt), *bound = calloc(np ? np : 1, sizeof *bound);
    if (filt == NULL || bound == NULL) {
        free(filt);
        free(bound);
        return -1;
    }
    for (uint32_t i = 0; i < np; i++) {
        fwx_policy_protocol_info pr = {.struct_size = sizeof pr};
        if (fwx_policy_protocol_get(p, i, &pr) != FWX_S_OK)
            continue;
        bound[i] = pr.n_filters > 0;
        filt[i] = bound[i] || (icpt != NULL && icpt->udp && icpt->udp_hooked && pr.ip_protocol == FWX_PROTOCOL_UDP);
    }
    size_t count = 0;
    fwx_policy_port_range pr;
    static const int32_t ipps[2] = {FWX_PROTOCOL_TCP, FWX_PROTOCOL_UDP};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; fwx_policy_port_range_get(p, ipps[k], FWX_POLICY_OUTBOUND, i, &pr) == FWX_S_OK; i++)
            count += filt[pr.protocol];
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
    uint32_t nn = fwx_policy_network_count(p);
    out->n_nets = nn;
    for (uint32_t i = 0; i < nn; i++)
        for (int fam = 4; fam <= 6; fam += 2) {
            ivls iv = {0};
            if (i != FWX_POLICY_NETWORK_LOCALHOST)
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
    for (uint32_t i = 0; i < nn; i++)
        if (i != FWX_POLICY_NETWORK_LOCALHOST)
            emit_pair(&c, "pol_net", i, i, "goto pol_rules");
    fwx_policy_relation r;
    for (size_t i = 0; fwx_policy_relation_get(p, i, &r) == FWX_S_OK; i++) {
        if (r.from == r.to || r.from == FWX_POLICY_NETWORK_LOCALHOST || r.to == FWX_POLICY_NETWORK_LOCALHOST)
            continue;
        emit_pair(&c, "pol_net", r.from, r.to, "goto pol_rules");
        if (r.type == FWX_POLICY_RELATION_NAT)
            emit_pair(&c, "pol_nat", r.from, r.to, "masquerade");
    }
    uint32_t nr = fwx_policy_rule_count(p);
    for (uint32_t i = 0; i < nr; i++) {
        fwx_policy_rule_info ri = {.struct_size = sizeof ri};
        if (fwx_policy_rule_get(p, i, &ri) == FWX_S_OK)
            emit_rule(&c, &ri, bound);
    }
    free(bound);

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
                    "add rule inet %s intercept meta nfproto ipv6 meta l4proto %s fib daddr type != local"
                    " meta l4proto . th dport @I%u"
                    " redirect to :%u comment \"filter-bound: into fwx (IPv6)\"\n",
                    table, icpt->udp6 ? "{ tcp, udp }" : "tcp", gen, (unsigned)icpt->port6);
    }
    groups_free(&c.addr);
    groups_free(&c.ports);
    return c.oom ? -1 : 0;
}
