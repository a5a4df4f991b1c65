/*
 * fwx - the "nft" backend: secondary connections carried by the kernel, as elements of
 * nftables sets and maps in one table per gateway instance (rules.h describes the table).
 *
 * - open: replace a table a crash left behind, create ours, probe the kernel (probe.c); fail
 *   with FWX_E_NOT_SUPPORTED and one line when we may not change the network or the kernel
 *   lacks a required feature, so the host can fall back to the "proxy" backend;
 * - grant_add / grant_remove: the grant's elements added (all or none) or deleted through
 *   netlink (nl.c), synchronously; grant_remove_many (a session's end): every deletion at once.
 *   Elements are shared by the grants that need them and counted (uthash, O(1));
 * - close: replace the table by a closed one that drops every forwarded packet (or, with
 *   kernel_open_on_stop, delete it), and say so in one line.
 *
 * An element's key and value are bytes built from checked addresses (fwx__nftnl_key: no text on
 * the permission path, nothing from outside parsed); every address printed into a command
 * comes from inet_ntop on a checked family, and the table name is built from [A-Za-z0-9_] only.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"
#include "backends/nft/rules.h"
#include "util/util.h"
#include "backends/nft/ct.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nftables/libnftables.h>
#include <uthash.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define TABLE_MAX 64
#define KEY_MAX 40  /* the longest key: two IPv6 addresses, a protocol and a port */
#define DATA_MAX 20 /* the longest map value: an IPv6 address and a port */

/* Which element: its set and key, as the key's bytes (fwx__nftnl_key: no text on the
   permission path; fwx__nftnl_text prints them for lines and listings). */
typedef struct ekey {
    char set[8];          /* "once4", "dnat6", ... */
    uint8_t len;          /* of key */
    uint8_t key[KEY_MAX]; /* src . dst . l4proto . port, gateway . l4proto . port, ... */
} ekey;

/* One set or map element a grant needs. */
typedef struct nelem {
    ekey k;                 /* zeroed first: a hash key */
    uint8_t dlen;           /* maps: of data; sets: 0 */
    uint8_t data[DATA_MAX]; /* maps: address . port, or an address */
} nelem;

/* A key or value being built. */
typedef struct kbytes {
    uint8_t b[KEY_MAX];
    size_t n; /* 0: it does not encode (mixed families, an IPv6 zone) */
} kbytes;

static kbytes kb(const struct sockaddr *a, const struct sockaddr *b, int proto, int port)
{
    kbytes k;
    k.n = fwx__nftnl_key(k.b, sizeof k.b, a, b, proto, port);
    return k;
}

/* An element in the table, shared by every grant and publishing rule that needs it (a client
   that is also a server of its session, two connections to one peer): deleted from the kernel
   with the last of them, and never if the packet path consumed it. */
typedef struct selem {
    nelem e;
    unsigned refs;
    bool gone; /* a one-shot element the packet path has deleted (its flow's NEW event) */
    unsigned late_news; /* one-shot: NEW events still to come of flows an earlier grant of the
                           same key let through (once_taken_early): they consume nothing of this one */
    UT_hash_handle hh; /* nstate::elems, keyed by e.k */
} selem;

/* Where a user-mode bound or redirect port is: protocol and gateway address . port (an
   unspecified address for every local one). */
typedef struct uport_key {
    int32_t protocol;
    fwx__sa_key gw;
} uport_key;

typedef struct ngrant {
    fwx_grant g;
    selem **el;               /* +1 reference each */
    size_t n;
    struct fwx__nft_icpt *ul; /* publishing rules with a filter: the user-mode listener */
    bool user;                /* carried by fwx's user-mode path (steered to the listener) */
    bool ported;              /* in nstate::uports under pkey */
    uport_key pkey;
    UT_hash_handle hh;        /* nstate::grants, keyed by g.id */
    UT_hash_handle hh_port;   /* nstate::uports, keyed by pkey */
} ngrant;

typedef struct nstate {
    uint32_t magic;
    fwx_firewall *fw;
    struct nft_ctx *nft; /* the table and the policy */
    fwx__nftnl *nl;      /* set elements (nl.c): the permission path never refreshes a cache */
    char table[TABLE_MAX];
    fwx__nft_features feat;
    ngrant *grants;      /* uthash on g.id */
    ngrant *uports;      /* user-mode bound and redirect ports, uthash on pkey */
    selem *elems;        /* every element a grant or publishing rule holds, uthash on e.k */
    unsigned n_once;     /* of elems, those in once4/once6: with none, a NEW event skips the lookup */
    ngrant *pubs; /* publishing rules (listen): g.id is the spec's id */
    size_t npub, cappub;
    fwx__nft_compiled comp; /* the compiled policy now in the table */
    unsigned next_gen;
    fwx__nft_intercept icpt;
    struct fwx__nft_icpt *listener; /* intercept.c */
    struct fwx__nft_udp *udp, *udp6; /* udp.c: UDP interception on each listener's port number */
    fwx__ct *ct;           /* conntrack events of flows a permission admitted, if the kernel has them */
    fwx__omap kflow_by_conn;  /* those flows (kflow), each with its core connection, by conn */
    fwx__omap kflow_by_tuple; /* the same flows by their tuple (kflow.h_tuple), for DESTROY */
    struct fwx__nft_sess *psessions; /* clients' NAT sessions the backend's flows hold (uthash on key) */
    fwx_redirect_handle *rh; /* the host's redirect identity (fwx_firewall_redirect_local), or NULL: the firewall's */
    int slot;                /* local-redirection slot 0..7, -1 without local redirection */
    int32_t open_on_stop;    /* fwx_firewall_options::kernel_open_on_stop */
    ekey *pend;           /* used one-shot elements and their used keys, deleted at the iteration's end */
    size_t npend, cappend;
    uv_prepare_t *flush;  /* runs pend_flush; its own allocation, closed with the loop's callback */
    char err[256];
} nstate;

/* A conntrack tuple as a hash key: protocol and the client's view of both ends. */
typedef struct kflow_key {
    int32_t protocol;
    fwx__sa_key src, dst;
} kflow_key;

/* A client's NAT session (the core keeps one per client address), held by every flow of it
   the backend carries: its user-mode UDP flows (udp.c), its policy-forwarded kernel flows, and
   the kernel flows its grants admitted while it was held (a TFTP transfer, let in by a request
   flow that then idles out), and the TCP connections intercept.c relays. Ending a session kills all its connections and withdraws its
   grants, so it is closed with its last holder, never with the first flow to end. */
typedef struct fwx__nft_sess {
    fwx__sa_key key;
    nstate *st;               /* NULL once the state is freed under its holders (psess_detach_all) */
    IFWXSession *s;           /* +1 */
    unsigned flows;           /* holders */
    bool hashed;              /* in st->psessions (not once the core ended it under its holders, nor
                                 once the state is freed) */
    UT_hash_handle hh;
} psess;

/* A flow the kernel carries for a grant or by the policy, and the core's connection for it. */
typedef struct kflow {
    fwx__ct_flow flow;
    kflow_key key;
    uint64_t h_tuple;         /* fwx__hash_bytes of key */
    IFWXConnection *conn;     /* +1 */
    psess *ps;                /* the session it holds (a policy-forwarded flow's, a held session's grant), or NULL */
    bool orig_is_client;      /* conntrack's original direction is the connection's client's (kflow_count) */
} kflow;

#define NSTATE_MAGIC 0x6e667478u /* "nftx" */

static selem *elem_find(nstate *st, const ekey *k);
static void psess_unref(psess *ps);
static void elem_error(nstate *st, const fwx__nftnl_op *op);
static int apply_after_pend(nstate *st, fwx__nftnl_op *ops, size_t n);
static void untrack(nstate *st, ngrant *ng);

/* The nft backend's state of a firewall, or NULL (another backend, or none); also behind a
   wrapping backend (fwx_backend::wrapped). */
static nstate *state_of(fwx_firewall *fw)
{
    nstate *st = fwx_firewall_backend_state_of(fw, &fwx__nft_backend);
    return st != NULL && st->magic == NSTATE_MAGIC ? st : NULL;
}

/* Does a loaded plugin hook fwx_Udp_Destination of any protocol (fwxAnyProtocol; without it a
   plugin hears only of the protocols the policy binds it to, which are steered anyway)? Its
   handler may attach a data filter to any UDP flow, which the kernel could not run: the policy's UDP protocols are then steered into
   fwx from their first datagram (compile.c), as filter-bound ones are. */
static bool udp_hooked(fwx_firewall *fw) { return fwx_firewall_hooks(fw, fwx_Udp_Destination | fwxAnyProtocol) != 0; }

struct fwx__ct *fwx__nft_ct(fwx_firewall *fw)
{
    nstate *st = state_of(fw);
    return st != NULL ? st->ct : NULL;
}

/* ---- small helpers ----------------------------------------------------------------------- */

/* A growing command buffer; a failed allocation is remembered and reported once. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int need = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (need < 0) {
            b->oom = true;
            return;
        }
        if (b->p != NULL && (size_t)need < b->cap - b->n) {
            b->n += (size_t)need;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->n + (size_t)need + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

#define NLOG(st, level, ...) fwx_firewall_log((st)->fw, level, "backend \"nft\": " __VA_ARGS__)

void fwx__nft_table_name(const char *instance, char *out, size_t len)
{
    /* 32 characters of the name at most, then an 8-digit hash when anything changed. */
    const size_t keep = 32;
    bool changed = false;
    size_t o = 0;
    uint32_t h = 2166136261u; /* FNV-1a of the original name */
    if (instance == NULL || instance[0] == '\0')
        instance = "fwx";
    for (const char *p = instance; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    o = (size_t)snprintf(out, len, "fwx_");
    for (const char *p = instance; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok)
            changed = true;
        if ((size_t)(p - instance) >= keep) {
            changed = true;
            break;
        }
        if (o + 1 < len)
            out[o++] = ok ? c : '_';
    }
    out[o < len ? o : len - 1] = '\0';
    if (changed && o + 10 < len)
        snprintf(out + o, len - o, "_%08x", h);
}

static int l4proto(int32_t protocol) { return protocol == FWX_PROTOCOL_UDP ? 17 : 6; }

/* The family digit of a plain IPv4 or unscoped IPv6 address (a zone cannot be expressed in a
   set element); false for anything else. */
static bool fam_of(const struct sockaddr *sa, char *fam)
{
    if (sa->sa_family == AF_INET)
        return *fam = '4', true;
    if (sa->sa_family == AF_INET6 && ((const struct sockaddr_in6 *)sa)->sin6_scope_id == 0)
        return *fam = '6', true;
    return false;
}

/* An element's key (or value) as text, for a line or a listing. */
static const char *ekey_text(const char *set, const uint8_t *b, size_t len, char *out, size_t cap)
{
    fwx__nftnl_text(strchr(set, '6') != NULL ? AF_INET6 : AF_INET, b, len, out, cap);
    return out;
}

/* Room for one more entry after the n of a growing array (*arr, of `size`-byte entries):
   doubled from `first` when full. False (the array as it was) when memory ran out. */
static bool grow(void *arr, size_t n, size_t *cap, size_t size, size_t first)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : first;
    void *p = realloc(*(void **)arr, c * size);
    if (p == NULL)
        return false;
    *(void **)arr = p;
    *cap = c;
    return true;
}

static nelem *elem_push(nelem **el, size_t *n, size_t *cap)
{
    if (!grow(el, *n, cap, sizeof **el, 8))
        return NULL;
    nelem *e = &(*el)[(*n)++];
    memset(e, 0, sizeof *e);
    return e;
}

/* Does the grant carry the core's list of who may use it (fwx_grant::sources, 1.1)? A grant
   of an older core, or of a test driving the backend directly, has none. */
#define GRANT_HAS(g, field) ((g)->struct_size >= offsetof(fwx_grant, field) + sizeof(g)->field)
static uint32_t grant_n_sources(const fwx_grant *g)
{
    return GRANT_HAS(g, n_sources) && g->sources != NULL ? g->n_sources : 0;
}
static uint32_t grant_source_flags(const fwx_grant *g) { return GRANT_HAS(g, source_flags) ? g->source_flags : 0; }

/* Is a gateway port free for a DNAT? A local socket on it would be shadowed. */
static bool port_free(const struct sockaddr *gw, int32_t protocol)
{
    int fd = socket(gw->sa_family, (protocol == FWX_PROTOCOL_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell; the kernel's NAT decides */
    bool free_ = bind(fd, gw, fwx__sa_len(gw)) == 0 || errno != EADDRINUSE;
    close(fd);
    return free_;
}

/* ---- grants into elements ---------------------------------------------------------------- */

typedef struct elems {
    nelem *el;
    size_t n, cap;
} elems;

static fwx_result add_elem(elems *es, const char *set, char fam, const kbytes *key, const kbytes *data)
{
    size_t ls = strlen(set);
    if (ls + 2 > sizeof es->el[0].k.set || key->n == 0 || key->n > KEY_MAX || (data != NULL && data->n > DATA_MAX))
        return FWX_E_INVALIDARG; /* cannot happen with the keys built here */
    if (data != NULL && data->n == 0)
        return FWX_E_NOT_SUPPORTED; /* a value of another family */
    nelem *e = elem_push(&es->el, &es->n, &es->cap);
    if (e == NULL)
        return FWX_E_OUTOFMEMORY;
    memcpy(e->k.set, set, ls);
    e->k.set[ls] = fam;
    e->k.set[ls + 1] = '\0';
    e->k.len = (uint8_t)key->n;
    memcpy(e->k.key, key->b, key->n);
    if (data != NULL) {
        e->dlen = (uint8_t)data->n;
        memcpy(e->data, data->b, data->n);
    }
    return FWX_S_OK;
}

/* Is key already the key of an element of es (of any set)? */
static bool has_key(const elems *es, const kbytes *key)
{
    for (size_t i = 0; i < es->n; i++)
        if (es->el[i].k.len == key->n && memcmp(es->el[i].k.key, key->b, key->n) == 0)
            return true;
    return false;
}

/* The gateway addresses a DNAT element is keyed on: the grant's own, or every local address
   of the family when it is unspecified. */
static size_t gateway_addrs(nstate *st, const struct sockaddr *gw, char fam, struct sockaddr_storage *out, size_t max)
{
    char f;
    size_t n = 0;
    if (!fwx__sa_is_unspecified(gw)) {
        if (!fam_of(gw, &f))
            return 0;
        memcpy(&out[0], gw, fwx__sa_len(gw));
        return 1;
    }
    for (size_t i = 0; n < max && fwx_firewall_local_address(st->fw, i, &out[n]) == FWX_S_OK; i++) {
        const struct sockaddr *a = (const struct sockaddr *)&out[n];
        if (fwx__sa_is_loopback(a)) /* local traffic never passes prerouting */
            continue;
        if (fam_of(a, &f) && f == fam)
            n++;
    }
    return n;
}

/* An outbound permission: for each host the core lets use it (the client, and the published
   servers of its session), an element of the target; with a ProxyExternalAddress, a source NAT
   of the same key. */
static fwx_result permission_elem(elems *es, const fwx_grant *g, const struct sockaddr *src)
{
    const struct sockaddr *to = (const struct sockaddr *)&g->target;
    char fc, ft, fx;
    if (!fam_of(src, &fc) || !fam_of(to, &ft) || fc != ft)
        return FWX_E_NOT_SUPPORTED;
    kbytes key = kb(src, to, l4proto(g->protocol), fwx__sa_port(to));
    if (key.n == 0)
        return FWX_E_NOT_SUPPORTED;
    if (has_key(es, &key))
        return FWX_S_OK; /* the client is also a server of its session */
    fwx_result hr = add_elem(es, (g->flags & FWX_FLAG_ALLOW_MULTIPLE) ? "allow" : "once", fc, &key, NULL);
    const struct sockaddr *px = (const struct sockaddr *)&g->gateway;
    if (FWX_SUCCEEDED(hr) && (px->sa_family == AF_INET || px->sa_family == AF_INET6) && !fwx__sa_is_unspecified(px)) {
        /* ProxyExternalAddress: the server sees the connection come from that address. */
        if (!fam_of(px, &fx) || fx != fc)
            return FWX_E_NOT_SUPPORTED;
        kbytes x = kb(px, NULL, -1, -1);
        hr = add_elem(es, "snat", fc, &key, &x);
    }
    return hr;
}

static fwx_result permission_elems(nstate *st, const fwx_grant *g, elems *es)
{
    (void)st;
    /* The client first: a grant without the core's list (see grant_n_sources) is the client's. */
    fwx_result hr = permission_elem(es, g, (const struct sockaddr *)&g->client);
    for (uint32_t i = 0; FWX_SUCCEEDED(hr) && i < grant_n_sources(g); i++) {
        const struct sockaddr *src = (const struct sockaddr *)&g->sources[i].address;
        char fs, ft;
        if (!fam_of(src, &fs) || !fam_of((const struct sockaddr *)&g->target, &ft) || fs != ft)
            continue; /* a server of the other family cannot reach this target */
        hr = permission_elem(es, g, src);
    }
    return hr;
}

/* BindForClient (to = the client) and RedirectConnections (to = the target): a DNAT from the
   gateway port, a permission for each allowed source, source NAT under PROXY_MODE. */
/* The permission element "src . dst . proto . port" (and its masquerade and one-way ones), once
   per key: FWX_S_FALSE (nothing added) when src is of another family or already there. */
static fwx_result tuple_elems(elems *es, const char *set, bool masq, bool oneway, const struct sockaddr *src_sa,
                              char fam, const struct sockaddr *dst, int proto, uint16_t port)
{
    char f;
    if (!fam_of(src_sa, &f) || f != fam)
        return FWX_S_FALSE;
    kbytes key = kb(src_sa, dst, proto, port);
    if (key.n == 0 || has_key(es, &key))
        return FWX_S_FALSE; /* two connections to one peer */
    fwx_result hr = add_elem(es, set, fam, &key, NULL);
    if (FWX_SUCCEEDED(hr) && masq)
        hr = add_elem(es, "masq", fam, &key, NULL);
    if (FWX_SUCCEEDED(hr) && oneway)
        hr = add_elem(es, "oneway", fam, &key, NULL);
    return hr;
}

/* FWX_FLAG_REPLY_FROM_PEER (a TFTP server's answer from its new port): the one source the core
   names (fwx_grant::sources), any source port (the permission key has none), to the client's
   port. When fwx relays the primary flow from a socket of its own (a filter reads it in user
   mode), the answer comes to that socket's address and port (fwx_grant::gateway): a DNAT of it
   to the client's, which shadows the socket on purpose; conntrack turns the client's replies
   back into the gateway's address and port, so the server sees its peer unchanged. */
static fwx_result reply_elems(const fwx_grant *g, elems *es)
{
    const struct sockaddr *gw = (const struct sockaddr *)&g->gateway, *to = (const struct sockaddr *)&g->target;
    char fam, fg;
    int proto = l4proto(g->protocol);
    uint16_t tport = fwx__sa_port(to);
    if (!fam_of(to, &fam))
        return FWX_E_NOT_SUPPORTED;
    if (!fwx__sa_is_unspecified(gw) && fwx__sa_port(gw) != 0) {
        if (!fam_of(gw, &fg) || fg != fam)
            return FWX_E_NOT_SUPPORTED;
        kbytes key = kb(gw, NULL, proto, fwx__sa_port(gw)), data = kb(to, NULL, -1, tport);
        fwx_result hr = add_elem(es, "dnat", fam, &key, &data);
        if (FWX_FAILED(hr))
            return hr;
    }
    const char *set = (g->flags & FWX_FLAG_ALLOW_MULTIPLE) ? "allow" : "once";
    size_t before = es->n;
    for (uint32_t i = 0; i < grant_n_sources(g); i++) {
        fwx_result hr = tuple_elems(es, set, false, false, (const struct sockaddr *)&g->sources[i].address, fam, to,
                                    proto, tport);
        if (FWX_FAILED(hr))
            return hr;
    }
    return es->n > before ? FWX_S_OK : FWX_E_NOT_SUPPORTED; /* no source of the client's family */
}

static fwx_result port_elems(nstate *st, const fwx_grant *g, elems *es)
{
    const struct sockaddr *gw = (const struct sockaddr *)&g->gateway, *to = (const struct sockaddr *)&g->target;
    struct sockaddr_storage gws[8];
    char fam;
    if (fwx__sa_is_unspecified(to) || fwx__sa_port(to) == 0) {
        /* BindForClient with the client's address still to come (SetClientAddress re-adds). */
        return FWX_S_OK;
    }
    if (!fam_of(to, &fam))
        return FWX_E_NOT_SUPPORTED;
    if (gw->sa_family != to->sa_family)
        return FWX_E_NOT_SUPPORTED;
    if (!port_free(gw, g->protocol))
        return FWX_E_ADDRINUSE;
    int proto = l4proto(g->protocol);
    uint16_t gport = fwx__sa_port(gw), tport = fwx__sa_port(to);
    size_t ngw = gateway_addrs(st, gw, fam, gws, 8);
    if (ngw == 0)
        return FWX_E_ADDRNOTAVAIL;
    kbytes data = kb(to, NULL, -1, tport);
    for (size_t i = 0; i < ngw; i++) {
        kbytes key = kb((const struct sockaddr *)&gws[i], NULL, proto, gport);
        fwx_result hr = add_elem(es, "dnat", fam, &key, &data);
        if (FWX_FAILED(hr))
            return hr;
    }
    /* Who may use the port is the core's to say (fwx_grant::sources: for a redirect port the
       session's client and its published servers, for a bound port the external peers of its
       primary connections); the kernel gets one permission element per source. */
    const char *set = (g->flags & FWX_FLAG_ALLOW_MULTIPLE) ? "allow" : "once";
    bool masq = (g->flags & FWX_FLAG_PROXY_MODE) != 0;
    /* A UDP bound port carries datagrams to the client only, unless BIDIRECTIONAL (as the
       proxy backend); a redirect port is a connection both ways. */
    bool oneway = g->kind == FWX_GRANT_BINDING && g->protocol == FWX_PROTOCOL_UDP && !(g->flags & FWX_FLAG_BIDIRECTIONAL);
    if (g->kind == FWX_GRANT_REDIRECT) {
        /* The client always (a grant without the core's list is the client's alone). */
        fwx_result hr = tuple_elems(es, set, masq, false, (const struct sockaddr *)&g->client, fam, to, proto, tport);
        if (hr == FWX_S_FALSE)
            return FWX_E_NOT_SUPPORTED; /* the client of another family */
    }
    for (uint32_t i = 0; i < grant_n_sources(g); i++) {
        const fwx_grant_source *src = &g->sources[i];
        /* A translated source (a published server behind a full-proxy rule): the other side
           sees its connection come from the gateway, as it sees the control connection. */
        bool m = masq || (src->flags & FWX_GRANT_SOURCE_TRANSLATE) != 0;
        fwx_result hr = tuple_elems(es, set, m, oneway, (const struct sockaddr *)&src->address, fam, to, proto, tport);
        if (FWX_FAILED(hr))
            return hr;
    }
    return FWX_S_OK;
}

/* ---- the table ----------------------------------------------------------------------------- */

static void ruleset_text(sbuf *b, const char *table, uint16_t icpt_port, uint16_t icpt_port6)
{
    sb_printf(b, FWX_NFT_TABLE_HEAD_FMT, table, (long)getpid());
    sb_printf(b, FWX_NFT_SETS_FMT, /* once, used: */ '4', "ipv4_addr", "ipv4_addr", '4', "ipv4_addr", "ipv4_addr",
              '4', "ipv4_addr", "ipv4_addr", '4', "ipv4_addr",
              "ipv4_addr", '4', "ipv4_addr", "ipv4_addr", "ipv4_addr", '4', "ipv4_addr", "ipv4_addr", '4', "ipv4_addr",
              "ipv4_addr", '4', "ipv4_addr", '4', "ipv4_addr", '4', "ipv4_addr", "ipv4_addr", '4', "ipv4_addr",
              "ipv4_addr");
    sb_printf(b, FWX_NFT_SETS_FMT, /* once, used: */ '6', "ipv6_addr", "ipv6_addr", '6', "ipv6_addr", "ipv6_addr",
              '6', "ipv6_addr", "ipv6_addr", '6', "ipv6_addr",
              "ipv6_addr", '6', "ipv6_addr", "ipv6_addr", "ipv6_addr", '6', "ipv6_addr", "ipv6_addr", '6', "ipv6_addr",
              "ipv6_addr", '6', "ipv6_addr", '6', "ipv6_addr", '6', "ipv6_addr", "ipv6_addr", '6', "ipv6_addr",
              "ipv6_addr");
    sb_printf(b, "%s", FWX_NFT_REFUSED_SETS);
    /* pol_nat before postrouting, which jumps to it (chains exist before rules either way). */
    sb_printf(b, "%s", FWX_NFT_PREROUTING FWX_NFT_PREROUTING_INTERCEPT_HEAD);
    if (icpt_port != 0)
        sb_printf(b, FWX_NFT_PREROUTING_INTERCEPT_USER_FMT, (unsigned)icpt_port);
    if (icpt_port6 != 0)
        sb_printf(b, FWX_NFT_PREROUTING_INTERCEPT_USER6_FMT, (unsigned)icpt_port6);
    sb_printf(b, "%s", FWX_NFT_PREROUTING_INTERCEPT_TAIL);
    if (icpt_port != 0 || icpt_port6 != 0) {
        sb_printf(b, "%s", FWX_NFT_INPUT_INTERCEPT_HEAD);
        if (icpt_port != 0)
            sb_printf(b, FWX_NFT_INPUT_INTERCEPT_FMT, "ipv4", (unsigned)icpt_port);
        if (icpt_port6 != 0)
            sb_printf(b, FWX_NFT_INPUT_INTERCEPT_FMT, "ipv6", (unsigned)icpt_port6);
        sb_printf(b, "%s", FWX_NFT_INPUT_INTERCEPT_TAIL);
    }
    sb_printf(b, "%s", FWX_NFT_FORWARD FWX_NFT_POSTROUTING "}\n");
}

static int run(nstate *st, const char *cmds) { return fwx__nft_run(st->nft, cmds, st->err, sizeof st->err); }

static bool is_eperm(const nstate *st, int err)
{
    return err == EPERM || strstr(st->err, "Operation not permitted") != NULL;
}

/* The pid in the comment of a table left behind, or 0. */
static long leftover_pid(const char *listing)
{
    const char *p = listing ? strstr(listing, "(pid ") : NULL;
    return p ? strtol(p + 5, NULL, 10) : 0;
}

/* Replaces whatever table of our name is there (or none: "add" first, so the delete always
   finds one) by the closed one, FWX_NFT_CLOSED_FMT, in one batch. 0, or -1 with st->err. */
static int install_closed(nstate *st)
{
    sbuf b = {0};
    sb_printf(&b, "add table inet %s\ndelete table inet %s\n", st->table, st->table);
    sb_printf(&b, FWX_NFT_CLOSED_FMT, st->table, (long)getpid());
    int rc = -1;
    if (b.oom)
        snprintf(st->err, sizeof st->err, "out of memory");
    else
        rc = run(st, b.p);
    free(b.p);
    return rc;
}

/* net.ipv4.ip_forward or net.ipv6.conf.all.forwarding of this network namespace: 1 if either
   is on, 0 if both are off, -1 if unknown. */
static int forwarding_on(void)
{
    static const char *const paths[] = {"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"};
    int known = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        FILE *f = fopen(paths[i], "re");
        int v = 0;
        if (f == NULL)
            continue;
        if (fscanf(f, "%d", &v) == 1) {
            known = 1;
            if (v != 0) {
                fclose(f);
                return 1;
            }
        }
        fclose(f);
    }
    return known ? 0 : -1;
}

/*
 * The gateway stops (close, or an open that failed after the table was made): say in one line
 * what it leaves in force. By default its table is replaced by the closed one, so a stopped
 * gateway forwards nothing, as a crashed one does not either (its table stays with drop as
 * the forward policy); with kernel_open_on_stop the table is deleted and whatever the
 * namespace's own settings allow is routed through.
 */
static void leave_table(nstate *st, const char *why)
{
    if (st->open_on_stop) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "delete table inet %s\n", st->table);
        if (run(st, cmd) != 0) {
            NLOG(st, FWX_LOG_WARN, "%s: deleting table inet %s failed: %s", why, st->table, st->err);
            return;
        }
        int fwd = forwarding_on();
        NLOG(st, FWX_LOG_WARN, "%s: table inet %s deleted (on_stop = open): %s", why, st->table,
             fwd == 1   ? "IP forwarding is on, so everything is routed through unfiltered and without NAT"
             : fwd == 0 ? "IP forwarding is off, so nothing is routed through"
                        : "whatever this namespace's settings allow is routed through unfiltered");
        return;
    }
    if (install_closed(st) != 0) {
        NLOG(st, FWX_LOG_ERROR, "%s: closing table inet %s failed: %s; forwarding is whatever is left", why, st->table,
             st->err);
        return;
    }
    NLOG(st, FWX_LOG_INFO, "%s: table inet %s left closed: every forwarded packet is dropped until fwx starts again "
                           "(`nft delete table inet %s` opens it); the gateway's own traffic is not filtered",
         why, st->table, st->table);
}

static void kflow_key_of(const fwx__ct_flow *f, kflow_key *k)
{
    memset(k, 0, sizeof *k);
    k->protocol = f->protocol;
    fwx__sa_key_of(&f->src.sa, true, &k->src);
    fwx__sa_key_of(&f->dst.sa, true, &k->dst);
}

/* The two tables of kernel flows (fwx__omap rather than uthash: the hash operations were most of
   a conntrack event's cost in this file, each a cache miss in a record; util/omap.c). */
static uint64_t conn_hash(const IFWXConnection *c) { return fwx__hash_u64((uint64_t)(uintptr_t)c); }
static bool kflow_is_conn(const void *v, const void *key) { return ((const kflow *)v)->conn == key; }
static bool kflow_is_key(const void *v, const void *key)
{
    return memcmp(&((const kflow *)v)->key, key, sizeof(kflow_key)) == 0;
}

/* k (key and conn set) in both tables; false (in neither): out of memory. */
static bool kflow_add(nstate *st, kflow *k)
{
    k->h_tuple = fwx__hash_bytes(&k->key, sizeof k->key);
    if (!fwx__omap_put(&st->kflow_by_conn, conn_hash(k->conn), k))
        return false;
    if (!fwx__omap_put(&st->kflow_by_tuple, k->h_tuple, k)) {
        (void)fwx__omap_del(&st->kflow_by_conn, conn_hash(k->conn), k);
        return false;
    }
    return true;
}

/* A flow admitted but not trackable (out of memory): the core's connection closes and the
   kernel's entry goes, as for a flow the core refused. */
static void kflow_untracked(nstate *st, kflow *k)
{
    NLOG(st, FWX_LOG_WARN, "out of memory tracking a kernel flow: its connection closed, the flow killed");
    fwx_connection_close(k->conn);
    (void)fwx__ct_kill(st->ct, &k->flow);
    psess_unref(k->ps);
    free(k);
}

static kflow *kflow_of_conn(nstate *st, IFWXConnection *c)
{
    return fwx__omap_find(&st->kflow_by_conn, conn_hash(c), kflow_is_conn, c);
}

/* Adds a flow's final counters to its connection. Conntrack counts by its original direction,
   which is the client's for a permission and the remote peer's for a bound port (the server
   of active FTP connects in): "from the client" follows the connection's client, learnt once
   when the flow was admitted (k->orig_is_client). */
static void kflow_count(kflow *k, uint64_t bytes_orig, uint64_t bytes_reply)
{
    if (k->orig_is_client)
        fwx_connection_count_bytes(k->conn, bytes_orig, bytes_reply);
    else
        fwx_connection_count_bytes(k->conn, bytes_reply, bytes_orig);
}

/* One more hold of the NAT session of client_ep's address (the core's, opened if it has none);
   NULL when the core refuses it (logged there) or out of memory. */
static psess *psess_hold(nstate *st, const struct sockaddr *client_ep)
{
    struct sockaddr_storage client;
    memcpy(&client, client_ep, fwx__sa_len(client_ep));
    fwx__sa_set_port((struct sockaddr *)&client, 0);
    IFWXSession *s = NULL;
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, (struct sockaddr *)&client,
                             fwx__sa_len((struct sockaddr *)&client), NULL, 0, NULL};
    fwx_result hr = fwx_session_open(st->fw, &sp, &s);
    if (FWX_FAILED(hr))
        return NULL;
    fwx__sa_key key;
    fwx__sa_key_of((const struct sockaddr *)&client, false, &key);
    psess *ps = NULL;
    HASH_FIND(hh, st->psessions, &key, sizeof key, ps);
    if (ps != NULL && ps->s == s) {
        IFWXSession_Release(s);
        ps->flows++;
        return ps;
    }
    if (ps != NULL) {
        /* The core ended that session under its holders (fwxctl kill, an embedder's
           fwx_session_close): they keep theirs until they go, new flows get the new one. */
        HASH_DEL(st->psessions, ps);
        ps->hashed = false;
    }
    if ((ps = calloc(1, sizeof *ps)) == NULL) {
        if (hr == FWX_S_OK)
            fwx_session_close(s); /* ours alone; an existing one (S_FALSE) is left to its holders */
        IFWXSession_Release(s);
        return NULL;
    }
    ps->key = key;
    ps->st = st;
    ps->s = s;
    ps->flows = 1;
    ps->hashed = true;
    HASH_ADD(hh, st->psessions, key, sizeof ps->key, ps);
    return ps;
}

static void psess_unref(psess *ps)
{
    if (ps == NULL || --ps->flows > 0)
        return;
    if (ps->hashed)
        HASH_DEL(ps->st->psessions, ps);
    fwx_session_close(ps->s);
    IFWXSession_Release(ps->s);
    free(ps);
}

/* The backend's state goes (state_free) while intercepted TCP relays may still hold sessions:
   their pumps end from the loop after the stop. Every session leaves the table here and no
   longer points at the state; its holders keep it, and the last one's release ends it as
   before (psess_unref touches st only for a hashed session). udp.c's flows and the kernel
   flows have let go by now (they end synchronously in state_free). */
static void psess_detach_all(nstate *st)
{
    psess *ps, *tmp;
    HASH_ITER(hh, st->psessions, ps, tmp) {
        HASH_DEL(st->psessions, ps);
        ps->hashed = false;
        ps->st = NULL;
    }
}

struct fwx__nft_sess *fwx__nft_session_hold(fwx_firewall *fw, const struct sockaddr *client)
{
    nstate *st = state_of(fw);
    return st != NULL ? psess_hold(st, client) : NULL;
}

IFWXSession *fwx__nft_session(const struct fwx__nft_sess *h) { return h->s; }

void fwx__nft_session_release(struct fwx__nft_sess *h) { psess_unref(h); }

/* A kernel flow a grant admitted joins its session's holders when the backend holds that
   session for another flow: a TFTP transfer's session, held by the request's flow in udp.c,
   then lasts as long as the transfer (until conntrack destroys the flow), not just the
   request's idle period, and ends with it; an FTP data flow joins the session its intercepted
   control connection holds. */
static psess *psess_join(nstate *st, IFWXConnection *c, const struct sockaddr *client)
{
    if (st->psessions == NULL)
        return NULL; /* no session held */
    IFWXSession *s = NULL;
    if (IFWXConnection_GetSession(c, &s) != FWX_S_OK || s == NULL)
        return NULL;
    fwx__sa_key key;
    fwx__sa_key_of(client, false, &key); /* the address only: the port is not part of the key */
    psess *ps = NULL;
    HASH_FIND(hh, st->psessions, &key, sizeof key, ps);
    if (ps != NULL && ps->s == s)
        ps->flows++;
    else
        ps = NULL;
    IFWXSession_Release(s);
    return ps;
}

/* The kernel no longer carries the flow: forget it and close its connection (ConnectionTerminating). */
static void kflow_end(nstate *st, kflow *k)
{
    (void)fwx__omap_del(&st->kflow_by_conn, conn_hash(k->conn), k);
    (void)fwx__omap_del(&st->kflow_by_tuple, k->h_tuple, k);
    /* Out of both tables first: the core's close asks n_kill to end the flow, which finds
       nothing (its lookup probes the slot the delete above just touched). */
    fwx_connection_close(k->conn);
    psess_unref(k->ps);
    free(k);
}

/* Drops new entries of f's tuple for FWX_NFT_REFUSED_SECS (rules.h: refused4/6). */
static void refuse_tuple(nstate *st, const fwx__ct_flow *f)
{
    const struct sockaddr *src = &f->src.sa, *dst = &f->dst.sa;
    char fa;
    kbytes key = kb(src, dst, l4proto(f->protocol), fwx__sa_port(dst));
    if (key.n == 0 || !fam_of(src, &fa))
        return;
    char set[16];
    snprintf(set, sizeof set, "refused%c", fa);
    fwx__nftnl_op op = {.set = set, .kbin = key.b, .klen = key.n, .timeout_ms = (uint64_t)FWX_NFT_REFUSED_SECS * 1000};
    if (apply_after_pend(st, &op, 1) != 0) {
        elem_error(st, &op);
        NLOG(st, FWX_LOG_WARN, "refusing a flow: adding the element failed: %s", st->err);
    }
}

/*
 * A handler of the event (fwx_Udp_Destination, fwx_Connect_Tcp) attached a data filter to a
 * flow the kernel already forwards: the kernel cannot run it, and carrying the flow without it
 * would be a silent bypass. The flow is refused (the caller kills it) with a line naming the
 * filter(s). Protocols the policy binds a filter to never get here: the compiled policy steers
 * them into fwx from the first packet (compile.c, udp.c, intercept.c).
 */
static bool kernel_flow_filtered(nstate *st, IFWXConnection *c)
{
    uint32_t n = fwx_connection_data_filters(c);
    fwx_object_info ci = {.struct_size = sizeof ci};
    if (n == 0)
        return false;
    if (fwx_connection_info(c, &ci) != FWX_S_OK)
        memset(&ci, 0, sizeof ci); /* the refusal is said all the same, without the connection's facts */
    char names[256] = "", a[FWX__SA_STRLEN];
    size_t at = 0;
    for (uint32_t i = 0; i < n && at + 1 < sizeof names; i++) {
        const char *owner = fwx_connection_data_filter_owner(c, i);
        int w = snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "",
                         owner != NULL && owner[0] != '\0' ? owner : "the host's");
        if (w < 0)
            break;
        at += (size_t)w < sizeof names - at ? (size_t)w : sizeof names - at - 1;
    }
    NLOG(st, FWX_LOG_WARN,
         "connection %llu (%s to %s): %u data filter(s) attached (plugin %s) to a flow the kernel forwards by the "
         "policy; the kernel cannot run them: flow refused (bind the filter to the protocol in the policy so it is "
         "intercepted from its first packet)",
         (unsigned long long)ci.id, ci.protocol == FWX_PROTOCOL_UDP ? "UDP" : "TCP",
         fwx__sa_fmt((const struct sockaddr *)&ci.peer, a), (unsigned)n, names);
    return true;
}

/*
 * A primary connection the compiled policy let the kernel forward (its NEW event carries the
 * policy mark): the core hears of it as a kernel-mode primary connection of the client's NAT
 * session, so fwxctl lists it, filters hooking the event see it and its bytes are counted. The
 * core has the last word: a flow it refuses (a rule the kernel could not express) is killed.
 */
static void policy_flow_new(nstate *st, const fwx__ct_flow *f)
{
    psess *ps = psess_hold(st, &f->src.sa);
    if (ps == NULL)
        return;
    const struct sockaddr *dst = &f->dst.sa;
    fwx_connection_params cp;
    memset(&cp, 0, sizeof cp);
    cp.struct_size = sizeof cp;
    cp.event = f->protocol == FWX_PROTOCOL_UDP ? fwx_Udp_Destination : fwx_Connect_Tcp;
    cp.protocol = f->protocol;
    cp.external_peer = dst;
    cp.external_peer_len = fwx__sa_len(dst);
    IFWXConnection *c = NULL;
    kflow *k = NULL;
    bool filtered = false;
    if (FWX_SUCCEEDED(fwx_connection_open(ps->s, &cp, &c)))
        filtered = kernel_flow_filtered(st, c);
    if (c == NULL || filtered || (k = calloc(1, sizeof *k)) == NULL) {
        if (c != NULL)
            fwx_connection_close(c);
        if (filtered)
            refuse_tuple(st, f); /* before the kill: the flow's next packet must not pass again */
        (void)fwx__ct_kill(st->ct, f); /* the core refused (or wants filtered) what the kernel let through */
        psess_unref(ps);
        return;
    }
    k->flow = *f;
    kflow_key_of(f, &k->key);
    k->conn = c;
    k->ps = ps;
    k->orig_is_client = true; /* the client's own flow: its session is f->src's */
    if (!kflow_add(st, k))
        kflow_untracked(st, k);
}

static void free_handle(uv_handle_t *h) { free(h); }

static void state_free(nstate *st)
{
    if (st->flush != NULL) { /* the table goes (or is closed) as a whole: the queue is moot */
        st->flush->data = NULL;
        uv_close((uv_handle_t *)st->flush, free_handle);
    }
    free(st->pend);
    fwx__nft_icpt_stop(st->listener);
    fwx__nft_udp_stop(st->udp); /* before the conntrack handle its flows looked up with */
    fwx__nft_udp_stop(st->udp6);
    if (st->ct != NULL)
        fwx__ct_close(st->ct);
    /* One at a time: a flow's end may end its session, which kills (and frees) the session's
       other flows (n_kill), so a list taken beforehand could dangle. */
    size_t cursor = 0;
    for (kflow *k; (k = fwx__omap_any(&st->kflow_by_conn, &cursor)) != NULL;)
        kflow_end(st, k);
    fwx__omap_free(&st->kflow_by_conn);
    fwx__omap_free(&st->kflow_by_tuple);
    /* The table goes (or is replaced by the closed one) as a whole: no element is deleted. */
    ngrant *ng, *ntmp;
    HASH_ITER(hh, st->grants, ng, ntmp)
        untrack(st, ng);
    for (size_t i = 0; i < st->npub; i++) {
        fwx__nft_icpt_stop(st->pubs[i].ul);
        free(st->pubs[i].el);
    }
    free(st->pubs);
    psess_detach_all(st);
    selem *se, *etmp;
    HASH_ITER(hh, st->elems, se, etmp) {
        HASH_DEL(st->elems, se);
        free(se);
    }
    fwx__nftnl_close(st->nl);
    if (st->nft != NULL)
        nft_ctx_free(st->nft);
    free(st);
}


/*
 * Deletions of used one-shot elements are queued and sent at the end of the loop iteration, all
 * of them in one transaction (one read of the event socket brings up to 64 NEW events), each
 * element its own group so one the kernel expired keeps no other. Waiting is safe: the used
 * key already refuses a second connection in the kernel. Any other element operation takes
 * the queue along, ahead of its own in the same transaction (apply_after_pend), so the kernel
 * sees them in the order fwx made them (a delete queued before a new grant of the same key must
 * not land after its add). Adds are never queued: the core's grant_add needs its result when it
 * returns.
 */
/* Moves the queued deletions into ops (room for st->npend), each its own group; their count. */
static size_t pend_take(nstate *st, fwx__nftnl_op *ops)
{
    size_t n = st->npend;
    for (size_t i = 0; i < n; i++)
        ops[i] = (fwx__nftnl_op){.del = true, .set = st->pend[i].set, .kbin = st->pend[i].key, .klen = st->pend[i].len,
                                 .group = (uint32_t)i};
    st->npend = 0;
    return n;
}

/* The queued deletions that failed, after their apply (a once element the kernel expired is no error). */
static void pend_report(nstate *st, const fwx__nftnl_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i].err != 0 && !(ops[i].err == ENOENT && strncmp(ops[i].set, "once", 4) == 0)) {
            elem_error(st, &ops[i]);
            NLOG(st, FWX_LOG_WARN, "used one-shot permission: deleting failed: %s", st->err);
        }
}

/*
 * Applies the queued deletions and then ops[0..n) in one call of nl.c (one transaction where
 * they fit): the kernel sees them in the order fwx made them, and a delete queued before a grant
 * of the same key lands before its add. The queued ones are each their own group, ops keep
 * theirs (after them); the queued ones' failures are logged here, ops get their own errors.
 * Returns as fwx__nftnl_apply does, for ops only.
 */
static int apply_after_pend(nstate *st, fwx__nftnl_op *ops, size_t n)
{
    size_t np = st->npend;
    fwx__nftnl_op *all = np > 0 ? calloc(np + n, sizeof *all) : NULL;
    if (np > 0 && all == NULL) {
        NLOG(st, FWX_LOG_WARN, "out of memory deleting %zu used one-shot elements: their keys stay refused", np);
        st->npend = 0;
    }
    if (all == NULL)
        return n > 0 ? fwx__nftnl_apply(st->nl, ops, n) : 0;
    pend_take(st, all);
    for (size_t i = 0; i < n; i++) {
        all[np + i] = ops[i];
        all[np + i].group += (uint32_t)np;
    }
    int rc = fwx__nftnl_apply(st->nl, all, np + n);
    pend_report(st, all, np);
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += (ops[i].err = all[np + i].err) != 0;
    free(all);
    return rc < 0 ? rc : failed;
}

static void pend_flush(nstate *st) { (void)apply_after_pend(st, NULL, 0); }

static void on_flush(uv_prepare_t *h)
{
    uv_prepare_stop(h);
    if (h->data != NULL)
        pend_flush(h->data);
}

/* Queues k for pend_flush; false when it cannot (the caller flushes at once). */
static bool pend_push(nstate *st, const ekey *k)
{
    if (!grow(&st->pend, st->npend, &st->cappend, sizeof *st->pend, 64))
        return false;
    if (st->flush == NULL) {
        uv_prepare_t *h = calloc(1, sizeof *h);
        if (h == NULL || uv_prepare_init(fwx_firewall_loop(st->fw), h) != 0) {
            free(h);
            return false;
        }
        h->data = st;
        st->flush = h;
    }
    if (uv_prepare_start(st->flush, on_flush) != 0)
        return false;
    st->pend[st->npend++] = *k;
    return true;
}

/* An element of a one-shot set (once4, once6)? */
static bool is_once(const ekey *k) { return memcmp(k->set, "once", 4) == 0; }

/* One more or one less one-shot element. While there is any, conntrack events are read as
   they come, not paced (ct.h, fwx__ct_set_paced): a flow's NEW event must be matched against
   the permissions of the instant it passed, or a one-shot permission of the same key granted
   within the pacing delay (an FTP client's next PASV to the same server port) would be taken
   for the earlier flow's and deleted under its own data connection. */
static void once_counted(nstate *st, int delta)
{
    bool had = st->n_once > 0;
    st->n_once = (unsigned)((int)st->n_once + delta);
    if (had != (st->n_once > 0))
        fwx__ct_set_paced(st->ct, st->n_once == 0);
}

/* The used set of a one-shot set's element: "once4" -> "used4" (rules.h). */
static const char *used_set(const ekey *k) { return k->set[4] == '6' ? "used6" : "used4"; }

/* A kernel flow was admitted by a one-shot element: the forward rule put its key in the used
   set, and the element is deleted, with that key, from the control plane at the end of this
   loop iteration (pend_flush; rules.h: the packet path deletes nothing, so the same key can be
   granted again at once). Marked gone so
   that the grant's removal does not delete it again. The element's key is the tuple the
   forward hook saw: the source, and the destination after DNAT (the reply tuple's source). */
static void consume_once(nstate *st, const fwx__ct_flow *f)
{
    if (st->n_once == 0)
        return; /* no one-shot element: nothing to look up (most flows of a busy gateway) */
    const struct sockaddr *src = &f->src.sa, *dst = &f->reply_src.sa;
    char fs;
    ekey k;
    memset(&k, 0, sizeof k);
    size_t n = fwx__nftnl_key(k.key, sizeof k.key, src, dst, l4proto(f->protocol), fwx__sa_port(dst));
    if (n == 0 || !fam_of(src, &fs))
        return;
    k.len = (uint8_t)n;
    memcpy(k.set, "once", 4); /* "once4" / "once6" (k is zeroed) */
    k.set[4] = fs;
    selem *se = elem_find(st, &k);
    if (se != NULL && se->late_news > 0) {
        se->late_news--; /* an earlier grant's flow (once_taken_early): this element stays */
        return;
    }
    if (se == NULL || se->gone)
        return;
    se->gone = true;
    ekey used = se->e.k;
    snprintf(used.set, sizeof used.set, "%s", used_set(&se->e.k));
    if (!pend_push(st, &se->e.k) || !pend_push(st, &used))
        pend_flush(st); /* no room to queue: at once */
}

/* ct.c's lines (events lost, kills refused, the namespace's settings at close) in the firewall's log. */
static void ct_log(void *arg, fwx_log_level level, const char *msg) { NLOG((nstate *)arg, level, "%s", msg); }

static void on_ct(void *arg, int event, const fwx__ct_flow *f)
{
    nstate *st = arg;
    if (event == FWX__CT_NEW && (f->mark & FWX_NFT_CT_POLICY_BIT)) {
        policy_flow_new(st, f);
        return;
    }
    if (event == FWX__CT_NEW) {
        consume_once(st, f);
        /* The client's view (before DNAT): a permission's target, or a bound port. The core
           consumes a one-shot grant (the kernel already deleted its element) and tells the
           filter that asked. */
        const struct sockaddr *src = &f->src.sa, *dst = &f->dst.sa;
        fwx_flow fl = {sizeof fl, f->protocol, src, fwx__sa_len(src), dst, fwx__sa_len(dst)};
        IFWXConnection *c = NULL;
        fwx_result hr = fwx_firewall_admit(st->fw, &fl, &c);
        const struct sockaddr *nat_dst = &f->reply_src.sa;
        if (hr == FWX_E_NOT_FOUND && !fwx__sa_same_endpoint(dst, nat_dst)) {
            /* A DNAT of a FWX_FLAG_REPLY_FROM_PEER permission (reply_elems): the permission is
               for where the answer went, the client's port. */
            fl.destination = nat_dst;
            fl.destination_len = fwx__sa_len(nat_dst);
            hr = fwx_firewall_admit(st->fw, &fl, &c);
        }
        kflow *k = FWX_SUCCEEDED(hr) ? calloc(1, sizeof *k) : NULL;
        if (k == NULL) {
            if (FWX_SUCCEEDED(hr)) {
                fwx_connection_close(c);
            } else {
                /* The kernel let through what the core does not grant (a grant withdrawn in
                   the same instant): the core has the last word. */
                char a[FWX__SA_STRLEN], b[FWX__SA_STRLEN];
                NLOG(st, FWX_LOG_WARN, "kernel flow %s -> %s has no grant (%s): killed", fwx__sa_fmt(src, a),
                     fwx__sa_fmt(dst, b), fwx_strerror(hr));
            }
            (void)fwx__ct_kill(st->ct, f);
            return;
        }
        k->flow = *f;
        kflow_key_of(f, &k->key);
        k->conn = c;
        /* The connection's client, asked once: which direction is the client's (kflow_count)
           and whose held session the flow joins. */
        fwx_object_info ci = {.struct_size = sizeof ci};
        bool known = fwx_connection_info(c, &ci) == FWX_S_OK;
        const struct sockaddr *client = (const struct sockaddr *)&ci.client;
        k->orig_is_client = !known || fwx__sa_same_ip(src, client);
        k->ps = known ? psess_join(st, c, client) : NULL;
        if (!kflow_add(st, k))
            kflow_untracked(st, k);
        return;
    }
    kflow_key key;
    kflow_key_of(f, &key);
    kflow *k = fwx__omap_find(&st->kflow_by_tuple, fwx__hash_bytes(&key, sizeof key), kflow_is_key, &key);
    if (k == NULL)
        return;
    if (event == FWX__CT_END) {
        /* The TCP connection is over (TIME_WAIT or CLOSE) though the entry lingers: end it now,
           with the counters read from the entry (an update event carries none). The entry is
           left to conntrack: deleting it early made about 1 in 100 of the next data
           connections on the same client port fail under load (bench/kernel.sh), and a late
           packet of the old flow must not look like a new connection. */
        uint64_t orig = 0, reply = 0;
        fwx_result hr = fwx__ct_get_counted(st->ct, &k->flow, &orig, &reply);
        if (hr == FWX_S_OK)
            kflow_count(k, orig, reply);
        kflow_end(st, k);
        return;
    }
    kflow_count(k, f->bytes_orig, f->bytes_reply);
    kflow_end(st, k);
}

static fwx_result n_open(const fwx_backend *self, fwx_firewall *fw, void **state)
{
    (void)self;
    nstate *st = calloc(1, sizeof *st);
    if (st == NULL)
        return FWX_E_OUTOFMEMORY;
    st->magic = NSTATE_MAGIC;
    st->fw = fw;
    fwx__nft_table_name(fwx_firewall_name(fw), st->table, sizeof st->table);
    fwx_firewall_options opts;
    fwx_firewall_options_init(&opts);
    if (FWX_FAILED(fwx_firewall_get_options(fw, &opts))) {
        free(st);
        return FWX_E_INVALIDARG;
    }
    st->open_on_stop = opts.kernel_open_on_stop;
    if ((st->nft = nft_ctx_new(NFT_CTX_DEFAULT)) == NULL) {
        free(st);
        return FWX_E_OUTOFMEMORY;
    }
    nft_ctx_buffer_output(st->nft);
    nft_ctx_buffer_error(st->nft);
    nft_ctx_output_set_flags(st->nft, NFT_CTX_OUTPUT_NUMERIC_ALL);

    /* A table of our name: a crash (or kill -9) of an earlier instance left it. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "list table inet %s\n", st->table);
    errno = 0;
    int rc = nft_run_cmd_from_buffer(st->nft, cmd);
    int err = errno;
    const char *out = nft_ctx_get_output_buffer(st->nft);
    long old_pid = rc == 0 ? leftover_pid(out) : 0;
    bool was_closed = rc == 0 && out != NULL && strstr(out, FWX_NFT_CLOSED_TAG) != NULL; /* a clean stop's */
    const char *e = nft_ctx_get_error_buffer(st->nft);
    snprintf(st->err, sizeof st->err, "%.*s", (int)strcspn(e ? e : "", "\n"), e ? e : "");
    bool leftover = rc == 0;
    if (rc != 0 && is_eperm(st, err)) {
        NLOG(st, FWX_LOG_ERROR, "no right to change the network here (needs CAP_NET_ADMIN in this network namespace);"
                                " use the \"proxy\" backend");
        state_free(st);
        return FWX_E_NOT_SUPPORTED;
    }
    if (fwx__nft_pretend_missing & FWX__NFT_F_NF_TABLES) {
        NLOG(st, FWX_LOG_ERROR, "kernel lacks: nf_tables (pretended by a test); use the \"proxy\" backend");
        state_free(st);
        return FWX_E_NOT_SUPPORTED;
    }

    /* Closed from the first moment: a table left by a crash or by a clean
       stop is replaced, in one batch, by the closed table, in which the probe runs; the whole
       ruleset then replaces that in one batch too. The forward hook never lacks a drop. */
    errno = 0;
    if (install_closed(st) != 0) {
        bool perm = is_eperm(st, errno);
        if (perm)
            NLOG(st, FWX_LOG_ERROR, "no right to change the network here (needs CAP_NET_ADMIN in this network "
                                    "namespace); use the \"proxy\" backend");
        else
            NLOG(st, FWX_LOG_ERROR, "kernel lacks: nf_tables (%s); use the \"proxy\" backend", st->err);
        state_free(st);
        return FWX_E_NOT_SUPPORTED;
    }
    if (was_closed)
        NLOG(st, FWX_LOG_INFO, "table inet %s kept forwarding closed since an earlier run stopped (pid %ld); replaced",
             st->table, old_pid);
    else if (leftover && old_pid > 0)
        NLOG(st, FWX_LOG_WARN, "table inet %s was left by an earlier run (pid %ld%s); replaced", st->table, old_pid,
             old_pid != (long)getpid() && kill((pid_t)old_pid, 0) == 0 ? ", still running" : "");
    else if (leftover)
        NLOG(st, FWX_LOG_WARN, "table inet %s was left by an earlier run; replaced", st->table);

    fwx__nft_probe(st->nft, st->table, &st->feat);
    unsigned missing = fwx__nft_missing(&st->feat);
    char names[256];
    fwx__nft_feature_names(missing, names, sizeof names);
    if (missing & FWX__NFT_REQUIRED) {
        NLOG(st, FWX_LOG_ERROR, "kernel lacks: %s; use the \"proxy\" backend", names);
        leave_table(st, "not started");
        state_free(st);
        return FWX_E_NOT_SUPPORTED;
    }

    /* The redirect identity of this instance is the firewall's (a host may give its own, see
       fwx_firewall_redirect_local). The core swept the registry of dead writers' files. */
    st->slot = -1;
    /* fwx's interception listener first: the table's rules point at its port. It carries
       filter-bound primary connections and user-mode secondary ones. */
    if (FWX_FAILED(fwx__nft_icpt_start(fw, &st->listener, &st->icpt)))
        NLOG(st, FWX_LOG_WARN, "interception listener unavailable: filter-bound protocols and user-mode secondary "
                               "connections will not be carried");
    /* UDP on the same port number, so one `redirect to :port` serves both protocols. The
       original destination of a UDP flow is read from conntrack (udp.c): without ctnetlink,
       UDP flows that need user mode are not carried (said at each grant). */
    struct {
        int family;
        uint16_t port;
        struct fwx__nft_udp **u;
        bool *on;
    } const socks[] = {{AF_INET, st->icpt.port, &st->udp, &st->icpt.udp},
                       {AF_INET6, st->icpt.port6, &st->udp6, &st->icpt.udp6}};
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++) {
        if (socks[i].port == 0 || !st->feat.conntrack || !st->feat.ct_events)
            continue;
        fwx_result uhr = fwx__nft_udp_start(fw, socks[i].family, socks[i].port, socks[i].u);
        *socks[i].on = FWX_SUCCEEDED(uhr);
        if (FWX_FAILED(uhr))
            NLOG(st, FWX_LOG_WARN, "UDP interception unavailable over IPv%c (port %u: %s): those UDP flows that need "
                                   "a data filter will not be carried", socks[i].family == AF_INET ? '4' : '6',
                 (unsigned)socks[i].port, fwx_strerror(uhr));
    }
    sbuf r = {0};
    sb_printf(&r, "delete table inet %s\n", st->table); /* the closed one, in the same batch */
    ruleset_text(&r, st->table, st->icpt.port, st->icpt.port6);
    if (r.oom || run(st, r.p) != 0) {
        NLOG(st, FWX_LOG_ERROR, "creating table inet %s failed: %s", st->table, r.oom ? "out of memory" : st->err);
        free(r.p);
        leave_table(st, "not started");
        state_free(st);
        return r.oom ? FWX_E_OUTOFMEMORY : FWX_E_BACKEND;
    }
    free(r.p);
    fwx_result nhr = fwx__nftnl_open(st->table, &st->nl);
    if (FWX_FAILED(nhr)) {
        NLOG(st, FWX_LOG_ERROR, "netlink socket for table inet %s: %s", st->table, fwx_strerror(nhr));
        leave_table(st, "not started");
        state_free(st);
        return nhr == FWX_E_OUTOFMEMORY ? nhr : FWX_E_NOT_SUPPORTED;
    }
    /* Withdrawing an unused one-shot permission destroys its key in the used set (elems_delete):
       without the kernel's destroy that is a delete that fails and is rolled back, slower. */
    if (!fwx__nftnl_probe_destroy(st->nl, "used4", "0.0.0.0 . 0.0.0.0 . 0 . 0"))
        NLOG(st, FWX_LOG_INFO, "kernel has no set element destroy (Linux 6.3): withdrawing an unused one-shot "
                               "permission costs a failed delete");
    if (missing)
        NLOG(st, FWX_LOG_WARN, "table inet %s ready; kernel lacks: %s (those features stay in user mode)", st->table,
             names);
    else
        NLOG(st, FWX_LOG_INFO, "table inet %s ready; kernel has every feature fwx uses", st->table);
    /* Conntrack events turn kernel-carried secondary flows into the core's connections:
       EstablishedConnection, byte counts, ConnectionTerminating, Kill. Without them the
       kernel still enforces every grant; the core just does not see the flows. */
    if (st->feat.ct_events) {
        if (FWX_SUCCEEDED(fwx__ct_open(fwx_firewall_loop(fw), on_ct, st, &st->ct))) {
            fwx__ct_set_log(st->ct, ct_log, st);
            /* Only flows with fwx's mark cross to us (the kernel filters); refused: logged by ct.c. */
            (void)fwx__ct_set_mark_filter(st->ct, FWX_NFT_CT_ADMITTED_BIT, FWX_NFT_CT_ADMITTED_BIT);
            if (opts.kernel_end_on_close && FWX_FAILED(fwx__ct_follow_updates(st->ct)))
                NLOG(st, FWX_LOG_WARN, "conntrack update events unavailable: kernel flows end after TIME_WAIT");
            /* Namespace-wide settings: say which were switched on, once; ct.c restores them
               at close unless another fwx instance still uses them, and says so. */
            fwx__ct_stats cs;
            fwx__ct_get_stats(st->ct, &cs);
            if (cs.switched & (FWX__CT_SWITCHED_ACCT | FWX__CT_SWITCHED_EVENTS))
                NLOG(st, FWX_LOG_INFO, "switched on %s%s%s in this network namespace; %s",
                     (cs.switched & FWX__CT_SWITCHED_ACCT) ? "net.netfilter.nf_conntrack_acct (byte counts)" : "",
                     (cs.switched & FWX__CT_SWITCHED_ACCT) && (cs.switched & FWX__CT_SWITCHED_EVENTS) ? " and " : "",
                     (cs.switched & FWX__CT_SWITCHED_EVENTS) ? "net.netfilter.nf_conntrack_events" : "",
                     (cs.switched & FWX__CT_SWITCHED_UNCOUNTED) ? "left on at exit (no count of fwx instances "
                                                                  "could be kept in /run/fwx/conntrack)"
                                                                : "switched off at exit unless another fwx "
                                                                  "instance still uses them");
        } else
            NLOG(st, FWX_LOG_WARN, "conntrack events unavailable: kernel-mode flows will not be reported");
    }
    /* The policy comes next, through policy_changed: the core calls it right after open. */
    *state = st;
    return FWX_S_OK;
}

static void n_close(void *state)
{
    nstate *st = state;
    leave_table(st, "stopped");
    state_free(st);
}

/* ---- grants ---------------------------------------------------------------------------------- */

static ngrant *grant_find(nstate *st, uint64_t id)
{
    ngrant *ng = NULL;
    HASH_FIND(hh, st->grants, &id, sizeof id, ng);
    return ng;
}

/* The zeroed slot after the n entries of a growing array (room doubled from `first` when it is
   full); the caller counts it in. FWX_E_OUTOFMEMORY leaves the array as it was. */
static fwx_result ngrant_slot(ngrant **arr, size_t n, size_t *cap, size_t first, ngrant **out)
{
    if (!grow(arr, n, cap, sizeof **arr, first))
        return FWX_E_OUTOFMEMORY;
    *out = &(*arr)[n];
    memset(*out, 0, sizeof **out);
    return FWX_S_OK;
}

static const char *kind_name(fwx_grant_kind k)
{
    switch (k) {
    case FWX_GRANT_PERMISSION:
        return "permission";
    case FWX_GRANT_BINDING:
        return "bound port";
    case FWX_GRANT_REDIRECT:
        return "redirect port";
    case FWX_GRANT_CLIENT_BIND:
        return "client bind";
    default:
        return "grant";
    }
}
/* ---- elements: what the table holds, shared and ref-counted ------------------------------------ */

static selem *elem_find(nstate *st, const ekey *k)
{
    selem *se = NULL;
    HASH_FIND(hh, st->elems, k, sizeof *k, se);
    return se;
}

/* The errno of a failed element as text for st->err, naming the element. */
static void elem_error(nstate *st, const fwx__nftnl_op *op)
{
    char text[160];
    snprintf(st->err, sizeof st->err, "element %s { %s }: %s", op->set,
             op->klen > 0 ? ekey_text(op->set, op->kbin, op->klen, text, sizeof text) : op->key,
             op->err == EPROTO ? "no answer from the kernel" : strerror(op->err));
}

/*
 * A one-shot key granted again while an earlier grant holds it (an active-mode FTP client that
 * keeps its data port: every PORT binds a new gateway port to the same client port, so every
 * binding's element is "server . client . tcp . port"). The earlier grant's connection may have
 * passed already with its NEW event still unread (events are read on the loop, after this
 * call): its key is then in the used set, where it would refuse the new grant's connection,
 * and the late NEW would consume the element the new grant shares. So the kernel is asked (one
 * lookup, only in this case): a used key is deleted with its element now, as that NEW would
 * have, and the NEW is counted as coming (late_news), so it consumes nothing when it comes.
 */
static void once_taken_early(nstate *st, selem *se)
{
    const ekey *k = &se->e.k;
    if (!is_once(k) || se->gone)
        return;
    int used = fwx__nftnl_has(st->nl, used_set(k), k->key, k->len);
    if (used < 0) {
        NLOG(st, FWX_LOG_WARN, "one-shot permission granted again: cannot ask whether its key was used: %s",
             strerror(-used));
        return;
    }
    if (used == 0)
        return;
    se->gone = true;
    se->late_news++;
    ekey u = *k;
    snprintf(u.set, sizeof u.set, "%s", used_set(k));
    if (!pend_push(st, k) || !pend_push(st, &u))
        pend_flush(st); /* no room to queue: at once (before the add, still) */
}

/*
 * Puts the elements of es in the table through netlink, as one group: all of them or none
 * (the others of a batch, were there any, would stand). Each with a timeout of `left` ms when
 * nonzero. On success *out (NULL when es is empty) holds one reference on each element.
 * FWX_E_BACKEND with st->err naming the element the kernel refused, FWX_E_OUTOFMEMORY.
 */
static fwx_result elems_commit(nstate *st, const elems *es, uint64_t left, selem ***out)
{
    *out = NULL;
    if (es->n == 0)
        return FWX_S_OK;
    fwx__nftnl_op *ops = calloc(es->n, sizeof *ops);
    selem **refs = calloc(es->n, sizeof *refs);
    fwx_result hr = ops != NULL && refs != NULL ? FWX_S_OK : FWX_E_OUTOFMEMORY;
    /* New elements' records first: once the kernel holds an element, it is tracked. */
    for (size_t i = 0; FWX_SUCCEEDED(hr) && i < es->n; i++) {
        const nelem *e = &es->el[i];
        ops[i] = (fwx__nftnl_op){.set = e->k.set, .kbin = e->k.key, .klen = e->k.len, .dbin = e->data,
                                 .dlen = e->dlen, .timeout_ms = left};
        refs[i] = elem_find(st, &e->k);
        if (refs[i] != NULL)
            once_taken_early(st, refs[i]);
        else {
            selem *se = calloc(1, sizeof *se);
            if (se == NULL)
                hr = FWX_E_OUTOFMEMORY;
            else
                se->e = *e; /* refs 0: not in the hash yet */
            refs[i] = se;
        }
    }
    if (FWX_SUCCEEDED(hr)) {
        int rc = apply_after_pend(st, ops, es->n); /* a queued delete of a key added again goes first */
        if (rc != 0) {
            snprintf(st->err, sizeof st->err, "netlink: %s", strerror(rc < 0 ? -rc : EIO));
            for (size_t i = 0; i < es->n; i++)
                if (ops[i].err != 0 && ops[i].err != ECANCELED) {
                    elem_error(st, &ops[i]);
                    break;
                }
            hr = rc == -ENOMEM ? FWX_E_OUTOFMEMORY : FWX_E_BACKEND;
        }
    }
    for (size_t i = 0; refs != NULL && i < es->n; i++) {
        selem *se = refs[i];
        if (se == NULL || se->refs > 0 || elem_find(st, &se->e.k) == se)
            continue;
        if (FWX_FAILED(hr)) {
            free(se); /* a new record of an element the kernel did not take */
            refs[i] = NULL;
            continue;
        }
        selem *dup = elem_find(st, &se->e.k);
        if (dup != NULL) { /* the same element twice in es */
            free(se);
            refs[i] = dup;
        } else {
            HASH_ADD(hh, st->elems, e.k, sizeof(ekey), se);
            if (is_once(&se->e.k))
                once_counted(st, +1);
        }
    }
    if (FWX_SUCCEEDED(hr)) {
        for (size_t i = 0; i < es->n; i++) {
            refs[i]->refs++;
            refs[i]->gone = false; /* added again if the packet path had consumed it */
        }
        *out = refs;
        refs = NULL;
    }
    free(refs);
    free(ops);
    return hr;
}

/* Drops ng's references; an element nobody holds any more leaves the hash and is appended
   to dead (the caller deletes it from the kernel: elems_delete). */
static void elems_release(nstate *st, ngrant *ng, selem **dead, size_t *ndead)
{
    for (size_t i = 0; i < ng->n; i++) {
        selem *se = ng->el[i];
        if (--se->refs > 0)
            continue;
        HASH_DEL(st->elems, se);
        if (is_once(&se->e.k))
            once_counted(st, -1);
        dead[(*ndead)++] = se;
    }
    free(ng->el);
    ng->el = NULL;
    ng->n = 0;
}

/* Deletes dead elements from the kernel, each on its own (one that is gone already does not
   keep the others), in as few transactions as nl.c can, and frees them. A consumed one-shot
   element is not deleted again (consume_once did, when its flow came). An unconsumed one's key
   is destroyed in the used set as well: its flow may have passed with its NEW event still to
   read, and a key left there would refuse the next grant of the same key. An element the
   kernel expired is gone too (ENOENT, ignored). */
static void elems_delete(nstate *st, selem **dead, size_t n, const char *what, uint64_t id)
{
    fwx__nftnl_op *ops = n > 0 ? calloc(2 * n, sizeof *ops) : NULL;
    size_t m = 0;
    for (size_t i = 0; ops != NULL && i < n; i++) {
        if (dead[i]->gone)
            continue;
        ops[m] = (fwx__nftnl_op){.del = true, .set = dead[i]->e.k.set, .kbin = dead[i]->e.k.key,
                                 .klen = dead[i]->e.k.len, .group = (uint32_t)m};
        m++;
        if (strncmp(dead[i]->e.k.set, "once", 4) == 0) {
            ops[m] = (fwx__nftnl_op){.del = true, .destroy = true, .set = used_set(&dead[i]->e.k),
                                     .kbin = dead[i]->e.k.key, .klen = dead[i]->e.k.len, .group = (uint32_t)m};
            m++;
        }
    }
    if (n > 0 && ops == NULL)
        NLOG(st, FWX_LOG_WARN, "%s %llu: out of memory deleting %zu elements; they stay until they expire", what,
             (unsigned long long)id, n);
    /* With the queued deletions: a used one-shot grant's flow whose NEW event ends its grant
       queued its element and used key, and the grant's other elements (a bound port's DNAT)
       go in the same transaction. */
    if (apply_after_pend(st, ops, m) != 0) {
        size_t gone = 0;
        for (size_t i = 0; i < m; i++) {
            if (ops[i].err == ENOENT && ops[i].destroy) {
                continue; /* a kernel without destroy: the key was not used */
            } else if (ops[i].err == ENOENT) {
                gone++;
            } else if (ops[i].err != 0) {
                elem_error(st, &ops[i]);
                NLOG(st, FWX_LOG_WARN, "%s %llu: deleting failed: %s", what, (unsigned long long)id, st->err);
            }
        }
        if (gone > 0) /* tests count this line: a consumed one-shot element must never get here */
            NLOG(st, FWX_LOG_DEBUG, "%s %llu: %zu element(s) already gone from the kernel (expired)", what,
                 (unsigned long long)id, gone);
    }
    free(ops);
    for (size_t i = 0; i < n; i++)
        free(dead[i]);
}

/* Releases ng's elements and deletes those nobody else holds. */
static void elems_drop(nstate *st, ngrant *ng, const char *what, uint64_t id)
{
    selem *one[16], **dead = ng->n <= 16 ? one : malloc(ng->n * sizeof *dead);
    size_t n = 0;
    if (dead == NULL) {
        /* Cannot list them: keep them (and their records) until they expire. */
        NLOG(st, FWX_LOG_WARN, "%s %llu: out of memory; its elements stay until they expire", what,
             (unsigned long long)id);
        return;
    }
    elems_release(st, ng, dead, &n);
    elems_delete(st, dead, n, what, id);
    if (dead != one)
        free(dead);
}

/* Tracks a grant whose elements are in place (refs: one per element of es, or NULL). */
static fwx_result track(nstate *st, const fwx_grant *g, const elems *es, selem **refs, bool user)
{
    ngrant *ng = calloc(1, sizeof *ng);
    if (ng == NULL)
        return FWX_E_OUTOFMEMORY;
    ng->g = *g;
    /* The sources were the core's for the grant_add call only (and list() reports none). */
    ng->g.sources = NULL;
    ng->g.n_sources = 0;
    ng->el = refs;
    ng->n = refs != NULL ? es->n : 0;
    ng->user = user;
    HASH_ADD(hh, st->grants, g.id, sizeof ng->g.id, ng);
    /* The interception listener asks where a user-mode port leads (fwx__nft_user_port_target). */
    if (user && (g->kind == FWX_GRANT_BINDING || g->kind == FWX_GRANT_REDIRECT)) {
        ngrant *other = NULL;
        ng->pkey.protocol = g->protocol;
        fwx__sa_key_of((const struct sockaddr *)&g->gateway, true, &ng->pkey.gw);
        HASH_FIND(hh_port, st->uports, &ng->pkey, sizeof ng->pkey, other);
        if (other == NULL) {
            HASH_ADD(hh_port, st->uports, pkey, sizeof ng->pkey, ng);
            ng->ported = true;
        }
    }
    return FWX_S_OK;
}

static void untrack(nstate *st, ngrant *ng)
{
    HASH_DELETE(hh, st->grants, ng);
    if (ng->ported)
        HASH_DELETE(hh_port, st->uports, ng);
    free(ng->el);
    free(ng);
}

/* The grant's remaining time, so the kernel drops its elements on time by itself (0: never). */
static uint64_t grant_left(nstate *st, const fwx_grant *g)
{
    uint64_t now = uv_now(fwx_firewall_loop(st->fw));
    if (g->expires_ms == 0)
        return 0;
    return g->expires_ms > now ? g->expires_ms - now : 1;
}

/*
 * A grant the core wants carried in user mode (a data filter attached or expected,
 * FWX_FLAG_NO_KERNEL_MODE, hooked events): its connections are steered into fwx's
 * interception listener, which admits them through the core and relays them through the
 * connection's data filters. A permission: an element of the user set (redirected before any
 * DNAT); a bound or redirect port: a DNAT of the gateway port to the listener. TCP and UDP,
 * IPv4 and IPv6, as the listeners. UDP without its socket (no conntrack) is refused:
 * FWX_E_NOT_SUPPORTED and a warn line; anything else is tracked but not carried (a warn line
 * says so).
 */
static fwx_result user_mode_elems(nstate *st, const fwx_grant *g, elems *es)
{
    char fa, fb;
    const struct sockaddr *to = (const struct sockaddr *)&g->target;
    bool v6 = to->sa_family == AF_INET6;
    uint16_t lport = v6 ? st->icpt.port6 : st->icpt.port;
    char fam = v6 ? '6' : '4';
    bool udp = g->protocol == FWX_PROTOCOL_UDP;
    if (udp && lport != 0 && !(v6 ? st->icpt.udp6 : st->icpt.udp)) {
        /* No UDP socket of the family (no conntrack to read the original destination, or it
           failed to open, said at open): the grant is refused, so the filter that asked knows. */
        NLOG(st, FWX_LOG_WARN, "%s %llu: a UDP flow in user mode over IPv%c, which this backend cannot carry here "
             "(UDP interception is off: see the line at open): refused", kind_name(g->kind),
             (unsigned long long)g->id, fam);
        return FWX_E_NOT_SUPPORTED;
    }
    if (lport == 0 || (udp && !(v6 ? st->icpt.udp6 : st->icpt.udp)) || (to->sa_family != AF_INET && !v6) ||
        (g->kind != FWX_GRANT_PERMISSION && g->kind != FWX_GRANT_BINDING && g->kind != FWX_GRANT_REDIRECT)) {
        /* Nothing in the kernel lets the flow through either (forward policy drop): refused,
           not bypassed. Said at warn level: the plugin asked for something that will not work. */
        NLOG(st, FWX_LOG_WARN,
             "%s %llu: needs user mode (a data filter, NO_KERNEL_MODE or a hook), which this backend cannot carry "
             "here (TCP, and UDP with conntrack): its flows are dropped",
             kind_name(g->kind), (unsigned long long)g->id);
        return FWX_S_OK;
    }
    int proto = udp ? 17 : 6;
    if (g->kind == FWX_GRANT_PERMISSION) {
        const struct sockaddr *c = (const struct sockaddr *)&g->client;
        if (!fam_of(c, &fa) || !fam_of(to, &fb) || fa != fb)
            return FWX_E_NOT_SUPPORTED;
        kbytes key = kb(c, to, proto, fwx__sa_port(to));
        return add_elem(es, "user", fam, &key, NULL);
    }
    if (fwx__sa_is_unspecified(to) || fwx__sa_port(to) == 0)
        return FWX_S_OK; /* BindForClient before SetClientAddress: re-added then */
    const struct sockaddr *gw = (const struct sockaddr *)&g->gateway;
    if (gw->sa_family != to->sa_family)
        return FWX_E_NOT_SUPPORTED;
    if (!port_free(gw, g->protocol))
        return FWX_E_ADDRINUSE;
    struct sockaddr_storage gws[8];
    size_t ngw = gateway_addrs(st, gw, fam, gws, 8);
    if (ngw == 0)
        return FWX_E_ADDRNOTAVAIL;
    for (size_t i = 0; i < ngw; i++) {
        /* To the listener on the same (local) address; SO_ORIGINAL_DST gives back the port. */
        const struct sockaddr *a = (const struct sockaddr *)&gws[i];
        kbytes key = kb(a, NULL, proto, fwx__sa_port(gw)), data = kb(a, NULL, -1, lport);
        fwx_result hr = add_elem(es, "dnat", fam, &key, &data);
        if (FWX_FAILED(hr))
            return hr;
    }
    return FWX_S_OK;
}
bool fwx__nft_user_port_target(fwx_firewall *fw, int32_t protocol, const struct sockaddr *gw,
                               struct sockaddr_storage *target)
{
    nstate *st = state_of(fw);
    if (st == NULL || (gw->sa_family != AF_INET && gw->sa_family != AF_INET6))
        return false;
    /* The port on that address, else on every address of the family. */
    uport_key k;
    memset(&k, 0, sizeof k);
    k.protocol = protocol;
    fwx__sa_key_of(gw, true, &k.gw);
    ngrant *ng = NULL;
    HASH_FIND(hh_port, st->uports, &k, sizeof k, ng);
    if (ng == NULL) {
        struct sockaddr_storage any;
        memset(&any, 0, sizeof any);
        any.ss_family = gw->sa_family;
        fwx__sa_set_port((struct sockaddr *)&any, fwx__sa_port(gw));
        fwx__sa_key_of((const struct sockaddr *)&any, true, &k.gw);
        HASH_FIND(hh_port, st->uports, &k, sizeof k, ng);
    }
    if (ng == NULL)
        return false;
    *target = ng->g.target;
    return true;
}

static fwx_result n_grant_add(void *state, const fwx_grant *g)
{
    nstate *st = state;
    elems es = {0};
    selem **refs = NULL;
    fwx_result hr = FWX_S_OK;
    if (g->protocol != FWX_PROTOCOL_TCP && g->protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    if (grant_find(st, g->id) != NULL)
        return FWX_E_INVALIDARG;
    /* A grant the core decides per arrival by more than the source (an IP filter) has no
       kernel form here: it takes the user-mode path, where the core decides each admission. */
    bool ipfilter = (grant_source_flags(g) & FWX_GRANT_SOURCES_FILTERED) != 0 && g->kind != FWX_GRANT_CLIENT_BIND;
    if ((g->flags & FWX_FLAG_REPLY_FROM_PEER) && !g->kernel_mode) {
        /* Only the kernel form exists (reply_elems): a user-mode one would need an answer
           port as the proxy backend's. Refused rather than installed as something else. */
        NLOG(st, FWX_LOG_WARN, "%s %llu: an answer from any port (REPLY_FROM_PEER) in user mode is not carried by this "
             "backend", kind_name(g->kind), (unsigned long long)g->id);
        return FWX_E_NOT_SUPPORTED;
    }
    bool user = !g->kernel_mode || ipfilter;
    if (user) {
        if (ipfilter && g->kernel_mode)
            NLOG(st, FWX_LOG_DEBUG, "%s %llu: an ip filter: carried in user mode", kind_name(g->kind),
                 (unsigned long long)g->id);
        hr = user_mode_elems(st, g, &es);
    } else {
        switch (g->kind) {
        case FWX_GRANT_PERMISSION:
            hr = (g->flags & FWX_FLAG_REPLY_FROM_PEER) ? reply_elems(g, &es) : permission_elems(st, g, &es);
            break;
        case FWX_GRANT_BINDING:
        case FWX_GRANT_REDIRECT:
            hr = port_elems(st, g, &es);
            break;
        default:
            /* A client's own bind (RetroactiveAllowBind): later work; the core keeps enforcing it. */
            NLOG(st, FWX_LOG_DEBUG, "%s %llu: not carried by the kernel yet", kind_name(g->kind),
                 (unsigned long long)g->id);
            break;
        }
        if (hr == FWX_E_NOT_SUPPORTED)
            NLOG(st, FWX_LOG_WARN, "%s %llu: addresses of mixed or unsupported families", kind_name(g->kind),
                 (unsigned long long)g->id);
    }
    if (FWX_SUCCEEDED(hr)) {
        hr = elems_commit(st, &es, grant_left(st, g), &refs);
        if (hr == FWX_E_BACKEND)
            NLOG(st, FWX_LOG_WARN, "%s %llu: refused: %s", kind_name(g->kind), (unsigned long long)g->id, st->err);
    }
    if (FWX_SUCCEEDED(hr)) {
        hr = track(st, g, &es, refs, user);
        if (FWX_FAILED(hr)) {
            ngrant tmp = {.el = refs, .n = es.n};
            elems_drop(st, &tmp, kind_name(g->kind), g->id);
        } else if (!user && es.n > 0) {
            (void)fwx_backend_grant_in_kernel(st->fw, g);
        }
    }
    free(es.el);
    return hr;
}

static fwx_result n_grant_remove(void *state, uint64_t id)
{
    nstate *st = state;
    ngrant *ng = grant_find(st, id);
    if (ng == NULL)
        return FWX_E_NOT_FOUND;
    elems_drop(st, ng, kind_name(ng->g.kind), id);
    untrack(st, ng);
    return FWX_S_OK;
}

/* A session's end: every element of its grants at once (one batch per grant cost ~0.6 ms
   each with libnftables, so the last of 9,850 permissions was still usable 6 s after the first
   was withdrawn). An element two of these grants share is deleted once, with the last of
   them; each element is its own group, so one the kernel already dropped keeps no other. */
static fwx_result n_grant_remove_many(void *state, const uint64_t *ids, size_t n)
{
    nstate *st = state;
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        ngrant *ng = grant_find(st, ids[k]);
        total += ng != NULL ? ng->n : 0;
    }
    selem **dead = malloc((total ? total : 1) * sizeof *dead);
    if (dead == NULL) {
        for (size_t k = 0; k < n; k++) /* slower, but each is withdrawn */
            (void)n_grant_remove(st, ids[k]);
        return FWX_S_OK;
    }
    size_t ndead = 0;
    for (size_t k = 0; k < n; k++) {
        ngrant *ng = grant_find(st, ids[k]);
        if (ng == NULL)
            continue;
        elems_release(st, ng, dead, &ndead);
        untrack(st, ng);
    }
    elems_delete(st, dead, ndead, "session", n > 0 ? ids[0] : 0);
    free(dead);
    return FWX_S_OK;
}

/* ---- the policy ---------------------------------------------------------------------------- */

fwx_result fwx__nft_policy_changed(void *state, const fwx_policy *policy)
{
    nstate *st = state;
    if (st == NULL || st->magic != NSTATE_MAGIC)
        return FWX_E_INVALIDARG;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return FWX_E_OUTOFMEMORY;
    fwx__nft_uncompile(f, st->table, &st->comp);
    fwx__nft_compiled next = {0};
    next.gen = ++st->next_gen;
    st->icpt.udp_hooked = udp_hooked(st->fw);
    int rc = policy != NULL ? fwx__nft_compile(f, st->table, policy, next.gen, &st->icpt, &next) : 0;
    if (fclose(f) != 0 || rc != 0 || buf == NULL) {
        free(buf);
        return FWX_E_OUTOFMEMORY;
    }
    if (getenv("FWX_NFT_DUMP") != NULL)
        fprintf(stderr, "%s", buf);
    if (run(st, buf) != 0) {
        NLOG(st, FWX_LOG_ERROR, "compiling the policy into table inet %s failed (the previous one stays): %s",
             st->table, st->err);
        free(buf);
        return FWX_E_BACKEND;
    }
    free(buf);
    st->comp = next;
    if (policy != NULL)
        NLOG(st, FWX_LOG_INFO, "policy compiled into table inet %s: %u networks, %u address sets, %u port sets, "
                               "%u filter-bound port ranges%s", st->table, next.n_nets, next.n_groups, next.n_ports,
             next.n_intercept, next.n_intercept && st->icpt.port ? " intercepted" : "");
    return FWX_S_OK;
}

/* ---- publishing rules ------------------------------------------------------------------------ */

static fwx_result pub_slot(nstate *st, ngrant **out) { return ngrant_slot(&st->pubs, st->npub, &st->cappub, 8, out); }

/* A filter must see the stream: the rule gets a user-mode listener (intercept.c); the filter's
   secondary connections are kernel elements all the same. */
static fwx_result listen_user_mode(nstate *st, const fwx_listen_spec *spec, const char *proto_name)
{
    ngrant *ng = NULL;
    fwx_result hr = pub_slot(st, &ng);
    if (FWX_SUCCEEDED(hr))
        hr = fwx__nft_pub_start(st->fw, spec, &ng->ul);
    if (FWX_FAILED(hr)) {
        NLOG(st, FWX_LOG_WARN, "publishing rule %llu (protocol \"%s\", filtered): cannot listen: %s",
             (unsigned long long)spec->id, proto_name, fwx_strerror(hr));
        return hr;
    }
    ng->g.id = spec->id;
    st->npub++;
    NLOG(st, FWX_LOG_DEBUG, "publishing rule %llu: protocol \"%s\" has a filter: user-mode listener",
         (unsigned long long)spec->id, proto_name);
    return FWX_S_OK;
}

static fwx_result n_listen(void *state, const fwx_listen_spec *spec)
{
    nstate *st = state;
    const struct sockaddr *la = (const struct sockaddr *)&spec->address, *sv = (const struct sockaddr *)&spec->server;
    struct sockaddr_storage gws[8];
    char fam;
    if (spec->protocol != FWX_PROTOCOL_TCP && spec->protocol != FWX_PROTOCOL_UDP)
        return FWX_E_INVALIDARG;
    /* A rule whose protocol has a filter bound: its connections must run through fwx. */
    const fwx_policy *pol = fwx_firewall_policy(st->fw);
    fwx_policy_protocol_info pr = {.struct_size = sizeof pr};
    uint32_t pi;
    if (pol != NULL && fwx_policy_protocol_find(pol, &spec->protocol_guid, &pi) == FWX_S_OK &&
        fwx_policy_protocol_get(pol, pi, &pr) == FWX_S_OK && pr.n_filters > 0)
        return listen_user_mode(st, spec, pr.name);
    if (!fam_of(sv, &fam) || la->sa_family != sv->sa_family)
        return FWX_E_NOT_SUPPORTED;
    int proto = l4proto(spec->protocol);
    uint16_t lport = fwx__sa_port(la), sport = fwx__sa_port(sv);
    size_t ngw = gateway_addrs(st, la, fam, gws, 8);
    if (ngw == 0)
        return FWX_E_ADDRNOTAVAIL;
    elems es = {0};
    fwx_result hr = FWX_S_OK;
    kbytes data = kb(sv, NULL, -1, sport), key;
    for (size_t i = 0; i < ngw && FWX_SUCCEEDED(hr); i++) {
        key = kb((const struct sockaddr *)&gws[i], NULL, proto, lport);
        hr = add_elem(&es, "pub", fam, &key, &data);
    }
    key = kb(sv, NULL, proto, sport);
    if (FWX_SUCCEEDED(hr))
        hr = add_elem(&es, "pubok", fam, &key, NULL);
    if (FWX_SUCCEEDED(hr) && spec->full_proxy)
        hr = add_elem(&es, "pubmasq", fam, &key, NULL);
    ngrant *ng = NULL;
    if (FWX_SUCCEEDED(hr))
        hr = pub_slot(st, &ng); /* first: a slot cannot fail once the elements are in */
    selem **refs = NULL;
    if (FWX_SUCCEEDED(hr))
        hr = elems_commit(st, &es, 0, &refs);
    if (FWX_FAILED(hr)) {
        if (hr == FWX_E_BACKEND)
            NLOG(st, FWX_LOG_WARN, "publishing rule %llu: %s", (unsigned long long)spec->id, st->err);
        free(es.el);
        return hr;
    }
    st->npub++;
    ng->g.id = spec->id;
    ng->el = refs;
    ng->n = es.n;
    free(es.el);
    return FWX_S_OK;
}

static fwx_result n_unlisten(void *state, uint64_t id)
{
    nstate *st = state;
    for (size_t i = 0; i < st->npub; i++) {
        if (st->pubs[i].g.id != id)
            continue;
        elems_drop(st, &st->pubs[i], "publishing rule", id);
        fwx__nft_icpt_stop(st->pubs[i].ul);
        st->pubs[i] = st->pubs[--st->npub];
        return FWX_S_OK;
    }
    return FWX_E_NOT_FOUND;
}

static fwx_result n_relay(void *state, IFWXConnection *conn, int32_t kernel_mode)
{
    (void)state;
    (void)kernel_mode;
    /* Primary connections are the host's to carry until policy-driven interception lands
       (lib/backends/nft/README.md); admitted kernel-mode secondaries are the kernel's already. */
    return conn != NULL ? FWX_S_OK : FWX_E_INVALIDARG;
}

/* IFWXConnection::Kill of a kernel-carried flow (also the end of its session) removes its
   conntrack entry; the kernel's echo of the delete brings the final byte counts, so the
   connection closes now with its bytes (a TCP flow's DESTROY would otherwise wait for
   TIME_WAIT, after the close). The broadcast DESTROY that follows finds no flow. */
static fwx_result n_kill(void *state, IFWXConnection *conn)
{
    nstate *st = state;
    kflow *k = kflow_of_conn(st, conn);
    if (k == NULL || st->ct == NULL)
        return FWX_E_NOT_FOUND;
    uint64_t orig = 0, reply = 0;
    if (fwx__ct_kill_counted(st->ct, &k->flow, &orig, &reply) == FWX_S_OK)
        kflow_count(k, orig, reply);
    kflow_end(st, k);
    return FWX_S_OK;
}

static fwx_result n_create_socket(void *state, int32_t protocol, IFWXNetworkSocket **out)
{
    nstate *st = state;
    return fwx_network_socket_new(fwx_firewall_loop(st->fw), st->fw, protocol, out);
}

/* Is `key` an element of set `set` in a numeric listing of the table? */
static bool listing_has(const char *listing, const char *set, const char *key)
{
    char head[32];
    const char *sec = NULL;
    snprintf(head, sizeof head, "set %s {", set);
    sec = strstr(listing, head);
    if (sec == NULL) {
        snprintf(head, sizeof head, "map %s {", set);
        sec = strstr(listing, head);
    }
    if (sec == NULL)
        return false;
    const char *end = strstr(sec, "\n\t}");
    size_t klen = strlen(key);
    for (const char *p = strstr(sec, key); p != NULL && (end == NULL || p < end); p = strstr(p + 1, key)) {
        char before = p[-1], after = p[klen];
        if ((before == ' ' || before == '\t' || before == '{') && (after == ' ' || after == ',' || after == '\n'))
            return true;
    }
    return false;
}

static fwx_result n_list(void *state, fwx_backend_list_cb cb, void *arg)
{
    nstate *st = state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "list table inet %s\n", st->table);
    if (nft_run_cmd_from_buffer(st->nft, cmd) != 0) {
        (void)nft_ctx_get_error_buffer(st->nft);
        return FWX_E_BACKEND;
    }
    (void)nft_ctx_get_error_buffer(st->nft);
    char *listing = strdup(nft_ctx_get_output_buffer(st->nft));
    if (listing == NULL)
        return FWX_E_OUTOFMEMORY;
    /* What the table holds: a grant whose permission element the packet path used or the
       kernel expired is no longer reported. */
    for (const ngrant *ng = st->grants; ng != NULL; ng = ng->hh.next) {
        bool present = ng->n > 0;
        for (size_t j = 0; j < ng->n && present; j++) {
            const ekey *k = &ng->el[j]->e.k;
            char text[160];
            ekey_text(k->set, k->key, k->len, text, sizeof text);
            /* A one-shot key in the used set is consumed, its NEW event still to come. */
            present = listing_has(listing, k->set, text) &&
                      !(strncmp(k->set, "once", 4) == 0 && listing_has(listing, used_set(k), text));
        }
        if (present)
            cb(arg, &ng->g);
    }
    free(listing);
    return FWX_S_OK;
}

fwx_redirect_handle *fwx__nft_identity(fwx_firewall *fw, uint32_t *slot_bit)
{
    nstate *st = state_of(fw);
    *slot_bit = st != NULL && st->slot >= 0 ? 1u << st->slot : 0;
    if (st == NULL)
        return NULL;
    return st->rh != NULL ? st->rh : fwx_firewall_redirect_identity(fw);
}

bool fwx__nft_is_listener(fwx_firewall *fw, const struct sockaddr *a)
{
    nstate *st = state_of(fw);
    uint16_t p = a->sa_family == AF_INET6 ? st != NULL ? st->icpt.port6 : 0 : st != NULL ? st->icpt.port : 0;
    if (p == 0 || fwx__sa_port(a) != p)
        return false;
    return fwx_firewall_is_local_address(fw, a, fwx__sa_len(a)) || fwx__sa_is_unspecified(a);
}

/* ---- local redirection ------------------------------------------------------------ */

/* A cgroup v2 path as nft takes it: "/a/b" of safe characters; its level (components). */
static int cgroup_level(const char *p)
{
    if (p == NULL || p[0] != '/' || strlen(p) > 200)
        return -1;
    int level = 0;
    for (const char *c = p; *c; c++) {
        if (*c == '/') {
            if (c[1] == '/' || c[1] == '\0')
                return -1;
            level++;
        } else if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                     strchr("._-@:", *c) != NULL)) {
            return -1;
        }
    }
    return level;
}

fwx_result fwx_firewall_redirect_local(fwx_firewall *fw, const fwx_local_redirect *spec)
{
    if (fw == NULL || spec == NULL)
        return FWX_E_POINTER;
    nstate *st = state_of(fw);
    if (st == NULL) {
        fwx_backend_fail(fw, "local redirection needs the \"nft\" backend");
        return FWX_E_NOT_SUPPORTED;
    }
    fwx_local_redirect sp;
    if (!FWX__STRUCT_IN(sp, spec, FWX__FIRST_LOCAL_REDIRECT))
        return fwx__struct_refused(fw, "fwx_firewall_redirect_local", "fwx_local_redirect", spec->struct_size,
                                   FWX__FIRST_LOCAL_REDIRECT, sizeof sp);
    spec = &sp;
    int level = spec->cgroup != NULL ? cgroup_level(spec->cgroup) : 0;
    if (spec->protocol != FWX_PROTOCOL_TCP || spec->port_min == 0 ||
        spec->port_max < spec->port_min || spec->slot > 7 || spec->uid < -1 || spec->uid > 0xFFFFFFFEll || level < 0) {
        fwx_backend_fail(fw, "local redirection: bad spec (TCP, ports 1-65535, slot 0-7, uid -1 or a uid, cgroup \"/a/b\")");
        return FWX_E_INVALIDARG;
    }
    if (st->slot >= 0 && (uint32_t)st->slot != spec->slot) {
        fwx_backend_fail(fw, "local redirection: this instance already has slot %d", st->slot);
        return FWX_E_INVALIDARG;
    }
    if (st->icpt.port == 0) {
        fwx_backend_fail(fw, "local redirection: no interception listener");
        return FWX_E_NOT_SUPPORTED;
    }
    sbuf b = {0};
    if (st->slot < 0) {
        /* The chain, once: fwx's marks go into conntrack (nftables rules can match redirected
           flows), and a socket that has passed this instance is never caught again. */
        sb_printf(&b, "add chain inet %s output_redirect { type nat hook output priority -100; policy accept; "
                      "comment \"local redirection: outbound connections of this host into fwx\"; }\n", st->table);
        sb_printf(&b, "add rule inet %s output_redirect meta mark and %#x == %#x ct mark set meta mark\n", st->table,
                  FWX__NFT_OWN_MARK, FWX__NFT_OWN_MARK);
        sb_printf(&b, "add rule inet %s output_redirect meta mark and %#x != 0 return comment \"passed this proxy\"\n",
                  st->table, FWX__NFT_SLOT_MARK(1u << spec->slot));
    }
    sb_printf(&b, "add rule inet %s output_redirect meta nfproto ipv4 meta l4proto tcp th dport %u-%u", st->table,
              (unsigned)spec->port_min, (unsigned)spec->port_max);
    if (spec->uid >= 0)
        sb_printf(&b, " meta skuid %lld", (long long)spec->uid);
    if (spec->cgroup != NULL)
        sb_printf(&b, " socket cgroupv2 level %d \"%s\"", level, spec->cgroup);
    sb_printf(&b, " redirect to :%u comment \"local redirection\"\n", (unsigned)st->icpt.port);
    int rc = b.oom ? -1 : run(st, b.p);
    free(b.p);
    if (rc != 0) {
        fwx_backend_fail(fw, "local redirection: %s", b.oom ? "out of memory" : st->err);
        return b.oom ? FWX_E_OUTOFMEMORY : FWX_E_BACKEND;
    }
    if (spec->handle != NULL)
        st->rh = spec->handle;
    st->slot = (int)spec->slot;
    char pg[FWX_GUID_STRLEN] = "none";
    uint32_t bit;
    const fwx_redirect_handle *me = fwx__nft_identity(fw, &bit);
    if (me != NULL)
        fwx_guid_format(fwx_redirect_handle_provider(me), pg);
    NLOG(st, FWX_LOG_INFO, "local redirection: tcp ports %u-%u%s%s into fwx (slot %u, provider %s)",
         (unsigned)spec->port_min, (unsigned)spec->port_max, spec->uid >= 0 ? ", one user" : "",
         spec->cgroup != NULL ? ", one cgroup" : "", (unsigned)spec->slot, pg);
    return FWX_S_OK;
}

const fwx__nft_features *fwx__nft_features_of(fwx_firewall *fw)
{
    nstate *st = state_of(fw);
    return st != NULL ? &st->feat : NULL;
}

const fwx_backend fwx__nft_backend = {
    .version = 3,
    .name = "nft",
    .app_data = NULL,
    .open = n_open,
    .close = n_close,
    .grant_add = n_grant_add,
    .grant_remove = n_grant_remove,
    .grant_remove_many = n_grant_remove_many,
    .listen = n_listen,
    .unlisten = n_unlisten,
    .relay = n_relay,
    .kill = n_kill,
    .create_socket = n_create_socket,
    .list = n_list,
    .policy_changed = fwx__nft_policy_changed,
};
