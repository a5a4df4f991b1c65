/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/backend.h
 * @brief The backend interface: what actually steers sockets (user mode, kernel mode).
 *
 * @page backends Backends
 * The core decides; a backend carries the decision out. A backend is a ::fwx_backend, a
 * versioned struct of function pointers registered by name (in the manner of SQLite's VFS).
 * A firewall uses at most one backend (fwx_firewall_set_backend()); without one, the core
 * still keeps and enforces every grant, and the host reports flows with fwx_firewall_admit().
 *
 * What the core asks of a backend:
 * - **grants**: install and remove the secondary-connection grants the filters ask for
 *   (::fwx_grant: an outbound permission, a port bound for a client, a redirect port, an
 *   approved client bind). For a user-mode backend a port grant is a listening socket; for a
 *   kernel backend, a set or map element. When a flow arrives for a grant the backend calls
 *   fwx_firewall_admit() and obeys the answer;
 * - **listen / unlisten**: listening sockets for server publishing rules;
 * - **relay**: start carrying a connection the core admitted, in user mode (through its data
 *   filters) or kernel mode, as the core decided;
 * - **kill**: end a connection it carries (IFWXConnection::Kill);
 * - **create_socket**: sockets for filters (IFWXFirewall::CreateNetworkSocket);
 * - **list**: what it holds, for tools such as fwxctl.
 *
 * Rules: `version` first; methods are only ever appended, each version's block marked; a
 * method may be NULL when optional, and the core then supplies FWX_E_NOT_SUPPORTED or does
 * without. The registry never writes into a registered struct.
 *
 * **Wrapping a backend.** A backend may forward to another one, as SQLite's test VFS wraps the
 * real VFS: its open() opens the wrapped backend (found with fwx_backend_find(), and handed its
 * own struct as `self`), every method forwards with the wrapped instance's state, and methods
 * the wrapped backend lacks stay NULL. It implements fwx_backend::wrapped (version 4) to say
 * whom it wraps, so that the wrapped backend's own API, which takes a firewall, still finds its
 * instance with fwx_firewall_backend_state_of(); fwx_firewall_backend_state() is the wrapper's.
 * examples/fault-backend is such a wrapper, built against the installed headers only: it fails
 * the Nth call of any method, and its test runs the proxy backend through it with a fault in
 * each method in turn.
 */
#ifndef FWX_BACKEND_H
#define FWX_BACKEND_H

#include <fwx/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The newest backend struct version this header describes. */
#define FWX_BACKEND_VERSION 4

/** Kinds of grant. */
typedef enum fwx_grant_kind {
    /** AllowFutureConnect: `client` may open a connection to `target` (from `gateway` if set). */
    FWX_GRANT_PERMISSION = 1,
    /** BindForClient: connections to `gateway` (a gateway port) go to `target` (the client). */
    FWX_GRANT_BINDING = 2,
    /** RedirectConnections: `client` connecting to `gateway` (a gateway port) goes to `target`. */
    FWX_GRANT_REDIRECT = 3,
    /** RetroactiveAllowBind: a client's own bind at `gateway` now accepts connections. */
    FWX_GRANT_CLIENT_BIND = 4,
    FWX__GRANT_FORCE_32 = 0x7FFFFFFF
} fwx_grant_kind;

/**
 * A grant, as the core hands it to a backend. Borrowed for the call; copy what you keep.
 * Handed out (@ref struct_sizes): read a field only when struct_size covers it; first size 424
 * bytes.
 */
typedef struct fwx_grant {
    uint32_t struct_size;            /**< the core's sizeof(fwx_grant) */
    fwx_grant_kind kind;             /**< what it is */
    uint64_t id;                     /**< unique within the firewall; used to remove it */
    int32_t protocol;                /**< FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP */
    uint32_t flags;                  /**< the FWX_FLAG_* given to the call */
    struct sockaddr_storage client;  /**< the session's client (port 0) */
    struct sockaddr_storage target;  /**< where connections go (see fwx_grant_kind) */
    struct sockaddr_storage gateway; /**< the gateway address and port involved, or unspecified */
    int32_t backlog;                 /**< listen backlog for port grants */
    int32_t kernel_mode;             /**< nonzero if the core allows the kernel to carry it */
    uint64_t expires_ms;             /**< loop time when it expires, 0 for never (the core enforces it) */
} fwx_grant;

/**
 * A listening socket for a server publishing rule. Handed out (@ref struct_sizes); first size
 * 300 bytes, through protocol_guid.
 */
typedef struct fwx_listen_spec {
    uint32_t struct_size;            /**< the core's sizeof(fwx_listen_spec) */
    uint64_t id;                     /**< unique within the firewall */
    int32_t protocol;                /**< FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP */
    struct sockaddr_storage address; /**< where to listen */
    struct sockaddr_storage server;  /**< the published server to connect to */
    int32_t full_proxy;              /**< nonzero: connect to the server from the gateway's address */
    fwx_guid protocol_guid;          /**< the protocol definition of the rule */
} fwx_listen_spec;

/**
 * Says that the kernel carries @p grant: the backend installed it as kernel state (a set
 * element, a NAT mapping) rather than holding it in a user-mode path. Call it from
 * fwx_backend::grant_add, with the grant pointer given to that call, after installing it;
 * fwx_firewall_list() then reports the grant with `kernel_mode` set (fwxctl's MODE column).
 * A grant_add that fails clears the mark. [loop-thread]
 * @return FWX_S_OK; FWX_E_INVALIDARG when @p grant is not the one being added;
 *   FWX_E_POINTER.
 */
FWX_API fwx_result fwx_backend_grant_in_kernel(fwx_firewall *fw, const fwx_grant *grant);

/** Receives one grant from fwx_backend::list. */
typedef void (*fwx_backend_list_cb)(void *arg, const fwx_grant *grant);

/** A backend. Register with fwx_backend_register(); the struct must outlive the registration. */
typedef struct fwx_backend {
    /** The struct version the backend implements (1 .. FWX_BACKEND_VERSION). */
    int32_t version;
    /** Unique name, such as "proxy" or "nft". */
    const char *name;
    /** The backend's own data; fwx never touches it. */
    void *app_data;

    /* ---- version 1 ---- */

    /**
     * Starts an instance for @p fw. Required.
     * @param state receives the instance's state, handed to every other method.
     * @return FWX_S_OK, or a failure that makes fwx_firewall_set_backend() fail.
     */
    fwx_result (*open)(const struct fwx_backend *self, fwx_firewall *fw, void **state);
    /** Stops the instance; every grant and listener is gone afterwards. Required. */
    void (*close)(void *state);
    /**
     * Installs a grant. Required.
     * @return FWX_S_OK; FWX_E_ADDRINUSE if a gateway port is taken (the core tries another);
     *   any other failure fails the SDK call with that code.
     */
    fwx_result (*grant_add)(void *state, const fwx_grant *grant);
    /** Removes a grant. Required. @return FWX_S_OK, FWX_E_NOT_FOUND; any other failure is
        logged, the core lets go of the grant and asks again before its next grant change. */
    fwx_result (*grant_remove)(void *state, uint64_t id);
    /** Opens a listener for a publishing rule. Optional. @return FWX_S_OK, FWX_E_ADDRINUSE, ... */
    fwx_result (*listen)(void *state, const fwx_listen_spec *spec);
    /** Closes a listener. Optional. @return FWX_S_OK, FWX_E_NOT_FOUND; any other failure is
        logged, and the core asks again at the next policy change. */
    fwx_result (*unlisten)(void *state, uint64_t id);
    /**
     * Starts carrying an admitted connection (borrowed; AddRef to keep it). @p kernel_mode
     * says whether the core allows the kernel to carry it (no data filter, no hooks).
     * Optional. @return FWX_S_OK, or a failure that kills the connection.
     */
    fwx_result (*relay)(void *state, IFWXConnection *conn, int32_t kernel_mode);
    /** Ends a connection it carries (borrowed); the core calls it as every connection ends.
        Optional. @return FWX_S_OK, FWX_E_NOT_FOUND (not one it carries); any other failure is
        logged, and the core lets go of the connection all the same. */
    fwx_result (*kill)(void *state, IFWXConnection *conn);
    /** A socket for a filter. Optional. @param out new reference (+1). */
    fwx_result (*create_socket)(void *state, int32_t protocol, IFWXNetworkSocket **out);
    /** Reports each grant it holds. Optional. @return FWX_S_OK. */
    fwx_result (*list)(void *state, fwx_backend_list_cb cb, void *arg);

    /* ---- version 2 ---- */

    /**
     * The firewall's policy was set or replaced (NULL: none), and once after open when a
     * policy is set: a backend that carries primary connections itself (in the kernel)
     * compiles it. @p policy is borrowed for the call only: the firewall frees a replaced
     * policy, so never keep the pointer. Optional. @return FWX_S_OK, or a failure that is
     * logged (the policy is in force in the core all the same).
     * @since backend version 2
     */
    fwx_result (*policy_changed)(void *state, const fwx_policy *policy);

    /* ---- version 3 ---- */

    /**
     * Removes several grants at once, as if by grant_remove for each, but in one step: the
     * core calls it when a session ends, so that none of the session's permissions outlives
     * the others by the time the end is reported (the nft backend deletes the elements in one
     * kernel transaction, where one per grant cost ~0.6 ms each). @p ids borrowed for the call.
     * Optional: without it the core calls grant_remove for each. @return FWX_S_OK, or a
     * failure that is logged (the grants are gone from the core all the same, and each is
     * asked again, by grant_remove, before the next grant change).
     * @since backend version 3
     */
    fwx_result (*grant_remove_many)(void *state, const uint64_t *ids, size_t n);

    /* ---- version 4 ---- */

    /**
     * For a backend that wraps another and forwards to it (a fault injector, a tracer: in the
     * manner of SQLite's test VFS over the real VFS): the backend it wraps, and the state of the
     * instance of it that this instance opened. fwx_firewall_backend_state_of() follows it, so
     * the wrapped backend's own API (the SOCKS calls of "proxy", which take a firewall) still
     * finds its instance behind the wrapper. Optional: NULL for a backend that wraps none.
     * [loop-thread]
     * @param state this instance's state.
     * @param inner_state receives the wrapped instance's state (NULL when there is none).
     * @return the wrapped backend (borrowed), or NULL.
     * @since backend version 4 (fwx 1.1)
     */
    const struct fwx_backend *(*wrapped)(void *state, void **inner_state);
} fwx_backend;

/**
 * Registers a backend by its name. [any-thread]
 * @return FWX_S_OK; FWX_E_ALREADY_EXISTS_WIN32 (a different backend has that name);
 *   FWX_S_FALSE (this one is registered already); FWX_E_INVALIDARG (version < 1, no name, a
 *   required method missing); FWX_E_NOT_SUPPORTED (version newer than this fwx).
 */
FWX_API fwx_result fwx_backend_register(const fwx_backend *backend);

/** Unregisters a backend; firewalls using it keep it until they close. [any-thread] @return FWX_S_OK, FWX_E_NOT_FOUND. */
FWX_API fwx_result fwx_backend_unregister(const fwx_backend *backend);

/**
 * Finds a backend by name, or NULL. [any-thread]
 *
 * Built into libfwx: "proxy", which steers by explicit listeners in user mode (publishing
 * rules become listening sockets, bound and redirect ports become real sockets on the
 * gateway) and needs no privileges. A registered backend cannot take a built-in's name.
 * What only "proxy" offers (its SOCKS5 forward mode) is declared in fwx/proxy.h.
 */
FWX_API const fwx_backend *fwx_backend_find(const char *name);

/**
 * Makes the firewall use the backend @p name: opens an instance and installs every grant the
 * firewall already holds. Replacing a backend closes the old instance first.
 * @return FWX_S_OK, FWX_E_NOT_FOUND, the backend's open or grant_add failure.
 */
FWX_API fwx_result fwx_firewall_set_backend(fwx_firewall *fw, const char *name);

/**
 * The firewall's backend state, or NULL. Behind a wrapping backend this is the wrapper's
 * state: a backend's own helpers find theirs with fwx_firewall_backend_state_of().
 */
FWX_API void *fwx_firewall_backend_state(fwx_firewall *fw);

/* ---- wrapping backends (fwx 1.1) --------------------------------------------------------- */

/**
 * The state of @p backend's instance in @p fw: the firewall's backend state when @p backend is
 * the firewall's backend, else the state a wrapping backend reports for it through
 * fwx_backend::wrapped (followed through at most 8 wrappers). A backend's own API, functions
 * that take a firewall, finds its instance with it and so works alone and behind a wrapper
 * alike. [loop-thread]
 * @param fw the firewall (NULL: NULL).
 * @param backend the backend whose instance is wanted (borrowed), as registered or built in.
 * @return the state, or NULL when @p backend is neither the firewall's backend nor wrapped by
 *   it (the caller answers FWX_E_NOT_SUPPORTED).
 * @since 1.1
 */
FWX_API void *fwx_firewall_backend_state_of(fwx_firewall *fw, const fwx_backend *backend);

#ifdef __cplusplus
}
#endif

#endif /* FWX_BACKEND_H */
