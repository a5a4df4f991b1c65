/*
 * fwx - redirect tracking: handles, records, the redirect-state query, loop refusal, and the
 * record a connection carries.
 *
 * The loop guarantee rests on one invariant: a provider appears at most once in a record.
 * fwx_redirect_record_push_to() keeps it for local hops, and the wire parser refuses records
 * that break it, so a flow passes each cooperating proxy at most once however it is chained.
 * SPDX-License-Identifier: MIT
 */
#include "core/redirect_impl.h"

#include <stdlib.h>

/* ---- handles ----------------------------------------------------------------------------- */

fwx_result fwx_redirect_handle_create(fwx_firewall *fw, const fwx_guid *provider, uint32_t flags,
                                      fwx_redirect_handle **out)
{
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (fw == NULL || provider == NULL)
        return FWX_E_POINTER;
    /* The null GUID is what an unknown provider reads as; it cannot identify anyone. */
    if (flags != 0 || fwx_guid_equal(provider, &FWX_GUID_NULL))
        return FWX_E_INVALIDARG;
    if (fw->closing)
        return FWX_E_TERMINATING;
    fwx_redirect_handle *h = NULL;
    HASH_FIND(hh, fw->redirect_handles, provider, sizeof *provider, h);
    if (h != NULL) {
        /* Two handles of one provider would each read the other's hops as their own ("self")
           while holding different contexts: which one is "self" would be a guess. */
        char g[FWX_GUID_STRLEN];
        fwx__log(fw, FWX_LOG_WARN, "redirect handle %s: the provider already has a handle, not creating another",
                 fwx_guid_format(provider, g));
        return FWX_E_ALREADY_EXISTS_WIN32;
    }
    h = calloc(1, sizeof *h);
    if (h == NULL)
        return FWX_E_OUTOFMEMORY;
    h->fw = fw;
    h->provider = *provider;
    fwx__list_init(&h->hops);
    HASH_ADD(hh, fw->redirect_handles, provider, sizeof h->provider, h);
    *out = h;
    return FWX_S_OK;
}

/* Frees a hop's context now, once: the owner is going away or so is the record. */
static void hop_free_context(fwx__hop *hop)
{
    void *ctx = hop->ctx;
    fwx_redirect_context_free_fn fn = hop->free_cb;
    hop->ctx = NULL;
    hop->free_cb = NULL;
    if (fn != NULL && ctx != NULL)
        fn(ctx);
}

void fwx_redirect_handle_destroy(fwx_redirect_handle *h)
{
    if (h == NULL)
        return;
    /* The contexts die with their owner: after this returns, fwx never calls into the plugin
       that owned the handle, even though records that name its provider live on. The hops
       keep their GUID, so a flow it redirected still reads "by self" to its next handle. */
    while (!fwx__list_empty(&h->hops)) {
        fwx__hop *hop = fwx__list_entry(h->hops.next, fwx__hop, handle_node);
        fwx__list_remove(&hop->handle_node);
        hop->handle = NULL;
        hop_free_context(hop);
    }
    HASH_DEL(h->fw->redirect_handles, h);
    free(h);
}

const fwx_guid *fwx_redirect_handle_provider(const fwx_redirect_handle *h) { return h ? &h->provider : NULL; }

fwx_redirect_handle *fwx_firewall_redirect_identity(fwx_firewall *fw)
{
    if (fw == NULL)
        return NULL;
    if (fw->redirect_identity == NULL && !fw->closing) {
        /* FNV-1a over the name, twice, as a version-8 ("custom") GUID: the same name, the same
           provider, across restarts and processes. */
        uint64_t h1 = 1469598103934665603ull, h2 = 1099511628211ull * 31;
        for (const char *p = fw->name; *p; p++) {
            h1 = (h1 ^ (uint8_t)*p) * 1099511628211ull;
            h2 = (h2 ^ (uint8_t)*p) * 1469598103934665603ull;
        }
        fwx_guid g;
        for (int i = 0; i < 8; i++) {
            g.bytes[i] = (uint8_t)(h1 >> (8 * i));
            g.bytes[8 + i] = (uint8_t)(h2 >> (8 * i));
        }
        g.bytes[6] = (uint8_t)((g.bytes[6] & 0x0F) | 0x80);
        g.bytes[8] = (uint8_t)((g.bytes[8] & 0x3F) | 0x80);
        if (FWX_FAILED(fwx_redirect_handle_create(fw, &g, 0, &fw->redirect_identity)))
            fw->redirect_identity = NULL; /* a host took that GUID: it is the host's to use */
    }
    return fw->redirect_identity;
}

void fwx__redirect_admitted(fwx__conn *c, const struct sockaddr *reached, const struct sockaddr *target)
{
    fwx_redirect_handle *h = fwx_firewall_redirect_identity(c->session->fw);
    fwx_redirect_record *rec = NULL;
    if (h == NULL || FWX_FAILED(fwx_redirect_record_new(reached, fwx__sa_len(reached), NULL, &rec)))
        return;
    if (FWX_SUCCEEDED(fwx_redirect_record_push_to(rec, h, target, fwx__sa_len(target), NULL, NULL)))
        (void)fwx_connection_set_redirect_record(&c->iface, rec);
    fwx_redirect_record_unref(rec);
}

void fwx__redirect_firewall_free(fwx_firewall *fw)
{
    if (fw->redirect_identity != NULL) {
        fwx_redirect_handle_destroy(fw->redirect_identity); /* ours: no warning */
        fw->redirect_identity = NULL;
    }
    fwx_redirect_handle *h, *tmp;
    HASH_ITER(hh, fw->redirect_handles, h, tmp) {
        char g[FWX_GUID_STRLEN];
        fwx__log(fw, FWX_LOG_WARN, "redirect handle %s: never destroyed, destroying it with firewall \"%s\"",
                 fwx_guid_format(&h->provider, g), fw->name);
        fwx_redirect_handle_destroy(h);
    }
}

/* ---- records ----------------------------------------------------------------------------- */

fwx_redirect_record *fwx__redirect_record_alloc(void)
{
    fwx_redirect_record *rec = calloc(1, sizeof *rec);
    if (rec == NULL)
        return NULL;
    atomic_init(&rec->refs, 1);
    rec->uid = FWX_REDIRECT_UID_UNKNOWN;
    return rec;
}

/* Checks and copies an address that names a TCP/UDP endpoint: a port 0 cannot be connected to. */
static bool endpoint_canon(const struct sockaddr *sa, uint32_t len, struct sockaddr_storage *out)
{
    return fwx__sa_canon(sa, len, out) && fwx__sa_port((const struct sockaddr *)out) != 0;
}

fwx_result fwx_redirect_record_new(const struct sockaddr *original_destination, uint32_t len,
                                   const fwx_redirect_app *app, fwx_redirect_record **out)
{
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    struct sockaddr_storage dst;
    if (original_destination != NULL && !endpoint_canon(original_destination, len, &dst))
        return FWX_E_INVALIDARG;
    size_t path_len = 0;
    fwx_redirect_app in;
    if (app != NULL) {
        /* No firewall here to log to: the code says it. */
        if (!FWX__STRUCT_IN(in, app, FWX__FIRST_REDIRECT_APP) || in.reserved != 0)
            return FWX_E_INVALIDARG;
        app = &in;
        if (app->cgroup_path != NULL) {
            /* Bounded so that any record fits its wire form. */
            path_len = strnlen(app->cgroup_path, FWX_REDIRECT_CGROUP_PATH_MAX + 1);
            if (path_len == 0 || path_len > FWX_REDIRECT_CGROUP_PATH_MAX)
                return FWX_E_INVALIDARG;
        }
    }
    fwx_redirect_record *rec = fwx__redirect_record_alloc();
    if (rec == NULL)
        return FWX_E_OUTOFMEMORY;
    if (original_destination != NULL) {
        rec->orig_dst = dst;
        rec->has_orig_dst = true;
    }
    if (app != NULL) {
        rec->pid = app->pid;
        rec->uid = app->uid;
        rec->cgroup_id = app->cgroup_id;
        if (app->cgroup_path != NULL && (rec->cgroup_path = strndup(app->cgroup_path, path_len)) == NULL) {
            free(rec);
            return FWX_E_OUTOFMEMORY;
        }
    }
    *out = rec;
    return FWX_S_OK;
}

fwx_redirect_record *fwx_redirect_record_ref(fwx_redirect_record *rec)
{
    if (rec != NULL)
        atomic_fetch_add(&rec->refs, 1);
    return rec;
}

void fwx_redirect_record_unref(fwx_redirect_record *rec)
{
    if (rec == NULL || atomic_fetch_sub(&rec->refs, 1) != 1)
        return;
    for (size_t i = 0; i < rec->n_hops; i++) {
        fwx__hop *hop = rec->hops[i];
        if (hop->handle != NULL)
            fwx__list_remove(&hop->handle_node);
        hop_free_context(hop);
        free(hop);
    }
    free(rec->cgroup_path);
    free(rec);
}

fwx_result fwx_redirect_record_original_destination(const fwx_redirect_record *rec, struct sockaddr_storage *out)
{
    if (rec == NULL || out == NULL)
        return FWX_E_POINTER;
    if (!rec->has_orig_dst) {
        memset(out, 0, sizeof *out);
        out->ss_family = AF_UNSPEC;
        return FWX_S_FALSE;
    }
    *out = rec->orig_dst;
    return FWX_S_OK;
}

fwx_result fwx_redirect_record_original_app(const fwx_redirect_record *rec, fwx_redirect_app *out)
{
    if (rec == NULL || out == NULL)
        return FWX_E_POINTER;
    fwx_redirect_app a = {.struct_size = sizeof a, .pid = rec->pid, .uid = rec->uid, .cgroup_id = rec->cgroup_id,
                          .cgroup_path = rec->cgroup_path};
    if (!FWX__STRUCT_OUT(out, a, FWX__FIRST_REDIRECT_APP))
        return FWX_E_INVALIDARG;
    bool known = rec->pid != 0 || rec->uid != FWX_REDIRECT_UID_UNKNOWN || rec->cgroup_id != 0 ||
                 rec->cgroup_path != NULL;
    return known ? FWX_S_OK : FWX_S_FALSE;
}

size_t fwx_redirect_record_hop_count(const fwx_redirect_record *rec) { return rec ? rec->n_hops : 0; }

fwx_result fwx_redirect_record_hop(const fwx_redirect_record *rec, size_t index, fwx_redirect_hop *out)
{
    if (rec == NULL || out == NULL)
        return FWX_E_POINTER;
    if (index >= rec->n_hops)
        return FWX_E_INVALIDARG;
    const fwx__hop *hop = rec->hops[index];
    fwx_redirect_hop h = {.struct_size = sizeof h, .provider = hop->provider, .handle = hop->handle};
    if (hop->has_target)
        h.target = hop->target;
    else
        h.target.ss_family = AF_UNSPEC;
    return FWX__STRUCT_OUT(out, h, FWX__FIRST_REDIRECT_HOP) ? FWX_S_OK : FWX_E_INVALIDARG;
}

/* The index of the provider's hop, or -1. There is at most one (the invariant above). */
static ptrdiff_t hop_of(const fwx_redirect_record *rec, const fwx_guid *provider)
{
    for (size_t i = rec->n_hops; i-- > 0;)
        if (fwx_guid_equal(&rec->hops[i]->provider, provider))
            return (ptrdiff_t)i;
    return -1;
}

fwx_redirect_state fwx_redirect_query(const fwx_redirect_record *rec, const fwx_redirect_handle *h, void **context)
{
    if (context != NULL)
        *context = NULL;
    if (rec == NULL || rec->n_hops == 0)
        return FWX_REDIRECT_NOT_REDIRECTED;
    if (h == NULL)
        return FWX_REDIRECT_BY_OTHER;
    ptrdiff_t i = hop_of(rec, &h->provider);
    if (i < 0)
        return FWX_REDIRECT_BY_OTHER;
    /* A hop of the same provider pushed elsewhere (another process, a destroyed handle) has
       no context here: the state is still "self", but only the pusher may see its context. */
    const fwx__hop *hop = rec->hops[i];
    if (context != NULL && hop->handle == h)
        *context = hop->ctx;
    return (size_t)i == rec->n_hops - 1 ? FWX_REDIRECT_BY_SELF : FWX_REDIRECT_PREVIOUSLY_BY_SELF;
}

/* The index of the hop that already redirected to target, or -1. */
static ptrdiff_t hop_to(const fwx_redirect_record *rec, const struct sockaddr *target)
{
    for (size_t i = 0; i < rec->n_hops; i++)
        if (rec->hops[i]->has_target &&
            fwx__sa_same_endpoint((const struct sockaddr *)&rec->hops[i]->target, target))
            return (ptrdiff_t)i;
    return -1;
}

static const char *orig_fmt(const fwx_redirect_record *rec, char buf[FWX__SA_STRLEN])
{
    return rec->has_orig_dst ? fwx__sa_fmt((const struct sockaddr *)&rec->orig_dst, buf) : "an unknown destination";
}

fwx_result fwx_redirect_record_push_to(fwx_redirect_record *rec, fwx_redirect_handle *h,
                                       const struct sockaddr *target, uint32_t target_len, void *context,
                                       fwx_redirect_context_free_fn free_cb)
{
    if (rec == NULL || h == NULL)
        return FWX_E_POINTER;
    struct sockaddr_storage t;
    if (target != NULL && !endpoint_canon(target, target_len, &t))
        return FWX_E_INVALIDARG;
    char g[FWX_GUID_STRLEN], d[FWX__SA_STRLEN], a[FWX__SA_STRLEN];
    fwx_redirect_state st = fwx_redirect_query(rec, h, NULL);
    if (st == FWX_REDIRECT_BY_SELF || st == FWX_REDIRECT_PREVIOUSLY_BY_SELF) {
        fwx__log(h->fw, FWX_LOG_WARN,
                 "redirect handle %s: connection to %s was %s redirected by this provider (hop %td of %zu), "
                 "not redirecting it again",
                 fwx_guid_format(&h->provider, g), orig_fmt(rec, d),
                 st == FWX_REDIRECT_BY_SELF ? "already" : "previously", hop_of(rec, &h->provider) + 1, rec->n_hops);
        return FWX_E_REDIRECT_LOOP;
    }
    if (target != NULL) {
        ptrdiff_t i = hop_to(rec, (const struct sockaddr *)&t);
        if (i >= 0) {
            char p[FWX_GUID_STRLEN];
            fwx__log(h->fw, FWX_LOG_WARN,
                     "redirect handle %s: connection to %s would go back to %s, where provider %s "
                     "redirected it at hop %td, not redirecting it",
                     fwx_guid_format(&h->provider, g), orig_fmt(rec, d), fwx__sa_fmt((struct sockaddr *)&t, a),
                     fwx_guid_format(&rec->hops[i]->provider, p), i + 1);
            return FWX_E_REDIRECT_LOOP;
        }
    }
    if (rec->n_hops == FWX_REDIRECT_MAX_HOPS) {
        fwx__log(h->fw, FWX_LOG_WARN,
                 "redirect handle %s: connection to %s has been redirected %d times already, taken for a loop, "
                 "not redirecting it",
                 fwx_guid_format(&h->provider, g), orig_fmt(rec, d), FWX_REDIRECT_MAX_HOPS);
        return FWX_E_REDIRECT_LOOP;
    }
    fwx__hop *hop = calloc(1, sizeof *hop);
    if (hop == NULL)
        return FWX_E_OUTOFMEMORY;
    hop->provider = h->provider;
    hop->handle = h;
    fwx__list_insert_tail(&h->hops, &hop->handle_node);
    if (target != NULL) {
        hop->target = t;
        hop->has_target = true;
    }
    hop->ctx = context;
    hop->free_cb = free_cb;
    rec->hops[rec->n_hops++] = hop;
    return FWX_S_OK;
}

fwx_result fwx_redirect_record_push(fwx_redirect_record *rec, fwx_redirect_handle *h, void *context,
                                    fwx_redirect_context_free_fn free_cb)
{
    return fwx_redirect_record_push_to(rec, h, NULL, 0, context, free_cb);
}

bool fwx__redirect_record_add_foreign(fwx_redirect_record *rec, const fwx_guid *provider,
                                      const struct sockaddr_storage *target)
{
    fwx__hop *hop = calloc(1, sizeof *hop);
    if (hop == NULL)
        return false;
    hop->provider = *provider;
    fwx__list_init(&hop->handle_node);
    if (target != NULL) {
        hop->target = *target;
        hop->has_target = true;
    }
    rec->hops[rec->n_hops++] = hop;
    return true;
}

/* ---- where a redirected flow may go ----------------------------------------------------- */

/* Which of fwx's own listeners dst is, or NULL. Only listeners fwx knows of: the publishing
   rules a backend serves and the ports filters had bound (BindForClient, RedirectConnections,
   client binds); both are the gateway's own, so a connection there comes straight back. */
static const char *own_listener(const fwx_firewall *fw, int32_t protocol, const struct sockaddr *dst)
{
    uint16_t port = fwx__sa_port(dst);
    for (size_t i = 0; i < fw->n_published; i++) {
        const fwx_listen_spec *l = &fw->published[i];
        const struct sockaddr *la = (const struct sockaddr *)&l->address;
        if (l->protocol != protocol || fwx__sa_port(la) != port)
            continue;
        /* A wildcard listener takes every address of the host. */
        if (fwx__sa_is_unspecified(la) ? fwx__firewall_is_local(fw, dst) : fwx__sa_same_ip(la, dst))
            return "a publishing listener of fwx";
    }
    if (fwx__firewall_is_local(fw, dst)) {
        fwx__port_key k = {protocol, port};
        fwx__grant *g = NULL;
        HASH_FIND(hh, fw->ports, &k, sizeof k, g);
        if (g != NULL)
            return "a port fwx bound for a filter";
    }
    return NULL;
}

fwx_result fwx_redirect_check_destination(fwx_firewall *fw, const fwx_redirect_record *rec, int32_t protocol,
                                          const struct sockaddr *destination, uint32_t len)
{
    if (fw == NULL || destination == NULL)
        return FWX_E_POINTER;
    struct sockaddr_storage dst;
    if ((protocol != FWX_PROTOCOL_TCP && protocol != FWX_PROTOCOL_UDP) || !endpoint_canon(destination, len, &dst))
        return FWX_E_INVALIDARG;
    const struct sockaddr *sa = (const struct sockaddr *)&dst;
    char d[FWX__SA_STRLEN], o[FWX__SA_STRLEN];
    const char *why = own_listener(fw, protocol, sa);
    if (why != NULL) {
        fwx__log(fw, FWX_LOG_WARN, "redirected connection to %s: %s is %s, it would loop back, not connecting",
                 rec ? orig_fmt(rec, o) : "an unknown destination", fwx__sa_fmt(sa, d), why);
        return FWX_E_REDIRECT_LOOP;
    }
    ptrdiff_t i = rec ? hop_to(rec, sa) : -1;
    if (i >= 0) {
        char p[FWX_GUID_STRLEN];
        fwx__log(fw, FWX_LOG_WARN,
                 "redirected connection to %s: %s is where provider %s redirected it at hop %td, "
                 "it would loop back, not connecting",
                 orig_fmt(rec, o), fwx__sa_fmt(sa, d), fwx_guid_format(&rec->hops[i]->provider, p), i + 1);
        return FWX_E_REDIRECT_LOOP;
    }
    return FWX_S_OK;
}

/* ---- the record a connection carries ---------------------------------------------------- */

fwx_redirect_record *fwx_connection_redirect_record(IFWXConnection *conn)
{
    if (conn == NULL || !fwx__conn_is_ours(conn))
        return NULL;
    return fwx__conn_x(fwx__conn_from(conn))->redirect;
}

fwx_result fwx_connection_set_redirect_record(IFWXConnection *conn, fwx_redirect_record *rec)
{
    if (conn == NULL || rec == NULL || !fwx__conn_is_ours(conn))
        return FWX_E_POINTER;
    fwx__conn *c = fwx__conn_from(conn);
    if (fwx__conn_x(c)->redirect == rec)
        return FWX_S_FALSE;
    if (fwx__conn_x(c)->redirect != NULL)
        return FWX_E_ALREADY_EXISTS_WIN32;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    fwx__conn_ext *x = fwx__conn_ext_get(c);
    if (x == NULL)
        return FWX_E_OUTOFMEMORY;
    x->redirect = fwx_redirect_record_ref(rec);
    return FWX_S_OK;
}
