/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/host.h
 * @brief The embedding API: how a proxy product hosts fwx on its own libuv loop.
 *
 * @page embedding Embedding fwx
 * A host program (a proxy, a gateway) creates one ::fwx_firewall on its `uv_loop_t`, gives it
 * a policy and plugins, and reports the connections it accepts:
 *
 * 1. fwx_firewall_new() on the loop, fwx_firewall_set_policy() with a policy from
 *    fwx_policy_load_file(), fwx_firewall_load_plugin() for each filter, and optionally
 *    fwx_firewall_set_backend() to let a registered backend steer sockets.
 * 2. For each client: fwx_session_open(). For each connection the host accepted or is about to
 *    make: fwx_connection_open(), which applies the policy, raises the event to the filters
 *    and returns the verdict and an IFWXConnection. fwx_connection_close() when it ends.
 * 3. When a connection arrives that a filter asked for (a bound port, a permitted target):
 *    fwx_firewall_admit(), or fwx_firewall_admit_in_session() when the host carries it for
 *    a session (an explicit client's request on its control channel).
 * 4. fwx_session_close() when the client is gone, fwx_firewall_close() at the end; the loop
 *    then closes clean.
 *
 * Every function here is [loop-thread] unless it says otherwise.
 *
 * **SIGPIPE.** The user-mode data path relays with splice(2), which cannot ask the kernel not
 * to raise SIGPIPE when a peer has gone. When it starts, and SIGPIPE is still at its default
 * disposition, libfwx sets it to ignored (as libuv programs usually do themselves); a handler
 * the host installed is left alone.
 */
#ifndef FWX_HOST_H
#define FWX_HOST_H

#include <fwx/plugin.h>

/* The loop type only: including <uv.h> would force feature macros on strict C11 users. */
struct uv_loop_s;
/** libuv's loop type (declared here so that this header does not need <uv.h>). */
typedef struct uv_loop_s uv_loop_t;

#ifdef __cplusplus
extern "C" {
#endif

/** A firewall instance: owns sessions, plugins, policy and a backend. */
typedef struct fwx_firewall fwx_firewall;
/** A loaded plugin. Owned by its firewall. */
typedef struct fwx_plugin fwx_plugin;
/** A loaded policy. */
typedef struct fwx_policy fwx_policy;

/* fwx_log_level is in fwx/log.h (plugins log too). */

/**
 * Receives one log line (no trailing newline), such as
 * `fwx: plugin "ftp.so": abi 2.3 is newer than host 1.0, not loading`. On the loop thread,
 * except the plugin watchdog's soft-limit line (see plugin_soft_limit_ms and fwx/log.h).
 * @param arg fwx_firewall_options::log_arg.
 * @param level the line's level; lines above fwx_firewall_options::log_level never arrive.
 * @param message borrowed, valid for the call only.
 */
typedef void (*fwx_log_fn)(void *arg, fwx_log_level level, const char *message);

/**
 * Options for fwx_firewall_new(). Start from fwx_firewall_options_init(). An input struct
 * (@ref struct_sizes); first size 84 bytes, through log_level.
 */
typedef struct fwx_firewall_options {
    /** The caller's sizeof(fwx_firewall_options); set by fwx_firewall_options_init(). */
    uint32_t struct_size;
    /** Instance name for logs and backends (such as the nftables table). Default "fwx". */
    const char *name;
    /**
     * The gateway's own addresses (ports ignored). Secondary connections are never allowed to
     * them, and BindForClient binds only to them (or the unspecified address). Copied.
     * Loopback addresses are always treated as the gateway's own (but see loopback_hosts), and
     * so is every address a publishing rule listens on. fwx_firewall_track_local_addresses()
     * adds every interface address, followed as they change; these then only add more.
     */
    const struct sockaddr_storage *local_addresses;
    /** Number of entries in local_addresses. */
    size_t n_local_addresses;
    /** FWX_FLAG_TIMEOUT's period in milliseconds. Default 60000. */
    uint32_t timeout_ms;
    /** The range BindForClient and RedirectConnections take ports from. Default 49152-65535. */
    uint16_t port_min;
    /** Upper end of the port range (inclusive). */
    uint16_t port_max;
    /** Outstanding permissions (AllowFutureConnect, redirect ports) per session. Default 64. */
    uint32_t max_permissions_per_session;
    /** Outstanding permissions in all. Default 65536. */
    uint32_t max_permissions;
    /** Bound ports (BindForClient) per session. Default 64. */
    uint32_t max_ports_per_session;
    /** Bound ports in all. Default 16384. */
    uint32_t max_ports;
    /** Open sessions in all. Default 100000. */
    uint32_t max_sessions;
    /** Where log lines go; NULL for stderr. fwx_firewall_set_log_sink() (fwx/log.h) replaces it
        with a sink that receives each line's fields too. */
    fwx_log_fn log;
    /** Passed to log. */
    void *log_arg;
    /** Lines above this level are dropped. Default FWX_LOG_INFO. */
    fwx_log_level log_level;
    /**
     * Nonzero: addresses in 127.0.0.0/8 other than the gateway's own (local_addresses) count as
     * ordinary hosts, so clients, servers and gateway can be distinct hosts on one machine
     * (127.0.0.2, 127.0.0.3, 127.0.0.1). For single-host deployments and tests. Default 0:
     * every loopback address is the gateway's own and never a secondary target.
     * @since 1.0 (appended; older callers' struct_size leaves it 0)
     */
    int32_t loopback_hosts;
    /**
     * Kernel mode ("nft" backend): nonzero makes a kernel-carried TCP flow's connection end
     * (ConnectionTerminating, its bytes, gone from fwxctl) as soon as the flow closes, from
     * conntrack's update events. Default 0: it ends when conntrack removes the entry, after
     * TIME_WAIT (120 s by default), or when its session ends. Rationale: the update events and
     * the read of the counters cost about 30 us of fwx CPU per flow (bench/kernel.sh), which
     * lowers the connection rate of a busy gateway.
     * @since 1.1 (appended; older callers' struct_size leaves it 0)
     */
    int32_t kernel_end_on_close;
    /**
     * Kernel mode ("nft" backend): what a stopped gateway leaves in force. Default 0, closed:
     * when the backend closes (the host stops, or switches backends) or fails to start, its
     * nftables table is replaced in one batch by one that drops every forwarded packet and
     * leaves the host's own input and output alone, until fwx starts again and replaces it in
     * one batch (an operator opens it by hand with `nft delete table inet fwx_<name>`).
     * Nonzero, open: the table is deleted, and with IP forwarding on the host routes everything
     * through unfiltered and without NAT. Either way one log line says which. Rationale: a
     * crash leaves the table and so forwards only what it allowed; a clean stop must not do
     * less.
     * @since 1.1 (appended; older callers' struct_size leaves it 0: closed)
     */
    int32_t kernel_open_on_stop;
    /**
     * Plugin watchdog, soft limit in milliseconds (0: off). A call into a plugin (any
     * IFWXFilter / IFWXSessionFilter method the core makes) that runs longer is logged at
     * error, naming the plugin and the event, from the watchdog's own thread while the call
     * still runs; the plugin is then quarantined: it is attached to no new session (a new
     * connection of a protocol the policy binds to it is refused, so its protocol is never
     * relayed unfiltered; a plugin that hooks every protocol is just skipped); sessions it is
     * attached to already keep it. The quarantine is the process's: every firewall of the
     * process that loaded the same module and filter (a host running one firewall per event
     * loop) stops attaching it too, since they run the same code. See doc/security.md,
     * "Plugin containment".
     * @since 1.1 (appended; older callers' struct_size leaves it 0: off)
     */
    uint32_t plugin_soft_limit_ms;
    /**
     * Plugin watchdog, hard limit in milliseconds (0: off). A call into a plugin that runs
     * longer ends the process: one line naming the plugin and the event is written to stderr
     * with write(2), then _exit(70), so that the service manager restarts it (a blocked loop
     * cannot withdraw anything: what the process held goes with it, see doc/security.md).
     * While either limit is set, a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE) whose
     * disposition is still the default gets a handler that writes the plugin running at the
     * time (or "no plugin") to stderr, then re-raises the signal.
     * @since 1.1 (appended; older callers' struct_size leaves it 0: off)
     */
    uint32_t plugin_hard_limit_ms;
    /**
     * Repeated log lines: how many lines of one kind may go out per second before the rest of
     * that second is folded into one line "fwx: ... repeated K times (folded, ...): <the first
     * line folded>", written once the second is over and another line comes, or at close. A
     * kind is a core warning's or error's format (so a flood of one condition folds whatever
     * addresses it names), or else a line's exact text (so connection records never fold).
     * 0: the default, 10. UINT32_MAX: never fold.
     * @since 1.1 (appended; older callers' struct_size leaves it 0: the default)
     */
    uint32_t log_repeat_limit;
    /**
     * How many firewalls of this process share the listeners of one policy: a host that runs
     * one firewall per event loop (fwx-gateway --threads) gives each the same policy and sets
     * this to the number of loops. Above 1, the backend's publishing and SOCKS listeners are
     * opened with SO_REUSEPORT, so that every firewall binds the same address, and the kernel
     * sends each client address to one of them (a reuseport BPF program: socket number
     * hash(source address) % listen_shared, sockets numbered in the order they joined). A host
     * that starts its firewalls, and sets their policies, one after the other in the same order
     * thereby gets every connection of one client on the same firewall, as with one: its
     * session, the caps per client, a SOCKS client's data connection that uses its control
     * connection's permission. Ports a filter asks for (BindForClient, RedirectConnections) are
     * never shared: only the firewall that made the grant listens, so the kernel hands the data
     * connection to the loop that owns the session. Any other process of the same user could
     * join the group too (SO_REUSEPORT's rule): run the gateway as its own user.
     * 0 or 1: no sharing.
     * @since 1.1 (appended; older callers' struct_size leaves it 0: no sharing)
     */
    uint32_t listen_shared;
} fwx_firewall_options;

/**
 * Fills the first @p struct_size bytes of @p opts with the defaults and sets its struct_size
 * to @p struct_size; nothing past it is written. Call it through fwx_firewall_options_init(),
 * which passes the caller's sizeof. [any-thread]
 * @param opts the options to fill (borrowed).
 * @param struct_size from the first size (84) to sizeof(fwx_firewall_options).
 * @return FWX_S_OK; FWX_E_POINTER; FWX_E_INVALIDARG (another size; nothing written).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_options_init_sized(fwx_firewall_options *opts, uint32_t struct_size);

/** @cond */
/* The symbol of the 1.0 headers, kept for programs built against them: it fills the 1.0
   struct (through loopback_hosts). The macro below is what newer programs call. */
FWX_API void(fwx_firewall_options_init)(fwx_firewall_options *opts);
/** @endcond */

/**
 * Fills @p opts (a ::fwx_firewall_options *) with the defaults, as far as the caller's version
 * of the struct goes, and sets its struct_size. [any-thread]
 */
#define fwx_firewall_options_init(opts) ((void)fwx_firewall_options_init_sized((opts), (uint32_t)sizeof *(opts)))

/**
 * Creates a firewall on @p loop.
 * @param loop the loop it runs on (borrowed; must outlive the firewall).
 * @param opts borrowed, may be NULL for the defaults; copied. Its struct_size follows
 *   @ref struct_sizes (an input struct).
 * @param out receives the firewall; free it with fwx_firewall_close().
 * @return FWX_S_OK, FWX_E_INVALIDARG (bad options, a struct_size out of range), FWX_E_OUTOFMEMORY.
 */
FWX_API fwx_result fwx_firewall_new(uv_loop_t *loop, const fwx_firewall_options *opts, fwx_firewall **out);

/**
 * Makes every address of the host's interfaces count as the gateway's own, as
 * fwx_firewall_options::local_addresses do, and keeps following them: an address added or
 * removed later (`ip addr add`) counts from the next check on (an rtnetlink socket announces
 * the change; without one the addresses are read again at every check, and one line says so).
 * Loopback interfaces are left to the loopback rule (see loopback_hosts). Reads the network
 * namespace of the calling thread. A gateway should call it once after fwx_firewall_new():
 * without it a secondary connection or a SOCKS CONNECT may reach a service on an interface
 * local_addresses does not name. Calling it again is harmless.
 * [loop-thread]
 * @return FWX_S_OK, FWX_E_POINTER, FWX_E_OUTOFMEMORY, FWX_E_FAIL (getifaddrs failed; logged).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_track_local_addresses(fwx_firewall *fw);

/** Called when a firewall has finished closing. */
typedef void (*fwx_firewall_close_cb)(fwx_firewall *fw, void *arg);

/**
 * Shuts the firewall down: every session ends (permissions withdrawn, bound ports released,
 * filters detached), every plugin is shut down and unloaded, the backend closed. Once its libuv
 * handles have closed, @p cb runs (may be NULL) and then the memory is freed: @p fw must not
 * be used after @p cb returns.
 * Calling it twice is harmless.
 */
FWX_API void fwx_firewall_close(fwx_firewall *fw, fwx_firewall_close_cb cb, void *arg);

/** The IFWXFirewall a host can hand to its own code (borrowed; AddRef to keep it). */
FWX_API IFWXFirewall *fwx_firewall_iface(fwx_firewall *fw);

/** The loop the firewall runs on. */
FWX_API uv_loop_t *fwx_firewall_loop(fwx_firewall *fw);

/**
 * Writes one line to the firewall's log (fwx_firewall_options::log), prefixed "fwx: ", for
 * backends and hosts that want their lines beside the core's.
 * @param fw the firewall. @param level the line's level. @param fmt printf format.
 */
FWX_API void fwx_firewall_log(fwx_firewall *fw, fwx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** The text of the last failure of a load or configuration call on @p fw ("" if none). */
FWX_API const char *fwx_firewall_last_error(const fwx_firewall *fw);

/** Counters of what the firewall holds now. An output struct (@ref struct_sizes); first size 28 bytes. */
typedef struct fwx_firewall_stats {
    uint32_t struct_size;   /**< the caller's sizeof(fwx_firewall_stats), set before the call; never changed */
    uint32_t sessions;      /**< open sessions */
    uint32_t connections;   /**< live connection objects (any state) */
    uint32_t permissions;   /**< outstanding permissions (AllowFutureConnect, redirect ports) */
    uint32_t bound_ports;   /**< ports bound for clients */
    uint32_t factories;     /**< registered data-filter factories */
    uint32_t plugins;       /**< loaded plugins, including ones shut down but still referenced */
} fwx_firewall_stats;

/**
 * Fills @p out up to its struct_size, which the caller sets first
 * (`fwx_firewall_stats st = {.struct_size = sizeof st};`).
 * @return FWX_S_OK, FWX_E_POINTER, FWX_E_INVALIDARG (a struct_size out of range; logged, nothing written).
 */
FWX_API fwx_result fwx_firewall_get_stats(const fwx_firewall *fw, fwx_firewall_stats *out);

/**
 * @name Connection time limits
 * Two limits end a TCP connection that fwx carries in user mode (a published server's, a
 * SOCKS client's, one a filter needs to see in kernel mode, one a host hands to
 * fwx_connection_relay()); kernel-carried flows are left to conntrack's timeouts, UDP flows to
 * their backend's idle timer.
 * - **Idle**: no byte in either direction for idle_s seconds. A secondary connection's bytes
 *   (an FTP data connection's) count for the primary connections of its session that have the
 *   same protocol definition, so an FTP control connection is not cut while its transfer runs.
 * - **Handshake**: handshake_s seconds from accept until the connection is established end to
 *   end (both sides connected) and no filter holds its handshake open
 *   (IFWXConnection3::SetHandshakePending; the FTP filter holds it until the server's 230).
 *
 * A protocol definition's `idle_timeout` and `handshake_timeout` (doc/policy.md) override
 * these defaults for its connections; 0 means none. The limits a connection gets are read when
 * it starts: a reload applies to new connections. On expiry one line at info names the
 * connection, its client, its protocol and the limit, and the connection ends as on any close
 * (ConnectionTerminating, its permissions withdrawn).
 *
 * Rationale: a peer that never finishes logging in, or sends a byte now and then, holds a
 * socket, a relay and a session's permissions for as long as it likes (issue 16, item 7;
 * OpenBSD ftp-proxy's -t, HAProxy's timeout client/server/connect). The defaults: idle 900 s,
 * the idle limit FTP servers commonly apply to their own control connections and long enough
 * for an interactive session; handshake 60 s, far longer than any client's login and short
 * enough that a flood of half-open logins is cleared within a minute.
 * Cost: data records the loop's time on the connection, no syscall and no timer call; one
 * 1 s timer per firewall looks at a connection once per idle period (lib/core/timeouts.c).
 * Activity is what fwx reads and writes: bytes it has handed to the kernel that then drain
 * slowly toward a peer are not seen, so an idle limit should be longer than such a drain (a few
 * seconds for common socket buffers and links; far below the 900 s default). A limit ends a
 * connection within about a second after it is reached.
 * @{
 */
/** fwx_timeouts::idle_s by default (seconds). @since 1.1 */
#define FWX_TIMEOUTS_IDLE_DEFAULT 900u
/** fwx_timeouts::handshake_s by default (seconds). @since 1.1 */
#define FWX_TIMEOUTS_HANDSHAKE_DEFAULT 60u
/** The largest limit, in seconds (one week). @since 1.1 */
#define FWX_TIMEOUTS_MAX 604800u

/** The firewall's default limits, for fwx_firewall_set_timeouts(). Start from fwx_timeouts_init(). @since 1.1 */
typedef struct fwx_timeouts {
    /** sizeof(fwx_timeouts); set by fwx_timeouts_init(). Fields are only appended. */
    uint32_t struct_size;
    /** Idle limit in seconds for protocols that set none; 0: none. Default FWX_TIMEOUTS_IDLE_DEFAULT. */
    uint32_t idle_s;
    /** Handshake limit in seconds for protocols that set none; 0: none. Default FWX_TIMEOUTS_HANDSHAKE_DEFAULT. */
    uint32_t handshake_s;
} fwx_timeouts;

/** Fills @p t with the defaults. [any-thread] @since 1.1 */
FWX_API void fwx_timeouts_init(fwx_timeouts *t);

/**
 * Sets the firewall's default limits (a firewall starts with fwx_timeouts_init()'s). Applies
 * to connections that start after the call. [loop-thread]
 * @param fw the firewall.
 * @param t borrowed, copied.
 * @return FWX_S_OK, FWX_E_POINTER, FWX_E_INVALIDARG (struct_size too small, a limit above
 * FWX_TIMEOUTS_MAX).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_set_timeouts(fwx_firewall *fw, const fwx_timeouts *t);

/**
 * How many connections each limit has ended since the firewall started. [loop-thread]
 * @param fw the firewall.
 * @param idle receives the idle count (may be NULL). @param handshake the handshake count (may be NULL).
 * @return FWX_S_OK, FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_get_timeout_stats(const fwx_firewall *fw, uint64_t *idle, uint64_t *handshake);
/** @} */

/** What fwx_firewall_list() reports. */
typedef enum fwx_object_kind {
    FWX_OBJECT_SESSION = 1,    /**< an open session */
    FWX_OBJECT_CONNECTION = 2, /**< a live connection (primary, secondary, listening) */
    FWX_OBJECT_GRANT = 4,      /**< an outstanding permission, bound port, redirect port or client bind */
    FWX_OBJECT_PLUGIN = 8,     /**< a loaded plugin */
    /** @cond */
    FWX__OBJECT_FORCE_32 = 0x7FFFFFFF
    /** @endcond */
} fwx_object_kind;

/**
 * One object, as fwx_firewall_list() describes it. Borrowed for the callback only. Handed out
 * (@ref struct_sizes): read a field only when struct_size covers it; first size 468 bytes,
 * through kernel_mode.
 */
typedef struct fwx_object_info {
    uint32_t struct_size;            /**< the library's sizeof(fwx_object_info) */
    fwx_object_kind kind;            /**< what it is */
    uint64_t id;                     /**< its id (sessions, connections, grants) or load index (plugins) */
    uint64_t session_id;             /**< the session it belongs to, 0 for plugins */
    int32_t protocol;                /**< FWX_PROTOCOL_TCP / _UDP, 0 if not applicable */
    uint32_t flags;                  /**< FWX_SESSION_*, FWX_CONNECTION_*, FWX_FLAG_* or hooks, by kind */
    struct sockaddr_storage client;  /**< the session's client */
    struct sockaddr_storage peer;    /**< connection: external peer; grant: target */
    struct sockaddr_storage local;   /**< connection: gateway's external address; grant: gateway address */
    uint64_t bytes_in;               /**< connection: bytes from the client side */
    uint64_t bytes_out;              /**< connection: bytes from the external side */
    uint64_t age_ms;                 /**< time since it was created */
    int64_t expires_in_ms;           /**< grant: time left, -1 if it does not expire */
    const char *name;                /**< plugin name, grant kind ("permission", "bound port", ...), session or connection kind */
    const char *owner;               /**< grant: the plugin that asked ("" if unknown); session: the user; plugin: its path */
    int32_t kernel_mode;             /**< connection or grant: nonzero when the kernel carries it, not fwx's user-mode path */
    /** plugin: its filter's class id (what a policy's `filters` may name); grant: the protocol
        definition it was made for. @since 1.1, appended: read it only when struct_size covers it. */
    fwx_guid guid;
} fwx_object_info;

/** Receives one object from fwx_firewall_list(). */
typedef void (*fwx_list_cb)(void *arg, const fwx_object_info *info);

/**
 * Describes every object of the kinds in @p kinds (an OR of ::fwx_object_kind): plugins first,
 * then sessions in opening order, each followed by its connections and grants. For tools such
 * as fwxctl.
 * @param fw the firewall.
 * @param kinds which kinds to describe.
 * @param cb called once per object.
 * @param arg passed to @p cb.
 * @return FWX_S_OK, FWX_E_POINTER.
 */
FWX_API fwx_result fwx_firewall_list(fwx_firewall *fw, uint32_t kinds, fwx_list_cb cb, void *arg);

/**
 * Adds to a connection's byte counters; called by backends and data paths that carry it. Each
 * call is also activity for the connection's idle limit (fwx_firewall_set_timeouts()), so a data
 * path that writes out bytes it counted already calls it with zero counts. [loop-thread]
 * @param conn the connection (borrowed).
 * @param from_client bytes that came from the client side.
 * @param from_external bytes that came from the external side.
 */
FWX_API void fwx_connection_count_bytes(IFWXConnection *conn, uint64_t from_client, uint64_t from_external);

/* ---------------------------------------------------------------------------------------- */
/** @name Policy */
/** @{ */

/** Where and why a configuration was refused. */
typedef struct fwx_config_error {
    char file[256];    /**< the file (or the name given for a string) */
    int line;          /**< 1-based line, 0 if not known */
    char key[128];     /**< the offending key path, such as "rules.[2].action", "" if none */
    char message[256]; /**< what is wrong */
} fwx_config_error;

/**
 * Loads a policy file. The format is described in doc/policy.md.
 * @param path the file (borrowed).
 * @param out receives the policy; give it to fwx_firewall_set_policy() or free it with
 *   fwx_policy_free().
 * @param err may be NULL; filled on failure ("file:line: key: message").
 * @return FWX_S_OK, FWX_E_CONFIG, FWX_E_OUTOFMEMORY.
 */
FWX_API fwx_result fwx_policy_load_file(const char *path, fwx_policy **out, fwx_config_error *err);

/** As fwx_policy_load_file(), from text; @p name is used in errors. */
FWX_API fwx_result fwx_policy_load_string(const char *text, const char *name, fwx_policy **out, fwx_config_error *err);

/**
 * Reads a file in the policy's configuration syntax and gives its text as libconfig parses it
 * (a comma before a closing bracket blanked, every line number kept, \@include refused), for a
 * host that keeps its own settings in the same file and reads them with libconfig's
 * config_read_string(): both then accept exactly the same files.
 * @param path the file. @param text receives the text; free() it.
 * @param err may be NULL; filled on failure.
 * @return FWX_S_OK, FWX_E_CONFIG, FWX_E_OUTOFMEMORY, FWX_E_POINTER.
 */
FWX_API fwx_result fwx_config_read_file(const char *path, char **text, fwx_config_error *err);

/** Frees a policy not given to a firewall. NULL is fine. */
FWX_API void fwx_policy_free(fwx_policy *policy);

/**
 * Gives @p policy (ownership passes, even on failure) to the firewall, replacing the one it
 * had. Live sessions and connections are kept; new requests are decided by the new policy.
 * With a backend that listens, the policy's publishing rules become listeners: unchanged rules
 * keep theirs (and their sessions), removed ones are closed, new ones opened. A listener that
 * cannot be opened is logged and its code returned; the policy is in force all the same. One
 * the backend fails to close is logged and closed at the next change.
 * @return FWX_S_OK, FWX_E_POINTER.
 */
FWX_API fwx_result fwx_firewall_set_policy(fwx_firewall *fw, fwx_policy *policy);

/**
 * Checks @p policy against this firewall before it is put in force, so that a policy that
 * passes starts: every filter a protocol binds (by GUID or by plugin name) is provided by a
 * plugin loaded now, and every publishing rule listens on an address this host holds (or a
 * wildcard). fwx-gateway runs it for --check, at start and at each reload. A policy given to
 * fwx_firewall_set_policy() without it still works, but a protocol whose filter is missing has
 * its connections refused (never relayed unfiltered), with a warning when it is set.
 * [loop-thread]
 * @param fw the firewall whose loaded plugins and host the policy is checked against.
 * @param policy borrowed; not given to the firewall.
 * @param err may be NULL; on failure names the file, the line, the key and what to write
 *   instead (the plugins that are loaded, the addresses the host has).
 * @return FWX_S_OK; FWX_E_CONFIG; FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_check_policy(fwx_firewall *fw, const fwx_policy *policy, fwx_config_error *err);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name Plugins */
/** @{ */

/**
 * Loads one plugin. A plugin path is loaded once: loading it again gives the same plugin and
 * FWX_S_FALSE. On failure the reason is logged and kept in fwx_firewall_last_error().
 * @param fw the firewall.
 * @param path the plugin's path (borrowed); plugins are told apart by this text.
 * @param out may be NULL; receives the plugin (owned by the firewall).
 * @return FWX_S_OK; FWX_S_FALSE (already loaded); FWX_E_PLUGIN_LOAD (dlopen failed, no entry
 *   symbol, bad entry); FWX_E_ABI_MISMATCH; FWX_E_PLUGIN_INIT (init, create_filter or
 *   FilterInit failed); FWX_E_ALREADY_EXISTS_WIN32 (another plugin has the same filter GUID);
 *   FWX_E_TERMINATING.
 */
FWX_API fwx_result fwx_firewall_load_plugin(fwx_firewall *fw, const char *path, fwx_plugin **out);

/**
 * Loads every `*.so` in @p dir, in name order. A plugin that fails is logged and skipped.
 * @param fw the firewall.
 * @param dir the directory (borrowed).
 * @param n_loaded may be NULL; receives how many loaded.
 * @return FWX_S_OK if every one loaded, FWX_S_FALSE if some failed, FWX_E_NOT_FOUND if the
 *   directory cannot be read.
 */
FWX_API fwx_result fwx_firewall_load_plugin_dir(fwx_firewall *fw, const char *dir, unsigned *n_loaded);

/**
 * Unloads a plugin: everything its filters set up (permissions, bound ports, factories) is
 * withdrawn first, then FilterShutdown, then its session filters are detached; the code is
 * unmapped when its last object is released.
 * @return FWX_S_OK, FWX_E_POINTER.
 */
FWX_API fwx_result fwx_plugin_unload(fwx_plugin *plugin);

/** Finds a loaded plugin by filter GUID, or NULL. */
FWX_API fwx_plugin *fwx_firewall_find_plugin(fwx_firewall *fw, const fwx_guid *filter_guid);

/** The plugin's entry (borrowed, valid while loaded). */
FWX_API const struct fwx_plugin_entry *fwx_plugin_info(const fwx_plugin *plugin);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name Sessions and connections */
/** @{ */

/** What fwx_session_open() needs to know about a client. An input struct (@ref struct_sizes); first size 48 bytes. */
typedef struct fwx_session_params {
    uint32_t struct_size; /**< the caller's sizeof(fwx_session_params) */
    /** fwxSourceNAT (transparent or published; one session per client address) or
        fwxSourceWSP (explicit client; one session per control channel). */
    uint32_t source;
    /** The client's address (port ignored). Required. */
    const struct sockaddr *client;
    /** Length of client. */
    uint32_t client_len;
    /** The gateway address the client talks to (where redirect ports are bound), or NULL. */
    const struct sockaddr *gateway_internal;
    /** Length of gateway_internal. */
    uint32_t gateway_internal_len;
    /** An authenticated user name, or NULL. Copied. */
    const char *user;
} fwx_session_params;

/**
 * Opens a session. For fwxSourceNAT, an open session of the same client address is returned
 * instead (a new reference) and the result is FWX_S_FALSE.
 * @param fw the firewall.
 * @param params borrowed; copied.
 * @param out receives a new reference (+1).
 * @return FWX_S_OK, FWX_S_FALSE, FWX_E_INVALIDARG (also a struct_size out of range; logged),
 *   FWX_E_QUOTA_EXCEEDED (max_sessions),
 *   FWX_E_OUTOFMEMORY, FWX_E_TERMINATING (firewall closing).
 */
FWX_API fwx_result fwx_session_open(fwx_firewall *fw, const fwx_session_params *params, IFWXSession **out);

/**
 * Ends a session: its connections are killed (each with fwx_ConnectionTerminating), every
 * permission and bound port it set up is withdrawn, its session filters are detached. The
 * caller's reference is not released. Harmless on an ended session. (A private session,
 * IFWXFirewall::CreatePrivateSession, also ends by itself on its last release.)
 * @return FWX_S_OK, FWX_S_FALSE (already ended), FWX_E_POINTER.
 */
FWX_API fwx_result fwx_session_close(IFWXSession *session);

/**
 * What fwx_connection_open() needs to know about a primary connection. An input struct
 * (@ref struct_sizes); first size 60 bytes, through flags.
 */
typedef struct fwx_connection_params {
    uint32_t struct_size; /**< the caller's sizeof(fwx_connection_params) */
    /**
     * The event it raises: fwx_Connect_Tcp (the client connects out), fwx_AcceptedConnection
     * (someone connected in to a published server), fwx_Udp_Destination (UDP to a new
     * destination), fwx_Bind_Tcp / fwx_Bind_Udp (an explicit client bound a port; such a bind
     * never fails, but stays discarding until RetroactiveAllowBind approves it).
     */
    uint32_t event;
    /** FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP. */
    int32_t protocol;
    /** The remote end on the external side: the destination for outbound, the remote
        client for accepted connections, the bound address for binds. Required. */
    const struct sockaddr *external_peer;
    /** Length of external_peer. */
    uint32_t external_peer_len;
    /** The gateway's address on the external side, or NULL if not known yet. */
    const struct sockaddr *external_local;
    /** Length of external_local. */
    uint32_t external_local_len;
    /** The destination's host name for site rules, or NULL. */
    const char *host_name;
    /** FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION for full proxy mode, else 0. */
    uint32_t flags;
    /** Length of published_server. @since 1.0, appended: a struct_size that ends at flags
        (60, or 64 with the padding, on LP64) leaves these two fields unset. */
    uint32_t published_server_len;
    /**
     * For fwx_AcceptedConnection of a publishing rule: the internal server the gateway relays
     * to, or NULL. The session then treats that server as its own host too: BindForClient may
     * bind for the server's addresses (a passive-mode data port), and permissions and redirect
     * ports of the session may be used by the server (active mode).
     */
    const struct sockaddr *published_server;
} fwx_connection_params;

/**
 * Decides a primary connection: the policy first (site and content rules, then protocol
 * rules, the first matching rule wins), then each filter that hooks the event, in load order.
 * @param session the session it belongs to (borrowed).
 * @param params borrowed; copied.
 * @param out receives a new reference (+1) on success, NULL on failure.
 * @return FWX_S_OK; FWX_E_PROTOCOL_RULES_DENIED / FWX_E_SITE_AND_CONTENT_RULES_DENIED /
 *   FWX_E_NETWORK_RULES_DENIED (policy; a connection to a publishing rule's listener is decided
 *   as going to the rule's server, with the rule's protocol); FWX_E_CLASSNOTREG (the protocol
 *   binds a filter no loaded plugin provides: refused rather than relayed unfiltered);
 *   FWX_E_CONNREFUSED (a filter denied a connect),
 *   FWX_E_ADDRINUSE (a filter denied a bind), FWX_E_DENIED (a filter denied an accepted
 *   connection or failed its handler); FWX_E_INVALIDARG (also a struct_size out of range;
 *   logged); FWX_E_TERMINATING.
 */
FWX_API fwx_result fwx_connection_open(IFWXSession *session, const fwx_connection_params *params, IFWXConnection **out);

/**
 * Raises fwx_Listen for a TCP bind connection that starts listening. It cannot be denied.
 * @return FWX_S_OK, FWX_E_INVALIDARG (not a TCP bind), FWX_E_TERMINATING.
 */
FWX_API fwx_result fwx_connection_listen(IFWXConnection *conn);

/**
 * Ends a connection (fwx_ConnectionTerminating to the session's filters, data filters
 * detached) and releases the caller's reference. NULL is fine.
 */
FWX_API void fwx_connection_close(IFWXConnection *conn);

/** A new connection that arrived for a secondary-connection grant. An input struct (@ref struct_sizes); first size 36 bytes. */
typedef struct fwx_flow {
    uint32_t struct_size;     /**< the caller's sizeof(fwx_flow) */
    int32_t protocol;         /**< FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP */
    const struct sockaddr *source; /**< who opens it */
    uint32_t source_len;      /**< length of source */
    const struct sockaddr *destination; /**< where it goes: a gateway port, or a permitted target */
    uint32_t destination_len; /**< length of destination */
} fwx_flow;

/**
 * Asks whether a new flow is allowed by what a filter set up: a port bound by BindForClient
 * or RedirectConnections (the destination is a gateway port), a client bind approved by
 * RetroactiveAllowBind, or an AllowFutureConnect permission (the source is a session's client).
 * On success the grant is used up (unless ALLOW_MULTIPLE), the new connection is created,
 * data-filter factories that match are applied, the hooked events raised, and the filter that
 * asked gets fwx_EstablishedConnection.
 *
 * The flow is taken as a transparent one, which belongs to the NAT session of its source: it
 * may use the permissions of NAT sessions, and those of explicit sessions only when
 * FWX_FLAG_ADDRESS_BASED. A flow an explicit client asks for on its control channel (a SOCKS
 * CONNECT or UDP ASSOCIATE) goes to fwx_firewall_admit_in_session() instead.
 * @param fw the firewall.
 * @param flow borrowed, valid for the call only.
 * @param out receives a new reference (+1) to the secondary connection.
 * @return FWX_S_OK; FWX_E_NOT_FOUND (nothing was set up for it);
 *   FWX_E_ADDRESS_NOT_ALLOWED (a grant exists but this source may not use it: another peer,
 *   the IP filter, a client bind not yet approved); FWX_E_PROTOCOL_RULES_DENIED,
 *   FWX_E_SITE_AND_CONTENT_RULES_DENIED (the policy refuses this source the protocol of the
 *   client bind it reaches); FWX_E_CONNREFUSED (a filter denied it); FWX_E_INVALIDARG (also a
 *   struct_size out of range; logged).
 */
FWX_API fwx_result fwx_firewall_admit(fwx_firewall *fw, const fwx_flow *flow, IFWXConnection **out);

/**
 * As fwx_firewall_admit(), for a flow the host carries in @p session: what an explicit client
 * asks for on its control channel (each SOCKS connection is a session of its own), or any flow
 * the host knows the session of.
 *
 * A permission (AllowFutureConnect) is used only by its own session's flows, unless it was
 * made with FWX_FLAG_ADDRESS_BASED: then a flow of any session of the same client address may
 * use it (a client that opens a new control channel per connection, as SOCKS clients do). The
 * session's own permission is used before another's. A flow that finds only permissions of
 * other sessions gets FWX_E_NOT_FOUND (and is then an ordinary connection under the policy,
 * as with no permission at all); the log says which permission it did not use. A port (bound,
 * redirect, client bind) is taken only by a flow of the session that set it up.
 * @param fw the firewall.
 * @param session borrowed; a session of @p fw, or NULL (then it is fwx_firewall_admit()).
 * @param flow borrowed, valid for the call only.
 * @param out receives a new reference (+1) to the secondary connection.
 * @return as fwx_firewall_admit(); FWX_E_ADDRESS_NOT_ALLOWED also for another session's port;
 *   FWX_E_INVALIDARG also for a session not of @p fw; FWX_E_TERMINATING also when @p session
 *   has ended.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_admit_in_session(fwx_firewall *fw, IFWXSession *session, const fwx_flow *flow,
                                                 IFWXConnection **out);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/**
 * @name Relaying through fwx: data filters for hosts that carry the bytes themselves
 *
 * A host relays itself the connections it reports (every one without a backend,
 * fwx_firewall_set_backend() never called; with the "proxy" backend, those it opens with
 * fwx_connection_open() rather than the backend's own listeners), so fwx never sees their
 * bytes. Data filters (IFWXConnection::AttachDataFilter, the FTP filter's, a factory's,
 * EmulateForConnect's) need those bytes: such a host hands the two sockets of each connection
 * that has data filters to fwx_connection_relay(), and fwx carries that connection through its
 * filter chain (the same data path as the proxy backend). The host says it does so once, with
 * fwx_firewall_set_host_relay(); until then such a connection, once a filter attached a data
 * filter to it, is refused by fwx_connection_open() or fwx_firewall_admit() with
 * FWX_E_NOT_SUPPORTED and a log line ("refused: 1 data filter(s) attached but nothing runs
 * them"; with the proxy backend "refused: the host reported it ..."), never carried unfiltered.
 *
 * Typical use, after fwx_connection_open() succeeded and the upstream connect completed:
 * @code
 * if (fwx_connection_data_filters(conn) > 0)       // a filter must see the bytes
 *     fwx_connection_relay(conn, client_fd, server_fd, on_relay_done, ctx, NULL);
 * else
 *     my_own_relay(client_fd, server_fd);
 * @endcode
 * With libuv streams: take each uv_tcp_t's socket with uv_fileno(), dup() it, and uv_close()
 * the handle; the duplicates are what fwx takes (examples/minimal-embed does this).
 * @{
 */

/** A connection carried by fwx for the host (fwx_connection_relay()). Owned by fwx. */
typedef struct fwx_relay fwx_relay;

/**
 * Called once when a relay has ended; both sockets are closed by then.
 * @param relay valid for the call only (freed when it returns).
 * @param result FWX_S_OK (both directions ended, or the filters closed the connection, as
 *   the FTP filter does after refusing a command); FWX_E_TERMINATING (fwx_relay_abort(),
 *   or the connection ended: IFWXConnection::Kill, fwx_connection_close(), its session closed);
 *   FWX_E_FAIL (an I/O error, or a data filter's SetSockets failed).
 * @param arg the @p arg given to fwx_connection_relay().
 * The connection itself stays the host's: close it (fwx_connection_close()) when it is done.
 * [loop-thread]
 */
typedef void (*fwx_relay_done_cb)(fwx_relay *relay, fwx_result result, void *arg);

/**
 * Says whether the host carries connections with data filters through fwx_connection_relay().
 * Nonzero: fwx_connection_open() and fwx_firewall_admit() accept the host's connections with
 * data filters and leave them to the host. Zero (the default): they are refused with
 * FWX_E_NOT_SUPPORTED and a log line. Has no effect on connections a backend carries itself
 * (the proxy backend's listeners, SOCKS and UDP ports). [loop-thread]
 * @param fw the firewall. @param enabled nonzero or zero.
 * @return FWX_S_OK, FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_set_host_relay(fwx_firewall *fw, int32_t enabled);

/**
 * The number of data filters attached to @p conn now (0 for NULL or a connection that is not
 * the core's). Nonzero means the host must not relay the bytes itself: fwx_connection_relay().
 * [loop-thread]
 * @since 1.1
 */
FWX_API uint32_t fwx_connection_data_filters(IFWXConnection *conn);

/**
 * Carries a TCP connection between two sockets the host opened, through the connection's data
 * filters in priority order (each filter's IFWXDataFilter::SetSockets is called before this
 * returns); with none, a plain relay (splice(2)). Bytes are counted on the connection as
 * fwx_connection_count_bytes() would. When both directions have ended (EOF passed on as a
 * half-close), or the filters closed the connection, or on an I/O error, or after
 * fwx_relay_abort(), or when the connection ends (Kill, fwx_connection_close(), its session
 * closed), both sockets are closed and @p done runs once, from a loop callback, never from
 * inside this call.
 * @param conn the connection (borrowed; fwx holds a reference until @p done has returned),
 *   from fwx_connection_open() or fwx_firewall_admit() of this firewall.
 * @param client_fd the socket of the side that opened the connection (the client); a
 *   connected TCP socket. Ownership passes to fwx on FWX_S_OK only.
 * @param server_fd the socket the host connected to the server; or -1 when a filter
 *   emulates the server (IFWXConnection::EmulateForConnect). Ownership as @p client_fd.
 * @param done called once when the relay has ended (may be NULL).
 * @param arg passed to @p done.
 * @param out may be NULL; receives the relay (owned by fwx, valid until @p done returns).
 * @return FWX_S_OK (then @p done follows exactly once); FWX_E_POINTER (@p conn NULL or not
 *   the core's); FWX_E_TERMINATING (the connection has ended); FWX_E_NOT_SUPPORTED (not a TCP
 *   connection); FWX_E_INVALIDARG (a socket that is not a TCP stream socket, both the same, -1
 *   for the server without an emulating filter, or the connection is already relayed);
 *   FWX_E_OUTOFMEMORY; FWX_E_FAIL (libuv could not watch a socket). On failure nothing was
 *   taken: the sockets are still the caller's, and a line says why.
 * [loop-thread]
 * @since 1.1
 */
FWX_API fwx_result fwx_connection_relay(IFWXConnection *conn, int client_fd, int server_fd, fwx_relay_done_cb done,
                                        void *arg, fwx_relay **out);

/**
 * Ends a relay now: both sockets are closed and its done callback follows (from a loop
 * callback, with FWX_E_TERMINATING). Harmless while it is ending; must not be called once the
 * done callback has returned. [loop-thread]
 * @since 1.1
 */
FWX_API void fwx_relay_abort(fwx_relay *relay);

/**
 * Datagrams the UDP data path dropped since the firewall was created: larger than the data
 * filter's receive buffer (IFWXConnection::SetBufferSize; 4096 bytes by default for UDP), or
 * more than a filter socket queues while its filter is not receiving. Each flow that dropped
 * any also logs a line. [loop-thread]
 * @since 1.1
 */
FWX_API uint64_t fwx_firewall_datagrams_dropped(const fwx_firewall *fw);

/** @} */

/* ======================================================================================== */
/* Operator tools: acting on objects, explaining decisions, events and
   plugin timing for operators' tools. Everything in this block is @since 1.1. */
/* ======================================================================================== */
/** @name Operator tools */
/** @{ */

/**
 * @brief Ends one session or one connection by the id fwx_firewall_list() reports. [loop-thread]
 *
 * A session ends as fwx_session_close() ends it (its connections killed, its permissions and
 * bound ports withdrawn); a connection as IFWXConnection::Kill ends it (the backend closes its
 * sockets or flow). The host's own references stay valid: it learns of the end as for any
 * other, through its backend and fwx_relay_done_cb.
 * @param fw the firewall.
 * @param kind ::FWX_OBJECT_SESSION or ::FWX_OBJECT_CONNECTION.
 * @param id the object's id.
 * @return FWX_S_OK; FWX_E_NOT_FOUND (no live object of that kind has that id); FWX_E_INVALIDARG
 *   (another kind); FWX_E_POINTER; FWX_E_TERMINATING (the firewall is closing).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_kill(fwx_firewall *fw, fwx_object_kind kind, uint64_t id);

/** A connection to explain: what fwx_firewall_explain() decides. @since 1.1 */
typedef struct fwx_explain_request {
    uint32_t struct_size;             /**< sizeof(fwx_explain_request) */
    int32_t protocol;                 /**< FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP */
    const struct sockaddr *source;    /**< who opens it (the port may be 0) */
    uint32_t source_len;              /**< length of source */
    const struct sockaddr *destination; /**< where to, with its port; a publishing rule's
                                           listen address is decided as that rule's server */
    uint32_t destination_len;         /**< length of destination */
    const char *user;                 /**< the session's user, or NULL */
    const char *host_name;            /**< the destination's name for site rules, or NULL */
} fwx_explain_request;

/** The policy's decision on a ::fwx_explain_request. @since 1.1 */
typedef struct fwx_explanation {
    uint32_t struct_size;        /**< sizeof(fwx_explanation), set by the caller */
    /** FWX_S_OK (allowed) or the refusal fwx_connection_open() would return:
        FWX_E_PROTOCOL_RULES_DENIED, FWX_E_SITE_AND_CONTENT_RULES_DENIED,
        FWX_E_NETWORK_RULES_DENIED, FWX_E_CLASSNOTREG (a bound filter is not loaded). */
    fwx_result result;
    char rule[64];               /**< the rule that decided, "" for the default rule */
    int32_t rule_line;           /**< its line in the policy file, 0 for the default */
    char protocol[64];           /**< the protocol definition it matched, "" for none */
    char source_network[64];     /**< the source's network */
    char destination_network[64]; /**< the destination's network */
    char relationship[16];       /**< "nat", "route", "published" or "none" */
    char published[64];          /**< the publishing rule it arrives on, "" if none */
    /** The whole decision in one line, as a refusal's log line says it. */
    char text[512];
} fwx_explanation;

/**
 * @brief What the running policy decides for a connection, without opening anything.
 * [loop-thread]
 *
 * The same decision fwx_connection_open() makes before the filters are asked (the filters'
 * own verdict depends on the traffic and is not predicted).
 * @param fw the firewall.
 * @param req borrowed.
 * @param out filled (struct_size set by the caller).
 * @return FWX_S_OK (out filled, out->result says allow or deny); FWX_E_NOT_FOUND (no policy
 *   loaded: every connection is allowed); FWX_E_INVALIDARG; FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_explain(fwx_firewall *fw, const fwx_explain_request *req, fwx_explanation *out);

/** What a ::fwx_event reports. @since 1.1 */
typedef enum fwx_event_type {
    FWX_EVENT_SESSION_OPENED = 1,     /**< a session opened */
    FWX_EVENT_SESSION_ENDED = 2,      /**< a session ended */
    FWX_EVENT_CONNECTION_OPENED = 3,  /**< a connection was allowed (primary or secondary) */
    FWX_EVENT_CONNECTION_CLOSED = 4,  /**< a connection ended; bytes_in/bytes_out are final */
    FWX_EVENT_CONNECTION_REFUSED = 5, /**< the policy or a filter refused a connection */
    FWX_EVENT_PERMISSION_ADDED = 6,   /**< a permission, bound port or redirect port was set up */
    FWX_EVENT_PERMISSION_REMOVED = 7, /**< ... and withdrawn (used, timed out, session ended) */
    /** @cond */
    FWX__EVENT_FORCE_32 = 0x7FFFFFFF
    /** @endcond */
} fwx_event_type;

/**
 * @brief One event, as an event sink receives it. Borrowed for the call only; a member that
 * does not apply is 0, NULL or an address of family AF_UNSPEC. @since 1.1
 */
typedef struct fwx_event {
    uint32_t struct_size;            /**< sizeof(fwx_event) as the library saw it */
    fwx_event_type type;             /**< what happened */
    uint64_t session_id;             /**< the session (0 for a refusal before any connection) */
    uint64_t id;                     /**< the connection's or the permission's id */
    int32_t protocol;                /**< FWX_PROTOCOL_TCP / _UDP, 0 for sessions */
    int32_t kernel_mode;             /**< connection or permission: nonzero when the kernel carries it */
    struct sockaddr_storage client;  /**< the session's client (refusal: the source) */
    struct sockaddr_storage peer;    /**< connection: external peer; permission: target; refusal: destination */
    uint64_t bytes_in;               /**< CONNECTION_CLOSED: bytes from the client side */
    uint64_t bytes_out;              /**< CONNECTION_CLOSED: bytes from the external side */
    fwx_result result;               /**< CONNECTION_REFUSED: the refusal code */
    /** CONNECTION_REFUSED: a short stable reason for counting: "protocol_rules",
        "site_rules", "network_rules", "no_filter", "filter", "quarantine", "limits"
        (a cap: FWX_E_QUOTA_EXCEEDED, FWX_E_IS_BUSY), "other". */
    const char *reason;
    const char *rule;                /**< the rule that decided ("default", "" unknown) */
    /** connection: "primary", "secondary", "listening"; permission: its kind ("permission",
        "bound port", "redirect port", "client bind"); session: "nat" or "explicit". */
    const char *name;
    const char *detail;              /**< REFUSED: the log line's explanation; else "" */
} fwx_event;

/**
 * Receives one event, on the loop thread, synchronously inside the call that caused it. It
 * must return quickly and must not call back into fwx.
 * @since 1.1
 */
typedef void (*fwx_event_fn)(void *arg, const fwx_event *event);

/**
 * @brief Sends session, connection, refusal and permission events to @p sink. [loop-thread]
 *
 * One sink per firewall; NULL removes it. Events come whatever the log level.
 * @return FWX_S_OK, FWX_E_POINTER (@p fw NULL).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_set_event_sink(fwx_firewall *fw, fwx_event_fn sink, void *arg);

/**
 * @brief Reports a connection refused outside the core's own decisions (a backend's or a host's
 *        cap, before any session exists) to the event sink, as a CONNECTION_REFUSED event with
 *        session 0 and name "primary", as the core reports its own refusals. [loop-thread]
 *
 * The caller still logs its own line and answers the peer; this only makes the refusal
 * visible to operators' tools (events, metrics by reason). FWX_E_QUOTA_EXCEEDED and
 * FWX_E_IS_BUSY count as reason "limits".
 * @param fw the firewall. @param protocol FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP.
 * @param source the refused peer (borrowed; NULL when unknown).
 * @param destination where it connected to (borrowed; NULL when unknown).
 * @param result why, a failure code. @param detail a short explanation (borrowed; may be NULL).
 * @return FWX_S_OK (also when no sink is set: nothing to report to), FWX_E_POINTER (@p fw
 *   NULL), FWX_E_INVALIDARG (@p result is not a failure, or @p protocol is neither).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_report_refused(fwx_firewall *fw, int32_t protocol, const struct sockaddr *source,
                                               const struct sockaddr *destination, fwx_result result,
                                               const char *detail);

/** Buckets of ::fwx_plugin_timing::buckets. @since 1.1 */
#define FWX_PLUGIN_TIME_BUCKETS 7
/** Upper bounds of the buckets, microseconds; the last bucket has none (+Inf). @since 1.1 */
#define FWX_PLUGIN_TIME_BOUNDS_US { 10, 100, 1000, 10000, 100000, 1000000 }

/** How long one plugin's handlers took. @since 1.1 */
typedef struct fwx_plugin_timing {
    uint32_t struct_size;   /**< sizeof(fwx_plugin_timing), set by the caller */
    const char *name;       /**< the plugin's name (borrowed for the callback) */
    uint64_t calls;         /**< calls timed (outermost calls into the plugin) */
    uint64_t total_ns;      /**< their summed time */
    /** Calls per bucket (not cumulative): [i] counts calls of at most
        FWX_PLUGIN_TIME_BOUNDS_US[i] and more than the bound before; the last, the rest. */
    uint64_t buckets[FWX_PLUGIN_TIME_BUCKETS];
} fwx_plugin_timing;

/**
 * @brief Turns the timing of every call into a plugin on or off. [loop-thread]
 *
 * Off by default: it reads the monotonic clock twice per call (bench/plugin_call.c).
 * @return FWX_S_OK, FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_time_plugins(fwx_firewall *fw, int32_t enabled);

/** Receives one plugin's timing; @p t is borrowed for the call. @since 1.1 */
typedef void (*fwx_plugin_timing_cb)(void *arg, const fwx_plugin_timing *t);

/**
 * @brief Reports each loaded plugin's timing, in load order. [loop-thread]
 * @return FWX_S_OK, FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_plugin_timings(fwx_firewall *fw, fwx_plugin_timing_cb cb, void *arg);

/** @} */
/* ==== end of the fwxctl-act block ==== */

/* ---------------------------------------------------------------------------------------- */
/**
 * @name What backends and data paths read of the core
 * A backend (fwx/backend.h) or a data path (fwx/pump.h) learns what it needs of the firewall
 * and its connections through these calls, never through the core's structures, so that one
 * written outside libfwx can do what the built-in ones do. [loop-thread] unless marked.
 * @{
 */

/**
 * The connection's id: unique within its firewall, the one log lines and fwx_firewall_list()
 * name. @param conn borrowed.
 * @return the id (never 0), or 0 for NULL or a connection that is not the core's (a data path
 *   uses that to refuse foreign objects).
 * [loop-thread] @since 1.1
 */
FWX_API uint64_t fwx_connection_id(IFWXConnection *conn);

/**
 * The firewall a connection belongs to (borrowed), for a data path's log lines
 * (fwx_firewall_log()) and the loop (fwx_firewall_loop()).
 * @return the firewall, or NULL for NULL or a connection that is not the core's.
 * [loop-thread] @since 1.1
 */
FWX_API fwx_firewall *fwx_connection_firewall(IFWXConnection *conn);

/**
 * Tells the core the local address of the socket a backend opened toward the connection's
 * upstream (its getsockname() once connected), before any byte reaches a filter. For a
 * connection into a published server (and a secondary one admitted on a bound port) that is
 * the gateway's address on the internal side, which a redirect port for that server must be
 * opened on (active FTP's PORT); otherwise its address on the external side, kept if already
 * known. A backend of its own calls it the same way (IPv4-mapped addresses are taken as IPv4).
 * @param conn borrowed. @param local borrowed. @param len its length.
 * @return FWX_S_OK; FWX_E_POINTER (@p conn or @p local NULL); FWX_E_INVALIDARG (not the
 *   core's connection, not an AF_INET/AF_INET6 address of that length, or unspecified).
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_connection_set_upstream_local(IFWXConnection *conn, const struct sockaddr *local,
                                                     uint32_t len);

/**
 * Tells the core the port of the client's own socket for a connection a backend intercepted
 * from a client behind the gateway (a transparent UDP flow): IFWXConnection2::GetInternalPeerName
 * then returns the address and port, and a filter may scope a FWX_FLAG_REPLY_FROM_PEER
 * permission to it (a TFTP client's port). Call it right after fwx_connection_open(), before
 * data filters start. Not for a published server's connection (its internal peer is the server).
 * @param conn borrowed. @param peer borrowed: the session's client address with a non-zero port.
 * @param len its length.
 * @return FWX_S_OK; FWX_E_POINTER (@p conn or @p peer NULL); FWX_E_INVALIDARG (not the core's
 *   connection, a published server's, not AF_INET/AF_INET6, port 0, or not the address of the
 *   session's client).
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_connection_set_internal_peer(IFWXConnection *conn, const struct sockaddr *peer, uint32_t len);

/**
 * FWX_FLAG_TIMEOUT's period (fwx_firewall_options::timeout_ms): how long an idle flow a
 * backend carries (a UDP flow) may live. @return milliseconds, 0 for NULL.
 * [any-thread] @since 1.1
 */
FWX_API uint32_t fwx_firewall_timeout_ms(const fwx_firewall *fw);

/**
 * How many firewalls share the listeners (fwx_firewall_options::listen_shared), for a backend
 * that opens them. @return the count, 0 or 1 when they are not shared (0 for NULL).
 * [any-thread] @since 1.1
 */
FWX_API uint32_t fwx_firewall_listen_shared(const fwx_firewall *fw);

/**
 * Whether the host said it relays connections with data filters itself
 * (fwx_firewall_set_host_relay()). A backend that carries only the connections it opened
 * refuses one the host reported with data filters when this is 0, rather than let the
 * filters be skipped. @return 1 or 0 (0 for NULL).
 * [loop-thread] @since 1.1
 */
FWX_API int32_t fwx_firewall_host_relay(const fwx_firewall *fw);

/**
 * How many filters the protocol definition @p protocol binds in the firewall's policy (its
 * `filters`), for a backend that must treat filtered protocols apart (the proxy backend
 * refuses to publish one without full_proxy).
 * @param fw the firewall. @param protocol the definition's GUID (fwx_listen_spec::protocol_guid).
 * @param name may be NULL; receives the definition's name (borrowed, valid until the policy
 *   is replaced), or NULL when the policy has no such definition.
 * @return the number of filters; 0 without a policy or such a definition.
 * [loop-thread] @since 1.1
 */
FWX_API uint32_t fwx_firewall_protocol_filters(fwx_firewall *fw, const fwx_guid *protocol, const char **name);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* FWX_HOST_H */
