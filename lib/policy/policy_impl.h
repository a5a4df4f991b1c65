/*
 * fwx - the policy engine's private layout: shared by the loader (policy_load.c), the
 * decision code (policy.c) and the interval maps (ranges.c). Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_POLICY_IMPL_H
#define FWX_POLICY_IMPL_H

#include "policy/policy.h"

/* ---- 128-bit keys and interval maps ---------------------------------------------------- */

/* One key type for IPv4 (in lo), IPv6 and ports: a struct rather than __int128, which
   32-bit targets lack. */
typedef struct fwx__u128 {
    uint64_t hi, lo;
} fwx__u128;

int fwx__u128_cmp(fwx__u128 a, fwx__u128 b);
/* The address of sa as a key; AF_INET uses the low 32 bits. False for other families. */
bool fwx__u128_from_sa(const struct sockaddr *sa, fwx__u128 *out);

/* One input range: owner is what it maps to, order breaks ties between equal sizes (lower
   wins). */
typedef struct fwx__range_item {
    fwx__u128 lo, hi;
    uint32_t owner;
    uint32_t order;
} fwx__range_item;

typedef struct fwx__interval {
    fwx__u128 lo, hi;
    uint32_t owner;
} fwx__interval;

/* Sorted, non-overlapping intervals: a lookup is one binary search. */
typedef struct fwx__imap {
    fwx__interval *v;
    size_t n;
} fwx__imap;

/* Flattens possibly overlapping ranges: each point goes to the smallest range holding it.
   Sorts items in place. 0, or -1 when out of memory (out is then empty). */
int fwx__imap_build(fwx__range_item *items, size_t n, fwx__imap *out);
bool fwx__imap_find(const fwx__imap *m, fwx__u128 key, uint32_t *owner);
void fwx__imap_free(fwx__imap *m);

/* ---- policy objects ------------------------------------------------------------------ */

/* Indexes of the networks every policy has. */
enum {
    FWX__NET_INTERNAL = 0,
    FWX__NET_EXTERNAL = 1,
    FWX__NET_LOCALHOST = 2,
    FWX__NET_PREDEFINED = 3
};

/* Rule lists hold this in place of a protocol index for "no protocol". */
#define FWX__NO_PROTOCOL UINT32_MAX

struct fwx__network {
    char *name;
    int line; /* 0 for a predefined network not in the file */
    uint32_t index;
};

typedef struct fwx__addr_set {
    char *name;
    int line;
    fwx__imap v4, v6;
} fwx__addr_set;

typedef struct fwx__domain_set {
    char *name;
    int line;
    char **exact; /* sorted, lower case */
    size_t n_exact;
    char **suffix; /* sorted, lower case, with the leading dot: ".bad.example" */
    size_t n_suffix;
} fwx__domain_set;

/* A sorted, duplicate-free list of indexes. */
typedef struct fwx__idx_list {
    uint32_t *v;
    size_t n;
} fwx__idx_list;

typedef struct fwx__rule {
    char *name;
    int line;
    bool allow;
    bool site; /* `to` names an address set or a domain set */
    fwx__idx_list from_nets, from_sets;
    fwx__idx_list to_nets, to_sets, to_domains;
    bool all_protocols;
    fwx__idx_list protocols;
    char **users; /* NULL: anyone, authenticated or not */
    size_t n_users;
} fwx__rule;

typedef struct fwx__relation {
    uint32_t from, to;
    fwx__relationship type;
} fwx__relation;

typedef struct fwx__guid_ent {
    fwx_guid guid;
    uint32_t index;
} fwx__guid_ent;

/* Rule indexes per key (compressed rows): rule indexes of key k are idx[off[k]..off[k+1]),
   ascending, so file order is kept. */
typedef struct fwx__rule_index {
    uint32_t *off; /* n_keys + 1 */
    uint32_t *idx;
    size_t n_keys;
    fwx__idx_list any; /* rules that can match whatever the key is */
} fwx__rule_index;

struct fwx_policy {
    fwx__network *networks;
    size_t n_networks;
    fwx__imap net_v4, net_v6;

    fwx__relation *relations; /* sorted by (from, to) */
    size_t n_relations;

    fwx__protocol *protocols;
    size_t n_protocols;
    fwx__guid_ent *by_guid; /* sorted by guid */
    /* [tcp, udp][outbound, inbound] port -> protocol index */
    fwx__imap proto_ports[2][2];

    fwx__addr_set *addr_sets;
    size_t n_addr_sets;
    fwx__domain_set *domain_sets;
    size_t n_domain_sets;

    fwx__rule *rules;
    size_t n_rules;
    fwx__rule_index by_protocol;    /* key: protocol; any: rules for "all" */
    fwx__rule_index by_source;      /* key: network; any: rules with an address set in from */
    fwx__rule_index by_destination; /* key: network; any: rules with a set in to */

    fwx__publish_rule *publish;
    size_t n_publish;

    char *source; /* the file (or name) it was loaded from: errors found later name file:line */
};

/* Builds the three rule indexes from p->rules. 0, or -1 when out of memory. */
int fwx__policy_build_index(fwx_policy *p);
bool fwx__domain_set_match(const fwx__domain_set *d, const char *host_name);

#endif /* FWX_POLICY_IMPL_H */
