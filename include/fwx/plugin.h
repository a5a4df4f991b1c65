/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/plugin.h
 * @brief The one symbol a filter plugin exports.
 *
 * @page plugins Writing a plugin
 * A plugin is a shared object that exports one constant of type ::fwx_plugin_entry, named
 * `fwx_entry` (see ::FWX_PLUGIN_ENTRY_SYMBOL):
 * @code
 * FWX_PLUGIN_EXPORT const fwx_plugin_entry fwx_entry = { .abi_version = FWX_ABI_VERSION, ... };
 * @endcode
 * Its first field is the ABI version the
 * plugin was built against: the host loads a plugin with the same major version and a minor
 * version no newer than its own, and refuses any other with a message naming both.
 *
 * Loading goes: dlopen(RTLD_NOW | RTLD_LOCAL) → check the entry → `init` → `create_filter`
 * → IFWXFilter::FilterInit. A failure at any step unloads the plugin and leaves the plugins
 * already loaded as they were (a failed FilterInit is followed by FilterShutdown).
 * Unloading (fwx_plugin_unload()) goes: the grants its filters made are withdrawn →
 * IFWXFilter::FilterShutdown → its session filters are detached. The code stays mapped, and
 * `deinit` and dlclose wait, until the firewall closes: objects the plugin handed out (data
 * filters, contexts) may still be referenced by live connections until then. Loading the same
 * file again before that gives the same mapping, so `init` may run again before `deinit`:
 * count your users if `init` acquires something.
 *
 * Export nothing else: link with a version script (see plugins/fwx-plugin.map).
 */
#ifndef FWX_PLUGIN_H
#define FWX_PLUGIN_H

#include <fwx/sdk.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The ABI major version: changes when a released interface or struct changes incompatibly.
 * It is the library's major version and SONAME (see @ref versions).
 */
#define FWX_ABI_VERSION_MAJOR FWX_VERSION_MAJOR
/** The ABI minor version: grows when something is appended. It is the library's minor version. */
#define FWX_ABI_VERSION_MINOR FWX_VERSION_MINOR
/** The ABI version as one number: major in the high 16 bits, minor in the low 16. */
#define FWX_ABI_VERSION ((uint32_t)((FWX_ABI_VERSION_MAJOR << 16) | FWX_ABI_VERSION_MINOR))
/** The name of the exported entry symbol. */
#define FWX_PLUGIN_ENTRY_SYMBOL "fwx_entry"

/**
 * @brief What a plugin exports. Everything in it is read by the host at load time.
 *
 * A later ABI minor version may append fields; the host reads only `struct_size` bytes
 * (handed out by the plugin, see @ref struct_sizes; first size 88 bytes, through create_filter; a
 * size below it or above the host's sizeof refuses the plugin with FWX_E_ABI_MISMATCH).
 */
typedef struct fwx_plugin_entry {
    /** FWX_ABI_VERSION of the headers the plugin was built with. Always first. */
    uint32_t abi_version;
    /** sizeof(fwx_plugin_entry) as the plugin saw it. */
    uint32_t struct_size;
    /** The filter's class id: identifies it in policy (protocol bindings) and in AttachFilter. */
    fwx_guid filter_guid;
    /** A short name, such as "ftp": lower case, no spaces. Required. */
    const char *name;
    /** Who made it. May be NULL. */
    const char *vendor;
    /** The plugin's own version text. May be NULL. */
    const char *version;
    /** One sentence on what it does. May be NULL. */
    const char *description;
    /**
     * The capability manifest: every event type, source and protocol-source bit the filter
     * may ever hook. The host masks what FilterInit and AttachToSession ask for with it, and
     * logs what it removed. Rationale: a filter that hooks every bind of every protocol can
     * deny or emulate other filters' traffic; the manifest makes that visible and bounded.
     */
    uint32_t allowed_events;
    /**
     * Called once after dlopen, before create_filter. May be NULL. [init-only]
     * @param plugin_path the path it was loaded from (borrowed).
     * @return FWX_S_OK; any failure refuses the plugin.
     */
    fwx_result (*init)(const char *plugin_path);
    /** Called once before dlclose. May be NULL. [loop-thread] */
    void (*deinit)(void);
    /**
     * Creates the plugin's one filter object. Required. [init-only]
     * @param ppFilter receives a new reference (+1).
     * @return FWX_S_OK; any failure refuses the plugin.
     */
    fwx_result (*create_filter)(IFWXFilter **ppFilter);
} fwx_plugin_entry;

#ifdef __cplusplus
}
#endif

#endif /* FWX_PLUGIN_H */
