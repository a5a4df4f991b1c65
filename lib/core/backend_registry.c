/*
 * fwx - the backend registry and the core's calls into the firewall's backend.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

#include <pthread.h>
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
    fwx__log(fw, FWX_LOG_INFO, "firewall \"%s\": using backend \"%s\"", fw->name, b->name);
    if (fw->policy != NULL)
        fwx__backend_policy_changed(fw);
    return fwx__publish_sync(fw);
}

fwx_result fwx__backend_grant_add(fwx_firewall *fw, fwx__grant *g)
{
    if (fw->backend == NULL)
        return FWX_S_OK;
    g->in_kernel = false;
    fw->grant_adding = &g->pub;
    fwx_result hr = fw->backend->grant_add(fw->backend_state, &g->pub);
    fw->grant_adding = NULL;
    if (FWX_FAILED(hr))
        g->in_kernel = false;
    if (FWX_SUCCEEDED(hr))
        g->installed = true;
    return hr;
}

fwx_result fwx_backend_grant_in_kernel(fwx_firewall *fw, const fwx_grant *grant)
{
    if (fw == NULL || grant == NULL)
        return FWX_E_POINTER;
    /* Only the grant being added, so a backend cannot mark one it was not handed. */
    if (fw->grant_adding != grant)
        return FWX_E_INVALIDARG;
    fwx__container_of(grant, fwx__grant, pub)->in_kernel = true;
    return FWX_S_OK;
}

void fwx__backend_grant_remove(fwx_firewall *fw, fwx__grant *g)
{
    if (!g->installed)
        return;
    g->installed = false;
    if (fw->backend == NULL)
        return;
    fwx_result hr = fw->backend->grant_remove(fw->backend_state, g->pub.id);
    if (FWX_FAILED(hr))
        fwx__log(fw, FWX_LOG_WARN, "backend \"%s\": removing grant %llu failed: %s", fw->backend->name,
                 (unsigned long long)g->pub.id, fwx_strerror(hr));
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
            ids[k++] = gs[i]->pub.id;
        }
    fwx_result hr = k > 0 ? b->grant_remove_many(fw->backend_state, ids, k) : FWX_S_OK;
    if (FWX_FAILED(hr))
        fwx__log(fw, FWX_LOG_WARN, "backend \"%s\": removing %zu grants at once failed: %s", b->name, k,
                 fwx_strerror(hr));
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
    if (c->host_pump != NULL)
        fwx__relay_kill(c); /* the host's relay (lib/backends/usermode/relay.c) ends with it */
    if (fw->backend == NULL || fw->backend->kill == NULL)
        return;
    (void)fw->backend->kill(fw->backend_state, &c->iface);
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
    for (fwx__list *sn = fw->sessions.next; sn != &fw->sessions; sn = sn->next) {
        fwx__session *s = fwx__list_entry(sn, fwx__session, node);
        for (fwx__list *gn = s->grants.next; gn != &s->grants; gn = gn->next)
            fwx__list_entry(gn, fwx__grant, session_node)->installed = false;
    }
    fwx__publish_forget(fw); /* the backend's listeners go with it */
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
