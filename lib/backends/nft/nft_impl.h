/*
 * fwx - the "nft" backend's internals: the kernel-mode backend on nf_tables (libnftables for the
 * table and the policy, libnftnl + libmnl for set elements).
 * Internal; not installed. Tests in tests/netns/ include it to read the probe's result.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_NFT_IMPL_H
#define FWX_NFT_IMPL_H

#include <fwx/backend.h>
#include <fwx/redirect.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

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

/* ---- set elements over netlink (nl.c): libnftnl on a libmnl socket ---- */
/* A netlink socket for the elements of one table (inet family). */
typedef struct fwx__nftnl fwx__nftnl;
/* One element to add or delete, and the kernel's answer for it. */
typedef struct fwx__nftnl_op {
    bool del;
    bool destroy;        /* with del: no error when the element is missing (where the kernel can) */
    const char *set;     /* "once4", "dnat6", ... (rules.h) */
    const uint8_t *kbin; /* the key's bytes (fwx__nftnl_key), klen of them; or, with klen 0: */
    const char *key;     /* the element as nft text: "10.0.0.2 . 10.0.0.9 . 6 . 2121" (tests) */
    const uint8_t *dbin; /* with kbin: a map's value's bytes, dlen of them (0 for a set) */
    const char *data;    /* with key: a map's value ("10.0.0.2 . 5001"), NULL or "" for a set */
    size_t klen, dlen;
    uint64_t timeout_ms; /* adds: the element's timeout, 0 for the set's default (none) */
    uint32_t group;      /* ops of one group stand or fall together; a group's ops are contiguous */
    int err;             /* out: 0, or the errno for this element (ECANCELED: another of its group failed) */
} fwx__nftnl_op;
/* Opens the socket. FWX_E_DENIED, FWX_E_BACKEND, FWX_E_OUTOFMEMORY, FWX_E_INVALIDARG. */
fwx_result fwx__nftnl_open(const char *table, fwx__nftnl **out);
/* NULL is harmless. */
void fwx__nftnl_close(fwx__nftnl *h);
/* Applies ops in as few transactions as it can (each element with its own sequence number
   and ack), synchronously. A group with a failed element is left out entirely and the rest
   sent again, so every op with err 0 is in place (or deleted) when this returns, and every
   other op changed nothing. Returns the number of failed ops, or -errno when the socket
   failed (every op then has an error). */
int fwx__nftnl_apply(fwx__nftnl *h, fwx__nftnl_op *ops, size_t n);
/* Does the kernel destroy elements (NFT_MSG_DESTROYSETELEM, Linux 6.3)? Tried once on an
   element of `set` that is not there; without it a `destroy` op is a plain delete, which fails
   with ENOENT (and costs the kernel a rolled-back transaction) when the element is missing. */
bool fwx__nftnl_probe_destroy(fwx__nftnl *h, const char *set, const char *key);
/* Does `set` hold the element with this key (bytes, as fwx__nftnl_key builds them)? One lookup
   (NFT_MSG_GETSETELEM), synchronous: 1 yes, 0 no (also when the set does not exist: the
   kernel's answer is the same ENOENT), -errno when it could not be asked. */
int fwx__nftnl_has(fwx__nftnl *h, const char *set, const uint8_t *key, size_t klen);
/* The bytes of an element's key or data, built from the addresses without text (the
   permission path): a, then b if not NULL (the same family), then the l4 protocol if proto >= 0,
   then the port if port >= 0, each field in whole 32-bit registers as the set's type (rules.h):
   an address its 4 or 16 bytes, inet_proto one byte, inet_service two in network order. The
   length, or 0 (mixed families, an IPv6 zone, no room). */
size_t fwx__nftnl_key(uint8_t *out, size_t cap, const struct sockaddr *a, const struct sockaddr *b, int proto,
                      int port);
/* Such bytes as nft text ("10.0.0.2 . 10.0.0.9 . 6 . 2121", as `nft -nn list` prints them):
   for lines and for matching a listing. The length written (out is always terminated). */
size_t fwx__nftnl_text(int family, const uint8_t *b, size_t len, char *out, size_t cap);
/* An element's nft text as the key or data bytes of the set's type; 0 if it does not encode. */
size_t fwx__nftnl_encode(const char *text, uint8_t *out, size_t cap);

/* ---- the policy (compile.c) ---- */

/* What one compiled policy put in the table (to delete it at the next change). */
typedef struct fwx__nft_compiled {
    bool present;
    unsigned gen;          /* generation in the set names */
    uint32_t n_nets;       /* N<gen>_<i>_{4,6} */
    uint32_t n_groups;     /* G<gen>_<i>_{4,6} */
    uint32_t n_ports;      /* P<gen>_<i> */
    uint32_t n_intercept;  /* elements of I<gen>: ports of filter-bound protocols */
} fwx__nft_compiled;

/* Where filter-bound connections are redirected (port 0: no interception) and the mark of
   fwx's own sockets (never intercepted). */
typedef struct fwx__nft_intercept {
    uint16_t port;  /* the IPv4 listener's port, 0 if none */
    uint16_t port6; /* the IPv6 listener's port, 0 if none (no IPv6 here) */
    uint32_t own_mark;
    bool udp;       /* UDP is intercepted too: fwx__nft_udp_start got the same port number */
    bool udp6;      /* the same for IPv6 (port6) */
    bool udp_hooked; /* a plugin hooks fwx_Udp_Destination: every UDP protocol counts as filter-bound */
} fwx__nft_intercept;

/* Appends to f the commands that replace the compiled policy: first fwx__nft_uncompile of the
   previous one, then fwx__nft_compile of the new one (generation gen, which must differ from
   the previous). 0, or -1 when out of memory. */
int fwx__nft_compile(FILE *f, const char *table, const fwx_policy *p, unsigned gen, const fwx__nft_intercept *icpt,
                     fwx__nft_compiled *out);
void fwx__nft_uncompile(FILE *f, const char *table, const fwx__nft_compiled *old);

/* The proposed fwx_backend version 2 method: compiles @p policy (NULL: none) into the table in
   one batch. Until the core calls it (include/fwx/backend.h, FWX_BACKEND_VERSION 2), the
   backend compiles the policy it finds at open, and tests call this after
   fwx_firewall_set_policy. */
fwx_result fwx__nft_policy_changed(void *state, const fwx_policy *policy);

/* ---- interception (intercept.c) ---- */

/* The listener filter-bound connections are redirected to: a TCP socket on a free port of the
   gateway; each accepted connection becomes a NAT session of its client and a primary
   connection to its original destination (SO_ORIGINAL_DST), relayed through the connection's
   data filters. Fills icpt (port, own mark). */
struct fwx__nft_icpt;
fwx_result fwx__nft_icpt_start(fwx_firewall *fw, struct fwx__nft_icpt **out, fwx__nft_intercept *icpt);
/* A publishing rule whose protocol has a filter bound: a user-mode listener on the rule's
   address (the filter must see the stream), each connection relayed to the published server as
   the proxy backend would, so the filter's secondary connections can still be kernel
   elements. FWX_E_ADDRINUSE / FWX_E_ADDRNOTAVAIL / FWX_E_NOT_SUPPORTED (not TCP). */
fwx_result fwx__nft_pub_start(fwx_firewall *fw, const fwx_listen_spec *spec, struct fwx__nft_icpt **out);
/* For a flow of `protocol` redirected into the listener at gateway address:port `gw`: the target
   of the user-mode bound or redirect port there (nft.c), or false. */
bool fwx__nft_user_port_target(fwx_firewall *fw, int32_t protocol, const struct sockaddr *gw,
                               struct sockaddr_storage *target);
/* Closes the listener and aborts the connections it carries. NULL is harmless. */
void fwx__nft_icpt_stop(struct fwx__nft_icpt *l);

/* ---- UDP interception (udp.c) ---- */

/* The UDP socket of `family` (AF_INET or AF_INET6) on `port` (the TCP listener's port number
   of that family) that REDIRECTed UDP flows reach: each flow's original destination is read
   from conntrack, the flow admitted through the core (a user-mode grant, or a primary fwx_Udp_Destination connection) and relayed from
   the gateway through its data filters (lib/backends/usermode/dgram.c). FWX_E_ADDRINUSE,
   FWX_E_BACKEND, FWX_E_OUTOFMEMORY. */
struct fwx__nft_udp;
fwx_result fwx__nft_udp_start(fwx_firewall *fw, int family, uint16_t port, struct fwx__nft_udp **out);
/* Ends every flow (their connections close) and the socket. NULL is harmless. */
void fwx__nft_udp_stop(struct fwx__nft_udp *u);
/* A client's NAT session, held by each flow of it the backend carries (nft.c): user-mode UDP
   flows here, policy-forwarded kernel flows, the kernel flows the session's grants admit
   while it is held, and intercept.c's TCP relays. The core keeps one session per client address
   and ending it kills all its connections, so it is closed when the last holder lets go. hold:
   NULL when the core refuses the session (logged there), out of memory, or without the
   backend's state. A hold outlives the state (a relay's pump ends from the loop after the
   stop): release is safe then too. */
struct fwx__nft_sess;
struct fwx__nft_sess *fwx__nft_session_hold(fwx_firewall *fw, const struct sockaddr *client);
IFWXSession *fwx__nft_session(const struct fwx__nft_sess *h);
/* Lets go of one hold; the last ends the session. NULL is harmless. */
void fwx__nft_session_release(struct fwx__nft_sess *h);
/* The backend's conntrack handle (nft.c), NULL without conntrack events. */
struct fwx__ct;
struct fwx__ct *fwx__nft_ct(fwx_firewall *fw);

/* ---- redirect records across processes, local redirection (local.c) ---- */

/* The local application that opened the TCP connection peer -> orig (sock_diag + /proc);
   false for a connection from another host (app left unknown). cg holds the cgroup path. */
bool fwx__nft_local_app(const struct sockaddr *peer, const struct sockaddr *orig, fwx_redirect_app *app, char *cg,
                        size_t cgcap);

/* This instance's redirect identity (the handle of its hops) and, in *slot_bit, its
   local-redirection slot as a bit (0 without local redirection); NULL if it has none. */
fwx_redirect_handle *fwx__nft_identity(fwx_firewall *fw, uint32_t *slot_bit);
/* Is `a` (address:port) the interception listener of this instance, on one of its addresses? */
bool fwx__nft_is_listener(fwx_firewall *fw, const struct sockaddr *a);

/* The mark of a socket that has passed the local-redirection slots `slots` (bit i = slot i). */
#define FWX__NFT_SLOT_MARK(slots) FWX_REDIRECT_SLOT_MARK(slots)

/* The mark (SO_MARK) of fwx's own outbound sockets; interception skips it. */
#define FWX__NFT_OWN_MARK FWX_REDIRECT_MARK /* the same bit: a redirected flow's outbound socket */

extern const fwx_backend fwx__nft_backend;

#endif /* FWX_NFT_IMPL_H */
