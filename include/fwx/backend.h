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
 * What a backend needs to know, it gets through public calls: a grant carries the hosts the
 * core allows to use it (fwx_grant::sources); the gateway's own addresses, the firewall's
 * options and whether filters hook an event come from the calls under "What the core knows,
 * for backends" below; a connection's facts from fwx_connection_info(); the policy from the
 * read-only view in fwx/policy_view.h. A backend that carries connections in user mode may use
 * fwx's own data path (fwx/pump.h: the pump for a TCP connection, the datagram path for a UDP
 * flow, fwx_network_socket_new() for create_socket). The built-in "proxy" and "nft" backends
 * use nothing else of the core or of each other (tests/boundary.sh checks it).
 *
 * **Threads and states.** The core calls every method on the thread that runs the firewall's
 * loop ([loop-thread], see @ref threading), never two at once for one firewall, and never from
 * inside another method of the same instance. An instance is in one of two states:
 * - **[state: closed]**: before `open` returned FWX_S_OK, and after `close`: the core calls
 *   nothing but `open` (for a new instance).
 * - **[state: open]**: from a successful `open` to `close`: every other method.
 * Calls a backend makes back into fwx (fwx_firewall_admit(), fwx_session_open(), ...) are
 * [loop-thread] too: a backend that has threads of its own hands its events to the loop first.
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

/** Flags of a ::fwx_grant_source. */
enum {
    /** Connections from this source to the grant's target are translated so that the target
        sees them come from the gateway (a published server behind a full-proxy rule, whose
        addresses must not reach the other side): a kernel backend masquerades them. */
    FWX_GRANT_SOURCE_TRANSLATE = 0x1
};

/**
 * One host the core allows to use a grant: a flow from @p address (any port) to the grant's
 * gateway port (bound and redirect ports) or target (permissions) is one the core admits when
 * fwx_firewall_admit() asks. @since 1.1
 */
typedef struct fwx_grant_source {
    struct sockaddr_storage address; /**< an IP address, port 0 */
    uint32_t flags;                  /**< FWX_GRANT_SOURCE_* */
} fwx_grant_source;

/** Flags of fwx_grant::source_flags. */
enum {
    /** The core decides each arrival by more than the source's address (an IP filter given to
        BindForClient or RetroactiveAllowBind, a client bind's policy check): `sources` then
        lists at most the hosts that could pass, and a backend that installs kernel state from
        them alone would admit too much. Such a grant belongs on a path that asks
        fwx_firewall_admit() for each flow before any packet goes through. */
    FWX_GRANT_SOURCES_FILTERED = 0x1
};

/**
 * A grant, as the core hands it to a backend. Borrowed for the call; copy what you keep.
 * Handed out (@ref struct_sizes): read a field only when struct_size covers it; first size 424
 * bytes.
 */
typedef struct fwx_grant {
    uint32_t struct_size;            /**< the size of the struct the core filled (see above) */
    fwx_grant_kind kind;             /**< what it is */
    uint64_t id;                     /**< unique within the firewall; used to remove it */
    int32_t protocol;                /**< FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP */
    uint32_t flags;                  /**< the FWX_FLAG_* given to the call */
    struct sockaddr_storage client;  /**< the session's client (port 0) */
    struct sockaddr_storage target;  /**< where connections go (see fwx_grant_kind) */
    /** The gateway address and port involved, or unspecified. For a permission with
        FWX_FLAG_REPLY_FROM_PEER: the backend's socket that relays the primary connection to
        its other party, where that party's answer arrives (unspecified when none). */
    struct sockaddr_storage gateway;
    int32_t backlog;                 /**< listen backlog for port grants */
    int32_t kernel_mode;             /**< nonzero if the core allows the kernel to carry it */
    uint64_t expires_ms;             /**< loop time when it expires, 0 for never (the core enforces it) */

    /* ---- appended in 1.1 ---- */

    /**
     * Who may use the grant, as the core decides it: the session's client and the published
     * servers of its connections for a permission or a redirect port; the external peers of
     * the session's primary connections for a bound port; none for a client bind (see
     * `source_flags`). The core computes the list with the same rule it applies in
     * fwx_firewall_admit(), as of the grant_add call: a backend must not re-derive it. A
     * connection the session opens later does not add a source to a grant already installed.
     * Borrowed for the grant_add call only (NULL with `n_sources` 0 elsewhere, as in
     * fwx_backend::list). @since 1.1
     */
    const fwx_grant_source *sources;
    uint32_t n_sources;              /**< the number of entries in `sources`. @since 1.1 */
    uint32_t source_flags;           /**< FWX_GRANT_SOURCES_*. @since 1.1 */
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
 * A grant_add that fails clears the mark. [loop-thread, inside grant_add]
 *
 * The core finds its grant by `grant->id` (O(1), whatever the number of grants) and takes the
 * mark only if @p grant is the very pointer that grant_add was handed: a copy, another grant the
 * backend holds, a withdrawn grant or one of another firewall is refused, so a backend can mark
 * nothing but what it is installing now.
 * @return FWX_S_OK; FWX_E_INVALIDARG when @p grant is not the grant of @p fw being added;
 *   FWX_E_POINTER.
 */
FWX_API fwx_result fwx_backend_grant_in_kernel(fwx_firewall *fw, const fwx_grant *grant);

/** Receives one grant from fwx_backend::list. [loop-thread] */
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
     * Starts an instance for @p fw. Required. [loop-thread] [state: closed]
     * The core installs the grants it holds right after (grant_add), then calls policy_changed
     * and listen for the policy in force.
     * @param self the registered struct (borrowed). @param fw the firewall (borrowed; outlives
     *   the instance).
     * @param state receives the instance's state, handed to every other method.
     * @return FWX_S_OK, or a failure that makes fwx_firewall_set_backend() fail (say why with
     *   fwx_backend_fail()).
     */
    fwx_result (*open)(const struct fwx_backend *self, fwx_firewall *fw, void **state);
    /** Stops the instance; every grant and listener is gone afterwards, and the core calls
        nothing more on @p state. Required. [loop-thread] [state: open] */
    void (*close)(void *state);
    /**
     * Installs a grant. Required. [loop-thread] [state: open]
     * May be called again for a grant id it holds after grant_remove only (BindForClient's
     * SetClientAddress removes and re-adds). Who may use the grant is in
     * fwx_grant::sources; call fwx_backend_grant_in_kernel() from here if the kernel carries it.
     * @param grant borrowed for the call (its `sources` too): copy what you keep.
     * @return FWX_S_OK; FWX_E_ADDRINUSE if a gateway port is taken (the core tries another);
     *   any other failure fails the SDK call with that code.
     */
    fwx_result (*grant_add)(void *state, const fwx_grant *grant);
    /** Removes a grant. Required. [loop-thread] [state: open] @return FWX_S_OK, FWX_E_NOT_FOUND;
        any other failure is logged, the core lets go of the grant and asks again before its
        next grant change. */
    fwx_result (*grant_remove)(void *state, uint64_t id);
    /** Opens a listener for a publishing rule (@p spec borrowed). Optional. [loop-thread]
        [state: open] @return FWX_S_OK, FWX_E_ADDRINUSE, ... */
    fwx_result (*listen)(void *state, const fwx_listen_spec *spec);
    /** Closes a listener. Optional. [loop-thread] [state: open] @return FWX_S_OK,
        FWX_E_NOT_FOUND; any other failure is logged, and the core asks again at the next
        policy change. */
    fwx_result (*unlisten)(void *state, uint64_t id);
    /**
     * Starts carrying an admitted connection (borrowed; AddRef to keep it). @p kernel_mode
     * says whether the core allows the kernel to carry it (no data filter, no hooks).
     * Optional. [loop-thread] [state: open] @return FWX_S_OK, or a failure that kills the
     * connection.
     */
    fwx_result (*relay)(void *state, IFWXConnection *conn, int32_t kernel_mode);
    /** Ends a connection it carries (borrowed); the core calls it as every connection ends.
        Optional. [loop-thread] [state: open] @return FWX_S_OK, FWX_E_NOT_FOUND (not one it
        carries); any other failure is logged, and the core lets go of the connection all the
        same. */
    fwx_result (*kill)(void *state, IFWXConnection *conn);
    /** A socket for a filter (IFWXFirewall::CreateNetworkSocket); fwx_network_socket_new()
        makes fwx's own. Optional. [loop-thread] [state: open] @param out new reference (+1).
        @return FWX_S_OK, or the failure the filter gets. */
    fwx_result (*create_socket)(void *state, int32_t protocol, IFWXNetworkSocket **out);
    /** Reports each grant it holds, synchronously (its `sources` are NULL). Optional.
        [loop-thread] [state: open] @return FWX_S_OK. */
    fwx_result (*list)(void *state, fwx_backend_list_cb cb, void *arg);

    /* ---- version 2 ---- */

    /**
     * The firewall's policy was set or replaced (NULL: none), and once after open when a
     * policy is set: a backend that carries primary connections itself (in the kernel)
     * compiles it. @p policy is borrowed for the call only: the firewall frees a replaced
     * policy, so never keep the pointer. Optional. @return FWX_S_OK, or a failure that is
     * logged (the policy is in force in the core all the same). The policy is also readable
     * later through fwx_firewall_policy() (fwx/policy_view.h). [loop-thread] [state: open]
     * @since backend version 2
     */
    fwx_result (*policy_changed)(void *state, const fwx_policy *policy);

    /* ---- version 3 ---- */

    /**
     * Removes several grants at once, as if by grant_remove for each, but in one step: the
     * core calls it when a session ends, so that none of the session's permissions outlives
     * the others by the time the end is reported (the nft backend deletes the elements in one
     * kernel transaction, where one per grant cost ~0.6 ms each). @p ids borrowed for the call.
     * Optional: without it the core calls grant_remove for each. [loop-thread] [state: open]
     * @return FWX_S_OK, or a failure that is logged (the grants are gone from the core all the
     * same, and each is asked again, by grant_remove, before the next grant change).
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
 * gateway) and needs no privileges; and "nft", the kernel-mode backend, when libfwx was built
 * with libnftables (meson feature `nft`, on when found). A registered backend cannot take a
 * built-in's name, "nft" included where it is not built.
 * What only "proxy" offers (its SOCKS5 forward mode) is declared in fwx/proxy.h.
 */
FWX_API const fwx_backend *fwx_backend_find(const char *name);

/**
 * Makes the firewall use the backend @p name: opens an instance and installs every grant the
 * firewall already holds. Replacing a backend closes the old instance first. "nft" is not
 * found in a libfwx built without libnftables (meson feature `nft`); fwx_firewall_last_error()
 * then says so. [loop-thread]
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

/** The backend the firewall uses, or NULL (none): with fwx_firewall_backend_state(), how a
    backend's own API finds its instance. [loop-thread] @since 1.1 */
FWX_API const fwx_backend *fwx_firewall_backend(const fwx_firewall *fw);

/**
 * @name What the core knows, for backends
 * Read-only calls that hand a backend (or a host) the facts the core decides with, so that a
 * backend needs nothing but the public headers: the gateway's addresses, the firewall's
 * options, whether filters hook an event, what a connection is. The compiled policy has its
 * own read-only view, fwx/policy_view.h. All [loop-thread].
 * @{
 */

/**
 * The firewall's name (fwx_firewall_options::name, or the default). [loop-thread]
 * @return a string owned by @p fw, valid until it closes; "" for NULL. @since 1.1
 */
FWX_API const char *fwx_firewall_name(const fwx_firewall *fw);

/**
 * Copies the firewall's options (as fwx_firewall_new() completed them with defaults) into
 * @p out, up to `out->struct_size` bytes: set it first (fwx_firewall_options_init() does), and
 * fields beyond it are left alone. Pointers in them are borrowed from @p fw. [loop-thread]
 * @return FWX_S_OK; FWX_E_POINTER; FWX_E_INVALIDARG (`struct_size` smaller than the first
 *   release's struct). @since 1.1
 */
FWX_API fwx_result fwx_firewall_get_options(const fwx_firewall *fw, fwx_firewall_options *out);

/**
 * The gateway's own addresses, one at a time: the `local_addresses` option, canonical (IPv4
 * as AF_INET, ports 0), in the order given. These are the addresses the core refuses as
 * secondary targets and a kernel backend keys a port grant on when its gateway address is
 * unspecified. [loop-thread]
 * @param fw the firewall. @param index 0, 1, ... @param out receives the address.
 * @return FWX_S_OK; FWX_S_FALSE past the last one (@p out zeroed); FWX_E_POINTER. @since 1.1
 */
FWX_API fwx_result fwx_firewall_local_address(const fwx_firewall *fw, size_t index, struct sockaddr_storage *out);

/**
 * Is @p addr the gateway itself: one of its own addresses, loopback (unless loopback_hosts
 * makes 127.0.0.0/8 ordinary hosts), or an interface address when
 * fwx_firewall_track_local_addresses() is on? The rule the core refuses secondary targets by.
 * [loop-thread] @return nonzero when it is; 0 when not or the address is invalid. @since 1.1
 */
FWX_API int32_t fwx_firewall_is_local_address(const fwx_firewall *fw, const struct sockaddr *addr, uint32_t len);

/**
 * Says why no connection may be steered to @p addr, or NULL when one may: the unspecified
 * address, 0.0.0.0/8, a multicast or the broadcast address, or the gateway itself
 * (fwx_firewall_is_local_address()). The rule the core refuses a secondary connection's target
 * by; a backend that picks a destination for a client itself (a SOCKS CONNECT or UDP
 * destination) asks it too, so that the rule has one copy. Ports are the caller's business.
 * [loop-thread]
 * @param fw the firewall. @param addr, len the destination (IPv4, IPv6 or v4-mapped IPv6).
 * @return NULL when allowed; else a static, lower-case phrase for a log line ("a loopback
 *   address", "an address of the gateway", ...), also for a NULL @p fw or an address that is
 *   not IPv4 or IPv6 ("not an IPv4 or IPv6 address"): refused, never allowed by mistake.
 * @since 1.1
 */
FWX_API const char *fwx_firewall_forbidden_host(const fwx_firewall *fw, const struct sockaddr *addr, uint32_t len);

/**
 * Does a loaded plugin hook every event in @p events (an OR of FwxEventType values and
 * flags such as fwxAnyProtocol)? A kernel backend asks before letting the kernel carry flows a
 * filter could attach a data filter to. [loop-thread]
 * @return nonzero when one plugin (not unloaded) hooks them all; 0 otherwise. @since 1.1
 */
FWX_API int32_t fwx_firewall_hooks(fwx_firewall *fw, uint32_t events);

/**
 * Sets the firewall's last error (fwx_firewall_last_error()) and logs it at error level: for
 * a backend's open, so that fwx_firewall_set_backend() can say why it failed. [loop-thread]
 * @since 1.1
 */
FWX_API void fwx_backend_fail(fwx_firewall *fw, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/**
 * Describes one connection as fwx_firewall_list() does (FWX_OBJECT_CONNECTION: id, session,
 * protocol, FWX_CONNECTION_* flags, client, external peer and local address, bytes).
 * [loop-thread]
 * @param conn a connection of the core (borrowed). @param out receives it, an output struct
 *   (@ref struct_sizes; for this call the first size is the whole 1.1 struct): set
 *   `out->struct_size` to `sizeof *out` first; `out->name` is borrowed from the core until the
 *   connection is freed.
 * @return FWX_S_OK; FWX_E_POINTER; FWX_E_INVALIDARG (not a connection of the core, or a
 *   `struct_size` smaller than this release's struct). @since 1.1
 */
FWX_API fwx_result fwx_connection_info(IFWXConnection *conn, fwx_object_info *out);

/**
 * The name of the plugin that attached a connection's data filter @p index (from 0, below
 * fwx_connection_data_filters(), in chain order), for log lines. [loop-thread]
 * @param conn a connection of the core (borrowed). @param index the filter's place.
 * @return the plugin's name (owned by the core, valid while the plugin is loaded); "" for a
 *   filter the host attached; NULL for a bad index or a connection that is not the core's.
 * @since 1.1
 */
FWX_API const char *fwx_connection_data_filter_owner(IFWXConnection *conn, uint32_t index);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* FWX_BACKEND_H */
