/*
 * fwx - the plugin host: load filter plugins from .so files, start and stop them.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "core/log.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

fwx__plugin *fwx__plugin_find(fwx_firewall *fw, const fwx_guid *guid)
{
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next) {
        fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
        if (!p->unloaded && fwx_guid_equal(&p->guid, guid))
            return p;
    }
    return NULL;
}

/* A policy may bind a filter by its plugin's name (fwx_plugin_entry.name) as well as by GUID. */
fwx__plugin *fwx__plugin_for_filter(fwx_firewall *fw, const fwx__filter_ref *f)
{
    if (f->name == NULL)
        return fwx__plugin_find(fw, &f->guid);
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next) {
        fwx__plugin *p = fwx__list_entry(n, fwx__plugin, node);
        if (!p->unloaded && strcmp(p->name, f->name) == 0)
            return p;
    }
    return NULL;
}

fwx_plugin *fwx_firewall_find_plugin(fwx_firewall *fw, const fwx_guid *guid)
{
    if (fw == NULL || guid == NULL)
        return NULL;
    return (fwx_plugin *)fwx__plugin_find(fw, guid);
}

const fwx_plugin_entry *fwx_plugin_info(const fwx_plugin *plugin)
{
    return plugin ? ((const fwx__plugin *)plugin)->entry : NULL;
}

/* The code is unmapped only at firewall close: a data filter or context object the plugin
   handed out may still be referenced by a live connection until then. */
static void plugin_free(fwx__plugin *p)
{
    if (p->entry != NULL && p->entry->deinit != NULL)
        p->entry->deinit();
    if (p->dl != NULL)
        dlclose(p->dl);
    free(p->path);
    free(p->name);
    free(p);
}

/* Stops a plugin: its grants go first (Linux a242a9ae58aa: helpers unregistered with live
   expectations caused a use-after-free), then FilterShutdown, then its session filters. */
static void plugin_shutdown(fwx__plugin *p)
{
    fwx_firewall *fw = p->fw;
    if (p->unloaded)
        return;
    p->unloaded = true;
    for (fwx__list *sn = fw->sessions.next; sn != &fw->sessions; sn = sn->next) {
        fwx__session *s = fwx__list_entry(sn, fwx__session, node);
        /* Bounded by the list: removing g unlinks g alone, and the next one is taken first. */
        for (fwx__list *gn = s->grants.next; gn != &s->grants;) {
            fwx__grant *g = fwx__list_entry(gn, fwx__grant, session_node);
            gn = gn->next;
            if (g->owner == p)
                fwx__grant_remove(g, "its plugin is unloading");
        }
    }
    fwx__plugin_call saved;
    fwx__plugin_enter(fw, p, 0, &saved);
    fwx_result hr = IFWXFilter_FilterShutdown(p->filter);
    fwx__plugin_leave(fw, &saved);
    if (FWX_FAILED(hr))
        fwx__log(fw, FWX_LOG_WARN, "plugin \"%s\": FilterShutdown failed: %s", p->name, fwx_strerror(hr));
    fwx__sessions_detach_plugin(fw, p);
    IFWXFilter_Release(p->filter);
    p->filter = NULL;
    fwx__log_at(fw, FWX_LOG_INFO, &(fwx__log_about){.plugin = p}, "plugin \"%s\": unloaded", p->name);
}

fwx_result fwx_plugin_unload(fwx_plugin *plugin)
{
    if (plugin == NULL)
        return FWX_E_POINTER;
    plugin_shutdown((fwx__plugin *)plugin);
    return FWX_S_OK;
}

void fwx__plugins_close_all(fwx_firewall *fw)
{
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next)
        plugin_shutdown(fwx__list_entry(n, fwx__plugin, node));
}

/* The code goes last: a relay still closing may deliver a cancelled completion into a data
   filter, so plugins are unmapped only when the firewall's memory goes, which waits for the
   last connection object (and so for every relay) to be released. */
void fwx__plugins_free_all(fwx_firewall *fw)
{
    while (!fwx__list_empty(&fw->plugins)) { /* each step unlinks the first */
        fwx__plugin *p = fwx__list_entry(fw->plugins.next, fwx__plugin, node);
        fwx__list_remove(&p->node);
        plugin_free(p);
    }
}

static fwx_result refuse(fwx_firewall *fw, fwx__plugin *p, fwx_result hr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static fwx_result refuse(fwx_firewall *fw, fwx__plugin *p, fwx_result hr, const char *fmt, ...)
{
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fwx__fail(fw, "plugin \"%s\": %s, not loading", p->path, why);
    if (p->filter != NULL)
        IFWXFilter_Release(p->filter);
    plugin_free(p);
    return hr;
}

fwx_result fwx_firewall_load_plugin(fwx_firewall *fw, const char *path, fwx_plugin **out)
{
    char real[PATH_MAX];
    if (out != NULL)
        *out = NULL;
    if (fw == NULL || path == NULL)
        return FWX_E_POINTER;
    if (fw->closing)
        return FWX_E_TERMINATING;
    /* Each file is opened once (Lua's rule): the same path, or a link to it, is one plugin. */
    const char *key = realpath(path, real) ? real : path;
    for (fwx__list *n = fw->plugins.next; n != &fw->plugins; n = n->next) {
        fwx__plugin *q = fwx__list_entry(n, fwx__plugin, node);
        if (!q->unloaded && strcmp(q->path, key) == 0) {
            if (out != NULL)
                *out = (fwx_plugin *)q;
            return FWX_S_FALSE;
        }
    }
    fwx__plugin *p = calloc(1, sizeof *p);
    if (p == NULL || (p->path = strdup(key)) == NULL) {
        free(p);
        return FWX_E_OUTOFMEMORY;
    }
    p->fw = fw;
    p->index = ++fw->next_id;
    fwx__list_init(&p->node);

    p->dl = dlopen(key, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL)
        return refuse(fw, p, FWX_E_PLUGIN_LOAD, "%s", dlerror());
    dlerror();
    const fwx_plugin_entry *e = dlsym(p->dl, FWX_PLUGIN_ENTRY_SYMBOL);
    if (e == NULL)
        return refuse(fw, p, FWX_E_PLUGIN_LOAD, "no symbol %s", FWX_PLUGIN_ENTRY_SYMBOL);
    /* Read the version before anything else: the rest of the struct may have another shape. */
    uint32_t major = e->abi_version >> 16, minor = e->abi_version & 0xFFFF;
    if (major != FWX_ABI_VERSION_MAJOR || minor > FWX_ABI_VERSION_MINOR)
        return refuse(fw, p, FWX_E_ABI_MISMATCH, "abi %u.%u %s host %u.%u", major, minor,
                      major == FWX_ABI_VERSION_MAJOR ? "is newer than" : "does not match", FWX_ABI_VERSION_MAJOR,
                      FWX_ABI_VERSION_MINOR);
    if (!fwx__struct_size_ok(e->struct_size, FWX__FIRST_PLUGIN_ENTRY, sizeof *e))
        return refuse(fw, p, FWX_E_ABI_MISMATCH, "entry is %u bytes, expected %zu to %zu", e->struct_size,
                      (size_t)FWX__FIRST_PLUGIN_ENTRY, sizeof *e);
    if (e->name == NULL || e->name[0] == '\0' || e->create_filter == NULL)
        return refuse(fw, p, FWX_E_PLUGIN_LOAD, "entry has no name or no create_filter");
    if (fwx_guid_equal(&e->filter_guid, &FWX_GUID_NULL))
        return refuse(fw, p, FWX_E_PLUGIN_LOAD, "entry has a null filter guid");
    fwx__plugin *dup = fwx__plugin_find(fw, &e->filter_guid);
    if (dup != NULL)
        return refuse(fw, p, FWX_E_ALREADY_EXISTS_WIN32, "filter guid already used by plugin \"%s\"", dup->name);
    p->entry = e;
    p->guid = e->filter_guid;
    if ((p->name = strdup(e->name)) == NULL)
        return refuse(fw, p, FWX_E_OUTOFMEMORY, "out of memory");

    fwx_result hr = e->init ? e->init(key) : FWX_S_OK;
    if (FWX_FAILED(hr)) {
        p->entry = NULL; /* init failed: deinit must not run */
        return refuse(fw, p, FWX_E_PLUGIN_INIT, "init failed: %s", fwx_strerror(hr));
    }
    hr = e->create_filter(&p->filter);
    if (FWX_FAILED(hr) || p->filter == NULL) {
        p->filter = NULL;
        return refuse(fw, p, FWX_E_PLUGIN_INIT, "create_filter failed: %s",
                      fwx_strerror(FWX_FAILED(hr) ? hr : FWX_E_POINTER));
    }
    FwxFilterHookEvents hooks = {0};
    fwx__plugin_call saved;
    fwx__plugin_enter(fw, p, 0, &saved);
    hr = IFWXFilter_FilterInit(p->filter, &fw->iface, &hooks);
    fwx__plugin_leave(fw, &saved);
    if (FWX_FAILED(hr)) {
        IFWXFilter_FilterShutdown(p->filter);
        return refuse(fw, p, FWX_E_PLUGIN_INIT, "FilterInit failed: %s", fwx_strerror(hr));
    }
    uint32_t asked = hooks.dwGlobalEvents & FWX_HOOK_EVENTS_MASK;
    p->hooks = asked & e->allowed_events;
    if (p->hooks != asked)
        fwx__log(fw, FWX_LOG_WARN, "plugin \"%s\": hooks 0x%08x are outside its manifest 0x%08x, ignored", p->name,
                 asked & ~e->allowed_events, e->allowed_events);
    fwx__list_insert_tail(&fw->plugins, &p->node);
    char g[FWX_GUID_STRLEN];
    fwx__log_at(fw, FWX_LOG_INFO, &(fwx__log_about){.plugin = p}, "plugin \"%s\": loaded from %s, filter %s, hooks 0x%08x", p->name, p->path,
             fwx_guid_format(&p->guid, g), p->hooks);
    if (out != NULL)
        *out = (fwx_plugin *)p;
    return FWX_S_OK;
}

static int so_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 3 && strcmp(d->d_name + n - 3, ".so") == 0;
}

fwx_result fwx_firewall_load_plugin_dir(fwx_firewall *fw, const char *dir, unsigned *n_loaded)
{
    struct dirent **names = NULL;
    unsigned ok = 0;
    bool failed = false;
    if (n_loaded != NULL)
        *n_loaded = 0;
    if (fw == NULL || dir == NULL)
        return FWX_E_POINTER;
    int n = scandir(dir, &names, so_filter, alphasort);
    if (n < 0) {
        fwx__fail(fw, "plugin directory \"%s\": cannot read it", dir);
        return FWX_E_NOT_FOUND;
    }
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        fwx_result hr = fwx_firewall_load_plugin(fw, path, NULL);
        if (hr == FWX_S_OK)
            ok++;
        else if (FWX_FAILED(hr))
            failed = true;
        free(names[i]);
    }
    free(names);
    if (n_loaded != NULL)
        *n_loaded = ok;
    return failed ? FWX_S_FALSE : FWX_S_OK;
}
