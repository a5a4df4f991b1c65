/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/redirect.h
 * @brief Redirect tracking: redirect handles, redirect records, the redirect-state query.
 *
 * @page redirect_api Redirect tracking
 * When several proxies on one path each want to intercept the same connection (two vendors'
 * transparent proxies, a proxy and a service mesh), each must be able to tell whether it, or
 * someone else, has already redirected it; otherwise the connection goes round in circles.
 * fwx follows the model of Windows' proxied-connection tracking (its rules W1-W9 are in
 * doc/sdk-rules.md):
 *
 * - A party that redirects connections (a filter plugin, or the host program embedding fwx)
 *   creates one ::fwx_redirect_handle for its provider GUID and keeps it for its lifetime.
 * - Every redirected connection carries one ::fwx_redirect_record: where the connection was
 *   originally going, which application opened it, and the ordered chain of hops (who
 *   redirected it, oldest first). A hop may carry a context pointer for its redirecting party.
 * - Before redirecting, a party asks fwx_redirect_query() for the ::fwx_redirect_state of the
 *   record as seen from its handle, and acts as the state requires (see doc/redirect.md).
 *   fwx_redirect_record_push() refuses to add a second hop by the same provider.
 * - A record has a compact wire form (fwx_redirect_record_serialize(),
 *   fwx_redirect_record_parse()) so that it can cross a process boundary.
 *
 * Hops are compared by **provider GUID**, not by handle, so that a record read back from its
 * wire form (or from another fwx instance of the same provider) answers the same way. The
 * context is returned only for hops pushed through the very handle that asks.
 *
 * Every function here is [loop-thread]: records and handles belong to the thread that runs the
 * firewall's loop, and may free contexts (calling back into their owner) when released.
 *
 * @since 1.1
 */
#ifndef FWX_REDIRECT_H
#define FWX_REDIRECT_H

#include <fwx/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A redirecting party's identity within one firewall: one per provider GUID. */
typedef struct fwx_redirect_handle fwx_redirect_handle;

/** What a connection's redirections were: original destination, application, hops. */
typedef struct fwx_redirect_record fwx_redirect_record;

/** The most hops a record holds (and its wire form carries). */
#define FWX_REDIRECT_MAX_HOPS 16

/** The longest cgroup path a record keeps, in bytes, without the terminating NUL. */
#define FWX_REDIRECT_CGROUP_PATH_MAX 1023

/** fwx_redirect_app::uid when the user is not known ((uid_t)-1, never a real user). */
#define FWX_REDIRECT_UID_UNKNOWN 0xFFFFFFFFu

/** The version byte fwx_redirect_record_serialize() writes and fwx_redirect_record_parse() reads. */
#define FWX_REDIRECT_WIRE_VERSION 1

/**
 * The longest wire form of a record, in bytes: header 6, original destination 19, pid 4, uid 4,
 * cgroup id 8, cgroup path 2 + ::FWX_REDIRECT_CGROUP_PATH_MAX, and ::FWX_REDIRECT_MAX_HOPS hops
 * of 36 (GUID 16, flags 1, target 19).
 */
#define FWX_REDIRECT_WIRE_MAX (6 + 19 + 4 + 4 + 8 + 2 + FWX_REDIRECT_CGROUP_PATH_MAX + FWX_REDIRECT_MAX_HOPS * 36)

/**
 * @brief The redirect state of a record as one handle sees it (W1-W4), in the order Windows
 * declares FWPS_CONNECTION_REDIRECT_STATE.
 */
typedef enum fwx_redirect_state {
    /** No hop at all: the handle may redirect it (W1). */
    FWX_REDIRECT_NOT_REDIRECTED = 0,
    /** The last hop is this handle's provider: permit or continue, never redirect again (W2). */
    FWX_REDIRECT_BY_SELF = 1,
    /** Redirected, never by this provider: redirect again only if the other party's
        inspection is not trusted (W3). */
    FWX_REDIRECT_BY_OTHER = 2,
    /** This provider redirected it earlier and another party redirected it after that: never
        redirect again; only permit or block (W4). */
    FWX_REDIRECT_PREVIOUSLY_BY_SELF = 3,
    /** @cond */
    FWX__REDIRECT_FORCE_32 = 0x7FFFFFFF
    /** @endcond */
} fwx_redirect_state;

/**
 * Frees a hop's context. fwx calls it exactly once per pushed context: when the record dies,
 * or earlier when the handle that pushed it is destroyed (so that fwx never calls into a plugin
 * after its handle is gone). [loop-thread]
 * @param context the pointer given to fwx_redirect_record_push() (ownership returns).
 */
typedef void (*fwx_redirect_context_free_fn)(void *context);

/**
 * @brief The application that opened a connection, as far as it is known.
 *
 * Forwarded traffic (a connection from another host) has no local application: leave every
 * field at its "unknown" value. An input struct for fwx_redirect_record_new(), an output struct
 * for fwx_redirect_record_original_app() (@ref struct_sizes); first size 32 bytes.
 */
typedef struct fwx_redirect_app {
    /** The caller's sizeof(fwx_redirect_app), set before either call. */
    uint32_t struct_size;
    /** The process id, 0 when unknown. */
    uint32_t pid;
    /** The user id, ::FWX_REDIRECT_UID_UNKNOWN when unknown. */
    uint32_t uid;
    /** Must be 0. */
    uint32_t reserved;
    /** The cgroup v2 id (the inode number of its directory), 0 when unknown. */
    uint64_t cgroup_id;
    /** The cgroup v2 path, such as "/system.slice/foo.service", NULL when unknown; at most
        ::FWX_REDIRECT_CGROUP_PATH_MAX bytes. Copied by fwx_redirect_record_new(); borrowed
        from the record in fwx_redirect_record_original_app(). */
    const char *cgroup_path;
} fwx_redirect_app;

/**
 * @brief One hop of a record, as fwx_redirect_record_hop() describes it.
 * An output struct (@ref struct_sizes); first size 160 bytes.
 */
typedef struct fwx_redirect_hop {
    /** The caller's sizeof(fwx_redirect_hop), set before the call; never changed. */
    uint32_t struct_size;
    /** The provider that redirected the connection at this hop. */
    fwx_guid provider;
    /** 0 (keeps the layout free of hidden padding). */
    uint32_t reserved;
    /** The handle that pushed the hop in this process (borrowed), or NULL for a hop read from
        the wire form or whose handle has been destroyed. */
    const fwx_redirect_handle *handle;
    /** Where the provider redirected the connection to (its listener), or ss_family
        AF_UNSPEC when it did not say. */
    struct sockaddr_storage target;
} fwx_redirect_hop;

/* ---------------------------------------------------------------------------------------- */
/** @name Redirect handles */
/** @{ */

/**
 * @brief Creates the redirect handle of one provider. [loop-thread]
 *
 * Create it once, when the plugin or host starts, and keep it (W6). A provider has at most one
 * handle per firewall.
 * @param fw the firewall (borrowed). Destroy the handle before the firewall's close completes;
 *   a handle still alive then is destroyed by the firewall, with a warning in the log, and its
 *   pointer is invalid from then on (do not destroy it again).
 * @param provider the provider GUID (borrowed; copied). Must not be all zero.
 * @param flags must be 0.
 * @param out receives the handle, owned by the caller; free it with fwx_redirect_handle_destroy().
 *   Set to NULL on failure.
 * @return FWX_S_OK; FWX_E_POINTER (@p fw, @p provider or @p out NULL); FWX_E_INVALIDARG
 *   (nonzero @p flags, the null GUID); FWX_E_ALREADY_EXISTS_WIN32 (the provider already has a
 *   handle in this firewall); FWX_E_TERMINATING (the firewall is closing); FWX_E_OUTOFMEMORY.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_handle_create(fwx_firewall *fw, const fwx_guid *provider, uint32_t flags,
                                              fwx_redirect_handle **out);

/**
 * @brief Destroys a redirect handle. [loop-thread]
 *
 * Every context the handle pushed that is still held by a live record is freed now, through its
 * free callback; those hops stay in their records, with their provider GUID (so the states do
 * not change) but without handle or context. A plugin destroys its handle in FilterShutdown at
 * the latest. NULL is fine.
 * @param h the handle (ownership ends).
 * @since 1.1
 */
FWX_API void fwx_redirect_handle_destroy(fwx_redirect_handle *h);

/**
 * @brief The provider GUID of a handle. [loop-thread]
 * @param h the handle (borrowed).
 * @return a pointer into the handle (valid while it lives), or NULL if @p h is NULL.
 * @since 1.1
 */
FWX_API const fwx_guid *fwx_redirect_handle_provider(const fwx_redirect_handle *h);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name Redirect records */
/** @{ */

/**
 * @brief Creates a record with no hops. [loop-thread]
 * @param original_destination where the connection was going before any redirection
 *   (AF_INET or AF_INET6 with a nonzero port; borrowed, copied), or NULL when unknown.
 * @param len the length of @p original_destination.
 * @param app the application that opened it (borrowed, copied), or NULL when unknown.
 * @param out receives the record with one reference (+1); release it with
 *   fwx_redirect_record_unref(). Set to NULL on failure.
 * @return FWX_S_OK; FWX_E_POINTER (@p out NULL); FWX_E_INVALIDARG (a bad address, a bad
 *   @p app: a struct_size out of range, nonzero reserved, an empty or too long cgroup path);
 *   FWX_E_OUTOFMEMORY.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_new(const struct sockaddr *original_destination, uint32_t len,
                                           const fwx_redirect_app *app, fwx_redirect_record **out);

/**
 * @brief Adds a reference to a record. [loop-thread]
 * @param rec the record (borrowed); NULL is fine.
 * @return @p rec, for chaining.
 * @since 1.1
 */
FWX_API fwx_redirect_record *fwx_redirect_record_ref(fwx_redirect_record *rec);

/**
 * @brief Releases a reference; the last one frees the record and, through their free
 * callbacks, the contexts of its hops. [loop-thread]
 * @param rec the record (a reference ends); NULL is fine.
 * @since 1.1
 */
FWX_API void fwx_redirect_record_unref(fwx_redirect_record *rec);

/**
 * @brief The original destination. [loop-thread]
 * @param rec the record (borrowed).
 * @param out receives the address; ss_family is AF_UNSPEC when unknown.
 * @return FWX_S_OK; FWX_S_FALSE (unknown); FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_original_destination(const fwx_redirect_record *rec,
                                                            struct sockaddr_storage *out);

/**
 * @brief The original application. [loop-thread]
 * @param rec the record (borrowed).
 * @param out receives it, up to its struct_size, which the caller sets first; its cgroup_path
 *   is borrowed from the record (valid while it lives).
 * @return FWX_S_OK; FWX_S_FALSE (nothing about it is known); FWX_E_POINTER; FWX_E_INVALIDARG
 *   (a struct_size out of range; nothing written).
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_original_app(const fwx_redirect_record *rec, fwx_redirect_app *out);

/**
 * @brief The number of hops, 0 for NULL. [loop-thread]
 * @param rec the record (borrowed), or NULL.
 * @since 1.1
 */
FWX_API size_t fwx_redirect_record_hop_count(const fwx_redirect_record *rec);

/**
 * @brief Describes one hop; 0 is the oldest. [loop-thread]
 * @param rec the record (borrowed).
 * @param index 0 .. fwx_redirect_record_hop_count() - 1.
 * @param out receives the hop, up to its struct_size, which the caller sets first.
 * @return FWX_S_OK; FWX_E_POINTER; FWX_E_INVALIDARG (@p index out of range, or a struct_size
 *   out of range; nothing written).
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_hop(const fwx_redirect_record *rec, size_t index, fwx_redirect_hop *out);

/**
 * @brief The redirect state of @p rec as the provider of @p h sees it (W5). [loop-thread]
 *
 * BY_SELF when the last hop is @p h's provider; PREVIOUSLY_BY_SELF when an earlier hop is and
 * another provider redirected after it; BY_OTHER when there are hops but none of them is
 * @p h's provider (also when @p h is NULL); NOT_REDIRECTED when there is no hop (or no record).
 * @param rec the record (borrowed), or NULL (not redirected).
 * @param h the asking handle (borrowed), or NULL.
 * @param context may be NULL; receives the context of @p h's hop in the two SELF states when
 *   that hop was pushed through @p h itself (borrowed: the record still owns it), else NULL.
 * @return the state.
 * @since 1.1
 */
FWX_API fwx_redirect_state fwx_redirect_query(const fwx_redirect_record *rec, const fwx_redirect_handle *h,
                                              void **context);

/**
 * @brief Appends a hop: @p h's provider redirects the connection now. [loop-thread]
 *
 * Same as fwx_redirect_record_push_to() with no target.
 * @param rec the record (borrowed).
 * @param h the redirecting handle (borrowed).
 * @param context the redirecting party's context, or NULL. On success the record owns it until
 *   @p free_cb runs; on failure it stays the caller's.
 * @param free_cb frees @p context; may be NULL (then fwx never frees it).
 * @return as fwx_redirect_record_push_to().
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_push(fwx_redirect_record *rec, fwx_redirect_handle *h, void *context,
                                            fwx_redirect_context_free_fn free_cb);

/**
 * @brief Appends a hop and says where the connection is redirected to. [loop-thread]
 *
 * Refused, with one line in @p h's firewall's log, when the state for @p h is BY_SELF or
 * PREVIOUSLY_BY_SELF (W2, W4: a provider redirects a connection at most once), when
 * @p target is where an earlier hop already redirected it (the connection would go back into
 * a proxy it has passed), or when the record already holds ::FWX_REDIRECT_MAX_HOPS hops.
 * Rationale: distinct providers can each appear only once, so a chain longer than any real
 * path of cooperating proxies means something keeps minting identities: a loop all the same.
 * @param rec the record (borrowed).
 * @param h the redirecting handle (borrowed).
 * @param target the redirect target (borrowed, copied), or NULL.
 * @param target_len the length of @p target.
 * @param context as in fwx_redirect_record_push().
 * @param free_cb as in fwx_redirect_record_push().
 * @return FWX_S_OK; FWX_E_REDIRECT_LOOP; FWX_E_POINTER (@p rec or @p h NULL);
 *   FWX_E_INVALIDARG (a bad @p target); FWX_E_OUTOFMEMORY.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_push_to(fwx_redirect_record *rec, fwx_redirect_handle *h,
                                               const struct sockaddr *target, uint32_t target_len, void *context,
                                               fwx_redirect_context_free_fn free_cb);

/**
 * @brief Whether a redirected connection may be sent on to @p destination. [loop-thread]
 *
 * Call it before making the outbound connection for a redirected flow. Refused, with one log
 * line, when @p destination is one of this firewall's own listeners (a publishing rule's
 * listener, a port bound by BindForClient or RedirectConnections): the connection would come
 * straight back into fwx, as in the self-connection loops of service meshes. Also refused when
 * @p destination is the target of one of @p rec's hops (a proxy it has already passed).
 * @param fw the firewall (borrowed).
 * @param rec the connection's record (borrowed), or NULL.
 * @param protocol FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP.
 * @param destination where the connection would go (borrowed).
 * @param len the length of @p destination.
 * @return FWX_S_OK; FWX_E_REDIRECT_LOOP; FWX_E_POINTER; FWX_E_INVALIDARG.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_check_destination(fwx_firewall *fw, const fwx_redirect_record *rec,
                                                  int32_t protocol, const struct sockaddr *destination,
                                                  uint32_t len);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name Wire form */
/** @{ */

/**
 * @brief Writes the versioned wire form of a record. [loop-thread]
 *
 * The form (all integers big-endian): "FXR", the version byte (::FWX_REDIRECT_WIRE_VERSION), a
 * presence byte (bit 0 original destination, 1 pid, 2 uid, 3 cgroup id, 4 cgroup path), the hop
 * count; then the fields present, in that order (an address is a family byte 4 or 6, the IP
 * and the port; the path is a 16-bit length and its bytes); then each hop: the provider GUID,
 * a flags byte (bit 0: a target follows) and the target. Contexts and handles are local to a
 * process and never written. An IPv6 scope id is not carried.
 * @param rec the record (borrowed).
 * @param buf where to write, or NULL to learn the size.
 * @param size the size of @p buf.
 * @param len receives the length of the wire form (also when @p buf is too small).
 * @return FWX_S_OK; FWX_E_BUFFERFULL (@p buf NULL or smaller than *@p len, nothing written);
 *   FWX_E_POINTER (@p rec or @p len NULL).
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_serialize(const fwx_redirect_record *rec, void *buf, size_t size,
                                                 size_t *len);

/**
 * @brief Reads a wire form into a new record. [loop-thread]
 *
 * Strict: the whole of @p buf must be exactly one record; unknown presence or hop flag bits,
 * a family other than 4 or 6, a zero port, a zero pid or cgroup id, an unknown uid written as
 * present, an empty or too long cgroup path or one holding a NUL, more than
 * ::FWX_REDIRECT_MAX_HOPS hops, the null GUID, or the same provider twice are all refused. The
 * hops carry their provider GUID and target only (no handle, no context).
 * @param buf the bytes (borrowed).
 * @param len their number.
 * @param out receives the record (+1), NULL on failure.
 * @return FWX_S_OK; FWX_E_INVALIDARG (malformed, truncated, trailing bytes);
 *   FWX_E_NOT_SUPPORTED (another version); FWX_E_POINTER; FWX_E_OUTOFMEMORY.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_record_parse(const void *buf, size_t len, fwx_redirect_record **out);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name Connections */
/** @{ */

/*
 * Rationale (plain functions, not a COM interface): IFWXConnection is released and frozen, so a
 * method would need IFWXConnection3 with a new IID, a vtable, and QueryInterface plumbing in
 * every implementation, for a getter and a setter that only fwx's own connection objects can
 * answer. Like fwx_connection_count_bytes(), these exported functions serve hosts and plugins
 * alike and refuse connections that are not fwx's.
 */

/**
 * @brief The redirect record a connection carries. [loop-thread]
 * @param conn the connection (borrowed).
 * @return the record (borrowed; fwx_redirect_record_ref() to keep it), or NULL if it carries
 *   none (or @p conn is NULL or not one of fwx's connections).
 * @since 1.1
 */
FWX_API fwx_redirect_record *fwx_connection_redirect_record(IFWXConnection *conn);

/**
 * @brief Attaches a redirect record to a connection. [loop-thread]
 *
 * The connection keeps a reference until the connection object is freed, then releases it (so
 * the hops' contexts die with the connection unless someone else holds the record).
 * Rationale: a connection's record cannot be replaced, because swapping it would drop the hops
 * that prove a loop.
 * @param conn the connection (borrowed).
 * @param rec the record (borrowed; the connection takes its own reference).
 * @return FWX_S_OK; FWX_S_FALSE (it already carries @p rec); FWX_E_ALREADY_EXISTS_WIN32 (it
 *   carries another record); FWX_E_POINTER (NULL, or not one of fwx's connections);
 *   FWX_E_TERMINATING (the connection has ended).
 * @since 1.1
 */
FWX_API fwx_result fwx_connection_set_redirect_record(IFWXConnection *conn, fwx_redirect_record *rec);

/**
 * @brief Links the outbound socket a host makes for a redirected connection to that
 * connection's record (WFP's SIO_SET_WFP_CONNECTION_REDIRECT_RECORDS). [loop-thread]
 *
 * Call it after the socket is made and before connect(). The socket is bound to the
 * unspecified address if it is not bound yet; the record is written to the host's registry
 * under the socket's source port and @p destination, with its source address (the bound one,
 * or the one the route to @p destination gives a socket with that mark), where the next proxy
 * on this host that intercepts the connection reads it (doc/redirect.md); the socket gets
 * `SO_MARK` `0x10000000 | slots << 16`. The calling thread must be in the socket's network
 * namespace (the route is looked up there). The registry entry is removed when @p conn ends. Rationale: the
 * bind comes first so that the entry exists before the next hop can accept the connection.
 * @param conn the accepted (redirected) connection, carrying a record (borrowed).
 * @param fd the outbound TCP socket, not yet connected.
 * @param destination where it will connect (borrowed).
 * @param destination_len its length.
 * @param slots the local-redirection slots the flow has passed (bit i = slot i), including the
 *   caller's own if it redirects local connections; 0 otherwise.
 * @return FWX_S_OK; FWX_S_FALSE (linked, but the mark could not be set: SO_MARK needs
 *   CAP_NET_ADMIN); FWX_E_NOT_FOUND (@p conn carries no record); FWX_E_ALREADY_EXISTS_WIN32
 *   (already linked); FWX_E_NOT_SUPPORTED (not TCP over IPv4); FWX_E_TERMINATING;
 *   FWX_E_INVALIDARG; FWX_E_POINTER; FWX_E_FAIL (the registry could not be written, or no
 *   route to @p destination: logged).
 * @since 1.1
 */
FWX_API fwx_result fwx_connection_link_outbound(IFWXConnection *conn, int fd, const struct sockaddr *destination,
                                                uint32_t destination_len, uint32_t slots);

/**
 * @brief The firewall's own redirect handle: the provider of the hops fwx pushes itself (a
 * transparently intercepted or locally redirected connection, a redirect port, a bound port
 * in proxy mode). [loop-thread]
 *
 * Made on first use, with a provider GUID derived from the firewall's name (the same name
 * gives the same provider across restarts and processes); owned by the firewall (do not
 * destroy it). Hosts and filters query a connection's state with it.
 * @return the handle, or NULL (the firewall is closing, or another handle already has that
 *   provider GUID).
 * @since 1.1
 */
FWX_API fwx_redirect_handle *fwx_firewall_redirect_identity(fwx_firewall *fw);

/**
 * @brief The record a previous proxy on this host left for a flow it connected onward
 * (SIO_QUERY_WFP_CONNECTION_REDIRECT_RECORDS). [any-thread]
 *
 * For a connection a proxy accepted after redirecting it: @p source_port is the accepted
 * socket's peer port (getpeername), @p destination its original destination (SO_ORIGINAL_DST).
 * The entry of any source address matches: prefer fwx_redirect_registry_lookup_flow(), which
 * cannot take another flow's record.
 * @param source_port the flow's source port.
 * @param destination the flow's original destination (borrowed).
 * @param destination_len its length.
 * @param out receives a new record (+1; fwx_redirect_record_unref() it).
 * @param slots receives the local-redirection slots the flow has passed (may be NULL).
 * @return FWX_S_OK; FWX_E_NOT_FOUND (no entry, or one that is not well-formed);
 *   FWX_E_NOT_SUPPORTED (not IPv4); FWX_E_POINTER; FWX_E_INVALIDARG.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_registry_lookup(uint16_t source_port, const struct sockaddr *destination,
                                                uint32_t destination_len, fwx_redirect_record **out,
                                                uint32_t *slots);

/**
 * @brief The record a previous proxy on this host left for a flow, found by the flow's whole
 * tuple: as fwx_redirect_registry_lookup(), and the entry must also name @p source's address.
 * [any-thread]
 *
 * Use this one. Rationale: source ports are unique per address only, so a connection from
 * another host can share its source port and destination with one of this host's own
 * redirected flows; looked up by port alone it would take that flow's record and look like a
 * loop. @p source is the accepted socket's peer (getpeername), @p destination its original
 * destination (SO_ORIGINAL_DST).
 * @param source the flow's source address and port (borrowed; neither may be zero).
 * @param source_len its length.
 * @param destination the flow's original destination (borrowed).
 * @param destination_len its length.
 * @param out receives a new record (+1; fwx_redirect_record_unref() it).
 * @param slots receives the local-redirection slots the flow has passed (may be NULL).
 * @return FWX_S_OK; FWX_E_NOT_FOUND (no entry for this tuple, or one that is not well-formed);
 *   FWX_E_NOT_SUPPORTED (not IPv4); FWX_E_POINTER; FWX_E_INVALIDARG.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_registry_lookup_flow(const struct sockaddr *source, uint32_t source_len,
                                                     const struct sockaddr *destination, uint32_t destination_len,
                                                     fwx_redirect_record **out, uint32_t *slots);

/** Receives one registry entry from fwx_redirect_registry_list(); everything is borrowed. */
typedef void (*fwx_redirect_registry_cb)(void *arg, uint16_t source_port, const struct sockaddr *destination,
                                         long writer_pid, uint32_t slots, const fwx_redirect_record *rec);

/**
 * @brief Every well-formed entry of this host's registry (fwxctl redirects). [any-thread]
 * Entries that do not parse are skipped. At most 65536 entries are read.
 * @return FWX_S_OK (also when the registry does not exist yet); FWX_E_POINTER.
 * @since 1.1
 */
FWX_API fwx_result fwx_redirect_registry_list(fwx_redirect_registry_cb cb, void *arg);

/** The SO_MARK bit of fwx's outbound sockets of redirected flows (see ::fwx_local_redirect). @since 1.1 */
#define FWX_REDIRECT_MARK 0x10000000u
/** The SO_MARK bits of the local-redirection slots a flow has passed (bit i = slot i). @since 1.1 */
#define FWX_REDIRECT_SLOT_MARK(slots) (((uint32_t)(slots) & 0xFFu) << 16)

/**
 * @brief Which outbound connections of this host a firewall redirects into itself (local
 * redirection, WFP's connect redirection on Linux).
 *
 * Start from zero and set struct_size. An input struct (@ref struct_sizes); first size 40
 * bytes. The connections are redirected by an nftables rule of
 * the "nft" backend's table into fwx's interception listener, where each becomes a session of
 * its source address and a primary connection to its original destination, with a redirect
 * record naming the original destination and the original application (process, user,
 * cgroup).
 *
 * **Cooperating proxies on one host.** Each proxy that redirects local connections has a slot
 * 0..7, unique on the host. fwx's outbound sockets carry the mark
 * `0x10000000 | (bits of every slot the flow has passed) << 16`, the mark is copied into the
 * connection's conntrack mark (so nftables rules can match `ct mark and 0x10000000 != 0`), and
 * each instance's rule skips a socket whose mark holds its own slot bit: a connection passes
 * each proxy at most once, whatever order their rules run in. The flow's record travels in the
 * registry (doc/redirect.md): a file per outbound flow, named after the tuple the next hop's
 * accepted socket sees, in FWX_REDIRECT_DIR (default /run/fwx/redirect).
 */

typedef struct fwx_local_redirect {
    /** The caller's sizeof(fwx_local_redirect). */
    uint32_t struct_size;
    /** FWX_PROTOCOL_TCP (the only protocol for now). */
    int32_t protocol;
    /** Lowest destination port redirected (1..65535). */
    uint16_t port_min;
    /** Highest destination port redirected (>= port_min). */
    uint16_t port_max;
    /** This instance's slot among the host's cooperating proxies, 0..7; the same in every call. */
    uint32_t slot;
    /** Only connections of this user id; -1 for every user. */
    int64_t uid;
    /** Only processes in this cgroup v2 path (such as "/system.slice/app.service") and below;
        NULL for every cgroup. Characters: letters, digits, "._-@:" and "/". */
    const char *cgroup;
    /** The redirect identity of this instance's hops (borrowed; must outlive the firewall's
        backend); NULL keeps the backend's own, whose provider GUID is derived from the
        firewall's name. */
    fwx_redirect_handle *handle;
} fwx_local_redirect;

/**
 * @brief Redirects outbound connections of local processes into this firewall. [loop-thread]
 *
 * Needs the "nft" backend. May be called several times (each call adds a rule); the rules go
 * with the backend's table. fwx's own sockets, and sockets of flows that have already passed
 * this instance, are never caught again. A flow that comes back to an instance it has passed
 * anyway (a relay in the path that drops the mark but keeps the record) is refused with
 * `FWX_E_REDIRECT_LOOP` and a log line, as is a connection to fwx's own listener.
 * @param fw the firewall.
 * @param spec what to redirect (borrowed).
 * @return FWX_S_OK; FWX_E_NOT_SUPPORTED (another backend, or no listener); FWX_E_INVALIDARG (a
 *   bad spec, or another slot than before); FWX_E_BACKEND (nftables refused the rule, say a
 *   kernel without socket cgroupv2); FWX_E_POINTER. fwx_firewall_last_error() says why.
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_redirect_local(fwx_firewall *fw, const fwx_local_redirect *spec);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* FWX_REDIRECT_H */
