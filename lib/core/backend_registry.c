/*
 * fwx - the backend registry and the core's calls into the firewall's backend.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

/* A process-wide registry, as SQLite keeps its VFS list: backends are code, not state. */
#define MAX_BACKENDS 32

/* Backends built into libfwx, found by name without registration. The nft backend is there
   when libfwx was built with libnftables (meson feature 'nft'); its name stays reserved either
   way, so that a configuration written for it fails the same on every build. */
extern const fwx_backend fwx__proxy_backend;
#if FWX_HAVE_NFT
extern const fwx_backend fwx__nft_backend;
static const fwx_backend *const builtins[] = {&fwx__proxy_backend, &fwx__nft_backend};
#else
static const fwx_backend *const builtins[] = {&fwx__proxy_backend};
#endif
static const char *const builtin_names[] = {"proxy", "nft"};
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const fwx_backend *registry[MAX_BACKENDS];

fwx_result fwx_backend_register(const fwx_backend *b)
{
    if (b == NULL || b->version < 1 || b->name == NULL || b->name[0] == '\0' || b->open == NULL ||
        b->close == NULL || b->grant_add == NULL || b->grant_remove == NULL)
        return FWX_E_INVALIDARG;
    if (b->version > FWX_BACKEND_VERSION)
        return FWX_E_NOT_SUPPORTED;
    for (size_t i = 0; i < FWX__ARRAY_SIZE(builtin_names); i++)
        if (strcmp(builtin_names[i], b->name) == 0)
            return FWX_E_ALREADY_EXISTS_WIN32;
    fwx_result hr = FWX_E_QUOTA_EXCEEDED;
    pthread_mutex_lock(&registry_lock);
    int free_slot = -1;
    for (int i = 0; i < MAX_BACKENDS; i++) {
        if (registry[i] == NULL) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (strcmp(registry[i]->name, b->name) == 0) {
            hr = registry[i] == b ? FWX_S_FALSE : FWX_E_ALREADY_EXISTS_WIN32;
            free_slot = -2;
            break;
        }
    }
    if (free_slot >= 0) {
        registry[free_slot] = b;
        hr = FWX_S_OK;
    }
    pthread_mutex_unlock(&registry_lock);
    return hr;
}

fwx_result fwx_backend_unregister(const fwx_backend *b)
{
    fwx_result hr = FWX_E_NOT_FOUND;
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < MAX_BACKENDS; i++) {
        if (b != NULL && registry[i] == b) {
            registry[i] = NULL;
            hr = FWX_S_OK;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return hr;
}

const fwx_backend *fwx_backend_find(const char *name)
{
    const fwx_backend *found = NULL;
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < FWX__ARRAY_SIZE(builtins); i++)
        if (strcmp(builtins[i]->name, name) == 0)
            return builtins[i];
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < MAX_BACKENDS && found == NULL; i++)
        if (registry[i] != NULL && strcmp(registry[i]->name, name) == 0)
            found = registry[i];
    pthread_mutex_unlock(&registry_lock);
    return found;
}

void *fwx_firewall_backend_state(fwx_firewall *fw) { return fw ? fw->backend_state : NULL; }

/* The backend a wrapper forwards to, and that instance's state; NULL for one that wraps none. */
static const fwx_backend *wrapped_by(const fwx_backend *b, void *state, void **inner_state)
{
    *inner_state = NULL;
    if (b->version < 4 || b->wrapped == NULL)
        return NULL;
    const fwx_backend *inner = b->wrapped(state, inner_state);
    if (inner == NULL)
        *inner_state = NULL;
    return inner;
}

/* Wrappers deeper than this are a loop (a wrapper reporting itself) or a mistake. */
#define MAX_WRAP_DEPTH 8

void *fwx_firewall_backend_state_of(fwx_firewall *fw, const fwx_backend *backend)
{
    if (fw == NULL || backend == NULL)
        return NULL;
    const fwx_backend *b = fw->backend;
    void *state = fw->backend_state;
    for (int depth = 0; b != NULL && depth <= MAX_WRAP_DEPTH; depth++) {
        if (b == backend)
            return state;
        b = wrapped_by(b, state, &state);
    }
    return NULL;
}

const fwx_backend *fwx_firewall_backend(const fwx_firewall *fw) { return fw ? fw->backend : NULL; }

bool fwx__backend_kernel_carries(fwx_firewall *fw)
{
#if FWX_HAVE_NFT
    return fwx_firewall_backend_state_of(fw, &fwx__nft_backend) != NULL;
#else
    (void)fw;
    return false;
#endif
}

/* Installs every grant the firewall holds into a freshly opened backend. */
static fwx_result install_all(fwx_firewall *fw)
{
    for (fwx__list *sn = fw->sessions.next; sn != &fw->sessions; sn = sn->next) {
        fwx__session *s = fwx__list_entry(sn, fwx__session, node);
        for (fwx__list *gn = s->grants.next; gn != &s->grants; gn = gn->next) {
            fwx__grant *g = fwx__list_entry(gn, fwx__grant, session_node);
            if (g->type == FWX__G_FACTORY || (g->type == FWX__G_CLIENT_BIND && !g->approved))
                continue;
            fwx_result hr = fwx__backend_grant_add(fw, g);
            if (FWX_FAILED(hr))
                return hr;
        }
    }
    return FWX_S_OK;
}

fwx_result fwx_firewall_set_backend(fwx_firewall *fw, const char *name)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    if (fw->closing)
        return FWX_E_TERMINATING;
    const fwx_backend *b = fwx_backend_find(name);
    if (b == NULL) {
        if (name != NULL && strcmp(name, "nft") == 0)
            fwx__fail(fw, "backend \"nft\": not built into this libfwx (it was built without libnftables: "
                          "meson feature 'nft')");
        else
            fwx__fail(fw, "backend \"%s\": not registered", name ? name : "(null)");
        return FWX_E_NOT_FOUND;
    }
    fwx__backend_close(fw);
    /* Redirect-registry files of writers that are gone (lib/core/redirect_registry.c): a new
       backend instance must not take a dead process's records for its flows'. */
    fwx__registry_sweep();
    void *state = NULL;
    fw->last_error[0] = '\0';
    fwx_result hr = b->open(b, fw, &state);
    if (FWX_FAILED(hr)) {
        /* Keep the backend's own reason (it may have said exactly what is missing). */
        char why[sizeof fw->last_error];
        snprintf(why, sizeof why, "%s", fw->last_error);
        fwx__fail(fw, "backend \"%s\": open failed: %s%s%s", b->name, fwx_strerror(hr), why[0] ? ": " : "", why);
        return hr;
    }
    fw->backend = b;
    fw->backend_state = state;
    hr = install_all(fw);
    if (FWX_FAILED(hr)) {
        fwx__fail(fw, "backend \"%s\": could not install existing grants: %s", b->name, fwx_strerror(hr));
        fwx__backend_close(fw);
        return hr;
    }
    void *inner_state;
    const fwx_backend *inner = wrapped_by(b, state, &inner_state);
    fwx__log(fw, FWX_LOG_INFO, "firewall \"%s\": using backend \"%s\"%s%s%s", fw->name, b->name,
             inner ? " (wrapping \"" : "", inner ? inner->name : "", inner ? "\")" : "");
    if (fw->policy != NULL)
        fwx__backend_policy_changed(fw);
    return fwx__publish_sync(fw);
}

/* Remembers a grant the backend failed to remove, to ask again (see retry_stuck). */
static void stuck_add(fwx_firewall *fw, uint64_t id)
{
    if (fw->n_stuck_grants == fw->cap_stuck_grants) {
        size_t cap = fw->cap_stuck_grants ? fw->cap_stuck_grants * 2 : 8;
        uint64_t *ids = realloc(fw->stuck_grants, cap * sizeof *ids);
        if (ids == NULL)
            return; /* logged already: it stays the backend's until it closes */
        fw->stuck_grants = ids;
        fw->cap_stuck_grants = cap;
    }
    fw->stuck_grants[fw->n_stuck_grants++] = id;
}

/* Asks the backend again to remove what it failed to before, so that what a grant opened (a
   bound port's listener) does not outlive the grant for longer than the next grant change.
   Ids are never reused, so a late removal cannot hit a newer grant. */
static void retry_stuck(fwx_firewall *fw)
{
    size_t k = 0;
    for (size_t i = 0; i < fw->n_stuck_grants; i++) {
        fwx_result hr = fw->backend->grant_remove(fw->backend_state, fw->stuck_grants[i]);
        if (FWX_FAILED(hr) && hr != FWX_E_NOT_FOUND)
            fw->stuck_grants[k++] = fw->stuck_grants[i];
        else
            fwx__log(fw, FWX_LOG_INFO, "backend \"%s\": grant %llu removed on a later try", fw->backend->name,
                     (unsigned long long)fw->stuck_grants[i]);
    }
    fw->n_stuck_grants = k;
}

static void stuck_forget(fwx_firewall *fw)
{
    free(fw->stuck_grants);
    fw->stuck_grants = NULL;
    fw->n_stuck_grants = fw->cap_stuck_grants = 0;
}

/* The hosts admit_grant's checks let through (lib/core/secondary.c, fwx_firewall_admit): a
   redirect port and a permission admit the session's own hosts (fwx__session_is_own_host: the
   client, the published servers of its connections); a bound port the external peers of its
   primary connections (fwx__conn_counts_as_peer), unless an IP filter decides instead; a
   client bind is decided at each arrival (its IP filter and the policy). */
static fwx_result push_source(fwx_grant_source **v, uint32_t *n, const fwx__sa *a, uint32_t flags)
{
    struct sockaddr_storage ip;
    fwx__sa_get(&ip, a);
    fwx__sa_set_port((struct sockaddr *)&ip, 0);
    for (uint32_t i = 0; i < *n; i++)
        if (fwx__sa_same_ip((const struct sockaddr *)&(*v)[i].address, (const struct sockaddr *)&ip)) {
            (*v)[i].flags |= flags; /* one host, two roles: the stricter translation wins */
            return FWX_S_OK;
        }
    fwx_grant_source *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return FWX_E_OUTOFMEMORY;
    *v = nv;
    memset(&nv[*n], 0, sizeof nv[*n]);
    nv[*n].address = ip;
    nv[*n].flags = flags;
    (*n)++;
    return FWX_S_OK;
}

fwx_result fwx__grant_sources(const fwx__grant *g, fwx_grant_source **out, uint32_t *n, uint32_t *flags)
{
    const fwx__session *s = g->session;
    fwx_result hr = FWX_S_OK;
    *out = NULL;
    *n = 0;
    *flags = 0;
    switch (g->type) {
    case FWX__G_PERMISSION:
    case FWX__G_REDIRECT:
        if (g->pub.flags & FWX_FLAG_REPLY_FROM_PEER) {
            hr = push_source(out, n, &g->only_source, 0); /* the one party it names (secondary.c) */
            break;
        }
        hr = push_source(out, n, &s->client, 0);
        for (const fwx__list *cn = s->conns.next; cn != &s->conns && FWX_SUCCEEDED(hr); cn = cn->next) {
            const fwx__conn *c = fwx__list_entry(cn, fwx__conn, node);
            /* Full proxy: the other side sees the server's connection come from the gateway,
               as it sees the control connection (a DMZ's addresses must not leak out). */
            if (fwx__conn_has_own_server(c))
                hr = push_source(out, n, &c->server,
                                 (c->flags & FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION) ? FWX_GRANT_SOURCE_TRANSLATE
                                                                                           : 0);
        }
        break;
    case FWX__G_BINDING:
        if (g->ipfilter != NULL)
            *flags |= FWX_GRANT_SOURCES_FILTERED;
        for (const fwx__list *cn = s->conns.next; cn != &s->conns && FWX_SUCCEEDED(hr); cn = cn->next) {
            const fwx__conn *c = fwx__list_entry(cn, fwx__conn, node);
            if (fwx__conn_counts_as_peer(c))
                hr = push_source(out, n, &c->ext_peer, 0);
        }
        break;
    case FWX__G_CLIENT_BIND:
    case FWX__G_FACTORY:
        *flags |= FWX_GRANT_SOURCES_FILTERED;
        break;
    }
    if (FWX_FAILED(hr)) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return hr;
}

/* fw->backend_grants holds exactly the grants installed in the backend or being handed to it
   (installed || adding): a grant's id finds it while the backend may name it. */
static void held_add(fwx_firewall *fw, fwx__grant *g)
{
    if (g->backend_held)
        return;
    g->backend_held = true;
    HASH_ADD(id_hh, fw->backend_grants, pub.id, sizeof g->pub.id, g);
}

static void held_remove(fwx_firewall *fw, fwx__grant *g)
{
    if (!g->backend_held)
        return;
    g->backend_held = false;
    HASH_DELETE(id_hh, fw->backend_grants, g);
}

fwx_result fwx__backend_grant_add(fwx_firewall *fw, fwx__grant *g)
{
    if (fw->backend == NULL) {
        /* A host without a backend carries the grant itself: it is set up all the same. */
        if (!g->announced) {
            g->announced = true;
            fwx__event_grant(g, FWX_EVENT_PERMISSION_ADDED);
        }
        return FWX_S_OK;
    }
    if (fw->n_stuck_grants > 0)
        retry_stuck(fw);
    fwx_grant_source *sources = NULL;
    fwx_result hr = fwx__grant_sources(g, &sources, &g->pub.n_sources, &g->pub.source_flags);
    if (FWX_FAILED(hr))
        return hr;
    g->pub.sources = sources;
    g->in_kernel = false;
    held_add(fw, g);
    g->adding = true;
    hr = fw->backend->grant_add(fw->backend_state, &g->pub);
    g->adding = false;
    /* The list was for this call: the struct stays with the core (fwx_backend::list). */
    g->pub.sources = NULL;
    g->pub.n_sources = 0;
    free(sources);
    if (FWX_FAILED(hr)) {
        g->in_kernel = false;
        held_remove(fw, g);
    }
    if (FWX_SUCCEEDED(hr))
        g->installed = true;
    if (FWX_SUCCEEDED(hr) && !g->announced) {
        g->announced = true;
        fwx__event_grant(g, FWX_EVENT_PERMISSION_ADDED);
    }
    return hr;
}

fwx_result fwx_backend_grant_in_kernel(fwx_firewall *fw, const fwx_grant *grant)
{
    if (fw == NULL || grant == NULL)
        return FWX_E_POINTER;
    /* Only the grant inside its grant_add, so a backend cannot mark one it was not handed
       (another it holds, a copy, one of another firewall): the id finds the core's grant, the
       pointer must be the one handed over. O(1): set-up latency must not grow with the grants
       outstanding (bench/kernel.sh, kernel-ftp-10k). */
    fwx__grant *g = NULL;
    HASH_FIND(id_hh, fw->backend_grants, &grant->id, sizeof grant->id, g);
    if (g == NULL || &g->pub != grant || !g->adding)
        return FWX_E_INVALIDARG;
    g->in_kernel = true;
    return FWX_S_OK;
}

void fwx__backend_grant_remove(fwx_firewall *fw, fwx__grant *g)
{
    if (!g->installed)
        return;
    g->installed = false;
    held_remove(fw, g);
    if (fw->backend == NULL)
        return;
    if (fw->n_stuck_grants > 0)
        retry_stuck(fw);
    fwx_result hr = fw->backend->grant_remove(fw->backend_state, g->pub.id);
    if (FWX_FAILED(hr)) {
        fwx__log(fw, FWX_LOG_WARN, "backend \"%s\": removing grant %llu failed: %s%s", fw->backend->name,
                 (unsigned long long)g->pub.id, fwx_strerror(hr),
                 hr == FWX_E_NOT_FOUND ? "" : "; asked again at the next grant change");
        if (hr != FWX_E_NOT_FOUND)
            stuck_add(fw, g->pub.id);
    }
}

void fwx__backend_grant_remove_many(fwx_firewall *fw, fwx__grant **gs, size_t n)
{
    const fwx_backend *b = fw->backend;
    if (b == NULL || b->version < 3 || b->grant_remove_many == NULL) {
        for (size_t i = 0; i < n; i++)
            fwx__backend_grant_remove(fw, gs[i]);
        return;
    }
    uint64_t *ids = malloc(n * sizeof *ids);
    if (ids == NULL) {
        for (size_t i = 0; i < n; i++)
            fwx__backend_grant_remove(fw, gs[i]);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (gs[i]->installed) {
            gs[i]->installed = false;
            held_remove(fw, gs[i]);
            ids[k++] = gs[i]->pub.id;
        }
    if (fw->n_stuck_grants > 0)
        retry_stuck(fw);
    fwx_result hr = k > 0 ? b->grant_remove_many(fw->backend_state, ids, k) : FWX_S_OK;
    if (FWX_FAILED(hr)) {
        /* Which of them went is unknown: each is asked again (one gone already says NOT_FOUND). */
        fwx__log(fw, FWX_LOG_WARN, "backend \"%s\": removing %zu grants at once failed: %s; asked again at the "
                 "next grant change", b->name, k, fwx_strerror(hr));
        for (size_t i = 0; i < k; i++)
            stuck_add(fw, ids[i]);
    }
    free(ids);
}

fwx_result fwx__backend_relay(fwx_firewall *fw, fwx__conn *c)
{
    if (fw->backend == NULL || fw->backend->relay == NULL) {
        /* The host carries the bytes. Data filters it cannot run would be skipped in silence:
           refuse the connection instead, unless it said it relays through fwx_connection_relay. */
        if (c->n_dfs > 0 && !fw->host_relay) {
            fwx__log(fw, FWX_LOG_WARN,
                     "connection %llu: refused: %zu data filter(s) attached but nothing runs them (no backend "
                     "relays connections, and the host did not call fwx_firewall_set_host_relay)",
                     (unsigned long long)c->id, c->n_dfs);
            fwx__conn_terminate(c);
            return FWX_E_NOT_SUPPORTED;
        }
        return FWX_S_OK;
    }
    fwx_result hr = fw->backend->relay(fw->backend_state, &c->iface, (c->flags & FWX_CONNECTION_KERNEL_MODE) != 0);
    if (FWX_FAILED(hr)) {
        fwx__log(fw, FWX_LOG_WARN, "backend \"%s\": relay of connection %llu failed: %s, killing it",
                 fw->backend->name, (unsigned long long)c->id, fwx_strerror(hr));
        fwx__conn_terminate(c);
        return hr == FWX_E_NOT_SUPPORTED ? hr : FWX_E_BACKEND; /* a refusal the backend chose, or its failure */
    }
    return FWX_S_OK;
}

void fwx__backend_kill(fwx_firewall *fw, fwx__conn *c)
{
    if (fwx__conn_x(c)->host_pump != NULL)
        fwx__relay_kill(c); /* the host's relay (lib/core/datapath.c) ends with it */
    if (fw->backend == NULL || fw->backend->kill == NULL)
        return;
    /* FWX_E_NOT_FOUND is the common case: a connection the host carries, not the backend. */
    fwx_result hr = fw->backend->kill(fw->backend_state, &c->iface);
    if (FWX_FAILED(hr) && hr != FWX_E_NOT_FOUND)
        fwx__log(fw, FWX_LOG_WARN, "backend \"%s\": killing connection %llu failed: %s", fw->backend->name,
                 (unsigned long long)c->id, fwx_strerror(hr));
}

void fwx__backend_policy_changed(fwx_firewall *fw)
{
    const fwx_backend *b = fw->backend;
    if (b == NULL || b->version < 2 || b->policy_changed == NULL)
        return;
    fwx_result hr = b->policy_changed(fw->backend_state, fw->policy);
    if (FWX_FAILED(hr))
        fwx__log(fw, FWX_LOG_ERROR, "backend \"%s\": the policy could not be applied: %s", b->name,
                 fwx_strerror(hr));
}

void fwx__backend_close(fwx_firewall *fw)
{
    if (fw->backend == NULL)
        return;
    /* Grants are forgotten by the backend along with its state. */
    fwx__grant *g, *tmp;
    HASH_ITER(id_hh, fw->backend_grants, g, tmp) {
        g->installed = false;
        held_remove(fw, g);
    }
    fwx__publish_forget(fw); /* the backend's listeners go with it */
    stuck_forget(fw);          /* and what it failed to remove */
    fw->backend->close(fw->backend_state);
    fw->backend = NULL;
    fw->backend_state = NULL;
}

#if !FWX_HAVE_NFT
/* Local redirection is the nft backend's (lib/backends/nft/nft.c); without it, the call says so. */
fwx_result fwx_firewall_redirect_local(fwx_firewall *fw, const fwx_local_redirect *spec)
{
    if (fw == NULL || spec == NULL)
        return FWX_E_POINTER;
    fwx__fail(fw, "local redirection needs the \"nft\" backend, and this libfwx was built without it");
    return FWX_E_NOT_SUPPORTED;
}
#endif

/* ---- what the core knows, for backends (include/fwx/backend.h) ------------------------------ */

const char *fwx_firewall_name(const fwx_firewall *fw) { return fw != NULL && fw->name != NULL ? fw->name : ""; }

fwx_result fwx_firewall_get_options(const fwx_firewall *fw, fwx_firewall_options *out)
{
    if (fw == NULL || out == NULL)
        return FWX_E_POINTER;
    /* The rule fwx_firewall_new applies to the input: the first release's fields at least. */
    if (out->struct_size < offsetof(fwx_firewall_options, log_level) + sizeof out->log_level)
        return FWX_E_INVALIDARG;
    uint32_t size = out->struct_size < sizeof fw->opts ? out->struct_size : (uint32_t)sizeof fw->opts;
    memcpy(out, &fw->opts, size);
    out->struct_size = size; /* what was written; never more than the caller's struct */
    return FWX_S_OK;
}

fwx_result fwx_firewall_local_address(const fwx_firewall *fw, size_t index, struct sockaddr_storage *out)
{
    if (fw == NULL || out == NULL)
        return FWX_E_POINTER;
    if (index >= fw->n_local) {
        memset(out, 0, sizeof *out);
        return FWX_S_FALSE;
    }
    *out = fw->local[index];
    return FWX_S_OK;
}

int32_t fwx_firewall_is_local_address(const fwx_firewall *fw, const struct sockaddr *addr, uint32_t len)
{
    struct sockaddr_storage a;
    if (fw == NULL || addr == NULL || !fwx__sa_canon(addr, len, &a))
        return 0;
    return fwx__firewall_is_local(fw, (const struct sockaddr *)&a);
}

const char *fwx_firewall_forbidden_host(const fwx_firewall *fw, const struct sockaddr *addr, uint32_t len)
{
    struct sockaddr_storage a;
    if (fw == NULL || addr == NULL || !fwx__sa_canon(addr, len, &a))
        return "not an IPv4 or IPv6 address";
    return fwx__firewall_forbidden_host(fw, (const struct sockaddr *)&a);
}

int32_t fwx_firewall_hooks(fwx_firewall *fw, uint32_t events)
{
    if (fw == NULL)
        return 0;
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next) {
        const fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
        if (!p->unloaded && (p->hooks & events) == events)
            return 1;
    }
    return 0;
}

void fwx_backend_fail(fwx_firewall *fw, const char *fmt, ...)
{
    if (fw == NULL || fmt == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fw->last_error, sizeof fw->last_error, fmt, ap);
    va_end(ap);
    fwx__log(fw, FWX_LOG_ERROR, "%s", fw->last_error);
}

const char *fwx_connection_data_filter_owner(IFWXConnection *conn, uint32_t index)
{
    if (conn == NULL || !fwx__conn_is_ours(conn))
        return NULL;
    const fwx__conn *c = fwx__conn_from(conn);
    if (index >= c->n_dfs)
        return NULL;
    const fwx__plugin *p = c->dfs[index].plugin;
    return p != NULL && p->name != NULL ? p->name : "";
}

const fwx_policy *fwx_firewall_policy(const fwx_firewall *fw) { return fw != NULL ? fw->policy : NULL; }

