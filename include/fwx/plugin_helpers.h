/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/plugin_helpers.h
 * @brief Header-only helpers for filter plugins: reference counts, QueryInterface over a table
 * of interface ids, the object behind an interface, the filter factory and the entry symbol.
 *
 * @page plugin_helpers Plugin helpers
 * Every object a filter implements (its IFWXFilter, each IFWXSessionFilter, each
 * IFWXDataFilter, completions) needs the same three IUnknown methods written the same way:
 * QueryInterface that always writes its out pointer and adds a reference on success, AddRef
 * and Release on an atomic count that starts at 1 and frees the object at 0. This header
 * writes them once. It defines no symbol of its own (only `static inline` functions and
 * macros that expand in the plugin), so a plugin that uses it still links nothing of libfwx
 * and still exports only `fwx_entry`. It compiles as C11 and as C++; FWX_PLUGIN_ENTRY() uses
 * designated initializers, so in C++ it needs C++20.
 *
 * An object embeds its interface and a ::fwx_refcount:
 * @code
 * typedef struct my_sf {
 *     IFWXSessionFilter iface;
 *     fwx_refcount refs;
 *     IFWXSession *session;            // +1 from AttachToSession until Detach
 * } my_sf;
 *
 * static void my_sf_destroy(my_sf *sf) { free(sf); }   // the count reached 0
 * // my_sf_impl, my_sf_QueryInterface, my_sf_AddRef, my_sf_Release:
 * FWX_IUNKNOWN_IMPL(my_sf, IFWXSessionFilter, my_sf, iface, refs, my_sf_destroy, &IID_IFWXSessionFilter)
 *
 * static const IFWXSessionFilterVtbl my_sf_vtbl = {
 *     my_sf_QueryInterface, my_sf_AddRef, my_sf_Release, my_sf_FirewallEventHandler, my_sf_Detach,
 * };
 * @endcode
 * and the plugin's filter and entry:
 * @code
 * FWX_IUNKNOWN_IMPL(my_filter, IFWXFilter, my_filter, iface, refs, my_filter_destroy, &IID_IFWXFilter)
 * static const IFWXFilterVtbl my_filter_vtbl = { ... };
 * FWX_PLUGIN_CREATE_FILTER(my_create_filter, my_filter, iface, refs, my_filter_vtbl)
 * FWX_PLUGIN_ENTRY(.filter_guid = FWX_GUID_INIT(...), .name = "mine", .allowed_events = MY_HOOKS,
 *                  .create_filter = my_create_filter);
 * @endcode
 * See plugins/conn-logger (the sample) and doc/writing-a-filter.md.
 * @since 1.1
 */
#ifndef FWX_PLUGIN_HELPERS_H
#define FWX_PLUGIN_HELPERS_H

#include <fwx/plugin.h>
#include <fwx/sdk.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The object that embeds interface @p ptr as its member @p member (Wine's impl_from_*).
 * @since 1.1
 */
#define FWX_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/**
 * @brief An object's reference count. Use it only through the fwx_refcount_* functions.
 *
 * Rationale: the GCC/Clang `__atomic` built-ins (what C11's `atomic_uint` compiles to) work
 * the same in C and C++, where `<stdatomic.h>` does not.
 * @since 1.1
 */
typedef struct fwx_refcount {
    uint32_t value; /**< the count; read it with fwx_refcount_get() */
} fwx_refcount;

/** Starts a count at 1: an object is born holding its creator's reference. [any-thread] @since 1.1 */
static inline void fwx_refcount_init(fwx_refcount *r) { __atomic_store_n(&r->value, 1u, __ATOMIC_RELAXED); }

/** Adds a reference. @return the new count. [any-thread] @since 1.1 */
static inline uint32_t fwx_refcount_add(fwx_refcount *r) { return __atomic_add_fetch(&r->value, 1u, __ATOMIC_RELAXED); }

/**
 * Drops a reference. @return the new count; at 0 the caller frees the object (the release
 * ordering makes every other holder's writes visible to it). [any-thread] @since 1.1
 */
static inline uint32_t fwx_refcount_release(fwx_refcount *r)
{
    return __atomic_sub_fetch(&r->value, 1u, __ATOMIC_ACQ_REL);
}

/** The count now (for tests and asserts; it may change at once). [any-thread] @since 1.1 */
static inline uint32_t fwx_refcount_get(const fwx_refcount *r) { return __atomic_load_n(&r->value, __ATOMIC_RELAXED); }

/**
 * @brief Whether @p riid names IUnknown or one of the @p n interfaces in @p iids. [any-thread]
 * What a QueryInterface asks before it hands out the interface it was called on.
 * @param riid the id asked for (borrowed); NULL matches nothing.
 * @param iids the object's interface ids (borrowed). @param n their number.
 * @return nonzero on a match.
 * @since 1.1
 */
static inline int fwx_iid_in_table(const fwx_guid *riid, const fwx_guid *const *iids, size_t n)
{
    if (riid == NULL)
        return 0;
    if (fwx_guid_equal(riid, &IID_IUnknown))
        return 1;
    for (size_t i = 0; i < n; i++)
        if (fwx_guid_equal(riid, iids[i]))
            return 1;
    return 0;
}

/** @cond */
/* The QueryInterface of the macros below: for IUnknown and each IID in `...`, adds a reference
   (prefix_AddRef) and sets *ppv to the interface it was called on; otherwise sets *ppv to NULL
   (always written, as COM requires) and returns FWX_E_NOINTERFACE; FWX_E_POINTER for a NULL ppv. */
#define FWX__QUERY_INTERFACE(prefix, Iface, ...)                                                  \
    static fwx_result prefix##_QueryInterface(Iface *This, const fwx_guid *riid, void **ppv)      \
    {                                                                                             \
        static const fwx_guid *const fwx_iids_[] = {__VA_ARGS__};                                 \
        if (ppv == NULL)                                                                          \
            return FWX_E_POINTER;                                                                 \
        if (!fwx_iid_in_table(riid, fwx_iids_, sizeof fwx_iids_ / sizeof fwx_iids_[0])) {         \
            *ppv = NULL;                                                                          \
            return FWX_E_NOINTERFACE;                                                             \
        }                                                                                         \
        prefix##_AddRef(This);                                                                    \
        *ppv = This;                                                                              \
        return FWX_S_OK;                                                                          \
    }
/** @endcond */

/**
 * @brief Defines the IUnknown methods of an object that implements one interface.
 *
 * Expands to four `static` functions:
 * - `prefix_impl(Iface *)`: the object (::FWX_CONTAINER_OF);
 * - `prefix_QueryInterface`: for IUnknown and each IID in `...`, adds a reference and sets
 *   `*ppv` to the interface it was called on; otherwise sets `*ppv` to NULL and returns
 *   FWX_E_NOINTERFACE (FWX_E_POINTER for a NULL @p ppv);
 * - `prefix_AddRef`, `prefix_Release`: on the ::fwx_refcount @p refs; the Release that reaches
 *   0 calls `destroy(type *)`, which releases what the object holds and frees it.
 *
 * @param prefix names the functions. @param Iface the interface type (IFWXFilter, ...).
 * @param type the object type. @param member the object's member of type @p Iface.
 * @param refs its ::fwx_refcount member. @param destroy `void destroy(type *)`.
 * @param ... the object's interface ids, as `const fwx_guid *` (`&IID_IFWXFilter`); at least one.
 * @since 1.1
 */
#define FWX_IUNKNOWN_IMPL(prefix, Iface, type, member, refs, destroy, ...)                         \
    static type *prefix##_impl(Iface *This) { return FWX_CONTAINER_OF(This, type, member); }       \
    static uint32_t prefix##_AddRef(Iface *This) { return fwx_refcount_add(&prefix##_impl(This)->refs); } \
    static uint32_t prefix##_Release(Iface *This)                                                 \
    {                                                                                             \
        type *fwx_obj_ = prefix##_impl(This);                                                     \
        uint32_t fwx_n_ = fwx_refcount_release(&fwx_obj_->refs);                                  \
        if (fwx_n_ == 0)                                                                          \
            destroy(fwx_obj_);                                                                    \
        return fwx_n_;                                                                            \
    }                                                                                             \
    FWX__QUERY_INTERFACE(prefix, Iface, __VA_ARGS__)

/**
 * @brief Defines the IUnknown methods of an interface that is a part of another object and has
 * no reference count of its own: a data filter's IFWXIOCompletion objects (one per direction,
 * embedded in the filter) are the usual case.
 *
 * The part is the member @p member of a @p type whose member @p owner points to the object that
 * holds the count. Expands to three `static` functions:
 * - `prefix_AddRef`, `prefix_Release`: return `owner_AddRef(&part->owner->owner_iface)` and
 *   `owner_Release(...)` (the owner's IUnknown methods; its last Release frees it, parts and all);
 * - `prefix_QueryInterface`: as ::FWX_IUNKNOWN_IMPL's, for IUnknown and the IIDs in `...`.
 *
 * @param prefix names the functions. @param Iface the part's interface type.
 * @param type the part's type. @param member its member of type @p Iface.
 * @param owner its member pointing to the owning object. @param owner_iface the owner's member
 * that owner_AddRef and owner_Release take the address of.
 * @param owner_AddRef, owner_Release the owner's AddRef and Release.
 * @param ... the part's interface ids, as `const fwx_guid *`; at least one.
 * @since 1.1
 */
#define FWX_IUNKNOWN_IMPL_PART(prefix, Iface, type, member, owner, owner_iface, owner_AddRef, owner_Release, ...) \
    static uint32_t prefix##_AddRef(Iface *This)                                                  \
    {                                                                                             \
        return owner_AddRef(&FWX_CONTAINER_OF(This, type, member)->owner->owner_iface);           \
    }                                                                                             \
    static uint32_t prefix##_Release(Iface *This)                                                 \
    {                                                                                             \
        return owner_Release(&FWX_CONTAINER_OF(This, type, member)->owner->owner_iface);          \
    }                                                                                             \
    FWX__QUERY_INTERFACE(prefix, Iface, __VA_ARGS__)

/**
 * @brief Defines the plugin's fwx_plugin_entry::create_filter.
 *
 * Expands to `static fwx_result name(IFWXFilter **ppFilter)`, which allocates a zeroed @p type
 * (calloc), sets its interface's vtable to @p vtbl and its count to 1, and hands that
 * reference to the host: FWX_S_OK, FWX_E_POINTER, FWX_E_OUTOFMEMORY. [init-only]
 * @param name the function's name. @param type the filter object type.
 * @param member its IFWXFilter member. @param refs its ::fwx_refcount member.
 * @param vtbl the `const IFWXFilterVtbl` object (not a pointer).
 * @since 1.1
 */
#define FWX_PLUGIN_CREATE_FILTER(name, type, member, refs, vtbl)                                 \
    static fwx_result name(IFWXFilter **ppFilter)                                                 \
    {                                                                                             \
        if (ppFilter == NULL)                                                                     \
            return FWX_E_POINTER;                                                                 \
        *ppFilter = NULL;                                                                         \
        type *fwx_obj_ = (type *)calloc(1, sizeof(type));                                         \
        if (fwx_obj_ == NULL)                                                                     \
            return FWX_E_OUTOFMEMORY;                                                             \
        fwx_obj_->member.lpVtbl = &(vtbl);                                                        \
        fwx_refcount_init(&fwx_obj_->refs);                                                       \
        *ppFilter = &fwx_obj_->member;                                                            \
        return FWX_S_OK;                                                                          \
    }

/**
 * @brief Defines the whole IFWXFilter object of a plugin whose work is done per session, and
 * its fwx_plugin_entry::create_filter.
 *
 * Most filters are the same object: FilterInit keeps a reference on the firewall and hooks
 * @p hook_events; FilterShutdown lets the firewall go; AttachToSession makes one session filter
 * per session. This macro writes that object; the plugin writes only the session filter (most
 * simply with ::FWX_PLUGIN_SESSION_FILTER) and its constructor
 * `fwx_result new_session_filter(IFWXFirewall *fw, IFWXSession *session, IFWXSessionFilter **out)`,
 * called from AttachToSession with both borrowed (it takes its own references) and `*out` NULL.
 *
 * Expands to `static fwx_result create_name(IFWXFilter **)` (as ::FWX_PLUGIN_CREATE_FILTER)
 * and `static` helpers whose names start with @p create_name.
 * @param create_name the create_filter function's name.
 * @param hook_events the FwxFilterHookEvents::dwGlobalEvents FilterInit asks for.
 * @param new_session_filter the plugin's session filter constructor.
 * @since 1.1
 */
#define FWX_PLUGIN_SESSION_FILTERS(create_name, hook_events, new_session_filter)                   \
    typedef struct create_name##_filter_ {                                                        \
        IFWXFilter iface;                                                                         \
        fwx_refcount refs;                                                                        \
        IFWXFirewall *fw; /* +1 from FilterInit until FilterShutdown */                           \
    } create_name##_filter_;                                                                      \
    static void create_name##_destroy_(create_name##_filter_ *f)                                  \
    {                                                                                             \
        if (f->fw != NULL)                                                                        \
            IFWXFirewall_Release(f->fw);                                                          \
        free(f);                                                                                  \
    }                                                                                             \
    FWX_IUNKNOWN_IMPL(create_name##_f_, IFWXFilter, create_name##_filter_, iface, refs,           \
                      create_name##_destroy_, &IID_IFWXFilter)                                    \
    static fwx_result create_name##_init_(IFWXFilter *This, IFWXFirewall *fw, FwxFilterHookEvents *hooks) \
    {                                                                                             \
        create_name##_filter_ *f = create_name##_f__impl(This);                                   \
        if (fw == NULL || hooks == NULL)                                                          \
            return FWX_E_POINTER;                                                                 \
        IFWXFirewall_AddRef(fw);                                                                  \
        f->fw = fw;                                                                               \
        hooks->dwGlobalEvents = (hook_events);                                                    \
        return FWX_S_OK;                                                                          \
    }                                                                                             \
    static fwx_result create_name##_shutdown_(IFWXFilter *This)                                   \
    {                                                                                             \
        create_name##_filter_ *f = create_name##_f__impl(This);                                   \
        if (f->fw != NULL) {                                                                      \
            IFWXFirewall_Release(f->fw);                                                          \
            f->fw = NULL;                                                                         \
        }                                                                                         \
        return FWX_S_OK;                                                                          \
    }                                                                                             \
    static fwx_result create_name##_attach_(IFWXFilter *This, IFWXSession *session,               \
                                            IFWXSessionFilter **out, FwxFilterHookEvents *hooks)  \
    {                                                                                             \
        create_name##_filter_ *f = create_name##_f__impl(This);                                   \
        (void)hooks;                                                                              \
        if (out == NULL)                                                                          \
            return FWX_E_POINTER;                                                                 \
        *out = NULL;                                                                              \
        if (session == NULL || f->fw == NULL)                                                     \
            return FWX_E_POINTER;                                                                 \
        return new_session_filter(f->fw, session, out);                                           \
    }                                                                                             \
    static const IFWXFilterVtbl create_name##_vtbl_ = {                                           \
        create_name##_f__QueryInterface, create_name##_f__AddRef, create_name##_f__Release,       \
        create_name##_init_, create_name##_shutdown_, create_name##_attach_};                     \
    FWX_PLUGIN_CREATE_FILTER(create_name, create_name##_filter_, iface, refs, create_name##_vtbl_)

/**
 * @brief The members ::FWX_PLUGIN_SESSION_FILTER needs, to open a session filter type:
 * @code
 * typedef struct my_sf {
 *     FWX_PLUGIN_SESSION_FILTER_MEMBERS
 *     int my_state;                    // the plugin's own, after them
 * } my_sf;
 * @endcode
 * `iface`, `refs`, `session` and `fw` (a reference on each from the session filter's creation
 * until Detach or its last Release, whichever comes first: FilterShutdown may come before
 * Detach), `detached` (nonzero once Detach ran).
 * @since 1.1
 */
#define FWX_PLUGIN_SESSION_FILTER_MEMBERS                                                         \
    IFWXSessionFilter iface;                                                                      \
    fwx_refcount refs;                                                                            \
    IFWXSession *session;                                                                         \
    IFWXFirewall *fw;                                                                             \
    int detached;

/**
 * @brief Defines the IUnknown methods and the vtable of an IFWXIOCompletion embedded in a
 * data filter's object, sharing that object's reference count.
 *
 * A data filter that pumps a connection usually embeds one completion per direction (a struct
 * of @p type with the member `IFWXIOCompletion iface` and a pointer @p owner to the filter
 * object); an I/O pending on a completion must keep the whole filter alive, so AddRef and
 * Release go to the filter's own (`owner_prefix_AddRef` / `owner_prefix_Release`, as
 * ::FWX_IUNKNOWN_IMPL names them, on its member `iface`). Expands to ::FWX_IUNKNOWN_IMPL_PART
 * for IFWXIOCompletion (`prefix_AddRef`, `prefix_Release`, `prefix_QueryInterface`: IUnknown and
 * IID_IFWXIOCompletion) and `static const IFWXIOCompletionVtbl prefix_vtbl`. Declare @p complete
 * before it.
 * @param prefix names the functions. @param type the completion's struct.
 * @param owner its member pointing at the filter object. @param owner_prefix the filter
 * object's ::FWX_IUNKNOWN_IMPL prefix. @param complete its IFWXIOCompletion::CompleteAsyncIO.
 * @since 1.1
 */
#define FWX_PLUGIN_IO_COMPLETION(prefix, type, owner, owner_prefix, complete)                    \
    FWX_IUNKNOWN_IMPL_PART(prefix, IFWXIOCompletion, type, iface, owner, iface, owner_prefix##_AddRef,    \
                           owner_prefix##_Release, &IID_IFWXIOCompletion)                          \
    static const IFWXIOCompletionVtbl prefix##_vtbl = {prefix##_QueryInterface, prefix##_AddRef,  \
                                                       prefix##_Release, complete};

/**
 * @brief Defines a session filter for ::FWX_PLUGIN_SESSION_FILTERS: everything but its event
 * handler.
 *
 * The session filter type opens with ::FWX_PLUGIN_SESSION_FILTER_MEMBERS (or has members of
 * those names and types; `detached` may be a bool): after Detach the handler answers
 * FWX_E_TERMINATING.
 * Expands to the IUnknown methods of ::FWX_IUNKNOWN_IMPL (`prefix_impl`, `prefix_AddRef`, ...),
 * `prefix_Detach`, the vtable, and the constructor `static fwx_result prefix_new(IFWXFirewall *,
 * IFWXSession *, IFWXSessionFilter **)` that ::FWX_PLUGIN_SESSION_FILTERS calls: FWX_S_OK,
 * FWX_E_OUTOFMEMORY. Declare @p event_handler before it and define it after.
 * @param prefix names the functions. @param type the session filter type.
 * @param event_handler its IFWXSessionFilter::FirewallEventHandler.
 * @since 1.1
 */
#define FWX_PLUGIN_SESSION_FILTER(prefix, type, event_handler)                                    \
    static void prefix##_release_refs_(type *sf)                                                  \
    {                                                                                             \
        if (sf->session != NULL)                                                                  \
            IFWXSession_Release(sf->session);                                                     \
        if (sf->fw != NULL)                                                                       \
            IFWXFirewall_Release(sf->fw);                                                         \
        sf->session = NULL;                                                                       \
        sf->fw = NULL;                                                                            \
    }                                                                                             \
    static void prefix##_destroy_(type *sf)                                                       \
    {                                                                                             \
        prefix##_release_refs_(sf);                                                               \
        free(sf);                                                                                 \
    }                                                                                             \
    FWX_IUNKNOWN_IMPL(prefix, IFWXSessionFilter, type, iface, refs, prefix##_destroy_, &IID_IFWXSessionFilter) \
    static fwx_result prefix##_Detach(IFWXSessionFilter *This)                                    \
    {                                                                                             \
        type *sf = prefix##_impl(This);                                                           \
        sf->detached = 1;                                                                         \
        prefix##_release_refs_(sf);                                                               \
        return FWX_S_OK;                                                                          \
    }                                                                                             \
    static const IFWXSessionFilterVtbl prefix##_vtbl_ = {prefix##_QueryInterface, prefix##_AddRef, \
                                                         prefix##_Release, event_handler,         \
                                                         prefix##_Detach};                        \
    static fwx_result prefix##_new(IFWXFirewall *fw, IFWXSession *session, IFWXSessionFilter **out) \
    {                                                                                             \
        type *sf = (type *)calloc(1, sizeof(type));                                               \
        if (sf == NULL)                                                                           \
            return FWX_E_OUTOFMEMORY;                                                             \
        sf->iface.lpVtbl = &prefix##_vtbl_;                                                       \
        fwx_refcount_init(&sf->refs);                                                             \
        IFWXSession_AddRef(session);                                                              \
        sf->session = session;                                                                    \
        IFWXFirewall_AddRef(fw);                                                                  \
        sf->fw = fw;                                                                              \
        *out = &sf->iface;                                                                        \
        return FWX_S_OK;                                                                          \
    }

/** @cond */
#ifdef __cplusplus
#define FWX__ENTRY_LINKAGE extern "C"
#else
#define FWX__ENTRY_LINKAGE
#endif
/** @endcond */

/**
 * @brief Defines the one exported symbol, `fwx_entry`, with `abi_version` and `struct_size`
 * filled in for the headers it is built with.
 *
 * The arguments are the rest of the ::fwx_plugin_entry as designated initializers:
 * `.filter_guid`, `.name`, `.allowed_events` and `.create_filter` at least; `.vendor`,
 * `.version`, `.description`, `.init`, `.deinit` as needed. Follow it with a semicolon.
 * @since 1.1
 */
#define FWX_PLUGIN_ENTRY(...)                                                                     \
    FWX__ENTRY_LINKAGE FWX_PLUGIN_EXPORT const fwx_plugin_entry fwx_entry = {                     \
        .abi_version = FWX_ABI_VERSION, .struct_size = (uint32_t)sizeof(fwx_plugin_entry), __VA_ARGS__}

#ifdef __cplusplus
}
#endif

#endif /* FWX_PLUGIN_HELPERS_H */
