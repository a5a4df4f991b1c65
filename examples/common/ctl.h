/*
 * fwx examples - the control server: lets fwxctl inspect a running gateway.
 * SPDX-License-Identifier: MIT
 *
 * A host program (the example gateway) starts one ctl_server on its loop. fwxctl, or anything
 * that can talk to a Unix socket (`socat - UNIX-CONNECT:/run/fwx/fwx-gateway.sock`), connects,
 * asks one question and gets the answer as JSON lines. Uses only the public fwx API.
 *
 * ## Protocol (version 1)
 *
 * One request per connection. The client sends one line, terminated by "\n" (a "\r" before it
 * is ignored):
 *
 *     list sessions | list connections | list grants | list plugins | list all  [FILTER...]
 *     stats
 *     loops
 *     version
 *     redirects
 *     kill session ID | kill connection ID  [loop=N]                (level admin)
 *     explain SRC DST tcp/PORT|udp/PORT [user=NAME]
 *     reload                                                        (level admin)
 *     events
 *     metrics
 *
 * Words are separated by single spaces. A FILTER is `key=value`; an object is listed when it
 * matches every filter given, and an object to which a filter does not apply is left out:
 * `client=IP` (the session's client), `session=ID` (the session, or the object's session),
 * `plugin=NAME` (a plugin by name, a grant by the plugin that asked for it),
 * `mode=user|kernel` (connections and grants), `address=IP[:PORT]` (the client, peer or local
 * address, port included when given).
 *
 * `kill` ends the object (fwx_firewall_kill()) and answers `{"kind":"killed","what":...,"id":N}`;
 * `explain` answers one `{"kind":"explain","allowed":bool,"code":"E_...","rule":...,
 * "rule_line":N,"protocol":...,"source_network":...,"destination_network":...,
 * "relationship":...,"published":...,"text":...}` (fwx_firewall_explain()); `reload`
 * `{"kind":"reload","ok":bool,"message":...}`; `metrics` `{"kind":"metrics","text":...}` (the
 * Prometheus text). `events` answers `{"kind":"events","started":true}` once the client is
 * subscribed (every event after that line reaches it) and then one object per event as it
 * happens, `{"kind":"event","event":"session-opened"|"session-ended"|"connection-opened"|
 * "connection-closed"|"connection-refused"|"permission-added"|"permission-removed","session":N,
 * "id":N,"protocol":...,"mode":...,"client":...,"peer":...,"bytes_in":N,"bytes_out":N,
 * "reason":...,"rule":...,"name":...,"detail":...}`, without an end and without the
 * timeout, until the client closes; a client that lets ::CTL_MAX_EVENT_BACKLOG bytes pile up
 * unread is dropped. An events client counts among the ::CTL_MAX_CLIENTS.
 *
 * Each socket has a level (::ctl_level). A request above it is answered with
 * `{"error":"permission denied: ..."}`, and the host's log hook gets a warn line naming it.
 *
 * The server answers with JSON lines, one flat object per line, then `{"end":true}`, and closes
 * the connection. Anything after the request line is ignored.
 *
 * `list <what>` sends one object per item, in fwx_firewall_list() order (plugins first, then
 * each session followed by its connections and grants). Every object has all these keys, null
 * where a key does not apply to its kind:
 *
 * | key | meaning |
 * |---|---|
 * | kind | "session", "connection", "grant" or "plugin" |
 * | id | the object's id (a plugin's load index) |
 * | session | the session it belongs to (null for plugins) |
 * | protocol | "tcp", "udp" or null |
 * | client | the session's client |
 * | peer | connection: the external peer; grant: the target |
 * | local | connection: the gateway's external address; grant: the gateway address |
 * | flags | the flags as a number (FWX_SESSION_*, FWX_CONNECTION_*, FWX_FLAG_*, or a plugin's hooks) |
 * | flag_names | the same as a list of names (below); an unknown bit is named "0x..." |
 * | mode | connections: "kernel" or "user" |
 * | bytes_in | connections: bytes from the client side |
 * | bytes_out | connections: bytes from the external side |
 * | age_ms | time since it was created |
 * | expires_in_ms | grants: time left, null if it never expires |
 * | name | session: "nat", "explicit", "private"; connection: "primary", "secondary", "listening"; grant: "permission", "bound port", "redirect port", "client bind"; plugin: its name |
 * | owner | session: the user; grant: the plugin that asked; plugin: its path ("" if none) |
 * | loop | the host's event loop that holds it (0 unless the host runs several, fwx-gateway --threads) |
 *
 * Addresses are strings, "192.0.2.1:21" or "[2001:db8::1]:21"; the port is left out when it
 * is 0 ("10.0.0.8", "2001:db8::1"); null when there is no address.
 *
 * Flag names. Sessions: nat, private, authenticated, terminated. Connections:
 * address_translation, kernel, secondary, emulated, listening, terminated. Grants:
 * address_based, multiple, timeout, no_kernel_mode, bidirectional, proxy_mode, class_c,
 * network, all_addresses, increase_receive_buffer. Plugins (hooked events): connect_tcp,
 * udp_destination, bind_tcp, bind_udp, listen, accepted, gethostbyname, gethostbyaddr,
 * terminating, established, any_protocol, all_connections, wsp, nat.
 *
 * `stats` sends `{"kind":"stats","sessions":N,"connections":N,"permissions":N,
 * "bound_ports":N,"factories":N,"plugins":N,"idle_timeouts":N,"handshake_timeouts":N}` (the
 * last two: connections ended by each time limit since start); `version` sends
 * `{"kind":"version","protocol":1,"abi":"1.0"}` (the fwx ABI the server was built with).
 *
 * Several loops (a host that runs one firewall per event loop, ctl_hooks::loops): `list`
 * answers for every loop, each object with its `loop`, plugins once (every loop loads the
 * same); `stats` gives the sums and `"loops":N`; `loops` sends one `{"kind":"loop","loop":N,
 * "answered":bool,"sessions":N,"connections":N,"permissions":N,"bound_ports":N,
 * "sessions_served":N,"connections_served":N}` per loop (what it holds, and what it has opened
 * since the start). Ids are each loop's own: `kill` without `loop=N` ends the object of the
 * one loop that has that id, and is refused when several have.
 *
 * An unknown request gets `{"error":"..."}` and the connection is closed. So does a request
 * line longer than 256 bytes (refused as soon as 256 bytes have arrived without a newline, so
 * a client can never make the server buffer more than that), and a client that has not sent
 * its request, or not taken its answer, within the timeout (5 s). At most 16 clients are
 * served at once; one more gets `{"error":"too many clients"}` and is closed.
 *
 * Every line is written by libjansson under the one rule of json.h (the gateway's JSON log lines
 * follow it too): quote, backslash and control characters are escaped, bytes that are not valid
 * UTF-8 become U+FFFD. Numbers are decimal integers.
 *
 * Rationale: one request per connection and the end marker make a truncated answer (a
 * gateway that died mid-listing) distinguishable from a complete one, with no framing.
 *
 * Every function here is [loop-thread]: call it on the thread that runs @p loop.
 */
#ifndef FWX_EXAMPLES_CTL_H
#define FWX_EXAMPLES_CTL_H

#include <fwx/fwx.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/** The protocol version that `version` reports. */
#define CTL_PROTOCOL_VERSION 1
/** Longest request line, in bytes, without the newline. */
#define CTL_MAX_REQUEST 256
/** Most clients served at once. */
#define CTL_MAX_CLIENTS 16
/** Default time a client has to send its request, and then to take its answer (ms). */
#define CTL_DEFAULT_TIMEOUT_MS 5000

/** Where fwx-gateway opens its control socket unless told otherwise, and where fwxctl looks. */
#define CTL_DEFAULT_SOCKET "/run/fwx/fwx-gateway.sock"
/** Its directory: created 0750 by the gateway (or by systemd's RuntimeDirectory=fwx) if missing. */
#define CTL_DEFAULT_DIR "/run/fwx"

/** A control server. */
typedef struct ctl_server ctl_server;

/** What a socket's clients may do. */
typedef enum ctl_level {
    CTL_LEVEL_OPERATOR = 1, /**< look only: list, stats, version, redirects, explain, events, metrics */
    CTL_LEVEL_ADMIN = 2,    /**< also act: kill, reload */
} ctl_level;

/** The host's part in requests the server cannot answer alone. Any member may be NULL. */
typedef struct ctl_hooks {
    /** `reload`: reloads as SIGHUP does; returns 0 when the new policy runs, -1 with a
        one-line reason in @p msg when it was refused. */
    int (*reload)(void *arg, char *msg, size_t msglen);
    /** `metrics`: the Prometheus text exposition, malloc'd (the server frees it), or NULL. */
    char *(*metrics)(void *arg);
    /** One line for the host's log (refused commands, kills, dropped event clients). */
    void (*log)(void *arg, fwx_log_level level, const char *line);
    void *arg; /**< passed to each hook */
    /** A host that runs one firewall per event loop (fwx-gateway --threads): how many loops.
        NULL or 0: one, the server's own firewall. The server's firewall is loop 0's. */
    unsigned (*loops)(void *arg);
    /** Runs @p fn(fw, fnarg) with loop @p i's firewall on loop @p i's thread and returns after
        it ran: 0, or -1 when loop @p i did not run it (stopping, or no answer in time). Needed
        with `loops`. */
    int (*on_loop)(void *arg, unsigned i, void (*fn)(fwx_firewall *fw, void *fnarg), void *fnarg);
    /** `loops`: what loop @p i has served since the start (sessions and connections opened).
        [any-thread] May be NULL (then 0). */
    void (*loop_served)(void *arg, unsigned i, uint64_t *sessions, uint64_t *connections);
} ctl_hooks;

/** How a control socket is made. */
typedef struct ctl_config {
    const char *path;   /**< the socket's path (copied) */
    unsigned mode;      /**< its file mode; 0 means 0600 */
    long gid;           /**< its group, or -1 to leave the process's */
    ctl_level level;    /**< 0 means CTL_LEVEL_ADMIN */
    const ctl_hooks *hooks; /**< copied; NULL: none */
} ctl_config;

/**
 * As ctl_server_start(), with the socket's mode, group and level and the host's hooks. The
 * mode and group are set after bind and before listen, so nobody connects under others.
 */
ctl_server *ctl_server_start_with(uv_loop_t *loop, fwx_firewall *fw, const ctl_config *cfg, char *err,
                                  size_t errlen);

/** Changes the level of @p s for requests that arrive afterwards (NULL is fine). */
void ctl_server_set_level(ctl_server *s, ctl_level level);

/**
 * Sends one event to every client that asked for `events` on @p s (NULL is fine). A client
 * whose unread events pass ::CTL_MAX_EVENT_BACKLOG bytes is dropped, with a log line.
 */
void ctl_server_event(ctl_server *s, const fwx_event *ev);

/**
 * How many clients of @p s asked for `events` (0 for NULL): a host whose events happen on
 * other threads forwards them to the server's loop only while someone listens.
 * [any-thread]
 */
unsigned ctl_server_event_clients(ctl_server *s);

/** Unread event bytes a client may let pile up before it is dropped. */
#define CTL_MAX_EVENT_BACKLOG (1024 * 1024)

/**
 * Listens on a Unix socket at @p path on @p loop, mode 0600.
 * A stale socket file at @p path (one nobody listens on) is removed first; a socket some other
 * process still listens on, or a file that is not a socket, is left alone and the call fails.
 * If SIGPIPE has its default action it is set to be ignored: a client that disconnects before
 * it has read its answer must not kill the host (libuv writes with write(2)). A host that
 * handles SIGPIPE itself keeps its handler.
 * @param loop the loop (borrowed; must outlive the server).
 * @param fw the firewall to describe (borrowed; must outlive the server).
 * @param path the socket's path (copied).
 * @param err receives a one-line reason on failure, such as
 *   `ctl: cannot bind /run/fwx/x.sock: permission denied`. May be NULL.
 * @param errlen size of err.
 * @return the server, or NULL on failure.
 */
ctl_server *ctl_server_start(uv_loop_t *loop, fwx_firewall *fw, const char *path, char *err, size_t errlen);


/**
 * Checks the directory a control socket is to be made in, before anything is opened.
 * Whoever can write to that directory can put a socket of their own at @p path first (then
 * fwxctl talks to them) or remove the gateway's: so the directory must exist, be a directory,
 * belong to root or to this process's user, and not be writable by others (S_IWOTH, sticky or
 * not: a sticky /tmp still lets anyone create the name first). Group write is allowed (a
 * deliberate choice of whoever set the group).
 * The default directory (::CTL_DEFAULT_DIR) is the exception to "must exist": with
 * @p create it is made here, mode 0750; without, its absence is accepted (a start will make it).
 * @param path the socket's path, as for ctl_server_start().
 * @param create true: make ::CTL_DEFAULT_DIR if @p path is in it and it is missing.
 * @param err receives a one-line reason on failure, such as
 *   `directory /tmp is writable by others: anyone could take the socket's name first`. May be NULL.
 * @return 0 if the directory is fit, -1 (with @p err) if not.
 */
int ctl_path_check(const char *path, bool create, char *err, size_t errlen);

/**
 * Sets how long a client may take to send its request, and then to take its answer.
 * Applies to clients that connect afterwards. For tests.
 * @param ms the timeout in milliseconds (0 is taken as 1).
 */
void ctl_server_set_timeout(ctl_server *s, uint64_t ms);

/**
 * Stops listening, closes every client connection and unlinks the socket file (if it is still
 * the one this server created). The memory is freed in libuv close callbacks: run the loop
 * afterwards. @p s must not be used after this call. NULL is fine.
 */
void ctl_server_close(ctl_server *s);

#endif /* FWX_EXAMPLES_CTL_H */
