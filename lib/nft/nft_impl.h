/*
 * fwx - the "nft" backend's internals: the kernel-mode backend on nf_tables (libnftables).
 * Internal; not installed. Tests in tests/netns/ include it to read the probe's result.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_NFT_IMPL_H
#define FWX_NFT_IMPL_H

#include <fwx/backend.h>
#include <stdbool.h>
#include <stddef.h>

struct nft_ctx;

/* What the running kernel (and our rights in this network namespace) allow. Filled at open by
   trying each feature in the backend's own table (probe.c). */
typedef struct fwx__nft_features {
    bool rights;        /* CAP_NET_ADMIN in the network namespace: nf_tables accepted a change */
    bool nf_tables;     /* an inet table can be created */
    bool set_timeout;   /* sets with "flags timeout" and per-element timeouts */
    bool dynset_delete; /* "delete @set { ... }" from the packet path (one-shot permissions) */
    bool nat;           /* nat chains and dnat/snat/masquerade statements */
    bool tproxy;        /* the tproxy statement (transparent interception, later work) */
    bool conntrack;     /* ctnetlink answers (kill, byte counts, later work) */
    bool ct_events;     /* conntrack events can be subscribed to (Established/Terminating) */
} fwx__nft_features;

/* Feature bits, for fwx__nft_pretend_missing and the log line. */
enum {
    FWX__NFT_F_NF_TABLES = 1u << 0,
    FWX__NFT_F_SET_TIMEOUT = 1u << 1,
    FWX__NFT_F_DYNSET_DELETE = 1u << 2,
    FWX__NFT_F_NAT = 1u << 3,
    FWX__NFT_F_TPROXY = 1u << 4,
    FWX__NFT_F_CONNTRACK = 1u << 5,
    FWX__NFT_F_CT_EVENTS = 1u << 6,
};
/* Features the backend cannot work without: missing one, open fails with FWX_E_NOT_SUPPORTED. */
#define FWX__NFT_REQUIRED (FWX__NFT_F_NF_TABLES | FWX__NFT_F_SET_TIMEOUT | FWX__NFT_F_DYNSET_DELETE | FWX__NFT_F_NAT)

/* Tests only: features the probe reports missing whatever the kernel says (a bit mask of
   FWX__NFT_F_*), to exercise the fallback paths on a kernel that has everything. */
extern unsigned fwx__nft_pretend_missing;

/* Runs one batch of nft commands (one transaction: all or nothing). Returns 0, or -1 with the
   first line of libnftables' error text in err (and errno as the library left it). */
int fwx__nft_run(struct nft_ctx *nft, const char *cmds, char *err, size_t errlen);

/* Probes the kernel in `table` (which must exist and be the backend's own; probe objects are
   created in it and removed again). */
void fwx__nft_probe(struct nft_ctx *nft, const char *table, fwx__nft_features *out);
/* The bit mask of features missing from f. */
unsigned fwx__nft_missing(const fwx__nft_features *f);
/* Writes "set timeouts, tproxy" (the names of the features in mask) into buf. */
const char *fwx__nft_feature_names(unsigned mask, char *buf, size_t len);

/* The nft backend's probe result for a firewall using it, or NULL if it uses another. */
const fwx__nft_features *fwx__nft_features_of(fwx_firewall *fw);
/* The table name the backend uses for an instance name: "fwx_" + the name with characters
   other than [A-Za-z0-9_] replaced, plus a hash of the original when anything was replaced or
   cut (so "a-b" and "a.b" do not share a table). */
void fwx__nft_table_name(const char *instance, char *out, size_t len);

extern const fwx_backend fwx__nft_backend;

#endif /* FWX_NFT_IMPL_H */
